#!/usr/bin/env bash
# Single-stream CPU speed of slmd's engine beside llama.cpp's, on the same GGUF file, in one run.
#
# Usage: bench/compare-llama-bench.sh [--model FILE] [--threads T] [--reps R] [--raw-dir DIR]
#   --model    GGUF file        (default ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --threads  CPU threads      (default 2, for both engines)
#   --reps     measured runs    (default 5, for both engines)
#   --raw-dir  keep both programs' JSON output there (default: a temporary folder, removed)
# Env:  BUILD         slmd build folder holding bench_engine (default build; built if absent)
#       SLM_PEER_DIR  the llama.cpp peer (default ~/.cache/slmd/peer; built by
#                     bench/peer/build-llama-cpp.sh when its READY file is absent)
#
# What runs, one after the other (never at the same time: they would share the cores):
#   llama-bench  -m FILE -t T -p 512 -n 128 -r R -o json
#   bench_engine --model FILE --threads T -p 512 -n 128 --reps R --json
# Both define pp512 as 512 tokens evaluated in one batch into an empty context and tg128 as
# 128 tokens evaluated one at a time from an empty context; both do one warm-up run, then
# report the mean and sample standard deviation of tokens/s over the R runs.
# Prints a table (test, llama.cpp t/s, slmd t/s, ratio slmd/llama.cpp) and whether the
# targets are met: decode (tg128) >= 1.5x llama.cpp, prompt processing (pp512) >= 1.0x.
# Exit status: 0 when both programs ran (whatever the ratios), 1 otherwise, 2 on bad usage.
set -euo pipefail

MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=2
REPS=5
RAW_DIR=
PP=512
TG=128
TARGET_TG=1.5
TARGET_PP=1.0

usage() { sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model)   [ $# -ge 2 ] || usage; MODEL=$2; shift 2;;
        --threads) [ $# -ge 2 ] || usage; THREADS=$2; shift 2;;
        --reps)    [ $# -ge 2 ] || usage; REPS=$2; shift 2;;
        --raw-dir) [ $# -ge 2 ] || usage; RAW_DIR=$2; shift 2;;
        -h|--help) usage;;
        *) echo "compare-llama-bench: unknown argument $1" >&2; usage;;
    esac
done
case "$THREADS$REPS" in *[!0-9]*|'') echo "compare-llama-bench: --threads and --reps take positive integers" >&2; exit 2;; esac
[ "$THREADS" -ge 1 ] && [ "$REPS" -ge 1 ] || { echo "compare-llama-bench: --threads and --reps must be >= 1" >&2; exit 2; }
[ -r "$MODEL" ] || { echo "compare-llama-bench: cannot read $MODEL" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD;; esac
PEER=${SLM_PEER_DIR:-$HOME/.cache/slmd/peer}

# ---- the peer: llama.cpp's llama-bench
if [ ! -f "$PEER/READY" ]; then
    echo "compare-llama-bench: no llama.cpp peer at $PEER; building it (bench/peer/build-llama-cpp.sh)" >&2
    SLM_PEER_DIR=$PEER "$ROOT/bench/peer/build-llama-cpp.sh" >&2
fi
PEER_BIN=$(sed -n 's/^bin=//p' "$PEER/READY")
PEER_VERSION=$(sed -n 's/^version=//p' "$PEER/READY")
LLAMA_BENCH=$PEER_BIN/llama-bench
[ -x "$LLAMA_BENCH" ] || { echo "compare-llama-bench: $LLAMA_BENCH missing; rerun bench/peer/build-llama-cpp.sh" >&2; exit 1; }

# ---- ours: bench_engine
ENGINE=$BUILD/bench_engine
if [ ! -x "$ENGINE" ]; then
    echo "compare-llama-bench: building bench_engine in $BUILD" >&2
    [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$BUILD" -j2 --target bench_engine >&2
fi

if [ -n "$RAW_DIR" ]; then
    mkdir -p "$RAW_DIR"
    RAW=$RAW_DIR
else
    RAW=$(mktemp -d)
    trap 'rm -rf "$RAW"' EXIT
fi

echo "model:   $MODEL"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online; $THREADS threads, $REPS runs each"
echo "running llama.cpp (llama-cpp-python $PEER_VERSION) llama-bench ..." >&2
"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json > "$RAW/llama-bench.json" 2> "$RAW/llama-bench.err" \
    || { cat "$RAW/llama-bench.err" >&2; echo "compare-llama-bench: llama-bench failed" >&2; exit 1; }
echo "running slmd bench_engine ..." >&2
"$ENGINE" --model "$MODEL" --threads "$THREADS" -p "$PP" -n "$TG" --reps "$REPS" --json > "$RAW/slmd.json" \
    || { echo "compare-llama-bench: bench_engine failed" >&2; exit 1; }

python3 - "$RAW/llama-bench.json" "$RAW/slmd.json" "$PP" "$TG" "$TARGET_PP" "$TARGET_TG" <<'EOF'
import json, sys

llama_path, slmd_path, pp, tg, target_pp, target_tg = sys.argv[1:]
pp, tg = int(pp), int(tg)

llama = {}
with open(llama_path) as f:
    records = json.load(f)
build = ""
for r in records:
    if r["n_prompt"] > 0 and r["n_gen"] == 0:
        name = f"pp{r['n_prompt']}"
    elif r["n_gen"] > 0 and r["n_prompt"] == 0:
        name = f"tg{r['n_gen']}"
    else:
        continue
    llama[name] = (r["avg_ts"], r["stddev_ts"])
    build = f"{r.get('build_commit', '?')} (build {r.get('build_number', '?')}), {r.get('backends', '?')}"

slmd = {}
with open(slmd_path) as f:
    for line in f:
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            slmd[r["test"]] = (r["tokens_per_s"], r["sd"])

print(f"llama.cpp: {build}")
print(f"{'test':<8} {'llama.cpp t/s':>20} {'slmd t/s':>20} {'slmd/llama.cpp':>15}")
ratios = {}
for name in (f"pp{pp}", f"tg{tg}"):
    def cell(d):
        return f"{d[name][0]:.2f} ± {d[name][1]:.2f}" if name in d else "missing"
    ratio = slmd[name][0] / llama[name][0] if name in slmd and name in llama and llama[name][0] > 0 else None
    ratios[name] = ratio
    print(f"{name:<8} {cell(llama):>20} {cell(slmd):>20} {(f'{ratio:.2f}x' if ratio else '-'):>15}")

def verdict(name, target):
    r = ratios.get(name)
    if r is None:
        return f"{name} >= {target}x: not measured"
    return f"{name} >= {target}x: {'met' if r >= float(target) else 'NOT met'} ({r:.2f}x)"
print(f"targets: decode {verdict(f'tg{tg}', target_tg)}; prompt processing {verdict(f'pp{pp}', target_pp)}")
sys.exit(0 if all(r is not None for r in ratios.values()) else 1)
EOF
