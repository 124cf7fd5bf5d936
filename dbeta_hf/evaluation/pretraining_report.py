"""End-of-pretraining report: zero-shot AUROC, linear-probe AUROC and ECG<->report retrieval in one call.

`pretraining_report` is what `examples/pretrain.py` prints after training and what `examples/ablate.py` scores every
variant with. It reuses the package's evaluation code (`DBetaZeroShotClassifier` / `evaluate_zero_shot`,
`train_linear_probe`, `retrieval_metrics`) and runs on the model's device.

* **Zero-shot**: the uni-modal ECG embedding of every held-out record scored against the class descriptions
  (`dbeta_hf.evaluation.prompts`, raw dot product as the official model), macro AUROC and per class.
* **Linear probe**: a logistic regression on the frozen ECG embeddings of (part of) the training split, early-stopped
  on a fifth of it, scored on the held-out records.
* **Retrieval**: ECG -> report and report -> ECG Recall@k over the held-out pairs (a report counts as relevant when
  it is identical, after normalization, to the ECG's own report).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .embeddings import extract_ecg_features, extract_text_features, labels_array
from .linear_probe import train_linear_probe
from .metrics import multilabel_auroc
from .retrieval import retrieval_metrics
from .zero_shot import DBetaZeroShotClassifier, evaluate_zero_shot

__all__ = ["pretraining_report", "format_pretraining_report"]


def pretraining_report(
    model,
    processor,
    train,
    heldout,
    class_names: Sequence[str],
    *,
    task: str | None = None,
    probe_records: int | None = 768,
    ks: Sequence[int] = (1, 5),
    seed: int = 0,
    batch_size: int = 64,
    num_bootstrap: int = 200,
    progress: bool = False,
    prompt_ensemble: str = "description",
) -> dict[str, Any]:
    """Score a pretrained D-BETA on held-out pairs.

    Args:
        model: `DBetaModel` or `DBetaForPreTraining` (its mode is restored afterwards).
        processor: its `DBetaProcessor`.
        train: `datasets.Dataset` with ``ecg`` and ``labels``; the first `probe_records` rows (all with `None`) train
            the probe, the last fifth of them selects its early-stopping step.
        heldout: `datasets.Dataset` with ``ecg``, ``report`` and ``labels`` (never seen in training).
        class_names: names of the label columns, looked up in the class descriptions of `task`; `None` (data
            without labels) reports retrieval only.
        prompt_ensemble: the texts that stand for a class in zero-shot scoring (`DBetaZeroShotClassifier`):
            ``"description"`` (the official scoring), ``"name+description"`` or ``"sentences"``.
    Returns ``{"zero_shot": {...}, "linear_probe": {...}, "retrieval": {...}}``; each has ``macro_auroc`` /
    ``per_class`` (AUROCs) or ``ecg_to_report`` / ``report_to_ecg`` (``R@k``).
    """
    names = None if class_names is None else list(class_names)
    similarity = "model"  # the model's ECG-text logits: the similarity its ETS loss trained
    was_training = model.training
    try:
        heldout_feats = extract_ecg_features(model, heldout, batch_size=batch_size, progress=progress, desc="held-out ECG features")
        reports = [str(r) for r in heldout["report"]]
        text_feats = extract_text_features(model, processor, reports, batch_size=batch_size, progress=progress,
                                           desc="report features")
        normalize = bool(getattr(processor, "normalize_text", True))
        retrieval = retrieval_metrics(heldout_feats, text_feats, reports, ks=ks, similarity=similarity, normalize=normalize,
                                      model=model)
        if class_names is None:
            return {"retrieval": retrieval}
        heldout_labels = labels_array(heldout)
        classifier = DBetaZeroShotClassifier(model, processor, similarity=similarity, task=task, batch_size=batch_size,
                                             prompt_ensemble=prompt_ensemble)
        zero_shot, _ = evaluate_zero_shot(classifier, heldout, heldout_labels, names, task=task, ecg_features=heldout_feats,
                                          num_bootstrap=num_bootstrap, seed=seed, progress=progress)

        probe_split = train if probe_records is None else train.select(range(min(len(train), int(probe_records))))
        if len(probe_split) < 5:
            raise ValueError(f"the linear probe needs at least 5 training records, got {len(probe_split)}")
        probe_feats = extract_ecg_features(model, probe_split, batch_size=batch_size, progress=progress, desc="probe ECG features")
        probe_labels = labels_array(probe_split)
        cut = len(probe_split) - max(1, len(probe_split) // 5)
        probe = train_linear_probe(probe_feats[:cut], probe_labels[:cut], probe_feats[cut:], probe_labels[cut:], seed=seed)
        linear_probe = multilabel_auroc(heldout_labels, probe.predict_proba(heldout_feats), class_names=names)
        linear_probe["num_train"] = int(cut)
    finally:
        model.train(was_training)
    return {
        "zero_shot": {k: zero_shot[k] for k in ("macro_auroc", "per_class", "ci_low", "ci_high", "num_samples", "similarity",
                                                "prompt_ensemble", "descriptions")},
        "linear_probe": linear_probe,
        "retrieval": retrieval,
    }


def _value(value: float | None) -> str:
    return "  n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


_PROMPT_WORDS = {
    "description": "one description per class (the official scoring)",
    "name+description": "ensemble of the class name and its description (embeddings averaged)",
    "sentences": "ensemble of the description's sentences (embeddings averaged)",
}


def format_pretraining_report(report: dict[str, Any], num_heldout: int | None = None) -> str:
    """Plain-text lines: zero-shot and probe AUROC per class side by side, then Recall@k both ways."""
    zero_shot, probe, retrieval = report["zero_shot"], report["linear_probe"], report["retrieval"]
    where = f" on {num_heldout} held-out ECGs" if num_heldout else ""
    lines = [f"zero-shot macro AUROC {_value(zero_shot['macro_auroc'])}, linear-probe macro AUROC "
             f"{_value(probe['macro_auroc'])} (frozen features, {probe['num_train']} training records){where}",
             f"zero-shot prompts: {_PROMPT_WORDS.get(zero_shot.get('prompt_ensemble'), zero_shot.get('prompt_ensemble'))}",
             f"  {'class':>6}  zero-shot  linear probe"]
    for name in zero_shot["per_class"]:
        lines.append(f"  {name:>6}      {_value(zero_shot['per_class'][name])}         {_value(probe['per_class'].get(name))}")
    for direction, title in (("ecg_to_report", "ECG->report"), ("report_to_ecg", "report->ECG")):
        recalls = "  ".join(f"{k}={v:.3f}" for k, v in retrieval[direction].items() if k.startswith("R@"))
        lines.append(f"{title} retrieval over {retrieval['num_pairs']} held-out pairs "
                     f"({retrieval['num_unique_reports']} distinct reports): {recalls}")
    return "\n".join(lines)
