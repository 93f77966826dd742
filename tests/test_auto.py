"""algorithm="auto": the cost model's choices, tune / explain, the threads setting, memory."""

from __future__ import annotations

import gc
import itertools
import math
import os
import re
import signal
import threading
import time
import tracemalloc
import warnings
import weakref
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

import npconv
from npconv import ConvSpec, _jit, _threads, _workspace
from npconv import _choose as choosing
from npconv._cost import seconds, units
from npconv._jit import copy_rows, unavailable
from npconv._windows import WORKSPACE_BYTES, chunks, thread_chunks
from npconv.algorithms import REGISTRY, im2col, winograd_jit

from conftest import (
    FORWARD,
    assert_close,
    in_threads,
    refuses_without_numba,
    torch_conv,
    using_threads,
)


@pytest.fixture(autouse=True)
def forget_tuning():
    choosing.TUNED.clear()
    yield
    choosing.TUNED.clear()


SHAPES = [  # (x shape, w shape, kwargs), NCHW
    ((1, 3, 32, 32), (8, 3, 7, 7), dict(stride=2, padding=3)),
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
    ((1, 12, 10, 10), (12, 1, 3, 3), dict(padding=1, groups=12)),
    ((2, 8, 9), (4, 8, 1), {}),
    ((1, 2, 5, 5, 5), (2, 2, 3, 3, 3), dict(dilation=2, padding=2)),
]


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), SHAPES)
@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 8])
def test_auto_picks_a_supported_algorithm_and_only_exact_ones_for_integers(
    x_shape, w_shape, kwargs, dtype, threads
):
    spec = ConvSpec.build(x_shape, w_shape, **kwargs)
    name = choosing.choose(spec, np.dtype(dtype), threads)
    assert REGISTRY[name].unsupported(spec, np.dtype(dtype)) is None
    if np.dtype(dtype).kind == "i":
        assert REGISTRY[name].exact_integers


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), SHAPES)
def test_auto_picks_col2im_or_phases_for_transposed_convolutions(x_shape, w_shape, kwargs):
    spec = ConvSpec.build(x_shape, w_shape, **kwargs)
    name = choosing.choose(spec, np.dtype(np.float32), 2, transposed=True)
    assert name == choosing.PHASES or REGISTRY[name].adjoint is not None


