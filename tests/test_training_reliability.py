"""Issue #23, training side: owned and locked output folders, complete checkpoints, atomic and fingerprinted N3S
indexes, run fingerprints on resume, and the amplitude contract of the pretraining inputs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import load_example

from dbeta_hf.pretraining.n3s import N3SIndex, N3SIndexCorruptError, build_n3s_index_from_embeddings
from dbeta_hf.pretraining.trainer import CHECKPOINT_COMPLETE_FILE, last_complete_checkpoint
from dbeta_hf.utils.output_ownership import LOCK_NAME, OutputLockedError
from dbeta_hf.utils.process import this_host

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

DEMO = ["--synthetic_records", "32", "--synthetic_eval_records", "16", "--per_device_train_batch_size", "8",
        "--logging_steps", "1", "--eval_strategy", "no"]
REPORTS = ["sinus rhythm", "sinus bradycardia", "atrial fibrillation", "left bundle branch block", "normal ecg",
           "first degree av block", "prolonged qt interval", "left axis deviation"]


@pytest.fixture(scope="module")
def example():
    return load_example("pretrain")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, example):
    """A demo run of 2 steps with a checkpoint at each step."""
    out = tmp_path_factory.mktemp("run") / "out"
    example.main(["--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
                  *DEMO])
    return out


def _write_lock(folder, pid):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": this_host(), "started": "2026-01-01T00:00:00+00:00",
                                                "purpose": "another examples/pretrain.py", "command": "x"}))


# ------------------------------------------------------------------------------------------- 1. locked output
def test_a_second_training_into_the_same_output_dir_is_refused_naming_the_first(tmp_path, example):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path / "out", other.pid)
        with pytest.raises(OutputLockedError, match=rf"PID {other.pid} on host"):
            example.main(["--output_dir", str(tmp_path / "out"), "--max_steps", "1", *DEMO])
        assert not any(p.name.startswith("checkpoint-") for p in (tmp_path / "out").iterdir())
    finally:
        other.kill()
        other.wait()


def test_a_stale_lock_of_a_killed_training_is_taken_over(tmp_path, example, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path / "out", dead.pid)
    with caplog.at_level(logging.WARNING):
        example.main(["--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--save_strategy", "no", *DEMO])
    assert str(dead.pid) in caplog.text
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released at the end
    assert (tmp_path / "out" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------- 2. complete checkpoints
def test_checkpoints_get_a_completeness_marker_with_the_run_fingerprint(trained_run):
    for step in (1, 2):
        marker = json.loads((trained_run / f"checkpoint-{step}" / CHECKPOINT_COMPLETE_FILE).read_text())
        assert marker["global_step"] == step
        assert marker["fingerprint"]["data"]["train_size"] == 32
        assert marker["fingerprint"]["n3s"]["strategy"] == "dissimilar"
        assert marker["fingerprint"]["model_config"]["hidden_dim"] == 64


def test_auto_resume_skips_an_incomplete_checkpoint(tmp_path, trained_run, example, caplog):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    # checkpoint-2 was cut short: the Trainer's state and the marker (written last) are missing
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    (out / "checkpoint-2" / CHECKPOINT_COMPLETE_FILE).unlink()
    model_args, _, training_args, _ = example.parse_arguments(["--output_dir", str(out)])
    with caplog.at_level(logging.WARNING):
        assert example.checkpoint_to_resume(model_args, training_args) == str(out / "checkpoint-1")
    assert "checkpoint-2" in caplog.text and "incomplete" in caplog.text
    # no marker anywhere (an older version's checkpoints): the highest with a readable trainer_state.json
    (out / "checkpoint-1" / CHECKPOINT_COMPLETE_FILE).unlink()
    assert last_complete_checkpoint(out) == str(out / "checkpoint-1")
    (out / "checkpoint-1" / "trainer_state.json").write_text('{"global_st')  # disk full while writing it
    assert last_complete_checkpoint(out) is None
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        example.checkpoint_to_resume(*example.parse_arguments(
            ["--output_dir", str(out), "--resume_from_checkpoint", str(out / "checkpoint-2")])[::2])


# ------------------------------------------------------------------------------------------- 3. fingerprints
def test_resume_with_another_model_config_names_the_fields(tmp_path, trained_run, example):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    with pytest.raises(ValueError, match=r"model config .* differs .*model_config.hidden_dim: 64 \(checkpoint\) != 48 \(this run\)"):
        example.main(["--output_dir", str(out), "--max_steps", "3", "--demo_hidden_size", "48",
                      *DEMO])


def test_resume_with_other_data_warns_naming_the_difference(tmp_path, trained_run, example, caplog):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    with caplog.at_level(logging.WARNING):
        example.main(["--output_dir", str(out), "--max_steps", "3", "--save_strategy", "no",
                      "--synthetic_records", "40", *DEMO[2:]])
    assert "data.train_size: 32 (checkpoint) != 40 (this run)" in caplog.text


def _index(k=3, reports=REPORTS):
    emb = torch.randn(len(reports), 8, generator=torch.Generator().manual_seed(0))
    return build_n3s_index_from_embeddings(reports, emb, k=k, progress=False)


def _data_args(example, tmp_path, *flags):
    _, data_args, training_args, synthetic = example.parse_arguments(["--output_dir", str(tmp_path), *flags])
    return data_args, training_args, synthetic


def test_n3s_index_built_with_other_flags_is_rebuilt_or_refused(tmp_path, example, caplog):
    from datasets import Dataset

    splits = (Dataset.from_dict({"report": REPORTS}), None)
    data_args, _, _ = _data_args(example, tmp_path, "--n3s_k", "4")
    first = example.build_or_load_n3s(data_args, splits, str(tmp_path), synthetic=True)
    assert first.settings["requested_k"] == 4
    # the default location (the run's own): rebuilt with a warning naming the difference
    data_args, _, _ = _data_args(example, tmp_path, "--n3s_k", "2", "--n3s_strategy", "hard")
    with caplog.at_level(logging.WARNING):
        second = example.build_or_load_n3s(data_args, splits, str(tmp_path), synthetic=True)
    assert "--n3s_k: 4 (index) != 2 (flags)" in caplog.text and "--n3s_strategy: 'dissimilar'" in caplog.text
    assert second.k == 2 and second.settings["strategy"] == "hard"
    # a user's --n3s_index: refused, naming the difference
    data_args, _, _ = _data_args(example, tmp_path, "--n3s_k", "5", "--n3s_index", str(tmp_path / "_n3s_index"))
    with pytest.raises(ValueError, match=r"--n3s_k: 2 \(index\) != 5 \(flags\)"):
        example.build_or_load_n3s(data_args, splits, str(tmp_path), synthetic=True)


def test_a_truncated_n3s_index_names_the_file_and_is_rebuilt(tmp_path, example, caplog):
    from datasets import Dataset

    index_dir = tmp_path / "_n3s_index"
    _index().save_pretrained(index_dir)
    reports = index_dir / "n3s_reports.json"
    reports.write_text(reports.read_text()[:20])  # killed while writing it (the old in-place write)
    with pytest.raises(N3SIndexCorruptError, match=r"n3s_reports\.json is unreadable .*Delete its folder"):
        N3SIndex.from_pretrained(index_dir)
    data_args, _, _ = _data_args(example, tmp_path, "--n3s_k", "3")
    with caplog.at_level(logging.WARNING):
        index = example.build_or_load_n3s(data_args, (Dataset.from_dict({"report": REPORTS}), None), str(tmp_path),
                                          synthetic=True)
    assert "n3s_reports.json is unreadable" in caplog.text and "rebuilding" in caplog.text
    assert len(N3SIndex.from_pretrained(index_dir)) == len(index) == len(REPORTS)


def test_n3s_save_is_atomic(tmp_path, monkeypatch):
    from dbeta_hf.pretraining import n3s

    index_dir = tmp_path / "index"
    _index(k=3).save_pretrained(index_dir)

    def disk_full(path, text, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(n3s, "atomic_write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        _index(k=2).save_pretrained(index_dir)
    assert N3SIndex.from_pretrained(index_dir).k == 3  # the old index, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no temporary folder left


# ------------------------------------------------------------------------------------------- 4. amplitude contract
def test_pretraining_collator_refuses_a_60000_mv_row_naming_it(tiny_tokenizer):
    from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator

    index = _index()
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=64)
    rng = np.random.default_rng(0)
    rows = [{"ecg": rng.uniform(-1, 1, (12, 64)).astype(np.float16), "report": REPORTS[i], "idx": 100 + i}
            for i in range(3)]
    rows[1]["ecg"] = np.full((12, 64), 60000.0, np.float16) * rng.choice([-1, 1], (12, 64)).astype(np.float16)
    with pytest.raises(ValueError, match=r"ECG item 1: the ECG amplitude is implausible.*idx=101"):
        collator(rows)
