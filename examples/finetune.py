#!/usr/bin/env python
"""Fine-tune D-BETA's ECG encoder with a classification head (`DBetaForECGClassification`) using `Trainer`.

The ECG tower of a D-BETA checkpoint gets a new linear head over its pooled embedding; the whole encoder is
trained (or only the head, `--freeze_encoder`) with the multi-label BCE loss. The checkpoint with the best
validation macro AUROC is kept (`load_best_model_at_end`) and scored once on the test split: macro AUROC,
per-class AUROC and a bootstrap 95 % CI. `--fractions 0.01 0.1 1.0` fine-tunes on label fractions of the
training split (the data module's `label_fraction`), `--random-init` trains the same architecture from
scratch as a baseline.

Offline out of the box (after `python examples/pretrain.py`)::

    python examples/finetune.py

With no task given, the synthetic demo task gets its own training settings (`SYNTHETIC_DEMO_SETTINGS`: lr 2e-3,
cosine schedule with 10 % warm-up, 600 steps), which any option given on the command line overrides; the real
datasets keep the general defaults (`GENERAL_SETTINGS`: lr 5e-5, linear schedule, 3 epochs). `--help` shows both. The best checkpoint of the first seed (largest label fraction) is saved
with the checkpoint's processor to ``<output_dir>/model_<task>`` and loads with
``AutoModelForSequenceClassification.from_pretrained``.

PTB-XL super-classes with the fairseq-signals settings (Adam, lr 5e-5)::

    python examples/finetune.py --model_name_or_path path/to/dbeta --tasks ptbxl_super \\
        --ptbxl_root data/ptb-xl --num_train_epochs 100 --learning_rate 5e-5 --per_device_train_batch_size 128

PhysioNet/CinC 2021 with the challenge score, in the paper's Table 1 settings (12 leads, and 6 / 3 / 2 / 1 leads
with the others zero-filled through the feature extractor, for training and test alike)::

    python -m dbeta_hf.data build physionet2021 /data/challenge-2021/1.0.3 --output /data/hf/physionet2021
    python examples/finetune.py --model_name_or_path path/to/dbeta --task physionet2021 \\
        --physionet2021_root /data/challenge-2021/1.0.3 --leads 12 6 3 2 1 --seeds 0 1 2 \\
        --num_train_epochs 100 --learning_rate 5e-5 --per_device_train_batch_size 128

The checkpoint is selected on the validation challenge score; the test split reports the CinC score, macro
AUROC and macro F1 (outputs: sigmoid >= `--threshold`), and ``physionet2021_table.md`` lays them out like the
paper's Table 1 with the published numbers as a reference. ``--segment_seconds 5`` cuts the records into 5 s
segments as fairseq-signals does for Table 1's baselines (docs/DIFFERENCES.md section 12): the feature extractor
takes the segment length, the validation challenge score over segments selects the checkpoint, and each run reports
the test scores over segments (``challenge_score``) and per record (``record_challenge_score``, ...).

Every kept ``model_<task>`` folder gets a model card (README.md) carrying that run's test numbers, its training
settings and a loading example for the folder. `--push_to_hub --hub_model_id ORG/NAME` (one task) names the Hub
repository in the card and uploads the folder (no optimizer state) to it.

Writes ``finetune_results.json``, ``finetune_results.md`` (tasks as columns, fractions as sub-columns) and
``roc_<task>.png`` into `--output_dir`; Trainer checkpoints go to ``<output_dir>/checkpoints``.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dbeta_hf.evaluation.cli_arguments import add_common_arguments, add_segment_argument, run_command

logger = logging.getLogger("finetune")

PRETRAINED_METHOD = "D-BETA (fine-tuned)"
RANDOM_METHOD = "Random init (trained from scratch)"
# Settings that depend on the task: the synthetic demo (the only task, the default) gets its own, the real datasets
# the general ones. An option given on the command line wins; `--help` shows both values.
SYNTHETIC_DEMO_SETTINGS = {
    "learning_rate": 2e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,
    "weight_decay": 0.01,
    "max_steps": 600,
}
GENERAL_SETTINGS = {
    "learning_rate": 5e-5,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0.0,
    "weight_decay": 0.0,
    "max_steps": -1,
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` except for the task-dependent settings, whose help names both values."""

    def _get_help_string(self, action):
        if action.dest in SYNTHETIC_DEMO_SETTINGS:
            return action.help
        return super()._get_help_string(action)


