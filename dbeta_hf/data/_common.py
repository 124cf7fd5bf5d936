"""Helpers shared by the dataset modules: root checks, CSV reading with clear errors, finishing a build."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .build import DEFAULT_SHARD_SIZE, BuildPlan, run_build

logger = logging.getLogger(__name__)


def check_root(root: str | os.PathLike, dataset_title: str, expected: Sequence[str], layout_hint: str) -> Path:
    """Return `root` as a Path if it holds every relative path of `expected`; raise a helpful error if not.

    When a file is missing, the tree below `root` (3 levels) is searched for it so the error can say
    which folder to pass instead.
    """
    if root is None:
        raise TypeError(f"{dataset_title}: `root` is required (the folder that holds {', '.join(expected)})")
    path = Path(root).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{dataset_title}: the dataset root {os.fspath(path)!r} does not exist. {layout_hint}")
    if not path.is_dir():
        raise NotADirectoryError(
            f"{dataset_title}: the dataset root {os.fspath(path)!r} is a file, not a folder. {layout_hint}"
        )
    missing = [name for name in expected if not (path / name).exists()]
    if missing:
        suggestion = _find_below(path, missing[0])
        hint = f" Found {missing[0]} in {os.fspath(suggestion)!r}: pass that folder as the root." if suggestion else ""
        raise FileNotFoundError(
            f"{dataset_title}: {', '.join(missing)} not found in {os.fspath(path)!r}.{hint} {layout_hint}"
        )
    return path


def _find_below(root: Path, relative: str, depth: int = 3) -> Path | None:
    name = Path(relative)
    frontier = [root]
    for _ in range(depth):
        children = []
        for folder in frontier:
            try:
                entries = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in entries:
                if (child / name).exists():
                    return child
                children.append(child)
        frontier = children[:200]
    return None


def read_csv_checked(path: Path, required: Iterable[str], what: str, **kwargs):
    """`pandas.read_csv` that names the file and the expected columns when some are missing."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what}: {os.fspath(path)!r} is empty") from None
    columns = set(frame.columns)
    if frame.index.name:
        columns.add(frame.index.name)
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"{what}: {os.fspath(path)!r} lacks the column(s) {missing}. Expected at least {list(required)}; "
            f"found {list(frame.columns)[:40]}. Is this the right file / dataset version?"
        )
    return frame


def finish(
    plan: BuildPlan,
    *,
    cache_dir,
    num_proc,
    shard_size: int | None,
    force_rebuild: bool,
    return_summary: bool,
) -> Any:
    dataset_dict, summary, _ = run_build(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size or DEFAULT_SHARD_SIZE,
        force_rebuild=force_rebuild,
    )
    return (dataset_dict, summary) if return_summary else dataset_dict
