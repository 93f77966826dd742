"""The operands of a convolution: arrays checked, batched, and the dtypes to compute in.

:func:`prepare` is the preamble of every entry point: the arrays as numeric ndarrays,
the batch axis added when it was left out, the options bound to the shapes (a
:class:`~npconv.ConvSpec`), the bias checked, and the :class:`Numerics`: the dtype to
compute in and the dtype of the result.  Integers are exact: every partial sum is
bounded by ``max|x| * max_o sum|w[o]| + max|bias|``; below 2**53 float64 BLAS holds
every one exactly, below 2**62 int64 does, and beyond that Python ints (an ``object``
array) do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._adjoint import swapped_filters
from ._spec import ConvOptions, ConvSpec

__all__ = [
    "NonFinite",
    "Numerics",
    "Problem",
    "as_array",
    "bind_shapes",
    "checked_bias",
    "compute_dtypes",
    "finite",
    "integer_numerics",
    "prepare",
]

_LARGEST_EXACT_INT = 2**62  # conservative int64 accumulator limit (float64 estimate below)


def as_array(fn: str, name: str, value: Any) -> np.ndarray:
    """``value`` as an ndarray of a numeric dtype, or an error naming ``name``."""
    try:
        a = np.asarray(value)
    except ValueError as err:  # a ragged nested sequence
        raise ValueError(f"{fn}: {name} must be an array of one shape: {err}") from None
    if a.dtype.kind not in "biufc":
        raise TypeError(
            f"{fn}: {name} must hold numbers (bool, int, float or complex), got dtype {a.dtype}"
        )
    return a


def checked_bias(fn: str, bias: npt.ArrayLike | None, channels: int) -> np.ndarray | None:
    """``bias`` as an array of one value per output channel (None stays None)."""
    if bias is None:
        return None
    b = as_array(fn, "bias", bias)
    if b.shape != (channels,):
        raise ValueError(
            f"{fn}: bias must have shape ({channels},), one value per output channel, "
            f"got shape {b.shape}"
        )
    return b


def compute_dtypes(fn: str, *arrays: np.ndarray) -> tuple[np.dtype, np.dtype]:
    """(dtype to compute in, dtype of the result) for these operands.

    The result follows ``np.result_type``, except that integer (and bool) operands give an
    exact ``int64`` result, and float16 is computed in float32 then rounded once.
    """
    first = arrays[0].dtype
    if first.kind == "f" and first.itemsize >= 4 and all(a.dtype == first for a in arrays):
        return first, first  # the common case, without np.result_type's dispatch
    result = np.result_type(*arrays)
    if all(a.dtype.kind in "biu" for a in arrays):  # uint64 with int64 gives float64
        if any(a.dtype == np.uint64 for a in arrays):
            raise TypeError(
                f"{fn}: uint64 operands cannot be accumulated exactly in int64; "
                "cast them to int64 (or float64) first"
            )
        return np.dtype(np.int64), np.dtype(np.int64)
    if result == np.float16:
        return np.dtype(np.float32), result
    return result, result


@dataclass(frozen=True)
class Numerics:
    """How a convolution computes: ``compute`` is the dtype its arrays are cast to,
    ``exact`` the one its algorithm must be exact in (int64 for integers computed by
    float64 BLAS, object for Python ints), ``result`` the dtype it returns."""

    compute: np.dtype
    exact: np.dtype
    result: np.dtype

    @property
    def carry(self) -> np.dtype:
        """The dtype of partial results: exact integers stay integers, floats stay wide."""
        return self.result if self.result.kind in "iO" else self.compute


class NonFinite(ArithmeticError):
    """A result computed through transforms holds a value that is not finite: raised by
    an algorithm that checks its own result as it writes it (its registry row's
    ``checks_result``), so that the dispatch computes it again by a direct algorithm."""


def finite(y: np.ndarray) -> bool:
    """Whether every value of ``y`` is finite, without a temporary copy (two passes;
    ``max - min`` in Python floats is NaN or Inf exactly when one of them is)."""
    if y.size == 0:
        return True
    if y.dtype.kind == "c":
        return finite(y.real) and finite(y.imag)
    return math.isfinite(float(y.max()) - float(y.min()))


def integer_numerics(x: np.ndarray, filters: np.ndarray, bias: np.ndarray | None) -> Numerics:
    """How to convolve integers exactly: float64 BLAS, int64, or Python ints.

    ``filters`` is ``(taps, channels)``: per output channel, the values it sums against
    ``x``.
    """
    exact = np.dtype(np.int64)
    if x.size == 0 or filters.size == 0:
        return Numerics(np.dtype(np.float64), exact, exact)
    x_max = max(-float(x.min()), float(x.max()))
    f_sum = float(np.abs(filters.astype(np.float64)).sum(axis=0).max())
    b_max = 0.0 if bias is None else float(np.abs(bias.astype(np.float64)).max(initial=0))
    bound = (x_max * f_sum + b_max) * (1 + 1e-6)  # the factor covers this estimate's rounding
    if bound >= _LARGEST_EXACT_INT:
        return Numerics(np.dtype(object), np.dtype(object), np.dtype(object))
    return Numerics(np.dtype(np.float64 if bound < 2**53 else np.int64), exact, exact)


@dataclass(frozen=True)
class Problem:
    """One convolution ready to run: validated operands and how to compute them.

    ``x`` is batched and in the spec's layout; for a ``transposed`` problem it is the
    input of the transposed convolution (shaped as the forward's output) and ``spec``
    the forward convolution it transposes.  ``w`` is in the spec's layout.  With
    ``relu``, the result is ``max(conv + bias, 0)`` (NaN stays NaN): the ReLU that
    follows a convolution in a network, applied in the algorithm's own passes where it
    can (its registry row's ``fuses_relu``), else in one pass over the result.
    """

    fn: str
    spec: ConvSpec
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    numerics: Numerics
    unbatched: bool = False
    transposed: bool = False
    relu: bool = False

    @classmethod
    def of(
        cls,
        fn: str,
        spec: ConvSpec,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        unbatched: bool = False,
        transposed: bool = False,
    ) -> Problem:
        """The problem of checked operands, with its :class:`Numerics`."""
        operands = [x, w] if bias is None else [x, w, bias]
        compute, result = compute_dtypes(fn, *operands)
        if compute.kind != "i":
            exact = Numerics(compute, compute, result)
        else:  # the adjoint sums, per input channel, the swapped filters
            filters = swapped_filters(w, spec) if transposed else w
            if spec.layout == "NCHW":  # (O, C/G, *k) -> (C/G, *k, O): channels last
                filters = np.moveaxis(filters, 0, -1)
            channels = spec.in_channels if transposed else spec.out_channels
            taps = filters.size // max(channels, 1)
            exact = integer_numerics(x, filters.reshape(taps, channels), bias)
        return cls(fn, spec, x, w, bias, exact, unbatched, transposed)


def bind_shapes(
    options: ConvOptions,
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    transposed: bool = False,
    output_size: Sequence[int] | None = None,
) -> tuple[ConvSpec, bool]:
    """The spec of shapes whose ``x`` may lack its batch axis, and whether it did."""
    x_shape = tuple(x_shape)
    unbatched = len(x_shape) == len(tuple(w_shape)) - 1
    shape = (1, *x_shape) if unbatched else x_shape
    if transposed:
        return options.bind_transposed(shape, w_shape, output_size), unbatched
    return options.bind(shape, w_shape), unbatched


def prepare(
    options: ConvOptions,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    transposed: bool = False,
    output_size: Sequence[int] | None = None,
) -> Problem:
    """Check the operands of ``conv`` (``conv_transpose`` if ``transposed``) and bind them.

    Every error is a ValueError or TypeError whose message starts with ``options.fn``.
    """
    fn = options.fn
    x, w = as_array(fn, "x", x), as_array(fn, "w", w)
    spec, unbatched = bind_shapes(
        options, x.shape, w.shape, transposed=transposed, output_size=output_size
    )
    b = checked_bias(fn, bias, spec.in_channels if transposed else spec.out_channels)
    x = x[None] if unbatched else x
    return Problem.of(fn, spec, x, w, b, unbatched=unbatched, transposed=transposed)
