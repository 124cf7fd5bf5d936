"""The feature extractor's options for other codes' input preparation (issue #24):
`input_normalization="per-record-minmax"` (MERL / MELP) and `resample_method="fft"` (the official zero-shot notebook's
CODE-15 resampling), their saved configs, and the converter's `--input-normalization` flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as scipy_signal

from dbeta_hf import DBetaECGFeatureExtractor
from dbeta_hf.ecg_signal import CANONICAL_LEAD_NAMES
from dbeta_hf.input_convention import MIMIC_LEAD_NAMES

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"


def _records(seed: int = 0, leads: int = 12, samples: int = 4096) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.1, 0.4, size=(leads, samples)) + np.linspace(-0.5, 0.8, samples)


def _merl(record: np.ndarray, num_samples: int, order: list[str]) -> np.ndarray:
    """MERL's downstream input: crop / zero-pad to num_samples, leads in `order`, then (x - min) / (max - min + 1e-8)
    over the whole record."""
    fixed = np.zeros((12, num_samples))
    length = min(num_samples, record.shape[-1])
    fixed[:, :length] = record[:, :length]
    fixed = fixed[[CANONICAL_LEAD_NAMES.index(name) for name in order]]
    return (fixed - fixed.min()) / (fixed.max() - fixed.min() + 1e-8)


@pytest.mark.parametrize("lead_order, order", [("mimic", MIMIC_LEAD_NAMES), ("standard", list(CANONICAL_LEAD_NAMES))])
@pytest.mark.parametrize("samples", [4096, 6000])  # padded (the padding takes part) and cropped
def test_per_record_minmax_is_merls_formula_exactly(lead_order, order, samples):
    record = _records(samples=samples)
    extractor = DBetaECGFeatureExtractor(lead_order=lead_order, input_normalization="per-record-minmax")
    assert not extractor.do_normalize and extractor.input_normalization == "per-record-minmax"
    out = extractor(record, sampling_rate=500, return_tensors="np")["ecg_values"][0]
    expected = _merl(record, 5000, order).astype(np.float32)
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0, abs=1e-6)
    if samples < 5000:  # the zero padding becomes (0 - min) / (max - min), not 0
        assert np.all(out[:, samples:] == out[0, -1]) and out[0, -1] > 0.05
    # the scaling follows everything else the extractor does, e.g. units: the same ECG in microvolts gives the same
    micro = extractor(record * 1000, sampling_rate=500, units="uV", return_tensors="np")["ecg_values"][0]
    np.testing.assert_allclose(micro, out, atol=1e-6)


def test_per_record_minmax_leaves_absent_leads_at_zero_and_scales_the_present_ones_together():
    record = _records(leads=3, samples=5000)
    extractor = DBetaECGFeatureExtractor(input_normalization="per-record-minmax")
    batch = extractor(record, sampling_rate=500, lead_names=["II", "V1", "I"], return_tensors="np")
    out, mask = batch["ecg_values"][0], batch["lead_mask"][0]
    present = [CANONICAL_LEAD_NAMES.index(n) for n in ("I", "II", "V1")]
    assert mask.sum() == 3 and mask[present].all()
    assert not out[~mask].any()
    rows = record[[2, 0, 1]]  # I, II, V1 in canonical order
    np.testing.assert_array_equal(out[present], ((rows - rows.min()) / (rows.max() - rows.min() + 1e-8)).astype(np.float32))


def test_input_normalization_round_trips_and_conflicts_raise(tmp_path):
    DBetaECGFeatureExtractor(lead_order="mimic", input_normalization="per-record-minmax",
                             resample_method="fft").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["input_normalization"] == "per-record-minmax" and saved["do_normalize"] is False
    assert saved["lead_order"] == "mimic" and saved["resample_method"] == "fft"
    loaded = DBetaECGFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.input_normalization, loaded.lead_order, loaded.resample_method) == ("per-record-minmax", "mimic", "fft")
    record = _records()
    np.testing.assert_array_equal(
        loaded(record, sampling_rate=400)["ecg_values"],
        DBetaECGFeatureExtractor(lead_order="mimic", input_normalization="per-record-minmax", resample_method="fft")(
            record, sampling_rate=400)["ecg_values"],
    )
    # a load-time override of either form replaces the saved value of the other
    assert DBetaECGFeatureExtractor.from_pretrained(tmp_path, do_normalize=True).input_normalization == "per-lead-zscore"
    assert DBetaECGFeatureExtractor.from_pretrained(tmp_path, input_normalization="none").input_normalization == "none"
    with pytest.raises(ValueError, match="contradicts do_normalize"):
        DBetaECGFeatureExtractor(input_normalization="per-record-minmax", do_normalize=True)
    # an older config without input_normalization still means what its do_normalize says
    assert DBetaECGFeatureExtractor(do_normalize=True).input_normalization == "per-lead-zscore"
    assert DBetaECGFeatureExtractor().input_normalization == "none"


def test_fft_resampling_is_the_notebooks_scipy_resample():
    record = _records(samples=4096)  # CODE-15: 4096 samples at 400 Hz
    fft = DBetaECGFeatureExtractor(resample_method="fft")
    out = fft(record, sampling_rate=400, return_tensors="np")["ecg_values"][0]
    # example.ipynb: resample(tracing, int(4096 * (500 / 400)), axis=0), then the first 5000 samples
    expected = scipy_signal.resample(record, int(4096 * (500 / 400)), axis=-1)[:, :5000]
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    default = DBetaECGFeatureExtractor()
    assert default.resample_method == "polyphase"
    polyphase = default(record, sampling_rate=400, return_tensors="np")["ecg_values"][0]
    assert np.abs(polyphase - out).max() > 1e-3  # the two resamplers differ (most near the ends)
    # the centre crop of a long recording resamples the whole recording first, as the notebook would
    long = _records(samples=8000)
    centre = DBetaECGFeatureExtractor(resample_method="fft", crop="center")(long, sampling_rate=400)["ecg_values"][0]
    whole = scipy_signal.resample(long, 10000, axis=-1)
    np.testing.assert_array_equal(centre, whole[:, 2500:7500].astype(np.float32))
    # equal rates: no resampling with either method
    same = _records(samples=5000)
    np.testing.assert_array_equal(fft(same, sampling_rate=500)["ecg_values"][0], same.astype(np.float32))
    with pytest.raises(ValueError, match="resample_method must be one of"):
        DBetaECGFeatureExtractor(resample_method="sinc")


def test_converter_flag_accepts_per_record_minmax(tmp_path):
    from dbeta_hf.conversion.convert_original_checkpoint import main

    code = main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                 "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(tmp_path),
                 "--lead-order", "mimic", "--input-normalization", "per-record-minmax"])
    assert code == 0
    extractor = DBetaECGFeatureExtractor.from_pretrained(tmp_path)
    assert extractor.lead_order == "mimic" and extractor.input_normalization == "per-record-minmax"
    record = json.loads((tmp_path / "input_convention.json").read_text())
    assert record["input_normalization"] == "per-record-minmax"
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
              "--output-dir", str(tmp_path / "x"), "--input-normalization", "minmax"])
