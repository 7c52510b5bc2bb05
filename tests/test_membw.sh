#!/usr/bin/env bash
# tests/test_membw.sh - bench/membw (the decode roofline's read bandwidth) and the flags of
# bench/compare-llama-bench.sh that come before it needs llama.cpp: a small run prints a
# finite, positive bandwidth as text and as JSON; bad flags are one-line errors with exit 2.
set -u
bin=$(dirname "${SLMD:?SLMD must name the slmd binary}")
root=$(cd "$(dirname "$0")/.." && pwd)
mb=$bin/membw
[ -x "$mb" ] || { echo "FAIL $mb was not built"; exit 1; }
fail=0

out=$("$mb" --threads 2 --mib 64 --reps 2 --json) || { echo "FAIL membw --json: exit $?"; fail=1; }
if python3 -c 'import json, math, sys; r = json.loads(sys.argv[1]); v = r["read_gb_s"]
sys.exit(0 if r["threads"] == 2 and r["mib"] == 64 and r["pages"] == "huge" and math.isfinite(v) and v > 0 else 1)' "$out"; then
  echo "ok   membw --json: $out"
else
  echo "FAIL membw --json: expected threads 2, mib 64, huge pages and a positive read_gb_s, got '$out'"; fail=1
fi
out=$("$mb" --mib 16 --reps 1 --pages 4k) || { echo "FAIL membw: exit $?"; fail=1; }
case "$out" in "memory read bandwidth, 1 thread(s), 16 MiB, 4k pages: "*" GB/s (best of 1)") echo "ok   membw: $out";;
  *) echo "FAIL membw: unexpected line '$out'"; fail=1;; esac

# bad input: each a one-line error naming the flag, exit 2
expect2() {
  local want=$1; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -eq 2 ] && printf '%s' "$err" | grep -q -- "$want"; then
    echo "ok   $* -> exit 2: $(printf '%s' "$err" | head -1)"
  else
    echo "FAIL $*: expected exit 2 and '$want', got exit $rc: $err"; fail=1
  fi
}
expect2 "--threads: 0 is out of range" "$mb" --threads 0
expect2 "--mib: " "$mb" --mib lots
expect2 "--reps: " "$mb" --reps 99999999
expect2 "--pages: expected huge or 4k, got '1g'" "$mb" --pages 1g
expect2 "unknown or incomplete argument '--pages'" "$mb" --pages
expect2 "unknown or incomplete argument '--bogus'" "$mb" --bogus
expect2 "unknown or incomplete argument '--threads'" "$mb" --threads
cl=$root/bench/compare-llama-bench.sh
expect2 "take a ratio such as 1.5, got 'fast'" bash "$cl" --target-tg fast
expect2 "take a ratio such as 1.5, got '1.2.3'" bash "$cl" --target-pp 1.2.3
expect2 "must be >= 1" bash "$cl" --threads 0
expect2 "unknown argument --bogus" bash "$cl" --bogus

[ "$fail" -eq 0 ] && echo "all ok" || echo FAIL
exit "$fail"
