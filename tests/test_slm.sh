#!/usr/bin/env bash
# tests/test_slm.sh - the `slm` command against a real `slmd serve` on a temporary socket:
#   - generate gives byte for byte what `slmd run` gives for the same prompt and flags
#     (greedy, and sampled with every sampling flag the two share), from an argument and from stdin;
#   - chat: answers each piped line, sends the whole history with each turn (usage), --system
#     equals `slmd run --chat --system`, /exit ends;
#   - info, stats, tokenize, detokenize, in text and --json (parsed by python3);
#   - every kind of bad input: one stderr line naming the problem, the documented exit status;
#   - SIGINT during a long generate cancels the request (finish "cancelled", exit 130) and the
#     daemon is left with no request running.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
slm=$(dirname "$slmd")/slm
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
golden=${SLM_TEST_DATA:-$(dirname "$0")}/golden/smollm2_greedy_avx2.txt   # its prompts: both builds' files hold the same
[ -f "$model" ] || { echo "skip: $model is absent"; exit 77; }
[ -x "$slm" ] || { echo "FAIL: $slm is not built"; exit 1; }
tmp=$(mktemp -d)
sock=$tmp/slmd.sock
"$slmd" serve --socket "$sock" --model "$model" --kv-cache-mem 256M --threads 2 --log-level warning \
  2>"$tmp/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
  "$slm" --socket "$sock" info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "FAIL slmd serve exited:"; cat "$tmp/daemon.log"; exit 1; }
  sleep 0.1
