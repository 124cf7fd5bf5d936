"""Frozen-encoder feature extraction for the downstream evaluations, with an on-disk cache.

`extract_ecg_features` runs the uni-modal ECG embedding of any D-BETA model (`DBetaModel`,
`DBetaForPreTraining`, `DBetaECGModel`, `DBetaForECGClassification`) over a `datasets.Dataset`, a tensor or
an array, batch by batch, in eval mode and without gradients, in float32 by default (``precision="fp32"``, as the
official evaluation runs; ``precision="bf16"`` autocasts to bfloat16 on CUDA and on a CPU, ``"auto"`` does so only
where the device computes bfloat16 natively: see `cpu_supports_bf16`), with a progress bar. With `cache_dir` the (N, hidden) float32 features are written to a safetensors file whose name
carries a fingerprint of the model weights, of the data and of the preprocessing, so a second run (another
label fraction, another seed, the random-init baseline...) loads them instead of re-encoding.
`extract_text_features` embeds texts with the text tower; `labels_array` gives a split's label matrix.

The command-line pieces of the evaluation examples (arguments, task loading, results files) are in
`dbeta_hf.evaluation.cli`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..file_modes import apply_default_file_mode
from ..processing_dbeta import MAX_TEXT_LENGTH
from .options import PRECISIONS

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "cpu_supports_bf16",
    "resolve_precision",
    "precision_context",
    "bf16_inference_model",
    "ecg_feature_fn",
    "model_fingerprint",
    "data_fingerprint",
    "iter_ecg_batches",
    "extract_ecg_features",
    "extract_text_features",
    "labels_array",
]

# ------------------------------------------------------------------------------------------------ precision
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX-BF16), so that a bf16 path is
    faster than float32 rather than emulated.

    True when oneDNN is available (`torch.backends.mkldnn`), oneDNN reports bf16 support, and the CPU has the
    `avx512_bf16` or `amx_bf16` instruction flags (read from /proc/cpuinfo; on other systems, where the flags
    cannot be read, False). The environment variable ``DBETA_CPU_BF16=0`` / ``=1`` overrides the answer.
    """
    forced = os.environ.get("DBETA_CPU_BF16")
    if forced is not None and forced.strip() != "":
        if forced.strip() not in ("0", "1"):
            raise ValueError(f"DBETA_CPU_BF16 must be 0 or 1, got {forced!r}")
        return forced.strip() == "1"
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without the op
        return False
    return bool(_cpuinfo_flags() & set(_CPU_BF16_FLAGS))


def resolve_precision(precision: str, device: str | torch.device, autocast: bool | None = None) -> str:
    """The precision actually used, ``"fp32"`` or ``"bf16"``, for `precision` in `PRECISIONS` on `device`.

    ``"fp32"``: float32 (the default of the evaluations, as the official notebook). ``"bf16"``: bfloat16 autocast,
    on CUDA and on a CPU (slow on a CPU without native bf16: a warning says so). ``"auto"``: bf16 where the device
    computes it natively (a CUDA device with bf16 support, a CPU for which `cpu_supports_bf16()` is true), else fp32.
    `autocast` (the former switch) overrides: True = ``"bf16"``, False = ``"fp32"``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if autocast is not None:
        precision = "bf16" if autocast else "fp32"
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_supports_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        logger.warning("precision='bf16' on a CPU without native bfloat16 (avx512_bf16 / amx_bf16): it is emulated "
                       "and likely slower than float32; use precision='fp32' or 'auto'")
    return precision


def precision_context(device: str | torch.device, precision: str):
    """The autocast context of a resolved precision (``"fp32"``: autocast disabled, ``"bf16"``: bfloat16 autocast)."""
    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    raise ValueError(f"precision_context takes a resolved precision, 'fp32' or 'bf16', got {precision!r}")


def bf16_inference_model(model: torch.nn.Module, device: str | torch.device, precision: str) -> torch.nn.Module:
    """The model to run for a resolved `precision`: on a CPU in ``"bf16"``, a bfloat16 copy of a float32 model
    (bf16 weights measured faster than bf16 autocast on an AMX CPU: autocast re-casts every weight at every call;
    see benchmarks/README.md); otherwise `model` itself. The caller's model is never changed."""
    if precision != "bf16" or torch.device(device).type != "cpu" or next(model.parameters()).dtype != torch.float32:
        return model
    return copy.deepcopy(model).to(torch.bfloat16).eval()


