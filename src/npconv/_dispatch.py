"""The one place that runs a convolution: :func:`run`.

``conv``, ``conv_transpose``, every gradient, the layers, the dask wrapper, the integer
functions and the ONNX operators all end here.  :func:`run` resolves the algorithm
(:mod:`npconv._choose`), and for a forward convolution pads the input in blocks of
samples (a bounded copy, in the thread's reused ``"input"`` buffer), hands each block
to the algorithm in the layout it takes (channels-first data stay channels-first where
the algorithm allows), adds the bias unless the algorithm folds it into its products,
applies the ReLU that the ONNX evaluator asks for after a Conv unless the algorithm
fuses it (:class:`~npconv._operands.Problem`'s ``relu``), and converts exact integers
back from the float64 or int64 they were computed in.  A forward call whose signature
was seen before runs the plan made for it, where its algorithm allows one
(:class:`Plan`: the algorithm's function on the arrays, nothing checked or chosen
again).  A transposed convolution runs an algorithm's own adjoint, or forward
convolutions over its sub-pixel phases (:func:`npconv._adjoint.phases`), each through
this same path, then applies the adjoint of the padding mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ._adjoint import (
    fold_padding,
    phase_operands,
    phase_target,
    phases,
    region,
    swapped_filters,
    weight_gradient,
    weight_gradient_spec,
)
from ._choose import TUNED, choose, resolve, weight_gradient_choice
from ._jit import add_channels, unavailable
from ._operands import NonFinite, Problem, compute_dtypes, finite, prepare
from ._spec import ConvOptions, ConvSpec
from ._threads import get_threads, runs_alone
from ._windows import (
    canonical_input,
    canonical_weight,
    move_channels_first,
    move_channels_last,
    padded_by_mode,
    sample_blocks,
    weight_last,
)
from ._workspace import changing
from .algorithms import REGISTRY, Algorithm, Kernel

__all__ = ["Plan", "convolve", "run", "run_weight_gradient"]


def run(problem: Problem, algorithm: str = "auto") -> np.ndarray:
    """The result of ``problem`` by ``algorithm`` ("auto" or a registry name).

    In the spec's layout and the problem's result dtype, contiguous, without the batch
    axis when the input had none.
    """
    threads = get_threads()
    if problem.transposed:
        y = _transposed(problem, algorithm, threads)
        if problem.relu:
            _relu(y)
    else:
        y = _forward(problem, algorithm, threads, steady=True)
    y = np.ascontiguousarray(y, dtype=problem.numerics.result)
    return y[0] if problem.unbatched else y


def convolve(
    options: ConvOptions,
    x: npt.ArrayLike,
    w: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    algorithm: str = "auto",
    *,
    relu: bool = False,
) -> np.ndarray:
    """``conv(x, w, bias)`` with these options: :func:`run` of :func:`prepare`; with
    ``relu``, ``max(conv(x, w, bias), 0)`` (see :class:`~npconv._operands.Problem`).

    A call of a signature seen before (:func:`_signature`) runs the plan made for it, if
    its algorithm made one (:class:`Plan`): none of the checks, choices and steps of a
    first call, each a few microseconds of Python, and more where the GEMM of the call
    before has pushed the interpreter's own data out of the caches: 1x1 128->512 @28 b1
    with a bias and a ReLU spent 64-110 us before its GEMM and 50-60 after its bias's
    pass, around a GEMM of 0.75 ms.  MobileNetV2's 1x1 64->384 @14 b1 took 73 against
    100-108 us a call with a plan, 95-97 against 134-157 with a bias; a 1x1 layer of 4
    channels by ``im2col``, 10 against 34 (2 cores).
    """
    key = _signature(options, x, w, bias, algorithm, relu)
    plan = None if key is None else _PLANS.get(key, _UNSEEN)
    if isinstance(plan, Plan) and plan.valid():
        try:
            return plan(cast(np.ndarray, x), cast(np.ndarray, w), cast(Any, bias))
        except NonFinite:  # found by a transform's own check: the call run as a first one
            pass
    problem = prepare(options, x, w, bias)
    problem = replace(problem, relu=True) if relu else problem
    if key is None or plan is None:  # operands a plan does not take, or no plan made
        return run(problem, algorithm)
    # unseen, or planned by a registry row or a choice replaced since: the algorithm
    # chosen as run() would choose it (the same flags), the plan made for it, and this
    # call run by that algorithm
    threads, alone, steady = key[-3:]
    spec, exact, fn = problem.spec, problem.numerics.exact, problem.fn
    name = resolve(algorithm, spec, exact, fn, threads, alone=alone, steady=steady)
    if len(_PLANS) >= PLANS_KEPT:
        _PLANS.clear()
    _PLANS[key] = _plan(problem, REGISTRY[name], auto=algorithm == "auto")
    return run(problem, name)


#: Signatures whose plans (or their absence) :func:`convolve` keeps, at most; all are
#: forgotten when there are more.
PLANS_KEPT = 4096
#: The plans, by :func:`_signature`: None where the call's algorithm made none.
_PLANS: dict[tuple[Any, ...], Plan | None] = {}
_UNSEEN = object()  # a signature without a plan or None yet


@dataclass(frozen=True)
class Plan:
    """A forward call's result as a function of its arrays, ``(x, w, bias) -> y``: ``fn``,
    made for ``spec`` by or from the registry row ``row`` (the one chosen where
    ``auto``) by :func:`_plan`."""

    fn: Kernel
    row: Algorithm
    spec: ConvSpec
    dtype: np.dtype
    auto: bool
    unbatched: bool

    def valid(self) -> bool:
        """Whether the registry still holds the row that made it and, for "auto", no
        winner has been measured for its spec since (:func:`npconv.tune`)."""
        row = REGISTRY.get(self.row.name)
        return row is self.row and not (self.auto and (self.spec, self.dtype) in TUNED)

    def __call__(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """The result; raises :class:`NonFinite` where a row that computes through
        transforms found a value of it not finite (its ``checks_result``)."""
        if self.unbatched:
            return cast(np.ndarray, self.fn(x[None], w, bias)[0])
        return self.fn(x, w, bias)


def _signature(
    options: ConvOptions, x: object, w: object, bias: object, algorithm: str, relu: bool
) -> tuple[Any, ...] | None:
    """What a forward call's choice and plan depend on: its options, algorithm, ReLU,
    the arrays' shapes and dtypes, whether ``x`` is contiguous, and last npconv's
    threads, whether the call runs alone (:func:`npconv._threads.runs_alone`) and
    whether its weights are priced as steady (see :func:`_forward_values`); None for
    operands other than ndarrays."""
    if type(x) is not np.ndarray or type(w) is not np.ndarray:
        return None
    if bias is not None and type(bias) is not np.ndarray:
        return None
    b = None if bias is None else (bias.shape, bias.dtype)
    batch = x.shape[0] if x.ndim == w.ndim and x.ndim else 1
    alone = runs_alone(batch)
    steady = not alone and not changing(w)
    shapes = (x.shape, x.dtype, x.flags.c_contiguous, w.shape, w.dtype, b)
    return (options, algorithm, relu, *shapes, get_threads(), alone, steady)


def _plan(problem: Problem, row: Algorithm, auto: bool) -> Plan | None:
    """The plan of a checked forward problem by the registry row ``row`` (chosen by
    "auto" where ``auto``), or None.

    A plan runs the algorithm's function on the arrays as they come, skipping every
    step of :func:`_forward_by`: so only for floats that need no cast, an input that
    needs no copy (contiguous, channels-first only where the algorithm takes it so,
    padded only by the algorithm itself) and an algorithm that computes without
    transforms, or checks its own result as it writes it (its row's ``checks_result``:
    a value not finite raises :class:`NonFinite`, and :func:`convolve` runs the call as
    a first one, which computes it again by a direct algorithm; the dispatch checks the
    others' results).  Where the row makes a function of the
    arrays alone for the spec (``plan_channels_first``), the plan runs that, else the
    row's function (:func:`_called`).
    """
    spec, numerics = problem.spec, problem.numerics
    dtype, bias, relu = numerics.compute, problem.bias is not None, problem.relu
    operands = (
        [problem.x, problem.w] if problem.bias is None else [problem.x, problem.w, problem.bias]
    )
    dtypes = {numerics.result, *(a.dtype for a in operands)}  # the compute dtype, each
    if dtype.kind != "f" or dtypes != {dtype} or not problem.x.flags.c_contiguous or not spec.macs:
        return None
    if auto and (spec, numerics.exact) in TUNED:
        return None
    first = spec.layout == "NCHW"
    kernel = row.fn_channels_first if first else row.fn
    own_pads = row.pads_itself and spec.padding_mode == "zeros"
    unchecked = row.transforms and not row.checks_result
    if kernel is None or unchecked or (spec.padded and not own_pads):
        return None
    made = None
    if first and row.plan_channels_first is not None:
        made = row.plan_channels_first(spec, dtype, bias, relu)
    if made is None:
        made = _called(row, kernel, spec, relu)
    if row.transforms:  # their overflows are theirs to find (an errstate costs 5-10 us)
        made = _quiet(made)
    return Plan(made, row, spec, numerics.exact, auto, problem.unbatched)


def _quiet(fn: Kernel) -> Kernel:
    """``fn`` with NumPy's floating-point warnings off, as :func:`_forward_values` runs an
    algorithm that computes through transforms."""

    def call(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return fn(x, w, bias)

    return call


def _called(row: Algorithm, kernel: Kernel, spec: ConvSpec, relu: bool) -> Kernel:
    """The registry row's function ``kernel`` on a plan's arrays, ``(x, w, bias) -> y``,
    the bias and the ReLU applied as :func:`_forward_by` and :func:`_forward` apply them."""
    first = spec.layout == "NCHW"

    def call(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        wc = w if first else canonical_weight(w, spec)  # (O, C/G, *kernel), (*kernel, C/G, O)
        y = np.ascontiguousarray(_by_kernel(row, kernel, x, wc, spec, bias, relu, first))
        if relu and not row.fuses_relu:
            _relu(y)
        return y

    return call


def _by_kernel(
    algo: Algorithm,
    kernel: Kernel,
    xp: np.ndarray,
    wc: np.ndarray,
    spec: ConvSpec,
    bias: np.ndarray | None,
    relu: bool,
    channels_first: bool,
) -> np.ndarray:
    """``kernel`` (the registry row ``algo``'s function) on ``xp`` and ``wc`` for ``spec``,
    plus ``bias``, in the algorithm's own passes where it adds it, and where ``relu``
    its maximum with 0 if the algorithm fuses it (else left to the caller): ``(n, O,
    *out)`` or ``(n, *out, O)``."""
    fused = {"relu": True} if relu and algo.fuses_relu else {}
    if bias is not None and algo.adds_bias:
        return kernel(xp, wc, spec, bias=bias, **fused)
    y = kernel(xp, wc, spec, **fused)  # a fresh array of the algorithm's
    if bias is not None:
        y += _channel_row(bias, spec, channels_first)
    return y


def _relu(y: np.ndarray) -> None:
    """``y = max(y, 0)`` in place (NaN stays NaN): one compiled pass where numba is
    installed and ``y`` is a contiguous float array, else NumPy's ``maximum``."""
    if unavailable() is None and y.dtype.kind == "f" and y.flags.c_contiguous and y.size:
        add_channels(y.reshape(1, 1, 1, -1), np.zeros(1, y.dtype), True)
    else:
        np.maximum(y, 0, out=y)


def run_weight_gradient(
    fn: str, spec: ConvSpec, x: np.ndarray, gy: np.ndarray, algorithm: str = "auto"
) -> np.ndarray:
    """``dL/dw`` of the convolution ``spec`` at input ``x`` for the output gradient ``gy``.

    Both are batched and in the spec's layout; the result is in the weight's layout and
    the dtype of :func:`compute_dtypes`' result (exact integers as int64 or Python ints).
    It is a convolution of ``x`` with ``gy``, batch and channels exchanged
    (:func:`npconv._adjoint.weight_gradient`), run by :func:`run`, except for floats:

    * an algorithm with a weight gradient of its own for the forward ``spec``
      (``winograd_jit``: the adjoint of its transforms) computes it where it is named,
      or where "auto" estimates it cheaper (:func:`weight_gradient_choice`); computed
      through transforms, it gives way to the convolution where a value of it is not
      finite (see :func:`_forward`);
    * for channels-first data, where that convolution would run by an algorithm with a
      weight gradient of the convolution's own (``im2col``: the forward's patch
      matrices; ``depthwise_jit``: a compiled pass per tap), that function computes it,
      without transposing ``x`` or ``gy``.
    """
    compute, result = compute_dtypes(fn, x, gy)
    if compute.kind in "fc":
        threads = get_threads()
        inner = weight_gradient_spec(spec)[0]
        own = weight_gradient_choice(algorithm, spec, inner, compute, threads)
        grad = None if own is None else REGISTRY[own].weight_grad
        if grad is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # the transforms' own
                by_transforms = _own_weight_gradient(grad.fn, spec, x, gy, compute)
            if finite(by_transforms):
                return by_transforms.astype(result)
            algorithm = "auto"  # NaN, Inf or overflow: the weight gradient's convolution
        name = resolve(algorithm, inner, compute, fn, threads)
        own_channels_first = REGISTRY[name].weight_grad_channels_first
        if spec.layout == "NCHW" and spec.macs and own_channels_first is not None:
            dw = None
            for block in sample_blocks(spec, compute.itemsize):
                part = replace(spec, batch=len(range(spec.batch)[block]))
                x_part = x[block].astype(compute, copy=False)
                xp = canonical_input(x_part, part, channels_last=False, reuse=True)
                share = own_channels_first(xp, gy[block].astype(compute, copy=False), part)
                dw = share if dw is None else np.add(dw, share, out=dw)
            return cast(np.ndarray, dw).astype(result, copy=False)
    inner, xt, wt, as_weight = weight_gradient(spec, x, gy)
    return np.ascontiguousarray(as_weight(run(Problem.of(fn, inner, xt, wt), algorithm)))


def _own_weight_gradient(
    grad: Kernel, spec: ConvSpec, x: np.ndarray, gy: np.ndarray, compute: np.dtype
) -> np.ndarray:
    """``dL/dw`` by an algorithm's own weight gradient (channels-first, zero pads), from
    operands and to a result in the spec's layouts."""
    if spec.layout == "NHWC":
        x, gy = move_channels_first(x), move_channels_first(gy)
    x, gy = x.astype(compute, copy=False), gy.astype(compute, copy=False)
    x, spec = padded_by_mode(x, spec, channels_last=False)
    dw = grad(x, gy, spec)  # (O, C/G, *kernel)
    if spec.layout == "NHWC":  # (*kernel, C/G, O)
        return np.ascontiguousarray(weight_last(dw))
    return dw


def _channel_row(b: np.ndarray, spec: ConvSpec, channels_first: bool) -> np.ndarray:
    """A bias shaped to broadcast over a result, channels first or last."""
    return b.reshape(-1, *(1,) * spec.nd) if channels_first else b


def _without_products(problem: Problem, shape: tuple[int, ...], channels_first: bool) -> Any:
    """The result of a convolution that sums nothing: zeros, plus the bias."""
    y = np.zeros(shape, problem.numerics.carry)
    if problem.bias is not None:
        y += _channel_row(problem.bias.astype(y.dtype), problem.spec, channels_first)
    return y


def _forward(problem: Problem, algorithm: str, threads: int, steady: bool = False) -> np.ndarray:
    """A forward convolution, in the spec's layout and the numerics' carry dtype; its
    weights the caller's own where ``steady`` (see :func:`_forward_values`), not arrays
    made for this call.

    An algorithm that computes through transforms (``winograd``, ``fft``: its row's
    ``transforms``) spreads a NaN or Inf of the operands beyond the outputs that sum it,
    and may overflow where the result does not; either leaves a non-finite value in its
    result (none becomes finite again), which the cheapest direct algorithm then
    computes again, putting them where the definition does.  Checking the result, just
    written, took 10-40 us on 3x3 128->128 @28 b1, where bounding ``max|x| * max|w|``
    beforehand took 70-150 us (a pass over operands no longer in the caches).  An
    algorithm that tests each value as it writes it (its row's ``checks_result``:
    ``winograd_jit``'s output transforms) raises :class:`NonFinite` instead, which spares
    the pass over the whole result (7.4 ms of VGG's 3x3 64->64 @224 at batch 8, out of
    the caches).
    """
    y, algo = _forward_values(problem, algorithm, threads, steady)
    if problem.relu and not (algo is not None and algo.fuses_relu):
        _relu(y)  # after the transforms' check, which it could hide (-Inf -> 0)
    return y


def _forward_values(
    problem: Problem, algorithm: str, threads: int, steady: bool
) -> tuple[np.ndarray, Algorithm | None]:
    """:func:`_forward`'s result, and the registry row that computed it (None: nothing
    to compute).

    "auto" prices a caller's own weights (``steady``) as steady, what an algorithm
    derives from them kept from call to call, unless they were seen to change, or the
    call runs alone: there it follows other layers' multi-threaded GEMMs in a network,
    whose layers' derived arrays compete for the bytes kept and are read cold, and
    npconv's threads with OpenBLAS's (an ONNX ResNet-50's five 3x3 256->256 @14 layers
    by ``winograd_jit``, filters kept: 12.6 ms against 8.7 by ``im2col_jit``, 2 cores;
    the same layer repeated in a process of its own, 0.8-1.0 against 1.6-1.7 ms a
    call).
    """
    spec, numerics = problem.spec, problem.numerics
    alone = runs_alone(spec.batch)  # OpenBLAS's threads likely spin on the other cores
    steady = steady and not alone and not changing(problem.w)
    exact, fn = numerics.exact, problem.fn
    name = resolve(algorithm, spec, exact, fn, threads, alone=alone, steady=steady)
    algo = REGISTRY[name]
    if spec.macs == 0:
        return _without_products(problem, spec.output_shape, spec.layout == "NCHW"), None
    if not algo.transforms:
        return _forward_by(problem, algo), algo
    with np.errstate(over="ignore", invalid="ignore"):  # the transforms' own
        try:
            y = _forward_by(problem, algo)
            if algo.checks_result or finite(y):
                return y, algo
        except NonFinite:  # found by the algorithm itself (its row's checks_result)
            pass
    direct = REGISTRY[choose(spec, numerics.exact, threads, direct=True)]
    return _forward_by(problem, direct), direct


def _forward_by(problem: Problem, algo: Algorithm) -> np.ndarray:
    """:func:`_forward` by the registry row ``algo``."""
    spec, numerics = problem.spec, problem.numerics
    compute, carry = numerics.compute, numerics.carry
    first = spec.layout == "NCHW" and algo.fn_channels_first is not None
    kernel = cast(Kernel, algo.fn_channels_first if first else algo.fn)  # resolve(): forward
    w = problem.w.astype(compute, copy=False)
    wc = w if first else canonical_weight(w, spec)  # (O, C/G, *kernel) or (*kernel, C/G, O)
    b = None if problem.bias is None else problem.bias.astype(compute)
    own_pads = algo.pads_itself and spec.padding_mode == "zeros"  # zeros it adds itself
    # blocks bound the input's copy: padded here, cast, or made contiguous in the layout
    # the algorithm takes; where it is used as it lies, they would only cost a copy of
    # the result (VGG's 3x3 64->64 @224 at batch 8: eight calls and 98 MiB copied)
    moved = spec.layout == "NCHW" and not first  # seen channels-last: a strided view
    as_it_lies = problem.x.dtype == compute and problem.x.flags.c_contiguous and not moved
    copied = (spec.padded and not own_pads) or not as_it_lies
    blocks = sample_blocks(spec, compute.itemsize) if copied else [slice(None)]
    y = np.empty(spec.output_shape if len(blocks) > 1 else 0, dtype=carry)
    for block in blocks:
        n = len(range(spec.batch)[block])
        part = spec if n == spec.batch else replace(spec, batch=n)
        x = problem.x[block].astype(compute, copy=False)
        unpadded = part.valid() if own_pads else part
        xp = canonical_input(x, unpadded, channels_last=not first, reuse=True)
        if algo.pads_itself and not own_pads:
            part = part.valid()  # padded here (reflect, ...): nothing left for it to pad
        y_part = _by_kernel(algo, kernel, xp, wc, part, b, problem.relu, first)
        if spec.layout == "NCHW" and not first:
            y_part = move_channels_first(y_part)  # (n, O, *out)
        if len(blocks) == 1:  # no copy when the algorithm wrote the result's layout
            y = np.ascontiguousarray(y_part, dtype=carry)
        else:
            y[block] = y_part
        del xp, y_part  # free this block's temporaries before the next block's
    return y


def _transposed(problem: Problem, algorithm: str, threads: int) -> np.ndarray:
    """``A^T x`` for the convolution ``A`` of the problem's spec, in its layout."""
    spec, numerics, fn = problem.spec, problem.numerics, problem.fn
    name = resolve(algorithm, spec, numerics.exact, fn, threads, transposed=True)
    first = spec.layout == "NCHW"
    if spec.macs == 0:
        return _without_products(problem, spec.input_shape, first)
    start, size = region(spec)
    shape = (
        (spec.batch, spec.in_channels, *size) if first else (spec.batch, *size, spec.in_channels)
    )
    gy = problem.x.astype(numerics.compute, copy=False)
    w = problem.w.astype(numerics.compute, copy=False)
    adjoint = REGISTRY[name].adjoint if name in REGISTRY else None
    if adjoint is not None:
        gy_last = move_channels_last(gy) if first else gy  # (N, *out, O)
        xp_bar = adjoint(gy_last, canonical_weight(w, spec), spec)  # (N, *padded, C)
        xp_bar = xp_bar[tuple([slice(None), *(slice(a, a + n) for a, n in zip(start, size))])]
        x_bar = move_channels_first(xp_bar) if first else xp_bar
        x_bar = x_bar.astype(numerics.carry, copy=False)
    else:
        parts = phases(spec)
        w_t = swapped_filters(w, spec)  # (C, O/G, *kernel) or (*kernel, O/G, C)

        def phase(part: Any) -> np.ndarray:
            z, w_part = phase_operands(part, gy, w_t, spec)
            return _forward(Problem(fn, part.spec, z, w_part, None, numerics), name, threads)

        if len(parts) == 1 and parts[0].spec.out_size == size:  # stride 1: all of it
            x_bar = phase(parts[0])
        else:  # the phases' positions are disjoint: where they cover it, nothing is zero
            covered = sum(math.prod(part.spec.out_size) for part in parts) == math.prod(size)
            x_bar = (np.empty if covered else np.zeros)(shape, numerics.carry)
            for part in parts:
                x_bar[phase_target(part, spec)] = phase(part)
    if spec.padding_mode != "zeros":
        x_bar = fold_padding(x_bar, spec)
    if problem.bias is not None:
        x_bar = x_bar + _channel_row(problem.bias.astype(x_bar.dtype), spec, first)
    return x_bar
