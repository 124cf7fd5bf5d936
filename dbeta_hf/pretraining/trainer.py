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

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from transformers import Trainer, TrainingArguments

from ..hub.model_card import training_settings_from_args, write_model_card
from .collator import DBetaCollatorEpochCallback, DBetaPreTrainingCollator

LOGGED_METRICS = ("mlm_loss", "mem_loss", "etm_loss", "ets_loss", "mlm_accuracy", "etm_accuracy")
LABEL_NAMES = ("mlm_labels", "match_labels")
TRAINING_POLICIES = ("ets_unmasked_inputs", "mlm_mem_on_matched_only", "ets_global_batch")


@dataclass
class DBetaTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the settings D-BETA pretraining needs and the run's loss policies.

    Defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the collator reads `ecg` and
    `report`) and `label_names` set to the pretraining labels (so evaluation computes the loss); `report_to` stays
    `"none"`. The three policies are passed by `DBetaPreTrainer` to `DBetaForPreTraining.forward`; each defaults to
    the official behaviour. Every field is a flag of `HfArgumentParser` (`examples/pretrain.py`).
    """

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the dataset columns: the D-BETA collator reads `ecg` and `report`."}
    )
    label_names: list[str] | None = field(
        default_factory=lambda: list(LABEL_NAMES),
        metadata={"help": "The pretraining labels, so that evaluation computes the loss."},
    )
    ets_unmasked_inputs: bool = field(default=False, metadata={
        "help": "ETS on an unmasked ECG pass and the report with its MLM tokens restored, as ALBEF/BLIP (one more "
                "ECG-transformer and text pass per step); default: the masked passes the other losses use (official)."})
    mlm_mem_on_matched_only: bool = field(default=False, metadata={
        "help": "MLM and MEM only on the rows whose report belongs to the ECG (ALBEF/BLIP); default: every row "
                "(official)."})
    ets_global_batch: bool = field(default=False, metadata={
        "help": "Under several processes, score every ECG against the texts of the global batch (other processes' "
                "texts as negatives); default: per process (official, the released loss is built with world size 1)."})


def dbeta_training_arguments(**kwargs) -> DBetaTrainingArguments:
    """`DBetaTrainingArguments(**kwargs)`: the D-BETA defaults, every one of which `kwargs` can override."""
    return DBetaTrainingArguments(**kwargs)


def training_policies(args) -> dict[str, bool]:
    """The loss policies of a run, as `DBetaForPreTraining.forward` keyword arguments (official defaults for plain
    `TrainingArguments`)."""
    return {name: bool(getattr(args, name, False)) for name in TRAINING_POLICIES}


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

    def __init__(self, *args, model_card_kwargs: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
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
