"""FSDP2 (`torch.distributed.fsdp.fully_shard`) shards D-BETA on two CPU processes (gloo).

Each layer class of `DBetaPreTrainedModel._no_split_modules` (what examples/accelerate/fsdp.yaml wraps) and the root
are sharded; both ranks see the same batch, so the sharded run must give the single-process loss and, after one
AdamW step, the single-process parameters. `fsdp.yaml` itself stays refused on CPU by examples/pretrain.py
(accelerate's FSDP path needs CUDA there; tests/test_accelerate_launch.py); this checks what a CUDA run of it
relies on in the model: every parameter shards and gathers, the shape-(1,) ETS scale and bias included.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed import fsdp

from dbeta_hf.configuration_dbeta import DBetaConfig
from dbeta_hf.modeling_dbeta import DBetaForPreTraining
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator
from dbeta_hf.pretraining.recipes import tiny_config

WORLD_SIZE = 2
LEARNING_RATE = 1e-2
REPORTS = ["sinus rhythm. normal ecg.", "sinus bradycardia.", "atrial fibrillation.", "sinus tachycardia.",
           "sinus rhythm. right bundle branch block.", "atrial flutter.", "left axis deviation.", "normal ecg."]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(model: DBetaForPreTraining, batch: dict) -> float:
    """One seeded forward (the masking draws the same noise everywhere), backward and AdamW step; the loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    torch.manual_seed(1)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _sharded_worker(rank: int, port: int, config_dict: dict, batch: dict, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = DBetaForPreTraining(DBetaConfig.from_dict(config_dict))
        layer_classes = set(model._no_split_modules)
        sharded = [module for module in model.modules() if type(module).__name__ in layer_classes]
        for module in sharded:
            fsdp.fully_shard(module)
        fsdp.fully_shard(model)
        loss = _step(model, batch)
        params = {name: param.full_tensor().detach().clone() for name, param in model.named_parameters()}
        local = {name: param.to_local().numel() for name, param in model.named_parameters()}
        if rank == 0:
            results.update(loss=loss, params=params, local=local, sharded_layers=len(sharded))
    finally:
        dist.destroy_process_group()


def test_fully_shard_on_two_cpu_processes_matches_one_process(tiny_tokenizer, one_cpu_thread):
    # learnable ETS scale and bias: the shape-(1,) parameters FSDP and DeepSpeed must shard and broadcast
    config = tiny_config(vocab_size=len(tiny_tokenizer), num_samples=2500, ets_learnable_scale=True,
                         ets_learnable_bias=True, ets_logit_bias_init=-5.0)
    collator = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, None)
    generator = torch.Generator().manual_seed(0)
    rows = [{"ecg": torch.randn(12, 2500, generator=generator).numpy() * 0.3, "report": report, "record_id": i}
            for i, report in enumerate(REPORTS)]
    batch = collator(rows)

    torch.manual_seed(0)
    reference = DBetaForPreTraining(config)
    initial_scale = reference.model.logit_scale.detach().clone()
    reference_loss = _step(reference, batch)

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_sharded_worker, args=(_free_port(), config.to_dict(), batch, results), nprocs=WORLD_SIZE)
        results = dict(results)

    assert results["sharded_layers"] >= 4  # ECG encoder, fusion, MEM decoder and T5 blocks
    assert results["loss"] == pytest.approx(reference_loss, rel=1e-5)
    reference_params = dict(reference.named_parameters())
    assert set(results["params"]) == set(reference_params)
    for name, param in results["params"].items():
        torch.testing.assert_close(param, reference_params[name].detach(), rtol=1e-4, atol=1e-5, msg=name)
    # sharded, not replicated: rank 0 holds about half of the parameters
    full = sum(p.numel() for p in reference_params.values())
    assert sum(results["local"].values()) < 0.6 * full
    assert results["params"]["model.logit_scale"].shape == (1,) and results["params"]["model.logit_bias"].shape == (1,)
    # the step moved them (their gradients were reduced across the ranks, not dropped)
    assert not torch.equal(results["params"]["model.logit_scale"], initial_scale)