def _task_dependent(dest: str, what: str) -> str:
    return (f"{what} (default: {SYNTHETIC_DEMO_SETTINGS[dest]!s} for the synthetic demo, i.e. with no --tasks or "
            f"--tasks synthetic; {GENERAL_SETTINGS[dest]!s} for the other tasks)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fine-tune DBetaForECGClassification with transformers.Trainer (macro AUROC model selection).",
        formatter_class=_HelpFormatter,
    )
    add_common_arguments(parser, default_output_dir="outputs/finetune")
    add_segment_argument(parser)
    parser.add_argument("--fractions", nargs="+", type=float, default=[1.0], help="label fractions of the training split")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (and label-subset draws)")
    parser.add_argument(
        "--random-init", "--random_init", dest="random_init", action="store_true",
        help="also train a randomly initialised encoder of the same architecture (baseline row)",
    )
    parser.add_argument("--freeze_encoder", action="store_true", help="train the classification head only")
    parser.add_argument("--num_train_epochs", type=float, default=3.0, help="training epochs")
    parser.add_argument("--max_steps", type=int, default=None,
                        help=_task_dependent("max_steps", "stop after this many steps (overrides epochs when > 0)"))
    parser.add_argument("--learning_rate", type=float, default=None, help=_task_dependent("learning_rate", "AdamW learning rate"))
    parser.add_argument(
        "--lr_scheduler_type", default=None,
        help=_task_dependent("lr_scheduler_type", "transformers learning-rate schedule (linear, cosine, constant, ...)"),
    )
    parser.add_argument(
        "--eval_steps", type=int, default=None,
        help="with --max_steps: evaluate / save every N steps (default: a quarter of --max_steps)",
    )
    parser.add_argument("--no_save_model", action="store_true", help="do not save the fine-tuned model(s)")
    parser.add_argument(
        "--push_to_hub", "--push-to-hub", action="store_true",
        help="save the fine-tuned model (first seed, largest fraction) with its processor and model card to "
        "<output_dir>/model_<task> and push it to --hub_model_id (one task only)",
    )
    parser.add_argument("--hub_model_id", "--hub-model-id", default=None, help="Hub repository of --push_to_hub (ORG/NAME)")
    parser.add_argument("--weight_decay", type=float, default=None, help=_task_dependent("weight_decay", "AdamW weight decay"))
    parser.add_argument(
        "--warmup_steps", type=float, default=None,
        help=_task_dependent("warmup_steps", "linear warm-up: a number of steps, or a fraction of the training steps when < 1"),
    )
    parser.add_argument("--per_device_train_batch_size", type=int, default=16, help="training batch size")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="gradient accumulation")
    parser.add_argument("--logging_steps", type=int, default=10, help="log every N steps")
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="data loader workers")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep the Trainer checkpoints (deleted by default)")
    parser.add_argument(
        "--leads", nargs="+", type=int, choices=[12, 6, 3, 2, 1], default=None,
        help="lead settings (the PhysioNet 2021 / Table 1 'P-N-lead' sets: 6 = I, II, III, aVR, aVL, aVF; 3 = I, II, V2; "
        "2 = I, II; 1 = I); the other leads are zero-filled by the feature extractor for training and test. Default: "
        "12 for physionet2021, the stored ECGs unchanged for the other tasks",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5,
        help="physionet2021: a class is output when its sigmoid probability is >= this (challenge score, macro F1)",
    )
    args = parser.parse_args(argv)
    defaults = SYNTHETIC_DEMO_SETTINGS if args.tasks == ["synthetic"] else GENERAL_SETTINGS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.push_to_hub and (len(args.tasks) != 1 or not args.hub_model_id):
        parser.error("--push_to_hub publishes one model: give exactly one --tasks and --hub_model_id ORG/NAME")
    for fraction in args.fractions:
        if not 0.0 < fraction <= 1.0:
            parser.error(f"--fractions must be in (0, 1], got {fraction}")
    return args


if __name__ == "__main__":
    parse_args()  # flags checked and --help answered here, before the run's imports below load the model code

