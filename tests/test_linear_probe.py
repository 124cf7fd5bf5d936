"""Feature extraction + cache, the linear probe and examples/linear_probe.py (the AUROC: test_metrics.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from helpers import load_example

from dbeta_hf import DBetaECGModel
from dbeta_hf.data.splits import label_fraction
from dbeta_hf.evaluation.embeddings import extract_ecg_features
from dbeta_hf.evaluation.linear_probe import (
    LinearProbeConfig,
    format_linear_probe_table,
    run_linear_probe,
    subset_indices,
    train_linear_probe,
)
from dbeta_hf.pretraining.recipes import tiny_config

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


# --------------------------------------------------------------------------------------------- features
def test_feature_extraction_batches_and_cache(tmp_path):
    torch.manual_seed(0)
    model = DBetaECGModel(tiny_config()).train()  # extraction must switch dropout off and restore the mode
    ecgs = torch.randn(7, 12, 600, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval().get_ecg_features(ecgs)
    model.train()
    feats = extract_ecg_features(model, ecgs, batch_size=3, cache_dir=tmp_path, cache_name="toy", progress=False)
    assert model.training
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    files = list(tmp_path.glob("toy-*.safetensors"))
    assert len(files) == 1
    # the cache is read back (even by a different batch size), and keyed by the weights and the data
    save_file({"features": feats * 0 + 42}, str(files[0]))  # poison: a cache hit returns these values
    assert torch.all(extract_ecg_features(model, ecgs, batch_size=7, cache_dir=tmp_path, cache_name="toy", progress=False) == 42)
    assert not torch.all(extract_ecg_features(model, ecgs[:6], cache_dir=tmp_path, cache_name="toy", progress=False) == 42)
    with torch.no_grad():
        model.ecg_encoder.class_embedding.add_(1.0)
    assert not torch.all(extract_ecg_features(model, ecgs, cache_dir=tmp_path, cache_name="toy", progress=False) == 42)
    assert len(list(tmp_path.glob("toy-*.safetensors"))) == 3
    # the bf16 autocast path (opt-in; fp32 is the default) gives float32 features close to the fp32 ones
    half = extract_ecg_features(model, ecgs, batch_size=4, autocast=True, progress=False)
    assert half.dtype == torch.float32 and half.shape == expected.shape
    torch.testing.assert_close(half, extract_ecg_features(model, ecgs, progress=False), atol=0.1, rtol=0.1)


# --------------------------------------------------------------------------------------------- probe
def test_probe_recovers_planted_signal_through_the_encoder():
    """Labels defined by directions of the encoder's own features; the probe sees only the ECGs' features."""
    torch.manual_seed(0)
    model = DBetaECGModel(tiny_config()).eval()
    gen = torch.Generator().manual_seed(3)
    t = torch.arange(500) / 500.0
    freqs = torch.rand(360, 1, 1, generator=gen) * 30 + 1
    ecgs = torch.sin(2 * torch.pi * freqs * t) * torch.rand(360, 12, 1, generator=gen) + 0.3 * torch.randn(360, 12, 500, generator=gen)
    feats = extract_ecg_features(model, ecgs, batch_size=120, progress=False)
    directions = torch.randn(feats.shape[1], 2, generator=gen)
    projected = ((feats - feats.mean(0)) / feats.std(0)) @ directions
    labels = (projected > projected.median(dim=0).values).float().numpy()
    flip = np.random.default_rng(0).random(labels.shape) < 0.05  # label noise
    labels = np.where(flip, 1 - labels, labels)
    tr, va, te = slice(0, 200), slice(200, 280), slice(280, 360)
    result = run_linear_probe(
        feats[tr], labels[tr], feats[va], labels[va], feats[te], labels[te], ["x", "y"], fractions=(0.1, 1.0),
        seeds=(0, 1), config=LinearProbeConfig(max_steps=400, eval_every=20), num_bootstrap=50, progress=False,
    )
    full = result["fractions"]["100%"]
    assert full["macro_auroc_mean"] > 0.9
    assert full["macro_auroc_mean"] == pytest.approx(np.mean([r["macro_auroc"] for r in full["runs"]]))
    assert full["macro_auroc_std"] == pytest.approx(np.std([r["macro_auroc"] for r in full["runs"]], ddof=1))
    assert [r["num_train"] for r in result["fractions"]["10%"]["runs"]] == [20, 20]
    assert all(r["ci_low"] <= r["macro_auroc"] <= r["ci_high"] for r in full["runs"])
    assert result["test_scores"]["100%"].shape == (80, 2)


def test_probe_selects_on_validation_not_test():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    y = (x[:, :2] + 0.5 * rng.normal(size=(300, 2)) > 0).astype(np.float32)
    probe = train_linear_probe(x[:200], y[:200], x[200:], y[200:], LinearProbeConfig(max_steps=300, eval_every=10, patience=5))
    history = probe.history
    best = max(history, key=lambda h: h["val_macro_auroc"])
    assert probe.best_val_auroc == pytest.approx(best["val_macro_auroc"])
    assert probe.best_step == min(h["step"] for h in history if h["val_macro_auroc"] == best["val_macro_auroc"])
    assert probe.steps_run <= 300
    if probe.steps_run < 300:  # early stopping after `patience` validations without improvement
        assert probe.steps_run - probe.best_step == 5 * 10
    probs = probe.predict_proba(x[200:])
    assert probs.shape == (100, 2) and ((0 < probs) & (probs < 1)).all()


def test_subset_indices_follow_label_fraction():
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 3)) < [0.3, 0.05, 0.01]).astype(np.float32)
    ds = Dataset.from_dict({"labels": labels.tolist(), "record": list(range(500))})
    for fraction, seed in ((0.01, 0), (0.1, 1), (0.1, 2)):
        idx = subset_indices(labels, fraction, seed)
        assert idx.tolist() == label_fraction(ds, fraction, seed=seed)["record"]
        assert (labels[idx].sum(0) > 0).all()  # every class keeps a positive
    assert subset_indices(labels, 1.0, 0).tolist() == list(range(500))
    with pytest.raises(ValueError):
        subset_indices(labels, 0.0, 0)


def test_linear_probe_example_end_to_end(saved_model_dir, tmp_path):
    example = load_example("linear_probe")
    out_dir = tmp_path / "lp"
    argv = [
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--fractions", "0.1", "1.0", "--seeds", "0", "1", "--max_steps", "60", "--eval_every", "10",
        "--num_bootstrap", "20", "--random-init", "--no_progress",
    ]
    results = example.main(argv)
    saved = json.loads((out_dir / "linear_probe_results.json").read_text())
    assert set(saved["methods"]) == {"D-BETA", "Random init"}
    for method in saved["methods"].values():
        fractions = method["synthetic"]["fractions"]
        assert set(fractions) == {"10%", "100%"}
        assert [r["seed"] for r in fractions["100%"]["runs"]] == [0, 1]
        assert fractions["100%"]["runs"][0]["num_train"] == 24
    markdown = (out_dir / "linear_probe_results.md").read_text()
    assert "| Method | Synthetic |   |" in markdown and "|   | 10% | 100% |" in markdown  # fractions as sub-columns
    assert "| D-BETA |" in markdown and "| Random init |" in markdown
    assert (out_dir / "roc_synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["methods"]["D-BETA"]["synthetic"]["fractions"]["100%"]["macro_auroc_mean"] == pytest.approx(
        saved["methods"]["D-BETA"]["synthetic"]["fractions"]["100%"]["macro_auroc_mean"]
    )
    # three splits x two encoders cached; a rerun reuses them and reproduces the numbers
    cache = sorted(p.name for p in (out_dir / "feature_cache").glob("*.safetensors"))
    assert len(cache) == 6
    again = example.main(argv)
    assert sorted(p.name for p in (out_dir / "feature_cache").glob("*.safetensors")) == cache
    assert again["methods"]["Random init"]["synthetic"]["fractions"]["10%"]["macro_auroc_mean"] == pytest.approx(
        results["methods"]["Random init"]["synthetic"]["fractions"]["10%"]["macro_auroc_mean"]
    )


def test_linear_probe_example_errors(saved_model_dir, tmp_path):
    example = load_example("linear_probe")
    with pytest.raises(SystemExit):
        example.main(["--model_name_or_path", str(saved_model_dir), "--fractions", "0"])
    with pytest.raises(ValueError, match="--ptbxl_root"):
        example.main(["--model_name_or_path", str(saved_model_dir), "--tasks", "ptbxl_super", "--output_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="config.json"):
        example.main(["--model_name_or_path", str(tmp_path), "--output_dir", str(tmp_path)])


def test_one_seed_prints_no_spread_and_updates_the_model_card(saved_model_dir, tmp_path):
    """One seed has no spread: the table shows the value alone (never "± 0.00"); --update_model_card puts the
    probe's numbers into the evaluated folder's card."""
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model_dir, model_dir)
    example = load_example("linear_probe")
    out_dir = tmp_path / "lp"
    results = example.main([
        "--model_name_or_path", str(model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--fractions", "1.0", "--seeds", "0", "--max_steps", "20", "--eval_every", "10", "--num_bootstrap", "10",
        "--no_progress", "--update_model_card",
    ])
    entry = results["methods"]["D-BETA"]["synthetic"]["fractions"]["100%"]
    assert entry["macro_auroc_std"] is None
    markdown = (out_dir / "linear_probe_results.md").read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| D-BETA |"))
    assert "±" not in row and f"{100 * entry['macro_auroc_mean']:.2f}" in row
    assert "of one seed (no spread)" in markdown
    card = ModelCard.load(model_dir / "README.md")
    [result] = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.metric_value) == (
        "feature-extraction", "synthetic", entry["macro_auroc_mean"])
    assert result.metric_name == "macro AUROC, 100% of the training labels (mean of 1 seed)"
    with pytest.raises(ValueError, match="local model folder"):
        example.main(["--model_name_or_path", "ORG/not-local", "--update_model_card", "--output_dir", str(out_dir),
                      "--synthetic_records", "40", "--no_progress"])


def test_several_seeds_print_mean_and_spread():
    runs = [{"macro_auroc": v} for v in (0.7, 0.8)]
    results = {"M": {"synthetic": {"fractions": {"10%": {"macro_auroc_mean": 0.75, "macro_auroc_std": 0.0707,
                                                            "runs": runs}}}}}
    table = format_linear_probe_table(results, paper_row=False)
    assert "| M | 75.00 ± 7.07 |" in table and "mean ± sample std over 2 seed(s)" in table
