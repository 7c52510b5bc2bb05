#!/usr/bin/env bash
# Aggregate decode throughput with B sequences at once: slmd's engine beside llama.cpp's
# llama-batched-bench, on the same GGUF file, in one run, printed as ratios.
#
# Usage: bench/compare-batched-bench.sh [--model FILE] [--threads T] [--npp PP] [--ntg TG] [--npl LIST] [--rounds K]
#   --model    GGUF file          (default ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --threads  CPU threads        (default 2, for both engines)
#   --npp      prompt tokens per sequence (default 128)
#   --ntg      tokens generated per sequence (default 128)
#   --npl      sequence counts    (default 1,4,16,64)
#   --rounds   alternate the two programs K times (default 1); each round's ratios are printed
# Env:  BUILD, SLM_PEER_DIR as in bench/lib.sh.
#
# What runs, one after the other, K times:
#   llama-batched-bench -m FILE -t T -c CTX -b 2048 -ub 512 -npp PP -ntg TG -npl LIST --output-format jsonl
#   batched_bench --model FILE --threads T --npp PP --ntg TG --npl LIST --json
# Both give each of the B sequences its own random prompt of PP tokens, prefill them, then
# decode TG steps of B tokens and report S_TG = B * TG / decode time. llama.cpp computes
# the logits of each step; slmd's step also samples (greedy) and detokenizes every token.
# Target (issue 3): slmd >= 2x llama.cpp at 16 and at 64 sequences.
# Exit status: 0 when both programs ran (whatever the ratios), 1 otherwise, 2 on bad usage.
set -euo pipefail

MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=2 NPP=128 NTG=128 NPL=1,4,16,64 ROUNDS=1

usage() { sed -n '5,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model)   [ $# -ge 2 ] || usage; MODEL=$2; shift 2;;
        --threads) [ $# -ge 2 ] || usage; THREADS=$2; shift 2;;
        --npp)     [ $# -ge 2 ] || usage; NPP=$2; shift 2;;
        --ntg)     [ $# -ge 2 ] || usage; NTG=$2; shift 2;;
        --npl)     [ $# -ge 2 ] || usage; NPL=$2; shift 2;;
        --rounds)  [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2;;
        -h|--help) usage;;
        *) echo "compare-batched-bench: unknown argument $1" >&2; usage;;
    esac
done
for v in "$THREADS" "$NPP" "$NTG" "$ROUNDS"; do
    case "$v" in *[!0-9]*|''|0) echo "compare-batched-bench: --threads, --npp, --ntg and --rounds take positive integers" >&2; exit 2;; esac
done
case "$NPL" in *[!0-9,]*|''|,*|*,|*,,*) echo "compare-batched-bench: --npl takes a list like 1,4,16,64" >&2; exit 2;; esac
[ -r "$MODEL" ] || { echo "compare-batched-bench: cannot read $MODEL" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
PEER_BB=$(bench_peer_bin llama-batched-bench) || exit 1
OURS=$(bench_slmd_bin batched_bench) || exit 1
MAX_PL=$(tr ',' '\n' <<<"$NPL" | sort -n | tail -1)
CTX=$(( MAX_PL * (NPP + NTG) ))
RAW=$(mktemp -d); trap 'rm -rf "$RAW"' EXIT

echo "model:   $MODEL"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online; $THREADS threads"
echo "llama.cpp: llama-cpp-python $(bench_peer_version); PP $NPP, TG $NTG, B in $NPL; $ROUNDS round(s)"
for k in $(seq 1 "$ROUNDS"); do
    echo "round $k/$ROUNDS: llama-batched-bench ..." >&2
    LD_LIBRARY_PATH=$(dirname "$PEER_BB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    "$PEER_BB" -m "$MODEL" -t "$THREADS" -c "$CTX" -b 2048 -ub 512 -npp "$NPP" -ntg "$NTG" -npl "$NPL" \
        --output-format jsonl > "$RAW/llama.$k.out" 2> "$RAW/llama.$k.err" \
        || { tail -5 "$RAW/llama.$k.err" >&2; echo "compare-batched-bench: llama-batched-bench failed" >&2; exit 1; }
    echo "round $k/$ROUNDS: slmd batched_bench ..." >&2
    "$OURS" --model "$MODEL" --threads "$THREADS" --npp "$NPP" --ntg "$NTG" --npl "$NPL" --json > "$RAW/slmd.$k.out" \
        || { echo "compare-batched-bench: batched_bench failed" >&2; exit 1; }
done

python3 - "$RAW" "$ROUNDS" "$NPL" <<'PY'
import json, sys
raw, rounds, npl = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(',')]

def read(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith('{') and '"speed_tg"' in line:
            r = json.loads(line)
            out[r['pl']] = r['speed_tg']
    return out

ll = [read(f'{raw}/llama.{k}.out') for k in range(1, rounds + 1)]
sl = [read(f'{raw}/slmd.{k}.out') for k in range(1, rounds + 1)]
print(f"{'B':>4} {'llama.cpp S_TG t/s':>20} {'slmd S_TG t/s':>16} {'slmd/llama.cpp':>15}" + ("   per round" if rounds > 1 else ""))
ok, ratios = True, {}
for pl in npl:
    if not all(pl in r for r in ll + sl):
        print(f"{pl:>4} {'missing':>20} {'missing':>16} {'-':>15}")
        ok = False
        continue
    lm = sum(r[pl] for r in ll) / rounds
    sm = sum(r[pl] for r in sl) / rounds
    ratios[pl] = sm / lm
    per = ' '.join(f'{s[pl] / l[pl]:.2f}x' for l, s in zip(ll, sl))
    print(f"{pl:>4} {lm:>20.2f} {sm:>16.2f} {sm / lm:>14.2f}x" + (f"   {per}" if rounds > 1 else ""))
for pl in (16, 64):
    if pl in ratios:
        print(f"target B={pl}: slmd >= 2x llama.cpp: {'met' if ratios[pl] >= 2 else 'NOT met'} ({ratios[pl]:.2f}x)")
sys.exit(0 if ok else 1)
PY
