"""Behaviour of the D-BETA model classes on tiny configurations."""

from __future__ import annotations

import copy

import pytest
import torch

from dbeta_hf import DBetaConfig, DBetaECGConfig, DBetaECGModel, DBetaForECGClassification, DBetaForPreTraining, DBetaModel
from dbeta_hf.modeling_dbeta import DBetaECGEncoderLayer, random_masking
from dbeta_hf.pretraining.recipes import tiny_config

NUM_SAMPLES = 5000


def no_dropout(config: DBetaConfig) -> DBetaConfig:
    config = copy.deepcopy(config)
    e = config.ecg_config
    e.dropout = e.attention_dropout = e.activation_dropout = e.dropout_input = 0.0
    config.drop_rate = 0.0
    config.text_config.dropout_rate = 0.0
    return config


def make_inputs(batch=3, length=9, vocab=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    ecg = torch.randn(batch, 12, NUM_SAMPLES, generator=g) * 0.3
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    ids[:, -1] = 1
    mask = torch.ones(batch, length, dtype=torch.long)
    return ecg, ids, mask


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DBetaForPreTraining(tiny_config()).eval()


def test_output_shapes(model):
    ecg, ids, mask = make_inputs()
    labels = ids.clone()
    labels[:, 1::2] = -100
    out = model(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]))
    assert out.mlm_logits.shape == (3, 9, 500)
    assert out.mem_logits.shape == (3, 312, 12, 16)
    assert out.mem_mask.shape == (3, 312) and out.mem_mask.sum(1).tolist() == [312 - 78] * 3
    assert out.etm_logits.shape == (3, 2)
    assert out.ecg_embeds.shape == out.text_embeds.shape == (3, 32)
    for name in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss"):
        assert torch.isfinite(getattr(out, name))
    total = out.mlm_loss + out.mem_loss + out.etm_loss + out.ets_loss
    assert torch.allclose(out.loss, total)
    base = model.model(ecg_values=ecg, input_ids=ids, attention_mask=mask)
    assert base.fusion_text_hidden_states.shape == (3, 9, 32)
    assert base.fusion_ecg_hidden_states.shape == (3, 313, 32)
    assert base.fusion_embeds.shape == (3, 64)


def test_losses_without_labels_are_omitted(model):
    ecg, ids, mask = make_inputs()
    assert model(ecg, ids, mask).loss is None  # no label: no loss unless return_loss=True (as CLIP)
    out = model(ecg, ids, mask, return_loss=True)
    assert out.mlm_loss is None and out.etm_loss is None
    assert out.mem_loss is not None and out.ets_loss is not None
    # ETS assumes every pair matches when match_labels is None
    from dbeta_hf.losses import ets_loss

    assert torch.allclose(out.ets_loss, ets_loss(out.ecg_embeds, out.text_embeds, torch.ones(3)))
    assert torch.allclose(out.loss, out.mem_loss + out.ets_loss)


def test_loss_weights(model):
    ecg, ids, mask = make_inputs()
    labels = ids.clone()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(1))
    cfg = copy.deepcopy(model.config)
    cfg.mlm_loss_weight, cfg.mem_loss_weight, cfg.etm_loss_weight, cfg.ets_loss_weight = 0.5, 2.0, 0.0, 3.0
    weighted = DBetaForPreTraining(cfg).eval()
    weighted.load_state_dict(model.state_dict())
    out = weighted(ecg, ids, mask, mlm_labels=labels, match_labels=torch.ones(3, dtype=torch.long), noise=noise)
    assert torch.allclose(out.loss, 0.5 * out.mlm_loss + 2.0 * out.mem_loss + 3.0 * out.ets_loss)


def test_masking_follows_noise(model):
    noise = torch.rand(2, 312, generator=torch.Generator().manual_seed(3))
    ids_keep, mask, ids_restore = random_masking(312, 0.75, noise)
    expected_keep = torch.argsort(noise, dim=1)[:, :78]
    assert torch.equal(ids_keep, expected_keep)
    assert torch.equal(mask.bool(), ~torch.zeros_like(mask, dtype=torch.bool).scatter(1, expected_keep, True))
    ecg, ids, m = make_inputs(batch=2)
    a = model(ecg, ids, m, noise=noise)
    b = model(ecg, ids, m, noise=noise)
    assert torch.equal(a.mem_logits, b.mem_logits)
    assert torch.equal(a.mem_mask, mask)
    c = model(ecg, ids, m, noise=torch.rand(2, 312, generator=torch.Generator().manual_seed(4)))
    assert not torch.equal(a.mem_mask, c.mem_mask)
    with pytest.raises(ValueError, match="noise must have shape"):
        model(ecg, ids, m, noise=torch.rand(2, 100))


def test_unmasked_pass_equals_base_model(model):
    ecg, ids, mask = make_inputs()
    out = model(ecg, ids, mask, apply_ecg_mask=False)
    base = model.model(ecg_values=ecg, input_ids=ids, attention_mask=mask)
    assert out.mem_logits is None and out.mem_loss is None
    assert torch.allclose(out.etm_logits, model.etm_head(base.fusion_embeds), atol=1e-6)
    assert torch.allclose(out.ecg_embeds, model.get_ecg_features(ecg), atol=1e-6)


