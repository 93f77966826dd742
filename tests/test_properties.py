"""Algebraic properties of convolution, checked on every algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv.algorithms import REGISTRY

from conftest import FORWARD, assert_close, declines, torch_conv
from strategies import cases

ALGORITHMS = FORWARD


def accepting(x_shape, w_shape, **kwargs) -> list[str]:
    """The registered algorithms that run this problem (float64)."""
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    return [a for a in ALGORITHMS if not declines(a, x, w, **kwargs)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(case=cases(modes=("zeros", "reflect")), a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_linear_in_x_and_in_w(algorithm, case, a, b):
    if declines(algorithm, case.x, case.w, **case.kwargs):
        return
    rng = np.random.default_rng(1)
    x2 = rng.standard_normal(case.x.shape)
    w2 = rng.standard_normal(case.w.shape)

    def f(x, w):
        return npconv.conv(x, w, algorithm=algorithm, **case.kwargs)

    assert_close(f(a * case.x + b * x2, case.w), a * f(case.x, case.w) + b * f(x2, case.w))
    assert_close(f(case.x, a * case.w + b * w2), a * f(case.x, case.w) + b * f(case.x, w2))


@pytest.mark.parametrize("algorithm", accepting((3, 7, 5, 4), (1, 1, 4, 6), layout="NHWC"))
def test_1x1_conv_is_a_matmul_over_channels(algorithm, rng):
    x = rng.standard_normal((3, 7, 5, 4))  # NHWC
    w = rng.standard_normal((1, 1, 4, 6))  # HWIO
    assert_close(npconv.conv(x, w, layout="NHWC", algorithm=algorithm), x @ w[0, 0])


@pytest.mark.parametrize("algorithm", accepting((1, 2, 12, 11), (3, 2, 3, 2)))
def test_shifted_input_gives_shifted_output(algorithm, rng):
    x = rng.standard_normal((1, 2, 12, 11))
    w = rng.standard_normal((3, 2, 3, 2))
    y = npconv.conv(x, w, padding="valid", algorithm=algorithm)
    y_shifted = npconv.conv(x[..., 2:, 1:], w, algorithm=algorithm)
    assert_close(y_shifted, y[..., 2:, 1:])
    # circular padding makes the convolution exactly equivariant to circular shifts
    yc = npconv.conv(x, w, padding=((1, 1), (0, 1)), padding_mode="circular", algorithm=algorithm)
    yc_rolled = npconv.conv(
        np.roll(x, (3, -2), axis=(2, 3)),
        w,
        padding=((1, 1), (0, 1)),
        padding_mode="circular",
        algorithm=algorithm,
    )
    assert_close(yc_rolled, np.roll(yc, (3, -2), axis=(2, 3)))


@pytest.mark.parametrize("algorithm", accepting((2, 6, 7, 7), (9, 2, 3, 3), groups=3, padding=1))
def test_groups_are_independent_convolutions(algorithm, rng):
    x = rng.standard_normal((2, 6, 7, 7))
    w = rng.standard_normal((9, 2, 3, 3))
    y = npconv.conv(x, w, groups=3, padding=1, algorithm=algorithm)
    parts = [
        npconv.conv(x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3], padding=1) for g in range(3)
    ]
    assert_close(y, np.concatenate(parts, axis=1))


@given(case=cases(max_batch=1), layout=st.sampled_from(["NCHW", "NHWC"]))
def test_output_shape_matches_torch_and_conv(case, layout):
    x, w = case.x, case.w
    if layout == "NHWC":
        x, w = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))
    kw = {k: v for k, v in case.kwargs.items() if k != "padding_mode"}
    shape = npconv.conv_output_shape(x.shape, w.shape, layout=layout, **kw)
    assert shape == npconv.conv(x, w, layout=layout, **case.kwargs).shape
    flat = [p for pair in reversed(case.pads) for p in pair]
    xt = torch.nn.functional.pad(torch.from_numpy(case.x), flat)
    fn = [torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d]
    ref = fn[case.nd - 1](
        xt,
        torch.from_numpy(case.w),
        stride=case.kwargs["stride"],
        dilation=case.kwargs["dilation"],
        groups=case.kwargs["groups"],
    )
    expected = tuple(ref.shape)
    if layout == "NHWC":
        expected = (expected[0], *expected[2:], expected[1])
    assert shape == expected


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [5, 6, 7, 8])
def test_same_padding_gives_ceil_of_input_over_stride(size, stride):
    for padding in ("same", "same_upper", "same_lower"):
        shape = npconv.conv_output_shape((1, 1, size), (1, 1, 4), stride=stride, padding=padding)
        assert shape == (1, 1, -(-size // stride))


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_same_matches_torch_same_at_stride_1(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, 4, 3))  # even kernel: the odd pad goes at the end
    for mode in ("zeros", "reflect", "replicate", "circular"):
        ref = torch.nn.Conv2d(
            3,
            4,
            (4, 3),
            padding="same",
            padding_mode=mode,
            bias=False,
            dilation=(1, 2),
            dtype=torch.float64,
        )
        ref.weight.data = torch.from_numpy(w)
        with torch.no_grad():
            expected = ref(torch.from_numpy(x)).numpy()
        assert_close(
            npconv.conv(x, w, padding="same", padding_mode=mode, dilation=(1, 2)), expected
        )


SPECIAL = ("nan", "inf", "-inf", "huge", "-huge")


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@given(
    case=cases(dtypes=(np.float32, np.float64)),
    specials=st.lists(
        st.tuples(st.sampled_from(SPECIAL), st.booleans(), st.integers(0, 2**16)), max_size=4
    ),
)
def test_non_finite_and_huge_values_land_where_a_direct_convolution_puts_them(
    algorithm, case, specials
):
    """NaN, +-Inf (in x or w) and huge finite values (in x: no sum overflows) give NaN and
    +-Inf exactly where PyTorch's direct convolution does, finite values elsewhere."""
    x, w = case.x.copy(), case.w.copy()
    if declines(algorithm, x, w, **case.kwargs) or x.size == 0:
        return
    huge = float(np.finfo(x.dtype).max) / 1e4  # |w| < 10 and < 100 taps: sums stay finite
    values = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": huge, "-huge": -huge}
    for kind, in_x, where in specials:
        target = x if in_x or kind.endswith("huge") else w  # huge in w would overflow
        target.flat[where % target.size] = values[kind]
    y = npconv.conv(x, w, case.bias, algorithm=algorithm, **case.kwargs)
    options = {k: case.kwargs[k] for k in ("stride", "dilation", "groups", "padding_mode")}
    ref = torch_conv(x, w, case.bias, pads=case.pads, **options)
    for mask in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(mask(y), mask(ref))
    finite = np.isfinite(ref)
    scale = REGISTRY[algorithm].error_scale * 1e3 * np.finfo(x.dtype).eps
    np.testing.assert_allclose(
        y[finite], ref[finite], rtol=0, atol=scale * np.abs(ref[finite]).max(initial=1.0)
    )
