/*
 * kernels/cpu/attention.c - the CPU attention over the paged f16 cache (declared in ops.h).
 *
 * The arithmetic is that of llama.cpp's CPU attention for one query token (its non-flash path:
 * K q and V p as f16 matrix products, the softmax between), in the lanes of the build being
 * followed (slm_cpu_lanes: L = 16 for its AVX-512 build, 8 for its AVX2 build), so that greedy
 * generation agrees token for token: q is rounded to f16; each score is a dot product in steps
 * of 4L elements into four L-lane accumulators (fused multiply-add), folded (a0 + a2) + (a1 + a3),
 * then the L lanes summed in the build's horizontal tree (reduce_dot); the softmax takes exp in
 * the build's form (expf.h), sums L scores at a time (reduce_sum's tree) into a double, and
 * scales by the float reciprocal; the probabilities are rounded to f16; each output element is
 * again a dot product over positions in that same layout (lane = position mod 4L). Every query,
 * whatever batch it is in, runs this same sequence.
 */
#include "kernels/cpu/ops.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/expf.h"
#include "kernels/cpu/matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SLM_X86 1
#endif

/* Sum of 16 lanes in the tree of a 512-bit horizontal add: halves, quarters, then pairs. */
static inline float reduce16(const float v[16])
{
    float t6[4];
    for (int i = 0; i < 4; i++) t6[i] = (v[i] + v[i + 8]) + (v[i + 4] + v[i + 12]);
    return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

/* Sum of 8 lanes in the tree of the AVX2 build's f16 dot product (GGML_F32x8_REDUCE: halves,
 * then two horizontal adds of neighbours): ((v0 + v4) + (v1 + v5)) + ((v2 + v6) + (v3 + v7)). */
static inline float reduce8_dot(const float v[8])
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Sum of 8 lanes in the tree of the AVX2 build's softmax sum (halves, then the high pair onto
 * the low, then the odd onto the even): ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)). */
