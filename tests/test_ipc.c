/*
 * tests/test_ipc.c - the wire library: shared memory, rings, waiting, handshake, arena.
 *
 *  1. layout: clamping and sizes; create + map; the client's map refuses a wrong size, an
 *     unsealed memfd, a non-memfd; a header with each field corrupted in turn is rejected,
 *     an unusual but valid layout accepted.
 *  2. rings in one process: empty, full, order, the daemon's checked get; positions starting
 *     near 2^32 so that the run crosses the wrap.
 *  3. rings across two processes (fork, the memfd shared): a million SQEs with arena payloads
 *     one way, a million CQEs with data the other, every byte checked.
 *  4. futex: the client sleeps and the daemon wakes it; the timeout; thousands of ping-pongs
 *     where a lost wakeup would show as a timeout.
 *  5. NEED_WAKEUP: the daemon sleeps in poll() on the socket, the client rings the doorbell.
 *  6. handshake end to end over socketpair(SOCK_SEQPACKET) with the fd passed; bad packets.
 *  7. hostile input: random bytes in SQ slots and the arena go through the daemon's take and
 *     range checks; overflowing ranges.
 *  8. the arena allocator against a model of live ranges.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ipc/arena.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"
#include "tests/check.h"

#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "tests/rng.h"

static uint32_t rnd_below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Waits for a child; 1 if it exited 0. */
static int child_ok(pid_t pid, const char *what)
{
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) {
        printf("%s: waitpid failed\n", what);
        return 0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("%s: child expected exit 0, got status 0x%x\n", what, status);
        return 0;
    }
    return 1;
}

/* ---- 1. layout ------------------------------------------------------------------------ */

static void test_clamp(void)
{
    uint32_t sq = 0, cq = 0, ar = 0;
    slm_shm_clamp(&sq, &cq, &ar);
    CHECK(sq == SLM_SHM_DEFAULT_SQ_ENTRIES && cq == SLM_SHM_DEFAULT_CQ_ENTRIES && ar == SLM_SHM_DEFAULT_ARENA,
          "clamp of defaults: expected 256/1024/1048576, got %u/%u/%u", sq, cq, ar);
    sq = 3, cq = 100, ar = 1;
    slm_shm_clamp(&sq, &cq, &ar);
    CHECK(sq == 16 && cq == 128 && ar == SLM_SHM_MIN_ARENA, "clamp 3/100/1: expected 16/128/65536, got %u/%u/%u",
          sq, cq, ar);
    sq = 0xffffffffu, cq = 4097, ar = 0xffffffffu;
    slm_shm_clamp(&sq, &cq, &ar);
    CHECK(sq == 4096 && cq == 4096 && ar == SLM_SHM_MAX_ARENA, "clamp of huge: expected 4096/4096/max, got %u/%u/%u",
          sq, cq, ar);
    sq = 1000, cq = 16, ar = 100000;
    slm_shm_clamp(&sq, &cq, &ar);
    CHECK(sq == 1024 && cq == 16 && ar == 102400, "clamp 1000/16/100000: expected 1024/16/102400, got %u/%u/%u", sq,
          cq, ar);
}

static void test_create_map(void)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_shm d, c;
    int rc = slm_shm_create(&d, 100, 0, 200000, err);
    CHECK(rc == 0, "shm_create: expected 0, got %d (%s)", rc, err);
    if (rc) return;
    CHECK(d.sq_entries == 128 && d.cq_entries == 1024 && d.arena_bytes == 200704,
          "shm_create sizes: expected 128/1024/200704, got %u/%u/%u", d.sq_entries, d.cq_entries, d.arena_bytes);
    CHECK(d.bytes == slm_shm_layout(128, 1024, 200704, NULL, NULL, NULL), "shm bytes: expected layout size, got %u",
          d.bytes);
    int seals = fcntl(d.fd, F_GET_SEALS);
    CHECK(seals >= 0 && (seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
          "seals: expected shrink|grow|seal, got 0x%x", seals);
    CHECK(ftruncate(d.fd, 4096) != 0, "ftruncate of a sealed memfd: expected failure, got success");

    rc = slm_shm_map(&c, dup(d.fd), d.bytes, err);
    CHECK(rc == 0, "shm_map: expected 0, got %d (%s)", rc, err);
    if (rc == 0) {
        CHECK(c.sq_entries == d.sq_entries && c.cq_entries == d.cq_entries && c.arena_bytes == d.arena_bytes,
              "mapped sizes: expected %u/%u/%u, got %u/%u/%u", d.sq_entries, d.cq_entries, d.arena_bytes,
              c.sq_entries, c.cq_entries, c.arena_bytes);
        /* Two mappings of the same memory. */
        c.arena[123] = 77;
        CHECK(d.arena[123] == 77, "arena shared: expected 77, got %u", d.arena[123]);
        struct slm_ring sq_c, sq_d;
        slm_shm_rings(&c, &sq_c, NULL);
        slm_shm_rings(&d, &sq_d, NULL);
        struct slm_sqe e = {.op = SLM_OP_INFO, .user_data = 42};
        CHECK(slm_ring_push(&sq_c, &e) == 0, "push on a fresh SQ: expected 0");
        struct slm_sqe got;
        rc = slm_ring_take(&sq_d, &got);
        CHECK(rc == 0 && got.user_data == 42 && got.op == SLM_OP_INFO && got.seq == 0,
              "take through the other mapping: expected rc 0, user_data 42, seq 0, got %d, %llu, %u", rc,
              (unsigned long long)got.user_data, got.seq);
        slm_shm_unmap(&c);
        CHECK(c.base == NULL && c.fd == -1, "unmap: expected base NULL and fd -1");
        slm_shm_unmap(&c);   /* twice is harmless */
    }
    /* A wrong size from WELCOME. */
    rc = slm_shm_map(&c, dup(d.fd), d.bytes + 4096, err);
    CHECK(rc == -EBADMSG && strstr(err, "WELCOME said"), "map with a wrong size: expected -EBADMSG, got %d (%s)", rc,
          err);
    /* An unsealed memfd with a perfect header. */
    int raw = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(raw >= 0 && ftruncate(raw, d.bytes) == 0 && pwrite(raw, d.base, 4096, 0) == 4096, "unsealed memfd setup");
    rc = slm_shm_map(&c, raw, d.bytes, err);
    CHECK(rc == -EPERM && strstr(err, "sealed"), "map of an unsealed memfd: expected -EPERM, got %d (%s)", rc, err);
    /* Not a memfd at all. */
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    rc = slm_shm_map(&c, p[0], d.bytes, err);
    CHECK(rc == -EBADF, "map of a pipe: expected -EBADF, got %d (%s)", rc, err);
    close(p[1]);
    /* A corrupt header in a properly sealed memfd is refused by map too. */
    d.hdr->version = 99;
    rc = slm_shm_map(&c, dup(d.fd), d.bytes, err);
    CHECK(rc == -EPROTO && strstr(err, "99"), "map with version 99: expected -EPROTO, got %d (%s)", rc, err);
    slm_shm_unmap(&d);
}

