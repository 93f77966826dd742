"""Certified accumulator widths: how many bits the partial sums of a convolution need.

The model: every input element lies in an integer range ``[a, b]`` that contains 0 (the
range of an unsigned or two's-complement integer of some width, or one given
explicitly), and every tap of an output's receptive field reads its own input element
(with ``padding_mode="zeros"`` a tap that falls into the padding reads a 0 instead).
Tap ``t`` with weight ``w_t`` then contributes a value in
``[min(a*w_t, b*w_t), max(a*w_t, b*w_t)]``, an interval that contains 0.  Summing those
intervals over the taps of one output gives the exact range of that output; because
every interval contains 0, the partial sums of *any* accumulation order, over any subset
of the taps, stay inside it too.  The bound of a channel is the widest range over its
output positions (an edge output sees fewer taps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from .._dispatch import convolve
from .._operands import as_array, bind_shapes
from .._spec import ConvOptions
from .._windows import canonical_weight
from ..algorithms import matrix

__all__ = [
    "accumulator_bits",
    "accumulator_range",
    "bits_needed",
    "extreme_inputs",
    "integer_range",
    "max_filter_size",
]


def bits_needed(lo: int, hi: int) -> int:
    """Width of the smallest integer type that holds every value in ``[lo, hi]``.

    Unsigned when ``lo >= 0``, otherwise two's complement (the sign bit included); at
    least 1.  This is the rule Concrete uses for the bit width of a value.

    Examples
    --------
    >>> from npconv.quant import bits_needed
    >>> bits_needed(0, 127), bits_needed(-128, 127), bits_needed(-129, 0), bits_needed(0, 0)
    (7, 8, 9, 1)
    """
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"bits_needed: lo={lo} must not exceed hi={hi}")
    if lo >= 0:
        return max(hi.bit_length(), 1)
    return max(hi.bit_length(), (-lo - 1).bit_length()) + 1


def integer_range(bits: int, signed: bool = False, *, fn: str = "integer_range") -> tuple[int, int]:
    """``(min, max)`` of a ``bits``-wide integer: ``[0, 2**bits - 1]`` or two's complement.

    Examples
    --------
    >>> from npconv.quant import integer_range
    >>> integer_range(2), integer_range(2, signed=True)
    ((0, 3), (-2, 1))
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise TypeError(f"{fn}: bit widths must be ints, got {bits!r}")
    if bits < 1:
        raise ValueError(f"{fn}: bit widths must be >= 1, got {bits}")
    bits = int(bits)
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def _product_range(x: tuple[int, int], w: tuple[int, int]) -> tuple[int, int]:
    corners = [xi * wi for xi in x for wi in w]
    return min(corners), max(corners)


