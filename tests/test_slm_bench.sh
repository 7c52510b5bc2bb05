#!/usr/bin/env bash
# tests/test_slm_bench.sh - slm-bench: bad input (a missing or malformed prompt file, bad flag
# values, no daemon) giving one clear line and a non-zero exit; then, against a real slmd, a
# short closed-loop run and a short open-loop sweep whose --json must account for every
# request and token; perplexity through the daemon equal to `slmd run --perplexity`'s, the
# eval sample scored, bad eval files; and the plot of two documents.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
bench=${SLM_BENCH:-$(dirname "$slmd")/slm-bench}
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
data=${SLM_TEST_DATA:-$(dirname "$0")}/../bench/data/prompts.jsonl
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
[ -x "$bench" ] || { echo "FAIL: slm-bench not found at $bench"; exit 1; }
tmp=$(mktemp -d)
daemon=
cleanup() { [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon"; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0

EXPECT_PROG=$bench
. "$(dirname "$0")/expect_error.sh"

# check_json FILE REQUESTS OUTPUT_TOKENS POINTS: every request of every load point completed,
# none failed, OUTPUT_TOKENS in all (requests x the fixed length; a comma list: one per point),
# the figures consistent.
check_json() {
  python3 - "$@" <<'PY'
import json, sys
path, requests, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
out_list = [int(x) for x in sys.argv[3].split(',')]
doc = json.load(open(path))
bad = []
runs = doc['runs']
if len(runs) != points: bad.append(f'runs: expected {points}, got {len(runs)}')
for k, r in enumerate(runs):
    out_tokens = out_list[k % len(out_list)]
    def want(name, expected, got):
        if expected != got: bad.append(f'run {k} {name}: expected {expected}, got {got}')
    want('completed', requests, r['completed'])
    want('failed', 0, r['failed'])
    want('requests', requests, r['requests'])
    want('output_tokens', out_tokens, r['output_tokens'])
    for m in ('ttft_ms', 'tpot_ms', 'itl_ms', 'e2e_ms'):
        d = r[m]
        if not (0 < d['p50'] <= d['p90'] <= d['p99'] <= d['max']): bad.append(f'run {k} {m}: percentiles out of order {d}')
    want('ttft n', requests, r['ttft_ms']['n'])
    want('itl n', out_tokens - requests, r['itl_ms']['n'])
    tps = r['output_tokens'] / r['span_s']
    if abs(tps - r['output_tokens_per_s']) > 1e-6 * tps: bad.append(f'run {k} output_tokens_per_s {r["output_tokens_per_s"]} != {tps}')
    if abs(r['completed'] / r['span_s'] - r['requests_per_s']) > 1e-6 * r['requests_per_s']: bad.append(f'run {k} requests_per_s')
    if not 0 <= r['good'] <= r['completed']: bad.append(f'run {k} good {r["good"]}')
if points == 1:
    for key in ('completed', 'failed', 'output_tokens_per_s', 'requests_per_s', 'ttft_ms', 'tpot_ms', 'itl_ms', 'e2e_ms'):
        if key not in doc: bad.append(f'top level: no "{key}"')
for key in ('model', 'backend', 'n_ctx'):
    if key not in doc['server']: bad.append(f'server: no "{key}"')
for key in ('cpu', 'cpus_online', 'uname'):
    if key not in doc['machine']: bad.append(f'machine: no "{key}"')
print('\n'.join(bad) if bad else f'{points} load point(s), {requests} requests each, all accounted for')
sys.exit(1 if bad else 0)
PY
}

# Bad input first: no daemon needed.
echo '{"prompt": "fine"}' >"$tmp/good.jsonl"
printf '{"prompt": "a"}\n{"prompt": "b"\n' >"$tmp/bad.jsonl"
printf '{"text": "a"}\n' >"$tmp/noprompt.jsonl"
expect_error "missing prompt file"   "no-such.jsonl: cannot open" --prompts "$tmp/no-such.jsonl"
expect_error "bad JSON line"         "bad.jsonl:2: bad JSON" --prompts "$tmp/bad.jsonl"
expect_error "line without prompt"   "noprompt.jsonl:1: \"prompt\" must be" --prompts "$tmp/noprompt.jsonl"
expect_error "bad --concurrency"     "--concurrency: 'x' is not" --concurrency x
expect_error "zero --concurrency"    "--concurrency: '0' is not" --concurrency 0
expect_error "bad --rate"            "--rate: '-2' is not" --rate -2
expect_error "bad --requests"        "--requests: '1.5' is not" --requests 1.5
expect_error "bad --input-len"       "--input-len: '64:32' is out of range" --input-len 64:32
expect_error "bad --output-len"      "--output-len: 'ten' is not" --output-len ten
expect_error "bad --slo"             "--slo: unknown metric 'ttfb_ms'" --slo ttfb_ms=3
expect_error "bad --sweep"           "--sweep: 'x' is not" --sweep 1,x
expect_error "bad --arrival"         "--arrival: 'burst' is not" --arrival burst
expect_error "bad --target"          "--target: 'vllm' is not" --target vllm
expect_error "bad --url"             "--url: 'localhost:80' is not" --target llama-server --url localhost:80
expect_error "requests and duration" "exclude each other" --requests 4 --duration 2
expect_error "prefix without count"  "go together" --prefix-len 16
expect_error "missing value"         "--json needs a value" --json
expect_error "unknown option"        "unknown option '--frobnicate'" --frobnicate 1
expect_error "no daemon"             "cannot connect to slmd" --socket "$tmp/nobody.sock" --prompts "$tmp/good.jsonl"
expect_error "perplexity and a load" "no load, workload" --perplexity "$data" --concurrency 2
expect_error "perplexity, llama"     "need --target slmd" --perplexity "$data" --target llama-server --url http://127.0.0.1:1
expect_error "ctx alone"             "go with --perplexity" --ctx 64
expect_error "bad --ctx"             "--ctx: '2' is not" --perplexity "$data" --ctx 2

"$slmd" serve --socket "$tmp/slmd.sock" --model "$model" --kv-cache-mem 64M --threads 2 --log-level warning &
daemon=$!
for _ in $(seq 100); do [ -S "$tmp/slmd.sock" ] && break; sleep 0.1; done

# Closed loop: 6 requests of 8 output tokens from 3 clients, random 24-token prompts sharing
# 2 prefixes of 16, goodput under an SLO.
if "$bench" --socket "$tmp/slmd.sock" --concurrency 3 --requests 6 --warmup 2 --input-len 24 --output-len 8 \
     --prefix-len 16 --prefix-count 2 --slo ttft_ms=60000,tpot_ms=60000 --json "$tmp/closed.json" >"$tmp/out" 2>"$tmp/err" \
   && check_json "$tmp/closed.json" 6 48 1; then
  echo "ok   closed loop: $(tail -1 "$tmp/out")"
else
  echo "FAIL closed loop:"; cat "$tmp/out" "$tmp/err"; fail=1
fi
if ! python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['good'] == d['completed'] == 6 else 1)" "$tmp/closed.json"; then
  echo "FAIL goodput: a generous SLO should count every request"; fail=1
fi

# Open loop, a sweep over two rates, prompts from the shipped file (the first point takes its
# lines 1-4, the second lines 5-8: their own output_len, else --output-len 4), an SVG.
want=$(python3 -c "
import json, sys
n = [json.loads(l).get('output_len', 4) for l in open(sys.argv[1]).readlines()[:8]]
print(f'{sum(n[:4])},{sum(n[4:])}')" "$data")
if "$bench" --socket "$tmp/slmd.sock" --rate 20 --sweep 10,20 --arrival constant --requests 4 --warmup 0 \
     --prompts "$data" --output-len 4 --json "$tmp/open.json" --svg "$tmp/open.svg" >"$tmp/out" 2>"$tmp/err" \
   && check_json "$tmp/open.json" 4 "$want" 2 \
   && python3 -c "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])" "$tmp/open.svg"; then
  echo "ok   open-loop sweep, prompts file, SVG well-formed"
else
  echo "FAIL open-loop sweep:"; cat "$tmp/out" "$tmp/err"; fail=1
fi

# Quality through the daemon's prompt logprobs: perplexity equal to `slmd run --perplexity`'s
# (the same chunks, the same arithmetic: the same digits), the eval sample scored, bad files.
text=${SLM_TEST_DATA:-$(dirname "$0")}/../bench/data/perplexity.txt
evalset=${SLM_TEST_DATA:-$(dirname "$0")}/../bench/data/eval-sample.jsonl
ours=$("$bench" --socket "$tmp/slmd.sock" --perplexity "$text" --ctx 128 --chunks 3 --json "$tmp/ppl.json" 2>"$tmp/err" | cut -d' ' -f1-6)
theirs=$("$slmd" run --model "$model" --threads 2 --perplexity "$text" --ctx-size 128 --chunks 3 2>&1 | tail -1 | cut -d' ' -f1-6)
if [ -n "$ours" ] && [ "$ours" = "$theirs" ] && python3 -c "
import json, sys; p = json.load(open(sys.argv[1]))['perplexity']
sys.exit(0 if p['n_scored'] == 3 * 63 and p['n_chunks'] == 3 and p['ppl'] > 1 else 1)" "$tmp/ppl.json"; then
  echo "ok   perplexity through slmd equals slmd run's: $ours"
else
  echo "FAIL perplexity: slm-bench '$ours', slmd run '$theirs'"; cat "$tmp/err"; fail=1
fi
# The eval's expected score is llama.cpp's (tests/golden/eval_sample.txt, made by
# tests/golden/make_eval_reference.py with slm-bench's definition): 18 of 20 by the summed
# log-probability, 15 of 20 per byte. An item whose pick leads its runner-up by less than
# 0.1 nats (per byte: 0.02 nats, about 0.1 over a choice) is a near tie that slmd's arithmetic
# may break the other way, so each such item widens the range by one in the direction it could
# move (a right pick may be lost, a wrong one may become right). There are none for the sum
# (smallest margin 0.24): exactly 18; per byte items 8 and 10 (0.011, 0.006; both wrong picks):
# 15 to 17. Measured (2026-12-05): slmd 18 and 15, llama.cpp's own figures.
golden_eval=${SLM_TEST_DATA:-$(dirname "$0")}/golden/eval_sample.txt
if "$bench" --socket "$tmp/slmd.sock" --eval "$evalset" --json "$tmp/eval.json" >"$tmp/out" 2>"$tmp/err" \
   && python3 - "$tmp/eval.json" "$golden_eval" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))['eval']