static void test_header_corruption(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    int rc = slm_shm_create(&d, 64, 64, 0, err);
    CHECK(rc == 0, "shm_create: %s", err);
    if (rc) return;
    struct slm_shm_header good = *d.hdr;
    rc = slm_shm_check_header(&good, d.bytes, err);
    CHECK(rc == 0, "check of the daemon's own header: expected 0, got %d (%s)", rc, err);
    uint32_t B = d.bytes;
    /* Field index (in uint32 words) and values each of which alone must be rejected. */
    struct { int word; const char *name; uint32_t bad[8]; int n; } cases[] = {
        {0, "magic", {0, SLM_PROTO_MAGIC ^ 1, 0xffffffffu}, 3},
        {1, "version", {0, SLM_PROTO_VERSION + 1, 0xffffffffu}, 3},
        {2, "total_bytes", {0, B - 4096, B + 4096, 0xffffffffu}, 4},
        {3, "sq_off", {0, 100, good.sq_off + 64, good.cq_off, B, 0xffffffc0u, 4032}, 7},
        {4, "sq_entries", {0, 3, 8, good.sq_entries * 2, 8192, 0x80000000u}, 6},
        {5, "cq_off", {0, 4, good.sq_off, good.arena_off, B - 64, 0xfffff000u}, 6},
        {6, "cq_entries", {0, 17, 8, 1u << 20, 0xffffffffu}, 5},
        {7, "arena_off", {0, good.cq_off, B - 4096, B, 0xfffff000u, good.arena_off + 8}, 6},
        {8, "arena_bytes", {0, 4096, good.arena_bytes + 4096, SLM_SHM_MAX_ARENA + 4096, 0xffffffffu}, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int k = 0; k < cases[i].n; k++) {
            struct slm_shm_header h = good;
            memcpy((uint32_t *)(void *)&h + cases[i].word, &cases[i].bad[k], 4);
            err[0] = 0;
            rc = slm_shm_check_header(&h, B, err);
            CHECK(rc != 0 && err[0], "header with %s = 0x%x: expected rejection, got %d", cases[i].name,
                  cases[i].bad[k], rc);
        }
    }
    /* Through the client's map, with the corruption in the shared memory itself. */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct slm_shm c;
        memcpy((uint32_t *)(void *)d.hdr + cases[i].word, &cases[i].bad[0], 4);
        rc = slm_shm_map(&c, dup(d.fd), B, err);
        CHECK(rc != 0 && c.base == NULL, "map with %s corrupted: expected rejection, got %d", cases[i].name, rc);
        if (rc == 0) slm_shm_unmap(&c);
        *d.hdr = good;
    }
    /* Another valid layout (CQ before SQ) must be accepted: the check is of bounds, not of
     * our own layout. */
    struct slm_shm_header h = good;
    h.sq_off = good.cq_off;
    h.cq_off = good.sq_off;
    rc = slm_shm_check_header(&h, B, err);
    CHECK(rc == 0, "header with SQ and CQ swapped: expected 0, got %d (%s)", rc, err);
    slm_shm_unmap(&d);
}

/* ---- 2. rings in one process ---------------------------------------------------------- */

static void test_ring_basic(void)
{
    enum { N = 16 };
    static uint8_t mem[N * SLM_RING_SLOT_BYTES];
    struct slm_ring p, c;
    slm_ring_format(mem, N, 0);
    CHECK(slm_ring_init(&p, mem, 12, 0) == -EINVAL, "ring_init with 12 entries: expected -EINVAL");
    slm_ring_init(&p, mem, N, 0);
    slm_ring_init(&c, mem, N, 0);
    struct slm_sqe e, out;
    CHECK(slm_ring_peek(&c) == NULL && slm_ring_take(&c, &out) == -EAGAIN, "empty ring: expected nothing to take");
    for (int i = 0; i < N; i++) {
        memset(&e, 0, sizeof e);
        e.user_data = (uint64_t)i;
        e.seq = 0xdeadbeef;   /* push must ignore the seq of the private entry */
        CHECK(slm_ring_push(&p, &e) == 0, "push %d of %d: expected 0", i, N);
    }
    CHECK(slm_ring_get(&p) == NULL, "get on a full ring: expected NULL");
    memset(&e, 0, sizeof e);
    CHECK(slm_ring_push(&p, &e) == -EAGAIN, "push on a full ring: expected -EAGAIN");
    void *slot;
    CHECK(slm_ring_get_checked(&p, &slot) == -EAGAIN && slot == NULL, "get_checked on a full ring: expected -EAGAIN");
    for (int i = 0; i < 5; i++) {
        int rc = slm_ring_take(&c, &out);
        CHECK(rc == 0 && out.user_data == (uint64_t)i && out.seq == (uint32_t)i,
              "take %d: expected user_data %d seq %d, got rc %d, %llu, %u", i, i, i, rc,
              (unsigned long long)out.user_data, out.seq);
    }
    CHECK(slm_ring_get_checked(&p, &slot) == 0 && slot != NULL, "get_checked after takes: expected a slot");
    /* A scribbled seq (neither free nor the previous lap's full) is reported as such. */
    uint32_t *seq = slot;
    uint32_t saved = *seq;
    *seq = 12345;
    CHECK(slm_ring_get_checked(&p, &slot) == -EBADMSG, "get_checked on a scribbled seq: expected -EBADMSG");
    *seq = saved;
    for (int i = 5; i < N; i++) {
        const struct slm_sqe *q = slm_ring_peek(&c);
        CHECK(q && q->user_data == (uint64_t)i, "peek %d: expected user_data %d", i, i);
        slm_ring_seen(&c);
    }
    CHECK(slm_ring_peek(&c) == NULL, "drained ring: expected empty");
}

/* Positions start 20 below 2^32, so both sides cross the wrap several times over. */
static void test_ring_wrap(void)
{
    enum { N = 16 };
    static uint8_t mem[N * SLM_RING_SLOT_BYTES];
    const uint32_t start = 0xffffffffu - 20;
    struct slm_ring p, c;
    slm_ring_format(mem, N, start);
    slm_ring_init(&p, mem, N, start);
    slm_ring_init(&c, mem, N, start);
    uint64_t next_in = 0, next_out = 0;
    int bad = 0;
    while (next_out < 1000 && bad < 10) {
        /* Fill to full or a random amount, then drain a random amount. */
        uint32_t burst = 1 + rnd_below(2 * N);
        for (uint32_t k = 0; k < burst; k++) {
            struct slm_cqe *s = slm_ring_get(&p);
            if (!s) {
                CHECK(next_in - next_out == N, "get NULL with %llu in the ring: expected full at %d",
                      (unsigned long long)(next_in - next_out), N);
                break;
            }
            s->user_data = next_in;
            s->token = (int32_t)(next_in * 7);
            slm_ring_publish(&p, s);
            next_in++;
        }
        uint32_t drain = 1 + rnd_below(2 * N);
        for (uint32_t k = 0; k < drain; k++) {
            const struct slm_cqe *s = slm_ring_peek(&c);
            if (!s) {
                CHECK(next_in == next_out, "peek NULL with %llu in the ring: expected empty",
                      (unsigned long long)(next_in - next_out));
                break;
            }
            if (s->user_data != next_out || s->token != (int32_t)(next_out * 7)) {
                printf("wrap: entry %llu: expected user_data %llu, got %llu\n", (unsigned long long)next_out,
                       (unsigned long long)next_out, (unsigned long long)s->user_data);
                failures++;
                bad++;
            }
            slm_ring_seen(&c);
            next_out++;
        }
    }
    CHECK(p.pos == start + (uint32_t)next_in && p.pos < start, "wrap: producer position expected past 2^32, got %u",
          p.pos);
}

