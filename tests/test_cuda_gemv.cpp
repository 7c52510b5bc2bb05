/* test_cuda_gemv: the decode GEMV of kernels/cuda/gemv.cu (slm_cuda_gemv_quantize, slm_cuda_gemv_q8,
 * slm_cuda_gemv) under the SIMT emulator (and on a GPU as test_cuda_gemv_gpu):
 * - tolerance: for every weight type with a device layout, odd shapes (rows 67, 35, 19; 32-element
 *   types with nb = 1, 6, 11, 18, 44 blocks: tails of 1, 2, 3, 2, 0 blocks and L = 1, 8, 16, 32, 32
 *   lanes (one block a unit); K-quants with 1, 2, 3, 16 blocks: L = 4, 8, 16, 32), n = 1..8,
 *   weights of >= 2048 rows (2051; 1500 + 300 + 301 in one launch; a SwiGLU pair of 2049), where
 *   the 32-element types take 2 rows a lane for n >= 2 and 1 alone; their rows of 100 blocks
 *   (segments of 3-4 units, the next one loaded a unit ahead), alone and as a SwiGLU pair; a
 *   weight of 4300 rows at 32 lanes (more row groups than the 1056 blocks); the four prologues
 *   (x quantized by slm_cuda_gemv_quantize + slm_cuda_gemv_q8, with and without RMSNorm; x quantized inside the
 *   GEMV by slm_cuda_gemv, with and without RMSNorm) and the three epilogues (store, accumulate,
 *   SwiGLU pair), one weight and three (Q, K, V of different rows): every output within the bound
 *   below of a float64 reference computed from the dequantized weight (slm_cpu_dequantize_row of
 *   the GGUF rows) and the unquantized x (RMS-normed in float64 where the prologue norms);
 * - batch invariance: every token's outputs bit-identical when the token is alone (n = 1) and
 *   inside n = 2..8 at several slots (the 8 tokens rotated by n; for n = 8 by every shift), also
 *   where n = 1 runs 1 row a lane and n >= 2 runs 2;
 * - the fused prologues bit-identical to quantize + slm_cuda_gemv_q8 (the same device code), and the
 *   quantizer's bytes those of a host mirror of its documented order (test_quantizer_order);
 * - refusals (-EINVAL): NULLs, n out of 1..8, types without a device layout, cols not whole
 *   blocks, misaligned pointers, too many weights, a SwiGLU pair of unequal rows, x over the
 *   shared-memory bound, and (emulated) buffers smaller than the arguments say.
 *
 * The bound. x is quantized per 32 elements to 8 bits: x' = d q with d = amax / 127 and
 * q = round(x 127 / amax), so |x - x'| <= amax / 254 (plus float rounding of d and of
 * 127 / amax, a few ulp of |x|). The weight is exact (the integer dots are exact), so for an
 * output y = sum_c w_c x_c:
 *     |y_gpu - y_ref| <= 1.001 * sum_blocks (amax_b / 254) * sum_{c in b} |w_c|
 *                        + 2e-5 * sum_c |w_c x_c|        (float32 sums, the norm's scale)
 * Accumulate adds 1e-6 |y0| (one more float add); SwiGLU propagates the gate's and the up's
 * bounds eg, eu: |silu'(g)| eg |u| + |silu(g)| eu + eg eu, plus 1e-5 |out|, with
 * |silu'| <= 1.1. The test prints, per configuration, the largest error as a fraction of its
 * bound and the max abs / rel error. Random inputs from a fixed seed (printed). */
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
#include <string>
#include <vector>

#include "tests/cuda_weights.h"

static const uint32_t qtypes[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1,
                                  SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};

#define TOKENS 8
static const float EPS = 1e-5f;

/* The prologues: x quantized by slm_cuda_gemv_quantize then slm_cuda_gemv_q8, or inside
 * slm_cuda_gemv; each with and without RMSNorm. */
enum { M_Q8, M_FUSED, M_Q8_NORM, M_FUSED_NORM, M_COUNT };
static const char *mode_name[M_COUNT] = {"quantize+gemv_q8", "gemv", "quantize(norm)+gemv_q8", "gemv(norm)"};
static const char *epi_name[3] = {"store", "accumulate", "swiglu"};

/* n_w weights of one type and cols, their float64 dequantized rows and device copies */
struct weights {
    uint32_t type;
    int64_t cols;
    std::vector<int64_t> rows;
    std::vector<std::vector<double>> deq;    /* (rows, cols) each */
    std::vector<dev_buf<uint8_t> *> dev;     /* device layout */
    std::vector<const void *> ptr;
    weights(uint32_t t, int64_t c, std::vector<int64_t> r) : type(t), cols(c), rows(r)
    {
        for (int64_t nr : rows) {
            std::vector<uint8_t> w = rand_weights(type, nr, cols);
            const size_t rb = slm_cuda_row_bytes(type, cols);
            std::vector<float> f((size_t)cols);
            std::vector<double> d((size_t)(nr * cols));
            for (int64_t i = 0; i < nr; i++) {
                CHECK(slm_cpu_dequantize_row(type, &w[(size_t)i * rb], f.data(), cols) == 0, "dequantize");
                for (int64_t c2 = 0; c2 < cols; c2++) d[(size_t)(i * cols + c2)] = f[(size_t)c2];
            }
            deq.push_back(d);
            std::vector<uint8_t> wd((size_t)nr * slm_cuda_device_row_bytes(type, cols));
            RC_OK(slm_cuda_to_device_layout(type, w.data(), nr, cols, wd.data()));
            dev.push_back(new dev_buf<uint8_t>(wd));
            ptr.push_back(dev.back()->p);
        }
    }
    ~weights()
    {
        for (auto *d : dev) delete d;
    }
};

