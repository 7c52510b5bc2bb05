/*
 * tests/test_daemon_payloads.c - malformed payloads for every operation of the protocol, sent
 * by a raw client (the rings written by hand) to the real `slmd serve`, black box. For each op
 * the lengths and counts at and just past every bound, ranges that leave the arena or wrap
 * 32 bits, malformed length-prefixed lists (chat messages, stop strings), token ids outside
 * the vocabulary, bad sampling values and undefined flags: each must get its own ERROR naming
 * the problem, the well-formed case at the bound must be served, and the daemon must serve a
 * normal request afterwards. Then client-max-arena-bytes: requests holding more arena bytes
 * than the limit are refused naming it, and another client is unaffected.
 *
 * Over-reads that give the same answer (a bound checked one byte late) are what the ASan
 * build of this test (CI's second run) catches: each case sits exactly at a bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "tests/raw_client.h"

static const char *slmd;
static char model[512];
static char sock_path[128];
static int n_vocab;

static pid_t start_daemon(const char *extra_key, const char *extra_value)
{
    const char *argv[] = {slmd, "serve", "--socket", sock_path, "--model", model, "--kv-cache-mem", "64M",
                          "--ctx-size", "256", "--threads", "1", "--log-level", "warning", extra_key, extra_value,
                          NULL};
    return raw_start_daemon(argv, sock_path, NULL, 0);
}

/* A well-formed greedy request of op on the payload at [off, +len): what each case changes. */
static struct slm_sqe sqe(uint16_t op, uint32_t off, uint32_t len, uint32_t n_items)
{
    return (struct slm_sqe){.op = op, .payload_off = off, .payload_len = len, .n_items = n_items, .max_tokens = 1,
                            .top_p = 1, .repeat_penalty = 1};
}

/* Sends q and checks the answer: want 0 = served (DATA or DONE), else an ERROR of status want
 * whose text holds `text`. */
static void expect(struct raw *r, const char *what, struct slm_sqe q, int want, const char *text)
{
    int status = 0;
    char why[128] = "";
    int rc = raw_ask(r, &q, &status, why, sizeof why);
    if (!want) {
        CHECK(rc == 0, "%s: expected it served, got %s (status %d '%s')", what, rc < 0 ? "no answer" : "an ERROR",
              status, why);
        return;
    }
    CHECK(rc == 1 && status == want && strstr(why, text), "%s: expected ERROR %d naming '%s', got %s, status %d '%s'",
          what, want, text, rc < 0 ? "no answer" : rc ? "an ERROR" : "success", status, why);
}

/* Writes n length-prefixed strings (u32 length, bytes) at arena offset off; their bytes. */
static uint32_t put_strings(struct raw *r, uint32_t off, int n, const char *const *s)
{
    uint32_t at = off;
    for (int i = 0; i < n; i++) {
        uint32_t k = (uint32_t)strlen(s[i]);
        memcpy(r->shm.arena + at, &k, 4);
        memcpy(r->shm.arena + at + 4, s[i], k);
        at += 4 + k;
    }
    return at - off;
}

static void put_ids(struct raw *r, uint32_t off, int n, int32_t id)
{
    for (int i = 0; i < n; i++) memcpy(r->shm.arena + off + 4u * (uint32_t)i, &id, 4);
}

