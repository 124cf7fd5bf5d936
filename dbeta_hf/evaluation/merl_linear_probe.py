"""MERL's linear-probe protocol (Liu et al., ICML 2024), the protocol behind the baselines of D-BETA's Table 2.

This package's default linear probe (`dbeta_hf.evaluation.linear_probe`) selects the probe on the validation split
and scores the test split once. MERL's published numbers come from a different protocol, reproduced here so that
numbers can be compared like for like (reference spec F.2; the settings are MERL's ``finetune/`` code):

* inputs: each record min-max scaled to [0, 1] over all its leads and samples together
  (``(x - min) / (max - min + 1e-8)``); PTB-XL and CSN keep the first 5,000 samples (10 s at 500 Hz); CPSC2018
  keeps the first 2,500 and zero-pads to 5,000 (the padding takes part in the min-max);
* the labelled subset: ``sklearn.model_selection.train_test_split(train, train_size=r, random_state=42)`` (all
  of the training split for r = 1);
* a linear head on the frozen encoder's features (no feature standardisation), `BCEWithLogitsLoss`, Adam
  lr 1e-3, weight decay 1e-4, batch 16 (shuffled), 100 epochs, ``MultiStepLR(milestones=[40], gamma=0.1)``.
  MERL's code calls ``scheduler.step()`` after every iteration *and* after every epoch, so the learning rate
  drops after 40 scheduler steps (inside the first epoch on any real training set); `scheduler_step="epoch"`
  steps once per epoch instead;
* the test macro AUROC after every epoch; MERL reports the **maximum over epochs**, which selects on the test set
  and is therefore optimistic. Both that number and the last epoch's AUROC are reported.

MERL also swaps leads 4 and 5 (aVL, aVF) to MIMIC-IV-ECG's stored order. Here the lead order is the model's
input convention, saved in its processor (`dbeta_hf.input_convention`), and is not changed by this protocol.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from .metrics import fraction_label, macro_auroc
from .probe_settings import SCHEDULER_STEPS, MERLProbeConfig

__all__ = [
    "MERLProbeConfig",
    "MERLInputEncoder",
    "MERL_RECORD_SAMPLES",
    "SCHEDULER_STEPS",
    "merl_input_transform",
    "merl_train_subset",
    "train_merl_probe",
    "run_merl_linear_probe",
]

# Samples kept from the start of each record before zero-padding to 5,000 (reference spec F.2).
MERL_RECORD_SAMPLES = {"cpsc2018": 2500}
MERL_INPUT_SAMPLES = 5000


def merl_input_transform(ecg_values: torch.Tensor, task: str | None = None) -> torch.Tensor:
    """MERL's input preparation of (B, leads, 5000) model inputs: for CPSC2018 the samples after the first 2,500
    are zeroed (MERL keeps 2,500 and zero-pads), then every record is min-max scaled to [0, 1] over all leads
    and samples together."""
    if ecg_values.dim() != 3 or ecg_values.shape[-1] != MERL_INPUT_SAMPLES:
        raise ValueError(
            f"MERL's protocol works on (batch, leads, {MERL_INPUT_SAMPLES}) inputs (10 s at 500 Hz), got "
            f"{tuple(ecg_values.shape)}; prepare the records with the model's feature extractor first"
        )
    x = ecg_values.float().clone()
    keep = MERL_RECORD_SAMPLES.get(task or "")
    if keep is not None:
        x[..., keep:] = 0.0
    flat = x.reshape(x.shape[0], -1)
    low = flat.min(dim=1).values[:, None, None]
    high = flat.max(dim=1).values[:, None, None]
    return (x - low) / (high - low + 1e-8)


class MERLInputEncoder(torch.nn.Module):
    """Wraps an ECG encoder so that `get_ecg_features` sees MERL-prepared inputs (`merl_input_transform`)."""

    def __init__(self, encoder: torch.nn.Module, task: str | None):
        super().__init__()
        self.encoder = encoder
        self.task = task

    def get_ecg_features(self, ecg_values: torch.Tensor) -> torch.Tensor:
        return self.encoder.get_ecg_features(merl_input_transform(ecg_values, self.task).to(ecg_values.dtype))


def merl_train_subset(num_train: int, fraction: float, random_state: int = 42) -> np.ndarray:
    """Row indices of MERL's labelled subset: ``train_test_split(rows, train_size=fraction,
    random_state=random_state)[0]`` (in that function's shuffled order); every row for fraction 1."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    rows = np.arange(int(num_train))
    if float(fraction) == 1.0:
        return rows
    subset, _ = train_test_split(rows, train_size=float(fraction), random_state=random_state)
    return np.asarray(subset, dtype=np.int64)


def train_merl_probe(
    train_features, train_labels, test_features, test_labels, config: MERLProbeConfig | None = None,
) -> dict[str, Any]:
    """Train the linear head MERL's way and score the test split after every epoch.

    Returns ``{"max_test_auroc", "max_test_epoch", "last_epoch_auroc", "test_auroc_per_epoch",
    "learning_rate_per_epoch"}`` (epochs counted from 1; the learning rate is the one used during that epoch's
    last iteration).
    """
    cfg = config or MERLProbeConfig()
    x = torch.as_tensor(np.asarray(train_features, dtype=np.float32))
    y = torch.as_tensor(np.asarray(train_labels, dtype=np.float32))
    xt = torch.as_tensor(np.asarray(test_features, dtype=np.float32))
    yt = np.asarray(test_labels, dtype=np.float32)
    if x.shape[0] == 0:
        raise ValueError("the probe needs at least one training record")
    if x.shape[0] != y.shape[0] or xt.shape[0] != yt.shape[0] or x.shape[1] != xt.shape[1]:
        raise ValueError("features and labels must agree in rows, and train / test features in width")
    torch.manual_seed(cfg.seed)
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)
    aurocs, rates = [], []
    for _ in range(cfg.epochs):
        order = torch.randperm(x.shape[0])
        for start in range(0, x.shape[0], cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(head(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            rate = optimizer.param_groups[0]["lr"]
            if cfg.scheduler_step == "iteration_and_epoch":
                scheduler.step()
        with torch.no_grad():
            aurocs.append(macro_auroc(yt, head(xt).numpy())[0])
        rates.append(rate)
        scheduler.step()
    best = int(np.nanargmax(aurocs))
    return {
        "max_test_auroc": float(aurocs[best]),
        "max_test_epoch": best + 1,
        "last_epoch_auroc": float(aurocs[-1]),
        "test_auroc_per_epoch": [float(a) for a in aurocs],
        "learning_rate_per_epoch": rates,
    }


def run_merl_linear_probe(
    train_features, train_labels, test_features, test_labels, class_names: Sequence[str],
    fractions: Sequence[float] = (0.01, 0.1, 1.0), config: MERLProbeConfig | None = None,
) -> dict[str, Any]:
    """MERL's protocol for every label fraction. Returns a JSON-ready dict::

        {"protocol": "merl", "config": {...}, "class_names": [...],
         "fractions": {"1%": {"fraction", "num_train", "max_test_auroc", "max_test_auroc_label": "optimistic ...",
                              "max_test_epoch", "last_epoch_auroc", "test_auroc_per_epoch", ...}}}
    """
    cfg = config or MERLProbeConfig()
    train_features = np.asarray(train_features, dtype=np.float32)
    train_labels = np.asarray(train_labels, dtype=np.float32)
    results: dict[str, Any] = {"protocol": "merl", "config": cfg.to_dict(), "class_names": list(class_names),
                               "fractions": {}}
    for fraction in fractions:
        idx = merl_train_subset(len(train_labels), fraction, cfg.random_state)
        run = train_merl_probe(train_features[idx], train_labels[idx], test_features, test_labels, cfg)
        results["fractions"][fraction_label(fraction)] = {
            "fraction": float(fraction),
            "num_train": int(len(idx)),
            **run,
            "max_test_auroc_label": "optimistic: maximum test AUROC over epochs, as MERL reports it",
        }
    return results