def max_filter_size(
    input_bits: int,
    weight_bits: int,
    accumulator_bits: int,
    *,
    signed_inputs: bool = False,
    signed_weights: bool = False,
) -> int:
    """The most weights a filter may have so that no input and no weights overflow.

    The worst case from bit widths alone: ``n`` products, each in the range of a
    ``input_bits`` x ``weight_bits`` product, must sum into an ``accumulator_bits``-wide
    integer (unsigned when no product can be negative, two's complement otherwise, the
    rule of :func:`bits_needed`).

    Parameters
    ----------
    input_bits, weight_bits, accumulator_bits : int
        Widths, each >= 1.
    signed_inputs, signed_weights : bool
        Two's-complement inputs / weights (default unsigned).

    Returns
    -------
    int
        The largest ``n`` with ``bits_needed(n * min_product, n * max_product) <=
        accumulator_bits`` (0 when not even one product fits).

    Raises
    ------
    ValueError, TypeError
        A width that is not an int >= 1.

    Examples
    --------
    >>> from npconv.quant import max_filter_size
    >>> max_filter_size(2, 2, 7)  # 3 * 3 = 9 per product, 127 // 9
    14
    >>> max_filter_size(8, 8, 32, signed_inputs=True, signed_weights=True)
    131071
    """
    fn = "max_filter_size"
    x = integer_range(input_bits, signed_inputs, fn=fn)
    w = integer_range(weight_bits, signed_weights, fn=fn)
    p_lo, p_hi = _product_range(x, w)
    acc_lo, acc_hi = integer_range(accumulator_bits, signed=p_lo < 0, fn=fn)
    if p_lo >= 0:
        return acc_hi // p_hi
    by_hi = acc_hi // p_hi if p_hi > 0 else math.inf
    return int(min(by_hi, acc_lo // p_lo))


def input_interval(
    fn: str, input_bits: int | None, input_range: Sequence[int] | None, signed_inputs: bool
) -> tuple[int, int]:
    """The range of every input element, from ``input_bits`` or ``input_range``."""
    if (input_bits is None) == (input_range is None):
        raise ValueError(f"{fn}: give exactly one of input_bits and input_range")
    if input_bits is not None:
        return integer_range(input_bits, signed_inputs, fn=fn)
    assert input_range is not None  # for mypy: checked above
    a, b = (int(v) for v in input_range)
    if not a <= 0 <= b:
        raise ValueError(
            f"{fn}: input_range must contain 0 (as every quantized range does), got ({a}, {b})"
        )
    return a, b


def _all_ones(
    w_shape: tuple[int, ...], input_shape: Sequence[int] | None, groups: int, layout: str
) -> np.ndarray:
    """The all-ones input: ``input_shape`` (one sample), or one window of the kernel's size."""
    if input_shape is not None:
        shape = tuple(input_shape)
        return np.ones(shape if len(shape) == len(w_shape) else (1, *shape), dtype=np.int64)
    nchw = layout == "NCHW"
    kernel, w_in = (w_shape[2:], w_shape[1:2]) if nchw else (w_shape[:-2], w_shape[-2:-1])
    channels = tuple(c * groups if isinstance(groups, int) else c for c in w_in)
    return np.ones((1, *channels, *kernel) if nchw else (1, *kernel, *channels), dtype=np.int64)


def accumulator_range(
    w: npt.ArrayLike,
    *,
    input_bits: int | None = None,
    input_range: Sequence[int] | None = None,
    signed_inputs: bool = False,
    weight_bits: int | None = None,
    signed_weights: bool = False,
    input_shape: Sequence[int] | None = None,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest reachable partial sum of each output channel.

    Parameters
    ----------
    w : array_like of int
        Filters, as for :func:`npconv.conv`.  With ``weight_bits`` only its shape counts.
    input_bits : int, optional
        Inputs are ``input_bits``-wide integers (unsigned unless ``signed_inputs``).
    input_range : (int, int), optional
        Inputs lie in ``[lo, hi]``, which must contain 0.  Give exactly one of
        ``input_bits`` and ``input_range``.
    signed_inputs : bool
        Two's-complement inputs (with ``input_bits``).
    weight_bits : int, optional
        Ignore the values of ``w`` and take the worst case over all
        ``weight_bits``-wide weights (unsigned unless ``signed_weights``).
    input_shape : tuple of int, optional
        Shape of ``x`` (with or without the batch axis).  Without it the range is the
        one of an output that sees every tap (any output of a large enough input), and
        ``stride``, ``padding``, ``dilation`` and ``padding_mode`` have no effect.
    stride, padding, dilation, groups, padding_mode, layout
        As for :func:`npconv.conv`.

    Returns
    -------
    (lo, hi) : ndarray of Python int, each ``(O,)``
        ``lo[o] <= s <= hi[o]`` for every partial sum ``s`` of channel ``o``, in any
        accumulation order and at any output position; both ends are reached by the
        full sum of some input (see :func:`extreme_inputs`) whenever the extreme output's
        taps read distinct input elements (always with zero padding).

    Raises
    ------
    ValueError, TypeError
        As :func:`npconv.conv` for the shapes and options; non-integer weights (without
        ``weight_bits``); an input range that does not contain 0; not exactly one of
        ``input_bits`` and ``input_range``.

    Notes
    -----
    With ``a <= 0 <= b`` the input range, the range of output ``(p, o)`` is
    ``[a*P + b*Q, b*P + a*Q]`` where ``P`` and ``Q`` are the sums of the positive and of
    the negative weights over the taps that ``p`` sees.  Those tap sums are themselves
    a convolution, of an all-ones input with ``max(w, 0)`` and ``min(w, 0)``, computed
    exactly with :func:`npconv.conv`.  With ``padding_mode="reflect"`` (and the other
    non-zero modes) an edge window may read one element through two taps; the taps are
    still counted independently, so there the range is an upper bound.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.quant import accumulator_range
    >>> w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])  # Sobel, (1, 1, 3, 3)
    >>> lo, hi = accumulator_range(w, input_bits=2)
    >>> int(lo[0]), int(hi[0])
    (-12, 12)
    >>> lo, hi = accumulator_range(w, input_bits=2, input_shape=(1, 1, 2, 2), padding=1)
    >>> int(lo[0]), int(hi[0])  # every output of a 2x2 image misses a row and a column
    (-9, 9)
    """
    fn = "accumulator_range"
    w = as_array(fn, "w", w)
    a, b = input_interval(fn, input_bits, input_range, signed_inputs)
    if weight_bits is None and w.dtype.kind not in "biu":
        raise TypeError(f"{fn}: w must hold integers (or give weight_bits), got dtype {w.dtype}")
    kwargs: dict[str, Any] = {"groups": groups, "layout": layout}
    if input_shape is not None:
        kwargs |= dict(stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode)
    ones = _all_ones(w.shape, input_shape, groups, layout)
    channel_axis = 1 if layout == "NCHW" else -1

    def tap_sums(weights: np.ndarray) -> np.ndarray:
        """Sum of ``weights`` over the taps of each output: ``(O, positions)``, Python ints."""
        sums = convolve(ConvOptions.create(fn, **kwargs), ones, weights)
        sums = np.moveaxis(sums, channel_axis, 0)
        # sums: (O, N, *out)
        return sums.reshape(sums.shape[0], -1).astype(object)  # (O, positions)

    if weight_bits is not None:
        p_lo, p_hi = _product_range((a, b), integer_range(weight_bits, signed_weights, fn=fn))
        taps = tap_sums(np.ones(w.shape, dtype=np.int64))
        lo, hi = p_lo * taps, p_hi * taps
    else:
        w64 = w.astype(np.int64)
        pos, neg = tap_sums(np.maximum(w64, 0)), tap_sums(np.minimum(w64, 0))
        lo, hi = a * pos + b * neg, b * pos + a * neg
    return lo.min(axis=1), hi.max(axis=1)


def accumulator_bits(
    w: npt.ArrayLike, *, per_channel: bool = False, **kwargs: Any
) -> int | np.ndarray:
    """Bits an accumulator needs so that no partial sum of this convolution overflows.

    Parameters
    ----------
    w : array_like of int
        Filters, as for :func:`npconv.conv`.
    per_channel : bool
        One width per output channel instead of one for the layer.
    **kwargs
        ``input_bits`` or ``input_range``, ``signed_inputs``, ``weight_bits`` (worst case
        from bit widths alone), ``signed_weights``, ``input_shape`` and the convolution's
        options, as for :func:`accumulator_range`.

    Returns
    -------
    int or ndarray of int64, ``(O,)``
        :func:`bits_needed` of the range of :func:`accumulator_range`: the sign bit is
        included exactly when a partial sum can be negative.  The width is reached: the
        extreme input of :func:`extreme_inputs` needs every one of those bits.

    Raises
    ------
    ValueError, TypeError
        As :func:`accumulator_range`.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.quant import accumulator_bits
    >>> w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])  # Sobel: sums in [-12, 12]
    >>> accumulator_bits(w, input_bits=2)
    5
    >>> accumulator_bits(np.ones((2, 1, 3, 3), dtype=int), input_bits=2, weight_bits=2)
    7
    >>> accumulator_bits(np.stack([w[0], 2 * w[0]]), input_bits=2, per_channel=True)
    array([5, 6])
    """
    lo, hi = accumulator_range(w, **kwargs)
    if per_channel:
        return np.array([bits_needed(a, b) for a, b in zip(lo, hi)], dtype=np.int64)
    return bits_needed(min(lo), max(hi))


def extreme_inputs(
    w: npt.ArrayLike,
    input_shape: Sequence[int],
    *,
    input_bits: int | None = None,
    input_range: Sequence[int] | None = None,
    signed_inputs: bool = False,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "NCHW",
) -> np.ndarray:
    """Inputs that drive each output channel to the ends of :func:`accumulator_range`.

    Parameters
    ----------
    w : array_like of int
        Filters, as for :func:`npconv.conv`.
    input_shape : tuple of int
        Shape of one sample of ``x`` (a leading batch axis is dropped).
    input_bits, input_range, signed_inputs
        The input range, as for :func:`accumulator_range`.
    stride, padding, dilation, groups, layout
        As for :func:`npconv.conv` (zero padding).

    Returns
    -------
    ndarray of int64, ``(2 * O, *input_shape)``
        Sample ``2*o`` makes some output of channel ``o`` equal to ``hi[o]`` and sample
        ``2*o + 1`` makes one equal to ``lo[o]``: each element of the extreme output's
        window is the end of the input range that its weight's sign favours, the rest 0.
        Together they are a calibration set that makes a compiler measure exactly the
        certified range.

    Raises
    ------
    ValueError, TypeError
        As :func:`accumulator_range`.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> from npconv.quant import accumulator_range, extreme_inputs
    >>> w = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]])
    >>> x = extreme_inputs(w, (1, 5, 5), input_bits=2, padding=1)
    >>> y = npconv.conv(x, w, padding=1)
    >>> int(y[0].max()), int(y[1].min())
    (12, -12)
    """
    fn = "extreme_inputs"
    w = as_array(fn, "w", w)
    if w.dtype.kind not in "biu":
        raise TypeError(f"{fn}: w must hold integers, got dtype {w.dtype}")
    a, b = input_interval(fn, input_bits, input_range, signed_inputs)
    options = ConvOptions.create(fn, stride, padding, dilation, groups, layout=layout)
    spec, _ = bind_shapes(options, input_shape, w.shape)
    m = scipy.sparse.csr_array(matrix.build(spec, canonical_weight(w.astype(np.int64), spec)))
    # m: (C*prod(in), O*prod(out)), as npconv.conv_matrix
    pos, neg = m.copy(), m.copy()
    pos.data, neg.data = np.maximum(m.data, 0), np.minimum(m.data, 0)
    pos_sums = pos.sum(axis=0).astype(object)  # (O*out,) per output: sum of positive taps
    neg_sums = neg.sum(axis=0).astype(object)
    outputs = math.prod(spec.out_size)
    columns = np.arange(m.shape[1])  # column j is output channel j // out (NCHW), j % O
    channel = columns // outputs if layout == "NCHW" else columns % spec.out_channels
    inputs = np.zeros((2 * spec.out_channels, m.shape[0]), dtype=np.int64)
    for o in range(spec.out_channels):
        own = columns[channel == o]
        for k, (high, low) in enumerate(((b, a), (a, b))):  # favour the max, then the min
            sums = high * pos_sums[own] + low * neg_sums[own]
            j = own[np.argmax(sums) if k == 0 else np.argmin(sums)]
            taps = m[:, [j]].toarray()[:, 0]  # (C*in,): the window's weights
            inputs[2 * o + k] = np.where(taps > 0, high, np.where(taps < 0, low, 0))
    nchw = layout == "NCHW"
    sample = (spec.in_channels, *spec.in_size) if nchw else (*spec.in_size, spec.in_channels)
    return inputs.reshape(2 * spec.out_channels, *sample)
