/*
 * kernels/cpu/matmul_x8.h - the X8-layout tiles (matmul.h describes the layout), written
 * once and included by matmul_avx2.c and matmul_avx512.c, which first define:
 *   X8_CMAX                 tokens per tile (at most 4), X8_REST_CASES the X8_CASES_<X8_CMAX - 1>;
 *   X8_CMAX_Q5_0, X8_REST_CASES_Q5_0   the same for the Q5_0 tile (at most 8: its unpacking costs more);
 *   X8_CMAX_K, X8_REST_CASES_K         the same for the Q4_K and Q6_K tiles (at most 4).
 *   q4_sum4(u, s)           int32 lanes: the sums of 4 products u8 (0..15) x s8;
 *   q8_sum4(|w|, w, s)      int32 lanes: the exact sums of 4 products w x s8 (from |w| and
 *                           s with w's sign, which keeps the unsigned x signed products exact).
 *   q4_dot_acc(acc, u, s)   optional: int32 lanes acc + the sums of 4 products u8 x s8; with it
 *                           the Q4_K tile sums each sub-block's products in int32 and multiplies
 *                           by the scale there (the same exact sums).
 *   q5_sum4(m, u, s)        optional: int32 lanes m + the sums of 4 products u8 (0..31) x s8;
 *                           with it the Q5_0 tile takes its stored values as they are and starts
 *                           each sum from -16 x the quants' sum (slm_cpu_act_scale.m16).
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
#define X8_Q4_K_BYTES 1248
#define X8_Q6_K_BYTES 1808

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

/* Software prefetch of the weight stream: the bytes of a block X8_PF_AHEAD bytes past wb (the
 * hardware prefetchers stop at 4 KiB pages; this measured +20-30% on a 178 MB Q8_0 GEMV). Only
 * the first token tile of a row group prefetches: the later ones find the group in L1. */
#ifndef X8_PF_AHEAD
#define X8_PF_AHEAD 1024
#endif
static inline __attribute__((always_inline)) void x8_prefetch(const uint8_t *wb, const int bytes)
{
#pragma GCC unroll 32
    for (int l = 0; l < bytes; l += 64) _mm_prefetch((const char *)wb + X8_PF_AHEAD + l, _MM_HINT_T0);
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
                                                         int64_t ldy, int accumulate, const int C, const int prefetch)
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
        if (prefetch) x8_prefetch(wb, X8_Q4_1_BYTES);
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
                                                         int64_t ldy, int accumulate, const int C, const int prefetch)
{
    __m256 acc[X8_CMAX][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q8_0_BYTES;
        if (prefetch) x8_prefetch(wb, X8_Q8_0_BYTES);
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

/* Q5_0's stored values (0..31) of elements 4t..4t+3 (lo) and 16+4t..16+4t+3 (hi) of the block at
 * wb, each row's in its lane: the nibbles and the spread fifth bits (qh, at wb + 16). */
static inline __attribute__((always_inline)) void x8_q5_0_values(const uint8_t *wb, __m256i qh, const int t,
                                                                __m256i *lo, __m256i *hi)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i ch = _mm256_loadu_si256((const __m256i *)(wb + 48 + 32 * t));
    *lo = _mm256_or_si256(_mm256_and_si256(ch, m4), x8_bit4(qh, t));
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ch, 4), m4), x8_bit4(qh, 4 + t));
}

/* Q5_0 as Q8_0 (the values q - 16 are signed), unpacked from nibbles and the spread fifth bits. */
static inline __attribute__((always_inline)) void x8_q5_0(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, const struct slm_cpu_act_scale *sc, float *y,
                                                         int64_t ldy, int accumulate, const int C, const int prefetch)
{
    const __m256i off = _mm256_set1_epi8(16);
    __m256 acc[8][8];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q5_0_BYTES;
        if (prefetch) x8_prefetch(wb, X8_Q5_0_BYTES);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        __m256 scale[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) scale[c] = _mm256_mul_ps(dw, _mm256_set1_ps((sc + (size_t)c * (size_t)nb + b)->d));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 16));
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i lo, hi;
            x8_q5_0_values(wb, qh, t, &lo, &hi);
