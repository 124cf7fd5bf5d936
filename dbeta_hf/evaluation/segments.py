"""Record-level outputs from segment-level ones: PhysioNet/CinC 2021 built with ``segment_seconds=5``.

`dbeta_hf.data.load_physionet2021(..., segment_seconds=5)` (``python -m dbeta_hf.data build physionet2021 ...
--segment-seconds 5``) stores every full 5 s segment of a record as a row whose ``record_id`` names the record.
A model then scores segments. Two ways to compute the challenge score from them:

* per segment, every segment counted as a record of its own: what fairseq-signals reports, and therefore the
  protocol of the baselines in the paper's Table 1 (its criterion accumulates the challenge's confusion matrices
  over the rows of each batch, one row per segment:
  ``fairseq_signals/criterions/binary_cross_entropy_with_logits.py:BinaryCrossEntropyWithLogitsCriterion.forward``
  with ``report_cinc_score``, Jwoo5/fairseq-signals);
* per record, as the challenge defines it: `aggregate_segment_scores` merges the segments of each record (mean of
  the probabilities by default, or their maximum) and returns one score vector and one label vector per record.

Example::

    probabilities = 1 / (1 + np.exp(-logits))                      # (segments, classes), in dataset row order
    records = aggregate_segment_scores(test_set["record_id"], probabilities, labels=test_set["labels"])
    cinc2021_challenge_score(records.labels > 0.5, records.scores >= 0.5, classes=class_names)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["AGGREGATIONS", "RecordScores", "aggregate_segment_scores"]

AGGREGATIONS = ("mean", "max")


@dataclass
class RecordScores:
    """Per-record outputs, records in the order of their first segment.

    Attributes:
        record_ids: one id per record.
        scores: (records, classes) aggregated probabilities (or (records,) for 1-D input).
        labels: (records, classes) labels of each record (those of its segments, which must agree), or None when
            no labels were given.
        num_segments: (records,) how many segments each record had.
    """

    record_ids: list
    scores: np.ndarray
    labels: np.ndarray | None
    num_segments: np.ndarray

    def __len__(self) -> int:
        return len(self.record_ids)


def _as_array(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be (segments,) or (segments, classes), got shape {array.shape}")
    return array


def aggregate_segment_scores(
    record_ids: Sequence[Any],
    scores: Any,
    how: str = "mean",
    labels: Any = None,
) -> RecordScores:
    """Merge the segment scores of each record into one: the per-record scores (and labels) in record order.

    Args:
        record_ids: the record of every segment (the ``record_id`` column of a segment build), aligned with
            `scores` row by row. A record's segments need not be adjacent.
        scores: (segments, classes) or (segments,) **probabilities** in [0, 1] (e.g. ``sigmoid(logits)``); logits
            are refused, because their mean is not the mean of the probabilities.
        how: ``"mean"`` (default: the mean probability over a record's segments) or ``"max"`` (the highest, i.e. a
            class is predicted when any segment predicts it).
        labels: optional (segments, classes) labels; every segment of a record must carry the same ones (they come
            from the record's header), and each record's are returned.

    Returns:
        `RecordScores` with ``record_ids`` in the order of their first segment, ``scores``, ``labels`` (or None) and
        ``num_segments``.

    Raises:
        ValueError: misaligned lengths, no segments, a missing record id, scores outside [0, 1] or not finite,
            segments of one record with different labels, an unknown `how`.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"how must be one of {AGGREGATIONS}, got {how!r}")
    probabilities = _as_array(scores, "scores").astype(np.float64)
    ids = list(record_ids.tolist() if hasattr(record_ids, "tolist") else record_ids)
    if len(ids) != probabilities.shape[0]:
        raise ValueError(
            f"record_ids has {len(ids)} entries but scores has {probabilities.shape[0]} rows; pass the record id of "
            "every segment, in the order of the scores (the dataset's row order)"
        )
    if not ids:
        raise ValueError("no segments to aggregate")
    if not np.isfinite(probabilities).all():
        raise ValueError("scores contain NaN or infinite values")
    low, high = float(probabilities.min()), float(probabilities.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"scores range over [{low:.3g}, {high:.3g}], outside [0, 1]: these look like logits. Pass probabilities "
            "(sigmoid(logits)): the mean of logits is not the mean of probabilities"
        )
    index: dict[Any, int] = {}
    inverse = np.empty(len(ids), dtype=np.int64)
    for row, record in enumerate(ids):
        if record is None or (isinstance(record, float) and np.isnan(record)):
            raise ValueError(f"segment {row} has no record id")
        inverse[row] = index.setdefault(record, len(index))
    num_records = len(index)
    counts = np.bincount(inverse, minlength=num_records)
    shape = (num_records,) + probabilities.shape[1:]
    if how == "mean":
        merged = np.zeros(shape, dtype=np.float64)
        np.add.at(merged, inverse, probabilities)
        merged /= counts.reshape((-1,) + (1,) * (probabilities.ndim - 1))
    else:
        merged = np.full(shape, -np.inf, dtype=np.float64)
        np.maximum.at(merged, inverse, probabilities)
    record_labels = None
    if labels is not None:
        label_array = _as_array(labels, "labels")
        if label_array.shape != probabilities.shape:
            raise ValueError(f"labels have shape {label_array.shape} but scores {probabilities.shape}")
        first = np.full(num_records, -1, dtype=np.int64)
        for row in range(len(ids) - 1, -1, -1):  # the first segment of every record
            first[inverse[row]] = row
        record_labels = label_array[first]
        differs = np.flatnonzero((label_array != record_labels[inverse]).reshape(len(ids), -1).any(axis=1))
        if differs.size:
            row = int(differs[0])
            raise ValueError(
                f"the segments of record {ids[row]!r} carry different labels (segment rows {int(first[inverse[row]])} "
                f"and {row}); a record's segments share the record's labels, so the scores and record_ids are "
                "probably misaligned"
            )
    return RecordScores(
        record_ids=list(index), scores=merged.astype(np.float32), labels=record_labels, num_segments=counts
    )
