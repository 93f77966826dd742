"""``winograd_f2_jit``: Winograd F(2x2, 3x3) with compiled (numba) transforms, GEMMs in BLAS.

The minimal filtering of :mod:`npconv.algorithms.winograd` (``AT``, ``G``, ``BT`` of
:func:`~npconv.algorithms.winograd.transforms` for ``m = 2``, every entry 0, 1, -1 or
1/2) for 2-d 3x3 layers at stride 1 and dilation 1.  The output is cut
into 2x2 tiles, each reading a 4x4 tile of the input; per chunk of tile rows (of one or
more samples), channels-last:

1. a compiled kernel (:func:`_input_tiles`) gathers each input tile from the unpadded
   input (zero padding fused: a position outside the image reads as zero) and transforms
   it, ``V[a, t, c] = (BT d BT^T)[a]`` for the 16 points ``a``, vectorised over channels;
2. 16 GEMMs per group (one NumPy ``matmul`` of the stack, on BLAS's threads):
   ``M[a] = V[a] (tiles x C/G) @ U[a] (C/G x O/G)``, ``U = G w G^T`` the transformed
   filters, kept from call to call for weights seen before
   (:func:`npconv._workspace.kept`);
3. a compiled kernel (:func:`_output_tiles`) transforms back, ``y = AT m AT^T`` per tile,
   adds the bias, applies the ReLU where asked and writes the 2x2 outputs (the edge
   tiles cropped).

Against ``winograd_jit``'s F(4x4, 3x3): 4 multiplications per output and channel pair
instead of 2.25 (9 directly), but transformed filters 16/36 the size and four times the
tiles, so that the GEMMs are less thin on small images: ResNet-50's 3x3 256->256 @14 at
batch 1 has 49 tiles a point here, 16 there.  Measured there (2 cores, one process,
ms): 1.1 against 2.2 by ``winograd_jit`` and 2.0 by ``im2col_jit``; 512->512 @7 2.3
against 5.2 and 2.7; 128->128 @28 1.4 against 1.7 and 2.5.  The transforms run on the
calling thread; "auto" prices them so (``serial``), which leaves larger images and
batches to ``winograd_jit``.

Error: the transforms add and halve only, so that the error is a direct GEMM's (within
about 5e-7 of max |y| on unit-scale float32 data).  Not exact for integers.  A value of
the result that is not finite (NaN or Inf in the operands, or an overflow) makes the
output transform raise :class:`~npconv._operands.NonFinite`, and the dispatch computes
the result again by a direct algorithm (the row's ``checks_result``).  It needs numba
(the ``jit`` extra).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np

from .._cost import gemm, units
from .._jit import kernel
from .._operands import NonFinite
from .._spec import ConvSpec
from .._windows import WORKSPACE_BYTES, chunks
from .._workspace import DERIVED_BYTES, buffer, keep, kept
from .winograd import transforms

#: Bytes of the transformed tiles (input and product) of one chunk: a few MiB, so that
#: they stay in the caches between the transforms and the GEMMs...
CHUNK_BYTES = 2 * 2**20
#: ... but a chunk holds at least this many tiles (within ``WORKSPACE_BYTES``), so that
#: the GEMMs are not thin: 3x3 512->512 @7 at batch 8 in chunks of 32 tiles took 19.7 ms,
#: its GEMMs on all 128 tiles at once 9.2.
CHUNK_TILES = 256


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None."""
    if spec.kernel != (3, 3) or max(spec.stride) > 1 or max(spec.dilation) > 1:
        return (
            f"it supports 3x3 kernels at stride 1 and dilation 1, got kernel={spec.kernel}, "
            f"stride={spec.stride}, dilation={spec.dilation}"
        )
    return None


