"""The feature extractor's batch path (`_process_items`, `_batch_values`, `_passes_value_checks`) against its
per-record path (`_process_one`, `_checked_signal`): bit-identical outputs, the same errors and warnings, word for
word, and the per-record path used only for the records that need it.

"Per-record path" below is the extractor with `_uniform_items` returning no item (and, for `check_values`,
`_passes_value_checks` clearing none), which is exactly the code that ran before the batch path existed.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from dbeta_hf.feature_extraction_dbeta import DBetaECGFeatureExtractor
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator

SAMPLES = 500  # a short num_samples keeps the tests fast; the batch path does not depend on it
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ecg(seed: int, samples: int = SAMPLES, scale: float = 1.0, dtype=np.float32) -> np.ndarray:
    """An ECG-like (12, samples) recording in mV: a beat train of a few mV on a wandering baseline, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 500.0
    beats = np.exp(-(((t * 1.2) % 1.0 - 0.3) ** 2) / 2e-4)[None] * rng.uniform(0.3, 2.5, (12, 1))
    signal = beats - 0.2 + 0.1 * np.sin(2 * np.pi * 0.3 * t)[None] + rng.normal(0, 0.03, (12, samples))
    return (signal * scale).astype(dtype)


@contextmanager
def per_record_path():
    """Run the extractor (and the collator through it) on the per-record path only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DBetaECGFeatureExtractor, "_uniform_items", lambda self, *args: [])
        patch.setattr(DBetaECGFeatureExtractor, "_passes_value_checks",
                      lambda self, batch: np.zeros(batch.shape[0], dtype=bool))
        yield


@contextmanager
def counting_per_record_calls():
    """Count the records that went through `_process_one` (the per-record path)."""
    calls = []
    original = DBetaECGFeatureExtractor._process_one
    with pytest.MonkeyPatch.context() as patch:
        def spy(self, recording, *args, item=None, **kwargs):
            calls.append(item)
            return original(self, recording, *args, item=item, **kwargs)
        patch.setattr(DBetaECGFeatureExtractor, "_process_one", spy)
        yield calls


def outcome(function, caplog):
    """(outputs or the error as (type, text), the warnings logged), with the warnings cleared afterwards."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        try:
            result = function()
        except (ValueError, TypeError) as error:
            result = (type(error), str(error))
    messages = [record.getMessage() for record in caplog.records]
    caplog.clear()
    return result, messages


def assert_same_tensors(new, old):
    assert set(new) == set(old)
    for key in old:
        a, b = torch.as_tensor(np.asarray(new[key])), torch.as_tensor(np.asarray(old[key]))
        assert a.dtype == b.dtype and torch.equal(a, b), key


# ---------------------------------------------------------------------------------------------- outputs
MIXED_BATCH = [  # (recording, lead names or None): the ones with names, a shorter length or ints take the slow path
    (ecg(0).astype(np.float16), None),  # float16 storage, as in the Arrow datasets
    (ecg(1), None),
    (ecg(2, samples=SAMPLES + 37), None),  # cropped
    (ecg(3, dtype=np.float64), None),
    (ecg(4, samples=SAMPLES - 120), None),  # padded: per-record path
    (ecg(5)[[0, 1, 6, 7]], ["I", "II", "V1", "V2"]),  # lead subset: per-record path, lead_mask False elsewhere
    (ecg(6)[[0, 1, 2, 3, 5, 4] + list(range(6, 12))], ["I", "II", "III", "aVR", "aVF", "aVL"] + LEADS[6:]),
    (ecg(7, samples=SAMPLES + 1), None),
]


@pytest.mark.parametrize("settings, call", [
    ({}, {}),
    ({}, {"crop": "center"}),
    ({"lead_order": "mimic"}, {}),
    ({"lead_names": ["V1", "II", "aVL"]}, {}),
    ({}, {"non_finite": "interpolate"}),
    ({"check_amplitude": False}, {}),
])
def test_mixed_batch_is_bit_identical_to_the_per_record_path(settings, call, caplog):
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES, **settings)
    recordings = [r for r, _ in MIXED_BATCH]
    names = [n for _, n in MIXED_BATCH]

    def run():
        return fe(recordings, sampling_rate=500, lead_names=names, return_num_padded_samples=True, **call)

    with counting_per_record_calls() as calls:
        new, new_log = outcome(run, caplog)
    with per_record_path():
        old, old_log = outcome(run, caplog)
    assert_same_tensors(new, old)
    assert new_log == old_log and any("padded" in m for m in old_log)
    assert calls == [4, 5, 6]  # the padded record and the two with lead names; the others in one batch
    assert new["lead_mask"].dtype == bool and new["ecg_values"].dtype == np.float32


