#!/usr/bin/env bash
# bench/gpu/compare-llama-cpp.sh - slmd's cuda backend beside llama.cpp's CUDA build, on the same
# GPU and GGUF file, back to back, printed as tables of ratios (slmd / llama.cpp): the engines'
# benchmarks, then serving (slmd serve against llama-server, both driven by slm-bench).
#
# usage: bench/gpu/compare-llama-cpp.sh [--model FILE | --model-parts PART...] [--src FILE] [--peer DIR]
#            [--build DIR] [--deps DIR] [--reps R] [--npl LIST] [--clients LIST] [--max-batch-tokens N]
#            [--requests M] [--no-serving | --serving-only | --cpu [--llama-server BIN] [--threads T]]
#            [--raw-dir DIR]
#            [--build-only | --configure-only | --dry-run DIR]
#   --model FILE    GGUF [~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf]
#   --model-parts   the model in pieces, joined and checked against its pin as bench/gpu/run.sh does
#   --src FILE      llama.cpp's source: the tarball of bench/gpu/pack-llama-cpp.sh [newest
#                   .gpu-llama-cpp/llama-cpp-*-cuda-src.tar.xz] or the llama-cpp-python sdist
#                   [~/.cache/slmd/dl/llama_cpp_python-0.3.36.tar.gz]
#   --peer DIR      where llama.cpp is unpacked and built, outside the repository [~/.cache/slmd/peer-cuda]
#   --build DIR     slmd's build folder [build-gpu, bench/gpu/run.sh's; configured for this GPU if absent]
#   --deps DIR      .deb files of slmd's libraries (bench/gpu/fetch-deps.sh), as for run.sh
#   --reps R        runs per llama-bench / bench_engine test [5]
#   --npl LIST      sequence counts of the batched tests [1,16,64,256]
#   --clients LIST  client counts of the serving runs [1,16,64,256; with --cpu 1,4]
#   --max-batch-tokens N  slmd serve's tokens per engine step in the serving runs [4096, as issue 15 ran]
#   --requests M    measured requests per client count [2N, at least 8]
#   --no-serving    leave the serving runs out (and llama-server out of the build)
#   --serving-only  run only the serving runs
#   --cpu           the serving runs with the CPU builds, no GPU: llama.cpp's llama-server of
#                   bench/peer (SLM_PEER_DIR, ~/.cache/slmd/peer) or --llama-server BIN, and slmd serve
#                   --backend cpu (BUILD, default build), --threads T each [2]; proves the path end to end
#   --raw-dir DIR   where the programs' outputs are kept [BUILD/gpu-bench/compare]
#   --build-only    build llama.cpp's programs (and slmd's if absent), run nothing (no GPU needed)
#   --configure-only  unpack and configure llama.cpp only (bench/gpu/pack-llama-cpp.sh --check)
#   --dry-run DIR   no build, no GPU: print the tables from recorded outputs in DIR (llama-bench.json
#                   or llama-bench.md, bench_engine.json, llama-batched-bench.jsonl, batched_bench.json;
#                   the serving table when DIR holds llama-server.N.json or slmd.N.json, slm-bench's)
# Env: BENCH_JOBS (parallel build jobs, default: every CPU), SLM_DL_DIR as in pack-llama-cpp.sh.
#
# llama.cpp is configured with -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 (Hopper: H100, H200),
# no app, tests or examples, the server without its web UI (-DLLAMA_BUILD_UI=OFF
# -DLLAMA_USE_PREBUILT_UI=OFF: nothing is fetched), and only llama-bench, llama-batched-bench and
# (unless --no-serving) llama-server are built, statically linked. What runs, one after the other:
#   llama-bench -m FILE -ngl 99 -p 512 -n 128 -fa 0,1 -r R -o json
#   bench_engine --backend cuda --model FILE -p 512 -n 128 --reps R --json
#   llama-batched-bench -m FILE -ngl 99 -c CTX -b 2048 -ub 512 -npp 128 -ntg 128 -npl LIST --output-format jsonl
#   batched_bench --backend cuda --model FILE --npp 128 --ntg 128 --npl LIST --json
# pp512 and tg128 mean what they mean on the CPU (bench/compare-llama-bench.sh); S_TG and S_PP what
# they mean in bench/compare-batched-bench.sh. slmd's figure is compared with llama.cpp's with flash
# attention off and on; the batched tests use llama.cpp's default (auto: on under CUDA).
# Then, for each client count N, a fresh server each, llama-server first (bench/lib.sh's functions,
# the ones bench/compare-serving.sh uses):
#   llama-server -m FILE -ngl 99 -np N -c N*512 -cb --no-webui --host 127.0.0.1 --port P
#   slm-bench --target llama-server --url http://127.0.0.1:P --concurrency N --requests M --warmup N
#             --input-len 128 --output-len 128 --seed 1 --json llama-server.N.json
#   slmd serve --backend cuda --model FILE --ctx-size 512 --max-seqs N --max-batch-tokens 4096 --socket S
#   slm-bench --target slmd --socket S (the same workload) --json slmd.N.json
# M = 2N requests (at least 8) in a closed loop, random prompts of the same token ids, exactly 128
# output tokens (end-of-generation ignored), greedy; flash attention is llama-server's default
# (auto: on under CUDA). Targets (issue 15): at 256 clients slmd's output tokens/s >= 4x 3,597
# (the cuda backend's figure when the issue was written) with TTFT p99 under 500 ms.
# Exit status: 0 when every figure was measured (whatever the ratios), 1 otherwise, 2 on bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=0.3.36   # bench/peer/build-llama-cpp.sh's
MODEL=$HOME/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
SRC="" PEER_CUDA=${SLM_PEER_CUDA_DIR:-$HOME/.cache/slmd/peer-cuda} BUILD=build-gpu DEPS="" REPS=5 NPL=1,16,64,256
RAW_DIR="" MODE=run DRY="" PARTS=() HAVE_MODEL=0
REQUESTS="" HAVE_THREADS=0 CLIENTS="" MAX_BATCH_TOKENS=4096 SERVING=1 BENCHES=1 CPU=0 LLAMA_SERVER="" SERVE_CTX=512 CPU_THREADS=2
NPP=128 NTG=128 PP=512 TG=128 CUDA_ARCH=90
GPU_ROOT=$ROOT GPU_PROG=compare-llama-cpp
# shellcheck source=bench/gpu/common.sh
. "$ROOT/bench/gpu/common.sh"   # gpu_join_model, gpu_use_deps

