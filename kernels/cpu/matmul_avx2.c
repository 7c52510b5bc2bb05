/*
 * kernels/cpu/matmul_avx2.c - AVX2+FMA+F16C microkernels for the hot weight types.
 *
 * Compiled with -mavx2 -mfma -mf16c (CMake gives *_avx2.c files those flags) and only
 * called after matmul.c checked the CPU. Each tile computes R weight rows x C tokens;
 * every output element's arithmetic is the same whatever R and C are:
 *   acc (8 float lanes) = fma(float(int32 pair sums of the block), d_w * d_a, acc), block by block,
 *   result = hsum(acc) [+ sum over blocks of m_w * s_a, in block order, for Q4_1].
 * The integer dot of one block is exact (maddubs cannot saturate: |u4 * s8| * 2 < 2^15,
 * |s8 * s8| * 2 < 2^15), so the only rounding is in that fixed float sequence.
 */
#include "kernels/cpu/matmul.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/qunpack.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE float h2f(slm_half h)
{
    return _cvtsh_ss(h);
}

/* Fixed-order horizontal sum: (lo128 + hi128), then pairs, then the last two. */
ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sum of u8 * s8 products, in 8 int32 lanes (pairs, then quads). */
ALWAYS_INLINE __m256i dot_us8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Sum of s8 * s8 products: |x| * (y with x's sign). */
ALWAYS_INLINE __m256i dot_ss8(__m256i x, __m256i y)
{
    return dot_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* The 32 nibbles of a Q4 block as bytes 0..15 in element order (low nibbles first). */
ALWAYS_INLINE __m256i unpack_q4(const uint8_t *qs)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* 0xff in byte e where bit e of x is set (e = 0..31). */
ALWAYS_INLINE __m256i bytes_of_bits(uint32_t x)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* The 32 values 0..31 of a Q5 block in element order: nibbles, bit e of qh as bit 4 of byte e. */
ALWAYS_INLINE __m256i unpack_q5(const uint8_t *qh, const uint8_t *qs)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_or_si256(unpack_q4(qs), _mm256_and_si256(bytes_of_bits(h), _mm256_set1_epi8(0x10)));
}

ALWAYS_INLINE void store(float *y, float v, int accumulate)
{
    *y = accumulate ? *y + v : v;
}

/* ---- Q4_1 x Q8_1 */

ALWAYS_INLINE void tile_q4_1(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a, size_t as, float *y,
                             int64_t ldy, int accumulate, const int R, const int C, const int five)
{
    __m256 acc[4][2];
    float summ[4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            acc[r][c] = _mm256_setzero_ps();
            summ[r][c] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i av[2];
        float ad[2], asum[2];
        for (int c = 0; c < C; c++) {
            const struct slm_block_q8_1 *ab = (const struct slm_block_q8_1 *)(a + c * as) + b;
            av[c] = _mm256_loadu_si256((const __m256i *)ab->qs);
            ad[c] = h2f(ab->d);
            asum[c] = h2f(ab->s);
        }
        for (int r = 0; r < R; r++) {
            slm_half dh, mh;
            __m256i wv;
            if (five) {   /* Q5_1: the same with a fifth bit (values 0..31: maddubs stays exact) */
                const struct slm_block_q5_1 *wb = (const struct slm_block_q5_1 *)(w + r * ws) + b;
                wv = unpack_q5(wb->qh, wb->qs);
                dh = wb->d, mh = wb->m;
            } else {
                const struct slm_block_q4_1 *wb = (const struct slm_block_q4_1 *)(w + r * ws) + b;
                wv = unpack_q4(wb->qs);
                dh = wb->d, mh = wb->m;
            }
            float wd = h2f(dh), wm = h2f(mh);
            for (int c = 0; c < C; c++) {
                __m256 p = _mm256_cvtepi32_ps(dot_us8(wv, av[c]));
                acc[r][c] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * ad[c]), acc[r][c]);
                summ[r][c] = fmaf(wm, asum[c], summ[r][c]);   /* fused, as llama.cpp's build does */
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) store(&y[c * ldy + r], hsum(acc[r][c]) + summ[r][c], accumulate);
}

/* ---- Q4_0 x Q8_0 and Q8_0 x Q8_0: signed weights, no offset term */

ALWAYS_INLINE __m256i load_w_q4_0(const uint8_t *blk)
{
    const struct slm_block_q4_0 *b = (const struct slm_block_q4_0 *)blk;
    return _mm256_sub_epi8(unpack_q4(b->qs), _mm256_set1_epi8(8));
}

ALWAYS_INLINE __m256i load_w_q8_0(const uint8_t *blk)
{
    return _mm256_loadu_si256((const __m256i *)((const struct slm_block_q8_0 *)blk)->qs);
}

ALWAYS_INLINE __m256i load_w_q5_0(const uint8_t *blk)
{
    const struct slm_block_q5_0 *b = (const struct slm_block_q5_0 *)blk;
    return _mm256_sub_epi8(unpack_q5(b->qh, b->qs), _mm256_set1_epi8(16));
}

ALWAYS_INLINE void tile_signed(int64_t nb, const uint8_t *w, size_t ws, size_t wblk, const uint8_t *a, size_t as,
                               float *y, int64_t ldy, int accumulate, const int R, const int C, const int kind)
{
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i av[2];
        float ad[2];
        for (int c = 0; c < C; c++) {
            const struct slm_block_q8_0 *ab = (const struct slm_block_q8_0 *)(a + c * as) + b;
            av[c] = _mm256_loadu_si256((const __m256i *)ab->qs);
            ad[c] = h2f(ab->d);
        }
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * ws + b * wblk;
            __m256i wv = kind == 1 ? load_w_q8_0(blk) : kind == 2 ? load_w_q5_0(blk) : load_w_q4_0(blk);
            slm_half wh;
            memcpy(&wh, blk, sizeof wh);   /* d leads the three block layouts */
            float wd = h2f(wh);
            for (int c = 0; c < C; c++) {
                __m256 p = _mm256_cvtepi32_ps(dot_ss8(wv, av[c]));
                acc[r][c] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd * ad[c]), acc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) store(&y[c * ldy + r], hsum(acc[r][c]), accumulate);
}

