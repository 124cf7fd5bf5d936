"""Arguments of the zero-shot ECG pipeline that would give a wrong or empty answer are errors."""

from __future__ import annotations

import numpy as np
import pytest

DESCRIPTIONS = {"AFIB": "atrial fibrillation", "SR": "sinus rhythm", "BBB": "bundle branch block"}


@pytest.fixture(scope="module")
def classifier_pipe(saved_model_dir):
    from transformers import pipeline

    from dbeta_hf.pipelines import register_pipelines

    register_pipelines()
    return pipeline("zero-shot-ecg-classification", model=str(saved_model_dir), device="cpu")


@pytest.fixture(scope="module")
def ecg():
    return np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32)


@pytest.mark.parametrize("top_k", [0, -1, 1.5])
def test_top_k_must_be_positive(classifier_pipe, ecg, top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        classifier_pipe(ecg, candidate_labels=["AFIB", "SR"], sampling_rate=500, descriptions=DESCRIPTIONS, top_k=top_k)


def test_template_needs_a_placeholder(classifier_pipe, ecg):
    with pytest.raises(ValueError, match=r"hypothesis_template must contain '\{\}'"):
        classifier_pipe(ecg, candidate_labels=["AFIB", "SR"], sampling_rate=500, descriptions=DESCRIPTIONS,
                        hypothesis_template="an ECG")


def test_duplicate_labels_are_an_error(classifier_pipe, ecg):
    with pytest.raises(ValueError, match=r"candidate_labels repeats \['SR'\]"):
        classifier_pipe(ecg, candidate_labels=["SR", "AFIB", "SR"], sampling_rate=500, descriptions=DESCRIPTIONS)


def test_valid_arguments_still_work(classifier_pipe, ecg):
    out = classifier_pipe(ecg, candidate_labels=["AFIB", "SR", "BBB"], sampling_rate=500, descriptions=DESCRIPTIONS,
                          hypothesis_template="an ecg showing {}", top_k=2)
    assert len(out) == 2 and out[0]["score"] >= out[1]["score"]
