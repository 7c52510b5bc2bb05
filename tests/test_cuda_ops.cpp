/* test_cuda_ops: the CUDA kernels of kernels/cuda (GEMV, dequant, embed, GEMM path, RMSNorm,
 * element-wise ops: SwiGLU, GeGLU, scale, add, add_bias, gather_rows) under the SIMT emulator, against the CPU reference (kernels/cpu) on
 * fresh random inputs of odd sizes, outputs poisoned with NaN before each run (the embedding
 * from GGUF's layout and from the device layout, kernels.h); the GEMV's
 * batch invariance bit for bit; the launchers' refusals of bad arguments. Every launch runs
 * under the emulator's race check (two schedules, results compared). */
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/compat.h"

#include <cublas_v2.h>

extern "C" {
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/ops.h"
}
#include "tests/cuda_check.h"
#include "tests/rng.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

static const uint32_t weight_types[] = {SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0,
                                        SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
                                        SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};

#include "tests/cuda_weights.h"

/* The CPU's f32 values of a (rows, cols) weight. */
static std::vector<float> cpu_dequant(uint32_t type, const std::vector<uint8_t> &w, int64_t rows, int64_t cols)
{
    size_t rb = slm_cuda_row_bytes(type, cols);
    std::vector<float> f(rows * cols);
    for (int64_t r = 0; r < rows; r++)
        CHECK(slm_cpu_dequantize_row(type, &w[r * rb], &f[r * cols], cols) == 0, "cpu dequant %s",
              tname(type));
    return f;
}

/* Compares got with want within bound[i]; prints the first ten misses, max abs / rel error. */
static void compare(const char *what, const float *got, const double *want, const double *bound, size_t n)
{
    double max_abs = 0, max_rel = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= bound[i])) {
            if (bad < 10)
                fprintf(stderr, "%s[%zu]: expected %.9g (+- %.3g), got %.9g\n", what, i, want[i], bound[i],
                        (double)got[i]);
            bad++;
        }
        if (d == d) {
            max_abs = std::max(max_abs, d);
            max_rel = std::max(max_rel, d / std::max(1e-30, fabs(want[i])));
        }
    }
    if (bad) {
        fprintf(stderr, "%s: %d of %zu out of bounds, max abs %.3g, max rel %.3g\n", what, bad, n, max_abs, max_rel);
        failures++;
    }
}

/* Counts elements whose bits differ; prints the first ten. */
template <class T> static int compare_bits(const char *what, const T *got, const T *want, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(T)) == 0) continue;
        uint32_t g = 0, w = 0;
        memcpy(&g, &got[i], sizeof(T));
        memcpy(&w, &want[i], sizeof(T));
        if (bad < 10) fprintf(stderr, "%s[%zu]: expected bits 0x%x, got 0x%x\n", what, i, w, g);
        bad++;
    }
    if (bad) {
        fprintf(stderr, "%s: %d of %zu differ\n", what, bad, n);
        failures++;
    }
    return bad;
}

static const double U32 = 0x1p-24; /* unit roundoff of f32 */
static const double U16 = 0x1p-11; /* of f16 */

/* ---- GEMV ---- */

/*
 * Bound: the weights dequantize bit-exactly (the same f32 values as the CPU), so the only
 * error is fp32 accumulation: each product passes through at most m fused multiply-adds
 * in its lane (m = elements one lane handles) and 5 butterfly additions (+1 when
 * accumulating into y), each rounding once: |err| <= (m + 6) u sum|w x| (+ u |y|). The
 * same for every type: the types differ only in how the f32 weights are made.
 */
/* Elements one lane of the GEMV multiply-adds in sequence: whole units (qunits.cuh) of
 * E elements, units spread over 32 lanes. */
static int64_t lane_elems(uint32_t type, int64_t cols)
{
    int64_t be = slm_qblock_elems(type), e, units;
    if (be == 1) {
        bool vec = slm_cuda_row_bytes(type, cols) % 16 == 0;
        e = !vec ? 1 : type == SLM_TYPE_F32 ? 4 : 8;
        units = cols / e;
    } else {
        e = be == 32 ? 8 : 32;
        units = cols / be * (be == 32 ? 4 : 8);
    }
    return (units + 31) / 32 * e;
}

