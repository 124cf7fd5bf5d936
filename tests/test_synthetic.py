"""The synthetic ECG-report corpus: signal physics, class signatures, measured reports, learnability, format."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import signal as scipy_signal
from sklearn.metrics import roc_auc_score

from dbeta_hf.data import synthetic
from dbeta_hf.data.synthetic import (
    SYNTHETIC_CLASSES,
    derive_limb_leads,
    generate_ecg,
    make_synthetic_corpus,
    measure_ecg,
)

FS = 500
LEAD = {name: i for i, name in enumerate(["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"])}


# ------------------------------------------------------------------ independent, test-side measurements
def _r_peaks(ecg: np.ndarray) -> np.ndarray:
    """A plain QRS detector written for the tests: 5-30 Hz energy of all leads, peaks >= 0.3 s apart."""
    sos = scipy_signal.butter(3, [5, 30], btype="bandpass", fs=FS, output="sos")
    energy = (scipy_signal.sosfiltfilt(sos, ecg.astype(np.float64), axis=1) ** 2).sum(0)
    energy = np.convolve(energy, np.ones(25) / 25, mode="same")
    peaks, _ = scipy_signal.find_peaks(energy, height=0.25 * np.percentile(energy, 99.5), distance=int(0.28 * FS))
    return peaks[(peaks > 0.1 * FS) & (peaks < ecg.shape[1] - 0.1 * FS)]


def _rate_and_cv(ecg: np.ndarray) -> tuple[float, float]:
    rr = np.diff(_r_peaks(ecg)) / FS
    return 60.0 / rr.mean(), rr.std() / rr.mean()


def _p_to_r_ms(ecg: np.ndarray) -> float:
    """Lead II: time from the P-wave peak to the R peak in the median beat (about the PR interval)."""
    x = scipy_signal.sosfiltfilt(scipy_signal.butter(2, [0.5, 40], btype="bandpass", fs=FS, output="sos"), ecg[1])
    peaks = _r_peaks(ecg)
    peaks = peaks[(peaks > 0.5 * FS) & (peaks < len(x) - 0.1 * FS)]
    beat = np.median(np.stack([x[p - int(0.5 * FS) : p] for p in peaks]), axis=0)  # the 500 ms before each R
    r = len(beat)  # the R peak sits just after the window
    window = beat[: r - int(0.07 * FS)] - beat[r - int(0.07 * FS)]  # P waves end before the QRS
    humps, _ = scipy_signal.find_peaks(window, prominence=0.03, width=10)
    return (r - int(humps[-1])) / FS * 1000.0  # the hump closest to the QRS


# ------------------------------------------------------------------ shapes, units, determinism
def test_shape_dtype_units_and_amplitudes():
    for seed in range(6):
        ecg = generate_ecg("SR", seed=seed)
        assert ecg.shape == (12, 5000) and ecg.dtype == np.float32 and np.isfinite(ecg).all()
        # millivolts: R waves of about 0.5-1.5 mV in the limb leads, chest leads a little larger
        limb_r = np.abs(ecg[:6]).max()
        assert 0.5 <= limb_r <= 2.0, limb_r
        assert np.abs(ecg[6:]).max() <= 4.0
    assert generate_ecg("SR", seed=0, sampling_rate=250, duration=4.0).shape == (12, 1000)


def test_deterministic_given_a_seed():
    a = generate_ecg(["AFIB", "BBB"], seed=11)
    assert np.array_equal(a, generate_ecg(["AFIB", "BBB"], seed=11))
    assert not np.array_equal(a, generate_ecg(["AFIB", "BBB"], seed=12))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(generate_ecg("SR", seed=rng_a), generate_ecg("SR", seed=rng_b))
    small, large = make_synthetic_corpus(4, seed=3), make_synthetic_corpus(8, seed=3)
    # record i depends only on (seed, i): a bigger corpus starts with the smaller one
    assert small["report"] == large["report"][:4]
    assert np.array_equal(np.asarray(small["ecg"]), np.asarray(large["ecg"])[:4])
    other = make_synthetic_corpus(4, seed=4)
    assert not np.array_equal(np.asarray(small["ecg"]), np.asarray(other["ecg"]))


def test_einthoven_and_goldberger_hold_exactly():
    for conds in ("SR", ["AFIB", "BBB"], ["SBRAD", "1AVB"]):
        ecg = generate_ecg(conds, seed=2)
        i, ii = ecg[0], ecg[1]
        assert np.array_equal(ecg[2], ii - i)  # III
        assert np.array_equal(ecg[3], -(i + ii) / 2)  # aVR
        assert np.array_equal(ecg[4], i - ii / 2)  # aVL
        assert np.array_equal(ecg[5], ii - i / 2)  # aVF
        assert np.allclose(ecg[3] + ecg[4] + ecg[5], 0.0, atol=1e-6)  # the augmented leads sum to zero
    # the helper works on batches and leaves the independent leads alone
    batch = np.random.default_rng(0).normal(size=(3, 12, 50)).astype(np.float32)
    out = derive_limb_leads(batch)
    assert np.array_equal(out[:, [0, 1, 6, 7, 8, 9, 10, 11]], batch[:, [0, 1, 6, 7, 8, 9, 10, 11]])
    assert np.array_equal(out[:, 2], batch[:, 1] - batch[:, 0])
    with pytest.raises(ValueError):
        derive_limb_leads(np.zeros((8, 50)))


# ------------------------------------------------------------------ class signatures
@pytest.mark.parametrize("rate", [42.0, 58.0, 75.0, 96.0, 118.0, 140.0])
def test_measured_heart_rate_follows_the_request(rate):
    conds = "SBRAD" if rate < 60 else ("STACH" if rate > 100 else "SR")
    for seed in range(3):
        ecg, info = generate_ecg(conds, heart_rate=rate, seed=seed, return_info=True)
        assert abs(info["measurements"]["heart_rate"] - rate) < 2.0
        assert abs(_rate_and_cv(ecg)[0] - rate) < 3.0  # also by the independent detector


def test_atrial_fibrillation_signature():
    for seed in range(5):
        af, info = generate_ecg("AFIB", seed=seed, return_info=True)
        sr = generate_ecg("SR", seed=seed)
        meas, meas_sr = info["measurements"], measure_ecg(sr)
        # irregularly irregular RR, no P waves; sinus rhythm is regular with clear P waves
        assert _rate_and_cv(af)[1] > 0.1 and _rate_and_cv(sr)[1] < 0.05
        assert not meas["p_waves_present"] and np.isnan(meas["pr_interval_ms"])
        assert abs(meas["p_wave_amplitude"]) < 0.06
        assert meas_sr["p_waves_present"] and meas_sr["p_wave_amplitude"] > 0.06
        assert not info["parameters"].p_waves
    # the fibrillatory baseline: remove it (same seed, amplitude 0) and look at what is gone
    kw = dict(seed=7, noise=0.0, baseline_wander=0.0)
    with_f = generate_ecg("AFIB", **kw)
    without_f = generate_ecg("AFIB", fibrillation_amplitude=0.0, **kw)
    f = (with_f - without_f)[LEAD["V1"]].astype(np.float64)
    assert 0.03 < np.abs(f).max() < 0.3  # mV, strongest in V1
    spectrum = np.abs(np.fft.rfft(f)) ** 2
    freqs = np.fft.rfftfreq(f.size, 1 / FS)
    assert spectrum[(freqs >= 4) & (freqs <= 9)].sum() > 0.9 * spectrum.sum()
    # present all along the record, not only around the beats
    assert min(np.abs(f[k : k + FS]).max() for k in range(0, f.size, FS)) > 0.01


def test_first_degree_av_block_prolongs_pr_on_lead_ii():
    for seed in range(5):
        avb, info = generate_ecg(["SR", "1AVB"], seed=seed, return_info=True)
        normal = generate_ecg("SR", seed=seed)
        assert info["parameters"].pr_interval > 200
        assert _p_to_r_ms(avb) > 200 > _p_to_r_ms(normal)
        assert info["measurements"]["pr_interval_ms"] > 200 > measure_ecg(normal)["pr_interval_ms"]
        assert abs(info["measurements"]["pr_interval_ms"] - info["parameters"].pr_interval) < 25
    with pytest.raises(ValueError, match="AFIB"):
        generate_ecg(["AFIB", "1AVB"], seed=0)


def test_bundle_branch_block_widens_qrs_with_v1_morphology():
    for seed in range(4):
        for kind in ("RBBB", "LBBB"):
            ecg, info = generate_ecg(["SR", kind], seed=seed, return_info=True)
            meas = info["measurements"]
            assert info["parameters"].qrs_width > 120
            assert meas["qrs_duration_ms"] > 120
            if kind == "RBBB":  # late positive R' in V1
                assert meas["v1_terminal_qrs"] > 0.1
            else:  # broad negative QS in V1
                assert meas["v1_terminal_qrs"] < 0.0
                onset = meas["r_peaks"][1]
                assert ecg[LEAD["V1"], onset - 60 : onset + 60].min() < -0.4
        normal = measure_ecg(generate_ecg("SR", seed=seed))
        assert normal["qrs_duration_ms"] < 110


def test_reports_mention_the_measured_rhythm_and_findings():
    cases = {
        ("SBRAD",): ["sinus bradycardia", "normal ecg except for rate"],
        ("SR",): ["sinus rhythm", "normal ecg"],
        ("STACH",): ["sinus tachycardia", "normal ecg except for rate"],
        ("AFIB",): ["atrial fibrillation", "abnormal ecg"],
        ("SR", "1AVB"): ["sinus rhythm", "first degree av block", "borderline ecg"],
        ("SR", "RBBB"): ["sinus rhythm", "right bundle branch block", "abnormal ecg"],
        ("AFIB", "LBBB"): ["atrial fibrillation", "left bundle branch block", "abnormal ecg"],
    }
    for conds, phrases in cases.items():
        ecg, info = generate_ecg(list(conds), seed=1, return_info=True, extras=())
        report = synthetic.make_report(info["measurements"])
        assert report == report.lower() and report.endswith(".")
        for phrase in phrases:
            assert phrase in report, (conds, report)
    # rate-dependent wording comes from the measured rate
    _, info = generate_ecg("AFIB", heart_rate=130, seed=0, return_info=True)
    assert synthetic.make_report(info["measurements"]).startswith("atrial fibrillation with rapid ventricular response")
    # measured extras: axis and voltage
    _, info = generate_ecg("SR", seed=0, extras=("left_axis_deviation",), return_info=True)
    assert info["measurements"]["qrs_axis"] < -30
    assert "left axis deviation" in synthetic.make_report(info["measurements"])
    _, info = generate_ecg("SR", seed=0, extras=("low_voltage",), return_info=True)
    assert "low qrs voltages" in synthetic.make_report(info["measurements"])


# ------------------------------------------------------------------ the corpus
@pytest.fixture(scope="module")
def corpus():
    return make_synthetic_corpus(240, seed=0)


def test_corpus_format(corpus):
    from datasets import Array2D

    assert corpus.column_names == ["ecg", "report", "labels", "heart_rate", "record_id"]
    assert corpus.features["ecg"] == Array2D(shape=(12, 5000), dtype="float16")
    assert corpus.features["labels"].length == len(SYNTHETIC_CLASSES)
    data = corpus.with_format("numpy")
    ecg = np.asarray(data[:5]["ecg"])
    assert ecg.shape == (5, 12, 5000)
    assert 0.3 < np.abs(ecg[:, :2]).max() < 5.0  # millivolts survive float16 storage
    # Einthoven still holds up to float16 rounding
    assert np.abs(ecg[:, 2] - (ecg[:, 1] - ecg[:, 0])).max() < 2e-3
    assert list(data["record_id"]) == list(range(240))
    labels = np.asarray(data["labels"])
    assert labels.dtype == np.float32 and set(np.unique(labels)) <= {0.0, 1.0}
    # exactly one rhythm label per record (the four rhythm classes are exclusive)
    assert np.all(labels[:, :4].sum(1) <= 1) and labels[:, :4].sum() >= 0.98 * len(labels)
    counts = labels.sum(0)
    assert all(counts[SYNTHETIC_CLASSES.index(c)] >= 15 for c in SYNTHETIC_CLASSES)
    # multi-label records exist (e.g. AF + BBB)
    assert (labels.sum(1) >= 2).sum() >= 20
    af, bbb = SYNTHETIC_CLASSES.index("AFIB"), SYNTHETIC_CLASSES.index("BBB")
    assert ((labels[:, af] == 1) & (labels[:, bbb] == 1)).any()
    # heart_rate is the measured rate of the stored signal
    for k in range(5):
        assert abs(measure_ecg(ecg[k].astype(np.float32))["heart_rate"] - data["heart_rate"][k]) < 1.0
    assert len(set(corpus["report"])) >= 20  # report variety


def test_corpus_labels_agree_with_reports(corpus):
    starts = {"SBRAD": ("sinus bradycardia", "marked sinus bradycardia"), "SR": ("sinus rhythm",),
              "STACH": ("sinus tachycardia",), "AFIB": ("atrial fibrillation",)}
    for report, labels in zip(corpus["report"], corpus["labels"]):
        first = report.split(".")[0]
        for code, phrases in starts.items():
            assert labels[SYNTHETIC_CLASSES.index(code)] == float(first.startswith(phrases)), report
        assert labels[SYNTHETIC_CLASSES.index("1AVB")] == float("first degree av block" in report)
        assert labels[SYNTHETIC_CLASSES.index("BBB")] == float("bundle branch block" in report)


def test_hand_made_features_separate_the_classes(corpus):
    """R-peak rate and RR variability (test-side detector) separate the rhythms; PR and QRS width the rest."""
    data = corpus.with_format("numpy")
    ecgs = np.asarray(data["ecg"], dtype=np.float32)
    labels = np.asarray(data["labels"])
    rate, cv = np.array([_rate_and_cv(e) for e in ecgs]).T
    column = {c: labels[:, SYNTHETIC_CLASSES.index(c)] for c in SYNTHETIC_CLASSES}
    assert roc_auc_score(column["SBRAD"], -rate) > 0.95
    assert roc_auc_score(column["STACH"], rate) > 0.95
    assert roc_auc_score(column["AFIB"], cv) > 0.95
    sr_score = -np.abs(rate - 80.0) / 20.0 - 10.0 * cv
    assert roc_auc_score(column["SR"], sr_score) > 0.95
    meas = [measure_ecg(e) for e in ecgs]
    qrs = np.array([m["qrs_duration_ms"] for m in meas])
    pr = np.nan_to_num(np.array([m["pr_interval_ms"] for m in meas]), nan=0.0)
    assert roc_auc_score(column["BBB"], qrs) > 0.95
    assert roc_auc_score(column["1AVB"], pr) > 0.95


def test_class_subset_and_errors():
    ds = make_synthetic_corpus(12, seed=5, class_names=["SR", "AFIB"])
    labels = np.asarray(ds["labels"])
    assert labels.shape == (12, 2)
    assert set(labels.sum(1)) <= {1.0}  # only SR or AF records are generated
    assert all(r.startswith(("sinus rhythm", "atrial fibrillation")) for r in ds["report"])
    with pytest.raises(ValueError, match="subset"):
        make_synthetic_corpus(2, class_names=["SR", "MI"])
    with pytest.raises(ValueError, match="unknown synthetic condition"):
        generate_ecg("MI", seed=0)
    with pytest.raises(ValueError, match="at most one rhythm"):
        generate_ecg(["SR", "AFIB"], seed=0)
    with pytest.raises(ValueError, match="backend"):
        generate_ecg("SR", seed=0, backend="other")
    with pytest.raises(TypeError):
        generate_ecg("SR", seed=0, not_a_parameter=1)
    assert len(make_synthetic_corpus(0)) == 0


# ------------------------------------------------------------------ optional deepfake-ecg backend
def test_deepfake_backend_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepfakeecg", None)  # makes `import deepfakeecg` fail
    synthetic._deepfake_generator.cache_clear()
    with pytest.raises(ImportError, match="pip install deepfake-ecg"):
        generate_ecg(backend="deepfake", seed=0)
    synthetic._deepfake_generator.cache_clear()


def test_deepfake_backend_with_a_stand_in_generator(monkeypatch):
    """The backend's plumbing (8 -> 12 leads, units, labels, reports) with a stand-in for the GAN."""
    import torch

    class StandIn(torch.nn.Module):
        def forward(self, noise):  # (B, 8, 5000) uniform noise -> (B, 8, 5000) in the GAN's units (mV / 6)
            seeds = (noise[:, 0, 0] * 1e6).long().tolist()
            out = [generate_ecg("SR", seed=abs(s))[[0, 1, 6, 7, 8, 9, 10, 11]] / 6.0 for s in seeds]
            return torch.from_numpy(np.stack(out))

    monkeypatch.setattr(synthetic, "_deepfake_generator", lambda: StandIn())
    ecg = generate_ecg(backend="deepfake", seed=3)
    assert ecg.shape == (12, 5000) and ecg.dtype == np.float32
    assert np.array_equal(ecg, generate_ecg(backend="deepfake", seed=3))
    assert np.array_equal(ecg[2], ecg[1] - ecg[0]) and np.array_equal(ecg[5], ecg[1] - ecg[0] / 2)
    assert 0.5 < np.abs(ecg[:2]).max() < 2.0  # x 6 restores millivolts
    ds = make_synthetic_corpus(5, seed=0, backend="deepfake", batch_size=2)
    labels = np.asarray(ds["labels"])
    assert labels.shape == (5, 6) and np.all(labels[:, SYNTHETIC_CLASSES.index("SR")] == 1)
    assert all(r.startswith("sinus rhythm") for r in ds["report"])
    with pytest.raises(ValueError, match="cannot be steered"):
        generate_ecg("AFIB", backend="deepfake", seed=0)


# ------------------------------------------------------------------ plotting
def test_plot_ecg_writes_a_png(tmp_path):
    from matplotlib.figure import Figure

    from dbeta_hf.evaluation.plotting import plot_ecg

    ecg = generate_ecg(["SR", "RBBB"], seed=0)
    path = tmp_path / "ecg.png"
    fig = plot_ecg(ecg, title="RBBB", path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    # any lead count / order, torch input
    import torch

    two = tmp_path / "two.png"
    plot_ecg(torch.from_numpy(ecg[[1, 6]]), lead_names=["II", "V1"], sampling_rate=FS, path=two)
    assert two.stat().st_size > 5_000
    with pytest.raises(ValueError):
        plot_ecg(ecg, lead_names=["I", "II"])
