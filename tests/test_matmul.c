/*
 * tests/test_matmul.c - the CPU matmul driver and its fast tiles.
 *
 * 1. The AVX2 activation quantizers are bit-exact with slm_cpu_quantize_row.
 * 2. Every weight type's matmul (whatever tiles run) agrees with a float64 dot of the
 *    reference-dequantized weights and activations, within a bound stated per type.
 * 3. Batch invariance: a token's outputs are bit-identical whether it is multiplied alone,
 *    among 7 or 37 tokens, at any position in the batch, with 1 or 2 threads.
 * 2 and 3 run on the GGUF layout and, for the types the fast kernels repack, on the X8
 * layout, where every token count from 1 to 13 is checked too; 4. the AVX2 and AVX-512 X8
 * tiles give the same bits; 5. each tier's X8 tiles equal the portable kernel on long rows and
 * many tokens, accumulating or not.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"

static int failures;

#define TEST_RNG_SEED 0x9e3779b97f4a7c15ull
#include "tests/rng.h"

/* Random weights of `type`: quantize random floats where a quantizer exists, else
 * random bytes with sane scales written over each block's leading half(s). */
static void random_weights(uint32_t type, int64_t rows, int64_t cols, uint8_t *w, size_t row_bytes)
{
    for (size_t i = 0; i < (size_t)rows * row_bytes; i++) w[i] = (uint8_t)rnd();
    size_t bb = slm_qblock_bytes(type);
    size_t nb = (size_t)rows * row_bytes / bb;
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * bb;
        slm_half d = slm_f32_to_half(0.01f + 0.02f * (float)(rnd() % 100) / 100.0f);
        slm_half m = slm_f32_to_half(-0.1f * (float)(rnd() % 100) / 100.0f);
        switch (type) {
        case SLM_TYPE_F32: { float f = frand(); memcpy(blk, &f, 4); break; }
        case SLM_TYPE_F16: { slm_half h = slm_f32_to_half(frand()); memcpy(blk, &h, 2); break; }
        case SLM_TYPE_BF16: { slm_bf16 h = slm_f32_to_bf16(frand()); memcpy(blk, &h, 2); break; }
        case SLM_TYPE_Q6_K: memcpy(blk + bb - 2, &d, 2); break;   /* d is last in Q6_K */
        case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_1: case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K:
            memcpy(blk, &d, 2);
            memcpy(blk + 2, &m, 2);
            break;
        default: memcpy(blk, &d, 2); break;
        }
    }
}

static void check_quantizers(void)
{
    uint32_t types[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q8_K};
    for (size_t t = 0; t < 3; t++) {
        slm_cpu_quant_fn fast = slm_cpu_quant_avx2(types[t]);
        if (!fast || strcmp(slm_cpu_kernels_name(), "generic") == 0) continue;
        int64_t k = 256 * 5;
        float *x = malloc((size_t)k * sizeof *x);
        size_t bytes = (size_t)(k / slm_qblock_elems(types[t])) * slm_qblock_bytes(types[t]);
        uint8_t *a = malloc(bytes), *b = malloc(bytes);
        for (int rep = 0; rep < 50; rep++) {
            for (int64_t i = 0; i < k; i++) x[i] = frand() * (rep % 5 == 0 ? 1e-3f : 7.0f);
            if (rep == 1) memset(x, 0, 32 * sizeof *x);            /* an all-zero block */
            if (rep == 2) for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) * 0.5f;  /* exact .5 ties */
            if (rep == 3) memset(x + 256, 0, 256 * sizeof *x);   /* an all-zero 256-element block */
            if (rep == 4) x[300] = -9.0f, x[400] = 9.0f, x[700] = 9.0f, x[600] = -9.0f;   /* magnitude ties */
            slm_cpu_quantize_row(types[t], x, a, k);
            fast(x, b, k);
            if (memcmp(a, b, bytes) != 0) {
                printf("quantize %s: AVX2 bytes differ from the reference (rep %d)\n", slm_qtype_name(types[t]), rep);
                failures++;
                break;
            }
        }
        free(x);
        free(a);
        free(b);
    }
}

