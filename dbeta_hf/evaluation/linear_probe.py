"""Linear probing on frozen D-BETA ECG features (reference spec F.2).

The encoder runs once per split (`embeddings.extract_ecg_features`, cached on disk); the probe is a multi-label
logistic regression ``sigmoid(x W + b)`` over all classes at once, trained in torch with Adam on the BCE loss
(+ L2 weight decay) over the cached features. Features are standardised with the statistics of the probe's own
training subset.

Protocol:

* **label fractions** (1 %, 10 %, 100 %): the probe sees a subset of the training split, drawn per seed by
  `subset_indices` (the data module's `label_fraction`) or a `subset_fn` (e.g. published split files); the
  validation and test splits are always complete;
* **model selection on the validation split**: the probe is evaluated every `eval_every` steps and the weights
  with the best validation macro AUROC are kept; training stops after `patience` evaluations without
  improvement. The test split is scored once, with the selected weights (never "the best test epoch");
* **several seeds** (subset draw and initialisation), reported as mean +- sample std of the test macro AUROC
  (one seed: its value, without a spread), with a bootstrap 95 % CI per seed. The test scores go through the
  package's ``multilabel_auroc`` `evaluate` module (`dbeta_hf.evaluation.metric_modules`);
* the same code probes a randomly initialised encoder (the ``--random-init`` baseline of
  `examples/linear_probe.py`), so the gain of pretraining is visible in the same table.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from tqdm.auto import tqdm

from ..data.splits import label_fraction
from .metric_modules import compute_multilabel_auroc
from .metrics import bootstrap_auroc_ci, fraction_label, macro_auroc, markdown_table
from .probe_settings import DEFAULT_FRACTIONS, LinearProbeConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FRACTIONS",
    "LinearProbeConfig",
    "LinearProbe",
    "subset_indices",
    "seed_auroc_record",
    "train_linear_probe",
    "run_linear_probe",
    "format_linear_probe_table",
    "PAPER_LINEAR_PROBE_AUROC",
]

# Published D-BETA (C-MELT) linear-probing AUROCs (%), Table 2, for 1 / 10 / 100 % of the training labels.
PAPER_LINEAR_PROBE_AUROC: dict[str, dict[str, float]] = {
    "ptbxl_super": {"1%": 83.15, "10%": 88.36, "100%": 90.11},
    "ptbxl_sub": {"1%": 77.74, "10%": 82.92, "100%": 85.15},
    "ptbxl_form": {"1%": 70.10, "10%": 78.91, "100%": 83.98},
    "ptbxl_rhythm": {"1%": 86.61, "10%": 92.83, "100%": 96.71},
    "cpsc2018": {"1%": 85.46, "10%": 91.35, "100%": 94.92},
    "csn": {"1%": 80.04, "10%": 87.36, "100%": 90.71},
}


@dataclass
class LinearProbe:
    """A trained probe: ``logits = ((x - mean) / std) @ weight + bias``."""

    weight: torch.Tensor  # (H, C)
    bias: torch.Tensor  # (C,)
    mean: torch.Tensor  # (H,)
    std: torch.Tensor  # (H,)
    best_step: int = 0
    best_val_auroc: float = float("nan")
    steps_run: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def logits(self, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features).float()
        return ((x - self.mean) / self.std) @ self.weight + self.bias

    def predict_proba(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, C) independent per-class probabilities."""
        return torch.sigmoid(self.logits(features)).numpy()


# ------------------------------------------------------------------------------------------------ subsets
def seed_auroc_record(seed: int, num_train: int, metrics: Mapping[str, Any], ci_low: float, ci_high: float) -> dict[str, Any]:
    """The test-AUROC part of one seed's result (linear probe and fine-tuning share it): `metrics` is what
    `multilabel_auroc` returns, `ci_low`/`ci_high` the bootstrap interval."""
    return {
        "seed": seed,
        "num_train": int(num_train),
        "macro_auroc": float(metrics["macro_auroc"]),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "per_class": {k: float(v) for k, v in metrics["per_class"].items()},
        "skipped_classes": dict(metrics["skipped_classes"]),
    }


