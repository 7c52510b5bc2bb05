#!/bin/sh
# bench/gpu/run.sh - on a machine with an NVIDIA GPU: builds slmd for it, runs the CUDA kernel
# tests for real, times every kernel against its roofline (bench/gpu/gpu_kernels.c), measures
# end-to-end prefill and decode through the cuda backend (bench_engine, batched_bench), and
# prints one table. The decode target (issue 5): batch-1 decode at >= 70% of the bandwidth
# roofline, i.e. measured bandwidth / the weight bytes one decode step reads.
#
# usage: bench/gpu/run.sh [--model FILE | --model-parts PART...] [--deps DIR] [--build DIR] [--out DIR]
#                         [--quick | --build-only] | --table DIR
#   --model FILE  the GGUF for the end-to-end part and test_cuda_model
#                 [$SLM_MODEL_DIR or ~/.cache/slmd/models]/SmolLM2-135M-Instruct.Q4_1.gguf;
#                 without it that part is skipped (and says so)
#   --model-parts PART...  the model as pieces (a 64 MiB carry holds no whole model): the files
#                 (or quoted globs, expanded in sorted order) up to the next --option, joined in
#                 that order into $SLM_MODEL_DIR (~/.cache/slmd/models) under the name of the model in
#                 packaging/models.tsv whose pinned sha256 they match; no match is an error
#   --deps DIR    .deb files of the build's libraries (bench/gpu/fetch-deps.sh makes the folder),
#                 for a machine that lacks them and cannot fetch them: unpacked under /tmp/slm-deps
#   --build DIR   build folder [build-gpu]
#   --out DIR     where the logs and the table go [build-gpu/gpu-bench]
#   --quick       fewer repetitions and only SmolLM2's kernel shapes
#   --build-only  build (for this GPU's architecture only) and stop: the first of two device calls
#   --table DIR   only print the table again from the outputs of an earlier run in DIR (its --out:
#                 kernels.json, e2e.json, e2e_plain.json, e2e_decodegraphs.json, gpu.csv,
#                 tests.txt); no GPU needed
# Exit status: 0 when everything ran and every kernel test passed, 1 otherwise, 2 on bad usage.
set -u
MODEL_DIR="${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
DEPS="" BUILD=build-gpu OUT="" QUICK=0 HAVE_MODEL=0 PARTS="" BUILD_ONLY=0 TABLE=""
usage() { sed -n '8,26p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --model|--deps|--build|--out|--table)
        [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; } ;;
    esac
    case "$1" in
    --model) MODEL="$2"; HAVE_MODEL=1; shift 2 ;;
    --model-parts)
        shift
        while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do
            PARTS="$PARTS$1
"
            shift
        done
        [ -n "$PARTS" ] || { echo "run.sh: --model-parts needs at least one file" >&2; exit 2; } ;;
    --deps) DEPS="$2"; shift 2 ;;
    --build) BUILD="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --table) TABLE="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run.sh: unknown argument $1 (bench/gpu/run.sh --help lists the options)" >&2; exit 2 ;;
    esac
done
[ "$HAVE_MODEL" = 1 ] && [ -n "$PARTS" ] && { echo "run.sh: give --model or --model-parts, not both" >&2; exit 2; }
[ -n "$OUT" ] || OUT="$BUILD/gpu-bench"
GPU_ROOT=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
GPU_PROG=run.sh
. "$GPU_ROOT/bench/gpu/common.sh"

