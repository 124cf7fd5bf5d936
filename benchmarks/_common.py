"""Shared helpers of the benchmark scripts: environment record, configs, dtype modes, timing, FLOPs, tables.

Everything is device-agnostic: CUDA only adds synchronisation, CUDA-event timing and peak-memory counters.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TINY_TOKENIZER = ROOT / "tests" / "fixtures" / "tiny_t5_tokenizer"
H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, H100 SXM bf16 dense tensor cores
OFFICIAL_TRAIN_GFLOP_PER_SAMPLE = 180.0  # the arithmetic count for the default config, text 128
OFFICIAL_EMBED_GFLOP_PER_ECG = 39.0
DTYPES = ("fp32", "bf16-autocast", "bf16")
GiB = 2**30


# --------------------------------------------------------------------------------------------- environment
def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    """Short commit and whether the tree has local changes (read-only git commands)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{commit}{'+local changes' if dirty else ''}" if commit else "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "device": str(device),
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "commit": _git_commit(),
    }
    if device.type == "cpu":
        info["cpu flags"] = cpu_flags()
    try:
        info["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name} ({props.total_memory / GiB:.0f} GiB, {props.multi_processor_count} SMs)"
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32 matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return device


def quiet_libraries() -> None:
    """Silence the per-call info/warnings of transformers and datasets that would clutter the tables."""
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    logging.getLogger("dbeta_hf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*Torchinductor does not support code generation for complex.*")
    warnings.filterwarnings("ignore", message=".*fewer than k=.*candidate negatives.*")


# --------------------------------------------------------------------------------------------- configs
def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config(preset: str, hidden: int | None = None, overrides: Sequence[str] = (), vocab_size: int | None = None):
    """`preset` "tiny" (presets.tiny_config, `hidden` sets its width) or "official" (presets.official_config);
    `overrides` are ``key=value`` strings, ``key`` a top-level field or ``ecg_config.x`` / ``text_config.x``."""
    from dbeta_hf.pretraining.recipes import official_config, tiny_config

    if preset == "tiny":
        config = tiny_config(vocab_size=vocab_size or 500, hidden=hidden or 32)
    elif preset == "official":
        if hidden is not None:
            raise SystemExit("--hidden applies to --preset tiny; for the official preset use --set key=value")
        config = official_config()
    else:
        raise SystemExit(f"unknown preset {preset!r}")
    for item in overrides:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        target = config
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, name):
            raise SystemExit(f"unknown config field {key!r}")
        setattr(target, name, _parse_value(value))
    return config


def config_summary(config) -> str:
    e, t = config.ecg_config, config.text_config
    return (f"ECG {e.encoder_layers}x{e.encoder_embed_dim} (conv_pos {e.conv_pos}/{e.conv_pos_groups}), "
            f"T5 {t.num_layers}x{t.d_model}, fusion {config.num_fusion_layers}x{config.hidden_dim}, "
            f"MEM decoder {config.mem_decoder_num_layers}x{config.mem_decoder_hidden_dim}, vocab {config.vocab_size}")


def count_parameters(model) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# --------------------------------------------------------------------------------------------- model switches
def set_conv_pos_impl(model, impl: str) -> int:
    """Make every DBetaConvPositionalEncoding of `model` use `impl` ("conv" | "fft") through its `conv_impl`
    (same parameters, same result). Returns how many modules were switched."""
    from dbeta_hf.fast_conv import CONV_IMPLEMENTATIONS
    from dbeta_hf.modeling_dbeta import DBetaConvPositionalEncoding

    if impl not in CONV_IMPLEMENTATIONS:
        raise ValueError(f"conv_pos impl must be one of {CONV_IMPLEMENTATIONS}, got {impl!r}")
    count = 0
    for module in model.modules():
        if isinstance(module, DBetaConvPositionalEncoding):
            module.conv_impl = impl
            count += 1
    return count


def set_attention(model, implementation: str) -> None:
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model.set_attn_implementation(implementation)
    finally:
        transformers.logging.set_verbosity(verbosity)


def enable_checkpointing(model, every_n_layers: int = 1) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(kwargs, every_n_layers=every_n_layers)
    else:  # older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def disable_checkpointing(model) -> None:
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


# --------------------------------------------------------------------------------------------- dtype modes
def autocast_context(device: torch.device, dtype_mode: str):
    """fp32: nothing; bf16-autocast: torch.autocast(bfloat16) on fp32 weights; bf16: bf16 weights, no autocast."""
    if dtype_mode == "bf16-autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if dtype_mode in ("fp32", "bf16"):
        return contextlib.nullcontext()
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype_mode!r}")


