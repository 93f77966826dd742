"""Transposed convolution: the adjoint of :func:`npconv.conv`, computed by convolutions.

A convolution is linear in its input, ``y = A x``.  Its transpose ``x_bar = A^T y_bar``
(PyTorch's ``conv_transpose``, ONNX's ``ConvTranspose``, and the gradient of a
convolution with respect to its input) is again a convolution, as in JAX's transpose
rules: flip the kernel, swap its input and output channels within each group, and slide
it over ``y_bar`` spread apart by the stride.  Spreading would multiply ``stride - 1``
zeros for every value, so the work is split by sub-pixel phase instead (the polyphase
decomposition): along an axis, the results at positions ``i = rho, rho + s, ...`` receive
only the taps ``k`` with ``k * dilation`` in one residue class modulo the stride ``s``,
which form a smaller kernel with dilation ``dilation / gcd(dilation, s)``.  Each phase is
a stride-1 convolution of ``y_bar`` itself, run by the algorithm registry; there are
``prod(stride)`` of them and together they do exactly the forward's multiply-adds.  One
code path serves every rank, layout, group count, stride and dilation.

When the convolution widens the channels (``C < O``: a stem, whose adjoint narrows 64
channels to 3), the phases' patch matrices would be many times the forward's; then the
adjoint is computed as Caffe's ``col2im`` instead: one product ``y_bar @ W^T`` gives
every output position's contribution to its receptive field, ``(rows, prod(kernel)*C)``,
the forward's patch-matrix size, and each kernel offset's slice is added into the input
at its strided positions (with ``algorithm="auto"``; an algorithm asked for by name runs
the phases).

The forward convolution is described by a :class:`~npconv._spec.ConvSpec` whose
``in_size`` is the transposed output and whose ``out_size`` is the transposed input; the
weight of ``conv_transpose`` *is* the weight of that forward convolution (``I, O/G,
*kernel`` in "NCHW" reads as the forward ``O, C/G, *kernel``).
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._api import as_array, checked_bias, compute_dtypes, integer_compute_dtype
from ._spec import LAYOUTS, SPATIAL_NAMES, ConvSpec, IntOrTuple, explicit_pads, int_tuple, is_int
from ._windows import canonical_weight, chunks
from .algorithms import get_algorithm

__all__ = [
    "Phase",
    "adjoint",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "phases",
    "transpose_spec",
]

#: Where each padded position reads from, for ``t`` = position - pad_before in an axis of
#: ``n`` elements (numpy.pad's "reflect", "edge" and "wrap"; pads are smaller than ``n``).
_PAD_SOURCE = {
    "reflect": lambda t, n: (n - 1) - np.abs((n - 1) - np.abs(t)),
    "replicate": lambda t, n: np.clip(t, 0, n - 1),
    "circular": lambda t, n: t % n,
}


@dataclass(frozen=True)
class Phase:
    """One sub-pixel phase of the adjoint: a stride-1 convolution of the gradient.

    ``target`` selects (per spatial axis) the positions of the region it computes,
    ``shift`` places the gradient in its input (``z[j] = gy[j - shift]``, zero outside),
    ``taps`` selects its kernel from the forward kernel, reversed, and ``spec`` is the
    channels-last convolution ``(N, *z, O) -> (N, *target, C)``.
    """

    target: tuple[slice, ...]
    shift: tuple[int, ...]
    taps: tuple[slice, ...]
    spec: ConvSpec


def _shifted(y: np.ndarray, shift: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``(N, *size, C)`` holding ``y[:, p]`` at ``p + shift``, zeros elsewhere.

    ``y`` is channels-last ``(N, *out, C)``; positions outside ``[0, size)`` are dropped
    (a negative shift crops).  ``y`` itself (never written to) when nothing moves.
    """
    if not any(shift) and tuple(size) == y.shape[1:-1]:
        return y
    z = np.zeros((y.shape[0], *size, y.shape[-1]), dtype=y.dtype)
    dst, src = [slice(None)], [slice(None)]
    for n_out, b, n in zip(y.shape[1:-1], shift, size):
        first, last = max(0, -b), min(n_out, n - b)  # the p with 0 <= p + b < n
        if last <= first:
            return z
        dst.append(slice(first + b, last + b))
        src.append(slice(first, last))
    z[tuple(dst)] = y[tuple(src)]
    return z


