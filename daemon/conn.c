/*
 * daemon/conn.c - one connection of slmd serve: the handshake, the client's submission ring
 * (hostile input: every SQE is copied out, then requests.c validates and decodes it), its
 * requests in the engine, and the completions pushed back (by the engine thread's event
 * callback, or its direct answers to the submissions it takes), queued privately when the
 * client's completion ring is full.
 *
 * tests/test_daemon.c drives it black box through libslm and a raw hostile client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ipc/arena.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"
#include "common/log.h"
#include "daemon/conn.h"
#include "daemon/requests.h"
#include "daemon/server.h"

#define MAX_PENDING 65536   /* completions held for a client whose ring is full; then it is dropped */
#define POLL_BUDGET_BYTES (256u << 10)   /* payload decoded per client per turn (slm_conn_poll) */

struct creq {
    struct slm_conn *c;
    uint64_t user_data;
    int64_t id;            /* the engine's, once added */
    int n_prompt;          /* its prompt tokens, counted against client-max-prompt-tokens */
    uint64_t bytes;        /* the arena bytes it was sent in, against client-max-arena-bytes */
    int cancelling;        /* slm_conn_cancel_all asked the engine to cancel it */
    struct creq *prev, *next;
};

struct slm_conn {
    int fd;
    uint64_t id;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char name[SLM_NAME_LEN + 1];
    double since;          /* accepted at (CLOCK_MONOTONIC seconds): the handshake's deadline */
    int ready;             /* handshake done */
    int refused;           /* refused at accept: the WELCOME refusal is sent, its HELLO awaited */
    struct slm_shm shm;
    struct slm_ring sq, cq;
    pthread_mutex_t lock;  /* cq, pending, reqs, refs, closed */
    int refs;              /* 1 for the connection + 1 per request in the engine */
    int closed;
    int overflowed;        /* it stopped draining its ring: disconnected */
    int corrupt;           /* it wrote a bad seq into its completion ring: disconnected */
    int wake_pending;      /* on the server's wake list until the engine's step ends */
    struct creq *reqs;
    int n_reqs;            /* on reqs: against client-max-requests */
    long long n_prompt_tokens;   /* their prompt tokens: against client-max-prompt-tokens */
    uint64_t n_arena_bytes;      /* the arena bytes they were sent in: against client-max-arena-bytes */
    struct slm_cqe *pending;
    int n_pending, cap_pending;
};

int slm_conn_fd(const struct slm_conn *c)
{
    return c->fd;
}

struct slm_conn *slm_conn_new(struct slm_server *s, int fd)
{
    struct slm_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->since = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    c->fd = fd;
    c->id = ++s->next_client_id;
    c->refs = 1;
    c->shm.fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    if (slm_peer_cred(fd, &c->pid, &c->uid, &c->gid)) c->uid = (uid_t)-1, c->gid = (gid_t)-1;
    return c;
}

static void conn_unref(struct slm_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left) return;
    slm_shm_unmap(&c->shm);
    free(c->pending);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int slm_conn_allowed(const struct slm_server *s, const struct slm_conn *c)
{
    if (!s->cfg.n_allow_uids && !s->cfg.n_allow_gids) return 1;
    for (int i = 0; i < s->cfg.n_allow_uids; i++)
        if (s->cfg.allow_uids[i] == c->uid) return 1;
    for (int i = 0; i < s->cfg.n_allow_gids; i++)
        if (s->cfg.allow_gids[i] == c->gid) return 1;
    return 0;
}

