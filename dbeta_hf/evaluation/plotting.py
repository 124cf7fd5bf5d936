"""Plots: a 12-lead ECG on standard ECG paper, and ROC curves for multi-label evaluation.

matplotlib is an optional dependency (the ``plots`` extra), imported by the function that draws, so that the
rest of the evaluation works without it. Figures are built with `matplotlib.figure.Figure` directly (no pyplot),
so nothing here touches the global pyplot state or needs a display: it works under ``matplotlib.use("Agg")``,
in headless CI and in notebooks (a returned `Figure` renders inline).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import roc_curve

from ..ecg_signal import CANONICAL_LEAD_NAMES
from .metrics import class_aurocs

__all__ = ["plot_ecg", "plot_roc_curves", "roc_figure", "ROC_AXIS_PAD", "STANDARD_12_LEAD_LAYOUT"]

# Standard printed layout: four 2.5 s columns of three leads each, then a 10 s lead II rhythm strip.
STANDARD_12_LEAD_LAYOUT = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]

_MINOR_GRID = "#f6c8c8"
_MAJOR_GRID = "#e79a9a"


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _paper_size(duration_s: float, height_mv: float) -> tuple[float, float]:
    """Figure size (inches) that keeps the 25 mm/s, 10 mm/mV proportions, 10 inches wide for 10 s."""
    width = float(np.clip(duration_s, 4.0, 20.0))
    return width, width * (height_mv * 0.4) / max(duration_s, 1e-6) + 0.5


def _ecg_paper(ax, x_max: float, y_min: float, y_max: float) -> None:
    """Pink ECG paper: 1 mm = 40 ms x 0.1 mV minor lines, 5 mm major lines (25 mm/s, 10 mm/mV)."""
    ax.set_xlim(0.0, x_max)
    ax.set_ylim(y_min, y_max)
    ax.set_xticks(np.arange(0.0, x_max + 1e-9, 0.2))
    ax.set_xticks(np.arange(0.0, x_max + 1e-9, 0.04), minor=True)
    ax.set_yticks(np.arange(np.floor(y_min * 2) / 2, y_max + 1e-9, 0.5))
    ax.set_yticks(np.arange(np.floor(y_min * 10) / 10, y_max + 1e-9, 0.1), minor=True)
    ax.grid(which="major", color=_MAJOR_GRID, linewidth=0.6)
    ax.grid(which="minor", color=_MINOR_GRID, linewidth=0.3)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect(0.4)  # 1 mV (10 mm) is as tall as 0.4 s (10 mm) is wide
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_ecg(
    ecg: Any,
    sampling_rate: float = 500,
    lead_names: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    rhythm_lead: str | None = "II",
    dpi: int = 100,
):
    """Draw an ECG on standard ECG paper and return the `matplotlib.figure.Figure`.

    Args:
        ecg: ``(leads, samples)`` array (numpy or torch) in millivolts.
        sampling_rate: samples per second.
        lead_names: one name per row; defaults to the canonical 12-lead order for 12 rows, ``lead 1..n``
            otherwise. With the twelve standard names (any order) the standard 3 x 4 layout of 2.5 s columns
            is drawn, plus a full-length `rhythm_lead` strip (``None`` to omit); otherwise every lead gets a
            full-length row.
        title: figure title.
        path: if given, the figure is saved there (format from the extension, e.g. ``.png`` / ``.pdf``).
    """
    x = _to_numpy(ecg).astype(np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"ecg must be (leads, samples), got shape {x.shape}")
    n_leads, n = x.shape
    if lead_names is None:
        lead_names = list(CANONICAL_LEAD_NAMES) if n_leads == 12 else [f"lead {i + 1}" for i in range(n_leads)]
    lead_names = list(lead_names)
    if len(lead_names) != n_leads:
        raise ValueError(f"{len(lead_names)} lead names for {n_leads} leads")
    x = np.nan_to_num(x)
    fs = float(sampling_rate)
    duration = n / fs
    lookup = {name.lower(): i for i, name in enumerate(lead_names)}
    standard = sorted(name.lower() for row in STANDARD_12_LEAD_LAYOUT for name in row)
    row_gap = 3.0  # mV between rows

    if sorted(lookup) == standard:
        col_len = duration / 4.0
        rows = [list(r) for r in STANDARD_12_LEAD_LAYOUT]
        strip = rhythm_lead if rhythm_lead and rhythm_lead.lower() in lookup else None
        n_rows = 3 + (1 if strip else 0)
        fig = _figure(*_paper_size(duration, n_rows * row_gap), dpi)
        ax = fig.add_subplot(1, 1, 1)
        y_top = 0.0
        for r, row in enumerate(rows):
            base = -r * row_gap
            for c, name in enumerate(row):
                i0, i1 = int(round(c * col_len * fs)), int(round((c + 1) * col_len * fs))
                t = np.arange(i0, i1) / fs
                ax.plot(t, x[lookup[name.lower()], i0:i1] + base, color="black", linewidth=0.7)
                ax.text(c * col_len + 0.05, base + 0.9, name, fontsize=9, va="bottom")
                if c > 0:
                    ax.plot([c * col_len] * 2, [base - 0.4, base + 0.4], color="black", linewidth=0.7)
        if strip:
            base = -3 * row_gap
            ax.plot(np.arange(n) / fs, x[lookup[strip.lower()]] + base, color="black", linewidth=0.7)
            ax.text(0.05, base + 0.9, strip, fontsize=9, va="bottom")
        y_min = -(n_rows - 1) * row_gap - row_gap / 2.0
        _ecg_paper(ax, duration, y_min, y_top + row_gap / 2.0)
    else:
        fig = _figure(*_paper_size(duration, n_leads * row_gap), dpi)
        ax = fig.add_subplot(1, 1, 1)
        t = np.arange(n) / fs
        for i in range(n_leads):
            base = -i * row_gap
            ax.plot(t, x[i] + base, color="black", linewidth=0.7)
            ax.text(0.05, base + 0.9, lead_names[i], fontsize=9, va="bottom")
        _ecg_paper(ax, duration, -(n_leads - 1) * row_gap - row_gap / 2.0, row_gap / 2.0)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


# the ROC axes reach this far beyond [0, 1], so that a perfect class's curve (along the left and top edges) is not
# hidden under the frame
ROC_AXIS_PAD = 0.02


def roc_figure(
    y_true: Any,
    scores: Any,
    class_names: Sequence[str] | None,
    title: str | None = None,
    dpi: int = 100,
):
    """The `matplotlib.figure.Figure` of `plot_roc_curves`: one ROC curve per scorable class, the axes padded by
    `ROC_AXIS_PAD` beyond [0, 1], and a title of two lines (`title`, then the macro AUROC)."""
    y = _to_numpy(y_true)
    s = _to_numpy(scores).astype(np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s.reshape(-1, 1)
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must have the same shape")
    names = list(class_names) if class_names is not None else [f"class {c}" for c in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} class names for {y.shape[1]} classes")
    fig = _figure(7.5, 6.0, dpi)
    ax = fig.add_subplot(1, 1, 1)
    class_auc = class_aurocs(y > 0.5, s)
    aucs = []
    for c, name in enumerate(names):
        yc = y[:, c] > 0.5
        if yc.all() or not yc.any():
            continue
        fpr, tpr, _ = roc_curve(yc, s[:, c])
        auc = float(class_auc[c])
        aucs.append(auc)
        ax.plot(fpr, tpr, linewidth=1.2, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlim(-ROC_AXIS_PAD, 1 + ROC_AXIS_PAD)
    ax.set_ylim(-ROC_AXIS_PAD, 1 + ROC_AXIS_PAD)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    heading = title or "ROC curves"
    if aucs:
        heading += f"\nmacro AUROC {np.mean(aucs):.3f} over {len(aucs)} classes"
        ncol = 1 if len(aucs) <= 12 else 2
        ax.legend(loc="lower right", fontsize=7 if len(aucs) <= 12 else 5, ncol=ncol)
    else:
        ax.text(0.5, 0.5, "no class has both positives and negatives", ha="center")
    ax.set_title(heading, fontsize=10)
    fig.tight_layout()
    return fig


def plot_roc_curves(
    y_true: Any,
    scores: Any,
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """Write a PNG (or any format matplotlib knows, from the extension) with one ROC curve per scorable class.

    A class is scorable when it has at least one positive and one negative; the legend shows each class's
    AUROC and the title the macro AUROC over scorable classes (`roc_figure`). Name what distinguishes the run in
    `title` (task, lead set, labels, seed): plots of different runs must not share a title. Returns the written
    path.
    """
    fig = roc_figure(y_true, scores, class_names, title=title, dpi=dpi)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
