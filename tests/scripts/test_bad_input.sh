#!/usr/bin/env bash
# One bad input given to the cuae program: it must exit non-zero without a signal, print one error
# line, and that line must name what is at fault (the file, key or option).
#   test_bad_input.sh <path to cuae> <case>        (the cases: the `case` list below)
set -uo pipefail
cuae=$1
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/bad_input_fixtures.py" idx "$tmp" || exit 1

# A small dense model on the IDX fixtures; extra TOML lines per table come as arguments.
config() {  # MODEL_LINES TRAIN_LINES DATA_TEST OPTIMIZER_LINES LOSS
  cat > "$tmp/c.toml" <<TOML
[model]
layers = ${LAYERS:-[784, 8]}
${1:-}
[loss]
type = "${5:-mse}"
[optimizer]
type = "adam"
${4:-}
[train]
batch_size = 16
epochs = 1
log_every = 1
${2:-}
[data]
dataset = "idx"
train_images = "$tmp/good.idx"
test_images = "$tmp/${3:-good.idx}"
[output]
dir = "$tmp/run"
TOML
}

# A real checkpoint to corrupt.
checkpoint() {
  config "" "" good.idx "" mse  # LAYERS from the environment, if set
  "$cuae" train --config "$tmp/c.toml" --device cpu --out "$tmp/ck" >/dev/null 2>&1 || { echo "could not train the fixture"; exit 1; }
}

expect() {  # WHAT-MUST-BE-NAMED COMMAND...
  local want=$1
  shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local err
  err=$(cat "$tmp/err")
  echo "exit $rc: $err"
  if [[ $rc -eq 0 || $rc -ge 128 ]]; then echo "FAIL: exit $rc (want a non-zero exit without a signal)"; exit 1; fi
  if [[ $(wc -l <"$tmp/err") -ne 1 ]]; then echo "FAIL: not one error line"; exit 1; fi
  if [[ $err != *"$want"* ]]; then echo "FAIL: the error does not name \"$want\""; exit 1; fi
}

case $case_name in
  empty_test_set)
    config "" "" empty.idx
    expect empty.idx "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  scatter_empty_test_set)
    LAYERS="[784, 2]" checkpoint
    python3 - "$tmp/ck/checkpoint.safetensors" "$tmp/empty.idx" <<'PY' || exit 1