/* The 8 tokens' x (TOKENS, cols), gamma, and each output's y0 (TOKENS, rows) for accumulate. */
struct inputs {
    std::vector<float> x, gamma;
    std::vector<std::vector<float>> y0;
};

static inputs make_inputs(const weights &ws)
{
    inputs in;
    const int64_t cols = ws.cols;
    in.x.resize((size_t)(TOKENS * cols));
    for (int t = 0; t < TOKENS; t++) {
        float scale = powf(10.0f, rand_range(-2.0f, 1.0f));
        for (int64_t c = 0; c < cols; c++) in.x[(size_t)(t * cols + c)] = scale * frand();
        if (t == 3) std::fill(&in.x[(size_t)(t * cols)], &in.x[(size_t)(t * cols + 32)], 0.0f);  /* amax = 0 */
        if (t == 5) in.x[(size_t)(t * cols + cols / 2)] = 40.0f * scale;                         /* an outlier */
    }
    in.gamma.resize((size_t)cols);
    for (auto &g : in.gamma) g = rand_range(0.2f, 2.0f);
    for (int64_t r : ws.rows) {
        std::vector<float> y0((size_t)(TOKENS * r));
        for (auto &v : y0) v = 4.0f * frand();
        in.y0.push_back(y0);
    }
    return in;
}

/* One call for the tokens idx (slot s holds token idx[s]); the outputs (n, rows) each. */
static std::vector<std::vector<float>> run(const weights &ws, const inputs &in, int mode, int epi,
                                           const std::vector<int> &idx, std::vector<uint8_t> *xq = nullptr)
{
    const int n = (int)idx.size(), n_w = (int)ws.rows.size(), n_out = epi == SLM_CUDA_GEMV_SWIGLU ? 1 : n_w;
    const int64_t cols = ws.cols;
    std::vector<float> x((size_t)(n * cols));
    for (int s = 0; s < n; s++) std::copy_n(&in.x[(size_t)(idx[s] * cols)], cols, &x[(size_t)(s * cols)]);
    dev_buf<float> dx(x), dg(in.gamma);
    std::vector<dev_buf<float> *> dy;
    std::vector<float *> yp;
    for (int o = 0; o < n_out; o++) {
        const int64_t r = ws.rows[o];
        dy.push_back(new dev_buf<float>((size_t)(n * r)));
        if (epi == SLM_CUDA_GEMV_ACCUMULATE) {
            std::vector<float> y0((size_t)(n * r));
            for (int s = 0; s < n; s++) std::copy_n(&in.y0[o][(size_t)(idx[s] * r)], r, &y0[(size_t)(s * r)]);
            dy.back()->upload(y0);
        }
        yp.push_back(dy.back()->p);
    }
    if (epi == SLM_CUDA_GEMV_SWIGLU) yp.push_back(nullptr);
    const bool norm = mode == M_Q8_NORM || mode == M_FUSED_NORM;
    if (mode == M_Q8 || mode == M_Q8_NORM) {
        dev_buf<uint8_t> dq(slm_cuda_gemv_act_bytes(n, cols));
        RC_OK(slm_cuda_gemv_quantize(dx.p, norm ? dg.p : nullptr, EPS, n, cols, dq.p, nullptr));
        RC_OK(slm_cuda_gemv_q8(ws.type, n_w, ws.ptr.data(), ws.rows.data(), cols, dq.p, n, yp.data(), epi, nullptr));
        if (xq) *xq = dq.download();
    } else {
        RC_OK(slm_cuda_gemv(ws.type, n_w, ws.ptr.data(), ws.rows.data(), cols, dx.p, norm ? dg.p : nullptr, EPS, n,
                            yp.data(), epi, nullptr));
    }
    std::vector<std::vector<float>> out;
    for (auto *d : dy) out.push_back(d->download()), delete d;
    return out;
}

/* The float64 reference of token t's output o, row r, and its bound (the header's). */
struct ref_val {
    double y, bound;
};

static double silu(double g) { return g / (1.0 + exp(-g)); }

