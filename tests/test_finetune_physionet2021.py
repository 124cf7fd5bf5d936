"""Lead subsets through the feature extractor, and examples/finetune.py on the PhysioNet 2021 fixture."""

from __future__ import annotations

import functools
import json

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

from data_fixtures import default_physionet2021_records, write_physionet2021
from helpers import load_example

from dbeta_hf import DBetaForECGClassification
from dbeta_hf.evaluation.finetune import LEAD_SUBSETS, ECGClassificationCollator, format_cinc2021_table, lead_subset

pytestmark = pytest.mark.usefixtures("one_cpu_thread")
CANONICAL = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_lead_subsets_are_the_challenge_sets():
    assert lead_subset(6) == ("I", "II", "III", "aVR", "aVL", "aVF")
    assert lead_subset(3) == ("I", "II", "V2") and lead_subset(2) == ("I", "II") and lead_subset(1) == ("I",)
    assert list(LEAD_SUBSETS[12]) == CANONICAL
    with pytest.raises(ValueError, match="no 4-lead setting"):
        lead_subset(4)


def test_collator_zero_fills_the_missing_leads():
    rng = np.random.default_rng(0)
    examples = [{"ecg_values": rng.normal(size=(12, 5000)).astype(np.float16), "labels": np.array([1.0, 0.0])} for _ in range(3)]
    batch = ECGClassificationCollator(lead_names=lead_subset(3))(examples)
    kept = [CANONICAL.index(n) for n in ("I", "II", "V2")]
    dropped = [i for i in range(12) if i not in kept]
    stacked = np.stack([e["ecg_values"].astype(np.float32) for e in examples])
    np.testing.assert_allclose(batch["ecg_values"][:, kept].numpy(), stacked[:, kept], atol=1e-6)
    assert not batch["ecg_values"][:, dropped].any()
    assert batch["lead_mask"].tolist() == [[i in kept for i in range(12)]] * 3
    full = ECGClassificationCollator(lead_names=lead_subset(12))(examples)
    np.testing.assert_allclose(full["ecg_values"].numpy(), stacked, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown ECG lead name 'X7'"):
        ECGClassificationCollator(lead_names=["I", "X7"])
    with pytest.raises(ValueError, match="subset of the stored leads"):
        ECGClassificationCollator(lead_names=["V1"], stored_lead_names=["I", "II"])


@pytest.fixture(scope="module")
def physionet2021_root(tmp_path_factory):
    root, _ = write_physionet2021(tmp_path_factory.mktemp("c21"), default_physionet2021_records(copies=3))
    return root


@pytest.fixture
def isolated_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def test_finetune_physionet2021_12_and_6_leads(saved_model_dir, physionet2021_root, tmp_path, monkeypatch, isolated_datasets_cache):
    """The command on the 2021-layout fixture: every batch (training and test) of the 6-lead run has zeros in the
    precordial leads, the results carry the CinC score, and the table follows the paper's Table 1."""
    seen = {}
    original = DBetaForECGClassification.forward

    @functools.wraps(original)  # Trainer keeps the dataset columns named in forward's signature
    def recording_forward(self, ecg_values, *args, **kwargs):
        seen.setdefault("train" if self.training else "eval", []).append(ecg_values.detach().clone())
        return original(self, ecg_values, *args, **kwargs)

    monkeypatch.setattr(DBetaForECGClassification, "forward", recording_forward)
    example = load_example("finetune")
    titles = []
    plot = example.plot_roc_curves

    def recording_plot(*args, title=None, **kwargs):
        titles.append(title)
        return plot(*args, title=title, **kwargs)

    monkeypatch.setattr(example, "plot_roc_curves", recording_plot)
    out_dir = tmp_path / "ft"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--task", "physionet2021",
        "--physionet2021_root", str(physionet2021_root), "--leads", "6", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--num_bootstrap", "10", "--no_progress",
    ])
    assert seen["train"] and seen["eval"]
    for batch in seen["train"] + seen["eval"]:
        assert not batch[:, 6:].any() and batch[:, :6].abs().sum() > 0
    run = results["methods"]["D-BETA (fine-tuned)"]["physionet2021_6lead"]["fractions"]["100%"]["runs"][0]
    assert -1.0 <= run["challenge_score"] <= 1.0 and 0.0 <= run["macro_f1"] <= 1.0
    assert run["num_train"] == 21 and run["global_steps"] == 2
    table = (out_dir / "physionet2021_table.md").read_text()
    assert "| Method | Task | P-6-lead |" in table
    assert "| D-BETA / C-MELT (paper, Table 1) | Dx. | 81.1 |" in table
    # one seed: its value, no "± 0.0" spread
    assert f"| D-BETA (fine-tuned) | Dx. | {100 * run['challenge_score']:.1f} |" in table and "±" not in table.split("\n")[4]
    assert "| D-BETA (fine-tuned) | P-6-lead | I, II, III, aVR, aVL, aVF | 0 |" in table
    # the saved model's card carries the challenge score of the run it keeps
    card = ModelCard.load(out_dir / "model_physionet2021_6lead" / "README.md")
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert measured["challenge_score"] == pytest.approx(run["challenge_score"])
    assert measured["roc_auc"] == pytest.approx(run["macro_auroc"])
    assert {r.dataset_name for r in card.data.eval_results} == {"PhysioNet 2021 (6 leads)"}

    seen.clear()
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--task", "physionet2021",
        "--physionet2021_root", str(physionet2021_root), "--max_steps", "2", "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--num_bootstrap", "10", "--no_progress",
    ])
    assert all(batch[:, 6:].abs().sum() > 0 for batch in seen["train"] + seen["eval"])  # 12 leads by default
    saved = json.loads((out_dir / "finetune_results.json").read_text())
    assert "physionet2021" in saved["methods"]["D-BETA (fine-tuned)"]
    assert "| D-BETA / C-MELT (paper, Table 1) | Dx. | 85.7 |" in saved["physionet2021_table"]
    assert results["methods"]["D-BETA (fine-tuned)"]["physionet2021"]["leads"] == CANONICAL
    # the ROC plots of the two runs say which lead set they show
    assert titles == ["Fine-tuned, PhysioNet 2021, P-6-lead (I, II, III, aVR, aVL, aVF), 100% labels, seed 0",
                      "Fine-tuned, PhysioNet 2021, 12-lead, 100% labels, seed 0"]


def test_cinc_table_layout():
    runs = {"Mine": {12: [{"seed": 0, "challenge_score": 0.5, "macro_auroc": 0.8, "macro_f1": 0.3},
                          {"seed": 1, "challenge_score": 0.7, "macro_auroc": 0.9, "macro_f1": 0.5}],
                     1: [{"seed": 0, "challenge_score": 0.2, "macro_auroc": 0.6, "macro_f1": 0.1}]}}
    table = format_cinc2021_table(runs)
    # mean 60.0, sample std of (50, 70) = 14.1
    assert "| Mine | Dx. | 60.0 ± 14.1 | 20.0 |" in table  # one seed (1-lead): no spread
    assert "| D-BETA / C-MELT (paper, Table 1) | Dx. | 85.7 | 76.5 |" in table
    assert "| Mine | P-1-lead | I | 0 | 20.0 | 60.0 | 10.0 | 76.5 |" in table
    assert "| Mine | 12-lead | I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6 | 0, 1 | 60.0 ± 14.1 | 85.0 ± 7.1 |" in table
    assert torch.__version__  # keep the import used
