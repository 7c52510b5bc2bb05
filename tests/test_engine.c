/*
 * tests/test_engine.c - continuous batching against running each request alone.
 *
 * Oracles (issue 3): 64 seeded requests with random prompts, lengths, sampling parameters,
 * priorities and arrival steps give, token for token, what each gives alone; the same under
 * a KV cache too small for the load (preemption by recompute); the greedy ones equal the
 * one-sequence runner (what `slmd run` uses); a request sharing a 200-token prefix with an
 * earlier one takes all but the last partial block from the cache and still gives the cold
 * output; 500 requests cancelled at random points leave every block free and the engine
 * still answers correctly. After every run the free-block count is back to the pool size.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/runner.h"
#include "daemon/engine/stop.h"
#include "daemon/engine/tokenizer.h"
#include "common/log.h"

#include <malloc.h>
/* Under AddressSanitizer malloc is ASan's: mallinfo2 does not see its mappings. */
#if defined(__SANITIZE_ADDRESS__)
#define SLM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLM_TEST_ASAN 1
#endif
#endif

#define N_REQ 64
#define MAX_GEN 16
#define N_CTX 512

struct spec {
    int32_t prompt[300];
    int n_prompt;
    struct slm_sampling s;
    int max_tokens, priority, arrival;
    int progress;          /* slm_request.progress */
};

struct result {
    int32_t tok[MAX_GEN];
    int n, done, finish, n_cached;
    char text[4096];
    int text_len;
    float logprob[MAX_GEN];
    int n_top[MAX_GEN];
    int32_t top0[MAX_GEN];
    int prefilled[32];     /* the progress events' n_prefilled, in order */
    int n_progress, progress_late;
};

static uint64_t rng = 0x5eed5eed12345ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

struct run_ctx {
    struct result *res;
    int64_t *ids;          /* request id of spec i */
    int n;
};

static void on_event(void *p, const struct slm_engine_event *ev)
{
    struct run_ctx *c = p;
    for (int i = 0; i < c->n; i++) {
        if (c->ids[i] != ev->id) continue;
        struct result *r = &c->res[i];
        if (ev->n_prefilled) {
            r->progress_late += r->n > 0 || ev->token >= 0 || ev->finish;   /* only before the first token, alone */
            if (r->n_progress < 32) r->prefilled[r->n_progress] = ev->n_prefilled;
            r->n_progress++;
        }
        if (ev->token >= 0 && r->n < MAX_GEN) {
            r->logprob[r->n] = ev->logprob;
            r->n_top[r->n] = ev->n_top;
            r->top0[r->n] = ev->n_top ? ev->top[0].id : -1;
            r->tok[r->n++] = ev->token;
        }
        if (ev->text_len > 0 && r->text_len + ev->text_len < (int)sizeof r->text) {
            memcpy(r->text + r->text_len, ev->text, (size_t)ev->text_len);
            r->text_len += ev->text_len;
        }
        if (ev->finish) {
            r->done = 1;
            r->finish = ev->finish;
            r->n_cached = ev->n_cached;
        }
        return;
    }
}

/* The engines' mode (make_engine_seqs), the scenarios run with each: 0 one step at a time, 1
 * o.overlap, 2 o.overlap with its threads polling for each other (o.spin_us) up to 20 ms: through
 * the short passes (the engine thread finds their end by polling) and then asleep for the long
 * ones (a bound on the core it takes from the pass, under ASan too). */
static int g_overlap;

static struct slm_engine *make_engine_seqs(struct slm_model *m, const struct slm_tokenizer *tok, int n_blocks,
                                           int batch, int max_seqs)
{
    char err[SLM_ERR_LEN];
    struct slm_engine_opts o = {.n_blocks = n_blocks, .block_size = 16, .max_batch_tokens = batch,
                                .max_seqs = max_seqs, .n_ctx = N_CTX, .overlap = g_overlap > 0,
                                .spin_us = g_overlap == 2 ? 20000 : 0};
    struct slm_engine *e = slm_engine_create(m, tok, &o, err);
    CHECK(e, "slm_engine_create: %s", err);
    return e;
}

/* Options the engine refuses, each with an error naming the option. */
static void check_bad_opts(struct slm_model *m, const struct slm_tokenizer *tok)
{
    const struct slm_engine_opts good = {.n_blocks = 16, .block_size = 16, .max_batch_tokens = 64, .max_seqs = 16,
                                         .n_ctx = N_CTX, .overlap = 1, .spin_us = 1000000};
    char err[SLM_ERR_LEN];
    struct slm_engine *e = slm_engine_create(m, tok, &good, err);
    CHECK(e, "spin_us 1000000 (the most) refused: %s", err);
    slm_engine_destroy(&e);
    const int spins[] = {-1, 1000001, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        struct slm_engine_opts o = good;
        o.spin_us = spins[i];
        err[0] = 0;
        e = slm_engine_create(m, tok, &o, err);
        CHECK(!e && strstr(err, "spin_us"), "spin_us %d: engine %p, error '%s'", spins[i], (void *)e, err);
        slm_engine_destroy(&e);
    }
}

