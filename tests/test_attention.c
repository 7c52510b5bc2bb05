/*
 * tests/test_attention.c - the CPU attention's vector path against the portable one.
 *
 * 1. slm_cpu_attention_group (the AVX2 path where the CPU has it) gives the same bits as
 *    slm_cpu_attention_group_generic, on random paged K/V (block size 16, shuffled block
 *    tables, the group's KV head at an offset in wider rows), for head dims 64, 80, 128,
 *    32, 256 and 40, GQA groups 1, 3 and 4, contexts of 1 to 300 positions (across the
 *    8-position blocks, the 32- and 64-lane wraps and the 8- and 16-score groups), and peaked and flat
 *    softmaxes (probabilities that round to zero or to f16 subnormals, exp's slow range); each
 *    over all the positions and over a sliding window (the last 3/5 of them, from a first
 *    position at any alignment).
 * 2. A head computed in its group equals it computed alone (slm_cpu_attention_head).
 * 3. slm_cpu_f32_to_f16 (vectorised) equals slm_f32_to_half on every 97th float bit
 *    pattern, on all patterns around the rounding boundaries, and on NaN, inf and zeros.
 *    Each in both lane layouts (8 and 16, slm_cpu_lanes): the vector path emulates either, and
 *    the two must differ somewhere; the default entry points use slm_cpu_lanes()'s (8 under
 *    SLM_CPU_KERNELS=avx2 or =generic, checked).
 * 4. Each layout's exp (kernels/cpu/expf.h) within 2.5 ulp of exp (measured: 8 lanes 1.79, 16 lanes
 *    2.18), and SwiGLU's vector path
 *    equal to the scalar form in both.
 * 5. A sliding window over a table whose blocks before the window are released (-1, as the
 *    local KV pool's tables hold them: docs/engine.md, "Two pools"), blocks of 4 positions so that
 *    the vector path's 8-position groups start in a released block: no position before the window
 *    is read (the K pool follows an inaccessible guard region, which the -1 rows would fall in),
 *    and the bits are those of a table with every block present.
 * Without AVX2 both sides are the portable path: the test says so and exits 77.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tests/check.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"

#define BLOCK 16
#define MAX_CTX 300
#define N_BLOCKS (MAX_CTX / BLOCK + 8)

#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "tests/rng.h"

static int mismatches;
static int layouts_differ;   /* cases where the 8- and 16-lane layouts gave other bits */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Compares n floats bit for bit; prints the first mismatches (ten in all). */
static void compare(const char *what, const float *want, const float *got, int n)
{
    double max_abs = 0.0, max_rel = 0.0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (bits_of(want[i]) == bits_of(got[i])) continue;
        bad++;
        double a = fabs((double)want[i] - (double)got[i]);
        if (a > max_abs) max_abs = a;
        if (want[i] != 0.0f && a / fabs((double)want[i]) > max_rel) max_rel = a / fabs((double)want[i]);
        if (mismatches++ < 10)
            printf("FAIL %s [%d]: expected %.9g (0x%08x), got %.9g (0x%08x)\n", what, i, (double)want[i],
                   (unsigned)bits_of(want[i]), (double)got[i], (unsigned)bits_of(got[i]));
    }
    if (bad) {
        printf("FAIL %s: %d of %d differ, max abs %.3g, max rel %.3g\n", what, bad, n, max_abs, max_rel);
        failures++;
    }
}

static void random_halves(slm_half *h, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        float f = ldexpf(frand() * amp, -(int)(r >> 60));   /* magnitudes over 2^16: sums that round */
        if (r % 97 == 0) f = 0.0f;
        if (r % 89 == 0) f = -0.0f;
        h[i] = slm_f32_to_half(f);
    }
}

