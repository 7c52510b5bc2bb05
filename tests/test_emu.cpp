/* test_emu: the SIMT emulator and its runtime / cuBLAS / NCCL stand-ins. Every intrinsic
 * against the CUDA rules (written here from the CUDA guide's wording, not from the PTX
 * formulas the emulator uses), kernels against C references, a racy kernel and a
 * deadlock caught, host-side misuse caught, graphs, cuBLAS against a naive GEMM, NCCL.
 * The race check is on for every launch unless a test says otherwise. */
#include "tests/emu_kernels.h"
#include "tests/cuda_check.h"
#include "kernels/cuda/kernels.h"

#include <cublas_v2.h>
#include <nccl.h>

#include <cerrno>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

static unsigned rng_state = 12345;
static unsigned rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

template <class T> static T *dev_copy(const std::vector<T> &h)
{
    T *d = nullptr;
    CUDA_OK(cudaMalloc((void **)&d, h.size() * sizeof(T)));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <class T> static std::vector<T> host_copy(const T *d, size_t n)
{
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

static void set_racecheck(int on, int workers)
{
    slm_emu_options o;
    slm_emu_get_options(&o);
    o.racecheck = on;
    o.workers = workers;
    slm_emu_set_options(&o);
}

/* Prints the first mismatches (at most ten) and the max abs / rel error; 0 if within tol. */
static int compare(const char *what, const float *got, const double *want, size_t n, double tol)
{
    double max_abs = 0, max_rel = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]), r = d / std::max(1e-30, fabs(want[i]));
        max_abs = std::max(max_abs, d);
        max_rel = std::max(max_rel, r);
        if (d > tol * std::max(1.0, fabs(want[i])) || got[i] != got[i]) {
            if (bad < 10) fprintf(stderr, "%s[%zu]: expected %.9g, got %.9g\n", what, i, want[i], (double)got[i]);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "%s: %d of %zu wrong, max abs %.3g, max rel %.3g\n", what, bad, n, max_abs, max_rel);
        failures++;
    }
    return bad;
}

/* ---- warp intrinsics against the CUDA guide's rules ---- */

static void test_shuffles(void)
{
    const int n = 64;
    std::vector<int> in(n);
    for (int i = 0; i < n; i++) in[i] = 1000 + i * 7;
    int *din = dev_copy(in), *dout;
    CUDA_OK(cudaMalloc((void **)&dout, n * 4 * sizeof(int)));
    const int cases[][3] = {{5, 1, 32}, {33, 3, 32}, {-1, 5, 8}, {2, 16, 16}, {7, 31, 32}, {0, 2, 4}, {3, 1, 1}, {9, 4, 2}};
    for (auto &c : cases) {
        int src = c[0], delta = c[1], width = c[2];
        CUDA_OK(emu_test_shfl(din, dout, n, src, delta, width, nullptr));
        std::vector<int> out = host_copy(dout, n * 4);
        for (int t = 0; t < n; t++) {
            int lane = t % 32, base = t - lane, seg = lane / width * width, in_seg = lane % width;
            /* __shfl_sync: "srcLane modulo width", within the caller's segment. */
            int want_idx = in[base + seg + ((src % width) + width) % width];
            /* __shfl_up_sync: unchanged when the source would be below the segment. */
            int want_up = in_seg - delta >= 0 ? in[t - delta] : in[t];
            /* __shfl_down_sync: unchanged when the source would be past the segment. */
            int want_down = in_seg + delta < width ? in[t + delta] : in[t];
            /* __shfl_xor_sync: earlier segments may be read; a later one gives the own value. */
            int j = lane ^ (delta & 31);
            int want_xor = j < seg + width ? in[base + j] : in[t];
            const int *o = &out[t * 4];
            CHECK(o[0] == want_idx, "shfl src %d width %d lane %d: expected %d, got %d", src, width, t, want_idx, o[0]);
            CHECK(o[1] == want_up, "shfl_up %d width %d lane %d: expected %d, got %d", delta, width, t, want_up, o[1]);
            CHECK(o[2] == want_down, "shfl_down %d width %d lane %d: expected %d, got %d", delta, width, t, want_down, o[2]);
            CHECK(o[3] == want_xor, "shfl_xor %d width %d lane %d: expected %d, got %d", delta, width, t, want_xor, o[3]);
        }
    }
    CUDA_OK(emu_test_shfl_halves(din, dout, n, nullptr));
    std::vector<int> out = host_copy(dout, n);
    for (int t = 0; t < n; t++) {
        int lane = t % 32;
        int want = lane < 16 ? in[t ^ 8] : (lane % 16 + 1 < 16 ? in[t + 1] : in[t]);
        CHECK(out[t] == want, "half-warp collectives lane %d: expected %d, got %d", t, want, out[t]);
    }
    /* A width that is not a power of two is refused. */
    slm_emu_clear_report();
    CUDA_OK(emu_test_shfl(din, dout, n, 0, 1, 12, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "shuffle width 12: expected a launch failure");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "power of two"), "width 12 report: got '%s'", slm_emu_last_report());
    cudaFree(din);
    cudaFree(dout);
}

static void test_votes_and_reductions(void)
{
    const int n = 64;
    std::vector<int> in(n);
    for (int i = 0; i < n; i++) in[i] = (int)(rnd() % 13) - 4;
    in[5] = -3; /* makes __all_sync false on the odd lanes of warp 0 */
    int *din = dev_copy(in);
    unsigned *dout;
    CUDA_OK(cudaMalloc((void **)&dout, n * 9 * sizeof(unsigned)));
    CUDA_OK(emu_test_votes(din, dout, n, nullptr));
    std::vector<unsigned> v = host_copy(dout, n * 8);
    int count = 0, all = 1, any = 0;
    for (int i = 0; i < n; i++) {
        count += in[i] > 0;
        all &= in[i] > -3;
        any |= in[i] > 5;
    }
    for (int t = 0; t < n; t++) {
        int lane = t % 32, base = t - lane;
        unsigned mask = (lane & 1) ? 0xaaaaaaaau : 0x55555555u, ballot = 0, match = 0;
        int wany = 0, wall = 1;
        for (int l = 0; l < 32; l++) {
            int x = in[base + l];
            if (x % 3 == in[t] % 3) match |= 1u << l;
            if (!(mask >> l & 1)) continue;
            if (x > 0) ballot |= 1u << l;
            wany |= x > 5;
            wall &= x > -3;
        }
        const unsigned *o = &v[t * 8];
        CHECK(o[0] == ballot, "ballot lane %d: expected 0x%08x, got 0x%08x", t, ballot, o[0]);
        CHECK(o[1] == (unsigned)wany, "any lane %d: expected %d, got %u", t, wany, o[1]);
        CHECK(o[2] == (unsigned)wall, "all lane %d: expected %d, got %u", t, wall, o[2]);
        CHECK(o[3] == match, "match_any lane %d: expected 0x%08x, got 0x%08x", t, match, o[3]);
        CHECK(o[4] == (unsigned)count, "syncthreads_count: expected %d, got %u", count, o[4]);
        CHECK(o[5] == (unsigned)all, "syncthreads_and: expected %d, got %u", all, o[5]);
        CHECK(o[6] == (unsigned)any, "syncthreads_or: expected %d, got %u", any, o[6]);
        CHECK(o[7] == 7u, "ballot of lane < 3: expected 7, got %u", o[7]);
    }
    CUDA_OK(emu_test_reduce(din, dout, n, nullptr));
    std::vector<unsigned> r = host_copy(dout, n * 9);
    for (int w = 0; w < n / 32; w++) {
        int sum = 0, mn = INT32_MAX, mx = INT32_MIN;
        unsigned umn = UINT32_MAX, umx = 0, a = ~0u, o = 0, x = 0;
        for (int l = 0; l < 32; l++) {
            int e = in[w * 32 + l];
            unsigned u = (unsigned)e;
            sum += e, mn = std::min(mn, e), mx = std::max(mx, e);
            umn = std::min(umn, u), umx = std::max(umx, u), a &= u, o |= u, x ^= u;
        }
        unsigned want[9] = {(unsigned)sum, (unsigned)mn, (unsigned)mx, (unsigned)sum, umn, umx, a, o, x};
        for (int l = 0; l < 32; l++)
            for (int k = 0; k < 9; k++)
                CHECK(r[(w * 32 + l) * 9 + k] == want[k], "reduction %d lane %d: expected 0x%08x, got 0x%08x", k,
                      w * 32 + l, want[k], r[(w * 32 + l) * 9 + k]);
    }
    cudaFree(din);
    cudaFree(dout);
}

