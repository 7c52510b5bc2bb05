/* kernels/cpu/ops.c - see ops.h. */
#include "kernels/cpu/ops.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"

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


#ifdef SLM_X86
/* The squares into the SLM_RMSNORM_LANES (32) double lanes on AVX2, lane l taking elements l,
 * l + 32, ... in order as the scalar loop; returns how many elements were done (steps of 32). */
__attribute__((target("avx2,fma,f16c"))) static int rmsnorm_lanes_avx2(const float *x, int dim, double *acc)
{
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
    int i = 0;
    for (; i + 32 <= dim; i += 32)
        for (int j = 0; j < 4; j++) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * j), sq = _mm256_mul_ps(v, v);
            a[2 * j] = _mm256_add_pd(a[2 * j], _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
            a[2 * j + 1] = _mm256_add_pd(a[2 * j + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
        }
    for (int j = 0; j < 8; j++) _mm256_storeu_pd(acc + 4 * j, a[j]);
    return i;
}

/* out = (x * scale) * gamma on 8 lanes; returns how many were done. */
__attribute__((target("avx2,fma,f16c"))) static int rmsnorm_scale_avx2(const float *x, const float *gamma, int dim,
                                                                     float scale, float *out)
{
    int i = 0;
    for (; i + 8 <= dim; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(scale)),
                                                _mm256_loadu_ps(gamma + i)));
    return i;
}
#endif

void slm_cpu_rmsnorm(const float *x, const float *gamma, int dim, float eps, float *out)
{
    /* The squares in float, summed in double as llama.cpp does, but in SLM_RMSNORM_LANES
     * lanes (lane l: elements l, l + 32, ... in order) folded by halves, so that a GPU warp
     * computes the same bits in dim / 32 steps instead of a serial chain of dim (llama.cpp's
     * one chain differs only in the double's last bits, which rarely reach the float scale). */
    double acc[SLM_RMSNORM_LANES] = {0};
    int i = 0;
#ifdef SLM_X86
    _Static_assert(SLM_RMSNORM_LANES == 32, "rmsnorm_lanes_avx2 holds 32 lanes");
    const int avx2 = slm_cpu_have_avx2();
    if (avx2) i = rmsnorm_lanes_avx2(x, dim, acc);
#endif
    for (; i < dim; i++) acc[i % SLM_RMSNORM_LANES] += (double)(x[i] * x[i]);
    for (int w = SLM_RMSNORM_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    double sum = acc[0];
    float scale = 1.0f / sqrtf((float)(sum / dim) + eps);
    i = 0;
#ifdef SLM_X86
    if (avx2) i = rmsnorm_scale_avx2(x, gamma, dim, scale, out);
#endif
    for (; i < dim; i++) out[i] = x[i] * scale * gamma[i];
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

/* ggml's GELU table: the f16 GELU of every f16 x, 0.5x(1 + tanh(kx(1 + ax^2))), which GCC
 * (-march=native, contraction on) compiles with 1 + (ax)x fused: equal to its table for every
 * half (vec-dot-peer.sh). Filled once, on first use, by gelu_table_fill. */
static slm_half gelu_table[1 << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static void gelu_table_fill(void)
{
    const float a = 0.044715f, k = 0.79788456080286535587989211986876f;   /* ggml's GELU_COEF_A, SQRT_2_OVER_PI */
    for (uint32_t h = 0; h < 1u << 16; h++) {
        const float x = slm_half_to_f32((slm_half)h);
        gelu_table[h] = slm_f32_to_half(0.5f * x * (1.0f + tanhf(k * x * fmaf(a * x, x, 1.0f))));
    }
}

#ifdef SLM_X86
/* The table on 8 lanes: F16C's round-to-nearest-even conversion is slm_f32_to_half's. */
__attribute__((target("avx2,fma,f16c"))) static size_t geglu_avx2(const float *gate, const float *up, size_t n,
                                                                float *out)
{
    size_t i = 0;
    const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i);
        uint16_t idx[8], val[8];
        _mm_storeu_si128((__m128i *)idx, _mm256_cvtps_ph(g, _MM_FROUND_TO_NEAREST_INT));
        for (int l = 0; l < 8; l++) val[l] = gelu_table[idx[l]];
        __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)val)), u);
        v = _mm256_blendv_ps(v, _mm256_mul_ps(g, u), _mm256_cmp_ps(g, hi, _CMP_GE_OQ));
        v = _mm256_andnot_ps(_mm256_cmp_ps(g, lo, _CMP_LE_OQ), v);   /* gate <= -10: 0 */
        _mm256_storeu_ps(out + i, v);
    }
    return i;
}
#endif