/* The activation row as the dot product sees it (quantized values times scales). */
static void act_to_float(uint32_t at, const uint8_t *aq, float *af, int64_t cols)
{
    if (at == SLM_TYPE_F32 || at == SLM_TYPE_Q8_0) {
        slm_cpu_dequantize_row(at, aq, af, cols);
    } else if (at == SLM_TYPE_Q8_1) {
        const struct slm_block_q8_1 *b = (const void *)aq;
        for (int64_t i = 0; i < cols; i++) af[i] = slm_half_to_f32(b[i / 32].d) * (float)b[i / 32].qs[i % 32];
    } else {
        const struct slm_block_q8_K *b = (const void *)aq;
        for (int64_t i = 0; i < cols; i++) af[i] = b[i / 256].d * (float)b[i / 256].qs[i % 256];
    }
}

/* Per-type bound on |got - ref| relative to sum |w_i * a_i|: float32 rounding of the
 * per-block sums and of the block scales' products (a few ulps of the magnitude). */
static double bound_for(uint32_t type)
{
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16 ? 1e-7 : 1e-6;
}

static void check_type(struct slm_pool *pool, uint32_t type, uint32_t layout)
{
    int64_t cols = slm_qblock_elems(type) == 256 ? 512 : 96, rows = layout == SLM_CPU_LAYOUT_X8 ? 40 : 37;
    size_t row_bytes = (size_t)(cols / slm_qblock_elems(type)) * slm_qblock_bytes(type);
    const int ns[] = {1, 7, 37};
    uint8_t *w = malloc((size_t)rows * row_bytes);
    random_weights(type, rows, cols, w, row_bytes);
    uint8_t *packed = NULL;
    if (layout != SLM_CPU_LAYOUT_ROWS) {
        packed = malloc(slm_cpu_layout_bytes(layout, type, rows, cols));
        if (slm_cpu_repack(layout, type, rows, cols, w, row_bytes, packed)) {
            printf("%s: repack returned an error\n", slm_qtype_name(type));
            failures++;
        }
    }
    float *x = malloc((size_t)37 * (size_t)cols * sizeof *x);
    for (int64_t i = 0; i < 37 * cols; i++) x[i] = frand();
    float *y[3], *wf = malloc((size_t)cols * sizeof *wf), *af = malloc((size_t)cols * sizeof *af);
    uint8_t *aq = malloc(slm_cpu_act_row_bytes(type, cols));
    struct slm_cpu_matmul_job job = {.type = type, .layout = layout, .rows = rows, .cols = cols,
                                     .row_bytes = row_bytes, .w = packed ? packed : w};
    for (int v = 0; v < 3; v++) {
        y[v] = malloc((size_t)ns[v] * (size_t)rows * sizeof(float));
        void *scratch = malloc(slm_cpu_matmul_scratch_bytes(1, &job, ns[v]));
        job.y = y[v];
        /* token t of this call is token (t + v) % 37 of x: positions in the batch differ */
        float *xs = malloc((size_t)ns[v] * (size_t)cols * sizeof *xs);
        for (int t = 0; t < ns[v]; t++)
            memcpy(xs + (size_t)t * (size_t)cols, x + (size_t)((t + v) % 37) * (size_t)cols, (size_t)cols * 4);
        if (slm_cpu_matmul(pool, 1, &job, xs, ns[v], 0, scratch)) {
            printf("%s: matmul returned an error\n", slm_qtype_name(type));
            failures++;
        }
        free(xs);
        free(scratch);
    }
    /* 3: token 0 of x is at index 0 (n=1), 37-1 (n=37, v=2) ... compare token 1 across calls */
    int bad = 0;
    for (int64_t r = 0; r < rows && bad < 10; r++) {
        float alone = y[0][r];                             /* x token 0, n = 1 */
        float in37 = y[2][(size_t)35 * (size_t)rows + r];  /* x token (35 + 2) % 37 = 0, n = 37 */
        float in7 = y[1][(size_t)6 * (size_t)rows + r];    /* x token (6 + 1) % 37 = 7 */
        float in37b = y[2][(size_t)5 * (size_t)rows + r];  /* x token 7 */
        if (memcmp(&alone, &in37, 4) || memcmp(&in7, &in37b, 4)) {
            printf("%s row %lld: batch invariance: alone %.9g vs in 37 %.9g; in 7 %.9g vs in 37 %.9g\n",
                   slm_qtype_name(type), (long long)r, alone, in37, in7, in37b);
            bad++;
            failures++;
        }
    }
    /* 2: accuracy against float64 over the reference dequantizations, n = 37 call */
    double max_rel = 0;
    int shown = 0;
    for (int t = 0; t < 37; t++) {
        const float *xt = x + (size_t)((t + 2) % 37) * (size_t)cols;
        slm_cpu_quantize_row(slm_cpu_vec_dot_type(type), xt, aq, cols);
        act_to_float(slm_cpu_vec_dot_type(type), aq, af, cols);
        for (int64_t r = 0; r < rows; r++) {
            slm_cpu_dequantize_row(type, w + (size_t)r * row_bytes, wf, cols);
            double ref = 0, mag = 0;
            if (slm_cpu_vec_dot_type(type) == SLM_TYPE_Q8_1) {
                /* Q4_1/Q5_1: w = d*q + m, and the offset m meets the activation block through its
                 * stored sum s (fp16, as in ggml's Q8_1), which is part of the operand as stored. */
                const uint8_t *wr = w + (size_t)r * row_bytes;
                const struct slm_block_q8_1 *ab = (const void *)aq;
                for (int64_t b = 0; b < cols / 32; b++) {
                    slm_half mh;
                    memcpy(&mh, wr + (size_t)b * slm_qblock_bytes(type) + 2, 2);
                    double m = slm_half_to_f32(mh), ms = m * slm_half_to_f32(ab[b].s);
                    for (int64_t i = 32 * b; i < 32 * b + 32; i++) {
                        ref += ((double)wf[i] - m) * (double)af[i];
                        mag += fabs(((double)wf[i] - m) * (double)af[i]);
                    }
                    ref += ms;
                    mag += fabs(ms);
                }
            } else {
                for (int64_t i = 0; i < cols; i++) {
                    ref += (double)wf[i] * (double)af[i];
                    mag += fabs((double)wf[i] * (double)af[i]);
                }
            }
            double got = y[2][(size_t)t * (size_t)rows + r];
            /* Every tier computes the portable kernel's bits (the order llama.cpp's uses). */
            float want = slm_cpu_vec_dot_ref(type, cols, w + (size_t)r * row_bytes, aq);
            float gotf = y[2][(size_t)t * (size_t)rows + r];
            if (memcmp(&want, &gotf, 4) != 0 && shown < 10) {
                printf("%s token %d row %lld: %s kernels %.9g, portable kernel %.9g (bits differ)\n",
                       slm_qtype_name(type), t, (long long)r, slm_cpu_kernels_name(), gotf, want);
                shown++;
                failures++;
            }
            double rel = fabs(got - ref) / (mag > 1e-30 ? mag : 1e-30);
            if (rel > max_rel) max_rel = rel;
            if (rel > bound_for(type) && shown < 10) {
                printf("%s token %d row %lld: expected %.9g, got %.9g (rel %.3g > %.1g)\n", slm_qtype_name(type), t,
                       (long long)r, ref, got, rel, bound_for(type));
                shown++;
                failures++;
            }
        }
    }
    printf("%-5s %s cols %4lld: max rel error %.3g (bound %.1g)%s\n", slm_qtype_name(type),
           layout == SLM_CPU_LAYOUT_X8 ? "x8  " : "rows", (long long)cols, max_rel, bound_for(type),
           shown || bad ? "  FAIL" : "");
    for (int v = 0; v < 3; v++) free(y[v]);
    free(w);
    free(packed);
    free(x);
    free(wf);
    free(af);
    free(aq);
}

