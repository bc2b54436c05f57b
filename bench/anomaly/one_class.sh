#!/usr/bin/env bash
# The one-class protocol on Fashion-MNIST: for each class c, train the config on the training
# images of class c only ([data] classes = [c]), score all 10,000 test images with `cuae anomaly`
# (class c normal, the nine others anomalous), beside PCA with as many components as the code
# (PCA's reconstruction error; code-space distances for knn). Prints a Markdown table of AUROC per
# class and the mean, one column per score, and writes it to OUT/table.md.
#
#   bench/anomaly/one_class.sh [CONFIG] [SCORES]   (defaults: configs/anomaly/dense.toml, "mse")
#   e.g. bench/anomaly/one_class.sh configs/anomaly/vae.toml "mse elbo"
#   CUAE=build/cuae OUT=runs/one-class DEVICE=auto EPOCHS=   (through the environment)
#   SET="data.contamination=0.1"   (more --set overrides for training, space-separated)
set -euo pipefail
cd "$(dirname "$0")/../.."
config=${1:-configs/anomaly/dense.toml}
read -r -a scores <<<"${2:-mse}"
cuae=${CUAE:-build/cuae}
out=${OUT:-runs/one-class/$(basename "$config" .toml)}
device=${DEVICE:-auto}
names=("T-shirt/top" "Trouser" "Pullover" "Dress" "Coat" "Sandal" "Shirt" "Sneaker" "Bag" "Ankle boot")
mkdir -p "$out"
extra=()
if [[ -n "${EPOCHS:-}" ]]; then extra+=(--epochs "$EPOCHS"); fi
for kv in ${SET:-}; do extra+=(--set "$kv"); done
rows="$out/rows.csv"  # class,score,autoencoder,pca
: >"$rows"
for c in 0 1 2 3 4 5 6 7 8 9; do
  run="$out/class-$c"
  "$cuae" train --config "$config" --set "data.classes=[$c]" --out "$run" --device "$device" --force "${extra[@]}" \
    >"$run.train.log" 2>&1 || { cat "$run.train.log" >&2; exit 1; }
  for s in "${scores[@]}"; do
    "$cuae" anomaly --checkpoint "$run/checkpoint.safetensors" --score "$s" --device "$device" --out "$run/anomaly-$s" \
      >"$run.anomaly-$s.log"
    awk -F, -v c="$c" -v s="$s" '$1 == "autoencoder" {a = $3} $1 == "pca" {p = $3} END {print c "," s "," a "," p}' \
      "$run/anomaly-$s/summary.csv" >>"$rows"
  done
  echo "class $c (${names[$c]}): $(grep "^$c," "$rows" | cut -d, -f2- | tr '\n' ' ')" >&2
done
# PCA's column comes from the first score (its baseline is the same for mse, bce, elbo and iw).
awk -F, -v scores="${scores[*]}" -v names="$(IFS=,; echo "${names[*]}")" '
  BEGIN { ns = split(scores, S, " "); split(names, N, ",") }
  { a[$1, $2] = $3; if ($2 == S[1]) p[$1] = $4 }
  END {
    printf "| class |"; for (i = 1; i <= ns; i++) printf " autoencoder, %s |", S[i]; print " PCA |"
    printf "|---|"; for (i = 1; i <= ns; i++) printf "---|"; print "---|"
    for (c = 0; c < 10; c++) {
      printf "| %d %s |", c, N[c + 1]
      for (i = 1; i <= ns; i++) { printf " %.4f |", a[c, S[i]]; m[i] += a[c, S[i]]; w[i] += a[c, S[i]] > p[c] }
      printf " %.4f |\n", p[c]; mp += p[c]
    }
    printf "| mean |"; for (i = 1; i <= ns; i++) printf " **%.4f** |", m[i] / 10; printf " %.4f |\n\n", mp / 10
    for (i = 1; i <= ns; i++) printf "Autoencoder with the %s score ahead of PCA on %d of 10 classes.\n", S[i], w[i]
  }' "$rows" >"$out/table.md"
echo "config $config${SET:+, --set $SET}; $("$cuae" version | head -1)" >>"$out/table.md"
cat "$out/table.md"
