/* test_cuda_matvec_q8: kernels/cuda/matvec_q8.cu under the SIMT emulator, against the CPU
 * backend's own code path, bit for bit:
 * - slm_cuda_quantize_q8 (Q8_0, Q8_1, Q8_K) against slm_cpu_quantize_row and against
 *   slm_cpu_quantize_acts (the SIMD quantizers the CPU backend runs): every byte equal;
 *   inputs include an all-zero block and a block whose largest |x| appears twice;
 * - slm_cuda_to_device_layout (the device layout of kernels.h) against a decoder written here
 *   from that contract, byte by byte: every GGUF byte where the contract puts it, every other
 *   byte zero, for every type with a device layout, nb % 4 = 0, 1, 2, 3 (tails of 0..3 blocks);
 * - slm_cuda_matvec_q8 for every quantized weight type, the weight converted to the device
 *   layout, against slm_cpu_matmul (what the CPU backend calls, with the weight in the layout
 *   the CPU backend picks: the X8 tiles for Q4_1 / Q8_0 on rows = 64, the row tiles or the
 *   portable kernel on rows = 67), n = 1, 3, 8, 11, 40 (both token-group sizes), accumulate off
 *   (y poisoned with NaN) and on: every float's bits equal; cols = 32 * 5, 32 * 7, 32 * 17,
 *   32 * 18 (tails of 1, 3, 1, 2 blocks), 256 * 3;
 * - slm_cuda_matvec_q8_fused for every type, n = 1, 3, 8, accumulate off and on, odd nb (tails of
 *   1 and 3 blocks; 3 K-quant blocks), one weight and three of different rows (SmolLM2's Q, K, V:
 *   576, 192, 192), against slm_cpu_matmul and against quantize + slm_cuda_matvec_q8: every
 *   float's bits equal;
 * - the launchers' and the converter's refusals (-EINVAL), the fused launcher's included (n > 8,
 *   more weights than 3, x over the shared-memory bound, NULLs, misalignment, a weight smaller
 *   than its cols and rows say).
 * Random inputs from a fixed seed (printed). Every launch runs under the emulator's race
 * check. */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"

extern "C" {
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/threadpool.h"
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

/* Device memory, every byte 0xff (NaN as floats) at allocation. */
#include "tests/cuda_weights.h"

/* Activations (n, cols): each row a random scale (1e-3 .. 30); one all-zero block of 256 and
 * one 256-block whose largest magnitude appears twice, with both signs (the signed max of Q8_K
 * takes the first), when the rows are long enough. */
static std::vector<float> rand_acts(int n, int64_t cols)
{
    std::vector<float> x((size_t)n * (size_t)cols);
    for (int t = 0; t < n; t++) {
        float scale = powf(10.0f, rand_range(-3.0f, 1.5f));
        float *r = &x[(size_t)t * (size_t)cols];
        for (int64_t c = 0; c < cols; c++) r[c] = scale * frand();
        if (cols >= 512 && t % 3 == 1) {
            std::fill(r, r + 256, 0.0f);
            r[256 + 17] = 2.5f * scale;
            r[256 + 200] = -2.5f * scale;
        }
    }
    return x;
}

/* Bits of got against want: the first ten differences, max abs and rel error. */
static void compare_bits(const char *what, const float *got, const float *want, size_t n)
{
    int bad = 0;
    double max_abs = 0, max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], 4) == 0) continue;
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= max_abs)) max_abs = d;   /* NaN counts as the largest */
        double rel = d / std::max(1e-30, fabs((double)want[i]));
        if (!(rel <= max_rel)) max_rel = rel;
        if (bad++ < 10) printf("  %s [%zu]: expected %.9g (%08x), got %.9g (%08x)\n", what, i, want[i],
                               *(const uint32_t *)&want[i], got[i], *(const uint32_t *)&got[i]);
    }
    if (bad) {
        printf("FAIL %s: %d of %zu differ from the CPU backend; max abs %.3g, max rel %.3g\n", what, bad, n, max_abs,
               max_rel);
        failures++;
    }
}

