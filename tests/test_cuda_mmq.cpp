/* test_cuda_mmq: the tensor-core quantized matmul of kernels/cuda/mmq.cu (slm_cuda_mmq) under the
 * SIMT emulator, its mma.sync through the twins of kernels/cuda/mma.cuh (and on a GPU as
 * test_cuda_mmq_gpu, the real instructions):
 * - the GEMV's bits, from each of the MMQ's two kernels (narrow and wide, forced in turn by
 *   slm_cuda_mmq_set_wide_min_blocks): for every weight type with a device layout, rows 67 (whole
 *   row groups and a partial one), 32-element types with nb = 1, 2, 11, 18 blocks (L = 1, 2, 16,
 *   32 segments: 1, 2, 4, 4 warps along K in the narrow kernel; 2 and 3 staged chunks in the
 *   wide one) and K-quants with 1, 3, 16 blocks (L = 4, 16, 32), n = 1, 9 and 37 tokens (one,
 *   two partial 32-token tiles), every token's outputs bit-identical to slm_cuda_gemv_q8 of that
 *   token alone (which test_cuda_gemv holds to its float64 bound): batch invariance across the
 *   kernels, so the backend may pick any by the step's size;
 * - the epilogues (accumulate, SwiGLU pair) and three weights in one launch (Q, K, V of 67, 35
 *   and 19 rows), the same way;
 * - refusals (-EINVAL): NULLs, n = 0, a type without a device layout, misaligned xq, a SwiGLU pair
 *   of unequal rows, four weights, and (emulated) an xq smaller than n tokens;
 * - slm_cuda_mmq_quantize, what slm_cuda_mmq reads: slm_cuda_gemv_quantize's bytes of every
 *   token in the fragment order kernels.h states (a host mirror), with and without the norm, n =
 *   1, 9, 37, 70 (the padding to 32 tokens zeros), a row of 130 blocks (two blocks of threads);
 *   slm_cuda_mmq_act_bytes' sizes and its 2 GiB cap; the refusals (n, cols, NULLs, misaligned
 *   pointers, and emulated: an xq too small, host memory);
 * - slm_cuda_mmq_fused (x RMS-normed and quantized inside the MMQ's blocks; each kernel) against
 *   slm_cuda_mmq_quantize + the narrow slm_cuda_mmq: identical bits for every token, with and
 *   without the norm, on SmolLM2's 576 and 1536 columns, Gemma 3's 640, 2048, 1024 and 2048 with
 *   SwiGLU (shared memory that needs the kernel's opt-in with its static part), and odd n (1, 9,
 *   37, 70: partial token tiles), the three epilogues; its refusals (a block's tokens past its
 *   shared memory, cols not a whole number of blocks, misaligned x or gamma, NULL x).
 * Every launch runs under the emulator's race check (each block twice, its threads in forward
 * and reverse order, the results compared): the mma twins' staging (kernels/cuda/mma.cuh, two
 * sets taken in turn, one __syncwarp a call) must give the same bits in any order. */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"

extern "C" {
#include "kernels/cpu/dequant.h"
}
#include "tests/cuda_check.h"
#include "tests/rng.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/cuda_weights.h"

static const float EPS = 1e-5f;

/* The MMQ's kernel in force (slm_cuda_mmq_set_wide_min_blocks): "narrow" (16 rows a block, the
 * K split over its warps) or "wide" (64 rows, the block's tokens staged in shared memory). */
static const char *shape = "auto";
static int wide_min = SLM_CUDA_MMQ_WIDE_MIN_BLOCKS;

static void set_shape(bool wide)
{
    shape = wide ? "wide" : "narrow";
    wide_min = wide ? 0 : INT_MAX;
    slm_cuda_mmq_set_wide_min_blocks(wide_min);
}

