"""Linear quantization and the integer convolution of quantized tensors (ONNX semantics).

``quantize`` maps reals to integers ``q = saturate(round(a / scale) + zero_point)``
(ONNX QuantizeLinear, ties to even), ``dequantize`` maps back ``(q - zero_point) * scale``
(DequantizeLinear), and :func:`quantized_conv` is ONNX ConvInteger (the exact integer
accumulators) or, given the three scales, QLinearConv (requantized to the output type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._dispatch import convolve
from .._operands import as_array
from .._spec import ConvOptions
from ._bounds import integer_range

__all__ = ["SCHEMES", "dequantize", "quantize", "quantized_conv"]

SCHEMES = ("symmetric", "affine")


def _int_dtype(bits: int, signed: bool) -> np.dtype:
    """The narrowest NumPy integer type that holds a ``bits``-wide integer."""
    for size in (8, 16, 32, 64):
        if bits <= size:
            return np.dtype(f"{'int' if signed else 'uint'}{size}")
    raise ValueError(f"quantize: bits must be at most 64, got {bits}")  # pragma: no cover


def _along(values: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """Per-channel ``values`` shaped to broadcast along ``axis`` of an ``ndim``-d array."""
    if axis is None or values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def quantize(
    a: npt.ArrayLike,
    bits: int,
    *,
    signed: bool = True,
    scheme: str = "symmetric",
    per_channel_axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize ``a`` to ``bits``-wide integers: ``q = saturate(round(a / scale) + zero_point)``.

    Parameters
    ----------
    a : array_like of float
        Values to quantize; never modified.
    bits : int
        Width of ``q``, 2 to 32.
    signed : bool
        Two's-complement ``q`` (default) or unsigned.
    scheme : {"symmetric", "affine"}
        ``"symmetric"``: ``scale = max|a| / (2**(bits-1) - 1)`` and the zero point in
        the middle of the range (0 when signed, ``2**(bits-1)`` when unsigned), so
        ``-a`` quantizes to the mirror of ``a``.  ``"affine"``: the range
        ``[min(a, 0), max(a, 0)]`` is mapped onto the whole integer range (ONNX
        DynamicQuantizeLinear), the zero point rounded and saturated.
    per_channel_axis : int, optional
        One scale and zero point per index along this axis (e.g. 0 for the output
        channels of a weight) instead of one for the tensor.

    Returns
    -------
    q : ndarray
        The narrowest NumPy integer type that holds ``bits`` bits (``int8`` for 2..8
        signed bits), shaped as ``a``.
    scale : ndarray
        Float32 for float32 (and float16) ``a``, float64 otherwise; 0-d, or 1-d along
        ``per_channel_axis``.  A tensor (or channel) of zeros gets scale 1.
    zero_point : ndarray
        Of ``q``'s dtype, shaped as ``scale``.

    Raises
    ------
    ValueError
        ``bits`` outside 2..32, an unknown scheme, an axis out of range, non-finite
        values.
    TypeError
        Non-numeric or complex ``a``.

    Notes
    -----
    The division ``a / scale`` is done in ``scale``'s dtype and rounded half to even,
    as ONNX QuantizeLinear does; the error of ``dequantize(quantize(a))`` is at most
    ``scale / 2`` inside the range.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.quant import quantize, dequantize
    >>> q, scale, zero = quantize(np.array([-1.0, 0.0, 0.5, 1.0]), 4)
    >>> q, float(scale), int(zero)
    (array([-7,  0,  4,  7], dtype=int8), 0.14285714285714285, 0)
    >>> q, scale, zero = quantize(np.array([0.0, 1.0, 3.0]), 2, signed=False, scheme="affine")
    >>> q, float(scale), int(zero), dequantize(q, scale, zero)
    (array([0, 1, 3], dtype=uint8), 1.0, 0, array([0., 1., 3.]))
    """
    fn = "quantize"
    a = as_array(fn, "a", a)
    if a.dtype.kind == "c":
        raise TypeError(f"{fn}: a must be real, got dtype {a.dtype}")
    if scheme not in SCHEMES:
        raise ValueError(f"{fn}: scheme must be one of {SCHEMES}, got {scheme!r}")
    q_lo, q_hi = integer_range(bits, signed, fn=fn)
    if not 2 <= bits <= 32:
        raise ValueError(f"{fn}: bits must be between 2 and 32, got {bits}")
    if not np.isfinite(a).all():
        raise ValueError(f"{fn}: a must be finite, it holds inf or nan")
    float_type = np.float32 if a.dtype in (np.float16, np.float32) else np.float64
    values = a.astype(float_type)
    axes: tuple[int, ...] | None = None
    if per_channel_axis is not None:
        if not -a.ndim <= per_channel_axis < a.ndim:
            raise ValueError(
                f"{fn}: per_channel_axis={per_channel_axis} is out of range for a of "
                f"shape {a.shape}"
            )
        per_channel_axis %= a.ndim
        axes = tuple(i for i in range(a.ndim) if i != per_channel_axis)

    if scheme == "symmetric":
        half = 2 ** (bits - 1)
        scale = np.abs(values).max(axis=axes, initial=0) / float_type(half - 1)
        zero = np.full(scale.shape, 0 if signed else half, dtype=np.int64)
    else:
        low = np.minimum(values.min(axis=axes, initial=0), 0)
        high = np.maximum(values.max(axis=axes, initial=0), 0)
        scale = (high - low) / float_type(q_hi - q_lo)
        safe = np.where(scale == 0, 1, scale)
        zero = np.clip(np.rint(q_lo - low / safe), q_lo, q_hi).astype(np.int64)
    scale = np.where(scale == 0, float_type(1), scale).astype(float_type)
    q_type = _int_dtype(bits, signed)
    along = per_channel_axis
    q = np.rint(values / _along(scale, along, a.ndim)) + _along(zero, along, a.ndim)
    q = np.clip(q, q_lo, q_hi).astype(q_type)
    return q, scale, zero.astype(q_type)


