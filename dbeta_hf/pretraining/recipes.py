"""Ready-made configurations: the official model and tiny ones for tests and the embedded CPU demo."""

from __future__ import annotations

from ..configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG, DBetaConfig, DBetaECGConfig


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
