#!/usr/bin/env bash
# Quick start, part 1: builds cuae and trains the default deep autoencoder on Fashion-MNIST.
# With a GPU: the classic 784-1000-500-250-30 network (configs/deep.toml). Without one: the same
# network trained on the CPU reference backend with a budget that finishes in a few minutes on two
# cores (configs/deep-cpu.toml). Extra arguments go to `cuae train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
config=configs/deep-cpu.toml
if ./build/cuae version | grep -q "CUDA device available"; then config=configs/deep.toml; fi
echo "training with $config"
exec ./build/cuae train --config "$config" "$@"
