"""ONNX convolution operators computed by npconv, as ``onnx.reference`` op classes.

Each class subclasses the operator of ``onnx.reference.ops`` with the same name (the
evaluator matches ``new_ops`` by class name), so it serves every opset version the
reference knows; shapes npconv does not cover (more than 3 spatial dims, dtypes NumPy
cannot compute in such as bfloat16) fall back to the reference implementation.

``Relu`` and ``Add`` are the reference's operators with one change: the evaluator may
let them write their result over an input that no other node reads (a memory plan like
onnxruntime's, see :class:`npconv.onnx.Evaluator`), which saves a fresh array per node.

Attributes follow the ONNX operator spec: ``pads`` is ``[x1_begin, x2_begin, ...,
x1_end, x2_end, ...]``; ``auto_pad`` SAME_UPPER / SAME_LOWER make the output
``ceil(in / stride)`` (ConvTranspose: ``in * stride``), the odd pad going to the end /
the beginning; VALID means no padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx.reference.op_run import OpRun
from onnx.reference.ops import (
    op_add,
    op_conv,
    op_conv_integer,
    op_conv_transpose,
    op_max_pool,
    op_qlinear_conv,
    op_relu,
)

from .._api import _conv
from .._spec import ConvSpec
from .._transpose import _conv_transpose
from .._windows import windows_channels_first
from ..compat import _onnx_conv_arguments, _onnx_transpose_window
from ..quant import quantized_conv

__all__ = [
    "FRESH",
    "OPS",
    "Add",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "MaxPool",
    "QLinearConv",
    "Relu",
]


def _npconv_can_run(*arrays: np.ndarray, nd: int) -> bool:
    """Whether npconv covers this rank and these dtypes (else the reference runs)."""
    return nd in (1, 2, 3) and all(a.dtype.kind in "biuf" for a in arrays)


class Conv(op_conv.Conv):
    """ONNX ``Conv`` (opsets 1, 11, 22): ``Y = conv(X, W) + B``, in X's dtype."""

    def _run(self, X, W, B=None, **attributes):  # type: ignore[no-untyped-def]
        if not _npconv_can_run(X, W, nd=W.ndim - 2):
            return super()._run(X, W, B, **attributes)
        kwargs = _onnx_conv_arguments("onnx Conv", W.shape[2:], **attributes)
        y = _conv("onnx Conv", X, W, B, **kwargs)
        return (y.astype(X.dtype, copy=False),)


class ConvInteger(op_conv_integer.ConvInteger):
    """ONNX ``ConvInteger`` (opset 10): int32 ``conv(x - x_zero_point, w - w_zero_point)``.

    Accumulated exactly in int64 by :func:`npconv.quant.quantized_conv`; the spec lets an
    accumulation overflow only in 32 bits, which the final cast to int32 reproduces
    (wrap-around).  ``w_zero_point`` may hold one value per output channel.
    """

    def _run(self, x, w, x_zero_point=None, w_zero_point=None, **attributes):  # type: ignore[no-untyped-def]
        if w.ndim - 2 not in (1, 2, 3):
            return super()._run(x, w, x_zero_point, w_zero_point, **attributes)
        zero_points = _zero_points(x_zero_point, w_zero_point)
        kwargs = _onnx_conv_arguments("onnx ConvInteger", w.shape[2:], **attributes)
        return (quantized_conv(x, w, **zero_points, **kwargs).astype(np.int32),)


def _zero_points(x_zero_point: Any, w_zero_point: Any) -> dict[str, Any]:
    """The zero points given (an omitted optional input is 0)."""
    return {
        "x_zero_point": 0 if x_zero_point is None else x_zero_point,
        "w_zero_point": 0 if w_zero_point is None else w_zero_point,
    }


class QLinearConv(op_qlinear_conv.QLinearConv):
    """ONNX ``QLinearConv`` (opset 10): a quantized convolution, requantized to y's type.

    ``acc = conv(x - x_zp, w - w_zp) + B`` exactly in int64, then
    ``y = saturate(round_half_even(acc * (x_scale * w_scale / y_scale)) + y_zp)``, the
    ratio formed in the scales' float32 (:func:`npconv.quant.quantized_conv`).
    ``w_scale`` and ``w_zero_point`` may hold one value per output channel.
    """

    def _run(  # type: ignore[no-untyped-def]
        self,
        x,
        x_scale,
        x_zero_point,
        w,
        w_scale,
        w_zero_point,
        y_scale,
        y_zero_point,
        B=None,
        **attributes,
    ):
        if w.ndim - 2 not in (1, 2, 3):
            return super()._run(
                x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B,
                **attributes,
            )  # fmt: skip
        y = quantized_conv(
            x,
            w,
            B,
            **_zero_points(x_zero_point, w_zero_point),
            x_scale=x_scale,
            w_scale=w_scale,
            y_scale=y_scale,
            y_zero_point=y_zero_point,
            **_onnx_conv_arguments("onnx QLinearConv", w.shape[2:], **attributes),
        )
        return (y,)


