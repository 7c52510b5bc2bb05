#!/usr/bin/env bash
# tests/test_gpu_bench.sh - bench/gpu without a GPU: the kernel bench (gpu_kernels_emu, the
# same source under the SIMT emulator) runs every path in --smoke mode and prints a row for
# each kernel with finite figures; its JSON lines parse; bad flags are one-line errors;
# run.sh and bench_engine --backend cuda say in one line that there is no GPU; run.sh --table makes
# its table from the outputs of the programs a GPU run uses (here under the emulator and on the
# CPU). Times under
# the emulator mean nothing and are not checked.
set -u
bin=$(dirname "${SLMD:?SLMD must name the slmd binary}")
kb=$bin/gpu_kernels_emu
[ -x "$kb" ] || { echo "skip: $kb was not built (no SIMT emulator in this build)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
export SLM_EMU_WORKERS=2

if ! SLM_EMU_QUIET=1 "$kb" --smoke > "$tmp/table" 2> "$tmp/err"; then
  echo "FAIL gpu_kernels_emu --smoke: exit $?"; cat "$tmp/err" "$tmp/table"; fail=1
fi
# 4 types x 4 matmul launches (qkv, wo, gate/up, down) x (6 GEMV batch sizes + 4 MMQ batch sizes
# + 2 fused-MMQ batch sizes + the MMQ's narrow and wide kernels at 1 batch size + the matmul with x
# quantized before at 3 batch sizes in --smoke); F16
# and BF16 x 3 weights x 2 batch sizes on the MMF; fused attention at 3 batches x 3 contexts; the
# prefill attention in tiles at 2 contexts; 3 element-wise ops x 2; 2 sampling; the GEMV chain in
# a CUDA graph with plain and with programmatic launches
rows=$(grep -c '^tiny ' "$tmp/table")
[ "$rows" -eq 307 ] && echo "ok   307 kernel rows" || { echo "FAIL kernel rows: expected 307, got $rows"; cat "$tmp/table"; fail=1; }
for k in "gemv \\(fused\\) +qkv Q4_1 +1 " "gemv \\(fused\\) +wo Q4_K +8 " "gemv \\(fused\\) +gate/up Q6_K +2 " \
         "gemv \\(fused\\) +down Q8_0 +4 " "gemv \\(quantize \\+ gemv_q8\\) +qkv Q4_K +32 " \
         "mmq \\(quantize \\+ mmq\\) +qkv Q4_1 +9 .* tensor$" "mmq \\(quantize \\+ mmq\\) +gate/up Q6_K +64 " \
         "gemv \\(quantize \\+ gemv_q8\\) +down Q6_K +32 " "attention decode \\(fused\\) +ctx 17 +1 " \
         "attention decode \\(fused\\) +ctx 130 +64 " rmsnorm swiglu add "sample .*greedy" "sample .*top-p" \
         "mmq \\(fused\\) +qkv Q4_1 +9 " "mmq \\(fused\\) +gate/up Q4_K +16 " "mmf \\(tensor cores\\) +q F16 +1 " \
         "mmf \\(tensor cores\\) +down BF16 +8 " "attention prefill \\(tiles\\) +ctx 16 +16 " \
         "attention prefill \\(tiles\\) +ctx 130 +16 " "mmq \\(narrow\\) +down Q4_K +16 .* tensor$" \
         "mmq \\(wide\\) +gate/up Q6_K +16 " "gemv chain \\(plain\\) +wo Q4_1 +1 " \
         "gemv chain \\(programmatic\\) +wo Q4_1 +1 " "gemv_q8 \\(x quantized before\\) +qkv Q4_K +8 " \
         "mmq \\(x quantized before\\) +down Q6_K +9 .* tensor$"; do
  grep -q -E "^tiny +$k" "$tmp/table" || { echo "FAIL no row for $k"; fail=1; }
done
if grep -E '^tiny ' "$tmp/table" | grep -q -E 'FAILED|nan|inf'; then
  echo "FAIL a kernel failed or gave a non-finite figure:"; grep -E 'FAILED|nan|inf' "$tmp/table"; fail=1
fi
# SmolLM2's layer shapes: K-quant rows of 576 cannot exist, so only their down projection (576 x
# 1536) is timed; a row that fits no shape says "skipped" and why, and is no failure
rows=$(grep -c '^tiny-576 ' "$tmp/table")
[ "$rows" -eq 308 ] && echo "ok   308 tiny-576 rows" || { echo "FAIL tiny-576 rows: expected 308, got $rows"; fail=1; }
for k in "gemv \\(fused\\) +down Q4_K +1 " "gemv \\(quantize \\+ gemv_q8\\) +down Q6_K +32 " "gemv \\(fused\\) +qkv Q4_1 +1 " \
         "gemv +qkv Q4_K +1  skipped: Q4_K rows of 576 columns cannot exist"; do
  grep -q -E "^tiny-576 +$k" "$tmp/table" || { echo "FAIL no tiny-576 row for $k"; fail=1; }
done
grep -q -E '^tiny-576 .*down Q6_K +1  skipped: Q6_K rows of 100 columns cannot exist' "$tmp/table" &&
  echo "ok   a row that cannot exist is skipped with its reason" || { echo "FAIL no skipped row"; fail=1; }
if grep -E '^tiny-576 ' "$tmp/table" | grep -v skipped | grep -q -E 'FAILED|nan|inf'; then
  echo "FAIL a tiny-576 kernel failed or gave a non-finite figure"; fail=1
fi
grep -q "^measured: memory bandwidth" "$tmp/table" && echo "ok   ceilings measured" || { echo "FAIL no ceilings line"; fail=1; }

if SLM_EMU_QUIET=1 "$kb" --smoke --json > "$tmp/json" 2> "$tmp/err" &&
   python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
k = [x for x in r if "kernel" in x and not x.get("skipped")]
s = [x for x in r if x.get("skipped")]
assert r[0].get("ceilings") and r[0]["bandwidth_gbs"] > 0 and r[0]["int8_tensor_tops"] > 0 and len(k) == 512, (r[0], len(k))
assert len(s) == 103 and all("cannot exist" in x["reason"] for x in s), s
assert all(x["us"] > 0 and x["roofline_us"] > 0 for x in k)
tensor = ("mmq", "mmf", "attention prefill")
assert all(x["bound"] == "memory" for x in k if not x["kernel"].startswith(tensor))
assert all(x["bound"] in ("memory", "tensor") for x in k if x["kernel"].startswith(tensor))' "$tmp/json"; then
  echo "ok   --json: 512 kernel records, 103 skipped, and the ceilings"
else
  echo "FAIL --json output"; head -3 "$tmp/json"; cat "$tmp/err"; fail=1
fi

EXPECT_PROG=$kb
. "$(dirname "$0")/expect_error.sh"
expect_error "gpu_kernels bad flag" "^usage: gpu_kernels" --frobnicate
expect_error "gpu_kernels --reps 0" "^gpu_kernels: --reps takes 1..100000, not '0'" --reps 0
expect_error "gpu_kernels --reps 10x" "^gpu_kernels: --reps takes 1..100000, not '10x'" --reps 10x
expect_error "gpu_kernels --reps 100001" "^gpu_kernels: --reps takes 1..100000, not '100001'" --reps 100001
SLM_EMU_DEVICES=0 expect_error "gpu_kernels --model 70b (before any device)" \
  "^gpu_kernels: --model takes small, 1.5b, 7b or all, not '70b'" --model 70b
SLM_EMU_DEVICES=0 expect_error "gpu_kernels with no device" "^gpu_kernels: no CUDA device" --smoke
# batched_bench's --spin-us (run.sh's overlapped runs), refused before the model loads
if [ -x "$bin/batched_bench" ]; then
  EXPECT_PROG=$bin/batched_bench
  for v in -1 1000001 soon ""; do
    expect_error "batched_bench --spin-us '$v'" "^batched_bench: --spin-us takes 0..1000000 microseconds, not '$v'" \
      --model x --overlap --spin-us "$v"
  done
  expect_error "batched_bench --spin-us without --overlap" "^batched_bench: --spin-us is the overlapped steps' polling: it needs --overlap" \
    --model x --spin-us 100
fi

# run.sh's arguments and its model parts, checked before it looks for a GPU: each bad one is one line
EXPECT_PROG=$(dirname "$0")/../bench/gpu/run.sh
models_dir=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}
mkdir -p "$tmp/parts/a" "$tmp/parts/b"
printf 'GGUF not a model' > "$tmp/parts/a/m.part1"
printf ' at all' > "$tmp/parts/b/m.part2"
expect_error "run.sh bad flag" "^run.sh: unknown argument --frobnicate" --frobnicate
expect_error "run.sh --model-parts with no file" "^run.sh: --model-parts needs at least one file" --model-parts --quick
expect_error "run.sh --model and --model-parts" "^run.sh: give --model or --model-parts, not both" \
  --model x --model-parts "$tmp/parts/a/m.part1"
