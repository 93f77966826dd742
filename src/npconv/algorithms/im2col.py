"""``im2col``: gather every receptive field into a patch matrix, then one GEMM.

The strided view :func:`npconv._windows.windows` sees the padded input as
``(N, *out, *kernel, C)`` without copying.  Copying it into a matrix of
``rows = N * prod(out)`` by ``prod(kernel) * C/G`` columns per group (the "im2col" or
patch matrix) turns the whole convolution into one matrix product per group::

    y[rows, O/G] = patches[rows, prod(kernel)*C/G] @ w[prod(kernel)*C/G, O/G]

Cost: the direct flops in one large BLAS call per group and chunk, plus copying
``prod(kernel)`` times the input.  Memory: the
patch matrix is ``prod(kernel)`` times the input, so it is built in chunks of samples (or
of output rows) whose patches stay within :data:`npconv._windows.WORKSPACE_BYTES` (32 MiB;
at least one output row).  It wins on most layers with a small kernel and few to moderate
channels.
"""

from __future__ import annotations

import math

import numpy as np

from .._spec import ConvSpec
from .._windows import chunks, windows


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Patch matrix times weight matrix, chunk by chunk (canonical arguments)."""
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    dtype = np.result_type(xp, wc)
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    patches = windows(xp, spec)  # (N, *out, *kernel, C)
    patches = patches.reshape(*patches.shape[:-1], g, cg)  # (N, *out, *kernel, G, C/G)
    patches = np.moveaxis(patches, -2, 1 + spec.nd)  # (N, *out, G, *kernel, C/G)
    w_mat = wc.reshape(taps, cg, g, og).transpose(2, 0, 1, 3).reshape(g, taps * cg, og)
    # w_mat: (G, prod(kernel)*C/G, O/G)

    def product(batch: slice, rows: slice) -> None:  # its temporaries are freed on return
        block = patches[batch, rows]  # (n, r, *out[1:], G, *kernel, C/G)
        out_block = y[batch, rows]  # (n, r, *out[1:], O): contiguous
        cols = block.reshape(-1, g, taps * cg)  # copy, the patch matrix: (rows, G, K*C/G)
        if g == 1:  # one GEMM straight into the result
            np.matmul(cols[:, 0], w_mat[0], out=out_block.reshape(-1, og))
            return
        prod = cols.transpose(1, 0, 2) @ w_mat  # (G, rows, O/G)
        out_block[...] = prod.transpose(1, 0, 2).reshape(out_block.shape)

    for batch, rows in chunks(spec, taps * spec.in_channels * dtype.itemsize):
        product(batch, rows)
    return y