/* Instantiates the tile for (R, C) in {4, 1} x {2, 1} and walks a whole nr x nc range; QK elements a block. */
#define DEFINE_TILE(NAME, CALL, QK)                                                                        \
    static void NAME(int64_t k, const void *wp, size_t ws, int nr, const void *ap, size_t as, int nc,    \
                     float *y, int64_t ldy, int accumulate)                                              \
    {                                                                                                    \
        const int64_t nb = k / (QK);                                                                     \
        const uint8_t *w = wp, *a = ap;                                                                  \
        int c = 0;                                                                                       \
        for (; c + 2 <= nc; c += 2) {                                                                    \
            int r = 0;                                                                                   \
            for (; r + 4 <= nr; r += 4) CALL(w + r * ws, a + c * as, y + c * ldy + r, 4, 2);             \
            for (; r < nr; r++) CALL(w + r * ws, a + c * as, y + c * ldy + r, 1, 2);                     \
        }                                                                                                \
        for (; c < nc; c++) {                                                                            \
            int r = 0;                                                                                   \
            for (; r + 4 <= nr; r += 4) CALL(w + r * ws, a + c * as, y + c * ldy + r, 4, 1);             \
            for (; r < nr; r++) CALL(w + r * ws, a + c * as, y + c * ldy + r, 1, 1);                     \
        }                                                                                                \
    }

#define CALL_Q4_1(W, A, Y, R, C) tile_q4_1(nb, W, ws, A, as, Y, ldy, accumulate, R, C, 0)
#define CALL_Q5_1(W, A, Y, R, C) tile_q4_1(nb, W, ws, A, as, Y, ldy, accumulate, R, C, 1)
#define CALL_Q5_0(W, A, Y, R, C) tile_signed(nb, W, ws, sizeof(struct slm_block_q5_0), A, as, Y, ldy, accumulate, R, C, 2)
#define CALL_Q4_0(W, A, Y, R, C) tile_signed(nb, W, ws, sizeof(struct slm_block_q4_0), A, as, Y, ldy, accumulate, R, C, 0)
#define CALL_Q8_0(W, A, Y, R, C) tile_signed(nb, W, ws, sizeof(struct slm_block_q8_0), A, as, Y, ldy, accumulate, R, C, 1)

