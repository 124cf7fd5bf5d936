"""MIMIC-IV-ECG v1.0 (PhysioNet, credentialed): ECG-report pairs for pretraining.

Expected layout (the PhysioNet release, unzipped)::

    ROOT/record_list.csv            subject_id, study_id, file_name, ecg_time, path
    ROOT/machine_measurements.csv   subject_id, study_id, cart_id, ecg_time, report_0 .. report_17, ...
    ROOT/files/p1000/p10000032/s40689238/40689238.{hea,dat}

Headers store the leads as ``I, II, III, aVR, aVF, aVL, V1..V6`` (aVF before aVL) at 500 Hz, gain
200/mV; rows are reordered by name into ``I, II, III, aVR, aVL, aVF, V1..V6``. The report is the
non-empty ``report_0 .. report_17`` cells (stripped), joined with single spaces, in column order (the
pretraining text of D-BETA / fairseq-signals). Records without any report text are skipped
(``empty_report``), as are records with NaN samples or a flat lead (about 1.5 % of MIMIC-IV-ECG;
``nan_policy`` / ``flat_lead_policy`` change that).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

from datasets import Features, Value

from ._common import check_root, finish, path_inside_root, read_csv_checked, record_file_states
from .build import BuildPlan, RecordSource, file_signature
from .features import ecg_feature, make_info
from .processing import SignalOptions, prepare_ecg, read_wfdb_record
from .splits import group_split, integer_id, ordered_split_names, read_split_files
from .summary import DUPLICATE_RECORD, EMPTY_REPORT, NOT_IN_SPLIT_FILES, ShardTally

logger = logging.getLogger(__name__)

__all__ = ["load_mimic_iv_ecg", "build_mimic_iv_ecg_plan", "MIMIC_LEAD_NAMES", "join_report"]

DATASET = "mimic-iv-ecg"
TITLE = "MIMIC-IV-ECG"
MIMIC_LEAD_NAMES = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
LAYOUT_HINT = (
    "Pass the MIMIC-IV-ECG release folder (e.g. .../mimic-iv-ecg/1.0) that contains record_list.csv, "
    "machine_measurements.csv and files/p1000/p10000032/s40689238/40689238.hea."
)
REPORT_COLUMN = re.compile(r"^report_(\d+)$")
NUM_REPORT_COLUMNS = 18  # report_0 .. report_17 in the release
SPLIT_ID_COLUMNS = ("study_id", "file_name", "ecg_id", "record_id")
CITATION = (
    "Gow, B., Pollard, T., Nathanson, L. A., et al. (2023). MIMIC-IV-ECG: Diagnostic Electrocardiogram "
    "Matched Subset (version 1.0). PhysioNet. https://doi.org/10.13026/4nqg-sb35"
)


_STATEMENT_END_MARKS = (".", ";", "!", "?")


def join_report(parts, end_statements: bool = False) -> str:
    """Join report cells: drop empty / NaN cells, strip each, separate with single spaces.

    `end_statements=True` ends every cell that has no final punctuation with a period ("Sinus rhythm" ->
    "Sinus rhythm."), so that the cells stay separable as statements (`pretraining_collator.split_statements`, used by
    the collator's `statement_dropout`). Off by default: the cells joined with single spaces (the preprocessing
    that wrote the official pretraining texts is not released).

    >>> join_report(["Sinus rhythm", "", "Normal ECG"])
    'Sinus rhythm Normal ECG'
    >>> join_report(["Sinus rhythm", "Normal ECG."], end_statements=True)
    'Sinus rhythm. Normal ECG.'
    """
    texts = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, float) and part != part:  # NaN
            continue
        text = str(part).strip()
        if text:
            if end_statements and not text.endswith(_STATEMENT_END_MARKS):
                text += "."
            texts.append(text)
    return " ".join(texts)


class MimicSource(RecordSource):
    dataset = DATASET
    class_names = None

    def __init__(self, root: str, options: SignalOptions):
        self.root = root
        self.options = options
        self.features = Features(
            {
                "study_id": Value("int64"),
                "subject_id": Value("int64"),
                "ecg": ecg_feature(options.num_samples),
                "report": Value("string"),
            }
        )
        self.info = make_info(
            features=self.features,
            dataset=DATASET,
            title="MIMIC-IV-ECG v1.0: 12-lead ECGs with their machine reports (report_0..report_17 joined).",
            metadata={"source_lead_order": MIMIC_LEAD_NAMES},
            citation=CITATION,
            homepage="https://physionet.org/content/mimic-iv-ecg/1.0/",
            license="PhysioNet Credentialed Health Data License 1.5.0",
        )

    def read(self, task: Mapping[str, Any]):
        signal, fs, lead_names, units = read_wfdb_record(os.path.join(self.root, task["path"]), self.root)
        ecg, flags, stats = prepare_ecg(signal, fs, lead_names, units, self.options)
        row = {"study_id": task["id"], "subject_id": task["subject_id"], "ecg": ecg, "report": task["report"]}
        return row, flags, stats


def build_mimic_iv_ecg_plan(
    root,
    *,
    validation_fraction: float = 0.01,
    seed: int = 0,
    split_files=None,
    split_id_column: str | None = None,
    signal_options: SignalOptions | None = None,
    allow_missing_report_columns: bool = False,
    end_statements: bool = False,
) -> BuildPlan:
    """Read the CSVs of a MIMIC-IV-ECG root and plan the build (no signal is read here).

    `end_statements`: see `join_report` (a period ends each report cell, so statements stay separable).

    A `machine_measurements.csv` without all of ``report_0 .. report_17`` is an error (every report would be
    silently shortened) unless `allow_missing_report_columns=True`, which the build summary records. A
    ``record_list.csv`` path leading outside the root is counted as ``path_outside_root``.
    """
    root_path = check_root(root, TITLE, ["record_list.csv", "machine_measurements.csv"], LAYOUT_HINT)
    options = signal_options or SignalOptions(flat_lead_policy="skip")
    record_csv = root_path / "record_list.csv"
    measurements_csv = root_path / "machine_measurements.csv"
    records = read_csv_checked(
        record_csv, ["subject_id", "study_id", "path"], f"{TITLE} record list", dtype=str, keep_default_na=False
    )
    report_columns, missing_report_columns = _report_columns(measurements_csv, allow_missing_report_columns)
    reports = _read_reports(measurements_csv, report_columns, end_statements)
    sf = None
    if split_files is not None:
        sf = read_split_files(split_files, SPLIT_ID_COLUMNS, integer_id, id_column=split_id_column)
    planning = ShardTally()
    entries, seen = _record_entries(root_path, records, record_csv, planning)
    if sf is not None:
        split_of, split_names, not_found = sf.split_of, ordered_split_names(sf.ids), len(set(sf.split_of) - seen)
    else:
        split_of = group_split({study: subject for study, subject, _ in entries}, validation_fraction, seed)
        split_names, not_found = ["train", "validation"], 0
    splits = _plan_splits(root_path, entries, reports, split_of, split_names, planning)
    user_options = {
        "validation_fraction": validation_fraction if sf is None else None,
        "seed": seed if sf is None else None,
        "split_files": sf.sources if sf is not None else None,
        "signal": options.to_dict(),
        "allow_missing_report_columns": allow_missing_report_columns,
        "missing_report_columns": missing_report_columns,
        "end_statements": end_statements,
    }
    return BuildPlan(
        source=MimicSource(os.fspath(root_path), options),
        root=os.fspath(root_path),
        splits=splits,
        options=user_options,
        fingerprint_inputs={
            "files": [file_signature(record_csv, root_path), file_signature(measurements_csv, root_path)],
            "report_columns": report_columns,
        },
        planning=planning,
        split_file_ids_not_found=not_found,
        warnings=_plan_warnings(not_found, missing_report_columns, report_columns),
    )


def _report_columns(measurements_csv, allow_missing: bool) -> tuple[list[str], list[str]]:
    """The ``report_k`` columns present (in k order) and the missing ones of report_0 .. report_17."""
    header = read_csv_checked(measurements_csv, ["study_id", "report_0"], f"{TITLE} machine measurements", nrows=0)
    present = sorted(
        (c for c in header.columns if REPORT_COLUMN.match(c)), key=lambda c: int(REPORT_COLUMN.match(c).group(1))
    )
    return present, _check_report_columns(present, measurements_csv, allow_missing)


def _read_reports(measurements_csv, report_columns: list[str], end_statements: bool) -> dict[int, str]:
    """``{study_id: joined report}`` (the first row of a study wins; rows with a non-numeric id are ignored)."""
    measurements = read_csv_checked(
        measurements_csv,
        ["study_id", *report_columns],
        f"{TITLE} machine measurements",
        usecols=["study_id", *report_columns],
        dtype=str,
        keep_default_na=False,
    )
    reports: dict[int, str] = {}
    for study_id, *parts in zip(measurements["study_id"].tolist(), *(measurements[c].tolist() for c in report_columns)):
        try:
            reports.setdefault(integer_id(study_id), join_report(parts, end_statements))
        except ValueError:
            continue
    return reports


def _record_entries(root_path, records, record_csv, planning: ShardTally) -> tuple[list[tuple[int, int, str]], set[int]]:
    """``(study, subject, path)`` of every usable row of record_list.csv (`records`), and every study id listed;
    duplicates and paths leading outside the root are counted in `planning`."""
    seen: set[int] = set()
    entries = []
    for subject_id, study_id, path in zip(records["subject_id"], records["study_id"], records["path"]):
        try:
            study = integer_id(study_id)
            subject = integer_id(subject_id)
        except ValueError:
            raise ValueError(
                f"{TITLE}: {os.fspath(record_csv)!r} has a non-numeric subject_id/study_id ({subject_id!r}, "
                f"{study_id!r})"
            ) from None
        if study in seen:
            planning.skip(study, DUPLICATE_RECORD, f"study_id listed twice in record_list.csv ({path})")
            continue
        seen.add(study)
        path = path.strip()
        if path_inside_root(root_path, path, study, planning, "record_list.csv path"):
            entries.append((study, subject, path))
    return entries, seen


def _plan_splits(root_path, entries, reports, split_of, split_names, planning: ShardTally) -> dict[str, list]:
    """The tasks of each split, sorted by study id; records outside the splits or without a report are counted."""
    splits: dict[str, list] = {name: [] for name in split_names}
    for study, subject, path in entries:
        split = split_of.get(study)
        if split is None:
            planning.skip(study, NOT_IN_SPLIT_FILES)
            continue
        report = reports.get(study, "")
        if not report:
            detail = "all report_* cells empty" if study in reports else "no row in machine_measurements.csv"
            planning.skip(study, EMPTY_REPORT, detail)
            continue
        files = record_file_states(root_path, path, (".hea", ".dat"))
        splits[split].append({"id": study, "subject_id": subject, "path": path, "report": report, "files": files})
    for tasks in splits.values():
        tasks.sort(key=lambda t: t["id"])
    return splits


def _plan_warnings(not_found: int, missing_report_columns: list[str], report_columns: list[str]) -> list[str]:
    warnings = []
    if not_found:
        warnings.append(f"{not_found} study ids of the split files are not in record_list.csv")
    if missing_report_columns:
        warnings.append(
            f"machine_measurements.csv lacks {', '.join(missing_report_columns)}: reports are joined from the "
            f"{len(report_columns)} columns present (allow_missing_report_columns=True)"
        )
    return warnings


def _check_report_columns(report_columns: list[str], measurements_csv, allowed: bool) -> list[str]:
    """The missing ``report_k`` columns (k = 0..17); an error listing them unless `allowed`."""
    missing = [f"report_{k}" for k in range(NUM_REPORT_COLUMNS) if f"report_{k}" not in report_columns]
    if missing and not allowed:
        raise ValueError(
            f"{TITLE}: {os.fspath(measurements_csv)!r} lacks the report column(s) {', '.join(missing)}; the release "
            f"has report_0 .. report_{NUM_REPORT_COLUMNS - 1} and a report is all of them joined, so every report "
            "would be cut short. Use the full CSV, or, for a deliberately trimmed one, pass "
            "allow_missing_report_columns=True (command line: --allow-missing-report-columns); the build summary "
            "records it."
        )
    return missing


def load_mimic_iv_ecg(
    root,
    num_proc: int | None = None,
    cache_dir=None,
    validation_fraction: float = 0.01,
    seed: int = 0,
    *,
    split_files=None,
    split_id_column: str | None = None,
    nan_policy: str = "skip",
    flat_lead_policy: str = "skip",
    flat_tolerance: float = 1e-6,
    resample: bool = True,
    min_num_samples: int | None = 5000,
    shard_size: int | None = None,
    force_rebuild: bool = False,
    return_summary: bool = False,
    allow_missing_report_columns: bool = False,
    end_statements: bool = False,
):
    """Build (or load from cache) MIMIC-IV-ECG as a `DatasetDict` with ``train`` and ``validation``.

    Columns: ``study_id`` (int64), ``subject_id`` (int64), ``ecg`` ((12, 5000) float16 mV, canonical lead
    order, 500 Hz), ``report`` (the joined machine report).

    Args:
        root: the release folder holding ``record_list.csv``, ``machine_measurements.csv`` and ``files/``.
        num_proc: worker processes for reading (one shard of ``shard_size`` records per task).
        cache_dir: where the Arrow shards go (default ``$HF_DATASETS_CACHE/dbeta_hf``).
        validation_fraction: fraction of *patients* (``subject_id``) in the validation split. The split is
            deterministic (a seeded hash of the subject id), patient-disjoint, and stable when records are
            added (a patient does not change side).
        seed: seed of that split.
        split_files: published per-split id lists instead (``{split: csv}`` or a directory of
            ``*_train.csv``/``*_val.csv``/``*_test.csv``) with a ``study_id`` column.
        split_id_column: the id column of the split files when it is not ``study_id``.
        nan_policy: ``"skip"`` (default) records with NaN samples, or repair them (``"zero"``, ``"interpolate"``).
        flat_lead_policy: ``"skip"`` (default) records with a flat lead, or ``"keep"`` them.
        flat_tolerance: peak-to-peak (mV) at or below which a lead is flat.
        resample: resample records that are not at 500 Hz (none in the release); False skips them.
        min_num_samples: minimum length at 500 Hz; shorter records are skipped (``None``: zero-pad them).
        shard_size: records per shard (default 1000).
        force_rebuild: ignore a cached build.
        return_summary: also return the `BuildSummary`.
        allow_missing_report_columns: accept a ``machine_measurements.csv`` that lacks some of ``report_0 ..
            report_17`` (an error otherwise); the missing columns are listed in the summary's options and warnings.
        end_statements: end every report cell with a period (`join_report`), so that the pretraining collator's
            `statement_dropout` can split reports into statements (off: cells joined with single spaces).

    Returns:
        ``DatasetDict`` or ``(DatasetDict, BuildSummary)``.
    """
    options = SignalOptions(
        min_num_samples=min_num_samples,
        resample=resample,
        nan_policy=nan_policy,
        flat_lead_policy=flat_lead_policy,
        flat_tolerance=flat_tolerance,
    )
    plan = build_mimic_iv_ecg_plan(
        root,
        validation_fraction=validation_fraction,
        seed=seed,
        split_files=split_files,
        split_id_column=split_id_column,
        signal_options=options,
        allow_missing_report_columns=allow_missing_report_columns,
        end_statements=end_statements,
    )
    return finish(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size,
        force_rebuild=force_rebuild,
        return_summary=return_summary,
    )