static inline float reduce8_sum(const float v[8])
{
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

static inline float reduce_dot(const float *v, int lanes)
{
    return lanes == 16 ? reduce16(v) : reduce8_dot(v);
}

static inline float reduce_sum(const float *v, int lanes)
{
    return lanes == 16 ? reduce16(v) : reduce8_sum(v);
}

/* Lane l of the four L-lane accumulators j of a 4L-step dot product, folded: (a0 + a2) + (a1 + a3). */
static inline float fold4(const float *acc, int l, int lanes)
{
    return (acc[l] + acc[2 * lanes + l]) + (acc[lanes + l] + acc[3 * lanes + l]);
}

/* Dot product of two f16-valued rows (given as floats) in the build's lane order; the elements
 * past the last whole step added one by one in double, as llama.cpp's tail. */
static float dot_lanes_generic(const float *x, const float *y, int n, int lanes)
{
    int step = 4 * lanes;
    float acc[64] = {0};
    int np = n & ~(step - 1);
    for (int i = 0; i < np; i += step)
        for (int l = 0; l < step; l++) acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    float v[16];
    for (int l = 0; l < lanes; l++) v[l] = fold4(acc, l, lanes);
    double sum = np ? (double)reduce_dot(v, lanes) : 0.0;
    for (int i = np; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

/* The first position t >= first with t % step == lane: where that lane's sum over positions starts. */
static inline int lane_start(int lane, int first, int step)
{
    return lane >= first ? lane : lane + (first - lane + step - 1) / step * step;
}

/* One head on the portable path: the reference every vector path must equal bit for bit.
 * Positions before `first` are masked: their probability is 0, as llama.cpp's -inf mask gives
 * (they are skipped; the sums they would add zeros to are the same).
 * scratch: scores (n_ctx padded to 64), q as f16 values, one key row, acc (4L lanes, head_dim). */
static void attention_head_generic(int lanes, const float *q, int head_dim, float scale, const slm_half *k_pool,
                                   const slm_half *v_pool, const int32_t *blocks, int block_size,
                                   size_t kv_stride, size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
    const int step = 4 * lanes;
    float *scores = scratch;
    float *qh = scores + ((size_t)n_ctx + 63) / 64 * 64;
    float *kf = qh + head_dim;
    float *acc = kf + head_dim;
    for (int i = 0; i < head_dim; i++) qh[i] = slm_half_to_f32(slm_f32_to_half(q[i]));
    float mx = -INFINITY;
    for (int t = first; t < n_ctx; t++) {
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *k = k_pool + row * kv_stride + kv_off;
        for (int i = 0; i < head_dim; i++) kf[i] = slm_half_to_f32(k[i]);
        scores[t] = dot_lanes_generic(kf, qh, head_dim, lanes);
    }
    for (int t = first; t < n_ctx; t++) {
        float s = scores[t];
        s *= scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    /* Softmax: exp in place, the sum L scores at a time (zeros past n_ctx). */
    double sum = 0.0;
    int padded = (n_ctx + lanes - 1) / lanes * lanes;
    for (int t = 0; t < first; t++) scores[t] = 0.0f;
    for (int t = first; t < n_ctx; t++) scores[t] = slm_expf_lanes(scores[t] - mx, lanes);
    for (int t = n_ctx; t < padded; t++) scores[t] = 0.0f;
    for (int t = first / lanes * lanes; t < padded; t += lanes) sum += (double)reduce_sum(scores + t, lanes);
    float inv = (float)(1.0 / sum);
    memset(acc, 0, (size_t)step * (size_t)head_dim * sizeof *acc);
    /* The probabilities, rounded to f16. */
    for (int t = first; t < n_ctx; t++) scores[t] = slm_half_to_f32(slm_f32_to_half(scores[t] * inv));
    for (int t = first; t < n_ctx; t++) {
        float p = scores[t];
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *v = v_pool + row * kv_stride + kv_off;
        float *a = acc + (size_t)(t & (step - 1)) * (size_t)head_dim;
        for (int d = 0; d < head_dim; d++) a[d] = fmaf(slm_half_to_f32(v[d]), p, a[d]);
    }
    /* Each output element: fold the four accumulators, then the L-lane tree. */
    for (int d = 0; d < head_dim; d++) {
        float lane[64], v16[16];
        for (int l = 0; l < step; l++) lane[l] = acc[(size_t)l * (size_t)head_dim + (size_t)d];
        for (int l = 0; l < lanes; l++) v16[l] = fold4(lane, l, lanes);
        out[d] = reduce_dot(v16, lanes);
    }
}

#ifdef SLM_X86
/*
 * The AVX2 path, for the query heads of one KV head at once, in either layout (L, a constant
 * where inlined): each K and V row is converted once for the whole group. Every output element
 * still sees the float operations of attention_head_generic in the same order; only where they
 * happen (which register, which loop) differs.
 */
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
/* Small fixed loops over registers: unrolled, so their arrays stay in registers at -O2. */
#define UNROLL _Pragma("GCC unroll 8")

/* Query heads whose scores are computed together, and whose V accumulators share a pass. */
#define SET_HEADS 3
/* Dims of one V pass: 4 vectors a head, so 3 heads keep 12 accumulators in registers. */
#define V_CHUNK 32

/* The horizontal tree of reduce16 (after its first step) and of reduce8_sum for 8 positions at
 * once: t[i] is position i's 8-lane vector; result lane i = ((t[i]0 + t[i]4) + (t[i]2 + t[i]6))
 * + ((t[i]1 + t[i]5) + (t[i]3 + t[i]7)), the additions (and operand order) of
 * _mm_add_ps(low half, high half), then (x0 + x2), (x1 + x3), then their sum. */
AVX2_FN static inline __m256 hsum8x8(const __m256 t[8])
{
    __m256 u04 = _mm256_add_ps(_mm256_permute2f128_ps(t[0], t[4], 0x20), _mm256_permute2f128_ps(t[0], t[4], 0x31));
    __m256 u15 = _mm256_add_ps(_mm256_permute2f128_ps(t[1], t[5], 0x20), _mm256_permute2f128_ps(t[1], t[5], 0x31));
    __m256 u26 = _mm256_add_ps(_mm256_permute2f128_ps(t[2], t[6], 0x20), _mm256_permute2f128_ps(t[2], t[6], 0x31));
    __m256 u37 = _mm256_add_ps(_mm256_permute2f128_ps(t[3], t[7], 0x20), _mm256_permute2f128_ps(t[3], t[7], 0x31));
    /* (x0 + x2, x1 + x3) of positions 0, 1 | 4, 5 and of 2, 3 | 6, 7 */
    __m256 v0145 = _mm256_add_ps(_mm256_shuffle_ps(u04, u15, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(u04, u15, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 v2367 = _mm256_add_ps(_mm256_shuffle_ps(u26, u37, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(u26, u37, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(v0145, v2367, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(v0145, v2367, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* 16 lanes: the 16 lanes of a 64-step accumulator (p[2j], p[2j+1] = lanes 0-7, 8-15 of
 * accumulator j) folded (a0 + a2) + (a1 + a3), then lanes l and l + 8 added: the first steps of
 * reduce16, leaving hsum8x8's tree. */
AVX2_FN static inline __m256 fold_t3(const __m256 p[8])
{
    __m256 lo = _mm256_add_ps(_mm256_add_ps(p[0], p[4]), _mm256_add_ps(p[2], p[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(p[1], p[5]), _mm256_add_ps(p[3], p[7]));
    return _mm256_add_ps(lo, hi);
}

/* 8 lanes: the four accumulators of a 32-step dot product folded (a0 + a2) + (a1 + a3), lanes 1
 * and 2 (and 5 and 6) swapped, so that hsum8x8's tree is reduce8_dot's. */
AVX2_FN static inline __m256 fold8_t3(const __m256 p[4])
{
    __m256 x = _mm256_add_ps(_mm256_add_ps(p[0], p[2]), _mm256_add_ps(p[1], p[3]));
    return _mm256_permute_ps(x, _MM_SHUFFLE(3, 1, 2, 0));
}

/* fold_t3 of the 64-step dot products of K row k with q (head_dim >= 64 of them). */
AVX2_FN static inline __m256 dot_t3(const slm_half *k, const float *q, int np)
{
    __m256 acc[8];
    UNROLL
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (int i = 0; i < np; i += 64)
        UNROLL
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8 * j))),
                                     _mm256_loadu_ps(q + i + 8 * j), acc[j]);
    return fold_t3(acc);
}

/* fold8_t3 of the 32-step dot products of K row k with each of nh heads' q (qh, hd apart;
 * head_dim >= 32 of them): per head 4 accumulators, acc_j += k[i + 8j ..] * q[i + 8j ..] for
 * i = 0, 32, ..; each K chunk is converted once for all the heads. */
AVX2_FN static inline void dot8_t3_heads(const slm_half *k, const float *qh, size_t hd, int nh, int np, __m256 *out)
{
    __m256 acc[SET_HEADS][4];
    UNROLL
    for (int h = 0; h < nh; h++)
        UNROLL
        for (int j = 0; j < 4; j++) acc[h][j] = _mm256_setzero_ps();
    for (int i = 0; i < np; i += 32) {
        __m256 kv[4];
        UNROLL
        for (int j = 0; j < 4; j++) kv[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8 * j)));
        UNROLL
        for (int h = 0; h < nh; h++)
            UNROLL
            for (int j = 0; j < 4; j++)
                acc[h][j] = _mm256_fmadd_ps(kv[j], _mm256_loadu_ps(qh + (size_t)h * hd + i + 8 * j), acc[h][j]);
    }
    UNROLL
    for (int h = 0; h < nh; h++) out[h] = fold8_t3(acc[h]);
}

/* out[i] = f16-rounded (x[i] * m) for whole groups of 8; returns how many were done (out may be x). */
AVX2_FN static int scale_round_f16_avx2(const float *x, float m, int n, float *out)
{
    int i = 0;
    __m256 vm = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), vm), 0)));
    return i;
}

/* Asks for the cache lines of n bytes at p, into L2. */
AVX2_FN static inline void prefetch_l2(const void *p, size_t n)
{
    const char *c = p;
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch(c + o, 0, 2);   /* 2: prefetcht1 */
    __builtin_prefetch(c + n - 1, 0, 2);
}

/* Scaled scores of NH (<= SET_HEADS, a constant where inlined) heads, qh[h] head_dim apart,
 * scores[h] sp apart, for positions first .. n_ctx - 1 (lanes outside them in the first and last
 * 8 get -inf; those before first rounded down to 8 are not written), and each head's maximum over
 * them; 8 positions at a time. Also asks for the V rows the V pass reads next: their
 * lane order jumps 4L positions at a time, which the hardware does not foresee (K's
 * sequential rows it does: asking for those too was slower). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
scores_set(const int L, const float *qh, const int NH, int hd, float scale, const slm_half *k_pool,
           const slm_half *v_pool, const size_t *rows, int first, int n_ctx, float *scores, size_t sp, float *mx)
{
    int np = hd & ~(4 * L - 1);
    size_t row_bytes = (size_t)hd * sizeof(slm_half);
    const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmx[SET_HEADS];
    UNROLL
    for (int h = 0; h < NH; h++) vmx[h] = ninf;
    for (int t0 = first & ~7; t0 < n_ctx; t0 += 8) {
        int c = n_ctx - t0 < 8 ? n_ctx - t0 : 8;
        for (int i = 0; i < c; i++) prefetch_l2(v_pool + rows[t0 + i], row_bytes);
        __m256 t3[SET_HEADS][8];
        if (np == 0) {
            UNROLL
            for (int h = 0; h < NH; h++)
                UNROLL
                for (int i = 0; i < 8; i++) t3[h][i] = _mm256_setzero_ps();
        } else if (hd == 64) {
            UNROLL
            for (int i = 0; i < 8; i++) {
                /* past n_ctx: position t0's row again, its lanes masked below */
                const slm_half *k = k_pool + rows[t0 + (i < c ? i : 0)];
                __m256 kv[8];
                UNROLL
                for (int j = 0; j < 8; j++) kv[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + 8 * j)));
                UNROLL
                for (int h = 0; h < NH; h++) {
                    const float *q = qh + (size_t)h * 64;
                    if (L == 16) {
                        __m256 p[8];
                        UNROLL
                        for (int j = 0; j < 8; j++) p[j] = _mm256_fmadd_ps(kv[j], _mm256_loadu_ps(q + 8 * j), _mm256_setzero_ps());
                        t3[h][i] = fold_t3(p);
                    } else {
                        __m256 p[4];   /* two 32-steps */
                        UNROLL
                        for (int j = 0; j < 4; j++)
                            p[j] = _mm256_fmadd_ps(kv[4 + j], _mm256_loadu_ps(q + 32 + 8 * j),
                                                   _mm256_fmadd_ps(kv[j], _mm256_loadu_ps(q + 8 * j), _mm256_setzero_ps()));
                        t3[h][i] = fold8_t3(p);
                    }
                }
            }
        } else {
            for (int i = 0; i < 8; i++) {
                const slm_half *k = k_pool + rows[t0 + (i < c ? i : 0)];
                if (L == 16) {
                    UNROLL
                    for (int h = 0; h < NH; h++) t3[h][i] = dot_t3(k, qh + (size_t)h * (size_t)hd, np);
                } else {
                    __m256 o[SET_HEADS];
                    dot8_t3_heads(k, qh, (size_t)hd, NH, np, o);
                    UNROLL
                    for (int h = 0; h < NH; h++) t3[h][i] = o[h];
                }
            }
        }
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first - t0), lane),
                                                              _mm256_cmpgt_epi32(_mm256_set1_epi32(c), lane)));
        UNROLL
        for (int h = 0; h < NH; h++) {
            float *s = scores + (size_t)h * sp + t0;
            __m256 r = hsum8x8(t3[h]);
            if (np < hd) {
                /* the tail past the whole steps, in double after the vector part (none if np == 0) */
                float rs[8];
                _mm256_storeu_ps(rs, r);
                const float *q = qh + (size_t)h * (size_t)hd;
                for (int i = 0; i < c; i++) {
                    const slm_half *k = k_pool + rows[t0 + i];   /* (a masked lane's score is dropped) */
                    double sum = np ? (double)rs[i] : 0.0;
                    for (int d = np; d < hd; d++) sum += (double)(_cvtsh_ss(k[d]) * q[d]);
                    rs[i] = (float)sum;
                }
                r = _mm256_loadu_ps(rs);
            }
            r = _mm256_blendv_ps(ninf, _mm256_mul_ps(r, vscale), keep);
            _mm256_storeu_ps(s, r);
            /* max(r, m) keeps m on ties and NaN, as the scalar `if (s > mx)` */
            vmx[h] = _mm256_max_ps(r, vmx[h]);
        }
    }
    UNROLL
    for (int h = 0; h < NH; h++) {
        float m8[8];
        _mm256_storeu_ps(m8, vmx[h]);
        float m = -INFINITY;
        for (int i = 0; i < 8; i++)
            if (m8[i] > m) m = m8[i];
        mx[h] = m;
    }
}

