"""conv_transpose against torch.nn.functional.conv_transpose*d, and as the adjoint of conv."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv._choose import reason
from npconv._spec import ConvOptions
from npconv.algorithms import REGISTRY
from npconv.grad import conv_transpose_backward

from conftest import RTOL, assert_close
from strategies import cases

ALGORITHMS = [*REGISTRY, "auto"]
F = torch.nn.functional


@dataclass
class TransposeCase:
    x: np.ndarray  # (N, I, *spatial)
    w: np.ndarray  # (I, O/G, *kernel)
    bias: np.ndarray | None
    kwargs: dict[str, Any]  # stride, padding (pairs), dilation, groups, output_padding/size
    pads: list[tuple[int, int]]
    output_padding: tuple[int, ...]


@st.composite
def transpose_cases(draw: st.DrawFn) -> TransposeCase:
    """A random valid transposed convolution, with asymmetric pads and output_padding."""
    nd = draw(st.sampled_from((1, 2, 3)))
    groups, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = draw(st.tuples(*[st.integers(1, 3)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dilation = draw(st.tuples(*[st.integers(1, 3)] * nd))
    size = draw(st.tuples(*[st.integers(1, 4 if nd < 3 else 2)] * nd))
    extra = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    pads = []
    for n, k, s, d, p in zip(size, kernel, stride, dilation, extra):
        full = (n - 1) * s + (k - 1) * d + 1 + p  # the output without padding
        lo = draw(st.integers(0, full - 1))
        pads.append((lo, draw(st.integers(0, full - 1 - lo))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 2)), groups * cg, *size))
    w = rng.standard_normal((groups * cg, og, *kernel))
    bias = rng.standard_normal(groups * og) if draw(st.booleans()) else None
    kwargs: dict[str, Any] = dict(stride=stride, dilation=dilation, groups=groups)
    symmetric = all(lo == hi for lo, hi in pads)
    kwargs["padding"] = tuple(lo for lo, _ in pads) if symmetric else tuple(pads)
    if all(p < s for p, s in zip(extra, stride)) and draw(st.booleans()):
        full = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(size, stride, kernel, dilation)]
        kwargs["output_size"] = tuple(f + p - lo - hi for f, p, (lo, hi) in zip(full, extra, pads))
    else:
        kwargs["output_padding"] = extra
    return TransposeCase(x, w, bias, kwargs, pads, extra)


def torch_transpose(case: TransposeCase) -> np.ndarray:
    """torch's transposed conv without padding, then the pads cropped off each end."""
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[case.w.ndim - 3]
    x, w = torch.from_numpy(case.x), torch.from_numpy(case.w)
    b = None if case.bias is None else torch.from_numpy(case.bias)
    kw = {k: case.kwargs[k] for k in ("stride", "dilation", "groups")}
    y = fn(x, w, b, output_padding=case.output_padding, **kw).numpy()
    crop = tuple(slice(lo, n - hi) for n, (lo, hi) in zip(y.shape[2:], case.pads))
    return y[(slice(None), slice(None), *crop)]


def declined(algorithm: str, x: np.ndarray, w: np.ndarray, **kwargs: Any) -> bool:
    if algorithm == "auto":
        return False
    output_size = kwargs.pop("output_size", None)
    options = ConvOptions.create("conv_transpose", **kwargs)
    spec = options.bind_transposed(x.shape, w.shape, output_size)
    return reason(algorithm, spec, np.dtype(x.dtype), transposed=True) is not None


