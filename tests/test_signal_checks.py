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


# ------------------------------------------------------------------------------------------------ crop before resampling
@pytest.mark.parametrize("rate, crop", [(1000, "start"), (360, "center"), (500, "center")])
def test_long_recording_is_cropped_before_it_is_resampled(monkeypatch, rate, crop):
    import dbeta_hf.feature_extraction_dbeta as module

    seen = []

    def recording_resampler(signal, orig_sr, target_sr, method="polyphase"):
        seen.append(signal.shape[-1])
        return resample_signal(signal, orig_sr, target_sr, method=method)

    monkeypatch.setattr(module, "resample_signal", recording_resampler)
    minutes = 2
    t = np.arange(minutes * 60 * rate) / rate
    ecg = np.tile(np.sin(2 * np.pi * 1.1 * t) + 0.3 * np.sin(2 * np.pi * 17.0 * t), (12, 1))
    out = DBetaECGFeatureExtractor(crop=crop)(ecg, sampling_rate=rate)["ecg_values"][0]

    up, down = resampling_ratio(rate, 500)
    window = int(np.ceil(5000 * down / up))  # input samples of the 10 s kept
    margin = resampling_margin(up, down) if up != down else 0
    if rate == 500:  # the extractor's batch path: nothing to resample, only the 10 s window is copied
        assert seen == []
    else:
        assert len(seen) == 1 and window <= seen[0] <= window + 2 * margin + down  # not the 2 minutes
    # and the numbers are those of the whole recording resampled, then cropped
    whole = resample_signal(ecg[:1], rate, 500)[0]
    first = 0 if crop == "start" else (whole.shape[0] - 5000) // 2
    np.testing.assert_allclose(out[0, 30:-30], whole[first + 30 : first + 5000 - 30], atol=1e-6)


# ------------------------------------------------------------------------------------------------ float32 overflow
def test_values_beyond_float32_meet_the_non_finite_policy():
    ecg = np.tile(sine(3.0, 500, 5000, 0.5), (12, 1))
    ecg[4, 100] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"NaN or infinite values in lead\(s\) aVL \(row 4\): 1 of 5000"):
        DBetaECGFeatureExtractor()(ecg, sampling_rate=500)
    fixed = DBetaECGFeatureExtractor(non_finite="interpolate")(ecg, sampling_rate=500)["ecg_values"][0]
    assert np.isfinite(fixed).all()
    assert fixed[4, 100] == pytest.approx((ecg[4, 99] + ecg[4, 101]) / 2, abs=1e-6)
    zeroed = DBetaECGFeatureExtractor(non_finite="zero")(ecg, sampling_rate=500)["ecg_values"][0]
    assert zeroed[4, 100] == 0.0 and np.isfinite(zeroed).all()


# ------------------------------------------------------------------------------------------------ units plausibility
def test_integer_input_needs_units():
    counts = np.round(np.tile(sine(3.0, 500, 5000, 1.0), (12, 1)) * 200).astype(np.int16)  # ADC counts, 200 / mV
    with pytest.raises(ValueError, match="integer ECG values .int16. without `units`.*Divide them by the gain"):
        DBetaECGFeatureExtractor()(counts, sampling_rate=500)
    with pytest.raises(ValueError, match="implausible for units='mV'"):  # counts declared as mV
        DBetaECGFeatureExtractor()(counts * 5, sampling_rate=500, units="mV")  # 1000 counts / mV
    out = DBetaECGFeatureExtractor()(counts / 200.0, sampling_rate=500)["ecg_values"][0]
    assert np.abs(out).max() == pytest.approx(1.0, abs=3e-3)
    small = np.tile(np.array([0, 1, -1, 2], dtype=np.int64).repeat(1250), (12, 1))  # integers in mV, declared
    assert DBetaECGFeatureExtractor()(small, sampling_rate=500, units="mV")["ecg_values"][0, 0, 1300] == 1.0


