"""``im2col``: gather every receptive field into a patch matrix, then one GEMM.

The strided view :func:`npconv._windows.windows` sees the padded input as
``(N, *out, *kernel, C)`` without copying.  Copying it into a matrix of
``rows = N * prod(out)`` by ``prod(kernel) * C/G`` columns per group (the "im2col" or
patch matrix) turns the whole convolution into one matrix product per group::

    y[rows, O/G] = patches[rows, prod(kernel)*C/G] @ w[prod(kernel)*C/G, O/G]

Cost: the direct flops in one large BLAS call per group and chunk, plus copying
``prod(kernel)`` times the input.  Memory: the patch matrix is ``prod(kernel)`` times
the input, so it is built in chunks of samples (or of output rows) whose patches stay
within :data:`npconv._windows.WORKSPACE_BYTES` (32 MiB; at least one output row), in
the thread's reused ``"patches"`` buffer (:mod:`npconv._workspace`).  The chunks are
shared among npconv's threads where that pays (:func:`_shared`), each thread padding
the input rows its chunk reads; otherwise they run in turn with multi-threaded BLAS.
It wins on most layers with a small kernel and few to moderate channels.

A bias is added to the result, except for a 1x1 stride-1 layer that widens the channels
on a large image: its patch matrix would be the input itself (no copy), and a copy with
one more column of ones (a row, channels-first), whose weight is the bias, costs less
than a pass over the wider output.

:func:`conv_channels_first` is the same algorithm for channels-first (``"NCHW"``) data,
the arrangement of Caffe and PyTorch: the patch matrix is ``(prod(kernel)*C/G, out)``
per sample and group, whose rows are runs along the last spatial axis, and
``w[O/G, prod(kernel)*C/G] @ patches`` lands directly in the ``(O, *out)`` result, so
neither the input nor the output is transposed.  :func:`npconv.conv` uses it for
``layout="NCHW"``.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar, cast

import numpy as np

from .._cost import gemm, units
from .._jit import add_channels, unavailable
from .._spec import ConvSpec
from .._threads import blas_ran_in_turn, even_runs, get_threads, parallel_map, sharing_pays
from .._windows import (
    WORKSPACE_BYTES,
    canonical_input,
    chunks,
    reshaped_view,
    side_by_side,
    thread_chunks,
    windows,
    windows_channels_first,
)
from .._workspace import buffer

T = TypeVar("T")

#: Output positions per sample below which the samples of a chunk are multiplied side
#: by side in one GEMM per group (channels-first), rather than one thin GEMM each:
#: 7-10% faster on ResNet's 3x3 512->512 @7 and 256->256 @14 at batch 8, slower from
#: 28x28 outputs on (2 cores, OpenBLAS 0.3.31).
WIDE_POINTS = 256
#: Output positions (over the batch) from which :func:`weight_grad_channels_first`
#: computes the transposed gradient, ``patches @ gy^T``: on ResNet's 3x3 layers BLAS ran
#: it at 140-170 GFLOP/s against 110-120 for ``gy @ patches^T`` (64 and 128 channels),
#: while transposing a result of 512x4608 cost more than it saved (2 cores, OpenBLAS 0.3.31).
TRANSPOSED_POINTS = 512
#: Bytes of one chunk's patch matrices and output gradients in the weight gradient: 4-8
#: MiB ran 10-15% faster than 32 MiB on 3x3 64->64 @56 batch 8, the patches being read
#: back from the caches (2 cores, OpenBLAS 0.3.31) ...
GRAD_CHUNK_BYTES = 8 * 2**20
#: ... but a chunk spans at least this many output positions (within WORKSPACE_BYTES), so
#: that adding its share into the gradient (a pass over it) costs little against its GEMM.
GRAD_CHUNK_POINTS = 2048


def _with_ones(block: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """``block`` copied into the patch buffer, as matrices of ``shape`` whose last index on
    ``axis`` is 1.

    ``shape`` is ``block`` reshaped into matrices, one larger on ``axis`` (the patch
    matrix, with the row or column of ones that multiplies the bias).
    """
    cols = buffer("patches", shape, block.dtype)
    index: list[slice | int] = [slice(None)] * len(shape)
    index[axis] = -1
    cols[tuple(index)] = 1
    index[axis] = slice(0, -1)
    np.copyto(cols[tuple(index)].reshape(block.shape), block)  # a view: axes only split
    return cols


def _patch_matrix(block: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``block`` as matrices of ``shape``: a view where the axes merge, else a copy in the
    thread's patch buffer."""
    view = reshaped_view(block, shape)
    if view is not None:
        return view
    cols = buffer("patches", shape, block.dtype)
    np.copyto(cols.reshape(block.shape), block)  # a view: axes only split
    return cols