/* Weights of one type and cols in the device layout. */
struct dev_weights {
    std::vector<dev_buf<uint8_t> *> dev;
    std::vector<const void *> ptr;
    std::vector<int64_t> rows;
    dev_weights(uint32_t type, int64_t cols, std::vector<int64_t> r) : rows(r)
    {
        for (int64_t nr : rows) {
            std::vector<uint8_t> w = rand_weights(type, nr, cols);
            std::vector<uint8_t> wd((size_t)nr * slm_cuda_device_row_bytes(type, cols));
            RC_OK(slm_cuda_to_device_layout(type, w.data(), nr, cols, wd.data()));
            dev.push_back(new dev_buf<uint8_t>(wd));
            ptr.push_back(dev.back()->p);
        }
    }
    ~dev_weights()
    {
        for (auto *d : dev) delete d;
    }
};

/* One configuration: MMQ over n tokens against the GEMV of each token alone. */
static void check_config(uint32_t type, int64_t cols, std::vector<int64_t> rows, int n, int epi)
{
    dev_weights ws(type, cols, rows);
    const int n_w = (int)rows.size(), n_y = epi == SLM_CUDA_GEMV_SWIGLU ? 1 : n_w;
    std::vector<float> x((size_t)n * (size_t)cols);
    for (int t = 0; t < n; t++) {
        const float scale = rand_range(0.05f, 3.0f);
        for (int64_t c = 0; c < cols; c++) x[(size_t)t * (size_t)cols + (size_t)c] = scale * frand();
        if (t == 3 % n) std::fill_n(&x[(size_t)t * (size_t)cols], 32, 0.0f);   /* amax = 0 */
    }
    std::vector<float> gamma((size_t)cols);
    for (auto &g : gamma) g = rand_range(0.2f, 2.0f);
    dev_buf<float> dx(x), dg(gamma);
    dev_buf<uint8_t> xq(slm_cuda_mmq_act_bytes(n, cols)), xq1(slm_cuda_act_bytes(1, cols));
    RC_OK(slm_cuda_mmq_quantize(dx.p, dg.p, EPS, n, cols, xq.p, nullptr));
    /* y0 for accumulate: the same start in both */
    std::vector<std::vector<float>> y0((size_t)n_y);
    std::vector<dev_buf<float> *> ym, yg;
    std::vector<float *> pm, pg;
    for (int i = 0; i < n_y; i++) {
        y0[(size_t)i].resize((size_t)n * (size_t)rows[(size_t)i]);
        for (auto &v : y0[(size_t)i]) v = 2.0f * frand();
        ym.push_back(new dev_buf<float>(y0[(size_t)i]));
        yg.push_back(new dev_buf<float>((size_t)rows[(size_t)i]));
        pm.push_back(ym.back()->p);
    }
    if (epi == SLM_CUDA_GEMV_SWIGLU) pm.push_back(nullptr);
    RC_OK(slm_cuda_mmq(type, n_w, ws.ptr.data(), ws.rows.data(), cols, xq.p, n, pm.data(), epi, nullptr));
    int bad = 0;
    for (int t = 0; t < n; t++) {
        pg.clear();
        for (int i = 0; i < n_y; i++) {
            const int64_t r = rows[(size_t)i];
            yg[(size_t)i]->upload(std::vector<float>(&y0[(size_t)i][(size_t)t * (size_t)r],
                                                     &y0[(size_t)i][(size_t)(t + 1) * (size_t)r]));
            pg.push_back(yg[(size_t)i]->p);
        }
        if (epi == SLM_CUDA_GEMV_SWIGLU) pg.push_back(nullptr);
        RC_OK(slm_cuda_gemv_quantize(dx.p + (size_t)t * (size_t)cols, dg.p, EPS, 1, cols, xq1.p, nullptr));
        RC_OK(slm_cuda_gemv_q8(type, n_w, ws.ptr.data(), ws.rows.data(), cols, xq1.p, 1, pg.data(), epi, nullptr));
        for (int i = 0; i < n_y; i++) {
            const std::vector<float> g = yg[(size_t)i]->download(), m = ym[(size_t)i]->download();
            const int64_t r = rows[(size_t)i];
            for (int64_t k = 0; k < r; k++) {
                const float a = g[(size_t)k], b = m[(size_t)t * (size_t)r + (size_t)k];
                if (memcmp(&a, &b, 4) != 0 && bad++ < 4)
                    printf("  token %d weight %d row %lld: gemv %.9g (%08x), mmq %.9g (%08x)\n", t, i, (long long)k, a,
                           *(const uint32_t *)&a, b, *(const uint32_t *)&b);
            }
        }
    }
    static const char *epi_name[3] = {"store", "accumulate", "swiglu"};
    CHECK(bad == 0, "mmq (%s) %s %lld cols, %d weights, n = %d, %s: %d outputs differ from the GEMV's bits", shape,
          tname(type), (long long)cols, n_w, n, epi_name[epi], bad);
    if (bad == 0)
        printf("mmq (%s) %s rows %lld x %lld (L=%d), %d weight(s), n = %d, %s: the GEMV's bits\n", shape, tname(type),
               (long long)rows[0], (long long)cols, slm_cuda_gemv_lanes(type, cols), n_w, n, epi_name[epi]);
    for (auto *d : ym) delete d;
    for (auto *d : yg) delete d;
}

