#!/usr/bin/env bash
# The demo command: sets up a fresh Debian machine (packages, the default model), builds, starts
# `slmd serve` with the default model (SmolLM2-135M-Instruct Q4_1) on a socket in a temporary
# folder, and chats with it through `slm chat`, streaming: the question (the argument, or a
# default one) first, then, at a terminal, whatever you type (/exit or Ctrl-D ends); without a
# terminal, just the question. The daemon is stopped when the script exits.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/packaging/setup.sh"
build=${SLM_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target slmd slm_cli
prompt=${1:-"What are three good reasons to learn the C programming language?"}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf

run=$(mktemp -d)
sock=$run/slmd.sock
"$build/slmd" serve --model "$model" --socket "$sock" --log-level notice 2>"$run/slmd.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$run"' EXIT
until "$build/slm" --socket "$sock" info >/dev/null 2>&1; do   # ready once it answers
  kill -0 $daemon 2>/dev/null || { echo "demo: slmd serve did not start:"; cat "$run/slmd.log"; exit 1; } >&2
  sleep 0.1
done
echo "demo: slmd serve is up on $sock (log: slmd.log in the same folder until the demo ends)" >&2

chat=("$build/slm" chat --socket "$sock" --max-tokens 200 --temperature 0.7 --seed 42 --prompt "$prompt")
if [ -t 0 ]; then
  "${chat[@]}"
else
  echo "> $prompt"
  "${chat[@]}" </dev/null
fi