def input_dtype(dtype_mode: str) -> torch.dtype:
    return torch.bfloat16 if dtype_mode == "bf16" else torch.float32


# --------------------------------------------------------------------------------------------- timing / memory
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Per-step times: CUDA events on the GPU (no host sync between steps), perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self._events: list[tuple[Any, Any]] = []
        self._cpu: list[float] = []
        self._start = None

    def start(self):
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._start = event
        else:
            self._start = time.perf_counter()

    def stop(self):
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append((self._start, event))
        else:
            self._cpu.append(time.perf_counter() - self._start)

    def seconds(self) -> list[float]:
        """Per-step seconds (synchronises the device)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return [a.elapsed_time(b) / 1e3 for a, b in self._events]
        return list(self._cpu)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, str]:
    """Peak allocated / reserved GiB on CUDA (since the last reset); on the CPU the peak resident set size of
    the process over its whole lifetime (it cannot be reset)."""
    if device.type == "cuda":
        return {"peak alloc GiB": f"{torch.cuda.max_memory_allocated(device) / GiB:.1f}",
                "peak reserved GiB": f"{torch.cuda.max_memory_reserved(device) / GiB:.1f}"}
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak RSS GiB": f"{rss_kib / 2**20:.1f}"}


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(seconds), "median": statistics.median(seconds), "min": min(seconds),
            "max": max(seconds)}


def count_sync_points(fn: Callable[[], Any], device: torch.device) -> int | str:
    """How many times `fn` makes the host wait for the GPU (torch.cuda sync debug mode); "n/a" on the CPU."""
    if device.type != "cuda":
        return "n/a"
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    return sum(1 for w in caught if "synchroniz" in str(w.message).lower())


# --------------------------------------------------------------------------------------------- FLOPs
def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                         _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of aten.convolution_backward: each requested gradient (input, weight) costs as much as the forward.

    torch.utils.flop_counter's own formula ignores `groups` for the weight gradient, which counts the D-BETA
    positional conv (16 groups) ~8x too high (~44 GFLOP per training sample)."""
    per_output = 1
    for size in w_shape[1:]:
        per_output *= int(size)
    elements = 1
    for size in (x_shape if transposed else grad_out_shape):
        elements *= int(size)
    forward = 2 * elements * per_output
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matmuls / convolutions / attention kernels that `fn` runs (torch.utils.flop_counter, with the
    grouped-convolution backward counted correctly)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def format_mfu(flops_per_item: float | None, items_per_second: float, peak_flops: float | None) -> tuple[str, str]:
    """(achieved TFLOP/s, MFU %) strings; MFU is "n/a" without a peak (on the CPU)."""
    if not flops_per_item:
        return "n/a", "n/a"
    achieved = flops_per_item * items_per_second
    mfu = f"{100 * achieved / peak_flops:.1f}%" if peak_flops else "n/a"
    return f"{achieved / 1e12:.2f}", mfu


def default_peak_flops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given if given > 0 else None
    return H100_BF16_DENSE_PEAK if device.type == "cuda" else None


# --------------------------------------------------------------------------------------------- output
def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def emit_report(title: str, env: dict, settings: dict, rows: list[dict], columns: Sequence[str] | None,
                notes: Iterable[str] = (), output: str | None = None, json_path: str | None = None) -> str:
    """Print (and optionally append to `output` / write to `json_path`) the environment, settings and table."""
    parts = [f"### {title}", ""]
    parts.append("- environment: " + "; ".join(f"{k} {v}" for k, v in env.items()))
    parts.append("- settings: " + "; ".join(f"{k} {v}" for k, v in settings.items()))
    parts.extend(f"- {note}" for note in notes)
    parts += ["", markdown_table(rows, columns), ""]
    text = "\n".join(parts)
    print(text, flush=True)
    if output:
        with open(output, "a") as f:
            f.write(text + "\n")
    if json_path:
        Path(json_path).write_text(json.dumps({"title": title, "environment": env, "settings": settings,
                                               "rows": rows}, indent=2, default=str))
    return text


def expand_choice(value: str, choices: Sequence[str]) -> list[str]:
    """"both" -> ["off", "on"]; anything else -> [value]."""
    return list(choices) if value == "both" else [value]