@pytest.mark.parametrize("scale, suggestion", [(1e3, "units='uV'"), (1e4, "units='uV'"), (2e5, "ADC counts")])
def test_amplitude_implausible_for_millivolts_is_an_error(scale, suggestion):
    ecg = np.tile(sine(1.2, 500, 5000, 1.5), (12, 1)) * scale  # a 3 mV peak-to-peak sine in uV or ADC counts
    with pytest.raises(ValueError, match="implausible for units='mV'") as error:
        DBetaECGFeatureExtractor()(ecg, sampling_rate=500)
    assert suggestion in str(error.value) and "check_amplitude=False" in str(error.value)
    if scale == 1e3:
        out = DBetaECGFeatureExtractor()(ecg, sampling_rate=500, units="uV")["ecg_values"][0]
        assert np.abs(out).max() == pytest.approx(1.5, rel=1e-4)
    unchecked = DBetaECGFeatureExtractor(check_amplitude=False)(ecg, sampling_rate=500)["ecg_values"][0]
    assert np.abs(unchecked).max() == pytest.approx(1.5 * scale, rel=1e-4)


def test_real_amplitudes_with_spikes_and_a_saturated_lead_pass():
    rng = np.random.default_rng(0)
    ecg = np.tile(sine(1.2, 500, 5000, 2.0), (12, 1)) + rng.normal(scale=0.05, size=(12, 5000))
    ecg[3] = np.where(np.arange(5000) % 2, 32.7, -32.7)  # one lead at the rails of a 16-bit recorder
    ecg[5, ::250] = 40.0  # pacing spikes
    out = DBetaECGFeatureExtractor()(ecg, sampling_rate=500)
    assert out["lead_mask"].all() and np.abs(out["ecg_values"]).max() == pytest.approx(40.0)


def test_all_zero_recording_warns_and_is_masked(caplog):
    ecg = np.stack([np.zeros((12, 5000)), np.tile(sine(2.0, 500, 5000), (12, 1))])
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        out = DBetaECGFeatureExtractor()(ecg, sampling_rate=500)
    assert "ECG item 0 is all zeros (no signal at all); its lead_mask is all False" in caplog.text
    assert out["lead_mask"].tolist() == [[False] * 12, [True] * 12]


# ------------------------------------------------------------------------------------------------ prepared inputs
def test_check_values_runs_the_same_checks_on_model_inputs(caplog):
    """`check_values`: the extractor's value checks on a batch that is already a model input (a prepared dataset)."""
    good = np.tile(sine(2.0, 500, 5000, 0.8), (2, 12, 1)).astype(np.float32)
    DBetaECGFeatureExtractor.check_values(good)  # on the class: the default settings (mV, canonical order)
    bad = good.copy()
    bad[1, 6, 7] = np.inf
    with pytest.raises(ValueError, match=r"ECG item 1 contains NaN or infinite values in lead\(s\) V1 \(row 6\): 1 of"):
        DBetaECGFeatureExtractor.check_values(bad)
    with pytest.raises(ValueError, match="implausible for units='mV'.*look like microvolts"):
        DBetaECGFeatureExtractor.check_values(good * 1000)
    DBetaECGFeatureExtractor(units="uV").check_values(good * 1000)  # the instance's units apply
    with pytest.raises(ValueError, match="7 leads, this feature extractor's output has 12"):
        DBetaECGFeatureExtractor.check_values(good[:, :7])
    with pytest.raises(ValueError, match="non-empty"):
        DBetaECGFeatureExtractor.check_values(good[:0])
    good[0] = 0.0
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        DBetaECGFeatureExtractor.check_values(good)
    assert "ECG item 0 is all zeros (no signal at all)." in caplog.text


# ------------------------------------------------------------------------------------------------ settings
def test_unknown_feature_extractor_settings_are_an_error(tmp_path):
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['num_sample'\].*num_samples"):
        DBetaECGFeatureExtractor(num_sample=2500)
    saved = DBetaECGFeatureExtractor(num_samples=2500)
    saved.save_pretrained(tmp_path)  # transformers' own keys (feature_extractor_type, ...) still load
    assert DBetaECGFeatureExtractor.from_pretrained(tmp_path).num_samples == 2500
