#!/usr/bin/env bash
# Single-stream CPU speed of slmd's engine beside llama.cpp's, on the same GGUF file, in one run.
#
# Usage: bench/compare-llama-bench.sh [--model FILE] [--threads T] [--reps R] [--rounds K] [--raw-dir DIR]
#                                     [--target-tg X] [--target-pp X]
#   --model    GGUF file        (default ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --threads  CPU threads      (default 2, for both engines)
#   --reps     measured runs per program call (default 5, for both engines)
#   --rounds   alternate the two programs K times (default 1); figures pool all K x R runs
#   --raw-dir  keep both programs' JSON output there (default: a temporary folder, removed)
#   --target-tg, --target-pp  the ratios the verdict line checks (default 1.5 and 1.0)
# Env:  BUILD         slmd build folder holding bench_engine (default build; built if absent)
#       SLM_PEER_DIR  the llama.cpp peer (default ~/.cache/slmd/peer; built by
#                     bench/peer/build-llama-cpp.sh when its READY file is absent)
#
# What runs, one after the other (never at the same time: they would share the cores), K times:
#   llama-bench  -m FILE -t T -p 512 -n 128 -r R -o json
#   bench_engine --model FILE --threads T -p 512 -n 128 --reps R --json
# On a shared VM the speed drifts by ~10% from one minute to the next; alternating rounds
# spread that drift over both engines instead of charging it to one.
# Both define pp512 as 512 tokens evaluated in one batch into an empty context and tg128 as
# 128 tokens evaluated one at a time from an empty context; both do one warm-up run, then
# report the mean and sample standard deviation of tokens/s over the R runs; with K rounds the
# table shows the mean and standard deviation over all K x R runs, and each round's ratio.
# Prints a table (test, llama.cpp t/s, slmd t/s, ratio slmd/llama.cpp), the decode roofline
# (bench/membw's read bandwidth with T threads, taken after the rounds, over the weight bytes a
# decode step reads, bench_engine's decode_weight_bytes: both engines read the same file) with
# each engine's share of it, and whether the targets are met: decode (tg128) >= 1.5x llama.cpp,
# prompt processing (pp512) >= 1.0x (or --target-tg / --target-pp).
# Exit status: 0 when both programs ran (whatever the ratios), 1 otherwise, 2 on bad usage.
set -euo pipefail

MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=2
REPS=5
ROUNDS=1
RAW_DIR=
PP=512
TG=128
TARGET_TG=1.5
TARGET_PP=1.0

usage() { sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model)   [ $# -ge 2 ] || usage; MODEL=$2; shift 2;;
        --threads) [ $# -ge 2 ] || usage; THREADS=$2; shift 2;;
        --reps)    [ $# -ge 2 ] || usage; REPS=$2; shift 2;;
        --rounds)  [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2;;
        --raw-dir) [ $# -ge 2 ] || usage; RAW_DIR=$2; shift 2;;
        --target-tg) [ $# -ge 2 ] || usage; TARGET_TG=$2; shift 2;;
        --target-pp) [ $# -ge 2 ] || usage; TARGET_PP=$2; shift 2;;
        -h|--help) usage;;
        *) echo "compare-llama-bench: unknown argument $1" >&2; usage;;
    esac
done
for v in "$THREADS" "$REPS" "$ROUNDS"; do
    case "$v" in *[!0-9]*|'') echo "compare-llama-bench: --threads, --reps and --rounds take positive integers" >&2; exit 2;; esac
    [ "$v" -ge 1 ] || { echo "compare-llama-bench: --threads, --reps and --rounds must be >= 1" >&2; exit 2; }
done
for v in "$TARGET_TG" "$TARGET_PP"; do
    case "$v" in ''|*[!0-9.]*|*.*.*|.) echo "compare-llama-bench: --target-tg and --target-pp take a ratio such as 1.5, got '$v'" >&2; exit 2;; esac
