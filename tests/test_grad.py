"""Gradients of conv (npconv.grad) against torch autograd, finite differences and exact math."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv import ConvSpec
from npconv._adjoint import weight_gradient
from npconv._choose import reason
from npconv.algorithms import REGISTRY, im2col
from npconv.grad import conv_backward, conv_transpose_backward

from conftest import RTOL, assert_close, spy_weight_gradient, using_threads
from strategies import Case, cases

ALGORITHMS = [*REGISTRY, "auto"]
F = torch.nn.functional
_TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}


def torch_grads(case: Case, gy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x.grad, w.grad and bias.grad of torch's conv (pads by F.pad) for grad_output ``gy``."""
    x = torch.from_numpy(case.x).requires_grad_()
    w = torch.from_numpy(case.w).requires_grad_()
    b = torch.zeros(case.w.shape[0], dtype=w.dtype, requires_grad=True)
    mode = case.kwargs["padding_mode"]
    flat = [p for pair in reversed(case.pads) for p in pair]  # torch pads the last dim first
    xp = F.pad(x, flat, mode=_TORCH_MODE.get(mode, mode)) if any(flat) else x
    conv = (F.conv1d, F.conv2d, F.conv3d)[case.nd - 1]
    kw = {k: case.kwargs[k] for k in ("stride", "dilation", "groups")}
    conv(xp, w, b, **kw).backward(torch.from_numpy(gy))
    return x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


def declined(algorithm: str, x, w, gy, needs: str, **kwargs) -> bool:
    """Whether ``algorithm`` declines the convolution that computes this gradient."""
    if algorithm == "auto":
        return False
    spec = ConvSpec.build(x.shape, w.shape, **kwargs)
    if needs == "input":
        return reason(algorithm, spec, np.dtype(np.float64), transposed=True) is not None
    if REGISTRY[algorithm].weight_unsupported(spec, np.dtype(np.float64)) is None:
        return False  # its own weight gradient
    inner = weight_gradient(spec, x, gy)[0]
    return reason(algorithm, inner, np.dtype(np.float64)) is not None


def assert_grads_close(got, expected, algorithm: str) -> None:
    """Every gradient within float64's tolerance times the algorithm's error scale."""
    scale = REGISTRY[algorithm].error_scale if algorithm in REGISTRY else 1.0
    for a, b in zip(got, expected):
        assert a.shape == b.shape, (a.shape, b.shape)
        err = float(np.abs(a - b).max(initial=0.0))
        bound = RTOL[np.dtype(np.float64)] * scale * max(float(np.abs(b).max(initial=0)), 1.0)
        assert err <= bound, f"{algorithm}: max error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(case=cases(), layout=st.sampled_from(["NCHW", "NHWC"]), seed=st.integers(0, 2**16))
def test_conv_backward_matches_torch_autograd(algorithm, case, layout, seed):
    gy = np.random.default_rng(seed).standard_normal(
        npconv.conv(case.x, case.w, **case.kwargs).shape
    )
    x, w, g = case.x, case.w, gy
    if layout == "NHWC":
        x, w, g = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2)), np.moveaxis(g, 1, -1)
    kwargs = dict(case.kwargs, layout=layout)
    expected = dict(zip(("input", "weight", "bias"), torch_grads(case, gy)))
    for needs in ("input", "weight"):  # each gradient is a convolution by the algorithm
        if declined(algorithm, x, w, g, needs, **kwargs):
            with pytest.raises(ValueError, match="cannot run this convolution"):
                conv_backward(g, x, w, algorithm=algorithm, needs=(needs,), **kwargs)
            continue
        before = [a.copy() for a in (g, x, w)]
        grads = conv_backward(g, x, w, algorithm=algorithm, needs=(needs, "bias"), **kwargs)
        for a, b in zip((g, x, w), before):
            np.testing.assert_array_equal(a, b)  # inputs are never modified
        got = getattr(grads, needs)
        if layout == "NHWC":
            got = (
                np.moveaxis(got, -1, 1) if needs == "input" else np.moveaxis(got, (-1, -2), (0, 1))
            )
        assert_grads_close((got, grads.bias), (expected[needs], expected["bias"]), algorithm)