/* ---- 3. rings across two processes ---------------------------------------------------- */

#define XFER_N 2000000u

static uint8_t pattern_byte(uint64_t i, uint32_t k)
{
    return (uint8_t)((i * 131u) ^ (k * 7u) ^ (i >> 8));
}

/* The client: SQEs with payloads in the arena, and checks the daemon's CQEs. */
static int xfer_client(struct slm_shm *shm)
{
    struct slm_ring sq, cq;
    slm_shm_rings(shm, &sq, &cq);
    struct slm_arena arena;
    if (slm_arena_init(&arena, shm->arena, shm->arena_bytes, &shm->hdr->sq_consumed, 2 * shm->sq_entries)) return 1;
    uint64_t sent = 0, got = 0;
    int bad = 0;
    while ((sent < XFER_N || got < XFER_N) && bad < 10) {
        int progress = 0;
        while (sent < XFER_N) {
            uint32_t len = (uint32_t)((sent * 2654435761u) >> 7) % 700, off;
            int rc = slm_arena_alloc(&arena, len, &off);
            if (rc == -EAGAIN) break;
            if (rc) return 1;
            struct slm_sqe *s = slm_ring_get(&sq);
            if (!s) {
                slm_arena_rollback(&arena);
                break;
            }
            uint8_t *dst = slm_arena_ptr(&arena, off);
            for (uint32_t k = 0; k < len; k++) dst[k] = pattern_byte(sent, k);
            s->op = SLM_OP_COMPLETE;
            s->user_data = sent;
            s->payload_off = off;
            s->payload_len = len;
            slm_arena_commit(&arena, sq.pos);
            slm_ring_publish(&sq, s);
            sent++;
            progress = 1;
        }
        const struct slm_cqe *c;
        while ((c = slm_ring_peek(&cq)) != NULL) {
            uint32_t len = (uint32_t)(got % (SLM_CQE_DATA_BYTES + 1));
            int ok = c->user_data == got && c->kind == SLM_CQE_TOKEN && c->len == len;
            for (uint32_t k = 0; ok && k < len; k++) ok = c->data[k] == pattern_byte(got + 1, k);
            if (!ok) {
                printf("cross-process CQE %llu: expected user_data %llu len %u and its pattern, got %llu len %u\n",
                       (unsigned long long)got, (unsigned long long)got, len, (unsigned long long)c->user_data,
                       c->len);
                bad++;
            }
            slm_ring_seen(&cq);
            got++;
            progress = 1;
        }
        if (!progress) sched_yield();
    }
    slm_arena_free(&arena);
    return bad ? 1 : 0;
}

static void test_ring_two_processes(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 256, 256, 256 << 10, err)) {
        CHECK(0, "shm_create: %s", err);
        return;
    }
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        struct slm_shm c;
        if (slm_shm_map(&c, dup(d.fd), d.bytes, err)) _exit(2);
        int rc = xfer_client(&c);
        slm_shm_unmap(&c);
        _exit(rc);
    }
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);
    uint8_t *payload = malloc(d.arena_bytes);
    uint64_t taken = 0, answered = 0;
    int bad = 0;
    while (answered < XFER_N && bad < 10) {
        int progress = 0;
        struct slm_sqe e;
        /* Take a batch, copy payloads out, then say so through sq_consumed. */
        while (taken - answered < 64 && slm_ring_take(&sq, &e) == 0) {
            int ok = e.user_data == taken && e.op == SLM_OP_COMPLETE && e.seq == (uint32_t)taken;
            ok = ok && slm_arena_copy_out(d.arena, d.arena_bytes, e.payload_off, e.payload_len, payload) == 0;
            uint32_t want_len = (uint32_t)((taken * 2654435761u) >> 7) % 700;
            ok = ok && e.payload_len == want_len;
            for (uint32_t k = 0; ok && k < e.payload_len; k++) ok = payload[k] == pattern_byte(taken, k);
            if (!ok) {
                printf("cross-process SQE %llu: expected user_data %llu and its %u-byte payload, got %llu (%u bytes)\n",
                       (unsigned long long)taken, (unsigned long long)taken, want_len,
                       (unsigned long long)e.user_data, e.payload_len);
                bad++;
            }
            taken++;
            progress = 1;
        }
        if (progress) slm_shm_store_sq_consumed(&d, sq.pos);
        while (answered < taken) {
            struct slm_cqe *c = slm_ring_get(&cq);
            if (!c) break;
            uint32_t len = (uint32_t)(answered % (SLM_CQE_DATA_BYTES + 1));
            c->kind = SLM_CQE_TOKEN;
            c->user_data = answered;
            c->len = (uint8_t)len;
            for (uint32_t k = 0; k < len; k++) c->data[k] = pattern_byte(answered + 1, k);
            slm_ring_publish(&cq, c);
            answered++;
            progress = 1;
        }
        if (!progress) sched_yield();
    }
    if (bad) {
        failures++;
        kill(pid, SIGKILL);
    }
    CHECK(child_ok(pid, "cross-process client"), "cross-process client: expected success");
    double dt = now_s() - t0;
    printf("two processes: %u SQEs with payloads and %u CQEs in %.2f s\n", XFER_N, XFER_N, dt);
    free(payload);
    slm_shm_unmap(&d);
}

/* ---- 4. futex wait and wake ----------------------------------------------------------- */

static void test_wait_timeout(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 0, 0, 0, err)) return;
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);
    double t0 = now_s();
    int rc = slm_wait_cq(&d, &cq, 100);
    double dt = now_s() - t0;
    CHECK(rc == -ETIMEDOUT, "wait on an empty CQ: expected -ETIMEDOUT, got %d", rc);
    CHECK(dt >= 0.099 && dt < 1.0, "wait of 100 ms: expected 0.1 s, took %.3f s", dt);
    CHECK(d.hdr->client_waiting == 0, "client_waiting after the wait: expected 0, got %u", d.hdr->client_waiting);
    CHECK(slm_wait_cq(&d, &cq, 0) == -ETIMEDOUT, "wait 0 on empty: expected -ETIMEDOUT");
    CHECK(slm_wake_client(&d) == 0, "wake with no waiter: expected 0 (no syscall)");
    slm_shm_unmap(&d);
}