static void test_matvec_type(uint32_t type, int64_t rows, int64_t cols)
{
    const char *name = tname(type);
    std::vector<uint8_t> wh = rand_weights(type, rows, cols);
    std::vector<float> wf = cpu_dequant(type, wh, rows, cols);
    dev_buf<uint8_t> w(wh);
    const int nmax = 11;
    std::vector<float> xh = rand_floats(nmax * cols);
    dev_buf<float> x(xh), y(nmax * rows);
    double m = (double)lane_elems(type, cols);

    for (int n : {1, 3, 8, 11}) {
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            if (accumulate && n != 3) continue;
            std::vector<float> y0 = rand_floats(n * rows);
            if (accumulate) CUDA_OK(cudaMemcpy(y.p, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
            else y.poison();
            RC_OK(slm_cuda_matvec(type, w.p, rows, cols, x.p, n, y.p, accumulate, nullptr));
            CUDA_OK(cudaDeviceSynchronize());
            std::vector<float> got = y.download();
            std::vector<double> want(n * rows), bound(n * rows);
            for (int t = 0; t < n; t++) {
                for (int64_t r = 0; r < rows; r++) {
                    double s = 0, sa = 0;
                    for (int64_t k = 0; k < cols; k++) {
                        double p = (double)wf[r * cols + k] * (double)xh[t * cols + k];
                        s += p, sa += fabs(p);
                    }
                    double y_old = accumulate ? y0[t * rows + r] : 0.0;
                    want[t * rows + r] = s + y_old;
                    bound[t * rows + r] = (m + 6) * U32 * (sa + fabs(y_old)) + 1e-30;
                }
            }
            char what[64];
            snprintf(what, sizeof what, "matvec %s n=%d%s", name, n, accumulate ? " accumulate" : "");
            compare(what, got.data(), want.data(), bound.data(), (size_t)n * rows);
        }
    }

    /* Batch invariance: token t alone (n = 1) has the bits it has inside n = 8 and n = 11
     * (where tokens 8..10 form a second group). */
    std::vector<float> y8, y11;
    y.poison();
    RC_OK(slm_cuda_matvec(type, w.p, rows, cols, x.p, 8, y.p, 0, nullptr));
    y8 = y.download();
    y.poison();
    RC_OK(slm_cuda_matvec(type, w.p, rows, cols, x.p, 11, y.p, 0, nullptr));
    y11 = y.download();
    dev_buf<float> x1(cols), y1(rows);
    for (int t : {0, 3, 7, 9, 10}) {
        CUDA_OK(cudaMemcpy(x1.p, x.p + t * cols, cols * 4, cudaMemcpyDeviceToDevice));
        y1.poison();
        RC_OK(slm_cuda_matvec(type, w.p, rows, cols, x1.p, 1, y1.p, 0, nullptr));
        std::vector<float> alone = y1.download();
        char what[64];
        if (t < 8) {
            snprintf(what, sizeof what, "matvec %s token %d: n=1 vs n=8", name, t);
            compare_bits(what, alone.data(), &y8[t * rows], rows);
        }
        snprintf(what, sizeof what, "matvec %s token %d: n=1 vs n=11", name, t);
        compare_bits(what, alone.data(), &y11[t * rows], rows);
    }
}

/* ---- dequantize and embed: bit-exact ---- */

/* got (ids, cols), an embedding lookup of the table whose rows dequantize to wf (rows, cols):
 * each id in range must give its row's bits, each other id a row of NaN. */
static void check_embedded(const char *label, const std::vector<int32_t> &ids, const std::vector<float> &got,
                           const std::vector<float> &wf, int64_t rows, int64_t cols)
{
    for (size_t i = 0; i < ids.size(); i++) {
        char what[128];
        snprintf(what, sizeof what, "%s id %d", label, ids[i]);
        if (ids[i] >= 0 && ids[i] < rows) {
            compare_bits(what, &got[i * cols], &wf[ids[i] * cols], cols);
        } else {
            int nan = 0;
            for (int64_t k = 0; k < cols; k++) nan += std::isnan(got[i * cols + k]);
            CHECK(nan == cols, "%s: expected a row of NaN, got %d NaN of %lld", what, nan, (long long)cols);
        }
    }
}

static void test_dequant_type(uint32_t type, int64_t rows, int64_t cols)
{
    const char *name = tname(type);
    std::vector<uint8_t> wh = rand_weights(type, rows, cols);
    std::vector<float> wf = cpu_dequant(type, wh, rows, cols);
    dev_buf<uint8_t> w(wh);
    const int64_t ld = cols + 8; /* the 8 elements past each row must stay untouched (poisoned) */
    for (uint32_t out_type : {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_BF16}) {
        char what[64];
        snprintf(what, sizeof what, "dequant %s -> %s", name, tname(out_type));
        if (out_type == SLM_TYPE_F32) {
            dev_buf<uint32_t> out(rows * ld);
            RC_OK(slm_cuda_dequantize(type, w.p, rows, cols, out_type, out.p, ld, nullptr));
            std::vector<uint32_t> got = out.download(), want(rows * ld, 0xffffffffu);
            for (int64_t r = 0; r < rows; r++) memcpy(&want[r * ld], &wf[r * cols], cols * 4);
            compare_bits(what, got.data(), want.data(), got.size());
        } else {
            dev_buf<uint16_t> out(rows * ld);
            RC_OK(slm_cuda_dequantize(type, w.p, rows, cols, out_type, out.p, ld, nullptr));
            std::vector<uint16_t> got = out.download(), want(rows * ld, 0xffff);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t k = 0; k < cols; k++) {
                    float f = wf[r * cols + k];
                    want[r * ld + k] = out_type == SLM_TYPE_F16 ? slm_f32_to_half(f) : slm_f32_to_bf16(f);
                }
            compare_bits(what, got.data(), want.data(), got.size());
        }
    }

    /* embed: repeated ids, the last row, and ids out of range (a row of NaN) */
    std::vector<int32_t> ids = {(int32_t)(rows - 1), 0, 5, 5, -1, (int32_t)rows, 2};
    dev_buf<int32_t> dids(ids);
    dev_buf<float> out(ids.size() * cols);
    RC_OK(slm_cuda_embed(type, w.p, rows, cols, dids.p, (int)ids.size(), out.p, nullptr));
    char label[64];
    snprintf(label, sizeof label, "embed %s", name);
    check_embedded(label, ids, out.download(), wf, rows, cols);
}

