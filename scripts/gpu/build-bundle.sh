#!/usr/bin/env bash
# Stages what the GPU machine needs to run cuae's tests and benchmarks into build-gpu/, from the
# tree the README's build makes (build/: CMake preset "release", Release, sm_90, tests and
# benchmarks). The GPU machine has no network and no package manager: every non-system shared
# library the programs load travels too, except cuBLAS/cuBLASLt/cuDNN (hundreds of MB; the GPU
# machine has them). Run from the repository root; see scripts/gpu/README.md.
#
#   scripts/gpu/build-bundle.sh [--skip-build] [--no-pack] [--strip] [--no-data] [--budget-mib N]
#
#   --skip-build    stage what build/ holds now; without it, `bash scripts/build.sh` first
#   --no-pack       leave everything unpacked (for looking at it here; does not fit the budget)
#   --strip         strip the staged programs (packed, the symbols cost about 1 MiB; they give
#                   compute-sanitizer's backtraces function names, so they stay by default)
#   --no-data       leave Fashion-MNIST out (the tests that read it then fail on the GPU machine)
#   --budget-mib N  the most build-gpu/ plus the source tree may take (default 60; what is
#                   carried to the GPU machine is limited to 64 MiB in all)
#
# build-gpu/ (carried; .gitignore ignores it):
#   programs.tar.xz   tests/test_*, bench/bench_*, the cuae cli, libcuae.so.<soname>: one xz
#                     stream with a 64 MiB dictionary, so the engine that every program links
#                     statically is stored about once
#   lib.tar.xz        Debian libraries (OpenBLAS, gfortran, gomp, png, jpeg, z, toml++, stb,
#                     benchmark, ...) and libcudart; lib/compat/ libstdc++ and libgcc_s (used only
#                     where the GPU machine's are older); lib/fallback/ cuDNN's small loader
#                     libcudnn.so.9 (used only where the GPU machine has no cuDNN, so programs start)
#   data/fashion-mnist/  the four .gz IDX files (check.sh sets CUAE_FASHION_MNIST_DIR to them)
#   bundle.env        commit, date, CUDA version, the source path compiled into the tests, the
#                     libraries the GPU machine must provide
#   bundle-sizes.txt  every staged file's size, then what is carried
# scripts/gpu/check.sh unpacks the archives in place on the GPU machine.
set -euo pipefail

skip_build=0
pack=1
strip_programs=0
with_data=1
budget_mib=60
while (($#)); do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --no-pack) pack=0 ;;
    --strip) strip_programs=1 ;;
    --no-data) with_data=0 ;;
    --budget-mib) budget_mib="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "build-bundle: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

root=$(pwd -P)
if [ ! -f "$root/CMakeLists.txt" ] || [ ! -d "$root/kernels" ]; then
  echo "build-bundle: run from the cuae repository root" >&2
  exit 2
fi
obj="$root/build"
out="$root/build-gpu"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# ---- the build ----------------------------------------------------------------------------------
if ((!skip_build)); then
  bash "$root/scripts/build.sh"
fi
[ -f "$obj/CMakeCache.txt" ] || { echo "build-bundle: $obj has no build: run scripts/build.sh (or drop --skip-build)" >&2; exit 2; }
cache() { sed -n "s/^$1:[A-Z]*=//p" "$obj/CMakeCache.txt" | head -n 1; }
build_type=$(cache CMAKE_BUILD_TYPE)
arch=$(cache CMAKE_CUDA_ARCHITECTURES)
src_dir=$(cache CMAKE_HOME_DIRECTORY)
nvcc=$(cache CMAKE_CUDA_COMPILER)
[ "$build_type" = Release ] || { echo "build-bundle: $obj is a '$build_type' build; the GPU runs need Release (preset release)" >&2; exit 2; }
case ";$arch;" in *";90;"*|*";90a;"*|*";90-real;"*|*";90a-real;"*) ;;
  *) echo "build-bundle: $obj compiles for CUDA architectures '$arch', not sm_90" >&2; exit 2 ;; esac
for opt in CUAE_CUDA CUAE_BUILD_TESTS CUAE_BUILD_BENCH CUAE_BUILD_CLI; do
  [ "$(cache "$opt")" != OFF ] || { echo "build-bundle: $obj was configured with $opt=OFF" >&2; exit 2; }
