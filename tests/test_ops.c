/*
 * tests/test_ops.c - the CPU elementwise ops that have more than one code path.
 *
 * GeGLU (slm_cpu_geglu) reads a table of GELU halves, on 8 lanes where AVX2 runs: every
 * output must be bit-identical with the formula it tabulates (gate rounded to f16, GELU's
 * tanh form with 1 + (ax)x fused, rounded to f16, times up; 0 at or below -10, gate * up at
 * or above 10), for every half as a gate, the halfway points between halves, random floats,
 * and lengths that leave a scalar tail. RMSNorm (slm_cpu_rmsnorm) on 8 lanes: bit-identical with
 * its scalar loops (the squares in 32 double lanes) for every length 1..300 and 640, in place too.
 * Run again under SLM_CPU_KERNELS=generic by CTest.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"

#define TEST_RNG_SEED 0x6a09e667f3bcc909ull
#include "tests/rng.h"

static int failures;

/* The formula the table holds, as slm_cpu_geglu computed it before the table. */
static float geglu_formula(float g, float u)
{
    const float a = 0.044715f, k = 0.79788456080286535587989211986876f;
    if (g <= -10.0f) return 0.0f;
    if (g >= 10.0f) return g * u;
    const float x = slm_half_to_f32(slm_f32_to_half(g));
    const float v = 0.5f * x * (1.0f + tanhf(k * x * fmaf(a * x, x, 1.0f)));
    return slm_half_to_f32(slm_f32_to_half(v)) * u;
}

/* Runs slm_cpu_geglu on n gates and compares every output with the formula's bits. */
static void check_geglu(const float *gate, const float *up, size_t n, const char *what)
{
    float *out = malloc(n * sizeof *out);
    slm_cpu_geglu(gate, up, n, out);
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        float want = geglu_formula(gate[i], up[i]);
        if (isnan(want) && isnan(out[i])) continue;
        if (memcmp(&want, &out[i], 4) != 0) {
            if (shown++ < 10)
                printf("geglu %s: gate %a up %a: expected %a, got %a\n", what, (double)gate[i], (double)up[i],
                       (double)want, (double)out[i]);
            failures++;
        }
    }
    free(out);
}

/* slm_cpu_rmsnorm's arithmetic, scalar. */
static void rmsnorm_scalar(const float *x, const float *gamma, int dim, float eps, float *out)
{
    double acc[SLM_RMSNORM_LANES] = {0};
    for (int i = 0; i < dim; i++) acc[i % SLM_RMSNORM_LANES] += (double)(x[i] * x[i]);
    for (int w = SLM_RMSNORM_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    float scale = 1.0f / sqrtf((float)(acc[0] / dim) + eps);
    for (int i = 0; i < dim; i++) out[i] = x[i] * scale * gamma[i];
}

static void check_rmsnorm(void)
{
    float x[640], g[640], want[640], got[640];
    int bad = 0;
    for (int dim = 1; dim <= 640 && bad < 10; dim = dim == 300 ? 640 : dim + 1) {
        for (int i = 0; i < dim; i++) x[i] = frand() * (float)(1 + dim % 7), g[i] = 1.0f + frand();
        rmsnorm_scalar(x, g, dim, 1e-6f, want);
        slm_cpu_rmsnorm(x, g, dim, 1e-6f, got);
        if (memcmp(want, got, (size_t)dim * 4) != 0) {
            printf("rmsnorm dim %d: differs from the scalar loops\n", dim);
            bad++;
        }
        slm_cpu_rmsnorm(x, g, dim, 1e-6f, x);   /* in place */
        if (memcmp(want, x, (size_t)dim * 4) != 0) {
            printf("rmsnorm dim %d in place: differs from the scalar loops\n", dim);
            bad++;
        }
    }
    failures += bad;
}

int main(void)
{
    printf("kernels: %s\n", slm_cpu_kernels_name());
    size_t n = 1u << 17;
    float *gate = malloc(n * sizeof *gate), *up = malloc(n * sizeof *up);
    for (uint32_t h = 0; h < 1u << 16; h++) {   /* every half, then the halfway points above each */
        gate[h] = slm_half_to_f32((slm_half)h);
        uint32_t bits;
        memcpy(&bits, &gate[h], 4);
        bits += 1u << 12;
        memcpy(&gate[(1u << 16) + h], &bits, 4);
    }
    for (size_t i = 0; i < n; i++) up[i] = frand() * 3.0f;
    check_geglu(gate, up, n, "every half");
    for (size_t i = 0; i < n; i++) gate[i] = frand() * (i % 3 == 0 ? 12.0f : 4.0f);
    for (size_t len = 1; len < 20; len++) check_geglu(gate + len, up, len, "short");
    check_geglu(gate, up, n, "random");
    check_rmsnorm();
    free(gate);
    free(up);
    if (failures) {
        printf("FAIL: %d\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
