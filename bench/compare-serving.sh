#!/usr/bin/env bash
# Serving throughput and latency: slmd (slmd serve) beside llama.cpp's llama-server, on the
# same GGUF file, driven by the same harness (slm-bench) with the same workload, in one run,
# printed as ratios per concurrency, plotted on one SVG.
#
# Usage: bench/compare-serving.sh [--model FILE] [--threads T] [--sweep LIST] [--input-len N] [--output-len N]
#                                 [--prefix-len P --prefix-count K] [--ctx N] [--requests M] [--svg FILE]
#                                 [--out DIR] [--update-docs]
#   --model     GGUF file            (default ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   --threads   CPU threads          (default 2, for both engines)
#   --sweep     concurrencies        (default 1,4,16,64)
#   --input-len random prompt tokens (default 128); --output-len output tokens (default 128)
#   --prefix-len, --prefix-count  each prompt after one of K shared prefixes of P tokens (default none)
#   --ctx       context per slot/sequence (default 512)
#   --requests  measured requests per concurrency (default 2 x concurrency, at least 8)
#   --svg       plot of both engines (default docs/serving.svg)
#   --out       keep every slm-bench --json here (default: a temporary folder)
#   --update-docs  rewrite the figures between the serving markers of docs/performance.md
# Env:  BUILD, SLM_PEER_DIR as in bench/lib.sh.
#
# For each concurrency N, one after the other, llama-server first:
#   llama-server -m FILE -np N -c N*CTX -cb -t T -tb T -b 2048 -ub 512 --host 127.0.0.1 --port P --no-webui
#   slm-bench --target llama-server --url http://127.0.0.1:P --concurrency N --requests M ...
#   slmd serve --model FILE --threads T --ctx-size CTX --max-seqs N --socket S   (KV cache: N x CTX)
#   slm-bench --target slmd --socket S --concurrency N --requests M ...
# Both: a fresh server per point, N clients in a closed loop after a warm-up of N requests,
# random prompts of the same token ids (--seed 1), exactly --output-len tokens with
# end-of-generation ignored, greedy. Targets (issue 6): at 16 and 64 clients slmd's output
# tokens/s >= 2x llama-server's with p99 TTFT no worse; at 1 client TTFT and TPOT no worse.
# Exit status: 0 when both engines ran every point (whatever the ratios), 1 otherwise, 2 on bad usage.
set -euo pipefail

MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=2 SWEEP=1,4,16,64 INPUT=128 OUTPUT=128 CTX=512 REQUESTS= OUT= UPDATE_DOCS=0 PREFIX_LEN=0 PREFIX_COUNT=0
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SVG=$ROOT/docs/serving.svg
ARGS="$*"

usage() { sed -n '6,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model)      [ $# -ge 2 ] || usage; MODEL=$2; shift 2;;
        --threads)    [ $# -ge 2 ] || usage; THREADS=$2; shift 2;;
        --sweep)      [ $# -ge 2 ] || usage; SWEEP=$2; shift 2;;
        --input-len)  [ $# -ge 2 ] || usage; INPUT=$2; shift 2;;
        --output-len) [ $# -ge 2 ] || usage; OUTPUT=$2; shift 2;;
        --ctx)        [ $# -ge 2 ] || usage; CTX=$2; shift 2;;
        --prefix-len) [ $# -ge 2 ] || usage; PREFIX_LEN=$2; shift 2;;
        --prefix-count) [ $# -ge 2 ] || usage; PREFIX_COUNT=$2; shift 2;;
        --requests)   [ $# -ge 2 ] || usage; REQUESTS=$2; shift 2;;
        --svg)        [ $# -ge 2 ] || usage; SVG=$2; shift 2;;
        --out)        [ $# -ge 2 ] || usage; OUT=$2; shift 2;;
        --update-docs) UPDATE_DOCS=1; shift;;
        -h|--help) usage;;
        *) echo "compare-serving: unknown argument $1" >&2; usage;;
    esac
done
for v in "$THREADS" "$INPUT" "$OUTPUT" "$CTX" ${REQUESTS:+"$REQUESTS"}; do
    case "$v" in *[!0-9]*|''|0) echo "compare-serving: --threads, --input-len, --output-len, --ctx and --requests take positive integers" >&2; exit 2;; esac
