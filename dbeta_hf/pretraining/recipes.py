"""Ready-made configurations and recipes: the official model, tiny models for tests, and the embedded CPU demo.

`DEMO_RECIPE` is the one place that says how `python examples/pretrain.py` pretrains without data arguments: the
tiny model, the collator settings, the loss policies and the training arguments. `examples/pretrain.py` takes them as
its defaults (every flag still overrides them), `examples/ablate.py` varies them one at a time, and
`benchmarks/bench_supervised_bound.py` trains the same ECG tower on the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from ..configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG, DBetaConfig, DBetaECGConfig

__all__ = ["DEMO_RECIPE", "PretrainingRecipe", "official_config", "tiny_config"]


def official_config(**kwargs) -> DBetaConfig:
    """The official D-BETA configuration (321M parameters with Flan-T5-base)."""
    return DBetaConfig(**kwargs)


def tiny_config(vocab_size: int = 500, hidden: int = 32, num_samples: int = 5000, ecg_layers: int = 1,
                text_layers: int = 1, ecg_kwargs: dict | None = None, dropout: float | None = None,
                **kwargs) -> DBetaConfig:
    """A tiny D-BETA (about 0.2M parameters) with the real conv stack shape (stride 16 -> 312 tokens for 5000 samples).

    Used by the test-suite and by `examples/pretrain.py`'s embedded CPU default. `ecg_kwargs` override fields of the
    ECG sub-config, `kwargs` top-level fields. `dropout` sets every dropout probability of the model at once (ECG
    tower: `dropout`, `attention_dropout`, `dropout_input`; T5: `dropout_rate`; fusion: `drop_rate`); `None` keeps
    the official values (0.1 each).
    """
    ecg_settings = dict(
        num_samples=num_samples,
        conv_feature_layers=[(hidden, 2, 2)] * 4,
        encoder_embed_dim=hidden,
        encoder_layers=ecg_layers,
        encoder_attention_heads=4,
        encoder_ffn_embed_dim=2 * hidden,
        conv_pos=16,
        conv_pos_groups=4,
    )
    if dropout is not None:
        ecg_settings.update(dropout=dropout, attention_dropout=dropout, dropout_input=dropout)
        kwargs.setdefault("drop_rate", dropout)
    ecg_config = DBetaECGConfig(**{**ecg_settings, **(ecg_kwargs or {})})
    text_config = {
        **FLAN_T5_BASE_TEXT_CONFIG,
        "vocab_size": vocab_size,
        "d_model": hidden,
        "d_kv": hidden // 4,
        "d_ff": 2 * hidden,
        "num_layers": text_layers,
        "num_decoder_layers": text_layers,
        "num_heads": 4,
        **({} if dropout is None else {"dropout_rate": dropout}),
    }
    defaults = dict(
        hidden_dim=hidden,
        num_heads=4,
        num_fusion_layers=2,
        mem_layer=1,
        mem_decoder_hidden_dim=16,
        mem_decoder_num_layers=1,
        mem_decoder_num_heads=2,
        vocab_size=vocab_size,
    )
    defaults.update(kwargs)
    return DBetaConfig(ecg_config=ecg_config, text_config=text_config, **defaults)


@dataclass(frozen=True)
class PretrainingRecipe:
    """How a tiny D-BETA is pretrained on the synthetic corpus, in one immutable object.

    Attributes:
        model: `tiny_config` keywords (`hidden`, `ecg_layers`, `dropout`, `ecg_kwargs` and `DBetaConfig` fields).
        collator: `DBetaPreTrainingCollator` settings that differ from the official ones.
        policies: the loss policies (`DBetaTrainingArguments.ets_unmasked_inputs`, `mlm_mem_on_matched_only`,
            `ets_global_batch`).
        training: the other `DBetaTrainingArguments` (steps, batch size, learning rate and schedule, logging, ...).
        train_records / eval_records: sizes of the synthetic training corpus and of its held-out pairs.
        tokenizer_vocab_size: vocabulary of the whole-word T5 tokenizer trained on the corpus.
        prompt_ensemble: the zero-shot prompts of the end-of-run report (`DBetaZeroShotClassifier`).

    Change one part with `dataclasses.replace(DEMO_RECIPE, model={**DEMO_RECIPE.model, "ecg_layers": 1})`.
    """

    model: Mapping[str, Any]
    collator: Mapping[str, Any]
    policies: Mapping[str, bool]
    training: Mapping[str, Any]
    train_records: int = 1536
    eval_records: int = 256
    tokenizer_vocab_size: int = 400
    prompt_ensemble: str = "description"

    def __post_init__(self):
        for name in ("model", "collator", "policies", "training"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def model_config(self, vocab_size: int, **overrides) -> DBetaConfig:
        """The recipe's `tiny_config` for a tokenizer of `vocab_size` tokens; `overrides` replace recipe keywords."""
        return tiny_config(vocab_size=vocab_size, **{**self.model, **overrides})

    def training_arguments(self) -> dict[str, Any]:
        """The `DBetaTrainingArguments` keywords of the recipe: the training arguments and the loss policies."""
        return {**self.training, **self.policies}


# The demo recipe; benchmarks/README_learning.md measures each choice.
# * model: a wider initialisation lets a tiny model start learning within a few hundred CPU steps; width 64 with two
#   ECG layers lifts the frozen-feature probe from 0.74 to 0.93 at 300 steps; no dropout (a few hundred steps over
#   1,536 pairs do not overfit; dropout only slowed the alignment); mean text pooling, a learnable ETS scale and bias
#   and a heavier ETS weight lift zero-shot.
# * collator: no lead masking (the largest gain measured); ETS on reports with statements dropped (zero-shot
#   0.829 -> 0.889 over three seeds, sinus rhythm 0.79 -> 0.93); identical reports counted as ETS positives (the
#   synthetic reports repeat a lot).
# * policies: ETS on an unmasked ECG pass and the report with its MLM tokens restored (the largest single gain with
#   lead masking off); MLM and MEM on the matched rows only; the ETS loss over the global batch.
# * zero-shot report: each class scored by the mean embedding of its name and its description (a prompt ensemble):
#   over seeds 0-4 and two numeric setups the description alone scores 0.80-0.84 macro, its second sentence using
#   words the reports never contain; the ensemble scores 0.95-0.99 (benchmarks/README_learning.md, round 5).
DEMO_RECIPE = PretrainingRecipe(
    model=dict(
        hidden=64,
        ecg_layers=2,
        initializer_range=0.1,
        dropout=0.0,
        text_pooling="mean",
        ets_learnable_scale=True,
        ets_learnable_bias=True,
        ets_logit_bias_init=-2.5,
        ets_loss_weight=10.0,
    ),
    collator=dict(lead_mask_prob=0.0, statement_dropout=0.3, same_report_positives=True),
    policies=dict(ets_unmasked_inputs=True, mlm_mem_on_matched_only=True, ets_global_batch=True),
    prompt_ensemble="name+description",
    training=dict(
        output_dir="outputs/dbeta-tiny-synthetic",
        max_steps=450,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=2e-3,
        weight_decay=0.01,
        warmup_steps=20,
        lr_scheduler_type="cosine",
        logging_steps=50,
        eval_strategy="no",  # the end-of-run report scores the held-out pairs
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=False,
    ),
)
