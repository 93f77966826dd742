"""How ``algorithm="auto"`` chooses: a cost model, plus measurements from :func:`tune`.

The model estimates each algorithm's seconds from the work it does, in four kinds of
step whose rates were measured on a 2-core x86-64 machine with OpenBLAS (the rates
below): matrix products (BLAS, with an efficiency that falls for thin matrices),
copies (gathering patches or tiles), elementwise passes, and FFTs.  Only the ranking
matters, so the absolute rates need not match another machine; :func:`tune` replaces
the estimate by measured times when the ranking is wrong for a configuration.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

from ._spec import ConvSpec
from ._threads import get_threads
from .algorithms import REGISTRY, naive, winograd

__all__ = ["Explanation", "choose", "estimate", "explain", "tune"]

# Rates per core, measured with float32 on the reference machine (see BENCHMARKS.md).
GEMM_FLOPS = 40e9  # large SGEMM, flop/s per core
COPY_BYTES = 2.5e9  # strided gather into a contiguous buffer, bytes/s per core
PASS_BYTES = 3.0e9  # elementwise multiply / add traffic, bytes/s per core
FFT_FLOPS = 2.0e9  # 5 n log2 n "flops" per transform, per core
CALL_SECONDS = 4e-6  # fixed cost of one NumPy / BLAS call
GEMM_HALF = 24  # a GEMM dimension of this size runs at half speed

_tuned: dict[tuple[ConvSpec, np.dtype], dict[str, float]] = {}


def _gemm(m: float, k: float, n: float, count: float, itemsize: int) -> float:
    """Seconds for ``count`` products (m, k) @ (k, n)."""
    if m * k * n == 0:
        return count * CALL_SECONDS
    efficiency = (m / (m + GEMM_HALF)) * (k / (k + GEMM_HALF)) * (n / (n + GEMM_HALF))
    flops = 2 * m * k * n * (itemsize / 4 if itemsize > 4 else 1)
    memory = (m * k + k * n + m * n) * itemsize / COPY_BYTES
    return count * (flops / (GEMM_FLOPS * get_threads() * efficiency) + memory + CALL_SECONDS)


def _copy(nbytes: float, threads: int = 1) -> float:
    return 2 * nbytes / (COPY_BYTES * threads)


def _winograd(spec: ConvSpec, item: int, tile: int) -> float:
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    total = 0.0
    phases = [len(winograd._phases(spec, axis)) for axis in range(spec.nd)]
    taps = [-(-r // s) for r, s in zip(spec.kernel, spec.stride)]
    outs = [-(-o // d) for o, d in zip(spec.out_size, spec.dilation)]
    ms = [1 if r == 1 else tile for r in taps]
    a = math.prod(m + r - 1 for m, r in zip(ms, taps))
    mm = math.prod(ms)
    t = spec.batch * math.prod(-(-o // m) for o, m in zip(outs, ms))  # tiles
    weight = _gemm(a, math.prod(taps), cg * spec.out_channels, 1, 8)
    weight += _copy(a * cg * spec.out_channels * 12)
    total += _copy(a * t * spec.in_channels * item, get_threads())  # gather tiles
    total += _gemm(a, a, t * spec.in_channels, 1, item)  # input transform
    total += _gemm(t, cg, og, a * g, item)  # elementwise products
    if g > 1:
        total += _copy(a * t * (spec.in_channels + spec.out_channels) * item)
    total += _gemm(mm, a, t * spec.out_channels, 1, item)  # output transform
    total += _copy(mm * t * spec.out_channels * item)  # scatter
    return math.prod(phases) * (total + weight)


def _fft(spec: ConvSpec, item: int) -> float:
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    sizes = [scipy.fft.next_fast_len(n, real=True) for n in spec.padded_size]
    points = math.prod(sizes)
    freq = points // sizes[-1] * (sizes[-1] // 2 + 1)
    transform = 5 * points * math.log2(max(points, 2)) / 2 / (FFT_FLOPS * get_threads())
    total = transform * (spec.batch * (spec.in_channels + spec.out_channels) + cg * og * g)
    total += _gemm(spec.batch, cg, og, freq * g, 2 * item) * 4  # complex products
    total += _copy(freq * spec.batch * (spec.in_channels + spec.out_channels) * 2 * item)
    return total


def estimate(name: str, spec: ConvSpec, dtype: np.dtype) -> float:
    """Estimated seconds of algorithm ``name`` on ``spec`` computed in ``dtype``."""
    item = max(np.dtype(dtype).itemsize, 4)
    g, cg, og = spec.groups, spec.group_in, spec.group_out
    taps = math.prod(spec.kernel)
    rows = spec.batch * math.prod(spec.out_size)
    if name == "naive":
        return spec.macs * 1e-6
    if name == "matrix":
        return spec.macs * 2e-8 + rows * spec.out_channels * item / COPY_BYTES
    if name in ("im2col", "einsum"):
        gather = _copy(rows * taps * spec.in_channels * item, 1)
        cost = gather + _gemm(rows, taps * cg, og, g, item)
        cost += _copy(rows * spec.out_channels * item)
        return cost * (1.5 if name == "einsum" else 1.0)
    if name == "shifted":
        per_offset = (
            _copy(rows * spec.in_channels * item) + 3 * rows * spec.out_channels * item / PASS_BYTES
        )
        return taps * (per_offset + _gemm(rows, cg, og, g, item))
    if name.startswith("winograd"):
        return _winograd(spec, item, 2 if name == "winograd_f2" else 4)
    if name == "fft":
        return _fft(spec, item)
    if name == "depthwise":
        passes = taps * cg * og * (6 * rows * g * item / (PASS_BYTES * get_threads()))
        return passes + taps * cg * og * CALL_SECONDS * max(rows * g * item // 2**20, 1)
    return math.inf


def _candidates(spec: ConvSpec, dtype: np.dtype) -> dict[str, str | None]:
    """Every registered algorithm with the reason it cannot run (None when it can)."""
    return {name: algo.unsupported(spec, dtype) for name, algo in REGISTRY.items()}


def choose(spec: ConvSpec, dtype: np.dtype) -> str:
    """The tuned winner for (spec, dtype), else the lowest estimate among the supported."""
    measured = _tuned.get((spec, np.dtype(dtype)))
    if measured:
        return min(measured, key=measured.__getitem__)
    supported = [name for name, why in _candidates(spec, dtype).items() if why is None]
    return min(supported, key=lambda name: estimate(name, spec, dtype))


@dataclass(frozen=True)
class Explanation:
    """Why ``algorithm="auto"`` picks what it picks for one configuration.

    ``estimated`` and ``measured`` map algorithm names to seconds (``measured`` only
    after :func:`tune`); ``unsupported`` maps the others to the reason.
    """

    algorithm: str
    source: str  # "tuned" or "cost model"
    estimated: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"auto -> {self.algorithm} ({self.source})"]
        for name, seconds in sorted(self.estimated.items(), key=lambda kv: kv[1]):
            timed = self.measured.get(name)
            extra = "" if timed is None else f", measured {timed * 1e3:.3g} ms"
            lines.append(f"  {name:12s} estimated {seconds * 1e3:.3g} ms{extra}")
        lines += [f"  {name:12s} cannot run: {why}" for name, why in self.unsupported.items()]
        return "\n".join(lines)


def _prepare(fn: str, x: Any, w: Any, kwargs: dict[str, Any]) -> tuple[ConvSpec, np.dtype]:
    from ._api import as_array, compute_dtypes

    x, w = as_array(fn, "x", x), as_array(fn, "w", w)
    if x.ndim == w.ndim - 1:
        x = x[None]
    spec = ConvSpec.build(x.shape, w.shape, fn=fn, **kwargs)
    return spec, compute_dtypes(fn, x, w)[0]


def explain(x: npt.ArrayLike, w: npt.ArrayLike, **kwargs: Any) -> Explanation:
    """The algorithm ``conv(x, w, **kwargs)`` would use with ``algorithm="auto"``, and why.

    Parameters
    ----------
    x, w : array_like
        As for :func:`npconv.conv` (only shapes and dtypes are read).
    **kwargs
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, ``layout``.

    Returns
    -------
    Explanation
        The choice, whether it comes from :func:`tune` or the cost model, the estimated
        seconds of every supported algorithm, the measured ones if tuned, and why the
        others cannot run.

    Raises
    ------
    ValueError, TypeError
        The errors of :func:`npconv.conv` for the same arguments.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.zeros((1, 8, 32, 32), np.float32)
    >>> w = np.zeros((8, 1, 3, 3), np.float32)
    >>> choice = npconv.explain(x, w, padding=1, groups=8)
    >>> choice.algorithm in choice.estimated
    True
    >>> "naive" in choice.unsupported or choice.estimated["naive"] > 0
    True
    """
    spec, dtype = _prepare("explain", x, w, kwargs)
    reasons = _candidates(spec, dtype)
    estimated = {n: estimate(n, spec, dtype) for n, why in reasons.items() if why is None}
    measured = dict(_tuned.get((spec, dtype), {}))
    return Explanation(
        algorithm=choose(spec, dtype),
        source="tuned" if measured else "cost model",
        estimated=estimated,
        measured=measured,
        unsupported={n: why for n, why in reasons.items() if why is not None},
    )


def _median_seconds(run: Any, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def tune(
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    *,
    algorithms: Iterable[str] | None = None,
    repeats: int = 3,
    **kwargs: Any,
) -> str:
    """Time the candidate algorithms on ``x`` and ``w`` and make "auto" use the fastest.

    Like ``torch.backends.cudnn.benchmark``: the winner is remembered (in memory, for
    this process) for the configuration, i.e. the shapes, options and compute dtype,
    and every later ``conv(..., algorithm="auto")`` with that configuration uses it.

    Parameters
    ----------
    x, w : array_like
        Representative input and filters, as for :func:`npconv.conv`.
    algorithms : iterable of str, optional
        The candidates; by default every supported algorithm whose estimate is within
        10x of the best estimate (so ``naive`` and ``matrix`` are not timed on large
        problems).
    repeats : int
        Timed runs per candidate after one warm-up; the median counts.
    **kwargs
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, ``layout``.

    Returns
    -------
    str
        The winner's name.

    Raises
    ------
    ValueError
        An unknown or unsupported algorithm among ``algorithms``, ``repeats < 1``, or
        the errors of :func:`npconv.conv`.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((1, 4, 16, 16), np.float32)
    >>> w = np.ones((4, 4, 3, 3), np.float32)
    >>> best = npconv.tune(x, w, padding=1, algorithms=["im2col", "shifted"])
    >>> npconv.explain(x, w, padding=1).algorithm == best
    True
    """
    from ._api import conv
    from .algorithms import get_algorithm

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"tune: repeats must be an int >= 1, got {repeats!r}")
    spec, dtype = _prepare("tune", x, w, kwargs)
    if algorithms is None:
        estimates = {
            n: estimate(n, spec, dtype)
            for n, why in _candidates(spec, dtype).items()
            if why is None and (n != "naive" or spec.macs <= naive.MAX_MACS // 100)
        }
        best = min(estimates.values())
        names = [n for n, t in estimates.items() if t <= 10 * best]
    else:
        names = list(algorithms)
        for name in names:
            get_algorithm(name, spec, dtype, "tune")  # raises for unknown / unsupported
    x_arr, w_arr = np.asarray(x), np.asarray(w)
    measured = {
        name: _median_seconds(lambda n=name: conv(x_arr, w_arr, algorithm=n, **kwargs), repeats)
        for name in names
    }
    _tuned[(spec, dtype)] = measured
    return min(measured, key=measured.__getitem__)
