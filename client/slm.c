/*
 * client/slm.c - libslm (slm.h): the client side of docs/protocol.md over ipc/.
 *
 * What the library assumes of the daemon (docs/protocol.md): a synchronous request (TOKENIZE,
 * DETOKENIZE, INFO, STATS) ends with its last DATA CQE (no MORE) and gets no DONE, so a DONE
 * for one is reported as -EBADMSG; CANCEL is sent with user_data 0, and completions for
 * user_data 0 are dropped.
 *
 * Structure. Every CQE is copied out of the ring as soon as it is seen (the slot goes back to the
 * daemon at once) and turned into complete events on a private FIFO: a TOKEN is assembled with
 * its TEXT / TOP continuation CQEs (SLM_CQE_MORE on every CQE of a chain but the last); DATA
 * chunks go to the synchronous call that waits for them. slm_next_event pops the FIFO's head;
 * slm_wait and the synchronous calls take their own handle's events out of it and leave the
 * rest in order.
 */
#define _GNU_SOURCE
#include "client/slm.h"
#include "common/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc/arena.h"
#include "ipc/handshake.h"
#include "ipc/protocol.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"

/* How long one sleep on the CQ lasts before the socket is checked for a hang-up: a dead daemon
 * never bumps the futex. */
#define SLICE_MS 50
/* The handshake's receive timeout: a peer that accepts and never answers. */
#define HANDSHAKE_TIMEOUT_S 10
/* Events handed out are kept, buffers and all, for the next ones: no allocation per token. */
#define SPARE_EVENTS 64

struct qev {
    struct slm_event ev;       /* text, top, message point into the buffers below */
    char *text;
    size_t text_len, text_cap;
    struct slm_top_logprob *top;
    int n_top, top_cap;
    char *message;
    struct qev *next;
};

struct slm_client {
    int sock;
    struct slm_shm shm;
    struct slm_ring sq, cq;
    struct slm_arena arena;
    int64_t next_handle;
    struct qev *head, *tail;   /* complete events, in the daemon's order */
    struct qev *building;      /* a TOKEN waiting for its continuation CQEs */
    struct qev *current;       /* the event last handed out; recycled on the next call */
    struct qev *spare;         /* recycled events (SPARE_EVENTS at most), their buffers kept */
    int n_spare;
    int hung_up;
    /* The synchronous call in progress: its handle's DATA chunks collect here. */
    int64_t data_handle;
    uint8_t *data;
    size_t data_len, data_cap;
    int data_done;
};

static _Thread_local char last_error[SLM_ERR_LEN];

const char *slm_last_error(void)
{
    return last_error;
}

void slm_params_default(struct slm_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = 256;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    /* A seed per call: the clock, the process and a counter, mixed (splitmix64's finalizer),
     * below 2^63 as slmd's --seed range is. */
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_sec * 1000000007u + (uint64_t)ts.tv_nsec + ((uint64_t)getpid() << 32) +
                 (uint64_t)__atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    p->seed = (z ^ (z >> 31)) >> 1;
}

/* ---- events ------------------------------------------------------------------------------- */

static void qev_free(struct qev *q)
{
    if (!q) return;
    free(q->text);
    free(q->top);
    free(q->message);
    free(q);
}

/* A fresh event: a recycled one (its buffers kept, emptied) or a new one. */
static struct qev *qev_new(struct slm_client *c, int64_t handle, enum slm_event_type type)
{
    struct qev *q = c->spare;
    if (q) {
        c->spare = q->next;
        c->n_spare--;
        struct qev keep = *q;
        memset(q, 0, sizeof *q);
        q->text = keep.text;
        q->text_cap = keep.text_cap;
        q->top = keep.top;
        q->top_cap = keep.top_cap;
    } else if (!(q = calloc(1, sizeof *q))) {
        return NULL;
    }
    q->ev.handle = handle;
    q->ev.type = type;
    q->ev.token = -1;
    return q;
}

