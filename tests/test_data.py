"""Dataset builders of dbeta_hf.data on tiny fixtures written in each dataset's real layout (tests/data_fixtures.py)."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Array2D, load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_fixtures, also under --import-mode=importlib
import data_fixtures as fx  # noqa: E402
from dbeta_hf import ecg_signal  # noqa: E402
from dbeta_hf.data import (  # noqa: E402
    SKIP_REASONS,
    BuildSummary,
    dataset_class_names,
    dataset_metadata,
    label_fraction,
    load_build_summary,
    load_chapman_shaoxing_ningbo,
    load_code15_test,
    load_cpsc2018,
    load_mimic_iv_ecg,
    load_ptbxl,
    read_split_files,
    snomed_class_table,
)
from dbeta_hf.data.__main__ import main as cli_main  # noqa: E402
from dbeta_hf.data.ptbxl import ptbxl_labels  # noqa: E402
from dbeta_hf.data.splits import group_split, random_split  # noqa: E402

# float16 keeps ~3 significant digits; WFDB stores 5 uV (MIMIC, gain 200) / 1 uV (gain 1000) steps.
F16_ATOL = 4e-3


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory):
    return fx.write_mimic_iv_ecg(tmp_path_factory.mktemp("mimic") / "mimic-iv-ecg" / "1.0")


@pytest.fixture(scope="module")
def ptbxl_root(tmp_path_factory):
    return fx.write_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptb-xl")


@pytest.fixture(scope="module")
def cpsc_root(tmp_path_factory):
    return fx.write_physionet_challenge(tmp_path_factory.mktemp("cpsc"), fx.default_cpsc_records(), "cpsc2018")


@pytest.fixture(scope="module")
def csn_root(tmp_path_factory):
    return fx.write_physionet_challenge(tmp_path_factory.mktemp("csn"), fx.default_csn_records(), "csn")


@pytest.fixture(scope="module")
def code_root(tmp_path_factory):
    return fx.write_code15_test(tmp_path_factory.mktemp("code") / "data")


class ReadCounter:
    """Wraps ecg_signal.read_wfdb to count how many records are read."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = ecg_signal.read_wfdb

        def counting(path):
            self.calls += 1
            return original(path)

        monkeypatch.setattr(ecg_signal, "read_wfdb", counting)


def _rows(dataset_dict, id_column):
    rows = {}
    for split, ds in dataset_dict.items():
        data = ds.with_format("numpy")[:]
        for i, record_id in enumerate(data[id_column]):
            key = record_id.item() if hasattr(record_id, "item") else record_id
            rows[key] = {"split": split, **{k: data[k][i] for k in ds.column_names}}
    return rows


# ----------------------------------------------------------------------------------------------- MIMIC-IV-ECG
def test_mimic_columns_lead_order_units_reports_and_summary(mimic_root, tmp_path):
    root, expected = mimic_root
    dd, summary = load_mimic_iv_ecg(root, cache_dir=tmp_path / "c", validation_fraction=0.3, return_summary=True)

    assert list(dd) == ["train", "validation"]
    features = dd["train"].features
    assert list(features) == ["study_id", "subject_id", "ecg", "report"]
    assert features["ecg"] == Array2D(shape=(12, 5000), dtype="float16")
    assert str(dd["train"].data.schema.field("ecg").type.storage_type) == "list<item: list<item: halffloat>>"

    rows = _rows(dd, "study_id")
    ok = {s for s, e in expected.items() if e["kind"] in ("ok", "fs250")}
    assert set(rows) == ok
    for study, row in rows.items():
        exp = expected[study]
        assert row["subject_id"] == exp["subject_id"]
        assert row["report"] == exp["report"]
        if exp["kind"] == "ok":
            # canonical order in mV although the file stores aVF before aVL
            np.testing.assert_allclose(row["ecg"], exp["signal"], atol=F16_ATOL)
            assert not np.allclose(row["ecg"][4], row["ecg"][5], atol=0.05)
        else:  # 250 Hz record upsampled to 500 Hz
            np.testing.assert_allclose(row["ecg"][:, 20:-20:2], exp["signal"][:, 10:-10], atol=0.05)
    study0 = 40000000
    assert rows[study0]["report"] == "Sinus rhythm 0 Possible right atrial abnormality Borderline ECG"

    assert summary.records_found == len(expected)
    assert summary.records_loaded == len(ok)
    assert summary.skipped == {
        "empty_report": 2,
        "missing_file": 1,
        "unreadable_header": 2,
        "unreadable_signal": 1,
        "wrong_length": 1,
        "nan": 1,
        "flat_lead": 1,
    }
    assert summary.flagged == {"resampled": 1}
    assert summary.lead_order_check == {"aVR,aVL,aVF": len(ok)}
    assert 0.5 < summary.amplitude_mv["p50"] < 3.0
    assert summary.warnings == []
    summary.check()
    assert sum(summary.loaded_per_split.values()) == len(ok)
    assert "41000004: leads aVF" in summary.skipped_examples["nan"]
    saved = load_build_summary(Path(tmp_path / "c" / "mimic-iv-ecg" / summary.fingerprint))
    assert saved.skipped == summary.skipped and saved.records_found == summary.records_found


