"""WFDB records labelled with SNOMED-CT codes in a ``# Dx:`` header comment: CPSC2018 and CSN.

Both come in the PhysioNet/CinC Challenge 2020/2021 style: ``<record>.hea`` + ``<record>.mat`` (a
MATLAB v4 ``val`` matrix that the header addresses as format ``16+24``), gain 1000/mV, leads in the
standard order, and header comments such as::

    #Age: 74
    #Sex: Male
    #Dx: 164889003,59118001

* **CPSC2018** (the 6,877-record public training set of the China Physiological Signal Challenge 2018,
  as converted for the CinC Challenge 2020): ``ROOT/**/A0001.hea`` (e.g. ``Training_WFDB/``, or
  ``training/cpsc_2018/g1/``). 9 classes. Records last 6-144 s: the first 10 s are kept, shorter ones are
  zero-padded to 10 s (flagged ``cropped`` / ``padded``).
* **CSN** (Chapman-Shaoxing + Ningbo, "A large scale 12-lead electrocardiogram database for arrhythmia
  study", PhysioNet ecg-arrhythmia 1.0.0): ``ROOT/WFDBRecords/01/010/JS00001.hea``. 38 classes by default
  (the benchmark's), see ``dbeta_hf/resources/snomed_ct_classes.csv``.

Codes map to class names with the table shipped in the package (`snomed_class_table`). A record is
labelled with every class one of its codes belongs to; codes of no selected class are ignored (records
with such codes are flagged ``unknown_codes``); records left without a label are dropped as ``no_label``.

There is no official split. The default is a seeded random split by record (70/10/20 %). To reproduce
published numbers use the protocol's split files (MERL: ``icbeb_{train,val,test}.csv`` with a
``filename`` column such as ``A2600``; ``chapman_*.csv`` with an ``ecg_path`` column such as
``/chapman/WFDBRecords/44/448/JS44279.mat``). Caution: MERL's chapman label columns were derived by
substring matching of acronyms ("AF" is set for every "AFIB", "ST" for "STTC", "VB" for "1AVB", "SA" for
"LVQRSAL"); the labels here come from the SNOMED codes. ``use_split_file_labels=True`` takes the split
files' label columns instead, to compare with numbers computed on them.
"""

from __future__ import annotations

import csv
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import wfdb
from datasets import Features, Value

from ._common import check_root, finish, record_file_states
from .build import BuildPlan, RecordSource
from .features import check_class_names, ecg_feature, labels_feature, make_info
from .processing import SignalOptions, prepare_ecg, read_wfdb_record
from .splits import ordered_split_names, random_split, read_split_files, record_stem
from .summary import DUPLICATE_RECORD, MISSING_FILE, NO_LABEL, NOT_IN_SPLIT_FILES, UNREADABLE_HEADER, RecordSkipped, ShardTally

logger = logging.getLogger(__name__)

__all__ = [
    "snomed_class_table",
    "parse_dx_codes",
    "load_physionet_challenge",
    "load_cpsc2018",
    "load_chapman_shaoxing_ningbo",
    "build_physionet_challenge_plan",
]

SPLIT_ID_COLUMNS = ("record_id", "record_name", "filename", "file_name", "ecg_path", "path", "record")

DATASETS = {
    "cpsc2018": {
        "title": "CPSC2018",
        "description": "CPSC 2018 (ICBEB), PhysioNet/CinC 2020 WFDB conversion",
        "hint": "Pass the folder holding the CPSC 2018 WFDB records (A0001.hea + A0001.mat, e.g. Training_WFDB/ or "
        "the PhysioNet/CinC 2020 training/cpsc_2018/ folder).",
        "homepage": "http://2018.icbeb.org/Challenge.html",
        "citation": "Liu, F., Liu, C., Zhao, L., et al. (2018). An open access database for evaluating the algorithms of "
        "electrocardiogram rhythm and morphology abnormality detection. J. Med. Imaging Health Inform. 8(7), 1368-1373.",
        "license": "CC BY 4.0 (PhysioNet/CinC Challenge 2020)",
    },
    "csn": {
        "title": "Chapman-Shaoxing-Ningbo",
        "description": "Chapman-Shaoxing + Ningbo (PhysioNet ecg-arrhythmia 1.0.0)",
        "hint": "Pass the folder of 'A large scale 12-lead electrocardiogram database for arrhythmia study' that holds "
        "WFDBRecords/01/010/JS00001.hea (+ .mat).",
        "homepage": "https://physionet.org/content/ecg-arrhythmia/1.0.0/",
        "citation": "Zheng, J., Guo, H., Chu, H. (2022). A large scale 12-lead electrocardiogram database for arrhythmia "
        "study (version 1.0.0). PhysioNet. https://doi.org/10.13026/wgex-er52",
        "license": "CC BY 4.0",
    },
}


