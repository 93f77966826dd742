"""Every registered algorithm against PyTorch on random problems (every option)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import npconv
import npconv.grad
from npconv import _windows
from npconv._dispatch import convolve
from npconv._spec import ConvOptions
from npconv.algorithms import REGISTRY, im2col, shifted

from conftest import (
    FORWARD,
    RTOL,
    assert_close,
    declines,
    refuses_without_numba,
    torch_conv,
    using_threads,
)
from strategies import Case, as_view, cases

ALGORITHMS = [*FORWARD, "auto"]


def to_nhwc(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """The case's arrays in channels-last layout: x (N, *spatial, C), w (*kernel, C/G, O)."""
    return np.moveaxis(case.x, 1, -1), np.moveaxis(case.w, (0, 1), (-1, -2))


def run(case: Case, algorithm: str, layout: str = "NCHW", view: str = "contiguous"):
    """npconv's result in NCHW, or None when the algorithm declines the problem."""
    x, w = (case.x, case.w) if layout == "NCHW" else to_nhwc(case)
    if declines(algorithm, x, w, layout, **case.kwargs):
        return None
    x, w = as_view(x, view), as_view(w, view)
    x_before, w_before = x.copy(), w.copy()
    y = npconv.conv(x, w, case.bias, layout=layout, algorithm=algorithm, **case.kwargs)
    np.testing.assert_array_equal(x, x_before)  # inputs are never modified
    np.testing.assert_array_equal(w, w_before)
    return y if layout == "NCHW" else np.moveaxis(y, -1, 1)


def tolerance_dtype(algorithm: str):
    return REGISTRY[algorithm].error_scale if algorithm in REGISTRY else 1.0


def check(case: Case, algorithm: str, layout: str = "NCHW", view: str = "contiguous") -> None:
    y = run(case, algorithm, layout, view)
    if y is None:
        return
    ref = torch_conv(
        case.x,
        case.w,
        case.bias,
        stride=case.kwargs["stride"],
        pads=case.pads,
        dilation=case.kwargs["dilation"],
        groups=case.kwargs["groups"],
        padding_mode=case.kwargs["padding_mode"],
    )
    expected_dtype = np.result_type(*(a for a in (case.x, case.w, case.bias) if a is not None))
    if expected_dtype.kind in "biu":
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, ref.astype(np.int64))
        return
    assert y.dtype == expected_dtype
    scale = max(float(np.abs(ref).max(initial=0.0)), 1.0)
    err = float(np.abs(y.astype(np.complex128) - ref).max(initial=0.0))
    bound = RTOL[y.dtype] * tolerance_dtype(algorithm) * scale
    assert err <= bound, f"{algorithm}: max error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    case=cases(),
    layout=st.sampled_from(["NCHW", "NHWC"]),
    view=st.sampled_from(["contiguous", "fortran", "strided", "reversed"]),
)
def test_float64_matches_torch(algorithm, case, layout, view):
    check(case, algorithm, layout, view)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(case=cases(dtypes=(np.float32, np.float16, np.complex64, np.complex128), nds=(1, 2)))
def test_other_float_dtypes_match_torch(algorithm, case):
    check(case, algorithm)


def relu_conv(case: Case, algorithm: str, layout: str = "NCHW") -> np.ndarray:
    """npconv's convolution with the ReLU after it that the ONNX evaluator fuses into a
    Conv (``convolve(..., relu=True)``), in NCHW; inputs checked unmodified."""
    x, w = (case.x, case.w) if layout == "NCHW" else to_nhwc(case)
    x_before, w_before = x.copy(), w.copy()
    options = ConvOptions.create("conv", layout=layout, **case.kwargs)
    y = convolve(options, x, w, case.bias, algorithm, relu=True)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(w, w_before)
    return y if layout == "NCHW" else np.moveaxis(y, -1, 1)


