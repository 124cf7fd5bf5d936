"""examples/pretrain.py under `accelerate launch` with two CPU processes; each config file of examples/accelerate/
either runs here doing what its name says or is refused at start in one line.

The first test (DDP over gloo): one N3S build and one save
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

    assert log.count("world size 2, per-device batch 4 (global batch 8)") == 1  # INFO on the main process only
    # the corpus synthesised once (train and held-out split), by rank 0; rank 1 loads its copy
    assert len(_lines(records / "synthesis-rank0.txt")) == 2 and not (records / "synthesis-rank1.txt").exists()
    # no warning the user cannot act on: pinned memory without accelerator, deprecated all_gather, DDP's unused search
    for noise in ("pin_memory", "FutureWarning", "is deprecated", "find_unused_parameters"):
        assert noise not in log, noise
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


def _launch(tmp_path, config: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "examples" / "accelerate" / config),
           "--num_processes", "2", "--main_process_port", str(_free_port()), str(REPO / "examples" / "pretrain.py"),
           "--output_dir", str(tmp_path / "out"), "--synthetic_records", "32", "--synthetic_eval_records", "16",
           "--per_device_train_batch_size", "4", "--logging_steps", "1", *flags]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_multi_gpu_yaml_runs_ddp_on_two_cpu_processes(tmp_path):
    """The README's config file with --use_cpu: one process group of two (DDP over gloo), one saved model."""
    result = _launch(tmp_path, "multi_gpu.yaml", "--use_cpu", "true", "--max_steps", "2")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert log.count("world size 2, per-device batch 4 (global batch 8)") == 1
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_fsdp_yaml_on_cpu_is_refused_in_one_line(tmp_path):
    """FSDP on CPU processes would silently run DDP: refused at start, once, naming what works."""
    result = _launch(tmp_path, "fsdp.yaml", "--use_cpu", "true", "--max_steps", "2")
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("pretrain.py: error:")]
    assert errors == ["pretrain.py: error: FSDP needs CUDA devices (this launch runs on CPU); use "
                      "examples/accelerate/multi_gpu.yaml with --use_cpu true for CPU processes"]
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_deepspeed_yaml_on_cpu_is_refused(tmp_path):
    """Without deepspeed installed, accelerate's launcher says so; with it, pretrain.py refuses CPU processes."""
    result = _launch(tmp_path, "deepspeed_zero2.yaml", "--use_cpu", "true", "--max_steps", "2")
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("DeepSpeed is not installed" in log or
            "pretrain.py: error: DeepSpeed needs CUDA devices" in log), log[-3000:]
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_processes_outside_one_process_group_are_refused(tmp_path):
    """multi_gpu.yaml without --use_cpu on a machine without GPUs: two world-size-1 jobs into one --output_dir
    (the Trainer's world size 1 under WORLD_SIZE=2) are refused."""
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("with GPUs this launch forms a real process group")
    result = _launch(tmp_path, "multi_gpu.yaml", "--max_steps", "2")
    log = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in log.splitlines() if line.startswith("pretrain.py: error:")]
    assert len(errors) == 1 and "(WORLD_SIZE=2) but they did not form one process group" in errors[0], log[-3000:]
    assert not (tmp_path / "out" / "model.safetensors").exists()
