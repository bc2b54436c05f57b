#!/usr/bin/env bash
# cuae against PyTorch eager on this machine's CPU: the same network, data (Fashion-MNIST), batch
# and optimizer, trained for one epoch by `cuae train --device cpu` and by torch_epoch.py in turn,
# ROUNDS times alternating (so drifts in the machine's speed hit both alike); prints each run's
# images/s (the training loop only, data loading excluded on both sides) and the ratio of the
# medians (> 1: cuae is faster).
#
#   bench/cpu/compare.sh                 # configs/deep.toml and configs/conv.toml, 3 rounds each
#   ROUNDS=5 MAX_TRAIN=60000 bench/cpu/compare.sh deep
#
# cuae's GEMMs run in OpenBLAS, whose kernels OPENBLAS_CORETYPE can force (its start-up line names
# them); PyTorch's run in its own libraries (MKL, oneDNN), which pick theirs from the CPU's features.
# The header line records the variable, since it can change cuae's figures by more than 1.5x.
#
# PyTorch comes from PyPI into a virtual environment this script makes (VENV, default
# build/cpu-bench-venv): torch without its CUDA dependency packages (the CPU is all it uses here),
# plus the pure-Python packages it imports. Needs a built cuae (scripts/build.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3}
MAX_TRAIN=${MAX_TRAIN:-30000}
THREADS=${THREADS:-$(nproc)}
VENV=${VENV:-build/cpu-bench-venv}
CUAE=${CUAE:-build/cuae}
[[ -x $CUAE ]] || { echo "compare.sh: $CUAE not found: build first (scripts/build.sh)" >&2; exit 2; }

if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
  echo "making $VENV with PyTorch from PyPI ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps torch
  "$VENV/bin/pip" install -q numpy typing_extensions sympy networkx jinja2 fsspec filelock
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

run_model() {  # model config lr
  local model=$1 config=$2 lr=$3 ours=() theirs=()
  local batch
  batch=$(awk -F= '/^batch_size/ {gsub(/ /, "", $2); print $2}' "$config")
  for ((r = 1; r <= ROUNDS; r++)); do
    local out
    out=$(mktemp -d)
    OMP_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE "$CUAE" train --config "$config" --device cpu --epochs 1 \
      --max-train "$MAX_TRAIN" --out "$out" >/dev/null
    ours+=("$(awk -F, 'NR == 2 {print $5}' "$out/metrics.csv")")
    rm -rf "$out"
    theirs+=("$("$VENV/bin/python" bench/cpu/torch_epoch.py --model "$model" --batch "$batch" --lr "$lr" \
      --max-train "$MAX_TRAIN" --threads "$THREADS" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["images_per_sec"])')")
    printf '%-5s round %d: cuae %8.0f images/s   pytorch eager %8.0f images/s\n' "$model" "$r" "${ours[-1]}" "${theirs[-1]}"
  done
  local mo mt
  mo=$(printf '%s\n' "${ours[@]}" | median)
  mt=$(printf '%s\n' "${theirs[@]}" | median)
  printf '%-5s %s, batch %s, %s images, %s threads: median cuae %.0f, pytorch eager %.0f images/s: cuae/pytorch %.2f\n' \
    "$model" "$config" "$batch" "$MAX_TRAIN" "$THREADS" "$mo" "$mt" "$(awk -v a="$mo" -v b="$mt" 'BEGIN {print a / b}')"
}

torch_version=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
echo "cuae $(git rev-parse --short HEAD), PyTorch $torch_version, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)," \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} (cuae's GEMM kernels; PyTorch uses its own)"
models=("${@:-deep conv}")
for m in ${models[@]}; do
  case $m in
    deep) run_model deep configs/deep.toml 1e-3 ;;
    conv) run_model conv configs/conv.toml 2e-3 ;;
    *) echo "compare.sh: unknown model \"$m\" (deep or conv)" >&2; exit 2 ;;
  esac
done