def test_auto_on_integers_is_exact_where_winograd_would_be_cheapest(rng):
    x = rng.integers(-50, 50, (2, 64, 28, 28))
    w = rng.integers(-50, 50, (64, 64, 3, 3))
    assert npconv.explain(x.astype(np.float32), w.astype(np.float32), padding=1).algorithm in {
        "winograd",
        "winograd_f2",
        "winograd_jit",
        "fft",
        "im2col",
        "shifted",
    }
    y = npconv.conv(x, w, padding=1)
    np.testing.assert_array_equal(
        y, torch_conv(x, w, pads=[(1, 1), (1, 1)]).round().astype(np.int64)
    )


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        ((1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
        ((1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
        ((1, 3, 224, 224), (64, 3, 7, 7), dict(padding=3, stride=2)),
        ((1, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),
    ],
)
def test_a_call_that_runs_alone_prices_npconvs_own_threads_as_fewer(x_shape, w_shape, kwargs):
    """Where OpenBLAS's threads likely spin, the rows that share their work among
    npconv's own threads (and then run on the calling thread alone) are priced at
    ALONE_THREADS, the others at the thread count."""
    spec = ConvSpec.build(x_shape, w_shape, **kwargs)
    dtype = np.dtype(np.float32)
    rows = [n for n, why in choosing.reasons(spec, dtype).items() if why is None]
    own = [n for n in rows if REGISTRY[n].own_threads]

    def priced(name: str) -> float:
        threads = choosing.ALONE_THREADS if name in own else 2
        return choosing.estimate(name, spec, dtype, threads)

    assert choosing.choose(spec, dtype, 2, alone=True) == min(rows, key=priced)
    assert choosing.choose(spec, dtype, 2) == min(
        rows, key=lambda n: choosing.estimate(n, spec, dtype, 2)
    )


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "fits"),
    [((1, 256, 14, 14), (256, 256, 3, 3), True), ((1, 512, 7, 7), (512, 512, 3, 3), False)],
)
def test_steady_weights_price_the_kept_filters_check_not_their_transform(x_shape, w_shape, fits):
    """For steady weights ``winograd_jit`` is priced with a pass over the weight and its
    kept copy instead of the filters' transform, where the transform and the copy fit
    their share of the bytes kept (256 channels: 11.8 MB), else as for any weights (512
    channels: 47 MB); "auto" takes the cheapest of the rows priced so, and the rows
    without ``kept_work`` cost the same either way."""
    spec = ConvSpec.build(x_shape, w_shape, padding=1)
    dtype = np.dtype(np.float32)
    weight_bytes = 4 * math.prod(w_shape)
    transform = seconds(winograd_jit._filters_work(spec, 4), 2)
    check = seconds(units(passes=2 * weight_bytes), 2)
    steady = choosing.estimate("winograd_jit", spec, dtype, 2, steady=True)
    plain = choosing.estimate("winograd_jit", spec, dtype, 2)
    assert steady == pytest.approx(plain - transform + check if fits else plain)
    rows = [n for n, why in choosing.reasons(spec, dtype).items() if why is None]
    for name in rows:
        if REGISTRY[name].kept_work is None:
            assert choosing.estimate(name, spec, dtype, 2, steady=True) == choosing.estimate(
                name, spec, dtype, 2
            )
    assert choosing.choose(spec, dtype, 2, steady=True) == min(
        rows, key=lambda n: choosing.estimate(n, spec, dtype, 2, steady=True)
    )


def _asked_for(keyword: str, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The values of ``choose``'s flag ``keyword`` in every call from now on (a list that
    grows as "auto" chooses)."""
    asked: list[bool] = []
    real = choosing.choose

    def spy(*args, **kwargs):
        asked.append(kwargs.get(keyword, False))
        return real(*args, **kwargs)

    monkeypatch.setattr(choosing, "choose", spy)
    return asked


def test_the_dispatch_prices_weights_as_steady_until_they_change(rng, monkeypatch):
    """A forward call's "auto" prices its weights as steady unless it runs alone or the
    weights were seen to change: a training loop's weights, changed in place after
    ``winograd_jit`` kept their transform, are priced as made afresh from then on, and
    every result is still PyTorch's; a transposed convolution's phases, whose weights
    are made for the call, never as steady."""
    if refuses_without_numba("winograd_jit", lambda: npconv.conv(
        np.ones((1, 2, 8, 8)), np.ones((2, 2, 3, 3)), algorithm="winograd_jit")
    ):  # fmt: skip
        return
    asked = _asked_for("steady", monkeypatch)
    monkeypatch.setattr(_threads, "blas_spinning", lambda: False)  # as after no GEMMs
    x = rng.standard_normal((1, 8, 12, 12))
    w = rng.standard_normal((8, 8, 3, 3))
    view = w[:, :, ::-1]  # the same memory: changing as its owner
    for step in range(4):  # seen, kept, checked, changed
        if step == 3:
            w += 0.5
        y = npconv.conv(x, w, padding=1, algorithm="winograd_jit")
        expected = torch_conv(x, w, pads=[(1, 1), (1, 1)])
        np.testing.assert_allclose(y, expected, atol=1e-12 * np.abs(expected).max())
    assert _workspace.changing(w) and _workspace.changing(view)
    assert not _workspace.changing(w.copy())
    npconv.conv(x, w, padding=1)
    npconv.conv(x, w.copy(), padding=1)
    monkeypatch.setattr(_threads, "blas_spinning", lambda: True)
    with using_threads(2):
        npconv.conv(x, w.copy(), padding=1)
    assert asked == [False, True, False]
    monkeypatch.setattr(_threads, "blas_spinning", lambda: False)
    npconv.conv_transpose(x, w.copy(), padding=1)  # its phases' weights: made for the call
    assert len(asked) > 3 and not any(asked[3:])


@pytest.mark.parametrize(("batch", "alone"), [(1, True), (4, False)])
def test_the_dispatch_asks_for_a_choice_alone_below_the_threads(batch, alone, monkeypatch):
    """A forward call's "auto" is resolved alone where its batch is below the threads
    and OpenBLAS's threads likely spin (both as :func:`npconv._threads.runs_alone`)."""
    asked = _asked_for("alone", monkeypatch)
    monkeypatch.setattr(_threads, "blas_spinning", lambda: True)
    with using_threads(2):
        npconv.conv(np.ones((batch, 4, 9, 9)), np.ones((6, 4, 3, 3)), padding=1)
    assert asked == [alone]


def test_explain_lists_estimates_and_reasons():
    x, w = np.zeros((1, 4, 8), np.float32), np.zeros((4, 4, 5), np.float32)
    choice = npconv.explain(x, w)
    assert choice.source == "cost model" and not choice.measured
    assert set(choice.estimated) | set(choice.unsupported) == set(REGISTRY)
    assert "winograd" in choice.unsupported
    assert choice.estimated[choice.algorithm] == min(choice.estimated.values())
    assert f"auto -> {choice.algorithm} (cost model)" in str(choice)


def test_estimates_do_not_change_from_call_to_call():
    """Pricing a row never alters what its ``work`` returns (fft's is a cached plan's)."""
    x, w = np.zeros((1, 256, 14, 14), np.float32), np.zeros((256, 256, 3, 3), np.float32)
    first = npconv.explain(x, w, padding=1).estimated
    assert "fft" in first
    for _ in range(2):
        assert npconv.explain(x, w, padding=1).estimated == first


GRADIENT_SHAPES = [
    *SHAPES,
    ((4, 32, 16, 16), (32, 32, 3, 3), dict(padding=1)),  # winograd_jit's own, with numba
    ((2, 128, 16, 16), (128, 128, 3, 3), dict(padding=1)),  # winograd_f2 for the input's
    ((1, 16, 15, 15), (16, 16, 3, 3), dict(stride=2, padding=1)),  # phases
]


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs"), GRADIENT_SHAPES)
def test_gradient_choices_name_what_conv_backward_runs(x_shape, w_shape, kwargs, monkeypatch, rng):
    """``npconv bench --backward`` reports them: every function of the named algorithms
    runs, and no other algorithm's."""
    calls: list[str] = []

    def spy(name, fn):
        def run(*args, **kw):
            calls.append(name)
            return fn(*args, **kw)

        return None if fn is None else run

    for name, row in REGISTRY.items():
        kernels = ("fn", "fn_channels_first", "adjoint", "weight_grad_channels_first")
        spied = {k: spy(name, getattr(row, k)) for k in kernels}
        if row.weight_grad is not None:
            spied["weight_grad"] = replace(row.weight_grad, fn=spy(name, row.weight_grad.fn))
        monkeypatch.setitem(REGISTRY, name, replace(row, **spied))
    spec = ConvSpec.build(x_shape, w_shape, **kwargs)
    inputs, weight = choosing.gradient_choices(spec, np.dtype(np.float32), npconv.get_threads())
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    npconv.grad.conv_backward(gy, x, w, needs=("input",), **kwargs)
    phases = re.fullmatch(r"phases \((.*)\)", inputs)
    assert set(calls) == (set(phases.group(1).split(", ")) if phases else {inputs})
    calls.clear()
    npconv.grad.conv_backward(gy, x, w, needs=("weight",), **kwargs)
    assert set(calls) == {weight}


def test_tune_remembers_the_measured_winner(rng):
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    best = npconv.tune(x, w, padding=1, algorithms=["einsum"], repeats=1)
    assert best == "einsum"
    choice = npconv.explain(x, w, padding=1)
    assert (choice.algorithm, choice.source, list(choice.measured)) == (
        "einsum",
        "tuned",
        ["einsum"],
    )
    assert "measured" in str(choice)
    assert_close(
        npconv.conv(x, w, padding=1), torch_conv(x, w, pads=[(1, 1)] * 2).astype(np.float32)
    )
    # another configuration (here: another dtype) is not affected
    assert npconv.explain(x.astype(np.float64), w, padding=1).source == "cost model"


def test_tune_by_default_times_the_plausible_candidates(rng):
    x = rng.standard_normal((1, 4, 12, 12)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    best = npconv.tune(x, w, padding=1, repeats=1)
    measured = npconv.explain(x, w, padding=1).measured
    assert best in measured and "matrix" in REGISTRY and len(measured) >= 2


@pytest.mark.parametrize("kernel", [1, 3])
def test_candidates_are_the_cheapest_estimates_in_order(kernel):
    spec = ConvSpec.build((1, 64, 28, 28), (64, 64, kernel, kernel), padding=kernel // 2)
    f32 = np.dtype(np.float32)
    for steady in (False, True):
        names = choosing.candidates(spec, f32, 2, 2.0, steady=steady)
        costs = [choosing.estimate(n, spec, f32, 2, steady=steady) for n in names]
        assert names[0] == choosing.choose(spec, f32, 2, steady=steady)
        assert costs == sorted(costs) and costs[-1] <= 2.0 * costs[0]
        left_out = set(choosing.reasons(spec, f32)) - set(names)
        for name in left_out:  # unsupported, or dearer than twice the cheapest
            cost = choosing.estimate if choosing.reason(name, spec, f32) is None else None
            assert cost is None or cost(name, spec, f32, 2, steady=steady) > 2.0 * costs[0]


def test_tune_errors():
    x, w = np.zeros((1, 1, 8)), np.zeros((1, 1, 3))
    with pytest.raises(ValueError, match="tune: repeats must be an int >= 1, got 0"):
        npconv.tune(x, w, repeats=0)
    with pytest.raises(ValueError, match="tune: unknown algorithm 'fast'"):
        npconv.tune(x, w, algorithms=["fast"])
    with pytest.raises(ValueError, match="tune: algorithm 'winograd' cannot run"):
        npconv.tune(np.zeros((1, 1, 9)), np.zeros((1, 1, 5)), algorithms=["winograd"])
    with pytest.raises(TypeError, match=r"explain: unexpected keyword argument 'strides'"):
        npconv.explain(x, w, strides=2)


def test_set_threads_while_a_conv_runs_in_another_thread(rng):
    """The pool is swapped under running multi-block depthwise convs: no error, same result."""
    x = rng.standard_normal((1, 64, 64, 64)).astype(np.float32)
    w = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    expected = torch_conv(x, w, groups=64).astype(np.float32)
    old = npconv.set_threads(32)  # blocks of 512 KiB: a 1 MiB result takes several
    errors, results = [], []

    def convolve():
        try:
            for _ in range(100):
                results.append(npconv.conv(x, w, groups=64, algorithm="depthwise"))
        except Exception as err:  # reported below: the main thread asserts
            errors.append(err)

    worker = threading.Thread(target=convolve)
    try:
        worker.start()
        while worker.is_alive():
            npconv.set_threads(31)
            npconv.set_threads(32)
        worker.join()
    finally:
        npconv.set_threads(old)
    assert errors == [] and len(results) == 100
    for y in results:
        assert_close(y, expected)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize(("batch", "rows"), [(1, 7), (2, 5), (5, 3), (16, 1), (1, 1)])
def test_thread_chunks_cover_the_output_once_and_feed_every_thread(threads, batch, rows):
    spec = ConvSpec.build((batch, 4, rows + 2, 6), (4, 4, 3, 3))
    with using_threads(threads):
        shares = thread_chunks(spec, 4 * 4)
    covered = [(n, r) for b, rs in shares for n in range(batch)[b] for r in range(rows)[rs]]
    assert sorted(covered) == [(n, r) for n in range(batch) for r in range(rows)]
    assert len(shares) >= min(threads, batch * rows)
    samples = {len(range(batch)[b]) for b, _ in shares}
    lines = {len(range(rows)[rs]) for _, rs in shares}
    assert max(samples) - min(samples) <= 1 and max(lines) - min(lines) <= 1  # even shares


@pytest.mark.parametrize("multiple", [1, 2, 3])
@pytest.mark.parametrize(
    ("batch", "rows", "budget"), [(1, 14, 9), (8, 14, 9), (3, 5, 2), (8, 2, 6), (7, 3, 100)]
)
def test_chunks_are_even_within_the_budget_and_shared_evenly(multiple, batch, rows, budget):
    """Blocks of samples or of rows, each within the budget (one row's bytes a unit), as
    even as they go and as many as a multiple of ``multiple`` where the output has them:
    14 rows in blocks of at most 9 are two blocks of 7, not 9 and 5."""
    spec = ConvSpec.build((batch, 4, rows + 2, 6), (4, 4, 3, 3))
    found = list(chunks(spec, 1, budget * 4, multiple))  # a row: 4 positions of 1 byte
    covered = [(n, r) for b, rs in found for n in range(batch)[b] for r in range(rows)[rs]]
    assert sorted(covered) == [(n, r) for n in range(batch) for r in range(rows)]
    samples = [len(range(batch)[b]) for b, _ in found]
    lines = [len(range(rows)[rs]) for _, rs in found]
    assert max(n * r for n, r in zip(samples, lines)) <= budget
    assert max(samples) - min(samples) <= 1 and max(lines) - min(lines) <= 1
    if len(found) < batch * rows:  # more blocks were possible
        assert len(found) % multiple == 0


def test_parallel_regions_restore_blas_threads_and_agree(rng, monkeypatch):
    """Convolutions whose chunks run on npconv's threads, with BLAS on one thread each,
    from two threads at once: the BLAS thread count is restored, the results agree."""
    from threadpoolctl import threadpool_info

    monkeypatch.setattr(im2col, "_shared", lambda spec: True)

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    x = rng.standard_normal((3, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    expected = torch_conv(x, w, pads=[(1, 1)] * 2).astype(np.float32)
    old = npconv.set_threads(2)
    before = blas_threads()
    results = []

    def convolve():
        for algorithm in ["im2col", "winograd_jit"] * 10:
            run = partial(npconv.conv, x, w, padding=1, algorithm=algorithm)
            if not refuses_without_numba(algorithm, run):
                results.append(run())

    try:
        errors = in_threads(convolve)
        assert blas_threads() == before
    finally:
        npconv.set_threads(old)
    assert errors == [] and len(results) >= 20
    for y in results:
        assert_close(y, expected)


@pytest.fixture(params=["spinning", "sleeping"])
def pool_waits(request, monkeypatch):
    """npconv's threads waiting for regions by spinning (where numba runs; asleep
    without it) or asleep (a round of spinning measured as 0 seconds: none)."""
    if request.param == "sleeping":
        monkeypatch.setattr(_threads, "_measured", {"round": 0.0})
    with using_threads(1):  # a new pool, made with these waits, on first use
        pass
    return request.param


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_parallel_map_runs_every_item_once_region_after_region(threads, pool_waits):
    """Regions back to back, and after the threads have fallen asleep: every item runs
    once."""
    with using_threads(threads):
        for region in range(60):
            items = list(range(region % 7 + 2))
            seen: list[int] = []
            _threads.parallel_map(lambda item, seen=seen: seen.append(item * item), items)
            assert sorted(seen) == [item * item for item in items]
            if region % 20 == 19:
                time.sleep(2 * _threads.SPIN_SECONDS)  # the threads sleep again


def test_parallel_map_keeps_nothing_of_a_finished_region(pool_waits):
    """Neither the items nor what the function refers to outlive the region: an array
    they alone hold is freed when the caller lets it go."""
    array = np.ones(4)
    freed = weakref.ref(array)
    with using_threads(2):
        _threads.parallel_map(lambda item, array=array: array.sum(), [array, array])
        del array
        gc.collect()
        assert freed() is None


def test_a_pool_thread_says_when_it_calls_its_first_kernel(pool_waits):
    """Each region's first compiled kernel on a pool thread (or ``letting_go``, before a
    NumPy call that releases the GIL) marks the region as entered there, which its
    caller waits for (at most HANDOFF_SECONDS) before it asks for the GIL; items that
    call neither leave the mark alone."""
    compiled = unavailable() is None  # without numba, no kernel runs: no mark
    rows = np.zeros((1, 4))

    def item(with_kernel: bool) -> None:
        time.sleep(0.01)  # so that the pool's thread takes an item
        if with_kernel:
            copy_rows(rows, np.ones((1, 4)))

    def letting_go_first(_: object) -> None:  # before a NumPy call that lets the GIL go
        time.sleep(0.01)
        _jit.letting_go()

    with using_threads(2):
        pool = _threads._pool()
        _threads.parallel_map(item, [compiled, compiled])
        assert pool.entered[0] == (pool.number if compiled else 0)
        _threads.parallel_map(item, [False, False])
        assert pool.entered[0] == (pool.number - 1 if compiled else 0)
        np.testing.assert_array_equal(rows, np.full((1, 4), float(compiled)))
        _threads.parallel_map(letting_go_first, [0, 1])
        assert pool.entered[0] == pool.number
        assert getattr(_jit.entering, "hook", None) is None  # the caller is never hooked


def test_parallel_map_raises_the_first_items_error_after_running_every_item(pool_waits):
    ran = []

    def fail_odd(item):
        ran.append(item)
        if item % 2:
            raise ValueError(f"item {item}")

    with using_threads(2):
        with pytest.raises(ValueError, match=r"item 1$"):
            _threads.parallel_map(fail_odd, list(range(6)))
        assert sorted(ran) == list(range(6))
        _threads.parallel_map(ran.append, [6, 7])  # the pool still serves
    assert sorted(ran) == list(range(8))


def test_parallel_map_from_several_threads_and_nested(pool_waits):
    """Callers in two threads at once (one finds the pool busy and runs its items
    itself) and a region started from an item (run where it is called)."""
    totals = []

    def region():
        for _ in range(30):
            parts: list[int] = []

            def nested(item, parts=parts):
                _threads.parallel_map(parts.append, [item, 10 * item])

            _threads.parallel_map(nested, [1, 2, 3])
            totals.append(sum(parts))

    with using_threads(2):
        assert in_threads(region) == []
    assert totals == [66] * 60


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_parallel_map_in_a_forked_child(pool_waits):
    """A child forked after the pool started has none of its threads: it makes its own."""
    with using_threads(2):
        _threads.parallel_map(lambda item: None, [0, 1])  # the parent's pool
        with warnings.catch_warnings():  # forking a process with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # the child: exit 0 if every item ran, within 20 s
            code = 1
            try:
                signal.alarm(20)
                seen: list[int] = []
                _threads.parallel_map(seen.append, list(range(8)))
                code = 0 if sorted(seen) == list(range(8)) else 1
            finally:
                os._exit(code)  # never back into pytest
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_replaced_pools_threads_end(pool_waits):
    def pool_threads():
        return {thread for thread in threading.enumerate() if thread.name.startswith("npconv-")}

    before = pool_threads()
    with using_threads(6):
        _threads.parallel_map(lambda item: None, range(6))
        new = pool_threads() - before
        assert len(new) == 5  # the caller is the sixth
    deadline = time.monotonic() + 10
    while any(thread.is_alive() for thread in new) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(thread.is_alive() for thread in new)


@pytest.mark.parametrize(("ratio", "pays"), [(1.0, False), (10.0, True)])
def test_sharing_pays_where_writing_what_another_core_read_costs(ratio, pays, monkeypatch):
    """Measured once per process: shared where overwriting what another core has just
    read costs more than WRITE_AFTER_READ plain copies; never on one thread."""
    measured = []
    monkeypatch.setattr(_threads, "_write_after_read", lambda: measured.append(1) or ratio)
    monkeypatch.setattr(_threads, "_sharing", {})
    with using_threads(2):
        assert [_threads.sharing_pays() for _ in range(3)] == [pays] * 3
        assert measured == [1]
        npconv.set_threads(1)
        assert not _threads.sharing_pays()


def test_write_after_read_is_a_ratio_of_times():
    assert 0.0 < _threads._write_after_read() < 1000.0


def test_threads_setting_round_trips_and_gives_the_same_result(rng):
    x = rng.standard_normal((4, 8, 40, 40)).astype(np.float32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    expected = npconv.conv(x, w, groups=8, algorithm="depthwise")
    old = npconv.set_threads(1)
    try:
        assert npconv.get_threads() == 1
        np.testing.assert_array_equal(npconv.conv(x, w, groups=8, algorithm="depthwise"), expected)
    finally:
        npconv.set_threads(old)
    assert npconv.get_threads() == old


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "set_threads: threads must be >= 1, got 0"),
        (1.5, TypeError, "set_threads: threads must be an int, got 1.5"),
    ],
)
def test_set_threads_errors(value, error, match):
    with pytest.raises(error, match=match):
        npconv.set_threads(value)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs"),
    [
        ((2, 64, 112, 112), (64, 64, 3, 3), dict(padding=1)),
        ((1, 144, 112, 112), (144, 1, 3, 3), dict(padding=1, groups=144)),
    ],
)
def test_auto_temporary_memory_is_bounded(x_shape, w_shape, kwargs):
    x = np.ones(x_shape, np.float32)
    w = np.ones(w_shape, np.float32)
    tracemalloc.start()
    try:
        y = npconv.conv(x, w, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - y.nbytes <= max(64 * 2**20, y.nbytes)


def peak_temporaries(run) -> tuple[np.ndarray, int]:
    """The result of ``run()`` and the peak bytes it allocated beyond the result."""
    tracemalloc.start()
    try:
        y = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return y, peak - y.nbytes


@pytest.mark.parametrize("algorithm", ["auto", *FORWARD])
def test_every_algorithm_keeps_its_memory_bound_or_refuses(algorithm):
    """Patches of 38 MiB, weight spectra of 70 MiB, a 6 GiB sparse matrix: each algorithm
    within its workspace (32 MiB) besides the padded input and one result-sized array."""
    x, w = np.ones((4, 64, 64, 64), np.float32), np.ones((64, 64, 3, 3), np.float32)
    if refuses_without_numba(algorithm, lambda: npconv.conv2d(x, w, algorithm=algorithm)):
        return
    if algorithm == "auto" or REGISTRY[algorithm].compiled:  # compiled first, not measured
        npconv.conv2d(x, w, padding=1, algorithm=algorithm)
    try:
        y, extra = peak_temporaries(lambda: npconv.conv2d(x, w, padding=1, algorithm=algorithm))
    except ValueError as err:  # naive: too many products; matrix: too many bytes
        assert re.search(r"more than its limit of [\d,]+", str(err)), err
        assert algorithm in ("naive", "matrix")
        return
    padded = 4 * 66 * 66 * 64 * 4  # the dispatch's padded copy of the input
    assert extra <= padded + WORKSPACE_BYTES + y.nbytes  # and one result-sized array
    assert extra <= max(64 * 2**20, y.nbytes)


def test_an_input_used_as_it_lies_is_not_split_into_blocks(rng):
    """22 MiB of unpadded float32 input, more than a block of the padded copy: as nothing
    is copied, one call computes the whole batch, and no block's result is copied."""
    x = rng.standard_normal((6, 64, 120, 120)).astype(np.float32)
    w = rng.standard_normal((16, 64, 1, 1)).astype(np.float32)
    y, extra = peak_temporaries(lambda: npconv.conv2d(x, w))
    assert extra < y.nbytes // 4  # blocks of 4 and 2 samples: 3.5 MiB
    ref = torch_conv(x, w, pads=[(0, 0), (0, 0)])
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_a_large_kernel_on_a_large_image_stays_within_the_bound():
    """auto takes fft here, whose whole-image weight spectra would take 171 MiB."""
    x, w = np.ones((1, 16, 384, 384), np.float32), np.ones((16, 16, 25, 25), np.float32)
    assert npconv.explain(x, w, padding=12).algorithm == "fft"
    y, extra = peak_temporaries(lambda: npconv.conv2d(x, w, padding=12))
    assert extra <= max(64 * 2**20, y.nbytes)
    ref = torch_conv(x[..., :40, :40], w, pads=[(12, 12)] * 2)  # the corner, its own borders
    assert_close(y[..., :28, :28], ref[..., :28, :28].astype(np.float32))


def test_every_estimate_is_positive_and_finite():
    for (x_shape, w_shape, kwargs), name in itertools.product(SHAPES, REGISTRY):
        spec = ConvSpec.build(x_shape, w_shape, **kwargs)
        for transposed in (False, True):
            if transposed or REGISTRY[name].fn is not None:
                seconds = choosing.estimate(name, spec, np.dtype(np.float32), 2, transposed)
                assert 0 < seconds < np.inf


@pytest.mark.parametrize("algorithm", ["im2col", "winograd", "depthwise", "fft"])
def test_large_problems_use_threads_and_match_torch(algorithm, rng):
    """Arrays of several MiB: the copies are split over two threads."""
    x = rng.standard_normal((2, 32, 64, 64)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    with using_threads(2):
        y = npconv.conv(x, w, padding=1, algorithm=algorithm)
    ref = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_the_thread_count_changes_estimates_not_results(rng):
    x = rng.standard_normal((2, 16, 12, 12))
    w = rng.standard_normal((16, 16, 3, 3))
    spec = ConvSpec.build(x.shape, w.shape, padding=1)
    one, two = (choosing.estimate("im2col", spec, np.dtype(np.float64), t) for t in (1, 2))
    assert two < one
    results = []
    for threads in (1, 2):
        with using_threads(threads):
            results.append(npconv.conv(x, w, padding=1))
    assert_close(results[0], results[1])
    assert_close(results[0], torch_conv(x, w, pads=[(1, 1), (1, 1)]))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"algorithms": []}, ValueError, r"tune: algorithms is empty"),
        ({"algorithms": "im2col"}, TypeError, r"tune: algorithms must be a list .* 'im2col'"),
        ({"algorithm": "im2col"}, TypeError, r"tune: .* algorithms=\['im2col'\]"),
    ],
)
def test_tune_names_a_wrong_algorithms_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        npconv.tune(np.ones((1, 1, 5)), np.ones((1, 1, 3)), **kwargs)