def dequantize(
    q: npt.ArrayLike,
    scale: npt.ArrayLike,
    zero_point: npt.ArrayLike = 0,
    *,
    axis: int | None = None,
) -> np.ndarray:
    """Real values of quantized integers: ``(q - zero_point) * scale`` (ONNX DequantizeLinear).

    Parameters
    ----------
    q : array_like of int
        Quantized values.
    scale, zero_point : array_like
        Scalars, or 1-d arrays (one per index along ``axis``).
    axis : int, optional
        The axis of per-channel ``scale`` and ``zero_point``.

    Returns
    -------
    ndarray
        Of ``scale``'s float dtype, shaped as ``q``.

    Raises
    ------
    ValueError
        Per-channel parameters without ``axis``, or of the wrong length.
    TypeError
        Non-integer ``q``.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.quant import dequantize
    >>> dequantize(np.array([[0, 2], [4, 6]]), np.array([0.5, 2.0]), np.array([0, 1]), axis=0)
    array([[ 0.,  1.],
           [ 6., 10.]])
    """
    fn = "dequantize"
    q = as_array(fn, "q", q)
    if q.dtype.kind not in "biu":
        raise TypeError(f"{fn}: q must hold integers, got dtype {q.dtype}")
    scale = np.asarray(scale)
    scale = scale if scale.dtype.kind == "f" else scale.astype(np.float64)
    zero = np.asarray(zero_point, dtype=np.int64)
    for name, v in (("scale", scale), ("zero_point", zero)):
        if v.ndim > 0 and (axis is None or v.shape != (q.shape[axis],)):
            raise ValueError(
                f"{fn}: {name} of shape {v.shape} needs axis= and one value per index along "
                f"it (q has shape {q.shape}, axis={axis})"
            )
    diff = q.astype(np.int64) - _along(zero, axis, q.ndim)
    return diff.astype(scale.dtype) * _along(scale, axis, q.ndim)