void slm_cpu_geglu(const float *gate, const float *up, size_t n, float *out)
{
    pthread_once(&gelu_table_once, gelu_table_fill);
    size_t i = 0;
#ifdef SLM_X86
    if (slm_cpu_have_avx2()) i = geglu_avx2(gate, up, n, out);
#endif
    for (; i < n; i++) {
        const float g = gate[i];
        if (g <= -10.0f) out[i] = 0.0f;
        else if (g >= 10.0f) out[i] = g * up[i];
        else out[i] = slm_half_to_f32(gelu_table[slm_f32_to_half(g)]) * up[i];
    }
}

void slm_cpu_add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void slm_cpu_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void slm_cpu_rope_angles(int32_t pos, int rope_dim, float base, const float *factors, float mscale, float *cos_out,
                         float *sin_out)
{
    float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float theta = (float)pos;
    for (int j = 0; j < rope_dim / 2; j++) {
        const float t = factors ? theta / factors[j] : theta;
        cos_out[j] = cosf(t) * mscale;
        sin_out[j] = sinf(t) * mscale;
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

/* The first position t >= first with t % 64 == lane: where that lane's sum over positions starts. */
static inline int lane_start(int lane, int first)
{
    return lane >= first ? lane : lane + (first - lane + 63) / 64 * 64;
}

/* One head on the portable path: the reference every vector path must equal bit for bit.
 * Positions before `first` are masked: their probability is 0, as llama.cpp's -inf mask gives
 * (they are skipped; the sums they would add zeros to are the same).
 * scratch: scores (n_ctx padded to 64), q as f16 values, one key row, acc (64 lanes, head_dim). */
static void attention_head_generic(const float *q, int head_dim, float scale, const slm_half *k_pool,
                                   const slm_half *v_pool, const int32_t *blocks, int block_size,
                                   size_t kv_stride, size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
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
        scores[t] = dot_lanes_generic(kf, qh, head_dim);
    }
    for (int t = first; t < n_ctx; t++) {
        float s = scores[t];
        s *= scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    /* Softmax: exp in place, the sum 16 scores at a time (zeros past n_ctx). */
    double sum = 0.0;
    int padded = (n_ctx + 15) / 16 * 16;
    for (int t = 0; t < first; t++) scores[t] = 0.0f;
    for (int t = first; t < n_ctx; t++) scores[t] = expf_poly(scores[t] - mx);
    for (int t = n_ctx; t < padded; t++) scores[t] = 0.0f;
    for (int t = first / 16 * 16; t < padded; t += 16) sum += (double)reduce16(scores + t);
    float inv = (float)(1.0 / sum);
    memset(acc, 0, (size_t)64 * (size_t)head_dim * sizeof *acc);
    /* The probabilities, rounded to f16. */
    for (int t = first; t < n_ctx; t++) scores[t] = slm_half_to_f32(slm_f32_to_half(scores[t] * inv));
    for (int t = first; t < n_ctx; t++) {
        float p = scores[t];
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *v = v_pool + row * kv_stride + kv_off;
        float *a = acc + (size_t)(t & 63) * (size_t)head_dim;
        for (int d = 0; d < head_dim; d++) a[d] = fmaf(slm_half_to_f32(v[d]), p, a[d]);
    }
    /* Each output element: fold the four accumulators, then the 16-lane tree. */
    for (int d = 0; d < head_dim; d++) {
        float lane[64], v16[16];
        for (int l = 0; l < 64; l++) lane[l] = acc[(size_t)l * (size_t)head_dim + (size_t)d];
        for (int l = 0; l < 16; l++) v16[l] = fold4(lane, l);
        out[d] = reduce16(v16);
    }
}

#ifdef SLM_X86
/*
 * The AVX2 path, for the query heads of one KV head at once: each K and V row is
 * converted once for the whole group. Every output element still sees the float
 * operations of attention_head_generic in the same order; only where they happen
 * (which register, which loop) differs.
 */
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))
/* Small fixed loops over registers: unrolled, so their arrays stay in registers at -O2. */
#define UNROLL _Pragma("GCC unroll 8")

