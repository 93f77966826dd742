"""Certified accumulator widths and the B-bit accumulator, against exact Python-int math.

The referee walks every output's taps with Python loops and its own padding rules, so it
shares nothing with npconv but the definition of convolution.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npconv
from npconv import quant

from conftest import FORWARD, refuses_without_numba

MODES = ("zeros", "reflect", "replicate", "circular")


def fits(lo: int, hi: int, bits: int) -> bool:
    """[lo, hi] fits a ``bits``-wide integer: unsigned when lo >= 0, else two's complement."""
    if lo >= 0:
        return hi < 2**bits
    return -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1)


def source(i: int, n: int, mode: str) -> int | None:
    """Input index read by padded index ``i`` (None: a zero from the padding)."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    return i % n


def output_taps(in_size, w, stride, pads, dilation, groups, mode):
    """{(o, *p): [(input index (c, *i), weight), ...]} in the order (c, then k in C order)."""
    out_channels, cg, *kernel = w.shape
    out = [
        (n + lo + hi - (k - 1) * d - 1) // s + 1
        for n, (lo, hi), k, d, s in zip(in_size, pads, kernel, dilation, stride)
    ]
    taps = {}
    for o in range(out_channels):
        g = o // (out_channels // groups)
        for p in itertools.product(*map(range, out)):
            seen = []
            for c in range(cg):
                for k in itertools.product(*map(range, kernel)):
                    idx = [
                        source(pi * s + ki * d - lo, n, mode)
                        for pi, ki, s, d, (lo, _), n in zip(p, k, stride, dilation, pads, in_size)
                    ]
                    if None not in idx:
                        seen.append(((g * cg + c, *idx), int(w[(o, c, *k)])))
            taps[(o, *p)] = seen
    return taps


def reference_range(taps, out_channels, a, b):
    """Per channel, the min and max over positions of the sum of each tap's extreme."""
    lo, hi = [None] * out_channels, [None] * out_channels
    for (o, *_), seen in taps.items():
        t_lo = sum(min(a * wt, b * wt) for _, wt in seen)
        t_hi = sum(max(a * wt, b * wt) for _, wt in seen)
        lo[o] = t_lo if lo[o] is None else min(lo[o], t_lo)
        hi[o] = t_hi if hi[o] is None else max(hi[o], t_hi)
    return lo, hi


def partial_sums(taps, x, bias):
    """{(n, o, *p): [bias, bias + first product, ...]} for the samples of ``x``."""
    sums = {}
    for n in range(x.shape[0]):
        for (o, *p), seen in taps.items():
            acc = int(bias[o])
            prefix = [acc]
            for idx, wt in seen:
                acc += int(x[(n, *idx)]) * wt
                prefix.append(acc)
            sums[(n, o, *p)] = prefix
    return sums


@st.composite
def layers(draw, modes=MODES):
    """A small random integer layer: (x, w, options for npconv, referee arguments)."""
    nd = draw(st.integers(1, 2))
    groups, cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    pads = [tuple(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2))) for _ in range(nd)]
    mode = draw(st.sampled_from(modes))
    in_size = [
        draw(st.integers(max((k - 1) * d + 1 - lo - hi, 3), max((k - 1) * d + 1, 3) + 2))
        for k, d, (lo, hi) in zip(kernel, dilation, pads)
    ]
    signed = draw(st.booleans())
    bits = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    w = rng.integers(-4, 5, size=(groups * og, cg, *kernel))
    w[rng.random(w.shape) < 0.2] = 0
    x_lo, x_hi = quant.integer_range(bits, signed)
    x = rng.integers(x_lo, x_hi + 1, size=(draw(st.integers(1, 2)), groups * cg, *in_size))
    options = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    taps = output_taps(in_size, w, stride, pads, dilation, groups, mode)
    return x, w, options, mode, (bits, signed), taps


# ------------------------------------------------------------------ max_filter_size


def test_max_filter_size_of_the_reference_note() -> None:
    assert quant.max_filter_size(2, 2, 7) == 14


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 24), st.booleans(), st.booleans())
def test_max_filter_size_is_the_largest_that_fits(xb, wb, ab, sx, sw) -> None:
    products = [
        x * w
        for x in range(*(r + d for r, d in zip(quant.integer_range(xb, sx), (0, 1))))
        for w in range(*(r + d for r, d in zip(quant.integer_range(wb, sw), (0, 1))))
    ]
    n = quant.max_filter_size(xb, wb, ab, signed_inputs=sx, signed_weights=sw)
    assert n == 0 or fits(n * min(products), n * max(products), ab)
    assert not fits((n + 1) * min(products), (n + 1) * max(products), ab)