static void test_wait_wake(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 0, 0, 0, err)) return;
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);
    pid_t pid = fork();
    if (pid == 0) {
        struct slm_shm c;
        if (slm_shm_map(&c, dup(d.fd), d.bytes, err)) _exit(2);
        struct slm_ring csq, ccq;
        slm_shm_rings(&c, &csq, &ccq);
        double t0 = now_s();
        int rc = slm_wait_cq(&c, &ccq, 5000);
        double dt = now_s() - t0;
        const struct slm_cqe *e = slm_ring_peek(&ccq);
        int ok = rc == 0 && e && e->user_data == 99 && dt < 4.0;
        if (!ok) printf("woken client: expected rc 0 with CQE 99, got rc %d after %.3f s\n", rc, dt);
        _exit(ok ? 0 : 1);
    }
    /* Wait until the client has said it sleeps (or give up after 5 s). */
    double t0 = now_s();
    while (__atomic_load_n(&d.hdr->client_waiting, __ATOMIC_ACQUIRE) == 0 && now_s() - t0 < 5) usleep(1000);
    usleep(20000);   /* let it get into FUTEX_WAIT */
    struct slm_cqe *c = slm_ring_get(&cq);
    c->user_data = 99;
    slm_ring_publish(&cq, c);
    int woke = slm_wake_client(&d);
    CHECK(woke == 1, "wake of a sleeping client: expected 1 (syscall made), got %d", woke);
    CHECK(child_ok(pid, "futex wake"), "futex wake: expected the client to wake with the CQE");
    slm_shm_unmap(&d);
}

/* Ping-pong: the client sleeps for every completion (no spin can catch it: the daemon waits
 * a little before answering some of them). A lost wakeup shows as a 2 s timeout. */
#define PINGS 3000
static void test_wait_pingpong(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 16, 16, 0, err)) return;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        struct slm_shm c;
        if (slm_shm_map(&c, dup(d.fd), d.bytes, err)) _exit(2);
        struct slm_ring sq, cq;
        slm_shm_rings(&c, &sq, &cq);
        for (uint64_t i = 0; i < PINGS; i++) {
            struct slm_sqe e = {.op = SLM_OP_INFO, .user_data = i};
            while (slm_ring_push(&sq, &e) != 0) sched_yield();
            int rc = slm_wait_cq(&c, &cq, 2000);
            const struct slm_cqe *q = slm_ring_peek(&cq);
            if (rc != 0 || !q || q->user_data != i) {
                printf("ping %llu: expected its completion, got rc %d\n", (unsigned long long)i, rc);
                _exit(1);
            }
            slm_ring_seen(&cq);
        }
        _exit(0);
    }
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);
    uint64_t done = 0, wakes = 0;
    double last = now_s();
    while (done < PINGS && now_s() - last < 5) {
        struct slm_sqe e;
        if (slm_ring_take(&sq, &e) != 0) {
            sched_yield();
            continue;
        }
        if (done % 3 == 0) usleep(50);   /* long enough for the client to fall asleep */
        struct slm_cqe *c = slm_ring_get(&cq);
        if (!c) break;
        c->user_data = e.user_data;
        slm_ring_publish(&cq, c);
        wakes += (uint64_t)slm_wake_client(&d);
        done++;
        last = now_s();
    }
    CHECK(child_ok(pid, "ping-pong"), "ping-pong: expected every completion to wake the client");
    CHECK(done == PINGS, "ping-pong: expected %d round trips, got %llu", PINGS, (unsigned long long)done);
    CHECK(wakes > 0, "ping-pong: expected some FUTEX_WAKEs, got 0 (the sleep path was not exercised)");
    printf("ping-pong: %d round trips, %llu futex wakes, %.2f s\n", PINGS, (unsigned long long)wakes, now_s() - t0);
    slm_shm_unmap(&d);
}

/* ---- 5. NEED_WAKEUP and the doorbell -------------------------------------------------- */

#define BELL_N 3000
static void test_doorbell(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 64, 16, 0, err)) return;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv)) return;
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);

    /* In one process first: no flag, no syscall; flag, one byte. */
    CHECK(slm_doorbell_ring(&d, sv[1]) == 0, "doorbell without NEED_WAKEUP: expected 0");
    CHECK(slm_doorbell_drain(sv[0]) == 0, "drain with nothing sent: expected 0");
    CHECK(slm_daemon_prepare_sleep(&d, &sq) == 1, "prepare_sleep on an empty SQ: expected 1");
    CHECK(d.hdr->daemon_flags & SLM_SHM_NEED_WAKEUP, "NEED_WAKEUP: expected set in the header");
    CHECK(slm_doorbell_ring(&d, sv[1]) == 1, "doorbell with NEED_WAKEUP: expected 1");
    CHECK(slm_doorbell_drain(sv[0]) == 1, "drain after one doorbell: expected 1 packet");
    /* A client ringing without pause cannot hold the drain: it reads a bounded batch. */
    int sent = 0;
    for (int i = 0; i < 200; i++) sent += send(sv[1], "x", 1, MSG_DONTWAIT) == 1;
    int drained = 0, calls = 0, first = slm_doorbell_drain(sv[0]);
    for (int k = first; k > 0; k = slm_doorbell_drain(sv[0])) drained += k, calls++;
    CHECK(first == SLM_DOORBELL_DRAIN_MAX && drained == sent && calls == (sent + SLM_DOORBELL_DRAIN_MAX - 1) / SLM_DOORBELL_DRAIN_MAX,
          "drain of %d doorbells: expected batches of %d, got a first batch of %d, %d in %d calls", sent,
          SLM_DOORBELL_DRAIN_MAX, first, drained, calls);
    slm_daemon_awake(&d);
    CHECK(!(d.hdr->daemon_flags & SLM_SHM_NEED_WAKEUP), "after awake: expected NEED_WAKEUP clear");
    struct slm_ring producer;
    slm_shm_rings(&d, &producer, NULL);
    struct slm_sqe e = {.op = SLM_OP_INFO};
    slm_ring_push(&producer, &e);
    CHECK(slm_daemon_prepare_sleep(&d, &sq) == 0, "prepare_sleep with an entry waiting: expected 0");
    CHECK(!(d.hdr->daemon_flags & SLM_SHM_NEED_WAKEUP), "prepare_sleep that found work: expected NEED_WAKEUP clear");
    slm_shm_unmap(&d);

    /* Across processes: the daemon sleeps in poll whenever the SQ is empty. */
    if (slm_shm_create(&d, 64, 16, 0, err)) return;
    slm_shm_rings(&d, &sq, &cq);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        struct slm_shm c;
        if (slm_shm_map(&c, dup(d.fd), d.bytes, err)) _exit(2);
        struct slm_ring csq, ccq;
        slm_shm_rings(&c, &csq, &ccq);
        int rings = 0;
        for (uint64_t i = 0; i < BELL_N; i++) {
            struct slm_sqe s = {.op = SLM_OP_INFO, .user_data = i};
            while (slm_ring_push(&csq, &s) != 0) sched_yield();
            int rc = slm_doorbell_ring(&c, sv[1]);
            if (rc < 0) _exit(1);
            rings += rc;
            if (i % 4 == 0) usleep(30);
        }
        _exit(rings > 0 ? 0 : 3);
    }
    close(sv[1]);
    uint64_t got = 0;
    int sleeps = 0, lost = 0, bad = 0;
    while (got < BELL_N && !lost) {
        struct slm_sqe s;
        while (slm_ring_take(&sq, &s) == 0) {
            if (s.user_data != got) bad++;
            got++;
        }
        if (got == BELL_N) break;
        if (slm_daemon_prepare_sleep(&d, &sq)) {
            sleeps++;
            struct pollfd pfd = {.fd = sv[0], .events = POLLIN};
            if (poll(&pfd, 1, 3000) == 0) lost = 1;   /* a doorbell would have come */
            slm_doorbell_drain(sv[0]);
            slm_daemon_awake(&d);
        }
    }
    CHECK(!lost, "doorbell: the daemon slept 3 s with %llu of %d entries taken (lost doorbell)",
          (unsigned long long)got, BELL_N);
    CHECK(bad == 0 && got == BELL_N, "doorbell: expected %d entries in order, got %llu (%d out of order)", BELL_N,
          (unsigned long long)got, bad);
    CHECK(sleeps > 0, "doorbell: expected the daemon to sleep at least once, got 0");
    CHECK(child_ok(pid, "doorbell client"), "doorbell client: expected success with at least one ring");
    /* The client is gone: drain reports the hang-up. */
    int rc;
    while ((rc = slm_doorbell_drain(sv[0])) > 0) {}   /* the doorbells still queued, then the hang-up */
    CHECK(rc == -EPIPE, "drain after the client exited: expected -EPIPE, got %d", rc);
    printf("doorbell: %d entries, the daemon slept %d times\n", BELL_N, sleeps);
    close(sv[0]);
    slm_shm_unmap(&d);
}

