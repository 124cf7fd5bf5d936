"""Configuration classes for D-BETA.

`DBetaConfig` is a composite config in the style of CLAP / SigLIP: an ECG sub-config (`DBetaECGConfig`), a text
sub-config (a plain `T5Config`, Flan-T5-base by default) and, at the top level, the fusion, head and loss settings.
A config holds the architecture and the loss hyper-parameters (as ViTMAE's holds `mask_ratio` and `norm_pix_loss`).
How a training run uses the model is not part of it: the ETS batch scope, the ETS input views and MLM/MEM on matched
rows only are keyword arguments of `DBetaForPreTraining.forward`, the input value checks run in the processor and
the pretraining collator, and the masking and sampling settings of the data belong to `DBetaPreTrainingCollator`.

The ECG sub-config uses the fairseq-signals field names (`encoder_layers`, `encoder_embed_dim`,
`conv_feature_layers`, ...); the usual transformers names (`hidden_size`, `num_hidden_layers`,
`num_attention_heads`) are aliases (`attribute_map`). The official `configs/config.json` is read by
`dbeta_hf.conversion.convert_original_checkpoint.from_original_config`.
"""

from __future__ import annotations

import ast
import math
from typing import Sequence

from transformers import AutoConfig, PretrainedConfig, T5Config
from transformers.utils import logging

logger = logging.get_logger(__name__)

# google/flan-t5-base's encoder, the text tower of the official model
FLAN_T5_BASE_TEXT_CONFIG = dict(
    vocab_size=32128,
    d_model=768,
    d_kv=64,
    d_ff=2048,
    num_layers=12,
    num_decoder_layers=12,
    num_heads=12,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    dropout_rate=0.1,
    layer_norm_epsilon=1e-6,
    initializer_factor=1.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    use_cache=False,
)

# Settings that are not model hyper-parameters, and where they are set. A config.json that still carries one loads;
# the value is ignored, with one warning naming it and its place.
_TRAINING_ARGUMENT = "a keyword argument of DBetaForPreTraining.forward and a field of DBetaTrainingArguments"
_COLLATOR_SETTING = "a setting of DBetaPreTrainingCollator"
SETTINGS_OUTSIDE_THE_CONFIG = {
    "ets_global_batch": _TRAINING_ARGUMENT,
    "ets_unmasked_inputs": _TRAINING_ARGUMENT,
    "mlm_mem_on_matched_only": _TRAINING_ARGUMENT,
    "validate_inputs": "done by DBetaProcessor / DBetaECGFeatureExtractor and DBetaPreTrainingCollator (CPU side)",
    "mlm_mask_token": _COLLATOR_SETTING,
    "mlm_probability": _COLLATOR_SETTING,
    "lead_mask_prob": _COLLATOR_SETTING,
    "negative_fraction": _COLLATOR_SETTING,
    "max_text_length": _COLLATOR_SETTING,
    "ets_same_report_positives": _COLLATOR_SETTING,
}
# Names of the official config.json, which only the converter reads; passed to a config they are an error, not an
# unknown attribute that would silently keep the default.
OFFICIAL_FIELD_NAMES = {"in_d": "num_leads", "num_top_layer": "num_fusion_layers", "mem_prob": "mem_mask_ratio"}


def _refuse_official_field_names(kwargs: dict) -> None:
    used = {name: OFFICIAL_FIELD_NAMES[name] for name in kwargs if name in OFFICIAL_FIELD_NAMES}
    if used:
        renames = ", ".join(f"{old} -> {new}" for old, new in used.items())
        raise ValueError(
            f"{sorted(used)} are field names of the official D-BETA config.json; this config calls them {renames}. "
            "Convert an official config with dbeta_hf.conversion.convert_original_checkpoint.from_original_config"
        )


