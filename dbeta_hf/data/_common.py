"""Helpers shared by the dataset modules: root checks, CSV reading with clear errors, paths read from the data
(kept inside the root, with the state of their files for the fingerprint), finishing a build."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from ..utils.paths import PathOutsideRootError, join_inside
from .build import DEFAULT_SHARD_SIZE, BuildPlan, run_build
from .summary import PATH_OUTSIDE_ROOT, ShardTally

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


def path_inside_root(root: Path, relative: str, record_id: Any, planning: ShardTally, column: str) -> bool:
    """True when `relative` (a path read from the data) stays inside `root`; otherwise the record is counted as
    ``path_outside_root`` in `planning` (the file is never opened)."""
    try:
        join_inside(root, relative)
    except PathOutsideRootError:
        planning.skip(record_id, PATH_OUTSIDE_ROOT, f"{column} {relative!r} leads outside the dataset root")
        return False
    return True


def file_state(path: str | os.PathLike) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, None when it does not exist (part of the build fingerprint)."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [stat.st_size, stat.st_mtime_ns]


def record_file_states(root: Path, record: str, extensions: Sequence[str]) -> list:
    """``[[extension, [size, mtime_ns] or None], ...]`` of the files ``root/record + extension``:
    a task carries them so that the fingerprint changes when a header or signal file is replaced, even in place
    with the same size."""
    base = os.path.join(root, record)
    return [[extension, file_state(base + extension)] for extension in extensions]


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