@given(case=cases(dtypes=(np.complex128,)), layout=st.sampled_from(["NCHW", "NHWC"]))
def test_complex_gradients_follow_torch(case, layout):
    # torch returns the conjugate Wirtinger derivative: the adjoint uses conj(w), conj(x)
    y_shape = npconv.conv(case.x, case.w, **case.kwargs).shape
    re, im = np.random.default_rng(0).standard_normal((2, *y_shape))
    gy = re + 0.7j * im
    x, w, g = case.x, case.w, gy
    if layout == "NHWC":
        x, w, g = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2)), np.moveaxis(g, 1, -1)
    gx, gw, gb = conv_backward(g, x, w, layout=layout, **case.kwargs)
    if layout == "NHWC":
        gx, gw = np.moveaxis(gx, -1, 1), np.moveaxis(gw, (-1, -2), (0, 1))
    assert_grads_close((gx, gw, gb), torch_grads(case, gy), "auto")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resnet_layer(algorithm, rng):
    # 3x3, stride 1, "same": the case every fast algorithm (Winograd, FFT) accepts
    case = Case(
        rng.standard_normal((2, 8, 10, 10)),
        rng.standard_normal((8, 8, 3, 3)),
        None,
        {"stride": 1, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros"},
        [(1, 1)] * 2,
    )
    gy = rng.standard_normal((2, 8, 10, 10))
    expected = dict(zip(("input", "weight", "bias"), torch_grads(case, gy)))
    for needs in ("input", "weight"):  # the weight gradient's kernel is 10x10
        if declined(algorithm, case.x, case.w, gy, needs, **case.kwargs):
            with pytest.raises(ValueError, match="cannot run this convolution"):
                conv_backward(gy, case.x, case.w, algorithm=algorithm, needs=needs, **case.kwargs)
            continue
        grads = conv_backward(
            gy, case.x, case.w, algorithm=algorithm, needs=(needs, "bias"), **case.kwargs
        )
        got = (getattr(grads, needs), grads.bias)
        assert_grads_close(got, (expected[needs], expected["bias"]), algorithm)


@pytest.mark.parametrize("transposed_points", [0, 10**9], ids=["patches-gy^T", "gy-patches^T"])
@pytest.mark.parametrize("chunk_bytes", [1, 2**30], ids=["row-chunks", "one-chunk"])
@pytest.mark.parametrize(
    ("groups", "stride", "dilation", "size"), [(1, 1, 1, 7), (2, 2, 1, (9, 8)), (4, 1, 2, 6)]
)
def test_im2col_weight_gradient_by_its_own_patches(
    transposed_points, chunk_bytes, groups, stride, dilation, size, rng, monkeypatch
):
    # channels-first float weight gradients take im2col's side-by-side patch GEMMs: in
    # chunks of output rows or of whole samples, as dW or as dW^T, each matches torch
    monkeypatch.setattr(im2col, "TRANSPOSED_POINTS", transposed_points)
    monkeypatch.setattr(im2col, "GRAD_CHUNK_BYTES", chunk_bytes)
    calls = spy_weight_gradient(monkeypatch, "im2col")
    x = rng.standard_normal((3, 8, *np.broadcast_to(size, 2)))
    w = rng.standard_normal((12, 8 // groups, 3, 3))
    kwargs = {"stride": stride, "padding": 1, "dilation": dilation, "groups": groups}
    case = Case(x, w, None, {**kwargs, "padding_mode": "zeros"}, [(1, 1)] * 2)
    gy = rng.standard_normal(npconv.conv(x, w, **kwargs).shape)
    for algorithm in ("im2col", "auto"):
        got = conv_backward(gy, x, w, algorithm=algorithm, needs="weight", **kwargs).weight
        assert_grads_close((got,), (torch_grads(case, gy)[1],), "im2col")
    assert calls, "the weight gradient did not take im2col's own patch GEMMs"


@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "in-turn"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("batch", "channels", "groups", "nd"),
    [
        (1, (8, 4), 1, 2),
        (2, (4, 12), 1, 2),
        (3, (8, 6), 2, 2),
        (6, (6, 6), 3, 1),
        (4, (4, 8), 1, 3),
    ],
)
def test_im2col_pointwise_weight_gradient_from_the_input_as_it_lies(
    sharing, threads, batch, channels, groups, nd, rng, monkeypatch
):
    """A 1x1 stride-1 layer without pads: one GEMM per sample on the input and the output
    gradient as they lie, the larger of the channels as rows, shared among the threads
    where the chunks would be and each gets as many samples; never a patch copy. Each
    way, in 1-3 dims, the gradient is PyTorch's."""
    from threadpoolctl import threadpool_info

    blas_threads = []
    products = np.matmul

    def spy(*args, **kwargs):
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        blas_threads.append({lib["num_threads"] for lib in blas})
        return products(*args, **kwargs)

    monkeypatch.setattr(im2col, "_shared", lambda spec: sharing)
    monkeypatch.setattr(im2col, "side_by_side", None)  # a copy would fail
    calls = spy_weight_gradient(monkeypatch, "im2col")
    c, o = channels
    x = rng.standard_normal((batch, c, *[5] * nd)).astype(np.float32)
    w = rng.standard_normal((o, c // groups, *[1] * nd)).astype(np.float32)
    case = Case(x, w, None, {"stride": 1, "padding": 0, "dilation": 1, "groups": groups,
                             "padding_mode": "zeros"}, [(0, 0)] * nd)  # fmt: skip
    gy = rng.standard_normal(npconv.conv_output_shape(x.shape, w.shape, groups=groups))
    gy = gy.astype(np.float32)
    monkeypatch.setattr(im2col.np, "matmul", spy)
    with using_threads(threads):
        got = conv_backward(gy, x, w, algorithm="im2col", groups=groups, needs="weight")
    shared = sharing and threads > 1 and batch % threads == 0
    assert blas_threads == [{1 if shared else threads}] * batch  # one GEMM per sample
    expected = torch_grads(case, gy)[1]
    assert np.abs(got.weight - expected).max() <= 1e-5 * np.abs(expected).max()
    assert calls, "the weight gradient did not take im2col's own GEMMs"


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_wrappers_match_torch_nn_grad(nd, rng):
    x = rng.standard_normal((2, 4, *[6] * nd))
    w = rng.standard_normal((6, 2, *[3] * nd))
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    gy = rng.standard_normal(npconv.conv(x, w, **kw).shape)
    xt, wt, gt = (torch.from_numpy(a) for a in (x, w, gy))
    ours_in = getattr(npconv.grad, f"conv{nd}d_input")
    ours_w = getattr(npconv.grad, f"conv{nd}d_weight")
    theirs_in = getattr(torch.nn.grad, f"conv{nd}d_input")
    theirs_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
    assert_close(ours_in(x.shape, w, gy, **kw), theirs_in(x.shape, wt, gt, **kw).numpy())
    assert_close(ours_w(x, w.shape, gy, **kw), theirs_w(xt, w.shape, gt, **kw).numpy())


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_finite_differences(mode, rng):
    # L(x, w, b) = <gy, conv(x, w, b)>; central differences along random directions
    x = rng.standard_normal((2, 2, 5, 4))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    kw = dict(stride=(2, 1), padding=((2, 1), (1, 0)), dilation=(1, 2), padding_mode=mode)
    gy = rng.standard_normal(npconv.conv(x, w, b, **kw).shape)

    def loss(x_, w_, b_):
        return float(np.vdot(gy, npconv.conv(x_, w_, b_, **kw)))

    gx, gw, gb = conv_backward(gy, x, w, **kw)
    h = 1e-3
    for _ in range(3):
        dx, dw, db = (rng.standard_normal(a.shape) for a in (x, w, b))
        numeric = (
            loss(x + h * dx, w + h * dw, b + h * db) - loss(x - h * dx, w - h * dw, b - h * db)
        ) / (2 * h)
        analytic = np.vdot(gx, dx) + np.vdot(gw, dw) + np.vdot(gb, db)
        assert abs(numeric - analytic) <= 1e-8 * max(abs(analytic), 1.0)


@given(case=cases(dtypes=(np.int8, np.int32, np.int64), nds=(1, 2)))
def test_integer_gradients_are_exact(case):
    gy = np.random.default_rng(0).integers(-5, 5, npconv.conv(case.x, case.w, **case.kwargs).shape)
    grads = conv_backward(gy, case.x, case.w, **case.kwargs)
    expected = torch_grads(
        Case(case.x.astype(np.float64), case.w.astype(np.float64), None, case.kwargs, case.pads),
        gy.astype(np.float64),
    )  # small integers: float64 sums are exact
    for got, ref in zip(grads, expected):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref.astype(np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_float_dtypes_are_kept(dtype, rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, 4, 3, 3)).astype(dtype)
    grads = conv_backward(gy, x, w, stride=2, padding=1)
    kwargs = {"stride": 2, "dilation": 1, "groups": 1, "padding_mode": "zeros"}
    case = Case(x.astype(np.float64), w.astype(np.float64), None, kwargs, [(1, 1)] * 2)
    for got, ref in zip(grads, torch_grads(case, gy.astype(np.float64))):
        assert got.dtype == dtype
        assert_close(got, ref.astype(dtype))


def test_needs_selects_what_is_computed(rng):
    x, w = rng.standard_normal((1, 2, 5)), rng.standard_normal((3, 2, 3))
    gy = rng.standard_normal((1, 3, 3))
    full = conv_backward(gy, x, w)
    only_w = conv_backward(gy, x, w, needs=("weight",))
    assert only_w.input is None and only_w.bias is None
    np.testing.assert_array_equal(only_w.weight, full.weight)
    only_b = conv_backward(gy, x, w, needs="bias")
    assert only_b.input is None and only_b.weight is None
    np.testing.assert_array_equal(only_b.bias, full.bias)


def test_unbatched_input(rng):
    x, w = rng.standard_normal((2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    gy = rng.standard_normal((3, 5, 5))
    unbatched = conv_backward(gy, x, w, padding="same", padding_mode="circular")
    batched = conv_backward(gy[None], x[None], w, padding="same", padding_mode="circular")
    assert_close(unbatched.input, batched.input[0])
    assert_close(unbatched.weight, batched.weight)
    one = npconv.grad.conv2d_input(x.shape, w, gy, padding=1)
    assert_close(one, npconv.grad.conv2d_input(x[None].shape, w, gy[None], padding=1)[0])


def test_empty_batch():
    x, w = np.zeros((0, 2, 5)), np.ones((3, 2, 3))
    gx, gw, gb = conv_backward(np.zeros((0, 3, 3)), x, w)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(3))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: conv_backward(np.ones((1, 3, 4)), np.ones((1, 2, 5)), np.ones((3, 2, 3))),
            r"conv_backward: grad_output must have the shape of the forward result, "
            r"\(1, 3, 3\), got \(1, 3, 4\)",
        ),
        (
            lambda: conv_backward(
                np.ones((3, 3)), np.ones((2, 5)), np.ones((3, 2, 3)), needs=("x",)
            ),
            r"conv_backward: needs may only name \('input', 'weight', 'bias'\), got \['x'\]",
        ),
        (
            lambda: npconv.grad.conv2d_input((1, 2, 5), np.ones((3, 2, 3)), np.ones((1, 3, 3))),
            r"conv2d_input: weight must have 4 dims for a 2-d convolution, got weight.ndim=3",
        ),
        (
            lambda: npconv.grad.conv1d_weight(np.ones((1, 2, 5)), (3, 2, 3, 3), np.ones((1, 3, 3))),
            r"conv1d_weight: weight_size must have 3 entries for a 1-d convolution, "
            r"got \(3, 2, 3, 3\)",
        ),
        (
            lambda: npconv.grad.conv1d_weight(np.ones((1, 4, 5)), (3, 2, 3), np.ones((1, 3, 3))),
            r"conv1d_weight: x has 4 channels but w expects 2",
        ),
        (
            lambda: conv_backward(
                np.ones((1, 3, 3)), np.ones((1, 2, 5)), np.ones((3, 2, 3)), layout="NWC"
            ),
            r"conv_backward: layout must be one of",
        ),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _exact_adjoint_1d(gy, w, stride, pad, dilation, size):
    """``conv_transpose`` of a 1-d convolution (groups 1), scattered in Python ints."""
    (n_, o_, p_), (_, c_, k_) = gy.shape, w.shape
    out = np.zeros((n_, c_, size), dtype=object)
    for n, o, p, c, k in itertools.product(*map(range, (n_, o_, p_, c_, k_))):
        i = p * stride + k * dilation - pad
        if 0 <= i < size:
            out[n, c, i] += int(gy[n, o, p]) * int(w[o, c, k])
    return out


def _exact_weight_grad_1d(x, gy, stride, pad, dilation, k_):
    """``dL/dw`` of a 1-d convolution (groups 1), summed in Python ints."""
    (n_, c_, size), (_, o_, p_) = x.shape, gy.shape
    out = np.zeros((o_, c_, k_), dtype=object)
    for n, o, p, c, k in itertools.product(*map(range, (n_, o_, p_, c_, k_))):
        i = p * stride + k * dilation - pad
        if 0 <= i < size:
            out[o, c, k] += int(x[n, c, i]) * int(gy[n, o, p])
    return out


@pytest.mark.parametrize(("scale", "dtype"), [(2**10, np.int64), (2**40, object)])
@pytest.mark.parametrize("algorithm", ["auto", "im2col", "shifted", "naive", "col2im"])
def test_integer_gradients_follow_the_forward_rules_beyond_int64(scale, dtype, algorithm, rng):
    # products of 2**40 x 2**30 (or 2**40), summed: past int64, where conv returns exact
    # Python ints; 2**10 x 2**30 stays in int64
    x = rng.integers(-scale, scale, (2, 3, 9)) | 1
    w = rng.integers(-(2**30), 2**30, (4, 3, 3))
    kw = dict(stride=2, padding=1, dilation=2)
    y = npconv.conv(x, w, **kw)
    assert y.dtype == dtype
    gy = rng.integers(-scale, scale, y.shape)
    expected_x = _exact_adjoint_1d(gy, w, 2, 1, 2, 9)
    expected_w = _exact_weight_grad_1d(x, gy, 2, 1, 2, 3)
    names = ("input",) if algorithm == "col2im" else ("input", "weight")
    grads = conv_backward(gy, x, w, algorithm=algorithm, needs=names, **kw)
    for got, ref in [(grads.input, expected_x), (grads.weight, expected_w)][: len(names)]:
        assert got.dtype == dtype
        assert got.tolist() == ref.tolist()
    xt = npconv.conv_transpose(gy, w, output_size=(9,), algorithm=algorithm, **kw)
    assert xt.dtype == dtype and xt.tolist() == expected_x.tolist()
    gt = conv_transpose_backward(x, gy, w, output_size=(9,), needs=("input", "weight"), **kw)
    assert gt.input.dtype == dtype and gt.input.tolist() == y.tolist()  # its adjoint: conv
    assert gt.weight.tolist() == _exact_weight_grad_1d(x, gy, 2, 1, 2, 3).tolist()