/* ---- 6. handshake --------------------------------------------------------------------- */

static void test_handshake_ok(void)
{
    char err[SLM_ERR_LEN] = "";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv)) return;
    int rc = slm_hello_send(sv[1], "test-client-with-a-rather-long-name-beyond-32", 100, 0, 300000, err);
    CHECK(rc == 0, "hello_send: expected 0, got %d (%s)", rc, err);
    struct slm_hello h;
    rc = slm_hello_recv(sv[0], &h, err);
    CHECK(rc == 0, "hello_recv: expected 0, got %d (%s)", rc, err);
    CHECK(h.sq_entries == 100 && h.cq_entries == 0 && h.arena_bytes == 300000 && h.version == SLM_PROTO_VERSION,
          "hello fields: expected 100/0/300000 v%u, got %u/%u/%u v%u", SLM_PROTO_VERSION, h.sq_entries,
          h.cq_entries, h.arena_bytes, h.version);
    CHECK(strcmp(h.name, "test-client-with-a-rather-long-") == 0, "hello name: expected truncated to 31, got '%s'",
          h.name);
    pid_t pid;
    uid_t uid;
    gid_t gid;
    rc = slm_peer_cred(sv[0], &pid, &uid, &gid);
    CHECK(rc == 0 && pid == getpid() && uid == getuid() && gid == getgid(),
          "peer_cred: expected %d/%d/%d, got rc %d %d/%d/%d", getpid(), getuid(), getgid(), rc, pid, uid, gid);

    struct slm_shm d;
    rc = slm_shm_create(&d, h.sq_entries, h.cq_entries, h.arena_bytes, err);
    CHECK(rc == 0, "shm_create: %s", err);
    if (rc) return;
    rc = slm_welcome_send(sv[0], 7, d.bytes, d.fd, err);
    CHECK(rc == 0, "welcome_send: expected 0, got %d (%s)", rc, err);
    struct slm_welcome w;
    int fd = -1;
    rc = slm_welcome_recv(sv[1], &w, &fd, err);
    CHECK(rc == 0 && fd >= 0 && fd != d.fd, "welcome_recv: expected 0 and a new fd, got %d, fd %d (%s)", rc, fd, err);
    CHECK(w.client_id == 7 && w.shm_bytes == d.bytes && w.status == 0, "welcome fields: expected id 7 and %u bytes",
          d.bytes);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC, "received fd: expected close-on-exec");
    struct slm_shm c;
    rc = slm_shm_map(&c, fd, w.shm_bytes, err);
    CHECK(rc == 0, "map of the received fd: expected 0, got %d (%s)", rc, err);
    if (rc == 0) {
        struct slm_ring dcq, ccq;
        slm_shm_rings(&d, NULL, &dcq);
        slm_shm_rings(&c, NULL, &ccq);
        struct slm_cqe q = {.kind = SLM_CQE_DONE, .user_data = 5};
        slm_ring_push(&dcq, &q);
        const struct slm_cqe *g = slm_ring_peek(&ccq);
        CHECK(g && g->user_data == 5 && g->kind == SLM_CQE_DONE, "CQE through the passed fd: expected DONE for 5");
        slm_shm_unmap(&c);
    }
    slm_shm_unmap(&d);
    close(sv[0]);
    close(sv[1]);
}

static int send_fds(int sock, const void *buf, size_t len, const int *fds, int n)
{
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n > 0) {
        msg.msg_control = ctl.b;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

static struct slm_hello good_hello(void)
{
    struct slm_hello h;
    memset(&h, 0, sizeof h);
    h.magic = SLM_PROTO_MAGIC;
    h.type = SLM_MSG_HELLO;
    h.version = SLM_PROTO_VERSION;
    strcpy(h.name, "x");
    return h;
}

static struct slm_welcome good_welcome(void)
{
    struct slm_welcome w;
    memset(&w, 0, sizeof w);
    w.magic = SLM_PROTO_MAGIC;
    w.type = SLM_MSG_WELCOME;
    w.version = SLM_PROTO_VERSION;
    w.shm_bytes = 1 << 20;
    return w;
}

/* Sends buf (with fds) on a, receives HELLO on b; checks rc and a word of the error. */
static void expect_hello(int a, int b, const void *buf, size_t len, const int *fds, int n, int want_rc,
                         const char *want_err, const char *what)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_hello h;
    if (send_fds(a, buf, len, fds, n) != 0) {
        CHECK(0, "%s: send failed", what);
        return;
    }
    int before = count_fds();
    int rc = slm_hello_recv(b, &h, err);
    int after = count_fds();
    CHECK(rc == want_rc, "%s: expected %d, got %d (%s)", what, want_rc, rc, err);
    CHECK(!want_err || strstr(err, want_err), "%s: expected an error naming '%s', got '%s'", what, want_err, err);
    CHECK(after == before, "%s: expected no fd left open, got %d more", what, after - before);
}

