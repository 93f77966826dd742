"""Every bad input gets a ValueError or TypeError that names the argument and the numbers."""

from __future__ import annotations

import numpy as np
import pytest

import npconv
from npconv.algorithms import naive

X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 4, 3, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(w=np.zeros((6, 3, 3, 3))),
            ValueError,
            r"x has 4 channels but w expects 3 = 3 \(w.shape\[1\]\) x groups\(1\)",
        ),
        (dict(groups=3), ValueError, r"groups=3 must divide the input channels, but x has 4"),
        (
            dict(w=np.zeros((5, 2, 3, 3)), groups=2),
            ValueError,
            r"groups=2 must divide the output channels, but w has 5",
        ),
        (dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
        (dict(groups=2.0), TypeError, r"groups must be an int"),
        (
            dict(w=np.zeros((6, 4, 9, 3))),
            ValueError,
            r"kernel is larger than the padded input in spatial dim 0: dilated kernel extent 9 "
            r"> padded size 8",
        ),
        (dict(dilation=(4, 1)), ValueError, r"extent 9 > padded size 8"),
        (dict(x=np.zeros((8, 8))), ValueError, r"x must have 4 dims .* got x.ndim=2"),
        (
            dict(x=np.zeros((1, 2, 4, 8, 8))),
            ValueError,
            r"x must have 4 dims \(N, C, H, W\) for a 2-d convolution in layout 'NCHW', "
            r"got x.ndim=5",
        ),
        (dict(w=np.zeros((6, 4))), ValueError, r"w must have 3, 4 or 5 dims.*got w.ndim=2"),
        (dict(stride=0), ValueError, r"stride must be >= 1 in every dim, got 0"),
        (dict(stride=(1, -2)), ValueError, r"stride must be >= 1 in every dim, got \(1, -2\)"),
        (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or 2 ints .* got 3 values"),
        (dict(stride=1.5), TypeError, r"stride must be an int or a tuple of ints, got 1.5"),
        (dict(stride=2**63), ValueError, r"stride must be at most 2\*\*62 in every dim, got 92"),
        (dict(dilation=(1, 2**70)), ValueError, r"dilation must be at most 2\*\*62 in every"),
        (dict(padding=2**63), ValueError, r"padding must be at most 2\*\*62 in every dim"),
        (
            dict(x=[[[[1.0, 2.0], [3.0]]]]),
            ValueError,
            r"conv: x must be an array of one shape: setting an array element",
        ),
        (dict(dilation=0), ValueError, r"dilation must be >= 1 in every dim, got 0"),
        (dict(padding=-1), ValueError, r"padding must be >= 0 in every dim, got -1"),
        (
            dict(padding="full"),
            ValueError,
            r"padding string must be one of \('valid', 'same', 'same_upper', 'same_lower'\), "
            r"got 'full'",
        ),
        (
            dict(padding=((1, 1),)),
            ValueError,
            r"needs 2 \(before, after\) pairs, got \(\(1, 1\),\)",
        ),
        (dict(padding=((1, 1), (1, 2, 3))), ValueError, r"needs 2 \(before, after\) pairs"),
        (
            dict(padding_mode="mirror"),
            ValueError,
            r"padding_mode must be one of \('zeros', 'reflect', 'replicate', 'circular'\), "
            r"got 'mirror'",
        ),
        (
            dict(padding="same", stride=2, padding_mode="reflect"),
            ValueError,
            r"padding='same' with padding_mode='reflect' is ambiguous for stride=\(2, 2\)",
        ),
        (
            dict(padding="same_lower", padding_mode="circular"),
            ValueError,
            r"padding='same_lower' with padding_mode='circular' is ambiguous",
        ),
        (
            dict(padding=8, padding_mode="reflect"),
            ValueError,
            r"padding_mode='reflect' needs pads smaller than the input, but spatial dim 0 has "
            r"size 8 and pads \(8, 8\)",
        ),
        (
            dict(padding=9, padding_mode="circular"),
            ValueError,
            r"padding_mode='circular' needs pads no larger than the input"
            r".*size 8 and pads \(9, 9\)",
        ),
        (dict(layout="NWHC"), ValueError, r"layout must be one of \('NCHW', 'NHWC'\), got 'NWHC'"),
        (
            dict(algorithm="fastest"),
            ValueError,
            r"unknown algorithm 'fastest'; choose 'auto' or one of "
            r"\['blocked_jit', 'depthwise', 'depthwise_jit', 'direct_jit', 'einsum', ",
        ),
        (
            dict(bias=np.zeros(5)),
            ValueError,
            r"bias must have shape \(6,\), one value per output channel, got shape \(5,\)",
        ),
        (dict(x=np.array([["a"]])), TypeError, r"x must hold numbers .* got dtype <U1"),
        (dict(w=np.zeros((6, 4, 3, 3), dtype=object)), TypeError, r"w must hold numbers"),
        (
            dict(x=np.zeros((2, 4, 8, 8), np.uint64), w=np.zeros((6, 4, 3, 3), np.uint8)),
            TypeError,
            r"uint64 operands cannot",
        ),
        (  # np.result_type(uint64, int64) is float64: still integers, still refused
            dict(x=np.full((2, 4, 8, 8), 2**63 + 1, np.uint64), w=np.zeros((6, 4, 3, 3), int)),
            TypeError,
            r"conv: uint64 operands cannot be accumulated exactly in int64",
        ),
    ],
)
def test_conv_errors(kwargs, error, match):
    args = dict(x=X, w=W)
    args.update(kwargs)
    x, w = args.pop("x"), args.pop("w")
    with pytest.raises(error, match=match):
        npconv.conv(x, w, **args)


def test_errors_name_the_function():
    with pytest.raises(ValueError, match=r"^conv2d: w must have 4 dims"):
        npconv.conv2d(np.zeros((1, 1, 4)), np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match=r"^conv3d: x has 4 channels but w expects 3"):
        npconv.conv3d(np.zeros((1, 4, 3, 3, 3)), np.zeros((1, 3, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"^conv_output_shape: stride must be >= 1"):
        npconv.conv_output_shape((1, 1, 4), (1, 1, 3), stride=0)
    with pytest.raises(ValueError, match=r"^conv_matrix: groups=2 must divide"):
        npconv.conv_matrix((3, 4), np.zeros((2, 1, 3)), groups=2)


def test_output_shape_of_float_sizes():
    with pytest.raises(TypeError, match=r"conv_output_shape: the shape of x must hold ints, got"):
        npconv.conv_output_shape((1, 1, 5.5), (1, 1, 3))


def test_nhwc_channel_mismatch_names_the_weight_axis():
    with pytest.raises(ValueError, match=r"x has 4 channels but w expects 3 = 3 \(w.shape\[2\]\)"):
        npconv.conv(np.zeros((1, 8, 8, 4)), np.zeros((3, 3, 3, 6)), layout="NHWC")
    with pytest.raises(ValueError, match=r"x must have 4 dims \(N, H, W, C\)"):
        npconv.conv(np.zeros((1, 2, 8, 8, 4)), np.zeros((3, 3, 4, 6)), layout="NHWC")


def test_naive_refuses_large_problems():
    x = np.zeros((100, 32, 32, 32))
    w = np.zeros((32, 32, 3, 3))
    with pytest.raises(
        ValueError, match=rf"algorithm 'naive' cannot run .* limit of {naive.MAX_MACS:,}"
    ):
        npconv.conv(x, w, algorithm="naive")
