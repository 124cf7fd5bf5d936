"""The settings of the two linear probes as plain dataclasses (no torch), so that a command line that sets them
(`examples/linear_probe.py`) parses without loading the probes: `LinearProbeConfig` (`dbeta_hf.evaluation.linear_probe`)
and `MERLProbeConfig` (`dbeta_hf.evaluation.merl_linear_probe`, MERL's protocol)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_FRACTIONS", "SCHEDULER_STEPS", "LinearProbeConfig", "MERLProbeConfig"]

# label fractions of the training split (the paper's 1 / 10 / 100 %)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)
# when MERL's MultiStepLR steps: per iteration and per epoch (MERL's code) or per epoch only
SCHEDULER_STEPS = ("iteration_and_epoch", "epoch")


@dataclass
class LinearProbeConfig:
    """Hyper-parameters of the logistic-regression probe.

    Args:
        learning_rate: Adam learning rate.
        weight_decay: L2 penalty added to the gradient (Adam's `weight_decay`; MERL uses 1e-4).
        batch_size: minibatch size; `None` = full batch.
        max_steps: maximum number of optimisation steps.
        eval_every: validation AUROC is computed every `eval_every` steps (and after the last step).
        patience: stop after this many evaluations without a validation improvement (`None`: never stop early).
        standardize: z-score the features with the training subset's mean and std.
        min_delta: improvement of the validation macro AUROC that counts as better.
    """

    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int | None = 256
    max_steps: int = 3000
    eval_every: int = 25
    patience: int | None = 20
    standardize: bool = True
    min_delta: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass
class MERLProbeConfig:
    """MERL's probe settings (the defaults are MERL's; change them only for quick tests)."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    epochs: int = 100
    milestones: tuple[int, ...] = (40,)
    gamma: float = 0.1
    scheduler_step: str = "iteration_and_epoch"
    random_state: int = 42
    seed: int = 42  # torch.manual_seed of MERL's script: head initialisation and shuffling

    def __post_init__(self):
        if self.scheduler_step not in SCHEDULER_STEPS:
            raise ValueError(f"scheduler_step must be one of {SCHEDULER_STEPS}, got {self.scheduler_step!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {self.epochs} and {self.batch_size}")
        self.milestones = tuple(int(m) for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
