"""The input convention of a checkpoint: the order of its 12 input channels and how each lead is scaled.

A D-BETA checkpoint is only right for inputs prepared the way its pretraining data was, and nothing in the
official release says which way that was (reference spec D.3): the official dataset code never reorders leads
and feeds raw millivolts, MIMIC-IV-ECG files store aVF *before* aVL, fairseq-signals' MIMIC-IV-ECG pipeline
reorders leads by name and z-scores each lead, and MERL swaps PTB-XL's leads 4 and 5 to match MIMIC's stored
order. Two settings cover these candidates:

* ``lead_order``: ``"standard"`` (I, II, III, aVR, aVL, aVF, V1-V6: this package's canonical order, which every
  model pretrained by this package uses) or ``"mimic"`` (I, II, III, aVR, aVF, aVL, V1-V6: MIMIC-IV-ECG's stored
  order); ``"custom"`` describes any other order configured through ``lead_names``;
* ``input_normalization``: ``"none"`` (millivolts as recorded), ``"per-lead-zscore"`` (each lead minus its
  mean, divided by its standard deviation, over the unpadded samples after unit conversion, resampling and
  cropping) or ``"per-record-minmax"`` (MERL's and MELP's ``(x - min) / (max - min + 1e-8)`` with one minimum and
  maximum over all present leads of the record, after cropping / padding, padding included: `per_record_minmax`).

`DBetaECGFeatureExtractor(lead_order=..., input_normalization=...)` applies them and saves them in
``preprocessor_config.json``; `python -m dbeta_hf.conversion.diagnose_input_convention` measures which one a checkpoint
expects.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .ecg_signal import CANONICAL_LEAD_NAMES

__all__ = [
    "LEAD_ORDERS",
    "INPUT_NORMALIZATIONS",
    "MIMIC_LEAD_NAMES",
    "lead_names_for_order",
    "lead_order_name",
    "check_input_normalization",
]

MIMIC_LEAD_NAMES = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
LEAD_ORDERS = {"standard": list(CANONICAL_LEAD_NAMES), "mimic": MIMIC_LEAD_NAMES}
INPUT_NORMALIZATIONS = ("none", "per-lead-zscore", "per-record-minmax")


def lead_names_for_order(lead_order: str) -> list[str]:
    """The 12 channel names of a named lead order (``"standard"`` or ``"mimic"``)."""
    if lead_order not in LEAD_ORDERS:
        raise ValueError(
            f"unknown lead_order {lead_order!r}; choose one of {sorted(LEAD_ORDERS)} (or configure any other order "
            "with lead_names=[...])"
        )
    return list(LEAD_ORDERS[lead_order])


def lead_order_name(lead_names: Sequence[str]) -> str:
    """``"standard"``, ``"mimic"`` or ``"custom"`` for a list of (canonical) channel names."""
    for name, order in LEAD_ORDERS.items():
        if list(lead_names) == order:
            return name
    return "custom"


def check_input_normalization(input_normalization: str) -> str:
    if input_normalization not in INPUT_NORMALIZATIONS:
        raise ValueError(
            f"unknown input_normalization {input_normalization!r}; choose one of {list(INPUT_NORMALIZATIONS)}"
        )
    return input_normalization


def per_record_minmax(signal, eps: float = 1e-8):
    """Scale each record to [0, 1] as MERL and MELP do: ``(x - min) / (max - min + eps)``, with one minimum and one
    maximum over **all leads and samples of the record together** (not per lead).

    Sources: MERL (``cheliu-computation/MERL-ICML2024``) ``utils/utils_dataset.py:Ori_MIMIC_E_T_Dataset.__getitem__``
    (pretraining, MIMIC-IV-ECG in its stored lead order, eps 1e-8) and ``finetune/finetune_dataset.py:ECGDataset.
    __getitem__`` (downstream: after cropping to 5000 samples, CPSC2018 after zero-padding 2500 -> 5000, so the padding
    takes part; then leads 4 and 5 are swapped to MIMIC's order); MELP's MIMIC-IV-ECG pretraining dataset
    (``ECG_Text_Dataset.__getitem__``) uses the same formula on ``wfdb.rdsamp`` records. Scale whatever the model is
    fed, in the order that source used (crop or pad first, then scale).

    Args:
        signal: (leads, samples) or (..., leads, samples); each record is scaled with its own minimum and maximum.
        eps: added to the range (1e-8 in MERL's and MELP's code), so a flat record becomes all zeros.

    Returns:
        a new array, computed in the input's float dtype (float64 for an integer input); the input is not modified.
    """
    array = np.asarray(signal)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"the ECG signal must hold real numbers, got dtype {array.dtype}")
    if array.ndim < 2 or array.shape[-1] == 0 or array.shape[-2] == 0:
        raise ValueError(
            f"per_record_minmax takes (leads, samples) or (..., leads, samples) with at least one lead and sample, "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(
            "the ECG holds NaN or infinite values, which would make the whole record NaN after min-max scaling; "
            "replace them first (dbeta_hf.ecg_signal.handle_non_finite)"
        )
    work = array if array.dtype.kind == "f" else array.astype(np.float64)
    low = work.min(axis=(-2, -1), keepdims=True)
    high = work.max(axis=(-2, -1), keepdims=True)
    return (work - low) / (high - low + float(eps))  # in the input's float dtype, as numpy computes MERL's expression
