"""Helpers to fine-tune `DBetaForECGClassification` with the `transformers.Trainer`.

* `prepare_classification_dataset`: a dataset of the data module (``ecg`` float16 mV, ``labels`` multi-hot)
  -> the two columns the model's `forward` takes (``ecg_values``, ``labels``), so `Trainer`'s
  `remove_unused_columns` keeps exactly them;
* `ECGClassificationCollator`: stacks them into float32 tensors; with `lead_names` it keeps only those leads
  and passes them through the feature extractor's lead handling, which zero-fills the others (the "P-N-lead"
  settings of the PhysioNet 2021 benchmark, `LEAD_SUBSETS`), for training and evaluation batches alike;
* `make_compute_metrics`: ``macro_auroc`` (classes with both labels), ``num_classes_scored`` and one
  ``auroc_<class>`` per class, for `Trainer(compute_metrics=...)` and `metric_for_best_model="macro_auroc"`;
  with ``cinc2021=True`` also the CinC 2021 ``challenge_score`` and ``macro_f1`` (sigmoid >= 0.5). Computed
  through the package's `evaluate` modules (`dbeta_hf.evaluation.metric_modules`);
* `build_classification_model`: a D-BETA checkpoint (or a random init) -> `DBetaForECGClassification` with the
  class names in `id2label` and the multi-label problem type. Loading it logs one line naming the new head
  (`load_classification_model`), instead of transformers' load report table and the package's own line.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from ..configuration_dbeta import DBetaConfig
from ..ecg_signal import CANONICAL_LEAD_NAMES, canonical_lead_name
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..modeling_dbeta import DBetaForECGClassification
from .metric_modules import compute_cinc2021_metrics, compute_multilabel_auroc

logger = logging.getLogger(__name__)

__all__ = [
    "LEAD_SUBSETS",
    "PAPER_TABLE1_CINC",
    "lead_subset",
    "lead_setting_title",
    "format_cinc2021_table",
    "ECGClassificationCollator",
    "prepare_classification_dataset",
    "make_compute_metrics",
    "check_fine_tuning_labels",
    "build_classification_model",
    "load_classification_model",
]


# The lead settings of the PhysioNet/CinC 2021 challenge ("Will Two Do?"), used by the paper's Table 1
# (12-lead and P-6/3/2/1-lead, the missing leads zero-filled). fairseq-signals takes them as lead indices
# (`--leads 0,1,2,3,4,5` in the order I, II, III, aVR, aVL, aVF, V1-V6); the 1-lead setting is lead I.
LEAD_SUBSETS: dict[int, tuple[str, ...]] = {
    12: ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"),
    6: ("I", "II", "III", "aVR", "aVL", "aVF"),
    3: ("I", "II", "V2"),
    2: ("I", "II"),
    1: ("I",),
}


def lead_subset(num_leads: int) -> tuple[str, ...]:
    """The leads kept in the `num_leads`-lead setting (12, 6, 3, 2 or 1)."""
    if num_leads not in LEAD_SUBSETS:
        raise ValueError(f"no {num_leads}-lead setting; choose from {sorted(LEAD_SUBSETS, reverse=True)}")
    return LEAD_SUBSETS[num_leads]


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
        lead_names: keep only these leads (e.g. ``lead_subset(3)`` = I, II, V2). The kept rows go through
            `feature_extractor` with their names, which puts them in its output lead order, zero-fills the
            other leads and returns ``lead_mask`` (also put in the batch). None: the ECGs are stacked as stored.
        feature_extractor: the `DBetaECGFeatureExtractor` used with `lead_names` (default: a default one, i.e.
            500 Hz, 5000 samples, canonical lead order, no filtering).
        sampling_rate: the rate of the stored ECGs (500 Hz for the datasets of `dbeta_hf.data`).
        stored_lead_names: the lead order of the stored ECGs (the canonical order by default).
    """

    def __init__(
        self,
        label_dtype: torch.dtype = torch.float32,
        lead_names: Sequence[str] | None = None,
        feature_extractor=None,
        sampling_rate: float = 500.0,
        stored_lead_names: Sequence[str] | None = None,
    ):
        self.label_dtype = label_dtype
        self.sampling_rate = float(sampling_rate)
        self.lead_names = None
        self.rows = None
        if lead_names is not None:
            if isinstance(lead_names, str):
                raise TypeError(f"lead_names must be a list of lead names, not the string {lead_names!r}")
            stored = [canonical_lead_name(n) for n in (stored_lead_names or CANONICAL_LEAD_NAMES)]
            self.lead_names = [canonical_lead_name(n) for n in lead_names]
            missing = [n for n in self.lead_names if n not in stored]
            if missing or not self.lead_names:
                raise ValueError(f"lead_names {list(lead_names)} must be a non-empty subset of the stored leads {stored}")
            self.rows = [stored.index(n) for n in self.lead_names]
            if feature_extractor is None:
                feature_extractor = DBetaECGFeatureExtractor()
        self.feature_extractor = feature_extractor

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("empty batch")
        key = "ecg_values" if "ecg_values" in examples[0] else "ecg"
        if key not in examples[0]:
            raise KeyError(f"examples need an 'ecg_values' (or 'ecg') entry, got keys {sorted(examples[0])}")
        ecg = np.stack([np.asarray(e[key], dtype=np.float32) for e in examples])
        if self.rows is not None:
            inputs = self.feature_extractor(
                list(ecg[:, self.rows]), sampling_rate=self.sampling_rate, lead_names=self.lead_names, return_tensors="pt"
            )
            batch = {"ecg_values": inputs["ecg_values"], "lead_mask": inputs["lead_mask"]}
        else:
            batch = {"ecg_values": torch.from_numpy(ecg)}
        if "labels" in examples[0]:
            labels = np.stack([np.asarray(e["labels"]) for e in examples])
            batch["labels"] = torch.as_tensor(labels).to(self.label_dtype)
        return batch