usage() { sed -n '6,35p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
bad() { echo "compare-llama-cpp: $*" >&2; exit 2; }
die() { echo "compare-llama-cpp: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model|--src|--peer|--build|--deps|--reps|--npl|--raw-dir|--dry-run|--clients|--max-batch-tokens|--llama-server|--requests|--threads)
            [ $# -ge 2 ] || bad "$1 needs a value";;
    esac
    case "$1" in
        --model)   MODEL=$2; HAVE_MODEL=1; shift 2;;
        --model-parts)
            shift
            while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do PARTS+=("$1"); shift; done
            [ ${#PARTS[@]} -ge 1 ] || bad "--model-parts needs at least one file";;
        --src)     SRC=$2; shift 2;;
        --peer)    PEER_CUDA=$2; shift 2;;
        --build)   BUILD=$2; shift 2;;
        --deps)    DEPS=$2; shift 2;;
        --reps)    REPS=$2; shift 2;;
        --npl)     NPL=$2; shift 2;;
        --raw-dir) RAW_DIR=$2; shift 2;;
        --clients) CLIENTS=$2; shift 2;;
        --max-batch-tokens) MAX_BATCH_TOKENS=$2; shift 2;;
        --llama-server) LLAMA_SERVER=$2; shift 2;;
        --requests) REQUESTS=$2; shift 2;;
        --threads) CPU_THREADS=$2; HAVE_THREADS=1; shift 2;;
        --no-serving)   SERVING=0; shift;;
        --serving-only) BENCHES=0; shift;;
        --cpu)     CPU=1; BENCHES=0; shift;;
        --build-only)     MODE=build; shift;;
        --configure-only) MODE=configure; shift;;
        --dry-run) MODE=dry; DRY=$2; shift 2;;
        -h|--help) usage;;
        *) bad "unknown argument $1 (--help lists the options)";;
    esac
done
case "$REPS" in *[!0-9]*|''|0) bad "--reps takes a positive integer";; esac
case "$NPL" in *[!0-9,]*|''|,*|*,|*,,*) bad "--npl takes a list like 1,16,64,256";; esac
for b in ${NPL//,/ }; do   # llama.cpp's LLAMA_MAX_SEQ
    { [ "$b" -ge 1 ] && [ "$b" -le 256 ]; } || bad "--npl: sequence counts run from 1 to 256 (llama.cpp's most)"
done
[ "$HAVE_MODEL" = 1 ] && [ ${#PARTS[@]} -gt 0 ] && bad "give --model or --model-parts, not both"
[ "$SERVING" = 0 ] && [ "$BENCHES" = 0 ] && bad "--no-serving leaves nothing to run with --serving-only or --cpu"
[ -z "$LLAMA_SERVER" ] || [ "$CPU" = 1 ] || bad "--llama-server goes with --cpu (on the GPU the CUDA build's is used)"
[ "$HAVE_THREADS" = 0 ] || [ "$CPU" = 1 ] || bad "--threads goes with --cpu"
case "$CPU_THREADS" in *[!0-9]*|''|0) bad "--threads takes a positive integer";; esac
case "$REQUESTS" in *[!0-9]*|0) bad "--requests takes a positive integer";; esac
if [ "$CPU" = 1 ]; then
    case "$MODE" in run) ;; *) bad "--cpu runs the serving path; it takes no --build-only, --configure-only or --dry-run";; esac
