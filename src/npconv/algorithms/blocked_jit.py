"""``blocked_jit``: compiled direct convolution, a block of outputs held in vector registers.

Where a GEMM's operands would first be copied into a patch matrix, this kernel
multiplies the taps straight from the image, a block of ``R`` by ``V`` vectors of
outputs at a time, their sums held in vector registers over all the taps
(:data:`npconv._jit.multiply_block0`: each tap loads ``V`` vectors and ``R`` values, each
broadcast to a vector and multiplied into ``V`` sums, so that the multiply-adds, not
the loads, bound it, at about a core's peak).  Channels-first, for each sample:

1. the input is copied into a zero-bordered buffer, split into the stride's phases:
   plane ``(c, u, v)`` holds the padded input's rows ``u, u + s, ..`` and columns
   ``v, v + s, ..`` of channel ``c``, ``Hq x Wq`` values, so that every tap of a strided
   or dilated kernel reads a run of consecutive values.  Output ``(i, j)`` is position
   ``p = i * Wq + j`` of a grid as wide as a plane: the ``Wq - OW`` positions past each
   output row are computed and dropped, and tap ``t = (c, a, b)`` of output ``p`` reads
   the buffer at ``p + offset[t]``;
2. the weights are packed by blocks of ``R`` output channels, tap by tap:
   ``packed[block, t, r] = w[block * R + r, t]`` (zero rows past a group's outputs);
3. a block of ``R`` output channels by ``V`` vectors of consecutive positions sums::

       acc[r, j] += packed[block, t, r] * buf[p0 + j * L + offset[t] : .. + L]

   over bands of positions whose buffer fits a core's L2 cache (:data:`BAND_BYTES`);
4. the block is written into the result with the bias, and the ReLU that follows it in
   a network.

Channels-last at stride 1 the roles swap: a block is ``R`` pixels by ``V`` vectors of
output channels, each pixel's input values broadcast, the weights read as they lie
(tap ``(a, b, c)`` by output channel); the sums start at the bias and are stored in
the result where they lie, unless a row ends within the block; unpadded samples are
read in place.

npconv's threads share the samples, or at batch 1 the blocks (of output channels, or
of pixels), from :data:`SHARED_MACS` multiply-adds on.  Cost: the direct
multiply-adds, of the positions and channels rounded up to whole blocks, at about a
GEMM's speed (:data:`FLOPS_PER_MAC`), plus the copy of the input and the pass over the
result: it wins where a GEMM's patch matrix costs most (few input channels, strided
layers, a 7x7 stem, small images at batch 1), and loses to Winograd's fewer products
on large 3x3 layers and to a GEMM on 1x1 ones.  Error: a direct sum, as a GEMM's
(multiply-adds fused).  float32 and float64; complex numbers as four real
convolutions; not integers.  It needs numba (the ``jit`` extra).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Any

import numpy as np

from .._cost import units
from .._jit import block_shapes, fetch_add, kernel, multiply_block, vector_registers
from .._spec import ConvSpec
from .._threads import even_runs, get_threads, parallel_map, runs_alone
from .._windows import move_channels_first, weight_first
from .._workspace import buffer, keep, kept

#: Bytes of a band's input planes: they stay in a core's L2 cache while every block of
#: output channels reads them.
BAND_BYTES = 2**19


@kernel
def _inside(lo, step, phase, size, count):
    """The first and last + 1 of ``count`` indices ``i`` whose ``i * step + phase - lo``
    lies in ``0 .. size - 1``."""
    first = min(count, max(0, -(-(lo - phase) // step)))
    return first, min(count, max(first, -(-(size + lo - phase) // step)))


@kernel
def _zero(buf, start, stop):
    """``buf[start:stop] = 0``, a few values: a loop of its own, not a call to memset."""
    k = start
    while k < stop:
        buf[k] = 0
        k += 1


@kernel
def _fill(x, lo, stride, buf, hq, wq):
    """Copy one sample ``x`` (C, H, W) into ``buf`` split into phases (see the module):
    plane ``(c, u, v)``, ``hq`` rows of ``wq`` values from ``((c * s0 + u) * s1 + v) * hq
    * wq`` on, holds the input's rows ``i * s0 + u - lo[0]`` and columns ``j * s1 + v -
    lo[1]``, zero outside the image.  A row's values are copied between 1-d views
    indexed from 0, which LLVM vectorises (an index into the 3-d ``x`` kept it from it:
    0.18 against 0.08 ms for 128 channels of 56 x 56), at stride 2 both phases of a row
    in one loop (0.30 against 0.19 ms), and its few zeros before and after in loops of
    their own."""
    s0, s1, top, left = stride[0], stride[1], lo[0], lo[1]
    height, width = x.shape[1], x.shape[2]
    plane = hq * wq
    first0, last0 = _inside(left, s1, 0, width, wq)  # stride 2: each phase's columns,
    first1, last1 = _inside(left, s1, 1, width, wq)  # and those of both
    both0 = max(first0, first1)
    both1 = max(both0, min(last0, last1))
    for c in range(x.shape[0]):
        for u in range(s0):
            rows0, rows1 = _inside(top, s0, u, height, hq)
            at = (c * s0 + u) * s1 * plane
            for v in range(s1):
                p = at + v * plane
                buf[p : p + rows0 * wq] = 0
                buf[p + rows1 * wq : p + plane] = 0
                if s1 == 2:
                    continue
                first, last = _inside(left, s1, v, width, wq)
                for i in range(rows0, rows1):
                    row, k = x[c, i * s0 + u - top], p + i * wq
                    _zero(buf, k, k + first)
                    if s1 == 1:
                        d, r = buf[k + first : k + last], row[first - left :]
                        for j in range(last - first):
                            d[j] = r[j]
                    else:
                        for j in range(first, last):
                            buf[k + j] = row[j * s1 + v - left]
                    _zero(buf, k + last, k + wq)
            if s1 != 2:
                continue
            for i in range(rows0, rows1):
                row, k, m = x[c, i * s0 + u - top], at + i * wq, at + plane + i * wq
                _zero(buf, k, k + first0)
                _zero(buf, k + last0, k + wq)
                _zero(buf, m, m + first1)
                _zero(buf, m + last1, m + wq)
                d0, d1 = buf[k + both0 : k + both1], buf[m + both0 : m + both1]
                r = row[2 * both0 - left :]
                for j in range(both1 - both0):
                    d0[j], d1[j] = r[2 * j], r[2 * j + 1]
                for j in range(first0, min(both0, last0)):  # a phase's columns beyond both's
                    buf[k + j] = row[2 * j - left]
                for j in range(max(both1, first0), last0):
                    buf[k + j] = row[2 * j - left]
                for j in range(first1, min(both0, last1)):
                    buf[m + j] = row[2 * j + 1 - left]
                for j in range(max(both1, first1), last1):
                    buf[m + j] = row[2 * j + 1 - left]


@kernel
def _pack(w, o0, outputs, packed):
    """``packed[t, r] = w[o0 + r, t]``, a block of output channels of the weight ``w`` (O,
    C/G, kh, kw), its taps in order; zero for ``r >= outputs``."""
    t = 0
    for c in range(w.shape[1]):
        for a in range(w.shape[2]):
            for b in range(w.shape[3]):
                tap = packed[t]
                for r in range(outputs):
                    tap[r] = w[o0 + r, c, a, b]
                tap[outputs:] = 0
                t += 1


@kernel
def _pack_blocks(w, blocks, group_out, packed):
    """:func:`_pack` of each block ``k`` of output channels (``blocks[k] = (group, first
    output of the group)``) into ``packed[k]``."""
    rows = packed.shape[2]
    for k in range(len(blocks)):
        group, first = blocks[k, 0], blocks[k, 1]
        _pack(w, group * group_out + first, min(rows, group_out - first), packed[k])


@kernel
def _write(block, step, y, o0, outputs, p0, p1, wq, bias, relu):
    """Positions ``p0 .. p1 - 1`` of a block's rows (``block[r * step + p - p0]``) into
    the output channels ``o0 .. o0 + outputs - 1`` of ``y`` (O, OH, OW), plus the bias,
    then ``max(y, 0)`` where ``relu`` (NaN stays NaN); a row's positions past ``OW``
    are dropped."""
    width = y.shape[2]
    for r in range(outputs):
        o = o0 + r
        b = bias[o]
        for i in range(p0 // wq, (p1 - 1) // wq + 1):
            start, stop = max(p0, i * wq), min(p1, i * wq + width)
            dst = y[o, i, start - i * wq : stop - i * wq]
            src = block[r * step + start - p0 : r * step + stop - p0]
            for j in range(len(dst)):
                value = src[j] + b
                dst[j] = 0 if relu and value < 0 else value


@kernel
def _share(x, packed, blocks, offsets, by_tap, lo, stride, hq, wq, group_in, group_out, band,
           shape, width, bias, relu, y, taken, n0, n1, by_blocks, buf, block, block_rows,
           zeros):  # fmt: skip
    """Samples of ``y`` (N, O, OH, OW) from ``x`` (N, C, H, W) for the ``blocks`` of output
    channels (rows ``(group, first output of the group)``, their weights ``packed``
    (blocks, taps, R) by :func:`_pack_blocks`, a tap's at ``by_tap`` within a block)
    only: each sample taken from the counter ``taken[0]`` until it reaches ``n1``, or
    where ``by_blocks``, sample ``n0`` alone, each band's blocks taken from the counter
    ``taken[band]`` (:func:`_shares`).  ``buf`` and ``block`` are the thread's buffers (a
    block's row ``r`` at ``block_rows[r]``, from ``zeros``), ``width`` the positions a
    block of ``shape`` computes at once."""
    rows, taps = packed.shape[2], packed.shape[1]
    channel = stride[0] * stride[1] * hq * wq  # a channel's planes
    positions = y.shape[2] * wq
    flat = packed.reshape(-1)
    step = len(block) // rows
    n = n0 if by_blocks else fetch_add(taken, 0, 1)
    while n < n1:
        _fill(x[n], lo, stride, buf, hq, wq)
        for p0 in range(0, positions, band):
            p1 = min(p0 + band, positions)
            k = fetch_add(taken, p0 // band, 1) if by_blocks else 0
            while k < len(blocks):
                group, first = blocks[k, 0], blocks[k, 1]
                o0, count = group * group_out + first, min(rows, group_out - first)
                x0, w0 = group * group_in * channel, k * taps * rows
                for q in range(p0, p1, width):
                    multiply_block(shape, flat, w0, by_tap, 1, buf, x0 + q, offsets, block,
                                   q - p0, block_rows, zeros, 0, False)  # fmt: skip
                _write(block, step, y[n], o0, count, p0, p1, wq, bias, relu)
                k = fetch_add(taken, p0 // band, 1) if by_blocks else k + 1
        n = n1 if by_blocks else fetch_add(taken, 0, 1)


@kernel
def _fill_last(x, lo, buf, hq, wq):
    """Copy one channels-last sample ``x`` (H, W, C), C-contiguous, into ``buf``: ``hq``
    rows of ``wq`` pixels of ``C`` values, ``buf[(i * wq + j) * C + c] = x[i - lo[0], j -
    lo[1], c]``, zero outside the image; a row's pixels copied as one run of values."""
    height, width, channels = x.shape
    first = max(0, lo[1])
    last = min(wq, max(first, width + lo[1]))
    for i in range(hq):
        at, src = i * wq * channels, i - lo[0]
        if 0 <= src < height:
            values = x[src].reshape(-1)
            start = (first - lo[1]) * channels
            for k in range(first * channels):
                buf[at + k] = 0
            for k in range((last - first) * channels):
                buf[at + first * channels + k] = values[start + k]
            for k in range(last * channels, wq * channels):
                buf[at + k] = 0
        else:
            for k in range(wq * channels):
                buf[at + k] = 0


@kernel
def _pack_last(w, group_out, packed):
    """``packed[g, t, o] = w[a, b, c, g * group_out + o]`` for each group ``g`` of the
    channels-last weight ``w`` (kh, kw, C/G, O), tap ``t = (a, b, c)`` in order; zero for
    ``o >= group_out``."""
    for g in range(packed.shape[0]):
        t = 0
        for a in range(w.shape[0]):
            for b in range(w.shape[1]):
                for c in range(w.shape[2]):
                    tap = packed[g, t]
                    for o in range(group_out):
                        tap[o] = w[a, b, c, g * group_out + o]
                    tap[group_out:] = 0
                    t += 1


@kernel
def _write_last(block, padded, y, o0, outputs, p0, p1, wq, relu):
    """Positions ``p0 .. p1 - 1`` of a band's pixels (``block[(p - p0) * padded + o]``)
    into output channels ``o0 .. o0 + outputs - 1`` of ``y`` (OH, OW, O), C-contiguous,
    then ``max(y, 0)`` where ``relu``; a row's positions past ``OW`` are dropped."""
    width, channels = y.shape[1], y.shape[2]
    for i in range(p0 // wq, (p1 - 1) // wq + 1):
        row = y[i].reshape(-1)
        for p in range(max(p0, i * wq), min(p1, i * wq + width)):
            at, to = (p - p0) * padded, (p - i * wq) * channels + o0
            for o in range(outputs):
                value = block[at + o]
                row[to + o] = 0 if relu and value < 0 else value


@kernel
def _share_last(x, w, packed, offsets, by_tap, lo, hq, wq, band, shape, rows, chunk, start,
                relu, y, taken, n1, pa, pb, buf, block, block_rows, pixels):  # fmt: skip
    """Positions ``pa .. pb - 1`` of samples of ``y`` (N, OH, OW, O), each sample taken from
    the counter ``taken[0]`` until it reaches ``n1`` (:func:`_shares`), from the
    channels-last ``x`` (N, H, W, C), C-contiguous, at stride 1 and ``w`` (kh, kw, C/G,
    O), packed into ``packed`` (groups, taps, O') by :func:`_pack_last`, and ``start``
    (groups, O'), the bias: blocks of
    ``rows`` pixels by ``chunk`` output channels (block shape ``shape``), each pixel's
    input values broadcast.  Where a group's outputs fill whole vectors (``O' = O/G``),
    a block is stored in the result as it lies (position ``p`` at ``pixels[p]``, none
    past a row); otherwise in ``block`` (row ``r`` at ``block_rows[r]``), then copied."""
    channels = x.shape[3]
    groups, taps, padded = packed.shape
    group_in, group_out = channels // groups, y.shape[3] // groups
    _pack_last(w, group_out, packed)
    flat, starts, values = packed.reshape(-1), start.reshape(-1), x.reshape(-1)
    direct = padded == group_out
    sample = hq * wq * channels
    unpadded = sample == x[0].size  # x's samples are their own buffers (not the last)
    n = fetch_add(taken, 0, 1)
    while n < n1:
        if unpadded and n + 1 < len(x):  # the next sample: read past a row's last pixel
            source = values[n * sample :]
        else:
            _fill_last(x[n], lo, buf, hq, wq)
            source = buf
        out = y[n].reshape(-1)
        for p0 in range(pa, pb, band):
            p1 = min(p0 + band, pb)
            for g in range(groups):
                for q in range(p0, p1, rows):
                    x0 = g * group_in + q * channels
                    for o in range(0, padded, chunk):
                        w0, s0 = g * taps * padded + o, g * padded + o
                        if direct:
                            y0, at, clip, to = g * group_out + o, pixels[q : q + rows], relu, out
                        else:
                            y0, at, clip, to = (q - p0) * padded + o, block_rows, False, block
                        multiply_block(shape, source, x0, offsets, channels, flat, w0, by_tap,
                                       to, y0, at, starts, s0, clip)  # fmt: skip
                if not direct:
                    _write_last(block, padded, y[n], g * group_out, group_out, p0, p1, wq, relu)
        n = fetch_add(taken, 0, 1)


@lru_cache(maxsize=256)
def _plan(spec: ConvSpec, itemsize: int) -> dict[str, Any]:
    """How :func:`_share` runs ``spec`` with ``itemsize``-byte floats: the planes' size,
    the taps' offsets, the block shape that computes the fewest positions and channels
    beyond the result's, its blocks and the band of positions."""
    (kh, kw), (sh, sw), (dh, dw) = spec.kernel, spec.stride, spec.dilation
    rows_out, cols_out = spec.out_size
    hq, wq = rows_out + (kh - 1) * dh // sh, cols_out + (kw - 1) * dw // sw
    positions = rows_out * wq
    c, a, b = np.meshgrid(
        np.arange(spec.group_in), np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij"
    )
    plane = hq * wq
    phase = (a % sh) * sw + b % sw
    offsets = (c * sh * sw + phase) * plane + a // sh * wq + b // sw
    vector_bytes, registers = vector_registers()
    lanes = vector_bytes // itemsize

    def padded(shape: int) -> int:
        rows, vectors = block_shapes(registers)[shape]
        width = vectors * lanes
        return -(-spec.group_out // rows) * rows * -(-positions // width) * width

    shape = min((0, 1), key=padded)
    rows, vectors = block_shapes(registers)[shape]
    width = vectors * lanes
    halo = (kh - 1) * dh // sh * wq + (kw - 1) * dw // sw  # a band's positions read beyond it
    fit = BAND_BYTES // (max(spec.group_in, 1) * sh * sw * itemsize) - halo
    band = min(max(fit // width, 1), -(-positions // width)) * width
    blocks = [(g, f) for g in range(spec.groups) for f in range(0, spec.group_out, rows)]
    return dict(
        hq=hq, wq=wq, offsets=_read_only(offsets), by_tap=_read_only(np.arange(c.size) * rows),
        shape=shape, rows=rows, width=width, band=band, positions=positions,
        block_rows=_read_only(np.arange(rows) * (band + width)),
        zeros=np.zeros(width, f"f{itemsize}"),
        blocks=np.array(blocks, dtype=np.int64).reshape(-1, 2),
        lo=np.array([spec.pads[0][0], spec.pads[1][0]], dtype=np.int64),
        stride=np.array(spec.stride, dtype=np.int64),
        filled=spec.in_channels * sh * sw * plane,
        buffer=spec.in_channels * sh * sw * plane + wq + width,
    )  # fmt: skip


@lru_cache(maxsize=256)
def _plan_last(spec: ConvSpec, itemsize: int) -> dict[str, Any]:
    """How :func:`_share_last` runs a channels-last ``spec`` at stride 1: the grid, the
    taps' offsets (``(a, b, c)`` in order), the block shape (as many vectors as the
    group's outputs fill, at most 4, by as many pixels as the registers hold) and the
    band of positions."""
    (kh, kw), (dh, dw) = spec.kernel, spec.dilation
    rows_out, cols_out = spec.out_size
    hq, wq = rows_out + (kh - 1) * dh, cols_out + (kw - 1) * dw
    positions = rows_out * wq
    a, b, c = np.meshgrid(
        np.arange(kh) * dh, np.arange(kw) * dw, np.arange(spec.group_in), indexing="ij"
    )
    vector_bytes, registers = vector_registers()
    lanes = vector_bytes // itemsize
    vectors = min(4, max(1, -(-spec.group_out // lanes)))
    shape = [v for _, v in block_shapes(registers)].index(vectors)
    rows, chunk = block_shapes(registers)[shape][0], vectors * lanes
    padded = -(-spec.group_out // chunk) * chunk
    halo = (kh - 1) * dh * wq + (kw - 1) * dw
    fit = BAND_BYTES // (max(spec.in_channels, 1) * itemsize) - halo
    band = min(max(fit // rows, 1), -(-positions // rows)) * rows
    filled = hq * wq * spec.in_channels
    i, j = np.divmod(np.arange(-(-positions // rows) * rows + rows), wq)
    pixels = np.where((j < cols_out) & (i < rows_out), (i * cols_out + j) * spec.out_channels, -1)
    return dict(
        hq=hq, wq=wq, offsets=_read_only((a * wq + b) * spec.in_channels + c),
        by_tap=_read_only(np.arange(c.size) * padded), shape=shape, rows=rows, chunk=chunk,
        padded=padded, band=band, positions=positions, pixels=_read_only(pixels),
        block_rows=_read_only(np.arange(rows) * padded),
        lo=np.array([spec.pads[0][0], spec.pads[1][0]], dtype=np.int64),
        filled=filled, buffer=filled + (wq + rows) * spec.in_channels,
    )  # fmt: skip


def _read_only(a: np.ndarray) -> np.ndarray:
    """``a`` raveled as int64 offsets, read-only (kept in a plan for every call)."""
    a = np.array(a, dtype=np.int64).ravel()
    a.flags.writeable = False
    return a


def _real_itemsize(dtype: np.dtype) -> int:
    """Bytes of the real floats it computes with for ``dtype`` (float16 in float32)."""
    dtype = np.dtype(dtype)
    return max(dtype.itemsize // (2 if dtype.kind == "c" else 1), 4)


#: Multiply-adds from which the threads share a layer: below, waking them costs more
#: than they save.
SHARED_MACS = 2**23


def _shares(
    spec: ConvSpec, blocks: int, alone: bool = False, by_blocks: bool = False
) -> list[tuple[int, int, int, int]]:
    """The threads' shares ``(n0, n1, k0, k1)``: samples ``n0 .. n1 - 1``, each with its
    blocks ``k0 .. k1 - 1`` (of output channels, or of pixels).  Every thread takes one
    share of all the samples with every block, or at a batch smaller than the threads,
    a share of a sample's blocks: a run of them, or where ``by_blocks`` all of them.
    Equal shares take their work together from counters they share (:func:`_counters`),
    each thread the next sample, or the next block of a band, so that a thread that
    starts late or runs slower takes fewer.  One share below :data:`SHARED_MACS`, or
    where the call runs ``alone`` on its thread (:func:`npconv._threads.runs_alone`:
    OpenBLAS's threads likely spin on the other cores)."""
    threads = get_threads() if spec.macs >= SHARED_MACS and not alone else 1
    if spec.batch >= threads:
        return [(0, spec.batch, 0, blocks)] * threads
    parts = min(max(threads // max(spec.batch, 1), 1), blocks)
    runs = [(0, blocks)] * parts if by_blocks else even_runs(blocks, parts)
    return [(n, n + 1, a, b) for n in range(spec.batch) for a, b in runs]


def _counters(shares: list[tuple[int, int, int, int]], bands: int = 0) -> dict[Any, Any]:
    """The counters of each distinct share, which equal shares share: of the samples
    taken (from ``n0`` on), or with ``bands``, of each band's blocks taken."""
    return {
        share: np.zeros(bands, np.int64) if bands else np.array([share[0]], np.int64)
        for share in shares
    }


def _bias(spec: ConvSpec, bias: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    """One value per output channel, zeros without a bias."""
    return np.zeros(spec.out_channels, dtype) if bias is None else bias.astype(dtype, copy=False)


#: The name of the packed weights kept between calls (:func:`npconv._workspace.kept`).
KEPT_NAME = "blocked_jit weights"


def _kept_blocks(w: np.ndarray, spec: ConvSpec, plan: dict[str, Any]) -> np.ndarray | None:
    """Every block's packed weights (:func:`_pack_blocks`), kept from call to call for
    weights seen before while they hold the same values (compared bit for bit on every
    call: 0.07-0.15 ms for 256x256x3x3 against 0.50 for packing them, one thread); None
    for weights seen once, or changing, whose blocks each thread packs anew.  Kept by the
    groups and the block's rows too: the same weights on another input may take other
    blocks."""
    name = f"{KEPT_NAME}, {spec.groups} groups, blocks of {plan['rows']}"
    packed, keepable = kept(name, w)
    if packed is None and keepable:
        packed = np.empty((len(plan["blocks"]), len(plan["offsets"]), plan["rows"]), w.dtype)
        _pack_blocks(w, plan["blocks"], spec.group_out, packed)
        keep(name, w, packed)
    return packed


def _in_parallel(kernel: Any, calls: list[tuple[Any, ...]]) -> None:
    """``kernel(*args)`` for each ``args`` of ``calls``, shared among the threads.  The
    calling thread makes every share's arguments beforehand, its buffers rows of one
    array, so that a thread runs no Python but the call: two threads each taking three
    buffers and calling a kernel that returns at once took 43-100 us a region, against
    18-35 us with the arguments made (and 13-30 us in turn)."""
    parallel_map(lambda args: kernel(*args), calls)


def _run_first(
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`_share` into ``y`` (N, O, *out) from ``x`` (N, C, *in) and ``w`` (O, C/G,
    *kernel), real floats of ``y``'s dtype, the threads' shares in parallel; weights not
    kept (:func:`_kept_blocks`) are packed on the calling thread first."""
    dtype, plan = y.dtype, _plan(spec, y.dtype.itemsize)
    b = _bias(spec, bias, dtype)
    rows, band, width = plan["rows"], plan["band"], plan["width"]
    every = _kept_blocks(w, spec, plan)
    if every is None:
        every = buffer("filters", (len(plan["blocks"]), len(plan["offsets"]), rows), dtype)
        _pack_blocks(w, plan["blocks"], spec.group_out, every)
        every = every.view()  # read-only as the kept blocks: _share compiled once
        every.flags.writeable = False
    shares = _shares(spec, len(plan["blocks"]), runs_alone(spec.batch), by_blocks=True)
    by_blocks = spec.batch < len(shares)  # a sample's blocks shared
    taken = _counters(shares, -(-plan["positions"] // band) if by_blocks else 0)
    bufs = buffer("input", (len(shares), plan["buffer"]), dtype)
    bufs[:, plan["filled"] :] = 0  # read for the dropped positions only
    blocks = buffer("tiles", (len(shares), rows * (band + width)), dtype)
    calls = []
    for k, part in enumerate(shares):
        n0, n1, k0, k1 = part
        calls.append((
            x, every[k0:k1], plan["blocks"][k0:k1], plan["offsets"], plan["by_tap"], plan["lo"],
            plan["stride"], plan["hq"], plan["wq"], spec.group_in, spec.group_out, band,
            plan["shape"], width, b, relu, y, taken[part], n0, n1, by_blocks, bufs[k],
            blocks[k], plan["block_rows"], plan["zeros"],
        ))  # fmt: skip
    _in_parallel(_share, calls)


def _run_last(
    x: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`_share_last` into ``y`` (N, *out, O) from ``x`` (N, *in, C) and ``wc``
    (*kernel, C/G, O), real floats of ``y``'s dtype, the threads' shares (the samples
    as each thread gets to them, or runs of a sample's blocks of pixels) in parallel."""
    dtype, plan = y.dtype, _plan_last(spec, y.dtype.itemsize)
    b, x = _bias(spec, bias, dtype), np.ascontiguousarray(x, dtype)  # maybe read in place
    rows, positions = plan["rows"], plan["positions"]

    start = np.zeros((spec.groups, plan["padded"]), dtype)  # the bias, a group's padded
    start[:, : spec.group_out] = b.reshape(spec.groups, spec.group_out)

    shares = _shares(spec, -(-positions // rows), runs_alone(spec.batch))
    taken = _counters(shares)
    taps, padded = len(plan["offsets"]), plan["padded"]
    bufs = buffer("input", (len(shares), plan["buffer"]), dtype)
    bufs[:, plan["filled"] :] = 0
    packed = buffer("filters", (len(shares), spec.groups, taps, padded), dtype)
    blocks = buffer("tiles", (len(shares), plan["band"] * padded), dtype)
    calls = []
    for k, part in enumerate(shares):
        _, n1, k0, k1 = part
        calls.append((
            x, wc, packed[k], plan["offsets"], plan["by_tap"], plan["lo"], plan["hq"], plan["wq"],
            plan["band"], plan["shape"], rows, plan["chunk"], start, relu, y, taken[part], n1,
            k0 * rows, min(k1 * rows, positions), bufs[k], blocks[k], plan["block_rows"],
            plan["pixels"],
        ))  # fmt: skip
    _in_parallel(_share_last, calls)


def _convolve(
    run: Any,
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> np.ndarray:
    """``run`` (:func:`_run_first` or :func:`_run_last`) into ``y``, returned; complex
    numbers as four real convolutions (without a ReLU: the dispatch asks none of them)."""
    if y.size == 0:
        pass
    elif y.dtype.kind != "c":
        run(x, w.astype(y.dtype, copy=False), spec, bias, relu, y)
    else:
        real = np.dtype(y.dtype.char.lower())
        part = np.empty(y.shape, real)
        products = ((x.real, w.real, 1), (x.imag, w.imag, -1), (x.real, w.imag, 1j),
                    (x.imag, w.real, 1j))  # fmt: skip
        for xs, ws, sign in products:
            run(np.asarray(xs, real), np.asarray(ws, real), spec, None, False, part)
            if sign == 1:
                y[...] = part
            else:
                y += sign * part
        if bias is not None:
            channel = 1 if run is _run_first else y.ndim - 1
            y += np.expand_dims(bias, tuple(d for d in range(y.ndim) if d != channel))
    return y


def conv_channels_first(
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """The convolution of an unpadded ``(N, C, H, W)`` input with ``w`` ``(O, C/G, kh, kw)``
    plus ``bias``, then ``max(y, 0)`` where ``relu``: ``(N, O, *out)``; the spec's zero
    pads are applied here."""
    y = np.empty((spec.batch, spec.out_channels, *spec.out_size), x.dtype)
    return _convolve(_run_first, x, w, spec, bias, relu, y)


def _channels_last(spec: ConvSpec) -> bool:
    """Whether :func:`conv` runs ``spec`` by pixels (channels-last at stride 1), rather
    than through channels-first views."""
    return spec.layout == "NHWC" and spec.stride == (1, 1)


def conv(
    x: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """The same on channels-last ``(N, H, W, C)`` and ``(kh, kw, C/G, O)``: ``(N, *out, O)``.

    At stride 1, blocks of pixels by output channels, each pixel's inputs broadcast
    (:func:`_share_last`: the result written as it lies); strided, the channels-first
    kernels read and write them where they lie, through channels-first views."""
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), x.dtype)
    if _channels_last(spec):
        return _convolve(_run_last, x, wc, spec, bias, relu, y)
    views = move_channels_first(x), weight_first(wc)
    _convolve(_run_first, *views, spec, bias, relu, move_channels_first(y))
    return y


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None: it runs 2-d convolutions of every
    kernel, stride and dilation, but not one input channel per group (``depthwise_jit``'s
    layers, whose blocks would be one output channel deep)."""
    if spec.group_in == 1:
        return "it needs at least 2 input channels per group (depthwise_jit runs 1)"
    return None


@lru_cache(maxsize=256)
def _sizes(spec: ConvSpec, item: int) -> tuple[int, int, int, int, int]:
    """The values it computes with for ``spec`` (``item``-byte floats): multiply-adds
    (positions and channels in whole blocks), a thread's input buffer, packed weights
    and block of results, and the threads' shares."""
    taps = spec.group_in * math.prod(spec.kernel)
    if _channels_last(spec):
        plan = _plan_last(spec, item)
        rows, padded = plan["rows"], plan["padded"]
        blocked = spec.groups * padded * -(-plan["positions"] // rows) * rows
        weights, block = spec.groups * taps * padded, plan["band"] * padded
        shares = len(_shares(spec, -(-plan["positions"] // rows)))
    else:
        plan = _plan(spec, item)
        rows, width = plan["rows"], plan["width"]
        blocked = len(plan["blocks"]) * rows * -(-plan["positions"] // width) * width
        weights, block = len(plan["blocks"]) * rows * taps, rows * (plan["band"] + width)
        shares = len(_shares(spec, len(plan["blocks"]), by_blocks=True))
    return spec.batch * blocked * (taps + BLOCK_TAPS), plan["buffer"], weights, block, shares


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries: each thread's input buffer, its packed weights and a band's
    block of results."""
    item = _real_itemsize(dtype)
    _, buf, weights, block, _ = _sizes(spec, item)
    return get_threads() * (buf + weights + block) * item


#: The price of one of its multiply-adds in GEMM flops (:func:`npconv._cost.gemm`),
#: fitted to its times in ``npconv bench`` (2 threads, AVX-512): the stem 1.05 ms at
#: batch 1 and 8.6 at batch 8, 3x3 256->256 @14 b1 1.10, 3x3/2 128->128 @56 b8 9.1.
FLOPS_PER_MAC = 1.7
#: The price where the CPU has 16 vector registers (AVX2), whose blocks hold half as
#: many sums, each loaded vector feeding fewer multiply-adds: fitted on a Zen 3 (2
#: threads, ms against ``im2col_jit``), where the stem at batch 1 still runs faster
#: (2.2-2.7 against 3.1) but 3x3/2 128->128 @56 does not (3.6-3.9 against 2.6-3.0).
FLOPS_PER_MAC_16 = 1.3 * FLOPS_PER_MAC
#: The interpreter's share of a call (its plan, buffers and parallel region), in
#: :mod:`npconv._cost`'s calls: about 10 us.
CALLS = 200
#: How many times slower a 1x1 kernel's multiply-adds run: each tap reads another
#: input channel's plane, whose vectors miss the L1 cache (1x1 256->64 @56 b1 1.23 ms
#: against ``im2col``'s 0.49, 512->128 @28 b8 5.1 against 3.1).
POINTWISE = 2.5
#: A block's set-up (its accumulators zeroed and stored, its loop started) costs about
#: as much as this many taps.
BLOCK_TAPS = 8


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """The multiply-adds it computes (:func:`_sizes`, each block's set-up as
    :data:`BLOCK_TAPS` more taps) at :data:`FLOPS_PER_MAC` (:data:`FLOPS_PER_MAC_16` with
    16 vector registers; 1x1 kernels at :data:`POINTWISE` times the cost); a pass over
    the input into its buffer (on every thread that shares a sample; a strided one at
    the cost of as many passes as its largest stride, its phases deinterleaved), over
    the weights per share (packed, or compared with the kept copy) and over the result
    (written with the bias; channels-last through channels-first views, strided, at
    four times the cost); the call's own :data:`CALLS`."""
    item = _real_itemsize(dtype)
    complex_parts = 4 if np.dtype(dtype).kind == "c" else 1
    if spec.nd != 2:  # not run (2-d only): its multiply-adds, for a finite estimate
        return units(gemm=spec.macs * FLOPS_PER_MAC * item / 4 * complex_parts, calls=CALLS)
    computed, buf, weights, _, shares = _sizes(spec, item)
    outputs = spec.batch * spec.out_channels * math.prod(spec.out_size)
    inputs = spec.batch * spec.in_channels * math.prod(spec.in_size)
    fill = (inputs + spec.batch * buf) * max(spec.stride) * item
    strided = spec.layout == "NHWC" and not _channels_last(spec)
    written = (8 if strided else 2) * outputs * item
    parallel = units(passes=2 * weights * shares * item + written)
    parallel += units(serial=fill) if shares > spec.batch else units(passes=fill)
    price = FLOPS_PER_MAC if vector_registers()[1] >= 32 else FLOPS_PER_MAC_16
    flops = computed * price * item / 4 * complex_parts
    flops *= POINTWISE if math.prod(spec.kernel) == 1 else 1
    return parallel + units(gemm=flops, calls=CALLS)