def test_mimic_patient_split_is_deterministic_and_disjoint(mimic_root, tmp_path):
    root, expected = mimic_root
    first = load_mimic_iv_ecg(root, cache_dir=tmp_path / "a", validation_fraction=0.5, seed=3)
    second = load_mimic_iv_ecg(root, cache_dir=tmp_path / "b", validation_fraction=0.5, seed=3)
    subjects = {split: set(first[split]["subject_id"]) for split in first}
    assert subjects["train"] and subjects["validation"]
    assert not subjects["train"] & subjects["validation"]
    for split in first:
        assert first[split]["study_id"] == second[split]["study_id"]
    # a patient never changes side when other patients are added
    groups = {f"r{i}": f"p{i // 2}" for i in range(40)}
    small = group_split(groups, 0.25, seed=1)
    groups.update({f"x{i}": f"q{i}" for i in range(10)})
    large = group_split(groups, 0.25, seed=1)
    moved = [r for r in small if small[r] != large[r]]
    assert len(moved) <= 6


def test_mimic_second_build_reuses_cache_and_options_change_it(mimic_root, tmp_path, monkeypatch):
    root, expected = mimic_root
    counter = ReadCounter(monkeypatch)
    dd1, s1 = load_mimic_iv_ecg(root, cache_dir=tmp_path, return_summary=True)
    first_reads = counter.calls
    assert first_reads == len(expected) - 2  # the two empty-report records are never read
    dd2, s2 = load_mimic_iv_ecg(root, cache_dir=tmp_path, return_summary=True)
    assert counter.calls == first_reads  # nothing read again
    assert s2.from_cache and not s1.from_cache
    assert s2.skipped == s1.skipped and s2.fingerprint == s1.fingerprint
    assert dd2["train"]["study_id"] == dd1["train"]["study_id"]
    assert all(Path(f["filename"]).is_relative_to(tmp_path) for f in dd2["train"].cache_files)  # memory-mapped

    # other options -> another build; repaired records are counted as flags
    dd3, s3 = load_mimic_iv_ecg(
        root, cache_dir=tmp_path, nan_policy="zero", flat_lead_policy="keep", resample=False, return_summary=True
    )
    assert counter.calls > first_reads
    assert s3.fingerprint != s1.fingerprint
    assert s3.flagged == {"flat_lead_kept": 1, "nan_zeroed": 1}
    assert s3.skipped["wrong_sampling_rate"] == 1 and "nan" not in s3.skipped and "flat_lead" not in s3.skipped
    row = _rows(dd3, "study_id")[41000004]
    assert np.all(row["ecg"][5, 100:200] == 0)  # the NaN gap of aVF was zeroed (aVF is row 5 canonically)


def test_mimic_errors_are_clear(tmp_path, mimic_root):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mimic_iv_ecg(tmp_path / "nowhere", cache_dir=tmp_path)
    root, _ = mimic_root
    with pytest.raises(FileNotFoundError, match="pass that folder as the root"):
        load_mimic_iv_ecg(root.parent.parent, cache_dir=tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "record_list.csv").write_text("subject_id,study_id,file_name\n1,2,2\n")
    (broken / "machine_measurements.csv").write_text("subject_id,study_id,report_0\n1,2,x\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['path'\]"):
        load_mimic_iv_ecg(broken, cache_dir=tmp_path)


