#!/usr/bin/env bash
# The one-class protocol on Fashion-MNIST: for each class c, train the config on the training
# images of class c only ([data] classes = [c]), score all 10,000 test images with `cuae anomaly`
# (class c normal, the nine others anomalous), beside PCA with as many components as the code.
# Prints a Markdown table of AUROC per class and the mean, and writes it to OUT/table.md.
#
#   bench/anomaly/one_class.sh [CONFIG] [SCORE]     (defaults: configs/anomaly/dense.toml, mse)
#   CUAE=build/cuae OUT=runs/one-class DEVICE=auto EPOCHS=  (overrides through the environment)
set -euo pipefail
cd "$(dirname "$0")/../.."
config=${1:-configs/anomaly/dense.toml}
score=${2:-mse}
cuae=${CUAE:-build/cuae}
out=${OUT:-runs/one-class/$(basename "$config" .toml)-$score}
device=${DEVICE:-auto}
names=("T-shirt/top" "Trouser" "Pullover" "Dress" "Coat" "Sandal" "Shirt" "Sneaker" "Bag" "Ankle boot")
mkdir -p "$out"
extra=()
if [[ -n "${EPOCHS:-}" ]]; then extra+=(--epochs "$EPOCHS"); fi
table="$out/table.md"
{
  echo "| class | autoencoder AUROC | PCA AUROC | difference |"
  echo "|---|---|---|---|"
} >"$table"
for c in 0 1 2 3 4 5 6 7 8 9; do
  run="$out/class-$c"
  "$cuae" train --config "$config" --set "data.classes=[$c]" --out "$run" --device "$device" --force "${extra[@]}" \
    >"$run.train.log" 2>&1 || { cat "$run.train.log" >&2; exit 1; }
  "$cuae" anomaly --checkpoint "$run/checkpoint.safetensors" --score "$score" --device "$device" >"$run.anomaly.log"
  ae=$(awk -F, '$1 == "autoencoder" {print $3}' "$run/anomaly/summary.csv")
  pca=$(awk -F, '$1 == "pca" {print $3}' "$run/anomaly/summary.csv")
  awk -v c="$c" -v n="${names[$c]}" -v a="$ae" -v p="$pca" 'BEGIN {printf "| %d %s | %.4f | %.4f | %+.4f |\n", c, n, a, p, a - p}' >>"$table"
  echo "class $c (${names[$c]}): autoencoder $ae, PCA $pca" >&2
done
awk -F'|' 'NR > 2 {a += $3; p += $4; w += ($3 > $4)} END {printf "| mean | %.4f | %.4f | %+.4f |\n\nThe autoencoder is ahead on %d of 10 classes.\n", a / 10, p / 10, (a - p) / 10, w}' \
  "$table" >>"$table"
echo "config $config, score $score, $("$cuae" version | head -1)" >>"$table"
cat "$table"
