/* test_cuda_mma: the tensor-core instructions of kernels/cuda/mma.cuh against a plain matrix
 * product on random tiles: under the SIMT emulator their twins, on a GPU (test_cuda_mma_gpu) the
 * real mma.sync. Each lane gathers its fragments from the PTX ISA's per-element tables
 * (tests/cuda_mma_kernels.cu), so a twin that indexes the registers differently fails here.
 * - s8 m16n8k32 and m16n8k16: d == a b + c exactly, on 37 tiles (two warps a block, so the
 *   per-warp staging of the twins is exercised), with extreme values (-128, 127) on two tiles and
 *   an accumulator near 2^30;
 * - f16 and bf16 m16n8k16 with f32 accumulation: within 1e-5 of the product summed in double
 *   (|a b| <= 1, k = 16: the hardware's internal order moves the sum by at most a few ulp of 16);
 *   bf16 also with operands up to 2^100 apart in size (f16 cannot hold them), relative to the
 *   sum of |a b|. */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"
extern "C" {
#include "kernels/cpu/dequant.h"
}
#include "tests/cuda_check.h"
#include "tests/cuda_mma_kernels.h"
#include "tests/rng.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/cuda_weights.h"

#define TILES 37

template <int K> static void check_s8(int (*fn)(const int8_t *, const int8_t *, const int *, int *, int), const char *name)
{
    std::vector<int8_t> a((size_t)TILES * 16 * K), b((size_t)TILES * 8 * K);
    std::vector<int> c((size_t)TILES * 128);
    for (auto &v : a) v = (int8_t)(rnd() & 0xff);
    for (auto &v : b) v = (int8_t)(rnd() & 0xff);
    for (auto &v : c) v = (int)(rnd() % 2000001) - 1000000;
    for (int i = 0; i < 16 * K; i++) a[(size_t)3 * 16 * K + i] = -128, a[(size_t)5 * 16 * K + i] = 127;
    for (int i = 0; i < 8 * K; i++) b[(size_t)3 * 8 * K + i] = -128, b[(size_t)5 * 8 * K + i] = -128;
    c[(size_t)5 * 128 + 7] = (1 << 30) - 1;
    dev_buf<int8_t> da(a), db(b);
    dev_buf<int> dc(c), dd((size_t)TILES * 128);
    RC_OK(fn(da.p, db.p, dc.p, dd.p, TILES));
    std::vector<int> d = dd.download();
    int bad = 0;
    for (int tile = 0; tile < TILES; tile++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                int64_t s = c[(size_t)tile * 128 + m * 8 + n];
                for (int k = 0; k < K; k++)
                    s += (int64_t)a[((size_t)tile * 16 + m) * K + k] * b[((size_t)tile * 8 + n) * K + k];
                const int got = d[(size_t)tile * 128 + m * 8 + n];
                if (got != (int)s && bad++ < 5)
                    fprintf(stderr, "%s: tile %d (%d, %d): got %d, want %lld\n", name, tile, m, n, got, (long long)s);
            }
    CHECK(bad == 0, "%s: %d of %d outputs differ from the plain product", name, bad, TILES * 128);
    if (bad == 0) printf("%s: %d tiles of 16x8x%d exact\n", name, TILES, K);
}

/* f16 (BF false) or bf16 bits of v, and their value */
static uint16_t to_16bit(bool bf, float v)
{
    return bf ? slm_f32_to_bf16(v) : slm_f32_to_half(v);
}
static float of_16bit(bool bf, uint16_t h)
{
    return bf ? slm_bf16_to_f32(h) : slm_half_to_f32(h);
}

