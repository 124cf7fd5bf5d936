"""Downstream evaluation of D-BETA: metrics, zero-shot, linear probing, fine-tuning and retrieval.

Only the model-free metrics are imported here (numpy / scikit-learn); import the heavier modules directly,
e.g. ``from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier``.
"""

from .metrics import (
    TASK_DISPLAY_NAMES,
    bootstrap_auroc_ci,
    class_aurocs,
    format_results_table,
    macro_auroc,
    markdown_table,
    multilabel_auroc,
    recall_at_k,
)

__all__ = [
    "TASK_DISPLAY_NAMES",
    "bootstrap_auroc_ci",
    "class_aurocs",
    "format_results_table",
    "macro_auroc",
    "markdown_table",
    "multilabel_auroc",
    "recall_at_k",
]