import json, struct, sys
# The checkpoint's own config, pointed at the empty test set.
p, empty = sys.argv[1], sys.argv[2]
b = open(p, "rb").read(); n, = struct.unpack("<Q", b[:8]); h = json.loads(b[8:8 + n])
cfg = h["__metadata__"]["config"]
import re
cfg = re.sub(r"test_images = ['\"][^'\"]*['\"]", 'test_images = "%s"' % empty, cfg)
h["__metadata__"]["config"] = cfg
raw = json.dumps(h).encode(); raw += b" " * (-len(raw) % 8)
open(p, "wb").write(struct.pack("<Q", len(raw)) + raw + b[8 + n:])
PY
    expect empty.idx "$cuae" scatter --checkpoint "$tmp/ck/checkpoint.safetensors" --device cpu ;;
  nan_pixels)
    config "" "" nan.idx
    expect nan.idx "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  pixels_outside_unit_interval_with_bce)
    config 'output_activation = "sigmoid"' "" wide.idx "" bce
    expect "outside [0, 1]" "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  idx_wrong_rank_byte)
    python3 -c "import sys; d = bytearray(open(sys.argv[1], 'rb').read()); d[3] = 1; open(sys.argv[2], 'wb').write(d)" \
      "$tmp/good.idx" "$tmp/rank.idx" || exit 1
    config "" "" rank.idx
    expect "wrong rank" "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  idx_wrong_magic)
    config "" "" badmagic.idx
    expect "badmagic.idx" "$cuae" train --config "$tmp/c.toml" --device cpu
    [[ $(cat "$tmp/err") != *trailing* ]] || { echo "FAIL: a wrong type code is reported as trailing bytes"; exit 1; } ;;
  checkpoint_nonfinite_weight)
    checkpoint
    python3 "$here/bad_input_fixtures.py" checkpoint "$tmp/ck/checkpoint.safetensors" "$tmp/inf.safetensors" nan || exit 1
    expect encoder.0.weight "$cuae" eval --checkpoint "$tmp/inf.safetensors" --device cpu ;;
  init_nonfinite_weight)
    checkpoint
    python3 "$here/bad_input_fixtures.py" checkpoint "$tmp/ck/checkpoint.safetensors" "$tmp/inf.safetensors" nan || exit 1
    config "" "" good.idx
    expect encoder.0.weight "$cuae" train --config "$tmp/c.toml" --device cpu --init "$tmp/inf.safetensors"
    [[ ! -e $tmp/run/checkpoint.safetensors ]] || { echo "FAIL: wrote a checkpoint"; exit 1; } ;;
  checkpoint_bad_step)
    checkpoint
    python3 "$here/bad_input_fixtures.py" checkpoint "$tmp/ck/checkpoint.safetensors" "$tmp/step.safetensors" step || exit 1
    expect 12abc "$cuae" eval --checkpoint "$tmp/step.safetensors" --device cpu ;;
  batch_size_wraps)
    config ""
    sed -i 's/^batch_size = 16$/batch_size = 4294967297/' "$tmp/c.toml"
    expect batch_size "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  epochs_wrap)
    config ""
    sed -i 's/^epochs = 1$/epochs = 2147483648/' "$tmp/c.toml"
    expect epochs "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  epochs_zero)
    config ""
    sed -i 's/^epochs = 1$/epochs = 0/' "$tmp/c.toml"
    expect epochs "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  sample_from_a_plain_autoencoder)
    checkpoint
    expect variational "$cuae" sample --checkpoint "$tmp/ck/checkpoint.safetensors" --device cpu
    [[ $(cat "$tmp/err") != *"check failed"* ]] || { echo "FAIL: an internal check's wording reached the user"; exit 1; } ;;
  anomaly_without_normal_classes)
    checkpoint
    expect "trained on every class" "$cuae" anomaly --checkpoint "$tmp/ck/checkpoint.safetensors" --device cpu ;;
  decompress_with_another_model)
    checkpoint
    "$cuae" compress --checkpoint "$tmp/ck/checkpoint.safetensors" --device cpu --out "$tmp/t.cuaez" >/dev/null || exit 1
    cp -r "$tmp/ck" "$tmp/ck2"
    "$cuae" train --config "$tmp/c.toml" --device cpu --out "$tmp/ck2" --force --seed 7 >/dev/null 2>&1 || exit 1
    expect "made by another model" "$cuae" decompress --checkpoint "$tmp/ck2/checkpoint.safetensors" --in "$tmp/t.cuaez" --out "$tmp/d.npy" --device cpu
    printf 'CUAECODE\x02\x00\x00\x00' >"$tmp/v2.cuaez"
    expect "format version 2" "$cuae" decompress --checkpoint "$tmp/ck/checkpoint.safetensors" --in "$tmp/v2.cuaez" --out "$tmp/d.npy" --device cpu ;;
  inpaint_rectangle_outside)
    checkpoint
    expect "inside the" "$cuae" inpaint --checkpoint "$tmp/ck/checkpoint.safetensors" --device cpu --rect 0,0,40,2 ;;
  epochs_option_overflows)
    config ""
    expect "--epochs" "$cuae" train --config "$tmp/c.toml" --device cpu --epochs 99999999999999999999 ;;
  data_classes_and_contamination)
    config "" "" good.idx
    expect "set classes too" "$cuae" train --config "$tmp/c.toml" --device cpu --set data.contamination=0.2
    expect "class indices" "$cuae" train --config "$tmp/c.toml" --device cpu --set "data.classes=[-1]"
    expect "contamination" "$cuae" train --config "$tmp/c.toml" --device cpu --set "data.classes=[0]" --set data.contamination=1.5
    expect "has no labels" "$cuae" train --config "$tmp/c.toml" --device cpu --set "data.classes=[0]" ;;
  lr_inf)
    config "" "" good.idx "lr = inf"
    expect lr "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  eps_nan)
    config "" "" good.idx "eps = nan"
    expect eps "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  weight_decay_inf)
    config "" "" good.idx "weight_decay = inf"
    expect weight_decay "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  leaky_slope_inf)
    config 'activation = "leaky_relu"