DEFINE_TILE(gemm_q4_1, CALL_Q4_1, 32)
DEFINE_TILE(gemm_q4_0, CALL_Q4_0, 32)
DEFINE_TILE(gemm_q8_0, CALL_Q8_0, 32)
DEFINE_TILE(gemm_q5_0, CALL_Q5_0, 32)
DEFINE_TILE(gemm_q5_1, CALL_Q5_1, 32)

/* ---- the K-quants against Q8_K, in the float order of vec_dot_ref.c (llama.cpp's AVX2 kernels):
 * the integer sums of a 256-block are exact in int32 whatever the lanes; Q4_K adds the block's
 * total (and its min term) into two fused chains, Q5_K and Q6_K keep 8 lanes (elements 4k..4k+3
 * of each 32-element piece in lane k) as 8 float lanes, summed by hsum at the end. */

ALWAYS_INLINE int hsum_i32(__m256i v)
{
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    return _mm_cvtsi128_si32(t);
}

/* Bit k of every byte of v, moved to bit `to` (k, to <= 7). */
ALWAYS_INLINE __m256i bit_of_bytes(__m256i v, int k, int to)
{
    __m256i b = _mm256_and_si256(_mm256_srli_epi16(v, k), _mm256_set1_epi8(1));
    return _mm256_slli_epi16(b, to);
}

ALWAYS_INLINE void tile_q45_k(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a, size_t as, float *y,
                              int64_t ldy, int accumulate, const int R, const int C, const int five)
{
    const size_t wblk = five ? sizeof(struct slm_block_q5_K) : sizeof(struct slm_block_q4_K);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 accv[4][2];       /* Q5_K: the 8 float lanes */
    float acc[4][2], accm[4][2];   /* Q4_K: the two chains; Q5_K: accm is summs */
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            accv[r][c] = _mm256_setzero_ps();
            acc[r][c] = accm[r][c] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        const struct slm_block_q8_K *ab[2];
        for (int c = 0; c < C; c++) ab[c] = (const struct slm_block_q8_K *)(a + c * as) + b;
        for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * ws + b * wblk;
            slm_half dh, mh;
            memcpy(&dh, blk, 2);
            memcpy(&mh, blk + 2, 2);
            const uint8_t *qs = blk + 4 + SLM_K_SCALE_SIZE + (five ? SLM_QK_K / 8 : 0);
            int sc[8], m[8];
            for (int j = 0; j < 8; j++) slm_k_scale_min(j, blk + 4, &sc[j], &m[j]);
            const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(blk + 4 + SLM_K_SCALE_SIZE))
                                    : _mm256_setzero_si256();
            __m256i iacc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int q = 0; q < 4; q++) {   /* qs chunk q: sub-blocks 2q (low nibbles) and 2q + 1 (high) */
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * q));
                __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
                if (five) {
                    lo = _mm256_or_si256(lo, bit_of_bytes(qh, 2 * q, 4));
                    hi = _mm256_or_si256(hi, bit_of_bytes(qh, 2 * q + 1, 4));
                }
                for (int c = 0; c < C; c++) {
                    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(ab[c]->qs + 64 * q));
                    const __m256i a1 = _mm256_loadu_si256((const __m256i *)(ab[c]->qs + 64 * q + 32));
                    const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16((short)sc[2 * q]));
                    const __m256i p1 =
                        _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16((short)sc[2 * q + 1]));
                    iacc[c] = _mm256_add_epi32(iacc[c], _mm256_add_epi32(p0, p1));
                }
            }
            for (int c = 0; c < C; c++) {
                int summ = 0;
                for (int j = 0; j < 8; j++) summ += m[j] * (ab[c]->bsums[2 * j] + ab[c]->bsums[2 * j + 1]);
                if (five) {
                    const float d = ab[c]->d * h2f(dh), dmin = -ab[c]->d * h2f(mh);
                    accv[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(iacc[c]), accv[r][c]);
                    accm[r][c] = fmaf(dmin, (float)summ, accm[r][c]);
                } else {
                    acc[r][c] = fmaf((float)hsum_i32(iacc[c]), h2f(dh) * ab[c]->d, acc[r][c]);
                    accm[r][c] = fmaf((float)summ, h2f(mh) * ab[c]->d, accm[r][c]);
                }
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++)
            store(&y[c * ldy + r], five ? hsum(accv[r][c]) + accm[r][c] : acc[r][c] - accm[r][c], accumulate);
}