/* Query heads whose scores are computed together, and whose V accumulators share a pass. */
#define SET_HEADS 3
/* Dims of one V pass: 4 vectors a head, so 3 heads keep 12 accumulators in registers. */
#define V_CHUNK 32

/* The horizontal tree of fold_reduce for 8 positions at once: t[i] is position i's
 * 8-lane vector (lanes l and l+4 paired); result lane i = ((t[i]0 + t[i]4) + (t[i]2 + t[i]6))
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

/* The 16 lanes of a 64-step accumulator (p[2j], p[2j+1] = lanes 0-7, 8-15 of accumulator j)
 * folded (a0 + a2) + (a1 + a3), then lanes l and l + 8 added: the first steps of reduce16. */
AVX2_FN static inline __m256 fold_t3(const __m256 p[8])
{
    __m256 lo = _mm256_add_ps(_mm256_add_ps(p[0], p[4]), _mm256_add_ps(p[2], p[6]));
    __m256 hi = _mm256_add_ps(_mm256_add_ps(p[1], p[5]), _mm256_add_ps(p[3], p[7]));
    return _mm256_add_ps(lo, hi);
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
 * lane order jumps 64 positions at a time, which the hardware does not foresee (K's
 * sequential rows it does: asking for those too was slower). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline void
scores_set(const float *qh, const int NH, int hd, float scale, const slm_half *k_pool, const slm_half *v_pool,
           const size_t *rows, int first, int n_ctx, float *scores, size_t sp, float *mx)
{
    int np = hd & ~63;
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
                    __m256 p[8];
                    UNROLL
                    for (int j = 0; j < 8; j++)
                        p[j] = _mm256_fmadd_ps(kv[j], _mm256_loadu_ps(qh + (size_t)h * 64 + 8 * j), _mm256_setzero_ps());
                    t3[h][i] = fold_t3(p);
                }
            }
        } else {
            for (int i = 0; i < 8; i++) {
                const slm_half *k = k_pool + rows[t0 + (i < c ? i : 0)];
                UNROLL
                for (int h = 0; h < NH; h++) t3[h][i] = dot_t3(k, qh + (size_t)h * (size_t)hd, np);
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
                /* the tail past the 64-steps, in double after the vector part (none if np == 0) */
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

#define SCORES_FN(NH)                                                                                          \
    AVX2_FN static void scores_##NH(const float *qh, int hd, float scale, const slm_half *k_pool,            \
                                    const slm_half *v_pool, const size_t *rows, int first, int n_ctx,        \
                                    float *scores, size_t sp, float *mx)                                     \
    {                                                                                                          \
        scores_set(qh, NH, hd, scale, k_pool, v_pool, rows, first, n_ctx, scores, sp, mx);                   \
    }
SCORES_FN(1)
SCORES_FN(2)
SCORES_FN(3)

/* scores[t] = exp(scores[t] - mx) for the whole 8-lane groups; returns how many were done. */
AVX2_FN static int exp_shift_avx2(float *scores, int n, float mx)
{
    int t = 0;
    __m256 vm = _mm256_set1_ps(mx);
    for (; t + 8 <= n; t += 8) _mm256_storeu_ps(scores + t, expf_poly8(_mm256_sub_ps(_mm256_loadu_ps(scores + t), vm)));
    return t;
}

/* Softmax of one head's scaled scores first .. n_ctx - 1 in place, as attention_head_generic:
 * exp, the double sum of reduce16 over groups of 16 (eight groups' trees at once; zeros before
 * first), probabilities rounded to f16. scores has room for n_ctx padded to 16. */
AVX2_FN static void softmax_avx2(float *scores, int first, int n_ctx, float mx)
{
    memset(scores, 0, (size_t)first * sizeof *scores);
    int t = first + exp_shift_avx2(scores + first, n_ctx - first, mx);
    for (; t < n_ctx; t++) scores[t] = expf_poly(scores[t] - mx);
    int padded = (n_ctx + 15) / 16 * 16;
    for (; t < padded; t++) scores[t] = 0.0f;
    double sum = 0.0;
    int g = first / 16, ng = padded / 16;
    for (; g + 8 <= ng; g += 8) {
        __m256 w[8];
        UNROLL
        for (int i = 0; i < 8; i++) {
            const float *v = scores + (size_t)(g + i) * 16;
            w[i] = _mm256_add_ps(_mm256_loadu_ps(v), _mm256_loadu_ps(v + 8));   /* v[l] + v[l + 8] */
        }
        float r[8];
        _mm256_storeu_ps(r, hsum8x8(w));
        UNROLL
        for (int i = 0; i < 8; i++) sum += (double)r[i];
    }
    for (; g < ng; g++) sum += (double)reduce16(scores + (size_t)g * 16);
    float inv = (float)(1.0 / sum);
    t = first + scale_round_f16_avx2(scores + first, inv, n_ctx - first, scores + first);
    for (; t < n_ctx; t++) scores[t] = slm_half_to_f32(slm_f32_to_half(scores[t] * inv));
}

/* out[d] = the 16-lane tree of the folded accumulators acc[lane][d] (lane rows `stride` apart),
 * for d < n (a multiple of 8). */
AVX2_FN static void reduce_lanes_avx2(const float *acc, size_t stride, int n, float *out)
{
    for (int d = 0; d < n; d += 8) {
        __m256 x[16];
        const float *a = acc + d;
        for (int l = 0; l < 16; l++)
            x[l] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(a + (size_t)l * stride), _mm256_loadu_ps(a + (size_t)(32 + l) * stride)),
                                 _mm256_add_ps(_mm256_loadu_ps(a + (size_t)(16 + l) * stride), _mm256_loadu_ps(a + (size_t)(48 + l) * stride)));
        __m256 t6[4];
        UNROLL
        for (int i = 0; i < 4; i++) t6[i] = _mm256_add_ps(_mm256_add_ps(x[i], x[i + 8]), _mm256_add_ps(x[i + 4], x[i + 12]));
        _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_add_ps(t6[0], t6[2]), _mm256_add_ps(t6[1], t6[3])));
    }
}

