/*
 * tests/soak_client.c - the clients of tests/soak.sh, one kind per run:
 *   soak_client probe SOCK          one TOKENIZE and one greedy 8-token generation; prints
 *                                   "probe_ms KV_BLOCKS_USED REQUESTS_ACTIVE" (the latency of
 *                                   the two together, then the daemon's counters); exit 1 when
 *                                   either fails
 *   soak_client good SOCK N REF     N greedy generations of the same request, each compared
 *                                   with the text in file REF (written by the first run when
 *                                   REF does not exist); exit 1 on a difference or a failure
 *   soak_client flood SOCK N        N requests of 64 tokens as fast as the ring takes them,
 *                                   then the hang-up without reading one completion
 *   soak_client greedy SOCK         requests until the daemon refuses one over a limit (the
 *                                   ERROR must name the limit), then the hang-up
 *   soak_client scribble SOCK S SEED  S seconds of random SQEs (real ops, random fields and
 *                                   ranges), random bytes in its arena, garbage in its
 *                                   completion ring's sequence numbers, doorbell floods
 * Every kind exits 0 when the daemon behaved as promised (docs/protocol.md, "Bad input").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/raw_client.h"

static const char prompt[] = "The three primary colors are";

static int probe(const char *sock)
{
    double t0 = now_s();
    struct slm_client *c = NULL;
    if (slm_connect(sock, "soak-probe", &c) < 0) {
        printf("probe: connect: %s\n", slm_last_error());
        return 1;
    }
    int32_t *ids = NULL;
    int n = 0;
    if (slm_tokenize(c, prompt, &ids, &n)) n = 0;
    free(ids);
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 8, p.temperature = 0;
    char *text = NULL;
    int rc = n > 0 ? slm_generate(c, prompt, &p, &text, NULL) : -EIO;
    double ms = (now_s() - t0) * 1e3;
    free(text);
    struct slm_stats st;
    int srs = slm_stats(c, &st);
    slm_close(&c);
    if (n <= 0 || rc || srs) {
        printf("probe: tokenize %d, generate %s, stats %s\n", n, slm_strerror(rc), slm_strerror(srs));
        return 1;
    }
    printf("%.1f %llu %llu\n", ms, (unsigned long long)st.kv_blocks_used, (unsigned long long)st.requests_active);
    return 0;
}

static int good(const char *sock, int n, const char *ref_path)
{
    struct slm_client *c = NULL;
    if (slm_connect(sock, "soak-good", &c) < 0) {
        printf("good: connect: %s\n", slm_last_error());
        return 1;
    }
    char ref[4096] = "";
    FILE *f = fopen(ref_path, "r");
    size_t ref_len = f ? fread(ref, 1, sizeof ref - 1, f) : 0;
    if (f) fclose(f);
    ref[ref_len] = 0;
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        struct slm_params p;
        slm_params_default(&p);
        p.max_tokens = 24, p.temperature = 0;
        char *text = NULL;
        int rc = slm_generate(c, prompt, &p, &text, NULL);
        if (rc) {
            printf("good: generate: %s\n", slm_strerror(rc));
            bad = 1;
        } else if (!ref[0]) {
            /* The first run anywhere writes the reference (atomically: a rename). */
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s.%d", ref_path, (int)getpid());
            FILE *w = fopen(tmp, "w");
            if (w) {
                fputs(text, w);
                fclose(w);
                rename(tmp, ref_path);
            }
            snprintf(ref, sizeof ref, "%s", text);
        } else if (strcmp(text, ref) != 0) {
            printf("good: greedy text changed under load:\n  expected '%s'\n  got      '%s'\n", ref, text);
            bad = 1;
        }
        free(text);
    }
    slm_close(&c);
    return bad;
}

/* A greedy request of 4 prompt ids (written at the arena's start) for max_tokens tokens. */
static struct slm_sqe ids_request(struct raw *r, uint32_t max_tokens)
{
    static const int32_t ids[4] = {504, 3458, 282, 4649};
    memcpy(r->shm.arena, ids, sizeof ids);
    return (struct slm_sqe){.op = SLM_OP_COMPLETE_IDS, .flags = SLM_SQE_IGNORE_EOS, .payload_len = sizeof ids,
                            .n_items = 4, .max_tokens = max_tokens, .top_p = 1, .repeat_penalty = 1};
}

static int flood(const char *sock, int n)
{
    struct raw r;
    if (raw_connect(&r, sock, "soak-flood")) return 1;
    struct slm_sqe q = ids_request(&r, 64);
    for (int i = 0; i < n; i++) {
        q.user_data = (uint64_t)i + 1;
        if (slm_ring_push(&r.sq, &q)) break;
    }
    slm_doorbell_ring(&r.shm, r.fd);
    usleep(50000);
    raw_close(&r);   /* never reads a completion */
    return 0;
}

