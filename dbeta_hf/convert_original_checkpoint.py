"""Convert an official D-BETA checkpoint (`torch.save({"model": state_dict})`) into a transformers model folder.

    python -m dbeta_hf.convert_original_checkpoint --checkpoint sample.pt --original-config configs/config.json \
        --output-dir dbeta-base [--text-config t5_config.json] [--tokenizer google/flan-t5-base] [--push-to-hub ORG/NAME]

The conversion is a pure renaming, checked key by key: the base model's keys get the `model.` prefix, the heads
(`mlm_head`, `mim_head`, `itm_head`) keep their names, the positional convolution's legacy weight-norm tensors
(`weight_g`, `weight_v`) become `parametrizations.weight.original0/1`, and `ecg_encoder.mask_emb` (an unused
training-time parameter) is dropped. Any missing, unexpected or mis-shaped key is an error that lists the keys:
the result is never partly random.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from pathlib import Path

import torch

from .configuration_dbeta import DBetaConfig
from .modeling_dbeta import DBetaForPreTraining

logger = logging.getLogger(__name__)

HEAD_PREFIXES = ("mlm_head.", "mim_head.", "itm_head.")
DROPPED_KEYS = ("ecg_encoder.mask_emb",)
WEIGHT_NORM_RENAMES = {
    "ecg_encoder.conv_pos.pos_conv.0.weight_g": "ecg_encoder.conv_pos.pos_conv.0.parametrizations.weight.original0",
    "ecg_encoder.conv_pos.pos_conv.0.weight_v": "ecg_encoder.conv_pos.pos_conv.0.parametrizations.weight.original1",
}
TIED_TEXT_EMBEDDING = ("language_encoder.encoder.embed_tokens.weight", "language_encoder.shared.weight")


class CheckpointConversionError(ValueError):
    """The checkpoint does not match the model built from the config."""


def load_original_state_dict(checkpoint_path: str | Path, allow_unsafe_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read the official checkpoint safely (`weights_only=True`) and return its state dict."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_unsafe_pickle:
            raise CheckpointConversionError(
                f"{path} holds Python objects besides tensors, and loading it would run arbitrary code "
                f"({err.__class__.__name__}: {str(err).splitlines()[0]}). If you trust the file, pass "
                "--allow-unsafe-pickle (convert_original_checkpoint(..., allow_unsafe_pickle=True))."
            ) from err
        logger.warning("Loading %s with full unpickling (allow_unsafe_pickle=True): only do this for trusted files.", path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
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


def rename_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map official key names to `DBetaForPreTraining` key names (no tensor is changed)."""
    embed_key, shared_key = TIED_TEXT_EMBEDDING
    if embed_key in state_dict and shared_key in state_dict and not torch.equal(state_dict[embed_key], state_dict[shared_key]):
        raise CheckpointConversionError(
            f"{embed_key} and {shared_key} differ, but they are one tied parameter in T5EncoderModel; the checkpoint is corrupt"
        )
    if shared_key in state_dict and embed_key not in state_dict:
        state_dict = {**state_dict, embed_key: state_dict[shared_key]}
    converted = {}
    for key, value in state_dict.items():
        if key in DROPPED_KEYS:
            continue
        key = WEIGHT_NORM_RENAMES.get(key, key)
        converted[key if key.startswith(HEAD_PREFIXES) else f"model.{key}"] = value
    return converted


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
    original = json.loads(Path(original_config_path).read_text())
    text_config = json.loads(Path(text_config_path).read_text()) if text_config_path else None
    config = DBetaConfig.from_original_config(original, text_config=text_config)
    state_dict = rename_original_state_dict(load_original_state_dict(checkpoint_path, allow_unsafe_pickle))
    model = DBetaForPreTraining(config)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dbeta_hf.convert_original_checkpoint",
        description="Convert an official D-BETA checkpoint into a transformers model folder "
        "(loads with DBetaForPreTraining.from_pretrained / DBetaModel.from_pretrained).",
    )
    parser.add_argument("--checkpoint", required=True, help="official checkpoint (.pt holding {'model': state_dict})")
    parser.add_argument("--original-config", required=True, help="official configs/config.json")
    parser.add_argument("--text-config", default=None, help="T5Config JSON of the text encoder (default: Flan-T5-base)")
    parser.add_argument("--output-dir", required=True, help="folder to write config.json and model.safetensors to")
    parser.add_argument("--tokenizer", default=None,
                        help="also save a DBetaProcessor with this T5 tokenizer (name or path, e.g. google/flan-t5-base)")
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
    processor = None
    if args.tokenizer:
        from .processing_dbeta import DBetaProcessor

        processor = DBetaProcessor.from_tokenizer(args.tokenizer)
        processor.save_pretrained(output_dir)
        logger.info("saved a DBetaProcessor with tokenizer %s", args.tokenizer)
    if args.push_to_hub:
        model.push_to_hub(args.push_to_hub)
        if processor is not None:
            processor.push_to_hub(args.push_to_hub)
        logger.info("pushed to https://huggingface.co/%s", args.push_to_hub)
    return 0


if __name__ == "__main__":
    sys.exit(main())
