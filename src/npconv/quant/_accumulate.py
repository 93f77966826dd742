"""A B-bit accumulator, simulated exactly: what a low-bit integer convolution really computes.

The partial sums of every output are formed in one fixed order (the bias first, then the
taps in the order of ``w[o]`` in PyTorch's layout: input channel, then kernel offsets in
C order), and after every addition the accumulator either wraps (two's complement, or
modulo ``2**B`` when unsigned), saturates, or raises an error that names the output.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._operands import as_array, prepare
from .._spec import ConvOptions
from .._windows import canonical_input, canonical_weight, windows
from ._bounds import integer_range

__all__ = ["OVERFLOW_MODES", "conv"]

OVERFLOW_MODES = ("raise", "wrap", "saturate")
_WIDEST = 62  # widest accumulator simulated in int64 with room for one more product


def _as_integers(fn: str, name: str, value: Any) -> np.ndarray:
    a = as_array(fn, name, value)
    if a.dtype.kind not in "biu":
        raise TypeError(f"{fn}: {name} must hold integers, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{fn}: {name} holds {int(a.max())}, beyond int64")
    return a.astype(np.int64)


def _max_abs(a: np.ndarray) -> int:
    """``max|a|`` of an int64 array as a Python int (``np.abs`` overflows at int64's min)."""
    return max(-int(a.min(initial=0)), int(a.max(initial=0)))


def conv(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    accumulator_bits: int,
    overflow: str = "raise",
    accumulator_signed: bool = True,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
) -> np.ndarray:
    """Integer convolution through a simulated ``accumulator_bits``-wide accumulator.

    Parameters
    ----------
    x, w, bias : array_like of int
        As for :func:`npconv.conv`.
    accumulator_bits : int
        Width of the accumulator, 1 to 62.
    overflow : {"raise", "wrap", "saturate"}
        What happens when a partial sum leaves the accumulator's range: a ValueError
        naming the sample, output channel, position and tap; two's-complement wrap
        (modulo ``2**accumulator_bits``); or clamping after every addition.
    accumulator_signed : bool
        Two's complement ``[-2**(B-1), 2**(B-1) - 1]`` (default) or unsigned
        ``[0, 2**B - 1]``, the convention of :func:`accumulator_bits`.
    stride, padding, dilation, groups, padding_mode, layout
        As for :func:`npconv.conv`.

    Returns
    -------
    ndarray of int64
        Shaped as :func:`npconv.conv`'s result.  Equal to it whenever no partial sum
        overflows, which :func:`accumulator_bits` certifies in advance.

    Raises
    ------
    ValueError
        An overflow with ``overflow="raise"``; an unknown overflow mode; a width outside
        1..62; uint64 values beyond int64; the errors of :func:`npconv.conv`.
    TypeError
        Non-integer arrays.

    Notes
    -----
    Order: ``bias[o]``, then for each input channel ``c`` of the group and each kernel
    offset ``k`` (C order) the product ``x[.., c, p*stride + k*dilation] * w[o, c, k]``
    (taps in the zero padding add 0).  Wrapping commutes with addition, so ``"wrap"`` is
    order-independent; saturation and the first overflow are not.  Cost: one vectorised
    step per tap, ``C/G * prod(kernel)`` steps over the whole output, in int64, or in
    Python ints when a product can reach ``2**62`` (``max|x| * max|w|``).

    Examples
    --------
    >>> import numpy as np
    >>> from npconv import quant
    >>> x = np.full((1, 1, 3, 3), 3)
    >>> w = np.full((1, 1, 3, 3), 3)  # the sum is 81 > 63
    >>> quant.conv(x, w, accumulator_bits=7, overflow="wrap")
    array([[[[-47]]]])
    >>> quant.conv(x, w, accumulator_bits=7, overflow="saturate")
    array([[[[63]]]])
    >>> quant.conv(x, w, accumulator_bits=7, accumulator_signed=False)
    array([[[[81]]]])
    """
    fn = "quant.conv"
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"{fn}: overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
    lo, hi = integer_range(accumulator_bits, accumulator_signed, fn=fn)
    if accumulator_bits > _WIDEST:
        raise ValueError(
            f"{fn}: accumulator_bits must be at most {_WIDEST} (simulated in int64), "
            f"got {accumulator_bits}"
        )
    xi, wi = _as_integers(fn, "x", x), _as_integers(fn, "w", w)
    b = None if bias is None else _as_integers(fn, "bias", bias)
    options = ConvOptions.create(fn, stride, padding, dilation, groups, padding_mode, layout)
    problem = prepare(options, xi, wi, b)
    spec, xi = problem.spec, problem.x
    if _max_abs(xi) * _max_abs(wi) >= 2**_WIDEST:  # a product and a partial sum pass int64
        xi, wi = xi.astype(object), wi.astype(object)  # Python ints
        b = None if b is None else b.astype(object)
    acc = np.zeros((spec.batch, *spec.out_size, spec.out_channels), dtype=xi.dtype)
    # acc: (N, *out, O)
    if b is not None:
        acc += b
        _settle(fn, acc, lo, hi, overflow, accumulator_bits, "the bias")

    patches = windows(canonical_input(xi, spec), spec)  # (N, *out, *kernel, C)
    patches = patches.reshape(*patches.shape[:-1], spec.groups, spec.group_in)
    # patches: (N, *out, *kernel, G, C/G)
    wc = canonical_weight(wi, spec)  # (*kernel, C/G, O)
    group_of = np.arange(spec.out_channels) // spec.group_out  # (O,): group of each channel
    spatial = (slice(None),) * (1 + spec.nd)  # (N, *out)
    for c in range(spec.group_in):
        for k in itertools.product(*map(range, spec.kernel)):
            tap_index: tuple[Any, ...] = (*spatial, *k, slice(None), c)
            weight_index = (*k, c)
            tap = patches[tap_index]  # (N, *out, G)
            acc += tap[..., group_of] * wc[weight_index]  # (N, *out, O)
            _settle(fn, acc, lo, hi, overflow, accumulator_bits, f"tap c={c}, k={k}")

    y = np.moveaxis(acc, -1, 1) if spec.layout == "NCHW" else acc  # (N, O, *out)
    y = np.ascontiguousarray(y, dtype=np.int64)  # within the accumulator's range
    return y[0] if problem.unbatched else y


def _settle(
    fn: str, acc: np.ndarray, lo: int, hi: int, overflow: str, bits: int, step: str
) -> None:
    """Bring ``acc`` (in place) back into ``[lo, hi]`` as ``overflow`` says."""
    if overflow == "wrap":
        acc -= lo
        acc %= 2**bits
        acc += lo
    elif overflow == "saturate":
        np.clip(acc, lo, hi, out=acc)
    else:
        outside = (acc < lo) | (acc > hi)
        if outside.any():
            first = tuple(int(i) for i in np.argwhere(outside)[0])
            n, *position, o = first
            value = int(acc[first])
            raise ValueError(
                f"{fn}: the {bits}-bit accumulator [{lo}, {hi}] overflows at sample {n}, "
                f"output channel {o}, position {tuple(position)}: adding {step} makes the "
                f"partial sum {value}"
            )