def relu_of(y: np.ndarray) -> np.ndarray:
    """``max(y, 0)`` as ONNX's Relu: NaN stays NaN, -Inf becomes 0."""
    return np.where(y < 0, 0, y)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    case=cases(dtypes=(np.float64, np.float32, np.int16), nds=(1, 2)),
    layout=st.sampled_from(["NCHW", "NHWC"]),
)
def test_relu_after_the_convolution_matches_torch(algorithm, case, layout):
    """Every algorithm's result with the ReLU applied (fused into its own passes where
    its row says so, else by the dispatch) is ``max(torch's convolution, 0)``."""
    x, w = (case.x, case.w) if layout == "NCHW" else to_nhwc(case)
    if declines(algorithm, x, w, layout, **case.kwargs):
        return
    y = relu_conv(case, algorithm, layout)
    options = {k: case.kwargs[k] for k in ("stride", "dilation", "groups", "padding_mode")}
    ref = relu_of(torch_conv(case.x, case.w, case.bias, pads=case.pads, **options))
    if y.dtype.kind == "i":
        np.testing.assert_array_equal(y, ref.astype(np.int64))
        return
    assert y.dtype == np.result_type(*(a for a in (case.x, case.w, case.bias) if a is not None))
    scale = max(float(np.abs(ref).max(initial=0.0)), 1.0)
    bound = RTOL[y.dtype] * tolerance_dtype(algorithm) * scale
    np.testing.assert_allclose(y, ref, rtol=0, atol=bound)


@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    ("algorithm", "x_shape", "w_shape", "stride"),
    [
        ("im2col", (1, 4, 24, 24), (32, 4, 1, 1), 1),  # the input is the patch matrix
        ("im2col", (3, 4, 24, 24), (32, 4, 1, 1), 1),  # its samples shared or in turn
        ("im2col", (2, 6, 9, 9), (8, 6, 3, 3), 2),  # chunks of patches
        ("im2col_jit", (1, 3, 30, 30), (16, 3, 7, 7), 2),  # the stem's row of ones, unfolded
        ("im2col_jit", (2, 8, 9, 9), (8, 8, 3, 3), 1),
        ("winograd_jit", (1, 8, 60, 60), (8, 8, 3, 3), 1),  # wide: image rows
        ("winograd_jit", (2, 8, 12, 12), (8, 8, 3, 3), 1),  # narrow: channels-last tiles
        ("winograd_jit", (1, 64, 10, 10), (64, 64, 3, 3), 1),  # channels shared out
    ],
)
def test_relu_fused_where_the_algorithm_adds_the_bias(
    algorithm, x_shape, w_shape, stride, layout, nan, rng
):
    """The fused ReLU on each path that applies it (negative outputs are half of them)
    against torch; a NaN in the input stays NaN where it lands (Winograd's result is
    then computed again by a direct algorithm, and its ReLU applied there).  With two
    threads, so that chunks are shared where they would be."""
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    if nan:
        x[0, 0, 1, 2] = np.nan
    pad = w_shape[-1] // 2
    kwargs = {"stride": stride, "padding": pad, "dilation": 1, "groups": 1,
              "padding_mode": "zeros"}  # fmt: skip
    case = Case(x, w, rng.standard_normal(w_shape[0]), kwargs, [(pad, pad)] * 2)
    with using_threads(2):
        run = partial(relu_conv, case, algorithm, layout)
        if refuses_without_numba(algorithm, run):
            return
        y = run()
    ref = relu_of(torch_conv(x, w, case.bias, stride=stride, pads=case.pads))
    assert np.isnan(ref).any() == nan and (ref == 0).mean() > 0.2
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    finite = ~np.isnan(ref)
    bound = 1e-9 * np.abs(ref[finite]).max()
    np.testing.assert_allclose(y[finite], ref[finite], rtol=0, atol=bound)