done
export SLM_SOCKET=$sock
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# json_get FILE EXPR: evaluates a python expression over d, the JSON object in FILE (the last
# line when there are several); prints the result, or fails.
json_get() {
  python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# expect_idle WHEN: within 5 s the daemon runs no request, holds no KV block, and has one
# client (the stats call itself).
expect_idle() {
  for _ in $(seq 50); do
    "$slm" stats --json >"$tmp/st.json"
    [ "$(json_get "$tmp/st.json" '(d["requests_active"], d["kv_blocks_used"], d["clients"])')" = "(0, 0, 1)" ] &&
      { ok "$1: the daemon runs no request and holds no KV block"; return; }
    sleep 0.1
  done
  bad "$1: $(cat "$tmp/st.json")"
}

# wait_active: until the daemon runs a request (up to 10 s).
wait_active() {
  for _ in $(seq 100); do
    [ "$(json_get <("$slm" stats --json) 'd["requests_active"]')" = 1 ] && return
    sleep 0.1
  done
}

# ---- generate equals slmd run
same_as_run() {   # NAME PROMPT FLAGS...
  local name=$1 prompt=$2; shift 2
  "$slm" generate "$prompt" "$@" >"$tmp/slm.out" 2>"$tmp/slm.err"; local rc=$?
  "$slmd" run --model "$model" --prompt "$prompt" --threads 2 "$@" >"$tmp/run.out" 2>/dev/null
  if [ $rc -ne 0 ] || [ ! -s "$tmp/slm.out" ] || ! cmp -s "$tmp/slm.out" "$tmp/run.out"; then
    bad "$name: slm generate (exit $rc) differs from slmd run:"; cat "$tmp/slm.err"
    echo "  slm:      $(od -c "$tmp/slm.out" | head -3)"; echo "  slmd run: $(od -c "$tmp/run.out" | head -3)"
  else
    ok "$name: slm generate equals slmd run: $(head -c 60 "$tmp/slm.out" | tr '\n' ' ')"
  fi
}
same_as_run "greedy" "The capital of France is" --temperature 0 --seed 7 --max-tokens 24
same_as_run "sampled, every flag" "Once upon a time" --temperature 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 \
  --repeat-penalty 1.1 --presence-penalty 0.2 --frequency-penalty 0.1 --seed 42 --max-tokens 40
cp "$tmp/slm.out" "$tmp/sampled.out"
printf 'Once upon a time' | "$slm" generate - --temperature 0.9 --top-k 20 --top-p 0.9 --min-p 0.02 \
  --repeat-penalty 1.1 --presence-penalty 0.2 --frequency-penalty 0.1 --seed 42 --max-tokens 40 >"$tmp/stdin.out"
cmp -s "$tmp/stdin.out" "$tmp/sampled.out" && ok "generate - reads the prompt from stdin" \
  || bad "generate -: '$(cat "$tmp/stdin.out")' vs '$(cat "$tmp/sampled.out")'"

# --json: one object with the text, the finish reason and the usage; --stream-json: one per event.
"$slm" generate "The capital of France is" --temperature 0 --max-tokens 8 --json --logprobs 2 >"$tmp/gen.json"
r=$(json_get "$tmp/gen.json" '(d["finish"], d["usage"]["n_generated"], len(d["logprobs"]), len(d["logprobs"][0]["top"]), "".join(t["text"] for t in d["logprobs"]) == d["text"], d["usage"]["n_prompt"])')
[ "$r" = "('length', 8, 8, 2, True, 5)" ] && ok "generate --json --logprobs 2: $r" || bad "generate --json: $r: $(cat "$tmp/gen.json")"
"$slm" generate "The capital of France is" --temperature 0 --max-tokens 8 --stream-json >"$tmp/gen.jsonl"
r=$(python3 -c 'import json,sys
ev=[json.loads(l) for l in open(sys.argv[1])]
print(len(ev), [e["event"] for e in ev].count("token"), ev[-1]["event"], ev[-1]["usage"]["n_generated"],
      "".join(e["text"] for e in ev[:-1]) == json.load(open(sys.argv[2]))["text"])' "$tmp/gen.jsonl" "$tmp/gen.json")
[ "$r" = "9 8 done 8 True" ] && ok "generate --stream-json: $r" || bad "generate --stream-json: $r"

# ---- chat
printf 'What is 2+2?\nAnd times 3?\n' | "$slm" chat --json --temperature 0 --max-tokens 30 >"$tmp/chat.json"
printf 'And times 3?\n' | "$slm" chat --json --temperature 0 --max-tokens 30 >"$tmp/alone.json"
t1=$("$slm" tokenize 'What is 2+2?' | wc -w)
r=$(python3 - "$tmp/chat.json" "$tmp/alone.json" "$t1" <<'PY'
import json, sys
turns = [json.loads(l) for l in open(sys.argv[1])]
alone = json.loads(open(sys.argv[2]).read())
t1 = int(sys.argv[3])
if len(turns) != 2 or not all(t["text"] for t in turns):
    print("expected two answers, got", turns); sys.exit()
n2, a2, g1 = turns[1]["usage"]["n_prompt"], alone["usage"]["n_prompt"], turns[0]["usage"]["n_generated"]
# The second turn's prompt holds the first question (t1 tokens) and answer (g1 tokens, less the end token).
print("ok" if n2 >= a2 + t1 + g1 - 1 else "short", n2, a2, t1, g1)
PY
)
[[ "$r" == ok* ]] && ok "chat keeps the history: turn 2 prompt $r (n2 alone t1 g1)" || bad "chat history: $r"
"$slm" chat --system 'Answer briefly.' --temperature 0 --max-tokens 12 <<<'What is the capital of France?' >"$tmp/chat.out"
"$slmd" run --model "$model" --chat --system 'Answer briefly.' --prompt 'What is the capital of France?' \
  --temperature 0 --max-tokens 12 --threads 2 >"$tmp/run.out" 2>/dev/null
cmp -s "$tmp/chat.out" "$tmp/run.out" && ok "chat --system equals slmd run --chat --system: $(cat "$tmp/chat.out")" \
  || bad "chat --system: '$(cat "$tmp/chat.out")' vs slmd run '$(cat "$tmp/run.out")'"
n=$(printf 'Say hi.\n/exit\nSay bye.\n' | "$slm" chat --json --temperature 0 --max-tokens 4 | wc -l)
[ "$n" = 1 ] && ok "chat: /exit ends the conversation" || bad "chat /exit: $n answers"
printf 'Say bye.\n' | "$slm" chat --prompt 'Say hi.' --json --temperature 0 --max-tokens 4 >"$tmp/first.json"
r=$(python3 -c 'import json,sys; t=[json.loads(l) for l in open(sys.argv[1])]; print(len(t), t[1]["usage"]["n_prompt"] > t[0]["usage"]["n_prompt"])' "$tmp/first.json")
[ "$r" = "2 True" ] && ok "chat --prompt: the first turn, then standard input's" || bad "chat --prompt: $r"

# ---- info, stats
"$slm" info --json >"$tmp/info.json"
r=$(json_get "$tmp/info.json" '(d["arch"], d["n_vocab"], d["kv_blocks"] > 0, d["n_ctx"] > 0, d["model"].endswith(".gguf"))')
[ "$r" = "('llama', 49152, True, True, True)" ] && ok "info --json: $r" || bad "info --json: $r: $(cat "$tmp/info.json")"
"$slm" stats --json >"$tmp/stats0.json"
"$slm" generate "Hello" --temperature 0 --max-tokens 6 --ignore-eos >/dev/null
"$slm" stats --json >"$tmp/stats1.json"
r=$(python3 - "$tmp/stats0.json" "$tmp/stats1.json" <<'PY'
import json, sys
s0, s1 = (json.load(open(p)) for p in sys.argv[1:])
keys = ["clients", "requests_active", "requests_queued", "requests_total", "tokens_prompt", "tokens_cached",
        "tokens_generated", "kv_blocks_used", "kv_blocks_total", "tokens_per_s", "uptime_s"]
missing = [k for k in keys if k not in s1]
print(missing or "", s1["kv_blocks_total"] > 0, s1["tokens_generated"] - s0["tokens_generated"],
      s1["requests_total"] - s0["requests_total"], s1["clients"], s1["requests_active"])
PY
)
[ "$r" = " True 6 1 1 0" ] && ok "stats --json: every field; 6 tokens and 1 request more after a generate" \
  || bad "stats --json (missing, total>0, +generated, +requests, clients, active): $r"
"$slm" stats | grep -q '^kv_blocks_total: [1-9]' && ok "stats as text" || bad "stats as text: $("$slm" stats)"

# ---- tokenize, detokenize: llama.cpp's ids for the golden prompts; detokenize inverts tokenize.
n=0
while IFS=$'\t' read -r text ids; do
  got=$("$slm" tokenize "$text")
  [ "$got" = "$ids" ] || { bad "tokenize '$text': expected $ids, got $got"; continue; }
  n=$((n + 1))
done < <(python3 - "$golden" <<'PY'
import sys
recs, cur = [], {}
for line in open(sys.argv[1], encoding='utf-8'):
    if line.startswith('# prompt'): cur = {}; recs.append(cur)
    elif line[:2] in ('T ', 'P '): cur[line[0]] = line[2:].rstrip('\n')
for r in [r for r in recs if '\\' not in r['T']][:5]:
    print(r['T'] + '\t' + r['P'])
PY
)
[ $n = 5 ] && ok "tokenize gives llama.cpp's ids on 5 golden prompts"
text='Hello, world! Ça va? 12345 — ok'
back=$("$slm" tokenize "$text" | "$slm" detokenize -)
[ "$back" = "$text" ] && ok "detokenize - inverts tokenize" || bad "detokenize: '$back' vs '$text'"
"$slm" tokenize --json "$text" >"$tmp/tok.json"
back=$(python3 -c 'import json,sys; print(" ".join(map(str, json.load(open(sys.argv[1]))["ids"])))' "$tmp/tok.json" \
  | xargs "$slm" detokenize --json | python3 -c 'import json,sys; print(json.load(sys.stdin))')
[ "$back" = "$text" ] && ok "tokenize --json, detokenize --json" || bad "--json round trip: '$back'"

# ---- bad input: one stderr line matching PATTERN, exit status CODE.
expect_error() {   # NAME CODE PATTERN ARGS...
  local name=$1 code=$2 pat=$3; shift 3
  "$slm" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  if [ $rc -ne "$code" ] || [ "$lines" -ne 1 ] || ! grep -q -E -- "$pat" "$tmp/err"; then
    bad "$name: expected exit $code and one line matching '$pat'; got exit $rc, $lines lines:"; cat "$tmp/err"
  else
    ok "$name: exit $rc: $(cat "$tmp/err")"
  fi
}
expect_error "unknown flag" 2 "unknown option '--frobnicate'" generate --frobnicate hi
expect_error "flag of another command" 2 "slm info: unknown option '--temperature'" info --temperature 1
expect_error "bad temperature" 2 "--temperature: -1 is out of range" generate --temperature -1 hi
expect_error "bad max-tokens" 2 "--max-tokens: 'abc' is not a whole number" generate --max-tokens abc hi
expect_error "top-p range" 2 "--top-p: 1.5 is out of range" generate --top-p 1.5 hi
expect_error "logprobs range" 2 "--logprobs: 21 is out of range" generate --logprobs 21 --json hi
expect_error "repeat-penalty 0" 2 "--repeat-penalty: must be above 0" generate --repeat-penalty 0 hi
expect_error "missing value" 2 "--seed needs a value" generate hi --seed
expect_error "missing prompt" 2 "PROMPT is missing" generate --temperature 0
expect_error "two prompts" 2 "unexpected argument 'world'" generate hello world
expect_error "missing text" 2 "TEXT is missing" tokenize
expect_error "bad token id" 2 "token id 'x' is not a whole number" detokenize 1 x
expect_error "no command" 2 "a COMMAND is needed" --socket "$sock"
expect_error "unknown command" 2 "unknown command 'fly'" fly
expect_error "json twice" 2 "--json and --stream-json exclude each other" generate --json --stream-json hi
expect_error "no daemon" 3 "cannot connect to slmd at $tmp/none.sock: .*No such file" --socket "$tmp/none.sock" info
expect_error "no daemon, per command" 3 "cannot connect to slmd at $tmp/none.sock" generate hi --socket "$tmp/none.sock"
SLM_SOCKET=$tmp/env.sock expect_error "SLM_SOCKET is used" 3 "cannot connect to slmd at $tmp/env.sock" stats
: >"$tmp/plain"
expect_error "not a socket" 3 "cannot connect to slmd at $tmp/plain" --socket "$tmp/plain" info
expect_error "unknown token id" 4 "slm detokenize: detokenize: " detokenize 1073741824
python3 -c "print('hello ' * 9000)" >"$tmp/long.txt"
"$slm" generate - <"$tmp/long.txt" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 4 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "slmd refused the request: .*does not fit the context" "$tmp/err" \
  && ok "refused request: exit 4: $(cat "$tmp/err")" || bad "a prompt over the context: exit $rc: $(cat "$tmp/err")"
SLM_SOCKET=$tmp/none.sock "$slm" --socket "$sock" info >/dev/null && ok "--socket wins over SLM_SOCKET" \
  || bad "--socket did not win over SLM_SOCKET"
"$slm" --help | grep -q '130 interrupted' && "$slm" chat --help | grep -q -- '--system TEXT' && "$slm" --version \
  | grep -q '^slm [0-9]' && ok "--help, per command and overall; --version" || bad "--help or --version"

# ---- SIGINT during a long generate: cancelled through slm_cancel, exit 130, nothing left running.
"$slm" generate "Tell me a very long story." --ignore-eos --max-tokens 2000 --json >"$tmp/int.json" 2>"$tmp/int.err" &
gen=$!
wait_active
sleep 0.5
kill -INT $gen
wait $gen; rc=$?
r=$(json_get "$tmp/int.json" '(d["finish"], 0 < d["usage"]["n_generated"] < 2000)' 2>&1)
if [ $rc -eq 130 ] && [ "$r" = "('cancelled', True)" ] && grep -q 'interrupted; the request was cancelled' "$tmp/int.err"; then
  ok "SIGINT: exit 130, finish cancelled after $(json_get "$tmp/int.json" 'd["usage"]["n_generated"]') tokens"
else
  bad "SIGINT: exit $rc, $r, stderr: $(cat "$tmp/int.err")"
fi
expect_idle "after SIGINT"

# ---- chat at a terminal (a pty): the prompt, Ctrl-C cancels the answer and the chat goes on, /exit ends.
r=$(python3 - "$slm" "$sock" <<'PY'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], 'chat', '--socket', sys.argv[2], '--temperature', '0', '--max-tokens', '1000',
                           '--ignore-eos'])
