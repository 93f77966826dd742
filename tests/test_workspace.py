"""Reused workspaces: PyTorch's results, call after call, thread by thread.

The temporaries of a convolution live in per-thread buffers kept between calls
(:mod:`npconv._workspace`); these tests check that reusing them across shapes, dtypes,
algorithms and threads never changes a result, and that results never share memory
with each other or with the buffers.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import npconv
from npconv import _workspace
from npconv._jit import unavailable
from npconv._threads import even_runs

from conftest import assert_close, torch_conv, using_threads

#: (N, C, O, kernel, stride, padding, size, groups, dtype): shapes that grow, shrink and
#: change dtype from one call to the next, so that every buffer is both grown and reused.
CASES = [
    (2, 8, 16, 3, 1, 1, 20, 1, np.float32),
    (1, 4, 6, 3, 2, 1, 33, 2, np.float64),
    (3, 16, 8, 1, 1, 0, 12, 1, np.float32),
    (1, 3, 8, 5, 2, 2, 40, 1, np.complex128),
    (2, 6, 6, 3, 1, 2, 9, 3, np.int64),
    (1, 8, 8, 3, 1, 1, 50, 1, np.float64),
]
ALGORITHMS = ["auto", "im2col", "winograd", "shifted"]


def _case(rng: np.random.Generator, case: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, c, o, k, _, _, size, g, dtype = case
    shapes = [(n, c, size, size), (o, c // g, k, k), (o,)]
    if np.dtype(dtype).kind == "i":
        return tuple(rng.integers(-9, 10, shape).astype(dtype) for shape in shapes)  # type: ignore[return-value]
    arrays = [rng.standard_normal(shape) for shape in shapes]
    if np.dtype(dtype).kind == "c":
        arrays = [a + 1j * rng.standard_normal(a.shape) for a in arrays]
    return tuple(a.astype(dtype) for a in arrays)  # type: ignore[return-value]


def _conv(case: tuple, x, w, b, algorithm: str, layout: str) -> np.ndarray:
    """npconv's result in NCHW, computed in ``layout``."""
    stride, padding, groups = case[4], case[5], case[7]
    if layout == "NCHW":
        return npconv.conv2d(
            x, w, b, stride=stride, padding=padding, groups=groups, algorithm=algorithm
        )
    y = npconv.conv2d(
        x.transpose(0, 2, 3, 1),
        w.transpose(2, 3, 1, 0),
        b,
        stride=stride,
        padding=padding,
        groups=groups,
        algorithm=algorithm,
        layout="NHWC",
    )
    return y.transpose(0, 3, 1, 2)


def _usable(algorithm: str, case: tuple) -> bool:
    """Whether ``algorithm`` takes ``case`` (winograd: 3x3 at most, not exact for ints)."""
    return algorithm != "winograd" or (case[3] <= 3 * case[4] and case[8] is not np.int64)