# The Markdown table of a run's outputs in $1 (the model's path $2 names the end-to-end part).
table() {
    python3 - "$1" "$2" << 'EOF'
import json, os, sys
out, model = sys.argv[1], sys.argv[2]
def lines(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    recs = []
    for i, l in enumerate(open(path), 1):
        if l.strip().startswith("{"):
            try:
                recs.append(json.loads(l))
            except ValueError as e:
                sys.exit(f"run.sh: {path} line {i} is not a JSON record ({e}): no table")
    return recs
k = lines("kernels.json")
ceil = next((r for r in k if r.get("ceilings")), None)
print("# slmd on the GPU (bench/gpu/run.sh)\n")
print("GPU: " + " / ".join(l.strip() for l in open(os.path.join(out, "gpu.csv")).readlines()[1:2]))
if ceil:
    print(f"Measured: memory bandwidth {ceil['bandwidth_gbs']:.0f} GB/s\n")
print("Kernel tests: " + ", ".join(l.strip() for l in open(os.path.join(out, "tests.txt"))) + "\n")
print("| model | kernel | shape / type | n | KB moved | us | roofline us | bound | roof % |")
print("|---|---|---|---|---|---|---|---|---|")
for r in k:
    if r.get("skipped"):
        print(f"| {r['model']} | {r['kernel']} | {r['what']} | {r['n']} | skipped: {r['reason']} | | | | |")
    elif "kernel" in r:
        print(f"| {r['model']} | {r['kernel']} | {r['what']} | {r['n']} | {r['bytes']/1e3:.1f} | {r['us']:.2f} | "
              f"{r['roofline_us']:.2f} | {r['bound']} | {r['roof_pct']:.1f} |")
e = lines("e2e.json")
if e:
    print(f"\nEnd to end, {os.path.basename(model)}, cuda backend:\n")
    wb = next((r["decode_weight_bytes"] for r in e if "decode_weight_bytes" in r), None)
    for r in e:
        if "test" in r:
            print(f"- {r['test']}: {r['tokens_per_s']:.1f} tokens/s (sd {r['sd']:.1f})")
        elif "speed_tg" in r and r.get("overlap"):
            print(f"- batched, {r['pl']} sequences, overlapped steps polling {r['spin_us']} us: decode "
                  f"{r['speed_tg']:.0f} tokens/s, the threads' hand-offs {r['handoff_us']:.1f} us a step")
        elif "speed_tg" in r:
            print(f"- batched, {r['pl']} sequences: prefill {r['speed_pp']:.0f} tokens/s, decode {r['speed_tg']:.0f} tokens/s")
    # the A/B runs: bench_engine again with one thing off, and what that thing is worth
    for name, off, worth in (("e2e_plain.json", "with plain launches (SLM_CUDA_PDL=0)", "programmatic dependent launch"),
                             ("e2e_decodegraphs.json", "with graphs for decode-only steps only (SLM_CUDA_GRAPHS=decode)",
                              "mixed step graphs")):
        other = {r["test"]: r for r in lines(name) if "test" in r}
        for r in e:
            if r.get("test") in other:
                q = other[r["test"]]
                print(f"- {r['test']} {off}: {q['tokens_per_s']:.1f} tokens/s: {worth} "
                      f"{r['tokens_per_s'] / q['tokens_per_s']:.3f}x")
    tg = next((r for r in e if r.get("test", "").startswith("tg")), None)
    if wb and ceil and tg:
        roof = ceil["bandwidth_gbs"] * 1e9 / wb
        pct = 100 * tg["tokens_per_s"] / roof
        print(f"\nDecode at batch 1: {tg['tokens_per_s']:.0f} tokens/s against a bandwidth roofline of {roof:.0f} "
              f"tokens/s ({wb/1e6:.1f} MB of weights a step): {pct:.1f}% (target >= 70%: "
              f"{'met' if pct >= 70 else 'NOT met'})")
EOF
}

if [ -n "$TABLE" ]; then
    [ -f "$TABLE/gpu.csv" ] && [ -f "$TABLE/tests.txt" ] ||
        { echo "run.sh: --table $TABLE: no gpu.csv and tests.txt there (the --out folder of a run)" >&2; exit 2; }
    table "$TABLE" "$MODEL"   # a record that is not JSON: one line naming it, exit 1
    exit
fi

if [ -n "$PARTS" ]; then   # first (from the caller's folder), so that a bad join is said before anything else
    old_ifs=$IFS; IFS='
'
    set -f
    # shellcheck disable=SC2086
    set -- $PARTS
    set +f   # one argument a line; globs expand inside gpu_join_model
    IFS=$old_ifs
    MODEL=$(gpu_join_model "$MODEL_DIR" "$@") || exit 1
fi
case "$MODEL" in /*) ;; *) MODEL="$PWD/$MODEL" ;; esac
cd "$GPU_ROOT" || exit 1

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
    echo "run.sh: no NVIDIA GPU here (nvidia-smi is missing or sees no device): nothing to measure" >&2
    exit 1
fi
command -v nvcc > /dev/null 2>&1 || PATH="$PATH:/usr/local/cuda/bin"
command -v nvcc > /dev/null 2>&1 || { echo "run.sh: nvcc not found (CUDA toolkit)" >&2; exit 1; }

if [ -n "$DEPS" ]; then
    gpu_use_deps "$DEPS" || exit 1
fi

mkdir -p "$OUT"
# Only this GPU's architecture (compute capability 9.0 -> 90-real): a quarter of the default's nvcc work.
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
case "$ARCH" in [1-9][0-9]) ARCH_FLAG="-DCMAKE_CUDA_ARCHITECTURES=$ARCH-real" ;; *) ARCH_FLAG="" ;; esac
echo "== build ($BUILD, sm_${ARCH:-80..90}; log in $OUT/build.log)"
GEN=""
command -v ninja > /dev/null 2>&1 && GEN="-G Ninja"
# shellcheck disable=SC2086
# SLM_GPU_CMAKE_ARGS: more configure flags (e.g. -DSLM_CUDA_MMQ_CONVERT=ON for the MMQ's A/B, README.md)
{ cmake -S . -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release -DSLM_CUDA=ON $ARCH_FLAG ${SLM_GPU_CMAKE_ARGS:-} &&
  cmake --build "$BUILD" -j "$(nproc)" --target test_cuda_mma_gpu test_cuda_ops_gpu test_cuda_gemv_gpu test_cuda_mmq_gpu test_cuda_mmf_gpu \
      test_cuda_attention_gpu test_cuda_attention_decode_gpu test_cuda_sampling_gpu test_cuda_graphs_gpu test_cuda_model_gpu \
      gpu_kernels bench_engine batched_bench; } > "$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log" >&2; echo "run.sh: the build failed (the whole log: $OUT/build.log)" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv > "$OUT/gpu.csv" 2>&1
if [ "$BUILD_ONLY" = 1 ]; then
    echo "== built: $BUILD (--build-only)"
    exit 0
fi

echo "== kernel tests on the GPU"
status=0
: > "$OUT/tests.txt"
# mma first: the tensor-core instructions against a plain product, before the kernels built on them
for t in mma ops gemv mmq mmf attention attention_decode sampling graphs model; do
    SLM_MODEL_DIR="$(dirname "$MODEL")" SLM_TEST_DATA="$PWD/tests" "$BUILD/test_cuda_${t}_gpu" > "$OUT/test_$t.log" 2>&1
    rc=$?
    if [ "$t" = model ] && [ $rc -eq 0 ]; then   # and the engine sampling on the device
        SLM_MODEL_DIR="$(dirname "$MODEL")" SLM_TEST_DATA="$PWD/tests" "$BUILD/test_cuda_model_gpu" --sampling \
            >> "$OUT/test_$t.log" 2>&1
        rc=$?
    fi
    case $rc in 0) r=pass ;; 77) r=skip ;; *) r="FAIL ($rc)"; status=1 ;; esac
    echo "test_cuda_${t}_gpu $r" | tee -a "$OUT/tests.txt"
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || tail -15 "$OUT/test_$t.log"
done

echo "== kernels against their rooflines"
if [ "$QUICK" = 1 ]; then kargs="--reps 20 --model small"; else kargs="--reps 100 --model all"; fi
# shellcheck disable=SC2086
"$BUILD/gpu_kernels" $kargs --json > "$OUT/kernels.json" 2> "$OUT/kernels.err" || status=1

: > "$OUT/e2e.json"
if [ -f "$MODEL" ]; then
    echo "== end to end through the cuda backend ($MODEL)"
    reps=5; [ "$QUICK" = 1 ] && reps=2
    "$BUILD/bench_engine" --backend cuda --model "$MODEL" -p 512 -n 128 --reps "$reps" --json >> "$OUT/e2e.json" \
        2> "$OUT/e2e.err" || status=1
    "$BUILD/batched_bench" --backend cuda --model "$MODEL" --npp 128 --ntg 128 --npl 1,32,256 --json \
        >> "$OUT/e2e.json" 2>> "$OUT/e2e.err" || status=1
    # overlapped steps (slmd serve's default on cuda) with the threads sleeping at once and polling
    # for 1000 us (pass-spin-us): what the hand-offs cost a decode step (docs/engine.md)
    for spin in 0 1000; do
        "$BUILD/batched_bench" --backend cuda --model "$MODEL" --npp 128 --ntg 128 --npl 1,32 --overlap \
            --spin-us "$spin" --json >> "$OUT/e2e.json" 2>> "$OUT/e2e.err" || status=1
    done
    # the same with plain launches: what programmatic dependent launch is worth (docs/cuda.md)
    SLM_CUDA_PDL=0 "$BUILD/bench_engine" --backend cuda --model "$MODEL" -p 512 -n 128 --reps "$reps" --json \
        > "$OUT/e2e_plain.json" 2>> "$OUT/e2e.err" || status=1
    # and with graphs for decode-only steps only: what the mixed steps' graphs are worth to a
    # prompt of 512 (one step of 512 tokens; docs/cuda.md, "CUDA graphs")
    SLM_CUDA_GRAPHS=decode "$BUILD/bench_engine" --backend cuda --model "$MODEL" -p 512 -n 128 --reps "$reps" \
        --json > "$OUT/e2e_decodegraphs.json" 2>> "$OUT/e2e.err" || status=1
else
    echo "== end to end: skipped, no model at $MODEL (--model FILE)"
fi

table "$OUT" "$MODEL" > "$OUT/table.md" || status=1
cat "$OUT/table.md"
exit $status
