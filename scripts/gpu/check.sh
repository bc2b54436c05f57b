#!/usr/bin/env bash
# The one script run on the GPU machine, from the repository root, with the build-gpu/ folder that
# scripts/gpu/build-bundle.sh staged on the build machine. It gives a full verdict in under
# 8 minutes, so that a failing part can be rerun (STEPS=...) while the GPU machine is still at hand.
#
#   OUT=<folder> scripts/gpu/check.sh
#
# Steps, with their planned times (seconds; what a healthy run should take) and their limits:
#   preflight    20   limit  60   GPU and driver, bundle unpacked, every library resolved (cuBLAS,
#                                 cuBLASLt, cuDNN found in the CUDA toolkit or Python's
#                                 site-packages/nvidia/*/lib), driver vs the bundle's CUDA runtime,
#                                 one CUDA test PASSED (not skipped); any failure stops the run
#   tests        90   limit 170   each build-gpu/tests/test_* once with --gtest_filter=*Cuda*, 4 at
#                                 a time; fails on a failed or skipped CUDA test, a crash, a timeout
#   sanitizer   120   limit 170   compute-sanitizer memcheck and racecheck on the smallest CUDA
#                                 case(s) of every op of kernels/ops.hpp's CUAE_OP_TABLE, plus
#                                 Executor.CudaMatchesCpuOverAdamSteps; fails on any error
#   bench       210   limit 300   bench_ops, bench_conv, bench_train (--cuae_quick, about 40 s
#                                 each, limit 90 s each), then the PyTorch peer
#                                 bench/peer/train_peer.py --quick (about 90 s, limit 150 s)
#   summary       5   limit  30   scripts/gpu/summarize.py: summary.json, results.json, the table
#   planned total 445 s (7 min 25 s); CHECK_DEADLINE (default 480 s) cuts every limit so the whole
#   run ends in time: a step that no longer fits is not started and counts as failed.
#
# What comes back in $OUT (4 files): check.log (this log, the table last), summary.json (per step:
# status, time, counts; the verdict), results.json (device, versions, every benchmark figure, the
# ceilings, the peer's figures, ours/peer per training case: commit it as
# bench/results/<device>_<date>_<commit>.json, the name summary.json gives), logs.tar.xz (every
# detailed log: gtest JSONs and consoles, sanitizer logs, benchmark JSONs and consoles,
# nvidia-smi, ldd).
#
# Environment (all optional):
#   OUT                 results folder (default ./gpu-out)
#   STEPS               which of "tests sanitizer bench" to run (default all three; preflight and
#                       summary always run), e.g. STEPS="tests sanitizer"
#   CHECK_DEADLINE      seconds for the whole run (default 480)
#   TEST_FILTER         gtest filter of the tests step (default *Cuda*)
#   TEST_PROGRAMS       test programs to run (default every build-gpu/tests/test_*)
#   TEST_JOBS, TEST_TIMEOUT             programs at a time (4), seconds per program (150)
#   SANITIZER_TOOLS     default "memcheck racecheck"
#   SANITIZER_FILTER    one gtest filter for every op-test program instead of the chosen cases
#   SANITIZER_PER_OP    cases per op (default 2)
#   SANITIZER_EXTRA     more "program:filter" runs (default test_graph:Executor.CudaMatchesCpuOverAdamSteps)
#   SANITIZER_JOBS, SANITIZER_TIMEOUT   runs at a time (4), seconds per run (100)
#   BENCH_PROGRAMS      default "bench_ops bench_conv bench_train"
#   BENCH_ARGS          default "--cuae_quick"; BENCH_FILTER: a --benchmark_filter for each
#   BENCH_TIMEOUT       seconds per benchmark program (default 90)
#   PEER                0 skips the PyTorch peer; PEER_ARGS (default "--quick"), PEER_TIMEOUT (150)
#   PREFLIGHT_TEST      program:pattern of the preflight's CUDA test (default test_ops:CudaMatchesCpu)
#   CUDA_LIB_DIRS       folders (colon-separated) searched first for cuBLAS, cuBLASLt, cuDNN
#   ALLOW_NO_CUDNN=1    go on without cuDNN (the bundled loader only: convolution tests fail)
# Exit status: 0 when every step that ran passed, 1 when one failed, 2 for a usage error,
# 3 when there is no GPU.
# The steps run through run_step "$fn", which shellcheck cannot follow:
# shellcheck disable=SC2317
set -uo pipefail

