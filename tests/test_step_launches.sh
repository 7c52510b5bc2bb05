#!/usr/bin/env bash
# tests/test_step_launches.sh - what one decode step launches on the CUDA backend, counted under
# the SIMT emulator (bench/gpu/step_launches.c; docs/cuda.md, "Launches of a decode step"):
# SmolLM2 at batch 1 and 8 must take at most 5 launches a layer, and every matmul of a layer at
# batch 1 must run at least 132 x 4 warps (4 warps on each SM of an H100 / H200); a prefill step
# of 32 tokens (the tensor-core MMQ with x quantized in its blocks) at most 6 a layer (the
# attention's RoPE/KV store is a launch of its own there), and one of 96 tokens (x quantized by a
# launch of its own before each MMQ) at most 10. Every launch of both steps must be a
# programmatic dependent launch whose threads write no device memory before their slm_pdl_begin
# and read none that an earlier launch of the step wrote (docs/cuda.md, "Programmatic dependent
# launch"; the emulator's launch log fails the step otherwise); the decode attention of every
# layer reads its K/V before it, and no other launch reads anything. Bad flags are one-line
# usage errors.
set -u
tool=$(dirname "${SLMD:?SLMD must name the slmd binary}")/step_launches_emu
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -x "$tool" ] || { echo "skip: no step_launches_emu in this build (no SIMT emulator)"; exit 77; }
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
fail=0
for bad in "--batch 0" "--batch x" "--ctx 0" "--max-per-layer -1" "--bogus" "--prefill --batch 32 --ctx 32"; do
  # shellcheck disable=SC2086
  if "$tool" --model "$model" $bad >/dev/null 2>"${TMPDIR:-/tmp}/sl.err"; then
    echo "FAIL $bad: expected a usage error"; fail=1
  elif [ "$(wc -l <"${TMPDIR:-/tmp}/sl.err")" -gt 2 ]; then
    echo "FAIL $bad: more than a short usage error:"; cat "${TMPDIR:-/tmp}/sl.err"; fail=1
  else
    echo "ok   $bad: $(head -1 "${TMPDIR:-/tmp}/sl.err")"
  fi
done
export SLM_EMU_WORKERS=${SLM_EMU_WORKERS:-2}
if out=$("$tool" --model "$model" --batch 1,8 --max-per-layer 5 --min-matmul-warps 528 --programmatic 2>&1); then
  echo "$out" | grep '^decode step'
  echo "ok   at most 5 launches a layer; every matmul at batch 1 on >= 528 warps; every launch programmatic"
  # The decode attention loads its K/V rows before its wait, the GEMVs of one row a lane their
  # lanes' first unit of weights (the 4 of each layer, and at batch 1 the logits'), no other kernel.
  if echo "$out" | grep -q '^decode step, batch 1,.* 154 programmatic, 151 reading before their wait$' &&
     echo "$out" | grep -q '^decode step, batch 8,.* 154 programmatic, 150 reading before their wait$' &&
     [ "$(echo "$out" | awk '$1 ~ /k_attention<64,/ && $NF + 0 > 0' | wc -l)" = 2 ] &&
     [ "$(echo "$out" | awk '$1 ~ /^[(]?k_/ && $1 !~ /^\(k_(attention|gemv)</ && $NF + 0 > 0' | wc -l)" = 0 ]; then
    echo "ok   the decode attention of each of the 30 layers reads its K/V before its wait, the layers' GEMVs their first weights (and the logits' at batch 1), no other kernel"
  else
    echo "FAIL expected 151 / 150 launches of the step (30 attention, 121 / 120 GEMV) reading before their wait at batch 1 / 8"; fail=1
  fi
else
  echo "$out"; echo "FAIL the launch limits"; fail=1
fi
# The eager decode step (graphs off: the positions and block tables uploaded by the attention's
# own copy), 3 sequences over 2 partitions: the same discipline.
if out=$(SLM_CUDA_GRAPHS=0 "$tool" --model "$model" --batch 3 --ctx 70 --programmatic 2>&1) &&
   echo "$out" | grep -q '^decode step, batch 3, context 70: .* 154 programmatic, 150 reading before their wait$'; then
  echo "ok   the eager decode step (SLM_CUDA_GRAPHS=0, batch 3, context 70): every launch programmatic, 150 reading before their wait"
else
  echo "$out" | grep -v '^  '; echo "FAIL the eager decode step"; fail=1
fi
if out=$("$tool" --model "$model" --batch 1 --ctx 32 --prefill --max-per-layer 6 --programmatic 2>&1); then
  echo "$out" | grep '^prefill step'
  echo "ok   a prefill step of 32 tokens: at most 6 launches a layer, every launch programmatic"
  # The narrow MMQ and the GEMV load their first unit of weights before their wait (nothing writes
  # weights during a step; the page watch fails the run on a read of what the chain wrote): the
  # MMQ's 4 launches a layer and the logits' GEMV, and no other kernel (the attention reads what
  # the RoPE store wrote).
  if echo "$out" | grep -q '^prefill step.*, 121 reading before their wait$' &&
     [ "$(echo "$out" | awk '$1 ~ /^\(k_mmq</ && $NF + 0 > 0' | wc -l)" = 4 ] &&
     [ "$(echo "$out" | awk '$1 ~ /^\(k_gemv</ && $NF + 0 > 0' | wc -l)" = 1 ] &&
     [ "$(echo "$out" | awk '$1 ~ /^[(]?k_/ && $1 !~ /^\(k_(mmq|gemv)</ && $NF + 0 > 0' | wc -l)" = 0 ]; then
    echo "ok   the prefill step's MMQ launches (4 a layer) and the logits' GEMV read weights before their wait, no other kernel does"
  else
    echo "FAIL expected 121 launches of the prefill step (the MMQ's and the logits' GEMV) reading before their wait, and no other"; fail=1
  fi
else
  echo "$out"; echo "FAIL the prefill launch limit"; fail=1
fi
# A prefill step of 96 tokens, past the fused MMQ's 64: each matmul is two launches, x quantized
# into the MMQ's fragment order by slm_cuda_mmq_quantize (k_mmq_quantize, which reads what the
# step wrote, so after its wait), then the MMQ over it: 10 launches a layer under the same
# discipline, the MMQ's 4 and the logits' GEMV still the only ones reading before their wait.
if out=$("$tool" --model "$model" --batch 1 --ctx 96 --prefill --max-per-layer 10 --programmatic 2>&1) &&
   echo "$out" | grep -q '^prefill step, batch 1, context 96: 304 launches = 1 before the layers + 30 layers x 10 + 3 after; .* 304 programmatic, 121 reading before their wait$' &&
   [ "$(echo "$out" | awk '$1 == "k_mmq_quantize"' | wc -l)" = 4 ] &&
   [ "$(echo "$out" | awk '$1 == "k_mmq_quantize" && $NF + 0 > 0' | wc -l)" = 0 ]; then
  echo "$out" | grep '^prefill step'
  echo "ok   a prefill step of 96 tokens: 10 launches a layer (4 k_mmq_quantize, 4 MMQ), every launch programmatic, 121 reading before their wait"
else
  echo "$out" | grep -v '^  '; echo "FAIL the prefill step of 96 tokens (two launches a matmul)"; fail=1
fi
exit $fail
