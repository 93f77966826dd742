"""``col2im``: a transposed convolution by scattering columns (Caffe's ``col2im``).

The adjoint ``x_bar = A^T y_bar`` of a convolution ``A`` can be computed without phases:
one product ``W^T @ y_bar`` gives every output position's contribution to its receptive
field, ``(C/G * prod(kernel), rows)`` per group, the size of the forward's patch matrix,
and each kernel offset's slice goes to distinct input positions, so it is added into the
padded input with one strided ``+=``.  The scatter runs channels-first, where those
slices are runs along the last spatial axis.

It computes transposed convolutions only (and input gradients).  Cost: the forward's
flops in one GEMM per group and chunk, plus ``prod(kernel)`` strided additions over the
input: it wins when the convolution widens the channels (``C < O``: a stem, whose
adjoint narrows 64 channels to 3), where the phases' patch matrices would be many times
the forward's, and on small images of many channels (3x3 512->512 @7), where the
phases' copy of the swapped, flipped filters costs as much as their products.  Samples of
few output positions (:data:`~npconv.algorithms.im2col.WIDE_POINTS`) are multiplied side
by side in one GEMM per group, as im2col's forward does.  Memory: the forward
``im2col``'s patch matrix, in the same chunks, in the thread's reused buffers.
Exact for integers.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

from .._cost import gemm
from .._spec import ConvSpec
from .._windows import WORKSPACE_BYTES, chunks, move_channels_last, side_by_side
from .._workspace import buffer
from .im2col import WIDE_POINTS


def adjoint(gy: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """``A^T gy`` for the convolution ``A`` of ``spec``: ``(N, *out, O) -> (N, *padded, C)``.

    ``gy`` is channels-last and ``wc`` the canonical ``(*kernel, C/G, O)``; the result is
    a channels-last view of a channels-first array, the whole padded input.
    """
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    dtype = np.result_type(gy, wc)
    w_t = wc.reshape(taps, cg, g, og).transpose(2, 1, 0, 3).reshape(g, cg * taps, og)
    # w_t: (G, C/G*K, O/G)
    xp_bar = np.zeros((spec.batch, spec.in_channels, *spec.padded_size), dtype=dtype)
    for batch, rows in chunks(spec, taps * spec.in_channels * dtype.itemsize):
        grad = gy[batch, rows]  # (n, r, *out[1:], O)
        n, *out_block = grad.shape[: 1 + spec.nd]  # n, (r, *out[1:])
        points = math.prod(out_block)
        grad = grad.reshape(n, points, g, og)  # (n, P, G, O/G)
        if n > 1 and points < WIDE_POINTS:  # the samples side by side: one GEMM per group
            side = side_by_side(grad.transpose(0, 2, 3, 1), 2, (g, og, n * points), "patches")
            cols = buffer("products", (g, cg * taps, n * points), dtype)
            np.matmul(w_t, side, out=cols)  # (G, C/G*K, n*P)
            cols = cols.reshape(g, cg, *spec.kernel, n, *out_block)
            cols = np.moveaxis(cols, 2 + spec.nd, 0)  # (n, G, C/G, *k, r, *out[1:])
        else:
            cols = buffer("products", (n, g, cg * taps, points), dtype)
            np.matmul(w_t, grad.transpose(0, 2, 3, 1), out=cols)  # (n, G, C/G*K, P)
        cols = cols.reshape(n, spec.in_channels, *spec.kernel, *out_block)  # (n, C, *k, ...)
        first_row = rows.indices(spec.out_size[0])[0]
        for k in itertools.product(*map(range, spec.kernel)):
            starts = [ki * d for ki, d in zip(k, spec.dilation)]
            starts[0] += first_row * spec.stride[0]
            target = tuple(
                slice(a, a + (m - 1) * s + 1, s) for a, m, s in zip(starts, out_block, spec.stride)
            )
            index = (batch, slice(None), *target)
            tap: tuple[Any, ...] = (slice(None), slice(None), *k)
            xp_bar[index] += cols[tap]  # (n, C, r, *out[1:])
    return move_channels_last(xp_bar)  # (N, *padded, C): a view


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """One GEMM per group and chunk, then a strided addition per kernel offset."""
    item = max(np.dtype(dtype).itemsize, 4)
    taps = math.prod(spec.kernel)
    rows = spec.batch * math.prod(spec.out_size)
    patches = rows * taps * spec.in_channels * item
    total = gemm(spec.group_in * taps, spec.group_out, rows, spec.groups, item)
    padded = spec.batch * spec.in_channels * math.prod(spec.padded_size) * item
    total["passes"] += 3 * patches + padded  # read the columns, add into x_bar; zero it
    total["calls"] += taps * max(patches // WORKSPACE_BYTES, 1)
    return total
