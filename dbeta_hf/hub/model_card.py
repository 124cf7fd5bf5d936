"""The model card written next to every saved or pushed D-BETA (the `README.md` of a Hub repository).

Built with huggingface_hub's `ModelCard` / `ModelCardData` from the template `MODEL_CARD.md` at the top of the
repository: the YAML metadata (library, pipeline tag, licence, base model, datasets and a `model-index` with the
results measured in the run) and the human-readable text (input contract, training settings, intended use,
citation).

    >>> card = build_model_card("ORG/dbeta-ptbxl", feature_extractor=processor.feature_extractor,
    ...                         results=[eval_result("zero-shot", "ptbxl_super", 0.762)])
    >>> card.save("my-model/README.md")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..feature_extraction_dbeta import DBetaECGFeatureExtractor

# `MODEL_CARD.md` at the top of the repository, linked into the package's resources so that wheels ship it too
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "resources" / "MODEL_CARD.md"
MODEL_CARD_NAME = "README.md"
# D-BETA maps ECGs (and texts) to embeddings; zero-shot diagnosis scores them against class descriptions. The Hub's
# text task `zero-shot-classification` would advertise a text classifier, so the card uses `feature-extraction`.
PIPELINE_TAG = "feature-extraction"
OFFICIAL_LICENSE = "cc-by-nc-4.0"
TAGS = ["ecg", "electrocardiogram", "medical", "multimodal", "dbeta", "custom_code"]

# evaluation kind -> (model-index task type, readable task name)
EVALUATION_KINDS = {
    "zero-shot": ("zero-shot-classification", "Zero-shot ECG classification"),
    "linear-probe": ("feature-extraction", "Linear probe"),
    "fine-tune": ("other", "Fine-tuned ECG classification"),
    "retrieval": ("feature-extraction", "ECG-report retrieval"),
}
_METRIC_NAMES = {"roc_auc": "macro AUROC", "recall": "Recall"}


def eval_result(kind: str, dataset: str, value: float, metric: str = "roc_auc", *, split: str = "test",
                metric_name: str | None = None, dataset_name: str | None = None) -> EvalResult:
    """One measured number for the card's `model-index`.

    Args:
        kind: ``"zero-shot"``, ``"linear-probe"``, ``"fine-tune"`` or ``"retrieval"``.
        dataset: the dataset / task key (``"ptbxl_super"``, ``"synthetic"``, ...).
        value: the measured value (AUROC as a fraction, not a percentage).
        metric: the metric type (default ``"roc_auc"``).
    """
    if kind not in EVALUATION_KINDS:
        raise ValueError(f"unknown evaluation kind {kind!r}; choose one of {sorted(EVALUATION_KINDS)}")
    task_type, task_name = EVALUATION_KINDS[kind]
    return EvalResult(
        task_type=task_type, task_name=task_name, dataset_type=dataset, dataset_name=dataset_name or dataset,
        dataset_split=split, metric_type=metric, metric_value=float(value),
        metric_name=metric_name or _METRIC_NAMES.get(metric, metric),
    )


def results_from_summary(kind: str, results: Mapping[str, Any]) -> list[EvalResult]:
    """Card entries from the results dict of the evaluation commands (`{"tasks": {task: {"macro_auroc": ...}}}`,
    as written by examples/zero_shot.py) or a plain `{task: value}` mapping."""
    tasks = results.get("tasks", results)
    out = []
    for task, value in tasks.items():
        if isinstance(value, Mapping):
            value = value.get("macro_auroc")
        if value is not None:
            out.append(eval_result(kind, task, value))
    return out


def _input_contract(feature_extractor) -> dict[str, Any]:
    if feature_extractor is None:
        feature_extractor = DBetaECGFeatureExtractor()
    rate = feature_extractor.sampling_rate
    return {
        "num_leads": len(feature_extractor.lead_names),
        "lead_order": ", ".join(feature_extractor.lead_names),
        "sampling_rate": f"{rate:g}",
        "num_samples": feature_extractor.num_samples,
        "duration": f"{feature_extractor.num_samples / rate:g}",
        "units": {"mV": "millivolts", "uV": "microvolts", "V": "volts"}.get(feature_extractor.units, feature_extractor.units),
        "crop": f"crop={feature_extractor.crop!r}",
        "lead_order_name": feature_extractor.lead_order,
        "input_normalization": feature_extractor.input_normalization,
    }


def build_model_card(
    repo_id: str,
    *,
    feature_extractor=None,
    results: Sequence[EvalResult] = (),
    training_settings: Mapping[str, Any] | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    license: str | None = None,
    converted_from_official: bool = False,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """The D-BETA model card of one saved model.

    Args:
        repo_id: the Hub id (or folder name) the card names in its title and loading example.
        feature_extractor: the checkpoint's `DBetaECGFeatureExtractor`: its leads, rate, length and units are the
            card's input contract (default: the D-BETA defaults).
        results: measured numbers (`eval_result`, `results_from_summary`); they go into `model-index`.
        training_settings: a readable table of how the model was trained.
        base_model, datasets: Hub ids for the metadata.
        license: the licence id; converted official weights are ``cc-by-nc-4.0`` whatever is given.
        converted_from_official: the weights come from the official D-BETA checkpoint.
    """
    template = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(
            f"the model card template {template} is missing (MODEL_CARD.md of the dbeta_hf repository, linked as "
            "dbeta_hf/resources/MODEL_CARD.md); reinstall dbeta_hf or pass template_path="
        )
    if converted_from_official:
        license = OFFICIAL_LICENSE
    model_name = repo_id.rstrip("/").split("/")[-1] or repo_id
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        base_model=base_model,
        datasets=[datasets] if isinstance(datasets, str) else (list(datasets) if datasets else None),
        tags=list(TAGS),
        model_name=model_name,
        eval_results=list(results) or None,
    )
    if converted_from_official:
        origin = "These are the official D-BETA weights, converted key for key to the transformers implementation."
        licence_text = ("The official D-BETA code and weights are CC BY-NC 4.0 (non-commercial); these converted "
                        "weights inherit that licence.")
    else:
        origin = "This checkpoint was trained with the `dbeta_hf` package."
        licence_text = (f"Licence: {license}." if license else "No licence was set for this checkpoint.") + (
            " Weights trained on MIMIC-IV-ECG are subject to the PhysioNet Credentialed Health Data License; "
            "the official D-BETA code and weights are CC BY-NC 4.0.")
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        origin=origin,
        licence_text=licence_text,
        training_settings=dict(training_settings or {}),
        results=list(results),
        **_input_contract(feature_extractor),
    )


def write_model_card(save_directory: str | os.PathLike, repo_id: str | None = None, **kwargs) -> Path:
    """Build the card (`build_model_card`) and save it as `save_directory/README.md`."""
    path = Path(save_directory) / MODEL_CARD_NAME
    build_model_card(repo_id or Path(save_directory).resolve().name, **kwargs).save(path)
    return path


def training_settings_from_args(args, **extra) -> dict[str, Any]:
    """The readable settings of a `TrainingArguments` run for the card."""
    world = getattr(args, "world_size", 1)
    settings = {
        "steps": args.max_steps if args.max_steps and args.max_steps > 0 else f"{args.num_train_epochs:g} epochs",
        "per-device batch": args.per_device_train_batch_size,
        "processes": world,
        "gradient accumulation": args.gradient_accumulation_steps,
        "learning rate": f"{args.learning_rate:g}",
        "schedule": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, {args.warmup_steps} warm-up steps",
        "weight decay": args.weight_decay,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        "seed": args.seed,
    }
    settings.update(extra)
    return settings


__all__ = [
    "EVALUATION_KINDS",
    "MODEL_CARD_NAME",
    "OFFICIAL_LICENSE",
    "PIPELINE_TAG",
    "build_model_card",
    "eval_result",
    "results_from_summary",
    "training_settings_from_args",
    "write_model_card",
]