def test_mimic_split_files(mimic_root, tmp_path):
    root, expected = mimic_root
    (tmp_path / "pre_train.csv").write_text("study_id,subject_id\n40000000,1\n40000001,1\n40000002,1\n41000004,1\n")
    (tmp_path / "pre_val.csv").write_text("study_id\n40000003\n99999999\n")
    (tmp_path / "pre_test.csv").write_text("study_id\n40000004\n")
    dd, summary = load_mimic_iv_ecg(root, cache_dir=tmp_path / "c", split_files=tmp_path, return_summary=True)
    assert list(dd) == ["train", "validation", "test"]
    assert dd["train"]["study_id"] == [40000000, 40000001, 40000002]
    assert dd["validation"]["study_id"] == [40000003] and dd["test"]["study_id"] == [40000004]
    assert summary.skipped["nan"] == 1
    assert summary.skipped["not_in_split_files"] == len(expected) - 6
    assert summary.split_file_ids_not_found == 1
    summary.check()


# ----------------------------------------------------------------------------------------------- PTB-XL
def _expected_ptbxl(codes, task):
    statements = {
        code: {"diagnostic": d == 1.0, "form": f == 1.0, "rhythm": r == 1.0, "class": c, "subclass": sc}
        for code, (_, d, f, r, c, sc) in fx.SCP_STATEMENTS.items()
    }
    return ptbxl_labels(codes, statements, task)


@pytest.mark.parametrize(
    "task,classes",
    [
        ("super", ["CD", "HYP", "MI", "NORM", "STTC"]),
        ("sub", ["AMI", "CLBBB", "IMI", "IRBBB", "LVH", "NORM", "NST_", "STTC"]),
        ("form", ["ABQRS", "LVOLT", "NDT", "NST_", "PVC"]),
        ("rhythm", ["AFIB", "SBRAD", "SR", "STACH"]),
    ],
)
def test_ptbxl_tasks_labels_folds(ptbxl_root, tmp_path, task, classes):
    root, expected = ptbxl_root
    dd, summary = load_ptbxl(root, task=task, cache_dir=tmp_path, return_summary=True)
    assert dataset_class_names(dd) == classes
    assert list(dd) == ["train", "validation", "test"]
    rows = _rows(dd, "ecg_id")
    unlabeled = {i for i, e in expected.items() if not _expected_ptbxl(e["codes"], task)}
    assert set(rows) == set(expected) - unlabeled - {8}  # 8: missing .dat
    for ecg_id, row in rows.items():
        exp = expected[ecg_id]
        assert row["split"] == {9: "validation", 10: "test"}.get(exp["fold"], "train")
        assert row["labels"].dtype == np.float32
        assert {c for c, v in zip(classes, row["labels"]) if v == 1} == _expected_ptbxl(exp["codes"], task)
        assert row["report"] == exp["report"]
    expected_skips = {"no_label": len(unlabeled)} if unlabeled else {}
    if 8 not in unlabeled:
        expected_skips["missing_file"] = 1
    assert summary.skipped == expected_skips
    summary.check()


