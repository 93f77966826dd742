"""``im2col_jit``: :mod:`~npconv.algorithms.im2col` with its patches gathered by a
compiled kernel (numba), the zero padding fused; the GEMMs stay BLAS.

``im2col`` builds a chunk's patch matrix in two NumPy copies: the input rows the chunk
reads, zero-padded into a buffer, then the strided windows of that buffer into the patch
matrix.  Here one kernel (:func:`_gather`) writes the patch matrix straight from the
unpadded input, channel by channel:

1. the rows of a channel that the chunk reads are copied into a small zero-bordered plane
   (a few KiB, in the caches), so that no tap needs a bounds test;
2. each of the channel's ``prod(kernel)`` patch rows is then a run of strided reads of
   that plane per output row, ``cols[(c, i, j), (n, r, q)] = plane[r*sh + i*dh, q*sw +
   j*dw]``, a contiguous, vectorised copy at stride 1, a vectorised one at the
   constant stride 2 (one thread, ms: ResNet's stem 7x7/2 0.49 against 0.65 read at a
   variable stride, 3x3/2 512->512 @14 0.36 against 0.47), a strided one otherwise (its
   offsets unsigned, see :func:`_gather`).

The patch matrix ``(C*prod(kernel), n, rows, cols)`` holds the chunk's samples side by
side; the products are ``w[O/G, C/G*prod(kernel)] @ patches`` per group, as in
``im2col``'s channels-first form (one GEMM per sample where a sample has many output
positions, written straight into the result), with the same chunks, the same sharing
among the threads and the same bias handling.  Channels-last data are read and written
through channels-first views.

Cost: ``im2col``'s without the padded copy of the input, which took 0.18 of 1.8 ms on
ResNet-50's 3x3/2 128->128 @56 at batch 1, and a gather faster than NumPy's strided copy
(0.28 ms there, one thread).  Where the patch matrix is the input itself (a 1x1 kernel
at stride 1 without padding) it still copies it, and ``im2col``, which does not, ties it
in "auto" and comes first.  Its weight gradient (:func:`weight_grad_channels_first`)
is ``im2col``'s products on patches gathered by the same kernel.  Error and results: a
GEMM's, as ``im2col``.  It needs numba (the ``jit`` extra).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .._cost import units
from .._jit import kernel
from .._spec import ConvSpec
from .._threads import get_threads, runs_alone
from .._windows import (
    channels_last,
    chunks,
    one_row,
    reshaped_view,
    side_by_side,
    thread_chunks,
)
from .._workspace import buffer
from .im2col import (
    GRAD_CHUNK_BYTES,
    SHARED_MACS,
    TRANSPOSED_POINTS,
    WIDE_POINTS,
    _shared,
    add_bias,
    filters_of,
    patch_product_work,
    run_chunks,
    summed,
)


@kernel
def _gather(x, lo, stride, dilation, size, n0, r0, cols):
    """The patches of output rows ``r0..`` of samples ``n0..`` of ``x`` (N, C, H, W) into
    the contiguous ``cols`` (C * kh * kw, n, rows, width), zero-padded by ``lo`` (top,
    left) and past the image; ``size`` is the kernel's ``(kh, kw)``.

    The copies index flat arrays by unsigned offsets: no view made per row, and no test
    for a negative index in the loop, which then is vectorised.  Against views of each
    row, 1 thread, ms: 3x3 512->512 @7 0.12 against 0.20, 256->256 @14 0.12 against
    0.21, 3x3/2 128->128 @56 0.28 against 0.50 (every ResNet layer copies as many rows,
    so that a row's fixed cost ruled)."""
    kh, kw = size[0], size[1]
    sh, sw, dh, dw = stride[0], stride[1], dilation[0], dilation[1]
    samples, rows, width = cols.shape[1], cols.shape[2], cols.shape[3]
    top = r0 * sh - lo[0]  # the input row of the plane's first row
    height = (rows - 1) * sh + (kh - 1) * dh + 1  # the plane's
    pitch = (width - 1) * sw + (kw - 1) * dw + 1
    source = np.zeros(height * pitch, x.dtype)  # flat
    i0, i1 = max(0, -top), min(height, x.shape[2] - top)  # its rows in the image
    j0 = lo[1]
    j1 = max(j0, min(pitch, j0 + x.shape[3]))  # its columns in the image
    out = cols.reshape(-1)
    run, step, two = np.uint64(width), np.uint64(sw), np.uint64(2)
    for s in range(samples):
        for c in range(x.shape[1]):
            # (the rows and columns outside the image stay zero)
            image = x[n0 + s, c]
            for i in range(i0, i1):
                line, into = image[top + i], np.uint64(i * pitch + j0)
                for j in range(np.uint64(j1 - j0)):
                    source[into + j] = line[j]
            for a in range(kh):
                for b in range(kw):
                    at = (((c * kh + a) * kw + b) * samples + s) * rows * width
                    for r in range(rows):
                        to = np.uint64(at + r * width)
                        start = np.uint64((r * sh + a * dh) * pitch + b * dw)
                        if sw == 1:
                            for q in range(run):
                                out[to + q] = source[start + q]
                        elif sw == 2:  # a constant stride, which LLVM vectorises
                            for q in range(run):
                                out[to + q] = source[start + two * q]
                        else:
                            for q in range(run):
                                out[to + q] = source[start + step * q]


def _patches(x: np.ndarray, spec: ConvSpec, n0: int, r0: int, cols: np.ndarray) -> None:
    """:func:`_gather` of every group: ``cols`` (G, C/G * kh * kw, n, rows, width) from
    ``x`` (N, C, H, W), zero-padded as ``spec`` says."""
    cg = spec.group_in
    lo = np.array([lo for lo, _ in spec.pads], dtype=np.int64)
    stride, dilation, size = (np.array(v) for v in (spec.stride, spec.dilation, spec.kernel))
    for i in range(spec.groups):
        _gather(x[:, i * cg : (i + 1) * cg], lo, stride, dilation, size, n0, r0, cols[i])


def _gathers_shared(spec: ConvSpec) -> bool:
    """Whether :func:`conv_channels_first` shares its chunks among the threads: where
    ``im2col`` does (:func:`~npconv.algorithms.im2col._shared`), and also where a single
    sample's kernel of several taps gives each thread at least
    :data:`~npconv.algorithms.im2col.WIDE_POINTS` output positions, so that the gather,
    otherwise on the calling thread alone, runs on every core while the GEMMs stay wide;
    but not while OpenBLAS's threads likely spin after npconv's last multi-threaded
    GEMMs (:func:`npconv._threads.runs_alone`).

    At batch 1, ms (2 cores, shared against in turn with two-thread BLAS): ResNet's stem
    7x7/2 3->64 @224 1.48-1.50 against 1.72-1.74, 3x3/2 128->128 @56 1.21-1.23 against
    1.30-1.31, 3x3 64->64 @56 1.32-1.36 against 1.55; but a 1x1 kernel, whose gather is
    a plain copy, 0.66 against 0.55 (64->256 @56), and 256->256 @14 (98 positions a
    thread) 1.18-1.24 against 1.17.  Right after two-thread GEMMs, as in an ONNX
    ResNet-50 whose stem and 3x3/2 layers follow 1x1 ones, sharing made the network no
    faster (0.062-0.074 against 0.066-0.067 s).
    """
    threads = get_threads()
    wide = spec.batch * math.prod(spec.out_size) >= threads * WIDE_POINTS
    several = math.prod(spec.kernel) > 1 and spec.macs >= SHARED_MACS
    return _shared(spec) or (threads > 1 and wide and several and not runs_alone(spec.batch))


def conv_channels_first(
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """The convolution of an unpadded ``(N, C, H, W)`` input with ``w`` ``(O, C/G, kh, kw)``
    plus ``bias``, then ``max(y, 0)`` where ``relu``: ``(N, O, *out)``; the spec's zero
    pads are applied here.  A 1-d one, ``(N, C, W)`` and ``(O, C/G, kw)``, runs as a 2-d
    one of a single row.

    Where the weights are smaller than the result (their inner dimension ``C/G*kh*kw``
    below the output positions), the bias is the weight of a row of ones below each
    group's patches: a copy of the weights instead of a pass over the result (0.14 ms of
    2.1 on ResNet-50's stem at batch 1; the other way round, the copy of 512x4608
    weights took 3.6 against 2.1 ms a call for 3x3 512->512 @7 in a ResNet-50); but
    where a ReLU follows, each chunk's pass over its outputs adds both."""
    if spec.nd == 1:
        y = conv_channels_first(x[:, :, None], w[:, :, None], one_row(spec), bias, relu)
        return y.reshape(spec.batch, spec.out_channels, *spec.out_size)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    k = cg * math.prod(spec.kernel)
    dtype = np.result_type(x, w)
    y = np.empty((spec.batch, g, og, *spec.out_size), dtype=dtype)  # (N, G, O/G, *out)
    w_mat = np.ascontiguousarray(w, dtype).reshape(g, og, k)  # (G, O/G, C/G*kh*kw)
    b = None if bias is None else bias.astype(dtype).reshape(g, og, 1, 1)
    if b is not None and not relu and k + 1 < spec.batch * math.prod(spec.out_size):
        # a row of ones
        w_mat = np.concatenate([w_mat, b[..., 0]], axis=2)  # (G, O/G, K + 1)
        b = None
    kk = w_mat.shape[2]
    width = spec.out_size[1]

    def product(chunk: tuple[slice, slice, slice]) -> None:
        batch, rows, outs = chunk  # outs: the chunk's share of each group's outputs
        n0, n1, _ = batch.indices(spec.batch)
        r0, r1, _ = rows.indices(spec.out_size[0])
        n, points = n1 - n0, (r1 - r0) * width  # P per sample
        cols = buffer("patches", (g, kk, n, r1 - r0, width), dtype)  # (G, K [+ 1], n, r, W)
        _patches(x, spec, n0, r0, cols[:, :k])
        cols[:, k:] = 1  # the bias's row, if any
        w_part = w_mat[:, outs]  # (G, o, K [+ 1])
        o = w_part.shape[1]
        out_block = y[batch, :, outs, rows]  # (n, G, o, r, W_out): a view of y
        out = reshaped_view(out_block, (n, g, o, points))  # None: rows of several planes
        if out is not None and (n == 1 or points >= WIDE_POINTS):  # GEMMs into the result
            per_sample = cols.reshape(g, kk, n, points).transpose(2, 0, 1, 3)  # (n, G, K, P)
            np.matmul(w_part, per_sample, out=out)
        else:  # the samples side by side: one GEMM per group
            prod = buffer("products", (g, o, n, points), dtype)
            np.matmul(w_part, cols.reshape(g, kk, n * points), out=prod.reshape(g, o, -1))
            np.copyto(out_block.reshape(n, g, o, points), prod.transpose(2, 0, 1, 3))
        if b is not None or relu:
            add_bias(out_block, None if b is None else b[:, outs], relu)

    per_output = math.prod(spec.kernel) * spec.in_channels * dtype.itemsize
    run_chunks(product, spec, per_output, _gathers_shared(spec))
    return y.reshape(spec.batch, spec.out_channels, *spec.out_size)


#: The same on channels-last ``(N, *in_size, C)`` and ``(*kernel, C/G, O)``: ``(N, *out,
#: O)``, read through channels-first views (a view of the channels-first result).
conv = channels_last(conv_channels_first)


def weight_grad_channels_first(xp: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``dL/dw`` from the patch matrices of :func:`conv_channels_first`, gathered by the
    compiled kernel: padded input ``(N, C, *padded)`` and output gradient
    ``(N, O, *out)`` -> ``(O, C/G, *kernel)``.

    :func:`npconv.algorithms.im2col.weight_grad_channels_first`'s products, chunk by
    chunk within its :data:`~npconv.algorithms.im2col.GRAD_CHUNK_BYTES`, on patches that
    the kernel writes side by side (instead of NumPy's strided copy of a padded input),
    and where the forward shares its chunks (:func:`_shared`), summed by each thread
    over its own chunks with single-threaded BLAS.  Against im2col's, ms (2 cores):
    3x3/2 128->128 @56 b1 1.7-1.9 against 2.2-2.4, b8 10.6-11.3 against 12.4-13.6,
    ResNet's stem 7x7/2 3->64 @224 b1 2.3-2.4 against 2.4-2.6, b8 12.3-12.8 against
    19.0-20.1; but 3x3 512->512 @7 b8 8.5 against 7.6 (256->256 @14 b1 1.26 against
    1.30), where "auto" takes im2col's.
    """
    if spec.nd == 1:
        dw = weight_grad_channels_first(xp[:, :, None], gy[:, :, None], one_row(spec))
        return dw.reshape(spec.out_channels, spec.group_in, *spec.kernel)
    valid = spec.valid()  # xp is padded
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    k = cg * math.prod(spec.kernel)
    dtype = np.result_type(xp, gy)
    transposed = spec.batch * math.prod(spec.out_size) >= TRANSPOSED_POINTS
    grads = gy.reshape(spec.batch, g, og, *spec.out_size)  # (N, G, O/G, *out)

    def chunk_product(chunk: tuple[slice, slice]) -> np.ndarray:
        batch, rows = chunk
        n0, n1, _ = batch.indices(spec.batch)
        r0, r1, _ = rows.indices(spec.out_size[0])
        points = (n1 - n0) * (r1 - r0) * spec.out_size[1]
        cols = buffer("patches", (g, k, n1 - n0, r1 - r0, spec.out_size[1]), dtype)
        _patches(xp, valid, n0, r0, cols)  # (G, K, n, r, W): the samples side by side
        a = cols.reshape(g, k, points)
        b = side_by_side(grads[batch, :, :, rows], 2, (g, og, points), "products")
        if transposed:
            return np.matmul(a, b.transpose(0, 2, 1))  # (G, K, O/G)
        return np.matmul(b, a.transpose(0, 2, 1))  # (G, O/G, K)

    per_output = (k + og) * g * dtype.itemsize
    shared = _shared(spec)
    split = thread_chunks if shared else chunks
    dw = summed(chunk_product, list(split(spec, per_output, GRAD_CHUNK_BYTES)), shared)
    return filters_of(dw, transposed, spec)


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """``im2col``'s patches and GEMMs (without its padded copy of the input); channels-last
    data cost a pass over the result more (its transposing copy)."""
    total = patch_product_work(spec, dtype)
    if spec.layout == "NHWC":
        item = max(np.dtype(dtype).itemsize, 4)
        total += units(passes=2 * spec.batch * spec.out_channels * math.prod(spec.out_size) * item)
    return total
