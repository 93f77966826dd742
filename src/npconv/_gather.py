"""Copying a strided view into a contiguous array, on several threads when numba is there.

The patch matrices of ``im2col`` are copies of strided views of the padded input
(:func:`npconv._windows.windows`).  NumPy copies them on one thread; with the optional
``numba`` installed, :func:`gather` copies large ones with a compiled loop parallel over
the rows of the patch matrix (``prange``, on :func:`npconv.get_threads` threads).  Both
copy the same values, so the choice changes only the speed.  Without numba, for small
copies, runs shorter than :data:`MIN_RUN` or strided (a stride-2 layer's channels-first
rows), or dtypes the compiled loop does not take (``object``, float16), it is
``np.copyto``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._jit import kernel, prange, unavailable

__all__ = ["MIN_PARALLEL_BYTES", "MIN_RUN", "gather", "reshaped_view"]

#: Smallest copy worth starting threads for.
MIN_PARALLEL_BYTES = 2**20
#: Shortest contiguous run that the compiled loop copies faster than NumPy's (shorter
#: runs, such as the 3 channels of an RGB input, spend the loop on index arithmetic).
MIN_RUN = 64
_KINDS = {np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128, np.int64)}


@kernel
def _copy_rows(src, dst, shape, inner, strides, run):  # type: ignore[no-untyped-def]
    """``dst[r * run : (r + 1) * run] = src[offset(r) : offset(r) + run]`` for every row
    ``r``, whose index on an axis of ``shape`` is ``(r // inner) % shape``, ``inner``
    being the product of the later sizes; in parallel over the rows."""
    for r in prange(dst.size // run):
        offset = 0
        for axis in range(shape.size):
            offset += ((r // inner[axis]) % shape[axis]) * strides[axis]
        dst[r * run : (r + 1) * run] = src[offset : offset + run]


def reshaped_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` reshaped to ``shape`` without copying, or None when that needs a copy."""
    try:
        return np.reshape(a, shape, copy=False)  # type: ignore[call-overload, no-any-return]
    except TypeError:  # NumPy < 2.1 has no copy=: set the shape of a view instead
        view = a.view()
        try:
            view.shape = shape
        except AttributeError:
            return None
        return view
    except ValueError:
        return None


def _merged(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """``shape`` and ``strides`` with unit axes dropped and adjacent axes merged where
    one stride steps over the next axis whole (a view of the same elements)."""
    sizes: list[int] = []
    steps: list[int] = []
    for n, s in zip(shape, strides):
        if n == 1:
            continue
        if sizes and steps[-1] == s * n:
            sizes[-1] *= n
            steps[-1] = s
        else:
            sizes.append(n)
            steps.append(s)
    return sizes or [1], steps or [1]


def gather(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` for a C-contiguous ``dst`` and a view ``src`` of the same shape.

    ``src`` may be any strided view with non-negative strides (a window view).  Large
    copies of the usual dtypes made of contiguous runs of at least :data:`MIN_RUN`
    elements run on :func:`npconv.get_threads` threads when numba is installed.
    """
    item = src.itemsize
    if (
        unavailable() is not None
        or dst.nbytes < MIN_PARALLEL_BYTES
        or src.dtype != dst.dtype
        or src.dtype not in _KINDS
        or any(s < 0 or s % item for s in src.strides)
    ):
        np.copyto(dst, src)
        return
    sizes, steps = _merged(src.shape, tuple(s // item for s in src.strides))
    if steps[-1] != 1 or sizes[-1] < MIN_RUN:  # short or strided runs: NumPy's loops
        np.copyto(dst, src)
        return
    span = sum((n - 1) * s for n, s in zip(sizes, steps)) + 1  # elements src reaches
    flat = as_strided(src, shape=(span,), strides=(item,), writeable=False)  # from src[0...]
    shape = np.array(sizes[:-1], dtype=np.int64)  # the rows' axes
    inner = np.array([math.prod(sizes[i + 1 : -1]) for i in range(len(shape))], np.int64)
    strides = np.array(steps[:-1], dtype=np.int64)
    _copy_rows(flat, dst.reshape(-1), shape, inner, strides, sizes[-1])
