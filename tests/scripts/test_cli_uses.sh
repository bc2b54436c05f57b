#!/usr/bin/env bash
# Valid uses of the cuae program that must work: each case runs commands on small data the script
# writes and checks what they printed and wrote.
#   test_cli_uses.sh <path to cuae> <case>
set -uo pipefail
cuae=$1
case_name=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Folders of small RGB PNG images in two classes (train: 48, test: 16), 8x8.
rgb_folders() {
  python3 - "$tmp" <<'PY' || exit 1
import os, struct, sys, zlib
def png(path, w, h, rgb):
    raw = b"".join(b"\0" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    def chunk(k, b): return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
root = sys.argv[1]
for split, n in (("train", 48), ("test", 16)):
    for cls in ("red", "blue"):
        os.makedirs(f"{root}/{split}/{cls}", exist_ok=True)
        for i in range(n // 2):
            px = bytes((200 if (c == 0) == (cls == "red") else 40) + (i * 7 + c * 13) % 50 for _ in range(64) for c in range(3))
            png(f"{root}/{split}/{cls}/{i:03d}.png", 8, 8, px)
PY
}

case $case_name in
  denoise_rgb_images)
    rgb_folders
    printf '[model]\nlayers = [192, 16]\n[noise]\ntype = "mask"\nlevel = 0.3\n[train]\nbatch_size = 16\nepochs = 2\n' >"$tmp/c.toml"
    printf '[data]\ndataset = "images"\ntrain_dir = "%s/train"\ntest_dir = "%s/test"\nimage_size = [3, 8, 8]\n' "$tmp" "$tmp" >>"$tmp/c.toml"
    "$cuae" train --config "$tmp/c.toml" --device cpu --out "$tmp/run" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    "$cuae" denoise --checkpoint "$tmp/run/checkpoint.safetensors" --device cpu >"$tmp/log" 2>&1 || { echo "FAIL: denoise"; cat "$tmp/log"; exit 1; }
    [ -s "$tmp/run/denoised.png" ] || { echo "FAIL: no denoised.png"; exit 1; }
    "$cuae" encode --checkpoint "$tmp/run/checkpoint.safetensors" --out "$tmp/codes.npy" --labels "$tmp/labels.npy" --device cpu \
      >"$tmp/log" 2>&1 || { echo "FAIL: encode"; cat "$tmp/log"; exit 1; }
    python3 - "$tmp" <<'PY' || exit 1
import sys
t = sys.argv[1]
head = open(t + "/labels.npy", "rb").read(128)
assert b"'<i4'" in head, "labels are not int32: %r" % head
names = open(t + "/labels.classes.txt").read().split()
assert names == ["blue", "red"], names
print("denoise wrote an RGB grid; encode wrote int32 labels and the class names", names)
PY
    ;;
  overrides_and_epoch_images)
    printf '[model]\nlayers = [784, 8]\nvariational = true\n[train]\nbatch_size = 64\nepochs = 2\nmax_train = 512\n[data]\nmax_test = 64\n' >"$tmp/v.toml"
    "$cuae" train --config "$tmp/v.toml" --device cpu --out "$tmp/run" --lr 0.01 --seed 3 \
      --set output.images_every=1 --set vae.beta=2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    head -1 "$tmp/log"
    grep -q "variational deep autoencoder 784-8 (beta 2" "$tmp/log" || { echo "FAIL: the start-up line"; exit 1; }
    grep -q "adam lr 0.01$" "$tmp/log" || { echo "FAIL: --lr"; exit 1; }
    for f in reconstructions_1.png reconstructions_2.png samples_1.png samples_2.png; do
      [ -s "$tmp/run/$f" ] || { echo "FAIL: no $f"; ls "$tmp/run"; exit 1; }
    done
    "$cuae" config --config "$tmp/v.toml" | grep -q "^beta = 1.0" || { echo "FAIL: config"; exit 1; }
    "$cuae" train --config "$tmp/v.toml" --device cpu --out "$tmp/r2" --set optimizer.lr=-1 >"$tmp/log" 2>&1
    grep -q "\[optimizer\] lr: must be > 0" "$tmp/log" || { echo "FAIL: a bad override is not checked"; cat "$tmp/log"; exit 1; }
    "$cuae" train --config "$tmp/v.toml" --device cpu --out "$tmp/r3" --set lr=1 >"$tmp/log" 2>&1
    grep -q "TABLE.KEY=VALUE" "$tmp/log" || { echo "FAIL: a malformed --set"; cat "$tmp/log"; exit 1; }
    echo "overrides applied and checked; per-epoch images written" ;;
  vae_with_max_pool_refused)
    printf '[model]\ntype = "conv"\ninput = [1, 28, 28]\ncode = 8\nvariational = true\n[[model.encoder]]\nchannels = 4\npool = "max"\n' >"$tmp/c.toml"
    out=$("$cuae" summary --config "$tmp/c.toml" 2>&1)
    rc=$?
    [[ $rc -eq 1 && $out == *"max-pool indices"* ]] || { echo "FAIL: exit $rc: $out"; exit 1; }
    echo "$out" ;;
  anomaly_on_normal_classes)
    # Trousers normal; the threshold chosen on the 20% held out; knn scores in the code space.
    printf '[model]\nlayers = [784, 32, 8]\n[train]\nbatch_size = 64\nepochs = 2\nvalidation = 0.2\n[data]\nclasses = [1]\nmax_test = 800\n' >"$tmp/a.toml"
    "$cuae" train --config "$tmp/a.toml" --device cpu --out "$tmp/run" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    grep -q "train\[classes 1\] (6000 images)" "$tmp/log" || { echo "FAIL: not trained on the 6000 trousers"; head -3 "$tmp/log"; exit 1; }
    for score in mse knn; do
      "$cuae" anomaly --checkpoint "$tmp/run/checkpoint.safetensors" --device cpu --score $score --fpr 0.1 >"$tmp/log" 2>&1 ||
        { echo "FAIL: anomaly --score $score"; cat "$tmp/log"; exit 1; }
      cat "$tmp/log"
      grep -q "threshold for a 10% false-positive rate chosen on 1200 held-out training images" "$tmp/log" || { echo "FAIL: threshold line"; exit 1; }
      for f in scores.csv summary.csv roc.png histogram.png extremes.png; do
        [ -s "$tmp/run/anomaly/$f" ] || { echo "FAIL: no $f"; exit 1; }
      done
      python3 - "$tmp/run/anomaly" <<'PY' || exit 1
