"""``npconv check``: every algorithm on the reference examples, timed and cross-checked.

The three examples are the classic teaching cases of convolution in NumPy: a
10x32x32x8 batch with 3x3x8x16 filters, a 100x32x32x3 batch with 3x3x3x16 filters
(both channels-last, "valid"), and a 33x33x3 image with one 5x5x3 filter at stride 2
(a 15x15 result).  Each algorithm's result is compared with PyTorch (when installed) and
with the ``naive`` oracle, which runs on as many samples as its size limit allows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ._api import conv
from ._spec import ConvSpec
from .algorithms import REGISTRY

#: Largest error accepted, relative to the largest |result|, for float64 examples.
TOLERANCE = 1e-10


@dataclass(frozen=True)
class Example:
    """One problem: channels-last input and HWIO weight, plus conv keywords."""

    name: str
    x: np.ndarray
    w: np.ndarray
    kwargs: dict[str, Any] = field(default_factory=dict)


def examples(seed: int = 0) -> list[Example]:
    """The reference examples, in float64, with fixed random data."""
    rng = np.random.default_rng(seed)
    exercise = np.random.default_rng(123)
    image = exercise.normal(size=(33, 33, 3)).round(2)
    filt = exercise.normal(size=(5, 5, 3)).round(2)
    return [
        Example("10x32x32x8 * 3x3x8x16", rng.random((10, 32, 32, 8)), rng.random((3, 3, 8, 16))),
        Example(
            "100x32x32x3 * 3x3x3x16",
            rng.standard_normal((100, 32, 32, 3)),
            rng.standard_normal((3, 3, 3, 16)),
        ),
        Example("33x33x3 * 5x5x3, stride 2", image[None], filt[..., None], {"stride": 2}),
    ]


def _median_seconds(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median time of ``repeats`` runs after a warm-up (or of the warm-up alone when 0)."""
    start = time.perf_counter()
    result = run()  # warm-up, and the value to check
    times = [time.perf_counter() - start] if repeats == 0 else []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _torch_conv() -> Callable[[np.ndarray, np.ndarray, dict[str, Any]], np.ndarray] | None:
    try:
        import torch
    except ImportError:
        return None

    def run(x: np.ndarray, w: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # NHWC -> NCHW
        wt = torch.from_numpy(w).permute(3, 2, 0, 1)  # HWIO -> OIHW
        with torch.no_grad():
            y = torch.nn.functional.conv2d(xt, wt, **kwargs)
        return y.permute(0, 2, 3, 1).numpy()

    return run


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str], None]]:
    """A rich progress bar when rich is installed, plain lines otherwise."""
    try:
        from rich.progress import Progress
    except ImportError:
        yield lambda label: print(f"  {label} ...", flush=True)
        return
    with Progress(transient=True) as progress:
        task = progress.add_task("npconv check", total=total)

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        yield step


def _relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    scale = max(float(np.abs(ref).max()), 1e-300)
    return float(np.abs(y - ref).max()) / scale


def run_check(repeats: int = 3, print_fn: Callable[[str], None] = print) -> bool:
    """Run every algorithm on every example; print a table; True when all agree."""
    torch_conv = _torch_conv()
    cases = examples()
    rows: list[tuple[str, ...]] = []
    ok = True
    forward = {name: a for name, a in REGISTRY.items() if a.fn is not None}
    with _progress(len(cases) * (len(forward) + 1)) as step:
        for ex in cases:
            n_total = ex.x.shape[0]
            spec = ConvSpec.build(ex.x.shape, ex.w.shape, layout="NHWC", **ex.kwargs)
            reference = oracle = None
            t_ref = float("nan")
            if torch_conv is not None:
                step(f"{ex.name}: torch")
                t_ref, reference = _median_seconds(
                    partial(torch_conv, ex.x, ex.w, ex.kwargs), repeats
                )
                rows.append((ex.name, "torch", f"{t_ref * 1e3:.2f}", "1.00", "reference", ""))
            for name, algo in forward.items():
                step(f"{ex.name}: {name}")
                n = n_total
                if algo.max_macs is not None:  # run the oracle on the samples it accepts
                    n = min(n_total, algo.max_macs // (spec.macs // n_total))
                why = algo.unsupported(spec, ex.x.dtype) if n else "too large"
                if why is not None:  # not this example (its kernel, stride, numba...)
                    rows.append((ex.name, name, "-", "-", "-", why))
                    continue
                seconds, y = _median_seconds(
                    partial(conv, ex.x[:n], ex.w, layout="NHWC", algorithm=name, **ex.kwargs),
                    repeats if n == n_total else 0,
                )
                oracle = y if name == "naive" else oracle
                errors = [
                    _relative_error(y[: len(ref)], ref[: len(y)])
                    for ref in (reference, oracle)
                    if ref is not None
                ]
                worst = max(errors, default=0.0)
                ok &= worst <= TOLERANCE
                ratio = seconds * (n_total / n) / t_ref  # per-sample time x full batch
                rows.append(
                    (
                        ex.name,
                        name,
                        f"{seconds * 1e3:.2f}",
                        "-" if torch_conv is None else f"{ratio:.2f}",
                        f"{worst:.1e}",
                        "" if n == n_total else f"on {n} of {n_total} samples",
                    )
                )
    header = ("example", "algorithm", "time (ms)", "time / torch", "max rel error", "note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print_fn("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if torch_conv is None:
        print_fn("PyTorch is not installed: errors are against the naive oracle only.")
    verdict = "OK" if ok else "FAILED"
    print_fn(f"{verdict}: every algorithm agrees within {TOLERANCE:g} (relative to max |y|).")
    return ok
