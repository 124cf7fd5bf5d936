#!/usr/bin/env python
"""Benchmark the N3S index build, negative sampling and the pretraining collator.

Index build: random unit embeddings (``--dim``, 512 = flan-t5-small) for ``--num-reports`` distinct reports, so
only the search is timed; ``--encoder PATH`` (a T5 checkpoint with its tokenizer) or ``--tiny-encoder`` (a
random 1-layer T5 with the test tokenizer) also times the embedding step on ``--encoder-reports`` reports.
The search costs O(U^2 d), so the time is extrapolated quadratically to ``--extrapolate`` reports (800,000).

Sampling: ``N3SIndex.sample_negative`` for a batch of ``--batch-size`` ids (and the text look-up around it),
and with ``--collator`` the whole ``DBetaPreTrainingCollator`` call on rows of float16 (12, 5000) ECGs.

Examples::

    python benchmarks/bench_n3s.py --num-reports 20000 40000
    python benchmarks/bench_n3s.py --num-reports 800000 --device cuda     # on a GPU
    python benchmarks/bench_n3s.py --num-reports 2000 --tiny-encoder --collator --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, T5Config, T5EncoderModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator  # noqa: E402
from dbeta_hf.pretraining.n3s import build_n3s_index_from_embeddings, embed_reports  # noqa: E402

TINY_TOKENIZER = ROOT / "tests" / "fixtures" / "tiny_t5_tokenizer"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RSSPeak:
    """Highest resident set size seen while the block runs (polled every 5 ms from a thread)."""

    def __enter__(self):
        self.start_mb = self.peak_mb = rss_mb()
        self._stop = threading.Event()

        def poll():
            while not self._stop.wait(0.005):
                self.peak_mb = max(self.peak_mb, rss_mb())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())

    @property
    def increase_mb(self) -> float:
        return self.peak_mb - self.start_mb


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        info["cpu"] = model or info["cpu"]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_build(num_reports: int, args) -> dict:
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(num_reports, args.dim, generator=gen)
    reports = [f"report {i}" for i in range(num_reports)]
    device = torch.device(args.device) if args.device else None
    use_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if use_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with RSSPeak() as memory:
        start = time.perf_counter()
        index = build_n3s_index_from_embeddings(
            reports, emb, k=args.k, strategy=args.strategy, similarity_ceiling=args.similarity_ceiling,
            backend=args.backend, device=device, chunk_size=args.chunk_size, max_chunk_mb=args.max_chunk_mb,
            progress=not args.quiet,
        )
        if use_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    result = {
        "num_reports": num_reports,
        "dim": args.dim,
        "k": index.k,
        "strategy": args.strategy,
        "backend": args.backend,
        "build_seconds": round(seconds, 3),
        "search_seconds": index.settings["search_seconds"],
        "ns_per_pair": round(seconds / num_reports**2 * 1e9, 3),
        "rss_increase_mb": round(memory.increase_mb, 1),
        "table_mb": round(index.negatives.numel() * 4 / 2**20, 1),
        "embeddings_mb": round(num_reports * args.dim * 4 / 2**20, 1),
    }
    if use_cuda:
        result["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result, index


def bench_sampling(index, args) -> dict:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, len(index), (args.iters, args.batch_size), generator=gen)
    texts = [[index.reports[i] for i in row.tolist()] for row in ids[: min(args.iters, 200)]]
    for row in ids[:10]:
        index.sample_negative(row, gen)
    times = []
    for row in ids:
        t0 = time.perf_counter()
        index.sample_negative(row, gen)
        times.append(time.perf_counter() - t0)
    lookup = []
    for batch in texts:  # what the collator does: normalized texts -> ids -> negative ids -> negative texts
        t0 = time.perf_counter()
        neg = index.sample_negative(index.report_ids(batch, normalize=False), gen)
        _ = [index.reports[j] for j in neg.tolist()]
        lookup.append(time.perf_counter() - t0)
    return {
        "batch_size": args.batch_size,
        "sample_negative_us_median": round(statistics.median(times) * 1e6, 1),
        "sample_negative_us_p99": round(float(np.percentile(times, 99)) * 1e6, 1),
        "lookup_sample_fetch_us_median": round(statistics.median(lookup) * 1e6, 1),
    }


def bench_collator(index, args) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    collator = DBetaPreTrainingCollator(tokenizer, index)
    rng = np.random.default_rng(0)
    ecg = rng.standard_normal((args.batch_size, 12, 5000)).astype(np.float16)
    times = []
    for step in range(args.collator_iters + 2):
        picks = rng.integers(0, len(index), args.batch_size)
        rows = [{"ecg": ecg[i], "report": index.reports[j], "idx": step * 1000 + i} for i, j in enumerate(picks)]
        t0 = time.perf_counter()
        collator(rows)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    return {"collator_ms_median": round(statistics.median(times) * 1e3, 2), "tokenizer": str(args.tokenizer)}


def bench_encoder(args) -> dict:
    if args.tiny_encoder:
        tokenizer = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
        config = T5Config(vocab_size=500, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                          feed_forward_proj="gated-gelu")
        model, name = T5EncoderModel(config), "tiny random T5 (d_model 32)"
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.encoder)
        model, name = T5EncoderModel.from_pretrained(args.encoder), args.encoder
    words = ["sinus", "rhythm", "bradycardia", "atrial", "fibrillation", "left", "bundle", "branch", "block",
             "normal", "ecg", "abnormal", "st", "elevation", "t", "wave", "inversion", "qt", "prolonged"]
    rng = np.random.default_rng(0)
    reports = [" ".join(rng.choice(words, rng.integers(3, 25))) for _ in range(args.encoder_reports)]
    start = time.perf_counter()
    emb = embed_reports(reports, model=model, tokenizer=tokenizer, device=args.device, batch_size=128,
                        progress=not args.quiet)
    seconds = time.perf_counter() - start
    return {"encoder": name, "reports": len(reports), "dim": int(emb.shape[1]), "embed_seconds": round(seconds, 3),
            "reports_per_second": round(len(reports) / seconds, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-reports", type=int, nargs="+", default=[20000], help="index sizes to build")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (512 = flan-t5-small)")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--strategy", choices=["dissimilar", "hard"], default="dissimilar")
    parser.add_argument("--similarity-ceiling", type=float, default=0.9)
    parser.add_argument("--backend", choices=["torch", "faiss"], default="torch")
    parser.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--max-chunk-mb", type=float, default=None, help="chunk memory budget (default 1024 CPU, 4096 CUDA)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size for the sampling benchmarks")
    parser.add_argument("--iters", type=int, default=2000, help="sampling repetitions")
    parser.add_argument("--collator", action="store_true", help="also time DBetaPreTrainingCollator per batch")
    parser.add_argument("--collator-iters", type=int, default=20)
    parser.add_argument("--tokenizer", default=str(TINY_TOKENIZER), help="tokenizer for --collator")
    parser.add_argument("--encoder", default=None, help="T5 checkpoint path to time the embedding step")
    parser.add_argument("--tiny-encoder", action="store_true", help="time the embedding step with a tiny random T5")
    parser.add_argument("--encoder-reports", type=int, default=2000)
    parser.add_argument("--extrapolate", type=int, default=800000, help="report count to extrapolate to")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = {"machine": machine(), "builds": []}
    index = None
    for n in args.num_reports:
        build, index = bench_build(n, args)
        results["builds"].append(build)
        print(json.dumps(build))
    largest = results["builds"][-1]
    n, t = largest["num_reports"], largest["build_seconds"]
    target = args.extrapolate
    results["extrapolation"] = {
        "num_reports": target,
        "build_seconds_quadratic": round(t * (target / n) ** 2, 1),
        "embeddings_mb": round(target * args.dim * 4 / 2**20, 1),
        "table_mb": round(target * args.k * 4 / 2**20, 1),
        "chunk_rows_at_budget": int(max(1, (args.max_chunk_mb or (4096 if torch.cuda.is_available() else 1024)) * 2**20 // (8 * target))),
    }
    print(json.dumps({"extrapolation": results["extrapolation"]}))
    results["sampling"] = bench_sampling(index, args)
    print(json.dumps({"sampling": results["sampling"]}))
    if args.collator:
        results["collator"] = bench_collator(index, args)
        print(json.dumps({"collator": results["collator"]}))
    if args.encoder or args.tiny_encoder:
        results["encoder"] = bench_encoder(args)
        print(json.dumps({"encoder": results["encoder"]}))
    print(json.dumps({"machine": results["machine"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
