"""Tiny on-disk copies of MIMIC-IV-ECG, PTB-XL, CPSC2018, CSN, CODE-15 test and PhysioNet/CinC 2021, written at test time.

Every writer reproduces the real layout, file names, CSV columns and WFDB header conventions
(docs/environment.md section 4) with synthetic signals, plus deliberately broken records. Each returns
the root and a dict of what a correct loader must produce, so tests can compare numbers.

Signals come from `synthetic_ecg`: a beat train projected on a frontal-plane dipole, so the limb leads
obey Einthoven's and Goldberger's equations exactly (III = II - I, aVR = -(I+II)/2, aVL = I - II/2,
aVF = II - I/2) and every lead has a distinct shape. That lets the tests check lead order by value.
"""

from __future__ import annotations

import datetime
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CANONICAL = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
MIMIC_LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
PTBXL_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CODE_TEST_LEADS = ["DI", "DII", "DIII", "AVL", "AVF", "AVR", "V1", "V2", "V3", "V4", "V5", "V6"]


# ------------------------------------------------------------------------------------------ signals
def synthetic_ecg(num_samples: int = 5000, fs: float = 500.0, seed: int = 0, heart_rate: float | None = None) -> np.ndarray:
    """A (12, num_samples) float64 ECG in mV, canonical lead order, physically consistent limb leads."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / fs
    rate = heart_rate if heart_rate is not None else float(rng.uniform(55, 95))
    rr = 60.0 / rate
    # (center offset s, width s, x gain, y gain, z gain) of the P, Q, R, S, T waves
    waves = [
        (-0.20, 0.025, 0.08, 0.12, 0.03),
        (-0.03, 0.010, -0.10, -0.05, 0.20),
        (0.00, 0.012, 0.90, 1.10, -0.50),
        (0.03, 0.012, -0.20, -0.30, 0.80),
        (0.25, 0.060, 0.20, 0.30, -0.15),
    ]
    axis_jitter = rng.uniform(0.8, 1.2, size=3)
    x = np.zeros(num_samples)
    y = np.zeros(num_samples)
    z = np.zeros(num_samples)
    first = float(rng.uniform(0.25, 0.25 + rr))
    for beat in np.arange(first, t[-1] + rr, rr):
        for offset, width, gx, gy, gz in waves:
            shape = np.exp(-0.5 * ((t - beat - offset) / width) ** 2)
            x += gx * axis_jitter[0] * shape
            y += gy * axis_jitter[1] * shape
            z += gz * axis_jitter[2] * shape
    wander = 0.05 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 2 * np.pi))
    lead_i = x + wander
    lead_ii = 0.5 * x + 0.866 * y + wander
    limb = [
        lead_i,
        lead_ii,
        lead_ii - lead_i,
        -(lead_i + lead_ii) / 2,
        lead_i - lead_ii / 2,
        lead_ii - lead_i / 2,
    ]
    chest = [
        -0.3 * x + 0.9 * z,
        -0.1 * x + 1.2 * z,
        0.3 * x + 0.8 * z + 0.2 * y,
        0.7 * x + 0.3 * z + 0.4 * y,
        0.9 * x - 0.1 * z + 0.3 * y,
        0.8 * x - 0.3 * z + 0.2 * y,
    ]
    return np.stack(limb + chest)


def _reorder(canonical: np.ndarray, names: list[str]) -> np.ndarray:
    index = {n.upper(): i for i, n in enumerate(CANONICAL)}
    rows = []
    for name in names:
        key = name.upper()
        if key in ("DI", "DII", "DIII"):
            key = key[1:]
        rows.append(canonical[index[key]])
    return np.stack(rows)


def _wrsamp(directory: Path, record: str, signal_rows: np.ndarray, names, fs, gain, **kwargs) -> None:
    import wfdb

    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        record,
        fs=fs,
        units=["mV"] * len(names),
        sig_name=list(names),
        p_signal=signal_rows.T,
        fmt=["16"] * len(names),
        adc_gain=[float(gain)] * len(names),
        baseline=[0] * len(names),
        write_dir=str(directory),
        **kwargs,
    )


def _write_wfdb_mat(directory: Path, record: str, signal_rows: np.ndarray, names, fs, gain, record_line_tail, comments):
    """A PhysioNet/CinC 2020-2021 style record: ``<record>.mat`` (MATLAB v4, 'val' int16 matrix) + header."""
    directory.mkdir(parents=True, exist_ok=True)
    digital = np.round(signal_rows * gain).astype(np.int16)  # (leads, T)
    n_leads, n_samples = digital.shape
    header = struct.pack("<5i", 30, n_leads, n_samples, 0, 4) + b"val\x00"  # MOPT 30 = int16, little-endian
    with open(directory / f"{record}.mat", "wb") as handle:
        handle.write(header)
        handle.write(digital.T.astype("<i2").tobytes())  # column-major (leads x T) = interleaved samples
    lines = [f"{record} {n_leads} {fs:g} {n_samples}{record_line_tail}"]
    for lead, name in enumerate(names):
        values = digital[lead].astype(np.int64)
        checksum = int(values.sum()) % 65536
        checksum = checksum - 65536 if checksum >= 32768 else checksum
        lines.append(f"{record}.mat 16+24 {gain:g}/mV 16 0 {int(values[0])} {checksum} 0 {name}")
    lines += [f"#{c}" for c in comments]
    (directory / f"{record}.hea").write_text("\n".join(lines) + "\n")


def _truncate_header(path: Path, keep_signal_lines: int = 5) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: 1 + keep_signal_lines]) + "\n")


def _garble_header(path: Path) -> None:
    path.write_text("4O689?38 twelve 5OO Hz\n@@@ garbage %%% 16 x/mV\n")


# ------------------------------------------------------------------------------------------ MIMIC-IV-ECG
MEASUREMENT_COLUMNS = (
    ["subject_id", "study_id", "cart_id", "ecg_time"]
    + [f"report_{i}" for i in range(18)]
    + ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"]
)


@dataclass
class MimicRecord:
    subject_id: int
    study_id: int
    report_cells: dict = field(default_factory=lambda: {0: "Sinus rhythm", 2: "Normal ECG"})
    kind: str = "ok"  # ok, missing_dat, garbled_header, truncated_header, truncated_dat, nan, flat,
    #                   empty_report, no_measurements, fs250, short
    seed: int = 0


def default_mimic_records() -> list[MimicRecord]:
    records = []
    for i in range(8):
        subject = 10000032 + 11 * (i // 2)  # two studies per subject
        records.append(
            MimicRecord(
                subject,
                40000000 + i,
                {0: f"Sinus rhythm {i}", 1: "", 2: " Possible right atrial abnormality ", 5: "Borderline ECG"},
                seed=i,
            )
        )
    broken = [
        "missing_dat", "garbled_header", "truncated_header", "truncated_dat", "nan", "flat",
        "empty_report", "no_measurements", "fs250", "short",
    ]
    for j, kind in enumerate(broken):
        records.append(MimicRecord(19000000 + j, 41000000 + j, {0: "Atrial fibrillation"}, kind=kind, seed=100 + j))
    return records


def write_mimic_iv_ecg(root: Path, records: list[MimicRecord] | None = None) -> tuple[Path, dict]:
    """MIMIC-IV-ECG 1.0 layout. Returns (root, {study_id: {"kind", "signal" (canonical mV), "report"}})."""
    import pandas as pd

    records = records if records is not None else default_mimic_records()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    record_rows, measurement_rows = [], []
    for rec in records:
        subject, study = rec.subject_id, rec.study_id
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        directory = root / Path(rel).parent
        fs, n = 500, 5000
        if rec.kind == "fs250":
            fs, n = 250, 2500
        elif rec.kind == "short":
            n = 4000
        signal = synthetic_ecg(n, fs, seed=rec.seed)
        if rec.kind == "flat":
            signal[7] = 0.0  # V2 flat
        written = _reorder(signal, MIMIC_LEADS)
        if rec.kind == "nan":
            written[4, 100:200] = np.nan  # stored aVF has a gap
        _wrsamp(
            directory, str(study), written, MIMIC_LEADS, fs, 200,
            base_time=datetime.time(8, 44, 0), base_date=datetime.date(2180, 7, 23),
        )
        header = directory / f"{study}.hea"
        if rec.kind == "missing_dat":
            (directory / f"{study}.dat").unlink()
        elif rec.kind == "garbled_header":
            _garble_header(header)
        elif rec.kind == "truncated_header":
            _truncate_header(header)
        elif rec.kind == "truncated_dat":
            data = (directory / f"{study}.dat").read_bytes()
            (directory / f"{study}.dat").write_bytes(data[: len(data) // 3 + 1])
        record_rows.append(
            {"subject_id": subject, "study_id": study, "file_name": study, "ecg_time": "2180-07-23 08:44:00", "path": rel}
        )
        cells = {} if rec.kind == "empty_report" else rec.report_cells
        if rec.kind != "no_measurements":
            row = {c: "" for c in MEASUREMENT_COLUMNS}
            row.update(subject_id=subject, study_id=study, cart_id=6848296, ecg_time="2180-07-23 08:44:00")
            for k, v in cells.items():
                row[f"report_{k}"] = v
            row.update(bandwidth="0.005-150 Hz", filtering="60 Hz notch Baseline filter", rr_interval=659, p_onset=40,
                       p_end=128, qrs_onset=170, qrs_end=258, t_end=518, p_axis=81, qrs_axis=77, t_axis=29999)
            measurement_rows.append(row)
        report = " ".join(v.strip() for _, v in sorted(cells.items()) if v.strip()) if rec.kind != "no_measurements" else ""
        expected[study] = {"kind": rec.kind, "signal": signal, "fs": fs, "report": report, "subject_id": subject}
    pd.DataFrame(record_rows, columns=["subject_id", "study_id", "file_name", "ecg_time", "path"]).to_csv(
        root / "record_list.csv", index=False
    )
    pd.DataFrame(measurement_rows, columns=MEASUREMENT_COLUMNS).to_csv(root / "machine_measurements.csv", index=False)
    (root / "RECORDS").write_text("".join(f"{r['path']}\n" for r in record_rows))
    return root, expected


# ------------------------------------------------------------------------------------------ PTB-XL
SCP_COLUMNS = [
    "", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass",
    "Statement Category", "SCP-ECG Statement Description", "AHA code", "aECG REFID", "CDISC Code", "DICOM Code",
]
# code: (description, diagnostic, form, rhythm, class, subclass) -- a subset of the real scp_statements.csv
SCP_STATEMENTS = {
    "NDT": ("non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
    "NST_": ("non-specific ST changes", 1.0, 1.0, None, "STTC", "NST_"),
    "LVH": ("left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH"),
    "IMI": ("inferior myocardial infarction", 1.0, None, None, "MI", "IMI"),
    "ASMI": ("anteroseptal myocardial infarction", 1.0, None, None, "MI", "AMI"),
    "NORM": ("normal ECG", 1.0, None, None, "NORM", "NORM"),
    "CLBBB": ("complete left bundle branch block", 1.0, None, None, "CD", "CLBBB"),
    "IRBBB": ("incomplete right bundle branch block", 1.0, None, None, "CD", "IRBBB"),
    "PVC": ("ventricular premature complex", None, 1.0, None, None, None),
    "LVOLT": ("low QRS voltages in the frontal and horizontal leads", None, 1.0, None, None, None),
    "ABQRS": ("abnormal QRS", None, 1.0, None, None, None),
    "SR": ("sinus rhythm", None, None, 1.0, None, None),
    "AFIB": ("atrial fibrillation", None, None, 1.0, None, None),
    "STACH": ("sinus tachycardia", None, None, 1.0, None, None),
    "SBRAD": ("sinus bradycardia", None, None, 1.0, None, None),
}
PTBXL_DB_COLUMNS = [
    "ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device", "recording_date", "report",
    "scp_codes", "heart_axis", "infarction_stadium1", "infarction_stadium2", "validated_by", "second_opinion",
    "initial_autogenerated_report", "validated_by_human", "baseline_drift", "static_noise", "burst_noise",
    "electrodes_problems", "extra_beats", "pacemaker", "strat_fold", "filename_lr", "filename_hr",
]
# ecg_id: (scp_codes, strat_fold, report, kind)
PTBXL_RECORDS = {
    1: ({"NORM": 100.0, "SR": 0.0}, 3, "sinusrhythmus normales ekg", "ok"),
    2: ({"IMI": 80.0, "ASMI": 15.0, "ABQRS": 0.0, "SR": 0.0}, 1, "sinus rhythm. inferior infarct", "ok"),
    3: ({"LVH": 100.0, "NDT": 100.0, "SR": 0.0}, 2, "sinus rhythm lvh", "ok"),
    4: ({"CLBBB": 100.0, "AFIB": 0.0}, 5, "atrial fibrillation, lbbb", "ok"),
    5: ({"NST_": 50.0, "PVC": 0.0, "STACH": 0.0}, 9, "sinus tachycardia, pvc", "ok"),
    6: ({"NORM": 100.0, "SBRAD": 0.0}, 10, "sinusbradykardie sonst normales ekg", "ok"),
    7: ({"IRBBB": 100.0, "LVOLT": 0.0, "SR": 0.0}, 10, "low voltage", "ok"),
    8: ({"NORM": 80.0, "SR": 0.0}, 9, "normal", "missing_dat"),
    9: ({"PVC": 0.0}, 4, "pvc only", "ok"),  # no diagnostic and no rhythm statement
    10: ({"NORM": 100.0, "SR": 0.0}, 8, "normal ecg", "flat"),
    11: ({"LVH": 35.0, "SR": 0.0}, 7, "possible lvh", "ok"),
}


def write_ptbxl(root: Path, records: dict | None = None) -> tuple[Path, dict]:
    """PTB-XL 1.0.3 layout (records500 + records100, both CSVs). Returns (root, {ecg_id: {...}})."""
    import pandas as pd

    records = records if records is not None else PTBXL_RECORDS
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    expected, rows = {}, []
    for ecg_id, (codes, fold, report, kind) in records.items():
        folder = f"{(ecg_id // 1000) * 1000:05d}"
        hr = f"records500/{folder}/{ecg_id:05d}_hr"
        lr = f"records100/{folder}/{ecg_id:05d}_lr"
        signal = synthetic_ecg(5000, 500, seed=1000 + ecg_id)
        if kind == "flat":
            signal[11] = 0.25  # V6 constant
        _wrsamp(root / Path(hr).parent, Path(hr).name, _reorder(signal, PTBXL_LEADS), PTBXL_LEADS, 500, 1000)
        low = signal[:, ::5]
        _wrsamp(root / Path(lr).parent, Path(lr).name, _reorder(low, PTBXL_LEADS), PTBXL_LEADS, 100, 1000)
        if kind == "missing_dat":
            (root / f"{hr}.dat").unlink()
            (root / f"{lr}.dat").unlink()
        rows.append(
            {
                "ecg_id": ecg_id, "patient_id": float(15000 + ecg_id // 2), "age": 56.0, "sex": ecg_id % 2,
                "height": "", "weight": 63.0, "nurse": 2.0, "site": 0.0, "device": "CS-12   E",
                "recording_date": "1984-11-09 09:17:34", "report": report, "scp_codes": repr(codes),
                "heart_axis": "", "infarction_stadium1": "", "infarction_stadium2": "", "validated_by": "",
                "second_opinion": False, "initial_autogenerated_report": False, "validated_by_human": True,
                "baseline_drift": "", "static_noise": ", I-V1,", "burst_noise": "", "electrodes_problems": "",
                "extra_beats": "", "pacemaker": "", "strat_fold": fold, "filename_lr": lr, "filename_hr": hr,
            }
        )
        expected[ecg_id] = {"codes": codes, "fold": fold, "report": report, "kind": kind, "signal": signal}
    pd.DataFrame(rows, columns=PTBXL_DB_COLUMNS).to_csv(root / "ptbxl_database.csv", index=False)
    scp_rows = []
    for code, (description, diagnostic, form, rhythm, cls, sub) in SCP_STATEMENTS.items():
        scp_rows.append([code, description, diagnostic, form, rhythm, cls, sub, "cat", description, "", "", "", ""])
    pd.DataFrame(scp_rows, columns=SCP_COLUMNS).to_csv(root / "scp_statements.csv", index=False)
    (root / "RECORDS").write_text("".join(f"{r['filename_hr']}\n" for r in rows))
    return root, expected


# ------------------------------------------------------------------------------------------ PhysioNet 2020/2021
@dataclass
class ChallengeRecord:
    name: str
    dx: str  # the '# Dx:' value (comma-separated SNOMED codes); '' writes no Dx line
    seconds: float = 10.0
    kind: str = "ok"  # ok, garbled_header, missing_mat
    seed: int = 0


def write_physionet_challenge(root: Path, records: list[ChallengeRecord], layout: str) -> tuple[Path, dict]:
    """WFDB ``.mat`` + ``.hea`` records with ``#Age/#Sex/#Dx`` comments.

    `layout` ``"cpsc2018"``: ``Training_WFDB/A0001.hea`` (the CinC 2020 conversion, record line with a
    date); ``"csn"``: ``WFDBRecords/01/010/JS00001.hea`` (PhysioNet ecg-arrhythmia 1.0.0).
    """
    root = Path(root)
    expected = {}
    for rec in records:
        n = int(round(rec.seconds * 500))
        signal = synthetic_ecg(n, 500, seed=rec.seed)
        if layout == "cpsc2018":
            directory = root / "Training_WFDB"
            tail = " 05-Feb-2020 11:39:16"
        else:
            number = int(rec.name[2:])
            directory = root / "WFDBRecords" / f"{number // 1000:02d}" / f"{number // 100:03d}"
            tail = " "
        comments = ["Age: 74", "Sex: Male"] + ([f"Dx: {rec.dx}"] if rec.dx else []) + ["Rx: Unknown", "Hx: Unknown", "Sx: Unknown"]
        _write_wfdb_mat(directory, rec.name, signal, CANONICAL, 500, 1000, tail, comments)
        if rec.kind == "garbled_header":
            _garble_header(directory / f"{rec.name}.hea")
        elif rec.kind == "missing_mat":
            (directory / f"{rec.name}.mat").unlink()
        expected[rec.name] = {"dx": rec.dx, "signal": signal, "kind": rec.kind, "path": directory / rec.name}
    if layout == "csn":
        (root / "ConditionNames_SNOMED-CT.csv").write_text(
            "Acronym Name,Full Name,Snomed_CT\nAFIB,Atrial Fibrillation,164889003\nSB,Sinus Bradycardia,426177001\n"
        )
    return root, expected


def default_cpsc_records() -> list[ChallengeRecord]:
    return [
        ChallengeRecord("A0001", "59118001", seconds=15.0, seed=1),            # CRBBB, cropped
        ChallengeRecord("A0002", "426783006", seed=2),                         # NORM
        ChallengeRecord("A0003", "164889003,59118001", seed=3),                # AFIB + CRBBB
        ChallengeRecord("A0004", "270492004", seconds=6.0, seed=4),            # 1AVB, padded
        ChallengeRecord("A0005", "164884008", seed=5),                         # VPC
        ChallengeRecord("A0006", "429622005,164931005", seed=6),               # STD + STE
        ChallengeRecord("A0007", "284470004", seed=7),                         # PAC
        ChallengeRecord("A0008", "164909002", seed=8),                         # CLBBB
        ChallengeRecord("A0009", "10370003", seed=9),                          # not a CPSC class -> no_label
        ChallengeRecord("A0010", "164889003", kind="garbled_header", seed=10),
        ChallengeRecord("A0011", "426783006", kind="missing_mat", seed=11),
        ChallengeRecord("A0012", "", seed=12),                                 # no Dx line -> no_label
    ]


def default_csn_records() -> list[ChallengeRecord]:
    return [
        ChallengeRecord("JS00001", "164889003,59118001,164934002", seed=21),  # AFIB, RBBB, TWC
        ChallengeRecord("JS00002", "426177001,164890007", seed=22),           # SB (not a benchmark class), AF
        ChallengeRecord("JS00003", "426783006", seed=23),                     # SR
        ChallengeRecord("JS00004", "427084000,428750005", seed=24),           # ST, STTC
        ChallengeRecord("JS00005", "426177001", seed=25),                     # SB only -> no_label
        ChallengeRecord("JS01052", "426783006", kind="garbled_header", seed=26),
        ChallengeRecord("JS10647", "270492004,251146004", seed=27),           # 1AVB (+ LVQRSAL, not benchmark)
    ]


# ------------------------------------------------------------------------------------------ CODE-15 test
CODE_CLASSES = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]


def write_code15_test(root: Path, num_records: int = 5, seconds=(10, 7, 10, 10, 7)) -> tuple[Path, dict]:
    """CODE test set layout: ``ecg_tracings.hdf5`` (N, 4096, 12) at 400 Hz in the release's lead order
    (DI, DII, DIII, AVL, AVF, AVR, V1..V6), zero-padded symmetrically, plus ``annotations/gold_standard.csv``
    and ``attributes.csv``. Returns (root, {"signals": [canonical mV (12, 4096)], "labels": (N, 6)})."""
    import h5py
    import pandas as pd

    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    tracings = np.zeros((num_records, 4096, 12), dtype=np.float32)
    canonical = []
    for i in range(num_records):
        n = int(seconds[i % len(seconds)] * 400)
        signal = synthetic_ecg(n, 400, seed=300 + i)
        pad = (4096 - n) // 2
        full = np.zeros((12, 4096))
        full[:, pad : pad + n] = signal
        canonical.append(full)
        tracings[i] = _reorder(full, CODE_TEST_LEADS).T
    with h5py.File(root / "ecg_tracings.hdf5", "w") as handle:
        handle.create_dataset("tracings", data=tracings)
    labels = np.zeros((num_records, 6), dtype=int)
    for i in range(num_records):
        if i % 3 == 0:
            labels[i, i % 6] = 1
        if i == 1:
            labels[i, [1, 4]] = 1
    pd.DataFrame(labels, columns=CODE_CLASSES).to_csv(root / "annotations" / "gold_standard.csv", index=False)
    pd.DataFrame(labels, columns=CODE_CLASSES).to_csv(root / "annotations" / "dnn.csv", index=False)
    pd.DataFrame({"age": [50 + i for i in range(num_records)], "sex": ["M", "F"] * (num_records // 2) + ["M"] * (num_records % 2)}).to_csv(
        root / "attributes.csv", index=False
    )
    return root, {"signals": canonical, "labels": labels}


# ------------------------------------------------------------------------------------------ PhysioNet/CinC 2021
@dataclass
class Challenge2021Record:
    source: str  # the training/ sub-folder
    name: str
    dx: str  # the '# Dx:' value
    fs: float = 500.0
    seconds: float = 10.0
    age: str = "63"  # as written in the header ("NaN" when unknown)
    sex: str = "Male"  # as written ("Unknown" when unknown)
    lead_names: tuple = tuple(CANONICAL)
    record_tail: str = ""  # text after the number of samples on the record line (a date in CPSC)
    gain: float = 1000.0
    kind: str = "ok"  # ok, garbled_header, missing_mat
    seed: int = 0


def default_physionet2021_records(copies: int = 1) -> list[Challenge2021Record]:
    """One or more records per source with the header quirks of each (rates, lengths, missing age / sex, unscored
    codes, merged codes), plus a garbled header and a missing .mat. `copies` > 1 adds more ordinary records per
    source (named after the first) so every split gets records."""
    R = Challenge2021Record
    records = [
        R("cpsc_2018", "A0001", "164889003,59118001", seconds=15.0, age="74", record_tail=" 05-Feb-2020 11:39:16", seed=1),
        R("cpsc_2018_extra", "Q0001", "164884008,17338001", seconds=8.0, age="NaN", sex="Unknown", seed=2),
        R("st_petersburg_incart", "I0001", "427172004", fs=257.0, seconds=12.0, age="65", seed=3),
        R("ptb", "S0001", "426783006", fs=1000.0, seconds=12.0, age="NaN", sex="Female", seed=4,
          lead_names=("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")),
        R("ptb-xl", "HR00001", "426783006,39732003", age="56", sex="Female", seed=5),
        R("georgia", "E00001", "713427006,164889003", age="80", seed=6),
        R("georgia", "E00002", "251199001", age="47", sex="Female", seed=7),  # only an unscored code
        R("chapman_shaoxing", "JS00001", "426177001,164934002", sex="Female", seed=8),
        R("ningbo", "JS10647", "426783006,284470004", seed=9),
        R("ningbo", "JS10648", "426783006", kind="garbled_header", seed=10),
        R("ningbo", "JS10649", "164889003", kind="missing_mat", seed=11),
    ]
    cycle = ["426783006", "164889003", "426177001,164934002", "59118001", "164890007", "426783006,39732003"]
    for copy in range(1, copies):
        for index, base in enumerate([r for r in records[:9]]):
            match = re.match(r"([A-Z]+)(\d+)", base.name)
            number = int(match.group(2)) + 100 * copy
            name = f"{match.group(1)}{number:0{len(match.group(2))}d}"
            records.append(R(base.source, name, cycle[(index + copy) % len(cycle)], fs=base.fs, seconds=base.seconds,
                             age=base.age, sex=base.sex, lead_names=base.lead_names, seed=1000 * copy + index))
    return records


def write_physionet2021(root: Path, records: list[Challenge2021Record] | None = None) -> tuple[Path, dict]:
    """The PhysioNet/CinC 2021 training layout: ``ROOT/training/<source>/g1/<record>.hea`` + ``.mat`` written with
    ``scipy.io.savemat(..., format="4")`` under the key ``val`` (int16, leads x samples), as the challenge stores
    them, and WFDB headers with ``# Age / # Sex / # Dx / # Rx / # Hx / # Sx`` comments."""
    from scipy.io import savemat

    root = Path(root)
    records = default_physionet2021_records() if records is None else records
    expected = {}
    for rec in records:
        directory = root / "training" / rec.source / "g1"
        directory.mkdir(parents=True, exist_ok=True)
        n = int(round(rec.seconds * rec.fs))
        signal = synthetic_ecg(n, rec.fs, seed=rec.seed)
        digital = np.round(signal * rec.gain).astype(np.int16)
        savemat(str(directory / f"{rec.name}.mat"), {"val": digital}, format="4")
        lines = [f"{rec.name} 12 {rec.fs:g} {n}{rec.record_tail}"]
        for lead, name in enumerate(rec.lead_names):
            values = digital[lead].astype(np.int64)
            checksum = int(values.sum()) % 65536
            checksum = checksum - 65536 if checksum >= 32768 else checksum
            lines.append(f"{rec.name}.mat 16+24 {rec.gain:g}/mV 16 0 {int(values[0])} {checksum} 0 {name}")
        lines += [f"# Age: {rec.age}", f"# Sex: {rec.sex}", f"# Dx: {rec.dx}", "# Rx: Unknown", "# Hx: Unknown", "# Sx: Unknown"]
        (directory / f"{rec.name}.hea").write_text("\n".join(lines) + "\n")
        if rec.kind == "garbled_header":
            _garble_header(directory / f"{rec.name}.hea")
        elif rec.kind == "missing_mat":
            (directory / f"{rec.name}.mat").unlink()
        expected[rec.name] = {"record": rec, "signal": signal, "path": directory / rec.name}
    return root, expected
