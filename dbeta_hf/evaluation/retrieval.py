"""ECG <-> report retrieval with the uni-modal D-BETA embeddings.

Every record of a held-out set contributes its ECG and its report. The similarity of ECG ``i`` and report
``j`` is the same score as zero-shot classification (`zero_shot_scores`): the model's ECG-text logits
(`DBetaModel.ecg_text_logits`, the raw dot product of the uni-modal embeddings for the official model) by default in
`evaluate_retrieval`, the raw dot product or the cosine as options. Two directions are scored:

* **ECG -> report**: each ECG queries all reports;
* **report -> ECG**: each report queries all ECGs.

A retrieved item is correct when its report text is *identical* (after the processor's report normalization)
to the query's own report: machine reports repeat ("sinus rhythm. normal ecg."), and an identical text is an
identical model input, so no ranking could prefer one copy over another. Recall@k is the fraction of queries
with at least one correct item among the k most similar.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import torch

from ..text_normalization import normalize_report
from .embeddings import extract_ecg_features, extract_text_features
from .metrics import recall_at_k
from .zero_shot import zero_shot_scores

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KS",
    "report_relevance",
    "retrieval_recall",
    "retrieval_metrics",
    "evaluate_retrieval",
    "format_retrieval_table",
]

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)


def _normalize(text: str, normalize: bool) -> str:
    if not normalize:
        return str(text)
    return normalize_report(str(text), fold_whitespace=True)


def report_relevance(
    query_reports: Sequence[str], gallery_reports: Sequence[str] | None = None, normalize: bool = True
) -> np.ndarray:
    """(Q, G) boolean matrix: ``True`` where gallery report ``j`` is identical to query report ``i``.

    Texts are compared after `normalize_report` (what the processor feeds the model) unless ``normalize=False``.
    """
    queries = [_normalize(t, normalize) for t in query_reports]
    gallery = queries if gallery_reports is None else [_normalize(t, normalize) for t in gallery_reports]
    vocabulary: dict[str, int] = {}
    q = np.array([vocabulary.setdefault(t, len(vocabulary)) for t in queries])
    g = np.array([vocabulary.setdefault(t, len(vocabulary)) for t in gallery])
    return q[:, None] == g[None, :]


def retrieval_recall(similarity, relevance, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@k of a (Q, G) similarity matrix against a (Q, G) boolean relevance matrix.

    Returns ``{"R@1": ..., "R@5": ..., "R@10": ..., "median_rank": ...}``: a query counts as a hit at k when any
    relevant gallery item is among its k highest similarities (ties broken by gallery order); ``median_rank`` is
    the median 1-based rank of the best-ranked relevant item. k larger than the gallery is clipped (recall 1).
    Queries without any relevant item count as misses.
    """
    sim = torch.as_tensor(np.asarray(similarity, dtype=np.float64))
    rel = torch.as_tensor(np.asarray(relevance, dtype=bool))
    if sim.shape != rel.shape or sim.dim() != 2:
        raise ValueError(f"similarity {tuple(sim.shape)} and relevance {tuple(rel.shape)} must be the same (Q, G) shape")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {ks}")
    recalls = recall_at_k(sim.numpy(), rel.numpy(), ks=tuple(ks))
    out = {f"R@{k}": float(recalls[f"R@{k}"]) for k in ks}
    # rank of the best relevant item (stable sort: ties broken by gallery order)
    order = torch.sort(-sim, dim=1, stable=True).indices
    ranked_rel = torch.gather(rel, 1, order)
    has = ranked_rel.any(dim=1)
    first = torch.where(has, ranked_rel.float().argmax(dim=1) + 1, torch.full_like(has, sim.shape[1] + 1, dtype=torch.long))
    out["median_rank"] = float(first.float().median()) if first.numel() else float("nan")
    return out


def retrieval_metrics(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    reports: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
    similarity: str = "dot",
    normalize: bool = True,
    model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Both directions for N paired (ECG, report) embeddings; ``reports[i]`` is the report of ECG ``i``.

    `similarity`: ``"dot"``, ``"cosine"`` or ``"model"`` (the model's ECG-text logits; needs `model`), as in
    `zero_shot_scores`."""
    if ecg_embeds.shape[0] != text_embeds.shape[0] or ecg_embeds.shape[0] != len(reports):
        raise ValueError(
            f"{ecg_embeds.shape[0]} ECG embeddings, {text_embeds.shape[0]} report embeddings and {len(reports)} reports: "
            "they must be paired one to one"
        )
    sim = zero_shot_scores(ecg_embeds, text_embeds, similarity, model=model).numpy()  # (N ECGs, N reports)
    relevance = report_relevance(reports, normalize=normalize)  # symmetric
    return {
        "ecg_to_report": retrieval_recall(sim, relevance, ks),
        "report_to_ecg": retrieval_recall(sim.T, relevance.T, ks),
        "num_pairs": int(len(reports)),
        "num_unique_reports": int(len({_normalize(r, normalize) for r in reports})),
        "similarity": similarity,
    }


def evaluate_retrieval(
    model: torch.nn.Module,
    processor,
    data,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    similarity: str = "model",
    ecg_column: str = "ecg",
    report_column: str = "report",
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    cache_name: str = "retrieval",
    progress: bool = True,
    sampling_rate: float | None = None,
) -> dict[str, Any]:
    """Encode the ECGs and reports of a held-out `datasets.Dataset` and compute both retrieval directions.

    With `sampling_rate` (the rate of the stored ECGs) the processor's feature extractor prepares every batch.
    `similarity`: ``"model"`` (the model's ECG-text logits), ``"dot"`` or ``"cosine"``.
    """
    if report_column not in data.column_names:
        raise KeyError(f"the dataset has no {report_column!r} column (columns: {data.column_names}); retrieval needs reports")
    reports = [str(r) for r in data[report_column]]
    feature_extractor = getattr(processor, "feature_extractor", None) if sampling_rate is not None else None
    ecg_embeds = extract_ecg_features(
        model, data, batch_size=batch_size, ecg_column=ecg_column, cache_dir=cache_dir, cache_name=cache_name,
        progress=progress, feature_extractor=feature_extractor, sampling_rate=sampling_rate,
    )
    text_embeds = extract_text_features(model, processor, reports, batch_size=batch_size, progress=progress, desc="report features")
    normalize = bool(getattr(processor, "normalize_text", True))
    return retrieval_metrics(ecg_embeds, text_embeds, reports, ks=ks, similarity=similarity, normalize=normalize,
                             model=model)


def format_retrieval_table(results: dict[str, dict[str, Any]], title: str | None = None, ks: Sequence[int] = DEFAULT_KS) -> str:
    """Markdown: one row per dataset/model, the two directions as column groups, Recall@k in % as sub-columns."""
    header = ["Method"]
    for direction in ("ECG→Report", "Report→ECG"):
        for i, k in enumerate(ks):
            header.append(f"{direction} R@{k}" if i == 0 else f"R@{k}")
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name, res in results.items():
        row = [name]
        for direction in ("ecg_to_report", "report_to_ecg"):
            for k in ks:
                row.append(f"{100 * res[direction][f'R@{k}']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