def _metric_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name))


def make_compute_metrics(
    class_names: Sequence[str] | None = None, cinc2021: bool = False, threshold: float = 0.5
) -> Callable[[Any], dict[str, float]]:
    """A `compute_metrics` for `Trainer`: macro AUROC over classes with both labels, and per-class AUROCs.

    The logits are used as scores (AUROC is invariant to the monotone sigmoid). With ``cinc2021=True`` (the
    class names must then name CinC 2021 scored classes) it adds ``challenge_score`` and ``macro_f1`` of the
    outputs ``sigmoid(logits) >= threshold``.
    """
    def compute_metrics(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions if hasattr(eval_pred, "predictions") else eval_pred[0]
        labels = eval_pred.label_ids if hasattr(eval_pred, "label_ids") else eval_pred[1]
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = np.asarray(logits, dtype=np.float64)
        labels = np.asarray(labels)
        names = list(class_names) if class_names is not None else [str(i) for i in range(logits.shape[-1])]
        result = compute_multilabel_auroc(labels, logits, class_names=names)
        metrics = {
            "macro_auroc": float(result["macro_auroc"]),
            "num_classes_scored": float(result["num_classes_scored"]),
        }
        if not np.isfinite(metrics["macro_auroc"]):
            # left out rather than NaN: a checkpoint is never selected on NaN (Trainer stops, naming the metric)
            del metrics["macro_auroc"]
            logger.warning("macro AUROC undefined on these %d rows (no class has both a positive and a negative "
                           "label, or the scores are not finite): left out of the metrics", labels.shape[0])
        for name, value in result["per_class"].items():
            metrics[f"auroc_{_metric_name(name)}"] = float(value)
        if cinc2021:
            probabilities = 1.0 / (1.0 + np.exp(-logits))
            cinc = compute_cinc2021_metrics(labels, probabilities, classes=names, threshold=threshold)
            metrics["challenge_score"] = float(cinc["challenge_score"])
            metrics["macro_f1"] = float(cinc["macro_f1"])
        return metrics

    return compute_metrics


def check_fine_tuning_labels(
    train_labels: np.ndarray, validation_labels: np.ndarray | None, class_names: Sequence[str], task: str = ""
) -> None:
    """Refuse a fine-tuning task that cannot train or select a checkpoint, warn about classes it cannot learn.

    * No class with a positive training label (e.g. all-zero labels): an error; nothing can be learned.
    * Some classes without a positive training label: a warning naming them. They stay in the label set (the
      CinC 2021 challenge score is defined over all 26 scored classes), their heads learn "never", and their
      validation AUROC is undefined, so they are left out of the macro AUROC that selects the checkpoint.
    * A validation split on which no class has both labels: an error (the selection metric would be NaN);
      validation classes without both labels: a warning naming them.
    """
    where = f"task {task!r}: " if task else ""
    names = list(class_names)
    train = np.asarray(train_labels)
    train = train[:, None] if train.ndim == 1 else train
    no_positive = [names[i] if i < len(names) else str(i) for i in np.flatnonzero(train.sum(axis=0) <= 0)]
    if train.shape[0] == 0 or len(no_positive) == train.shape[1]:
        raise ValueError(
            f"{where}the training labels have no positive for any of the {train.shape[1]} classes "
            f"({train.shape[0]} rows): fine-tuning cannot learn anything and every AUROC is undefined. Check the "
            "label columns (class names / codes) against the data")
    if no_positive:
        logger.warning(
            "%sthe training labels have no positive for %d of %d classes (%s): their heads cannot learn them; they stay "
            "in the label set and are left out of the validation macro AUROC that selects the checkpoint. Drop them "
            "from the label set to silence this", where, len(no_positive), train.shape[1], ", ".join(no_positive))
    if validation_labels is None:
        return
    val = np.asarray(validation_labels)
    val = val[:, None] if val.ndim == 1 else val
    positives = val.sum(axis=0)
    unscorable = [names[i] if i < len(names) else str(i)
                  for i in np.flatnonzero((positives <= 0) | (positives >= val.shape[0]))]
    if len(unscorable) == val.shape[1]:
        raise ValueError(
            f"{where}no class has both a positive and a negative label in the validation split ({val.shape[0]} rows), "
            "so the validation macro AUROC that selects the checkpoint is undefined. Use a larger or stratified "
            "validation split")
    if unscorable:
        logger.warning("%sthe validation split has no positive (or no negative) for %s: left out of the validation "
                       "macro AUROC that selects the checkpoint", where, ", ".join(unscorable))


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
        model = load_classification_model(model_name_or_path, **label_kwargs)
    if freeze_encoder:
        model.freeze_ecg_encoder()
    return model


# the two messages a pretrained checkpoint loaded into DBetaForECGClassification logs about its new head:
# transformers' load report table (modeling_utils, a warning) and dbeta_hf's own line (modeling_dbeta, info)
_LOAD_MESSAGE_LOGGERS = ("transformers.modeling_utils", "dbeta_hf.modeling_dbeta")
_LOAD_MESSAGE_MARKERS = ("LOAD REPORT", "new head weights")


class _HeldLoadMessages(logging.Filter):
    """Holds back the load-report records while `from_pretrained` runs (to be dropped or passed on after)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if any(marker in record.getMessage() for marker in _LOAD_MESSAGE_MARKERS):
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def _held_load_messages() -> Iterator[_HeldLoadMessages]:
    held = _HeldLoadMessages()
    loggers = [logging.getLogger(name) for name in _LOAD_MESSAGE_LOGGERS]
    for logger_ in loggers:
        logger_.addFilter(held)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar of a few-MB encoder
    try:
        yield held
    finally:
        for logger_ in loggers:
            logger_.removeFilter(held)
        if bar:
            hf_logging.enable_progress_bar()


def load_classification_model(model_name_or_path: str, **kwargs) -> DBetaForECGClassification:
    """`DBetaForECGClassification.from_pretrained` of a D-BETA checkpoint, with one message about what loading did.

    A pretrained D-BETA has no classification head, so loading it logs transformers' LOAD REPORT table
    (``classifier.weight | MISSING``) and dbeta_hf's line about new head weights. When the only new weights are
    the head (what fine-tuning expects), both are replaced by one info line naming the head and saying it is
    trained now. Anything else the report lists (unexpected or resized weights) is passed on unchanged.
    """
    with _held_load_messages() as held:
        model, info = DBetaForECGClassification.from_pretrained(model_name_or_path, output_loading_info=True, **kwargs)
    new = sorted(set(info.get("missing_keys", ())))
    unusual = any(info.get(key) for key in ("unexpected_keys", "mismatched_keys", "error_msgs"))
    if unusual or any(not key.startswith("classifier.") for key in new):
        for record in held.records:
            logging.getLogger(record.name).handle(record)
        return model
    if new:
        logger.info(
            "%s: loaded the ECG encoder of %s; the classification head (%s, %d classes) is new and randomly "
            "initialised, as fine-tuning expects: train it on your labels (a model saved after fine-tuning loads "
            "with its head)", type(model).__name__, model_name_or_path, ", ".join(new), model.config.num_labels,
        )
    return model


# The paper's Table 1 (C-MELT, the arXiv version of D-BETA): PhysioNet 2021 diagnosis, CinC challenge score x 100.
PAPER_TABLE1_CINC: dict[int, float] = {12: 85.7, 6: 81.1, 3: 84.2, 2: 81.9, 1: 76.5}


def lead_setting_title(num_leads: int) -> str:
    """``"12-lead"`` or the paper's ``"P-6-lead"`` (missing leads zero-padded)."""
    return "12-lead" if num_leads == 12 else f"P-{num_leads}-lead"


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std of the finite values; the std is None for one value (one seed has no spread)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return float("nan"), None
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else None


def _x100(mean: float, std: float | None = None) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None and np.isfinite(std) else "")


