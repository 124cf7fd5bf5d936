"""Pretraining with the transformers `Trainer`: all four losses, per-loss logging, evaluation on the same terms.

```python
trainer = DBetaPreTrainer(
    model=DBetaForPreTraining.from_text_pretrained("google/flan-t5-base"),
    args=dbeta_training_arguments(output_dir="dbeta-run", bf16=True, per_device_train_batch_size=128),
    train_dataset=dataset["train"], eval_dataset=dataset["validation"],
    data_collator=DBetaPreTrainingCollator.from_config(config, processor, n3s_index),
)
trainer.train()
```

The run's loss policies (`ets_unmasked_inputs`, `mlm_mem_on_matched_only`, `ets_global_batch`) are fields of
`DBetaTrainingArguments`, not of the model config: they say how a run trains, not what the model is, and
`compute_loss` passes them to `DBetaForPreTraining.forward`. Their defaults are the official behaviour.

Every logging step reports `loss` and the averages, over all the micro-batches since the previous log, of
`mlm_loss`, `mem_loss`, `etm_loss`, `ets_loss`, `mlm_accuracy` and `etm_accuracy` (never only the last
batch). Evaluation reports the same names with the `eval_` prefix. Under several processes the averages are
also averaged over processes. The running sums stay on the device, so logging costs one synchronisation per
logging step, not one per step.
"""

from __future__ import annotations

import json
import logging
import os
import re

import torch
import torch.distributed as dist
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..hub.model_card import training_settings_from_args, write_model_card
from ..utils.atomic import atomic_write_json
from .arguments import training_policies
from .collator import DBetaCollatorEpochCallback, DBetaPreTrainingCollator

logger = logging.getLogger(__name__)

LOGGED_METRICS = ("mlm_loss", "mem_loss", "etm_loss", "ets_loss", "mlm_accuracy", "etm_accuracy")
# written into every checkpoint folder after the Trainer's own save is complete (so its presence means "complete");
# it also records the run's fingerprint (data, N3S settings, model config) that a resume is compared with
CHECKPOINT_COMPLETE_FILE = "dbeta_checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class _MetricAccumulator:
    """Running sums of detached scalars, kept on the device until read."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, value: torch.Tensor | None):
        if value is None:
            return
        value = value.detach().float()
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + 1

    def pop_means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        names = sorted(self.sums)
        means = torch.stack([self.sums[n] / self.counts[n] for n in names])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(means, op=dist.ReduceOp.SUM)
            means = means / dist.get_world_size()
        values = means.tolist()
        self.sums.clear()
        self.counts.clear()
        return {n: round(v, 6) for n, v in zip(names, values)}


class DBetaPreTrainer(Trainer):
    """`Trainer` for `DBetaForPreTraining` with the four D-BETA losses logged separately.

    The MLM head only runs on the masked positions during training and evaluation (`return_mlm_logits=False`):
    the loss is the same as on the full logits, at a fraction of the cost. The loss policies of
    `DBetaTrainingArguments` go to the model's forward (plain `TrainingArguments`: the official behaviour). If the
    data collator is a `DBetaPreTrainingCollator`, its epoch is kept in sync so that every epoch draws new masks and
    negatives.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns the per-micro-batch mean; Trainer scales for accumulation

    def __init__(self, *args, model_card_kwargs: dict | None = None, run_fingerprint: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # what identifies the run (data fingerprint, N3S settings, model config): written into the completeness
        # marker of every checkpoint, and compared with by a resume (`compare_run_fingerprints`)
        self.run_fingerprint = dict(run_fingerprint or {})
        # what the model card (README.md, written with every save and push) says beyond what the Trainer knows:
        # `results` (measured `dbeta_hf.hub.model_card.eval_result`s), `base_model`, `datasets`, `license`, ...
        self.model_card_kwargs = dict(model_card_kwargs or {})
        self._train_metrics = _MetricAccumulator()
        self._eval_metrics = _MetricAccumulator()
        if isinstance(self.data_collator, DBetaPreTrainingCollator):
            self.add_callback(DBetaCollatorEpochCallback(self.data_collator))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k != "return_loss"}
        outputs = model(**inputs, return_mlm_logits=False, return_loss=True, **training_policies(self.args))
        if outputs.loss is None:
            raise ValueError("DBetaForPreTraining returned no loss: the batch must hold ecg_values and input_ids")
        metrics = self._train_metrics if model.training else self._eval_metrics
        for name in LOGGED_METRICS:
            metrics.add(name, getattr(outputs, name))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(k.startswith("eval_") for k in logs):
            logs = {**logs, **self._train_metrics.pop_means()}
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"):
        self._eval_metrics = _MetricAccumulator()
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        for name, value in self._eval_metrics.pop_means().items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        return output

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's checkpoint, then `CHECKPOINT_COMPLETE_FILE` written last (atomically): a checkpoint
        without it was cut short (killed during the save, disk full) and is never resumed from."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            if os.path.isdir(folder):
                atomic_write_json(os.path.join(folder, CHECKPOINT_COMPLETE_FILE),
                                  {"global_step": self.state.global_step, "fingerprint": self.run_fingerprint},
                                  default=str)

    # ------------------------------------------------------------------ model card
    def write_model_card(self, output_dir: str | None = None) -> None:
        """Write the D-BETA model card (`dbeta_hf.hub.model_card`) as `output_dir/README.md`."""
        output_dir = output_dir or self.args.output_dir
        kwargs = dict(self.model_card_kwargs)
        # the loss policies are run settings (not in config.json): the card records them
        settings = training_settings_from_args(self.args, **{"steps run": self.state.global_step},
                                               **training_policies(self.args))
        settings.update(kwargs.pop("training_settings", {}))
        repo_id = kwargs.pop("repo_id", None) or (self.args.hub_model_id if self.args.push_to_hub else None)
        write_model_card(output_dir, repo_id, training_settings=settings,
                         feature_extractor=getattr(self.processing_class, "feature_extractor", None), **kwargs)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            self.write_model_card(output_dir)

    def create_model_card(self, *args, **kwargs) -> None:
        """`push_to_hub` calls this: the D-BETA card (input contract, measured results) replaces the generic one."""
        if self.is_world_process_zero():
            self.write_model_card(self.args.output_dir)


