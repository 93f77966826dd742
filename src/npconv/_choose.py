"""Which registered algorithm runs a convolution: by name, by measurement, or by cost.

``algorithm="auto"`` takes the winner that :func:`npconv.tune` measured for the
configuration (kept in :data:`TUNED`), otherwise the supported algorithm whose cost
(its registry row's ``work``, priced by :mod:`npconv._cost` for the given number of
threads) is lowest.  A transposed convolution is either computed by an algorithm with
an adjoint of its own (``col2im``) or split into phases of forward convolutions
(:func:`npconv._adjoint.phases`), each of which chooses for itself; "auto" compares the
two.  Every function here is a function of its arguments and of :data:`TUNED`.
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import numpy as np

from ._adjoint import phases, weight_gradient_spec
from ._cost import seconds, units
from ._spec import ConvSpec
from .algorithms import REGISTRY

__all__ = [
    "TUNED",
    "candidates",
    "check_name",
    "choose",
    "estimate",
    "gradient_choices",
    "reason",
    "reasons",
    "resolve",
    "weight_gradient_choice",
]

#: Measured seconds per algorithm, by (spec, compute dtype), filled by npconv.tune.
TUNED: dict[tuple[ConvSpec, np.dtype], dict[str, float]] = {}

#: What "auto" returns for a transposed convolution best split into phases.
PHASES = "auto"


def _names(transposed: bool) -> list[str]:
    """The names ``algorithm=`` accepts for a forward or a transposed convolution."""
    return [n for n, a in REGISTRY.items() if transposed or a.fn is not None]


def reason(name: str, spec: ConvSpec, dtype: np.dtype, transposed: bool = False) -> str | None:
    """Why algorithm ``name`` cannot run ``spec`` (its adjoint if ``transposed``), or None.

    A forward algorithm runs a transposed convolution when it can run every phase.
    """
    algorithm = REGISTRY[name]
    if not transposed or algorithm.adjoint is not None:
        return algorithm.unsupported(spec, dtype, transposed)
    for part in phases(spec):
        why = algorithm.unsupported(part.spec, dtype)
        if why is not None:
            return why
    return None


def reasons(spec: ConvSpec, dtype: np.dtype, transposed: bool = False) -> dict[str, str | None]:
    """Every registered algorithm, with the reason it cannot run (None when it can)."""
    return {name: reason(name, spec, dtype, transposed) for name in REGISTRY}


def estimate(
    name: str,
    spec: ConvSpec,
    dtype: np.dtype,
    threads: float,
    transposed: bool = False,
    steady: bool = False,
) -> float:
    """Estimated seconds of algorithm ``name`` on ``spec`` on ``threads`` threads.

    Channels-first (``"NCHW"``) data costs a transposed copy of the input and of the
    output for an algorithm that only runs channels-last; a forward algorithm's
    transposed convolution costs the sum of its phases.  With ``steady`` weights, an
    algorithm that keeps what it derives from them costs its row's ``kept_work``.
    """
    algorithm = REGISTRY[name]
    if transposed and algorithm.adjoint is None:
        split = sum(estimate(name, part.spec, dtype, threads) for part in phases(spec))
        return split + _filters_copy(spec, dtype, threads)
    rows_work = algorithm.kept_work if steady and algorithm.kept_work else algorithm.work
    work = Counter(rows_work(spec, dtype))  # a copy: a row may return a cached one
    if spec.layout == "NCHW" and not transposed and algorithm.fn_channels_first is None:
        item = max(np.dtype(dtype).itemsize, 4)
        work["copy"] += spec.batch * spec.in_channels * math.prod(spec.in_size) * item
        work["copy"] += spec.batch * spec.out_channels * math.prod(spec.out_size) * item
    return seconds(work, threads)


def _filters_copy(spec: ConvSpec, dtype: np.dtype, threads: float) -> float:
    """Estimated seconds to copy the phases' filters, swapped and flipped, into a forward
    algorithm's layout: a gather along transposed strides on one thread, measured at
    0.18-0.28 ns a byte for 3x3 filters of 64 to 512 channels, four streaming passes."""
    item = max(np.dtype(dtype).itemsize, 4)
    nbytes = spec.out_channels * spec.group_in * math.prod(spec.kernel) * item
    return seconds(units(serial=4 * nbytes), threads)


def candidates(
    spec: ConvSpec, dtype: np.dtype, threads: int, within: float, steady: bool = False
) -> list[str]:
    """The supported forward algorithms whose estimate on ``threads`` threads is within
    ``within`` times the cheapest's, cheapest first: those worth timing on real arrays
    (for weights that are ``steady``, see :func:`choose`)."""
    estimates = {
        n: estimate(n, spec, dtype, threads, steady=steady)
        for n, why in reasons(spec, dtype).items()
        if why is None
    }
    best = min(estimates.values())
    worth = [n for n, t in estimates.items() if t <= within * best]
    return sorted(worth, key=estimates.__getitem__)


#: The threads a call that runs alone (:func:`npconv._threads.runs_alone`) is priced at,
#: where its algorithm shares its work among npconv's own threads: fitted to an ONNX
#: ResNet-50's layers timed where they run (see BENCHMARKS.md).
ALONE_THREADS = 1.75


@functools.lru_cache(maxsize=1024)
def choose(
    spec: ConvSpec,
    dtype: np.dtype,
    threads: int,
    transposed: bool = False,
    direct: bool = False,
    alone: bool = False,
    steady: bool = False,
) -> str:
    """The supported algorithm with the lowest estimate on ``threads`` threads (those
    that share their work among npconv's own threads on :data:`ALONE_THREADS`, where
    the call runs ``alone``: :func:`npconv._threads.runs_alone`), for a forward
    convolution whose weights are ``steady`` (as an inference loop's, the same from
    call to call) at the cost of keeping what an algorithm derives from them.

    For a transposed convolution: an algorithm with an adjoint of its own, or
    :data:`PHASES` when the phases, each with its own cheapest algorithm, cost less.
    ``direct`` leaves out the algorithms that compute through transforms (their row's
    ``transforms``).
    """
    supported = [
        n
        for n, why in reasons(spec, dtype, transposed).items()
        if why is None and not (direct and REGISTRY[n].transforms)
    ]
    if not transposed:
        pool = min(threads, ALONE_THREADS) if alone else threads  # npconv's own threads
        return min(
            supported,
            key=lambda n: estimate(
                n, spec, dtype, pool if REGISTRY[n].own_threads else threads, steady=steady
            ),
        )
    own = [n for n in supported if REGISTRY[n].adjoint is not None]
    split = _filters_copy(spec, dtype, threads) + sum(
        estimate(choose(part.spec, dtype, threads), part.spec, dtype, threads)
        for part in phases(spec)
    )
    costs = {n: estimate(n, spec, dtype, threads, transposed=True) for n in own}
    best = min(costs, key=costs.__getitem__, default=None)
    return PHASES if best is None or split <= costs[best] else best


@functools.lru_cache(maxsize=1024)
def weight_gradient_choice(
    name: str, spec: ConvSpec, inner: ConvSpec, dtype: np.dtype, threads: int
) -> str | None:
    """The algorithm whose own weight gradient (its row's ``weight_grad``) computes
    ``dL/dw`` of the forward ``spec``, or None for the weight gradient's convolution
    ``inner`` (:func:`npconv._adjoint.weight_gradient_spec`).

    A named algorithm uses its own where it can; "auto" takes the cheapest estimate.
    """
    own = {
        n: algorithm.weight_grad
        for n, algorithm in REGISTRY.items()
        if algorithm.weight_grad is not None
        and name in ("auto", n)
        and algorithm.weight_unsupported(spec, dtype) is None
    }
    if name != "auto" or not own:
        return next(iter(own), None)
    costs = {n: seconds(grad.work(spec, dtype), threads) for n, grad in own.items()}
    best = min(costs, key=costs.__getitem__)
    convolution = estimate(choose(inner, dtype, threads), inner, dtype, threads)
    return best if costs[best] < convolution else None


def gradient_choices(spec: ConvSpec, dtype: np.dtype, threads: int) -> tuple[str, str]:
    """What "auto" runs for the input and weight gradients of the forward ``spec``.

    The input's is a transposed convolution: an algorithm's own adjoint, or
    ``"phases (a, b)"``, the forward algorithms its phases choose.  The weight's is an
    algorithm's own weight gradient or the algorithm of the weight gradient's
    convolution, as :func:`npconv._dispatch.run_weight_gradient` decides for floats
    within range.
    """
    fn = "gradient_choices"
    inputs = resolve("auto", spec, dtype, fn, threads, transposed=True)
    if inputs == PHASES:
        picks = sorted({resolve("auto", p.spec, dtype, fn, threads) for p in phases(spec)})
        inputs = f"phases ({', '.join(picks)})"
    inner = weight_gradient_spec(spec)[0]
    own = weight_gradient_choice("auto", spec, inner, dtype, threads)
    return inputs, own or resolve("auto", inner, dtype, fn, threads)


def check_name(name: object, fn: str, transposed: bool = False) -> None:
    """A ValueError naming ``fn`` unless ``name`` is "auto" or a registered algorithm.

    The message lists the algorithms that compute forward (or ``transposed``)
    convolutions; :func:`reason` says why another one cannot run a given problem.
    """
    if not isinstance(name, str) or (name != "auto" and name not in REGISTRY):
        names = sorted(_names(transposed))  # those that can compute this kind of convolution
        raise ValueError(f"{fn}: unknown algorithm {name!r}; choose 'auto' or one of {names}")


def resolve(
    name: str,
    spec: ConvSpec,
    dtype: np.dtype,
    fn: str,
    threads: int,
    transposed: bool = False,
    alone: bool = False,
    steady: bool = False,
) -> str:
    """The algorithm to run: ``name`` checked against ``spec`` and ``dtype``, or the choice.

    ``dtype`` is the one the algorithm must be exact in (int64 or object for integers).
    "auto" takes the measured winner of :data:`TUNED` for a forward convolution, else
    :func:`choose`'s (for a call that runs ``alone``, with ``steady`` weights, see
    there).  Raises a ValueError naming ``fn`` for an unknown name or an algorithm that
    cannot run the problem.
    """
    check_name(name, fn, transposed)
    if name == "auto":
        measured = None if transposed else TUNED.get((spec, dtype))
        if measured:
            return min(measured, key=measured.__getitem__)
        return choose(spec, dtype, threads, transposed, alone=alone, steady=steady)
    why = reason(name, spec, dtype, transposed)
    if why is not None:
        raise ValueError(f"{fn}: algorithm {name!r} cannot run this convolution: {why}")
    return name