static void check_attention(void)
{
    static const int dims[] = {64, 80, 128, 32, 256, 40};
    static const int groups[] = {1, 3, 4, 7};
    static const int ctxs[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128, 129, 191, 200, 255, 256, 257, 300};
    int n_kv = 2;   /* KV heads in a row; the group reads head 1 */
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        int hd = dims[di];
        size_t kv_stride = (size_t)n_kv * (size_t)hd, kv_off = (size_t)hd;
        size_t pool_halves = (size_t)N_BLOCKS * BLOCK * kv_stride;
        slm_half *k_pool = malloc(pool_halves * sizeof *k_pool);
        slm_half *v_pool = malloc(pool_halves * sizeof *v_pool);
        if (!k_pool || !v_pool) {
            printf("FAIL out of memory\n");
            failures++;
            free(k_pool);
            free(v_pool);
            return;
        }
        random_halves(k_pool, pool_halves, 1.0f);
        random_halves(v_pool, pool_halves, 1.0f);
        for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
            int nq = groups[gi];
            for (size_t ci = 0; ci < sizeof ctxs / sizeof *ctxs; ci++) {
                int n_ctx = ctxs[ci];
                for (int pw = 0; pw < 4; pw++) {
                    const int peak = pw & 1, first = pw & 2 ? n_ctx - 1 - n_ctx * 3 / 5 : 0;
                    int32_t blocks[N_BLOCKS];
                    for (int b = 0; b < N_BLOCKS; b++) blocks[b] = b;
                    for (int b = N_BLOCKS - 1; b > 0; b--) {
                        int j = (int)(rnd() % (uint64_t)(b + 1));
                        int32_t t = blocks[b];
                        blocks[b] = blocks[j];
                        blocks[j] = t;
                    }
                    /* peaked: scaled scores spread over hundreds, past exp's fast range and underflow */
                    float amp = peak ? 100.0f : 1.0f;
                    float scale = 1.0f / sqrtf((float)hd);
                    size_t nf = (size_t)nq * (size_t)hd;
                    float *q = malloc(nf * sizeof *q);
                    float *want = malloc(nf * sizeof *want);
                    float *got = malloc(nf * sizeof *got);
                    float *alone = malloc(nf * sizeof *alone);
                    size_t ns = slm_cpu_attention_group_scratch(n_ctx, hd, nq);
                    float *scratch = malloc(ns * sizeof *scratch);
                    if (!q || !want || !got || !alone || !scratch) {
                        printf("FAIL out of memory\n");
                        failures++;
                        free(q), free(want), free(got), free(alone), free(scratch);
                        continue;
                    }
                    for (size_t i = 0; i < nf; i++) q[i] = ldexpf(frand() * amp, -(int)(rnd() % 8));
                    char what[128];
                    for (int lanes = 8; lanes <= 16; lanes += 8) {
                        slm_cpu_attention_group_generic(lanes, q, nq, hd, scale, k_pool, v_pool, blocks, BLOCK,
                                                        kv_stride, kv_off, first, n_ctx, scratch, want);
                        /* the vector path must not depend on what scratch held before */
                        for (size_t i = 0; i < ns; i++) scratch[i] = NAN;
                        slm_cpu_attention_group_lanes(lanes, q, nq, hd, scale, k_pool, v_pool, blocks, BLOCK,
                                                      kv_stride, kv_off, first, n_ctx, scratch, got);
                        snprintf(what, sizeof what, "attention %d lanes hd=%d group=%d n_ctx=%d first=%d %s: vector vs generic",
                                 lanes, hd, nq, n_ctx, first, peak ? "peaked" : "flat");
                        compare(what, want, got, (int)nf);
                        for (size_t i = 0; i < nf; i++)
                            if (!isfinite(got[i])) {
                                printf("FAIL %s: output %zu is %g\n", what, i, (double)got[i]);
                                failures++;
                                break;
                            }
                        if (lanes == 8) memcpy(alone, got, nf * sizeof *got);
                        else if (memcmp(alone, got, nf * sizeof *got)) layouts_differ++;
                    }
                    /* the default entry points: the layout of slm_cpu_lanes() */
                    slm_cpu_attention_group_lanes(slm_cpu_lanes(), q, nq, hd, scale, k_pool, v_pool, blocks, BLOCK,
                                                  kv_stride, kv_off, first, n_ctx, scratch, want);
                    slm_cpu_attention_group(q, nq, hd, scale, k_pool, v_pool, blocks, BLOCK, kv_stride, kv_off, first,
                                            n_ctx, scratch, got);
                    snprintf(what, sizeof what, "attention hd=%d group=%d n_ctx=%d first=%d %s: default vs its layout",
                             hd, nq, n_ctx, first, peak ? "peaked" : "flat");
                    compare(what, want, got, (int)nf);
                    for (int h = 0; h < nq; h++)
                        slm_cpu_attention_head(q + (size_t)h * (size_t)hd, hd, scale, k_pool, v_pool, blocks, BLOCK,
                                               kv_stride, kv_off, first, n_ctx, scratch,
                                               alone + (size_t)h * (size_t)hd);
                    snprintf(what, sizeof what, "attention hd=%d group=%d n_ctx=%d first=%d %s: alone vs in group", hd,
                             nq, n_ctx, first, peak ? "peaked" : "flat");
                    compare(what, got, alone, (int)nf);
                    free(q), free(want), free(got), free(alone), free(scratch);
                }
            }
        }
        free(k_pool);
        free(v_pool);
    }
}