static int handshake(struct slm_server *s, struct slm_conn *c)
{
    char err[SLM_ERR_LEN];
    struct slm_hello h;
    int rc = slm_hello_recv(c->fd, &h, err);
    if (rc == -EAGAIN) return 0;
    if (rc == -EPROTO) {
        slm_welcome_refuse(c->fd, -EPROTO, err);
        return -1;
    }
    if (rc) {   /* a hang-up before any HELLO is routine (a probe): debug */
        slm_log(rc == -EPIPE ? SLM_LOG_DEBUG : SLM_LOG_INFO, "client %llu: bad HELLO: %s", (unsigned long long)c->id,
                err);
        return -1;
    }
    memcpy(c->name, h.name, SLM_NAME_LEN);
    if (!slm_conn_allowed(s, c)) {
        slm_welcome_refuse(c->fd, -EACCES, "this user is not in slmd's allow-list (allow-uids, allow-gids)");
        slm_log(SLM_LOG_NOTICE, "refused uid %u (pid %d): not in the allow-list", (unsigned)c->uid, (int)c->pid);
        return -1;
    }
    if (s->draining) {
        slm_welcome_refuse(c->fd, -ESHUTDOWN, "slmd is stopping");
        return -1;
    }
    if (s->n_ready >= s->cfg.max_clients) {   /* accepted while below, others finished first */
        char why[SLM_REASON_LEN];
        snprintf(why, sizeof why, "slmd has %d clients connected, its max-clients", s->n_ready);
        slm_welcome_refuse(c->fd, -EUSERS, why);
        return -1;
    }
    if (slm_shm_create(&c->shm, h.sq_entries, h.cq_entries, h.arena_bytes, err)) {
        slm_log(SLM_LOG_WARNING, "client %llu: %s", (unsigned long long)c->id, err);
        return -1;
    }
    slm_shm_rings(&c->shm, &c->sq, &c->cq);
    /* The engine thread sleeps with NEED_WAKEUP set in every header (server.h, bell_armed):
     * set it here too, before the client can see its memory, or its first submission would
     * ring no doorbell. Its ring is empty: nothing to recheck. */
    if (s->bell_armed) slm_daemon_prepare_sleep(&c->shm, &c->sq);
    if (slm_welcome_send(c->fd, c->id, c->shm.bytes, c->shm.fd, err)) {
        slm_log(SLM_LOG_WARNING, "client %llu: %s", (unsigned long long)c->id, err);
        return -1;
    }
    c->ready = 1;
    s->n_ready++;
    slm_log(SLM_LOG_INFO, "client %llu '%s' connected (uid %u, pid %d)", (unsigned long long)c->id, c->name,
            (unsigned)c->uid, (int)c->pid);
    return 0;
}

int slm_conn_on_socket(struct slm_server *s, struct slm_conn *c, uint32_t events)
{
    (void)events;   /* readable and hang-up both mean: read the socket */
    int gone = 0, was_ready = c->ready;
    if (c->refused) gone = 1;   /* its HELLO (or its hang-up): read below, then closed */
    else if (!c->ready) gone = handshake(s, c) < 0;
    else gone = slm_doorbell_drain(c->fd) < 0;   /* the engine thread takes the submissions */
    if (gone) {
        slm_conn_close(s, c);
        return -1;
    }
    return c->ready && !was_ready;
}

/* ---- completions */

/* The next free slot of c's completion ring: 0, -EAGAIN when full, or -EBADMSG when the
 * client wrote a sequence number there that no state of the ring has (docs/protocol.md, "Bad
 * input"): then it is disconnected (its hang-up follows: requests cancelled, memory unmapped)
 * and nothing more is published. -EPIPE once c is closed (its fd number may be another's by
 * then). Lock held. */
static int cq_get_locked(struct slm_conn *c, void **slot)
{
    if (c->closed) return -EPIPE;
    if (c->corrupt) return -EBADMSG;
    int rc = slm_ring_get_checked(&c->cq, slot);
    if (rc != -EBADMSG) return rc;
    slm_log(SLM_LOG_WARNING, "client %llu '%s': a corrupt sequence number in its completion ring; disconnecting it",
            (unsigned long long)c->id, c->name);
    shutdown(c->fd, SHUT_RDWR);
    c->corrupt = 1;
    return rc;
}

/* Pushes cqes[0..n) as one chain, or queues them behind what is already pending. Lock held.
 * Returns how many it published; the caller wakes the client (slm_wake_client) if any. */