def _fold_padding(xp_bar: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Adjoint of the spec's (non-zero) padding: ``(N, *padded, C) -> (N, *in_size, C)``.

    Every padded position copied an input element; its gradient is added back there.
    """
    source = _PAD_SOURCE[spec.padding_mode]
    for axis, (n, (lo, hi)) in enumerate(zip(spec.in_size, spec.pads), start=1):
        if not (lo or hi):
            continue
        index: list[Any] = [slice(None)] * xp_bar.ndim
        index[axis] = slice(lo, lo + n)
        folded = xp_bar[tuple(index)].copy()  # (N, ..., n, ..., C): the input's own share
        pads = np.r_[0:lo, lo + n : lo + n + hi]  # positions in the pads
        index[axis] = source(pads - lo, n)
        np.add.at(folded, tuple(index), np.take(xp_bar, pads, axis=axis))
        xp_bar = folded
    return xp_bar


def _region(spec: ConvSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start and size, per axis, of the part of the padded input the adjoint computes.

    With zero padding only the input's own positions; otherwise all of the padded input,
    to be folded back onto the input by :func:`_fold_padding`.
    """
    if spec.padding_mode == "zeros":
        return tuple(lo for lo, _ in spec.pads), spec.in_size
    return (0,) * spec.nd, spec.padded_size


class _AxisPhase(NamedTuple):
    """One phase of one spatial axis (see :func:`_axis_phases`)."""

    target: slice  # region positions rho, rho + stride, ...
    shift: int  # gy[p] goes to the phase's input position p + shift
    taps: slice  # its taps of the forward kernel, last first
    positions: int  # number of target positions
    n_taps: int  # kernel size of the phase
    dilation: int  # spacing of its taps in the phase input: dilation / gcd(dilation, stride)


def _axis_phases(
    start: int, size: int, kernel: int, stride: int, dilation: int
) -> list[_AxisPhase]:
    """The phases ``rho = 0 .. stride - 1`` of one axis that some tap reaches.

    Region position ``i = rho + t * stride`` is padded position ``u = start + i``; it
    receives ``gy[p] * w[k]`` for ``p * stride + k * dilation == u``, i.e. from the taps
    with ``k * dilation = r (mod stride)``, spaced ``stride / gcd(dilation, stride)``
    apart, at ``p = q + t - (k * dilation - r) / stride`` where ``start + rho = q * stride
    + r``.
    """
    step = stride // math.gcd(dilation, stride)
    found = []
    for rho in range(min(stride, size)):
        q, r = divmod(start + rho, stride)
        taps = [k for k in range(kernel) if (k * dilation - r) % stride == 0]
        if not taps:
            continue  # nothing reaches these positions: they stay zero
        first, last = taps[0], taps[-1]
        found.append(
            _AxisPhase(
                target=slice(rho, size, stride),
                shift=(last * dilation - r) // stride - q,
                taps=slice(last, first - 1 if first else None, -step),
                positions=len(range(rho, size, stride)),
                n_taps=len(taps),
                dilation=dilation * step // stride,
            )
        )
    return found


def phases(spec: ConvSpec, fn: str = "conv_transpose") -> list[Phase]:
    """The stride-1 convolutions that together compute the adjoint of ``spec``'s.

    One per combination of per-axis phases (``prod(stride)`` at most; none for positions
    no tap reaches).  At stride 1 there is one, with the whole kernel reversed.
    """
    start, size = _region(spec)
    per_axis = [
        _axis_phases(*args) for args in zip(start, size, spec.kernel, spec.stride, spec.dilation)
    ]
    found = []
    for axes in itertools.product(*per_axis):
        kernel = tuple(a.n_taps for a in axes)
        extent = [a.positions + (a.n_taps - 1) * a.dilation for a in axes]  # the phase's input
        inner = ConvSpec.build(
            (spec.batch, *extent, spec.out_channels),
            (*kernel, spec.group_out, spec.in_channels),
            dilation=tuple(a.dilation for a in axes),
            groups=spec.groups,
            layout="NHWC",
            fn=fn,
        )
        found.append(
            Phase(
                target=tuple(a.target for a in axes),
                shift=tuple(a.shift for a in axes),
                taps=tuple(a.taps for a in axes),
                spec=inner,
            )
        )
    return found


def swapped_filters(wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Canonical filters with input and output channels swapped within each group.

    ``(*kernel, C/G, O) -> (*kernel, O/G, C)``: the filters of the adjoint convolution,
    which maps ``O`` channels back to ``C``.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    swapped = wc.reshape(*spec.kernel, cg, g, og)  # (*kernel, C/G, G, O/G)
    swapped = np.moveaxis(swapped, (-3, -1), (-1, -3))  # (*kernel, O/G, G, C/G)
    return swapped.reshape(*spec.kernel, og, spec.in_channels)  # (*kernel, O/G, C)


def _col2im(gy: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``A^T gy`` by scattering columns: ``(N, *out, O) -> (N, *padded, C)``.

    Per chunk of output positions, ``W^T @ gy`` holds each position's contribution to its
    receptive field, ``(C, *kernel, rows)``; the slice of one kernel offset goes to
    distinct input positions, so it is added with one strided ``+=``.  The scatter runs
    channels-first, where those slices are runs along the last spatial axis; the result
    is a channels-last view.  The workspace is the forward ``im2col``'s patch matrix, in
    the same chunks.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    dtype = np.result_type(gy, wc)
    w_t = wc.reshape(taps, cg, g, og).transpose(2, 1, 0, 3).reshape(g, cg * taps, og)
    # w_t: (G, C/G*K, O/G)
    xp_bar = np.zeros((spec.batch, spec.in_channels, *spec.padded_size), dtype=dtype)
    for batch, rows in chunks(spec, taps * spec.in_channels * dtype.itemsize):
        grad = gy[batch, rows]  # (n, r, *out[1:], O)
        n, *out_block = grad.shape[: 1 + spec.nd]  # n, (r, *out[1:])
        grad = grad.reshape(n, -1, g, og).transpose(0, 2, 3, 1)  # (n, G, O/G, P)
        cols = w_t @ grad  # (n, G, C/G*K, P)
        cols = cols.reshape(n, spec.in_channels, *spec.kernel, *out_block)  # (n, C, *k, ...)
        first_row = rows.indices(spec.out_size[0])[0]
        for k in itertools.product(*map(range, spec.kernel)):
            starts = [ki * d for ki, d in zip(k, spec.dilation)]
            starts[0] += first_row * spec.stride[0]
            target = tuple(
                slice(a, a + (m - 1) * s + 1, s) for a, m, s in zip(starts, out_block, spec.stride)
            )
            index, tap = (batch, slice(None), *target), (slice(None), slice(None), *k)
            xp_bar[index] += cols[tap]  # (n, C, r, *out[1:])
        del cols  # before the next chunk's product: one chunk of workspace at a time
    return np.moveaxis(xp_bar, 1, -1)  # (N, *padded, C): a view


def adjoint(gy: np.ndarray, wc: np.ndarray, spec: ConvSpec, algorithm: str, fn: str) -> np.ndarray:
    """``A^T gy`` for the convolution ``A`` of ``spec``: ``(N, *out, O) -> (N, *in_size, C)``.

    ``gy`` is channels-last and ``wc`` canonical ``(*kernel, C/G, O)``, both in the dtype
    to compute in; the padding mode's adjoint is applied, so this is the exact gradient of
    ``conv`` with respect to its input.
    """
    w_t = swapped_filters(wc, spec)  # (*kernel, O/G, C)
    parts = phases(spec, fn)
    dtype = np.dtype(gy.dtype)
    algos = [get_algorithm(algorithm, part.spec, dtype, fn) for part in parts]
    if dtype.kind == "i" and parts:  # every phase sums a subset of the full kernel's taps
        integer_compute_dtype(fn, gy, w_t.reshape(-1, spec.in_channels))
    _, size = _region(spec)

    def run(part: Phase, algo: Any) -> np.ndarray:
        z = _shifted(gy, part.shift, part.spec.in_size)  # (N, *z, O)
        return algo.fn(z, w_t[part.taps], part.spec)  # (N, *target, C)

    widening = spec.in_channels < spec.out_channels  # phases' patches would outgrow col2im's
    if algorithm == "auto" and widening:  # an algorithm asked for by name runs the phases
        start, _ = _region(spec)
        xp_bar = _col2im(gy, wc, spec)  # (N, *padded, C)
        region = (slice(None), *(slice(a, a + n) for a, n in zip(start, size)))
        xp_bar = xp_bar[region]  # (N, *size, C)
    elif len(parts) == 1 and parts[0].spec.out_size == size:  # stride 1: one phase, all of it
        xp_bar = run(parts[0], algos[0])
    else:
        xp_bar = np.zeros((spec.batch, *size, spec.in_channels), dtype=dtype)
        for part, algo in zip(parts, algos):
            target = (slice(None), *part.target)  # every sample, this phase's positions
            xp_bar[target] = run(part, algo)
    return xp_bar if spec.padding_mode == "zeros" else _fold_padding(xp_bar, spec)


def transpose_spec(
    fn: str,
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    output_padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    layout: str = "NCHW",
) -> ConvSpec:
    """The forward convolution whose adjoint is ``conv_transpose(x, w, ...)``.

    ``x_shape`` is batched.  The spec's ``in_size`` is the transposed output size,
    ``(in - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + 1 +
    output_padding``, and its ``out_size`` is the spatial size of ``x``.
    """
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"{fn}: layout must be one of {LAYOUTS}, got {layout!r}")
    nd = len(w_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"{fn}: w must have 3, 4 or 5 dims (1-, 2- or 3-d convolution), "
            f"got w.ndim={len(w_shape)} with shape {tuple(w_shape)}"
        )
    if len(x_shape) != nd + 2:
        raise ValueError(
            f"{fn}: x must have {nd + 2} dims (N, C and {SPATIAL_NAMES[nd - 1]}) for a "
            f"{nd}-d transposed convolution, got x.ndim={len(x_shape)} with shape "
            f"{tuple(x_shape)}"
        )
    if not is_int(groups):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if layout == "NCHW":
        batch, channels, *in_size = x_shape
        w_in, w_out, *kernel = w_shape
    else:
        batch, *in_size, channels = x_shape
        *kernel, w_out, w_in = w_shape
    if channels != w_in:
        w_axis = "w.shape[0]" if layout == "NCHW" else f"w.shape[{nd + 1}]"
        raise ValueError(f"{fn}: x has {channels} channels but w expects {w_in} ({w_axis})")
    if groups < 1 or channels % groups:
        raise ValueError(
            f"{fn}: groups={groups} must be >= 1 and divide the input channels, but x has "
            f"{channels} channels"
        )
    if isinstance(padding, str):
        raise ValueError(
            f"{fn}: padding must be ints or (before, after) pairs, got {padding!r}; "
            "pass output_size= for a given output shape"
        )
    pads = explicit_pads(fn, padding, nd)
    stride_t = int_tuple(fn, "stride", stride, nd, 1)
    dilation_t = int_tuple(fn, "dilation", dilation, nd, 1)
    extra = int_tuple(fn, "output_padding", output_padding, nd, 0)
    if any(p >= max(s, d) for p, s, d in zip(extra, stride_t, dilation_t)):
        raise ValueError(
            f"{fn}: output_padding must be smaller than stride or dilation in every dim, "
            f"got output_padding={extra} with stride={stride_t} and dilation={dilation_t}"
        )
    smallest = tuple(
        (n - 1) * s - lo - hi + (k - 1) * d + 1
        for n, s, (lo, hi), k, d in zip(in_size, stride_t, pads, kernel, dilation_t)
    )
    if output_size is not None:
        if any(extra):
            raise ValueError(
                f"{fn}: pass output_size or output_padding, not both "
                f"(output_size fixes output_padding), got output_padding={extra}"
            )
        size = tuple(output_size)
        size = size[2:] if len(size) == nd + 2 else size
        size = int_tuple(fn, "output_size", size, nd, 1)
        largest = tuple(m + s - 1 for m, s in zip(smallest, stride_t))
        if any(not lo <= n <= hi for n, lo, hi in zip(size, smallest, largest)):
            raise ValueError(
                f"{fn}: output_size={size} is impossible for this input: each dim must lie "
                f"between {smallest} and {largest} (in - 1) * stride - pads + "
                "dilation * (kernel - 1) + 1 (+ stride - 1)"
            )
        extra = tuple(n - m for n, m in zip(size, smallest))
    out_size = tuple(m + p for m, p in zip(smallest, extra))
    if min(out_size) < 1:
        raise ValueError(
            f"{fn}: the output would be empty: output size {out_size} from input {tuple(in_size)}"
            f", stride {stride_t}, pads {pads}, kernel {tuple(kernel)}, dilation {dilation_t}"
        )
    out_shape = (batch, w_out * groups, *out_size)
    if layout == "NHWC":
        out_shape = (batch, *out_size, w_out * groups)
    spec = ConvSpec.build(
        out_shape,
        w_shape,
        stride=stride_t,
        padding=pads,
        dilation=dilation_t,
        groups=groups,
        layout=layout,
        fn=fn,
    )
    # An output_padding >= stride (allowed below the dilation) lets the forward conv reach
    # past x; its adjoint only reads x's positions.
    return replace(spec, out_size=tuple(int(n) for n in in_size))


def conv_transpose(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: int | Sequence[int] | Sequence[Sequence[int]] = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    output_size: Sequence[int] | None = None,
    layout: str = "NCHW",
    algorithm: str = "auto",
) -> np.ndarray:
    """N-d transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    The adjoint of :func:`npconv.conv` with the same weight, stride, padding, dilation
    and groups (also called "deconvolution" or fractionally strided convolution).

    Parameters
    ----------
    x : array_like
        Input, ``(N, I, *spatial)`` for ``layout="NCHW"`` or ``(N, *spatial, I)`` for
        ``"NHWC"``; the batch axis may be left out.  Never modified.
    w : array_like
        Filters, ``(I, O/groups, *kernel)`` for ``"NCHW"`` (PyTorch) or
        ``(*kernel, O/groups, I)`` for ``"NHWC"``: the weight of the forward convolution
        from ``O`` to ``I`` channels that this one transposes.
    bias : array_like, optional
        One value per output channel, shape ``(O,)``.
    stride, dilation : int or tuple of int
        Of the forward convolution; each >= 1.
    padding : int, tuple or tuple of pairs
        The forward convolution's zero padding, which the transposed one removes from its
        output: an int, one int per dim, or one ``(before, after)`` pair per dim (ONNX
        ``pads``).
    output_padding : int or tuple of int
        Extra size added at the end of each output dim (to pick one of the input sizes a
        strided forward convolution maps to the same output size); each must be smaller
        than the stride or the dilation.
    groups : int
        Must divide ``I``; the output has ``O = w.shape[1] * groups`` channels in "NCHW".
    output_size : tuple of int, optional
        The output's spatial size (or full shape), as ``torch.nn.ConvTranspose2d``'s
        ``output_size`` and ONNX ``output_shape``: sets ``output_padding`` (then leave
        that at 0).
    layout : {"NCHW", "NHWC"}
        Memory layout of ``x``, ``w`` and the result.
    algorithm : str
        ``"auto"`` or one of :func:`npconv.algorithms`, for the inner convolution.

    Returns
    -------
    ndarray
        ``(N, O, *out)`` or ``(N, *out, O)`` with, per spatial dim,
        ``out = (in - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + 1 +
        output_padding``; dtype as for :func:`npconv.conv`.

    Raises
    ------
    ValueError
        Mismatched channels or bias, groups not dividing the channels, an
        ``output_padding`` not smaller than stride or dilation, an impossible
        ``output_size``, an empty output, a padding string, and every error of
        :func:`npconv.conv`.
    TypeError
        Non-numeric arrays, non-integer sizes.

    Notes
    -----
    Computed as ``prod(stride)`` stride-1 convolutions of ``x`` (one per sub-pixel phase
    of the output, each with the taps of the flipped kernel that reach it, input and
    output channels swapped per group), by the registry's algorithms: the multiply-adds
    of the forward convolution it transposes, with no zeros inserted and no scatter.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.array([[[1.0, 2.0]]])  # (N, I, L)
    >>> w = np.array([[[1.0, 10.0, 100.0]]])  # (I, O, K)
    >>> npconv.conv_transpose(x, w, stride=2)
    array([[[  1.,  10., 102.,  20., 200.]]])
    >>> npconv.conv_transpose(x, w, stride=2, padding=1, output_size=(4,)).shape
    (1, 1, 4)
    """
    return _conv_transpose(
        "conv_transpose",
        x,
        w,
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
        output_size=output_size,
        layout=layout,
        algorithm=algorithm,
    )


def _conv_transpose(
    fn: str,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None,
    *,
    algorithm: str = "auto",
    layout: str = "NCHW",
    **kwargs: Any,
) -> np.ndarray:
    """:func:`conv_transpose` with ``fn`` prefixed to every error message."""
    x = as_array(fn, "x", x)
    w = as_array(fn, "w", w)
    unbatched = x.ndim == w.ndim - 1
    if unbatched:
        x = x[None]
    spec = transpose_spec(fn, x.shape, w.shape, layout=layout, **kwargs)
    operands = [x, w]
    b = checked_bias(fn, bias, spec.in_channels)  # the transposed output's channels
    if b is not None:
        operands.append(b)
    compute, result = compute_dtypes(fn, *operands)
    gy = x.astype(compute, copy=False)
    if layout == "NCHW":
        gy = np.moveaxis(gy, 1, -1)  # (N, *in, I)
    wc = canonical_weight(w.astype(compute, copy=False), spec)  # (*kernel, O/G, I)
    y = adjoint(gy, wc, spec, algorithm, fn)  # (N, *out, O), a fresh array
    if b is not None:
        y += b.astype(compute)
    if layout == "NCHW":
        y = np.moveaxis(y, -1, 1)  # (N, O, *out)
    y = np.ascontiguousarray(y, dtype=result)
    return y[0] if unbatched else y


def _conv_transpose_nd(nd: int) -> Any:
    def conv_transpose_nd(
        x: npt.ArrayLike, w: npt.ArrayLike, bias: npt.ArrayLike | None = None, **kwargs: Any
    ) -> np.ndarray:
        name = f"conv_transpose{nd}d"
        w_arr = as_array(name, "w", w)
        if w_arr.ndim != nd + 2:
            raise ValueError(
                f"{name}: w must have {nd + 2} dims for a {nd}-d transposed convolution, "
                f"got w.ndim={w_arr.ndim} with shape {w_arr.shape}"
            )
        return _conv_transpose(name, x, w_arr, bias, **kwargs)

    conv_transpose_nd.__name__ = conv_transpose_nd.__qualname__ = f"conv_transpose{nd}d"
    conv_transpose_nd.__signature__ = inspect.signature(conv_transpose)  # type: ignore[attr-defined]
    conv_transpose_nd.__doc__ = f"""{nd}-d transposed convolution: :func:`conv_transpose`
    with ``w.ndim == {nd + 2}`` checked.

    Takes the same arguments as :func:`conv_transpose` and returns the same result.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((2, 4{", 5" * nd}))
    >>> w = np.ones((4, 3{", 3" * nd}))
    >>> npconv.conv_transpose{nd}d(x, w, stride=2, padding=1, output_padding=1).shape
    (2, 3{", 10" * nd})
    """
    return conv_transpose_nd


conv_transpose1d = _conv_transpose_nd(1)
conv_transpose2d = _conv_transpose_nd(2)
conv_transpose3d = _conv_transpose_nd(3)