#ifdef q5_sum4
            /* the stored values (0..31) times the quants, from -16 x their sum: the same exact sums */
            (void)off;
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                const struct slm_cpu_act_scale *s = sc + (size_t)c * (size_t)nb + b;
                const int8_t *aq = ((const struct slm_block_q8_0 *)(a + (size_t)c * as) + b)->qs;
                __m256 flo = _mm256_cvtepi32_ps(q5_sum4(s->m16[t], lo, x8_bcast4(aq + 4 * t)));
                __m256 fhi = _mm256_cvtepi32_ps(q5_sum4(s->m16[4 + t], hi, x8_bcast4(aq + 16 + 4 * t)));
                acc[c][t] = _mm256_fmadd_ps(flo, scale[c], acc[c][t]);
                acc[c][4 + t] = _mm256_fmadd_ps(fhi, scale[c], acc[c][4 + t]);
            }
#else
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
#endif
        }
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) x8_store(y + c * ldy, acc[c], _mm256_setzero_ps(), accumulate);
}

/* ---- the K-quants (256-element blocks against Q8_K), each row in the float order of
 * vec_dot_ref.c (llama.cpp's); the integer sums of a block are exact, whatever their order. */

/* 8 rows' int8 scales stored twice each: int16 pairs (s_r, s_r), the multiplier of madd. */
static inline __attribute__((always_inline)) __m256i x8_scales16(const uint8_t *p)
{
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}

/* The same 8 scales as int32 lanes. */
static inline __attribute__((always_inline)) __m256i x8_scales32(const uint8_t *p)
{
    __m128i w = _mm_loadu_si128((const __m128i *)p);
    return _mm256_cvtepi16_epi32(_mm_srai_epi16(_mm_slli_epi16(w, 8), 8));
}

/* A sub-block's products: int16 sums (vpmaddubsw) times the int16 scales (vpmaddwd), or with
 * q4_dot_acc int32 sums times the int32 scales (the same exact integers). */
#ifdef q4_dot_acc
#define X8_Q4K_ACC(acc, u, s) q4_dot_acc((acc), (u), (s))
#define X8_Q4K_SCALES(p) x8_scales32(p)
#define X8_Q4K_APPLY(p, sc) _mm256_mullo_epi32((p), (sc))
#else
#define X8_Q4K_ACC(acc, u, s) _mm256_add_epi16((acc), _mm256_maddubs_epi16((u), (s)))
#define X8_Q4K_SCALES(p) x8_scales16(p)
#define X8_Q4K_APPLY(p, sc) _mm256_madd_epi16((p), (sc))
#endif

/* Q4_K: sumi = sum over sub-blocks j of sc_j * (its 32 products), the products of a chunk added in
 * int16 (8 chunks of 4 products each at most 8 * 2 * 15 * 128 = 30720: exact) before the madd by
 * sc_j; summ = sum_j m_j (bsums[2j] + bsums[2j + 1]); per block
 *   acc = fma(sumi, d_w * d_a, acc), accm = fma(summ, dmin_w * d_a, accm); y = acc - accm. */
