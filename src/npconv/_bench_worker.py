"""One measurement of ``npconv bench``, run in a fresh interpreter of its own.

``python -m npconv._bench_worker`` reads a job (JSON) on stdin and writes its result
(JSON) as the last line of stdout.  A job times one contender on one layer, or
describes the machine; every worker builds the same arrays from the same seed and
uses the thread count it is given (:func:`npconv.set_threads`, and
``torch.set_num_threads`` for PyTorch).  A process of its own per contender keeps one
library's thread pool (OpenBLAS's or PyTorch's OpenMP threads, which spin for a while
after each call) from taking cores from the next contender.

Jobs (``kind``):

* ``"forward"``: ``npconv.conv`` with ``contender`` as the algorithm, or ``"torch"``
  (``torch.nn.functional.conv{1,2,3}d``) or ``"scipy"`` (``scipy.signal.correlate``);
* ``"backward"``: ``npconv.grad.conv_backward`` (input and weight gradients) or
  ``"torch"`` (``torch.autograd.grad`` of the forward convolution, graph kept);
* ``"machine"``: library versions, BLAS kernels and the float32 GEMM peak.

A timed job returns the first call's seconds (in this fresh process: imports already
done, arrays built, so compile and first-use costs), the median of ``repeats`` calls
after warm-up calls (at least :data:`WARM_CALLS`, or as many as fill
:data:`TIMED_SECONDS`, and for layers faster than that a call, as many timed), and
minor page faults per steady call (:func:`_steady_faults`); ``auto`` also its choice
and its peak temporary bytes.  With ``warm_allocator``, the
worker first frees a large block (:func:`warm_allocator`), so that temporaries are
served as in a process that has been working with large arrays for a while, not from
fresh pages.  A contender that cannot run the layer returns ``{"unsupported": reason}``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from importlib import metadata
from typing import Any

import numpy as np

from ._api import conv
from ._autotune import explain, median_seconds
from ._bench_suites import Case
from ._choose import gradient_choices
from ._operands import compute_dtypes
from ._threads import get_threads, set_threads
from ._workspace import free_workspaces
from .grad import conv_backward

__all__ = ["measure"]

#: Contenders whose second call takes longer are not repeated (that call's time is reported).
SLOW_SECONDS = 3.0
#: Seconds of warm-up calls, and of calls timed, at least: a fast layer's first calls are
#: slower than its later ones, for PyTorch as for npconv (MobileNetV2's 3x3 384 @14:
#: calls 3-9 took 80-99 us with PyTorch and 75-97 with npconv, later calls 76 and 68;
#: `winograd_jit`'s 3x3 256->256 @14 b1: calls 4-10 1.1-1.3 ms, their single-threaded
#: GEMMs 0.5-0.7 ms, later calls 0.95-1.0 and 0.37).
TIMED_SECONDS = 0.05
#: Warm-up calls at least, however long they take: a large layer's first calls are slower
#: too (`winograd_jit`'s 3x3 512->512 @7 b8, call by call: 7.5, 7.3, 6.9, 6.9, 6.6,
#: 6.6, 6.6, 6.6, 6.3 ms, then 6.0-6.4; PyTorch's 6.1-6.2, then 5.5-5.7).
WARM_CALLS = 10
#: Environment variables that cap the kernel OpenBLAS picks for this CPU.
OPENBLAS_CAPS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: The block :func:`warm_allocator` frees: just under glibc's largest mmap threshold.
WARM_BYTES = 30 * 2**20
#: Side of the square float32 matrix product that measures the GEMM peak.
SGEMM_SIZE = 1536


def operands(
    case: Case, dtype: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x``, ``w``, an upstream gradient ``gy`` (the result's shape) and a bias (one value
    per output channel) from ``seed``."""
    rng = np.random.default_rng(seed)
    spec = case.spec()
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    gy = rng.standard_normal(spec.output_shape).astype(dtype)
    return x, w, gy, rng.standard_normal(spec.out_channels).astype(dtype)