fi
[ -n "$CLIENTS" ] || { [ "$CPU" = 1 ] && CLIENTS=1,4; } || CLIENTS=1,16,64,256
case "$CLIENTS" in *[!0-9,]*|''|,*|*,|*,,*) bad "--clients takes a list like 1,16,64,256";; esac
for n in ${CLIENTS//,/ }; do   # llama-server's slots, like llama-batched-bench's sequences: LLAMA_MAX_SEQ
    { [ "$n" -ge 1 ] && [ "$n" -le 256 ]; } || bad "--clients: client counts run from 1 to 256 (llama-server's most slots)"
done
case "$MAX_BATCH_TOKENS" in *[!0-9]*|''|0) bad "--max-batch-tokens takes a positive integer";; esac
for n in ${CLIENTS//,/ }; do   # slmd refuses --max-seqs above --max-batch-tokens
    [ "$n" -le "$MAX_BATCH_TOKENS" ] || bad "--max-batch-tokens $MAX_BATCH_TOKENS is below the client count $n (slmd's --max-seqs)"
done
[ "$CPU" = 1 ] && [ "$BUILD" = build-gpu ] && BUILD=build
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD;; esac
[ -n "$RAW_DIR" ] || RAW_DIR=$BUILD/gpu-bench/compare

# ---- the table, from the four programs' outputs in a folder (also --dry-run's input)
table() {
    python3 - "$1" "$NPL" "$PP" "$TG" "$MODEL" <<'PY'
import json, os, re, sys

raw, npl, pp, tg, model = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tests = (f"pp{pp}", f"tg{tg}")

def path(name):
    p = os.path.join(raw, name)
    return p if os.path.exists(p) and os.path.getsize(p) > 0 else None

def test_name(n_prompt, n_gen):
    if n_prompt > 0 and n_gen == 0:
        return f"pp{n_prompt}"
    if n_gen > 0 and n_prompt == 0:
        return f"tg{n_gen}"
    return None

def read_llama_bench():
    """{(test, fa): (mean t/s, sd)}, a description of the build and the model file, from -o json
    or from the markdown table (whose fa column is there only when -fa was given)."""
    out, about, file = {}, "", None
    p = path("llama-bench.json")
    if p:
        try:
            recs = json.load(open(p))
        except ValueError as e:   # a run cut short leaves the array open
            print(f"compare-llama-cpp: {p}: not JSON ({e})", file=sys.stderr)
            recs = []
        for r in recs:
            name = test_name(r["n_prompt"], r["n_gen"])
            if name and r.get("n_depth", 0) == 0:
                out[(name, int(r.get("flash_attn", -1)))] = (float(r["avg_ts"]), float(r["stddev_ts"]))
            on = f" on {r['gpu_info']}" if r.get("gpu_info") else ""
            about = f"build {r.get('build_commit', '?')}, {r.get('backends', '?')}{on}, ngl {r.get('n_gpu_layers', '?')}"
            file = r.get("model_filename")
        return out, about, file
    p = path("llama-bench.md")
    if not p:
        return out, "no llama-bench output", file
    cols, build = None, ""
    for line in open(p, encoding="utf-8"):
        line = line.strip()
        if line.startswith("build:"):
            build = "build " + line[len("build:"):].strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cols is None:
            if "test" in cells and "t/s" in cells:
                cols = cells
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        row = dict(zip(cols, cells))
        m = re.fullmatch(r"(pp\d+|tg\d+)", row.get("test", ""))
        v = re.fullmatch(r"([0-9.]+) ± ([0-9.]+)", row.get("t/s", ""))
        if m and v:
            out[(m.group(1), int(row.get("fa", "-1")))] = (float(v.group(1)), float(v.group(2)))
            about = f"{row.get('backend', '?')}, ngl {row.get('ngl', '?')}"
    return out, ", ".join(x for x in (build, about) if x), file

def jsonl(name, key):
    p = path(name)
    if not p:
        return []
    recs = []
    for line in open(p):
        line = line.strip()
        if line.startswith("{"):
            try:
                r = json.loads(line)
            except ValueError:
                print(f"compare-llama-cpp: {p}: a line that is not JSON: {line[:60]}", file=sys.stderr)
                continue
            if key in r:
                recs.append(r)
    return recs

llama, about, file = read_llama_bench()
slmd = {r["test"]: (float(r["tokens_per_s"]), float(r["sd"])) for r in jsonl("bench_engine.json", "test")}
lbb = {int(r["pl"]): r for r in jsonl("llama-batched-bench.jsonl", "speed_tg")}
sbb = {int(r["pl"]): r for r in jsonl("batched_bench.json", "speed_tg")}
fa_bb = next((r.get("flash_attn") for r in lbb.values()), None)

print(f"model: {os.path.basename(file or model)}")
print(f"llama.cpp: {about}")
print()
print("| test | llama.cpp t/s | slmd t/s | slmd / llama.cpp |")
print("|---|---|---|---|")
missing = 0
def line(label, l, s, sd_l=None, sd_s=None):
    global missing
    if l is None or s is None:
        missing += 1
        print(f"| {label} | {'missing' if l is None else f'{l:.2f}'} | {'missing' if s is None else f'{s:.2f}'} | - |")
        return None
    fl = f"{l:.2f} ± {sd_l:.2f}" if sd_l is not None else f"{l:.2f}"
    fs = f"{s:.2f} ± {sd_s:.2f}" if sd_s is not None else f"{s:.2f}"
    print(f"| {label} | {fl} | {fs} | {s / l:.2f}x |")
    return s / l
best = {}
for name in tests:
    for fa in (0, 1):
        l, s = llama.get((name, fa)), slmd.get(name)
        r = line(f"{name}, llama.cpp -fa {fa}", l and l[0], s and s[0], l and l[1], s and s[1])
        if r is not None:
            best[name] = min(best.get(name, r), r)
for what, key in (("decode S_TG", "speed_tg"), ("prefill S_PP", "speed_pp")):
    for pl in npl:
        l, s = lbb.get(pl), sbb.get(pl)
        line(f"batched {what}, B={pl}", l and float(l[key]), s and float(s[key]))
print()
one = next(iter(lbb.values()), None) or next(iter(sbb.values()), None)
if one:
    fa = {-1: "auto", 0: "off", 1: "on"}.get(fa_bb, "?")
    print(f"batched: each of B sequences prefills {one['pp']} tokens, then decodes {one['tg']}; llama.cpp's flash attention {fa}")
if best:
    print("against llama.cpp's faster flash-attention setting: "
          + ", ".join(f"{n} {r:.2f}x" for n, r in best.items()) + " (slmd must be >= 1.00x: docs/performance.md)")
if missing:
    print(f"{missing} figure(s) missing")
sys.exit(1 if missing else 0)
PY
}

# ---- the serving table, from slm-bench's llama-server.N.json and slmd.N.json in a folder
TARGET_TOKS=3597 TARGET_X=4 TARGET_TTFT_MS=500   # issue 15: 256 clients, >= 4x 3,597 tok/s, TTFT p99 < 500 ms
serving_table() {
    python3 - "$1" "$CLIENTS" "$TARGET_TOKS" "$TARGET_X" "$TARGET_TTFT_MS" <<'PY'
import json, os, sys

raw, clients = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
base, times, ttft_max = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])

