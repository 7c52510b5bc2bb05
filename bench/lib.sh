# shellcheck shell=bash
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

# ---- serving: one server at a time, started in the background and stopped by its pid.
#   bench_free_port               prints a free TCP port on 127.0.0.1
#   bench_start_llama_server BIN LOG ARG...
#                                 starts BIN ARG... --host 127.0.0.1 --port P (output in LOG) and
#                                 waits up to 120 s for its /health; sets BENCH_SERVER_PID and
#                                 BENCH_URL; returns 1 (LOG's tail on stderr) when it did not come up
#   bench_start_slmd BIN SOCK LOG ARG...
#                                 starts BIN serve --socket SOCK ARG... --log-level warning and waits
#                                 up to 120 s for SOCK; sets BENCH_SERVER_PID; returns 1 likewise
#   bench_stop_server             ends the server the last start began (by its pid) and waits for it
#   bench_serving_point BENCH TARGET N M INPUT OUTPUT JSON OUTFILE ADDR...
#                                 slm-bench against TARGET (slmd or llama-server) at ADDR (--socket S or
#                                 --url U): N clients in a closed loop after a warm-up of N requests, M
#                                 measured requests of INPUT random tokens (--seed 1) and exactly OUTPUT
#                                 output tokens, greedy, end-of-generation ignored (slm-bench's own
#                                 defaults); its figures in JSON, its table in OUTFILE; extra slm-bench
#                                 flags in the array BENCH_EXTRA. Returns 1 (OUTFILE on stderr) on failure
# Errors are one line each, "$BENCH_PROG: ..." (the sourcing script's name unless it set one).
BENCH_PROG=${BENCH_PROG:-$(basename "$0" .sh)}
BENCH_SERVER_PID=
BENCH_URL=
BENCH_EXTRA=()

bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bench_start_llama_server() {
    local bin=$1 log=$2 port
    shift 2
    port=$(bench_free_port) || return 1
    "$bin" "$@" --host 127.0.0.1 --port "$port" > "$log" 2>&1 &
    BENCH_SERVER_PID=$!
    BENCH_URL=http://127.0.0.1:$port
    for _ in $(seq 600); do
        curl -sf "$BENCH_URL/health" > /dev/null 2>&1 && return 0
        kill -0 "$BENCH_SERVER_PID" 2> /dev/null || break
        sleep 0.2
    done
    tail -5 "$log" >&2
    echo "$BENCH_PROG: llama-server did not start (log: $log)" >&2
    bench_stop_server
    return 1
}

bench_start_slmd() {
    local bin=$1 sock=$2 log=$3
    shift 3
    rm -f "$sock"
    "$bin" serve --socket "$sock" "$@" --log-level warning > "$log" 2>&1 &
    BENCH_SERVER_PID=$!
    for _ in $(seq 1200); do
        [ -S "$sock" ] && return 0
        kill -0 "$BENCH_SERVER_PID" 2> /dev/null || break
        sleep 0.1
    done
    tail -5 "$log" >&2
    echo "$BENCH_PROG: slmd did not start (log: $log)" >&2
    bench_stop_server
    return 1
}

bench_stop_server() {
    [ -n "$BENCH_SERVER_PID" ] || return 0
    kill "$BENCH_SERVER_PID" 2> /dev/null || true
    wait "$BENCH_SERVER_PID" 2> /dev/null || true
    BENCH_SERVER_PID=
}

bench_serving_point() {
    local bench=$1 target=$2 n=$3 m=$4 input=$5 output=$6 json=$7 out=$8
    shift 8
    "$bench" --target "$target" "$@" --concurrency "$n" --requests "$m" --warmup "$n" --input-len "$input" \
        --output-len "$output" --seed 1 "${BENCH_EXTRA[@]}" --label "$target" --json "$json" > "$out" && return 0
    cat "$out" >&2
    echo "$BENCH_PROG: slm-bench against $target failed" >&2
    return 1
}