/* Keeps q for qev_new, or frees it when enough are kept. */
static void qev_recycle(struct slm_client *c, struct qev *q)
{
    if (!q) return;
    if (c->n_spare >= SPARE_EVENTS) {
        qev_free(q);
        return;
    }
    free(q->message);
    q->message = NULL;
    q->next = c->spare;
    c->spare = q;
    c->n_spare++;
}

static int qev_append_text(struct qev *q, const void *bytes, size_t n)
{
    if (q->text_len + n + 1 > q->text_cap) {
        size_t cap = q->text_cap ? q->text_cap : 128;
        while (cap < q->text_len + n + 1) cap *= 2;
        char *t = realloc(q->text, cap);
        if (!t) return -ENOMEM;
        q->text = t;
        q->text_cap = cap;
    }
    memcpy(q->text + q->text_len, bytes, n);
    q->text_len += n;
    q->text[q->text_len] = 0;
    return 0;
}

static int qev_append_top(struct qev *q, const uint8_t *bytes, size_t n)
{
    int add = (int)(n / 8);
    if (q->n_top + add > q->top_cap) {
        int cap = q->top_cap ? q->top_cap : 8;
        while (cap < q->n_top + add) cap *= 2;
        struct slm_top_logprob *t = realloc(q->top, (size_t)cap * sizeof *t);
        if (!t) return -ENOMEM;
        q->top = t;
        q->top_cap = cap;
    }
    for (int i = 0; i < add; i++) {
        memcpy(&q->top[q->n_top].token, bytes + 8 * i, 4);
        memcpy(&q->top[q->n_top].logprob, bytes + 8 * i + 4, 4);
        q->n_top++;
    }
    return 0;
}

/* Points the public fields at the private buffers (they may have moved while growing). */
static void qev_finish(struct qev *q)
{
    q->ev.text = q->text ? q->text : "";
    q->ev.text_len = q->text_len;
    q->ev.top = q->top;
    q->ev.n_top = q->n_top;
    q->ev.message = q->message ? q->message : (q->ev.type == SLM_EVENT_ERROR ? "" : NULL);
}

static void queue_push(struct slm_client *c, struct qev *q)
{
    qev_finish(q);
    q->next = NULL;
    if (c->tail) c->tail->next = q;
    else c->head = q;
    c->tail = q;
}

/* Removes and returns the first queued event of handle (any handle when handle < 0). */
static struct qev *queue_take(struct slm_client *c, int64_t handle)
{
    struct qev *prev = NULL;
    for (struct qev *q = c->head; q; prev = q, q = q->next) {
        if (handle >= 0 && q->ev.handle != handle) continue;
        if (prev) prev->next = q->next;
        else c->head = q->next;
        if (c->tail == q) c->tail = prev;
        q->next = NULL;
        return q;
    }
    return NULL;
}

static int queue_has(const struct slm_client *c, int64_t handle)
{
    for (const struct qev *q = c->head; q; q = q->next)
        if (handle < 0 || q->ev.handle == handle) return 1;
    return 0;
}

/* Hands q out as the current event (valid until the next call that produces events). */
static void set_current(struct slm_client *c, struct qev *q)
{
    qev_recycle(c, c->current);
    c->current = q;
}

static void flush_building(struct slm_client *c)
{
    if (c->building) {
        queue_push(c, c->building);
        c->building = NULL;
    }
}

static int data_append(struct slm_client *c, const uint8_t *bytes, size_t n)
{
    if (c->data_len + n > c->data_cap) {
        size_t cap = c->data_cap ? c->data_cap : 256;
        while (cap < c->data_len + n) cap *= 2;
        uint8_t *d = realloc(c->data, cap);
        if (!d) return -ENOMEM;
        c->data = d;
        c->data_cap = cap;
    }
    memcpy(c->data + c->data_len, bytes, n);
    c->data_len += n;
    return 0;
}