def run(engine, n):
    """runs[0] of slm-bench's --json for one point, or None (said on stderr when unreadable)."""
    p = os.path.join(raw, f"{engine}.{n}.json")
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    try:
        r = json.load(open(p))["runs"][0]
        r["output_tokens_per_s"], r["ttft_ms"]["p99"]   # the figures the table needs
        return r
    except (ValueError, KeyError, IndexError, TypeError) as e:
        print(f"compare-llama-cpp: {p}: not slm-bench's JSON ({e!r})", file=sys.stderr)
        return None

def backend(engine):
    for n in clients:
        p = os.path.join(raw, f"{engine}.{n}.json")
        try:
            doc = json.load(open(p))
        except (OSError, ValueError):
            continue
        srv = doc.get("server") or {}
        return ", ".join(f"{k} {srv[k]}" for k in ("build", "backend") if srv.get(k)) or "?"
    return "no output"

print(f"serving: llama-server ({backend('llama-server')}) against slmd serve ({backend('slmd')}); "
      "closed loop, 128-token random prompts, 128 output tokens, greedy")
print()
print("| clients | llama-server out tok/s | slmd out tok/s | slmd / llama-server "
      "| TTFT p50 ms llama / slmd | TTFT p99 ms llama / slmd | TPOT p50 ms llama / slmd | failed llama / slmd |")
print("|---|---|---|---|---|---|---|---|")
missing, failed, at = 0, 0, {}
def fig(r, key, p=None, fmt="{:.1f}"):
    if r is None:
        return "missing"
    return fmt.format(r[key][p] if p else r[key])