static int push_locked(struct slm_conn *c, const struct slm_cqe *cqes, int n)
{
    int published = 0;
    if (c->closed || c->corrupt) return 0;
    for (int i = 0; i < n; i++) {
        void *slot;
        if (!c->n_pending && cq_get_locked(c, &slot) == 0) {
            memcpy((char *)slot + 4, (const char *)&cqes[i] + 4, sizeof cqes[i] - 4);
            slm_ring_publish(&c->cq, slot);
            published++;
            continue;
        }
        if (c->n_pending == c->cap_pending) {
            int cap = c->cap_pending ? 2 * c->cap_pending : 64;
            struct slm_cqe *p = cap <= MAX_PENDING ? realloc(c->pending, (size_t)cap * sizeof *p) : NULL;
            if (!p) {
                /* It does not read its completions: hang up; the I/O thread then sees the
                 * hang-up and closes it (its requests cancelled, its blocks freed). */
                if (!c->overflowed) {
                    slm_log(SLM_LOG_WARNING, "client %llu '%s': %d completions unread; disconnecting it",
                            (unsigned long long)c->id, c->name, c->n_pending);
                    shutdown(c->fd, SHUT_RDWR);
                }
                c->overflowed = 1;
                return published;
            }
            c->pending = p;
            c->cap_pending = cap;
        }
        c->pending[c->n_pending++] = cqes[i];
    }
    return published;
}

/* Publishes what fits of the privately queued completions. Lock held. Returns how many. */
static int flush_pending_locked(struct slm_conn *c)
{
    int k = 0;
    void *slot;
    while (k < c->n_pending && cq_get_locked(c, &slot) == 0) {
        memcpy((char *)slot + 4, (const char *)&c->pending[k] + 4, sizeof c->pending[k] - 4);
        slm_ring_publish(&c->cq, slot);
        k++;
    }
    if (k) {
        memmove(c->pending, c->pending + k, (size_t)(c->n_pending - k) * sizeof *c->pending);
        c->n_pending -= k;
    }
    return k;
}

/* Direct answers to a submission (DATA, ERROR): published and woken at once. */
static void push(struct slm_conn *c, const struct slm_cqe *cqes, int n)
{
    pthread_mutex_lock(&c->lock);
    int k = flush_pending_locked(c);
    k += push_locked(c, cqes, n);
    if (k) slm_wake_client(&c->shm);
    pthread_mutex_unlock(&c->lock);
}

/* The engine's events: c is woken once after the step that produced them
 * (slm_conn_wake_deferred), not once per event: while a woken client is still getting up,
 * its client_waiting still reads 1 and every further event would cost another FUTEX_WAKE.
 * Lock held; the list holds a reference. */
static void defer_wake_locked(struct slm_server *s, struct slm_conn *c)
{
    if (c->wake_pending) return;
    if (s->n_wake == s->cap_wake) {
        int cap = s->cap_wake ? 2 * s->cap_wake : 16;
        struct slm_conn **p = realloc(s->wake_list, (size_t)cap * sizeof *p);
        if (!p) {
            slm_wake_client(&c->shm);
            return;
        }
        s->wake_list = p;
        s->cap_wake = cap;
    }
    c->wake_pending = 1;
    c->refs++;
    s->wake_list[s->n_wake++] = c;
}

int slm_conn_wake_deferred(struct slm_server *s)
{
    int woke = 0;
    for (int i = 0; i < s->n_wake; i++) {
        struct slm_conn *c = s->wake_list[i];
        pthread_mutex_lock(&c->lock);
        c->wake_pending = 0;
        if (!c->closed) woke += slm_wake_client(&c->shm);
        pthread_mutex_unlock(&c->lock);
        conn_unref(c);
    }
    s->n_wake = 0;
    return woke;
}

/* An answer's bytes as a chain of DATA completions. */
static void push_data(struct slm_conn *c, uint64_t user_data, const void *data, size_t len)
{
    size_t n = len ? (len + SLM_CQE_DATA_BYTES - 1) / SLM_CQE_DATA_BYTES : 1;
    struct slm_cqe *q = calloc(n, sizeof *q);
    if (!q) return;
    for (size_t i = 0; i < n; i++) {
        size_t off = i * SLM_CQE_DATA_BYTES, k = len - off < SLM_CQE_DATA_BYTES ? len - off : SLM_CQE_DATA_BYTES;
        q[i] = (struct slm_cqe){.kind = SLM_CQE_DATA, .flags = i + 1 < n ? SLM_CQE_MORE : 0,
                                .user_data = user_data, .token = -1, .len = (uint8_t)k};
        if (len) memcpy(q[i].data, (const char *)data + off, k);
    }
    push(c, q, (int)n);
    free(q);
}

