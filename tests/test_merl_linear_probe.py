"""MERL's linear-probe protocol: input scaling, the subset draw, the schedule and both reported numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from helpers import load_example

from dbeta_hf.evaluation.merl_linear_probe import (
    MERLProbeConfig,
    merl_input_transform,
    merl_train_subset,
    run_merl_linear_probe,
    train_merl_probe,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_inputs_are_min_max_scaled_per_record_over_all_leads():
    rng = np.random.default_rng(0)
    ecg = torch.from_numpy(rng.normal(size=(2, 12, 5000)).astype(np.float32))
    ecg[1] *= 7.0
    out = merl_input_transform(ecg)
    for i in range(2):
        low, high = ecg[i].min(), ecg[i].max()
        torch.testing.assert_close(out[i], (ecg[i] - low) / (high - low + 1e-8))
        assert out[i].min() == 0 and out[i].max() == pytest.approx(1.0, abs=1e-6)
    # one scale per record, not per lead: leads keep their relative amplitudes
    lead_ranges = out[0].amax(dim=-1) - out[0].amin(dim=-1)
    assert (lead_ranges < 1.0 - 1e-3).any()


def test_cpsc2018_keeps_2500_samples_and_zero_pads_before_scaling():
    ecg = torch.full((1, 12, 5000), 2.0)
    ecg[0, 0, 100] = 5.0
    out = merl_input_transform(ecg, "cpsc2018")
    # kept part: 2 -> (2 - 0) / 5, the padding zeros are the minimum
    assert out[0, 1, 0] == pytest.approx(0.4, abs=1e-6) and out[0, 0, 100] == pytest.approx(1.0, abs=1e-6)
    assert (out[0, :, 2500:] == 0).all()
    with pytest.raises(ValueError, match="5000"):
        merl_input_transform(torch.zeros(1, 12, 4000))


def test_subset_is_sklearns_train_test_split_with_random_state_42():
    subset = merl_train_subset(200, 0.1)
    expected, _ = train_test_split(np.arange(200), train_size=0.1, random_state=42)
    np.testing.assert_array_equal(subset, expected)
    assert len(subset) == 20 and not np.array_equal(subset, merl_train_subset(200, 0.1, random_state=0))
    np.testing.assert_array_equal(merl_train_subset(7, 1.0), np.arange(7))
    with pytest.raises(ValueError, match="fraction"):
        merl_train_subset(10, 0.0)


def _planted(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 3)) < 0.4).astype(np.float32)
    features = rng.normal(size=(n, 6)).astype(np.float32)
    features[:, :3] += 10.0 * labels
    return features, labels


def test_milestone_schedule_steps_per_iteration_and_per_epoch_like_merl():
    x, y = _planted(8, 0)
    xt, yt = _planted(40, 1)
    # 8 records, batch 4: 2 iterations + 1 epoch-end step = 3 scheduler steps per epoch; milestone 3 is
    # reached at the end of epoch 1, so epochs 2 and 3 run at lr * gamma
    merl = train_merl_probe(x, y, xt, yt, MERLProbeConfig(epochs=3, batch_size=4, milestones=(3,)))
    assert merl["learning_rate_per_epoch"] == pytest.approx([1e-3, 1e-4, 1e-4])
    per_epoch = train_merl_probe(x, y, xt, yt, MERLProbeConfig(epochs=3, batch_size=4, milestones=(2,),
                                                               scheduler_step="epoch"))
    assert per_epoch["learning_rate_per_epoch"] == pytest.approx([1e-3, 1e-3, 1e-4])
    defaults = MERLProbeConfig()
    assert (defaults.learning_rate, defaults.weight_decay, defaults.batch_size, defaults.epochs) == (1e-3, 1e-4, 16, 100)
    assert (defaults.milestones, defaults.gamma, defaults.random_state) == ((40,), 0.1, 42)
    with pytest.raises(ValueError, match="scheduler_step"):
        MERLProbeConfig(scheduler_step="batch")


def test_reports_the_maximum_and_the_last_epoch_test_auroc():
    x, y = _planted(64, 0)
    xt, yt = _planted(64, 1)
    result = train_merl_probe(x, y, xt, yt, MERLProbeConfig(epochs=6, milestones=(3,), scheduler_step="epoch",
                                                                   learning_rate=0.05))
    curve = result["test_auroc_per_epoch"]
    assert len(curve) == 6 and result["last_epoch_auroc"] == curve[-1]
    assert result["max_test_auroc"] == max(curve) and curve[result["max_test_epoch"] - 1] == max(curve)
    assert result["max_test_auroc"] > 0.9  # the planted signal is found
    # the per-epoch AUROC is sklearn's macro AUROC of the head's scores: recompute the last epoch
    torch.manual_seed(42)
    head = torch.nn.Linear(6, 3)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3], gamma=0.1)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(6):
        order = torch.randperm(64)
        for start in range(0, 64, 16):
            idx = order[start:start + 16]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(xs[idx]), ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    with torch.no_grad():
        scores = head(torch.from_numpy(xt)).numpy()
    assert result["last_epoch_auroc"] == pytest.approx(roc_auc_score(yt, scores, average="macro"), abs=1e-9)

    table = run_merl_linear_probe(x, y, xt, yt, ["A", "B", "C"], fractions=[0.5, 1.0],
                                  config=MERLProbeConfig(epochs=2))
    assert table["protocol"] == "merl" and set(table["fractions"]) == {"50%", "100%"}
    assert table["fractions"]["50%"]["num_train"] == 32
    assert table["fractions"]["50%"]["max_test_auroc_label"].startswith("optimistic")


def test_linear_probe_example_with_the_merl_protocol(saved_model_dir, tmp_path):
    example = load_example("linear_probe")
    out_dir = tmp_path / "merl"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--fractions", "0.5", "1.0", "--protocol", "merl", "--merl_epochs", "3", "--merl_milestones", "2",
        "--no_progress",
    ])
    saved = json.loads((out_dir / "linear_probe_results.json").read_text())
    assert saved["protocol"] == "merl" and results["protocol"] == "merl"
    task = saved["methods"]["D-BETA"]["synthetic"]
    assert task["config"]["epochs"] == 3 and task["config"]["milestones"] == [2]
    assert task["config"]["learning_rate"] == 1e-3 and task["config"]["batch_size"] == 16
    entry = task["fractions"]["100%"]
    assert entry["num_train"] == 24 and len(entry["test_auroc_per_epoch"]) == 3
    assert entry["max_test_auroc"] == max(entry["test_auroc_per_epoch"])
    assert entry["last_epoch_auroc"] == entry["test_auroc_per_epoch"][-1]
    assert task["fractions"]["50%"]["num_train"] == 12
    markdown = (out_dir / "linear_probe_results.md").read_text()
    assert "Max test AUROC (optimistic)" in markdown and "Last-epoch AUROC" in markdown
    assert len(list((out_dir / "feature_cache").glob("*merl*.safetensors"))) == 2
