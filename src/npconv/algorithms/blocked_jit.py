"""``blocked_jit``: compiled direct convolution, a block of outputs held in vector registers.

Where a GEMM's operands would first be copied into a patch matrix, this kernel (numba,
with its innermost block written as LLVM vector instructions) multiplies the taps
straight from the image.  For each sample:

1. the input is copied into a zero-bordered buffer, split into the stride's phases:
   plane ``(c, u, v)`` holds the padded input's rows ``u, u + s, ..`` and columns
   ``v, v + s, ..`` of channel ``c``, ``Hq x Wq`` values, so that every tap of a strided
   or dilated kernel reads a run of consecutive values.  Output ``(i, j)`` is position
   ``p = i * Wq + j`` of a grid as wide as a plane: the ``Wq - OW`` positions past each
   output row are computed and dropped, and a tap ``(c, a, b)`` of output ``p`` reads
   the buffer at ``p + offset[c, a, b]`` (:func:`_offsets`);
2. the weights are packed by blocks of ``R`` output channels, tap by tap:
   ``packed[block, t, r] = w[block * R + r, t]`` (zero rows past a group's outputs);
3. a block of ``R`` output channels times ``V`` vectors of consecutive positions (``R V``
   accumulators, which fill three quarters of the CPU's vector registers) is summed
   tap by tap: each tap loads ``V`` vectors of the buffer and ``R`` weights, each weight
   broadcast to a vector and multiplied into ``V`` accumulators::

       acc[r, v] += packed[block, t, r] * buf[p0 + v * L + offset[t] : .. + L]

   (:func:`_tile`: ``R V`` multiply-adds per ``V + R`` loads, so that the multiply-adds
   bound it, at about a core's peak); the blocks run over bands of positions whose
   buffer fits a core's L2 cache (:data:`BAND_BYTES`), the packed weights stream;
4. the block is written into the result with the bias, and the ReLU that follows it in
   a network, in the result's layout.

npconv's threads share the samples, or at batch 1 the blocks of output channels
(:mod:`npconv._threads`), from :data:`SHARED_MACS` multiply-adds on.  Cost: the direct
multiply-adds, of the positions and channels rounded up to whole blocks, at about a
GEMM's speed (:data:`FLOPS_PER_MAC`), plus the copy of the input and the pass over the
result: it wins where a GEMM's patch matrix costs most (few input channels, strided
layers, small images at batch 1), and loses to Winograd's fewer products on large 3x3
layers.  Error: a direct sum, as a GEMM's (multiply-adds fused).  float32 and float64;
complex numbers as four real convolutions; not integers.  It needs numba (the ``jit``
extra).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache, lru_cache
from typing import Any

import numpy as np

from .._cost import units
from .._jit import Intrinsic, kernel
from .._spec import ConvSpec
from .._threads import even_runs, get_threads, parallel_map
from .._windows import move_channels_first, weight_first
from .._workspace import buffer

#: Bytes of a band's input planes: they stay in a core's L2 cache while every block of
#: output channels reads them.
BAND_BYTES = 2**19


@cache
def _machine() -> tuple[int, int]:
    """The CPU's vector width in bytes and its number of vector registers, as numba
    compiles for it: 64 and 32 with AVX-512, 32 and 16 with AVX, else 16 and 16."""
    from numba.core import config

    if getattr(config, "CPU_NAME", None):  # compiled for another CPU: assume the least
        return 16, 16
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    if features.get("avx512f"):
        return 64, 32
    if features.get("avx"):
        return 32, 16
    return 16, 16


def _blocks(registers: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two block shapes ``(R, V)`` compiled: ``R`` output channels by ``V`` vectors,
    ``R V`` accumulators in three quarters of the ``registers`` (8 by 3 and 12 by 2 on
    AVX-512), the rest for the ``V`` loaded vectors and a broadcast weight."""
    return (registers // 4, 3), (registers * 3 // 8, 2)


def _tile_builder(shape: int) -> Any:
    """The LLVM of :func:`_tile` for block shape ``shape`` (0 or 1) of :func:`_blocks`."""

    def build(typingctx: Any, w: Any, w0: Any, x: Any, offsets: Any, x0: Any, y: Any,
              y0: Any, y_step: Any) -> Any:  # fmt: skip
        from llvmlite import ir
        from numba.core import cgutils
        from numba.core import types as nb

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            vector_bytes, registers = _machine()
            rows, vectors = _blocks(registers)[shape]
            w_, w0_, x_, offsets_, x0_, y_, y0_, step_ = args
            types = signature.args
            item = context.get_value_type(types[0].dtype)
            size = types[0].dtype.bitwidth // 8  # bytes of a value, the loads' alignment
            lanes = vector_bytes // size
            vec = ir.VectorType(item, lanes)
            i64, i32 = ir.IntType(64), ir.IntType(32)
            w_data = context.make_array(types[0])(context, builder, w_).data
            x_data = context.make_array(types[2])(context, builder, x_).data
            y_data = context.make_array(types[5])(context, builder, y_).data
            taps = context.make_array(types[3])(context, builder, offsets_)
            count = builder.extract_value(taps.shape, 0)
            fma_type = ir.FunctionType(vec, [vec, vec, vec])
            fma_name = f"llvm.fma.v{lanes}f{types[0].dtype.bitwidth}"
            fma = cgutils.get_or_insert_function(builder.module, fma_type, fma_name)
            acc = [[cgutils.alloca_once(builder, vec) for _ in range(vectors)] for _ in range(rows)]
            for row in acc:
                for a in row:
                    builder.store(ir.Constant(vec, [ir.Constant(item, 0.0)] * lanes), a)
            undefined = ir.Constant(vec, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def plus(a: Any, n: int) -> Any:
                return builder.add(a, ir.Constant(i64, n))

            def vector_at(data: Any, index: Any) -> Any:
                return builder.bitcast(builder.gep(data, [index]), vec.as_pointer())

            # the accumulators live in allocas, which LLVM promotes to registers
            with cgutils.for_range(builder, count) as loop:
                t = loop.index
                at = builder.add(builder.load(builder.gep(taps.data, [t])), x0_)
                xs = [
                    builder.load(vector_at(x_data, plus(at, v * lanes)), align=size)
                    for v in range(vectors)
                ]
                first = builder.add(w0_, builder.mul(t, ir.Constant(i64, rows)))
                for r in range(rows):
                    weight = builder.load(builder.gep(w_data, [plus(first, r)]))
                    one = builder.insert_element(undefined, weight, ir.Constant(i32, 0))
                    broadcast = builder.shuffle_vector(one, undefined, splat)
                    for v in range(vectors):
                        total = builder.call(fma, [broadcast, xs[v], builder.load(acc[r][v])])
                        builder.store(total, acc[r][v])
            for r in range(rows):
                row = builder.add(y0_, builder.mul(step_, ir.Constant(i64, r)))
                for v in range(vectors):
                    at = vector_at(y_data, plus(row, v * lanes))
                    builder.store(builder.load(acc[r][v]), at, align=size)
            return context.get_dummy_value()

        return nb.void(w, w0, x, offsets, x0, y, y0, y_step), codegen

    build.__doc__ = _TILE_DOC
    return build


_TILE_DOC = """``y[y0 + r * y_step + v * L : .. + L] = sum_t w[w0 + t * R + r] *
x[x0 + offsets[t] + v * L : .. + L]`` for ``r < R``, ``v < V`` (a block of
:func:`_blocks`, ``L`` values a vector): the block's ``R V`` sums held in vector
registers over all the taps ``t < len(offsets)``, each multiply fused with its add."""
#: The compiled block, of each shape of :func:`_blocks` (1-d float arrays, int64 indices).
_tile = Intrinsic(_tile_builder(0))
_tile_wide = Intrinsic(_tile_builder(1))


@kernel
def _fill(x, lo, stride, buf, hq, wq):
    """Copy one sample ``x`` (C, H, W) into ``buf`` split into phases (see the module):
    plane ``(c, u, v)``, ``hq`` rows of ``wq`` values from ``((c * s0 + u) * s1 + v) * hq
    * wq`` on, holds the input's rows ``i * s0 + u - lo[0]`` and columns ``j * s1 + v -
    lo[1]``, zero outside the image.  Written index by index: slices of short rows cost
    more than their copies."""
    s0, s1 = stride[0], stride[1]
    height, width = x.shape[1], x.shape[2]
    for c in range(x.shape[0]):
        for u in range(s0):
            for v in range(s1):
                first = max(0, -(-(lo[1] - v) // s1))  # the columns inside the image
                last = min(wq, max(first, -(-(width + lo[1] - v) // s1)))
                start = ((c * s0 + u) * s1 + v) * hq * wq
                for i in range(hq):
                    at = start + i * wq
                    src = i * s0 + u - lo[0]
                    if 0 <= src < height:
                        for j in range(first):
                            buf[at + j] = 0
                        shift = v - lo[1]
                        if s1 == 1:  # written apart: a known stride is vectorised
                            for j in range(first, last):
                                buf[at + j] = x[c, src, j + shift]
                        elif s1 == 2:
                            for j in range(first, last):
                                buf[at + j] = x[c, src, 2 * j + shift]
                        else:
                            for j in range(first, last):
                                buf[at + j] = x[c, src, j * s1 + shift]
                        for j in range(last, wq):
                            buf[at + j] = 0
                    else:
                        for j in range(wq):
                            buf[at + j] = 0


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
def _share(x, packed, blocks, offsets, lo, stride, hq, wq, group_in, group_out, band,
           shape, width, bias, relu, y, n0, n1, buf, block):  # fmt: skip
    """Samples ``n0 .. n1 - 1`` of ``y`` (N, O, OH, OW) from ``x`` (N, C, H, W), for the
    ``blocks`` of output channels (rows ``(group, first output of the group)``, their
    weights ``packed`` (blocks, taps, R) by :func:`_pack_blocks`) only; ``buf`` and
    ``block`` are the thread's buffers, ``width`` the positions a block of ``shape``
    computes at once."""
    rows, taps = packed.shape[2], packed.shape[1]
    channel = stride[0] * stride[1] * hq * wq  # a channel's planes
    positions = y.shape[2] * wq
    flat = packed.reshape(-1)
    step = len(block) // rows
    for n in range(n0, n1):
        _fill(x[n], lo, stride, buf, hq, wq)
        for p0 in range(0, positions, band):
            p1 = min(p0 + band, positions)
            for k in range(len(blocks)):
                group, first = blocks[k, 0], blocks[k, 1]
                o0, count = group * group_out + first, min(rows, group_out - first)
                x0, w0 = group * group_in * channel, k * taps * rows
                for q in range(p0, p1, width):
                    if shape == 0:
                        _tile(flat, w0, buf, offsets, x0 + q, block, q - p0, step)
                    else:
                        _tile_wide(flat, w0, buf, offsets, x0 + q, block, q - p0, step)
                _write(block, step, y[n], o0, count, p0, p1, wq, bias, relu)


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
    vector_bytes, registers = _machine()
    lanes = vector_bytes // itemsize

    def padded(shape: int) -> int:
        rows, vectors = _blocks(registers)[shape]
        width = vectors * lanes
        return -(-spec.group_out // rows) * rows * -(-positions // width) * width

    shape = min((0, 1), key=padded)
    rows, vectors = _blocks(registers)[shape]
    width = vectors * lanes
    halo = (kh - 1) * dh // sh * wq + (kw - 1) * dw // sw  # a band's positions read beyond it
    fit = BAND_BYTES // (max(spec.group_in, 1) * sh * sw * itemsize) - halo
    band = min(max(fit // width, 1), -(-positions // width)) * width
    blocks = [(g, f) for g in range(spec.groups) for f in range(0, spec.group_out, rows)]
    read_only = np.ascontiguousarray(offsets.ravel(), dtype=np.int64)
    read_only.flags.writeable = False
    return dict(
        hq=hq, wq=wq, offsets=read_only, shape=shape, rows=rows, width=width, band=band,
        blocks=np.array(blocks, dtype=np.int64).reshape(-1, 2),
        lo=np.array([spec.pads[0][0], spec.pads[1][0]], dtype=np.int64),
        stride=np.array(spec.stride, dtype=np.int64),
        filled=spec.in_channels * sh * sw * plane,
        buffer=spec.in_channels * sh * sw * plane + wq + width,
    )  # fmt: skip


def _real_itemsize(dtype: np.dtype) -> int:
    """Bytes of the real floats it computes with for ``dtype`` (float16 in float32)."""
    dtype = np.dtype(dtype)
    return max(dtype.itemsize // (2 if dtype.kind == "c" else 1), 4)


#: Multiply-adds from which the threads share a layer: below, waking them costs more
#: than they save.
SHARED_MACS = 2**23


def _shares(spec: ConvSpec, blocks: int) -> list[tuple[int, int, int, int]]:
    """The threads' shares ``(n0, n1, k0, k1)``: runs of samples with every block of
    output channels, or at a batch smaller than the threads, each sample's blocks in
    runs; one share below :data:`SHARED_MACS`."""
    threads = get_threads() if spec.macs >= SHARED_MACS else 1
    if spec.batch >= threads:
        return [(a, b, 0, blocks) for a, b in even_runs(spec.batch, threads)]
    parts = min(max(threads // max(spec.batch, 1), 1), blocks)
    return [(n, n + 1, a, b) for n in range(spec.batch) for a, b in even_runs(blocks, parts)]


def _run(
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`_share` into ``y`` (N, O, *out) from ``x`` (N, C, *in) and ``w`` (O, C/G,
    *kernel), real floats, the threads' shares in parallel."""
    dtype = y.dtype
    plan = _plan(spec, dtype.itemsize)
    b = np.zeros(spec.out_channels, dtype) if bias is None else bias.astype(dtype, copy=False)
    rows, band, width = plan["rows"], plan["band"], plan["width"]
    taps = len(plan["offsets"])

    def share(part: tuple[int, int, int, int]) -> None:
        n0, n1, k0, k1 = part
        blocks = plan["blocks"][k0:k1]
        buf = buffer("input", (plan["buffer"],), dtype)
        buf[plan["filled"] :] = 0  # read for the dropped positions only
        packed = buffer("filters", (k1 - k0, taps, rows), dtype)
        _pack_blocks(w, blocks, spec.group_out, packed)
        block = buffer("tiles", (rows * (band + width),), dtype)
        _share(
            x, packed, blocks, plan["offsets"], plan["lo"], plan["stride"], plan["hq"], plan["wq"],
            spec.group_in, spec.group_out, band, plan["shape"], width, b, relu, y, n0, n1,
            buf, block,
        )  # fmt: skip

    if y.size:
        parallel_map(share, _shares(spec, len(plan["blocks"])))


def _convolve(
    x: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    y: np.ndarray,
) -> None:
    """:func:`_run`; complex numbers as four real convolutions (and the ReLU refused)."""
    if y.dtype.kind != "c":
        _run(x, w.astype(y.dtype, copy=False), spec, bias, relu, y)
        return
    real = np.dtype(y.dtype.char.lower())
    part = np.empty(y.shape, real)
    for (xs, ws, sign) in (
        (x.real, w.real, 1), (x.imag, w.imag, -1), (x.real, w.imag, 1j), (x.imag, w.real, 1j)
    ):  # fmt: skip
        _run(np.asarray(xs, real), np.asarray(ws, real), spec, None, False, part)
        if sign == 1:
            y[...] = part
        else:
            y += sign * part
    if bias is not None:
        y += bias.reshape(-1, *[1] * (y.ndim - 2))


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
    _convolve(x, w, spec, bias, relu, y)
    return y


def conv(
    x: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """The same on channels-last ``(N, H, W, C)`` and ``(kh, kw, C/G, O)``: ``(N, *out, O)``.

    The kernels read and write them where they lie, seen channels-first."""
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), x.dtype)
    _convolve(move_channels_first(x), weight_first(wc), spec, bias, relu, move_channels_first(y))
    return y


def unsupported(spec: ConvSpec) -> str | None:
    """Why :func:`conv` cannot run ``spec``, or None: it runs 2-d convolutions of every
    kernel, stride and dilation, but not one input channel per group (``depthwise_jit``'s
    layers, whose blocks would be one output channel deep)."""
    if spec.group_in == 1:
        return "it needs at least 2 input channels per group (depthwise_jit runs 1)"
    return None


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries: each thread's split input, its packed weights and a band's
    block of results."""
    item = _real_itemsize(dtype)
    plan = _plan(spec, item)
    rows, width = plan["rows"], plan["width"]
    weights = len(plan["blocks"]) * rows * spec.group_in * math.prod(spec.kernel)
    each = plan["buffer"] + weights + rows * (plan["band"] + width)
    return get_threads() * each * item


#: The price of one of its multiply-adds in GEMM flops (:func:`npconv._cost.gemm`),
#: fitted to its times in ``npconv bench`` (2 threads, AVX-512): the stem 1.05 ms at
#: batch 1 and 8.6 at batch 8, 3x3 256->256 @14 b1 1.10, 3x3/2 128->128 @56 b8 9.1.
FLOPS_PER_MAC = 1.7
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
    """The multiply-adds it computes, at :data:`FLOPS_PER_MAC`: every position of the
    planes' grid (rows as wide as a plane), in whole blocks of positions and output
    channels, each block's set-up as :data:`BLOCK_TAPS` more taps (1x1 kernels at
    :data:`POINTWISE` times the cost); a pass over the
    input, split into planes (on every thread that shares a sample's blocks, and read
    along the strides), over the weights per share (packed) and over the result
    (written with the bias; channels-last, strided, at four times the cost); the call's
    own :data:`CALLS`."""
    item = _real_itemsize(dtype)
    complex_parts = 4 if np.dtype(dtype).kind == "c" else 1
    if spec.nd != 2:  # not run (2-d only): its multiply-adds, for a finite estimate
        return units(gemm=spec.macs * FLOPS_PER_MAC * item / 4 * complex_parts, calls=CALLS)
    plan = _plan(spec, item)
    rows, width = plan["rows"], plan["width"]
    positions = spec.out_size[0] * plan["wq"]
    taps = spec.group_in * math.prod(spec.kernel) + BLOCK_TAPS
    computed = spec.batch * len(plan["blocks"]) * rows * taps * -(-positions // width) * width
    outputs = spec.batch * spec.out_channels * math.prod(spec.out_size)
    inputs = spec.batch * spec.in_channels * math.prod(spec.in_size)
    weights = spec.out_channels * spec.group_in * math.prod(spec.kernel)
    shares = len(_shares(spec, len(plan["blocks"])))
    fill = (inputs + spec.batch * plan["filled"]) * math.prod(spec.stride) * item
    written = (8 if spec.layout == "NHWC" else 2) * outputs * item
    parallel = units(passes=2 * weights * shares * item + written)
    parallel += units(serial=fill) if shares > spec.batch else units(passes=fill)
    flops = computed * FLOPS_PER_MAC * item / 4 * complex_parts
    flops *= POINTWISE if math.prod(spec.kernel) == 1 else 1
    return parallel + units(gemm=flops, calls=CALLS)