def test_padded_batch_equals_each_text_alone(model):
    ecg, ids, _ = make_inputs(batch=2, length=9)
    short = ids[1, :5].clone()
    short[-1] = 1
    padded = torch.zeros(2, 9, dtype=torch.long)
    padded[0] = ids[0]
    padded[1, :5] = short
    mask = (padded != 0).long()
    with torch.no_grad():
        batch_text = model.model.get_text_features(padded, mask)
        alone = model.model.get_text_features(short[None], torch.ones(1, 5, dtype=torch.long))
        assert torch.allclose(batch_text[1], alone[0], atol=1e-5)
        out = model.model(ecg_values=ecg, input_ids=padded, attention_mask=mask)
        single = model.model(ecg_values=ecg[1:], input_ids=short[None], attention_mask=torch.ones(1, 5, dtype=torch.long))
    assert torch.allclose(out.fusion_text_hidden_states[1, :5], single.fusion_text_hidden_states[0], atol=1e-5)
    assert torch.allclose(out.fusion_ecg_hidden_states[1], single.fusion_ecg_hidden_states[0], atol=1e-5)
    assert torch.allclose(out.fusion_embeds[1], single.fusion_embeds[0], atol=1e-5)


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    reloaded = DBetaForPreTraining.from_pretrained(tmp_path).eval()
    text = reloaded.model.text_encoder
    assert text.shared.weight.data_ptr() == text.encoder.embed_tokens.weight.data_ptr()  # tie kept
    ecg, ids, mask = make_inputs()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(ecg, ids, mask, noise=noise, return_loss=True)
        b = reloaded(ecg, ids, mask, noise=noise, return_loss=True)
    for name in ("mlm_logits", "mem_logits", "etm_logits", "ecg_embeds", "text_embeds", "loss"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
    base = DBetaModel.from_pretrained(tmp_path).eval()
    assert torch.equal(base.get_ecg_features(ecg), model.get_ecg_features(ecg))
    tower = DBetaECGModel.from_pretrained(tmp_path).eval()
    assert torch.equal(tower.get_ecg_features(ecg), model.get_ecg_features(ecg))


def test_sdpa_equals_eager(model):
    ecg, ids, mask = make_inputs()
    mask[0, 6:] = 0
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    sdpa = copy.deepcopy(model)
    sdpa.set_attn_implementation("sdpa")
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    assert eager.model.ecg_encoder.encoder.layers[0].self_attn.attn_config._attn_implementation == "eager"
    with torch.no_grad():
        a = sdpa(ecg, ids, mask, noise=noise)
        b = eager(ecg, ids, mask, noise=noise)
    for name in ("mlm_logits", "mem_logits", "etm_logits", "ecg_embeds", "text_embeds"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5), name


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    config = no_dropout(tiny_config())
    plain = DBetaForPreTraining(config).train()
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing_enable()
    assert ckpt.model.ecg_fusion_layers[0].gradient_checkpointing
    ecg, ids, mask = make_inputs()
    labels = ids.clone()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    for m in (plain, ckpt):
        m(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise).loss.backward()
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        if p1.grad is None:
            assert p2.grad is None, name
            continue
        assert torch.allclose(p1.grad, p2.grad, atol=1e-6, rtol=1e-5), name


def test_fast_mlm_path_same_loss_and_gradients():
    torch.manual_seed(0)
    config = no_dropout(tiny_config())
    full = DBetaForPreTraining(config).train()
    fast = copy.deepcopy(full)
    ecg, ids, mask = make_inputs()
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    a = full(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise)
    b = fast(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise, return_mlm_logits=False)
    assert b.mlm_logits is None
    assert torch.allclose(a.mlm_loss, b.mlm_loss, atol=1e-6)
    assert torch.allclose(a.mlm_accuracy, b.mlm_accuracy)
    from dbeta_hf.losses import mlm_positions

    gathered = copy.deepcopy(full)
    c = gathered(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise,
                 return_mlm_logits=False, mlm_positions=mlm_positions(labels))
    assert torch.allclose(a.mlm_loss, c.mlm_loss, atol=1e-6)
    assert torch.allclose(a.mlm_accuracy, c.mlm_accuracy)
    a.loss.backward()
    b.loss.backward()
    c.loss.backward()
    for (name, p1), (_, p2), (_, p3) in zip(full.named_parameters(), fast.named_parameters(), gathered.named_parameters()):
        if p1.grad is not None:
            assert torch.allclose(p1.grad, p2.grad, atol=1e-6, rtol=1e-5), name
            assert torch.allclose(p1.grad, p3.grad, atol=1e-6, rtol=1e-5), name


def test_bf16_autocast_close_to_float32(model):
    ecg, ids, mask = make_inputs()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ecg, ids, mask, noise=noise, return_loss=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ecg, ids, mask, noise=noise, return_loss=True)
    assert torch.isfinite(low.loss)
    rel = (low.ecg_embeds.float() - ref.ecg_embeds).norm() / ref.ecg_embeds.norm()
    assert rel < 5e-2
    assert abs(low.loss.item() - ref.loss.item()) / ref.loss.item() < 5e-2


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_pre_and_post_ln_layers_match_hand_computation(layer_norm_first):
    torch.manual_seed(0)
    cfg = DBetaECGConfig(encoder_embed_dim=16, encoder_attention_heads=2, encoder_ffn_embed_dim=32,
                         layer_norm_first=layer_norm_first, conv_pos_groups=4)
    cfg._attn_implementation = "eager"
    layer = DBetaECGEncoderLayer(cfg).eval()
    x = torch.randn(2, 5, 16)

    def attention(h):
        a = layer.self_attn
        q, k, v = a.q_proj(h), a.k_proj(h), a.v_proj(h)
        split = lambda t: t.view(2, 5, 2, 8).transpose(1, 2)
        w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / 8**0.5, dim=-1)
        return a.out_proj((w @ split(v)).transpose(1, 2).reshape(2, 5, 16))

    ffn = lambda h: layer.fc2(torch.nn.functional.gelu(layer.fc1(h)))
    if layer_norm_first:
        h = x + attention(layer.self_attn_layer_norm(x))
        expected = h + ffn(layer.final_layer_norm(h))
    else:
        h = layer.self_attn_layer_norm(x + attention(x))
        expected = layer.final_layer_norm(h + ffn(h))
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_pre_ln_model_has_final_layer_norm():
    cfg = tiny_config()
    cfg.ecg_config.layer_norm_first = True
    m = DBetaModel(cfg).eval()
    assert m.ecg_encoder.encoder.layer_norm_first
    assert m.get_ecg_features(make_inputs()[0]).shape == (3, 32)


