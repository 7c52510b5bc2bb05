#!/usr/bin/env bash
# tests/test_python.sh - the Python package slm (python/) against a real slmd: it installs with
# pip (into a temporary folder, from the checkout), then pytest runs python/tests (streaming,
# cancellation by close, GC, handle and closing the client, typed errors, 32 threads, asyncio;
# text equal to the slm command's), then the README's "from Python" examples run as written (the
# socket replaced by the test's). Skips (77) without pytest (packaging/setup.sh installs it).
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
bin=$(cd "$(dirname "$slmd")" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
python3 -c 'import pytest' 2>/dev/null || { echo "skip: the Python package pytest is absent (pip install pytest)"; exit 77; }
[ -f "$bin/libslm.so" ] || { echo "FAIL $bin/libslm.so is not built"; exit 1; }
tmp=$(mktemp -d)
sock=$tmp/slmd.sock
"$slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 256M --threads 2 --log-level warning 2>"$tmp/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
  "$bin/slm" --socket "$sock" info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "FAIL slmd serve exited:"; cat "$tmp/daemon.log"; exit 1; }
  sleep 0.1
done
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# pip-installable: built from the checkout and installed into $tmp/site (pip's isolated build
# fetches setuptools from PyPI; without a network, the installed setuptools and wheel serve).
cp -r "$top/python" "$tmp/src"
if { python3 -m pip install -q --no-deps --target "$tmp/site" "$tmp/src" >"$tmp/pip.log" 2>&1 ||
     python3 -m pip install -q --no-build-isolation --no-deps --target "$tmp/site" "$tmp/src" >>"$tmp/pip.log" 2>&1; } &&
   [ -f "$tmp/site/slm/client.py" ]; then
  ok "pip installs the package from python/"
else
  bad "pip install python/:"; cat "$tmp/pip.log"; exit 1
fi
export PYTHONPATH=$tmp/site SLM_LIBRARY=$bin/libslm.so SLM_SOCKET=$sock SLM=$bin/slm
(cd "$tmp" && python3 -m pytest -q -p no:cacheprovider "$top/python/tests") || bad "pytest python/tests"

# The README's examples: every ```python block after "<!-- tested: python -->".
python3 "$here/readme_examples.py" "$top/README.md" python "$tmp/examples" || { bad "the README's examples cannot be read"; exit 1; }
for ex in "$tmp"/examples/*; do
  sed -i "s#/tmp/slmd.sock#$sock#g" "$ex"
  if (cd "$tmp" && timeout 120 python3 "$ex") >"$tmp/ex.out" 2>&1 && [ -s "$tmp/ex.out" ]; then
    ok "README example $(basename "$ex"): $(head -c 80 "$tmp/ex.out" | tr '\n' ' ')"
  else
    bad "README example $(basename "$ex"):"; cat "$ex" "$tmp/ex.out"
  fi
done
kill -0 $daemon 2>/dev/null && ok "slmd is still up" || bad "slmd died"
exit $fail