class ConvTranspose(op_conv_transpose.ConvTranspose):
    """ONNX ``ConvTranspose`` (opsets 1, 11, 22): the adjoint of Conv, in X's dtype.

    :func:`npconv.conv_transpose` computes the unpadded output; the window that the pads
    (given, or derived from ``output_shape`` or SAME by the spec's equations) select is
    cut from it.
    """

    def _run(self, X, W, B=None, group=None, **attributes):  # type: ignore[no-untyped-def]
        nd = W.ndim - 2
        if not _npconv_can_run(X, W, nd=nd):
            return super()._run(X, W, B, group=group, **attributes)
        op = "onnx ConvTranspose"
        window = _onnx_transpose_window(op, X.shape[2:], W.shape[2:], **attributes)
        y = _conv_transpose(
            op,
            X,
            W,
            B,
            stride=attributes["strides"] or 1,
            dilation=attributes["dilations"] or 1,
            groups=1 if group is None else group,
        )  # (N, M, *unpadded)
        result = np.empty((*y.shape[:2], *(n for _, n in window)), dtype=X.dtype)
        result[...] = 0 if B is None else B.reshape((-1,) + (1,) * nd)  # what lies past y
        dst, src = [slice(None)] * 2, [slice(None)] * 2
        for m, (begin, n) in zip(y.shape[2:], window):
            kept = max(min(n, m - begin), 0)
            dst.append(slice(0, kept))
            src.append(slice(begin, begin + kept))
        result[tuple(dst)] = y[tuple(src)]  # (N, M, *out)
        return (result,)


class MaxPool(op_max_pool.MaxPool):
    """ONNX ``MaxPool``: the maximum over npconv's strided windows of the padded input.

    Pads hold ``-inf`` (the dtype's minimum for integers), so they never win.  The spec's
    geometry (pads, SAME, strides, dilations) is that of a depthwise convolution, whose
    :class:`~npconv.ConvSpec` gives it.  ``ceil_mode=1``, a requested ``Indices`` output,
    more than 3 spatial dims or non-numeric dtypes fall back to the reference.
    """

    def _run(self, x, kernel_shape=None, ceil_mode=None, storage_order=None, **attributes):  # type: ignore[no-untyped-def]
        nd = x.ndim - 2
        wants_indices = len(self.onnx_node.output) > 1 and self.onnx_node.output[1]
        if ceil_mode or wants_indices or not _npconv_can_run(x, nd=nd) or x.dtype.kind == "b":
            return super()._run(
                x, kernel_shape=kernel_shape, ceil_mode=ceil_mode, storage_order=storage_order,
                **attributes,
            )  # fmt: skip
        channels = x.shape[1]
        kwargs = _onnx_conv_arguments("onnx MaxPool", tuple(kernel_shape), **attributes)
        kwargs["groups"] = channels  # one window per channel: a depthwise geometry
        spec = ConvSpec.build(x.shape, (channels, 1, *kernel_shape), fn="onnx MaxPool", **kwargs)
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xp = np.pad(x, [(0, 0), (0, 0), *spec.pads], constant_values=lowest)
        patches = windows_channels_first(xp, spec)  # (N, C, *kernel, *out)
        every = (slice(None), slice(None))  # the N and C axes
        offsets = [every + offset for offset in np.ndindex(*kernel_shape)]
        y = patches[offsets[0]].copy()  # (N, C, *out)
        for offset in offsets[1:]:  # one pass over the output per kernel offset
            np.maximum(y, patches[offset], out=y)
        return (y,)


class Relu(op_relu.Relu):
    """ONNX ``Relu``: ``max(x, 0)`` in x's dtype (NaN stays NaN).

    ``overwrite`` (set by the evaluator) lets it write the result over ``x``.
    """

    overwrite = False

    def _run(self, x):  # type: ignore[no-untyped-def]
        out = x if self.overwrite and x.flags.writeable else None
        if not (x.flags.c_contiguous and x.size):
            return (np.maximum(x, x.dtype.type(0), out=out),)
        # NumPy vectorizes maximum(array, array) but not maximum(array, scalar): compare
        # rows of at least 1024 values (trailing axes) with one row of zeros, 2-4x faster
        length = 1
        for n in reversed(x.shape):
            length *= n
            if length >= 1024:
                break
        rows = x.reshape(-1, length)
        zeros = np.zeros(length, x.dtype)
        y = np.maximum(rows, zeros, out=None if out is None else out.reshape(rows.shape))
        return (y.reshape(x.shape),)


class Add(op_add.Add):
    """ONNX ``Add`` with NumPy broadcasting.

    ``overwrite`` (set by the evaluator) names the inputs it may write the sum over; one
    is used when it already has the result's shape.
    """

    overwrite: tuple[int, ...] = ()

    def _run(self, a, b):  # type: ignore[no-untyped-def]
        for i in self.overwrite:
            target = (a, b)[i]
            if target.flags.writeable and target.shape == np.broadcast_shapes(a.shape, b.shape):
                return (np.add(a, b, out=target),)
        return super()._run(a, b)


OPS: tuple[type, ...] = (Conv, ConvTranspose, ConvInteger, QLinearConv, MaxPool, Relu, Add)
#: Operators whose output is an array of their own (never a view of an input that another
#: node still reads), so a single consumer may overwrite it.
FRESH: tuple[type[OpRun], ...] = (Conv, ConvTranspose, MaxPool, Relu, Add)
