"""The package's metrics as `evaluate` modules, the way the ecosystem shares metrics.

Each module is a folder holding a script of the same name (what `evaluate.load` needs to load a local module), a
README.md that is also the metadata of a Hub metric Space, a ``<name>_app.py`` (the Space's widget, named in the
README's ``app_file``) and a ``requirements.txt``. The scripts are thin wrappers: they call the functions of `dbeta_hf.evaluation.metrics`, the
package's one implementation, so `evaluate.load(path).compute(...)` gives exactly their numbers.

* ``multilabel_auroc``: `dbeta_hf.evaluation.metrics.multilabel_auroc` (per-class and macro AUROC of multi-label
  scores);
* ``cinc2021_challenge_score``: `dbeta_hf.evaluation.metrics.cinc2021_metrics` (the PhysioNet/CinC Challenge 2021
  challenge score, macro F1 and macro AUROC of probabilities thresholded at ``threshold``).

They load offline (``HF_HUB_OFFLINE=1``, ``HF_EVALUATE_OFFLINE=1``)::

    >>> import evaluate
    >>> from dbeta_hf.evaluation.metric_modules import metric_module_path
    >>> auroc = evaluate.load(metric_module_path("multilabel_auroc"))
    >>> auroc.compute(predictions=scores, references=labels, class_names=names)["macro_auroc"]

`load_metric(name)` does that once per process. The fine-tuning and linear-probe code computes through the modules
(`compute_multilabel_auroc`, `compute_cinc2021_metrics`); `dbeta_hf.hub.push.push_metric_module` uploads a module as
a Space.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import evaluate
import numpy as np

from ..metrics import _to_numpy

__all__ = ["METRIC_MODULES", "compute_cinc2021_metrics", "compute_multilabel_auroc", "load_metric", "metric_module_path"]

METRIC_MODULES: tuple[str, ...] = ("multilabel_auroc", "cinc2021_challenge_score")
_ROOT = Path(__file__).resolve().parent


def metric_module_path(name: str) -> str:
    """The folder of the `evaluate` module `name` (pass it to `evaluate.load`)."""
    if name not in METRIC_MODULES:
        raise ValueError(f"unknown metric module {name!r}; dbeta_hf ships {', '.join(METRIC_MODULES)}")
    folder = _ROOT / name
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(f"the metric module {folder}/{name}.py is missing; reinstall dbeta_hf")
    return str(folder)


@lru_cache(maxsize=None)
def load_metric(name: str):
    """`evaluate.load` of the shipped module `name`, kept in memory (no cache files), loaded once per process."""
    return evaluate.load(metric_module_path(name), keep_in_memory=True)


def _matrix(x: Any) -> np.ndarray:
    """(N, C) float64 rows for the modules' ``Sequence(float64)`` features (torch tensors, lists, 1-D = one class)."""
    array = _to_numpy(x, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def compute_multilabel_auroc(references: Any, scores: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """`multilabel_auroc(references, scores, class_names)` computed through the ``multilabel_auroc`` module."""
    return load_metric("multilabel_auroc").compute(
        predictions=_matrix(scores), references=_matrix(references),
        class_names=None if class_names is None else list(class_names))


def compute_cinc2021_metrics(references: Any, probabilities: Any, classes: Sequence[str] | None = None,
                             threshold: float = 0.5) -> dict[str, float]:
    """`cinc2021_metrics(references, probabilities, classes, threshold)` computed through the
    ``cinc2021_challenge_score`` module."""
    return load_metric("cinc2021_challenge_score").compute(
        predictions=_matrix(probabilities), references=_matrix(references),
        classes=None if classes is None else list(classes), threshold=float(threshold))
