"""FFT implementation of a grouped 1-D convolution (PyTorch's cross-correlation), for long kernels.

The convolutional positional encoding of the D-BETA ECG encoder is ``Conv1d(768, 768, kernel_size=128,
padding=64, groups=16)`` over 312 tokens. Done directly that is ``2 * 768 * 313 * 48 * 128`` ≈ 2.95 GFLOP per
ECG in the forward pass. Through the FFT (length n = 384) it is a complex product per frequency,
``8 * 16 * 193 * 48 * 48`` ≈ 57 MFLOP per ECG, ≈ 13 MFLOP of FFTs per ECG, and a batch-independent ≈ 3.6 GFLOP
GEMM for the kernel spectrum: at batch 128 about 30x fewer FLOPs than the direct convolution.

:func:`fft_grouped_conv1d` returns the same values as ``torch.nn.functional.conv1d(x, weight, bias,
padding=padding, groups=groups)`` (stride 1, dilation 1, zero padding) up to float32 rounding. It is made of
plain differentiable torch operations (``torch.fft.rfft`` / ``irfft``, ``matmul``), so
autograd gives the gradients for ``x``, ``weight`` and ``bias``, on any device. The transform always runs
in float32 (float64 for float64 inputs), also under ``torch.autocast``: bfloat16 has too few mantissa bits
for an FFT of a few hundred points. The result has the dtype of ``x``.

:func:`conv1d_forward` runs an existing ``nn.Conv1d`` (weight-norm parametrisations included) with either
implementation, which is how the model can switch without changing its parameters or state dict.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

__all__ = ["fft_grouped_conv1d", "conv1d_forward", "fast_fft_size", "CONV_IMPLEMENTATIONS"]

CONV_IMPLEMENTATIONS = ("conv", "fft")


def fast_fft_size(n: int) -> int:
    """The smallest even integer >= ``n`` whose prime factors are all 2, 3 or 5 (fast for cuFFT and pocketfft)."""
    if n < 1:
        raise ValueError(f"FFT size must be >= 1, got {n}")
    m = max(2, int(n) + (int(n) % 2))
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


def _dft_basis(freqs: int, kernel: int, n: int, device, dtype) -> torch.Tensor:
    """(2 * freqs, kernel): rows cos(2 pi f k / n) for f < freqs, then sin(2 pi f k / n); exact phases (f k mod n)."""
    f = torch.arange(freqs, device=device, dtype=torch.int64)[:, None]
    k = torch.arange(kernel, device=device, dtype=torch.int64)[None, :]
    precise = torch.float32 if torch.device(device).type == "mps" else torch.float64  # MPS has no float64
    theta = torch.remainder(f * k, n).to(precise) * (2.0 * math.pi / n)
    return torch.cat([torch.cos(theta), torch.sin(theta)]).to(dtype)


def _no_autocast(device_type: str):
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, TypeError, ValueError):  # a device type autocast does not know (e.g. "meta")
        pass
    return contextlib.nullcontext()


def fft_grouped_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Grouped 1-D cross-correlation computed with real FFTs; equals ``F.conv1d(x, weight, bias, padding=padding,
    groups=groups)``.

    Args:
        x: (B, C_in, T) input.
        weight: (C_out, C_in / groups, K) kernel (PyTorch layout; cross-correlation, no kernel flip).
        bias: (C_out,) or None.
        padding: zeros added on both sides of the time axis (an int >= 0).
        groups: number of channel groups; C_in and C_out must be divisible by it.

    Returns:
        (B, C_out, T + 2 * padding - K + 1) in the dtype of ``x``.

    How: the input is placed at offset ``padding`` in a zero buffer of a fast length ``n >= T + padding`` (its
    right padding is implicit: the buffer's zeros), so that the circular cross-correlation with the kernel
    zero-padded to ``n`` gives the padded cross-correlation at output positions ``0 .. L_out - 1`` without
    wrap-around. The input goes through ``rfft``; the kernel's (conjugated) spectrum is a real GEMM with a
    cos/sin basis of size (2 * (n/2 + 1), K), which yields it directly in the layout of the product and has a
    cheap backward (the kernel is short, so this costs about as much as an FFT of it would). Per frequency, the
    output spectrum is a (B x C_in/g) @ (C_in/g x C_out/g) complex product for each group, done by one batched
    ``matmul`` over (frequency, group); ``irfft`` and a slice finish.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, channels, time), got shape {tuple(x.shape)}")
    if weight.dim() != 3:
        raise ValueError(f"weight must be (out_channels, in_channels / groups, kernel), got shape {tuple(weight.shape)}")
    padding, groups = int(padding), int(groups)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    batch, in_channels, length = x.shape
    out_channels, in_per_group, kernel = weight.shape
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
    if in_per_group * groups != in_channels:
        raise ValueError(
            f"weight has {in_per_group} input channels per group but x has {in_channels} channels for {groups} groups"
        )
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    out_length = length + 2 * padding - kernel + 1
    if out_length < 1:
        raise ValueError(
            f"input length {length} with padding {padding} is shorter than the kernel ({kernel})"
        )
    out_per_group = out_channels // groups
    out_dtype = x.dtype
    compute_dtype = torch.float64 if torch.float64 in (x.dtype, weight.dtype) else torch.float32

    # No wrap-around needs n >= T + padding (the input with its left zeros), n >= L_out and n >= K.
    n = fast_fft_size(max(length + padding, out_length, kernel))
    freqs = n // 2 + 1
    with _no_autocast(x.device.type):
        # one buffer of length n: `padding` zeros, x (cast to the compute dtype by the copy), zeros
        xf = x.new_zeros(batch, in_channels, n, dtype=compute_dtype)
        xf[..., padding : padding + length] = x
        x_spec = torch.fft.rfft(xf, dim=-1)  # (B, C_in, F)
        # kernel spectrum, conjugated (cross-correlation): V(f) = sum_k w[k] exp(+2 pi i f k / n), as one real
        # GEMM with a (2F, K) cos/sin basis, laid out directly as (F, G, C_in/g, C_out/g) for the product below
        basis = _dft_basis(freqs, kernel, n, x.device, compute_dtype)
        w_mat = weight.to(compute_dtype).reshape(groups, out_per_group, in_per_group, kernel)
        w_mat = w_mat.permute(3, 0, 2, 1).reshape(kernel, groups * in_per_group * out_per_group)
        real, imag = (basis @ w_mat).view(2, freqs, groups, in_per_group, out_per_group).unbind(0)
        w_spec = torch.complex(real, imag)  # (F, G, Ci, Co)
        # per frequency and group: (B x Ci) @ (Ci x Co)
        xs = x_spec.reshape(batch, groups, in_per_group, freqs).permute(3, 1, 0, 2)  # (F, G, B, Ci)
        y_spec = torch.matmul(xs, w_spec)  # (F, G, B, Co)
        y_spec = y_spec.permute(2, 1, 3, 0).reshape(batch, out_channels, freqs)
        y = torch.fft.irfft(y_spec, n=n, dim=-1)[..., :out_length]
        if bias is not None:
            y = y + bias.to(compute_dtype)[:, None]
    return y.to(out_dtype)


def conv1d_forward(conv: nn.Conv1d, x: torch.Tensor, impl: str = "conv") -> torch.Tensor:
    """Run ``conv`` (an ``nn.Conv1d`` with stride 1, dilation 1, zero padding; parametrisations such as weight norm
    are applied as usual by reading ``conv.weight``) with ``impl="conv"`` (its own forward) or ``"fft"``
    (:func:`fft_grouped_conv1d`). Both give the same values and gradients up to float rounding."""
    if impl == "conv":
        return conv(x)
    if impl != "fft":
        raise ValueError(f"impl must be one of {CONV_IMPLEMENTATIONS}, got {impl!r}")
    if conv.stride != (1,) or conv.dilation != (1,) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(
            "fft_grouped_conv1d supports stride 1, dilation 1 and integer zero padding only; got "
            f"stride={conv.stride}, dilation={conv.dilation}, padding={conv.padding!r}, padding_mode={conv.padding_mode!r}"
        )
    return fft_grouped_conv1d(x, conv.weight, conv.bias, padding=conv.padding[0], groups=conv.groups)
