"""The command-line arguments the evaluation commands (`examples/zero_shot.py`, `linear_probe.py`, `finetune.py`,
`retrieval.py`) share, and `run_command`, which turns their clear errors into one line.

Only `argparse` and the plain constants of `dbeta_hf.evaluation.options` are loaded here, so that a command parses
its flags (and answers ``--help``) before loading any model, metric or data code; what the commands do with the
parsed flags lives in `dbeta_hf.evaluation.cli`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from ..hub.errors import HubUnreachableError
from .options import DEFAULT_SYNTHETIC_MODEL_DIR, PRECISIONS, SYNTHETIC_EVAL_SEED, TASKS

__all__ = [
    "add_common_arguments",
    "add_model_card_argument",
    "add_precision_arguments",
    "add_segment_argument",
    "run_command",
]


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision {fp32,bf16,auto}`` (default fp32, as the official evaluation) and its shorthand ``--bf16``, the
    one precision switch of the evaluation examples' feature extraction."""
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="feature extraction precision: fp32 (default, as the official evaluation notebook), bf16 (bfloat16 "
        "autocast, on CUDA or a CPU), auto (bf16 where the device computes it natively: CUDA, or a CPU with "
        "AVX512-BF16/AMX)",
    )
    parser.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="same as --precision bf16")


def run_command(main: Callable[[], Any]) -> None:
    """Run an example's `main`, turning the clear errors it raises on bad input, and a push to an unreachable Hub
    (`dbeta_hf.hub.push.HubUnreachableError`, whose message says where the model is saved), into one line and exit
    status 2."""
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError, HubUnreachableError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def add_common_arguments(parser, default_output_dir: str, default_tasks: Sequence[str] = ("synthetic",)) -> None:
    """Arguments shared by the evaluation commands (model, tasks and their data, output, device, cache)."""
    parser.add_argument(
        "--model_name_or_path", default=DEFAULT_SYNTHETIC_MODEL_DIR,
        help="folder (or Hub id) of a D-BETA checkpoint saved with save_pretrained, with its processor; the default "
        "is written by `python examples/pretrain.py`",
    )
    parser.add_argument(
        "--tasks", nargs="+", default=list(default_tasks), choices=list(TASKS), metavar="TASK",
        help=f"tasks to evaluate, any of: {', '.join(TASKS)}",
    )
    parser.add_argument("--ptbxl_root", help="PTB-XL folder (ptbxl_database.csv, records500/) for the ptbxl_* tasks")
    parser.add_argument("--cpsc2018_root", help="CPSC2018 folder for the cpsc2018 task")
    parser.add_argument("--csn_root", help="Chapman-Shaoxing-Ningbo folder for the csn task")
    parser.add_argument("--code15_root", help="CODE-15 test set folder (ecg_tracings.hdf5, gold_standard.csv) for code15")
    parser.add_argument(
        "--dataset_path", "--dataset-path", nargs="+", default=[], metavar="[TASK=]DIR",
        help="a DatasetDict built by `python -m dbeta_hf.data build` (datasets.load_from_disk), used for TASK instead of "
        "its raw folder; DIR alone when --tasks names one task",
    )
    parser.add_argument(
        "--physionet2021_root",
        help="PhysioNet/CinC 2021 folder (training/<source>/<group>/*.hea + .mat) for the physionet2021 task",
    )
    parser.add_argument(
        "--synthetic_records", type=int, default=300,
        help="size of the held-out synthetic corpus of the `synthetic` task (split 60/20/20 into train/validation/test)",
    )
    parser.add_argument(
        "--synthetic_seed", type=int, default=SYNTHETIC_EVAL_SEED,
        help="seed of the held-out synthetic corpus (the pretraining example uses seeds 0 and 1)",
    )
    parser.add_argument(
        "--split_files", nargs="+", default=[], metavar="TASK=PATH",
        help="published split files per task (e.g. ptbxl_super=MERL/finetune/data_split/ptbxl/super_class), passed "
        "to the data module's loader as split_files; none: the dataset's standard split",
    )
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes of the dataset builders")
    parser.add_argument("--max_samples", type=int, default=None, help="keep only the first N records of every split (quick checks)")
    parser.add_argument("--output_dir", default=default_output_dir, help="where results are written")
    parser.add_argument(
        "--cache_dir", default=None,
        help="feature cache folder (None: <output_dir>/feature_cache); features are keyed by model weights and data",
    )
    parser.add_argument("--no_cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument("--batch_size", type=int, default=64, help="ECGs per forward pass")
    parser.add_argument("--device", default=None, help="cuda / cpu (None: cuda when available)")
    parser.add_argument("--num_bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")


def add_segment_argument(parser: argparse.ArgumentParser) -> None:
    """``--segment_seconds`` (physionet2021): for commands that size their feature extractor from the stored ECGs
    (`examples/finetune.py`); the others would pad the segments to the checkpoint's length."""
    parser.add_argument(
        "--segment_seconds", "--segment-seconds", type=float, default=None, metavar="SECONDS",
        help="physionet2021 from its raw folder: every full segment of SECONDS s is a row (5 = fairseq-signals' protocol "
        "behind Table 1: its six sources, 500 Hz records only, split by record); with --dataset_path, checked against "
        "the build. Default: the first 10 s of each record",
    )


def add_model_card_argument(parser) -> None:
    """``--update_model_card``: the evaluation commands add their numbers to the evaluated model's card."""
    parser.add_argument(
        "--update_model_card", action="store_true",
        help="add this run's numbers to the model-index of the model card (README.md) of --model_name_or_path, a "
        "local folder; the card's other results are kept (dbeta_hf.hub.model_card.write_model_card)",
    )
