/*
 * kernels/cpu/vec_dot_ref.c - the portable dot products (see dequant.h).
 *
 * Within a block the products are integers, summed exactly; the float accumulation
 * across blocks is llama.cpp's (its x86 AVX2 kernels': below, per type), so every tier
 * gives llama.cpp's bits. Float weight types accumulate in double.
 */
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/qunpack.h"

#include <math.h>
#include <string.h>

/*
 * The 32-element types follow the order of llama.cpp's AVX2 dot products (and of slmd's own
 * tiles), so the portable path gives the same bits: each block's products in 8 groups of 4
 * consecutive elements, group k accumulated into acc[k] by one fused multiply-add per block,
 * the groups summed in the tree of a horizontal add, and Q4_1/Q5_1's offset term m_w * s_a
 * in its own fused chain, added last.
 */
struct lanes {
    float acc[8];
    float summ;
};

/* Adds one block: w[32] the weight values, a the activation's int8 values. */
static void lanes_block(struct lanes *l, const int w[32], const int8_t *a, float scale)
{
    for (int k = 0; k < 8; k++) {
        int s = 0;
        for (int j = 4 * k; j < 4 * k + 4; j++) s += w[j] * a[j];
        l->acc[k] = fmaf((float)s, scale, l->acc[k]);
    }
}

static float lanes_sum(const struct lanes *l)
{
    const float *x = l->acc;
    return (((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]))) + l->summ;
}

/* Weight values of one block of a 32-element type, in element order. */
static void block_values(uint32_t type, const uint8_t *blk, int v[32])
{
    switch (type) {
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: {
        const uint8_t *qs = blk + (type == SLM_TYPE_Q4_0 ? 2 : 4);
        int off = type == SLM_TYPE_Q4_0 ? 8 : 0;
        for (int j = 0; j < 16; j++) {
            v[j] = (qs[j] & 0xf) - off;
            v[j + 16] = (qs[j] >> 4) - off;
        }
        break;
    }
    case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: {
        int hdr = type == SLM_TYPE_Q5_0 ? 2 : 4;
        slm_q5_values(blk + hdr, blk + hdr + 4, v);
        if (type == SLM_TYPE_Q5_0)
            for (int j = 0; j < 32; j++) v[j] -= 16;
        break;
    }
    default:   /* Q8_0 */
        for (int j = 0; j < 32; j++) v[j] = ((const int8_t *)blk)[2 + j];
        break;
    }
}

/* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8_0 or Q8_1 activations (d leads every block; the
 * types with an offset keep m right after d, the Q8_1 activations keep s after d). */
static float dot_32(uint32_t type, int64_t nb, const uint8_t *w, const uint8_t *a)
{
    int with_m = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
    size_t wb = slm_qblock_bytes(type), ab = slm_qblock_bytes(with_m ? SLM_TYPE_Q8_1 : SLM_TYPE_Q8_0);
    struct lanes l = {{0}, 0.0f};
    for (int64_t i = 0; i < nb; i++, w += wb, a += ab) {
        slm_half wd, ad, wm, as;
        memcpy(&wd, w, 2);
        memcpy(&ad, a, 2);
        int v[32];
        block_values(type, w, v);
        if (with_m) {
            memcpy(&wm, w + 2, 2);
            memcpy(&as, a + 2, 2);
            l.summ = fmaf(slm_half_to_f32(wm), slm_half_to_f32(as), l.summ);
        }
        lanes_block(&l, v, (const int8_t *)(a + (with_m ? 4 : 2)), slm_half_to_f32(wd) * slm_half_to_f32(ad));
    }
    return lanes_sum(&l);
}

/*
 * The K-quants follow llama.cpp's x86 (AVX2) kernels, whose integer sums are exact, so only
 * the float steps below fix the bits:
 * - Q4_K: llama.cpp repacks every Q4_K matrix whose row count is a multiple of 8 (every real
 *   model's) and runs its 8-row GEMV (ggml_gemv_q4_K_8x8_q8_K): per block, the scaled sum
 *   sumi and the min term summ of the row, each in its own fused chain,
 *   acc = fma(sumi, d_w * d_a, acc), accm = fma(summ, dmin_w * d_a, accm); result acc - accm.
 * - Q5_K (ggml_vec_dot_q5_K_q8_K): 8 int lanes, lane k holding elements 4k..4k+3 of each
 *   sub-block times its scale; per block acc_k = fma(d_a * d_w, lane_k, acc_k); the min term
 *   summs = fma(-d_a * dmin_w, summ, summs) (GCC contracts llama.cpp's plain expression);
 *   result hsum(acc) + summs.
 * - Q6_K (ggml_vec_dot_q6_K_q8_K): 8 int lanes, lane k holding elements 4k..4k+3 of each
 *   32-element chunk times its scale, minus 32 * (bsums[2k] sc[2k] + bsums[2k+1] sc[2k+1]);
 *   per block acc_k = fma(d_a * d_w, lane_k, acc_k); result hsum(acc).
 */