static void test_quantize(uint32_t at, int n, int64_t cols)
{
    std::vector<float> x = rand_acts(n, cols);
    size_t rb = slm_cuda_q8_row_bytes(at, cols);
    std::vector<uint8_t> ref((size_t)n * rb), fast((size_t)n * rb);
    for (int t = 0; t < n; t++)
        CHECK(slm_cpu_quantize_row(at, &x[(size_t)t * cols], &ref[(size_t)t * rb], cols) == 0, "cpu quantize");
    /* the CPU backend's quantizer, which may be SIMD (any weight type of this activation type) */
    uint32_t wt = at == SLM_TYPE_Q8_0 ? SLM_TYPE_Q8_0 : at == SLM_TYPE_Q8_1 ? SLM_TYPE_Q4_1 : SLM_TYPE_Q4_K;
    slm_cpu_quantize_acts(wt, x.data(), n, cols, fast.data());
    dev_buf<float> dx(x);
    dev_buf<uint8_t> dq((size_t)n * rb);
    RC_OK(slm_cuda_quantize_q8(at, dx.p, n, cols, dq.p, nullptr));
    std::vector<uint8_t> got = dq.download();
    int bad = 0, bad_fast = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (got[i] != ref[i] && bad++ < 10)
            printf("  quantize %s n=%d cols=%lld: byte %zu (row %zu, block %zu, offset %zu): expected 0x%02x, got 0x%02x\n",
                   tname(at), n, (long long)cols, i, i / rb, i % rb / slm_qblock_bytes(at), i % rb % slm_qblock_bytes(at),
                   ref[i], got[i]);
        bad_fast += fast[i] != ref[i];
    }
    CHECK(bad == 0, "quantize %s n=%d cols=%lld: expected slm_cpu_quantize_row's bytes, %d of %zu differ", tname(at), n,
          (long long)cols, bad, got.size());
    CHECK(bad_fast == 0, "quantize %s: the CPU backend's quantizer differs from slm_cpu_quantize_row in %d bytes",
          tname(at), bad_fast);
    if (!bad) printf("quantize %s n=%d cols=%lld: %zu bytes identical to slm_cpu_quantize_row\n", tname(at), n,
                     (long long)cols, got.size());
}

/* ---- the device layout, decoded from kernels.h's contract ---- */

/* Where byte o of a quad (nin = 4) or of a tail of nin blocks of a 32-element type comes from:
 * block *i of it, byte *at of that GGUF block; false for a padding byte. */
static bool quad_source(uint32_t type, int nin, int o, int *i, int *at)
{
    const bool q5 = type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1;
    const int sb = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1 ? 4 : 2, words = type == SLM_TYPE_Q8_0 ? 8 : 4;
    const int scales_end = nin == 4 ? 16 : (nin * sb + 3) / 4 * 4, quants = scales_end + (q5 ? 4 * nin : 0);
    const int hdr = sb + (q5 ? 4 : 0);   /* the qs of a GGUF block */
    if (o < scales_end) {
        *i = o / sb;
        *at = o % sb;
        return *i < nin;
    }
    if (o < quants) {
        *i = (o - scales_end) / 4;
        *at = sb + (o - scales_end) % 4;
        return true;
    }
    if (o >= quants + 4 * nin * words) return false;
    const int w = (o - quants) / (4 * nin);
    *i = (o - quants) % (4 * nin) / 4;
    *at = hdr + 4 * w + (o - quants) % 4;
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

static void test_matvec(struct slm_pool *pool, uint32_t type, int64_t rows, int64_t cols)
{
    std::vector<uint8_t> w = rand_weights(type, rows, cols);
    size_t rb = slm_cuda_row_bytes(type, cols);
    /* the CPU backend's weight: the layout its kernels read fastest */
    uint32_t layout = slm_cpu_weight_layout(type, rows, cols);
    std::vector<uint8_t> wl(slm_cpu_layout_bytes(layout, type, rows, cols));
    CHECK(slm_cpu_repack(layout, type, rows, cols, w.data(), rb, wl.data()) == 0, "repack");
    struct slm_cpu_matmul_job job = {type, layout, rows, cols, rb, wl.data(), nullptr};
    /* the GPU's weight: the device layout */
    std::vector<uint8_t> wd(rows * slm_cuda_device_row_bytes(type, cols));
    RC_OK(slm_cuda_to_device_layout(type, w.data(), rows, cols, wd.data()));
    dev_buf<uint8_t> dw(wd);
    uint32_t at = slm_cuda_q8_act_type(type);
    size_t ab = slm_cuda_q8_row_bytes(at, cols);
    int checked = 0, before = failures;
    for (int n : {1, 3, 8, 11, 40}) {
        std::vector<float> x = rand_acts(n, cols);
        std::vector<float> y0((size_t)n * (size_t)rows);
        for (auto &v : y0) v = frand();
        std::vector<unsigned char> scratch(slm_cpu_matmul_scratch_bytes(1, &job, n) + 64);
        dev_buf<float> dx(x);
        dev_buf<uint8_t> dq((size_t)n * ab);
        dev_buf<float> dy((size_t)n * (size_t)rows);
        RC_OK(slm_cuda_quantize_q8(at, dx.p, n, cols, dq.p, nullptr));
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            std::vector<float> want = y0;
            job.y = want.data();
            CHECK(slm_cpu_matmul(pool, 1, &job, x.data(), n, accumulate, scratch.data()) == 0, "slm_cpu_matmul");
            dy.poison();
            if (accumulate) dy.upload(y0);
            RC_OK(slm_cuda_matvec_q8(type, dw.p, rows, cols, dq.p, n, dy.p, accumulate, nullptr));
            std::vector<float> got = dy.download();
            char what[128];
            snprintf(what, sizeof what, "matvec_q8 %s %lldx%lld n=%d%s", tname(type), (long long)rows,
                     (long long)cols, n, accumulate ? " accumulate" : "");
            compare_bits(what, got.data(), want.data(), got.size());
            checked += (int)got.size();
        }
    }
    if (failures == before)
        printf("matvec_q8 %s %lldx%lld (cpu layout %s): %d outputs over n = 1, 3, 8, 11, 40, accumulate off/on: "
               "bit-identical to slm_cpu_matmul\n",
               tname(type), (long long)rows, (long long)cols, layout == SLM_CPU_LAYOUT_X8 ? "X8" : "rows", checked);
}

