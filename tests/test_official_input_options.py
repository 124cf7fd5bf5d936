"""Input options that reproduce other codes' preprocessing exactly.

* `input_convention.per_record_minmax`: MERL's / MELP's ``(x - min) / (max - min + 1e-8)`` over the whole record.
* `ecg_signal.resample_signal(method="fft")` / `resample_signal_fft`: ``scipy.signal.resample``, as D-BETA's
  zero-shot notebook resamples CODE-15 (400 -> 500 Hz, 4096 -> 5120 samples).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as scipy_signal

from dbeta_hf.ecg_signal import RESAMPLE_METHODS, resample_signal, resample_signal_fft
from dbeta_hf.input_convention import per_record_minmax


def _merl(ecg):
    """MERL's expression, written with numpy's global min / max of one record."""
    return (ecg - np.min(ecg)) / (np.max(ecg) - np.min(ecg) + 1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_minmax_is_merls_expression_bit_for_bit(dtype):
    ecg = np.random.default_rng(0).normal(scale=0.4, size=(12, 5000)).astype(dtype)
    ecg[3] += 2.0  # one lead with an offset: a per-lead scaling would differ
    before = ecg.copy()
    out = per_record_minmax(ecg)
    assert out.dtype == dtype and out.shape == (12, 5000)
    np.testing.assert_array_equal(out, _merl(ecg))
    np.testing.assert_array_equal(ecg, before)  # not modified in place
    # one minimum and one maximum for the whole record, not per lead
    assert out.min() == 0.0 and 1.0 - 1e-6 < out.max() <= 1.0
    lead_minima = out.min(axis=1)
    assert (lead_minima == 0.0).sum() == 1 and lead_minima[3] > 0.3


def test_minmax_scales_each_record_of_a_batch_alone():
    batch = np.random.default_rng(1).normal(size=(3, 12, 100)) * np.array([1.0, 5.0, 0.1])[:, None, None]
    out = per_record_minmax(batch)
    for i in range(3):
        np.testing.assert_array_equal(out[i], _merl(batch[i]))


def test_minmax_padding_takes_part_when_padded_first():
    """MERL's CPSC2018 path: the first 2500 samples, zero-padded to 5000, then scaled (the zeros set the minimum)."""
    record = np.random.default_rng(2).uniform(1.0, 2.0, size=(12, 2500))
    padded = np.pad(record, ((0, 0), (0, 2500)))
    out = per_record_minmax(padded)
    np.testing.assert_array_equal(out[:, 2500:], 0.0)
    np.testing.assert_allclose(out[:, :2500], record / (record.max() + 1e-8), rtol=1e-15)


def test_minmax_edge_cases_and_errors():
    np.testing.assert_array_equal(per_record_minmax(np.full((12, 10), 3.5)), np.zeros((12, 10)))  # flat -> zeros
    ints = np.arange(24, dtype=np.int16).reshape(2, 12)
    out = per_record_minmax(ints)
    assert out.dtype == np.float64 and out[0, 0] == 0.0 and out[-1, -1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        per_record_minmax(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"\(leads, samples\)"):
        per_record_minmax(np.zeros(10))
    with pytest.raises(ValueError, match=r"\(leads, samples\)"):
        per_record_minmax(np.zeros((12, 0)))
    with pytest.raises(TypeError, match="real numbers"):
        per_record_minmax(np.array([["a", "b"]]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fft_resampling_is_scipy_resample(dtype):
    tracing = np.cumsum(np.random.default_rng(3).normal(scale=0.05, size=(12, 4096)), axis=1).astype(dtype)
    out = resample_signal_fft(tracing, 400, 500)
    assert out.shape == (12, 5120) and out.dtype == dtype  # int(4096 * (500 / 400)), then [:, :5000] downstream
    np.testing.assert_array_equal(out, scipy_signal.resample(tracing, 5120, axis=-1))
    np.testing.assert_array_equal(resample_signal(tracing, 400, 500, method="fft"), out)
    # the notebook resamples the (samples, leads) array along axis 0: the same numbers up to rounding
    notebook = scipy_signal.resample(tracing.T, 5120, axis=0).T
    np.testing.assert_allclose(out, notebook, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
    # the default stays the polyphase filter, which is a different resampler
    polyphase = resample_signal(tracing, 400, 500)
    assert polyphase.shape == (12, 5120) and not np.allclose(polyphase, out, atol=1e-4)


def test_fft_resampling_lengths_and_errors():
    x = np.random.default_rng(4).normal(size=(2, 1000))
    out = resample_signal_fft(x, 257, 500)
    assert out.shape == (2, int(1000 * (500 / 257)))
    np.testing.assert_array_equal(out, scipy_signal.resample(x, int(1000 * (500 / 257)), axis=-1))
    same = resample_signal_fft(x, 500, 500)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    assert resample_signal_fft(np.arange(8, dtype=np.int32)[None], 400, 500).dtype == np.float64
    assert RESAMPLE_METHODS == ("polyphase", "fft")
    with pytest.raises(ValueError, match="unknown resampling method 'sinc'"):
        resample_signal(x, 400, 500, method="sinc")
    with pytest.raises(ValueError, match="leaves no sample"):
        resample_signal_fft(np.zeros((1, 2)), 500, 100)
    with pytest.raises(ValueError, match="positive number of Hz"):
        resample_signal_fft(x, 0, 500)
    with pytest.raises(ValueError, match="no samples"):
        resample_signal_fft(np.zeros((12, 0)), 400, 500)