/* Takes one CQE off the ring (if any) and files it. Returns 1 when one was taken, 0 when the
 * ring is empty, or -ENOMEM (the CQE is consumed and lost). */
static int pump_one(struct slm_client *c)
{
    const void *slot = slm_ring_peek(&c->cq);
    if (!slot) return 0;
    struct slm_cqe e;
    memcpy(&e, slot, sizeof e);
    slm_ring_seen(&c->cq);

    size_t len = e.len <= SLM_CQE_DATA_BYTES ? e.len : SLM_CQE_DATA_BYTES;
    int64_t h = (int64_t)e.user_data;
    int more = (e.flags & SLM_CQE_MORE) != 0;
    int rc = 0;
    struct qev *q;
    if (h == 0) return 1;   /* completions of a CANCEL itself: nobody waits for them */

    switch (e.kind) {
    case SLM_CQE_TOKEN:
        flush_building(c);
        if (!(q = qev_new(c, h, SLM_EVENT_TOKEN))) return -ENOMEM;
        q->ev.token = e.token;
        q->ev.logprob = e.logprob;
        rc = qev_append_text(q, e.data, len);
        if (more) c->building = q;
        else queue_push(c, q);
        break;
    case SLM_CQE_TEXT:
    case SLM_CQE_TOP:
        if (!c->building || c->building->ev.handle != h) break;   /* orphan: drop */
        rc = e.kind == SLM_CQE_TEXT ? qev_append_text(c->building, e.data, len)
                                    : qev_append_top(c->building, e.data, len);
        if (!more) flush_building(c);
        break;
    case SLM_CQE_DONE:
    case SLM_CQE_ERROR:
        if (c->building && c->building->ev.handle == h) flush_building(c);
        if (!(q = qev_new(c, h, e.kind == SLM_CQE_DONE ? SLM_EVENT_DONE : SLM_EVENT_ERROR))) return -ENOMEM;
        if (e.kind == SLM_CQE_DONE) {
            q->ev.finish = (enum slm_finish_reason)e.finish;
            q->ev.n_prompt = (int)e.n_prompt;
            q->ev.n_cached = (int)e.n_cached;
            q->ev.n_generated = (int)e.n_generated;
        } else {
            q->ev.error = e.status < 0 ? e.status : -EIO;
            q->message = malloc(len + 1);
            if (q->message) {
                memcpy(q->message, e.data, len);
                q->message[len] = 0;
            }
        }
        queue_push(c, q);
        break;
    case SLM_CQE_DATA:
        if (h != c->data_handle || c->data_done) break;   /* nobody collects it: drop */
        rc = data_append(c, e.data, len);
        if (!more) c->data_done = 1;
        break;
    case SLM_CQE_PROGRESS:
        if (!(q = qev_new(c, h, SLM_EVENT_PROGRESS))) return -ENOMEM;
        q->ev.n_prompt = (int)e.n_prompt;
        q->ev.n_cached = (int)e.n_cached;
        queue_push(c, q);
        break;
    case SLM_CQE_PROMPT_LP:
        if (!(q = qev_new(c, h, SLM_EVENT_PROMPT_LOGPROBS))) return -ENOMEM;
        q->ev.prompt_pos = (int)e.n_prompt;
        rc = qev_append_top(q, e.data, len);
        queue_push(c, q);
        break;
    default:   /* kinds of newer daemons */
        break;
    }
    return rc < 0 ? rc : 1;
}

/* 1 when the daemon closed its end of the socket. */
static int peer_gone(struct slm_client *c)
{
    if (c->hung_up) return 1;
    struct pollfd pfd = { .fd = c->sock, .events = POLLIN | POLLRDHUP };
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLIN))) c->hung_up = 1;
    return c->hung_up;
}

typedef int (*ready_fn)(struct slm_client *c, int64_t handle);

/* Files CQEs until ready(c, handle) holds (1), timeout_ms passes (0; < 0 waits forever), or the
 * daemon is gone with nothing left on the ring (-ECONNRESET). */