def test_mem_layer_minus_one_uses_last_fusion_output():
    torch.manual_seed(0)
    m = DBetaForPreTraining(tiny_config(mem_layer=-1)).eval()
    captured = {}
    m.mem_head.register_forward_pre_hook(lambda mod, args: captured.__setitem__("x", args[0]))
    ecg, ids, mask = make_inputs()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    m(ecg, ids, mask, noise=noise)
    ecg_hidden = m.model.encode_ecg(ecg, noise=noise, apply_ecg_mask=True).last_hidden_state
    _, last, _ = m.model.fuse(m.model.encode_text(ids, mask), ecg_hidden, mask)
    assert torch.allclose(captured["x"], last)
    # mem_layer=0: the decoder sees the stream before any fusion layer
    m0 = DBetaForPreTraining(tiny_config(mem_layer=0)).eval()
    m0.load_state_dict(m.state_dict())
    captured.clear()
    m0.mem_head.register_forward_pre_hook(lambda mod, args: captured.__setitem__("x", args[0]))
    m0(ecg, ids, mask, noise=noise)
    type_ecg = m0.model.modality_type_embeddings(torch.ones(1, 1, dtype=torch.long))
    assert torch.allclose(captured["x"], ecg_hidden + type_ecg)


@pytest.mark.parametrize(
    "ecg_kwargs, top_kwargs",
    [
        (dict(extractor_mode="layer_norm", conv_bias=True), {}),
        (dict(conv_feature_layers="[(24, 10, 5)] + [(24, 3, 2)] * 2"), {}),  # projection 24 -> 32, 249 tokens
        ({}, dict(hidden_dim=48, num_heads=4)),  # fusion wider than the ECG / text towers
    ],
)
def test_architectural_options(ecg_kwargs, top_kwargs):
    cfg = tiny_config(ecg_kwargs=ecg_kwargs, **top_kwargs)
    m = DBetaForPreTraining(cfg).eval()
    ecg_in, ids, mask = make_inputs()
    out = m(ecg_in, ids, mask, mlm_labels=ids, match_labels=torch.ones(3, dtype=torch.long))
    tokens = cfg.num_ecg_tokens
    assert out.mem_logits.shape == (3, tokens, 12, cfg.mem_patch_size)
    assert out.ecg_embeds.shape == (3, cfg.hidden_dim)
    assert torch.isfinite(out.loss)
    has_proj = cfg.ecg_config.conv_dim != cfg.ecg_config.encoder_embed_dim
    assert (m.model.ecg_encoder.post_extract_proj is not None) == has_proj
    if ecg_kwargs.get("extractor_mode") == "layer_norm":
        assert "model.ecg_encoder.feature_extractor.conv_layers.3.layer_norm.weight" in m.state_dict()
        assert m.model.ecg_encoder.feature_extractor.conv_layers[0].conv.bias is not None


def test_learnable_ets_scale_and_bias():
    cfg = tiny_config(ets_learnable_scale=True, ets_logit_scale_init=10.0, ets_learnable_bias=True, ets_logit_bias_init=-10.0)
    m = DBetaForPreTraining(cfg)
    base = m.model
    assert isinstance(base.logit_scale, torch.nn.Parameter) and isinstance(base.logit_bias, torch.nn.Parameter)
    assert base.logit_scale.shape == base.logit_bias.shape == (1,)  # not 0-dim: DeepSpeed / FSDP broadcast them
    assert base.logit_scale.exp().item() == pytest.approx(10.0) and base.logit_bias.item() == -10.0
    assert {"model.logit_scale", "model.logit_bias"} <= {name for name, _ in m.named_parameters()}
    assert not any(name.startswith("logit_") for name, _ in m.named_parameters())  # one pair, on the base model
    ecg, ids, mask = make_inputs()
    m(ecg, ids, mask, return_loss=True).loss.backward()
    assert base.logit_scale.grad.shape == (1,) and base.logit_bias.grad is not None
    # official: a fixed scale of 1 and no bias; the scale is a persistent buffer, saved with the weights
    official = DBetaModel(tiny_config())
    assert official.logit_bias is None and "logit_scale" not in dict(official.named_parameters())
    assert official.state_dict()["logit_scale"].tolist() == [0.0]


