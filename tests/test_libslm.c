/* tests/test_libslm.c - libslm (client/slm.h) against a fake daemon thread that speaks the real
 * protocol with ipc/ (handshake, memfd, rings, doorbell), so every byte libslm writes is decoded
 * the way slmd will decode it. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/check.h"
#include "client/slm.h"
#include "ipc/arena.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"

enum fake_mode { FAKE_SERVE, FAKE_REFUSE, FAKE_BAD_VERSION };

/* A token whose text does not fit one CQE: prompt byte '#' gives this piece (TOKEN + 2 TEXT). */
#define LONG_PIECE_LEN 200
static char long_piece[LONG_PIECE_LEN + 1];

struct fake {
    enum fake_mode mode;
    char path[108];
    int listen_fd;
    pthread_t thread;
    atomic_int stall;          /* 1: take no SQE */
    atomic_int stop;
    /* What the last COMPLETE / CHAT carried (decoded the daemon's way). */
    char last_payload[512];
    char last_stops[256];
    int last_stop_ids_sum, last_n_stop_ids, last_top_k, last_flags;
    float last_temperature;
};

static void put_cqe(struct slm_shm *shm, struct slm_ring *cq, struct fake *f, uint16_t kind, uint16_t flags,
                    uint64_t ud, const struct slm_cqe *tmpl)
{
    struct slm_cqe e;
    if (tmpl) e = *tmpl;
    else memset(&e, 0, sizeof e);
    e.kind = kind;
    e.flags = flags;
    e.user_data = ud;
    if (!tmpl) e.token = -1;
    void *slot;
    while (slm_ring_get_checked(cq, &slot) == -EAGAIN && !atomic_load(&f->stop)) {
        slm_wake_client(shm);
        usleep(100);
    }
    if (atomic_load(&f->stop)) return;
    slm_ring_push(cq, &e);
    slm_wake_client(shm);
}

static void put_data(struct slm_shm *shm, struct slm_ring *cq, struct fake *f, uint64_t ud, const void *bytes,
                     size_t n)
{
    const uint8_t *b = bytes;
    do {
        struct slm_cqe e;
        memset(&e, 0, sizeof e);
        e.token = -1;
        size_t k = n < SLM_CQE_DATA_BYTES ? n : SLM_CQE_DATA_BYTES;
        memcpy(e.data, b, k);
        e.len = (uint8_t)k;
        b += k;
        n -= k;
        put_cqe(shm, cq, f, SLM_CQE_DATA, n ? SLM_CQE_MORE : 0, ud, &e);
    } while (n);
}

static void put_error(struct slm_shm *shm, struct slm_ring *cq, struct fake *f, uint64_t ud, int status,
                      const char *msg)
{
    struct slm_cqe e;
    memset(&e, 0, sizeof e);
    e.token = -1;
    e.status = status;
    e.len = (uint8_t)strlen(msg);
    memcpy(e.data, msg, e.len);
    put_cqe(shm, cq, f, SLM_CQE_ERROR, 0, ud, &e);
}

static void put_done(struct slm_shm *shm, struct slm_ring *cq, struct fake *f, uint64_t ud, int finish,
                     uint32_t np, uint32_t ng)
{
    struct slm_cqe e;
    memset(&e, 0, sizeof e);
    e.token = -1;
    e.finish = (uint8_t)finish;
    e.n_prompt = np;
    e.n_generated = ng;
    put_cqe(shm, cq, f, SLM_CQE_DONE, 0, ud, &e);
}

