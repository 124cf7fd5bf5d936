"""PTB-XL 1.0.x (PhysioNet, CC BY 4.0): the super / sub / form / rhythm (and "all") benchmark tasks.

Expected layout::

    ROOT/ptbxl_database.csv   ecg_id, patient_id, ..., report, scp_codes, ..., strat_fold, filename_lr, filename_hr
    ROOT/scp_statements.csv   (first column, unnamed: the SCP code) description, diagnostic, form, rhythm,
                              diagnostic_class, diagnostic_subclass, ...
    ROOT/records500/00000/00001_hr.{hea,dat}   (and records100/00000/00001_lr.* for sampling_rate=100)

Labels follow the standard benchmark (Strodthoff et al. 2021, "Deep learning for ECG analysis:
benchmarks and insights from PTB-XL", whose label aggregation MERL and D-BETA reuse):

* ``super``: ``diagnostic_class`` of every diagnostic statement of the record (5 classes);
* ``sub``: ``diagnostic_subclass`` of every diagnostic statement (23 classes);
* ``form`` / ``rhythm``: every statement flagged ``form`` / ``rhythm`` (19 / 12 classes);
* ``all``: every statement (71 classes).

The class list of a task comes from ``scp_statements.csv`` (sorted by name, as the benchmark's
``MultiLabelBinarizer``), not from the records. **Likelihood threshold:** the benchmark keeps every code
of ``scp_codes`` whatever its likelihood, and so does the default ``min_likelihood=0``. This matters:
PTB-XL gives every form and rhythm statement a likelihood of 0 (``{'NORM': 100.0, 'SR': 0.0}``), so a
"likelihood > 0" rule would delete ``SR`` from nearly every record and empty the rhythm task. A
``min_likelihood`` above 0 therefore only filters *diagnostic* statements (likelihoods 15/35/50/80/100
are meaningful there; 0 means "not given"). With the default the record counts are the benchmark's
(super 21,388; sub 21,388; form 8,978; rhythm 21,030 records with at least one label).

Records without any label of the task are dropped and counted as ``no_label``. Split: ``strat_fold``
1-8 train, 9 validation, 10 test (the recommended split), or ``split_files`` (MERL's
``ptbxl_*_{train,val,test}.csv`` have an ``ecg_id`` column).
"""

from __future__ import annotations

import ast
import logging
import math
import os
from typing import Any, Mapping

from datasets import Features, Value

from ._common import check_root, finish, path_inside_root, read_csv_checked, record_file_states
from .build import BuildPlan, RecordSource, file_signature
from .features import check_class_names, ecg_feature, labels_feature, make_info
from .processing import SignalOptions, prepare_ecg, read_wfdb_record
from .splits import integer_id, ordered_split_names, read_split_files
from .summary import DUPLICATE_RECORD, NO_LABEL, NOT_IN_SPLIT_FILES, ShardTally

logger = logging.getLogger(__name__)

__all__ = ["load_ptbxl", "build_ptbxl_plan", "PTBXL_TASKS", "ptbxl_class_names", "ptbxl_labels"]

DATASET = "ptbxl"
TITLE = "PTB-XL"
PTBXL_TASKS = ("super", "sub", "form", "rhythm", "all")
LAYOUT_HINT = (
    "Pass the PTB-XL folder that contains ptbxl_database.csv, scp_statements.csv and records500/ "
    "(e.g. .../ptb-xl/1.0.3)."
)
SPLIT_ID_COLUMNS = ("ecg_id",)
CITATION = (
    "Wagner, P., Strodthoff, N., Bousseljot, R.-D., Kreiseler, D., Lunze, F. I., Samek, W., Schaeffter, T. (2020). "
    "PTB-XL, a large publicly available electrocardiography dataset. Scientific Data 7, 154. "
    "https://doi.org/10.1038/s41597-020-0495-6"
)
FOLD_SPLITS = {**{fold: "train" for fold in range(1, 9)}, 9: "validation", 10: "test"}


def _flag(value) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return False
        try:
            value = float(value)
        except ValueError:
            return False
    try:
        return not math.isnan(float(value)) and float(value) == 1.0
    except (TypeError, ValueError):
        return False


