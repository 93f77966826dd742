"""``npconv bench``: npconv's algorithms against PyTorch and SciPy on a suite of layers.

Every contender runs in this process, on the same arrays, with the same thread count
(:func:`npconv.get_threads`, given to ``torch.set_num_threads``): one warm-up run, then
the median of ``repeats`` timed runs.  The peak temporary memory of ``auto`` is measured
separately with :mod:`tracemalloc` (allocations beyond the result itself).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ._api import conv
from ._autotune import median_seconds
from ._spec import ConvSpec
from ._threads import get_threads
from .algorithms import REGISTRY

__all__ = ["SUITES", "Case", "run_bench"]

#: Warm-up runs longer than this are not repeated (the warm-up time is reported).
SLOW_SECONDS = 3.0


@dataclass(frozen=True)
class Case:
    """One layer: input and weight shapes in ``layout`` plus conv keywords."""

    name: str
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    layout: str = "NCHW"

    def spec(self) -> ConvSpec:
        return ConvSpec.build(self.x_shape, self.w_shape, layout=self.layout, **self.kwargs)


def _layer(
    name: str, n: int, c: int, o: int, size: int, k: int, stride: int = 1, groups: int = 1
) -> Case:
    kwargs = {"stride": stride, "padding": k // 2, "groups": groups}
    return Case(f"{name} b{n}", (n, c, size, size), (o, c // groups, k, k), kwargs)


def _resnet() -> list[Case]:
    layers = [
        ("stem 7x7/2 3->64 @224", 3, 64, 224, 7, 2),
        ("3x3 64->64 @56", 64, 64, 56, 3, 1),
        ("3x3 128->128 @28", 128, 128, 28, 3, 1),
        ("3x3 256->256 @14", 256, 256, 14, 3, 1),
        ("3x3 512->512 @7", 512, 512, 7, 3, 1),
        ("1x1 256->64 @56", 256, 64, 56, 1, 1),
        ("1x1 512->128 @28", 512, 128, 28, 1, 1),
        ("3x3/2 128->128 @56", 128, 128, 56, 3, 2),
    ]
    return [_layer(name, n, *args) for n in (1, 8) for name, *args in layers]


SUITES: dict[str, list[Case]] = {
    "notes": [
        Case("notes 10x32x32x8 * 3x3x8x16", (10, 32, 32, 8), (3, 3, 8, 16), layout="NHWC"),
        Case("notes 100x32x32x3 * 3x3x3x16", (100, 32, 32, 3), (3, 3, 3, 16), layout="NHWC"),
        Case("notes 33x33x3 * 5x5x3 /2", (1, 33, 33, 3), (5, 5, 3, 1), {"stride": 2}, "NHWC"),
    ],
    "resnet": _resnet(),
    "vgg": [_layer("vgg 3x3 64->64 @224", n, 64, 64, 224, 3) for n in (1, 8)],
    "mobilenet": [
        _layer("mbv2 dw 3x3 144 @56", 1, 144, 144, 56, 3, groups=144),
        _layer("mbv2 dw 3x3 384 @14", 1, 384, 384, 14, 3, groups=384),
        _layer("mbv2 1x1 24->144 @56", 1, 24, 144, 56, 1),
        _layer("mbv2 1x1 64->384 @14", 1, 64, 384, 14, 1),
    ],
    "tiny": [  # a quick smoke test of the command itself
        _layer("tiny 3x3 4->4 @8", 2, 4, 4, 8, 3),
        _layer("tiny dw 3x3 4 @8", 1, 4, 4, 8, 3, groups=4),
    ],
}
SUITES["all"] = [c for key in ("notes", "resnet", "vgg", "mobilenet") for c in SUITES[key]]


def _peak_temporary_bytes(run: Callable[[], np.ndarray]) -> int:
    """Peak bytes allocated during ``run()`` beyond those of its result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        y = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(peak - y.nbytes, 0)