/* ---- kernels against C references ---- */

static void test_block_sum_and_gemv(void)
{
    const int rows = 37, n = 1000, cols = 301;
    std::vector<float> x(rows * n);
    for (float &e : x) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    float *dx = dev_copy(x), *dout;
    CUDA_OK(cudaMalloc((void **)&dout, rows * sizeof(float)));
    CUDA_OK(emu_test_block_sum(dx, dout, rows, n, 128, nullptr));
    std::vector<float> got = host_copy(dout, rows);
    std::vector<double> want(rows);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) want[r] += x[r * n + i];
    compare("block_sum", got.data(), want.data(), rows, 1e-5);

    std::vector<float> w(rows * cols), v(cols);
    for (float &e : w) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    for (float &e : v) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    float *dw = dev_copy(w), *dv = dev_copy(v);
    CUDA_OK(emu_test_gemv(dw, dv, dout, rows, cols, nullptr));
    got = host_copy(dout, rows);
    for (int r = 0; r < rows; r++) {
        want[r] = 0;
        for (int c = 0; c < cols; c++) want[r] += (double)w[r * cols + c] * v[c];
    }
    compare("gemv", got.data(), want.data(), rows, 1e-5);
    cudaFree(dx), cudaFree(dout), cudaFree(dw), cudaFree(dv);
}

/* The launch log (emu_api.h): every grid with its shape, and in mode 2 the device pages it
 * touched and wrote. A GEMV over a 32 KiB weight reads 8 pages of it, one of x and writes one
 * of y; a buffer it is not given stays untouched. */
