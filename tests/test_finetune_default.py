"""examples/finetune.py's synthetic demo settings, the saved fine-tuned model and the Auto API registration."""

from __future__ import annotations

import warnings

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from helpers import load_example

from dbeta_hf import DBetaECGFeatureExtractor, DBetaForECGClassification
from dbeta_hf.pretraining.recipes import tiny_config

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_classification_model_is_registered_with_the_auto_api(tmp_path):
    torch.manual_seed(0)
    model = DBetaForECGClassification(tiny_config(num_labels=3, problem_type="multi_label_classification")).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is DBetaForECGClassification
    ecg = torch.randn(2, 12, 5000)
    torch.testing.assert_close(loaded(ecg_values=ecg).logits, model(ecg_values=ecg).logits)


def test_demo_settings_apply_only_to_the_synthetic_task_and_yield_to_the_user(monkeypatch):
    example = load_example("finetune")
    monkeypatch.setattr("sys.argv", ["finetune.py", "--model_name_or_path", "elsewhere", "--learning_rate", "3e-4"])
    args = example.parse_args()  # the command line
    assert (args.model_name_or_path, args.learning_rate, args.max_steps) == ("elsewhere", 3e-4, 600)
    args = example.parse_args([])
    assert (args.learning_rate, args.lr_scheduler_type, args.warmup_steps, args.max_steps) == (2e-3, "cosine", 0.1, 600)
    args = example.parse_args(["--learning_rate", "1e-4", "--max_steps=50"])
    assert (args.learning_rate, args.max_steps, args.lr_scheduler_type) == (1e-4, 50, "cosine")
    args = example.parse_args(["--tasks", "ptbxl_super"])
    assert (args.learning_rate, args.lr_scheduler_type, args.max_steps) == (5e-5, "linear", -1)
    assert (args.warmup_steps, args.weight_decay) == (0.0, 0.0)


def test_help_shows_the_values_the_run_uses(capsys):
    """`--help` names the demo value a run without arguments uses (2e-3), not only the general one (5e-5)."""
    example = load_example("finetune")
    with pytest.raises(SystemExit):
        example.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "AdamW learning rate (default: 0.002 for the synthetic demo" in text and "5e-05 for the other tasks)" in text
    assert "(default: 5e-05)" not in text
    for option in example.SYNTHETIC_DEMO_SETTINGS:
        described = text.split(f"--{option} {option.upper()} ", 1)[1].split(" --", 1)[0]
        assert "synthetic demo" in described and "(default: None)" not in described, described
    assert "(default: cosine for the synthetic demo" in text and "(default: 600 for the synthetic demo" in text
    defaults = example.parse_args([])
    for name, value in example.SYNTHETIC_DEMO_SETTINGS.items():
        assert getattr(defaults, name) == value and f"(default: {value} for the synthetic demo" in text


def test_finetune_example_saves_a_model_that_loads_through_the_auto_api(saved_model_dir, tmp_path):
    example = load_example("finetune")
    out_dir = tmp_path / "ft"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = example.main([
            "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
            "--max_steps", "3", "--per_device_train_batch_size", "8", "--num_bootstrap", "10", "--no_progress",
        ])
    # no warning the user cannot act on (e.g. PyTorch's "'pin_memory' ... no accelerator is found" at every
    # DataLoader, transformers' deprecations): the run warns about nothing
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    task = results["methods"]["D-BETA (fine-tuned)"]["synthetic"]
    assert results["training"]["learning_rate"] == 2e-3 and results["training"]["lr_scheduler_type"] == "cosine"
    saved = out_dir / "model_synthetic"
    assert task["saved_model"] == str(saved)
    model = AutoModelForSequenceClassification.from_pretrained(saved)
    assert type(model) is DBetaForECGClassification
    assert list(model.config.id2label.values()) == task["class_names"]
    assert isinstance(DBetaECGFeatureExtractor.from_pretrained(saved), DBetaECGFeatureExtractor)
    # the kept folder has its model card (no --push_to_hub needed): the run's test AUROC, how it was trained, and a
    # loading example for this folder (its path as written, the classifier, the processor saved with it)
    card = ModelCard.load(saved / "README.md")
    [result] = card.data.eval_results
    run = task["fractions"]["100%"]["runs"][0]
    assert (result.task_type, result.dataset_type, result.metric_value) == ("other", "synthetic", run["macro_auroc"])
    assert card.data.base_model is None  # a local checkpoint is no Hub id
    assert f'AutoModelForSequenceClassification.from_pretrained("{saved}", trust_remote_code=True)' in card.text
    assert f'AutoProcessor.from_pretrained("{saved}", trust_remote_code=True)' in card.text
    assert "| learning rate | 0.002 |" in card.text and "| fine-tuned from | " + str(saved_model_dir) in card.text