# the run's imports: after the argument parsing above, so that `--help` and flag errors answer without loading them
import numpy as np  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from dbeta_hf import DBetaECGFeatureExtractor, DBetaProcessor  # noqa: E402
from dbeta_hf.data.features import check_num_samples, dataset_metadata, dataset_num_samples  # noqa: E402
from dbeta_hf.evaluation.cli import (  # noqa: E402
    TASK_TITLES,
    load_feature_extractor,
    load_task_splits_from_args,
    resolve_device,
    resolve_model_dir,
    write_results,
)
from dbeta_hf.evaluation.embeddings import labels_array  # noqa: E402
from dbeta_hf.evaluation.finetune import (  # noqa: E402
    ECGClassificationCollator,
    build_classification_model,
    check_fine_tuning_labels,
    format_cinc2021_table,
    lead_setting_title,
    lead_subset,
    make_compute_metrics,
    prepare_classification_dataset,
)
from dbeta_hf.evaluation.linear_probe import format_linear_probe_table, seed_auroc_record, subset_indices  # noqa: E402
from dbeta_hf.evaluation.metric_modules import compute_cinc2021_metrics, compute_multilabel_auroc  # noqa: E402
from dbeta_hf.evaluation.metrics import bootstrap_auroc_ci, fraction_label  # noqa: E402
from dbeta_hf.evaluation.plotting import plot_roc_curves  # noqa: E402
from dbeta_hf.evaluation.segments import aggregate_segment_scores  # noqa: E402
from dbeta_hf.hub.model_card import results_from_finetune, write_model_card  # noqa: E402
from dbeta_hf.hub.push import push_model_folder  # noqa: E402
from dbeta_hf.utils.output_ownership import OutputLock, OwnedOutput  # noqa: E402


def save_fine_tuned(trainer, model_dir: str, output_dir: str, task: str, record: dict, args,
                    repo_id: str | None = None):
    """Save the trainer's (best) model with the checkpoint's processor (or, for a checkpoint saved without its
    tokenizer, its feature extractor) and a model card to ``<output_dir>/model_<task>``; returns its path.

    The card (`dbeta_hf.hub.model_card.write_model_card`) carries the run's test numbers (`record`), its training
    settings and, for a Hub checkpoint, the checkpoint as `base_model`; it names the folder by its path, or by
    `repo_id` when the folder is pushed there."""
    path = os.path.join(output_dir, f"model_{task}")
    trainer.save_model(path)
    try:
        DBetaProcessor.from_pretrained(model_dir).save_pretrained(path)
    except (OSError, ValueError):  # a checkpoint saved without its tokenizer: the feature extractor alone
        feature_extractor = load_feature_extractor(model_dir)
        if feature_extractor is not None:
            feature_extractor.save_pretrained(path)
    write_model_card(
        path, repo_id, replace=True, base_model=None if os.path.isdir(model_dir) else model_dir,
        results=results_from_finetune(record, task),
        training_settings={
            "fine-tuned from": model_dir, "task": task, **{key.replace("_", " "): getattr(args, key) for key in (
                "max_steps", "num_train_epochs", "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay",
                "per_device_train_batch_size", "freeze_encoder")},
            "training records": record.get("num_train"), "seed": record.get("seed"),
            "checkpoint selection": "best validation " + ("challenge score" if "challenge_score" in record
                                                          else "macro AUROC"),
        },
    )
    logger.info("saved the fine-tuned model and its model card to %s (AutoModelForSequenceClassification."
                "from_pretrained)", path)
    return path


def publish_fine_tuned(trainer, model_dir: str, output_dir: str, task: str, record: dict, args) -> str:
    """`save_fine_tuned` with the card naming ``--hub_model_id``, then push that folder to it."""
    path = save_fine_tuned(trainer, model_dir, output_dir, task, record, args, repo_id=args.hub_model_id)
    push_model_folder(path, args.hub_model_id, commit_message=f"Upload D-BETA fine-tuned on {task}")
    logger.info("pushed %s to https://huggingface.co/%s", path, args.hub_model_id)
    return path


@dataclass
class FineTuneTask:
    """One task's splits, prepared for `Trainer`, and its metrics."""

    name: str
    splits: Any
    class_names: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray
    val_ds: Any
    test_ds: Any
    is_cinc: bool
    compute_metrics: Callable[[Any], dict[str, float]]
    num_samples: int | None = None  # samples per lead of the stored ECGs (2500 for 5 s segments)
    segment_seconds: float | None = None  # set for a PhysioNet 2021 segment build