static int pump_until(struct slm_client *c, ready_fn ready, int64_t handle, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : slm_mono_ms() + timeout_ms;
    for (;;) {
        int rc;
        while ((rc = pump_one(c)) == 1)
            if (ready(c, handle)) return 1;
        if (rc < 0) return rc;
        if (ready(c, handle)) return 1;
        int slice = SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - slm_mono_ms();
            if (left <= 0) return peer_gone(c) ? -ECONNRESET : 0;
            if (left < slice) slice = (int)left;
        }
        rc = slm_wait_cq(&c->shm, &c->cq, slice);
        if (rc == -ETIMEDOUT && peer_gone(c) && !slm_ring_ready(&c->cq)) return -ECONNRESET;
    }
}

static int ready_any(struct slm_client *c, int64_t handle)
{
    (void)handle;
    return c->head != NULL;
}

static int ready_handle(struct slm_client *c, int64_t handle)
{
    return queue_has(c, handle);
}

static int ready_data(struct slm_client *c, int64_t handle)
{
    return c->data_done || queue_has(c, handle);
}

/* ---- connection --------------------------------------------------------------------------- */

int slm_connect(const char *socket_path, const char *name, struct slm_client **out)
{
    *out = NULL;
    last_error[0] = 0;
    if (!socket_path) socket_path = getenv("SLM_SOCKET");
    if (!socket_path || !*socket_path) socket_path = SLM_DEFAULT_SOCKET;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof addr.sun_path) {
        snprintf(last_error, sizeof last_error, "socket path too long: %s", socket_path);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, socket_path);

    struct slm_client *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->shm.fd = -1;
    c->next_handle = 1;
    c->data_handle = -1;
    int rc;
    c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (c->sock < 0) {
        rc = -errno;
        snprintf(last_error, sizeof last_error, "socket: %s", strerror(-rc));
        goto fail;
    }
    if (connect(c->sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
        rc = -errno;
        snprintf(last_error, sizeof last_error, "connect %s: %s", socket_path, strerror(-rc));
        goto fail;
    }
    struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };
    setsockopt(c->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if ((rc = slm_hello_send(c->sock, name, 0, 0, 0, last_error)) < 0) goto fail;
    struct slm_welcome w;
    int fd;
    rc = slm_welcome_recv(c->sock, &w, &fd, last_error);
    if (rc == -EAGAIN) rc = -ETIMEDOUT;
    if (rc < 0) goto fail;
    if ((rc = slm_shm_map(&c->shm, fd, w.shm_bytes, last_error)) < 0) goto fail;
    slm_shm_rings(&c->shm, &c->sq, &c->cq);
    if ((rc = slm_arena_init(&c->arena, c->shm.arena, c->shm.arena_bytes, &c->shm.hdr->sq_consumed,
                             2 * c->shm.sq_entries)) < 0) {
        snprintf(last_error, sizeof last_error, "arena: %s", strerror(-rc));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (c->sock >= 0) close(c->sock);
    slm_shm_unmap(&c->shm);
    free(c);
    return rc;
}

void slm_close(struct slm_client **cp)
{
    struct slm_client *c = cp ? *cp : NULL;
    if (!c) return;
    close(c->sock);   /* the hang-up: the daemon cancels what is still running */
    slm_arena_free(&c->arena);
    slm_shm_unmap(&c->shm);
    while (c->head) qev_free(queue_take(c, -1));
    qev_free(c->building);
    qev_free(c->current);
    while (c->spare) {
        struct qev *q = c->spare;
        c->spare = q->next;
        qev_free(q);
    }
    free(c->data);
    free(c);
    *cp = NULL;
}

/* ---- submitting --------------------------------------------------------------------------- */

/* One part of a payload: bytes, or (when put is set) a writer of len bytes into dst. */
struct payload {
    const void *bytes;
    size_t len;
    void (*put)(const struct payload *p, uint8_t *dst);
    const struct slm_message *msgs;
    int n_msgs;
};

static int check_params(const struct slm_params *p)
{
    if (p->max_tokens < 0 || p->logprobs < 0 || p->logprobs > 20 || p->n_stop < 0 || p->n_stop_ids < 0)
        return -EINVAL;
    if ((p->n_stop > 0 && !p->stop) || (p->n_stop_ids > 0 && !p->stop_ids)) return -EINVAL;
    if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p >= 0 && p->top_p <= 1) ||
        !(p->min_p >= 0 && p->min_p <= 1) || !(p->repeat_penalty > 0) || p->repeat_last_n < -1)
        return -EINVAL;
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i]) return -EINVAL;
    return 0;
}