# ---------------------------------------------------------------------------------------------- resuming
def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """True when `folder` holds the completeness marker that `DBetaPreTrainer` writes after a finished save."""
    return os.path.isfile(os.path.join(folder, CHECKPOINT_COMPLETE_FILE))


def read_checkpoint_fingerprint(folder: str | os.PathLike) -> dict | None:
    """The run fingerprint recorded in a checkpoint's completeness marker (None: no or unreadable marker)."""
    try:
        with open(os.path.join(folder, CHECKPOINT_COMPLETE_FILE), encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker.get("fingerprint") if isinstance(marker, dict) else None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest ``checkpoint-<step>`` of `output_dir` that is complete (`is_complete_checkpoint`), or None.

    Higher checkpoints without the marker (a save cut short by a kill or a full disk) are skipped with a warning
    naming them. In a folder where no checkpoint has a marker (written by an older version), the highest one with a
    readable ``trainer_state.json`` (the Trainer's last file) is taken, with a warning.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps.append((int(match.group(1)), os.path.join(output_dir, name)))
    steps = sorted(steps, reverse=True)
    if steps and not any(is_complete_checkpoint(path) for _, path in steps):
        # written by a version without markers: the Trainer writes trainer_state.json last, so a readable one is
        # the best evidence of a finished save there is
        for _, path in steps:
            if _readable_json(os.path.join(path, "trainer_state.json")):
                logger.warning("%s has no completeness marker (%s; written by an older version?): resuming from it "
                               "since its trainer_state.json is complete", path, CHECKPOINT_COMPLETE_FILE)
                return path
    skipped = []
    for _, path in steps:
        if is_complete_checkpoint(path):
            if skipped:
                logger.warning("skipping incomplete checkpoint(s) %s (no %s: the save was cut short); resuming from "
                               "%s", ", ".join(skipped), CHECKPOINT_COMPLETE_FILE, path)
            return path
        skipped.append(path)
    if skipped:
        logger.warning("no complete checkpoint in %s: %s lack %s or a readable trainer_state.json (a save cut short); "
                       "not resuming from them", output_dir, ", ".join(skipped), CHECKPOINT_COMPLETE_FILE)
    return None


def _readable_json(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError):
        return False
    return True


def compare_run_fingerprints(stored: dict | None, current: dict) -> list[str]:
    """The differences between a checkpoint's run fingerprint and this run's, one line each (``data.path:
    '/a' (checkpoint) != '/b' (this run)``); nested dicts are compared key by key. [] when they agree or when
    the checkpoint records none."""
    if not stored:
        return []
    differences = []

    def walk(a, b, prefix):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            differences.append(f"{prefix}: {a!r} (checkpoint) != {b!r} (this run)")

    walk(stored, json.loads(json.dumps(current, default=str)), "")
    return differences
