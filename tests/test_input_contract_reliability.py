"""Issue #23: the amplitude contract in both directions (checked on what the model receives, after float32) and the
processor/model window cross-check."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dbeta_hf import DBetaECGFeatureExtractor
from dbeta_hf.ecg_signal import implausibly_small_amplitude


def _ecg(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500.0
    return (scale * (np.sin(2 * np.pi * 1.2 * t)[None, :] + 0.05 * rng.normal(size=(12, 5000)))).astype(np.float64)


@pytest.fixture
def captured(caplog):
    caplog.set_level(logging.WARNING)
    return caplog


def test_volts_declared_as_millivolts_warn_naming_volts(captured):
    fe = DBetaECGFeatureExtractor()
    fe(_ecg(1e-3), sampling_rate=500)  # an ECG in volts, units defaulting to mV: 1000x too small
    assert "implausibly small for units='mV'" in captured.text and "pass units='V'" in captured.text
    captured.clear()
    fe(_ecg(1e-3), sampling_rate=500, units="V")  # declared right: no warning
    fe(_ecg(1.0), sampling_rate=500)
    assert "implausibly small" not in captured.text


def test_tiny_values_that_no_unit_explains_warn(captured):
    DBetaECGFeatureExtractor()(_ecg(1e-8), sampling_rate=500)
    assert "implausibly small" in captured.text and "no unit makes this an ECG" in captured.text


def test_values_below_float32_range_are_reported_as_all_zero(captured):
    out = DBetaECGFeatureExtractor()(_ecg(1e-300), sampling_rate=500, return_tensors="np")
    assert not out["ecg_values"].any() and not out["lead_mask"].any()
    assert "all zeros" in captured.text


def test_check_values_warns_too(captured):
    DBetaECGFeatureExtractor.check_values(_ecg(1e-3)[None].astype(np.float32))
    assert "pass units='V'" in captured.text


def test_small_amplitude_rule():
    assert implausibly_small_amplitude(_ecg(1.0)) is None
    assert implausibly_small_amplitude(np.zeros((12, 100))) is None  # the all-zero check reports that
    assert "volts" in implausibly_small_amplitude(_ecg(1e-3))
    # a flat-line lead among real ones is not "too small": the median over the non-flat leads decides
    mixed = _ecg(1.0)
    mixed[:3] = 0.0
    assert implausibly_small_amplitude(mixed) is None


# ------------------------------------------------------------------------------------------- 5. processor / model
def test_a_processor_with_another_window_is_refused_next_to_the_model(tiny_tokenizer_path, tmp_path):
    import torch

    from dbeta_hf import DBetaModel, DBetaProcessor
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    model = DBetaModel(tiny_config())  # 5000 samples at 500 Hz
    other = DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path), sampling_rate=250, num_samples=2500)
    message = r"num_samples 2500 \(processor\) != 5000 \(model\); sampling_rate 250 \(processor\) != 500 \(model\)"
    with pytest.raises(ValueError, match=message + r".*DBetaProcessor.from_pretrained"):
        DBetaZeroShotClassifier(model, other)
    model.save_pretrained(tmp_path)
    other.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=message):
        DBetaZeroShotClassifier.from_pretrained(tmp_path)
    # on call: a processor changed after the classifier was built
    good = DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path))
    classifier = DBetaZeroShotClassifier(model, good)
    good.feature_extractor.num_samples = 2500
    with pytest.raises(ValueError, match=r"encode_ecgs: .*num_samples 2500 \(processor\) != 5000 \(model\)"):
        classifier.encode_ecgs(np.zeros((1, 12, 5000), np.float32) + 0.5, sampling_rate=500)


def test_the_pipeline_refuses_a_processor_with_another_window(tiny_tokenizer_path, tmp_path):
    import torch
    from transformers import pipeline

    from dbeta_hf import DBetaModel, DBetaProcessor
    from dbeta_hf.pipelines import register_pipelines
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    DBetaModel(tiny_config()).save_pretrained(tmp_path)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path), sampling_rate=250, num_samples=2500).save_pretrained(tmp_path)
    register_pipelines()
    with pytest.raises(ValueError, match=r"num_samples 2500 \(processor\) != 5000 \(model\)"):
        pipeline("zero-shot-ecg-classification", model=str(tmp_path), device="cpu")