SLM_MODEL_DIR=$tmp/joined expect_error "run.sh a missing model part" "^run.sh: model part $tmp/parts/c/m.part3: no such readable file" \
  --model-parts "$tmp/parts/a/m.part1" "$tmp/parts/c/m.part3"
SLM_MODEL_DIR=$tmp/joined expect_error "run.sh parts that match no pin" \
  "^run.sh: the 2 model parts joined \(23 bytes, sha256 [0-9a-f]{64}\) match no model pinned in packaging/models.tsv" \
  --model-parts "$tmp/parts/?/m.part*"
[ -z "$(ls -A "$tmp/joined" 2>/dev/null)" ] && echo "ok   a bad join leaves nothing behind" || { echo "FAIL a bad join left $(ls -A "$tmp/joined")"; fail=1; }

# run.sh --table: the table of a run's outputs, here the emulated kernel bench's JSON and, with
# the model, bench_engine's and batched_bench's on the CPU (the same programs and records the
# GPU run writes), so that the last step of a device session is known to work; a folder that is
# no run's outputs is a one-line error, outputs that are not JSON another.
mkdir -p "$tmp/run"
cp "$tmp/json" "$tmp/run/kernels.json"
printf 'name, driver_version, memory.total [MiB]\nSIMT emulator, -, 2048 MiB\n' > "$tmp/run/gpu.csv"
printf 'test_cuda_mma_gpu skip\ntest_cuda_model_gpu skip\n' > "$tmp/run/tests.txt"
table_model=$models_dir/SmolLM2-135M-Instruct.Q4_1.gguf
want_e2e=0
if [ -f "$table_model" ] && [ -x "$bin/bench_engine" ] && [ -x "$bin/batched_bench" ]; then
  want_e2e=1
  "$bin/bench_engine" --backend cpu --model "$table_model" -p 16 -n 4 --reps 1 --threads 2 --json > "$tmp/run/e2e.json" 2>/dev/null &&
  "$bin/batched_bench" --backend cpu --model "$table_model" --npp 8 --ntg 4 --npl 1,2 --threads 2 --json >> "$tmp/run/e2e.json" 2>/dev/null &&
  "$bin/batched_bench" --backend cpu --model "$table_model" --npp 8 --ntg 4 --npl 1 --threads 1 --overlap --spin-us 500 --json >> "$tmp/run/e2e.json" 2>/dev/null &&
  "$bin/bench_engine" --backend cpu --model "$table_model" -p 16 -n 4 --reps 1 --threads 2 --json > "$tmp/run/e2e_plain.json" 2>/dev/null &&
  "$bin/bench_engine" --backend cpu --model "$table_model" -p 16 -n 4 --reps 1 --threads 2 --json > "$tmp/run/e2e_decodegraphs.json" 2>/dev/null ||
    { echo "FAIL bench_engine / batched_bench --json on the CPU"; fail=1; }
