#!/usr/bin/env bash
# bench/peer/vec-dot-peer.sh - builds and runs bench/peer/vec_dot_peer.c: slmd's CPU dot products
# against the peer llama.cpp build's (bench/peer/build-llama-cpp.sh), bit for bit.
#   bench/peer/vec-dot-peer.sh [BUILD_DIR]   (BUILD_DIR: slmd's CMake build, default ./build)
# SLM_CPU_KERNELS=generic|avx2 caps slmd's kernels as everywhere else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
ready=${SLM_PEER_DIR:-$HOME/.cache/slmd/peer}/READY
[ -r "$ready" ] || { echo "no peer build ($ready): run bench/peer/build-llama-cpp.sh" >&2; exit 77; }
bin=$(sed -n 's/^bin=//p' "$ready")
make -C "$build" slm_kernels_cpu >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -ffp-contract=off -I"$root" "$here/vec_dot_peer.c" "$build/libslm_kernels_cpu.a" \
   -L"$bin" -Wl,-rpath,"$bin" -lggml-cpu -lggml-base -lm -lpthread -o "$out/vec_dot_peer"
"$out/vec_dot_peer"
