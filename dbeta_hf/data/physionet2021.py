"""PhysioNet/CinC Challenge 2021 training data ("Will Two Do?"): 12-lead ECGs with the 26 scored classes.

Layout (PhysioNet ``challenge-2021/1.0.3``)::

    ROOT/training/<source>/<group>/<record>.hea + <record>.mat

with the sources ``cpsc_2018`` (A*), ``cpsc_2018_extra`` (Q*), ``st_petersburg_incart`` (I*), ``ptb`` (S*),
``ptb-xl`` (HR*), ``georgia`` (E*), ``chapman_shaoxing`` (JS*) and ``ningbo`` (JS*). ROOT may also be the
``training`` folder itself, one source folder, or any folder of such records (the source then comes from the
record-name prefix). Headers are WFDB with comments such as ``# Age: 74`` (``NaN`` or missing when
unknown), ``# Sex: Male`` (``Unknown``) and ``# Dx: 164889003,59118001`` (SNOMED-CT codes); the ``.mat``
files hold a MATLAB v4 ``val`` int16 matrix (format ``16+24``).

Signals, two protocols:

* default (one row per record): sampling rates 257 Hz (INCART), 500 Hz, 1000 Hz (PTB) are resampled to 500 Hz
  by the package's signal code (`dbeta_hf.data.processing.prepare_ecg`); records longer than 10 s keep their
  first 10 s (flagged ``cropped``: INCART records last 30 min, PTB ones up to 2 min), shorter ones are
  zero-padded (``padded``), exactly as the CPSC2018 / CSN builders do; every case is counted in the build summary.
* ``segment_seconds=5`` (fairseq-signals' protocol, which produced the baselines of the paper's Table 1): every
  full, non-overlapping 5 s segment of a record is a row of ``(12, 2500)`` (`segment_rows`), with the record's
  ``record_id``, labels and demographics and its ``segment_index``. fairseq-signals' 2021 preprocessing
  (``fairseq_signals/data/ecg/preprocess/preprocess_physionet2021.py:preprocess``, Jwoo5/fairseq-signals)
  skips records whose header rate is not 500 Hz and records with NaN samples, divides by the ADC gain (mV) and
  saves ``range(0, length, 2500)`` crops that fit entirely; its default ``--subset`` is CPSC2018, CPSC2018_2,
  Georgia, PTB-XL, Chapman-Shaoxing and Ningbo (`FAIRSEQ_SIGNALS_SOURCES`; St Petersburg INCART and PTB are
  left out). The same here: other rates are skipped as ``wrong_sampling_rate``, NaN records as ``nan``,
  records shorter than one segment as ``shorter_than_segment``, the other sources as ``excluded_source``
  (unless ``sources`` is given), and the samples after the last full segment are counted in the summary's
  ``dropped_samples["segment_remainder"]``. Leads are still mapped by name.

Labels: the 26 classes scored by the challenge (`dbeta_hf.evaluation.cinc2021_classes`), with its equivalent-class merges
(complete and plain RBBB, complete and plain LBBB, PAC / SVPB, PVC / VPB). Class names are the
abbreviations (``"CRBBB|RBBB"``); the SNOMED names of the challenge's weights file are in the dataset
metadata (``snomed_ct``), and `cinc2021_challenge_score` accepts either. Codes the challenge does not score
are ignored; records carrying them are flagged ``unknown_codes`` and the codes are counted in the summary's
warnings. Records without any scored class are **kept** with an all-zero label by default (the challenge
and fairseq-signals score every record); ``drop_unlabeled=True`` drops them as ``no_label``.

Extra columns: ``source`` (folder name above), ``age`` (float, None when unknown) and ``sex`` (``"Male"``,
``"Female"`` or ``"Unknown"``).

Splits are by record: all segments of a record are in its split. The challenge's test data is hidden, so
benchmarks split the training data. With ``split_files``: fairseq-signals manifests (``train.tsv`` /
``valid.tsv`` / ``test.tsv``, first line the data folder, then ``<path>/<record>_<crop>.mat<TAB><samples>``
lines; the crop suffix is dropped, and a record's segments are all taken), a folder holding them, or CSV files
with a record column, as for the other builders. fairseq-signals' ``manifest.py`` shuffles segment files, not
records, so its manifests can put segments of one record into two splits; such manifests are refused (rebuild
them with ``manifest_physionet2021.py --group-by _``, which keeps a record's segments together). Without split
files: a seeded split stratified by each record's rarest scored class (80 / 10 / 10 by default,
fairseq-signals' proportions), see `dbeta_hf.data.splits.stratified_split`.

Patient identity: the 2021 headers carry no patient id (fairseq-signals numbers every recording as its own
"patient"), so the patient-identification rows of the paper's Table 1 cannot be built from these files;
see the README.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import Features, Value

from ..evaluation.cinc2021_classes import cinc2021_scored_classes
from ._common import check_root, finish, record_file_states
from .build import BuildPlan
from .features import SAMPLING_RATE, ecg_feature, labels_feature, make_info
from .physionet_challenge import ChallengeSource, _discover, _raise_if_unreadable, parse_dx_codes
from .processing import SignalOptions, prepare_ecg, read_wfdb_record
from .splits import ordered_split_names, read_split_files, record_stem, stratified_split
from .summary import (
    DUPLICATE_RECORD,
    EXCLUDED_SOURCE,
    NO_LABEL,
    NOT_IN_SPLIT_FILES,
    SEGMENT_REMAINDER,
    SHORTER_THAN_SEGMENT,
    RecordSkipped,
    ShardTally,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PHYSIONET2021_SOURCES",
    "FAIRSEQ_SIGNALS_SOURCES",
    "segment_num_samples",
    "segment_rows",
    "physionet2021_class_table",
    "parse_age_sex",
    "read_fairseq_manifest",
    "build_physionet2021_plan",
    "load_physionet2021",
]

# Source folder of the challenge's training set -> record-name prefix.
PHYSIONET2021_SOURCES: dict[str, str] = {
    "cpsc_2018": "A",
    "cpsc_2018_extra": "Q",
    "st_petersburg_incart": "I",
    "ptb": "S",
    "ptb-xl": "HR",
    "georgia": "E",
    "chapman_shaoxing": "JS",
    "ningbo": "JS",
}
# fairseq-signals' default `--subset` of preprocess_physionet2021.py, in the folder names of PhysioNet's
# challenge-2021 release (which later versions of the script use; earlier ones: WFDB_CPSC2018, WFDB_CPSC2018_2,
# WFDB_Ga, WFDB_PTBXL, WFDB_ChapmanShaoxing, WFDB_Ningbo).
FAIRSEQ_SIGNALS_SOURCES = ("cpsc_2018", "cpsc_2018_extra", "georgia", "ptb-xl", "chapman_shaoxing", "ningbo")
# Chapman-Shaoxing records are JS00001-JS10646, Ningbo ones JS10647 onwards.
_LAST_CHAPMAN_SHAOXING = 10646
SPLIT_ID_COLUMNS = ("record_id", "record_name", "filename", "file_name", "ecg_path", "path", "record")
HINT = (
    "Pass the PhysioNet/CinC 2021 folder that holds training/<source>/<group>/<record>.hea + .mat (or the training "
    "folder, or one source folder)."
)
META = {
    "homepage": "https://physionet.org/content/challenge-2021/1.0.3/",
    "citation": "Reyna, M. A., Sadr, N., Perez Alday, E. A., et al. (2021). Will Two Do? Varying Dimensions in "
    "Electrocardiography: The PhysioNet/Computing in Cardiology Challenge 2021. Computing in Cardiology 48.",
    "license": "CC BY 4.0",
}


def physionet2021_class_table() -> dict[str, list[str]]:
    """``{abbreviation: [snomed codes]}`` of the 26 scored classes, in the weights file's order."""
    return {cls.abbreviation: list(cls.codes) for cls in cinc2021_scored_classes()}


