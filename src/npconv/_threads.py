"""The threads setting: how many cores npconv's stages, FFTs and BLAS use.

FFTs run in ``scipy.fft``'s workers.  npconv's own stages run on the calling thread
and a pool of its own threads (:func:`parallel_map`), one per other core, each pinned
to its core: the chunks of an algorithm (patch matrices and their GEMMs, Winograd
tiles, depthwise blocks) are shared out among them, each thread copying into its own
buffers and multiplying them by single-threaded BLAS calls.  On the 2-core AMD EPYC
virtual machines measured, writing memory that the other core had read last cost
5-10x a plain copy: a patch matrix copied by the calling thread, then read by
OpenBLAS's two threads, took 1.9 against 0.17 ms to copy again (10 images of
32x32x8); threads that migrate between cores pay the same, hence the pinning.  Shared
out so, the 3x3 layers of the notes and a 64-channel layer at batch 8 ran 2-6x faster
than by one copy and a two-thread GEMM.  Where that copy costs no more (the Intel Xeon
machines measured: 0.21 ms either way), a two-thread GEMM of a whole chunk is faster
than two single-threaded halves, and an ONNX ResNet-50 ran in 71 against 104 ms with
im2col's chunks in turn on the calling thread: :func:`sharing_pays` measures which
kind of machine this is, once per process.

Between parallel regions the pool's threads spin for :data:`SPIN_SECONDS` before they
sleep, as OpenMP's threads do: waking a sleeping thread, and a thread waiting for the
GIL, took 40-50 us on the Intel Xeon virtual machine measured, so that a region of two
90 us shares took 208 us with a pool of sleeping threads and 117 us with this one.
For the same reason a region's caller leaves the GIL to the thread that took up the
region until that thread has called its first compiled kernel (:data:`HANDOFF_SECONDS`).
:func:`set_threads` sets every count; the default is every core (``os.cpu_count()``).
It changes how npconv runs, never what it computes: the cost model that "auto"
consults takes the thread count as an input, so the choice of algorithm may differ
between counts, and every algorithm gives the same result up to its stated rounding
error.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, TypeVar

import numpy as np

from ._jit import entering, kernel, load_acquire, pause, store_release, unavailable

__all__ = [
    "blas_ran_in_turn",
    "blas_spinning",
    "even_runs",
    "get_threads",
    "parallel_map",
    "runs_alone",
    "set_threads",
    "sharing_pays",
    "single_threaded_blas",
]

T = TypeVar("T")
_state: dict[str, object] = {"threads": os.cpu_count() or 1, "pool": None}
_lock = threading.Lock()  # guards the swap of the pool against submissions to it
_local = threading.local()  # ``in_pool``: set in the pool's own threads
#: The OpenBLAS libraries' thread count functions (:func:`_openblas`), how many parallel
#: regions run with single-threaded BLAS now, the counts to restore after the last, and
#: until when OpenBLAS's threads likely spin (:func:`blas_spinning`).
_blas: dict[str, Any] = {"controllers": None, "regions": 0, "saved": [], "spinning_until": 0.0}
_blas_lock = threading.Lock()
#: How many times a plain copy's time a copy may take that overwrites memory which
#: another core has just read, before chunks are shared among the threads
#: (:func:`sharing_pays`): 0.9-1.0 measured on the Intel Xeon machines, 5-10 on the AMD
#: EPYC (Zen 4) ones.  On the Zen 3 one, 1.1-1.4, but for spells of a second or two,
#: about one in five, of 2.5-5 (80 measurements 0.5 s apart, in one process): a ratio
#: of 2 made one process in four share its chunks, whose ONNX ResNet-50 ran 1.1-1.5x
#: slower than in turn.
WRITE_AFTER_READ = 4.0
_sharing: dict[str, bool] = {}


def even_runs(total: int, parts: int) -> list[tuple[int, int]]:
    """``range(total)`` cut into ``parts`` runs ``(start, stop)`` whose lengths differ by at
    most one: the threads' shares of a region, or chunks as even as they go."""
    cuts = [i * total // parts for i in range(parts + 1)]
    return list(itertools.pairwise(cuts))


def get_threads() -> int:
    """The number of threads npconv uses.

    Examples
    --------
    >>> import npconv
    >>> npconv.get_threads() >= 1
    True
    """
    return int(_state["threads"])  # type: ignore[call-overload]


def set_threads(threads: int) -> int:
    """Use ``threads`` threads for npconv's own stages, FFTs and BLAS; return the old count.

    Parameters
    ----------
    threads : int
        Number of threads, >= 1.  BLAS is limited to the same count through
        ``threadpoolctl`` (for the BLAS libraries loaded in the process).

    Returns
    -------
    int
        The previous setting, so that a caller can restore it.

    Raises
    ------
    TypeError
        ``threads`` is not an int.
    ValueError
        ``threads`` is smaller than 1.

    Examples
    --------
    >>> import npconv
    >>> old = npconv.set_threads(1)
    >>> npconv.get_threads()
    1
    >>> _ = npconv.set_threads(old)
    """
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise TypeError(f"set_threads: threads must be an int, got {threads!r}")
    if threads < 1:
        raise ValueError(f"set_threads: threads must be >= 1, got {threads}")
    from threadpoolctl import threadpool_limits

    with _blas_lock:  # a parallel region restores this count when it ends
        threadpool_limits(limits=1 if _blas["regions"] else threads, user_api="blas")
        _blas["saved"] = [threads] * len(_blas["saved"])
    with _lock:  # no parallel_map is taking the pool being replaced
        old, pool = get_threads(), _state["pool"]
        _state.update(threads=threads, pool=None)
    if isinstance(pool, _Pool):
        pool.close()  # its running region ends, then its threads
    return old


def _cpus() -> list[int]:
    """The cores this process may run on (Linux; elsewhere none are named)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@kernel
def _wait_for(flags, index, value, spins):
    """Spin until ``flags[index] == value`` (True) or for ``spins`` rounds (False)."""
    for _ in range(spins):
        if load_acquire(flags, index) == value:
            return True
        pause()
    return load_acquire(flags, index) == value


@kernel
def _signal_then_wait(signal, index, value, flags, awaited, spins):
    """``signal[index] = value`` (after every write this thread made before), then
    :func:`_wait_for` ``flags[index] == awaited``: one call, so that the GIL, released
    for it, is not asked for in between."""
    store_release(signal, index, value)
    return _wait_for(flags, index, awaited, spins)


@kernel
def _start(go, ack, entered, index, number, spins, handoff, release):
    """Start region ``number`` on pool thread ``index``: :func:`_signal_then_wait` for it
    to take the region up (``go``, ``ack``: False if it did not), then wait until it
    calls its first kernel (``entered``, at most ``handoff`` rounds) and ``release``
    rounds more, leaving it the GIL: one call, which does not ask for it."""
    if not _signal_then_wait(go, index, number, ack, number, spins):
        return False
    if _wait_for(entered, index, number, handoff):
        for _ in range(release):
            pause()
    return True


#: How long npconv's threads keep spinning for the next parallel region after one ends
#: (and the caller, for a thread to take up a region) before sleeping until woken: the
#: back-to-back regions of a network's layers then start and end without waking a
#: sleeping thread, which took 40-50 us on the Intel Xeon virtual machine measured.
SPIN_SECONDS = 2e-4
#: How long a caller leaves the GIL to a thread that has just taken up its region, so
#: that the thread's Python code (calling its first item's kernel) and the caller's do
#: not wait for each other: until the thread calls its first compiled kernel (or says
#: it is about to let the GIL go, :func:`npconv._jit.letting_go`), then for
#: :data:`RELEASE_SECONDS` while numba's dispatch lets the GIL go; at most this long.
#: Where the caller asked for the GIL while the thread still held it, it slept until
#: woken, 30-45 us later on this virtual machine.  Against a fixed 10 us (medians of
#: five alternating processes, 2 cores, ms): 3x3 64->64 @56 b1 0.66 against 0.74,
#: 128->128 @28 b1 0.79 against 0.83; the short regions of depthwise 144 @56 b1 0.180
#: against 0.176, 384 @14 b1 0.067 both (a fixed 30 us: 0.64 on 64->64, but 0.083 on
#: 384 @14).
HANDOFF_SECONDS = 4e-5
#: How long after a pool thread calls its first kernel its caller still waits: numba's
#: dispatch of the call, before the kernel lets the GIL go (with 2 us, one process in
#: four ran a depthwise 144 @56 b1 at 0.20-0.24 against 0.17 ms).
RELEASE_SECONDS = 8e-6

_measured: dict[str, float] = {}


def _spin_seconds() -> float:
    """Seconds of one round of :func:`_wait_for` (measured once per process), or 0
    without numba: the threads then sleep at once."""
    if "round" not in _measured:
        if unavailable() is not None:
            _measured["round"] = 0.0
        else:
            never = np.zeros(1, np.int64)
            _wait_for(never, 0, 1, 1)  # compiled (or loaded from numba's cache) first
            start = time.perf_counter()
            _wait_for(never, 0, 1, 2**14)
            _measured["round"] = max(time.perf_counter() - start, 1e-9) / 2**14
    return _measured["round"]


#: A parallel region: its function, its items, the indices of the items not yet taken
#: and the errors ``(index, error)`` of the items that failed.
_Errors = list[tuple[int, BaseException]]
_Region = tuple[Callable[[Any], object], Sequence[Any], Iterator[int], _Errors]
#: The region between two: no items (a finished one's would keep its arrays alive).
_IDLE: _Region = (lambda item: None, [], iter(()), [])


class _Pool:
    """``threads - 1`` threads, each pinned to one of the process's cores, which run the
    items of a parallel region together with the thread that calls :meth:`map`.

    A region is numbered: the caller publishes its number in ``go``, every thread
    acknowledges it in ``ack``, takes items until none is left and publishes the number
    in ``done``.  Where numba is installed and the threads do not outnumber the cores,
    they wait by spinning (numba code, without the GIL): between regions for
    :data:`SPIN_SECONDS`, then they sleep on a condition until woken.  Otherwise every
    wait sleeps on the condition.  One region runs at a time: a caller that finds the
    pool busy runs its items itself.
    """

    def __init__(self, threads: int) -> None:
        cpus = _cpus()
        cores = len(cpus) or os.cpu_count() or 1
        rounds = _spin_seconds() if threads <= cores else 0.0
        self.spins = int(SPIN_SECONDS / rounds) if rounds else 0
        self.handoff = int(HANDOFF_SECONDS / rounds) if rounds else 0
        self.release = int(RELEASE_SECONDS / rounds) if rounds else 0
        self.workers = threads - 1
        self.go, self.ack, self.done, self.entered = np.zeros((4, self.workers), np.int64)
        self.asleep = [False] * self.workers
        self.changed = threading.Condition()
        self.lock = threading.Lock()  # held by the caller of the running region
        self.region: _Region = _IDLE
        self.number = 0
        self.closed = False
        for k in range(self.workers):
            cpu = cpus[-1 - k % len(cpus)] if len(cpus) > 1 else None
            name = f"npconv-{k}"
            threading.Thread(target=self._serve, args=(k, cpu), name=name, daemon=True).start()

    def _serve(self, k: int, cpu: int | None) -> None:
        """Thread ``k``: run the items of every region until the pool is closed."""
        _local.in_pool = True
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        number = 0
        while True:
            # region `number` is done: say so, and wait for the next
            if self.spins:
                if not _signal_then_wait(self.done, k, number, self.go, number + 1, self.spins):
                    self._sleep_until(self.go, k, number + 1)
            else:
                with self.changed:
                    self.done[k] = number
                    self.changed.notify_all()
                self._sleep_until(self.go, k, number + 1)
            if self.go[k] != number + 1:  # closed
                return
            number += 1
            self.ack[k] = number
            entering.hook = partial(self.entered.__setitem__, k, number)
            self._take(self.region)
            entering.hook = None

    def _sleep_until(self, flags: np.ndarray, k: int, value: int) -> None:
        """Sleep until ``flags[k] == value`` or the pool is closed."""
        with self.changed:
            self.asleep[k] = True
            while flags[k] != value and not self.closed:
                self.changed.wait()
            self.asleep[k] = False

    @staticmethod
    def _take(region: _Region) -> None:
        """Run the region's items that no other thread has taken; keep their errors."""
        fn, items, taken, errors = region
        for index in taken:
            if index >= len(items):
                return
            try:
                fn(items[index])
            except BaseException as error:  # re-raised by the caller
                errors.append((index, error))

    def map(self, fn: Callable[[T], object], items: Sequence[T]) -> bool:
        """Run ``fn`` on every item on the pool's threads and the caller's; False (nothing
        run) where the pool is busy or closed."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.closed:
                return False
            errors: _Errors = []
            self.region = (fn, items, itertools.count(), errors)
            self.number += 1
            number = self.number
            waits = (self.spins, self.handoff, self.release)
            for k in range(self.workers):
                # a spinning thread takes the GIL and its first item, then the caller does
                if self.spins and not self.asleep[k]:
                    if _start(self.go, self.ack, self.entered, k, number, *waits):
                        continue
                with self.changed:  # it sleeps, or fell asleep as the region began
                    self.go[k] = number
                    self.changed.notify_all()
            _local.in_pool = True
            try:
                self._take(self.region)
            finally:
                _local.in_pool = False
            for k in range(self.workers):
                if self.spins:  # in slices, between which an interrupt gets through
                    while not _wait_for(self.done, k, number, self.spins):
                        pass
                else:
                    with self.changed:
                        while self.done[k] != number:
                            self.changed.wait()
        finally:
            self.region = _IDLE  # holds no items, nor what ``fn`` refers to, past the region
            self.lock.release()
        if errors:
            raise min(errors, key=lambda error: error[0])[1]
        return True

    def close(self) -> None:
        """End the threads once the running region, if any, has ended."""
        with nullcontext() if getattr(_local, "in_pool", False) else self.lock:
            self.closed = True
        with self.changed:
            self.changed.notify_all()


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=lambda: _state.update(pool=None))


def _pool() -> _Pool:
    """The pool of :func:`get_threads` threads (created on first use; the caller holds
    ``_lock``)."""
    if _state["pool"] is None:
        _state["pool"] = _Pool(get_threads())
    return _state["pool"]  # type: ignore[return-value]


def _openblas() -> list[tuple[Any, Any]]:
    """``(get, set)`` of the thread count of every OpenBLAS with a process-wide pool
    (NumPy's and SciPy's wheels), called directly: threadpoolctl lets only the first
    thread that set a limit change it, and npconv's callers may be any thread."""
    from threadpoolctl import ThreadpoolController

    found = []
    for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers:
        if lib.threading_layer == "openmp":  # per-thread limits: not shared by the pool
            continue
        dll = ctypes.CDLL(lib.filepath)
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            get = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                put.argtypes = [ctypes.c_int]
                found.append((get, put))
                break
    return found


#: How long OpenBLAS's threads keep spinning after a multi-threaded call before they
#: sleep: its default timeout, 2**28 processor cycles (0.1 s at 2.7 GHz).
BLAS_SPIN_SECONDS = 0.1


def blas_ran_in_turn() -> None:
    """Note that a BLAS call on every thread has just returned (an algorithm's GEMMs run
    in turn with multi-threaded BLAS), so that :func:`blas_spinning` knows."""
    if get_threads() > 1:
        _blas["spinning_until"] = time.perf_counter() + BLAS_SPIN_SECONDS


def blas_spinning() -> bool:
    """Whether npconv ran multi-threaded BLAS less than :data:`BLAS_SPIN_SECONDS` ago, so
    that OpenBLAS's threads likely spin still, on the cores that npconv's threads would
    take: a parallel region of a few short shares then waits for a thread that the
    scheduler keeps off its core (a `winograd_jit` layer at batch 1 after a 1x1 one, in
    a ResNet-50: 1.8-2.7 ms against 0.84-1.7 alone, preempted 3-6 times a call)."""
    return time.perf_counter() < _blas["spinning_until"]


def runs_alone(batch: int) -> bool:
    """Whether a forward convolution of ``batch`` samples, fewer than the threads, runs
    on the calling thread alone (its shares in turn) instead of sharing a sample among
    npconv's threads, because OpenBLAS's threads likely spin still (:func:`blas_spinning`):
    there the scheduler keeps the other threads' shares waiting, and npconv's threads,
    spinning after the region, then slow the multi-threaded GEMMs that follow.  At batch
    1 with 2 threads, each layer timed where it ran: in an ONNX ResNet-50, whose 1x1
    layers run before each 3x3 one, `winograd_jit`'s 3x3 128->128 @28 layers took
    1.55-1.72 against 2.35-4.69 ms; in MobileNetV2's seven kinds of blocks (1x1, 3x3
    depthwise, 1x1), run one after another, `depthwise_jit`'s layers took 1.25-1.32
    against 1.34-1.41 ms together and the whole sequence 3.5-3.7 against 4.75-4.95 ms."""
    return batch < get_threads() and blas_spinning()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """OpenBLAS limited to one thread while the block runs (regions may overlap, in any
    threads; the thread counts are restored when the last one ends).

    Around a parallel region's preparation too: a multi-threaded BLAS call wakes
    OpenBLAS's threads, which then spin for a while on the cores that npconv's pinned
    threads run on (a Winograd layer's filters transformed on two threads made its
    chunks that followed 1.3-1.8x slower: 3x3 64->64 @56 at batch 8, 7.9-10.9 against
    5.5-6.3 ms, one process)."""
    with _blas_lock:
        if _blas["controllers"] is None:
            _blas["controllers"] = _openblas()
        if _blas["regions"] == 0:
            _blas["saved"] = [get() for get, _ in _blas["controllers"]]
            for _, put in _blas["controllers"]:
                put(1)
        _blas["regions"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["regions"] -= 1
            if _blas["regions"] == 0:
                for (_, put), count in zip(_blas["controllers"], _blas["saved"]):
                    put(count)


def _on_cpu(cpu: int, fn: Callable[[], T]) -> T:
    """``fn()`` called on a new thread pinned to ``cpu``."""
    result: list[T] = []

    def run() -> None:
        os.sched_setaffinity(0, {cpu})
        result.append(fn())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def _write_after_read() -> float:
    """How many times longer a core takes to overwrite 3 MiB that another core has just
    read than to overwrite them again: the median of seven such pairs (1.0 with one
    core), so that one copy slowed by something else does not decide.

    The cores are two threads of its own, not BLAS: a multi-threaded GEMM here would
    leave OpenBLAS's threads spinning into the caller's first parallel regions."""
    cpus = _cpus()
    if len(cpus) < 2:
        return 1.0
    data = np.ones(3 * 2**18, np.float32)
    source = np.ones_like(data)

    def write_twice() -> float:
        start = time.perf_counter()
        np.copyto(data, source)
        middle = time.perf_counter()
        np.copyto(data, source)
        return (middle - start) / max(time.perf_counter() - middle, 1e-9)

    ratios = []
    for _ in range(7):
        _on_cpu(cpus[0], data.sum)
        ratios.append(_on_cpu(cpus[-1], write_twice))
    return statistics.median(ratios)


def sharing_pays() -> bool:
    """Whether an algorithm's chunks should be shared among npconv's threads
    (:func:`parallel_map` with single-threaded BLAS) rather than run in turn on the
    calling thread with multi-threaded BLAS.

    Sharing pays where a core overwriting what another core has just read takes more
    than :data:`WRITE_AFTER_READ` times a plain copy, as measured once per process (a
    few milliseconds, on the first call with more than one thread).  The answer changes
    how npconv runs, never what it computes.
    """
    if get_threads() == 1:
        return False
    if "pays" not in _sharing:
        _sharing["pays"] = _write_after_read() > WRITE_AFTER_READ
    return _sharing["pays"]


def parallel_map(fn: Callable[[T], object], items: Sequence[T], blas: bool = False) -> None:
    """Call ``fn`` on every item, on the calling thread and the pool's ``get_threads() - 1``
    pinned threads, each taking the next item until none is left; re-raise the error of
    the first item that failed, after every item has run.

    With ``blas``, the items' BLAS calls run single-threaded, each on its item's thread
    (BLAS is limited to one thread for the duration, for every caller in the process).
    Runs on the calling thread alone when there is one thread, one item, when called
    from an item, or while another thread's region runs.  Safe while another thread
    calls :func:`set_threads`: a replaced pool finishes its region, then its threads end.
    """
    if get_threads() <= 1 or len(items) <= 1 or getattr(_local, "in_pool", False):
        for item in items:
            fn(item)
        return
    with single_threaded_blas() if blas else nullcontext():
        with _lock:
            pool = _pool()
        if not pool.map(fn, items):  # busy with another caller's region
            for item in items:
                fn(item)
