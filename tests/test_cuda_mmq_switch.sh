#!/usr/bin/env bash
# tests/test_cuda_mmq_switch.sh - the CUDA backend's choice between the decode GEMV and the
# tensor-core MMQ (SLM_CUDA_MMQ_MIN_TOKENS, daemon/engine/backends/cuda/ops.c), through slmd_emu
# (slmd with the CUDA backend under the SIMT emulator): a greedy run gives the same tokens with the
# MMQ taken for every call of 2 tokens or more as with it never taken (the two kernels give the
# same bits, so the prompt's 20-token prefill and the decode agree to the last bit), and the same
# again with the MMQ's wide kernel for every launch (SLM_CUDA_MMQ_WIDE_MIN_BLOCKS=0: SmolLM2's
# small grids otherwise take the narrow one), and the same with plain launches
# (SLM_CUDA_PDL=0: programmatic dependent launch off; under the emulator it is on by default,
# as on a Hopper, and each kernel's wait is checked), and the same when the driver refuses
# programmatic launches (SLM_EMU_REFUSE_PDL=1: the backend's probe turns them off and says so);
# a value that is not a whole number >= 1
# (>= 0; 0 or 1) is a one-line error naming the variable, as is an SLM_CUDA_GRAPHS other than 0, 1,
# decode or test-break-capture and an SLM_CUDA_SAMPLING other than 0 or 1; SLM_CUDA_GRAPHS=decode
# (graphs for decode-only steps only) is taken, and the log line says so.
set -u
slmd=${SLMD_EMU:-}
[ -n "$slmd" ] && [ -x "$slmd" ] || { echo "skip: no slmd_emu in this build (no CUDA headers for the SIMT emulator)"; exit 77; }
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
EXPECT_PROG=$slmd
. "$(dirname "$0")/expect_error.sh"

args=(run --backend cuda --model "$model" --prompt "The three primary colors are red, blue and yellow, and the three"
      --temperature 0 --max-tokens 4 --print-token-ids --threads 2 --ctx-size 256)
mmq=$(SLM_CUDA_MMQ_MIN_TOKENS=2 "$slmd" "${args[@]}" 2>"$tmp/err1")
gemv=$(SLM_CUDA_MMQ_MIN_TOKENS=1000000 "$slmd" "${args[@]}" 2>"$tmp/err2")
wide=$(SLM_CUDA_MMQ_MIN_TOKENS=2 SLM_CUDA_MMQ_WIDE_MIN_BLOCKS=0 "$slmd" "${args[@]}" 2>"$tmp/err3")
plain=$(SLM_CUDA_MMQ_MIN_TOKENS=2 SLM_CUDA_PDL=0 "$slmd" "${args[@]}" --log-level info 2>"$tmp/err4")
if [[ "$mmq" =~ ^[0-9]+( [0-9]+)*$ ]] && [ "$mmq" = "$gemv" ]; then
  echo "ok   the same greedy tokens with the MMQ from 2 tokens and without it: $mmq"
else
  echo "FAIL MMQ from 2 tokens gave '$mmq', the GEMV alone '$gemv'"; cat "$tmp/err1" "$tmp/err2"; fail=1
fi
if [ -n "$wide" ] && [ "$wide" = "$gemv" ]; then
  echo "ok   the same greedy tokens with the MMQ's wide kernel for every launch"
else
  echo "FAIL the wide MMQ kernel gave '$wide', the GEMV alone '$gemv'"; cat "$tmp/err3"; fail=1
fi
if [ -n "$plain" ] && [ "$plain" = "$mmq" ] && grep -q "programmatic dependent launch off (SLM_CUDA_PDL=0)" "$tmp/err4" &&
   grep -q "programmatic dependent launch on" <("$slmd" "${args[@]}" --max-tokens 1 --log-level info 2>&1); then
  echo "ok   the same greedy tokens with plain launches (SLM_CUDA_PDL=0) as with programmatic ones"
else
  echo "FAIL plain launches gave '$plain', programmatic ones '$mmq'"; cat "$tmp/err4"; fail=1
fi
# A driver that refuses programmatic launches (the emulator's SLM_EMU_REFUSE_PDL=1): the backend's
# probe finds it, says so, and every kernel is launched plainly: the same tokens.
refused=$(SLM_CUDA_MMQ_MIN_TOKENS=2 SLM_EMU_REFUSE_PDL=1 "$slmd" "${args[@]}" --log-level info 2>"$tmp/err5")
if [ -n "$refused" ] && [ "$refused" = "$mmq" ] &&
   grep -q "the driver refused programmatic dependent launches (a programmatic launch: cudaErrorNotSupported)" "$tmp/err5" &&
   grep -q "programmatic dependent launch off (refused: a programmatic launch: cudaErrorNotSupported)" "$tmp/err5"; then
  echo "ok   programmatic launches refused: the backend says so and launches plainly, the same greedy tokens"
else
  echo "FAIL with programmatic launches refused: '$refused' (expected '$mmq'):"; cat "$tmp/err5"; fail=1
fi
for bad in 2 -1 on; do
  SLM_CUDA_PDL=$bad expect_error "SLM_CUDA_PDL=$bad" "SLM_CUDA_PDL: .*" "${args[@]}"
done
for bad in 0 -3 abc 1.5; do
  SLM_CUDA_MMQ_MIN_TOKENS=$bad expect_error "SLM_CUDA_MMQ_MIN_TOKENS=$bad" "SLM_CUDA_MMQ_MIN_TOKENS: .*" "${args[@]}"
done
if grep -q "step graphs on for decode-only steps (SLM_CUDA_GRAPHS=decode)" \
     <(SLM_CUDA_GRAPHS=decode "$slmd" "${args[@]}" --max-tokens 1 --log-level info 2>&1); then
  echo "ok   SLM_CUDA_GRAPHS=decode: taken, and the log line says so"
else
  echo "FAIL SLM_CUDA_GRAPHS=decode: no log line 'step graphs on for decode-only steps'"; fail=1
fi
for bad in off 2 yes decodes; do
  SLM_CUDA_GRAPHS=$bad expect_error "SLM_CUDA_GRAPHS=$bad" "SLM_CUDA_GRAPHS '$bad': expected 0 .*" "${args[@]}"
  SLM_CUDA_SAMPLING=$bad expect_error "SLM_CUDA_SAMPLING=$bad" "SLM_CUDA_SAMPLING: .*" "${args[@]}"
done
for bad in -1 x 2e3; do
  SLM_CUDA_MMQ_WIDE_MIN_BLOCKS=$bad expect_error "SLM_CUDA_MMQ_WIDE_MIN_BLOCKS=$bad" "SLM_CUDA_MMQ_WIDE_MIN_BLOCKS: .*" "${args[@]}"
done
exit $fail
