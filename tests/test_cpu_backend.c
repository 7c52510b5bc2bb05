/*
 * tests/test_cpu_backend.c - the CPU backend's packed weights and the chunks that hold them
 * (daemon/engine/backends/cpu.c, cpu_chunk).
 *
 * Weights of many sizes are loaded one after another, so that small ones share a chunk, the
 * chunks fill and new ones start, and a weight past half a chunk gets one of its own. Each
 * weight's product through the backend must equal, bit for bit, the kernels' product on the
 * GGUF layout. Then every other weight is unloaded, new ones are loaded into the freed room,
 * the products are checked again, and everything is unloaded in a shuffled order; the
 * sanitizer build (CI's second pass) turns any use after free, double free or leak into a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "daemon/engine/backends/backend.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/quant.h"

static int failures;

#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "tests/rng.h"

#define COLS 256
#define N_TOK 3

struct tw {
    struct slm_weight w;
    uint8_t *gguf;   /* the GGUF-layout bytes (w.data) */
    int loaded;
};

/* Random Q8_0 rows: random values, sane scales. */
static void make_weight(struct tw *t, int64_t rows)
{
    size_t row_bytes = (COLS / 32) * sizeof(struct slm_block_q8_0);
    t->gguf = malloc((size_t)rows * row_bytes);
    struct slm_block_q8_0 *b = (struct slm_block_q8_0 *)t->gguf;
    for (int64_t i = 0; i < rows * (COLS / 32); i++) {
        b[i].d = slm_f32_to_half(0.01f + 0.02f * (float)(rnd() % 100) / 100.0f);
        for (int k = 0; k < 32; k++) b[i].qs[k] = (int8_t)(rnd() % 255 - 127);
    }
    t->w = (struct slm_weight){.type = SLM_TYPE_Q8_0, .rows = rows, .cols = COLS, .row_bytes = row_bytes,
                               .data = t->gguf};
    t->loaded = 0;
}

static void load(struct slm_backend *be, struct tw *t, const char *what)
{
    int rc = be->ops->load_weight(be, &t->w);
    if (rc) {
        printf("%s: load of %lld rows: error %d\n", what, (long long)t->w.rows, rc);
        failures++;
        return;
    }
    t->loaded = 1;
}

static void unload(struct slm_backend *be, struct tw *t)
{
    be->ops->unload_weight(be, &t->w);
    t->loaded = 0;
}

/* The backend's product against the kernels' on the GGUF layout, bit for bit. */
static void check_product(struct slm_backend *be, struct slm_pool *pool, struct tw *t, const float *x,
                          const char *what)
{
    if (!t->loaded) return;
    size_t n = (size_t)N_TOK * (size_t)t->w.rows;
    float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    const struct slm_weight *wp = &t->w;
    int rc = be->ops->matmul(be, 1, &wp, x, N_TOK, &got, 0);
    struct slm_cpu_matmul_job job = {.type = t->w.type, .layout = SLM_CPU_LAYOUT_ROWS, .rows = t->w.rows,
                                     .cols = COLS, .row_bytes = t->w.row_bytes, .w = t->gguf, .y = want};
    void *scratch = malloc(slm_cpu_matmul_scratch_bytes(1, &job, N_TOK));
    int rc2 = slm_cpu_matmul(pool, 1, &job, x, N_TOK, 0, scratch);
    if (rc || rc2) {
        printf("%s: %lld rows: matmul error %d / %d\n", what, (long long)t->w.rows, rc, rc2);
        failures++;
    } else if (memcmp(got, want, n * sizeof *got) != 0) {
        size_t i = 0;
        while (i < n && got[i] == want[i]) i++;
        printf("%s: %lld rows: output %zu is %.9g, the GGUF layout's %.9g\n", what, (long long)t->w.rows, i,
               (double)got[i], (double)want[i]);
        failures++;
    }
    free(scratch);
    free(got);
    free(want);
}

int main(void)
{
    char err[SLM_ERR_LEN];
    struct slm_backend *be = slm_backend_cpu_create(2, err);
    struct slm_pool *pool = slm_pool_create(1);
    if (!be || !pool) {
        printf("setup: %s\n", be ? "cannot start a pool" : err);
        return 1;
    }
    /* Rows: small ones, some of 8 MiB (four fill a 32 MiB chunk with the small ones), and
     * one of 20 MiB (past half a chunk: a chunk of its own). A Q8_0 row of 256 is 272 bytes. */
    static const int64_t rows[] = {8,  40,    1024, 30840, 4096, 30840, 16, 77104, 30840, 2048,
                                   64, 30840, 8,    30840, 512,  24};
    enum { N = sizeof rows / sizeof rows[0] };
    struct tw ws[N], more[N / 2];
    float *x = malloc((size_t)N_TOK * COLS * sizeof *x);
    for (int i = 0; i < N_TOK * COLS; i++) x[i] = frand();
    for (int i = 0; i < N; i++) {
        make_weight(&ws[i], rows[i]);
        load(be, &ws[i], "first load");
    }
    for (int i = 0; i < N; i++) check_product(be, pool, &ws[i], x, "first load");
    /* Every other weight unloaded, new ones (other sizes) loaded; the rest must be untouched. */
    for (int i = 0; i < N; i += 2) unload(be, &ws[i]);
    for (int i = 0; i < N / 2; i++) {
        make_weight(&more[i], rows[N - 1 - 2 * i] + 8);
        load(be, &more[i], "second load");
    }
    for (int i = 0; i < N; i++) check_product(be, pool, &ws[i], x, "kept weight");
    for (int i = 0; i < N / 2; i++) check_product(be, pool, &more[i], x, "second load");
    /* Everything unloaded, in a shuffled order, then one more load into an emptied backend. */
    struct tw *all[N + N / 2];
    for (int i = 0; i < N; i++) all[i] = &ws[i];
    for (int i = 0; i < N / 2; i++) all[N + i] = &more[i];
    for (int i = N + N / 2 - 1; i > 0; i--) {
        int j = (int)(rnd() % (unsigned)(i + 1));
        struct tw *s = all[i];
        all[i] = all[j];
        all[j] = s;
    }
    for (int i = 0; i < N + N / 2; i++)
        if (all[i]->loaded) unload(be, all[i]);
    load(be, &ws[1], "reload");
    check_product(be, pool, &ws[1], x, "reload");
    unload(be, &ws[1]);
    for (int i = 0; i < N; i++) free(ws[i].gguf);
    for (int i = 0; i < N / 2; i++) free(more[i].gguf);
    free(x);
    slm_pool_destroy(&pool);
    slm_backend_destroy(&be);
    printf("test_cpu_backend: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
