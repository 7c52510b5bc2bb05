/* test_cuda_layout: the device layout of the quantized weights (kernels/cuda/layout.cu), which
 * the decode GEMV and the device-layout embedding read:
 * - slm_cuda_to_device_layout against a decoder written here from kernels.h's contract, byte
 *   by byte: every GGUF byte where the contract puts it, every other byte zero, for every type
 *   with a device layout, nb % 4 = 0, 1, 2, 3 (tails of 0..3 blocks);
 * - slm_cuda_device_row_bytes' sizes and zeros, slm_cuda_has_device_layout's answers;
 * - the converter's refusals (-EINVAL, nothing written).
 * Host code only (the layout is made on the host at upload); what the kernels read from it is
 * test_cuda_gemv's and test_cuda_ops' (embedding). Random weights from a fixed seed (printed).
 * (These checks lived in test_cuda_matvec_q8, deleted with the CPU-exact integer GEMV.) */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"

extern "C" {
#include "kernels/cpu/dequant.h"
}
#include "tests/cuda_check.h"
#include "tests/rng.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

static const uint32_t qtypes[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1,
                                  SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};

#include "tests/cuda_weights.h"

#define REFUSED(call)                                                                                   \
    do {                                                                                                \
        int rc_ = (call);                                                                               \
        CHECK(rc_ == -EINVAL, "%s: expected -EINVAL, got %d", #call, rc_);                              \
    } while (0)

/* Where byte o of a quad (nin = 4) or of a tail of nin blocks of a 32-element type comes from:
 * block *i of it, byte *at of that GGUF block; false for a padding byte. */
static bool quad_source(uint32_t type, int nin, int o, int *i, int *at)
{
    const bool q5 = type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1;
    const int sb = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1 ? 4 : 2, words = type == SLM_TYPE_Q8_0 ? 8 : 4;
    const int scales_end = nin == 4 ? 16 : (nin * sb + 3) / 4 * 4, qh_end = scales_end + (q5 ? 4 * nin : 0);
    const int quants = (qh_end + 15) / 16 * 16;   /* each block's qs whole from here */
    const int hdr = sb + (q5 ? 4 : 0);   /* the qs of a GGUF block */
    if (o < scales_end) {
        *i = o / sb;
        *at = o % sb;
        return *i < nin;
    }
    if (o < qh_end) {
        *i = (o - scales_end) / 4;
        *at = sb + (o - scales_end) % 4;
        return true;
    }
    if (o < quants || o >= quants + 4 * nin * words) return false;
    *i = (o - quants) / (4 * words);
    *at = hdr + (o - quants) % (4 * words);
    return true;
}

/* The GGUF byte a device-layout byte holds (-1: a padding byte), for any type with a layout. */
static int expected_byte(uint32_t type, const uint8_t *gguf_row, int64_t cols, size_t off)
{
    const int64_t nb = cols / slm_qblock_elems(type);
    const int bb = (int)slm_qblock_bytes(type);
    if (type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K) return gguf_row[off];
    if (type == SLM_TYPE_Q6_K) return off % 224 < 210 ? gguf_row[off / 224 * 210 + off % 224] : -1;
    const size_t quad = type == SLM_TYPE_Q8_0 ? 144 : type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1 ? 96 : 80;
    const size_t full = (size_t)(nb / 4) * quad;
    int i, at;
    if (off < full) {
        if (!quad_source(type, 4, (int)(off % quad), &i, &at)) return -1;
        return gguf_row[(int64_t)(off / quad * 4 + i) * bb + at];
    }
    if (nb % 4 == 0 || !quad_source(type, (int)(nb % 4), (int)(off - full), &i, &at)) return -1;
    return gguf_row[(nb / 4 * 4 + i) * bb + at];
}

static void test_layout(uint32_t type, int64_t rows, int64_t cols)
{
    std::vector<uint8_t> w = rand_weights(type, rows, cols);
    const size_t rb = slm_cuda_row_bytes(type, cols), db = slm_cuda_device_row_bytes(type, cols);
    CHECK(db != 0 && db % 16 == 0, "device row bytes %s cols=%lld: expected a multiple of 16, got %zu", tname(type),
          (long long)cols, db);
    std::vector<uint8_t> dev(rows * db, 0xa5);
    RC_OK(slm_cuda_to_device_layout(type, w.data(), rows, cols, dev.data()));
    int bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (size_t off = 0; off < db; off++) {
            int want = expected_byte(type, &w[r * rb], cols, off);
            int got = dev[r * db + off];
            if (got != (want < 0 ? 0 : want) && bad++ < 10)
                printf("  layout %s cols=%lld row %lld byte %zu: expected 0x%02x%s, got 0x%02x\n", tname(type),
                       (long long)cols, (long long)r, off, want < 0 ? 0 : want, want < 0 ? " (padding)" : "", got);
        }
    CHECK(bad == 0, "layout %s %lldx%lld: expected the contract's bytes, %d of %zu differ", tname(type),
          (long long)rows, (long long)cols, bad, dev.size());
    if (!bad)
        printf("layout %s %lldx%lld: %zu bytes (GGUF %zu) as the contract places them\n", tname(type),
               (long long)rows, (long long)cols, dev.size(), rows * rb);
}

static void test_sizes_and_refusals(void)
{
    CHECK(!slm_cuda_has_device_layout(SLM_TYPE_F32) && !slm_cuda_has_device_layout(SLM_TYPE_F16) &&
              slm_cuda_has_device_layout(SLM_TYPE_Q5_1) && slm_cuda_has_device_layout(SLM_TYPE_Q4_0) &&
              slm_cuda_has_device_layout(SLM_TYPE_Q6_K) && !slm_cuda_has_device_layout(SLM_TYPE_Q8_K),
          "slm_cuda_has_device_layout: expected the eight GEMV types only");
    /* the device layout: sizes, and the converter's refusals */
    /* Q4_0 x 160: a quad (80) and a tail of 1 (4 + 12 of padding + 16), 112; Q4_1 x 576 (SmolLM2):
     * 4 quads and a tail of 2 (8 + 8 + 32), 368; Q5_1 x 224: a quad (96), a tail of 3 (12 + 12 + 8 +
     * 48), 176; Q8_0 x 576: 4 quads (576), a tail of 2 (4 + 12 + 64), 656 */
    CHECK(slm_cuda_device_row_bytes(SLM_TYPE_Q4_0, 160) == 112 && slm_cuda_device_row_bytes(SLM_TYPE_Q4_1, 576) == 368 &&
              slm_cuda_device_row_bytes(SLM_TYPE_Q5_1, 224) == 176 && slm_cuda_device_row_bytes(SLM_TYPE_Q8_0, 576) == 656 &&
              slm_cuda_device_row_bytes(SLM_TYPE_Q4_1, 256) == 160 && slm_cuda_device_row_bytes(SLM_TYPE_Q6_K, 512) == 448 &&
              slm_cuda_device_row_bytes(SLM_TYPE_Q4_K, 256) == 144,
          "slm_cuda_device_row_bytes: a size differs from the contract");
    CHECK(slm_cuda_device_row_bytes(SLM_TYPE_F32, 64) == 0 && slm_cuda_device_row_bytes(SLM_TYPE_Q8_1, 64) == 0 &&
              slm_cuda_device_row_bytes(SLM_TYPE_Q4_0, 48) == 0 && slm_cuda_device_row_bytes(SLM_TYPE_Q6_K, 0) == 0,
          "slm_cuda_device_row_bytes: expected 0 for a type without a device layout or a bad cols");
    {
        std::vector<uint8_t> src(4096, 0), dst(4096, 0x5a);
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_F32, src.data(), 2, 64, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_F16, src.data(), 2, 64, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q8_K, src.data(), 2, 256, dst.data()));
        REFUSED(slm_cuda_to_device_layout(77, src.data(), 2, 64, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q4_0, src.data(), 2, 48, dst.data()));   /* not whole blocks */
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q6_K, src.data(), 1, 300, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q8_0, src.data(), 2, 0, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q8_0, src.data(), 0, 64, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q8_0, nullptr, 2, 64, dst.data()));
        REFUSED(slm_cuda_to_device_layout(SLM_TYPE_Q8_0, src.data(), 2, 64, nullptr));
        CHECK(std::all_of(dst.begin(), dst.end(), [](uint8_t b) { return b == 0x5a; }),
              "a refused conversion: expected nothing written, got bytes changed");
    }
    printf("sizes and refusals: as the contract says\n");
}

int main(void)
{
    printf("seed 0x%016llx\n", (unsigned long long)TEST_RNG_SEED);
    for (uint32_t type : qtypes) {
        if (slm_qblock_elems(type) == SLM_QK_K) {
            test_layout(type, 3, 256 * 3);
        } else {
            for (int nb : {4, 5, 6, 7, 17}) test_layout(type, 3, 32 * nb);   /* nb % 4 = 0, 1, 2, 3 */
        }
    }
    test_sizes_and_refusals();
    if (failures) {
        printf("test_cuda_layout: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_layout: ok\n");
    return 0;
}
