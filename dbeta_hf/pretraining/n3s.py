"""N3S negative reports, precomputed once and sampled in O(1) per row.

D-BETA's N3S ("nearest-neighbour negative sampling", reference spec D.1) gives about half of each
pretraining batch a *wrong* report for its ECG, so that the ECG-text matching head (ETM) has negatives.
The expensive part is done once, offline, not per batch (how this differs from the official collator: README,
*Differences from the official code*):

1. the reports are normalized (:func:`dbeta_hf.text_normalization.normalize_report`) and de-duplicated
   (first occurrence order, so the ids are stable for a given corpus);
2. each unique report is embedded with a T5 encoder (``google/flan-t5-small`` by default, as the official
   index): mean of the last hidden state over the *real* tokens (attention mask), then L2-normalized, so a
   report's embedding does not depend on the other reports of its batch;
3. an exact search stores, for every unique report, the ids of ``k`` candidate negatives:

   * ``strategy="dissimilar"`` (default, the official rule): the ``k`` reports with the *lowest* cosine
     similarity;
   * ``strategy="hard"``: the ``k`` most similar reports whose cosine similarity is strictly below
     ``similarity_ceiling`` (for example 0.9), i.e. hard negatives without the near-duplicates that would be
     false negatives. A report with fewer than ``k`` reports under the ceiling keeps the ones it has (the
     table is padded with -1 and ``num_candidates`` says how many are valid; the build counts and warns).

A report is never its own negative. With fewer than ``k + 1`` unique reports ``k`` is clamped to
``num_unique - 1`` with a warning; fewer than 2 unique reports is an error.

The resulting :class:`N3SIndex` holds the ``(U, k)`` int32 table and the report list, and is what the
pretraining collator (:class:`dbeta_hf.pretraining.collator.DBetaPreTrainingCollator`) samples from:
``report_id(text)`` is a dict look-up on the normalized text, ``sample_negative(ids, generator)`` one
vectorised gather. No text model runs during training, and the sampling is reproducible with a seeded
``torch.Generator`` whatever the number of data-loader workers.

Search backends: ``backend="torch"`` (default) is an exact, chunked search with matrix products (CUDA when
available, else CPU); memory is bounded by the chunk, the full ``U x U`` matrix is never materialised.
``backend="faiss"`` uses ``faiss.IndexFlatIP`` (exact inner product); faiss is an optional dependency (the
``faiss`` extra, or ``faiss-gpu``), imported only when that backend is asked for.

Memory is bounded: embeddings ``U*d*4`` bytes, the ``(U, k)`` int32 table, and one similarity chunk of at
most ``max_chunk_mb`` (1 GiB on CPU, 4 GiB on CUDA by default). The search costs ``U^2 * d`` multiply-adds, so
its time grows with ``U^2``. Measured sizes and timings (800,000 reports extrapolated, sampling per batch) are in
``benchmarks/README_n3s.md``, produced by ``benchmarks/bench_n3s.py``.

Typical use::

    from dbeta_hf.pretraining.n3s import build_n3s_index, N3SIndex
    index = build_n3s_index(dataset["report"], "google/flan-t5-small", k=64)
    index.save_pretrained("n3s_index")
    index = N3SIndex.from_pretrained("n3s_index")
    negatives = index.sample_negative(index.report_ids(batch_reports), generator)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import AutoTokenizer, T5EncoderModel

from ..file_modes import apply_default_file_mode
from ..utils.atomic import atomic_dir, atomic_write_text, temp_path
from ..text_normalization import normalize_report

logger = logging.getLogger(__name__)

__all__ = [
    "N3SIndex",
    "N3SIndexCorruptError",
    "build_n3s_index",
    "build_n3s_index_from_embeddings",
    "embed_reports",
    "N3S_STRATEGIES",
]

N3S_STRATEGIES = ("dissimilar", "hard")
N3S_BACKENDS = ("torch", "faiss")
N3S_TABLE_FILE = "n3s_index.safetensors"
N3S_CONFIG_FILE = "n3s_config.json"
N3S_REPORTS_FILE = "n3s_reports.json"
_FORMAT_VERSION = 1
_MISSING_FIX = (
    "The N3S index must be built from the same reports as the dataset you train on: "
    "build_n3s_index(dataset['report'], ...) (the texts are normalized with normalize_report before the "
    "look-up, so only the normalized text has to match)."
)


class N3SIndexCorruptError(ValueError):
    """A file of a saved N3S index cannot be read (truncated, not JSON, not a safetensors file). `path` names it."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        super().__init__(
            f"the N3S index file {self.path} is unreadable ({problem}): the index was not saved completely (a run "
            "killed while writing it, or a full disk). Delete its folder and rebuild it (examples/pretrain.py "
            "rebuilds a missing index; or build_n3s_index(...).save_pretrained(folder))"
        )


