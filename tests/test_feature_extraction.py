"""Tests of dbeta_hf.ecg_signal and DBetaECGFeatureExtractor (offline, CPU, numbers asserted)."""

from __future__ import annotations

import datetime
import json
import logging

import numpy as np
import pytest
import torch
import wfdb

from dbeta_hf import CANONICAL_LEAD_NAMES, DBetaECGFeatureExtractor
from dbeta_hf.ecg_signal import (
    canonical_lead_name,
    fix_length,
    flat_leads,
    handle_non_finite,
    non_finite_leads,
    read_wfdb,
    reorder_leads,
    resample_signal,
    to_millivolts,
)

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
PTBXL_ORDER = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def fe():
    return DBetaECGFeatureExtractor()


def labelled_leads(num_rows: int, num_samples: int) -> np.ndarray:
    """Row r is a slow ramp plus the constant r + 1, so every row can be recognised after reordering."""
    ramp = np.linspace(0.0, 0.5, num_samples)
    return np.stack([ramp + (row + 1) for row in range(num_rows)])


def sine(freq: float, rate: float, num_samples: int, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(num_samples) / rate)


# ------------------------------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("rate", [250, 360, 400, 1000])
def test_resampled_sine_keeps_frequency_and_amplitude(fe, rate):
    freq, amplitude = 7.0, 1.3
    ecg = np.tile(sine(freq, rate, 10 * rate, amplitude), (12, 1))
    out = fe(ecg, sampling_rate=rate)["ecg_values"][0]
    assert out.shape == (12, 5000)

    expected = sine(freq, 500, 5000, amplitude)
    interior = slice(100, -100)  # the polyphase filter has edge transients
    np.testing.assert_allclose(out[:, interior], np.tile(expected[interior], (12, 1)), atol=2e-5)

    spectrum = np.abs(np.fft.rfft(out[0])) / 2500  # 10 s hold exactly 70 periods: a sine of amplitude A -> A
    peak_hz = np.fft.rfftfreq(5000, d=1 / 500)[spectrum.argmax()]
    assert peak_hz == pytest.approx(freq, abs=0.1)
    assert spectrum.max() == pytest.approx(amplitude, rel=1e-3)


def test_downsampling_is_anti_aliased():
    rate = 1000
    wanted, too_fast = sine(5.0, rate, 10 * rate), sine(300.0, rate, 10 * rate)  # 300 Hz would alias to 200 Hz
    out = resample_signal((wanted + too_fast)[None], rate, 500)[0]
    assert out.shape == (5000,)
    spectrum = np.abs(np.fft.rfft(out)) / 2500  # unit sine -> 1.0 at its bin
    freqs = np.fft.rfftfreq(5000, d=1 / 500)
    assert spectrum[np.argmin(np.abs(freqs - 5.0))] == pytest.approx(1.0, abs=1e-2)
    alias_bin = np.argmin(np.abs(freqs - 200.0))
    assert spectrum[alias_bin] < 1e-3  # > 60 dB below the alias that plain decimation produces:
    naive = (wanted + too_fast)[::2]
    assert np.abs(np.fft.rfft(naive))[alias_bin] / 2500 == pytest.approx(1.0, abs=1e-2)


