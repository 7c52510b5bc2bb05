#!/usr/bin/env bash
# tests/test_cuda_backend.sh - choosing the backend from the command line (slmd run and slmd
# serve): `--backend cuda` on a machine without a CUDA device (SLM_EMU_DEVICES=0 makes an
# emulated build see none) is one line and a non-zero exit; `--backend auto` falls back to the
# CPU with a log line and gives the CPU's tokens; bad values of --backend and
# --gpu-memory-fraction are one-line errors. On a machine with a GPU the cuda run must work.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export SLM_EMU_DEVICES=0
fail=0

EXPECT_PROG=$slmd
. "$(dirname "$0")/expect_error.sh"

args=(--model "$model" --prompt "The capital of France is" --temperature 0 --max-tokens 8 --print-token-ids --threads 2)
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  # A GPU: the cuda backend must run (its tokens may differ from the CPU's at a near-tie:
  # docs/cuda.md, "Backend"), and auto must pick it.
  if out=$("$slmd" run --backend cuda "${args[@]}" 2>"$tmp/err") && [[ "$out" =~ ^[0-9]+( [0-9]+)*$ ]]; then
    echo "ok   cuda on the GPU: $out (cpu: $("$slmd" run --backend cpu "${args[@]}" 2>/dev/null))"
  else
    echo "FAIL cuda on the GPU: '$out'"; cat "$tmp/err"; fail=1
  fi
  "$slmd" run --backend auto --log-level info "${args[@]}" >/dev/null 2>"$tmp/err"
  grep -q "cuda backend: device" "$tmp/err" && echo "ok   auto picks the GPU" || { echo "FAIL auto on the GPU:"; cat "$tmp/err"; fail=1; }
else
  expect_error "run --backend cuda, no device" "^slmd run: backend cuda: (no CUDA device|this slmd was built without)" \
    run --backend cuda "${args[@]}"
  expect_error "serve --backend cuda, no device" "^slmd: backend cuda: (no CUDA device|this slmd was built without)" \
    serve --config /dev/null --socket "$tmp/s.sock" --backend cuda --model "$model" --log-level warning
  cpu=$("$slmd" run --backend cpu "${args[@]}" 2>/dev/null)
  auto=$("$slmd" run --backend auto --log-level info "${args[@]}" 2>"$tmp/err")
  if [ -n "$cpu" ] && [ "$auto" = "$cpu" ] && grep -q "backend auto: .*using the CPU" "$tmp/err"; then
    echo "ok   auto falls back to the CPU: $(grep 'backend auto' "$tmp/err")"
  else
    echo "FAIL auto: expected the CPU's '$cpu' and a log line saying it uses the CPU; got '$auto':"; cat "$tmp/err"
    fail=1
  fi
fi
expect_error "bad backend" "--backend: 'tpu' is not one of auto, cpu, cuda" run --backend tpu "${args[@]}"
expect_error "fraction 0" "--gpu-memory-fraction: 0 is out of range" run --gpu-memory-fraction 0 "${args[@]}"
expect_error "fraction 1.5" "--gpu-memory-fraction: 1.5 is out of range" run --gpu-memory-fraction 1.5 "${args[@]}"
expect_error "serve fraction 0" "gpu-memory-fraction: 0 is out of range" \
  serve --config /dev/null --socket "$tmp/s.sock" --gpu-memory-fraction 0
exit $fail