def _fold_bias(spec: ConvSpec, bias: bool, relu: bool) -> bool:
    """Whether to add a bias (where ``bias``) through a column of ones in the patch
    matrix (see above).

    Only for a 1x1 stride-1 layer, whose patch matrix is otherwise the input itself, and
    only when copying it and the weights (with the bias) costs less than a pass over the
    output; not where a ReLU follows, whose pass over the output adds the bias too (1x1
    64->256 @56 b1 with both, ms: 0.59 against 0.80 with the bias folded).
    """
    if not bias or relu or math.prod(spec.kernel) != 1 or max(spec.stride) != 1:
        return False
    cg, og, points = spec.group_in, spec.group_out, spec.batch * math.prod(spec.out_size)
    return og * cg + points * cg < points * og


def add_bias(y: np.ndarray, b: np.ndarray | None, relu: bool = False) -> None:
    """``y += b`` in place, then where ``relu`` ``y = max(y, 0)`` (NaN stays NaN), for a
    channels-first result ``y`` (n, G, o, *out), or a view of some of its rows, and ``b``
    (G, o, 1, ...) or None (no bias): by one compiled pass where numba is installed and
    the channels and the output rows merge into a 4-d view
    (:func:`npconv._jit.add_channels`), each channel's positions one row where they
    are contiguous (with the ReLU, one thread, us: 26 against 97 at 1024 channels of
    14 x 14, 37 against 181 at 512 of 28 x 28, 86 against 182 at 256 of 56 x 56)."""
    n, g, o, *out = y.shape
    if unavailable() is None and y.dtype.kind == "f" and y.size:
        view = reshaped_view(y, (n, g * o, 1, math.prod(out)))
        if view is None:
            view = reshaped_view(y, (n, g * o, math.prod(out[:-1]), out[-1]))
        if view is not None:
            add_channels(view, np.zeros(g * o, y.dtype) if b is None else b.reshape(-1), relu)
            return
    _add_broadcast(y, b, relu)


def _add_broadcast(y: np.ndarray, b: np.ndarray | None, relu: bool) -> None:
    """``y += b`` (broadcast: ``b`` shaped for ``y``'s channels, first or last, or None),
    then ``y = max(y, 0)`` where ``relu``, by NumPy."""
    if b is not None:
        y += b
    if relu:
        np.maximum(y, 0, out=y)


def _pointwise(spec: ConvSpec, contiguous: bool, itemsize: int, fold: bool) -> bool:
    """Whether an input (``contiguous`` or not, of ``itemsize`` bytes a value) is itself
    the patch matrix (a 1x1 stride-1 layer, contiguous), or with the bias folded
    (``fold``), one sample copied whole with its ones within
    :data:`~npconv._windows.WORKSPACE_BYTES`: then :func:`conv` and
    :func:`pointwise_plan` multiply it without the windows, chunks and buffers of each
    chunk (15-20 us of Python a call: 1x1 64->384 @14 took 75 against 88 us
    without a bias, 92 against 110 with one).  Several samples with a folded bias go by
    chunks, each thread copying its own: 1x1 64->256 @56 at batch 8 took 3.7-3.9 ms
    so, 4.0-4.3 with the calling thread's copy read by the others (2 cores).
    """
    one = max(spec.kernel) == max(spec.stride) == 1
    every = one and spec.in_size == spec.out_size  # and so no pads
    copy = spec.in_channels * math.prod(spec.in_size) * itemsize
    whole = spec.batch == 1 and copy <= WORKSPACE_BYTES
    return every and contiguous and (not fold or whole)


