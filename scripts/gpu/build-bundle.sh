#!/usr/bin/env bash
# Builds cuae for a GPU machine that has no network and no package manager, and stages a folder
# that can be carried there: build-gpu/ (binaries, ctest files, and every non-system shared
# library they need). Run on the build machine from the repository root. See scripts/gpu/README.md.
#
#   scripts/gpu/build-bundle.sh [--use-target-cuda] [--no-pack] [--strip] [--budget-mib N]
#                               [--jobs N] [--arch 90] [--skip-build] [--with-data]
#
#   --use-target-cuda  bundle no CUDA library at all (not even cudart); run-all.sh finds them there
#   --no-pack          leave everything unpacked (build-gpu/lib/, the programs) instead of packing
#                      it into build-gpu/lib.tar.xz and build-gpu/programs.tar.xz; this does not
#                      fit the budget, it is for looking at or running the bundle on this machine
#   --strip            strip the staged programs and libcuae (strip --strip-unneeded). Not needed
#                      to fit: packed, the symbols cost about 1 MiB in all, and they give
#                      compute-sanitizer and gdb backtraces function names
#   --budget-mib N     size limit for build-gpu/ (default 48: what can be carried to the GPU
#                      machine is limited to 64 MiB in all, the source tree included)
#   --jobs N           parallel compile jobs (default 2)
#   --arch A           CMAKE_CUDA_ARCHITECTURES (default 90)
#   --skip-build       restage from the existing build tree without building
#   --with-data        also carry Fashion-MNIST (build-gpu/data/fashion-mnist, ~30 MiB) so the
#                      end-to-end tests run there instead of skipping; raises the budget to 60 MiB
#
# Layout produced:
#   build-gpu-obj/          the CMake build tree (incremental; never carried)
#   build-gpu/              what is carried:
#     programs.tar.xz       tests/, bench/, the cli, libcuae.so.0 and the ctest files, packed
#                           together (every program links the engine statically, so xz stores
#                           the engine about once: ~45 MiB of programs pack to ~3 MiB)
#     lib.tar.xz            Debian libraries (OpenBLAS, LAPACK, gfortran, gomp, png, z, toml++,
#                           benchmark, ...) and libcudart; lib/compat/ libstdc++ and libgcc_s (used
#                           only if the target's are too old); lib/fallback/ the 130 KB cuDNN loader
#                           (used only if the target has no cuDNN, so the programs still start)
#     data/fashion-mnist/   with --with-data: the four gzip'd IDX files (already compressed)
#     bundle.env            where it was built, the commit, what the target must provide
#     bundle-sizes.txt      sizes of everything staged, then of what is carried
#   run-all.sh unpacks both archives in place (into the layout --no-pack leaves) before it runs
#   anything.
#
# cuBLAS/cuBLASLt are never bundled by default: libcublasLt alone is ~540 MB. The GPU machine's
# CUDA toolkit or PyTorch's wheels (site-packages/nvidia/...) provide them and cuDNN; run-all.sh
# searches for them.
set -euo pipefail

use_target_cuda=0
pack=1
strip_programs=0
budget_mib=48
with_data=0
jobs=2
arch=90
skip_build=0
while (($#)); do
  case "$1" in
    --use-target-cuda) use_target_cuda=1 ;;
    --no-pack) pack=0 ;;
    --strip) strip_programs=1 ;;
    --budget-mib) budget_mib="$2"; shift ;;
    --with-data) with_data=1; budget_mib=$((budget_mib > 60 ? budget_mib : 60)) ;;
    --jobs) jobs="$2"; shift ;;
    --arch) arch="$2"; shift ;;
    --skip-build) skip_build=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "build-bundle: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

root=$(pwd -P)
[ -f "$root/CMakeLists.txt" ] && [ -d "$root/kernels" ] || { echo "build-bundle: run from the cuae repository root" >&2; exit 2; }
obj="$root/build-gpu-obj"
out="$root/build-gpu"

