"""`BuildSummary`: what a dataset build found, loaded, skipped (and why) and flagged.

Every loader of `dbeta_hf.data` returns one when called with ``return_summary=True``, logs it, and
writes it as ``build_summary.json`` next to the Arrow shards of the build (and, for the command line
tool, next to the saved dataset). Nothing is dropped silently: the invariant

    records_found == records_loaded + sum(skipped.values())

holds for every build (`BuildSummary.check` verifies it).

Skip reasons (`SKIP_REASONS`), in the order a record is checked:

=========================  ===================================================================================
``duplicate_record``       a second record with an id that was already seen (the first one is kept)
``path_outside_root``      a path read from the data (``record_list.csv`` ``path``, PTB-XL ``filename_hr`` /
                           ``filename_lr``, a signal file named in a WFDB header) that leads outside the dataset
                           root (``..`` or an absolute path elsewhere); such a file is never opened
``not_in_split_files``     ``split_files=`` was given and the record is listed in none of them
``excluded_source``        PhysioNet 2021: the record's source folder is not among the selected ``sources``
``empty_report``           MIMIC-IV-ECG: no non-empty ``report_*`` cell (or no row in machine_measurements.csv)
``no_label``               no positive label of the task (PTB-XL, CPSC2018, CSN; dropped by default)
``missing_file``           the header or a signal file referenced by the header does not exist
``unreadable_header``      the WFDB header cannot be parsed (garbled, truncated, empty) or has unknown units
``unreadable_signal``      the signal file cannot be decoded (e.g. truncated ``.dat``), or an HDF5 row read fails
``missing_leads``          some of the 12 standard leads are absent or carry a name that is not a standard lead
``wrong_sampling_rate``    a sampling rate that is invalid or differs from 500 Hz while ``resample=False``
``wrong_length``           fewer samples than the loader's minimum (after resampling to 500 Hz)
``nan``                    NaN / infinite samples (``nan_policy="skip"``)
``flat_lead``              a lead whose samples span at most ``flat_tolerance`` mV (``flat_lead_policy="skip"``)
``amplitude_out_of_range`` an absolute value above the float16 range (65504 mV): broken units or a corrupt file
``shorter_than_segment``   builds that cut records into segments (PhysioNet 2021 ``segment_seconds``): the record
                           is shorter than one segment (checked after the signal checks above)
=========================  ===================================================================================

Flags (`BuildSummary.flagged`) count records that were *kept* but changed or suspicious: ``resampled``,
``cropped``, ``padded``, ``nan_zeroed``, ``flat_lead_kept``, ``unknown_codes`` (a ``# Dx`` code that is in
no class of the task).

A build writes one row per record unless it cuts records into segments: `BuildSummary.rows_per_split` counts
the rows, and `BuildSummary.dropped_samples` counts the samples of kept records that no row holds, by reason
(``segment_remainder``: what is left after the last full segment), as ``{"records": n, "samples": m}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from ..utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "SKIP_REASONS",
    "FLAGS",
    "BuildSummary",
    "SUMMARY_FILENAME",
    "load_build_summary",
]

SUMMARY_FILENAME = "build_summary.json"

NOT_IN_SPLIT_FILES = "not_in_split_files"
EXCLUDED_SOURCE = "excluded_source"
DUPLICATE_RECORD = "duplicate_record"
PATH_OUTSIDE_ROOT = "path_outside_root"
EMPTY_REPORT = "empty_report"
NO_LABEL = "no_label"
MISSING_FILE = "missing_file"
UNREADABLE_HEADER = "unreadable_header"
UNREADABLE_SIGNAL = "unreadable_signal"
MISSING_LEADS = "missing_leads"
WRONG_SAMPLING_RATE = "wrong_sampling_rate"
WRONG_LENGTH = "wrong_length"
NAN = "nan"
FLAT_LEAD = "flat_lead"
OUT_OF_RANGE = "amplitude_out_of_range"
SHORTER_THAN_SEGMENT = "shorter_than_segment"
SEGMENT_REMAINDER = "segment_remainder"  # a reason of `BuildSummary.dropped_samples`

SKIP_REASONS = (
    DUPLICATE_RECORD,
    PATH_OUTSIDE_ROOT,
    NOT_IN_SPLIT_FILES,
    EXCLUDED_SOURCE,
    EMPTY_REPORT,
    NO_LABEL,
    MISSING_FILE,
    UNREADABLE_HEADER,
    UNREADABLE_SIGNAL,
    MISSING_LEADS,
    WRONG_SAMPLING_RATE,
    WRONG_LENGTH,
    NAN,
    FLAT_LEAD,
    OUT_OF_RANGE,
    SHORTER_THAN_SEGMENT,
)

FLAGS = ("resampled", "cropped", "padded", "nan_zeroed", "flat_lead_kept", "unknown_codes")

# How many example record ids are kept per skip reason (enough to go and look at the files).
MAX_EXAMPLES = 20


class RecordSkipped(Exception):
    """Raised by a record reader to skip one record for a reason of `SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {SKIP_REASONS}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class ShardTally:
    """Counts of one shard (or of the planning step); merged into a `BuildSummary`."""

    found: int = 0
    loaded: int = 0
    loaded_per_split: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    flagged: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    lead_order: Counter = field(default_factory=Counter)
    amplitude_histogram: Counter = field(default_factory=Counter)
    positives: dict[str, Counter] = field(default_factory=dict)
    rows_per_split: Counter = field(default_factory=Counter)  # rows written (several per record for segments)
    dropped_samples: dict[str, Counter] = field(default_factory=dict)  # {reason: {"records": n, "samples": m}}

    def skip(self, record_id: Any, reason: str, detail: str = "") -> None:
        self.found += 1
        self.skipped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"{record_id}: {detail}" if detail else str(record_id))

    def load(self, split: str, flags: Iterable[str] = (), rows: int = 1, dropped_samples: Mapping[str, int] | None = None) -> None:
        """Count one loaded record of `split` that gave `rows` rows; `dropped_samples` ``{reason: samples}`` are
        samples of it that no row holds."""
        if rows < 1:
            raise ValueError(f"a loaded record gives at least one row, got {rows}")
        self.found += 1
        self.loaded += 1
        self.loaded_per_split[split] += 1
        self.rows_per_split[split] += int(rows)
        for flag in flags:
            self.flagged[flag] += 1
        for reason, samples in (dropped_samples or {}).items():
            if samples:
                counts = self.dropped_samples.setdefault(reason, Counter())
                counts["records"] += 1
                counts["samples"] += int(samples)

    def to_dict(self) -> dict:
        data = {
            "found": self.found,
            "loaded": self.loaded,
            "loaded_per_split": dict(self.loaded_per_split),
            "skipped": dict(self.skipped),
            "flagged": dict(self.flagged),
            "examples": self.examples,
            "lead_order": dict(self.lead_order),
            "amplitude_histogram": {str(k): v for k, v in self.amplitude_histogram.items()},
            "positives": {split: dict(c) for split, c in self.positives.items()},
        }
        # only when there is something to say, so that the planning tallies (part of the build fingerprint) of
        # builds made before these counts existed keep their fingerprint
        if self.rows_per_split:
            data["rows_per_split"] = dict(self.rows_per_split)
        if self.dropped_samples:
            data["dropped_samples"] = {reason: dict(c) for reason, c in self.dropped_samples.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "ShardTally":
        tally = cls(
            found=int(data.get("found", 0)),
            loaded=int(data.get("loaded", 0)),
            loaded_per_split=Counter(data.get("loaded_per_split", {})),
            skipped=Counter(data.get("skipped", {})),
            flagged=Counter(data.get("flagged", {})),
            examples={k: list(v) for k, v in data.get("examples", {}).items()},
            lead_order=Counter(data.get("lead_order", {})),
            amplitude_histogram=Counter({int(k): v for k, v in data.get("amplitude_histogram", {}).items()}),
            positives={split: Counter(c) for split, c in data.get("positives", {}).items()},
            # shards written before rows were counted hold one row per loaded record
            rows_per_split=Counter(data.get("rows_per_split", data.get("loaded_per_split", {}))),
            dropped_samples={reason: Counter(c) for reason, c in data.get("dropped_samples", {}).items()},
        )
        return tally

    def merge(self, other: "ShardTally") -> None:
        self.found += other.found
        self.loaded += other.loaded
        self.loaded_per_split.update(other.loaded_per_split)
        self.skipped.update(other.skipped)
        self.flagged.update(other.flagged)
        for reason, ids in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(ids[: max(0, MAX_EXAMPLES - len(mine))])
        self.lead_order.update(other.lead_order)
        self.amplitude_histogram.update(other.amplitude_histogram)
        for split, counts in other.positives.items():
            self.positives.setdefault(split, Counter()).update(counts)
        self.rows_per_split.update(other.rows_per_split)
        for reason, counts in other.dropped_samples.items():
            self.dropped_samples.setdefault(reason, Counter()).update(counts)


@dataclass
class BuildSummary:
    """The accounting of one dataset build.

    Attributes:
        dataset: builder name (``"mimic-iv-ecg"``, ``"ptbxl"``, ``"cpsc2018"``, ``"csn"``, ``"code15-test"``).
        root: the dataset root that was read.
        fingerprint: the cache key of the build (root, file listing and options).
        options: the build options that entered the fingerprint.
        records_found: records discovered in the root (before any filtering).
        records_loaded: records written to the dataset.
        loaded_per_split: records written per split.
        rows_per_split: rows written per split: one per record, or one per segment when the build cuts records
            into segments (PhysioNet 2021 ``segment_seconds``).
        dropped_samples: ``{reason: {"records": n, "samples": m}}``: samples of loaded records that no row holds
            (``segment_remainder``: the part after the last full segment), at 500 Hz.
        skipped: record counts per skip reason (see the module docstring).
        flagged: counts of kept records that were resampled, cropped, padded, repaired, ...
        skipped_examples: up to 20 record ids (with a short detail) per skip reason.
        split_file_ids_not_found: ids listed in ``split_files`` that match no record of the root.
        class_positives: per split, the number of positive records (not segments) per class (labelled datasets).
        lead_order_check: per record, which arrangement of aVR/aVL/aVF best satisfies Goldberger's
            equations (``"aVR,aVL,aVF"`` = canonical, i.e. the lead order is right); records whose augmented
            leads are not derived from I and II count as ``"undetermined"``.
        amplitude_mv: quantiles (p05, p50, p95) of the per-record peak-to-peak amplitude of lead II, in mV;
            a median far from 1-3 mV means the units are wrong.
        warnings: human-readable warnings raised by the build (also logged).
        from_cache: True when every shard came from an earlier build.
        build_seconds: wall time of this call.
        created: ISO time stamp.
    """

    dataset: str
    root: str
    fingerprint: str = ""
    options: dict = field(default_factory=dict)
    records_found: int = 0
    records_loaded: int = 0
    loaded_per_split: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    flagged: dict = field(default_factory=dict)
    skipped_examples: dict = field(default_factory=dict)
    rows_per_split: dict = field(default_factory=dict)
    dropped_samples: dict = field(default_factory=dict)
    split_file_ids_not_found: int = 0
    class_positives: dict = field(default_factory=dict)
    lead_order_check: dict = field(default_factory=dict)
    amplitude_mv: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    from_cache: bool = False
    build_seconds: float = 0.0
    created: str = ""

    # ------------------------------------------------------------------ derived
    @property
    def records_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    @property
    def rows(self) -> int:
        """Rows written (equals `records_loaded` unless records were cut into segments)."""
        return int(sum(self.rows_per_split.values())) if self.rows_per_split else self.records_loaded

    def check(self) -> None:
        """Raise `AssertionError` if found != loaded + skipped (a record went missing), or if a split has fewer
        rows than loaded records."""
        if self.records_found != self.records_loaded + self.records_skipped:
            raise AssertionError(
                f"{self.dataset}: {self.records_found} records found but {self.records_loaded} loaded + "
                f"{self.records_skipped} skipped"
            )
        for split, rows in self.rows_per_split.items():
            if rows < self.loaded_per_split.get(split, 0):
                raise AssertionError(
                    f"{self.dataset}: split {split!r} has {rows} rows for {self.loaded_per_split.get(split, 0)} records"
                )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: Mapping) -> "BuildSummary":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BuildSummary":
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    # ------------------------------------------------------------------ display
    def format(self) -> str:
        lines = [
            f"{self.dataset} build summary ({'from cache' if self.from_cache else f'{self.build_seconds:.1f} s'})",
            f"  root:    {self.root}",
            f"  found:   {self.records_found}",
            f"  loaded:  {self.records_loaded}"
            + (f"  ({', '.join(f'{k}: {v}' for k, v in self.loaded_per_split.items())})" if self.loaded_per_split else ""),
            f"  skipped: {self.records_skipped}",
        ]
        for reason in SKIP_REASONS:
            if self.skipped.get(reason):
                examples = self.skipped_examples.get(reason, [])[:3]
                lines.append(f"    {reason:<24} {self.skipped[reason]:>8}   e.g. {'; '.join(examples)}")
        if self.rows_per_split and self.rows_per_split != self.loaded_per_split:
            lines.insert(
                4, f"  rows:    {self.rows}  ({', '.join(f'{k}: {v}' for k, v in self.rows_per_split.items())})"
            )
        for reason, counts in self.dropped_samples.items():
            samples = int(counts.get("samples", 0))
            lines.append(
                f"  dropped samples ({reason}): {samples} ({samples / 500:g} s at 500 Hz) of "
                f"{int(counts.get('records', 0))} loaded records"
            )
        if any(self.flagged.values()):
            lines.append("  flagged (kept): " + ", ".join(f"{k} {v}" for k, v in self.flagged.items() if v))
        if self.split_file_ids_not_found:
            lines.append(f"  ids in split_files not found in the root: {self.split_file_ids_not_found}")
        if self.amplitude_mv:
            lines.append(
                "  lead II peak-to-peak (mV): "
                + ", ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in self.amplitude_mv.items()
                )
            )
        if self.lead_order_check:
            lines.append("  limb-lead order check: " + ", ".join(f"{k}: {v}" for k, v in self.lead_order_check.items()))
        for warning in self.warnings:
            lines.append(f"  WARNING: {warning}")
        return "\n".join(lines)

    __str__ = format

    def log(self, log: logging.Logger | None = None) -> None:
        log = log or logger
        log.info("%s", self.format())
        if self.records_skipped:
            log.warning(
                "%s: %d of %d records were skipped (%s). See the build summary for examples.",
                self.dataset,
                self.records_skipped,
                self.records_found,
                ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v),
            )


def load_build_summary(path: str | os.PathLike) -> BuildSummary:
    """Read a `BuildSummary` from a JSON file or from a directory holding ``build_summary.json``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, SUMMARY_FILENAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No build summary at {path!r} (expected a {SUMMARY_FILENAME} written by a build)")
    return BuildSummary.from_json(path)
