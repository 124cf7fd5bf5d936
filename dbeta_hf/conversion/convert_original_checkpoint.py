"""Convert an official D-BETA checkpoint (`torch.save({"model": state_dict})`) into a transformers model folder.

    python -m dbeta_hf.conversion.convert_original_checkpoint --checkpoint sample.pt --original-config configs/config.json \
        --output-dir dbeta-base [--text-config t5_config.json] [--tokenizer google/flan-t5-base] [--push-to-hub ORG/NAME]

This module holds the official formats: `ORIGINAL_KEY_MAPPING` maps the official parameter names to this package's
(the base model's keys get the `model.` prefix; the heads `mlm_head`, `mim_head` -> `mem_head`, `itm_head` ->
`etm_head` stay at the top), and `from_original_config` maps the official `configs/config.json` to a `DBetaConfig`.
The conversion is a pure renaming, checked key by key: the positional convolution's weight-norm tensors (`weight_g`,
`weight_v`) become `parametrizations.weight.original0/1`, `ecg_encoder.mask_emb` (an unused training-time parameter)
is dropped, and the ECG-text `logit_scale` (the official logits have a fixed scale of 1 and no bias) is written
from the config. Any missing, unexpected or mis-shaped key is an error that lists the keys: the result is never
partly random.

The converter always writes the ECG feature extractor (`preprocessor_config.json`; the whole `DBetaProcessor`
with `--tokenizer`) with the input convention the checkpoint expects: `--lead-order standard|mimic` and
`--input-normalization none|per-lead-zscore|per-record-minmax` (`dbeta_hf.input_convention`). Flags given explicitly win. For a
setting not given, the converter runs `dbeta_hf.conversion.diagnose_input_convention` on synthetic ECGs and takes the
measured value when its margin is clear (at least `--min-margin`); otherwise it keeps the standard order and raw
millivolts and says that the measurement was inconclusive. The choice and the measured losses are logged and
written to `input_convention.json` in the output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from transformers import T5Config

from ..configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG, DBetaConfig, DBetaECGConfig
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..hub.model_card import write_model_card
from ..hub.errors import HubUnreachableError
from ..hub.push import push_model_folder
from ..input_convention import INPUT_NORMALIZATIONS, check_input_normalization, lead_names_for_order
from ..modeling_dbeta import DBetaForPreTraining
from ..processing_dbeta import DBetaProcessor
from .diagnose_input_convention import (
    CANDIDATE_CONVENTIONS,
    DEFAULT_MIN_MARGIN,
    diagnose_input_convention,
    format_report,
    report_as_json,
)

logger = logging.getLogger(__name__)

# Official parameter name -> `DBetaForPreTraining` parameter name (regular expressions; the first that matches a key
# renames it). A key that none matches is reported as unexpected.
_CONV_LAYERS = r"^ecg_encoder\.feature_extractor\.conv_layers\.(\d+)\."
ORIGINAL_KEY_MAPPING = {
    r"^mlm_head\.": "mlm_head.",
    r"^mim_head\.": "mem_head.",
    r"^itm_head\.": "etm_head.",
    r"^class_embedding$": "model.ecg_encoder.class_embedding",
    _CONV_LAYERS + r"0\.": r"model.ecg_encoder.feature_extractor.conv_layers.\1.conv.",
    _CONV_LAYERS + r"2\.1\.": r"model.ecg_encoder.feature_extractor.conv_layers.\1.layer_norm.",  # layer_norm mode
    _CONV_LAYERS + r"2\.": r"model.ecg_encoder.feature_extractor.conv_layers.\1.layer_norm.",
    r"^ecg_encoder\.conv_pos\.pos_conv\.0\.weight_g$": "model.ecg_encoder.conv_pos.conv.parametrizations.weight.original0",
    r"^ecg_encoder\.conv_pos\.pos_conv\.0\.weight_v$": "model.ecg_encoder.conv_pos.conv.parametrizations.weight.original1",
    r"^ecg_encoder\.conv_pos\.pos_conv\.0\.": "model.ecg_encoder.conv_pos.conv.",
    r"^ecg_encoder\.": "model.ecg_encoder.",
    r"^language_encoder\.": "model.text_encoder.",
    r"^multi_modal_language_proj\.": "model.text_projection.",
    r"^multi_modal_ecg_proj\.": "model.ecg_projection.",
    r"^modality_type_embeddings\.": "model.modality_type_embeddings.",
    r"^multi_modal_language_layers\.": "model.text_fusion_layers.",
    r"^multi_modal_ecg_layers\.": "model.ecg_fusion_layers.",
    r"^multi_modal_language_pooler\.": "model.text_fusion_pooler.",
    r"^multi_modal_ecg_pooler\.": "model.ecg_fusion_pooler.",
    r"^unimodal_language_pooler\.": "model.text_pooler.",
    r"^unimodal_ecg_pooler\.": "model.ecg_pooler.",
}
DROPPED_KEYS = ("ecg_encoder.mask_emb",)
TIED_TEXT_EMBEDDING = ("language_encoder.encoder.embed_tokens.weight", "language_encoder.shared.weight")
# Weights of the model that the official checkpoint does not carry: the ECG-text logit scale and bias (the official
# ETS loss has a fixed scale of 1 and no bias); they get the values of the config.
NOT_IN_ORIGINAL_CHECKPOINT = ("model.logit_scale", "model.logit_bias")

# Official `configs/config.json` field -> DBetaECGConfig field
ORIGINAL_ECG_CONFIG_KEYS = {
    "in_d": "num_leads", "conv_feature_layers": "conv_feature_layers", "extractor_mode": "extractor_mode",
    "conv_bias": "conv_bias", "encoder_embed_dim": "encoder_embed_dim", "encoder_layers": "encoder_layers",
    "encoder_attention_heads": "encoder_attention_heads", "encoder_ffn_embed_dim": "encoder_ffn_embed_dim",
    "layer_norm_first": "layer_norm_first", "conv_pos": "conv_pos", "conv_pos_groups": "conv_pos_groups",
    "dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
    "dropout_input": "dropout_input", "encoder_layerdrop": "encoder_layerdrop", "feature_grad_mult": "feature_grad_mult",
}
# Official field -> DBetaConfig field
ORIGINAL_CONFIG_KEYS = {
    "hidden_dim": "hidden_dim", "num_heads": "num_heads", "num_top_layer": "num_fusion_layers", "drop_rate": "drop_rate",
    "vocab_size": "vocab_size", "mem_layer": "mem_layer", "mem_prob": "mem_mask_ratio",
    "mem_decoder_hidden_dim": "mem_decoder_hidden_dim", "mem_decoder_num_layers": "mem_decoder_num_layers",
    "mem_decoder_num_heads": "mem_decoder_num_heads",
}
# `mim_*` spellings of older official configs, read as the `mem_*` fields
ORIGINAL_OLD_SPELLINGS = {
    "mim_layer": "mem_layer", "mim_prob": "mem_prob", "mim_decoder_hidden_dim": "mem_decoder_hidden_dim",
    "mim_decoder_num_layers": "mem_decoder_num_layers", "mim_decoder_num_heads": "mem_decoder_num_heads",
}
# The fields of the official configs/config.json that the model reads (official names; `from_original_config` maps
# them), with their official values (`max_text_size` only sets the collator default). Every one must be present (a
# missing field would silently take this package's default); fields whose value differs are logged, because fields
# that do not change a weight's shape (layer_norm_first, extractor_mode, mem_layer...) cannot be checked against the
# checkpoint.
ORIGINAL_CONFIG_DEFAULTS: dict[str, Any] = {
    "in_d": 12, "conv_feature_layers": "[(256, 2, 2)] * 4", "extractor_mode": "default", "conv_bias": False,
    "encoder_embed_dim": 768, "encoder_layers": 8, "encoder_attention_heads": 12, "encoder_ffn_embed_dim": 3072,
    "layer_norm_first": False, "conv_pos": 128, "conv_pos_groups": 16, "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.0, "dropout_input": 0.1, "encoder_layerdrop": 0.0, "feature_grad_mult": 1.0,
    "vocab_size": 32128, "hidden_dim": 768, "num_heads": 12, "num_top_layer": 6, "drop_rate": 0.1, "mem_layer": 3,
    "mem_prob": 0.75, "mem_decoder_hidden_dim": 384, "mem_decoder_num_layers": 4, "mem_decoder_num_heads": 6,
    "max_text_size": 256,
}
_OLD_SPELLINGS = {new: old for old, new in ORIGINAL_OLD_SPELLINGS.items()}  # official field -> older spelling


class CheckpointConversionError(ValueError):
    """The checkpoint does not match the model built from the config."""


def from_original_config(original: dict[str, Any], text_config: dict | T5Config | None = None, **kwargs) -> DBetaConfig:
    """Build a `DBetaConfig` from the official D-BETA `config.json` (`{"model": {...}}` or its inner dict).

    `ORIGINAL_ECG_CONFIG_KEYS` and `ORIGINAL_CONFIG_KEYS` map the official field names to this package's; the official
    fields not in them are ignored: unused ones (`all_gather`, `normalize`, `filter`, `apply_mask`, `mask_*`, ...) and
    the collator's (`max_text_size`, `lead_masking`, whose official values 256 and 0.5 are the defaults of
    `DBetaPreTrainingCollator`: `max_length=254`, `lead_mask_prob=0.5`). `text_config` defaults to Flan-T5-base;
    `kwargs` set further `DBetaConfig` fields.
    """
    cfg = dict(original.get("model", original))
    ecg = {new: cfg[old] for old, new in ORIGINAL_ECG_CONFIG_KEYS.items() if old in cfg}
    top = {}
    for old, new in ORIGINAL_CONFIG_KEYS.items():
        spellings = [old] + [alias for alias, name in ORIGINAL_OLD_SPELLINGS.items() if name == old]
        present = [key for key in spellings if key in cfg]
        if present:
            top[new] = cfg[present[0]]
    if text_config is None:
        text_config = T5Config(**FLAN_T5_BASE_TEXT_CONFIG)
    elif isinstance(text_config, dict):
        text_config = T5Config(**{k: v for k, v in text_config.items() if k not in ("model_type", "transformers_version")})
    return DBetaConfig(ecg_config=DBetaECGConfig(**ecg), text_config=text_config, **{**top, **kwargs})


def read_json_file(path: str | Path, what: str) -> dict:
    """Read a JSON object from `path`; an empty or malformed file is a `CheckpointConversionError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    text = path.read_text()
    if not text.strip():
        raise CheckpointConversionError(f"{what} {path} is empty; pass the JSON file (e.g. the official configs/config.json)")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointConversionError(f"{what} {path} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise CheckpointConversionError(f"{what} {path} must hold a JSON object, found {type(value).__name__}")
    return value


def check_original_config(original: dict) -> None:
    """Every field the model reads must be in the official config; log the fields that differ from the official ones."""
    cfg = original.get("model", original)
    if not isinstance(cfg, dict):
        raise CheckpointConversionError(f"the official config must be {{'model': {{...}}}} or its inner dict, got {cfg!r}")
    missing = [k for k in ORIGINAL_CONFIG_DEFAULTS if k not in cfg and _OLD_SPELLINGS.get(k) not in cfg]
    if missing:
        raise CheckpointConversionError(
            f"the official config lacks the field(s) {', '.join(missing)}; the model needs every one of "
            f"{', '.join(ORIGINAL_CONFIG_DEFAULTS)}. Use the configs/config.json that was saved with the checkpoint."
        )
    differing = []
    for key, default in ORIGINAL_CONFIG_DEFAULTS.items():
        value = cfg[key] if key in cfg else cfg[_OLD_SPELLINGS[key]]
        if value != default:
            differing.append(f"{key}={value!r} (official {default!r})")
    if differing:
        logger.warning(
            "The config differs from the official D-BETA config in %d field(s): %s. Fields that do not change a "
            "weight's shape cannot be checked against the checkpoint: make sure these are the checkpoint's own.",
            len(differing), "; ".join(differing),
        )


def _torch_load(path: Path, weights_only: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (EOFError, RuntimeError, zipfile.BadZipFile) as err:
        size = path.stat().st_size
        state = "is empty" if size == 0 else f"is truncated or not a torch.save file ({size} bytes)"
        raise CheckpointConversionError(
            f"checkpoint {path} {state}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'end of file'}. "
            "Download or copy it again."
        ) from None


def load_original_state_dict(checkpoint_path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the official checkpoint safely (`weights_only=True`) and return its state dict."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_unsafe_pickle:
            raise CheckpointConversionError(
                f"{path} holds Python objects besides tensors, and loading it would run arbitrary code "
                f"({err.__class__.__name__}: {str(err).splitlines()[0]}). If you trust the file, pass "
                "--allow-unsafe-pickle (convert_original_checkpoint(..., allow_unsafe_pickle=True))."
            ) from err
        logger.warning("Loading %s with full unpickling (allow_unsafe_pickle=True): only do this for trusted files.", path)
        checkpoint = _torch_load(path, weights_only=False)
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict):
        state_dict = checkpoint["model"]
    elif isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict = checkpoint
    else:
        keys = list(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointConversionError(
            f"{path} is not a D-BETA checkpoint: expected {{'model': state_dict}} or a bare state dict, found {keys}"
        )
    return {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def rename_original_key(key: str) -> str:
    """One official parameter name through `ORIGINAL_KEY_MAPPING`; a name it does not know is returned unchanged."""
    for pattern, replacement in ORIGINAL_KEY_MAPPING.items():
        renamed, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return renamed
    return key


def rename_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map official key names to `DBetaForPreTraining` key names (no tensor is changed)."""
    embed_key, shared_key = TIED_TEXT_EMBEDDING
    if embed_key in state_dict and shared_key in state_dict and not torch.equal(state_dict[embed_key], state_dict[shared_key]):
        raise CheckpointConversionError(
            f"{embed_key} and {shared_key} differ, but they are one tied parameter in T5EncoderModel; the checkpoint is corrupt"
        )
    if shared_key in state_dict and embed_key not in state_dict:
        state_dict = {**state_dict, embed_key: state_dict[shared_key]}
    return {rename_original_key(key): value for key, value in state_dict.items() if key not in DROPPED_KEYS}


def add_weights_not_in_original(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Complete a renamed official state dict with the model's own values of `NOT_IN_ORIGINAL_CHECKPOINT` (the
    ECG-text logit scale and bias, which the config sets). A 0-dim value given for one of them becomes shape (1,)."""
    completed = dict(state_dict)
    expected = model.state_dict()
    for key in NOT_IN_ORIGINAL_CHECKPOINT:
        if key not in expected:
            continue
        if key not in completed:
            completed[key] = expected[key].detach().clone()
        elif completed[key].dim() == 0:
            completed[key] = completed[key].reshape(1)
    return completed


def check_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise with the full lists when keys are missing, unexpected or of the wrong shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        lines = ["the checkpoint does not match the model built from the given config:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                lines.append(f"  {title} ({len(keys)}):")
                lines.extend(f"    {k}" for k in keys)
        lines.append("Check --original-config (and --text-config: the default is Flan-T5-base) against the checkpoint.")
        raise CheckpointConversionError("\n".join(lines))


def convert_original_checkpoint(
    checkpoint_path: str | Path,
    original_config_path: str | Path,
    text_config_path: str | Path | None = None,
    allow_unsafe_pickle: bool = False,
) -> DBetaForPreTraining:
    """Build a `DBetaForPreTraining` holding exactly the official checkpoint's weights (in eval mode)."""
    original = read_json_file(original_config_path, "official config")
    check_original_config(original)
    text_config = read_json_file(text_config_path, "text config") if text_config_path else None
    config = from_original_config(original, text_config=text_config)
    model = DBetaForPreTraining(config)
    state_dict = rename_original_state_dict(load_original_state_dict(checkpoint_path, allow_unsafe_pickle))
    state_dict = add_weights_not_in_original(state_dict, model)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model


def choose_input_convention(
    model: DBetaForPreTraining,
    lead_order: str | None = None,
    input_normalization: str | None = None,
    num_records: int = 32,
    min_margin: float | None = None,
) -> dict:
    """The input convention to save with a converted checkpoint: explicit settings win; a setting left None is
    measured with `diagnose_input_convention` on `num_records` synthetic ECGs and taken when its margin is at least
    `min_margin`, else it defaults to ``"standard"`` / ``"none"`` (reported as inconclusive).

    Returns ``{"lead_order", "input_normalization", "decided_by": {setting: how}, "diagnostic": report or None}``.
    """
    min_margin = DEFAULT_MIN_MARGIN if min_margin is None else min_margin
    if lead_order is not None:
        lead_names_for_order(lead_order)  # validates
    if input_normalization is not None:
        check_input_normalization(input_normalization)
    chosen = {"lead_order": lead_order, "input_normalization": input_normalization}
    decided_by = {k: "explicit flag" for k, v in chosen.items() if v is not None}
    report = None
    if len(decided_by) < 2:
        candidates = [
            (order, norm) for order, norm in CANDIDATE_CONVENTIONS
            if lead_order in (None, order) and input_normalization in (None, norm)
        ]
        report = diagnose_input_convention(model, num_synthetic=num_records, candidates=candidates, min_margin=min_margin)
        best = dict(zip(("lead_order", "input_normalization"), report["best"]))
        for setting, default in (("lead_order", "standard"), ("input_normalization", "none")):
            if chosen[setting] is not None:
                continue
            margin = report["axis_margins"][setting]
            if margin >= min_margin:
                chosen[setting] = best[setting]
                decided_by[setting] = f"diagnostic (margin {margin:.1%})"
            else:
                chosen[setting] = default
                decided_by[setting] = f"default: the diagnostic was inconclusive (margin {margin:.1%} < {min_margin:.0%})"
    return {**chosen, "decided_by": decided_by, "diagnostic": report}


def save_input_processor(output_dir: str | Path, model: DBetaForPreTraining, convention: dict, tokenizer: str | None = None):
    """Write the feature extractor (or, with `tokenizer`, the whole `DBetaProcessor`) with `convention`, and
    `input_convention.json`; return what was saved."""
    ecg_config = model.config.ecg_config
    settings = dict(
        sampling_rate=ecg_config.sampling_rate, num_samples=ecg_config.num_samples,
        lead_order=convention["lead_order"], input_normalization=convention["input_normalization"],
    )
    if tokenizer:
        saved = DBetaProcessor.from_tokenizer(tokenizer, **settings)
    else:
        saved = DBetaECGFeatureExtractor(**settings)
    saved.save_pretrained(output_dir)
    record = {k: convention[k] for k in ("lead_order", "input_normalization", "decided_by")}
    if convention.get("diagnostic") is not None:
        record["diagnostic"] = report_as_json(convention["diagnostic"])
        logger.info("%s", format_report(convention["diagnostic"]))
    (Path(output_dir) / "input_convention.json").write_text(json.dumps(record, indent=1))
    for setting in ("lead_order", "input_normalization"):
        logger.info("input convention: %s = %s (%s)", setting, convention[setting], convention["decided_by"][setting])
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dbeta_hf.conversion.convert_original_checkpoint",
        description="Convert an official D-BETA checkpoint into a transformers model folder "
        "(loads with DBetaForPreTraining.from_pretrained / DBetaModel.from_pretrained).",
    )
    parser.add_argument("--checkpoint", required=True, help="official checkpoint (.pt holding {'model': state_dict})")
    parser.add_argument("--original-config", required=True, help="official configs/config.json")
    parser.add_argument("--text-config", default=None, help="T5Config JSON of the text encoder (default: Flan-T5-base)")
    parser.add_argument("--output-dir", required=True, help="folder to write config.json and model.safetensors to")
    parser.add_argument("--tokenizer", default=None,
                        help="also save a DBetaProcessor with this T5 tokenizer (name or path, e.g. google/flan-t5-base)")
    parser.add_argument("--lead-order", choices=["standard", "mimic"], default=None,
                        help="input channel order the checkpoint expects (standard: I, II, III, aVR, aVL, aVF, V1-V6; "
                        "mimic: aVF before aVL). Default: measured with dbeta_hf.conversion.diagnose_input_convention")
    parser.add_argument("--input-normalization", choices=list(INPUT_NORMALIZATIONS), default=None,
                        help="input scaling the checkpoint expects (none = millivolts; per-record-minmax = MERL's "
                        "(x - min) / (max - min + 1e-8) over the whole record). Default: measured")
    parser.add_argument("--diagnostic-records", type=int, default=32,
                        help="synthetic ECGs the diagnostic uses for settings not given")
    parser.add_argument("--min-margin", type=float, default=None,
                        help="relative MEM-loss margin the diagnostic needs to set a setting (default 0.05)")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="push the converted model to this Hub repo")
    parser.add_argument("--allow-unsafe-pickle", action="store_true",
                        help="allow full unpickling of a checkpoint that holds non-tensor objects (trusted files only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        model = convert_original_checkpoint(args.checkpoint, args.original_config, args.text_config, args.allow_unsafe_pickle)
    except (CheckpointConversionError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    output_dir = Path(args.output_dir)
    model.save_pretrained(output_dir)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info("converted %s (%d parameters) -> %s", args.checkpoint, num_params, output_dir)
    convention = choose_input_convention(
        model, args.lead_order, args.input_normalization, args.diagnostic_records, args.min_margin
    )
    processor = save_input_processor(output_dir, model, convention, args.tokenizer)
    logger.info("saved a %s%s", type(processor).__name__, f" with tokenizer {args.tokenizer}" if args.tokenizer else "")
    card = write_model_card(
        output_dir, args.push_to_hub, converted_from_official=True, base_model="google/flan-t5-base",
        datasets=["physionet/mimic-iv-ecg"],
        feature_extractor=getattr(processor, "feature_extractor", processor),
        training_settings={"source": f"official D-BETA checkpoint {Path(args.checkpoint).name}, converted key for key"},
    )
    logger.info("wrote the model card %s", card)
    if args.push_to_hub:
        try:
            push_model_folder(output_dir, args.push_to_hub,
                              commit_message="Upload D-BETA converted from the official checkpoint")
        except HubUnreachableError as err:  # its message says where the converted model is saved
            print(f"error: {err}", file=sys.stderr)
            return 2
        logger.info("pushed to https://huggingface.co/%s", args.push_to_hub)
    return 0


if __name__ == "__main__":
    sys.exit(main())