/* The embedding lookup from a table in the device layout (slm_cuda_embed_device_layout):
 * every row, in reverse, then ids out of range, against slm_cpu_dequantize_row of the GGUF rows. */
static void test_embed_device(uint32_t type, int64_t rows, int64_t cols)
{
    std::vector<uint8_t> wh = rand_weights(type, rows, cols);
    std::vector<float> wf = cpu_dequant(type, wh, rows, cols);
    std::vector<uint8_t> wd(rows * slm_cuda_device_row_bytes(type, cols));
    RC_OK(slm_cuda_to_device_layout(type, wh.data(), rows, cols, wd.data()));
    dev_buf<uint8_t> w(wd);
    std::vector<int32_t> ids;
    for (int64_t r = rows - 1; r >= 0; r--) ids.push_back((int32_t)r);
    ids.push_back(-1);
    ids.push_back((int32_t)rows);
    dev_buf<int32_t> dids(ids);
    dev_buf<float> out(ids.size() * cols);
    RC_OK(slm_cuda_embed_device_layout(type, w.p, rows, cols, dids.p, (int)ids.size(), out.p, nullptr));
    int before = failures;
    char label[64];
    snprintf(label, sizeof label, "embed (device layout) %s cols=%lld", tname(type), (long long)cols);
    check_embedded(label, ids, out.download(), wf, rows, cols);
    if (failures == before)
        printf("embed (device layout) %s %lldx%lld: every row bit-identical to slm_cpu_dequantize_row\n", tname(type),
               (long long)rows, (long long)cols);
}

/* ---- the GEMM path ---- */

/*
 * Bound: x and W are rounded to f16 (relative 2^-11 each, or an absolute 2^-25 where the
 * value is below f16's normal range), the products are exact in fp32 and summed in fp32
 * over cols terms: |err| <= (2 u16 + u16^2 + (cols + 2) u) sum|w x| + 2^-24 sum(|w| + |x|),
 * plus u |y| when accumulating.
 */
