"""``shifted``: one matrix product per kernel offset.

A 1x1 convolution is a matrix product over channels: ``(N*H*W, C) @ (C, O)``.  A
``KH x KW`` convolution is the sum of ``KH*KW`` such products, each over the input
shifted by one kernel offset ``k`` (a strided view, no copy)::

    y = sum_k  xp[:, k*dilation : ... : stride, :] @ w[k]      # (N, *out, C) @ (C, O)

With groups, each offset does one product per group on that group's channel slice.

Cost: the direct ``2 * N * O * C/G * prod(kernel) * prod(out)`` flops in
``prod(kernel) * G`` BLAS calls per chunk; memory: the output plus, per chunk of output
rows, one shifted view's copy and one product's result (in the thread's reused
``"patches"`` and ``"products"`` buffers, :mod:`npconv._workspace`).  It wins
when there are many channels and a small kernel (each product is a large GEMM), and
loses to ``im2col`` when ``C`` is small (many thin GEMMs, each re-reading the output).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np

from .._cost import gemm
from .._spec import ConvSpec
from .._windows import chunks, reshaped_view
from .._workspace import buffer


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Sum over kernel offsets of shifted-view matrix products (canonical arguments).

    Each shifted view is copied into the thread's ``"patches"`` buffer first (unless
    its axes merge into a matrix as they lie), so that every product is one BLAS call
    (``np.matmul`` of a view whose rows do not merge loops over many small products):
    in chunks of output rows whose copy and product fit ``WORKSPACE_BYTES``.
    """
    cg, og = spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    offsets = list(itertools.product(*map(range, spec.kernel)))
    if spec.groups == 1 and spec.padded_size == spec.out_size:  # 1x1, stride 1, no input over
        return _pointwise(xp, wc.reshape(spec.in_channels, spec.out_channels), spec, dtype)
    # each offset's (C/G, O/G) a BLAS operand: NumPy 1.x multiplies an operand with no
    # unit stride (a view of an "NCHW" weight) in a loop of its own, 30x slower
    wc = np.ascontiguousarray(wc)
    y = np.zeros((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    flat = y.reshape(-1, spec.out_channels)  # (N * prod(out), O), a view
    row = math.prod(spec.out_size[1:])  # output positions per row of the first axis
    per_output = (spec.in_channels + spec.out_channels) * dtype.itemsize
    for batch, rows in chunks(spec, per_output):
        first = range(spec.out_size[0])[rows]  # the chunk's rows of the first output axis
        n = range(spec.batch)[batch]  # its samples: whole ones, or rows of one
        start = (n.start * spec.out_size[0] + first.start) * row
        points = len(n) * len(first) * row  # output positions in the chunk
        sums = flat[start : start + points]  # (P, O)
        for k in offsets:
            starts = [ki * d for ki, d in zip(k, spec.dilation)]
            starts[0] += first.start * spec.stride[0]
            counts = (len(first), *spec.out_size[1:])
            steps = zip(starts, counts, spec.stride)
            window = (batch, *(slice(a, a + (m - 1) * s + 1, s) for a, m, s in steps))
            shifted = xp[window]  # (n, r, *out[1:], C)
            a = reshaped_view(shifted, (points, spec.in_channels))
            if a is None:
                a = buffer("patches", (points, spec.in_channels), dtype)
                np.copyto(a.reshape(shifted.shape), shifted)
            for g in range(spec.groups):
                part = buffer("products", (points, og), dtype)
                np.matmul(a[:, g * cg : (g + 1) * cg], wc[k][:, g * og : (g + 1) * og], out=part)
                sums[:, g * og : (g + 1) * og] += part  # (P, C/G) @ (C/G, O/G) -> (P, O/G)
    return y


def _pointwise(xp: np.ndarray, w: np.ndarray, spec: ConvSpec, dtype: np.dtype) -> np.ndarray:
    """A 1x1 convolution as one product per sample, computed in the spec's layout.

    For "NCHW" the product is ``w.T (O, C) @ x[n] (C, P)``, which reads a channels-first
    input as it is stored and writes a channels-first result, returned as a
    ``(N, *out, O)`` view; for "NHWC" it is ``x[n] (P, C) @ w (C, O)``.
    """
    p = math.prod(spec.out_size)
    rows = xp.reshape(spec.batch, p, spec.in_channels)  # (N, P, C), a view when possible
    if spec.layout == "NCHW":
        y = np.matmul(w.T, rows.transpose(0, 2, 1), dtype=dtype)  # (N, O, P)
        y = y.transpose(0, 2, 1)  # (N, P, O) view of the channels-first result
    else:
        y = np.matmul(rows, w, dtype=dtype)  # (N, P, O)
    return y.reshape(spec.batch, *spec.out_size, spec.out_channels)


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """A product per kernel offset and group, over strided operands, added into y."""
    item = max(np.dtype(dtype).itemsize, 4)
    rows = spec.batch * math.prod(spec.out_size)
    taps = math.prod(spec.kernel)
    total = gemm(rows, spec.group_in, spec.group_out, spec.groups * taps, item)
    if spec.groups == 1 and spec.padded_size == spec.out_size:  # one product from the input
        return total
    total["copy"] += taps * rows * spec.in_channels * item  # strided operands
    total["passes"] += 3 * taps * rows * spec.out_channels * item  # y += product
    total["calls"] += 80 * spec.groups * taps  # a turn of the Python loop: about 4 us
    return total