static void check_f16_store(void)
{
    enum { N = 4096 };
    float x[N];
    slm_half y[N];
    int bad = 0;
    uint64_t checked = 0;
    /* every 97th bit pattern, then all patterns near the boundaries of slm_f32_to_half's cases */
    static const uint32_t edges[] = {0x00000000u, 0x33000000u, 0x33800000u, 0x38800000u, 0x387fc000u,
                                     0x477ff000u, 0x477fe000u, 0x7f800000u, 0x7fc00000u, 0x3f800000u};
    uint64_t pat = 0;
    int phase = 0, edge = 0;
    for (;;) {
        int n = 0;
        while (n < N) {
            uint32_t u;
            if (phase == 0) {
                if (pat > 0xffffffffull) {
                    phase = 1;
                    continue;
                }
                u = (uint32_t)pat;
                pat += 97;
            } else {
                if (edge >= (int)(sizeof edges / sizeof *edges) * 2 * 8192) break;
                int e = edge / (2 * 8192), off = edge % (2 * 8192) - 8192;
                u = (edges[e] + (uint32_t)off) ^ ((edge & 1) ? 0x80000000u : 0u);
                edge++;
            }
            memcpy(&x[n++], &u, 4);
        }
        if (n == 0) break;
        slm_cpu_f32_to_f16(x, y, (size_t)n);
        for (int i = 0; i < n; i++) {
            slm_half w = slm_f32_to_half(x[i]);
            if (w != y[i] && bad++ < 10)
                printf("FAIL f32_to_f16(0x%08x): expected 0x%04x, got 0x%04x\n", (unsigned)bits_of(x[i]), w, y[i]);
        }
        checked += (uint64_t)n;
        if (n < N) break;
    }
    if (bad) {
        printf("FAIL f32_to_f16: %d of %llu differ\n", bad, (unsigned long long)checked);
        failures++;
    }
}

/* Each layout's exp: within 2.5 ulp of exp (above), 0 or inf past the
 * range, and the two forms apart in the last bit somewhere (else one would not be needed); then
 * SwiGLU's vector path against the scalar form, over exp's whole range (its slow lanes too). */
static void check_expf(void)
{
    int differ = 0;
    for (int lanes = 8; lanes <= 16; lanes += 8) {
        int bad = 0;
        double worst = 0;
        for (float x = -103.0f; x < 88.0f; x = nextafterf(x, INFINITY) + 0.0007f * fabsf(x) + 1e-7f) {
            float got = slm_cpu_expf(x, lanes);
            double want = exp((double)x);
            double ulp = want >= 0x1p-126 ? ldexp(1.0, ilogb(want) - 23) : 0x1p-149;
            if (slm_cpu_expf(x, 8) != slm_cpu_expf(x, 16)) differ++;
            if (fabs((double)got - want) / ulp > worst) worst = fabs((double)got - want) / ulp;
            if (fabs((double)got - want) > 2.5 * ulp && bad++ < 10)
                printf("FAIL expf(%.9g) %d lanes: expected %.9g, got %.9g\n", (double)x, lanes, want, (double)got);
        }
        if (slm_cpu_expf(-200.0f, lanes) != 0.0f || slm_cpu_expf(200.0f, lanes) != INFINITY) {
            printf("FAIL expf %d lanes: exp(-200) %g, exp(200) %g, expected 0 and inf\n", lanes,
                   (double)slm_cpu_expf(-200.0f, lanes), (double)slm_cpu_expf(200.0f, lanes));
            bad++;
        }
        printf("expf %d lanes: at most %.2f ulp from exp\n", lanes, worst);
        if (bad) failures++;
        enum { N = 4096 };
        static float gate[N], up[N], want[N], got[N];
        for (int i = 0; i < N; i++) {
            gate[i] = ldexpf(frand(), (int)(rnd() % 9) - 2) * (i % 7 == 0 ? 30.0f : 1.0f);   /* to |g| ~ 2000 */
            up[i] = frand();
            want[i] = gate[i] / (1.0f + slm_cpu_expf(-gate[i], lanes)) * up[i];
        }
        slm_cpu_swiglu_lanes(gate, up, N, lanes, got);
        char what[64];
        snprintf(what, sizeof what, "swiglu %d lanes: vector vs scalar", lanes);
        compare(what, want, got, N);
    }
    if (!differ) {
        printf("FAIL expf: the 8- and 16-lane forms never differ\n");
        failures++;
    }
}

