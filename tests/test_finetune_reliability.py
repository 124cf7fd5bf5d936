"""Issue #23, fine-tuning side: only what examples/finetune.py wrote is removed, one run per --output_dir, and no
checkpoint is selected on a NaN AUROC (labels without positives are refused)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from helpers import load_example
from transformers import EvalPrediction

from dbeta_hf.evaluation.finetune import check_fine_tuning_labels, make_compute_metrics
from dbeta_hf.utils.output_ownership import LOCK_NAME, OutputLockedError
from dbeta_hf.utils.process import this_host

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

RUN = ["--synthetic_records", "40", "--max_steps", "2", "--per_device_train_batch_size", "6", "--logging_steps", "1",
       "--num_bootstrap", "5", "--no_progress", "--no_save_model"]


def test_finetune_removes_only_the_checkpoints_it_wrote(saved_model_dir, tmp_path):
    example = load_example("finetune")
    out = tmp_path / "ft"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "sample.pt").write_bytes(b"a user's file")
    example.main(["--model_name_or_path", str(saved_model_dir), "--output_dir", str(out), *RUN])
    assert (out / "checkpoints" / "sample.pt").read_bytes() == b"a user's file"
    left = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert left == [".dbeta_owner.json", "sample.pt"]  # the run folders it wrote are gone
    assert not (out / LOCK_NAME).exists()


def test_finetune_removes_its_checkpoint_folder_when_it_created_it(saved_model_dir, tmp_path):
    example = load_example("finetune")
    out = tmp_path / "ft"
    example.main(["--model_name_or_path", str(saved_model_dir), "--output_dir", str(out), *RUN])
    assert not (out / "checkpoints").exists()


def test_a_second_finetune_into_a_locked_output_dir_is_refused(saved_model_dir, tmp_path):
    example = load_example("finetune")
    out = tmp_path / "ft"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"pid": other.pid, "host": this_host(), "started": "x",
                                                 "purpose": "examples/finetune.py", "command": "x"}))
        with pytest.raises(OutputLockedError, match=rf"PID {other.pid}"):
            example.main(["--model_name_or_path", str(saved_model_dir), "--output_dir", str(out), *RUN])
        assert not (out / "checkpoints").exists()
    finally:
        other.kill()
        other.wait()


def test_labels_without_a_positive_are_refused_or_named(caplog):
    with pytest.raises(ValueError, match=r"no positive for any of the 3 classes"):
        check_fine_tuning_labels(np.zeros((3, 3)), None, ["SR", "AFIB", "STACH"])
    train = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1]])
    with caplog.at_level(logging.WARNING):
        check_fine_tuning_labels(train, None, ["SR", "AFIB", "STACH"])
    assert "no positive for 1 of 3 classes (AFIB)" in caplog.text and "left out of the validation" in caplog.text
    caplog.clear()
    with pytest.raises(ValueError, match="validation macro AUROC that selects the checkpoint is undefined"):
        check_fine_tuning_labels(np.eye(3), np.zeros((4, 3)), ["SR", "AFIB", "STACH"])
    with caplog.at_level(logging.WARNING):
        check_fine_tuning_labels(np.eye(3), np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]]), ["SR", "AFIB", "STACH"])
    assert "AFIB" in caplog.text and "left out of the validation" in caplog.text


def test_the_finetune_example_refuses_all_zero_training_labels(saved_model_dir, tmp_path, monkeypatch):
    example = load_example("finetune")
    rng = np.random.default_rng(0)

    def split(n, labels):
        return Dataset.from_dict({"ecg": rng.normal(size=(n, 12, 500)).astype(np.float16).tolist(), "labels": labels})

    splits = DatasetDict(train=split(6, [[0.0, 0.0]] * 6), validation=split(4, [[1.0, 0.0], [0.0, 1.0]] * 2),
                         test=split(4, [[1.0, 0.0], [0.0, 1.0]] * 2))
    monkeypatch.setattr(example, "load_task_splits_from_args", lambda args, name: (splits, ["SR", "AFIB"]))
    with pytest.raises(ValueError, match=r"task 'synthetic': the training labels have no positive for any of the 2 classes"):
        example.main(["--model_name_or_path", str(saved_model_dir), "--output_dir", str(tmp_path / "ft"), *RUN])


def test_no_checkpoint_is_selected_on_a_nan_auroc(caplog):
    compute = make_compute_metrics(["SR", "AFIB"])
    with caplog.at_level(logging.WARNING):
        metrics = compute(EvalPrediction(predictions=np.zeros((4, 2)), label_ids=np.zeros((4, 2))))
    assert "macro_auroc" not in metrics  # Trainer then stops, naming metric_for_best_model, instead of keeping NaN
    assert "macro AUROC undefined" in caplog.text
    scored = compute(EvalPrediction(predictions=np.array([[0.1, 0], [0.9, 0]]), label_ids=np.array([[0, 0], [1, 0]])))
    assert scored["macro_auroc"] == 1.0
