"""conv_matrix: the convolution as one matrix, for every option and layout."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given
from hypothesis import strategies as st

import npconv

from conftest import assert_close, torch_conv
from strategies import cases


def splatted_matrix(in_hw, filt, padding, stride):
    """Single-channel 2-d matrix built by placing the filter at each output position."""
    (h, w), (kh, kw) = in_hw, filt.shape
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    m = np.zeros((h * w, out_h * out_w))
    for i in range(out_h):
        for j in range(out_w):
            column = np.zeros((h, w))
            for fi in range(kh):
                for fj in range(kw):
                    r, c = i * stride + fi - padding, j * stride + fj - padding
                    if 0 <= r < h and 0 <= c < w:
                        column[r, c] = filt[fi, fj]
            m[:, i * out_w + j] = column.ravel()
    return m


@pytest.mark.parametrize(("padding", "stride"), [(0, 1), (1, 1), (1, 2), (2, 3)])
def test_single_channel_matrix_is_the_splatted_filter(padding, stride, rng):
    filt = rng.integers(0, 4, (3, 3)).astype(np.uint8)  # 2-bit weights, as in FHE
    m = npconv.conv_matrix(
        (1, 1, 7, 6), filt[None, None], padding=padding, stride=stride, sparse=False
    )
    assert m.dtype == np.uint8
    np.testing.assert_array_equal(m, splatted_matrix((7, 6), filt, padding, stride))


@given(case=cases(modes=("zeros",)), layout=st.sampled_from(["NCHW", "NHWC"]), sparse=st.booleans())
def test_product_with_matrix_is_the_convolution(case, layout, sparse):
    x, w = case.x, case.w
    if layout == "NHWC":
        x, w = np.moveaxis(x, 1, -1), np.moveaxis(w, (0, 1), (-1, -2))
    kw = {k: v for k, v in case.kwargs.items() if k != "padding_mode"}
    m = npconv.conv_matrix(x.shape[1:], w, layout=layout, sparse=sparse, **kw)
    assert scipy.sparse.issparse(m) == sparse
    ref = torch_conv(
        case.x,
        case.w,
        stride=kw["stride"],
        pads=case.pads,
        dilation=kw["dilation"],
        groups=kw["groups"],
    )
    if layout == "NHWC":
        ref = np.moveaxis(ref, 1, -1)
    n = x.shape[0]
    assert m.shape == (np.prod(x.shape[1:]), np.prod(ref.shape[1:]))
    assert_close(np.asarray(x.reshape(n, m.shape[0]) @ m).reshape(ref.shape), ref)


def test_matrix_with_batch_shape_or_without_is_the_same(rng):
    w = rng.standard_normal((4, 2, 3))
    a = npconv.conv_matrix((5, 2, 9), w, stride=2, sparse=False)
    b = npconv.conv_matrix((2, 9), w, stride=2, sparse=False)
    np.testing.assert_array_equal(a, b)
    assert np.count_nonzero(a) == 4 * 2 * 3 * 4  # no padding: every tap is an entry
