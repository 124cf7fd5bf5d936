"""Evaluation metrics: multi-label AUROC, bootstrap CI, recall@k, ROC plot and result tables."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dbeta_hf.evaluation import (
    bootstrap_auroc_ci,
    format_results_table,
    linear_probe,
    markdown_table,
    multilabel_auroc,
    recall_at_k,
)
from dbeta_hf.evaluation.metrics import class_aurocs, fraction_label, macro_auroc
from dbeta_hf.evaluation.plotting import plot_roc_curves


def _toy(n=300, c=5, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(np.float32)
    scores = rng.normal(size=(n, c)) + signal * y
    return y, scores


# ------------------------------------------------------------------ multilabel_auroc
def test_multilabel_auroc_skips_degenerate_classes_and_matches_sklearn():
    y, scores = _toy(n=80, c=4, seed=1)
    y[:, 1] = 0.0  # no positive
    y[:, 3] = 1.0  # no negative
    scores[:10, 0] = scores[10:20, 0]  # ties
    result = multilabel_auroc(y, scores, class_names=["a", "b", "c", "d"])
    expected = {name: roc_auc_score(y[:, i], scores[:, i]) for i, name in ((0, "a"), (2, "c"))}
    assert result["per_class"] == pytest.approx(expected)
    assert result["macro_auroc"] == pytest.approx(np.mean(list(expected.values())))
    assert result["num_classes_scored"] == 2 and result["num_samples"] == 80
    assert result["skipped_classes"] == {"b": "no positive samples", "d": "no negative samples"}
    assert result["per_class_all"]["b"] is None and result["per_class_all"]["d"] is None
    assert result["per_class_all"]["a"] == pytest.approx(expected["a"])
    assert list(result["per_class_all"]) == ["a", "b", "c", "d"]


def test_multilabel_auroc_inputs():
    y, scores = _toy(n=50, c=3)
    ref = multilabel_auroc(y, scores)
    assert list(ref["per_class"]) == ["0", "1", "2"]  # default names
    # torch tensors, bool labels and 1-D (single class) inputs
    assert multilabel_auroc(torch.from_numpy(y), torch.from_numpy(scores))["macro_auroc"] == pytest.approx(ref["macro_auroc"])
    assert multilabel_auroc(y.astype(bool), scores)["macro_auroc"] == pytest.approx(ref["macro_auroc"])
    single = multilabel_auroc(y[:, 0], scores[:, 0], class_names=["x"])
    assert single["macro_auroc"] == pytest.approx(roc_auc_score(y[:, 0], scores[:, 0]))
    # no scorable class at all
    nothing = multilabel_auroc(np.zeros((5, 2)), np.zeros((5, 2)))
    assert np.isnan(nothing["macro_auroc"]) and nothing["num_classes_scored"] == 0
    with pytest.raises(ValueError, match="shape|num_samples"):
        multilabel_auroc(y, scores[:, :2])
    with pytest.raises(ValueError, match="binary"):
        multilabel_auroc(y * 2, scores)
    with pytest.raises(ValueError, match="NaN"):
        multilabel_auroc(y, np.where(y > 0, np.nan, scores))
    with pytest.raises(ValueError, match="class names"):
        multilabel_auroc(y, scores, class_names=["a"])


# ------------------------------------------------------------------ class_aurocs / macro_auroc
def _exact_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg) over all pairs, as an exact fraction rounded once."""
    pos, neg = s[y], s[~y]
    twice = 2 * int((pos[:, None] > neg[None, :]).sum()) + int((pos[:, None] == neg[None, :]).sum())
    return float(Fraction(twice, 2 * len(pos) * len(neg)))


@pytest.mark.parametrize("seed", range(4))
def test_class_aurocs_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = [7, 60, 250, 1000][seed]
    y = rng.random((n, 6)) < [0.5, 0.3, 0.1, 0.5, 0.5, 0.02]
    y[0, :] = True  # every class has a positive ...
    y[1, :] = False  # ... and a negative
    s = rng.normal(size=(n, 6)) + y
    s[:, 1] = np.round(s[:, 1], 1)  # many ties
    s[:, 2] = rng.integers(0, 3, n)  # three score levels
    s[:, 3] = 0.5  # every record tied: 0.5
    s[:, 4] = y[:, 4]  # perfect separation
    aucs = class_aurocs(y, s)
    for c in range(6):
        assert aucs[c] == pytest.approx(roc_auc_score(y[:, c], s[:, c]), abs=1e-12)
        assert aucs[c] == _exact_auroc(y[:, c], s[:, c])  # the rank statistic is exact: one rounding
    assert aucs[3] == 0.5 and aucs[4] == 1.0
    # one class per column, whatever the others hold; 1-D input is one class
    assert class_aurocs(y[:, 1], s[:, 1]) == pytest.approx(aucs[1:2])


