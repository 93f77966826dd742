"""``fft``: correlation as a product of spectra (convolution theorem), by ``scipy.fft``.

The valid correlation ``y[p] = sum_k xp[p + k*dilation] w[k]`` equals the circular one
on an FFT grid ``L`` at least as long as the input it reads (the wrap-around only
reaches outputs beyond the valid ones).  With ``v`` the dilated kernel reversed in time,
whose spectrum is ``conj(FFT(conj(w)))``, every frequency ``f`` is a small matrix
product over channels::

    Y[f] = X[f] @ V[f]          # (n, C/G) @ (C/G, O/G) per frequency and group

followed by one inverse transform per output channel.  Stride is applied by computing
the stride-1 result and keeping every ``stride``-th output.  Large images are cut into
tiles of outputs (overlap-save: each tile reads its inputs plus the kernel's halo), all
on one grid, so that the weight spectrum, computed once, has the tile grid's size.

Cost: ``(C + O) * prod(L) * log(prod(L))`` for the transforms (run on
:func:`npconv.get_threads` workers) plus ``4 * C/G * O * prod(L)`` real multiply-adds
(half a spectrum for real data), independent of the kernel size, against
``C/G * O * prod(kernel) * prod(out)`` for a direct algorithm: it wins for large kernels
on large images.  The weight spectrum has ``prod(L) * C/G * O`` entries, so small images
with many channels lose.  Memory: :func:`plan` picks the tiles and the blocks of
samples, groups, input and output channels of least estimated cost whose spectra fit
:data:`npconv._windows.WORKSPACE_BYTES` (:func:`memory`; with every block and tile of
size 1 they may not, and the registry then refuses the problem); smaller blocks of
output channels cost repeated input transforms, smaller blocks of input channels
repeated weight transforms.

Error: rounding grows like ``log(prod(L))``; on unit-scale random float32 data the
largest error relative to ``max |y|`` is ~1e-6, well within 1e-4.  Not exact for
integers.  Non-finite values: a spectrum mixes a whole sample, so one NaN or Inf would
turn every output of its sample into NaN; where its result holds a value that is not
finite (NaN or Inf in the operands, or an overflow in the transforms), the dispatch
computes it again by the cheapest direct algorithm, which puts NaN and Inf exactly
where the definition does.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from typing import Any, NamedTuple

import numpy as np
import scipy.fft

from .._cost import gemm, seconds, units
from .._spec import ConvSpec
from .._threads import get_threads
from .._windows import WORKSPACE_BYTES


class Plan(NamedTuple):
    """How :func:`conv` cuts a problem: outputs per tile (per axis), the FFT grid, and
    the blocks of samples, groups, input and output channels per group."""

    tile: tuple[int, ...]
    grid: tuple[int, ...]
    blocks: tuple[int, int, int, int]
    bytes: int
    work: Counter[str]


def _halvings(n: int) -> list[int]:
    """``n``, ``ceil(n / 2)``, ``ceil(n / 4)``, ... down to 1."""
    sizes = [max(n, 1)]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def _evaluate(spec: ConvSpec, dtype: np.dtype, tile: tuple[int, ...], blocks: tuple) -> Plan:
    """The bytes held at once and the work of one way of cutting the problem."""
    real = dtype.kind != "c"
    n, gb, cb, ob = blocks
    inputs = [(t - 1) * s + e for t, s, e in zip(tile, spec.stride, spec.extent)]
    grid = tuple(scipy.fft.next_fast_len(m, real=real) for m in inputs)
    points = math.prod(grid)
    freq = points // grid[-1] * (grid[-1] // 2 + 1) if real else points  # half spectrum
    item = max(np.dtype(dtype).itemsize, 4)
    spectrum, plane = freq * item * (2 if real else 1), points * item  # one channel's
    # the weight spectra (and their padded kernels), the input spectra (and the padded
    # tile), the accumulated products, one product and the inverse transform
    held = gb * (cb * ob + n * cb) * (spectrum + plane) + n * gb * ob * (2 * spectrum + plane)
    tiles = math.prod(-(-o // t) for o, t in zip(spec.out_size, tile))
    batch, c, o = max(spec.batch, 1), spec.in_channels, spec.out_channels
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    o_blocks, c_blocks = -(-og // ob), -(-cg // cb)
    n_blocks, g_blocks = -(-batch // n), -(-g // gb)
    weights = 1 if c_blocks == 1 else tiles * n_blocks  # times the weights are transformed
    transforms = tiles * batch * (c * o_blocks + o) + g * cg * og * weights
    total = units(fft=transforms * 5 * points * math.log2(max(points, 2)) / 2)
    steps = tiles * n_blocks * g_blocks * o_blocks * c_blocks  # products of blocks
    total += gemm(n, cb, ob, freq * gb * steps, 2 * item)
    total["gemm"] *= 4  # complex products: 4 real ones each
    total["copy"] += freq * tiles * batch * (c * o_blocks + o) * 4 * item
    total["calls"] += 10 * steps
    return Plan(tile, grid, blocks, held, total)


@functools.lru_cache(maxsize=256)
def plan(spec: ConvSpec, dtype: np.dtype) -> Plan:
    """The cut of least estimated work whose spectra fit ``WORKSPACE_BYTES``.

    Candidates: tiles of ``ceil(out / 2**k)`` outputs on every axis, blocks of
    ``ceil(size / 2**j)`` input and output channels, and for each the most groups, then
    the most samples, that fit.  When nothing fits, the smallest cut.
    """
    dtype = np.dtype(dtype)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    tiles = [
        tuple(-(-o // 2**k) for o in spec.out_size)
        for k in range(max(spec.out_size).bit_length() + 1)
    ]
    best = None
    for tile, cb, ob in itertools.product(dict.fromkeys(tiles), _halvings(cg), _halvings(og)):
        fits = [
            candidate
            for gb in _halvings(g)
            for candidate in [_evaluate(spec, dtype, tile, (1, gb, cb, ob))]
            if candidate.bytes <= WORKSPACE_BYTES
        ]
        if not fits:
            continue
        gb = fits[0].blocks[1]
        for n in _halvings(spec.batch):
            candidate = _evaluate(spec, dtype, tile, (n, gb, cb, ob))
            if candidate.bytes <= WORKSPACE_BYTES:
                break
        if best is None or seconds(candidate.work, 1) < seconds(best.work, 1):
            best = candidate
    smallest = (1,) * spec.nd
    return best or _evaluate(spec, dtype, smallest, (1, 1, 1, 1))


def memory(spec: ConvSpec, dtype: np.dtype) -> int:
    """Bytes of temporaries :func:`conv` holds at once: its plan's spectra."""
    return plan(spec, np.dtype(dtype)).bytes


