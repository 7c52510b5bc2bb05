/*
 * bench/lib/load.c - one load point of slm-bench (load.h): worker threads, each with its own
 * connection, taking request indices from one counter; in open loop each index has its
 * scheduled arrival.
 */
#define _GNU_SOURCE
#include "bench/lib/load.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct run {
    struct slm_bench_load *l;
    long n_requests;           /* l's, or 0 when a connection failed */
    double duration;
    double *arrivals;          /* open loop: (n_arrivals) seconds after t0 */
    long n_arrivals;
    double t0;
    long next;                 /* atomic: the next request's index */
    long live_tokens, done, failed;   /* atomic, for the progress line */
    pthread_mutex_t mu;        /* guards recs, first_error, n_ready and go */
    pthread_cond_t cond;       /* n_ready grew, or go was set */
    int n_ready, go;
    struct slm_bench_request *recs;
    size_t n_recs, cap_recs;
    char first_error[SLM_ERR_LEN];
    int stop_progress;
};

static void note_error(struct run *r, const char *err)
{
    pthread_mutex_lock(&r->mu);
    if (!r->first_error[0]) snprintf(r->first_error, sizeof r->first_error, "%s", err);
    pthread_mutex_unlock(&r->mu);
}

static int keep(struct run *r, const struct slm_bench_request *q)
{
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    if (r->n_recs == r->cap_recs) {
        size_t cap = r->cap_recs ? 2 * r->cap_recs : 256;
        void *p = realloc(r->recs, cap * sizeof *r->recs);
        if (p) {
            r->recs = p;
            r->cap_recs = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (!rc) r->recs[r->n_recs++] = *q;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void sleep_until(double t)
{
    double left = t - slm_bench_now();
    if (left <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - floor(left)) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* One connection: takes request indices until the run's end. */
static void *worker(void *arg)
{
    struct run *r = arg;
    char err[SLM_ERR_LEN] = "";
    struct slm_bench_conn *c = slm_bench_conn_open(r->l->target, err);
    if (!c) note_error(r, err);
    pthread_mutex_lock(&r->mu);
    r->n_ready++;
    pthread_cond_broadcast(&r->cond);
    while (!r->go) pthread_cond_wait(&r->cond, &r->mu);   /* then r->t0 is set */
    pthread_mutex_unlock(&r->mu);
    while (c) {
        long i = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
        if (r->arrivals ? i >= r->n_arrivals : r->n_requests >= 0 && i >= r->n_requests) break;
        if (!r->arrivals && r->n_requests < 0 && slm_bench_now() >= r->t0 + r->duration) break;
        struct slm_bench_prompt p;
        struct slm_bench_request q = {0};
        if (slm_bench_workload_make(r->l->workload, r->l->salt, r->l->index_base + i, &p)) {
            note_error(r, "out of memory");
            break;
        }
        if (r->arrivals) {
            q.t_start = r->t0 + r->arrivals[i];
            sleep_until(q.t_start);
        } else {
            q.t_start = slm_bench_now();
        }
        if (slm_bench_conn_run(c, &p, &q, &r->live_tokens, err)) {
            note_error(r, err);
            __atomic_fetch_add(&r->failed, 1, __ATOMIC_RELAXED);
        }
        slm_bench_prompt_free(&p);
        __atomic_fetch_add(&r->done, 1, __ATOMIC_RELAXED);
        if (keep(r, &q)) {
            free(q.token_times);
            note_error(r, "out of memory");
            break;
        }
    }
    slm_bench_conn_close(&c);
    return NULL;
}

/* The live line: every quarter second until the run ends. */
static void *progress(void *arg)
{
    struct run *r = arg;
    while (!__atomic_load_n(&r->stop_progress, __ATOMIC_RELAXED)) {
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double el = slm_bench_now() - r->t0;
        long done = __atomic_load_n(&r->done, __ATOMIC_RELAXED);
        long total = r->arrivals ? r->n_arrivals : r->n_requests;
        char of[32] = "";
        if (total >= 0) snprintf(of, sizeof of, "/%ld", total);
        fprintf(stderr, "\r\033[K%s %s %g: %ld%s done, %ld failed, %.1f output tok/s, %.1f s", r->l->salt ? "warm-up" : "run",
                r->l->rate > 0 ? "rate" : "concurrency", r->l->rate > 0 ? r->l->rate : r->l->concurrency, done, of,
                __atomic_load_n(&r->failed, __ATOMIC_RELAXED),
                el > 0 ? (double)__atomic_load_n(&r->live_tokens, __ATOMIC_RELAXED) / el : 0.0, el);
    }
    fprintf(stderr, "\r\033[K");
    return NULL;
}

/* Open-loop arrival times: n of them, or as many as fall within duration. */
static int make_arrivals(struct run *r, uint64_t seed)
{
    long cap = r->n_requests >= 0 ? r->n_requests : (long)(r->duration * r->l->rate * 1.5) + 16;
    r->arrivals = malloc((size_t)cap * sizeof *r->arrivals);
    if (!r->arrivals) return -ENOMEM;
    uint64_t s = seed ^ 0x8badf00dull;
    double t = 0;
    for (long i = 0;; i++) {
        if (r->n_requests >= 0 ? i >= r->n_requests : t > r->duration) break;
        if (i == cap) {
            cap *= 2;
            void *p = realloc(r->arrivals, (size_t)cap * sizeof *r->arrivals);
            if (!p) return -ENOMEM;
            r->arrivals = p;
        }
        r->arrivals[i] = t;
        r->n_arrivals = i + 1;
        t += r->l->poisson ? -log(1 - slm_bench_uniform(&s)) / r->l->rate : 1 / r->l->rate;
    }
    return 0;
}

int slm_bench_load_run(struct slm_bench_load *l)
{
    struct run run = {.l = l, .n_requests = l->n_requests, .duration = l->duration}, *r = &run;
    int n_threads = l->concurrency;
    pthread_t *t = calloc((size_t)n_threads, sizeof *t);
    if (!t || (l->rate > 0 && make_arrivals(r, l->workload->seed))) {
        free(t);
        free(r->arrivals);
        snprintf(l->first_error, sizeof l->first_error, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    int started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&t[started], NULL, worker, r)) break;
    if (started < n_threads) note_error(r, "cannot start as many threads as the concurrency");
    pthread_mutex_lock(&r->mu);
    while (r->n_ready < started) pthread_cond_wait(&r->cond, &r->mu);
    int connected = !r->first_error[0];
    if (!connected) r->n_requests = 0, r->n_arrivals = 0, r->duration = 0;
    r->t0 = slm_bench_now();
    r->go = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    pthread_t pt;
    int live = l->show_progress && connected && !pthread_create(&pt, NULL, progress, r);
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    if (live) {
        __atomic_store_n(&r->stop_progress, 1, __ATOMIC_RELAXED);
        pthread_join(pt, NULL);
    }
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->mu);
    free(t);
    free(r->arrivals);
    l->recs = r->recs;
    l->n_recs = r->n_recs;
    memcpy(l->first_error, r->first_error, sizeof l->first_error);
    return connected ? 0 : -ECONNREFUSED;
}

void slm_bench_load_free(struct slm_bench_load *l)
{
    for (size_t i = 0; i < l->n_recs; i++) free(l->recs[i].token_times);
    free(l->recs);
    l->recs = NULL;
    l->n_recs = 0;
}