def _chunk_input(
    x: np.ndarray, spec: ConvSpec, chunk: tuple[slice, slice], channels_last: bool
) -> tuple[np.ndarray, ConvSpec]:
    """The input that output rows ``rows`` of samples ``batch`` (``chunk``) read,
    zero-padded in the calling thread's ``"input"`` buffer (a view of ``x`` where
    nothing is padded), and the spec of their convolution.

    Each thread pads the rows its chunks read: on these machines the calling thread's
    padded copy of the whole input, read by the other threads, took 4x its own time to
    write again at the next call (0.66 of 2.6 ms on 3x3/2 128->128 @56).
    """
    batch, rows = chunk
    r0, r1, _ = rows.indices(spec.out_size[0])
    (lo, _), size = spec.pads[0], spec.in_size[0]
    first = r0 * spec.stride[0] - lo  # the input rows read, first and past the last
    last = (r1 - 1) * spec.stride[0] + (spec.kernel[0] - 1) * spec.dilation[0] + 1 - lo
    a = min(max(first, 0), size)
    b = max(min(last, size), a)
    sub = replace(
        spec,
        batch=len(range(spec.batch)[batch]),
        in_size=(b - a, *spec.in_size[1:]),
        pads=((a - first, last - b), *spec.pads[1:]),
        out_size=(r1 - r0, *spec.out_size[1:]),
        layout="NHWC" if channels_last else "NCHW",  # as x lies: nothing moved
    )
    index = (batch, slice(a, b)) if channels_last else (batch, slice(None), slice(a, b))
    return canonical_input(x[index], sub, channels_last, reuse=True), sub


