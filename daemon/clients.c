/*
 * daemon/clients.c - one connected client of slmd serve: the handshake, its submission ring
 * (hostile input: every SQE is copied out and validated), its requests in the engine, and
 * the completions pushed back (by the engine thread's event callback, or the I/O thread's
 * answers), queued privately when the client's completion ring is full.
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

#include "engine/chat.h"
#include "engine/tokenizer.h"
#include "ipc/arena.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"
#include "log.h"
#include "server.h"

#define MAX_PAYLOAD (16u << 20)
#define MAX_PENDING 65536   /* completions held for a client whose ring is full; then it is dropped */
#define MAX_STRINGS 1024    /* chat messages or stop strings in one request */

struct creq {
    struct client *c;
    uint64_t user_data;
    int64_t id;            /* the engine's, once added */
    struct creq *prev, *next;
};

struct client {
    int fd;
    uint64_t id;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char name[SLM_NAME_LEN + 1];
    int ready;             /* handshake done */
    struct slm_shm shm;
    struct slm_ring sq, cq;
    pthread_mutex_t lock;  /* cq, pending, reqs, refs, closed */
    int refs;              /* 1 for the connection + 1 per request in the engine */
    int closed;
    int overflowed;        /* it stopped draining its ring: disconnected */
    int wake_pending;      /* on the server's wake list until the engine's step ends */
    struct creq *reqs;
    struct slm_cqe *pending;
    int n_pending, cap_pending;
};

int slm_client_fd(const struct client *c)
{
    return c->fd;
}

struct client *slm_client_new(struct slm_server *s, int fd)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->id = ++s->next_client_id;
    c->refs = 1;
    c->shm.fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    if (slm_peer_cred(fd, &c->pid, &c->uid, &c->gid)) c->uid = (uid_t)-1, c->gid = (gid_t)-1;
    return c;
}

static void client_unref(struct client *c)
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

static int allowed(const struct slm_server *s, const struct client *c)
{
    if (!s->cfg.n_allow_uids && !s->cfg.n_allow_gids) return 1;
    for (int i = 0; i < s->cfg.n_allow_uids; i++)
        if (s->cfg.allow_uids[i] == c->uid) return 1;
    for (int i = 0; i < s->cfg.n_allow_gids; i++)
        if (s->cfg.allow_gids[i] == c->gid) return 1;
    return 0;
}

static int handshake(struct slm_server *s, struct client *c)
{
    char err[SLM_ERR_LEN];
    struct slm_hello h;
    int rc = slm_hello_recv(c->fd, &h, err);
    if (rc == -EAGAIN) return 0;
    if (rc == -EPROTO) {
        slm_welcome_refuse(c->fd, -EPROTO, err);
        return -1;
    }
    if (rc) {
        slm_log(SLM_LOG_INFO, "client %llu: bad HELLO: %s", (unsigned long long)c->id, err);
        return -1;
    }
    memcpy(c->name, h.name, SLM_NAME_LEN);
    if (!allowed(s, c)) {
        slm_welcome_refuse(c->fd, -EACCES, "this user is not in slmd's allow-list (allow-uids, allow-gids)");
        slm_log(SLM_LOG_NOTICE, "refused uid %u (pid %d): not in the allow-list", (unsigned)c->uid, (int)c->pid);
        return -1;
    }
    if (s->draining) {
        slm_welcome_refuse(c->fd, -ESHUTDOWN, "slmd is stopping");
        return -1;
    }
    if (slm_shm_create(&c->shm, h.sq_entries, h.cq_entries, h.arena_bytes, err) ||
        slm_welcome_send(c->fd, c->id, c->shm.bytes, c->shm.fd, err)) {
        slm_log(SLM_LOG_WARNING, "client %llu: %s", (unsigned long long)c->id, err);
        return -1;
    }
    slm_shm_rings(&c->shm, &c->sq, &c->cq);
    c->ready = 1;
    slm_log(SLM_LOG_INFO, "client %llu '%s' connected (uid %u, pid %d)", (unsigned long long)c->id, c->name,
            (unsigned)c->uid, (int)c->pid);
    return 0;
}