def test_logit_scale_and_bias_are_saved_and_loaded_with_their_values(tmp_path):
    """A trained scale and bias load with their values, also into a model whose config fixes them (then buffers)."""
    torch.manual_seed(0)
    cfg = tiny_config(ets_learnable_scale=True, ets_learnable_bias=True, ets_logit_bias_init=-1.0)
    m = DBetaForPreTraining(cfg)
    with torch.no_grad():
        m.model.logit_scale.fill_(0.7)
        m.model.logit_bias.fill_(-3.5)
    m.save_pretrained(tmp_path)
    for fixed in (False, True):
        overrides = dict(ets_learnable_scale=False, ets_learnable_bias=False) if fixed else {}
        loaded = DBetaModel.from_pretrained(tmp_path, **overrides)
        assert loaded.logit_scale.tolist() == pytest.approx([0.7]) and loaded.logit_bias.tolist() == [-3.5]
        assert isinstance(loaded.logit_scale, torch.nn.Parameter) != fixed


def test_bad_ecg_inputs_raise_clear_errors(model):
    _, ids, mask = make_inputs()
    base = model.model
    with pytest.raises(ValueError, match="has 8 leads but the model expects 12"):
        base.get_ecg_features(torch.zeros(2, 8, NUM_SAMPLES))
    with pytest.raises(ValueError, match="without a batch dimension"):
        base.get_ecg_features(torch.zeros(12, NUM_SAMPLES))
    with pytest.raises(ValueError, match=r"transpose the last two dims"):
        base.get_ecg_features(torch.zeros(2, NUM_SAMPLES, 12))
    with pytest.raises(ValueError, match="too few for the conv stack"):
        base.get_ecg_features(torch.zeros(2, 12, 10))
    with pytest.raises(ValueError, match="input_ids must be a"):
        base.get_text_features(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="needs both ecg_values and input_ids"):
        base(ecg_values=torch.zeros(1, 12, NUM_SAMPLES))


def test_config_validation():
    with pytest.raises(ValueError, match="mem_layer"):
        tiny_config(mem_layer=5)
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(hidden_dim=30)
    with pytest.raises(ValueError, match="extractor_mode"):
        DBetaECGConfig(extractor_mode="group")
    with pytest.raises(ValueError, match="no ECG token"):
        DBetaConfig(ecg_config=DBetaECGConfig(num_samples=8))


def test_auto_classes_and_config_round_trip(tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

    cfg = tiny_config()
    DBetaModel(cfg).save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DBetaConfig) and isinstance(loaded.ecg_config, DBetaECGConfig)
    assert loaded.ecg_config.conv_feature_layers == cfg.ecg_config.conv_feature_layers
    assert loaded.text_config.d_model == 32 and loaded.num_fusion_layers == cfg.num_fusion_layers
    assert type(AutoModel.from_pretrained(tmp_path)) is DBetaModel
    assert type(AutoModelForPreTraining.from_config(cfg)) is DBetaForPreTraining


def test_from_text_pretrained_loads_t5_weights(tmp_path):
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(vocab_size=500, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 feed_forward_proj="gated-gelu"))
    t5.save_pretrained(tmp_path / "t5")
    ecg_cfg = tiny_config().ecg_config
    m = DBetaForPreTraining.from_text_pretrained(str(tmp_path / "t5"), ecg_config=ecg_cfg, hidden_dim=32, num_heads=4,
                                                 num_fusion_layers=1, mem_layer=0, mem_decoder_hidden_dim=16,
                                                 mem_decoder_num_layers=1, mem_decoder_num_heads=2)
    assert isinstance(m, DBetaForPreTraining) and m.config.vocab_size == 500
    loaded = m.model.text_encoder.state_dict()
    for key, value in t5.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert m.mlm_head.decoder.weight.shape == (500, 32)


def test_classification_head_and_losses(tmp_path):
    torch.manual_seed(0)
    pre = DBetaForPreTraining(tiny_config()).eval()
    pre.save_pretrained(tmp_path)
    clf = DBetaForECGClassification.from_pretrained(tmp_path, num_labels=3).eval()
    ecg = make_inputs()[0]
    assert torch.equal(clf.model.get_ecg_features(ecg), pre.get_ecg_features(ecg))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    out = clf(ecg, labels=labels)
    assert out.logits.shape == (3, 3)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels))
    clf.freeze_ecg_encoder()
    assert [n for n, p in clf.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]


def test_init_weights_cover_custom_parameters():
    m = DBetaForPreTraining(tiny_config())
    ce = m.model.ecg_encoder.class_embedding
    assert 0.0 <= ce.min().item() and ce.max().item() < 1.0 and ce.std().item() > 0.1  # U[0, 1)
    assert 0.0 < m.mem_head.mask_token.std().item() < 0.05  # N(0, 0.02)
    pe = m.mem_head.decoder_pos_embed.pe[0]
    assert torch.allclose(pe[1, 0], torch.sin(torch.tensor(1.0))) and pe[0, 1].item() == 1.0
    assert torch.count_nonzero(m.mlm_head.bias) == 0