# --------------------------------------------------------------------------------------- SNOMED table
def _read_table() -> list[dict]:
    text = resources.files("dbeta_hf").joinpath("resources/snomed_ct_classes.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines))


def snomed_class_table(dataset: str, classes: Sequence[str] | str | None = None) -> dict[str, list[str]]:
    """``{class_name: [snomed code, ...]}`` of `dataset` from the shipped table, in class order.

    Args:
        dataset: ``"cpsc2018"`` or ``"csn"``.
        classes: None for the default (benchmark) classes, ``"all"`` for every class of the table, or a list
            of class names (in the order wanted).
    """
    rows = [row for row in _read_table() if row["dataset"] == dataset]
    if not rows:
        known = sorted({row["dataset"] for row in _read_table()})
        raise ValueError(f"no SNOMED-CT class table for dataset {dataset!r}; available: {known}")
    table: dict[str, list[str]] = {}
    defaults: list[str] = []
    for row in rows:
        table.setdefault(row["class_name"], []).append(row["snomed_ct"].strip())
        if row["default"].strip() == "1" and row["class_name"] not in defaults:
            defaults.append(row["class_name"])
    if classes is None:
        names = defaults
    elif isinstance(classes, str):
        if classes != "all":
            raise ValueError(f"classes must be None, 'all' or a list of class names, got {classes!r}")
        names = list(table)
    else:
        names = check_class_names(classes)
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"unknown {dataset} classes {unknown}; known: {list(table)}")
    return {name: table[name] for name in names}


def parse_dx_codes(header_text: str) -> list[str] | None:
    """The SNOMED codes of the ``#Dx:`` comment of a WFDB header (None when there is no Dx line)."""
    for line in header_text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            continue
        key, sep, value = stripped.lstrip("#").partition(":")
        if sep and key.strip().lower() == "dx":
            return [code.strip() for code in value.replace(";", ",").split(",") if code.strip()]
    return None


# --------------------------------------------------------------------------------------- source
class ChallengeSource(RecordSource):
    def __init__(self, dataset: str, root: str, options: SignalOptions, class_table: dict[str, list[str]]):
        meta = DATASETS.get(dataset, {"description": dataset, "homepage": "", "citation": "", "license": ""})
        self.dataset = dataset
        self.root = root
        self.options = options
        self.class_names = list(class_table)
        self.code_to_indices: dict[str, list[int]] = {}
        for index, codes in enumerate(class_table.values()):
            for code in codes:
                self.code_to_indices.setdefault(code, []).append(index)
        self.features = Features(
            {
                "record_id": Value("string"),
                "ecg": ecg_feature(options.num_samples),
                "labels": labels_feature(len(self.class_names)),
            }
        )
        self.info = make_info(
            features=self.features,
            dataset=dataset,
            title=f"{meta['description']}: {len(self.class_names)} classes from the '# Dx' SNOMED-CT codes.",
            metadata={"class_names": self.class_names, "snomed_ct": class_table},
            citation=meta["citation"],
            homepage=meta["homepage"],
            license=meta["license"],
        )

    def labels_from_header(self, path: str) -> tuple[list[float], bool]:
        header_file = path + ".hea"
        try:
            with open(header_file, encoding="utf-8", errors="strict") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise RecordSkipped(MISSING_FILE, f"{header_file} does not exist") from None
        except (UnicodeDecodeError, OSError) as error:
            raise RecordSkipped(UNREADABLE_HEADER, f"{header_file}: {error}") from None
        codes = parse_dx_codes(text)
        if codes is None:
            _raise_if_unreadable(path)
            raise RecordSkipped(NO_LABEL, "no '# Dx:' line in the header")
        labels = [0.0] * len(self.class_names)
        unknown = False
        for code in codes:
            indices = self.code_to_indices.get(code)
            if indices is None:
                unknown = True
                continue
            for index in indices:
                labels[index] = 1.0
        return labels, unknown

    def read(self, task: Mapping[str, Any]):
        path = os.path.join(self.root, task["path"])
        flags: list[str] = []
        if task.get("labels") is not None:
            labels = task["labels"]
            if not os.path.isfile(path + ".hea"):
                raise RecordSkipped(MISSING_FILE, f"{path}.hea does not exist")
        else:
            labels, unknown = self.labels_from_header(path)
            if unknown:
                flags.append("unknown_codes")
        if task.get("drop_unlabeled", True) and not any(v > 0.5 for v in labels):
            _raise_if_unreadable(path)
            raise RecordSkipped(NO_LABEL, "no code of the selected classes")
        signal, fs, lead_names, units = read_wfdb_record(path, self.root)
        ecg, more_flags, stats = prepare_ecg(signal, fs, lead_names, units, self.options)
        return {"record_id": task["id"], "ecg": ecg, "labels": labels}, flags + more_flags, stats