def format_cinc2021_table(runs: dict[str, dict[int, list[dict]]], paper_row: bool = True) -> str:
    """PhysioNet 2021 results in the layout of the paper's Table 1, then one line per lead setting.

    `runs` is ``{method: {num_leads: [run, ...]}}`` where each run has ``challenge_score``, ``macro_auroc``,
    ``macro_f1`` (in [0, 1]) and ``seed``. Cells are CinC scores x 100, mean ± std over the seeds (one seed: its
    value alone, without a spread).
    """
    settings = sorted({n for per_method in runs.values() for n in per_method}, reverse=True)
    header = ["Method", "Task"] + [lead_setting_title(n) for n in settings]
    lines = [
        "**PhysioNet 2021 diagnosis (Dx.), CinC challenge score x 100 (paper's Table 1 layout; mean ± std over seeds)**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + [":---:"] * len(settings)) + "|",
    ]
    for method, per_method in runs.items():
        cells = []
        for n in settings:
            mean, std = _mean_std([r.get("challenge_score") for r in per_method.get(n, [])])
            cells.append(_x100(mean, std))
        lines.append("| " + " | ".join([method, "Dx."] + cells) + " |")
    if paper_row:
        lines.append("| " + " | ".join(["D-BETA / C-MELT (paper, Table 1)", "Dx."] + [
            f"{PAPER_TABLE1_CINC[n]:.1f}" if n in PAPER_TABLE1_CINC else "–" for n in settings]) + " |")
    lines += [
        "",
        "| Method | Lead setting | Leads | Seeds | CinC x 100 | Macro AUROC x 100 | Macro F1 x 100 | Paper CinC x 100 |",
        "|---|---|---|---|:---:|:---:|:---:|:---:|",
    ]
    for method, per_method in runs.items():
        for n in settings:
            group = per_method.get(n, [])
            if not group:
                continue
            seeds = ", ".join(str(r.get("seed")) for r in group)
            cells = [_x100(*_mean_std([r.get(k) for r in group])) for k in ("challenge_score", "macro_auroc", "macro_f1")]
            paper = f"{PAPER_TABLE1_CINC[n]:.1f}" if n in PAPER_TABLE1_CINC else "–"
            lines.append("| " + " | ".join([method, lead_setting_title(n), ", ".join(lead_subset(n)), seeds] + cells + [paper]) + " |")
    return "\n".join(lines)
