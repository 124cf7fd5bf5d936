"""Model-free evaluation metrics: multi-label AUROC (+ bootstrap CI), retrieval recall@k, result tables.

Everything runs offline on numpy / scikit-learn (`evaluate.load("roc_auc")` needs the Hub). Inputs may be
numpy arrays, lists or (CPU or GPU) torch tensors.

* `class_aurocs`: the AUROC of every class, vectorised over classes (and bootstrap resamples); the one AUROC
  implementation of the package, equal to `sklearn.metrics.roc_auc_score` of each class (ties count one half).
* `multilabel_auroc`: per-class AUROC and their mean over the classes that have at least one positive and one
  negative record; the others are reported as skipped, with the reason. `macro_auroc` is that mean alone,
  for loops that score often (probe model selection).
* `bootstrap_auroc_ci`: percentile bootstrap interval of that macro AUROC, resampling records. The AUROC of
  every resample comes from `class_aurocs` with the resample counts as record weights, so 1,000 resamples of
  2,000 x 5 take well under a second.
* `recall_at_k`: retrieval recall@k from a (queries, candidates) similarity matrix.
* `cinc2021_challenge_score`: the PhysioNet/CinC Challenge 2021 "challenge score" of binary outputs;
  `multilabel_f1` the challenge's macro F-measure; `cinc2021_metrics` both plus the macro AUROC of scores.
* `markdown_table` / `format_results_table`: results laid out like the paper's tables; `fraction_label` names a
  label fraction (``0.01`` -> ``"1%"``, ``1.0`` -> ``"100%"``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .cinc2021_classes import CINC2021_NORMAL_CLASS, cinc2021_class_names, cinc2021_weights, resolve_cinc2021_class
from .options import TASK_DISPLAY_NAMES

__all__ = [
    "TASK_DISPLAY_NAMES",
    "class_aurocs",
    "macro_auroc",
    "multilabel_auroc",
    "bootstrap_auroc_ci",
    "recall_at_k",
    "cinc2021_challenge_score",
    "multilabel_f1",
    "cinc2021_metrics",
    "markdown_table",
    "format_results_table",
    "fraction_label",
]



def _to_numpy(x: Any, dtype=None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _labels_and_scores(y_true: Any, scores: Any, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C)`` boolean labels and float64 scores; `finite` refuses NaN / infinite scores."""
    y = _to_numpy(y_true)
    s = _to_numpy(scores, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must both be (num_samples, num_classes)")
    if y.dtype != bool:
        y = y.astype(np.float64)
        if np.isnan(y).any():
            raise ValueError("y_true contains NaN labels; drop or impute them first")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("y_true must be binary (0/1 or bool) multi-hot labels")
        y = y > 0.5
    if finite and not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return y, s


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    names = [str(c) for c in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def _tie_groups(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every position of column-wise sorted ``(N, C)`` scores, the first and last position of its run of
    equal scores (its tie group)."""
    n = sorted_scores.shape[0]
    positions = np.arange(n)[:, None]
    starts_group = np.ones(sorted_scores.shape, dtype=bool)
    starts_group[1:] = sorted_scores[1:] != sorted_scores[:-1]
    ends_group = np.ones(sorted_scores.shape, dtype=bool)
    ends_group[:-1] = starts_group[1:]
    first = np.maximum.accumulate(np.where(starts_group, positions, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends_group, positions, n - 1)[::-1], axis=0)[::-1]
    return first, last


def _weighted_aurocs(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(B, C)`` AUROCs of boolean labels `y` and scores `s` (both ``(N, C)``) under ``(B, N)`` record weights.

    AUROC = P(score_pos > score_neg) + 0.5 P(score_pos == score_neg) over weighted (positive, negative) pairs:
    each positive counts the negative weight below its tie group plus half the negative weight inside it. With
    integer weights every term is a multiple of 0.5, so the sums are exact and the one division is the only
    rounding.
    """
    order = np.argsort(s, axis=0, kind="mergesort")
    sorted_scores = np.take_along_axis(s, order, axis=0)
    positive = np.take_along_axis(y, order, axis=0)[None]
    first, last = _tie_groups(sorted_scores)
    w = weights[:, order]  # (B, N, C), rows in each column's score order
    pos_w = np.where(positive, w, 0.0)
    neg_w = np.where(positive, 0.0, w)
    neg_cum = np.concatenate([np.zeros_like(neg_w[:, :1]), np.cumsum(neg_w, axis=1)], axis=1)
    neg_below = np.take_along_axis(neg_cum, np.broadcast_to(first[None], w.shape), axis=1)
    neg_tied = np.take_along_axis(neg_cum, np.broadcast_to(last[None] + 1, w.shape), axis=1) - neg_below
    numerator = (pos_w * (neg_below + 0.5 * neg_tied)).sum(axis=1)
    n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
    scorable = (n_pos > 0) & (n_neg > 0) & ~np.isnan(s).any(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scorable, numerator / (n_pos * n_neg), np.nan)


def _unweighted_aurocs(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return _weighted_aurocs(y, s, np.ones((1, y.shape[0])))[0]


def class_aurocs(y_true: Any, scores: Any, counts: Any = None) -> np.ndarray:
    """The AUROC of every class of multi-label scores, vectorised over the classes.

    Equal to ``sklearn.metrics.roc_auc_score(y_true[:, c], scores[:, c])`` for every class ``c`` (a positive and
    a negative with the same score count one half). It is computed from the rank statistic, whose sums are exact,
    rather than from the trapezoids of the ROC curve, so it can differ from scikit-learn's value in the last bit.

    Args:
        y_true: ``(N, C)`` binary multi-hot labels (a 1-D array is one class).
        scores: ``(N, C)`` scores, any monotone scale. A class with a NaN score gets NaN (infinite scores rank
            like any other).
        counts: ``(B, N)`` non-negative record weights, e.g. how often each record was drawn by each of B
            bootstrap resamples. None: every record once.

    Returns ``(C,)`` AUROCs, or ``(B, C)`` with `counts`; NaN for a class without a positive or without a
    negative record (of non-zero weight).
    """
    y, s = _labels_and_scores(y_true, scores, finite=False)
    if counts is None:
        return _unweighted_aurocs(y, s)
    weights = _to_numpy(counts, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != y.shape[0]:
        raise ValueError(f"counts must be (num_resamples, num_samples={y.shape[0]}), got {weights.shape}")
    if (weights < 0).any() or not np.isfinite(weights).all():
        raise ValueError("counts must be finite and non-negative")
    return _weighted_aurocs(y, s, weights)


def macro_auroc(y_true: Any, scores: Any) -> tuple[float, int]:
    """``(macro AUROC, number of classes scored)``: the mean `class_aurocs` over the classes with at least one
    positive and one negative record, NaN when there is none.

    The fast path for loops that score often (the probes' model selection): it builds no per-class dicts. A
    NaN score in a scored class makes the mean NaN, so a diverged model never counts as better.
    """
    y, s = _labels_and_scores(y_true, scores, finite=False)
    positives = y.sum(axis=0)
    scored = (positives > 0) & (positives < y.shape[0])
    if not scored.any():
        return float("nan"), 0
    return float(_unweighted_aurocs(y[:, scored], s[:, scored]).mean()), int(scored.sum())


def multilabel_auroc(y_true: Any, scores: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class and macro AUROC of multi-label scores.

    Args:
        y_true: ``(N, C)`` binary multi-hot labels (a 1-D array is one class).
        scores: ``(N, C)`` scores, any monotone scale (logits, probabilities, similarities).
        class_names: names of the ``C`` classes (default ``"0"``, ``"1"``, ...).

    Returns a dict:

    * ``macro_auroc``: mean AUROC over the classes with at least one positive and one negative (NaN if none);
    * ``per_class``: ``{name: auroc}`` for those scored classes (`class_aurocs`, i.e. scikit-learn's value);
    * ``per_class_all``: ``{name: auroc or None}`` for every class, ``None`` where it could not be scored;
    * ``skipped_classes``: ``{name: reason}`` for the classes left out ("no positive samples" / "no negative
      samples");
    * ``num_classes_scored`` and ``num_samples``.
    """
    y, s = _labels_and_scores(y_true, scores)
    names = _class_names(class_names, y.shape[1])
    n = y.shape[0]
    aucs = _unweighted_aurocs(y, s)
    per_class: dict[str, float] = {}
    per_class_all: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    for c, name in enumerate(names):
        positives = int(y[:, c].sum())
        if positives == 0:
            skipped[name] = "no positive samples"
        elif positives == n:
            skipped[name] = "no negative samples"
        else:
            per_class[name] = float(aucs[c])
        per_class_all[name] = per_class.get(name)
    macro = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {
        "macro_auroc": macro,
        "per_class": per_class,
        "per_class_all": per_class_all,
        "skipped_classes": skipped,
        "num_classes_scored": len(per_class),
        "num_samples": n,
    }


def bootstrap_auroc_ci(
    y_true: Any,
    scores: Any,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_chunk_elements: int = 4_000_000,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(low, high)`` of the macro AUROC, resampling records.

    Each of the `num_bootstrap` resamples draws N records with replacement (``numpy.random.default_rng(seed)``)
    and averages the AUROC of the classes that have both labels *in that resample*; resamples where no class is
    scorable are skipped. Returns ``(nan, nan)`` (with a warning) when no class is scorable at all.
    `max_chunk_elements` bounds the memory: resamples x records x classes scored at once (the draws, and so the
    interval, do not depend on it).
    """
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(num_bootstrap) < 1:
        raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    y, s = _labels_and_scores(y_true, scores)
    n = y.shape[0]
    classes = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < n]
    if not classes or n < 2:
        warnings.warn("bootstrap_auroc_ci: no class has both positive and negative samples; returning (nan, nan)")
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    num_bootstrap = int(num_bootstrap)
    chunk = max(1, int(max_chunk_elements) // (n * len(classes)))
    macros = []
    for b0 in range(0, num_bootstrap, chunk):
        b = min(chunk, num_bootstrap - b0)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        aucs = _weighted_aurocs(y[:, classes], s[:, classes], counts.astype(np.float64))
        scored = np.isfinite(aucs).any(axis=1)
        if scored.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                macros.append(np.nanmean(aucs[scored], axis=1))
    if not macros:
        warnings.warn("bootstrap_auroc_ci: no resample had a scorable class; returning (nan, nan)")
        return float("nan"), float("nan")
    values = np.concatenate(macros)
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def recall_at_k(similarity: Any, ground_truth: Any, ks: Iterable[int] = (1, 5, 10), chunk_size: int = 1024) -> dict[str, float]:
    """Retrieval recall@k (hit rate): the fraction of queries with a relevant candidate among their top k.

    Args:
        similarity: ``(Nq, Nc)`` query x candidate similarities (higher = more similar).
        ground_truth: either ``(Nq,)`` integers, the index of each query's correct candidate, or an
            ``(Nq, Nc)`` boolean relevance matrix for queries with several relevant candidates (for example
            every record whose report is identical to the query's). A query without any relevant candidate
            counts as a miss.
        ks: the cut-offs. A k larger than ``Nc`` counts every query with a relevant candidate as a hit.

    Candidates are ranked by decreasing similarity; ties keep the candidate order (a stable sort), so results
    are deterministic. Returns ``{"R@1": ..., "R@5": ..., "R@10": ...}``.
    """
    sim = _to_numpy(similarity, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (num_queries, num_candidates), got {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity contains NaN or infinite values")
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {ks}")
    nq, nc = sim.shape
    gt = _to_numpy(ground_truth)
    first = np.empty(nq, dtype=np.int64)  # 0-based rank of the best-ranked relevant candidate (nc: none)
    if gt.ndim == 1:
        if gt.shape[0] != nq:
            raise ValueError(f"{gt.shape[0]} ground-truth indices for {nq} queries")
        if not np.issubdtype(gt.dtype, np.integer):
            if not np.all(np.mod(gt, 1) == 0):
                raise ValueError("ground-truth indices must be integers")
            gt = gt.astype(np.int64)
        if (gt < 0).any() or (gt >= nc).any():
            raise ValueError(f"ground-truth indices must be in [0, {nc})")
        cols = np.arange(nc)
        for q0 in range(0, nq, chunk_size):
            rows = slice(q0, q0 + chunk_size)
            block, target = sim[rows], gt[rows]
            s_true = block[np.arange(block.shape[0]), target][:, None]
            first[rows] = (block > s_true).sum(1) + ((block == s_true) & (cols[None, :] < target[:, None])).sum(1)
    elif gt.ndim == 2:
        if gt.shape != sim.shape:
            raise ValueError(f"relevance matrix {gt.shape} must match similarity {sim.shape}")
        rel = gt.astype(bool)
        for q0 in range(0, nq, chunk_size):
            rows = slice(q0, q0 + chunk_size)
            order = np.argsort(-sim[rows], axis=1, kind="stable")
            ranked = np.take_along_axis(rel[rows], order, axis=1)
            has = ranked.any(axis=1)
            first[rows] = np.where(has, ranked.argmax(axis=1), nc)
    else:
        raise ValueError(f"ground_truth must be (num_queries,) indices or a (num_queries, num_candidates) matrix, got {gt.shape}")
    return {f"R@{k}": float(np.mean(first < min(k, nc))) if nq else float("nan") for k in ks}


# ----------------------------------------------------------------------------------------------- CinC 2021


def _binary_matrix(x: Any, what: str) -> np.ndarray:
    array = _to_numpy(x)
    if array.ndim != 2:
        raise ValueError(f"{what} must be an (N, C) array of booleans, got shape {array.shape}")
    if array.dtype == bool:
        return array
    values = array.astype(np.float64)
    if np.isnan(values).any() or not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(
            f"{what} must be binary (booleans or 0/1); threshold scores first, e.g. outputs = probabilities >= 0.5"
        )
    return values > 0.5


def _challenge_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """A[i, j] = sum over records of label_i * output_j / max(1, |labels U outputs| of the record)."""
    union = np.maximum((labels | outputs).sum(axis=1), 1).astype(np.float64)
    return (labels / union[:, None]).T @ outputs.astype(np.float64)


def cinc2021_challenge_score(labels: Any, outputs: Any, classes: Sequence[str] | None = None) -> float:
    """The PhysioNet/CinC Challenge 2021 challenge score of binary multi-label outputs.

    For every record with label set L and output set O, each (label i, output j) pair adds
    ``1 / max(1, |L U O|)`` to a confusion matrix ``A[i, j]``; the raw score is ``sum(W * A)`` with the
    challenge's weights ``W`` (`dbeta_hf.evaluation.cinc2021_classes.cinc2021_weights`: 1 on the diagonal, partial credit
    between similar classes). It is normalized so that the classifier that outputs only the normal class
    (sinus rhythm, 426783006) for every record scores 0 and a perfect classifier scores 1::

        score = (observed - inactive) / (correct - inactive)

    (0.0 when ``correct == inactive``, as in the challenge's evaluation code). Records without any scored
    label still count: their outputs can only lose weight through the normalization of the others.

    Args:
        labels: ``(N, C)`` booleans (or 0/1), the true classes of each record.
        outputs: ``(N, C)`` booleans (or 0/1), the classifier's binary outputs.
        classes: the names of the C columns as the challenge's weights file writes them (``"164889003"``,
            merged classes joined with ``|``: ``"733534002|164909002"``); abbreviations (``"CLBBB|LBBB"``) work
            too. None: the 26 scored classes in the weights file's order. Columns that name codes of one
            merged class (e.g. separate ``"713427006"`` and ``"59118001"`` columns) are merged (logical or)
            before scoring, so equivalent codes count as one class. The normal class must be among them.

    Returns the normalized score as a float (x 100 in the paper's Table 1).
    """
    y = _binary_matrix(labels, "labels")
    o = _binary_matrix(outputs, "outputs")
    if y.shape != o.shape:
        raise ValueError(f"labels {y.shape} and outputs {o.shape} must have the same shape")
    if classes is None:
        if y.shape[1] != len(cinc2021_class_names()):
            raise ValueError(
                f"{y.shape[1]} columns but no `classes`: pass the column names, or the 26 scored classes in the order "
                "of dbeta_hf.evaluation.cinc2021_classes.cinc2021_class_names()"
            )
        column_class = list(range(y.shape[1]))
    else:
        names = [str(c) for c in classes]
        if len(names) != y.shape[1]:
            raise ValueError(f"{len(names)} class names for {y.shape[1]} columns")
        column_class = [resolve_cinc2021_class(n) for n in names]
    groups = list(dict.fromkeys(column_class))  # scored classes present, in column order
    normal = resolve_cinc2021_class(CINC2021_NORMAL_CLASS)
    if normal not in groups:
        raise ValueError(
            f"the challenge score needs the normal class {CINC2021_NORMAL_CLASS} (sinus rhythm, NSR) among `classes`: "
            "its inactive classifier outputs only that class"
        )
    position = {g: k for k, g in enumerate(groups)}
    merged_y = np.zeros((y.shape[0], len(groups)), dtype=bool)
    merged_o = np.zeros_like(merged_y)
    for column, group in enumerate(column_class):
        merged_y[:, position[group]] |= y[:, column]
        merged_o[:, position[group]] |= o[:, column]
    weights = cinc2021_weights()[np.ix_(groups, groups)]
    inactive_outputs = np.zeros_like(merged_y)
    inactive_outputs[:, position[normal]] = True
    observed = float(np.sum(weights * _challenge_confusion(merged_y, merged_o)))
    correct = float(np.sum(weights * _challenge_confusion(merged_y, merged_y)))
    inactive = float(np.sum(weights * _challenge_confusion(merged_y, inactive_outputs)))
    if correct == inactive:
        return 0.0
    return (observed - inactive) / (correct - inactive)


def multilabel_f1(labels: Any, outputs: Any) -> dict[str, Any]:
    """Per-class F1 = 2 TP / (2 TP + FP + FN) of binary outputs and their mean over the classes where it is
    defined (a class with no positive label and no positive output has no F1), as the challenge reports it.

    Returns ``{"macro_f1": float (NaN if no class is defined), "per_class": [float or NaN, ...]}``.
    """
    y = _binary_matrix(labels, "labels")
    o = _binary_matrix(outputs, "outputs")
    if y.shape != o.shape:
        raise ValueError(f"labels {y.shape} and outputs {o.shape} must have the same shape")
    tp = (y & o).sum(axis=0).astype(np.float64)
    fp = (~y & o).sum(axis=0)
    fn = (y & ~o).sum(axis=0)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, 2 * tp / denominator, np.nan)
    defined = np.isfinite(per_class)
    return {"macro_f1": float(per_class[defined].mean()) if defined.any() else float("nan"), "per_class": per_class.tolist()}


def cinc2021_metrics(
    labels: Any, probabilities: Any, classes: Sequence[str] | None = None, threshold: float = 0.5
) -> dict[str, float]:
    """Challenge score, macro F1 (outputs = ``probabilities >= threshold``) and macro AUROC of the scores.

    `classes` as in `cinc2021_challenge_score`. Returns ``{"challenge_score", "macro_f1", "macro_auroc",
    "threshold"}``.
    """
    y, s = _labels_and_scores(labels, probabilities)
    outputs = s >= float(threshold)
    return {
        "challenge_score": cinc2021_challenge_score(y, outputs, classes),
        "macro_f1": multilabel_f1(y, outputs)["macro_f1"],
        "macro_auroc": multilabel_auroc(y, s, class_names=None if classes is None else list(classes))["macro_auroc"],
        "threshold": float(threshold),
    }


# ----------------------------------------------------------------------------------------------- tables


def fraction_label(fraction: float | str) -> str:
    """The label of a label fraction, the share of the training labels a probe or fine-tuning run sees:
    ``0.01`` -> ``"1%"``, ``0.1`` -> ``"10%"``, ``1.0`` -> ``"100%"`` (all the data), ``0.005`` -> ``"0.5%"``.

    A number must be a proportion in (0, 1]: ``1`` is all the data, never 1 %, and percentages such as ``10``
    are refused rather than guessed. A string is a label already (``"10%"``, returned stripped) or a proportion
    written out (``"0.1"`` -> ``"10%"``).
    """
    if isinstance(fraction, str):
        text = fraction.strip()
        try:
            value = float(text)
        except ValueError:
            return text
        return fraction_label(value)
    value = float(fraction)
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"a label fraction is a proportion of the training labels in (0, 1], got {fraction!r} (10 % is 0.1, "
            "all the data 1.0)"
        )
    pct = value * 100.0
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 1e-9 else f"{pct:g}%"


def _fraction_sort_key(fraction: Any) -> tuple[int, float, str]:
    label = fraction_label(fraction)
    try:
        return (0, float(label.rstrip("%")), label)
    except ValueError:
        return (1, 0.0, label)


def _cell(value: Any, percent: bool, decimals: int) -> str:
    scale = 100.0 if percent else 1.0
    if value is None:
        return "–"
    if isinstance(value, (tuple, list)) and len(value) == 2:
        mean, std = value
        if mean is None or not math.isfinite(float(mean)):
            return "–"
        text = f"{float(mean) * scale:.{decimals}f}"
        if std is not None and math.isfinite(float(std)):
            text += f" ± {float(std) * scale:.{decimals}f}"
        return text
    value = float(value)
    return f"{value * scale:.{decimals}f}" if math.isfinite(value) else "–"


def _mean_value(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = value[0]
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def markdown_table(
    rows: Mapping[str, Mapping[str, Any]],
    title: str | None = None,
    tasks: Sequence[str] | None = None,
    task_titles: Mapping[str, str] | None = None,
    percent: bool = True,
    decimals: int = 2,
    average: bool = True,
    row_header: str = "Method",
) -> str:
    """Lay results out like the paper's tables: one row per method, tasks as columns.

    Args:
        rows: ``{method: {task: value}}`` (zero-shot style, one column per task) or
            ``{method: {task: {fraction: value}}}`` (linear-probe style: each task gets one sub-column per label
            fraction, e.g. 1 / 10 / 100 %). A value is a number in [0, 1] (shown x 100 with `percent`),
            ``(mean, std)``, or ``None`` / NaN (shown as "–"). Fractions are proportions (``0.01``, ``0.1``,
            ``1.0``) or labels (``"1%"``); see `fraction_label`.
        title: a bold line above the table.
        tasks: column order (default: order of first appearance); `task_titles` renames them (default
            `TASK_DISPLAY_NAMES`, e.g. ``ptbxl_super`` -> ``PTB-XL Super``).
        average: add an ``Average`` column (per fraction), filled where a row has every task.

    With fractions the header names each task once over its sub-columns and a second row names the fractions:

    ``| Method | PTB-XL Super | | | ... |``, then ``| | 1% | 10% | 100% | ... |``.
    """
    if not rows:
        raise ValueError("no rows to tabulate")
    titles = dict(TASK_DISPLAY_NAMES)
    titles.update(task_titles or {})
    if tasks is None:
        tasks = list(dict.fromkeys(t for results in rows.values() for t in results))
    tasks = list(tasks)
    grouped = any(isinstance(v, Mapping) for results in rows.values() for v in results.values())
    lines: list[str] = []
    if title:
        lines += [f"**{title}**", ""]
    if not grouped:
        header = [row_header] + [titles.get(t, t) for t in tasks] + (["Average"] if average else [])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|")
        for name, results in rows.items():
            cells = [str(name)] + [_cell(results.get(t), percent, decimals) for t in tasks]
            if average:
                means = [_mean_value(results.get(t)) for t in tasks]
                cells.append(_cell(float(np.mean(means)), percent, decimals) if means and None not in means else "–")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    fractions: list[Any] = []
    seen: set[str] = set()
    for results in rows.values():
        for value in results.values():
            if isinstance(value, Mapping):
                for f in value:
                    if fraction_label(f) not in seen:
                        seen.add(fraction_label(f))
                        fractions.append(f)
    fractions.sort(key=_fraction_sort_key)
    labels = [fraction_label(f) for f in fractions]
    groups = tasks + (["Average"] if average else [])
    header = [row_header]
    for g in groups:
        header += [titles.get(g, g)] + [" "] * (len(labels) - 1)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|")
    lines.append("| " + " | ".join([" "] + labels * len(groups)) + " |")

    def lookup(results: Mapping[str, Any], task: str, label: str) -> Any:
        value = results.get(task)
        if not isinstance(value, Mapping):
            return None
        for f, v in value.items():
            if fraction_label(f) == label:
                return v
        return None

    for name, results in rows.items():
        cells = [str(name)]
        for t in tasks:
            cells += [_cell(lookup(results, t, label), percent, decimals) for label in labels]
        if average:
            for label in labels:
                means = [_mean_value(lookup(results, t, label)) for t in tasks]
                cells.append(_cell(float(np.mean(means)), percent, decimals) if means and None not in means else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_results_table(
    results: Mapping[str, Any], title: str | None = None, row_label: str = "dbeta_hf", **kwargs: Any
) -> str:
    """One method's results as a paper-style markdown table: ``markdown_table({row_label: results}, title)``.

    `results` is ``{task: value}`` (zero-shot) or ``{task: {fraction: value}}`` (linear probing), e.g.
    ``format_results_table({"ptbxl_super": {0.01: 0.83, 0.1: 0.86, 1.0: 0.88}}, "Linear probing")``.
    """
    return markdown_table({row_label: results}, title=title, **kwargs)