# ------------------------------------------------------------------------------------------------ model side
def ecg_feature_fn(model: torch.nn.Module):
    """The `(B, 12, S) -> (B, H)` uni-modal ECG embedding function of a D-BETA model (any head)."""
    if hasattr(model, "get_ecg_features"):
        return model.get_ecg_features
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "get_ecg_features"):
        return inner.get_ecg_features
    raise TypeError(
        f"{type(model).__name__} has no `get_ecg_features`; pass a DBetaModel, DBetaForPreTraining, DBetaECGModel or "
        "DBetaForECGClassification"
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device



def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a model's configuration and weights (per tensor: shape, dtype, two moments, a strided sample).

    Two models with the same weights give the same fingerprint; any change of a weight changes it (up to
    float64 rounding of the moments). Used to key the feature cache.
    """
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    digest.update(type(model).__name__.encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            t = tensor.detach()
            digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            if t.numel() == 0:
                continue
            flat = t.reshape(-1).double()
            sample = flat[:: max(1, flat.numel() // 64)][:64]
            stats = torch.cat([torch.stack([flat.sum(), (flat * flat).sum()]), sample])
            digest.update(stats.cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


# ------------------------------------------------------------------------------------------------ data side
def _is_hf_dataset(data: Any) -> bool:
    return hasattr(data, "column_names") and hasattr(data, "with_format") and hasattr(data, "__getitem__")


def data_fingerprint(data: Any, ecg_column: str = "ecg") -> str:
    """A short hash identifying the ECGs of `data` (a `datasets.Dataset`, a tensor or an array)."""
    digest = hashlib.sha256()
    if _is_hf_dataset(data):
        digest.update(f"dataset:{data._fingerprint}:{len(data)}:{ecg_column}".encode())
    else:
        array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        digest.update(f"array:{array.shape}:{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:20]


def iter_ecg_batches(data: Any, batch_size: int, ecg_column: str = "ecg") -> Iterator[np.ndarray | torch.Tensor]:
    """Batches of ECGs (B, leads, samples) from a `datasets.Dataset` (column `ecg_column`), a tensor or an array."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if _is_hf_dataset(data):
        if ecg_column not in data.column_names:
            raise KeyError(f"the dataset has no {ecg_column!r} column (columns: {data.column_names})")
        view = data.with_format("numpy", columns=[ecg_column])
        for start in range(0, len(view), batch_size):
            yield view[start : start + batch_size][ecg_column]
        return
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if data.ndim != 3:
            raise ValueError(f"ECGs must be (num_records, leads, samples), got shape {tuple(data.shape)}")
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
        return
    raise TypeError(f"expected a datasets.Dataset, a torch.Tensor or a numpy array of ECGs, got {type(data).__name__}")


def _to_model_input(batch, feature_extractor, sampling_rate) -> torch.Tensor:
    """(B, 12, S) float32 model input of a batch: prepared by `feature_extractor` from recordings at `sampling_rate`,
    or, without one, taken as stored (500 Hz, mV, canonical order) after the feature extractor's value checks."""
    if feature_extractor is not None:
        if sampling_rate is None:
            raise ValueError("`sampling_rate` is required when a feature_extractor preprocesses the ECGs")
        array = batch.detach().cpu().float().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch, dtype=np.float32)
        return feature_extractor(list(array), sampling_rate=sampling_rate, return_tensors="pt")["ecg_values"]
    values = batch.float() if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch, dtype=np.float32))
    DBetaECGFeatureExtractor.check_values(values)
    return values


def _extractor_signature(feature_extractor, sampling_rate) -> str:
    if feature_extractor is None:
        return "raw"
    state = feature_extractor.to_dict()
    state.pop("processor_class", None)
    return json.dumps({"extractor": state, "sampling_rate": sampling_rate}, sort_keys=True, default=str)


