/*
 * kernels/cpu/vec_dot_ref.c - the portable dot products (see dequant.h).
 *
 * Within a block the products are integers, summed exactly; the float accumulation
 * across blocks is in a fixed order (below, and per K-quant). Float weight types
 * accumulate in double.
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
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: case SLM_TYPE_Q8_0:
        return dot_32(wtype, nb32, w, a);
    case SLM_TYPE_Q4_K: return dot_q45_K(nbk, w, sizeof(struct slm_block_q4_K), 0, a);
    case SLM_TYPE_Q5_K: return dot_q45_K(nbk, w, sizeof(struct slm_block_q5_K), 1, a);
    case SLM_TYPE_Q6_K: return dot_q6_K(nbk, w, a);
    default: return 0.0f;
    }
}
