"""Trainer fine-tuning helpers and examples/finetune.py."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from datasets import Array2D, Dataset, Features, List, Value
from sklearn.metrics import roc_auc_score
from transformers import EvalPrediction, Trainer, TrainingArguments

from helpers import load_example

from dbeta_hf import DBetaForECGClassification, DBetaModel
from dbeta_hf.evaluation.finetune import (
    ECGClassificationCollator,
    build_classification_model,
    load_classification_model,
    make_compute_metrics,
    prepare_classification_dataset,
)
from dbeta_hf.pretraining.recipes import tiny_config

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _toy_dataset(n=48, samples=400, seed=0):
    """Class 0: a fast oscillation; class 1: a slow one (both can be present)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 500.0
    labels = (rng.random((n, 2)) < 0.5).astype(np.float32)
    ecg = 0.1 * rng.normal(size=(n, 12, samples))
    ecg += labels[:, 0, None, None] * np.sin(2 * np.pi * 40 * t)
    ecg += labels[:, 1, None, None] * np.sin(2 * np.pi * 3 * t)
    features = Features({"ecg": Array2D((12, samples), "float16"), "labels": List(Value("float32"), length=2),
                         "report": Value("string")})
    return Dataset.from_dict({"ecg": ecg.astype(np.float16), "labels": labels, "report": ["x"] * n}, features=features)


def test_prepare_and_collate():
    ds = prepare_classification_dataset(_toy_dataset(n=4))
    assert ds.column_names == ["ecg_values", "labels"]
    batch = ECGClassificationCollator()([ds[i] for i in range(3)])
    assert batch["ecg_values"].shape == (3, 12, 400) and batch["ecg_values"].dtype == torch.float32
    assert batch["labels"].shape == (3, 2) and batch["labels"].dtype == torch.float32
    with pytest.raises(KeyError, match="labels"):
        prepare_classification_dataset(_toy_dataset(n=2).remove_columns("labels"))


def test_compute_metrics_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 3)) < 0.5).astype(np.float32)
    labels[:, 2] = 0.0  # no positive: not scored
    logits = rng.normal(size=(50, 3))
    metrics = make_compute_metrics(["AF", "1AVB", "none"])(EvalPrediction(predictions=logits, label_ids=labels))
    expected = [roc_auc_score(labels[:, c], logits[:, c]) for c in range(2)]
    assert metrics["macro_auroc"] == pytest.approx(np.mean(expected))
    assert metrics["auroc_AF"] == pytest.approx(expected[0]) and metrics["auroc_1AVB"] == pytest.approx(expected[1])
    assert metrics["num_classes_scored"] == 2 and "auroc_none" not in metrics


def test_build_classification_model(saved_model_dir):
    pretrained = build_classification_model(str(saved_model_dir), ["A", "B", "C"])
    assert isinstance(pretrained, DBetaForECGClassification)
    assert pretrained.config.id2label == {0: "A", 1: "B", 2: "C"}
    assert pretrained.config.problem_type == "multi_label_classification"
    base = DBetaModel.from_pretrained(saved_model_dir)
    torch.testing.assert_close(pretrained.model.ecg_encoder.class_embedding, base.ecg_encoder.class_embedding)
    random = build_classification_model(str(saved_model_dir), ["A", "B", "C"], random_init=True, freeze_encoder=True)
    assert not torch.allclose(random.model.ecg_encoder.class_embedding, base.ecg_encoder.class_embedding)
    trainable = {n for n, p in random.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}