/* One configuration: slm_cuda_mmq_fused against slm_cuda_mmq_quantize + slm_cuda_mmq, all n tokens. */
static void check_fused(uint32_t type, int64_t cols, std::vector<int64_t> rows, int n, int epi, bool norm)
{
    dev_weights ws(type, cols, rows);
    const int n_w = (int)rows.size(), n_y = epi == SLM_CUDA_GEMV_SWIGLU ? 1 : n_w;
    std::vector<float> x((size_t)n * (size_t)cols), gamma((size_t)cols);
    for (int t = 0; t < n; t++) {
        const float scale = rand_range(0.05f, 3.0f);
        for (int64_t c = 0; c < cols; c++) x[(size_t)t * (size_t)cols + (size_t)c] = scale * frand();
        if (t == 5 % n) std::fill_n(&x[(size_t)t * (size_t)cols + 32], 32, 0.0f);   /* amax = 0 */
    }
    for (auto &g : gamma) g = rand_range(0.2f, 2.0f);
    dev_buf<float> dx(x), dg(gamma);
    dev_buf<uint8_t> xq(slm_cuda_mmq_act_bytes(n, cols));
    std::vector<dev_buf<float> *> yf, yt;
    std::vector<float *> pf, pt;
    for (int i = 0; i < n_y; i++) {
        std::vector<float> y0((size_t)n * (size_t)rows[(size_t)i]);
        for (auto &v : y0) v = 2.0f * frand();   /* the same start for accumulate */
        yf.push_back(new dev_buf<float>(y0));
        yt.push_back(new dev_buf<float>(y0));
        pf.push_back(yf.back()->p);
        pt.push_back(yt.back()->p);
    }
    if (epi == SLM_CUDA_GEMV_SWIGLU) pf.push_back(nullptr), pt.push_back(nullptr);
    const float *g = norm ? dg.p : nullptr;
    RC_OK(slm_cuda_mmq_quantize(dx.p, g, EPS, n, cols, xq.p, nullptr));
    slm_cuda_mmq_set_wide_min_blocks(INT_MAX);   /* the reference: the narrow kernel's two launches */
    RC_OK(slm_cuda_mmq(type, n_w, ws.ptr.data(), ws.rows.data(), cols, xq.p, n, pt.data(), epi, nullptr));
    slm_cuda_mmq_set_wide_min_blocks(wide_min);
    RC_OK(slm_cuda_mmq_fused(type, n_w, ws.ptr.data(), ws.rows.data(), cols, dx.p, g, EPS, n, pf.data(), epi, nullptr));
    int bad = 0;
    for (int i = 0; i < n_y; i++) {
        const std::vector<float> a = yt[(size_t)i]->download(), b = yf[(size_t)i]->download();
        const int64_t r = rows[(size_t)i];
        for (size_t k = 0; k < a.size(); k++)
            if (memcmp(&a[k], &b[k], 4) != 0 && bad++ < 4)
                printf("  token %lld weight %d row %lld: two launches %.9g (%08x), fused %.9g (%08x)\n",
                       (long long)(k / (size_t)r), i, (long long)(k % (size_t)r), a[k], *(const uint32_t *)&a[k], b[k],
                       *(const uint32_t *)&b[k]);
    }
    static const char *epi_name[3] = {"store", "accumulate", "swiglu"};
    CHECK(bad == 0, "mmq_fused (%s) %s %lld cols, %d weights, n = %d, %s%s: %d outputs differ from the two-launch bits",
          shape, tname(type), (long long)cols, n_w, n, epi_name[epi], norm ? ", rmsnorm" : "", bad);
    if (bad == 0)
        printf("mmq_fused (%s) %s rows %lld x %lld, %d weight(s), n = %d, %s%s (%zu bytes of shared x): the two-launch bits\n",
               shape, tname(type), (long long)rows[0], (long long)cols, n_w, n, epi_name[epi], norm ? ", rmsnorm" : "",
               slm_cuda_mmq_fused_smem(type, cols, epi));
    for (auto *d : yf) delete d;
    for (auto *d : yt) delete d;
}

