#!/usr/bin/env bash
# The "Forward convolution" table of BENCHMARKS.md: every layer of the suite, npconv's
# auto (and the main algorithms) against PyTorch, each in a fresh process, on a quiet
# machine, three runs of the suite; the table takes each time's median over the runs.
# Usage: benchmarks/forward.sh [extra npconv bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
uptime  # the load average: rerun when other work shares the cores
for run in 1 2 3; do
    npconv bench --suite all --repeats 11 --against torch \
        --algorithms auto,im2col,shifted,winograd,winograd_f2 \
        --json "benchmarks/forward-$run.json" --plot benchmarks/forward.png "$@"
done
python benchmarks/table.py benchmarks/forward-1.json benchmarks/forward-2.json \
    benchmarks/forward-3.json
