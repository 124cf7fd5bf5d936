"""Command line: ``python -m dbeta_hf.data build DATASET ROOT --output DIR``. See ``--help``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from contextlib import suppress
from pathlib import Path

import datasets

from ..utils.atomic import publish_dir, temp_path
from ..utils.output_ownership import (
    MARKER_NAME,
    OutputLock,
    OutputLockedError,
    OwnedOutput,
    open_owned_output,
)
from .build import build_dir_for, compute_fingerprint, options_as_json, remove_build, run_build
from .code15 import CODE_TEST_LEAD_NAMES, build_code15_test_plan
from .mimic_iv_ecg import build_mimic_iv_ecg_plan
from .physionet2021 import build_physionet2021_plan, segment_num_samples
from .physionet_challenge import build_physionet_challenge_plan
from .processing import SignalOptions
from .ptbxl import build_ptbxl_plan
from .summary import SUMMARY_FILENAME, BuildSummary, load_build_summary

logger = logging.getLogger("dbeta_hf.data")

DATASETS = ("mimic-iv-ecg", "ptbxl", "cpsc2018", "csn", "code15-test", "physionet2021")
WORK_DIR_NAME = ".dbeta_build"
TOOL = "dbeta_hf.data build"  # the owner recorded in OUTPUT/.dbeta_owner.json
DATASET_DICT_FILE = "dataset_dict.json"
STAGING_NAME = ".dbeta_publish"  # the dataset is saved here (a temporary name) and then moved into place
OUTPUT_HINT = "Choose another --output, or move those entries away (--force never deletes what a build did not write)."

MAIN_DESCRIPTION = """\
Build Hugging Face datasets (Arrow, memory-mapped) from local copies of the D-BETA datasets.

The saved dataset is a DatasetDict: load it with datasets.load_from_disk(DIR). Every ECG is stored as
ecg = (12, 5000) float16 millivolts, leads I, II, III, aVR, aVL, aVF, V1-V6, 500 Hz ((12, 2500) for
physionet2021 --segment-seconds 5).
Records that cannot be used are skipped and counted by reason in DIR/build_summary.json."""

MAIN_EPILOG = """\
examples:
  python -m dbeta_hf.data build mimic-iv-ecg /data/mimic-iv-ecg/1.0 --output /data/hf/mimic --num-proc 16
  python -m dbeta_hf.data build ptbxl /data/ptb-xl/1.0.3 --task rhythm --output /data/hf/ptbxl-rhythm
  python -m dbeta_hf.data build ptbxl /data/ptb-xl/1.0.3 --task super --split-dir MERL/data_split/ptbxl/super_class \\
      --output /data/hf/ptbxl-super-merl
  python -m dbeta_hf.data build cpsc2018 /data/cpsc2018/Training_WFDB --output /data/hf/cpsc2018
  python -m dbeta_hf.data build csn /data/ecg-arrhythmia/1.0.0 --output /data/hf/csn
  python -m dbeta_hf.data build code15-test /data/code-test/data --output /data/hf/code15-test
  python -m dbeta_hf.data build physionet2021 /data/challenge-2021/1.0.3 --output /data/hf/physionet2021 --num-proc 16
  python -m dbeta_hf.data build physionet2021 /data/challenge-2021/1.0.3 --segment-seconds 5 \
      --output /data/hf/physionet2021-5s --num-proc 16
  python -m dbeta_hf.data summary /data/hf/ptbxl-rhythm

  python -m dbeta_hf.data build DATASET --help   shows the expected layout and the options of DATASET."""

BUILD_EPILOG = """\
Interrupting and resuming: records are read in shards (--shard-size records each); every finished shard is
saved under OUTPUT/.dbeta_build (or --work-dir) and skipped when the same command runs again. When all
shards exist they are concatenated and saved to OUTPUT; the shards are then deleted (--keep-shards keeps
them). Running a finished command again does nothing; after a header or signal file changed it rebuilds.
--force rebuilds every shard and replaces a dataset built with other options.

The output is owned: OUTPUT/.dbeta_owner.json lists what builds wrote there. A build refuses an OUTPUT that
holds anything else (listing every such entry) and never deletes it, with or without --force. One build at a
time: OUTPUT/_dbeta_lock.json names the running build (PID, host); a second one is refused, and a lock left by
a killed build is reported and taken over."""

DESCRIPTIONS = {
    "mimic-iv-ecg": """\
