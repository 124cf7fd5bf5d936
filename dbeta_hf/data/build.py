"""The sharded, cached, resumable Arrow build shared by every dataset loader.

A loader turns a dataset root into a `BuildPlan`: the records of each split (small JSON-serialisable
"tasks"), the records it already rejected from the metadata (counted in a `ShardTally`), a
`RecordSource` that reads one task into a row, and the inputs of the cache fingerprint. `run_build`
then

1. computes the fingerprint: format version, dataset, resolved root, options, the size and mtime of
   the metadata files, and the full task list (record ids, paths, labels, reports, and the size and
   mtime of each record's header and signal files), so that a changed file leads to a new build;
2. locks the build folder (`dbeta_hf.utils.output_ownership.OutputLock`): a second process building the same
   plan into the same cache waits for the first (or is refused, ``lock_timeout=0``) and then reuses its shards;
3. cuts every split into shards of ``shard_size`` records;
4. builds the shards that are not complete yet, in this process or in ``num_proc`` worker processes:
   each shard is read, converted, written with ``Dataset.save_to_disk`` into a temporary directory that
   is renamed into place when complete (with the shard's counts in ``dbeta_shard.json``), so an
   interrupted build resumes with the shards that are missing;
5. memory-maps the shards (``load_from_disk``) and concatenates them per split (no copy);
6. merges the counts into a `BuildSummary`, logs it, writes it atomically as ``build_summary.json``.

Layout of the cache: ``<cache_dir>/<dataset>/<fingerprint>/{plan.json, build_summary.json,
shards/<split>-00000-of-00012/}``. A second call with the same root, files and options finds every
shard complete and reads nothing but the Arrow files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import datasets
import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk
from datasets.utils.tqdm import tqdm

from ..utils.atomic import atomic_write_json, publish_dir, remove_path, remove_stale_temps, temp_path
from ..utils.output_ownership import OutputLock
from .processing import CANONICAL_AUGMENTED, UNDETERMINED, amplitude_quantiles
from .summary import SKIP_REASONS, SUMMARY_FILENAME, BuildSummary, RecordSkipped, ShardTally

logger = logging.getLogger(__name__)

__all__ = [
    "RecordSource",
    "BuildPlan",
    "run_build",
    "build_dir_for",
    "remove_build",
    "default_cache_dir",
    "DEFAULT_SHARD_SIZE",
]

FORMAT_VERSION = 2  # 2: per-record file states in the tasks, paths kept inside the root
DEFAULT_SHARD_SIZE = 1000
SHARD_MARKER = "dbeta_shard.json"
PLAN_FILENAME = "plan.json"
SHARDS_DIRNAME = "shards"
BUILD_ENTRIES = (PLAN_FILENAME, SUMMARY_FILENAME, SHARDS_DIRNAME)  # what a build writes into its folder


# --------------------------------------------------------------------------------------- sources and plans
class RecordSource:
    """Reads records into rows. Subclasses live in the dataset modules; instances are pickled to workers.

    Subclasses set `dataset` (name), `features`, `info`, `class_names` (or None) and implement `read`;
    `open` / `close` bracket the records of one shard (e.g. open an HDF5 file once).
    """

    dataset: str = ""
    features = None
    info = None
    class_names: list[str] | None = None

    def open(self) -> None:  # pragma: no cover - trivial default
        pass

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def read(self, task: Mapping[str, Any]) -> tuple[dict | list[dict], list[str], dict]:
        """Return ``(row, flags, stats)`` for one task or raise `RecordSkipped`. A source that cuts a record into
        several rows (segments) returns the list of them (never an empty one) and may report samples that no row
        holds in ``stats["dropped_samples"]`` (``{reason: samples}``)."""
        raise NotImplementedError


@dataclass
class BuildPlan:
    """What to build. See the module docstring."""

    source: RecordSource
    root: str
    splits: dict  # {split: [task, ...]}, every task a JSON-serialisable dict with an "id"
    options: dict  # user-facing options (logged, stored in the summary, part of the fingerprint)
    fingerprint_inputs: dict  # file signatures and anything else that decides the content
    planning: ShardTally = field(default_factory=ShardTally)  # records rejected while planning
    split_file_ids_not_found: int = 0
    warnings: list = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return self.source.dataset


def default_cache_dir() -> str:
    """``$HF_DATASETS_CACHE/dbeta_hf`` (``~/.cache/huggingface/datasets/dbeta_hf`` by default)."""
    return os.path.join(str(datasets.config.HF_DATASETS_CACHE), "dbeta_hf")


def file_signature(path: str | os.PathLike, root: str | os.PathLike) -> dict:
    stat = os.stat(path)
    return {"path": os.path.relpath(path, root), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def options_as_json(plan: BuildPlan) -> dict:
    """The plan's options as they are stored in the build summary (JSON types only)."""
    return json.loads(json.dumps(plan.options, default=_json_default))


