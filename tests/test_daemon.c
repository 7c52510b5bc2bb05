/*
 * tests/test_daemon.c - the real `slmd serve` with real clients (libslm), black box:
 *   - 32 clients x 8 concurrent requests each (half greedy, half sampled with a seed): every
 *     text equals the one the same request gives alone (first, through the daemon, one at a
 *     time); every request gets exactly one DONE, as many tokens as its usage says, and no
 *     event of a request the client did not submit;
 *   - a hostile client writing garbage SQEs (unknown op, payloads outside the arena, a wrong
 *     id count) gets error completions; bad handshakes (a wrong protocol version: -EPROTO
 *     naming both; garbage bytes; a wrong magic) are refused; a client scribbling random bytes
 *     over its rings, arena and header, and flooding its ring, harms no one else: the daemon
 *     goes on answering the others with identical outputs;
 *   - a client killed with SIGKILL mid-stream: its requests are cancelled and every KV block
 *     comes back (stats), the others unaffected;
 *   - a client that never reads its completions is disconnected once too many wait for it;
 *   - chat equals `slmd run --chat`; stop strings and stop ids cut the output; detokenize
 *     inverts tokenize; prompt logprobs arrive once each, in order, and agree with the logprob
 *     of the same token generated;
 *   - no lost wakeup: 4 clients x 150 one-token requests, each after a pause that straddles the
 *     daemon's spin (a second daemon at spin-us 0, then 20 with a client ringing the doorbell
 *     without pause beside them), each answered within 5 s (the engine thread's idle sleep has
 *     no timeout, so a lost doorbell hangs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"
#include "client/slm.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"
#include "tests/rng.h"

#define N_CLIENTS 32
#define N_PER 8

static char sock_path[128];
static const char *prompts[] = {"The capital of France is", "Once upon a time", "def fib(n):", "Water boils at",
                                "My favourite colour is", "1, 2, 3, 4,", "The sun is a", "Hello, my name is"};

static void params(struct slm_params *p, int k)
{
    slm_params_default(p);
    p->max_tokens = 10;
    p->temperature = k % 2 ? 0.8f : 0.0f;   /* half sampled with a seed, half greedy */
    p->seed = 1000 + (uint64_t)k;
}

static char *generate(struct slm_client *c, int k)
{
    struct slm_params p;
    params(&p, k);
    char *text = NULL;
    int rc = slm_generate(c, prompts[k % 8], &p, &text, NULL);
    if (rc < 0) {
        printf("generate %d: %s\n", k, slm_strerror(rc));
        return NULL;
    }
    return text;
}

struct worker {
    int id;
    char *texts[N_PER];
    int bad;
    char why[160];
};

/* One client, N_PER requests in flight at once. */
static void *client_main(void *arg)
{
    struct worker *w = arg;
    struct slm_client *c;
    if (slm_connect(sock_path, "worker", &c) < 0) {
        w->bad = 1;
        return NULL;
    }
    int64_t h[N_PER];
    size_t len[N_PER] = {0};
    int tokens[N_PER] = {0}, finished[N_PER] = {0};
    int done = 0;
    for (int i = 0; i < N_PER; i++) {
        struct slm_params p;
        params(&p, w->id * N_PER + i);
        h[i] = slm_submit_text(c, prompts[(w->id * N_PER + i) % 8], &p);
        w->texts[i] = calloc(1, 4096);
        if (h[i] < 0) snprintf(w->why, sizeof w->why, "submit %d: %s", i, slm_strerror((int)h[i]));
    }
    struct slm_event ev;
    /* A generous wait: 256 requests queue behind max-seqs, and sanitizer builds are slow. */
    while (!w->why[0] && done < N_PER && slm_next_event(c, &ev, 300000) == 1) {
        int i = 0;
        while (i < N_PER && ev.handle != h[i]) i++;
        if (i == N_PER) {
            snprintf(w->why, sizeof w->why, "an event (type %d) of handle %lld, never submitted", ev.type,
                     (long long)ev.handle);
        } else if (finished[i]) {
            snprintf(w->why, sizeof w->why, "request %d: an event (type %d) after its end", i, ev.type);
        } else if (ev.type == SLM_EVENT_TOKEN) {
            tokens[i]++;
            if (len[i] + ev.text_len < 4096) {
                memcpy(w->texts[i] + len[i], ev.text, ev.text_len);
                len[i] += ev.text_len;
            }
        } else if (ev.type == SLM_EVENT_ERROR) {
            snprintf(w->why, sizeof w->why, "request %d: error %s", i, ev.message);
        } else {
            finished[i] = 1;
            done++;
            if (ev.n_generated != tokens[i])
                snprintf(w->why, sizeof w->why, "request %d: %d token events, usage says %d", i, tokens[i],
                         ev.n_generated);
        }
    }
    /* Nothing may follow the last DONE (a duplicate would). */
    if (!w->why[0] && slm_next_event(c, &ev, 200) == 1)
        snprintf(w->why, sizeof w->why, "an event (type %d) after every request ended", ev.type);
    if (!w->why[0] && done < N_PER) snprintf(w->why, sizeof w->why, "%d of %d requests never ended", N_PER - done, N_PER);
    w->bad = w->why[0] != 0;
    slm_close(&c);
    return NULL;
}

