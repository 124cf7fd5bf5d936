"""Helpers to fine-tune `DBetaForECGClassification` with the `transformers.Trainer`.

* `prepare_classification_dataset`: a dataset of the data module (``ecg`` float16 mV, ``labels`` multi-hot)
  -> the two columns the model's `forward` takes (``ecg_values``, ``labels``), so `Trainer`'s
  `remove_unused_columns` keeps exactly them;
* `ECGClassificationCollator`: stacks them into float32 tensors;
* `make_compute_metrics`: ``macro_auroc`` (classes with both labels), ``num_classes_scored`` and one
  ``auroc_<class>`` per class, for `Trainer(compute_metrics=...)` and `metric_for_best_model="macro_auroc"`;
* `build_classification_model`: a D-BETA checkpoint (or a random init) -> `DBetaForECGClassification` with the
  class names in `id2label` and the multi-label problem type.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "ECGClassificationCollator",
    "prepare_classification_dataset",
    "make_compute_metrics",
    "build_classification_model",
]


def prepare_classification_dataset(dataset, ecg_column: str = "ecg", label_column: str = "labels"):
    """Keep the ECG and label columns, renamed to the model's argument names (``ecg_values``, ``labels``)."""
    missing = [c for c in (ecg_column, label_column) if c not in dataset.column_names]
    if missing:
        raise KeyError(f"the dataset has no {missing} column(s) (columns: {dataset.column_names})")
    dataset = dataset.select_columns([ecg_column, label_column])
    if ecg_column != "ecg_values":
        dataset = dataset.rename_column(ecg_column, "ecg_values")
    if label_column != "labels":
        dataset = dataset.rename_column(label_column, "labels")
    return dataset.with_format("numpy")


class ECGClassificationCollator:
    """Stack examples ``{"ecg_values": (12, S), "labels": (C,)}`` into float32 tensors (``ecg`` is accepted too).

    Args:
        label_dtype: `torch.float32` for multi-label BCE (default), `torch.long` for single-label classification.
    """

    def __init__(self, label_dtype: torch.dtype = torch.float32):
        self.label_dtype = label_dtype

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("empty batch")
        key = "ecg_values" if "ecg_values" in examples[0] else "ecg"
        if key not in examples[0]:
            raise KeyError(f"examples need an 'ecg_values' (or 'ecg') entry, got keys {sorted(examples[0])}")
        ecg = np.stack([np.asarray(e[key], dtype=np.float32) for e in examples])
        batch = {"ecg_values": torch.from_numpy(ecg)}
        if "labels" in examples[0]:
            labels = np.stack([np.asarray(e["labels"]) for e in examples])
            batch["labels"] = torch.as_tensor(labels).to(self.label_dtype)
        return batch


def _metric_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name))


def make_compute_metrics(class_names: Sequence[str] | None = None) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: macro AUROC over classes with both labels, and per-class AUROCs.

    The logits are used as scores (AUROC is invariant to the monotone sigmoid).
    """
    from .metrics import multilabel_auroc

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions if hasattr(eval_pred, "predictions") else eval_pred[0]
        labels = eval_pred.label_ids if hasattr(eval_pred, "label_ids") else eval_pred[1]
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels)
        names = list(class_names) if class_names is not None else [str(i) for i in range(logits.shape[-1])]
        result = multilabel_auroc(labels, logits, class_names=names)
        metrics = {
            "macro_auroc": float(result["macro_auroc"]),
            "num_classes_scored": float(result["num_classes_scored"]),
        }
        for name, value in result["per_class"].items():
            metrics[f"auroc_{_metric_name(name)}"] = float(value)
        return metrics

    return compute_metrics


def build_classification_model(
    model_name_or_path: str | None,
    class_names: Sequence[str],
    *,
    random_init: bool = False,
    config=None,
    freeze_encoder: bool = False,
    problem_type: str = "multi_label_classification",
    seed: int = 0,
    **config_overrides,
):
    """`DBetaForECGClassification` for `class_names`, from any D-BETA checkpoint (its ECG tower is loaded, the
    classifier is new) or, with ``random_init=True``, randomly initialised from the checkpoint's configuration
    (or from `config`)."""
    from ..configuration_dbeta import DBetaConfig
    from ..modeling_dbeta import DBetaForECGClassification

    names = list(class_names)
    label_kwargs = dict(
        num_labels=len(names),
        id2label={i: n for i, n in enumerate(names)},
        label2id={n: i for i, n in enumerate(names)},
        problem_type=problem_type,
        **config_overrides,
    )
    if random_init:
        if config is None:
            if model_name_or_path is None:
                raise ValueError("a random init needs a configuration: pass `config` or `model_name_or_path`")
            config = DBetaConfig.from_pretrained(model_name_or_path)
        for key, value in label_kwargs.items():
            setattr(config, key, value)
        torch.manual_seed(seed)
        model = DBetaForECGClassification(config)
    else:
        if model_name_or_path is None:
            raise ValueError("pass `model_name_or_path` (a D-BETA checkpoint) or random_init=True")
        torch.manual_seed(seed)  # the new classifier's initialisation
        model = DBetaForECGClassification.from_pretrained(model_name_or_path, **label_kwargs)
    if freeze_encoder:
        model.freeze_ecg_encoder()
    return model
