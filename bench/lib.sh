# bench/lib.sh - shared by the compare scripts (sourced, not run): where llama.cpp (the peer)
# and slmd's benchmark programs are, built when missing.
#   bench_peer_bin NAME     prints the path of llama.cpp's program NAME (builds the peer if absent)
#   bench_slmd_bin NAME     prints the path of slmd's bench program NAME in $BUILD (builds it if absent)
# Env: BUILD (slmd build folder, default build), SLM_PEER_DIR (default ~/.cache/slmd/peer),
#      BENCH_JOBS (parallel jobs of a build bench_slmd_bin starts, default 2).
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$BENCH_ROOT/$BUILD;; esac
PEER=${SLM_PEER_DIR:-$HOME/.cache/slmd/peer}

bench_peer_bin() {
    if [ ! -f "$PEER/READY" ]; then
        echo "no llama.cpp peer at $PEER; building it (bench/peer/build-llama-cpp.sh)" >&2
        SLM_PEER_DIR=$PEER "$BENCH_ROOT/bench/peer/build-llama-cpp.sh" >&2 || return 1
    fi
    local bin; bin=$(sed -n 's/^bin=//p' "$PEER/READY")/$1
    [ -x "$bin" ] || { echo "$bin missing; rerun bench/peer/build-llama-cpp.sh" >&2; return 1; }
    echo "$bin"
}

bench_peer_version() {
    sed -n 's/^version=//p' "$PEER/READY"
}

bench_slmd_bin() {
    if [ ! -x "$BUILD/$1" ]; then
        echo "building $1 in $BUILD" >&2
        [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$BENCH_ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >&2
        cmake --build "$BUILD" -j"${BENCH_JOBS:-2}" --target "$1" >&2 || return 1
    fi
    echo "$BUILD/$1"
}