/* A raw client of the daemon at path: the handshake by hand, the shared memory mapped; its
 * socket, or -1. */
static int raw_client_at(const char *path, const char *name, struct slm_shm *shm, struct slm_ring *sq,
                         struct slm_ring *cq)
{
    char err[256] = "";
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    struct slm_welcome w;
    int shm_fd = -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) || slm_hello_send(fd, name, 0, 0, 0, err) ||
        slm_welcome_recv(fd, &w, &shm_fd, err) || w.status || slm_shm_map(shm, shm_fd, w.shm_bytes, err)) {
        printf("%s: handshake failed: %s\n", name, err);
        if (fd >= 0) close(fd);
        return -1;
    }
    slm_shm_rings(shm, sq, cq);
    return fd;
}

static int raw_client(const char *name, struct slm_shm *shm, struct slm_ring *sq, struct slm_ring *cq)
{
    return raw_client_at(sock_path, name, shm, sq, cq);
}

/* SQEs written straight into a raw client's ring. */
static int hostile(void)
{
    struct slm_shm shm;
    struct slm_ring sq, cq;
    int fd = raw_client("hostile", &shm, &sq, &cq);
    if (fd < 0) return -1;
    struct slm_sqe bad[4];
    memset(bad, 0, sizeof bad);
    bad[0] = (struct slm_sqe){.op = 99, .user_data = 1};
    bad[1] = (struct slm_sqe){.op = SLM_OP_COMPLETE, .user_data = 2, .payload_off = 0xfffffff0u, .payload_len = 64};
    bad[2] = (struct slm_sqe){.op = SLM_OP_COMPLETE_IDS, .user_data = 3, .payload_off = 0, .payload_len = 8,
                              .n_items = 1000};
    bad[3] = (struct slm_sqe){.op = SLM_OP_COMPLETE, .user_data = 4, .payload_off = 0, .payload_len = 0x7fffffff};
    for (int i = 0; i < 4; i++) slm_ring_push(&sq, &bad[i]);
    slm_doorbell_ring(&shm, fd);
    /* Up to 30 s: the daemon answers between steps, and under AddressSanitizer, with 256 requests in
     * flight and another test beside it, a step took long enough that 5 s once went by without an
     * answer (2026-12-06, `ctest -j2` in build-asan; alone it passes). */
    int errors = 0;
    for (int tries = 0; tries < 300 && errors < 4; tries++) {
        if (slm_wait_cq(&shm, &cq, 100)) continue;
        const struct slm_cqe *q;
        while ((q = slm_ring_peek(&cq))) {
            errors += q->kind == SLM_CQE_ERROR && q->status < 0;
            slm_ring_seen(&cq);
        }
    }
    slm_shm_unmap(&shm);
    close(fd);
    return errors;
}