def compute_fingerprint(plan: BuildPlan, shard_size: int) -> str:
    digest = hashlib.sha256()
    header = {
        "format_version": FORMAT_VERSION,
        "dataset": plan.dataset,
        "root": os.path.realpath(plan.root),
        "options": plan.options,
        "inputs": plan.fingerprint_inputs,
        "shard_size": shard_size,
        "planning": plan.planning.to_dict(),
        "splits": {split: len(tasks) for split, tasks in plan.splits.items()},
    }
    digest.update(json.dumps(header, sort_keys=True, default=_json_default).encode("utf-8"))
    for split in sorted(plan.splits):
        digest.update(split.encode("utf-8"))
        for task in plan.splits[split]:
            digest.update(json.dumps(task, sort_keys=True, default=_json_default).encode("utf-8"))
            digest.update(b"\n")
    return digest.hexdigest()[:20]


def build_dir_for(plan: BuildPlan, cache_dir: str | os.PathLike | None, shard_size: int) -> Path:
    """The folder `run_build` uses for `plan`: ``<cache_dir>/<dataset>/<fingerprint>``."""
    cache_root = Path(cache_dir) if cache_dir is not None else Path(default_cache_dir())
    return cache_root / plan.dataset / compute_fingerprint(plan, shard_size)


def remove_build(build_dir: str | os.PathLike) -> None:
    """Delete what a build wrote into `build_dir` (plan, summary, shards and their temporaries) and the folder
    itself once nothing else is left in it. Hold the folder's `OutputLock` while calling this; the lock file
    stays until it is released (then call again, or `os.rmdir`, to remove the empty folder)."""
    build_dir = Path(build_dir)
    for name in BUILD_ENTRIES:
        remove_path(build_dir / name)
    remove_stale_temps(build_dir, BUILD_ENTRIES)
    with suppress(OSError):
        build_dir.rmdir()