def test_ptbxl_label_rules_signal_and_resampled_100hz(ptbxl_root, tmp_path):
    root, expected = ptbxl_root
    rows = _rows(load_ptbxl(root, task="super", cache_dir=tmp_path), "ecg_id")
    classes = ["CD", "HYP", "MI", "NORM", "STTC"]
    as_set = lambda r: {c for c, v in zip(classes, r["labels"]) if v == 1}  # noqa: E731
    assert as_set(rows[2]) == {"MI"}  # IMI 80 + ASMI 15: both MI, any likelihood
    assert as_set(rows[3]) == {"HYP", "STTC"}
    assert as_set(rows[11]) == {"HYP"}  # LVH with likelihood 35
    np.testing.assert_allclose(rows[1]["ecg"], expected[1]["signal"], atol=F16_ATOL)  # AVR/AVL/AVF upper case
    # a threshold only filters diagnostic statements
    strict = _rows(load_ptbxl(root, task="super", cache_dir=tmp_path, min_likelihood=50), "ecg_id")
    assert 11 not in strict and as_set(strict[2]) == {"MI"}
    rhythm = _rows(load_ptbxl(root, task="rhythm", cache_dir=tmp_path, min_likelihood=50), "ecg_id")
    assert rhythm[1]["labels"].tolist() == [0, 0, 1, 0]  # SR (likelihood 0) is kept

    dd, summary = load_ptbxl(root, task="super", sampling_rate=100, cache_dir=tmp_path, return_summary=True)
    assert summary.flagged["resampled"] == summary.records_loaded
    low = _rows(dd, "ecg_id")
    np.testing.assert_allclose(low[1]["ecg"][:, 50:-50], expected[1]["signal"][:, 50:-50], atol=0.08)
    assert dataset_metadata(dd)["source_sampling_rate"] == 100


def test_ptbxl_split_files_and_class_names_survive_save_load(ptbxl_root, tmp_path):
    root, expected = ptbxl_root
    split_dir = tmp_path / "super_class"
    split_dir.mkdir()
    header = "ecg_id,patient_id,strat_fold,filename_lr,filename_hr,CD,HYP,MI,NORM,STTC\n"
    (split_dir / "ptbxl_super_class_train.csv").write_text(header + "1,1,3,a,b,1,0,0,0,0\n2,2,1,a,b,0,0,1,0,0\n3,3,2,a,b,0,1,0,0,1\n")
    (split_dir / "ptbxl_super_class_val.csv").write_text(header + "4,1,5,a,b,1,0,0,0,0\n")
    (split_dir / "ptbxl_super_class_test.csv").write_text(header + "5,1,9,a,b,0,0,0,0,1\n6,1,10,a,b,0,0,0,1,0\n")
    dd, summary = load_ptbxl(root, task="super", split_files=split_dir, cache_dir=tmp_path, return_summary=True)
    assert dd["train"]["ecg_id"] == [1, 2, 3] and dd["validation"]["ecg_id"] == [4]
    assert dd["test"]["ecg_id"] == [5, 6]
    assert summary.skipped["not_in_split_files"] == len(expected) - 6
    # labels taken from the split files' columns instead of scp_codes
    mixed = load_ptbxl(root, task="super", split_files=split_dir, use_split_file_labels=True, cache_dir=tmp_path)
    assert mixed["train"]["labels"][0] == [1.0, 0, 0, 0, 0]

    dd["train"].save_to_disk(tmp_path / "saved")
    reloaded = load_from_disk(tmp_path / "saved")
    assert dataset_class_names(reloaded) == ["CD", "HYP", "MI", "NORM", "STTC"]
    derived = reloaded.select([0]).map(lambda r: r).with_format("torch")
    assert dataset_class_names(derived) == ["CD", "HYP", "MI", "NORM", "STTC"]
    with pytest.raises(ValueError, match="two splits"):
        read_split_files({"train": [1, 2], "test": [2]}, ["ecg_id"], int)


# ----------------------------------------------------------------------------------------------- CPSC2018 / CSN
def test_snomed_table_resource():
    cpsc = snomed_class_table("cpsc2018")
    assert list(cpsc) == ["AFIB", "VPC", "NORM", "1AVB", "CRBBB", "STE", "PAC", "CLBBB", "STD"]
    assert cpsc["AFIB"] == ["164889003"] and cpsc["VPC"] == ["164884008"]
    csn = snomed_class_table("csn")
    assert len(csn) == 38 and csn["AF"] == ["164890007"] and csn["AFIB"] == ["164889003"]
    assert "SB" not in csn and snomed_class_table("csn", ["SB"]) == {"SB": ["426177001"]}
    assert len(snomed_class_table("csn", "all")) > 38
    for name in ("cpsc2018", "csn"):
        codes = [c for cs in snomed_class_table(name, "all").values() for c in cs]
        assert len(codes) == len(set(codes))
    with pytest.raises(ValueError, match="unknown csn classes"):
        snomed_class_table("csn", ["NOPE"])


