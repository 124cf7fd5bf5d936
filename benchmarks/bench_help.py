#!/usr/bin/env python
"""Wall time of every example's ``--help`` and of ``import dbeta_hf``, each in a fresh interpreter (what a user
waits for), the median of ``--repeats`` runs.

    python benchmarks/bench_help.py                 # every script in examples/, 5 runs each
    python benchmarks/bench_help.py --repeats 10 --json help_times.json

The target (issue #26) is under 3 s per script on idle cores. Run it on an otherwise idle machine: the time is
dominated by importing Python modules, which a busy disk or CPU slows several-fold. The CI test
(`tests/test_example_help.py`) checks what keeps it fast (no model, processor, Trainer, metric or data module is
imported before the arguments are parsed), not a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import cpu_model  # benchmarks/_common.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 3.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (the median is reported)")
    parser.add_argument("--scripts", nargs="+", default=None,
                        help="example scripts to time (default: every examples/*.py)")
    parser.add_argument("--json", default=None, help="also write the timings to this JSON file")
    return parser.parse_args(argv)


def time_command(command: list[str], repeats: int) -> list[float]:
    """Wall seconds of `repeats` runs of `command` (offline, output discarded); a failing run is an error."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    return times


def main(argv=None) -> dict:
    args = parse_args(argv)
    scripts = args.scripts or sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.py"))
    commands = {"import dbeta_hf": [sys.executable, "-c", "import dbeta_hf"]}
    commands.update({f"{script} --help": [sys.executable, script, "--help"] for script in scripts})
    rows = {}
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}; median of {args.repeats} runs")
    print(f"| command | median (s) | min (s) | max (s) | under {TARGET_SECONDS:g} s |")
    print("|---|---|---|---|---|")
    for name, command in commands.items():
        times = time_command(command, args.repeats)
        median = statistics.median(times)
        rows[name] = {"median": median, "min": min(times), "max": max(times), "runs": times}
        print(f"| `{name}` | {median:.2f} | {min(times):.2f} | {max(times):.2f} | "
              f"{'yes' if median < TARGET_SECONDS else 'NO'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