static void expect_welcome(int a, int b, const void *buf, size_t len, const int *fds, int n, int want_rc,
                           const char *want_err, const char *what)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_welcome w;
    int fd = 123456;
    if (send_fds(a, buf, len, fds, n) != 0) {
        CHECK(0, "%s: send failed", what);
        return;
    }
    int before = count_fds();
    int rc = slm_welcome_recv(b, &w, &fd, err);
    int after = count_fds();
    CHECK(rc == want_rc, "%s: expected %d, got %d (%s)", what, want_rc, rc, err);
    CHECK(!want_err || strstr(err, want_err), "%s: expected an error naming '%s', got '%s'", what, want_err, err);
    if (rc == 0) {
        CHECK(after == before + 1 && fd >= 0, "%s: expected exactly the one fd kept, got %d more", what, after - before);
        close(fd);
    } else {
        CHECK(after == before && fd == -1, "%s: expected no fd kept, got %d more (fd %d)", what, after - before, fd);
    }
}

static void test_handshake_bad(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv)) return;
    char err[SLM_ERR_LEN];
    struct slm_hello h;
    int rc = slm_hello_recv(sv[0], &h, err);
    CHECK(rc == -EAGAIN, "hello_recv with nothing sent (non-blocking): expected -EAGAIN, got %d", rc);

    struct slm_hello g = good_hello();
    uint8_t big[1000];
    memset(big, 0, sizeof big);
    memcpy(big, &g, sizeof g);
    expect_hello(sv[1], sv[0], &g, sizeof g, NULL, 0, 0, NULL, "good HELLO");
    expect_hello(sv[1], sv[0], &g, 4, NULL, 0, -EBADMSG, "short", "HELLO of 4 bytes");
    expect_hello(sv[1], sv[0], &g, sizeof g - 1, NULL, 0, -EBADMSG, "expected 56", "HELLO one byte short");
    expect_hello(sv[1], sv[0], big, sizeof g + 1, NULL, 0, -EBADMSG, "57", "HELLO one byte long");
    expect_hello(sv[1], sv[0], big, sizeof big, NULL, 0, -EBADMSG, "more than", "HELLO of 1000 bytes");
    struct slm_hello b = g;
    b.magic = 0x12345678;
    expect_hello(sv[1], sv[0], &b, sizeof b, NULL, 0, -EBADMSG, "magic", "HELLO with a wrong magic");
    b = g;
    b.type = SLM_MSG_WELCOME;
    expect_hello(sv[1], sv[0], &b, sizeof b, NULL, 0, -EBADMSG, "type", "HELLO with type WELCOME");
    b = g;
    b.reserved = 1;
    expect_hello(sv[1], sv[0], &b, sizeof b, NULL, 0, -EBADMSG, "reserved", "HELLO with reserved set");
    b = g;
    memset(b.name, 'a', sizeof b.name);
    expect_hello(sv[1], sv[0], &b, sizeof b, NULL, 0, -EBADMSG, "NUL", "HELLO with an unterminated name");
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    int two[2] = {p[0], p[1]};
    expect_hello(sv[1], sv[0], &g, sizeof g, two, 2, -EBADMSG, "file descriptors", "HELLO with 2 fds");

    /* Another version: the daemon's error names both; its refusal reaches the client. */
    b = g;
    b.version = SLM_PROTO_VERSION + 1;
    char want[64];
    snprintf(want, sizeof want, "version %u, daemon speaks version %u", SLM_PROTO_VERSION + 1, SLM_PROTO_VERSION);
    expect_hello(sv[1], sv[0], &b, sizeof b, NULL, 0, -EPROTO, want, "HELLO of the next version");
    /* A future version with a longer HELLO still gets the version answer, not "bad size". */
    struct slm_hello *bp = (struct slm_hello *)(void *)big;
    bp->version = SLM_PROTO_VERSION + 1;
    expect_hello(sv[1], sv[0], big, sizeof g + 16, NULL, 0, -EPROTO, want, "longer HELLO of the next version");
    bp->version = SLM_PROTO_VERSION;
    rc = slm_welcome_refuse(sv[0], -EPROTO, "client speaks protocol version 2, daemon speaks version 1");
    CHECK(rc == 0, "welcome_refuse: expected 0, got %d", rc);
    struct slm_welcome w;
    int fd;
    rc = slm_welcome_recv(sv[1], &w, &fd, err);
    CHECK(rc == -EPROTO && strstr(err, "daemon speaks version 1") && fd == -1,
          "refused WELCOME: expected -EPROTO with the reason, got %d (%s)", rc, err);

    struct slm_welcome gw = good_welcome();
    int one[1] = {p[0]};
    expect_welcome(sv[0], sv[1], &gw, sizeof gw, one, 1, 0, NULL, "good WELCOME");
    expect_welcome(sv[0], sv[1], &gw, sizeof gw, NULL, 0, -EBADMSG, "expected exactly 1", "WELCOME without fd");
    expect_welcome(sv[0], sv[1], &gw, sizeof gw, two, 2, -EBADMSG, "expected exactly 1", "WELCOME with 2 fds");
    expect_welcome(sv[0], sv[1], &gw, 10, one, 1, -EBADMSG, "expected 184", "WELCOME of 10 bytes with an fd");
    struct slm_welcome bw = gw;
    bw.magic = 1;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, one, 1, -EBADMSG, "magic", "WELCOME with a wrong magic");
    bw = gw;
    bw.type = SLM_MSG_HELLO;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, one, 1, -EBADMSG, "type", "WELCOME with type HELLO");
    bw = gw;
    bw.version = SLM_PROTO_VERSION + 1;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, one, 1, -EPROTO, "version", "WELCOME of another version");
    bw = gw;
    bw.status = -EACCES;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, one, 1, -EBADMSG, "refusal", "refusal with an fd");
    bw.status = 5;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, NULL, 0, -EBADMSG, "status 5", "WELCOME with status 5");
    bw.status = -EACCES;
    memset(bw.reason, 'r', sizeof bw.reason);
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, NULL, 0, -EBADMSG, "NUL", "refusal with an unterminated reason");
    strcpy(bw.reason, "uid 1234 is not allowed");
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, NULL, 0, -EACCES, "uid 1234", "refusal EACCES");
    bw.status = INT32_MIN;
    expect_welcome(sv[0], sv[1], &bw, sizeof bw, NULL, 0, INT32_MIN, "uid 1234", "refusal with status INT32_MIN");
    close(p[0]);
    close(p[1]);

    close(sv[1]);
    rc = slm_hello_recv(sv[0], &h, err);
    CHECK(rc == -EPIPE, "hello_recv after the client hung up: expected -EPIPE, got %d", rc);
    close(sv[0]);
}

/* ---- 7. hostile shared memory --------------------------------------------------------- */