def _ranges(total: int, step: int) -> list[slice]:
    """``range(total)`` in slices of ``step``."""
    return [slice(i, min(i + step, total)) for i in range(0, total, step)]


def conv(xp: np.ndarray, wc: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """Spectral correlation of canonical arguments (see :mod:`npconv._windows`)."""
    nd, g, cg, og = spec.nd, spec.groups, spec.group_in, spec.group_out
    dtype = np.result_type(xp, wc)
    real = dtype.kind != "c"
    forward, inverse = (
        (scipy.fft.rfftn, scipy.fft.irfftn) if real else (scipy.fft.fftn, scipy.fft.ifftn)
    )
    cut = plan(spec, dtype)
    grid, (n_step, g_step, c_step, o_step) = cut.grid, cut.blocks
    freq = (*grid[:-1], grid[-1] // 2 + 1) if real else grid  # the spectrum's shape
    spatial, workers = tuple(range(1, nd + 1)), get_threads()

    x = xp.reshape(*xp.shape[:-1], g, cg)  # (N, *padded, G, C/G)
    w = wc.reshape(*spec.kernel, cg, g, og)  # (*kernel, C/G, G, O/G)
    y = np.empty((spec.batch, *spec.out_size, g, og), dtype=dtype)  # (N, *out, G, O/G)
    dilate = tuple(slice(None, None, d) for d in spec.dilation)

    def weights(gs: slice, cs: slice, os: slice) -> np.ndarray:  # (F, gb, cb, ob)
        part = w[..., cs, gs, os]  # (*kernel, cb, gb, ob)
        dilated = np.zeros((1, *spec.extent, *part.shape[nd:]), dtype=dtype)
        dilated[0][dilate] = part  # (1, *extent, cb, gb, ob)
        # the spectrum of the dilated kernel reversed in time: conj(FFT(conj(w)))
        v = np.conj(forward(np.conj(dilated), s=grid, axes=spatial, workers=workers))
        return v.reshape(-1, *part.shape[nd:]).transpose(0, 2, 1, 3)

    def inputs(ns: slice, region: tuple, gs: slice, cs: slice) -> np.ndarray:  # (F, gb, n, cb)
        part = x[tuple([ns, *region, gs, cs])]  # (n, *tile inputs, gb, cb)
        spectrum = forward(part, s=grid, axes=spatial, workers=workers)
        return spectrum.reshape(part.shape[0], -1, *part.shape[-2:]).transpose(1, 2, 0, 3)

    channel_blocks = _ranges(cg, c_step)

    def summed(ns: slice, region: tuple, gs: slice, os: slice, whole: Any) -> np.ndarray:
        """(F, gb, n, ob): the products (F, gb, n, cb) @ (F, gb, cb, ob) over every cb."""
        parts = (
            inputs(ns, region, gs, cs) @ (weights(gs, cs, os) if whole is None else whole)
            for cs in channel_blocks
        )
        acc = next(parts)
        for part in parts:
            acc += part
        return acc

    tiles = list(itertools.product(*(_ranges(o, t) for o, t in zip(spec.out_size, cut.tile))))
    for gs, os in itertools.product(_ranges(g, g_step), _ranges(og, o_step)):
        whole = weights(gs, slice(None), os) if len(channel_blocks) == 1 else None
        for outs, ns in itertools.product(tiles, _ranges(spec.batch, n_step)):
            region = tuple(  # the inputs of this tile's outputs, with the kernel's halo
                slice(p.start * s, (p.stop - 1) * s + e)
                for p, s, e in zip(outs, spec.stride, spec.extent)
            )
            acc = summed(ns, region, gs, os, whole)  # (F, gb, n, ob)
            n, gb, ob = acc.shape[2], acc.shape[1], acc.shape[3]
            spectra = acc.transpose(2, 0, 1, 3).reshape(n, *freq, gb, ob)  # (n, *F, gb, ob)
            del acc
            full = inverse(spectra, s=grid, axes=spatial, workers=workers)
            # full: (n, *L, gb, ob), the tile's stride-1 correlation: keep the strided outputs
            keep = tuple(
                slice(0, (p.stop - p.start - 1) * s + 1, s) for p, s in zip(outs, spec.stride)
            )
            y[tuple([ns, *outs, gs, os])] = full[tuple([slice(None), *keep])]
            del spectra, full
    return y.reshape(*y.shape[:-2], spec.out_channels)


def work(spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """Transforms (the inputs once per block of output channels), then the products."""
    return plan(spec, np.dtype(dtype)).work
