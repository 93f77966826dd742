"""``winograd_jit``: Winograd F(4x4, 3x3) with compiled (numba) transforms, GEMMs in BLAS.

The minimal filtering of :mod:`npconv.algorithms.winograd` (same matrices ``AT``, ``G``,
``BT``, from :func:`~npconv.algorithms.winograd.transforms`), for 2-d stride-1 layers with
kernels of at most 3x3 (smaller ones padded with zero taps).  The output is cut into 4x4
tiles, each reading a 6x6 tile of the input; per chunk of tile rows:

1. a compiled kernel gathers the input tiles from the unpadded channels-last input (zero
   padding fused: a tile row is copied into a zero band first) and transforms them,
   ``V[a, t, c] = (BT d BT^T)[a]`` for the 36 points ``a``, vectorised over channels;
2. 36 GEMMs (NumPy ``matmul``, one BLAS call per point and group):
   ``M[a] = V[a] (tiles x C/G) @ U[a] (C/G x O/G)``, ``U = G w G^T`` the transformed
   filters;
3. a compiled kernel transforms back, ``y = AT m AT^T`` per tile, adds the bias and writes
   the 4x4 outputs into the channels-last result (the edge tiles cropped).

Where the tiles outweigh the transformed filters, npconv's threads share the chunks out,
each running the transforms and single-threaded GEMMs of its own tiles
(:mod:`npconv._threads`); otherwise the chunks run one after another, channels-first
ones each shared out by channels (:func:`_channels_shared`), channels-last ones on the
calling thread with the GEMMs on BLAS's threads.  Wide channels-first images keep
their layout: their kernels read and write image rows and the tiles are
``V (36, C, T)``, the products ``M[a] = U[a] (O/G x C/G) @ V[a]``; narrow ones are
seen channels-last (:data:`WIDE`), the kernels reading and writing a row of the image
at a time.  Where a chunk shared out by channels has only a few vectors of tiles, too
few for BLAS to run fast, kept filters are packed by blocks of output channels and
multiplied by the compiled block kernel (:func:`_products`).

The weight gradient (:func:`weight_grad`, the row's ``weight_grad``) is the adjoint of
the same computation in the filters: the input tiles transformed as above, the output
gradient's tiles by ``AT^T`` (:func:`_gradient_planes`, :func:`_gradient_tiles`), 36
GEMMs per chunk summing over the tiles (each thread its own sums where the chunks are
shared), and ``G^T`` back to 3x3 taps.

Cost: 36/16 = 2.25 multiplications per output and input channel instead of 9, plus
transforms proportional to ``C + O`` per tile: it wins on 3x3 layers with many
channels.  Error: as the NumPy ``winograd`` (F(4, 3), float32: within 1e-4 of max |y| on
unit-scale data).  Not exact for integers.  A result (or weight gradient) with a value
that is not finite, from NaN or Inf in the operands or an overflow in the transforms,
is computed again by a direct algorithm (the row's ``transforms``): the output
transforms test each value as they write it and raise :class:`NonFinite`, so that the
result is not read again (the row's ``checks_result``).  It needs numba (the ``jit``
extra).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial

import numpy as np

from .._cost import gemm, units
from .._jit import block_shapes, copy_rows, kernel, letting_go, multiply_block, vector_registers
from .._operands import NonFinite
from .._spec import ConvSpec
from .._threads import (
    even_runs,
    get_threads,
    parallel_map,
    runs_alone,
    single_threaded_blas,
)
from .._windows import (
    WORKSPACE_BYTES,
    chunks,
    move_channels_last,
    thread_chunks,
    weight_first,
    weight_last,
)
from .._workspace import DERIVED_BYTES, buffer, claim, keep, kept
from .winograd import _nd_transforms, filter_work, transforms

#: Channels-first images at least this wide are transformed along their rows; narrower
#: ones channels-last, their rows being too short to vectorise the transforms along,
#: unless their channels outnumber the batch's tiles (four times below half this
#: width), where ``U @ V`` runs the thin GEMMs faster than ``V @ U``.  Measured in one
#: process, 2 threads, 3x3 layers, ms transposed / along rows: 64->64 @224 33 / 18, @112
#: 5.5 / 4.6, @56 1.30 / 1.20, at batch 8 11.3 / 10.5; 128->128 @28 2.44-2.62 /
#: 1.80-1.82, batch 2 4.15-4.19 / 3.07-3.13, batch 4 5.8 / 7.6; 64->64 @28 0.72 / 0.58;
#: 256->256 @14 batch 8 7.1 / 9.0 (10.6 / 11.9 in a slower period).
WIDE = 56
#: Bytes of the transformed tiles (input and product) of one chunk: a few MiB, so that
#: they stay in the caches between the transforms and the GEMMs.
CHUNK_BYTES = 2 * 2**20
#: ... but a chunk holds at least this many tiles (within WORKSPACE_BYTES), so that the
#: GEMMs are not thin where the channels are many: 256 channels at 2 MiB gave chunks of
#: 28 tiles, whose GEMMs ran at a third of BLAS's speed.
CHUNK_TILES = 256


@kernel
def _copy_pixels(dst, src):
    """``dst[:] = src`` for a row of pixels ``(W, C)``, in the order of the channels-last
    side's memory: a run per pixel where both are channels-last, else a run per channel
    (a channels-first image seen channels-last)."""
    if dst.strides[1] == dst.itemsize and src.strides[1] == src.itemsize:
        for j in range(dst.shape[0]):
            for c in range(dst.shape[1]):
                dst[j, c] = src[j, c]
    else:
        for c in range(dst.shape[1]):
            for j in range(dst.shape[0]):
                dst[j, c] = src[j, c]


@kernel
def _bt(d0, d1, d2, d3, d4, d5, two, four, five):
    """``BT @ d`` for six input values ``d``: the input transform along one axis."""
    return (
        four * d0 - five * d2 + d4,
        four * (d1 + d2) - (d3 + d4),
        four * (d2 - d1) + (d3 - d4),
        two * (d3 - d1) + (d4 - d2),
        two * (d1 - d3) + (d4 - d2),
        four * d1 - five * d3 + d5,
    )


@kernel
def _at(m0, m1, m2, m3, m4, m5, two, four, eight):
    """``AT @ m`` for six products ``m``: the output transform along one axis."""
    return (
        m0 + (m1 + m2) + (m3 + m4),
        (m1 - m2) + two * (m3 - m4),
        (m1 + m2) + four * (m3 + m4),
        (m1 - m2) + eight * (m3 - m4) + m5,
    )


@kernel
def _at_adjoint(d0, d1, d2, d3, two, four, eight):
    """``AT^T @ d`` for four output-gradient values ``d``: the adjoint of :func:`_at`."""
    return (
        d0,
        (d0 + d1) + (d2 + d3),
        (d0 - d1) + (d2 - d3),
        (d0 + two * d1) + (four * d2 + eight * d3),
        (d0 - two * d1) + (four * d2 - eight * d3),
        d3,
    )


@kernel
def _input_tiles(x, lo, n0, r0, rows, cols, k, v):
    """``v[a, t, c]``: the transformed 6x6 input tiles ``t`` of tile rows ``r0..`` of
    samples ``n0..`` of ``x`` (N, H, W, C), zero-padded by ``lo`` (top, left) and beyond.

    ``k`` holds the constants 2, 4, 5 in ``x``'s dtype (a Python int would promote).
    """
    two, four, five = k[0], k[1], k[2]
    channels, band_w = x.shape[3], 4 * cols + 2
    band = np.zeros((6, band_w, channels), x.dtype)  # a tile row's zero-padded input
    s = np.empty((6, 6, channels), x.dtype)  # a half-transformed tile
    for p in range(v.shape[1] // cols):  # one tile row each
        n, h0, w0 = n0 + p // rows, 4 * (r0 + p % rows) - lo[0], -lo[1]
        i0, i1 = max(0, -h0), min(6, x.shape[1] - h0)
        for i in range(6):  # rows beyond the image (the columns beyond stay zero)
            if i < i0 or i >= i1:
                band[i] = 0
        j0, j1 = max(0, -w0), min(band_w, x.shape[2] - w0)
        for i in range(i0, i1):
            _copy_pixels(band[i, j0:j1], x[n, h0 + i, w0 + j0 : w0 + j1])
        for q in range(cols):
            t = p * cols + q
            for j in range(6):  # s[:, j] = BT @ d[:, j]
                w = 4 * q + j
                for c in range(channels):
                    d0, d1, d2 = band[0, w, c], band[1, w, c], band[2, w, c]
                    d3, d4, d5 = band[3, w, c], band[4, w, c], band[5, w, c]
                    e0, e1, e2, e3, e4, e5 = _bt(d0, d1, d2, d3, d4, d5, two, four, five)
                    s[0, j, c], s[1, j, c], s[2, j, c] = e0, e1, e2
                    s[3, j, c], s[4, j, c], s[5, j, c] = e3, e4, e5
            for i in range(6):  # v[6 i + j] = (BT @ s[i])[j]
                for c in range(channels):
                    d0, d1, d2 = s[i, 0, c], s[i, 1, c], s[i, 2, c]
                    d3, d4, d5 = s[i, 3, c], s[i, 4, c], s[i, 5, c]
                    e0, e1, e2, e3, e4, e5 = _bt(d0, d1, d2, d3, d4, d5, two, four, five)
                    v[6 * i, t, c], v[6 * i + 1, t, c], v[6 * i + 2, t, c] = e0, e1, e2
                    v[6 * i + 3, t, c], v[6 * i + 4, t, c], v[6 * i + 5, t, c] = e3, e4, e5


@kernel
def _output_tiles(m, b, n0, r0, rows, cols, k, relu, y):
    """Write ``AT m AT^T + b`` of the products ``m`` (36, T, O) into ``y`` (N, H, W, O),
    where ``relu`` its ``max(., 0)``; return whether every value computed (before the
    ReLU) is finite (:func:`_check`).

    The tiles are those of tile rows ``r0..`` of samples ``n0..``; the parts of the edge
    tiles beyond ``y`` are dropped.  ``k`` holds 2, 4, 8 and 0 in ``y``'s dtype.
    """
    two, four, eight, zero = k[0], k[1], k[3], k[4]
    channels = m.shape[2]
    band = np.empty((4, 4 * cols, channels), y.dtype)  # a tile row's outputs
    s = np.empty((4, 6, channels), y.dtype)  # a half-transformed tile
    good = True
    for p in range(m.shape[1] // cols):  # one tile row each
        n, r = n0 + p // rows, r0 + p % rows
        for q in range(cols):
            t = p * cols + q
            for j in range(6):  # s[:, j] = AT @ m[:, j]
                for o in range(channels):
                    m0, m1, m2 = m[j, t, o], m[6 + j, t, o], m[12 + j, t, o]
                    m3, m4, m5 = m[18 + j, t, o], m[24 + j, t, o], m[30 + j, t, o]
                    e0, e1, e2, e3 = _at(m0, m1, m2, m3, m4, m5, two, four, eight)
                    s[0, j, o], s[1, j, o], s[2, j, o], s[3, j, o] = e0, e1, e2, e3
            for i in range(4):  # band[i, 4 q + j] = (AT @ s[i])[j] + b
                for o in range(channels):
                    m0, m1, m2 = s[i, 0, o], s[i, 1, o], s[i, 2, o]
                    m3, m4, m5 = s[i, 3, o], s[i, 4, o], s[i, 5, o]
                    e0, e1, e2, e3 = _at(m0, m1, m2, m3, m4, m5, two, four, eight)
                    v0, v1, v2, v3 = e0 + b[o], e1 + b[o], e2 + b[o], e3 + b[o]
                    good &= (v0 - v0) + (v1 - v1) + (v2 - v2) + (v3 - v3) == 0
                    if relu:  # NaN < 0 is false: NaN stays (.real: complex y compiles)
                        v0, v1 = zero if v0.real < 0 else v0, zero if v1.real < 0 else v1
                        v2, v3 = zero if v2.real < 0 else v2, zero if v3.real < 0 else v3
                    band[i, 4 * q, o], band[i, 4 * q + 1, o] = v0, v1
                    band[i, 4 * q + 2, o], band[i, 4 * q + 3, o] = v2, v3
        for i in range(min(4, y.shape[1] - 4 * r)):
            _copy_pixels(y[n, 4 * r + i], band[i, : y.shape[2]])
    return good


@kernel
def _input_planes(x, lo, n0, r0, rows, cols, k, v):
    """``v[a, c, t]``: as :func:`_input_tiles`, from channels-first ``x`` (N, C, H, W).

    Channel by channel, each tile's 6x6 input values are first gathered, ``d[i, j, t] =
    x[h0 + i, w0 + 4 q + j]`` (zero beyond the image), so that both transforms then run
    along all the chunk's tiles, vectorised: down the columns into ``s``, then across the
    rows, one pass per plane of ``v`` (its formulas written out: ``_bt(...)[j]`` in each
    pass ran 1.3-3x slower).  Transformed along each tile row instead, whose tiles read
    their six values 4 apart (14 tiles at 56 pixels), the second transform ran value by
    value; one thread, us, against this: 64 channels @56, 7 tile rows, 125 against 112;
    128 @28, 7 rows, 135 against 123; 256 @14, 4 rows, 148 against 95; 64 @224, 4 rows,
    285 against 264.
    """
    two, four, five = k[0], k[1], k[2]
    count, height, width = v.shape[2], x.shape[2], x.shape[3]
    d = np.empty((6, 6, count), x.dtype)  # d[i, j, t]: the tiles' input values
    s = np.empty((6, 6, count), x.dtype)  # s[:, j, t] = BT @ d[:, j, t]
    for c in range(x.shape[1]):
        for p in range(count // cols):  # one tile row each
            n, h0, w0 = n0 + p // rows, 4 * (r0 + p % rows) - lo[0], -lo[1]
            t0 = p * cols
            for i in range(6):
                if h0 + i < 0 or h0 + i >= height:  # a row beyond the image
                    d[i, :, t0 : t0 + cols] = 0
                    continue
                row, di = x[n, c, h0 + i], d[i]
                for q in range(cols):
                    j, u = w0 + 4 * q, t0 + q
                    if 0 <= j and j + 6 <= width:
                        di[0, u], di[1, u], di[2, u] = row[j], row[j + 1], row[j + 2]
                        di[3, u], di[4, u], di[5, u] = row[j + 3], row[j + 4], row[j + 5]
                    else:  # an edge tile
                        for r in range(6):
                            di[r, u] = row[j + r] if 0 <= j + r < width else 0
        for j in range(6):  # s[:, j] = BT @ d[:, j], tile by tile
            d0, d1, d2, d3, d4, d5 = d[0, j], d[1, j], d[2, j], d[3, j], d[4, j], d[5, j]
            s0, s1, s2, s3, s4, s5 = s[0, j], s[1, j], s[2, j], s[3, j], s[4, j], s[5, j]
            for t in range(count):
                e = _bt(d0[t], d1[t], d2[t], d3[t], d4[t], d5[t], two, four, five)
                s0[t], s1[t], s2[t], s3[t], s4[t], s5[t] = e
        for i in range(6):  # v[6 i + j] = (BT @ s[i])[j], a pass per plane: _bt's rows
            s0, s1, s2, s3, s4, s5 = s[i, 0], s[i, 1], s[i, 2], s[i, 3], s[i, 4], s[i, 5]
            out = v[6 * i, c]
            for t in range(count):
                out[t] = four * s0[t] - five * s2[t] + s4[t]
            out = v[6 * i + 1, c]
            for t in range(count):
                out[t] = four * (s1[t] + s2[t]) - (s3[t] + s4[t])
            out = v[6 * i + 2, c]
            for t in range(count):
                out[t] = four * (s2[t] - s1[t]) + (s3[t] - s4[t])
            out = v[6 * i + 3, c]
            for t in range(count):
                out[t] = two * (s3[t] - s1[t]) + (s4[t] - s2[t])
            out = v[6 * i + 4, c]
            for t in range(count):
                out[t] = two * (s1[t] - s3[t]) + (s4[t] - s2[t])
            out = v[6 * i + 5, c]
            for t in range(count):
                out[t] = four * s1[t] - five * s3[t] + s5[t]


@kernel
def _output_planes(m, b, n0, r0, rows, cols, k, relu, y):
    """As :func:`_output_tiles`, from products ``m`` (36, O, T) into channels-first ``y``
    (and whether every value computed is finite).

    Per tile row and channel, each tile is transformed across into a 6-row band, then
    the band down its columns, a vectorised pass straight into each of ``y``'s rows.
    """
    two, four, eight, zero = k[0], k[1], k[3], k[4]
    s = np.empty((6, 4 * cols), y.dtype)
    width = y.shape[3]
    good = True
    for p in range(m.shape[2] // cols):  # one tile row each
        n, r, t0 = n0 + p // rows, r0 + p % rows, p * cols
        last = min(4, y.shape[2] - 4 * r)  # rows of this tile row within y
        for o in range(m.shape[1]):
            for i in range(6):  # s[i, 4 q + j] = (AT @ m[6 i : 6 i + 6, tile q])[j]
                # m's six rows as 1-d arrays: numba types a 2-d slice as non-contiguous
                # and vectorised its loads as gathers (0.93 against 0.53 ms, 64 @112)
                si, a = s[i], 6 * i
                row0, row1, row2 = m[a, o, t0:], m[a + 1, o, t0:], m[a + 2, o, t0:]
                row3, row4, row5 = m[a + 3, o, t0:], m[a + 4, o, t0:], m[a + 5, o, t0:]
                for q in range(cols):
                    m0, m1, m2, m3, m4, m5 = row0[q], row1[q], row2[q], row3[q], row4[q], row5[q]
                    e0, e1, e2, e3 = _at(m0, m1, m2, m3, m4, m5, two, four, eight)
                    si[4 * q], si[4 * q + 1], si[4 * q + 2], si[4 * q + 3] = e0, e1, e2, e3
            s0, s1, s2, s3, s4, s5 = s[0], s[1], s[2], s[3], s[4], s[5]
            bo, out = b[o], y[n, o, 4 * r : 4 * r + last]  # y[4 r + i] = (AT @ s)[i] + b
            for i in range(last):  # a pass per row (testing per value which exist cost 2x)
                row = out[i]
                for w in range(width):
                    e = _at(s0[w], s1[w], s2[w], s3[w], s4[w], s5[w], two, four, eight)
                    value = e[i] + bo
                    good &= value - value == 0
                    row[w] = zero if relu and value.real < 0 else value  # as in _output_tiles
    return good


@kernel
def _gradient_planes(gy, n0, r0, rows, cols, k, gt):
    """``gt[a, o, t]``: each 4x4 tile ``d`` of the output gradient ``gy`` (N, O, H, W),
    zero beyond its edges, transformed by ``AT^T d AT`` (the adjoint of
    :func:`_output_planes`); the tiles are those of tile rows ``r0..`` of samples
    ``n0..``.

    Per tile row and channel, ``gy``'s four rows are copied into a zero-padded band, the
    band is transformed down its columns (vectorised along the rows) into six rows, and
    each row across, tile ``q`` reading its four values from ``4 q`` on.
    """
    two, four, eight = k[0], k[1], k[3]
    width = 4 * cols
    band = np.zeros((4, width), gy.dtype)
    s = np.empty((6, width), gy.dtype)
    for p in range(gt.shape[2] // cols):  # one tile row each
        n, r, t0 = n0 + p // rows, r0 + p % rows, p * cols
        last = min(4, gy.shape[2] - 4 * r)  # rows of this tile row within gy
        for o in range(gy.shape[1]):  # (the columns beyond gy stay zero)
            for i in range(last, 4):
                band[i] = 0
            copy_rows(band[:last, : gy.shape[3]], gy[n, o, 4 * r : 4 * r + last])
            b0, b1, b2, b3 = band[0], band[1], band[2], band[3]
            s0, s1, s2, s3, s4, s5 = s[0], s[1], s[2], s[3], s[4], s[5]
            for j in range(width):  # s[:, j] = AT^T @ band[:, j]
                e0, e1, e2, e3, e4, e5 = _at_adjoint(b0[j], b1[j], b2[j], b3[j], two, four, eight)
                s0[j], s1[j], s2[j], s3[j], s4[j], s5[j] = e0, e1, e2, e3, e4, e5
            for i in range(6):  # gt[6 i + j, o, tile q] = (AT^T @ s[i, 4 q : 4 q + 4])[j]
                si, out = s[i], gt[6 * i : 6 * i + 6, o, t0 : t0 + cols]
                for q in range(cols):
                    d0, d1, d2, d3 = si[4 * q], si[4 * q + 1], si[4 * q + 2], si[4 * q + 3]
                    e0, e1, e2, e3, e4, e5 = _at_adjoint(d0, d1, d2, d3, two, four, eight)
                    out[0, q], out[1, q], out[2, q] = e0, e1, e2
                    out[3, q], out[4, q], out[5, q] = e3, e4, e5


@kernel
def _gradient_tiles(gy, n0, r0, rows, cols, k, gt):
    """``gt[a, t, o]``: as :func:`_gradient_planes`, from a channels-last output gradient
    ``gy`` (N, H, W, O) into tiles ``(36, T, O)``, vectorised over the channels.

    ``gy`` may be a channels-first array seen channels-last (as ``x`` in
    :func:`_input_tiles`): its four rows of a tile row are copied into a zero-padded
    band a row at a time.
    """
    two, four, eight = k[0], k[1], k[3]
    channels = gy.shape[3]
    band = np.zeros((4, 4 * cols, channels), gy.dtype)  # a tile row's output gradient
    s = np.empty((6, 4, channels), gy.dtype)  # a half-transformed tile
    for p in range(gt.shape[1] // cols):  # one tile row each
        n, r = n0 + p // rows, r0 + p % rows
        last = min(4, gy.shape[1] - 4 * r)  # rows of this tile row within gy
        for i in range(last, 4):  # (the columns beyond gy stay zero)
            band[i] = 0
        for i in range(last):
            _copy_pixels(band[i, : gy.shape[2]], gy[n, 4 * r + i])
        for q in range(cols):
            t = p * cols + q
            for j in range(4):  # s[:, j] = AT^T @ d[:, j]
                w = 4 * q + j
                for o in range(channels):
                    d0, d1, d2, d3 = band[0, w, o], band[1, w, o], band[2, w, o], band[3, w, o]
                    e0, e1, e2, e3, e4, e5 = _at_adjoint(d0, d1, d2, d3, two, four, eight)
                    s[0, j, o], s[1, j, o], s[2, j, o] = e0, e1, e2
                    s[3, j, o], s[4, j, o], s[5, j, o] = e3, e4, e5
            for i in range(6):  # gt[6 i + j, t] = (AT^T @ s[i])[j]
                for o in range(channels):
                    d0, d1, d2, d3 = s[i, 0, o], s[i, 1, o], s[i, 2, o], s[i, 3, o]
                    e0, e1, e2, e3, e4, e5 = _at_adjoint(d0, d1, d2, d3, two, four, eight)
                    gt[6 * i, t, o], gt[6 * i + 1, t, o], gt[6 * i + 2, t, o] = e0, e1, e2
                    gt[6 * i + 3, t, o], gt[6 * i + 4, t, o], gt[6 * i + 5, t, o] = e3, e4, e5


def _check(finite: bool) -> None:
    """Raise :class:`NonFinite` unless the output transform that returned ``finite`` wrote
    finite values only: the dispatch then computes the result again by a direct
    algorithm (see the registry row's ``checks_result``).  The transforms test each value
    as they write it (``v - v == 0``, false for NaN and Inf), which cost 6% of
    :func:`_output_planes` (64->64 @56), where a pass over the result cost 2-8% of the
    layer (7.4 ms of VGG's 3x3 64->64 @224 at batch 8)."""
    if not finite:
        raise NonFinite("winograd_jit: a value of the result is not finite")


def _tile_count(spec: ConvSpec) -> int:
    """The 4x4 output tiles of the whole batch."""
    return spec.batch * math.prod(-(-o // 4) for o in spec.out_size)


def _channels_last(spec: ConvSpec) -> bool:
    """Whether :func:`conv_channels_first` sees the image channels-last: a narrow one
    (:data:`WIDE`) whose channels do not outnumber the batch's tiles (4x below half
    that width)."""
    width = spec.in_size[1]
    factor = 1 if 2 * width >= WIDE else 4
    return width < WIDE and spec.group_in <= factor * _tile_count(spec)


def _chunk_budget(spec: ConvSpec, itemsize: int) -> tuple[int, int]:
    """Bytes of transformed tiles (input and product) per tile, and per chunk: at least
    :data:`CHUNK_BYTES` and :data:`CHUNK_TILES` tiles, within ``WORKSPACE_BYTES``."""
    per_tile = 36 * (spec.in_channels + spec.out_channels) * itemsize
    return per_tile, min(max(CHUNK_BYTES, CHUNK_TILES * per_tile), WORKSPACE_BYTES)


def _chunk_bytes(spec: ConvSpec, itemsize: int) -> int:
    """Bytes of the transformed tiles of the largest chunk (all tiles, or the budget)."""
    per_tile, budget = _chunk_budget(spec, itemsize)
    return min(budget, _tile_count(spec) * per_tile)


def _filters_work(spec: ConvSpec, item: int) -> Counter[str]:
    """The compiled filters' transform (:func:`_filters`), priced on every call, as for
    weights that change (a kept transform costs its check instead: 0.19 and 0.81 ms
    for 256 and 512 channels).  Each filter's nine taps lie side by side in PyTorch's
    ``(O, C/G, kh, kw)`` (``"NCHW"``): about three passes over the 36 values per filter
    it writes (measured on 2 cores, ms for 64, 128, 256 and 512 channels: 0.04, 0.20,
    0.61, 1.8; priced 0.04, 0.14, 0.58, 2.3; 3.0 for 512 swapped and flipped, as a
    transposed convolution's phase reads them).  In the ``(kh, kw, C/G, O)`` of
    ``"NHWC"`` they lie ``C/G x O`` apart: 9.7 ms for 512 channels, priced as NumPy's
    transform (:func:`~npconv.algorithms.winograd.filter_work`)."""
    filters = spec.group_in * spec.out_channels
    if spec.layout == "NHWC":
        return filter_work(36, filters, item)
    return units(passes=3 * 36 * filters * item, calls=1)


def _transforms_work(spec: ConvSpec, item: int) -> Counter[str]:
    """The two compiled transforms of every tile: each takes about as long as eight
    elementwise passes over its 36 values per tile and channel (measured on the ResNet
    and VGG layers of ``npconv bench``)."""
    return units(passes=8 * 36 * _tile_count(spec) * (spec.in_channels + spec.out_channels) * item)


#: Multiply-adds (of the direct convolution) below which the chunks run in turn
#: whatever :func:`_shared` weighs: waking the threads and their Python between the
#: kernels cost more than the second core saves (ms shared / in turn, 2 cores: 3x3
#: 16->16 @8 batch 4 0.33 / 0.12, 64->64 @14 batch 4 0.84 / 0.67, 32->32 @28 batch 8
#: 1.09 / 1.27, 64->64 @56 1.13 / 1.44).
SHARED_MACS = 2**25


def _shared(spec: ConvSpec) -> bool:
    """Whether :func:`conv` shares its chunks out among the threads (each transforming its
    own tiles, its GEMMs single-threaded): where the tiles weigh at least as much as the
    transformed filters, which every thread reads whole, in layers of at least
    :data:`SHARED_MACS`.  Measured (2 cores, ms shared / not): 3x3 64->64 @56 1.25 /
    1.42, at batch 8 7.8 / 9.6; 256->256 @14 4.6 / 2.7; 512->512 @7 batch 8 27 / 17;
    256->256 @14 at batch 8, where tiles and filters weigh the same, 5.5-5.8 / 5.9-6.8
    (the weight gradient 5.4-5.6 / 5.9-6.3) with this round's threads (13.9 / 10.0 with
    a pool of sleeping threads)."""
    tiles = _tile_count(spec) * (spec.in_channels + spec.out_channels)
    return tiles >= spec.group_in * spec.out_channels and spec.macs >= SHARED_MACS


def _chunks(
    spec: ConvSpec, itemsize: int, shared: bool = False
) -> Iterator[tuple[int, int, int, int]]:
    """``(n0, r0, rows, tiles)`` of each chunk: its first sample and tile row, its tile rows
    per sample and its tiles (:func:`_chunk_budget`); ``shared`` among the threads
    (:func:`npconv._windows.thread_chunks`)."""
    tiles = tuple(-(-o // 4) for o in spec.out_size)  # tile rows and columns
    per_tile, budget = _chunk_budget(spec, itemsize)
    split = thread_chunks if shared else chunks
    for batch, rows in split(replace(spec, out_size=tiles), per_tile, budget):
        n0, n1, _ = batch.indices(spec.batch)
        r0, r1, _ = rows.indices(tiles[0])
        yield n0, r0, r1 - r0, (n1 - n0) * (r1 - r0) * tiles[1]


def _single_threaded_blas(spec: ConvSpec) -> AbstractContextManager[None]:
    """BLAS on one thread where :func:`_shared`, around the whole computation: the
    filters' transforms too (see :func:`npconv._threads.single_threaded_blas`)."""
    return single_threaded_blas() if _shared(spec) else nullcontext()


def _run_chunks(
    chunk: Callable[[tuple[int, int, int, int]], None],
    spec: ConvSpec,
    itemsize: int,
    alone: bool = False,
) -> None:
    """``chunk`` of every chunk: shared out among the threads where :func:`_shared` (in
    :func:`_single_threaded_blas`; the threads' shares in turn where ``alone``),
    otherwise one after another on the calling thread (BLAS's threads for the GEMMs)."""
    shared = _shared(spec)
    if shared and not alone:
        parallel_map(chunk, list(_chunks(spec, itemsize, shared=True)))
    else:  # in turn: the threads' shares, or chunks for BLAS's threads
        for each in _chunks(spec, itemsize, shared=shared):
            chunk(each)


def _constants(
    spec: ConvSpec, dtype: np.dtype, bias: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bias, the pads before each axis and the constants 2, 4, 5, 8 and 0 of the
    kernels, in ``dtype`` (a Python int would promote: a ReLU's ``0 if v < 0 else v``
    made ``v`` float64 in :func:`_output_tiles`, converted to and fro)."""
    b = np.zeros(spec.out_channels, dtype) if bias is None else bias.astype(dtype)
    lo = np.array([p[0] for p in spec.pads], dtype=np.int64)
    return b, lo, np.array([2, 4, 5, 8, 0], dtype)


def _filter_transform(dtype: np.dtype) -> np.ndarray:
    """The filters' transform ``G`` of F(4x4, 3x3), ``(36, 9)``, in ``dtype``."""
    return _nd_transforms((4, 4), (3, 3))[1].astype(dtype)


#: Filters (output times input channels per group) from which their transform is
#: shared among the threads, in a layer (where the weight is cold and U is written to
#: memory), 2 threads against 1: 256x256 0.78 against 1.11 ms, but 128x128 0.32
#: against 0.24 (BLAS's (36, 9) @ (9, filters) took 0.91 and 0.29 ms).
SHARED_FILTERS = 2**16


@kernel
def _transform_filters(w, gm, f0, f1, u):
    """``u[6 i + j, f] = (G w_f G^T)[i, j]`` for the filters ``f0 <= f < f1`` of ``w``
    (O, C/G, 3, 3), numbered ``o * C/G + c``; ``gm`` is F(4, 3)'s ``G`` (6, 3).

    In blocks of filters: their taps are gathered into nine rows, the columns of each
    filter transformed into 18 rows, then its rows into the 36 of ``u``, every pass
    vectorised along the block (a product by the (36, 9) matrix ``G kron G`` wrote 36
    values per filter at once, and as one BLAS call ran at half this speed).
    """
    block = 256
    taps = np.empty((9, block), u.dtype)
    half = np.empty((18, block), u.dtype)  # half[3 i + b] = (G @ w)[i, b]
    per = w.shape[1]
    for start in range(f0, f1, block):
        count = min(block, f1 - start)
        for f in range(count):
            o, c = (start + f) // per, (start + f) % per
            for a in range(3):
                for b in range(3):
                    taps[3 * a + b, f] = w[o, c, a, b]
        for i in range(6):
            g0, g1, g2 = gm[i, 0], gm[i, 1], gm[i, 2]
            for b in range(3):
                t0, t1, t2, out = taps[b], taps[3 + b], taps[6 + b], half[3 * i + b]
                for f in range(count):
                    out[f] = g0 * t0[f] + g1 * t1[f] + g2 * t2[f]
        for i in range(6):
            h0, h1, h2 = half[3 * i], half[3 * i + 1], half[3 * i + 2]
            for j in range(6):
                g0, g1, g2 = gm[j, 0], gm[j, 1], gm[j, 2]
                out = u[6 * i + j, start : start + count]
                for f in range(count):
                    out[f] = g0 * h0[f] + g1 * h1[f] + g2 * h2[f]


def _filters(wc: np.ndarray, spec: ConvSpec, dtype: np.dtype) -> np.ndarray:
    """The transformed filters ``U = G w G^T``, ``(36, G, O/G, C/G)``, of the channels-last
    weight ``wc`` ``(kh, kw, C/G, O)`` (padded to 3x3 with zero taps after).

    A compiled kernel (:func:`_transform_filters`) writes them into the thread's
    ``"filters"`` buffer, reading the weight in whichever order its taps are stored;
    shared among the threads from :data:`SHARED_FILTERS` filters on.  Weights seen
    before keep their transform from call to call (:func:`npconv._workspace.kept`,
    compared with a copy, bit for bit, on every call): 3x3 256->256 @14 b8 3.9 against
    4.5 ms, 128->128 @28 b8 3.7-3.8 against 3.9-4.0 (the check, 0.2 ms for 256x256x3x3,
    against the transform's 0.5-0.8).
    """
    g, cg, og, o = spec.groups, spec.group_in, spec.group_out, spec.out_channels
    u, keepable = kept(KEPT_NAME, wc)
    if u is None:
        w_first, gm = _filter_operands(wc, spec, dtype)
        u = _filters_array(o * cg, dtype, keepable)
        parts = even_runs(o * cg, get_threads() if o * cg >= SHARED_FILTERS else 1)
        parallel_map(lambda part: _transform_filters(w_first, gm, *part, u), parts)
        if keepable:
            keep(KEPT_NAME, wc, u)
    return u.reshape(36, g, og, cg)


#: The name of the transformed filters kept between calls (:func:`npconv._workspace.kept`).
KEPT_NAME = "winograd_jit filters"


def _filters_array(count: int, dtype: np.dtype, keepable: bool) -> np.ndarray:
    """Where ``count`` filters' transforms go: a fresh array to keep, else the thread's
    ``"filters"`` buffer."""
    if keepable:
        return np.empty((36, count), dtype)
    return buffer("filters", (36, count), dtype)


def _filter_operands(
    wc: np.ndarray, spec: ConvSpec, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`_transform_filters` reads: the channels-last weight ``wc``
    ``(kh, kw, C/G, O)`` seen channels-first, ``(O, C/G, 3, 3)`` (a smaller kernel padded
    with zero taps after), and F(4, 3)'s ``G`` ``(6, 3)``, in ``dtype``."""
    if spec.kernel != (3, 3):
        w = np.zeros((3, 3, spec.group_in, spec.out_channels), dtype)
        w[: spec.kernel[0], : spec.kernel[1]] = wc
        wc = w
    return weight_first(wc), transforms(4, 3)[1].astype(dtype)


def conv(
    xp: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """F(4x4, 3x3) of an unpadded ``(N, H, W, C)`` input and ``(kh, kw, C/G, O)``: ``(N, *out, O)``,
    plus ``bias``, then ``max(y, 0)`` where ``relu`` (in the output transforms).

    The spec's zero pads are applied here.
    """
    x = np.ascontiguousarray(xp)
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), x.dtype)
    _tiles(x, wc, spec, bias, relu, y)
    return y


def _tiles(
    x: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`conv` of ``x`` (N, H, W, C) into ``y`` (N, *out, O): contiguous arrays, or
    channels-first ones seen channels-last, which the kernels read and write a row of
    an image at a time (each thread its own rows, with no transposed copy of the whole
    input and result)."""
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    dtype = x.dtype
    b, lo, k = _constants(spec, dtype, bias)
    cols = -(-spec.out_size[1] // 4)  # tiles per tile row

    def chunk(c: tuple[int, int, int, int]) -> None:
        n0, r0, rows, count = c
        v = buffer("transformed", (36, count, spec.in_channels), dtype)
        _input_tiles(x, lo, n0, r0, rows, cols, k, v)
        vg = v.reshape(36, count, g, cg).transpose(0, 2, 1, 3)  # (36, G, T, C/G): a view
        m = np.matmul(vg, u, out=buffer("products", (36, g, count, og), dtype))
        m = m.transpose(0, 2, 1, 3).reshape(36, count, -1)  # (36, T, O)
        _check(_output_tiles(m, b, n0, r0, rows, cols, k, relu, y))

    with _single_threaded_blas(spec):
        u = _filters(wc, spec, dtype).transpose(0, 1, 3, 2)  # (36, G, C/G, O/G)
        _run_chunks(chunk, spec, dtype.itemsize, runs_alone(spec.batch))


def conv_channels_first(
    xp: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """The same on an unpadded ``(N, C, H, W)`` input and ``(O, C/G, kh, kw)``: ``(N, O, *out)``.

    Images at least :data:`WIDE` wide, and small ones of many channels, keep their
    layout: the tiles are channels-first, ``V (36, C, T)``, the input transform runs
    along the chunk's tiles and the output transform along image rows, and the products
    are ``M[a] = U[a] (O/G x C/G) @ V[a]`` per group.  The
    others are seen channels-last, for :func:`conv`'s transforms, vectorised over
    channels.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    x = np.ascontiguousarray(xp)
    dtype = x.dtype
    if _channels_last(spec):
        y = np.empty((spec.batch, spec.out_channels, *spec.out_size), dtype)
        _tiles(move_channels_last(x), weight_last(wc), spec, bias, relu, move_channels_last(y))
        return y
    b, lo, k = _constants(spec, dtype, bias)
    y = np.empty((spec.batch, spec.out_channels, *spec.out_size), dtype)
    cols = -(-spec.out_size[1] // 4)  # tiles per tile row

    def chunk(c: tuple[int, int, int, int]) -> None:
        n0, r0, rows, count = c
        v = buffer("transformed", (36, spec.in_channels, count), dtype)
        _input_planes(x, lo, n0, r0, rows, cols, k, v)
        m = np.matmul(
            u, v.reshape(36, g, cg, count), out=buffer("products", (36, g, og, count), dtype)
        )
        _check(_output_planes(m.reshape(36, -1, count), b, n0, r0, rows, cols, k, relu, y))

    if _shared(spec) or get_threads() == 1:
        with _single_threaded_blas(spec):
            u = _filters(weight_last(wc), spec, dtype)  # (36, G, O/G, C/G)
            _run_chunks(chunk, spec, dtype.itemsize, runs_alone(spec.batch))
    else:
        _channels_shared(x, weight_last(wc), spec, b, lo, k, relu, y)
    return y


@kernel
def _pack_filters(u, og, k0, k1, packed):
    """``packed[a, g, k, c, r] = u[a, (g * og + k * R + r) * C/G + c]`` for the blocks
    ``k0 <= k < k1`` of ``R`` output channels (``packed`` (36, G, blocks, C/G, R)) of the
    transformed filters ``u`` (36, O * C/G); zero for the rows past a group's ``og``."""
    freqs, groups, _, cg, rows = packed.shape
    for a in range(freqs):
        for g in range(groups):
            for k in range(k0, k1):
                for c in range(cg):
                    dst = packed[a, g, k, c]
                    for r in range(rows):
                        o = k * rows + r
                        dst[r] = u[a, (g * og + o) * cg + c] if o < og else 0


@kernel
def _products(packed, v, m, k0, k1, shape, u_offsets, v_offsets, m_rows, last_rows, zeros):
    """``m[a, g, o] = sum_c U[a, g, o, c] v[a, g * C/G + c]`` (rows of ``T`` tiles) for the
    output channels of the blocks ``k0 <= k < k1`` of every group: the filters
    ``packed`` by :func:`_pack_filters`, ``v`` (36, C, T), ``m`` (36, G, O/G, T), each
    block of ``R`` output channels by every tile (block shape ``shape`` of
    :func:`npconv._jit.block_shapes`) in vector registers (``u_offsets[c] = c R``,
    ``v_offsets[c] = c T``, ``m_rows[r] = r T``, or -1 past the group in
    ``last_rows``)."""
    freqs, groups, blocks, cg, rows = packed.shape
    og, tiles = m.shape[2], m.shape[3]
    pf, vf, mf = packed.reshape(-1), v.reshape(-1), m.reshape(-1)
    for a in range(freqs):
        for g in range(groups):
            f = a * groups + g
            for k in range(k0, k1):
                at = m_rows if (k + 1) * rows <= og else last_rows
                multiply_block(shape, pf, ((f * blocks + k) * cg) * rows, u_offsets, 1, vf,
                               f * cg * tiles, v_offsets, mf, (f * og + k * rows) * tiles, at,
                               zeros, 0, False)  # fmt: skip


#: The vectors of tiles (every chunk's, the same) for which :func:`_channels_shared`
#: multiplies by blocks of output channels (:func:`_products`) on filters packed and
#: kept by blocks, rather than by BLAS: its products of so few tiles ran at 60 of a
#: core's 105 GFLOP/s (2 cores; transformed filters of 512x512, 32 tiles: 3.8 against
#: 6.2 ms on both), 16 tiles as fast either way.
BLOCK_VECTORS = (2, 3, 4)


def _product_blocks(
    chunks: list[tuple[int, int, int, int]], dtype: np.dtype
) -> tuple[int, int, int] | None:
    """The block shape (its index in :func:`npconv._jit.block_shapes`), its rows ``R`` and
    the tiles of a chunk for :func:`_products`, where every chunk (of :func:`_chunks`)
    has as many tiles, :data:`BLOCK_VECTORS` vectors of floats; else None."""
    vector_bytes, registers = vector_registers()
    counts = {c[3] for c in chunks}
    if dtype.kind != "f" or len(counts) != 1:
        return None
    tiles = counts.pop()
    vectors, rest = divmod(tiles, vector_bytes // dtype.itemsize)
    if rest or vectors not in BLOCK_VECTORS:
        return None
    shapes = block_shapes(registers)
    shape = [v for _, v in shapes].index(vectors)
    return shape, shapes[shape][0], tiles


def _channels_shared(
    x: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    b: np.ndarray,
    lo: np.ndarray,
    k: np.ndarray,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`conv_channels_first`'s chunks in turn, each shared among the threads by
    channels (where the tiles are few against the filters: not :func:`_shared`).

    Each thread transforms its share of the filters (its output channels of every
    group) and of each chunk's input tiles (its input channels); then, once all tiles
    are transformed, it multiplies its filters by them (single-threaded BLAS) and
    transforms its products back into its output channels, which no other thread
    reads.  Where the filters' transform was kept, each thread compares its part of
    the weight with the kept copy as it transforms the first chunk's tiles, rather
    than the calling thread comparing all of it before (:class:`npconv._workspace.Claim`:
    3x3 128->128 @28 b1 0.76-0.82 against 0.80-0.86 ms, 256->256 @14 b1 0.95-0.98
    against 1.02-1.05, in alternating processes); a changed weight is transformed
    afresh before the products.  Two-thread BLAS ran a small image's 36 thin products
    no faster than one thread, and the transforms ran on one core: 3x3 128->128 @28 b1
    0.64-0.71 against 1.06-1.07 ms, 256->256 @14 b1 1.15 against 1.66 (called directly
    in one process, 2 threads).  Where a chunk has a few vectors of tiles
    (:func:`_product_blocks`) and the filters are kept, they are kept packed by blocks
    of output channels, which the threads share, and multiplied by :func:`_products`
    (3x3 512->512 @7 b8, 32 tiles: 5.7-6.2 against 7.5-8.4 ms).
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    dtype, cols = x.dtype, -(-spec.out_size[1] // 4)
    threads = range(1 if runs_alone(spec.batch) else get_threads())
    ins = even_runs(spec.in_channels, len(threads))  # each thread's input channels
    w_first, gm = _filter_operands(wc, spec, dtype)  # (O, C/G, 3, 3), (6, 3)
    chunks = list(_chunks(spec, dtype.itemsize))
    blocks = _product_blocks(chunks, dtype)
    name = KEPT_NAME if blocks is None else f"{KEPT_NAME}, blocks of {blocks[1]}"
    claimed, keepable = claim(name, wc)
    if blocks is not None and claimed is None and not keepable:
        blocks, name = None, KEPT_NAME  # filters made afresh: multiplied as they lie
        claimed, keepable = claim(name, wc)
    if blocks is None:
        runs = even_runs(og, len(threads))  # each thread's output channels in every group
    else:  # and its blocks of them
        shape, rows, tiles = blocks
        count = -(-og // rows)
        runs = even_runs(count, len(threads))
        r, channel = np.arange(rows, dtype=np.int64), np.arange(cg, dtype=np.int64)
        last = np.where((count - 1) * rows + r < og, r * tiles, -1)  # rows past the group
        operands = (channel * rows, channel * tiles, r * tiles, last, np.zeros(tiles, dtype))
    outs = runs if blocks is None else [(k0 * rows, min(k1 * rows, og)) for k0, k1 in runs]
    holds = [True] * len(threads)  # whether each thread's part of the weight is unchanged
    if claimed is None and blocks is None:
        u_flat = _filters_array(spec.out_channels * cg, dtype, keepable)
    elif claimed is None:  # transformed into a buffer, packed into the array kept
        u_flat = buffer("filters", (36, spec.out_channels * cg), dtype)
        packed = np.empty((36, g, count, cg, rows), dtype)
    elif blocks is None:  # checked, a part per thread, alongside the first chunk's inputs
        u_flat = claimed.value
    else:
        packed = claimed.value
    u = None if blocks is not None else u_flat.reshape(36, g, og, cg)  # filter o * C/G + c

    def transform(c: tuple[int, int, int, int], v: np.ndarray, first: bool, t: int) -> None:
        if first and claimed is None:  # the filters of this thread's output channels
            for group in range(g):
                o0, o1 = (group * og + i for i in outs[t])
                _transform_filters(w_first, gm, o0 * cg, o1 * cg, u_flat)
            if blocks is not None:
                _pack_filters(u_flat, og, *runs[t], packed)
        elif first and claimed is not None:
            holds[t] = claimed.holds(t, len(threads))
        c0, c1 = ins[t]
        _input_planes(x[:, c0:c1], lo, *c[:3], cols, k, v[:, c0:c1])

    def product(c: tuple[int, int, int, int], v: np.ndarray, m: np.ndarray, t: int) -> None:
        a, z = outs[t]
        letting_go()  # the products release the GIL: the caller need not wait longer
        if u is None:
            _products(packed, v, m, *runs[t], shape, *operands)
        else:
            np.matmul(u[:, :, a:z], v.reshape(36, g, cg, c[3]), out=m[:, :, a:z])
        for group in range(g):
            o0, o1 = group * og + a, group * og + z
            planes = m[:, group, a:z]
            _check(_output_planes(planes, b[o0:o1], *c[:3], cols, k, relu, y[:, o0:o1]))

    with single_threaded_blas():
        for index, c in enumerate(chunks):
            v = buffer("transformed", (36, spec.in_channels, c[3]), dtype)
            m = buffer("products", (36, g, og, c[3]), dtype)
            parallel_map(partial(transform, c, v, index == 0), threads)
            if index == 0 and claimed is not None and not all(holds):  # changed since
                claimed.release()
                u = _filters(wc, spec, dtype)  # made afresh (and not kept again)
            elif index == 0 and keepable:
                keep(name, wc, u_flat if blocks is None else packed)
            parallel_map(partial(product, c, v, m), threads)


def weight_grad(x: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``dL/dw`` by F(4x4, 3x3): unpadded ``(N, C, H, W)`` input and output gradient
    ``(N, O, *out)`` -> ``(O, C/G, kh, kw)``.

    The adjoint of :func:`conv_channels_first` in the filters: per chunk of tiles, the
    input tiles transformed as in the forward, ``V (36, C, T)``, and the output
    gradient's tiles by the adjoint of the output transform, ``Gy (36, O, T)``
    (:func:`_gradient_planes`); 36 GEMMs per group sum the tiles,
    ``M[a] += Gy[a] (O/G x T) @ V[a]^T (T x C/G)``; then one product by the filters'
    transform ``G^T`` (9, 36) gives the 3x3 taps (a smaller kernel keeps its own).  The
    spec's zero pads are applied here.  Where the tiles outweigh the filters
    (:func:`_shared`) the chunks are shared out among the threads, each summing its
    own ``M`` (3x3 64->64 @56 b8: 10.1 against 18.9 ms, the transforms on both cores).
    Images up to :data:`WIDE` wide are transformed channels-last (:func:`_input_tiles`,
    :func:`_gradient_tiles`), their tiles ``(36, T, C)``, whatever their channels
    (ms, 3x3 layers, against channels-first: 256->256 @14 b8 7.2 / 12.5, 128->128 @28
    b1 1.29 / 1.60, 64->64 @56 b1 1.21 / 1.40, b8 7.9 / 8.8, but @224 22.4 / 18.1):
    the channels-first tiles of narrow rows are written a few values at a time.
    """
    g, cg, og, o = spec.groups, spec.group_in, spec.group_out, spec.out_channels
    if not spec.batch:  # no products
        return np.zeros((o, cg, *spec.kernel), x.dtype)
    x = np.ascontiguousarray(x)
    dtype = x.dtype
    gy = np.ascontiguousarray(gy, dtype)
    _, lo, k = _constants(spec, dtype, None)
    cols = -(-spec.out_size[1] // 4)  # tiles per tile row
    sums: dict[int, np.ndarray] = {}  # each thread's transformed gradient, (36, G, O/G, C/G)
    last = spec.in_size[1] <= WIDE  # the tiles (36, T, C) and (36, T, O), else (36, C, T)
    x_last, gy_last = move_channels_last(x), move_channels_last(gy)  # views

    def chunk(c: tuple[int, int, int, int]) -> None:
        n0, r0, rows, count = c
        if last:
            v = buffer("transformed", (36, count, spec.in_channels), dtype)
            _input_tiles(x_last, lo, n0, r0, rows, cols, k, v)
            gt = buffer("products", (36, count, o), dtype)
            _gradient_tiles(gy_last, n0, r0, rows, cols, k, gt)
            vt = v.reshape(36, count, g, cg).transpose(0, 2, 1, 3)  # (36, G, T, C/G)
            gtg = gt.reshape(36, count, g, og).transpose(0, 2, 3, 1)  # (36, G, O/G, T)
        else:
            v = buffer("transformed", (36, spec.in_channels, count), dtype)
            _input_planes(x, lo, n0, r0, rows, cols, k, v)
            gt = buffer("products", (36, o, count), dtype)
            _gradient_planes(gy, n0, r0, rows, cols, k, gt)
            vt = v.reshape(36, g, cg, count).transpose(0, 1, 3, 2)  # (36, G, T, C/G)
            gtg = gt.reshape(36, g, og, count)  # (36, G, O/G, T)
        thread = threading.get_ident()
        if thread in sums:  # this chunk's share, added to the thread's sum
            sums[thread] += np.matmul(gtg, vt, out=buffer("tiles", (36, g, og, cg), dtype))
        else:  # a fresh array: read after the pool's threads have moved on
            sums[thread] = gtg @ vt

    with _single_threaded_blas(spec):
        _run_chunks(chunk, spec, dtype.itemsize)
        total, *others = sums.values()
        for other in others:
            total += other
        dw = (_filter_transform(dtype).T @ total.reshape(36, o * cg)).T  # w[t] = G^T @ M
    dw = dw.reshape(o, cg, 3, 3)[:, :, : spec.kernel[0], : spec.kernel[1]]
    return np.ascontiguousarray(dw)


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None."""
    if max(spec.stride) > 1 or max(spec.dilation) > 1 or max(spec.kernel) > 3:
        return (
            f"it supports stride 1, dilation 1 and kernels of at most 3x3, got "
            f"stride={spec.stride}, dilation={spec.dilation}, kernel={spec.kernel}"
        )
    return None


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries :func:`conv_channels_first` holds at once: the transformed
    filters and one chunk's tiles (the threads' chunks together)."""
    item = np.dtype(dtype).itemsize
    return 36 * spec.group_in * spec.out_channels * item + _chunk_bytes(spec, item)


def weight_memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries :func:`weight_grad` holds at once: the transformed gradient
    and one chunk's share of it (per thread where the chunks are shared), and one chunk's
    tiles (the threads' chunks together)."""
    item = np.dtype(dtype).itemsize
    sums = get_threads() if _shared(spec) else 1
    return 2 * sums * 36 * spec.group_in * spec.out_channels * item + _chunk_bytes(spec, item)


def weight_work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """The work of :func:`weight_grad`: the two compiled transforms
    (:func:`_transforms_work`), 36 GEMMs per group and chunk, the chunks' shares added
    up, and the filters' transform back."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    tiles = _tile_count(spec)
    per_tile, budget = _chunk_budget(spec, item)
    count = max(1, -(-tiles // max(1, min(tiles, budget // per_tile))))  # chunks
    filters = 36 * cg * spec.out_channels * item
    total = filter_work(36, cg * spec.out_channels, item)
    total += gemm(og, tiles / count, cg, 36 * g * count, item)
    return total + _transforms_work(spec, item) + units(passes=3 * filters * (count - 1))


def work(spec: ConvSpec, dtype: np.dtype, filters: Counter[str] | None = None) -> Counter[str]:
    """The filters' transform (:func:`_filters_work`, or the work ``filters`` that
    stands for it), the 36 GEMMs and the two compiled transforms
    (:func:`_transforms_work`)."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    total = _filters_work(spec, item) if filters is None else filters
    total += gemm(_tile_count(spec), cg, og, 36 * g, item)  # the products
    return total + _transforms_work(spec, item)


#: The share of :data:`npconv._workspace.DERIVED_BYTES` that one layer's transformed
#: filters and the copy of its weight may take for "auto" to price them as kept, so
#: that a few layers' fit together.
KEPT_SHARE = 4


def kept_work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """:func:`work` where the filters' transform is kept from call to call: instead of
    the transform, its check, a pass over the weight and the kept copy (186 us for
    256x256 filters, one thread, caches cold); where the transform and the copy fit
    1/:data:`KEPT_SHARE` of the bytes kept for all layers, otherwise :func:`work`."""
    item = max(np.dtype(dtype).itemsize, 4)
    weight = spec.group_in * spec.out_channels * math.prod(spec.kernel) * item
    if 36 * spec.group_in * spec.out_channels * item + weight > DERIVED_BYTES // KEPT_SHARE:
        return work(spec, dtype)
    return work(spec, dtype, units(passes=2 * weight))