static void check_fused_refusals(void)
{
    const int64_t rows = 16;
    dev_weights ws(SLM_TYPE_Q4_0, 4096, {rows}), w64(SLM_TYPE_Q4_0, 64, {rows});
    dev_buf<float> x((size_t)(4 * 4096 + 4)), g((size_t)(4096 + 4)), y((size_t)(4 * rows));
    float *Y[1] = {y.p};
    int64_t R[1] = {rows};
#define REFUSED(call) CHECK((call) == -EINVAL, "%s: expected -EINVAL", #call)
    /* 32 tokens of 4096 columns: 160 KiB of quantized x, past SLM_CUDA_MMQ_SMEM */
    CHECK(slm_cuda_mmq_fused_smem(SLM_TYPE_Q4_0, 4096, SLM_CUDA_GEMV_STORE) > SLM_CUDA_MMQ_SMEM,
          "4096 columns: expected more than SLM_CUDA_MMQ_SMEM");
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, 4096, x.p, g.p, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    CHECK(slm_cuda_mmq_fused_smem(SLM_TYPE_Q4_0, 48, SLM_CUDA_GEMV_STORE) == 0, "48 columns of Q4_0: expected 0");
    CHECK(slm_cuda_mmq_fused_smem(SLM_TYPE_F16, 64, SLM_CUDA_GEMV_STORE) == 0, "F16: expected 0");
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, w64.ptr.data(), R, 48, x.p, g.p, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_F16, 1, w64.ptr.data(), R, 64, x.p, g.p, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, w64.ptr.data(), R, 64, nullptr, g.p, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, w64.ptr.data(), R, 64, x.p + 1, g.p, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, w64.ptr.data(), R, 64, x.p, g.p + 2, EPS, 4, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
    REFUSED(slm_cuda_mmq_fused(SLM_TYPE_Q4_0, 1, w64.ptr.data(), R, 64, x.p, g.p, EPS, 0, Y, SLM_CUDA_GEMV_STORE,
                               nullptr));
#undef REFUSED
}