done
[ -r "$MODEL" ] || { echo "compare-llama-bench: cannot read $MODEL" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
LLAMA_BENCH=$(bench_peer_bin llama-bench) || exit 1
PEER_VERSION=$(bench_peer_version)
ENGINE=$(bench_slmd_bin bench_engine) || exit 1
MEMBW=$(bench_slmd_bin membw) || exit 1

if [ -n "$RAW_DIR" ]; then
    mkdir -p "$RAW_DIR"
    RAW=$RAW_DIR
else
    RAW=$(mktemp -d)
    trap 'rm -rf "$RAW"' EXIT
fi

echo "model:   $MODEL"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online; $THREADS threads, $ROUNDS round(s) of $REPS runs each"
for k in $(seq 1 "$ROUNDS"); do
    echo "round $k/$ROUNDS: llama.cpp (llama-cpp-python $PEER_VERSION) llama-bench ..." >&2
    "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o json > "$RAW/llama-bench.$k.json" 2> "$RAW/llama-bench.$k.err" \
        || { cat "$RAW/llama-bench.$k.err" >&2; echo "compare-llama-bench: llama-bench failed" >&2; exit 1; }
    echo "round $k/$ROUNDS: slmd bench_engine ..." >&2
    "$ENGINE" --model "$MODEL" --threads "$THREADS" -p "$PP" -n "$TG" --reps "$REPS" --json > "$RAW/slmd.$k.json" \
        || { echo "compare-llama-bench: bench_engine failed" >&2; exit 1; }
done
echo "memory read bandwidth, $THREADS threads ..." >&2
"$MEMBW" --threads "$THREADS" --json > "$RAW/membw.json" || { echo "compare-llama-bench: membw failed" >&2; exit 1; }

python3 - "$RAW" "$ROUNDS" "$REPS" "$PP" "$TG" "$TARGET_PP" "$TARGET_TG" <<'EOF'
import json, math, sys

raw, rounds, reps, pp, tg, target_pp, target_tg = sys.argv[1:]
rounds, reps, pp, tg = int(rounds), int(reps), int(pp), int(tg)
tests = (f"pp{pp}", f"tg{tg}")

def read_llama(path):
    """llama-bench -o json: a list of records; returns {test: (mean t/s, sd)}, build line."""
    out, build = {}, ""
    with open(path) as f:
        for r in json.load(f):
            if r["n_prompt"] > 0 and r["n_gen"] == 0:
                name = f"pp{r['n_prompt']}"
            elif r["n_gen"] > 0 and r["n_prompt"] == 0:
                name = f"tg{r['n_gen']}"
            else:
                continue
            out[name] = (r["avg_ts"], r["stddev_ts"])
            build = f"{r.get('build_commit', '?')} (build {r.get('build_number', '?')}), {r.get('backends', '?')}"
    return out, build

decode_bytes = None

def read_slmd(path):
    """bench_engine --json: one object per line; returns {test: (mean t/s, sd)}."""
    global decode_bytes
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if "test" in r:
                    out[r["test"]] = (r["tokens_per_s"], r["sd"])
                elif "decode_weight_bytes" in r:
                    decode_bytes = r["decode_weight_bytes"]
    return out

def pool(stats):
    """Mean and sample sd over all runs, from per-round (mean, sd) of `reps` runs each."""
    n = len(stats) * reps
    mean = sum(m for m, _ in stats) / len(stats)
    ss = sum((reps - 1) * s * s + reps * (m - mean) ** 2 for m, s in stats)
    return mean, math.sqrt(ss / (n - 1)) if n > 1 else 0.0

llama_rounds, slmd_rounds, build = [], [], ""
for k in range(1, rounds + 1):
    l, build = read_llama(f"{raw}/llama-bench.{k}.json")
    llama_rounds.append(l)
    slmd_rounds.append(read_slmd(f"{raw}/slmd.{k}.json"))

print(f"llama.cpp: {build}")
print(f"{'test':<8} {'llama.cpp t/s':>20} {'slmd t/s':>20} {'slmd/llama.cpp':>15}" + ("   per round" if rounds > 1 else ""))
ratios = {}
for name in tests:
    have = all(name in l for l in llama_rounds) and all(name in s for s in slmd_rounds)
    if not have:
        ratios[name] = None
        print(f"{name:<8} {'missing':>20} {'missing':>20} {'-':>15}")
        continue
    lm, ls = pool([l[name] for l in llama_rounds])
    sm, ss = pool([s[name] for s in slmd_rounds])
    ratios[name] = sm / lm
    per = " ".join(f"{s[name][0] / l[name][0]:.2f}x" for l, s in zip(llama_rounds, slmd_rounds))
    print(f"{name:<8} {f'{lm:.2f} ± {ls:.2f}':>20} {f'{sm:.2f} ± {ss:.2f}':>20} {f'{sm / lm:.2f}x':>15}"
          + (f"   {per}" if rounds > 1 else ""))

# The decode roofline: every weight read once a token at the measured read bandwidth.
with open(f"{raw}/membw.json") as f:
    mb = json.load(f)
bw = mb["read_gb_s"]
tgn = f"tg{tg}"
if decode_bytes and tgn in ratios and ratios[tgn] is not None:
    roof = bw * 1e9 / decode_bytes
    lm = pool([l[tgn] for l in llama_rounds])[0]
    sm = pool([s[tgn] for s in slmd_rounds])[0]
    need = float(target_tg) * lm
    print(f"decode roofline: {bw:.1f} GB/s read (membw, {mb['threads']} threads) / {decode_bytes / 1e6:.1f} MB a token = "
          f"{roof:.1f} t/s; llama.cpp at {100 * lm / roof:.0f}% of it, slmd at {100 * sm / roof:.0f}%; "
          f"{target_tg}x llama.cpp ({need:.1f} t/s) is {'within' if need <= roof else 'BEYOND'} it")

def verdict(name, target):
    r = ratios.get(name)
    if r is None:
        return f"{name} >= {target}x: not measured"
    return f"{name} >= {target}x: {'met' if r >= float(target) else 'NOT met'} ({r:.2f}x)"
print(f"targets: decode {verdict(f'tg{tg}', target_tg)}; prompt processing {verdict(f'pp{pp}', target_pp)}")
sys.exit(0 if all(r is not None for r in ratios.values()) else 1)
EOF
