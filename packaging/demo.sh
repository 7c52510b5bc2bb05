#!/usr/bin/env bash
# The demo command: sets up a fresh Debian machine (packages, the default model), builds,
# and has the default model (SmolLM2-135M-Instruct Q4_1) answer a chat prompt, streaming.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/packaging/setup.sh"
build=${SLM_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target slmd
prompt=${1:-"What are three good reasons to learn the C programming language?"}
echo "> $prompt"
exec "$build/slmd" run --chat --prompt "$prompt" --max-tokens 200 --temperature 0.7 --seed 42 --log-level info