/* dot of weight i, row r with xr (cols): the value and its bound */
static ref_val ref_dot(const weights &ws, int i, int64_t r, const std::vector<double> &xr)
{
    const int64_t cols = ws.cols;
    const double *w = &ws.deq[(size_t)i][(size_t)(r * cols)];
    double y = 0, qb = 0, mag = 0;
    for (int64_t b = 0; b < cols; b += 32) {
        double amax = 0, wsum = 0;
        for (int c = 0; c < 32; c++) {
            amax = std::max(amax, fabs(xr[(size_t)(b + c)]));
            wsum += fabs(w[b + c]);
            y += w[b + c] * xr[(size_t)(b + c)];
            mag += fabs(w[b + c] * xr[(size_t)(b + c)]);
        }
        qb += amax / 254.0 * wsum;
    }
    return {y, 1.001 * qb + 2e-5 * mag + 1e-30};
}

static std::vector<double> ref_x(const inputs &in, int64_t cols, int t, bool norm)
{
    std::vector<double> xr((size_t)cols);
    double ss = 0;
    for (int64_t c = 0; c < cols; c++) {
        xr[(size_t)c] = in.x[(size_t)(t * cols + c)];
        ss += xr[(size_t)c] * xr[(size_t)c];
    }
    if (norm) {
        const double scale = 1.0 / sqrt(ss / (double)cols + (double)EPS);
        for (int64_t c = 0; c < cols; c++) xr[(size_t)c] = xr[(size_t)c] * scale * in.gamma[(size_t)c];
    }
    return xr;
}

struct err_stats {
    double max_abs = 0, max_rel = 0, max_frac = 0;
    int bad = 0;
};

/* got (outputs of the tokens idx) against the reference: counts and prints what is out of bound */
static void check_tolerance(const char *what, const weights &ws, const inputs &in, int mode, int epi,
                            const std::vector<int> &idx, const std::vector<std::vector<float>> &got, err_stats *st)
{
    const bool norm = mode == M_Q8_NORM || mode == M_FUSED_NORM;
    for (size_t s = 0; s < idx.size(); s++) {
        const int t = idx[s];
        const std::vector<double> xr = ref_x(in, ws.cols, t, norm);
        for (size_t o = 0; o < got.size(); o++) {
            const int64_t rows = ws.rows[o];
            for (int64_t r = 0; r < rows; r++) {
                ref_val v = ref_dot(ws, (int)o, r, xr);
                if (epi == SLM_CUDA_GEMV_ACCUMULATE) {
                    const double y0 = in.y0[o][(size_t)(t * rows + r)];
                    v.y += y0;
                    v.bound += 1e-6 * fabs(y0);
                } else if (epi == SLM_CUDA_GEMV_SWIGLU) {
                    const ref_val u = ref_dot(ws, 1, r, xr);
                    const double out = silu(v.y) * u.y;
                    v.bound = 1.1 * v.bound * fabs(u.y) + fabs(silu(v.y)) * u.bound + v.bound * u.bound +
                              1e-5 * fabs(out);
                    v.y = out;
                }
                const float g = got[o][s * (size_t)rows + (size_t)r];
                const double err = fabs((double)g - v.y);
                if (!(err <= st->max_abs)) st->max_abs = err;
                const double rel = err / std::max(1e-30, fabs(v.y));
                if (!(rel <= st->max_rel)) st->max_rel = rel;
                const double frac = err / v.bound;
                if (!(frac <= st->max_frac)) st->max_frac = frac;
                if (!(err <= v.bound) && st->bad++ < 10)
                    printf("  %s: output %zu token %d (slot %zu of %zu) row %lld: expected %.9g +- %.3g, got %.9g\n",
                           what, o, t, s, idx.size(), (long long)r, v.y, v.bound, g);
            }
        }
    }
}

/* The device's quantized x (slm_cuda_gemv_quantize's bytes for the tokens idx) as doubles, token at
 * slot s: x'_c = d_b q_c; checked against the float64 x: |q| <= 127, |x - x'| <= amax_b / 254 (plus
 * 4e-6 |x| for the float rounding of d, 127 / amax and the norm's scale), s_b = d_b * sum(q). */
static std::vector<double> device_x(const char *what, const inputs &in, int64_t cols, const std::vector<int> &idx,
                                    size_t s, bool norm, const std::vector<uint8_t> &xq, err_stats *st)
{
    const size_t n = idx.size(), nbr = (size_t)cols / 32;
    const int8_t *q = (const int8_t *)xq.data() + s * (size_t)cols;
    const float *ds = (const float *)(xq.data() + n * (size_t)cols) + 2 * s * nbr;
    const std::vector<double> xr = ref_x(in, cols, idx[s], norm);
    std::vector<double> xd((size_t)cols);
    for (size_t b = 0; b < nbr; b++) {
        double amax = 0;
        int sum = 0;
        for (size_t c = 32 * b; c < 32 * b + 32; c++) amax = std::max(amax, fabs(xr[c])), sum += q[c];
        const double want_s = (double)ds[2 * b] * sum;
        if (!(fabs(ds[2 * b + 1] - want_s) <= 1e-6 * fabs(want_s)) && st->bad++ < 10)
            printf("  %s: token %d block %zu: expected s = d * sum(q) = %.9g, got %.9g\n", what, idx[s], b, want_s,
                   ds[2 * b + 1]);
        for (size_t c = 32 * b; c < 32 * b + 32; c++) {
            xd[c] = (double)ds[2 * b] * q[c];
            const double bound = amax / 254.0 * 1.0001 + 4e-6 * fabs(xr[c]) + 1e-30;
            if ((q[c] < -127 || !(fabs(xd[c] - xr[c]) <= bound)) && st->bad++ < 10)
                printf("  %s: token %d x[%zu] = %.9g quantized to %d * %.9g = %.9g, expected within %.3g\n", what,
                       idx[s], c, xr[c], q[c], ds[2 * b], xd[c], bound);
        }
    }
    return xd;
}

