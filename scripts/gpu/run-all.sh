#!/usr/bin/env bash
# Runs cuae's tests, a compute-sanitizer pass and the benchmarks ON the GPU machine, from the
# repository root, using the build-gpu/ folder that scripts/gpu/build-bundle.sh staged elsewhere.
# It first unpacks build-gpu/lib.tar.xz and build-gpu/programs.tar.xz in place (once per bundle),
# so afterwards build-gpu/ is an ordinary tree: ctest --test-dir build-gpu works by hand too.
# See scripts/gpu/README.md.
#
# Environment:
#   OUT               folder for logs and results (default ./gpu-out); the files written:
#                     system.txt run-all.log ctest.log ctest-junit.xml sanitizer.log, and per
#                     benchmark program <program>.txt (its console table and messages) and
#                     <program>.json (Google Benchmark JSON): bench_ops.*, bench_regularizers.*
#   STEPS             which steps, in order (default "tests sanitizer bench"); "unpack" runs none:
#                     it only unpacks build-gpu/ and points it here, for running programs by hand
#   CTEST_ARGS        extra ctest arguments (e.g. "-R Cuda")
#   CTEST_EXCLUDE     ctest -E regex (default "^Install\." : the install test needs the whole build
#                     tree, which stays on the build machine; set it empty to run everything)
#   CTEST_JOBS        ctest parallelism (default 4; the GPU is shared by the CUDA tests)
#   OP_TEST           the op test programs under build-gpu/tests the sanitizer runs (default every
#                     test_ops* program: test_ops, test_ops_conv, test_ops_pool, test_ops_vae, ...)
#   SANITIZER_TOOLS   compute-sanitizer tools to run, in order (default "memcheck")
#   SANITIZER_FILTER  --gtest_filter for the sanitizer runs (default "*")
#   SANITIZER_TIMEOUT seconds per tool (default 300)
#   BENCH_PROGRAMS    which benchmark programs, in order (default: every build-gpu/bench/bench_*)
#   BENCH_ARGS        extra arguments for each of them (e.g. "--cuae_quick --benchmark_filter=dense")
#   BENCH_TIMEOUT     seconds per program (default 420)
#   CUDA_LIB_DIRS     extra folders to search first for cuBLAS/cuDNN (colon-separated)
# Exit status: 0 when every step that ran passed; otherwise the number of failed steps.
set -uo pipefail

root=$(pwd -P)
b="$root/build-gpu"
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
STEPS=${STEPS:-"tests sanitizer bench"}
runlog="$OUT/run-all.log"
: > "$runlog"
log() { echo "[run-all $(date -u +%H:%M:%S)] $*" | tee -a "$runlog"; }
die() { log "error: $*"; exit 100; }

[ -f "$b/bundle.env" ] || die "no build-gpu/bundle.env here ($root): run scripts/gpu/build-bundle.sh on the build machine and carry build-gpu/"
# shellcheck disable=SC1091
. "$b/bundle.env"
log "bundle: commit $BUNDLE_COMMIT, built $BUNDLE_DATE with CUDA $BUNDLE_CUDA for sm_$BUNDLE_ARCH"