def error_bound(algorithm: str, ref: np.ndarray) -> float:
    scale = REGISTRY[algorithm].error_scale if algorithm in REGISTRY else 1.0
    return RTOL[np.dtype(np.float64)] * scale * max(float(np.abs(ref).max(initial=0)), 1.0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(case=transpose_cases(), layout=st.sampled_from(["NCHW", "NHWC"]))
def test_matches_torch_conv_transpose(algorithm, case, layout):
    x, w = case.x, case.w
    if layout == "NHWC":
        x, w = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))
    kwargs = dict(case.kwargs, layout=layout, algorithm=algorithm)
    if declined(algorithm, case.x, case.w, **case.kwargs):
        with pytest.raises(ValueError, match="cannot run this convolution"):
            npconv.conv_transpose(x, w, case.bias, **kwargs)
        return
    y = npconv.conv_transpose(x, w, case.bias, **kwargs)
    if layout == "NHWC":
        y = np.moveaxis(y, -1, 1)
    ref = torch_transpose(case)
    assert y.shape == ref.shape
    assert float(np.abs(y - ref).max()) <= error_bound(algorithm, ref)


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "shifted", "einsum"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_pointwise_input_gradient_with_input_left_over(algorithm, layout, rng):
    """1x1 kernel, dilation 2, output_padding 1: dL/dx of the transposed convolution is a
    forward convolution whose input is one column longer than the part its output reads,
    which the 1x1 stride-1 shortcuts of im2col and shifted must not take for patches."""
    x, w = rng.standard_normal((1, 4, 3, 5)), rng.standard_normal((4, 3, 1, 1))
    xt = torch.from_numpy(x).requires_grad_()
    y = F.conv_transpose2d(xt, torch.from_numpy(w), dilation=(1, 2), output_padding=(0, 1))
    gy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(gy))
    if layout == "NHWC":
        x, w, gy = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2)), np.moveaxis(gy, 1, -1)
    grads = conv_transpose_backward(
        gy, x, w, dilation=(1, 2), output_padding=(0, 1), layout=layout, algorithm=algorithm,
        needs=("input",),
    )  # fmt: skip
    got = grads.input if layout == "NCHW" else np.moveaxis(grads.input, -1, 1)
    assert_close(got, xt.grad.numpy())


@given(case=transpose_cases(), seed=st.integers(0, 2**16), complex_=st.booleans())
def test_backward_matches_torch_autograd(case, seed, complex_):
    if complex_:  # torch's convention: the conjugate Wirtinger derivative
        case.x, case.w = case.x + 0.5j * case.x[::-1], case.w - 0.5j * case.w[::-1]
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[case.w.ndim - 3]
    x, w = (torch.from_numpy(a).requires_grad_() for a in (case.x, case.w))
    b = torch.zeros(case.w.shape[1] * case.kwargs["groups"], dtype=x.dtype, requires_grad=True)
    kw = {k: case.kwargs[k] for k in ("stride", "dilation", "groups")}
    y = fn(x, w, b, output_padding=case.output_padding, **kw)
    crop = tuple(slice(lo, n - hi) for n, (lo, hi) in zip(y.shape[2:], case.pads))
    y = y[(slice(None), slice(None), *crop)]
    gy = np.random.default_rng(seed).standard_normal(tuple(y.shape)) * (1 - 0.3j if complex_ else 1)
    y.backward(torch.from_numpy(gy))
    grads = conv_transpose_backward(gy, case.x, case.w, **case.kwargs)
    for got, ref in zip(grads, (x.grad, w.grad, b.grad)):
        assert_close(got, ref.numpy())


@given(case=cases(dtypes=(np.int64,), modes=("zeros",)), seed=st.integers(0, 2**16))
def test_conv_transpose_is_the_adjoint_of_conv(case, seed):
    # <conv(x, w), y> == <x, conv_transpose(y, w)>, exactly in integers
    kw = {k: case.kwargs[k] for k in ("stride", "dilation", "groups")}
    y_shape = npconv.conv(case.x, case.w, padding=case.pads, **kw).shape
    y = np.random.default_rng(seed).integers(-9, 9, y_shape)
    xt = npconv.conv_transpose(y, case.w, padding=case.pads, output_size=case.x.shape, **kw)
    lhs = int(np.vdot(npconv.conv(case.x, case.w, padding=case.pads, **kw), y))
    assert xt.dtype == np.int64 and xt.shape == case.x.shape
    assert lhs == int(np.vdot(case.x.astype(np.int64), xt))