static struct slm_engine *make_engine(struct slm_model *m, const struct slm_tokenizer *tok, int n_blocks, int batch)
{
    return make_engine_seqs(m, tok, n_blocks, batch, 16);
}

static int64_t add(struct slm_engine *e, const struct spec *sp)
{
    char err[SLM_ERR_LEN];
    struct slm_request q = {.prompt = sp->prompt, .n_prompt = sp->n_prompt, .sampling = sp->s,
                            .max_tokens = sp->max_tokens, .priority = sp->priority, .progress = sp->progress};
    int64_t id = slm_engine_add(e, &q, err);
    CHECK(id >= 0, "slm_engine_add: %s", err);
    return id;
}

/* Runs specs[0..n) arriving at their steps; fills res. */
static void run_all(struct slm_engine *e, const struct spec *sp, int n, struct result *res)
{
    int64_t ids[N_REQ * 2];
    memset(res, 0, (size_t)n * sizeof *res);
    for (int i = 0; i < n; i++) ids[i] = -1;
    struct run_ctx c = {res, ids, n};
    int added = 0;
    for (int step = 0; step < 100000; step++) {
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 && sp[i].arrival <= step) {
                ids[i] = add(e, &sp[i]);
                added++;
            }
        int rc = slm_engine_step(e, on_event, &c);
        CHECK(rc >= 0, "slm_engine_step: %d", rc);
        if (rc < 0 || (rc == 0 && added == n)) break;
    }
}

static void compare(const char *what, const struct result *got, const struct result *want, int n)
{
    int bad = 0;
    for (int i = 0; i < n && bad < 10; i++) {
        if (got[i].done && got[i].n == want[i].n && !memcmp(got[i].tok, want[i].tok, (size_t)got[i].n * 4)) continue;
        printf("%s: request %d: expected %d tokens (first %d), got %d (first %d), done %d\n", what, i, want[i].n,
               want[i].n ? want[i].tok[0] : -1, got[i].n, got[i].n ? got[i].tok[0] : -1, got[i].done);
        bad++;
        failures++;
    }
}

/* Another thread adds specs[0..n) with small random pauses and cancels every fifth one
 * soon after adding it, while the test's thread steps the engine. */
struct submitter {
    struct slm_engine *e;
    const struct spec *sp;
    int n;
    int bad;               /* an add() that failed or returned an unexpected id */
    volatile int done;
};

static void *submit_thread(void *p)
{
    struct submitter *s = p;
    char err[SLM_ERR_LEN];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < s->n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        usleep((useconds_t)(x % 20000));
        struct slm_request q = {.prompt = s->sp[i].prompt, .n_prompt = s->sp[i].n_prompt, .sampling = s->sp[i].s,
                                .max_tokens = s->sp[i].max_tokens, .priority = s->sp[i].priority};
        int64_t id = slm_engine_add(s->e, &q, err);
        if (id != i) s->bad++;   /* a fresh engine numbers requests 0, 1, ... */
        if (i % 5 == 4) {
            usleep((useconds_t)(x % 30000));
            slm_engine_cancel(s->e, id);   /* -ENOENT when it already finished */
        }
    }
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Records events by request id (the index of the spec in a fresh engine). */
static void on_event_by_id(void *p, const struct slm_engine_event *ev)
{
    struct result *res = p;
    struct result *r = &res[ev->id];
    if (ev->token >= 0 && r->n < MAX_GEN) r->tok[r->n++] = ev->token;
    if (ev->finish) {
        r->done++;
        r->finish = ev->finish;
    }
}

/* Steps until request `id` has its first token; returns the number of steps (cap: limit + 1). */
struct first_ctx {
    int64_t id;
    int got;
};

static void on_event_first(void *p, const struct slm_engine_event *ev)
{
    struct first_ctx *c = p;
    if (ev->id == c->id && ev->token >= 0) c->got = 1;
}

static int steps_to_first_token(struct slm_engine *e, int64_t id, int limit)
{
    struct first_ctx c = {id, 0};
    int steps = 0;
    while (!c.got && steps <= limit && slm_engine_step(e, on_event_first, &c) > 0) steps++;
    return steps;
}

/* One owner adds n_flood short requests and the engine runs `warm` steps; then a request of
 * owner `late_owner` with a 40-token prompt arrives. Returns the steps to its first token. */
static int flood_then_one(struct slm_engine *e, const struct spec *sp, int n_flood, int warm, uint32_t late_owner,
                          int limit)
{
    char err[SLM_ERR_LEN];
    for (int i = 0; i < n_flood; i++) {
        const struct spec *s = &sp[i % N_REQ];
        struct slm_request q = {.prompt = s->prompt, .n_prompt = 8, .sampling = s->s, .max_tokens = 16, .owner = 1};
        CHECK(slm_engine_add(e, &q, err) >= 0, "flood add: %s", err);
    }
    for (int i = 0; i < warm; i++) slm_engine_step(e, NULL, NULL);
    struct slm_request q = {.prompt = sp[1].prompt, .n_prompt = 40, .sampling = sp[1].s, .max_tokens = 4,
                            .owner = late_owner};
    int64_t id = slm_engine_add(e, &q, err);
    CHECK(id >= 0, "late add: %s", err);
    int steps = steps_to_first_token(e, id, limit);
    for (int64_t i = 0; i <= id; i++) slm_engine_cancel(e, i);
    while (slm_engine_step(e, NULL, NULL) > 0) {}
    return steps;
}

