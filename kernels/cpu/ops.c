/* kernels/cpu/ops.c - see ops.h. */
#include "ops.h"

#include <math.h>
#include <string.h>

#include "dequant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define SLM_X86 1
#endif

void slm_cpu_rmsnorm(const float *x, const float *gamma, int dim, float eps, float *out)
{
    double sum = 0.0;   /* float64, as llama.cpp accumulates it */
    for (int i = 0; i < dim; i++) sum += (double)x[i] * (double)x[i];
    float scale = 1.0f / sqrtf((float)(sum / dim) + eps);
    for (int i = 0; i < dim; i++) out[i] = x[i] * scale * gamma[i];
}

void slm_cpu_swiglu(const float *gate, const float *up, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
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
            v[i0] = a * cos_t[j] - b * sin_t[j];
            v[i1] = a * sin_t[j] + b * cos_t[j];
        }
    }
}

/* ---- f16 rows: F16C when the CPU has it, else the portable conversion. */

#ifdef SLM_X86
__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const float *q, const slm_half *k, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))),
                              acc);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float r = _mm_cvtss_f32(s);
    for (; i < n; i++) r += q[i] * _cvtsh_ss(k[i]);
    return r;
}

__attribute__((target("avx2,fma,f16c"))) static void axpy_f16_avx2(float *y, float a, const slm_half *x, int n)
{
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * _cvtsh_ss(x[i]);
}
#endif

static float dot_f16_generic(const float *q, const slm_half *k, int n)
{
    float r = 0.0f;
    for (int i = 0; i < n; i++) r += q[i] * slm_half_to_f32(k[i]);
    return r;
}

static void axpy_f16_generic(float *y, float a, const slm_half *x, int n)
{
    for (int i = 0; i < n; i++) y[i] += a * slm_half_to_f32(x[i]);
}

static int have_f16c(void)
{
#ifdef SLM_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
#else
    return 0;
#endif
}

void slm_cpu_attention_head(const float *q, int head_dim, float scale, const slm_half *k_pool,
                            const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                            size_t kv_off, int n_ctx, float *scores, float *out)
{
    int fast = have_f16c();
    float mx = -INFINITY;
    for (int t = 0; t < n_ctx; t++) {
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *k = k_pool + row * kv_stride + kv_off;
#ifdef SLM_X86
        float s = fast ? dot_f16_avx2(q, k, head_dim) : dot_f16_generic(q, k, head_dim);
#else
        float s = dot_f16_generic(q, k, head_dim);
#endif
        s *= scale;
        scores[t] = s;
        if (s > mx) mx = s;
    }
    double sum = 0.0;
    for (int t = 0; t < n_ctx; t++) {
        float e = expf(scores[t] - mx);
        scores[t] = e;
        sum += e;
    }
    memset(out, 0, (size_t)head_dim * sizeof *out);
    for (int t = 0; t < n_ctx; t++) {
        size_t row = (size_t)blocks[t / block_size] * (size_t)block_size + (size_t)(t % block_size);
        const slm_half *v = v_pool + row * kv_stride + kv_off;
#ifdef SLM_X86
        if (fast) axpy_f16_avx2(out, scores[t], v, head_dim);
        else axpy_f16_generic(out, scores[t], v, head_dim);
#else
        axpy_f16_generic(out, scores[t], v, head_dim);
#endif
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < head_dim; i++) out[i] *= inv;
}

void slm_cpu_f32_to_f16(const float *x, slm_half *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = slm_f32_to_half(x[i]);
}

void slm_cpu_f16_to_f32(const slm_half *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = slm_half_to_f32(x[i]);
}
