#!/usr/bin/env python
"""The spread of the embedded demo: `examples/pretrain.py` once per seed and numeric setup, with every number.

    python benchmarks/bench_demo_seeds.py --seeds 0 1 2 3 4 --setups default avx2-1thread

Each run is a fresh process (so that `ATEN_CPU_CAPABILITY` and the thread count apply) that trains the demo with
`--seed S` into a temporary folder and writes `pretraining_report.json` there. The script prints, per setup, the
zero-shot and linear-probe AUROC per class and macro for every seed, their mean / min / max, the wall time of each
run, and the machine (CPU model, the instruction set torch dispatches to, threads, torch / transformers versions).
`--json FILE` saves everything.

Numeric setups stand in for other CPUs: a CPU's kernels (AVX-512 vs AVX2, the thread count that splits a reduction)
round differently, and a few hundred steps of training carry those differences into the final weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model  # benchmarks/_common.py (the script's folder is on sys.path)

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETUPS = {
    "default": {},
    "avx2-1thread": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "1thread": {"OMP_NUM_THREADS": "1"},
}
_PROBE = ("import json, torch, transformers; print(json.dumps({'isa': torch.backends.cpu.get_cpu_capability(), "
          "'threads': torch.get_num_threads(), 'torch': torch.__version__, 'transformers': transformers.__version__}))")


def setup_environment(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")}
    env.update(SETUPS[name])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def describe_setup(name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=setup_environment(name), capture_output=True, text=True,
                         check=True)
    return {"setup": name, "env": SETUPS[name], "cpu": cpu_model(), **json.loads(out.stdout.strip().splitlines()[-1])}


def run_demo(setup: str, seed: int, workdir: Path, extra: list[str]) -> dict:
    out_dir = workdir / f"{setup}-seed{seed}"
    log_path = workdir / f"{setup}-seed{seed}.log"
    command = [sys.executable, str(ROOT / "examples" / "pretrain.py"), "--seed", str(seed), "--output_dir", str(out_dir),
               "--overwrite_output_dir", "true", "--disable_tqdm", "true", *extra]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.run(command, env=setup_environment(setup), stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    report_path = out_dir / "pretraining_report.json"
    if code != 0 or not report_path.is_file():
        raise RuntimeError(f"demo run failed (setup {setup}, seed {seed}, exit code {code}); its log: {log_path}")
    report = json.loads(report_path.read_text())
    return {"setup": setup, "seed": seed, "wall_seconds": round(wall, 1), "zero_shot": report["zero_shot"],
            "linear_probe": report["linear_probe"], "retrieval": report["retrieval"], "log": str(log_path)}


def summarize(runs: list[dict], key: str) -> dict:
    classes = list(runs[0][key]["per_class"])
    table = {c: [r[key]["per_class"][c] for r in runs] for c in classes}
    table["macro"] = [r[key]["macro_auroc"] for r in runs]
    return {name: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)), "values": v}
            for name, v in table.items()}


def format_setup(info: dict, runs: list[dict]) -> str:
    lines = [f"setup {info['setup']}: {info['cpu']}, torch ISA {info['isa']}, {info['threads']} threads, "
             f"torch {info['torch']}, transformers {info['transformers']}"]
    zero_shot = runs[0]["zero_shot"]
    lines.append(f"zero-shot prompts: {zero_shot.get('prompt_ensemble', 'description')}, similarity "
                 f"{zero_shot.get('similarity', 'dot')}; wall times include corpus synthesis and the report")
    classes = list(zero_shot["per_class"])
    header = f"{'seed':>6} {'wall s':>7}  {'macro':>6} " + " ".join(f"{c:>6}" for c in classes) + f"  {'probe':>6}"
    lines.append(header)
    for r in runs:
        per_class = " ".join(f"{r['zero_shot']['per_class'][c]:6.3f}" for c in classes)
        lines.append(f"{r['seed']:>6} {r['wall_seconds']:7.0f}  {r['zero_shot']['macro_auroc']:6.3f} {per_class}  "
                     f"{r['linear_probe']['macro_auroc']:6.3f}")
    zs, probe = summarize(runs, "zero_shot"), summarize(runs, "linear_probe")
    for stat in ("mean", "min", "max"):
        per_class = " ".join(f"{zs[c][stat]:6.3f}" for c in classes)
        lines.append(f"{stat:>6} {'':>7}  {zs['macro'][stat]:6.3f} {per_class}  {probe['macro'][stat]:6.3f}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds")
    parser.add_argument("--setups", nargs="+", default=["default"], choices=sorted(SETUPS),
                        help="numeric setups: environment variables that change the CPU kernels torch uses")
    parser.add_argument("--workdir", default=None, help="where models and logs go (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="save every run and the summary to this JSON file")
    parser.add_argument("extra", nargs=argparse.REMAINDER,
                        help="after `--`: more flags for examples/pretrain.py (e.g. -- --max_steps 300)")
    args = parser.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dbeta-demo-seeds-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {"setups": {}}
    for setup in args.setups:
        info = describe_setup(setup)
        runs = []
        for seed in args.seeds:
            run = run_demo(setup, seed, workdir, args.extra)
            print(f"[{setup}] seed {seed}: zero-shot {run['zero_shot']['macro_auroc']:.3f}, "
                  f"probe {run['linear_probe']['macro_auroc']:.3f}, {run['wall_seconds']:.0f} s", flush=True)
            runs.append(run)
        results["setups"][setup] = {"machine": info, "runs": runs, "zero_shot": summarize(runs, "zero_shot"),
                                    "linear_probe": summarize(runs, "linear_probe")}
        print(format_setup(info, runs), flush=True)
    every = [r for s in results["setups"].values() for r in s["runs"]]
    results["all"] = {"zero_shot": summarize(every, "zero_shot")}
    macro = results["all"]["zero_shot"]["macro"]
    worst_class = min(v["min"] for k, v in results["all"]["zero_shot"].items() if k != "macro")
    print(f"all {len(every)} runs: zero-shot macro mean {macro['mean']:.3f}, min {macro['min']:.3f}, "
          f"max {macro['max']:.3f}; lowest class AUROC in any run {worst_class:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
