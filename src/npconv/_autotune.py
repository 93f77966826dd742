""":func:`tune` and :func:`explain`: measuring and showing what ``algorithm="auto"`` does.

:func:`tune` times candidates on real arrays and remembers the winner per configuration
(the :class:`~npconv.ConvSpec` and the compute dtype) for the life of the process, in
:data:`npconv._choose.TUNED`.  Without a measurement, "auto" takes the supported
algorithm with the lowest estimate of the cost model (:mod:`npconv._choose`), for the
current thread count.  :func:`explain` shows both.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from ._choose import TUNED, candidates, estimate, reasons, resolve
from ._dispatch import run
from ._operands import Problem, prepare
from ._spec import ConvOptions
from ._threads import get_threads
from ._workspace import changing

__all__ = ["Explanation", "explain", "median_seconds", "tune"]


@dataclass(frozen=True)
class Explanation:
    """Why ``algorithm="auto"`` picks what it picks for one configuration.

    ``estimated`` and ``measured`` map algorithm names to seconds (``measured`` only
    after :func:`tune`); ``unsupported`` maps the others to the reason.
    """

    algorithm: str
    source: str  # "tuned" or "cost model"
    threads: int = 1  # the thread count the estimates are for
    estimated: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"auto -> {self.algorithm} ({self.source}) on {self.threads} threads"]
        for name, seconds in sorted(self.estimated.items(), key=lambda kv: kv[1]):
            timed = self.measured.get(name)
            extra = "" if timed is None else f", measured {timed * 1e3:.3g} ms"
            lines.append(f"  {name:12s} estimated {seconds * 1e3:.3g} ms{extra}")
        lines += [f"  {name:12s} cannot run: {why}" for name, why in self.unsupported.items()]
        return "\n".join(lines)


#: The options of :func:`npconv.conv` that :func:`explain` and :func:`tune` take.
_OPTIONS = ("stride", "padding", "dilation", "groups", "padding_mode", "layout")


def _problem(fn: str, x: Any, w: Any, kwargs: dict[str, Any]) -> Problem:
    """The problem of ``conv(x, w, **kwargs)``, errors named after ``fn``."""
    unknown = sorted(set(kwargs) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"{fn}: unexpected keyword argument {unknown[0]!r}; the options are {_OPTIONS}"
        )
    return prepare(ConvOptions.create(fn, **kwargs), x, w)


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
        The choice, whether it comes from :func:`tune` or the cost model, the thread
        count (:func:`npconv.get_threads`) the estimates are for, the estimated seconds
        of every supported algorithm (for weights that stay the same from call to call,
        as an inference loop's, unless ``w`` was seen to change), the measured ones if
        tuned, and why the others cannot run.

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
    problem = _problem("explain", x, w, kwargs)
    spec, dtype, threads = problem.spec, problem.numerics.exact, get_threads()
    steady = not changing(problem.w)  # as a call not following multi-threaded BLAS
    why = reasons(spec, dtype)
    estimated = {
        n: estimate(n, spec, dtype, threads, steady=steady) for n, r in why.items() if r is None
    }
    measured = dict(TUNED.get((spec, dtype), {}))
    return Explanation(
        algorithm=resolve("auto", spec, dtype, "explain", threads, steady=steady),
        source="tuned" if measured else "cost model",
        threads=threads,
        estimated=estimated,
        measured=measured,
        unsupported={n: r for n, r in why.items() if r is not None},
    )


def median_seconds(
    run: Any, repeats: int, slow: float = float("inf"), at_least: float = 0.0, warm: int = 1
) -> float:
    """Median seconds of ``repeats`` calls of ``run``, or of as many more as fill
    ``at_least`` seconds, after warm-up calls: a timed one, then as many more as fill
    ``at_least`` seconds too, and at least ``warm`` in all (a layer's first calls are
    slower than its later ones); the first warm-up's own time when it took more than
    ``slow`` seconds (not worth repeating)."""
    start = time.perf_counter()
    run()  # warm-up
    first = time.perf_counter() - start
    if first > slow:
        return first
    calls = max(math.ceil(at_least / max(first, 1e-9)), 1)
    for _ in range(max(calls, warm) - 1):
        run()
    times = []
    for _ in range(max(repeats, calls)):
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
        An unknown or unsupported algorithm among ``algorithms``, an empty
        ``algorithms``, ``repeats < 1``, or the errors of :func:`npconv.conv`.
    TypeError
        ``algorithms`` given as one string, an ``algorithm=`` or another unknown keyword.

    Examples
    --------
    >>> import numpy as np, npconv
    >>> x = np.ones((1, 4, 16, 16), np.float32)
    >>> w = np.ones((4, 4, 3, 3), np.float32)
    >>> best = npconv.tune(x, w, padding=1, algorithms=["im2col", "shifted"])
    >>> npconv.explain(x, w, padding=1).algorithm == best
    True
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"tune: repeats must be an int >= 1, got {repeats!r}")
    if "algorithm" in kwargs:
        raise TypeError(
            f"tune: times several algorithms; pass algorithms=[{kwargs['algorithm']!r}], "
            "not algorithm="
        )
    if isinstance(algorithms, str):
        raise TypeError(f"tune: algorithms must be a list of names, got the string {algorithms!r}")
    problem = _problem("tune", x, w, kwargs)
    spec, dtype, threads = problem.spec, problem.numerics.exact, get_threads()
    if algorithms is None:
        names = candidates(spec, dtype, threads, within=10.0)
    else:
        names = list(algorithms)
        if not names:
            raise ValueError("tune: algorithms is empty; give at least one name, or None for all")
        for name in names:
            resolve(name, spec, dtype, "tune", threads)  # raises for unknown / unsupported
    measured = {name: median_seconds(lambda n=name: run(problem, n), repeats) for name in names}
    TUNED[(spec, dtype)] = measured
    return min(measured, key=measured.__getitem__)