@pytest.mark.parametrize("dtype, units, scale", [
    (np.float16, "mV", 1.0), (np.float32, "uV", 1000.0), (np.float64, "V", 1e-3), (np.int16, "uV", 1000.0),
    (np.int32, "mV", 1.0),
])
def test_dtypes_and_units_are_bit_identical(dtype, units, scale, caplog):
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    recordings = [ecg(seed, samples=SAMPLES + seed, scale=scale, dtype=np.float64) for seed in range(4)]
    if np.dtype(dtype).kind == "i":
        recordings = [np.round(r * (1 if scale > 1 else 1000)).astype(dtype) for r in recordings]
        units = "uV"
    else:
        recordings = [r.astype(dtype) for r in recordings]
    for ecgs in (recordings, np.stack([r[:, :SAMPLES] for r in recordings])):
        with counting_per_record_calls() as calls:
            new, new_log = outcome(lambda: fe(ecgs, sampling_rate=500, units=units), caplog)
        with per_record_path():
            old, old_log = outcome(lambda: fe(ecgs, sampling_rate=500, units=units), caplog)
        assert_same_tensors(new, old)
        assert new_log == old_log == []
        assert calls == []  # all four in the batch path


def test_torch_inputs_and_float_values_beyond_float32(caplog):
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES, check_amplitude=False, non_finite="zero")
    big = ecg(1, dtype=np.float64)
    big[3, 10] = 1e39  # beyond float32: marked infinite, then zeroed by the policy
    edge = ecg(3, dtype=np.float64)
    edge[4, 11] = 3.4028235e38  # just beyond float32's largest value, to which a cast would round it: infinite too
    inputs = [torch.from_numpy(ecg(0)).half(), torch.from_numpy(ecg(2)).bfloat16(), big, torch.from_numpy(edge)]
    with counting_per_record_calls() as calls:
        new, new_log = outcome(lambda: fe(inputs, sampling_rate=500), caplog)
    with per_record_path():
        old, old_log = outcome(lambda: fe(inputs, sampling_rate=500), caplog)
    assert_same_tensors(new, old)
    assert new_log == old_log
    assert calls == [2, 3]  # the two with an overflowing value; the torch halves in the batch path


def test_the_batch_output_is_a_fresh_array():
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    batch = np.stack([ecg(0), ecg(1)])
    out = fe(batch, sampling_rate=500)["ecg_values"]
    out[:] = 0.0  # the collator masks leads in place: the caller's array must not change
    assert np.array_equal(batch, np.stack([ecg(0), ecg(1)]))


# ---------------------------------------------------------------------------------------------- errors and warnings
def with_nan(seed, lead, count=3):
    signal = ecg(seed)
    signal[lead, :count] = np.nan
    return signal


