#!/usr/bin/env bash
# tests/golden/make_ppl_reference.sh - llama-perplexity's figure for a model on bench/data/perplexity.txt,
# for tests/test_arch.c (which computes the same with `slmd run --perplexity`).
#   tests/golden/make_ppl_reference.sh MODEL.gguf OUT.txt [CHUNKS]
# Runs the peer build's (bench/peer/build-llama-cpp.sh)
#   llama-perplexity -m MODEL -f bench/data/perplexity.txt -c 512 -t 2 [--chunks CHUNKS]
# (chunks of 512 tokens, BOS over each chunk's first token when the model adds one, each chunk
# scored on its second half) and writes OUT: '#' lines saying how it was made, then
# "ctx 512", "chunks N" (as llama-perplexity counted them) and "ppl X" (its final estimate).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '3,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
model=$1 out=$2 chunks=${3:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
ready=${SLM_PEER_DIR:-$HOME/.cache/slmd/peer}/READY
[ -r "$ready" ] || { echo "no peer build ($ready): run bench/peer/build-llama-cpp.sh" >&2; exit 1; }
bin=$(sed -n 's/^bin=//p' "$ready")
args=(-m "$model" -f "$root/bench/data/perplexity.txt" -c 512 -t 2)
[ -n "$chunks" ] && args+=(--chunks "$chunks")
log=$(LD_LIBRARY_PATH=$bin "$bin/llama-perplexity" "${args[@]}" 2>&1)
ppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' <<<"$log")
n=$(sed -n 's/.*calculating perplexity over \([0-9]*\) chunks.*/\1/p' <<<"$log")
[ -n "$ppl" ] && [ -n "$n" ] || { echo "llama-perplexity gave no estimate:" >&2; tail -5 <<<"$log" >&2; exit 1; }
{
    echo "# llama-perplexity (peer build, $(sed -n 's/^version=//p' "$ready")) on bench/data/perplexity.txt"
    echo "# model $(basename "$model") sha256 $(sha256sum "$model" | cut -c1-64)"
    echo "# made by tests/golden/make_ppl_reference.sh: llama-perplexity -m MODEL -f bench/data/perplexity.txt -c 512 -t 2${chunks:+ --chunks $chunks}"
    echo "ctx 512"
    echo "chunks $n"
    echo "ppl $ppl"
} >"$out"
echo "wrote $out: $n chunks, ppl $ppl"