static void check_refusals(void)
{
    const int64_t cols = 64, rows = 16;
    dev_weights ws(SLM_TYPE_Q4_0, cols, {rows, rows, rows, rows});
    dev_buf<uint8_t> xq(slm_cuda_mmq_act_bytes(4, cols) + 16);   /* 32 tokens' */
    dev_buf<float> y((size_t)(33 * rows));
    float *Y[4] = {y.p, y.p, y.p, y.p};
    int64_t R[4] = {rows, rows, rows, rows}, R_uneq[2] = {rows, rows - 1};
    const void *W_null[1] = {nullptr};
#define REFUSED(call) CHECK((call) == -EINVAL, "%s: expected -EINVAL", #call)
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, cols, xq.p, 0, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, cols, nullptr, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, W_null, R, cols, xq.p, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_F16, 1, ws.ptr.data(), R, cols, xq.p, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, cols, xq.p + 8, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 2, ws.ptr.data(), R_uneq, cols, xq.p, 4, Y, SLM_CUDA_GEMV_SWIGLU, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 4, ws.ptr.data(), R, cols, xq.p, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, cols, xq.p, 4, Y, 7, nullptr));
    REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, 48, xq.p, 4, Y, SLM_CUDA_GEMV_STORE, nullptr));
    if (slm_emu_active())   /* 33 tokens take 64 tokens' bytes */
        REFUSED(slm_cuda_mmq(SLM_TYPE_Q4_0, 1, ws.ptr.data(), R, cols, xq.p, 33, Y, SLM_CUDA_GEMV_STORE, nullptr));
#undef REFUSED
}

/* slm_cuda_mmq_quantize: slm_cuda_gemv_quantize's bytes of every token, placed in the MMQ's
 * fragment order as kernels.h writes it out (a host mirror of that text), the tokens from n to the
 * next multiple of 32 zeros (the buffer starts poisoned with 0xff). */
static void check_quantize_order(int64_t cols, int n, bool norm)
{
    std::vector<float> x((size_t)n * (size_t)cols), gamma((size_t)cols);
    for (int t = 0; t < n; t++) {
        const float scale = rand_range(0.05f, 3.0f);
        for (int64_t c = 0; c < cols; c++) x[(size_t)t * (size_t)cols + (size_t)c] = scale * frand();
        if (t == 2 % n) std::fill_n(&x[(size_t)t * (size_t)cols], 32, 0.0f);   /* amax = 0 */
    }
    for (auto &g : gamma) g = rand_range(0.2f, 2.0f);
    dev_buf<float> dx(x), dg(gamma);
    dev_buf<uint8_t> q(slm_cuda_act_bytes(n, cols)), f(slm_cuda_mmq_act_bytes(n, cols));
    const float *g = norm ? dg.p : nullptr;
    RC_OK(slm_cuda_gemv_quantize(dx.p, g, EPS, n, cols, q.p, nullptr));
    RC_OK(slm_cuda_mmq_quantize(dx.p, g, EPS, n, cols, f.p, nullptr));
    const std::vector<uint8_t> hq = q.download(), hf = f.download();
    const size_t N = 32 * (size_t)((n + 31) / 32), NT = N / 8, nba = (size_t)cols / 32;
    std::vector<uint8_t> want(N * (size_t)cols + N * nba * 8, 0);
    CHECK(hf.size() == want.size(), "mmq_quantize %lld cols, n = %d: %zu bytes, expected %zu", (long long)cols, n,
          hf.size(), want.size());
    if (hf.size() != want.size()) return;
    for (size_t tau = 0; tau < (size_t)n; tau++) {
        for (size_t c = 0; c < nba; c++) {
            const size_t at = c * NT + tau / 8, gg = tau % 8;
            const uint8_t *blk = &hq[tau * (size_t)cols + 32 * c];
            for (size_t t = 0; t < 4; t++) {
                memcpy(&want[256 * at + 32 * gg + 8 * t], blk + 4 * t, 4);
                memcpy(&want[256 * at + 32 * gg + 8 * t + 4], blk + 4 * (t + 4), 4);
            }
            memcpy(&want[N * (size_t)cols + 64 * at + 8 * gg], &hq[(size_t)n * (size_t)cols + 8 * (tau * nba + c)], 8);
        }
    }
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < want.size(); i++)
        if (hf[i] != want[i] && bad++ == 0) first = i;
    CHECK(bad == 0, "mmq_quantize %lld cols, n = %d%s: %zu bytes differ from the GEMV's bytes in fragment order (first at %zu: %#x, expected %#x)",
          (long long)cols, n, norm ? ", rmsnorm" : "", bad, first, bad ? hf[first] : 0, bad ? want[first] : 0);
    if (bad == 0)
        printf("mmq_quantize %lld cols, n = %d%s: the GEMV's bytes in fragment order, %zu padding tokens zeros\n",
               (long long)cols, n, norm ? ", rmsnorm" : "", N - (size_t)n);
}

