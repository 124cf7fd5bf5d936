"""Zero-shot under distribution shift (the paper's Table 4): score a target dataset on the classes it shares with
a source dataset.

In ``source -> target`` the label space is the source's: each shared class is described by the source task's
class description(s) and scored on the target test set, whose labels are mapped into it. The mapping between
PTB-XL superclasses, CPSC2018 and CSN is written out below, one list of shared classes per pair of datasets.
Each shared class names its members in every dataset of the pair; the label of a shared class on the target is
the OR of its target members, and its score is the highest score among its source members' descriptions (with
a single source member, that member's score).

The paper does not publish its mapping (MERL, whose Table 4 numbers D-BETA reprints, did not release one
either): this one follows the PTB-XL diagnostic hierarchy (conduction disturbances under ``CD``, ST-T changes
under ``STTC``, hypertrophies under ``HYP``) and pairs CPSC2018 / CSN codes that name the same finding. Classes
without a counterpart are left out (CPSC2018's AFIB, PAC and VPC have no PTB-XL superclass; PTB-XL's NORM has
no CSN class, CSN's ``SR`` being a rhythm, not a normal ECG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .metrics import bootstrap_auroc_ci, multilabel_auroc
from .options import CROSS_DATASET_TASKS
from .zero_shot import evaluation_ecg_features, zero_shot_scores

__all__ = [
    "CROSS_DATASET_TASKS",
    "SHARED_CLASSES",
    "SharedClass",
    "shared_classes",
    "cross_dataset_labels",
    "cross_dataset_scores",
    "evaluate_cross_dataset_zero_shot",
    "format_cross_dataset_table",
    "PAPER_CROSS_DATASET_AUROC",
]


# One list per pair of datasets; each entry maps every dataset of the pair to its member classes.
SHARED_CLASSES: dict[frozenset, list[dict[str, tuple[str, ...]]]] = {
    frozenset({"ptbxl_super", "cpsc2018"}): [
        {"ptbxl_super": ("NORM",), "cpsc2018": ("NORM",)},
        {"ptbxl_super": ("CD",), "cpsc2018": ("1AVB", "CLBBB", "CRBBB")},
        {"ptbxl_super": ("STTC",), "cpsc2018": ("STD", "STE")},
    ],
    frozenset({"ptbxl_super", "csn"}): [
        {"ptbxl_super": ("MI",), "csn": ("MI",)},
        {"ptbxl_super": ("CD",), "csn": ("1AVB", "2AVB", "2AVB1", "AVB", "LBBB", "RBBB", "WPW")},
        {"ptbxl_super": ("STTC",), "csn": ("STTC", "STDD", "STTU", "STE", "TWC", "TWO")},
        {"ptbxl_super": ("HYP",), "csn": ("LVH", "RVH")},
    ],
    frozenset({"cpsc2018", "csn"}): [
        {"cpsc2018": ("AFIB",), "csn": ("AFIB",)},
        {"cpsc2018": ("1AVB",), "csn": ("1AVB",)},
        {"cpsc2018": ("CLBBB",), "csn": ("LBBB",)},
        {"cpsc2018": ("CRBBB",), "csn": ("RBBB",)},
        {"cpsc2018": ("PAC",), "csn": ("APB",)},
        {"cpsc2018": ("VPC",), "csn": ("VPB",)},
        {"cpsc2018": ("STD",), "csn": ("STDD",)},
    ],
}


@dataclass(frozen=True)
class SharedClass:
    """One class of a ``source -> target`` evaluation: its name (the source members joined by ``/``), the source
    classes whose descriptions score it and the target classes whose labels define it."""

    name: str
    source_classes: tuple[str, ...]
    target_classes: tuple[str, ...]


def shared_classes(source: str, target: str) -> list[SharedClass]:
    """The shared classes of ``source -> target`` (tasks of `CROSS_DATASET_TASKS`)."""
    for task in (source, target):
        if task not in CROSS_DATASET_TASKS:
            raise ValueError(f"cross-dataset zero-shot is defined between {', '.join(CROSS_DATASET_TASKS)}; got {task!r}")
    if source == target:
        raise ValueError(f"source and target are both {source!r}; use the plain zero-shot evaluation for one dataset")
    return [
        SharedClass("/".join(entry[source]), tuple(entry[source]), tuple(entry[target]))
        for entry in SHARED_CLASSES[frozenset({source, target})]
    ]


def cross_dataset_labels(target_labels: np.ndarray, target_class_names: Sequence[str], shared: Sequence[SharedClass]) -> np.ndarray:
    """(N, K) labels of the shared classes: the OR of each shared class's target columns."""
    target_labels = np.asarray(target_labels) > 0.5
    names = list(target_class_names)
    missing = sorted({c for s in shared for c in s.target_classes if c not in names})
    if missing:
        raise KeyError(f"target label columns {missing} are missing (columns: {names})")
    return np.stack(
        [target_labels[:, [names.index(c) for c in s.target_classes]].any(axis=1) for s in shared], axis=1
    ).astype(np.float32)