/* The tight check (two-launch prologues): got against the float64 dot of the dequantized weight
 * with the device's own quantized x, which leaves only the float32 rounding of the GEMV's sums:
 * |err| <= 3e-5 * sum_b (sum_c |w_c x'_c| + max_c |w_c| * sum_c |x'_c|) (the second term for
 * the offsets m of Q4_1 / Q5_1 and the mins of Q4_K / Q5_K, whose products are not in the first),
 * through the epilogue as in the header. Catches what the quantization bound is too loose for. */
static void check_tight(const char *what, const weights &ws, const inputs &in, int mode, int epi,
                        const std::vector<int> &idx, const std::vector<std::vector<float>> &got,
                        const std::vector<uint8_t> &xq, err_stats *st)
{
    const bool norm = mode == M_Q8_NORM;
    const int64_t cols = ws.cols;
    for (size_t s = 0; s < idx.size(); s++) {
        const int t = idx[s];
        const std::vector<double> xd = device_x(what, in, cols, idx, s, norm, xq, st);
        auto dot = [&](int i, int64_t r) {
            const double *w = &ws.deq[(size_t)i][(size_t)(r * cols)];
            double y = 0, mag = 0;
            for (int64_t b = 0; b < cols; b += 32) {
                double wmax = 0, xsum = 0;
                for (int64_t c = b; c < b + 32; c++) {
                    y += w[c] * xd[(size_t)c];
                    mag += fabs(w[c] * xd[(size_t)c]);
                    wmax = std::max(wmax, fabs(w[c]));
                    xsum += fabs(xd[(size_t)c]);
                }
                mag += wmax * xsum;
            }
            return ref_val{y, 3e-5 * mag + 1e-30};
        };
        for (size_t o = 0; o < got.size(); o++) {
            const int64_t rows = ws.rows[o];
            for (int64_t r = 0; r < rows; r++) {
                ref_val v = dot((int)o, r);
                if (epi == SLM_CUDA_GEMV_ACCUMULATE) {
                    const double y0 = in.y0[o][(size_t)(t * rows + r)];
                    v.y += y0;
                    v.bound += 1e-6 * fabs(y0);
                } else if (epi == SLM_CUDA_GEMV_SWIGLU) {
                    const ref_val u = dot(1, r);
                    const double out = silu(v.y) * u.y;
                    v.bound = 1.1 * v.bound * fabs(u.y) + fabs(silu(v.y)) * u.bound + v.bound * u.bound +
                              1e-5 * fabs(out);
                    v.y = out;
                }
                const float g = got[o][s * (size_t)rows + (size_t)r];
                const double err = fabs((double)g - v.y), frac = err / v.bound;
                if (!(frac <= st->max_frac)) st->max_frac = frac;
                if (!(err <= v.bound) && st->bad++ < 10)
                    printf("  %s (tight): output %zu token %d (slot %zu of %zu) row %lld: expected %.9g +- %.3g, "
                           "got %.9g\n",
                           what, o, t, s, idx.size(), (long long)r, v.y, v.bound, g);
            }
        }
    }
}

/* Bits of the token at slot s of got against the same token alone: the count of differing floats. */
static int compare_slot(const char *what, const std::vector<std::vector<float>> &got, size_t s,
                        const std::vector<std::vector<float>> &alone, const weights &ws, int token, int n)
{
    int bad = 0;
    for (size_t o = 0; o < got.size(); o++) {
        const size_t rows = (size_t)ws.rows[o];
        for (size_t r = 0; r < rows; r++) {
            const float a = alone[o][r], g = got[o][s * rows + r];
            if (memcmp(&a, &g, 4) != 0 && bad++ < 3)
                printf("  %s: token %d at slot %zu of n=%d, output %zu row %zu: alone %.9g (%08x), here %.9g (%08x)\n",
                       what, token, s, n, o, r, a, *(const uint32_t *)&a, g, *(const uint32_t *)&g);
        }
    }
    return bad;
}

/* Every n = 1..8 of one (weights, mode, epilogue): tolerance and batch invariance. Returns the
 * tokens' outputs alone (for the comparison of the prologues). */