/* Handshakes the daemon must refuse: returns how many were. */
static int bad_handshakes(void)
{
    int refused = 0;
    for (int kind = 0; kind < 3; kind++) {
        char err[256] = "";
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, sock_path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
            if (fd >= 0) close(fd);
            continue;
        }
        struct slm_hello h = {.magic = SLM_PROTO_MAGIC, .type = SLM_MSG_HELLO, .version = SLM_PROTO_VERSION + 7};
        strcpy(h.name, "bad-hello");
        if (kind == 0) {
            slm_hello_send_raw(fd, &h, err);
        } else if (kind == 1) {
            h.version = SLM_PROTO_VERSION;
            h.magic ^= 0x01010101u;
            slm_hello_send_raw(fd, &h, err);
        } else {
            char junk[7] = "\x01junk\xff";
            if (send(fd, junk, sizeof junk, 0) < 0) {}
        }
        struct slm_welcome w;
        int shm_fd = -1;
        int rc = slm_welcome_recv(fd, &w, &shm_fd, err);
        if (kind == 0) {
            char want[64];
            snprintf(want, sizeof want, "%d", SLM_PROTO_VERSION + 7);
            int ok = rc == -EPROTO && w.status == -EPROTO && strstr(w.reason, want);
            if (!ok) printf("a HELLO of version %d: rc %d, status %d, reason '%s'\n", SLM_PROTO_VERSION + 7, rc,
                            w.status, w.reason);
            refused += ok;
        } else {
            /* The daemon hangs up without a WELCOME. */
            int ok = rc < 0 && rc != -EAGAIN && shm_fd < 0;
            if (!ok) printf("bad HELLO %d: rc %d\n", kind, rc);
            refused += ok;
        }
        if (shm_fd >= 0) close(shm_fd);
        close(fd);
    }
    return refused;
}

/* A client that scribbles random bytes over everything it can write (ring slots, arena, the
 * header's lines) and floods its submission ring with random SQEs for `seconds`, ringing the
 * doorbell, never reading. 0 when it ran (whatever the daemon did with it). */
static int scribbler(double seconds)
{
    struct slm_shm shm;
    struct slm_ring sq, cq;
    int fd = raw_client("scribbler", &shm, &sq, &cq);
    if (fd < 0) return -1;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t pushed = 0;
    for (int round = 0;; round++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > seconds) break;
        uint64_t *arena = (uint64_t *)(void *)shm.arena;
        for (uint32_t i = 0; i < shm.arena_bytes / 8; i += 61) arena[i] = rnd();
        uint8_t *cqb = shm.cq;
        for (uint32_t i = 0; i < shm.cq_entries * 128; i += 8) *(uint64_t *)(void *)(cqb + i) = rnd();
        if (round % 4 == 0) {   /* the header page: every line, even the daemon's */
            uint8_t *hdr = (uint8_t *)shm.base;
            for (int i = 0; i < 192; i += 8) *(uint64_t *)(void *)(hdr + i) = rnd();
        }
        uint8_t e[128];
        for (int k = 0; k < 64; k++) {
            for (int i = 0; i < 128; i += 8) *(uint64_t *)(void *)(e + i) = rnd();
            if (slm_ring_push(&sq, e) == 0) pushed++;
        }
        if (round % 8 == 7) {   /* and random sequence words over the whole ring */
            uint8_t *sqb = sq.slots;
            for (uint32_t i = 0; i < sq.entries; i++) *(uint32_t *)(void *)(sqb + (size_t)i * 128) = (uint32_t)rnd();
        }
        char b = 0;
        if (send(fd, &b, 1, MSG_DONTWAIT) < 0 && errno != EAGAIN) break;   /* hung up on */
        usleep(2000);
    }
    slm_shm_unmap(&shm);
    close(fd);
    return pushed > 0 ? 0 : -1;
}

/* A raw client that submits TOKENIZE requests of a long text and never reads a completion.
 * Returns 1 when the daemon hangs up on it. */
static int never_reads(void)
{
    struct slm_shm shm;
    struct slm_ring sq, cq;
    int fd = raw_client("never-reads", &shm, &sq, &cq);
    if (fd < 0) return 0;
    const uint32_t len = 60000;   /* ~15,000 tokens: ~700 completions per answer */
    for (uint32_t i = 0; i < len; i++) shm.arena[i] = (uint8_t)("ab cd "[i % 6]);
    struct slm_sqe q = {.op = SLM_OP_TOKENIZE, .payload_off = 0, .payload_len = len};
    int hung_up = 0;
    for (int i = 0; i < 2000 && !hung_up; i++) {
        q.user_data = (uint64_t)i + 1;
        while (slm_ring_push(&sq, &q) != 0) {   /* wait for the daemon to take some */
            char b;
            if (recv(fd, &b, 1, MSG_DONTWAIT) == 0) {
                hung_up = 1;
                break;
            }
            usleep(1000);
        }
        slm_doorbell_ring(&shm, fd);
    }
    for (int i = 0; i < 200 && !hung_up; i++) {
        char b;
        hung_up = recv(fd, &b, 1, MSG_DONTWAIT) == 0;
        if (!hung_up) usleep(10000);
    }
    slm_shm_unmap(&shm);
    close(fd);
    return hung_up;
}

