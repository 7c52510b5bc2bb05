#!/usr/bin/env bash
# tests/test_cli_polish.sh - issue 18's command-line problems, each checked as a user meets it:
#   - an argument error names the argument at fault (not the one before it); a prompt that starts
#     with '-' goes after '--';
#   - every subcommand of slm and slmd takes -h/--help, `help COMMAND` prints that command's help,
#     --version on slmd, slm and slm-bench (version, git revision, backends);
#   - llama.cpp's short flags (-m -p -n -c -t -s) where they make sense;
#   - --ctx-size above the model's training context is refused unless --force-ctx.
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
[[ "$v" =~ ^slm\ [0-9]+\.[0-9]+\.[0-9]+ ]] && ok "slm --version: $v" || bad "slm --version: $v"

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
[[ "$v" =~ ^slmd\ [0-9.]+.*$'\n'backends:\ cpu ]] && ok "slmd --version: $(tr '\n' ' ' <<<"$v")" \
  || bad "slmd --version: $v"
v=$("$bin/slm-bench" --version 2>&1)
[[ "$v" =~ ^slm-bench\ [0-9.]+\ \(git ]] && ok "slm-bench --version: $v" || bad "slm-bench --version: $v"

[ -f "$model" ] || { echo "skip: $model is absent (the rest needs it)"; exit $([ $fail = 0 ] && echo 77 || echo 1); }

# ---- llama.cpp's short flags on slmd run: the same tokens as the long ones.
long=$("$slmd" run --model "$model" --prompt "The capital of France is" --max-tokens 6 --seed 3 --threads 2 \
  --ctx-size 256 --print-token-ids)
short=$("$slmd" run -m "$model" -p "The capital of France is" -n 6 -s 3 -t 2 -c 256 --print-token-ids)
[ -n "$long" ] && [ "$long" = "$short" ] && ok "slmd run -m -p -n -s -t -c = the long flags: $short" \
  || bad "short flags: '$short' vs long '$long'"

# ---- --ctx-size above the training context (8192 for SmolLM2)
expect_error "ctx above training" "--ctx-size 65536 is above the 8192 tokens .*--force-ctx" \
  run -m "$model" -p hi -c 65536
"$slmd" run -m "$model" -p hi -n 1 -c 9000 --force-ctx >/dev/null 2>"$tmp/err" && ok "--force-ctx allows it" \
  || bad "--force-ctx: $(cat "$tmp/err")"
exit $fail