static void push_error(struct slm_conn *c, uint64_t user_data, int status, const char *reason)
{
    struct slm_cqe q = {.kind = SLM_CQE_ERROR, .user_data = user_data, .token = -1, .status = status};
    size_t n = strlen(reason);
    q.len = (uint8_t)(n < SLM_CQE_DATA_BYTES ? n : SLM_CQE_DATA_BYTES);
    memcpy(q.data, reason, q.len);
    push(c, &q, 1);
}

/* Takes r off c's list of requests. Lock held. */
static void unlink_locked(struct slm_conn *c, struct creq *r)
{
    if (r->prev) r->prev->next = r->next;
    else c->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    c->n_reqs--;
    c->n_prompt_tokens -= r->n_prompt;
    c->n_arena_bytes -= r->bytes;
}

void slm_conn_on_event(void *ctx, const struct slm_engine_event *ev)
{
    struct slm_server *s = ctx;
    struct creq *r = ev->user;
    struct slm_conn *c = r->c;
    struct slm_cqe q[24];
    int n = 0;
    /* Prompt logprobs: PROMPT_LP completions of up to 10 (id, logprob) pairs, each on its own
     * (not a chain); n_prompt says the position of the first. */
    for (int i = 0; i < ev->n_prompt_lp; i += n) {
        n = ev->n_prompt_lp - i < SLM_CQE_DATA_BYTES / 8 ? ev->n_prompt_lp - i : SLM_CQE_DATA_BYTES / 8;
        struct slm_cqe t = {.kind = SLM_CQE_PROMPT_LP, .user_data = r->user_data, .token = -1,
                            .n_prompt = (uint32_t)(ev->prompt_lp_first + i), .len = (uint8_t)(8 * n)};
        for (int j = 0; j < n; j++) {
            memcpy(t.data + 8 * j, &ev->prompt_lp[i + j].id, 4);
            memcpy(t.data + 8 * j + 4, &ev->prompt_lp[i + j].logprob, 4);
        }
        push(c, &t, 1);
    }
    n = 0;
    if (ev->n_prefilled > 0)
        q[n++] = (struct slm_cqe){.kind = SLM_CQE_PROGRESS, .user_data = r->user_data, .token = -1,
                                  .n_prompt = (uint32_t)ev->n_prompt, .n_cached = (uint32_t)ev->n_prefilled};
    if (ev->token >= 0) {
        /* Only the engine thread writes it: no locked add per token. */
        __atomic_store_n(&s->n_tokens_generated, __atomic_load_n(&s->n_tokens_generated, __ATOMIC_RELAXED) + 1,
                         __ATOMIC_RELAXED);
        q[n++] = (struct slm_cqe){.kind = SLM_CQE_TOKEN, .user_data = r->user_data, .token = ev->token,
                                  .logprob = ev->logprob};
        size_t off = 0;
        do {
            size_t k = (size_t)ev->text_len - off < SLM_CQE_DATA_BYTES ? (size_t)ev->text_len - off
                                                                       : SLM_CQE_DATA_BYTES;
            if (off) q[n++] = (struct slm_cqe){.kind = SLM_CQE_TEXT, .user_data = r->user_data, .token = -1};
            memcpy(q[n - 1].data, ev->text + off, k);
            q[n - 1].len = (uint8_t)k;
            off += k;
        } while (off < (size_t)ev->text_len && n < 12);
        for (int i = 0; i < ev->n_top; i += SLM_CQE_DATA_BYTES / 8) {
            struct slm_cqe t = {.kind = SLM_CQE_TOP, .user_data = r->user_data, .token = -1};
            int m = ev->n_top - i < SLM_CQE_DATA_BYTES / 8 ? ev->n_top - i : SLM_CQE_DATA_BYTES / 8;
            for (int j = 0; j < m; j++) {
                memcpy(t.data + 8 * j, &ev->top[i + j].id, 4);
                memcpy(t.data + 8 * j + 4, &ev->top[i + j].logprob, 4);
            }
            t.len = (uint8_t)(8 * m);
            q[n++] = t;
        }
    }
    if (ev->finish) {
        __atomic_add_fetch(&s->n_tokens_prompt, (uint64_t)ev->n_prompt, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->n_tokens_cached, (uint64_t)ev->n_cached, __ATOMIC_RELAXED);
        q[n++] = (struct slm_cqe){.kind = SLM_CQE_DONE, .user_data = r->user_data, .token = -1,
                                  .finish = (uint8_t)ev->finish, .n_prompt = (uint32_t)ev->n_prompt,
                                  .n_cached = (uint32_t)ev->n_cached, .n_generated = (uint32_t)ev->n_generated};
    }
    for (int i = 0; i + 1 < n; i++) q[i].flags = SLM_CQE_MORE;   /* one chain per event */
    pthread_mutex_lock(&c->lock);
    int k = flush_pending_locked(c);
    k += push_locked(c, q, n);
    if (k) defer_wake_locked(s, c);
    if (ev->finish) unlink_locked(c, r);
    pthread_mutex_unlock(&c->lock);
    if (ev->finish) {
        free(r);
        conn_unref(c);
    }
}

