"""``einsum``: sliding windows contracted with the filter by ``np.einsum``.

``sliding_window_view``-style windows ``(N, *out, *kernel, G, C/G)`` and the weight
``(*kernel, C/G, G, O/G)`` are contracted over the kernel and channel axes in one
Einstein sum; for a 2-d convolution the subscripts read ``"nhwijgc,ijcgo->nhwgo"``.  The
code is a direct transcription of the formula, for any number of spatial dims.

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


def subscripts(nd: int) -> str:
    """Einstein subscripts of an ``nd``-d grouped convolution."""
    out, ker = _OUT[:nd], _KERNEL[:nd]
    return f"n{out}{ker}gc,{ker}cgo->n{out}go"


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Chunked einsum over windows and weight (canonical arguments)."""
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    view = windows(xp, spec)  # (N, *out, *kernel, C)
    view = view.reshape(*view.shape[:-1], g, cg)  # (N, *out, *kernel, G, C/G)
    w = wc.reshape(*spec.kernel, cg, g, og)  # (*kernel, C/G, G, O/G)
    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    spec_str = subscripts(spec.nd)
    # the windows are copied twice (einsum's transpose, then BLAS's): both in the budget
    bytes_per_output = 2 * int(np.prod(spec.kernel)) * spec.in_channels * dtype.itemsize
    for batch, rows in chunks(spec, bytes_per_output):
        block = np.einsum(spec_str, view[batch, rows], w, optimize=True)  # (n, r, ..., G, O/G)
        y[batch, rows] = block.reshape(*block.shape[:-2], spec.out_channels)
    return y


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """As ``im2col``, with the windows copied twice (einsum's own transpose, then BLAS's)."""
    return patch_product_work(spec, dtype, copies=2)
