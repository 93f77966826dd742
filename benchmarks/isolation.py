"""Why ``npconv bench`` gives every contender a process of its own: one layer, both ways.

Runs ``npconv bench`` on one layer, alternately as it runs by default (npconv's auto
and PyTorch each in a fresh process) and with ``--one-process`` (both in one process,
PyTorch timed right after NumPy/OpenBLAS ran auto), each in a fresh ``npconv bench``
process, ``--rounds`` times, and prints PyTorch's and auto's median times both ways
and the ratio (torch's time / auto's) each way gives.  Both ways warm the allocator
(``--warm-allocator``), so that only the thread pools differ: in one process, the
arrays of the earlier calls would otherwise spare auto the page faults of a fresh one.

Run from the repository root::

    python benchmarks/isolation.py                       # 3x3 128->128 @28, batch 1
    python benchmarks/isolation.py --only "1x1 256->64 @56 b8" --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MODES = {"alone": [], "one process": ["--one-process"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="3x3 128->128 @28 b1", help="a resnet layer's name")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each mode, alternated")
    parser.add_argument("--repeats", type=int, default=11, help="timed calls per run (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    bench = [sys.executable, "-m", "npconv", "bench", "--suite", "resnet", "--only", args.only]
    bench += ["--repeats", str(args.repeats), "--threads", str(args.threads), "--warm-allocator"]
    times: dict[str, dict[str, list[float]]] = {m: {"auto": [], "torch": []} for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        for _ in range(args.rounds):
            for mode, extra in MODES.items():
                subprocess.run([*bench, *extra, "--json", path], check=True, capture_output=True)
                with open(path) as f:
                    [record] = json.load(f)["results"]
                for name, seconds in times[mode].items():
                    seconds.append(record["seconds"][name])
    print(f"{args.only}, float32, {args.threads} threads; median of {args.rounds} runs each\n")
    print("| timed | torch ms | auto ms | torch / auto |")
    print("| --- | ---: | ---: | ---: |")
    for mode, measured in times.items():
        torch_ms, auto_ms = (statistics.median(measured[n]) * 1e3 for n in ("torch", "auto"))
        print(f"| {mode} | {torch_ms:.2f} | {auto_ms:.2f} | {torch_ms / auto_ms:.2f}x |")
    alone, shared = (statistics.median(times[m]["torch"]) for m in MODES)
    print(f"\nPyTorch after NumPy/OpenBLAS in one process: {shared / alone:.2f}x its time alone")


if __name__ == "__main__":
    main()