def test_fft_positional_conv_matches_direct_conv():
    torch.manual_seed(0)
    cfg = tiny_config()
    direct = DBetaForPreTraining(no_dropout(cfg)).train()
    fft_cfg = no_dropout(cfg)
    fft_cfg.ecg_config.conv_pos_impl = "fft"
    fast = DBetaForPreTraining(fft_cfg).train()
    fast.load_state_dict(direct.state_dict())
    ecg, ids, mask = make_inputs()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    a = direct(ecg, ids, mask, mlm_labels=ids, match_labels=torch.tensor([1, 0, 1]), noise=noise)
    b = fast(ecg, ids, mask, mlm_labels=ids, match_labels=torch.tensor([1, 0, 1]), noise=noise)
    assert torch.allclose(a.loss, b.loss, rtol=1e-5)
    assert torch.allclose(a.ecg_embeds, b.ecg_embeds, atol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for (name, p1), (_, p2) in zip(direct.named_parameters(), fast.named_parameters()):
        if p1.grad is not None:
            assert torch.allclose(p1.grad, p2.grad, atol=1e-5, rtol=1e-3), name
    with pytest.raises(ValueError, match="conv_pos_impl"):
        DBetaECGConfig(conv_pos_impl="winograd")


def test_init_weights_of_convolutions_follow_the_official_scheme():
    torch.manual_seed(0)
    m = DBetaModel(tiny_config(hidden=64))
    fe = m.ecg_encoder.feature_extractor.conv_layers
    for block in fe:
        w = block.conv.weight
        fan_in = w.shape[1] * w.shape[2]
        assert w.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.1)  # Kaiming normal
    conv = m.ecg_encoder.conv_pos.conv
    v = conv.parametrizations.weight.original1
    g = conv.parametrizations.weight.original0
    assert v.std().item() == pytest.approx((4.0 / (16 * 64)) ** 0.5, rel=0.1)
    assert torch.allclose(g, torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
    assert torch.count_nonzero(conv.bias) == 0


def test_compiled_model_same_loss_and_gradients():
    """torch.compile (graph capture through AOTAutograd; the inductor backend needs a GPU-class toolchain to be fast)."""
    torch.manual_seed(0)
    config = no_dropout(tiny_config())
    eager = DBetaForPreTraining(config).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend="aot_eager")
    ecg, ids, mask = make_inputs()
    labels = ids.clone()
    noise = torch.rand(3, 312, generator=torch.Generator().manual_seed(0))
    a = eager(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise)
    b = compiled(ecg, ids, mask, mlm_labels=labels, match_labels=torch.tensor([1, 0, 1]), noise=noise)
    assert torch.allclose(a.loss, b.loss, atol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for (name, p1), (_, p2) in zip(eager.named_parameters(), compiled_model.named_parameters()):
        if p1.grad is not None:
            assert torch.allclose(p1.grad, p2.grad, atol=1e-5, rtol=1e-4), name


def test_other_lead_count_in_d():
    m = DBetaForPreTraining(tiny_config(ecg_kwargs={"num_leads": 8})).eval()
    _, ids, mask = make_inputs()
    out = m(torch.randn(3, 8, NUM_SAMPLES), ids, mask, return_loss=True)
    assert out.mem_logits.shape == (3, 312, 8, 16) and torch.isfinite(out.mem_loss)
    assert m.model.ecg_encoder.feature_extractor.conv_layers[0].conv.weight.shape[1] == 8
    with pytest.raises(ValueError, match="has 12 leads but the model expects 8"):
        m.get_ecg_features(torch.zeros(1, 12, NUM_SAMPLES))


@pytest.mark.parametrize("return_mlm_logits", [True, False], ids=["full-logits", "gathered"])
def test_mlm_mem_on_matched_only_equals_the_matched_rows_alone(return_mlm_logits):
    """`mlm_mem_on_matched_only=True`: MLM and MEM of a batch with negatives equal those of its matched rows alone;
    the default (False) also scores the negative rows."""
    torch.manual_seed(0)
    model = DBetaForPreTraining(no_dropout(tiny_config())).eval()
    ecg, ids, mask = make_inputs(batch=4)
    labels = torch.full_like(ids, -100)
    labels[:, ::3] = ids[:, ::3]
    noise = torch.rand(4, 312, generator=torch.Generator().manual_seed(0))
    match = torch.tensor([1, 0, 1, 0])
    kwargs = dict(noise=noise, return_mlm_logits=return_mlm_logits)
    mixed = model(ecg, ids, mask, mlm_labels=labels, match_labels=match, mlm_mem_on_matched_only=True, **kwargs)
    keep = match.bool()
    alone = model(ecg[keep], ids[keep], mask[keep], mlm_labels=labels[keep], match_labels=match[keep], noise=noise[keep],
                  return_mlm_logits=return_mlm_logits, mlm_mem_on_matched_only=True)
    assert mixed.mlm_loss.item() == pytest.approx(alone.mlm_loss.item(), rel=1e-5)
    assert mixed.mem_loss.item() == pytest.approx(alone.mem_loss.item(), rel=1e-5)
    assert mixed.mlm_accuracy.item() == pytest.approx(alone.mlm_accuracy.item())
    every_row = model(ecg, ids, mask, mlm_labels=labels, match_labels=match, **kwargs)  # the default: official
    assert every_row.mlm_loss.item() != pytest.approx(mixed.mlm_loss.item(), rel=1e-4)
    assert every_row.mem_loss.item() != pytest.approx(mixed.mem_loss.item(), rel=1e-4)
    # ETM and ETS are unchanged by the switch
    assert every_row.etm_loss.item() == pytest.approx(mixed.etm_loss.item(), rel=1e-6)
    assert every_row.ets_loss.item() == pytest.approx(mixed.ets_loss.item(), rel=1e-6)


def test_mean_text_pooling_by_hand_and_padding_invariant():
    torch.manual_seed(0)
    model = DBetaForPreTraining(tiny_config(text_pooling="mean")).eval()
    base = model.model
    _, ids, _ = make_inputs(batch=2, length=9)
    short = ids[1, :5].clone()
    short[-1] = 1
    padded = torch.zeros(2, 9, dtype=torch.long)
    padded[0], padded[1, :5] = ids[0], short
    mask = (padded != 0).long()
    with torch.no_grad():
        feats = base.get_text_features(padded, mask)
        tokens = base.encode_text(padded, mask)
        by_hand = torch.tanh(base.text_pooler.dense(tokens[1, :5].mean(dim=0)))
        alone = base.get_text_features(short[None], torch.ones(1, 5, dtype=torch.long))
        first = base.text_pooler(tokens)  # the official first-token pooling differs
    assert torch.allclose(feats[1], by_hand, atol=1e-6)
    assert torch.allclose(feats[1], alone[0], atol=1e-5)
    assert not torch.allclose(feats, first, atol=1e-3)
    with pytest.raises(ValueError, match="text_pooling"):
        tiny_config(text_pooling="max")


def test_ets_normalize_embeddings_scores_cosines():
    from dbeta_hf import losses

    torch.manual_seed(0)
    model = DBetaForPreTraining(tiny_config(ets_normalize_embeddings=True)).eval()
    ecg, ids, mask = make_inputs(batch=3)
    match = torch.tensor([1, 0, 1])
    with torch.no_grad():
        out = model(ecg, ids, mask, match_labels=match, apply_ecg_mask=False)
    unit = torch.nn.functional.normalize
    cosine = losses.ets_loss(unit(out.ecg_embeds, dim=-1), unit(out.text_embeds, dim=-1), match)
    assert out.ets_loss.item() == pytest.approx(cosine.item(), rel=1e-6)
    assert out.ets_loss.item() != pytest.approx(losses.ets_loss(out.ecg_embeds, out.text_embeds, match).item(), rel=1e-3)


def test_ets_unmasked_inputs_scores_the_unmasked_ecg_and_the_restored_report():
    from dbeta_hf import losses

    torch.manual_seed(0)
    ecg, ids, mask = make_inputs(batch=3)
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[:, 1] = ids[:, 1]  # one MLM target per row: the model sees the sentinel there
    masked_ids = ids.clone()
    masked_ids[:, 1] = 499  # an id the inputs never use stands in for the <extra_id_0> sentinel
    match = torch.tensor([1, 0, 1])
    model = DBetaForPreTraining(tiny_config(initializer_range=0.1)).eval()
    for unmasked in (False, True):
        with torch.no_grad():
            out = model(ecg, masked_ids, mask, mlm_labels=mlm_labels, match_labels=match, ets_unmasked_inputs=unmasked)
            clean_ecg = model.model.get_ecg_features(ecg)
            clean_text = model.model.get_text_features(ids, mask)
            seen_text = model.model.get_text_features(masked_ids, mask)
        assert out.mem_loss is not None  # the MEM pass was masked either way
        if unmasked:
            torch.testing.assert_close(out.ecg_embeds, clean_ecg)
            torch.testing.assert_close(out.text_embeds, clean_text)
        else:
            assert (out.ecg_embeds - clean_ecg).abs().max() > 1e-3  # the 25%-visible MEM pass
            torch.testing.assert_close(out.text_embeds, seen_text)
            assert (out.text_embeds - clean_text).abs().max() > 1e-3  # the MLM-masked report
        expected = losses.ets_loss(out.ecg_embeds, out.text_embeds, match)
        assert out.ets_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_ets_text_view_replaces_the_fed_report_for_ets_only():
    """`ets_input_ids`: the ETS loss embeds the given text view (the collator's `statement_dropout`), with the given
    `ets_labels`; MLM, ETM and MEM still see the fed report."""
    from dbeta_hf import losses

    torch.manual_seed(0)
    ecg, ids, mask = make_inputs(batch=3)
    view_ids, view_mask = ids[:, :4].clone(), mask[:, :4].clone()
    view_ids[:, 3] = 1  # a shorter text ending in </s>
    match = torch.tensor([1, 0, 1])
    ets_labels = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[:, 1] = ids[:, 1]
    model = DBetaForPreTraining(tiny_config(initializer_range=0.1, ets_learnable_bias=True, ets_logit_bias_init=-0.5))
    model.eval()
    for unmasked in (False, True):
        noise = torch.rand(3, model.config.num_ecg_tokens)
        with torch.no_grad():
            plain = model(ecg, ids, mask, mlm_labels=mlm_labels, match_labels=match, noise=noise,
                          ets_unmasked_inputs=unmasked)
            out = model(ecg, ids, mask, mlm_labels=mlm_labels, match_labels=match, noise=noise, ets_labels=ets_labels,
                        ets_input_ids=view_ids, ets_attention_mask=view_mask, ets_unmasked_inputs=unmasked)
            view = model.model.get_text_features(view_ids, view_mask)
        torch.testing.assert_close(out.text_embeds, view)
        torch.testing.assert_close(out.ecg_embeds, plain.ecg_embeds)
        for name in ("mlm_loss", "mem_loss", "etm_loss"):
            assert getattr(out, name).item() == pytest.approx(getattr(plain, name).item(), rel=1e-6), name
        expected = losses.ets_loss(out.ecg_embeds, view, match, ets_labels, logits_fn=model.ecg_text_logits)
        assert out.ets_loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert out.ets_loss.item() != pytest.approx(plain.ets_loss.item(), rel=1e-3)


def test_unmasked_ets_pass_shares_the_conv_features():
    """`ets_unmasked_inputs`: the unmasked ECG pass reuses the masked pass's conv features (one conv run per step) and
    gives the same embedding as a separate unmasked forward."""
    torch.manual_seed(0)
    ecg, ids, mask = make_inputs(batch=3)
    model = DBetaForPreTraining(tiny_config(initializer_range=0.1)).eval()
    calls = []
    handle = model.model.ecg_encoder.feature_extractor.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = model.model(ecg, ids, mask, apply_ecg_mask=True, return_unmasked_ecg=True)
    handle.remove()
    assert len(calls) == 1
    assert out.mem_mask is not None and out.ecg_hidden_states.shape[1] < 1 + out.mem_mask.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(out.unmasked_ecg_embeds, model.get_ecg_features(ecg))
        plain = model.model(ecg, ids, mask, apply_ecg_mask=True)
    assert plain.unmasked_ecg_embeds is None


def test_hidden_states_attentions_and_tuples_through_transformers_conventions():
    cfg = tiny_config(ecg_layers=2)
    cfg._attn_implementation = "eager"  # attention probabilities need the eager backend
    m = DBetaForPreTraining(cfg).eval()
    ecg, ids, mask = make_inputs()
    with torch.no_grad():
        out = m(ecg, ids, mask, apply_ecg_mask=False, output_hidden_states=True, output_attentions=True)
        plain = m(ecg, ids, mask, apply_ecg_mask=False)
        as_tuple = m(ecg, ids, mask, apply_ecg_mask=False, return_dict=False)
    tokens = 1 + cfg.num_ecg_tokens
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (3, tokens, 32)  # input + 2 layers
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, tokens, tokens)
    assert len(out.cross_attentions) == 2 * cfg.num_fusion_layers  # text then ECG stream, per fusion layer
    assert plain.hidden_states is None and plain.attentions is None
    assert torch.equal(out.etm_logits, plain.etm_logits)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], plain.mlm_logits)  # None entries are left out
    ecg_model = DBetaECGModel(cfg).eval()
    with torch.no_grad():
        ecg_out = ecg_model(ecg, output_hidden_states=True)
    assert len(ecg_out.hidden_states) == 3 and ecg_out.last_hidden_state.shape == (3, tokens, 32)