static void check_quantize_refusals(void)
{
    const int64_t cols = 64;
    dev_buf<float> x((size_t)(33 * cols + 4)), g((size_t)(cols + 4));
    dev_buf<uint8_t> q(slm_cuda_mmq_act_bytes(4, cols) + 16);   /* 32 tokens' */
    std::vector<float> host_x((size_t)(4 * cols));
#define REFUSED(call) CHECK((call) == -EINVAL, "%s: expected -EINVAL", #call)
    CHECK(slm_cuda_mmq_act_bytes(1, 576) == 32 * 576 + 32 * 18 * 8 && slm_cuda_mmq_act_bytes(33, 32) == 64 * 40 &&
              slm_cuda_mmq_act_bytes(0, 64) == 0 && slm_cuda_mmq_act_bytes(SLM_CUDA_ACT_MAX_TOKENS + 1, 32) == 0 &&
              slm_cuda_mmq_act_bytes(4, 48) == 0,
          "slm_cuda_mmq_act_bytes: tokens rounded up to 32, 40 bytes a block, 0 for bad n or cols");
    /* past INT32_MAX bytes (the MMQ's 32-bit offsets): 65,536 tokens of 32,768 columns */
    CHECK(slm_cuda_mmq_act_bytes(SLM_CUDA_ACT_MAX_TOKENS, 32768) == 0 && slm_cuda_mmq_act_bytes(SLM_CUDA_ACT_MAX_TOKENS, 16384) != 0,
          "slm_cuda_mmq_act_bytes: 0 past INT32_MAX bytes only");
    check_quantize_refusals(slm_cuda_mmq_quantize, "slm_cuda_mmq_quantize", x.p, g.p, q.p, cols, EPS);
    if (slm_emu_active()) {
        REFUSED(slm_cuda_mmq_quantize(x.p, nullptr, EPS, 33, cols, q.p, nullptr));   /* xq: 32 tokens' bytes */
        REFUSED(slm_cuda_mmq_quantize(host_x.data(), nullptr, EPS, 2, cols, q.p, nullptr));   /* host memory */
    }
#undef REFUSED
}

