/* test_cuda_mmf: the F16 / BF16 matmul on tensor cores of kernels/cuda/mmf.cu (slm_cuda_mmf) under
 * the SIMT emulator, its mma.sync through the twins of kernels/cuda/mma.cuh (and on a GPU as
 * test_cuda_mmf_gpu, the real instructions):
 * - against a float64 reference of the weight and the unrounded x: |y - ref| <= (u + c) sum |w x| +
 *   2^-24 |y0| (accumulate), u the rounding of x to the weight's type (2^-11 for f16, 2^-8 for
 *   bf16, plus the f16 subnormal step 2^-25 sum |w|), c = (K16 / F + F + 1) 2^-22 the f32
 *   accumulation (a chain of K16 / F mma steps, each at most 2 ulp of sum |w x| with the hardware's
 *   own rounding, then F - 1 fold adds); and, tighter, against the float64 dot of the weight with x
 *   rounded to the type (c alone): the bound and the worst ratio to it are printed;
 * - shapes: rows 67, 35, 19 and 130 (not multiples of 16), cols 16, 48, 576 (SmolLM2), 640 (Gemma
 *   3), 2048 (K16 = 1, 3, 36, 40, 128: F = 1, 2, 4), n = 1, 9, 37, store and accumulate; a token of
 *   all zeros and one 40x larger than the rest;
 * - batch invariance: each of 40 tokens alone (n = 1), then n = 1..40 with the tokens rotated by n
 *   (a token at every slot, both the 8-token and the 32-token blocks): identical bits;
 * - refusals (-EINVAL): a type other than F16 / BF16, cols not a multiple of 16, rows or n out of
 *   range, NULL or misaligned pointers, and (emulated) buffers smaller than the arguments say. */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"

extern "C" {
#include "kernels/cpu/dequant.h"
}
#include "tests/cuda_check.h"
#include "tests/rng.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/cuda_weights.h"

static uint16_t to_16bit(uint32_t type, float v)
{
    return type == SLM_TYPE_BF16 ? slm_f32_to_bf16(v) : slm_f32_to_half(v);
}
static float of_16bit(uint32_t type, uint16_t h)
{
    return type == SLM_TYPE_BF16 ? slm_bf16_to_f32(h) : slm_half_to_f32(h);
}

static int groups_of(int64_t cols)
{
    const int64_t k16 = cols / 16;
    return k16 >= 4 ? 4 : k16 >= 2 ? 2 : 1;
}

/* n tokens of cols: scales 0.05..3; token 2 all zeros and token 4 forty times larger, where n has them */
static std::vector<float> tokens(int n, int64_t cols)
{
    std::vector<float> x((size_t)n * (size_t)cols);
    for (int t = 0; t < n; t++) {
        const float scale = t == 4 ? 40.0f : rand_range(0.05f, 3.0f);
        for (int64_t c = 0; c < cols; c++) x[(size_t)t * (size_t)cols + (size_t)c] = t == 2 ? 0.0f : scale * frand();
    }
    return x;
}

static double worst_ratio, worst_tight_ratio;

static void check_accuracy(uint32_t type, int64_t rows, int64_t cols, int n, int accumulate)
{
    std::vector<uint16_t> w((size_t)rows * (size_t)cols);
    std::vector<float> wf(w.size());
    for (size_t i = 0; i < w.size(); i++) {
        w[i] = to_16bit(type, 0.05f * frand());
        wf[i] = of_16bit(type, w[i]);
    }
    const std::vector<float> x = tokens(n, cols);
    std::vector<float> y0((size_t)n * (size_t)rows);
    for (auto &v : y0) v = accumulate ? 2.0f * frand() : 0.0f;
    dev_buf<uint16_t> dw(w);
    dev_buf<float> dx(x), dy((size_t)n * (size_t)rows);
    if (accumulate) dy.upload(y0);
    RC_OK(slm_cuda_mmf(type, dw.p, rows, cols, dx.p, n, dy.p, accumulate, nullptr));
    const std::vector<float> y = dy.download();
    const double u = type == SLM_TYPE_BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    const double c = (double)(cols / 16 / groups_of(cols) + groups_of(cols) + 1) * std::ldexp(1.0, -22);
    int bad = 0;
    double ratio = 0.0, tight = 0.0;
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0.0, ref_r = 0.0, mag = 0.0, mag_r = 0.0, wsum = 0.0;
            for (int64_t k = 0; k < cols; k++) {
                const double wv = wf[(size_t)r * (size_t)cols + (size_t)k], xv = x[(size_t)t * (size_t)cols + (size_t)k];
                const double xr = of_16bit(type, to_16bit(type, (float)xv));
                ref += wv * xv, ref_r += wv * xr;
                mag += std::fabs(wv * xv), mag_r += std::fabs(wv * xr), wsum += std::fabs(wv);
            }
            const size_t i = (size_t)t * (size_t)rows + (size_t)r;
            const double y_0 = y0[i], got = y[i];
            const double bound = (u + c) * mag + std::ldexp(wsum, -25) + std::ldexp(std::fabs(y_0 + ref), -24) + 1e-30;
            const double bound_r = c * mag_r + std::ldexp(std::fabs(y_0 + ref_r), -24) + 1e-30;
            const double e = std::fabs(got - (y_0 + ref)), e_r = std::fabs(got - (y_0 + ref_r));
            ratio = std::max(ratio, e / bound), tight = std::max(tight, e_r / bound_r);
            if ((!(e <= bound) || !(e_r <= bound_r)) && bad++ < 10)
                printf("  token %d row %lld: got %.9g, reference %.9g (bound %.3g), with x rounded %.9g (bound %.3g)\n",
                       t, (long long)r, got, y_0 + ref, bound, y_0 + ref_r, bound_r);
        }
    CHECK(bad == 0, "mmf %s %lld x %lld, n = %d%s: %d outputs out of bounds", tname(type), (long long)rows,
          (long long)cols, n, accumulate ? ", accumulate" : "", bad);
    printf("mmf %s %lld x %lld (F=%d), n = %d%s: worst error / bound %.3f, with x rounded %.3f\n", tname(type),
           (long long)rows, (long long)cols, groups_of(cols), n, accumulate ? ", accumulate" : "", ratio, tight);
    worst_ratio = std::max(worst_ratio, ratio), worst_tight_ratio = std::max(worst_tight_ratio, tight);
}