static void test_gemm_type(cublasHandle_t h, uint32_t type, int64_t rows, int64_t cols)
{
    const char *name = tname(type);
    std::vector<uint8_t> wh = rand_weights(type, rows, cols);
    std::vector<float> wf = cpu_dequant(type, wh, rows, cols);
    dev_buf<uint8_t> w(wh);
    const int n = 9;
    std::vector<float> xh = rand_floats(n * cols), y0 = rand_floats(n * rows);
    dev_buf<float> x(xh), y(n * rows);
    /* the whole weight in one tile, and the least scratch (tiles of 64 rows: 64 + 3) */
    for (size_t scratch_bytes :
         {slm_cuda_matmul_gemm_scratch(rows, cols, n), slm_cuda_matmul_gemm_min_scratch(cols, n)}) {
        dev_buf<uint8_t> scratch(scratch_bytes);
        for (int accumulate = 0; accumulate < 2; accumulate++) {
            if (accumulate) y.upload(y0);
            else y.poison();
            RC_OK(slm_cuda_matmul_gemm(h, type, w.p, rows, cols, x.p, n, y.p, accumulate, scratch.p, scratch_bytes,
                                       nullptr));
            CUDA_OK(cudaDeviceSynchronize());
            std::vector<float> got = y.download();
            std::vector<double> want(n * rows), bound(n * rows);
            for (int t = 0; t < n; t++)
                for (int64_t r = 0; r < rows; r++) {
                    double s = 0, sa = 0, sabs = 0;
                    for (int64_t k = 0; k < cols; k++) {
                        double a = wf[r * cols + k], b = xh[t * cols + k];
                        s += a * b, sa += fabs(a * b), sabs += fabs(a) + fabs(b);
                    }
                    double y_old = accumulate ? y0[t * rows + r] : 0.0;
                    want[t * rows + r] = s + y_old;
                    bound[t * rows + r] = (2 * U16 + U16 * U16 + (double)(cols + 2) * U32) * sa + 0x1p-24 * sabs +
                                          U32 * fabs(y_old) + 1e-30;
                }
            char what[80];
            snprintf(what, sizeof what, "gemm %s %s%s", name,
                     scratch_bytes == slm_cuda_matmul_gemm_min_scratch(cols, n) ? "tiled" : "one tile",
                     accumulate ? " accumulate" : "");
            compare(what, got.data(), want.data(), bound.data(), (size_t)n * rows);
        }
    }
}

/* ---- RMSNorm and the element-wise ops ---- */

/* RMSNorm: the CPU's operations in its order (a double sum of float squares), so its bits. */
static void test_rmsnorm(int n, int dim)
{
    std::vector<float> xh = rand_floats(n * dim), gh(dim);
    for (auto &g : gh) g = 1.0f + 0.5f * frand();
    for (int i = 0; i < dim; i += 7) xh[i] *= 30.0f; /* some larger values */
    for (int i = 3; i < dim; i += 11) xh[i] *= 1e-4f; /* and small ones: the double sum rounds */
    dev_buf<float> x(xh), gamma(gh), out(n * dim);
    const float eps = 1e-5f;
    RC_OK(slm_cuda_rmsnorm(x.p, gamma.p, n, dim, eps, out.p, nullptr));
    std::vector<float> got = out.download(), ref(n * dim);
    for (int r = 0; r < n; r++) slm_cpu_rmsnorm(&xh[r * dim], gh.data(), dim, eps, &ref[r * dim]);
    char what[64];
    snprintf(what, sizeof what, "rmsnorm n=%d dim=%d", n, dim);
    compare_bits(what, got.data(), ref.data(), got.size());

    /* in place gives the same bits, and a row alone the bits it has among n */
    RC_OK(slm_cuda_rmsnorm(x.p, gamma.p, n, dim, eps, x.p, nullptr));
    std::vector<float> inplace = x.download();
    snprintf(what, sizeof what, "rmsnorm in place dim=%d", dim);
    compare_bits(what, inplace.data(), got.data(), got.size());
    x.upload(xh);
    dev_buf<float> one(dim);
    RC_OK(slm_cuda_rmsnorm(x.p + (n - 1) * dim, gamma.p, 1, dim, eps, one.p, nullptr));
    std::vector<float> alone = one.download();
    snprintf(what, sizeof what, "rmsnorm last row alone dim=%d", dim);
    compare_bits(what, alone.data(), &got[(n - 1) * dim], dim);
}

/* RMSNorm's order of the double sum is visible: a row whose squares sum to a float tie in one
 * order (4.25 + half a float ulp) and past it in another, through three quarter-ulp terms of the
 * double, lost when each meets the large sum alone and kept when two meet first. The places were
 * searched so that llama.cpp's serial chain and the butterfly taken the other way round (offsets
 * 1, 2, 4, 8, 16) both round differently from slm_cpu_rmsnorm's lanes; the kernel must give the
 * lanes' bits. */