ALWAYS_INLINE void tile_q6_k(int64_t nb, const uint8_t *w, size_t ws, const uint8_t *a, size_t as, float *y,
                             int64_t ldy, int accumulate, const int R, const int C)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(3);
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const struct slm_block_q8_K *ab[2];
        for (int c = 0; c < C; c++) ab[c] = (const struct slm_block_q8_K *)(a + c * as) + b;
        for (int r = 0; r < R; r++) {
            const struct slm_block_q6_K *blk = (const struct slm_block_q6_K *)(w + r * ws) + b;
            __m256i iacc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            for (int h = 0; h < 2; h++) {   /* half h: elements 128h .. 128h + 127 */
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
                for (int q = 0; q < 4; q++) {   /* quarter q: 32 elements, scale groups 8h + 2q, + 1 */
                    const __m256i l = q & 1 ? l1 : l0;
                    const __m256i nib = q >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), low4) : _mm256_and_si256(l, low4);
                    const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * q), two), 4);
                    const __m256i v = _mm256_or_si256(nib, hi);   /* 0..63: q + 32 */
                    const int g = 8 * h + 2 * q;
                    const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(blk->scales[g + 1]), _mm_set1_epi16(blk->scales[g]));
                    for (int c = 0; c < C; c++) {
                        const __m256i av = _mm256_loadu_si256((const __m256i *)(ab[c]->qs + 128 * h + 32 * q));
                        iacc[c] = _mm256_add_epi32(iacc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(v, av), scv));
                    }
                }
            }
            /* the - 32 of every value: lane k loses 32 (bsums[2k] sc[2k] + bsums[2k+1] sc[2k+1]) */
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk->scales));
            const float wd = h2f(blk->d);
            for (int c = 0; c < C; c++) {
                const __m256i bs = _mm256_loadu_si256((const __m256i *)ab[c]->bsums);
                const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
                const __m256 lanes = _mm256_cvtepi32_ps(_mm256_sub_epi32(iacc[c], corr));
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(ab[c]->d * wd), lanes, acc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) store(&y[c * ldy + r], hsum(acc[r][c]), accumulate);
}

#define CALL_Q4_K(W, A, Y, R, C) tile_q45_k(nb, W, ws, A, as, Y, ldy, accumulate, R, C, 0)
#define CALL_Q5_K(W, A, Y, R, C) tile_q45_k(nb, W, ws, A, as, Y, ldy, accumulate, R, C, 1)
#define CALL_Q6_K(W, A, Y, R, C) tile_q6_k(nb, W, ws, A, as, Y, ldy, accumulate, R, C)

DEFINE_TILE(gemm_q4_k, CALL_Q4_K, SLM_QK_K)
DEFINE_TILE(gemm_q5_k, CALL_Q5_K, SLM_QK_K)
DEFINE_TILE(gemm_q6_k, CALL_Q6_K, SLM_QK_K)

slm_cpu_tile_fn slm_cpu_tile_avx2(uint32_t wtype)
{
    switch (wtype) {
    case SLM_TYPE_Q4_1: return gemm_q4_1;
    case SLM_TYPE_Q4_0: return gemm_q4_0;
    case SLM_TYPE_Q8_0: return gemm_q8_0;
    case SLM_TYPE_Q5_0: return gemm_q5_0;
    case SLM_TYPE_Q5_1: return gemm_q5_1;
    case SLM_TYPE_Q4_K: return gemm_q4_k;
    case SLM_TYPE_Q5_K: return gemm_q5_k;
    case SLM_TYPE_Q6_K: return gemm_q6_k;
    default: return NULL;
    }
}

/* ---- activation quantization, bit-exact with slm_cpu_quantize_row (round half to even) */

/* Quantizes 32 floats with scale id into 32 int8 in element order; returns them. */
ALWAYS_INLINE __m256i quant32(const float *x, float id)
{
    __m256 m = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), m);
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    /* packs works per 128-bit lane; the permute restores element order. */
    __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    return _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

ALWAYS_INLINE float absmax32(const float *x)
{
    __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int i = 1; i < 4; i++) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void quant_q8_0(const float *x, void *dst, int64_t k)
{
    struct slm_block_q8_0 *y = dst;
    for (int64_t b = 0; b < k / 32; b++, x += 32) {
        float amax = absmax32(x), d = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = (slm_half)_cvtss_sh(d, 0);
        _mm256_storeu_si256((__m256i *)y[b].qs, quant32(x, id));
    }
}