def test_code15_400hz_4096_samples_becomes_5120_then_5000(fe):
    rng = np.random.default_rng(0)
    ecg = rng.normal(size=(12, 4096))
    resampled = resample_signal(ecg, 400, 500)
    assert resampled.shape == (12, 5120)
    out = fe(ecg, sampling_rate=400, return_num_padded_samples=True)
    assert out["ecg_values"].shape == (1, 12, 5000)
    # the extractor resamples only the first 10 s (plus the filter's reach): identical beyond the filter's edge
    # transient; within it (first 25 output samples) the end-point line padding sees another last sample
    np.testing.assert_allclose(out["ecg_values"][0, :, 25:], resampled[:, 25:5000].astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(out["ecg_values"][0, :, :25], resampled[:, :25].astype(np.float32), atol=1e-4)
    assert out["num_padded_samples"].tolist() == [0]


def test_resample_signal_contract():
    offset = resample_signal(np.full((2, 3600), 7.5), 360, 500)  # a baseline offset survives exactly
    np.testing.assert_allclose(offset, 7.5, atol=1e-12)
    x = np.arange(12.0).reshape(2, 6)
    same = resample_signal(x, 500, 500)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    assert resample_signal(np.ones((3, 2500)), 250.0, 500.0).shape == (3, 5000)
    assert resample_signal(np.ones((1, 3600)), 360, 500).shape == (1, 5000)  # ratio 25/18
    with pytest.raises(ValueError, match="positive"):
        resample_signal(x, 0, 500)


# ------------------------------------------------------------------------------------------------ leads
def test_canonical_lead_name_spellings():
    assert canonical_lead_name("AVR") == "aVR"
    assert canonical_lead_name(" avl ") == "aVL"
    assert canonical_lead_name("v6") == "V6"
    assert [canonical_lead_name(n) for n in ("DI", "DII", "DIII")] == ["I", "II", "III"]
    with pytest.raises(ValueError, match=r"Unknown ECG lead name 'X'.*Valid names.*aVR"):
        canonical_lead_name("X")
    with pytest.raises(ValueError, match=r"'MLII' is a Holter 'modified' lead.*rename it"):
        canonical_lead_name("MLII")


def test_mimic_lead_order_is_mapped_to_canonical(fe):
    ecg = labelled_leads(12, 5000)
    out = fe(ecg, sampling_rate=500, lead_names=MIMIC_ORDER)
    values, mask = out["ecg_values"][0], out["lead_mask"][0]
    assert mask.all()
    for row, name in enumerate(MIMIC_ORDER):
        np.testing.assert_allclose(values[CANONICAL_LEAD_NAMES.index(name)], ecg[row], rtol=1e-6)
    # aVF is row 4 and aVL row 5 in MIMIC files; canonically aVL is row 4 and aVF row 5
    assert values[4, 0] == pytest.approx(6.0) and values[5, 0] == pytest.approx(5.0)


def test_ptbxl_upper_case_names(fe):
    ecg = labelled_leads(12, 5000)
    out = fe(ecg, sampling_rate=500, lead_names=PTBXL_ORDER)
    np.testing.assert_allclose(out["ecg_values"][0], ecg.astype(np.float32))
    assert out["lead_mask"][0].all()


def test_single_lead(fe):
    lead_ii = sine(3.0, 500, 5000)[None]
    out = fe(lead_ii, sampling_rate=500, lead_names=["II"])
    values, mask = out["ecg_values"][0], out["lead_mask"][0]
    assert mask.tolist() == [name == "II" for name in CANONICAL_LEAD_NAMES]
    np.testing.assert_allclose(values[1], lead_ii[0], atol=1e-6)
    assert not values[np.arange(12) != 1].any()


def test_six_limb_lead_subset_in_any_order(fe):
    names = ["aVF", "I", "aVL", "III", "aVR", "II"]
    ecg = labelled_leads(6, 5000)
    out = fe(ecg, sampling_rate=500, lead_names=names)
    values, mask = out["ecg_values"][0], out["lead_mask"][0]
    assert mask.tolist() == [True] * 6 + [False] * 6
    for row, name in enumerate(names):
        np.testing.assert_allclose(values[CANONICAL_LEAD_NAMES.index(name)], ecg[row], rtol=1e-6)
    assert not values[6:].any()


def test_code15_aliases(fe):
    names = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    ecg = labelled_leads(12, 5000)
    out = fe(ecg, sampling_rate=500, lead_names=names)
    np.testing.assert_allclose(out["ecg_values"][0], ecg.astype(np.float32))


def test_reorder_leads_contract():
    ecg = labelled_leads(2, 10).astype(np.float32)
    ordered, mask = reorder_leads(ecg, ["V1", "I"])
    assert ordered.shape == (12, 10) and ordered.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(ordered[0], ecg[1])
    np.testing.assert_array_equal(ordered[6], ecg[0])
    assert mask.sum() == 2
    ordered, mask = reorder_leads(labelled_leads(12, 10), None)
    assert mask.all()
    np.testing.assert_array_equal(ordered, labelled_leads(12, 10))


def test_output_lead_order_is_a_setting():
    fe_mimic = DBetaECGFeatureExtractor(lead_names=["i", "ii", "iii", "avr", "avf", "avl"] + MIMIC_ORDER[6:])
    assert fe_mimic.lead_names == MIMIC_ORDER
    ecg = labelled_leads(12, 5000)
    out = fe_mimic(ecg, sampling_rate=500)  # canonical input
    np.testing.assert_allclose(out["ecg_values"][0, 4], ecg[5].astype(np.float32))  # aVF
    np.testing.assert_allclose(out["ecg_values"][0, 5], ecg[4].astype(np.float32))  # aVL

    fe_one = DBetaECGFeatureExtractor(lead_names=["II"])
    out = fe_one(ecg, sampling_rate=500)
    assert out["ecg_values"].shape == (1, 1, 5000) and fe_one.feature_size == 1
    with pytest.raises(ValueError, match="must not repeat"):
        DBetaECGFeatureExtractor(lead_names=["I", "i"])
    with pytest.raises(ValueError, match=r"feature_size \(12\) must equal"):
        DBetaECGFeatureExtractor(feature_size=12, lead_names=["II"])


# ------------------------------------------------------------------------------------------------ units
@pytest.mark.parametrize("units, scale", [("V", 1e-3), ("mV", 1.0), ("uV", 1e3), ("µV", 1e3), ("μV", 1e3), ("MV", 1.0)])
def test_units_are_converted_to_millivolts(fe, units, scale):
    ecg_mv = labelled_leads(12, 5000)
    out = fe(ecg_mv * scale, sampling_rate=500, units=units)
    np.testing.assert_allclose(out["ecg_values"][0], ecg_mv, rtol=1e-6)


def test_per_lead_units():
    ecg = np.ones((3, 4))
    out = to_millivolts(ecg, ["V", "mV", "uV"])
    np.testing.assert_allclose(out[:, 0], [1000.0, 1.0, 0.001])
    assert to_millivolts(np.ones((1, 2), dtype=np.int16), "mV").dtype == np.float64
    with pytest.raises(ValueError, match="got 2 units for an ECG with 3 rows"):
        to_millivolts(ecg, ["mV", "mV"])


def test_output_units_setting():
    fe_uv = DBetaECGFeatureExtractor(units="uV")
    out = fe_uv(np.full((12, 5000), 2.0), sampling_rate=500, units="mV")
    np.testing.assert_allclose(out["ecg_values"], 2000.0)


# ------------------------------------------------------------------------------------------------ length
def test_crop_start_and_center():
    ramp = np.tile(np.arange(6000, dtype=np.float64) / 1024, (12, 1))  # 0 to 5.9 mV, exact in float32
    start = DBetaECGFeatureExtractor()(ramp, sampling_rate=500)["ecg_values"][0]
    np.testing.assert_array_equal(start[0], np.arange(5000) / 1024)
    center = DBetaECGFeatureExtractor(crop="center")(ramp, sampling_rate=500)["ecg_values"][0]
    np.testing.assert_array_equal(center[0], np.arange(500, 5500) / 1024)
    # the per-call override wins over the setting
    override = DBetaECGFeatureExtractor()(ramp, sampling_rate=500, crop="centre")["ecg_values"][0]
    np.testing.assert_array_equal(override[0], np.arange(500, 5500) / 1024)


def test_padding_is_reported(fe, caplog):
    ecg = np.ones((12, 4000))
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        out = fe(ecg, sampling_rate=500, return_num_padded_samples=True)
    values = out["ecg_values"][0]
    assert values.shape == (12, 5000)
    assert (values[:, :4000] == 1).all() and (values[:, 4000:] == 0).all()
    assert out["num_padded_samples"].tolist() == [1000]
    assert "1 of 1 ECG(s) were shorter than 5000 samples" in caplog.text
    assert "item 0: 4000 samples (8 s), 1000 padded" in caplog.text  # the record length, then the padding

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        out = fe(np.ones((12, 5000)), sampling_rate=500)
    assert "num_padded_samples" not in out
    assert "padded" not in caplog.text


def test_fix_length_contract():
    x = np.arange(10.0)[None]
    cropped, padded = fix_length(x, 4, crop="center")
    assert cropped.tolist() == [[3.0, 4.0, 5.0, 6.0]] and padded == 0
    longer, padded = fix_length(x, 13, pad_value=-1.0)
    assert padded == 3 and longer[0, -3:].tolist() == [-1.0, -1.0, -1.0]
    with pytest.raises(ValueError, match="`crop` must be one of"):
        fix_length(x, 4, crop="end")


# ------------------------------------------------------------------------------------------------ NaN
def nan_ecg() -> np.ndarray:
    ecg = labelled_leads(12, 5000)
    ecg[7, 100:103] = np.nan  # V2
    ecg[7, 200] = np.inf
    return ecg


def test_nan_default_policy_names_item_and_lead(fe):
    clean = labelled_leads(12, 5000)
    with pytest.raises(ValueError) as info:
        fe([clean, nan_ecg()], sampling_rate=500)
    message = str(info.value)
    assert message.startswith("ECG item 1 contains NaN or infinite values in lead(s) V2 (row 7): 4 of 5000 samples")
    assert "non_finite='zero'" in message and "non_finite='interpolate'" in message


def test_nan_zero_and_interpolate_policies():
    ecg = nan_ecg()
    zeroed = DBetaECGFeatureExtractor(non_finite="zero")(ecg, sampling_rate=500)["ecg_values"][0]
    assert np.isfinite(zeroed).all()
    assert (zeroed[7, 100:103] == 0).all() and zeroed[7, 200] == 0

    interpolated = DBetaECGFeatureExtractor()(ecg, sampling_rate=500, non_finite="interpolate")["ecg_values"][0]
    reference = labelled_leads(12, 5000)[7]
    np.testing.assert_allclose(interpolated[7, 99:104], reference[99:104], rtol=1e-6)  # a ramp interpolates exactly
    np.testing.assert_allclose(interpolated[7, 200], reference[200], rtol=1e-6)
    assert np.isnan(ecg[7, 100]) and np.isinf(ecg[7, 200])  # the caller's array is left untouched


def test_all_nan_lead_is_treated_as_absent(caplog):
    ecg = labelled_leads(12, 5000)
    ecg[3] = np.nan
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        out = DBetaECGFeatureExtractor(non_finite="interpolate")(ecg, sampling_rate=500)
    assert out["lead_mask"][0].tolist() == [i != 3 for i in range(12)]
    assert not out["ecg_values"][0, 3].any()
    assert "aVR contain no finite sample" in caplog.text


def test_non_finite_helpers_do_not_modify_input():
    ecg = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
    assert non_finite_leads(ecg) == [0, 2]
    fixed = handle_non_finite(ecg, "interpolate")
    np.testing.assert_array_equal(fixed, [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.isnan(ecg[0, 1])
    with pytest.raises(ValueError, match=r"ECG item 4 contains NaN.*row 0: 1 of 3 samples; row 2: 3 of 3"):
        handle_non_finite(ecg, "error", item=4)
    with pytest.raises(ValueError, match="policy must be one of"):
        handle_non_finite(ecg, "drop")


def test_flat_leads():
    ecg = np.stack([np.zeros(5), np.full(5, 3.0), np.arange(5.0), [np.nan] * 5, [1.0, np.nan, 1.0, 1.0, 1.0]])
    assert flat_leads(ecg) == [0, 1, 3, 4]
    assert flat_leads(np.array([[0.0, 1e-3]]), tol=1e-2) == [0]


# ------------------------------------------------------------------------------------------------ batches
def test_batch_of_different_lengths_rates_and_leads(fe):
    ecgs = [labelled_leads(12, 5000), labelled_leads(12, 3000), sine(4.0, 250, 2500)[None]]
    out = fe(
        ecgs, sampling_rate=[500, 500, 250], lead_names=[None, MIMIC_ORDER, ["V5"]], return_num_padded_samples=True
    )
    assert out["ecg_values"].shape == (3, 12, 5000) and out["ecg_values"].dtype == np.float32
    assert out["num_padded_samples"].tolist() == [0, 2000, 0]
    assert out["lead_mask"][:2].all() and out["lead_mask"][2].tolist() == [n == "V5" for n in CANONICAL_LEAD_NAMES]
    np.testing.assert_allclose(out["ecg_values"][1, 4, :3000], ecgs[1][5], rtol=1e-6)  # MIMIC aVL -> canonical 4
    np.testing.assert_allclose(out["ecg_values"][2, 10, 100:-100], sine(4.0, 500, 5000)[100:-100], atol=1e-4)


def test_numpy_batch_and_torch_inputs(fe):
    batch = np.stack([labelled_leads(12, 5000), 2 * labelled_leads(12, 5000)])
    out_np = fe(batch, sampling_rate=500)
    out_pt = fe(torch.from_numpy(batch).to(torch.float16), sampling_rate=500, return_tensors="pt")
    assert isinstance(out_pt["ecg_values"], torch.Tensor) and out_pt["ecg_values"].dtype == torch.float32
    assert out_pt["lead_mask"].dtype == torch.bool and out_pt["lead_mask"].shape == (2, 12)
    np.testing.assert_allclose(out_pt["ecg_values"].numpy(), out_np["ecg_values"], rtol=1e-3)
    out_list = fe([torch.from_numpy(b) for b in batch], sampling_rate=500)
    np.testing.assert_array_equal(out_list["ecg_values"], out_np["ecg_values"])


def test_pad_collates_extracted_examples(fe):
    examples = [
        {k: v[0] for k, v in fe(labelled_leads(12, 5000), sampling_rate=500).items()},
        dict(fe(sine(3.0, 500, 5000)[None], sampling_rate=500, lead_names=["I"])),  # still batched (1, ...)
    ]
    batch = fe.pad(examples, return_tensors="pt")
    assert batch["ecg_values"].shape == (2, 12, 5000) and batch["lead_mask"].shape == (2, 12)
    assert batch["lead_mask"][1].sum().item() == 1
    with pytest.raises(ValueError, match="cannot stack 'ecg_values'"):
        fe.pad([{"ecg_values": np.zeros((12, 5000))}, {"ecg_values": np.zeros((12, 4000))}])


# ------------------------------------------------------------------------------------------------ options
def test_bandpass_filter_and_normalization_options():
    rate = 500
    wander, content = sine(0.05, rate, 5000, 2.0), sine(10.0, rate, 5000, 1.0)
    ecg = np.tile(wander + content + 0.7, (12, 1))
    filtered = DBetaECGFeatureExtractor(do_filter=True)(ecg, sampling_rate=rate)["ecg_values"][0]
    interior = slice(500, -500)
    np.testing.assert_allclose(filtered[0, interior], content[interior], atol=0.03)  # wander and offset removed
    assert filtered[0, interior].std() == pytest.approx(content[interior].std(), rel=1e-2)

    out = DBetaECGFeatureExtractor(do_normalize=True)(3 * labelled_leads(6, 4000), sampling_rate=rate,
                                                      lead_names=CANONICAL_LEAD_NAMES[:6])
    values = out["ecg_values"][0]
    np.testing.assert_allclose(values[:6, :4000].mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(values[:6, :4000].std(axis=-1), 1.0, atol=1e-4)
    assert not values[:, 4000:].any() and not values[6:].any()  # padding and absent leads stay zero


def test_settings_round_trip(tmp_path):
    fe = DBetaECGFeatureExtractor(crop="center", non_finite="interpolate", do_filter=True, filter_band=(1.0, 40.0))
    fe.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["sampling_rate"] == 500 and saved["num_samples"] == 5000 and saved["units"] == "mV"
    assert saved["lead_names"] == CANONICAL_LEAD_NAMES and saved["feature_extractor_type"] == "DBetaECGFeatureExtractor"
    assert saved["crop"] == "center" and saved["non_finite"] == "interpolate" and saved["filter_band"] == [1.0, 40.0]
    loaded = DBetaECGFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == fe.to_dict()
    defaults = DBetaECGFeatureExtractor()
    settings = (defaults.do_filter, defaults.do_normalize, defaults.crop, defaults.non_finite)
    assert settings == (False, False, "start", "error")


# ------------------------------------------------------------------------------------------------ WFDB
def write_record(directory, name, signal_mv, sig_name, gain, fs=500, **kwargs):
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(sig_name),
        sig_name=list(sig_name),
        p_signal=signal_mv.T.copy(),
        fmt=["16"] * len(sig_name),
        adc_gain=[float(gain)] * len(sig_name),
        baseline=[0] * len(sig_name),
        write_dir=str(directory),
        **kwargs,
    )
    return directory / name


def test_wfdb_round_trip_mimic_conventions(fe, tmp_path):
    rng = np.random.default_rng(1)
    signal = labelled_leads(12, 5000) + 0.1 * rng.normal(size=(12, 5000))
    record = write_record(
        tmp_path, "40689238", signal, MIMIC_ORDER, gain=200,
        base_time=datetime.time(8, 44, 0), base_date=datetime.date(2180, 7, 23),
    )
    header = (tmp_path / "40689238.hea").read_text().splitlines()
    assert header[0] == "40689238 12 500 5000 08:44:00 23/07/2180"
    assert header[5].startswith("40689238.dat 16 200.0(0)/mV") and header[5].endswith(" aVF")

    raw, fs, names, units = read_wfdb(record)
    assert raw.shape == (12, 5000) and raw.dtype == np.float64 and fs == 500.0
    assert names == MIMIC_ORDER and units == ["mV"] * 12
    np.testing.assert_allclose(raw, signal, atol=0.5 / 200 + 1e-9)

    out = fe.from_wfdb(str(record) + ".hea", return_tensors="pt")
    assert out["ecg_values"].shape == (1, 12, 5000) and out["lead_mask"].all()
    values = out["ecg_values"][0].numpy()
    for row, name in enumerate(MIMIC_ORDER):
        np.testing.assert_allclose(values[CANONICAL_LEAD_NAMES.index(name)], signal[row], atol=0.5 / 200 + 1e-5)


def test_wfdb_ptbxl_conventions_units_and_batch(fe, tmp_path):
    signal = labelled_leads(12, 1000)
    ptb = write_record(tmp_path, "00001_lr", signal, PTBXL_ORDER, gain=1000, fs=100)
    wfdb.wrsamp("uv_record", fs=500, units=["uV"] * 2, sig_name=["II", "V1"], p_signal=1000 * signal[:2, :].T.copy(),
                fmt=["16"] * 2, adc_gain=[1.0] * 2, baseline=[0] * 2, write_dir=str(tmp_path))
    out = fe.from_wfdb([ptb, tmp_path / "uv_record"], return_num_padded_samples=True)
    assert out["ecg_values"].shape == (2, 12, 5000)
    assert out["lead_mask"][0].all() and out["lead_mask"][1].sum() == 2
    assert out["num_padded_samples"].tolist() == [0, 4000]
    np.testing.assert_allclose(out["ecg_values"][0, :, 200:-200:5], signal[:, 40:-40], atol=2e-3)  # 100 -> 500 Hz
    np.testing.assert_allclose(out["ecg_values"][1, 6, :1000], signal[1], atol=1e-3)  # uV -> mV, V1 -> row 6


def test_wfdb_errors(fe, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"WFDB header not found: .*nothing\.hea"):
        read_wfdb(tmp_path / "nothing")
    record = write_record(tmp_path, "rec", labelled_leads(12, 500), CANONICAL_LEAD_NAMES, gain=200)
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"signal file\(s\) that do not exist: .*rec\.dat"):
        fe.from_wfdb(record)
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(ValueError, match=r"Could not parse the WFDB header .*bad\.hea"):
        read_wfdb(tmp_path / "bad")
    nu = write_record(tmp_path, "nu", labelled_leads(12, 500), CANONICAL_LEAD_NAMES, gain=200)
    text = (tmp_path / "nu.hea").read_text().replace("/mV", "/NU")
    (tmp_path / "nu.hea").write_text(text)
    with pytest.raises(ValueError, match=r"Unknown ECG units 'NU'.*Pass `units=` to override the header"):
        fe.from_wfdb(nu)
    out = fe.from_wfdb(nu, units="mV")
    assert out["lead_mask"].all()
    holter = write_record(tmp_path, "holter", labelled_leads(2, 500), ["MLII", "V5"], gain=200)
    with pytest.raises(ValueError, match=r"WFDB record .*holter.*'MLII' is a Holter 'modified' lead.*Pass `lead_names=`"):
        fe.from_wfdb(holter)
    out = fe.from_wfdb(holter, lead_names=["II", "V5"], return_num_padded_samples=True)
    assert out["lead_mask"][0].sum() == 2 and out["num_padded_samples"].tolist() == [4500]


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_sampling_rate(fe):
    with pytest.raises(ValueError, match=r"`sampling_rate` is required.*sampling_rate=500"):
        fe(labelled_leads(12, 5000))


def test_thirteen_rows_without_names(fe):
    with pytest.raises(ValueError, match=r"Got an ECG with 13 rows and no `lead_names`.*exactly 12 rows"):
        fe(labelled_leads(13, 5000), sampling_rate=500)


def test_transposed_input_gets_a_hint(fe):
    with pytest.raises(ValueError, match=r"transpose it"):
        fe(labelled_leads(12, 5000).T, sampling_rate=500)


def test_unknown_lead_name(fe):
    with pytest.raises(ValueError, match=r"Unknown ECG lead name 'X'"):
        fe(labelled_leads(3, 5000), sampling_rate=500, lead_names=["I", "II", "X"])


def test_duplicated_lead_name(fe):
    with pytest.raises(ValueError, match=r"Duplicated ECG lead 'II': rows 1 \('II'\) and 2 \('DII'\)"):
        fe(labelled_leads(3, 5000), sampling_rate=500, lead_names=["I", "II", "DII"])


def test_wrong_number_of_names(fe):
    with pytest.raises(ValueError, match=r"`lead_names` has 2 names but the ECG has 3 rows"):
        fe(labelled_leads(3, 5000), sampling_rate=500, lead_names=["I", "II"])
    with pytest.raises(TypeError, match=r"not a string"):
        fe(labelled_leads(1, 5000), sampling_rate=500, lead_names="II")


@pytest.mark.parametrize("shape", [(12, 0), (0, 5000)])
def test_empty_array(fe, shape):
    with pytest.raises(ValueError, match=r"empty ECG"):
        fe(np.zeros(shape), sampling_rate=500)


def test_empty_batch_and_bad_shapes(fe):
    with pytest.raises(ValueError, match="empty list"):
        fe([], sampling_rate=500)
    with pytest.raises(ValueError, match=r"shape \(1, samples\)"):
        fe(np.zeros(5000), sampling_rate=500)
    with pytest.raises(TypeError, match="must be a numpy array, a torch tensor or a list"):
        fe("ecg.dat", sampling_rate=500)


def test_nan_with_default_policy(fe):
    with pytest.raises(ValueError, match=r"contains NaN or infinite values in lead\(s\) V2"):
        fe(nan_ecg(), sampling_rate=500)


def test_wrong_units_string(fe):
    with pytest.raises(ValueError, match=r"Unknown ECG units 'mv/s'.*'V', 'mV', 'uV'"):
        fe(labelled_leads(12, 5000), sampling_rate=500, units="mv/s")


def test_bad_sampling_rates_and_settings(fe):
    with pytest.raises(ValueError, match=r"`sampling_rate` must be a positive number of Hz for ECG item 1"):
        fe([labelled_leads(12, 5000)] * 2, sampling_rate=[500, -1])
    with pytest.raises(ValueError, match="got 3 sampling rates for 2 ECGs"):
        fe([labelled_leads(12, 5000)] * 2, sampling_rate=[500, 500, 500])
    with pytest.raises(ValueError, match="non_finite must be one of"):
        DBetaECGFeatureExtractor(non_finite="drop")
    with pytest.raises(ValueError, match="filter_band"):
        DBetaECGFeatureExtractor(filter_band=(0.5, 300.0))
    with pytest.raises(ValueError, match="does not return an attention mask"):
        DBetaECGFeatureExtractor(return_attention_mask=True)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['num_samples'\]"):
        fe(labelled_leads(12, 5000), sampling_rate=500, num_samples=2500)


def test_from_wfdb_on_the_class_uses_default_settings(tmp_path):
    import wfdb

    from dbeta_hf import DBetaECGFeatureExtractor

    rng = np.random.default_rng(0)
    signal = rng.normal(0, 0.3, (5000, 12))
    names = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]  # MIMIC order
    wfdb.wrsamp("40689238", fs=500, units=["mV"] * 12, sig_name=names, p_signal=signal, fmt=["16"] * 12,
                adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    out = DBetaECGFeatureExtractor.from_wfdb(str(tmp_path / "40689238"))
    same = DBetaECGFeatureExtractor().from_wfdb(str(tmp_path / "40689238"))
    assert out["ecg_values"].shape == (1, 12, 5000)
    assert np.array_equal(out["ecg_values"], same["ecg_values"])
    # aVL (canonical index 4) comes from the file's sixth signal
    assert np.allclose(out["ecg_values"][0, 4], signal[:, 5], atol=0.003)
