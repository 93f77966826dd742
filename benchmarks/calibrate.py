"""Fit the prices of npconv's cost model (src/npconv/_cost.py) on this machine.

Times every plausible algorithm on every layer of the ``npconv bench`` suite, then fits
the seconds per unit of work of each kind by non-negative least squares on relative
error, for a few values of the GEMM efficiency knee, and prints the best constants to
copy into ``_cost.py`` with how often the refitted model picks the measured
winner.  Run it on a quiet machine (a few minutes)::

    python benchmarks/calibrate.py [--threads N] [--json times.json] [--from times.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

import numpy as np
from scipy.optimize import nnls

import npconv
from npconv import _cost as model
from npconv._bench_suites import SUITES
from npconv.algorithms import REGISTRY


def work(name: str, spec: npconv.ConvSpec, dtype: np.dtype) -> Counter[str]:
    """The units of work a registry row states for ``spec``."""
    return REGISTRY[name].work(spec, dtype)


def estimate(name: str, spec: npconv.ConvSpec, dtype: np.dtype, threads: int = 1) -> float:
    """Seconds that the cost model's current prices give ``name`` on ``spec``."""
    return model.seconds(work(name, spec, dtype), threads)


SKIP = ("naive", "matrix", "einsum")  # never the fastest: not worth timing


def measure(repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for case in SUITES["all"]:
        spec = case.spec()
        x = rng.standard_normal(case.x_shape).astype(np.float32)
        w = rng.standard_normal(case.w_shape).astype(np.float32)
        options = dict(layout=case.layout, **case.kwargs)
        f32 = np.dtype(np.float32)
        names = [
            n for n, a in REGISTRY.items() if n not in SKIP and a.unsupported(spec, f32) is None
        ]
        estimates = {n: estimate(n, spec, f32) for n in names}
        best = min(estimates.values())
        for name in [n for n in names if estimates[n] <= 10 * best]:
            npconv.conv(x, w, algorithm=name, **options)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                npconv.conv(x, w, algorithm=name, **options)
                times.append(time.perf_counter() - start)
            rows.append({"case": case.name, "algorithm": name, "seconds": statistics.median(times)})
            print(f"{case.name:30s} {name:12s} {rows[-1]['seconds'] * 1e3:9.2f} ms", flush=True)
    return rows


def fit(rows: list[dict], threads: int) -> tuple[dict[str, float], float]:
    """Prices minimising the relative error of every measured time; and that error."""
    specs = {c.name: c.spec() for c in SUITES["all"]}
    f32 = np.dtype(np.float32)
    a = np.array(
        [
            [
                work(r["algorithm"], specs[r["case"]], f32)[kind]
                / (1 if kind in model.SERIAL else threads)
                / r["seconds"]
                for kind in model.KINDS
            ]
            for r in rows
        ]
    )
    prices, residual = nnls(a, np.ones(len(rows)))
    return dict(zip(model.KINDS, prices)), residual / np.sqrt(len(rows))


def picks(rows: list[dict], threads: int, verbose: bool = False) -> tuple[int, int, float]:
    """(cases where the model picks the measured winner, cases, worst time lost)."""
    specs = {c.name: c.spec() for c in SUITES["all"]}
    by_case: dict[str, dict[str, float]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["algorithm"]] = r["seconds"]
    hits, worst = 0, 1.0
    for case, times in by_case.items():
        f32 = np.dtype(np.float32)
        pick = min(times, key=lambda n: estimate(n, specs[case], f32, threads))
        hits += times[pick] == min(times.values())
        if verbose and times[pick] > min(times.values()):
            winner = min(times, key=times.__getitem__)
            print(
                f"  {case}: picks {pick} ({times[pick] * 1e3:.2f} ms), "
                f"{winner} takes {times[winner] * 1e3:.2f} ms"
            )
        worst = max(worst, times[pick] / min(times.values()))
    return hits, len(by_case), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=npconv.get_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="save the measured times")
    parser.add_argument("--from", dest="source", help="fit saved times instead of measuring")
    args = parser.parse_args()
    npconv.set_threads(args.threads)
    if args.source:
        with open(args.source) as f:
            rows = json.load(f)
    else:
        rows = measure(args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    results = []
    for knee in (8, 16, 24, 32, 48, 64, 96):
        model.GEMM_HALF = knee
        prices, error = fit(rows, args.threads)
        model.SECONDS_PER.update(prices)
        results.append((picks(rows, args.threads), error, knee, prices))
    (hits, cases, worst), error, knee, prices = max(
        results, key=lambda r: (r[0][0], -r[0][2], -r[1])
    )
    model.GEMM_HALF = knee
    model.SECONDS_PER.update(prices)
    picks(rows, args.threads, verbose=True)
    print(f"GEMM_HALF = {knee}")
    print("SECONDS_PER = {")
    for kind, price in prices.items():
        print(f'    "{kind}": {price:.3g},')
    print("}")
    print(
        f"rms relative error {error:.2f}; picks the winner on {hits}/{cases} layers, "
        f"worst pick {worst:.2f}x the winner's time"
    )


if __name__ == "__main__":
    main()
