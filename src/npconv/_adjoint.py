"""Transposed convolutions and weight gradients as forward convolutions (JAX's rules).

A convolution is linear in its input, ``y = A x``.  Its transpose ``x_bar = A^T y_bar``
(PyTorch's ``conv_transpose``, ONNX's ``ConvTranspose``, and the gradient of a
convolution with respect to its input) is again a convolution: flip the kernel, swap
its input and output channels within each group, and slide it over ``y_bar`` spread
apart by the stride.  Spreading would multiply ``stride - 1`` zeros for every value, so
the work is split by sub-pixel phase instead (the polyphase decomposition): along an
axis, the results at positions ``i = rho, rho + s, ...`` receive only the taps ``k`` with
``k * dilation`` in one residue class modulo the stride ``s``, which form a smaller kernel
with dilation ``dilation / gcd(dilation, s)``.  Each phase is a stride-1 convolution of
(a slice of) ``y_bar`` itself with its own zero pads: :func:`phases` gives their specs,
and the dispatch runs each through the registry.  There are ``prod(stride)`` of them
and together they do exactly the forward's multiply-adds.

The weight gradient ``dL/dw[o, c, k] = sum_{n, p} x_pad[n, c, p*s + k*d] * gy[n, o, p]``
is a convolution too, with the batch and the channels exchanged: the samples of ``x``
become its input channels, the output gradient its filters (whose size is the output's),
the forward's dilation its stride and the forward's stride its dilation
(:func:`weight_gradient`).

Everything here is geometry and views: no convolution is computed in this module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from ._spec import ConvSpec
from ._windows import padded_by_mode

__all__ = [
    "Phase",
    "fold_padding",
    "phases",
    "region",
    "swapped_filters",
    "weight_gradient",
    "weight_gradient_spec",
]

#: Where each padded position reads from, for ``t`` = position - pad_before in an axis of
#: ``n`` elements (numpy.pad's "reflect", "edge" and "wrap"; pads are smaller than ``n``).
_PAD_SOURCE: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "reflect": lambda t, n: (n - 1) - np.abs((n - 1) - np.abs(t)),
    "replicate": lambda t, n: np.clip(t, 0, n - 1),
    "circular": lambda t, n: t % n,
}


def _spatial(spec: ConvSpec, index: tuple[Any, ...], rest: Any = slice(None)) -> tuple[Any, ...]:
    """An index of an array in the spec's layout: every sample, ``rest`` for the channel
    axis and ``index`` for the spatial axes."""
    return (slice(None), rest, *index) if spec.layout == "NCHW" else (slice(None), *index, rest)


@dataclass(frozen=True)
class Phase:
    """One sub-pixel phase of the adjoint: a stride-1 convolution of the gradient.

    ``source`` selects (per spatial axis) the slice of the gradient it reads, ``taps``
    its kernel from the swapped forward kernel, reversed, ``target`` the positions of the
    region it computes, and ``spec`` is the convolution ``(N, O, *source) -> (N, C,
    *target)`` in the forward's layout, whose zero pads place the slice.
    """

    source: tuple[slice, ...]
    taps: tuple[slice, ...]
    target: tuple[slice, ...]
    spec: ConvSpec


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


def region(spec: ConvSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Start and size, per axis, of the part of the padded input the adjoint computes.

    With zero padding only the input's own positions; otherwise all of the padded input,
    to be folded back onto the input by :func:`fold_padding`.
    """
    if spec.padding_mode == "zeros":
        return tuple(lo for lo, _ in spec.pads), spec.in_size
    return (0,) * spec.nd, spec.padded_size