def _torch_peer() -> Callable[[Case, np.ndarray, np.ndarray], Callable[[], Any]] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(get_threads())

    def prepare(case: Case, x: np.ndarray, w: np.ndarray) -> Callable[[], Any]:
        spec = case.spec()
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        if case.layout == "NHWC":  # PyTorch wants NCHW / OIHW: a view, permuted
            xt = xt.movedim(-1, 1)
            wt = wt.movedim((-1, -2), (0, 1))
        fn = getattr(torch.nn.functional, f"conv{spec.nd}d")
        pads = [p for pair in spec.pads for p in pair]
        symmetric = all(lo == hi for lo, hi in spec.pads)

        def run() -> Any:
            with torch.no_grad():
                inp = xt if symmetric else torch.nn.functional.pad(xt, pads[::-1])
                padding = [lo for lo, _ in spec.pads] if symmetric else 0
                return fn(inp, wt, stride=spec.stride, padding=padding, groups=spec.groups)

        return run

    return prepare


def _scipy_peer(case: Case, x: np.ndarray, w: np.ndarray) -> Callable[[], Any]:
    """``scipy.signal.correlate`` (direct or FFT, its own choice) per output channel."""
    import scipy.signal

    from ._windows import canonical_input, canonical_weight

    spec = case.spec()
    cg, og = spec.group_in, spec.group_out

    def run() -> np.ndarray:
        xp = np.moveaxis(canonical_input(x, spec), -1, 1)  # (N, C, *padded)
        wc = np.moveaxis(canonical_weight(w, spec), (-1, -2), (0, 1))  # (O, C/G, *kernel)
        keep = tuple(slice(None, None, s) for s in spec.stride)
        y = np.empty((spec.batch, spec.out_channels, *spec.out_size), dtype=x.dtype)
        for o in range(spec.out_channels):
            g = o // og
            full = scipy.signal.correlate(xp[:, g * cg : (g + 1) * cg], wc[o][None], mode="valid")
            y[:, o] = full[tuple([slice(None), 0, *keep])]
        return y

    return run