def test_class_aurocs_unscorable_and_non_finite_classes():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    s = np.array([[0.9, 0.1, 0.3], [0.2, 0.2, 0.1], [0.8, 0.3, 0.2], [0.1, 0.4, 0.4]])
    aucs = class_aurocs(y, s)
    assert aucs[0] == 1.0 and np.isnan(aucs[1]) and np.isnan(aucs[2])  # no positive / no negative
    with_inf = s.copy()
    with_inf[0, 0] = np.inf  # an infinite score still ranks
    assert class_aurocs(y, with_inf)[0] == 1.0
    with_inf[1, 0] = -np.inf
    assert class_aurocs(y, with_inf)[0] == 1.0
    with_nan = s.copy()
    with_nan[1, 0] = np.nan
    assert np.isnan(class_aurocs(y, with_nan)[0])
    with pytest.raises(ValueError, match="binary"):
        class_aurocs(y * 2, s)
    with pytest.raises(ValueError, match="must both be"):
        class_aurocs(y, s[:, :2])


def test_class_aurocs_with_resample_counts_equal_sklearn_on_the_resample():
    rng = np.random.default_rng(3)
    y = rng.random((200, 3)) < [0.4, 0.1, 0.6]
    s = np.round(rng.normal(size=(200, 3)) + y, 1)  # many ties
    idx = rng.integers(0, 200, size=(5, 200))
    counts = np.stack([np.bincount(row, minlength=200) for row in idx])
    aucs = class_aurocs(y, s, counts)
    assert aucs.shape == (5, 3)
    for b in range(5):
        for c in range(3):
            expected = roc_auc_score(y[idx[b], c], s[idx[b], c])
            assert aucs[b, c] == pytest.approx(expected, abs=1e-12)
            assert aucs[b, c] == pytest.approx(roc_auc_score(y[:, c], s[:, c], sample_weight=counts[b]), abs=1e-12)
    # a resample without a positive of a class leaves that class unscored
    only_negatives = np.where(y[:, 1], 0, 1)[None, :]
    assert np.isnan(class_aurocs(y, s, only_negatives)[0, 1])
    with pytest.raises(ValueError, match="counts must be"):
        class_aurocs(y, s, counts[:, :10])
    with pytest.raises(ValueError, match="non-negative"):
        class_aurocs(y, s, -counts)


def test_macro_auroc_is_the_mean_over_scorable_classes():
    rng = np.random.default_rng(1)
    y = (rng.random((80, 5)) < 0.3).astype(np.float32)
    y[:, 4] = 0.0
    scores = np.round(rng.normal(size=(80, 5)), 1)  # many ties
    macro, scored = macro_auroc(y, scores)
    assert scored == 4
    assert macro == pytest.approx(np.mean([roc_auc_score(y[:, c], scores[:, c]) for c in range(4)]), abs=1e-12)
    assert macro == multilabel_auroc(y, scores)["macro_auroc"]
    nothing = macro_auroc(np.zeros((5, 2)), np.zeros((5, 2)))
    assert np.isnan(nothing[0]) and nothing[1] == 0
    diverged = scores.copy()
    diverged[0, 0] = np.nan  # a NaN score of a scored class: NaN, never "better"
    assert np.isnan(macro_auroc(y, diverged)[0])
    diverged = scores.copy()
    diverged[0, 4] = np.nan  # ... of an unscored class: ignored
    assert macro_auroc(y, diverged) == (macro, 4)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_data():
    y_small, s_small = _toy(n=200, seed=4)
    y_large, s_large = _toy(n=2000, seed=4)
    point_small = multilabel_auroc(y_small, s_small)["macro_auroc"]
    point_large = multilabel_auroc(y_large, s_large)["macro_auroc"]
    lo_s, hi_s = bootstrap_auroc_ci(y_small, s_small, num_bootstrap=400, seed=0)
    lo_l, hi_l = bootstrap_auroc_ci(y_large, s_large, num_bootstrap=1000, seed=0)
    assert lo_s < point_small < hi_s and lo_l < point_large < hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)
    # deterministic in the seed; a higher confidence gives a wider interval
    assert bootstrap_auroc_ci(y_small, s_small, num_bootstrap=400, seed=0) == (lo_s, hi_s)
    lo_99, hi_99 = bootstrap_auroc_ci(y_small, s_small, num_bootstrap=400, confidence=0.99, seed=0)
    assert lo_99 <= lo_s and hi_99 >= hi_s
    # chunked evaluation gives the same draws and the same interval
    assert bootstrap_auroc_ci(y_small, s_small, num_bootstrap=400, seed=0, max_chunk_elements=5_000) == (lo_s, hi_s)