def subset_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of the `fraction` training subset that the data module's `label_fraction` draws.

    `dbeta_hf.data.splits.label_fraction` depends only on the labels, the fraction and the seed (a seeded
    permutation, plus one positive of every class so that no class loses all its positives), so it is run on a
    labels-only table here: the rows are those `label_fraction(train_split, fraction, seed)` would keep, and
    every method (pretrained, random init) probes the same records.
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim == 1:
        labels = labels[:, None]
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1] (e.g. 0.01 for 1 %), got {fraction!r}")
    if float(fraction) == 1.0:
        return np.arange(labels.shape[0])
    table = Dataset.from_dict({"labels": labels.tolist(), "_row": np.arange(labels.shape[0]).tolist()})
    return np.asarray(label_fraction(table, float(fraction), seed=int(seed))["_row"], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ training
def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


class _single_thread:
    """Run small CPU tensor ops on one thread: the probe's ops are far too small to gain from intra-op
    parallelism, whose per-op synchronisation dominates (and can be very slow on shared machines)."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        return False


def train_linear_probe(
    train_features,
    train_labels,
    val_features,
    val_labels,
    config: LinearProbeConfig | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> LinearProbe:
    """Fit a multi-label logistic-regression probe; keep the weights with the best validation macro AUROC.

    When no validation class has both labels, the validation BCE loss selects the weights instead (logged).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cpu":
        with _single_thread():
            return _train_linear_probe(train_features, train_labels, val_features, val_labels, config, seed, device)
    return _train_linear_probe(train_features, train_labels, val_features, val_labels, config, seed, device)


def _checked_probe_data(train_features, train_labels, val_features, val_labels):
    """Float32 CPU tensors ``(x, y, xv, yv)`` with 2-D labels, or a clear error when the shapes disagree."""
    x, y, xv, yv = (_as_tensor(a) for a in (train_features, train_labels, val_features, val_labels))
    if y.dim() == 1:
        y, yv = y[:, None], yv[:, None]
    if x.shape[0] != y.shape[0] or xv.shape[0] != yv.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    if x.shape[1] != xv.shape[1] or y.shape[1] != yv.shape[1]:
        raise ValueError("train and validation features / labels must have the same widths")
    if x.shape[0] == 0:
        raise ValueError("the probe needs at least one training record")
    return x, y, xv, yv


def _standardization(x: torch.Tensor, standardize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of the training features (std 1 for constant features); zeros and ones without
    `standardize`."""
    num_features = x.shape[1]
    if not standardize:
        return torch.zeros(num_features), torch.ones(num_features)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones(num_features)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


def _initial_parameters(
    num_features: int, y: torch.Tensor, generator: torch.Generator, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Small random weights and, as bias, the prior log-odds of every class: the probe then only has to learn
    the signal."""
    weight = torch.zeros(num_features, y.shape[1])
    torch.nn.init.normal_(weight, std=0.01, generator=generator)
    prior = y.float().mean(dim=0).clamp(1e-3, 1 - 1e-3).cpu()
    bias = torch.log(prior / (1 - prior))
    return weight.to(device).requires_grad_(True), bias.to(device).requires_grad_(True)


def _minibatches(n: int, batch_size: int | None, generator: torch.Generator, device):
    """Endless row indices of minibatches: a fresh permutation once the current one cannot fill a batch.
    ``None`` (the whole training set) when the batch is the full set."""
    batch = n if batch_size is None or batch_size >= n else int(batch_size)
    order = torch.randperm(n, generator=generator).to(device)
    cursor = 0
    while True:
        if batch == n:
            yield None
            continue
        if cursor + batch > n:
            order = torch.randperm(n, generator=generator).to(device)
            cursor = 0
        yield order[cursor : cursor + batch]
        cursor += batch


def _train_linear_probe(train_features, train_labels, val_features, val_labels, config, seed, device) -> LinearProbe:
    cfg = config or LinearProbeConfig()
    x, y, xv, yv = _checked_probe_data(train_features, train_labels, val_features, val_labels)
    mean, std = _standardization(x, cfg.standardize)
    xs = ((x - mean) / std).to(device)
    xvs = ((xv - mean) / std).to(device)
    y, yv_np = y.to(device), yv.numpy()

    use_auroc = macro_auroc(yv_np, np.zeros_like(yv_np))[1] > 0
    if not use_auroc:
        logger.warning("no validation class has both positives and negatives: selecting the probe on validation loss")

    generator = torch.Generator().manual_seed(int(seed))
    weight, bias = _initial_parameters(x.shape[1], y, generator, device)
    optimizer = torch.optim.Adam([weight, bias], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    batches = _minibatches(xs.shape[0], cfg.batch_size, generator, device)
    best = (-math.inf, None, None, 0)
    history: list[dict[str, float]] = []
    evals_without_improvement = 0
    step = 0
    for step in range(1, cfg.max_steps + 1):
        idx = next(batches)
        xb, yb = (xs, y) if idx is None else (xs[idx], y[idx])
        loss = F.binary_cross_entropy_with_logits(xb @ weight + bias, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            with torch.no_grad():
                val_logits = xvs @ weight + bias
                val_loss = float(F.binary_cross_entropy_with_logits(val_logits, yv.to(device)))
                val_auroc = macro_auroc(yv_np, val_logits.cpu().numpy())[0] if use_auroc else float("nan")
            history.append({"step": step, "train_loss": float(loss.detach()), "val_loss": val_loss, "val_macro_auroc": val_auroc})
            criterion = val_auroc if use_auroc else -val_loss
            if criterion > best[0] + cfg.min_delta:
                best = (criterion, weight.detach().clone(), bias.detach().clone(), step)
                evals_without_improvement = 0
            else:
                evals_without_improvement += 1
                if cfg.patience is not None and evals_without_improvement >= cfg.patience:
                    break
    _, best_weight, best_bias, best_step = best
    if best_weight is None:  # pragma: no cover - max_steps >= 1 always evaluates once
        best_weight, best_bias, best_step = weight.detach().clone(), bias.detach().clone(), step
    best_val = next((h["val_macro_auroc"] for h in history if h["step"] == best_step), float("nan"))
    return LinearProbe(
        weight=best_weight.cpu(), bias=best_bias.cpu(), mean=mean, std=std, best_step=best_step,
        best_val_auroc=best_val, steps_run=step, history=history,
    )


def run_linear_probe(
    train_features,
    train_labels,
    val_features,
    val_labels,
    test_features,
    test_labels,
    class_names: Sequence[str],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    config: LinearProbeConfig | None = None,
    subset_fn: Callable[[float, int], Sequence[int]] | None = None,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Probe every (fraction, seed) and score the test split with the validation-selected weights.

    `subset_fn(fraction, seed) -> indices into the training split` chooses the labelled subset (default:
    `subset_indices`, i.e. the data module's `label_fraction`). Returns a JSON-ready dict::

        {"class_names": [...], "config": {...}, "seeds": [...],
         "fractions": {"1%": {"fraction": 0.01, "macro_auroc_mean": ..., "macro_auroc_std": ...,
                              "per_class_mean": {...}, "runs": [{"seed", "num_train", "macro_auroc", "ci_low",
                              "ci_high", "per_class", "skipped_classes", "best_step", "val_macro_auroc"}, ...]}},
         "test_scores": {"1%": (N, C) probabilities of the first seed, ...}}   # numpy; not JSON

    ``macro_auroc_std`` is the sample standard deviation over seeds (None for one seed: no spread).
    """
    cfg = config or LinearProbeConfig()
    train_y = np.asarray(train_labels, dtype=np.float32)
    test_y = np.asarray(test_labels, dtype=np.float32)
    names = list(class_names)
    if train_y.shape[1] != len(names) or test_y.shape[1] != len(names):
        raise ValueError(f"labels have {train_y.shape[1]} / {test_y.shape[1]} columns for {len(names)} class names")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("at least one seed is needed")
    results: dict[str, Any] = {"class_names": names, "config": cfg.to_dict(), "seeds": seeds, "fractions": {}}
    test_scores: dict[str, np.ndarray] = {}
    jobs = [(f, s) for f in fractions for s in seeds]
    bar = tqdm(total=len(jobs), desc="linear probe", disable=not progress, leave=False)
    for fraction in fractions:
        key = fraction_label(fraction)
        runs = []
        for seed in seeds:
            if subset_fn is not None:
                idx = np.asarray(subset_fn(fraction, seed), dtype=np.int64)
            else:
                idx = subset_indices(train_y, fraction, seed)
            probe = train_linear_probe(
                _as_tensor(train_features)[idx], train_y[idx], val_features, val_labels, cfg, seed=seed, device=device
            )
            probs = probe.predict_proba(test_features)
            metrics = compute_multilabel_auroc(test_y, probs, class_names=names)
            low, high = bootstrap_auroc_ci(test_y, probs, num_bootstrap=num_bootstrap, confidence=confidence, seed=seed)
            runs.append(
                {
                    **seed_auroc_record(seed, len(idx), metrics, low, high),
                    "best_step": probe.best_step,
                    "steps_run": probe.steps_run,
                    "val_macro_auroc": float(probe.best_val_auroc),
                }
            )
            if seed == seeds[0]:
                test_scores[key] = probs
            bar.update(1)
        macro = np.array([r["macro_auroc"] for r in runs], dtype=np.float64)
        per_class_mean = {
            c: float(np.nanmean([r["per_class"][c] for r in runs if c in r["per_class"]]))
            for c in names
            if any(c in r["per_class"] for r in runs)
        }
        results["fractions"][key] = {
            "fraction": float(fraction),
            "macro_auroc_mean": float(np.nanmean(macro)),
            "macro_auroc_std": float(np.nanstd(macro, ddof=1)) if np.isfinite(macro).sum() > 1 else None,
            "per_class_mean": per_class_mean,
            "confidence": confidence,
            "runs": runs,
        }
    bar.close()
    results["test_scores"] = test_scores
    return results


def _spread(entry: Mapping[str, Any]) -> float | None:
    """The std of a fraction entry, or None when fewer than two seeds ran (a spread of one value is no spread)."""
    if len(entry.get("runs", ())) < 2:
        return None
    return entry.get("macro_auroc_std")


def format_linear_probe_table(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    task_titles: Mapping[str, str] | None = None,
    title: str | None = None,
    fractions: Sequence[str] | None = None,
    paper_row: bool = True,
    selection: str = "probe selected on the validation split",
) -> str:
    """A markdown table in the layout of the paper's Table 2 (`dbeta_hf.evaluation.metrics.markdown_table`):
    one row per method, tasks as columns with the label fractions as sub-columns, cells ``mean ± std`` of the
    test macro AUROC in % (a cell of one seed shows its value alone: one seed has no spread), and an ``Average``
    column group when there are several tasks.

    `results[method][task]` is a `run_linear_probe` result (its ``"fractions"`` entry is read). With
    `paper_row`, the published D-BETA numbers of the same tasks are added as a reference row.
    """
    methods = list(results)
    tasks = list(dict.fromkeys(task for method in methods for task in results[method]))
    if fractions is None:
        fractions = list(
            dict.fromkeys(key for m in methods for r in results[m].values() for key in r["fractions"])
        )
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        rows[method] = {}
        for task in tasks:
            entries = results[method].get(task, {}).get("fractions", {})
            rows[method][task] = {
                frac: (
                    (entries[frac]["macro_auroc_mean"], _spread(entries[frac])) if frac in entries else None
                )
                for frac in fractions
            }
    if paper_row and any(task in PAPER_LINEAR_PROBE_AUROC for task in tasks):
        rows["D-BETA (paper)"] = {
            task: {
                frac: (PAPER_LINEAR_PROBE_AUROC[task][frac] / 100.0 if frac in PAPER_LINEAR_PROBE_AUROC.get(task, {}) else None)
                for frac in fractions
            }
            for task in tasks
        }
    table = markdown_table(rows, title=title, tasks=tasks, task_titles=task_titles, average=len(tasks) > 1)
    seeds = sorted(
        {len(r["fractions"][f]["runs"]) for m in methods for r in results[m].values() for f in r["fractions"]}
    )
    if seeds == [1]:
        note = f"Test macro AUROC (%) of one seed (no spread); {selection}."
    else:
        note = f"Test macro AUROC (%), mean ± sample std over {'/'.join(map(str, seeds))} seed(s); {selection}."
    if len(tasks) > 1:
        note += " The average is over the tasks of the row."
    return f"{table}\n\n{note}\n"