/* COMPLETE: one token per prompt byte (id = the byte), up to max_tokens (0: wait for CANCEL). */
static void answer_complete(struct fake *f, struct slm_shm *shm, struct slm_ring *cq, const struct slm_sqe *s,
                            const uint8_t *payload, uint32_t len, uint64_t *pending)
{
    if (s->max_tokens == 0) {
        *pending = s->user_data;
        return;
    }
    uint32_t n = len < s->max_tokens ? len : s->max_tokens;
    for (uint32_t i = 0; i < n; i++) {
        const char *text = (const char *)&payload[i];
        size_t tlen = 1;
        if (payload[i] == '#') {
            text = long_piece;
            tlen = LONG_PIECE_LEN;
        }
        int has_top = s->logprobs > 0;
        size_t k = tlen < SLM_CQE_DATA_BYTES ? tlen : SLM_CQE_DATA_BYTES;
        struct slm_cqe e;
        memset(&e, 0, sizeof e);
        e.token = payload[i];
        e.logprob = -0.5f * (float)i;
        memcpy(e.data, text, k);
        e.len = (uint8_t)k;
        put_cqe(shm, cq, f, SLM_CQE_TOKEN, (tlen > k || has_top) ? SLM_CQE_MORE : 0, s->user_data, &e);
        for (size_t off = k; off < tlen; off += k) {
            k = tlen - off < SLM_CQE_DATA_BYTES ? tlen - off : SLM_CQE_DATA_BYTES;
            memset(&e, 0, sizeof e);
            e.token = -1;
            memcpy(e.data, text + off, k);
            e.len = (uint8_t)k;
            put_cqe(shm, cq, f, SLM_CQE_TEXT, (off + k < tlen || has_top) ? SLM_CQE_MORE : 0, s->user_data, &e);
        }
        if (has_top) {
            memset(&e, 0, sizeof e);
            e.token = -1;
            for (uint32_t t = 0; t < s->logprobs; t++) {
                int32_t id = payload[i] + (int32_t)t;
                float lp = -(float)t;
                memcpy(e.data + 8 * t, &id, 4);
                memcpy(e.data + 8 * t + 4, &lp, 4);
            }
            e.len = (uint8_t)(8 * s->logprobs);
            put_cqe(shm, cq, f, SLM_CQE_TOP, 0, s->user_data, &e);
        }
    }
    put_done(shm, cq, f, s->user_data, n < len ? SLM_WIRE_LENGTH : SLM_WIRE_STOP, len, n);
}

static void record(struct fake *f, const struct slm_sqe *s, const uint8_t *arena, uint32_t arena_bytes)
{
    f->last_temperature = s->temperature;
    f->last_top_k = s->top_k;
    f->last_flags = s->flags;
    f->last_stops[0] = 0;
    if (slm_arena_check_range(arena_bytes, s->stop_off, s->stop_len) == 0) {
        const uint8_t *p = arena + s->stop_off, *end = p + s->stop_len;
        for (uint32_t i = 0; i < s->n_stop && p + 4 <= end; i++) {
            uint32_t n;
            memcpy(&n, p, 4);
            if (n > (uint32_t)(end - p - 4)) break;
            size_t have = strlen(f->last_stops);
            snprintf(f->last_stops + have, sizeof f->last_stops - have, "%.*s|", (int)n, (const char *)p + 4);
            p += 4 + n;
        }
    }
    f->last_n_stop_ids = (int)s->n_stop_ids;
    f->last_stop_ids_sum = 0;
    if (slm_arena_check_range(arena_bytes, s->stop_ids_off, 4 * s->n_stop_ids) == 0)
        for (uint32_t i = 0; i < s->n_stop_ids; i++) {
            int32_t id;
            memcpy(&id, arena + s->stop_ids_off + 4 * i, 4);
            f->last_stop_ids_sum += id;
        }
}