/* slm_cuda_matvec_q8_fused for n_w weights of one type and cols (rows rows_of[i]) against
 * slm_cpu_matmul on the same weights (one call, n_w jobs) and against slm_cuda_quantize_q8 +
 * one slm_cuda_matvec_q8 per weight: every float's bits equal, n = 1, 3, 8, accumulate off/on. */
static void test_fused(struct slm_pool *pool, uint32_t type, int64_t cols, std::vector<int64_t> rows_of)
{
    const int n_w = (int)rows_of.size();
    const size_t rb = slm_cuda_row_bytes(type, cols);
    std::vector<std::vector<uint8_t>> wl(n_w);
    std::vector<slm_cpu_matmul_job> jobs(n_w);
    std::vector<dev_buf<uint8_t> *> dw(n_w);
    std::vector<const void *> wp(n_w);
    for (int i = 0; i < n_w; i++) {
        std::vector<uint8_t> w = rand_weights(type, rows_of[i], cols);
        uint32_t layout = slm_cpu_weight_layout(type, rows_of[i], cols);
        wl[i].resize(slm_cpu_layout_bytes(layout, type, rows_of[i], cols));
        CHECK(slm_cpu_repack(layout, type, rows_of[i], cols, w.data(), rb, wl[i].data()) == 0, "repack");
        jobs[i] = {type, layout, rows_of[i], cols, rb, wl[i].data(), nullptr};
        std::vector<uint8_t> wd(rows_of[i] * slm_cuda_device_row_bytes(type, cols));
        RC_OK(slm_cuda_to_device_layout(type, w.data(), rows_of[i], cols, wd.data()));
        dw[i] = new dev_buf<uint8_t>(wd);
        wp[i] = dw[i]->p;
    }
    const uint32_t at = slm_cuda_q8_act_type(type);
    const size_t ab = slm_cuda_q8_row_bytes(at, cols);
    int checked = 0, before = failures;
    for (int n : {1, 3, 8}) {
        std::vector<float> x = rand_acts(n, cols);
        dev_buf<float> dx(x);
        dev_buf<uint8_t> dq((size_t)n * ab);
        RC_OK(slm_cuda_quantize_q8(at, dx.p, n, cols, dq.p, nullptr));
        std::vector<std::vector<float>> y0(n_w), want(n_w);
        std::vector<dev_buf<float> *> dy(n_w), dsep(n_w);
        std::vector<float *> yp(n_w);
        for (int i = 0; i < n_w; i++) {
            y0[i].resize((size_t)n * rows_of[i]);
            for (auto &v : y0[i]) v = frand();
            dy[i] = new dev_buf<float>(y0[i].size());
            dsep[i] = new dev_buf<float>(y0[i].size());
            yp[i] = dy[i]->p;
        }
        std::vector<unsigned char> scratch(slm_cpu_matmul_scratch_bytes(n_w, jobs.data(), n) + 64);
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            for (int i = 0; i < n_w; i++) {
                want[i] = y0[i];
                jobs[i].y = want[i].data();
                dy[i]->poison();
                dsep[i]->poison();
                if (accumulate) dy[i]->upload(y0[i]), dsep[i]->upload(y0[i]);
                RC_OK(slm_cuda_matvec_q8(type, wp[i], rows_of[i], cols, dq.p, n, dsep[i]->p, accumulate, nullptr));
            }
            CHECK(slm_cpu_matmul(pool, n_w, jobs.data(), x.data(), n, accumulate, scratch.data()) == 0,
                  "slm_cpu_matmul");
            RC_OK(slm_cuda_matvec_q8_fused(type, n_w, wp.data(), rows_of.data(), cols, dx.p, n, yp.data(), accumulate,
                                           nullptr));
            for (int i = 0; i < n_w; i++) {
                std::vector<float> got = dy[i]->download(), sep = dsep[i]->download();
                char what[160];
                snprintf(what, sizeof what, "matvec_q8_fused %s weight %d of %d (%lldx%lld) n=%d%s", tname(type), i,
                         n_w, (long long)rows_of[i], (long long)cols, n, accumulate ? " accumulate" : "");
                compare_bits(what, got.data(), want[i].data(), got.size());
                char what_sep[192];
                snprintf(what_sep, sizeof what_sep, "%s against quantize + matvec_q8", what);
                compare_bits(what_sep, got.data(), sep.data(), got.size());
                checked += (int)got.size();
            }
        }
        for (int i = 0; i < n_w; i++) delete dy[i], delete dsep[i];
    }
    for (int i = 0; i < n_w; i++) delete dw[i];
    if (failures == before)
        printf("matvec_q8_fused %s, %d weight(s), cols %lld: %d outputs over n = 1, 3, 8, accumulate off/on: "
               "bit-identical to slm_cpu_matmul and to quantize + matvec_q8\n",
               tname(type), n_w, (long long)cols, checked);
}