def _torch_run(
    kind: str, case: Case, x: np.ndarray, w: np.ndarray, gy: np.ndarray, b: np.ndarray | None
) -> Any:
    """PyTorch's forward convolution (plus the bias ``b``, if any), or its autograd
    backward: the gradients of ``x`` (in ``x``'s layout) and of the weight (as PyTorch
    holds it: ``(O, C/G, *kernel)``)."""
    import torch

    torch.set_num_threads(get_threads())
    spec = case.spec()
    backward = kind == "backward"
    xt, wt, gyt = (
        torch.from_numpy(x).requires_grad_(backward),
        torch.from_numpy(w),
        torch.from_numpy(gy),
    )
    xv = xt
    if case.layout == "NHWC":  # PyTorch wants NCHW / OIHW: a view, permuted
        xv, gyt, wt = xt.movedim(-1, 1), gyt.movedim(-1, 1), wt.movedim((-1, -2), (0, 1))
        if backward:  # its gradient kernels want the weight contiguous, (O, C/G, *kernel)
            wt = wt.contiguous()
    wt.requires_grad_(backward)
    fn = getattr(torch.nn.functional, f"conv{spec.nd}d")
    symmetric = all(lo == hi for lo, hi in spec.pads)
    padding = [lo for lo, _ in spec.pads] if symmetric else 0
    pads = [p for pair in reversed(spec.pads) for p in pair]  # last axis first

    bt = None if b is None else torch.from_numpy(b)

    def forward() -> Any:
        inp = xv if symmetric else torch.nn.functional.pad(xv, pads)
        return fn(inp, wt, bt, stride=spec.stride, padding=padding, groups=spec.groups)

    if not backward:
        return lambda: forward().detach()
    y = forward()  # the graph is kept: only the backward is timed
    return lambda: torch.autograd.grad(y, (xt, wt), gyt, retain_graph=True)


def _scipy_run(
    case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray | None
) -> Callable[[], np.ndarray]:
    """``scipy.signal.correlate`` (direct or FFT, its own choice) per output channel, plus
    the bias ``b``, if any."""
    import scipy.signal

    from ._windows import canonical_input, canonical_weight, move_channels_first, weight_first

    spec = case.spec()
    cg, og = spec.group_in, spec.group_out

    def run() -> np.ndarray:
        xp = move_channels_first(canonical_input(x, spec))  # (N, C, *padded)
        wc = weight_first(canonical_weight(w, spec))  # (O, C/G, *kernel)
        keep = tuple(slice(None, None, s) for s in spec.stride)
        y = np.empty((spec.batch, spec.out_channels, *spec.out_size), dtype=x.dtype)
        for o in range(spec.out_channels):
            g = o // og
            full = scipy.signal.correlate(xp[:, g * cg : (g + 1) * cg], wc[o][None], mode="valid")
            y[:, o] = full[tuple([slice(None), 0, *keep])]
            if b is not None:
                y[:, o] += b[o]
        return y  # (N, O, *out)

    return run