/* Streams request h to its end; its text into out (NUL-terminated), the DONE event into *done. */
static void collect(struct slm_client *c, int64_t h, char *out, size_t cap, struct slm_event *done)
{
    size_t n = 0;
    struct slm_event ev;
    memset(done, 0, sizeof *done);
    while (slm_next_event(c, &ev, 60000) == 1) {
        if (ev.handle != h) continue;
        if (ev.type == SLM_EVENT_TOKEN && n + ev.text_len < cap) {
            memcpy(out + n, ev.text, ev.text_len);
            n += ev.text_len;
        }
        if (ev.type != SLM_EVENT_TOKEN) {
            *done = ev;
            break;
        }
    }
    out[n] = 0;
}

/* ---- no lost wakeup: the engine thread's idle sleep against submissions from several clients */

#define WAKE_CLIENTS 4
#define WAKE_ROUNDS 150

struct waker {
    int id;
    char why[256];
};

/* Starts slmd serve on sock with the model and the flags of extra (NULL-terminated), and
 * connects to it as name within 30 s. Returns the daemon's pid with *out connected; on failure a
 * CHECK failure, the daemon killed and reaped, and -1. */
static pid_t serve_and_connect(const char *slmd, const char *model, const char *sock, const char *const *extra,
                               const char *name, struct slm_client **out)
{
    const char *argv[32] = {slmd, "serve", "--socket", sock, "--model", model};
    int n = 6;
    for (int i = 0; extra[i] && n < 31; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t d = fork();
    if (d == 0) {
        execv(slmd, (char *const *)argv);
        _exit(127);
    }
    *out = NULL;
    for (int i = 0; i < 300 && slm_connect(sock, name, out) < 0; i++) usleep(100000);
    CHECK(*out != NULL, "cannot connect to slmd at %s", sock);
    if (*out) return d;
    kill(d, SIGKILL);
    waitpid(d, NULL, 0);
    return -1;
}

static char wake_sock[128];

/* One client: WAKE_ROUNDS times, a pause, one one-token request, its events to DONE, each
 * within 5 s. The pauses (none to 3 ms) straddle the daemon's spin (spin-us 0 or 20), so
 * submissions land before, during and after the engine thread arms NEED_WAKEUP and sleeps. Its
 * idle sleep has no timeout (no watchdog, nothing pending): a lost doorbell is a hang here,
 * unless another client's doorbell happens to rescue it, and the rounds make that rare. */
static void *wake_main(void *arg)
{
    struct waker *w = arg;
    static const int gaps_us[] = {0, 0, 5, 10, 20, 30, 50, 80, 120, 200, 500, 1000, 3000};
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    struct slm_client *c;
    int rc = slm_connect(wake_sock, "waker", &c);
    if (rc < 0) {
        snprintf(w->why, sizeof w->why, "connect: %s", slm_strerror(rc));
        return NULL;
    }
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 1;
    p.temperature = 0;
    int32_t prompt[2] = {1, 2 + w->id};
    for (int r = 0; r < WAKE_ROUNDS && !w->why[0]; r++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int gap = gaps_us[x % (sizeof gaps_us / sizeof gaps_us[0])];
        if (gap) usleep((useconds_t)gap);
        int64_t h = slm_submit_ids(c, prompt, 2, &p);
        if (h < 0) {
            snprintf(w->why, sizeof w->why, "round %d: submit: %s", r, slm_strerror((int)h));
            break;
        }
        struct slm_event ev;
        do {
            rc = slm_next_event(c, &ev, 5000);
        } while (rc == 1 && ev.type == SLM_EVENT_TOKEN);
        if (rc != 1)
            snprintf(w->why, sizeof w->why, "round %d (pause %d us): expected its DONE within 5 s, got %s", r, gap,
                     rc ? slm_strerror(rc) : "nothing (a lost wakeup)");
        else if (ev.type != SLM_EVENT_DONE || ev.handle != h)
            snprintf(w->why, sizeof w->why, "round %d: expected DONE of handle %lld, got event type %d of %lld", r,
                     (long long)h, ev.type, (long long)ev.handle);
    }
    slm_close(&c);
    return NULL;
}

static int flood_stop;

/* A client that rings the doorbell without pause (bursts of 256, a millisecond apart) and
 * submits nothing: the idle engine thread keeps waking for it, and must still serve the others. */
static void *flood_main(void *arg)
{
    (void)arg;
    struct slm_shm shm;
    struct slm_ring sq, cq;
    int fd = raw_client_at(wake_sock, "flooder", &shm, &sq, &cq);
    if (fd < 0) return NULL;
    char b = 1;
    while (!__atomic_load_n(&flood_stop, __ATOMIC_RELAXED)) {
        for (int i = 0; i < 256; i++)
            if (send(fd, &b, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN) goto out;
        usleep(1000);
    }
out:
    close(fd);
    slm_shm_unmap(&shm);
    return NULL;
}

/* Its own daemon at spin-us 0, then 20 with a doorbell flooder beside the clients and
 * overlap-steps whose two threads poll for each other (pass-spin-us 200): every submission after
 * a pause finds the engine thread asleep or on its way there. Returns the failures. */
static int wakeups(const char *slmd, const char *model)
{
    int bad = 0;
    const char *spins[] = {"0", "20"};
    for (int k = 0; k < 2; k++) {
        snprintf(wake_sock, sizeof wake_sock, "/tmp/slmd-test-wake-%d.sock", (int)getpid());
        /* the second with overlapped steps (each pass on the engine's own thread) */
        const char *extra[] = {"--kv-cache-mem", "64M", "--threads", "1", "--spin-us", spins[k], "--log-level",
                               "warning", k ? "--overlap-steps" : NULL, "--pass-spin-us", "200", NULL};
        struct slm_client *probe;
        pid_t d = serve_and_connect(slmd, model, wake_sock, extra, "probe", &probe);
        if (d < 0) return 1;
        slm_close(&probe);
        struct waker w[WAKE_CLIENTS];
        pthread_t t[WAKE_CLIENTS], flooder;
        memset(w, 0, sizeof w);
        flood_stop = 0;
        if (k == 1) pthread_create(&flooder, NULL, flood_main, NULL);
        for (int i = 0; i < WAKE_CLIENTS; i++) {
            w[i].id = i;
            pthread_create(&t[i], NULL, wake_main, &w[i]);
        }
        for (int i = 0; i < WAKE_CLIENTS; i++) {
            pthread_join(t[i], NULL);
            CHECK(!w[i].why[0], "wakeups, spin-us %s, client %d: %s", spins[k], i, w[i].why);
            bad += w[i].why[0] != 0;
        }
        if (k == 1) {
            __atomic_store_n(&flood_stop, 1, __ATOMIC_RELAXED);
            pthread_join(flooder, NULL);
        }
        kill(d, SIGTERM);
        int status = 0;
        waitpid(d, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "wakeups: slmd exit status %d after SIGTERM", status);
    }
    return bad;
}

/* Chat, stop strings, stop ids, detokenize. */
static void features(struct slm_client *c, const char *slmd, const char *model)
{
    struct slm_params p;
    slm_params_default(&p);
    p.temperature = 0;
    p.max_tokens = 12;
    struct slm_message m[] = {{"system", "Answer briefly."}, {"user", "What is the capital of France?"}};
    char got[4096], want[4096] = "";
    struct slm_event done;
    int64_t h = slm_submit_chat(c, m, 2, &p);
    CHECK(h > 0, "submit_chat: %s", slm_strerror((int)h));
    collect(c, h, got, sizeof got, &done);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --chat --system 'Answer briefly.' --prompt 'What is the capital "
             "of France?' --temperature 0 --max-tokens 12 --threads 2", slmd, model);
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(want, 1, sizeof want - 1, f) : 0;
    if (f) pclose(f);
    want[n] = 0;
    if (n && want[n - 1] == '\n') want[n - 1] = 0;   /* slmd run ends with a newline */
    CHECK(got[0] && !strcmp(got, want), "chat: daemon '%s', slmd run --chat '%s'", got, want);

    /* A stop string taken from the greedy text: the output ends right before it. */
    h = slm_submit_text(c, "The capital of France is", &p);
    collect(c, h, got, sizeof got, &done);
    const char *cut = strstr(got, "United");
    CHECK(cut != NULL, "greedy text '%s' lacks the stop string's source", got);
    if (cut) {
        const char *stop[] = {"United"};
        p.stop = stop;
        p.n_stop = 1;
        char before[4096];
        h = slm_submit_text(c, "The capital of France is", &p);
        collect(c, h, before, sizeof before, &done);
        CHECK(done.finish == SLM_FINISH_STOP && strlen(before) == (size_t)(cut - got) &&
                  !strncmp(before, got, strlen(before)),
              "stop string: finish %d, text '%s', expected '%.*s'", done.finish, before, (int)(cut - got), got);
        p.stop = NULL;
        p.n_stop = 0;
    }
    /* A stop id: the first token generated. */
    int32_t *ids;
    int n_ids;
    CHECK(slm_tokenize(c, " Paris", &ids, &n_ids) == 0 && n_ids == 1, "tokenize ' Paris': %d ids", n_ids);
    if (n_ids == 1) {
        p.stop_ids = ids;
        p.n_stop_ids = 1;
        h = slm_submit_text(c, "The capital of France is", &p);
        collect(c, h, got, sizeof got, &done);
        CHECK(done.finish == SLM_FINISH_STOP && done.n_generated == 1 && !got[0],
              "stop id %d: finish %d after %d tokens, text '%s'", ids[0], done.finish, done.n_generated, got);
        free(ids);
    }
    /* Prompt logprobs: every prompt token after the first, once, in order, the ids of the
     * prompt's own encoding; the one for " Paris" equals the logprob of " Paris" generated
     * greedily after the same words (two paths through the engine, the same bits). */
    {
        int32_t *pids;
        int n_pids;
        CHECK(slm_tokenize(c, "The capital of France is Paris", &pids, &n_pids) == 0 && n_pids > 3, "tokenize");
        struct slm_params q;
        slm_params_default(&q);
        q.temperature = 0;
        q.max_tokens = 1;
        q.prompt_logprobs = 1;
        int64_t hp = slm_submit_text(c, "The capital of France is Paris", &q);
        int next = 1, bad = 0;
        float paris_lp = 1;
        struct slm_event ev;
        while (hp > 0 && slm_next_event(c, &ev, 60000) == 1) {
            if (ev.handle != hp) continue;
            if (ev.type == SLM_EVENT_PROMPT_LOGPROBS) {
                bad += ev.prompt_pos != next;
                for (int i = 0; i < ev.n_top; i++, next++) {
                    bad += next >= n_pids || ev.top[i].token != pids[next] || !(ev.top[i].logprob <= 0);
                    if (next == n_pids - 1) paris_lp = ev.top[i].logprob;
                }
            } else if (ev.type == SLM_EVENT_TOKEN) {
                bad += next != n_pids;   /* all of them before the first token */
            } else {
                CHECK(ev.type == SLM_EVENT_DONE && ev.n_prompt == n_pids, "prompt logprobs: event %d, n_prompt %d",
                      ev.type, ev.n_prompt);
                break;
            }
        }
        CHECK(!bad && next == n_pids, "prompt logprobs: %d wrong, reported up to %d of %d", bad, next, n_pids);
        q.prompt_logprobs = 0;
        q.logprobs = 1;
        int64_t hg = slm_submit_text(c, "The capital of France is", &q);
        int seen = 0;
        while (hg > 0 && slm_next_event(c, &ev, 60000) == 1) {
            if (ev.handle != hg) continue;
            if (ev.type == SLM_EVENT_TOKEN) {
                seen = 1;
                CHECK(ev.token == pids[n_pids - 1] && ev.logprob == paris_lp,
                      "' Paris' generated: token %d logprob %.9g; as a prompt token: %d %.9g", ev.token,
                      (double)ev.logprob, pids[n_pids - 1], (double)paris_lp);
            }
            if (ev.type != SLM_EVENT_TOKEN) break;
        }
        CHECK(seen, "no token after 'The capital of France is'");
        free(pids);
    }

    /* Prefill progress (issue 18): a prompt of about 2,000 tokens, above the default 512 a step,
     * reports PROGRESS events (increasing, below the prompt's length, all before the first token)
     * when asked, and none when not (two different prompts: a second run of one would be a
     * prefix-cache hit, one step). */
    for (int pass = 0; pass < 2; pass++) {
        static char lng[16384];
        size_t at = 0;
        for (int i = 0; i < 130; i++)
            at += (size_t)snprintf(lng + at, sizeof lng - at, "%s %d: the quick brown fox jumps over the lazy dog. ",
                                   pass ? "Line" : "Row", i);
        struct slm_params q;
        slm_params_default(&q);
        q.temperature = 0;
        q.max_tokens = 4;
        q.progress = pass;
        int64_t hq = slm_submit_text(c, lng, &q);
        int n_prog = 0, last = 0, bad = 0, n_tok = 0;
        struct slm_event ev;
        while (hq > 0 && slm_next_event(c, &ev, 60000) == 1) {
            if (ev.handle != hq) continue;
            if (ev.type == SLM_EVENT_PROGRESS) {
                bad += ev.n_cached <= last || ev.n_cached >= ev.n_prompt || n_tok;
                last = ev.n_cached;
                n_prog++;
            } else if (ev.type == SLM_EVENT_TOKEN) {
                n_tok++;
            } else {
                CHECK(ev.type == SLM_EVENT_DONE && ev.n_prompt > 1024 && n_tok > 0, "progress: event %d, n_prompt %d",
                      ev.type, ev.n_prompt);
                if (pass)
                    CHECK(n_prog >= 2 && !bad, "progress: %d events, %d wrong, last %d of %d", n_prog, bad, last,
                          ev.n_prompt);
                else CHECK(n_prog == 0, "progress unasked: %d events", n_prog);
                break;
            }
        }
    }

    /* Detokenize inverts tokenize. */
    const char *text = "Hello, world! Ça va? 12345";
    char *back = NULL;
    CHECK(slm_tokenize(c, text, &ids, &n_ids) == 0 && n_ids > 3, "tokenize: %d ids", n_ids);
    CHECK(slm_detokenize(c, ids, n_ids, &back) == 0 && back && !strcmp(back, text), "detokenize: '%s'",
          back ? back : "");
    free(back);
    int32_t bad = 1 << 30;
    CHECK(slm_detokenize(c, &bad, 1, &back) < 0, "detokenize of id 2^30 succeeded");
    free(ids);
}

int main(void)
{
    char model[512];
    const char *slmd = test_slmd_and_model(model, sizeof model);
    if (!slmd) return 77;
    snprintf(sock_path, sizeof sock_path, "/tmp/slmd-test-%d.sock", (int)getpid());
    const char *extra[] = {"--kv-cache-mem", "256M", "--threads", "2", "--log-level", "warning", NULL};
    struct slm_client *c;
    pid_t daemon = serve_and_connect(slmd, model, sock_path, extra, "test", &c);
    if (daemon < 0) return 1;
    struct slm_stats st0;
    CHECK(slm_stats(c, &st0) == 0, "stats");

    /* The oracle: each request alone. */
    static char *alone[N_CLIENTS * N_PER];
    for (int k = 0; k < N_CLIENTS * N_PER; k++) {
        /* Greedy requests of the same prompt are the same request: run the first alone. */
        alone[k] = k % 2 == 0 && k >= 8 ? strdup(alone[k % 8]) : generate(c, k);
        CHECK(alone[k] && alone[k][0], "request %d alone gave no text", k);
    }

    /* Everyone at once. */
    struct worker w[N_CLIENTS];
    pthread_t t[N_CLIENTS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N_CLIENTS; i++) {
        w[i].id = i;
        pthread_create(&t[i], NULL, client_main, &w[i]);
    }
    /* Meanwhile: a client killed mid-stream, and a hostile one. */
    pid_t victim = fork();
    if (victim == 0) {
        struct slm_client *v;
        if (slm_connect(sock_path, "victim", &v) < 0) _exit(1);
        struct slm_params p;
        slm_params_default(&p);
        p.max_tokens = 2000;
        p.ignore_eos = 1;
        for (int i = 0; i < 4; i++) slm_submit_text(v, "Tell me a very long story.", &p);
        struct slm_event ev;
        for (;;) slm_next_event(v, &ev, 1000);
    }
    /* Meanwhile 256 requests queue behind max-seqs (64): stats must show some waiting. */
    uint64_t max_queued = 0;
    for (int i = 0; i < 30; i++) {
        struct slm_stats sq;
        if (slm_stats(c, &sq) == 0 && sq.requests_queued > max_queued && sq.requests_queued <= sq.requests_active)
            max_queued = sq.requests_queued;
        usleep(10000);
    }
    CHECK(max_queued > 0, "stats: requests_queued never above 0 with 256 requests and 64 sequences a step");
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    int errors = hostile();
    CHECK(errors == 4, "hostile client: expected 4 error completions, got %d", errors);
    CHECK(bad_handshakes() == 3, "bad handshakes: not all 3 refused");
    CHECK(scribbler(0.5) == 0, "the scribbling client could not submit anything");
    for (int i = 0; i < N_CLIENTS; i++) pthread_join(t[i], NULL);
    int mismatches = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        CHECK(!w[i].bad, "client %d: %s", i, w[i].why);
        for (int j = 0; j < N_PER; j++) {
            int k = i * N_PER + j;
            if (alone[k] && w[i].texts[j] && strcmp(alone[k], w[i].texts[j]) != 0 && mismatches++ < 5)
                printf("request %d: alone '%s', together '%s'\n", k, alone[k], w[i].texts[j]);
            free(w[i].texts[j]);
        }
    }
    CHECK(mismatches == 0, "%d of %d requests differ from their runs alone", mismatches, N_CLIENTS * N_PER);
    /* The victim's requests are cancelled and its blocks freed; the daemon still answers. */
    struct slm_stats st;
    int settled = 0;
    for (int i = 0; i < 100 && !settled; i++) {
        settled = slm_stats(c, &st) == 0 && st.requests_active == 0 && st.kv_blocks_used == 0 && st.clients == 1;
        if (!settled) usleep(100000);
    }
    CHECK(settled, "after the victim: %llu clients, %llu requests active, %llu KV blocks used",
          (unsigned long long)st.clients, (unsigned long long)st.requests_active,
          (unsigned long long)st.kv_blocks_used);
    CHECK(never_reads(), "a client that never reads its completions was not disconnected");
    /* Usage adds up in stats: one request's prompt and cached tokens, and the uptime. */
    struct slm_stats before, after;
    struct slm_event usage;
    {
        const char *longer = "Once upon a time, in a small village at the edge of a great forest, there lived an old "
                             "clockmaker and his granddaughter, who spent her days";
        struct slm_params p;
        params(&p, 0);
        char *text = NULL;
        CHECK(slm_generate(c, longer, &p, &text, &usage) == 0, "generate");   /* its blocks into the cache */
        free(text);
        CHECK(slm_stats(c, &before) == 0, "stats");
        CHECK(slm_generate(c, longer, &p, &text, &usage) == 0, "generate");
        free(text);
        CHECK(slm_stats(c, &after) == 0, "stats");
    }
    CHECK(after.tokens_prompt - before.tokens_prompt == (uint64_t)usage.n_prompt &&
              after.tokens_cached - before.tokens_cached == (uint64_t)usage.n_cached && usage.n_cached > 0 &&
              after.uptime_s > before.uptime_s && before.uptime_s > 0 && after.requests_queued == 0,
          "stats: tokens_prompt +%llu (usage %d), tokens_cached +%llu (usage %d), uptime %.3f -> %.3f, queued %llu",
          (unsigned long long)(after.tokens_prompt - before.tokens_prompt), usage.n_prompt,
          (unsigned long long)(after.tokens_cached - before.tokens_cached), usage.n_cached, before.uptime_s,
          after.uptime_s, (unsigned long long)after.requests_queued);
    features(c, slmd, model);
    wakeups(slmd, model);
    char *again = generate(c, 0);
    CHECK(again && alone[0] && !strcmp(again, alone[0]), "after it all: '%s' vs '%s'", again ? again : "",
          alone[0] ? alone[0] : "");
    free(again);
    for (int k = 0; k < N_CLIENTS * N_PER; k++) free(alone[k]);
    slm_close(&c);
    kill(daemon, SIGTERM);
    int status = 0;
    waitpid(daemon, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "slmd exit status %d after SIGTERM", status);
    if (failures) printf("test_daemon: %d failures\n", failures);
    else printf("test_daemon: ok\n");
    return failures ? 1 : 0;
}