/* The GEMV's bits for every type, shape and epilogue, in the shape in force. */
static void check_configs(void)
{
    const uint32_t small[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0};
    const uint32_t kq[] = {SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    for (uint32_t t : small) {
        check_config(t, 32, {67}, 9, SLM_CUDA_GEMV_STORE);
        check_config(t, 64, {67}, 9, SLM_CUDA_GEMV_STORE);
        check_config(t, 32 * 11, {67}, 37, SLM_CUDA_GEMV_STORE);
        check_config(t, 576, {67}, 1, SLM_CUDA_GEMV_STORE);
        check_config(t, 576, {67}, 37, SLM_CUDA_GEMV_STORE);
    }
    for (uint32_t t : kq) {
        check_config(t, 256, {67}, 9, SLM_CUDA_GEMV_STORE);
        check_config(t, 768, {67}, 37, SLM_CUDA_GEMV_STORE);
        check_config(t, 4096, {67}, 9, SLM_CUDA_GEMV_STORE);
    }
    check_config(SLM_TYPE_Q4_1, 576, {67}, 37, SLM_CUDA_GEMV_ACCUMULATE);
    check_config(SLM_TYPE_Q4_1, 576, {67, 67}, 37, SLM_CUDA_GEMV_SWIGLU);
    check_config(SLM_TYPE_Q6_K, 768, {67, 67}, 9, SLM_CUDA_GEMV_SWIGLU);
    check_config(SLM_TYPE_Q4_K, 512, {67, 67}, 37, SLM_CUDA_GEMV_SWIGLU);
    check_config(SLM_TYPE_Q4_0, 576, {67, 35, 19}, 37, SLM_CUDA_GEMV_STORE);
    check_config(SLM_TYPE_Q8_0, 4096, {130}, 37, SLM_CUDA_GEMV_ACCUMULATE);
}

/* slm_cuda_mmq_fused against the two-launch path, in the shape in force. */
static void check_fused_configs(void)
{
    /* SmolLM2 (Q4_1 Q/K/V, gate/up, down), Gemma 3's 640 (Q8_0, Q5_0), 2048 */
    check_fused(SLM_TYPE_Q4_1, 576, {67, 35, 19}, 37, SLM_CUDA_GEMV_STORE, true);
    check_fused(SLM_TYPE_Q4_1, 576, {67}, 9, SLM_CUDA_GEMV_ACCUMULATE, false);
    check_fused(SLM_TYPE_Q4_1, 576, {67, 67}, 37, SLM_CUDA_GEMV_SWIGLU, true);
    check_fused(SLM_TYPE_Q4_1, 1536, {67}, 70, SLM_CUDA_GEMV_ACCUMULATE, false);
    check_fused(SLM_TYPE_Q8_0, 640, {67}, 1, SLM_CUDA_GEMV_STORE, true);
    check_fused(SLM_TYPE_Q5_0, 640, {67, 67}, 9, SLM_CUDA_GEMV_SWIGLU, true);
    check_fused(SLM_TYPE_Q4_K, 2048, {67}, 37, SLM_CUDA_GEMV_STORE, true);
    check_fused(SLM_TYPE_Q6_K, 2048, {67}, 9, SLM_CUDA_GEMV_ACCUMULATE, false);
    check_fused(SLM_TYPE_Q4_K, 768, {67, 67}, 37, SLM_CUDA_GEMV_SWIGLU, true);
    /* Qwen3 0.6B's 1024 columns (40 KiB of shared x a block, 32 tokens) and Llama 3.2 1B's 2048
     * with SwiGLU (40 KiB, 16 tokens): under CUDA's 48 KiB default alone, over it with the
     * narrow kernel's 8.1 KiB of static shared memory (and the wide one's 10.1 KiB at 32 tokens),
     * so they must opt in (the emulator refuses every launch over 36 KiB that did not; until
     * 2026-12-06 the MMQ opted in only above 48 KiB of dynamic memory). */
    check_fused(SLM_TYPE_Q4_0, 1024, {67}, 37, SLM_CUDA_GEMV_STORE, true);
    check_fused(SLM_TYPE_Q4_1, 2048, {67, 67}, 17, SLM_CUDA_GEMV_SWIGLU, false);
}

int main(void)
{
    if (!cuda_device_or_skip()) return 77;
    printf("seed %#llx\n", (unsigned long long)TEST_RNG_SEED);
    slm_emu_options o;
    slm_emu_get_options(&o);
    o.racecheck = 1;
    slm_emu_set_options(&o);
    /* both kernels, each for every configuration (the launch's own choice takes the narrow one
     * for these small grids) */
    for (int wide = 0; wide < 2; wide++) {
        set_shape(wide);
        check_configs();
        check_fused_configs();
    }
    slm_cuda_mmq_set_wide_min_blocks(-1);
    check_quantize_order(64, 1, false);
    check_quantize_order(576, 9, true);
    check_quantize_order(576, 37, false);
    check_quantize_order(4160, 70, true);   /* 130 blocks: two blocks of threads along the row */
    check_quantize_refusals();
    check_refusals();
    check_fused_refusals();
    if (failures) {
        printf("test_cuda_mmq: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_mmq: ok\n");
    return 0;
}
