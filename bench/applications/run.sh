#!/usr/bin/env bash
# The README's application figures on full Fashion-MNIST: trains configs/deep.toml and
# configs/denoising.toml (unless RUNS already holds their checkpoints), then runs cuae probe,
# inpaint, compress and denoise on them and writes every output, verbatim, to OUT.
#   bench/applications/run.sh [OUT]      (default: runs/applications.md)
#   CUAE=build/cuae RUNS=runs DEVICE=auto (through the environment)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/applications.md}
cuae=${CUAE:-build/cuae}
runs=${RUNS:-runs}
device=${DEVICE:-auto}
mkdir -p "$(dirname "$out")"
for name in deep denoising; do
  if [ ! -f "$runs/$name/checkpoint.safetensors" ]; then
    "$cuae" train --config "configs/$name.toml" --out "$runs/$name" --device "$device" >"$runs/$name.train.log" 2>&1
  fi
done
deep="$runs/deep/checkpoint.safetensors"
dn="$runs/denoising/checkpoint.safetensors"
step() {  # TITLE COMMAND...
  local title=$1
  shift
  echo "running: $title" >&2
  { echo "## $title"; echo; echo '```'; echo "\$ cuae ${*:2}"; "$@" 2>&1; echo '```'; echo; } >>"$out"
}
{
  echo "# Applications on Fashion-MNIST"
  echo
  echo "$(date -u +%F), commit $(git rev-parse --short HEAD), $("$cuae" version | head -1)"
  echo
} >"$out"
step "Feature quality" "$cuae" probe --checkpoint "$deep" --device "$device"
step "Inpainting: a random rectangle of 25% of the area" "$cuae" inpaint --checkpoint "$deep" --device "$device" --out "$runs/deep/inpainted.png"
for f in 0.3 0.5; do
  step "Inpainting: $f of the pixels dropped" "$cuae" inpaint --checkpoint "$deep" --device "$device" --mask pixels --fraction $f \
    --out "$runs/deep/inpainted-pixels-$f.png"
  step "Inpainting with the denoising model: $f of the pixels dropped" "$cuae" inpaint --checkpoint "$dn" --device "$device" \
    --mask pixels --fraction $f --fill zero --iterations 1 --out "$runs/denoising/inpainted-pixels-$f.png"
done
step "Inpainting with the denoising model: a random rectangle" "$cuae" inpaint --checkpoint "$dn" --device "$device" --fill zero \
  --iterations 1 --out "$runs/denoising/inpainted.png"
step "Compression" "$cuae" compress --checkpoint "$deep" --device "$device" --rate-distortion
step "Denoising (30% masked pixels)" "$cuae" denoise --checkpoint "$dn" --device "$device"
step "Denoising by the plain model" "$cuae" denoise --checkpoint "$deep" --device "$device"
echo "wrote $out" >&2
