"""Backward pass benchmark: ``npconv.grad.conv_backward`` against the forward ``npconv.conv``.

For each layer shape (float32, NCHW, ``algorithm="auto"``) it times, in one process, the
forward convolution and the backward pass that returns the input, weight and bias
gradients (timed in turn), and reports the median times, their ratio and the peak of
temporary memory (tracemalloc, which sees NumPy's allocations) beyond the arrays each
call returns.
Prints a Markdown table.  Run from the repository root::

    python benchmarks/backward.py                 # every shape, 5 repeats
    python benchmarks/backward.py --repeats 9 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import npconv
from npconv.grad import conv_backward

ALL = ("input", "weight", "bias")

#: (name, x shape, w shape, conv keywords, gradients): ResNet layers at ImageNet sizes.
#: The stem's input gradient (of the image) is not needed in training; it is shown both
#: ways.
SHAPES: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any], tuple[str, ...]]] = [
    *[
        (f"3x3 64->64 @56, N={n}", (n, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}, ALL)
        for n in (1, 2, 4, 8)
    ],
    ("3x3 128->128 @28, N=8", (8, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}, ALL),
    (
        "3x3 s2 64->128 @56, N=8",
        (8, 64, 56, 56),
        (128, 64, 3, 3),
        {"padding": 1, "stride": 2},
        ALL,
    ),
    ("1x1 256->64 @56, N=8", (8, 256, 56, 56), (64, 256, 1, 1), {}, ALL),
    *[
        (
            f"7x7 s2 3->64 @224, N=8 ({'+'.join(needs)})",
            (8, 3, 224, 224),
            (64, 3, 7, 7),
            {"padding": 3, "stride": 2},
            needs,
        )
        for needs in (("weight", "bias"), ALL)
    ],
]


def median_seconds(runs: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median time of each of ``runs``, timed in turn ``repeats`` times after a warm-up.

    Interleaving keeps the ratios fair when the machine's load drifts.
    """
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, record in zip(runs, times):
            start = time.perf_counter()
            run()
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def peak_temporary_bytes(run: Callable[[], Any]) -> int:
    """Peak bytes allocated during ``run()`` beyond what it returns."""
    tracemalloc.start()
    result = run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrays = result if isinstance(result, tuple) else (result,)
    return peak - sum(a.nbytes for a in arrays)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="npconv.set_threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        npconv.set_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"npconv {npconv.__version__}, numpy {np.__version__}, threads {npconv.get_threads()}")
    print()
    print(
        "| layer (float32) | forward ms | backward ms | ratio | forward temp MiB "
        "| backward temp MiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, x_shape, w_shape, kwargs, needs in SHAPES:
        x = rng.standard_normal(x_shape, dtype=np.float32)
        w = rng.standard_normal(w_shape, dtype=np.float32)
        b = rng.standard_normal(w_shape[0], dtype=np.float32)
        y = npconv.conv(x, w, b, **kwargs)
        gy = rng.standard_normal(y.shape, dtype=np.float32)

        def forward() -> np.ndarray:
            return npconv.conv(x, w, b, **kwargs)  # noqa: B023

        def backward() -> tuple[np.ndarray, ...]:
            grads = conv_backward(gy, x, w, needs=needs, **kwargs)  # noqa: B023
            return tuple(g for g in grads if g is not None)

        t_fwd, t_bwd = median_seconds([forward, backward], args.repeats)
        m_fwd, m_bwd = (peak_temporary_bytes(run) / 2**20 for run in (forward, backward))
        print(
            f"| {name} | {t_fwd * 1e3:.1f} | {t_bwd * 1e3:.1f} | {t_bwd / t_fwd:.2f} "
            f"| {m_fwd:.0f} | {m_bwd:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
