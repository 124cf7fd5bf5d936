"""What the evaluation commands (`examples/zero_shot.py`, `linear_probe.py`, `finetune.py`, `retrieval.py`) share:
their common arguments (`add_common_arguments`, defined in the light `cli_arguments` and re-exported here) and what
they read from them (`load_task_splits_from_args`, `cache_dir_from_args`), the downstream tasks (`TASKS`,
`load_task_splits`), checking and loading a checkpoint (`resolve_model_dir`, `load_processor`), and writing results
(`save_json`, `write_results`; `run_command` is in `cli_arguments` too).

The evaluations themselves live in `features` (frozen ECG / text embeddings), `zero_shot`, `linear_probe`,
`finetune`, `retrieval` and `cross_dataset`; nothing there needs this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk

from ..data import (
    load_chapman_shaoxing_ningbo,
    load_code15_test,
    load_cpsc2018,
    load_physionet2021,
    load_ptbxl,
)
from ..data.features import dataset_class_names, dataset_metadata
from ..data.synthetic import SYNTHETIC_CLASSES, make_synthetic_corpus
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..hub.model_card import write_model_card
from ..processing_dbeta import DBetaProcessor
from .cli_arguments import (
    add_common_arguments,
    add_model_card_argument,
    add_precision_arguments,
    add_segment_argument,
    run_command,
)
from .embeddings import resolve_precision
from .options import DEFAULT_SYNTHETIC_MODEL_DIR, SYNTHETIC_EVAL_SEED, TASK_DISPLAY_NAMES, TASK_ROOT_OPTION, TASKS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SYNTHETIC_MODEL_DIR",
    "SYNTHETIC_EVAL_SEED",
    "TASKS",
    "TASK_TITLES",
    "resolve_device",
    "add_precision_arguments",
    "precision_from_args",
    "resolve_model_dir",
    "load_task_splits",
    "save_json",
    "write_results",
    "run_command",
    "add_common_arguments",
    "add_segment_argument",
    "roots_from_args",
    "cache_dir_from_args",
    "loader_kwargs_from_args",
    "dataset_paths_from_args",
    "load_built_task",
    "load_task_splits_from_args",
    "load_processor",
    "load_feature_extractor",
    "dataset_sampling_rate",
    "add_model_card_argument",
    "check_model_card_target",
    "update_model_card",
]


# Display names of the tasks in tables and plots.
TASK_TITLES: dict[str, str] = dict(TASK_DISPLAY_NAMES)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def precision_from_args(args, device: str | torch.device) -> str:
    """The resolved feature-extraction precision (``"fp32"`` / ``"bf16"``) of ``--precision`` / ``--bf16`` on `device`."""
    return resolve_precision(getattr(args, "precision", None) or "fp32", device)


def resolve_model_dir(path: str | os.PathLike | None, default: str = DEFAULT_SYNTHETIC_MODEL_DIR) -> str:
    """Check a `--model_name_or_path`: a local folder must exist and hold a `config.json`.

    Hub ids (``org/name`` that is not a local path) are returned unchanged. The offline default folder gets a
    message telling the user to run the pretraining example first; nothing ever falls back to random weights.
    """
    path = default if path is None else str(path)
    local = Path(path)
    looks_like_hub_id = (
        not local.exists()
        and path.count("/") == 1
        and not path.startswith((".", "/", "~"))
        and os.path.normpath(path) != os.path.normpath(default)
        and not Path(path.split("/")[0]).is_dir()  # "outputs/my-run" is a local path even when missing
    )
    if looks_like_hub_id:
        return path
    if not local.exists():
        hint = (
            "Run `python examples/pretrain.py` first: its default run trains a tiny model on the synthetic corpus and "
            f"saves it (with its processor) to {default}."
            if os.path.normpath(path) == os.path.normpath(default)
            else "Pass --model_name_or_path with a folder saved by save_pretrained (or a Hub id)."
        )
        raise FileNotFoundError(f"model folder {path!r} does not exist. {hint}")
    if not (local / "config.json").is_file():
        raise FileNotFoundError(
            f"{path!r} has no config.json: it is not a saved D-BETA model. Pass a folder written by "
            "`save_pretrained` (e.g. by `python examples/pretrain.py`)."
        )
    return str(local)


def _synthetic_splits(num_records: int, seed: int, fractions=(0.6, 0.2, 0.2)):
    if num_records < 10:
        raise ValueError(f"the synthetic evaluation corpus needs at least 10 records, got {num_records}")
    corpus = make_synthetic_corpus(num_records, seed=seed)
    n_train = int(round(fractions[0] * num_records))
    n_val = int(round(fractions[1] * num_records))
    return DatasetDict(
        {
            "train": corpus.select(range(0, n_train)),
            "validation": corpus.select(range(n_train, n_train + n_val)),
            "test": corpus.select(range(n_train + n_val, num_records)),
        }
    )


def load_task_splits(
    task: str,
    *,
    roots: dict[str, str | None] | None = None,
    synthetic_records: int = 200,
    synthetic_seed: int = SYNTHETIC_EVAL_SEED,
    max_samples: int | None = None,
    **loader_kwargs,
):
    """Load a downstream task as ``(DatasetDict, class_names)``.

    `task` is one of `TASKS`. ``"synthetic"`` builds a held-out synthetic corpus (`synthetic_records` records
    of seed `synthetic_seed`, split 60 / 20 / 20 into train / validation / test). The others call the
    builders of `dbeta_hf.data` on ``roots[<dataset>_root]`` (``ptbxl_root``, ``cpsc2018_root``, ``csn_root``,
    ``code15_root``, ``physionet2021_root``). `max_samples` keeps the first records of every split (quick checks).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    roots = roots or {}
    if task == "synthetic":
        splits = _synthetic_splits(synthetic_records, synthetic_seed)
        class_names = list(SYNTHETIC_CLASSES)
    else:
        option = TASK_ROOT_OPTION[task]
        root = roots.get(option)
        if not root:
            raise ValueError(f"task {task!r} needs its data: pass --{option} (the folder of the raw dataset)")
        if not Path(root).exists():
            raise FileNotFoundError(f"--{option} {root!r} does not exist")
        if task.startswith("ptbxl_"):
            splits = load_ptbxl(root, task=task.split("_", 1)[1], **loader_kwargs)
        elif task == "cpsc2018":
            splits = load_cpsc2018(root, **loader_kwargs)
        elif task == "csn":
            splits = load_chapman_shaoxing_ningbo(root, **loader_kwargs)
        elif task == "physionet2021":
            splits = load_physionet2021(root, **loader_kwargs)
        else:
            splits = load_code15_test(root, **loader_kwargs)
        if isinstance(splits, tuple):  # (dataset, summary) with return_summary=True
            splits = splits[0]
        class_names = dataset_class_names(splits)
    if max_samples is not None:
        splits = DatasetDict({name: split.select(range(min(max_samples, len(split)))) for name, split in splits.items()})
    return splits, class_names


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _clean_nan(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_nan(v) for v in obj]
    return obj


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as indented JSON (NaN -> null, numpy / torch values converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean_nan(json.loads(json.dumps(obj, default=_json_default))), indent=2) + "\n")
    return path