static std::vector<std::vector<std::vector<float>>> test_config(const weights &ws, const inputs &in, int mode, int epi,
                                                                bool all_shifts)
{
    char what[192];
    std::string rows_s;
    for (int64_t r : ws.rows) rows_s += (rows_s.empty() ? "" : ",") + std::to_string(r);
    snprintf(what, sizeof what, "gemv %s rows %s x %lld (L=%d) %s %s", tname(ws.type), rows_s.c_str(),
             (long long)ws.cols, slm_cuda_gemv_lanes(ws.type, ws.cols), mode_name[mode], epi_name[epi]);
    err_stats st, tight;
    const bool two_launch = mode == M_Q8 || mode == M_Q8_NORM;
    std::vector<uint8_t> xq;
    std::vector<std::vector<std::vector<float>>> alone(TOKENS);
    for (int t = 0; t < TOKENS; t++) {
        alone[t] = run(ws, in, mode, epi, {t}, &xq);
        check_tolerance(what, ws, in, mode, epi, {t}, alone[t], &st);
        if (two_launch) check_tight(what, ws, in, mode, epi, {t}, alone[t], xq, &tight);
    }
    int variant_bad = 0, launches = TOKENS;
    for (int n = 2; n <= TOKENS; n++) {
        for (int shift = 0; shift < TOKENS; shift++) {
            if (!(shift == n % TOKENS || (all_shifts && n == TOKENS))) continue;
            std::vector<int> idx((size_t)n);
            for (int s = 0; s < n; s++) idx[(size_t)s] = (s + shift) % TOKENS;
            std::vector<std::vector<float>> got = run(ws, in, mode, epi, idx, &xq);
            launches++;
            check_tolerance(what, ws, in, mode, epi, idx, got, &st);
            if (two_launch) check_tight(what, ws, in, mode, epi, idx, got, xq, &tight);
            for (int s = 0; s < n; s++) {
                const int token = idx[(size_t)s];
                variant_bad += compare_slot(what, got, (size_t)s, alone[(size_t)token], ws, token, n);
            }
        }
    }
    CHECK(st.bad == 0, "%s: expected every output within its bound, %d outside (max error %.3g of the bound)", what,
          st.bad, st.max_frac);
    CHECK(tight.bad == 0, "%s: expected every output within 3e-5 (relative) of the float64 dot with the device's "
          "quantized x, %d outside (max error %.3g of the bound)", what, tight.bad, tight.max_frac);
    CHECK(variant_bad == 0, "%s: expected each token's bits the same alone and in n = 2..8, %d floats differ", what,
          variant_bad);
    char tight_s[64] = "";
    if (two_launch) snprintf(tight_s, sizeof tight_s, " (tight: %.3f)", tight.max_frac);
    printf("%s: %d launches, n = 1..8: max abs %.3g, max rel %.3g, max %.3f of the bound%s; batch-invariant%s\n", what,
           launches, st.max_abs, st.max_rel, st.max_frac, tight_s, variant_bad ? " NOT" : "");
    return alone;
}

/* All four prologues of one (weights, epilogue); the fused ones bit-identical to the two-launch ones. */
static void test_prologues(const weights &ws, int epi, bool all_shifts, unsigned modes = (1u << M_COUNT) - 1)
{
    const inputs in = make_inputs(ws);
    std::vector<std::vector<std::vector<float>>> res[M_COUNT];
    for (int m = 0; m < M_COUNT; m++)
        if (modes >> m & 1) res[m] = test_config(ws, in, m, epi, all_shifts);
    for (int pair = 0; pair < 2; pair++) {
        const int a = pair ? M_Q8_NORM : M_Q8, b = pair ? M_FUSED_NORM : M_FUSED;
        if (!(modes >> a & 1) || !(modes >> b & 1)) continue;
        int bad = 0;
        for (int t = 0; t < TOKENS; t++)
            for (size_t o = 0; o < res[a][t].size(); o++)
                bad += memcmp(res[a][t][o].data(), res[b][t][o].data(), res[a][t][o].size() * 4) != 0;
        CHECK(bad == 0, "gemv %s cols %lld %s: expected %s bit-identical to %s, %d outputs differ", tname(ws.type),
              (long long)ws.cols, epi_name[epi], mode_name[b], mode_name[a], bad);
    }
}

/* The quantizer's order, mirrored on the host (docs/numerics.md, "The GPU"): the RMSNorm scale
 * as 128 threads sum it (thread i: x[i]^2, x[i + 128]^2, ... by fmaf in order; a butterfly 16..1
 * in each warp of 32; the 4 warp sums left to right; 1 / sqrt(sum / cols + eps)), then per block
 * of 32: v = (x * scale) * gamma, d = amax / 127, q = rint(v * (127 / amax)), s = d * sum(q).
 * Every IEEE operation is correctly rounded on both sides, so the bytes must be equal. */
