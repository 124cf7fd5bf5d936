"""Weight compatibility with the official D-BETA checkpoint format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dbeta_hf import DBetaConfig, DBetaForPreTraining, DBetaModel
from dbeta_hf.conversion.convert_original_checkpoint import (
    ORIGINAL_KEY_MAPPING,
    CheckpointConversionError,
    convert_original_checkpoint,
    from_original_config,
    rename_original_key,
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
    _close(out.fusion_text_hidden_states, expected["eval.multi_modal_text_feats"])
    _close(out.fusion_ecg_hidden_states, expected["eval.multi_modal_ecg_feats"])
    _close(out.fusion_embeds, expected["eval.multi_modal_cls_feats"])
    # the official ETS logits: scale 1, no bias, raw dot product of the uni-modal features
    _close(out.logits_per_ecg, expected["eval.uni_modal_ecg_feats"] @ expected["eval.uni_modal_text_feats"].T, 1e-4)
    assert torch.equal(out.logits_per_text, out.logits_per_ecg.T)


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
    assert len(converted) == 646  # the official keys and the fixed ECG-text scale, which the config sets
    renamed = rename_original_state_dict(state_dict)
    assert set(renamed) | {"model.logit_scale"} == set(converted)  # every key used, nothing missing
    for key, value in renamed.items():  # and every tensor landed where it belongs
        assert converted[key].flatten()[0].item() == value.flatten()[0].item(), key
    assert converted["model.logit_scale"].tolist() == [0.0] and "model.logit_bias" not in converted  # scale 1, no bias


def test_official_config_round_trip():
    import json

    original = json.loads((PARITY / "config.json").read_text())
    original["model"]["mem_prob"] = 0.6
    config = from_original_config(original)
    assert isinstance(config, DBetaConfig)
    assert config.ecg_config.encoder_layers == 2 and config.ecg_config.conv_feature_layers == [[64, 2, 2]] * 4
    assert config.ecg_config.num_leads == 12  # official in_d
    assert config.text_config.d_model == 768  # Flan-T5-base when no text config is given
    assert config.num_fusion_layers == 2 and config.mem_layer == 1 and config.vocab_size == 1000  # num_top_layer
    assert config.mem_mask_ratio == 0.6  # official mem_prob
    assert not hasattr(config, "max_text_length")  # max_text_size is the collator's (its default max_length=254)
    # the official ETS logits: fixed scale 1, no bias, raw dot product
    assert (config.ets_logit_scale_init, config.ets_learnable_scale, config.ets_logit_bias_init) == (1.0, False, None)
    assert config.ets_normalize_embeddings is False
    assert from_original_config(original, text_pooling="mean").text_pooling == "mean"
    # the official field names are the converter's: a config refuses them instead of silently keeping its default
    for name, value in (("mem_prob", 0.6), ("num_top_layer", 2)):
        with pytest.raises(ValueError, match=rf"{name} -> "):
            DBetaConfig(**{name: value})
    with pytest.raises(ValueError, match="in_d -> num_leads"):
        DBetaConfig(ecg_config={"in_d": 8})


def test_official_key_map_covers_every_official_key_with_a_new_name():
    """Every official key has a rule in the converter's map, the rules use the package's names (text tower `text`,
    no `multi_modal` / `unimodal` / `language` / fairseq index names), and distinct keys stay distinct."""
    official = list(_official_shapes())
    renamed = {key: rename_original_key(key) for key in official}
    assert len(set(renamed.values())) == len(official)  # (that they are the model's keys: the full-size test above)
    for new in renamed.values():
        assert not any(word in new for word in ("language", "multi_modal", "unimodal", "mim_", "itm_", "pos_conv")), new
        assert new.startswith(("model.", "mlm_head.", "mem_head.", "etm_head.")), new
    expected = {
        "language_encoder.encoder.block.0.layer.0.SelfAttention.q.weight": "model.text_encoder.encoder.block.0.layer.0.SelfAttention.q.weight",
        "multi_modal_language_proj.weight": "model.text_projection.weight",
        "multi_modal_ecg_proj.bias": "model.ecg_projection.bias",
        "multi_modal_language_layers.5.crossattention.self.key.weight": "model.text_fusion_layers.5.crossattention.self.key.weight",
        "multi_modal_ecg_layers.0.output.LayerNorm.bias": "model.ecg_fusion_layers.0.output.LayerNorm.bias",
        "multi_modal_language_pooler.dense.weight": "model.text_fusion_pooler.dense.weight",
        "multi_modal_ecg_pooler.dense.bias": "model.ecg_fusion_pooler.dense.bias",
        "unimodal_language_pooler.dense.weight": "model.text_pooler.dense.weight",
        "unimodal_ecg_pooler.dense.weight": "model.ecg_pooler.dense.weight",
        "class_embedding": "model.ecg_encoder.class_embedding",
        "ecg_encoder.feature_extractor.conv_layers.0.0.weight": "model.ecg_encoder.feature_extractor.conv_layers.0.conv.weight",
        "ecg_encoder.feature_extractor.conv_layers.0.2.weight": "model.ecg_encoder.feature_extractor.conv_layers.0.layer_norm.weight",
        "ecg_encoder.conv_pos.pos_conv.0.weight_g": "model.ecg_encoder.conv_pos.conv.parametrizations.weight.original0",
        "ecg_encoder.conv_pos.pos_conv.0.weight_v": "model.ecg_encoder.conv_pos.conv.parametrizations.weight.original1",
        "ecg_encoder.conv_pos.pos_conv.0.bias": "model.ecg_encoder.conv_pos.conv.bias",
        "modality_type_embeddings.weight": "model.modality_type_embeddings.weight",
        "mim_head.decoder.resblocks.0.attn.in_proj_weight": "mem_head.decoder.resblocks.0.attn.in_proj_weight",
        "itm_head.fc.weight": "etm_head.fc.weight",
        "mlm_head.transform.LayerNorm.weight": "mlm_head.transform.LayerNorm.weight",
    }
    for old, new in expected.items():
        assert rename_original_key(old) == new, old
    # the layer_norm extractor mode nests its LayerNorm one level deeper
    assert rename_original_key("ecg_encoder.feature_extractor.conv_layers.3.2.1.bias") == (
        "model.ecg_encoder.feature_extractor.conv_layers.3.layer_norm.bias")
    assert rename_original_key("something.else") == "something.else"  # unknown keys stay as they are: unexpected
    # every rule is used by some official key (none is dead)
    used = {next(p for p in ORIGINAL_KEY_MAPPING if re.match(p, key)) for key in official}
    assert used | {r"^ecg_encoder\.feature_extractor\.conv_layers\.(\d+)\.2\.1\."} == set(ORIGINAL_KEY_MAPPING)


def test_layer_norm_extractor_checkpoint_converts(tmp_path):
    """An official checkpoint in `extractor_mode="layer_norm"` (LayerNorm after every conv, nested in a Sequential)."""
    import json

    state = torch.load(PARITY / "checkpoint.pt", weights_only=True)["model"]
    config = json.loads((PARITY / "config.json").read_text())
    config["model"]["extractor_mode"] = "layer_norm"
    (tmp_path / "config.json").write_text(json.dumps(config))
    state = {k: v for k, v in state.items() if not k.startswith("ecg_encoder.feature_extractor.conv_layers.0.2.")}
    for i in range(4):
        state[f"ecg_encoder.feature_extractor.conv_layers.{i}.2.1.weight"] = torch.full((64,), float(i + 1))
        state[f"ecg_encoder.feature_extractor.conv_layers.{i}.2.1.bias"] = torch.full((64,), -float(i))
    torch.save({"model": state}, tmp_path / "ln.pt")
    model = convert_original_checkpoint(tmp_path / "ln.pt", tmp_path / "config.json", PARITY / "text_config.json")
    layers = model.model.ecg_encoder.feature_extractor.conv_layers
    assert [layer.layer_norm.weight[0].item() for layer in layers] == [1.0, 2.0, 3.0, 4.0]
    assert [layer.layer_norm.bias[0].item() for layer in layers] == [0.0, -1.0, -2.0, -3.0]


def test_zero_dim_logit_scale_becomes_shape_one():
    import json

    from dbeta_hf.conversion.convert_original_checkpoint import add_weights_not_in_original

    original = json.loads((PARITY / "config.json").read_text())
    text_config = json.loads((PARITY / "text_config.json").read_text())
    model = DBetaForPreTraining(from_original_config(original, text_config, ets_learnable_scale=True,
                                                     ets_logit_bias_init=-1.0, ets_learnable_bias=True))
    completed = add_weights_not_in_original({"model.logit_scale": torch.tensor(0.5)}, model)
    assert completed["model.logit_scale"].shape == (1,) and completed["model.logit_scale"].item() == 0.5
    assert completed["model.logit_bias"].tolist() == [-1.0]  # taken from the config


@pytest.mark.parametrize("learnable", [False, True], ids=["buffers", "parameters"])
def test_a_save_with_0_dim_ets_scale_and_bias_loads_as_shape_one(tmp_path, learnable):
    """Saves made before the ETS scale and bias had shape (1,) hold 0-dim values: they load (as shape (1,), with
    their values), and the model saves them back with shape (1,)."""
    from safetensors.torch import load_file, save_file

    from dbeta_hf import DBetaModel
    from dbeta_hf.pretraining.recipes import tiny_config

    config = tiny_config(ets_learnable_scale=learnable, ets_learnable_bias=learnable, ets_logit_bias_init=-5.0)
    model = DBetaModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(0.7)
        model.logit_bias.fill_(-3.0)
    model.save_pretrained(tmp_path / "old")
    state = load_file(tmp_path / "old" / "model.safetensors")
    assert {key: tuple(state[key].shape) for key in ("logit_scale", "logit_bias")} == {"logit_scale": (1,),
                                                                                      "logit_bias": (1,)}
    state.update({key: state[key].reshape(()) for key in ("logit_scale", "logit_bias")})  # the old 0-dim format
    save_file(state, tmp_path / "old" / "model.safetensors", metadata={"format": "pt"})

    loaded = DBetaModel.from_pretrained(tmp_path / "old")
    assert loaded.logit_scale.shape == (1,) and loaded.logit_scale.item() == pytest.approx(0.7)
    assert loaded.logit_bias.shape == (1,) and loaded.logit_bias.item() == -3.0
    loaded.save_pretrained(tmp_path / "new")
    resaved = load_file(tmp_path / "new" / "model.safetensors")
    assert resaved["logit_scale"].shape == (1,) and resaved["logit_bias"].shape == (1,)


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
    assert "unexpected (1)" in message and "something.else" in message
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
