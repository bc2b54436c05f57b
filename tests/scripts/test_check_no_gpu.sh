#!/usr/bin/env bash
# scripts/gpu/check.sh on a machine without a GPU must stop at its preflight at once: a non-zero
# exit, a one-line message saying there is no GPU, and nothing written. Checked twice: as the
# machine is, and with an nvidia-smi that finds no device (a driver without a GPU). Exits 77
# (skipped) where nvidia-smi lists a GPU.
#   test_check_no_gpu.sh <repository root>
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU [0-9]'; then
  echo "nvidia-smi lists a GPU here: this test is for machines without one (skipped)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

expect_no_gpu() {  # LABEL, then the environment is as the caller set it
  local label=$1 msg rc start
  start=$(date +%s)
  msg=$(OUT="$tmp/out" timeout 30 bash "$root/scripts/gpu/check.sh" 2>&1)
  rc=$?
  if ((rc == 0 || rc == 124)); then echo "FAIL ($label): check.sh exited $rc; expected a non-zero exit at the preflight"; fail=1; fi
  if ! grep -q 'no GPU' <<<"$msg"; then echo "FAIL ($label): the message does not say there is no GPU: $msg"; fail=1; fi
  if (($(wc -l <<<"$msg") != 1)); then echo "FAIL ($label): more than one line: $msg"; fail=1; fi
  if [ -e "$tmp/out" ]; then echo "FAIL ($label): check.sh wrote $tmp/out"; fail=1; fi
  if (($(date +%s) - start > 10)); then echo "FAIL ($label): took more than 10 s"; fail=1; fi
  echo "$label: exit $rc: $msg"
}

# 1. As the machine is: no nvidia-smi, or one that finds nothing.
expect_no_gpu "this machine"

# 2. A driver without a GPU: nvidia-smi exists and fails.
mkdir -p "$tmp/bin"
cat > "$tmp/bin/nvidia-smi" <<'SMI'
#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
exit 9
SMI
chmod +x "$tmp/bin/nvidia-smi"
PATH="$tmp/bin:$PATH" expect_no_gpu "nvidia-smi without a device"

((fail == 0)) && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$fail"