static float hsum8(const float x[8])
{
    return ((x[0] + x[4]) + (x[2] + x[6])) + ((x[1] + x[5]) + (x[3] + x[7]));
}

static float dot_q4_K(int64_t nb, const struct slm_block_q4_K *w, const struct slm_block_q8_K *a)
{
    float acc = 0.0f, accm = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            slm_k_scale_min(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            int shift = 4 * (j & 1), s = 0;
            for (int l = 0; l < 32; l++) s += ((q[l] >> shift) & 0xf) * a[i].qs[32 * j + l];
            sumi += sc * s;
            summ += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        acc = fmaf((float)sumi, slm_half_to_f32(w[i].d) * a[i].d, acc);
        accm = fmaf((float)summ, slm_half_to_f32(w[i].dmin) * a[i].d, accm);
    }
    return acc - accm;
}

static float dot_q5_K(int64_t nb, const struct slm_block_q5_K *w, const struct slm_block_q8_K *a)
{
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int lane[8] = {0}, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            slm_k_scale_min(j, w[i].scales, &sc, &m);
            const uint8_t *q = w[i].qs + 32 * (j / 2);
            int shift = 4 * (j & 1);
            for (int k = 0; k < 8; k++) {
                int s = 0;
                for (int l = 4 * k; l < 4 * k + 4; l++) {
                    int v = ((q[l] >> shift) & 0xf) | (((w[i].qh[l] >> j) & 1) << 4);
                    s += v * a[i].qs[32 * j + l];
                }
                lane[k] += sc * s;
            }
            summ += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        float d = a[i].d * slm_half_to_f32(w[i].d), dmin = -a[i].d * slm_half_to_f32(w[i].dmin);
        for (int k = 0; k < 8; k++) acc[k] = fmaf(d, (float)lane[k], acc[k]);
        summs = fmaf(dmin, (float)summ, summs);
    }
    return hsum8(acc) + summs;
}

static float dot_q6_K(int64_t nb, const struct slm_block_q6_K *w, const struct slm_block_q8_K *a)
{
    float acc[8] = {0};
    for (int64_t i = 0; i < nb; i++) {
        int lane[8] = {0};
        for (int e = 0; e < SLM_QK_K; e++) {   /* the raw 6-bit value (q + 32) */
            int half = e / 128, r = e % 128, quarter = r / 32, k = r % 32;
            const uint8_t *ql = w[i].ql + 64 * half, *qh = w[i].qh + 32 * half;
            int lo = quarter & 1 ? ql[k + 32] : ql[k];
            lo = quarter >= 2 ? lo >> 4 : lo & 0xf;
            int hi = (qh[k] >> (2 * quarter)) & 3;
            lane[k / 4] += w[i].scales[e / 16] * (lo | (hi << 4)) * a[i].qs[e];
        }
        float d = a[i].d * slm_half_to_f32(w[i].d);
        for (int k = 0; k < 8; k++) {
            int corr = w[i].scales[2 * k] * a[i].bsums[2 * k] + w[i].scales[2 * k + 1] * a[i].bsums[2 * k + 1];
            acc[k] = fmaf(d, (float)(lane[k] - 32 * corr), acc[k]);
        }
    }
    return hsum8(acc);
}

static float dot_float(uint32_t wtype, int64_t n, const void *w, const float *a)
{
    double s = 0.0;
    const uint8_t *b = w;
    for (int64_t i = 0; i < n; i++) {
        float x;
        if (wtype == SLM_TYPE_F32) {
            memcpy(&x, b + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            x = wtype == SLM_TYPE_F16 ? slm_half_to_f32(h) : slm_bf16_to_f32(h);
        }
        s += (double)x * (double)a[i];
    }
    return (float)s;
}

float slm_cpu_vec_dot_ref(uint32_t wtype, int64_t n, const void *w, const void *a)
{
    int64_t nb32 = n / 32, nbk = n / SLM_QK_K;
    switch (wtype) {
    case SLM_TYPE_F32: case SLM_TYPE_F16: case SLM_TYPE_BF16: return dot_float(wtype, n, w, a);
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: case SLM_TYPE_Q8_0:
        return dot_32(wtype, nb32, w, a);
    case SLM_TYPE_Q4_K: return dot_q4_K(nbk, w, a);
    case SLM_TYPE_Q5_K: return dot_q5_K(nbk, w, a);
    case SLM_TYPE_Q6_K: return dot_q6_K(nbk, w, a);
    default: return 0.0f;
    }
}
