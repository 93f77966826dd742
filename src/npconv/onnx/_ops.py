"""The ONNX operators of npconv's evaluator, as ``onnx.reference`` op classes.

Each class subclasses the operator of ``onnx.reference.ops`` with the same name (the
evaluator matches ``new_ops`` by class name), so it serves every opset version the
reference knows; shapes npconv does not cover (more than 3 spatial dims, dtypes NumPy
cannot compute in such as bfloat16) fall back to the reference implementation.

Besides the convolutions: ``MaxPool`` runs a compiled kernel (numba, the ``jit``
extra) for 1-d and 2-d windows, NumPy passes otherwise; ``AveragePool`` is a mean over
the same windows; ``BatchNormalization`` (inference) is one scale and one shift per
channel; ``Softmax`` and ``LogSoftmax`` follow each opset's axis semantics.  ``Relu``,
``Add``, ``Sum`` and ``BatchNormalization`` may write their result over an input that
no other node reads (a memory plan like onnxruntime's, see
:class:`npconv.onnx.Evaluator`), which saves a fresh array per node.

Attributes follow the ONNX operator spec: ``pads`` is ``[x1_begin, x2_begin, ...,
x1_end, x2_end, ...]``; ``auto_pad`` SAME_UPPER / SAME_LOWER make the output
``ceil(in / stride)`` (ConvTranspose: ``in * stride``), the odd pad going to the end /
the beginning; VALID means no padding.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx.reference.op_run import OpRun
from onnx.reference.ops import (
    op_add,
    op_average_pool,
    op_batch_normalization,
    op_conv,
    op_conv_integer,
    op_conv_transpose,
    op_log_softmax,
    op_max_pool,
    op_qlinear_conv,
    op_relu,
    op_softmax,
    op_sum,
)

from .._choose import candidates
from .._dispatch import convolve, run
from .._jit import kernel, maximum, unavailable
from .._operands import prepare
from .._spec import ConvOptions, ConvSpec
from .._threads import get_threads
from ..compat._onnx import conv_arguments, transpose_window
from ..quant import quantized_conv

__all__ = [
    "FRESH",
    "OPS",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "LogSoftmax",
    "MaxPool",
    "QLinearConv",
    "Relu",
    "Softmax",
    "Sum",
]


class _Direct(OpRun):
    """``run`` as ``_run`` with the node's attributes, gathered at its first call, without
    onnx's wrapper around it (its checks of a context and of linked attributes, its
    logging and its check of the results' types), which cost a Conv node 41 us a call in
    a loop (1x1 64->64 @4 with a bias and a ReLU: 138 us against 97 for ``_run``; onnx
    1.23).  A node with linked attributes or a context, or a result that is not an
    ndarray, goes through the wrapper as before."""

    def run(self, *args, linked_attributes=None, context=None, bindings=None):  # type: ignore[no-untyped-def]
        if linked_attributes is not None or context is not None or self.has_linked_attribute:
            extra = {} if bindings is None else {"bindings": bindings}
            return super().run(*args, linked_attributes=linked_attributes, context=context, **extra)
        attributes = self.__dict__.get("_attributes")
        if attributes is None:
            attributes = {name: getattr(self, name) for name in self.attributes_names_}
            self.__dict__["_attributes"] = attributes
        results = self._run(*args, **attributes)
        if type(results) is tuple and all(type(r) is np.ndarray for r in results):
            return results
        return self._check_and_fix_outputs(results)


def _npconv_can_run(*arrays: np.ndarray, nd: int) -> bool:
    """Whether npconv covers this rank and these dtypes (else the reference runs)."""
    return nd in (1, 2, 3) and all(a.dtype.kind in "biuf" for a in arrays)


class Timing:
    """A Conv node's candidate algorithms taken in turn, call by call, and the seconds
    each took (:meth:`npconv.onnx.Evaluator.tune`): each candidate's first call is a
    warm-up, not counted (it compiles kernels and keeps derived weights)."""

    def __init__(self, offset: int = 0) -> None:
        self.seconds: dict[str, list[float]] = {}  # by candidate, from the node's first call
        self.calls = 0
        self.offset = offset  # where in the turn this node starts
        self.weight: np.ndarray | None = None  # the node's weight, seen at its first call

    def next(self, options: ConvOptions, X: np.ndarray, W: np.ndarray, B: Any) -> str:
        """The algorithm of this call: the next candidate in turn."""
        if not self.seconds:
            problem = prepare(options, X, W, B)
            spec, dtype = problem.spec, problem.numerics.exact
            names = candidates(spec, dtype, get_threads(), TUNE_WITHIN, steady=True)
            self.seconds = {name: [] for name in names[:TUNE_MOST]}
            self.weight = W
        names = list(self.seconds)
        return names[(self.calls + self.offset) % len(names)]

    def record(self, name: str, seconds: float) -> None:
        """Count ``seconds`` for ``name`` unless the call was its warm-up."""
        if self.calls >= len(self.seconds):
            self.seconds[name].append(seconds)
        self.calls += 1

    def done(self, repeats: int) -> bool:
        """Whether every candidate has ``repeats`` counted calls (or the node never ran)."""
        return all(len(times) >= repeats for times in self.seconds.values())

    def medians(self) -> dict[str, float]:
        """Median seconds per candidate, fastest first."""
        medians = {name: statistics.median(times) for name, times in self.seconds.items() if times}
        return dict(sorted(medians.items(), key=lambda item: item[1]))


#: The candidates a Conv node times when its evaluator is tuned: the supported
#: algorithms whose estimate is within this factor of the cheapest's ...
TUNE_WITHIN = 2.0
#: ... at most this many, cheapest first.
TUNE_MOST = 4


class Conv(_Direct, op_conv.Conv):
    """ONNX ``Conv`` (opsets 1, 11, 22): ``Y = conv(X, W) + B``, in X's dtype.

    ``folded`` (set by the evaluator, which then feeds it ``X`` only) holds the weight and
    bias of a Conv with the BatchNormalization that followed it folded in; ``relu`` (set
    by the evaluator) applies the ``Relu`` that followed it, in the convolution's own
    passes over its result where the algorithm allows.  ``algorithm`` is the one it
    runs ("auto" unless :meth:`npconv.onnx.Evaluator.tune` measured another faster);
    while ``timing`` is set, it runs its candidates in turn and times them.
    """

    folded: tuple[np.ndarray, np.ndarray] | None = None
    relu = False
    algorithm = "auto"
    timing: Timing | None = None

    def _run(self, X, W=None, B=None, **attributes):  # type: ignore[no-untyped-def]
        if self.folded is not None:
            W, B = self.folded
        if not _npconv_can_run(X, W, nd=W.ndim - 2):
            (y,) = super()._run(X, W, B, **attributes)
            return (_relu(y) if self.relu else y,)
        options = self.__dict__.setdefault("_options", {})  # by kernel: the attributes are fixed
        kernel = W.shape[2:]
        if kernel not in options:
            kwargs = conv_arguments("onnx Conv", kernel, **attributes)
            options[kernel] = ConvOptions.create("onnx Conv", **kwargs)
        timing, algorithm = self.timing, self.algorithm
        if timing is not None:
            algorithm = timing.next(options[kernel], X, W, B)
            start = time.perf_counter()
        y = convolve(options[kernel], X, W, B, algorithm, relu=self.relu)
        if timing is not None:
            timing.record(algorithm, time.perf_counter() - start)
        return (y.astype(X.dtype, copy=False),)


class ConvInteger(_Direct, op_conv_integer.ConvInteger):
    """ONNX ``ConvInteger`` (opset 10): int32 ``conv(x - x_zero_point, w - w_zero_point)``.

    Accumulated exactly in int64 by :func:`npconv.quant.quantized_conv`; the spec lets an
    accumulation overflow only in 32 bits, which the final cast to int32 reproduces
    (wrap-around).  ``w_zero_point`` may hold one value per output channel.
    """

    def _run(self, x, w, x_zero_point=None, w_zero_point=None, **attributes):  # type: ignore[no-untyped-def]
        if w.ndim - 2 not in (1, 2, 3):
            return super()._run(x, w, x_zero_point, w_zero_point, **attributes)
        zero_points = _zero_points(x_zero_point, w_zero_point)
        kwargs = conv_arguments("onnx ConvInteger", w.shape[2:], **attributes)
        return (quantized_conv(x, w, **zero_points, **kwargs).astype(np.int32),)


def _zero_points(x_zero_point: Any, w_zero_point: Any) -> dict[str, Any]:
    """The zero points given (an omitted optional input is 0)."""
    return {
        "x_zero_point": 0 if x_zero_point is None else x_zero_point,
        "w_zero_point": 0 if w_zero_point is None else w_zero_point,
    }


class QLinearConv(_Direct, op_qlinear_conv.QLinearConv):
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
            **conv_arguments("onnx QLinearConv", w.shape[2:], **attributes),
        )
        return (y,)


def _check_output_shape(
    op: str, in_size: Any, kernel: Any, window: list[tuple[int, int]], attributes: Any
) -> None:
    """A ValueError for an ``output_shape`` that no Conv of the input's size has.

    As onnxruntime: the Conv of an output that long (no pads) must have the input's
    length, so at most ``stride * (in - 1) + (kernel - 1) * dilation + 1 + stride - 1``
    (``output_padding`` aside): past the unpadded output, positions that Conv never reads.
    """
    if attributes.get("output_shape") is None:
        return
    nd = len(kernel)
    strides = attributes.get("strides") or (1,) * nd
    dilations = attributes.get("dilations") or (1,) * nd
    for axis, (n, k, s, d, (_, out)) in enumerate(zip(in_size, kernel, strides, dilations, window)):
        largest = s * n + (k - 1) * d
        if out > largest:
            raise ValueError(
                f"{op}: output_shape={list(attributes['output_shape'])} is inconsistent with "
                f"the input: spatial axis {axis} of size {n} (stride {s}, kernel {k}, "
                f"dilation {d}) gives at most {largest}, not {out}"
            )


class ConvTranspose(_Direct, op_conv_transpose.ConvTranspose):
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
        window = transpose_window(op, X.shape[2:], W.shape[2:], **attributes)
        _check_output_shape(op, X.shape[2:], W.shape[2:], window, attributes)
        options = ConvOptions.create(
            op,
            stride=attributes["strides"] or 1,
            dilation=attributes["dilations"] or 1,
            groups=1 if group is None else group,
        )
        y = run(prepare(options, X, W, B, transposed=True))  # (N, M, *unpadded)
        result = np.empty((*y.shape[:2], *(n for _, n in window)), dtype=X.dtype)
        result[...] = 0 if B is None else B.reshape((-1,) + (1,) * nd)  # what lies past y
        dst, src = [slice(None)] * 2, [slice(None)] * 2
        for m, (begin, n) in zip(y.shape[2:], window):
            kept = max(min(n, m - begin), 0)
            dst.append(slice(0, kept))
            src.append(slice(begin, begin + kept))
        result[tuple(dst)] = y[tuple(src)]  # (N, M, *out)
        return (result,)


def _window_spec(op: str, x: np.ndarray, kernel_shape: Any, **attributes: Any) -> ConvSpec:
    """The windows of a pooling node over ``x`` (N, C, *spatial): the geometry (pads,
    SAME, strides, dilations) of a depthwise convolution, whose spec gives it."""
    channels = x.shape[1]
    kwargs = conv_arguments(op, tuple(kernel_shape), **attributes)
    kwargs["groups"] = channels  # one window per channel
    return ConvSpec.build(x.shape, (channels, 1, *kernel_shape), fn=op, **kwargs)


def _pooled(
    op: str, ufunc: np.ufunc, x: np.ndarray, kernel_shape: Any, pad_value: Any, **attributes: Any
) -> np.ndarray:
    """``ufunc`` folded over every window of ``x`` padded with ``pad_value``: ``(N, C, *out)``.

    A window's reduction is separable: one spatial axis at a time, that axis is padded
    and its kernel offsets' strided views are combined, one pass over the (partly
    reduced) result per offset (3x3/2 on 64 @112: 0.74 against 1.7 ms for the nine views
    of the whole window).
    """
    spec = _window_spec(op, x, kernel_shape, **attributes)
    y = x
    geometry = zip(spec.kernel, spec.stride, spec.dilation, spec.pads, spec.out_size)
    for axis, (k, stride, dilation, pads, size) in enumerate(geometry, start=2):
        width = [(0, 0)] * y.ndim
        width[axis] = pads
        padded = np.pad(y, width, constant_values=pad_value) if any(pads) else y
        index: list[slice] = [slice(None)] * y.ndim
        for offset in range(k):
            start = offset * dilation
            index[axis] = slice(start, start + (size - 1) * stride + 1, stride)
            view = padded[tuple(index)]
            if offset == 0:
                y = view.copy()
            else:
                ufunc(y, view, out=y)
    return y


@kernel
def _max_windows(x, top, left, stride, dilation, size, lowest, y):
    """``y[n, c, i, j]``, the maximum of ``x[n, c]`` (N, C, H, W) over the window of
    ``size`` taps ``dilation`` apart from ``(i * stride[0] - top, j * stride[1] - left)``;
    a tap outside the image holds ``lowest``, a NaN wins (as ``np.maximum``).

    One output row at a time: the maximum of its window's image rows, a vectorised
    pass along whole rows into a band bordered by ``lowest``, then the maximum of each
    window's columns of that band.  The maxima are LLVM's (:data:`npconv._jit.maximum`)
    and a column stride of 2 is written as a constant, so that both passes are
    vectorised (3x3/2 on 64 @112, one thread: 0.43-0.74 against 1.06-1.12 ms with a
    compare and select, and the stride a variable).
    """
    kh, kw = size[0], size[1]
    sh, sw, dh, dw = stride[0], stride[1], dilation[0], dilation[1]
    h, w = x.shape[2], x.shape[3]
    rows, cols = y.shape[2], y.shape[3]
    band = np.full(max(left + w, (cols - 1) * sw + (kw - 1) * dw + 1), lowest, x.dtype)
    inside = band[left : left + w]  # the band's columns in the image
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(rows):
                inside[:] = lowest
                for a in range(kh):
                    r = i * sh - top + a * dh
                    if 0 <= r < h:
                        src = x[n, c, r]
                        for q in range(w):
                            inside[q] = maximum(inside[q], src[q])
                dst = y[n, c, i]
                for j in range(cols):
                    dst[j] = band[j * sw]
                for b in range(1, kw):
                    taps = band[b * dw :]
                    if sw == 1:
                        for j in range(cols):
                            dst[j] = maximum(dst[j], taps[j])
                    elif sw == 2:
                        for j in range(cols):
                            dst[j] = maximum(dst[j], taps[2 * j])
                    else:
                        for j in range(cols):
                            dst[j] = maximum(dst[j], taps[j * sw])


#: The dtypes that :func:`_max_windows` computes in (numba has no float16).
COMPILED_POOL_DTYPES = frozenset(
    np.dtype(t) for t in ("float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                          "uint16", "uint32", "uint64")
)  # fmt: skip


def _max_pooled(x: np.ndarray, kernel_shape: Any, lowest: Any, **attributes: Any) -> np.ndarray:
    """MaxPool of a 1-d or 2-d ``x`` by the compiled :func:`_max_windows` (a 1-d one as
    a single row): ``(N, C, *out)``.  3x3/2 on 64 @112: 0.43-0.74 against 0.98-1.33 ms
    by :func:`_pooled` (one thread)."""
    spec = _window_spec("onnx MaxPool", x, kernel_shape, **attributes)
    lead = (1,) * (2 - spec.nd)  # a 1-d pooling is a 2-d one of a single row
    y = np.empty((*x.shape[:2], *spec.out_size), x.dtype)
    geometry = [np.array(lead + v, np.int64) for v in (spec.stride, spec.dilation, spec.kernel)]
    top, left = ((0,) * len(lead) + tuple(lo for lo, _ in spec.pads))[-2:]
    image = np.ascontiguousarray(x).reshape(*x.shape[:2], *lead, *x.shape[2:])
    out = y.reshape(*y.shape[:2], *lead, *spec.out_size)
    _max_windows(image, top, left, *geometry, x.dtype.type(lowest), out)
    return y


class MaxPool(_Direct, op_max_pool.MaxPool):
    """ONNX ``MaxPool``: the maximum over npconv's strided windows of the padded input.

    Pads hold ``-inf`` (the dtype's minimum for integers), so they never win.  1-d and
    2-d ones run a compiled kernel where numba is installed (:func:`_max_windows`),
    others the NumPy passes of :func:`_pooled`.  ``ceil_mode=1``, a requested
    ``Indices`` output, more than 3 spatial dims or non-numeric dtypes fall back to the
    reference.
    """

    def _run(self, x, kernel_shape=None, ceil_mode=None, storage_order=None, **attributes):  # type: ignore[no-untyped-def]
        wants_indices = len(self.onnx_node.output) > 1 and self.onnx_node.output[1]
        numeric = _npconv_can_run(x, nd=x.ndim - 2) and x.dtype.kind != "b"
        if ceil_mode or wants_indices or not numeric:
            return super()._run(
                x, kernel_shape=kernel_shape, ceil_mode=ceil_mode, storage_order=storage_order,
                **attributes,
            )  # fmt: skip
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        if x.ndim <= 4 and x.dtype in COMPILED_POOL_DTYPES and unavailable() is None:
            return (_max_pooled(x, kernel_shape, lowest, **attributes),)
        return (_pooled("onnx MaxPool", np.maximum, x, kernel_shape, lowest, **attributes),)


class AveragePool(_Direct, op_average_pool.AveragePool_19):
    """ONNX ``AveragePool`` (every opset): the mean over the windows of the padded input.

    With ``count_include_pad=0`` (the default) each window's sum is divided by the
    number of its elements inside the input, else by the kernel size.  ``ceil_mode=1``,
    more than 3 spatial dims or non-float dtypes fall back to the reference.
    """

    def _run(self, x, ceil_mode=None, count_include_pad=None, **attributes):  # type: ignore[no-untyped-def]
        if ceil_mode or x.dtype.kind != "f" or not _npconv_can_run(x, nd=x.ndim - 2):
            return super()._run(
                x, ceil_mode=ceil_mode, count_include_pad=count_include_pad, **attributes
            )
        kernel = attributes.pop("kernel_shape")
        total = _pooled("onnx AveragePool", np.add, x, kernel, 0, **attributes)
        if count_include_pad:
            count: Any = math.prod(kernel)
        else:  # the inside elements of every window: the same pooling of a ones image
            ones = np.ones((1, 1, *x.shape[2:]), x.dtype)
            count = _pooled("onnx AveragePool", np.add, ones, kernel, 0, **attributes)
        with np.errstate(invalid="ignore"):  # a window wholly in the pads: 0 / 0 = NaN
            np.divide(total, count, out=total)
        return (total,)


#: Values per row that :class:`Relu` compares with one row of zeros: NumPy vectorizes
#: ``maximum(array, array)`` but not ``maximum(array, scalar)``, and long rows beat
#: short ones (a 3 MiB activation: 0.08 ms in rows of 16384, 0.14 in rows of 3136).
RELU_ROW = 16384
_ZEROS: dict[np.dtype, np.ndarray] = {}  # a read-only row of RELU_ROW zeros per dtype


def _relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``max(x, 0)`` in x's dtype (NaN stays NaN), into ``out`` (``x`` itself may be it).

    A contiguous ``x`` is compared in rows of :data:`RELU_ROW` with a row of zeros."""
    if not x.flags.c_contiguous:
        return np.maximum(x, x.dtype.type(0), out=out)
    zeros = _ZEROS.get(x.dtype)
    if zeros is None:
        zeros = _ZEROS[x.dtype] = np.zeros(RELU_ROW, x.dtype)
        zeros.flags.writeable = False
    y = np.empty_like(x) if out is None else out
    src, dst = x.reshape(-1), y.reshape(-1)
    whole = src.size - src.size % RELU_ROW  # in rows, then the rest
    rows = (-1, RELU_ROW)
    np.maximum(src[:whole].reshape(rows), zeros, out=dst[:whole].reshape(rows))
    np.maximum(src[whole:], zeros[: src.size - whole], out=dst[whole:])
    return y


class Relu(_Direct, op_relu.Relu):
    """ONNX ``Relu``: ``max(x, 0)`` in x's dtype (NaN stays NaN).

    ``overwrite`` (set by the evaluator) lets it write the result over ``x``.
    """

    overwrite = False

    def _run(self, x):  # type: ignore[no-untyped-def]
        return (_relu(x, out=x if self.overwrite and x.flags.writeable else None),)


def _sum_in_place(
    args: tuple[np.ndarray, ...], overwrite: tuple[int, ...], relu: bool = False
) -> np.ndarray | None:
    """The sum of ``args`` (where ``relu``, its ``max(., 0)``) written over the first of
    ``overwrite`` that can hold it (the result's shape and dtype, writeable); None when
    none can."""
    shape = np.broadcast_shapes(*(a.shape for a in args))
    dtype = np.result_type(*args)
    for i in overwrite:
        target = args[i]
        if target.flags.writeable and target.shape == shape and target.dtype == dtype:
            others = [other for j, other in enumerate(args) if j != i]
            if relu and _fused_add_relu(target, others):
                _add_relu(target.reshape(-1), others[0].reshape(-1))
                return target
            for other in others:
                np.add(target, other, out=target)
            return _relu(target, out=target) if relu else target
    return None


def _fused_add_relu(target: np.ndarray, others: list[np.ndarray]) -> bool:
    """Whether :func:`_add_relu` adds ``others`` (one array) to ``target`` and applies the
    ReLU: contiguous float arrays of one shape, where numba is installed."""
    if unavailable() is not None or len(others) != 1 or target.dtype.kind != "f":
        return False
    other = others[0]
    contiguous = target.flags.c_contiguous and other.flags.c_contiguous
    return contiguous and other.shape == target.shape and other.dtype == target.dtype


@kernel
def _add_relu(y, x):
    """``y = max(y + x, 0)`` in place (NaN stays NaN), for 1-d ``y`` and ``x`` of one
    length: an ``Add`` and the ``Relu`` after it in one pass (NumPy's ``add`` then
    ``maximum``, 0.34 against 0.22 ms on a ResNet-50 block's 256x56x56 float32 sum)."""
    for i in range(len(y)):
        v = y[i] + x[i]
        y[i] = 0 if v < 0 else v  # NaN < 0 is false: NaN stays


def _summed(
    op: Add | Sum, args: tuple[Any, ...], reference: Callable[..., Any]
) -> tuple[np.ndarray]:
    """The sum of ``args`` for ``op`` (:class:`Add` or :class:`Sum`): over one of its
    ``overwrite`` inputs where one can hold it, else by onnx's ``reference``; then its
    ``relu``, written over the fresh sum."""
    y = _sum_in_place(args, op.overwrite, op.relu)
    if y is None:
        (y,) = reference(*args)
        if op.relu:
            y = np.asarray(y)  # a fresh sum
            y = _relu(y, out=y if y.flags.writeable else None)
    return (y,)


class Add(_Direct, op_add.Add):
    """ONNX ``Add`` with NumPy broadcasting.

    ``overwrite`` (set by the evaluator) names the inputs it may write the sum over; one
    is used when it already has the result's shape.  ``relu`` (set by the evaluator)
    applies the ``Relu`` that followed it to the sum, written over it.
    """

    overwrite: tuple[int, ...] = ()
    relu = False

    def _run(self, a, b):  # type: ignore[no-untyped-def]
        return _summed(self, (a, b), super()._run)


class Sum(_Direct, op_sum.Sum):
    """ONNX ``Sum`` of its inputs with NumPy broadcasting; ``overwrite`` and ``relu`` as
    for :class:`Add` (Caffe2's ResNet-50 export adds its residuals by ``Sum``)."""

    overwrite: tuple[int, ...] = ()
    relu = False

    def _run(self, *args):  # type: ignore[no-untyped-def]
        return _summed(self, args, super()._run)


def scale_and_shift(
    scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Inference batch norm as ``x * a + b`` per channel, ``a`` and ``b`` in float64."""
    eps = 1e-5 if epsilon is None else float(epsilon)
    a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return a, bias.astype(np.float64) - mean.astype(np.float64) * a


def _opset(op: OpRun) -> int:
    """The version of the default ONNX domain that the node's model imports (the newest
    this evaluator knows, 22, where the model does not say)."""
    return int(op.run_params["opsets"].get("", 22))


class BatchNormalization(_Direct, op_batch_normalization.BatchNormalization_14):
    """ONNX ``BatchNormalization`` in inference mode: ``x * a + b`` per channel.

    ``a = scale / sqrt(var + epsilon)`` and ``b = bias - mean * a`` come from the running
    statistics, as the spec defines inference (opsets 7-13 always, 14+ with
    ``training_mode=0``, 6 with ``is_test=1``); onnx's reference normalizes with the
    batch's own statistics when a ``momentum`` attribute is present (opsets 9-13), the
    spec and onnxruntime do not.  Training mode, extra outputs, ``spatial=0`` and
    non-float dtypes fall back to the reference.  ``overwrite`` (set by the evaluator)
    lets it write the result over ``x``.
    """

    overwrite = False

    def inference(self, attributes: dict[str, Any]) -> bool:
        """Whether the node normalizes by its running statistics, given its attributes."""
        version = _opset(self)
        return not (
            len(self.onnx_node.output) > 1
            or attributes.get("training_mode")
            or (version < 7 and not attributes.get("is_test"))
            or attributes.get("spatial") == 0
        )

    def _run(self, x, scale, bias, mean, var, epsilon=None, **attributes):  # type: ignore[no-untyped-def]
        if not self.inference(attributes) or x.dtype.kind != "f" or scale.ndim != 1 or x.ndim < 2:
            reference = _reference_batch_norm(_opset(self))
            return reference._run(self, x, scale, bias, mean, var, epsilon=epsilon, **attributes)
        a, b = scale_and_shift(scale, bias, mean, var, epsilon)
        per_channel = (-1, *(1,) * (x.ndim - 2))  # (C, 1, ...): broadcasts over (N, C, ...)
        out = x if self.overwrite and x.flags.writeable else None
        y = np.multiply(x, a.astype(x.dtype).reshape(per_channel), out=out)
        np.add(y, b.astype(x.dtype).reshape(per_channel), out=y)
        return (y,)


def _softmax(op: OpRun, x: np.ndarray, log: bool) -> np.ndarray:
    """(Log)softmax by the node's opset: 1-12 flatten into 2-d at ``axis`` (default 1)
    and normalize every row; 13+ normalize along ``axis`` (default -1)."""
    version = _opset(op)
    given = [a.i for a in op.onnx_node.attribute if a.name == "axis"]
    axis = given[0] if given else (1 if version < 13 else -1)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"onnx {op.op_type}: axis {axis} is out of range for a {x.ndim}-d input "
            f"(opset {version})"
        )
    shape = x.shape
    if version < 13:  # the rows of the 2-d coercion
        axis %= x.ndim
        x, axis = x.reshape(math.prod(shape[:axis]), math.prod(shape[axis:])), 1
    shifted = x - x.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=axis, keepdims=True)
    y = shifted - np.log(total) if log else np.divide(exp, total, out=exp)
    return y.reshape(shape)


class Softmax(_Direct, op_softmax.Softmax):
    """ONNX ``Softmax`` with each opset's axis semantics (onnx's reference applies the
    opset-13 default, the last axis, to older models too).  Empty and 0-d inputs fall
    back to the reference."""

    def _run(self, X, axis=None):  # type: ignore[no-untyped-def]
        if X.size == 0 or X.ndim == 0:
            return super()._run(X, axis=axis)
        return (_softmax(self, X, log=False),)


class LogSoftmax(_Direct, op_log_softmax.LogSoftmax):
    """ONNX ``LogSoftmax``, with the axis semantics of :class:`Softmax`."""

    def _run(self, X, axis=None):  # type: ignore[no-untyped-def]
        if X.size == 0 or X.ndim == 0:
            return super()._run(X)
        return (_softmax(self, X, log=True),)


def _reference_batch_norm(version: int) -> type:
    """onnx's reference BatchNormalization class for an opset version."""
    if version >= 14:
        return op_batch_normalization.BatchNormalization_14
    if version >= 9:
        return op_batch_normalization.BatchNormalization_9
    return op_batch_normalization.BatchNormalization_6


OPS: tuple[type, ...] = (
    Conv, ConvTranspose, ConvInteger, QLinearConv, MaxPool, AveragePool, BatchNormalization,
    Relu, Add, Sum, Softmax, LogSoftmax,
)  # fmt: skip
#: Operators whose output is an array of their own (never a view of an input that another
#: node still reads), so a single consumer may overwrite it.
FRESH: tuple[type[OpRun], ...] = (
    Conv, ConvTranspose, MaxPool, AveragePool, BatchNormalization, Relu, Add, Sum,
)  # fmt: skip