/* Each token alone, then among 1..N tokens rotated by n: the same bits. */
static void check_invariance(uint32_t type, int64_t rows, int64_t cols)
{
    const int N = 40;
    std::vector<uint16_t> w((size_t)rows * (size_t)cols);
    for (auto &v : w) v = to_16bit(type, 0.05f * frand());
    const std::vector<float> x = tokens(N, cols);
    dev_buf<uint16_t> dw(w);
    dev_buf<float> dx(x), dy1((size_t)rows), dy((size_t)N * (size_t)rows);
    std::vector<float> alone((size_t)N * (size_t)rows);
    for (int t = 0; t < N; t++) {
        RC_OK(slm_cuda_mmf(type, dw.p, rows, cols, dx.p + (size_t)t * (size_t)cols, 1, dy1.p, 0, nullptr));
        const std::vector<float> y = dy1.download();
        std::copy(y.begin(), y.end(), alone.begin() + (ptrdiff_t)((size_t)t * (size_t)rows));
    }
    int bad = 0;
    std::vector<float> xs((size_t)N * (size_t)cols);
    for (int n = 1; n <= N; n++) {
        for (int i = 0; i < n; i++)   /* slot i holds token (i + n) % N */
            std::copy_n(&x[(size_t)((i + n) % N) * (size_t)cols], cols, &xs[(size_t)i * (size_t)cols]);
        dx.upload(xs);
        dy.poison();
        RC_OK(slm_cuda_mmf(type, dw.p, rows, cols, dx.p, n, dy.p, 0, nullptr));
        const std::vector<float> y = dy.download();
        for (int i = 0; i < n; i++) {
            const int tok = (i + n) % N;
            for (int64_t r = 0; r < rows; r++) {
                const float a = alone[(size_t)tok * (size_t)rows + (size_t)r], b = y[(size_t)i * (size_t)rows + (size_t)r];
                if (memcmp(&a, &b, 4) != 0 && bad++ < 10)
                    printf("  n = %d slot %d (token %d) row %lld: alone %.9g, batched %.9g\n", n, i, tok, (long long)r,
                           a, b);
            }
        }
    }
    CHECK(bad == 0, "mmf %s %lld x %lld: %d outputs differ between a token alone and among 1..%d", tname(type),
          (long long)rows, (long long)cols, bad, N);
    if (bad == 0)
        printf("mmf %s %lld x %lld: every token's bits alone = among 1..%d tokens at any slot\n", tname(type),
               (long long)rows, (long long)cols, N);
}

static void check_refusals(void)
{
    const int64_t rows = 16, cols = 64;
    dev_buf<uint16_t> w((size_t)(rows * cols + 2));
    dev_buf<float> x((size_t)(4 * cols + 2)), y((size_t)(4 * rows));
#define REFUSED(call) CHECK((call) == -EINVAL, "%s: expected -EINVAL", #call)
    REFUSED(slm_cuda_mmf(SLM_TYPE_F32, w.p, rows, cols, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_Q8_0, w.p, rows, cols, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, 24, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_BF16, w.p, rows, 8, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, 0, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, 0, cols, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols, x.p, 0, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols, x.p, SLM_CUDA_ACT_MAX_TOKENS + 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, nullptr, rows, cols, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols, nullptr, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols, x.p, 4, nullptr, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p + 1, rows, cols, x.p, 4, y.p, 0, nullptr));
    REFUSED(slm_cuda_mmf(SLM_TYPE_BF16, w.p, rows, cols, x.p + 1, 4, y.p, 0, nullptr));
    if (slm_emu_active()) {
        REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows + 1, cols, x.p, 4, y.p, 0, nullptr));   /* w too small */
        REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols, x.p, 5, y.p, 0, nullptr));       /* x too small */
        REFUSED(slm_cuda_mmf(SLM_TYPE_F16, w.p, rows, cols / 2, x.p, 4, y.p + 1, 0, nullptr));   /* y too small */
    }
#undef REFUSED
}

int main(void)
{
    if (!cuda_device_or_skip()) return 77;
    printf("seed %#llx\n", (unsigned long long)TEST_RNG_SEED);
    for (uint32_t type : {SLM_TYPE_F16, SLM_TYPE_BF16}) {
        check_accuracy(type, 35, 16, 9, 0);
        check_accuracy(type, 19, 48, 37, 1);
        check_accuracy(type, 67, 576, 1, 0);
        check_accuracy(type, 67, 576, 37, 0);
        check_accuracy(type, 130, 640, 9, 1);
        check_accuracy(type, 67, 2048, 9, 0);
        check_invariance(type, 67, 576);
        check_invariance(type, 19, 48);
    }
    check_refusals();
    printf("worst error / bound %.3f; against x rounded to the type %.3f\n", worst_ratio, worst_tight_ratio);
    if (failures) {
        printf("test_cuda_mmf: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_mmf: ok\n");
    return 0;
}
