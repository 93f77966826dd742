"""How ``algorithm="auto"`` chooses: measurements from :func:`tune`, else the cost model.

:func:`tune` times candidates on real arrays and remembers the winner per configuration
(the :class:`~npconv.ConvSpec` and the compute dtype) for the life of the process.
Without a measurement, "auto" takes the supported algorithm with the lowest estimate of
:mod:`npconv._costmodel`.  :func:`explain` shows both.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._costmodel import estimate
from ._spec import ConvSpec
from ._threads import get_threads
from .algorithms import REGISTRY, naive

__all__ = ["Explanation", "choose", "explain", "tune"]

_tuned: dict[tuple[ConvSpec, np.dtype], dict[str, float]] = {}


def _candidates(spec: ConvSpec, dtype: np.dtype) -> dict[str, str | None]:
    """Every registered algorithm with the reason it cannot run (None when it can)."""
    return {name: algo.unsupported(spec, dtype) for name, algo in REGISTRY.items()}


def choose(spec: ConvSpec, dtype: np.dtype) -> str:
    """The tuned winner for (spec, dtype), else the lowest estimate among the supported."""
    measured = _tuned.get((spec, np.dtype(dtype)))
    if measured:
        return min(measured, key=measured.__getitem__)
    return _cheapest(spec, np.dtype(dtype), get_threads())


@functools.lru_cache(maxsize=1024)
def _cheapest(spec: ConvSpec, dtype: np.dtype, threads: int) -> str:
    """The supported algorithm with the lowest estimate (cached: auto pays it once)."""
    supported = [name for name, why in _candidates(spec, dtype).items() if why is None]
    return min(supported, key=lambda name: estimate(name, spec, dtype, threads))


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


def median_seconds(run: Any, repeats: int, slow: float = float("inf")) -> float:
    """Median seconds of ``repeats`` calls of ``run`` after a timed warm-up call; the
    warm-up's own time when it took more than ``slow`` seconds (not worth repeating)."""
    start = time.perf_counter()
    run()  # warm-up
    first = time.perf_counter() - start
    if first > slow:
        return first
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
        name: median_seconds(lambda n=name: conv(x_arr, w_arr, algorithm=n, **kwargs), repeats)
        for name in names
    }
    _tuned[(spec, dtype)] = measured
    return min(measured, key=measured.__getitem__)
