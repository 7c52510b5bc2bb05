#!/usr/bin/env bash
# tests/test_info_backend.sh - `slm info` names the backend the daemon really runs on: "cpu" for
# `slmd serve --backend cpu`, and "cuda" for slmd_emu (slmd linked with the CUDA backend under the
# SIMT emulator) serving with `--backend cuda`. Both daemons then answer a tokenize through the
# same libslm, so the daemon behind the info is a working one.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
slm=$(dirname "$slmd")/slm
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
fail=0

# check NAME BINARY BACKEND: serves with --backend BACKEND, then `slm info` must say it.
check() {
  local name=$1 bin=$2 backend=$3 sock=$tmp/$1.sock
  "$bin" serve --config /dev/null --socket "$sock" --model "$model" --backend "$backend" --threads 2 \
    --kv-cache-mem 16M --max-seqs 2 --ctx-size 256 --log-level warning 2>"$tmp/$name.log" &
  pids+=($!)
  local pid=$!
  for _ in $(seq 600); do
    "$slm" --socket "$sock" info >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "FAIL $name: slmd serve exited:"; cat "$tmp/$name.log"; fail=1; return; }
    sleep 0.1
  done
  local said
  said=$("$slm" --socket "$sock" info --json 2>&1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["backend"])')
  if [ "$said" = "$backend" ]; then echo "ok   $name: slm info says backend $said"
  else echo "FAIL $name: slm info says backend '$said', the daemon runs $backend"; fail=1; fi
  local ids
  ids=$("$slm" --socket "$sock" tokenize "Hello" 2>&1)
  if [[ "$ids" =~ ^[0-9]+( [0-9]+)*$ ]]; then echo "ok   $name: tokenize answers $ids"
  else echo "FAIL $name: tokenize: $ids"; fail=1; fi
}

check cpu "$slmd" cpu
if [ -n "${SLMD_EMU:-}" ] && [ -x "$SLMD_EMU" ]; then
  check cuda-emulated "$SLMD_EMU" cuda
elif [ "$fail" = 0 ]; then
  # Not a pass: half of the test could not run (a build without the SIMT emulator).
  echo "skip: cuda-emulated: no slmd_emu in this build (no CUDA headers for the SIMT emulator); the cpu half passed"
  exit 77
fi
exit $fail
