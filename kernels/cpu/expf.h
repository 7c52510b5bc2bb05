/*
 * kernels/cpu/expf.h - exp(x) as llama.cpp's CPU build computes it (its vectorised softmax and
 * SiLU), for each of the two lane layouts (slm_cpu_lanes): private to kernels/cpu.
 *
 * Both are the scheme of ARM's optimized-routines expf: n = round(x / ln 2), b = x - n ln 2
 * (two-part ln 2), a degree-5 polynomial p(b) ~ exp(b), within about 2 ulp; they differ in where
 * the 1 of p is added, so in the last bit of some results:
 * - 16 lanes (the AVX-512 build): j = p(b) with its 1 inside the last fused step, times 2^n (one
 *   rounding, as _mm512_scalef_ps);
 * - 8 lanes (the AVX2 build): j = p(b) - 1 (its last step a plain product), then j 2^n + 2^n in
 *   one fused step; |n| > 126 scales in two steps, |n| > 192 gives 0 or inf.
 * Each has a scalar form and an 8-wide AVX2 form with the same bits.
 */
#ifndef SLM_KERNELS_CPU_EXPF_H
#define SLM_KERNELS_CPU_EXPF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float slm_expf_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 2^e as a float: normal or subnormal (e >= -149). */
static inline float slm_expf_pow2(int e)
{
    return slm_expf_bits(e >= -126 ? (uint32_t)(e + 127) << 23 : 1u << (e + 149));
}

/* exp(x) of the 16-lane build. */
static inline float slm_expf16(float x)
{
    const float shift = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, shift);
    float n = z - shift;
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    if (isnan(n)) return n;
    if (fabsf(n) > 192.0f) return n > 0.0f ? INFINITY : 0.0f;
    float u = b * b;
    float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                   fmaf(0x1.ffffecp-1f, b, 1.0f));
    int e = (int)n;
    if (e < -149 || e > 127) return ldexpf(j, e);
    return j * slm_expf_pow2(e);   /* one rounding, as ldexpf */
}

/* exp(x) of the 8-lane build. The scale factors are made from z's bits as the vector code does
 * (z's low bits hold n): k = 2^n, and past |n| > 126 the pair s1 s2 with s1 s2 = 2^n. */
static inline float slm_expf8(float x)
{
    const float shift = 0x1.8p23f;
    float z = fmaf(x, 0x1.715476p+0f, shift);
    float n = z - shift;
    float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    uint32_t zb;
    memcpy(&zb, &z, 4);
    uint32_t e = zb << 23;
    float k = slm_expf_bits(e + 0x3f800000u);
    float u = b * b;
    float pb = 0x1.ffffecp-1f * b;
    float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u, pb);
    float an = fabsf(n);
    if (!(an > 126.0f)) return fmaf(k, j, k);   /* (NaN too) */
    uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    float s1 = slm_expf_bits(g + 0x7f000000u);
    if (an > 192.0f) return s1 * s1;
    float s2 = slm_expf_bits(e - g);
    return fmaf(s2, j, s2) * s1;
}

static inline float slm_expf_lanes(float x, int lanes)
{
    return lanes == 16 ? slm_expf16(x) : slm_expf8(x);
}

#if defined(__x86_64__)
/* The range reduction both 8-lane forms share: z = x log2(e) + 1.5 * 2^23 (n = round(x log2(e))
 * in its low bits), n, and b = x - n ln(2) in two parts. Returns 1 when a lane has |n| > 126: the
 * caller then takes the scalar form on every lane (the same bits). */
__attribute__((target("avx2,fma,f16c"))) static inline int slm_exp_reduce_avx2(__m256 x, __m256 *z, __m256 *n,
                                                                              __m256 *b)
{
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    *z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    *n = _mm256_sub_ps(*z, shift);
    *b = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(*n, _mm256_set1_ps(0x1.62e4p-1f), x));
    return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), *n), _mm256_set1_ps(126.0f),
                                            _CMP_GT_OQ)) != 0;
}

/* f on each of x's 8 lanes. */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 slm_exp_lanewise_avx2(__m256 x, float (*f)(float))
{
    float v[8];
    _mm256_storeu_ps(v, x);
    for (int i = 0; i < 8; i++) v[i] = f(v[i]);
    return _mm256_loadu_ps(v);
}

/* slm_expf16 on 8 lanes: the same fused operations, so the same bits. */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 slm_expf16_avx2(__m256 x)
{
    __m256 z, n, b;
    if (slm_exp_reduce_avx2(x, &z, &n, &b)) return slm_exp_lanewise_avx2(x, slm_expf16);
    __m256 u = _mm256_mul_ps(b, b);
    __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
}

/* slm_expf8 on 8 lanes: the same operations, so the same bits (|n| > 126 lanes: the scalar form). */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 slm_expf8_avx2(__m256 x)
{
    __m256 z, n, b;
    if (slm_exp_reduce_avx2(x, &z, &n, &b)) return slm_exp_lanewise_avx2(x, slm_expf8);
    __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(z), 23),
                                                    _mm256_set1_epi32(0x3f800000)));
    __m256 u = _mm256_mul_ps(b, b);
    __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    return _mm256_fmadd_ps(k, j, k);
}
#endif

#endif