/* Text (COMPLETE, TOKENIZE): arena ranges, flags, sampling values, max_tokens, priority. */
static void text_ops(struct raw *r)
{
    const uint32_t A = r->shm.arena_bytes;
    for (int t = 0; t < 2; t++) {
        uint16_t op = t ? SLM_OP_TOKENIZE : SLM_OP_COMPLETE;
        const char *name = t ? "TOKENIZE" : "COMPLETE";
        char what[96];
        memcpy(r->shm.arena + A - 5, "hello", 5);
        snprintf(what, sizeof what, "%s ending at the arena's last byte", name);
        expect(r, what, sqe(op, A - 5, 5, 0), 0, NULL);
        snprintf(what, sizeof what, "%s one byte past the arena", name);
        expect(r, what, sqe(op, A - 4, 5, 0), -EINVAL, "outside the arena");
        snprintf(what, sizeof what, "%s starting past the arena", name);
        expect(r, what, sqe(op, A + 1, 1, 0), -EINVAL, "outside the arena");
        snprintf(what, sizeof what, "%s whose offset + length wraps 32 bits", name);
        expect(r, what, sqe(op, 0xfffffff0u, 0x20, 0), -EINVAL, "outside the arena");
        struct slm_sqe q = sqe(op, A - 5, 5, 0);
        q.flags = 0x100;
        snprintf(what, sizeof what, "%s with an undefined flag", name);
        expect(r, what, q, -EINVAL, "not defined");
    }
    memcpy(r->shm.arena, "hello", 5);
    struct {
        const char *what, *text;
        void (*set)(struct slm_sqe *);
    } bad[] = {
        {"temperature NaN", "temperature", NULL},
        {"temperature -1", "temperature", NULL},
        {"top_p 1.5", "top_p", NULL},
        {"min_p -0.1", "min_p", NULL},
        {"top_k -1", "top_k", NULL},
        {"repeat_penalty 0", "repeat_penalty", NULL},
        {"repeat_last_n -2", "repeat_last_n", NULL},
        {"presence_penalty inf", "presence_penalty", NULL},
        {"frequency_penalty NaN", "frequency_penalty", NULL},
        {"logprobs 21", "logprobs", NULL},
        {"logprobs 2^31", "logprobs", NULL},
        {"max_tokens 2^32-1 (-1 as int)", "max_tokens", NULL},
        {"priority below -1000000", "priority", NULL},
        {"priority above max-priority", "max-priority", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct slm_sqe q = sqe(SLM_OP_COMPLETE, 0, 5, 0);
        switch (i) {
        case 0: q.temperature = NAN; break;
        case 1: q.temperature = -1; break;
        case 2: q.top_p = 1.5f; break;
        case 3: q.min_p = -0.1f; break;
        case 4: q.top_k = -1; break;
        case 5: q.repeat_penalty = 0; break;
        case 6: q.repeat_last_n = -2; break;
        case 7: q.presence_penalty = INFINITY; break;
        case 8: q.frequency_penalty = NAN; break;
        case 9: q.logprobs = 21; break;
        case 10: q.logprobs = 0x80000000u; break;
        case 11: q.max_tokens = 0xffffffffu; break;
        case 12: q.priority = -1000001; break;
        case 13: q.priority = 1000001; break;
        }
        expect(r, bad[i].what, q, -EINVAL, bad[i].text);
    }
    struct slm_sqe q = sqe(SLM_OP_COMPLETE, 0, 5, 0);
    q.logprobs = 20, q.priority = -1000000, q.repeat_last_n = -1;
    expect(r, "logprobs 20, priority -1000000, repeat_last_n -1 (each at its bound)", q, 0, NULL);
    q = sqe(SLM_OP_COMPLETE, 0, 5, 0);
    q.max_tokens = 0;   /* up to the context */
    q.flags = SLM_SQE_IGNORE_EOS;
    expect(r, "max_tokens 0 (up to the context)", q, 0, NULL);
    expect(r, "COMPLETE of empty text", sqe(SLM_OP_COMPLETE, 0, 0, 0), -EINVAL, "no tokens");
}

/* Stop strings and stop ids, on COMPLETE_IDS. */
static void stops(struct raw *r)
{
    const uint32_t A = r->shm.arena_bytes;
    put_ids(r, 0, 2, 504);
    const char *two[] = {"abc", "de"};
    uint32_t len = put_strings(r, 64, 2, two);
    struct slm_sqe q = sqe(SLM_OP_COMPLETE_IDS, 0, 8, 2);
    q.stop_off = 64, q.stop_len = len, q.n_stop = 2;
    expect(r, "two stop strings filling their bytes exactly", q, 0, NULL);
    q.stop_len = len - 1;
    expect(r, "stop strings one byte longer than stop_len", q, -EINVAL, "length-prefixed");
    q.stop_len = len + 1;
    expect(r, "stop strings one byte shorter than stop_len", q, -EINVAL, "length-prefixed");
    q.stop_len = len, q.n_stop = 3;
    expect(r, "n_stop one more than the strings", q, -EINVAL, "length-prefixed");
    q.n_stop = 1;
    expect(r, "n_stop one fewer than the strings", q, -EINVAL, "length-prefixed");
    /* One string whose length runs 2 bytes past stop_len (the bound is len - at, not len). */
    uint32_t k = 10;
    memcpy(r->shm.arena + 64, &k, 4);
    q.stop_len = 12, q.n_stop = 1;
    expect(r, "a stop string's length past the list's end", q, -EINVAL, "length-prefixed");
    k = 0xfffffffcu;
    memcpy(r->shm.arena + 64, &k, 4);
    expect(r, "a stop string's length near 2^32", q, -EINVAL, "length-prefixed");
    memcpy(r->shm.arena + 64, "\x03\0\0\0a\0c", 7);
    q.stop_len = 7;
    expect(r, "a stop string holding a NUL", q, -EINVAL, "NUL");
    q.stop_len = 2;
    expect(r, "a stop list shorter than a length prefix", q, -EINVAL, "length-prefixed");
    q.stop_len = 0;
    expect(r, "n_stop 1 with no bytes", q, -EINVAL, "length-prefixed");
    q.n_stop = 1025, q.stop_len = len;
    expect(r, "n_stop 1025 (at most 1024)", q, -EINVAL, "stop strings");
    q.n_stop = 1, q.stop_off = A - 2, q.stop_len = 4;
    expect(r, "stop strings past the arena", q, -EINVAL, "stop strings");

    q = sqe(SLM_OP_COMPLETE_IDS, 0, 8, 2);
    put_ids(r, 64, 2, 2);
    q.stop_ids_off = 64, q.n_stop_ids = 2;
    expect(r, "two stop ids", q, 0, NULL);
    q.stop_ids_off = A - 4;
    expect(r, "stop ids running 4 bytes past the arena", q, -EINVAL, "stop ids");
    q.stop_ids_off = 0, q.n_stop_ids = A / 4 + 1;
    expect(r, "n_stop_ids above arena_bytes / 4", q, -EINVAL, "stop ids");
    q.n_stop_ids = 0x40000001u;   /* 4 * n wraps 32 bits to 4 */
    /* Its 4 x n bytes, counted in 64 bits, are above client-max-arena-bytes: refused as such. */
    expect(r, "n_stop_ids whose byte count wraps 32 bits", q, -E2BIG, "client-max-arena-bytes");
    put_ids(r, 64, 1, -1);
    q.stop_ids_off = 64, q.n_stop_ids = 1;
    expect(r, "stop id -1", q, -EINVAL, "stop token id");
    put_ids(r, 64, 1, n_vocab);
    expect(r, "stop id n_vocab", q, -EINVAL, "stop token id");
    put_ids(r, 64, 1, n_vocab - 1);
    expect(r, "stop id n_vocab - 1", q, 0, NULL);
}

/* Token ids (COMPLETE_IDS, DETOKENIZE). */
static void id_ops(struct raw *r)
{
    const uint32_t A = r->shm.arena_bytes;
    for (int t = 0; t < 2; t++) {
        uint16_t op = t ? SLM_OP_DETOKENIZE : SLM_OP_COMPLETE_IDS;
        const char *name = t ? "DETOKENIZE" : "COMPLETE_IDS";
        const char *vocab_text = t ? "outside the vocabulary" : "outside the vocabulary";
        char what[96];
        put_ids(r, 0, 3, 504);
        snprintf(what, sizeof what, "%s of 3 ids", name);
        expect(r, what, sqe(op, 0, 12, 3), 0, NULL);
        snprintf(what, sizeof what, "%s of 0 ids", name);
        expect(r, what, sqe(op, 0, 0, 0), -EINVAL, "token ids");
        snprintf(what, sizeof what, "%s whose payload_len is not 4 x n_items", name);
        expect(r, what, sqe(op, 0, 11, 3), -EINVAL, "token ids");
        snprintf(what, sizeof what, "%s whose 4 x n_items wraps 32 bits", name);
        expect(r, what, sqe(op, 0, 4, 0x40000001u), t ? -E2BIG : -EINVAL, t ? "at most" : "token ids");
        snprintf(what, sizeof what, "%s running 4 bytes past the arena", name);
        expect(r, what, sqe(op, A - 8, 12, 3), -EINVAL, "token ids");
        put_ids(r, 0, 3, 504);
        put_ids(r, 8, 1, -1);
        snprintf(what, sizeof what, "%s with id -1", name);
        expect(r, what, sqe(op, 0, 12, 3), -EINVAL, vocab_text);
        put_ids(r, 8, 1, n_vocab);
        snprintf(what, sizeof what, "%s with id n_vocab", name);
        expect(r, what, sqe(op, 0, 12, 3), -EINVAL, vocab_text);
        put_ids(r, 8, 1, n_vocab - 1);
        snprintf(what, sizeof what, "%s with id n_vocab - 1", name);
        expect(r, what, sqe(op, 0, 12, 3), 0, NULL);
    }
    put_ids(r, 0, 257, 504);
    expect(r, "COMPLETE_IDS of 257 ids (context 256)", sqe(SLM_OP_COMPLETE_IDS, 0, 4 * 257, 257), -E2BIG,
           "does not fit the context");
    expect(r, "COMPLETE_IDS of 256 ids (the whole context)", sqe(SLM_OP_COMPLETE_IDS, 0, 4 * 256, 256), 0, NULL);
}

/* CHAT: the messages' count and their length-prefixed role and content. */
static void chat(struct raw *r)
{
    const char *msg[] = {"user", "Hi"};
    uint32_t len = put_strings(r, 0, 2, msg);
    expect(r, "CHAT of one message", sqe(SLM_OP_CHAT, 0, len, 1), 0, NULL);
    expect(r, "CHAT of 0 messages", sqe(SLM_OP_CHAT, 0, len, 0), -EINVAL, "1 to 1024");
    expect(r, "CHAT of 1025 messages", sqe(SLM_OP_CHAT, 0, len, 1025), -EINVAL, "1 to 1024");
    expect(r, "CHAT of 2 messages with one given", sqe(SLM_OP_CHAT, 0, len, 2), -EINVAL, "length-prefixed");
    expect(r, "CHAT one byte short", sqe(SLM_OP_CHAT, 0, len - 1, 1), -EINVAL, "length-prefixed");
    expect(r, "CHAT with a byte to spare", sqe(SLM_OP_CHAT, 0, len + 1, 1), -EINVAL, "length-prefixed");
    uint32_t k = 7;   /* the content's length runs 5 bytes past the payload */
    memcpy(r->shm.arena + 8, &k, 4);
    expect(r, "CHAT content length past the payload", sqe(SLM_OP_CHAT, 0, len, 1), -EINVAL, "length-prefixed");
    const char *nul[] = {"user", "a"};
    len = put_strings(r, 0, 2, nul);
    r->shm.arena[len - 1] = 0;
    expect(r, "CHAT content holding a NUL", sqe(SLM_OP_CHAT, 0, len, 1), -EINVAL, "NUL");
    const char *robot[] = {"robot", "Hi"};
    len = put_strings(r, 0, 2, robot);
    expect(r, "CHAT with the role 'robot'", sqe(SLM_OP_CHAT, 0, len, 1), -EINVAL, "role");
    expect(r, "CHAT past the arena", sqe(SLM_OP_CHAT, r->shm.arena_bytes - 4, 8, 1), -EINVAL, "outside the arena");
}

/* Ops without a payload, and ops that do not exist. */
static void other_ops(struct raw *r)
{
    struct slm_sqe q = sqe(SLM_OP_INFO, 0xffffffffu, 0xffffffffu, 0xffffffffu);
    expect(r, "INFO with garbage in the fields it does not read", q, 0, NULL);
    q.op = SLM_OP_STATS;
    expect(r, "STATS with garbage in the fields it does not read", q, 0, NULL);
    static const uint16_t unknown[] = {0, 9, 100, 0xffff};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        char what[64];
        snprintf(what, sizeof what, "op %u", unknown[i]);
        expect(r, what, sqe(unknown[i], 0, 5, 0), -EINVAL, "unknown operation");
    }
    /* A CANCEL of a request that does not exist has no answer; the client goes on. */
    q = (struct slm_sqe){.op = SLM_OP_CANCEL, .target = 123456789, .user_data = 7};
    slm_ring_push(&r->sq, &q);
    memcpy(r->shm.arena, "hello", 5);
    expect(r, "TOKENIZE after a CANCEL of nothing", sqe(SLM_OP_TOKENIZE, 0, 5, 0), 0, NULL);
}