done

# Every test and benchmark source must have its program (a build in progress may lack some).
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }
missing=()
programs=()
for src in "$root"/tests/test_*.cpp "$root"/bench/bench_*.cu; do
  name=$(basename "${src%.*}")
  dir=$(basename "$(dirname "$src")")
  if [ -f "$obj/$dir/$name" ] && is_elf "$obj/$dir/$name"; then programs+=("$dir/$name"); else missing+=("$dir/$name"); fi
done
if [ -f "$obj/cuae" ] && is_elf "$obj/cuae"; then programs+=(cuae); else missing+=(cuae); fi
if ((${#missing[@]})); then
  echo "build-bundle: $obj lacks ${missing[*]} (a build in progress? run again when it has finished)" >&2
  exit 3
fi
# Stale programs are staged all the same, with a warning: ninja knows what is out of date.
if command -v ninja >/dev/null 2>&1; then
  # (Only compile and link steps count: with CONFIGURE_DEPENDS globs ninja -n always lists the
  # glob check and a CMake rerun.)
  pending=$(timeout 30 ninja -C "$obj" -n 2>/dev/null | grep -cE '^\[[0-9]+/[0-9]+\] (Building|Linking)' || true)
  if [ "${pending:-0}" -gt 0 ]; then
    echo "build-bundle: warning: build/ is not up to date with the sources ($pending compile/link steps pending); staging it as it is"
  fi
fi

# ---- stage --------------------------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out/lib/compat" "$out/lib/fallback"
staged=()
for rel in "${programs[@]}"; do
  mkdir -p "$out/$(dirname "$rel")"
  cp -p "$obj/$rel" "$out/$rel"
  staged+=("$out/$rel")
done
# libcuae under its soname only (what the loader asks for), as a real file.
real=$(readlink -f "$obj/libcuae.so")
soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
cp -L "$real" "$out/${soname:-libcuae.so}"
staged+=("$out/${soname:-libcuae.so}")
if ((strip_programs)); then
  for f in "${staged[@]}"; do strip --strip-unneeded "$f"; done
fi

# ---- libraries ----------------------------------------------------------------------------------
# The loader and glibc come from the GPU machine itself. cudart is small and pinned to the
# toolkit we compiled with, so it travels; cuBLAS/cuBLASLt never do (libcublasLt alone is about
# 540 MB), nor cuDNN's engines; cuDNN's 130 KB loader goes to lib/fallback only.
is_system() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
  esac
  return 1
}
declare -A dep_path=()
for bin in "${staged[@]}"; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    if [ -z "$path" ] || [ "$path" = not ]; then echo "build-bundle: $bin: $name not found here" >&2; exit 3; fi
    dep_path[$name]=$path
  done < <(LD_LIBRARY_PATH="$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$bin")
done
target_libs=()
for name in $(printf '%s\n' "${!dep_path[@]}" | sort); do
  path=${dep_path[$name]}
  is_system "$name" && continue
  case "$name" in
    libcuae.so*) ;;
    libcudart.so*) cp -L "$path" "$out/lib/$name" ;;
    libcudnn.so*) cp -L "$path" "$out/lib/fallback/$name"; target_libs+=("$name") ;;
    libcublas.so*|libcublasLt.so*|libcudnn_*|libnvrtc*|libnvJitLink*|libcupti*|libnccl*|libcufft*|libcurand*|libcusparse*|libcusolver*)
      target_libs+=("$name") ;;
    libstdc++.so*|libgcc_s.so*) cp -L "$path" "$out/lib/compat/$name" ;;
    *) cp -L "$path" "$out/lib/$name" ;;
  esac
done
# Every staged binary resolves against the bundle plus what the GPU machine provides.
cuda_lib=$(dirname "$(readlink -f "$(dirname "$nvcc")")")
fail=0
for bin in "${staged[@]}"; do
  miss=$(LD_LIBRARY_PATH="$out:$out/lib:$out/lib/compat:$cuda_lib/lib64:$cuda_lib/lib" ldd "$bin" | grep 'not found' || true)
  if [ -n "$miss" ]; then echo "build-bundle: $bin: $miss" >&2; fail=1; fi
done
((fail == 0)) || exit 3

