#!/usr/bin/env python
"""Throughput of the dbeta_hf.data builders: records/s when building, ECGs/s when reading batches.

What it does:

1. writes a synthetic MIMIC-IV-ECG tree (the real layout: record_list.csv, machine_measurements.csv,
   files/pXXXX/pSUBJECT/sSTUDY/STUDY.{hea,dat}, 12 x 5000 at 500 Hz, gain 200/mV) with the fixture
   writer of tests/data_fixtures.py;
2. builds it with `load_mimic_iv_ecg` for each ``--num-proc`` value (fresh cache each time) and reports
   records/s (WFDB read + checks + float16 conversion + Arrow write);
3. reads the memory-mapped Arrow store back in batches of ``--batch-size`` (12 x 5000 float16 ECGs) on
   ONE CPU core (the process is pinned with sched_setaffinity and torch uses one thread), with
   ``with_format("numpy")``, ``with_format("torch")``, random-index batches, and a torch DataLoader;
   reports ECGs/s. The target is >= 5,000 ECGs/s on one core.

The store is read after it was written, so it is in the OS page cache: the read numbers measure the
Arrow -> numpy/torch path, not the disk.

Usage:
    python benchmarks/bench_data.py                       # 1,000 records, build with 1 and 2 processes
    python benchmarks/bench_data.py --records 4000 --num-proc 1,2 --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import datasets
import numpy as np
import pyarrow
import torch
from datasets import concatenate_datasets, load_from_disk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # data_fixtures: the synthetic dataset writers

import data_fixtures as fx  # noqa: E402

from dbeta_hf.data import load_mimic_iv_ecg  # noqa: E402


def write_synthetic_mimic(root: Path, num_records: int) -> float:
    records = [
        fx.MimicRecord(10000000 + i // 3, 40000000 + i, {0: "Sinus rhythm", 1: f"Report {i % 97}", 4: "Normal ECG"}, seed=i)
        for i in range(num_records)
    ]
    start = time.perf_counter()
    fx.write_mimic_iv_ecg(root, records)
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the build workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_build(root: Path, work: Path, num_proc: int, shard_size: int) -> dict:
    cache = work / f"cache-np{num_proc}"
    shutil.rmtree(cache, ignore_errors=True)
    cpu, start = _cpu_seconds(), time.perf_counter()
    dd, summary = load_mimic_iv_ecg(
        root, num_proc=num_proc, cache_dir=cache, shard_size=shard_size, validation_fraction=0.01, return_summary=True
    )
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    size = sum(f.stat().st_size for f in cache.rglob("*.arrow"))
    return {
        "num_proc": num_proc,
        "records": summary.records_found,
        "loaded": summary.records_loaded,
        "wall_seconds": round(seconds, 2),
        "records_per_s": round(summary.records_found / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "records_per_cpu_s": round(summary.records_found / cpu, 1),
        "arrow_bytes_per_ecg": int(size / max(1, summary.records_loaded)),
        "cache": str(cache),
    }


def _pin_one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (sched_setaffinity unavailable)"


def _measure(fn, total_items: int, min_seconds: float) -> dict:
    """Call `fn` (returns the number of ECGs it read) until `min_seconds` and `total_items` are reached.

    Returns ECGs per wall-clock second and per CPU second of this (single-threaded, pinned) process; the
    second is the robust number on a machine shared with other jobs.
    """
    fn()  # warm-up (page cache, formatter set-up)
    items, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        items += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and items >= total_items:
            return {
                "ecg_per_s": round(items / elapsed),
                "ecg_per_cpu_s": round(items / max(time.process_time() - cpu, 1e-9)),
            }


def bench_read(cache: Path, batch_size: int, min_seconds: float) -> dict:
    torch.set_num_threads(1)
    pinned = _pin_one_core()
    # Re-open the cached build as the loaders do: memory-mapped shards, concatenated without a copy.
    shard_dirs = sorted(p for p in cache.rglob("shards/train-*") if (p / "state.json").exists())
    ds = concatenate_datasets([load_from_disk(str(p)) for p in shard_dirs])
    n = len(ds)
    starts = list(range(0, n - batch_size + 1, batch_size))
    results = {"affinity": pinned, "rows": n, "batch_size": batch_size}

    position = {"i": 0}

    def sequential(formatted, check):
        def read():
            i = starts[position["i"] % len(starts)]
            position["i"] += 1
            check(formatted[i : i + batch_size]["ecg"])
            return batch_size

        return read

    def shape_ok(batch):
        assert tuple(batch.shape) == (batch_size, 12, 5000)

    variants = {
        "numpy (float32, the default)": ds.with_format("numpy", columns=["ecg"]),
        "numpy, dtype=np.float16 (no upcast)": ds.with_format("numpy", columns=["ecg"], dtype=np.float16),
        "torch (float32, the default)": ds.with_format("torch", columns=["ecg"]),
        "torch, dtype=torch.float16": ds.with_format("torch", columns=["ecg"], dtype=torch.float16),
    }
    for name, formatted in variants.items():
        results[f"sequential batches, {name}"] = _measure(sequential(formatted, shape_ok), n, min_seconds)

    torch_ds = variants["torch (float32, the default)"]
    order = np.random.default_rng(0).permutation(n)

    def torch_random():
        i = starts[position["i"] % len(starts)]
        position["i"] += 1
        shape_ok(torch_ds[order[i : i + batch_size].tolist()]["ecg"])
        return batch_size

    results["random-index batches, torch (float32)"] = _measure(torch_random, n, min_seconds)

    loader = torch.utils.data.DataLoader(torch_ds, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)

    def dataloader_epoch():
        count = 0
        for batch in loader:
            count += batch["ecg"].shape[0]
        return count

    results["torch DataLoader, shuffle=True, num_workers=0 (float32)"] = _measure(dataloader_epoch, n, min_seconds)

    # Whole-batch reads: the sampler yields lists of indices and the dataset returns a batched dict, which
    # avoids splitting the batch into rows and stacking it again (what `shuffle=True` + default collate does).
    batch_sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(torch_ds), batch_size=batch_size, drop_last=True
    )
    batched_loader = torch.utils.data.DataLoader(torch_ds, sampler=batch_sampler, batch_size=None, num_workers=0)

    def batched_epoch():
        count = 0
        for batch in batched_loader:
            count += batch["ecg"].shape[0]
        return count

    results["torch DataLoader, BatchSampler(RandomSampler), num_workers=0 (float32)"] = _measure(
        batched_epoch, n, min_seconds
    )
    first = torch_ds[0]["ecg"]
    results["torch_dtype"] = str(first.dtype)
    results["stored_dtype"] = str(ds.features["ecg"].dtype)
    return results


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, datasets {datasets.__version__}, "
        f"pyarrow {pyarrow.__version__}, torch {torch.__version__}, {platform.system()} {platform.release()}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark dbeta_hf.data: build throughput (records/s) and Arrow read throughput (ECGs/s, one core).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--records", type=int, default=1000, help="synthetic MIMIC-IV-ECG records to write and build")
    parser.add_argument("--num-proc", default="1,2", help="comma-separated worker counts to build with")
    parser.add_argument("--shard-size", type=int, default=250, help="records per build shard")
    parser.add_argument("--batch-size", type=int, default=64, help="ECGs per read batch")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="minimum duration of each read measurement")
    parser.add_argument("--work-dir", help="where to write the synthetic data and caches (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_data_"))
    work.mkdir(parents=True, exist_ok=True)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "records": args.records,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        root = work / "mimic-iv-ecg"
        if not (root / "record_list.csv").exists():
            results["write_seconds"] = round(write_synthetic_mimic(root, args.records), 1)
        builds = [bench_build(root, work, int(k), args.shard_size) for k in args.num_proc.split(",")]
        results["build"] = builds
        for b in builds:
            print(f"build num_proc={b['num_proc']}: {b['records']} records in {b['wall_seconds']} s = "
                  f"{b['records_per_s']} records/s wall, {b['records_per_cpu_s']} records per CPU second "
                  f"({b['arrow_bytes_per_ecg']} Arrow bytes per ECG)")
        results["read"] = bench_read(Path(builds[0]["cache"]), args.batch_size, args.min_seconds)
        for key, value in results["read"].items():
            print(f"read {key}: {value}")
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