def machine() -> dict[str, Any]:
    """A short description of this machine and the libraries that run the products."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": get_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({f"{i['internal_api']} {i['version']}" for i in threadpool_info()})
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


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


def run_bench(
    suite: str = "all",
    *,
    dtype: str = "float32",
    against: Sequence[str] = ("torch",),
    algorithms: Sequence[str] = ("auto",),
    repeats: int = 5,
    json_path: str | None = None,
    plot_path: str | None = None,
    print_fn: Callable[[str], None] = print,
    quiet: bool = False,
) -> list[dict[str, Any]]:
    """Time ``algorithms`` and the peers on ``suite``; print a table; return the records.

    Each record holds the case, its GFLOP (``ConvSpec.flops``), the seconds of every
    contender, ``auto``'s choice and peak temporary bytes.
    """
    if suite not in SUITES:
        raise ValueError(f"bench: unknown suite {suite!r}; choose one of {sorted(SUITES)}")
    unknown = [a for a in algorithms if a != "auto" and a not in REGISTRY]
    if unknown:
        raise ValueError(f"bench: unknown algorithms {unknown}; choose from {['auto', *REGISTRY]}")
    peers: dict[str, Callable[[Case, np.ndarray, np.ndarray], Callable[[], Any]]] = {}
    for peer in against:
        if peer == "torch":
            prepare = _torch_peer()
            if prepare is None:
                print_fn("PyTorch is not installed: no torch column.")
                continue
            peers["torch"] = prepare
        elif peer == "scipy":
            peers["scipy"] = _scipy_peer
        else:
            raise ValueError(f"bench: unknown peer {peer!r}; choose from ['scipy', 'torch']")

    cases = SUITES[suite]
    rng = np.random.default_rng(0)
    records = []
    with _progress(len(cases) * (len(algorithms) + len(peers) + 1), quiet) as step:
        for case in cases:
            x = rng.standard_normal(case.x_shape).astype(dtype)
            w = rng.standard_normal(case.w_shape).astype(dtype)
            records.append(_measure(case, x, w, algorithms, peers, repeats, step))
    _print_table(records, algorithms, list(peers), print_fn)
    if json_path:
        with open(json_path, "w") as f:
            payload = {"machine": machine(), "dtype": dtype, "repeats": repeats, "suite": suite}
            json.dump({**payload, "results": records}, f, indent=1)
    if plot_path:
        _plot(records, algorithms, plot_path)
    return records


def _measure(
    case: Case,
    x: np.ndarray,
    w: np.ndarray,
    algorithms: Sequence[str],
    peers: dict[str, Callable[[Case, np.ndarray, np.ndarray], Callable[[], Any]]],
    repeats: int,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Time every contender on one case; measure auto's memory; return the record."""
    from ._autotune import explain

    spec = case.spec()
    options = dict(layout=case.layout, **case.kwargs)
    times: dict[str, float] = {}
    for name in algorithms:
        step(f"{case.name}: {name}")
        if name == "auto" or REGISTRY[name].unsupported(spec, x.dtype) is None:
            times[name] = median_seconds(
                partial(conv, x, w, algorithm=name, **options), repeats, SLOW_SECONDS
            )
    for peer, prepare in peers.items():
        step(f"{case.name}: {peer}")
        times[peer] = median_seconds(prepare(case, x, w), repeats, SLOW_SECONDS)
    step(f"{case.name}: memory")
    return {
        "case": case.name,
        "x_shape": list(case.x_shape),
        "w_shape": list(case.w_shape),
        "layout": case.layout,
        "options": case.kwargs,
        "gflop": spec.flops / 1e9,
        "output_bytes": math.prod(spec.output_shape) * x.dtype.itemsize,
        "auto_choice": explain(x, w, **options).algorithm,
        "auto_peak_temp_bytes": _peak_temporary_bytes(partial(conv, x, w, **options)),
        "seconds": times,
    }


def _ratio(record: dict[str, Any], name: str) -> float | None:
    """Speed of ``name`` relative to torch (> 1: faster than torch)."""
    times = record["seconds"]
    if "torch" not in times or name not in times:
        return None
    return float(times["torch"] / times[name])


def _print_table(
    records: list[dict[str, Any]],
    algorithms: Sequence[str],
    peers: list[str],
    print_fn: Callable[[str], None],
) -> None:
    header = ["case", "contender", "ms", "GFLOP/s", "x torch", "auto uses", "peak temp MiB"]
    rows = []
    for rec in records:
        for name in [*algorithms, *peers]:
            if name not in rec["seconds"]:
                continue
            seconds = rec["seconds"][name]
            ratio = _ratio(rec, name)
            rows.append(
                [
                    rec["case"],
                    name,
                    f"{seconds * 1e3:.2f}",
                    f"{rec['gflop'] / seconds:.1f}",
                    "-" if ratio is None else f"{ratio:.2f}",
                    rec["auto_choice"] if name == "auto" else "",
                    f"{rec['auto_peak_temp_bytes'] / 2**20:.1f}" if name == "auto" else "",
                ]
            )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print_fn("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    ratios = [r for r in (_ratio(rec, "auto") for rec in records) if r is not None]
    if ratios:
        print_fn(
            f"auto vs torch over {len(ratios)} cases: median {statistics.median(ratios):.2f}x, "
            f"min {min(ratios):.2f}x, max {max(ratios):.2f}x (> 1: faster than torch)"
        )


def _plot(records: list[dict[str, Any]], algorithms: Sequence[str], path: str) -> None:
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
    ax.set_title(f"npconv vs PyTorch, threads: {get_threads()}")
    ax.set_ylim(len(records), -1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
