#!/usr/bin/env python
"""D-BETA pretraining throughput: samples/s, step time, peak memory and MFU of a full training step.

A step is what `DBetaPreTrainer` does per batch: forward of `DBetaForPreTraining` with all four losses (MLM on
the selected positions only, MEM on 75% masked ECG tokens, ETM, ETS), backward, AdamW step, zero_grad.

Two input paths:

* model only (default): random tensors already on the device - 12 x 5000 ECGs (half of the leads zeroed, as
  the collator does), token ids in [3, vocab) with random report lengths padded to ``--text-length``,
  25% MLM labels, half of the rows ETM negatives;
* ``--end-to-end``: an Arrow split (``--dataset``; ``datasets.load_from_disk``, columns ``ecg`` float16
  (12, 5000) and ``report``), or a synthetic corpus (``dbeta_hf.data.synthetic.make_synthetic_corpus``) saved to
  disk and memory-mapped back, read by a ``torch.utils.data.DataLoader`` (``--num-workers``, pinned memory)
  through the real ``DBetaPreTrainingCollator`` with an N3S index built from random report embeddings.
  Reports are padded to exactly ``--text-length`` tokens.

Several values of ``--dtype``, ``--conv-pos``, ``--attn``, ``--batch-size``, ``--gradient-checkpointing``
(``on|off|both``) and ``--compile`` (``on|off|both``) give one row each (a fresh model per row). A row that runs
out of memory is reported as OOM. MFU counts the model FLOPs of one step with
``torch.utils.flop_counter.FlopCounterMode`` (direct convolution, eager attention, no recomputation; on a small
batch, scaled per sample) against ``--peak-flops`` (989e12, H100 bf16 dense, on CUDA; "n/a" on the CPU).
``--pos-conv-kernel`` instead times only the positional convolution (direct vs FFT), forward and backward.

``--vs-official`` instead prints one table on the same (random) weights: a training step of the official code
in fp32 (its forward with masking, the four losses as ``/work/shared/tools/bench_reference.py`` computes them,
AdamW), imported from ``--official-src`` / ``$DBETA_REF_SRC``, then ours in fp32, bf16 autocast and compiled, with
each row's step time relative to the official fp32 step. The workload: the official 8 x 768 ECG tower, 2 fusion
layers, a 1-layer 768-wide T5, batch 4, text 64 (``--ecg-layers``, ``--fusion-layers``, ``--t5-layers``,
``--batch-size``, ``--text-length``).

Examples::

    DBETA_REF_SRC=/work/ref/dbeta python benchmarks/bench_pretrain.py --vs-official   # the CPU fast-path table
    python benchmarks/bench_pretrain.py                                    # tiny config on the CPU
    python benchmarks/bench_pretrain.py --preset official --batch-size 2 --steps 2 --warmup 1
    python benchmarks/bench_pretrain.py --preset official --batch-size 128 --text-length 128 \\
        --dtype fp32 bf16-autocast --conv-pos conv fft                     # on an H100
    python benchmarks/bench_pretrain.py --preset official --batch-size 256 --gradient-checkpointing
    python benchmarks/bench_pretrain.py --preset official --end-to-end --num-workers 8 --dtype bf16-autocast
    python benchmarks/bench_pretrain.py --pos-conv-kernel --batch-size 8
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import tempfile
import time
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import DatasetDict, load_from_disk  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from dbeta_hf import DBetaForPreTraining  # noqa: E402
from dbeta_hf.data.synthetic import make_synthetic_corpus  # noqa: E402
from dbeta_hf.fast_conv import conv1d_forward  # noqa: E402
from dbeta_hf.losses import mlm_positions  # noqa: E402
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator  # noqa: E402
from dbeta_hf.pretraining.n3s import build_n3s_index_from_embeddings  # noqa: E402
from dbeta_hf.text_normalization import normalize_report  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "official"], default=None,
                   help="model configuration (default: official on CUDA, tiny on the CPU)")
    p.add_argument("--hidden", type=int, default=None, help="width of the tiny preset (default 32)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set num_fusion_layers=2 --set ecg_config.encoder_layers=4 (repeatable)")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="batch size(s) (default: 128 on CUDA, 4 on the CPU)")
    p.add_argument("--text-length", type=int, default=128, help="tokens per report after padding (default 128)")
    p.add_argument("--full-text", action="store_true",
                   help="model-only mode: every text position is a real token (default: random report lengths, padded)")
    p.add_argument("--dtype", nargs="+", choices=C.DTYPES, default=None,
                   help="fp32 | bf16-autocast (fp32 weights) | bf16 (bf16 weights); default bf16-autocast on CUDA, fp32 on CPU")
    p.add_argument("--attn", nargs="+", choices=["sdpa", "eager"], default=["sdpa"], help="attention backend(s)")
    p.add_argument("--conv-pos", nargs="+", choices=["conv", "fft"], default=["conv"],
                   help="positional convolution: direct nn.Conv1d or dbeta_hf.fast_conv FFT")
    p.add_argument("--gradient-checkpointing", nargs="?", const="on", default="off", choices=["on", "off", "both"],
                   help="activation checkpointing of the transformer / fusion / decoder layers")
    p.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every n-th layer (default 1 = all)")
    p.add_argument("--compile", nargs="?", const="on", default="off", choices=["on", "off", "both"],
                   help="torch.compile the model")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: torch's default)")
    p.add_argument("--optimizer", choices=["fused", "foreach", "single"], default="fused", help="AdamW implementation")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 1 on the CPU; at least 3 for compiled rows)")
    p.add_argument("--end-to-end", action="store_true", help="read batches from an Arrow dataset through the collator")
    p.add_argument("--dataset", default=None, help="datasets.load_from_disk path (a Dataset or a DatasetDict)")
    p.add_argument("--split", default="train", help="split of a DatasetDict (default train)")
    p.add_argument("--synthetic-size", type=int, default=None,
                   help="records of the synthetic corpus when no --dataset (default 4 x batch, at least 64)")
    p.add_argument("--synthetic-cache", default=None,
                   help="directory to keep the synthetic corpus in (reused when it exists; default: a temp dir)")
    p.add_argument("--tokenizer", default=str(C.TINY_TOKENIZER), help="tokenizer of the collator (default: tiny test T5)")
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers in --end-to-end mode")
    p.add_argument("--prefetch-factor", type=int, default=4)
    p.add_argument("--n3s-k", type=int, default=64, help="N3S candidates per report")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="peak FLOP/s for MFU (default 989e12 on CUDA = H100 bf16 dense; 0 = n/a)")
    p.add_argument("--flops", default="count",
                   help="'count' (FlopCounterMode on one step), 'none', or a number of FLOPs per sample")
    p.add_argument("--flop-batch", type=int, default=2, help="batch used to count FLOPs (scaled per sample)")
    p.add_argument("--sync-debug", action="store_true",
                   help="CUDA: count the host<->device synchronisations of one step (torch.cuda sync debug mode)")
    p.add_argument("--pos-conv-kernel", action="store_true",
                   help="only time the positional convolution (direct vs FFT) at the config's shape")
    p.add_argument("--device", default="auto", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vs-official", action="store_true",
                   help="official fp32 step vs ours fp32 / bf16 autocast / compiled on the same weights")
    p.add_argument("--official-src", default=None, help="the official code's folder (default $DBETA_REF_SRC)")
    p.add_argument("--ecg-layers", type=int, default=8, help="--vs-official: ECG transformer layers (default 8)")
    p.add_argument("--fusion-layers", type=int, default=2, help="--vs-official: fusion layers (default 2)")
    p.add_argument("--t5-layers", type=int, default=1, help="--vs-official: T5 layers, 768 wide (default 1)")
    p.add_argument("--official-bf16", action="store_true", help="--vs-official: also time the official bf16 autocast step")
    p.add_argument("--no-compile-row", action="store_true", help="--vs-official: skip the torch.compile row")
    p.add_argument("--title", default=None, help="table title")
    p.add_argument("--output", default=None, help="append the markdown to this file")
    p.add_argument("--json", default=None, help="write the rows as JSON to this file")
    args = p.parse_args(argv)
    return args


def _defaults(args, device):
    cuda = device.type == "cuda"
    args.preset = args.preset or ("official" if cuda else "tiny")
    args.batch_size = args.batch_size or ([128] if cuda else [4])
    args.dtype = args.dtype or (["bf16-autocast"] if cuda else ["fp32"])
    args.steps = args.steps if args.steps is not None else (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    return args


# --------------------------------------------------------------------------------------------- inputs
def synthetic_batch(config, batch_size: int, text_length: int, device, dtype_mode: str, full_text=False, seed=0):
    """One random pretraining batch on `device` (what the collator would produce)."""
    gen = torch.Generator().manual_seed(seed)
    vocab = config.text_config.vocab_size
    num_samples = config.ecg_config.num_samples
    ecg = torch.randn(batch_size, config.ecg_config.num_leads, num_samples, generator=gen) * 0.3
    ecg *= (torch.rand(batch_size, config.ecg_config.num_leads, 1, generator=gen) >= 0.5)  # lead masking
    high = min(vocab, 32000)
    ids = torch.randint(3, high, (batch_size, text_length), generator=gen)
    if full_text:
        lengths = torch.full((batch_size,), text_length)
    else:
        low = max(2, text_length // 8)
        lengths = torch.randint(low, text_length + 1, (batch_size,), generator=gen)
    positions = torch.arange(text_length)[None]
    attention_mask = (positions < lengths[:, None]).long()
    ids[positions == (lengths[:, None] - 1)] = 1  # </s>
    ids = ids * attention_mask  # pad id 0
    selectable = attention_mask.bool() & (ids != 1)
    selected = selectable & (torch.rand(batch_size, text_length, generator=gen) < 0.25)  # the collator's mlm_probability
    mlm_labels = torch.where(selected, ids, torch.full_like(ids, -100))
    mask_id = min(32099, vocab - 1)  # <extra_id_0> in the T5 vocab
    input_ids = torch.where(selected, torch.full_like(ids, mask_id), ids)
    match_labels = (torch.rand(batch_size, generator=gen) >= 0.5).long()
    batch = {"ecg_values": ecg.to(C.input_dtype(dtype_mode)), "input_ids": input_ids, "attention_mask": attention_mask,
             "mlm_labels": mlm_labels, "match_labels": match_labels,
             "mlm_positions": mlm_positions(mlm_labels)}  # as the collator: MLM head without a host sync
    return {k: v.to(device) for k, v in batch.items()}


def load_corpus(args, batch_size: int):
    """The Arrow split of --dataset, or a synthetic corpus saved to disk and memory-mapped back."""
    if args.dataset:
        ds = load_from_disk(args.dataset)
        if isinstance(ds, DatasetDict):
            ds = ds[args.split]
        return ds, f"{args.dataset} ({len(ds)} rows)", None
    size = args.synthetic_size or max(64, 4 * batch_size)
    cleanup = None
    if args.synthetic_cache:
        path = Path(args.synthetic_cache)
    else:
        cleanup = tempfile.mkdtemp(prefix="dbeta_bench_corpus_")
        path = Path(cleanup) / "corpus"
    if not (path / "dataset_info.json").exists():
        start = time.perf_counter()
        make_synthetic_corpus(size, seed=args.seed).save_to_disk(str(path))
        print(f"[bench] synthetic corpus of {size} records written to {path} in {time.perf_counter() - start:.1f}s",
              flush=True)
    ds = load_from_disk(str(path))
    return ds, f"synthetic corpus, {len(ds)} rows (make_synthetic_corpus, saved with save_to_disk)", cleanup


def make_loader(args, config, ds, batch_size: int, text_length: int, device):
    if len(ds) < batch_size:
        raise SystemExit(f"the dataset has {len(ds)} rows, fewer than the batch size {batch_size}")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if len(tokenizer) > config.text_config.vocab_size:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than the model vocabulary")
    reports = list(ds["report"])
    unique = len({normalize_report(r) for r in reports})
    embeddings = np.random.default_rng(args.seed).standard_normal((len(reports), 64)).astype(np.float32)
    index = build_n3s_index_from_embeddings(reports, embeddings, k=max(1, min(args.n3s_k, unique - 1)),
                                            device="cpu", progress=False)
    collator = DBetaPreTrainingCollator.from_config(config, tokenizer, index, max_length=text_length,
                                                    pad_to_multiple_of=text_length, seed=args.seed)
    columns = [c for c in ("ecg", "report", "record_id", "idx") if c in ds.column_names]
    ds = ds.with_format("numpy", columns=columns)
    workers = args.num_workers
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=collator, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=args.prefetch_factor if workers > 0 else None,
        generator=torch.Generator().manual_seed(args.seed),
    )
    return loader, f"N3S index: {len(index)} unique reports, k={index.k}, random embeddings"


class LoaderFeed:
    """Endless batches from a DataLoader, moved to the device; measures the time the host waits for them."""

    def __init__(self, loader, device, dtype_mode):
        self.loader, self.device, self.dtype = loader, device, C.input_dtype(dtype_mode)
        self.epoch = 0
        self.iterator = iter(loader)
        self.wait = 0.0

    def __call__(self):
        start = time.perf_counter()
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.epoch += 1
            self.loader.collate_fn.set_epoch(self.epoch)
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        self.wait += time.perf_counter() - start
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        batch["ecg_values"] = batch["ecg_values"].to(self.dtype)
        return batch


# --------------------------------------------------------------------------------------------- one row
def build_model(config, device, dtype_mode, seed):
    torch.manual_seed(seed)
    with torch.device(device):
        model = DBetaForPreTraining(config)
    if dtype_mode == "bf16":
        model.to(torch.bfloat16)
    model.train()
    return model


def flops_per_sample(model, config, args, device, dtype_mode, text_length) -> float:
    """Model FLOPs of forward + backward per sample: direct conv, eager attention (counted everywhere), no
    recomputation; on a batch of --flop-batch."""
    batch = synthetic_batch(config, args.flop_batch, text_length, device, dtype_mode, args.full_text, seed=args.seed + 99)
    C.set_conv_pos_impl(model, "conv")
    C.set_attention(model, "eager")

    def step():
        with C.autocast_context(device, dtype_mode):
            out = model(**batch, return_mlm_logits=False)
        out.loss.backward()

    try:
        flops = C.count_flops(step)
    finally:
        model.zero_grad(set_to_none=True)
    return flops / args.flop_batch


def make_optimizer(model, kind, device):
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    if kind == "fused":
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            kind = "foreach"
    return torch.optim.AdamW(params, foreach=kind == "foreach", **kwargs)


def per_sample_flops(args, model, config, device, dtype_mode, text_length, flop_cache) -> float | None:
    """``--flops``: counted once per (bf16 weights, text length) and cached, a given number, or none."""
    if args.flops == "none":
        return None
    if args.flops != "count":
        return float(args.flops)
    key = (dtype_mode == "bf16", text_length)
    if key not in flop_cache:
        flop_cache[key] = flops_per_sample(model, config, args, device, dtype_mode, text_length)
    return flop_cache[key]


def make_feed(args, config, corpus, batch_size: int, text_length: int, device, dtype_mode, row: dict):
    """``(feed, loader)``: batches from the real data loader (``--end-to-end``; loader None otherwise) or two fixed
    synthetic batches taken in turn."""
    if args.end_to_end:
        loader, loader_info = make_loader(args, config, corpus, batch_size, text_length, device)
        row["_loader_info"] = loader_info
        return LoaderFeed(loader, device, dtype_mode), loader
    batches = [synthetic_batch(config, batch_size, text_length, device, dtype_mode, args.full_text, args.seed + i)
               for i in range(2)]
    counter = itertools.count()
    return (lambda: batches[next(counter) % len(batches)]), None


def time_steps(args, device, step, compiled: str, feed) -> tuple[dict, float, float]:
    """Warm up, then time ``--steps`` steps: ``(per-step seconds summary, wall seconds, warm-up seconds)``."""
    C.free_memory(device)
    C.reset_peak_memory(device)
    torch.manual_seed(args.seed + 1)  # same dropout / MEM-mask draws in every row, whatever ran before
    # compiled: the first steps compile forward and backward, and the second one recompiles the MLM part
    # with a dynamic number of selected tokens, so never time fewer than 3 warm-up steps
    warmup_steps = max(args.warmup, 3) if compiled == "on" else args.warmup
    start = time.perf_counter()
    for _ in range(warmup_steps):
        step()
    C.synchronize(device)
    warmup_seconds = time.perf_counter() - start
    if args.end_to_end:
        feed.wait = 0.0
    timer = C.StepTimer(device)
    C.synchronize(device)
    wall = time.perf_counter()
    for _ in range(args.steps):
        timer.start()
        step()
        timer.stop()
    C.synchronize(device)
    return C.summarize(timer.seconds()), time.perf_counter() - wall, warmup_seconds


def run_row(args, config, device, variant, flop_cache, corpus):
    batch_size, dtype_mode, attn, conv_pos, ckpt, compiled = variant
    text_length = args.text_length
    row = {"preset": args.preset, "batch": batch_size, "text": text_length, "dtype": dtype_mode, "attn": attn,
           "pos conv": conv_pos, "ckpt": ckpt, "compile": compiled,
           "data": "loader" if args.end_to_end else "synthetic"}
    model = optimizer = feed = loader = None
    try:
        model = build_model(config, device, dtype_mode, args.seed)
        per_sample = per_sample_flops(args, model, config, device, dtype_mode, text_length, flop_cache)
        C.set_attention(model, attn)
        C.set_conv_pos_impl(model, conv_pos)
        if ckpt == "on":
            C.enable_checkpointing(model, args.checkpoint_every)
        optimizer = make_optimizer(model, args.optimizer, device)
        forward = torch.compile(model, mode=args.compile_mode) if compiled == "on" else model
        feed, loader = make_feed(args, config, corpus, batch_size, text_length, device, dtype_mode, row)
        last_loss = {}

        def step():
            batch = feed()
            with C.autocast_context(device, dtype_mode):
                out = forward(**batch, return_mlm_logits=False)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            last_loss["value"] = out.loss.detach()

        seconds, wall, warmup_seconds = time_steps(args, device, step, compiled, feed)
        throughput = batch_size * args.steps / wall
        achieved, mfu = C.format_mfu(per_sample, throughput, C.default_peak_flops(device, args.peak_flops))
        loss = float(last_loss["value"].float())
        row.update({
            "step ms (median)": f"{seconds['median'] * 1e3:.1f}",
            "step ms (min-max)": f"{seconds['min'] * 1e3:.0f}-{seconds['max'] * 1e3:.0f}",
            "samples/s": f"{throughput:.1f}",
            **C.peak_memory(device),
            "GFLOP/sample": f"{per_sample / 1e9:.1f}" if per_sample else "n/a",
            "TFLOP/s": achieved,
            "MFU": mfu,
            "warmup s": f"{warmup_seconds:.1f}",
            "loss": f"{loss:.3f}" if math.isfinite(loss) else "NaN",
        })
        if args.end_to_end:
            row["loader wait ms/step"] = f"{feed.wait / args.steps * 1e3:.1f}"
        if args.sync_debug:
            row["host syncs/step"] = C.count_sync_points(step, device)
    except Exception as error:  # noqa: BLE001 - an OOM row is a result
        if not C.is_oom(error):
            raise
        row.update({"step ms (median)": "OOM", "samples/s": "OOM", **C.peak_memory(device)})
    finally:
        del model, optimizer, feed, loader
        C.free_memory(device)
    return row


# --------------------------------------------------------------------------------------------- pos-conv kernel
def bench_pos_conv_kernel(args, config, device):
    """Forward / forward+backward of the positional conv module (weight-normed grouped Conv1d, SamePad, GELU)."""
    ecg = config.ecg_config
    channels, kernel, groups = ecg.encoder_embed_dim, ecg.conv_pos, ecg.conv_pos_groups
    length = ecg.num_tokens() if hasattr(ecg, "num_tokens") else 312
    rows = []
    torch.manual_seed(args.seed)
    conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=groups)
    conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2).to(device)
    trim = 1 if kernel % 2 == 0 else 0
    for batch_size, dtype_mode in itertools.product(args.batch_size, args.dtype):
        if dtype_mode == "bf16":
            conv.to(torch.bfloat16)
        else:
            conv.float()
        x = torch.randn(batch_size, channels, length, device=device, dtype=C.input_dtype(dtype_mode))
        reference = None
        for impl in args.conv_pos:
            def forward():
                with C.autocast_context(device, dtype_mode):
                    y = conv1d_forward(conv, xg, impl)
                    return torch.nn.functional.gelu(y[..., : y.shape[-1] - trim])

            row = {"batch": batch_size, "channels": channels, "tokens": length, "kernel": kernel, "groups": groups,
                   "dtype": dtype_mode, "impl": impl}
            try:
                xg = x.detach().requires_grad_(True)
                C.free_memory(device)
                C.reset_peak_memory(device)
                times = {"fwd": [], "fwd+bwd": []}
                for step in range(args.warmup + args.steps):
                    for name in times:
                        C.synchronize(device)
                        start = time.perf_counter()
                        if name == "fwd":
                            with torch.no_grad():
                                y = forward()
                        else:
                            y = forward()
                            y.float().sum().backward()
                        C.synchronize(device)
                        if step >= args.warmup:
                            times[name].append(time.perf_counter() - start)
                        conv.zero_grad(set_to_none=True)
                        xg.grad = None
                with torch.no_grad():
                    out = forward().float()
                if reference is None:
                    reference = out
                error = (out - reference).abs().max().item() / (reference.abs().max().item() + 1e-12)
                row.update({
                    "fwd ms (median)": f"{C.summarize(times['fwd'])['median'] * 1e3:.2f}",
                    "fwd+bwd ms (median)": f"{C.summarize(times['fwd+bwd'])['median'] * 1e3:.2f}",
                    "max rel. diff vs first impl": f"{error:.1e}",
                    **C.peak_memory(device),
                })
            except Exception as error:  # noqa: BLE001
                if not C.is_oom(error):
                    raise
                row["fwd ms (median)"] = "OOM"
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- vs official
def _official_step(official, ets, optimizer, batch, device, amp: bool):
    """One official training step, the losses as the shared tool bench_reference.py computes them."""
    functional = torch.nn.functional
    ecg, ids, attn, labels, aligned = batch
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        out = official(ecg=ecg, text=ids, ecg_padding_mask=None, text_attention_mask=attn, mask=True)
        sample = {"net_input": {"ecg": ecg}, "mlm_labels": labels, "is_aligned": aligned}
        logits, targets = official.get_logits(out), official.get_targets(sample, out, True)
        mlm = functional.cross_entropy(logits["mlm_logits"].float(), targets["mlm_target"], ignore_index=-100)
        mem = (((logits["mem_logits"].float() - targets["mem_target"]) ** 2).mean(-1) * out["mem_masks"]).sum() \
            / out["mem_masks"].sum()
        etm = functional.cross_entropy(logits["etm_logits"].float(), targets["etm_target"])
        f1, f2 = logits["ets_uni_modal_feats"]
        loss = mlm + mem + etm + ets(f1.float(), f2.float(), targets["etm_target"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def run_vs_official(args, device):
    from dbeta_hf.evaluation.embeddings import cpu_supports_bf16

    batch_size = args.batch_size[0] if args.batch_size else 4
    text_length = args.text_length if args.text_length != 128 else 64  # the comparison's default text: 64
    steps = args.steps if args.steps is not None else 3
    warmup = args.warmup if args.warmup is not None else 1
    native = device.type == "cuda" or cpu_supports_bf16()
    compile_mode = "bf16-autocast" if native else "fp32"
    batch = synthetic_batch(_official_config(args), batch_size, text_length, device, "fp32", args.full_text, args.seed)
    official_batch = (batch["ecg_values"], batch["input_ids"], batch["attention_mask"], batch["mlm_labels"],
                      batch["match_labels"].float())
    variants = [("official", "fp32")] + ([("official", "bf16-autocast")] if args.official_bf16 else []) + [
        ("ours", "fp32"), ("ours", "bf16-autocast")] + ([] if args.no_compile_row else [("ours, torch.compile", compile_mode)])
    rows, official_seconds, config = [], None, None
    for code, dtype_mode in variants:
        print(f"[bench] {code} {dtype_mode}", flush=True)
        official, ours, modules = C.official_workload(args.official_src, ecg_layers=args.ecg_layers,
                                                      fusion_layers=args.fusion_layers, t5_layers=args.t5_layers,
                                                      seed=args.seed)
        config = ours.config
        if code == "official":
            del ours
            model = official.to(device).train()
            ets = modules["ETSLoss"]()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)  # as bench_reference.py

            def step():
                return _official_step(model, ets, optimizer, official_batch, device, dtype_mode != "fp32")
        else:
            del official
            model = ours.to(device).train()
            optimizer = make_optimizer(model, args.optimizer, device)
            forward = torch.compile(model, mode=args.compile_mode) if "compile" in code else model

            def step():
                with C.autocast_context(device, dtype_mode):
                    out = forward(**batch, return_mlm_logits=False)
                out.loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                return out.loss.detach()

        torch.manual_seed(args.seed + 1)
        start = time.perf_counter()
        for _ in range(max(warmup, 3 if "compile" in code else 1)):
            loss = step()
        first = time.perf_counter() - start
        per_step, cpu = [], time.process_time()
        wall = time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = step()
            C.synchronize(device)
            per_step.append(time.perf_counter() - t0)
        seconds = (time.perf_counter() - wall) / steps
        cpu = (time.process_time() - cpu) / steps
        if official_seconds is None:
            official_seconds = seconds
        rows.append({
            "code": code, "precision": dtype_mode, "batch": batch_size, "text": text_length,
            "step ms (median)": f"{C.summarize(per_step)['median'] * 1e3:.0f}",
            "step ms (mean)": f"{seconds * 1e3:.0f}",
            "CPU s/step": f"{cpu:.2f}",
            "time vs official fp32": f"{seconds / official_seconds:.2f}x",
            "loss": f"{float(loss):.3f}",
            "warm-up s": f"{first:.1f}",
        })
        print(f"[bench] {rows[-1]}", flush=True)
        del model, optimizer
        if "compile" in code:
            torch._dynamo.reset()
        C.free_memory(device)
    settings = {"workload": f"pretraining step, official config with {args.ecg_layers} x 768 ECG tower, "
                            f"{args.fusion_layers} fusion layers, T5 {args.t5_layers} x 768; batch {batch_size}, "
                            f"text {text_length}, all four losses, AdamW", "config": C.config_summary(config),
                "steps": steps, "warmup": warmup, "official code": str(C.official_source(args.official_src)),
                "optimizer (ours)": f"AdamW ({args.optimizer})"}
    notes = ["same random initial weights in every row (the official model's, through the converter's key map); "
             "each row starts from them; time vs official fp32 = this row's mean step time / the official fp32 one",
             "the two codes' masking draws and negatives differ: the losses are comparable, not equal",
             f"compiled row: torch.compile(model) in {compile_mode}",
             "CPU s/step: process CPU time (all threads) per step, less sensitive to other processes than wall time",
             "the machine's load average is in the environment line: on a loaded machine the times are noisy"]
    C.emit_report(args.title or "Pretraining step: official fp32 vs ours (same weights)", C.environment(device),
                  settings, rows, None, notes=notes, output=args.output, json_path=args.json)
    return rows


def _official_config(args):
    """The package config of the comparison's workload (for the synthetic batch: vocabulary, leads, samples)."""
    from dbeta_hf.conversion.convert_original_checkpoint import from_original_config

    return from_original_config({"encoder_layers": args.ecg_layers})