#define SCORES_FN(L, NH)                                                                                       \
    AVX2_FN static void scores_##L##_##NH(const float *qh, int hd, float scale, const slm_half *k_pool,       \
                                          const slm_half *v_pool, const size_t *rows, int first, int n_ctx,  \
                                          float *scores, size_t sp, float *mx)                               \
    {                                                                                                          \
        scores_set(L, qh, NH, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);                \
    }
SCORES_FN(16, 1)
SCORES_FN(16, 2)
SCORES_FN(16, 3)
SCORES_FN(8, 1)
SCORES_FN(8, 2)
SCORES_FN(8, 3)

/* The scores of nh (1 to SET_HEADS) heads in the layout of L lanes. */
AVX2_FN static void scores_heads(int L, int nh, const float *qh, int hd, float scale, const slm_half *k_pool,
                                 const slm_half *v_pool, const size_t *rows, int first, int n_ctx, float *scores,
                                 size_t sp, float *mx)
{
    if (L == 16) {
        if (nh == 3) scores_16_3(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
        else if (nh == 2) scores_16_2(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
        else scores_16_1(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
    } else {
        if (nh == 3) scores_8_3(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
        else if (nh == 2) scores_8_2(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
        else scores_8_1(qh, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);
    }
}

/* scores[t] = exp(scores[t] - mx) for the whole 8-lane groups; returns how many were done. */
AVX2_FN static int exp_shift_avx2(float *scores, int n, float mx, int L)
{
    int t = 0;
    __m256 vm = _mm256_set1_ps(mx);
    if (L == 16)
        for (; t + 8 <= n; t += 8) _mm256_storeu_ps(scores + t, slm_expf16_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + t), vm)));
    else
        for (; t + 8 <= n; t += 8) _mm256_storeu_ps(scores + t, slm_expf8_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + t), vm)));
    return t;
}

