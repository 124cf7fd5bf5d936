"""Input checks of the ECG path: resampling at any rate, cropping before resampling, units plausibility,
values that overflow float32, unknown feature-extractor settings (offline, CPU, numbers asserted)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dbeta_hf import DBetaECGFeatureExtractor
from dbeta_hf.ecg_signal import resample_signal, resampling_margin, resampling_ratio


def sine(freq: float, rate: float, num_samples: int, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(num_samples) / rate)


# ------------------------------------------------------------------------------------------------ any rate ratio
SWEEP = [100.0, 128.0, 257.3, 333.3, 360.0, 499.0, 499.9, 499.99, 500.2, 500.5, 501.0, 750.0, 999.9, 1000.1]


@pytest.mark.parametrize("rate", SWEEP)
def test_resampling_keeps_a_sine_at_any_rate_near_or_far_from_500_hz(rate, caplog):
    freq, amplitude, seconds = 7.0, 1.3, 6
    num_in = int(seconds * rate)
    with caplog.at_level(logging.WARNING, logger="dbeta_hf.ecg_signal"):
        out = resample_signal(sine(freq, rate, num_in, amplitude)[None], rate, 500)[0]
    up, down = resampling_ratio(rate, 500)
    relative_error = abs(up / down - 500 / rate) / (500 / rate)
    # within 1e-6 with denominators up to 10000; 499.99 Hz (exact ratio 50000/49999) rounds to 1/1, off by 2e-5
    # (0.1 sample over 10 s), and says so
    assert relative_error <= (2.1e-5 if rate == 499.99 else 1e-6)
    assert ("off by" in caplog.text) == (relative_error > 1e-6)
    assert out.shape == (int(np.ceil(num_in * up / down)),)
    output_rate = rate * up / down  # output sample k lies at k / output_rate seconds
    expected = sine(freq, output_rate, out.shape[0], amplitude)
    interior = slice(100, -100)
    np.testing.assert_allclose(out[interior], expected[interior], atol=2e-4)  # frequency, phase and amplitude
    assert np.abs(out[interior]).max() == pytest.approx(amplitude, rel=2e-3)


@pytest.mark.parametrize("rate", [499.9, 500.2])
def test_feature_extractor_accepts_rates_next_to_its_own(rate):
    ecg = np.tile(sine(5.0, rate, int(11 * rate), 0.8), (12, 1))
    out = DBetaECGFeatureExtractor()(ecg, sampling_rate=rate)["ecg_values"][0]
    np.testing.assert_allclose(out[:, 100:-100], np.tile(sine(5.0, 500, 5000, 0.8)[100:-100], (12, 1)), atol=2e-4)


def test_a_ratio_within_tolerance_of_one_is_a_copy():
    x = np.arange(10.0)[None]
    assert resampling_ratio(500.0000001, 500) == (1, 1)
    np.testing.assert_array_equal(resample_signal(x, 500.0000001, 500), x)