@kernel
def _input_tiles(x, lo, n0, r0, rows, cols, v):
    """``V[a, t, c]`` (16, T, C) of the 4x4 input tiles of tile rows ``r0..r0+rows-1`` of
    samples ``n0..`` of ``x`` (N, H, W, C), zero-padded by ``lo`` (top, left) and past
    the image: tile ``t = (p * rows + i) * cols + j`` of sample ``n0 + p`` reads rows
    ``2 (r0 + i) - lo[0] ..`` and columns ``2 j - lo[1] ..`` of it."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    d = np.empty((4, 4, channels), v.dtype)  # a tile, transformed along its rows in place
    for t in range(v.shape[1]):
        p, i, j = t // (rows * cols), t // cols % rows, t % cols
        n, top, left = n0 + p, 2 * (r0 + i) - lo[0], 2 * j - lo[1]
        for r in range(4):
            for q in range(4):
                h, w = top + r, left + q
                if 0 <= h < height and 0 <= w < width:
                    d[r, q] = x[n, h, w]
                else:
                    d[r, q] = 0
        for q in range(4):  # BT along the rows: d[:, q] = BT @ d[:, q]
            for c in range(channels):
                d0, d1, d2, d3 = d[0, q, c], d[1, q, c], d[2, q, c], d[3, q, c]
                d[0, q, c], d[1, q, c], d[2, q, c], d[3, q, c] = d0 - d2, d1 + d2, d2 - d1, d3 - d1
        for r in range(4):  # then along the columns, into the 16 points r * 4 + q
            for c in range(channels):
                d0, d1, d2, d3 = d[r, 0, c], d[r, 1, c], d[r, 2, c], d[r, 3, c]
                v[4 * r, t, c], v[4 * r + 1, t, c] = d0 - d2, d1 + d2
                v[4 * r + 2, t, c], v[4 * r + 3, t, c] = d2 - d1, d3 - d1


@kernel
def _output_tiles(m, b, n0, r0, rows, cols, relu, y):
    """Write ``AT m AT^T + b`` of the products ``m`` (16, T, O) into ``y`` (N, H, W, O),
    where ``relu`` its ``max(., 0)`` (NaN stays NaN), for the tiles of
    :func:`_input_tiles`, the parts of the edge tiles beyond ``y`` dropped; return
    whether every value computed (before the ReLU) is finite."""
    height, width, channels = y.shape[1], y.shape[2], y.shape[3]
    s = np.empty((2, 4, channels), y.dtype)  # a tile transformed along its rows
    good = True
    for t in range(m.shape[1]):
        p, i, j = t // (rows * cols), t // cols % rows, t % cols
        n, top, left = n0 + p, 2 * (r0 + i), 2 * j
        for q in range(4):  # AT along the rows: s[:, q] = AT @ m[:, q]
            for o in range(channels):
                m0, m1, m2, m3 = m[q, t, o], m[4 + q, t, o], m[8 + q, t, o], m[12 + q, t, o]
                s[0, q, o], s[1, q, o] = m0 + m1 + m2, m1 - m2 + m3
        for r in range(min(2, height - top)):  # then along the columns, plus the bias
            row = y[n, top + r]
            for o in range(channels):
                e0, e1, e2, e3 = s[r, 0, o], s[r, 1, o], s[r, 2, o], s[r, 3, o]
                v0, v1 = e0 + e1 + e2 + b[o], e1 - e2 + e3 + b[o]
                good &= (v0 - v0) + (v1 - v1) == 0  # false for NaN and Inf
                if relu:  # NaN < 0 is false: NaN stays (.real: complex y compiles)
                    v0, v1 = 0 if v0.real < 0 else v0, 0 if v1.real < 0 else v1
                row[left, o] = v0
                if left + 1 < width:
                    row[left + 1, o] = v1
    return good


#: The name of the transformed filters kept between calls (:func:`npconv._workspace.kept`).
KEPT_NAME = "winograd_f2_jit filters"


def _filters(wc: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The transformed filters ``U = G w G^T``, ``(16, C/G, O)``, of the channels-last
    weight ``wc`` ``(3, 3, C/G, O)``, in ``dtype``; kept from call to call for weights
    seen before (compared with a copy, bit for bit, on every call)."""
    u, keepable = kept(KEPT_NAME, wc)
    if u is None:
        g = transforms(2, 3)[1].astype(dtype)  # (4, 3)
        u = np.einsum("pi,ijco,qj->pqco", g, wc.astype(dtype, copy=False), g, optimize=True)
        u = np.ascontiguousarray(u.reshape(16, *wc.shape[2:]))
        if keepable:
            keep(KEPT_NAME, wc, u)
    return u


