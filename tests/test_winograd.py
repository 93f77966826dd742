"""Winograd F(m, r): the transform matrices, random configurations, the float32 bound."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv.algorithms import REGISTRY, winograd

from conftest import refuses_without_numba, torch_conv


@pytest.mark.parametrize(("m", "r"), [(1, 1), (2, 3), (4, 3), (4, 2), (2, 2)])
def test_transforms_compute_correlation(m, r, rng):
    at, g, bt = winograd.transforms(m, r)
    d, taps = rng.standard_normal(m + r - 1), rng.standard_normal(r)
    expected = [d[i : i + r] @ taps for i in range(m)]  # y[i] = sum_k d[i + k] g[k]
    np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


def test_input_transform_of_f43_has_small_integers():
    _, _, bt = winograd.transforms(4, 3)
    np.testing.assert_array_equal(bt, np.round(bt))
    assert np.abs(bt).max() <= 5


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2"])
@given(
    nd=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    groups=st.integers(1, 2),
    size=st.integers(7, 11),
    seed=st.integers(0, 2**16),
)
def test_random_configurations_match_torch(
    algorithm, nd, kernel, stride, dilation, groups, size, seed
):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2 * groups, *[size] * nd))
    w = rng.standard_normal((3 * groups, 2, *[kernel] * nd))
    kwargs = dict(stride=stride, dilation=dilation, groups=groups, padding=1)
    y = npconv.conv(x, w, algorithm=algorithm, **kwargs)
    ref = torch_conv(x, w, stride=stride, dilation=dilation, groups=groups, pads=[(1, 1)] * nd)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize(("algorithm", "bound"), [("winograd", 1e-4), ("winograd_f2", 2e-5)])
@pytest.mark.parametrize("nd", [1, 2])
def test_float32_error_bound_on_unit_scale_data(algorithm, bound, nd, rng):
    """float32 error relative to max |y|, against a float64 reference: F(4,3) <= 1e-4."""
    size = 64 if nd == 1 else 30
    x = rng.standard_normal((2, 64, *[size] * nd))
    w = rng.standard_normal((64, 64, *[3] * nd))
    y = npconv.conv(x.astype(np.float32), w.astype(np.float32), padding=1, algorithm=algorithm)
    ref = torch_conv(x, w, pads=[(1, 1)] * nd)
    error = np.abs(y - ref).max() / np.abs(ref).max()
    assert error <= bound
    assert bound <= REGISTRY[algorithm].error_scale * 1e-5  # what the registry promises


def test_stride_and_dilation_on_one_axis(rng):
    x, w = rng.standard_normal((1, 2, 11, 10)), rng.standard_normal((3, 2, 3, 2))
    y = npconv.conv(x, w, stride=(2, 3), dilation=2, algorithm="winograd")
    np.testing.assert_allclose(y, torch_conv(x, w, stride=(2, 3), dilation=2), atol=1e-12)


def test_refuses_large_kernels():
    x, w = np.zeros((1, 1, 9)), np.zeros((1, 1, 5))
    with pytest.raises(ValueError, match=r"at most 3 taps per axis .* kernel 5 at stride 1"):
        npconv.conv(x, w, algorithm="winograd")


def test_refuses_integers():
    x, w = np.ones((1, 1, 9), np.int32), np.ones((1, 1, 3), np.int32)
    with pytest.raises(ValueError, match="not exact for integer inputs"):
        npconv.conv(x, w, algorithm="winograd")


#: The registered algorithms that compute through transforms.
TRANSFORMS = [name for name, a in REGISTRY.items() if a.transforms]


def non_finite_masks(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.isnan(y), np.isposinf(y), np.isneginf(y)


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("algorithm", ["auto", *TRANSFORMS])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_stay_where_a_direct_convolution_puts_them(algorithm, value, rng):
    """One NaN or Inf reaches the 3x3 window around it in every output channel, no more."""
    x = rng.random((1, 64, 32, 32)).astype(np.float32)
    w = rng.random((64, 64, 3, 3)).astype(np.float32)
    x[0, 0, 5, 7] = value
    run = partial(npconv.conv2d, x, w, padding=1, algorithm=algorithm)
    if refuses_without_numba(algorithm, run):
        return
    y = run()
    ref = torch_conv(x, w, pads=[(1, 1)] * 2)
    for mask, expected in zip(non_finite_masks(y), non_finite_masks(ref)):
        np.testing.assert_array_equal(mask, expected)
    assert np.isnan(ref).sum() + np.isinf(ref).sum() == 9 * 64
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-4)


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("algorithm", ["auto", *TRANSFORMS])
def test_non_finite_weights_stay_where_a_direct_convolution_puts_them(algorithm, rng):
    x, w = rng.standard_normal((2, 8, 12, 12)), rng.standard_normal((4, 8, 3, 3))
    w[1, 2, 0, 0], w[3, 0, 1, 1] = np.inf, np.nan
    run = partial(npconv.conv2d, x, w, padding=1, algorithm=algorithm)
    if refuses_without_numba(algorithm, run):
        return
    y = run()
    ref = torch_conv(x, w, pads=[(1, 1)] * 2)
    for mask, expected in zip(non_finite_masks(y), non_finite_masks(ref)):
        np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("algorithm", TRANSFORMS)
def test_an_input_only_its_padding_fills_gives_the_bias(algorithm):
    """An empty spatial axis that the padding widens: every window sums zeros."""
    x, w, bias = np.zeros((1, 2, 0, 5)), np.ones((3, 2, 3, 3)), np.arange(3.0)
    run = partial(npconv.conv2d, x, w, bias, padding=2, algorithm=algorithm)
    if refuses_without_numba(algorithm, run):
        return
    expected = npconv.conv2d(x, w, bias, padding=2, algorithm="naive")
    assert expected.shape == (1, 3, 2, 7)
    np.testing.assert_array_equal(run(), expected)
    np.testing.assert_array_equal(expected, np.broadcast_to(bias.reshape(3, 1, 1), (1, 3, 2, 7)))


@pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")
@pytest.mark.parametrize("algorithm", ["auto", *TRANSFORMS])
def test_large_finite_float32_does_not_overflow_in_the_transforms(algorithm):
    x, w = np.full((1, 64, 32, 32), 1e37, np.float32), np.full((64, 64, 3, 3), 1e-4, np.float32)
    run = partial(npconv.conv2d, x, w, padding=1, algorithm=algorithm)
    if refuses_without_numba(algorithm, run):
        return
    y = run()
    ref = torch_conv(x, w, pads=[(1, 1)] * 2)  # largest 5.76e35, within float32
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, ref, rtol=1e-5)