/* Softmax of one head's scaled scores first .. n_ctx - 1 in place, as attention_head_generic:
 * exp, the double sum of reduce_sum over groups of L (eight groups' trees at once; zeros before
 * first), probabilities rounded to f16. scores has room for n_ctx padded to 16. */
AVX2_FN static void softmax_avx2(float *scores, int first, int n_ctx, float mx, int L)
{
    memset(scores, 0, (size_t)first * sizeof *scores);
    int t = first + exp_shift_avx2(scores + first, n_ctx - first, mx, L);
    for (; t < n_ctx; t++) scores[t] = slm_expf_lanes(scores[t] - mx, L);
    int padded = (n_ctx + L - 1) / L * L;
    for (; t < padded; t++) scores[t] = 0.0f;
    double sum = 0.0;
    int g = first / L, ng = padded / L;
    for (; g + 8 <= ng; g += 8) {
        __m256 w[8];
        UNROLL
        for (int i = 0; i < 8; i++) {
            const float *v = scores + (size_t)(g + i) * (size_t)L;
            /* 16 lanes: v[l] + v[l + 8], reduce16's first step; 8 lanes: the group itself */
            w[i] = L == 16 ? _mm256_add_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(v + 8)) : _mm256_loadu_ps(v);
        }
        float r[8];
        _mm256_storeu_ps(r, hsum8x8(w));
        UNROLL
        for (int i = 0; i < 8; i++) sum += (double)r[i];
    }
    for (; g < ng; g++) sum += (double)reduce_sum(scores + (size_t)g * (size_t)L, L);
    float inv = (float)(1.0 / sum);
    t = first + scale_round_f16_avx2(scores + first, inv, n_ctx - first, scores + first);
    for (; t < n_ctx; t++) scores[t] = slm_half_to_f32(slm_f32_to_half(scores[t] * inv));
}