def cross_dataset_scores(source_scores: np.ndarray, source_class_names: Sequence[str], shared: Sequence[SharedClass]) -> np.ndarray:
    """(N, K) scores of the shared classes: the highest score among each shared class's source members."""
    source_scores = np.asarray(source_scores)
    names = list(source_class_names)
    return np.stack(
        [source_scores[:, [names.index(c) for c in s.source_classes]].max(axis=1) for s in shared], axis=1
    )


def evaluate_cross_dataset_zero_shot(
    classifier,
    data: Any,
    target_labels: np.ndarray,
    target_class_names: Sequence[str],
    source: str,
    target: str,
    *,
    ecg_features: torch.Tensor | None = None,
    num_bootstrap: int = 1000,
    seed: int = 0,
    cache_dir=None,
    cache_name: str = "cross_dataset",
    progress: bool = True,
    sampling_rate: float | None = None,
) -> dict[str, Any]:
    """Score the target records (`data`, labels in the target's columns) on the classes shared with `source`.

    Returns ``{"source", "target", "shared_classes": [{name, source_classes, target_classes}], "macro_auroc",
    "per_class", "skipped_classes", "ci_low", "ci_high", "num_samples", "prompt_set"}``.
    """
    shared = shared_classes(source, target)
    labels = cross_dataset_labels(target_labels, target_class_names, shared)
    source_members = list(dict.fromkeys(c for s in shared for c in s.source_classes))
    text_embeds, texts = classifier.class_embeddings(source_members, task=source)
    ecg_features = evaluation_ecg_features(classifier, data, labels.shape[0], ecg_features, cache_dir=cache_dir,
                                           cache_name=cache_name, progress=progress, sampling_rate=sampling_rate)
    member_scores = classifier.score_embeddings(ecg_features, text_embeds).numpy()
    scores = cross_dataset_scores(member_scores, source_members, shared)
    names = [s.name for s in shared]
    metrics = multilabel_auroc(labels, scores, class_names=names)
    low, high = bootstrap_auroc_ci(labels, scores, num_bootstrap=num_bootstrap, seed=seed)
    return {
        "source": source,
        "target": target,
        "shared_classes": [
            {"name": s.name, "source_classes": list(s.source_classes), "target_classes": list(s.target_classes)}
            for s in shared
        ],
        **dict(metrics),
        "ci_low": low,
        "ci_high": high,
        "num_samples": int(labels.shape[0]),
        "similarity": classifier.similarity,
        "descriptions": dict(zip(source_members, texts)),
        "prompt_set": classifier.prompt_set_info,
    }


# The paper's Table 4 (AUC in %), D-BETA and MERL rows (the zero-shot methods).
PAPER_CROSS_DATASET_AUROC: dict[str, dict[tuple[str, str], float]] = {
    "MERL (paper)": {
        ("ptbxl_super", "cpsc2018"): 88.21, ("ptbxl_super", "csn"): 78.01, ("cpsc2018", "ptbxl_super"): 76.77,
        ("cpsc2018", "csn"): 76.56, ("csn", "ptbxl_super"): 74.15, ("csn", "cpsc2018"): 82.86,
    },
    "D-BETA (paper)": {
        ("ptbxl_super", "cpsc2018"): 72.09, ("ptbxl_super", "csn"): 79.11, ("cpsc2018", "ptbxl_super"): 77.12,
        ("cpsc2018", "csn"): 82.91, ("csn", "ptbxl_super"): 76.24, ("csn", "cpsc2018"): 80.10,
    },
}
TABLE4_PAIRS = [
    ("ptbxl_super", "cpsc2018"), ("ptbxl_super", "csn"), ("cpsc2018", "ptbxl_super"),
    ("cpsc2018", "csn"), ("csn", "ptbxl_super"), ("csn", "cpsc2018"),
]
_TITLES = {"ptbxl_super": "PTBXL-Super", "cpsc2018": "CPSC2018", "csn": "CSN"}


def format_cross_dataset_table(rows: Mapping[str, Mapping[tuple[str, str], float]], paper_rows: bool = True) -> str:
    """Markdown in the layout of the paper's Table 4: ``| Method | Zero-shot | Training ratio | PTBXL-Super→CPSC2018
    | ... |`` with the six pairs as columns (AUC in %). ``rows[method][(source, target)]`` is a macro AUROC in
    [0, 1]; missing pairs print ``–``. With `paper_rows`, the paper's MERL and D-BETA rows are added."""
    header = ["Method", "Zero-shot", "Training ratio"] + [f"{_TITLES[s]}→{_TITLES[t]}" for s, t in TABLE4_PAIRS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(method, values, scale):
        cells = [f"{scale * values[p]:.2f}" if values.get(p) is not None else "–" for p in TABLE4_PAIRS]
        return "| " + " | ".join([method, "✓", "0%"] + cells) + " |"

    for method, values in rows.items():
        lines.append(row(method, values, 100.0))
    if paper_rows:
        for method, values in PAPER_CROSS_DATASET_AUROC.items():
            lines.append(row(method, values, 1.0))
    title = "Zero-shot performance (AUC in %) under data distribution shift"
    note = ("Source→target: the target test set scored on the classes it shares with the source "
            "(dbeta_hf.evaluation.cross_dataset.SHARED_CLASSES), described by the source's class descriptions.")
    return f"**{title}**\n\n" + "\n".join(lines) + f"\n\n{note}\n"