/* Every token count from 1 to 13 (each remainder of every tile width) on the X8 layout: each
 * output bit-identical with the portable kernel on the GGUF row. */
static void check_token_counts(struct slm_pool *pool, uint32_t type)
{
    int64_t cols = slm_qblock_elems(type) == 256 ? 768 : 160, rows = 48;
    size_t row_bytes = (size_t)(cols / slm_qblock_elems(type)) * slm_qblock_bytes(type);
    size_t as = slm_cpu_act_row_bytes(type, cols);
    uint8_t *w = malloc((size_t)rows * row_bytes), *p = malloc(slm_cpu_layout_bytes(SLM_CPU_LAYOUT_X8, type, rows, cols));
    random_weights(type, rows, cols, w, row_bytes);
    slm_cpu_repack(SLM_CPU_LAYOUT_X8, type, rows, cols, w, row_bytes, p);
    float *x = malloc((size_t)13 * (size_t)cols * sizeof *x), *y = malloc((size_t)13 * (size_t)rows * sizeof *y);
    uint8_t *aq = malloc(as);
    for (int64_t i = 0; i < 13 * cols; i++) x[i] = frand() * 2.0f;
    struct slm_cpu_matmul_job job = {.type = type, .layout = SLM_CPU_LAYOUT_X8, .rows = rows, .cols = cols,
                                     .row_bytes = row_bytes, .w = p, .y = y};
    int bad = 0;
    for (int n = 1; n <= 13 && bad < 10; n++) {
        void *scratch = malloc(slm_cpu_matmul_scratch_bytes(1, &job, n));
        slm_cpu_matmul(pool, 1, &job, x, n, 0, scratch);
        for (int t = 0; t < n && bad < 10; t++) {
            slm_cpu_quantize_row(slm_cpu_vec_dot_type(type), x + (size_t)t * (size_t)cols, aq, cols);
            for (int64_t r = 0; r < rows && bad < 10; r++) {
                float want = slm_cpu_vec_dot_ref(type, cols, w + (size_t)r * row_bytes, aq);
                float got = y[(size_t)t * (size_t)rows + r];
                if (memcmp(&want, &got, 4)) {
                    printf("%s x8, %d tokens, token %d row %lld: expected %.9g, got %.9g\n", slm_qtype_name(type), n, t,
                           (long long)r, want, got);
                    bad++;
                    failures++;
                }
            }
        }
        free(scratch);
    }
    printf("%-5s x8   tokens 1..13, %d threads: %s\n", slm_qtype_name(type), slm_pool_threads(pool),
           bad ? "FAIL" : "identical to the portable kernel");
    free(w);
    free(p);
    free(x);
    free(y);
    free(aq);
}