@torch.no_grad()
def extract_ecg_features(
    model: torch.nn.Module,
    data: Any,
    *,
    batch_size: int = 64,
    ecg_column: str = "ecg",
    feature_extractor=None,
    sampling_rate: float | None = None,
    device: str | torch.device | None = None,
    autocast: bool | None = None,
    precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None,
    cache_name: str = "features",
    overwrite_cache: bool = False,
    progress: bool = True,
    desc: str | None = None,
) -> torch.Tensor:
    """Uni-modal ECG embeddings of every record of `data`, as a (N, hidden) float32 CPU tensor.

    Args:
        model: a D-BETA model with `get_ecg_features` (or a head model wrapping one in `.model`). It is put in
            eval mode for the extraction (dropout off) and its previous mode restored afterwards.
        data: a `datasets.Dataset` with an `ecg_column` of (12, samples) ECGs, or a (N, 12, samples) tensor/array.
        batch_size: records per forward pass.
        feature_extractor: optional `DBetaECGFeatureExtractor` applied to every batch (resampling, lead order, ...);
            `None` feeds the ECGs as they are (the project's datasets are already 500 Hz, mV, canonical order), after
            the feature extractor's value checks (`DBetaECGFeatureExtractor.check_values`: NaN/inf and implausible
            amplitudes raise, all-zero recordings warn).
        sampling_rate: sampling rate of `data` in Hz (required with a `feature_extractor`).
        device: where to run the model; defaults to the model's device.
        precision: ``"fp32"`` (default, as the official evaluation), ``"bf16"`` (bfloat16 autocast on CUDA; on a CPU
            a bfloat16-weight copy of the model, `bf16_inference_model`, which measured faster) or ``"auto"`` (bf16
            where the device computes it natively); see `resolve_precision`. The features are float32 either way;
            the cache keys them by the precision used.
        autocast: the former switch, overriding `precision` when given: True = ``"bf16"``, False = ``"fp32"``.
        cache_dir: folder of the feature cache; `None` disables caching.
        cache_name: readable prefix of the cache file name (e.g. ``"ptbxl_super-train"``).
        overwrite_cache: recompute and rewrite an existing cache file.
        progress: show a tqdm progress bar.
    """
    n = len(data)
    run_device = _model_device(model) if device is None else torch.device(device)
    used_precision = resolve_precision(precision, run_device, autocast)
    cache_path = None
    if cache_dir is not None:
        # the precision is part of the key (caches written before it was, bf16 on CUDA by default then, are not reused)
        parts = [model_fingerprint(model), data_fingerprint(data, ecg_column), _extractor_signature(feature_extractor, sampling_rate),
                 f"precision={used_precision}"]
        key = hashlib.sha256(
            "|".join(parts).encode()
        ).hexdigest()[:24]
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in cache_name)
        cache_path = Path(cache_dir) / f"{safe_name}-{key}.safetensors"
        if cache_path.exists() and not overwrite_cache:
            features = load_file(str(cache_path))["features"]
            if features.shape[0] == n:
                logger.info("loaded cached ECG features %s from %s", tuple(features.shape), cache_path)
                return features
            logger.warning("ignoring the cache file %s: it has %d rows, the data %d", cache_path, features.shape[0], n)

    if _model_device(model) != run_device:
        model.to(run_device)
    run_model = bf16_inference_model(model, run_device, used_precision)  # CPU bf16: a bf16-weight copy
    encode = ecg_feature_fn(run_model)
    model_dtype = next(run_model.parameters()).dtype  # a model loaded in bf16 / fp16 takes inputs of its dtype
    if not model_dtype.is_floating_point:  # pragma: no cover - quantised models
        model_dtype = torch.float32
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        bar = tqdm(total=n, desc=desc or f"ECG features ({cache_name})", unit="ecg", disable=not progress, leave=False)
        for batch in iter_ecg_batches(data, batch_size, ecg_column):
            values = _to_model_input(batch, feature_extractor, sampling_rate).to(run_device, dtype=model_dtype, non_blocking=True)
            with precision_context(run_device, used_precision):
                feats = encode(values)
            chunks.append(feats.float().cpu())
            bar.update(values.shape[0])
        bar.close()
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("no ECG to encode: the data is empty")
    features = torch.cat(chunks).contiguous()
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        save_file(
            {"features": features},
            str(tmp),
            metadata={"num_records": str(n), "model_class": type(model).__name__, "cache_name": cache_name},
        )
        apply_default_file_mode([tmp])  # safetensors writes 0600
        os.replace(tmp, cache_path)
        logger.info("cached ECG features %s at %s", tuple(features.shape), cache_path)
    return features


@torch.no_grad()
def extract_text_features(
    model: torch.nn.Module,
    processor,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    autocast: bool | None = None,
    precision: str = "fp32",
    max_length: int | None = MAX_TEXT_LENGTH,
    progress: bool = False,
    desc: str = "text features",
) -> torch.Tensor:
    """Uni-modal text embeddings (N, hidden) float32 of `texts`, tokenised with `processor` (normalized, padded).

    The model must have a text tower (`DBetaModel` / `DBetaForPreTraining`). Padded batches equal one text at a
    time because the attention mask reaches the T5 encoder. `precision` / `autocast`: as in `extract_ecg_features`
    (float32 by default).
    """
    texts = list(texts)
    if not texts:
        raise ValueError("no text to encode")
    if not hasattr(model, "get_text_features"):
        raise TypeError(
            f"{type(model).__name__} has no text tower (`get_text_features`); load the full model with "
            "DBetaModel.from_pretrained(...) for zero-shot scoring and retrieval"
        )
    run_device = _model_device(model) if device is None else torch.device(device)
    used_precision = resolve_precision(precision, run_device, autocast)
    run_model = bf16_inference_model(model, run_device, used_precision)  # CPU bf16: a bf16-weight copy
    was_training = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress, leave=False):
            enc = processor(text=texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            with precision_context(run_device, used_precision):
                feats = run_model.get_text_features(enc["input_ids"].to(run_device), enc["attention_mask"].to(run_device))
            out.append(feats.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)




def labels_array(split, label_column: str = "labels") -> np.ndarray:
    """The (N, C) multi-hot labels of a dataset split as a float32 array."""
    if label_column not in split.column_names:
        raise KeyError(f"the dataset has no {label_column!r} column (columns: {split.column_names})")
    labels = np.asarray(split.with_format("numpy", columns=[label_column])[:][label_column], dtype=np.float32)
    if labels.ndim == 1:
        labels = labels[:, None]
    return labels