/* out[d] = the L-lane tree (reduce_dot) of the folded accumulators acc[lane][d] (lane rows
 * `stride` apart), for d < n (a multiple of 8). */
AVX2_FN static void reduce_lanes_avx2(const float *acc, size_t stride, int n, float *out, int L)
{
    for (int d = 0; d < n; d += 8) {
        __m256 x[16];
        const float *a = acc + d;
        for (int l = 0; l < L; l++)
            x[l] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a + (size_t)l * stride), _mm256_loadu_ps(a + (size_t)(2 * L + l) * stride)),
                                 _mm256_add_ps(_mm256_loadu_ps(a + (size_t)(L + l) * stride), _mm256_loadu_ps(a + (size_t)(3 * L + l) * stride)));
        __m256 r;
        if (L == 16) {
            __m256 t6[4];
            UNROLL
            for (int i = 0; i < 4; i++) t6[i] = _mm256_add_ps(_mm256_add_ps(x[i], x[i + 8]), _mm256_add_ps(x[i + 4], x[i + 12]));
            r = _mm256_add_ps(_mm256_add_ps(t6[0], t6[2]), _mm256_add_ps(t6[1], t6[3]));
        } else {
            r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x[0], x[4]), _mm256_add_ps(x[1], x[5])),
                              _mm256_add_ps(_mm256_add_ps(x[2], x[6]), _mm256_add_ps(x[3], x[7])));
        }
        _mm256_storeu_ps(out + d, r);
    }
}

