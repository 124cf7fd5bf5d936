"""Issue #23: the amplitude contract in both directions, checked on what the model receives (after float32)."""

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