@pytest.mark.parametrize(
    "algorithm", [a for a in ALGORITHMS if a == "auto" or REGISTRY[a].exact_integers]
)
@given(case=cases(dtypes=(np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_), nds=(1, 2)))
def test_integers_are_exact(algorithm, case):
    check(case, algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_empty_batch(algorithm):
    x = np.zeros((0, 4, 5, 5), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    run = partial(npconv.conv, x, w, padding=1, groups=2, algorithm=algorithm)
    if refuses_without_numba(algorithm, run):
        return
    y = run()
    assert y.shape == (0, 6, 5, 5) and y.dtype == np.float32


def empty_sum(x_shape, w_shape, bias, dtype, transposed=False):
    """What a convolution with a zero size gives: its shape from PyTorch on the same problem
    with every zero size made 1, then those made 0 again; zeros plus the bias (empty sums).

    PyTorch itself refuses O = 0 and returns a wrong shape for C = 0."""
    ones = torch.ones([max(n, 1) for n in x_shape]), torch.ones([max(n, 1) for n in w_shape])
    fn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    shape = list(fn(*ones, padding=1, stride=2).shape)
    shape[:2] = x_shape[0], w_shape[1] if transposed else w_shape[0]
    y = np.zeros(shape, dtype)
    if bias is not None and y.size:
        y += bias.reshape(-1, 1, 1)
    return y


ZERO_SIZES = {"N=0": (0, 4, 3), "C=0": (2, 0, 3), "O=0": (2, 4, 0)}  # N, C, O


@pytest.mark.parametrize("algorithm", ["auto", *REGISTRY])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
@pytest.mark.parametrize("sizes", ZERO_SIZES.values(), ids=ZERO_SIZES)
def test_zero_sizes_give_empty_sums(algorithm, dtype, sizes):
    """N, C or O = 0: forward, transposed and gradients are zeros (plus the bias) or empty."""
    n, c, o = sizes
    x, w, bias = np.ones((n, c, 6, 6), dtype), np.ones((o, c, 3, 3), dtype), np.arange(o)
    kwargs = dict(padding=1, stride=2, algorithm=algorithm)
    try:
        y = npconv.conv(x, w, bias.astype(dtype), **kwargs)
    except ValueError as err:  # a forced algorithm that never runs such problems
        assert "cannot run this convolution" in str(err)
    else:
        np.testing.assert_array_equal(y, empty_sum(x.shape, w.shape, bias, dtype))
        assert y.dtype == dtype
        gy = np.ones(y.shape, dtype)
        grads = npconv.grad.conv_backward(gy, x, w, padding=1, stride=2, algorithm=algorithm)
        np.testing.assert_array_equal(grads.input, np.zeros_like(x))
        np.testing.assert_array_equal(grads.weight, np.zeros_like(w))
        np.testing.assert_array_equal(grads.bias, np.full(o, n * 3 * 3))  # 3 x 3 outputs
    gy, w_t = np.ones((n, c, 3, 3), dtype), np.ones((c, o, 3, 3), dtype)
    try:
        x_bar = npconv.conv_transpose(gy, w_t, bias.astype(dtype), **kwargs)
    except ValueError as err:
        assert "cannot run this convolution" in str(err)
    else:
        np.testing.assert_array_equal(x_bar, empty_sum(gy.shape, w_t.shape, bias, dtype, True))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unbatched_input(algorithm, rng):
    x = rng.standard_normal((3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    if declines(algorithm, x[None], w, stride=2, padding=1):  # winograd_jit: stride 1 only
        with pytest.raises(ValueError, match="cannot run this convolution"):
            npconv.conv(x, w, stride=2, padding=1, algorithm=algorithm)
        return
    y = npconv.conv(x, w, stride=2, padding=1, algorithm=algorithm)
    assert_close(y, torch_conv(x[None], w, stride=2, pads=[(1, 1), (1, 1)])[0])


def test_mixed_dtypes_follow_result_type(rng):
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    w = rng.integers(-3, 3, (3, 2, 2)).astype(np.int8)
    y = npconv.conv(x, w)
    assert y.dtype == np.float32
    assert_close(y, torch_conv(x, w).astype(np.float32))
    assert npconv.conv(x.astype(np.float16), w.astype(np.float64)).dtype == np.float64


def test_large_integers_beyond_float64_are_exact():
    # 3 * (2**51) needs more than float64's 53-bit mantissa once summed with small terms
    x = np.array([[[2**51 + 1, 2**51 + 3, 5]]], dtype=np.int64)
    w = np.array([[[3, 1]]], dtype=np.int64)
    y = npconv.conv(x, w)
    expected = [3 * (2**51 + 1) + (2**51 + 3), 3 * (2**51 + 3) + 5]  # Python ints
    assert y.tolist() == [[expected]]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_wrappers_match_conv(layout, rng):
    for nd, fn in enumerate((npconv.conv1d, npconv.conv2d, npconv.conv3d), start=1):
        x = rng.standard_normal((2, 3, *[5] * nd))
        w = rng.standard_normal((4, 3, *[2] * nd))
        if layout == "NHWC":
            x, w = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))
        assert_close(
            fn(x, w, layout=layout, padding="same"),
            npconv.conv(x, w, layout=layout, padding="same"),
        )


@pytest.mark.parametrize("algorithm", ["auto", "naive", "shifted", "im2col", "einsum", "depthwise"])
def test_integers_beyond_int64_are_exact_python_ints(algorithm):
    rng = np.random.default_rng(5)
    x = rng.integers(-(2**62), 2**62, (2, 3, 6), dtype=np.int64)
    w = rng.integers(-(2**20), 2**20, (3, 1, 3), dtype=np.int64)
    y = npconv.conv(x, w, padding=1, groups=3, algorithm=algorithm)
    assert y.dtype == object
    xs, ws = x.tolist(), w.tolist()  # Python ints: the referee
    for n, c, i in np.ndindex(*y.shape):
        taps = [(i + k - 1, ws[c][0][k]) for k in range(3) if 0 <= i + k - 1 < 6]
        assert y[n, c, i] == sum(xs[n][c][j] * wk for j, wk in taps)


def test_beyond_int64_the_matrix_algorithm_declines_and_quant_offers_an_error():
    x = np.full((1, 1, 4), 2**60, np.int64)
    w = np.full((1, 1, 2), 3, np.int64)  # each sum is 6 * 2**60 > 2**62
    assert npconv.conv(x, w).tolist() == [[[6 * 2**60] * 3]]
    with pytest.raises(ValueError, match=r"'matrix' cannot run .* Python ints"):
        npconv.conv(x, w, algorithm="matrix")
    with pytest.raises(ValueError, match="overflow"):
        npconv.quant.conv(x, w, accumulator_bits=62, overflow="raise")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [1, 2])
def test_patches_beyond_the_workspace_are_built_in_row_chunks(layout, groups, rng):
    # one sample's patch matrix (96 x 96 x 9 x 128 float64, 85 MiB) exceeds the 32 MiB
    # workspace, so im2col builds it a few output rows at a time
    x = rng.standard_normal((2, 128, 96, 96))
    w = rng.standard_normal((24, 128 // groups, 3, 3))
    bias = rng.standard_normal(24)
    case = Case(x, w, bias, {"stride": 1, "padding": 1, "dilation": 1, "groups": groups,
                             "padding_mode": "zeros"}, ((1, 1), (1, 1)))  # fmt: skip
    check(case, "im2col", layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("budget", [1, 3000])
def test_shifted_in_chunks_of_rows(layout, budget, rng, monkeypatch):
    """shifted's copies and products one output row (or a few) of one sample at a time,
    strided, dilated, grouped and padded."""
    monkeypatch.setattr(shifted, "chunks", partial(_windows.chunks, budget=budget))
    x = rng.standard_normal((3, 6, 17, 15))
    w = rng.standard_normal((4, 3, 3, 2))
    bias = rng.standard_normal(4)
    case = Case(x, w, bias, {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2),
                             "groups": 2, "padding_mode": "zeros"}, ((1, 0), (2, 1)))  # fmt: skip
    check(case, "shifted", layout)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(("c", "o", "size"), [(4, 32, 24), (32, 64, 2)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_pointwise_bias_in_the_gemm_or_after_it(layout, c, o, size, stride, batch, rng):
    # a 1x1 layer widening the channels on a large image adds the bias through a row of
    # ones in the GEMM (one sample: its input copied whole; several: chunk by chunk); on
    # a small one, after it.  Stride 2 with padding 1 keeps a size of 2 (the output grid
    # is the input's, yet the input is not the patch matrix)
    pad = stride - 1
    case = Case(rng.standard_normal((batch, c, size, size)), rng.standard_normal((o, c, 1, 1)),
                rng.standard_normal(o), {"stride": stride, "padding": pad, "dilation": 1,
                                         "groups": 1, "padding_mode": "zeros"},
                [(pad, pad)] * 2)  # fmt: skip
    check(case, "im2col", layout)


@pytest.mark.parametrize("out", [(7,), (5, 6), (3, 4, 5)], ids=["1-d", "2-d", "3-d"])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("part", ["whole", "rows", "outputs"])
@pytest.mark.parametrize(
    ("dtype", "relu", "bias"),
    [(np.float32, False, True), (np.float64, False, True), (np.complex64, False, True),
     (np.float32, True, True), (np.float64, True, False)],
)  # fmt: skip
def test_add_bias_to_a_result_or_a_block_of_its_rows(out, groups, part, dtype, relu, bias, rng):
    """im2col's bias and ReLU applied in place (compiled where numba runs and the view
    allows): the same values, bit for bit, as NumPy's broadcast sum and ``maximum``
    (NaN stays NaN), and nothing outside the block touched."""
    y = rng.standard_normal((2, groups, 6, *out)).astype(dtype)
    y.flat[::7] = np.nan
    b = rng.standard_normal((groups, 6, *(1,) * len(out))).astype(dtype)
    index = {"whole": (), "rows": (slice(None), slice(None), slice(None), slice(1, 3)),
             "outputs": (slice(None), slice(None), slice(2, 5))}[part]  # fmt: skip
    o = slice(2, 5) if part == "outputs" else slice(None)
    expected = y.copy()
    expected[index] = y[index] + b[:, o] if bias else y[index]
    if relu:
        expected[index] = np.maximum(expected[index], 0)
    im2col.add_bias(y[index], b[:, o] if bias else None, relu)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("wide_points", [0, 10**9], ids=["per-sample", "side-by-side"])
@pytest.mark.parametrize(("groups", "stride", "size"), [(1, 1, 7), (2, 2, 9), (4, 1, 5)])
def test_channels_first_patches_per_sample_or_side_by_side(
    wide_points, groups, stride, size, rng, monkeypatch
):
    # samples of few output positions share one GEMM per group; both ways match torch
    monkeypatch.setattr(im2col, "WIDE_POINTS", wide_points)
    x, w = rng.standard_normal((3, 8, size, size)), rng.standard_normal((12, 8 // groups, 3, 3))
    options = {"stride": stride, "padding": 1, "dilation": 1, "groups": groups}
    case = Case(x, w, rng.standard_normal(12), {**options, "padding_mode": "zeros"}, [(1, 1)] * 2)
    check(case, "im2col", "NCHW")


@pytest.mark.parametrize(("pays", "batch", "threads", "size", "shared"),
                         [(True, 1, 2, 9, True), (False, 1, 2, 64, False),
                          (False, 2, 2, 64, True), (False, 2, 2, 9, False),
                          (True, 2, 2, 9, True), (False, 3, 4, 64, False),
                          (True, 4, 1, 64, False)])  # fmt: skip
def test_im2col_shares_its_chunks_where_the_machine_or_the_batch_favours_it(
    pays, batch, threads, size, shared, monkeypatch
):
    """Shared where the machine favours it, or where the threads get whole samples of a
    layer of at least SHARED_MACS multiply-adds (64x64 images of 64 channels: 151M a
    sample; 9x9 of 8 channels: 47K)."""
    monkeypatch.setattr(im2col, "sharing_pays", lambda: pays)
    channels = 64 if size == 64 else 8
    spec = npconv.ConvSpec.build(
        (batch, channels, size, size), (channels, channels, 3, 3), padding=1
    )
    assert (spec.macs >= im2col.SHARED_MACS) == (size == 64)
    with using_threads(threads):
        assert im2col._shared(spec) == shared


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "in-turn"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(("batch", "groups"), [(1, 1), (2, 1), (3, 2), (6, 1), (4, 4)])
def test_pointwise_samples_shared_among_threads_or_one_gemm_each(
    with_bias, sharing, threads, batch, groups, rng, monkeypatch
):
    """A channels-first 1x1 layer whose input is the patch matrix (narrowing the channels:
    a bias is added after the GEMMs): where the chunks would be shared and the threads
    get as many samples each, one GEMM call per thread's samples, BLAS on one thread;
    otherwise one call for every sample; a bias, if any, added after each.  Either way,
    with groups, PyTorch's result."""
    from threadpoolctl import threadpool_info

    calls = []
    products = np.matmul

    def spy(*args, **kwargs):
        blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
        calls.append(blas)
        return products(*args, **kwargs)

    monkeypatch.setattr(im2col, "_shared", lambda spec: sharing)
    monkeypatch.setattr(im2col.np, "matmul", spy)
    x = rng.standard_normal((batch, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((4, 8 // groups, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32) if with_bias else None
    with using_threads(threads):
        y = npconv.conv2d(x, w, bias, groups=groups, algorithm="im2col")
    shared = sharing and threads > 1 and batch % threads == 0
    assert calls == [{1 if shared else threads}] * (threads if shared else 1)
    expected = torch_conv(x, w, bias, groups=groups)
    assert np.abs(y - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "in-turn"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("batch", "groups", "size", "out"),
    [(1, 1, 3, 64), (2, 2, 2, 48), (1, 4, 5, 8), (5, 1, 6, 4), (1, 1, 9, 6)],
)
def test_im2col_chunks_shared_among_threads_or_in_turn(
    layout, sharing, threads, batch, groups, size, out, rng, monkeypatch
):
    """Shared among 1-3 threads, by shares of the outputs of each group (channels-first,
    weights outweighing the patches: the first two) or of the positions, or in turn on
    the calling thread; with a bias, strided."""
    monkeypatch.setattr(im2col, "_shared", lambda spec: sharing)
    x = rng.standard_normal((batch, 8, size, size))
    w = rng.standard_normal((out, 8 // groups, 3, 3))
    options = {"stride": 2 if size > 5 else 1, "padding": 1, "dilation": 1, "groups": groups}
    case = Case(x, w, rng.standard_normal(out), {**options, "padding_mode": "zeros"}, [(1, 1)] * 2)
    with using_threads(threads):
        check(case, "im2col", layout)