for n in clients:
    a, b = run("llama-server", n), run("slmd", n)
    missing += (a is None) + (b is None)
    failed += sum(int(r.get("failed", 0)) for r in (a, b) if r)
    ratio = f"{b['output_tokens_per_s'] / a['output_tokens_per_s']:.2f}x" if a and b and a["output_tokens_per_s"] > 0 else "-"
    print(f"| {n} | {fig(a, 'output_tokens_per_s')} | {fig(b, 'output_tokens_per_s')} | {ratio} "
          f"| {fig(a, 'ttft_ms', 'p50')} / {fig(b, 'ttft_ms', 'p50')} | {fig(a, 'ttft_ms', 'p99')} / {fig(b, 'ttft_ms', 'p99')} "
          f"| {fig(a, 'tpot_ms', 'p50', '{:.2f}')} / {fig(b, 'tpot_ms', 'p50', '{:.2f}')} "
          f"| {fig(a, 'failed', fmt='{}')} / {fig(b, 'failed', fmt='{}')} |")
    at[n] = b
print()
goal = base * times
if 256 not in clients:
    print(f"targets (issue 15, 256 clients): not in this run (clients {','.join(map(str, clients))})")
elif at[256] is None:
    print(f"target 256 clients: slmd >= {times:g}x {base:,.0f} = {goal:,.0f} out tok/s: missing")
    print(f"target 256 clients: slmd TTFT p99 < {ttft_max:g} ms: missing")
else:
    t, f99 = at[256]["output_tokens_per_s"], at[256]["ttft_ms"]["p99"]
    print(f"target 256 clients: slmd >= {times:g}x {base:,.0f} = {goal:,.0f} out tok/s: "
          f"{'met' if t >= goal else 'NOT met'} ({t:,.1f} tok/s, {t / base:.2f}x {base:,.0f})")
    print(f"target 256 clients: slmd TTFT p99 < {ttft_max:g} ms: {'met' if f99 < ttft_max else 'NOT met'} ({f99:.1f} ms)")
if missing:
    print(f"{missing} serving run(s) missing")
if failed:
    print(f"{failed} request(s) failed")
sys.exit(1 if missing or failed else 0)
PY
}