@dataclass
class LeadSetting:
    """The leads a run sees (None: the stored ECGs unchanged), the result key and the batch collator."""

    num_leads: int | None
    task_key: str
    collator: ECGClassificationCollator


@dataclass
class FineTuneContext:
    """What every run of the command shares."""

    args: argparse.Namespace
    model_dir: str
    checkpoint_root: str
    use_cuda: bool
    _feature_extractor: Any = None
    # the run folders this command writes under `checkpoint_root` (claimed before writing; only they are deleted)
    checkpoints: OwnedOutput | None = None

    def feature_extractor(self, num_samples: int | None = None):
        """The checkpoint's feature extractor (zero-fills the leads a lead setting drops), loaded once; with
        `num_samples` (the length of the stored ECGs) one of that length, so that e.g. 5 s segments are not
        zero-padded to the checkpoint's 10 s (the classification model takes any length)."""
        if self._feature_extractor is None:
            self._feature_extractor = load_feature_extractor(self.model_dir)
        extractor = self._feature_extractor
        if num_samples is None or (extractor is not None and extractor.num_samples == num_samples):
            return extractor
        if extractor is None:
            return DBetaECGFeatureExtractor(num_samples=num_samples)
        logger.info("the dataset stores %d-sample ECGs: the feature extractor of %s (num_samples=%d) is used with "
                    "num_samples=%d", num_samples, self.model_dir, extractor.num_samples, num_samples)
        return DBetaECGFeatureExtractor.from_dict({**extractor.to_dict(), "num_samples": num_samples})


def load_task(args: argparse.Namespace, name: str) -> FineTuneTask:
    splits, class_names = load_task_splits_from_args(args, name)
    missing = [s for s in ("train", "validation", "test") if s not in splits]
    if missing:
        raise KeyError(f"task {name!r} has no {missing} split(s) (splits: {list(splits)}); fine-tuning needs all three")
    is_cinc = name == "physionet2021"
    check_fine_tuning_labels(labels_array(splits["train"]), labels_array(splits["validation"]), class_names, task=name)
    try:
        num_samples = dataset_num_samples(splits)
    except ValueError:  # no fixed-shape ECG column: the stored ECGs are fed as they are
        num_samples = None
    try:
        segment_seconds = dataset_metadata(splits).get("segment_seconds")
    except ValueError:  # not built by dbeta_hf.data
        segment_seconds = None
    return FineTuneTask(
        name=name, splits=splits, class_names=list(class_names), train_labels=labels_array(splits["train"]),
        test_labels=labels_array(splits["test"]), val_ds=prepare_classification_dataset(splits["validation"]),
        test_ds=prepare_classification_dataset(splits["test"]), is_cinc=is_cinc,
        compute_metrics=make_compute_metrics(class_names, cinc2021=is_cinc, threshold=args.threshold),
        num_samples=num_samples, segment_seconds=segment_seconds,
    )


def lead_settings(ctx: FineTuneContext, task: FineTuneTask) -> list[LeadSetting]:
    """``--leads`` (default: 12 leads for PhysioNet 2021, the stored ECGs for the other tasks)."""
    numbers = ctx.args.leads or ([12] if task.is_cinc else [None])
    settings = []
    for num_leads in numbers:
        if num_leads is None:
            settings.append(LeadSetting(None, task.name, ECGClassificationCollator()))
            continue
        key = task.name if num_leads == 12 and len(numbers) == 1 else f"{task.name}_{num_leads}lead"
        TASK_TITLES.setdefault(key, f"{TASK_TITLES.get(task.name, task.name)} ({lead_setting_title(num_leads)})")
        feature_extractor = ctx.feature_extractor(task.num_samples)
        if task.num_samples is not None:  # never pad or crop the stored ECGs silently
            check_num_samples(task.splits, feature_extractor.num_samples, "the fine-tuning feature extractor")
        collator = ECGClassificationCollator(lead_names=lead_subset(num_leads), feature_extractor=feature_extractor)
        settings.append(LeadSetting(num_leads, key, collator))
    return settings


