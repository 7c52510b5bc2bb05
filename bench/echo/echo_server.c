/* bench/echo/echo_server.c - see echo_server.h. */
#define _GNU_SOURCE
#include "bench/echo/echo_server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/server.h"

struct echo_bench echo_bench;

struct echo_req {
    int64_t id;
    void *user;
    int n_prompt, max_tokens, sent, cancelled;
    int64_t next_due;         /* paced: when token `sent` is due */
    struct echo_req *next;
};

struct echo {
    pthread_mutex_t lock;     /* reqs, next_id; held while events are reported, as the engine does */
    struct echo_req *reqs;
    int64_t next_id;
    int n_unfinished;         /* atomic: read without the lock */
    uint64_t produced;        /* tokens of the current request handed out; engine thread */
};

static int64_t echo_add(struct slm_server *s, const struct slm_request *r, char *err)
{
    struct echo *e = s->ops_ctx;
    struct echo_req *q = calloc(1, sizeof *q);
    if (!q) {
        slm_err_set(err, "out of memory");
        return -ENOMEM;
    }
    q->user = r->user;
    q->n_prompt = r->n_prompt;
    q->max_tokens = r->max_tokens;
    pthread_mutex_lock(&e->lock);
    q->id = e->next_id++;
    struct echo_req **tail = &e->reqs;
    while (*tail) tail = &(*tail)->next;
    *tail = q;
    __atomic_add_fetch(&e->n_unfinished, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&e->lock);
    return q->id;
}

static int echo_cancel(struct slm_server *s, int64_t id)
{
    struct echo *e = s->ops_ctx;
    int rc = -ENOENT;
    pthread_mutex_lock(&e->lock);
    for (struct echo_req *q = e->reqs; q; q = q->next)
        if (q->id == id && !q->cancelled) q->cancelled = 1, rc = 0;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static int echo_n_unfinished(struct slm_server *s)
{
    struct echo *e = s->ops_ctx;
    return __atomic_load_n(&e->n_unfinished, __ATOMIC_ACQUIRE);
}

static void echo_counts(struct slm_server *s, struct slm_engine_counts *out)
{
    *out = (struct slm_engine_counts){.unfinished = echo_n_unfinished(s)};
}

/* Tokens the consumer has room for. */
static int credit(const struct echo *e)
{
    uint64_t in_flight = e->produced - __atomic_load_n(&echo_bench.consumed, __ATOMIC_ACQUIRE);
    return in_flight >= ECHO_CREDIT ? 0 : (int)(ECHO_CREDIT - in_flight);
}

/* One step: up to 256 tokens of each request (fewer when paced or out of credit). */
static int echo_step(struct slm_server *s, slm_engine_event_fn fn, void *ctx)
{
    struct echo *e = s->ops_ctx;
    if (!echo_bench.engine_tid) echo_bench.engine_tid = gettid();
    if (!echo_n_unfinished(s)) return 0;   /* the server's engine thread spins and polls when idle */
    pthread_mutex_lock(&e->lock);
    struct echo_req **link = &e->reqs;
    while (*link) {
        struct echo_req *q = *link;
        struct slm_engine_event ev = {.id = q->id, .user = q->user, .token = -1, .n_prompt = q->n_prompt,
                               .text = ECHO_TEXT, .text_len = (int)sizeof ECHO_TEXT - 1};
        int n = q->max_tokens - q->sent;
        if (n > 256) n = 256;
        if (echo_bench.pace_ns) {
            int64_t t = slm_mono_ns();
            if (!q->next_due) q->next_due = t;
            n = n && t >= q->next_due;
        }
        int room = credit(e);
        if (n > room) n = room;
        for (int i = 0; i < n && !q->cancelled; i++) {
            ev.token = q->sent;
            ev.n_generated = ++q->sent;
            ev.finish = q->sent == q->max_tokens ? SLM_ENGINE_FINISH_LENGTH : SLM_ENGINE_FINISH_NONE;
            if (echo_bench.pace_ns) {
                int64_t t = slm_mono_ns();
                if (ev.token < echo_bench.n_stamp) echo_bench.stamp[ev.token] = t;
                /* Late (this thread was descheduled): no catch-up burst, which would only
                 * measure the queue it builds. */
                q->next_due = q->next_due + echo_bench.pace_ns > t ? q->next_due + echo_bench.pace_ns
                                                                 : t + echo_bench.pace_ns;
            }
            e->produced++;
            fn(ctx, &ev);
        }
        if (q->cancelled && q->sent < q->max_tokens) {
            ev.token = -1;
            ev.finish = SLM_ENGINE_FINISH_CANCELLED;
            fn(ctx, &ev);
        } else if (q->sent < q->max_tokens) {
            link = &q->next;
            continue;
        }
        *link = q->next;   /* finished: its finish event is out */
        free(q);
        __atomic_sub_fetch(&e->n_unfinished, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&e->lock);
    return echo_n_unfinished(s);
}

static const struct slm_server_ops echo_ops = {
    .add = echo_add, .cancel = echo_cancel, .step = echo_step,
    .n_unfinished = echo_n_unfinished, .counts = echo_counts,
};

static struct slm_server server;
static struct echo echo = {.lock = PTHREAD_MUTEX_INITIALIZER};
static pthread_t io_thread;

static void *io_main(void *arg)
{
    (void)arg;
    char err[SLM_ERR_LEN] = "";
    pthread_setname_np(pthread_self(), "slmd-io");
    echo_bench.io_tid = gettid();
    if (slm_server_run(&server, err)) fprintf(stderr, "echo server: %s\n", err);
    return NULL;
}

int echo_server_start(const char *socket_path, int spin_us, const char *log_level)
{
    slm_config_defaults(&server.cfg);   /* sets the log level too */
    slm_log_set_level(log_level);
    snprintf(server.cfg.socket, sizeof server.cfg.socket, "%s", socket_path);
    server.cfg.spin_us = spin_us;
    snprintf(server.svc.model_path, sizeof server.svc.model_path, "echo");
    server.ops = &echo_ops;
    server.ops_ctx = &echo;
    server.eo.n_ctx = 1 << 30;   /* max_tokens 0 means this many */
    return -pthread_create(&io_thread, NULL, io_main, NULL);
}

void echo_server_reset(void)
{
    echo.produced = 0;
    __atomic_store_n(&echo_bench.consumed, 0, __ATOMIC_RELEASE);
}

void echo_server_stop(void)
{
    kill(getpid(), SIGTERM);
    pthread_join(io_thread, NULL);
}
