"""MIMIC-IV-ECG: a machine_measurements.csv without all report_0..report_17 columns is an error unless allowed."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import data_fixtures as fx
from dbeta_hf.data import load_mimic_iv_ecg
from dbeta_hf.data.__main__ import main as cli_main


@pytest.fixture(scope="module")
def trimmed_root(tmp_path_factory):
    """Two OK records whose report spans report_0, report_2 and report_17; report_2 and report_9 are dropped."""
    records = [
        fx.MimicRecord(10000032, 40000000, report_cells={0: "Sinus rhythm", 2: "Normal ECG", 17: "Confirmed"}),
        fx.MimicRecord(10000033, 40000001, report_cells={0: "Atrial fibrillation", 17: "Unconfirmed"}, seed=1),
    ]
    root, _ = fx.write_mimic_iv_ecg(tmp_path_factory.mktemp("mimic-trimmed") / "1.0", records)
    csv = root / "machine_measurements.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["report_2", "report_9"]).to_csv(csv, index=False)
    return root


def test_missing_report_columns_are_an_error_listing_them(trimmed_root, tmp_path):
    with pytest.raises(ValueError, match=r"lacks the report column\(s\) report_2, report_9;.*allow_missing_report_columns"):
        load_mimic_iv_ecg(trimmed_root, cache_dir=tmp_path)


def test_opt_out_builds_and_records_it_in_the_summary(trimmed_root, tmp_path):
    dd, summary = load_mimic_iv_ecg(trimmed_root, cache_dir=tmp_path, validation_fraction=0.0,
                                    allow_missing_report_columns=True, return_summary=True)
    reports = dict(zip(dd["train"]["study_id"], dd["train"]["report"]))
    assert reports == {40000000: "Sinus rhythm Confirmed", 40000001: "Atrial fibrillation Unconfirmed"}
    assert summary.options["allow_missing_report_columns"] is True
    assert summary.options["missing_report_columns"] == ["report_2", "report_9"]
    assert any("lacks report_2, report_9" in warning for warning in summary.warnings)


def test_cli_flag(trimmed_root, tmp_path, capsys):
    out = tmp_path / "mimic"
    args = ["build", "mimic-iv-ecg", str(trimmed_root), "-o", str(out), "--validation-fraction", "0", "-q"]
    assert cli_main(args) == 1
    assert "report_2, report_9" in capsys.readouterr().err
    assert cli_main(args + ["--allow-missing-report-columns"]) == 0
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["options"]["missing_report_columns"] == ["report_2", "report_9"]
    shutil.rmtree(out)


def test_end_statements_keeps_the_report_cells_separable(tmp_path):
    """`end_statements` (`--end-statements`): a period ends every cell that has no final punctuation, so that the
    collator's `statement_dropout` splits MIMIC reports into their cells; off, the cells joined with single spaces."""
    from dbeta_hf.data.mimic_iv_ecg import join_report
    from dbeta_hf.pretraining.collator import split_statements
    from dbeta_hf.text_normalization import normalize_report

    cells = ["Sinus rhythm", None, float("nan"), " Borderline ECG. ", "", "Prolonged QT;", "Confirmed by X"]
    assert join_report(cells) == "Sinus rhythm Borderline ECG. Prolonged QT; Confirmed by X"
    joined = join_report(cells, end_statements=True)
    assert joined == "Sinus rhythm. Borderline ECG. Prolonged QT; Confirmed by X."
    assert split_statements(normalize_report(joined)) == [
        "sinus rhythm.", "borderline ecg.", "prolonged qt;", "confirmed by x."]

    records = [fx.MimicRecord(10000032, 40000000, report_cells={0: "Sinus rhythm", 2: "Normal ECG", 17: "Confirmed"})]
    root, _ = fx.write_mimic_iv_ecg(tmp_path / "mimic" / "1.0", records)
    plain = load_mimic_iv_ecg(root, cache_dir=tmp_path / "cache", validation_fraction=0.0)
    ended, summary = load_mimic_iv_ecg(root, cache_dir=tmp_path / "cache", validation_fraction=0.0,
                                       end_statements=True, return_summary=True)
    assert plain["train"]["report"] == ["Sinus rhythm Normal ECG Confirmed"]
    assert ended["train"]["report"] == ["Sinus rhythm. Normal ECG. Confirmed."]  # another build, not the cached one
    assert summary.options["end_statements"] is True
    out = tmp_path / "cli"
    assert cli_main(["build", "mimic-iv-ecg", str(root), "-o", str(out), "--validation-fraction", "0", "-q",
                     "--end-statements"]) == 0
    assert json.loads((out / "build_summary.json").read_text())["options"]["end_statements"] is True