/* The operands of an X8 tile: rows x cols weights of a type (GGUF rows w, X8 layout p) and n
 * quantized activation rows a (token c's values frand() x (1 + c % period)) with their scales sc. */
struct x8_operands {
    uint8_t *w, *p, *a;
    struct slm_cpu_act_scale *sc;
    size_t row_bytes, as;
    int64_t nb;
};

static void x8_operands_make(struct x8_operands *o, uint32_t type, int64_t rows, int64_t cols, int n, int period)
{
    o->nb = cols / slm_qblock_elems(type);
    o->row_bytes = (size_t)o->nb * slm_qblock_bytes(type);
    o->w = malloc((size_t)rows * o->row_bytes);
    o->p = malloc(slm_cpu_layout_bytes(SLM_CPU_LAYOUT_X8, type, rows, cols));
    random_weights(type, rows, cols, o->w, o->row_bytes);
    slm_cpu_repack(SLM_CPU_LAYOUT_X8, type, rows, cols, o->w, o->row_bytes, o->p);
    uint32_t at = slm_cpu_vec_dot_type(type);
    o->as = slm_cpu_act_row_bytes(type, cols);
    float *x = malloc((size_t)cols * sizeof *x);
    o->a = malloc((size_t)n * o->as);
    o->sc = malloc((size_t)n * (size_t)o->nb * sizeof *o->sc);
    for (int c = 0; c < n; c++) {
        for (int64_t i = 0; i < cols; i++) x[i] = frand() * (float)(1 + c % period);
        slm_cpu_quantize_row(at, x, o->a + (size_t)c * o->as, cols);
        if (at != SLM_TYPE_Q8_K)   /* Q8_K's tiles read its blocks */
            slm_cpu_act_scales(at, o->a + (size_t)c * o->as, o->as, 1, o->nb, o->sc + (size_t)c * (size_t)o->nb);
    }
    free(x);
}

static void x8_operands_free(struct x8_operands *o)
{
    free(o->w);
    free(o->p);
    free(o->a);
    free(o->sc);
}

/* The AVX2 and AVX-512 X8 tiles on the same operands: 1 to 3 groups, every token count
 * up to 19. */
static void check_tiers(void)
{
    if (strcmp(slm_cpu_kernels_name(), "avx512vnni") != 0) return;
    uint32_t types[] = {SLM_TYPE_Q4_1, SLM_TYPE_Q8_0, SLM_TYPE_Q5_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        slm_cpu_x8_fn f2 = slm_cpu_x8_avx2(types[t]), f5 = slm_cpu_x8_avx512(types[t]);
        if (!f2 || !f5) continue;
        const int nc = 19;
        struct x8_operands o;
        x8_operands_make(&o, types[t], 24, 32 * 24, nc, nc);
        const int64_t nb = o.nb;
        const uint8_t *p = o.p, *a = o.a;
        const size_t as = o.as;
        const struct slm_cpu_act_scale *sc = o.sc;
        float y2[19 * 24], y5[19 * 24];
        int bad = 0;
        for (int ng = 1; ng <= 3; ng++)
            for (int n = 1; n <= nc && bad < 10; n++) {
                f2(nb, p, ng, a, as, sc, n, y2, 24, 0);
                f5(nb, p, ng, a, as, sc, n, y5, 24, 0);
                for (int c = 0; c < n && bad < 10; c++)
                    for (int i = c * 24; i < c * 24 + 8 * ng && bad < 10; i++)
                        if (memcmp(&y2[i], &y5[i], 4)) {
                            printf("%s x8 tiers, %d groups, %d tokens, output %d: expected (avx2) %.9g, got (avx512) "
                                   "%.9g\n", slm_qtype_name(types[t]), ng, n, i, y2[i], y5[i]);
                            bad++;
                            failures++;
                        }
            }
        printf("%-5s x8   avx2 vs avx512vnni tiles: %s\n", slm_qtype_name(types[t]), bad ? "FAIL" : "identical");
        x8_operands_free(&o);
    }
}