def test_torch_module_output_size(rng):
    x = rng.standard_normal((2, 4, 5, 6))
    layer = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2).double()
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    for size in [(9, 11), (10, 12), (2, 6, 10, 11)]:
        ref = layer(torch.from_numpy(x), output_size=size).detach().numpy()
        y = npconv.conv_transpose2d(x, w, b, stride=2, padding=1, groups=2, output_size=size)
        assert_close(y, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_dtypes(dtype, rng):
    x = (rng.standard_normal((1, 2, 4)) * 4).astype(dtype)
    w = (rng.standard_normal((2, 3, 3)) * 4).astype(dtype)
    y = npconv.conv_transpose1d(x, w, stride=2)
    ref = F.conv_transpose1d(
        torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), stride=2
    ).numpy()
    expected = np.dtype(np.int64) if np.dtype(dtype).kind == "i" else np.dtype(dtype)
    assert y.dtype == expected
    assert_close(y, ref.astype(expected))


def test_unbatched(rng):
    x, w = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 2, 2, 2))
    y = npconv.conv_transpose(x, w, stride=(1, 3), groups=2)
    assert_close(y, npconv.conv_transpose(x[None], w, stride=(1, 3), groups=2)[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(stride=2, output_padding=2),
            ValueError,
            r"conv_transpose: output_padding must be smaller than stride or dilation in every "
            r"dim, got output_padding=\(2,\) with stride=\(2,\) and dilation=\(1,\)",
        ),
        (
            dict(stride=2, output_size=(12,)),
            ValueError,
            r"conv_transpose: output_size=\(12,\) is impossible for this input: each dim must "
            r"lie between \(9,\) and \(10,\)",
        ),
        (
            dict(stride=2, output_size=(10,), output_padding=1),
            ValueError,
            r"conv_transpose: pass output_size or output_padding, not both",
        ),
        (dict(padding="same"), ValueError, r"conv_transpose: padding must be ints or"),
        (dict(padding=5), ValueError, r"conv_transpose: the output would be empty"),
        (dict(groups=3), ValueError, r"conv_transpose: groups=3 must be >= 1 and divide"),
        (dict(groups=1.0), TypeError, r"conv_transpose: groups must be an int"),
        (dict(layout="NCW"), ValueError, r"conv_transpose: layout must be one of"),
        (dict(stride=0), ValueError, r"conv_transpose: stride must be >= 1"),
        (dict(output_size=(1, 2)), ValueError, r"conv_transpose: output_size must be an int or 1"),
        (dict(algorithm="fast"), ValueError, r"conv_transpose: unknown algorithm 'fast'"),
    ],
)
def test_errors(kwargs, error, match):
    x, w = np.ones((1, 2, 4)), np.ones((2, 3, 3))
    with pytest.raises(error, match=match):
        npconv.conv_transpose(x, w, **kwargs)


def test_errors_on_shapes():
    with pytest.raises(
        ValueError, match=r"conv_transpose: x has 3 channels but w expects 2 \(w.shape\[0\]\)"
    ):
        npconv.conv_transpose(np.ones((1, 3, 4)), np.ones((2, 3, 3)))
    with pytest.raises(
        ValueError, match=r"conv_transpose: x has 3 channels but w expects 2 \(w.shape\[2\]\)"
    ):
        npconv.conv_transpose(np.ones((1, 4, 3)), np.ones((3, 3, 2)), layout="NHWC")
    with pytest.raises(ValueError, match=r"conv_transpose: bias must have shape \(3,\)"):
        npconv.conv_transpose(np.ones((1, 2, 4)), np.ones((2, 3, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"conv_transpose: x must have 3 dims"):
        npconv.conv_transpose(np.ones((1, 1, 2, 4)), np.ones((2, 3, 3)))
    with pytest.raises(ValueError, match=r"conv_transpose: w must have 3, 4 or 5 dims"):
        npconv.conv_transpose(np.ones((1, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"conv_transpose2d: w must have 4 dims"):
        npconv.conv_transpose2d(np.ones((1, 2, 4)), np.ones((2, 3, 3)))
    with pytest.raises(TypeError, match=r"conv_transpose: x must hold numbers"):
        npconv.conv_transpose(np.array(["a"]), np.ones((2, 3, 3)))