static void mirror_quantize(const float *x, const float *gamma, int n, int64_t cols, std::vector<uint8_t> &out)
{
    const size_t nbr = (size_t)cols / 32;
    out.assign((size_t)n * (size_t)cols + (size_t)n * nbr * 8, 0);
    int8_t *q = (int8_t *)out.data();
    float *ds = (float *)(out.data() + (size_t)n * (size_t)cols);
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * (size_t)cols;
        float sc = 1.0f;
        if (gamma) {
            float total = 0.0f;
            for (int w = 0; w < 4; w++) {
                float s[32];
                for (int l = 0; l < 32; l++) {
                    s[l] = 0.0f;
                    for (int64_t i = 32 * w + l; i < cols; i += 128) s[l] = fmaf(xr[i], xr[i], s[l]);
                }
                for (int off = 16; off > 0; off >>= 1) {
                    float nx[32];
                    for (int l = 0; l < 32; l++) nx[l] = s[l] + s[l ^ off];
                    memcpy(s, nx, sizeof s);
                }
                total = w == 0 ? s[0] : total + s[0];
            }
            sc = 1.0f / sqrtf(total / (float)cols + EPS);
        }
        for (size_t b = 0; b < nbr; b++) {
            float v[32], amax = 0.0f;
            for (int e = 0; e < 32; e++) {
                const size_t c = 32 * b + (size_t)e;
                v[e] = gamma ? (xr[c] * sc) * gamma[c] : xr[c];
                amax = fmaxf(amax, fabsf(v[e]));
            }
            const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
            int sum = 0;
            for (int e = 0; e < 32; e++) {
                const int qi = (int)rintf(v[e] * id);
                q[(size_t)t * (size_t)cols + 32 * b + (size_t)e] = (int8_t)qi;
                sum += qi;
            }
            ds[2 * ((size_t)t * nbr + b)] = d;
            ds[2 * ((size_t)t * nbr + b) + 1] = d * (float)sum;
        }
    }
}

/* slm_cuda_gemv_quantize's bytes equal the mirror's, for row widths under, at and past one 128-thread
 * pass and batches of 1 to 8, with and without the norm. (The GEMV's and the MMQ's prologues are
 * held to these bytes by test_prologues and test_cuda_mmq.) */
