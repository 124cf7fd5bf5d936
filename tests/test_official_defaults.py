"""This package's defaults against the official D-BETA code (issue #24, deliverable 1).

Official values are facts about github.com/manhph2211/D-BETA at commit 92e07e7 (CC BY-NC; nothing is copied): each
one below cites its source as `path:function` in that repository. The official `configs/config.json` values are the
converter's record `ORIGINAL_CONFIG_DEFAULTS`; with the environment variable DBETA_OFFICIAL_REPO pointing at a copy of
the official repository, its `configs/config.json` is compared as well. Differences are listed explicitly with their
section of docs/DIFFERENCES.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from dbeta_hf import DBetaConfig
from dbeta_hf.configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG
from dbeta_hf.conversion.convert_original_checkpoint import (
    ORIGINAL_CONFIG_DEFAULTS,
    ORIGINAL_CONFIG_KEYS,
    ORIGINAL_ECG_CONFIG_KEYS,
    from_original_config,
)
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator
from dbeta_hf.pretraining.arguments import TRAINING_POLICIES, DBetaTrainingArguments

# keys every transformers config carries; they describe no model setting
_TRANSFORMERS_KEYS = {
    "_name_or_path", "architectures", "chunk_size_feed_forward", "dtype", "id2label", "label2id", "is_encoder_decoder",
    "model_type", "output_attentions", "output_hidden_states", "problem_type", "return_dict", "transformers_version",
    "torch_dtype", "tie_word_embeddings", "_attn_implementation_autoset",
}

# DBetaConfig fields that configs/config.json does not hold, with the value the official code uses (hard-coded there)
OFFICIAL_VALUES_OUTSIDE_THE_CONFIG = {
    # models/dbeta.py:MEMHead.__init__ sizes the MEM head for dummy_input_length = 5000 samples; the pretraining and
    # zero-shot inputs are 10 s at 500 Hz (example.ipynb:zero_shot resamples CODE-15 to 500 Hz, first 5000 samples)
    "ecg_config.num_samples": 5000,
    "ecg_config.sampling_rate": 500,
    # models/modules/layer_norm.py:LayerNorm (eps=1e-5), used by models/transformer.py
    "ecg_config.layer_norm_eps": 1e-5,
    # models/dbeta.py:DBETA.__init__ builds a BertConfig without layer_norm_eps (transformers' default 1e-12) and with
    # intermediate_size=cfg.hidden_dim * 4 for the fusion layers (models/cross_layer.py:BertCrossLayer)
    "fusion_layer_norm_eps": 1e-12,
    "fusion_intermediate_size": 4 * 768,
    # models/dbeta.py:MEMHead.__init__: floor(5000 / 312 tokens) = 16 samples per token and lead
    "mem_patch_size": 16,
    # models/dbeta.py:DBETA.get_targets(norm_pix_loss=True); unconfirmed for the checkpoint (DIFFERENCES.md 6)
    "mem_norm_target": True,
    # losses/loss.py:DBETALoss.forward adds the four losses without weights
    "mlm_loss_weight": 1.0, "mem_loss_weight": 1.0, "etm_loss_weight": 1.0, "ets_loss_weight": 1.0,
    # losses/loss.py:DBETALoss.forward calls losses/ets.py:ETSLoss.forward with logit_scale=1, bias=None, raw features
    "ets_logit_scale_init": 1.0, "ets_learnable_scale": False, "ets_logit_bias_init": None,
    "ets_learnable_bias": False, "ets_normalize_embeddings": False,
    # models/supporter.py:Pooler.forward pools the first token
    "text_pooling": "first",
    # models/dbeta.py:init_weights (normal, std 0.02)
    "initializer_range": 0.02,
    # implementation choice with identical numbers (the official positional conv; tests/test_conversion.py)
    "ecg_config.conv_pos_impl": "conv",
}
# models/dbeta.py:DBETA.__init__ loads T5EncoderModel.from_pretrained("google/flan-t5-base")
OFFICIAL_TEXT_CONFIG = FLAN_T5_BASE_TEXT_CONFIG
# Documented differences between DBetaConfig() and the official model: none (the model is reproduced exactly; the
# differences of docs/DIFFERENCES.md are in data preparation and training policies, tested below).
DOCUMENTED_CONFIG_EXCEPTIONS: dict[str, str] = {}


def _flatten(config: DBetaConfig) -> dict:
    values = {k: v for k, v in config.to_dict().items() if k not in _TRANSFORMERS_KEYS | {"ecg_config", "text_config"}}
    values.update({
        f"ecg_config.{k}": v for k, v in config.ecg_config.to_dict().items() if k not in _TRANSFORMERS_KEYS
    })
    return values


def _official_config_json() -> dict:
    """The official configs/config.json as the converter records it: the fields the model reads, official values."""
    return {"model": dict(ORIGINAL_CONFIG_DEFAULTS)}


def _official_model_values(official: dict) -> dict:
    cfg = official["model"]
    values = {f"ecg_config.{new}": cfg[old] for old, new in ORIGINAL_ECG_CONFIG_KEYS.items()}
    values.update({new: cfg[old] for old, new in ORIGINAL_CONFIG_KEYS.items()})
    # conv_feature_layers is an expression string in the official config
    values["ecg_config.conv_feature_layers"] = [list(layer) for layer in eval(cfg["conv_feature_layers"])]  # noqa: S307
    return values


def _assert_default_config_is_official(official: dict) -> None:
    default = _flatten(DBetaConfig())
    converted = _flatten(from_original_config(official))
    expected = {**_official_model_values(official), **OFFICIAL_VALUES_OUTSIDE_THE_CONFIG}
    # every field of DBetaConfig has an official value here (a new field must be classified)
    assert set(default) == set(expected) | set(DOCUMENTED_CONFIG_EXCEPTIONS), (
        f"unclassified fields {sorted(set(default) - set(expected))}, stale ones {sorted(set(expected) - set(default))}"
    )
    mismatches = {
        field: (default[field], converted[field], expected.get(field))
        for field in default
        if field not in DOCUMENTED_CONFIG_EXCEPTIONS and not default[field] == converted[field] == expected[field]
    }
    assert not mismatches, f"field: (DBetaConfig(), from_original_config(official), official) {mismatches}"
    text_default, text_converted = DBetaConfig().text_config.to_dict(), from_original_config(official).text_config.to_dict()
    assert text_default == text_converted
    for key, value in OFFICIAL_TEXT_CONFIG.items():
        if key not in _TRANSFORMERS_KEYS:  # tie_word_embeddings: no output embedding in an encoder-only tower
            assert text_default[key] == value, key


def test_default_config_equals_the_converted_official_config_field_by_field():
    _assert_default_config_is_official(_official_config_json())


def test_the_comparison_catches_a_differing_field():
    official = _official_config_json()
    official["model"]["mem_prob"] = 0.5
    with pytest.raises(AssertionError, match="mem_mask_ratio"):
        _assert_default_config_is_official(official)


@pytest.mark.skipif(not os.environ.get("DBETA_OFFICIAL_REPO"), reason="DBETA_OFFICIAL_REPO is not set")
def test_default_config_equals_the_official_repository_config():
    path = Path(os.environ["DBETA_OFFICIAL_REPO"]) / "configs" / "config.json"
    official = json.loads(path.read_text())
    # the converter's record holds the official file's values
    assert {k: official["model"][k] for k in ORIGINAL_CONFIG_DEFAULTS} == ORIGINAL_CONFIG_DEFAULTS
    _assert_default_config_is_official(official)
    # the collator's official values are in the same file (see the collator test)
    defaults = _collator_defaults()
    assert official["model"]["max_text_size"] - 2 == defaults["max_length"]
    assert official["model"]["lead_masking"] == defaults["lead_mask_prob"]


def _collator_defaults() -> dict:
    import inspect

    return {
        name: parameter.default
        for name, parameter in inspect.signature(DBetaPreTrainingCollator.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def test_collator_defaults_are_official():
    defaults = _collator_defaults()
    official = {
        # datasets/ecg_text_dataset.py:RawECGTextDataset.__init__ (mlm_prob=0.25)
        "mlm_probability": 0.25,
        # utils/augmentations.py:RandomLeadsMask.__init__ (mask_leads_prob=0.5; configs/config.json lead_masking 0.5),
        # applied to every sample (datasets/ecg_dataset.py:RawECGDataset.__init__ fixes p to 1)
        "lead_mask_prob": 0.5,
        # datasets/ecg_text_dataset.py:RawECGTextDataset.collator: int(bsz * 0.5 + U[0, 1)) negative rows
        "negative_fraction": 0.5,
        # datasets/ecg_text_dataset.py:RawECGTextDataset.__init__: max_text_size (256 in configs/config.json) - 2,
        # the tokenizer's max_length in datasets/ecg_text_dataset.py:RawECGTextDataset.collator
        "max_length": ORIGINAL_CONFIG_DEFAULTS["max_text_size"] - 2,
        # whole reports, diagonal ETS labels only (losses/ets.py:ETSLoss.get_ground_truth)
        "statement_dropout": 0.0,
        "same_report_positives": False,
        # transformers' DataCollatorForLanguageModeling defaults, which the official collator would use
        # (datasets/ecg_text_dataset.py:RawECGTextDataset.__init__ passes only mlm_probability)
        "mask_replace_prob": 0.8,
        "random_replace_prob": 0.1,
    }
    assert {name: defaults[name] for name in official} == official
    assert official["max_length"] == 254
    # documented exception (DIFFERENCES.md 4): the official T5 tokenizer has no mask token; <extra_id_0> here
    assert defaults["mask_token"] == "<extra_id_0>"


def test_trainer_policy_defaults_are_official():
    official = {
        # models/dbeta.py:DBETA.forward computes ETS on the MEM-masked ECG pass and the fed (MLM-masked) text
        "ets_unmasked_inputs": False,
        # losses/loss.py:DBETALoss.forward averages MLM and MEM over every row (DIFFERENCES.md 3)
        "mlm_mem_on_matched_only": False,
        # losses/loss.py:DBETALoss.__init__ builds ETSLoss() with world_size=1 (losses/ets.py:ETSLoss.__init__)
        "ets_global_batch": False,
    }
    assert set(official) == set(TRAINING_POLICIES)
    fields = {f.name: f.default for f in dataclasses.fields(DBetaTrainingArguments)}
    assert {name: fields[name] for name in official} == official
