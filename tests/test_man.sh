#!/usr/bin/env bash
# tests/test_man.sh - the man pages (built by packaging/man/make-man.sh from --help) and the
# bash completion (packaging/bash-completion/slm):
#   - slm(1), slmd(8), slm-bench(1), slmd.conf(5) exist and render without a groff warning;
#   - every option of every command's --help is in its page, and every key of slmd.conf in
#     slmd.conf(5);
#   - completion offers slm's and slmd's commands, a command's options, and model names.
set -u
slmd=${SLMD:?SLMD must name the slmd binary}
bin=$(dirname "$slmd")
man=$bin/man
src=${SLM_TEST_DATA:-$(dirname "$0")}/..
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

for p in slm.1 slmd.8 slm-bench.1 slmd.conf.5; do
  if [ ! -s "$man/$p" ]; then bad "$man/$p is missing (the build's target 'man' makes it)"; continue; fi
  if command -v man >/dev/null; then
    w=$(MANWIDTH=100 man --warnings=all -l "$man/$p" 2>&1 >/dev/null)
    [ -z "$w" ] && ok "$p renders without warnings" || bad "$p: groff says: $w"
  fi
done

# options_in PAGE PROGRAM [COMMAND]: every --option of PROGRAM [COMMAND] --help is in PAGE.
options_in() {
  local page=$1; shift
  local missing=() o
  for o in $("$@" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -q -- "${o//-/\\\\-}\|$o" "$man/$page" || missing+=("$o")
  done
  [ ${#missing[@]} = 0 ] && ok "$page has every option of '${*##*/} --help'" || bad "$page lacks ${missing[*]} of '$* --help'"
}
for c in generate chat info stats tokenize detokenize models pull rm; do options_in slm.1 "$bin/slm" $c; done
options_in slm.1 "$bin/slm"
for c in serve run; do options_in slmd.8 "$slmd" $c; done
options_in slm-bench.1 "$bin/slm-bench"
missing=()
for k in $("$slmd" config --help | sed -n 's/^  --\([a-z-]*\).*/\1/p' | grep -v '^config$'); do
  grep -q "^$k\b" "$man/slmd.conf.5" || missing+=("$k")
done
[ ${#missing[@]} = 0 ] && ok "slmd.conf.5 has every key" || bad "slmd.conf.5 lacks ${missing[*]}"

# ---- bash completion, through the built programs
r=$(PATH=$bin:$PATH bash -c '. "$1/packaging/bash-completion/slm"
t() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _slm_complete "$1"; echo "${COMPREPLY[*]}"; }
t slm gen; t slm generate --max; t slmd r; t slmd run --ctx; t slm --socket /x st; t slmd help ru
SLM_MODEL_DIR=/nonexistent SLM_MODEL_CATALOGUE="$1/packaging/models.tsv" t slm pull Sm' _ "$src")
want=$'generate\n--max-tokens\nrun\n--ctx-size\nstats\nrun\nSmolLM2-135M-Instruct-Q4_1'
[ "$r" = "$want" ] && ok "bash completion: commands, options, model names" || bad "bash completion: got $(echo $r), expected $(echo $want)"
exit $fail