def _check(actual: np.ndarray, expected: np.ndarray, algorithm: str) -> None:
    """PyTorch's result; winograd within its stated error (10x a direct algorithm's)."""
    if algorithm == "winograd" and actual.dtype.kind == "f":
        scale = max(float(np.abs(expected).max()), 1.0)
        tol = {np.float32: 1e-4, np.float64: 1e-9}[actual.dtype.type]
        assert float(np.abs(actual - expected).max()) <= tol * scale
    else:
        assert_close(actual, expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reused_buffers_give_pytorch_results(algorithm: str, layout: str) -> None:
    """Calls of different shapes and dtypes in turn, twice over: each result is
    PyTorch's, stays unchanged by the later calls, and shares memory with none of them."""
    rng = np.random.default_rng(7)
    operands = [_case(rng, case) for case in CASES]
    copies = [tuple(a.copy() for a in ops) for ops in operands]
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _ in range(2):
        for case, (x, w, b) in zip(CASES, operands):
            if not _usable(algorithm, case):
                continue
            y = _conv(case, x, w, b, algorithm, layout)
            expected = torch_conv(
                x, w, b, stride=case[4], pads=[(case[5], case[5])] * 2, groups=case[7]
            )
            _check(y, expected.astype(y.dtype) if y.dtype.kind == "i" else expected, algorithm)
            results.append((y, y.copy(), expected))
    for i, (y, snapshot, _) in enumerate(results):
        np.testing.assert_array_equal(y, snapshot)  # no later call wrote into it
        assert not any(np.shares_memory(y, other) for other, _, _ in results[i + 1 :])
    for ops, before in zip(operands, copies):
        for a, a0 in zip(ops, before):
            np.testing.assert_array_equal(a, a0)  # inputs never modified


def test_threads_have_their_own_buffers() -> None:
    """Several threads convolving different shapes at once all get PyTorch's results."""
    rng = np.random.default_rng(3)
    jobs = [(case, _case(rng, case)) for case in CASES if case[8] is not np.int64] * 3
    expected = [
        torch_conv(x, w, b, stride=c[4], pads=[(c[5], c[5])] * 2, groups=c[7])
        for c, (x, w, b) in jobs
    ]
    start = threading.Barrier(4, timeout=120)

    def job(i: int) -> np.ndarray:
        case, (x, w, b) = jobs[i]
        if i < 4:
            start.wait()  # the first four, on four threads, start together
        return _conv(case, x, w, b, ALGORITHMS[i % 4], "NCHW" if i % 2 else "NHWC")

    with ThreadPoolExecutor(4) as pool:
        ys = list(pool.map(job, range(len(jobs))))
    for i, (y, want) in enumerate(zip(ys, expected)):
        _check(y, want, ALGORITHMS[i % 4])
    assert not any(np.shares_memory(a, b) for i, a in enumerate(ys) for b in ys[i + 1 :])


def test_buffers_stay_within_their_bound_and_free() -> None:
    """A thread keeps at most KEPT_BYTES; free_workspaces releases them; results hold."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 32, 96, 96)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    y = npconv.conv2d(x, w, padding=1, algorithm="im2col")
    assert 0 < _workspace.kept_bytes() <= _workspace.KEPT_BYTES
    big = _workspace.buffer("test", (_workspace.KEPT_BYTES // 4 + 1,), np.float32)
    assert big.size == _workspace.KEPT_BYTES // 4 + 1  # beyond the bound: a fresh array
    assert _workspace.kept_bytes() <= _workspace.KEPT_BYTES
    npconv.free_workspaces()
    assert _workspace.kept_bytes() == 0
    assert_close(y, torch_conv(x, w, pads=[(1, 1)] * 2))
    assert_close(npconv.conv2d(x, w, padding=1, algorithm="im2col"), y)


def test_object_buffers_are_fresh() -> None:
    """Python-int (object) temporaries are never views of a byte buffer."""
    a = _workspace.buffer("test", (3,), object)
    b = _workspace.buffer("test", (3,), object)
    a[:] = [1, 2, 3]
    assert b.dtype == object and not np.shares_memory(a, b)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_patch_matrices_in_reused_buffers_give_pytorch_results(layout: str) -> None:
    """im2col's patch matrices, copied into the thread's buffer call after call."""
    rng = np.random.default_rng(11)
    for case in CASES:
        x, w, b = _case(rng, case)
        y = _conv(case, x, w, b, "im2col", layout)
        expected = torch_conv(
            x, w, b, stride=case[4], pads=[(case[5], case[5])] * 2, groups=case[7]
        )
        assert_close(y, expected.astype(y.dtype) if y.dtype.kind == "i" else expected)


def _same(copy: np.ndarray, source: np.ndarray) -> bool:
    """Whether a kept array's check finds ``source`` equal to its ``copy``."""
    return _workspace.Claim("a source", source, *_workspace._comparable(copy, source)).verify()


#: Views of a weight as the kept arrays' sources may be: as made, transposed (a
#: channels-last view), reversed, strided, broadcast, Fortran-ordered.
VIEWS = {
    "contiguous": lambda a: a,
    "transposed": lambda a: a.transpose(2, 3, 1, 0),
    "reversed": lambda a: a[::-1, :, ::-1],
    "strided": lambda a: a[:, ::2],
    "broadcast": lambda a: np.broadcast_to(a[:1], a.shape),
    "fortran": lambda a: np.asfortranarray(a),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.int64])
@pytest.mark.parametrize("view", VIEWS)
def test_kept_sources_are_compared_bit_for_bit(view: str, dtype: type) -> None:
    """A source equals its copy (NaN included) until one of its values changes, a bit
    at a time too (0.0 to -0.0, another NaN), as NumPy's comparison of the bits says;
    views that fill their memory are compared by the compiled pass (where numba is
    installed), the others by NumPy."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((6, 4, 3, 3)).astype(dtype)
    if base.dtype.kind == "f":
        base[1, 2, 0, 1], base[0, 0, 0, 0] = np.nan, 0.0
    source = VIEWS[view](base)
    copy = np.array(source, order="K")
    assert _workspace._dense(source) == (view not in ("strided", "broadcast"))  # compiled
    assert _same(copy, source)
    bits = f"u{base.dtype.itemsize}"
    one = np.ones((), bits)  # NumPy 1.26 promotes uint64 ^ 1 to float64
    changes = [lambda a: a.__setitem__((0, 0, 0, 0), a[0, 0, 0, 0] + 1)]
    if base.dtype.kind == "f":
        changes += [
            lambda a: a.__setitem__((0, 0, 0, 0), -0.0),  # equal as a value, not as bits
            lambda a: a.view(bits).__setitem__((1, 2, 0, 1), a.view(bits)[1, 2, 0, 1] ^ one),
        ]
    for change in changes:
        changed = base.copy()
        change(changed)
        other = VIEWS[view](changed)
        expected = np.array_equal(copy.view(bits), other.view(bits))
        assert _same(copy, other) == expected
        assert not expected or view in ("strided", "broadcast")  # those may miss the change


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("where", [None, 0, 700, 1399])
def test_kept_sources_compared_in_parts_on_the_threads(
    threads: int, where: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large source is compared in a part per thread (here every source): a change in
    any part, its first value or its last, is found; none, and the source is equal."""
    monkeypatch.setattr(_workspace, "SHARED_CHECK_BYTES", 0)
    source = np.random.default_rng(3).standard_normal((1400,)).astype(np.float32)
    copy = np.array(source, order="K")
    if where is not None:
        source[where] = np.nextafter(source[where], np.float32(np.inf))  # one bit apart
    with using_threads(threads):
        assert _same(copy, source) == (where is None)
    claimed = _workspace.Claim("a source", source, *_workspace._comparable(copy, source))
    for parts in (1, 2, 3):  # a caller's parts: only the one holding the change differs
        runs = [range(a, z) for a, z in even_runs(len(source), parts)]
        if unavailable() is not None:  # without numba, part 0 compares them all
            runs = [range(len(source))] + [range(0)] * (parts - 1)
        held = [claimed.holds(part, parts) for part in range(parts)]
        assert held == [where not in run for run in runs]