@pytest.fixture
def load_messages():
    """Every record logged by transformers' model loading and by dbeta_hf's modeling module (transformers' own
    loggers do not propagate to pytest's caplog, and their handler keeps the stream of the session's start)."""
    records: list[logging.LogRecord] = []

    class Recorder(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Recorder(level=logging.INFO)
    loggers = [logging.getLogger(name) for name in ("transformers.modeling_utils", "dbeta_hf.modeling_dbeta",
                                                     "dbeta_hf.evaluation.finetune")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield records
    for logger, level in zip(loggers, levels):
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_loading_a_pretrained_checkpoint_for_fine_tuning_logs_one_message(saved_model_dir, load_messages):
    """transformers' LOAD REPORT table and dbeta_hf's own line about the new head become one actionable line."""
    build_classification_model(str(saved_model_dir), ["A", "B", "C"])
    messages = [r.getMessage() for r in load_messages]
    assert not any("LOAD REPORT" in m or "new head weights" in m for m in messages), messages
    about_the_head = [m for m in messages if "classifier" in m]
    assert len(about_the_head) == 1, messages
    assert "classification head (classifier.bias, classifier.weight, 3 classes) is new" in about_the_head[0]
    assert "train it on your labels" in about_the_head[0]
    # without the filter, loading logs both (what a user saw before)
    load_messages.clear()
    DBetaForECGClassification.from_pretrained(saved_model_dir, num_labels=3)
    assert sum("LOAD REPORT" in r.getMessage() or "new head weights" in r.getMessage() for r in load_messages) == 2


def test_an_unusual_load_still_shows_transformers_report(saved_model_dir, tmp_path, load_messages):
    """A fine-tuned model loaded with another number of classes: the resized head is news, the report is shown."""
    build_classification_model(str(saved_model_dir), ["A", "B"]).save_pretrained(tmp_path)
    load_messages.clear()
    load_classification_model(str(tmp_path), num_labels=3, ignore_mismatched_sizes=True)
    reports = [r.getMessage() for r in load_messages if "LOAD REPORT" in r.getMessage()]
    assert len(reports) == 1 and "MISMATCH" in reports[0]


def test_finetune_few_steps_lowers_loss(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_labels=2, problem_type="multi_label_classification")
    model = DBetaForECGClassification(config)
    ds = prepare_classification_dataset(_toy_dataset())
    collator = ECGClassificationCollator()
    full = collator([ds[i] for i in range(len(ds))])

    def loss_on_training_set():
        model.eval()
        with torch.no_grad():
            return float(model(**full).loss)

    before = loss_on_training_set()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=16, learning_rate=3e-3,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator)
    trainer.train()
    after = loss_on_training_set()
    assert after < before
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 12


def test_finetune_example_end_to_end(saved_model_dir, tmp_path):
    example = load_example("finetune")
    out_dir = tmp_path / "ft"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--max_steps", "4", "--per_device_train_batch_size", "6", "--learning_rate", "1e-3", "--logging_steps", "1",
        "--num_bootstrap", "20", "--random-init", "--no_progress",
    ])
    saved = json.loads((out_dir / "finetune_results.json").read_text())
    assert set(saved["methods"]) == {"D-BETA (fine-tuned)", "Random init (trained from scratch)"}
    run = saved["methods"]["D-BETA (fine-tuned)"]["synthetic"]["fractions"]["100%"]["runs"][0]
    assert run["global_steps"] == 4 and run["num_train"] == 24 and len(run["logged_losses"]) == 4
    assert run["macro_auroc"] is None or 0.0 <= run["macro_auroc"] <= 1.0  # NaN is written as null
    markdown = (out_dir / "finetune_results.md").read_text()
    assert "| Method | Synthetic |" in markdown and "|   | 100% |" in markdown and "| Random init (trained from scratch) |" in markdown
    assert (out_dir / "roc_synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out_dir / "checkpoints").exists()  # removed unless --keep_checkpoints
    assert results["methods"]["D-BETA (fine-tuned)"]["synthetic"]["class_names"] == saved["methods"]["D-BETA (fine-tuned)"]["synthetic"]["class_names"]


def test_finetune_example_help():
    example = load_example("finetune")
    with pytest.raises(SystemExit) as info:
        example.main(["--help"])
    assert info.value.code == 0


def test_compute_metrics_goes_through_the_evaluate_modules(monkeypatch):
    """`make_compute_metrics` computes with the shipped `evaluate` modules (one implementation: same numbers)."""
    from dbeta_hf.evaluation import metric_modules
    from dbeta_hf.evaluation.metrics import cinc2021_metrics, multilabel_auroc

    used = []
    load = metric_modules.load_metric

    def recording_load(name):
        used.append(name)
        return load(name)

    monkeypatch.setattr(metric_modules, "load_metric", recording_load)
    rng = np.random.default_rng(1)
    names = ["164889003", "426783006", "270492004"]  # AF, sinus rhythm, 1st degree AV block
    labels = (rng.random((40, 3)) < 0.4).astype(np.float32)
    logits = rng.normal(size=(40, 3)).astype(np.float32)
    metrics = make_compute_metrics(names, cinc2021=True)(EvalPrediction(predictions=logits, label_ids=labels))
    assert used == ["multilabel_auroc", "cinc2021_challenge_score"]
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    assert metrics["macro_auroc"] == multilabel_auroc(labels, logits, class_names=names)["macro_auroc"]
    assert metrics["challenge_score"] == cinc2021_metrics(labels, probabilities, classes=names)["challenge_score"]
