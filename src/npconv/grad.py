"""Gradients of :func:`npconv.conv`, as convolutions (JAX's transpose rules).

For ``y = conv(x, w) + bias`` and an upstream gradient ``gy = dL/dy``:

* ``dL/dx`` is the transposed convolution of ``gy`` with ``w``
  (:func:`npconv.conv_transpose`), followed by the adjoint of the padding mode (pads
  that copied input elements send their gradient back to them);
* ``dL/dw`` is the convolution of ``x`` with ``gy``: the im2col patch matrix of the padded
  input, transposed, times ``gy`` (``patches.T @ gy``), accumulated over the same bounded
  chunks as the forward pass;
* ``dL/dbias`` is ``gy`` summed over the batch and every position.

For complex arrays the gradients follow PyTorch's convention (the conjugate Wirtinger
derivative): the input gradient uses ``conj(w)`` and the weight gradient ``conj(x)``,
so that ``grad_input`` is the adjoint (conjugate transpose) of the convolution applied
to ``gy``.

The functions mirror ``torch.nn.grad`` (``conv2d_input``, ``conv2d_weight``, ...) and
accept every padding form, ``padding_mode``, stride, dilation, groups and layout that
:func:`npconv.conv` does.  :func:`conv_backward` returns all three from one pass that
shares the canonical input and gradient.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._api import _conv, as_array, compute_dtypes, integer_compute_dtype
from ._spec import ConvSpec, IntOrTuple, PaddingArg
from ._transpose import adjoint, swapped_filters, transpose_spec
from ._windows import canonical_input, canonical_weight, chunks, windows, windows_channels_first
from .algorithms import get_algorithm

__all__ = [
    "NEEDS",
    "ConvGrads",
    "conv1d_input",
    "conv1d_weight",
    "conv2d_input",
    "conv2d_weight",
    "conv3d_input",
    "conv3d_weight",
    "conv_backward",
    "conv_transpose_backward",
]

#: What :func:`conv_backward` can compute.
NEEDS = ("input", "weight", "bias")


class ConvGrads(NamedTuple):
    """Gradients of a convolution; a field is None when it was not requested."""

    input: np.ndarray | None
    weight: np.ndarray | None
    bias: np.ndarray | None


def _weight_grad(xp: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``patches.T @ gy`` per group over bounded chunks: the canonical ``(*kernel, C/G, O)``.

    ``xp`` is the padded channels-last input ``(N, *padded, C)`` and ``gy`` the
    channels-last gradient ``(N, *out, O)``.  Each chunk copies the same patch block as
    the forward ``im2col`` algorithm, so the workspace bound is the forward's.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    patches = windows(xp, spec)  # (N, *out, *kernel, C)
    patches = patches.reshape(*patches.shape[:-1], g, cg)  # (N, *out, *kernel, G, C/G)
    patches = np.moveaxis(patches, -2, 1 + spec.nd)  # (N, *out, G, *kernel, C/G)
    dtype = np.result_type(xp, gy)
    gw = np.zeros((g, taps * cg, og), dtype=dtype)
    for batch, rows in chunks(spec, taps * spec.in_channels * dtype.itemsize):
        cols = patches[batch, rows].reshape(-1, g, taps * cg)  # copy: (rows, G, K*C/G)
        grad = gy[batch, rows].reshape(-1, g, og)  # (rows, G, O/G)
        gw += cols.transpose(1, 2, 0) @ grad.transpose(1, 0, 2)  # (G, K*C/G, O/G)
        del cols  # before the next chunk's copy: one chunk of workspace at a time
    gw = gw.reshape(g, *spec.kernel, cg, og)  # (G, *kernel, C/G, O/G)
    gw = np.moveaxis(gw, 0, -2)  # (*kernel, C/G, G, O/G)
    return gw.reshape(*spec.kernel, cg, spec.out_channels)  # (*kernel, C/G, O)


def _conjugated(a: np.ndarray) -> np.ndarray:
    """``conj(a)`` for complex ``a`` (PyTorch's convention, below), ``a`` itself otherwise."""
    return a.conj() if a.dtype.kind == "c" else a


def _checked_needs(fn: str, needs: Collection[str]) -> frozenset[str]:
    """``needs`` as a set of names from :data:`NEEDS` (a single name is accepted)."""
    names = frozenset((needs,) if isinstance(needs, str) else needs)
    unknown = sorted(names - set(NEEDS))
    if unknown:
        raise ValueError(f"{fn}: needs may only name {NEEDS}, got {unknown}")
    return names


def _check_grad_shape(fn: str, gy: np.ndarray, expected: tuple[int, ...], unbatched: bool) -> None:
    """``grad_output`` (batched here) must have the shape of the forward result."""
    if gy.shape != expected:
        shown, got = (expected[1:], gy.shape[1:]) if unbatched else (expected, gy.shape)
        raise ValueError(
            f"{fn}: grad_output must have the shape of the forward result, {shown}, got {got}"
        )


def _channels_last(a: np.ndarray, layout: str, dtype: np.dtype) -> np.ndarray:
    """``a`` in ``dtype`` as a contiguous ``(N, *spatial, C)``."""
    a = a.astype(dtype, copy=False)
    if layout == "NCHW":
        a = np.moveaxis(a, 1, -1)  # (N, *spatial, C)
    return np.ascontiguousarray(a)


def _in_layout(
    grad_x: np.ndarray | None,
    grad_w: np.ndarray | None,
    gy: np.ndarray | None,
    layout: str,
    unbatched: bool,
    dtype: np.dtype,
) -> ConvGrads:
    """Channels-last ``grad_x``, canonical ``grad_w`` and the bias gradient of ``gy``.

    Returned in ``layout`` and ``dtype``, ``grad_x`` without its batch axis when the
    input had none.
    """
    if grad_x is not None:
        if layout == "NCHW":
            grad_x = np.moveaxis(grad_x, -1, 1)  # (N, C, *spatial)
        grad_x = np.ascontiguousarray(grad_x, dtype=dtype)
        grad_x = grad_x[0] if unbatched else grad_x
    if grad_w is not None:
        if layout == "NCHW":
            grad_w = np.moveaxis(grad_w, (-1, -2), (0, 1))  # (*k, I, O) -> (O, I, *k)
        grad_w = np.ascontiguousarray(grad_w, dtype=dtype)
    grad_b = None if gy is None else gy.sum(axis=tuple(range(gy.ndim - 1))).astype(dtype)
    return ConvGrads(grad_x, grad_w, grad_b)


def _weight_grad_channels_first(xp: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """:func:`_weight_grad` on channels-first data: ``gy @ patches.T`` per group.

    ``xp`` is the padded input ``(N, C, *padded)``, ``gy`` the gradient ``(N, O, *out)``;
    returns ``(O, C/G, *kernel)``.  The patch blocks are those of the channels-first
    ``im2col``, so the workspace bound is the forward's.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    patches = windows_channels_first(xp, spec)  # (N, C, *kernel, *out)
    patches = patches.reshape(spec.batch, g, cg, *patches.shape[2:])  # (N, G, C/G, *k, *out)
    gy = gy.reshape(spec.batch, g, og, *spec.out_size)  # (N, G, O/G, *out)
    every = (slice(None),) * (2 + spec.nd)  # the G, C/G and kernel axes
    dtype = np.result_type(xp, gy)
    gw = np.zeros((g, og, cg * taps), dtype=dtype)
    for batch, rows in chunks(spec, taps * spec.in_channels * dtype.itemsize):
        index = (batch, *every, rows)
        block = patches[index]  # (n, G, C/G, *kernel, r, *out[1:])
        cols = block.reshape(*block.shape[:2], cg * taps, -1)  # copy: (n, G, C/G*K, P)
        grad = gy[batch, :, :, rows].reshape(*cols.shape[:2], og, -1)  # (n, G, O/G, P)
        gw += (grad @ cols.swapaxes(-1, -2)).sum(axis=0)  # (G, O/G, C/G*K)
        del cols  # before the next chunk's copy: one chunk of workspace at a time
    return gw.reshape(spec.out_channels, cg, *spec.kernel)  # (O, C/G, *kernel)


def _full_pads(spec: ConvSpec) -> tuple[tuple[int, int], ...] | None:
    """Pads that make the input gradient one stride-1 convolution, or None.

    With stride 1 and zero padding, ``dL/dx`` is ``grad_output`` convolved with the
    flipped, in/out-swapped filters, padded by ``dilation * (k - 1)`` minus the forward's
    pads on each side (when that is not negative).
    """
    if max(spec.stride) > 1 or spec.padding_mode != "zeros":
        return None
    pads = tuple(
        ((k - 1) * d - lo, (k - 1) * d - hi)
        for k, d, (lo, hi) in zip(spec.kernel, spec.dilation, spec.pads)
    )
    return None if min(min(p) for p in pads) < 0 else pads


def _flipped_transpose(w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The filters of the input gradient: in/out channels swapped per group, kernel flipped.

    ``(O, C/G, *kernel) -> (C, O/G, *kernel)`` in "NCHW", ``(*kernel, C/G, O) ->
    (*kernel, O/G, C)`` in "NHWC" (views of ``w``).
    """
    w_t = swapped_filters(canonical_weight(w, spec), spec)  # (*kernel, O/G, C)
    w_t = np.flip(w_t, axis=tuple(range(spec.nd)))
    return np.moveaxis(w_t, (-1, -2), (0, 1)) if spec.layout == "NCHW" else w_t


def _grads(
    fn: str,
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike | None,
    x_shape: Sequence[int] | None,
    w: npt.ArrayLike | None,
    w_shape: Sequence[int] | None,
    needs: Collection[str],
    *,
    algorithm: str = "auto",
    **kwargs: Any,
) -> ConvGrads:
    """Every requested gradient; ``x`` (``w``) may be None when only its shape is needed."""
    names = _checked_needs(fn, needs)
    gy = as_array(fn, "grad_output", grad_output)
    operands = [gy]
    if x is not None:
        x = as_array(fn, "x", x)
        operands.append(x)
    if w is not None:
        w = as_array(fn, "w", w)
        operands.append(w)
    shape = tuple(x.shape if x is not None else x_shape or ())
    w_shape = tuple(w.shape if w is not None else w_shape or ())
    unbatched = len(shape) == len(w_shape) - 1
    if unbatched:
        shape, gy = (1, *shape), gy[None]
        x = None if x is None else x[None]
    spec = ConvSpec.build(shape, w_shape, fn=fn, **kwargs)
    _check_grad_shape(fn, gy, spec.output_shape, unbatched)
    compute, result = compute_dtypes(fn, *operands)
    gy_in_layout = gy.astype(compute, copy=False)
    first = spec.layout == "NCHW"  # channels-first data stay channels-first where they can
    gy = np.moveaxis(gy_in_layout, 1, -1) if first else gy_in_layout  # (N, *out, O): a view

    grad_x = grad_w = None
    if "input" in names and w is not None:
        w = _conjugated(w.astype(compute, copy=False))
        full_pads = _full_pads(spec)
        if full_pads is not None:  # one convolution, in the caller's layout
            if compute.kind == "i":  # refused beyond int64, like every gradient
                w_t = swapped_filters(canonical_weight(w, spec), spec)  # (*kernel, O/G, C)
                integer_compute_dtype(fn, gy, w_t.reshape(-1, spec.in_channels))
            grad_x = _conv(
                fn,
                gy_in_layout,
                _flipped_transpose(w, spec),
                None,
                padding=full_pads,
                dilation=spec.dilation,
                groups=spec.groups,
                layout=spec.layout,
                algorithm=algorithm,
            )
            if first:
                grad_x = np.moveaxis(grad_x, 1, -1)  # (N, *in, C): a view
        else:
            wc = canonical_weight(w, spec)  # (*kernel, C/G, O)
            grad_x = adjoint(gy, wc, spec, algorithm, fn)  # (N, *in, C)
    if "weight" in names and x is not None:
        if compute.kind == "i":
            integer_compute_dtype(
                fn, x, gy.reshape(-1, spec.out_channels), what="weight-gradient sums"
            )
        x = _conjugated(x.astype(compute, copy=False))
        xp = canonical_input(x, spec, channels_last=not first)
        if first:  # (N, C, *padded) and (N, O, *out)
            grad_w = _weight_grad_channels_first(xp, gy_in_layout, spec)  # (O, C/G, *kernel)
            grad_w = np.moveaxis(grad_w, (0, 1), (-1, -2))  # (*kernel, C/G, O): a view
        else:
            grad_w = _weight_grad(xp, gy, spec)  # (*kernel, C/G, O)
    bias_from = gy if "bias" in names else None
    return _in_layout(grad_x, grad_w, bias_from, spec.layout, unbatched, result)


def conv_backward(
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    algorithm: str = "auto",
    needs: Collection[str] = NEEDS,
) -> ConvGrads:
    """Gradients of ``y = conv(x, w, bias, ...)`` given ``grad_output = dL/dy``.

    Parameters
    ----------
    grad_output : array_like
        ``dL/dy``, the shape of the convolution's result.
    x, w : array_like
        The input and filters of the forward call (as for :func:`npconv.conv`).
    stride, padding, dilation, groups, padding_mode, layout
        Those of the forward call.
    algorithm : str
        ``"auto"`` or one of :func:`npconv.algorithms`, for the input gradient (a
        convolution); the weight gradient is always the patch-matrix product.
    needs : collection of {"input", "weight", "bias"}
        Which gradients to compute (default: all three).

    Returns
    -------
    ConvGrads
        ``(input, weight, bias)``: ``dL/dx`` with the shape of ``x``, ``dL/dw`` with the
        shape of ``w``, ``dL/dbias`` of shape ``(O,)``; None where not requested.  The
        dtype follows :func:`npconv.conv` for the three arrays together.

    Raises
    ------
    ValueError
        A ``grad_output`` whose shape is not the result's, an unknown name in ``needs``,
        and every error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    ``dL/dx`` is a transposed convolution with the forward's multiply-adds (split into
    ``prod(stride)`` stride-1 convolutions); ``dL/dw`` one patch-matrix product with the
    forward's flops, built chunk by chunk within :data:`npconv._windows.WORKSPACE_BYTES`
    like the forward ``im2col``.  The channels-last gradient is built once and shared.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((2, 1, 3, 3))
    >>> gx, gw, gb = npconv.grad.conv_backward(np.ones((1, 2, 4, 4)), x, w, padding=1)
    >>> gx[0, 0]
    array([[ 8., 12., 12.,  8.],
           [12., 18., 18., 12.],
           [12., 18., 18., 12.],
           [ 8., 12., 12.,  8.]])
    >>> gw[0, 0]
    array([[ 45.,  66.,  54.],
           [ 84., 120.,  96.],
           [ 81., 114.,  90.]])
    >>> gb
    array([16., 16.])
    """
    return _grads(
        "conv_backward",
        grad_output,
        x,
        None,
        w,
        None,
        needs,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        layout=layout,
        algorithm=algorithm,
    )


def conv_transpose_backward(
    grad_output: npt.ArrayLike,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    *,
    stride: IntOrTuple = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    output_size: Sequence[int] | None = None,
    layout: str = "NCHW",
    algorithm: str = "auto",
    needs: Collection[str] = NEEDS,
) -> ConvGrads:
    """Gradients of ``y = conv_transpose(x, w, bias, ...)`` given ``grad_output = dL/dy``.

    Parameters
    ----------
    grad_output : array_like
        ``dL/dy``, the shape of the transposed convolution's result.
    x, w : array_like
        The input and filters of the forward call (as for
        :func:`npconv.conv_transpose`).
    stride, padding, output_padding, groups, dilation, output_size, layout
        Those of the forward call.
    algorithm : str
        ``"auto"`` or one of :func:`npconv.algorithms`, for the input gradient.
    needs : collection of {"input", "weight", "bias"}
        Which gradients to compute (default: all three).

    Returns
    -------
    ConvGrads
        ``(input, weight, bias)`` with the shapes of ``x``, ``w`` and ``(O,)``; None
        where not requested.

    Raises
    ------
    ValueError
        A ``grad_output`` whose shape is not the result's, an unknown name in ``needs``,
        and every error of :func:`npconv.conv_transpose`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    A transposed convolution is the adjoint of a convolution ``A``, so its input
    gradient is ``A`` itself applied to ``grad_output`` (a plain forward convolution),
    and its weight gradient is that of ``A`` with the roles of input and gradient
    swapped: both read the same padded ``grad_output``, built once.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x, w = np.ones((1, 2, 3, 3)), np.ones((2, 4, 3, 3))
    >>> y = npconv.conv_transpose(x, w, stride=2)
    >>> gx, gw, gb = npconv.grad.conv_transpose_backward(np.ones_like(y), x, w, stride=2)
    >>> gx.shape, gw.shape, gb
    ((1, 2, 3, 3), (2, 4, 3, 3), array([49., 49., 49., 49.]))
    """
    fn = "conv_transpose_backward"
    names = _checked_needs(fn, needs)
    gy = as_array(fn, "grad_output", grad_output)
    x = as_array(fn, "x", x)
    w = as_array(fn, "w", w)
    unbatched = x.ndim == w.ndim - 1
    if unbatched:
        x, gy = x[None], gy[None]
    spec = transpose_spec(
        fn,
        x.shape,
        w.shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        output_size=output_size,
        groups=groups,
        dilation=dilation,
        layout=layout,
    )
    y_size = (
        (spec.in_channels, *spec.in_size) if layout == "NCHW" else (*spec.in_size, spec.in_channels)
    )
    _check_grad_shape(fn, gy, (spec.batch, *y_size), unbatched)
    compute, result = compute_dtypes(fn, gy, x, w)
    gyp = canonical_input(gy.astype(compute, copy=False), spec)  # (N, *padded, O)
    x_c = _channels_last(x, layout, compute)  # (N, *in, I)

    grad_x = grad_w = None
    if "input" in names:
        wc = canonical_weight(_conjugated(w.astype(compute, copy=False)), spec)  # (*k, O/G, I)
        algo = get_algorithm(algorithm, spec, compute, fn)
        if compute.kind == "i":
            integer_compute_dtype(fn, gy, wc.reshape(-1, spec.out_channels))
        grad_x = algo.fn(gyp, wc, spec)  # (N, *in, I): the convolution A
    if "weight" in names:
        if compute.kind == "i":
            integer_compute_dtype(
                fn, gy, x_c.reshape(-1, spec.out_channels), what="weight-gradient sums"
            )
        grad_w = _weight_grad(gyp, _conjugated(x_c), spec)  # (*kernel, O/G, I)
    bias_from = _channels_last(gy, layout, compute) if "bias" in names else None
    return _in_layout(grad_x, grad_w, bias_from, layout, unbatched, result)


def _input_fn(nd: int) -> Any:
    def conv_nd_input(
        input_size: Sequence[int],
        weight: npt.ArrayLike,
        grad_output: npt.ArrayLike,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        *,
        padding_mode: str = "zeros",
        layout: str = "NCHW",
        algorithm: str = "auto",
    ) -> np.ndarray:
        name = f"conv{nd}d_input"
        w = as_array(name, "weight", weight)
        if w.ndim != nd + 2:
            raise ValueError(
                f"{name}: weight must have {nd + 2} dims for a {nd}-d convolution, "
                f"got weight.ndim={w.ndim} with shape {w.shape}"
            )
        grads = _grads(
            name,
            grad_output,
            None,
            input_size,
            w,
            None,
            ("input",),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
            layout=layout,
            algorithm=algorithm,
        )
        return grads.input  # type: ignore[return-value]

    conv_nd_input.__name__ = conv_nd_input.__qualname__ = f"conv{nd}d_input"
    spatial = ", 5" * nd
    conv_nd_input.__doc__ = f"""Gradient of a {nd}-d convolution with respect to its input.

    As ``torch.nn.grad.conv{nd}d_input``: the transposed convolution of ``grad_output``
    with ``weight``, followed by the adjoint of ``padding_mode``.

    Parameters
    ----------
    input_size : tuple of int
        Shape of the forward input ``x`` (with or without the batch axis).
    weight : array_like
        The forward filters, ``(O, C/groups{", k" * nd})`` in "NCHW".
    grad_output : array_like
        ``dL/dy``, the shape of the forward result.
    stride, padding, dilation, groups, padding_mode, layout, algorithm
        As for :func:`npconv.conv`.

    Returns
    -------
    ndarray
        ``dL/dx``, of shape ``input_size``.

    Raises
    ------
    ValueError
        ``weight`` not {nd + 2}-d, ``grad_output`` not the result's shape, and every
        error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> w = np.ones((4, 3{", 3" * nd}))
    >>> gy = np.ones((2, 4{spatial}))
    >>> npconv.grad.conv{nd}d_input((2, 3{", 7" * nd}), w, gy).shape
    (2, 3{", 7" * nd})
    """
    return conv_nd_input


def _weight_fn(nd: int) -> Any:
    def conv_nd_weight(
        input: npt.ArrayLike,
        weight_size: Sequence[int],
        grad_output: npt.ArrayLike,
        stride: IntOrTuple = 1,
        padding: PaddingArg = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        *,
        padding_mode: str = "zeros",
        layout: str = "NCHW",
    ) -> np.ndarray:
        name = f"conv{nd}d_weight"
        weight_size = tuple(weight_size)
        if len(weight_size) != nd + 2:
            raise ValueError(
                f"{name}: weight_size must have {nd + 2} entries for a {nd}-d convolution, "
                f"got {weight_size}"
            )
        grads = _grads(
            name,
            grad_output,
            input,
            None,
            None,
            weight_size,
            ("weight",),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
            layout=layout,
        )
        return grads.weight  # type: ignore[return-value]

    conv_nd_weight.__name__ = conv_nd_weight.__qualname__ = f"conv{nd}d_weight"
    spatial = ", 5" * nd
    conv_nd_weight.__doc__ = f"""Gradient of a {nd}-d convolution with respect to its weight.

    As ``torch.nn.grad.conv{nd}d_weight``: the patch matrix of the padded input,
    transposed, times ``grad_output``, per group.

    Parameters
    ----------
    input : array_like
        The forward input ``x``.
    weight_size : tuple of int
        Shape of the forward filters, ``(O, C/groups{", k" * nd})`` in "NCHW".
    grad_output : array_like
        ``dL/dy``, the shape of the forward result.
    stride, padding, dilation, groups, padding_mode, layout
        As for :func:`npconv.conv`.

    Returns
    -------
    ndarray
        ``dL/dw``, of shape ``weight_size``.

    Raises
    ------
    ValueError
        ``weight_size`` without {nd + 2} entries, ``grad_output`` not the result's shape,
        and every error of :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 3{", 7" * nd}))
    >>> gy = np.ones((2, 4{spatial}))
    >>> gw = npconv.grad.conv{nd}d_weight(x, (4, 3{", 3" * nd}), gy)
    >>> gw.shape, float(gw.max())
    ((4, 3{", 3" * nd}), {2.0 * 5**nd})
    """
    return conv_nd_weight


conv1d_input = _input_fn(1)
conv2d_input = _input_fn(2)
conv3d_input = _input_fn(3)
conv1d_weight = _weight_fn(1)
conv2d_weight = _weight_fn(2)
conv3d_weight = _weight_fn(3)
