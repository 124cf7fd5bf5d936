"""Configuration classes for D-BETA.

`DBetaConfig` is a composite config in the style of CLAP / SigLIP: an ECG sub-config
(`DBetaECGConfig`), a text sub-config (a plain `T5Config`, Flan-T5-base by default) and the
fusion, head, loss and pretraining-data settings at the top level.

The ECG sub-config keeps the official field names (`encoder_layers`, `encoder_embed_dim`,
`conv_feature_layers`, ...) so that the official `configs/config.json` maps one-to-one; the usual
transformers names (`hidden_size`, `num_hidden_layers`, `num_attention_heads`) are aliases
(`attribute_map`). Two official names were renamed for clarity: `in_d` -> `num_leads` and
`num_top_layer` -> `num_fusion_layers`; config.json files that still carry the old keys load as before.
`DBetaConfig.from_original_config` builds the whole config from the official dict form.

The pretraining collator's settings (MLM probability and mask token, lead-mask probability, negative
fraction, text length, same-report ETS positives) are not model hyper-parameters: they live on
`DBetaPreTrainingCollator`. Old config.json files that still carry them load with a warning that they are
ignored.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Sequence

from transformers import PretrainedConfig, T5Config
from transformers.utils import logging

logger = logging.get_logger(__name__)

# The official `configs/config.json` ("model" section), the source of every default below.
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

# Settings that older versions kept in DBetaConfig and that now belong to `DBetaPreTrainingCollator`
COLLATOR_SETTINGS = (
    "mlm_mask_token", "mlm_probability", "lead_mask_prob", "negative_fraction", "max_text_length",
    "ets_same_report_positives",
)
DEFAULT_CONV_FEATURE_LAYERS = [(256, 2, 2)] * 4
CANONICAL_LEAD_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


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
        num_leads: number of input leads (12; official name `in_d`).
        num_samples: samples per recording the model is built for (5000 = 10 s at 500 Hz); sets the MEM
            patch size and the documented input length.
        sampling_rate: sampling rate in Hz the model expects (500).
        conv_feature_layers: list of `(dim, kernel, stride)` conv layers, or the official string form.
        extractor_mode: `"default"` (GroupNorm after the first conv only) or `"layer_norm"` (LayerNorm after
            every conv).
        conv_bias: whether the feature-extractor convs have a bias.
        encoder_embed_dim / encoder_layers / encoder_attention_heads / encoder_ffn_embed_dim: transformer sizes.
        layer_norm_first: pre-LN layers (`True`) or post-LN layers (`False`, the official default).
        conv_pos / conv_pos_groups: kernel size and groups of the convolutional positional encoding.
        conv_pos_impl: `"conv"` (direct grouped convolution, as the official model) or `"fft"` (the same
            convolution through real FFTs in float32: about 40x fewer FLOPs for kernel 128; equal to float32
            rounding, same parameters).
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
        "in_d": "num_leads",  # the official name, still readable
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
        if "in_d" in kwargs:  # config.json files saved before the rename
            num_leads = kwargs.pop("in_d")
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


# Official `configs/config.json` field -> DBetaECGConfig field (the converter's table for the ECG encoder)
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
    "vocab_size": "vocab_size", "mem_layer": "mem_layer", "mem_prob": "mem_prob",
    "mem_decoder_hidden_dim": "mem_decoder_hidden_dim", "mem_decoder_num_layers": "mem_decoder_num_layers",
    "mem_decoder_num_heads": "mem_decoder_num_heads",
}
# `mim_*` spellings of older official configs, accepted as the `mem_*` fields
ORIGINAL_OLD_SPELLINGS = {
    "mim_layer": "mem_layer", "mim_prob": "mem_prob", "mim_decoder_hidden_dim": "mem_decoder_hidden_dim",
    "mim_decoder_num_layers": "mem_decoder_num_layers", "mim_decoder_num_heads": "mem_decoder_num_heads",
}


class DBetaConfig(PretrainedConfig):
    r"""Configuration of a D-BETA model (ECG encoder, Flan-T5 text encoder, cross-attention fusion, heads).

    The defaults reproduce the official `configs/config.json` with Flan-T5-base as text encoder.

    Args:
        ecg_config: `DBetaECGConfig` or dict.
        text_config: `T5Config` or dict (Flan-T5-base by default).
        hidden_dim: width of the projections, poolers and fusion layers.
        num_heads: attention heads of the fusion layers.
        num_fusion_layers: number of cross-attention fusion layers on each stream (official name `num_top_layer`).
        fusion_intermediate_size: FFN width of the fusion layers (default 4 * hidden_dim, as the official model).
        drop_rate: dropout in the fusion layers (hidden and attention probabilities).
        fusion_layer_norm_eps: LayerNorm epsilon in the fusion layers and the MLM head (BERT's 1e-12).
        vocab_size: MLM output vocabulary (the T5 embedding size, 32128).
        mem_layer: index of the fusion layer whose *input* ECG stream feeds the MEM decoder; -1 = the output
            of the last fusion layer.
        mem_prob: fraction of ECG tokens removed by MEM masking (0.75).
        mem_decoder_hidden_dim / mem_decoder_num_layers / mem_decoder_num_heads: the MAE-style MEM decoder.
        mem_norm_target: z-normalize each lead of the MEM target over time (eps 1e-6 on the unbiased variance).
        mem_patch_size: samples per ECG token per lead that MEM reconstructs; `None` infers
            floor(num_samples / num_tokens) (16 for the official model).
        mlm_loss_weight / mem_loss_weight / etm_loss_weight / ets_loss_weight: weights of the four losses.
        ets_logit_scale_init / ets_learnable_scale: scale of the ETS logits (1, fixed, as the official code).
        ets_logit_bias_init / ets_learnable_bias: optional ETS bias (`None` = no bias, the official choice).
        ets_global_batch: under several processes (`accelerate launch`, `torchrun`), score every process's ECGs
            against the texts of the whole global batch (`True`, as CLIP / SigLIP) or only against its own batch
            (`False`: the official loss, built with world_size=1, i.e. per GPU). No effect in one process.
        mlm_mem_on_matched_only: compute MLM and MEM only on the rows whose report belongs to the ECG
            (`match_labels == 1`), as ALBEF / BLIP do; `False` also scores the rows that received an N3S negative
            report. The official collator overwrote the negative text with the true report, so the official model
            only ever saw matched pairs for these two losses.
        ets_normalize_embeddings: L2-normalize the uni-modal ECG and text embeddings inside the ETS loss, so that its
            logits are `scale * cosine + bias` (SigLIP; then use a learnable scale and bias, e.g. 10 and -10, and
            score zero-shot / retrieval with `similarity="cosine"`). `False` (official): the raw dot product.
        ets_unmasked_inputs: compute the ETS embeddings from unmasked inputs, as ALBEF / BLIP compute their contrastive
            loss on clean inputs: a second pass of the ECG tower without MEM masking, and the report with its MLM
            tokens restored (from `mlm_labels`). `False` (official): the ECG embedding of the MEM-masked pass (25% of
            the tokens visible) and the text the MLM collator masked. Costs one more ECG and text pass per step;
            `benchmarks/README_learning.md` has the measured effect.
        text_pooling: what the uni-modal text embedding (ETS, zero-shot, retrieval) pools: `"first"` (the first token,
            official) or `"mean"` (the mean over the real tokens, as sentence encoders do).
        initializer_range: std of the normal initialisation of linear and embedding weights.
        validate_inputs: check the values of the inputs on every forward: ECGs for NaN/inf, texts for token ids
            outside the vocabulary, all-zero attention_mask rows and empty reports (one host-device synchronisation
            per tower; turn off for benchmarks once the data pipeline is trusted). Shape and dtype checks always run.
    """

    model_type = "dbeta"
    sub_configs = {"ecg_config": DBetaECGConfig, "text_config": T5Config}
    attribute_map = {
        "hidden_size": "hidden_dim",
        "num_top_layer": "num_fusion_layers",  # the official name, still readable
    }

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
        mem_prob: float = 0.75,
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
        ets_global_batch: bool = True,
        mlm_mem_on_matched_only: bool = False,
        ets_normalize_embeddings: bool = False,
        text_pooling: str = "first",
        ets_unmasked_inputs: bool = False,
        initializer_range: float = 0.02,
        validate_inputs: bool = True,
        **kwargs,
    ):
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
        if "num_top_layer" in kwargs:  # config.json files saved before the rename
            num_fusion_layers = kwargs.pop("num_top_layer")
        ignored = {key: kwargs.pop(key) for key in COLLATOR_SETTINGS if key in kwargs}
        if ignored:
            logger.warning_once(
                f"DBetaConfig ignores {sorted(ignored)}: they are settings of the pretraining collator, not of the "
                "model (older versions stored them in config.json); pass them to DBetaPreTrainingCollator"
            )

        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.num_fusion_layers = num_fusion_layers
        self.fusion_intermediate_size = 4 * hidden_dim if fusion_intermediate_size is None else fusion_intermediate_size
        self.drop_rate = drop_rate
        self.fusion_layer_norm_eps = fusion_layer_norm_eps
        self.vocab_size = text_config.vocab_size if vocab_size is None else vocab_size
        self.mem_layer = mem_layer
        self.mem_prob = mem_prob
        self.mem_decoder_hidden_dim = mem_decoder_hidden_dim
        self.mem_decoder_num_layers = mem_decoder_num_layers
        self.mem_decoder_num_heads = mem_decoder_num_heads
        self.mem_norm_target = mem_norm_target
        self.mem_patch_size = mem_patch_size
        self.mlm_loss_weight = mlm_loss_weight
        self.mem_loss_weight = mem_loss_weight
        self.etm_loss_weight = etm_loss_weight
        self.ets_loss_weight = ets_loss_weight
        self.ets_logit_scale_init = ets_logit_scale_init
        self.ets_learnable_scale = ets_learnable_scale
        self.ets_logit_bias_init = ets_logit_bias_init
        self.ets_learnable_bias = ets_learnable_bias
        self.ets_global_batch = ets_global_batch
        self.mlm_mem_on_matched_only = mlm_mem_on_matched_only
        self.ets_normalize_embeddings = ets_normalize_embeddings
        self.text_pooling = text_pooling
        self.ets_unmasked_inputs = ets_unmasked_inputs
        self.initializer_range = initializer_range
        self.validate_inputs = validate_inputs
        self._validate()
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
        if not 0.0 <= self.mem_prob < 1.0:
            raise ValueError(f"mem_prob must be in [0, 1), got {self.mem_prob}")
        if self.text_pooling not in ("first", "mean"):
            raise ValueError(f"text_pooling must be 'first' (official) or 'mean', got {self.text_pooling!r}")
        if self.ets_learnable_bias and self.ets_logit_bias_init is None:
            raise ValueError("ets_learnable_bias=True needs ets_logit_bias_init (SigLIP uses -10)")
        if self.num_ecg_tokens < 1:
            raise ValueError(
                f"the conv stack turns num_samples={self.ecg_config.num_samples} into no ECG token; "
                f"at least {self.ecg_config.min_num_samples()} samples are needed"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def num_ecg_tokens(self) -> int:
        return self.ecg_config.num_tokens()

    @property
    def mem_patch(self) -> int:
        if self.mem_patch_size is not None:
            return int(self.mem_patch_size)
        return self.ecg_config.num_samples // self.num_ecg_tokens

    # ------------------------------------------------------------------ official format
    @classmethod
    def from_original_config(
        cls, original: dict[str, Any], text_config: dict | T5Config | None = None, **kwargs
    ) -> "DBetaConfig":
        """Build a config from the official D-BETA `config.json` (`{"model": {...}}` or its inner dict).

        `ORIGINAL_ECG_CONFIG_KEYS` and `ORIGINAL_CONFIG_KEYS` map the official field names to ours; the official
        fields not in them are ignored: dead ones (`all_gather`, `normalize`, `filter`, `apply_mask`, `mask_*`, ...)
        and the collator's (`max_text_size`, `lead_masking`, whose official values 256 and 0.5 are the defaults of
        `DBetaPreTrainingCollator`: `max_length=254`, `lead_mask_prob=0.5`). `text_config` defaults to
        Flan-T5-base. The training switches that the official config has no field for get the official behaviour
        (`ets_global_batch=False`, `mlm_mem_on_matched_only=False`) unless `kwargs` set them.
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
        # the official training recipe: ETS per GPU (built with world_size=1); MLM and MEM scored on every row
        top.update(ets_global_batch=False, mlm_mem_on_matched_only=False)
        top.update(kwargs)
        return cls(ecg_config=DBetaECGConfig(**ecg), text_config=text_config, **top)