def write_results(results: dict, markdown: str, output_dir: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """Save `results` (with the markdown table) as `<stem>.json` and the table as `<stem>.md`; print the table."""
    results["markdown"] = markdown
    json_path = save_json(results, Path(output_dir) / f"{stem}.json")
    md_path = Path(output_dir) / f"{stem}.md"
    md_path.write_text(markdown)
    print(markdown)
    return json_path, md_path


# ------------------------------------------------------------------------------------------------ CLI pieces
def roots_from_args(args) -> dict[str, str | None]:
    return {option: getattr(args, option, None) for option in sorted(set(TASK_ROOT_OPTION.values()))}


def loader_kwargs_from_args(args, task: str) -> dict[str, Any]:
    """Keyword arguments of the data module's loader for `task`: ``split_files`` (from ``--split_files
    TASK=PATH``), ``num_proc`` and, for physionet2021, ``segment_seconds``. Nothing for the synthetic task."""
    segment_seconds = getattr(args, "segment_seconds", None)
    if segment_seconds is not None and "physionet2021" not in getattr(args, "tasks", [task]):
        raise ValueError("--segment_seconds applies to the physionet2021 task only; add it to --tasks or drop the flag")
    if task == "synthetic":
        return {}
    kwargs: dict[str, Any] = {}
    if task == "physionet2021" and segment_seconds is not None:
        kwargs["segment_seconds"] = segment_seconds
    for item in getattr(args, "split_files", None) or []:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--split_files expects TASK=PATH, got {item!r}")
        if name not in TASKS:
            raise ValueError(f"--split_files: unknown task {name!r}; choose from {', '.join(TASKS)}")
        if name == task:
            if not Path(path).exists():
                raise FileNotFoundError(f"--split_files {item!r}: {path!r} does not exist")
            kwargs["split_files"] = path
    if getattr(args, "num_proc", None):
        kwargs["num_proc"] = args.num_proc
    return kwargs


def dataset_paths_from_args(args) -> dict[str, str]:
    """``{task: DIR}`` from ``--dataset_path [TASK=]DIR ...``. A bare DIR belongs to the one task of ``--tasks``;
    a task that is not in ``--tasks``, an unknown task or a missing folder is an error (never ignored)."""
    tasks = list(args.tasks)
    paths: dict[str, str] = {}
    for item in getattr(args, "dataset_path", None) or []:
        name, sep, path = item.partition("=")
        if not sep or name not in TASKS:
            named = [t for t in tasks if t != "synthetic"]
            if len(named) != 1:
                raise ValueError(
                    f"--dataset_path {item!r}: name its task (--dataset_path TASK=DIR, TASK one of {', '.join(TASKS)}) "
                    f"or give exactly one data task with --tasks (got --tasks {' '.join(tasks)})"
                )
            name, path = named[0], item
        if name == "synthetic":
            raise ValueError("--dataset_path: the synthetic task is generated, not loaded; name a data task")
        if name not in tasks:
            raise ValueError(f"--dataset_path names the task {name!r}, which is not among --tasks ({' '.join(tasks)}); "
                             f"add --tasks {name}")
        if not Path(path).exists():
            raise FileNotFoundError(f"--dataset_path {item!r}: {path!r} does not exist; build it with "
                                    f"`python -m dbeta_hf.data build ... --output {path}`")
        paths[name] = path
    return paths


def load_built_task(task: str, path: str | os.PathLike, max_samples: int | None = None):
    """A task's DatasetDict built by `python -m dbeta_hf.data build` (memory-mapped): ``(DatasetDict, class_names)``."""
    splits = load_from_disk(os.fspath(path))
    if not isinstance(splits, DatasetDict):
        raise ValueError(f"{path} holds a single Dataset; task {task!r} needs the DatasetDict (train / validation / "
                         "test splits) that `python -m dbeta_hf.data build` writes")
    class_names = dataset_class_names(splits)
    if max_samples is not None:
        splits = DatasetDict({name: split.select(range(min(max_samples, len(split)))) for name, split in splits.items()})
    logger.info("task %s: loaded %s (%s; %d classes)", task, path,
                ", ".join(f"{name} {len(split)}" for name, split in splits.items()), len(class_names))
    return splits, class_names


def load_task_splits_from_args(args, task: str):
    """`load_task_splits` of `task` with the data options of `add_common_arguments` (roots, synthetic corpus,
    ``--dataset_path``, ``--max_samples``, ``--split_files``, ``--num_proc``): ``(DatasetDict, class_names)``."""
    built = dataset_paths_from_args(args)
    if task in built:
        splits, class_names = load_built_task(task, built[task], max_samples=args.max_samples)
        wanted = getattr(args, "segment_seconds", None)
        if wanted is not None and task == "physionet2021":
            stored = dataset_metadata(splits).get("segment_seconds")
            if stored is None or float(stored) != float(wanted):
                raise ValueError(
                    f"--segment_seconds {wanted:g} but the dataset at {built[task]} was built with "
                    f"{'whole records' if stored is None else f'{stored:g} s segments'}; rebuild it with "
                    f"`python -m dbeta_hf.data build physionet2021 ROOT --segment-seconds {wanted:g}` or drop the flag"
                )
        return splits, class_names
    return load_task_splits(
        task, roots=roots_from_args(args), synthetic_records=args.synthetic_records,
        synthetic_seed=args.synthetic_seed, max_samples=args.max_samples, **loader_kwargs_from_args(args, task),
    )


def cache_dir_from_args(args) -> str | None:
    if getattr(args, "no_cache", False):
        return None
    return args.cache_dir or os.path.join(args.output_dir, "feature_cache")


def load_processor(model_dir: str):
    """`DBetaProcessor.from_pretrained(model_dir)` with a clear error when the folder has no processor files."""
    try:
        return DBetaProcessor.from_pretrained(model_dir)
    except (OSError, ValueError, TypeError) as error:
        raise FileNotFoundError(
            f"could not load the DBetaProcessor (tokenizer + ECG feature extractor) from {model_dir!r}: {error}. Save it "
            "next to the model with processor.save_pretrained(folder)."
        ) from error


def load_feature_extractor(model_dir: str):
    """The checkpoint's `DBetaECGFeatureExtractor` (from its processor files), or `None` (logged) when it has none:
    the ECGs are then fed as stored (500 Hz, mV, canonical lead order)."""
    try:
        return DBetaECGFeatureExtractor.from_pretrained(model_dir)
    except (OSError, ValueError) as error:
        logger.warning("no ECG feature extractor saved in %s (%s); feeding the stored ECGs unchanged", model_dir, error)
        return None


def dataset_sampling_rate(splits, default: float = 500.0) -> float:
    """The sampling rate stored in a `dbeta_hf.data` dataset's metadata (500 Hz for every built dataset)."""
    try:
        return float(dataset_metadata(splits).get("sampling_rate", default))
    except (ValueError, TypeError):
        return float(default)


def check_model_card_target(args, model_dir: str) -> None:
    """Before a run: ``--update_model_card`` needs a local model folder (checked first, not after the run)."""
    if getattr(args, "update_model_card", False) and not Path(model_dir).is_dir():
        raise ValueError(f"--update_model_card writes into a local model folder; {model_dir!r} is not one (a Hub "
                         "model's card is updated by pushing a folder that holds the card)")


def update_model_card(model_dir: str, results) -> Path:
    """Write `results` (`dbeta_hf.hub.model_card.eval_result`s) into the card of the local model folder
    `model_dir`, keeping what the card held; returns the card's path."""
    check_model_card_target(argparse.Namespace(update_model_card=True), model_dir)

    path = write_model_card(model_dir, results=list(results))
    logger.info("added %d result(s) to the model card %s", len(results), path)
    return path
