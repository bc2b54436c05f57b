#!/usr/bin/env bash
# The README, checked as a newcomer would use it: every ```toml snippet is a config cuae accepts,
# every `cuae COMMAND --option` it shows exists (each command's --help lists the option), and the
# C++ example compiles against the library.
#   test_readme.sh <source dir> <path to cuae> <build dir (libcuae.so)>
set -uo pipefail
src=$1 cuae=$2 build=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
python3 - "$src/README.md" "$tmp" <<'PY' || exit 1
import re, sys
text = open(sys.argv[1]).read()
out = sys.argv[2]
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", text, re.S)):
    open(f"{out}/snippet{i}.toml", "w").write(block)
for i, block in enumerate(re.findall(r"```cpp\n(.*?)```", text, re.S)):
    open(f"{out}/example{i}.cpp", "w").write(block)
# "cuae CMD ... --opt" from code blocks and inline code, one line each: CMD and its options.
uses = set()
code = "\n".join(re.findall(r"```(?:sh)?\n(.*?)```", text, re.S))
for line in re.findall(r"^\s*(?:\./build/)?cuae (\w+)(.*)$", code, re.M) + re.findall(r"`cuae (\w+)([^`]*)`", text):
    cmd, rest = line
    for opt in re.findall(r"(--[a-z][a-z-]*)", rest):
        uses.add((cmd, opt))
    uses.add((cmd, ""))
open(f"{out}/uses.txt", "w").write("".join(f"{c} {o}\n" for c, o in sorted(uses)))
PY
for f in "$tmp"/snippet*.toml; do
  [ -e "$f" ] || continue
  if ! "$cuae" config --config "$f" >/dev/null 2>"$tmp/err"; then
    echo "FAIL: a README config snippet is refused: $(cat "$tmp/err")"; sed 's/^/  | /' "$f"; fail=1
  fi
done
while read -r cmd opt; do
  if ! "$cuae" "$cmd" --help >"$tmp/help" 2>&1; then echo "FAIL: the README uses 'cuae $cmd', which does not exist"; fail=1; continue; fi
  if [ -n "$opt" ] && ! grep -q -- "$opt\b" "$tmp/help"; then echo "FAIL: the README uses 'cuae $cmd $opt', which cuae $cmd does not take"; fail=1; fi
done <"$tmp/uses.txt"
echo "checked $(wc -l <"$tmp/uses.txt") command/option uses"
for f in "$tmp"/example*.cpp; do
  [ -e "$f" ] || continue
  if ! c++ -std=c++20 -fsyntax-only -I"$src/include" "$f" 2>"$tmp/err"; then
    echo "FAIL: the README's C++ example does not compile:"; head -20 "$tmp/err"; fail=1
  fi
done
exit $fail