#define REFUSED(call)                                                                                   \
    do {                                                                                                \
        int rc_ = (call);                                                                               \
        CHECK(rc_ == -EINVAL, "%s: expected -EINVAL, got %d", #call, rc_);                              \
    } while (0)

static void test_bad_arguments(void)
{
    slm_emu_options o, quiet;
    slm_emu_get_options(&o);
    quiet = o;
    quiet.quiet = 1;
    slm_emu_set_options(&quiet);
    const int64_t rows = 5, cols = 256;
    dev_buf<uint8_t> w(rows * slm_cuda_row_bytes(SLM_TYPE_Q4_K, cols));
    dev_buf<float> x(2 * cols), y(2 * rows);
    dev_buf<uint8_t> q(2 * slm_cuda_q8_row_bytes(SLM_TYPE_Q8_K, cols) + 4);
    std::vector<float> host_x(2 * cols);
    CHECK(slm_cuda_q8_act_type(SLM_TYPE_F32) == UINT32_MAX && slm_cuda_q8_act_type(SLM_TYPE_Q5_1) == SLM_TYPE_Q8_1,
          "slm_cuda_q8_act_type");
    CHECK(slm_cuda_q8_row_bytes(SLM_TYPE_Q8_K, 512) == 584 && slm_cuda_q8_row_bytes(SLM_TYPE_Q8_0, 48) == 0 &&
              slm_cuda_q8_row_bytes(SLM_TYPE_Q4_0, 64) == 0,
          "slm_cuda_q8_row_bytes");
    /* quantize */
    REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q4_0, x.p, 2, cols, q.p, nullptr));      /* not an activation type */
    REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_K, x.p, 2, 96, q.p, nullptr));        /* not whole blocks */
    REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_0, x.p, 0, cols, q.p, nullptr));      /* n = 0 */
    REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_1, x.p, 2, cols, q.p + 2, nullptr));  /* misaligned */
    REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_0, x.p, 2, cols, nullptr, nullptr));
    /* the GEMV */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_F32, w.p, rows, cols, q.p, 2, y.p, 0, nullptr));   /* no integer path */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q8_1, w.p, rows, cols, q.p, 2, y.p, 0, nullptr));  /* activation type */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, 128, q.p, 2, y.p, 0, nullptr));   /* not whole blocks */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, 0, cols, q.p, 2, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, q.p, 0, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p + 8, rows - 1, cols, q.p, 2, y.p, 0, nullptr)); /* w misaligned */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_0, w.p + 2, rows, 32, q.p, 2, y.p, 0, nullptr));   /* GGUF's alignment */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q6_K, w.p + 8, 1, cols, q.p, 2, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, q.p + 2, 2, y.p, 0, nullptr));    /* q misaligned */
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, q.p, 2, nullptr, 0, nullptr));
    REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, q.p, 70000 * 32, y.p, 0, nullptr)); /* grid.y */
    /* the fused GEMV: what it takes, and its refusals */
    CHECK(slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q4_1, 576, 8) && slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q6_K, 256, 1) &&
              !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q4_1, 576, 9) && !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q4_1, 576, 0) &&
              !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_F32, 576, 1) && !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q8_1, 576, 1) &&
              !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q4_K, 128, 1),
          "slm_cuda_matvec_q8_fused_fits: expected n 1..8 of a type with an integer GEMV and whole blocks");
    /* Q8_0 activations, 34 bytes a block: 8 tokens x 180 blocks = 48960 bytes fit, 181 blocks do not */
    CHECK(slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q8_0, 32 * 180, 8) && !slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q8_0, 32 * 181, 8) &&
              slm_cuda_matvec_q8_fused_fits(SLM_TYPE_Q8_0, 32 * 181, 7),
          "slm_cuda_matvec_q8_fused_fits: expected the shared-memory bound at %d bytes", SLM_CUDA_MATVEC_Q8_FUSED_SMEM);
    {
        const void *fw[4] = {w.p, w.p, w.p, w.p};
        int64_t frows[4] = {rows, rows, rows, rows};
        float *fy[4] = {y.p, y.p, y.p, y.p};
        const void *fw_bad[2] = {w.p, w.p + 8};
        const void *fw_null[2] = {w.p, nullptr};
        float *fy_null[2] = {y.p, nullptr};
        float *fy_bad[2] = {y.p, (float *)((char *)y.p + 2)};
        int64_t frows_bad[2] = {rows, 0};
        const uint32_t t = SLM_TYPE_Q4_K;
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, x.p, 9, fy, 0, nullptr));         /* n > 8 */
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, x.p, 0, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 0, fw, frows, cols, x.p, 2, fy, 0, nullptr));         /* no weight */
        REFUSED(slm_cuda_matvec_q8_fused(t, 4, fw, frows, cols, x.p, 2, fy, 0, nullptr));         /* too many */
        REFUSED(slm_cuda_matvec_q8_fused(SLM_TYPE_F32, 1, fw, frows, cols, x.p, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(SLM_TYPE_Q8_K, 1, fw, frows, cols, x.p, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, 128, x.p, 2, fy, 0, nullptr));          /* not whole blocks */
        REFUSED(slm_cuda_matvec_q8_fused(SLM_TYPE_Q8_0, 1, fw, frows, 32 * 181, x.p, 8, fy, 0, nullptr)); /* smem */
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, nullptr, frows, cols, x.p, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, nullptr, cols, x.p, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, x.p, 2, nullptr, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw_null, frows, cols, x.p, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw, frows, cols, x.p, 2, fy_null, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, nullptr, 2, fy, 0, nullptr));
        REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw, frows_bad, cols, x.p, 2, fy, 0, nullptr));      /* rows 0 */
        REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw_bad, frows, cols, x.p, 2, fy, 0, nullptr));      /* w misaligned */
        REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw, frows, cols, x.p, 2, fy_bad, 0, nullptr));      /* y misaligned */
        REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, (float *)((char *)x.p + 2), 1, fy, 0, nullptr));
        if (slm_emu_active()) {
            /* a weight of another cols (512 where the call says 256) or more rows than the buffer holds */
            int64_t frows_big[2] = {rows, rows + 1};
            REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, 2 * cols, x.p, 1, fy, 0, nullptr));
            REFUSED(slm_cuda_matvec_q8_fused(t, 2, fw, frows_big, cols, x.p, 2, fy, 0, nullptr));
            REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, x.p, 3, fy, 0, nullptr));  /* x, y too small */
            REFUSED(slm_cuda_matvec_q8_fused(t, 1, fw, frows, cols, host_x.data(), 2, fy, 0, nullptr));
        }
    }
    /* the device layout: sizes, and the converter's refusals */
    /* Q4_0 x 160: a quad (80) and a tail of 1 (4 + 16), to 112; Q4_1 x 576 (SmolLM2): 4 quads and a
     * tail of 2 (8 + 32), to 368; Q5_1 x 224: a quad (96), a tail of 3 (12 + 12 + 48), to 176;
     * Q8_0 x 576: 4 quads (576), a tail of 2 (4 + 64), to 656 */
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
    if (slm_emu_active()) {   /* what only the emulator's pointer check can see */
        REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_0, host_x.data(), 2, cols, q.p, nullptr));
        REFUSED(slm_cuda_quantize_q8(SLM_TYPE_Q8_0, x.p, 3, cols, q.p, nullptr));      /* x too small */
        REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows + 1, cols, q.p, 2, y.p, 0, nullptr)); /* w too small */
        REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, q.p, 3, y.p, 0, nullptr));    /* q, y too small */
        REFUSED(slm_cuda_matvec_q8(SLM_TYPE_Q4_K, w.p, rows, cols, host_x.data(), 2, y.p, 0, nullptr));
    }
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
    slm_emu_set_options(&o);
    printf("bad arguments: refused\n");
}

