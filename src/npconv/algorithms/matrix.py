"""``matrix``: convolution as one product with a constructed (Toeplitz-like) matrix.

A convolution is linear in its input, so for a fixed filter it *is* a matrix ``M``:
flatten each sample to a row and ``y_flat = x_flat @ M``.  Column ``j`` of ``M`` holds the
filter "splatted" at output position and channel ``j``: ``M[i, j]`` is the weight that
input element ``i`` gets in output element ``j`` (zero where the receptive field does not
reach ``i``).  Zero padding needs no padded copy: taps that fall into the padding simply
have no row.  For a 2-d image ``M`` is doubly block-Toeplitz.

This is the form homomorphic-encryption compilers want (one multiplication by a constant
matrix), and it makes the operator explicit for analysis (norms, accumulator bounds).

Cost: building ``M`` touches its ``nnz = O * C/G * prod(kernel) * prod(out)`` entries
(the flops of one sample); the product is a sparse-dense multiply of ``N`` rows.  Memory:
about ``40 * nnz`` bytes for float32 while building (:func:`memory`: index and value
arrays, then the CSR matrix); problems that would need more than 64 MiB (or the
result's size) are refused.  It never wins on speed for a dense layer but wins on
clarity, and it is how encrypted convolution is evaluated.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import scipy.sparse

from .._cost import units
from .._spec import ConvSpec


def _layout_strides(
    layout: str, channels: int, size: tuple[int, ...]
) -> tuple[int, tuple[int, ...]]:
    """Element strides (channel, per spatial axis) of one sample stored in ``layout``."""
    spatial = tuple(math.prod(size[i + 1 :]) for i in range(len(size)))  # C order
    if layout == "NCHW":
        return math.prod(size), spatial
    return 1, tuple(s * channels for s in spatial)


def build(
    spec: ConvSpec, wc: np.ndarray, *, sparse: bool = True
) -> np.ndarray | scipy.sparse.csr_array:
    """The matrix ``M`` with ``x.reshape(N, -1) @ M == conv(x).reshape(N, -1)``.

    Rows follow one input sample flattened in ``spec.layout``, columns one output sample
    flattened in ``spec.layout``; zero padding is folded in.  ``wc`` is canonical
    ``(*kernel, C/G, O)``.
    """
    nd, cg, og = spec.nd, spec.group_in, spec.group_out
    c_in, in_axes = _layout_strides(spec.layout, spec.in_channels, spec.in_size)
    c_out, out_axes = _layout_strides(spec.layout, spec.out_channels, spec.out_size)
    n_axes = 2 * nd + 2  # broadcast axes: (*out, *kernel, C/G, O)

    def along(values: np.ndarray, *axes: int) -> np.ndarray:
        """Place a 1-d or 2-d array on the given broadcast axes."""
        shape = [1] * n_axes
        for axis, n in zip(axes, values.shape):
            shape[axis] = n
        return values.reshape(shape)

    rows = np.zeros([1] * n_axes, dtype=np.int64)
    cols = np.zeros([1] * n_axes, dtype=np.int64)
    keep = np.ones([1] * n_axes, dtype=bool)
    for i in range(nd):
        p = np.arange(spec.out_size[i])[:, None]  # (out_i, 1)
        k = np.arange(spec.kernel[i])[None, :]  # (1, k_i)
        u = p * spec.stride[i] + k * spec.dilation[i] - spec.pads[i][0]  # (out_i, k_i)
        rows = rows + along(u * in_axes[i], i, nd + i)
        keep = keep & along((u >= 0) & (u < spec.in_size[i]), i, nd + i)
        cols = cols + along(p[:, 0] * out_axes[i], i)
    o = np.arange(spec.out_channels)
    channel = (o // og)[None, :] * cg + np.arange(cg)[:, None]  # (C/G, O): input channel
    rows = rows + along(channel * c_in, 2 * nd, 2 * nd + 1)
    cols = cols + along(o * c_out, 2 * nd + 1)
    vals = along(wc, *range(nd, 2 * nd + 2))  # (*kernel, C/G, O) on its axes

    rows, cols, vals, keep = np.broadcast_arrays(rows, cols, vals, keep)
    shape = (
        spec.in_channels * math.prod(spec.in_size),
        spec.out_channels * math.prod(spec.out_size),
    )
    dtype = np.float32 if wc.dtype == np.float16 else wc.dtype  # scipy.sparse has no float16
    m = scipy.sparse.csr_array((vals[keep].astype(dtype), (rows[keep], cols[keep])), shape=shape)
    return m if sparse else m.toarray()


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Multiply the flattened padded input by the filter matrix (canonical arguments)."""
    valid = replace(spec.valid(), layout="NHWC")  # the already padded, channels-last input
    m = build(valid, wc)  # (prod(padded)*C, prod(out)*O)
    y = xp.reshape(spec.batch, m.shape[0]) @ m  # (N, prod(out)*O)
    return np.asarray(y).reshape(spec.batch, *spec.out_size, spec.out_channels)


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes held while building: per entry, the int64 rows and columns and the value of
    the broadcast arrays, their kept copies, and the CSR matrix's index and value."""
    item = max(np.dtype(dtype).itemsize, 4)
    return spec.macs // max(spec.batch, 1) * (34 + 2 * item)  # measured: 40 for float32


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """Building the nnz entries (several index arrays), then a sparse product, and SciPy's
    setting up of a sparse matrix (0.18-0.25 ms on problems of one pixel: 4000 calls)."""
    item = max(np.dtype(dtype).itemsize, 4)
    nnz = spec.macs // max(spec.batch, 1)
    output = spec.batch * math.prod(spec.out_size) * spec.out_channels * item
    return units(passes=nnz * 80 + spec.macs * 24, copy=output, calls=4000)
