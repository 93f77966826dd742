"""``depthwise``: per-channel multiply-accumulate over kernel offsets, no matrix product.

In a depthwise convolution (``groups == C``) every output channel sees one input
channel, so a GEMM over channels degenerates to a length-1 dot product and an ``im2col``
matrix is mostly copying.  This algorithm instead accumulates, for each kernel offset
``k``, the shifted input (a strided view) times that offset's weights, broadcast over
the spatial positions, channel by channel of the group::

    y[..., g, j] += xp[shifted by k][..., g, c] * w[k, c, g, j]    # for c < C/G, j < O/G

Every update is a vectorised ``multiply`` and ``add`` over ``(n, *out, G)``.

Cost: ``prod(kernel) * C/G * O/G`` pairs of elementwise passes over the output, so it is
the right tool when ``C/G`` and ``O/G`` are 1 or 2 (depthwise and channel-multiplier
layers) and far too slow for dense layers.  Output blocks run on
:func:`npconv.get_threads` threads.  Memory: one block-sized product buffer per thread,
blocks within :data:`npconv._windows.WORKSPACE_BYTES`.  Exact for integers.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np

from .._cost import units
from .._spec import ConvSpec
from .._threads import get_threads, parallel_map
from .._windows import WORKSPACE_BYTES, chunks


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Per-channel shifted multiply-accumulate of canonical arguments."""
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    y = np.zeros((spec.batch, *spec.out_size, g, og), dtype=dtype)  # (N, *out, G, O/G)
    x = xp.reshape(*xp.shape[:-1], g, cg)  # (N, *padded, G, C/G)
    w = wc.reshape(*spec.kernel, cg, g, og).astype(dtype, copy=False)  # (*kernel, C/G, G, O/G)
    offsets = list(itertools.product(*map(range, spec.kernel)))
    budget = WORKSPACE_BYTES // max(2 * get_threads(), 1)  # several blocks per thread

    def block(where: tuple[slice, slice]) -> None:
        batch, rows = where
        out = y[batch, rows]  # (n, r, *out[1:], G, O/G): a view of y
        r0, r1, _ = rows.indices(spec.out_size[0])
        product = np.empty(out.shape[:-1], dtype=dtype)  # (n, r, *out[1:], G)
        for k in offsets:
            start = [ki * d for ki, d in zip(k, spec.dilation)]
            start[0] += r0 * spec.stride[0]
            counts = (r1 - r0, *spec.out_size[1:])
            offset = [
                slice(a, a + (n - 1) * s + 1, s) for a, n, s in zip(start, counts, spec.stride)
            ]
            shifted = x[tuple([batch, *offset])]  # (n, r, *out[1:], G, C/G)
            for c, j in itertools.product(range(cg), range(og)):
                np.multiply(shifted[..., c], w[k][c, :, j], out=product)
                out[..., j] += product

    parallel_map(block, list(chunks(spec, dtype.itemsize * spec.out_channels, budget)))
    return y.reshape(*y.shape[:-2], spec.out_channels)


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """A multiply and an add over ``(n, *out, G)`` per kernel offset and channel pair, each
    a few NumPy calls (about 10 us an update on layers of a few pixels: 200 calls)."""
    item = max(np.dtype(dtype).itemsize, 4)
    rows = spec.batch * math.prod(spec.out_size)
    updates = math.prod(spec.kernel) * spec.group_in * spec.group_out
    blocks = max(rows * spec.out_channels * item // (WORKSPACE_BYTES // 4), 1)
    return units(passes=updates * 5 * rows * spec.groups * item, calls=updates * 200 * blocks)