# ---- data ---------------------------------------------------------------------------------------
if ((with_data)); then
  data_src=${CUAE_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  mkdir -p "$out/data/fashion-mnist"
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$data_src/$f" ] || { echo "build-bundle: $data_src/$f not found (install dataset-fashion-mnist, or --no-data)" >&2; exit 5; }
    cp "$data_src/$f" "$out/data/fashion-mnist/$f"
  done
fi

# ---- sizes, packing, manifest -------------------------------------------------------------------
{
  echo "# bytes  path (staged, before packing)"
  (cd "$out" && find . -type f ! -name bundle-sizes.txt -printf '%s  %P\n' | sort -rn)
} > "$out/bundle-sizes.txt"
unpacked=$(du -sb "$out" | cut -f1)

pack_tar() {  # $1 = archive, $2 = xz options, then paths relative to build-gpu/
  local archive=$1 opts=$2
  shift 2
  # shellcheck disable=SC2086
  tar -C "$out" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$@" | xz $opts > "$out/$archive"
}
packs=()
if ((pack)); then
  pack_tar lib.tar.xz "-6 -T2" lib
  rm -rf "${out:?}/lib"
  mapfile -t tops < <(cd "$out" && find . -mindepth 1 -maxdepth 1 ! -name lib ! -name data \
    ! -name bundle-sizes.txt ! -name '*.tar.xz' -printf '%P\n' | sort)
  # One block (-T1) whose 64 MiB dictionary (-9) spans several programs: the shared engine is
  # stored about once.
  pack_tar programs.tar.xz "-9 -T1" "${tops[@]}"
  (cd "$out" && rm -rf -- "${tops[@]}")
  packs=(lib.tar.xz programs.tar.xz)
fi
{
  echo
  echo "# bytes  path (carried)"
  (cd "$out" && find . -type f ! -name bundle-sizes.txt -printf '%s  %P\n' | sort -rn)
} >> "$out/bundle-sizes.txt"

commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
cuda_version=$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
{
  echo "# Written by scripts/gpu/build-bundle.sh; read by scripts/gpu/check.sh."
  echo "BUNDLE_COMMIT='${commit}${dirty:+-dirty}'"
  echo "BUNDLE_DATE='$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  echo "BUNDLE_SRC='$src_dir'"
  echo "BUNDLE_CUDA='$cuda_version'"
  echo "BUNDLE_ARCH='$arch'"
  echo "BUNDLE_BUILD_TYPE='$build_type'"
  echo "BUNDLE_LIBCUAE='${soname:-libcuae.so}'"
  echo "BUNDLE_PACKS='${packs[*]}'"
  echo "BUNDLE_DATA=$with_data"
  echo "BUNDLE_STRIPPED=$strip_programs"
  echo "BUNDLE_TARGET_LIBS='${target_libs[*]}'"
} > "$out/bundle.env"

carried=$(du -sb "$out" | cut -f1)
# The source tree travels too: tracked files and untracked ones git does not ignore.
# (du skips, and complains about, tracked files deleted in the work tree.)
src_bytes=$(git -C "$root" ls-files -co --exclude-standard -z | (cd "$root" && du -cb --files0-from=- 2>/dev/null) | tail -n 1 | cut -f1) || true
src_bytes=${src_bytes:-0}
total=$((carried + src_bytes))
echo "build-bundle: $((${#staged[@]} - 1)) programs and libcuae from build/ (commit ${commit}${dirty:+-dirty}, CUDA $cuda_version, sm_$arch)"
echo "  staged, unpacked:      $(mib "$unpacked")"
if ((pack)); then
  for f in "${packs[@]}"; do printf '    %-19s %s\n' "$f" "$(mib "$(stat -c %s "$out/$f")")"; done
fi
[ -d "$out/data" ] && printf '    %-19s %s\n' data/ "$(mib "$(du -sb "$out/data" | cut -f1)")"
echo "  carried (build-gpu/):  $(mib "$carried")$( ((pack)) || echo ' (unpacked: --no-pack)')"
echo "  source tree:           $(mib "$src_bytes")"
echo "  with the source tree:  $(mib "$total") (budget $budget_mib MiB)"
echo "  the GPU machine must provide: ${target_libs[*]:-nothing}"
if ((total > budget_mib * 1048576)); then
  echo "build-bundle: build-gpu/ plus the source tree is $(mib "$total"), over the $budget_mib MiB budget" >&2
  exit 4
fi