static int generate_ok(const char *name)
{
    return raw_generate_ok(sock_path, name);
}

static void every_op(void)
{
    pid_t d = start_daemon(NULL, NULL);
    CHECK(d > 0, "every_op: slmd did not start");
    if (d <= 0) return;
    struct slm_client *c = NULL;
    struct slm_info info;
    if (slm_connect(sock_path, "info", &c) >= 0 && slm_info(c, &info) == 0) n_vocab = info.n_vocab;
    slm_close(&c);
    CHECK(n_vocab == 49152, "the default model's vocabulary: expected 49152 ids, got %d", n_vocab);
    struct raw r;
    if (n_vocab > 0 && raw_connect(&r, sock_path, "payloads") == 0) {
        text_ops(&r);
        stops(&r);
        id_ops(&r);
        chat(&r);
        other_ops(&r);
        raw_close(&r);
    }
    CHECK(generate_ok("after-payloads"), "after the malformed payloads a client was not served");
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 15, &took) == 0, "every_op: slmd did not exit cleanly");
}

/* client-max-arena-bytes at 16 KiB: three requests that each send 4,416 arena bytes (4 prompt
 * ids, 16 stop strings of 255 bytes, 64 stop ids) are held; a fourth, over the limit, gets
 * -EAGAIN naming it; a request of more than the whole limit gets -E2BIG before its text is
 * tokenized; another client is served meanwhile; once the three finish, the client may send
 * again. */