def _raise_if_unreadable(path: str) -> None:
    """A record about to be dropped for its labels is reported as unreadable if its header is broken."""
    try:
        header = wfdb.rdheader(path)
    except Exception as error:  # wfdb raises assorted types for malformed headers
        raise RecordSkipped(UNREADABLE_HEADER, f"{path}.hea: {type(error).__name__}: {error}") from None
    if header.n_sig is None or len(header.sig_name or []) != header.n_sig:
        raise RecordSkipped(UNREADABLE_HEADER, f"{path}.hea declares {header.n_sig} signals but lists {len(header.sig_name or [])}")


# --------------------------------------------------------------------------------------- plan
def _discover(root: Path) -> list[Path]:
    headers = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        headers.extend(Path(directory) / name for name in sorted(files) if name.endswith(".hea"))
    return headers


def build_physionet_challenge_plan(
    root,
    dataset: str,
    *,
    classes: Sequence[str] | str | None = None,
    class_table: Mapping[str, Sequence[str]] | None = None,
    split_files=None,
    split_id_column: str | None = None,
    use_split_file_labels: bool = False,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    drop_unlabeled: bool = True,
    signal_options: SignalOptions | None = None,
) -> BuildPlan:
    """Find the WFDB headers below `root` and plan the build (headers and signals are read by the source)."""
    meta = DATASETS.get(dataset, {"title": dataset, "hint": "Pass the folder holding the WFDB records (*.hea)."})
    root_path = check_root(root, meta["title"], [], meta["hint"])
    if class_table is not None:
        table = {str(k): [str(c) for c in v] for k, v in class_table.items()}
        check_class_names(list(table))
    else:
        table = snomed_class_table(dataset, classes)
    options = signal_options or SignalOptions(flat_lead_policy="keep", min_num_samples=None)
    headers = _discover(root_path)
    if not headers:
        raise FileNotFoundError(f"{meta['title']}: no WFDB headers (*.hea) found under {os.fspath(root_path)!r}. {meta['hint']}")
    sf = _challenge_split_files(split_files, split_id_column, use_split_file_labels, list(table))
    planning = ShardTally()
    records, listing = _unique_records(root_path, headers, planning)
    if sf is not None:
        split_of, split_names = sf.split_of, ordered_split_names(sf.ids)
    else:
        split_of, split_names = random_split(sorted(records), split_fractions, seed), ["train", "validation", "test"]
    label_files = sf if use_split_file_labels else None
    splits = _challenge_tasks(root_path, records, split_of, split_names, drop_unlabeled, label_files, list(table), planning)
    not_found = len(set(split_of) - set(records)) if sf is not None else 0
    user_options = {
        "classes": list(table),
        "split_files": sf.sources if sf is not None else None,
        "use_split_file_labels": use_split_file_labels,
        "split_fractions": list(split_fractions) if sf is None else None,
        "seed": seed if sf is None else None,
        "drop_unlabeled": drop_unlabeled,
        "signal": options.to_dict(),
    }
    return BuildPlan(
        source=ChallengeSource(dataset, os.fspath(root_path), options, table),
        root=os.fspath(root_path),
        splits=splits,
        options=user_options,
        fingerprint_inputs={"class_table": table, "headers": listing},
        planning=planning,
        split_file_ids_not_found=not_found,
        warnings=[f"{not_found} record ids of the split files are not under the root"] if not_found else [],
    )


def _challenge_split_files(split_files, split_id_column, use_split_file_labels: bool, class_names: list[str]):
    if split_files is None:
        if use_split_file_labels:
            raise ValueError("use_split_file_labels=True needs split_files")
        return None
    sf = read_split_files(split_files, SPLIT_ID_COLUMNS, record_stem, id_column=split_id_column)
    if use_split_file_labels:
        sf.check_label_columns(class_names)
    return sf