@given(st.integers(-(2**40), 2**40), st.integers(0, 2**40))
def test_bits_needed_is_the_smallest_width_that_fits(lo, span) -> None:
    hi = lo + span
    bits = quant.bits_needed(lo, hi)
    assert fits(lo, hi, bits)
    assert bits == 1 or not fits(lo, hi, bits - 1)


# ------------------------------------------------------------------ accumulator ranges


@given(layers())
def test_accumulator_range_matches_the_exact_tap_sums(layer) -> None:
    x, w, options, mode, (bits, signed), taps = layer
    a, b = quant.integer_range(bits, signed)
    lo, hi = quant.accumulator_range(
        w,
        input_bits=bits,
        signed_inputs=signed,
        input_shape=x.shape,
        padding_mode=mode,
        **options,
    )
    assert (list(lo), list(hi)) == reference_range(taps, w.shape[0], a, b)
    per_channel = quant.accumulator_bits(
        w,
        input_range=(a, b),
        input_shape=x.shape[1:],
        padding_mode=mode,
        per_channel=True,
        **options,
    )
    assert per_channel.tolist() == [quant.bits_needed(*r) for r in zip(lo, hi)]


@given(layers())
def test_no_partial_sum_of_any_input_leaves_the_range(layer) -> None:
    x, w, options, mode, (bits, signed), taps = layer
    a, b = quant.integer_range(bits, signed)
    corners = np.random.default_rng(x.size).choice([a, 0, b], size=x.shape)
    lo, hi = quant.accumulator_range(
        w, input_bits=bits, signed_inputs=signed, input_shape=x.shape, padding_mode=mode, **options
    )
    for sample in (x, corners):
        for (_, o, *_), prefix in partial_sums(taps, sample, [0] * len(lo)).items():
            assert lo[o] <= min(prefix) and max(prefix) <= hi[o]


@given(layers(modes=("zeros",)))
def test_the_extreme_inputs_reach_the_range_and_need_every_bit(layer) -> None:
    x, w, options, _, (bits, signed), _ = layer
    lo, hi = quant.accumulator_range(
        w, input_bits=bits, signed_inputs=signed, input_shape=x.shape, **options
    )
    extremes = quant.extreme_inputs(w, x.shape, input_bits=bits, signed_inputs=signed, **options)
    assert extremes.shape == (2 * w.shape[0], *x.shape[1:])
    assert extremes.min() >= quant.integer_range(bits, signed)[0]
    assert extremes.max() <= quant.integer_range(bits, signed)[1]
    y = npconv.conv(extremes, w, **options)  # (2*O, O, *out)
    for o in range(w.shape[0]):
        assert (y[2 * o, o].max(), y[2 * o + 1, o].min()) == (hi[o], lo[o])
    width = quant.accumulator_bits(
        w, input_bits=bits, signed_inputs=signed, input_shape=x.shape, **options
    )
    signed_acc = min(lo) < 0
    quant.conv(extremes, w, accumulator_bits=width, accumulator_signed=signed_acc, **options)
    if width > 1 and max(hi) != min(lo):
        with pytest.raises(ValueError, match="overflows at sample"):
            quant.conv(
                extremes, w, accumulator_bits=width - 1, accumulator_signed=signed_acc, **options
            )


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.booleans(),
    st.booleans(),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
)
def test_worst_case_width_agrees_with_max_filter_size(xb, wb, sx, sw, c, kh, kw) -> None:
    w = np.zeros((2, c, kh, kw), dtype=np.int64)  # only the shape counts
    width = quant.accumulator_bits(
        w, input_bits=xb, signed_inputs=sx, weight_bits=wb, signed_weights=sw
    )
    size = dict(signed_inputs=sx, signed_weights=sw)
    assert quant.max_filter_size(xb, wb, width, **size) >= c * kh * kw
    assert width == 1 or quant.max_filter_size(xb, wb, width - 1, **size) < c * kh * kw


def test_without_input_shape_the_range_is_the_full_receptive_field() -> None:
    w = np.array([[[[1, -2], [3, 0]]], [[[-1, -1], [-1, -1]]]])  # (2, 1, 2, 2)
    lo, hi = quant.accumulator_range(w, input_range=(-2, 3))
    assert (list(lo), list(hi)) == ([-2 - 6 - 6, -3 * 4], [3 + 4 + 9, 2 * 4])
    nhwc = quant.accumulator_range(
        np.moveaxis(w, (0, 1), (-1, -2)), input_range=(-2, 3), layout="NHWC"
    )
    assert [list(r) for r in nhwc] == [list(lo), list(hi)]