fi
if "$EXPECT_PROG" --table "$tmp/run" --model "$table_model" > "$tmp/table.md" 2> "$tmp/err"; then
  krows=$(grep -c '^| tiny' "$tmp/table.md")
  if [ "$krows" -eq 615 ] && grep -q '^GPU: SIMT emulator' "$tmp/table.md" &&
     grep -q '^Kernel tests: test_cuda_mma_gpu skip, test_cuda_model_gpu skip' "$tmp/table.md" &&
     grep -q '^Measured: memory bandwidth [0-9]* GB/s' "$tmp/table.md" &&
     { [ "$want_e2e" = 0 ] || {
       grep -q -E '^- pp16: [0-9.]+ tokens/s' "$tmp/table.md" && grep -q -E '^- batched, 2 sequences: prefill [0-9]+ tokens/s, decode [0-9]+' "$tmp/table.md" &&
       grep -q -E "^- batched, 1 sequences, overlapped steps polling 500 us: decode [0-9]+ tokens/s, the threads' hand-offs [0-9.]+ us a step" "$tmp/table.md" &&
       grep -q -E '^- tg4 with plain launches \(SLM_CUDA_PDL=0\): [0-9.]+ tokens/s: programmatic dependent launch [0-9.]+x' "$tmp/table.md" &&
       grep -q -E '^- pp16 with graphs for decode-only steps only \(SLM_CUDA_GRAPHS=decode\): [0-9.]+ tokens/s: mixed step graphs [0-9.]+x' "$tmp/table.md" &&
       grep -q -E '^Decode at batch 1: [0-9]+ tokens/s against a bandwidth roofline of [0-9]+ tokens/s \(96.6 MB' "$tmp/table.md"; }; }; then
    echo "ok   run.sh --table: 615 kernel rows (103 skipped)$([ "$want_e2e" = 1 ] && echo ", the end-to-end lines and the ratios of plain launches and decode-only graphs")"
  else
    echo "FAIL run.sh --table ($krows kernel rows):"; grep -v '^| tiny' "$tmp/table.md"; fail=1
  fi