ERROR_CASES = {
    "nan": ([ecg(0), with_nan(1, 7)], {}, "ECG item 1 contains NaN or infinite values in lead(s) V2 (row 7): 3 of"),
    "inf": ([ecg(0), ecg(1), np.where(np.arange(SAMPLES) == 5, np.inf, ecg(2))], {}, "ECG item 2 contains NaN"),
    "overflow": ([ecg(0), np.where(np.arange(SAMPLES) == 5, 1e39, ecg(1).astype(np.float64))], {},
                 "values beyond the float32 range"),
    "microvolts": ([ecg(0), ecg(1, scale=1000.0)], {}, "ECG item 1: the ECG amplitude is implausible for units='mV'"),
    "60000 mV": ([np.full((12, SAMPLES), 60_000.0, np.float32), ecg(1)], {}, "ECG item 0: the ECG amplitude"),
    "adc": ([ecg(0), ecg(1, scale=1e6)], {}, "If they are ADC counts, divide them by the gain"),
    "single": ([with_nan(1, 3)], {}, "The ECG contains NaN or infinite values in lead(s) aVR (row 3)"),
    "int without units": ([ecg(0).astype(np.int16)], {"units": None}, "got integer ECG values"),
    "unknown units": ([ecg(0)], {"units": "mmHg"}, "Unknown ECG units 'mmHg'"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_errors_have_the_per_record_text(case, caplog):
    recordings, call, expected = ERROR_CASES[case]
    call = {"units": "mV", **call}
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    new, new_log = outcome(lambda: fe(recordings, sampling_rate=500, **call), caplog)
    with per_record_path():
        old, old_log = outcome(lambda: fe(recordings, sampling_rate=500, **call), caplog)
    assert new == old and new_log == old_log
    assert new[0] in (ValueError, TypeError) and expected in new[1]
    if case == "microvolts":
        assert "pass units='uV'" in new[1] and "check_amplitude=False" in new[1]


WARNING_CASES = {
    "volts": ([ecg(0), ecg(1, scale=1e-3)], {}, "ECG item 1: the amplitude is implausibly small for units='mV'"),
    "all zeros": ([ecg(0), np.zeros((12, SAMPLES), np.float16)], {}, "ECG item 1 is all zeros"),
    "empty lead": ([ecg(0), with_nan(1, 2, count=SAMPLES)], {"non_finite": "zero"},
                   "ECG lead(s) III contain no finite sample"),
    "tiny lead spans": ([ecg(0), np.where(np.arange(SAMPLES) % 97 == 0, 1.004, 1.0).astype(np.float32)[None]
                         .repeat(12, 0)], {}, "median lead span (1st-99th percentile)"),
}


@pytest.mark.parametrize("case", sorted(WARNING_CASES))
def test_warnings_have_the_per_record_text(case, caplog):
    recordings, call, expected = WARNING_CASES[case]
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    with counting_per_record_calls() as calls:
        new, new_log = outcome(lambda: fe(recordings, sampling_rate=500, units="mV", **call), caplog)
    with per_record_path():
        old, old_log = outcome(lambda: fe(recordings, sampling_rate=500, units="mV", **call), caplog)
    assert_same_tensors(new, old)
    assert new_log == old_log and any(expected in message for message in new_log)
    assert calls == [1]  # the ordinary record 0 was cleared by the batch checks


def awkward_records(seed: int) -> list[np.ndarray]:
    """Records near the limits of the value checks (and beyond them), where a batch check that is not conservative
    would let through something the per-record checks refuse or warn about."""
    rng = np.random.default_rng(seed)
    base = np.zeros((12, SAMPLES), np.float32)
    records = []
    for span in (0.004, 0.009, 0.011, 0.019, 0.021, 0.05, 95.0, 105.0):  # small- and large-span limits
        record = base.copy()
        record[: int(rng.integers(1, 13)), :: int(rng.integers(2, 60))] = span
        records.append(record + np.float32(rng.uniform(-1, 1)) * (span < 1))
    for level in (24.0, 26.0, 49.0, 51.0):  # median |x| limit
        records.append(ecg(seed, scale=0.5) + np.float32(level))
    spiky = ecg(seed)
    spiky[:, :: int(rng.integers(3, 200))] += np.float32(rng.uniform(30, 300))
    records.append(spiky)
    for count in (3, 5, 6, 8, 9):  # `count` samples 0.02 mV above and below a constant lead: around the 1 % points
        record = np.zeros((12, SAMPLES), np.float32)
        for lead in range(12):
            where = rng.permutation(SAMPLES)[: 2 * count]
            record[lead, where[:count]], record[lead, where[count:]] = 0.02, -0.02
        records.append(record + np.float32(rng.uniform(-1, 1)))
    constant_but_one = np.full((12, SAMPLES), np.float32(rng.uniform(-2, 2)))
    constant_but_one[5, int(rng.integers(SAMPLES))] += np.float32(rng.uniform(-0.05, 0.05))
    records.append(constant_but_one)
    return records


@pytest.mark.parametrize("seed", range(4))
def test_records_near_the_limits_get_the_per_record_outcome(seed, caplog):
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    for index, record in enumerate(awkward_records(seed)):
        recordings = [ecg(seed), record]
        new, new_log = outcome(lambda: fe(recordings, sampling_rate=500, units="mV"), caplog)
        with per_record_path():
            old, old_log = outcome(lambda: fe(recordings, sampling_rate=500, units="mV"), caplog)
        if isinstance(old, tuple):
            assert new == old, index
        else:
            assert_same_tensors(new, old)
        assert new_log == old_log, index


def test_check_values_keeps_its_messages(caplog):
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    cases = [np.stack([ecg(0), with_nan(1, 9)]), np.stack([ecg(0), ecg(1, scale=1000.0)]),
             np.stack([ecg(0), ecg(1, scale=1e-3), np.zeros((12, SAMPLES), np.float32)]),
             torch.from_numpy(np.stack([ecg(0), ecg(1)])).half(), np.stack([ecg(0), with_nan(1, 9)]).astype(np.float64)]
    for values in cases:
        new, new_log = outcome(lambda: fe.check_values(values), caplog)
        with per_record_path():
            old, old_log = outcome(lambda: fe.check_values(values), caplog)
        assert new == old and new_log == old_log
    assert old[1].startswith("ECG item 1 contains NaN or infinite values in lead(s) V4 (row 9)")
    edge = np.stack([ecg(0), ecg(1)]).astype(np.float64)
    edge[1, 2, 3] = 3.4028235e38  # beyond float32's range, though a cast would round it to the largest float32
    unchecked = DBetaECGFeatureExtractor(num_samples=SAMPLES, check_amplitude=False)
    new, _ = outcome(lambda: unchecked.check_values(edge), caplog)
    with per_record_path():
        old, _ = outcome(lambda: unchecked.check_values(edge), caplog)
    assert new == old and old[1].startswith("ECG item 1 contains NaN or infinite values in lead(s) III (row 2)")


# ---------------------------------------------------------------------------------------------- the batch checks
def test_the_batch_checks_clear_ordinary_records_and_no_other():
    fe = DBetaECGFeatureExtractor(num_samples=SAMPLES)
    ordinary = [ecg(seed) for seed in range(6)]
    ordinary[1][4] = 0.0  # a lead recorded as zeros (absent from the source) and a constant one are not flagged
    ordinary[2][7] = np.float32(0.3)
    assert fe._passes_value_checks(np.stack(ordinary)).all()
    flagged = {
        "nan": with_nan(0, 1), "inf": np.where(np.arange(SAMPLES) == 0, -np.inf, ecg(0)).astype(np.float32),
        "zeros": np.zeros((12, SAMPLES), np.float32), "large |x|": ecg(0) + np.float32(26.0),
        "large span": ecg(0) * np.float32(25.0), "small span": ecg(0) * np.float32(1e-3),
    }
    checked = fe._passes_value_checks(np.stack(list(flagged.values())))
    assert not checked.any(), dict(zip(flagged, checked))
    unchecked = DBetaECGFeatureExtractor(num_samples=SAMPLES, check_amplitude=False)
    assert unchecked._passes_value_checks(np.stack(list(flagged.values()))).tolist() == [
        False, False, False, True, True, True]


# ---------------------------------------------------------------------------------------------- the collator
def collator_rows(tiny_dataset_rows):
    rows = []
    for i, row in enumerate(tiny_dataset_rows):
        rows.append({"ecg": row, "report": ["sinus rhythm.", "normal ecg.", "atrial fibrillation."][i % 3],
                     "idx": i})
    return rows


@pytest.mark.parametrize("return_lead_mask", [False, True])
def test_collator_batches_are_bit_identical(tiny_tokenizer, return_lead_mask, caplog):
    recordings = [
        ecg(0).astype(np.float16), ecg(1), ecg(2, samples=SAMPLES + 100).astype(np.float16), ecg(3, dtype=np.float64),
        torch.from_numpy(ecg(4)).half(), ecg(5).tolist(), np.zeros((12, SAMPLES), np.float16), ecg(7, scale=1e-3),
        np.where(np.arange(SAMPLES) < SAMPLES // 2, 0.0, ecg(8)).astype(np.float16),  # half the record zero
    ]
    rows = collator_rows(recordings)

    def collate():
        collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=SAMPLES, return_lead_mask=return_lead_mask)
        return collator(rows)

    with counting_per_record_calls() as calls:
        new, new_log = outcome(collate, caplog)
    with per_record_path():
        old, old_log = outcome(collate, caplog)
    assert_same_tensors(new, old)
    assert new_log == old_log and len(new_log) == 2  # the all-zero and the volts records
    assert calls == [6, 7]
    if return_lead_mask:
        assert not new["lead_mask"][6].any()


def test_collator_errors_name_the_batch_records(tiny_tokenizer, caplog):
    rows = collator_rows([ecg(0), with_nan(1, 4), ecg(2)])
    rows_uv = collator_rows([ecg(0), ecg(1), ecg(2, scale=1000.0)])
    for batch in (rows, rows_uv):
        collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=SAMPLES)
        new, _ = outcome(lambda: collator(batch), caplog)
        with per_record_path():
            old, _ = outcome(lambda: collator(batch), caplog)
        assert new == old and new[0] is ValueError
        assert "(the batch's records: item 0: idx=0, item 1: idx=1, item 2: idx=2)" in new[1]
    assert new[1].startswith("ECG item 2: the ECG amplitude is implausible for units='mV'")


def test_collator_on_the_demo_corpus_in_every_format(tiny_tokenizer, caplog):
    from dbeta_hf.data.synthetic import make_synthetic_corpus

    corpus = make_synthetic_corpus(8, seed=3)
    for fmt in ("numpy", "torch", None):
        rows = [dict(row) for row in corpus.with_format(fmt)]
        collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=5000, return_lead_mask=True)
        with counting_per_record_calls() as calls:
            new, new_log = outcome(lambda: collator(rows), caplog)
        with per_record_path():
            old, old_log = outcome(lambda: collator(rows), caplog)
        assert_same_tensors(new, old)
        assert new_log == old_log == [] and calls == []
