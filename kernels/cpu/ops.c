/* kernels/cpu/ops.c - see ops.h. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "dequant.h"
#include "matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SLM_X86 1
#endif

/* exp(x): 2^n * p(b) with n = round(x / ln 2), b = x - n ln 2 (two-part ln 2), p a
 * degree-5 polynomial; the scheme of ARM's optimized-routines expf, which llama.cpp's
 * vectorised softmax and SiLU use. |error| < 1.5 ulp. */
static inline float ldexp_pow2(int e)
{
    uint32_t bits = e >= -126 ? (uint32_t)(e + 127) << 23 : 1u << (e + 149);   /* normal or subnormal 2^e */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float expf_poly(float x)
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
    return j * ldexp_pow2(e);   /* one rounding, as ldexpf */
}


#ifdef SLM_X86
/* expf_poly on 8 lanes: the same fused operations, so the same bits. */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 expf_poly8(__m256 x)
{
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    __m256 n = _mm256_sub_ps(z, shift);
    __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n), _mm256_set1_ps(126.0f), _CMP_GT_OQ);
    if (_mm256_movemask_ps(big)) {
        float v[8];
        _mm256_storeu_ps(v, x);
        for (int i = 0; i < 8; i++) v[i] = expf_poly(v[i]);
        return _mm256_loadu_ps(v);
    }
    __m256 u = _mm256_mul_ps(b, b);
    __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
}

__attribute__((target("avx2,fma,f16c"))) static size_t swiglu_avx2(const float *gate, const float *up, size_t n,
                                                                 float *out)
{
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = expf_poly8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    return i;
}
#endif


void slm_cpu_rmsnorm(const float *x, const float *gamma, int dim, float eps, float *out)
{
    double sum = 0.0;   /* float64, as llama.cpp accumulates it */
    for (int i = 0; i < dim; i++) sum += (double)(x[i] * x[i]);   /* squares in float, summed in double, as llama.cpp */
    float scale = 1.0f / sqrtf((float)(sum / dim) + eps);
    for (int i = 0; i < dim; i++) out[i] = x[i] * scale * gamma[i];
}

void slm_cpu_swiglu(const float *gate, const float *up, size_t n, float *out)
{
    size_t i = 0;
#ifdef SLM_X86
    if (slm_cpu_have_avx2()) i = swiglu_avx2(gate, up, n, out);
#endif
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf_poly(-g)) * up[i];   /* the exp of the attention softmax, as llama.cpp */
    }
}

void slm_cpu_add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void slm_cpu_rope_angles(int32_t pos, int rope_dim, float base, float *cos_out, float *sin_out)
{
    float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float theta = (float)pos;
    for (int j = 0; j < rope_dim / 2; j++) {
        cos_out[j] = cosf(theta);
        sin_out[j] = sinf(theta);
        theta *= theta_scale;
    }
}

void slm_cpu_rope_apply(float *x, int n_heads, int head_dim, int rope_dim, int layout, const float *cos_t,
                        const float *sin_t)
{
    int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_dim;
        for (int j = 0; j < half; j++) {
            int i0 = layout ? j : 2 * j;
            int i1 = layout ? j + half : 2 * j + 1;
            float a = v[i0], b = v[i1];
            /* One product rounded, the other fused: what llama.cpp's build computes. */
            v[i0] = fmaf(a, cos_t[j], -(b * sin_t[j]));
            v[i1] = fmaf(a, sin_t[j], b * cos_t[j]);
        }
    }
}

/*
 * ---- attention over the paged f16 cache.
 *
 * The arithmetic is that of llama.cpp's CPU attention for one query token (its
 * non-flash path, AVX-512 build), so that greedy generation agrees token for token:
 * q is rounded to f16; each score is a dot product of 64-element steps into four
 * 16-lane accumulators (fused multiply-add), reduced in a fixed tree; the softmax
 * takes exp from the polynomial below, sums 16 scores at a time into a double, and
 * scales by the float reciprocal; the probabilities are rounded to f16; each output
 * element is again a dot product over positions in that same lane layout (lane =
 * position mod 64). Every query, whatever batch it is in, runs this same sequence.
 */

/* Sum of 16 lanes in the tree of a 512-bit horizontal add: halves, quarters, then pairs. */
static inline float reduce16(const float v[16])
{
    float t6[4];
    for (int i = 0; i < 4; i++) t6[i] = (v[i] + v[i + 8]) + (v[i + 4] + v[i + 12]);
    return (t6[0] + t6[2]) + (t6[1] + t6[3]);
}

/* Lane l of the four accumulators j of a 64-step dot product, folded: (a0 + a2) + (a1 + a3). */
static inline float fold4(const float acc[64], int l)
{
    return (acc[l] + acc[32 + l]) + (acc[16 + l] + acc[48 + l]);
}