# ---- unpacking ---------------------------------------------------------------------------------
# build-bundle.sh packs the libraries (lib.tar.xz) and the programs with libcuae and the ctest
# files (programs.tar.xz). Both are unpacked in place, once per bundle: build-gpu/.unpacked names
# the bundle last unpacked here, so a newly carried bundle is unpacked afresh.
unpack() {  # $1 = archive under build-gpu
  log "unpacking $1"
  tar -C "$b" -xJf "$b/$1" 2>>"$runlog" && return 0
  # No xz on the machine: Python's lzma does the same.
  python3 -c 'import sys, tarfile
kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
tarfile.open(sys.argv[1]).extractall(sys.argv[2], **kw)' "$b/$1" "$b" 2>>"$runlog"
}
stamp="$BUNDLE_COMMIT $BUNDLE_DATE"
packs=()
for f in "$b"/*.tar.xz; do [ -f "$f" ] && packs+=("$(basename "$f")"); done
if ((${#packs[@]})) && [ "$(cat "$b/.unpacked" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "${b:?}/lib" "$b/.ctest-root"
  for p in "${packs[@]}"; do
    unpack "$p" || die "cannot unpack $p (no xz, no python3)"
  done
  echo "$stamp" > "$b/.unpacked"
fi
for p in ${BUNDLE_PACKS:-}; do [ -f "$b/$p" ] || die "build-gpu/$p is missing (bundle.env lists it): carry all of build-gpu/"; done
[ -d "$b/lib" ] || die "build-gpu has neither lib/ nor lib.tar.xz"
[ -f "$b/CTestTestfile.cmake" ] || die "build-gpu has no ctest files (neither unpacked nor programs.tar.xz)"

# Folders that may hold the CUDA libraries the bundle left to this machine: the toolkit, then the
# Python wheels (nvidia-cublas, nvidia-cudnn-cu13 ...: site-packages/nvidia/<pkg>/lib, or the
# CUDA 13 wheels' shared nvidia/cu13/lib).
candidate_dirs() {
  local d
  if [ -n "${CUDA_LIB_DIRS:-}" ]; then tr ':' '\n' <<<"$CUDA_LIB_DIRS"; fi
  for d in "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc 2>/dev/null || echo /nonexistent/bin/nvcc)")")")"; do
    [ -n "$d" ] && printf '%s\n' "$d/lib64" "$d/lib" "$d/targets/x86_64-linux/lib"
  done
  local py
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("-packages")])
for r in sorted(roots):
    for lib in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        print(lib)
EOF
  done
  printf '%s\n' /usr/lib/x86_64-linux-gnu /usr/lib64
}

find_lib() {  # $1 = soname; prints the first folder holding it
  local d
  while IFS= read -r d; do
    [ -n "$d" ] && [ -e "$d/$1" ] && { echo "$d"; return 0; }
  done < <(candidate_dirs)
  # Last resort: a bounded search of the usual install roots.
  local hit
  hit=$(find /usr /opt /root "$HOME" -xdev -name "$1" -print -quit 2>/dev/null || true)
  [ -n "$hit" ] && { dirname "$hit"; return 0; }
  return 1
}

libpath="$b:$b/lib"
missing_target=()
for name in $BUNDLE_TARGET_LIBS; do
  if dir=$(find_lib "$name"); then
    log "found $name in $dir"
    case ":$libpath:" in *":$dir:"*) ;; *) libpath="$libpath:$dir" ;; esac
  else
    missing_target+=("$name")
  fi
done
for name in "${missing_target[@]}"; do
  case "$name" in
    libcudnn.so*)
      log "warning: no cuDNN on this machine; using the bundled loader only (cuDNN ops will fail, the rest runs)"
      libpath="$libpath:$b/lib/fallback" ;;
    *) log "warning: $name not found on this machine; programs that need it will not start" ;;
  esac
done
export LD_LIBRARY_PATH="$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The bundled C++ runtime only if this machine's is too old for the binaries.
probe="$b/bench/bench_ops"
[ -x "$probe" ] || probe=$(find "$b/tests" -maxdepth 1 -type f -perm -u+x -name 'test_*' -print -quit 2>/dev/null)
if [ -n "$probe" ] && ldd "$probe" 2>&1 | grep -Eq "(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found|lib(stdc\+\+|gcc_s)\.so[.0-9]* => not found"; then
  log "this machine's libstdc++ is older than the build's: using the bundled one"
  export LD_LIBRARY_PATH="$b/lib/compat:$LD_LIBRARY_PATH"
fi

# ---- paths baked in at build time ---------------------------------------------------------------
# ctest's files name build-gpu by its absolute path on the build machine: point them here.
# build-gpu/.ctest-root remembers where they point now, so a second run rewrites nothing.
ctest_root=$(cat "$b/.ctest-root" 2>/dev/null || printf '%s' "$BUNDLE_OUT")
if [ "$ctest_root" != "$b" ]; then
  from=$(printf '%s' "$ctest_root" | sed 's/[][\\.*^$|]/\\&/g')
  to=$(printf '%s' "$b" | sed 's/[\\&|]/\\&/g')
  while IFS= read -r f; do
    sed -i "s|$from|$to|g" "$f"
  done < <(find "$b" \( -name CTestTestfile.cmake -o -name '*_include.cmake' -o -name '*_tests.cmake' \) -type f)
  printf '%s\n' "$b" > "$b/.ctest-root"
  log "ctest files now point at $b"
fi
# The test programs were compiled with the build machine's source and build folders. Offer them
# here too: environment variables for code that reads them, and (best effort) links at the old
# paths for code that does not.
export CUAE_SOURCE_DIR="$root" CUAE_BINARY_DIR="$b"
# Fashion-MNIST carried with the bundle (build-bundle.sh --with-data), if it was.
if [ -d "$b/data/fashion-mnist" ]; then export CUAE_FASHION_MNIST_DIR="$b/data/fashion-mnist"; fi
if [ "$BUNDLE_SRC" != "$root" ] && [ ! -e "$BUNDLE_SRC" ]; then
  if mkdir -p "$(dirname "$BUNDLE_SRC")" 2>/dev/null && ln -s "$root" "$BUNDLE_SRC" 2>/dev/null; then
    log "linked $BUNDLE_SRC -> $root (paths compiled into the tests)"
  else
    log "warning: cannot link $BUNDLE_SRC -> $root; tests that open files by compiled-in path may fail"
  fi
fi
obj_here="$root/$(basename "$BUNDLE_OBJ")"
[ -e "$obj_here" ] || ln -s build-gpu "$obj_here" 2>/dev/null || true

# ---- system report -------------------------------------------------------------------------------
{
  echo "== date";  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "== bundle"; cat "$b/bundle.env"
  echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi not available"
  echo "== nvidia-smi -q (clocks, ecc)"; nvidia-smi -q -d CLOCK,ECC,PERFORMANCE 2>&1 | head -n 80 || true
  echo "== LD_LIBRARY_PATH"; tr ':' '\n' <<<"$LD_LIBRARY_PATH"
  echo "== ldd $probe"; ldd "$probe" 2>&1 || true
  echo "== tools"; for t in ctest cmake compute-sanitizer nvcc python3; do printf '%-18s %s\n' "$t" "$(command -v "$t" || echo -)"; done
} > "$OUT/system.txt" 2>&1
log "system report in system.txt"

failed=0
step_tests() {
  log "step tests"
  local rc=0
  if command -v ctest >/dev/null 2>&1; then
    local exclude=()
    [ -n "${CTEST_EXCLUDE-^Install\.}" ] && exclude=(-E "${CTEST_EXCLUDE-^Install\.}")
    # shellcheck disable=SC2086
    ctest --test-dir "$b" --output-on-failure --timeout 600 -j "${CTEST_JOBS:-4}" "${exclude[@]}" \
      --output-junit "$OUT/ctest-junit.xml" ${CTEST_ARGS:-} > "$OUT/ctest.log" 2>&1 || rc=$?
  else
    # No ctest: run each test program directly; GoogleTest prints its own summary.
    log "ctest not found: running the test programs directly"
    local t
    : > "$OUT/ctest.log"
    for t in "$b"/tests/test_*; do
      [ -x "$t" ] && [ -f "$t" ] || continue
      echo "=== $t" >> "$OUT/ctest.log"
      (cd "$b/tests" && "$t") >> "$OUT/ctest.log" 2>&1 || rc=1
    done
  fi
  tail -n 15 "$OUT/ctest.log" | tee -a "$runlog"
  log "tests: exit $rc"
  return "$rc"
}

step_sanitizer() {
  log "step sanitizer"
  local cs prog rc=0 tool progs=() name
  cs=$(command -v compute-sanitizer || true)
  for d in "${CUDA_HOME:-}" /usr/local/cuda; do
    [ -z "$cs" ] && [ -n "$d" ] && [ -x "$d/bin/compute-sanitizer" ] && cs="$d/bin/compute-sanitizer"
  done
  if [ -z "$cs" ]; then log "compute-sanitizer not found: step skipped"; return 0; fi
  if [ -n "${OP_TEST:-}" ]; then
    for name in $OP_TEST; do progs+=("$b/tests/$name"); done
  else
    for prog in "$b"/tests/test_ops*; do
      case "$(basename "$prog")" in *.*) continue ;; esac
      [ -f "$prog" ] && progs+=("$prog")
    done
  fi
  ((${#progs[@]})) || { log "no op test program built: step skipped"; return 0; }
  : > "$OUT/sanitizer.log"
  for prog in "${progs[@]}"; do
    [ -x "$prog" ] || { log "$prog not built: skipped"; continue; }
    for tool in ${SANITIZER_TOOLS:-memcheck}; do
      echo "=== compute-sanitizer --tool $tool $prog" >> "$OUT/sanitizer.log"
      (cd "$b/tests" && timeout "${SANITIZER_TIMEOUT:-300}" "$cs" --tool "$tool" --error-exitcode 99 \
        "$prog" --gtest_filter="${SANITIZER_FILTER:-*}") >> "$OUT/sanitizer.log" 2>&1
      local r=$?
      log "sanitizer $tool $(basename "$prog"): exit $r$( ((r == 124)) && echo ' (timed out)')"
      ((r == 0)) || rc=1
    done
  done
  grep -E 'ERROR SUMMARY|PASSED|FAILED' "$OUT/sanitizer.log" | tail -n 10 | tee -a "$runlog"
  return "$rc"
}

step_bench() {
  log "step bench"
  local progs=() name prog rc=0 r
  if [ -n "${BENCH_PROGRAMS:-}" ]; then
    for name in $BENCH_PROGRAMS; do progs+=("$b/bench/$name"); done
  else
    for prog in "$b"/bench/bench_*; do
      case "$(basename "$prog")" in *.*) continue ;; esac  # programs only, no outputs or sources
      [ -f "$prog" ] && progs+=("$prog")
    done
  fi
  ((${#progs[@]})) || { log "no benchmark program built: step skipped"; return 0; }
  for prog in "${progs[@]}"; do
    name=$(basename "$prog")
    [ -x "$prog" ] || { log "$prog not built: skipped"; continue; }
    # shellcheck disable=SC2086
    CUAE_COMMIT="$BUNDLE_COMMIT" timeout "${BENCH_TIMEOUT:-420}" "$prog" \
      --benchmark_out="$OUT/$name.json" --benchmark_out_format=json \
      --benchmark_counters_tabular=true ${BENCH_ARGS:-} > "$OUT/$name.txt" 2>&1
    r=$?
    grep -c 'ERROR OCCURRED' "$OUT/$name.txt" | sed "s/^/$name: benchmarks skipped with an error: /" | tee -a "$runlog"
    log "$name: exit $r$( ((r == 124)) && echo " (timed out: $name.json is cut short, $name.txt has what finished)")"
    ((r == 0 || rc != 0)) || rc=$r
  done
  return "$rc"
}

for step in $STEPS; do
  case "$step" in
    tests) step_tests || failed=$((failed + 1)) ;;
    sanitizer) step_sanitizer || failed=$((failed + 1)) ;;
    bench) step_bench || failed=$((failed + 1)) ;;
    unpack) log "build-gpu is unpacked and its ctest files point at $b" ;;
    *) log "unknown step $step"; failed=$((failed + 1)) ;;
  esac
done
log "done: $failed step(s) failed; results in $OUT"
exit "$failed"