def quantized_conv(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    x_zero_point: npt.ArrayLike = 0,
    w_zero_point: npt.ArrayLike = 0,
    x_scale: npt.ArrayLike | None = None,
    w_scale: npt.ArrayLike | None = None,
    y_scale: npt.ArrayLike | None = None,
    y_zero_point: npt.ArrayLike | None = None,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    layout: str = "NCHW",
) -> np.ndarray:
    """Convolution of quantized tensors: ONNX ConvInteger, or QLinearConv given the scales.

    Parameters
    ----------
    x, w : array_like of int
        Quantized input and filters, shaped as for :func:`npconv.conv`.
    bias : array_like of int, optional
        ``(O,)`` added to the accumulators (QLinearConv's ``B``, quantized with scale
        ``x_scale * w_scale`` and zero point 0).
    x_zero_point : int
        The input's zero point (one for the tensor).
    w_zero_point : int or array_like
        The filters' zero point, one for the tensor or one per output channel.
    x_scale, w_scale, y_scale : float or array_like, optional
        Give all three to requantize (QLinearConv); ``w_scale`` may be per output
        channel.  Without them the result is the accumulators (ConvInteger).
    y_zero_point : int, optional
        The output's zero point; its NumPy integer type (default: ``x``'s) is the
        output type, whose range the result saturates to.
    stride, padding, dilation, groups, layout
        As for :func:`npconv.conv` (the padding holds real zeros, i.e. the zero point).

    Returns
    -------
    ndarray
        ConvInteger: exact ``int64`` accumulators
        ``conv(x - x_zero_point, w - w_zero_point) + bias`` (ONNX specifies int32, which
        they equal whenever int32 does not overflow).  QLinearConv: of ``y_zero_point``'s
        type, ``saturate(round(acc * (x_scale * w_scale / y_scale)) + y_zero_point)``
        with the scale ratio in the scales' float type and ties rounded to even.

    Raises
    ------
    ValueError
        Only some of the three scales; a per-channel zero point or scale of the wrong
        length; the errors of :func:`npconv.conv`.
    TypeError
        Non-integer ``x``, ``w`` or ``bias``.

    Notes
    -----
    The accumulators use the standard split of the zero-point terms::

        conv(x - zx, w - zw) = conv(x, w) - zw * conv(x, 1) - zx * conv(1, w - zw)

    The first term is the only product of data and weights; ``conv(x, 1)`` is a window
    sum of the input; ``conv(1, w - zw)`` (an all-ones input) depends only on the
    weights and the shape (a constant of the layer) and holds the edge effects of the
    zero padding.

    Examples
    --------
    >>> import numpy as np
    >>> from npconv.quant import quantized_conv
    >>> x = np.array([[[10, 12, 14]]], dtype=np.uint8)  # zero point 10
    >>> w = np.array([[[1, 2]]], dtype=np.int8)
    >>> quantized_conv(x, w, x_zero_point=10, padding=1)  # conv([0, 2, 4], [1, 2])
    array([[[ 0,  4, 10,  4]]])
    >>> quantized_conv(x, w, x_zero_point=10, padding=1, x_scale=0.5, w_scale=1.0,
    ...                y_scale=1.0, y_zero_point=np.uint8(100))
    array([[[100, 102, 105, 102]]], dtype=uint8)
    """
    fn = "quantized_conv"
    x, w = as_array(fn, "x", x), as_array(fn, "w", w)
    for name, v in (("x", x), ("w", w)):
        if v.dtype.kind not in "biu":
            raise TypeError(f"{fn}: {name} must hold integers, got dtype {v.dtype}")
    options = ConvOptions.create(
        fn, stride=stride, padding=padding, dilation=dilation, groups=groups, layout=layout
    )
    out_axis = 0 if layout == "NCHW" else -1
    channels = w.shape[out_axis] if w.ndim else 0
    zx = int(np.asarray(x_zero_point))
    zw = _per_channel(fn, "w_zero_point", w_zero_point, channels).astype(np.int64)
    x64, w64 = x.astype(np.int64), w.astype(np.int64)
    w_shift = w64 - _along(zw, out_axis % max(w.ndim, 1), w.ndim)  # w - zw
    ones_x = np.ones((1, *x.shape[1:]) if x.ndim == w.ndim else x.shape, dtype=np.int64)

    y = convolve(options, x64, w64, bias)  # conv(x, w) (+ bias): (N, O, *out)
    channel_axis = 1 if layout == "NCHW" else -1
    if zw.any():
        y -= _along(zw, channel_axis % y.ndim, y.ndim) * convolve(options, x64, np.ones_like(w64))
    if zx:
        y -= zx * convolve(options, ones_x, w_shift)

    scales = (x_scale, w_scale, y_scale)
    if all(s is None for s in scales):
        return y
    if any(s is None for s in scales):
        raise ValueError(f"{fn}: give all of x_scale, w_scale and y_scale (QLinearConv) or none")
    sx, sy = np.asarray(x_scale), np.asarray(y_scale)
    sw = _per_channel(fn, "w_scale", w_scale, channels)
    ratio = sx * sw / sy  # in the scales' float type
    out_type = np.asarray(y_zero_point if y_zero_point is not None else x.dtype.type(0)).dtype
    zy = int(np.asarray(y_zero_point if y_zero_point is not None else 0))
    info = np.iinfo(out_type)
    real = y * _along(np.asarray(ratio), channel_axis % y.ndim, y.ndim) + zy
    return np.clip(np.rint(real), info.min, info.max).astype(out_type)


def _per_channel(fn: str, name: str, value: Any, channels: int) -> np.ndarray:
    """A scalar or ``(channels,)`` parameter, checked."""
    v = np.asarray(value)
    if v.ndim > 1 or (v.ndim == 1 and v.shape != (channels,)):
        raise ValueError(
            f"{fn}: {name} must be a scalar or have one value per output channel "
            f"({channels},), got shape {v.shape}"
        )
    return v