static int greedy(const char *sock)
{
    struct raw r;
    if (raw_connect(&r, sock, "soak-greedy")) return 1;
    struct slm_sqe q = ids_request(&r, 256);
    double t0 = now_s();
    int pushed = 0;
    while (r.n_err == 0 && now_s() - t0 < 20) {
        q.user_data = (uint64_t)++pushed;
        if (slm_ring_push(&r.sq, &q)) {
            pushed--;
            slm_doorbell_ring(&r.shm, r.fd);
            slm_wait_cq(&r.shm, &r.cq, 10);
        }
        raw_drain(&r);
    }
    slm_doorbell_ring(&r.shm, r.fd);
    int ok = r.n_err > 0 && strstr(r.last_err, "client-max-");
    if (!ok) printf("greedy: %d submitted, %d errors, last '%s' (expected a limit named)\n", pushed, r.n_err, r.last_err);
    raw_close(&r);
    return !ok;
}

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* A random value near the interesting ones: 0, small, the arena's bounds, huge. */
static uint32_t edgy(uint32_t arena)
{
    switch (rnd() % 6) {
    case 0: return 0;
    case 1: return rnd() % 64;
    case 2: return arena - rnd() % 16;
    case 3: return arena + rnd() % 16;
    case 4: return 0xffffffffu - rnd() % 16;
    default: return rnd() % arena;
    }
}

static int scribble(const char *sock, double seconds, uint64_t seed)
{
    rng_state = seed;
    struct raw r;
    if (raw_connect(&r, sock, "soak-scribble")) return 1;
    const uint32_t A = r.shm.arena_bytes;
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        struct slm_sqe q;
        uint32_t *w = (uint32_t *)(void *)&q;
        for (size_t i = 0; i < sizeof q / 4; i++) w[i] = rnd();
        q.op = (uint16_t)(rnd() % 10);   /* 0 and 9 do not exist, the others do */
        q.flags = (uint16_t)(rnd() % 8 == 0 ? rnd() : rnd() % 8);
        q.payload_off = edgy(A), q.payload_len = edgy(A) % 4096, q.n_items = rnd() % 8 ? rnd() % 64 : edgy(A);
        q.stop_off = edgy(A), q.stop_len = rnd() % 300, q.n_stop = rnd() % 3;
        q.stop_ids_off = edgy(A), q.n_stop_ids = rnd() % 4;
        q.max_tokens = rnd() % 16, q.priority = (int32_t)(rnd() % 2000) - 1000;
        if (rnd() % 2) q.temperature = 0, q.top_p = 1, q.min_p = 0, q.top_k = 0, q.repeat_penalty = 1;
        if (rnd() % 2) q.presence_penalty = 0, q.frequency_penalty = 0, q.logprobs = rnd() % 4;
        for (int i = 0; i < 64; i++) r.shm.arena[rnd() % A] = (char)rnd();
        if (rnd() % 4 == 0) {   /* a little valid text and ids, so that some requests run */
            memcpy(r.shm.arena, "Hello there", 11);
            q.payload_off = 0, q.payload_len = 11;
        }
        if (rnd() % 200 == 0) {   /* garbage in a completion slot's seq: the daemon must hang up */
            *(uint32_t *)(void *)(r.cq.slots + (size_t)(rnd() % r.cq.entries) * 128) = rnd();
        }
        if (slm_ring_push(&r.sq, &q)) {
            slm_doorbell_ring(&r.shm, r.fd);
            usleep(1000);
        }
        if (rnd() % 4 == 0) slm_doorbell_ring(&r.shm, r.fd);
        raw_drain(&r);
        char b;
        if (recv(r.fd, &b, 1, MSG_DONTWAIT) == 0) break;   /* hung up on us: allowed */
    }
    raw_close(&r);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 3 && !strcmp(argv[1], "probe")) return probe(argv[2]);
    if (argc >= 5 && !strcmp(argv[1], "good")) return good(argv[2], atoi(argv[3]), argv[4]);
    if (argc >= 4 && !strcmp(argv[1], "flood")) return flood(argv[2], atoi(argv[3]));
    if (argc >= 3 && !strcmp(argv[1], "greedy")) return greedy(argv[2]);
    if (argc >= 5 && !strcmp(argv[1], "scribble")) return scribble(argv[2], atof(argv[3]), strtoull(argv[4], 0, 10));
    fprintf(stderr, "usage: soak_client probe|good|flood|greedy|scribble SOCK ...\n");
    return 2;
}
