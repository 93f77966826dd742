"""``depthwise_jit``: compiled direct convolution, plane by plane, for depthwise layers.

In a depthwise layer (``groups == C``) every output channel ``o`` sees one input plane
(``c = o // (O/C)``, for a channel multiplier ``O/C`` of 1 or more); in general an
output plane sums the ``C/G`` input planes of its group.  The kernel (numba) runs the
output planes one after another (on the calling thread, or for large layers on each
of npconv's threads, which take runs of planes from a shared counter until none is
left) and, for each input plane of one:

1. copies the plane into a zero-padded buffer split into stride phases (input rows and
   columns ``p * s + r`` of phase ``r`` stored together), so that every tap of a
   strided or dilated kernel reads one contiguous run of the buffer: zero padding is
   fused here, and the input is never padded as a whole;
2. adds every tap into an accumulator that starts at the bias, one vectorised pass per
   tap over the output plane widened to the buffer's row length (the few extra columns
   are dropped): ``acc[m] += w[tap] * buf[offset(tap) + m]``.

Then it copies the plane out of the accumulator.  1-d and 2-d convolutions run as 3-d
ones with unit leading axes.  Channels-first data go straight in and out; channels-last
data are transposed to and from channels-first.  Its weight gradient for channels-first
data (:func:`weight_grad_channels_first`) adds, per output channel and tap, the products
of each output-gradient row with the input row the tap reads into a row of partial sums;
for 3x3 depthwise kernels it keeps a channel's nine sums in registers instead.

Cost: ``N * O * C/G * prod(kernel) * prod(out)`` multiply-adds at SIMD speed, plus a copy
of each input plane per output plane of its group and a copy of the output, on one
thread below :data:`SHARED_VALUES` input and output values and shared among the threads
from there on: for depthwise layers near PyTorch's CPU convolution, for dense layers
(``C/G`` large) far slower than a GEMM.  The threads are npconv's pinned ones
(:mod:`npconv._threads`), not numba's: on two numba threads MobileNetV2's 3x3 144 @56
layer took 0.5-0.8 ms alone but 2.3-2.6 ms right after a 512x512 GEMM.  Exact for integers
(it sums in int64, or in float64 below 2**53).  It needs numba (the ``jit`` extra); its
kernels compile on first use for each dtype (seconds), then load from numba's cache.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from functools import partial

import numpy as np

from .._cost import units
from .._jit import copy_rows, fetch_add, kernel
from .._spec import ConvSpec
from .._threads import get_threads, parallel_map, runs_alone
from .._windows import move_channels_first, move_channels_last, weight_first

#: The vector width, in float32 lanes, that a row of the 3x3 kernel is rounded up to:
#: AVX-512's 16 (eight AVX2 lanes twice).  Rounded so, MobileNetV2's 3x3 384 @14 took
#: 0.07 against 0.11 ms and 144 @56 0.20 against 0.25 ms (one thread).
LANES = 16


@kernel
def _phases(x, buf, lo, stride, size):
    """Copy plane ``x`` (D, H, W) into ``buf`` (phases, *size), zero-padded, by stride phase.

    Element ``x[i]`` (i per axis) lands in phase ``(i + lo) % stride`` at position
    ``(i + lo) // stride``, if within ``size``.
    """
    buf[:] = 0
    sd, sh, sw = stride[0], stride[1], stride[2]
    for pd in range(sd):
        d0 = (pd - lo[0]) % sd
        dst0 = (d0 + lo[0]) // sd
        nd = min((x.shape[0] - d0 + sd - 1) // sd, size[0] - dst0)
        for ph in range(sh):
            h0 = (ph - lo[1]) % sh
            dst1 = (h0 + lo[1]) // sh
            nh = min((x.shape[1] - h0 + sh - 1) // sh, size[1] - dst1)
            for pw in range(sw):
                w0 = (pw - lo[2]) % sw
                dst2 = (w0 + lo[2]) // sw
                nw = min((x.shape[2] - w0 + sw - 1) // sw, size[2] - dst2)
                dst = buf[(pd * sh + ph) * sw + pw]
                for i in range(nd):
                    for j in range(nh):
                        src = x[d0 + i * sd, h0 + j * sh]
                        dst[dst0 + i, dst1 + j, dst2 : dst2 + nw] = src[w0::sw][:nw]


@kernel
def _add_taps(acc, buf, taps, offsets, span):
    """``acc[m] += taps[t] * buf[offsets[t] + m]`` for every tap ``t`` and ``m < span``.

    Nine taps at a time are held in registers (one pass over ``acc`` for a 3x3 kernel),
    the rest one pass each.
    """
    nine = len(taps) - len(taps) % 9
    for t in range(0, nine, 9):
        w0, w1, w2, w3, w4 = taps[t], taps[t + 1], taps[t + 2], taps[t + 3], taps[t + 4]
        w5, w6, w7, w8 = taps[t + 5], taps[t + 6], taps[t + 7], taps[t + 8]
        x0, x1, x2 = buf[offsets[t] :], buf[offsets[t + 1] :], buf[offsets[t + 2] :]
        x3, x4, x5 = buf[offsets[t + 3] :], buf[offsets[t + 4] :], buf[offsets[t + 5] :]
        x6, x7, x8 = buf[offsets[t + 6] :], buf[offsets[t + 7] :], buf[offsets[t + 8] :]
        for m in range(span):
            acc[m] += (
                w0 * x0[m] + w1 * x1[m] + w2 * x2[m] + w3 * x3[m] + w4 * x4[m]
                + w5 * x5[m] + w6 * x6[m] + w7 * x7[m] + w8 * x8[m]
            )  # fmt: skip
    for t in range(nine, len(taps)):
        tap, x0 = taps[t], buf[offsets[t] : offsets[t] + span]
        for m in range(span):
            acc[m] += tap * x0[m]


@kernel
def _planes(x, w, b, stride, dilation, lo, y, taken, step):
    """Grouped convolution of ``x`` (N, C, D, H, W) with ``w`` (O, C/G, KD, KH, KW) plus ``b``
    into the planes (sample-major) of ``y`` (N, O, *out) that this thread takes, ``step``
    at a time, from the counter ``taken[0]`` (:func:`_shared_planes`); ``lo`` are the zero pads
    before each axis."""
    out = y.shape[2:]
    o_channels, group_in = w.shape[0], w.shape[1]
    group_out = o_channels // (x.shape[1] // group_in)
    taps = w.shape[2] * w.shape[3] * w.shape[4]
    # the buffer of one phase: every input position a tap reads, (Dq, Hq, Wq)
    size = np.empty(3, np.int64)
    for axis in range(3):
        size[axis] = out[axis] + (w.shape[2 + axis] - 1) * dilation[axis] // stride[axis]
    phase, rows = size[0] * size[1] * size[2], size[1] * size[2]
    # offset of every tap in the flat buffer, which the output plane, widened to
    # (D_out, Hq, Wq), reads from there on
    offsets = np.empty(taps, np.int64)
    for t in range(taps):
        kd, kh, kw = t // (w.shape[3] * w.shape[4]), t // w.shape[4] % w.shape[3], t % w.shape[4]
        rd, rh, rw = kd * dilation[0], kh * dilation[1], kw * dilation[2]
        r = ((rd % stride[0]) * stride[1] + rh % stride[1]) * stride[2] + rw % stride[2]
        q = (rd // stride[0] * size[1] + rh // stride[1]) * size[2] + rw // stride[2]
        offsets[t] = r * phase + q
    span = ((out[0] - 1) * size[1] + out[1] - 1) * size[2] + out[2]
    n_phases = stride[0] * stride[1] * stride[2]
    # scratch, allocated here (the compiler then knows that no two of these arrays
    # overlap, and vectorises the passes without checks) and reused from plane to plane
    # (warm in the cache)
    buf = np.empty((n_phases, size[0], size[1], size[2]), x.dtype)
    acc = np.empty(out[0] * rows, x.dtype)
    count = y.shape[0] * o_channels
    first = fetch_add(taken, 0, step)
    while first < count:
        for p in range(first, min(first + step, count)):
            n, o = p // o_channels, p % o_channels
            acc[:] = b[o]
            for c in range(group_in):  # the input channels of o's group
                _phases(x[n, o // group_out * group_in + c], buf, lo, stride, size)
                _add_taps(acc, buf.reshape(-1), w[o, c].reshape(-1), offsets, span)
            for i in range(out[0]):
                for j in range(out[1]):
                    start = (i * size[1] + j) * size[2]
                    y[n, o, i, j] = acc[start : start + out[2]]
        first = fetch_add(taken, 0, step)


@kernel
def _planes_dots(x, w, b, stride, dilation, lo, out):
    """The same as :func:`_planes`, one output at a time: for outputs far fewer than the
    kernel's taps (a weight gradient, whose kernel is the output gradient).

    Each output's products are added along the kernel's last axis into a row of partial
    sums (a vectorised pass per kernel row), summed once at the end.
    """
    o_channels, group_in = w.shape[0], w.shape[1]
    group_out = o_channels // (x.shape[1] // group_in)
    kd, kh, kw = w.shape[2], w.shape[3], w.shape[4]
    size = np.empty(3, np.int64)  # the zero-padded plane: every position a window reads
    copied = np.empty(3, np.int64)  # how much of x lands in it
    for axis in range(3):
        reach = (w.shape[2 + axis] - 1) * dilation[axis] + 1
        size[axis] = (out[axis] - 1) * stride[axis] + reach
        copied[axis] = max(0, min(x.shape[2 + axis], size[axis] - lo[axis]))
    y = np.empty((x.shape[0], o_channels, out[0], out[1], out[2]), x.dtype)
    buf = np.zeros((size[0], size[1], size[2]), x.dtype)  # zero borders
    acc = np.empty(kw, x.dtype)
    for p in range(x.shape[0] * o_channels):
        n, o = p // o_channels, p % o_channels
        plane = y[n, o]
        plane[:] = b[o]
        for c in range(group_in):
            src = x[n, o // group_out * group_in + c]
            d0, d1, d2 = copied[0], copied[1], copied[2]
            for i in range(d0):
                copy_rows(buf[lo[0] + i, lo[1] : lo[1] + d1, lo[2] : lo[2] + d2], src[i])
            k = w[o, c]
            for i in range(out[0]):
                for j in range(out[1]):
                    for m in range(out[2]):
                        acc[:] = 0
                        first = m * stride[2]
                        for a in range(kd):
                            for r in range(kh):
                                row = buf[
                                    i * stride[0] + a * dilation[0],
                                    j * stride[1] + r * dilation[1],
                                ]
                                taps = k[a, r]
                                if dilation[2] == 1:
                                    seg = row[first : first + kw]
                                    for t in range(kw):
                                        acc[t] += seg[t] * taps[t]
                                else:
                                    for t in range(kw):
                                        acc[t] += row[first + t * dilation[2]] * taps[t]
                        plane[i, j, m] += acc.sum()
    return y


@kernel
def _write_row(row, sums, add):
    """``row[:] = sums[:len(row)]``, or ``+=`` with ``add``."""
    if add:
        for j in range(len(row)):
            row[j] += sums[j]
    else:
        for j in range(len(row)):
            row[j] = sums[j]


@kernel
def _rows_3x3(plane, buf, k, start, add, sums):
    """Stride 1: each row of ``plane`` (oh, ow) gets ``start`` plus the nine taps ``k``
    over three rows of ``buf``, computed for ``len(sums)`` outputs (whole vectors)."""
    w0, w1, w2, w3, w4, w5 = k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1], k[1, 2]
    w6, w7, w8 = k[2, 0], k[2, 1], k[2, 2]
    for i in range(plane.shape[0]):
        r0, r1, r2 = buf[i], buf[i + 1], buf[i + 2]
        for j in range(len(sums)):
            sums[j] = start + (
                w0 * r0[j] + w1 * r0[j + 1] + w2 * r0[j + 2]
                + w3 * r1[j] + w4 * r1[j + 1] + w5 * r1[j + 2]
                + w6 * r2[j] + w7 * r2[j + 1] + w8 * r2[j + 2]
            )  # fmt: skip
        _write_row(plane[i], sums, add)


@kernel
def _rows_3x3_stride2(plane, buf, k, start, add, sums):
    """:func:`_rows_3x3` at stride 2."""
    w0, w1, w2, w3, w4, w5 = k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1], k[1, 2]
    w6, w7, w8 = k[2, 0], k[2, 1], k[2, 2]
    for i in range(plane.shape[0]):
        r0, r1, r2 = buf[2 * i], buf[2 * i + 1], buf[2 * i + 2]
        for j in range(len(sums)):
            sums[j] = start + (
                w0 * r0[2 * j] + w1 * r0[2 * j + 1] + w2 * r0[2 * j + 2]
                + w3 * r1[2 * j] + w4 * r1[2 * j + 1] + w5 * r1[2 * j + 2]
                + w6 * r2[2 * j] + w7 * r2[2 * j + 1] + w8 * r2[2 * j + 2]
            )  # fmt: skip
        _write_row(plane[i], sums, add)


@kernel(flags=("contract",))
def _planes_3x3(x, w, b, stride, lo, y, taken, step):
    """The same for a 2-d 3x3 kernel of dilation 1 and stride 1 or 2, ``x`` (N, C, H, W).

    The nine taps stay in registers: one pass per output row over three input rows,
    rounded up to a multiple of 16 outputs (:data:`LANES`) into a scratch row, so that
    the whole pass runs in vectors (a 14-wide row would otherwise run in scalar code);
    the row's own outputs are then copied out.  The stride is chosen per plane, outside
    the loops over rows (within them it cost a third of the time).  Compiled with
    multiply-adds fused (``contract``): 5-10% faster on MobileNetV2's 144 @56 and
    96 @112 layers.
    """
    o_channels, group_in = w.shape[0], w.shape[1]
    group_out = o_channels // (x.shape[1] // group_in)
    oh, ow = y.shape[2], y.shape[3]
    wide = -(-ow // LANES) * LANES  # the outputs computed per row
    height, width = (oh - 1) * stride + 3, (wide - 1) * stride + 3  # the input read
    rows_in, cols_in = min(x.shape[2], height - lo[0]), min(x.shape[3], width - lo[1])
    buf = np.zeros((height, width), x.dtype)  # zero borders, written once
    sums = np.empty(wide, x.dtype)
    zero = np.zeros(1, x.dtype)  # the start of a group's later planes, in x's dtype
    count = y.shape[0] * o_channels
    first = fetch_add(taken, 0, step)
    while first < count:
        for p in range(first, min(first + step, count)):
            n, o = p // o_channels, p % o_channels
            for c in range(group_in):
                plane = x[n, o // group_out * group_in + c]
                copy_rows(buf[lo[0] : lo[0] + rows_in, lo[1] : lo[1] + cols_in], plane)
                start = b[o] if c == 0 else zero[0]
                if stride == 1:
                    _rows_3x3(y[n, o], buf, w[o, c], start, c > 0, sums)
                else:
                    _rows_3x3_stride2(y[n, o], buf, w[o, c], start, c > 0, sums)
        first = fetch_add(taken, 0, step)


@kernel
def _weight_grad(xp, gy, group_in, stride, dilation, acc, dw):
    """``dw[o, c] = sum gy[n, o, i] * xp[n, ci, i * stride + k * dilation]`` (3 axes).

    ``xp`` (N, C, D, H, W) is padded, ``gy`` (N, O, *out), ``ci`` the ``c``-th input
    channel of ``o``'s group.  Per output channel and tap, the products of each output
    row are added into a row of partial sums, ``acc`` (KD, KH, KW, out[2]): a vectorised
    pass per tap and row; each row is summed once at the end.
    """
    o_channels = gy.shape[1]
    group_out = o_channels // (xp.shape[1] // group_in)
    kd, kh, kw = dw.shape[2], dw.shape[3], dw.shape[4]
    od, oh, ow = gy.shape[2], gy.shape[3], gy.shape[4]
    s0, s1, s2 = stride[0], stride[1], stride[2]
    d0, d1, d2 = dilation[0], dilation[1], dilation[2]
    for o in range(o_channels):
        for c in range(group_in):
            ci = o // group_out * group_in + c
            acc[:] = 0
            for n in range(gy.shape[0]):
                for i in range(od):
                    for j in range(oh):
                        g = gy[n, o, i, j]
                        for a in range(kd):
                            for r in range(kh):
                                row = xp[n, ci, i * s0 + a * d0, j * s1 + r * d1]
                                for t in range(kw):
                                    sums = acc[a, r, t]
                                    if s2 == 1:  # a slice: no negative indices to check
                                        seg = row[t * d2 : t * d2 + ow]
                                        for m in range(ow):
                                            sums[m] += g[m] * seg[m]
                                    else:
                                        for m in range(ow):
                                            sums[m] += g[m] * row[t * d2 + m * s2]
            for a in range(kd):
                for r in range(kh):
                    for t in range(kw):
                        dw[o, c, a, r, t] = acc[a, r, t].sum()


@kernel(flags=("contract", "reassoc"))
def _weight_grad_3x3(xp, gy, s0, s1, zero, dw):
    """:func:`_weight_grad` for 2-d 3x3 kernels (dilation 1, stride ``s0`` down the
    columns and 1 or 2 along the rows, ``s1``) with one input channel per output
    channel: ``xp`` (N, C, H, W), ``gy`` (N, O, *out), ``dw`` (O, 1, 3, 3).

    A channel's nine sums stay in nine scalars while each output-gradient row is
    multiplied by the three input rows its taps read; the additions are reassociated,
    so that they are vectorised along the row (``zero`` holds a 0 in their dtype).  The
    row stride is a constant in each loop (a variable one kept the loads from being
    vectorised: 1.6 against 0.3 ms on MobileNetV2's 144 @56).
    """
    group_out = gy.shape[1] // xp.shape[1]
    for o in range(gy.shape[1]):
        c = o // group_out
        s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero[0]
        for n in range(gy.shape[0]):
            for j in range(gy.shape[2]):
                g = gy[n, o, j]
                x0, x1, x2 = xp[n, c, j * s0], xp[n, c, j * s0 + 1], xp[n, c, j * s0 + 2]
                if s1 == 1:
                    for m in range(gy.shape[3]):
                        v = g[m]
                        s00 += v * x0[m]
                        s01 += v * x0[m + 1]
                        s02 += v * x0[m + 2]
                        s10 += v * x1[m]
                        s11 += v * x1[m + 1]
                        s12 += v * x1[m + 2]
                        s20 += v * x2[m]
                        s21 += v * x2[m + 1]
                        s22 += v * x2[m + 2]
                else:
                    for m in range(gy.shape[3]):
                        v = g[m]
                        s00 += v * x0[2 * m]
                        s01 += v * x0[2 * m + 1]
                        s02 += v * x0[2 * m + 2]
                        s10 += v * x1[2 * m]
                        s11 += v * x1[2 * m + 1]
                        s12 += v * x1[2 * m + 2]
                        s20 += v * x2[2 * m]
                        s21 += v * x2[2 * m + 1]
                        s22 += v * x2[2 * m + 2]
        dw[o, 0, 0, 0], dw[o, 0, 0, 1], dw[o, 0, 0, 2] = s00, s01, s02
        dw[o, 0, 1, 0], dw[o, 0, 1, 1], dw[o, 0, 1, 2] = s10, s11, s12
        dw[o, 0, 2, 0], dw[o, 0, 2, 1], dw[o, 0, 2, 2] = s20, s21, s22


def _as_3d(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, *spatial) of a 1-, 2- or 3-d convolution as 3-d: unit leading axes."""
    return a.reshape(*a.shape[:2], *(1,) * (5 - a.ndim), *a.shape[2:])


def _axes_3d(values: tuple[int, ...], fill: int) -> np.ndarray:
    """Per-axis ``values`` (stride, pads, ...) for :func:`_as_3d`'s axes: ``fill`` first."""
    return np.array((fill,) * (3 - len(values)) + tuple(values), dtype=np.int64)


def weight_grad_channels_first(xp: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``dL/dw`` of a padded ``(N, C, *padded)`` input and output gradient ``(N, O, *out)``.

    Returns ``(O, C/G, *kernel)``, by :func:`_weight_grad` on the calling thread
    (:func:`_weight_grad_3x3` for 3x3 depthwise kernels, 2-5x faster on MobileNetV2's).
    """
    x, g = np.ascontiguousarray(xp), np.ascontiguousarray(gy, dtype=xp.dtype)
    if (
        spec.kernel == (3, 3) and spec.dilation == (1, 1)
        and spec.stride[1] in (1, 2) and spec.group_in == 1
    ):  # fmt: skip
        dw = np.empty((spec.out_channels, 1, 3, 3), x.dtype)
        _weight_grad_3x3(x, g, *spec.stride, np.zeros(1, x.dtype), dw)
        return dw
    x, g = _as_3d(x), _as_3d(g)
    dw = _as_3d(np.empty((spec.out_channels, spec.group_in, *spec.kernel), x.dtype))
    acc = np.empty((*dw.shape[2:], g.shape[-1]), x.dtype)  # a row of partial sums per tap
    _weight_grad(x, g, spec.group_in, _axes_3d(spec.stride, 1), _axes_3d(spec.dilation, 1), acc, dw)
    return dw.reshape(spec.out_channels, spec.group_in, *spec.kernel)


def conv_channels_first(
    xp: np.ndarray, wc: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """Depthwise convolution of an unpadded ``(N, C, *in)`` input: ``(N, O, *out)``.

    ``wc`` is ``(O, C/G, *kernel)``; the spec's zero pads are applied here.
    """
    b = np.zeros(spec.out_channels, xp.dtype) if bias is None else bias.astype(xp.dtype)
    x, w = np.ascontiguousarray(xp), np.ascontiguousarray(wc, dtype=xp.dtype)
    y = np.empty((spec.batch, spec.out_channels, *spec.out_size), x.dtype)  # (N, O, *out)
    if spec.kernel == (3, 3) and spec.dilation == (1, 1) and spec.stride in ((1, 1), (2, 2)):
        lo = np.array([p[0] for p in spec.pads])
        _shared_planes(partial(_planes_3x3, x, w, b, spec.stride[0], lo, y), x, y)
        return y
    x, w = _as_3d(x), _as_3d(w)  # (N, C, 3 axes), (O, C/G, 3 axes)
    lo = _axes_3d(tuple(p[0] for p in spec.pads), 0)
    stride, dilation = _axes_3d(spec.stride, 1), _axes_3d(spec.dilation, 1)
    # one output at a time where the kernel has far more taps than there are outputs:
    # weight gradients of 3x3 depthwise layers at 56x56 took 1.2 ms so and 12 ms plane by
    # plane, at 14x14 1.0 ms and 0.8 ms (MobileNetV2, 2 threads)
    if 32 * math.prod(spec.out_size) < math.prod(spec.kernel):
        out = _axes_3d(spec.out_size, 1)
        return _planes_dots(x, w, b, stride, dilation, lo, out).reshape(y.shape)
    _shared_planes(partial(_planes, x, w, b, stride, dilation, lo, _as_3d(y)), x, y)
    return y


#: Input and output values from which a layer's planes are shared out among the threads
#: (below, the pool's hand-off costs more than it saves).  Measured on 3x3 layers at
#: batch 1, us on two threads / one (Intel Xeon, 2 cores): 64 @14 (25,088 values) 48 /
#: 29, 32 @28 (50,176) 44 / 35, 64 @28 (100,352) 55 / 58, MobileNetV2's 384 @14
#: (150,528) 70-73 / 80-92 and 144 @56 180-236 / 320-370.
SHARED_VALUES = 2**17
#: Runs of planes per thread in a shared layer (each thread takes the next run when it
#: is done with one).
RUNS_PER_THREAD = 8


def _shared_planes(planes: Callable[[np.ndarray, int], None], x: np.ndarray, y: np.ndarray) -> None:
    """``planes(taken, step)`` on every thread that computes the output planes of ``y``
    (N, O, ...) for input ``x``: npconv's pinned threads
    (:func:`npconv._threads.parallel_map`) from :data:`SHARED_VALUES` on, else, or while
    OpenBLAS's threads likely spin with fewer samples than threads
    (:func:`npconv._threads.runs_alone`), the calling thread alone.

    Each thread takes runs of planes (an even share's :data:`RUNS_PER_THREAD`-th) from
    the counter ``taken`` until none is left, so that a thread that starts late or runs
    on a busier core takes fewer.  With a half each, the two halves of MobileNetV2's
    144 @56 took 190 and 265 us in one process, 264 and 197 in another: the busier core
    varies.  Taken in runs, that layer ran 1.03x-1.06x faster (alternating blocks of
    calls in one process, faster in 39-46 of 60 blocks).
    """
    count = y.shape[0] * y.shape[1]
    large = x.size + y.size >= SHARED_VALUES and not runs_alone(y.shape[0])
    threads = min(get_threads() if large else 1, count)
    step = max(count // (RUNS_PER_THREAD * threads), 1) if threads > 1 else max(count, 1)
    taken = np.zeros(1, np.int64)
    parallel_map(lambda _: planes(taken, step), range(threads))


def conv(
    xp: np.ndarray, wc: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """The same on channels-last ``(N, *in, C)`` and ``(*kernel, C/G, O)``: ``(N, *out, O)``."""
    x = move_channels_first(xp)  # (N, C, *in)
    w = weight_first(wc)  # (O, C/G, *kernel)
    return move_channels_last(conv_channels_first(x, w, spec, bias))


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """A vectorised multiply-add per tap and output, a pass over input and output (on
    the calling thread, or shared among the threads from :data:`SHARED_VALUES` values
    on), and a call's worth of setting up per pair of output and input
    planes (measured 27-45 ns a pair on dense 3x3 layers of 1x1 to 4x4 pixels, 63-112 ns
    on 1x1 and 5x5 kernels: 2-30 ms where ``im2col`` takes 0.3 ms)."""
    item = max(np.dtype(dtype).itemsize, 4)
    outputs = spec.batch * spec.out_channels * math.prod(spec.out_size)
    inputs = spec.batch * spec.in_channels * math.prod(spec.in_size)
    taps = math.prod(spec.kernel) * spec.group_in
    copies = inputs * spec.group_out  # every input plane copied once per output plane
    pairs = spec.batch * spec.out_channels * spec.group_in
    passes = (taps * outputs + 2 * outputs + copies) * item
    kind = "passes" if inputs + outputs >= SHARED_VALUES else "serial"  # shared or not
    return units(**{kind: passes}, calls=1 + pairs)