# ----------------------------------------------------------------------------------------------- index
class N3SIndex:
    """Unique normalized reports and, for each, the ids of its candidate negative reports.

    Args:
        reports: the unique normalized reports; the position in this list is the report id.
        negatives: ``(U, k)`` integer table; row ``i`` holds candidate negatives of report ``i`` (best first),
            padded with -1 after ``num_candidates[i]`` valid entries.
        num_candidates: ``(U,)`` number of valid entries per row (default: ``k`` for every row).
        embeddings: optional ``(U, d)`` L2-normalized report embeddings (kept only if asked for; not needed
            for sampling).
        settings: how the index was built (strategy, k, encoder, ...), saved with it.
    """

    def __init__(
        self,
        reports: Sequence[str],
        negatives: torch.Tensor | np.ndarray,
        num_candidates: torch.Tensor | np.ndarray | None = None,
        embeddings: torch.Tensor | np.ndarray | None = None,
        settings: dict[str, Any] | None = None,
    ):
        self._reports = list(reports)
        negatives = torch.as_tensor(np.asarray(negatives) if not torch.is_tensor(negatives) else negatives)
        if negatives.ndim != 2 or negatives.shape[0] != len(self._reports):
            raise ValueError(
                f"negatives must have shape (num_reports={len(self._reports)}, k), got {tuple(negatives.shape)}"
            )
        if negatives.dtype.is_floating_point:
            raise TypeError(f"negatives must be integer ids, got {negatives.dtype}")
        self._negatives = negatives.to(torch.int32).contiguous()
        num_reports, k = self._negatives.shape
        if num_candidates is None:
            num_candidates = torch.full((num_reports,), k, dtype=torch.int32)
        num_candidates = torch.as_tensor(
            np.asarray(num_candidates) if not torch.is_tensor(num_candidates) else num_candidates
        ).to(torch.int32)
        if num_candidates.shape != (num_reports,):
            raise ValueError(f"num_candidates must have shape ({num_reports},), got {tuple(num_candidates.shape)}")
        self._num_candidates = num_candidates.contiguous()
        self.embeddings = None if embeddings is None else torch.as_tensor(embeddings)
        self.settings = dict(settings or {})
        self._lookup: dict[str, int] | None = None
        self._validate()

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        num_reports, k = self._negatives.shape
        if num_reports and k == 0:
            raise ValueError("the negatives table has k = 0 columns; build the index with k >= 1")
        counts = self._num_candidates
        if num_reports and (int(counts.min()) < 1 or int(counts.max()) > k):
            bad = int(((counts < 1) | (counts > k)).sum())
            raise ValueError(
                f"{bad} report(s) have a number of candidate negatives outside [1, k={k}]; every report needs at "
                "least one negative (for strategy='hard', raise similarity_ceiling)"
            )
        cols = torch.arange(k, dtype=torch.int32)[None, :]
        valid = cols < counts[:, None]
        table = self._negatives
        if bool(((table < 0) | (table >= num_reports))[valid].any()):
            raise ValueError(f"the negatives table holds ids outside [0, {num_reports}) in its valid entries")
        if bool((table == torch.arange(num_reports, dtype=torch.int32)[:, None])[valid].any()):
            raise ValueError("the negatives table lists a report as its own negative")
        if self.embeddings is not None and self.embeddings.shape[0] != num_reports:
            raise ValueError(f"embeddings have {self.embeddings.shape[0]} rows for {num_reports} reports")

    # ------------------------------------------------------------------ basic accessors
    def __len__(self) -> int:
        return len(self._reports)

    def __repr__(self) -> str:
        return (
            f"N3SIndex(num_reports={len(self)}, k={self.k}, strategy={self.settings.get('strategy')!r}, "
            f"encoder={self.settings.get('encoder')!r})"
        )

    @property
    def reports(self) -> list[str]:
        """The unique normalized reports; ``reports[i]`` is the text of report id ``i``."""
        return self._reports

    @property
    def k(self) -> int:
        return int(self._negatives.shape[1])

    @property
    def negatives(self) -> torch.Tensor:
        """The ``(U, k)`` int32 candidate table (-1 pads rows with fewer than ``k`` candidates)."""
        return self._negatives

    @property
    def num_candidates(self) -> torch.Tensor:
        return self._num_candidates

    def candidates(self, report: int | str) -> list[str]:
        """The candidate negative texts of a report (given by id or text), best first."""
        rid = self.report_id(report) if isinstance(report, str) else int(report)
        n = int(self._num_candidates[rid])
        return [self._reports[j] for j in self._negatives[rid, :n].tolist()]

    # ------------------------------------------------------------------ look-up
    def _get_lookup(self) -> dict[str, int]:
        if self._lookup is None:
            self._lookup = {text: i for i, text in enumerate(self._reports)}
        return self._lookup

    def __contains__(self, text: str) -> bool:
        return normalize_report(text) in self._get_lookup()

    def report_id(self, text: str, normalize: bool = True) -> int:
        """Id of a report (normalized first unless ``normalize=False``); ``KeyError`` if it is not indexed."""
        key = normalize_report(text) if normalize else text
        rid = self._get_lookup().get(key)
        if rid is None:
            raise KeyError(f"report not in the N3S index: {key[:120]!r}. {_MISSING_FIX}")
        return rid

    def report_ids(self, texts: Iterable[str], normalize: bool = True, missing: str = "raise") -> np.ndarray:
        """Ids of many reports as an int64 array.

        ``missing="raise"`` (default) raises ``KeyError`` naming the first unknown reports;
        ``missing="ignore"`` returns -1 for them.
        """
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        lookup = self._get_lookup()
        keys = [normalize_report(t) for t in texts] if normalize else list(texts)
        ids = np.fromiter((lookup.get(key, -1) for key in keys), dtype=np.int64, count=len(keys))
        if missing == "raise" and (ids < 0).any():
            unknown = [keys[i][:80] for i in np.flatnonzero(ids < 0)[:3]]
            raise KeyError(f"{int((ids < 0).sum())} report(s) not in the N3S index, e.g. {unknown}. {_MISSING_FIX}")
        return ids

    # ------------------------------------------------------------------ sampling
    def sample_negative(
        self, report_ids: torch.Tensor | np.ndarray | Sequence[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One negative report id per input id, uniformly among that report's candidates.

        Vectorised: one ``torch.rand`` draw from ``generator`` (the global RNG if None) per id and one gather.
        Returns an int64 tensor of the shape of ``report_ids``.
        """
        ids = torch.as_tensor(np.asarray(report_ids) if not torch.is_tensor(report_ids) else report_ids)
        ids = ids.to(torch.long)
        if ids.numel() == 0:
            return ids.clone()
        if int(ids.min()) < 0 or int(ids.max()) >= len(self):
            raise IndexError(
                f"report ids must be in [0, {len(self)}), got min {int(ids.min())} max {int(ids.max())}; "
                "look them up with report_ids(texts)"
            )
        counts = self._num_candidates[ids].to(torch.float64)
        uniform = torch.rand(ids.shape, generator=generator, dtype=torch.float64)
        cols = torch.minimum((uniform * counts).to(torch.long), counts.to(torch.long) - 1)
        return self._negatives[ids, cols].to(torch.long)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike, save_embeddings: bool = False) -> None:
        """Write ``n3s_index.safetensors`` (table, counts, optional embeddings), ``n3s_config.json`` and
        ``n3s_reports.json`` into ``save_directory``."""
        path = Path(save_directory)
        tensors = {"negatives": self._negatives, "num_candidates": self._num_candidates}
        if save_embeddings:
            if self.embeddings is None:
                raise ValueError(
                    "this index holds no embeddings; build it with keep_embeddings=True to save them"
                )
            tensors["embeddings"] = self.embeddings.contiguous()
        config = dict(self.settings)
        config.update({"format_version": _FORMAT_VERSION, "num_reports": len(self), "k": self.k})
        ours = {N3S_TABLE_FILE, N3S_CONFIG_FILE, N3S_REPORTS_FILE}
        others = [p.name for p in path.iterdir() if p.name not in ours] if path.is_dir() else []
        if not others:
            # the whole index appears at once: written into a temporary folder, then renamed into place
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_dir(path, replace=True) as tmp:
                self._write_files(Path(tmp), tensors, config)
            return
        # a folder that holds other files too (not replaced as a whole): each file is written atomically, the
        # config last (a loader finds the config only once the table and the reports are complete)
        (path / N3S_CONFIG_FILE).unlink(missing_ok=True)
        self._write_files(path, tensors, config)

    def _write_files(self, path: Path, tensors: dict, config: dict) -> None:
        table_tmp = temp_path(path / N3S_TABLE_FILE)
        try:
            save_file(tensors, str(table_tmp), metadata={"format": "dbeta_hf.pretraining.n3s", "version": "1"})
            os.replace(table_tmp, path / N3S_TABLE_FILE)
        finally:
            table_tmp.unlink(missing_ok=True)
        apply_default_file_mode([path / N3S_TABLE_FILE])  # safetensors writes 0600
        atomic_write_text(path / N3S_REPORTS_FILE, json.dumps(self._reports, ensure_ascii=False))
        atomic_write_text(path / N3S_CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, load_embeddings: bool = False, **hub_kwargs) -> "N3SIndex":
        """Load an index written by :meth:`save_pretrained` from a folder (or a Hub repo id)."""
        folder = Path(path)
        if not folder.is_dir():
            try:
                files = {
                    name: hf_hub_download(str(path), name, **hub_kwargs)
                    for name in (N3S_TABLE_FILE, N3S_CONFIG_FILE, N3S_REPORTS_FILE)
                }
            except Exception as err:  # noqa: BLE001 - re-raised with the fix
                raise OSError(
                    f"no N3S index at {str(path)!r}: not a folder, and the Hub download failed ({err}). "
                    "Pass the folder written by N3SIndex.save_pretrained."
                ) from err
        else:
            files = {name: folder / name for name in (N3S_TABLE_FILE, N3S_CONFIG_FILE, N3S_REPORTS_FILE)}
            missing = [name for name, f in files.items() if not Path(f).is_file()]
            if missing:
                raise OSError(f"{folder} is not an N3S index folder: missing {missing} (write it with save_pretrained)")
        settings = _read_json_file(files[N3S_CONFIG_FILE], dict)
        if int(settings.get("format_version", 1)) > _FORMAT_VERSION:
            raise ValueError(
                f"N3S index format {settings['format_version']} is newer than this dbeta_hf supports "
                f"({_FORMAT_VERSION}); upgrade dbeta_hf"
            )
        reports = _read_json_file(files[N3S_REPORTS_FILE], list)
        try:
            with safe_open(str(files[N3S_TABLE_FILE]), framework="pt") as f:
                keys = set(f.keys())
                negatives = f.get_tensor("negatives")
                num_candidates = f.get_tensor("num_candidates")
                embeddings = f.get_tensor("embeddings") if (load_embeddings and "embeddings" in keys) else None
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types; re-raised naming the file
            raise N3SIndexCorruptError(files[N3S_TABLE_FILE], f"{type(err).__name__}: {err}") from err
        if int(settings.get("num_reports", len(reports))) != len(reports) or negatives.shape[0] != len(reports):
            raise N3SIndexCorruptError(
                files[N3S_REPORTS_FILE], f"{len(reports)} reports, but the config says {settings.get('num_reports')} "
                f"and the table has {negatives.shape[0]} rows: its files come from different saves")
        if load_embeddings and embeddings is None:
            raise ValueError(f"{path} holds no embeddings (save with save_embeddings=True)")
        for key in ("format_version", "num_reports", "k"):
            settings.pop(key, None)
        return cls(reports, negatives, num_candidates, embeddings=embeddings, settings=settings)

    # the look-up dict is rebuilt lazily after unpickling (e.g. in DataLoader workers started with spawn)
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_lookup"] = None
        return state


# ----------------------------------------------------------------------------------------------- helpers
def _read_json_file(path: str | os.PathLike, kind: type):
    """The JSON content of a saved index file; `N3SIndexCorruptError` naming the file when unreadable."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise N3SIndexCorruptError(path, f"{type(err).__name__}: {err}") from err
    if not isinstance(value, kind):
        raise N3SIndexCorruptError(path, f"expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _unique_normalized(reports: Iterable[str]) -> tuple[list[str], np.ndarray, int]:
    """Normalized unique reports in first-occurrence order, the input position of each, and the input count."""
    seen: dict[str, int] = {}
    first: list[int] = []
    count = 0
    for position, text in enumerate(reports):
        count += 1
        key = normalize_report(text)
        if key not in seen:
            seen[key] = len(first)
            first.append(position)
    return list(seen), np.asarray(first, dtype=np.int64), count


def _tqdm(iterable, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, unit="rows")


def _auto_chunk_size(num_reports: int, max_chunk_mb: float | None, device: torch.device) -> int:
    if max_chunk_mb is None:
        max_chunk_mb = 4096 if device.type == "cuda" else 1024
    # the similarity chunk plus about as much again for masks / top-k workspace
    per_row = 8 * max(num_reports, 1)
    return int(max(1, min(num_reports, (max_chunk_mb * 2**20) // per_row)))


def _clamp_k(k: int, num_unique: int) -> int:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if num_unique < 2:
        raise ValueError(
            f"N3S needs at least 2 distinct reports after normalization and de-duplication, got {num_unique}"
        )
    if k > num_unique - 1:
        warnings.warn(
            f"only {num_unique} distinct reports: k={k} is clamped to {num_unique - 1} (a report is never its "
            "own negative)",
            stacklevel=3,
        )
        return num_unique - 1
    return k


def _search_torch(
    embeddings: torch.Tensor,
    k: int,
    strategy: str,
    similarity_ceiling: float,
    device: torch.device,
    chunk_size: int,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    num_reports = embeddings.shape[0]
    keys = embeddings.to(device=device, dtype=torch.float32).contiguous()
    negatives = torch.empty((num_reports, k), dtype=torch.int32)
    counts = torch.empty((num_reports,), dtype=torch.int32)
    starts = range(0, num_reports, chunk_size)
    for start in _tqdm(starts, total=len(starts), desc="N3S search", enabled=progress):
        stop = min(start + chunk_size, num_reports)
        sims = keys[start:stop] @ keys.T  # (chunk, U): the only large temporary
        rows = torch.arange(stop - start, device=device)
        if strategy == "dissimilar":
            sims[rows, rows + start] = math.inf  # never self
            _, idx = torch.topk(sims, k, dim=1, largest=False, sorted=True)
            count = torch.full((stop - start,), k, dtype=torch.int32)
        else:
            sims.masked_fill_(sims >= similarity_ceiling, -math.inf)
            sims[rows, rows + start] = -math.inf
            values, idx = torch.topk(sims, k, dim=1, largest=True, sorted=True)
            valid = torch.isfinite(values)
            idx = idx.masked_fill(~valid, -1)
            count = valid.sum(dim=1).to(torch.int32).cpu()
        negatives[start:stop] = idx.to(torch.int32).cpu()
        counts[start:stop] = count
        del sims
    return negatives, counts


def _import_faiss():
    try:
        import faiss  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "backend='faiss' needs the faiss package: `pip install faiss-cpu` (or faiss-gpu), or use "
            "backend='torch' (exact, the default)"
        ) from err
    return faiss


def _search_faiss(
    embeddings: torch.Tensor,
    k: int,
    strategy: str,
    similarity_ceiling: float,
    device: torch.device,
    chunk_size: int,
    progress: bool,
    oversample: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    faiss = _import_faiss()
    keys = np.ascontiguousarray(embeddings.detach().cpu().to(torch.float32).numpy())
    num_reports, dim = keys.shape
    index = faiss.IndexFlatIP(dim)
    if device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device.index or 0, index)
    index.add(keys)
    # dissimilar: largest inner product with -q = lowest cosine; one extra slot for the row itself.
    # hard: reports above the ceiling (and self) use up slots, so ask for more and filter.
    search_k = min(num_reports, k + 1 if strategy == "dissimilar" else k + 1 + oversample)
    negatives = torch.full((num_reports, k), -1, dtype=torch.int32)
    counts = torch.empty((num_reports,), dtype=torch.int32)
    starts = range(0, num_reports, chunk_size)
    for start in _tqdm(starts, total=len(starts), desc="N3S search (faiss)", enabled=progress):
        stop = min(start + chunk_size, num_reports)
        query = keys[start:stop]
        scores, ids = index.search(-query if strategy == "dissimilar" else query, search_k)
        sims = -scores if strategy == "dissimilar" else scores
        ids = np.asarray(ids, dtype=np.int64)
        keep = (ids >= 0) & (ids != np.arange(start, stop)[:, None])
        if strategy == "hard":
            keep &= sims < similarity_ceiling
        # stable compaction of the kept ids to the left, in the search order
        order = np.argsort(~keep, axis=1, kind="stable")
        ids = np.take_along_axis(ids, order, axis=1)[:, :k]
        kept = np.minimum(keep.sum(axis=1), k)
        ids = np.where(np.arange(ids.shape[1])[None, :] < kept[:, None], ids, -1)
        negatives[start:stop, : ids.shape[1]] = torch.from_numpy(ids.astype(np.int32))
        counts[start:stop] = torch.from_numpy(kept.astype(np.int32))
    return negatives, counts


# ----------------------------------------------------------------------------------------------- build
def _check_search_settings(strategy: str, backend: str, similarity_ceiling: float) -> None:
    if strategy not in N3S_STRATEGIES:
        raise ValueError(f"strategy must be one of {N3S_STRATEGIES}, got {strategy!r}")
    if backend not in N3S_BACKENDS:
        raise ValueError(f"backend must be one of {N3S_BACKENDS}, got {backend!r}")
    if strategy == "hard" and not -1.0 < float(similarity_ceiling) <= 1.0:
        raise ValueError(f"similarity_ceiling must be in (-1, 1], got {similarity_ceiling}")


def _unique_embeddings(embeddings: torch.Tensor, first: np.ndarray, num_input: int, normalize: bool) -> torch.Tensor:
    """Float32 embeddings of the unique reports (rows `first` of the input), L2-normalized with `normalize`."""
    embeddings = embeddings.detach().to(torch.float32)
    if len(first) != num_input:
        embeddings = embeddings[torch.from_numpy(first)]
    if normalize:
        embeddings = embeddings / (embeddings.norm(dim=1, keepdim=True) + 1e-10)
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or inf")
    return embeddings


def _check_candidate_counts(counts: torch.Tensor, k: int, similarity_ceiling: float) -> int:
    """Refuse reports without any candidate negative; warn about (and return the number of) reports with
    fewer than `k`."""
    short = int((counts < k).sum())
    empty = int((counts == 0).sum())
    if empty:
        raise ValueError(
            f"{empty} report(s) have no other report with cosine similarity below similarity_ceiling="
            f"{similarity_ceiling}; raise the ceiling or use strategy='dissimilar'"
        )
    if short:
        warnings.warn(
            f"{short} of {len(counts)} reports have fewer than k={k} candidate negatives under the "
            f"similarity ceiling {similarity_ceiling}; they sample among the ones they have",
            stacklevel=3,
        )
    return short


def build_n3s_index_from_embeddings(
    reports: Sequence[str],
    embeddings: torch.Tensor | np.ndarray,
    k: int = 64,
    strategy: str = "dissimilar",
    similarity_ceiling: float = 0.9,
    backend: str = "torch",
    device: str | torch.device | None = None,
    chunk_size: int | None = None,
    max_chunk_mb: float | None = None,
    normalize_embeddings: bool = True,
    keep_embeddings: bool = False,
    progress: bool = True,
    faiss_oversample: int | None = None,
    settings: dict[str, Any] | None = None,
) -> N3SIndex:
    """Build an :class:`N3SIndex` from row-aligned reports and embeddings (skips the text encoder).

    The reports are normalized and de-duplicated (the embedding of a duplicated report's first occurrence is
    used); the embeddings are L2-normalized unless ``normalize_embeddings=False``.

    Args:
        k: candidate negatives stored per report (clamped, with a warning, to ``num_unique - 1``).
        strategy: ``"dissimilar"`` (the official rule: the k lowest cosine similarities) or ``"hard"``
            (the k highest similarities strictly below ``similarity_ceiling``).
        backend: ``"torch"`` (exact chunked matrix products) or ``"faiss"`` (``IndexFlatIP``; optional dependency).
        device: where the search runs; default CUDA when available, else CPU.
        chunk_size: query rows per chunk; default from ``max_chunk_mb``.
        max_chunk_mb: memory budget of one chunk of similarities plus its top-k workspace (default 1024 on the
            CPU, 4096 on CUDA).
        keep_embeddings: keep the (U, d) normalized embeddings on the index (for inspection / saving).
        faiss_oversample: for ``backend="faiss", strategy="hard"``, extra neighbours searched to make up for the
            ones filtered out by the ceiling (default ``4 * k``).
    """
    _check_search_settings(strategy, backend, similarity_ceiling)
    reports = list(reports)
    embeddings = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(reports):
        raise ValueError(
            f"embeddings must have shape (len(reports)={len(reports)}, dim), got {tuple(embeddings.shape)}"
        )
    unique, first, num_input = _unique_normalized(reports)
    k = _clamp_k(int(k), len(unique))
    embeddings = _unique_embeddings(embeddings, first, num_input, normalize_embeddings)
    device = _resolve_device(device)
    chunk = int(chunk_size) if chunk_size else _auto_chunk_size(len(unique), max_chunk_mb, device)
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    started = time.perf_counter()
    if backend == "torch":
        negatives, counts = _search_torch(embeddings, k, strategy, similarity_ceiling, device, chunk, progress)
    else:
        oversample = 4 * k if faiss_oversample is None else int(faiss_oversample)
        negatives, counts = _search_faiss(
            embeddings, k, strategy, similarity_ceiling, device, chunk, progress, oversample
        )
    seconds = time.perf_counter() - started
    short = _check_candidate_counts(counts, k, similarity_ceiling)
    info = dict(settings or {})
    info.update(
        {
            "strategy": strategy,
            "similarity_ceiling": float(similarity_ceiling) if strategy == "hard" else None,
            "backend": backend,
            "num_input_reports": num_input,
            "num_reports_short_of_k": short,
            "embedding_dim": int(embeddings.shape[1]),
            "search_seconds": round(seconds, 3),
            "normalization": "dbeta_hf.text_normalization.normalize_report",
        }
    )
    info.setdefault("encoder", None)
    logger.info("built N3S index: %d unique of %d reports, k=%d, %.1fs", len(unique), num_input, k, seconds)
    return N3SIndex(unique, negatives, counts, embeddings=embeddings if keep_embeddings else None, settings=info)


@torch.inference_mode()
def embed_reports(
    reports: Sequence[str],
    encoder_name_or_path: str | os.PathLike = "google/flan-t5-small",
    batch_size: int = 128,
    max_length: int = 256,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    model=None,
    tokenizer=None,
) -> torch.Tensor:
    """Masked-mean-pooled, L2-normalized T5 encoder embeddings of ``reports`` (as given, not normalized).

    Loads ``T5EncoderModel`` and ``AutoTokenizer`` from ``encoder_name_or_path`` unless ``model`` / ``tokenizer``
    are passed. The reports are processed in length-sorted batches (the masked mean makes the result
    independent of the batching); the returned ``(N, d)`` float32 CPU tensor follows the input order.
    """
    device = _resolve_device(device)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(encoder_name_or_path)
    if model is None:
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = T5EncoderModel.from_pretrained(encoder_name_or_path, **kwargs)
    model = model.to(device).eval()
    reports = list(reports)
    order = np.argsort([len(r) for r in reports], kind="stable")
    out: torch.Tensor | None = None
    starts = range(0, len(reports), batch_size)
    for start in _tqdm(starts, total=len(starts), desc="N3S embed", enabled=progress):
        rows = order[start : start + batch_size]
        enc = tokenizer(
            [reports[i] for i in rows], max_length=max_length, padding=True, truncation=True, return_tensors="pt"
        )
        enc = {name: tensor.to(device) for name, tensor in enc.items() if name in ("input_ids", "attention_mask")}
        hidden = model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        pooled = pooled / (pooled.norm(dim=1, keepdim=True) + 1e-10)
        if out is None:
            out = torch.empty((len(reports), pooled.shape[1]), dtype=torch.float32)
        out[torch.from_numpy(rows)] = pooled.cpu()
    if out is None:
        raise ValueError("no reports to embed")
    return out


def build_n3s_index(
    reports: Iterable[str],
    encoder_name_or_path: str | os.PathLike = "google/flan-t5-small",
    k: int = 64,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    strategy: str = "dissimilar",
    similarity_ceiling: float = 0.9,
    backend: str = "torch",
    max_length: int = 256,
    dtype: torch.dtype | None = None,
    chunk_size: int | None = None,
    max_chunk_mb: float | None = None,
    keep_embeddings: bool = False,
    progress: bool = True,
    faiss_oversample: int | None = None,
) -> N3SIndex:
    """Normalize and de-duplicate ``reports``, embed them with a T5 encoder and store ``k`` negatives each.

    ``encoder_name_or_path`` names a T5 checkpoint (encoder and tokenizer); the defaults,
    ``google/flan-t5-small`` with ``max_length=256``, are the official index's. See
    :func:`build_n3s_index_from_embeddings` for the search arguments. Everything runs on ``device`` (default CUDA
    when available).
    """
    unique, _, num_input = _unique_normalized(reports)
    k = _clamp_k(int(k), len(unique))  # fail (or warn) before the expensive part
    started = time.perf_counter()
    embeddings = embed_reports(
        unique, encoder_name_or_path, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
        progress=progress,
    )
    embed_seconds = time.perf_counter() - started
    index = build_n3s_index_from_embeddings(
        unique, embeddings, k=k, strategy=strategy, similarity_ceiling=similarity_ceiling, backend=backend,
        device=device, chunk_size=chunk_size, max_chunk_mb=max_chunk_mb, normalize_embeddings=False,
        keep_embeddings=keep_embeddings, progress=progress, faiss_oversample=faiss_oversample,
        settings={"encoder": str(encoder_name_or_path), "pooling": "masked_mean", "max_length": max_length},
    )
    index.settings["num_input_reports"] = num_input
    index.settings["embed_seconds"] = round(embed_seconds, 3)
    return index