static void serve(struct fake *f, int sock)
{
    struct slm_shm shm;
    char err[SLM_ERR_LEN];
    if (slm_shm_create(&shm, 0, 0, 0, err) < 0) return;
    if (slm_welcome_send(sock, 42, shm.bytes, shm.fd, err) < 0) {
        slm_shm_unmap(&shm);
        return;
    }
    struct slm_ring sq, cq;
    slm_shm_rings(&shm, &sq, &cq);
    uint64_t pending = 0;
    static uint8_t payload[1 << 16];
    while (!atomic_load(&f->stop)) {
        struct slm_sqe s;
        if (atomic_load(&f->stall) || slm_ring_take(&sq, &s) != 0) {
            /* Sleep as slmd does: NEED_WAKEUP, then the doorbell (or a hang-up). */
            if (!atomic_load(&f->stall) && !slm_daemon_prepare_sleep(&shm, &sq)) continue;
            struct pollfd pfd = { .fd = sock, .events = POLLIN };
            poll(&pfd, 1, 10);
            if (slm_doorbell_drain(sock) == -EPIPE) break;
            slm_daemon_awake(&shm);
            continue;
        }
        uint32_t len = s.payload_len;
        if (len > sizeof payload || slm_arena_copy_out(shm.arena, shm.arena_bytes, s.payload_off, len, payload)) {
            put_error(&shm, &cq, f, s.user_data, -EINVAL, "bad payload range");
            slm_shm_store_sq_consumed(&shm, sq.pos);
            continue;
        }
        if (s.op == SLM_OP_COMPLETE || s.op == SLM_OP_CHAT) record(f, &s, shm.arena, shm.arena_bytes);
        slm_shm_store_sq_consumed(&shm, sq.pos);
        switch (s.op) {
        case SLM_OP_COMPLETE:
            snprintf(f->last_payload, sizeof f->last_payload, "%.*s", (int)len, (const char *)payload);
            answer_complete(f, &shm, &cq, &s, payload, len, &pending);
            break;
        case SLM_OP_CHAT: {
            /* Decoded as "role=content;" for each message, then answered like a prompt. */
            char out[512] = "";
            const uint8_t *p = payload, *end = payload + len;
            for (uint32_t i = 0; i < s.n_items && p + 4 <= end; i++) {
                uint32_t n[2];
                const char *str[2];
                for (int k = 0; k < 2; k++) {
                    memcpy(&n[k], p, 4);
                    str[k] = (const char *)p + 4;
                    p += 4 + n[k];
                }
                size_t have = strlen(out);
                snprintf(out + have, sizeof out - have, "%.*s=%.*s;", (int)n[0], str[0], (int)n[1], str[1]);
            }
            snprintf(f->last_payload, sizeof f->last_payload, "%s", out);
            answer_complete(f, &shm, &cq, &s, (const uint8_t *)out, (uint32_t)strlen(out), &pending);
            break;
        }
        case SLM_OP_TOKENIZE: {
            int32_t ids[1024];
            uint32_t n = len < 1024 ? len : 1024;
            for (uint32_t i = 0; i < n; i++) ids[i] = 1000 + payload[i];
            put_data(&shm, &cq, f, s.user_data, ids, 4 * (size_t)n);
            break;
        }
        case SLM_OP_DETOKENIZE: {
            char text[1024];
            uint32_t n = s.n_items < 1024 ? s.n_items : 1024;
            for (uint32_t i = 0; i < n; i++) {
                int32_t id;
                memcpy(&id, payload + 4 * i, 4);
                text[i] = (char)(id - 1000);
            }
            put_data(&shm, &cq, f, s.user_data, text, n);
            break;
        }
        case SLM_OP_INFO: {
            struct slm_wire_info w;
            memset(&w, 0, sizeof w);
            strcpy(w.model, "fake.gguf");
            strcpy(w.arch, "llama");
            strcpy(w.backend, "cpu");
            w.n_ctx = 2048;
            w.n_vocab = 49152;
            w.max_seqs = 16;
            w.max_batch_tokens = 512;
            w.kv_blocks = 128;
            w.block_size = 16;
            put_data(&shm, &cq, f, s.user_data, &w, sizeof w);
            break;
        }
        case SLM_OP_STATS: {
            struct slm_wire_stats w;
            memset(&w, 0, sizeof w);
            w.clients = 1;
            w.requests_total = 7;
            w.tokens_generated = 99;
            w.uptime_s = 1.5;
            put_data(&shm, &cq, f, s.user_data, &w, sizeof w);
            break;
        }
        case SLM_OP_CANCEL:
            if (pending && s.target == pending) {
                put_done(&shm, &cq, f, pending, SLM_WIRE_CANCELLED, 0, 0);
                pending = 0;
            } else {
                put_error(&shm, &cq, f, s.user_data, -ENOENT, "no such request");
            }
            break;
        default:
            put_error(&shm, &cq, f, s.user_data, -EINVAL, "unknown op");
        }
    }
    slm_shm_unmap(&shm);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    int sock = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (sock < 0) return NULL;
    struct slm_hello h;
    char err[SLM_ERR_LEN];
    int rc = slm_hello_recv(sock, &h, err);
    if (rc == 0 && f->mode == FAKE_REFUSE) {
        slm_welcome_refuse(sock, -EACCES, "user 1234 is not in allow_users");
    } else if (rc == 0 && f->mode == FAKE_BAD_VERSION) {
        struct slm_shm shm;
        if (slm_shm_create(&shm, 0, 0, 0, err) == 0) {
            struct slm_welcome w;
            memset(&w, 0, sizeof w);
            w.magic = SLM_PROTO_MAGIC;
            w.type = SLM_MSG_WELCOME;
            w.version = SLM_PROTO_VERSION + 1;
            w.shm_bytes = shm.bytes;
            slm_welcome_send_raw(sock, &w, shm.fd, err);
            slm_shm_unmap(&shm);
        }
    } else if (rc == 0) {
        serve(f, sock);
    }
    close(sock);
    return NULL;
}

