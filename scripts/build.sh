#!/usr/bin/env bash
# Installs the Debian dependencies (when missing) and builds cuae with the "release" preset into
# build/. Safe to run repeatedly: an up-to-date build does nothing. Arguments are build targets
# (default: everything), e.g. `scripts/build.sh cuae_cli` for the program alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="${CUDA_HOME:-/usr/local/cuda}/bin:$PATH"
if [ ! -f build/CMakeCache.txt ]; then
  cmake --preset release
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j "$(nproc)" "${targets[@]}"