def test_cpsc2018_labels_lengths_and_corrupt_records(cpsc_root, tmp_path):
    root, expected = cpsc_root
    dd, summary = load_cpsc2018(root, cache_dir=tmp_path, return_summary=True)
    classes = dataset_class_names(dd)
    table = snomed_class_table("cpsc2018")
    rows = _rows(dd, "record_id")
    assert set(rows) == {f"A{i:04d}" for i in range(1, 9)}
    for name, row in rows.items():
        codes = set(expected[name]["dx"].split(","))
        assert {c for c, v in zip(classes, row["labels"]) if v == 1} == {c for c in classes if set(table[c]) & codes}
    np.testing.assert_allclose(rows["A0001"]["ecg"], expected["A0001"]["signal"][:, :5000], atol=F16_ATOL)  # 15 s -> first 10 s
    np.testing.assert_allclose(rows["A0004"]["ecg"][:, :3000], expected["A0004"]["signal"], atol=F16_ATOL)  # 6 s
    assert np.all(rows["A0004"]["ecg"][:, 3000:] == 0)
    assert summary.skipped == {"no_label": 2, "missing_file": 1, "unreadable_header": 1}
    assert summary.flagged == {"cropped": 1, "padded": 1}
    assert sum(summary.class_positives["train"].values()) + sum(summary.class_positives["test"].values()) + sum(
        summary.class_positives["validation"].values()
    ) == sum(int(r["labels"].sum()) for r in rows.values())
    summary.check()

    strict, s2 = load_cpsc2018(root, cache_dir=tmp_path, min_num_samples=5000, return_summary=True)
    assert s2.skipped["wrong_length"] == 1 and "A0004" not in _rows(strict, "record_id")

    split_dir = tmp_path / "icbeb"
    split_dir.mkdir()
    head = "patient_id,ecg_id,filename,validation,age,sex,scp_codes,AFIB,VPC,NORM,1AVB,CRBBB,STE,PAC,CLBBB,STD\n"
    (split_dir / "icbeb_train.csv").write_text(head + "1,5,A0001,False,74,0,{},0,0,0,0,1,0,0,0,0\n2,9,A0003,False,1,1,{},1,0,0,0,1,0,0,0,0\n")
    (split_dir / "icbeb_val.csv").write_text(head + "3,4,A0005,False,1,1,{},0,1,0,0,0,0,0,0,0\n")
    (split_dir / "icbeb_test.csv").write_text(head + "4,1,A0002,False,1,1,{},0,0,1,0,0,0,0,0,0\n5,2,A9999,False,1,1,{},0,0,1,0,0,0,0,0,0\n")
    dd, summary = load_cpsc2018(root, split_files=split_dir, cache_dir=tmp_path, return_summary=True)
    assert dd["train"]["record_id"] == ["A0001", "A0003"] and dd["test"]["record_id"] == ["A0002"]
    assert summary.split_file_ids_not_found == 1


def test_csn_mapping_split_file_paths_and_split_file_labels(csn_root, tmp_path):
    root, expected = csn_root
    dd, summary = load_chapman_shaoxing_ningbo(root, cache_dir=tmp_path, return_summary=True)
    classes = dataset_class_names(dd)
    assert len(classes) == 38
    rows = _rows(dd, "record_id")
    labelled = lambda r: {c for c, v in zip(classes, r["labels"]) if v == 1}  # noqa: E731
    assert labelled(rows["JS00001"]) == {"AFIB", "RBBB", "TWC"}
    assert labelled(rows["JS00002"]) == {"AF"}  # atrial flutter; SB is not a benchmark class
    assert labelled(rows["JS00004"]) == {"ST", "STTC"}
    assert summary.skipped == {"no_label": 1, "unreadable_header": 1}
    assert summary.flagged == {"unknown_codes": 2}
    with_sb = load_chapman_shaoxing_ningbo(root, classes=["SB", "AFIB"], cache_dir=tmp_path)
    assert sorted(_rows(with_sb, "record_id")) == ["JS00001", "JS00002", "JS00005"]

    merl = "ecg_path,age,diagnose,AF,AFIB,ST,STTC\n"
    (tmp_path / "chapman_train.csv").write_text(
        merl + "/chapman/WFDBRecords/00/000/JS00001.mat,12,AFIB,1,1,0,0\n/chapman/WFDBRecords/00/000/JS00004.mat,12,STTC,0,0,1,1\n"
    )
    (tmp_path / "chapman_test.csv").write_text(merl + "/chapman/WFDBRecords/10/106/JS10647.mat,12,1AVB,0,0,0,0\n")
    split_files = {"train": tmp_path / "chapman_train.csv", "test": tmp_path / "chapman_test.csv"}
    dd = load_chapman_shaoxing_ningbo(root, split_files=split_files, cache_dir=tmp_path)
    assert list(dd) == ["train", "test"] and dd["train"]["record_id"] == ["JS00001", "JS00004"]
    merl_labels = load_chapman_shaoxing_ningbo(
        root, classes=["AF", "AFIB", "ST", "STTC"], split_files=split_files, use_split_file_labels=True,
        drop_unlabeled=False, cache_dir=tmp_path,
    )
    assert merl_labels["train"]["labels"] == [[1, 1, 0, 0], [0, 0, 1, 1]]  # MERL's substring-derived columns


