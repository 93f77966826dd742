"""The convolution functions: options validated once, bound to shapes, then dispatched."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from ._dispatch import convolve
from ._operands import as_array, bind_shapes
from ._ranked import rank_variant
from ._spec import ConvOptions, IntOrTuple, PaddingArg
from ._windows import canonical_weight
from .algorithms import REGISTRY, matrix

__all__ = [
    "algorithms",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_matrix",
    "conv_output_shape",
]


def algorithms() -> list[str]:
    """Names accepted by ``algorithm=`` (besides ``"auto"``), in registry order.

    ``col2im`` computes transposed convolutions only: :func:`npconv.conv_transpose` and
    the input gradients of :mod:`npconv.grad` accept it, :func:`conv` does not.

    Examples
    --------
    >>> import npconv
    >>> npconv.algorithms()[:5]
    ['naive', 'shifted', 'im2col', 'im2col_jit', 'einsum']
    """
    return list(REGISTRY)


def conv(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> np.ndarray:
    """N-d convolution (deep-learning cross-correlation), as PyTorch and ONNX define it.

    Parameters
    ----------
    x : array_like
        Input, ``(N, C, *spatial)`` for ``layout="NCHW"`` or ``(N, *spatial, C)`` for
        ``"NHWC"``; the batch axis may be left out (then the result has none either).
        Any strides, any memory order; it is never modified.
    w : array_like
        Filters, ``(O, C/groups, *kernel)`` for ``"NCHW"`` (PyTorch's OIHW) or
        ``(*kernel, C/groups, O)`` for ``"NHWC"`` (TensorFlow's HWIO).  The number of
        spatial dims (1, 2 or 3) is ``w.ndim - 2``.
    bias : array_like, optional
        One value per output channel, shape ``(O,)``.
    stride, dilation : int or tuple of int
        One value for every spatial dim, or one per dim; each >= 1.
    padding : int, tuple, tuple of pairs or str
        Zero-based pads: an int for every side, one int per dim (both sides), one
        ``(before, after)`` pair per dim (ONNX ``pads``), ``"valid"`` (none), ``"same"``
        (alias ``"same_upper"``: output size ``ceil(in / stride)``, any odd pad at the end,
        as ONNX SAME_UPPER and TensorFlow "SAME") or ``"same_lower"`` (odd pad at the
        start).
    groups : int
        Split channels into this many independent groups; must divide C and O.
        ``groups == C`` is a depthwise convolution.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        What the pads hold, as in ``torch.nn.Conv2d``.
    layout : {"NCHW", "NHWC"}
        Memory layout of ``x``, ``w`` and the result (for every rank: "NCHW" means
        channels-first, "NHWC" channels-last).
    algorithm : str
        ``"auto"`` or one of :func:`algorithms`.

    Returns
    -------
    ndarray
        ``(N, O, *out)`` or ``(N, *out, O)``, with, per spatial dim,
        ``out = floor((in + pad_before + pad_after - dilation * (k - 1) - 1) / stride) + 1``.
        The dtype is ``np.result_type(x, w, bias)``, except that integer inputs give an
        exact ``int64`` result, or an ``object`` array of exact Python ints where the
        partial sums could exceed int64 (``npconv.quant.conv(...,
        accumulator_bits=62, overflow="raise")`` raises there instead).

    Raises
    ------
    ValueError
        Mismatched channels or bias, groups not dividing channels, a kernel larger than
        the padded input, non-positive stride or dilation, an unknown padding string,
        padding mode, layout or algorithm, a padding mode that is ambiguous with "same".
    TypeError
        Non-numeric arrays, non-integer sizes, uint64 operands.

    Notes
    -----
    ``y[n, o, p] = bias[o] + sum_{c, k} x_pad[n, g*C/G + c, p*stride + k*dilation] *
    w[o, c, k]`` with ``g = o // (O/G)``: no kernel flip (cross-correlation).

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 3, 3))
    >>> npconv.conv(x, w)
    array([[[[45., 54.],
             [81., 90.]]]])
    >>> npconv.conv(x, w, padding="same", stride=2).shape
    (1, 1, 2, 2)
    """
    options = ConvOptions.create("conv", stride, padding, dilation, groups, padding_mode, layout)
    return convolve(options, x, w, bias, algorithm)


def _conv(
    fn: str,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    algorithm: str = "auto",
    **options: Any,
) -> np.ndarray:
    """:func:`conv`, with ``fn`` (the public name) prefixed to every error message."""
    return convolve(ConvOptions.create(fn, **options), x, w, bias, algorithm)


def _variant(nd: int) -> Any:
    spatial = (", 8" * nd, ", 3" * nd)
    doc = f"""{nd}-d convolution: :func:`conv` with ``w.ndim == {nd + 2}`` checked.

    Takes the same arguments as :func:`conv` and returns the same result.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 3{spatial[0]}))
    >>> w = np.ones((4, 3{spatial[1]}))
    >>> npconv.conv{nd}d(x, w, padding=1).shape
    (2, 4{spatial[0]})
    """
    return rank_variant(f"conv{nd}d", nd, _conv, inspect.signature(conv), "w", doc)


conv1d = _variant(1)
conv2d = _variant(2)
conv3d = _variant(3)


def conv_output_shape(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "NCHW",
) -> tuple[int, ...]:
    """Shape of ``conv(x, w, ...)`` for ``x.shape == input_shape``, ``w.shape == weight_shape``.

    Raises the same errors as :func:`conv` for the same arguments.

    Examples
    --------
    >>> import npconv
    >>> npconv.conv_output_shape((8, 3, 224, 224), (64, 3, 7, 7), stride=2, padding=3)
    (8, 64, 112, 112)
    >>> npconv.conv_output_shape((1, 33, 33, 3), (5, 5, 3, 1), stride=2, layout="NHWC")
    (1, 15, 15, 1)
    """
    fn = "conv_output_shape"
    options = ConvOptions.create(fn, stride, padding, dilation, groups, layout=layout)
    spec, unbatched = bind_shapes(options, input_shape, weight_shape)
    return spec.output_shape[1:] if unbatched else spec.output_shape


def conv_matrix(
    input_shape: Sequence[int],
    w: npt.ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    layout: str = "NCHW",
    sparse: bool = True,
) -> scipy.sparse.csr_array | np.ndarray:
    """The matrix ``M`` of a convolution: ``x.reshape(N, -1) @ M == conv(x, w).reshape(N, -1)``.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of ``x``, with or without the batch axis (``M`` is the same for every
        sample).
    w : array_like
        Filters, as for :func:`conv`.
    stride, padding, dilation, groups, layout
        As for :func:`conv` (zero padding only: padding is folded into ``M``).
    sparse : bool
        Return a ``scipy.sparse.csr_array`` (default) or a dense ndarray.

    Returns
    -------
    scipy.sparse.csr_array or ndarray
        ``(C * prod(in), O * prod(out))``: rows follow one sample of ``x`` flattened in
        ``layout`` order, columns one sample of the result.  Column ``j`` is the filter
        placed at output element ``j``.  Sparse float16 filters are stored as float32
        (scipy.sparse has no float16).

    Notes
    -----
    ``M`` has ``O * C/G * prod(kernel) * prod(out)`` nonzeros at most (fewer where taps
    fall into the padding); the largest column L1 norm times the largest input magnitude
    bounds every output, which is what an integer accumulator must hold.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, -1.0]]]])
    >>> m = npconv.conv_matrix(x.shape, w)
    >>> m.shape
    (9, 6)
    >>> np.array_equal(x.reshape(1, -1) @ m, npconv.conv(x, w).reshape(1, -1))
    True
    """
    fn = "conv_matrix"
    w = as_array(fn, "w", w)
    options = ConvOptions.create(fn, stride, padding, dilation, groups, layout=layout)
    spec, _ = bind_shapes(options, input_shape, w.shape)
    return matrix.build(spec, canonical_weight(w, spec), sparse=sparse)
