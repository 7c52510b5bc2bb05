/* kernels/cpu/ops.c - see ops.h. */
#include "kernels/cpu/ops.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/expf.h"
#include "kernels/cpu/matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SLM_X86 1
#endif

#ifdef SLM_X86
/* SiLU's exp in the layout's form (kernels/cpu/expf.h), 8 at a time; returns how many were done. */
__attribute__((target("avx2,fma,f16c"))) static size_t swiglu_avx2(const float *gate, const float *up, size_t n,
                                                                 int lanes, float *out)
{
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 x = _mm256_sub_ps(_mm256_setzero_ps(), g);
        __m256 e = lanes == 16 ? slm_expf16_avx2(x) : slm_expf8_avx2(x);
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

void slm_cpu_swiglu_lanes(const float *gate, const float *up, size_t n, int lanes, float *out)
{
    size_t i = 0;
#ifdef SLM_X86
    if (slm_cpu_have_avx2()) i = swiglu_avx2(gate, up, n, lanes, out);
#endif
    for (; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + slm_expf_lanes(-g, lanes)) * up[i];   /* the exp of the attention softmax */
    }
}

void slm_cpu_swiglu(const float *gate, const float *up, size_t n, float *out)
{
    slm_cpu_swiglu_lanes(gate, up, n, slm_cpu_lanes(), out);
}

float slm_cpu_expf(float x, int lanes)
{
    return slm_expf_lanes(x, lanes);
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

void slm_cpu_softcap(float *x, size_t n, float cap)
{
    const float inv = 1.0f / cap;
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * cap;
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

#ifdef SLM_X86
/* n F32 to F16 for whole groups of 8 (vcvtps2ph, round to nearest even: slm_f32_to_half's bits). */
__attribute__((target("avx2,fma,f16c"))) static size_t f32_to_f16_avx2(const float *x, slm_half *y, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}
#endif

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