/* Dot product of two f16-valued rows (given as floats) in llama.cpp's lane order. */
static float dot_lanes_generic(const float *x, const float *y, int n)
{
    float acc[64] = {0};
    int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int l = 0; l < 64; l++) acc[l] = fmaf(x[i + l], y[i + l], acc[l]);
    float v[16];
    for (int l = 0; l < 16; l++) v[l] = fold4(acc, l);
    double sum = np ? (double)reduce16(v) : 0.0;
    for (int i = np; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

#ifdef SLM_X86
/* fold4 then reduce16 of a 64-lane accumulator held as 8 vectors (acc[2j], acc[2j+1] are
 * lanes 0-7 and 8-15 of accumulator j), in vector form: the same additions in the same order. */
__attribute__((target("avx2,fma,f16c"))) static inline float fold_reduce_avx2(const __m256 acc[8])
{
    __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    __m256 t3 = _mm256_add_ps(lo, hi);
    __m128 t6 = _mm_add_ps(_mm256_castps256_ps128(t3), _mm256_extractf128_ps(t3, 1));
    __m128 t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
    return _mm_cvtss_f32(_mm_add_ss(t8, _mm_movehdup_ps(t8)));
}

__attribute__((target("avx2,fma,f16c"))) static float dot_lanes_avx2(const slm_half *k, const float *q, int n)
{
    __m256 acc[8];
    for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    int np = n & ~63;
    for (int i = 0; i < np; i += 64)
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8 * j))),
                                     _mm256_loadu_ps(q + i + 8 * j), acc[j]);
    /* acc[2j], acc[2j+1] are lanes 0-7, 8-15 of accumulator j. */
    float r = fold_reduce_avx2(acc);
    double sum = np ? (double)r : 0.0;
    for (int i = np; i < n; i++) sum += (double)(_cvtsh_ss(k[i]) * q[i]);
    return (float)sum;
}

/* scores[t] = dot_lanes_avx2(K row t, q, 64) for t < n_ctx, with q held in registers. */
__attribute__((target("avx2,fma,f16c"))) static void scores64_avx2(const float *q, const slm_half *k_pool,
                                                                 const int32_t *blocks, int block_size,
                                                                 size_t kv_stride, size_t kv_off, int n_ctx,
                                                                 float *scores)
{
    __m256 qv[8];
    for (int j = 0; j < 8; j++) qv[j] = _mm256_loadu_ps(q + 8 * j);
    for (int t = 0; t < n_ctx; t++) {
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *k = k_pool + row * kv_stride + kv_off;
        __m256 p[8];
        for (int j = 0; j < 8; j++)
            p[j] = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + 8 * j))), qv[j]);
        /* One 64-step: each accumulator lane is one rounded product; then as dot_lanes_avx2. */
        scores[t] = fold_reduce_avx2(p);
    }
}

/* out[i] = f16-rounded (x[i] * m) for whole groups of 8; returns how many were done (out may be x). */
__attribute__((target("avx2,fma,f16c"))) static int scale_round_f16_avx2(const float *x, float m, int n, float *out)
{
    int i = 0;
    __m256 vm = _mm256_set1_ps(m);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), vm), 0)));
    return i;
}

/* acc[lane][d] += v[d] * p for d < hd (lane rows hd apart). */
__attribute__((target("avx2,fma,f16c"))) static void v_accum_avx2(float *acc, const slm_half *v, float p, int hd)
{
    __m256 vp = _mm256_set1_ps(p);
    for (int d = 0; d < hd; d += 8)
        _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + d))), vp,
                                                  _mm256_loadu_ps(acc + d)));
}

/* scores[t] = exp(scores[t] - mx) for the whole 8-lane groups; returns how many were done. */
__attribute__((target("avx2,fma,f16c"))) static int exp_shift_avx2(float *scores, int n, float mx)
{
    int t = 0;
    __m256 vm = _mm256_set1_ps(mx);
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(scores + t, expf_poly8(_mm256_sub_ps(_mm256_loadu_ps(scores + t), vm)));
    return t;
}

/* out[d] = the 16-lane tree of the folded accumulators acc[lane][d], 8 elements at a time. */
__attribute__((target("avx2,fma,f16c"))) static void reduce_lanes_avx2(const float *acc, int hd, float *out)
{
    for (int d = 0; d < hd; d += 8) {
        __m256 x[16];
        for (int l = 0; l < 16; l++) {
            const float *a = acc + d;
            x[l] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a + (size_t)l * hd), _mm256_loadu_ps(a + (size_t)(32 + l) * hd)),
                                 _mm256_add_ps(_mm256_loadu_ps(a + (size_t)(16 + l) * hd), _mm256_loadu_ps(a + (size_t)(48 + l) * hd)));
        }
        __m256 t6[4];
        for (int i = 0; i < 4; i++) t6[i] = _mm256_add_ps(_mm256_add_ps(x[i], x[i + 8]), _mm256_add_ps(x[i + 4], x[i + 12]));
        _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_add_ps(t6[0], t6[2]), _mm256_add_ps(t6[1], t6[3])));
    }
}
#endif