# ----------------------------------------------------------------------------------------------- CODE-15 test
def test_code15_test_resampling_lead_order_units_labels(code_root, tmp_path):
    root, expected = code_root
    dd, summary = load_code15_test(root.parent, cache_dir=tmp_path, return_summary=True)  # ROOT/data is found
    assert list(dd) == ["test"] and dd["test"]["record_id"] == list(range(5))
    assert dataset_class_names(dd) == ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
    data = dd["test"].with_format("numpy")[:]
    np.testing.assert_array_equal(data["labels"], expected["labels"])
    for i, canonical in enumerate(expected["signals"]):
        resampled = ecg_signal.resample_signal(canonical, 400, 500)[:, :5000]
        np.testing.assert_allclose(data["ecg"][i], resampled, atol=F16_ATOL)
    assert summary.flagged == {"cropped": 5, "resampled": 5}
    assert summary.lead_order_check == {"aVR,aVL,aVF": 5}
    # a wrong lead order is detected by Goldberger's equations
    wrong = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    _, bad = load_code15_test(root, lead_names=wrong, cache_dir=tmp_path, return_summary=True)
    assert "aVR,aVL,aVF" not in bad.lead_order_check and any("lead" in w for w in bad.warnings)
    subset, sub_summary = load_code15_test(
        root, split_files={"val": [0, 2], "test": [4, 99]}, cache_dir=tmp_path, return_summary=True
    )
    assert subset["validation"]["record_id"] == [0, 2] and subset["test"]["record_id"] == [4]
    assert sub_summary.skipped == {"not_in_split_files": 2} and sub_summary.split_file_ids_not_found == 1
    # wrong units are detected from the amplitude
    _, micro = load_code15_test(root, units="uV", cache_dir=tmp_path, return_summary=True)
    assert micro.amplitude_mv["p50"] < 0.01 and any("units" in w for w in micro.warnings)


# ----------------------------------------------------------------------------------------------- label_fraction, splits
def test_label_fraction_is_deterministic_and_keeps_every_class():
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(0)
    labels = (rng.random((400, 6)) < [0.5, 0.3, 0.1, 0.02, 0.005, 0.0]).astype(np.float32)
    labels[7, 4] = 1  # make sure the rare class has a positive
    ds = Dataset.from_dict({"idx": np.arange(400), "labels": labels})
    one = label_fraction(ds, 0.01, seed=0)
    again = label_fraction(ds, 0.01, seed=0)
    other = label_fraction(ds, 0.01, seed=1)
    assert one["idx"] == again["idx"] and one["idx"] != other["idx"]
    picked = np.asarray(one["labels"])
    present = labels.sum(0) > 0
    assert np.all(picked.sum(0)[present] >= 1)
    assert 4 <= len(one) <= 4 + present.sum()
    assert one["idx"] == sorted(one["idx"])
    ten = label_fraction(ds, 0.1, seed=0)
    assert len(ten) == 40
    assert label_fraction(ds, 1.0) is ds
    dd = label_fraction(DatasetDict(train=ds, test=ds), 0.1, seed=0)
    assert len(dd["train"]) == 40 and len(dd["test"]) == 400
    with pytest.raises(ValueError, match="fraction"):
        label_fraction(ds, 0)


