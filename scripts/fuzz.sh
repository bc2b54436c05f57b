#!/usr/bin/env bash
# Fuzzes cuae's readers: builds the libFuzzer harnesses of fuzz/ with clang (AddressSanitizer and
# UBSan on) into build-fuzz/, then runs each for SECONDS (default 20) from its committed seed corpus
# (fuzz/corpus/<reader>/). New inputs go to build-fuzz/corpus-<reader>/, anything found to
# build-fuzz/findings/<reader>/: a crash, a sanitizer report, an exception other than cuae::Error,
# a hang over 10 s or an allocation over 1 GiB. A finding fails the script; copy it into
# fuzz/regressions/<reader>/ and fix the reader (tests/test_fuzz_regressions.cpp reads every file
# there on every test run).
#   scripts/fuzz.sh [SECONDS] [READER...]     readers: idx cifar safetensors npy cuaez config png jpeg
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
readers=("${@:-idx cifar safetensors npy cuaez config png jpeg}")
bash scripts/build.sh >/dev/null  # libcuae.so, which the harnesses link
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (Debian: clang)" >&2; exit 1; }
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  cmake -S fuzz -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build-fuzz -j "$(nproc)"
status=0
for r in ${readers[@]}; do
  mkdir -p "build-fuzz/corpus-$r" "build-fuzz/findings/$r"
  echo "fuzzing $r for ${seconds}s ..."
  if ! build-fuzz/fuzz_"$r" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
      -print_final_stats=1 -artifact_prefix="build-fuzz/findings/$r/" "build-fuzz/corpus-$r" "fuzz/corpus/$r" \
      >"build-fuzz/fuzz-$r.log" 2>&1; then
    echo "FINDING in $r: see build-fuzz/fuzz-$r.log and build-fuzz/findings/$r/" >&2
    grep -E "ERROR|SUMMARY|deadly|uncaught" "build-fuzz/fuzz-$r.log" | head -5 >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "build-fuzz/fuzz-$r.log" | tail -2 | tr '\n' ' '
    echo
  fi
done
exit $status