def contender_run(
    kind: str,
    contender: str,
    case: Case,
    x: np.ndarray,
    w: np.ndarray,
    gy: np.ndarray,
    b: np.ndarray | None = None,
) -> Callable[[], Any]:
    """A call of ``contender`` on the layer, ready to be timed; a forward one adds the
    bias ``b`` where given."""
    if contender == "torch":
        return _torch_run(kind, case, x, w, gy, b)
    if contender == "scipy":
        return _scipy_run(case, x, w, b)
    if kind == "backward":
        needs = ("input", "weight")
        return partial(conv_backward, gy, x, w, algorithm=contender, needs=needs, **case.options())
    return partial(conv, x, w, b, algorithm=contender, **case.options())


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_temporary_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes allocated during ``run()`` beyond those of the arrays it returns.

    The workspaces that npconv keeps between calls are released first, so that the
    peak counts them (in steady state they are held, not allocated).
    """
    free_workspaces()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = result if isinstance(result, tuple) else (result,)
    return max(peak - sum(a.nbytes for a in arrays if a is not None), 0)


def warm_allocator() -> None:
    """Allocate and free a block of WARM_BYTES, as a process that has held a large array.

    glibc's malloc maps every block above its threshold (128 KiB at first) afresh and
    unmaps it when freed, so each call that allocates such temporaries pays a page fault
    per 4 KiB page it touches; freeing a mapped block raises the threshold to that
    block's size (up to 32 MiB), and later blocks up to it are reused from the heap.
    """
    block = np.empty(WARM_BYTES, dtype=np.uint8)
    del block


#: Calls after the timed ones over which the minor page faults per call are counted.
FAULT_CALLS = 3


def _steady_faults(run: Callable[[], Any]) -> float:
    """Minor page faults per call of ``run`` in steady state: over :data:`FAULT_CALLS`
    calls after the timed ones (the first calls may still fault in memory that a
    compilation freed back to the system: a few hundred faults on the second call of a
    process whose first compiled numba kernels)."""
    before = _minor_faults()
    for _ in range(FAULT_CALLS):
        run()
    return (_minor_faults() - before) / FAULT_CALLS


def _timed(job: dict[str, Any]) -> dict[str, Any]:
    if job["warm_allocator"]:
        warm_allocator()
    case = Case.from_json(job["case"])
    kind, contender = job["kind"], job["contender"]
    x, w, gy, b = operands(case, job["dtype"], job["seed"])
    try:
        run = contender_run(kind, contender, case, x, w, gy, b if job.get("bias") else None)
        start = time.perf_counter()
        run()
        first = time.perf_counter() - start
    except (ValueError, TypeError, RuntimeError) as error:  # this layer or dtype is not run
        return {"unsupported": f"{type(error).__name__}: {error}"}
    # the first call may have compiled kernels: the warm-up after it tells a slow contender,
    # which is then not repeated (its faults per call unknown)
    seconds = median_seconds(
        run, job["repeats"], slow=SLOW_SECONDS, at_least=TIMED_SECONDS, warm=WARM_CALLS
    )
    slow = seconds > SLOW_SECONDS
    result: dict[str, Any] = {
        "first_call_seconds": first,
        "seconds": seconds,
        "minor_faults_per_call": None if slow else _steady_faults(run),
    }
    if contender == "auto":
        result["auto_peak_temp_bytes"] = _peak_temporary_bytes(run)
        if kind == "forward":
            result["auto_choice"] = explain(x, w, **case.options()).algorithm
        else:
            dtype = compute_dtypes("conv_backward", gy, x, w)[0]
            choices = gradient_choices(case.spec(), dtype, get_threads())
            result["auto_choice"] = " / ".join(choices)  # input's / weight's
    return result


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _thread_pools() -> list[dict[str, Any]] | str:
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded, or why there is none."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl is not importable: BLAS kernel unknown (pip install threadpoolctl)"
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads")
    return [
        {**{key: pool.get(key) for key in keys}, "owner": _owner(pool["filepath"])}
        for pool in threadpool_info()
    ]


def _owner(path: str) -> str:
    """The package that ships a shared library: ``numpy`` for ``.../numpy.libs/libx.so``."""
    parts = os.path.normpath(path).split(os.sep)
    if "site-packages" in parts[:-2]:
        return parts[parts.index("site-packages") + 1].removesuffix(".libs")
    return os.path.basename(path)


def _sgemm_gflops() -> float:
    """GFLOP/s of the fastest of 3 float32 products of two SGEMM_SIZE-square matrices."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32) for _ in range(2))
    a @ b  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * SGEMM_SIZE**3 / min(times) / 1e9


def _machine() -> dict[str, Any]:
    try:  # loaded, so that its thread pools are listed
        import torch  # noqa: F401
    except ImportError:
        pass
    set_threads(get_threads())  # limit the pools torch brought
    pools = _thread_pools()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": get_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "numba": _version("numba"),
        "thread_pools": pools,
        "blas": [  # one line per BLAS library: its version, kernel and package
            f"{p['internal_api']} {p['version']}, kernel {p['architecture']} ({p['owner']})"
            for p in pools
            if isinstance(p, dict) and p["user_api"] == "blas"
        ],
        "openblas_caps": {key: os.environ[key] for key in OPENBLAS_CAPS if key in os.environ},
        "sgemm_gflops": _sgemm_gflops(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (see the module docstring) in this process; return its JSON-able result."""
    set_threads(job["threads"])
    result = _machine() if job["kind"] == "machine" else _timed(job)
    return {**result, "pid": os.getpid()}


if __name__ == "__main__":
    print(json.dumps(measure(json.load(sys.stdin))))