int main(void)
{
    printf("seed 0x%016llx; cpu kernels: %s\n", (unsigned long long)TEST_RNG_SEED, slm_cpu_kernels_name());
    slm_emu_options o;
    slm_emu_get_options(&o);
    o.racecheck = 1;
    slm_emu_set_options(&o);
    struct slm_pool *pool = slm_pool_create(2);
    CHECK(pool, "slm_pool_create");

    for (uint32_t at : {SLM_TYPE_Q8_0, SLM_TYPE_Q8_1})
        for (int n : {1, 5}) test_quantize(at, n, 576);
    for (int n : {1, 4}) test_quantize(SLM_TYPE_Q8_K, n, 768);

    for (uint32_t type : qtypes) {
        bool kq = slm_qblock_elems(type) == SLM_QK_K;
        if (kq) {
            test_layout(type, 3, 256 * 3);
        } else {
            for (int nb : {4, 5, 6, 7, 17}) test_layout(type, 3, 32 * nb);   /* nb % 4 = 0, 1, 2, 3 */
        }
    }
    for (uint32_t type : qtypes) {
        bool kq = slm_qblock_elems(type) == SLM_QK_K;
        test_matvec(pool, type, 67, kq ? 512 : 544);   /* odd rows: the row tiles; 17 blocks: a tail of 1 */
        if (!kq) test_matvec(pool, type, 64, 544);     /* the X8 tiles where the CPU has them */
        if (kq) test_matvec(pool, type, 19, 256 * 3);
        else
            for (int nb : {5, 7, 18}) test_matvec(pool, type, 19, 32 * nb);   /* tails of 1, 3, 2 blocks */
    }
    test_matvec(pool, SLM_TYPE_Q6_K, 13, 9 * 256);
    for (uint32_t type : qtypes) {   /* odd nb: tails of 1 and 3 blocks; K-quants 3 blocks */
        bool kq = slm_qblock_elems(type) == SLM_QK_K;
        if (kq) test_fused(pool, type, 256 * 3, {67});
        else
            for (int nb : {17, 7}) test_fused(pool, type, 32 * nb, {67});
        test_fused(pool, type, kq ? 512 : 32 * 18, {35, 19, 19});   /* three weights, different rows */
    }
    test_fused(pool, SLM_TYPE_Q4_1, 576, {576, 192, 192});   /* SmolLM2-135M's Q, K, V */
    test_fused(pool, SLM_TYPE_Q4_K, 1536, {576, 1});
    test_bad_arguments();
    slm_pool_destroy(&pool);
    if (failures) {
        printf("test_cuda_matvec_q8: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_matvec_q8: ok\n");
    return 0;
}
