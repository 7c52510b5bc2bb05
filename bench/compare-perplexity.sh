#!/usr/bin/env bash
# Perplexity of one text, three ways, in one run: llama.cpp's llama-perplexity, `slmd run
# --perplexity` (in-process) and `slm-bench --perplexity` through a running slmd (the
# daemon's prompt logprobs), all with llama-perplexity's definition (chunks of CTX tokens, each
# scored on its second half); then slm-bench's multiple-choice eval of a JSONL file.
#
# Usage: bench/compare-perplexity.sh [--model FILE] [--text FILE] [--ctx N] [--threads T] [--eval FILE]
#   --model    GGUF file   (default ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --text     text file   (default bench/data/perplexity.txt)
#   --ctx      chunk size  (default 512)
#   --threads  CPU threads (default 2)
#   --eval     JSONL file  (default bench/data/eval-sample.jsonl)
# Env:  BUILD, SLM_PEER_DIR as in bench/lib.sh.
# Targets (issue 6): slm-bench within 0.1% of slmd run, and within 0.5% of llama-perplexity.
# Exit status: 0 when every program ran (whatever the figures), 1 otherwise, 2 on bad usage.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
TEXT=$BENCH_ROOT/bench/data/perplexity.txt EVAL=$BENCH_ROOT/bench/data/eval-sample.jsonl
CTX=512 THREADS=2

usage() { sed -n '7,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model)   [ $# -ge 2 ] || usage; MODEL=$2; shift 2;;
        --text)    [ $# -ge 2 ] || usage; TEXT=$2; shift 2;;
        --ctx)     [ $# -ge 2 ] || usage; CTX=$2; shift 2;;
        --threads) [ $# -ge 2 ] || usage; THREADS=$2; shift 2;;
        --eval)    [ $# -ge 2 ] || usage; EVAL=$2; shift 2;;
        -h|--help) usage;;
        *) echo "compare-perplexity: unknown argument $1" >&2; usage;;
    esac
done
for f in "$MODEL" "$TEXT" "$EVAL"; do [ -f "$f" ] || { echo "compare-perplexity: $f: no such file" >&2; exit 2; }; done

ppl_bin=$(bench_peer_bin llama-perplexity) || exit 1
slmd=$(bench_slmd_bin slmd) || exit 1
bench=$(bench_slmd_bin slm-bench) || exit 1
tmp=$(mktemp -d)
daemon=
trap '[ -n "$daemon" ] && kill "$daemon" 2>/dev/null; rm -rf "$tmp"' EXIT

echo "model $(basename "$MODEL"), text $(basename "$TEXT"), chunks of $CTX tokens, $THREADS threads"
peer=$(LD_LIBRARY_PATH=$(dirname "$ppl_bin") "$ppl_bin" -m "$MODEL" -f "$TEXT" -c "$CTX" -t "$THREADS" 2>&1 \
       | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
[ -n "$peer" ] || { echo "compare-perplexity: llama-perplexity gave no estimate" >&2; exit 1; }
run=$("$slmd" run --model "$MODEL" --threads "$THREADS" --perplexity "$TEXT" --ctx-size "$CTX" 2>&1 \
      | sed -n 's/^perplexity: \([0-9.]*\) .*/\1/p')
"$slmd" serve --socket "$tmp/slmd.sock" --model "$MODEL" --threads "$THREADS" --log-level warning &
daemon=$!
for _ in $(seq 100); do [ -S "$tmp/slmd.sock" ] && break; sleep 0.1; done
served=$("$bench" --socket "$tmp/slmd.sock" --perplexity "$TEXT" --ctx "$CTX" | sed -n 's/^perplexity: \([0-9.]*\) .*/\1/p')
evalline=$("$bench" --socket "$tmp/slmd.sock" --eval "$EVAL")
[ -n "$run" ] && [ -n "$served" ] || { echo "compare-perplexity: slmd gave no perplexity" >&2; exit 1; }
python3 - "$peer" "$run" "$served" <<'PY'
import sys
peer, run, served = map(float, sys.argv[1:4])
print(f"{'':28s}{'perplexity':>12s}{'vs slmd run':>14s}{'vs llama.cpp':>14s}")
for name, v in (("llama-perplexity", peer), ("slmd run --perplexity", run), ("slm-bench (through slmd)", served)):
    print(f"{name:28s}{v:12.4f}{(v / run - 1) * 100:+13.3f}%{(v / peer - 1) * 100:+13.3f}%")
ok1 = abs(served / run - 1) <= 0.001
ok2 = abs(served / peer - 1) <= 0.005
print(f"targets: slm-bench within 0.1% of slmd run: {'met' if ok1 else 'NOT met'}; "
      f"within 0.5% of llama-perplexity: {'met' if ok2 else 'NOT met'}")
PY
echo "$evalline ($(basename "$EVAL"))"