static void check_released_blocks(void)
{
    enum { BS = 4, HD = 64, CTX = 45, NB = (CTX + BS - 1) / BS, GUARD = 1 << 16 };
    const size_t pool_bytes = (size_t)NB * BS * HD * sizeof(slm_half);
    unsigned char *map = mmap(NULL, GUARD + pool_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    slm_half *v_pool = malloc(pool_bytes);
    if (map == MAP_FAILED || !v_pool || mprotect(map, GUARD, PROT_NONE)) {
        printf("FAIL released blocks: cannot map the guarded pool\n");
        failures++;
        free(v_pool);
        return;
    }
    slm_half *k_pool = (slm_half *)(void *)(map + GUARD);
    random_halves(k_pool, pool_bytes / sizeof(slm_half), 1.0f);
    random_halves(v_pool, pool_bytes / sizeof(slm_half), 1.0f);
    float q[2 * HD], want[2 * HD], got[2 * HD];
    for (int i = 0; i < 2 * HD; i++) q[i] = frand();
    size_t ns = slm_cpu_attention_group_scratch(CTX, HD, 2);
    float *scratch = malloc(ns * sizeof *scratch);
    for (int first = 9; first < CTX && scratch; first += 4) {   /* first % 8 == 1 or 5: groups start below it */
        int32_t all[NB], released[NB];
        for (int b = 0; b < NB; b++) all[b] = released[b] = NB - 1 - b;
        for (int b = 0; b < first / BS; b++) released[b] = -1;
        for (int lanes = 8; lanes <= 16; lanes += 8) {
            slm_cpu_attention_group_lanes(lanes, q, 2, HD, 0.125f, k_pool, v_pool, all, BS, HD, 0, first, CTX, scratch,
                                          want);
            slm_cpu_attention_group_lanes(lanes, q, 2, HD, 0.125f, k_pool, v_pool, released, BS, HD, 0, first, CTX,
                                          scratch, got);
            char what[96];
            snprintf(what, sizeof what, "attention %d lanes, first %d, blocks before it released", lanes, first);
            compare(what, want, got, 2 * HD);
        }
    }
    free(scratch);
    free(v_pool);
    munmap(map, GUARD + pool_bytes);
}

int main(void)
{
    /* the layout chosen: 8 under SLM_CPU_KERNELS=avx2 or =generic, 16 only with AVX-512F */
    const char *cap = getenv("SLM_CPU_KERNELS"), *forced = getenv("SLM_CPU_LANES");
    int lanes = slm_cpu_lanes();
    if (lanes != 8 && lanes != 16) {
        printf("FAIL slm_cpu_lanes: expected 8 or 16, got %d\n", lanes);
        failures++;
    }
    if (!forced && cap && (!strcmp(cap, "avx2") || !strcmp(cap, "generic")) && lanes != 8) {
        printf("FAIL slm_cpu_lanes under SLM_CPU_KERNELS=%s: expected 8, got %d\n", cap, lanes);
        failures++;
    }
    printf("lanes: %d (kernels %s)\n", lanes, slm_cpu_kernels_name());
    check_expf();
    check_attention();
    check_released_blocks();
    check_f16_store();
    if (!layouts_differ) {
        printf("FAIL attention: the 8- and 16-lane layouts gave the same bits everywhere\n");
        failures++;
    }
    if (failures) {
        printf("test_attention: %d failures\n", failures);
        return 1;
    }
    if (!slm_cpu_have_avx2()) {
        printf("SKIP test_attention: no AVX2 path here (kernels %s): both sides were the portable code\n",
               slm_cpu_kernels_name());
        return 77;
    }
    printf("test_attention: ok (kernels %s)\n", slm_cpu_kernels_name());
    return 0;
}