nvcc_path=$(command -v nvcc || true)
cuda_home="${CUDA_HOME:-}"
if [ -z "$cuda_home" ]; then
  if [ -n "$nvcc_path" ]; then cuda_home=$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")
  else cuda_home=/usr/local/cuda; fi
fi
[ -x "$cuda_home/bin/nvcc" ] || { echo "build-bundle: nvcc not found (set CUDA_HOME)" >&2; exit 2; }

# ---- build --------------------------------------------------------------------------------
if ((!skip_build)); then
  cmake -S "$root" -B "$obj" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$cuda_home/bin/nvcc" \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    -DCUAE_BUILD_TESTS=ON -DCUAE_BUILD_BENCH=ON -DCUAE_BUILD_CLI=ON
  ninja -C "$obj" -j "$jobs"
fi
[ -f "$obj/CTestTestfile.cmake" ] || { echo "build-bundle: $obj has no build (drop --skip-build)" >&2; exit 2; }

# ---- stage binaries and ctest files ---------------------------------------------------------
rm -rf "$out"
mkdir -p "$out/lib"
is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# (install-check/ is what the Install test leaves when ctest ran in the build tree: not carried.)
mapfile -t elves < <(cd "$obj" && find . -path ./CMakeFiles -prune -o -path '*/CMakeFiles' -prune -o \
  -path '*/install-check' -prune -o -type f -perm -u+x -print | sed 's|^\./||' | sort)
staged=()
for rel in "${elves[@]}"; do
  is_elf "$obj/$rel" || continue
  case "$rel" in *.so|*.so.*) continue ;; esac  # the library is staged under its soname below
  mkdir -p "$out/$(dirname "$rel")"
  cp -p "$obj/$rel" "$out/$rel"
  staged+=("$out/$rel")
done
# libcuae under its soname only (what the loader asks for), as a real file: links may not travel.
if [ -e "$obj/libcuae.so" ]; then
  real=$(readlink -f "$obj/libcuae.so")
  soname=$(objdump -p "$real" | awk '/SONAME/ {print $2}')
  cp -L "$real" "$out/${soname:-libcuae.so}"
  staged+=("$out/${soname:-libcuae.so}")
fi
# --strip: the copies only (the build tree keeps its symbols). --strip-unneeded keeps what the
# loader needs (.dynsym); the ctest files do not depend on the binaries' bytes.
if ((strip_programs)); then
  for f in "${staged[@]}"; do strip --strip-unneeded "$f"; done
fi

# ctest's files name the build tree by absolute path: rewrite it to the staged folder here;
# run-all.sh rewrites this folder's path to wherever it lands on the GPU machine.
while IFS= read -r f; do
  rel=${f#"$obj"/}
  mkdir -p "$out/$(dirname "$rel")"
  sed "s|$obj|$out|g" "$f" > "$out/$rel"
done < <(find "$obj" -path "$obj/CMakeFiles" -prune -o \( -name CTestTestfile.cmake -o -name '*_include.cmake' \
  -o -name '*_tests.cmake' \) -type f -print)

# ---- libraries -------------------------------------------------------------------------------
# The loader and glibc must come from the target itself; everything else the binaries load is
# sorted into: cuda (decided below), compat (the C++ runtime: the target's is usually newer and
# wins), or plain lib/.
is_system() {
  case "$1" in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
  esac
  return 1
}
is_cuda() {
  case "$1" in
    libcudart.so*|libcublas.so*|libcublasLt.so*|libcudnn*.so*|libnvJitLink.so*|libnvrtc*.so*|libcupti.so*|libnccl.so*) return 0 ;;
  esac
  return 1
}
declare -A dep_path=()
for bin in "${staged[@]}"; do
  # Resolve libcuae from the build tree, the rest as the loader here would.
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    [ -n "$path" ] && [ "$path" != "not" ] || { echo "build-bundle: $bin: $name not found here" >&2; exit 3; }
    dep_path[$name]=$path
  done < <(LD_LIBRARY_PATH="$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ldd "$bin")
done

cuda_libs=()
mkdir -p "$out/lib/compat" "$out/lib/fallback"
for name in "${!dep_path[@]}"; do
  path=${dep_path[$name]}
  is_system "$name" && continue
  [[ "$name" == libcuae.so* ]] && continue
  if is_cuda "$name"; then cuda_libs+=("$name"); continue; fi
  case "$name" in
    libstdc++.so*|libgcc_s.so*) cp -L "$path" "$out/lib/compat/$name" ;;
    *) cp -L "$path" "$out/lib/$name" ;;
  esac