/* The `step` (4L) lane accumulators of NH heads over dims [d0, d0 + 8 C) of V: lane l sums
 * v[t][d] * p[h][t] for t = l, l + step, ... (from first on) in ascending order, from zero, as
 * the per-position fmaf of attention_head_generic does. acc: (NH, step, 8 C). */
#define V_LANES_FN(NH, C)                                                                                         \
    AVX2_FN static void v_lanes_##NH##_##C(const slm_half *v_pool, const size_t *rows, int first, int n_ctx,   \
                                           const float *p, size_t sp, int d0, int step, float *acc)           \
    {                                                                                                          \
        for (int l = 0; l < step; l++) {                                                                       \
            __m256 a[NH][C];                                                                                   \
            UNROLL                                                                                             \
            for (int h = 0; h < NH; h++)                                                                       \
                UNROLL                                                                                         \
                for (int c = 0; c < C; c++) a[h][c] = _mm256_setzero_ps();                                     \
            for (int t = lane_start(l, first, step); t < n_ctx; t += step) {                                   \
                const slm_half *v = v_pool + rows[t] + d0;                                                     \
                __m256 pb[NH];                                                                                 \
                UNROLL                                                                                        \
                for (int h = 0; h < NH; h++) pb[h] = _mm256_broadcast_ss(p + (size_t)h * sp + t);             \
                UNROLL                                                                                         \
                for (int c = 0; c < C; c++) {                                                                  \
                    __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 8 * c)));                 \
                    UNROLL                                                                                     \
                    for (int h = 0; h < NH; h++) a[h][c] = _mm256_fmadd_ps(x, pb[h], a[h][c]);                 \
                }                                                                                              \
            }                                                                                                  \
            UNROLL                                                                                             \
            for (int h = 0; h < NH; h++)                                                                       \
                UNROLL                                                                                                       \
                for (int c = 0; c < C; c++) _mm256_storeu_ps(acc + ((size_t)h * (size_t)step + (size_t)l) * (8 * C) + 8 * c, a[h][c]); \
        }                                                                                                      \
    }
V_LANES_FN(1, 4)
V_LANES_FN(2, 4)
V_LANES_FN(3, 4)
V_LANES_FN(1, 1)
V_LANES_FN(2, 1)
V_LANES_FN(3, 1)

