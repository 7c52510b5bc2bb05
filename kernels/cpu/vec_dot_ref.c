/*
 * kernels/cpu/vec_dot_ref.c - the portable dot products (see dequant.h).
 *
 * Within a block the products are integers, summed exactly; across blocks the
 * float partial sums are added in block order. Float weight types accumulate in
 * double, so the reference is tighter than any SIMD version of it.
 */
#include "dequant.h"
#include "qunpack.h"

#include <string.h>

static float dot_q4_0(int64_t nb, const struct slm_block_q4_0 *w, const struct slm_block_q8_0 *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++) {
            s += ((w[i].qs[j] & 0xf) - 8) * a[i].qs[j];
            s += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        sum += (float)s * (slm_half_to_f32(w[i].d) * slm_half_to_f32(a[i].d));
    }
    return sum;
}

static float dot_q4_1(int64_t nb, const struct slm_block_q4_1 *w, const struct slm_block_q8_1 *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += (w[i].qs[j] & 0xf) * a[i].qs[j] + (w[i].qs[j] >> 4) * a[i].qs[j + 16];
        sum += (float)s * (slm_half_to_f32(w[i].d) * slm_half_to_f32(a[i].d)) +
               slm_half_to_f32(w[i].m) * slm_half_to_f32(a[i].s);
    }
    return sum;
}

static float dot_q5_0(int64_t nb, const struct slm_block_q5_0 *w, const struct slm_block_q8_0 *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int v[32], s = 0;
        slm_q5_values(w[i].qh, w[i].qs, v);
        for (int j = 0; j < 32; j++) s += (v[j] - 16) * a[i].qs[j];
        sum += (float)s * (slm_half_to_f32(w[i].d) * slm_half_to_f32(a[i].d));
    }
    return sum;
}

static float dot_q5_1(int64_t nb, const struct slm_block_q5_1 *w, const struct slm_block_q8_1 *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int v[32], s = 0;
        slm_q5_values(w[i].qh, w[i].qs, v);
        for (int j = 0; j < 32; j++) s += v[j] * a[i].qs[j];
        sum += (float)s * (slm_half_to_f32(w[i].d) * slm_half_to_f32(a[i].d)) +
               slm_half_to_f32(w[i].m) * slm_half_to_f32(a[i].s);
    }
    return sum;
}

static float dot_q8_0(int64_t nb, const struct slm_block_q8_0 *w, const struct slm_block_q8_0 *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += w[i].qs[j] * a[i].qs[j];
        sum += (float)s * (slm_half_to_f32(w[i].d) * slm_half_to_f32(a[i].d));
    }
    return sum;
}

/* Q4_K and Q5_K: qh is NULL for Q4_K. */
static float dot_q45_K(int64_t nb, const uint8_t *w, size_t wbytes, int five, const struct slm_block_q8_K *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += wbytes) {
        slm_half dh, mh;
        memcpy(&dh, w, 2);
        memcpy(&mh, w + 2, 2);
        const uint8_t *scales = w + 4;
        const uint8_t *qh = five ? w + 4 + SLM_K_SCALE_SIZE : NULL;
        const uint8_t *qs = w + 4 + SLM_K_SCALE_SIZE + (five ? SLM_QK_K / 8 : 0);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            slm_k_scale_min(j, scales, &sc, &m);
            const uint8_t *q = qs + 32 * (j / 2);
            int shift = 4 * (j & 1), s = 0;
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> shift) & 0xf;
                if (five && (qh[l] >> j) & 1) v += 16;
                s += v * a[i].qs[32 * j + l];
            }
            sumi += sc * s;
            summ += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        float d = slm_half_to_f32(dh) * a[i].d, dmin = slm_half_to_f32(mh) * a[i].d;
        sum += d * (float)sumi - dmin * (float)summ;
    }
    return sum;
}

static float dot_q6_K(int64_t nb, const struct slm_block_q6_K *w, const struct slm_block_q8_K *a)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * g + l, half = e / 128, r = e % 128, quarter = r / 32, k = r % 32;
                const uint8_t *ql = w[i].ql + 64 * half, *qh = w[i].qh + 32 * half;
                int lo = quarter & 1 ? ql[k + 32] : ql[k];
                lo = quarter >= 2 ? lo >> 4 : lo & 0xf;
                int hi = (qh[k] >> (2 * quarter)) & 3;
                s += ((lo | (hi << 4)) - 32) * a[i].qs[e];
            }
            /* Group g of 16 elements has scale index 8*half + 2*quarter + k/16 = g. */
            sumi += w[i].scales[g] * s;
        }
        sum += slm_half_to_f32(w[i].d) * a[i].d * (float)sumi;
    }
    return sum;
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
    case SLM_TYPE_Q4_0: return dot_q4_0(nb32, w, a);
    case SLM_TYPE_Q4_1: return dot_q4_1(nb32, w, a);
    case SLM_TYPE_Q5_0: return dot_q5_0(nb32, w, a);
    case SLM_TYPE_Q5_1: return dot_q5_1(nb32, w, a);
    case SLM_TYPE_Q8_0: return dot_q8_0(nb32, w, a);
    case SLM_TYPE_Q4_K: return dot_q45_K(nbk, w, sizeof(struct slm_block_q4_K), 0, a);
    case SLM_TYPE_Q5_K: return dot_q45_K(nbk, w, sizeof(struct slm_block_q5_K), 1, a);
    case SLM_TYPE_Q6_K: return dot_q6_K(nbk, w, a);
    default: return 0.0f;
    }
}
