/* test_cuda_mma: the tensor-core instructions of kernels/cuda/mma.cuh against a plain matrix
 * product on random tiles: under the SIMT emulator their twins, on a GPU (test_cuda_mma_gpu) the
 * real mma.sync. Each lane gathers its fragments from the PTX ISA's per-element tables
 * (tests/cuda_mma_kernels.cu), so a twin that indexes the registers differently fails here.
 * - s8 m16n8k32 and m16n8k16: d == a b + c exactly, on 37 tiles (two warps a block, so the
 *   per-warp staging of the twins is exercised), with extreme values (-128, 127) on two tiles and
 *   an accumulator near 2^30;
 * - f16 m16n8k16 with f32 accumulation: within 1e-5 of the product summed in double (|a b| <= 1,
 *   k = 16: the hardware's internal order moves the sum by at most a few ulp of 16). */
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

static void check_f16(void)
{
    const int K = 16;
    std::vector<uint16_t> a((size_t)TILES * 16 * K), b((size_t)TILES * 8 * K);
    std::vector<float> af(a.size()), bf(b.size()), c((size_t)TILES * 128);
    for (size_t i = 0; i < a.size(); i++) {
        a[i] = __half_as_ushort(__float2half(frand()));
        af[i] = __half2float(__ushort_as_half(a[i]));
    }
    for (size_t i = 0; i < b.size(); i++) {
        b[i] = __half_as_ushort(__float2half(frand()));
        bf[i] = __half2float(__ushort_as_half(b[i]));
    }
    for (auto &v : c) v = 4.0f * frand();
    dev_buf<uint16_t> da(a), db(b);
    dev_buf<float> dc(c), dd((size_t)TILES * 128);
    RC_OK(mma_test_f16_k16(da.p, db.p, dc.p, dd.p, TILES));
    std::vector<float> d = dd.download();
    double worst = 0.0;
    for (int tile = 0; tile < TILES; tile++)
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                double s = c[(size_t)tile * 128 + m * 8 + n];
                for (int k = 0; k < K; k++)
                    s += (double)af[((size_t)tile * 16 + m) * K + k] * bf[((size_t)tile * 8 + n) * K + k];
                worst = std::max(worst, std::fabs(d[(size_t)tile * 128 + m * 8 + n] - s));
            }
    CHECK(worst <= 1e-5, "mma_f16_k16: an output is %g from the product in double (bound 1e-5)", worst);
    printf("mma_f16_k16: %d tiles of 16x8x16, worst |d - ref| %.3g\n", TILES, worst);
}

int main(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    check_s8<32>(mma_test_s8_k32, "mma_s8_k32");
    check_s8<16>(mma_test_s8_k16, "mma_s8_k16");
    check_f16();
    if (failures) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    return 0;
}