/* The 64 lane accumulators of NH heads over dims [d0, d0 + 8 C) of V: lane l sums
 * v[t][d] * p[h][t] for t = l, l + 64, ... (from first on) in ascending order, from zero, as the
 * per-position fmaf of attention_head_generic does. acc: (NH, 64, 8 C). */
#define V_LANES_FN(NH, C)                                                                                         \
    AVX2_FN static void v_lanes_##NH##_##C(const slm_half *v_pool, const size_t *rows, int first, int n_ctx,   \
                                           const float *p, size_t sp, int d0, float *acc)                     \
    {                                                                                                          \
        for (int l = 0; l < 64; l++) {                                                                         \
            __m256 a[NH][C];                                                                                   \
            UNROLL                                                                                             \
            for (int h = 0; h < NH; h++)                                                                       \
                UNROLL                                                                                         \
                for (int c = 0; c < C; c++) a[h][c] = _mm256_setzero_ps();                                     \
            for (int t = lane_start(l, first); t < n_ctx; t += 64) {                                           \
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
                for (int c = 0; c < C; c++) _mm256_storeu_ps(acc + ((size_t)h * 64 + (size_t)l) * (8 * C) + 8 * c, a[h][c]); \
        }                                                                                                      \
    }
V_LANES_FN(1, 4)
V_LANES_FN(2, 4)
V_LANES_FN(3, 4)
V_LANES_FN(1, 1)
V_LANES_FN(2, 1)
V_LANES_FN(3, 1)

/* The group on the AVX2 path; head_dim a multiple of 8. */
AVX2_FN static void attention_group_avx2(const float *q, int n_q, int hd, float scale, const slm_half *k_pool,
                                         const slm_half *v_pool, const int32_t *blocks, int block_size,
                                         size_t kv_stride, size_t kv_off, int first, int n_ctx, float *scratch,
                                         float *out)
{
    size_t sp = ((size_t)n_ctx + 63) / 64 * 64;
    size_t *rows = (size_t *)(void *)scratch;   /* each position's offset in the pools */
    float *scores = scratch + 2 * sp;            /* (n_q, sp) */
    float *qh = scores + (size_t)n_q * sp;       /* (n_q, hd): q as f16 values */
    float *acc = qh + (size_t)n_q * (size_t)hd;  /* (SET_HEADS, 64, V_CHUNK) */
    for (int t = 0, b = 0; t < n_ctx; b++)
        for (int r = 0; r < block_size && t < n_ctx; r++, t++)
            rows[t] = ((size_t)blocks[b] * (size_t)block_size + (size_t)r) * kv_stride + kv_off;
    scale_round_f16_avx2(q, 1.0f, n_q * hd, qh);
    for (int h0 = 0; h0 < n_q; h0 += SET_HEADS) {
        int nh = n_q - h0 < SET_HEADS ? n_q - h0 : SET_HEADS;
        float mx[SET_HEADS];
        const float *qs = qh + (size_t)h0 * (size_t)hd;
        float *ss = scores + (size_t)h0 * sp;
        if (nh == 3) scores_3(qs, hd, scale, k_pool, v_pool, rows, first, n_ctx, ss, sp, mx);
        else if (nh == 2) scores_2(qs, hd, scale, k_pool, v_pool, rows, first, n_ctx, ss, sp, mx);
        else scores_1(qs, hd, scale, k_pool, v_pool, rows, first, n_ctx, ss, sp, mx);
        for (int h = 0; h < nh; h++) softmax_avx2(scores + (size_t)(h0 + h) * sp, first, n_ctx, mx[h]);
        const float *p = scores + (size_t)h0 * sp;
        int d0 = 0;
        for (; d0 + V_CHUNK <= hd; d0 += V_CHUNK) {
            if (nh == 3) v_lanes_3_4(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            else if (nh == 2) v_lanes_2_4(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            else v_lanes_1_4(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            for (int h = 0; h < nh; h++)
                reduce_lanes_avx2(acc + (size_t)h * 64 * V_CHUNK, V_CHUNK, V_CHUNK, out + (size_t)(h0 + h) * (size_t)hd + d0);
        }
        for (; d0 < hd; d0 += 8) {
            if (nh == 3) v_lanes_3_1(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            else if (nh == 2) v_lanes_2_1(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            else v_lanes_1_1(v_pool, rows, first, n_ctx, p, sp, d0, acc);
            for (int h = 0; h < nh; h++) reduce_lanes_avx2(acc + (size_t)h * 64 * 8, 8, 8, out + (size_t)(h0 + h) * (size_t)hd + d0);
        }
    }
}

/* n F32 to F16 for whole groups of 8 (vcvtps2ph, round to nearest even: slm_f32_to_half's bits). */
AVX2_FN static size_t f32_to_f16_avx2(const float *x, slm_half *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
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

void slm_cpu_attention_group_generic(const float *q, int n_q, int head_dim, float scale, const slm_half *k_pool,
                                     const slm_half *v_pool, const int32_t *blocks, int block_size,
                                     size_t kv_stride, size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
    for (int h = 0; h < n_q; h++)
        attention_head_generic(q + (size_t)h * (size_t)head_dim, head_dim, scale, k_pool, v_pool, blocks, block_size,
                               kv_stride, kv_off, first, n_ctx, scratch, out + (size_t)h * (size_t)head_dim);
}

void slm_cpu_attention_group(const float *q, int n_q, int head_dim, float scale, const slm_half *k_pool,
                             const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                             size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
#ifdef SLM_X86
    if (slm_cpu_have_avx2() && head_dim % 8 == 0) {
        attention_group_avx2(q, n_q, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride, kv_off, first,
                             n_ctx, scratch, out);
        return;
    }
#endif
    slm_cpu_attention_group_generic(q, n_q, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride, kv_off,
                                    first, n_ctx, scratch, out);
}

void slm_cpu_attention_head(const float *q, int head_dim, float scale, const slm_half *k_pool,
                            const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                            size_t kv_off, int first, int n_ctx, float *scratch, float *out)
{
    slm_cpu_attention_group(q, 1, head_dim, scale, k_pool, v_pool, blocks, block_size, kv_stride, kv_off, first,
                            n_ctx, scratch, out);
}

void slm_cpu_f32_to_f16(const float *x, slm_half *y, size_t n)
{
    size_t i = 0;
#ifdef SLM_X86
    if (slm_cpu_have_avx2()) i = f32_to_f16_avx2(x, y, n);
#endif
    for (; i < n; i++) y[i] = slm_f32_to_half(x[i]);
}

void slm_cpu_f16_to_f32(const slm_half *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = slm_half_to_f32(x[i]);
}
