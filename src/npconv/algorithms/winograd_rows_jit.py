"""``winograd_rows_jit``: Winograd F(4, 3) along each image row, the kernel's rows summed
by BLAS GEMMs; compiled (numba) transforms.

The minimal filtering of :mod:`npconv.algorithms.winograd` in one dimension only: each
output row is cut into tiles of 4 values, each reading 6 values of a padded input row,
and the kernel's rows (any number ``kh``) are summed as an im2col does, by the depth of
a GEMM.  With ``BT``, ``G`` and ``AT`` the matrices of F(4, 3)
(:func:`~npconv.algorithms.winograd.transforms`), per chunk of output rows:

1. a compiled kernel (:func:`_input_rows`) transforms every input row that the chunk
   reads, ``BT d`` for the 6 values ``d`` of each tile, zero padding fused, and writes
   each transformed row once for each kernel row that reads it:
   ``P[a, (c, i), (n, r, q)] = (BT d)[a]``, ``d`` the tile ``q`` of padded input row
   ``r + i`` of channel ``c``, for the 6 points ``a``;
2. 6 GEMMs (NumPy ``matmul``, per group): ``M[a] = U[a] (O/G x C/G kh) @ P[a]``, ``U[a,
   o, (c, i)] = (G w[o, c, i])[a]`` the filters' rows transformed (kept from call to
   call for weights seen before, :func:`npconv._workspace.kept`);
3. a compiled kernel (:func:`_output_rows`) transforms back, ``y = AT m`` per tile, adds
   the bias, applies the ReLU where asked and writes the 4 outputs of each tile into the
   channels-first result (the last tile cropped).

Cost: 6/4 = 1.5 products per output and kernel row instead of 3, half of a direct
convolution's; the patch matrix holds 1.5 ``kh`` values per input value (an im2col's 9
for 3x3), and the GEMMs are as large as an im2col's, so that BLAS's own threads share
them well at batch 1, where 2-d Winograd's 36 small products do not.  The transforms
run on the calling thread, or, where ``im2col`` shares its chunks among npconv's
threads (:func:`~npconv.algorithms.im2col._shared`: whole samples each), each thread
transforms and multiplies its own chunks with single-threaded BLAS.  For 2-d (any
kernel height, widths up to 3 padded with zero taps) and 1-d (a single row) stride-1
layers.  Error: F(4, 3)'s in one dimension, below 2-d F(4x4, 3x3)'s (float32, unit-scale
data, 3x3 layers of 64-512 channels: 2.5e-6 of max |y|, against 4e-7 for im2col and
3e-6-1e-5 for winograd_jit).  Not exact for integers.
A result with a value that is not finite (NaN or Inf in the operands, or an overflow in
the transforms) is computed again by a direct algorithm: the output transform tests
each value as it writes it (the row's ``checks_result``).  It needs numba (the ``jit`` extra).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from .._cost import gemm, units
from .._jit import kernel
from .._operands import NonFinite
from .._spec import ConvSpec
from .._threads import blas_ran_in_turn, even_runs, get_threads, parallel_map
from .._windows import (
    channels_last,
    chunks,
    one_row,
    thread_chunks,
)
from .._workspace import buffer, keep, kept
from .im2col import _shared
from .winograd import transforms

#: Bytes of one chunk's patch matrix and products: a few MiB, so that they stay in the
#: caches between the transforms and the GEMMs.
CHUNK_BYTES = 4 * 2**20
#: ... but a run of a row's tiles (where one row exceeds them) holds at least this many,
#: so that the GEMMs stay wide: 1-d 3-tap 512->512 @4096 b1 by runs of 79 tiles ran at
#: 0.75x the speed of one chunk of the row.
CHUNK_TILES = 256
#: The name of the transformed filters kept between calls (:func:`npconv._workspace.kept`).
KEPT_NAME = "winograd_rows_jit filters"
#: Each transform's passes per value of the patch matrix or the products it reads or
#: writes (the compiled kernels' cost in units of one elementwise pass).
TRANSFORM_PASSES = 2


@kernel
def _input_rows(x, lo, n0, r0, q0, kh, k, p):
    """``p[a, c * kh + i, s, r, q] = (BT d)[a]``: the 6-value tiles ``q0 + q`` ``d`` of
    padded input row ``r0 + r + i`` of sample ``n0 + s`` of ``x`` (N, C, H, W), channel
    ``c``, transformed, for ``p`` (6, C * kh, samples, rows, tiles); zero-padded by ``lo``
    (top, left) and beyond the image.  ``x`` and ``p`` are contiguous; ``k`` holds 2, 4 and 5
    in ``x``'s dtype.

    Per channel, each padded row that the chunk reads is transformed tile by tile into
    ``t`` (6, rows + kh - 1, tiles), the tiles within the image read straight from it,
    the edge ones through a test per value; then each of the ``6 kh`` blocks of ``p``
    that the channel fills is one contiguous copy of ``rows`` rows of ``t``.  The flat
    arrays are indexed by unsigned offsets, with no view made per row and no test for a
    negative index (against views of each row, one thread, us: 64 channels @56 263
    against 439, 256 @14 107 against 276, 512 @7 131 against 320); copied row by row
    into ``p``, 64 channels @56 took twice as long.
    """
    two, four, five = k[0], k[1], k[2]
    samples, rows, tiles = p.shape[2], p.shape[3], p.shape[4]
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    top, left = lo[0], lo[1]
    span = rows + kh - 1  # the padded rows read
    n, block = span * tiles, rows * tiles
    t = np.empty(6 * n, x.dtype)  # t[a n + pr tiles + q]
    d = np.zeros(6, x.dtype)  # an edge tile's values
    inner0 = min(tiles, (left + 3) // 4)  # the tiles that read within the image
    inner1 = max(inner0, min(tiles, (width + left - 6) // 4 + 1))
    xf, pf = x.reshape(-1), p.reshape(-1)
    one, stride = np.uint64(1), np.uint64(n)
    for s in range(samples):
        for c in range(channels):
            plane = ((n0 + s) * channels + c) * height * width
            for pr in range(span):
                ir, at = r0 + pr - top, pr * tiles
                if ir < 0 or ir >= height:  # a padding row
                    for a in range(6):
                        for q in range(tiles):
                            t[a * n + at + q] = 0
                    continue
                start = plane + ir * width - left  # of the padded row
                for q in range(tiles):
                    if inner0 <= q0 + q < inner1:
                        o = np.uint64(start + 4 * (q0 + q))
                        d0, d1, d2 = xf[o], xf[o + one], xf[o + 2 * one]
                        d3, d4, d5 = xf[o + 3 * one], xf[o + 4 * one], xf[o + 5 * one]
                    else:
                        for j in range(6):
                            column = 4 * (q0 + q) + j - left
                            d[j] = xf[start + left + column] if 0 <= column < width else 0
                        d0, d1, d2, d3, d4, d5 = d[0], d[1], d[2], d[3], d[4], d[5]
                    u = np.uint64(at + q)
                    t[u] = four * d0 - five * d2 + d4
                    t[u + stride] = four * (d1 + d2) - (d3 + d4)
                    t[u + 2 * stride] = four * (d2 - d1) + (d3 - d4)
                    t[u + 3 * stride] = two * (d3 - d1) + (d4 - d2)
                    t[u + 4 * stride] = two * (d1 - d3) + (d4 - d2)
                    t[u + 5 * stride] = four * d1 - five * d3 + d5
            for a in range(6):  # output row r reads padded row r + i by kernel row i
                for i in range(kh):
                    source = np.uint64(a * n + i * tiles)
                    target = np.uint64((((a * channels + c) * kh + i) * samples + s) * block)
                    for v in range(np.uint64(block)):
                        pf[target + v] = t[source + v]


@kernel
def _output_rows(m, b, n0, r0, q0, k, relu, y):
    """Write ``AT m + b`` of the products ``m`` (6, O, samples, rows, tiles) into tiles
    ``q0..`` of output rows ``r0..`` of samples ``n0..`` of ``y`` (N, O, Ho, Wo), the
    image's last tile cropped, where
    ``relu`` its ``max(., 0)``; return whether every value (before the ReLU) is finite
    (:func:`_check`).  ``m`` and ``y`` are contiguous, indexed flat as in
    :func:`_input_rows`; ``k`` holds 2, 4, 8 and 0 in ``y``'s dtype."""
    two, four, eight, zero = k[0], k[1], k[3], k[4]
    outs, samples, rows, tiles = m.shape[1], m.shape[2], m.shape[3], m.shape[4]
    height, width = y.shape[2], y.shape[3]
    columns = min(4 * tiles, width - 4 * q0)
    e = np.empty(4 * tiles, y.dtype)
    mf, yf = m.reshape(-1), y.reshape(-1)
    stride = np.uint64(outs * samples * rows * tiles)  # from one point to the next
    good = True
    for s in range(samples):
        for o in range(outs):
            bo = b[o]
            for r in range(rows):
                at = np.uint64(((o * samples + s) * rows + r) * tiles)
                for q in range(tiles):
                    u = at + np.uint64(q)
                    a0, a1, a2 = mf[u], mf[u + stride], mf[u + 2 * stride]
                    a3, a4, a5 = mf[u + 3 * stride], mf[u + 4 * stride], mf[u + 5 * stride]
                    e[4 * q] = a0 + (a1 + a2) + (a3 + a4) + bo
                    e[4 * q + 1] = (a1 - a2) + two * (a3 - a4) + bo
                    e[4 * q + 2] = (a1 + a2) + four * (a3 + a4) + bo
                    e[4 * q + 3] = (a1 - a2) + eight * (a3 - a4) + a5 + bo
                out = np.uint64((((n0 + s) * outs + o) * height + r0 + r) * width + 4 * q0)
                for j in range(columns):
                    v = e[j]
                    good &= v - v == 0  # false for NaN and Inf
                    yf[out + np.uint64(j)] = zero if relu and v.real < 0 else v  # NaN stays
    return good