static void make_specs(struct spec *sp, int n)
{
    int32_t common[200];
    for (int i = 0; i < 200; i++) common[i] = 100 + (int32_t)(rnd() % 20000);
    for (int i = 0; i < n; i++) {
        struct spec *s = &sp[i];
        s->n_prompt = 4 + (int)(rnd() % 60);
        int shared = i % 3 == 0 ? 40 : 0;   /* a third share a 40-token prefix */
        for (int j = 0; j < s->n_prompt; j++) s->prompt[j] = j < shared ? common[j] : 100 + (int32_t)(rnd() % 20000);
        slm_sampling_defaults(&s->s);
        s->s.seed = rnd();
        if (i % 2 == 0) s->s.temperature = 0.0f;
        s->s.top_k = i % 4 == 1 ? 0 : 40;
        s->max_tokens = 4 + (int)(rnd() % (MAX_GEN - 3));
        s->priority = (int)(rnd() % 3);
        s->arrival = (int)(rnd() % 24);
    }
}

/* Prompt logprobs collected per request: every position reported once, in order. */
#define PLP_N 150
struct plp_run {
    int64_t ids[4];
    float lp[4][PLP_N];
    int next[4];        /* the next position expected (from 1) */
    int bad[4], done[4], n_gen[4], n_cached[4];
};

static void on_plp(void *p, const struct slm_engine_event *ev)
{
    struct plp_run *c = p;
    for (int i = 0; i < 4; i++) {
        if (c->ids[i] != ev->id) continue;
        if (ev->n_prompt_lp) {
            if (ev->prompt_lp_first != c->next[i] || c->n_gen[i] || ev->token >= 0 || ev->finish) c->bad[i]++;
            for (int k = 0; k < ev->n_prompt_lp && ev->prompt_lp_first + k < PLP_N; k++)
                c->lp[i][ev->prompt_lp_first + k] = ev->prompt_lp[k].logprob;
            c->next[i] = ev->prompt_lp_first + ev->n_prompt_lp;
        }
        if (ev->token >= 0) c->n_gen[i]++;
        if (ev->finish) c->done[i] = 1, c->n_cached[i] = ev->n_cached;
    }
}

/* Runs the prompt logprobs requests of reqs (n of them, prompt_logprobs set on those marked)
 * in engine e until all finish. */
static void run_plp(struct slm_engine *e, const struct slm_request *reqs, int n, struct plp_run *c)
{
    char err[SLM_ERR_LEN];
    memset(c, 0, sizeof *c);
    for (int i = 0; i < n; i++) {
        c->next[i] = 1;
        c->ids[i] = slm_engine_add(e, &reqs[i], err);
        CHECK(c->ids[i] >= 0, "prompt logprobs: add: %s", err);
    }
    for (int step = 0; step < 10000 && slm_engine_step(e, on_plp, c) > 0; step++) {}
}

/* slm_runner_score_chunk (llama-perplexity's chunk, shared by `slmd run --perplexity` and the
 * CUDA tests): each scored token's NLL is minus its logprob in slm_runner_eval's own logits of the
 * chunk with bos over its first token; the chunk is left as it was; a runner holding another
 * sequence scores the same (it is reset); n < 2 and n past the context are refused. */
static void check_score_chunk(struct slm_model *m)
{
    enum { N = 24, CTX = 32 };
    char err[SLM_ERR_LEN];
    int nv = m->cfg.n_vocab;
    struct slm_runner *r = slm_runner_create(m, CTX, 8, err);
    float *logits = malloc((size_t)N * (size_t)nv * sizeof *logits);
    CHECK(r && logits, "score_chunk: runner: %s", err);
    if (!r || !logits) return;
    int32_t chunk[CTX + 1], copy[CTX + 1], ref[N];
    double nll[N], again[N];
    for (int i = 0; i <= CTX; i++) chunk[i] = 100 + (37 * i) % 5000;
    memcpy(copy, chunk, sizeof chunk);
    int rc = slm_runner_score_chunk(r, chunk, N, 1, logits, nll, NULL);
    CHECK(rc == N - N / 2 - 1, "score_chunk: returned %d, expected %d NLLs", rc, N - N / 2 - 1);
    CHECK(memcmp(chunk, copy, sizeof chunk) == 0, "score_chunk: the chunk was changed");
    memcpy(ref, chunk, sizeof ref);
    ref[0] = 1;
    slm_runner_reset(r);
    CHECK(slm_runner_eval(r, ref, N, 1, logits) == 0, "score_chunk: reference eval");
    for (int j = N / 2; j < N - 1; j++) {
        float lp = 0;
        CHECK(slm_logprobs_top(logits + (size_t)j * (size_t)nv, nv, chunk[j + 1], 0, &lp, NULL) == 0,
              "score_chunk: logprob at %d", j);
        CHECK(nll[j - N / 2] == -(double)lp, "score_chunk: position %d: NLL %.9g, the logits' %.9g", j,
              nll[j - N / 2], -(double)lp);
    }
    CHECK(slm_runner_eval(r, chunk, 5, 0, logits) == 0, "score_chunk: another sequence");
    rc = slm_runner_score_chunk(r, chunk, N, 1, logits, again, NULL);
    CHECK(rc == N - N / 2 - 1 && memcmp(nll, again, sizeof(double) * (N - N / 2 - 1)) == 0,
          "score_chunk: a runner holding another sequence scored differently (%d)", rc);
    CHECK(slm_runner_score_chunk(r, chunk, 1, 1, logits, nll, NULL) == -EINVAL, "score_chunk: n = 1 accepted");
    CHECK(slm_runner_score_chunk(r, chunk, CTX + 1, 1, logits, nll, NULL) == -ENOSPC,
          "score_chunk: n past the context accepted");
    free(logits);
    slm_runner_destroy(&r);
}