static void test_arena_ranges(void)
{
    const uint32_t B = 65536;
    struct { uint32_t off, len; int ok; } cases[] = {
        {0, 0, 1}, {0, B, 1}, {B, 0, 1}, {B - 1, 1, 1}, {1, B, 0}, {B, 1, 0}, {B + 1, 0, 0},
        {0xfffffff0u, 0x20, 0}, {16, 0xffffffffu, 0}, {0xffffffffu, 0xffffffffu, 0}, {0xffffffffu, 1, 0},
        {1, 0xffffffffu, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = slm_arena_check_range(B, cases[i].off, cases[i].len);
        CHECK((rc == 0) == cases[i].ok, "range [0x%x, +0x%x) in %u bytes: expected %s, got %d", cases[i].off,
              cases[i].len, B, cases[i].ok ? "accepted" : "rejected", rc);
    }
    /* Against 64-bit arithmetic on random values, many of them near the edges. */
    for (int i = 0; i < 200000; i++) {
        uint32_t off = (uint32_t)rnd(), len = (uint32_t)rnd();
        if (i & 1) off = B - rnd_below(64) + rnd_below(64);
        if (i & 2) len = B - off + rnd_below(3) - 1;
        int ref = (uint64_t)off + len <= B;
        int rc = slm_arena_check_range(B, off, len);
        if ((rc == 0) != ref) {
            CHECK(0, "range [0x%x, +0x%x): expected %d, got %d", off, len, ref, rc);
            break;
        }
    }
}

/* The daemon's reading of an SQ full of garbage: take, then every range through copy_out. */
static void test_hostile_sq(void)
{
    char err[SLM_ERR_LEN];
    struct slm_shm d;
    if (slm_shm_create(&d, 64, 64, SLM_SHM_MIN_ARENA, err)) return;
    struct slm_ring sq, cq;
    slm_shm_rings(&d, &sq, &cq);
    uint8_t *buf = malloc(d.arena_bytes);
    struct slm_ring client_cq;   /* the client's end of the CQ, which it consumes */
    slm_ring_init(&client_cq, d.cq, d.cq_entries, 0);
    uint32_t cq_pushed = 0, cq_consumed = 0;
    int taken = 0, rejected = 0, accepted = 0, corrupt_cq = 0, seen_full = 0;
    for (int round = 0; round < 200; round++) {
        uint8_t *slots = d.sq;
        for (uint32_t i = 0; i < d.sq_entries * SLM_RING_SLOT_BYTES; i++) slots[i] = (uint8_t)rnd();
        for (uint32_t i = 0; i < d.arena_bytes; i += 8) {
            uint64_t v = rnd();
            memcpy(d.arena + i, &v, 8);
        }
        /* Some slots look full for the daemon's next position (the client "submitted" garbage),
         * some offsets are small enough to be in range. */
        for (uint32_t k = 0; k < d.sq_entries; k++) {
            struct slm_sqe *s = (struct slm_sqe *)(void *)((uint8_t *)d.sq + (size_t)k * SLM_RING_SLOT_BYTES);
            if (rnd_below(8)) s->seq = sq.pos + ((k - sq.pos) & (d.sq_entries - 1)) + 1;
            if (rnd_below(2)) s->payload_off = rnd_below(d.arena_bytes + 2);
            if (rnd_below(2)) s->payload_len = rnd_below(d.arena_bytes + 2);
        }
        /* The daemon takes at most one lap per turn (it must not loop forever on a client
         * that keeps marking slots full). */
        struct slm_sqe e;
        for (uint32_t k = 0; k < d.sq_entries && slm_ring_take(&sq, &e) == 0; k++) {
            taken++;
            const uint32_t offs[3] = {e.payload_off, e.stop_off, e.stop_ids_off};
            const uint32_t lens[3] = {e.payload_len, e.stop_len, e.n_stop_ids * 4u};
            for (int j = 0; j < 3; j++) {
                int ok = (uint64_t)offs[j] + lens[j] <= d.arena_bytes && (j < 2 || e.n_stop_ids <= d.arena_bytes / 4);
                int rc = j == 2 && e.n_stop_ids > d.arena_bytes / 4
                             ? -EINVAL
                             : slm_arena_copy_out(d.arena, d.arena_bytes, offs[j], lens[j], buf);
                if ((rc == 0) != ok) {
                    CHECK(0, "hostile SQE range [%u, +%u): expected %s, got %d", offs[j], lens[j],
                          ok ? "accepted" : "rejected", rc);
                }
                if (rc == 0) accepted++;
                else rejected++;
            }
        }
        /* The CQ driven for real, then its seq scribbled: the daemon's get tells free from full
         * from corrupt, never crashes. The expected answers come from this test's own counts
         * (pushed - consumed == entries: full), not from ring.c's seq arithmetic; a scribble is
         * a near miss of the genuine seq (+-1, +-entries) or a random word, never valid (the
         * other valid seq is genuine -+ (entries - 1), and a random word hits it with odds of
         * 2^-31; the seed is fixed). */
        for (uint32_t k = rnd_below(4) ? rnd_below(8) : cq.entries; k > 0 && cq_pushed - cq_consumed < cq.entries; k--) {
            uint8_t entry[SLM_RING_SLOT_BYTES] = {0};
            CHECK(slm_ring_push(&cq, entry) == 0, "CQ push with %u of %u slots used: expected 0",
                  cq_pushed - cq_consumed, cq.entries);
            cq_pushed++;
        }
        for (uint32_t k = rnd_below(2) ? 0 : rnd_below(cq_pushed - cq_consumed + 1); k > 0; k--) {
            uint8_t entry[SLM_RING_SLOT_BYTES];
            CHECK(slm_ring_take(&client_cq, entry) == 0, "client's CQ take: expected 0");
            cq_consumed++;
        }
        int full = cq_pushed - cq_consumed == cq.entries;
        void *slot;
        int rc = slm_ring_get_checked(&cq, &slot);
        CHECK(rc == (full ? -EAGAIN : 0), "get_checked with %u of %u slots used: expected %d, got %d",
              cq_pushed - cq_consumed, cq.entries, full ? -EAGAIN : 0, rc);
        seen_full += full;
        uint32_t *cs = (uint32_t *)d.cq + (size_t)(cq.pos & cq.mask) * (SLM_RING_SLOT_BYTES / 4);
        uint32_t genuine = *cs;
        const uint32_t misses[5] = {genuine + 1, genuine - 1, genuine + cq.entries, genuine - cq.entries,
                                    (uint32_t)rnd()};
        *cs = misses[rnd_below(5)];
        rc = slm_ring_get_checked(&cq, &slot);
        CHECK(rc == -EBADMSG, "get_checked with seq 0x%x scribbled over 0x%x: expected %d, got %d", *cs, genuine,
              -EBADMSG, rc);
        corrupt_cq += rc == -EBADMSG;
        *cs = genuine;
    }
    CHECK(seen_full > 0 && seen_full < 200, "CQ: expected some rounds full and some not, got %d of 200 full",
          seen_full);
    CHECK(taken > 500 && rejected > 0 && accepted > 0,
          "hostile SQ: expected many entries taken, some ranges accepted and some rejected, got %d, %d, %d", taken,
          accepted, rejected);
    printf("hostile SQ: %d garbage entries taken, %d ranges accepted, %d rejected; CQ full in %d of 200 rounds, "
           "%d scribbled seqs seen\n", taken, accepted, rejected, seen_full, corrupt_cq);
    free(buf);
    slm_shm_unmap(&d);
}

/* ---- 8. the arena allocator ----------------------------------------------------------- */

static void test_arena_basic(void)
{
    enum { B = 4096 };
    static uint8_t mem[B];
    uint32_t consumed = 0, off;
    struct slm_arena a;
    CHECK(slm_arena_init(&a, mem, B, &consumed, 4) == 0, "arena_init: expected 0");
    CHECK(slm_arena_alloc(&a, B + 1, &off) == -E2BIG, "alloc of more than the arena: expected -E2BIG");
    CHECK(slm_arena_alloc(&a, 0, &off) == 0 && off == 0 && slm_arena_used(&a) == 0, "alloc of 0: expected nothing");
    CHECK(slm_arena_alloc(&a, 3, &off) == 0 && off == 0, "first alloc: expected offset 0");
    CHECK(slm_arena_alloc(&a, 5, &off) == 0 && off == 8, "second alloc: expected offset 8 (aligned), got %u", off);
    slm_arena_commit(&a, 0);                                              /* SQE 0: [0, 16) */
    CHECK(slm_arena_alloc(&a, 3000, &off) == 0 && off == 16, "third alloc: expected 16, got %u", off);
    slm_arena_commit(&a, 1);                                              /* SQE 1: [16, 3016) */
    CHECK(slm_arena_alloc(&a, 2000, &off) == -EAGAIN, "alloc beyond the free space: expected -EAGAIN");
    consumed = 1;                                                         /* SQE 0 consumed */
    CHECK(slm_arena_alloc(&a, 2000, &off) == -EAGAIN, "alloc needing the skip: expected -EAGAIN");
    CHECK(slm_arena_alloc(&a, 1000, &off) == 0 && off == 3016, "alloc in the tail: expected 3016, got %u", off);
    slm_arena_rollback(&a);
    CHECK(slm_arena_used(&a) == 3000, "after rollback: expected 3000 used, got %llu",
          (unsigned long long)slm_arena_used(&a));
    consumed = 2;                                                         /* SQE 1 consumed */
    CHECK(slm_arena_alloc(&a, 2000, &off) == 0 && off == 0, "alloc after the wrap: expected offset 0, got %u", off);
    slm_arena_commit(&a, 2);
    consumed = 3;
    CHECK(slm_arena_alloc(&a, B, &off) == 0 && off == 0, "whole-arena alloc when empty: expected offset 0, got %u",
          off);
    slm_arena_commit(&a, 3);
    /* The FIFO of pending SQEs: 4 slots. */
    consumed = 4;
    for (uint32_t i = 0; i < 4; i++) {
        CHECK(slm_arena_alloc(&a, 8, &off) == 0, "small alloc %u: expected 0", i);
        slm_arena_commit(&a, 4 + i);
    }
    CHECK(slm_arena_alloc(&a, 8, &off) == -EAGAIN, "alloc with 4 SQEs pending: expected -EAGAIN");
    consumed = 5;
    CHECK(slm_arena_alloc(&a, 8, &off) == 0, "alloc after one consumed: expected 0");
    slm_arena_free(&a);
}

/* Random use against the set of live ranges: no two live allocations overlap, positions near
 * 2^32, and everything comes back once all is consumed. */
static void test_arena_model(void)
{
    enum { B = 65536, MAXLIVE = 4096 };
    static uint8_t mem[B];
    uint32_t consumed = 0xffffffffu - 500;
    uint32_t pos = consumed;
    struct slm_arena a;
    slm_arena_init(&a, mem, B, &consumed, 64);
    static struct { uint32_t off, len, sq; } live[MAXLIVE];
    int n_live = 0, group = 0, bad = 0, eagain = 0;
    for (int step = 0; step < 100000 && bad < 10; step++) {
        uint32_t r = rnd_below(10);
        if (r < 6 && n_live < MAXLIVE) {
            uint32_t len = rnd_below(4) ? rnd_below(600) : rnd_below(B / 3), off;
            int rc = slm_arena_alloc(&a, len, &off);
            if (rc == -EAGAIN) {
                eagain++;
                continue;
            }
            if (rc != 0 || off % 8 != 0 || (uint64_t)off + len > B) {
                CHECK(0, "model alloc of %u: expected an aligned range inside, got rc %d off %u", len, rc, off);
                bad++;
                continue;
            }
            if (len == 0) continue;
            for (int i = 0; i < n_live; i++)
                if (off < live[i].off + live[i].len && live[i].off < off + len) {
                    CHECK(0, "model: [%u, +%u) overlaps live [%u, +%u)", off, len, live[i].off, live[i].len);
                    bad++;
                }
            live[n_live].off = off;
            live[n_live].len = len;
            live[n_live].sq = pos;
            n_live++;
            group++;
        } else if (r < 8) {
            if (rnd_below(5) == 0) {   /* the SQ was full: give the group back */
                slm_arena_rollback(&a);
                n_live -= group;
            } else {
                slm_arena_commit(&a, pos);
                pos++;
            }
            group = 0;
        } else if ((int32_t)(pos - consumed) > 0) {
            consumed += 1 + rnd_below(pos - consumed);
            int k = 0;
            for (int i = 0; i < n_live; i++)
                if ((int32_t)(consumed - live[i].sq) <= 0) live[k++] = live[i];
            n_live = k;
            if (group > n_live) group = n_live;   /* the open group's SQE is never consumed early */
        }
    }
    slm_arena_commit(&a, pos++);
    consumed = pos;
    uint32_t off;
    int rc = slm_arena_alloc(&a, B, &off);
    CHECK(rc == 0 && off == 0, "model: after everything is consumed, expected the whole arena, got %d", rc);
    CHECK(consumed < 0x80000000u, "model: expected the SQ positions to cross 2^32, ended at %u", consumed);
    CHECK(eagain > 0, "model: expected the arena to fill at times, never did");
    slm_arena_free(&a);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_clamp();
    test_create_map();
    test_header_corruption();
    test_ring_basic();
    test_ring_wrap();
    test_arena_basic();
    test_arena_model();
    test_arena_ranges();
    test_hostile_sq();
    test_handshake_ok();
    test_handshake_bad();
    test_wait_timeout();
    test_wait_wake();
    test_wait_pingpong();
    test_doorbell();
    test_ring_two_processes();
    if (failures) {
        printf("test_ipc: %d failures\n", failures);
        return 1;
    }
    printf("test_ipc: all passed\n");
    return 0;
}
