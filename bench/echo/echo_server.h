/*
 * bench/echo/echo_server.h - slmd's server code with an echo producer in place of the engine,
 * for bench/ring_bench.c only (the IPC measured without a model). slmd cannot select it.
 *
 * slm_server_run (server.h) runs on a thread of its own, named "slmd-io", with conn.c and
 * the I/O loop as slmd has them; the engine thread ("slmd-engine") steps the echo producer: a
 * request for N tokens (max_tokens) yields N token events, token id = its index, text " echo",
 * at most ECHO_CREDIT of them unread by the consumer (the completion ring's room), or one per
 * echo_bench.pace_ns. When it has no request the engine thread polls the rings for spin-us and
 * then sleeps on the doorbells, as in slmd: the producer stands for an engine busy stepping.
 *
 * Kept apart from ring_bench.c: the daemon's server headers are not libslm's.
 */
#ifndef SLM_BENCH_ECHO_SERVER_H
#define SLM_BENCH_ECHO_SERVER_H

#include <stdint.h>
#include <time.h>

#include "common/clock.h"

#define ECHO_CREDIT 768        /* tokens in flight at most: under the default CQ's 1024 entries */
#define ECHO_CREDIT_EVERY 64   /* the consumer publishes its count at least this often */
#define ECHO_TEXT " echo"

/* Shared between the echo producer (engine thread) and the bench's consumer. */
struct echo_bench {
    int64_t pace_ns;           /* 0: as fast as the ring takes them; else one token per pace_ns */
    int64_t *stamp;            /* (n_stamp) CLOCK_MONOTONIC ns at which token i was handed to the IPC */
    int n_stamp;
    int io_tid, engine_tid;    /* the daemon side's threads, once they ran */
    uint64_t consumed __attribute__((aligned(64)));   /* tokens taken of the current request (release) */
};

extern struct echo_bench echo_bench;

/* Starts slm_server_run with the echo producer on socket_path, the engine thread spinning spin_us,
 * logging from log_level up.
 * SIGTERM, SIGINT and SIGHUP must be blocked in every thread first. 0 or -errno. */
int echo_server_start(const char *socket_path, int spin_us, const char *log_level);

/* Before each request: clears the flow-control counters. Call only while no request runs. */
void echo_server_reset(void);

/* Drains and stops the server (a SIGTERM to this process, as slmd takes it) and joins it. */
void echo_server_stop(void);

#endif