static void quant_q8_1(const float *x, void *dst, int64_t k)
{
    struct slm_block_q8_1 *y = dst;
    for (int64_t b = 0; b < k / 32; b++, x += 32) {
        float amax = absmax32(x), d = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256i q = quant32(x, id);
        _mm256_storeu_si256((__m256i *)y[b].qs, q);
        /* Sum of the 32 int8 values, exact in int32. */
        __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
        __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        int sum = _mm_cvtsi128_si32(t);
        y[b].d = (slm_half)_cvtss_sh(d, 0);
        y[b].s = (slm_half)_cvtss_sh((float)sum * d, 0);
    }
}

/* Q8_K as q8_K_block: scale from the first element of the largest magnitude (sign kept),
 * round(iscale * x) clamped to 127 (packs saturates: the values are at least -127.x). */
static void quant_q8_K(const float *x, void *dst, int64_t k)
{
    struct slm_block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < k / SLM_QK_K; b++, x += SLM_QK_K) {
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < SLM_QK_K / 8; i++) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
        __m128 s = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        s = _mm_max_ss(s, _mm_movehdup_ps(s));
        const float amax = _mm_cvtss_f32(s);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0.0f;
        for (int i = 0; i < SLM_QK_K / 8; i++) {
            int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) {
                max = x[8 * i + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        for (int i = 0; i < SLM_QK_K / 32; i++) {
            const __m256i q = quant32(x + 32 * i, iscale);
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * i), q);
            /* the two 16-element sums: quads of the int8 values, then 4 quads */
            __m256i quads = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
            quads = _mm256_hadd_epi32(quads, quads);
            quads = _mm256_hadd_epi32(quads, quads);
            y[b].bsums[2 * i] = (int16_t)_mm256_cvtsi256_si32(quads);
            y[b].bsums[2 * i + 1] = (int16_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(quads, 1));
        }
        y[b].d = 1.0f / iscale;
    }
}

slm_cpu_quant_fn slm_cpu_quant_avx2(uint32_t act_type)
{
    switch (act_type) {
    case SLM_TYPE_Q8_0: return quant_q8_0;
    case SLM_TYPE_Q8_1: return quant_q8_1;
    case SLM_TYPE_Q8_K: return quant_q8_K;
    default: return NULL;
    }
}

/* ---- X8-layout tiles (matmul_x8.h) without VNNI: maddubs then madd give the exact
 * sums of 4 products (|u4 * s8| * 2 < 2^15). Q8_0: |q| * (a with q's sign) keeps maddubs
 * exact (at most 2 * 128 * 127 = 32512).
 * One token per tile: the 8 group accumulators of a row already take 8 registers. Q5_0 takes 8,
 * Q4_K and Q6_K 4: their unpacking costs more than the accumulators spilled to the stack (64
 * tokens, one thread: Q5_0 1.3x faster with 4 than with 1, 1.07x with 8 than with 4; Q4_K, Q6_K
 * 1.06x, 1.15x faster with 4 than with 2, Q4_K 0.92x with 8). */
#define X8_CMAX 1
#define X8_CMAX_Q5_0 8
#define X8_CMAX_K 4
#define q4_sum4(u, s) dot_us8((u), (s))

#define q8_sum4(abs_w, w, s) dot_us8((abs_w), _mm256_sign_epi8((s), (w)))
/* Q5_0 from its stored values (0..31): maddubs stays exact (2 * 31 * 127 < 2^15) and the -16
 * offset is an integer add, which the CPU may run on a port the multiplies leave free (the
 * vpsignb it replaces may not). */
#define q5_sum4(m, u, s) _mm256_add_epi32(_mm256_set1_epi32(m), dot_us8((u), (s)))

/* Q5_0's entry: x8u_gemm_q5_0 (below), which hands fewer than X8U_MIN_TOKENS to x8_gemm_q5_0. */
#define X8_Q5_0_FN x8u_gemm_q5_0
static void x8u_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                          const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate);
static void x8_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                         const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate);

#include "kernels/cpu/matmul_x8.h"