# --------------------------------------------------------------------------------------- shard worker
@contextmanager
def _quiet_datasets():
    """Silence the per-shard progress bars and info logs of ``datasets`` (we show our own bar)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _rows_to_columns(rows: list[dict], features) -> dict:
    columns: dict[str, Any] = {}
    for name in features:
        values = [row[name] for row in rows]
        if name == "ecg" and values:
            columns[name] = np.stack(values)
        elif name == "labels" and values:
            columns[name] = np.asarray(values, dtype=np.float32)
        else:
            columns[name] = values
    return columns


def _read_rows(source: RecordSource, split: str, tasks: list[dict], progress=None) -> tuple[list[dict], ShardTally, list[dict]]:
    """Read every task of one shard; skipped records are counted, unexpected errors name the record. Returns the
    rows, the tally and the first row of each loaded record (for the per-record class counts)."""
    tally = ShardTally()
    rows: list[dict] = []
    firsts: list[dict] = []
    source.open()
    try:
        for task in tasks:
            try:
                row, flags, stats = source.read(task)
            except RecordSkipped as skipped:
                tally.skip(task["id"], skipped.reason, skipped.detail)
            except Exception as error:  # a bug or an unexpected file problem: fail loudly, with the record
                raise RuntimeError(
                    f"{source.dataset}: unexpected error while reading record {task['id']!r} "
                    f"({type(error).__name__}: {error})"
                ) from error
            else:
                produced = row if isinstance(row, list) else [row]
                if not produced:
                    raise RuntimeError(
                        f"{source.dataset}: record {task['id']!r} gave no row; a source skips a record by raising "
                        "RecordSkipped with its reason"
                    )
                tally.load(split, flags, rows=len(produced), dropped_samples=stats.get("dropped_samples"))
                if stats.get("lead_order"):
                    tally.lead_order[stats["lead_order"]] += 1
                if stats.get("amplitude_bin") is not None:
                    tally.amplitude_histogram[int(stats["amplitude_bin"])] += 1
                rows.extend(produced)
                firsts.append(produced[0])
            if progress is not None:
                progress(1)
    finally:
        source.close()
    return rows, tally, firsts


def _count_positives(source: RecordSource, rows: list[dict]) -> Counter:
    counts = Counter()
    for row in rows:
        for name, value in zip(source.class_names, row["labels"]):
            if value > 0.5:
                counts[name] += 1
    return Counter({name: counts.get(name, 0) for name in source.class_names})


def build_shard(source: RecordSource, split: str, tasks: list[dict], shard_dir: str, progress=None) -> dict:
    """Read `tasks` and write them as one saved `Dataset` at `shard_dir` (atomically). Returns the tally.

    The shard is written into a temporary folder next to `shard_dir` and renamed into place with its
    ``dbeta_shard.json`` inside, so a shard folder with that file is always complete.
    """
    rows, tally, firsts = _read_rows(source, split, tasks, progress)
    if source.class_names:
        tally.positives[split] = _count_positives(source, firsts)  # per record, whatever its number of rows
    del firsts
    tmp_dir = temp_path(shard_dir)
    marker = {"split": split, "num_tasks": len(tasks), "num_rows": len(rows), "tally": tally.to_dict()}
    try:
        _save_rows(source, rows, tmp_dir)
        del rows
        atomic_write_json(tmp_dir / SHARD_MARKER, marker, indent=None)
        if (Path(shard_dir) / SHARD_MARKER).is_file():  # completed meanwhile: keep that one
            remove_path(tmp_dir)
        else:  # replaces an incomplete leftover (its marker is missing)
            publish_dir(tmp_dir, shard_dir, replace=True)
    except BaseException:
        remove_path(tmp_dir)
        raise
    return tally.to_dict()


def _save_rows(source: RecordSource, rows: list[dict], folder: Path) -> None:
    if not rows:  # every record of the shard was skipped: nothing to save (an empty Arrow dataset cannot be reloaded)
        folder.mkdir()
        return
    with _quiet_datasets():
        dataset = Dataset.from_dict(_rows_to_columns(rows, source.features), features=source.features, info=source.info)
        dataset.save_to_disk(os.fspath(folder))


def _worker_build_shard(source, split, tasks, shard_dir) -> dict:
    datasets.disable_progress_bars()
    return build_shard(source, split, tasks, shard_dir)


# --------------------------------------------------------------------------------------- the build
def _shard_layout(plan: BuildPlan, shard_size: int) -> list[tuple[str, str, list[dict]]]:
    """Cut each split into ceil(n / shard_size) shards of (nearly) equal size, in task order."""
    shards = []
    for split, tasks in plan.splits.items():
        count = max(1, -(-len(tasks) // shard_size))
        bounds = [round(i * len(tasks) / count) for i in range(count + 1)]
        for index in range(count):
            chunk = tasks[bounds[index] : bounds[index + 1]]
            shards.append((split, f"{split}-{index:05d}-of-{count:05d}", chunk))
    return shards


def _mp_context():
    # fork is cheap (no re-import of torch / transformers in each worker) and is what `datasets` uses on
    # Linux; elsewhere use the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _progress_bar(total: int, desc: str):
    return tqdm(total=total, desc=desc, unit=" ECG", dynamic_ncols=True)


def run_build(
    plan: BuildPlan,
    *,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    force_rebuild: bool = False,
    lock_timeout: float | None = None,
):
    """Build (or reuse) the shards of `plan`; return ``(DatasetDict, BuildSummary, build_dir)``.

    The build folder is locked while this runs. Another live process holding it is waited for
    (``lock_timeout=None``, the default: e.g. the ranks of a distributed job loading the same dataset; the
    waiting ones then reuse the shards) or refused after `lock_timeout` seconds with
    `dbeta_hf.utils.output_ownership.OutputLockedError`, which names that process. A lock left by a killed
    process is reported and taken over. ``force_rebuild`` deletes the folder's shards first.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    start = time.perf_counter()
    fingerprint = compute_fingerprint(plan, shard_size)
    build_dir = build_dir_for(plan, cache_dir, shard_size)
    with OutputLock(build_dir, purpose=f"dbeta_hf.data: building {plan.dataset}", timeout=lock_timeout):
        shards_dir = _prepare_build_dir(plan, build_dir, fingerprint, shard_size, force_rebuild)
        layout = _shard_layout(plan, shard_size)
        built = _build_missing_shards(plan, layout, shards_dir, num_proc)
        result, tally = _load_shards(plan, layout, shards_dir)
        seconds = time.perf_counter() - start
        summary = _make_summary(plan, tally, fingerprint, from_cache=not built, seconds=seconds)
        summary.to_json(build_dir / SUMMARY_FILENAME)
    summary.log(logger)
    return result, summary, build_dir


