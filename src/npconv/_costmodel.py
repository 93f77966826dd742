"""The cost model behind ``algorithm="auto"``: each algorithm's work, priced per unit.

:func:`work` counts what an algorithm does on a problem in five kinds of unit: matrix
products (``gemm``: flops divided by an efficiency that falls for thin matrices),
``copy`` (bytes gathered into patch matrices or tiles, and moved by BLAS), elementwise
``passes`` (bytes read and written by ufuncs), ``fft`` (``5 n log2 n / 2`` per real
transform) and ``calls`` (NumPy / BLAS / interpreter calls).  :data:`SECONDS_PER` prices
one unit of each on one thread; the prices were fitted (non-negative least squares on
relative error) to the measured times of every algorithm on the ``npconv bench`` suite
by ``benchmarks/calibrate.py`` on the reference machine of BENCHMARKS.md.  Only the
ranking matters, and :func:`npconv.tune` replaces the estimates by measurements where
the ranking is wrong on another machine.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import scipy.fft

from ._spec import ConvSpec
from ._threads import get_threads
from ._windows import WORKSPACE_BYTES
from .algorithms import REGISTRY, winograd

__all__ = ["KINDS", "SECONDS_PER", "estimate", "work"]

KINDS = ("gemm", "copy", "passes", "fft", "calls")
#: Seconds per unit of work on one thread (fitted by benchmarks/calibrate.py).
SECONDS_PER = {
    "gemm": 1.32e-11,
    "copy": 4.33e-11,
    "passes": 4.08e-11,
    "fft": 1.09e-10,
    "calls": 4.81e-08,
}
#: A matrix dimension of this size runs a GEMM at half its peak speed.
GEMM_HALF = 8


def _units(**kinds: float) -> Counter[str]:
    """Units of work by kind (a Counter, so that work adds up with ``+``)."""
    return Counter(kinds)  # type: ignore[arg-type]


def _gemm(m: float, k: float, n: float, count: float, item: int) -> Counter[str]:
    """``count`` products ``(m, k) @ (k, n)`` with ``item``-byte elements."""
    if m * k * n == 0:
        return _units(calls=count)
    efficiency = (m / (m + GEMM_HALF)) * (k / (k + GEMM_HALF)) * (n / (n + GEMM_HALF))
    flops = 2 * m * k * n * max(item / 4, 1) / efficiency  # float64 at half the speed
    return _units(gemm=count * flops, copy=count * (m * k + k * n + m * n) * item, calls=count)


def _winograd(spec: ConvSpec, item: int, tile: int) -> Counter[str]:
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    phases = math.prod(len(winograd._phases(spec, axis)) for axis in range(spec.nd))
    taps = [-(-r // s) for r, s in zip(spec.kernel, spec.stride)]
    outs = [-(-o // d) for o, d in zip(spec.out_size, spec.dilation)]
    ms = [1 if r == 1 else tile for r in taps]
    a = math.prod(m + r - 1 for m, r in zip(ms, taps))  # points per tile
    mm = math.prod(ms)  # outputs per tile
    t = spec.batch * math.prod(-(-o // m) for o, m in zip(outs, ms))  # tiles
    c, o = spec.in_channels, spec.out_channels
    total = _gemm(a, math.prod(taps), cg * o, 1, item)  # weight transform
    # gather the input tiles; reorder the output tiles, then crop them into the result
    total["copy"] += a * t * c * item + 2 * mm * t * o * item
    total += _gemm(a, a, t * c, 1, item)  # input transform
    total += _gemm(t, cg, og, a * g, item)  # the products over channels
    if g > 1:
        total["copy"] += a * t * (c + o) * item  # transposes to and from group order
    total += _gemm(mm, a, t * o, 1, item)  # output transform
    return Counter({kind: phases * units for kind, units in total.items()})


def _fft(spec: ConvSpec, item: int) -> Counter[str]:
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    sizes = [scipy.fft.next_fast_len(n, real=True) for n in spec.padded_size]
    points = math.prod(sizes)
    freq = points // sizes[-1] * (sizes[-1] // 2 + 1)  # half spectrum
    transforms = spec.batch * (spec.in_channels + spec.out_channels) + cg * og * g
    total = _units(fft=transforms * 5 * points * math.log2(max(points, 2)) / 2)
    total += _gemm(spec.batch, cg, og, freq * g, 2 * item)
    total["gemm"] *= 4  # complex products: 4 real ones each
    total["copy"] += freq * spec.batch * (spec.in_channels + spec.out_channels) * 4 * item
    return total


def work(name: str, spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """Units of work of each kind in :data:`KINDS` for algorithm ``name`` on ``spec``.

    Channels-first (``"NCHW"``) data costs a transposed copy of the input and of the
    output for an algorithm that only runs channels-last.
    """
    total = _algorithm_work(name, spec, dtype)
    if spec.layout == "NCHW" and REGISTRY[name].fn_channels_first is None:
        item = max(np.dtype(dtype).itemsize, 4)
        total["copy"] += (spec.in_channels * math.prod(spec.in_size)) * spec.batch * item
        total["copy"] += (spec.out_channels * math.prod(spec.out_size)) * spec.batch * item
    return total


def _algorithm_work(name: str, spec: ConvSpec, dtype: np.dtype) -> Counter[str]:
    """:func:`work` of the algorithm itself, on canonical arguments."""
    item = max(np.dtype(dtype).itemsize, 4)  # float16 computes in float32
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    rows = spec.batch * math.prod(spec.out_size)
    patches = rows * taps * spec.in_channels * item
    output = rows * spec.out_channels * item
    if name == "naive":  # one interpreted multiply-add per MAC
        return _units(calls=spec.macs)
    if name == "matrix":  # build nnz entries (several index arrays), then a sparse product
        nnz = spec.macs // max(spec.batch, 1)
        return _units(passes=nnz * 80 + spec.macs * 24, copy=output)
    if name in ("im2col", "einsum"):
        total = _gemm(rows, taps * cg, og, g, item)
        total["copy"] += patches * (2 if name == "einsum" else 1) + (output if g > 1 else 0)
        total["calls"] += 3 * max(patches // WORKSPACE_BYTES, 1)
        return total
    if name == "shifted":
        total = _gemm(rows, cg, og, g * taps, item)
        if taps == 1 and g == 1 and max(spec.stride) == 1:  # one product from the input
            return total
        total["copy"] += taps * rows * spec.in_channels * item  # strided operands
        total["passes"] += 3 * taps * output  # y += product
        return total
    if name.startswith("winograd"):
        return _winograd(spec, item, 2 if name == "winograd_f2" else 4)
    if name == "fft":
        return _fft(spec, item)
    if name == "depthwise":
        updates = taps * cg * og  # each a multiply and an add over (n, *out, G)
        blocks = max(rows * spec.out_channels * item // (WORKSPACE_BYTES // 4), 1)
        return _units(passes=updates * 5 * rows * g * item, calls=updates * 2 * blocks)
    raise ValueError(f"cost model: no model for algorithm {name!r}")


def estimate(name: str, spec: ConvSpec, dtype: np.dtype, threads: int | None = None) -> float:
    """Estimated seconds of algorithm ``name`` on ``spec`` computed in ``dtype``.

    Every kind of work but ``calls`` is spread over ``threads`` (default
    :func:`npconv.get_threads`).
    """
    units = work(name, spec, dtype)
    threads = threads or get_threads()
    parallel = sum(units[kind] * SECONDS_PER[kind] for kind in KINDS if kind != "calls")
    return parallel / threads + units["calls"] * SECONDS_PER["calls"]
