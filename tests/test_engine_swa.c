/*
 * tests/test_engine_swa.c - the engine's local KV pool for sliding-window layers (docs/engine.md,
 * "Two pools") on a synthetic gemma3 (tests/golden/make_arch_models.py: 6 layers, the first 5
 * local with a window of 16), CPU backend, blocks of 4 tokens.
 *
 * Each scenario runs the same requests twice: with swa_full (every layer's K/V of the whole
 * context in one pool, the engine as it was before the local pool) and with the local pool
 * bounded to the window. The generated tokens, their logprobs and the top-5 logprobs must be
 * bit-equal (the CPU backend's arithmetic does not depend on where a block lives), while the
 * local pool's blocks in use stay within what the windows need:
 *   - one sequence of 40 prompt tokens + 120 generated: 10 windows long;
 *   - six requests, three after the others finished, sharing prompt prefixes, with a local pool as
 *     large as the global one (nothing evicted): the same prefix hits as swa_full's, the windows'
 *     local blocks still cached;
 *   - the same with the default local pool and with one of the minimum size: the local blocks
 *     behind a shared prefix are evicted, so the hits are cut back (fewer cached prompt tokens
 *     than with swa_full), and the outputs are still the same.
 * Every pool's free + used + cached == n_blocks, and nothing is used once every request ended.
 * Needs python3 with gguf and numpy (skips without).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/check.h"
#include "common/log.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/kvcache.h"
#include "daemon/engine/tokenizer.h"

#define BLOCK 4
#define BATCH 16
#define N_CTX 256
#define MAX_REQ 8
#define MAX_GEN 128
#define TOP 5

struct result {
    int n, done, n_cached;
    int32_t tok[MAX_GEN];
    float logprob[MAX_GEN];
    struct slm_logprob top[MAX_GEN][TOP];
};

struct run {
    struct result res[MAX_REQ];
    int64_t ids[MAX_REQ];
    int n;
    int max_local_used;     /* most local blocks in use after any step */
    int min_local_free;
};

static void on_event(void *p, const struct slm_engine_event *ev)
{
    struct run *r = p;
    for (int i = 0; i < r->n; i++) {
        if (r->ids[i] != ev->id) continue;
        struct result *o = &r->res[i];
        if (ev->token >= 0 && o->n < MAX_GEN) {
            o->logprob[o->n] = ev->logprob;
            for (int k = 0; k < TOP; k++) o->top[o->n][k] = k < ev->n_top ? ev->top[k] : (struct slm_logprob){-1, 0};
            o->tok[o->n++] = ev->token;
        }
        if (ev->finish) {
            o->done = 1;
            o->n_cached = ev->n_cached;
        }
        return;
    }
}

struct req_spec {
    const int32_t *prompt;
    int n_prompt, max_tokens;
    int wave;               /* 0: at the start; 1: once wave 0 has finished */
};

/* Runs the requests on a new engine (swa_full, n_local_blocks as given); fills *r. */
static void run_engine(struct slm_model *m, const struct slm_tokenizer *tok, int swa_full, int n_local,
                       const struct req_spec *rq, int n, struct run *r)
{
    char err[SLM_ERR_LEN];
    struct slm_engine_opts o = {.n_blocks = 256, .block_size = BLOCK, .max_batch_tokens = BATCH, .max_seqs = 4,
                                .n_ctx = N_CTX, .swa_full = swa_full, .n_local_blocks = n_local};
    memset(r, 0, sizeof *r);
    r->n = n;
    r->min_local_free = 1 << 30;
    struct slm_engine *e = slm_engine_create(m, tok, &o, err);
    CHECK(e, "slm_engine_create (swa_full %d, local %d): %s", swa_full, n_local, err);
    if (!e) return;
    struct slm_kv_counts c;
    int has_local = slm_engine_kv_counts(e, SLM_KV_LOCAL, &c) == 0;
    CHECK(has_local == !swa_full, "swa_full %d: a local pool %s, expected %s", swa_full, has_local ? "exists" : "is absent",
          swa_full ? "none" : "one");
    if (has_local) {
        int want = n_local ? n_local : 4 * ((16 + BLOCK - 1) / BLOCK + 1) + (BATCH + BLOCK - 1) / BLOCK;
        CHECK(c.n_blocks == want, "local pool: %d blocks, expected %d", c.n_blocks, want);
    }
    for (int wave = 0; wave < 2; wave++) {
        for (int i = 0; i < n; i++) {
            if (rq[i].wave != wave) continue;
            struct slm_request q = {.prompt = rq[i].prompt, .n_prompt = rq[i].n_prompt, .max_tokens = rq[i].max_tokens,
                                    .ignore_eos = 1, .logprobs = TOP};
            slm_sampling_defaults(&q.sampling);
            q.sampling.temperature = 0.0f;   /* greedy */
            r->ids[i] = slm_engine_add(e, &q, err);
            CHECK(r->ids[i] >= 0, "slm_engine_add: %s", err);
        }
        for (int step = 0; step < 10000; step++) {
            int rc = slm_engine_step(e, on_event, r);
            CHECK(rc >= 0, "slm_engine_step: %d", rc);
            for (int p = 0; p < 1 + has_local; p++) {
                CHECK(slm_engine_kv_counts(e, p, &c) == 0, "slm_engine_kv_counts(%d): expected 0", p);
                CHECK(c.n_free + c.n_used + c.n_cached == c.n_blocks, "pool %d: free %d + used %d + cached %d != %d",
                      p, c.n_free, c.n_used, c.n_cached, c.n_blocks);
                if (p == SLM_KV_LOCAL && c.n_used > r->max_local_used) r->max_local_used = c.n_used;
                if (p == SLM_KV_LOCAL && c.n_free + c.n_cached < r->min_local_free)
                    r->min_local_free = c.n_free + c.n_cached;
            }
            if (rc <= 0) break;
        }
    }
    for (int p = 0; p < 1 + has_local; p++) {
        slm_engine_kv_counts(e, p, &c);
        CHECK(c.n_used == 0, "pool %d: %d blocks used after every request ended", p, c.n_used);
    }
    slm_engine_destroy(&e);
}