def training_arguments(args: argparse.Namespace, run_dir: str, seed: int, is_cinc: bool, use_cuda: bool):
    """Evaluate and save every epoch (or every ``--eval_steps`` with ``--max_steps``); keep the best checkpoint by
    validation macro AUROC (challenge score for PhysioNet 2021)."""
    by_steps = args.max_steps > 0
    every = (args.eval_steps or max(1, args.max_steps // 4)) if by_steps else None
    return TrainingArguments(
        output_dir=run_dir,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=int(args.warmup_steps) if args.warmup_steps >= 1 else args.warmup_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_strategy="steps" if by_steps else "epoch",
        save_strategy="steps" if by_steps else "epoch",
        eval_steps=every,
        save_steps=every,
        lr_scheduler_type=args.lr_scheduler_type,
        load_best_model_at_end=True,
        metric_for_best_model="challenge_score" if is_cinc else "macro_auroc",
        greater_is_better=True,
        save_total_limit=1,
        logging_steps=args.logging_steps,
        report_to="none",
        seed=seed,
        bf16=use_cuda,
        use_cpu=not use_cuda,
        dataloader_num_workers=args.dataloader_num_workers,
        disable_tqdm=args.no_progress,
    )


def cinc_test_scores(task: FineTuneTask, logits: np.ndarray, val_metrics: dict, threshold: float) -> dict[str, float]:
    """PhysioNet 2021: the test challenge score and macro F1 of ``sigmoid(logits) >= threshold``, and the validation
    challenge score of the selected checkpoint."""
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    cinc = compute_cinc2021_metrics(task.test_labels, probabilities, classes=task.class_names, threshold=threshold)
    return {
        "challenge_score": float(cinc["challenge_score"]), "macro_f1": float(cinc["macro_f1"]),
        "val_challenge_score": float(val_metrics.get("eval_challenge_score", float("nan"))),
    }


def record_level_scores(task: FineTuneTask, logits: np.ndarray, threshold: float) -> dict[str, float]:
    """PhysioNet 2021 segment build: the test scores per record, as the challenge defines them. The segment
    probabilities of each record are averaged (`aggregate_segment_scores`), then scored like `cinc_test_scores`.
    The segment-level numbers beside them (every segment counted as a record) are fairseq-signals' protocol, the
    one of the paper's Table 1, and the validation challenge score over segments selects the checkpoint."""
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    records = aggregate_segment_scores(task.splits["test"]["record_id"], probabilities, labels=task.test_labels)
    cinc = compute_cinc2021_metrics(records.labels, records.scores, classes=task.class_names, threshold=threshold)
    auroc = compute_multilabel_auroc(records.labels, records.scores, class_names=task.class_names)
    return {
        "record_challenge_score": float(cinc["challenge_score"]), "record_macro_f1": float(cinc["macro_f1"]),
        "record_macro_auroc": float(auroc["macro_auroc"]), "num_test_records": len(records),
        "num_test_segments": int(len(logits)), "segment_seconds": float(task.segment_seconds),
        "checkpoint_selection": "validation challenge score over segments (fairseq-signals / Table 1 protocol)",
    }


def run_dir_name(ctx: FineTuneContext, setting: LeadSetting, random_init: bool, key: str, seed: int) -> str:
    init = "random" if random_init else "pretrained"
    return os.path.join(ctx.checkpoint_root, f"{setting.task_key}-{init}-{key.rstrip('%')}pct-seed{seed}")


def train_and_test(ctx, task, setting, random_init: bool, fraction: float, seed: int):
    """Fine-tune on the `fraction` subset of seed `seed` and score the test split with the selected checkpoint.
    Returns ``(run record, trainer, test logits, test AUROC metrics)``."""
    args = ctx.args
    idx = subset_indices(task.train_labels, fraction, seed)
    model = build_classification_model(
        ctx.model_dir, task.class_names, random_init=random_init, freeze_encoder=args.freeze_encoder, seed=seed,
    )
    run_dir = run_dir_name(ctx, setting, random_init, fraction_label(fraction), seed)
    if ctx.checkpoints is not None:
        ctx.checkpoints.claim(os.path.basename(run_dir))  # before the Trainer writes it: a killed run's stays owned
    trainer = Trainer(
        model=model, args=training_arguments(args, run_dir, seed, task.is_cinc, ctx.use_cuda),
        train_dataset=prepare_classification_dataset(task.splits["train"].select(idx)), eval_dataset=task.val_ds,
        data_collator=setting.collator, compute_metrics=task.compute_metrics,
    )
    train_output = trainer.train()
    val_metrics = trainer.evaluate()
    prediction = trainer.predict(task.test_ds)
    logits = np.asarray(prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions)
    metrics = compute_multilabel_auroc(task.test_labels, logits, class_names=task.class_names)
    low, high = bootstrap_auroc_ci(task.test_labels, logits, num_bootstrap=args.num_bootstrap, seed=seed)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    cinc = cinc_test_scores(task, logits, val_metrics, args.threshold) if task.is_cinc else {}
    if task.is_cinc and task.segment_seconds:
        cinc.update(record_level_scores(task, logits, args.threshold))
    record = {
        **cinc,
        **seed_auroc_record(seed, len(idx), metrics, low, high),
        "val_macro_auroc": float(val_metrics.get("eval_macro_auroc", float("nan"))),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_loss": float(train_output.training_loss),
        "logged_losses": [float(v) for v in losses],
        "global_steps": int(trainer.state.global_step),
    }
    return record, trainer, logits, metrics


def roc_title(task: FineTuneTask, setting: LeadSetting, fraction_key: str, seed: int) -> str:
    """The ROC plot's title: the task, the lead set (when the run chose one), the labels used and the seed."""
    if setting.num_leads is None:
        leads = ""  # the stored ECGs, unchanged
    elif setting.num_leads == 12:
        leads = ", 12-lead"
    else:
        leads = f", {lead_setting_title(setting.num_leads)} ({', '.join(lead_subset(setting.num_leads))})"
    return f"Fine-tuned, {TASK_TITLES.get(task.name, task.name)}{leads}, {fraction_key} labels, seed {seed}"


def keep_model(ctx, task, setting, trainer, logits, record, key: str, seed: int, task_result: dict) -> None:
    """The run shown and kept for a task: its ROC curves, and its model saved with a model card (and pushed with
    --push_to_hub)."""
    args = ctx.args
    png = os.path.join(args.output_dir, f"roc_{setting.task_key}.png")
    plot_roc_curves(task.test_labels, logits, task.class_names, png, title=roc_title(task, setting, key, seed))
    task_result["roc_png"] = png
    if args.push_to_hub:
        task_result["pushed_model"] = publish_fine_tuned(
            trainer, ctx.model_dir, args.output_dir, setting.task_key, record, args)
        task_result["saved_model"] = task_result["pushed_model"]
    elif not args.no_save_model:
        task_result["saved_model"] = save_fine_tuned(trainer, ctx.model_dir, args.output_dir, setting.task_key,
                                                     record, args)


def run_method(ctx: FineTuneContext, task: FineTuneTask, setting: LeadSetting, method: str, random_init: bool) -> dict:
    """Every (fraction, seed) run of one method on one task and lead setting, with mean and std per fraction."""
    args = ctx.args
    task_result = {"class_names": list(task.class_names), "fractions": {},
                   "leads": None if setting.num_leads is None else list(lead_subset(setting.num_leads))}
    for fraction in args.fractions:
        key = fraction_label(fraction)
        runs = []
        for seed in args.seeds:
            record, trainer, logits, metrics = train_and_test(ctx, task, setting, random_init, fraction, seed)
            runs.append(record)
            if method == PRETRAINED_METHOD and fraction == max(args.fractions) and seed == args.seeds[0]:
                keep_model(ctx, task, setting, trainer, logits, record, key, seed, task_result)
            logger.info("%s / %s / %s / seed %d: test macro AUROC %.4f%s%s", method, setting.task_key, key, seed,
                        metrics["macro_auroc"], f", CinC score {record['challenge_score']:.4f}" if task.is_cinc else "",
                        f" per segment, {record['record_challenge_score']:.4f} per record (mean of "
                        f"{record['num_test_segments']} segments over {record['num_test_records']} records)"
                        if "record_challenge_score" in record else "")
            del trainer
            if not args.keep_checkpoints and ctx.checkpoints is not None:
                ctx.checkpoints.remove(os.path.basename(run_dir_name(ctx, setting, random_init, key, seed)))
        macro = np.array([r["macro_auroc"] for r in runs], dtype=np.float64)
        task_result["fractions"][key] = {
            "fraction": float(fraction),
            "macro_auroc_mean": float(np.nanmean(macro)),
            # a spread needs two seeds: one seed has none (null), not a spread of 0
            "macro_auroc_std": float(np.nanstd(macro, ddof=1)) if np.isfinite(macro).sum() > 1 else None,
            "runs": runs,
        }
    return task_result


def results_markdown(results: dict, cinc_runs: dict, args: argparse.Namespace) -> str:
    """The fine-tuning table, and for PhysioNet 2021 the Table 1 layout (also written to physionet2021_table.md)."""
    markdown = format_linear_probe_table(
        results["methods"], TASK_TITLES, title="Fine-tuning (AUC in %)",
        fractions=[fraction_label(f) for f in sorted(args.fractions)], paper_row=False,
        selection="checkpoint selected on the validation split",
    )
    if cinc_runs:
        cinc_table = format_cinc2021_table(cinc_runs)
        results["physionet2021_table"] = cinc_table
        with open(os.path.join(args.output_dir, "physionet2021_table.md"), "w") as handle:
            handle.write(cinc_table + "\n")
        markdown += "\n\n" + cinc_table
    return markdown


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_dir = resolve_model_dir(args.model_name_or_path)
    methods = {PRETRAINED_METHOD: False}
    if args.random_init:
        methods[RANDOM_METHOD] = True
    os.makedirs(args.output_dir, exist_ok=True)
    # one run per --output_dir (a second is refused naming the first; a killed run's lock is taken over)
    with OutputLock(args.output_dir, purpose="examples/finetune.py"):
        return run_locked(args, model_dir, methods)


def remove_written_checkpoints(checkpoints: OwnedOutput) -> None:
    """Delete the run folders this command wrote under ``<output_dir>/checkpoints`` (never a file it did not
    write), then the folder itself if this command created it and nothing else is left in it."""
    checkpoints.remove_owned()
    marker = checkpoints.read_marker() or {}
    left = [p.name for p in checkpoints.folder.iterdir() if p.name != checkpoints.marker_path.name]
    if marker.get("created_folder") and not left:
        checkpoints.marker_path.unlink(missing_ok=True)
        checkpoints.folder.rmdir()
    elif left:
        logger.info("kept %s in %s: not written by this command", ", ".join(sorted(left)), checkpoints.folder)


def run_locked(args: argparse.Namespace, model_dir: str, methods: dict) -> dict[str, Any]:
    """Every task, lead setting and method, while `--output_dir` is locked."""
    checkpoints = OwnedOutput(os.path.join(args.output_dir, "checkpoints"), tool="dbeta_hf finetune")
    checkpoints.create()
    ctx = FineTuneContext(args, model_dir, os.fspath(checkpoints.folder),
                          use_cuda=resolve_device(args.device).type == "cuda", checkpoints=checkpoints)
    results: dict[str, Any] = {
        "model_name_or_path": model_dir,
        "fractions": [float(f) for f in args.fractions],
        "seeds": list(args.seeds),
        "training": {k: getattr(args, k) for k in (
            "num_train_epochs", "max_steps", "learning_rate", "lr_scheduler_type", "weight_decay", "warmup_steps",
            "per_device_train_batch_size", "gradient_accumulation_steps", "freeze_encoder")},
        "methods": {m: {} for m in methods},
    }
    cinc_runs: dict[str, dict[int, list]] = {}
    for name in args.tasks:
        task = load_task(args, name)
        for setting in lead_settings(ctx, task):
            for method, random_init in methods.items():
                task_result = run_method(ctx, task, setting, method, random_init)
                results["methods"][method][setting.task_key] = task_result
                if task.is_cinc:
                    best = task_result["fractions"][fraction_label(max(args.fractions))]["runs"]
                    cinc_runs.setdefault(method, {})[setting.num_leads] = best
    if not args.keep_checkpoints:
        remove_written_checkpoints(checkpoints)
    markdown = results_markdown(results, cinc_runs, args)
    json_path, md_path = write_results(results, markdown, args.output_dir, "finetune_results")
    logger.info("wrote %s, %s and the ROC curves to %s", json_path, md_path, args.output_dir)
    return results


if __name__ == "__main__":
    run_command(main)