def test_a_changed_source_is_not_confused_with_a_later_array_of_its_identity() -> None:
    """A source seen to change is known by its owner, views included, and a later array
    that Python gives the same ``id`` (the first one freed) is not taken for it."""
    source = np.ones((4, 4))
    _workspace._changed(_workspace._key("a source", source), source)
    assert _workspace.changing(source) and _workspace.changing(source[1:, ::-1])
    del source
    later = [np.ones((4, 4)) for _ in range(200)]  # CPython likely reuses its id
    assert not any(_workspace.changing(a) for a in later)


def test_only_views_of_bytes_are_immutable() -> None:
    """A read-only view of a ``bytes`` object (onnx's initializers) can never change, and
    cannot be made writeable; a read-only array that owns its memory, or a read-only
    view of a writeable one, can."""
    values = np.arange(12, dtype=np.float32)
    frozen = np.frombuffer(values.tobytes(), np.float32).reshape(3, 4)
    assert _workspace.immutable(frozen) and _workspace.immutable(frozen[:, ::-1])
    with pytest.raises(ValueError, match="WRITEABLE"):
        frozen.flags.writeable = True
    owning = values.copy()
    owning.flags.writeable = False
    view = values[::2]
    view.flags.writeable = False
    assert not any(_workspace.immutable(a) for a in (values, owning, view))
    owning.flags.writeable = True  # an owner can be written again
    owning[0] = 1


@pytest.mark.parametrize("algorithm", ["winograd_jit", "winograd_rows_jit", "blocked_jit"])
def test_what_is_kept_for_immutable_weights_is_not_compared(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights that cannot change keep their derived array without a copy, and later
    calls use it without comparing them (a comparison would fail here); PyTorch's result
    every time. Without numba the compiled algorithms decline, and nothing is kept."""
    rng = np.random.default_rng(7)
    npconv.free_workspaces()
    x = rng.standard_normal((2, 8, 12, 12))
    w = rng.standard_normal((6, 8, 3, 3))
    frozen = np.frombuffer(w.tobytes(), w.dtype).reshape(w.shape)
    expected = torch_conv(x, w, pads=[(1, 1), (1, 1)])
    if unavailable() is not None:
        with pytest.raises(ValueError, match="numba"):
            npconv.conv(x, frozen, padding=1, algorithm=algorithm)
        return
    for call in range(4):
        if call == 2:  # kept since the second call: no copy, never compared from now on
            ((_, copy, value),) = _workspace._derived.values()
            assert copy is None and value.nbytes == _workspace._derived_bytes()
            monkeypatch.setattr(_workspace, "_comparable", None)
            monkeypatch.setattr(_workspace, "equal_bits", None)
        y = npconv.conv(x, frozen, padding=1, algorithm=algorithm)
        assert_close(y, expected)
    npconv.free_workspaces()


def test_release_drops_what_is_kept_for_a_source_only() -> None:
    """``release`` forgets every array kept for a source (any name, any view of its
    owner) and that it was seen, so that an array is kept for it again from the second
    call after; what is kept for another source stays."""
    npconv.free_workspaces()
    rng = np.random.default_rng(9)
    source, other = rng.standard_normal((2, 4, 4)), rng.standard_normal((4, 4))
    for name, array in (("a", source), ("b", source[::-1]), ("a", other)):
        assert _workspace.claim(name, array) == (None, False)  # seen
        assert _workspace.claim(name, array) == (None, True)  # may be kept now
        _workspace.keep(name, array, 2 * array)
    _workspace.release(source[1])  # a view of the owner
    assert _workspace.kept("a", source) == (None, False)  # seen afresh, not kept
    assert _workspace.kept("a", source) == (None, True)
    assert _workspace.kept("b", source[::-1]) == (None, False)
    value, _ = _workspace.kept("a", other)
    np.testing.assert_array_equal(value, 2 * other)
    npconv.free_workspaces()