def phases(spec: ConvSpec) -> list[Phase]:
    """The stride-1 convolutions that together compute the adjoint of ``spec``'s.

    One per combination of per-axis phases (``prod(stride)`` at most); phases that read
    no gradient at all (their positions only see taps in the padding) are left out, as
    their part of the result is zero.  At stride 1 there is one, with the whole kernel
    reversed.
    """
    start, size = region(spec)
    per_axis = [
        _axis_phases(*args) for args in zip(start, size, spec.kernel, spec.stride, spec.dilation)
    ]
    found = []
    for axes in itertools.product(*per_axis):
        source, pads = [], []
        for a, n_out in zip(axes, spec.out_size):
            extent = a.positions + (a.n_taps - 1) * a.dilation  # the phase's padded input
            first, last = max(0, -a.shift), min(n_out, extent - a.shift)  # gy[first:last]
            if last <= first:
                break  # this phase reads only zeros
            source.append(slice(first, last))
            pads.append((first + a.shift, extent - last - a.shift))
        else:
            inner = ConvSpec(
                layout=spec.layout,
                batch=spec.batch,
                in_channels=spec.out_channels,
                out_channels=spec.in_channels,
                groups=spec.groups,
                in_size=tuple(s.stop - s.start for s in source),
                kernel=tuple(a.n_taps for a in axes),
                stride=(1,) * spec.nd,
                dilation=tuple(a.dilation for a in axes),
                pads=tuple(pads),
                padding_mode="zeros",
                out_size=tuple(a.positions for a in axes),
            )
            taps = tuple(a.taps for a in axes)
            found.append(Phase(tuple(source), taps, tuple(a.target for a in axes), inner))
    return found


