#!/usr/bin/env bash
# `cuae train` interrupted by SIGINT in its second epoch, then `cuae train --resume`: the
# interrupted run must exit 130 saying how to resume, and the resumed run must end with the same
# tensors (parameters and optimizer state, byte for byte), step and metrics as an uninterrupted
# run of the same config.
#   test_resume.sh <path to cuae>
set -uo pipefail
cuae=$1
tmp=$(mktemp -d)
trap 'kill %1 2>/dev/null; rm -rf "$tmp"' EXIT
cat > "$tmp/r.toml" <<TOML
[model]
layers = [784, 256, 16]
dropout = 0.1
[noise]
type = "mask"
level = 0.2
[train]
batch_size = 64
epochs = 4
max_train = 20000
log_every = 10
validation = 0.1
patience = 5
checkpoint_every = 100
[data]
max_test = 500
TOML
"$cuae" train --config "$tmp/r.toml" --device cpu --out "$tmp/a" >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; exit 1; }

"$cuae" train --config "$tmp/r.toml" --device cpu --out "$tmp/b" >"$tmp/b.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  grep -q "epoch 2/4  step" "$tmp/b.log" && break
  sleep 0.05
done
kill -INT $pid
wait $pid
rc=$?
if [[ $rc -ne 130 ]]; then echo "FAIL: the interrupted run exited $rc, not 130"; cat "$tmp/b.log"; exit 1; fi
grep -q -- "--resume $tmp/b" "$tmp/b.log" || { echo "FAIL: no resume hint"; cat "$tmp/b.log"; exit 1; }
grep "interrupted" "$tmp/b.log"
"$cuae" train --resume "$tmp/b" >"$tmp/b2.log" 2>&1 || { echo "FAIL: resume"; cat "$tmp/b2.log"; exit 1; }
head -1 "$tmp/b2.log"

python3 - "$tmp/a" "$tmp/b" <<'PY'
import json, struct, sys
def load(d):
    b = open(d + "/checkpoint.safetensors", "rb").read()
    n, = struct.unpack("<Q", b[:8])
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__")
    body = b[8 + n:]
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}, meta
a, ma = load(sys.argv[1])
b, mb = load(sys.argv[2])
bad = sorted(k for k in a if a[k] != b.get(k)) + sorted(set(b) - set(a))
if bad or ma["step"] != mb["step"] or ma["epoch"] != mb["epoch"]:
    sys.exit("FAIL: the resumed run differs: tensors %s, step %s vs %s" % (bad[:5], ma["step"], mb["step"]))
cols = lambda d: [l.split(",")[:4] for l in open(d + "/metrics.csv").read().split()]
if cols(sys.argv[1]) != cols(sys.argv[2]):
    sys.exit("FAIL: metrics.csv differs:\n%s\n%s" % (cols(sys.argv[1]), cols(sys.argv[2])))
print("resumed run identical: %d tensors, step %s, %d metrics rows" % (len(a), ma["step"], len(cols(sys.argv[1])) - 1))
PY
