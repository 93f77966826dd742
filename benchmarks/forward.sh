#!/usr/bin/env bash
# The "Forward convolution" table of BENCHMARKS.md: every layer of the suite, npconv's
# auto (and the main algorithms) against PyTorch, in one process, on a quiet machine.
# Usage: benchmarks/forward.sh [extra npconv bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
uptime  # the load average: rerun when other work shares the cores
npconv bench --suite all --repeats 7 --against torch \
    --algorithms auto,im2col,shifted,winograd,winograd_f2 \
    --json benchmarks/forward.json --plot benchmarks/forward.png "$@"