MIMIC-IV-ECG v1.0 (pretraining pairs). ROOT is the release folder:
  ROOT/record_list.csv, ROOT/machine_measurements.csv, ROOT/files/p1000/p10000032/s40689238/40689238.{hea,dat}
Columns: study_id, subject_id, ecg, report (non-empty report_0..report_17 joined with spaces).
Splits: train / validation by patient (subject_id), deterministic. Records with NaN samples or a flat lead
are skipped by default (about 1.5 %).""",
    "ptbxl": """\
PTB-XL 1.0.x. ROOT holds ptbxl_database.csv, scp_statements.csv and records500/ (records100/).
Columns: ecg_id, ecg, labels (multi-hot, class names in the dataset info), report.
Tasks: super (5), sub (23), form (19), rhythm (12), all (71); labels as the standard benchmark (every
statement of scp_codes, whatever its likelihood). Splits: strat_fold 1-8 / 9 / 10, or --split-files.""",
    "cpsc2018": """\
CPSC 2018 in the PhysioNet/CinC 2020 WFDB conversion: ROOT/**/A0001.hea + A0001.mat with '#Dx:' SNOMED-CT codes.
Columns: record_id, ecg (first 10 s; shorter records zero-padded), labels over
AFIB, VPC, NORM, 1AVB, CRBBB, STE, PAC, CLBBB, STD. No official split: seeded 70/10/20 split by record
unless --split-files (e.g. MERL's icbeb_{train,val,test}.csv, id column 'filename').""",
    "csn": """\
Chapman-Shaoxing-Ningbo (PhysioNet ecg-arrhythmia 1.0.0): ROOT/WFDBRecords/01/010/JS00001.hea + .mat with
'#Dx:' SNOMED-CT codes. Columns: record_id, ecg, labels over the 38 benchmark classes (--classes all for
every class of the table). No official split: seeded 70/10/20 split unless --split-files (MERL's
chapman_*.csv, id column 'ecg_path').""",
    "code15-test": """\
CODE-15 test set (CODE-test, zenodo 3765780): ROOT/ecg_tracings.hdf5 ('tracings', 827 x 4096 x 12, 400 Hz)
and ROOT/annotations/gold_standard.csv. Resampled to 500 Hz (5120 samples), first 5000 kept.
Columns: record_id (row), ecg, labels over 1dAVb, RBBB, LBBB, SB, AF, ST. One split: test.
Needs h5py.""",
    "physionet2021": """\
PhysioNet/CinC Challenge 2021 training data: ROOT/training/<source>/<group>/<record>.hea + .mat ('# Dx:'
SNOMED-CT codes, '# Age:', '# Sex:'); sources cpsc_2018, cpsc_2018_extra, st_petersburg_incart, ptb, ptb-xl,
georgia, chapman_shaoxing, ningbo. 257 / 1000 Hz records are resampled to 500 Hz; the first 10 s are kept,
shorter records zero-padded. Columns: record_id, source, age, sex, ecg, labels over the 26 scored classes
(equivalent codes merged; unscored codes ignored and counted). Records without a scored class are kept
(all-zero labels) unless --drop-unlabeled. Splits: seeded 80/10/10 split stratified by each record's rarest
class, or --split-dir / --split-files with fairseq-signals manifests (train.tsv, valid.tsv, test.tsv).
--segment-seconds 5: fairseq-signals' protocol (the baselines of the paper's Table 1) instead of the first 10 s:
every full, non-overlapping 5 s segment of a record is a row (ecg = (12, 2500), plus segment_index; record_id
names the record, and a record's segments share its split). Only fairseq-signals' default sources (cpsc_2018,
cpsc_2018_extra, georgia, ptb-xl, chapman_shaoxing, ningbo) unless --sources; records not at 500 Hz are skipped
(wrong_sampling_rate), records shorter than a segment too (shorter_than_segment); the samples after the last
full segment are counted in build_summary.json (dropped_samples: segment_remainder).""",
}


