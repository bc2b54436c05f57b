#!/usr/bin/env bash
# `cuae train` with a bad [train] precision / cuda_graph / contradicting tf32: one error line naming
# the file and the key, a non-zero exit, no crash and no run directory written.
#   test_cli_config_errors.sh <path to the cuae program>
set -uo pipefail
cuae=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # LABEL, KEY, the [train] lines
  local label=$1 key=$2 body=$3 msg rc
  printf '[model]\nlayers = [784, 30]\n[train]\n%b\n[output]\ndir = "%s/run"\n' "$body" "$tmp" > "$tmp/bad.toml"
  msg=$("$cuae" train --config "$tmp/bad.toml" --device cpu 2>&1)
  rc=$?
  if [[ $rc -eq 0 || $rc -ge 128 ]]; then echo "FAIL $label: exit $rc"; fail=1; fi
  if [[ $(printf '%s\n' "$msg" | wc -l) -ne 1 ]]; then echo "FAIL $label: not one line: $msg"; fail=1; fi
  if [[ $msg != *bad.toml* || $msg != *"$key"* ]]; then echo "FAIL $label: does not name the file and $key: $msg"; fail=1; fi
  if [[ -e $tmp/run ]]; then echo "FAIL $label: wrote a run directory"; fail=1; fi
  [[ $fail -eq 0 ]] && echo "ok $label: $msg"
}
check "unknown precision" precision 'precision = "bf16"'
check "cuda_graph not a boolean" cuda_graph 'cuda_graph = "yes"'
check "tf32 contradicting precision" tf32 'precision = "fp32"\ntf32 = true'
exit $fail
