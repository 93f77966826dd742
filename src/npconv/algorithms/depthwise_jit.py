"""``depthwise_jit``: compiled direct convolution, plane by plane, for depthwise layers.

In a depthwise layer (``groups == C``) every output channel ``o`` sees one input plane
(``c = o // (O/C)``, for a channel multiplier ``O/C`` of 1 or more); in general an
output plane sums the ``C/G`` input planes of its group.  The kernel (numba) runs one
output plane per thread (``prange`` over ``N * O``) and, for each input plane of it:

1. copies the plane into a zero-padded buffer split into stride phases (input rows and
   columns ``p * s + r`` of phase ``r`` stored together), so that every tap of a
   strided or dilated kernel reads one contiguous run of the buffer: zero padding is
   fused here, and the input is never padded as a whole;
2. adds every tap into an accumulator that starts at the bias, one vectorised pass per
   tap over the output plane widened to the buffer's row length (the few extra columns
   are dropped): ``acc[m] += w[tap] * buf[offset(tap) + m]``.

Then it copies the plane out of the accumulator.  1-d and 2-d convolutions run as 3-d
ones with unit leading axes.  Channels-first data go straight in and out; channels-last
data are transposed to and from channels-first.

Cost: ``N * O * C/G * prod(kernel) * prod(out)`` multiply-adds at SIMD speed, plus a copy
of each input plane per output plane of its group and a copy of the output, on
:func:`npconv.get_threads` threads: for depthwise layers faster than PyTorch's CPU
convolution, for dense layers (``C/G`` large) far slower than a GEMM.  Exact for integers
(it sums in int64, or in float64 below 2**53).  It needs numba (the ``jit`` extra); its
kernels compile on first use for each dtype (seconds), then load from numba's cache.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .._cost import units
from .._spec import ConvSpec
from ._jit import kernel, prange


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
                        row = dst[dst0 + i, dst1 + j]
                        for k in range(nw):
                            row[dst2 + k] = src[w0 + k * sw]


@kernel
def _planes(x, w, b, stride, dilation, lo, out):
    """Grouped convolution of ``x`` (N, C, D, H, W) with ``w`` (O, C/G, KD, KH, KW) plus ``b``.

    Returns ``(N, O, *out)``; ``lo`` are the zero pads before each axis.
    """
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
    y = np.empty((x.shape[0], o_channels, out[0], out[1], out[2]), x.dtype)
    for p in prange(x.shape[0] * o_channels):
        n, o = p // o_channels, p % o_channels
        buf = np.empty((n_phases, size[0], size[1], size[2]), x.dtype)
        flat = buf.reshape(-1)
        acc = np.empty(out[0] * rows, x.dtype)
        acc[:] = b[o]
        for c in range(group_in):  # the input channels of o's group
            _phases(x[n, o // group_out * group_in + c], buf, lo, stride, size)
            taps_oc = w[o, c].reshape(-1)
            for t in range(taps):
                tap, src = taps_oc[t], flat[offsets[t] : offsets[t] + span]
                for m in range(span):
                    acc[m] += tap * src[m]
        for i in range(out[0]):
            for j in range(out[1]):
                row, start = y[n, o, i, j], (i * size[1] + j) * size[2]
                for k in range(out[2]):
                    row[k] = acc[start + k]
    return y


def conv_channels_first(
    xp: np.ndarray, wc: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """Depthwise convolution of an unpadded ``(N, C, *in)`` input: ``(N, O, *out)``.

    ``wc`` is ``(O, C/G, *kernel)``; the spec's zero pads are applied here.
    """
    lead = (1,) * (3 - spec.nd)  # 1-d and 2-d as 3-d with unit leading axes

    def ints(values: tuple[int, ...], fill: int) -> np.ndarray:
        return np.array((fill,) * len(lead) + values, dtype=np.int64)

    x = np.ascontiguousarray(xp).reshape(spec.batch, spec.in_channels, *lead, *xp.shape[2:])
    w = np.ascontiguousarray(wc, dtype=x.dtype)
    w = w.reshape(spec.out_channels, spec.group_in, *lead, *spec.kernel)  # (O, C/G, 3 axes)
    b = np.zeros(spec.out_channels, x.dtype) if bias is None else bias.astype(x.dtype)
    lo = ints(tuple(p[0] for p in spec.pads), 0)
    y = _planes(x, w, b, ints(spec.stride, 1), ints(spec.dilation, 1), lo, ints(spec.out_size, 1))
    return y.reshape(spec.batch, spec.out_channels, *spec.out_size)  # (N, O, *out)


def conv(
    xp: np.ndarray, wc: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """The same on channels-last ``(N, *in, C)`` and ``(*kernel, C/G, O)``: ``(N, *out, O)``."""
    x = np.moveaxis(xp, -1, 1)  # (N, C, *in)
    w = np.moveaxis(wc, (-1, -2), (0, 1))  # (O, C/G, *kernel)
    return np.moveaxis(conv_channels_first(x, w, spec, bias), 1, -1)


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """A vectorised multiply-add per tap and output, a pass over input and output."""
    item = max(np.dtype(dtype).itemsize, 4)
    outputs = spec.batch * spec.out_channels * math.prod(spec.out_size)
    inputs = spec.batch * spec.in_channels * math.prod(spec.in_size)
    taps = math.prod(spec.kernel) * spec.group_in
    copies = inputs * spec.group_out  # every input plane copied once per output plane
    return units(passes=(taps * outputs + 2 * outputs + copies) * item, calls=1)