static int alloc_copy(struct slm_client *c, uint64_t len, uint32_t *off, uint8_t **dst)
{
    if (len > UINT32_MAX || len > c->shm.arena_bytes) return -E2BIG;
    int rc = slm_arena_alloc(&c->arena, (uint32_t)len, off);
    if (rc < 0) return rc;
    *dst = len ? slm_arena_ptr(&c->arena, *off) : NULL;
    return 0;
}

/* Writes the payload, the stop strings and stop ids into the arena, fills an SQE and publishes
 * it. Returns the handle, or a negative errno with nothing submitted. */
static int64_t submit(struct slm_client *c, uint16_t op, uint16_t flags, const struct payload *pl, uint32_t n_items,
                      const struct slm_params *p, uint64_t target)
{
    if (!c) return -EINVAL;
    if (c->hung_up) return -ECONNRESET;
    struct slm_params defaults;
    if (!p) {
        slm_params_default(&defaults);
        p = &defaults;
    }
    int rc = check_params(p);
    if (rc < 0) return rc;

    struct slm_sqe s;
    memset(&s, 0, sizeof s);
    uint8_t *dst;
    if (pl && pl->len) {
        if ((rc = alloc_copy(c, pl->len, &s.payload_off, &dst)) < 0) goto rollback;
        if (pl->put) pl->put(pl, dst);
        else memcpy(dst, pl->bytes, pl->len);
        s.payload_len = (uint32_t)pl->len;
    }
    if (p->n_stop > 0) {
        uint64_t total = 0;
        for (int i = 0; i < p->n_stop; i++) total += 4 + strlen(p->stop[i]);
        if ((rc = alloc_copy(c, total, &s.stop_off, &dst)) < 0) goto rollback;
        for (int i = 0; i < p->n_stop; i++) {
            uint32_t n = (uint32_t)strlen(p->stop[i]);
            memcpy(dst, &n, 4);
            memcpy(dst + 4, p->stop[i], n);
            dst += 4 + n;
        }
        s.stop_len = (uint32_t)total;
        s.n_stop = (uint32_t)p->n_stop;
    }
    if (p->n_stop_ids > 0) {
        if ((rc = alloc_copy(c, 4 * (uint64_t)p->n_stop_ids, &s.stop_ids_off, &dst)) < 0) goto rollback;
        memcpy(dst, p->stop_ids, 4 * (size_t)p->n_stop_ids);
        s.n_stop_ids = (uint32_t)p->n_stop_ids;
    }
    void *slot = slm_ring_get(&c->sq);
    if (!slot) {
        rc = -EAGAIN;
        goto rollback;
    }
    int64_t handle = op == SLM_OP_CANCEL ? 0 : c->next_handle++;
    s.op = op;
    s.flags = flags | (p->ignore_eos ? SLM_SQE_IGNORE_EOS : 0) | (p->prompt_logprobs ? SLM_SQE_PROMPT_LOGPROBS : 0) |
              (p->progress ? SLM_SQE_PROGRESS : 0);
    s.user_data = (uint64_t)handle;
    s.target = target;
    s.n_items = n_items;
    s.max_tokens = (uint32_t)p->max_tokens;
    s.priority = p->priority;
    s.temperature = p->temperature;
    s.top_p = p->top_p;
    s.min_p = p->min_p;
    s.top_k = p->top_k;
    s.repeat_penalty = p->repeat_penalty;
    s.repeat_last_n = p->repeat_last_n;
    s.presence_penalty = p->presence_penalty;
    s.frequency_penalty = p->frequency_penalty;
    s.seed = p->seed;
    s.logprobs = (uint32_t)p->logprobs;
    /* Bytes [4, 128): the seq is the ring's. */
    memcpy((uint8_t *)slot + 4, (const uint8_t *)&s + 4, sizeof s - 4);
    slm_arena_commit(&c->arena, c->sq.pos);
    slm_ring_publish(&c->sq, slot);
    rc = slm_doorbell_ring(&c->shm, c->sock);
    if (rc == -EPIPE || rc == -ECONNRESET) c->hung_up = 1;
    return handle;
rollback:
    slm_arena_rollback(&c->arena);
    return rc;
}

