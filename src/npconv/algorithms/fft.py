"""``fft``: correlation as a product of spectra (convolution theorem), by ``scipy.fft``.

The valid correlation ``y[p] = sum_k xp[p + k*dilation] w[k]`` equals the circular one
on an FFT grid ``L >= padded size`` (the wrap-around only reaches outputs beyond the
valid ones).  With ``v`` the dilated kernel reversed in time, whose spectrum is
``conj(FFT(conj(w)))``, every frequency ``f`` is a small matrix product over channels::

    Y[f] = X[f] @ V[f]          # (n, C/G) @ (C/G, O/G) per frequency and group

followed by one inverse transform per output channel.  Stride is applied by computing
the stride-1 result and keeping every ``stride``-th output.

Cost: ``(C + O) * prod(L) * log(prod(L))`` for the transforms (run on
:func:`npconv.get_threads` workers) plus ``4 * C/G * O * prod(L)`` real multiply-adds
(half a spectrum for real data), independent of the kernel size, against
``C/G * O * prod(kernel) * prod(out)`` for a direct algorithm: it wins for large kernels
on large images.  The weight spectrum has ``prod(L) * C/G * O`` entries, so small images
with many channels lose.  Memory: whole samples' spectra, in chunks of samples within
:data:`npconv._windows.WORKSPACE_BYTES` (at least one sample).

Error: rounding grows like ``log(prod(L))``; on unit-scale random float32 data the
largest error relative to ``max |y|`` is ~1e-6, well within 1e-4.  Not exact for
integers.  Non-finite values: a spectrum mixes a whole sample, so one NaN or Inf would
turn every output of its sample into NaN; on operands holding NaN or Inf, or large
enough that ``max|x| * max|w| *`` :func:`growth` exceeds the dtype's range, the dispatch
computes by the cheapest direct algorithm instead, which puts NaN and Inf exactly where
the definition does.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import scipy.fft

from .._cost import gemm, units
from .._spec import ConvSpec
from .._threads import get_threads
from .._windows import WORKSPACE_BYTES


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Spectral correlation of canonical arguments (see :mod:`npconv._windows`)."""
    nd, g, cg, og = spec.nd, spec.groups, spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    real = dtype.kind != "c"
    forward, inverse = (
        (scipy.fft.rfftn, scipy.fft.irfftn) if real else (scipy.fft.fftn, scipy.fft.ifftn)
    )
    sizes = tuple(scipy.fft.next_fast_len(n, real=real) for n in spec.padded_size)  # L
    axes = tuple(range(nd))
    workers = get_threads()

    dilated = np.zeros((*spec.extent, cg, spec.out_channels), dtype=dtype)
    dilated[tuple(slice(None, None, d) for d in spec.dilation)] = wc  # (*extent, C/G, O)
    v = np.conj(forward(np.conj(dilated), s=sizes, axes=axes, workers=workers))  # (*F, C/G, O)
    freq = v.shape[:nd]
    v = v.reshape(-1, cg, g, og).transpose(0, 2, 1, 3)  # (F, G, C/G, O/G)

    y = np.empty((spec.batch, *spec.out_size, spec.out_channels), dtype=dtype)
    keep = tuple(slice(0, (n - 1) * s + 1, s) for n, s in zip(spec.out_size, spec.stride))
    complex_item = 2 * np.dtype(dtype).itemsize if real else np.dtype(dtype).itemsize
    per_sample = complex_item * v.shape[0] * 2 * (spec.in_channels + spec.out_channels)
    step = max(WORKSPACE_BYTES // max(per_sample, 1), 1)

    def samples(n0: int) -> None:  # its temporaries are freed on return
        x = xp[n0 : n0 + step]
        n = x.shape[0]
        spectrum = forward(x, s=sizes, axes=tuple(range(1, nd + 1)), workers=workers)
        # spectrum: (n, *F, C) -> (F, G, n, C/G)
        spectrum = spectrum.reshape(n, -1, g, cg).transpose(1, 2, 0, 3)
        prod = spectrum @ v  # (F, G, n, O/G)
        prod = prod.transpose(2, 0, 1, 3).reshape(n, *freq, spec.out_channels)  # (n, *F, O)
        full = inverse(prod, s=sizes, axes=tuple(range(1, nd + 1)), workers=workers)
        # full: (n, *L, O), the stride-1 correlation; keep the strided valid outputs
        y[n0 : n0 + n] = full[tuple([slice(None), *keep])]

    for n0 in range(0, spec.batch, step):
        samples(n0)
    return y


def growth(spec: ConvSpec) -> float:
    """A bound on the intermediate values of :func:`conv` relative to ``max|x| * max|w|``.

    A spectrum value sums the padded input (or the kernel), the product ``C/G`` of
    them, and the unnormalised inverse transform every frequency.
    """
    grid = math.prod(scipy.fft.next_fast_len(n, real=True) for n in spec.padded_size)
    return float(spec.group_in) * math.prod(spec.padded_size) * math.prod(spec.kernel) * grid


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """Forward and inverse transforms, then a complex product per frequency and group."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    sizes = [scipy.fft.next_fast_len(n, real=True) for n in spec.padded_size]
    points = math.prod(sizes)
    freq = points // sizes[-1] * (sizes[-1] // 2 + 1)  # half spectrum
    transforms = spec.batch * (spec.in_channels + spec.out_channels) + cg * og * g
    total = units(fft=transforms * 5 * points * math.log2(max(points, 2)) / 2)
    total += gemm(spec.batch, cg, og, freq * g, 2 * item)
    total["gemm"] *= 4  # complex products: 4 real ones each
    total["copy"] += freq * spec.batch * (spec.in_channels + spec.out_channels) * 4 * item
    return total