static void test_launch_log(void)
{
    const int rows = 32, cols = 256;
    std::vector<float> w(rows * cols, 0.5f), v(cols, 1.0f), idle(4096, 0.0f);
    float *dw = dev_copy(w), *dv = dev_copy(v), *didle = dev_copy(idle), *dy;
    CUDA_OK(cudaMalloc((void **)&dy, rows * sizeof(float)));
    const struct slm_emu_launch_record *r;
    for (int mode = 1; mode <= 2; mode++) {
        slm_emu_launch_log(mode);
        CUDA_OK(emu_test_gemv(dw, dv, dy, rows, cols, nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        slm_emu_launch_log(0);
        size_t n = slm_emu_launch_log_get(&r);
        CHECK(n == 1, "launch log (mode %d): expected 1 record, got %zu", mode, n);
        if (n != 1) continue;
        CHECK(strstr(r[0].name, "k_gemv") && r[0].grid[0] == (rows + 3) / 4 && r[0].block[0] == 128,
              "launch log: expected k_gemv on 8 x 128, got %s on %u x %u", r[0].name, r[0].grid[0], r[0].block[0]);
        long long touched = mode == 2 ? (8 + 1 + 1) * 4096 : -1, written = mode == 2 ? 4096 : -1;
#if defined(__SANITIZE_ADDRESS__)
        touched = written = -1;   /* bytes are not measured under ASan */
#endif
        CHECK(r[0].bytes_touched == touched && r[0].bytes_written == written,
              "launch log (mode %d): expected %lld bytes touched and %lld written, got %lld and %lld", mode, touched,
              written, r[0].bytes_touched, r[0].bytes_written);
    }
    std::vector<float> got = host_copy(dy, rows);
    CHECK(got[0] == 0.5f * cols, "gemv under the byte count: expected %g, got %g", 0.5 * cols, (double)got[0]);
    CHECK(slm_emu_launch_log_get(&r) == 1, "launch log off: no new record expected");
    cudaFree(dw), cudaFree(dv), cudaFree(didle), cudaFree(dy);
}

static void test_shared_memory(void)
{
    set_racecheck(0, 2); /* two workers: blocks run at the same time */
    const int blocks = 16, n = 96;
    int *bad;
    CUDA_OK(cudaMalloc((void **)&bad, blocks * sizeof(int)));
    CUDA_OK(cudaMemset(bad, 0, blocks * sizeof(int)));
    CUDA_OK(emu_test_shared_isolation(bad, blocks, nullptr));
    std::vector<int> b = host_copy(bad, blocks);
    for (int i = 0; i < blocks; i++) CHECK(b[i] == 0, "static shared of block %d: expected 0 foreign values, got %d", i, b[i]);

    std::vector<float> x(blocks * n);
    for (size_t i = 0; i < x.size(); i++) x[i] = (float)i;
    float *dx = dev_copy(x), *dout;
    CUDA_OK(cudaMalloc((void **)&dout, x.size() * sizeof(float)));
    CUDA_OK(cudaMemset(bad, 0, blocks * sizeof(int)));
    CUDA_OK(emu_test_dyn_shared(dx, dout, bad, blocks, n, nullptr));
    std::vector<float> out = host_copy(dout, x.size());
    b = host_copy(bad, blocks);
    for (int bl = 0; bl < blocks; bl++) {
        CHECK(b[bl] == n, "dynamic shared of block %d: expected %d poisoned (NaN) reads, got %d", bl, n, b[bl]);
        for (int t = 0; t < n; t++)
            CHECK(out[bl * n + t] == x[bl * n + n - 1 - t], "dynamic shared block %d thread %d: expected %g, got %g", bl,
                  t, x[bl * n + n - 1 - t], out[bl * n + t]);
    }
    /* A new allocation holds 0xff (SLM_EMU_POISON), as a GPU's holds whatever was there: a read of
     * what nobody wrote is NaN, not a convenient zero. */
    {
        unsigned char *fresh, *pinned, got[64];
        CUDA_OK(cudaMalloc((void **)&fresh, sizeof got));
        CUDA_OK(cudaMemcpy(got, fresh, sizeof got, cudaMemcpyDeviceToHost));
        int ff = 0;
        for (unsigned char c : got) ff += c == 0xff;
        CHECK(ff == (int)sizeof got, "a new cudaMalloc allocation: expected %zu bytes of 0xff, got %d", sizeof got, ff);
        CUDA_OK(cudaMallocHost((void **)&pinned, sizeof got));
        ff = 0;
        for (size_t i = 0; i < sizeof got; i++) ff += pinned[i] == 0xff;
        CHECK(ff == (int)sizeof got, "a new cudaMallocHost allocation: expected %zu bytes of 0xff, got %d", sizeof got, ff);
        cudaFree(fresh), cudaFreeHost(pinned);
    }
    /* Above 36 KiB of dynamic shared memory (CUDA's default 48 KiB less up to 12 KiB of a kernel's
     * static shared memory, which the emulator does not know) a launch must follow the kernel's
     * opt-in to at least as much; an opt-in past the block maximum is refused. */
    slm_emu_options o, quiet;
    slm_emu_get_options(&o);
    quiet = o;
    quiet.quiet = 1;
    slm_emu_set_options(&quiet);
    CHECK(emu_test_dyn_shared_bytes(dx, dout, bad, n, 36864) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess,
          "36864 bytes of dynamic shared memory without an opt-in: expected it to run");
    slm_emu_clear_report();
    CHECK(emu_test_dyn_shared_bytes(dx, dout, bad, n, 36880) == cudaErrorInvalidValue,
          "36880 bytes without an opt-in: expected cudaErrorInvalidValue");
    CHECK(strstr(slm_emu_last_report(), "cudaFuncAttributeMaxDynamicSharedMemorySize") &&
              strstr(slm_emu_last_report(), "36880 bytes"),
          "report of the launch without an opt-in: got '%s'", slm_emu_last_report());
    cudaGetLastError();
    CHECK(emu_test_dyn_shared_opt_in(65536) == cudaSuccess, "opt-in to 64 KiB: expected cudaSuccess");
    CHECK(emu_test_dyn_shared_bytes(dx, dout, bad, n, 65536) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess,
          "64 KiB after the opt-in to 64 KiB: expected it to run");
    CHECK(emu_test_dyn_shared_bytes(dx, dout, bad, n, 65552) == cudaErrorInvalidValue,
          "16 bytes past the opt-in: expected cudaErrorInvalidValue");
    cudaGetLastError();
    CHECK(emu_test_dyn_shared_opt_in(232448) == cudaErrorInvalidValue,
          "an opt-in to the whole 227 KiB (no room for static shared memory): expected cudaErrorInvalidValue");
    cudaGetLastError();
    slm_emu_set_options(&o);
    cudaFree(bad), cudaFree(dx), cudaFree(dout);
    set_racecheck(1, 0);
}

static void test_atomics(void)
{
    set_racecheck(0, 2);
    const int blocks = 40, threads = blocks * 64;
    int hi[4] = {0, 0, -1, 1};
    unsigned hu[6] = {0, 0, 0, ~0u, 0, 0};
    unsigned long long hull[2] = {0, 0};
    float hf = 0;
    double hd = 0;
    int *di;
    unsigned *du;
    unsigned long long *dull;
    float *df;
    double *dd;
    CUDA_OK(cudaMalloc((void **)&di, sizeof hi));
    CUDA_OK(cudaMalloc((void **)&du, sizeof hu));
    CUDA_OK(cudaMalloc((void **)&dull, sizeof hull));
    CUDA_OK(cudaMalloc((void **)&df, sizeof hf));
    CUDA_OK(cudaMalloc((void **)&dd, sizeof hd));
    CUDA_OK(cudaMemcpy(di, hi, sizeof hi, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(du, hu, sizeof hu, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dull, hull, sizeof hull, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(df, &hf, sizeof hf, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(dd, &hd, sizeof hd, cudaMemcpyHostToDevice));
    CUDA_OK(emu_test_atomics(di, du, dull, df, dd, blocks, nullptr));
    CUDA_OK(cudaMemcpy(hi, di, sizeof hi, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(hu, du, sizeof hu, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(hull, dull, sizeof hull, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&hf, df, sizeof hf, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(&hd, dd, sizeof hd, cudaMemcpyDeviceToHost));
    unsigned x = 0;
    for (int t = 0; t < threads; t++) x ^= (unsigned)t;
    CHECK(hi[0] == threads, "atomicAdd int: expected %d, got %d", threads, hi[0]);
    CHECK(hi[1] == -2 * threads, "atomicSub int: expected %d, got %d", -2 * threads, hi[1]);
    CHECK(hi[2] == threads - 1, "atomicMax int: expected %d, got %d", threads - 1, hi[2]);
    CHECK(hi[3] == -(threads - 1), "atomicMin int: expected %d, got %d", -(threads - 1), hi[3]);
    CHECK(hu[0] == 3u * threads, "atomicAdd unsigned: expected %u, got %u", 3u * threads, hu[0]);
    CHECK(hu[1] == ~0u, "atomicOr: expected 0xffffffff, got 0x%08x", hu[1]);
    CHECK(hu[2] == x, "atomicXor: expected 0x%08x, got 0x%08x", x, hu[2]);
    CHECK(hu[3] == 0, "atomicAnd: expected 0, got 0x%08x", hu[3]);
    CHECK(hu[4] == (unsigned)threads - 1, "atomicMax unsigned: expected %d, got %u", threads - 1, hu[4]);
    CHECK(hu[5] == 7, "atomicExch: expected 7, got %u", hu[5]);
    CHECK(hull[0] == (unsigned long long)threads << 33, "atomicAdd ull: expected %llu, got %llu",
          (unsigned long long)threads << 33, hull[0]);
    CHECK(hull[1] == (unsigned long long)threads, "atomicCAS loop: expected %d, got %llu", threads, hull[1]);
    CHECK(hf == (float)threads, "atomicAdd float: expected %d, got %g", threads, hf);
    CHECK(hd == threads * 0.5, "atomicAdd double: expected %g, got %g", threads * 0.5, hd);
    cudaFree(di), cudaFree(du), cudaFree(dull), cudaFree(df), cudaFree(dd);
    set_racecheck(1, 0);
}

/* ---- half and bf16 ---- */

/* v (an integer count of 2^-48) rounded to the half grid, ties to even; the exact reference. */
static double round_half_exact(__int128 v)
{
    bool neg = v < 0;
    unsigned __int128 a = neg ? (unsigned __int128)-v : (unsigned __int128)v;
    unsigned __int128 q = (unsigned __int128)1 << 24; /* the subnormal quantum 2^-24 */
    while (a >= q << 11) q <<= 1;                     /* 11 significant bits */
    unsigned __int128 lo = a / q * q, rem = a - lo;
    if (rem * 2 > q || (rem * 2 == q && ((lo / q) & 1))) lo += q;
    double d = ldexp((double)(uint64_t)(lo >> 24), -24);
    if (d >= 65536.0) d = INFINITY;
    return neg ? -d : d;
}

static double round_to_bits(double x, int bits)
{
    if (x == 0) return x;
    int e;
    frexp(x, &e);
    return ldexp(nearbyint(ldexp(x, bits - e)), e - bits);
}

static void test_half(void)
{
    /* Every half converts to float and back unchanged. */
    for (unsigned u = 0; u < 65536; u++) {
        __half h = __ushort_as_half((unsigned short)u);
        float f = __half2float(h);
        if (f != f) continue;
        CHECK(__half_as_ushort(__float2half_rn(f)) == u, "half 0x%04x round trip: got 0x%04x", u, __half_as_ushort(__float2half_rn(f)));
    }
    int bad = 0;
    for (int it = 0; it < 200000 && bad < 10; it++) {
        unsigned short ua = (unsigned short)(rnd() & 0x7bff), ub = (unsigned short)(rnd() & 0x7bff), uc = (unsigned short)(rnd() & 0x7bff);
        ua |= (unsigned short)((rnd() & 1) << 15), uc |= (unsigned short)((rnd() & 1) << 15);
        __half a = __ushort_as_half(ua), b = __ushort_as_half(ub), c = __ushort_as_half(uc);
        __int128 ia = (__int128)llrint(ldexp(__half2float(a), 24)), ib = (__int128)llrint(ldexp(__half2float(b), 24));
        __int128 ic = (__int128)llrint(ldexp(__half2float(c), 24));
        double want = round_half_exact(ia * ib + ic * ((__int128)1 << 24));
        float got = __half2float(__hfma(a, b, c));
        if (!(got == (float)want || (want == 0 && got == 0))) {
            fprintf(stderr, "__hfma(0x%04x, 0x%04x, 0x%04x): expected %.9g, got %.9g\n", ua, ub, uc, want, got);
            bad++;
        }
        float s = __half2float(hsqrt(b));
        double ws = round_half_exact((__int128)llrint(ldexp(sqrt((double)__half2float(b)), 48)));
        if (s != (float)ws) {
            fprintf(stderr, "hsqrt(0x%04x): expected %.9g, got %.9g\n", ub, ws, s);
            bad++;
        }
        /* hexp and hrsqrt: within one half ulp of the exact result. */
        double e = exp((double)__half2float(c));
        if (e < 60000 && e > 1e-4) {
            float ge = __half2float(hexp(c));
            double ulp = ldexp(1.0, std::max(-24, (int)floor(log2(e)) - 10));
            if (fabs(ge - e) > ulp) {
                fprintf(stderr, "hexp(%g): expected %.9g within %g, got %.9g\n", __half2float(c), e, ulp, ge);
                bad++;
            }
        }
    }
    failures += bad;
    __half2 p = __halves2half2(__float2half(1.5f), __float2half(-2.0f));
    __half2 q = __hfma2(p, p, p);
    CHECK(__low2float(q) == 3.75f && __high2float(q) == 2.0f, "__hfma2: expected (3.75, 2), got (%g, %g)", __low2float(q), __high2float(q));
    for (int it = 0; it < 100000 && bad < 10; it++) {
        /* bf16 in [2^-8, 2^8): a * b + c is exact in double there. */
        auto r = [] { return __float2bfloat16_rn(ldexp(1.0f + (float)(rnd() % 128) / 128.0f, (int)(rnd() % 16) - 8) * ((rnd() & 1) ? 1.0f : -1.0f)); };
        __nv_bfloat16 a = r(), b = r(), c = r();
        double exact = (double)__bfloat162float(a) * __bfloat162float(b) + __bfloat162float(c);
        float got = __bfloat162float(__hfma(a, b, c)), want = (float)round_to_bits(exact, 8);
        if (got != want) {
            fprintf(stderr, "__hfma bf16(%g, %g, %g): expected %.9g, got %.9g\n", __bfloat162float(a), __bfloat162float(b),
                    __bfloat162float(c), want, got);
            bad++;
        }
        float f = ldexp((float)(rnd() & 0xffffff), (int)(rnd() % 40) - 40);
        float wb = (float)round_to_bits(f, 8);
        CHECK(__bfloat162float(__float2bfloat16_rn(f)) == wb, "__float2bfloat16_rn(%.9g): expected %.9g, got %.9g", f, wb,
              __bfloat162float(__float2bfloat16_rn(f)));
    }
    failures += bad;
}

static void test_integer_intrinsics(void)
{
    CHECK(__dp4a(0x01fe03fc, 0x02020202, 10) == 10 + 2 * (1 - 2 + 3 - 4), "__dp4a signed: got %d", __dp4a(0x01fe03fc, 0x02020202, 10));
    CHECK(__dp4a(0x01fe03fcu, 0x02020202u, 10u) == 10u + 2u * (1 + 254 + 3 + 252), "__dp4a unsigned: got %u",
          __dp4a(0x01fe03fcu, 0x02020202u, 10u));
    CHECK(__byte_perm(0x33221100u, 0x77665544u, 0x5140u) == 0x55114400u, "__byte_perm: got 0x%08x", __byte_perm(0x33221100u, 0x77665544u, 0x5140u));
    CHECK(__funnelshift_l(0x80000001u, 0x1u, 4) == 0x18u, "__funnelshift_l: got 0x%x", __funnelshift_l(0x80000001u, 0x1u, 4));
    CHECK(__funnelshift_r(0x80000010u, 0x3u, 4) == 0x38000001u, "__funnelshift_r: got 0x%x", __funnelshift_r(0x80000010u, 0x3u, 4));
    CHECK(__brev(0x1u) == 0x80000000u && __brev(0x0000ff01u) == 0x80ff0000u, "__brev: got 0x%08x", __brev(0x0000ff01u));
    CHECK(__popc(0xf0f0u) == 8 && __clz(1) == 31 && __clz(0) == 32 && __ffs(0) == 0 && __ffs(0x18) == 4, "popc/clz/ffs");
    CHECK(__umulhi(0xffffffffu, 0xffffffffu) == 0xfffffffeu && __mulhi(-2, 0x40000000) == -1, "mulhi");
    CHECK(__float2int_rn(2.5f) == 2 && __float2int_rn(3.5f) == 4 && __float2int_rn(-2.5f) == -2, "__float2int_rn ties to even");
    {   /* the _rn arithmetic the quantizers use: one IEEE rounding each, as on a GPU */
        volatile float a = 1.0f, b = 3.0f, c = 0x1p-24f;
        CHECK(__fdiv_rn(a, b) == 0x1.555556p-2f, "__fdiv_rn(1, 3): expected %a, got %a", 0x1.555556p-2f, __fdiv_rn(a, b));
        CHECK(__fdiv_rn(127.0f, 0.1f) == 1270.0f, "__fdiv_rn(127, 0.1): got %.9g", __fdiv_rn(127.0f, 0.1f));
        CHECK(__fsub_rn(a, c) == 0x1.fffffep-1f, "__fsub_rn(1, 2^-24): expected %a, got %a", 0x1.fffffep-1f, __fsub_rn(a, c));
        volatile double da = 1.0, db = 0x1p-53;
        CHECK(__dadd_rn(__dadd_rn(da, db), db) == 1.0 && __dadd_rn(da, __dadd_rn(db, db)) == 1.0 + 0x1p-52,
              "__dadd_rn: one rounding per add");
        CHECK(__ddiv_rn(1.0, 3.0) == 1.0 / 3.0 && __dmul_rn(3.0, 1.0 / 3.0) == 1.0, "__ddiv_rn / __dmul_rn");
        CHECK(__double2float_rn(1.0 + 0x1p-24) == 1.0f && __double2float_rn(1.0 + 0x1.8p-24) == 1.0f + 0x1p-23f,
              "__double2float_rn: ties to even");
    }
    CHECK(__saturatef(-1.0f) == 0.0f && __saturatef(2.0f) == 1.0f && __saturatef(NAN) == 0.0f, "__saturatef");
    CHECK(__float_as_uint(1.0f) == 0x3f800000u && __int_as_float(0x40000000) == 2.0f, "bit casts");
}

/* ---- the race check, the deadlock report, strict mode ---- */

static void test_race_and_deadlock(void)
{
    std::vector<float> x(256);
    for (int i = 0; i < 256; i++) x[i] = (float)(i + 1);
    float *dx = dev_copy(x), *dout;
    CUDA_OK(cudaMalloc((void **)&dout, 256 * sizeof(float)));
    CUDA_OK(emu_test_warp_tree(dx, dout, 1, nullptr));
    std::vector<float> o = host_copy(dout, 1);
    CHECK(o[0] == 528.0f, "warp tree with __syncwarp: expected 528, got %g", o[0]);
    slm_emu_clear_report();
    CUDA_OK(emu_test_warp_tree(dx, dout, 0, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "warp tree without __syncwarp: expected the race to fail the launch");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "race in kernel k_warp_tree"), "race report: got '%s'", slm_emu_last_report());

    CUDA_OK(emu_test_neighbour(dx, dout, 256, 1, nullptr));
    o = host_copy(dout, 256);
    for (int t = 0; t < 256; t++) CHECK(o[t] == x[t] + x[(t + 1) % 256], "neighbour with barrier %d: got %g", t, o[t]);
    slm_emu_clear_report();
    CUDA_OK(emu_test_neighbour(dx, dout, 256, 0, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "shared read before __syncthreads: expected the race to fail the launch");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "race in kernel k_neighbour"), "race report: got '%s'", slm_emu_last_report());

    CUDA_OK(cudaMemset(dout, 0, 256 * sizeof(float)));
    slm_emu_clear_report();
    CUDA_OK(emu_test_block_chain(dx, dout, 8, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "blocks reading each other's output: expected the race to fail the launch");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "race in kernel k_block_chain"), "race report: got '%s'", slm_emu_last_report());

    int *dint;
    CUDA_OK(cudaMalloc((void **)&dint, 128 * sizeof(int)));
    slm_emu_clear_report();
    CUDA_OK(emu_test_deadlock(dint, nullptr));
    CHECK(cudaStreamSynchronize(nullptr) == cudaErrorLaunchFailure, "deadlock: expected cudaErrorLaunchFailure");
    cudaGetLastError();
    const char *rep = slm_emu_last_report();
    CHECK(strstr(rep, "deadlock in kernel k_deadlock") && strstr(rep, "__syncthreads at") && strstr(rep, "__shfl_sync mask 0xffffffff"),
          "deadlock report: got '%s'", rep);
    slm_emu_clear_report();
    CUDA_OK(emu_test_early_exit(dint, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "early exit in strict mode: expected cudaErrorLaunchFailure");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "exited while 32 threads wait at __syncthreads"), "strict report: got '%s'", slm_emu_last_report());
    slm_emu_options opt;
    slm_emu_get_options(&opt);
    opt.strict = 0;
    slm_emu_set_options(&opt);
    CUDA_OK(emu_test_early_exit(dint, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    opt.strict = 1;
    slm_emu_set_options(&opt);
    cudaFree(dx), cudaFree(dout), cudaFree(dint);
}

/* k_pdl in `mode` (emu_kernels.h) under launch log `log` must fail its launch with a report holding `want`. */
static void pdl_failure(const float *dx, float *dy, int n, int mode, int log, const char *want)
{
    slm_emu_clear_report();
    slm_emu_launch_log(log);
    CUDA_OK(emu_test_pdl(dx, dy, n, mode, nullptr));
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "k_pdl mode %d: expected cudaErrorLaunchFailure", mode);
    cudaGetLastError();
    slm_emu_launch_log(0);
    CHECK(strstr(slm_emu_last_report(), want), "k_pdl mode %d: expected a report with '%s', got '%s'", mode, want,
          slm_emu_last_report());
}

/* Programmatic dependent launch (compat.h): a kernel launched with SLM_LAUNCH_PDL whose thread
 * ends without slm_pdl_begin fails; one that writes device memory before it, or reads what an
 * earlier grid of its programmatic chain wrote, fails when the launch log measures bytes (a read
 * of what a copy wrote is allowed, and a memset ends the chain); an L2 prefetch outside device
 * memory fails (L2 or L1); the right one (with a prefetch before its wait) runs and is logged as
 * programmatic. Off
 * (slm_cuda_set_pdl(0)) the launch is a plain one, which needs no wait. */
static void test_programmatic_launch(void)
{
    const int n = 300;
    std::vector<float> x(n);
    for (int i = 0; i < n; i++) x[i] = (float)i;
    float *dx = dev_copy(x), *dy;
    CUDA_OK(cudaMalloc((void **)&dy, n * sizeof(float)));
    const struct slm_emu_launch_record *r;
    slm_cuda_set_pdl(1);
    for (int mode = 1; mode <= 2; mode++) {
        slm_emu_launch_log(mode);
        CUDA_OK(emu_test_pdl(dx, dy, n, 0, nullptr));
        CUDA_OK(cudaDeviceSynchronize());
        slm_emu_launch_log(0);
        CHECK(slm_emu_launch_log_get(&r) == 1 && r[0].pdl, "a programmatic launch (log mode %d): expected one record, programmatic", mode);
        std::vector<float> got = host_copy(dy, n);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += got[i] != x[i] + 1.0f;
        CHECK(!bad, "programmatic launch (log mode %d): %d wrong outputs", mode, bad);
    }
    pdl_failure(dx, dy, n, 2, 1, "kernel k_pdl: thread (0,0,0) of block (0,0,0) ended without calling slm_pdl_begin");
    pdl_failure(dx, dy, n, 3, 1, "slm_prefetch_l2 of 0x40, which is a host pointer");
    pdl_failure(dx, dy, n, 5, 1, "slm_prefetch_l1 of 0x40, which is a host pointer");
#if !defined(__SANITIZE_ADDRESS__)   /* pages are not watched under ASan */
    /* The page's first fault (taken as a read: allowed, y was not written in the chain) and then
     * its write fault (forbidden). */
    pdl_failure(dx, dy, n, 1, 2, "kernel k_pdl: a thread wrote device memory at");
    CHECK(slm_emu_launch_log_get(&r) == 1 && r[0].faults_before_wait == 1 && r[0].reads_before_wait == 1,
          "a write before the wait: expected 1 forbidden fault and 1 read, got %lld and %lld", r[0].faults_before_wait,
          r[0].reads_before_wait);
    /* Reads before the wait: of what a copy wrote, allowed (the copy finished before the chain
     * began); of what the grid before in the chain wrote, not; a memset between the two grids
     * ends the chain, so the same read is allowed after it. */
    float *dz;
    CUDA_OK(cudaMalloc((void **)&dz, n * sizeof(float)));
    slm_emu_launch_log(2);
    CUDA_OK(cudaMemcpy(dz, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    CUDA_OK(emu_test_pdl(dz, dy, n, 4, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    CHECK(slm_emu_launch_log_get(&r) == 1 && r[0].faults_before_wait == 0 && r[0].reads_before_wait == 1,
          "a read before the wait of copied memory: expected 0 forbidden faults and 1 read, got %lld and %lld",
          r[0].faults_before_wait, r[0].reads_before_wait);
    slm_emu_clear_report();
    CUDA_OK(emu_test_pdl(dx, dz, n, 0, nullptr));   /* writes dz */
    CUDA_OK(emu_test_pdl(dz, dy, n, 4, nullptr));   /* reads it before its wait */
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure, "a read before the wait of the chain's writes: expected a failure");
    cudaGetLastError();
    CHECK(strstr(slm_emu_last_report(), "read what an earlier grid of its programmatic chain wrote in"),
          "chain read: got '%s'", slm_emu_last_report());
    CUDA_OK(emu_test_pdl(dx, dz, n, 0, nullptr));
    CUDA_OK(cudaMemsetAsync(dy, 0, n * sizeof(float), nullptr));
    CUDA_OK(emu_test_pdl(dz, dy, n, 4, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    slm_emu_launch_log(0);
    std::vector<float> got = host_copy(dy, n);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += got[i] != x[i] + 2.0f;
    CHECK(!bad, "a read before the wait after a memset: %d wrong outputs", bad);
    cudaFree(dz);
#endif
    /* The backend's probe (slm_cuda_pdl_probe): four programmatic launches, two of them through a
     * captured graph, all counted; refused by the driver (SLM_EMU_REFUSE_PDL), a named error. */
    cudaStream_t st;
    CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    char why[160] = "";
    CHECK(slm_cuda_pdl_probe(st, why, sizeof why) == 0, "the programmatic-launch probe failed: %s", why);
    slm_emu_options opt, saved;
    slm_emu_get_options(&saved);
    opt = saved;
    opt.refuse_pdl = 1;
    opt.quiet = 1;
    slm_emu_set_options(&opt);
    CHECK(slm_cuda_pdl_probe(st, why, sizeof why) == -EIO && !strcmp(why, "a programmatic launch: cudaErrorNotSupported"),
          "the probe with programmatic launches refused: expected -EIO and 'a programmatic launch: "
          "cudaErrorNotSupported', got '%s'", why);
    CHECK(cudaGetLastError() == cudaSuccess, "the probe leaves no error behind");
    slm_emu_set_options(&saved);
    CUDA_OK(cudaStreamDestroy(st));
    slm_cuda_set_pdl(0);
    CHECK(slm_cuda_pdl_probe(nullptr, why, sizeof why) == 0, "the probe with plain launches: nothing to probe");
    slm_emu_launch_log(1);
    CUDA_OK(emu_test_pdl(dx, dy, n, 2, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    slm_emu_launch_log(0);
    CHECK(slm_emu_launch_log_get(&r) == 1 && !r[0].pdl, "plain launch: expected one record, not programmatic");
    slm_cuda_set_pdl(-1);
    cudaFree(dx), cudaFree(dy);
}

/* ---- host-side misuse, streams, events, graphs ---- */

static void test_misuse(void)
{
    const int n = 1000;
    std::vector<float> host(n, 1.0f);
    float *d;
    CUDA_OK(cudaMalloc((void **)&d, n * sizeof(float)));
    slm_emu_clear_report();
    CHECK(cudaMemcpy(host.data(), d, n * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "host pointer as a copy's device destination: expected cudaErrorInvalidValue");
    CHECK(strstr(slm_emu_last_report(), "host pointer"), "report: got '%s'", slm_emu_last_report());
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "cudaGetLastError after the bad copy: expected cudaErrorInvalidValue");
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError resets");
    CHECK(emu_test_axpy(2.0f, host.data(), d, n, nullptr) == cudaErrorInvalidValue, "host pointer as a kernel argument: expected an error");
    CHECK(cudaMemcpy(d, host.data(), (n + 1) * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "copy past the end of an allocation: expected cudaErrorInvalidValue");
    CHECK(strstr(slm_emu_last_report(), "out of bounds"), "report: got '%s'", slm_emu_last_report());
    CHECK(cudaMemcpy(d, d, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "device memory as a host source: expected an error");
    CUDA_OK(cudaFree(d));
    slm_emu_clear_report();
    CHECK(cudaMemcpy(d, host.data(), 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "copy into freed memory: expected an error");
    CHECK(strstr(slm_emu_last_report(), "freed device memory"), "use after free report: got '%s'", slm_emu_last_report());
    CHECK(emu_test_axpy(2.0f, d, d, n, nullptr) == cudaErrorInvalidValue, "freed memory as a kernel argument: expected an error");
    CHECK(cudaMemset(d, 0, 4) == cudaErrorInvalidValue, "memset of freed memory: expected an error");
    CHECK(cudaFree(d) == cudaErrorInvalidValue, "double free: expected cudaErrorInvalidValue");
    CHECK(strstr(slm_emu_last_report(), "already freed"), "double free report: got '%s'", slm_emu_last_report());
    CHECK(cudaFree(host.data()) == cudaErrorInvalidValue, "cudaFree of a host pointer: expected an error");
    cudaGetLastError();
    /* A bad configuration is a launch error. */
    CHECK(emu_test_shfl(nullptr, nullptr, 2048, 0, 0, 32, nullptr) == cudaErrorInvalidConfiguration,
          "2048 threads per block: expected cudaErrorInvalidConfiguration");
}

/* Queues hy = 3.5 hx through the device: a copy in, a memset, two axpy, a copy out. */
static void issue_axpy_work(float *hx, float *hy, float *dx, float *dy, int n, cudaStream_t s)
{
    CUDA_OK(cudaMemcpyAsync(dx, hx, n * sizeof(float), cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemsetAsync(dy, 0, n * sizeof(float), s));
    CUDA_OK(emu_test_axpy(3.0f, dx, dy, n, s));
    CUDA_OK(emu_test_axpy(0.5f, dx, dy, n, s));
    CUDA_OK(cudaMemcpyAsync(hy, dy, n * sizeof(float), cudaMemcpyDeviceToHost, s));
}

static void test_streams_and_graph(void)
{
    const int n = 777;
    float *hx, *hy;
    CUDA_OK(cudaMallocHost((void **)&hx, n * sizeof(float)));
    CUDA_OK(cudaMallocHost((void **)&hy, n * sizeof(float)));
    float *dx, *dy;
    CUDA_OK(cudaMalloc((void **)&dx, n * sizeof(float)));
    CUDA_OK(cudaMalloc((void **)&dy, n * sizeof(float)));
    cudaStream_t s;
    CUDA_OK(cudaStreamCreate(&s));
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));

    /* Eager. */
    for (int i = 0; i < n; i++) hx[i] = (float)i, hy[i] = -1.0f;
    CUDA_OK(cudaEventRecord(e0, s));
    issue_axpy_work(hx, hy, dx, dy, n, s);
    CUDA_OK(cudaEventRecord(e1, s));
    /* Nothing has run yet: reading hy now is the missing-synchronisation bug. */
    CHECK(hy[5] == -1.0f, "async copy before synchronising: expected the stale -1, got %g", hy[5]);
    /* A query runs the work it covers (a polling loop ends). */
    CUDA_OK(cudaEventQuery(e1));
    CHECK(hy[5] == 17.5f, "after the event query: expected 17.5, got %g", hy[5]);
    CUDA_OK(cudaStreamSynchronize(s));
    std::vector<float> eager(hy, hy + n);
    for (int i = 0; i < n; i++) CHECK(eager[i] == 3.5f * i, "eager y[%d]: expected %g, got %g", i, 3.5f * i, eager[i]);
    float ms = -1;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    CHECK(ms >= 0, "elapsed time: expected >= 0, got %g", ms);

    /* The same work captured once and replayed twice. */
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    issue_axpy_work(hx, hy, dx, dy, n, s);
    CHECK(cudaMemcpy(dx, hx, 4, cudaMemcpyHostToDevice) == cudaErrorStreamCaptureImplicit,
          "a synchronous copy during a global capture: expected cudaErrorStreamCaptureImplicit");
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated, "the broken capture: expected it invalidated");
    cudaGetLastError();
    /* Allocating, freeing or synchronising from the thread that captures in thread-local mode is a
     * "potentially unsafe" call: refused, and the capture invalidated; in relaxed mode allowed. */
    float *extra = nullptr;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    issue_axpy_work(hx, hy, dx, dy, n, s);
    slm_emu_clear_report();
    CHECK(cudaMalloc((void **)&extra, 64) == cudaErrorStreamCaptureUnsupported,
          "cudaMalloc during a thread-local capture: expected cudaErrorStreamCaptureUnsupported");
    CHECK(strstr(slm_emu_last_report(), "cudaMalloc while this thread captures"), "report: got '%s'",
          slm_emu_last_report());
    CHECK(cudaFree(dx) == cudaErrorStreamCaptureUnsupported,
          "cudaFree during a thread-local capture: expected cudaErrorStreamCaptureUnsupported");
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated,
          "the thread-local capture after cudaMalloc: expected it invalidated");
    cudaGetLastError();
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
    issue_axpy_work(hx, hy, dx, dy, n, s);
    CUDA_OK(cudaMalloc((void **)&extra, 64));
    CUDA_OK(cudaStreamEndCapture(s, &g));
    CUDA_OK(cudaGraphDestroy(g));
    CUDA_OK(cudaFree(extra));
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    issue_axpy_work(hx, hy, dx, dy, n, s);
    CUDA_OK(cudaStreamEndCapture(s, &g));
    CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
    for (int i = 0; i < n; i++) hy[i] = -1.0f;
    CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaStreamSynchronize(s));
    for (int i = 0; i < n; i++) CHECK(hy[i] == eager[i], "graph replay y[%d]: expected %g, got %g", i, eager[i], hy[i]);
    for (int i = 0; i < n; i++) hx[i] = 2.0f * i;
    CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaStreamSynchronize(s));
    for (int i = 0; i < n; i++) CHECK(hy[i] == 7.0f * i, "second replay y[%d]: expected %g, got %g", i, 7.0f * i, hy[i]);
    /* A replay after a buffer was freed is caught when it runs. */
    CUDA_OK(cudaFree(dy));
    slm_emu_clear_report();
    CUDA_OK(cudaGraphLaunch(ge, s));
    CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidValue, "graph replay on freed memory: expected cudaErrorInvalidValue");
    CHECK(strstr(slm_emu_last_report(), "freed"), "report: got '%s'", slm_emu_last_report());
    cudaGetLastError();
    CUDA_OK(cudaGraphExecDestroy(ge));
    CUDA_OK(cudaGraphDestroy(g));
    CUDA_OK(cudaEventDestroy(e0));
    CUDA_OK(cudaEventDestroy(e1));
    CUDA_OK(cudaStreamDestroy(s));
    CUDA_OK(cudaFree(dx));
    CUDA_OK(cudaFreeHost(hx));
    CUDA_OK(cudaFreeHost(hy));
    int count = -1;
    CUDA_OK(cudaGetDeviceCount(&count));
    CHECK(count == 2, "device count with SLM_EMU_DEVICES=2: expected 2, got %d", count);
    cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    CHECK(prop.major == 9 && prop.warpSize == 32 && prop.maxThreadsPerBlock == 1024, "device properties");
    size_t fr, tot;
    CUDA_OK(cudaMemGetInfo(&fr, &tot));
    CHECK(fr <= tot && tot > 0, "cudaMemGetInfo: free %zu total %zu", fr, tot);
}

/* ---- cuBLAS against the definition ---- */

template <class T> static float to_f(T v) { return (float)v; }
template <> float to_f<__half>(__half v) { return __half2float(v); }
template <> float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> static T from_f(float v);
template <> float from_f<float>(float v) { return v; }
template <> __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <class T>
static void gemm_case(cublasHandle_t h, cudaDataType type, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      int batch, float beta)
{
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    int lda = ar + 3, ldb = br + 1, ldc = m + 2;
    long long sa = (long long)lda * ac, sb = (long long)ldb * bc, sc = (long long)ldc * n;
    std::vector<T> A(sa * batch), B(sb * batch);
    std::vector<float> C(sc * batch);
    for (auto &e : A) e = from_f<T>((float)((int)(rnd() % 17) - 8) / 8.0f);
    for (auto &e : B) e = from_f<T>((float)((int)(rnd() % 17) - 8) / 8.0f);
    for (auto &e : C) e = beta == 0.0f ? NAN : (float)((int)(rnd() % 9) - 4);
    T *dA = dev_copy(A), *dB = dev_copy(B);
    float *dC = dev_copy(C);
    float alpha = 1.5f;
    cublasStatus_t st;
    if (batch == 1 && type == CUDA_R_32F)
        st = cublasSgemm(h, ta, tb, m, n, k, &alpha, (const float *)dA, lda, (const float *)dB, ldb, &beta, dC, ldc);
    else if (batch == 1)
        st = cublasGemmEx(h, ta, tb, m, n, k, &alpha, dA, type, lda, dB, type, ldb, &beta, dC, CUDA_R_32F, ldc,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    else
        st = cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, dA, type, lda, sa, dB, type, ldb, sb, &beta, dC,
                                        CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    CHECK(st == CUBLAS_STATUS_SUCCESS, "gemm status: expected success, got %d", (int)st);
    std::vector<float> got = host_copy(dC, C.size());
    std::vector<float> g2;
    std::vector<double> want;
    for (int bi = 0; bi < batch; bi++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int l = 0; l < k; l++) {
                    /* op(A)(i, l) and op(B)(l, j) of column-major storage */
                    float a = to_f(ta == CUBLAS_OP_N ? A[bi * sa + i + (long long)l * lda] : A[bi * sa + l + (long long)i * lda]);
                    float b = to_f(tb == CUBLAS_OP_N ? B[bi * sb + l + (long long)j * ldb] : B[bi * sb + j + (long long)l * ldb]);
                    acc += (double)a * b;
                }
                long long ic = bi * sc + i + (long long)j * ldc;
                want.push_back(alpha * acc + (beta == 0.0f ? 0.0 : beta * C[ic]));
                g2.push_back(got[ic]);
            }
    char what[96];
    snprintf(what, sizeof what, "gemm type %d %c%c %dx%dx%d batch %d", (int)type, ta == CUBLAS_OP_N ? 'N' : 'T',
             tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k, batch);
    compare(what, g2.data(), want.data(), g2.size(), 1e-6);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
}

static void test_cublas(void)
{
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    cudaStream_t s;
    CUDA_OK(cudaStreamCreate(&s));
    CHECK(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS, "cublasSetStream");
    const cublasOperation_t ops[2] = {CUBLAS_OP_N, CUBLAS_OP_T};
    for (auto ta : ops)
        for (auto tb : ops) {
            gemm_case<float>(h, CUDA_R_32F, ta, tb, 7, 5, 3, 1, 0.0f);
            gemm_case<float>(h, CUDA_R_32F, ta, tb, 33, 17, 19, 1, 0.25f);
            gemm_case<__half>(h, CUDA_R_16F, ta, tb, 13, 9, 21, 1, 1.0f);
            gemm_case<__nv_bfloat16>(h, CUDA_R_16BF, ta, tb, 5, 11, 8, 1, 0.0f);
            gemm_case<__half>(h, CUDA_R_16F, ta, tb, 6, 7, 5, 3, 0.5f);
        }
    float one = 1, zero = 0, hostbuf[16];
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, hostbuf, 2, hostbuf, 2, &zero, hostbuf, 2) ==
              CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm on host memory: expected CUBLAS_STATUS_INVALID_VALUE");
    CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS, "cublasDestroy");
    CUDA_OK(cudaStreamDestroy(s));
}

/* ---- NCCL: two emulated devices, a thread each, and one thread for both ---- */

template <class T> static void allreduce_rank(ncclComm_t comm, int rank, ncclDataType_t type, int *bad)
{
    const size_t n = 1001;
    CUDA_OK(cudaSetDevice(rank));
    std::vector<T> h(n);
    for (size_t i = 0; i < n; i++) h[i] = from_f<T>((float)(i % 50) * (rank + 1));
    T *d = dev_copy(h), *out;
    CUDA_OK(cudaMalloc((void **)&out, n * sizeof(T)));
    cudaStream_t s;
    CUDA_OK(cudaStreamCreate(&s));
    CHECK(ncclAllReduce(d, out, n, type, ncclSum, comm, s) == ncclSuccess, "ncclAllReduce out of place");
    CHECK(ncclAllReduce(d, d, n, type, ncclSum, comm, s) == ncclSuccess, "ncclAllReduce in place");
    CUDA_OK(cudaStreamSynchronize(s));
    std::vector<T> a = host_copy(out, n), b = host_copy(d, n);
    for (size_t i = 0; i < n; i++)
        if (to_f(a[i]) != (float)(i % 50) * 3 || to_f(b[i]) != (float)(i % 50) * 3) (*bad)++;
    CUDA_OK(cudaStreamDestroy(s));
    cudaFree(d), cudaFree(out);
}

static void test_nccl(void)
{
    ncclUniqueId id;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess, "ncclGetUniqueId");
    const ncclDataType_t types[3] = {ncclFloat32, ncclFloat16, ncclBfloat16};
    for (ncclDataType_t type : types) {
        int bad[2] = {0, 0};
        std::thread th[2];
        ncclUniqueId tid;
        ncclGetUniqueId(&tid);
        for (int r = 0; r < 2; r++)
            th[r] = std::thread([&, r] {
                ncclComm_t c;
                cudaSetDevice(r);
                CHECK(ncclCommInitRank(&c, 2, tid, r) == ncclSuccess, "ncclCommInitRank");
                if (type == ncclFloat32) allreduce_rank<float>(c, r, type, &bad[r]);
                else if (type == ncclFloat16) allreduce_rank<__half>(c, r, type, &bad[r]);
                else allreduce_rank<__nv_bfloat16>(c, r, type, &bad[r]);
                ncclCommDestroy(c);
            });
        for (auto &t : th) t.join();
        CHECK(bad[0] == 0 && bad[1] == 0, "allreduce type %d: %d + %d wrong sums", (int)type, bad[0], bad[1]);
    }
    /* One thread drives both ranks through a group. */
    ncclComm_t comms[2];
    CHECK(ncclCommInitAll(comms, 2, nullptr) == ncclSuccess, "ncclCommInitAll");
    float *buf[2];
    for (int r = 0; r < 2; r++) {
        CUDA_OK(cudaSetDevice(r));
        buf[r] = dev_copy(std::vector<float>(64, (float)(r + 1)));
    }
    CHECK(ncclGroupStart() == ncclSuccess, "ncclGroupStart");
    for (int r = 0; r < 2; r++) ncclAllReduce(buf[r], buf[r], 64, ncclFloat32, ncclSum, comms[r], nullptr);
    CHECK(ncclGroupEnd() == ncclSuccess, "ncclGroupEnd");
    for (int r = 0; r < 2; r++) {
        CUDA_OK(cudaSetDevice(r));
        std::vector<float> h = host_copy(buf[r], 64);
        CHECK(h[0] == 3.0f && h[63] == 3.0f, "grouped allreduce rank %d: expected 3, got %g", r, h[0]);
        cudaFree(buf[r]);
        ncclCommDestroy(comms[r]);
    }
    CUDA_OK(cudaSetDevice(0));
}

static int no_device(void)
{
    int n = -1;
    CHECK(cudaGetDeviceCount(&n) == cudaErrorNoDevice && n == 0, "SLM_EMU_DEVICES=0: expected no device, got %d", n);
    void *p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaErrorNoDevice, "cudaMalloc without a device: expected cudaErrorNoDevice");
    return failures ? 1 : 0;
}

/* test_emu --bench: the emulator's overhead against scalar C loops (docs/emulator.md). */
/* CPU time of the whole process: on a shared machine it does not count other people's
 * work, and with one worker it is the emulator's single-core cost. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int bench(void)
{
    const int reps = 5;
    for (int workers = 1; workers <= 1; workers++) {
        set_racecheck(0, workers);
        const int rows = 1536, cols = 576;
        std::vector<float> w((size_t)rows * cols), x(cols), y(rows);
        for (float &e : w) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
        for (float &e : x) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
        float *dw = dev_copy(w), *dx = dev_copy(x), *dy;
        CUDA_OK(cudaMalloc((void **)&dy, rows * sizeof(float)));
        double best_emu = 1e30, best_c = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now_ms();
            CUDA_OK(emu_test_gemv(dw, dx, dy, rows, cols, nullptr));
            CUDA_OK(cudaDeviceSynchronize());
            best_emu = std::min(best_emu, now_ms() - t0);
            t0 = now_ms();
            for (int i = 0; i < rows; i++) {
                float acc = 0;
                for (int c = 0; c < cols; c++) acc += w[(size_t)i * cols + c] * x[c];
                y[i] = acc;
            }
            best_c = std::min(best_c, now_ms() - t0);
        }
        printf("gemv %dx%d, %d worker(s): emulated %.2f ms, scalar C %.3f ms, ratio %.0fx (check %g)\n", rows, cols,
               workers, best_emu, best_c, best_emu / best_c, (double)y[0]);
        cudaFree(dw), cudaFree(dx), cudaFree(dy);

        const int brows = 2000, n = 256;
        std::vector<float> v((size_t)brows * n), out(brows);
        for (float &e : v) e = (float)(rnd() % 2001) / 1000.0f - 1.0f;
        float *dv = dev_copy(v), *dout;
        CUDA_OK(cudaMalloc((void **)&dout, brows * sizeof(float)));
        best_emu = best_c = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now_ms();
            CUDA_OK(emu_test_block_sum(dv, dout, brows, n, 256, nullptr));
            CUDA_OK(cudaDeviceSynchronize());
            best_emu = std::min(best_emu, now_ms() - t0);
            t0 = now_ms();
            for (int i = 0; i < brows; i++) {
                float acc = 0;
                for (int c = 0; c < n; c++) acc += v[(size_t)i * n + c];
                out[i] = acc;
            }
            best_c = std::min(best_c, now_ms() - t0);
        }
        printf("block sum %d blocks x 256 threads, 9 __syncthreads each, %d worker(s): emulated %.2f ms (%.2f us per "
               "block barrier), scalar C %.3f ms, ratio %.0fx (check %g)\n", brows, workers, best_emu,
               best_emu * 1000 / (brows * 9.0), best_c, best_emu / best_c, (double)out[0]);
        cudaFree(dv), cudaFree(dout);
    }
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--no-device")) return no_device();
    if (argc > 1 && !strcmp(argv[1], "--bench")) return bench();
    setenv("SLM_EMU_DEVICES", "2", 1);
    set_racecheck(1, 0);
    test_shuffles();
    test_votes_and_reductions();
    test_block_sum_and_gemv();
    test_launch_log();
    test_shared_memory();
    test_atomics();
    test_half();
    test_integer_intrinsics();
    test_race_and_deadlock();
    test_programmatic_launch();
    test_misuse();
    test_streams_and_graph();
    test_cublas();
    test_nccl();
    if (failures) {
        fprintf(stderr, "test_emu: %d failures\n", failures);
        return 1;
    }
    printf("test_emu: ok\n");
    return 0;
}