# ------------------------------------------------------------------ B-bit accumulator


@given(layers(), st.integers(1, 8), st.booleans())
def test_simulated_accumulator_matches_the_exact_partial_sums(layer, width, signed_acc) -> None:
    x, w, options, mode, _, taps = layer
    bias = np.random.default_rng(width).integers(-3, 4, size=w.shape[0])
    a_lo, a_hi = quant.integer_range(width, signed_acc)
    sums = partial_sums(taps, x, bias)
    run = dict(accumulator_bits=width, accumulator_signed=signed_acc, padding_mode=mode, **options)

    wrapped = quant.conv(x, w, bias, overflow="wrap", **run)
    saturated = quant.conv(x, w, bias, overflow="saturate", **run)
    for (n, o, *p), prefix in sums.items():
        assert wrapped[(n, o, *p)] == (prefix[-1] - a_lo) % 2**width + a_lo
        acc = min(max(prefix[0], a_lo), a_hi)
        for before, after in itertools.pairwise(prefix):
            acc = min(max(acc + after - before, a_lo), a_hi)
        assert saturated[(n, o, *p)] == acc
    overflows = any(not a_lo <= s <= a_hi for prefix in sums.values() for s in prefix)
    if overflows:
        with pytest.raises(ValueError, match="overflows at sample"):
            quant.conv(x, w, bias, **run)
    else:
        exact = npconv.conv(x, w, bias, padding_mode=mode, **options)
        np.testing.assert_array_equal(quant.conv(x, w, bias, **run), exact)


def test_accumulator_in_nhwc_and_unbatched() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(3, 5, 6))
    w = rng.integers(-2, 3, size=(2, 3, 3, 3))
    expected = npconv.conv(x, w, padding=1)
    nhwc = quant.conv(
        np.moveaxis(x, 0, -1),
        np.moveaxis(w, (0, 1), (-1, -2)),
        accumulator_bits=12,
        padding=1,
        layout="NHWC",
    )
    np.testing.assert_array_equal(np.moveaxis(nhwc, -1, 0), expected)
    np.testing.assert_array_equal(quant.conv(x, w, accumulator_bits=12, padding=1), expected)


def test_overflow_error_names_the_output() -> None:
    x = np.zeros((1, 1, 3, 3), dtype=np.int64)
    x[0, 0, 2, 1] = 3
    w = np.full((2, 1, 2, 2), 3)
    w[0] = 0
    with pytest.raises(
        ValueError,
        match=r"quant.conv: the 4-bit accumulator \[-8, 7\] overflows at sample 0, output "
        r"channel 1, position \(1, 1\): adding tap c=0, k=\(1, 0\) makes the partial sum 9",
    ):
        quant.conv(x, w, accumulator_bits=4)
    with pytest.raises(ValueError, match=r"adding the bias makes the partial sum 9"):
        quant.conv(x, w, [0, 9], accumulator_bits=4)


@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_accumulator_beyond_int64_products(overflow) -> None:
    """Products past int64 (-2**63 * -1) saturate or wrap as in exact integer math."""
    x = np.array([[[-(2**63), 3, -(2**62)]]])
    w = np.array([[[-1, 2]]])
    lo, hi = quant.integer_range(62, True)
    expected = []
    for p in range(2):
        acc = 0
        for k in range(2):
            acc += int(x[0, 0, p + k]) * int(w[0, 0, k])  # Python ints: exact
            acc = min(max(acc, lo), hi) if overflow == "saturate" else (acc - lo) % 2**62 + lo
        expected.append(acc)
    y = quant.conv(x, w, accumulator_bits=62, overflow=overflow)
    assert y.dtype == np.int64
    assert y.tolist() == [[expected]]
    assert quant.conv(x[..., :1], w[..., :1], accumulator_bits=62, overflow="saturate") == hi