static inline __attribute__((always_inline)) void x8_q4_k(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, float *y, int64_t ldy, int accumulate,
                                                         const int C, const int prefetch)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4], accm[4];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) acc[c] = accm[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q4_K_BYTES;
        if (prefetch) x8_prefetch(wb, X8_Q4_K_BYTES);
        const struct slm_block_q8_K *ab[4];
        __m256i isum[4], msum[4];
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
        const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wb + 16)));
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            ab[c] = (const struct slm_block_q8_K *)(a + (size_t)c * as) + b;
            isum[c] = _mm256_setzero_si256();
            /* B_j = bsums[2j] + bsums[2j + 1] as int16 (|B_j| <= 32 * 128), in pairs (B_2i, B_2i+1) */
            const __m128i bsum = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)ab[c]->bsums),
                                                _mm_loadu_si128((const __m128i *)(ab[c]->bsums + 8)));
            __m256i m = _mm256_madd_epi16(x8_scales16(wb + 160), _mm256_broadcastd_epi32(bsum));
            m = _mm256_add_epi32(m, _mm256_madd_epi16(x8_scales16(wb + 176),
                                                      _mm256_broadcastd_epi32(_mm_shuffle_epi32(bsum, 0x55))));
            m = _mm256_add_epi32(m, _mm256_madd_epi16(x8_scales16(wb + 192),
                                                      _mm256_broadcastd_epi32(_mm_shuffle_epi32(bsum, 0xaa))));
            msum[c] = _mm256_add_epi32(m, _mm256_madd_epi16(x8_scales16(wb + 208),
                                                            _mm256_broadcastd_epi32(_mm_shuffle_epi32(bsum, 0xff))));
        }
        for (int q = 0; q < 4; q++) {   /* sub-blocks 2q (low nibbles) and 2q + 1 (high) */
            __m256i plo[4], phi[4];
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) plo[c] = phi[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) {
                const __m256i ch = _mm256_loadu_si256((const __m256i *)(wb + 224 + 32 * (8 * q + t)));
                const __m256i lo = _mm256_and_si256(ch, m4), hi = _mm256_and_si256(_mm256_srli_epi16(ch, 4), m4);
#pragma GCC unroll 4
                for (int c = 0; c < C; c++) {
                    plo[c] = X8_Q4K_ACC(plo[c], lo, x8_bcast4(ab[c]->qs + 64 * q + 4 * t));
                    phi[c] = X8_Q4K_ACC(phi[c], hi, x8_bcast4(ab[c]->qs + 64 * q + 32 + 4 * t));
                }
            }
            const __m256i slo = X8_Q4K_SCALES(wb + 32 + 32 * q), shi = X8_Q4K_SCALES(wb + 32 + 32 * q + 16);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++)
                isum[c] = _mm256_add_epi32(isum[c], _mm256_add_epi32(X8_Q4K_APPLY(plo[c], slo), X8_Q4K_APPLY(phi[c], shi)));
        }
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const __m256 da = _mm256_set1_ps(ab[c]->d);
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[c]), _mm256_mul_ps(dw, da), acc[c]);
            accm[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum[c]), _mm256_mul_ps(mw, da), accm[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) {
        __m256 v = _mm256_sub_ps(acc[c], accm[c]);
        if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y + c * ldy), v);
        _mm256_storeu_ps(y + c * ldy, v);
    }
}

/* Q6_K: lane k (elements 4k..4k+3 of each 32-element piece, times its scale) is chunk k of every
 * piece, here one k at a time, minus 32 (sc_2k bsums_2k + sc_2k+1 bsums_2k+1); per block
 * acc_k = fma(d_a * d_w, lane_k, acc_k); y = the tree of x8_store over acc_0..7. */