def _unique_records(root_path: Path, headers: list[Path], planning: ShardTally) -> tuple[dict[str, Path], list]:
    """``{record name: header}`` (the first header of a name wins, later ones count as duplicates) and the
    ``(relative path, size, mtime_ns)`` listing of every header for the fingerprint."""
    records: dict[str, Path] = {}
    listing = []
    for header in headers:
        record_id = header.stem
        stat = header.stat()
        listing.append((os.path.relpath(header, root_path), stat.st_size, stat.st_mtime_ns))
        if record_id in records:
            planning.skip(record_id, DUPLICATE_RECORD, f"{header} (kept {records[record_id]})")
            continue
        records[record_id] = header
    return records, listing


def _challenge_tasks(
    root_path: Path, records, split_of, split_names, drop_unlabeled: bool, label_files, class_names, planning
) -> dict[str, list]:
    """The tasks of each split in record-name order; records outside the split files are counted."""
    splits: dict[str, list] = {name: [] for name in split_names}
    for record_id in sorted(records):
        split = split_of.get(record_id)
        if split is None:
            planning.skip(record_id, NOT_IN_SPLIT_FILES)
            continue
        path = os.path.relpath(records[record_id].with_suffix(""), root_path)
        task: dict[str, Any] = {
            "id": record_id,
            "path": path,
            "drop_unlabeled": drop_unlabeled,
            "files": record_file_states(root_path, path, (".hea", ".mat")),
        }
        if label_files is not None:
            task["labels"] = label_files.label_vector(record_id, class_names)
        splits[split].append(task)
    return splits


def load_physionet_challenge(
    root,
    dataset: str,
    *,
    classes: Sequence[str] | str | None = None,
    class_table: Mapping[str, Sequence[str]] | None = None,
    num_proc: int | None = None,
    cache_dir=None,
    split_files=None,
    split_id_column: str | None = None,
    use_split_file_labels: bool = False,
    split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    drop_unlabeled: bool = True,
    min_num_samples: int | None = None,
    nan_policy: str = "skip",
    flat_lead_policy: str = "keep",
    flat_tolerance: float = 1e-6,
    shard_size: int | None = None,
    force_rebuild: bool = False,
    return_summary: bool = False,
):
    """Build a `DatasetDict` (train / validation / test) from WFDB records with ``# Dx:`` SNOMED-CT codes.

    Columns: ``record_id`` (string, the record name such as ``A0001``), ``ecg`` ((12, 5000) float16 mV,
    500 Hz; the first 10 s, zero-padded when shorter), ``labels`` (multi-hot float32).

    Args:
        root: folder searched recursively for ``*.hea``.
        dataset: ``"cpsc2018"``, ``"csn"``, or any name when `class_table` is given.
        classes: subset / order of the table's classes (None: the benchmark classes; ``"all"``).
        class_table: ``{class_name: [snomed codes]}`` to use instead of the shipped table.
        split_files: published per-split lists (a ``filename`` / ``record_name`` / ``ecg_path`` column; paths are
            reduced to the record name).
        use_split_file_labels: take the labels from the split files' class columns.
        split_fractions, seed: the default random split by record.
        drop_unlabeled: drop records without a label of the selected classes (``no_label``).
        min_num_samples: minimum length at 500 Hz (None: pad any shorter record with zeros).
        nan_policy, flat_lead_policy, flat_tolerance, num_proc, cache_dir, shard_size, force_rebuild,
        return_summary: see `load_mimic_iv_ecg`.
    """
    options = SignalOptions(
        min_num_samples=min_num_samples,
        nan_policy=nan_policy,
        flat_lead_policy=flat_lead_policy,
        flat_tolerance=flat_tolerance,
    )
    plan = build_physionet_challenge_plan(
        root,
        dataset,
        classes=classes,
        class_table=class_table,
        split_files=split_files,
        split_id_column=split_id_column,
        use_split_file_labels=use_split_file_labels,
        split_fractions=split_fractions,
        seed=seed,
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


def load_cpsc2018(root, **kwargs):
    """CPSC2018 (9 classes: AFIB, VPC, NORM, 1AVB, CRBBB, STE, PAC, CLBBB, STD). See `load_physionet_challenge`."""
    return load_physionet_challenge(root, "cpsc2018", **kwargs)


def load_chapman_shaoxing_ningbo(root, **kwargs):
    """Chapman-Shaoxing-Ningbo (38 benchmark classes by default). See `load_physionet_challenge`."""
    return load_physionet_challenge(root, "csn", **kwargs)