done

# CUDA: cudart is small and pinned to the toolkit we compiled with, so it travels unless
# --use-target-cuda; cuBLAS/cuBLASLt travel only together and only within the budget (they never
# fit: ~600 MB); cuDNN never does (its loader goes to lib/fallback only).
target_libs=()
budget_bytes=$((budget_mib * 1024 * 1024))
cuda_bytes=0
size_of() { stat -Lc %s "$1"; }
for name in "${cuda_libs[@]}"; do
  case "$name" in
    libcudart.so*)
      if ((use_target_cuda)); then target_libs+=("$name"); else cp -L "${dep_path[$name]}" "$out/lib/$name"; fi ;;
    libcudnn.so*)
      target_libs+=("$name")
      cp -L "${dep_path[$name]}" "$out/lib/fallback/$name" ;;
    *) target_libs+=("$name") ;;
  esac
done
if ((!use_target_cuda)); then
  # Only when both cuBLAS halves fit together (with the rest already staged) are they bundled.
  blas_group=()
  for name in "${target_libs[@]}"; do case "$name" in libcublas.so*|libcublasLt.so*) blas_group+=("$name") ;; esac; done
  if ((${#blas_group[@]})); then
    for name in "${blas_group[@]}"; do cuda_bytes=$((cuda_bytes + $(size_of "${dep_path[$name]}"))); done
    now=$(du -sb "$out" | cut -f1)
    if ((now + cuda_bytes / 3 < budget_bytes)); then  # xz takes them to about a third
      for name in "${blas_group[@]}"; do cp -L "${dep_path[$name]}" "$out/lib/$name"; done
      keep=()
      for name in "${target_libs[@]}"; do case "$name" in libcublas.so*|libcublasLt.so*) ;; *) keep+=("$name") ;; esac; done
      target_libs=("${keep[@]}")
    else
      echo "build-bundle: not bundling ${blas_group[*]} ($((cuda_bytes / 1048576)) MiB): over the budget; the target provides them"
    fi
  fi
fi

# Every staged binary must resolve against lib/ (+ the CUDA libraries left to the target).
fail=0
for bin in "${staged[@]}"; do
  missing=$(LD_LIBRARY_PATH="$out:$out/lib:$out/lib/compat:$cuda_home/lib64:$cuda_home/lib" ldd "$bin" | grep 'not found' || true)
  if [ -n "$missing" ]; then echo "build-bundle: $bin: $missing" >&2; fail=1; fi
done
((fail == 0)) || exit 3

# ---- data (optional) ----------------------------------------------------------------------------
# The GPU machine has no Debian packages: carry the gzip'd IDX files so the end-to-end tests and a
# training run there use real data; run-all.sh points CUAE_FASHION_MNIST_DIR at them.
if ((with_data)); then
  src_data=${CUAE_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  mkdir -p "$out/data/fashion-mnist"
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$src_data/$f" ] || { echo "build-bundle: --with-data: $src_data/$f not found" >&2; exit 5; }
    cp "$src_data/$f" "$out/data/fashion-mnist/$f"
  done
fi

# ---- sizes, manifest, packing ------------------------------------------------------------------
{
  echo "# bytes  path (staged, before packing)"
  (cd "$out" && find . -type f ! -name bundle-sizes.txt -printf '%s  %p\n' | sort -rn)
} > "$out/bundle-sizes.txt"
unpacked=$(du -sb "$out" | cut -f1)

# Two archives, unpacked in place by run-all.sh: lib.tar.xz (the libraries) and programs.tar.xz
# (everything else but data/: the programs, libcuae and the ctest files). The programs are packed
# in one stream with one xz block (-T1) whose 64 MiB dictionary (-9) spans them all, so the
# engine, which every program links statically, is stored about once.
pack_tar() {  # $1 = archive, $2 = xz options, then paths relative to $out
  local archive=$1 opts=$2
  shift 2
  # shellcheck disable=SC2086
  tar -C "$out" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$@" | xz $opts > "$out/$archive"
}
if ((pack)); then
  pack_tar lib.tar.xz "-6 -T$jobs" lib
  rm -rf "${out:?}/lib"
  mapfile -t programs < <(cd "$out" && find . -mindepth 1 -maxdepth 1 ! -name lib ! -name data \
    ! -name bundle-sizes.txt ! -name '*.tar.xz' -printf '%P\n' | sort)
  if ((${#programs[@]})); then
    pack_tar programs.tar.xz "-9 -T1" "${programs[@]}"
    (cd "$out" && rm -rf -- "${programs[@]}")
  fi
fi
{
  echo
  echo "# bytes  path (carried)"
  (cd "$out" && find . -type f ! -name bundle-sizes.txt -printf '%s  %p\n' | sort -rn)
} >> "$out/bundle-sizes.txt"

packs=()
for f in "$out"/*.tar.xz; do [ -f "$f" ] && packs+=("$(basename "$f")"); done
commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -c1)
{
  echo "# Written by scripts/gpu/build-bundle.sh; read by scripts/gpu/run-all.sh."
  echo "BUNDLE_SRC='$root'"
  echo "BUNDLE_OBJ='$obj'"
  echo "BUNDLE_OUT='$out'"
  echo "BUNDLE_COMMIT='${commit}${dirty:+-dirty}'"
  echo "BUNDLE_DATE='$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
  echo "BUNDLE_CUDA='$("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')'"
  echo "BUNDLE_ARCH='$arch'"
  echo "BUNDLE_PACKED=$pack"
  echo "BUNDLE_PACKS='${packs[*]}'"
  echo "BUNDLE_STRIPPED=$strip_programs"
  echo "BUNDLE_TARGET_LIBS='${target_libs[*]}'"
} > "$out/bundle.env"

total=$(du -sb "$out" | cut -f1)
# The source tree travels too (tracked files and untracked ones git does not ignore).
src_bytes=$(cd "$root" && git ls-files -co --exclude-standard -z 2>/dev/null \
  | du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f1 || true)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "build-bundle: staged ${#staged[@]} programs/libraries into $out"
echo "  unpacked:            $(mib "$unpacked")"
if ((pack)); then
  echo "  carried (build-gpu): $(mib "$total") (budget $budget_mib MiB)"
  for f in "$out"/*.tar.xz; do printf '    %-20s %s\n' "$(basename "$f")" "$(mib "$(stat -c %s "$f")")"; done
  [ -d "$out/data" ] && printf '    %-20s %s\n' data/ "$(mib "$(du -sb "$out/data" | cut -f1)")"
else
  echo "  carried (build-gpu): $(mib "$total") (budget $budget_mib MiB; unpacked: --no-pack)"
fi
[ -n "$src_bytes" ] && echo "  with the source tree: $(mib $((total + src_bytes))) (source $(mib "$src_bytes"))"
echo "  symbols:             $( ((strip_programs)) && echo stripped || echo kept)"
echo "  target must provide: ${target_libs[*]:-nothing}"
echo "  largest files (unpacked):"
sed -n '2,9p' "$out/bundle-sizes.txt" | awk '{ printf "    %8.1f MiB  %s\n", $1 / 1048576, $2 }'
if ((total > budget_bytes)); then
  echo "build-bundle: build-gpu/ is $(mib "$total"), over the $budget_mib MiB budget" >&2
  exit 4
fi