int64_t slm_submit_text(struct slm_client *c, const char *prompt, const struct slm_params *p)
{
    if (!prompt) return -EINVAL;
    struct payload pl = { .bytes = prompt, .len = strlen(prompt) };
    return submit(c, SLM_OP_COMPLETE, 0, &pl, 0, p, 0);
}

int64_t slm_submit_ids(struct slm_client *c, const int32_t *ids, int n, const struct slm_params *p)
{
    if (n < 0 || (n > 0 && !ids)) return -EINVAL;
    struct payload pl = { .bytes = ids, .len = 4 * (size_t)n };
    return submit(c, SLM_OP_COMPLETE_IDS, 0, &pl, (uint32_t)n, p, 0);
}

static void put_chat(const struct payload *pl, uint8_t *dst)
{
    for (int i = 0; i < pl->n_msgs; i++) {
        const char *parts[2] = { pl->msgs[i].role, pl->msgs[i].content };
        for (int k = 0; k < 2; k++) {
            uint32_t n = (uint32_t)strlen(parts[k]);
            memcpy(dst, &n, 4);
            memcpy(dst + 4, parts[k], n);
            dst += 4 + n;
        }
    }
}

int64_t slm_submit_chat(struct slm_client *c, const struct slm_message *msgs, int n, const struct slm_params *p)
{
    if (n <= 0 || !msgs) return -EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) return -EINVAL;
        total += 8 + strlen(msgs[i].role) + strlen(msgs[i].content);
    }
    if (total > UINT32_MAX) return -E2BIG;
    struct payload pl = { .len = (size_t)total, .put = put_chat, .msgs = msgs, .n_msgs = n };
    return submit(c, SLM_OP_CHAT, SLM_SQE_ADD_GENERATION_PROMPT, &pl, (uint32_t)n, p, 0);
}

int slm_cancel(struct slm_client *c, int64_t handle)
{
    if (!c || handle <= 0) return -EINVAL;
    int64_t rc = submit(c, SLM_OP_CANCEL, 0, NULL, 0, NULL, (uint64_t)handle);
    return rc < 0 ? (int)rc : 0;
}

/* ---- events ------------------------------------------------------------------------------- */

int slm_next_event(struct slm_client *c, struct slm_event *ev, int timeout_ms)
{
    if (!c || !ev) return -EINVAL;
    set_current(c, NULL);
    int rc = pump_until(c, ready_any, -1, timeout_ms);
    if (rc <= 0) return rc;
    struct qev *q = queue_take(c, -1);
    set_current(c, q);
    *ev = q->ev;
    return 1;
}

int slm_wait(struct slm_client *c, int64_t handle, slm_event_fn fn, void *ctx)
{
    if (!c || handle <= 0) return -EINVAL;
    for (;;) {
        set_current(c, NULL);
        int rc = pump_until(c, ready_handle, handle, -1);
        if (rc < 0) return rc;
        struct qev *q = queue_take(c, handle);
        set_current(c, q);
        if (fn && (rc = fn(ctx, &q->ev)) != 0) return rc;
        if (q->ev.type == SLM_EVENT_DONE) return 0;
        if (q->ev.type == SLM_EVENT_ERROR) return q->ev.error;
    }
}