rows = [l.split() for l in open(sys.argv[2]) if l[:1].isdigit()]
ref = {l.split()[0]: int(l.split()[1]) for l in open(sys.argv[2]) if l.startswith('n_')}
bad = []
for name, col, tie in (('n_correct', 2, 0.1), ('n_correct_norm', 4, 0.02)):
    lo = hi = ref[name]
    for r in rows:
        if float(r[col + 1]) < tie:
            if int(r[col]) == int(r[1]): lo -= 1
            else: hi += 1
    if not lo <= e[name] <= hi:
        bad.append(f'{name}: expected {lo}..{hi} (llama.cpp: {ref[name]}), got {e[name]}')
if e['n_items'] != ref['n_items'] or e['acc'] != e['n_correct'] / e['n_items']:
    bad.append(f"n_items {e['n_items']} (expected {ref['n_items']}), acc {e['acc']}")
print('; '.join(bad))
sys.exit(1 if bad else 0)
PY
then
  echo "ok   eval as llama.cpp scores it: $(cat "$tmp/out")"
else
  echo "FAIL eval: $(cat "$tmp/out")"; cat "$tmp/err"; fail=1
fi
printf '{"context": "a", "choices": [" b", " c"], "answer": 0}\n{"context": "a", "choices": [" b"], "answer": 0}\n' >"$tmp/eval1.jsonl"
printf '{"context": "a", "choices": [" b", " c"], "answer": 2}\n' >"$tmp/eval2.jsonl"
printf '{"context": "a", "choices": [" b", " c"], "answer": 0}\nnot json\n' >"$tmp/eval3.jsonl"
expect_error "eval: one choice"      "eval1.jsonl:2: needs" --socket "$tmp/slmd.sock" --eval "$tmp/eval1.jsonl"
expect_error "eval: answer range"    "eval2.jsonl:1: answer 2 is not an index" --socket "$tmp/slmd.sock" --eval "$tmp/eval2.jsonl"
expect_error "eval: bad JSON"        "eval3.jsonl:2:" --socket "$tmp/slmd.sock" --eval "$tmp/eval3.jsonl"
expect_error "eval: missing file"    "no-such.jsonl: No such file" --socket "$tmp/slmd.sock" --eval "$tmp/no-such.jsonl"
expect_error "perplexity: too short" "needs at least" --socket "$tmp/slmd.sock" --perplexity "$evalset"

# plot: both documents on one SVG.
if "$bench" plot --svg "$tmp/both.svg" "$tmp/closed.json" "$tmp/open.json" 2>"$tmp/err" \
   && [ "$(grep -c '<polyline' "$tmp/both.svg")" -eq 8 ]; then
  echo "ok   plot of two documents"
else
  echo "FAIL plot:"; cat "$tmp/err"; fail=1
fi
expect_error "plot of a non-document" "not an slm-bench --json document" plot --svg "$tmp/x.svg" "$tmp/good.jsonl"

exit $fail