def _header_value(header_text: str, key: str) -> str | None:
    for line in header_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            name, sep, value = stripped.lstrip("#").partition(":")
            if sep and name.strip().lower() == key:
                return value.strip()
    return None


def parse_age_sex(header_text: str) -> tuple[float | None, str]:
    """``(age, sex)`` of the ``# Age:`` / ``# Sex:`` comments: age None when missing, ``NaN``, negative or not a
    number; sex ``"Male"`` / ``"Female"`` (``M``/``F`` and any case accepted) or ``"Unknown"``."""
    age_text = _header_value(header_text, "age")
    try:
        age = float(age_text) if age_text is not None else None
    except ValueError:
        age = None
    if age is not None and not (0 <= age < 150):  # NaN fails both comparisons
        age = None
    sex_text = (_header_value(header_text, "sex") or "").strip().lower()
    sex = {"male": "Male", "m": "Male", "female": "Female", "f": "Female"}.get(sex_text, "Unknown")
    return age, sex


def segment_num_samples(segment_seconds: float) -> int:
    """Samples of one segment at 500 Hz (5 s -> 2500); the length must be a whole number of samples."""
    try:
        seconds = float(segment_seconds)
    except (TypeError, ValueError):
        raise ValueError(f"segment_seconds must be a number of seconds such as 5, got {segment_seconds!r}") from None
    samples = seconds * SAMPLING_RATE
    if not math.isfinite(seconds) or seconds <= 0 or round(samples) < 1 or abs(samples - round(samples)) > 1e-6:
        raise ValueError(
            f"segment_seconds must be positive and a whole number of samples at {SAMPLING_RATE} Hz (e.g. 5 -> 2500), "
            f"got {segment_seconds!r}"
        )
    return int(round(samples))