static int fake_start(struct fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    char dir[] = "/tmp/test_libslm.XXXXXX";
    if (!mkdtemp(dir)) return -1;
    snprintf(f->path, sizeof f->path, "%s/slmd.sock", dir);
    f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strcpy(a.sun_path, f->path);
    if (bind(f->listen_fd, (struct sockaddr *)&a, sizeof a) || listen(f->listen_fd, 4)) return -1;
    return pthread_create(&f->thread, NULL, fake_main, f) ? -1 : 0;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
    unlink(f->path);
    char *slash = strrchr(f->path, '/');
    *slash = 0;
    rmdir(f->path);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_stream(struct slm_client *c, struct fake *f)
{
    struct slm_params p;
    slm_params_default(&p);
    p.temperature = 0.25f;
    p.top_k = 7;
    p.logprobs = 2;
    const char *stops[] = { "\n\n", "User:" };
    int32_t stop_ids[] = { 2, 5 };
    p.stop = stops;
    p.n_stop = 2;
    p.stop_ids = stop_ids;
    p.n_stop_ids = 2;
    const char *prompt = "ab#c";
    int64_t h = slm_submit_text(c, prompt, &p);
    CHECK(h > 0, "submit: expected a handle, got %lld", (long long)h);
    char text[512] = "";
    size_t tl = 0;
    int n_tok = 0, done = 0;
    struct slm_event ev;
    while (!done) {
        int rc = slm_next_event(c, &ev, 5000);
        CHECK(rc == 1, "next_event: expected 1, got %d", rc);
        if (rc != 1) return;
        CHECK(ev.handle == h, "event handle: expected %lld, got %lld", (long long)h, (long long)ev.handle);
        if (ev.type == SLM_EVENT_TOKEN) {
            CHECK(ev.token == (unsigned char)prompt[n_tok], "token %d: expected %d, got %d", n_tok, prompt[n_tok],
                  ev.token);
            CHECK(ev.n_top == 2 && ev.top && ev.top[1].token == ev.token + 1 && ev.top[1].logprob == -1.0f,
                  "token %d top: expected 2 alternatives, got %d", n_tok, ev.n_top);
            memcpy(text + tl, ev.text, ev.text_len);
            tl += ev.text_len;
            n_tok++;
        } else {
            CHECK(ev.type == SLM_EVENT_DONE, "last event: expected DONE, got %d", ev.type);
            CHECK(ev.finish == SLM_FINISH_STOP && ev.n_prompt == 4 && ev.n_generated == 4,
                  "usage: expected STOP 4/4, got %d %d/%d", ev.finish, ev.n_prompt, ev.n_generated);
            done = 1;
        }
    }
    char want[512];
    snprintf(want, sizeof want, "ab%sc", long_piece);
    CHECK(n_tok == 4, "tokens: expected 4, got %d", n_tok);
    CHECK(tl == strlen(want) && memcmp(text, want, tl) == 0, "text: expected %zu bytes, got %zu", strlen(want), tl);
    CHECK(strcmp(f->last_payload, prompt) == 0, "payload: expected %s, got %s", prompt, f->last_payload);
    CHECK(strcmp(f->last_stops, "\n\n|User:|") == 0, "stops: expected \\n\\n|User:|, got %s", f->last_stops);
    CHECK(f->last_n_stop_ids == 2 && f->last_stop_ids_sum == 7, "stop ids: expected 2 summing to 7, got %d, %d",
          f->last_n_stop_ids, f->last_stop_ids_sum);
    CHECK(f->last_temperature == 0.25f && f->last_top_k == 7, "sampling: expected 0.25/7, got %g/%d",
          f->last_temperature, f->last_top_k);
    CHECK(slm_next_event(c, &ev, 0) == 0, "poll after DONE: expected 0");
}

struct count_ctx {
    int tokens, done;
};

static int count_events(void *ctx, const struct slm_event *ev)
{
    struct count_ctx *cc = ctx;
    if (ev->type == SLM_EVENT_TOKEN) cc->tokens++;
    if (ev->type == SLM_EVENT_DONE) cc->done++;
    return 0;
}

static void test_wait_generate_chat(struct slm_client *c, struct fake *f)
{
    struct slm_params p;
    slm_params_default(&p);
    int64_t h1 = slm_submit_text(c, "xyz", &p);
    int64_t h2 = slm_submit_text(c, "hello", &p);
    struct count_ctx cc = { 0, 0 };
    int rc = slm_wait(c, h2, count_events, &cc);
    CHECK(rc == 0 && cc.tokens == 5 && cc.done == 1, "wait h2: expected 0, 5 tokens, 1 done, got %d %d %d", rc,
          cc.tokens, cc.done);
    /* h1's events were kept for slm_next_event, in order. */
    struct slm_event ev;
    int n = 0;
    while (slm_next_event(c, &ev, 1000) == 1) {
        CHECK(ev.handle == h1, "kept event: expected handle %lld, got %lld", (long long)h1, (long long)ev.handle);
        n++;
        if (ev.type == SLM_EVENT_DONE) break;
    }
    CHECK(n == 4, "kept events of h1: expected 4, got %d", n);

    char *text = NULL;
    struct slm_event done;
    p.max_tokens = 3;
    rc = slm_generate(c, "The capital", &p, &text, &done);
    CHECK(rc == 0 && text && strcmp(text, "The") == 0, "generate: expected \"The\", got %d \"%s\"", rc,
          text ? text : "(null)");
    CHECK(done.finish == SLM_FINISH_LENGTH && done.n_generated == 3, "generate usage: expected LENGTH 3, got %d %d",
          done.finish, done.n_generated);
    free(text);

    struct slm_message msgs[] = { { "system", "be brief" }, { "user", "hi" } };
    p.max_tokens = 100;
    int64_t h = slm_submit_chat(c, msgs, 2, &p);
    cc = (struct count_ctx){ 0, 0 };
    rc = slm_wait(c, h, count_events, &cc);
    CHECK(rc == 0, "chat wait: expected 0, got %d", rc);
    CHECK(strcmp(f->last_payload, "system=be brief;user=hi;") == 0, "chat payload: got %s", f->last_payload);
    CHECK(f->last_flags & SLM_SQE_ADD_GENERATION_PROMPT, "chat flags: expected ADD_GENERATION_PROMPT");
    CHECK(cc.tokens == (int)strlen("system=be brief;user=hi;"), "chat tokens: got %d", cc.tokens);
}

static void test_sync(struct slm_client *c)
{
    const char *text = "a fairly long text that needs several DATA chunks to come back";
    int32_t *ids = NULL;
    int n = 0;
    int rc = slm_tokenize(c, text, &ids, &n);
    CHECK(rc == 0 && n == (int)strlen(text), "tokenize: expected %zu ids, got rc %d n %d", strlen(text), rc, n);
    int ok = rc == 0;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == 1000 + (unsigned char)text[i];
    CHECK(ok, "tokenize ids: expected 1000 + byte");
    char *back = NULL;
    rc = slm_detokenize(c, ids, n, &back);
    CHECK(rc == 0 && back && strcmp(back, text) == 0, "detokenize: expected the text, got %d %s", rc,
          back ? back : "(null)");
    free(back);
    free(ids);

    struct slm_info info;
    rc = slm_info(c, &info);
    CHECK(rc == 0 && strcmp(info.model, "fake.gguf") == 0 && strcmp(info.backend, "cpu") == 0 &&
              info.n_vocab == 49152 && info.block_size == 16,
          "info: got %d %s %s %d", rc, info.model, info.backend, info.n_vocab);
    struct slm_stats st;
    rc = slm_stats(c, &st);
    CHECK(rc == 0 && st.requests_total == 7 && st.tokens_generated == 99 && st.uptime_s == 1.5,
          "stats: got %d %llu %llu %g", rc, (unsigned long long)st.requests_total,
          (unsigned long long)st.tokens_generated, st.uptime_s);
}

static void test_cancel(struct slm_client *c)
{
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 0;   /* the fake daemon holds it until cancelled */
    int64_t h = slm_submit_text(c, "forever", &p);
    struct slm_event ev;
    CHECK(slm_next_event(c, &ev, 50) == 0, "before cancel: expected no event");
    int rc = slm_cancel(c, h);
    CHECK(rc == 0, "cancel: expected 0, got %d", rc);
    rc = slm_next_event(c, &ev, 5000);
    CHECK(rc == 1 && ev.handle == h && ev.type == SLM_EVENT_DONE && ev.finish == SLM_FINISH_CANCELLED,
          "cancelled: expected DONE CANCELLED, got %d type %d finish %d", rc, ev.type, ev.finish);
}

static void test_ring_full(struct slm_client *c, struct fake *f)
{
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 1;
    atomic_store(&f->stall, 1);
    int n = 0;
    int64_t h;
    while ((h = slm_submit_text(c, "q", &p)) > 0) n++;
    CHECK(h == -EAGAIN, "full: expected -EAGAIN, got %lld", (long long)h);
    CHECK(n == SLM_SHM_DEFAULT_SQ_ENTRIES, "submitted before full: expected %u, got %d", SLM_SHM_DEFAULT_SQ_ENTRIES, n);
    atomic_store(&f->stall, 0);
    int done = 0;
    struct slm_event ev;
    while (done < n && slm_next_event(c, &ev, 5000) == 1)
        if (ev.type == SLM_EVENT_DONE) done++;
    CHECK(done == n, "done after unstall: expected %d, got %d", n, done);
    h = slm_submit_text(c, "q", &p);
    CHECK(h > 0, "submit after drain: expected a handle, got %lld", (long long)h);
    CHECK(slm_wait(c, h, NULL, NULL) == 0, "wait after drain");
}

int main(void)
{
    memset(long_piece, 'L', LONG_PIECE_LEN);
    long_piece[LONG_PIECE_LEN - 1] = 'Z';

    struct fake f;
    struct slm_client *c = NULL;
    if (fake_start(&f, FAKE_SERVE) != 0) {
        printf("cannot start the fake daemon\n");
        return 1;
    }
    int rc = slm_connect(f.path, "test_libslm", &c);
    CHECK(rc == 0 && c, "connect: expected 0, got %d (%s)", rc, slm_last_error());
    if (c) {
        test_stream(c, &f);
        test_wait_generate_chat(c, &f);
        test_sync(c);
        test_cancel(c);
        test_ring_full(c, &f);
        slm_close(&c);
        CHECK(c == NULL, "close: expected NULL");
    }
    fake_stop(&f);

    /* $SLM_SOCKET is used when the path is NULL. */
    fake_start(&f, FAKE_SERVE);
    setenv("SLM_SOCKET", f.path, 1);
    rc = slm_connect(NULL, "env", &c);
    CHECK(rc == 0, "connect via $SLM_SOCKET: expected 0, got %d", rc);
    slm_close(&c);
    unsetenv("SLM_SOCKET");
    fake_stop(&f);

    /* The daemon goes away with a request running: -ECONNRESET, not a hang. */
    fake_start(&f, FAKE_SERVE);
    rc = slm_connect(f.path, "reset", &c);
    CHECK(rc == 0, "connect (reset): expected 0, got %d", rc);
    if (c) {
        struct slm_params p;
        slm_params_default(&p);
        p.max_tokens = 0;
        int64_t h = slm_submit_text(c, "forever", &p);
        CHECK(h > 0, "submit (reset): got %lld", (long long)h);
        usleep(20000);
        fake_stop(&f);
        struct slm_event ev;
        rc = slm_next_event(c, &ev, 5000);
        CHECK(rc == -ECONNRESET, "daemon gone: expected -ECONNRESET, got %d", rc);
        slm_close(&c);
    } else {
        fake_stop(&f);
    }

    fake_start(&f, FAKE_REFUSE);
    rc = slm_connect(f.path, "refused", &c);
    CHECK(rc == -EACCES && !c, "refused: expected -EACCES, got %d", rc);
    CHECK(strstr(slm_last_error(), "not in allow_users") != NULL, "refusal reason: got \"%s\"", slm_last_error());
    fake_stop(&f);

    fake_start(&f, FAKE_BAD_VERSION);
    rc = slm_connect(f.path, "version", &c);
    CHECK(rc == -EPROTO && !c, "version mismatch: expected -EPROTO, got %d (%s)", rc, slm_last_error());
    fake_stop(&f);

    rc = slm_connect("/tmp/test_libslm-no-such-dir/slmd.sock", "missing", &c);
    CHECK(rc == -ENOENT && !c, "missing socket: expected -ENOENT, got %d", rc);
    CHECK(strcmp(slm_strerror(-ENOENT), "") != 0, "strerror: expected text");

    if (failures) {
        printf("%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