int slm_client_on_socket(struct slm_server *s, struct client *c, uint32_t events)
{
    (void)events;   /* readable and hang-up both mean: read the socket */
    int gone = 0;
    if (!c->ready) gone = handshake(s, c) < 0;
    else gone = slm_doorbell_drain(c->fd) < 0;
    if (!gone && c->ready) slm_client_poll(s, c);
    if (gone) {
        slm_client_close(s, c);
        return -1;
    }
    return 0;
}

/* ---- completions */

/* Pushes cqes[0..n) as one chain, or queues them behind what is already pending. Lock held.
 * Returns how many it published; the caller wakes the client (slm_wake_client) if any. */
static int push_locked(struct client *c, const struct slm_cqe *cqes, int n)
{
    int published = 0;
    if (c->closed) return 0;
    for (int i = 0; i < n; i++) {
        void *slot;
        if (!c->n_pending && slm_ring_get_checked(&c->cq, &slot) == 0) {
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
static int flush_pending_locked(struct client *c)
{
    int k = 0;
    void *slot;
    while (k < c->n_pending && slm_ring_get_checked(&c->cq, &slot) == 0) {
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

/* The I/O thread's answers: published and woken at once. */
static void push(struct client *c, const struct slm_cqe *cqes, int n)
{
    pthread_mutex_lock(&c->lock);
    int k = flush_pending_locked(c);
    k += push_locked(c, cqes, n);
    if (k) slm_wake_client(&c->shm);
    pthread_mutex_unlock(&c->lock);
}

/* The engine's events: c is woken once after the step that produced them
 * (slm_client_wake_deferred), not once per event: while a woken client is still getting up,
 * its client_waiting still reads 1 and every further event would cost another FUTEX_WAKE.
 * Lock held; the list holds a reference. */
static void defer_wake_locked(struct slm_server *s, struct client *c)
{
    if (c->wake_pending) return;
    if (s->n_wake == s->cap_wake) {
        int cap = s->cap_wake ? 2 * s->cap_wake : 16;
        struct client **p = realloc(s->wake_list, (size_t)cap * sizeof *p);
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

void slm_client_wake_deferred(struct slm_server *s)
{
    for (int i = 0; i < s->n_wake; i++) {
        struct client *c = s->wake_list[i];
        pthread_mutex_lock(&c->lock);
        c->wake_pending = 0;
        if (!c->closed) slm_wake_client(&c->shm);
        pthread_mutex_unlock(&c->lock);
        client_unref(c);
    }
    s->n_wake = 0;
}

/* An answer's bytes as a chain of DATA completions. */
static void push_data(struct client *c, uint64_t user_data, const void *data, size_t len)
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

static void push_error(struct client *c, uint64_t user_data, int status, const char *reason)
{
    struct slm_cqe q = {.kind = SLM_CQE_ERROR, .user_data = user_data, .token = -1, .status = status};
    size_t n = strlen(reason);
    q.len = (uint8_t)(n < SLM_CQE_DATA_BYTES ? n : SLM_CQE_DATA_BYTES);
    memcpy(q.data, reason, q.len);
    push(c, &q, 1);
}

void slm_client_on_event(void *ctx, const struct slm_event *ev)
{
    struct slm_server *s = ctx;
    struct creq *r = ev->user;
    struct client *c = r->c;
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
    if (ev->finish) {
        if (r->prev) r->prev->next = r->next;
        else c->reqs = r->next;
        if (r->next) r->next->prev = r->prev;
    }
    pthread_mutex_unlock(&c->lock);
    if (ev->finish) {
        free(r);
        client_unref(c);
    }
}

/* ---- submissions */

/* Copies [off, off + len) out of c's arena into a fresh buffer (NUL-terminated). */
static char *arena_copy(struct client *c, uint32_t off, uint32_t len)
{
    if (len > MAX_PAYLOAD || slm_arena_check_range(c->shm.arena_bytes, off, len)) return NULL;
    char *p = malloc((size_t)len + 1);
    if (!p || slm_arena_copy_out(c->shm.arena, c->shm.arena_bytes, off, len, p)) {
        free(p);
        return NULL;
    }
    p[len] = 0;
    return p;
}

/* Splits buf[0..len) into n length-prefixed strings (u32 length, bytes), each copied and
 * NUL-terminated into one allocation; out[i] points at string i. NULL and err when the
 * lengths do not add up to exactly len. The caller frees the returned block. */
static char *split_strings(const char *buf, uint32_t len, uint32_t n, const char **out, char *err)
{
    char *block = malloc((size_t)len + n + 1);
    if (!block) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    uint32_t at = 0;
    char *w = block;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k;
        if (len - at < 4) goto bad;
        memcpy(&k, buf + at, 4);
        at += 4;
        if (k > len - at || memchr(buf + at, 0, k)) goto bad;
        memcpy(w, buf + at, k);
        w[k] = 0;
        out[i] = w;
        w += k + 1;
        at += k;
    }
    if (at == len) return block;
bad:
    slm_err_set(err, "%u length-prefixed strings do not fill the %u bytes given (or one holds a NUL)", n, len);
    free(block);
    return NULL;
}

/* The prompt of a CHAT request: its messages through the model's chat template. */
static char *render_chat(const struct slm_server *s, const struct slm_sqe *q, const char *payload, char *err)
{
    if (s->chat_fmt < 0) {
        slm_err_set(err, "the model has no chat template slmd knows; send the formatted text instead");
        return NULL;
    }
    if (q->n_items < 1 || q->n_items > MAX_STRINGS) {
        slm_err_set(err, "a chat needs 1 to %d messages, got %u", MAX_STRINGS, q->n_items);
        return NULL;
    }
    const char *parts[2 * MAX_STRINGS];
    char *block = split_strings(payload, q->payload_len, 2 * q->n_items, parts, err);
    if (!block) return NULL;
    struct slm_chat_msg msgs[MAX_STRINGS];
    for (uint32_t i = 0; i < q->n_items; i++) msgs[i] = (struct slm_chat_msg){parts[2 * i], parts[2 * i + 1]};
    int gen = (q->flags & SLM_SQE_ADD_GENERATION_PROMPT) != 0;
    int n = slm_chat_apply(s->chat_fmt, msgs, (int)q->n_items, gen, NULL, 0);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!text || slm_chat_apply(s->chat_fmt, msgs, (int)q->n_items, gen, text, (size_t)n + 1) != n) {
        slm_err_set(err, "cannot apply the %s chat template to these messages", slm_chat_format_name(s->chat_fmt));
        free(text);
        text = NULL;
    }
    free(block);
    return text;
}

/* The text of token ids, whole (incremental detokenization, then its flush). */
static char *detokenize(const struct slm_server *s, const int32_t *ids, int n, size_t *len)
{
    size_t cap = (size_t)n * 16 + 64, at = 0;
    char *out = malloc(cap);
    struct slm_detok d = {0};
    for (int i = 0; out && i <= n; i++) {
        char piece[512];
        int k = i < n ? slm_detok_push(s->tok, &d, ids[i], 0, piece, sizeof piece)
                      : slm_detok_flush(&d, piece, sizeof piece);
        if (k <= 0) continue;
        if ((size_t)k > sizeof piece) k = (int)sizeof piece;
        if (at + (size_t)k > cap) {
            char *p = realloc(out, cap = 2 * cap + (size_t)k);
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
        }
        memcpy(out + at, piece, (size_t)k);
        at += (size_t)k;
    }
    *len = at;
    return out;
}

static int add_request(struct slm_server *s, struct client *c, const struct slm_sqe *q, int32_t *ids, int n_ids,
                       char *err);

/* Handles one copied, hostile SQE. */
static void handle(struct slm_server *s, struct client *c, const struct slm_sqe *q)
{
    char err[SLM_ERR_LEN] = "";
    char *payload = NULL;
    int32_t *ids = NULL;
    int n = 0, rc = 0;
    if (s->draining) {
        push_error(c, q->user_data, -ESHUTDOWN, "slmd is stopping");
        return;
    }
    switch (q->op) {
    case SLM_OP_COMPLETE:
    case SLM_OP_TOKENIZE:
    case SLM_OP_CHAT: {
        if (!(payload = arena_copy(c, q->payload_off, q->payload_len))) {
            rc = -EINVAL;
            slm_err_set(err, "payload [%u, +%u) is outside the arena", q->payload_off, q->payload_len);
            break;
        }
        int chat = q->op == SLM_OP_CHAT;
        if (chat) {
            char *text = render_chat(s, q, payload, err);
            if (!text) {
                rc = s->chat_fmt < 0 ? -ENOTSUP : -EINVAL;
                break;
            }
            free(payload);
            payload = text;
        }
        /* A chat's rendered text holds the template's special tokens; plain text is taken as
         * text (as `slmd run` does with and without --chat). */
        size_t plen = strlen(payload);
        n = slm_tok_encode(s->tok, payload, plen, 1, chat, NULL, 0);
        if (n <= 0 || !(ids = malloc((size_t)n * sizeof *ids)) ||
            slm_tok_encode(s->tok, payload, plen, 1, chat, ids, n) != n) {
            rc = n < 0 ? n : -EINVAL;
            slm_err_set(err, n == 0 ? "the prompt encodes to no tokens" : "cannot encode the prompt");
            break;
        }
        if (q->op == SLM_OP_TOKENIZE) {
            push_data(c, q->user_data, ids, (size_t)n * sizeof *ids);
            break;
        }
        rc = add_request(s, c, q, ids, n, err);
        break;
    }
    case SLM_OP_COMPLETE_IDS:
    case SLM_OP_DETOKENIZE:
        if (q->n_items == 0 || q->n_items > MAX_PAYLOAD / 4 || q->payload_len != q->n_items * 4 ||
            !(payload = arena_copy(c, q->payload_off, q->payload_len))) {
            rc = -EINVAL;
            slm_err_set(err, "token ids: %u ids do not match the payload [%u, +%u)", q->n_items, q->payload_off,
                        q->payload_len);
            break;
        }
        if (q->op == SLM_OP_COMPLETE_IDS) {
            rc = add_request(s, c, q, (int32_t *)payload, (int)q->n_items, err);
            break;
        }
        for (uint32_t i = 0; i < q->n_items && !rc; i++) {
            int32_t id;
            memcpy(&id, payload + 4 * i, 4);
            if (id < 0 || id >= s->model->cfg.n_vocab) {
                rc = -EINVAL;
                slm_err_set(err, "token id %d at %u is outside the vocabulary (%d)", id, i, s->model->cfg.n_vocab);
            }
        }
        if (!rc) {
            size_t len;
            char *text = detokenize(s, (const int32_t *)payload, (int)q->n_items, &len);
            if (!text) {
                rc = -ENOMEM;
                slm_err_set(err, "out of memory");
                break;
            }
            push_data(c, q->user_data, text, len);
            free(text);
        }
        break;
    case SLM_OP_CANCEL: {
        int64_t target = -1;
        pthread_mutex_lock(&c->lock);
        for (struct creq *r = c->reqs; r; r = r->next)
            if (r->user_data == q->target) target = r->id;
        pthread_mutex_unlock(&c->lock);
        if (target >= 0) s->ops->cancel(s, target);   /* outside the client's lock */
        break;
    }
    case SLM_OP_INFO: {
        struct slm_wire_info w = {0};
        const char *base = strrchr(s->model_path, '/');
        snprintf(w.model, sizeof w.model, "%.127s", base ? base + 1 : s->model_path);
        snprintf(w.arch, sizeof w.arch, "%s", s->model->cfg.arch_name);
        snprintf(w.backend, sizeof w.backend, "cpu");
        w.n_ctx = (uint32_t)s->eo.n_ctx, w.n_vocab = (uint32_t)s->model->cfg.n_vocab;
        w.max_seqs = (uint32_t)s->eo.max_seqs, w.max_batch_tokens = (uint32_t)s->eo.max_batch_tokens;
        w.kv_blocks = (uint32_t)s->eo.n_blocks, w.block_size = (uint32_t)s->eo.block_size;
        push_data(c, q->user_data, &w, sizeof w);
        break;
    }
    case SLM_OP_STATS: {
        struct slm_wire_stats w = {0};
        struct slm_engine_counts ec;
        s->ops->counts(s, &ec);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        w.clients = (uint64_t)s->n_clients;
        w.requests_active = (uint64_t)ec.unfinished;
        w.requests_queued = (uint64_t)ec.waiting;
        w.requests_total = __atomic_load_n(&s->n_requests_total, __ATOMIC_RELAXED);
        w.tokens_prompt = __atomic_load_n(&s->n_tokens_prompt, __ATOMIC_RELAXED);
        w.tokens_cached = __atomic_load_n(&s->n_tokens_cached, __ATOMIC_RELAXED);
        w.tokens_generated = __atomic_load_n(&s->n_tokens_generated, __ATOMIC_RELAXED);
        w.kv_blocks_total = (uint64_t)s->eo.n_blocks;
        w.kv_blocks_used = w.kv_blocks_total - (uint64_t)ec.free_blocks;
        w.tokens_per_s = s->tokens_per_s;
        w.uptime_s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - s->started_s;
        push_data(c, q->user_data, &w, sizeof w);
        break;
    }
    default:
        rc = -EINVAL;
        slm_err_set(err, "unknown operation %u", q->op);
    }
    if (rc) push_error(c, q->user_data, rc, err);
    free(ids);
    free(payload);
}

static int add_request(struct slm_server *s, struct client *c, const struct slm_sqe *q, int32_t *ids, int n_ids,
                       char *err)
{
    struct creq *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->c = c;
    r->user_data = q->user_data;
    r->id = -1;
    struct slm_request rq = {.prompt = ids, .n_prompt = n_ids, .max_tokens = q->max_tokens ? (int)q->max_tokens : s->eo.n_ctx,
                             .priority = q->priority, .owner = c->uid, .logprobs = (int)q->logprobs,
                             .ignore_eos = (q->flags & SLM_SQE_IGNORE_EOS) != 0,
                             .prompt_logprobs = (q->flags & SLM_SQE_PROMPT_LOGPROBS) != 0, .user = r};
    rq.sampling = (struct slm_sampling){.temperature = q->temperature, .top_k = q->top_k, .top_p = q->top_p,
                                        .min_p = q->min_p, .repeat_penalty = q->repeat_penalty,
                                        .repeat_last_n = q->repeat_last_n, .presence_penalty = q->presence_penalty,
                                        .frequency_penalty = q->frequency_penalty, .seed = q->seed};
    const char *stops[MAX_STRINGS];
    char *stop_buf = NULL, *stop_block = NULL;
    int32_t *stop_ids = NULL;
    if (q->n_stop) {
        if (q->n_stop > MAX_STRINGS || !(stop_buf = arena_copy(c, q->stop_off, q->stop_len)) ||
            !(stop_block = split_strings(stop_buf, q->stop_len, q->n_stop, stops, err))) {
            if (!err[0]) slm_err_set(err, "stop strings: %u strings in [%u, +%u) do not fit the arena", q->n_stop,
                                     q->stop_off, q->stop_len);
            free(stop_buf);
            free(r);
            return -EINVAL;
        }
        rq.stop = stops;
        rq.n_stop = (int)q->n_stop;
    }
    if (q->n_stop_ids) {
        if (q->n_stop_ids > c->shm.arena_bytes / 4 ||
            !(stop_ids = (int32_t *)arena_copy(c, q->stop_ids_off, 4 * q->n_stop_ids))) {
            slm_err_set(err, "stop ids: %u ids at %u do not fit the arena", q->n_stop_ids, q->stop_ids_off);
            free(stop_buf);
            free(stop_block);
            free(r);
            return -EINVAL;
        }
        rq.stop_ids = stop_ids;
        rq.n_stop_ids = (int)q->n_stop_ids;
    }
    pthread_mutex_lock(&c->lock);
    c->refs++;
    r->next = c->reqs;
    if (c->reqs) c->reqs->prev = r;
    c->reqs = r;
    pthread_mutex_unlock(&c->lock);
    int64_t id = s->ops->add(s, &rq, err);   /* copies the stops */
    free(stop_buf);
    free(stop_block);
    free(stop_ids);
    if (id < 0) {
        pthread_mutex_lock(&c->lock);
        if (r->prev) r->prev->next = r->next;
        else c->reqs = r->next;
        if (r->next) r->next->prev = r->prev;
        pthread_mutex_unlock(&c->lock);
        free(r);
        client_unref(c);
        return (int)id;
    }
    __atomic_store_n(&r->id, id, __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->n_requests_total, 1, __ATOMIC_RELAXED);
    slm_server_kick(s);
    return 0;
}

int slm_client_poll(struct slm_server *s, struct client *c)
{
    if (!c->ready || c->closed) return 0;
    int n = 0;
    struct slm_sqe q;
    /* At most one lap per turn: a client that keeps its ring full cannot hold the loop. While a
     * reload waits to rebuild the engine, submissions wait in the ring. */
    while (!s->reload_pending && n < (int)c->sq.entries && slm_ring_take(&c->sq, &q) == 0) {
        handle(s, c, &q);
        n++;
    }
    if (n) slm_shm_store_sq_consumed(&c->shm, c->sq.pos);
    pthread_mutex_lock(&c->lock);
    if (flush_pending_locked(c)) slm_wake_client(&c->shm);
    pthread_mutex_unlock(&c->lock);
    return n;
}

int slm_client_set_flags(struct client *c, uint32_t flags)
{
    if (!c->ready) return 0;
    if (flags & SLM_SHM_CLOSING) slm_shm_set_closing(&c->shm, 1);
    if (flags & SLM_SHM_NEED_WAKEUP) return !slm_daemon_prepare_sleep(&c->shm, &c->sq);
    slm_daemon_awake(&c->shm);
    return 0;
}

void slm_client_cancel_all(struct slm_server *s, struct client *c)
{
    int64_t ids[256];
    for (;;) {
        int n = 0;
        pthread_mutex_lock(&c->lock);
        for (struct creq *r = c->reqs; r && n < 256; r = r->next) ids[n++] = __atomic_load_n(&r->id, __ATOMIC_ACQUIRE);
        pthread_mutex_unlock(&c->lock);
        int cancelled = 0;
        for (int i = 0; i < n; i++) cancelled += ids[i] >= 0 && s->ops->cancel(s, ids[i]) == 0;
        if (n < 256 || !cancelled) break;
    }
    slm_server_kick(s);
}

void slm_client_close(struct slm_server *s, struct client *c)
{
    slm_client_cancel_all(s, c);
    pthread_mutex_lock(&c->lock);
    c->closed = 1;
    pthread_mutex_unlock(&c->lock);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    slm_log(SLM_LOG_INFO, "client %llu '%s' gone", (unsigned long long)c->id, c->name);
    client_unref(c);
}
