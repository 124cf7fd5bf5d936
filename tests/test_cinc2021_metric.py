"""The PhysioNet/CinC 2021 challenge score, its class / weights tables, macro F1."""

from __future__ import annotations

import numpy as np
import pytest

from dbeta_hf.evaluation.cinc2021_classes import (
    CINC2021_NORMAL_CLASS,
    cinc2021_class_names,
    cinc2021_code_to_index,
    cinc2021_weights,
    resolve_cinc2021_class,
)
from dbeta_hf.evaluation.metrics import cinc2021_challenge_score, cinc2021_metrics, multilabel_f1

CLASSES = cinc2021_class_names()
AF, AFL, NSR, TAB = (CLASSES.index(c) for c in ("164889003", "164890007", "426783006", "164934002"))


def _rows(*class_sets, n_classes=26):
    out = np.zeros((len(class_sets), n_classes), dtype=bool)
    for row, columns in enumerate(class_sets):
        out[row, list(columns)] = True
    return out


def test_tables_match_the_published_files():
    assert len(CLASSES) == 26
    assert CLASSES[:6] == ["164889003", "164890007", "6374002", "426627000", "733534002|164909002", "713427006|59118001"]
    assert "284470004|63593006" in CLASSES and "427172004|17338001" in CLASSES
    assert cinc2021_class_names("abbreviation")[4:6] == ["CLBBB|LBBB", "CRBBB|RBBB"]
    w = cinc2021_weights()
    assert w.shape == (26, 26) and np.allclose(w, w.T) and np.all(np.diag(w) == 1.0)
    # spot values of weights.csv
    assert w[AF, AFL] == 0.5 and w[AF, NSR] == 0.25 and w[NSR, TAB] == 0.25
    assert w[CLASSES.index("164917005"), NSR] == 0.15  # QAb vs sinus rhythm, the smallest weight
    assert len(cinc2021_code_to_index()) == 30


def test_perfect_outputs_score_one_and_normal_only_scores_zero():
    rng = np.random.default_rng(0)
    labels = rng.random((40, 26)) < 0.15
    assert cinc2021_challenge_score(labels, labels) == pytest.approx(1.0)
    normal_only = np.zeros_like(labels)
    normal_only[:, NSR] = True
    assert cinc2021_challenge_score(labels, normal_only) == pytest.approx(0.0, abs=1e-12)


def test_partially_correct_case_by_hand():
    labels = _rows({AF}, {AF}, {NSR})
    outputs = _rows({AF}, {AFL}, {NSR, TAB})
    # record 1: L = O = {AF}, |L U O| = 1                -> A[AF, AF]   += 1      -> 1 * w(AF, AF)=1      = 1
    # record 2: L = {AF}, O = {AFL}, |L U O| = 2         -> A[AF, AFL]  += 1/2    -> 0.5 * w(AF, AFL)=0.5 = 0.25
    # record 3: L = {NSR}, O = {NSR, TAb}, |L U O| = 2   -> A[NSR, NSR] += 1/2, A[NSR, TAb] += 1/2
    #                                                    -> 0.5 * 1 + 0.5 * w(NSR, TAb)=0.25          = 0.625
    # observed = 1 + 0.25 + 0.625 = 1.875; correct (O = L) = 1 + 1 + 1 = 3
    # inactive (O = {NSR}): records 1, 2: |L U O| = 2 -> 0.5 * w(AF, NSR)=0.25 = 0.125 each; record 3: 1
    #                     = 0.125 + 0.125 + 1 = 1.25
    # score = (1.875 - 1.25) / (3 - 1.25) = 0.625 / 1.75 = 0.357142...
    assert cinc2021_challenge_score(labels, outputs) == pytest.approx(0.625 / 1.75)
    # the same three columns passed on their own, by code and by abbreviation
    subset = [AF, AFL, NSR, TAB]
    assert cinc2021_challenge_score(labels[:, subset], outputs[:, subset], classes=["164889003", "164890007", "426783006", "164934002"]) == pytest.approx(0.625 / 1.75)
    assert cinc2021_challenge_score(labels[:, subset].astype(int), outputs[:, subset].astype(float), classes=["AF", "AFL", "NSR", "TAb"]) == pytest.approx(0.625 / 1.75)