def test_classification_loss_follows_the_problem_type_rules():
    ecg = make_inputs()[0]
    multi_hot = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    clf = DBetaForECGClassification(tiny_config(num_labels=3)).eval()
    out = clf(ecg, labels=multi_hot)  # boolean multi-hot labels: multi-label (BCE)
    assert clf.config.problem_type == "multi_label_classification"
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, multi_hot.float()))
    clf = DBetaForECGClassification(tiny_config(num_labels=3)).eval()
    out = clf(ecg, labels=torch.tensor([0, 2, 1]))  # integer labels: single-label (cross-entropy)
    assert clf.config.problem_type == "single_label_classification"
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1])))


def test_lead_mask_zeroes_the_absent_leads():
    m = DBetaModel(tiny_config()).eval()
    ecg = make_inputs()[0]
    lead_mask = torch.ones(3, 12, dtype=torch.bool)
    lead_mask[:, 4] = False
    zeroed = ecg.clone()
    zeroed[:, 4] = 0.0
    with torch.no_grad():
        assert torch.equal(m.get_ecg_features(ecg, lead_mask), m.get_ecg_features(zeroed))
        assert torch.equal(m.get_ecg_features(zeroed, lead_mask), m.get_ecg_features(zeroed))


def test_one_ecg_text_similarity_for_the_loss_the_forward_and_zero_shot():
    """`DBetaModel.ecg_text_logits` (scale * e @ t.T + bias, on normalized embeddings when the config says so) is what
    the forward returns as logits_per_ecg / logits_per_text, what the ETS loss scores (with the base model's scale and
    bias) and what zero-shot scoring uses by default."""
    from dbeta_hf import losses
    from dbeta_hf.evaluation.zero_shot import zero_shot_scores

    torch.manual_seed(0)
    ecg, ids, mask = make_inputs()
    match = torch.tensor([1, 0, 1])
    for normalize in (False, True):
        cfg = tiny_config(ets_learnable_scale=True, ets_logit_scale_init=3.0, ets_learnable_bias=True,
                          ets_logit_bias_init=-2.0, ets_normalize_embeddings=normalize)
        m = DBetaForPreTraining(no_dropout(cfg)).eval()
        with torch.no_grad():
            base = m.model(ecg, ids, mask)
            e, t = base.ecg_embeds, base.text_embeds
            if normalize:
                e, t = torch.nn.functional.normalize(e, dim=-1), torch.nn.functional.normalize(t, dim=-1)
            by_hand = 3.0 * e @ t.T - 2.0
            torch.testing.assert_close(base.logits_per_ecg, by_hand)
            torch.testing.assert_close(base.logits_per_text, by_hand.T)
            torch.testing.assert_close(m.ecg_text_logits(base.ecg_embeds, base.text_embeds), by_hand)
            # the ETS loss of the unmasked pass is the sigmoid loss of these logits
            out = m(ecg, ids, mask, match_labels=match, apply_ecg_mask=False)
            labels = losses.ets_labels(match, 3, 3)
            assert out.ets_loss.item() == pytest.approx((-torch.nn.functional.logsigmoid(labels * by_hand)).mean().item(),
                                                        rel=1e-5)
            # zero-shot scores with the same function by default; "dot" / "cosine" stay available
            torch.testing.assert_close(zero_shot_scores(base.ecg_embeds, base.text_embeds, "model", model=m), by_hand)
            torch.testing.assert_close(zero_shot_scores(base.ecg_embeds, base.text_embeds, "dot"),
                                       base.ecg_embeds @ base.text_embeds.T)
        # the loss trains the base model's scale and bias
        m.train()
        m(ecg, ids, mask, match_labels=match, apply_ecg_mask=False).ets_loss.backward()
        assert m.model.logit_scale.grad.abs().item() > 0 and m.model.logit_bias.grad.abs().item() > 0


