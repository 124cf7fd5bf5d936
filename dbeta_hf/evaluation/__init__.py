"""Downstream evaluation of D-BETA: metrics, zero-shot, linear probing, fine-tuning and retrieval.

Importing the sub-package loads nothing; the model-free metrics below load on first use
(``from dbeta_hf.evaluation import multilabel_auroc``), and the other modules are imported directly, e.g.
``from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier``.
"""

import importlib

_METRICS = (
    "TASK_DISPLAY_NAMES",
    "bootstrap_auroc_ci",
    "class_aurocs",
    "format_results_table",
    "macro_auroc",
    "markdown_table",
    "multilabel_auroc",
    "recall_at_k",
)
__all__ = list(_METRICS)


def __getattr__(name: str):
    if name in _METRICS:
        value = getattr(importlib.import_module(".metrics", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_METRICS))