class CLIError(Exception):
    """A usage problem reported as 'error: ...' with exit status 1."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions, shows meaningful defaults, aligns sub-command lists."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=34, width=min(110, shutil.get_terminal_size((100, 20)).columns))

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return text
        if action.option_strings:
            return f"{text} (default: %(default)s)"
        return text

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.help is not argparse.SUPPRESS:
            # argparse measures sub-command names without their extra indentation; account for it
            longest = max((len(self._format_action_invocation(a)) for a in action._get_subactions()), default=0)
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 2 * self._indent_increment)


def _split_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected SPLIT=CSV (e.g. train=ptbxl_super_class_train.csv), got {text!r}")
    split, path = text.split("=", 1)
    if not split or not path:
        raise argparse.ArgumentTypeError(f"expected SPLIT=CSV, got {text!r}")
    return split, path


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN,VAL,TEST fractions such as 0.7,0.1,0.2, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions TRAIN,VAL,TEST, got {text!r}")
    return values


def _dataset_parser(datasets, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = datasets.add_parser(
        name, help=help_text, description=DESCRIPTIONS[name], epilog=BUILD_EPILOG, formatter_class=_Formatter
    )
    parser.add_argument("root", metavar="ROOT", help="the dataset folder (see the layout above)")
    return parser


def _add_common(parser: argparse.ArgumentParser, flat_default: str) -> None:
    out = parser.add_argument_group("output and performance")
    out.add_argument("-o", "--output", required=True, metavar="DIR", help="where the DatasetDict is saved")
    out.add_argument("--num-proc", type=int, default=1, metavar="N", help="worker processes reading records")
    out.add_argument("--shard-size", type=int, default=1000, metavar="N", help="records per resumable shard")
    out.add_argument(
        "--work-dir", metavar="DIR", help=f"where shards are built (default: OUTPUT/{WORK_DIR_NAME})"
    )
    out.add_argument("--keep-shards", action="store_true", help="keep the shards after the dataset is saved")
    out.add_argument(
        "--force", action="store_true", help="rebuild every shard and replace what earlier builds wrote to OUTPUT"
    )
    splits = parser.add_argument_group("splits")
    splits.add_argument(
        "--split-files",
        type=_split_assignment,
        action="append",
        metavar="SPLIT=CSV",
        help="a published split file (repeat for train, val/validation, test) instead of the default split",
    )
    splits.add_argument(
        "--split-dir", metavar="DIR", help="a folder of *_train.csv, *_val.csv, *_test.csv split files (MERL layout)"
    )
    splits.add_argument("--split-id-column", metavar="NAME", help="the id column of the split files (default: guessed)")
    quality = parser.add_argument_group("record checks (skipped records are counted in build_summary.json)")
    quality.add_argument(
        "--nan-policy", choices=("skip", "zero", "interpolate"), default="skip",
        help="records with NaN samples: skip them, or repair the samples",
    )
    quality.add_argument(
        "--flat-lead-policy", choices=("skip", "keep"), default=flat_default, help="records with a flat lead"
    )
    quality.add_argument("--flat-tolerance", type=float, default=1e-6, metavar="MV", help="a lead spanning <= MV is flat")
    logs = parser.add_argument_group("logging")
    logs.add_argument("-v", "--verbose", action="store_true", help="log progress details (INFO)")
    logs.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dbeta_hf.data", description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG, formatter_class=_Formatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True

    build = commands.add_parser(
        "build",
        help="read a dataset folder and save it as a Hugging Face DatasetDict",
        description="Read a dataset folder and save it as a Hugging Face DatasetDict (datasets.load_from_disk).",
        epilog=BUILD_EPILOG,
        formatter_class=_Formatter,
    )
    datasets_parsers = build.add_subparsers(dest="dataset", metavar="DATASET", title="datasets")
    datasets_parsers.required = True
    _add_mimic_and_ptbxl(datasets_parsers)
    _add_challenge_datasets(datasets_parsers)

    summary = commands.add_parser(
        "summary",
        help="print the build summary of a saved dataset",
        description="Print DIR/build_summary.json (records found, loaded, skipped by reason) in a readable form.",
        formatter_class=_Formatter,
    )
    summary.add_argument("path", metavar="DIR", help="a folder written by 'build' (or a build_summary.json)")
    summary.add_argument("--json", action="store_true", help="print the raw JSON")
    return parser


def _add_mimic_and_ptbxl(datasets_parsers) -> None:
    mimic = _dataset_parser(datasets_parsers, "mimic-iv-ecg", "MIMIC-IV-ECG v1.0 (ECG + machine report)")
    group = mimic.add_argument_group("MIMIC-IV-ECG")
    group.add_argument("--validation-fraction", type=float, default=0.01, metavar="F", help="fraction of patients in validation")
    group.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    group.add_argument("--allow-missing-report-columns", action="store_true",
                       help="accept a machine_measurements.csv without all of report_0..report_17 (recorded in the summary)")
    group.add_argument("--end-statements", action="store_true",
                       help="end every report cell with a period so that reports split into statements (needed by "
                            "examples/pretrain.py --statement_dropout; default: cells joined with single spaces)")
    _add_common(mimic, "skip")

    ptbxl = _dataset_parser(datasets_parsers, "ptbxl", "PTB-XL (super / sub / form / rhythm / all)")
    group = ptbxl.add_argument_group("PTB-XL")
    group.add_argument("--task", choices=("super", "sub", "form", "rhythm", "all"), default="super", help="label set")
    group.add_argument("--sampling-rate", type=int, choices=(500, 100), default=500,
                       help="read records500 or records100 (100 Hz is upsampled to 500 Hz)")
    group.add_argument("--min-likelihood", type=float, default=0.0, metavar="P",
                       help="ignore diagnostic statements with a lower likelihood (0 = standard benchmark)")
    group.add_argument("--keep-unlabeled", action="store_true", help="keep records without a label of the task")
    group.add_argument("--use-split-file-labels", action="store_true", help="take labels from the split files' class columns")
    _add_common(ptbxl, "keep")


def _add_challenge_datasets(datasets_parsers) -> None:
    for name, title in (("cpsc2018", "CPSC 2018 (9 classes)"), ("csn", "Chapman-Shaoxing-Ningbo (38 classes)")):
        sub = _dataset_parser(datasets_parsers, name, title)
        group = sub.add_argument_group(title)
        group.add_argument("--classes", metavar="A,B,...", help="class subset/order, or 'all' (default: benchmark classes)")
        group.add_argument("--split-fractions", type=_fractions, default="0.7,0.1,0.2", metavar="TR,VA,TE",
                           help="default random split by record")
        group.add_argument("--seed", type=int, default=0, help="seed of the default split")
        group.add_argument("--keep-unlabeled", action="store_true", help="keep records without a label of the classes")
        group.add_argument("--use-split-file-labels", action="store_true", help="take labels from the split files' class columns")
        group.add_argument("--min-num-samples", type=int, metavar="N",
                           help="skip records shorter than N samples at 500 Hz (default: zero-pad them)")
        _add_common(sub, "keep")

    cinc = _dataset_parser(datasets_parsers, "physionet2021", "PhysioNet/CinC Challenge 2021 (26 scored classes)")
    group = cinc.add_argument_group("PhysioNet/CinC 2021")
    group.add_argument("--sources", metavar="A,B,...",
                       help="keep only these source folders (e.g. cpsc_2018,cpsc_2018_extra,georgia,ptb-xl,"
                       "chapman_shaoxing,ningbo: fairseq-signals' default); default: all")
    group.add_argument("--split-fractions", type=_fractions, default="0.8,0.1,0.1", metavar="TR,VA,TE",
                       help="default stratified split by record")
    group.add_argument("--seed", type=int, default=0, help="seed of the default split")
    group.add_argument("--drop-unlabeled", action="store_true", help="drop records without a scored class")
    group.add_argument("--min-num-samples", type=int, metavar="N",
                       help="skip records shorter than N samples at 500 Hz (default: zero-pad them)")
    group.add_argument("--segment-seconds", type=float, metavar="S",
                       help="one row per full, non-overlapping S-second segment of each record (fairseq-signals' "
                       "protocol: 5); default: the first 10 s of each record")
    _add_common(cinc, "keep")

    code = _dataset_parser(datasets_parsers, "code15-test", "CODE-15 test set (827 ECGs, 6 classes)")
    group = code.add_argument_group("CODE-15 test")
    group.add_argument("--lead-names", metavar="L1,...,L12", help="lead of each channel (default: DI,DII,DIII,AVL,AVF,AVR,V1..V6)")
    group.add_argument("--units", default="mV", help="units of the stored values")
    group.add_argument("--scale", type=float, default=1.0, help="factor applied before the unit conversion")
    _add_common(code, "keep")


def _split_files(args) -> object:
    if args.split_files and args.split_dir:
        raise CLIError("use either --split-files or --split-dir, not both")
    if args.split_dir:
        return args.split_dir
    if args.split_files:
        mapping: dict[str, str] = {}
        for split, path in args.split_files:
            if split in mapping:
                raise CLIError(f"--split-files gives {split!r} twice")
            mapping[split] = path
        return mapping
    return None


def _make_plan(args):
    split_files = _split_files(args)
    common = dict(split_files=split_files, split_id_column=args.split_id_column)
    signal = dict(nan_policy=args.nan_policy, flat_lead_policy=args.flat_lead_policy, flat_tolerance=args.flat_tolerance)
    if args.dataset == "mimic-iv-ecg":
        return build_mimic_iv_ecg_plan(
            args.root, validation_fraction=args.validation_fraction, seed=args.seed,
            signal_options=SignalOptions(**signal), allow_missing_report_columns=args.allow_missing_report_columns,
            end_statements=args.end_statements, **common,
        )
    if args.dataset == "ptbxl":
        return build_ptbxl_plan(
            args.root, args.task, args.sampling_rate, min_likelihood=args.min_likelihood,
            drop_unlabeled=not args.keep_unlabeled, use_split_file_labels=args.use_split_file_labels,
            signal_options=SignalOptions(**signal), **common,
        )
    if args.dataset in ("cpsc2018", "csn"):
        classes = None
        if args.classes:
            classes = "all" if args.classes.strip() == "all" else [c.strip() for c in args.classes.split(",") if c.strip()]
        return build_physionet_challenge_plan(
            args.root, args.dataset, classes=classes, split_fractions=args.split_fractions, seed=args.seed,
            drop_unlabeled=not args.keep_unlabeled, use_split_file_labels=args.use_split_file_labels,
            signal_options=SignalOptions(min_num_samples=args.min_num_samples, **signal), **common,
        )
    if args.dataset == "physionet2021":
        sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
        if args.segment_seconds is not None:
            if args.min_num_samples is not None:
                raise CLIError("--min-num-samples does not apply with --segment-seconds (shorter records are skipped)")
            options = SignalOptions(
                num_samples=segment_num_samples(args.segment_seconds), min_num_samples=None, resample=False, **signal
            )
        else:
            options = SignalOptions(min_num_samples=args.min_num_samples, **signal)
        return build_physionet2021_plan(
            args.root, sources=sources, split_fractions=args.split_fractions, seed=args.seed,
            drop_unlabeled=args.drop_unlabeled, signal_options=options, segment_seconds=args.segment_seconds, **common,
        )
    if args.dataset == "code15-test":
        lead_names = [n.strip() for n in args.lead_names.split(",")] if args.lead_names else CODE_TEST_LEAD_NAMES
        return build_code15_test_plan(
            args.root, lead_names=lead_names, units=args.units, scale=args.scale,
            signal_options=SignalOptions(**signal), **common,
        )
    raise CLIError(f"unknown dataset {args.dataset!r}")  # pragma: no cover - argparse prevents it


def _build(args) -> int:
    """Plan, then build into an owned and locked OUTPUT (see BUILD_EPILOG)."""
    if args.quiet:
        datasets.disable_progress_bars()
    output = Path(args.output).expanduser().resolve()
    work_dir = Path(args.work_dir).expanduser().resolve() if args.work_dir else output / WORK_DIR_NAME
    plan = _make_plan(args)
    purpose = f"python -m dbeta_hf.data build {args.dataset}"
    with open_owned_output(output, TOOL, purpose=purpose, adopt=_legacy_entries(output), hint=OUTPUT_HINT) as out:
        previous = _previous_build(output)
        if previous is not None and not _needs_build(previous, plan, args, output):
            print(f"{output} is up to date (same root, files and options); use --force to rebuild.")
            print(previous.format())
            return 0
        summary = _build_into(out, plan, args, work_dir)
    print(summary.format())
    print(f"saved to {output}  (datasets.load_from_disk({os.fspath(output)!r}))")
    return 0


def _legacy_entries(output: Path) -> list[str]:
    """What a version without owner markers wrote into `output`: its work folder, and a complete saved dataset
    (a `build_summary.json` that reads as a `BuildSummary`, `dataset_dict.json` and the splits it lists)."""
    if not output.is_dir() or (output / MARKER_NAME).exists():
        return []
    names = [WORK_DIR_NAME] if (output / WORK_DIR_NAME).is_dir() else []
    try:
        BuildSummary.from_json(output / SUMMARY_FILENAME)
        splits = json.loads((output / DATASET_DICT_FILE).read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return names
    valid = [str(s) for s in splits if isinstance(s, str) and s not in ("", ".", "..") and "/" not in s and "\\" not in s]
    return names + [DATASET_DICT_FILE, SUMMARY_FILENAME, *valid]


def _previous_build(output: Path) -> BuildSummary | None:
    """The summary of the complete dataset saved in `output`, or None (the summary is written last)."""
    if not ((output / DATASET_DICT_FILE).is_file() and (output / SUMMARY_FILENAME).is_file()):
        return None
    try:
        return BuildSummary.from_json(output / SUMMARY_FILENAME)
    except (ValueError, TypeError) as error:
        logger.warning("%s: unreadable %s (%s): building again", output, SUMMARY_FILENAME, error)
        return None


def _needs_build(previous: BuildSummary, plan, args, output: Path) -> bool:
    """False when `output` is up to date. The same command after an input file changed rebuilds; other options
    (or another dataset or root) need --force."""
    fingerprint = compute_fingerprint(plan, args.shard_size)
    if previous.fingerprint == fingerprint and not args.force:
        return False
    if args.force:
        return True
    same_command = (
        previous.dataset == plan.dataset
        and previous.root == os.path.realpath(plan.root)
        and previous.options == options_as_json(plan)
    )
    if not same_command:
        raise CLIError(
            f"{output} already holds a dataset built with other options or from another root ({previous.dataset}, "
            f"fingerprint {previous.fingerprint}); pass --force to replace it"
        )
    logger.warning(
        "%s: the input files (or the build format) changed since the last build (fingerprint %s -> %s): rebuilding",
        output, previous.fingerprint, fingerprint,
    )
    return True


def _build_into(out: OwnedOutput, plan, args, work_dir: Path) -> BuildSummary:
    """Build the shards (the build folder stays locked until they are removed), then publish the dataset."""
    output = out.folder
    if work_dir.is_relative_to(output) and work_dir != output:
        out.claim(work_dir.relative_to(output).parts[0])
    if (output / SUMMARY_FILENAME).exists():
        out.remove(SUMMARY_FILENAME)  # written again last: its presence marks a complete save
    build_dir = build_dir_for(plan, work_dir, args.shard_size)
    with OutputLock(build_dir, purpose=f"python -m dbeta_hf.data build {args.dataset} --output {output}"):
        dataset_dict, summary, build_dir = run_build(
            plan, cache_dir=work_dir, num_proc=args.num_proc, shard_size=args.shard_size, force_rebuild=args.force,
            lock_timeout=0,
        )
        _publish(out, dataset_dict, summary, args.num_proc)
        del dataset_dict
        if not args.keep_shards:
            remove_build(build_dir)
    if not args.keep_shards:
        if work_dir == output / WORK_DIR_NAME:
            out.remove(WORK_DIR_NAME)
        else:
            with suppress(OSError):
                build_dir.rmdir()
    return summary


def _publish(out: OwnedOutput, dataset_dict, summary: BuildSummary, num_proc: int | None) -> None:
    """Save the dataset into a staging folder inside OUTPUT, move each split into place (replacing the earlier
    build's), drop splits of an earlier build that this one lacks, then write dataset_dict.json and, last, the
    summary. Every entry is claimed before it is written."""
    output = out.folder
    previous_splits = _saved_splits(output)
    # `datasets` saves with spawned workers (each re-imports torch and transformers): only worth it for big sets
    rows = sum(len(d) for d in dataset_dict.values())
    workers = num_proc if num_proc and num_proc > 1 and rows >= 20000 else None
    staging = out.path(temp_path(output / STAGING_NAME).name)
    # `datasets` writes an empty split without any Arrow file unless it is told to write one shard, and
    # load_from_disk then fails on it (IndexError): a small build can leave a split empty
    num_shards = {split: 1 for split, d in dataset_dict.items() if len(d) == 0}
    dataset_dict.save_to_disk(os.fspath(staging), num_proc=workers, num_shards=num_shards)
    for split in dataset_dict:
        publish_dir(staging / split, out.path(split), replace=True)
    stale = [s for s in previous_splits if s not in dataset_dict and s in out.owned]
    if stale:
        out.remove(*stale)
    os.replace(staging / DATASET_DICT_FILE, out.path(DATASET_DICT_FILE))
    out.remove(staging.name)
    summary.to_json(out.path(SUMMARY_FILENAME))


def _saved_splits(output: Path) -> list[str]:
    try:
        splits = json.loads((output / DATASET_DICT_FILE).read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [str(s) for s in splits]


def _summary(args) -> int:
    summary = load_build_summary(args.path)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.ERROR if quiet else (logging.INFO if verbose else logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "build":
            return _build(args)
        return _summary(args)
    except (
        CLIError, FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, ImportError, OutputLockedError
    ) as error:
        if verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished shards are kept; run the same command again to resume.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
