#!/usr/bin/env bash
# Quick start, part 1: builds cuae and trains the default deep autoencoder, the classic
# 784-1000-500-250-30 network (configs/deep.toml), on Fashion-MNIST: on the GPU when there is one,
# otherwise on the CPU reference backend (under three minutes on two cores). Extra arguments go to
# `cuae train` (e.g. --epochs 20 --out runs/long).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh cuae_cli  # the program only: tests and benchmarks are not needed to train
exec ./build/cuae train --config configs/deep.toml "$@"
