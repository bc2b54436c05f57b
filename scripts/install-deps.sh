#!/usr/bin/env bash
# Installs the Debian 12 packages cuae's build, tests and default training run need.
# Idempotent; run as root (or with sudo). The CUDA toolkit (nvcc, cuBLAS, cuDNN 9) is looked for
# under /usr/local/cuda or CUDA_HOME and is not installed by this script; without it cuae is built
# without its CUDA backend (CMake option CUAE_CUDA=OFF).
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev           # CPU reference GEMM and LAPACK (PCA), OpenMP build
  zlib1g-dev libpng-dev            # gzip'd IDX files, PNG grids
  libjpeg-dev libstb-dev           # image datasets: JPEG decoding, resampling
  libcairo2-dev fonts-dejavu-core  # figures: labelled grids, loss curves, scatter plots
  libtomlplusplus-dev              # config files (TOML)
  nlohmann-json3-dev               # safetensors headers (JSON)
  libcli11-dev                     # the command line's parser
  libgtest-dev libbenchmark-dev    # tests, benchmarks
  dataset-fashion-mnist            # the default training data
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  echo "note: the CUDA toolkit (nvcc) was not found on PATH or in ${CUDA_HOME:-/usr/local/cuda}:" \
    "cuae is built without its CUDA backend (the CPU backend trains every model)" >&2
fi