# serving_runs SERVER SLMD BENCH BACKEND LLAMA-ARG...: each client count, llama-server (SERVER with
# LLAMA-ARG... and the count's own -np/-c) then slmd serve --backend BACKEND, slm-bench against each;
# outputs in $RAW_DIR. Returns 1 when a run failed (the next count still runs).
serving_runs() {
    local server=$1 slmd=$2 bench=$3 backend=$4 n m rc=0
    shift 4
    local threads=()
    [ "$backend" = cpu ] && threads=(--threads "$CPU_THREADS")
    rm -f "$RAW_DIR"/llama-server.*.json "$RAW_DIR"/slmd.*.json
    for n in ${CLIENTS//,/ }; do
        m=${REQUESTS:-$(( 2 * n > 8 ? 2 * n : 8 ))}
        echo "== serving, $n client(s): llama-server -np $n, $m requests"
        if bench_start_llama_server "$server" "$RAW_DIR/llama-server.$n.log" -m "$MODEL" "$@" -np "$n" \
               -c $(( n * SERVE_CTX )) -cb --no-webui; then
            bench_serving_point "$bench" llama-server "$n" "$m" "$NPP" "$NTG" "$RAW_DIR/llama-server.$n.json" \
                "$RAW_DIR/llama-server.$n.out" --url "$BENCH_URL" || rc=1
            bench_stop_server
        else
            rc=1
        fi
        echo "== serving, $n client(s): slmd serve --backend $backend --max-seqs $n --max-batch-tokens $MAX_BATCH_TOKENS, $m requests"
        if bench_start_slmd "$slmd" "$RAW_DIR/slmd.sock" "$RAW_DIR/slmd.$n.log" --backend "$backend" --model "$MODEL" \
               "${threads[@]}" --ctx-size "$SERVE_CTX" --max-seqs "$n" --max-batch-tokens "$MAX_BATCH_TOKENS"; then
            bench_serving_point "$bench" slmd "$n" "$m" "$NPP" "$NTG" "$RAW_DIR/slmd.$n.json" "$RAW_DIR/slmd.$n.out" \
                --socket "$RAW_DIR/slmd.sock" || rc=1
            bench_stop_server
        else
            rc=1
        fi
    done
    return $rc
}

if [ "$MODE" = dry ]; then
    [ -d "$DRY" ] || die "--dry-run $DRY: no such folder"
    have_serving=0
    for f in "$DRY"/llama-server.*.json "$DRY"/slmd.*.json; do [ -f "$f" ] && have_serving=1; done
    have_benches=0
    { [ -f "$DRY/llama-bench.json" ] || [ -f "$DRY/llama-bench.md" ] || [ -f "$DRY/bench_engine.json" ]; } && have_benches=1
    [ "$have_benches" = 1 ] || [ "$have_serving" = 1 ] ||
        die "--dry-run $DRY: none of llama-bench.json, llama-bench.md, bench_engine.json, llama-server.N.json, slmd.N.json there"
    status=0
    if [ "$BENCHES" = 1 ] && [ "$have_benches" = 1 ]; then table "$DRY" || status=1; fi
    if [ "$SERVING" = 1 ] && [ "$have_serving" = 1 ]; then
        [ "$BENCHES" = 1 ] && [ "$have_benches" = 1 ] && echo
        serving_table "$DRY" || status=1
    fi
    exit $status
fi

# ---- --cpu: the serving runs with the CPU builds of both engines, no GPU
if [ "$CPU" = 1 ]; then
    [ -r "$MODEL" ] || die "cannot read the model $MODEL (--model FILE)"
    export BUILD
    # shellcheck source=bench/lib.sh
    . "$ROOT/bench/lib.sh"
    if [ -n "$LLAMA_SERVER" ]; then
        [ -x "$LLAMA_SERVER" ] || die "--llama-server $LLAMA_SERVER: not an executable"
    else
        LLAMA_SERVER=$(bench_peer_bin llama-server) || die "no CPU llama-server (bench/peer/build-llama-cpp.sh)"
    fi
    SLMD=$(bench_slmd_bin slmd) || die "building slmd failed"
    BENCH=$(bench_slmd_bin slm-bench) || die "building slm-bench failed"
    trap bench_stop_server EXIT
    mkdir -p "$RAW_DIR"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online, load average $(cut -d' ' -f1-3 /proc/loadavg); $CPU_THREADS threads each; llama-server $LLAMA_SERVER; raw outputs in $RAW_DIR"
    status=0
    serving_runs "$LLAMA_SERVER" "$SLMD" "$BENCH" cpu -t "$CPU_THREADS" -tb "$CPU_THREADS" || status=1
    serving_table "$RAW_DIR" | tee "$RAW_DIR/serving.md" || status=1
    exit $status
fi

if [ "$MODE" = run ] && { ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; }; then
    die "no NVIDIA GPU here (nvidia-smi is missing or sees no device): nothing to measure (--dry-run DIR prints the table from recorded outputs)"
fi

# ---- llama.cpp: unpacked and configured under $PEER_CUDA, never inside the repository
case "$(cd "$(dirname "$PEER_CUDA")" 2>/dev/null && pwd)/$(basename "$PEER_CUDA")/" in
    "$ROOT"/*) bad "--peer must be outside the repository ($PEER_CUDA)";;
esac
if [ -z "$SRC" ]; then
    SRC=$(find "$ROOT/.gpu-llama-cpp" -maxdepth 1 -name 'llama-cpp-*-cuda-src.tar.xz' 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$SRC" ] || SRC=${SLM_DL_DIR:-$HOME/.cache/slmd/dl}/llama_cpp_python-$VERSION.tar.gz
    [ -f "$SRC" ] || die "no llama.cpp source: neither .gpu-llama-cpp/llama-cpp-*-cuda-src.tar.xz (bench/gpu/pack-llama-cpp.sh) nor $SRC; give --src FILE"
fi
[ -f "$SRC" ] || die "--src $SRC: no such file"

if [ "$MODE" = run ] && [ ${#PARTS[@]} -gt 0 ]; then
    MODEL=$(gpu_join_model "${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}" "${PARTS[@]}") || exit 1
fi
if [ "$MODE" = run ]; then [ -r "$MODEL" ] || die "cannot read the model $MODEL (--model FILE or --model-parts)"; fi
command -v cmake > /dev/null 2>&1 || die "cmake not found"
command -v nvcc > /dev/null 2>&1 || PATH=$PATH:/usr/local/cuda/bin
command -v nvcc > /dev/null 2>&1 || die "nvcc not found (CUDA toolkit)"
JOBS=${BENCH_JOBS:-$(nproc)}

SRC_SUM=$(sha256sum "$SRC" | cut -d' ' -f1)
TREE=$PEER_CUDA/src/llama.cpp
LB=$PEER_CUDA/build
mkdir -p "$PEER_CUDA"
if [ "$(cat "$PEER_CUDA/SOURCE" 2>/dev/null)" != "$SRC_SUM" ] || [ ! -f "$TREE/CMakeLists.txt" ]; then
    echo "== llama.cpp: unpacking $SRC into $PEER_CUDA/src"
    rm -rf "$PEER_CUDA/src" "$PEER_CUDA/unpack" "$LB" "$PEER_CUDA/SOURCE"
    mkdir -p "$PEER_CUDA/unpack" "$PEER_CUDA/src"
    case "$SRC" in
        *.tar.xz) tar -xJf "$SRC" -C "$PEER_CUDA/unpack" 2> "$PEER_CUDA/unpack.err" ||
                      die "cannot unpack $SRC ($(head -1 "$PEER_CUDA/unpack.err"))";;
        *.tar.gz) tar -xzf "$SRC" -C "$PEER_CUDA/unpack" --wildcards '*/vendor/llama.cpp/*' 2> "$PEER_CUDA/unpack.err" ||
                      die "cannot unpack $SRC ($(head -1 "$PEER_CUDA/unpack.err"))";;
        *) die "--src $SRC: neither a .tar.xz of pack-llama-cpp.sh nor a .tar.gz sdist";;
    esac
    found=$(find "$PEER_CUDA/unpack" -maxdepth 3 -type d -name llama.cpp | head -1)
    { [ -n "$found" ] && [ -f "$found/CMakeLists.txt" ]; } || die "$SRC holds no llama.cpp tree"
    mv "$found" "$TREE"
    rm -rf "$PEER_CUDA/unpack"
    echo "$SRC_SUM" > "$PEER_CUDA/SOURCE"
fi
# The tree's own options, checked rather than assumed: an option it lacks would be ignored silently.
for opt in LLAMA_BUILD_APP LLAMA_BUILD_SERVER LLAMA_BUILD_TESTS LLAMA_BUILD_EXAMPLES LLAMA_BUILD_TOOLS; do
    grep -q "option($opt " "$TREE/CMakeLists.txt" || die "$TREE/CMakeLists.txt has no option $opt: another llama.cpp than this script knows"
done
grep -q "option(LLAMA_BUILD_UI " "$TREE/CMakeLists.txt" && grep -q "option(LLAMA_USE_PREBUILT_UI " "$TREE/CMakeLists.txt" ||
    die "$TREE/CMakeLists.txt has no option LLAMA_BUILD_UI or LLAMA_USE_PREBUILT_UI: another llama.cpp than this script knows"
for t in llama-bench batched-bench server; do
    [ -f "$TREE/tools/$t/CMakeLists.txt" ] || die "$TREE/tools/$t missing: another llama.cpp layout than this script knows (an older pack-llama-cpp.sh tarball left the server out)"
done
# A build folder configured before the server was part of the comparison is configured again.
# The packed tree has no git history, so its build line names the llama-cpp-python release instead.
grep -q '^LLAMA_BUILD_SERVER:BOOL=ON' "$LB/CMakeCache.txt" 2> /dev/null || rm -f "$LB/CMakeCache.txt"
if [ ! -f "$LB/CMakeCache.txt" ]; then
    echo "== llama.cpp: configuring (CUDA, sm_$CUDA_ARCH; log in $PEER_CUDA/configure.log)"
    GEN=()
    command -v ninja > /dev/null 2>&1 && GEN=(-G Ninja)
    cmake -S "$TREE" -B "$LB" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH -DGGML_CUDA_NCCL=OFF -DGGML_NATIVE=ON \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_COMMIT="llama-cpp-python-$VERSION" > "$PEER_CUDA/configure.log" 2>&1 ||
        { tail -20 "$PEER_CUDA/configure.log" >&2; rm -f "$LB/CMakeCache.txt"; die "configuring llama.cpp failed ($PEER_CUDA/configure.log)"; }
fi
if [ "$MODE" = configure ]; then
    echo "compare-llama-cpp: llama.cpp configured in $LB"
    exit 0
fi
LLAMA_BENCH=$LB/bin/llama-bench
LLAMA_BB=$LB/bin/llama-batched-bench
LLAMA_SERVER=$LB/bin/llama-server
targets=() bins=()
[ "$BENCHES" = 1 ] && targets+=(llama-bench llama-batched-bench) && bins+=("$LLAMA_BENCH" "$LLAMA_BB")
[ "$SERVING" = 1 ] && targets+=(llama-server) && bins+=("$LLAMA_SERVER")
built=1
for b in "${bins[@]}"; do [ -x "$b" ] || built=0; done
if [ "$built" = 0 ] || [ "$MODE" = build ]; then
    echo "== llama.cpp: building ${targets[*]} ($JOBS jobs; log in $PEER_CUDA/build.log)"
    cmake --build "$LB" -j "$JOBS" --target "${targets[@]}" > "$PEER_CUDA/build.log" 2>&1 ||
        { tail -30 "$PEER_CUDA/build.log" >&2; die "building llama.cpp failed ($PEER_CUDA/build.log)"; }
fi
for b in "${bins[@]}"; do [ -x "$b" ] || die "$(basename "$b") not in $LB/bin after the build"; done

# ---- slmd's two programs, in run.sh's build folder (configured here for this GPU when absent)
[ -z "$DEPS" ] || gpu_use_deps "$DEPS" || exit 1
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .' || true)
    case "$arch" in [1-9][0-9]) ;; *) arch=$CUDA_ARCH;; esac
    echo "== slmd: configuring $BUILD (sm_$arch)"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch-real" > /dev/null ||
        die "configuring slmd in $BUILD failed"
fi
export BENCH_JOBS=$JOBS
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
if [ "$BENCHES" = 1 ]; then
    ENGINE=$(bench_slmd_bin bench_engine) || die "building bench_engine failed"
    OURS_BB=$(bench_slmd_bin batched_bench) || die "building batched_bench failed"
    bins+=("$ENGINE" "$OURS_BB")
fi
if [ "$SERVING" = 1 ]; then
    SLMD=$(bench_slmd_bin slmd) || die "building slmd failed"
    BENCH=$(bench_slmd_bin slm-bench) || die "building slm-bench failed"
    bins+=("$SLMD" "$BENCH")
fi
if [ "$MODE" = build ]; then
    echo "compare-llama-cpp: built ${bins[*]}"
    exit 0
fi

# ---- the runs, one after the other
MAX_PL=$(tr ',' '\n' <<< "$NPL" | sort -n | tail -1)
CTX=$(( MAX_PL * (NPP + NTG) ))
mkdir -p "$RAW_DIR"
echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1); raw outputs in $RAW_DIR"
status=0
if [ "$BENCHES" = 1 ]; then
    rm -f "$RAW_DIR"/llama-bench.json "$RAW_DIR"/llama-bench.md "$RAW_DIR"/bench_engine.json \
          "$RAW_DIR"/llama-batched-bench.jsonl "$RAW_DIR"/batched_bench.json
    echo "== llama-bench (pp$PP, tg$TG, -fa 0,1, $REPS runs)"
    "$LLAMA_BENCH" -m "$MODEL" -ngl 99 -p "$PP" -n "$TG" -fa 0,1 -r "$REPS" -o json \
        > "$RAW_DIR/llama-bench.json" 2> "$RAW_DIR/llama-bench.err" ||
        { tail -5 "$RAW_DIR/llama-bench.err" >&2; echo "compare-llama-cpp: llama-bench failed" >&2; status=1; }
    echo "== slmd bench_engine --backend cuda"
    "$ENGINE" --backend cuda --model "$MODEL" -p "$PP" -n "$TG" --reps "$REPS" --json \
        > "$RAW_DIR/bench_engine.json" 2> "$RAW_DIR/bench_engine.err" ||
        { tail -5 "$RAW_DIR/bench_engine.err" >&2; echo "compare-llama-cpp: bench_engine failed" >&2; status=1; }
    echo "== llama-batched-bench (B in $NPL, npp $NPP, ntg $NTG)"
    "$LLAMA_BB" -m "$MODEL" -ngl 99 -c "$CTX" -b 2048 -ub 512 -npp "$NPP" -ntg "$NTG" -npl "$NPL" --output-format jsonl \
        > "$RAW_DIR/llama-batched-bench.jsonl" 2> "$RAW_DIR/llama-batched-bench.err" ||
        { tail -5 "$RAW_DIR/llama-batched-bench.err" >&2; echo "compare-llama-cpp: llama-batched-bench failed" >&2; status=1; }
    echo "== slmd batched_bench --backend cuda"
    "$OURS_BB" --backend cuda --model "$MODEL" --npp "$NPP" --ntg "$NTG" --npl "$NPL" --json \
        > "$RAW_DIR/batched_bench.json" 2> "$RAW_DIR/batched_bench.err" ||
        { tail -5 "$RAW_DIR/batched_bench.err" >&2; echo "compare-llama-cpp: batched_bench failed" >&2; status=1; }

    table "$RAW_DIR" | tee "$RAW_DIR/table.md" || status=1
fi

if [ "$SERVING" = 1 ]; then
    trap bench_stop_server EXIT
    serving_runs "$LLAMA_SERVER" "$SLMD" "$BENCH" cuda -ngl 99 || status=1
    [ "$BENCHES" = 1 ] && echo
    serving_table "$RAW_DIR" | tee "$RAW_DIR/serving.md" || status=1
fi
exit $status
