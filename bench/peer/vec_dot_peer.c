/*
 * bench/peer/vec_dot_peer.c - slmd's CPU dot products against llama.cpp's, bit for bit.
 *
 * A dev program, not a test (it needs the peer build of bench/peer/build-llama-cpp.sh);
 * bench/peer/vec-dot-peer.sh builds and runs it. For every weight type slmd shares with
 * ggml it quantizes the same random activations with both (the bytes must agree), then
 * dots random weight rows with them: slmd's portable kernel (slm_cpu_vec_dot_ref) and its
 * matmul (the fast tiles of this CPU) against ggml's one-token path on this CPU:
 * ggml_get_type_traits_cpu(type)->vec_dot, and for Q4_K the 8-row GEMV of the repacked
 * layout that llama.cpp runs on x86 for every Q4_K matrix of 8k rows
 * (ggml_gemv_q4_K_8x8_q8_K; the layout is built here from its description in ggml's
 * repack.h: 8 rows' d, dmin, per sub-block 12 bytes of their 6-bit scales and mins, and
 * the quants 8 bytes of each row in turn).
 * Prints, per type, how many of the dot products differ and the largest difference; then
 * GeGLU's GELU (slm_cpu_geglu) against ggml's f16 table for every half.
 * Exit 0 when every one is identical.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/qunpack.h"

/* ---- the few ggml-cpu entry points used (ggml-cpu.h, repack.h) */
typedef void (*peer_from_float)(const float *x, void *y, int64_t k);
typedef void (*peer_vec_dot)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by,
                             int nrc);
struct peer_traits {
    peer_from_float from_float;
    peer_vec_dot vec_dot;
    int vec_dot_type;
    int64_t nrows;
};
const struct peer_traits *ggml_get_type_traits_cpu(int type);
void ggml_cpu_init(void);
void ggml_gemv_q4_K_8x8_q8_K(int n, float *s, size_t bs, const void *vx, const void *vy, int nr, int nc);
extern uint16_t ggml_table_gelu_f16[1 << 16];   /* GeGLU's GELU of every half (GGML_GELU_FP16) */

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static float frand(void)
{
    return (float)rnd() / 2147483648.0f - 1.0f;   /* [-1, 1) */
}

/* Random weight bytes with sane scales (as tests/test_matmul.c makes them). */
static void random_weights(uint32_t type, uint8_t *w, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)rnd();
    size_t bb = slm_qblock_bytes(type);
    for (size_t b = 0; b < bytes / bb; b++) {
        uint8_t *blk = w + b * bb;
        slm_half d = slm_f32_to_half(0.001f + 0.02f * (float)(rnd() % 1000) / 1000.0f);
        slm_half m = slm_f32_to_half(-0.02f * (float)(rnd() % 1000) / 1000.0f);
        if (type == SLM_TYPE_Q6_K) {
            memcpy(blk + bb - 2, &d, 2);
        } else {
            memcpy(blk, &d, 2);
            if (type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1 || type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K)
                memcpy(blk + 2, &m, 2);
        }
    }
}

/* 8 Q4_K rows (nb blocks each) in ggml's block_q4_Kx8 layout (1152 bytes a block). */
static void repack_q4_K_x8(const struct slm_block_q4_K *rows[8], int64_t nb, uint8_t *out)
{
    for (int64_t b = 0; b < nb; b++, out += 1152) {
        for (int r = 0; r < 8; r++) {
            memcpy(out + 2 * r, &rows[r][b].d, 2);
            memcpy(out + 16 + 2 * r, &rows[r][b].dmin, 2);
        }
        /* scales: per sub-block j, 12 bytes packing the 8 rows' (scale, min) of sub-block j
         * in the Q4_K scale format (rows 0-3 as sub-blocks 0-3, rows 4-7 as sub-blocks 4-7) */
        for (int j = 0; j < 8; j++) {
            int s[8], m[8];
            for (int r = 0; r < 8; r++) slm_k_scale_min(j, rows[r][b].scales, &s[r], &m[r]);
            uint8_t *o = out + 32 + 12 * j;
            for (int r = 0; r < 4; r++) {
                o[r] = (uint8_t)((s[r] & 63) | ((s[r + 4] & 48) << 2));
                o[r + 4] = (uint8_t)((m[r] & 63) | ((m[r + 4] & 48) << 2));
                o[r + 8] = (uint8_t)((s[r + 4] & 15) | ((m[r + 4] & 15) << 4));
            }
        }
        for (int i = 0; i < 128; i++) memcpy(out + 128 + 8 * i, rows[i % 8][b].qs + 8 * (i / 8), 8);
    }
}

#define ROWS 64
#define TOKENS 8

