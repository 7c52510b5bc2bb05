/* kernels/cpu/dequant.c - scalar conversions and row dequantization (see dequant.h). */
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/qunpack.h"

#include <errno.h>
#include <string.h>

float slm_half_to_f32(slm_half h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* Subnormal: normalise the mantissa. */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

slm_half slm_f32_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (slm_half)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));   /* quiet NaN */
    if (ax >= 0x477ff000u) return (slm_half)(sign | 0x7c00u);   /* rounds to >= 65520: infinity */
    if (ax < 0x38800000u) {
        /* Result is subnormal or zero: shift the implicit-1 mantissa into place, round half even. */
        if (ax < 0x33000000u) return (slm_half)sign;   /* below half the smallest subnormal */
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;   /* 14..24 */
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (slm_half)(sign | q);
    }
    /* Normal: rebias the exponent, round the 13 dropped bits half to even (carry may bump the exponent). */
    uint32_t r = ax - 0x38000000u;
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++;
    return (slm_half)(sign | q);
}

float slm_bf16_to_f32(slm_bf16 h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

slm_bf16 slm_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (slm_bf16)((x >> 16) | 0x40u);   /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (slm_bf16)(x >> 16);
}

static void dq_q4_0(const struct slm_block_q4_0 *b, float *y)
{
    float d = slm_half_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b->qs[j] & 0xf) - 8) * d;
        y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const struct slm_block_q4_1 *b, float *y)
{
    float d = slm_half_to_f32(b->d), m = slm_half_to_f32(b->m);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b->qs[j] & 0xf) + m;
        y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
    }
}

static void dq_q5_0(const struct slm_block_q5_0 *b, float *y)
{
    float d = slm_half_to_f32(b->d);
    int v[32];
    slm_q5_values(b->qh, b->qs, v);
    for (int j = 0; j < 32; j++) y[j] = (float)(v[j] - 16) * d;
}

static void dq_q5_1(const struct slm_block_q5_1 *b, float *y)
{
    float d = slm_half_to_f32(b->d), m = slm_half_to_f32(b->m);
    int v[32];
    slm_q5_values(b->qh, b->qs, v);
    for (int j = 0; j < 32; j++) y[j] = d * (float)v[j] + m;
}

static void dq_q4_K(const struct slm_block_q4_K *b, float *y)
{
    float d = slm_half_to_f32(b->d), dmin = slm_half_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
        int sc, m;
        slm_k_scale_min(j, b->scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        slm_k_scale_min(j + 1, b->scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}

static void dq_q5_K(const struct slm_block_q5_K *b, float *y)
{
    float d = slm_half_to_f32(b->d), dmin = slm_half_to_f32(b->dmin);
    const uint8_t *ql = b->qs;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2, ql += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
        int sc, m;
        slm_k_scale_min(j, b->scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        slm_k_scale_min(j + 1, b->scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xf) + (b->qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* Element i (0..255) of a Q6_K block as a signed value in [-32, 31], and its scale index. */
static inline int q6_value(const struct slm_block_q6_K *b, int i, int *scale_idx)
{
    int half = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
    const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
    int lo = quarter & 1 ? ql[l + 32] : ql[l];
    lo = quarter >= 2 ? lo >> 4 : lo & 0xf;
    int hi = (qh[l] >> (2 * quarter)) & 3;
    *scale_idx = 8 * half + 2 * quarter + l / 16;
    return (lo | (hi << 4)) - 32;
}

static void dq_q6_K(const struct slm_block_q6_K *b, float *y)
{
    float d = slm_half_to_f32(b->d);
    for (int i = 0; i < SLM_QK_K; i++) {
        int is;
        int q = q6_value(b, i, &is);
        y[i] = d * (float)b->scales[is] * (float)q;
    }
}

int slm_cpu_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    size_t be = slm_qblock_elems(type);
    if (be == 0 || n < 0 || n % (int64_t)be != 0) return -EINVAL;
    int64_t nb = n / (int64_t)be;
    const uint8_t *s = src;
    size_t bb = slm_qblock_bytes(type);
    switch (type) {
    case SLM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case SLM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            slm_half h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = slm_half_to_f32(h);
        }
        return 0;
    case SLM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            slm_bf16 h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = slm_bf16_to_f32(h);
        }
        return 0;
    default: break;
    }
    for (int64_t i = 0; i < nb; i++, s += bb, dst += be) {
        switch (type) {
        case SLM_TYPE_Q4_0: dq_q4_0((const void *)s, dst); break;
        case SLM_TYPE_Q4_1: dq_q4_1((const void *)s, dst); break;
        case SLM_TYPE_Q5_0: dq_q5_0((const void *)s, dst); break;
        case SLM_TYPE_Q5_1: dq_q5_1((const void *)s, dst); break;
        case SLM_TYPE_Q4_K: dq_q4_K((const void *)s, dst); break;
        case SLM_TYPE_Q5_K: dq_q5_K((const void *)s, dst); break;
        case SLM_TYPE_Q6_K: dq_q6_K((const void *)s, dst); break;
        case SLM_TYPE_Q8_0: {
            const struct slm_block_q8_0 *b = (const void *)s;
            float d = slm_half_to_f32(b->d);
            for (int j = 0; j < 32; j++) dst[j] = (float)b->qs[j] * d;
            break;
        }
        case SLM_TYPE_Q8_1: {
            const struct slm_block_q8_1 *b = (const void *)s;
            float d = slm_half_to_f32(b->d);
            for (int j = 0; j < 32; j++) dst[j] = (float)b->qs[j] * d;
            break;
        }
        case SLM_TYPE_Q8_K: {
            const struct slm_block_q8_K *b = (const void *)s;
            for (int j = 0; j < SLM_QK_K; j++) dst[j] = b->d * (float)b->qs[j];
            break;
        }
        default: return -EINVAL;
        }
    }
    return 0;
}

uint32_t slm_cpu_vec_dot_type(uint32_t wtype)
{
    switch (wtype) {
    case SLM_TYPE_F32: case SLM_TYPE_F16: case SLM_TYPE_BF16: return SLM_TYPE_F32;
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q5_0: case SLM_TYPE_Q8_0: return SLM_TYPE_Q8_0;
    case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_1: return SLM_TYPE_Q8_1;
    case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: case SLM_TYPE_Q6_K: return SLM_TYPE_Q8_K;
    default: return UINT32_MAX;
    }
}