import csv, sys
d = sys.argv[1]
rows = {r["detector"]: r for r in csv.DictReader(open(d + "/summary.csv"))}
scores = list(csv.DictReader(open(d + "/scores.csv")))
assert len(scores) == 800, len(scores)
assert all((r["label"] != "1") == (r["anomalous"] == "1") for r in scores)
for who in ("autoencoder", "pca"):
    auc, recall = float(rows[who]["auroc"]), float(rows[who]["recall"])
    assert 0.8 < auc <= 1.0, (who, auc)  # trousers are easy to tell from the rest
    assert 0.0 < recall <= 1.0, (who, recall)
print("summary and scores consistent:", {k: v["auroc"] for k, v in rows.items()})
PY
    done ;;
  anomaly_image_folder)
    # A training folder of normal images (red only); the test folder holds red and blue.
    rgb_folders
    rm -r "$tmp/train/blue"
    printf '[model]\nlayers = [192, 16, 4]\n[train]\nbatch_size = 8\nepochs = 20\nvalidation = 0.25\n' >"$tmp/c.toml"
    printf '[data]\ndataset = "images"\ntrain_dir = "%s/train"\ntest_dir = "%s/test"\nimage_size = [3, 8, 8]\n' "$tmp" "$tmp" >>"$tmp/c.toml"
    "$cuae" train --config "$tmp/c.toml" --device cpu --out "$tmp/run" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    "$cuae" anomaly --checkpoint "$tmp/run/checkpoint.safetensors" --device cpu >"$tmp/log" 2>&1 || { echo "FAIL: anomaly"; cat "$tmp/log"; exit 1; }
    cat "$tmp/log"
    grep -q "8 normal test images, 8 anomalous" "$tmp/log" || { echo "FAIL: red is normal, blue anomalous"; exit 1; }
    auc=$(awk -F, '$1 == "autoencoder" {print $3}' "$tmp/run/anomaly/summary.csv")
    awk -v a="$auc" 'BEGIN {exit !(a > 0.9)}' || { echo "FAIL: AUROC $auc on colours a model of red tells apart"; exit 1; } ;;
  probe_inpaint_compress)
    printf '[model]\nlayers = [784, 64, 12]\n[train]\nbatch_size = 64\nepochs = 2\nmax_train = 2000\n[data]\nmax_test = 300\n' >"$tmp/p.toml"
    "$cuae" train --config "$tmp/p.toml" --device cpu --out "$tmp/run" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    ck="$tmp/run/checkpoint.safetensors"
    "$cuae" probe --checkpoint "$ck" --device cpu --max-train 3000 --iterations 100 >"$tmp/log" 2>&1 || { echo "FAIL: probe"; cat "$tmp/log"; exit 1; }
    cat "$tmp/log"
    for who in "autoencoder codes" "PCA, 12 components" "raw pixels"; do
      acc=$(grep "^  $who " "$tmp/log" | awk '{print $(NF-2)}')
      awk -v a="$acc" 'BEGIN {exit !(a > 0.5)}' || { echo "FAIL: $who accuracy \"$acc\" is not far above chance (0.1)"; exit 1; }
    done
    "$cuae" inpaint --checkpoint "$ck" --device cpu --mask pixels --fraction 0.5 --iterations 3 >"$tmp/log" 2>&1 || { echo "FAIL: inpaint"; cat "$tmp/log"; exit 1; }
    cat "$tmp/log"
    mean=$(grep "mean training image" "$tmp/log" | awk '{print $(NF-2)}')
    ours=$(grep "autoencoder, 3 iterations" "$tmp/log" | awk '{print $(NF-2)}')
    awk -v m="$mean" -v o="$ours" 'BEGIN {exit !(o < m)}' || { echo "FAIL: inpainting MSE $ours is not below the mean image's $mean"; exit 1; }
    [ -s "$tmp/run/inpainted.png" ] || { echo "FAIL: no inpainted.png"; exit 1; }
    "$cuae" compress --checkpoint "$ck" --device cpu --bits 5 --rate-distortion >"$tmp/log" 2>&1 || { echo "FAIL: compress"; cat "$tmp/log"; exit 1; }
    cat "$tmp/log"
    size=$(stat -c %s "$tmp/run/test.cuaez")
    grep -q "wrote $tmp/run/test.cuaez: $size bytes" "$tmp/log" || { echo "FAIL: the reported size is not the file's ($size)"; exit 1; }
    for f in rate_distortion.csv rate_distortion.png compression.png; do [ -s "$tmp/run/$f" ] || { echo "FAIL: no $f"; exit 1; }; done
    "$cuae" decompress --checkpoint "$ck" --in "$tmp/run/test.cuaez" --out "$tmp/d.npy" --png "$tmp/d.png" --device cpu >"$tmp/log" 2>&1 ||
      { echo "FAIL: decompress"; cat "$tmp/log"; exit 1; }
    grep -q "300 images of 28×28×1" "$tmp/log" || { echo "FAIL: decompress count"; cat "$tmp/log"; exit 1; }
    [ "$(stat -c %s "$tmp/d.npy")" -eq $((128 + 300 * 784 * 4)) ] || { echo "FAIL: d.npy size"; exit 1; }
    [ -s "$tmp/d.png" ] || { echo "FAIL: no d.png"; exit 1; } ;;
  *) echo "unknown case $case_name"; exit 2 ;;
esac