/* got against want: every request done, the same tokens, logprobs and top logprobs, bit for bit. */
static void compare(const char *what, const struct run *got, const struct run *want)
{
    for (int i = 0; i < want->n; i++) {
        const struct result *g = &got->res[i], *w = &want->res[i];
        CHECK(g->done && w->done, "%s: request %d not finished (%d, %d)", what, i, g->done, w->done);
        CHECK(g->n == w->n, "%s: request %d: %d tokens, expected %d", what, i, g->n, w->n);
        int bad = 0;
        for (int t = 0; t < g->n && t < w->n && bad < 3; t++) {
            int same = g->tok[t] == w->tok[t] && !memcmp(&g->logprob[t], &w->logprob[t], sizeof(float)) &&
                       !memcmp(g->top[t], w->top[t], sizeof g->top[t]);
            if (same) continue;
            bad++;
            CHECK(0, "%s: request %d token %d: %d (logprob %.9g, top %d %.9g), expected %d (logprob %.9g, top %d %.9g)",
                  what, i, t, g->tok[t], (double)g->logprob[t], g->top[t][0].id, (double)g->top[t][0].logprob,
                  w->tok[t], (double)w->logprob[t], w->top[t][0].id, (double)w->top[t][0].logprob);
        }
    }
}

int main(void)
{
    const char *tdir = getenv("SLM_TEST_DATA");
    if (!tdir) tdir = "tests";
    if (system("python3 -c 'import gguf, numpy' 2>/dev/null") != 0) {
        printf("skip: python3 cannot import gguf and numpy (pip install gguf numpy; packaging/setup.sh does)\n");
        return 77;
    }
    char tmp[] = "/tmp/slm-swa-XXXXXX", path[1100], cmd[2400], err[SLM_ERR_LEN];
    if (!mkdtemp(tmp)) {
        printf("FAIL mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/gemma3.gguf", tmp);
    snprintf(cmd, sizeof cmd, "python3 '%s/golden/make_arch_models.py' gemma3 '%s' > /dev/null", tdir, path);
    if (system(cmd) != 0) {
        printf("FAIL %s gave no model\n", cmd);
        return 1;
    }
    struct slm_model *m = slm_model_load(path, err);
    struct slm_backend *be = m ? slm_backend_cpu_create(2, err) : NULL;
    struct slm_tokenizer *tok = be && !slm_model_bind(m, be, err) ? slm_tok_create(m->gguf, err) : NULL;
    if (!tok) {
        printf("FAIL load %s: %s\n", path, err);
        return 1;
    }
    CHECK(m->cfg.n_swa == 16 && slm_model_n_local_layers(&m->cfg) == 5,
          "synthetic gemma3: window %d, %d local layers, expected 16 and 5", m->cfg.n_swa,
          slm_model_n_local_layers(&m->cfg));
    const int per_seq = (16 - 1 + BATCH + BLOCK - 1) / BLOCK + 1;   /* a sequence's window and a chunk */

    /* One sequence, 10 windows long. */
    int32_t prompt[6][64];
    uint32_t x = 12345;
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 64; k++) {
            x = x * 1103515245u + 12345u;
            prompt[i][k] = 100 + (int32_t)((x >> 8) % 2000u);
        }
    static struct run full, bounded, tight;
    struct req_spec one[] = {{prompt[0], 40, 120, 0}};
    run_engine(m, tok, 1, 0, one, 1, &full);
    run_engine(m, tok, 0, 0, one, 1, &bounded);
    compare("one long sequence", &bounded, &full);
    CHECK(bounded.max_local_used <= per_seq, "one long sequence: %d local blocks in use at most, expected <= %d",
          bounded.max_local_used, per_seq);
    printf("one sequence of 160 tokens (window 16, blocks of %d): at most %d local blocks in use (full cache: %d)\n",
           BLOCK, bounded.max_local_used, (160 + BLOCK - 1) / BLOCK);

    /* Shared prefixes: requests 3..5 arrive after 0..2 finished and share 48, 20 and 33 tokens of
     * their prompts (and 0 and 1 share 24). */
    memcpy(prompt[1], prompt[0], 24 * sizeof(int32_t));
    memcpy(prompt[3], prompt[0], 48 * sizeof(int32_t));
    memcpy(prompt[4], prompt[1], 20 * sizeof(int32_t));
    memcpy(prompt[5], prompt[2], 33 * sizeof(int32_t));
    struct req_spec many[] = {
        {prompt[0], 52, 30, 0}, {prompt[1], 30, 40, 0}, {prompt[2], 45, 20, 0},
        {prompt[3], 60, 25, 1}, {prompt[4], 25, 15, 1}, {prompt[5], 40, 25, 1},
    };
    static struct run roomy;
    run_engine(m, tok, 1, 0, many, 6, &full);
    run_engine(m, tok, 0, 256, many, 6, &roomy);
    run_engine(m, tok, 0, 0, many, 6, &bounded);
    compare("shared prefixes, a local pool as large as the global one", &roomy, &full);
    compare("shared prefixes", &bounded, &full);
    int hits_full = 0, hits_roomy = 0, hits_bounded = 0;
    for (int i = 3; i < 6; i++) {
        hits_full += full.res[i].n_cached;
        hits_roomy += roomy.res[i].n_cached;
        hits_bounded += bounded.res[i].n_cached;
    }
    CHECK(hits_full > 0 && hits_roomy == hits_full,
          "shared prefixes: %d prompt tokens from the prefix cache with a local pool that evicts nothing, %d with "
          "swa_full: expected the same, above 0 (the windows' local blocks are still cached)", hits_roomy, hits_full);
    CHECK(hits_bounded <= hits_full, "shared prefixes: %d prompt tokens hit with the local pool, more than swa_full's %d",
          hits_bounded, hits_full);
    CHECK(bounded.max_local_used <= 4 * per_seq, "shared prefixes: %d local blocks in use at most, expected <= %d",
          bounded.max_local_used, 4 * per_seq);

    /* The minimum local pool: the second wave's windows were evicted, the hits are cut back. */
    run_engine(m, tok, 0, per_seq, many, 6, &tight);
    compare("shared prefixes, minimum local pool", &tight, &full);
    int hits_tight = 0;
    for (int i = 3; i < 6; i++) hits_tight += tight.res[i].n_cached;
    CHECK(hits_tight < hits_full, "minimum local pool: %d prompt tokens from the prefix cache, expected fewer than "
          "the %d of swa_full (hits cut back)", hits_tight, hits_full);
    CHECK(tight.max_local_used <= per_seq, "minimum local pool: %d blocks in use, the pool has %d", tight.max_local_used,
          per_seq);
    printf("shared prefixes: %d prompt tokens hit with swa_full, %d with a local pool of 256 blocks, %d with the "
           "default one (%d blocks in use at most), %d with the minimum one (%d blocks)\n", hits_full, hits_roomy,
           hits_bounded, bounded.max_local_used, hits_tight, per_seq);

    /* Too small a local pool is refused. */
    struct slm_engine_opts o = {.n_blocks = 256, .block_size = BLOCK, .max_batch_tokens = BATCH, .max_seqs = 4,
                                .n_ctx = N_CTX, .n_local_blocks = per_seq - 1};
    struct slm_engine *e = slm_engine_create(m, tok, &o, err);
    CHECK(!e && strstr(err, "local KV pool"), "a local pool of %d blocks: expected a refusal, got %s", per_seq - 1,
          e ? "an engine" : err);
    slm_engine_destroy(&e);

    slm_tok_destroy(&tok);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    if (failures) {
        printf("test_engine_swa: %d failures\n", failures);
        return 1;
    }
    printf("test_engine_swa: ok\n");
    return 0;
}