def test_bootstrap_skips_unscorable_resamples_and_degenerate_input():
    rng = np.random.default_rng(5)
    y = np.zeros((30, 2), dtype=np.float32)
    y[3, 0] = 1.0  # one positive: many resamples miss it
    y[:, 1] = 0.0  # never scorable
    s = rng.normal(size=(30, 2))
    s[3, 0] = 5.0
    low, high = bootstrap_auroc_ci(y, s, num_bootstrap=300)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert all(np.isnan(v) for v in bootstrap_auroc_ci(np.zeros((10, 2)), s[:10]))
    assert caught
    with pytest.raises(ValueError):
        bootstrap_auroc_ci(y, s, confidence=1.5)
    with pytest.raises(ValueError):
        bootstrap_auroc_ci(y, s, num_bootstrap=0)


# ------------------------------------------------------------------ recall@k
def test_recall_at_k_hand_count():
    sim = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],  # correct item 0 ranked 1st
            [0.8, 0.2, 0.7, 0.6],  # correct item 1 ranked 4th
            [0.1, 0.9, 0.4, 0.2],  # correct item 2 ranked 2nd
        ]
    )
    gt = np.array([0, 1, 2])
    assert recall_at_k(sim, gt, ks=(1, 2, 3, 4)) == {"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 2 / 3, "R@4": 1.0}
    # the same through a relevance matrix, plus a query with two relevant items (identical reports)
    rel = np.zeros((3, 4), dtype=bool)
    rel[0, 0] = rel[1, 1] = rel[2, 2] = True
    assert recall_at_k(sim, rel, ks=(1, 2)) == {"R@1": 1 / 3, "R@2": 2 / 3}
    rel[1, 3] = True  # item 3 is relevant to query 1 too and ranks 3rd
    assert recall_at_k(sim, rel, ks=(2, 3)) == {"R@2": 2 / 3, "R@3": 1.0}
    # a query without a relevant item is a miss; k beyond the gallery is clipped
    rel[2] = False
    assert recall_at_k(sim, rel, ks=(10,)) == {"R@10": 2 / 3}
    # ties keep the candidate order
    assert recall_at_k(np.zeros((2, 3)), np.array([0, 2]), ks=(1, 2, 3)) == {"R@1": 0.5, "R@2": 0.5, "R@3": 1.0}


def test_recall_is_one_when_each_query_matches_itself():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T  # every query's own item is its most similar
    assert recall_at_k(sim, np.arange(40)) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    assert recall_at_k(torch.from_numpy(sim), np.eye(40, dtype=bool), ks=(1,)) == {"R@1": 1.0}
    assert recall_at_k(-sim, np.arange(40), ks=(1, 39, 40)) == {"R@1": 0.0, "R@39": 0.0, "R@40": 1.0}
    # chunking over queries does not change the result
    noisy = sim + rng.normal(scale=0.5, size=sim.shape)
    assert recall_at_k(noisy, np.arange(40), chunk_size=7) == recall_at_k(noisy, np.arange(40))
    with pytest.raises(ValueError):
        recall_at_k(sim, np.arange(40), ks=(0,))
    with pytest.raises(ValueError):
        recall_at_k(sim, np.arange(39))
    with pytest.raises(ValueError):
        recall_at_k(sim, np.full(40, 40))
    with pytest.raises(ValueError):
        recall_at_k(np.full((2, 2), np.nan), np.arange(2))


# ------------------------------------------------------------------ ROC plot
def test_plot_roc_curves_writes_a_png(tmp_path):
    y, scores = _toy(n=120, c=3)
    y[:, 2] = 0.0  # not scorable: left out of the plot
    path = plot_roc_curves(y, torch.from_numpy(scores), ["AFIB", "SR", "NONE"], tmp_path / "sub" / "roc.png", title="Test")
    assert path.is_file() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_roc_curves(y, scores, ["a"], tmp_path / "bad.png")


# ------------------------------------------------------------------ tables
def test_zero_shot_style_table():
    table = markdown_table(
        {
            "D-BETA (paper)": {"ptbxl_super": 0.762, "ptbxl_sub": 0.759, "cpsc2018": 0.801},
            "ours": {"ptbxl_super": 0.75, "ptbxl_sub": float("nan"), "cpsc2018": None},
        },
        title="Zero-shot AUROC (%)",
    )
    lines = table.splitlines()
    assert lines[0] == "**Zero-shot AUROC (%)**" and lines[1] == ""
    assert lines[2] == "| Method | PTB-XL Super | PTB-XL Sub | CPSC2018 | Average |"
    assert lines[3] == "|---|:---:|:---:|:---:|:---:|"
    assert lines[4] == "| D-BETA (paper) | 76.20 | 75.90 | 80.10 | 77.40 |"
    assert lines[5] == "| ours | 75.00 | – | – | – |"
    plain = markdown_table({"m": {"a": 0.5}}, percent=False, decimals=3, average=False)
    assert plain.splitlines() == ["| Method | a |", "|---|:---:|", "| m | 0.500 |"]


def test_fraction_label_reads_numbers_as_proportions_of_the_training_labels():
    assert fraction_label(1.0) == fraction_label(1) == fraction_label("1.0") == "100%"  # all the data, not 1 %
    assert [fraction_label(f) for f in (0.01, 0.1, 0.5, 0.07, 0.005)] == ["1%", "10%", "50%", "7%", "0.5%"]
    assert fraction_label(np.float32(0.1)) == "10%"
    assert fraction_label(" 10% ") == "10%" and fraction_label("all") == "all"  # labels stay as they are
    for bad in (0, 0.0, -0.1, 1.5, 10, 100, "10"):
        with pytest.raises(ValueError, match=r"proportion of the training labels in \(0, 1\]"):
            fraction_label(bad)
    # one function for the tables and the results keys
    assert linear_probe.fraction_label is fraction_label
    table = markdown_table({"m": {"t": {1.0: 0.9, 0.01: 0.7, "10%": 0.8}}}, average=False).splitlines()
    assert table[2] == "|   | 1% | 10% | 100% |" and table[3] == "| m | 70.00 | 80.00 | 90.00 |"


def test_linear_probe_style_table_has_fraction_sub_columns():
    results = {
        "ptbxl_super": {1.0: 0.88, 0.01: 0.8315, 0.1: 0.86},  # any order; sorted 1 / 10 / 100 %
        "cpsc2018": {"1%": (0.85, 0.01), "10%": 0.9, "100%": 0.95},  # labels and (mean, std)
    }
    lines = format_results_table(results, "Linear probing", row_label="dbeta_hf").splitlines()
    assert lines[2] == "| Method | PTB-XL Super |   |   | CPSC2018 |   |   | Average |   |   |"
    assert lines[3] == "|" + "|".join(["---"] + [":---:"] * 9) + "|"
    assert lines[4] == "|   | 1% | 10% | 100% | 1% | 10% | 100% | 1% | 10% | 100% |"
    assert lines[5] == "| dbeta_hf | 83.15 | 86.00 | 88.00 | 85.00 ± 1.00 | 90.00 | 95.00 | 84.08 | 88.00 | 91.50 |"
    # proportions are read as fractions of the training data; a missing cell is a dash
    two = markdown_table({"a": {"t": {0.01: 0.7}}, "b": {"t": {0.1: 0.8}}}, average=False)
    assert two.splitlines()[2] == "|   | 1% | 10% |"
    assert two.splitlines()[3] == "| a | 70.00 | – |"
    with pytest.raises(ValueError):
        markdown_table({})