def _reference_score(labels, outputs):
    """The published definition, one record and one (label, output) pair at a time."""
    w = cinc2021_weights()

    def raw(outs):
        total = 0.0
        for y, o in zip(labels, outs):
            norm = max(1, int(np.sum(y | o)))
            for i in np.flatnonzero(y):
                for j in np.flatnonzero(o):
                    total += w[i, j] / norm
        return total

    inactive = np.zeros_like(outputs)
    inactive[:, NSR] = True
    return (raw(outputs) - raw(inactive)) / (raw(labels) - raw(inactive))


def test_matches_the_per_record_definition_on_random_outputs():
    rng = np.random.default_rng(1)
    labels = rng.random((30, 26)) < 0.12
    outputs = rng.random((30, 26)) < 0.2
    outputs[3] = False  # a record without outputs
    labels[4] = False  # and one without labels
    assert cinc2021_challenge_score(labels, outputs) == pytest.approx(_reference_score(labels, outputs), rel=1e-12)


def test_merged_classes_are_equivalent():
    crbbb = CLASSES.index("713427006|59118001")
    labels = _rows({crbbb, NSR}, {AF}, {crbbb})
    outputs = _rows({crbbb}, {AF, crbbb}, {NSR})
    merged = cinc2021_challenge_score(labels, outputs)
    # the same data with the merged class split into its two codes: a record labelled 713427006 and one
    # predicted 59118001 are the same class
    names = ["713427006", "59118001", "164889003", "426783006"]
    split_labels = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=bool)
    split_outputs = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=bool)
    assert cinc2021_challenge_score(split_labels, split_outputs, classes=names) == pytest.approx(merged)
    # the reversed spelling of the merged name and the abbreviations name the same class
    assert resolve_cinc2021_class("59118001|713427006") == resolve_cinc2021_class("CRBBB|RBBB") == crbbb
    assert resolve_cinc2021_class("RBBB") == crbbb


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="binary"):
        cinc2021_challenge_score(np.full((2, 26), 0.3), np.zeros((2, 26)))
    with pytest.raises(ValueError, match="same shape"):
        cinc2021_challenge_score(np.zeros((2, 26), bool), np.zeros((3, 26), bool))
    with pytest.raises(ValueError, match="pass the column names"):
        cinc2021_challenge_score(np.zeros((2, 5), bool), np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="normal class 426783006"):
        cinc2021_challenge_score(np.eye(2, dtype=bool), np.eye(2, dtype=bool), classes=["AF", "AFL"])
    with pytest.raises(ValueError, match="not one of the 30"):
        cinc2021_challenge_score(np.eye(2, dtype=bool), np.eye(2, dtype=bool), classes=["NSR", "12345"])
    with pytest.raises(ValueError, match="different scored classes"):
        resolve_cinc2021_class("164889003|164890007")
    assert CINC2021_NORMAL_CLASS == "426783006"


def test_macro_f1_and_metrics_bundle():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=bool)
    outputs = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=bool)
    # class 0: TP 1, FP 1, FN 1 -> 2/4 = 0.5; class 1: TP 2, FP 0, FN 0 -> 1; class 2: undefined (no label, no output)
    f1 = multilabel_f1(labels, outputs)
    assert f1["macro_f1"] == pytest.approx(0.75) and np.isnan(f1["per_class"][2])
    probabilities = np.array([[0.9, 0.2, 0.1], [0.4, 0.7, 0.1], [0.6, 0.8, 0.3]])
    bundle = cinc2021_metrics(labels, probabilities, classes=["AF", "NSR", "TAb"])
    assert bundle["macro_f1"] == pytest.approx(0.75)  # probabilities >= 0.5 are the outputs above
    assert bundle["challenge_score"] == pytest.approx(cinc2021_challenge_score(labels, outputs, ["AF", "NSR", "TAb"]))
    # AF: positives 0.9, 0.4 vs negative 0.6 -> 1/2; NSR: positives 0.7, 0.8 vs 0.2 -> 1; TAb: no positive, skipped
    assert bundle["macro_auroc"] == pytest.approx(0.75)