def _name(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def _statements(scp) -> dict[str, dict]:
    table = {}
    for code, row in scp.iterrows():
        table[str(code).strip()] = {
            "diagnostic": _flag(row.get("diagnostic")),
            "form": _flag(row.get("form")),
            "rhythm": _flag(row.get("rhythm")),
            "class": _name(row.get("diagnostic_class")),
            "subclass": _name(row.get("diagnostic_subclass")),
        }
    return table


def ptbxl_class_names(statements: Mapping[str, dict], task: str) -> list[str]:
    """Sorted class names of `task` from the parsed ``scp_statements.csv``."""
    if task == "super":
        names = {s["class"] for s in statements.values() if s["diagnostic"] and s["class"]}
    elif task == "sub":
        names = {s["subclass"] for s in statements.values() if s["diagnostic"] and s["subclass"]}
    elif task in ("form", "rhythm"):
        names = {code for code, s in statements.items() if s[task]}
    elif task == "all":
        names = set(statements)
    else:
        raise ValueError(f"task must be one of {PTBXL_TASKS}, got {task!r}")
    return sorted(names)


def ptbxl_labels(scp_codes: Mapping[str, float], statements: Mapping[str, dict], task: str, min_likelihood: float = 0.0) -> set[str]:
    """The class names of `task` that one record's ``scp_codes`` dict carries (see the module docstring)."""
    found: set[str] = set()
    for code, likelihood in scp_codes.items():
        statement = statements.get(str(code).strip())
        if statement is None:
            continue
        try:
            likelihood = float(likelihood)
        except (TypeError, ValueError):
            likelihood = 0.0
        diagnostic_ok = statement["diagnostic"] and likelihood >= min_likelihood
        if task == "super":
            if diagnostic_ok and statement["class"]:
                found.add(statement["class"])
        elif task == "sub":
            if diagnostic_ok and statement["subclass"]:
                found.add(statement["subclass"])
        elif task in ("form", "rhythm"):
            if statement[task]:
                found.add(str(code).strip())
        elif task == "all":
            if diagnostic_ok or not statement["diagnostic"]:
                found.add(str(code).strip())
    return found


class PtbxlSource(RecordSource):
    dataset = DATASET

    def __init__(self, root: str, options: SignalOptions, class_names: list[str], task: str, sampling_rate: int):
        self.root = root
        self.options = options
        self.class_names = class_names
        self.features = Features(
            {
                "ecg_id": Value("int64"),
                "ecg": ecg_feature(options.num_samples),
                "labels": labels_feature(len(class_names)),
                "report": Value("string"),
            }
        )
        self.info = make_info(
            features=self.features,
            dataset=DATASET,
            title=f"PTB-XL, task {task!r} ({len(class_names)} classes), from the {sampling_rate} Hz records.",
            metadata={"class_names": class_names, "task": task, "source_sampling_rate": sampling_rate},
            citation=CITATION,
            homepage="https://physionet.org/content/ptb-xl/",
            license="CC BY 4.0",
        )

    def read(self, task: Mapping[str, Any]):
        signal, fs, lead_names, units = read_wfdb_record(os.path.join(self.root, task["path"]), self.root)
        ecg, flags, stats = prepare_ecg(signal, fs, lead_names, units, self.options)
        return {"ecg_id": task["id"], "ecg": ecg, "labels": task["labels"], "report": task["report"]}, flags, stats


def build_ptbxl_plan(
    root,
    task: str = "super",
    sampling_rate: int = 500,
    *,
    split_files=None,
    split_id_column: str | None = None,
    use_split_file_labels: bool = False,
    min_likelihood: float = 0.0,
    drop_unlabeled: bool = True,
    signal_options: SignalOptions | None = None,
) -> BuildPlan:
    """Read the two CSVs of a PTB-XL root and plan the build of `task` (no signal is read here). A record file
    name leading outside the root is counted as ``path_outside_root``."""
    if task not in PTBXL_TASKS:
        raise ValueError(f"task must be one of {PTBXL_TASKS}, got {task!r}")
    if sampling_rate not in (100, 500):
        raise ValueError(f"PTB-XL ships 500 Hz (records500) and 100 Hz (records100) records; got sampling_rate={sampling_rate!r}")
    records_dir = "records500" if sampling_rate == 500 else "records100"
    root_path = check_root(root, TITLE, ["ptbxl_database.csv", "scp_statements.csv", records_dir], LAYOUT_HINT)
    options = signal_options or SignalOptions(flat_lead_policy="keep")
    database_csv, statements_csv = root_path / "ptbxl_database.csv", root_path / "scp_statements.csv"
    filename_column = "filename_hr" if sampling_rate == 500 else "filename_lr"
    rows = read_csv_checked(
        database_csv, ["ecg_id", "scp_codes", "strat_fold", filename_column, "report"], f"{TITLE} database",
        dtype=str, keep_default_na=False,
    ).to_dict("records")
    statements = _statements(
        read_csv_checked(
            statements_csv,
            ["diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"],
            f"{TITLE} SCP statements",
            index_col=0,
        )
    )
    class_names = check_class_names(ptbxl_class_names(statements, task))
    sf = _ptbxl_split_files(split_files, split_id_column, use_split_file_labels, class_names)
    labeler = _Labeler(statements, task, min_likelihood, class_names, sf if use_split_file_labels else None)
    planning = ShardTally()
    split_of = sf.split_of if sf is not None else None
    split_names = ordered_split_names(sf.ids) if sf is not None else ["train", "validation", "test"]
    splits, seen = _plan_records(root_path, rows, database_csv, filename_column, split_of, split_names, labeler,
                                 drop_unlabeled, planning)
    not_found = len(set(split_of) - seen) if split_of is not None else 0
    user_options = {
        "task": task,
        "sampling_rate": sampling_rate,
        "min_likelihood": min_likelihood,
        "drop_unlabeled": drop_unlabeled,
        "split_files": sf.sources if sf is not None else None,
        "use_split_file_labels": use_split_file_labels,
        "signal": options.to_dict(),
    }
    return BuildPlan(
        source=PtbxlSource(os.fspath(root_path), options, class_names, task, sampling_rate),
        root=os.fspath(root_path),
        splits=splits,
        options=user_options,
        fingerprint_inputs={
            "files": [file_signature(database_csv, root_path), file_signature(statements_csv, root_path)],
            "class_names": class_names,
            # mtimes of the record folders change when a file is added or removed there
            "folders": sorted(
                (p.name, p.stat().st_mtime_ns) for p in (root_path / records_dir).iterdir() if p.is_dir()
            ),
        },
        planning=planning,
        split_file_ids_not_found=not_found,
        warnings=[f"{not_found} ecg_ids of the split files are not in ptbxl_database.csv"] if not_found else [],
    )


def _ptbxl_split_files(split_files, split_id_column, use_split_file_labels: bool, class_names: list[str]):
    if split_files is None:
        if use_split_file_labels:
            raise ValueError("use_split_file_labels=True needs split_files")
        return None
    sf = read_split_files(split_files, SPLIT_ID_COLUMNS, integer_id, id_column=split_id_column)
    if use_split_file_labels:
        sf.check_label_columns(class_names)
    return sf


class _Labeler:
    """The label vector of one database row: from the split files' class columns, or from ``scp_codes``."""

    def __init__(self, statements, task: str, min_likelihood: float, class_names: list[str], split_files=None):
        self.statements = statements
        self.task = task
        self.min_likelihood = min_likelihood
        self.class_names = class_names
        self.split_files = split_files

    def __call__(self, ecg_id: int, row: Mapping[str, str], planning: ShardTally) -> list[float] | None:
        """The labels, or None when the record was counted as ``no_label`` (unparsable or no statement)."""
        if self.split_files is not None:
            labels = self.split_files.label_vector(ecg_id, self.class_names)
        else:
            try:
                codes = ast.literal_eval(row["scp_codes"]) if row["scp_codes"].strip() else {}
                if not isinstance(codes, dict):
                    raise ValueError
            except (ValueError, SyntaxError):
                planning.skip(ecg_id, NO_LABEL, f"unparsable scp_codes {row['scp_codes'][:60]!r}")
                return None
            present = ptbxl_labels(codes, self.statements, self.task, self.min_likelihood)
            labels = [1.0 if name in present else 0.0 for name in self.class_names]
        return labels


def _fold_split(ecg_id: int, strat_fold: str) -> str:
    try:
        fold = integer_id(strat_fold)
    except ValueError:
        fold = None
    split = FOLD_SPLITS.get(fold)
    if split is None:
        raise ValueError(
            f"{TITLE}: ecg_id {ecg_id} has strat_fold {strat_fold!r}; expected 1-10. Use split_files for another "
            "protocol."
        )
    return split


def _plan_records(
    root_path, rows, database_csv, filename_column: str, split_of, split_names, labeler: _Labeler,
    drop_unlabeled: bool, planning: ShardTally,
) -> tuple[dict[str, list], set[int]]:
    """The tasks of each split (sorted by ecg_id) and every ecg_id of the database; rejected records are counted."""
    splits: dict[str, list] = {name: [] for name in split_names}
    seen: set[int] = set()
    for row in rows:
        try:
            ecg_id = integer_id(row["ecg_id"])
        except ValueError:
            raise ValueError(f"{TITLE}: non-numeric ecg_id {row['ecg_id']!r} in {database_csv}") from None
        if ecg_id in seen:
            planning.skip(ecg_id, DUPLICATE_RECORD)
            continue
        seen.add(ecg_id)
        path = row[filename_column].strip()
        if not path_inside_root(root_path, path, ecg_id, planning, filename_column):
            continue
        split = split_of.get(ecg_id) if split_of is not None else _fold_split(ecg_id, row["strat_fold"])
        if split is None:
            planning.skip(ecg_id, NOT_IN_SPLIT_FILES)
            continue
        labels = labeler(ecg_id, row, planning)
        if labels is None:
            continue
        if drop_unlabeled and not any(v > 0.5 for v in labels):
            planning.skip(ecg_id, NO_LABEL, f"no {labeler.task} statement")
            continue
        if not path:
            raise ValueError(f"{TITLE}: ecg_id {ecg_id} has an empty {filename_column}")
        files = record_file_states(root_path, path, (".hea", ".dat"))
        splits[split].append({"id": ecg_id, "path": path, "labels": labels, "report": row["report"].strip(), "files": files})
    for tasks in splits.values():
        tasks.sort(key=lambda t: t["id"])
    return splits, seen


def load_ptbxl(
    root,
    task: str = "super",
    sampling_rate: int = 500,
    *,
    num_proc: int | None = None,
    cache_dir=None,
    split_files=None,
    split_id_column: str | None = None,
    use_split_file_labels: bool = False,
    min_likelihood: float = 0.0,
    drop_unlabeled: bool = True,
    nan_policy: str = "skip",
    flat_lead_policy: str = "keep",
    flat_tolerance: float = 1e-6,
    shard_size: int | None = None,
    force_rebuild: bool = False,
    return_summary: bool = False,
):
    """Build (or load from cache) a PTB-XL task as a `DatasetDict` with ``train``, ``validation``, ``test``.

    Columns: ``ecg_id`` (int64), ``ecg`` ((12, 5000) float16 mV, 500 Hz), ``labels`` (multi-hot float32, one
    per class; names via `dataset_class_names`), ``report`` (the free-text report of the database).

    Args:
        root: the PTB-XL folder (``ptbxl_database.csv``, ``scp_statements.csv``, ``records500/``).
        task: ``"super"``, ``"sub"``, ``"form"``, ``"rhythm"`` or ``"all"``.
        sampling_rate: read ``records500`` (500) or ``records100`` (100; upsampled to 500 Hz, flagged
            ``resampled``). The stored ECG is always 500 Hz x 5000 samples.
        split_files: published per-split id lists (``{split: csv}`` or a directory of ``*_train.csv`` /
            ``*_val.csv`` / ``*_test.csv``, e.g. MERL's ``data_split/ptbxl/super_class``) instead of strat_fold.
        use_split_file_labels: take the labels from the split files' class columns instead of deriving them.
        min_likelihood: ignore *diagnostic* statements with a lower likelihood (default 0: keep all, as the
            standard benchmark; see the module docstring).
        drop_unlabeled: drop records without a label of the task (counted as ``no_label``).
        nan_policy, flat_lead_policy, flat_tolerance: see `SignalOptions` (flat leads are kept by default so
            that the test set is complete; they are counted as ``flat_lead_kept``).
        num_proc, cache_dir, shard_size, force_rebuild, return_summary: see `load_mimic_iv_ecg`.
    """
    options = SignalOptions(nan_policy=nan_policy, flat_lead_policy=flat_lead_policy, flat_tolerance=flat_tolerance)
    plan = build_ptbxl_plan(
        root,
        task,
        sampling_rate,
        split_files=split_files,
        split_id_column=split_id_column,
        use_split_file_labels=use_split_file_labels,
        min_likelihood=min_likelihood,
        drop_unlabeled=drop_unlabeled,
        signal_options=options,
    )
    return finish(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size,
        force_rebuild=force_rebuild,
        return_summary=return_summary,
    )
