"""``einsum``: sliding windows contracted with the filter by ``np.einsum``.

``sliding_window_view``-style windows ``(N, *out, *kernel, C/G)`` of one group and its
weight ``(*kernel, C/G, O/G)`` are contracted over the kernel and channel axes in one
Einstein sum; for a 2-d convolution the subscripts read ``"nhwijc,ijco->nhwo"``.  The
code is a direct transcription of the formula, for any number of spatial dims, one
group at a time (a group axis shared by both operands and the result would keep
NumPy 1.x's ``einsum`` from handing the sum to BLAS: 100x slower).

Cost: the direct flops; ``np.einsum`` with ``optimize=True`` hands the contraction to
BLAS through a ``tensordot`` that copies the windows, so the work is done in the same
bounded chunks as ``im2col``.  Memory: the two copies of a chunk's windows together
within :data:`npconv._windows.WORKSPACE_BYTES` (at least one output row).  It is rarely
the fastest, but it is the shortest correct description of the operation.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .._spec import ConvSpec
from .._windows import chunks, windows
from .im2col import patch_product_work

_OUT, _KERNEL = "hwd", "ijk"  # letters for up to three output and kernel axes


def subscripts(kernel: tuple[int, ...]) -> str:
    """Einstein subscripts of a convolution (of one group) with a kernel of this shape,
    its axes of size 1 left out (taken at offset 0 by :func:`conv`)."""
    out = _OUT[: len(kernel)]
    ker = "".join(letter for letter, k in zip(_KERNEL, kernel) if k > 1)
    return f"n{out}{ker}c,{ker}co->n{out}o"


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Chunked einsum over windows and weight, group by group (canonical arguments)."""
    cg, og = spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    # the kernel axes of size 1 taken at offset 0 (NumPy 1.x does not hand a sum over
    # axes of size 1, which it treats as broadcast, to BLAS)
    ones = tuple(0 if k == 1 else slice(None) for k in spec.kernel)
    index = (Ellipsis, *ones, slice(None))
    view = windows(xp, spec)[index]  # (N, *out, *kernel, C)
    w = wc[ones]  # (*kernel, C/G, O)
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    spec_str = subscripts(spec.kernel)
    # the windows are copied twice (einsum's transpose, then BLAS's): both in the budget
    bytes_per_output = 2 * int(np.prod(spec.kernel)) * spec.in_channels * dtype.itemsize
    for batch, rows in chunks(spec, bytes_per_output):
        for g in range(spec.groups):
            x_g = view[batch, rows, ..., g * cg : (g + 1) * cg]  # (n, r, ..., *kernel, C/G)
            w_g = w[..., g * og : (g + 1) * og]  # (*kernel, C/G, O/G)
            y[batch, rows, ..., g * og : (g + 1) * og] = np.einsum(
                spec_str, x_g, w_g, optimize=True
            )  # (n, r, ..., O/G)
    return y


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """As ``im2col``, with the windows copied six times: ``np.einsum`` moves them through
    reshapes and transposes of its own before BLAS copies them (measured 1.4x-4.7x the
    price of two copies on 3x3, 5x5, 7x7 and 1x1 layers, NumPy 1.26 and 2.4)."""
    return patch_product_work(spec, dtype, copies=6)
