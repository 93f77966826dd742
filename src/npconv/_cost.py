"""The units in which every algorithm states its work, and what one unit costs.

Each algorithm module defines ``work(spec, dtype)``: the units of work of each kind in
:data:`KINDS` it does on a problem.  ``gemm`` counts matrix-product flops divided by an
efficiency that falls for thin matrices, ``copy`` bytes gathered into patch matrices or
tiles (and moved by BLAS), ``passes`` bytes read and written by elementwise ufuncs,
``fft`` ``5 n log2 n / 2`` per real transform, ``serial`` bytes of passes that run on the
calling thread alone (the compiled kernels), and ``calls`` NumPy, BLAS and interpreter
calls.  :data:`SECONDS_PER` prices one unit of each on one thread; the prices were
fitted (non-negative least squares on relative error) to the measured times of every
algorithm on the ``npconv bench`` suite by ``benchmarks/calibrate.py``.  Only the
ranking matters, and :func:`npconv.tune` replaces the estimates by measurements where
the ranking is wrong on another machine.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["KINDS", "SECONDS_PER", "SERIAL", "gemm", "seconds", "units"]

KINDS = ("gemm", "copy", "passes", "fft", "serial", "calls")
#: The kinds that run on one thread whatever the thread count.
SERIAL = ("serial", "calls")
#: Seconds per unit of work on one thread (fitted by benchmarks/calibrate.py).
SECONDS_PER = {
    "gemm": 1.32e-11,
    "copy": 4.33e-11,
    "passes": 4.08e-11,
    "fft": 1.09e-10,
    "serial": 4.08e-11,  # as "passes" (not fitted)
    "calls": 4.81e-08,
}
#: A matrix dimension of this size runs a GEMM at half its peak speed.
GEMM_HALF = 8


def units(**kinds: float) -> Counter[str]:
    """Units of work by kind (a Counter, so that work adds up with ``+``)."""
    return Counter(kinds)  # type: ignore[arg-type]


def gemm(m: float, k: float, n: float, count: float, item: int) -> Counter[str]:
    """``count`` products ``(m, k) @ (k, n)`` with ``item``-byte elements."""
    if m * k * n == 0:
        return units(calls=count)
    efficiency = (m / (m + GEMM_HALF)) * (k / (k + GEMM_HALF)) * (n / (n + GEMM_HALF))
    flops = 2 * m * k * n * max(item / 4, 1) / efficiency  # float64 at half the speed
    return units(gemm=count * flops, copy=count * (m * k + k * n + m * n) * item, calls=count)


def seconds(work: Counter[str], threads: float) -> float:
    """Estimated seconds of ``work``: the kinds but :data:`SERIAL` spread over ``threads``."""
    spread = sum(work[kind] * SECONDS_PER[kind] for kind in KINDS if kind not in SERIAL)
    return spread / threads + sum(work[kind] * SECONDS_PER[kind] for kind in SERIAL)
