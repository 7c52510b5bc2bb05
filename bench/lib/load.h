/*
 * bench/lib/load.h - one load point of slm-bench: a closed loop of N clients, or an open loop
 * of requests arriving at R per second served by up to N connections, against one target.
 *
 * Closed loop: each of N threads opens a connection, then sends request after request, each
 * when its last one is done, until n_requests were taken or duration passed (those running
 * then finish and count). Open loop: request i is due at its arrival time (Poisson or evenly
 * spaced); a free thread takes it, waits for that time and sends it; its start is the
 * scheduled arrival, so time spent waiting for a free connection counts in its latency.
 * Request i's prompt is slm_bench_workload_make(workload, salt, index_base + i), whichever
 * thread sends it: slm-bench gives each warm-up and load point new indices, so that a server
 * kept across them finds no earlier prompt in its prefix cache (unless a prompt file is
 * shorter than the requests: its lines come round again).
 */
#ifndef SLM_BENCH_LOAD_H
#define SLM_BENCH_LOAD_H

#include "bench/lib/stats.h"
#include "bench/lib/target.h"
#include "bench/lib/workload.h"

struct slm_bench_load {
    const struct slm_bench_target *target;
    const struct slm_bench_workload *workload;
    uint64_t salt;             /* 0 measured, 1 warm-up (other prompts) */
    long index_base;           /* request i takes the workload's request index_base + i */
    int concurrency;           /* closed loop: clients; open loop: connections at most */
    double rate;               /* > 0: open loop, requests/s */
    int poisson;               /* open loop: Poisson arrivals, else evenly spaced */
    long n_requests;           /* -1: for duration seconds */
    double duration;
    int show_progress;         /* a live line on stderr while it runs */
    /* Results: */
    struct slm_bench_request *recs;   /* (n_recs) in completion order; owned */
    size_t n_recs;
    char first_error[SLM_ERR_LEN];    /* the first failure's reason ("" if none) */
};

/* Runs the load point; the requests (failed ones too) in l->recs. 0, or -errno when nothing
 * could run (a connection failed: the reason in l->first_error). Free with slm_bench_load_free. */
int slm_bench_load_run(struct slm_bench_load *l);

void slm_bench_load_free(struct slm_bench_load *l);

#endif
