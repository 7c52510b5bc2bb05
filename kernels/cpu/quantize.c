/*
 * kernels/cpu/quantize.c - reference row quantizers (see dequant.h).
 *
 * The math is ggml's reference quantizers, except that the 8-bit activation types
 * round half to even (nearbyintf under the default rounding mode), which is what the
 * SIMD quantizers do with one instruction.
 */
#include "kernels/cpu/dequant.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static float absmax(const float *x, int n)
{
    float a = 0.0f;
    for (int i = 0; i < n; i++) a = fmaxf(a, fabsf(x[i]));
    return a;
}

/* The element with the largest magnitude, sign kept (first one on ties). */
static float signed_max(const float *x, int n)
{
    float a = 0.0f, m = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > a) {
            a = fabsf(x[i]);
            m = x[i];
        }
    }
    return m;
}

static void q8_0_block(const float *x, struct slm_block_q8_0 *y)
{
    float amax = absmax(x, 32), d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y->d = slm_f32_to_half(d);
    for (int j = 0; j < 32; j++) y->qs[j] = (int8_t)nearbyintf(x[j] * id);
}

static void q8_1_block(const float *x, struct slm_block_q8_1 *y)
{
    float amax = absmax(x, 32), d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        y->qs[j] = (int8_t)nearbyintf(x[j] * id);
        sum += y->qs[j];
    }
    y->d = slm_f32_to_half(d);
    y->s = slm_f32_to_half((float)sum * d);
}

static void q8_K_block(const float *x, struct slm_block_q8_K *y)
{
    float max = signed_max(x, SLM_QK_K);
    if (max == 0.0f) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -127.0f / max;
    for (int j = 0; j < SLM_QK_K; j++) {
        float v = nearbyintf(iscale * x[j]);
        y->qs[j] = (int8_t)(v > 127.0f ? 127.0f : v);
    }
    for (int g = 0; g < SLM_QK_K / 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += y->qs[16 * g + j];
        y->bsums[g] = (int16_t)s;
    }
    y->d = 1.0f / iscale;
}

static void q4_0_block(const float *x, struct slm_block_q4_0 *y)
{
    float d = signed_max(x, 32) / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = slm_f32_to_half(d);
    for (int j = 0; j < 16; j++) {
        int a = (int)(int8_t)(x[j] * id + 8.5f), b = (int)(int8_t)(x[j + 16] * id + 8.5f);
        a = a > 15 ? 15 : a;
        b = b > 15 ? 15 : b;
        y->qs[j] = (uint8_t)(a | (b << 4));
    }
}

/* Min, max of 32 values. */
static void min_max(const float *x, float *lo, float *hi)
{
    *lo = *hi = x[0];
    for (int j = 1; j < 32; j++) {
        *lo = fminf(*lo, x[j]);
        *hi = fmaxf(*hi, x[j]);
    }
}

static void q4_1_block(const float *x, struct slm_block_q4_1 *y)
{
    float lo, hi;
    min_max(x, &lo, &hi);
    float d = (hi - lo) / 15.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = slm_f32_to_half(d);
    y->m = slm_f32_to_half(lo);
    for (int j = 0; j < 16; j++) {
        int a = (int)(int8_t)((x[j] - lo) * id + 0.5f), b = (int)(int8_t)((x[j + 16] - lo) * id + 0.5f);
        a = a > 15 ? 15 : a;
        b = b > 15 ? 15 : b;
        y->qs[j] = (uint8_t)(a | (b << 4));
    }
}

/* Packs 32 five-bit values into qs nibbles and the qh bit field. */
static void q5_pack(const int v[32], uint8_t qh_bytes[4], uint8_t qs[16])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((v[j] & 0xf) | ((v[j + 16] & 0xf) << 4));
        qh |= (uint32_t)((v[j] & 0x10) >> 4) << j;
        qh |= (uint32_t)((v[j + 16] & 0x10) >> 4) << (j + 16);
    }
    memcpy(qh_bytes, &qh, 4);
}

static void q5_0_block(const float *x, struct slm_block_q5_0 *y)
{
    float d = signed_max(x, 32) / -16.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    int v[32];
    for (int j = 0; j < 32; j++) {
        int q = (int)(int8_t)(x[j] * id + 16.5f);
        v[j] = q > 31 ? 31 : q;
    }
    y->d = slm_f32_to_half(d);
    q5_pack(v, y->qh, y->qs);
}

static void q5_1_block(const float *x, struct slm_block_q5_1 *y)
{
    float lo, hi;
    min_max(x, &lo, &hi);
    float d = (hi - lo) / 31.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    int v[32];
    for (int j = 0; j < 32; j++) {
        int q = (int)(int8_t)((x[j] - lo) * id + 0.5f);
        v[j] = q > 31 ? 31 : q;
    }
    y->d = slm_f32_to_half(d);
    y->m = slm_f32_to_half(lo);
    q5_pack(v, y->qh, y->qs);
}

int slm_cpu_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    size_t be = slm_qblock_elems(type), bb = slm_qblock_bytes(type);
    if (be == 0 || n < 0 || n % (int64_t)be != 0) return -EINVAL;
    uint8_t *d = dst;
    switch (type) {
    case SLM_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case SLM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            slm_half h = slm_f32_to_half(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case SLM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            slm_bf16 h = slm_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case SLM_TYPE_Q8_0: case SLM_TYPE_Q8_1: case SLM_TYPE_Q8_K: case SLM_TYPE_Q4_0:
    case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: break;
    default: return -EINVAL;
    }
    for (int64_t i = 0; i < n / (int64_t)be; i++, src += be, d += bb) {
        switch (type) {
        case SLM_TYPE_Q8_0: q8_0_block(src, (void *)d); break;
        case SLM_TYPE_Q8_1: q8_1_block(src, (void *)d); break;
        case SLM_TYPE_Q8_K: q8_K_block(src, (void *)d); break;
        case SLM_TYPE_Q4_0: q4_0_block(src, (void *)d); break;
        case SLM_TYPE_Q4_1: q4_1_block(src, (void *)d); break;
        case SLM_TYPE_Q5_0: q5_0_block(src, (void *)d); break;
        default: q5_1_block(src, (void *)d); break;
        }
    }
    return 0;
}