def conv(
    xp: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """Patch matrix times weight matrix, chunk by chunk (canonical arguments); plus
    ``bias``, then ``max(y, 0)`` where ``relu``, each chunk's as it is computed."""
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    dtype = np.result_type(xp, wc)
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    w_mat = wc.reshape(taps, cg, g, og).transpose(2, 0, 1, 3).reshape(g, taps * cg, og)
    # w_mat: (G, prod(kernel)*C/G, O/G)
    k = taps * cg
    fold = _fold_bias(spec, bias is not None, relu)
    if bias is not None and fold:  # the weights of a column of ones: (G, K + 1, O/G)
        w_mat = np.concatenate([w_mat, bias.reshape(g, 1, og).astype(dtype)], axis=1)

    b = None if bias is None or fold else bias.astype(dtype)  # added to each block

    def product(chunk: tuple[slice, slice]) -> None:  # its temporaries are freed on return
        x_chunk, sub = _chunk_input(xp, spec, chunk, channels_last=True)
        block = windows(x_chunk, sub)  # (n, r, *out[1:], *kernel, C)
        block = block.reshape(*block.shape[:-1], g, cg)  # (n, r, *out[1:], *kernel, G, C/G)
        block = np.moveaxis(block, -2, 1 + spec.nd)  # (n, r, *out[1:], G, *kernel, C/G)
        out_block = y[chunk]  # (n, r, *out[1:], O): contiguous
        if fold:
            cols = _with_ones(block, (math.prod(block.shape[: 1 + spec.nd]), g, k + 1), 2)
        else:
            cols = _patch_matrix(block, (math.prod(block.shape[: 1 + spec.nd]), g, k))
            # cols: the patch matrix (rows, G, K*C/G)
        if g == 1:  # one GEMM straight into the result
            np.matmul(cols[:, 0], w_mat[0], out=out_block.reshape(-1, og))
        else:
            prod = buffer("products", (g, len(cols), og), dtype)  # (G, rows, O/G)
            np.matmul(cols.transpose(1, 0, 2), w_mat, out=prod)
            np.copyto(out_block, prod.transpose(1, 0, 2).reshape(out_block.shape))
        _add_broadcast(out_block, b, relu)

    # the input is the patch matrix
    if _pointwise(spec, xp.flags.c_contiguous, xp.itemsize, fold) and g == 1:
        x_mat = xp.reshape(-1, cg)  # (N*P, C)
        if fold:  # copied, with a column of ones: (N*P, C + 1)
            x_mat = _with_ones(x_mat, (len(x_mat), cg + 1), 1)
        np.matmul(x_mat, w_mat[0], out=y.reshape(-1, og))
        _add_broadcast(y, b, relu)
        blas_ran_in_turn()
        return y
    per_output = taps * spec.in_channels * dtype.itemsize
    if _shared(spec):
        parallel_map(product, thread_chunks(spec, per_output), blas=True)
    else:
        for chunk in chunks(spec, per_output):
            product(chunk)
        blas_ran_in_turn()
    return y


def conv_channels_first(
    xp: np.ndarray,
    w: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """:func:`conv` on channels-first arguments.

    ``xp`` is the padded input ``(N, C, *padded)`` and ``w`` the weight
    ``(O, C/G, *kernel)``; returns ``(N, O, *out)``.

    Where the input is itself the patch matrix, :func:`pointwise_plan` multiplies it,
    one GEMM per sample; otherwise the patch matrices are made and multiplied chunk by
    chunk (:func:`run_chunks`).
    """
    dtype = np.result_type(xp, w)
    plan = pointwise_plan(spec, dtype, bias is not None, relu, xp.flags.c_contiguous)
    if plan is not None:
        return plan(xp, w, bias)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    y = np.empty((spec.batch, g, og, *spec.out_size), dtype=dtype)  # (N, G, O/G, *out)
    w_mat = w.reshape(g, og, cg * taps)  # (G, O/G, C/G*K)
    k = cg * taps
    fold = _fold_bias(spec, bias is not None, relu)
    if bias is not None and fold:  # the weights of a row of ones: (G, O/G, K + 1)
        w_mat = np.concatenate([w_mat, bias.reshape(g, og, 1).astype(dtype)], axis=2)
    b = None if bias is None or fold else bias.reshape(g, og, *(1,) * spec.nd).astype(dtype)

    def product(chunk: tuple[slice, slice, slice]) -> None:  # its temporaries are freed on return
        batch, rows, outs = chunk  # outs: the chunk's share of each group's outputs
        x_chunk, sub = _chunk_input(xp, spec, (batch, rows), channels_last=False)
        block = windows_channels_first(x_chunk, sub)  # (n, C, *kernel, r, *out[1:])
        block = block.reshape(len(block), g, cg, *block.shape[2:])  # (n, G, C/G, ...)
        n, points = block.shape[0], math.prod(block.shape[3 + spec.nd :])  # P per sample
        w_part = w_mat[:, outs]  # (G, o, C/G*K)
        o = w_part.shape[1]
        out_block = y[batch, :, outs, rows]  # (n, G, o, r, *out[1:]): a view of y
        if n > 1 and points < WIDE_POINTS and not fold:  # the samples side by side
            cols = side_by_side(block, 2 + spec.nd, (g, k, n * points), "patches")
            prod = buffer("products", (g, o, n, points), dtype)  # (G, o, n, P)
            np.matmul(w_part, cols, out=prod.reshape(g, o, n * points))
            np.copyto(out_block.reshape(n, g, o, points), prod.transpose(2, 0, 1, 3))
        else:
            if fold:
                cols = _with_ones(block, (*block.shape[:2], k + 1, points), 2)
            else:
                cols = _patch_matrix(block, (*block.shape[:2], k, points))  # (n, G, C/G*K, P)
            out = reshaped_view(out_block, (*out_block.shape[:3], points))  # (n, G, o, P)
            if out is not None:  # the GEMMs write the result (runs of whole rows)
                np.matmul(w_part, cols, out=out)
            else:
                prod = buffer("products", (*cols.shape[:2], o, points), dtype)
                np.matmul(w_part, cols, out=prod)
                np.copyto(out_block, prod.reshape(out_block.shape))
        if b is not None or relu:
            add_bias(out_block, None if b is None else b[:, outs], relu)

    per_output = taps * spec.in_channels * dtype.itemsize
    run_chunks(product, spec, per_output, _shared(spec))
    return y.reshape(spec.batch, spec.out_channels, *spec.out_size)


def pointwise_plan(
    spec: ConvSpec, dtype: np.dtype, bias: bool, relu: bool, contiguous: bool = True
) -> Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray] | None:
    """:func:`conv_channels_first` of a layer whose input is itself the patch matrix
    (:func:`_pointwise`, ``contiguous`` saying whether it is), as a function of the
    arrays alone, ``(xp, w, bias) -> y``, its shapes and choices made here once; None
    for another layer.

    The GEMMs are one per sample; where the chunks would be shared (:func:`_shared`) and
    the threads get as many samples each, each thread multiplies its samples with
    single-threaded BLAS, rather than every sample by two-thread BLAS, which
    synchronises its threads for each: 1x1 512->128 @28 at batch 8 2.8-2.9 against 3.3
    ms, 128->512 @28 3.3 against 3.8, 64->64 @56 at batch 32 5.1 against 6.2, but 3
    samples on 2 threads 1.6 against 1.4 (2 cores).  Channels-last, the samples make
    one GEMM, which BLAS's threads share best.  The dispatch keeps the function for
    later calls of the same shapes and options (:func:`npconv._dispatch.convolve`).
    """
    fold = _fold_bias(spec, bias, relu)
    points = math.prod(spec.out_size)
    if not _pointwise(spec, contiguous, dtype.itemsize, fold):
        return None
    if spec.batch > 1 and points < WIDE_POINTS:  # side by side, by chunks
        return None
    g, cg, og, nd = spec.groups, spec.group_in, spec.group_out, spec.nd
    shape = (spec.batch, g, cg, points)  # the input is the patch matrix
    runs, shared = _sample_runs(spec)

    def multiply(xp: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = np.empty((spec.batch, g, og, *spec.out_size), dtype=dtype)  # (N, G, O/G, *out)
        w_mat = w.reshape(g, og, cg)  # (G, O/G, C/G)
        x_mat, y_mat = xp.reshape(shape), y.reshape(*shape[:2], og, points)
        if fold:  # the weights of a row of ones, the input copied with it: (N, G, C/G + 1, P)
            column = cast(np.ndarray, b).reshape(g, og, 1).astype(dtype)
            w_mat = np.concatenate([w_mat, column], axis=2)
            x_mat = _with_ones(x_mat, (*shape[:2], cg + 1, points), 2)
        b_out = None if b is None or fold else b.reshape(g, og, *(1,) * nd).astype(dtype)

        def samples(run: slice) -> None:
            np.matmul(w_mat, x_mat[run], out=y_mat[run])
            if b_out is not None or relu:
                add_bias(y[run], b_out, relu)

        if shared:
            parallel_map(samples, runs, blas=True)
        else:
            samples(runs[0])
            blas_ran_in_turn()
        return y.reshape(spec.batch, spec.out_channels, *spec.out_size)

    return multiply


def run_chunks(
    product: Callable[[tuple[slice, slice, slice]], None],
    spec: ConvSpec,
    per_output: int,
    shared: bool,
) -> None:
    """``product`` of every chunk ``(samples, rows, outputs)`` of a channels-first patch
    matrix of ``per_output`` bytes per output position: where ``shared`` (for ``im2col``
    :func:`_shared`), shared among the threads (:func:`_shares`), otherwise in turn
    (:func:`npconv._windows.chunks`)."""
    if shared:
        parallel_map(product, _shares(spec, per_output), blas=True)
    else:
        for batch, rows in chunks(spec, per_output):
            product((batch, rows, slice(None)))
        blas_ran_in_turn()


#: Multiply-adds from which a layer whose threads get whole samples shares its chunks
#: where the machine does not favour sharing: below, the threads' Python work between
#: BLAS calls, each waiting for the interpreter's lock, costs more than the second core
#: saves (ms shared / in turn, 2 cores: 3x3 16->16 @7 batch 4 0.38 / 0.10, 32->32 @14
#: batch 4 0.66 / 0.31, 64->64 @14 batch 4 0.89 / 0.63, batch 8 1.32 / 1.32, 32->32
#: @16 batch 32 2.4 / 2.8, 128->128 @14 batch 8 3.0 / 3.3).
SHARED_MACS = 2**26


def _shared(spec: ConvSpec) -> bool:
    """Whether the chunks are shared among npconv's threads, each with single-threaded
    BLAS, rather than run in turn with multi-threaded BLAS: where the machine favours it
    (:func:`npconv._threads.sharing_pays`), or where each thread gets whole samples of a
    layer of at least :data:`SHARED_MACS` multiply-adds.

    Elsewhere a sample's rows or outputs shared out make thinner GEMMs: on a Xeon where
    sharing does not pay, batch 1 took 1.37 ms in turn against 1.70 shared (3x3
    256->256 @14) and 1.61 against 1.93 (512->512 @7), while batch 8 took 9.4 ms in
    turn against 8.2 shared (256->256 @14) and 15-17 against 11 (3x3/2 128->128 @56):
    in turn, its copies run on one core.
    """
    threads = get_threads()
    whole = spec.batch >= threads and spec.macs >= SHARED_MACS
    return threads > 1 and (whole or sharing_pays())


def _shares(spec: ConvSpec, per_output: int) -> list[tuple[slice, slice, slice]]:
    """The chunks of :func:`conv_channels_first` for its threads (where :func:`_shared`),
    ``per_output`` bytes of patches per output position: ``(samples, rows, outputs)``.

    Where the weights outweigh the whole patch matrix twice (more than twice as many
    outputs per group as output positions: ResNet's 3x3 512->512 @7 at batch 1, 1.87
    against 2.36 ms), each thread takes a share of every group's outputs over the same
    patches (copied by each), so that no thread reads the whole weight; otherwise a
    share of the positions (:func:`npconv._windows.thread_chunks`)."""
    threads = get_threads()
    if spec.group_out <= 2 * spec.batch * math.prod(spec.out_size):
        return [(batch, rows, slice(None)) for batch, rows in thread_chunks(spec, per_output)]
    budget = WORKSPACE_BYTES // threads  # each thread holds a chunk's patches
    return [
        (batch, rows, slice(a, b))
        for batch, rows in chunks(spec, per_output, budget)
        for a, b in even_runs(spec.group_out, threads)
    ]


def patch_product_work(spec: ConvSpec, dtype: np.dtype, copies: int = 1) -> Counter[str]:
    """Work of a chunked patch matrix (copied ``copies`` times) times the weights."""
    item = max(np.dtype(dtype).itemsize, 4)  # float16 computes in float32
    taps = math.prod(spec.kernel)
    rows = spec.batch * math.prod(spec.out_size)
    patches = rows * taps * spec.in_channels * item
    total = gemm(rows, taps * spec.group_in, spec.group_out, spec.groups, item)
    total["copy"] += copies * patches + (rows * spec.out_channels * item if spec.groups > 1 else 0)
    total["calls"] += 3 * max(patches // WORKSPACE_BYTES, 1)
    return total


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """One copy of the patches and one GEMM per group and chunk, and where the spec pads,
    a zero-padded copy of the input rows that the chunks read (:func:`_chunk_input`)."""
    total = patch_product_work(spec, dtype)
    if spec.padded:
        item = max(np.dtype(dtype).itemsize, 4)
        padded = spec.batch * spec.in_channels * math.prod(spec.padded_size) * item
        total += units(passes=2 * padded)  # read and written
    return total


def weight_grad_channels_first(xp: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``dL/dw`` of :func:`conv_channels_first` from its own patch matrices.

    ``xp`` is the padded input ``(N, C, *padded)`` and ``gy`` the output gradient
    ``(N, O, *out)``; returns ``(O, C/G, *kernel)``.  Per chunk of samples the patch
    matrices are placed side by side, ``(G, C/G*K, n*P)`` within :data:`GRAD_CHUNK_BYTES`,
    and one GEMM per group adds the chunk's share: the forward's products with the roles
    of weight and output exchanged.  Over many output positions
    (:data:`TRANSPOSED_POINTS`) the GEMMs compute the transposed gradient
    ``patches @ gy^T``, which BLAS runs faster than ``gy @ patches^T`` when ``O`` is
    small, and it is transposed once at the end.
    """
    if _pointwise(spec, xp.flags.c_contiguous, xp.itemsize, fold=False):
        return _pointwise_weight_grad(xp, gy, spec)
    g, cg, og, nd = spec.groups, spec.group_in, spec.group_out, spec.nd
    k = cg * math.prod(spec.kernel)
    dtype = np.result_type(xp, gy)
    transposed = spec.batch * math.prod(spec.out_size) >= TRANSPOSED_POINTS
    dw = np.empty((g, k, og) if transposed else (g, og, k), dtype)
    patches = windows_channels_first(xp, spec)  # (N, C, *kernel, *out)
    patches = patches.reshape(spec.batch, g, cg, *patches.shape[2:])  # (N, G, C/G, *k, *out)
    gy = gy.reshape(spec.batch, g, og, *spec.out_size)  # (N, G, O/G, *out)
    every = (slice(None),) * (2 + nd)  # the G, C/G and kernel axes
    per_output = (k * g + spec.out_channels) * dtype.itemsize
    budget = min(max(GRAD_CHUNK_BYTES, GRAD_CHUNK_POINTS * per_output), WORKSPACE_BYTES)
    for i, (batch, rows) in enumerate(chunks(spec, per_output, budget)):
        index = (batch, *every, rows)
        block = patches[index]  # (n, G, C/G, *kernel, r, *out[1:])
        n, points = block.shape[0], math.prod(block.shape[3 + nd :])
        a = side_by_side(block, 2 + nd, (g, k, n * points), "patches")  # (G, C/G*K, n*P)
        grads = gy[batch, :, :, rows]  # (n, G, O/G, r, *out[1:])
        b = side_by_side(grads, 2, (g, og, n * points), "products")  # (G, O/G, n*P)
        a, b = (a, b.transpose(0, 2, 1)) if transposed else (b, a.transpose(0, 2, 1))
        if i == 0:
            np.matmul(a, b, out=dw)
        else:
            dw += a @ b
    return filters_of(dw, transposed, spec)


def filters_of(dw: np.ndarray, transposed: bool, spec: ConvSpec) -> np.ndarray:
    """A weight gradient summed per group, ``(G, O/G, C/G*K)`` or, where ``transposed``,
    ``(G, C/G*K, O/G)``, as the filters ``(O, C/G, *kernel)``."""
    dw = dw.transpose(0, 2, 1) if transposed else dw  # (G, O/G, C/G*K)
    return np.ascontiguousarray(dw).reshape(spec.out_channels, spec.group_in, *spec.kernel)


def _sample_runs(spec: ConvSpec) -> tuple[list[slice], bool]:
    """The samples of a layer whose input is its own patch matrix, one run per thread
    where the chunks are shared (:func:`_shared`) and each thread gets as many samples,
    else one run of them all; and whether they are shared."""
    threads = get_threads()
    shared = spec.batch % threads == 0 and _shared(spec)
    return [slice(a, z) for a, z in even_runs(spec.batch, threads if shared else 1)], shared


def _pointwise_weight_grad(x: np.ndarray, gy: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """:func:`weight_grad_channels_first` of a layer whose input is its own patch matrix
    (:func:`_pointwise`): ``sum_n gy[n] @ x[n]^T`` per group, one GEMM per sample on the
    arrays as they lie, rather than both copied side by side.

    The larger of ``C/G`` and ``O/G`` is the products' rows (``x[n] @ gy[n]^T``, then
    transposed, where the input channels are more), and the threads share the samples
    as :func:`conv_channels_first` does, each summing its own, BLAS on one thread.
    1x1 layers at batch 8, ms (2 cores, against the copies side by side): 512->128 @28
    3.1-3.5 against 4.8, 256->64 @56 3.9-4.2 against 6.2, 128->512 @28 3.1 against 4.8,
    64->256 @56 3.8-4.0 against 7.6; at batch 1, 512->128 @28 0.37 against 0.52.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    points = math.prod(spec.out_size)
    xs = x.reshape(spec.batch, g, cg, points)
    gys = gy.reshape(spec.batch, g, og, points)
    first, second = (xs, gys) if cg > og else (gys, xs)  # (N, G, rows, P), (N, G, cols, P)

    def product(n: int) -> np.ndarray:  # (G, rows, cols)
        return np.matmul(first[n], second[n].transpose(0, 2, 1))

    def products(run: slice) -> np.ndarray:  # the run's samples, in turn
        return summed(product, range(spec.batch)[run])

    dw = summed(products, *_sample_runs(spec))
    return filters_of(dw, cg > og, spec)


def summed(term: Callable[[T], np.ndarray], items: Sequence[T], shared: bool = False) -> np.ndarray:
    """``sum(term(item) for item in items)`` (at least one item): each term added to the
    first as it comes, on the calling thread, or where ``shared``, the items shared
    among the threads (:func:`npconv._threads.parallel_map`, BLAS on one thread), their
    terms added once all are computed."""
    if shared:
        terms: list[np.ndarray] = [np.empty(0)] * len(items)
        parallel_map(lambda i: terms.__setitem__(i, term(items[i])), range(len(items)), blas=True)
        return functools.reduce(np.add, terms)
    total = term(items[0])
    for item in items[1:]:
        total += term(item)
    return total