static void test_rmsnorm_order(void)
{
    const int dim = 128;
    std::vector<float> xh(dim, 0.0f), gh(dim, 1.0f), ref(dim), serial(dim);
    xh[0] = 2.0f, xh[1] = 0.5f, xh[108] = ldexpf(1.0f, -11);
    xh[51] = xh[57] = xh[79] = ldexpf(1.0f, -26);
    slm_cpu_rmsnorm(xh.data(), gh.data(), dim, 0.0f, ref.data());
    double sum = 0.0;
    for (int i = 0; i < dim; i++) sum += (double)(xh[i] * xh[i]);
    float scale = 1.0f / sqrtf((float)(sum / dim));
    for (int i = 0; i < dim; i++) serial[i] = xh[i] * scale * gh[i];
    CHECK(memcmp(ref.data(), serial.data(), sizeof(float) * dim) != 0,
          "rmsnorm order row: expected the serial sum and the lanes to differ, got the same bits");
    dev_buf<float> x(xh), gamma(gh), out(dim);
    RC_OK(slm_cuda_rmsnorm(x.p, gamma.p, 1, dim, 0.0f, out.p, nullptr));
    std::vector<float> got = out.download();
    compare_bits("rmsnorm order row", got.data(), ref.data(), dim);
}

/* SwiGLU: the CPU's exp polynomial in its 16-lane form (kernels/cpu/expf.h; the GPU does not
 * follow the CPU's choice of lanes) and operations, so its bits (large |g| included). */