def segment_rows(ecg, segment_samples: int) -> tuple[list, int]:
    """``(segments, remainder)``: every full, non-overlapping `segment_samples`-long piece of `ecg` (leads,
    samples), from the start, and the number of samples after the last one (dropped)."""
    count = ecg.shape[-1] // segment_samples
    pieces = [ecg[..., i * segment_samples:(i + 1) * segment_samples] for i in range(count)]
    return pieces, ecg.shape[-1] - count * segment_samples


def _source_of(relative: Path) -> str:
    for part in relative.parts[:-1]:
        if part.lower() in PHYSIONET2021_SOURCES:
            return part.lower()
    match = re.match(r"([A-Za-z]+)(\d+)", relative.stem)
    if match:
        prefix, number = match.group(1).upper(), int(match.group(2))
        if prefix == "JS":
            return "chapman_shaoxing" if number <= _LAST_CHAPMAN_SHAOXING else "ningbo"
        for source, source_prefix in PHYSIONET2021_SOURCES.items():
            if prefix == source_prefix:
                return source
    return "unknown"


def read_fairseq_manifest(path: str | os.PathLike) -> list[str]:
    """Record ids of a fairseq-signals manifest (``train.tsv``): the first line is the data folder, every other
    line ``<relative path><TAB><num samples>``; ``cpsc_2018/A0001_0.mat`` (5 s crop 0 of A0001) -> ``A0001``."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise ValueError(f"fairseq-signals manifest {os.fspath(path)!r} is empty")
    ids = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        stem = record_stem(line.split("\t")[0])
        record = re.sub(r"_\d+$", "", stem)
        if not record:
            raise ValueError(f"{os.fspath(path)}:{number}: cannot read a record name from {line!r}")
        ids.append(record)
    return list(dict.fromkeys(ids))


def _read_physionet2021_split_files(split_files, split_id_column):
    try:
        return read_split_files(_split_file_mapping(split_files), SPLIT_ID_COLUMNS, record_stem, id_column=split_id_column)
    except ValueError as error:
        if "listed in two splits" not in str(error):
            raise
        raise ValueError(
            f"{error}. fairseq-signals manifests made by manifest.py split the 5 s segment files, not the records, so "
            "segments of one record can land in two splits; this builder keeps every record in one split. Rebuild "
            "the manifests with fairseq-signals' manifest_physionet2021.py --group-by _ (or use the default "
            "stratified split)"
        ) from None


def _split_file_mapping(split_files) -> Any:
    """fairseq-signals manifests (a folder with train.tsv / valid.tsv / test.tsv, or .tsv paths) -> id lists;
    anything else is passed on to `read_split_files` (CSV files)."""
    if isinstance(split_files, (str, os.PathLike)):
        folder = Path(split_files)
        manifests = {name: folder / f"{name}.tsv" for name in ("train", "valid", "test")}
        if folder.is_dir() and manifests["train"].is_file():
            missing = [str(p) for p in manifests.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"fairseq-signals manifest folder {os.fspath(folder)!r} lacks {missing}")
            return {name: read_fairseq_manifest(p) for name, p in manifests.items()}
        return split_files
    if isinstance(split_files, Mapping):
        return {
            split: read_fairseq_manifest(value) if isinstance(value, (str, os.PathLike)) and str(value).endswith(".tsv") else value
            for split, value in split_files.items()
        }
    return split_files


class PhysioNet2021Source(ChallengeSource):
    """`ChallengeSource` (header labels, signal pipeline) plus the ``source``, ``age`` and ``sex`` columns; with
    `segment_samples`, one row per full segment (``segment_index`` column) instead of one per record."""

    def __init__(self, root: str, options: SignalOptions, segment_samples: int | None = None):
        super().__init__("physionet2021", root, options, physionet2021_class_table())
        self.segment_samples = segment_samples
        segment_columns = {"segment_index": Value("int32")} if segment_samples else {}
        self.features = Features(
            {
                "record_id": Value("string"),
                **segment_columns,
                "source": Value("string"),
                "age": Value("float32"),
                "sex": Value("string"),
                "ecg": ecg_feature(options.num_samples),
                "labels": labels_feature(len(self.class_names)),
            }
        )
        segment_metadata = (
            {"segment_seconds": segment_samples / SAMPLING_RATE, "segment_samples": segment_samples}
            if segment_samples else {}
        )
        title = "PhysioNet/CinC Challenge 2021 training data: the 26 scored classes from the '# Dx' SNOMED-CT codes"
        if segment_samples:
            title += f"; every full {segment_samples / SAMPLING_RATE:g} s segment of a record is a row"
        self.info = make_info(
            features=self.features,
            dataset="physionet2021",
            title=title + ".",
            metadata={
                "class_names": self.class_names,
                "snomed_ct": [cls.name for cls in cinc2021_scored_classes()],
                "class_descriptions": ["|".join(cls.descriptions) for cls in cinc2021_scored_classes()],
                **segment_metadata,
            },
            **META,
        )

    def read(self, task: Mapping[str, Any]):
        if not self.segment_samples:
            row, flags, stats = super().read(task)
            row.update(source=task["source"], age=task["age"], sex=task["sex"])
            return row, flags, stats
        return self._read_segments(task)

    def _read_segments(self, task: Mapping[str, Any]):
        path = os.path.join(self.root, task["path"])
        labels, unknown = self.labels_from_header(path)
        flags = ["unknown_codes"] if unknown else []
        if task.get("drop_unlabeled", True) and not any(v > 0.5 for v in labels):
            _raise_if_unreadable(path)
            raise RecordSkipped(NO_LABEL, "no code of the selected classes")
        signal, fs, lead_names, units = read_wfdb_record(path, self.root)
        try:  # the whole record at 500 Hz; prepare_ecg reports an invalid rate itself
            length = max(1, int(math.ceil(signal.shape[-1] * SAMPLING_RATE / float(fs))))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            length = 1
        whole = replace(self.options, num_samples=length, min_num_samples=None)
        ecg, more_flags, stats = prepare_ecg(signal, fs, lead_names, units, whole)
        pieces, remainder = segment_rows(ecg, self.segment_samples)
        if not pieces:
            raise RecordSkipped(
                SHORTER_THAN_SEGMENT,
                f"{ecg.shape[-1]} samples at {SAMPLING_RATE} Hz ({ecg.shape[-1] / SAMPLING_RATE:g} s) < one "
                f"{self.segment_samples / SAMPLING_RATE:g} s segment",
            )
        common = {"record_id": task["id"], "source": task["source"], "age": task["age"], "sex": task["sex"]}
        rows = [{**common, "segment_index": i, "ecg": piece, "labels": labels} for i, piece in enumerate(pieces)]
        stats = {**stats, "dropped_samples": {SEGMENT_REMAINDER: remainder} if remainder else {}}
        return rows, flags + more_flags, stats


def _scan_header(path: Path, code_to_index: Mapping[str, int]) -> dict:
    """Plan-time facts of one header: scored class indices, unscored codes, age, sex (None when unreadable:
    the record is then read, and skipped with its reason, by the source)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return {"classes": None, "unscored": [], "age": None, "sex": "Unknown"}
    codes = parse_dx_codes(text) or []
    age, sex = parse_age_sex(text)
    return {
        "classes": sorted({code_to_index[c] for c in codes if c in code_to_index}),
        "unscored": [c for c in codes if c not in code_to_index],
        "age": age,
        "sex": sex,
    }