# ------------------------------------------------------------------ error messages


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: quant.max_filter_size(0, 2, 7),
            ValueError,
            "max_filter_size: bit widths must be >= 1, got 0",
        ),
        (
            lambda: quant.max_filter_size(2.0, 2, 7),
            TypeError,
            "max_filter_size: bit widths must be ints",
        ),
        (lambda: quant.bits_needed(3, 2), ValueError, "bits_needed: lo=3 must not exceed hi=2"),
        (
            lambda: quant.accumulator_range(np.ones((1, 1, 3))),
            ValueError,
            "exactly one of input_bits and input_range",
        ),
        (
            lambda: quant.accumulator_range(np.ones((1, 1, 3), dtype=int), input_range=(1, 3)),
            ValueError,
            r"input_range must contain 0 .* got \(1, 3\)",
        ),
        (
            lambda: quant.accumulator_range(np.ones((1, 1, 3)), input_bits=2),
            TypeError,
            "accumulator_range: w must hold integers .* float64",
        ),
        (
            lambda: quant.accumulator_range(
                np.ones((1, 2, 3), dtype=int), input_bits=2, input_shape=(1, 3, 5)
            ),
            ValueError,
            "accumulator_range: x has 3 channels but w expects 2",
        ),
        (
            lambda: quant.extreme_inputs(np.ones((1, 1, 3)), (1, 5), input_bits=2),
            TypeError,
            "extreme_inputs: w must hold integers",
        ),
        (
            lambda: quant.extreme_inputs(np.ones((1, 1, 3), dtype=int), (1, 2), input_bits=2),
            ValueError,
            "extreme_inputs: the kernel is larger than the padded input",
        ),
        (
            lambda: quant.conv(
                np.ones((1, 1, 3), dtype=int),
                np.ones((1, 1, 3), dtype=int),
                accumulator_bits=4,
                overflow="clip",
            ),
            ValueError,
            "quant.conv: overflow must be one of",
        ),
        (
            lambda: quant.conv(
                np.ones((1, 1, 3), dtype=int), np.ones((1, 1, 3), dtype=int), accumulator_bits=63
            ),
            ValueError,
            "accumulator_bits must be at most 62",
        ),
        (
            lambda: quant.conv(
                np.ones((1, 1, 3)), np.ones((1, 1, 3), dtype=int), accumulator_bits=8
            ),
            TypeError,
            "quant.conv: x must hold integers, got dtype float64",
        ),
        (
            lambda: quant.conv(
                np.array([[[2**63 + 1]]], np.uint64), np.ones((1, 1, 1), int), accumulator_bits=8
            ),
            ValueError,
            r"quant.conv: x holds 9223372036854775809, beyond int64",
        ),
        (
            lambda: quant.conv(
                np.ones((1, 1, 3), dtype=int),
                np.ones((1, 1, 3), dtype=int),
                [1, 2],
                accumulator_bits=8,
            ),
            ValueError,
            r"quant.conv: bias must have shape \(1,\), one value per output channel, "
            r"got shape \(2,\)",
        ),
    ],
)
def test_error_messages(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ exact integer conv


@given(layers(), st.integers(0, 26), st.integers(0, 22), st.sampled_from(npconv.algorithms()))
def test_integer_conv_is_exact_at_every_magnitude(layer, x_shift, w_shift, algorithm) -> None:
    """Below a 2**53 bound npconv computes in float64, above it in int64: exact either way."""
    x, w, options, mode, _, taps = layer
    x, w = x * 2**x_shift + 1, w * 2**w_shift  # partial sums from tiny to about 2**60
    try:
        y = npconv.conv(x, w, padding_mode=mode, algorithm=algorithm, **options)
    except ValueError as err:  # algorithms that are not exact for integers, or too big
        assert "cannot run this convolution" in str(err) or "beyond the int64" in str(err)
        return
    assert y.dtype == np.int64
    for (n, o, *p), prefix in partial_sums(taps, x, [0] * w.shape[0]).items():
        assert y[(n, o, *p)] == prefix[-1] * 2**w_shift  # the taps hold the unscaled w


@pytest.mark.parametrize("algorithm", FORWARD)
def test_integer_conv_just_past_float64(algorithm) -> None:
    x = np.array([[[2**50 + 1, 2**50 + 4, 2**50 + 2]]])
    w = np.array([[[7, 1]]])  # 2**53 + 11 is odd: float64 would round it
    expected = [2**53 + 11, 2**53 + 30]
    small = [7 * 1 + 4, 7 * 4 + 2]  # x % 16: the same layer far below 2**53
    if refuses_without_numba(algorithm, lambda: npconv.conv(x, w, algorithm=algorithm)):
        return
    try:
        y = npconv.conv(x, w, algorithm=algorithm)
    except ValueError as err:
        assert "not exact for integer inputs" in str(err)
        return
    assert y.tolist() == [[expected]]
    assert npconv.conv(x % 16, w, algorithm=algorithm).tolist() == [[small]]