/* Submits until the rings and arena have room (filing events meanwhile). */
static int64_t submit_blocking(struct slm_client *c, uint16_t op, uint16_t flags, const struct payload *pl,
                               uint32_t n_items, const struct slm_params *p)
{
    for (;;) {
        int64_t h = submit(c, op, flags, pl, n_items, p, 0);
        if (h != -EAGAIN) return h;
        int rc;
        while ((rc = pump_one(c)) == 1) {}
        if (rc < 0) return rc;
        if (peer_gone(c)) return -ECONNRESET;
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
}

struct gen_ctx {
    char *text;
    size_t len, cap;
    struct slm_event *done;
};

static int gen_collect(void *ctx, const struct slm_event *ev)
{
    struct gen_ctx *g = ctx;
    if (ev->type == SLM_EVENT_TOKEN) {
        if (g->len + ev->text_len + 1 > g->cap) {
            size_t cap = g->cap ? g->cap : 256;
            while (cap < g->len + ev->text_len + 1) cap *= 2;
            char *t = realloc(g->text, cap);
            if (!t) return -ENOMEM;
            g->text = t;
            g->cap = cap;
        }
        memcpy(g->text + g->len, ev->text, ev->text_len);
        g->len += ev->text_len;
    } else if (ev->type == SLM_EVENT_DONE && g->done) {
        *g->done = *ev;
        g->done->text = NULL;
        g->done->text_len = 0;
        g->done->top = NULL;
        g->done->n_top = 0;
        g->done->message = NULL;
    }
    return 0;
}

int slm_generate(struct slm_client *c, const char *prompt, const struct slm_params *p, char **text,
                 struct slm_event *done)
{
    *text = NULL;
    if (!c || !prompt) return -EINVAL;
    struct payload pl = { .bytes = prompt, .len = strlen(prompt) };
    int64_t h = submit_blocking(c, SLM_OP_COMPLETE, 0, &pl, 0, p);
    if (h < 0) return (int)h;
    struct gen_ctx g = { .done = done };
    int rc = slm_wait(c, h, gen_collect, &g);
    if (rc == 0 && !g.text && !(g.text = malloc(1))) rc = -ENOMEM;
    if (rc != 0) {
        if (rc == -ENOMEM) slm_cancel(c, h);
        free(g.text);
        return rc;
    }
    g.text[g.len] = 0;
    *text = g.text;
    return 0;
}

/* A synchronous request: submits op with the payload and collects its DATA chunks into
 * c->data (c->data_len bytes). 0 or a negative errno (the request's ERROR status). */
static int request_data(struct slm_client *c, uint16_t op, const struct payload *pl, uint32_t n_items)
{
    if (!c) return -EINVAL;
    set_current(c, NULL);
    last_error[0] = 0;
    int64_t h = submit_blocking(c, op, 0, pl, n_items, NULL);
    if (h < 0) return (int)h;
    c->data_handle = h;
    c->data_len = 0;
    c->data_done = 0;
    int rc = pump_until(c, ready_data, h, -1);
    c->data_handle = -1;
    if (rc < 0) return rc;
    struct qev *q = queue_take(c, h);
    if (q) {
        rc = q->ev.type == SLM_EVENT_ERROR ? q->ev.error : -EBADMSG;
        if (q->ev.type == SLM_EVENT_ERROR && q->ev.message)   /* slmd's reason, for slm_last_error */
            snprintf(last_error, sizeof last_error, "%s", q->ev.message);
        set_current(c, q);
        return rc;
    }
    return 0;
}

int slm_tokenize(struct slm_client *c, const char *text, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (!text) return -EINVAL;
    struct payload pl = { .bytes = text, .len = strlen(text) };
    int rc = request_data(c, SLM_OP_TOKENIZE, &pl, 0);
    if (rc < 0) return rc;
    if (c->data_len % 4 != 0 || c->data_len / 4 > INT32_MAX) return -EBADMSG;
    *ids = malloc(c->data_len ? c->data_len : 1);
    if (!*ids) return -ENOMEM;
    memcpy(*ids, c->data, c->data_len);
    *n = (int)(c->data_len / 4);
    return 0;
}

int slm_detokenize(struct slm_client *c, const int32_t *ids, int n, char **text)
{
    *text = NULL;
    if (n < 0 || (n > 0 && !ids)) return -EINVAL;
    struct payload pl = { .bytes = ids, .len = 4 * (size_t)n };
    int rc = request_data(c, SLM_OP_DETOKENIZE, &pl, (uint32_t)n);
    if (rc < 0) return rc;
    *text = malloc(c->data_len + 1);
    if (!*text) return -ENOMEM;
    memcpy(*text, c->data, c->data_len);
    (*text)[c->data_len] = 0;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t src_cap)
{
    size_t n = strnlen(src, src_cap);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* Asks for an answer that is one wire struct of `size` bytes and copies it into w. */
static int fetch_struct(struct slm_client *c, uint16_t op, void *w, size_t size)
{
    int rc = request_data(c, op, NULL, 0);
    if (rc < 0) return rc;
    if (c->data_len < size) return -EBADMSG;
    memcpy(w, c->data, size);
    return 0;
}

int slm_info(struct slm_client *c, struct slm_info *info)
{
    memset(info, 0, sizeof *info);
    struct slm_wire_info w;
    int rc = fetch_struct(c, SLM_OP_INFO, &w, sizeof w);
    if (rc < 0) return rc;
    copy_str(info->model, sizeof info->model, w.model, sizeof w.model);
    copy_str(info->arch, sizeof info->arch, w.arch, sizeof w.arch);
    copy_str(info->backend, sizeof info->backend, w.backend, sizeof w.backend);
    info->n_ctx = (int)w.n_ctx;
    info->n_vocab = (int)w.n_vocab;
    info->max_seqs = (int)w.max_seqs;
    info->max_batch_tokens = (int)w.max_batch_tokens;
    info->kv_blocks = (int)w.kv_blocks;
    info->block_size = (int)w.block_size;
    return 0;
}

int slm_stats(struct slm_client *c, struct slm_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    struct slm_wire_stats w;
    int rc = fetch_struct(c, SLM_OP_STATS, &w, sizeof w);
    if (rc < 0) return rc;
    stats->clients = w.clients;
    stats->requests_active = w.requests_active;
    stats->requests_queued = w.requests_queued;
    stats->requests_total = w.requests_total;
    stats->tokens_prompt = w.tokens_prompt;
    stats->tokens_cached = w.tokens_cached;
    stats->tokens_generated = w.tokens_generated;
    stats->kv_blocks_used = w.kv_blocks_used;
    stats->kv_blocks_total = w.kv_blocks_total;
    stats->tokens_per_s = w.tokens_per_s;
    stats->uptime_s = w.uptime_s;
    return 0;
}

const char *slm_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case -EPROTO: return "protocol version mismatch between libslm and slmd";
    case -EACCES: return "slmd refused the connection (not on its allow-list)";
    case -ECONNRESET: return "slmd went away";
    case -ENOENT: return "no slmd socket at that path (is slmd running?)";
    case -ECONNREFUSED: return "nobody listens on the slmd socket";
    case -EAGAIN: return "submission ring or payload arena full: take events, then retry";
    case -E2BIG: return "the request is larger than the connection's shared memory can ever hold";
    case -EINVAL: return "invalid argument";
    case -EBADMSG: return "malformed message from slmd";
    case -ETIMEDOUT: return "timed out";
    case -ENOMEM: return "out of memory";
    default: break;
    }
    if (err < 0 && err > -4096) return strerror(-err);
    return "unknown error";
}