# --------------------------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    device = C.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_official:
        C.quiet_libraries()
        return run_vs_official(args, device)
    _defaults(args, device)
    C.quiet_libraries()
    config = C.build_config(args.preset, args.hidden, args.overrides)
    env = C.environment(device)
    settings = {"preset": args.preset, "config": C.config_summary(config), "steps": args.steps, "warmup": args.warmup}

    if args.pos_conv_kernel:
        rows = bench_pos_conv_kernel(args, config, device)
        C.emit_report(args.title or "Positional convolution kernel: direct Conv1d vs FFT (forward, forward+backward)",
                      env, settings, rows, None,
                      notes=["module: weight-normed grouped Conv1d (padding K/2) -> drop last frame -> GELU; "
                             "times are medians over the timed steps with a device sync around each"],
                      output=args.output, json_path=args.json)
        return rows

    ckpts = C.expand_choice(args.gradient_checkpointing, ["off", "on"])
    compiles = C.expand_choice(args.compile, ["off", "on"])
    variants = list(itertools.product(args.batch_size, args.dtype, args.attn, args.conv_pos, ckpts, compiles))
    corpus, cleanup, notes = None, None, []
    if args.end_to_end:
        corpus, corpus_info, cleanup = load_corpus(args, max(args.batch_size))
        settings.update({"data": corpus_info, "num_workers": args.num_workers, "tokenizer": Path(args.tokenizer).name})
    settings.update({"optimizer": f"AdamW ({args.optimizer})", "flops": args.flops,
                     "peak FLOP/s": C.default_peak_flops(device, args.peak_flops) or "n/a"})
    flop_cache: dict = {}
    rows = []
    try:
        for variant in variants:
            print(f"[bench] {variant}", flush=True)
            row = run_row(args, config, device, variant, flop_cache, corpus)
            info = row.pop("_loader_info", None)
            if info and info not in notes:
                notes.append(info)
            rows.append(row)
            if compiles != ["off"]:
                torch._dynamo.reset()
            C.free_memory(device)
    except KeyboardInterrupt:  # e.g. the suite's time limit: report the rows that finished
        notes.append(f"INTERRUPTED after {len(rows)} of {len(variants)} rows")
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    with torch.device("meta"):
        params = C.count_parameters(DBetaForPreTraining(config))
    settings["parameters"] = f"{params:.1f}M"
    if args.preset == "official" and not args.overrides and args.flops == "count":
        notes.append(f"reference: the issue's arithmetic count is {C.OFFICIAL_TRAIN_GFLOP_PER_SAMPLE:.0f} GFLOP/sample "
                     "(default config, text 128); GFLOP/sample here is FlopCounterMode's count at this text length")
    notes.append("samples/s = batch x timed steps / wall time (device synchronised before and after); step ms from "
                 + ("CUDA events" if device.type == "cuda" else "perf_counter"))
    C.emit_report(args.title or f"Pretraining step ({'end-to-end' if args.end_to_end else 'model only'})", env,
                  settings, rows, None, notes=notes, output=args.output, json_path=args.json)
    return rows


if __name__ == "__main__":
    main()
