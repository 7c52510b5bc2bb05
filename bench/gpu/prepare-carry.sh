#!/usr/bin/env bash
# bench/gpu/prepare-carry.sh - on the machine without a GPU, before a device session: makes the
# git-ignored folders the two device calls of bench/gpu/README.md carry, and checks that each
# call's load (the working tree plus its carried folders) stays under the 64 MiB a call takes.
#   .gpu-deps/         slmd's build libraries as .deb files (bench/gpu/fetch-deps.sh)
#   .gpu-llama-cpp/    llama.cpp's CUDA-only source tarball (bench/gpu/pack-llama-cpp.sh)
#   .gpu-model-a/, .gpu-model-b/  the model's two halves, MODEL.part1 and MODEL.part2
#                      (a 98 MB model fits no single call; run.sh --model-parts joins them and
#                      checks the join against packaging/models.tsv's pin)
# Folders already there are kept (remove one to remake it).
#
# usage: bench/gpu/prepare-carry.sh [--model FILE]
#   --model FILE  the GGUF to split [~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf,
#                 fetched by packaging/fetch-models.sh when absent]
# Exit status: 0 when both calls fit, 1 otherwise, 2 on bad usage.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${SLM_MODEL_DIR:-$HOME/.cache/slmd/models}/SmolLM2-135M-Instruct.Q4_1.gguf
LIMIT=$((64 * 1024 * 1024))
die() { echo "prepare-carry: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || { echo "prepare-carry: --model needs a value" >&2; exit 2; }; MODEL=$2; shift 2;;
        -h|--help) sed -n '12,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2;;
        *) echo "prepare-carry: unknown argument $1 (--help lists the options)" >&2; exit 2;;
    esac
done
cd "$ROOT"
for d in .gpu-deps .gpu-llama-cpp .gpu-model-a .gpu-model-b; do
    git check-ignore -q "$d/" || die "$d is not git-ignored here: it would travel with every call (see .gitignore)"
done

if ! ls .gpu-deps/*.deb > /dev/null 2>&1; then
    bench/gpu/fetch-deps.sh .gpu-deps > /dev/null || die "bench/gpu/fetch-deps.sh failed"
fi
if ! ls .gpu-llama-cpp/llama-cpp-*-cuda-src.tar.xz > /dev/null 2>&1; then
    bench/gpu/pack-llama-cpp.sh --out .gpu-llama-cpp > /dev/null || die "bench/gpu/pack-llama-cpp.sh failed"
fi
name=$(basename "$MODEL")
if [ ! -f ".gpu-model-a/$name.part1" ] || [ ! -f ".gpu-model-b/$name.part2" ]; then
    if [ ! -f "$MODEL" ]; then
        [ "$name" = SmolLM2-135M-Instruct.Q4_1.gguf ] || die "$MODEL: no such file"
        packaging/fetch-models.sh > /dev/null || die "packaging/fetch-models.sh failed"
    fi
    [ -f "$MODEL" ] || die "$MODEL: no such file"
    rm -rf .gpu-model-a .gpu-model-b
    mkdir -p .gpu-model-a .gpu-model-b
    tmp=$(mktemp -d)
    split -n 2 -d "$MODEL" "$tmp/half"
    mv "$tmp/half00" ".gpu-model-a/$name.part1"
    mv "$tmp/half01" ".gpu-model-b/$name.part2"
    rmdir "$tmp"
fi

# What travels: tracked and untracked-but-not-ignored files, plus the carried folders.
tree=$(git ls-files -z -c -o --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
size() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }
call1=$((tree + $(size .gpu-deps .gpu-llama-cpp .gpu-model-a)))
call2=$((tree + $(size .gpu-deps .gpu-model-b)))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "working tree: $(mib "$tree")"
echo "call 1 carries .gpu-deps .gpu-llama-cpp .gpu-model-a: $(mib "$call1") of 64 MiB"
echo "call 2 carries .gpu-deps .gpu-model-b: $(mib "$call2") of 64 MiB"
{ [ "$call1" -le "$LIMIT" ] && [ "$call2" -le "$LIMIT" ]; } || die "a call would carry more than 64 MiB"
echo "ready: the two calls of bench/gpu/README.md"