def build_physionet2021_plan(
    root,
    *,
    sources: Sequence[str] | None = None,
    split_files=None,
    split_id_column: str | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    drop_unlabeled: bool = False,
    signal_options: SignalOptions | None = None,
    segment_seconds: float | None = None,
) -> BuildPlan:
    """Find and scan the headers below `root` and plan the build (see the module docstring).

    With `segment_seconds`, `sources` defaults to `FAIRSEQ_SIGNALS_SOURCES` and `signal_options` to 500 Hz only
    (``resample=False``), rows of ``segment_seconds * 500`` samples.
    """
    root_path = check_root(root, "PhysioNet/CinC 2021", [], HINT)
    segment_samples = segment_num_samples(segment_seconds) if segment_seconds is not None else None
    if segment_samples and sources is None:
        sources = list(FAIRSEQ_SIGNALS_SOURCES)
    if sources is not None:
        sources = [str(s).lower() for s in sources]
        unknown = [s for s in sources if s not in PHYSIONET2021_SOURCES]
        if unknown:
            raise ValueError(f"unknown PhysioNet 2021 source(s) {unknown}; choose from {list(PHYSIONET2021_SOURCES)}")
    if segment_samples:
        options = signal_options or SignalOptions(
            num_samples=segment_samples, min_num_samples=None, resample=False, flat_lead_policy="keep"
        )
        if options.num_samples != segment_samples:
            raise ValueError(
                f"signal_options.num_samples={options.num_samples} must equal the segment length ({segment_samples} "
                f"samples = {segment_seconds} s at {SAMPLING_RATE} Hz)"
            )
        if options.min_num_samples is not None:
            raise ValueError(
                "min_num_samples does not apply to segments: a record shorter than one segment is skipped as "
                "shorter_than_segment, and no segment is padded"
            )
    else:
        options = signal_options or SignalOptions(flat_lead_policy="keep", min_num_samples=None)
    headers = _discover(root_path)
    if not headers:
        raise FileNotFoundError(f"PhysioNet/CinC 2021: no WFDB headers (*.hea) found under {os.fspath(root_path)!r}. {HINT}")
    planning = ShardTally()
    records, listing, unscored = _scan_records(root_path, headers, sources, planning)
    if split_files is not None:
        sf = _read_physionet2021_split_files(split_files, split_id_column)
        split_of, split_names = sf.split_of, ordered_split_names(sf.ids)
    else:
        sf = None
        ids = sorted(records)
        strata = _rarest_class_strata({r: records[r]["classes"] for r in ids})
        split_of, split_names = stratified_split(ids, strata, split_fractions, seed), ["train", "validation", "test"]
    splits = _physionet2021_tasks(root_path, records, split_of, split_names, drop_unlabeled, planning)
    not_found = len(set(split_of) - set(records)) if sf is not None else 0
    user_options = {
        "classes": list(physionet2021_class_table()),
        "sources": sources,
        "split_files": sf.sources if sf is not None else None,
        "split_fractions": list(split_fractions) if sf is None else None,
        "seed": seed if sf is None else None,
        "drop_unlabeled": drop_unlabeled,
        "signal": options.to_dict(),
    }
    if segment_samples:  # only then, so that the default build keeps the fingerprint of earlier versions
        user_options["segment_seconds"] = segment_samples / SAMPLING_RATE
    return BuildPlan(
        source=PhysioNet2021Source(os.fspath(root_path), options, segment_samples),
        root=os.fspath(root_path),
        splits=splits,
        options=user_options,
        fingerprint_inputs={"headers": listing},
        planning=planning,
        split_file_ids_not_found=not_found,
        warnings=_physionet2021_warnings(not_found, unscored),
    )