/* ---- submissions */

/* Adds rq to the engine as c's request user_data; the request holds a reference to c until
 * its finish event. 0, or the engine's -errno with err. */
static int add_request(struct slm_server *s, struct slm_conn *c, uint64_t user_data, struct slm_request *rq,
                       uint64_t bytes, char *err)
{
    struct creq *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->c = c;
    r->user_data = user_data;
    r->id = -1;
    r->n_prompt = rq->n_prompt;
    r->bytes = bytes;
    rq->user = r;
    pthread_mutex_lock(&c->lock);
    c->refs++;
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    c->n_reqs++;
    c->n_prompt_tokens += r->n_prompt;
    c->n_arena_bytes += r->bytes;
    pthread_mutex_unlock(&c->lock);
    int64_t id = s->ops->add(s, rq, err);   /* copies the prompt and the stops */
    if (id < 0) {
        pthread_mutex_lock(&c->lock);
        unlink_locked(c, r);
        pthread_mutex_unlock(&c->lock);
        free(r);
        conn_unref(c);
        return (int)id;
    }
    __atomic_store_n(&r->id, id, __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->n_requests_total, 1, __ATOMIC_RELAXED);
    slm_server_kick(s);
    return 0;
}

/* Cancels c's request whose user_data is target, if it is still running. */
static void cancel_request(struct slm_server *s, struct slm_conn *c, uint64_t target)
{
    int64_t id = -1;
    pthread_mutex_lock(&c->lock);
    for (struct creq *r = c->reqs; r; r = r->next)
        if (r->user_data == target) id = r->id;
    pthread_mutex_unlock(&c->lock);
    if (id >= 0) s->ops->cancel(s, id);   /* outside the client's lock */
}

/* The arena bytes an SQE sends: its payload, its stop strings and its stop ids (as their
 * ranges say; a request is decoded only when they lie inside the arena). */
static uint64_t arena_bytes_of(const struct slm_sqe *q)
{
    return (uint64_t)q->payload_len + q->stop_len + 4ull * q->n_stop_ids;
}

/* The per-client limits (docs/configuration.md): 0 when c may add a request of n_prompt
 * tokens sent in `bytes` arena bytes (n_prompt < 0: not known yet, only the count and the
 * bytes are checked), else -EAGAIN, or -E2BIG for a request larger than the whole allowance,
 * with err naming the limit. */