def _prepare_build_dir(plan: BuildPlan, build_dir: Path, fingerprint: str, shard_size: int, force: bool) -> Path:
    """Empty the folder for a forced rebuild, drop dead processes' temporaries, write plan.json once."""
    shards_dir = build_dir / SHARDS_DIRNAME
    if force:
        logger.info("force_rebuild: removing the shards of %s", build_dir)
        for name in BUILD_ENTRIES:
            remove_path(build_dir / name)
    shards_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(shards_dir)
    remove_stale_temps(build_dir, BUILD_ENTRIES)
    plan_file = build_dir / PLAN_FILENAME
    if not plan_file.exists():
        record = {
            "dataset": plan.dataset,
            "root": os.path.realpath(plan.root),
            "fingerprint": fingerprint,
            "options": plan.options,
            "inputs": plan.fingerprint_inputs,
            "records_per_split": {s: len(t) for s, t in plan.splits.items()},
            "shard_size": shard_size,
        }
        atomic_write_json(plan_file, record, default=_json_default)
    return shards_dir


def _build_missing_shards(plan: BuildPlan, layout, shards_dir: Path, num_proc: int | None) -> list:
    """Build the shards without a ``dbeta_shard.json``; returns them (empty when everything was cached)."""
    todo = [(split, name, tasks) for split, name, tasks in layout if not (shards_dir / name / SHARD_MARKER).is_file()]
    if not todo:
        logger.info("%s: reusing the cached build %s", plan.dataset, shards_dir.parent)
        return todo
    done = len(layout) - len(todo)
    logger.info(
        "%s: building %d of %d shards (%d records)%s into %s",
        plan.dataset, len(todo), len(layout), sum(len(t) for _, _, t in todo),
        f", {done} already complete" if done else "", shards_dir.parent,
    )
    _build_shards(plan.source, todo, shards_dir, num_proc)
    return todo