else
  echo "FAIL run.sh --table: exit $?"; cat "$tmp/err"; fail=1
fi
mkdir -p "$tmp/norun"
expect_error "run.sh --table of a folder that is no run's" "^run.sh: --table $tmp/norun: no gpu.csv and tests.txt there" --table "$tmp/norun"
echo '{"kernel": truncated' > "$tmp/run/kernels.json"
expect_error "run.sh --table of outputs that are not JSON" "^run.sh: $tmp/run/kernels.json line 1 is not a JSON record \(Expecting value.*\): no table" --table "$tmp/run"

# compare-llama-cpp.sh: the ratio table from recorded outputs (tests/gpu_compare, made by its
# make_samples.py after both programs' printers: invented figures, exact ratios), llama-bench's
# JSON and its markdown table; what is missing is said and fails; bad input is one line
cmp_sh=$(dirname "$0")/../bench/gpu/compare-llama-cpp.sh
samples=$(dirname "$0")/gpu_compare
check_table() {   # NAME FILE LINES...: every line is in FILE
  local name=$1 file=$2 want; shift 2
  for want in "$@"; do
    grep -qF -- "$want" "$file" || { echo "FAIL $name: no line '$want' in:"; cat "$file"; fail=1; return; }
  done
  echo "ok   $name"
}
llama_rows=("| pp512, llama.cpp -fa 0 | 30000.00 ± 300.00 | 10000.00 ± 100.00 | 0.33x |"
            "| pp512, llama.cpp -fa 1 | 40000.00 ± 400.00 | 10000.00 ± 100.00 | 0.25x |"
            "| tg128, llama.cpp -fa 0 | 800.00 ± 8.00 | 450.00 ± 5.00 | 0.56x |"
            "| tg128, llama.cpp -fa 1 | 900.00 ± 9.00 | 450.00 ± 5.00 | 0.50x |"
            "against llama.cpp's faster flash-attention setting: pp512 0.25x, tg128 0.50x")
serving_rows=("serving: llama-server (build b1-0c1e570) against slmd serve (backend cuda); closed loop"
              "| 1 | 500.0 | 400.0 | 0.80x | 10.0 / 8.0 | 20.0 / 16.0 | 2.00 / 2.50 | 0 / 0 |"
              "| 16 | 4000.0 | 4800.0 | 1.20x | 40.0 / 20.0 | 80.0 / 40.0 | 4.00 / 3.20 | 0 / 0 |"
              "| 64 | 10000.0 | 12000.0 | 1.20x | 100.0 / 50.0 | 200.0 / 100.0 | 6.00 / 5.00 | 0 / 0 |"
              "| 256 | 16000.0 | 16000.0 | 1.00x | 400.0 / 200.0 | 800.0 / 400.0 | 16.00 / 16.00 | 0 / 0 |"
              "target 256 clients: slmd >= 4x 3,597 = 14,388 out tok/s: met (16,000.0 tok/s, 4.45x 3,597)"
              "target 256 clients: slmd TTFT p99 < 500 ms: met (400.0 ms)")
if "$cmp_sh" --dry-run "$samples" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run (llama-bench -o json)" "$tmp/cmp" "${llama_rows[@]}" \
    "| batched decode S_TG, B=1 | 500.00 | 200.00 | 0.40x |" "| batched decode S_TG, B=16 | 4000.00 | 1600.00 | 0.40x |" \
    "| batched decode S_TG, B=64 | 10000.00 | 2500.00 | 0.25x |" "| batched decode S_TG, B=256 | 20000.00 | 5000.00 | 0.25x |" \
    "| batched prefill S_PP, B=256 | 90000.00 | 32000.00 | 0.36x |" "llama.cpp: build 0c1e570, CUDA on NVIDIA H200, ngl 99" \
    "batched: each of B sequences prefills 128 tokens, then decodes 128; llama.cpp's flash attention auto" \
    "${serving_rows[@]}"
else
  echo "FAIL compare-llama-cpp --dry-run on $samples: exit $?"; cat "$tmp/cmp" "$tmp/cmp.err"; fail=1
