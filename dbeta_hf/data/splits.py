"""Train / validation / test splits: default splits, published split files, label fractions.

* `hash_rank` orders ids by a keyed hash. A split built from it is deterministic, does not depend on the
  order in which files are listed, and moves only a few ids when records are added or removed.
* `group_split` (MIMIC-IV-ECG) puts whole patients into the validation split.
* `random_split` (CPSC2018, CSN without split files) draws train / validation / test by record.
* `stratified_split` (PhysioNet 2021 without split files) does the same within each stratum (a record's
  rarest class), so rare classes reach every split.
* `read_split_files` reads the CSV lists of record ids in which published protocols are distributed
  (e.g. MERL's ``finetune/data_split/*/..._{train,val,test}.csv``): one file per split, an id column, and
  optionally one 0/1 column per class.
* `label_fraction` draws the 1 % / 10 % training subsets of the linear-probing protocol.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from datasets import DatasetDict

logger = logging.getLogger(__name__)

__all__ = [
    "SPLIT_NAMES",
    "normalize_split_name",
    "hash_rank",
    "group_split",
    "random_split",
    "stratified_split",
    "SplitFiles",
    "read_split_files",
    "label_fraction",
]

SPLIT_NAMES = ("train", "validation", "test")

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def normalize_split_name(name: str) -> str:
    """``"val"``/``"valid"``/``"dev"`` -> ``"validation"``, ``"training"`` -> ``"train"``, ...

    Other names are kept as given (lower-cased), so custom splits such as ``"holdout"`` work too.
    """
    key = str(name).strip().lower()
    if not key:
        raise ValueError("empty split name")
    return _SPLIT_ALIASES.get(key, key)


def ordered_split_names(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [n for n in SPLIT_NAMES if n in names]
    return known + sorted(n for n in names if n not in SPLIT_NAMES)


# --------------------------------------------------------------------------------------- hashing splits
def _hash(seed: int, key: Hashable) -> int:
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hash_rank(keys: Iterable[Hashable], seed: int = 0) -> list:
    """`keys` (deduplicated) sorted by a seeded hash: a deterministic pseudo-random order."""
    unique = list(dict.fromkeys(keys))
    return sorted(unique, key=lambda k: (_hash(seed, k), str(k)))


def _count(fraction: float, n: int, what: str) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {fraction}")
    if fraction == 0.0 or n == 0:
        return 0
    # At least one, and leave at least one for training when there is more than one.
    return min(max(1, int(round(fraction * n))), max(n - 1, 1))


def group_split(groups: Mapping[Hashable, Hashable], validation_fraction: float, seed: int = 0) -> dict:
    """Split records by group (patient): ``{record_id: "train" | "validation"}``.

    ``round(validation_fraction * number_of_groups)`` groups (at least one when the fraction is > 0 and there
    are at least two groups) go to validation, chosen by `hash_rank`; every record of a group lands in the same
    split, so no patient is in both.
    """
    ranked = hash_rank((groups[r] for r in groups), seed)
    n_val = _count(validation_fraction, len(ranked), "validation_fraction") if len(ranked) > 1 else 0
    validation = set(ranked[:n_val])
    return {record: ("validation" if group in validation else "train") for record, group in groups.items()}


def random_split(
    ids: Sequence[Hashable], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict:
    """Split record ids into train / validation / test with the given fractions (`hash_rank` order)."""
    if len(fractions) != 3:
        raise ValueError(f"split_fractions must be (train, validation, test), got {fractions!r}")
    train_f, val_f, test_f = (float(f) for f in fractions)
    if min(train_f, val_f, test_f) < 0 or not math.isclose(train_f + val_f + test_f, 1.0, abs_tol=1e-6):
        raise ValueError(f"split_fractions must be non-negative and sum to 1, got {fractions!r}")
    ranked = hash_rank(ids, seed)
    n = len(ranked)
    n_test = int(round(test_f * n))
    n_val = int(round(val_f * n))
    n_val = min(n_val, n - n_test)
    assignment = {}
    for position, record in enumerate(ranked):
        if position < n_test:
            assignment[record] = "test"
        elif position < n_test + n_val:
            assignment[record] = "validation"
        else:
            assignment[record] = "train"
    return assignment


def stratified_split(
    ids: Sequence[Hashable],
    strata: Mapping[Hashable, Hashable],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict:
    """Split record ids into train / validation / test with the given fractions, spreading every stratum.

    The strata are dealt out smallest first; within a stratum the ids go in `hash_rank` order, each to the
    split that is furthest below its share of the records dealt so far (ties: test, validation, train). The
    splits thus get their fractions overall, each stratum is spread over them in about the same proportions
    (a rare class reaches the test split as soon as it has a few records), and the result is deterministic and
    independent of the listing order.
    """
    if len(fractions) != 3:
        raise ValueError(f"split_fractions must be (train, validation, test), got {fractions!r}")
    train_f, val_f, test_f = (float(f) for f in fractions)
    if min(train_f, val_f, test_f) < 0 or not math.isclose(train_f + val_f + test_f, 1.0, abs_tol=1e-6):
        raise ValueError(f"split_fractions must be non-negative and sum to 1, got {fractions!r}")
    members: dict = {}
    for record in ids:
        if record not in strata:
            raise KeyError(f"record {record!r} has no stratum")
        members.setdefault(strata[record], []).append(record)
    shares = (("test", test_f), ("validation", val_f), ("train", train_f))
    counts = {name: 0 for name, _ in shares}
    assignment = {}
    for stratum in sorted(members, key=lambda s: (len(members[s]), str(s))):
        for record in hash_rank(members[stratum], seed):
            dealt = sum(counts.values()) + 1
            split = max(shares, key=lambda item: item[1] * dealt - counts[item[0]])[0]
            counts[split] += 1
            assignment[record] = split
    return assignment


# --------------------------------------------------------------------------------------- split files
@dataclass
class SplitFiles:
    """Record ids per split read from split files (see `read_split_files`).

    Attributes:
        ids: ``{split: [record id, ...]}`` in file order (splits normalized: ``val`` -> ``validation``).
        id_column: the column the ids were read from.
        labels: ``{record id: {column: value}}`` for every column of the files (used with
            ``use_split_file_labels=True``).
        sources: ``{split: path}`` of the files read.
    """

    ids: dict
    id_column: str
    labels: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    @property
    def split_of(self) -> dict:
        return {record: split for split, records in self.ids.items() for record in records}

    def label_vector(self, record_id, class_names: Sequence[str]) -> list[float]:
        row = self.labels.get(record_id)
        if row is None:
            raise KeyError(record_id)
        values = []
        for name in class_names:
            value = row[name]
            try:
                values.append(float(value))
            except (TypeError, ValueError):
                raise ValueError(
                    f"split file label column {name!r} of record {record_id!r} holds {value!r}, not a 0/1 number"
                ) from None
        return values

    def check_label_columns(self, class_names: Sequence[str]) -> None:
        columns = set()
        for row in self.labels.values():
            columns = set(row)
            break
        missing = [name for name in class_names if name not in columns]
        if missing:
            raise ValueError(
                f"use_split_file_labels=True needs one column per class in the split files; missing: {missing}. "
                f"Columns found: {sorted(columns)}"
            )


def _discover_split_files(directory: Path) -> dict:
    found: dict[str, Path] = {}
    for path in sorted(directory.glob("*.csv")):
        match = re.search(r"(?:^|[_\-. ])(train|training|val|valid|validation|dev|test|testing)$", path.stem.lower())
        if not match:
            continue
        split = normalize_split_name(match.group(1))
        if split in found:
            raise ValueError(
                f"two split files for {split!r} in {directory}: {found[split].name} and {path.name}; pass a dict "
                "{'train': ..., 'validation': ..., 'test': ...} instead"
            )
        found[split] = path
    if not found:
        raise FileNotFoundError(
            f"no split files in {directory}: expected CSV files whose names end in _train, _val (or _validation) "
            "and _test, e.g. ptbxl_super_class_train.csv"
        )
    return found


def read_split_files(
    split_files: Mapping[str, Any] | str | os.PathLike,
    id_columns: Sequence[str],
    parse_id: Callable[[Any], Hashable] = str,
    id_column: str | None = None,
) -> SplitFiles:
    """Read per-split lists of record ids.

    Args:
        split_files: ``{split: path_to_csv}`` (keys such as ``"train"``, ``"val"``/``"validation"``,
            ``"test"``), ``{split: [id, ...]}``, or a directory holding files named ``*_train.csv``,
            ``*_val.csv``, ``*_test.csv`` (MERL's naming).
        id_columns: candidate id column names, tried in order (case-insensitive), e.g. ``("ecg_id",)``.
        parse_id: turns a cell into a record id (e.g. ``int``, or the stem of a path such as
            ``/chapman/WFDBRecords/44/448/JS44279.mat`` -> ``JS44279``).
        id_column: force the id column instead of guessing from `id_columns`.

    Raises:
        ValueError: no id column, an id listed in two splits, unparsable ids.
        FileNotFoundError: a listed file does not exist.
    """
    ids: dict[str, list] = {}
    labels: dict = {}
    sources: dict = {}
    chosen_column = id_column
    owner: dict = {}
    mapping = _split_mapping(split_files)
    for raw_split, value in mapping.items():
        split = normalize_split_name(raw_split)
        if split in ids:
            raise ValueError(f"split {split!r} is given twice in split_files ({list(mapping)})")
        if isinstance(value, (str, os.PathLike)):
            chosen_column, raw_ids, records = _read_split_csv(Path(value), split, id_columns, id_column)
            sources[split] = os.fspath(Path(value))
        else:
            raw_ids = list(value)
            records = [None] * len(raw_ids)
            sources[split] = "<in memory>"
            chosen_column = chosen_column or "<ids>"
        ids[split] = _parse_split_ids(split, raw_ids, records, parse_id, owner, labels)
    return SplitFiles(ids=ids, id_column=chosen_column or "", labels=labels, sources=sources)


def _split_mapping(split_files) -> Mapping[str, Any]:
    """``{split: csv path or ids}`` from a mapping or a directory of ``*_train.csv`` / ``*_val.csv`` / ``*_test.csv``."""
    if isinstance(split_files, (str, os.PathLike)):
        directory = Path(split_files)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"split_files={os.fspath(split_files)!r} is not a directory; pass a directory of *_train.csv / "
                "*_val.csv / *_test.csv files or a dict {split: csv_path}"
            )
        return _discover_split_files(directory)
    if isinstance(split_files, Mapping):
        return split_files
    raise TypeError(f"split_files must be a dict {{split: csv path or ids}} or a directory, got {type(split_files)}")


def _read_split_csv(path: Path, split: str, id_columns: Sequence[str], id_column: str | None) -> tuple[str, list, list]:
    """``(id column, raw ids, rows)`` of one split file; the id column is `id_column` or the first of
    `id_columns` present (case-insensitive)."""
    if not path.is_file():
        raise FileNotFoundError(f"split file for {split!r} not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    lower = {c.lower(): c for c in frame.columns}
    candidates = [id_column] if id_column else list(id_columns)
    column = next((lower[c.lower()] for c in candidates if c is not None and c.lower() in lower), None)
    if column is None:
        raise ValueError(
            f"split file {path} has no id column: expected one of {candidates} (case-insensitive), found "
            f"columns {list(frame.columns)}. Pass split_id_column= to name it."
        )
    return column, frame[column].tolist(), frame.to_dict("records")


def _parse_split_ids(split: str, raw_ids, records, parse_id, owner: dict, labels: dict) -> list:
    """The parsed ids of one split in file order (a repeated line is dropped); `owner` maps every id seen so far
    to its split (an id in two splits is an error) and `labels` collects each id's row."""
    parsed = []
    for raw, row in zip(raw_ids, records):
        try:
            record_id = parse_id(raw)
        except (TypeError, ValueError):
            raise ValueError(f"split file for {split!r}: cannot parse record id {raw!r}") from None
        if record_id in owner:
            if owner[record_id] != split:
                raise ValueError(
                    f"record {record_id!r} is listed in two splits ({owner[record_id]!r} and {split!r}); split "
                    "files must be disjoint"
                )
            continue  # duplicated line within one split
        owner[record_id] = split
        parsed.append(record_id)
        if row is not None:
            labels[record_id] = row
    return parsed


def record_stem(value: Any) -> str:
    """``"/chapman/WFDBRecords/44/448/JS44279.mat"`` -> ``"JS44279"``; ``"A0001"`` -> ``"A0001"``."""
    text = str(value).strip()
    if not text:
        raise ValueError("empty record id")
    name = text.replace("\\", "/").rsplit("/", 1)[-1]
    for extension in (".hea", ".mat", ".dat", ".csv", ".npy"):
        if name.lower().endswith(extension):
            name = name[: -len(extension)]
            break
    return name


def integer_id(value: Any) -> int:
    """``"17"``, ``17``, ``"17.0"`` -> 17."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = float(str(value).strip())
    if not number.is_integer():
        raise ValueError(f"not an integer id: {value!r}")
    return int(number)


# --------------------------------------------------------------------------------------- label fraction
def label_fraction(dataset, fraction: float, seed: int = 0, label_column: str = "labels"):
    """A deterministic subset of about ``fraction`` of the rows, with every class kept.

    Used for the 1 % / 10 % linear-probing protocols. The draw is a seeded permutation of the rows; before
    filling up to ``round(fraction * len(dataset))`` rows from it, one positive row of every class that has
    positives in `dataset` is taken (rarest class first, the earliest row of the permutation), so no class
    loses all its positives. The result may therefore be slightly larger than requested when there are more
    classes than requested rows. Rows keep their original order.

    Args:
        dataset: a labelled `datasets.Dataset`, or a `DatasetDict` (then its ``"train"`` split is subsampled
            and the other splits are returned unchanged).
        fraction: in (0, 1]; 1 returns `dataset` itself.
        seed: the seed of the permutation. The same (dataset, fraction, seed) always gives the same rows.
        label_column: the multi-hot column.

    Note:
        This is not MERL's ``train_test_split(random_state=42)`` draw; with MERL's split CSVs the 100 %
        numbers are comparable, the 1 % / 10 % subsets are not row-identical.
    """
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise KeyError(f"label_fraction on a DatasetDict subsamples its 'train' split; splits: {list(dataset)}")
        out = dict(dataset)
        out["train"] = label_fraction(dataset["train"], fraction, seed=seed, label_column=label_column)
        return DatasetDict(out)
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] (e.g. 0.01 for 1 %), got {fraction!r}")
    if label_column not in dataset.column_names:
        raise KeyError(f"label_fraction needs a {label_column!r} column; columns: {dataset.column_names}")
    n = len(dataset)
    if float(fraction) == 1.0 or n == 0:
        return dataset
    labels = np.asarray(dataset.with_format("numpy", columns=[label_column])[label_column], dtype=np.float32)
    labels = labels.reshape(n, -1) > 0.5
    order = np.random.default_rng(seed).permutation(n)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    target = max(1, int(round(float(fraction) * n)))

    chosen: list[int] = []
    chosen_set: set[int] = set()
    counts = labels.sum(axis=0)
    for cls in np.argsort(counts, kind="stable"):
        if counts[cls] == 0:
            continue
        if chosen and labels[chosen, cls].any():
            continue
        positives = np.flatnonzero(labels[:, cls])
        row = int(positives[np.argmin(rank[positives])])
        chosen.append(row)
        chosen_set.add(row)
    for row in order:
        if len(chosen) >= target:
            break
        if int(row) not in chosen_set:
            chosen.append(int(row))
            chosen_set.add(int(row))
    if len(chosen) > target:
        logger.info(
            "label_fraction(%s): %d rows instead of %d, to keep one positive of each of the %d classes",
            fraction, len(chosen), target, int((counts > 0).sum()),
        )
    return dataset.select(sorted(chosen))
