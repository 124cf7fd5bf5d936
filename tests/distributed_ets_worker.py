"""Worker for the multi-process ETS test. Imports only torch and `dbeta_hf/losses.py` (by path), so that every
spawned process starts in about a second instead of importing transformers and datasets."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.distributed as dist

LOSSES_PATH = Path(__file__).resolve().parents[1] / "dbeta_hf" / "losses.py"


def load_losses():
    spec = importlib.util.spec_from_file_location("_dbeta_losses_standalone", LOSSES_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def global_batch(sizes, dim=8):
    g = torch.Generator().manual_seed(42)
    n = sum(sizes)
    ecg = torch.tanh(torch.randn(n, dim, generator=g))
    text = torch.tanh(torch.randn(n, dim, generator=g))
    match = (torch.rand(n, generator=g) > 0.4).long()
    return ecg, text, match


def worker(rank, world_size, sizes, init_file, result_dir, use_global_batch=True):
    torch.set_num_threads(1)
    losses = load_losses()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        ecg, text, match = global_batch(sizes)
        start = sum(sizes[:rank])
        stop = start + sizes[rank]
        local_ecg = ecg[start:stop].clone().requires_grad_(True)
        local_text = text[start:stop].clone().requires_grad_(True)
        ets = losses.distributed_ets_loss if use_global_batch else losses.ets_loss
        loss = ets(local_ecg, local_text, match[start:stop])
        loss.backward()
        torch.save({"loss": loss.detach(), "ecg_grad": local_ecg.grad, "text_grad": local_text.grad},
                   os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