static int over_limit(const struct slm_server *s, struct slm_conn *c, int n_prompt, uint64_t bytes, char *err)
{
    pthread_mutex_lock(&c->lock);
    int n_reqs = c->n_reqs;
    long long tokens = c->n_prompt_tokens;
    uint64_t held = c->n_arena_bytes;
    pthread_mutex_unlock(&c->lock);
    const uint64_t max_bytes = s->cfg.client_max_arena_bytes;
    if (n_reqs >= s->cfg.client_max_requests) {
        slm_err_set(err, "client-max-requests: %d requests of this client are unfinished", n_reqs);
        return -EAGAIN;
    }
    if (bytes > max_bytes) {
        slm_err_set(err, "client-max-arena-bytes: the request's %llu arena bytes are above the limit, %llu",
                    (unsigned long long)bytes, (unsigned long long)max_bytes);
        return -E2BIG;
    }
    if (held + bytes > max_bytes) {
        slm_err_set(err, "client-max-arena-bytes: %llu arena bytes of this client's requests are unfinished",
                    (unsigned long long)held);
        return -EAGAIN;
    }
    if (n_prompt > s->cfg.client_max_prompt_tokens) {
        slm_err_set(err, "client-max-prompt-tokens: %d prompt tokens are above the limit, %d", n_prompt,
                    s->cfg.client_max_prompt_tokens);
        return -E2BIG;
    }
    if (n_prompt >= 0 && tokens + n_prompt > s->cfg.client_max_prompt_tokens) {
        slm_err_set(err, "client-max-prompt-tokens: %lld prompt tokens of this client are queued", tokens);
        return -EAGAIN;
    }
    return 0;
}

static int is_generation(uint16_t op)
{
    return op == SLM_OP_COMPLETE || op == SLM_OP_COMPLETE_IDS || op == SLM_OP_CHAT;
}

/* Handles one copied, hostile SQE: requests.c decodes it, this carries it out. A request over
 * the client's count limit is refused before its prompt is decoded (no tokenizing for it). */
static void handle(struct slm_server *s, struct slm_conn *c, const struct slm_sqe *q)
{
    struct slm_req_action a;
    char err[SLM_ERR_LEN];
    const uint64_t bytes = arena_bytes_of(q);
    int rc = !s->draining && is_generation(q->op) ? over_limit(s, c, -1, bytes, err) : 0;
    if (rc) {
        push_error(c, q->user_data, rc, err);
        return;
    }
    slm_req_decode(s, &c->shm, (uint32_t)c->uid, q, &a);
    if (a.kind == SLM_REQ_ADD && (a.status = over_limit(s, c, a.rq.n_prompt, bytes, a.err))) a.kind = SLM_REQ_NONE;
    switch (a.kind) {
    case SLM_REQ_DATA: push_data(c, q->user_data, a.data, a.len); break;
    case SLM_REQ_ADD: a.status = add_request(s, c, q->user_data, &a.rq, bytes, a.err); break;
    case SLM_REQ_CANCEL: cancel_request(s, c, a.cancel); break;
    case SLM_REQ_NONE: break;
    }
    if (a.status) push_error(c, q->user_data, a.status, a.err);
    slm_req_action_free(&a);
}

/* 1 once c is being disconnected (it stopped reading, or scribbled on its completion ring):
 * what it still submits is not worth decoding. */
static int disconnecting(struct slm_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int gone = c->overflowed || c->corrupt;
    pthread_mutex_unlock(&c->lock);
    return gone;
}

/* What decoding q may cost, in payload bytes (an SQE's own 128 counted too): its text or ids
 * and its stop strings and ids, as their bounds cap them. */
static uint64_t decode_cost(const struct slm_sqe *q)
{
    uint64_t payload = q->op == SLM_OP_COMPLETE_IDS || q->op == SLM_OP_DETOKENIZE ? 4ull * q->n_items : q->payload_len;
    uint64_t stops = (uint64_t)q->stop_len + 4ull * q->n_stop_ids;
    if (payload > SLM_REQ_MAX_PAYLOAD) payload = SLM_REQ_MAX_PAYLOAD;
    if (stops > SLM_REQ_MAX_PAYLOAD) stops = SLM_REQ_MAX_PAYLOAD;
    return sizeof *q + payload + stops;
}