out = b''
def read_until(pattern, seconds):
    global out
    end = time.time() + seconds
    while pattern not in out and time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try: out += os.read(fd, 4096)
            except OSError: return
read_until(b'> ', 10)
os.write(fd, b'Tell me a story.\n')
read_until(b'Tell me a story.\r\n', 10)
start = len(out)
while len(out) - start < 40 and b'\n> ' not in out[start:]:   # some of the answer has streamed
    read_until(b'\0', 0.1)
os.write(fd, b'\x03')
read_until(b'cancelled', 10)
read_until(b'> ', 10)
os.write(fd, b'/exit\n')
read_until(b'\0', 1)
_, status = os.waitpid(pid, 0)
text = out.decode(errors='replace')
print(os.waitstatus_to_exitcode(status), text.count('> '), 'interrupted; the request was cancelled' in text)
PY
)
[ "$r" = "0 2 True" ] && ok "chat at a terminal: prompts, Ctrl-C cancels one answer, /exit ends (exit 0)" \
  || bad "chat at a terminal (exit, prompts, cancelled): $r"
expect_idle "after the terminal chat"

kill -0 $daemon 2>/dev/null && ok "slmd still running" || { bad "slmd died:"; cat "$tmp/daemon.log"; }

# ---- the daemon dies mid-stream (last: it is gone afterwards): exit 4, one line.
"$slm" generate "Tell me a very long story." --ignore-eos --max-tokens 2000 >/dev/null 2>"$tmp/gone.err" &
gen=$!
wait_active
kill -KILL $daemon
wait $gen; rc=$?
[ $rc = 4 ] && [ "$(wc -l <"$tmp/gone.err")" = 1 ] && grep -q "slmd went away" "$tmp/gone.err" \
  && ok "slmd killed mid-stream: exit 4: $(cat "$tmp/gone.err")" || bad "slmd killed mid-stream: exit $rc: $(cat "$tmp/gone.err")"
exit $fail
