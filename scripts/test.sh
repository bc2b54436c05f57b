#!/usr/bin/env bash
# Quick start, part 2: builds cuae and runs the whole test suite with ctest. CUDA tests are
# reported as skipped on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
# One test program at a time per core; OpenMP threads must not spin against each other.
export OMP_WAIT_POLICY=PASSIVE
# Whether the CUDA tests can run here, and if not why (ctest's summary lists them as skipped).
gpu=$(./build/cuae version)
[[ $gpu == *"CUDA device available"* ]] || echo "cuae: the CUDA tests will be reported as skipped: ${gpu#*CUDA device }"
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