def _check(finite: bool) -> None:
    """Raise :class:`NonFinite` unless the output transform wrote finite values only: the
    dispatch then computes the result again by a direct algorithm."""
    if not finite:
        raise NonFinite("winograd_rows_jit: a value of the result is not finite")


def _geometry(spec: ConvSpec) -> tuple[int, int, int]:
    """A 2-d spec's ``(kh, tiles, values)``: its kernel rows, the tiles of an output row
    and the values of patches and products that one output row of one sample needs."""
    kh, tiles = spec.kernel[0], -(-spec.out_size[1] // 4)
    return kh, tiles, 6 * tiles * (spec.in_channels * kh + spec.out_channels)


@kernel
def _transform_rows(w, gm, u):
    """``u[a, r] = (G w[r])[a]``: each filter row ``r`` of ``w`` (rows, taps), its taps (at
    most 3) padded with zeros after, by F(4, 3)'s ``G`` ``gm`` (6, 3), into ``u`` (6, rows).

    In blocks of rows: their taps gathered into three contiguous rows, then each row of
    ``u`` a vectorised pass over them (``np.tensordot``, BLAS's product of a (6, 3)
    matrix by a thin one, took 0.5-4 ms for 3x3 filters of 256-512 channels).
    """
    block = 1024
    rows, taps = w.shape
    t = np.zeros((3, block), u.dtype)
    for start in range(0, rows, block):
        count = min(block, rows - start)
        for j in range(taps):
            tj = t[j]
            for r in range(count):
                tj[r] = w[start + r, j]
        t0, t1, t2 = t[0], t[1], t[2]
        for a in range(6):
            g0, g1, g2 = gm[a, 0], gm[a, 1], gm[a, 2]
            out = u[a, start : start + count]
            for r in range(count):
                out[r] = g0 * t0[r] + g1 * t1[r] + g2 * t2[r]


def _filters(w: np.ndarray, spec: ConvSpec, dtype: np.dtype) -> np.ndarray:
    """The filters' rows transformed, ``U[a, g, o, c * kh + i] = (G w[o, c, i])[a]``,
    ``(6, G, O/G, C/G * kh)``, of the channels-first weight ``w`` (O, C/G, kh, kw)
    (:func:`_transform_rows`) in the thread's ``"filters"`` buffer, or a fresh array kept
    from call to call for weights seen before (compared with a copy, bit for bit, on
    every call, unless they cannot change)."""
    u, keepable = kept(KEPT_NAME, w)
    if u is None:
        rows = np.ascontiguousarray(w, dtype).reshape(-1, w.shape[3])  # (O C/G kh, kw)
        shape = (6, len(rows))
        u = np.empty(shape, dtype) if keepable else buffer("filters", shape, dtype)
        _transform_rows(rows, transforms(4, 3)[1].astype(dtype), u)
        if keepable:
            keep(KEPT_NAME, w, u)
    g, og = spec.groups, spec.group_out
    return u.reshape(6, g, og, spec.group_in * spec.kernel[0])


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
    one of a single row."""
    if spec.nd == 1:
        y = conv_channels_first(x[:, :, None], w[:, :, None], one_row(spec), bias, relu)
        return y.reshape(spec.batch, spec.out_channels, *spec.out_size)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    dtype = np.result_type(x, w)
    x = np.ascontiguousarray(x, dtype)
    y = np.empty((spec.batch, spec.out_channels, *spec.out_size), dtype)
    u = _filters(w, spec, dtype)  # (6, G, O/G, C/G kh)
    b = np.zeros(spec.out_channels, dtype) if bias is None else bias.astype(dtype)
    lo = np.array([p[0] for p in spec.pads], dtype=np.int64)
    k = np.array([2, 4, 5, 8, 0], dtype)
    kh, rows = spec.kernel[0], spec.out_size[0]

    def chunk(c: tuple[slice, slice, tuple[int, int]]) -> None:
        (n0, n1, _), (r0, r1, _), (q0, q1) = c[0].indices(spec.batch), c[1].indices(rows), c[2]
        shape = (n1 - n0, r1 - r0, q1 - q0)
        p = buffer("patches", (6, spec.in_channels * kh, *shape), dtype)
        _input_rows(x, lo, n0, r0, q0, kh, k, p)
        columns = math.prod(shape)
        m = buffer("products", (6, g, og, columns), dtype)
        np.matmul(u, p.reshape(6, g, cg * kh, columns), out=m)
        m = m.reshape(6, spec.out_channels, *shape)
        _check(_output_rows(m, b, n0, r0, q0, k, relu, y))

    if _shared(spec):  # each thread its chunks, with single-threaded BLAS
        parallel_map(chunk, _chunks(spec, dtype.itemsize, thread_chunks), blas=True)
    else:  # the chunks in turn, the GEMMs on BLAS's threads
        for c in _chunks(spec, dtype.itemsize, chunks):
            chunk(c)
        blas_ran_in_turn()
    return y


def _chunks(
    spec: ConvSpec, itemsize: int, split: Callable[..., Iterable[tuple[slice, slice]]]
) -> list[tuple[slice, slice, tuple[int, int]]]:
    """The chunks of :func:`conv_channels_first`, ``(samples, rows, (q0, q1))``: blocks of
    output rows by ``split`` (:func:`npconv._windows.chunks` or ``thread_chunks``) within
    :data:`CHUNK_BYTES` of patches and products, or where one row needs more, each row cut
    into runs of tiles within them, of at least :data:`CHUNK_TILES` (a long 1-d signal)."""
    _, tiles, values = _geometry(spec)
    parts = min(-(-values * itemsize // CHUNK_BYTES), tiles // CHUNK_TILES)
    if parts <= 1:
        per_output = -(-values * itemsize // spec.out_size[1])
        return [(n, r, (0, tiles)) for n, r in split(spec, per_output, CHUNK_BYTES)]
    runs = even_runs(tiles, parts)
    return [
        (slice(n, n + 1), slice(r, r + 1), run)
        for n in range(spec.batch)
        for r in range(spec.out_size[0])
        for run in runs
    ]


#: The same on channels-last ``(N, *in_size, C)`` and ``(*kernel, C/G, O)``: ``(N, *out,
#: O)``, read through channels-first views (a view of the channels-first result).
conv = channels_last(conv_channels_first)


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None."""
    if max(spec.stride) > 1 or max(spec.dilation) > 1 or spec.kernel[-1] > 3:
        return (
            f"it supports stride 1, dilation 1 and kernels at most 3 wide, got "
            f"stride={spec.stride}, dilation={spec.dilation}, kernel={spec.kernel}"
        )
    return None


def _plane(spec: ConvSpec) -> ConvSpec:
    """The 2-d spec that :func:`conv_channels_first` runs."""
    return spec if spec.nd == 2 else one_row(spec)


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries :func:`conv_channels_first` holds at once: the transformed
    filters and the threads' chunks of patches and products (:func:`_chunks`)."""
    s, item = _plane(spec), np.dtype(dtype).itemsize
    _, tiles, values = _geometry(s)
    filters = 6 * s.out_channels * s.group_in * s.kernel[0] * item
    chunk = CHUNK_BYTES + values * item // max(tiles, 1)  # a run of tiles rounded up
    return filters + min(values * item * s.batch * s.out_size[0], get_threads() * chunk)


def _filters_work(spec: ConvSpec, item: int) -> Counter[str]:
    """The filters' transform (:func:`_transform_rows`): a pass over the weight for each of
    the 6 rows it writes (measured, 3x3 filters of 256 and 512 channels, caches warm:
    0.06 and 0.25 ms)."""
    rows = spec.out_channels * spec.group_in * spec.kernel[0]
    return units(serial=6 * (3 + 1) * rows * item, calls=2)


def work(spec: ConvSpec, dtype: np.dtype, filters: Counter[str] | None = None) -> Counter[str]:
    """The filters' transform (or the work ``filters`` that stands for it), 6 GEMMs per
    group and chunk, and the two transforms, each :data:`TRANSFORM_PASSES` passes over
    the patches or products and the input or result: on the calling thread
    (``serial``), or shared among the threads with the chunks (see
    :func:`conv_channels_first`)."""
    s, item = _plane(spec), max(np.dtype(dtype).itemsize, 4)
    g, cg, og = s.groups, s.group_in, s.group_out
    kh, tiles, values = _geometry(s)
    columns = s.batch * s.out_size[0] * tiles
    count = max(1, -(-s.batch * s.out_size[0] * values * item // CHUNK_BYTES))  # chunks
    total = _filters_work(s, item) if filters is None else filters
    total += gemm(og, cg * kh, columns / count, 6 * g * count, item)
    patches = 6 * s.in_channels * kh * columns * item
    products = 6 * s.out_channels * columns * item
    image = s.batch * s.in_channels * math.prod(s.in_size) * item
    result = s.batch * s.out_channels * math.prod(s.out_size) * item
    transformed = TRANSFORM_PASSES * (patches + products + image + result)
    return total + units(calls=4 * count, **{"passes" if _shared(s) else "serial": transformed})


def kept_work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """:func:`work` where the filters' transform is kept from call to call: instead of
    the transform, its check, a pass over the weight and the kept copy."""
    s, item = _plane(spec), max(np.dtype(dtype).itemsize, 4)
    weight = s.group_in * s.out_channels * math.prod(s.kernel) * item
    return work(spec, dtype, units(passes=2 * weight))
