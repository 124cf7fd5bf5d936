#!/usr/bin/env python
"""D-BETA embedding throughput: ECG embeddings/s (`DBetaModel.get_ecg_features`) and text embeddings/s
(`DBetaModel.get_text_features`), in eval mode under `torch.inference_mode`.

Rows: every combination of ``--what`` (ecg, text), ``--dtype`` (fp32 | bf16-autocast | bf16 weights),
``--conv-pos`` (conv | fft; ECG rows only) and ``--compile`` (off | on | both). Inputs are random tensors already
on the device: (B, 12, 5000) ECGs, and (B, ``--text-length``) token ids with random report lengths, padded.
Throughput = items x timed batches / wall time (device synchronised before and after).

``--vs-official`` instead prints one table on the same (random) weights: the official code's ECG embedding in
fp32 (``models.processor.get_ecg_feats``, imported from ``--official-src`` / ``$DBETA_REF_SRC``), ours in fp32,
bf16 autocast, bf16 weights and compiled, with each row's speed-up over the official fp32 and the cosine similarity
of its embeddings to the official ones. The workload: the official 8 x 768 ECG tower, batch 4 (``--ecg-layers``,
``--batch-size``).

Examples::

    DBETA_REF_SRC=/work/ref/dbeta python benchmarks/bench_embed.py --vs-official   # the CPU fast-path table
    python benchmarks/bench_embed.py                                  # tiny config on the CPU
    python benchmarks/bench_embed.py --preset official --batch-size 8 --steps 3
    python benchmarks/bench_embed.py --preset official --batch-size 256 --dtype fp32 bf16-autocast \\
        --conv-pos conv fft --compile both                            # on an H100
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

from dbeta_hf import DBetaModel  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=["tiny", "official"], default=None,
                   help="model configuration (default: official on CUDA, tiny on the CPU)")
    p.add_argument("--hidden", type=int, default=None, help="width of the tiny preset (default 32)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set ecg_config.encoder_layers=4 (repeatable)")
    p.add_argument("--what", nargs="+", choices=["ecg", "text"], default=["ecg", "text"], help="which embeddings")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="batch size(s) (default: 256 on CUDA, 8 on the CPU)")
    p.add_argument("--text-length", type=int, default=128, help="tokens per report after padding (default 128)")
    p.add_argument("--full-text", action="store_true", help="every text position is a real token")
    p.add_argument("--dtype", nargs="+", choices=C.DTYPES, default=None,
                   help="fp32 | bf16-autocast | bf16 (weights); default fp32 and bf16-autocast on CUDA, fp32 on CPU")
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="attention backend")
    p.add_argument("--conv-pos", nargs="+", choices=["conv", "fft"], default=["conv"],
                   help="positional convolution implementation(s) for the ECG rows")
    p.add_argument("--compile", nargs="?", const="on", default="off", choices=["on", "off", "both"],
                   help="torch.compile the embedding function")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: torch's default)")
    p.add_argument("--steps", type=int, default=None, help="timed batches (default 20 on CUDA, 3 on the CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches first (default 3 on CUDA, 1 on the CPU)")
    p.add_argument("--peak-flops", type=float, default=None,
                   help="peak FLOP/s for MFU (default 989e12 on CUDA; 0 = n/a)")
    p.add_argument("--flops", choices=["count", "none"], default="count",
                   help="count FLOPs per item with FlopCounterMode (direct conv, eager attention) on a batch of 2")
    p.add_argument("--device", default="auto", help="cuda / cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vs-official", action="store_true",
                   help="official fp32 vs ours fp32 / bf16 / compiled on the same weights (ECG embedding)")
    p.add_argument("--official-src", default=None, help="the official code's folder (default $DBETA_REF_SRC)")
    p.add_argument("--ecg-layers", type=int, default=8, help="--vs-official: ECG transformer layers (default 8)")
    p.add_argument("--no-compile-row", action="store_true", help="--vs-official: skip the torch.compile row")
    p.add_argument("--title", default=None)
    p.add_argument("--output", default=None, help="append the markdown to this file")
    p.add_argument("--json", default=None, help="write the rows as JSON to this file")
    return p.parse_args(argv)


def _defaults(args, device):
    cuda = device.type == "cuda"
    args.preset = args.preset or ("official" if cuda else "tiny")
    args.batch_size = args.batch_size or ([256] if cuda else [8])
    args.dtype = args.dtype or (["fp32", "bf16-autocast"] if cuda else ["fp32"])
    args.steps = args.steps if args.steps is not None else (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)


def make_inputs(config, what, batch_size, args, device, dtype_mode, seed):
    gen = torch.Generator().manual_seed(seed)
    if what == "ecg":
        ecg = torch.randn(batch_size, config.ecg_config.num_leads, config.ecg_config.num_samples, generator=gen) * 0.3
        return (ecg.to(device=device, dtype=C.input_dtype(dtype_mode)),)
    length = args.text_length
    ids = torch.randint(3, min(config.text_config.vocab_size, 32000), (batch_size, length), generator=gen)
    if args.full_text:
        lengths = torch.full((batch_size,), length)
    else:
        lengths = torch.randint(max(2, length // 8), length + 1, (batch_size,), generator=gen)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return (ids * mask).to(device), mask.to(device)


def embed_function(model, what):
    if what == "ecg":
        return lambda ecg: model.get_ecg_features(ecg)
    return lambda ids, mask: model.get_text_features(ids, mask)


def count_flops_per_item(model, config, what, args, device, dtype_mode) -> float:
    inputs = make_inputs(config, what, 2, args, device, dtype_mode, args.seed + 99)
    C.set_conv_pos_impl(model, "conv")
    C.set_attention(model, "eager")
    try:
        # forward only, but with autograd on: FlopCounterMode's module tracker fails under inference_mode on
        # parametrised (weight-normed) modules (torch 2.13)
        with C.autocast_context(device, dtype_mode):
            flops = C.count_flops(lambda: embed_function(model, what)(*inputs))
    finally:
        C.set_attention(model, args.attn)
    return flops / 2


def run_row(args, model, config, device, variant, flop_cache):
    what, batch_size, dtype_mode, conv_pos, compiled = variant
    row = {"embedding": what, "batch": batch_size, "text": args.text_length if what == "text" else "-",
           "dtype": dtype_mode, "pos conv": conv_pos if what == "ecg" else "-", "compile": compiled}
    key = (what, dtype_mode)
    if args.flops == "count" and key not in flop_cache:
        flop_cache[key] = count_flops_per_item(model, config, what, args, device, dtype_mode)
    per_item = flop_cache.get(key)
    C.set_attention(model, args.attn)
    C.set_conv_pos_impl(model, conv_pos)
    fn = embed_function(model, what)
    if compiled == "on":
        fn = torch.compile(fn, mode=args.compile_mode)
    batches = [make_inputs(config, what, batch_size, args, device, dtype_mode, args.seed + i) for i in range(2)]
    try:
        C.free_memory(device)
        C.reset_peak_memory(device)
        with torch.inference_mode(), C.autocast_context(device, dtype_mode):
            start = time.perf_counter()
            for i in range(max(args.warmup, 2) if compiled == "on" else args.warmup):
                out = fn(*batches[i % 2])
            C.synchronize(device)
            warmup = time.perf_counter() - start
            timer = C.StepTimer(device)
            wall = time.perf_counter()
            for i in range(args.steps):
                timer.start()
                out = fn(*batches[i % 2])
                timer.stop()
            C.synchronize(device)
            wall = time.perf_counter() - wall
        seconds = C.summarize(timer.seconds())
        throughput = batch_size * args.steps / wall
        achieved, mfu = C.format_mfu(per_item, throughput, C.default_peak_flops(device, args.peak_flops))
        row.update({
            "batch ms (median)": f"{seconds['median'] * 1e3:.1f}",
            "items/s": f"{throughput:.1f}",
            **C.peak_memory(device),
            "GFLOP/item": f"{per_item / 1e9:.2f}" if per_item else "n/a",
            "TFLOP/s": achieved,
            "MFU": mfu,
            "warmup s": f"{warmup:.1f}",
            "finite": bool(torch.isfinite(out.float()).all()),
        })
    except Exception as error:  # noqa: BLE001
        if not C.is_oom(error):
            raise
        row.update({"batch ms (median)": "OOM", "items/s": "OOM", **C.peak_memory(device)})
    return row


def _run_all(args, config, device, compiles, rows, flop_cache):
    for dtype_mode in args.dtype:
        torch.manual_seed(args.seed)
        with torch.device(device):
            model = DBetaModel(config)
        if dtype_mode == "bf16":
            model.to(torch.bfloat16)
        model.eval()
        for what in args.what:
            impls = args.conv_pos if what == "ecg" else ["conv"]
            for batch_size, conv_pos, compiled in itertools.product(args.batch_size, impls, compiles):
                variant = (what, batch_size, dtype_mode, conv_pos, compiled)
                print(f"[bench] {variant}", flush=True)
                rows.append(run_row(args, model, config, device, variant, flop_cache))
                if compiled == "on":
                    torch._dynamo.reset()
                C.free_memory(device)
        del model
        C.free_memory(device)


# --------------------------------------------------------------------------------------------- vs official
def _time(fn, warmup: int, steps: int, device) -> tuple[float, list[float], torch.Tensor]:
    """Wall seconds of `steps` calls after `warmup` calls, per-call seconds, last output."""
    for _ in range(warmup):
        out = fn()
    C.synchronize(device)
    per_call = []
    wall = time.perf_counter()
    for _ in range(steps):
        start = time.perf_counter()
        out = fn()
        C.synchronize(device)
        per_call.append(time.perf_counter() - start)
    return time.perf_counter() - wall, per_call, out


def run_vs_official(args, device) -> None:
    from dbeta_hf.evaluation.embeddings import bf16_inference_model, cpu_supports_bf16

    batch_size = args.batch_size[0] if args.batch_size else 4
    steps = args.steps if args.steps is not None else 3
    warmup = args.warmup if args.warmup is not None else 1
    official, model, modules = C.official_workload(args.official_src, ecg_layers=args.ecg_layers, seed=args.seed)
    official.to(device).eval()
    model = model.model.to(device).eval()  # DBetaModel
    get_ecg_feats = modules["get_ecg_feats"]
    ecg = torch.randn(batch_size, 12, 5000, generator=torch.Generator().manual_seed(args.seed)).mul(0.3).to(device)
    native = device.type == "cuda" or cpu_supports_bf16()
    ecg_bf16 = ecg.bfloat16() if device.type == "cpu" else ecg
    # the evaluation's CPU bf16 path (extract_ecg_features(precision="bf16")): a bf16-weight copy under autocast
    bf16_weights = bf16_inference_model(model, device, "bf16") if device.type == "cpu" else model
    compile_mode = "bf16" if native else "fp32"
    compiled = torch.compile((bf16_weights if native else model).get_ecg_features, mode=args.compile_mode)

    def autocast(enabled):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    variants = [
        ("official", "fp32", lambda: get_ecg_feats(official, ecg)),
        ("ours", "fp32", lambda: model.get_ecg_features(ecg)),
        ("ours", "bf16-autocast", lambda: _with(autocast(True), model.get_ecg_features, ecg)),
        ("ours", "bf16 (eval path)", lambda: _with(autocast(True), bf16_weights.get_ecg_features, ecg_bf16)),
        ("ours, torch.compile", compile_mode,
         lambda: _with(autocast(compile_mode != "fp32"), compiled, ecg_bf16 if compile_mode != "fp32" else ecg)),
    ]
    if args.no_compile_row:
        variants = variants[:-1]
    rows, reference, official_seconds = [], None, None
    for code, precision, fn in variants:
        print(f"[bench] {code} {precision}", flush=True)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                first = fn()  # compiles the compiled row
        except RuntimeError as error:  # e.g. bf16 SDPA under ATEN_CPU_CAPABILITY=avx2 on an AMX CPU (torch 2.13)
            rows.append({"code": code, "precision": precision, "batch": batch_size,
                         "batch ms (median)": f"error: {str(error).splitlines()[0][:120]}"})
            print(f"[bench] {rows[-1]}", flush=True)
            continue
        first_call = time.perf_counter() - start
        with torch.no_grad():
            cpu = time.process_time()
            wall, per_call, out = _time(fn, max(warmup - 1, 0), steps, device)
            cpu = (time.process_time() - cpu) / (steps + max(warmup - 1, 0))
        per_batch = wall / steps
        out = out.float()
        if reference is None:
            reference, official_seconds = out, per_batch
        cosine = torch.nn.functional.cosine_similarity(out, reference, dim=-1)
        rows.append({
            "code": code, "precision": precision, "batch": batch_size,
            "batch ms (median)": f"{C.summarize(per_call)['median'] * 1e3:.0f}",
            "ECGs/s": f"{batch_size / per_batch:.2f}",
            "CPU s/batch": f"{cpu:.2f}",
            "speed-up vs official fp32": f"{official_seconds / per_batch:.2f}x",
            "min cosine vs official": f"{cosine.min().item():.6f}",
            "first call s": f"{first_call:.1f}",
        })
        print(f"[bench] {rows[-1]}", flush=True)
        del first
    settings = {"workload": f"ECG embedding, official {args.ecg_layers} x 768 ECG tower, batch {batch_size}, "
                            "12 x 5000 samples", "steps": steps, "warmup": warmup, "grad": "torch.no_grad (all rows)",
                "official code": str(C.official_source(args.official_src))}
    notes = ["same random weights in every row (the official model's, through the converter's key map); "
             "speed-up = official fp32 batch time / this row's (mean over the timed batches)",
             "bf16 (eval path): what extract_ecg_features(precision='bf16') runs on a CPU, a bf16-weight copy of "
             "the model under bf16 autocast (on CUDA: bf16 autocast on the fp32 weights)",
             f"compiled row: torch.compile(get_ecg_features) on the {compile_mode} path "
             f"({'bf16 native on this device' if native else 'no native bf16 here: fp32'})",
             "CPU s/batch: process CPU time (all threads) per batch, less sensitive to other processes than wall time",
             "the machine's load average is in the environment line: on a loaded machine the times are noisy"]
    C.emit_report(args.title or "ECG embedding: official fp32 vs ours (same weights)", C.environment(device),
                  settings, rows, None, notes=notes, output=args.output, json_path=args.json)


def _with(context, fn, *inputs):
    with context:
        return fn(*inputs)


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
    compiles = C.expand_choice(args.compile, ["off", "on"])
    rows, flop_cache, notes = [], {}, []
    try:
        _run_all(args, config, device, compiles, rows, flop_cache)
    except KeyboardInterrupt:  # e.g. the suite's time limit: report the rows that finished
        notes.append(f"INTERRUPTED after {len(rows)} rows")
    with torch.device("meta"):
        params = C.count_parameters(DBetaModel(config))
    settings = {"preset": args.preset, "config": C.config_summary(config), "parameters (DBetaModel)": f"{params:.1f}M",
                "attention": args.attn, "steps": args.steps, "warmup": args.warmup,
                "peak FLOP/s": C.default_peak_flops(device, args.peak_flops) or "n/a"}
    notes += ["items/s = batch x timed batches / wall time (device synchronised before and after), eval mode, "
              "torch.inference_mode"]
    if args.preset == "official" and not args.overrides:
        notes.append(f"reference: the issue's arithmetic count is {C.OFFICIAL_EMBED_GFLOP_PER_ECG:.0f} GFLOP per ECG "
                     "embedding; GFLOP/item here is FlopCounterMode's count (direct conv, eager attention)")
    C.emit_report(args.title or "Embedding throughput", env, settings, rows, None, notes=notes, output=args.output,
                  json_path=args.json)
    return rows


if __name__ == "__main__":
    main()