PLAN_PREFLIGHT=20;  LIMIT_PREFLIGHT=60
PLAN_TESTS=90;      LIMIT_TESTS=170
PLAN_SANITIZER=120; LIMIT_SANITIZER=170
PLAN_BENCH=210;     LIMIT_BENCH=300
PLAN_SUMMARY=5;     LIMIT_SUMMARY=30

# ---- no GPU: stop at once -------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "check: preflight failed: no GPU: nvidia-smi is not installed (this script runs on the GPU machine)" >&2
  exit 3
fi
smi_list=$(timeout 30 nvidia-smi -L 2>&1)
smi_rc=$?
if ((smi_rc != 0)) || ! grep -q '^GPU [0-9]' <<<"$smi_list"; then
  echo "check: preflight failed: no GPU: nvidia-smi lists none (exit $smi_rc: $(head -n 1 <<<"$smi_list"))" >&2
  exit 3
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root" || exit 2
B="$root/build-gpu"
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT" || { echo "check: cannot create OUT=$OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd -P)
L="$OUT/logs"
rm -rf "$L" "$OUT/check.log" "$OUT/summary.json" "$OUT/results.json" "$OUT/logs.tar.xz" "$OUT/logs.tar.gz"
mkdir -p "$L"
SUMMARIZE="$root/scripts/gpu/summarize.py"
START=$(date +%s)
DEADLINE=${CHECK_DEADLINE:-480}
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
NPROC=$(nproc 2>/dev/null || echo 4)

STEPS=${STEPS:-"tests sanitizer bench"}
for s in $STEPS; do
  case "$s" in preflight|tests|sanitizer|bench|summary) ;;
    *) echo "check: unknown step '$s' in STEPS (tests sanitizer bench)" >&2; exit 2 ;; esac
done
wants() { [[ " $STEPS " == *" $1 "* ]]; }

