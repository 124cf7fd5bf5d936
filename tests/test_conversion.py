"""Weight compatibility with the official D-BETA checkpoint format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dbeta_hf import DBetaConfig, DBetaForPreTraining, DBetaModel
from dbeta_hf.conversion.convert_original_checkpoint import (
    CheckpointConversionError,
    convert_original_checkpoint,
    rename_original_state_dict,
)

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"
KEYS_TSV = Path(__file__).parent / "fixtures" / "official_state_dict_keys.tsv"
ATOL = 1e-5


@pytest.fixture(scope="module")
def expected():
    return load_file(PARITY / "expected.safetensors")


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    cmd = [
        sys.executable, "-m", "dbeta_hf.conversion.convert_original_checkpoint",
        "--checkpoint", str(PARITY / "checkpoint.pt"),
        "--original-config", str(PARITY / "config.json"),
        "--text-config", str(PARITY / "text_config.json"),
        "--output-dir", str(out),
        "--lead-order", "standard", "--input-normalization", "none",  # the diagnostic is tested elsewhere
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""} | dict(__import__("os").environ))
    assert result.returncode == 0, result.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    return out


@pytest.fixture(scope="module")
def pretraining_model(converted_dir):
    return DBetaForPreTraining.from_pretrained(converted_dir).eval()


def _close(actual, reference, atol=ATOL):
    assert actual.shape == reference.shape, (actual.shape, reference.shape)
    diff = (actual.float() - reference.float()).abs().max().item()
    assert diff <= atol, f"max abs difference {diff}"


def test_eval_features_match_official(converted_dir, expected):
    model = DBetaModel.from_pretrained(converted_dir).eval()
    ecg, ids, mask = expected["inputs.ecg"], expected["inputs.input_ids"], expected["inputs.attention_mask"]
    with torch.no_grad():
        _close(model.get_ecg_features(ecg), expected["eval.ecg_features"])
        _close(model.get_text_features(ids, mask), expected["eval.text_features"])
        out = model(ecg_values=ecg, input_ids=ids, attention_mask=mask)
    _close(out.ecg_embeds, expected["eval.uni_modal_ecg_feats"])
    _close(out.text_embeds, expected["eval.uni_modal_text_feats"])
    _close(out.multimodal_text_hidden_states, expected["eval.multi_modal_text_feats"])
    _close(out.multimodal_ecg_hidden_states, expected["eval.multi_modal_ecg_feats"])
    _close(out.multimodal_embeds, expected["eval.multi_modal_cls_feats"])


def test_eval_matching_logits_match_official(pretraining_model, expected):
    with torch.no_grad():
        out = pretraining_model(expected["inputs.ecg"], expected["inputs.input_ids"], expected["inputs.attention_mask"],
                                apply_ecg_mask=False)
    _close(out.etm_logits, expected["eval.etm_logits"])
    assert out.mem_logits is None and out.mem_loss is None


def test_masked_pretraining_pass_matches_official(pretraining_model, expected):
    with torch.no_grad():
        out = pretraining_model(
            expected["inputs.ecg"],
            expected["pretrain.masked_input_ids"],
            expected["inputs.attention_mask"],
            mlm_labels=expected["pretrain.mlm_labels"],
            match_labels=expected["pretrain.is_aligned"].long(),
            noise=expected["pretrain.noise"],
        )
    _close(out.mem_mask, expected["pretrain.mem_mask"], 0)
    assert torch.equal(out.mem_ids_restore, expected["pretrain.mem_ids_restore"])
    _close(out.ecg_embeds, expected["pretrain.uni_modal_ecg_feats"])
    _close(out.text_embeds, expected["pretrain.uni_modal_text_feats"])
    _close(out.mlm_logits, expected["pretrain.mlm_logits"])
    _close(out.mem_logits, expected["pretrain.mem_logits"])
    _close(out.etm_logits, expected["pretrain.etm_logits"])
    for name, key in (("mlm_loss", "loss_mlm"), ("mem_loss", "loss_mem_norm_pix"), ("etm_loss", "loss_etm"),
                      ("ets_loss", "loss_ets"), ("loss", "loss_total_norm_pix")):
        value, reference = getattr(out, name).item(), expected[f"pretrain.{key}"].item()
        assert value == pytest.approx(reference, rel=1e-5), name


def test_mem_target_and_raw_loss_match_official(pretraining_model, expected):
    from dbeta_hf import losses

    target = losses.mem_target(expected["inputs.ecg"], 312, 16, normalize=True)
    _close(target, expected["pretrain.mem_target_norm_pix"])
    raw = losses.mem_target(expected["inputs.ecg"], 312, 16, normalize=False)
    loss_raw = losses.mem_loss(expected["pretrain.mem_logits"], raw, expected["pretrain.mem_mask"])
    assert loss_raw.item() == pytest.approx(expected["pretrain.loss_mem_raw"].item(), rel=1e-5)


def test_converted_model_loads_with_auto_classes(converted_dir):
    from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

    assert isinstance(AutoConfig.from_pretrained(converted_dir), DBetaConfig)
    assert type(AutoModel.from_pretrained(converted_dir)) is DBetaModel
    assert type(AutoModelForPreTraining.from_pretrained(converted_dir)) is DBetaForPreTraining


def _official_shapes():
    shapes = {}
    for line in KEYS_TSV.read_text().splitlines():
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return shapes


OFFICIAL_CONFIG = {"model": {
    "_name": "D-BETA", "all_gather": False, "normalize": False, "filter": False, "data": "", "args": None,
    "encoder_layers": 8, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "layer_norm_first": False, "lead_masking": 0.5, "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "dropout_input": 0.1, "dropout_features": 0.1,
    "apply_mask": False, "mask_length": 10, "mask_prob": 0.0, "extractor_mode": "default",
    "conv_feature_layers": "[(256, 2, 2)] * 4", "in_d": 12, "conv_bias": False, "feature_grad_mult": 1.0,
    "conv_pos": 128, "conv_pos_groups": 16, "vocab_size": 32128, "hidden_dim": 768, "num_layers": 6, "num_heads": 12,
    "drop_rate": 0.1, "num_top_layer": 6, "mem_layer": 3, "mem_prob": 0.75, "mem_decoder_hidden_dim": 384,
    "mem_decoder_num_layers": 4, "mem_decoder_num_heads": 6, "max_text_size": 256}}


def test_full_size_official_state_dict_converts_key_for_key(tmp_path):
    import json

    shapes = _official_shapes()
    assert len(shapes) == 645
    # Distinct values per key (stride-0 views keep the file small); mask_emb is the extra training-time key
    # that the official loader deletes.
    state_dict = {k: torch.full((1,), float(i)).expand(shape) if shape else torch.tensor(float(i))
                  for i, (k, shape) in enumerate(shapes.items())}
    state_dict["ecg_encoder.mask_emb"] = torch.zeros(768)
    state_dict["language_encoder.encoder.embed_tokens.weight"] = state_dict["language_encoder.shared.weight"]
    torch.save({"model": state_dict}, tmp_path / "full.pt")
    (tmp_path / "config.json").write_text(json.dumps(OFFICIAL_CONFIG))
    model = convert_original_checkpoint(tmp_path / "full.pt", tmp_path / "config.json")
    assert sum(p.numel() for p in model.parameters()) == 321_387_330
    converted = model.state_dict()
    assert len(converted) == 645
    renamed = rename_original_state_dict(state_dict)
    assert set(renamed) == set(converted)  # every key used, nothing missing
    for key, value in renamed.items():  # and every tensor landed where it belongs
        assert converted[key].flatten()[0].item() == value.flatten()[0].item(), key


def test_official_config_round_trip():
    import json

    original = json.loads((PARITY / "config.json").read_text())
    config = DBetaConfig.from_original_config(original)
    assert config.ecg_config.encoder_layers == 2 and config.ecg_config.conv_feature_layers == [[64, 2, 2]] * 4
    assert config.text_config.d_model == 768  # Flan-T5-base when no text config is given
    assert config.num_fusion_layers == 2 and config.mem_layer == 1 and config.vocab_size == 1000
    assert not hasattr(config, "max_text_length")  # max_text_size is the collator's (its default max_length=254)
    # training switches without an official field get the official behaviour (per-GPU ETS, MLM/MEM on every row)
    assert config.ets_global_batch is False and config.mlm_mem_on_matched_only is False
    assert DBetaConfig.from_original_config(original, ets_global_batch=True).ets_global_batch is True


def test_missing_and_mismatched_keys_are_listed(tmp_path):
    state = torch.load(PARITY / "checkpoint.pt", weights_only=True)["model"]
    del state["itm_head.fc.bias"]
    state["mlm_head.bias"] = torch.zeros(7)
    state["something.else"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointConversionError) as err:
        convert_original_checkpoint(tmp_path / "bad.pt", PARITY / "config.json", PARITY / "text_config.json")
    message = str(err.value)
    assert "missing (1)" in message and "etm_head.fc.bias" in message  # official itm_head, renamed
    assert "unexpected (1)" in message and "model.something.else" in message
    assert "mlm_head.bias: checkpoint (7,) vs model (1000,)" in message


def test_wrong_text_config_is_an_error_not_random_weights():
    with pytest.raises(CheckpointConversionError, match="shape mismatch"):
        convert_original_checkpoint(PARITY / "checkpoint.pt", PARITY / "config.json")  # defaults to Flan-T5-base


def test_pickled_objects_need_explicit_permission(tmp_path):
    state = torch.load(PARITY / "checkpoint.pt", weights_only=True)["model"]
    torch.save({"model": state, "cfg": Path("not-a-tensor")}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointConversionError, match="--allow-unsafe-pickle"):
        convert_original_checkpoint(tmp_path / "unsafe.pt", PARITY / "config.json", PARITY / "text_config.json")
    model = convert_original_checkpoint(tmp_path / "unsafe.pt", PARITY / "config.json", PARITY / "text_config.json",
                                        allow_unsafe_pickle=True)
    assert isinstance(model, DBetaForPreTraining)


def test_cli_reports_errors(tmp_path, capsys):
    from dbeta_hf.conversion.convert_original_checkpoint import main

    code = main(["--checkpoint", str(tmp_path / "absent.pt"), "--original-config", str(PARITY / "config.json"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_saves_a_processor_next_to_the_model(tmp_path, tiny_tokenizer_path):
    from transformers import AutoProcessor

    from dbeta_hf import DBetaProcessor
    from dbeta_hf.conversion.convert_original_checkpoint import main

    code = main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                 "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(tmp_path),
                 "--tokenizer", str(tiny_tokenizer_path), "--lead-order", "mimic", "--input-normalization", "none"])
    assert code == 0
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, DBetaProcessor)
    assert processor.tokenizer.convert_tokens_to_ids("<extra_id_0>") == 400
    assert processor.feature_extractor.lead_order == "mimic" and processor.feature_extractor.input_normalization == "none"
    assert isinstance(DBetaForPreTraining.from_pretrained(tmp_path), DBetaForPreTraining)
