#!/usr/bin/env bash
# The test suite under AddressSanitizer and UBSan, in the CPU-only configuration: builds the
# "sanitize" preset (CUAE_CUDA=OFF: no CUDA toolkit used, the CUDA backend reports itself
# unavailable and its tests are skipped; the engine code instrumented) into build-sanitize/ and
# runs every test there. Any sanitizer report fails its test. With scripts/test.sh's CUDA build,
# CI covers both configurations.
#   scripts/test-sanitize.sh [ctest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -f build-sanitize/CMakeCache.txt ]; then
  cmake --preset sanitize
fi
cmake --build build-sanitize -j "$(nproc)"
export OMP_WAIT_POLICY=PASSIVE
# halt_on_error: the first report ends the program (a non-zero exit fails the test);
# leak reports are on, with the suppressions of third-party start-up allocations.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# The install check builds an uninstrumented program against the library: it cannot load the
# instrumented one, so it runs in the plain build only.
ctest --test-dir build-sanitize --output-on-failure -j "$(nproc)" -E '^Install\.' "$@"