/* Each tier's X8 tiles on long rows and many tokens (150 blocks a row: the AVX2 Q5_0 path's
 * 64-block segments and 32-token batches, with their remainders), into fresh and accumulated
 * outputs: each output bit-identical with the portable kernel on the GGUF row (plus the old value). */
static void check_many_tokens(void)
{
    uint32_t types[] = {SLM_TYPE_Q4_1, SLM_TYPE_Q8_0, SLM_TYPE_Q5_0, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K};
    const int counts[] = {8, 33, 70};
    for (int tier = 0; tier < 2; tier++) {
        if (tier == 0 ? !slm_cpu_have_avx2() : strcmp(slm_cpu_kernels_name(), "avx512vnni") != 0) continue;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            slm_cpu_x8_fn f = tier == 0 ? slm_cpu_x8_avx2(types[t]) : slm_cpu_x8_avx512(types[t]);
            if (!f) continue;
            const int64_t rows = 16, cols = 150 * slm_qblock_elems(types[t]);
            const int nmax = 70;
            struct x8_operands o;
            x8_operands_make(&o, types[t], rows, cols, nmax, 5);
            const int64_t nb = o.nb;
            float *y = malloc((size_t)nmax * (size_t)rows * sizeof *y);
            int bad = 0;
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                for (int accumulate = 0; accumulate <= 1 && bad < 10; accumulate++) {
                    const int n = counts[k];
                    for (int i = 0; i < n * rows; i++) y[i] = accumulate ? frand() : NAN;
                    float *old = malloc((size_t)n * (size_t)rows * sizeof *old);
                    memcpy(old, y, (size_t)n * (size_t)rows * sizeof *old);
                    f(nb, o.p, (int)(rows / 8), o.a, o.as, o.sc, n, y, rows, accumulate);
                    for (int c = 0; c < n && bad < 10; c++)
                        for (int64_t r = 0; r < rows && bad < 10; r++) {
                            float want = slm_cpu_vec_dot_ref(types[t], cols, o.w + (size_t)r * o.row_bytes,
                                                             o.a + (size_t)c * o.as);
                            if (accumulate) want = old[c * rows + r] + want;
                            float got = y[c * rows + r];
                            if (memcmp(&want, &got, 4)) {
                                printf("%s x8 %s, %d tokens%s, token %d row %lld: expected %.9g, got %.9g\n",
                                       slm_qtype_name(types[t]), tier ? "avx512vnni" : "avx2", n,
                                       accumulate ? " accumulated" : "", c, (long long)r, want, got);
                                bad++;
                                failures++;
                            }
                        }
                    free(old);
                }
            printf("%-5s x8   %s, %d blocks a row, 8/33/70 tokens: %s\n", slm_qtype_name(types[t]),
                   tier ? "avx512vnni" : "avx2", (int)nb, bad ? "FAIL" : "identical to the portable kernel");
            free(y);
            x8_operands_free(&o);
        }
    }
}

int main(void)
{
    printf("kernels: %s\n", slm_cpu_kernels_name());
    check_quantizers();
    uint32_t types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0,
                        SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    for (int threads = 1; threads <= 2; threads++) {
        struct slm_pool *pool = slm_pool_create(threads);
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            check_type(pool, types[t], SLM_CPU_LAYOUT_ROWS);
            if (slm_cpu_weight_layout(types[t], 40, slm_qblock_elems(types[t]) == 256 ? 512 : 96) == SLM_CPU_LAYOUT_X8) {
                check_type(pool, types[t], SLM_CPU_LAYOUT_X8);
                check_token_counts(pool, types[t]);
            }
        }
        slm_pool_destroy(&pool);
    }
    check_tiers();
    check_many_tokens();
    if (failures) printf("test_matmul: %d failures\n", failures);
    return failures ? 1 : 0;
}