def phase_operands(
    part: Phase, gy: np.ndarray, w_t: np.ndarray, spec: ConvSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The input and filters of one phase: views of ``gy`` and of the swapped filters."""
    every = (slice(None),) * 2
    taps = (*every, *part.taps) if spec.layout == "NCHW" else (*part.taps, *every)
    return gy[_spatial(spec, part.source)], w_t[taps]


def phase_target(part: Phase, spec: ConvSpec) -> tuple[Any, ...]:
    """Where a phase's result goes in the region's result (in the spec's layout)."""
    return _spatial(spec, part.target)


def swapped_filters(w: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The filters of the adjoint: input and output channels swapped within each group.

    ``(O, C/G, *kernel) -> (C, O/G, *kernel)`` in "NCHW", ``(*kernel, C/G, O) ->
    (*kernel, O/G, C)`` in "NHWC": the convolution that maps ``O`` channels back to ``C``
    (not yet flipped: :func:`phases` reverse the taps).
    """
    g, cg, og, k = spec.groups, spec.group_in, spec.group_out, spec.kernel
    if spec.layout == "NCHW":
        swapped = w.reshape(g, og, cg, *k).swapaxes(1, 2)  # (G, C/G, O/G, *kernel)
        return swapped.reshape(spec.in_channels, og, *k)  # (C, O/G, *kernel)
    swapped = w.reshape(*k, cg, g, og)  # (*kernel, C/G, G, O/G)
    swapped = np.moveaxis(swapped, (-3, -1), (-1, -3))  # (*kernel, O/G, G, C/G)
    return swapped.reshape(*k, og, spec.in_channels)  # (*kernel, O/G, C)


def fold_padding(xp_bar: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Adjoint of the spec's (non-zero) padding: ``(N, C, *padded) -> (N, C, *in_size)``.

    Every padded position copied an input element; its gradient is added back there.
    ``xp_bar`` is in the spec's layout.
    """
    source = _PAD_SOURCE[spec.padding_mode]
    first = 2 if spec.layout == "NCHW" else 1
    for axis, (n, (lo, hi)) in enumerate(zip(spec.in_size, spec.pads), start=first):
        if not (lo or hi):
            continue
        index: list[Any] = [slice(None)] * xp_bar.ndim
        index[axis] = slice(lo, lo + n)
        folded = xp_bar[tuple(index)].copy()  # the input's own share
        pads = np.r_[0:lo, lo + n : lo + n + hi]  # positions in the pads
        index[axis] = source(pads - lo, n)
        np.add.at(folded, tuple(index), np.take(xp_bar, pads, axis=axis))
        xp_bar = folded
    return xp_bar


def weight_gradient_spec(spec: ConvSpec) -> tuple[ConvSpec, list[slice]]:
    """The convolution that computes ``dL/dw`` of ``spec``, and the crop of the input it
    reads (see :func:`weight_gradient`); for a padding mode other than zeros, of the
    input padded by it (:meth:`ConvSpec.valid`)."""
    if spec.padding_mode != "zeros":
        spec = spec.valid()
    crop, pads = [], []
    for size, (lo, _), k, s, d, o in zip(
        spec.in_size, spec.pads, spec.kernel, spec.stride, spec.dilation, spec.out_size
    ):
        used = (o - 1) * s + (k - 1) * d + 1  # padded positions read by some window
        kept = min(max(used - lo, 0), size)  # x[:kept]; zeros around it fill [0, used)
        crop.append(slice(0, kept))
        pads.append((min(lo, used), used - min(lo, used) - kept))
    inner = replace(
        spec,
        layout="NHWC",
        padding_mode="zeros",
        batch=spec.group_in,
        in_channels=spec.groups * spec.batch,
        in_size=tuple(c.stop for c in crop),
        kernel=spec.out_size,
        stride=spec.dilation,
        dilation=spec.stride,
        pads=tuple(pads),
        out_size=spec.kernel,
    )
    return inner, crop


def weight_gradient(
    spec: ConvSpec, x: np.ndarray, gy: np.ndarray
) -> tuple[ConvSpec, np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The convolution that computes ``dL/dw``, its operands, and how to read its result.

    ``x`` is the forward input ``(N, C, *in)`` and ``gy`` the output gradient ``(N, O,
    *out)`` (channels last for "NHWC").  The convolution (channels-last) has batch
    ``C/G``, ``G * N`` input channels (group-major), ``O`` outputs in ``G`` groups, the
    forward's output size as its kernel, stride ``dilation`` and dilation ``stride``; its
    result ``(C/G, *kernel, O)`` is ``dL/dw`` once its axes are moved, which the returned
    function does (to the weight's layout).  The padded input is made exactly as long as
    the windows reach (inputs beyond the last window cropped, zeros added where the
    windows reach past ``x``), so that the result is exactly the kernel's size; a
    padding mode other than zeros is applied to ``x`` first.
    """
    x, spec = padded_by_mode(x, spec, channels_last=spec.layout == "NHWC")
    nd, g, n = spec.nd, spec.groups, spec.batch
    inner, crop = weight_gradient_spec(spec)
    sizes = inner.in_size
    if spec.layout == "NCHW":
        x = x[tuple([slice(None), slice(None), *crop])]
        xt = x.reshape(n, g, spec.group_in, *sizes)  # (N, G, C/G, *in)
        xt = xt.transpose(2, *range(3, 3 + nd), 1, 0)  # (C/G, *in, G, N)
        wt = gy.transpose(*range(2, 2 + nd), 0, 1)  # (*out, N, O)
    else:
        x = x[tuple([slice(None), *crop])]
        xt = x.reshape(n, *sizes, g, spec.group_in)  # (N, *in, G, C/G)
        xt = xt.transpose(1 + nd + 1, *range(1, 1 + nd), 1 + nd, 0)  # (C/G, *in, G, N)
        wt = gy.transpose(*range(1, 1 + nd), 0, 1 + nd)  # (*out, N, O)
    xt = xt.reshape(spec.group_in, *sizes, g * n)  # (C/G, *in, G*N): a copy if G, N > 1

    def as_weight(y: np.ndarray) -> np.ndarray:  # (C/G, *kernel, O) -> the weight's layout
        if spec.layout == "NCHW":
            return y.transpose(1 + nd, 0, *range(1, 1 + nd))  # (O, C/G, *kernel)
        return y.transpose(*range(1, 1 + nd), 0, 1 + nd)  # (*kernel, C/G, O)

    return inner, xt, wt, as_weight
