"""``direct_jit``: compiled direct convolution of 3x3 stride-1 layers with few channels.

Where a layer has few input channels, its patch matrix is thin (``9 * C/G`` columns)
and BLAS runs the product far below its peak, while copying the patches costs more
than the product itself.  This kernel (numba) multiplies the taps straight from the
image instead, two output channels by two output rows at a time:

1. each sample's input rows are copied channel by channel into a zero-bordered buffer
   ``(C, rows, cols)`` (padding fused; channels-last data are transposed on the way),
   each row as long as the output row rounded up to whole vectors (:data:`LANES`) plus
   the two columns the taps reach beyond it;
2. for each pair of output channels ``o, o'`` and output rows ``i, i + 1``, four rows of
   accumulators start at the bias, and for each input channel ``c`` of their group one
   vectorised pass along the row adds the 36 products of the two channels' nine taps
   (held in registers) with the four input rows ``i .. i + 3`` of ``c``::

       acc[o, r, j] += sum_{a, b} w[o, c, a, b] * buf[c, i + r + a, j + b]

   Every loaded input vector serves four accumulators, so that the multiply-adds, not
   the loads, bound the pass (one output channel at a time loaded nine vectors per
   nine multiply-adds);
3. the rows are written into the result, in its layout.

npconv's threads share the samples, or at batch 1 the rows (:mod:`npconv._threads`),
from :data:`SHARED_MACS` multiply-adds on.  Cost: the direct multiply-adds, ``9 * C/G``
per output, at a fixed fraction of the machine's vector speed whatever the channel
count, plus each pair's set-up and a pass over the input and the output: it wins where
the channels are few (the notes' examples: 3 and 8 input channels, 16 outputs; VGG's
first layer, 3 -> 64), and loses to a GEMM or Winograd where they are many.  Error: a
direct sum, as a GEMM's (multiply-adds fused).  Floats and complex numbers, not
integers.  It needs numba (the ``jit`` extra).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .._cost import units
from .._jit import kernel
from .._spec import ConvSpec
from .._threads import even_runs, get_threads, parallel_map
from .._windows import move_channels_first, weight_first

#: The vector width, in float32 lanes, that an output row is rounded up to (AVX-512).
LANES = 16


@kernel
def _fill(x, first, lo, buf):
    """Copy the input rows ``first - lo[0] ..`` of ``x`` (C, H, W) into ``buf`` (C, rows,
    cols) from column ``lo[1]`` on; rows outside the image are zeroed (the columns around
    the image's are zero from the start)."""
    for r in range(buf.shape[1]):
        src = first - lo[0] + r  # the input row
        for c in range(buf.shape[0]):
            dst = buf[c, r, lo[1] : lo[1] + x.shape[2]]
            if 0 <= src < x.shape[1]:
                values = x[c, src]
                for j in range(len(dst)):
                    dst[j] = values[j]
            else:
                dst[:] = 0


@kernel
def _nine(k):
    """The taps of a 3x3 kernel ``k`` as a tuple, row by row."""
    return (k[0, 0], k[0, 1], k[0, 2], k[1, 0], k[1, 1], k[1, 2], k[2, 0], k[2, 1], k[2, 2])


@kernel
def _taps(acc, k, x0, x1, x2):
    """``acc`` plus the nine products of taps ``k`` (:func:`_nine`) with ``x0, x1, x2``,
    three input rows' values ``j, j + 1, j + 2`` each, added in order."""
    return (
        acc + k[0] * x0[0] + k[1] * x0[1] + k[2] * x0[2] + k[3] * x1[0] + k[4] * x1[1]
        + k[5] * x1[2] + k[6] * x2[0] + k[7] * x2[1] + k[8] * x2[2]
    )  # fmt: skip


@kernel
def _pair(buf, k, q, r, a0, a1, b0, b1):
    """Add to rows ``a0, a1`` (output channel with taps ``k``, output rows ``r, r + 1``)
    and ``b0, b1`` (taps ``q``) the products of the input channels ``buf``.

    ``buf`` holds the group's input channels ``(C/G, rows, cols)``; a view of them (an
    index ``c0 + c`` into all the channels cost a third of the time: it could be
    negative, as far as the compiler knows)."""
    for c in range(len(buf)):
        plane, kc, qc = buf[c], k[c], q[c]
        x0, x1, x2, x3 = plane[r], plane[r + 1], plane[r + 2], plane[r + 3]
        kt, qt = _nine(kc), _nine(qc)  # held in registers
        for j in range(len(a0)):
            u = (x0[j], x0[j + 1], x0[j + 2])
            v = (x1[j], x1[j + 1], x1[j + 2])
            s = (x2[j], x2[j + 1], x2[j + 2])
            t = (x3[j], x3[j + 1], x3[j + 2])
            a0[j] = _taps(a0[j], kt, u, v, s)
            a1[j] = _taps(a1[j], kt, v, s, t)
            b0[j] = _taps(b0[j], qt, u, v, s)
            b1[j] = _taps(b1[j], qt, v, s, t)


@kernel(flags=("contract",))
def _rows(x, w, b, lo, y, n0, n1, i0, i1):
    """Output rows ``i0 .. i1 - 1`` of samples ``n0 .. n1 - 1`` into ``y`` (N, O, OH, OW)
    from ``x`` (N, C, H, W) and ``w`` (O, C/G, 3, 3).

    ``x`` and ``y`` may be channels-last data seen channels-first (numba compiles a
    version for such strided arrays: their rows are read and written with strides).
    Compiled with multiply-adds fused, which the passes of :func:`_pair` (inlined here)
    take from this, their caller."""
    o_channels, group_in = w.shape[0], w.shape[1]
    group_out = o_channels // (x.shape[1] // group_in)
    width = y.shape[3]
    wide = -(-width // LANES) * LANES
    rows = i1 - i0 + (i1 - i0) % 2  # whole pairs
    buf = np.zeros((x.shape[1], rows + 2, wide + 2), x.dtype)
    # the accumulators: separate arrays, which the compiler knows do not overlap
    a0, a1 = np.empty(wide, x.dtype), np.empty(wide, x.dtype)
    b0, b1 = np.empty(wide, x.dtype), np.empty(wide, x.dtype)
    for n in range(n0, n1):
        _fill(x[n], i0, lo, buf)
        for i in range(0, rows, 2):
            o = 0
            while o < o_channels:
                p = o + 1 if (o + 1) % group_out else o  # o again where its group ends at o
                a0[:], a1[:], b0[:], b1[:] = b[o], b[o], b[p], b[p]
                c0 = o // group_out * group_in
                _pair(buf[c0 : c0 + group_in], w[o], w[p], i, a0, a1, b0, b1)
                ao, bo = y[n, o, i0 + i], y[n, p, i0 + i]
                for j in range(width):
                    ao[j], bo[j] = a0[j], b0[j]
                if i0 + i + 1 < i1:
                    ao, bo = y[n, o, i0 + i + 1], y[n, p, i0 + i + 1]
                    for j in range(width):
                        ao[j], bo[j] = a1[j], b1[j]
                o = p + 1


#: Multiply-adds from which the threads share a layer: below, waking them costs more
#: than they save (one share against two, ms: 3x3 8->16 @14 0.03 against 0.14, 16->64
#: @28 0.23 against 0.26, 8->16 @32 at batch 10 0.35 against 0.29, 3->64 @112 0.73
#: against 0.54; 2 cores).
SHARED_MACS = 2**23


def _shares(spec: ConvSpec) -> list[tuple[int, int, int, int]]:
    """The threads' shares ``(n0, n1, i0, i1)``: runs of samples, or at a batch smaller
    than the threads, of each sample's output rows (whole pairs, so that a pair's input
    rows are read once); one share below :data:`SHARED_MACS`."""
    threads = get_threads() if spec.macs >= SHARED_MACS else 1
    rows = spec.out_size[0]
    if spec.batch >= threads:
        return [(a, b, 0, rows) for a, b in even_runs(spec.batch, threads)]
    pairs = -(-rows // 2)
    parts = min(max(threads // max(spec.batch, 1), 1), pairs)
    return [
        (n, n + 1, 2 * a, min(2 * b, rows))
        for n in range(spec.batch)
        for a, b in even_runs(pairs, parts)
    ]


def conv_channels_first(
    x: np.ndarray, w: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """The convolution of an unpadded ``(N, C, H, W)`` input with ``w`` ``(O, C/G, 3, 3)``
    plus ``bias``: ``(N, O, *out)``; the spec's zero pads are applied here."""
    y = np.empty((spec.batch, spec.out_channels, *spec.out_size), x.dtype)
    _run(x, w, spec, bias, y)
    return y


def conv(
    x: np.ndarray, wc: np.ndarray, spec: ConvSpec, bias: np.ndarray | None = None
) -> np.ndarray:
    """The same on channels-last ``(N, H, W, C)`` and ``(3, 3, C/G, O)``: ``(N, *out, O)``.

    The kernel reads and writes them where they lie, seen channels-first."""
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), x.dtype)
    _run(move_channels_first(x), weight_first(wc), spec, bias, move_channels_first(y))
    return y


def _run(
    x: np.ndarray, w: np.ndarray, spec: ConvSpec, bias: np.ndarray | None, y: np.ndarray
) -> None:
    """:func:`_rows` into ``y`` (N, O, *out), the threads' shares in parallel."""
    w = np.ascontiguousarray(w, dtype=x.dtype)
    b = np.zeros(spec.out_channels, x.dtype) if bias is None else bias.astype(x.dtype)
    lo = np.array([spec.pads[0][0], spec.pads[1][0]], dtype=np.int64)
    parallel_map(lambda share: _rows(x, w, b, lo, y, *share), _shares(spec))


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None: it runs 3x3 kernels at stride 1
    and dilation 1, on groups of more than one input channel (with one, a pass would
    add a single channel's taps: ``depthwise_jit``'s layers)."""
    if spec.kernel != (3, 3) or spec.stride != (1, 1) or spec.dilation != (1, 1):
        return (
            f"it supports 3x3 kernels at stride 1 and dilation 1, got kernel={spec.kernel}, "
            f"stride={spec.stride}, dilation={spec.dilation}"
        )
    if spec.group_in == 1:
        return "it needs at least 2 input channels per group (depthwise_jit runs 1)"
    return None


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries: each thread's zero-bordered copy of the rows it reads."""
    wide = -(-spec.out_size[1] // LANES) * LANES
    rows = spec.out_size[0] + 3
    return get_threads() * spec.in_channels * rows * (wide + 2) * np.dtype(dtype).itemsize


#: The price of one of its multiply-adds in GEMM flops (:func:`npconv._cost.gemm`),
#: fitted to its times on one thread: 0.28-0.30 ms on 3x3 8->16 @32 batch 10, 1.6-1.9
#: on 3->16 @32 batch 100, 2.9-3.1 on 64->64 @56, 5 on 256->256 @14 (AVX-512 machines,
#: whose vectors numba compiles 8 floats wide).
FLOPS_PER_MAC = 1.4
#: Setting up a pair of output rows and channels (accumulators, weights, writes) costs
#: about as much as this many input channels' passes ...
PAIR_CHANNELS = 1.5
#: ... and setting up a pass (its taps, its rows) as much as this many outputs of it.
PASS_OUTPUTS = LANES
#: Where a sample's rows are shared among the threads (a batch smaller than the
#: threads), its work counts this much more: on two threads such layers ran 1.25-1.6x
#: faster than on one (3x3 3->64 @112 0.59 against 0.74 ms, 16->64 @56 0.53 against
#: 0.86), not 2x.
ROWS_SHARED = 1.3


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """The multiply-adds it computes, at :data:`FLOPS_PER_MAC`: output rows in whole
    vectors and pairs, output channels in pairs (a group of one output channel computes
    it twice), a pair's set-up (:data:`PAIR_CHANNELS`) and a pass's (:data:`PASS_OUTPUTS`),
    more where a sample's rows are shared (:data:`ROWS_SHARED`); a strided pass over the
    input (the copy into the buffer) and two over the output (its rows written a few at
    a time in every plane, each line read before it is written)."""
    item = max(np.dtype(dtype).itemsize, 4)
    rows, width = spec.out_size[0], spec.out_size[-1]
    og = spec.group_out
    computed = (
        spec.batch * spec.groups * (og + og % 2) * (spec.group_in + PAIR_CHANNELS)
        * math.prod(spec.kernel) * (rows + rows % 2) * math.prod(spec.out_size[1:-1])
        * (-(-width // LANES) * LANES + PASS_OUTPUTS)
    )  # fmt: skip
    outputs = spec.batch * spec.out_channels * math.prod(spec.out_size)
    inputs = spec.batch * spec.in_channels * math.prod(spec.in_size)
    passes = (2 * inputs + 4 * outputs) * item  # the result's rows, strided, read first
    shared_rows = len(_shares(spec)) > spec.batch  # at least one sample's rows shared
    flops = computed * FLOPS_PER_MAC * item / 4 * (ROWS_SHARED if shared_rows else 1)
    return units(gemm=flops, passes=passes)