static void test_elementwise(void)
{
    const size_t len = 1001;
    std::vector<float> gh(len), uh = rand_floats(len);
    for (auto &g : gh) g = 8.0f * frand();
    gh[0] = -100.0f, gh[1] = 100.0f, gh[2] = 0.0f, gh[3] = -90.0f, gh[4] = -130.0f, gh[5] = 200.0f;
    dev_buf<float> gate(gh), up(uh), out(len);
    RC_OK(slm_cuda_swiglu(gate.p, up.p, len, out.p, nullptr));
    std::vector<float> got = out.download(), ref(len);
    slm_cpu_swiglu_lanes(gh.data(), uh.data(), len, 16, ref.data());
    compare_bits("swiglu", got.data(), ref.data(), len);

    /* GeGLU: the table of slm_cpu_geglu (f16 GELU of every f16), as the backend makes it, read at
     * gate rounded to f16: the CPU's bits, its branches at -10 and 10 and f16 ties included; also
     * in place (out = gate). */
    {
        std::vector<uint16_t> th(SLM_CUDA_GELU_TABLE);
        std::vector<float> hx(SLM_CUDA_GELU_TABLE), one(SLM_CUDA_GELU_TABLE, 1.0f);
        for (int i = 0; i < SLM_CUDA_GELU_TABLE; i++) {   /* +-10: the float next to it inside, as the backend */
            hx[i] = slm_half_to_f32((uint16_t)i);
            if (std::fabs(hx[i]) >= 10.0f) hx[i] = std::nextafter(hx[i], 0.0f);
        }
        slm_cpu_geglu(hx.data(), one.data(), hx.size(), hx.data());
        for (int i = 0; i < SLM_CUDA_GELU_TABLE; i++) th[i] = slm_f32_to_half(hx[i]);
        dev_buf<uint16_t> table(th);
        std::vector<float> gg(len);
        for (auto &g : gg) g = 6.0f * frand();
        gg[0] = -10.0f, gg[1] = 10.0f, gg[2] = -9.999f, gg[3] = 9.999f, gg[4] = -1e-8f, gg[5] = 0.0f;
        gg[6] = 1.00048828125f, gg[7] = -30.0f, gg[8] = 40.0f, gg[9] = 2.0f + 0x1p-10f;   /* f16 ties, far tails */
        dev_buf<float> ggate(gg), gout(len);
        RC_OK(slm_cuda_geglu(ggate.p, up.p, table.p, len, gout.p, nullptr));
        std::vector<float> ggot = gout.download(), gref(len);
        slm_cpu_geglu(gg.data(), uh.data(), len, gref.data());
        compare_bits("geglu", ggot.data(), gref.data(), len);
        RC_OK(slm_cuda_geglu(ggate.p, up.p, table.p, len, ggate.p, nullptr));
        ggot = ggate.download();
        compare_bits("geglu in place", ggot.data(), gref.data(), len);
    }

    /* scale: one rounding */
    {
        std::vector<float> sh = rand_floats(len), sref = sh;
        dev_buf<float> sx(sh);
        const float sc = std::sqrt(640.0f);   /* gemma3's embedding scale, sqrt(dim) */
        RC_OK(slm_cuda_scale(sx.p, len, sc, nullptr));
        std::vector<float> sgot = sx.download();
        slm_cpu_scale(sref.data(), len, sc);
        compare_bits("scale", sgot.data(), sref.data(), len);
    }

    /* softcap: the device's tanhf, within 2 ulp of the host's, so a few ulp of the cap apart */
    {
        std::vector<float> ch = rand_floats(len), cref = ch;
        for (size_t i = 0; i < len; i++) ch[i] = cref[i] = 80.0f * ch[i];   /* logits of order 50 */
        dev_buf<float> cx(ch);
        const float cap = 30.0f;
        RC_OK(slm_cuda_softcap(cx.p, len, cap, nullptr));
        std::vector<float> cgot = cx.download();
        slm_cpu_softcap(cref.data(), len, cap);
        double worst = 0;
        for (size_t i = 0; i < len; i++) worst = std::fmax(worst, std::fabs((double)cgot[i] - (double)cref[i]));
        CHECK(worst <= 8.0 * cap * 0x1p-24, "softcap: %g from the CPU's, above 8 ulp of the cap", worst);
        CHECK(std::fabs(cgot[0]) < cap && std::fabs(cref[0]) < cap, "softcap: |%g| not below the cap", cgot[0]);
    }

    /* add and add_bias: one rounding, the CPU's, so the same bits */
    std::vector<float> ah = rand_floats(len), bh = rand_floats(len);
    dev_buf<float> a(ah), b(bh);
    RC_OK(slm_cuda_add(a.p, b.p, len, nullptr));
    std::vector<float> sum = a.download(), sum_ref = ah;
    slm_cpu_add(sum_ref.data(), bh.data(), len);
    compare_bits("add", sum.data(), sum_ref.data(), len);

    const int n = 3, dim = 333;
    std::vector<float> xh = rand_floats(n * dim), biash = rand_floats(dim);
    dev_buf<float> x(xh), bias(biash);
    RC_OK(slm_cuda_add_bias(x.p, bias.p, n, dim, nullptr));
    std::vector<float> xb = x.download(), xb_ref = xh;
    for (int r = 0; r < n; r++) slm_cpu_add(&xb_ref[r * dim], biash.data(), dim);
    compare_bits("add_bias", xb.data(), xb_ref.data(), xb.size());

    /* gather_rows: copies, an id out of range gives NaN */
    const int x_rows = 5;
    std::vector<float> src = rand_floats(x_rows * dim);
    std::vector<int32_t> ids = {4, 0, 4, 7, 2};
    dev_buf<float> dsrc(src), dst(ids.size() * dim);
    dev_buf<int32_t> dids(ids);
    RC_OK(slm_cuda_gather_rows(dsrc.p, x_rows, dim, dids.p, (int)ids.size(), dst.p, nullptr));
    std::vector<float> g = dst.download();
    for (size_t i = 0; i < ids.size(); i++) {
        if (ids[i] < x_rows) {
            compare_bits("gather_rows", &g[i * dim], &src[ids[i] * dim], dim);
        } else {
            int nan = 0;
            for (int k = 0; k < dim; k++) nan += std::isnan(g[i * dim + k]);
            CHECK(nan == dim, "gather_rows id %d: expected a row of NaN, got %d NaN", ids[i], nan);
        }
    }
}

/* ---- bad arguments ---- */

