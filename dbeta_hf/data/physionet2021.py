"""PhysioNet/CinC Challenge 2021 training data ("Will Two Do?"): 12-lead ECGs with the 26 scored classes.

Layout (PhysioNet ``challenge-2021/1.0.3``)::

    ROOT/training/<source>/<group>/<record>.hea + <record>.mat

with the sources ``cpsc_2018`` (A*), ``cpsc_2018_extra`` (Q*), ``st_petersburg_incart`` (I*), ``ptb`` (S*),
``ptb-xl`` (HR*), ``georgia`` (E*), ``chapman_shaoxing`` (JS*) and ``ningbo`` (JS*). ROOT may also be the
``training`` folder itself, one source folder, or any folder of such records (the source then comes from the
record-name prefix). Headers are WFDB with comments such as ``# Age: 74`` (``NaN`` or missing when
unknown), ``# Sex: Male`` (``Unknown``) and ``# Dx: 164889003,59118001`` (SNOMED-CT codes); the ``.mat``
files hold a MATLAB v4 ``val`` int16 matrix (format ``16+24``).

Signals: sampling rates 257 Hz (INCART), 500 Hz, 1000 Hz (PTB) are resampled to 500 Hz by the package's
signal code (`dbeta_hf.data.processing.prepare_ecg`); records longer than 10 s keep their first 10 s
(flagged ``cropped``: INCART records last 30 min, PTB ones up to 2 min), shorter ones are zero-padded
(``padded``), exactly as the CPSC2018 / CSN builders do; every case is counted in the build summary.

Labels: the 26 classes scored by the challenge (`dbeta_hf.evaluation.cinc2021_classes`), with its equivalent-class merges
(complete and plain RBBB, complete and plain LBBB, PAC / SVPB, PVC / VPB). Class names are the
abbreviations (``"CRBBB|RBBB"``); the SNOMED names of the challenge's weights file are in the dataset
metadata (``snomed_ct``), and `cinc2021_challenge_score` accepts either. Codes the challenge does not score
are ignored; records carrying them are flagged ``unknown_codes`` and the codes are counted in the summary's
warnings. Records without any scored class are **kept** with an all-zero label by default (the challenge
and fairseq-signals score every record); ``drop_unlabeled=True`` drops them as ``no_label``.

Extra columns: ``source`` (folder name above), ``age`` (float, None when unknown) and ``sex`` (``"Male"``,
``"Female"`` or ``"Unknown"``).

Splits: the challenge's test data is hidden, so benchmarks split the training data. With ``split_files``:
fairseq-signals manifests (``train.tsv`` / ``valid.tsv`` / ``test.tsv``, first line the data folder, then
``<path>/<record>_<crop>.mat<TAB><samples>`` lines; the crop suffix is dropped, so the split is by record), a
folder holding them, or CSV files with a record column, as for the other builders. Without: a seeded split
stratified by each record's rarest scored class (80 / 10 / 10 by default, fairseq-signals' proportions), see
`dbeta_hf.data.splits.stratified_split`.

Patient identity: the 2021 headers carry no patient id (fairseq-signals numbers every recording as its own
"patient"), so the patient-identification rows of the paper's Table 1 cannot be built from these files;
see the README.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

from datasets import Features, Value

from ..evaluation.cinc2021_classes import cinc2021_scored_classes
from ._common import check_root, finish, record_file_states
from .build import BuildPlan
from .features import ecg_feature, labels_feature, make_info
from .physionet_challenge import ChallengeSource, _discover, parse_dx_codes
from .processing import SignalOptions
from .splits import ordered_split_names, read_split_files, record_stem, stratified_split
from .summary import DUPLICATE_RECORD, EXCLUDED_SOURCE, NOT_IN_SPLIT_FILES, ShardTally

logger = logging.getLogger(__name__)

__all__ = [
    "PHYSIONET2021_SOURCES",
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
    """`ChallengeSource` (header labels, signal pipeline) plus the ``source``, ``age`` and ``sex`` columns."""

    def __init__(self, root: str, options: SignalOptions):
        super().__init__("physionet2021", root, options, physionet2021_class_table())
        self.features = Features(
            {
                "record_id": Value("string"),
                "source": Value("string"),
                "age": Value("float32"),
                "sex": Value("string"),
                "ecg": ecg_feature(options.num_samples),
                "labels": labels_feature(len(self.class_names)),
            }
        )
        self.info = make_info(
            features=self.features,
            dataset="physionet2021",
            title="PhysioNet/CinC Challenge 2021 training data: the 26 scored classes from the '# Dx' SNOMED-CT codes.",
            metadata={
                "class_names": self.class_names,
                "snomed_ct": [cls.name for cls in cinc2021_scored_classes()],
                "class_descriptions": ["|".join(cls.descriptions) for cls in cinc2021_scored_classes()],
            },
            **META,
        )

    def read(self, task: Mapping[str, Any]):
        row, flags, stats = super().read(task)
        row.update(source=task["source"], age=task["age"], sex=task["sex"])
        return row, flags, stats


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
) -> BuildPlan:
    """Find and scan the headers below `root` and plan the build (see the module docstring)."""
    root_path = check_root(root, "PhysioNet/CinC 2021", [], HINT)
    if sources is not None:
        sources = [str(s).lower() for s in sources]
        unknown = [s for s in sources if s not in PHYSIONET2021_SOURCES]
        if unknown:
            raise ValueError(f"unknown PhysioNet 2021 source(s) {unknown}; choose from {list(PHYSIONET2021_SOURCES)}")
    options = signal_options or SignalOptions(flat_lead_policy="keep", min_num_samples=None)
    headers = _discover(root_path)
    if not headers:
        raise FileNotFoundError(f"PhysioNet/CinC 2021: no WFDB headers (*.hea) found under {os.fspath(root_path)!r}. {HINT}")
    planning = ShardTally()
    records, listing, unscored = _scan_records(root_path, headers, sources, planning)
    if split_files is not None:
        sf = read_split_files(_split_file_mapping(split_files), SPLIT_ID_COLUMNS, record_stem, id_column=split_id_column)
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
    return BuildPlan(
        source=PhysioNet2021Source(os.fspath(root_path), options),
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
):
    """Build a `DatasetDict` (train / validation / test) from the PhysioNet/CinC Challenge 2021 training data.

    Columns: ``record_id`` (``A0001``, ``HR00001``, ...), ``source``, ``age``, ``sex``, ``ecg`` ((12, 5000)
    float16 mV at 500 Hz, the first 10 s, zero-padded when shorter) and ``labels`` (26 scored classes,
    multi-hot float32; names from `dataset_class_names`). See the module docstring for the layout, labels and
    splits.

    Args:
        root: the data folder (``training/<source>/...`` below it, or a folder of records).
        sources: keep only these source folders (e.g. fairseq-signals' default leaves out
            ``st_petersburg_incart`` and ``ptb``); the others are counted as ``excluded_source``.
        split_files: fairseq-signals manifests (a folder with ``train.tsv`` / ``valid.tsv`` / ``test.tsv``,
            or ``{split: path.tsv}``) or CSV split files (``{split: path.csv}``, a record-name column).
        split_fractions, seed: the default stratified split (train, validation, test).
        drop_unlabeled: drop records without a scored class (default: keep them, all-zero labels).
        min_num_samples, nan_policy, flat_lead_policy, flat_tolerance, num_proc, cache_dir, shard_size,
        force_rebuild, return_summary: see `load_mimic_iv_ecg`.
    """
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
    )
    return finish(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size,
        force_rebuild=force_rebuild,
        return_summary=return_summary,
    )
