#!/usr/bin/env python
"""Time `DBetaPreTrainingCollator` on batches of demo rows (ms per batch, median of N).

The rows come from the synthetic demo corpus (`make_synthetic_corpus`: float16 (12, 5000) millivolt ECGs and their
reports), read as `examples/pretrain.py` hands them to the collator (``--format torch``, the default) or in another
`datasets` format. Each timed call collates the same ``--batch-size`` rows with the demo's collator settings (the
tiny test tokenizer, in-batch negatives, lead masking), so the time is the collator's own: ECG extraction and checks,
tokenisation, negatives, masking.

``--per-record`` sends every ECG through the feature extractor's per-record path (the code before its batch path,
kept for the records that need it), to compare both in one process. ``--package-root DIR`` imports ``dbeta_hf`` from
another checkout (e.g. ``/work/main``) to time that code with the same script.

Examples::

    python benchmarks/bench_collator.py                    # this checkout, batch path
    python benchmarks/bench_collator.py --per-record       # this checkout, per-record path
    python benchmarks/bench_collator.py --package-root /work/main --repeats 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TINY_TOKENIZER = ROOT / "tests" / "fixtures" / "tiny_t5_tokenizer"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--batch-size", type=int, default=16, help="rows per batch (default 16)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls; the median is reported (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--format", choices=["torch", "numpy", "python", "float16"], default="torch",
                        help="how the rows reach the collator: a datasets format (torch, as examples/pretrain.py; "
                             "numpy; python: nested lists) or float16 numpy arrays (default torch)")
    parser.add_argument("--per-record", action="store_true",
                        help="force the feature extractor's per-record path (no batch path)")
    parser.add_argument("--package-root", type=Path, default=ROOT,
                        help="checkout whose dbeta_hf is imported (default: this one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a DataLoader worker)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--batch-size and --repeats must be >= 1, --warmup >= 0")
    return args


def demo_rows(batch_size: int, fmt: str) -> list[dict]:
    import numpy as np
    from dbeta_hf.data.synthetic import make_synthetic_corpus

    corpus = make_synthetic_corpus(batch_size, seed=0)
    if fmt == "float16":
        return [{**row, "ecg": np.asarray(row["ecg"], dtype=np.float16)} for row in corpus.with_format("numpy")]
    return [dict(row) for row in corpus.with_format(None if fmt == "python" else fmt)]


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(args.package_root.resolve()))
    import torch
    from transformers import AutoTokenizer

    import dbeta_hf
    from dbeta_hf.feature_extraction_dbeta import DBetaECGFeatureExtractor
    from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator

    torch.set_num_threads(args.threads)
    if args.per_record:
        if not hasattr(DBetaECGFeatureExtractor, "_uniform_items"):
            sys.exit("--per-record: this dbeta_hf has no batch path (it is per-record already)")
        DBetaECGFeatureExtractor._uniform_items = lambda self, *a: []
    rows = demo_rows(args.batch_size, args.format)
    collator = DBetaPreTrainingCollator(AutoTokenizer.from_pretrained(TINY_TOKENIZER), num_samples=5000)
    for _ in range(args.warmup):
        collator(rows)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        collator(rows)
        times.append((time.perf_counter() - start) * 1e3)
    path = "per-record" if args.per_record or not hasattr(DBetaECGFeatureExtractor, "_uniform_items") else "batch"
    print(f"dbeta_hf from {Path(dbeta_hf.__file__).parent}; path: {path}; format: {args.format}; "
          f"batch {args.batch_size}; torch threads {args.threads}")
    print(f"collator: {statistics.median(times):.1f} ms per batch (median of {args.repeats}; "
          f"min {min(times):.1f}, max {max(times):.1f})")


if __name__ == "__main__":
    main()