static void test_quantizer_order(void)
{
    const int64_t widths[] = {32, 96, 160, 576, 640, 1536};
    int bad = 0, configs = 0;
    for (int64_t cols : widths) {
        for (int n : {1, 3, 8}) {
            std::vector<float> x((size_t)n * (size_t)cols), gamma((size_t)cols);
            for (int t = 0; t < n; t++) {
                const float scale = powf(10.0f, rand_range(-3.0f, 1.5f));
                for (int64_t c = 0; c < cols; c++) x[(size_t)t * (size_t)cols + (size_t)c] = scale * frand();
            }
            if (n > 1) std::fill_n(x.begin() + cols, 32, 0.0f);   /* a block of zeros: amax = 0 */
            for (auto &g : gamma) g = rand_range(0.2f, 2.0f);
            for (int norm = 0; norm < 2; norm++) {
                dev_buf<float> dx(x), dg(gamma);
                dev_buf<uint8_t> dq(slm_cuda_gemv_act_bytes(n, cols));
                RC_OK(slm_cuda_gemv_quantize(dx.p, norm ? dg.p : nullptr, EPS, n, cols, dq.p, nullptr));
                const std::vector<uint8_t> got = dq.download();
                std::vector<uint8_t> want;
                mirror_quantize(x.data(), norm ? gamma.data() : nullptr, n, cols, want);
                configs++;
                if (got.size() == want.size() && memcmp(got.data(), want.data(), got.size()) == 0) continue;
                size_t at = 0;
                while (at < got.size() && at < want.size() && got[at] == want[at]) at++;
                if (bad++ < 5)
                    printf("  quantizer cols %lld n %d%s: first differing byte %zu of %zu\n", (long long)cols, n,
                           norm ? " norm" : "", at, want.size());
            }
        }
    }
    CHECK(bad == 0, "quantizer: %d of %d configurations differ from the host mirror of the documented order", bad,
          configs);
    if (!bad) printf("quantizer: the documented order's bytes in %d configurations\n", configs);
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
    const uint32_t t = SLM_TYPE_Q4_K;
    dev_buf<uint8_t> w(rows * slm_cuda_device_row_bytes(t, cols) + 16);
    dev_buf<float> x(2 * cols + 4), y(2 * rows + 4), g(cols + 4);
    dev_buf<uint8_t> q(slm_cuda_gemv_act_bytes(2, cols) + 16);
    std::vector<float> host_x(2 * cols);
    const void *W[4] = {w.p, w.p, w.p, w.p};
    int64_t R[4] = {rows, rows, rows, rows};
    float *Y[4] = {y.p, y.p, y.p, y.p};
    const void *W_null[2] = {w.p, nullptr}, *W_bad[2] = {w.p, w.p + 8};
    float *Y_null[2] = {y.p, nullptr}, *Y_bad[1] = {(float *)((char *)y.p + 2)};
    int64_t R_bad[2] = {rows, 0}, R_uneq[2] = {rows, rows - 1};

    CHECK(slm_cuda_gemv_lanes(SLM_TYPE_Q4_0, 32) == 1 && slm_cuda_gemv_lanes(SLM_TYPE_Q4_1, 576) == 32 &&
              slm_cuda_gemv_lanes(SLM_TYPE_Q5_0, 32 * 6) == 8 && slm_cuda_gemv_lanes(SLM_TYPE_Q8_0, 32 * 6) == 8 &&
              slm_cuda_gemv_lanes(SLM_TYPE_Q4_1, 32 * 11) == 16 && slm_cuda_gemv_lanes(SLM_TYPE_Q5_K, 512) == 8 &&
              slm_cuda_gemv_lanes(SLM_TYPE_Q8_0, 576) == 32 && slm_cuda_gemv_lanes(SLM_TYPE_Q4_K, 256) == 4 &&
              slm_cuda_gemv_lanes(SLM_TYPE_Q6_K, 4096) == 32 && slm_cuda_gemv_lanes(SLM_TYPE_F32, 256) == 0 &&
              slm_cuda_gemv_lanes(SLM_TYPE_Q4_K, 128) == 0 && slm_cuda_gemv_lanes(SLM_TYPE_Q8_K, 256) == 0,
          "slm_cuda_gemv_lanes: a lane count differs from the rule (units a row, rounded up to a power of two, <= 32)");
    CHECK(slm_cuda_gemv_act_bytes(8, 576) == 8 * 576 + 8 * 18 * 8 && slm_cuda_gemv_act_bytes(0, 576) == 0 &&
              slm_cuda_gemv_act_bytes(9, 576) == 0 && slm_cuda_gemv_act_bytes(1, 48) == 0 &&
              slm_cuda_act_bytes(9, 576) == 9 * 576 + 9 * 18 * 8 && slm_cuda_act_bytes(SLM_CUDA_ACT_MAX_TOKENS + 1, 32) == 0,
          "slm_cuda_gemv_act_bytes");
    CHECK(slm_cuda_gemv_fits(SLM_TYPE_Q4_1, 4480, 8) && !slm_cuda_gemv_fits(SLM_TYPE_Q4_1, 4512, 8) &&
              slm_cuda_gemv_fits(SLM_TYPE_Q4_1, 38912, 1) && !slm_cuda_gemv_fits(SLM_TYPE_Q4_1, 38944, 1) &&
              slm_cuda_gemv_fits(SLM_TYPE_Q4_K, 11008, 3) && !slm_cuda_gemv_fits(SLM_TYPE_F16, 576, 1) &&
              !slm_cuda_gemv_fits(SLM_TYPE_Q4_1, 576, 9),
          "slm_cuda_gemv_fits: expected the shared-memory bound at %d bytes", SLM_CUDA_GEMV_SMEM);
    /* the quantizer */
    check_quantize_refusals(slm_cuda_gemv_quantize, "slm_cuda_gemv_quantize", x.p, g.p, q.p, cols, EPS);
    /* the GEMV, both launchers */
    for (int fused = 0; fused < 2; fused++) {
#define GEMV(type, nw, w_, r_, c_, n_, y_, epi)                                                                  \
    (fused ? slm_cuda_gemv(type, nw, w_, r_, c_, x.p, g.p, EPS, n_, y_, epi, nullptr)                          \
           : slm_cuda_gemv_q8(type, nw, w_, r_, c_, q.p, n_, y_, epi, nullptr))
        REFUSED(GEMV(t, 1, W, R, cols, 0, Y, SLM_CUDA_GEMV_STORE));                 /* n = 0 */
        REFUSED(GEMV(t, 1, W, R, cols, 9, Y, SLM_CUDA_GEMV_STORE));                 /* n > 8 */
        REFUSED(GEMV(SLM_TYPE_F32, 1, W, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));      /* no device layout */
        REFUSED(GEMV(SLM_TYPE_Q8_K, 1, W, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(77, 1, W, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 1, W, R, 128, 1, Y, SLM_CUDA_GEMV_STORE));                  /* not whole blocks */
        REFUSED(GEMV(t, 0, W, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));                 /* no weight */
        REFUSED(GEMV(t, 4, W, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));                 /* too many */
        REFUSED(GEMV(t, 1, W, R, cols, 1, Y, 3));                                   /* unknown epilogue */
        REFUSED(GEMV(t, 1, W, R, cols, 1, Y, SLM_CUDA_GEMV_SWIGLU));                /* SwiGLU needs 2 */
        REFUSED(GEMV(t, 2, W, R_uneq, cols, 1, Y, SLM_CUDA_GEMV_SWIGLU));           /* of equal rows */
        REFUSED(GEMV(t, 1, nullptr, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 1, W, nullptr, cols, 1, Y, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 1, W, R, cols, 1, nullptr, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 2, W_null, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 2, W, R, cols, 1, Y_null, SLM_CUDA_GEMV_STORE));
        REFUSED(GEMV(t, 2, W, R_bad, cols, 1, Y, SLM_CUDA_GEMV_STORE));             /* rows 0 */
        REFUSED(GEMV(t, 2, W_bad, R, cols, 1, Y, SLM_CUDA_GEMV_STORE));             /* w misaligned */
        REFUSED(GEMV(t, 1, W, R, cols, 1, Y_bad, SLM_CUDA_GEMV_STORE));             /* y misaligned */
#undef GEMV
    }
    REFUSED(slm_cuda_gemv_q8(t, 1, W, R, cols, nullptr, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_gemv_q8(t, 1, W, R, cols, q.p + 8, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));  /* xq misaligned */
    REFUSED(slm_cuda_gemv(t, 1, W, R, cols, nullptr, nullptr, EPS, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_gemv(t, 1, W, R, cols, x.p + 1, nullptr, EPS, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));
    REFUSED(slm_cuda_gemv(t, 1, W, R, cols, x.p, g.p + 2, EPS, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));
    /* x over the shared-memory bound (8 x 5120 x 1.25 bytes) */
    REFUSED(slm_cuda_gemv(SLM_TYPE_Q4_1, 1, W, R, 5120, x.p, nullptr, EPS, 8, Y, SLM_CUDA_GEMV_STORE, nullptr));
    if (slm_emu_active()) {   /* what only the emulator's pointer check sees */
        int64_t R_big[1] = {rows + 2};
        REFUSED(slm_cuda_gemv_q8(t, 1, W, R_big, cols, q.p, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));     /* w too small */
        REFUSED(slm_cuda_gemv_q8(t, 1, W, R, cols, q.p, 3, Y, SLM_CUDA_GEMV_STORE, nullptr)); /* q, y too small */
        REFUSED(slm_cuda_gemv(t, 1, W, R, cols, host_x.data(), nullptr, EPS, 1, Y, SLM_CUDA_GEMV_STORE, nullptr));
        REFUSED(slm_cuda_gemv_quantize(host_x.data(), nullptr, EPS, 2, cols, q.p, nullptr));
        REFUSED(slm_cuda_gemv_quantize(x.p, nullptr, EPS, 3, cols, q.p, nullptr));                   /* x too small */
    }
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaGetLastError());
    slm_emu_set_options(&o);
    printf("bad arguments: refused\n");
}

int main(void)
{
    printf("seed 0x%016llx\n", (unsigned long long)TEST_RNG_SEED);
    slm_emu_options o;
    slm_emu_get_options(&o);
    o.racecheck = 1;
    slm_emu_set_options(&o);

    test_bad_arguments();
    test_quantizer_order();
    for (uint32_t type : qtypes) {
        const bool kq = slm_qblock_elems(type) == SLM_QK_K;
        const std::vector<int> nbs = kq ? std::vector<int>{1, 2, 3, 16} : std::vector<int>{1, 6, 11, 18, 44};
        for (size_t i = 0; i < nbs.size(); i++) {
            const int64_t cols = (int64_t)nbs[i] * slm_qblock_elems(type);
            weights one(type, cols, {67});
            test_prologues(one, SLM_CUDA_GEMV_STORE, nbs[i] == (kq ? 3 : 18));   /* every slot at n = 8 */
            test_prologues(one, SLM_CUDA_GEMV_ACCUMULATE, false);
        }
        const int64_t cols = kq ? 768 : 576;
        weights qkv(type, cols, {35, 19, 19});   /* three weights of different rows in one launch */
        test_prologues(qkv, SLM_CUDA_GEMV_STORE, false);
        test_prologues(qkv, SLM_CUDA_GEMV_ACCUMULATE, false);
        weights gate_up(type, cols, {67, 67});
        test_prologues(gate_up, SLM_CUDA_GEMV_SWIGLU, true);
        if (!kq) {
            /* segments of 3-4 units (100 blocks): the units after a lane's first, each asked for
             * one unit ahead (one row a lane) */
            weights longrow(type, 100 * 32, {19});
            test_prologues(longrow, SLM_CUDA_GEMV_STORE, false);
            weights long_pair(type, longrow.cols, {19, 19});
            test_prologues(long_pair, SLM_CUDA_GEMV_SWIGLU, false, 1u << M_FUSED_NORM);
            /* >= 2048 rows: 2 rows a lane for n >= 2 (1 alone), so n = 1 vs 2..8 crosses R */
            weights big(type, 576, {2051});
            test_prologues(big, SLM_CUDA_GEMV_STORE, false, 1u << M_Q8 | 1u << M_FUSED_NORM);
        }
    }
    {
        weights big3(SLM_TYPE_Q5_1, 32 * 11, {1500, 300, 301});   /* 2101 rows over three weights */
        test_prologues(big3, SLM_CUDA_GEMV_ACCUMULATE, false, 1u << M_FUSED);
        weights big_pair(SLM_TYPE_Q4_1, 576, {2049, 2049});
        test_prologues(big_pair, SLM_CUDA_GEMV_SWIGLU, false, 1u << M_FUSED_NORM);
        /* more row groups than blocks (4,300 rows of 4 a group, 1,056 blocks): a block's later
         * groups load their first units after the wait, the first one before it */
        weights many(SLM_TYPE_Q4_0, 576, {4300});
        test_prologues(many, SLM_CUDA_GEMV_STORE, false, 1u << M_FUSED);
    }
    if (failures) {
        printf("test_cuda_gemv: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_gemv: ok\n");
    return 0;
}