log() { printf '[check %s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/check.log"; }
elapsed() { echo $(($(date +%s) - START)); }
now() { date +%s; }
printf 'step\tstatus\tseconds\tplanned\ttimeout\treason\n' > "$L/steps.tsv"

# ---- runs ------------------------------------------------------------------------------------------
# run_one STEM SECONDS CMD...: runs CMD with a timeout, console to STEM.log, and writes STEM.run.json
# (exit status; 124/137 = timed out; seconds taken; the limit).
run_one() {
  local stem=$1 t=$2 t0 rc
  shift 2
  t0=$(now)
  timeout -k 5 "$t" "$@" > "$stem.log" 2>&1
  rc=$?
  printf '{"rc": %d, "seconds": %d, "timeout": %d}\n' "$rc" "$(($(now) - t0))" "$t" > "$stem.run.json"
  return "$rc"
}
not_started() {  # STEM REASON
  printf '{"rc": null, "seconds": 0, "timeout": 0, "note": "%s"}\n' "$2" > "$1.run.json"
}
# The seconds a run may take: its own limit, cut to what is left of the step.
clip() {
  local t=$1 left=$((STEP_END - $(now)))
  ((t > left)) && t=$left
  echo "$t"
}
# A small pool: at most N background runs at once.
POOL=()
pool_wait() {
  local max=$1 p alive
  while :; do
    alive=()
    for p in "${POOL[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    POOL=("${alive[@]}")
    ((${#POOL[@]} < max)) && return 0
    wait -n 2>/dev/null || sleep 0.2
  done
}
pool_add() { POOL+=("$1"); }
pool_drain() { wait; POOL=(); }

judge() {  # STEP: summarize.py's verdict on the step's files, one line in the log
  local line rc
  line=$(python3 "$SUMMARIZE" judge --logs "$L" --step "$1" 2>&1)
  rc=$?
  while IFS= read -r l; do log "$l"; done <<<"$line"
  STEP_REASON=$(head -n 1 <<<"$line" | sed "s/^$1: [a-z]*:\{0,1\} \{0,1\}//")
  return "$rc"
}

# ---- step: preflight ------------------------------------------------------------------------------
pf_fail() { STEP_REASON=$*; log "preflight: $*"; }

# Folders that may hold the CUDA libraries the bundle leaves to this machine.
candidate_dirs() {
  local d py
  if [ -n "${CUDA_LIB_DIRS:-}" ]; then tr ':' '\n' <<<"$CUDA_LIB_DIRS"; fi
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc 2>/dev/null || echo /nonexistent/bin/nvcc)")")")"; do
    [ -n "$d" ] && printf '%s\n' "$d/lib64" "$d/lib" "$d/targets/x86_64-linux/lib"
  done
  # Every Python on PATH: site-packages/nvidia/<package>/lib (cuDNN, cuBLAS, ...) and CUDA 13's
  # nvidia/cu13/lib.
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    timeout 20 "$py" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(p for p in sys.path if p.endswith("-packages"))
try:
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
except Exception:
    pass
for r in sorted(roots):
    for lib in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        print(lib)
EOF
  done
  printf '%s\n' /usr/lib/x86_64-linux-gnu /usr/lib64
}
find_lib() {  # SONAME: the first folder holding it
  local d hit
  while IFS= read -r d; do
    [ -n "$d" ] && [ -e "$d/$1" ] && { echo "$d"; return 0; }
  done <<<"$CANDIDATES"
  hit=$(timeout 15 find /usr /opt /root "${HOME:-/root}" -xdev -name "$1" -print -quit 2>/dev/null || true)
  [ -n "$hit" ] && { dirname "$hit"; return 0; }
  return 1
}

unpack() {  # ARCHIVE under build-gpu/
  tar -C "$B" -xJf "$B/$1" 2>>"$L/preflight/unpack.log" && return 0
  python3 - "$B/$1" "$B" <<'EOF' 2>>"$L/preflight/unpack.log"
import sys, tarfile
kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)
EOF
}

step_preflight() {
  local d="$L/preflight" gpu driver driver_cuda
  mkdir -p "$d"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)
  driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n 1)
  log "GPU: $gpu, driver $driver, supports CUDA ${driver_cuda:-?} ($(grep -c '^GPU [0-9]' <<<"$smi_list") GPU(s))"
  {
    echo "gpu_name=$gpu"
    echo "driver_version=$driver"
    echo "driver_cuda=$driver_cuda"
  } > "$d/info.env"

  # The bundle, unpacked once per bundle (build-gpu/.unpacked names the one unpacked last).
  [ -f "$B/bundle.env" ] || { pf_fail "no build-gpu/bundle.env: run scripts/gpu/build-bundle.sh on the build machine and carry build-gpu/"; return 1; }
  BUNDLE_COMMIT=unknown BUNDLE_DATE=unknown BUNDLE_SRC="" BUNDLE_CUDA="" BUNDLE_ARCH="" BUNDLE_PACKS=""
  BUNDLE_LIBCUAE=libcuae.so.0 BUNDLE_TARGET_LIBS="libcublas.so.13 libcublasLt.so.13 libcudnn.so.9"
  # shellcheck disable=SC1091
  . "$B/bundle.env"
  log "bundle: commit $BUNDLE_COMMIT, staged $BUNDLE_DATE, CUDA runtime $BUNDLE_CUDA, sm_$BUNDLE_ARCH"
  {
    echo "bundle_commit=$BUNDLE_COMMIT"
    echo "bundle_date=$BUNDLE_DATE"
    echo "bundle_cuda=$BUNDLE_CUDA"
  } >> "$d/info.env"
  local p stamp="$BUNDLE_COMMIT $BUNDLE_DATE"
  for p in ${BUNDLE_PACKS:-}; do
    [ -f "$B/$p" ] || { pf_fail "build-gpu/$p is missing: carry all of build-gpu/"; return 1; }
  done
  if [ -n "${BUNDLE_PACKS:-}" ] && [ "$(cat "$B/.unpacked" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "${B:?}/lib" "$B/tests" "$B/bench" "$B/cuae" "$B/${BUNDLE_LIBCUAE:?}"
    for p in $BUNDLE_PACKS; do
      unpack "$p" || { pf_fail "cannot unpack build-gpu/$p (see unpack.log)"; return 1; }
    done
    echo "$stamp" > "$B/.unpacked"
    log "unpacked $BUNDLE_PACKS"
  fi
  local missing=()
  for p in lib "$BUNDLE_LIBCUAE" tests/test_ops bench cuae; do [ -e "$B/$p" ] || missing+=("$p"); done
  ((${#missing[@]} == 0)) || { pf_fail "build-gpu/ lacks ${missing[*]} (not unpacked, or staged from an incomplete build)"; return 1; }

  # Libraries: cuBLAS, cuBLASLt, cuDNN from this machine; everything else from the bundle.
  CANDIDATES=$(candidate_dirs | awk 'NF && !seen[$0]++')
  local libpath="$B:$B/lib" name dir found=() not_found=()
  for name in ${BUNDLE_TARGET_LIBS:-}; do
    if dir=$(find_lib "$name"); then
      found+=("$name=$dir")
      case ":$libpath:" in *":$dir:"*) ;; *) libpath="$libpath:$dir" ;; esac
    else
      not_found+=("$name")
    fi
  done
  for name in "${found[@]}"; do log "found ${name%%=*} in ${name#*=}"; done
  for name in "${not_found[@]}"; do
    case "$name" in
      libcudnn.so*)
        if [ "${ALLOW_NO_CUDNN:-0}" = 1 ]; then
          log "warning: no cuDNN here: using the bundled loader (convolution ops will fail)"
          libpath="$libpath:$B/lib/fallback"
          continue
        fi ;;
    esac
    pf_fail "$name not found: searched CUDA_LIB_DIRS, the CUDA toolkit, every Python's site-packages/nvidia/*/lib, /usr and /opt (set CUDA_LIB_DIRS to its folder)"
    return 1
  done
  # cuDNN's loader opens its engine libraries from its own folder or the library path.
  for name in "${found[@]}"; do
    case "$name" in
      libcudnn.so*=*)
        dir=${name#*=}
        if ! ls "$dir"/libcudnn_graph.so* >/dev/null 2>&1 || ! ls "$dir"/libcudnn_engines_precompiled.so* >/dev/null 2>&1; then
          pf_fail "cuDNN's loader is in $dir but not its engine libraries (libcudnn_graph, libcudnn_engines_precompiled)"
          return 1
        fi ;;
    esac
  done
  export LD_LIBRARY_PATH="$libpath${ORIG_LD_LIBRARY_PATH:+:$ORIG_LD_LIBRARY_PATH}"

  # Every staged program and libcuae resolve every library.
  local bins=() b out miss
  for b in "$B"/tests/test_* "$B"/bench/bench_* "$B/cuae" "$B/$BUNDLE_LIBCUAE"; do
    [ -f "$b" ] && [ -x "$b" ] && bins+=("$b")
  done
  : > "$d/ldd.txt"
  ldd_missing() {
    miss=()
    for b in "${bins[@]}"; do
      out=$(ldd "$b" 2>&1)
      printf '== %s\n%s\n' "${b#"$B"/}" "$out" >> "$d/ldd.txt"
      while read -r name _; do miss+=("$name (${b#"$B"/})"); done < <(grep 'not found' <<<"$out" | sed 's/ =>.*//; s/^[[:space:]]*//')
    done
  }
  ldd_missing
  if ((${#miss[@]})) && grep -Eq "(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found|lib(stdc\+\+|gcc_s)\.so" <<<"${miss[*]}"; then
    log "this machine's libstdc++ is older than the build's: using the bundled one"
    export LD_LIBRARY_PATH="$B/lib/compat:$LD_LIBRARY_PATH"
    : > "$d/ldd.txt"
    ldd_missing
  fi
  if ((${#miss[@]})); then
    pf_fail "missing libraries: $(printf '%s\n' "${miss[@]}" | sed 's/ (.*//' | sort | uniq -c | awk '{printf "%s%s (%d programs)", (NR>1?", ":""), $2, $1}') (ldd.txt in logs.tar.xz)"
    return 1
  fi
  log "ldd: $((${#bins[@]} - 1)) programs and libcuae resolve every library"
  echo "ld_library_path=$LD_LIBRARY_PATH" >> "$d/info.env"

  # The driver must support the bundle's CUDA runtime.
  log "CUDA: the driver supports ${driver_cuda:-?}, the bundle's runtime is $BUNDLE_CUDA"
  if [ -z "$driver_cuda" ]; then
    log "warning: nvidia-smi does not say which CUDA version the driver supports"
  else
    local dmaj=${driver_cuda%%.*} dmin rmaj=${BUNDLE_CUDA%%.*} rmin
    dmin=$(cut -d. -f2 <<<"$driver_cuda.0")
    rmin=$(cut -d. -f2 <<<"$BUNDLE_CUDA.0")
    if ((dmaj < rmaj)); then
      pf_fail "the driver ($driver) supports CUDA $driver_cuda, older than the bundle's runtime CUDA $BUNDLE_CUDA"
      return 1
    elif ((dmaj == rmaj && dmin < rmin)); then
      log "note: CUDA $driver_cuda driver, $BUNDLE_CUDA runtime: works by CUDA's minor version compatibility (sm_90 code, nothing to JIT)"
    fi
  fi

  # Paths compiled into the tests: the build machine's source tree (golden files, configs).
  export CUAE_SOURCE_DIR="$root" CUAE_BINARY_DIR="$B"
  if [ -n "${BUNDLE_SRC:-}" ] && [ "$BUNDLE_SRC" != "$root" ]; then
    if [ ! -e "$BUNDLE_SRC" ]; then
      if mkdir -p "$(dirname "$BUNDLE_SRC")" 2>/dev/null && ln -s "$root" "$BUNDLE_SRC" 2>/dev/null; then
        log "linked $BUNDLE_SRC -> $root (the source path compiled into the tests)"
      else
        log "warning: cannot link $BUNDLE_SRC -> $root: tests that read files of the source tree will fail"
      fi
    elif [ ! "$BUNDLE_SRC/tests/golden" -ef "$root/tests/golden" ]; then
      log "warning: $BUNDLE_SRC (compiled into the tests) is another tree than $root"
    fi
  fi
  if [ -z "${CUAE_FASHION_MNIST_DIR:-}" ]; then
    if [ -d "$B/data/fashion-mnist" ]; then
      export CUAE_FASHION_MNIST_DIR="$B/data/fashion-mnist"
    else
      log "warning: the bundle has no Fashion-MNIST (build-bundle.sh --no-data): tests that read it will fail"
    fi
  fi

  {
    echo "== date"; date -u +%Y-%m-%dT%H:%M:%SZ
    echo "== bundle"; cat "$B/bundle.env"
    echo "== nvidia-smi"; timeout 20 nvidia-smi 2>&1
    echo "== nvidia-smi -q (clocks, performance, ECC)"; timeout 20 nvidia-smi -q -d CLOCK,PERFORMANCE,ECC 2>&1 | head -n 120
    echo "== LD_LIBRARY_PATH"; tr ':' '\n' <<<"$LD_LIBRARY_PATH"
    echo "== tools"; for t in compute-sanitizer nvcc python3 xz; do printf '%-18s %s\n' "$t" "$(command -v "$t" || echo -)"; done
    echo "== CPU"; nproc; grep -m1 'model name' /proc/cpuinfo
  } > "$L/system.txt" 2>&1

  # One CUDA test must PASS here (a skipped one says why).
  local prog=${PREFLIGHT_TEST%%:*} pattern=${PREFLIGHT_TEST#*:} test rc reason
  [ -x "$B/tests/$prog" ] || { pf_fail "build-gpu/tests/$prog is not in the bundle"; return 1; }
  test=$(cd "$B/tests" && timeout 30 "./$prog" --gtest_list_tests 2>/dev/null \
    | awk '/^[^ ]/ {s=$1} /^  / {print s $1}' | grep -F -- "$pattern" | head -n 1)
  [ -n "$test" ] || { pf_fail "$prog lists no test containing '$pattern' (or cannot start: see ldd.txt)"; return 1; }
  (cd "$B/tests" && timeout -k 5 60 "./$prog" --gtest_filter="$test") > "$d/cuda_test.log" 2>&1
  rc=$?
  echo "cuda_test=$test" >> "$d/info.env"
  if grep -q '^\[  SKIPPED \]' "$d/cuda_test.log"; then
    reason=$(awk -v t="$test" 'index($0, "[ RUN      ] " t) == 1 {on = 1; next} /^\[  SKIPPED \]/ {on = 0} on && !/: Skipped$/' "$d/cuda_test.log" | tr '\n' ' ' | sed 's/[[:space:]]*$//')
    pf_fail "the CUDA test $prog $test was SKIPPED, not run: ${reason:-no reason printed}"
    return 1
  fi
  if ((rc != 0)) || ! grep -q '^\[  PASSED  \] 1 test' "$d/cuda_test.log"; then
    pf_fail "the CUDA test $prog $test did not pass (exit $rc): $(grep -v '^$' "$d/cuda_test.log" | tail -n 3 | tr '\n' ' ')"
    return 1
  fi
  log "CUDA test $prog $test: PASSED"
  return 0
}

# ---- step: tests ----------------------------------------------------------------------------------
step_tests() {
  local d="$L/tests" progs=() p name t
  mkdir -p "$d"
  if [ -n "${TEST_PROGRAMS:-}" ]; then
    for name in $TEST_PROGRAMS; do progs+=("$B/tests/$name"); done
  else
    # The op tests first: they hold most of the CUDA cases.
    for p in "$B"/tests/test_ops* "$B"/tests/test_*; do
      [[ "$(basename "$p")" == *.* ]] && continue
      [[ " ${progs[*]} " == *" $p "* ]] || progs+=("$p")
    done
  fi
  local jobs=${TEST_JOBS:-4}
  local threads=$((NPROC / jobs > 0 ? NPROC / jobs : 1))
  log "${#progs[@]} test programs, --gtest_filter='${TEST_FILTER:-*Cuda*}', $jobs at a time, ${TEST_TIMEOUT:-150} s each"
  for p in "${progs[@]}"; do
    name=$(basename "$p")
    if [ ! -x "$p" ]; then not_started "$d/$name" "not in the bundle"; continue; fi
    pool_wait "$jobs"
    t=$(clip "${TEST_TIMEOUT:-150}")
    if ((t < 5)); then not_started "$d/$name" "not started: the step's time was up"; continue; fi
    (cd "$B/tests" && OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads run_one "$d/$name" "$t" "$p" \
      --gtest_filter="${TEST_FILTER:-*Cuda*}" --gtest_output="json:$d/$name.json") &
    pool_add $!
  done
  pool_drain
  judge tests
}

# ---- step: sanitizer ------------------------------------------------------------------------------
find_sanitizer() {
  local c d
  c=$(command -v compute-sanitizer 2>/dev/null) && { echo "$c"; return 0; }
  for d in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc 2>/dev/null || echo /x/bin/nvcc)")")")"; do
    for c in "$d/bin/compute-sanitizer" "$d/compute-sanitizer/compute-sanitizer"; do
      [ -n "$d" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
  done
  return 1
}

step_sanitizer() {
  local d="$L/sanitizer" cs p name lists=() plan=() item tool t filter
  mkdir -p "$d"
  cs=$(find_sanitizer) || { STEP_REASON="compute-sanitizer not found (PATH, CUDA_HOME, /usr/local/cuda)"; log "sanitizer: $STEP_REASON"; return 1; }
  log "compute-sanitizer: $cs ($("$cs" --version 2>/dev/null | grep -o 'Version [0-9.]*' | head -n 1))"
  for p in "$B"/tests/test_ops*; do
    name=$(basename "$p")
    [[ "$name" == *.* ]] && continue
    (cd "$B/tests" && timeout 30 "$p" --gtest_list_tests > "$d/list_$name.txt" 2>&1)
    lists+=(--list "$name=$d/list_$name.txt")
  done
  if [ -n "${SANITIZER_FILTER:-}" ]; then
    for item in "${lists[@]}"; do
      [ "$item" = --list ] && continue
      item=${item%%=*}
      plan+=("$item"$'\t'"$SANITIZER_FILTER")
    done
  else
    mapfile -t plan < <(python3 "$SUMMARIZE" sanitizer-cases --ops "$root/kernels/ops.hpp" "${lists[@]}" \
      --per-op "${SANITIZER_PER_OP:-2}" --out "$d/selection.json" 2>"$d/selection.log")
    [ -f "$d/selection.json" ] || { STEP_REASON="choosing the cases failed: $(tail -n 1 "$d/selection.log")"; log "sanitizer: $STEP_REASON"; return 1; }
  fi
  for item in ${SANITIZER_EXTRA-test_graph:Executor.CudaMatchesCpuOverAdamSteps}; do
    plan+=("${item%%:*}"$'\t'"${item#*:}")
  done
  ((${#plan[@]})) || { STEP_REASON="no case to run"; log "sanitizer: $STEP_REASON"; return 1; }
  for item in "${plan[@]}"; do
    log "sanitizer: ${item%%$'\t'*}: $(tr ':' '\n' <<<"${item#*$'\t'}" | grep -c .) case(s)"
  done
  local jobs=${SANITIZER_JOBS:-4}
  for tool in ${SANITIZER_TOOLS:-memcheck racecheck}; do
    for item in "${plan[@]}"; do
      name=${item%%$'\t'*}
      filter=${item#*$'\t'}
      if [ ! -x "$B/tests/$name" ]; then not_started "$d/${tool}__$name" "not in the bundle"; continue; fi
      pool_wait "$jobs"
      t=$(clip "${SANITIZER_TIMEOUT:-100}")
      if ((t < 5)); then not_started "$d/${tool}__$name" "not started: the step's time was up"; continue; fi
      (cd "$B/tests" && OMP_NUM_THREADS=4 run_one "$d/${tool}__$name" "$t" "$cs" --tool "$tool" --error-exitcode 99 \
        --print-limit 20 "$B/tests/$name" --gtest_filter="$filter" --gtest_output="json:$d/${tool}__$name.json") &
      pool_add $!
    done
  done
  pool_drain
  judge sanitizer
}

# ---- step: bench ----------------------------------------------------------------------------------
step_bench() {
  local d="$L/bench" name prog t rc filter=()
  mkdir -p "$d"
  [ -n "${BENCH_FILTER:-}" ] && filter=(--benchmark_filter="$BENCH_FILTER")
  for name in ${BENCH_PROGRAMS:-bench_ops bench_conv bench_train}; do
    prog="$B/bench/$name"
    if [ ! -x "$prog" ]; then not_started "$d/$name" "not in the bundle"; log "$name: not in the bundle"; continue; fi
    t=$(clip "${BENCH_TIMEOUT:-90}")
    if ((t < 10)); then not_started "$d/$name" "not started: the step's time was up"; log "$name: not started (time)"; continue; fi
    # shellcheck disable=SC2086
    CUAE_COMMIT="$BUNDLE_COMMIT" run_one "$d/$name" "$t" "$prog" ${BENCH_ARGS---cuae_quick} "${filter[@]}" \
      --benchmark_out="$d/$name.json" --benchmark_out_format=json
    rc=$?
    log "$name: exit $rc in $(sed -n 's/.*"seconds": \([0-9]*\).*/\1/p' "$d/$name.run.json") s$( ((rc == 124 || rc == 137)) && echo " (timed out after $t s)")"
  done
  # The PyTorch peer of bench_train, with this machine's own library path (torch brings its own).
  local err
  if [ "${PEER:-1}" = 0 ]; then
    echo "disabled (PEER=0)" > "$d/peer.skip"
  elif ! err=$(LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" PEER_DEVICE="$([[ " ${PEER_ARGS:-} " == *" --device cpu "* ]] && echo cpu)" \
      timeout 90 python3 -c 'import os, sys, torch
sys.exit(0 if os.environ["PEER_DEVICE"] == "cpu" or torch.cuda.is_available() else "torch sees no CUDA device")' 2>&1); then
    echo "torch not usable: $(tail -n 1 <<<"$err")" > "$d/peer.skip"
  else
    t=$(clip "${PEER_TIMEOUT:-150}")
    if ((t < 30)); then
      not_started "$d/peer" "not started: the step's time was up"
    else
      # shellcheck disable=SC2086
      LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" run_one "$d/peer" "$t" python3 "$root/bench/peer/train_peer.py" \
        ${PEER_ARGS---quick} --budget-s $((t - 60)) --out "$d/peer.json"
      log "peer: exit $? in $(sed -n 's/.*"seconds": \([0-9]*\).*/\1/p' "$d/peer.run.json") s"
    fi
  fi
  [ -f "$d/peer.skip" ] && log "peer: skipped: $(cat "$d/peer.skip")"
  judge bench
}

# ---- running the steps ----------------------------------------------------------------------------
FAILED=0
run_step() {  # NAME PLANNED LIMIT FUNCTION
  local name=$1 planned=$2 limit=$3 fn=$4 avail t0 rc status dt
  avail=$((DEADLINE - $(elapsed) - LIMIT_SUMMARY))
  if ((avail < 15)); then
    printf '%s\tfailed\t0\t%s\t0\tnot started: the %s s deadline (CHECK_DEADLINE) was reached\n' "$name" "$planned" "$DEADLINE" >> "$L/steps.tsv"
    log "== $name: not started: the $DEADLINE s deadline was reached"
    FAILED=1
    return 1
  fi
  ((limit > avail)) && limit=$avail
  log "== $name: planned $planned s, limit $limit s"
  STEP_END=$(($(now) + limit))
  STEP_REASON=""
  t0=$(now)
  "$fn"
  rc=$?
  dt=$(($(now) - t0))
  if ((rc == 0)); then status=passed; else status=failed; FAILED=1; fi
  printf '%s\t%s\t%d\t%d\t%d\t%s\n' "$name" "$status" "$dt" "$planned" "$limit" "$(printf '%s' "$STEP_REASON" | tr '\t\n' '  ' | cut -c1-400)" >> "$L/steps.tsv"
  log "== $name: $status in $dt s (planned $planned s)${STEP_REASON:+: $STEP_REASON}"
  return "$rc"
}

finish() {
  local rc table
  log "== summary: planned $PLAN_SUMMARY s"
  table=$(timeout "$LIMIT_SUMMARY" python3 "$SUMMARIZE" report --logs "$L" --out "$OUT" 2>&1)
  rc=$?
  if ((rc > 1)); then
    table="$table"$'\n'"check: summarize.py failed (exit $rc); the logs are in logs.tar.*"
    rc=1
  fi
  ((FAILED)) && rc=1
  cp "$OUT/check.log" "$L/check.log" 2>/dev/null
  if tar -C "$OUT" -cJf "$OUT/logs.tar.xz" logs 2>/dev/null || python3 -c 'import sys, tarfile
with tarfile.open(sys.argv[1] + "/logs.tar.gz", "w:gz") as t: t.add(sys.argv[1] + "/logs", "logs")' "$OUT"; then
    rm -rf "$L"
  else
    log "warning: could not pack the logs; they stay in $L"
  fi
  log "done in $(elapsed) s: exit $rc; $OUT holds $(cd "$OUT" && find . -maxdepth 1 -type f -printf '%P ' )"
  printf '%s\n' "$table" | tee -a "$OUT/check.log"
  exit "$rc"
}

PREFLIGHT_TEST=${PREFLIGHT_TEST:-test_ops:CudaMatchesCpu}
log "cuae GPU check in $root, results in $OUT; steps: preflight $STEPS summary; deadline $DEADLINE s"
log "planned: preflight $PLAN_PREFLIGHT s, tests $PLAN_TESTS s, sanitizer $PLAN_SANITIZER s, bench $PLAN_BENCH s, summary $PLAN_SUMMARY s"
if ! run_step preflight "$PLAN_PREFLIGHT" "$LIMIT_PREFLIGHT" step_preflight; then
  log "preflight failed: nothing else runs"
  finish
fi
wants tests && run_step tests "$PLAN_TESTS" "$LIMIT_TESTS" step_tests
wants sanitizer && run_step sanitizer "$PLAN_SANITIZER" "$LIMIT_SANITIZER" step_sanitizer
wants bench && run_step bench "$PLAN_BENCH" "$LIMIT_BENCH" step_bench
finish