# --------------------------------------------------------------------------------------------- CPU / official
CPU_FLAG_NAMES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> str:
    """The CPU instruction flags that decide the bf16 speed (from /proc/cpuinfo), torch's CPU capability and
    whether `dbeta_hf.evaluation.embeddings.cpu_supports_bf16()` is true."""
    from dbeta_hf.evaluation.embeddings import _cpuinfo_flags, cpu_supports_bf16

    flags = _cpuinfo_flags()
    present = [name for name in CPU_FLAG_NAMES if name in flags] or ["(none of " + ", ".join(CPU_FLAG_NAMES) + ")"]
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"{' '.join(present)}; torch CPU capability {capability}"
            f"{' (ATEN_CPU_CAPABILITY=' + os.environ['ATEN_CPU_CAPABILITY'] + ')' if os.environ.get('ATEN_CPU_CAPABILITY') else ''}"
            f"; cpu_supports_bf16() {cpu_supports_bf16()}")


def official_source(path: str | None) -> Path:
    """The folder of the official D-BETA code (``--official-src`` or ``$DBETA_REF_SRC``), checked."""
    path = path or os.environ.get("DBETA_REF_SRC")
    if not path:
        raise SystemExit("the official comparison needs the official code: pass --official-src DIR or set "
                         "DBETA_REF_SRC (see /work/shared/tools/README.md: a patched copy of manhph2211/D-BETA)")
    root = Path(path).resolve()
    if not (root / "models" / "dbeta.py").is_file():
        raise SystemExit(f"{root} is not a copy of the official D-BETA code (no models/dbeta.py)")
    return root


def official_workload(source: str | None, ecg_layers: int = 8, fusion_layers: int = 2, t5_layers: int = 1,
                      mem_layer: int = 1, seed: int = 0):
    """The official model (random weights, the official config with `ecg_layers` x 768 ECG tower, `fusion_layers`
    fusion layers, MEM on fusion layer `mem_layer`, a Flan-T5-base-wide T5 of `t5_layers` layers) and the package's
    `DBetaForPreTraining` holding the same weights through the converter's key map.

    Returns ``(official_model, our_model, modules)``; `modules` has the official ``get_ecg_feats`` and ``ETSLoss``.
    The official code is imported from `source` as the shared tool ``bench_reference.py`` does it (its T5 built from
    the config instead of downloaded, transformers 4's attention-mask helper restored); it is measured, never copied.
    """
    import json as _json
    from types import SimpleNamespace

    from transformers import T5Config, T5EncoderModel

    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.conversion.convert_original_checkpoint import (
        FLAN_T5_BASE_TEXT_CONFIG,
        add_weights_not_in_original,
        check_state_dict,
        from_original_config,
        rename_original_state_dict,
    )

    root = official_source(source)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import models.dbeta as official_dbeta  # noqa: E402 - the official package
    from losses.ets import ETSLoss  # noqa: E402
    from models.processor import get_ecg_feats  # noqa: E402

    if not hasattr(T5EncoderModel, "get_extended_attention_mask"):  # removed in transformers 5; v4's definition
        def _extended_attention_mask(self, attention_mask, input_shape):
            mask = attention_mask[:, None, None, :].to(self.dtype)
            return (1.0 - mask) * torch.finfo(self.dtype).min
        T5EncoderModel.get_extended_attention_mask = _extended_attention_mask
    text = {k: v for k, v in FLAN_T5_BASE_TEXT_CONFIG.items() if k not in ("model_type", "transformers_version")}
    text.update(num_layers=t5_layers, num_decoder_layers=t5_layers, is_encoder_decoder=False, use_cache=False)
    t5 = T5Config(**text)
    official_dbeta.T5EncoderModel.from_pretrained = classmethod(lambda cls, *a, **k: T5EncoderModel(t5))
    cfg = _json.loads((root / "configs" / "config.json").read_text())["model"]
    cfg.update(encoder_layers=ecg_layers, num_top_layer=fusion_layers, mem_layer=mem_layer)
    torch.manual_seed(seed)
    official = official_dbeta.DBETA(SimpleNamespace(**cfg))
    ours = DBetaForPreTraining(from_original_config(cfg, text_config=t5.to_dict()))
    state = add_weights_not_in_original(rename_original_state_dict(dict(official.state_dict())), ours)
    check_state_dict(ours, state)
    ours.load_state_dict(state, strict=True)
    return official, ours, {"get_ecg_feats": get_ecg_feats, "ETSLoss": ETSLoss}