#define REFUSED(call)                                                                                      \
    do {                                                                                                   \
        int rc_ = (call);                                                                                  \
        CHECK(rc_ == -EINVAL, "%s: expected -EINVAL, got %d", #call, rc_);                                 \
    } while (0)

static void test_bad_arguments(cublasHandle_t h)
{
    slm_emu_options o;
    slm_emu_get_options(&o);
    slm_emu_options quiet = o;
    quiet.quiet = 1;
    slm_emu_set_options(&quiet);

    const int64_t rows = 7, cols = 256;
    std::vector<uint8_t> wh = rand_weights(SLM_TYPE_Q4_K, rows, cols);
    dev_buf<uint8_t> w(wh);
    dev_buf<float> x(2 * cols), y(2 * rows), out(rows * cols);
    std::vector<float> host_x(2 * cols);

    std::vector<int32_t> host_ids = {0, 1};
    dev_buf<int32_t> ids(2);
    if (slm_emu_active()) {   /* what only the emulator's pointer check can see */
        /* a host pointer where device memory belongs */
        slm_emu_clear_report();
        REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows, cols, host_x.data(), 2, y.p, 0, nullptr));
        CHECK(strstr(slm_emu_last_report(), "x") != nullptr, "host x: expected a report naming x, got '%s'",
              slm_emu_last_report());
        REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, wh.data(), rows, cols, x.p, 2, y.p, 0, nullptr));
        REFUSED(slm_cuda_embed(SLM_TYPE_Q4_K, w.p, rows, cols, host_ids.data(), 2, out.p, nullptr));
        REFUSED(slm_cuda_rmsnorm(x.p, host_x.data(), 1, cols, 1e-5f, x.p, nullptr));
        REFUSED(slm_cuda_add(x.p, host_x.data(), cols, nullptr));
        /* more rows, tokens or elements than the buffers hold */
        REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows + 1, cols, x.p, 2, y.p, 0, nullptr));
        REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 3, y.p, 0, nullptr));
        REFUSED(slm_cuda_rmsnorm(x.p, x.p, 3, cols, 1e-5f, x.p, nullptr));
        REFUSED(slm_cuda_swiglu(x.p, x.p, 2 * cols + 1, x.p, nullptr));
        REFUSED(slm_cuda_geglu(x.p, x.p, (const uint16_t *)x.p, 2 * cols, x.p, nullptr));   /* table too short */
        REFUSED(slm_cuda_scale(x.p, 2 * cols + 1, 2.0f, nullptr));
        REFUSED(slm_cuda_softcap(x.p, 2 * cols + 1, 30.0f, nullptr));
        REFUSED(slm_cuda_softcap(x.p, 2 * cols, 0.0f, nullptr));   /* no cap: the caller's to skip */
        REFUSED(slm_cuda_softcap(x.p, 2 * cols, NAN, nullptr));
        REFUSED(slm_cuda_add_bias(x.p, y.p, 2, cols, nullptr));
        REFUSED(slm_cuda_gather_rows(x.p, 2, cols, ids.p, 3, out.p, nullptr));   /* more ids than held */
        /* out's rows spaced cols + 1 apart run 6 floats past its end; a scratch said to be 4 KB larger
         * than it is. No launcher can see either without the allocation's size: on a GPU they run
         * (the first would write past out), so they are made only here. */
        REFUSED(slm_cuda_dequantize(SLM_TYPE_Q4_K, w.p, rows, cols, SLM_TYPE_F32, out.p, cols + 1, nullptr));
        size_t need_emu = slm_cuda_matmul_gemm_min_scratch(cols, 2);
        dev_buf<uint8_t> scratch_emu(need_emu);
        REFUSED(slm_cuda_matmul_gemm(h, SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 2, y.p, 0, scratch_emu.p,
                                     need_emu + 4096, nullptr));
    }
    /* sizes that are not a whole number of blocks, or empty */
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows, 128, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_0, w.p, rows, 48, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, 0, cols, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 0, y.p, 0, nullptr));
    /* activation-only and unknown types, NULL, misaligned weights (16 bytes for Q4_K, 2 for Q4_0) */
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q8_K, w.p, 1, cols, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q8_1, w.p, 1, 32, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(77, w.p, 1, 32, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, nullptr, rows, cols, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 1, nullptr, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_K, w.p + 2, 1, cols, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_0, w.p + 1, 1, 32, x.p, 1, y.p, 0, nullptr));
    REFUSED(slm_cuda_matvec(SLM_TYPE_Q4_0, w.p, 1, 32, x.p + 1, 1, y.p, 0, nullptr));

    REFUSED(slm_cuda_dequantize(SLM_TYPE_Q4_K, w.p, rows, cols, SLM_TYPE_Q8_0, out.p, cols, nullptr));
    REFUSED(slm_cuda_dequantize(SLM_TYPE_Q4_K, w.p, rows, cols, SLM_TYPE_F32, out.p, cols - 1, nullptr));
    REFUSED(slm_cuda_dequantize(SLM_TYPE_Q4_K, w.p, rows, 200, SLM_TYPE_F32, out.p, cols, nullptr));
    REFUSED(slm_cuda_embed(SLM_TYPE_Q4_K, w.p, rows, cols, nullptr, 2, out.p, nullptr));
    /* the device layout: types without one, a misaligned table (16 bytes), no ids */
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_F32, w.p, rows, 64, ids.p, 2, out.p, nullptr));
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_BF16, w.p, rows, 64, ids.p, 2, out.p, nullptr));
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_Q8_0, w.p + 2, 2, 64, ids.p, 2, out.p, nullptr));
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_Q6_K, w.p + 8, 1, cols, ids.p, 2, out.p, nullptr));
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_Q4_0, w.p, 2, 48, ids.p, 2, out.p, nullptr));
    REFUSED(slm_cuda_embed_device_layout(SLM_TYPE_Q8_0, w.p, 2, 64, nullptr, 2, out.p, nullptr));

    size_t need = slm_cuda_matmul_gemm_min_scratch(cols, 2);
    dev_buf<uint8_t> scratch(need);
    REFUSED(slm_cuda_matmul_gemm(h, SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 2, y.p, 0, scratch.p,
                                 slm_cuda_matmul_gemm_scratch(0, cols, 2), nullptr));
    REFUSED(slm_cuda_matmul_gemm(nullptr, SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 2, y.p, 0, scratch.p, need, nullptr));
    REFUSED(slm_cuda_matmul_gemm(h, SLM_TYPE_Q4_K, w.p, rows, cols, x.p, 2, y.p, 0, scratch.p + 16, need - 16,
                                 nullptr));

    REFUSED(slm_cuda_gather_rows(x.p, 2, cols / 2, ids.p, 2, x.p + cols / 2, nullptr));   /* dst overlaps x */

    CHECK(slm_cuda_row_bytes(SLM_TYPE_Q6_K, 512) == 420, "row bytes Q6_K 512: expected 420, got %zu",
          slm_cuda_row_bytes(SLM_TYPE_Q6_K, 512));
    CHECK(slm_cuda_row_bytes(SLM_TYPE_Q6_K, 500) == 0, "row bytes Q6_K 500: expected 0, got %zu",
          slm_cuda_row_bytes(SLM_TYPE_Q6_K, 500));
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
    slm_emu_set_options(&o);
}

