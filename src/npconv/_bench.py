"""``npconv bench``: npconv's algorithms against PyTorch and SciPy on a suite of layers.

Every contender is timed on every layer in a fresh interpreter of its own
(``python -m npconv._bench_worker``, one after the other, never two at once), on the
same arrays (same seed, same shapes) with the same thread count
(:func:`npconv.get_threads`, given to ``torch.set_num_threads``): the first call (with
an empty numba cache, so compilation included), at least ``WARM_CALLS`` warm-up calls,
then the median of ``repeats`` timed calls (for fast layers, as many as fill
``TIMED_SECONDS``, after as many warm-up calls).  In one process, the threads
that OpenBLAS and PyTorch's OpenMP keep spinning after each call would slow the other
library (``one_process=True`` measures just that).  The header describes the machine as
a worker sees it: CPU, BLAS libraries and their kernels, versions, and its float32 GEMM
peak.  Conclusions are ratios, torch's time over npconv's (> 1: npconv is faster).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._bench_suites import SUITES, Case
from ._bench_worker import OPENBLAS_CAPS, SGEMM_SIZE, TIMED_SECONDS, WARM_CALLS, measure
from ._threads import get_threads
from .algorithms import REGISTRY

__all__ = ["SUITES", "Case", "run_bench"]

PEERS = ("scipy", "torch")
Runner = Callable[[dict[str, Any]], dict[str, Any]]


def _in_worker(job: dict[str, Any]) -> dict[str, Any]:
    """``measure(job)`` in a fresh interpreter that imports this same npconv, with an
    empty numba cache of its own (so that a first call includes any compilation)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds npconv/
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="npconv-bench-numba-") as cache:
        done = subprocess.run(
            [sys.executable, "-m", "npconv._bench_worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path, "NUMBA_CACHE_DIR": cache},
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        what = job.get("contender", job["kind"])
        where = f" on {job['case']['name']}" if "case" in job else ""
        raise RuntimeError(
            f"bench: the worker timing {what}{where} exited with status {done.returncode}:\n"
            f"{done.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    try:
        from rich.progress import Progress
    except ImportError:
        yield (lambda label: None) if quiet else (lambda label: print(f"  {label} ...", flush=True))
        return
    with Progress(transient=True, disable=quiet) as progress:
        task = progress.add_task("npconv bench", total=total)
        yield lambda label: progress.update(task, advance=1, description=label)


def _check_arguments(
    suite: str, algorithms: Sequence[str], against: Sequence[str], backward: bool, bias: bool
) -> None:
    for name in suite.split(","):
        if name not in SUITES:
            raise ValueError(f"bench: unknown suite {name!r}; choose from {sorted(SUITES)}")
    unknown = [a for a in algorithms if a != "auto" and a not in REGISTRY]
    if unknown:
        raise ValueError(f"bench: unknown algorithms {unknown}; choose from {['auto', *REGISTRY]}")
    for peer in against:
        if peer not in PEERS:
            raise ValueError(f"bench: unknown peer {peer!r}; choose from {list(PEERS)}")
    if backward and "scipy" in against:
        raise ValueError("bench: the backward pass is compared with torch only, not scipy")
    if backward and bias:
        raise ValueError(
            "bench: a bias is timed in the forward pass only (the input and weight "
            "gradients do not depend on it)"
        )


def run_bench(
    suite: str = "all",
    *,
    dtype: str = "float32",
    against: Sequence[str] = ("torch",),
    algorithms: Sequence[str] = ("auto",),
    repeats: int = 5,
    backward: bool = False,
    bias: bool = False,
    only: str | None = None,
    one_process: bool = False,
    warm_allocator: bool = False,
    json_path: str | None = None,
    plot_path: str | None = None,
    print_fn: Callable[[str], None] = print,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Time ``algorithms`` and the peers on ``suite``; print a header and a table.

    Parameters
    ----------
    suite : str
        A key of :data:`SUITES`, or several separated by commas; ``only`` keeps the
        layers whose name contains it.
    dtype, repeats
        The arrays' dtype; timed calls per contender and layer (median).
    against : sequence of {"torch", "scipy"}
        The peers (torch is the reference of every ratio).
    algorithms : sequence of str
        ``"auto"`` and names of :func:`npconv.algorithms`.
    backward : bool
        Time ``npconv.grad.conv_backward`` (input and weight gradients) against
        ``torch.autograd.grad`` instead of the forward convolution.
    bias : bool
        Give every layer of the forward pass a bias (one value per output channel), as
        most layers of a network have, for every contender.
    one_process : bool
        Time every contender in this process instead of one fresh process each.
    warm_allocator : bool
        Free a large block in each worker before timing
        (:func:`npconv._bench_worker.warm_allocator`): temporaries then come from the
        heap, as in a long-running process, instead of fresh pages (page faults).
    json_path, plot_path : str, optional
        Where to write the results (JSON) and a bar chart of the ratios (PNG).

    Returns
    -------
    list of dict
        A record per layer: the case, its GFLOP (``ConvSpec.flops``, twice that for the
        backward pass), and per contender the median, first-call seconds and minor page
        faults per call; ``auto``'s choice and peak temporary bytes.

    Raises
    ------
    ValueError
        An unknown suite, algorithm or peer; ``only`` matching no layer of the suite.
    """
    _check_arguments(suite, algorithms, against, backward, bias)
    cases = [c for key in suite.split(",") for c in SUITES[key] if only is None or only in c.name]
    if not cases:
        raise ValueError(f"bench: no layer of suite {suite!r} has {only!r} in its name")
    runner: Runner = measure if one_process else _in_worker
    kind = "backward" if backward else "forward"
    contenders = [*algorithms, *against]
    job = {"kind": kind, "dtype": dtype, "threads": get_threads(), "repeats": repeats, "seed": 0}
    job["warm_allocator"], job["bias"] = warm_allocator, bias
    machine = runner({**job, "kind": "machine"})
    isolation = "one process" if one_process else "a fresh process per contender and layer"
    header = f"{suite} suite, {kind}{' with a bias' if bias else ''}, {dtype}, "
    header += f"{len(cases)} layers, {isolation}"
    header += ", allocator warmed (a large block freed first)" if warm_allocator else ""
    for line in [header, *_describe(machine, repeats, one_process)]:
        print_fn(line)
    with _progress(len(cases) * len(contenders), quiet) as step:
        records = [_measure(case, contenders, job, runner, step) for case in cases]
    _print_table(records, contenders, print_fn)
    _print_conclusions(records, algorithms, kind, print_fn)
    if json_path:
        payload = {"machine": machine, "mode": kind, "isolation": isolation, "suite": suite}
        settings = {
            "warm_allocator": warm_allocator,
            "bias": bias,
            "dtype": dtype,
            "repeats": repeats,
            "timed_seconds": TIMED_SECONDS,
            "warm_calls": WARM_CALLS,
        }
        with open(json_path, "w") as f:
            json.dump({**payload, **settings, "results": records}, f)
    if plot_path:
        _plot(records, algorithms, kind, plot_path)
    return records


def _measure(
    case: Case,
    contenders: Sequence[str],
    job: dict[str, Any],
    runner: Runner,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Time every contender on one case (one worker each); return the case's record."""
    spec = case.spec()
    record: dict[str, Any] = {
        "case": case.name,
        "x_shape": list(case.x_shape),
        "w_shape": list(case.w_shape),
        "layout": case.layout,
        "options": case.kwargs,
        "gflop": spec.flops * (2 if job["kind"] == "backward" else 1) / 1e9,
        "output_bytes": math.prod(spec.output_shape) * np.dtype(job["dtype"]).itemsize,
        "seconds": {},
        "first_call_seconds": {},
        "minor_faults_per_call": {},
        "pid": {},  # the process that timed each contender
        "unsupported": {},
    }
    for name in contenders:
        step(f"{case.name}: {name}")
        forced = name in REGISTRY and job["kind"] == "forward"
        reason = REGISTRY[name].unsupported(spec, np.dtype(job["dtype"])) if forced else None
        if reason is None:
            result = runner({**job, "contender": name, "case": case.to_json()})
        else:
            result = {"unsupported": reason}
        if "unsupported" in result:
            record["unsupported"][name] = result["unsupported"]
            continue
        for key in ("seconds", "first_call_seconds", "minor_faults_per_call", "pid"):
            record[key][name] = result[key]
        for key in ("auto_choice", "auto_peak_temp_bytes"):
            if key in result:
                record[key] = result[key]
    return record


def _describe(machine: dict[str, Any], repeats: int, one_process: bool) -> list[str]:
    """The header's lines: what ran the products, and how it was timed."""
    fresh = "" if one_process else " (in a fresh process, with an empty numba cache)"
    pools = machine["thread_pools"]
    load = machine["load_average"]
    lines = [
        f"CPU: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads; "
        f"float32 GEMM peak {machine['sgemm_gflops']:.1f} GFLOP/s "
        f"({SGEMM_SIZE}x{SGEMM_SIZE} matmul, fastest of 3)",
        "Load average: "
        + ("unknown" if load is None else f"{load:.2f} (other work on the cores skews the times)"),
        "BLAS: " + ("; ".join(machine["blas"]) or "none loaded")
        if isinstance(pools, list)
        else f"BLAS: {pools}",
        f"Python {machine['python']}, numpy {machine['numpy']}, "
        f"torch {machine['torch'] or 'not installed'}, numba {machine['numba'] or 'not installed'}",
        f"Timing: the first call{fresh}, at least {WARM_CALLS} warm-up calls, then the median of"
        f" {repeats} calls (or, warm-up and timed each, as many as fill {TIMED_SECONDS} s)",
    ]
    caps = machine["openblas_caps"]
    if caps:
        settings = ", ".join(f"{key}={value}" for key, value in caps.items())
        lines.append(
            f"{settings} is set: it caps the kernel OpenBLAS picks for this CPU "
            f"(unset {' and '.join(caps)} to time the CPU's own kernel)"
        )
    else:
        lines.append(f"{' and '.join(OPENBLAS_CAPS)} are not set")
    return lines


def _ratio(record: dict[str, Any], name: str) -> float | None:
    """Speed of ``name`` relative to torch (> 1: faster than torch)."""
    times = record["seconds"]
    if "torch" not in times or name not in times:
        return None
    return float(times["torch"] / times[name])


def _print_table(
    records: list[dict[str, Any]], contenders: Sequence[str], print_fn: Callable[[str], None]
) -> None:
    header = ["case", "contender", "ms", "GFLOP/s", "x torch", "first call +ms", "faults/call"]
    header += ["auto uses", "peak temp MiB"]
    rows = []
    for rec in records:
        for name in contenders:
            if name not in rec["seconds"]:
                continue
            seconds = rec["seconds"][name]
            ratio = _ratio(rec, name)
            faults = rec["minor_faults_per_call"][name]
            auto = name == "auto"
            rows.append(
                [
                    rec["case"],
                    name,
                    f"{seconds * 1e3:.2f}",
                    f"{rec['gflop'] / seconds:.1f}",
                    "-" if ratio is None else f"{ratio:.2f}",
                    f"{(rec['first_call_seconds'][name] - seconds) * 1e3:.1f}",
                    "-" if faults is None else f"{faults:.0f}",
                    rec.get("auto_choice", "") if auto else "",
                    f"{rec['auto_peak_temp_bytes'] / 2**20:.1f}" if auto else "",
                ]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print_fn("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for rec in records:
        for name, why in rec["unsupported"].items():
            print_fn(f"{name} cannot run {rec['case']}: {why}")


def _print_conclusions(
    records: list[dict[str, Any]],
    algorithms: Sequence[str],
    kind: str,
    print_fn: Callable[[str], None],
) -> None:
    """Ratios only: npconv against torch, and each first call against the steady state."""
    for name in algorithms:
        ratios = [r for r in (_ratio(rec, name) for rec in records) if r is not None]
        if ratios:
            print_fn(
                f"{name} vs torch ({kind}) over {len(ratios)} cases: median "
                f"{statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, "
                f"max {max(ratios):.2f}x (torch's time / npconv's: > 1 is npconv faster)"
            )
        first = {
            rec["case"]: rec["first_call_seconds"][name] / rec["seconds"][name]
            for rec in records
            if name in rec["seconds"]
        }
        if first:
            worst = max(first, key=first.__getitem__)
            print_fn(
                f"{name}'s first call: median "
                f"{statistics.median(first.values()):.1f}x its steady time, at most "
                f"{first[worst]:.1f}x ({worst})"
            )


def _plot(records: list[dict[str, Any]], algorithms: Sequence[str], kind: str, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError(
            "bench: --plot needs matplotlib (pip install 'npconv[bench]')"
        ) from error
    names = [a for a in algorithms if any(_ratio(r, a) is not None for r in records)]
    fig, ax = plt.subplots(figsize=(10, 0.15 * len(records) * max(len(names), 1) + 1.5))
    height = 0.8 / max(len(names), 1)
    positions = np.arange(len(records))
    for i, name in enumerate(names):
        values = [_ratio(r, name) or 0.0 for r in records]
        ax.barh(positions + i * height, values, height, label=name)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(positions + height * (len(names) - 1) / 2, [r["case"] for r in records])
    ax.set_xlabel("speed relative to PyTorch (> 1: faster)")
    ax.set_title(f"npconv vs PyTorch, {kind}, threads: {get_threads()}")
    ax.set_ylim(len(records), -1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
