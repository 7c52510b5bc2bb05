/*
 * kernels/cpu/matmul_x8.h - the X8-layout tiles (matmul.h describes the layout), written
 * once and included by matmul_avx2.c and matmul_avx512.c, which first define:
 *   X8_CMAX                 tokens per tile (at most 4), X8_REST_CASES the X8_CASES_<X8_CMAX - 1>;
 *   X8_CMAX_Q5_0, X8_REST_CASES_Q5_0   the same for the Q5_0 tile (whose unpacking costs more);
 *   q4_sum4(u, s)           int32 lanes: the sums of 4 products u8 (0..15) x s8;
 *   q8_sum4(|w|, w, s)      int32 lanes: the exact sums of 4 products w x s8 (from |w| and
 *                           s with w's sign, which keeps the unsigned x signed products exact).
 *
 * Every lane is a weight row, and each row's arithmetic is that of llama.cpp's AVX2 dot
 * products (ggml_vec_dot_q4_1_q8_1, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q5_0_q8_0), so that results agree bit for
 * bit (docs/numerics.md): the block's 32 products in 8 groups of 4 elements, group k
 * (elements 4k..4k+3) in its own float accumulator acc_k:
 *   for each block b:  acc_k = fma((float)isum_k, d_w * d_a, acc_k)   for k = 0..7
 *                      macc  = fma(m_w, s_a, macc)                     (Q4_1 only)
 *   y = ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) + (acc_3 + acc_7)) [+ macc]
 *   (the horizontal-sum tree), then y_old + y when accumulating.
 * Tiles with several tokens share only the weight loads and unpacking.
 */
#ifndef X8_CMAX
#error "define X8_CMAX and the integer hooks before including matmul_x8.h"
#endif

#define X8_Q4_1_BYTES 160
#define X8_Q8_0_BYTES 272
#define X8_Q5_0_BYTES 176

/* A Q8_0 chunk for the tiles: |w| and w (q8_sum4 takes both). */
static inline __attribute__((always_inline)) void q8_prep(__m256i ch, __m256i *abs_w, __m256i *w)
{
    *w = ch;
    *abs_w = _mm256_abs_epi8(ch);
}

static inline __attribute__((always_inline)) __m256i x8_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The 8 group accumulators of each row, summed in the tree of a horizontal add, plus extra. */
static inline __attribute__((always_inline)) void x8_store(float *y, const __m256 acc[8], __m256 extra, int accumulate)
{
    __m256 u0 = _mm256_add_ps(acc[0], acc[4]), u1 = _mm256_add_ps(acc[1], acc[5]);
    __m256 u2 = _mm256_add_ps(acc[2], acc[6]), u3 = _mm256_add_ps(acc[3], acc[7]);
    __m256 v = _mm256_add_ps(_mm256_add_ps(u0, u2), _mm256_add_ps(u1, u3));
    v = _mm256_add_ps(v, extra);
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y), v);
    _mm256_storeu_ps(y, v);
}

static inline __attribute__((always_inline)) void x8_q4_1(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[X8_CMAX][8], macc[X8_CMAX];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
        macc[c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q4_1_BYTES;
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wb + 16)));
        __m256 scale[X8_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
            scale[c] = _mm256_mul_ps(dw, _mm256_set1_ps(s->d));
            macc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(s->s), macc[c]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i ch = _mm256_loadu_si256((const __m256i *)(wb + 32 + 32 * t));
            __m256i lo = _mm256_and_si256(ch, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(ch, 4), m4);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_1 *)(a + (size_t)c * as) + b)->qs;
                __m256 plo = _mm256_cvtepi32_ps(q4_sum4(lo, x8_bcast4(aq + 4 * t)));
                __m256 phi = _mm256_cvtepi32_ps(q4_sum4(hi, x8_bcast4(aq + 16 + 4 * t)));
                acc[c][t] = _mm256_fmadd_ps(plo, scale[c], acc[c][t]);
                acc[c][4 + t] = _mm256_fmadd_ps(phi, scale[c], acc[c][4 + t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, acc[c], macc[c], accumulate);
}

static inline __attribute__((always_inline)) void x8_q8_0(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C)
{
    __m256 acc[X8_CMAX][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q8_0_BYTES;
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        __m256 scale[X8_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) scale[c] = _mm256_mul_ps(dw, _mm256_set1_ps((sc + (size_t)c * (size_t)nb + b)->d));
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            __m256i p, q;
            q8_prep(_mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * t)), &p, &q);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_0 *)(a + (size_t)c * as) + b)->qs;
                __m256 pf = _mm256_cvtepi32_ps(q8_sum4(p, q, x8_bcast4(aq + 4 * t)));
                acc[c][t] = _mm256_fmadd_ps(pf, scale[c], acc[c][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, acc[c], _mm256_setzero_ps(), accumulate);
}

/* Bit t of every byte of x moved to bit 4 (the fifth bit of Q5_0's values); the other bits 0. */
static inline __attribute__((always_inline)) __m256i x8_bit4(__m256i x, const int t)
{
    __m256i b = t <= 4 ? _mm256_slli_epi16(x, 4 - t) : _mm256_srli_epi16(x, t - 4);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x10));
}