def _scan_records(root_path: Path, headers: list[Path], sources, planning: ShardTally):
    """``({record id: facts}, header listing, unscored code counts)``. Records of other sources and duplicated
    record names are counted in `planning`; the listing (path, size, mtime_ns) covers every header."""
    code_to_index = {code: i for i, codes in enumerate(physionet2021_class_table().values()) for code in codes}
    records: dict[str, dict] = {}
    listing = []
    unscored = {"codes": Counter(), "records": 0}
    for header in headers:
        record_id = header.stem
        relative = header.relative_to(root_path)
        stat = header.stat()
        listing.append((os.fspath(relative), stat.st_size, stat.st_mtime_ns))
        source = _source_of(relative)
        if sources is not None and source not in sources:
            planning.skip(record_id, EXCLUDED_SOURCE, source)
            continue
        if record_id in records:
            planning.skip(record_id, DUPLICATE_RECORD, f"{header} (kept {records[record_id]['path']})")
            continue
        facts = _scan_header(header, code_to_index)
        if facts["unscored"]:
            unscored["records"] += 1
            unscored["codes"].update(facts["unscored"])
        records[record_id] = {"path": os.fspath(relative.with_suffix("")), "source": source, **facts}
    return records, listing, unscored


def _physionet2021_tasks(root_path: Path, records, split_of, split_names, drop_unlabeled: bool, planning) -> dict:
    splits: dict[str, list] = {name: [] for name in split_names}
    for record_id in sorted(records):
        split = split_of.get(record_id)
        if split is None:
            planning.skip(record_id, NOT_IN_SPLIT_FILES)
            continue
        facts = records[record_id]
        splits[split].append(
            {
                "id": record_id,
                "path": facts["path"],
                "source": facts["source"],
                "age": facts["age"],
                "sex": facts["sex"],
                "drop_unlabeled": drop_unlabeled,
                "files": record_file_states(root_path, facts["path"], (".hea", ".mat")),
            }
        )
    return splits