size_t slm_cpu_attention_scratch(int n_ctx, int head_dim)
{
    return ((size_t)n_ctx + 63) / 64 * 64 + 66 * (size_t)head_dim;
}

void slm_cpu_attention_head(const float *q, int head_dim, float scale, const slm_half *k_pool,
                            const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                            size_t kv_off, int n_ctx, float *scratch, float *out)
{
#ifdef SLM_X86
    int fast = slm_cpu_have_avx2() && head_dim % 8 == 0;
#else
    int fast = 0;
#endif
    float *scores = scratch;
    float *qh = scores + ((size_t)n_ctx + 63) / 64 * 64;   /* q rounded to f16 */
    float *kf = qh + head_dim;                              /* one key row as floats */
    float *acc = kf + head_dim;                             /* (64 lanes, head_dim) */
#ifdef SLM_X86
    if (fast) scale_round_f16_avx2(q, 1.0f, head_dim, qh);
    else
#endif
        for (int i = 0; i < head_dim; i++) qh[i] = slm_half_to_f32(slm_f32_to_half(q[i]));
    float mx = -INFINITY;
#ifdef SLM_X86
    if (fast && head_dim == 64) scores64_avx2(qh, k_pool, blocks, block_size, kv_stride, kv_off, n_ctx, scores);
    else
#endif
    for (int t = 0; t < n_ctx; t++) {
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *k = k_pool + row * kv_stride + kv_off;
#ifdef SLM_X86
        if (fast) {
            scores[t] = dot_lanes_avx2(k, qh, head_dim);
            continue;
        }
#endif
        for (int i = 0; i < head_dim; i++) kf[i] = slm_half_to_f32(k[i]);
        scores[t] = dot_lanes_generic(kf, qh, head_dim);
    }
    for (int t = 0; t < n_ctx; t++) {
        float s = scores[t];
        s *= scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    /* Softmax: exp in place, the sum 16 scores at a time (zeros past n_ctx). */
    double sum = 0.0;
    int padded = (n_ctx + 15) / 16 * 16;
    int t0 = 0;
#ifdef SLM_X86
    if (fast) t0 = exp_shift_avx2(scores, n_ctx, mx);
#endif
    for (int t = t0; t < n_ctx; t++) scores[t] = expf_poly(scores[t] - mx);
    for (int t = n_ctx; t < padded; t++) scores[t] = 0.0f;
    for (int t = 0; t < padded; t += 16) sum += (double)reduce16(scores + t);
    float inv = (float)(1.0 / sum);
    memset(acc, 0, (size_t)64 * (size_t)head_dim * sizeof *acc);
    /* The probabilities, rounded to f16. */
    int tp = 0;
#ifdef SLM_X86
    if (fast) tp = scale_round_f16_avx2(scores, inv, n_ctx, scores);
#endif
    for (int t = tp; t < n_ctx; t++) scores[t] = slm_half_to_f32(slm_f32_to_half(scores[t] * inv));
    for (int t = 0; t < n_ctx; t++) {
        float p = scores[t];
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *v = v_pool + row * kv_stride + kv_off;
        float *a = acc + (size_t)(t & 63) * (size_t)head_dim;
#ifdef SLM_X86
        if (fast) {
            v_accum_avx2(a, v, p, head_dim);
            continue;
        }
#endif
        for (int d = 0; d < head_dim; d++) a[d] = fmaf(slm_half_to_f32(v[d]), p, a[d]);
    }
    /* Each output element: fold the four accumulators, then the 16-lane tree. */
#ifdef SLM_X86
    if (fast) {
        reduce_lanes_avx2(acc, head_dim, out);
        return;
    }
#endif
    for (int d = 0; d < head_dim; d++) {
        float lane[64], v16[16];
        for (int l = 0; l < 64; l++) lane[l] = acc[(size_t)l * (size_t)head_dim + (size_t)d];
        for (int l = 0; l < 16; l++) v16[l] = fold4(lane, l);
        out[d] = reduce16(v16);
    }
}

void slm_cpu_f32_to_f16(const float *x, slm_half *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = slm_f32_to_half(x[i]);
}

void slm_cpu_f16_to_f32(const slm_half *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = slm_half_to_f32(x[i]);
}
