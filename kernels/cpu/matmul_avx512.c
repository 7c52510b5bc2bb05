/*
 * kernels/cpu/matmul_avx512.c - the X8-layout tiles with AVX-512 VNNI (on 256-bit
 * vectors: AVX512VL gives vpdpbusd and 32 vector registers, so 3 tokens per tile).
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
 * (CMake gives *_avx512.c files those flags) and only called after matmul.c checked
 * the CPU. vpdpbusd adds the exact integer dot of each 4-byte group, so the results are
 * bit-identical with the AVX2 tiles of matmul_avx2.c.
 */
#include "kernels/cpu/matmul.h"

#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/dequant.h"

#define X8_CMAX 3
#define X8_CMAX_Q5_0 3
#define X8_CMAX_K 3
#define q4_sum4(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))

#define q8_sum4(abs_w, w, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (abs_w), _mm256_sign_epi8((s), (w)))
#define q5_sum4(m, u, s) _mm256_dpbusd_epi32(_mm256_set1_epi32(m), (u), (s))
#define q4_dot_acc(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))

/* Q5_0's entry: x16_gemm_q5_0 (below), which hands an odd last group to x8_gemm_q5_0. */
#define X8_Q5_0_FN x16_gemm_q5_0
static void x16_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                          const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate);
static void x8_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                         const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate);

#include "kernels/cpu/matmul_x8.h"

#define X8_REST_CASES X8_CASES_3
#define X8_REST_CASES_Q5_0 X8_CASES_3
#define X8_REST_CASES_K X8_CASES_3

/*
 * Q5_0 on 512-bit vectors: two X8 groups side by side, 16 rows a vector (lanes 0-7 the rows of
 * group g, 8-15 those of g + 1), each lane's arithmetic that of x8_q5_0 (the same bits), with
 * twice the rows per instruction: on the Xeon we build on, 8 x (vpdpbusd, vcvtdq2ps, vfmadd) ran
 * 1.47x the lanes a cycle on zmm as on ymm (docs/performance.md).
 */
#define X16_CMAX_Q5_0 3

/* The 32-byte rows of group 0 and group 1 at offset o, as one vector. */
static inline __attribute__((always_inline)) __m512i x16_load2(const uint8_t *w0, const uint8_t *w1, int o)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w0 + o))),
                              _mm256_loadu_si256((const __m256i *)(w1 + o)), 1);
}

static inline __attribute__((always_inline)) __m512i x16_bit4(__m512i x, const int t)
{
    __m512i b = t <= 4 ? _mm512_slli_epi16(x, 4 - t) : _mm512_srli_epi16(x, t - 4);
    return _mm512_and_si512(b, _mm512_set1_epi8(0x10));
}

static inline __attribute__((always_inline)) void x16_q5_0(int64_t nb, const uint8_t *w0, const uint8_t *w1,
                                                          const uint8_t *a, size_t as,
                                                          const struct slm_cpu_act_scale *sc, float *y, int64_t ldy,
                                                          int accumulate, const int C, const int prefetch)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[X16_CMAX_Q5_0][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb0 = w0 + b * X8_Q5_0_BYTES, *wb1 = w1 + b * X8_Q5_0_BYTES;
        if (prefetch) {
            x8_prefetch(wb0, X8_Q5_0_BYTES);
            x8_prefetch(wb1, X8_Q5_0_BYTES);
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)wb0)), _mm_loadu_si128((const __m128i *)wb1), 1));
        __m512 scale[X16_CMAX_Q5_0];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) scale[c] = _mm512_mul_ps(dw, _mm512_set1_ps((sc + (size_t)c * (size_t)nb + b)->d));
        const __m512i qh = x16_load2(wb0, wb1, 16);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m512i ch = x16_load2(wb0, wb1, 48 + 32 * t);
            __m512i lo = _mm512_or_si512(_mm512_and_si512(ch, m4), x16_bit4(qh, t));
            __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ch, 4), m4), x16_bit4(qh, 4 + t));
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
                const int8_t *aq = ((const struct slm_block_q8_0 *)(a + (size_t)c * as) + b)->qs;
                int32_t vlo, vhi;
                memcpy(&vlo, aq + 4 * t, 4);
                memcpy(&vhi, aq + 16 + 4 * t, 4);
                __m512 flo = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_set1_epi32(s->m16[t]), lo, _mm512_set1_epi32(vlo)));
                __m512 fhi =
                    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_set1_epi32(s->m16[4 + t]), hi, _mm512_set1_epi32(vhi)));
                acc[c][t] = _mm512_fmadd_ps(flo, scale[c], acc[c][t]);
                acc[c][4 + t] = _mm512_fmadd_ps(fhi, scale[c], acc[c][4 + t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        /* x8_store's tree, lane by lane */
        __m512 u0 = _mm512_add_ps(acc[c][0], acc[c][4]), u1 = _mm512_add_ps(acc[c][1], acc[c][5]);
        __m512 u2 = _mm512_add_ps(acc[c][2], acc[c][6]), u3 = _mm512_add_ps(acc[c][3], acc[c][7]);
        __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(u0, u2), _mm512_add_ps(u1, u3)), _mm512_setzero_ps());
        float *yc = y + c * ldy;
        if (accumulate) v = _mm512_add_ps(_mm512_loadu_ps(yc), v);
        _mm512_storeu_ps(yc, v);
    }
}

#define X8_CASES_Q5_0_WIDE(CALL) X8_CASE(CALL, 1) X8_CASE(CALL, 2)
#define X16_CALL_Q5_0(c, K) x16_q5_0(nb, wg, wg + gs, X8_ARGS(c), K, (c) == 0)

/* Pairs of groups on 512-bit vectors, an odd last group on the 256-bit tile. */
static void x16_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                          const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate)
{
    const uint8_t *a = ap;
    const size_t gs = (size_t)nb * X8_Q5_0_BYTES;
    int g = 0;
    for (; g + 2 <= n_groups; g += 2) {
        const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;
        float *yg = y + 8 * g;
        X8_TOKEN_LOOP(X16_CALL_Q5_0, X16_CMAX_Q5_0, X8_CASES_Q5_0_WIDE);
    }
    if (g < n_groups) x8_gemm_q5_0(nb, (const uint8_t *)wp + (size_t)g * gs, 1, ap, as, sc, nc, y + 8 * g, ldy, accumulate);
}
X8_DEFINE_TIER(slm_cpu_x8_avx512)