def _physionet2021_warnings(not_found: int, unscored: Mapping[str, Any]) -> list[str]:
    warnings = [f"{not_found} record ids of the split files are not under the root"] if not_found else []
    codes = unscored["codes"]
    if codes:
        top = ", ".join(f"{code} x{count}" for code, count in codes.most_common(10))
        warnings.append(
            f"{unscored['records']} records carry {sum(codes.values())} codes the challenge does not score "
            f"({len(codes)} distinct; ignored): {top}"
        )
    return warnings


def _rarest_class_strata(classes: Mapping[str, list[int] | None]) -> dict[str, str]:
    counts = Counter(c for indices in classes.values() if indices for c in indices)
    strata = {}
    for record_id, indices in classes.items():
        if indices is None:
            strata[record_id] = "unreadable"
        elif not indices:
            strata[record_id] = "none"
        else:
            strata[record_id] = str(min(indices, key=lambda c: (counts[c], c)))
    return strata


def load_physionet2021(
    root,
    *,
    sources: Sequence[str] | None = None,
    num_proc: int | None = None,
    cache_dir=None,
    split_files=None,
    split_id_column: str | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    drop_unlabeled: bool = False,
    min_num_samples: int | None = None,
    nan_policy: str = "skip",
    flat_lead_policy: str = "keep",
    flat_tolerance: float = 1e-6,
    shard_size: int | None = None,
    force_rebuild: bool = False,
    return_summary: bool = False,
    segment_seconds: float | None = None,
):
    """Build a `DatasetDict` (train / validation / test) from the PhysioNet/CinC Challenge 2021 training data.

    Columns: ``record_id`` (``A0001``, ``HR00001``, ...), ``source``, ``age``, ``sex``, ``ecg`` ((12, 5000)
    float16 mV at 500 Hz, the first 10 s, zero-padded when shorter) and ``labels`` (26 scored classes,
    multi-hot float32; names from `dataset_class_names`). With ``segment_seconds=5``: one row per full 5 s
    segment, ``ecg`` (12, 2500), plus ``segment_index`` (0, 1, ... within the record; ``record_id`` names the
    record). See the module docstring for the layout, labels, protocols and splits.

    Args:
        root: the data folder (``training/<source>/...`` below it, or a folder of records).
        sources: keep only these source folders (e.g. fairseq-signals' default leaves out
            ``st_petersburg_incart`` and ``ptb``); the others are counted as ``excluded_source``. Default: all, or
            `FAIRSEQ_SIGNALS_SOURCES` with `segment_seconds`.
        segment_seconds: cut every record into its full, non-overlapping segments of this length (fairseq-signals'
            protocol: 5); records not at 500 Hz are skipped (``wrong_sampling_rate``), shorter ones too
            (``shorter_than_segment``), the rest after the last segment is counted (``dropped_samples``).
            None (default): the first 10 s of every record, one row each.
        split_files: fairseq-signals manifests (a folder with ``train.tsv`` / ``valid.tsv`` / ``test.tsv``,
            or ``{split: path.tsv}``) or CSV split files (``{split: path.csv}``, a record-name column).
        split_fractions, seed: the default stratified split (train, validation, test).
        drop_unlabeled: drop records without a scored class (default: keep them, all-zero labels).
        min_num_samples, nan_policy, flat_lead_policy, flat_tolerance, num_proc, cache_dir, shard_size,
        force_rebuild, return_summary: see `load_mimic_iv_ecg`.
    """
    if segment_seconds is not None:
        if min_num_samples is not None:
            raise ValueError(
                "min_num_samples does not apply with segment_seconds: records shorter than one segment are skipped "
                "(shorter_than_segment) and no segment is padded"
            )
        options = SignalOptions(
            num_samples=segment_num_samples(segment_seconds),
            min_num_samples=None,
            resample=False,
            nan_policy=nan_policy,
            flat_lead_policy=flat_lead_policy,
            flat_tolerance=flat_tolerance,
        )
    else:
        options = SignalOptions(
            min_num_samples=min_num_samples,
            nan_policy=nan_policy,
            flat_lead_policy=flat_lead_policy,
            flat_tolerance=flat_tolerance,
        )
    plan = build_physionet2021_plan(
        root,
        sources=sources,
        split_files=split_files,
        split_id_column=split_id_column,
        split_fractions=split_fractions,
        seed=seed,
        drop_unlabeled=drop_unlabeled,
        signal_options=options,
        segment_seconds=segment_seconds,
    )
    return finish(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size,
        force_rebuild=force_rebuild,
        return_summary=return_summary,
    )
