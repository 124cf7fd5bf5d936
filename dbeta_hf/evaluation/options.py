"""The choices of the evaluation commands, as plain constants (no imports): the downstream tasks, their display
names and data-root flags, the cross-dataset tasks, the feature precisions and the default model and corpus seed.

Kept apart so that parsing a command line (`dbeta_hf.evaluation.cli_arguments`) loads no model, metric or data code.
"""

from __future__ import annotations

__all__ = [
    "TASKS",
    "TASK_DISPLAY_NAMES",
    "TASK_ROOT_OPTION",
    "CROSS_DATASET_TASKS",
    "PRECISIONS",
    "DEFAULT_SYNTHETIC_MODEL_DIR",
    "SYNTHETIC_EVAL_SEED",
]

# The downstream tasks of the commands (`dbeta_hf.evaluation.cli.load_task_splits`).
TASKS: tuple[str, ...] = (
    "ptbxl_super",
    "ptbxl_sub",
    "ptbxl_form",
    "ptbxl_rhythm",
    "cpsc2018",
    "csn",
    "code15",
    "physionet2021",
    "synthetic",
)
# Display names of the tasks in tables and plots.
TASK_DISPLAY_NAMES: dict[str, str] = {
    "ptbxl_super": "PTB-XL Super",
    "ptbxl_sub": "PTB-XL Sub",
    "ptbxl_form": "PTB-XL Form",
    "ptbxl_rhythm": "PTB-XL Rhythm",
    "cpsc2018": "CPSC2018",
    "csn": "CSN",
    "code15": "CODE-15",
    "synthetic": "Synthetic",
    "physionet2021": "PhysioNet 2021",
}
# Which `--*_root` option a task reads its data from.
TASK_ROOT_OPTION: dict[str, str] = {
    "ptbxl_super": "ptbxl_root",
    "ptbxl_sub": "ptbxl_root",
    "ptbxl_form": "ptbxl_root",
    "ptbxl_rhythm": "ptbxl_root",
    "cpsc2018": "cpsc2018_root",
    "csn": "csn_root",
    "code15": "code15_root",
    "physionet2021": "physionet2021_root",
}
# The tasks between which cross-dataset zero-shot (the paper's Table 4) is defined (`dbeta_hf.evaluation.cross_dataset`).
CROSS_DATASET_TASKS: tuple[str, ...] = ("ptbxl_super", "cpsc2018", "csn")
# Feature-extraction precisions (`dbeta_hf.evaluation.embeddings.resolve_precision`).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
# The folder `examples/pretrain.py` writes with its embedded default (its `DEFAULT_SYNTHETIC_OUTPUT`).
DEFAULT_SYNTHETIC_MODEL_DIR = "outputs/dbeta-tiny-synthetic"
# Seed of the held-out synthetic corpus the evaluation commands use by default. The pretraining example draws its
# corpus from other seeds, so the evaluation records are never training records.
SYNTHETIC_EVAL_SEED = 20250