static int check_type(uint32_t type, int64_t k)
{
    const struct peer_traits *pt = ggml_get_type_traits_cpu((int)type);
    uint32_t at = slm_cpu_vec_dot_type(type);
    if ((uint32_t)pt->vec_dot_type != at) {
        printf("%-5s: ggml's activation type %d, slmd's %u\n", slm_qtype_name(type), pt->vec_dot_type, at);
        return 1;
    }
    const struct peer_traits *pa = ggml_get_type_traits_cpu((int)at);
    size_t row_bytes = (size_t)(k / slm_qblock_elems(type)) * slm_qblock_bytes(type);
    size_t ab = slm_cpu_act_row_bytes(type, k);
    uint8_t *w = malloc(ROWS * row_bytes), *qa = malloc(TOKENS * ab), *pa_bytes = malloc(ab);
    float *x = malloc((size_t)(TOKENS * k) * sizeof *x), *y = malloc(TOKENS * ROWS * sizeof *y);
    random_weights(type, w, ROWS * row_bytes);
    int quant_bad = 0;
    for (int t = 0; t < TOKENS; t++) {
        float scale = t % 3 == 0 ? 30.0f : t % 3 == 1 ? 1.0f : 0.01f;   /* activations of several sizes */
        for (int64_t i = 0; i < k; i++) x[t * k + i] = frand() * scale * (rnd() % 16 == 0 ? 8.0f : 1.0f);
        slm_cpu_quantize_acts(type, x + t * k, 1, k, qa + t * ab);
        pa->from_float(x + t * k, pa_bytes, k);
        quant_bad += memcmp(pa_bytes, qa + t * ab, ab) != 0;
    }
    struct slm_pool *pool = slm_pool_create(1);
    struct slm_cpu_matmul_job job = {.type = type, .layout = slm_cpu_weight_layout(type, ROWS, k), .rows = ROWS,
                                     .cols = k, .row_bytes = row_bytes, .y = y};
    uint8_t *packed = malloc(slm_cpu_layout_bytes(job.layout, type, ROWS, k));
    slm_cpu_repack(job.layout, type, ROWS, k, w, row_bytes, packed);
    job.w = packed;
    void *scratch = malloc(slm_cpu_matmul_scratch_bytes(1, &job, TOKENS));
    slm_cpu_matmul(pool, 1, &job, x, TOKENS, 0, scratch);
    /* ggml's Q4_K one-token path: the 8-row GEMV of the repacked rows */
    float *gemv = NULL;
    if (type == SLM_TYPE_Q4_K) {
        int64_t nb = k / SLM_QK_K;
        uint8_t *x8 = malloc((size_t)(ROWS / 8 * nb) * 1152);
        for (int g = 0; g < ROWS / 8; g++) {
            const struct slm_block_q4_K *rows[8];
            for (int r = 0; r < 8; r++) rows[r] = (const void *)(w + (size_t)(8 * g + r) * row_bytes);
            repack_q4_K_x8(rows, nb, x8 + (size_t)(g * nb) * 1152);
        }
        gemv = malloc(TOKENS * ROWS * sizeof *gemv);
        for (int t = 0; t < TOKENS; t++)
            ggml_gemv_q4_K_8x8_q8_K((int)k, gemv + t * ROWS, ROWS, x8, qa + t * ab, 1, ROWS);
        free(x8);
    }
    int ref_bad = 0, tile_bad = 0, shown = 0;
    double worst = 0;
    for (int t = 0; t < TOKENS; t++)
        for (int r = 0; r < ROWS; r++) {
            float want;
            if (gemv) want = gemv[t * ROWS + r];
            else pt->vec_dot((int)k, &want, 0, w + (size_t)r * row_bytes, 0, qa + t * ab, 0, 1);
            float ref = slm_cpu_vec_dot_ref(type, k, w + (size_t)r * row_bytes, qa + t * ab);
            float tile = y[t * ROWS + r];
            ref_bad += memcmp(&ref, &want, 4) != 0;
            tile_bad += memcmp(&tile, &want, 4) != 0;
            double d = fabs((double)ref - want) / (fabs(want) > 1e-30 ? fabs(want) : 1e-30);
            if (d > worst) worst = d;
            if ((memcmp(&ref, &want, 4) || memcmp(&tile, &want, 4)) && shown++ < 3)
                printf("  %s token %d row %d: llama.cpp %.9g, slmd portable %.9g, slmd %s %.9g\n",
                       slm_qtype_name(type), t, r, want, ref, slm_cpu_kernels_name(), tile);
        }
    printf("%-5s k %5lld: activations %d of %d rows differ; dots: portable %d, %s %d of %d differ "
           "(max rel %.3g)%s\n", slm_qtype_name(type), (long long)k, quant_bad, TOKENS, ref_bad,
           slm_cpu_kernels_name(), tile_bad, TOKENS * ROWS, worst, gemv ? " [vs the repacked GEMV]" : "");
    free(w);
    free(qa);
    free(pa_bytes);
    free(x);
    free(y);
    free(packed);
    free(scratch);
    free(gemv);
    slm_pool_destroy(&pool);
    return quant_bad || ref_bad || tile_bad;
}

/* slm_cpu_geglu against ggml's GELU table: every half in (-10, 10) as the gate, 1 as the up. */
static int check_gelu(void)
{
    int bad = 0, n = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float x = slm_half_to_f32((slm_half)i), one = 1.0f, y;
        if (!(x > -10.0f && x < 10.0f)) continue;
        slm_cpu_geglu(&x, &one, 1, &y);
        n++;
        if (y != slm_half_to_f32(ggml_table_gelu_f16[i]) && bad++ < 3)
            printf("  GELU(%.9g): llama.cpp %.9g, slmd %.9g\n", x, slm_half_to_f32(ggml_table_gelu_f16[i]), y);
    }
    printf("GeGLU: %d of %d halves differ from llama.cpp's GELU table\n", bad, n);
    return bad != 0;
}

int main(void)
{
    ggml_cpu_init();
    uint32_t types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
                        SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    int bad = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bad += check_type(types[i], 2048);
        bad += check_type(types[i], slm_qblock_elems(types[i]) == 256 ? 1024 : 640);
    }
    bad += check_gelu();
    printf(bad ? "vec_dot_peer: %d types differ from llama.cpp\n" : "vec_dot_peer: all identical\n", bad);
    return bad ? 1 : 0;
}