def _load_shards(plan: BuildPlan, layout, shards_dir: Path) -> tuple[DatasetDict, ShardTally]:
    """Memory-map every shard, concatenate them per split, and merge their counts with the planning counts."""
    tally = ShardTally()
    tally.merge(plan.planning)
    splits: dict[str, list] = {}
    with _quiet_datasets():
        for split, name, _ in layout:
            shard_path = shards_dir / name
            with open(shard_path / SHARD_MARKER, encoding="utf-8") as handle:
                marker = json.load(handle)
            tally.merge(ShardTally.from_dict(marker["tally"]))
            if marker.get("num_rows", 1):
                splits.setdefault(split, []).append(load_from_disk(os.fspath(shard_path)))
        result = DatasetDict()
        for split in plan.splits:
            parts = splits.get(split, [])
            if not parts:
                empty = {name: [] for name in plan.source.features}
                result[split] = Dataset.from_dict(empty, features=plan.source.features, info=plan.source.info)
            elif len(parts) == 1:
                result[split] = parts[0]
            else:
                result[split] = concatenate_datasets(parts, info=plan.source.info)
    return result, tally


def _build_shards(source: RecordSource, todo, shards_dir: Path, num_proc: int | None) -> None:
    total = sum(len(tasks) for _, _, tasks in todo)
    workers = max(1, min(int(num_proc or 1), len(todo)))
    bar = _progress_bar(total, f"Building {source.dataset}")
    try:
        if workers == 1:
            for split, name, tasks in todo:
                build_shard(source, split, tasks, os.fspath(shards_dir / name), progress=bar.update)
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as pool:
            pending = {
                pool.submit(_worker_build_shard, source, split, tasks, os.fspath(shards_dir / name)): (name, len(tasks))
                for split, name, tasks in todo
            }
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        name, count = pending.pop(future)
                        future.result()  # re-raise worker errors with the record id
                        bar.update(count)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    finally:
        bar.close()


def _make_summary(plan: BuildPlan, tally: ShardTally, fingerprint: str, from_cache: bool, seconds: float) -> BuildSummary:
    warnings = list(plan.warnings)
    amplitude = amplitude_quantiles(tally.amplitude_histogram)
    median = amplitude.get("p50")
    if median is not None and amplitude.get("records", 0) >= 5 and not 0.2 <= median <= 10.0:
        warnings.append(
            f"the median peak-to-peak amplitude of lead II is {median:.3g} mV (typical: 0.5-3 mV): the units are "
            "probably wrong (check the `units` option / the header gains)"
        )
    order = dict(tally.lead_order.most_common())
    determined = {k: v for k, v in order.items() if k != UNDETERMINED}
    if determined:
        top, top_count = max(determined.items(), key=lambda kv: kv[1])
        if top != CANONICAL_AUGMENTED and top_count >= 3:
            warnings.append(
                f"{top_count} of {sum(determined.values())} records fit Goldberger's equations best with their "
                f"augmented leads in the order {top} (expected {CANONICAL_AUGMENTED}): the lead names or the "
                "`lead_names` option are probably wrong"
            )
    for warning in warnings[len(plan.warnings):]:
        logger.warning("%s: %s", plan.dataset, warning)
    class_positives = {}
    for split in plan.splits:
        if split in tally.positives:
            class_positives[split] = {k: int(v) for k, v in tally.positives[split].items()}
    summary = BuildSummary(
        dataset=plan.dataset,
        root=os.path.realpath(plan.root),
        fingerprint=fingerprint,
        options=options_as_json(plan),
        records_found=tally.found,
        records_loaded=tally.loaded,
        loaded_per_split={split: int(tally.loaded_per_split.get(split, 0)) for split in plan.splits},
        rows_per_split={split: int(tally.rows_per_split.get(split, 0)) for split in plan.splits},
        dropped_samples={reason: {k: int(v) for k, v in c.items()} for reason, c in tally.dropped_samples.items()},
        skipped={reason: int(tally.skipped[reason]) for reason in SKIP_REASONS if tally.skipped.get(reason)},
        flagged={k: int(v) for k, v in sorted(tally.flagged.items()) if v},
        skipped_examples={k: v for k, v in tally.examples.items() if v},
        split_file_ids_not_found=plan.split_file_ids_not_found,
        class_positives=class_positives,
        lead_order_check=order,
        amplitude_mv=amplitude,
        warnings=warnings,
        from_cache=from_cache,
        build_seconds=round(seconds, 3),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    summary.check()
    return summary