def _tiny_training_batch(config):
    g = torch.Generator().manual_seed(0)
    ecg = torch.randn(2, 12, config.ecg_config.num_samples, generator=g)
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[:, 0] = ids[:, 0]
    return dict(ecg_values=ecg, input_ids=ids, attention_mask=(ids != 0).long(), mlm_labels=mlm_labels,
                match_labels=torch.tensor([1, 0]))


def test_training_forward_compiles_without_graph_breaks():
    """The pretraining forward holds no data-dependent Python branch: torch.compile captures it in one graph."""
    torch._dynamo.reset()
    config = tiny_config(num_samples=256)
    model = DBetaForPreTraining(config).train()
    explanation = torch._dynamo.explain(model)(**_tiny_training_batch(config))
    assert explanation.graph_break_count == 0, [str(reason.reason)[:200] for reason in explanation.break_reasons]
    assert explanation.graph_count == 1
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "arguments",
    [{}, {"return_mlm_logits": False, "with_positions": True},
     {"return_mlm_logits": False, "with_positions": True, "ets_unmasked_inputs": True, "mlm_mem_on_matched_only": True}],
    ids=["defaults", "trainer-path", "trainer-path-demo-switches"],
)
def test_training_step_reads_no_tensor_value(monkeypatch, arguments):
    """A forward and backward of the pretraining model never reads a tensor value on the host (no `bool(tensor)`,
    `.item()`, `.tolist()`, `.nonzero()`, `int(tensor)`, `float(tensor)`): nothing waits for the device. The trainer
    path gets `mlm_positions` from the collator, as `DBetaPreTrainingCollator` returns them."""
    from dbeta_hf.losses import mlm_positions

    config = tiny_config(num_samples=256, ets_learnable_scale=True, ets_learnable_bias=True, ets_logit_bias_init=-1.0)
    model = DBetaForPreTraining(config).train()
    batch = _tiny_training_batch(config)
    arguments = dict(arguments)
    if arguments.pop("with_positions", False):
        batch["mlm_positions"] = mlm_positions(batch["mlm_labels"])
    calls = []
    for name in ("__bool__", "item", "tolist", "nonzero", "__int__", "__float__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    out = model(**batch, **arguments)
    out.loss.backward()
    monkeypatch.undo()
    assert calls == []
    assert torch.isfinite(out.loss)  # (read only now, after the step)


def test_forward_does_not_check_tensor_values(model):
    """Value checks (NaN ECGs, token ids outside the vocabulary) are the processor's and the collator's: the model
    only checks shapes and dtypes."""
    ecg, ids, mask = make_inputs()
    ecg[1, 4, 100] = float("nan")
    with torch.no_grad():
        features = model.get_ecg_features(ecg)
    assert torch.isnan(features[1]).all() and torch.isfinite(features[0]).all()


def test_policy_fields_are_not_config_fields(caplog):
    """ETS batch scope, ETS input views and MLM/MEM on matched rows are forward arguments; an old config.json that
    still names them loads with one warning saying where they live."""
    import logging

    config = DBetaConfig()
    for name in ("validate_inputs", "ets_global_batch", "ets_unmasked_inputs", "mlm_mem_on_matched_only", "mem_prob",
                 "mem_patch"):
        assert not hasattr(config, name), name
    assert config.mem_mask_ratio == 0.75 and config.mem_patch_size == 16
    with caplog.at_level(logging.WARNING):
        old = DBetaConfig(ets_global_batch=True, validate_inputs=False, mlm_mem_on_matched_only=True)
    assert not hasattr(old, "ets_global_batch")
    messages = [r.getMessage() for r in caplog.records if "DBetaConfig ignores" in r.getMessage()]
    assert len(messages) == 1 and "DBetaForPreTraining.forward" in messages[0] and "DBetaProcessor" in messages[0]
    import inspect

    params = inspect.signature(DBetaForPreTraining.forward).parameters
    assert {name: params[name].default for name in ("ets_unmasked_inputs", "mlm_mem_on_matched_only",
                                                    "ets_global_batch")} == dict.fromkeys(
        ("ets_unmasked_inputs", "mlm_mem_on_matched_only", "ets_global_batch"), False)


def test_from_text_pretrained_builds_the_base_model_too(tmp_path):
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(vocab_size=500, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 feed_forward_proj="gated-gelu"))
    t5.save_pretrained(tmp_path / "t5")
    kwargs = dict(ecg_config=tiny_config().ecg_config, hidden_dim=32, num_heads=4, num_fusion_layers=1, mem_layer=0,
                  mem_decoder_hidden_dim=16, mem_decoder_num_layers=1, mem_decoder_num_heads=2)
    base = DBetaModel.from_text_pretrained(str(tmp_path / "t5"), **kwargs)
    assert type(base) is DBetaModel
    for key, value in t5.state_dict().items():
        assert torch.equal(base.text_encoder.state_dict()[key], value), key
    with pytest.raises(TypeError, match="no text tower"):
        DBetaECGModel.from_text_pretrained(str(tmp_path / "t5"), **kwargs)
