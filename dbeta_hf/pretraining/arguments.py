"""`DBetaTrainingArguments`: the `TrainingArguments` of D-BETA pretraining and the run's loss policies.

Kept apart from the Trainer (`dbeta_hf.pretraining.trainer`) so that parsing a command line needs only
`transformers.TrainingArguments`, not the Trainer and what it imports (`datasets`, ...): `examples/pretrain.py --help`
answers without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

__all__ = ["LABEL_NAMES", "TRAINING_POLICIES", "DBetaTrainingArguments", "dbeta_training_arguments", "training_policies"]

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
