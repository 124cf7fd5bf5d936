"""The PhysioNet/CinC 2021 loader, its build command and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from data_fixtures import default_physionet2021_records, write_physionet2021

from dbeta_hf.data import dataset_class_names, dataset_metadata, load_build_summary, load_physionet2021, read_fairseq_manifest
from dbeta_hf.data.physionet2021 import parse_age_sex
from dbeta_hf.data.splits import stratified_split


@pytest.fixture(scope="module")
def challenge2021(tmp_path_factory):
    root, expected = write_physionet2021(tmp_path_factory.mktemp("c21"))
    ds, summary = load_physionet2021(root, cache_dir=tmp_path_factory.mktemp("cache"), return_summary=True)
    return root, expected, ds, summary


def _rows(ds):
    return {r["record_id"]: r for split in ds for r in ds[split].with_format("numpy")}


def test_loader_labels_sources_and_demographics(challenge2021):
    _, expected, ds, summary = challenge2021
    names = dataset_class_names(ds)
    assert len(names) == 26 and names[:6] == ["AF", "AFL", "BBB", "Brady", "CLBBB|LBBB", "CRBBB|RBBB"]
    assert dataset_metadata(ds)["snomed_ct"][5] == "713427006|59118001"
    rows = _rows(ds)
    assert set(rows) == set(expected) - {"JS10648", "JS10649"}

    def classes(record):
        return {names[i] for i, v in enumerate(rows[record]["labels"]) if v > 0.5}

    # 59118001 (RBBB, CPSC) and 713427006 (complete RBBB, Georgia) are one class; 17338001 (VPB) = PVC
    assert classes("A0001") == {"AF", "CRBBB|RBBB"} and classes("E00001") == {"AF", "CRBBB|RBBB"}
    assert classes("Q0001") == {"PVC|VPB"} and classes("I0001") == {"PVC|VPB"}
    assert classes("E00002") == set()  # only an unscored code: kept, all-zero label
    assert classes("JS10647") == {"NSR", "PAC|SVPB"}
    assert rows["Q0001"]["age"] is None or np.isnan(rows["Q0001"]["age"])
    assert rows["Q0001"]["sex"] == "Unknown" and rows["S0001"]["sex"] == "Female" and rows["A0001"]["age"] == 74
    assert {rows[r]["source"] for r in rows} == {
        "cpsc_2018", "cpsc_2018_extra", "st_petersburg_incart", "ptb", "ptb-xl", "georgia", "chapman_shaoxing", "ningbo"}

    assert summary.records_found == 11 and summary.records_loaded == 9
    assert summary.skipped == {"missing_file": 1, "unreadable_header": 1}
    # 257 Hz INCART and 1000 Hz PTB resampled; 15 s CPSC, 12 s INCART and PTB cropped; 8 s CPSC-Extra padded
    assert summary.flagged["resampled"] == 2 and summary.flagged["cropped"] == 3 and summary.flagged["padded"] == 1
    assert summary.flagged["unknown_codes"] == 2
    assert any("2 records carry 2 codes the challenge does not score" in w for w in summary.warnings)
    summary.check()


def test_loader_signals(challenge2021):
    _, expected, ds, _ = challenge2021
    rows = _rows(ds)
    # 500 Hz records are stored as read (1 uV ADC steps, float16)
    np.testing.assert_allclose(rows["HR00001"]["ecg"], expected["HR00001"]["signal"], atol=2e-3)
    # the 8 s record is zero-padded to 10 s
    ecg = rows["Q0001"]["ecg"]
    np.testing.assert_allclose(ecg[:, :4000], expected["Q0001"]["signal"], atol=2e-3)
    assert not ecg[:, 4000:].any()
    # 1000 Hz (PTB, lower-case lead names) and 257 Hz (INCART) are resampled to 500 Hz, first 10 s kept
    for record, rate in (("S0001", 1000), ("I0001", 257)):
        original = expected[record]["signal"]
        t_original = np.arange(original.shape[1]) / rate
        t_stored = np.arange(5000) / 500
        for lead in (0, 1, 7):
            reference = np.interp(t_stored, t_original, original[lead])
            assert np.corrcoef(reference[100:-100], rows[record]["ecg"][lead][100:-100])[0, 1] > 0.97


def test_default_split_is_stratified_and_deterministic(tmp_path):
    root, _ = write_physionet2021(tmp_path / "c21", default_physionet2021_records(copies=4))
    ds = load_physionet2021(root, cache_dir=tmp_path / "cache")
    sizes = {split: len(ds[split]) for split in ds}
    assert sum(sizes.values()) == 9 * 4 and sizes["validation"] >= 3 and sizes["test"] >= 3
    ids = sorted(f"R{i}" for i in range(100))
    strata = {r: ("rare" if i < 10 else "common") for i, r in enumerate(ids)}
    split = stratified_split(ids, strata, (0.8, 0.1, 0.1), seed=0)
    assert split == stratified_split(list(reversed(ids)), strata, (0.8, 0.1, 0.1), seed=0)
    counts = {name: sum(v == name for v in split.values()) for name in ("train", "validation", "test")}
    assert counts == {"train": 80, "validation": 10, "test": 10}
    rare = [split[r] for r in ids[:10]]
    assert rare.count("test") == 1 and rare.count("validation") == 1


def test_sources_and_fairseq_manifest_split(tmp_path):
    root, _ = write_physionet2021(tmp_path / "c21")
    manifests = tmp_path / "manifest"
    manifests.mkdir()
    (manifests / "train.tsv").write_text("/data/out\nptb-xl/HR00001_0.mat\t2500\nptb-xl/HR00001_1.mat\t2500\ngeorgia/E00001_0.mat\t2500\n")
    (manifests / "valid.tsv").write_text("/data/out\ncpsc_2018/A0001_0.mat\t2500\n")
    (manifests / "test.tsv").write_text("/data/out\nningbo/JS10647_0.mat\t2500\nningbo/JS10647_1.mat\t2500\n")
    assert read_fairseq_manifest(manifests / "train.tsv") == ["HR00001", "E00001"]
    ds, summary = load_physionet2021(
        root, split_files=manifests, sources=["cpsc_2018", "georgia", "ptb-xl", "ningbo"], cache_dir=tmp_path / "cache",
        return_summary=True,
    )
    assert {s: sorted(ds[s]["record_id"]) for s in ds} == {
        "train": ["E00001", "HR00001"], "validation": ["A0001"], "test": ["JS10647"]}
    # 4 records of other sources excluded, E00002 and JS10648 / JS10649 are in no manifest
    assert summary.skipped == {"excluded_source": 4, "not_in_split_files": 3}
    summary.check()
    with pytest.raises(ValueError, match="unknown PhysioNet 2021 source"):
        load_physionet2021(root, sources=["incart"], cache_dir=tmp_path / "cache")


def test_build_command(tmp_path):
    from dbeta_hf.data.__main__ import main

    root, _ = write_physionet2021(tmp_path / "c21")
    out = tmp_path / "hf"
    assert main(["build", "physionet2021", str(root), "--output", str(out), "-q", "--split-fractions", "0.5,0.25,0.25"]) == 0
    from datasets import load_from_disk

    ds = load_from_disk(str(out))
    assert sum(len(ds[s]) for s in ds) == 9 and len(ds["test"]) >= 1
    summary = load_build_summary(out)
    assert summary.dataset == "physionet2021" and summary.skipped == {"missing_file": 1, "unreadable_header": 1}


@pytest.mark.parametrize(
    "header, age, sex",
    [
        ("#Age: 74\n#Sex: Male\n", 74.0, "Male"),
        ("# Age: NaN\n# Sex: Unknown\n", None, "Unknown"),
        ("# age: -1\n# sex: f\n", None, "Female"),
        ("# Dx: 426783006\n", None, "Unknown"),
    ],
)
def test_parse_age_sex(header, age, sex):
    assert parse_age_sex(header) == (age, sex)
