#!/usr/bin/env bash
# tests/fuzz/run.sh - builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and runs
# each for a while from its committed seed corpus (docs/testing.md, "Fuzzing").
#
#   tests/fuzz/run.sh [--seconds N | --minutes N] [--build-dir DIR] [TARGET ...]
#
# TARGETs are gguf, tokenizer, chat, config, sqe, handshake (default: all), each run N seconds
# (default 10). The corpus is copied to a scratch folder first: what a run finds is not added to
# the repository's. A crash (or leak, out-of-memory, timeout) fails the run: the script names the
# target and the input that did it, kept in DIR/crashes/. Exits 0, 1 when a target failed, or 77
# (skipped) when clang or libFuzzer is missing. The tokenizer and sqe targets need the default
# model (SLM_MODEL_DIR, else ~/.cache/slmd/models); without it they are skipped.
# SLM_FUZZ_JOBS: parallel compile jobs (default: every CPU).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
seconds=10
build=$top/build-fuzz
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(gguf tokenizer chat config sqe handshake)
for t in "${targets[@]}"; do
  [ -f "$top/tests/fuzz/fuzz_$t.c" ] || { echo "run.sh: no target '$t' (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
done

# clang and its libFuzzer runtime, or skip.
cc=${SLM_FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null; then
  echo "skip: $cc is not installed (packaging/setup.sh installs clang)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' \
  > "$probe/probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" 2>"$probe/err"; then
  echo "skip: $cc cannot link libFuzzer with ASan and UBSan: $(head -c 300 "$probe/err")"
  exit 77
fi

mkdir -p "$build"
cmake -S "$top" -B "$build" -DCMAKE_C_COMPILER="$cc" -DSLM_FUZZ=ON -DSLM_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/fuzz-configure.log" 2>&1 ||
  { cat "$build/fuzz-configure.log"; echo "run.sh: configure failed" >&2; exit 1; }
cmake --build "$build" --target fuzz -j"${SLM_FUZZ_JOBS:-$(nproc)}" >"$build/fuzz-build.log" 2>&1 ||
  { tail -40 "$build/fuzz-build.log"; echo "run.sh: build failed (the whole log: $build/fuzz-build.log)" >&2; exit 1; }

failed=() ran=0
mkdir -p "$build/crashes"
for t in "${targets[@]}"; do
  scratch=$probe/$t
  mkdir -p "$scratch/corpus"
  cp "$top/tests/fuzz/corpus/$t/"* "$scratch/corpus/"
  rc=0
  # -timeout: one input running this long is a hang; -rss_limit_mb: libFuzzer's default, said.
  # libFuzzer's own exit code for a crash is 77, our skip's: a failure exits 1 here instead.
  "$build/fuzz_$t" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$scratch/" "$scratch/corpus" >"$scratch/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$scratch/log" | tail -1)
  if [ $rc -eq 77 ] && grep -q '^skip:' "$scratch/log"; then
    echo "fuzz_$t: skipped: $(grep -m1 '^skip:' "$scratch/log")"
    continue
  fi
  ran=$((ran + 1))
  if [ $rc -ne 0 ]; then
    crash=$(ls "$scratch" | grep -E '^(crash|leak|oom|timeout|slow-unit)-' | head -1 || true)
    kept=""
    if [ -n "$crash" ]; then
      kept=$build/crashes/fuzz_$t-$crash
      cp "$scratch/$crash" "$kept"
    fi
    echo "FAIL: fuzz_$t exited $rc${kept:+ on $kept} (reproduce: $build/fuzz_$t $kept)"
    grep -E -A30 '^==[0-9]+==|check failed|^SUMMARY' "$scratch/log" | head -60 || tail -30 "$scratch/log"
    failed+=("fuzz_$t")
    continue
  fi
  echo "fuzz_$t: ok, ${runs:-?} runs in ${seconds} s (${speed:-?} exec/s), corpus $(ls "$scratch/corpus" | wc -l) inputs"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
[ $ran -gt 0 ] || exit 77