def _drop_settings_outside_the_config(kwargs: dict) -> None:
    ignored = {name: kwargs.pop(name) for name in list(kwargs) if name in SETTINGS_OUTSIDE_THE_CONFIG}
    if ignored:
        places = "; ".join(f"{name}: {SETTINGS_OUTSIDE_THE_CONFIG[name]}" for name in sorted(ignored))
        logger.warning_once(f"DBetaConfig ignores {sorted(ignored)}: they are not model hyper-parameters ({places})")


def _evaluate_layer_expression(node: ast.AST) -> list:
    """Evaluate list literals joined with `+` and repeated with `* int`, nothing else (no `eval`)."""
    if isinstance(node, (ast.List, ast.Tuple)) and all(isinstance(e, (ast.Tuple, ast.List)) for e in node.elts):
        return [tuple(ast.literal_eval(e)) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _evaluate_layer_expression(node.left) + _evaluate_layer_expression(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = node.left, node.right
        if isinstance(left, ast.Constant):
            left, right = right, left
        if isinstance(right, ast.Constant) and isinstance(right.value, int):
            return _evaluate_layer_expression(left) * right.value
    raise ValueError(f"cannot parse conv_feature_layers expression near {ast.unparse(node)!r}")


def parse_conv_feature_layers(spec: str | Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    """Parse the official `conv_feature_layers` field.

    The official config stores a Python expression such as ``"[(256, 2, 2)] * 4"`` or
    ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``. It is parsed without `eval`: list literals of
    `(dim, kernel, stride)` tuples, joined with `+` and repeated with `* int`.
    """
    layers = _evaluate_layer_expression(ast.parse(spec.strip(), mode="eval").body) if isinstance(spec, str) else list(spec)
    parsed = []
    for layer in layers:
        layer = tuple(int(v) for v in layer)
        if len(layer) != 3 or min(layer) < 1:
            raise ValueError(
                f"conv_feature_layers entries must be (dim, kernel, stride) triples of positive integers, got {layer}"
            )
        parsed.append(layer)
    if not parsed:
        raise ValueError("conv_feature_layers must contain at least one (dim, kernel, stride) layer")
    return parsed


class DBetaECGConfig(PretrainedConfig):
    r"""Configuration of the D-BETA ECG encoder (fairseq-signals `ECGTransformerModel`).

    Args:
        num_leads: number of input leads (12).
        num_samples: samples per recording the model is built for (5000 = 10 s at 500 Hz); sets the MEM
            patch size and the documented input length.
        sampling_rate: sampling rate in Hz the model expects (500).
        conv_feature_layers: list of `(dim, kernel, stride)` conv layers, or the string form of the official config
            (`"[(256, 2, 2)] * 4"`).
        extractor_mode: `"default"` (GroupNorm after the first conv only) or `"layer_norm"` (LayerNorm after
            every conv).
        conv_bias: whether the feature-extractor convs have a bias.
        encoder_embed_dim / encoder_layers / encoder_attention_heads / encoder_ffn_embed_dim: transformer sizes.
        layer_norm_first: pre-LN layers (`True`) or post-LN layers (`False`, the official default).
        conv_pos / conv_pos_groups: kernel size and groups of the convolutional positional encoding.
        conv_pos_impl: `"conv"` (direct grouped convolution) or `"fft"` (the same convolution through real FFTs in
            float32: about 40x fewer FLOPs for kernel 128; equal to float32 rounding, same parameters).
        dropout, attention_dropout, activation_dropout, dropout_input: dropout probabilities.
        encoder_layerdrop: probability of skipping a whole layer in training.
        feature_grad_mult: gradient scale on the conv features (1.0 = normal, 0.0 = frozen extractor).
        layer_norm_eps: epsilon of every LayerNorm / GroupNorm of the ECG encoder.
    """

    model_type = "dbeta_ecg"
    base_config_key = "ecg_config"
    attribute_map = {
        "hidden_size": "encoder_embed_dim",
        "num_hidden_layers": "encoder_layers",
        "num_attention_heads": "encoder_attention_heads",
        "intermediate_size": "encoder_ffn_embed_dim",
    }

    def __init__(
        self,
        num_leads: int = 12,
        num_samples: int = 5000,
        sampling_rate: int = 500,
        conv_feature_layers: str | Sequence[Sequence[int]] = "[(256, 2, 2)] * 4",
        extractor_mode: str = "default",
        conv_bias: bool = False,
        encoder_embed_dim: int = 768,
        encoder_layers: int = 8,
        encoder_attention_heads: int = 12,
        encoder_ffn_embed_dim: int = 3072,
        layer_norm_first: bool = False,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        conv_pos_impl: str = "conv",
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        dropout_input: float = 0.1,
        encoder_layerdrop: float = 0.0,
        feature_grad_mult: float = 1.0,
        layer_norm_eps: float = 1e-5,
        **kwargs,
    ):
        _refuse_official_field_names(kwargs)
        self.num_leads = num_leads
        self.num_samples = num_samples
        self.sampling_rate = sampling_rate
        self.conv_feature_layers = [list(layer) for layer in parse_conv_feature_layers(conv_feature_layers)]
        if extractor_mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got {extractor_mode!r}")
        self.extractor_mode = extractor_mode
        self.conv_bias = conv_bias
        self.encoder_embed_dim = encoder_embed_dim
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.encoder_ffn_embed_dim = encoder_ffn_embed_dim
        self.layer_norm_first = layer_norm_first
        self.conv_pos = conv_pos
        self.conv_pos_groups = conv_pos_groups
        if conv_pos_impl not in ("conv", "fft"):
            raise ValueError(f"conv_pos_impl must be 'conv' or 'fft', got {conv_pos_impl!r}")
        self.conv_pos_impl = conv_pos_impl
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.dropout_input = dropout_input
        self.encoder_layerdrop = encoder_layerdrop
        self.feature_grad_mult = feature_grad_mult
        self.layer_norm_eps = layer_norm_eps
        if encoder_embed_dim % encoder_attention_heads != 0:
            raise ValueError(
                f"encoder_embed_dim ({encoder_embed_dim}) must be divisible by encoder_attention_heads "
                f"({encoder_attention_heads})"
            )
        if encoder_embed_dim % conv_pos_groups != 0:
            raise ValueError(
                f"encoder_embed_dim ({encoder_embed_dim}) must be divisible by conv_pos_groups ({conv_pos_groups})"
            )
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ derived sizes
    def num_tokens(self, num_samples: int | None = None) -> int:
        """Number of ECG tokens the conv stack produces for `num_samples` input samples (312 for 5000)."""
        length = self.num_samples if num_samples is None else int(num_samples)
        for _, kernel, stride in self.conv_feature_layers:
            length = math.floor((length - kernel) / stride) + 1
            if length < 1:
                return 0
        return length

    def min_num_samples(self) -> int:
        """Smallest input length for which the conv stack yields at least one token."""
        length = 1
        for _, kernel, stride in reversed(self.conv_feature_layers):
            length = (length - 1) * stride + kernel
        return length

    @property
    def conv_dim(self) -> int:
        return int(self.conv_feature_layers[-1][0])


class DBetaConfig(PretrainedConfig):
    r"""Configuration of a D-BETA model (ECG encoder, Flan-T5 text encoder, cross-attention fusion, heads).

    The defaults are the official D-BETA model with Flan-T5-base as text encoder.

    Args:
        ecg_config: `DBetaECGConfig` or dict.
        text_config: `T5Config` or dict (Flan-T5-base by default).
        hidden_dim: width of the projections, poolers and fusion layers.
        num_heads: attention heads of the fusion layers.
        num_fusion_layers: number of cross-attention fusion layers on each stream.
        fusion_intermediate_size: FFN width of the fusion layers (default 4 * hidden_dim).
        drop_rate: dropout in the fusion layers (hidden and attention probabilities).
        fusion_layer_norm_eps: LayerNorm epsilon in the fusion layers and the MLM head (BERT's 1e-12).
        vocab_size: MLM output vocabulary (the T5 embedding size, 32128).
        mem_layer: index of the fusion layer whose *input* ECG stream feeds the MEM decoder; -1 = the output
            of the last fusion layer.
        mem_mask_ratio: fraction of ECG tokens removed by MEM masking (0.75).
        mem_decoder_hidden_dim / mem_decoder_num_layers / mem_decoder_num_heads: the MAE-style MEM decoder.
        mem_norm_target: z-normalize each lead of the MEM target over time (eps 1e-6 on the unbiased variance).
        mem_patch_size: samples per ECG token per lead that MEM reconstructs; `None` sets
            floor(num_samples / number of ECG tokens) (16 for the official model).
        mlm_loss_weight / mem_loss_weight / etm_loss_weight / ets_loss_weight: weights of the four losses.
        ets_logit_scale_init / ets_learnable_scale: the scale of the ECG-text logits (`DBetaModel.logit_scale` holds
            its log): initial value and whether it is trained (1, fixed, in the official model).
        ets_logit_bias_init / ets_learnable_bias: the bias of the ECG-text logits (`None` = no bias, the official
            model); a learnable bias needs an initial value (SigLIP: -10).
        ets_normalize_embeddings: L2-normalize the uni-modal ECG and text embeddings before the ECG-text logits, so
            that they are `scale * cosine + bias` (SigLIP; then use a learnable scale and bias, e.g. 10 and -10).
            `False` (official): the raw dot product.
        text_pooling: what the uni-modal text embedding (ETS, zero-shot, retrieval) pools: `"first"` (the first token,
            official) or `"mean"` (the mean over the real tokens, as sentence encoders do).
        initializer_range: std of the normal initialisation of linear and embedding weights.

    The ECG-text logits `DBetaModel.ecg_text_logits` (scale, bias, normalization above) are what the ETS loss, zero-shot
    classification, retrieval and the zero-shot pipeline score with.
    """

    model_type = "dbeta"
    sub_configs = {"ecg_config": DBetaECGConfig, "text_config": T5Config}
    attribute_map = {"hidden_size": "hidden_dim"}

    def __init__(
        self,
        ecg_config: dict | DBetaECGConfig | None = None,
        text_config: dict | T5Config | None = None,
        hidden_dim: int = 768,
        num_heads: int = 12,
        num_fusion_layers: int = 6,
        fusion_intermediate_size: int | None = None,
        drop_rate: float = 0.1,
        fusion_layer_norm_eps: float = 1e-12,
        vocab_size: int | None = None,
        mem_layer: int = 3,
        mem_mask_ratio: float = 0.75,
        mem_decoder_hidden_dim: int = 384,
        mem_decoder_num_layers: int = 4,
        mem_decoder_num_heads: int = 6,
        mem_norm_target: bool = True,
        mem_patch_size: int | None = None,
        mlm_loss_weight: float = 1.0,
        mem_loss_weight: float = 1.0,
        etm_loss_weight: float = 1.0,
        ets_loss_weight: float = 1.0,
        ets_logit_scale_init: float = 1.0,
        ets_learnable_scale: bool = False,
        ets_logit_bias_init: float | None = None,
        ets_learnable_bias: bool = False,
        ets_normalize_embeddings: bool = False,
        text_pooling: str = "first",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        _refuse_official_field_names(kwargs)
        _drop_settings_outside_the_config(kwargs)
        if ecg_config is None:
            ecg_config = DBetaECGConfig()
        elif isinstance(ecg_config, dict):
            ecg_config = DBetaECGConfig(**ecg_config)
        if text_config is None:
            text_config = T5Config(**FLAN_T5_BASE_TEXT_CONFIG)
        elif isinstance(text_config, dict):
            text_config = T5Config(**text_config)
        self.ecg_config = ecg_config
        self.text_config = text_config
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.num_fusion_layers = num_fusion_layers
        self.fusion_intermediate_size = 4 * hidden_dim if fusion_intermediate_size is None else fusion_intermediate_size
        self.drop_rate = drop_rate
        self.fusion_layer_norm_eps = fusion_layer_norm_eps
        self.vocab_size = text_config.vocab_size if vocab_size is None else vocab_size
        self.mem_layer = mem_layer
        self.mem_mask_ratio = mem_mask_ratio
        self.mem_decoder_hidden_dim = mem_decoder_hidden_dim
        self.mem_decoder_num_layers = mem_decoder_num_layers
        self.mem_decoder_num_heads = mem_decoder_num_heads
        self.mem_norm_target = mem_norm_target
        self.mlm_loss_weight = mlm_loss_weight
        self.mem_loss_weight = mem_loss_weight
        self.etm_loss_weight = etm_loss_weight
        self.ets_loss_weight = ets_loss_weight
        self.ets_logit_scale_init = ets_logit_scale_init
        self.ets_learnable_scale = ets_learnable_scale
        self.ets_logit_bias_init = ets_logit_bias_init
        self.ets_learnable_bias = ets_learnable_bias
        self.ets_normalize_embeddings = ets_normalize_embeddings
        self.text_pooling = text_pooling
        self.initializer_range = initializer_range
        self._validate()
        self.mem_patch_size = int(mem_patch_size) if mem_patch_size is not None else (
            ecg_config.num_samples // self.num_ecg_tokens)
        super().__init__(**kwargs)

    def _validate(self):
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.mem_decoder_hidden_dim % self.mem_decoder_num_heads != 0:
            raise ValueError(
                f"mem_decoder_hidden_dim ({self.mem_decoder_hidden_dim}) must be divisible by mem_decoder_num_heads "
                f"({self.mem_decoder_num_heads})"
            )
        if not (self.mem_layer == -1 or 0 <= self.mem_layer < self.num_fusion_layers):
            raise ValueError(
                f"mem_layer must be -1 (last fusion output) or an index in [0, {self.num_fusion_layers}), got "
                f"{self.mem_layer}"
            )
        if not 0.0 <= self.mem_mask_ratio < 1.0:
            raise ValueError(f"mem_mask_ratio must be in [0, 1), got {self.mem_mask_ratio}")
        if self.text_pooling not in ("first", "mean"):
            raise ValueError(f"text_pooling must be 'first' (official) or 'mean', got {self.text_pooling!r}")
        if self.ets_learnable_bias and self.ets_logit_bias_init is None:
            raise ValueError("ets_learnable_bias=True needs ets_logit_bias_init (SigLIP uses -10)")
        if self.ets_logit_scale_init <= 0:
            raise ValueError(f"ets_logit_scale_init must be positive (the model holds its log), got {self.ets_logit_scale_init}")
        if self.num_ecg_tokens < 1:
            raise ValueError(
                f"the conv stack turns num_samples={self.ecg_config.num_samples} into no ECG token; "
                f"at least {self.ecg_config.min_num_samples()} samples are needed"
            )

    @property
    def num_ecg_tokens(self) -> int:
        """ECG tokens of a `num_samples` recording (312 for the official model)."""
        return self.ecg_config.num_tokens()

# The installed package registers its configs with AutoConfig when this module is imported (see
# dbeta_hf/auto_registration.py); a copy of this file in a saved folder, loaded with trust_remote_code, is
# registered by transformers itself instead.
if __name__.startswith("dbeta_hf."):
    AutoConfig.register("dbeta", DBetaConfig, exist_ok=True)
    AutoConfig.register("dbeta_ecg", DBetaECGConfig, exist_ok=True)
    DBetaConfig.register_for_auto_class()
