"""PyTorch D-BETA model: ECG encoder, Flan-T5 text encoder, cross-attention fusion and pretraining heads.

Where things are:

* the ECG encoder: `DBetaECGEncoder` (conv features, positional convolution, MEM token masking, CLS token, post-LN
  transformer); `DBetaECGModel` is it alone with the projection and pooler, as a model;
* the text encoder: a plain `T5EncoderModel` (`DBetaModel.text_encoder`);
* the fusion: `DBetaModel.fuse`, two stacks of `DBetaFusionLayer` (self-attention, cross-attention to the other
  modality, feed-forward);
* the ECG-text similarity: `DBetaModel.ecg_text_logits` (`logit_scale`, `logit_bias`), which the ETS loss, zero-shot
  classification, retrieval and the zero-shot pipeline all score with;
* the heads: `DBetaMLMHead`, `DBetaMEMHead` (an MAE-style decoder), `DBetaETMHead`; the four losses are in
  `losses.py`; `DBetaForPreTraining.forward` reads: encode and fuse (`self.model`), heads, `forward_loss`.

Masking, which is where and why. *MEM token masking* (`random_masking`, run by `DBetaECGEncoder.forward`) is in the
model, because it drops ECG tokens after the conv features and the positional convolution; it is driven by `noise`
(B, T) as in ViTMAE, drawn in the model unless given: the pretraining collator can draw it from its seeded per-batch
generator (`mem_noise_tokens`), which makes evaluation losses repeat run to run. *MLM masking* (`mlm_mask_tokens`)
and *lead masking* (`mask_leads`, the official random-leads augmentation) are in `pretraining/collator.py`, because
they edit the data (token ids with the tokenizer's special tokens; the ECG, which is also the MEM target) and their
labels travel with the batch. The `lead_mask` argument of the forwards marks the leads present in a recording (the
feature extractor zero-fills the others); the ECG encoder zeroes the absent leads.

Inputs. The forwards check shapes and dtypes (Python integers, no host-device synchronisation) and never read tensor
values: the value checks (NaN/inf ECGs, token ids outside the vocabulary, empty texts) run on the CPU side, in
`DBetaProcessor` / `DBetaECGFeatureExtractor` and the pretraining collator. A training step therefore compiles into
one graph (`torch.compile`) and never waits for the device.

The names of the official checkpoint's parameters map to these in `conversion/convert_original_checkpoint.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrize import ParametrizationList
from transformers import (
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    T5EncoderModel,
)
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from . import losses
from .losses import ecg_text_logits  # noqa: F401  (this `from .losses import` form is what transformers' remote-code
# saver follows to copy losses.py next to modeling_dbeta.py; it does not see `from . import losses`)
from .configuration_dbeta import DBetaConfig, DBetaECGConfig
from .fast_conv import conv1d_forward
from .file_modes import apply_default_file_mode

logger = logging.get_logger(__name__)


# --------------------------------------------------------------------------------------------- outputs
@dataclass
class DBetaECGEncoderOutput(ModelOutput):
    """Output of `DBetaECGEncoder`.

    Args:
        last_hidden_state: (B, 1 + K, C) transformer output, CLS first; K = T unmasked, the kept tokens with MEM masking.
        mem_mask: (B, T) 1 = the ECG token was masked (None without masking).
        mem_ids_restore: (B, T) permutation that restores the token order after masking (None without masking).
        unmasked_hidden_state: (B, 1 + T, C) transformer output of the same tokens without MEM masking
            (`return_unmasked_ecg=True` with masking only; the conv features are computed once for both passes).
    """

    last_hidden_state: torch.FloatTensor | None = None
    mem_mask: torch.FloatTensor | None = None
    mem_ids_restore: torch.LongTensor | None = None
    unmasked_hidden_state: torch.FloatTensor | None = None


@dataclass
class DBetaModelOutput(ModelOutput):
    """Output of `DBetaModel`.

    Args:
        logits_per_ecg: (B, B) ECG-text logits `DBetaModel.ecg_text_logits(ecg_embeds, text_embeds)`: row i scores
            ECG i against every text of the batch.
        logits_per_text: (B, B) its transpose: row j scores text j against every ECG.
        ecg_embeds: (B, H) uni-modal ECG embedding (tanh-pooled CLS), the same as `get_ecg_features`.
        text_embeds: (B, H) uni-modal text embedding (tanh-pooled first token), the same as `get_text_features`.
        fusion_embeds: (B, 2H) fused embedding: text fusion pooler, then ECG fusion pooler.
        fusion_text_hidden_states: (B, L, H) text stream after the last fusion layer.
        fusion_ecg_hidden_states: (B, 1 + K, H) ECG stream after the last fusion layer (CLS first).
        all_fusion_ecg_hidden_states: the ECG stream entering each fusion layer, then leaving the last one
            (`num_fusion_layers + 1` tensors, as transformers' `hidden_states`); the MEM decoder reads entry
            `config.mem_layer`.
        ecg_hidden_states: (B, 1 + K, H) projected ECG encoder output.
        text_hidden_states: (B, L, H) projected T5 encoder output.
        mem_mask / mem_ids_restore: (B, T) MEM token masking (`apply_ecg_mask=True` only), see `DBetaECGEncoderOutput`.
        unmasked_ecg_embeds: (B, H) uni-modal ECG embedding of the unmasked tokens (`return_unmasked_ecg=True` with
            `apply_ecg_mask=True` only), the ETS view of `DBetaForPreTraining.forward(ets_unmasked_inputs=True)`.
        hidden_states: with `output_hidden_states=True`, the ECG transformer's input and layer outputs.
        attentions: with `output_attentions=True`, the ECG transformer's attention probabilities (eager attention).
        cross_attentions: with `output_attentions=True`, the fusion layers' cross-attention probabilities, text
            stream then ECG stream per layer (eager attention).
    """

    logits_per_ecg: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    ecg_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    fusion_embeds: torch.FloatTensor | None = None
    fusion_text_hidden_states: torch.FloatTensor | None = None
    fusion_ecg_hidden_states: torch.FloatTensor | None = None
    all_fusion_ecg_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    ecg_hidden_states: torch.FloatTensor | None = None
    text_hidden_states: torch.FloatTensor | None = None
    mem_mask: torch.FloatTensor | None = None
    mem_ids_restore: torch.LongTensor | None = None
    unmasked_ecg_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class DBetaForPreTrainingOutput(ModelOutput):
    """Output of `DBetaForPreTraining`.

    Args:
        loss: weighted sum of the losses computed (None with `return_loss=False`).
        mlm_loss, mem_loss, etm_loss, ets_loss: the four losses (None when not computed).
        mlm_logits: (B, L, V) MLM logits (None with `return_mlm_logits=False`).
        mem_logits: (B, T, leads, patch) reconstructed ECG patches (None without ECG masking).
        mem_mask: (B, T) 1 = the ECG token was masked.
        mem_ids_restore: (B, T) permutation that restores the token order after masking.
        etm_logits: (B, 2) ECG-text matching logits (class 1 = matched).
        ecg_embeds / text_embeds: (B, H) uni-modal embeddings that feed the ETS loss.
        mlm_accuracy / etm_accuracy: detached accuracies, for logging.
        hidden_states / attentions / cross_attentions: as in `DBetaModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    mem_loss: torch.FloatTensor | None = None
    etm_loss: torch.FloatTensor | None = None
    ets_loss: torch.FloatTensor | None = None
    mlm_logits: torch.FloatTensor | None = None
    mem_logits: torch.FloatTensor | None = None
    mem_mask: torch.FloatTensor | None = None
    mem_ids_restore: torch.LongTensor | None = None
    etm_logits: torch.FloatTensor | None = None
    ecg_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    mlm_accuracy: torch.FloatTensor | None = None
    etm_accuracy: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


# --------------------------------------------------------------------------------------------- attention
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
):
    """Plain softmax attention. query/key/value: (B, heads, L, d); mask: additive, broadcastable to (B, heads, Lq, Lk)."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def _attention(module: nn.Module, config, query, key, value, attention_mask, dropout: float):
    """Dispatch to the configured attention backend (eager, sdpa, flex, flash) through transformers' interface.
    Returns (output (B, L, heads, d), attention probabilities or None)."""
    interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)
    if attention_mask is not None:
        attention_mask = attention_mask.to(query.dtype)
    return interface(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout if module.training else 0.0,
        scaling=module.head_dim**-0.5,
        is_causal=False,
    )


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def additive_attention_mask(attention_mask: torch.Tensor | None, dtype=torch.float32) -> torch.Tensor | None:
    """(B, L) 1/0 key mask -> (B, 1, 1, L) additive mask (0 where attended, the dtype's minimum elsewhere)."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


# --------------------------------------------------------------------------------------------- ECG encoder
class DBetaFp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 (as fairseq's Fp32GroupNorm), cast back to the input dtype."""

    def forward(self, x):
        out = F.group_norm(
            x.float(), self.num_groups,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        )
        return out.type_as(x)


class DBetaFp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32, cast back to the input dtype."""

    def forward(self, x):
        out = F.layer_norm(
            x.float(), self.normalized_shape,
            self.weight.float() if self.weight is not None else None,
            self.bias.float() if self.bias is not None else None,
            self.eps,
        )
        return out.type_as(x)


class DBetaConvLayer(nn.Module):
    """One block of the conv feature extractor: `conv`, then `layer_norm` (a per-channel GroupNorm on the first block
    in `extractor_mode="default"`, a LayerNorm over channels on every block in `"layer_norm"`, or none), then GELU."""

    def __init__(self, config: DBetaECGConfig, layer_id: int, in_dim: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, dim, kernel, stride=stride, bias=config.conv_bias)
        if config.extractor_mode == "layer_norm":
            self.layer_norm = DBetaFp32LayerNorm(dim, eps=config.layer_norm_eps)
        elif layer_id == 0:
            self.layer_norm = DBetaFp32GroupNorm(dim, dim, eps=config.layer_norm_eps)
        else:
            self.layer_norm = None
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if isinstance(self.layer_norm, nn.LayerNorm):
            x = self.layer_norm(x.transpose(-2, -1)).transpose(-2, -1)
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.activation(x)


class DBetaConvFeatureExtractor(nn.Module):
    """Strided 1-D conv stack over the leads: (B, leads, samples) -> (B, conv_dim, T)."""

    def __init__(self, config: DBetaECGConfig):
        super().__init__()
        layers = []
        in_dim = config.num_leads
        for i, (dim, kernel, stride) in enumerate(config.conv_feature_layers):
            layers.append(DBetaConvLayer(config, i, in_dim, dim, kernel, stride))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, ecg_values: torch.Tensor) -> torch.Tensor:
        x = ecg_values
        for layer in self.conv_layers:
            x = layer(x)
        return x


class DBetaSamePad(nn.Module):
    """Drops the last frame after a conv with an even kernel and `padding=kernel // 2`, keeping the length."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x):
        return x[..., : x.shape[-1] - self.remove] if self.remove else x


class DBetaConvPositionalEncoding(nn.Module):
    """Convolutional relative positional encoding (wav2vec 2.0 style): the term `GELU(weight-normed grouped conv(x))`
    that the ECG encoder adds to its tokens."""

    def __init__(self, config: DBetaECGConfig):
        super().__init__()
        dim = config.encoder_embed_dim
        conv = nn.Conv1d(dim, dim, kernel_size=config.conv_pos, padding=config.conv_pos // 2, groups=config.conv_pos_groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.padding = DBetaSamePad(config.conv_pos)
        self.activation = nn.GELU()
        self.conv_impl = config.conv_pos_impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> the positional term (B, T, C). `config.conv_pos_impl="fft"` computes the same
        convolution through FFTs (far fewer FLOPs for the long kernel; same parameters)."""
        out = conv1d_forward(self.conv, x.transpose(1, 2), self.conv_impl)
        return self.activation(self.padding(out)).transpose(1, 2)


class DBetaECGSelfAttention(nn.Module):
    """fairseq-style multi-head self-attention (`q_proj`, `k_proj`, `v_proj`, `out_proj`). The attention backend is
    read from `attn_config` (the top-level `DBetaConfig`; the ECG config when the module is used alone)."""

    def __init__(self, config: DBetaECGConfig, attn_config=None):
        super().__init__()
        self.config = config
        self.attn_config = attn_config if attn_config is not None else config
        self.embed_dim = config.encoder_embed_dim
        self.num_heads = config.encoder_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = config.attention_dropout
        self.is_causal = False
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """-> (output (B, L, C), attention probabilities (B, heads, L, L) or None, depending on the backend)."""
        q = _split_heads(self.q_proj(hidden_states), self.num_heads)
        k = _split_heads(self.k_proj(hidden_states), self.num_heads)
        v = _split_heads(self.v_proj(hidden_states), self.num_heads)
        out, weights = _attention(self, self.attn_config, q, k, v, attention_mask, self.dropout)
        return self.out_proj(out.reshape(hidden_states.shape[0], hidden_states.shape[1], self.embed_dim)), weights


class DBetaECGEncoderLayer(GradientCheckpointingLayer):
    """Transformer layer of the ECG encoder: post-LN (official default) or pre-LN (`layer_norm_first=True`)."""

    def __init__(self, config: DBetaECGConfig, attn_config=None):
        super().__init__()
        dim = config.encoder_embed_dim
        self.layer_norm_first = config.layer_norm_first
        self.self_attn = DBetaECGSelfAttention(config, attn_config)
        self.dropout1 = nn.Dropout(config.dropout)
        self.dropout2 = nn.Dropout(config.activation_dropout)
        self.dropout3 = nn.Dropout(config.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(dim, config.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def _feed_forward(self, x):
        return self.dropout3(self.fc2(self.dropout2(F.gelu(self.fc1(x)))))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = hidden_states
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), attention_mask)[0])
            x = x + self._feed_forward(self.final_layer_norm(x))
        else:
            x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x, attention_mask)[0]))
            x = self.final_layer_norm(x + self._feed_forward(x))
        return x


class DBetaECGTransformer(nn.Module):
    """The ECG transformer: input LayerNorm (post-LN) or final LayerNorm (pre-LN), dropout, layers with LayerDrop."""

    def __init__(self, config: DBetaECGConfig, attn_config=None):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layerdrop = config.encoder_layerdrop
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList([DBetaECGEncoderLayer(config, attn_config) for _ in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.encoder_embed_dim, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = hidden_states
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                continue
            x = layer(x, attention_mask)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x


class _GradMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def random_masking(num_tokens: int, mem_mask_ratio: float, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MEM token masking: MAE random masking driven by `noise` (B, T); the tokens with the smallest noise are kept.

    Returns `ids_keep` (B, K) with K = int(T * (1 - mem_mask_ratio)), `mask` (B, T; 1 = removed) and `ids_restore`
    (B, T).
    """
    if noise.dim() != 2 or noise.shape[1] != num_tokens:
        raise ValueError(f"noise must have shape (batch, {num_tokens}) (one value per ECG token), got {tuple(noise.shape)}")
    len_keep = int(num_tokens * (1 - mem_mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones_like(noise)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


def check_ecg_shape(ecg_values: torch.Tensor, ecg_config: DBetaECGConfig) -> None:
    """Type, shape and dtype of the ECG input (Python integers only: no host-device synchronisation)."""
    if not isinstance(ecg_values, torch.Tensor):
        raise TypeError(
            f"ecg_values must be a torch.Tensor of shape (batch, {ecg_config.num_leads}, samples), got "
            f"{type(ecg_values).__name__}; use DBetaProcessor / DBetaECGFeatureExtractor(return_tensors='pt')"
        )
    if ecg_values.dim() == 2:
        raise ValueError(
            f"ecg_values has shape {tuple(ecg_values.shape)}: a single (leads, samples) recording without a batch "
            f"dimension; pass ecg_values[None] (shape (1, {ecg_config.num_leads}, samples))"
        )
    if ecg_values.dim() != 3:
        raise ValueError(f"ecg_values must be (batch, leads, samples), got shape {tuple(ecg_values.shape)}")
    if ecg_values.shape[0] == 0:
        raise ValueError(f"ecg_values is an empty batch (shape {tuple(ecg_values.shape)}); pass at least one ECG")
    if ecg_values.shape[1] != ecg_config.num_leads:
        hint = " (it looks like (batch, samples, leads): transpose the last two dims)" if ecg_values.shape[2] == ecg_config.num_leads else ""
        raise ValueError(
            f"ecg_values has {ecg_values.shape[1]} leads but the model expects {ecg_config.num_leads}{hint}; map your leads "
            f"to the canonical order with DBetaECGFeatureExtractor(lead_names=...), which zero-fills missing leads"
        )
    if ecg_values.shape[2] < ecg_config.min_num_samples():
        raise ValueError(
            f"ecg_values has {ecg_values.shape[2]} samples, too few for the conv stack (needs at least "
            f"{ecg_config.min_num_samples()}; the model was trained on {ecg_config.num_samples} samples at "
            f"{ecg_config.sampling_rate} Hz): pad or resample with DBetaECGFeatureExtractor"
        )
    if not ecg_values.is_floating_point():
        raise TypeError(f"ecg_values must be a float tensor (millivolts), got {ecg_values.dtype}")


class DBetaECGEncoder(nn.Module):
    """The ECG tower (fairseq-signals `ECGTransformerModel`), up to the transformer output:

    conv features -> LayerNorm -> projection -> dropout -> + conv positional encoding -> MEM token masking
    (optional) -> CLS token prepended -> transformer (`encoder`).
    """

    def __init__(self, config: DBetaConfig):
        super().__init__()
        ecg_config = config.ecg_config
        self.config = config
        # attention modules read `_attn_implementation` from the top-level config
        self.encoder = DBetaECGTransformer(ecg_config, config)
        self.feature_extractor = DBetaConvFeatureExtractor(ecg_config)
        self.layer_norm = nn.LayerNorm(ecg_config.conv_dim, eps=ecg_config.layer_norm_eps)
        self.post_extract_proj = (
            nn.Linear(ecg_config.conv_dim, ecg_config.encoder_embed_dim)
            if ecg_config.conv_dim != ecg_config.encoder_embed_dim else None
        )
        self.dropout_input = nn.Dropout(ecg_config.dropout_input)
        self.conv_pos = DBetaConvPositionalEncoding(ecg_config)
        self.class_embedding = nn.Parameter(torch.zeros(ecg_config.encoder_embed_dim))

    def _cast_to_model_dtype(self, ecg_values: torch.Tensor) -> torch.Tensor:
        """Cast floating ECG input of another precision (e.g. float16 on the CPU) to the model's dtype, warning once."""
        dtype = self.class_embedding.dtype
        if ecg_values.dtype != dtype and not torch.is_autocast_enabled(ecg_values.device.type):
            logger.warning_once(
                f"ecg_values are {ecg_values.dtype} but the model is {dtype}: they are cast to {dtype}. Cast them "
                f"yourself (or load the model in {ecg_values.dtype}) to silence this warning."
            )
            ecg_values = ecg_values.to(dtype)
        return ecg_values

    def _apply_lead_mask(self, ecg_values: torch.Tensor, lead_mask: torch.Tensor | None) -> torch.Tensor:
        """Zero the absent leads (`lead_mask` (B, leads), True = present)."""
        if lead_mask is None:
            return ecg_values
        if tuple(lead_mask.shape) != tuple(ecg_values.shape[:2]):
            raise ValueError(
                f"lead_mask has shape {tuple(lead_mask.shape)} but ecg_values {tuple(ecg_values.shape)}; it must be "
                "(batch, leads), True for the leads present (as DBetaECGFeatureExtractor returns it)"
            )
        return ecg_values.masked_fill(~lead_mask.to(device=ecg_values.device, dtype=torch.bool)[..., None], 0.0)

    def embed(self, ecg_values: torch.Tensor) -> torch.Tensor:
        """ECGs (B, leads, samples) -> token embeddings (B, T, C) with the positional term, before masking."""
        features = self.feature_extractor(ecg_values)
        if self.config.ecg_config.feature_grad_mult != 1.0 and self.training:
            features = _GradMultiply.apply(features, self.config.ecg_config.feature_grad_mult)
        x = self.layer_norm(features.transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        x = self.dropout_input(x)
        return x + self.conv_pos(x)

    def forward(
        self,
        ecg_values: torch.Tensor,
        lead_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        apply_ecg_mask: bool = False,
        return_unmasked_ecg: bool = False,
    ) -> DBetaECGEncoderOutput:
        """ECGs (B, leads, samples) in millivolts -> transformer output (B, 1 + K, C), CLS first.

        `lead_mask` (B, leads), True = the lead is present: absent leads are zeroed (the feature extractor already
        zero-fills them). With `apply_ecg_mask`, MEM token masking keeps `int(T * (1 - mem_mask_ratio))` tokens,
        chosen by `noise` (B, T) (drawn here when omitted). `return_unmasked_ecg` (with `apply_ecg_mask`) also runs
        the transformer on all tokens (`unmasked_hidden_state`), reusing the conv features of the masked pass.
        """
        check_ecg_shape(ecg_values, self.config.ecg_config)
        ecg_values = self._apply_lead_mask(self._cast_to_model_dtype(ecg_values), lead_mask)
        x = self.embed(ecg_values)
        batch, num_tokens, width = x.shape
        cls = self.class_embedding.to(x.dtype).expand(batch, 1, width)
        mem_mask = ids_restore = unmasked = None
        if apply_ecg_mask:
            if return_unmasked_ecg:
                unmasked = self.encoder(torch.cat([cls, x], dim=1))
            if noise is None:
                noise = torch.rand(batch, num_tokens, device=x.device)
            ids_keep, mem_mask, ids_restore = random_masking(num_tokens, self.config.mem_mask_ratio, noise.to(x.device))
            x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, width))
        x = self.encoder(torch.cat([cls, x], dim=1))
        return DBetaECGEncoderOutput(last_hidden_state=x, mem_mask=mem_mask, mem_ids_restore=ids_restore,
                                     unmasked_hidden_state=unmasked)


# --------------------------------------------------------------------------------------------- fusion
class DBetaFusionMultiHeadAttention(nn.Module):
    """BERT-style attention projections (`query`, `key`, `value`) of a fusion layer, through the configured attention
    backend; `DBetaFusionSelfAttention` and `DBetaFusionCrossAttention` choose where keys and values come from."""

    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_heads
        self.head_dim = config.hidden_dim // config.num_heads
        self.is_causal = False
        self.dropout = config.drop_rate
        self.query = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.key = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.value = nn.Linear(config.hidden_dim, config.hidden_dim)

    def attend(self, hidden_states, key_value_states, attention_mask):
        """-> (output (B, L, H), attention probabilities (B, heads, L, L') or None, depending on the backend)."""
        q = _split_heads(self.query(hidden_states), self.num_heads)
        k = _split_heads(self.key(key_value_states), self.num_heads)
        v = _split_heads(self.value(key_value_states), self.num_heads)
        out, weights = _attention(self, self.config, q, k, v, attention_mask, self.dropout)
        return out.reshape(hidden_states.shape[0], hidden_states.shape[1], -1), weights


class DBetaFusionSelfAttention(DBetaFusionMultiHeadAttention):
    """Attention of a fusion stream over itself."""

    def forward(self, hidden_states, attention_mask=None):
        return self.attend(hidden_states, hidden_states, attention_mask)


class DBetaFusionCrossAttention(DBetaFusionMultiHeadAttention):
    """Attention of a fusion stream over the other stream (`key_value_states`): text over ECG tokens or ECG over text
    tokens."""

    def forward(self, hidden_states, key_value_states, attention_mask=None):
        return self.attend(hidden_states, key_value_states, attention_mask)


class DBetaFusionOutput(nn.Module):
    """Dense, dropout, residual, LayerNorm: the output block of a fusion attention and of the fusion feed-forward."""

    def __init__(self, config: DBetaConfig, input_dim: int | None = None):
        super().__init__()
        self.dense = nn.Linear(input_dim or config.hidden_dim, config.hidden_dim)
        self.LayerNorm = nn.LayerNorm(config.hidden_dim, eps=config.fusion_layer_norm_eps)
        self.dropout = nn.Dropout(config.drop_rate)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class DBetaFusionAttention(nn.Module):
    """Self-attention (or, with `is_cross_attention`, cross-attention to the other stream) and its output block."""

    def __init__(self, config: DBetaConfig, is_cross_attention: bool = False):
        super().__init__()
        self.self = DBetaFusionCrossAttention(config) if is_cross_attention else DBetaFusionSelfAttention(config)
        self.output = DBetaFusionOutput(config)

    def forward(self, hidden_states, attention_mask=None, key_value_states=None):
        if key_value_states is None:
            attended = self.self(hidden_states, attention_mask)[0]
        else:
            attended = self.self(hidden_states, key_value_states, attention_mask)[0]
        return self.output(attended, hidden_states)


class DBetaFusionIntermediate(nn.Module):
    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_dim, config.fusion_intermediate_size)

    def forward(self, hidden_states):
        return F.gelu(self.dense(hidden_states))


class DBetaFusionLayer(GradientCheckpointingLayer):
    """One cross-attention fusion layer (METER/M3AE `BertCrossLayer`): self-attention, cross-attention to the other
    modality, feed-forward; post-LN residual blocks."""

    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.attention = DBetaFusionAttention(config)
        self.crossattention = DBetaFusionAttention(config, is_cross_attention=True)
        self.intermediate = DBetaFusionIntermediate(config)
        self.output = DBetaFusionOutput(config, input_dim=config.fusion_intermediate_size)

    def forward(self, hidden_states, other_states, self_attention_mask=None, cross_attention_mask=None):
        x = self.attention(hidden_states, self_attention_mask)
        x = self.crossattention(x, cross_attention_mask, key_value_states=other_states)
        return self.output(self.intermediate(x), x)


class DBetaPooler(nn.Module):
    """First token -> Linear -> tanh."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.dense = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))


# --------------------------------------------------------------------------------------------- heads
class DBetaMLMPredictionTransform(nn.Module):
    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.LayerNorm = nn.LayerNorm(config.hidden_dim, eps=config.fusion_layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class DBetaMLMHead(nn.Module):
    """BERT-style MLM head: dense + GELU + LayerNorm, then a bias-free decoder plus a separate bias."""

    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.transform = DBetaMLMPredictionTransform(config)
        self.decoder = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class DBetaQuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class DBetaPackedSelfAttention(nn.Module):
    """Self-attention with a packed input projection (`in_proj_weight`, `in_proj_bias`): the parameter layout of
    `nn.MultiheadAttention` in the official checkpoint, run through SDPA / eager on batch-first tensors."""

    def __init__(self, width: int, num_heads: int, config: DBetaConfig):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.is_causal = False
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        out, _ = _attention(self, self.config, _split_heads(q, self.num_heads), _split_heads(k, self.num_heads),
                            _split_heads(v, self.num_heads), None, 0.0)
        return self.out_proj(out.reshape(x.shape[0], x.shape[1], -1))


class DBetaMEMDecoderBlock(GradientCheckpointingLayer):
    """CLIP-style pre-LN residual block of the MEM decoder (QuickGELU MLP, float32 LayerNorms)."""

    def __init__(self, width: int, num_heads: int, config: DBetaConfig):
        super().__init__()
        self.attn = DBetaPackedSelfAttention(width, num_heads, config)
        self.ln_1 = DBetaFp32LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", DBetaQuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = DBetaFp32LayerNorm(width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class DBetaMEMDecoderStack(nn.Module):
    def __init__(self, width: int, layers: int, num_heads: int, config: DBetaConfig):
        super().__init__()
        self.resblocks = nn.ModuleList([DBetaMEMDecoderBlock(width, num_heads, config) for _ in range(layers)])

    def forward(self, x):
        for block in self.resblocks:
            x = block(x)
        return x


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim) fixed sinusoidal table: sin on even channels, cos on odd ones."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term[: dim // 2])
    return table[None]


class DBetaMEMPositionalEncoding(nn.Module):
    """Holds the MEM decoder's fixed sinusoidal table as `pe`. A module and a persistent buffer only so that the key
    `mem_head.decoder_pos_embed.pe` of the official checkpoint has a place (its value is recomputed at init)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, dim), persistent=True)