int slm_conn_poll(struct slm_server *s, struct slm_conn *c)
{
    if (!c->ready || c->closed) return 0;
    int n = 0;
    uint64_t spent = 0;
    struct slm_sqe q;
    /* At most one lap, and at most POLL_BUDGET_BYTES of payload to decode (tokenizing is the
     * costly part: ~40 ms for 256 KiB), per turn: a client that keeps its ring full of large
     * requests cannot hold the loop, and the other clients get their turn in between; what
     * is left waits in its ring for the next turn. While a reload waits to rebuild the engine,
     * submissions wait in the ring. */
    while (!s->reload_pending && n < (int)c->sq.entries && spent < POLL_BUDGET_BYTES && !disconnecting(c) &&
           slm_ring_take(&c->sq, &q) == 0) {
        spent += decode_cost(&q);
        handle(s, c, &q);
        n++;
    }
    if (n) slm_shm_store_sq_consumed(&c->shm, c->sq.pos);
    pthread_mutex_lock(&c->lock);
    if (flush_pending_locked(c)) slm_wake_client(&c->shm);
    pthread_mutex_unlock(&c->lock);
    return n;
}

int slm_conn_set_flags(struct slm_conn *c, uint32_t flags)
{
    if (!c->ready) return 0;
    if (flags & SLM_SHM_CLOSING) {   /* NEED_WAKEUP stays as it is: the engine thread may sleep */
        slm_shm_set_closing(&c->shm, 1);
        return 0;
    }
    if (flags & SLM_SHM_NEED_WAKEUP) return !slm_daemon_prepare_sleep(&c->shm, &c->sq);
    slm_daemon_awake(&c->shm);
    return 0;
}

int slm_conn_has_pending(struct slm_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int n = c->n_pending;
    pthread_mutex_unlock(&c->lock);
    return n > 0;
}

void slm_conn_cancel_all(struct slm_server *s, struct slm_conn *c)
{
    /* Rounds of up to 256 ids, cancelled outside the client's lock (lock order, server.h). A
     * request already cancelled stays on the list until the engine's next step reports its
     * finish, and cancelling it again gives -ENOENT: the mark skips it, so each round takes
     * only requests not yet asked, and the loop ends when none is left, however many. */
    int64_t ids[256];
    for (;;) {
        int n = 0;
        pthread_mutex_lock(&c->lock);
        for (struct creq *r = c->reqs; r && n < 256; r = r->next) {
            int64_t id = __atomic_load_n(&r->id, __ATOMIC_ACQUIRE);
            if (r->cancelling || id < 0) continue;
            r->cancelling = 1;
            ids[n++] = id;
        }
        pthread_mutex_unlock(&c->lock);
        for (int i = 0; i < n; i++) s->ops->cancel(s, ids[i]);
        if (n < 256) break;
    }
    slm_server_kick(s);
}

void slm_conn_refuse(struct slm_conn *c, int status, const char *reason)
{
    slm_welcome_refuse(c->fd, status, reason);
    c->refused = 1;
}

int slm_conn_state(const struct slm_conn *c)
{
    return c->ready ? SLM_CONN_READY : c->refused ? SLM_CONN_REFUSED : SLM_CONN_HANDSHAKE;
}

uid_t slm_conn_uid(const struct slm_conn *c)
{
    return c->uid;
}

double slm_conn_since(const struct slm_conn *c)
{
    return c->since;
}

void slm_conn_close(struct slm_server *s, struct slm_conn *c)
{
    /* Read what the client sent before closing: closing a Unix socket with unread packets
     * resets the peer, which then cannot read the WELCOME refusal it was sent. */
    if (c->fd >= 0 && !c->ready) {
        char buf[256];
        for (int i = 0; i < 16 && recv(c->fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++) {}
    }
    if (c->ready) s->n_ready--;
    slm_conn_cancel_all(s, c);
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    pthread_mutex_unlock(&c->lock);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    /* Only a client that was connected is news; connections closed in their handshake are
     * counted by the caller (serve.c) rather than logged one by one. */
    slm_log(c->ready ? SLM_LOG_INFO : SLM_LOG_DEBUG, "client %llu '%s' gone", (unsigned long long)c->id, c->name);
    conn_unref(c);
}