done
case "$PREFIX_LEN$PREFIX_COUNT" in *[!0-9]*) echo "compare-serving: --prefix-len and --prefix-count take integers" >&2; exit 2;; esac
[ $(( PREFIX_LEN > 0 )) -eq $(( PREFIX_COUNT > 0 )) ] || { echo "compare-serving: --prefix-len and --prefix-count go together" >&2; exit 2; }
case "$SWEEP" in *[!0-9,]*|''|,*|*,|*,,*) echo "compare-serving: --sweep takes a list like 1,4,16,64" >&2; exit 2;; esac
[ $((PREFIX_LEN + INPUT + OUTPUT)) -le "$CTX" ] || { echo "compare-serving: --prefix-len + --input-len + --output-len exceed --ctx $CTX" >&2; exit 2; }
[ -r "$MODEL" ] || { echo "compare-serving: cannot read $MODEL" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
SERVER=$(bench_peer_bin llama-server) || exit 1
SLMD=$(bench_slmd_bin slmd) || exit 1
BENCH=$(bench_slmd_bin slm-bench) || exit 1
RAW=$(mktemp -d)
cleanup() { bench_stop_server; rm -rf "$RAW"; }
trap cleanup EXIT
[ -n "$OUT" ] && mkdir -p "$OUT"
JSON_DIR=${OUT:-$RAW}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "model:   $MODEL"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online; $THREADS threads; load average before: $LOAD_BEFORE"
PREFIXES=
[ "$PREFIX_LEN" -gt 0 ] && PREFIXES=" after one of $PREFIX_COUNT shared prefixes of $PREFIX_LEN"
echo "llama.cpp: llama-cpp-python $(bench_peer_version); prompts $INPUT random tokens$PREFIXES, output $OUTPUT tokens, ctx $CTX per slot, clients in $SWEEP"
# shellcheck disable=SC2034  # BENCH_EXTRA: read by bench_serving_point (bench/lib.sh)
[ "$PREFIX_LEN" -gt 0 ] && BENCH_EXTRA=(--prefix-len "$PREFIX_LEN" --prefix-count "$PREFIX_COUNT")
for n in ${SWEEP//,/ }; do
    m=${REQUESTS:-$(( 2 * n > 8 ? 2 * n : 8 ))}
    echo "N=$n: llama-server -np $n, $m requests ..." >&2
    bench_start_llama_server "$SERVER" "$RAW/llama-server.$n.log" -m "$MODEL" -np "$n" -c $(( n * CTX )) -cb \
        -t "$THREADS" -tb "$THREADS" -b 2048 -ub 512 --no-webui || exit 1
    bench_serving_point "$BENCH" llama-server "$n" "$m" "$INPUT" "$OUTPUT" "$JSON_DIR/llama-server.$n.json" \
        "$RAW/llama-server.$n.out" --url "$BENCH_URL" || exit 1
    bench_stop_server

    echo "N=$n: slmd --max-seqs $n, $m requests ..." >&2
    bench_start_slmd "$SLMD" "$RAW/slmd.sock" "$RAW/slmd.$n.log" --model "$MODEL" --threads "$THREADS" \
        --ctx-size "$CTX" --max-seqs "$n" || exit 1
    bench_serving_point "$BENCH" slmd "$n" "$m" "$INPUT" "$OUTPUT" "$JSON_DIR/slmd.$n.json" "$RAW/slmd.$n.out" \
        --socket "$RAW/slmd.sock" || exit 1
    bench_stop_server
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# One document per engine (its points in sweep order), the plot, the ratios.
python3 - "$JSON_DIR" "$SWEEP" <<'PY'
import json, sys
d, sweep = sys.argv[1], [int(x) for x in sys.argv[2].split(',')]
for eng in ('llama-server', 'slmd'):
    docs = [json.load(open(f'{d}/{eng}.{n}.json')) for n in sweep]
    merged = {k: v for k, v in docs[0].items() if k in ('tool', 'label', 'build', 'config', 'server', 'machine')}
    merged['config']['sweep'] = sweep
    merged['runs'] = [doc['runs'][0] for doc in docs]
    merged['servers'] = [doc['server'] for doc in docs]
    json.dump(merged, open(f'{d}/{eng}.json', 'w'), indent=1)
PY
mkdir -p "$(dirname "$SVG")"
"$BENCH" plot --svg "$SVG" --title "$(basename "$MODEL" .gguf), $THREADS threads, $INPUT-token prompts$PREFIXES, $OUTPUT output tokens: slmd vs llama-server" \
    "$JSON_DIR/llama-server.json" "$JSON_DIR/slmd.json"

python3 - "$JSON_DIR" "$SWEEP" "$UPDATE_DOCS" "$ROOT/docs/performance.md" "$SVG" \
    "bench/compare-serving.sh${ARGS:+ $ARGS}" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import json, os, sys, time
d, sweep, update, doc_path, svg, cmd, load_before, load_after = sys.argv[1:9]
sweep = [int(x) for x in sweep.split(',')]
ll = json.load(open(f'{d}/llama-server.json'))
sl = json.load(open(f'{d}/slmd.json'))
lines = []
lines.append('| clients | engine | out tok/s | TTFT p50 | TTFT p99 | TPOT p50 | TPOT p99 | ITL p99 | E2E p50 | done/failed | harness CPU |')
lines.append('|---|---|---|---|---|---|---|---|---|---|---|')
ratios = []
ok = True
for k, n in enumerate(sweep):
    a, b = ll['runs'][k], sl['runs'][k]
    for name, r in (('llama-server', a), ('slmd', b)):
        lines.append(f"| {n} | {name} | {r['output_tokens_per_s']:.1f} | {r['ttft_ms']['p50']:.1f} | {r['ttft_ms']['p99']:.1f} | "
                     f"{r['tpot_ms']['p50']:.2f} | {r['tpot_ms']['p99']:.2f} | {r['itl_ms']['p99']:.2f} | {r['e2e_ms']['p50']:.0f} | "
                     f"{r['completed']}/{r['failed']} | {100 * r['harness_cpu_s'] / r['span_s']:.0f}% |")
        ok = ok and r['failed'] == 0
    ratios.append((n, b['output_tokens_per_s'] / a['output_tokens_per_s'], b['ttft_ms']['p50'] / a['ttft_ms']['p50'],
                   b['ttft_ms']['p99'] / a['ttft_ms']['p99'], b['tpot_ms']['p50'] / a['tpot_ms']['p50'],
                   b['tpot_ms']['p99'] / a['tpot_ms']['p99']))
table = '\n'.join(lines)
rt = ['| clients | tok/s slmd/llama | TTFT p50 slmd/llama | TTFT p99 slmd/llama | TPOT p50 slmd/llama | TPOT p99 slmd/llama |',
      '|---|---|---|---|---|---|']
for n, t, f50, f99, p50, p99 in ratios:
    rt.append(f'| {n} | **{t:.2f}x** | {f50:.2f}x | {f99:.2f}x | {p50:.2f}x | {p99:.2f}x |')
targets = []
for n, t, f50, f99, p50, p99 in ratios:
    if n in (16, 64):
        met = t >= 2 and f99 <= 1
        targets.append(f'target {n} clients: tok/s >= 2x and p99 TTFT no worse: {"met" if met else "NOT met"} '
                       f'({t:.2f}x tok/s, p99 TTFT {f99:.2f}x)')
    if n == 1:
        met = f50 <= 1 and p50 <= 1
        targets.append(f'target 1 client: TTFT and TPOT no worse: {"met" if met else "NOT met"} '
                       f'(TTFT p50 {f50:.2f}x, TPOT p50 {p50:.2f}x)')
print(table)
print()
print('\n'.join(rt))
print('\n'.join(targets))
if update == '1':
    m = sl['machine']
    text = open(doc_path).read()
    begin, end = '<!-- serving:begin (bench/compare-serving.sh --update-docs writes this part) -->', '<!-- serving:end -->'
    if begin not in text or end not in text:
        sys.exit(f'compare-serving: {doc_path} lacks the serving markers')
    rel_svg = os.path.relpath(svg, os.path.dirname(doc_path))
    block = (f"{begin}\n"
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {m.get('cpu', '?')}, {m.get('cpus_online', '?')} CPUs online, "
             f"load average {load_before} before and {load_after} after the run (other users' jobs included), "
             f"llama.cpp {ll['server'].get('build', '?')}, slm-bench {sl['build']['slm_bench_git']}.\n\n"
             f"```\n{cmd}\n```\n\n{table}\n\n" + '\n'.join(rt) + "\n\n```\n" + '\n'.join(targets) + "\n```\n\n"
             f"![throughput against latency, both engines]({rel_svg})\n{end}")
    i, j = text.index(begin), text.index(end) + len(end)
    open(doc_path, 'w').write(text[:i] + block + text[j:])
    print(f'updated {doc_path}')
sys.exit(0 if ok else 1)
PY