leaky_slope = inf'
    expect leaky_slope "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  lr_beyond_float)
    config "" "" good.idx "lr = 1e300"
    expect lr "$cuae" train --config "$tmp/c.toml" --device cpu ;;
  conv_negative_padding)
    cat > "$tmp/conv.toml" <<TOML
[model]
type = "conv"
input = [1, 28, 28]
code = 8
[[model.encoder]]
channels = 4
kernel = 3
padding = -5
TOML
    expect padding "$cuae" summary --config "$tmp/conv.toml" ;;
  unknown_option)
    config ""
    expect "--epoch" "$cuae" train --config "$tmp/c.toml" --device cpu --epoch 3 ;;
  unknown_command)
    expect trian "$cuae" trian --config x ;;
  missing_config_file)
    expect nothere.toml "$cuae" train --config "$tmp/nothere.toml" ;;
  bad_device_option)
    config ""
    expect "--device" "$cuae" train --config "$tmp/c.toml" --device gpu ;;
  nan_option_value)
    checkpoint
    expect "--level" "$cuae" denoise --checkpoint "$tmp/ck/checkpoint.safetensors" --level nan ;;
  occupied_output_folder)
    checkpoint
    config ""
    expect "--force" "$cuae" train --config "$tmp/c.toml" --device cpu --out "$tmp/ck"
    [[ $(cat "$tmp/err") == *"$tmp/ck"* ]] || { echo "FAIL: the folder is not named"; exit 1; } ;;
  divergence)
    config 'output_activation = "sigmoid"' "" good.idx "lr = 1e6" bce
    sed -i 's/^epochs = 1$/epochs = 5/' "$tmp/c.toml"
    expect diverged "$cuae" train --config "$tmp/c.toml" --device cpu
    [[ ! -e $tmp/run/checkpoint.safetensors ]] || { echo "FAIL: wrote a checkpoint"; exit 1; } ;;
  summary_plans_without_allocating)
    # 2.8e9 parameters: 11 GB of weights, 45 GB with Adam's state; the summary must only plan them.
    printf '[model]\nlayers = [784, 1000000, 2000, 784]\n' > "$tmp/huge.toml"
    python3 - "$cuae" "$tmp/huge.toml" <<'PY' || exit 1
import resource, subprocess, sys
out = subprocess.run([sys.argv[1], "summary", "--config", sys.argv[2]], capture_output=True, text=True)
rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(out.stdout.strip().splitlines()[-1] if out.stdout else out.stderr)
if out.returncode != 0: sys.exit("FAIL: summary exited %d: %s" % (out.returncode, out.stderr))
if rss_mib > 512: sys.exit("FAIL: summary used %.0f MiB of memory" % rss_mib)
print("summary planned %s within %.0f MiB" % ("2.8e9 parameters", rss_mib))
PY
    ;;
  train_refuses_plan_beyond_memory)
    config ""
    sed -i 's/^layers = .*/layers = [784, 1000000, 2000, 784]/' "$tmp/c.toml"
    expect "are available" "$cuae" train --config "$tmp/c.toml" --device cpu
    [[ $(cat "$tmp/err") == *batch_size* ]] || { echo "FAIL: the error does not say what to change"; exit 1; } ;;
  help_per_command)
    for c in train pretrain eval summary config sample interpolate scatter denoise encode version; do
      "$cuae" "$c" --help >"$tmp/out" 2>&1 || { echo "FAIL: cuae $c --help exits non-zero"; cat "$tmp/out"; exit 1; }
      grep -q "Usage: cuae $c" "$tmp/out" || { echo "FAIL: cuae $c --help prints no usage"; exit 1; }
    done
    echo "every command answers --help" ;;
  *)
    echo "unknown case $case_name"; exit 2 ;;
esac
