"""Public convolution functions: validate once, canonicalise, dispatch to an algorithm."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse

from ._spec import ConvSpec, IntOrTuple, PaddingArg
from ._windows import canonical_input, canonical_weight, sample_blocks
from .algorithms import REGISTRY, get_algorithm, matrix

__all__ = [
    "algorithms",
    "as_array",
    "checked_bias",
    "compute_dtypes",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_matrix",
    "conv_output_shape",
    "integer_compute_dtype",
]

_LARGEST_EXACT_INT = 2**62  # conservative int64 accumulator limit (float64 estimate below)


def algorithms() -> list[str]:
    """Names accepted by ``algorithm=`` (besides ``"auto"``), in registry order.

    Examples
    --------
    >>> import npconv
    >>> npconv.algorithms()[:5]
    ['naive', 'shifted', 'im2col', 'einsum', 'matrix']
    """
    return list(REGISTRY)


def as_array(fn: str, name: str, value: Any) -> np.ndarray:
    """``value`` as an ndarray of a numeric dtype, or a TypeError naming ``name``."""
    a = np.asarray(value)
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
    result = np.result_type(*arrays)
    if result.kind in "biu":
        if any(a.dtype == np.uint64 for a in arrays):
            raise TypeError(
                f"{fn}: uint64 operands cannot be accumulated exactly in int64; "
                "cast them to int64 (or float64) first"
            )
        return np.dtype(np.int64), np.dtype(np.int64)
    if result == np.float16:
        return np.dtype(np.float32), result
    return result, result


def integer_compute_dtype(
    fn: str,
    x: np.ndarray,
    filters: np.ndarray,
    offset: float = 0.0,
    what: str = "partial sums",
    python_ints: bool = False,
) -> np.dtype:
    """How to compute an integer convolution exactly: float64 BLAS, int64, Python ints.

    ``filters`` is ``(taps, channels)``: the values each output channel sums against
    ``x``.  Every partial sum is at most ``max|x| * max_channel sum|filter| + offset``
    (``offset``: a bias).  Below 2**53 every product and sum is an integer that float64
    holds exactly (the factor 1 + 1e-6 covers the rounding of this float estimate), so
    the BLAS result converts back exactly; below 2**62 int64 holds it; beyond that,
    Python ints (``object``) when ``python_ints``, otherwise a ValueError.
    """
    if x.size == 0 or filters.size == 0:
        return np.dtype(np.float64)
    x_max = max(-float(x.min()), float(x.max()))
    f_sum = float(np.abs(filters.astype(np.float64)).sum(axis=0).max())
    bound = (x_max * f_sum + offset) * (1 + 1e-6)
    if bound >= _LARGEST_EXACT_INT:
        if python_ints:
            return np.dtype(object)
        raise ValueError(
            f"{fn}: integer {what} could reach {bound:.3g} (max|x|={x_max:.3g} x largest "
            f"per-channel sum of |values|={f_sum:.3g}), beyond the int64 accumulator "
            "(2**62 kept as margin); cast to float64 for an approximate result"
        )
    return np.dtype(np.float64 if bound < 2**53 else np.int64)


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
    return _conv(
        "conv",
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        layout=layout,
        algorithm=algorithm,
    )


def _conv(
    fn: str,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    *,
    algorithm: str = "auto",
    **kwargs: Any,
) -> np.ndarray:
    """:func:`conv`, with ``fn`` (the public name) prefixed to every error message."""
    x = as_array(fn, "x", x)
    w = as_array(fn, "w", w)
    unbatched = x.ndim == w.ndim - 1
    if unbatched:
        x = x[None]
    spec = ConvSpec.build(x.shape, w.shape, fn=fn, **kwargs)
    b = checked_bias(fn, bias, spec.out_channels)
    operands = [x, w] if b is None else [x, w, b]
    compute, result = compute_dtypes(fn, *operands)
    exact_for = compute  # the algorithm must be exact for this dtype (int64 for integers)
    if compute.kind == "i":
        b_max = float(np.abs(b.astype(np.float64)).max(initial=0)) if b is not None else 0.0
        filters = canonical_weight(w, spec).reshape(-1, spec.out_channels)  # (taps, O)
        compute = integer_compute_dtype(fn, x, filters, b_max, python_ints=True)
        if compute.kind == "O":  # beyond int64: exact Python ints, returned as they are
            exact_for = result = compute
            algorithm = "im2col" if algorithm == "auto" else algorithm
    algo = get_algorithm(algorithm, spec, exact_for, fn)

    first = spec.layout == "NCHW" and algo.fn_channels_first is not None
    run = algo.fn_channels_first if first else algo.fn
    w = w.astype(compute, copy=False)
    wc = w if first else canonical_weight(w, spec)  # (O, C/G, *kernel) or (*kernel, C/G, O)
    b = None if b is None else b.astype(compute)
    fused = b is not None and algo.adds_bias  # the algorithm adds it in its products
    blocks = sample_blocks(spec, compute.itemsize)  # bounds the padded copy of the input
    y = np.empty(spec.output_shape if len(blocks) > 1 else 0, dtype=result)
    for block in blocks:
        n = len(range(spec.batch)[block])
        part = spec if n == spec.batch else replace(spec, batch=n)
        xp = canonical_input(x[block].astype(compute, copy=False), part, channels_last=not first)
        if fused:
            y_part = run(xp, wc, part, bias=b)  # type: ignore[call-arg,misc]
        else:
            y_part = run(xp, wc, part)  # type: ignore[misc]  # (n, O, *out) or (n, *out, O)
            if b is not None:  # y_part is a fresh array of the algorithm's
                y_part += b.reshape(-1, *(1,) * spec.nd) if first else b
        if spec.layout == "NCHW" and not first:
            y_part = np.moveaxis(y_part, -1, 1)  # (n, O, *out)
        if len(blocks) == 1:  # no copy when the algorithm wrote the result's layout
            y = np.ascontiguousarray(y_part, dtype=result)
        else:
            y[block] = y_part
        del xp, y_part  # free this block's temporaries before the next block's
    return y[0] if unbatched else y


def _conv_nd(nd: int) -> Any:
    def conv_nd(
        x: npt.ArrayLike,
        w: npt.ArrayLike,
        bias: npt.ArrayLike | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        name = f"conv{nd}d"
        w_arr = as_array(name, "w", w)
        if w_arr.ndim != nd + 2:
            raise ValueError(
                f"{name}: w must have {nd + 2} dims for a {nd}-d convolution, "
                f"got w.ndim={w_arr.ndim} with shape {w_arr.shape}"
            )
        return _conv(name, x, w_arr, bias, **kwargs)

    conv_nd.__name__ = conv_nd.__qualname__ = f"conv{nd}d"
    conv_nd.__signature__ = inspect.signature(conv)  # type: ignore[attr-defined]
    conv_nd.__doc__ = f"""{nd}-d convolution: :func:`conv` with ``w.ndim == {nd + 2}`` checked.

    Takes the same arguments as :func:`conv` and returns the same result.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 3{", 8" * nd}))
    >>> w = np.ones((4, 3{", 3" * nd}))
    >>> npconv.conv{nd}d(x, w, padding=1).shape
    (2, 4{", 8" * nd})
    """
    return conv_nd


conv1d = _conv_nd(1)
conv2d = _conv_nd(2)
conv3d = _conv_nd(3)


def _batched_spec(
    fn: str, input_shape: Sequence[int], weight_shape: Sequence[int], **kwargs: Any
) -> tuple[ConvSpec, bool]:
    """Spec for a shape given with or without its batch axis (and whether it had one)."""
    input_shape = tuple(input_shape)
    batched = len(input_shape) != len(weight_shape) - 1
    shape = input_shape if batched else (1, *input_shape)
    return ConvSpec.build(shape, weight_shape, fn=fn, **kwargs), batched


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
    spec, batched = _batched_spec(
        "conv_output_shape",
        input_shape,
        weight_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
    )
    return spec.output_shape if batched else spec.output_shape[1:]


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
    spec, _ = _batched_spec(
        fn,
        input_shape,
        w.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
    )
    return matrix.build(spec, canonical_weight(w, spec), sparse=sparse)
