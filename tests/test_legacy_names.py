"""Folders saved before the fairseq leftovers were renamed (mim_head, itm_head, index-named conv Sequentials, CLS and
ETS scale outside their modules, in_d, num_top_layer, collator settings in config.json) still load, with identical
outputs, and are re-saved with the current names."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from dbeta_hf import DBetaConfig, DBetaECGModel, DBetaForECGClassification, DBetaForPreTraining, DBetaModel
from dbeta_hf.pretraining.recipes import tiny_config


def old_name(key: str, extractor_mode: str) -> str:
    """Current parameter name -> the name earlier versions of the package saved."""
    norm = r"\1.2.1." if extractor_mode == "layer_norm" else r"\1.2."
    for pattern, replacement in (
        (r"^mem_head\.", "mim_head."), (r"^etm_head\.", "itm_head."), (r"^logit_", "ets_loss_fn.logit_"),
        (r"ecg_encoder\.class_embedding$", "class_embedding"),
        (r"(conv_layers\.\d+)\.conv\.", r"\1.0."), (r"(conv_layers\.\d+)\.layer_norm\.", norm),
        (r"conv_pos\.conv\.", "conv_pos.pos_conv.0."),
    ):
        key = re.sub(pattern, replacement, key)
    return key


def write_legacy_folder(model, path, extractor_mode):
    model.save_pretrained(path)
    state = load_file(path / "model.safetensors")
    old = {old_name(k, extractor_mode): v for k, v in state.items()}
    assert "mim_head.mask_token" in old and "model.class_embedding" in old and "ets_loss_fn.logit_bias" in old
    assert any(".conv_layers.0.0.weight" in k for k in old) and any("pos_conv.0." in k for k in old)
    save_file(old, path / "model.safetensors", metadata={"format": "pt"})
    return set(state)
    config = json.loads((path / "config.json").read_text())
    config["num_top_layer"] = config.pop("num_fusion_layers")
    config["ecg_config"]["in_d"] = config["ecg_config"].pop("num_leads")
    config.update(mlm_probability=0.25, lead_mask_prob=0.5, negative_fraction=0.5, max_text_length=254,
                  mlm_mask_token="<extra_id_0>", ets_same_report_positives=False)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("extractor_mode", ["default", "layer_norm"])
def test_folder_with_legacy_names_loads_with_identical_outputs(tmp_path, extractor_mode):
    torch.manual_seed(0)
    config = tiny_config(ets_learnable_scale=True, ets_learnable_bias=True, ets_logit_bias_init=-1.0,
                         ecg_kwargs={"extractor_mode": extractor_mode})
    model = DBetaForPreTraining(config).eval()
    current_keys = write_legacy_folder(model, tmp_path / "old", extractor_mode)

    loaded = DBetaForPreTraining.from_pretrained(tmp_path / "old").eval()
    assert loaded.config.num_fusion_layers == config.num_fusion_layers and loaded.config.ecg_config.num_leads == 12
    assert not hasattr(loaded.config, "mlm_probability")  # collator settings are dropped (with a warning)
    ecg = torch.randn(2, 12, 5000, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    mask = (ids != 0).long()
    noise = torch.rand(2, config.num_ecg_tokens, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model(ecg, ids, mask, noise=noise, return_loss=True)
        b = loaded(ecg, ids, mask, noise=noise, return_loss=True)
    for name in ("loss", "mlm_logits", "mem_logits", "etm_logits", "ecg_embeds", "text_embeds"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name

    # the other heads load the same folder (the ECG-only ones without complaining about the pretraining heads)
    with torch.no_grad():
        features = model.get_ecg_features(ecg)
        assert torch.equal(DBetaModel.from_pretrained(tmp_path / "old").eval().get_ecg_features(ecg), features)
        assert torch.equal(DBetaECGModel.from_pretrained(tmp_path / "old").eval().get_ecg_features(ecg), features)
    DBetaForECGClassification.from_pretrained(tmp_path / "old", num_labels=2)

    # a re-save writes the current names
    loaded.save_pretrained(tmp_path / "new")
    assert set(load_file(tmp_path / "new" / "model.safetensors")) == current_keys
    saved_config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert "num_fusion_layers" in saved_config and "num_top_layer" not in saved_config
    assert "num_leads" in saved_config["ecg_config"] and "in_d" not in saved_config["ecg_config"]


def test_old_config_keys_map_to_the_new_ones():
    config = DBetaConfig(num_top_layer=4, ecg_config={"in_d": 8})
    assert config.num_fusion_layers == 4 and config.ecg_config.num_leads == 8
    assert config.num_top_layer == 4 and config.ecg_config.in_d == 8  # the official names stay readable
    assert config.hidden_size == config.hidden_dim
    with pytest.raises(ValueError, match="mem_layer"):
        DBetaConfig(num_top_layer=2, mem_layer=3)  # validated against the mapped value