/* wide: bf16 operands scaled by 2^e, e in [-50, 50] (bf16 has f32's exponent range) */
static void check_16bit(bool bf, bool wide)
{
    const int K = 16;
    const char *name = bf ? "mma_bf16_k16" : "mma_f16_k16";
    std::vector<uint16_t> a((size_t)TILES * 16 * K), b((size_t)TILES * 8 * K);
    std::vector<float> af(a.size()), bf_(b.size()), c((size_t)TILES * 128);
    for (size_t i = 0; i < a.size(); i++) {
        a[i] = to_16bit(bf, wide ? ldexpf(frand(), (int)(rnd() % 101) - 50) : frand());
        af[i] = of_16bit(bf, a[i]);
    }
    for (size_t i = 0; i < b.size(); i++) {
        b[i] = to_16bit(bf, wide ? ldexpf(frand(), (int)(rnd() % 101) - 50) : frand());
        bf_[i] = of_16bit(bf, b[i]);
    }
    for (auto &v : c) v = wide ? 0.0f : 4.0f * frand();
    dev_buf<uint16_t> da(a), db(b);
    dev_buf<float> dc(c), dd((size_t)TILES * 128);
    RC_OK((bf ? mma_test_bf16_k16 : mma_test_f16_k16)(da.p, db.p, dc.p, dd.p, TILES));
    std::vector<float> d = dd.download();
    double worst = 0.0;
    for (int tile = 0; tile < TILES; tile++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                double s = c[(size_t)tile * 128 + m * 8 + n], mag = std::fabs(s);
                for (int k = 0; k < K; k++) {
                    const double p = (double)af[((size_t)tile * 16 + m) * K + k] * bf_[((size_t)tile * 8 + n) * K + k];
                    s += p;
                    mag += std::fabs(p);
                }
                const double e = std::fabs(d[(size_t)tile * 128 + m * 8 + n] - s);
                worst = std::max(worst, wide ? (mag > 0 ? e / mag : e) : e);
            }
    CHECK(worst <= 1e-5, "%s%s: an output is %g from the product in double (bound 1e-5)", name, wide ? " (wide)" : "",
          worst);
    printf("%s: %d tiles of 16x8x16, worst |d - ref|%s %.3g\n", name, TILES, wide ? " / sum |a b|" : "", worst);
}

/* slm_mma::dot_float and small_float (the MMQ's dots and K-quant scales read as floats without a
 * conversion): the bits of (float)v for every v of |v| <= 65,536 and for the ends of their ranges,
 * the largest dot of 32 int8 products (32 x 128 x 128) and 2^22 - 1; small_float for 0 .. 65,535
 * and up to 2^23 - 1. */
static void check_s32_float(bool small)
{
    std::vector<int> v;
    if (small) {
        for (int i = 0; i < 65536; i++) v.push_back(i);
        for (int e : {(1 << 22) - 1, 1 << 22, (1 << 23) - 2, (1 << 23) - 1}) v.push_back(e);
    } else {
        for (int i = -65536; i <= 65536; i++) v.push_back(i);
        for (int e : {524288, 520192, (1 << 22) - 1, (1 << 22) - 2, 1 << 21}) v.push_back(e), v.push_back(-e);
    }
    for (int i = 0; i < 4096; i++) v.push_back(small ? (int)(rnd() & 0x7fffff) : (int)(rnd() % 8388607) - 4194303);
    dev_buf<int> dv(v);
    dev_buf<float> df(v.size());
    RC_OK(mma_test_s32_float(dv.p, df.p, (int)v.size(), small));
    std::vector<float> f = df.download();
    int bad = 0;
    for (size_t i = 0; i < v.size(); i++) {
        const float want = (float)v[i];
        if (memcmp(&f[i], &want, sizeof want) && bad++ < 5)
            fprintf(stderr, "%s(%d): got %.9g, want %.9g\n", small ? "small_float" : "dot_float", v[i], (double)f[i],
                    (double)want);
    }
    CHECK(bad == 0, "%s: %d of %zu values not the bits of (float)v", small ? "small_float" : "dot_float", bad, v.size());
    if (bad == 0) printf("%s: %zu values, the bits of (float)v\n", small ? "small_float" : "dot_float", v.size());
}

int main(void)
{
    if (!cuda_device_or_skip()) return 77;
    check_s8<32>(mma_test_s8_k32, "mma_s8_k32");
    check_s8<16>(mma_test_s8_k16, "mma_s8_k16");
    check_16bit(false, false);
    check_16bit(true, false);
    check_16bit(true, true);
    check_s32_float(false);
    check_s32_float(true);
    if (failures) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    return 0;
}
