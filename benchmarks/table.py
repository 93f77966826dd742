"""Print ``npconv bench --json`` files as the Markdown table of BENCHMARKS.md.

python benchmarks/table.py benchmarks/forward.json [more runs of the same suite ...]

Forward and ``--backward`` runs alike (a backward run's GFLOP count both gradients).

With several runs, every time is the median over the runs of each run's median (a
shared machine's slow spells then move no single figure).
"""

from __future__ import annotations

import json
import statistics
import sys


def load(paths: list[str]) -> dict:
    """The first run, with each time replaced by its median over all the runs (and the
    peak of temporary memory by its largest)."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    data = runs[0]
    for i, result in enumerate(data["results"]):
        for name in result["seconds"]:
            result["seconds"][name] = statistics.median(
                run["results"][i]["seconds"][name] for run in runs
            )
        result["auto_peak_temp_bytes"] = max(
            run["results"][i]["auto_peak_temp_bytes"] for run in runs
        )
    data["runs"] = len(runs)
    return data


def main(paths: list[str]) -> None:
    data = load(paths)
    machine = data["machine"]
    runs = f", then of {data['runs']} runs" if data["runs"] > 1 else ""
    timed = data.get("timed_seconds")
    fill = f" (or of as many as fill {timed} s)" if timed else ""
    warm = data.get("warm_calls")
    fill += f", after at least {warm} warm-up calls" if warm else ""
    gflops = machine.get("sgemm_gflops")
    peak = f"; float32 GEMM peak {gflops:.0f} GFLOP/s" if gflops else ""
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads; "
        f"NumPy {machine['numpy']} ({', '.join(machine.get('blas', []))}), "
        f"PyTorch {machine.get('torch', '-')}; {data['dtype']}, median of {data['repeats']} "
        f"repeats{fill}{runs}; {data.get('isolation', 'one process')}{peak}."
    )
    print()
    names = sorted({n for r in data["results"] for n in r["seconds"]} - {"torch", "scipy"})
    names.remove("auto")
    header = ["layer", "GFLOP", "torch GFLOP/s", "auto GFLOP/s", "auto uses", "auto x torch"]
    header += [f"{n} x torch" for n in names]
    header += ["auto faults/call", "auto first call s", "auto peak temp MiB", "output MiB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ratios = []
    for r in data["results"]:
        t = r["seconds"]
        ratio = t["torch"] / t["auto"]
        ratios.append(ratio)
        cells = [
            r["case"],
            f"{r['gflop']:.3f}",
            f"{r['gflop'] / t['torch']:.0f}",
            f"{r['gflop'] / t['auto']:.0f}",
            r.get("auto_choice", "-"),
            f"**{ratio:.2f}**",
        ]
        cells += [f"{t['torch'] / t[n]:.2f}" if n in t else "-" for n in names]
        faults = r["minor_faults_per_call"]["auto"]
        cells += [
            "-" if faults is None else f"{faults:.0f}",
            f"{r['first_call_seconds']['auto']:.1f}",
        ]
        cells += [f"{r['auto_peak_temp_bytes'] / 2**20:.1f}", f"{r['output_bytes'] / 2**20:.1f}"]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        f"auto vs torch: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, "
        f"max {max(ratios):.2f}x over {len(ratios)} layers."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
