"""examples/pretrain.py under `accelerate launch` with two CPU processes (DDP over gloo): one N3S build and one save
(rank 0), the same trained weights on both ranks, the losses logged, the end-of-run report printed once.

The launch recipe is the README's CPU one: `accelerate launch --multi_gpu --num_processes 2 ... --use_cpu true`
(`--cpu --num_processes 2` would start a single process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("accelerate_pretrain_worker.py")
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_two_cpu_processes_build_once_save_once_and_agree(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    out = tmp_path / "out"
    env = dict(os.environ, RECORD_DIR=str(records), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(WORKER),
           "--output_dir", str(out), "--max_steps", "3", "--synthetic_records", "32", "--synthetic_eval_records", "16",
           "--per_device_train_batch_size", "4", "--logging_steps", "1", "--eval_strategy", "no", "--use_cpu", "true"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    assert log.count("world size 2, per-device batch 4 (global batch 8)") == 2
    assert _lines(records / "n3s_build-rank0.txt") == [""] and not (records / "n3s_build-rank1.txt").exists()
    assert _lines(records / "save-rank0.txt") == [str(out)] and not (records / "save-rank1.txt").exists()
    weights = [_lines(records / f"weights-rank{rank}.txt") for rank in (0, 1)]
    assert len(weights[0]) == 1 and weights[0] == weights[1]
    worlds = [_lines(records / f"world-rank{rank}.txt")[0].split() for rank in (0, 1)]
    assert worlds[0][0] == worlds[1][0] == "2" and worlds[0][1] == worlds[1][1]  # the same averaged loss
    assert log.count("zero-shot macro AUROC") == 1
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "mlm_loss" in h] == [1, 2, 3]
    assert (out / "_n3s_index" / "n3s_config.json").is_file() and (out / "model.safetensors").is_file()