int main(void)
{
    slm_emu_options o;
    slm_emu_get_options(&o);
    o.racecheck = 1;
    slm_emu_set_options(&o);

    cublasHandle_t h = nullptr;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    const int64_t rows = 67;
    for (uint32_t type : weight_types) {
        int64_t cols = slm_qblock_elems(type) == SLM_QK_K ? 512 : 544; /* 544 = 17 blocks of 32 */
        test_matvec_type(type, rows, cols);
        test_dequant_type(type, rows, cols);
        test_gemm_type(h, type, rows, cols);
    }
    /* the device layout's embedding: tails of 1, 3, 1, 0 and 2 blocks; padded Q6_K blocks */
    for (uint32_t type : weight_types) {
        if (!slm_cuda_has_device_layout(type)) continue;
        if (slm_qblock_elems(type) == SLM_QK_K) {
            test_embed_device(type, 9, 256 * 3);
        } else {
            for (int64_t cols : {32 * 5, 32 * 7, 544, 32 * 8, 576}) test_embed_device(type, 9, cols);
        }
    }
    /* K-quant rows of 72 units: each lane loops over several units */
    for (uint32_t type : {SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K}) test_matvec_type(type, 13, 9 * 256);
    /* the plain types on rows that are not 16-byte multiples: the element-wise units */
    test_matvec_type(SLM_TYPE_F32, 5, 37);
    test_matvec_type(SLM_TYPE_F16, 5, 36);
    test_dequant_type(SLM_TYPE_BF16, 5, 37);
    test_rmsnorm(3, 576);
    test_rmsnorm(2, 333);
    test_rmsnorm_order();
    test_elementwise();
    test_bad_arguments(h);
    cublasDestroy(h);
    if (failures) {
        printf("test_cuda_ops: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_ops: ok\n");
    return 0;
}