def test_random_split_fractions():
    ids = [f"A{i:04d}" for i in range(100)]
    split = random_split(ids, (0.7, 0.1, 0.2), seed=0)
    assert [list(split.values()).count(s) for s in ("train", "validation", "test")] == [70, 10, 20]
    assert split == random_split(list(reversed(ids)), (0.7, 0.1, 0.2), seed=0)


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_build_resume_summary_and_help(ptbxl_root, tmp_path, monkeypatch, capsys):
    root, expected = ptbxl_root
    out = tmp_path / "ptbxl-super"
    args = ["build", "ptbxl", str(root), "--output", str(out), "--shard-size", "2", "--keep-shards", "-q"]
    counter = ReadCounter(monkeypatch)
    assert cli_main(args) == 0
    first = counter.calls
    dd = load_from_disk(out)
    assert dataset_class_names(dd) == ["CD", "HYP", "MI", "NORM", "STTC"]
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["records_found"] == len(expected) and summary["skipped"] == {"no_label": 1, "missing_file": 1}

    # an interrupted build: remove one finished shard and the saved dataset, run again -> only that shard is read
    shards = sorted((out / ".dbeta_build" / "ptbxl").glob("*/shards/*"))
    assert len(shards) == 5  # 6 train tasks -> 3 shards of 2; validation (2 tasks) 1; test (2) 1
    train_shard = next(s for s in shards if s.name.startswith("train-00001"))
    shutil.rmtree(train_shard)
    for split in ("train", "validation", "test"):
        shutil.rmtree(out / split)
    (out / "dataset_dict.json").unlink()
    assert cli_main(args) == 0
    assert counter.calls == first + 2
    assert load_from_disk(out)["train"]["ecg_id"] == dd["train"]["ecg_id"]

    capsys.readouterr()
    assert cli_main(args) == 0  # nothing to do
    assert "up to date" in capsys.readouterr().out
    assert cli_main(["summary", str(out)]) == 0
    assert "no_label" in capsys.readouterr().out
    assert cli_main(args + ["--task", "rhythm"]) == 1  # other options: refuses to overwrite without --force
    assert "--force" in capsys.readouterr().err
    assert cli_main(["build", "ptbxl", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_help_and_num_proc(cpsc_root, tmp_path, monkeypatch, capsys):
    # `python -m dbeta_hf.data build cpsc2018 --help`, run in this interpreter
    monkeypatch.setattr(sys, "argv", ["python -m dbeta_hf.data", "build", "cpsc2018", "--help"])
    monkeypatch.delitem(sys.modules, "dbeta_hf.data.__main__")  # run it fresh, as `python -m` does
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("dbeta_hf.data", run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--split-files SPLIT=CSV" in text and "A0001.hea" in text and "(default: 1000)" in text
    root, _ = cpsc_root
    out = tmp_path / "cpsc"
    assert cli_main(["build", "cpsc2018", str(root), "-o", str(out), "--num-proc", "2", "--shard-size", "3", "-q"]) == 0
    parallel = load_from_disk(out)
    serial = load_cpsc2018(root, cache_dir=tmp_path / "serial")
    for split in serial:
        assert parallel[split]["record_id"] == serial[split]["record_id"]
        np.testing.assert_array_equal(
            np.asarray(parallel[split].with_format("numpy")["ecg"]), np.asarray(serial[split].with_format("numpy")["ecg"])
        )
    assert not (out / ".dbeta_build").exists()  # shards removed after saving
    assert load_build_summary(out).records_loaded == 8


def test_summary_json_round_trip():
    summary = BuildSummary(dataset="x", root="/r", records_found=3, records_loaded=2, skipped={"nan": 1})
    again = BuildSummary.from_dict(json.loads(summary.to_json()))
    assert again == summary and again.records_skipped == 1
    assert set(again.skipped) <= set(SKIP_REASONS)
    bad = BuildSummary(dataset="x", root="/r", records_found=3, records_loaded=1, skipped={"nan": 1})
    with pytest.raises(AssertionError):
        bad.check()
