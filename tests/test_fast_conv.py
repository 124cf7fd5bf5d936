"""fft_grouped_conv1d equals F.conv1d (values and gradients), also under bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dbeta_hf.fast_conv import conv1d_forward, fast_fft_size, fft_grouped_conv1d


def _inputs(batch, in_channels, out_channels, length, kernel, groups, bias=True, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, length, generator=gen, dtype=dtype)
    w = torch.randn(out_channels, in_channels // groups, kernel, generator=gen, dtype=dtype) / (kernel * in_channels / groups) ** 0.5
    b = torch.randn(out_channels, generator=gen, dtype=dtype) if bias else None
    return x, w, b


def _assert_close(actual, expected, rel=1e-5):
    scale = expected.abs().max().item() + 1e-12
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max abs error {err:.3g} vs magnitude {scale:.3g}"


@pytest.mark.parametrize("bias", [True, False])
def test_dbeta_shape_matches_conv1d(bias):
    # the D-BETA positional conv shape, shrunk: C=64, K=16 (even), padding K/2, groups 4, 312 tokens
    x, w, b = _inputs(3, 64, 64, 312, 16, 4, bias=bias)
    expected = F.conv1d(x, w, b, padding=8, groups=4)
    actual = fft_grouped_conv1d(x, w, b, padding=8, groups=4)
    assert actual.shape == expected.shape == (3, 64, 313)
    assert actual.dtype == torch.float32
    _assert_close(actual, expected)


@pytest.mark.parametrize(
    "length,kernel,padding,groups,in_channels,out_channels",
    [
        (312, 17, 8, 4, 32, 32),   # odd kernel, "same" length
        (312, 16, 8, 1, 16, 16),   # even kernel, no groups
        (100, 7, 0, 2, 8, 12),     # no padding, out != in channels
        (50, 4, 3, 8, 16, 8),      # 8 groups, fewer outputs than inputs
        (31, 5, 9, 16, 16, 32),    # padding larger than the kernel
        (10, 10, 0, 2, 4, 4),      # kernel as long as the input -> one output
        (64, 1, 0, 4, 8, 8),       # pointwise
    ],
)
def test_matches_conv1d_shapes(length, kernel, padding, groups, in_channels, out_channels):
    for bias in (True, False):
        x, w, b = _inputs(2, in_channels, out_channels, length, kernel, groups, bias=bias, seed=kernel)
        expected = F.conv1d(x, w, b, padding=padding, groups=groups)
        actual = fft_grouped_conv1d(x, w, b, padding=padding, groups=groups)
        assert actual.shape == expected.shape
        _assert_close(actual, expected)


def test_float64_is_exact():
    x, w, b = _inputs(2, 8, 8, 40, 6, 2, dtype=torch.float64)
    actual = fft_grouped_conv1d(x, w, b, padding=3, groups=2)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, F.conv1d(x, w, b, padding=3, groups=2), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel,padding", [(16, 8), (9, 4)])
def test_gradients_match_conv1d(kernel, padding):
    x, w, b = _inputs(2, 32, 32, 312, kernel, 4, seed=1)
    grad_out = torch.randn(2, 32, 312 + 2 * padding - kernel + 1, generator=torch.Generator().manual_seed(2))
    grads = []
    for fn in (F.conv1d, fft_grouped_conv1d):
        xi, wi, bi = (t.clone().requires_grad_(True) for t in (x, w, b))
        out = fn(xi, wi, bi, padding=padding, groups=4) if fn is F.conv1d else fn(xi, wi, bi, padding, 4)
        out.backward(grad_out)
        grads.append((xi.grad, wi.grad, bi.grad))
    for expected, actual in zip(grads[0], grads[1]):
        _assert_close(actual, expected, rel=1e-4)


def test_gradcheck_float64():
    x, w, b = _inputs(1, 4, 4, 12, 4, 2, dtype=torch.float64, seed=3)
    inputs = tuple(t.requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(lambda a, c, d: fft_grouped_conv1d(a, c, d, 2, 2), inputs)


def test_bf16_autocast_runs_in_float32_and_is_close():
    x, w, b = _inputs(2, 64, 64, 312, 16, 4, seed=4)
    reference = F.conv1d(x, w, b, padding=8, groups=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_fp32_input = fft_grouped_conv1d(x, w, b, padding=8, groups=4)
        out_bf16_input = fft_grouped_conv1d(x.bfloat16(), w, b, padding=8, groups=4)
    assert out_fp32_input.dtype == torch.float32  # the input dtype, not autocast's
    assert out_bf16_input.dtype == torch.bfloat16
    # float32 input: the FFT ran in float32 even under autocast -> float32 accuracy
    _assert_close(out_fp32_input, reference)
    # bf16 input: only the rounding of the input and of the output to bf16 remain
    _assert_close(out_bf16_input.float(), reference, rel=3e-2)


def test_bf16_weights_and_backward_under_autocast():
    x, w, b = _inputs(2, 16, 16, 50, 8, 4, seed=5)
    x, w, b = (t.bfloat16().requires_grad_(True) for t in (x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fft_grouped_conv1d(x, w, b, padding=4, groups=4)
    out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == torch.bfloat16
    assert all(torch.isfinite(g).all() for g in (x.grad, w.grad, b.grad))


def test_conv1d_forward_with_weight_norm_module():
    conv = nn.Conv1d(32, 32, kernel_size=16, padding=8, groups=4)
    conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    x = torch.randn(2, 32, 312)
    expected = conv1d_forward(conv, x, "conv")
    actual = conv1d_forward(conv, x, "fft")
    _assert_close(actual, expected)
    actual.sum().backward()
    grads_fft = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    expected.sum().backward()
    for p, g in zip(conv.parameters(), grads_fft):
        _assert_close(g, p.grad, rel=1e-4)
    with pytest.raises(ValueError):
        conv1d_forward(conv, x, "winograd")
    with pytest.raises(ValueError):
        conv1d_forward(nn.Conv1d(4, 4, 3, stride=2), torch.randn(1, 4, 10), "fft")


def test_input_validation():
    x, w, b = _inputs(1, 8, 8, 20, 4, 2)
    with pytest.raises(ValueError):
        fft_grouped_conv1d(x, w, b, padding=2, groups=3)
    with pytest.raises(ValueError):
        fft_grouped_conv1d(x, w, b, padding=-1, groups=2)
    with pytest.raises(ValueError):
        fft_grouped_conv1d(x[..., :2], w, b, padding=0, groups=2)
    with pytest.raises(ValueError):
        fft_grouped_conv1d(x, w, b[:4], padding=2, groups=2)


def test_fast_fft_size():
    assert fast_fft_size(376) == 384  # the D-BETA shape: 312 tokens + 64 padding
    assert fast_fft_size(1) == 2
    for n in range(1, 600):
        m = fast_fft_size(n)
        assert m >= n and m % 2 == 0
