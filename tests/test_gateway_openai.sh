#!/usr/bin/env bash
# tests/test_gateway_openai.sh - the official `openai` Python package (PyPI) against slm-gateway
# in front of a real slmd: tests/gateway_openai.py (its header lists the checks), then the
# README's "from any OpenAI client" examples, run as written (the address replaced by the
# test's). Skips (77) when the openai package is not installed (packaging/setup.sh installs it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
python3 -c 'import openai' 2>/dev/null || { echo "skip: the Python package openai is absent (pip install openai)"; exit 77; }
. "$here/gateway_lib.sh"
GATEWAY_URL=$url SLM=$slm python3 "$here/gateway_openai.py" || fail=1

# The README's examples: every ```python / ```sh block after a line "<!-- tested: gateway -->".
python3 "$here/readme_examples.py" "$here/../README.md" gateway "$tmp/examples" || { bad "the README's examples cannot be read"; exit 1; }
for ex in "$tmp"/examples/*; do
  sed -i "s#http://127.0.0.1:8000#$url#g" "$ex"
  case $ex in
    *.py) (cd "$tmp" && timeout 120 python3 "$ex") >"$tmp/ex.out" 2>&1 ;;
    *.sh) (cd "$tmp" && PATH=$bin:$PATH timeout 120 bash -e "$ex") >"$tmp/ex.out" 2>&1 ;;
  esac
  if [ $? -eq 0 ] && [ -s "$tmp/ex.out" ]; then ok "README example $(basename "$ex"): $(head -c 80 "$tmp/ex.out" | tr '\n' ' ')"
  else bad "README example $(basename "$ex"):"; cat "$ex" "$tmp/ex.out"; fi
done
both_up "at the end"
exit $fail