int main(int argc, char **argv)
{
    /* Two parts, two CTest tests that run side by side: one step at a time and everything else
     * (no argument), and the overlapped steps (--overlap: test_engine_overlap). */
    const int overlap_part = argc == 2 && !strcmp(argv[1], "--overlap");
    if (argc > 2 || (argc == 2 && !overlap_part)) {
        fprintf(stderr, "usage: test_engine [--overlap]\n");
        return 2;
    }
    const char *dir = getenv("SLM_MODEL_DIR");
    char path[4096], err[SLM_ERR_LEN];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : ".");
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("skip: %s is absent\n", path);
        return 77;
    }
    fclose(f);
    struct slm_model *m = slm_model_load(path, err);
    struct slm_backend *be = m ? slm_backend_cpu_create(2, err) : NULL;
    if (!m || !be || slm_model_bind(m, be, err)) {
        printf("FAIL: load: %s\n", err);
        return 1;
    }
    struct slm_tokenizer *tok = slm_tok_create(m->gguf, err);
    if (!tok) {
        printf("FAIL: tokenizer: %s\n", err);
        return 1;
    }
    static struct spec sp[N_REQ];
    static struct result together[N_REQ], alone[N_REQ], tight[N_REQ], one[1];
    make_specs(sp, N_REQ);
    if (!overlap_part) {
        check_score_chunk(m);
        check_bad_opts(m, tok);
    }

    /* Each alone, in a fresh engine, arriving at once. */
    for (int i = 0; i < N_REQ; i++) {
        struct slm_engine *e = make_engine(m, tok, 256, 64);
        struct spec s = sp[i];
        s.arrival = 0;
        run_all(e, &s, 1, &alone[i]);
        CHECK(slm_engine_free_blocks(e) == 256, "alone %d: free blocks %d of 256", i, slm_engine_free_blocks(e));
        slm_engine_destroy(&e);
    }
    /* The scenarios below with one step at a time, then with overlapped steps (o.overlap: each
     * pass on the engine's thread while the step before is reported; a stop string ends a request
     * one computed token late, which is dropped): the same outputs, the same blocks freed. With the
     * threads polling for each other (o.spin_us) the steps are the same and only the hand-offs
     * differ, so that mode runs the scenarios with the most hand-offs: all together, the
     * cancellation storm, submission from another thread. */
    static struct result together0[N_REQ];
    struct slm_engine *e = NULL;
    for (g_overlap = 0; g_overlap < (overlap_part ? 3 : 1); g_overlap++) {
        printf("overlap %d%s:\n", g_overlap > 0, g_overlap == 2 ? ", its threads polling up to 20 ms" : "");
        /* All together, big cache. */
        e = make_engine(m, tok, 256, 64);
        run_all(e, sp, N_REQ, together);
        compare("together vs alone", together, alone, N_REQ);
        if (g_overlap) {   /* everything a request reports, not only its tokens */
            for (int i = 0; i < N_REQ; i++)
                CHECK(together[i].finish == together0[i].finish && together[i].text_len == together0[i].text_len &&
                          !memcmp(together[i].text, together0[i].text, (size_t)together[i].text_len) &&
                          together[i].n_progress == together0[i].n_progress && !together[i].progress_late &&
                          !memcmp(together[i].logprob, together0[i].logprob, sizeof together[i].logprob),
                      "overlapped request %d: finish %d, %d bytes of text, %d progress events; one step at a time: %d, "
                      "%d, %d", i, together[i].finish, together[i].text_len, together[i].n_progress,
                      together0[i].finish, together0[i].text_len, together0[i].n_progress);
        } else {
            memcpy(together0, together, sizeof together0);
        }
        CHECK(slm_engine_free_blocks(e) == 256, "together: free blocks %d of 256", slm_engine_free_blocks(e));
        slm_engine_destroy(&e);
        if (overlap_part && !g_overlap) continue;   /* together0 alone: the reference of the overlapped runs */
        if (g_overlap < 2) {   /* not with the threads polling: see above */
            /* All together in a cache that holds about 3 requests: preemption by recompute. */
            e = make_engine(m, tok, 14, 48);
            run_all(e, sp, N_REQ, tight);
            compare("tight cache vs alone", tight, alone, N_REQ);
            CHECK(slm_engine_free_blocks(e) == 14, "tight: free blocks %d of 14", slm_engine_free_blocks(e));
            CHECK(slm_engine_n_preempted(e) > 0, "tight: expected preemptions, got none");
            printf("tight cache: %llu preemptions\n", (unsigned long long)slm_engine_n_preempted(e));
            slm_engine_destroy(&e);

            if (g_overlap == 0) {
                /* Greedy requests against the one-sequence runner (no steps to overlap: once). */
                struct slm_runner *r = slm_runner_create(m, N_CTX, 64, err);
                float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
                CHECK(r && logits, "runner: %s", err);
                for (int i = 0; r && logits && i < N_REQ; i += 2) {
                    slm_runner_reset(r);
                    int rc = slm_runner_eval(r, sp[i].prompt, sp[i].n_prompt, 0, logits);
                    for (int g = 0; rc == 0 && g < alone[i].n; g++) {
                        int32_t best = 0;
                        for (int v = 1; v < m->cfg.n_vocab; v++)
                            if (logits[v] > logits[best]) best = v;
                        if (best != alone[i].tok[g]) {
                            printf("runner vs engine: request %d step %d: expected %d, got %d\n", i, g, best,
                                   alone[i].tok[g]);
                            failures++;
                            break;
                        }
                        if (g + 1 < alone[i].n) rc = slm_runner_eval(r, &best, 1, 0, logits);
                    }
                }
                slm_runner_destroy(&r);
                free(logits);
            }

            /* Prefix cache: a 200-token prompt, then the same 200 tokens plus 5 more. */
            static struct spec a, b2;
            memset(&a, 0, sizeof a);
            for (int j = 0; j < 200; j++) a.prompt[j] = 100 + (int32_t)(rnd() % 20000);
            a.n_prompt = 200;
            slm_sampling_defaults(&a.s);
            a.s.temperature = 0;
            a.max_tokens = 6;
            b2 = a;
            for (int j = 200; j < 205; j++) b2.prompt[j] = 100 + (int32_t)(rnd() % 20000);
            b2.n_prompt = 205;
            struct result ra, rb, cold;
            e = make_engine(m, tok, 64, 64);
            run_all(e, &a, 1, &ra);
            run_all(e, &b2, 1, &rb);
            CHECK(rb.n_cached == 192, "prefix cache: expected 192 prompt tokens from the cache, got %d", rb.n_cached);
            slm_engine_destroy(&e);
            e = make_engine(m, tok, 64, 64);
            run_all(e, &b2, 1, &cold);
            CHECK(cold.n_cached == 0, "cold run: expected 0 cached tokens, got %d", cold.n_cached);
            compare("prefix-cached vs cold", &rb, &cold, 1);
            slm_engine_destroy(&e);
        }

        /* Cancellation storm: 500 requests, each cancelled at a random step (some never). */
        e = make_engine(m, tok, 40, 64);
        {
            static int64_t ids[500];
            static int when[500];
            for (int i = 0; i < 500; i++) {
                struct spec s = sp[i % N_REQ];
                s.max_tokens = 8;
                struct slm_request q = {.prompt = s.prompt, .n_prompt = s.n_prompt, .sampling = s.s, .max_tokens = 8};
                ids[i] = slm_engine_add(e, &q, err);
                CHECK(ids[i] >= 0, "storm add: %s", err);
                when[i] = (int)(rnd() % 40);
            }
            int live = 1;
            for (int step = 0; step < 5000 && live > 0; step++) {
                for (int i = 0; i < 500; i++)
                    if (when[i] == step) slm_engine_cancel(e, ids[i]);   /* -ENOENT when it already finished */
                live = slm_engine_step(e, NULL, NULL);
                CHECK(live >= 0, "storm step: %d", live);
            }
            CHECK(slm_engine_free_blocks(e) == 40, "storm: free blocks %d of 40", slm_engine_free_blocks(e));
            CHECK(slm_engine_cancel(e, ids[0]) == -ENOENT, "cancel of a finished request: expected -ENOENT");
            struct spec s = sp[0];
            s.arrival = 0;
            run_all(e, &s, 1, one);
            compare("after the storm vs alone", one, alone, 1);
        }
        slm_engine_destroy(&e);

        /* Stop strings: cut a greedy request's own text at a substring of it; logprobs. */
        if (g_overlap < 2) {
            const struct result *base = NULL;
            int bi = -1;
            for (int i = 0; i < N_REQ; i += 2)
                if (alone[i].text_len >= 12) {
                    base = &alone[i];
                    bi = i;
                    break;
                }
            CHECK(base, "no greedy request produced 12 bytes of text");
            if (base) {
                char stop[8];
                int at = base->text_len / 2;
                while (at < base->text_len && ((unsigned char)base->text[at] & 0xc0) == 0x80) at++;   /* a char start */
                int sl = base->text_len - at < 3 ? base->text_len - at : 3;
                memcpy(stop, base->text + at, (size_t)sl);
                stop[sl] = 0;
                int cut = (int)(strstr(base->text, stop) - base->text);   /* first occurrence, maybe earlier */
                const char *stops_[] = {stop};
                e = make_engine(m, tok, 64, 64);
                struct slm_request q = {.prompt = sp[bi].prompt, .n_prompt = sp[bi].n_prompt, .sampling = sp[bi].s,
                                        .max_tokens = sp[bi].max_tokens, .stop = stops_, .n_stop = 1, .logprobs = 3};
                static struct result rs;
                memset(&rs, 0, sizeof rs);
                int64_t id = slm_engine_add(e, &q, err);
                CHECK(id >= 0, "add with a stop string: %s", err);
                struct run_ctx c = {&rs, &id, 1};
                while (slm_engine_step(e, on_event, &c) > 0) {}
                CHECK(rs.finish == SLM_ENGINE_FINISH_STOP, "stop string '%s': finish %d, expected STOP", stop,
                      rs.finish);
                CHECK(rs.text_len == cut && !memcmp(rs.text, base->text, (size_t)cut),
                      "stop string '%s': expected %d bytes (the text before it), got %d", stop, cut, rs.text_len);
                for (int g = 0; g < rs.n; g++) {
                    CHECK(rs.n_top[g] == 3, "logprobs: expected 3 top entries, got %d", rs.n_top[g]);
                    CHECK(rs.logprob[g] <= 0.0f, "logprob %g > 0", (double)rs.logprob[g]);
                    CHECK(rs.top0[g] == rs.tok[g], "greedy token %d is not the top logprob %d", rs.tok[g], rs.top0[g]);
                }
                CHECK(slm_engine_free_blocks(e) == 64, "stop: free blocks %d of 64", slm_engine_free_blocks(e));
                slm_engine_destroy(&e);
            }
        }

        /* Submission and cancellation from another thread while this one steps. */
        {
            static struct result th[N_REQ];
            memset(th, 0, sizeof th);
            e = make_engine(m, tok, 96, 64);
            struct submitter s = {.e = e, .sp = sp, .n = N_REQ};
            pthread_t t;
            CHECK(pthread_create(&t, NULL, submit_thread, &s) == 0, "pthread_create");
            int steps = 0;
            while (!__atomic_load_n(&s.done, __ATOMIC_ACQUIRE) || slm_engine_n_unfinished(e) > 0) {
                int rc = slm_engine_step(e, on_event_by_id, th);
                CHECK(rc >= 0, "threaded step: %d", rc);
                if (rc < 0) break;
                if (rc == 0) usleep(500);
                steps++;
            }
            pthread_join(t, NULL);
            CHECK(s.bad == 0, "threaded: %d adds failed or got unexpected ids", s.bad);
            int n_cancelled = 0, n_compared = 0;
            for (int i = 0; i < N_REQ; i++) {
                CHECK(th[i].done == 1, "threaded: request %d got %d finish events", i, th[i].done);
                if (th[i].finish == SLM_ENGINE_FINISH_CANCELLED) {
                    CHECK(i % 5 == 4, "threaded: request %d was cancelled but nobody cancelled it", i);
                    n_cancelled++;
                    continue;
                }
                n_compared++;
                compare("threaded vs alone", &th[i], &alone[i], 1);
            }
            CHECK(slm_engine_free_blocks(e) == 96, "threaded: free blocks %d of 96", slm_engine_free_blocks(e));
            printf("threaded: %d steps, %d cancelled, %d compared with their runs alone\n", steps, n_cancelled,
                   n_compared);
            slm_engine_destroy(&e);
        }
    }
    g_overlap = 0;

    if (!overlap_part) {
        /* Fairness: owner 1 queues 1000 requests; owner 2's one request gets its first token within
         * ceil((40 + P_ahead) / (max_batch_tokens - max_seqs + 1)) steps, where P_ahead <= 8 is the
         * prompt of the one owner-1 request ranked above it (docs/engine.md). The same request
         * from owner 1 waits behind the flood: the bound is what fair share buys. */
        {
            const int batch = 64, seqs = 16;
            int bound = (40 + 8 + (batch - seqs + 1) - 1) / (batch - seqs + 1);
            e = make_engine_seqs(m, tok, 512, batch, seqs);
            int fair = flood_then_one(e, sp, 1000, 3, 2, 50);
            CHECK(fair <= bound, "fairness: owner 2's request took %d steps to its first token; bound %d", fair, bound);
            CHECK(slm_engine_free_blocks(e) == 512, "fairness: free blocks %d of 512", slm_engine_free_blocks(e));
            int same = flood_then_one(e, sp, 1000, 3, 1, 5 * bound);
            CHECK(same > 5 * bound, "fairness control: owner 1's own extra request took only %d steps", same);
            printf("fairness: first token after %d step(s) from another owner (bound %d); > %d from the flooding "
                   "owner\n",
                   fair, bound, 5 * bound);
            slm_engine_destroy(&e);
        }

        /* A prompt of exactly the context gives one token (LENGTH); one token more is refused. */
        {
            static int32_t full[N_CTX + 1];
            for (int j = 0; j <= N_CTX; j++) full[j] = 100 + (int32_t)(rnd() % 20000);
            e = make_engine(m, tok, N_CTX / 16, 256);
            struct slm_request q = {.prompt = full, .n_prompt = N_CTX, .max_tokens = 8};
            slm_sampling_defaults(&q.sampling);
            q.sampling.temperature = 0;
            static struct result rf;
            memset(&rf, 0, sizeof rf);
            int64_t id = slm_engine_add(e, &q, err);
            CHECK(id >= 0, "prompt of exactly the context: %s", err);
            struct run_ctx c = {&rf, &id, 1};
            while (id >= 0 && slm_engine_step(e, on_event, &c) > 0) {}
            CHECK(rf.done && rf.n == 1 && rf.finish == SLM_ENGINE_FINISH_LENGTH,
                  "prompt of exactly the context: expected 1 token and LENGTH, got %d tokens, finish %d", rf.n,
                  rf.finish);
            q.n_prompt = N_CTX + 1;
            CHECK(slm_engine_add(e, &q, err) == -E2BIG && strstr(err, "context"), "prompt past the context: %s", err);
            CHECK(slm_engine_free_blocks(e) == N_CTX / 16, "context: free blocks %d", slm_engine_free_blocks(e));
            slm_engine_destroy(&e);
        }

        /* max_tokens: every request that finished with LENGTH generated exactly max_tokens. */
        for (int i = 0; i < N_REQ; i++)
            if (together[i].finish == SLM_ENGINE_FINISH_LENGTH)
                CHECK(together[i].n == sp[i].max_tokens, "request %d: LENGTH after %d tokens, max_tokens %d", i,
                      together[i].n, sp[i].max_tokens);
    }

    /* Prompt logprobs: every prompt token after the first, once, in order, equal to the
     * runner's log-softmax of the previous position's logits; the prefix cache is bypassed;
     * the same in a tight cache with preemptions and alongside other requests. */
    {
        static int32_t prompt[PLP_N];
        for (int i = 0; i < PLP_N; i++) prompt[i] = (int32_t)(rnd() % (uint32_t)m->cfg.n_vocab);
        static float all[PLP_N * 49152];
        float want[PLP_N] = {0};
        struct slm_runner *rr = slm_runner_create(m, N_CTX, PLP_N, err);
        CHECK(rr && m->cfg.n_vocab <= 49152, "runner: %s", err);
        if (rr && slm_runner_eval(rr, prompt, PLP_N, 1, all) == 0)
            for (int i = 1; i < PLP_N; i++)
                slm_logprobs_top(all + (size_t)(i - 1) * (size_t)m->cfg.n_vocab, m->cfg.n_vocab, prompt[i], 0,
                                 &want[i], NULL);
        slm_runner_destroy(&rr);
        struct slm_request q[4];
        for (int i = 0; i < 4; i++) {
            q[i] = (struct slm_request){.prompt = sp[i].prompt, .n_prompt = sp[i].n_prompt, .sampling = sp[i].s,
                                        .max_tokens = 3};
        }
        q[0] = (struct slm_request){.prompt = prompt, .n_prompt = PLP_N, .max_tokens = 2, .prompt_logprobs = 1};
        slm_sampling_defaults(&q[0].sampling);
        q[0].sampling.temperature = 0;
        q[2] = q[0];   /* twice: the second may not take the first's blocks from the cache */
        struct plp_run c;
        const char *cases[] = {"alone", "with others, cached prefix", "tight cache"};
        for (int cso = overlap_part ? 3 : 0; cso < (overlap_part ? 6 : 3); cso++) {   /* overlapped: 3..5 */
            const int cs = cso % 3;
            g_overlap = cso / 3;
            e = cs == 2 ? make_engine(m, tok, 14, 48) : make_engine(m, tok, 256, 64);
            if (cs == 1) {   /* the prompt's blocks in the prefix cache first, and proof they are */
                struct slm_request plain[2] = {q[0], q[0]};
                plain[0].prompt_logprobs = plain[1].prompt_logprobs = 0;
                run_plp(e, plain, 1, &c);
                run_plp(e, plain + 1, 1, &c);
                CHECK(c.n_cached[0] >= PLP_N - 16, "prefix cache: a plain repeat took %d of %d tokens from it",
                      c.n_cached[0], PLP_N);
            }
            run_plp(e, q, cs ? 4 : 1, &c);
            for (int i = 0; i < (cs ? 4 : 1); i += 2) {
                int mism = 0;
                for (int k = 1; k < PLP_N; k++)
                    if (c.lp[i][k] != want[k] && mism++ < 5)
                        printf("%s: request %d, prompt token %d: logprob %.9g, runner %.9g\n", cases[cs], i, k,
                               (double)c.lp[i][k], (double)want[k]);
                CHECK(c.done[i] && !c.bad[i] && c.next[i] == PLP_N && mism == 0 && c.n_gen[i] == 2 &&
                          c.n_cached[i] == 0,
                      "prompt logprobs %s (overlap %d), request %d: done %d, out of order %d, reported up to %d of %d, "
                      "%d differ from the runner, %d tokens, %d cached",
                      cases[cs], g_overlap, i, c.done[i], c.bad[i], c.next[i], PLP_N, mism, c.n_gen[i], c.n_cached[i]);
            }
            for (int i = 1; i < (cs ? 4 : 1); i += 2)
                CHECK(c.done[i] && c.next[i] == 1, "a request without prompt logprobs got some (%d)", c.next[i] - 1);
            if (cs == 2) printf("prompt logprobs in a tight cache: %llu preemptions\n",
                                (unsigned long long)slm_engine_n_preempted(e));
            CHECK(slm_engine_free_blocks(e) == (cs == 2 ? 14 : 256), "prompt logprobs %s: free blocks %d", cases[cs],
                  slm_engine_free_blocks(e));
            slm_engine_destroy(&e);
        }
        g_overlap = 0;
    }

    if (!overlap_part) {
        /* Bad requests. */
        e = make_engine(m, tok, 4, 64);
        {
            int32_t bad_tok = m->cfg.n_vocab;
            struct slm_request q = {.prompt = &bad_tok, .n_prompt = 1, .max_tokens = 1};
            slm_sampling_defaults(&q.sampling);
            CHECK(slm_engine_add(e, &q, err) == -EINVAL && strstr(err, "vocabulary"), "bad token: %s", err);
            q.prompt = sp[0].prompt;
            q.max_tokens = 100;   /* 4 blocks of 16 cannot hold it */
            CHECK(slm_engine_add(e, &q, err) == -E2BIG && strstr(err, "whole cache"), "too big: %s", err);
            q.max_tokens = 0;
            CHECK(slm_engine_add(e, &q, err) == -EINVAL, "max_tokens 0 accepted");
            q.max_tokens = 2;
            q.logprobs = 21;
            CHECK(slm_engine_add(e, &q, err) == -EINVAL && strstr(err, "logprobs"), "logprobs 21: %s", err);
            q.logprobs = 0;
            const char *empty[] = {""};
            q.stop = empty;
            q.n_stop = 1;
            CHECK(slm_engine_add(e, &q, err) == -EINVAL, "an empty stop string accepted");
            q.n_stop = 0;
            int32_t bad_stop = -5;
            q.stop_ids = &bad_stop;
            q.n_stop_ids = 1;
            CHECK(slm_engine_add(e, &q, err) == -EINVAL && strstr(err, "stop token"), "stop id -5: %s", err);
        }
        slm_engine_destroy(&e);

        /* A penalty window longer than the context (fuzz_sqe: repeat_last_n = INT_MAX made every
         * request allocate an 8 GiB ring): the same tokens as a window of the context, and no
         * allocation of the window's size. */
        {
            struct spec w = sp[0];
            w.arrival = 0;
            w.s.temperature = 0.0f;
            w.s.repeat_penalty = 1.5f;
            w.s.repeat_last_n = N_CTX;
            static struct result ctx_window[1], huge_window[1];
            e = make_engine(m, tok, 64, 64);
            run_all(e, &w, 1, ctx_window);
            w.s.repeat_last_n = 2147483647;
    #ifndef SLM_TEST_ASAN
            struct mallinfo2 before = mallinfo2();
            int64_t id = add(e, &w);
            size_t grew = mallinfo2().hblkhd - before.hblkhd;
            CHECK(grew < (64u << 20), "repeat_last_n INT_MAX: %zu bytes mapped for one request", grew);
            slm_engine_cancel(e, id);
            CHECK(slm_engine_step(e, on_event, &(struct run_ctx){huge_window, &id, 1}) == 0, "reap the cancelled one");
    #endif
            run_all(e, &w, 1, huge_window);
            compare("repeat_last_n INT_MAX vs the context", huge_window, ctx_window, 1);
            slm_engine_destroy(&e);
        }

        /* Prefill progress (issue 18): a 300-token prompt in steps of at most 64 tokens reports 64,
         * 128, ... of 300 before its first token, and the tokens are those of the same request
         * without progress; a request beside it that did not ask gets no progress event. */
        {
            struct spec pr[2] = {sp[0], sp[1]};
            pr[0].n_prompt = 300;
            for (int i = 0; i < 300; i++) pr[0].prompt[i] = (int32_t)(100 + (i * 37) % 20000);
            pr[0].arrival = pr[1].arrival = 0;
            static struct result with[2], without[2];
            e = make_engine(m, tok, 256, 64);
            run_all(e, pr, 2, without);
            slm_engine_destroy(&e);
            pr[0].progress = 1;
            e = make_engine(m, tok, 256, 64);
            run_all(e, pr, 2, with);
            slm_engine_destroy(&e);
            compare("with progress vs without", with, without, 2);
            CHECK(without[0].n_progress == 0 && with[1].n_progress == 0, "progress events unasked: %d, %d",
                  without[0].n_progress, with[1].n_progress);
            CHECK(with[0].n_progress >= 300 / 64 && with[0].n_progress <= 32 && !with[0].progress_late,
                  "progress: %d events (%d after the first token)", with[0].n_progress, with[0].progress_late);
            for (int i = 0; i < with[0].n_progress && i < 32; i++)
                CHECK(with[0].prefilled[i] > (i ? with[0].prefilled[i - 1] : 0) && with[0].prefilled[i] < 300 &&
                          with[0].prefilled[i] - (i ? with[0].prefilled[i - 1] : 0) <= 64,
                      "progress event %d: %d prefilled (previous %d) of 300", i, with[0].prefilled[i],
                      i ? with[0].prefilled[i - 1] : 0);
        }
    }

    slm_tok_destroy(&tok);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    if (failures) printf("test_engine: %d failures\n", failures);
    else printf("test_engine: ok\n");
    return failures ? 1 : 0;
}
