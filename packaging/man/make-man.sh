#!/usr/bin/env bash
# packaging/man/make-man.sh - writes the man pages slm(1), slmd(8), slm-bench(1) and
# slmd.conf(5) into OUTDIR from the programs' own --help (one source of truth: the pages
# cannot drift from the options; tests/test_man.sh checks each option is in its page), with
# the descriptions below. Run by the build (target `man`).
#   make-man.sh BINDIR VERSION OUTDIR
set -euo pipefail
bin=$1 version=$2 out=$3
mkdir -p "$out"
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%d)

# roff-safe text: backslashes doubled, a leading . or ' escaped.
esc() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }

# page NAME SECTION SUMMARY DESCRIPTION: the header, NAME and DESCRIPTION.
page() {
  printf '.TH %s %s %s "slmd %s" "slmd"\n.SH NAME\n%s \\- %s\n.SH DESCRIPTION\n' \
    "$(tr a-z A-Z <<<"$1")" "$2" "$date" "$version" "$1" "$3"
  esc <<<"$4"
}

# help TITLE COMMAND...: a section holding COMMAND's --help verbatim.
help() {
  local title=$1; shift
  printf '.SH %s\n.nf\n' "$title"
  "$@" --help | esc
  printf '.fi\n'
}

see_also() { printf '.SH SEE ALSO\n%s\n.PP\nThe documentation in /usr/share/doc/slmd (README.md, docs/*.md).\n' "$1"; }

{
  page slm 1 "the command-line client of slmd" \
"slm talks to a running slmd (the daemon serving a language model) through libslm: it completes
a prompt, holds a chat, tokenizes, and reports the model and the daemon's counters. slm models,
slm pull and slm rm manage the model store without a daemon."
  help "COMMANDS" "$bin/slm"
  for c in generate chat info stats tokenize detokenize models pull rm; do
    help "SLM $(tr a-z A-Z <<<"$c")" "$bin/slm" "$c"
  done
  printf '.SH ENVIRONMENT\n.TP\n.B SLM_SOCKET\nthe daemon'"'"'s socket when --socket is not given.\n'
  printf '.TP\n.B SLM_MODEL_DIR\nthe user'"'"'s model store (default ~/.cache/slmd/models).\n'
  see_also "slmd(8), slm-bench(1), slmd.conf(5)"
} >"$out/slm.1"

{
  page slmd 8 "a daemon that serves a small language model to local programs" \
"slmd keeps a GGUF language model resident and serves it over a Unix socket and shared-memory
rings (slmd serve, the default command), runs one prompt (slmd run), or prints its effective
configuration (slmd config)."
  help "COMMANDS" "$bin/slmd"
  help "SLMD SERVE" "$bin/slmd" serve
  help "SLMD RUN" "$bin/slmd" run
  printf '.SH FILES\n.TP\n.B /etc/slmd/slmd.conf\nthe configuration (slmd.conf(5)).\n'
  printf '.TP\n.B /var/lib/slmd/models\nthe system'"'"'s model store.\n'
  see_also "slm(1), slmd.conf(5), slm-bench(1)"
} >"$out/slmd.8"

{
  page slm-bench 1 "measure the serving speed of slmd or llama-server" \
"slm-bench drives a running slmd (through libslm) or llama-server (its HTTP endpoint) with the
same workloads and reports time to first token, time per output token, throughput and goodput."
  help "OPTIONS" "$bin/slm-bench"
  see_also "slmd(8), slm(1)"
} >"$out/slm-bench.1"

{
  page slmd.conf 5 "the configuration file of slmd" \
"Lines of 'key = value'; blank lines and lines starting with # are ignored, and a comment may
follow a value after white space. A value may be in double quotes, inside which \\\" is a
quote and \\\\ a backslash. Each key is also a flag of slmd serve (--key value), which
overrides the file. 'slmd config' prints the effective configuration in this format."
  printf '.SH KEYS\n.nf\n'
  "$bin/slmd" config --help | sed -n 's/^  --\([a-z-]*\)/\1/p' | grep -v '^config ' | esc
  printf '.fi\n'
  see_also "slmd(8)"
} >"$out/slmd.conf.5"