#define X8_REST_CASES X8_CASES_0
#define X8_REST_CASES_Q5_0 X8_CASES_7
#define X8_REST_CASES_K X8_CASES_3

/*
 * Q5_0 for many tokens: a group's weights are unpacked once for up to X8U_TOKENS tokens, X8U_SEG
 * blocks at a time, into a buffer that stays in L1; then each token runs over them with its 8
 * group accumulators in registers. The 8-token tile of matmul_x8.h keeps 64 accumulators, which
 * live on the stack, and unpacks once per 8 tokens. Each lane's arithmetic is x8_q5_0's (the same
 * bits): the accumulators of a token pass from one segment to the next unchanged.
 */
#define X8U_MIN_TOKENS 8
#define X8U_TOKENS 32
#define X8U_SEG 64

static void x8u_gemm_q5_0(int64_t nb, const void *wp, int n_groups, const void *ap, size_t as,
                          const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate)
{
    if (nc < X8U_MIN_TOKENS) {
        x8_gemm_q5_0(nb, wp, n_groups, ap, as, sc, nc, y, ldy, accumulate);
        return;
    }
    const uint8_t *a = ap;
    const size_t gs = (size_t)nb * X8_Q5_0_BYTES;
    __m256i u[X8U_SEG][8];      /* the unpacked values of a segment's blocks, group k of 4 in u[b][k] */
    __m256 dw[X8U_SEG];         /* their 8 rows' scales */
    __m256 held[X8U_TOKENS][8]; /* each token's accumulators between segments */
    for (int g = 0; g < n_groups; g++) {
        const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;
        float *yg = y + 8 * g;
        for (int c0 = 0; c0 < nc; c0 += X8U_TOKENS) {
            const int ct = nc - c0 < X8U_TOKENS ? nc - c0 : X8U_TOKENS;
            for (int64_t b0 = 0; b0 < nb; b0 += X8U_SEG) {
                const int bs = nb - b0 < X8U_SEG ? (int)(nb - b0) : X8U_SEG;
                for (int b = 0; b < bs; b++) {
                    const uint8_t *wb = wg + (size_t)(b0 + b) * X8_Q5_0_BYTES;
                    if (c0 == 0) x8_prefetch(wb, X8_Q5_0_BYTES);
                    dw[b] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)wb));
                    const __m256i qh = _mm256_loadu_si256((const __m256i *)(wb + 16));
#pragma GCC unroll 4
                    for (int t = 0; t < 4; t++) x8_q5_0_values(wb, qh, t, &u[b][t], &u[b][4 + t]);
                }
                for (int c = 0; c < ct; c++) {
                    const struct slm_cpu_act_scale *s = sc + (size_t)(c0 + c) * (size_t)nb + b0;
                    const struct slm_block_q8_0 *ab = (const struct slm_block_q8_0 *)(a + (size_t)(c0 + c) * as) + b0;
                    __m256 acc[8];
#pragma GCC unroll 8
                    for (int k = 0; k < 8; k++) acc[k] = b0 ? held[c][k] : _mm256_setzero_ps();
                    for (int b = 0; b < bs; b++) {
                        const __m256 scale = _mm256_mul_ps(dw[b], _mm256_set1_ps(s[b].d));
#pragma GCC unroll 4
                        for (int t = 0; t < 4; t++) {
                            __m256 flo = _mm256_cvtepi32_ps(q5_sum4(s[b].m16[t], u[b][t], x8_bcast4(ab[b].qs + 4 * t)));
                            __m256 fhi = _mm256_cvtepi32_ps(
                                q5_sum4(s[b].m16[4 + t], u[b][4 + t], x8_bcast4(ab[b].qs + 16 + 4 * t)));
                            acc[t] = _mm256_fmadd_ps(flo, scale, acc[t]);
                            acc[4 + t] = _mm256_fmadd_ps(fhi, scale, acc[4 + t]);
                        }
                    }
                    if (b0 + bs < nb) {
#pragma GCC unroll 8
                        for (int k = 0; k < 8; k++) held[c][k] = acc[k];
                    } else {
                        x8_store(yg + (size_t)(c0 + c) * (size_t)ldy, acc, _mm256_setzero_ps(), accumulate);
                    }
                }
            }
        }
    }
}
X8_DEFINE_TIER(slm_cpu_x8_avx2)
