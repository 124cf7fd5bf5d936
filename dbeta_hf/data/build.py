"""The sharded, cached, resumable Arrow build shared by every dataset loader.

A loader turns a dataset root into a `BuildPlan`: the records of each split (small JSON-serialisable
"tasks"), the records it already rejected from the metadata (counted in a `ShardTally`), a
`RecordSource` that reads one task into a row, and the inputs of the cache fingerprint. `run_build`
then

1. computes the fingerprint: format version, dataset, resolved root, options, the size and mtime of
   the metadata files, and the full task list (the file listing: record ids, paths, labels, reports);
2. cuts every split into shards of ``shard_size`` records;
3. builds the shards that are not complete yet, in this process or in ``num_proc`` worker processes:
   each shard is read, converted, written with ``Dataset.save_to_disk`` into a temporary directory that
   is renamed into place when complete (with the shard's counts in ``dbeta_shard.json``), so an
   interrupted build resumes with the shards that are missing;
4. memory-maps the shards (``load_from_disk``) and concatenates them per split (no copy);
5. merges the counts into a `BuildSummary`, logs it, writes it as ``build_summary.json``.

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
import shutil
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .summary import SKIP_REASONS, SUMMARY_FILENAME, BuildSummary, RecordSkipped, ShardTally
from .processing import CANONICAL_AUGMENTED, UNDETERMINED, amplitude_quantiles

logger = logging.getLogger(__name__)

__all__ = ["RecordSource", "BuildPlan", "run_build", "default_cache_dir", "DEFAULT_SHARD_SIZE"]

FORMAT_VERSION = 1
DEFAULT_SHARD_SIZE = 1000
SHARD_MARKER = "dbeta_shard.json"


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

    def read(self, task: Mapping[str, Any]) -> tuple[dict, list[str], dict]:
        """Return ``(row, flags, stats)`` for one task or raise `RecordSkipped`."""
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
    from datasets import config

    return os.path.join(str(config.HF_DATASETS_CACHE), "dbeta_hf")


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


# --------------------------------------------------------------------------------------- shard worker
@contextmanager
def _quiet_datasets():
    """Silence the per-shard progress bars and info logs of ``datasets`` (we show our own bar)."""
    import datasets

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


def build_shard(source: RecordSource, split: str, tasks: list[dict], shard_dir: str, progress=None) -> dict:
    """Read `tasks` and write them as one saved `Dataset` at `shard_dir` (atomically). Returns the tally."""
    from datasets import Dataset

    tally = ShardTally()
    rows: list[dict] = []
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
                tally.load(split, flags)
                if stats.get("lead_order"):
                    tally.lead_order[stats["lead_order"]] += 1
                if stats.get("amplitude_bin") is not None:
                    tally.amplitude_histogram[int(stats["amplitude_bin"])] += 1
                rows.append(row)
            if progress is not None:
                progress(1)
    finally:
        source.close()

    if source.class_names:
        counts = Counter()
        for row in rows:
            for name, value in zip(source.class_names, row["labels"]):
                if value > 0.5:
                    counts[name] += 1
        tally.positives[split] = Counter({name: counts.get(name, 0) for name in source.class_names})

    tmp_dir = f"{shard_dir}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    num_rows = len(rows)
    if rows:
        with _quiet_datasets():
            dataset = Dataset.from_dict(
                _rows_to_columns(rows, source.features), features=source.features, info=source.info
            )
            dataset.save_to_disk(tmp_dir)
        del dataset
    else:  # every record of the shard was skipped: nothing to save (an empty Arrow dataset cannot be reloaded)
        os.makedirs(tmp_dir)
    del rows
    with open(os.path.join(tmp_dir, SHARD_MARKER), "w", encoding="utf-8") as handle:
        json.dump({"split": split, "num_tasks": len(tasks), "num_rows": num_rows, "tally": tally.to_dict()}, handle)
    if os.path.isdir(shard_dir) and not os.path.isfile(os.path.join(shard_dir, SHARD_MARKER)):
        shutil.rmtree(shard_dir)  # an incomplete leftover (its marker is missing): replace it
    try:
        os.rename(tmp_dir, shard_dir)
    except OSError:
        if os.path.isfile(os.path.join(shard_dir, SHARD_MARKER)):  # another process finished it first
            shutil.rmtree(tmp_dir, ignore_errors=True)
        else:
            raise
    return tally.to_dict()


def _worker_build_shard(source, split, tasks, shard_dir) -> dict:
    import datasets

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_tmp(shards_dir: Path) -> None:
    for entry in shards_dir.glob("*.tmp-*"):
        try:
            pid = int(entry.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            pid = -1
        if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _mp_context():
    # fork is cheap (no re-import of torch / transformers in each worker) and is what `datasets` uses on
    # Linux; elsewhere use the platform default.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def _progress_bar(total: int, desc: str):
    from datasets.utils.tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" ECG", dynamic_ncols=True)


def run_build(
    plan: BuildPlan,
    *,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    force_rebuild: bool = False,
):
    """Build (or reuse) the shards of `plan`; return ``(DatasetDict, BuildSummary, build_dir)``."""
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    start = time.perf_counter()
    fingerprint = compute_fingerprint(plan, shard_size)
    cache_root = Path(cache_dir) if cache_dir is not None else Path(default_cache_dir())
    build_dir = cache_root / plan.dataset / fingerprint
    shards_dir = build_dir / "shards"
    if force_rebuild and build_dir.exists():
        logger.info("force_rebuild: removing %s", build_dir)
        shutil.rmtree(build_dir)
    shards_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(shards_dir)
    plan_file = build_dir / "plan.json"
    if not plan_file.exists():
        plan_file.write_text(
            json.dumps(
                {
                    "dataset": plan.dataset,
                    "root": os.path.realpath(plan.root),
                    "fingerprint": fingerprint,
                    "options": plan.options,
                    "inputs": plan.fingerprint_inputs,
                    "records_per_split": {s: len(t) for s, t in plan.splits.items()},
                    "shard_size": shard_size,
                },
                indent=2,
                default=_json_default,
            )
            + "\n",
            encoding="utf-8",
        )

    layout = _shard_layout(plan, shard_size)
    todo = [(split, name, tasks) for split, name, tasks in layout if not (shards_dir / name / SHARD_MARKER).is_file()]
    if todo:
        done = len(layout) - len(todo)
        logger.info(
            "%s: building %d of %d shards (%d records)%s into %s",
            plan.dataset, len(todo), len(layout), sum(len(t) for _, _, t in todo),
            f", {done} already complete" if done else "", build_dir,
        )
        _build_shards(plan.source, todo, shards_dir, num_proc)
    else:
        logger.info("%s: reusing the cached build %s", plan.dataset, build_dir)

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

    summary = _make_summary(plan, tally, fingerprint, from_cache=not todo, seconds=time.perf_counter() - start)
    summary.to_json(build_dir / SUMMARY_FILENAME)
    summary.log(logger)
    return result, summary, build_dir


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
        options=json.loads(json.dumps(plan.options, default=_json_default)),
        records_found=tally.found,
        records_loaded=tally.loaded,
        loaded_per_split={split: int(tally.loaded_per_split.get(split, 0)) for split in plan.splits},
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