class DBetaMEMHead(nn.Module):
    """MAE-style decoder that reconstructs every ECG token's patch (leads x patch samples) from the fused ECG stream."""

    def __init__(self, config: DBetaConfig):
        super().__init__()
        width = config.mem_decoder_hidden_dim
        self.num_leads = config.ecg_config.num_leads
        self.patch_size = config.mem_patch_size
        self.decoder_embed = nn.Linear(config.hidden_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_embed = DBetaMEMPositionalEncoding(width, max(512, config.num_ecg_tokens + 1))
        self.decoder = DBetaMEMDecoderStack(width, config.mem_decoder_num_layers, config.mem_decoder_num_heads, config)
        self.decoder_norm = nn.LayerNorm(width)
        self.decoder_pred = nn.Linear(width, self.patch_size * self.num_leads)

    def forward(self, hidden_states: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, 1 + K, H) kept tokens with CLS first; ids_restore: (B, T) -> (B, T, leads, patch)."""
        x = self.decoder_embed(hidden_states)
        batch, num_tokens = ids_restore.shape
        if num_tokens + 1 > self.decoder_pos_embed.pe.shape[1]:
            raise ValueError(f"MEM decoder positions cover {self.decoder_pos_embed.pe.shape[1] - 1} tokens, got {num_tokens}")
        mask_tokens = self.mask_token.to(x.dtype).expand(batch, num_tokens + 1 - x.shape[1], -1)
        tokens = torch.cat([x[:, 1:], mask_tokens], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], tokens], dim=1)
        x = x + self.decoder_pos_embed.pe[:, : num_tokens + 1].to(x.dtype)
        x = self.decoder_norm(self.decoder(x))
        x = self.decoder_pred(x)[:, 1:]
        return x.reshape(batch, num_tokens, self.num_leads, self.patch_size)


class DBetaETMHead(nn.Module):
    """ECG-text matching head: Linear(2H, 2) on the fused embedding (`fc`, the layout of the official checkpoint)."""

    def __init__(self, config: DBetaConfig):
        super().__init__()
        self.fc = nn.Linear(2 * config.hidden_dim, 2)

    def forward(self, x):
        return self.fc(x)


# --------------------------------------------------------------------------------------------- loading
def _check_loaded_weights(model: nn.Module, loading_info: dict, source) -> None:
    """Raise when `from_pretrained` left backbone weights random or loaded non-finite values (see `from_pretrained`)."""
    prefix = model.base_model_prefix
    has_heads = isinstance(getattr(model, prefix, None), nn.Module)

    def is_backbone(key: str) -> bool:
        return not has_heads or key.startswith(f"{prefix}.")

    mismatched = {key for key, *_ in loading_info.get("mismatched_keys", ())}
    new_keys = set(loading_info.get("missing_keys", ())) | mismatched
    backbone = sorted(key for key in new_keys if is_backbone(key))
    if backbone:
        shown = ", ".join(backbone[:10]) + (f" and {len(backbone) - 10} more" if len(backbone) > 10 else "")
        raise ValueError(
            f"{type(model).__name__}.from_pretrained({str(source)!r}): the checkpoint lacks (or has another shape for) "
            f"{len(backbone)} backbone weight(s): {shown}. They would stay randomly initialised. The checkpoint does not "
            "match this model class or config (e.g. an ECG-only checkpoint loaded into a model with a text tower), or "
            "the file is incomplete."
        )
    heads = sorted(new_keys)
    if heads:
        logger.info(f"{type(model).__name__}: new head weights, randomly initialised, to be trained: {', '.join(heads)}")
    for name, tensor in model.state_dict().items():
        if name in new_keys or not tensor.is_floating_point() or tensor.is_meta:
            continue
        if not bool(torch.isfinite(tensor).all()):
            count = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{type(model).__name__}.from_pretrained({str(source)!r}): the loaded weight {name} holds {count} NaN "
                f"or infinite value(s) of {tensor.numel()}; the checkpoint is corrupt (or was saved after training "
                "diverged). Use an earlier checkpoint."
            )


_IGNORED_KWARGS = {"output_attentions", "output_hidden_states", "num_items_in_batch", "use_cache"}


def _warn_unused_kwargs(model_name: str, kwargs: dict) -> None:
    unused = sorted(set(kwargs) - _IGNORED_KWARGS)
    if unused:
        logger.warning_once(f"{model_name}.forward ignores the arguments {unused}")


# --------------------------------------------------------------------------------------------- base class
class DBetaPreTrainedModel(PreTrainedModel):
    config_class = DBetaConfig
    config: DBetaConfig
    base_model_prefix = "model"
    main_input_name = "ecg_values"
    input_modalities = ("ecg", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["DBetaECGEncoderLayer", "DBetaFusionLayer", "DBetaMEMDecoderBlock", "T5Block"]
    _keep_in_fp32_modules = ["wo"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = False
    accepts_loss_kwargs = False  # the loss is a mean per batch; Trainer must not pass num_items_in_batch
    _can_record_outputs = {
        "hidden_states": DBetaECGEncoderLayer,
        "attentions": OutputRecorder(DBetaECGSelfAttention, index=1),
        "cross_attentions": OutputRecorder(DBetaFusionCrossAttention, index=1),
    }
    # every D-BETA head loads from any D-BETA folder, so a saved folder names them all in its `auto_map`
    _auto_map_of_saved_folder = {
        "AutoModel": "modeling_dbeta.DBetaModel",
        "AutoModelForPreTraining": "modeling_dbeta.DBetaForPreTraining",
        "AutoModelForSequenceClassification": "modeling_dbeta.DBetaForECGClassification",
    }

    def _init_weights(self, module):
        """Initialisation of the official model (reference spec A.7), through transformers' guarded init functions.

        transformers calls this on every module that directly holds parameters or buffers, so the convolutions are
        handled at the leaf level: the feature-extractor convs get Kaiming-normal weights; the positional conv's
        weight-norm parametrization gets v ~ N(0, sqrt(4 / (kernel * channels))) and g = ||v|| per kernel tap.
        """
        std = self.config.initializer_range
        if isinstance(module, ParametrizationList) and hasattr(module, "original1"):
            v = module.original1
            kernel = v.shape[-1]
            init.normal_(v, mean=0.0, std=math.sqrt(4.0 / (kernel * v.shape[0])))
            with torch.no_grad():
                norm = torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True)
            init.copy_(module.original0, norm)
        elif isinstance(module, nn.Conv1d):
            if not parametrize.is_parametrized(module):
                init.kaiming_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, DBetaPackedSelfAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, DBetaMEMHead):
            init.normal_(module.mask_token, mean=0.0, std=std)
        elif isinstance(module, DBetaMEMPositionalEncoding):
            init.copy_(module.pe, sinusoidal_positions(module.pe.shape[1], module.pe.shape[2]))
        elif isinstance(module, DBetaMLMHead):
            init.zeros_(module.bias)
        elif isinstance(module, (DBetaModel, DBetaECGModel)):
            init.uniform_(module.ecg_encoder.class_embedding, 0.0, 1.0)
            if isinstance(module, DBetaModel):
                init.constant_(module.logit_scale, math.log(self.config.ets_logit_scale_init))
                if module.logit_bias is not None:
                    init.constant_(module.logit_bias, float(self.config.ets_logit_bias_init))

    def _initialize_weights(self, module, is_custom_code: bool = False):
        # The CLS token (a parameter of the ECG encoder) is drawn when its model module is reached, after every other
        # weight of the model's subtree, the order of the official initialisation, so that a seed gives the same fresh
        # model. transformers would skip a custom-code module without parameters of its own.
        if isinstance(module, (DBetaModel, DBetaECGModel)) and not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            module._is_hf_initialized = True
            return
        super()._initialize_weights(module, is_custom_code)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` with two checks on what was loaded.

        A backbone weight (anything under `model.`, or any weight of `DBetaModel` / `DBetaECGModel`) that the
        checkpoint lacks or holds in another shape is an error naming it: it would otherwise stay randomly
        initialised. Head weights that are new by design (a classification head, or the pretraining heads when a
        `DBetaModel` checkpoint is loaded into `DBetaForPreTraining`) stay allowed and are named in one info line.
        A NaN or infinite value in a loaded weight is an error naming the tensor.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, loading_info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        _check_loaded_weights(model, loading_info, source)
        return (model, loading_info) if output_loading_info else model

    @classmethod
    def from_text_pretrained(cls, text_model_name_or_path: str = "google/flan-t5-base",
                             config: DBetaConfig | None = None, ecg_config: dict | DBetaECGConfig | None = None,
                             **kwargs):
        """A fresh model of this class whose text tower holds pretrained T5 weights (how pretraining starts).

        `DBetaForPreTraining.from_text_pretrained("google/flan-t5-base")` (the default) or any local T5 folder.
        `kwargs` go to `DBetaConfig` (e.g. `hidden_dim`, `num_fusion_layers`) except `cache_dir`, `revision`, `token`
        and `local_files_only`, which go to `T5EncoderModel.from_pretrained`. The MLM vocabulary follows the T5
        vocabulary. Only the classes with a text tower (`DBetaModel`, `DBetaForPreTraining`) have one to load.
        """
        if not issubclass(cls, (DBetaModel, DBetaForPreTraining)):
            raise TypeError(f"{cls.__name__} has no text tower; use DBetaModel or DBetaForPreTraining.from_text_pretrained")
        load_kwargs = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        text_model = T5EncoderModel.from_pretrained(text_model_name_or_path, **load_kwargs)
        if config is None:
            kwargs.setdefault("vocab_size", text_model.config.vocab_size)
            config = DBetaConfig(ecg_config=ecg_config, text_config=text_model.config.to_dict(), **kwargs)
        model = cls(config)
        missing, unexpected = model.base_model.text_encoder.load_state_dict(text_model.state_dict(), strict=False)
        missing = [k for k in missing if k != "encoder.embed_tokens.weight"]
        if missing or unexpected:
            raise RuntimeError(
                f"text weights from {text_model_name_or_path} do not fit: missing {missing}, unexpected {unexpected}"
            )
        return model

    save_hooks: list = []  # called with the folder after every save (dbeta_hf.register_auto_classes adds the model card's)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`; in the installed package (whose modules register the classes for the Auto
        classes), the folder also gets the code files and an `auto_map` naming every D-BETA head, so that it loads
        with `trust_remote_code=True` where dbeta_hf is not installed."""
        if self._auto_class is not None:
            self.config.auto_map = {**self._auto_map_of_saved_folder, **(getattr(self.config, "auto_map", None) or {})}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        apply_default_file_mode(Path(save_directory).glob("*.safetensors"))  # safetensors writes them 0600
        if kwargs.get("is_main_process", True):
            for hook in DBetaPreTrainedModel.save_hooks:  # dbeta_hf.register_auto_classes adds the model card's
                hook(save_directory)
        return result


# --------------------------------------------------------------------------------------------- models
class DBetaECGModel(DBetaPreTrainedModel):
    """The ECG tower alone: `DBetaECGEncoder`, projection and uni-modal pooler.

    Loads the ECG part of any D-BETA checkpoint: `DBetaECGModel.from_pretrained(path)`; the text tower and fusion
    weights of the checkpoint are left unused.
    """

    # the text tower, fusion and heads of a full checkpoint are not part of the ECG tower
    _keys_to_ignore_on_load_unexpected = [
        r"text_encoder\.", r"text_projection\.", r"(ecg|text)_fusion_", r"text_pooler\.", r"modality_type_embeddings",
        r"(mlm|mem|etm)_head\.", r"logit_(scale|bias)$",
    ]
    _can_record_outputs = {
        "hidden_states": DBetaECGEncoderLayer,
        "attentions": OutputRecorder(DBetaECGSelfAttention, index=1),
    }

    def __init__(self, config: DBetaConfig):
        super().__init__(config)
        self.ecg_encoder = DBetaECGEncoder(config)
        self.ecg_projection = nn.Linear(config.ecg_config.encoder_embed_dim, config.hidden_dim)
        self.ecg_pooler = DBetaPooler(config.hidden_dim)
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, ecg_values: torch.Tensor, lead_mask: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                apply_ecg_mask: bool = False, **kwargs) -> BaseModelOutputWithPooling:
        """ECGs (B, leads, samples) -> projected tokens (B, 1 + K, H) and the pooled ECG embedding (B, H).
        `lead_mask`, `noise` and `apply_ecg_mask`: see `DBetaECGEncoder.forward`."""
        _warn_unused_kwargs(type(self).__name__, kwargs)
        encoded = self.ecg_encoder(ecg_values, lead_mask, noise, apply_ecg_mask)
        hidden = self.ecg_projection(encoded.last_hidden_state)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=self.ecg_pooler(hidden))

    def get_ecg_features(self, ecg_values: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(ecg_values, lead_mask).pooler_output


def check_text_shape(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    """Type, shape and dtype of the text input (Python integers only: no host-device synchronisation)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError(
            "input_ids must be a (batch, length) tensor of token ids; tokenise reports with DBetaProcessor(text=...)"
        )
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}); pass at least one tokenised text")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got {input_ids.dtype}")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {tuple(input_ids.shape)}; "
            "pass the attention_mask the tokenizer returned with these input_ids"
        )


class DBetaModel(DBetaPreTrainedModel):
    """D-BETA: ECG encoder + T5 text encoder + two streams of cross-attention fusion layers.

    `get_ecg_features` / `get_text_features` give the uni-modal embeddings used for zero-shot scoring and linear
    probing, `ecg_text_logits` scores them against each other; `forward` also runs the fusion layers. Call
    `model.eval()` for deterministic features (dropout is active in training mode).

    `logit_scale` and `logit_bias` (shape (1,)) are parameters when `config.ets_learnable_scale` /
    `config.ets_learnable_bias` are set, and persistent buffers otherwise, so that a checkpoint always carries the
    values it was trained with; `logit_bias` is None without a bias (`config.ets_logit_bias_init=None`).
    """

    # loading from a DBetaForPreTraining checkpoint: its pretraining heads are not part of the base model
    _keys_to_ignore_on_load_unexpected = [r"(mlm|mem|etm)_head\."]

    def __init__(self, config: DBetaConfig):
        super().__init__(config)
        ecg_config = config.ecg_config
        self.ecg_encoder = DBetaECGEncoder(config)
        self.text_encoder = T5EncoderModel(config.text_config)
        self.text_projection = nn.Linear(config.text_config.d_model, config.hidden_dim)
        self.ecg_projection = nn.Linear(ecg_config.encoder_embed_dim, config.hidden_dim)
        self.modality_type_embeddings = nn.Embedding(2, config.hidden_dim)
        self.ecg_fusion_layers = nn.ModuleList([DBetaFusionLayer(config) for _ in range(config.num_fusion_layers)])
        self.text_fusion_layers = nn.ModuleList([DBetaFusionLayer(config) for _ in range(config.num_fusion_layers)])
        self.ecg_fusion_pooler = DBetaPooler(config.hidden_dim)
        self.text_fusion_pooler = DBetaPooler(config.hidden_dim)
        self.ecg_pooler = DBetaPooler(config.hidden_dim)
        self.text_pooler = DBetaPooler(config.hidden_dim)
        self._add_logit_scale_and_bias(config)
        self.post_init()

    def _add_logit_scale_and_bias(self, config: DBetaConfig) -> None:
        log_scale = torch.full((1,), math.log(config.ets_logit_scale_init))
        if config.ets_learnable_scale:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("logit_scale", log_scale)
        if config.ets_logit_bias_init is None:
            self.logit_bias = None
        elif config.ets_learnable_bias:
            self.logit_bias = nn.Parameter(torch.full((1,), float(config.ets_logit_bias_init)))
        else:
            self.register_buffer("logit_bias", torch.full((1,), float(config.ets_logit_bias_init)))

    def get_input_embeddings(self):
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.text_encoder.set_input_embeddings(value)

    # ------------------------------------------------------------------ towers
    def encode_ecg(self, ecg_values: torch.Tensor, lead_mask: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None, apply_ecg_mask: bool = False,
                   return_unmasked_ecg: bool = False) -> DBetaECGEncoderOutput:
        """The ECG tower and its projection: `last_hidden_state` (B, 1 + K, H) plus the MEM masking outputs (and the
        projected `unmasked_hidden_state` with `return_unmasked_ecg`)."""
        encoded = self.ecg_encoder(ecg_values, lead_mask, noise, apply_ecg_mask, return_unmasked_ecg)
        encoded.last_hidden_state = self.ecg_projection(encoded.last_hidden_state)
        if encoded.unmasked_hidden_state is not None:
            encoded.unmasked_hidden_state = self.ecg_projection(encoded.unmasked_hidden_state)
        return encoded

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The T5 encoder and its projection: (B, L) token ids -> (B, L, H)."""
        inputs_embeds = self.text_encoder.get_input_embeddings()(input_ids)
        if attention_mask is not None:
            # the 4-D mask of the text tower's attention backend, built here: given the 2-D mask, transformers would
            # test it on the host (`attention_mask.all()`, a device synchronisation) to drop an all-ones mask
            attention_mask = create_bidirectional_mask(config=self.text_encoder.config, inputs_embeds=inputs_embeds,
                                                       attention_mask=attention_mask, allow_is_bidirectional_skip=False)
        hidden = self.text_encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return self.text_projection(hidden)

    def get_ecg_features(self, ecg_values: torch.Tensor, lead_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, leads, samples) ECGs in millivolts -> (B, hidden_dim) uni-modal ECG embeddings (no masking)."""
        return self.ecg_pooler(self.encode_ecg(ecg_values, lead_mask).last_hidden_state)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) token ids -> (B, hidden_dim) uni-modal text embeddings (T5 encoder, projection, pooler)."""
        check_text_shape(input_ids, attention_mask)
        return self.pool_text(self.encode_text(input_ids, attention_mask), attention_mask)

    def pool_text(self, text_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, H) projected text tokens -> (B, H) uni-modal text embedding: the pooler (Linear, tanh) on the first
        token (`config.text_pooling="first"`, official) or on the mean of the real tokens (`"mean"`)."""
        if self.config.text_pooling == "first":
            return self.text_pooler(text_hidden)
        if attention_mask is None:
            mean = text_hidden.mean(dim=1)
        else:
            weights = attention_mask.to(text_hidden.dtype)[..., None]
            mean = (text_hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return self.text_pooler(mean[:, None])

    def ecg_text_logits(self, ecg_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """(N, H) ECG and (M, H) text embeddings -> (N, M) float32 logits `logit_scale.exp() * e @ t.T + logit_bias`,
        on L2-normalized embeddings with `config.ets_normalize_embeddings`.

        The one ECG-text similarity of the model: the ETS loss trains it, zero-shot classification, retrieval and the
        zero-shot pipeline score with it. With the official config (scale 1, no bias, no normalization) it is the raw
        dot product.
        """
        return losses.ecg_text_logits(ecg_embeds, text_embeds, self.logit_scale.exp(), self.logit_bias,
                                      self.config.ets_normalize_embeddings)

    # ------------------------------------------------------------------ fusion
    def fuse(self, text_hidden: torch.Tensor, ecg_hidden: torch.Tensor, attention_mask: torch.Tensor | None):
        """Run both fusion streams: modality-type embeddings, then each layer's self-attention, cross-attention to the
        other stream and feed-forward. Returns (text stream, ECG stream, the ECG stream entering each layer and
        leaving the last)."""
        text_types = torch.zeros(1, 1, dtype=torch.long, device=text_hidden.device)
        x = text_hidden + self.modality_type_embeddings(text_types)
        y = ecg_hidden + self.modality_type_embeddings(torch.ones_like(text_types))
        text_mask = additive_attention_mask(attention_mask)
        ecg_states = [y]
        for text_layer, ecg_layer in zip(self.text_fusion_layers, self.ecg_fusion_layers):
            x, y = text_layer(x, y, text_mask, None), ecg_layer(y, x, None, text_mask)
            ecg_states.append(y)
        return x, y, tuple(ecg_states)

    def _check_paired_inputs(self, ecg_values, input_ids: torch.Tensor, attention_mask) -> None:
        if ecg_values is None or input_ids is None:
            raise ValueError(
                "DBetaModel.forward needs both ecg_values and input_ids; for one modality use get_ecg_features or "
                "get_text_features"
            )
        check_text_shape(input_ids, attention_mask)
        if isinstance(ecg_values, torch.Tensor) and ecg_values.dim() >= 1 and ecg_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"ecg_values holds {ecg_values.shape[0]} ECGs but input_ids {input_ids.shape[0]} texts; pass one text "
                "per ECG (for other pairings use get_ecg_features, get_text_features and ecg_text_logits)"
            )

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        ecg_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        lead_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        apply_ecg_mask: bool = False,
        return_unmasked_ecg: bool = False,
        **kwargs,
    ) -> DBetaModelOutput:
        """ECGs (B, leads, samples) and tokenised reports (B, L) -> ECG-text logits, embeddings and fused hidden states.

        `lead_mask`, `noise` and `apply_ecg_mask` (MEM token masking, off by default): see `DBetaECGEncoder.forward`.
        `return_unmasked_ecg` (with `apply_ecg_mask`) adds `unmasked_ecg_embeds`, the embedding of an unmasked pass
        that shares the masked pass's conv features (with `output_hidden_states` the ECG transformer's states of
        both passes are recorded, the unmasked pass first).
        """
        _warn_unused_kwargs(type(self).__name__, kwargs)
        self._check_paired_inputs(ecg_values, input_ids, attention_mask)
        encoded = self.encode_ecg(ecg_values, lead_mask, noise, apply_ecg_mask, return_unmasked_ecg)
        ecg_hidden = encoded.last_hidden_state
        text_hidden = self.encode_text(input_ids, attention_mask)
        text_fused, ecg_fused, all_ecg_fused = self.fuse(text_hidden, ecg_hidden, attention_mask)
        ecg_embeds = self.ecg_pooler(ecg_hidden)
        text_embeds = self.pool_text(text_hidden, attention_mask)
        logits_per_ecg = self.ecg_text_logits(ecg_embeds, text_embeds)
        return DBetaModelOutput(
            logits_per_ecg=logits_per_ecg,
            logits_per_text=logits_per_ecg.T,
            ecg_embeds=ecg_embeds,
            text_embeds=text_embeds,
            fusion_embeds=torch.cat([self.text_fusion_pooler(text_fused), self.ecg_fusion_pooler(ecg_fused)], dim=-1),
            fusion_text_hidden_states=text_fused,
            fusion_ecg_hidden_states=ecg_fused,
            all_fusion_ecg_hidden_states=all_ecg_fused,
            ecg_hidden_states=ecg_hidden,
            text_hidden_states=text_hidden,
            mem_mask=encoded.mem_mask,
            mem_ids_restore=encoded.mem_ids_restore,
            unmasked_ecg_embeds=(None if encoded.unmasked_hidden_state is None
                                 else self.ecg_pooler(encoded.unmasked_hidden_state)),
        )


class DBetaForPreTraining(DBetaPreTrainedModel):
    """D-BETA with its pretraining heads (MLM, MEM, ETM) and the four losses (MLM, MEM, ETM, ETS; `losses.py`).

    The ETS loss scores with the base model's ECG-text logits (`DBetaModel.ecg_text_logits`, its `logit_scale` and
    `logit_bias`).
    """

    def __init__(self, config: DBetaConfig):
        super().__init__(config)
        self.model = DBetaModel(config)
        self.mlm_head = DBetaMLMHead(config)
        self.mem_head = DBetaMEMHead(config)
        self.etm_head = DBetaETMHead(config)
        self.post_init()

    def get_ecg_features(self, ecg_values, lead_mask=None):
        return self.model.get_ecg_features(ecg_values, lead_mask)

    def get_text_features(self, input_ids, attention_mask=None):
        return self.model.get_text_features(input_ids, attention_mask)

    def ecg_text_logits(self, ecg_embeds, text_embeds):
        return self.model.ecg_text_logits(ecg_embeds, text_embeds)

    def _ets_embeddings(self, outputs: DBetaModelOutput, input_ids, attention_mask, mlm_labels, ets_input_ids,
                        ets_attention_mask, ets_unmasked_inputs: bool):
        """The (ECG, text) embeddings the ETS loss scores: those of the forward pass; with `ets_unmasked_inputs`, the
        embedding of the unmasked ECG pass and of the report with its MLM tokens restored (from `mlm_labels`); a
        given ETS text view (`ets_input_ids`) replaces the text side."""
        ecg_embeds, text_embeds = outputs.ecg_embeds, outputs.text_embeds
        if ets_unmasked_inputs and outputs.unmasked_ecg_embeds is not None:
            ecg_embeds = outputs.unmasked_ecg_embeds
        if ets_input_ids is not None:
            text_embeds = self.model.get_text_features(ets_input_ids, ets_attention_mask)
        elif ets_unmasked_inputs and mlm_labels is not None:
            restored_ids = torch.where(mlm_labels >= 0, mlm_labels, input_ids)
            text_embeds = self.model.pool_text(self.model.encode_text(restored_ids, attention_mask), attention_mask)
        return ecg_embeds, text_embeds

    def _mlm_head(self, fused_text: torch.Tensor, mlm_labels, mlm_positions, return_mlm_logits: bool):
        """MLM head on every position, `(logits (B, L, V), mlm_labels)`, or, with `return_mlm_logits=False` and
        labels, only on the labelled positions, `(logits (B, K, V), their labels (B, K; -100 on padding))`."""
        if return_mlm_logits or mlm_labels is None:
            return self.mlm_head(fused_text), mlm_labels
        hidden, targets = losses.gather_mlm_targets(fused_text, mlm_labels, mlm_positions)
        return self.mlm_head(hidden), targets

    @can_return_tuple
    def forward(
        self,
        ecg_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        match_labels: torch.Tensor | None = None,
        ets_labels: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        apply_ecg_mask: bool = True,
        lead_mask: torch.Tensor | None = None,
        ets_input_ids: torch.Tensor | None = None,
        ets_attention_mask: torch.Tensor | None = None,
        return_mlm_logits: bool = True,
        return_loss: bool | None = None,
        ets_unmasked_inputs: bool = False,
        mlm_mem_on_matched_only: bool = False,
        ets_global_batch: bool = False,
        **kwargs,
    ) -> DBetaForPreTrainingOutput:
        r"""
        Args:
            ecg_values: (B, leads, samples) ECGs in millivolts (the MEM target is this same tensor).
            input_ids / attention_mask: (B, L) tokenised (MLM-masked) reports.
            mlm_labels: (B, L) original ids at MLM positions, -100 elsewhere (defines the MLM loss).
            match_labels: (B,) 1 = the report belongs to the ECG, 0 = N3S negative (defines the ETM loss, and the
                ETS diagonal labels `2 * match - 1`; without them the diagonal is all positive).
            ets_labels: optional (B, B) +-1 ETS labels replacing the diagonal rule (the pretraining collator's
                `same_report_positives=True` makes them).
            mlm_positions: optional (B, K) positions of the MLM targets, -1 padded (the pretraining collator makes
                them). With `return_mlm_logits=False` the MLM head then runs on exactly these positions without a
                host-device synchronisation; without them the model derives them from `mlm_labels` (one sync).
            noise: (B, T) uniform noise that drives MEM token masking (argsort ascending; the first
                `int(T * (1 - mem_mask_ratio))` tokens are kept), as ViTMAE; drawn when omitted.
            apply_ecg_mask: mask ECG tokens and reconstruct them (MEM); `False` runs the unmasked evaluation pass.
            lead_mask: optional (B, leads), True for the leads present; absent leads are zeroed.
            ets_input_ids / ets_attention_mask: optional (B, L') text view that the ETS loss embeds instead of the
                fed report (column j pairs with row j's text), e.g. the statement-dropped reports of the pretraining
                collator's `statement_dropout` (which also gives the matching `ets_labels`). MLM and ETM keep
                `input_ids`.
            return_mlm_logits: return the full (B, L, V) MLM logits. With `False` the MLM head only runs on the
                positions that have a label (same loss, much less compute), and `mlm_logits` is None.
            return_loss: compute the losses (as CLIP's `return_loss`). Default: when labels (`mlm_labels`,
                `match_labels` or `ets_labels`) are given. Then MLM needs `mlm_labels`, ETM `match_labels`, MEM
                `apply_ecg_mask`; ETS is always computed.
            ets_unmasked_inputs: compute the ETS embeddings from unmasked inputs, as ALBEF / BLIP compute their
                contrastive loss on clean inputs: a second pass of the ECG transformer without MEM masking (sharing
                the conv features), and the report with its MLM tokens restored (from `mlm_labels`). `False`
                (official): the ECG embedding of the MEM-masked pass and the MLM-masked text.
            mlm_mem_on_matched_only: compute MLM and MEM only on the rows whose report belongs to the ECG
                (`match_labels == 1`), as ALBEF / BLIP do; `False` (official) also scores the rows that received an
                N3S negative report.
            ets_global_batch: under several processes (`accelerate launch`, `torchrun`), score every process's ECGs
                against the texts of the whole global batch (as CLIP / SigLIP); `False` (official): each process's own
                batch. No effect in one process.
        """
        if return_loss is None:
            return_loss = mlm_labels is not None or match_labels is not None or ets_labels is not None
        if mlm_mem_on_matched_only and mlm_labels is not None and match_labels is not None:
            # rows fed a negative report carry no MLM target
            mlm_labels = torch.where(match_labels.bool()[:, None], mlm_labels, torch.full_like(mlm_labels, -100))

        outputs = self.model(ecg_values, input_ids, attention_mask, lead_mask=lead_mask, noise=noise,
                             apply_ecg_mask=apply_ecg_mask, return_unmasked_ecg=ets_unmasked_inputs and apply_ecg_mask,
                             **kwargs)
        ecg_embeds, text_embeds = self._ets_embeddings(outputs, input_ids, attention_mask, mlm_labels, ets_input_ids,
                                                       ets_attention_mask, ets_unmasked_inputs)

        etm_logits = self.etm_head(outputs.fusion_embeds)
        mlm_logits, mlm_targets = self._mlm_head(outputs.fusion_text_hidden_states, mlm_labels, mlm_positions,
                                                 return_mlm_logits)
        mem_logits = None
        if apply_ecg_mask:
            mem_logits = self.mem_head(outputs.all_fusion_ecg_hidden_states[self.config.mem_layer],
                                       outputs.mem_ids_restore)

        loss_outputs = {}
        if return_loss:
            loss_outputs = self.forward_loss(
                ecg_values, mlm_logits, mlm_targets, mem_logits, outputs.mem_mask, etm_logits, ecg_embeds, text_embeds,
                match_labels, ets_labels, mlm_mem_on_matched_only=mlm_mem_on_matched_only,
                ets_global_batch=ets_global_batch,
            )
        return DBetaForPreTrainingOutput(
            mlm_logits=mlm_logits if return_mlm_logits or mlm_labels is None else None,
            mem_logits=mem_logits,
            mem_mask=outputs.mem_mask,
            mem_ids_restore=outputs.mem_ids_restore,
            etm_logits=etm_logits,
            ecg_embeds=ecg_embeds,
            text_embeds=text_embeds,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
            **loss_outputs,
        )

    def forward_loss(
        self,
        ecg_values: torch.Tensor,
        mlm_logits: torch.Tensor,
        mlm_targets: torch.Tensor | None,
        mem_logits: torch.Tensor | None,
        mem_mask: torch.Tensor | None,
        etm_logits: torch.Tensor,
        ecg_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        match_labels: torch.Tensor | None = None,
        ets_labels: torch.Tensor | None = None,
        mlm_mem_on_matched_only: bool = False,
        ets_global_batch: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The four losses, their weighted sum and the accuracies, as `DBetaForPreTrainingOutput` fields.

        MLM on the logits and their targets (-100 = not scored) when there are targets; MEM when the ECG tokens were
        masked; ETM when `match_labels` are given; ETS always, with the base model's ECG-text logits.
        """
        terms, metrics = {}, {}
        if mlm_targets is not None:
            terms["mlm"] = losses.mlm_loss(mlm_logits, mlm_targets)
            metrics["mlm_accuracy"] = losses.mlm_accuracy(mlm_logits, mlm_targets).detach()
        if mem_logits is not None:
            target = losses.mem_target(ecg_values, mem_logits.shape[1], self.config.mem_patch_size,
                                       self.config.mem_norm_target)
            scored = mem_mask
            if mlm_mem_on_matched_only and match_labels is not None:
                scored = scored * match_labels.to(scored)[:, None]
            terms["mem"] = losses.mem_loss(mem_logits, target, scored)
        if match_labels is not None:
            terms["etm"] = losses.etm_loss(etm_logits, match_labels)
            metrics["etm_accuracy"] = (etm_logits.argmax(-1) == match_labels.long()).float().mean().detach()
        ets = losses.distributed_ets_loss if ets_global_batch else losses.ets_loss
        terms["ets"] = ets(ecg_embeds, text_embeds, match_labels, ets_labels, logits_fn=self.model.ecg_text_logits)
        weights = {"mlm": self.config.mlm_loss_weight, "mem": self.config.mem_loss_weight,
                   "etm": self.config.etm_loss_weight, "ets": self.config.ets_loss_weight}
        loss = sum(weights[name] * value for name, value in terms.items())
        return {"loss": loss, **{f"{name}_loss": value for name, value in terms.items()}, **metrics}


class DBetaForECGClassification(DBetaPreTrainedModel):
    """ECG tower + pooled ECG feature + linear head, for fine-tuning and linear probing.

    `config.num_labels` classes; the loss follows transformers' `problem_type` rules (`self.loss_function`):
    regression with one label, single-label classification (cross-entropy) with integer labels, multi-label
    classification (BCE) otherwise (float or boolean multi-hot labels).
    Load from any D-BETA checkpoint: `DBetaForECGClassification.from_pretrained(path, num_labels=5)`.
    """

    def __init__(self, config: DBetaConfig):
        super().__init__(config)
        self.model = DBetaECGModel(config)
        self.classifier_dropout = nn.Dropout(getattr(config, "classifier_dropout", None) or 0.0)
        self.classifier = nn.Linear(config.hidden_dim, config.num_labels)
        self.loss_type = "ForSequenceClassification"
        self.post_init()

    def freeze_ecg_encoder(self):
        """Freeze everything but the classifier (linear probing)."""
        for param in self.model.parameters():
            param.requires_grad_(False)

    @can_return_tuple
    def forward(self, ecg_values: torch.Tensor, labels: torch.Tensor | None = None, lead_mask: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        outputs = self.model(ecg_values, lead_mask, **kwargs)
        logits = self.classifier(self.classifier_dropout(outputs.pooler_output))
        loss = None
        if labels is not None:
            if labels.dtype == torch.bool or self.config.problem_type == "multi_label_classification":
                labels = labels.to(logits.dtype)  # BCE takes float targets
            loss = self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class _ScalarToShapeOne(ConversionOps):
    """Load-time conversion of the ETS `logit_scale` / `logit_bias`: a 0-dim value (saves made before they had shape
    (1,), and CLIP-style checkpoints) becomes shape (1,); a shape-(1,) value passes unchanged, so the same op serves
    as its own reverse when a model is saved."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        (tensors,) = input_dict.values()
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        return {target_patterns[0]: tensor.reshape(1) if tensor.dim() == 0 else tensor}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


__all__ = [
    "DBetaPreTrainedModel",
    "DBetaModel",
    "DBetaECGModel",
    "DBetaForPreTraining",
    "DBetaForECGClassification",
    "DBetaModelOutput",
    "DBetaForPreTrainingOutput",
    "random_masking",
]

# The installed package registers the models with the AutoModel classes, and the load-time shape-(1,) mapping of old
# 0-dim ETS scales, when this module is imported (see dbeta_hf/auto_registration.py); a copy of this file in a saved
# folder, loaded with trust_remote_code, is registered by transformers itself instead.
if __name__.startswith("dbeta_hf."):
    AutoModel.register(DBetaConfig, DBetaModel, exist_ok=True)
    AutoModelForPreTraining.register(DBetaConfig, DBetaForPreTraining, exist_ok=True)
    AutoModelForSequenceClassification.register(DBetaConfig, DBetaForECGClassification, exist_ok=True)
    DBetaModel.register_for_auto_class("AutoModel")
    DBetaForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    DBetaForECGClassification.register_for_auto_class("AutoModelForSequenceClassification")
    register_checkpoint_conversion_mapping("dbeta", [
        WeightConverter(source_patterns=name, target_patterns=name, operations=[_ScalarToShapeOne()])
        for name in ("logit_scale", "logit_bias")], overwrite=True)