fi
mkdir -p "$tmp/md" "$tmp/part"
cp "$samples/md/llama-bench.md" "$samples/bench_engine.json" "$samples/llama-batched-bench.jsonl" "$samples/batched_bench.json" "$tmp/md/"
if "$cmp_sh" --dry-run "$tmp/md" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run (llama-bench's markdown table)" "$tmp/cmp" "${llama_rows[@]}" \
    "llama.cpp: build 0c1e570 (1), CUDA, ngl 99"
else
  echo "FAIL compare-llama-cpp --dry-run on the markdown table: exit $?"; cat "$tmp/cmp" "$tmp/cmp.err"; fail=1
fi
cp "$samples/bench_engine.json" "$tmp/part/"
if "$cmp_sh" --dry-run "$tmp/part" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  echo "FAIL compare-llama-cpp --dry-run with only bench_engine.json: exit 0"; fail=1
else
  check_table "compare-llama-cpp --dry-run with figures missing: exit 1" "$tmp/cmp" \
    "| pp512, llama.cpp -fa 0 | missing | 10000.00 | - |" "| batched decode S_TG, B=16 | missing | missing | - |" "12 figure(s) missing"
fi
# outputs the programs printed themselves (llama.cpp's CPU build, slmd's cpu backend; tests/gpu_compare/README.md)
if "$cmp_sh" --dry-run "$samples/cpu" --npl 1,2 --clients 1,4 > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run on recorded outputs (llama-bench -o json)" "$tmp/cmp" \
    "| pp512, llama.cpp -fa 0 | 49.31 ± 0.00 | 155.16 ± 0.00 | 3.15x |" "| tg128, llama.cpp -fa 1 | 107.12 ± 0.00 | 56.03 ± 0.00 | 0.52x |" \
    "| batched decode S_TG, B=2 | 5.57 | 86.38 | 15.51x |" "| batched prefill S_PP, B=1 | 41.53 | 175.41 | 4.22x |" "llama.cpp: build unknown, CPU, ngl -1"
else
  echo "FAIL compare-llama-cpp --dry-run on $samples/cpu: exit $?"; cat "$tmp/cmp" "$tmp/cmp.err"; fail=1
fi
mkdir -p "$tmp/cpumd"
cp "$samples/cpu/llama-bench.md" "$samples/cpu/bench_engine.json" "$tmp/cpumd/"
"$cmp_sh" --dry-run "$tmp/cpumd" --npl 1,2 > "$tmp/cmp" 2> "$tmp/cmp.err"
check_table "compare-llama-cpp --dry-run on a recorded markdown table" "$tmp/cmp" \
  "| pp512, llama.cpp -fa 0 | 251.79 ± 0.00 | 155.16 ± 0.00 | 0.62x |" "| tg128, llama.cpp -fa 1 | 3.82 ± 0.00 | 56.03 ± 0.00 | 14.67x |" \
  "llama.cpp: build unknown (0), CPU, ngl ?"
mkdir -p "$tmp/cut"   # a llama-bench cut short: its JSON array is never closed
cp "$samples/bench_engine.json" "$samples/llama-batched-bench.jsonl" "$samples/batched_bench.json" "$tmp/cut/"
head -c 3000 "$samples/llama-bench.json" > "$tmp/cut/llama-bench.json"
if "$cmp_sh" --dry-run "$tmp/cut" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  echo "FAIL compare-llama-cpp --dry-run with a cut llama-bench.json: exit 0"; fail=1
elif grep -q "llama-bench.json: not JSON" "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run with a cut llama-bench.json: said, exit 1" "$tmp/cmp" \
    "| tg128, llama.cpp -fa 1 | missing | 450.00 | - |" "| batched decode S_TG, B=64 | 10000.00 | 2500.00 | 0.25x |" "4 figure(s) missing"
else
  echo "FAIL compare-llama-cpp --dry-run with a cut llama-bench.json: no 'not JSON' line"; cat "$tmp/cmp.err"; fail=1
fi
# the serving table alone (--serving-only), with targets not met, runs missing, a file that is not JSON
"$cmp_sh" --dry-run "$samples" --serving-only > "$tmp/cmp" 2> "$tmp/cmp.err" &&
  ! grep -q "pp512" "$tmp/cmp" && check_table "compare-llama-cpp --dry-run --serving-only" "$tmp/cmp" "${serving_rows[@]}" ||
  { echo "FAIL compare-llama-cpp --dry-run --serving-only: exit 1 or the benches' table printed"; cat "$tmp/cmp" "$tmp/cmp.err"; fail=1; }
"$cmp_sh" --dry-run "$samples" --no-serving > "$tmp/cmp" 2> "$tmp/cmp.err"
if grep -q "^serving:" "$tmp/cmp"; then echo "FAIL compare-llama-cpp --dry-run --no-serving printed the serving table"; fail=1
else echo "ok   compare-llama-cpp --dry-run --no-serving"; fi
mkdir -p "$tmp/serve"
cp "$samples"/llama-server.*.json "$samples"/slmd.*.json "$tmp/serve/"
python3 - "$tmp/serve/slmd.256.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["runs"][0]["output_tokens_per_s"] = 14387.0   # one short of 4 x 3,597
d["runs"][0]["ttft_ms"]["p99"] = 500.0          # the target is strictly under 500 ms
d["runs"][0]["failed"] = 2
json.dump(d, open(sys.argv[1], "w"))
PY
if "$cmp_sh" --dry-run "$tmp/serve" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  echo "FAIL compare-llama-cpp --dry-run with failed requests: exit 0"; fail=1
else
  check_table "compare-llama-cpp --dry-run, targets not met, failed requests: exit 1" "$tmp/cmp" \
    "| 256 | 16000.0 | 14387.0 | 0.90x | 400.0 / 200.0 | 800.0 / 500.0 | 16.00 / 16.00 | 0 / 2 |" \
    "target 256 clients: slmd >= 4x 3,597 = 14,388 out tok/s: NOT met (14,387.0 tok/s, 4.00x 3,597)" \
    "target 256 clients: slmd TTFT p99 < 500 ms: NOT met (500.0 ms)" "2 request(s) failed"
fi
rm "$tmp/serve/slmd.256.json" "$tmp/serve/llama-server.16.json"
echo '{"runs": [' > "$tmp/serve/slmd.64.json"
if "$cmp_sh" --dry-run "$tmp/serve" > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  echo "FAIL compare-llama-cpp --dry-run with serving runs missing: exit 0"; fail=1
elif grep -q "slmd.64.json: not slm-bench's JSON" "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run, serving runs missing or cut: said, exit 1" "$tmp/cmp" \
    "| 16 | missing | 4800.0 | - | missing / 20.0 | missing / 40.0 | missing / 3.20 | missing / 0 |" \
    "| 64 | 10000.0 | missing | - |" "target 256 clients: slmd >= 4x 3,597 = 14,388 out tok/s: missing" \
    "3 serving run(s) missing"
else
  echo "FAIL compare-llama-cpp --dry-run with a cut slmd.64.json: no 'not slm-bench's JSON' line"; cat "$tmp/cmp.err"; fail=1
fi
# slm-bench's own JSON, recorded from compare-llama-cpp.sh --cpu (tests/gpu_compare/README.md)
if "$cmp_sh" --dry-run "$samples/cpu" --serving-only --clients 1,4 > "$tmp/cmp" 2> "$tmp/cmp.err"; then
  check_table "compare-llama-cpp --dry-run on recorded slm-bench JSON (--cpu)" "$tmp/cmp" \
    "serving: llama-server (build b1-0c1e570) against slmd serve (backend cpu)" \
    "| 1 | 10.9 | 12.4 | 1.14x | 3977.3 / 2765.3 | 6149.9 / 3069.0 | 58.59 / 60.61 | 0 / 0 |" \
    "| 4 | 8.7 | 19.1 | 2.19x | 20610.2 / 8117.1 | 20612.3 / 10923.8 | 299.62 / 146.35 | 0 / 0 |"
else
  echo "FAIL compare-llama-cpp --dry-run --serving-only on $samples/cpu: exit $?"; cat "$tmp/cmp" "$tmp/cmp.err"; fail=1
fi
"$cmp_sh" --dry-run "$samples" --serving-only --clients 1,16 > "$tmp/cmp" 2> "$tmp/cmp.err"
check_table "compare-llama-cpp --dry-run --clients 1,16: no 256-client targets" "$tmp/cmp" \
  "targets (issue 15, 256 clients): not in this run (clients 1,16)"
mkdir -p "$tmp/empty"
EXPECT_PROG=$cmp_sh
expect_error "compare-llama-cpp bad flag" "^compare-llama-cpp: unknown argument --frobnicate" --frobnicate
expect_error "compare-llama-cpp --reps 0" "^compare-llama-cpp: --reps takes a positive integer" --reps 0
expect_error "compare-llama-cpp --npl 1,,4" "^compare-llama-cpp: --npl takes a list like" --npl 1,,4
expect_error "compare-llama-cpp --npl past 256" "^compare-llama-cpp: --npl: sequence counts run from 1 to 256" --npl 1,512
expect_error "compare-llama-cpp --reps without a value" "^compare-llama-cpp: --reps needs a value" --reps
expect_error "compare-llama-cpp --model and --model-parts" "^compare-llama-cpp: give --model or --model-parts, not both" \
  --model x --model-parts y
expect_error "compare-llama-cpp --model-parts with no file" "^compare-llama-cpp: --model-parts needs at least one file" --model-parts
expect_error "compare-llama-cpp --clients 1,,4" "^compare-llama-cpp: --clients takes a list like" --clients 1,,4
expect_error "compare-llama-cpp --clients x" "^compare-llama-cpp: --clients takes a list like" --clients 1,x
expect_error "compare-llama-cpp --clients 0" "^compare-llama-cpp: --clients: client counts run from 1 to 256" --clients 0,4
expect_error "compare-llama-cpp --clients past 256" "^compare-llama-cpp: --clients: client counts run from 1 to 256" --clients 1,512
expect_error "compare-llama-cpp --clients without a value" "^compare-llama-cpp: --clients needs a value" --clients
expect_error "compare-llama-cpp --max-batch-tokens 0" "^compare-llama-cpp: --max-batch-tokens takes a positive integer" --max-batch-tokens 0
expect_error "compare-llama-cpp --max-batch-tokens below the clients" \
  "^compare-llama-cpp: --max-batch-tokens 64 is below the client count 256" --max-batch-tokens 64
expect_error "compare-llama-cpp --requests 0" "^compare-llama-cpp: --requests takes a positive integer" --requests 0
expect_error "compare-llama-cpp --no-serving --serving-only" "^compare-llama-cpp: --no-serving leaves nothing to run" \
  --no-serving --serving-only
expect_error "compare-llama-cpp --no-serving --cpu" "^compare-llama-cpp: --no-serving leaves nothing to run" --cpu --no-serving
expect_error "compare-llama-cpp --llama-server without --cpu" "^compare-llama-cpp: --llama-server goes with --cpu" --llama-server /bin/true
expect_error "compare-llama-cpp --threads without --cpu" "^compare-llama-cpp: --threads goes with --cpu" --threads 2
expect_error "compare-llama-cpp --cpu --threads 0" "^compare-llama-cpp: --threads takes a positive integer" --cpu --threads 0
expect_error "compare-llama-cpp --cpu --dry-run" "^compare-llama-cpp: --cpu runs the serving path" --cpu --dry-run "$samples"
expect_error "compare-llama-cpp --cpu --llama-server that is none" "^compare-llama-cpp: --llama-server $tmp/none: not an executable" \
  --cpu --llama-server "$tmp/none" --model "$0"
expect_error "compare-llama-cpp --dry-run of no folder" "^compare-llama-cpp: --dry-run $tmp/none: no such folder" --dry-run "$tmp/none"
expect_error "compare-llama-cpp --dry-run of an empty folder" "^compare-llama-cpp: --dry-run $tmp/empty: none of" --dry-run "$tmp/empty"
expect_error "compare-llama-cpp --src missing" "^compare-llama-cpp: --src $tmp/none.tar.xz: no such file" \
  --configure-only --peer "$tmp/peer" --src "$tmp/none.tar.xz"
expect_error "compare-llama-cpp --peer inside the repository" "^compare-llama-cpp: --peer must be outside the repository" \
  --configure-only --peer "$(dirname "$0")/../build-peer-here"
printf 'not a tarball' > "$tmp/bad.tar.xz"
expect_error "compare-llama-cpp --src that is no tarball" "^compare-llama-cpp: cannot unpack $tmp/bad.tar.xz" \
  --configure-only --peer "$tmp/peer" --src "$tmp/bad.tar.xz"

# The CPU peer's build script refuses a bad SLM_PEER_AMX or SLM_PEER_ISA before it downloads or
# builds anything.
EXPECT_PROG=$(dirname "$0")/../bench/peer/build-llama-cpp.sh
SLM_PEER_AMX=maybe SLM_PEER_DIR=$tmp/cpu-peer expect_error "build-llama-cpp SLM_PEER_AMX=maybe" \
  "^build-llama-cpp: SLM_PEER_AMX must be on or off, not 'maybe'"
SLM_PEER_ISA=avx512 SLM_PEER_DIR=$tmp/cpu-peer expect_error "build-llama-cpp SLM_PEER_ISA=avx512" \
  "^build-llama-cpp: SLM_PEER_ISA must be native or avx2, not 'avx512'"
[ ! -e "$tmp/cpu-peer" ] && echo "ok   build-llama-cpp refused before making its folder" ||
  { echo "FAIL build-llama-cpp made $tmp/cpu-peer before refusing"; fail=1; }

EXPECT_PROG=$(dirname "$0")/../bench/gpu/prepare-carry.sh
expect_error "prepare-carry bad flag" "^prepare-carry: unknown argument --frobnicate" --frobnicate
expect_error "prepare-carry --model without a value" "^prepare-carry: --model needs a value" --model

# pack-llama-cpp.sh: bad input, one line each (making the tarball needs the 77 MB sdist: not here)
EXPECT_PROG=$(dirname "$0")/../bench/gpu/pack-llama-cpp.sh
expect_error "pack-llama-cpp bad flag" "^pack-llama-cpp: unknown argument --frobnicate" --frobnicate
expect_error "pack-llama-cpp --sdist missing" "^pack-llama-cpp: $tmp/none.tar.gz: no such file" --sdist "$tmp/none.tar.gz" --out "$tmp/pack"
printf 'x' > "$tmp/other.tar.gz"
expect_error "pack-llama-cpp --sdist of another name" "^pack-llama-cpp: $tmp/other.tar.gz: not a llama_cpp_python-VERSION.tar.gz sdist" \
  --sdist "$tmp/other.tar.gz" --out "$tmp/pack"
mkdir -p "$tmp/sd/llama_cpp_python-9.9.9" && echo readme > "$tmp/sd/llama_cpp_python-9.9.9/README.md"
tar -czf "$tmp/llama_cpp_python-9.9.9.tar.gz" -C "$tmp/sd" llama_cpp_python-9.9.9
expect_error "pack-llama-cpp an sdist without llama.cpp" "^pack-llama-cpp: .*llama_cpp_python-9.9.9.tar.gz holds no llama_cpp_python-9.9.9/vendor/llama.cpp" \
  --sdist "$tmp/llama_cpp_python-9.9.9.tar.gz" --out "$tmp/pack"

if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
  EXPECT_PROG=$cmp_sh
  expect_error "compare-llama-cpp without a GPU" "^compare-llama-cpp: no NVIDIA GPU here"
  EXPECT_PROG=$(dirname "$0")/../bench/gpu/run.sh
  expect_error "run.sh without a GPU" "^run.sh: no NVIDIA GPU here"
  model=$models_dir/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ -f "$model" ]; then   # the model in two halves, as a device call carries it: joined, checked, named
    split -n 2 -d "$model" "$tmp/parts/half"
    mv "$tmp/parts/half00" "$tmp/parts/a/SmolLM2.part1" && mv "$tmp/parts/half01" "$tmp/parts/b/SmolLM2.part2"
    SLM_MODEL_DIR=$tmp/joined "$EXPECT_PROG" --model-parts "$tmp/parts/?/SmolLM2.part*" > "$tmp/out" 2> "$tmp/err"
    if grep -q "^run.sh: 2 model parts joined into $tmp/joined/SmolLM2-135M-Instruct.Q4_1.gguf (sha256 matches the pin)" "$tmp/err" &&
       grep -q "^run.sh: no NVIDIA GPU here" "$tmp/err" && cmp -s "$model" "$tmp/joined/SmolLM2-135M-Instruct.Q4_1.gguf"; then
      echo "ok   run.sh --model-parts: two halves joined, checked against the pin, then no GPU"
    else
      echo "FAIL run.sh --model-parts with the two halves:"; cat "$tmp/err"; fail=1
    fi
    SLM_MODEL_DIR=$tmp/joined expect_error "run.sh parts out of order" "^run.sh: the 2 model parts joined .* match no model pinned" \
      --model-parts "$tmp/parts/b/SmolLM2.part2" "$tmp/parts/a/SmolLM2.part1"
    rm -rf "$tmp/parts" "$tmp/joined"
  fi
  if [ -f "$model" ] && [ -x "$bin/bench_engine" ]; then
    EXPECT_PROG=$bin/bench_engine
    SLM_EMU_DEVICES=0 expect_error "bench_engine --backend cuda without a GPU" \
      "^bench_engine: backend cuda: (no CUDA device|this slmd was built without)" --backend cuda --model "$model" -n 1
  fi
fi
exit $fail