static void arena_limit(void)
{
    pid_t d = start_daemon("--client-max-arena-bytes", "16K");
    CHECK(d > 0, "arena_limit: slmd did not start");
    if (d <= 0) return;
    struct raw r;
    if (raw_connect(&r, sock_path, "arena-greedy") == 0) {
        put_ids(&r, 0, 4, 504);
        char z[256];
        memset(z, 'z', 255);
        z[255] = 0;
        const char *sixteen[16];
        for (int i = 0; i < 16; i++) sixteen[i] = z;
        uint32_t stop_len = put_strings(&r, 64, 16, sixteen);
        put_ids(&r, 8192, 64, 49000);
        struct slm_sqe q = sqe(SLM_OP_COMPLETE_IDS, 0, 16, 4);
        q.stop_off = 64, q.stop_len = stop_len, q.n_stop = 16;
        q.stop_ids_off = 8192, q.n_stop_ids = 64, q.max_tokens = 200, q.flags = SLM_SQE_IGNORE_EOS;
        CHECK(16 + stop_len + 256 == 4416, "arena_limit: a request of %u arena bytes, not 4416", 16 + stop_len + 256);
        for (int i = 0; i < 3; i++) {
            q.user_data = 1 + (uint64_t)i;
            slm_ring_push(&r.sq, &q);
        }
        expect(&r, "a fourth request of 4,416 arena bytes with 13,248 held (limit 16 KiB)", q, -EAGAIN,
               "client-max-arena-bytes");
        CHECK(generate_ok("arena-other"), "another client was not served while one is at its arena limit");
        memset(r.shm.arena + 16384, 'a', 20000);
        expect(&r, "a COMPLETE of 20,000 bytes of text (limit 16 KiB)", sqe(SLM_OP_COMPLETE, 16384, 20000, 0), -E2BIG,
               "above the limit");
        /* The three finish (200 tokens each), then the limit admits requests again. */
        struct slm_client *c = NULL;
        struct slm_stats st = {.requests_active = 1};
        double t0 = now_s();
        if (slm_connect(sock_path, "arena-stats", &c) >= 0)
            while (now_s() - t0 < 120 && slm_stats(c, &st) == 0 && st.requests_active) {
                raw_drain(&r);
                usleep(100000);
            }
        slm_close(&c);
        CHECK(st.requests_active == 0, "arena_limit: %llu requests still active after %.0f s",
              (unsigned long long)st.requests_active, now_s() - t0);
        q.max_tokens = 1;
        expect(&r, "a request after the held ones finished", q, 0, NULL);
        raw_close(&r);
    }
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 15, &took) == 0, "arena_limit: slmd did not exit cleanly");
}

int main(void)
{
    if (!(slmd = test_slmd_and_model(model, sizeof model))) return 77;
    signal(SIGPIPE, SIG_IGN);
    snprintf(sock_path, sizeof sock_path, "/tmp/slmd-payloads-%d.sock", (int)getpid());
    every_op();
    arena_limit();
    if (failures) printf("test_daemon_payloads: %d failures\n", failures);
    else printf("test_daemon_payloads: ok\n");
    return failures ? 1 : 0;
}