/* The group on the AVX2 path in the layout of L lanes; head_dim a multiple of 8. */
AVX2_FN static void attention_group_avx2(int L, const float *q, int n_q, int hd, float scale, const slm_half *k_pool,
                                         const slm_half *v_pool, const int32_t *blocks, int block_size,
                                         size_t kv_stride, size_t kv_off, int first, int n_ctx, float *scratch,
                                         float *out)
{
    const int step = 4 * L;
    size_t sp = ((size_t)n_ctx + 63) / 64 * 64;
    size_t *rows = (size_t *)(void *)scratch;   /* each position's offset in the pools */
    float *scores = scratch + 2 * sp;            /* (n_q, sp) */
    float *qh = scores + (size_t)n_q * sp;       /* (n_q, hd): q as f16 values */
    float *acc = qh + (size_t)n_q * (size_t)hd;  /* (SET_HEADS, step, V_CHUNK) */
    /* Only positions first .. n_ctx - 1 are looked up: before a sliding window's first position the
     * table may hold released blocks (-1, the local pool's; docs/engine.md, "Two pools"). The lanes
     * below first that the 8-position score loop rounds down to read position first's row; they are
     * masked, so the scores do not change. */
    for (int t = first; t < n_ctx; t++)
        rows[t] = ((size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size)) * kv_stride + kv_off;
    for (int t = first & ~7; t < first; t++) rows[t] = rows[first];
    scale_round_f16_avx2(q, 1.0f, n_q * hd, qh);
    for (int h0 = 0; h0 < n_q; h0 += SET_HEADS) {
        int nh = n_q - h0 < SET_HEADS ? n_q - h0 : SET_HEADS;
        float mx[SET_HEADS];
        scores_heads(L, nh, qh + (size_t)h0 * (size_t)hd, hd, scale, k_pool, v_pool, rows, first, n_ctx,
                     scores + (size_t)h0 * sp, sp, mx);
        for (int h = 0; h < nh; h++) softmax_avx2(scores + (size_t)(h0 + h) * sp, first, n_ctx, mx[h], L);
        const float *p = scores + (size_t)h0 * sp;
        size_t head_acc = (size_t)step * V_CHUNK;
        int d0 = 0;
        for (; d0 + V_CHUNK <= hd; d0 += V_CHUNK) {
            if (nh == 3) v_lanes_3_4(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            else if (nh == 2) v_lanes_2_4(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            else v_lanes_1_4(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            for (int h = 0; h < nh; h++)
                reduce_lanes_avx2(acc + (size_t)h * head_acc, V_CHUNK, V_CHUNK, out + (size_t)(h0 + h) * (size_t)hd + d0, L);
        }
        for (; d0 < hd; d0 += 8) {
            if (nh == 3) v_lanes_3_1(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            else if (nh == 2) v_lanes_2_1(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            else v_lanes_1_1(v_pool, rows, first, n_ctx, p, sp, d0, step, acc);
            for (int h = 0; h < nh; h++)
                reduce_lanes_avx2(acc + (size_t)h * (size_t)step * 8, 8, 8, out + (size_t)(h0 + h) * (size_t)hd + d0, L);
        }
    }
}
#endif

size_t slm_cpu_attention_group_scratch(int n_ctx, int head_dim, int n_q)
{
    size_t sp = ((size_t)n_ctx + 63) / 64 * 64, hd = (size_t)head_dim;
    size_t generic = sp + 66 * hd;
    size_t avx2 = 2 * sp + (size_t)n_q * (sp + hd) + (size_t)64 * SET_HEADS * (hd > V_CHUNK ? V_CHUNK : hd);
    size_t n = generic > avx2 ? generic : avx2;
    return (n + 15) / 16 * 16;   /* whole cache lines: per-thread slices stay aligned */
}

size_t slm_cpu_attention_scratch(int n_ctx, int head_dim)
{
    return slm_cpu_attention_group_scratch(n_ctx, head_dim, 1);
}

void slm_cpu_attention_group_generic(int lanes, const float *q, int n_q, int head_dim, float scale,
                                     const slm_half *k_pool, const slm_half *v_pool, const int32_t *blocks,
                                     int block_size, size_t kv_stride, size_t kv_off, int first, int n_ctx,
                                     float *scratch, float *out)
{
    for (int h = 0; h < n_q; h++)
        attention_head_generic(lanes, q + (size_t)h * (size_t)head_dim, head_dim, scale, k_pool, v_pool, blocks,
                               block_size, kv_stride, kv_off, first, n_ctx, scratch,
                               out + (size_t)h * (size_t)head_dim);
}

void slm_cpu_attention_group_lanes(int lanes, const float *q, int n_q, int head_dim, float scale,
                                   const slm_half *k_pool, const slm_half *v_pool, const int32_t *blocks,
                                   int block_size, size_t kv_stride, size_t kv_off, int first, int n_ctx,
                                   float *scratch, float *out)
{
#ifdef SLM_X86
    if (slm_cpu_have_avx2() && head_dim % 8 == 0) {
        attention_group_avx2(lanes, q, n_q, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride, kv_off,
                             first, n_ctx, scratch, out);
        return;
    }
#endif
    slm_cpu_attention_group_generic(lanes, q, n_q, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride,
                                    kv_off, first, n_ctx, scratch, out);
}

void slm_cpu_attention_group(const float *q, int n_q, int head_dim, float scale, const slm_half *k_pool,
                             const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                             size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
    slm_cpu_attention_group_lanes(slm_cpu_lanes(), q, n_q, head_dim, scale, k_pool, v_pool, blocks, block_size,
                                  kv_stride, kv_off, first, n_ctx, scratch, out);
}

void slm_cpu_attention_head(const float *q, int head_dim, float scale, const slm_half *k_pool,
                            const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                            size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
    slm_cpu_attention_group(q, 1, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride, kv_off, first,
                            n_ctx, scratch, out);
}