static inline __attribute__((always_inline)) void x8_q6_k(int64_t nb, const uint8_t *w, const uint8_t *a,
                                                         size_t as, float *y, int64_t ldy, int accumulate,
                                                         const int C, const int prefetch)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[4][8];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
        for (int k = 0; k < 8; k++) acc[c][k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = w + b * X8_Q6_K_BYTES;
        if (prefetch) x8_prefetch(wb, X8_Q6_K_BYTES);
        const struct slm_block_q8_K *ab[4];
        __m256 scale[4];
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            ab[c] = (const struct slm_block_q8_K *)(a + (size_t)c * as) + b;
            scale[c] = _mm256_mul_ps(_mm256_set1_ps(ab[c]->d), dw);
        }
        for (int t = 0; t < 8; t++) {
            __m256i isum[4];
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) isum[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {   /* elements 128h + 32q + 4t .. + 3, q = 0..3 */
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 1296 + 32 * (8 * h + t)));
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(wb + 272 + 32 * (16 * h + t)));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(wb + 272 + 32 * (16 * h + 8 + t)));
                __m256i v[4];   /* the 6-bit values q + 32 */
                v[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                v[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
                v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    const __m256i sc = x8_scales16(wb + 16 + 16 * (8 * h + 2 * q + (t >= 4)));
#pragma GCC unroll 4
                    for (int c = 0; c < C; c++) {
                        const __m256i p = _mm256_maddubs_epi16(v[q], x8_bcast4(ab[c]->qs + 128 * h + 32 * q + 4 * t));
                        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(p, sc));
                    }
                }
            }
            const __m256i csc = _mm256_blend_epi16(x8_scales16(wb + 16 + 32 * t), x8_scales16(wb + 32 + 32 * t), 0xaa);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                int32_t bs;
                memcpy(&bs, ab[c]->bsums + 2 * t, 4);
                const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(csc, _mm256_set1_epi32(bs)), 5);
                acc[c][t] = _mm256_fmadd_ps(scale[c], _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[c], corr)), acc[c][t]);
            }
        }
    }
#pragma GCC unroll 4
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
#define X8_CALL_Q4_1(c, K) x8_q4_1(nb, wg, X8_ARGS(c), K, (c) == 0)
#define X8_CALL_Q8_0(c, K) x8_q8_0(nb, wg, X8_ARGS(c), K, (c) == 0)
#define X8_CALL_Q5_0(c, K) x8_q5_0(nb, wg, X8_ARGS(c), K, (c) == 0)
#define X8_ARGS_K(c) a + (size_t)(c) * as, as, yg + (c) * ldy, ldy, accumulate
#define X8_CALL_Q4_K(c, K) x8_q4_k(nb, wg, X8_ARGS_K(c), K, (c) == 0)
#define X8_CALL_Q6_K(c, K) x8_q6_k(nb, wg, X8_ARGS_K(c), K, (c) == 0)

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

/* The Q5_0 entry of the tier's lookup: a tier may give its own (which may call x8_gemm_q5_0). */
#ifndef X8_Q5_0_FN
#define X8_Q5_0_FN x8_gemm_q5_0
#endif

/* The tier's tiles and its lookup function FN (the slm_cpu_x8_fn of a weight type). */
#define X8_DEFINE_TIER(FN)                                                                                   \
    X8_DEFINE(x8_gemm_q4_1, X8_Q4_1_BYTES, X8_CALL_Q4_1, X8_CMAX, X8_REST_CASES)                             \
    X8_DEFINE(x8_gemm_q8_0, X8_Q8_0_BYTES, X8_CALL_Q8_0, X8_CMAX, X8_REST_CASES)                             \
    X8_DEFINE(x8_gemm_q5_0, X8_Q5_0_BYTES, X8_CALL_Q5_0, X8_CMAX_Q5_0, X8_REST_CASES_Q5_0)                   \
    X8_DEFINE(x8_gemm_q4_k, X8_Q4_K_BYTES, X8_CALL_Q4_K, X8_CMAX_K, X8_REST_CASES_K)                         \
    X8_DEFINE(x8_gemm_q6_k, X8_Q6_K_BYTES, X8_CALL_Q6_K, X8_CMAX_K, X8_REST_CASES_K)                         \
    slm_cpu_x8_fn FN(uint32_t wtype)                                                                         \
    {                                                                                                        \
        switch (wtype) {                                                                                     \
        case SLM_TYPE_Q4_1: return x8_gemm_q4_1;                                                             \
        case SLM_TYPE_Q8_0: return x8_gemm_q8_0;                                                             \
        case SLM_TYPE_Q5_0: return X8_Q5_0_FN;                                                               \
        case SLM_TYPE_Q4_K: return x8_gemm_q4_k;                                                             \
        case SLM_TYPE_Q6_K: return x8_gemm_q6_k;                                                             \
        default: return NULL;                                                                                \
        }                                                                                                    \
    }
