/*
 * kernels/cpu/matmul_x8.h - the X8-layout tiles (matmul.h describes the layout), written
 * once and included by matmul_avx2.c and matmul_avx512.c, which first define:
 *   X8_CMAX                 tokens per tile (registers allow 4 with AVX2, 8 with AVX-512);
 *   IACC                    the type of a block's integer accumulator;
 *   iacc_zero()             an empty accumulator;
 *   q4_dp(acc, u, s)        acc += per-lane sums of 4 products u8 (0..15) x s8;
 *   q4_finish(acc)          the 8 int32 lane sums (one per row);
 *   q8_prep(ch, &p, &q)     prepares a Q8_0 chunk (unsigned q + 128) once for all tokens;
 *   q8_dp(acc, p, q, s)     acc (int32 lanes) += per-lane sums of 4 products w x s8;
 *   q8_finish(acc, bias)    the exact sums of w * a (bias = -128 * sum(a) if the
 *                           products used the stored unsigned weights).
 *
 * Every lane is a weight row and every output element is computed alone, in this fixed
 * order whatever the tile's token count:
 *   for each block b:  isum = exact integer dot of the block (int32);
 *                      acc  = fma((float)isum, d_w * d_a, acc);
 *                      macc = fma(m_w, s_a, macc)                 (Q4_1 only)
 *   y = acc + macc  (then y_old + y when accumulating).
 * Tiles with several tokens share only the weight loads and unpacking.
 */
#ifndef X8_CMAX
#error "define X8_CMAX and the integer hooks before including matmul_x8.h"
#endif

#define X8_Q4_1_BYTES 160
#define X8_Q8_0_BYTES 272

static inline __attribute__((always_inline)) __m256i x8_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static inline __attribute__((always_inline)) void x8_store(float *y, __m256 v, int accumulate)
{
    if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y), v);
    _mm256_storeu_ps(y, v);
}

static inline __attribute__((always_inline)) void x8_q4_1(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[X8_CMAX], macc[X8_CMAX];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        acc[c] = _mm256_setzero_ps();
        macc[c] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q4_1_BYTES;
        IACC ia[X8_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) ia[c] = iacc_zero();
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i ch = _mm256_loadu_si256((const __m256i *)(wb + 32 + 32 * t));
            __m256i lo = _mm256_and_si256(ch, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(ch, 4), m4);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_1 *)(a + (size_t)c * as) + b)->qs;
                ia[c] = q4_dp(ia[c], lo, x8_bcast4(aq + 4 * t));
                ia[c] = q4_dp(ia[c], hi, x8_bcast4(aq + 16 + 4 * t));
            }
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wb + 16)));
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
            __m256 p = _mm256_cvtepi32_ps(q4_finish(ia[c]));
            acc[c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(s->d)), acc[c]);
            macc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(s->s), macc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, _mm256_add_ps(acc[c], macc[c]), accumulate);
}

#ifdef X8_PAIRS
/* x8_q4_1 for two consecutive groups (16 rows): the activation broadcasts are shared;
 * every output element's arithmetic is x8_q4_1's. */
static inline __attribute__((always_inline)) void x8_q4_1_g2(int64_t nb, const uint8_t *w, size_t gs,
                                                            const uint8_t *a, size_t as,
                                                            const struct slm_cpu_act_scale *sc, float *y,
                                                            int64_t ldy, int accumulate, const int C)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[2][X8_PAIRS], macc[2][X8_PAIRS];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int g = 0; g < 2; g++) {
            acc[g][c] = _mm256_setzero_ps();
            macc[g][c] = _mm256_setzero_ps();
        }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb0 = w + b * X8_Q4_1_BYTES, *wb1 = wb0 + gs;
        IACC ia[2][X8_PAIRS];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) ia[0][c] = ia[1][c] = iacc_zero();
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i ch0 = _mm256_loadu_si256((const __m256i *)(wb0 + 32 + 32 * t));
            __m256i ch1 = _mm256_loadu_si256((const __m256i *)(wb1 + 32 + 32 * t));
            __m256i lo0 = _mm256_and_si256(ch0, m4), hi0 = _mm256_and_si256(_mm256_srli_epi16(ch0, 4), m4);
            __m256i lo1 = _mm256_and_si256(ch1, m4), hi1 = _mm256_and_si256(_mm256_srli_epi16(ch1, 4), m4);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_1 *)(a + (size_t)c * as) + b)->qs;
                __m256i al = x8_bcast4(aq + 4 * t), ah = x8_bcast4(aq + 16 + 4 * t);
                ia[0][c] = q4_dp(ia[0][c], lo0, al);
                ia[1][c] = q4_dp(ia[1][c], lo1, al);
                ia[0][c] = q4_dp(ia[0][c], hi0, ah);
                ia[1][c] = q4_dp(ia[1][c], hi1, ah);
            }
        }
#pragma GCC unroll 2
        for (int g = 0; g < 2; g++) {
            const uint8_t *wb = g ? wb1 : wb0;
            __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
            __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wb + 16)));
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
                __m256 p = _mm256_cvtepi32_ps(q4_finish(ia[g][c]));
                acc[g][c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(s->d)), acc[g][c]);
                macc[g][c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(s->s), macc[g][c]);
            }
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int g = 0; g < 2; g++)
            x8_store(y + c * ldy + 8 * g, _mm256_add_ps(acc[g][c], macc[g][c]), accumulate);
}
#endif

static inline __attribute__((always_inline)) void x8_q8_0(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C)
{
    __m256 acc[X8_CMAX];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q8_0_BYTES;
        __m256i ia[X8_CMAX];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) ia[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int t = 0; t < 8; t++) {
            __m256i p, q;
            q8_prep(_mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * t)), &p, &q);
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const int8_t *aq = ((const struct slm_block_q8_0 *)(a + (size_t)c * as) + b)->qs;
                ia[c] = q8_dp(ia[c], p, q, x8_bcast4(aq + 4 * t));
            }
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
            __m256 p = _mm256_cvtepi32_ps(q8_finish(ia[c], _mm256_set1_epi32(s->bias)));
            acc[c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(s->d)), acc[c]);
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, acc[c], accumulate);
}

/* The remainder of a token loop: case K runs CALL(c, K) for K < the tile size. */
#define X8_CASE(CALL, K) case K: CALL(c, K); break;
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
#define X8_CALL_Q4_1_G2(c, K) x8_q4_1_g2(nb, wg, gs, X8_ARGS(c), K)

/* The slm_cpu_x8_fn of a weight type: n_groups consecutive groups, nc tokens. */
#define X8_DEFINE(NAME, BYTES, CALL, PAIR_LOOP)                                                              \
    static void NAME(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,                    \
                     const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate)      \
    {                                                                                                        \
        const uint8_t *a = ap;                                                                               \
        const size_t gs = (size_t)nb * (BYTES);                                                              \
        int g = 0;                                                                                           \
        PAIR_LOOP                                                                                            \
        for (; g < n_groups; g++) {                                                                          \
            const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;                                        \
            float *yg = y + 8 * g;                                                                           \
            X8_TOKEN_LOOP(CALL, X8_CMAX, X8_REST_CASES);                                                     \
        }                                                                                                    \
    }
