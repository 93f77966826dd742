#!/usr/bin/env bash
# The "Forward convolution" table of BENCHMARKS.md: every layer of the suite, npconv's
# auto against PyTorch, each contender in a fresh process, five runs of the suite; the
# table takes each time's median over the runs. OpenBLAS's kernel caps are unset, so
# that NumPy's GEMMs run the CPU's own kernel (the header shows it).
# Usage: benchmarks/forward.sh [extra npconv bench options, e.g. --algorithms auto,im2col]
set -euo pipefail
cd "$(dirname "$0")/.."
uptime  # the load average: rerun when other work shares the cores
for run in 1 2 3 4 5; do
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE npconv bench --suite all --repeats 7 \
        --against torch --json "benchmarks/forward-$run.json" --plot benchmarks/forward.png "$@"
done
python benchmarks/table.py benchmarks/forward-[1-5].json
