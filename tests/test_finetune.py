"""Trainer fine-tuning helpers and examples/finetune.py."""

from __future__ import annotations

import json

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