def _tile_shape(spec: ConvSpec) -> tuple[int, ...]:
    """Tile rows and columns of a sample's output (a 2x2 tile per axis of any spec)."""
    return tuple(-(-o // 2) for o in spec.out_size)


def _chunk_budget(spec: ConvSpec, itemsize: int) -> tuple[int, int]:
    """Bytes of transformed tiles (input and product) per tile, and per chunk: at least
    :data:`CHUNK_BYTES` and :data:`CHUNK_TILES` tiles, within ``WORKSPACE_BYTES``."""
    per_tile = 16 * (spec.in_channels + spec.out_channels) * itemsize
    return per_tile, min(max(CHUNK_BYTES, CHUNK_TILES * per_tile), WORKSPACE_BYTES)


def conv(
    xp: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """F(2x2, 3x3) of an unpadded ``(N, H, W, C)`` input and ``(3, 3, C/G, O)``: ``(N, *out, O)``,
    plus ``bias``, then ``max(y, 0)`` where ``relu`` (in the output transforms).

    The spec's zero pads are applied here.
    """
    x = np.ascontiguousarray(xp)
    dtype = x.dtype
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype)
    b = np.zeros(spec.out_channels, dtype) if bias is None else bias.astype(dtype)
    lo = np.array([p[0] for p in spec.pads], dtype=np.int64)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    tiles = _tile_shape(spec)
    u = _filters(wc, dtype).reshape(16, cg, g, og).transpose(0, 2, 1, 3)  # (16, G, C/G, O/G)
    per_tile, budget = _chunk_budget(spec, dtype.itemsize)
    for batch, rows in chunks(replace(spec, out_size=tiles), per_tile, budget):
        n0, n1, _ = batch.indices(spec.batch)
        r0, r1, _ = rows.indices(tiles[0])
        count = (n1 - n0) * (r1 - r0) * tiles[1]
        v = buffer("transformed", (16, count, spec.in_channels), dtype)
        _input_tiles(x, lo, n0, r0, r1 - r0, tiles[1], v)
        vg = v.reshape(16, count, g, cg).transpose(0, 2, 1, 3)  # (16, G, T, C/G): a view
        m = np.matmul(vg, u, out=buffer("products", (16, g, count, og), dtype))
        m = m.transpose(0, 2, 1, 3).reshape(16, count, -1)  # (16, T, O): a view at G = 1
        if not _output_tiles(m, b, n0, r0, r1 - r0, tiles[1], relu, y):
            raise NonFinite("winograd_f2_jit: a value of the result is not finite")
    return y


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries :func:`conv` holds at once: the transformed filters and one
    chunk's tiles."""
    item = np.dtype(dtype).itemsize
    per_tile, budget = _chunk_budget(spec, item)
    chunk = min(spec.batch * math.prod(_tile_shape(spec)) * per_tile, budget)
    return 16 * spec.in_channels * spec.out_channels * item + chunk


def work(spec: ConvSpec, dtype: np.dtype, filters: Counter[str] | None = None) -> Counter[str]:
    """The filters' transform (NumPy: about eight passes over the 16 values per filter it
    writes, or the work ``filters`` that stands for it), the 16 GEMMs and the two
    compiled transforms on the calling thread, together about as long as two passes over
    their 16 values per tile and channel (3x3 256->256 @14 b1: 0.09 and 0.04 ms, 512->512
    @7 b8: 0.70 and 0.14)."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, o = spec.groups, spec.group_in, spec.out_channels
    tiles = spec.batch * math.prod(_tile_shape(spec))
    total = units(passes=8 * 16 * cg * o * item, calls=4) if filters is None else filters
    total += gemm(tiles, cg, spec.group_out, 16 * g, item)
    return total + units(serial=2 * 16 * tiles * (spec.in_channels + o) * item)


#: The share of :data:`npconv._workspace.DERIVED_BYTES` that one layer's transformed
#: filters and the copy of its weight may take for "auto" to price them as kept.
KEPT_SHARE = 4


def kept_work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """:func:`work` where the filters' transform is kept from call to call: its check
    instead, a pass over the weight and the kept copy, where the transform and the copy
    fit 1/:data:`KEPT_SHARE` of the bytes kept for all layers."""
    item = max(np.dtype(dtype).itemsize, 4)
    weight = spec.group_in * spec.out_channels * 9 * item
    if 16 * spec.group_in * spec.out_channels * item + weight > DERIVED_BYTES // KEPT_SHARE:
        return work(spec, dtype)
    return work(spec, dtype, units(passes=2 * weight))