/* Q5_0 as Q8_0 (the values q - 16 are signed), unpacked from nibbles and the spread fifth bits. */
static inline __attribute__((always_inline)) void x8_q5_0(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8(16);
    __m256 acc[4][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q5_0_BYTES;
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        __m256 scale[4];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) scale[c] = _mm256_mul_ps(dw, _mm256_set1_ps((sc + (size_t)c * (size_t)nb + b)->d));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 16));
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i ch = _mm256_loadu_si256((const __m256i *)(wb + 48 + 32 * t));
            __m256i lo = _mm256_or_si256(_mm256_and_si256(ch, m4), x8_bit4(qh, t));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ch, 4), m4), x8_bit4(qh, 4 + t));
            __m256i plo, qlo, phi, qhi;
            q8_prep(_mm256_sub_epi8(lo, off), &plo, &qlo);
            q8_prep(_mm256_sub_epi8(hi, off), &phi, &qhi);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_0 *)(a + (size_t)c * as) + b)->qs;
                __m256 flo = _mm256_cvtepi32_ps(q8_sum4(plo, qlo, x8_bcast4(aq + 4 * t)));
                __m256 fhi = _mm256_cvtepi32_ps(q8_sum4(phi, qhi, x8_bcast4(aq + 16 + 4 * t)));
                acc[c][t] = _mm256_fmadd_ps(flo, scale[c], acc[c][t]);
                acc[c][4 + t] = _mm256_fmadd_ps(fhi, scale[c], acc[c][4 + t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, acc[c], _mm256_setzero_ps(), accumulate);
}

/* The remainder of a token loop: case K runs CALL(c, K) for K < the tile size. */
#define X8_CASE(CALL, K) case K: CALL(c, K); break;
#define X8_CASES_0(CALL)
#define X8_CASES_1(CALL) X8_CASE(CALL, 1)
#define X8_CASES_3(CALL) X8_CASE(CALL, 1) X8_CASE(CALL, 2) X8_CASE(CALL, 3)
#define X8_CASES_7(CALL) X8_CASES_3(CALL) X8_CASE(CALL, 4) X8_CASE(CALL, 5) X8_CASE(CALL, 6) X8_CASE(CALL, 7)

/* nc tokens in tiles of CMAX, then the rest in one smaller tile. */
#define X8_TOKEN_LOOP(CALL, CMAX, CASES)                                                                     \
    do {                                                                                                     \
        int c = 0;                                                                                           \
        for (; c + (CMAX) <= nc; c += (CMAX)) CALL(c, CMAX);                                                 \
        switch (nc - c) {                                                                                    \
        CASES(CALL)                                                                                          \
        default: break;                                                                                      \
        }                                                                                                    \
    } while (0)

#define X8_ARGS(c) a + (size_t)(c) * as, as, sc + (size_t)(c) * (size_t)nb, yg + (c) * ldy, ldy, accumulate
#define X8_CALL_Q4_1(c, K) x8_q4_1(nb, wg, X8_ARGS(c), K)
#define X8_CALL_Q8_0(c, K) x8_q8_0(nb, wg, X8_ARGS(c), K)
#define X8_CALL_Q5_0(c, K) x8_q5_0(nb, wg, X8_ARGS(c), K)

/* The slm_cpu_x8_fn of a weight type: n_groups consecutive groups, nc tokens. */
#define X8_DEFINE(NAME, BYTES, CALL, CMAX, REST_CASES)                                                              \
    static void NAME(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,                    \
                     const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate)      \
    {                                                                                                        \
        const uint8_t *a = ap;                                                                               \
        const size_t gs = (size_t)nb * (BYTES);                                                              \
        int g = 0;                                                                                           \
        for (; g < n_groups; g++) {                                                                          \
            const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;                                        \
            float *yg = y + 8 * g;                                                                           \
            X8_TOKEN_LOOP(CALL, CMAX, REST_CASES);                                                           \
        }                                                                                                    \
    }

/* The tier's tiles and its lookup function FN (the slm_cpu_x8_fn of a weight type). */
#define X8_DEFINE_TIER(FN)                                                                                   \
    X8_DEFINE(x8_gemm_q4_1, X8_Q4_1_BYTES, X8_CALL_Q4_1, X8_CMAX, X8_REST_CASES)                             \
    X8_DEFINE(x8_gemm_q8_0, X8_Q8_0_BYTES, X8_CALL_Q8_0, X8_CMAX, X8_REST_CASES)                             \
    X8_DEFINE(x8_gemm_q5_0, X8_Q5_0_BYTES, X8_CALL_Q5_0, X8_CMAX_Q5_0, X8_REST_CASES_Q5_0)                   \
    slm_cpu_x8_fn FN(uint32_t wtype)                                                                         \
    {                                                                                                        \
        switch (wtype) {                                                                                     \
        case SLM_TYPE_Q4_1: return x8_gemm_q4_1;                                                             \
        case SLM_TYPE_Q8_0: return x8_gemm_q8_0;                                                             \
        case SLM_TYPE_Q5_0: return x8_gemm_q5_0;                                                             \
        default: return NULL;                                                                                \
        }                                                                                                    \
    }
