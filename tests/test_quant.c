/*
 * tests/test_quant.c - scalar conversions, dequantization and activation quantization.
 *
 * 1. slm_cpu_dequantize_row reproduces gguf's numpy reference bit for bit on the golden
 *    blocks of $SLM_TEST_DATA/golden/quant/<TYPE>.hex (tests/golden/make_quant_golden.py).
 *    slm_cpu_quantize_row makes gguf's blocks (ggml's reference quantizers) for Q4_0, Q4_1,
 *    Q5_0, Q5_1 and Q8_0 from the inputs of golden/quant/quantize_<TYPE>.hex.
 * 2. Half and bfloat16 conversions: every half and every bf16 widens exactly; every non-NaN
 *    half round-trips; narrowing rounds to nearest even (checked on every halfway point,
 *    its neighbours and random floats against an independent reference, itself checked
 *    against the compiler's _Float16 where there is one), overflows to Inf, keeps NaN NaN.
 * 3. slm_cpu_quantize_row for Q8_0 / Q8_1 / Q8_K gives ggml's reference blocks with
 *    half-to-even rounding (exact ties included), Q8_1's s = fp16(d * sum(q)), Q8_K's bsums,
 *    and dequantizes back within half a step.
 * 4. Bad input: unknown types and partial blocks give -EINVAL and write nothing.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dequant.h"

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#include "tests/rng.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------- golden dequantization */

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int hex_digit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads a golden file: hex digits (whitespace ignored) decoded into bytes. NULL on a read
 * error or a character that is not a hex digit. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t n = 0, cap = 1 << 16;
    uint8_t *buf = malloc(cap);
    int c, hi = -1, bad = 0;
    while (buf && (c = getc(f)) != EOF) {
        if (c == '\n' || c == ' ' || c == '\r') continue;
        int d = hex_digit(c);
        if (d < 0) {
            bad = 1;
            break;
        }
        if (hi < 0) {
            hi = d;
            continue;
        }
        if (n == cap) {
            uint8_t *p = realloc(buf, cap *= 2);
            if (!p) break;
            buf = p;
        }
        buf[n++] = (uint8_t)(hi << 4 | d);
        hi = -1;
    }
    fclose(f);
    if (!buf || bad || hi >= 0 || n == 0) {
        if (bad || hi >= 0) errno = EINVAL;
        free(buf);
        return NULL;
    }
    *size = n;
    return buf;
}

static void check_golden(const char *dir, uint32_t type)
{
    const char *name = slm_qtype_name(type);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.hex", dir, name);
    size_t size = 0;
    uint8_t *file = read_file(path, &size);
    if (!file) {
        printf("golden %s: cannot read %s: %s\n", name, path, strerror(errno));
        failures++;
        return;
    }
    if (size < 16 || memcmp(file, "SLMQ", 4) != 0) {
        printf("golden %s: bad header in %s\n", name, path);
        failures++;
        free(file);
        return;
    }
    uint32_t ftype = rd32(file + 4), n_blocks = rd32(file + 8), per_block = rd32(file + 12);
    size_t bb = slm_qblock_bytes(type);
    int64_t n = (int64_t)n_blocks * per_block;
    if (ftype != type || per_block != slm_qblock_elems(type) || n_blocks == 0 ||
        size != 16 + (size_t)n_blocks * bb + (size_t)n * 4) {
        printf("golden %s: header (type %u, %u blocks of %u) does not fit the file (%zu bytes)\n", name, ftype,
               n_blocks, per_block, size);
        failures++;
        free(file);
        return;
    }
    /* copy both parts into their own (aligned) buffers; guard words after dst */
    uint8_t *src = malloc((size_t)n_blocks * bb);
    float *expected = malloc((size_t)n * sizeof(float));
    float *got = malloc(((size_t)n + 16) * sizeof(float));
    if (!src || !expected || !got) {
        printf("golden %s: out of memory\n", name);
        failures++;
        goto out;
    }
    memcpy(src, file + 16, (size_t)n_blocks * bb);
    memcpy(expected, file + 16 + (size_t)n_blocks * bb, (size_t)n * sizeof(float));
    memset(got, 0xA5, ((size_t)n + 16) * sizeof(float));

    int rc = slm_cpu_dequantize_row(type, src, got, n);
    CHECK(rc == 0, "golden %s: slm_cpu_dequantize_row: expected 0, got %d", name, rc);
    int64_t bad = 0;
    double max_abs = 0, max_rel = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t e = f32_bits(expected[i]), g = f32_bits(got[i]);
        if (e == g) continue;
        if (bad < 10)
            printf("golden %s block %lld element %lld: expected %.9g (0x%08x), got %.9g (0x%08x)\n", name,
                   (long long)(i / per_block), (long long)(i % per_block), (double)expected[i], e,
                   (double)got[i], g);
        bad++;
        double err = fabs((double)got[i] - (double)expected[i]);
        if (!(err <= max_abs)) max_abs = err;
        double rel = expected[i] != 0 ? err / fabs((double)expected[i]) : err;
        if (!(rel <= max_rel)) max_rel = rel;
    }
    for (int i = 0; i < 16; i++)
        CHECK(f32_bits(got[n + i]) == 0xA5A5A5A5u, "golden %s: dequantize wrote past element %lld", name,
              (long long)n);
    if (bad) {
        printf("golden %s: %lld of %lld elements differ from gguf's reference; max abs error %.3g, max rel %.3g\n",
               name, (long long)bad, (long long)n, max_abs, max_rel);
        failures++;
    }

    /* one block at a time must give the same bits as the whole row */
    int64_t bad_blocks = 0;
    for (uint32_t b = 0; b < n_blocks && rc == 0; b++) {
        float one[SLM_QK_K];
        int r = slm_cpu_dequantize_row(type, src + (size_t)b * bb, one, per_block);
        if (r != 0 || memcmp(one, got + (size_t)b * per_block, per_block * sizeof(float)) != 0) {
            if (bad_blocks < 10) printf("golden %s block %u: dequantized alone differs from in the row\n", name, b);
            bad_blocks++;
        }
    }
    if (bad_blocks) failures++;
    printf("golden %-4s: %u blocks, %lld elements, %lld mismatches\n", name, n_blocks, (long long)n,
           (long long)bad);
out:
    free(src);
    free(expected);
    free(got);
    free(file);
}

static void check_quantize_golden(const char *dir, uint32_t type)
{
    const char *name = slm_qtype_name(type);
    char path[4200];
    snprintf(path, sizeof path, "%s/quantize_%s.hex", dir, name);
    size_t size = 0;
    uint8_t *file = read_file(path, &size);
    if (!file) {
        printf("golden quantize %s: cannot read %s: %s\n", name, path, strerror(errno));
        failures++;
        return;
    }
    uint32_t n_blocks = size >= 16 ? rd32(file + 8) : 0, per_block = size >= 16 ? rd32(file + 12) : 0;
    size_t bb = slm_qblock_bytes(type);
    int64_t n = (int64_t)n_blocks * per_block;
    if (size < 16 || memcmp(file, "SLMX", 4) != 0 || rd32(file + 4) != type || per_block != slm_qblock_elems(type) ||
        n_blocks == 0 || size != 16 + (size_t)n * 4 + (size_t)n_blocks * bb) {
        printf("golden quantize %s: bad header in %s\n", name, path);
        failures++;
        free(file);
        return;
    }
    float *x = malloc((size_t)n * sizeof(float));
    uint8_t *got = malloc((size_t)n_blocks * bb + 64);
    if (!x || !got) {
        printf("golden quantize %s: out of memory\n", name);
        failures++;
    } else {
        const uint8_t *want = file + 16 + (size_t)n * 4;
        memcpy(x, file + 16, (size_t)n * sizeof(float));
        memset(got, 0x5A, (size_t)n_blocks * bb + 64);
        int rc = slm_cpu_quantize_row(type, x, got, n);
        CHECK(rc == 0, "slm_cpu_quantize_row(%s): expected 0, got %d", name, rc);
        int64_t bad = 0;
        for (size_t i = 0; i < (size_t)n_blocks * bb; i++) {
            if (got[i] == want[i]) continue;
            if (bad < 10)
                printf("golden quantize %s block %zu byte %zu: expected 0x%02x, got 0x%02x\n", name, i / bb, i % bb,
                       want[i], got[i]);
            bad++;
        }
        for (size_t i = 0; i < 64; i++)
            CHECK(got[(size_t)n_blocks * bb + i] == 0x5A, "golden quantize %s: wrote past block %u", name, n_blocks);
        if (bad) {
            printf("golden quantize %s: %lld of %zu bytes differ from gguf's quantizer\n", name, (long long)bad,
                   (size_t)n_blocks * bb);
            failures++;
        }
        printf("golden quantize %-4s: %u blocks, %lld byte mismatches\n", name, n_blocks, (long long)bad);
    }
    free(x);
    free(got);
    free(file);
}

/* ---------------------------------------------------------------- half and bfloat16 */

/* binary16 bits -> value, by arithmetic */
static double ref_half_value(uint16_t h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Nearest binary16 (ties to even) of a non-NaN float, by scaling and nearbyint. */
static uint16_t ref_f32_to_half(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7C00;    /* 65520 is the tie between 65504 and 2^16 */
    if (a < ldexp(1, -14)) return sign | (uint16_t)nearbyint(a * ldexp(1, 24));
    int e;
    double m = frexp(a, &e);                   /* a = m * 2^e, m in [0.5, 1) */
    double q = nearbyint(ldexp(m, 11));        /* 1024..2048; 2048 carries into the exponent */
    return sign | (uint16_t)(((e + 14) << 10) + (int)q - 1024);
}

/* Nearest bfloat16 (ties to even) of a non-NaN float: pick the nearer of the two candidates. */
static uint16_t ref_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)(u >> 16) & 0x8000;
    uint16_t lo = (uint16_t)((u >> 16) & 0x7FFF), hi = (uint16_t)(lo + 1);
    double a = fabs((double)f);
    double vlo = fabs((double)bits_f32((uint32_t)lo << 16));
    /* above the largest finite bf16 the next step is 2^128 (rounds to Inf) */
    double vhi = hi == 0x7F80 ? ldexp(1, 128) : fabs((double)bits_f32((uint32_t)hi << 16));
    if (a == vlo) return sign | lo;
    double dlo = a - vlo, dhi = vhi - a;
    if (dlo < dhi || (dlo == dhi && (lo & 1) == 0)) return sign | lo;
    return sign | hi;
}

static void check_f32_to_half(float f, int *bad)
{
    uint16_t got = slm_f32_to_half(f);
    uint16_t want = ref_f32_to_half(f);
#if defined(__FLT16_MANT_DIG__)
    _Float16 c = (_Float16)f;
    uint16_t cb;
    memcpy(&cb, &c, 2);
    if (cb != want) {
        printf("test reference: half of %.9g (0x%08x): _Float16 says 0x%04x, reference 0x%04x\n", (double)f,
               f32_bits(f), cb, want);
        failures++;
    }
#endif
    if (got != want) {
        if (*bad < 10)
            printf("slm_f32_to_half(%.9g = 0x%08x): expected 0x%04x, got 0x%04x\n", (double)f, f32_bits(f), want, got);
        ++*bad;
    }
}

static void check_half(void)
{
    int bad = 0;
    /* every half widens exactly; every non-NaN half round-trips */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = slm_half_to_f32((slm_half)h);
        int is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (is_nan) {
            if (!isnan(f)) {
                if (bad++ < 10) printf("slm_half_to_f32(0x%04x): expected NaN, got %.9g\n", h, (double)f);
            } else if (!((slm_f32_to_half(f) & 0x7C00) == 0x7C00 && (slm_f32_to_half(f) & 0x3FF))) {
                if (bad++ < 10) printf("half NaN 0x%04x round trip: expected a NaN, got 0x%04x\n", h, slm_f32_to_half(f));
            }
            continue;
        }
        double want = ref_half_value((uint16_t)h);
        if ((double)f != want || !signbit(f) != !signbit(want)) {
            if (bad++ < 10) printf("slm_half_to_f32(0x%04x): expected %.9g, got %.9g\n", h, want, (double)f);
            continue;
        }
        slm_half back = slm_f32_to_half(f);
        if (back != h && bad++ < 10) printf("half round trip of 0x%04x: expected 0x%04x, got 0x%04x\n", h, h, back);
    }
    CHECK(bad == 0, "slm_half_to_f32 / round trip: %d of 65536 halves wrong", bad);

    /* narrowing: every value, every halfway point and its neighbours, both signs */
    bad = 0;
    for (uint32_t h = 0; h < 0x7C00; h++) {
        double v = ref_half_value((uint16_t)h);
        double next = h == 0x7BFF ? 65536.0 : ref_half_value((uint16_t)(h + 1));
        float mid = (float)((v + next) / 2);   /* exact: 12 significant bits */
        float cases[5] = {(float)v, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), nextafterf((float)v, INFINITY)};
        for (int c = 0; c < 5; c++) {
            check_f32_to_half(cases[c], &bad);
            check_f32_to_half(-cases[c], &bad);
        }
    }
    /* random floats from far below the subnormals to far above the largest half */
    for (int i = 0; i < 400000; i++) {
        uint32_t u = (uint32_t)rnd();
        uint32_t e = 127 - 30 + (uint32_t)((u >> 23) % 50);
        check_f32_to_half(bits_f32((u & 0x807FFFFFu) | e << 23), &bad);
    }
    float specials[] = {INFINITY, -INFINITY, 65519.996f, 65520.0f, 1e10f, 3.4028235e38f, 0.0f, -0.0f,
                        0x1p-25f, 0x1.000002p-25f, 0x1p-26f, 0x1.8p-24f, 0x1.ffep-15f, 1e-30f, 0x1p-149f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        check_f32_to_half(specials[i], &bad);
        check_f32_to_half(-specials[i], &bad);
    }
    CHECK(bad == 0, "slm_f32_to_half: %d wrong roundings", bad);
    CHECK(slm_f32_to_half(65520.0f) == 0x7C00, "slm_f32_to_half(65520): expected 0x7c00 (Inf), got 0x%04x",
          slm_f32_to_half(65520.0f));
    CHECK(slm_f32_to_half(0x1p-25f) == 0x0000, "slm_f32_to_half(2^-25): expected 0x0000, got 0x%04x",
          slm_f32_to_half(0x1p-25f));
    CHECK(slm_f32_to_half(0x1.8p-24f) == 0x0002, "slm_f32_to_half(1.5 * 2^-24): expected 0x0002, got 0x%04x",
          slm_f32_to_half(0x1.8p-24f));

    /* NaN stays NaN, including payloads that live only in the low mantissa bits */
    uint32_t nans[] = {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7F801000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        slm_half h = slm_f32_to_half(bits_f32(nans[i]));
        CHECK((h & 0x7C00) == 0x7C00 && (h & 0x3FF), "slm_f32_to_half(NaN 0x%08x): expected a NaN, got 0x%04x",
              nans[i], h);
    }
}

static void check_bf16(void)
{
    int bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = slm_bf16_to_f32((slm_bf16)b);
        int is_nan = (b & 0x7F80) == 0x7F80 && (b & 0x7F);
        if (is_nan ? !isnan(f) : f32_bits(f) != b << 16) {
            if (bad++ < 10) printf("slm_bf16_to_f32(0x%04x): expected 0x%08x, got 0x%08x\n", b, b << 16, f32_bits(f));
        }
    }
    CHECK(bad == 0, "slm_bf16_to_f32: %d of 65536 wrong", bad);

    bad = 0;
    for (uint32_t hi = 0; hi < 65536; hi++) {
        uint32_t lows[7] = {0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, (uint32_t)rnd() & 0xFFFF};
        for (int l = 0; l < 7; l++) {
            float f = bits_f32(hi << 16 | lows[l]);
            slm_bf16 got = slm_f32_to_bf16(f);
            if (isnan(f)) {
                if (!((got & 0x7F80) == 0x7F80 && (got & 0x40))) {
                    if (bad++ < 10) printf("slm_f32_to_bf16(NaN 0x%08x): expected a quiet NaN, got 0x%04x\n",
                                           f32_bits(f), got);
                }
                continue;
            }
            slm_bf16 want = ref_f32_to_bf16(f);
            if (got != want && bad++ < 10)
                printf("slm_f32_to_bf16(%.9g = 0x%08x): expected 0x%04x, got 0x%04x\n", (double)f, f32_bits(f), want,
                       got);
        }
    }
    CHECK(bad == 0, "slm_f32_to_bf16: %d wrong", bad);
    CHECK(slm_f32_to_bf16(bits_f32(0x3F808000u)) == 0x3F80, "bf16 tie to even (0x3f808000): expected 0x3f80, got 0x%04x",
          slm_f32_to_bf16(bits_f32(0x3F808000u)));
    CHECK(slm_f32_to_bf16(bits_f32(0x3F818000u)) == 0x3F82, "bf16 tie to even (0x3f818000): expected 0x3f82, got 0x%04x",
          slm_f32_to_bf16(bits_f32(0x3F818000u)));
    CHECK(slm_f32_to_bf16(bits_f32(0x7F7F8000u)) == 0x7F80, "bf16 overflow (0x7f7f8000): expected 0x7f80, got 0x%04x",
          slm_f32_to_bf16(bits_f32(0x7F7F8000u)));
}

/* ---------------------------------------------------------------- activation quantizers */

/* Test input: blocks of 32 with varied magnitudes, a zero block, exact ties. */
static void make_activations(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t blk = i / 32;
        double scale = blk % 7 == 0 ? 1e-5 : blk % 7 == 1 ? 1000.0 : blk % 7 == 2 ? 0.02 : 1.0;
        x[i] = (float)(scale * ((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0));
    }
    if (n >= 64)
        for (int i = 32; i < 64; i++) x[i] = 0.0f;
}

static int q8_bad;
static void q8_mismatch(const char *what, int64_t blk, int64_t j, double want, double got)
{
    if (q8_bad++ < 10) printf("%s block %lld element %lld: expected %.9g, got %.9g\n", what, (long long)blk,
                              (long long)j, want, got);
}

/* ggml's reference for Q8_0 / Q8_1 with nearbyintf; checks the block and its dequantization */
static void check_q8_0_or_1(uint32_t type, const float *x, int64_t n)
{
    const char *name = slm_qtype_name(type);
    int is_q8_1 = type == SLM_TYPE_Q8_1;
    size_t bb = slm_qblock_bytes(type);
    int64_t nb = n / 32;
    uint8_t *q = malloc((size_t)nb * bb);
    float *y = malloc((size_t)n * sizeof(float));
    if (!q || !y) { printf("out of memory\n"); failures++; free(q); free(y); return; }
    int rc = slm_cpu_quantize_row(type, x, q, n);
    CHECK(rc == 0, "slm_cpu_quantize_row(%s): expected 0, got %d", name, rc);
    rc = slm_cpu_dequantize_row(type, q, y, n);
    CHECK(rc == 0, "slm_cpu_dequantize_row(%s): expected 0, got %d", name, rc);
    q8_bad = 0;
    double max_err_ratio = 0;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * 32;
        const uint8_t *blk = q + (size_t)b * bb;
        slm_half dh, sh = 0;
        memcpy(&dh, blk, 2);
        if (is_q8_1) memcpy(&sh, blk + 2, 2);
        const int8_t *qs = (const int8_t *)(blk + (is_q8_1 ? 4 : 2));
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = amax != 0 ? 127.0f / amax : 0.0f;   /* the scale ggml's x86 quantizers use */
        if (dh != ref_f32_to_half(d)) q8_mismatch(is_q8_1 ? "Q8_1 d" : "Q8_0 d", b, 0, ref_f32_to_half(d), dh);
        int sum = 0;
        float dd = (float)ref_half_value(dh);
        for (int j = 0; j < 32; j++) {
            int want = (int)nearbyintf(xb[j] * id);
            sum += want;
            if (qs[j] != want) q8_mismatch(name, b, j, want, qs[j]);
            /* half a step of the float d, plus the step's own rounding to half, plus float noise */
            double bound = (double)d / 2 + fabs((double)qs[j]) * fabs((double)d - dd) + (double)amax * 0x1p-20;
            double err = fabs((double)y[b * 32 + j] - (double)xb[j]);
            if (err > bound) q8_mismatch(is_q8_1 ? "Q8_1 dequantized error bound" : "Q8_0 dequantized error bound",
                                         b, j, bound, err);
            if (bound > 0 && err / bound > max_err_ratio) max_err_ratio = err / bound;
            if (f32_bits(y[b * 32 + j]) != f32_bits((float)qs[j] * dd))
                q8_mismatch(is_q8_1 ? "Q8_1 dequantized" : "Q8_0 dequantized", b, j, (float)qs[j] * dd, y[b * 32 + j]);
        }
        if (is_q8_1) {
            slm_half want_s = ref_f32_to_half(d * (float)sum);
            if (sh != want_s) {
                q8_mismatch("Q8_1 s = fp16(d * sum(q))", b, 0, ref_half_value(want_s), ref_half_value(sh));
                if (sh == ref_f32_to_half(dd * (float)sum))
                    printf("  (Q8_1 block %lld: s was computed from the half d, ggml uses the float d)\n", (long long)b);
            }
        }
    }
    CHECK(q8_bad == 0, "%s quantize: %d mismatches", name, q8_bad);
    printf("quantize %s: %lld blocks, max error / bound %.3f, %d mismatches\n", name, (long long)nb, max_err_ratio, q8_bad);
    free(q);
    free(y);
}

/* ggml's reference for Q8_K (signed max, iscale = -127 / max, d = 1 / iscale, bsums of 16). */
static void check_q8_k(const float *x, int64_t n)
{
    int64_t nb = n / SLM_QK_K;
    struct slm_block_q8_K *q = malloc((size_t)nb * sizeof *q);
    float *y = malloc((size_t)n * sizeof(float));
    if (!q || !y) { printf("out of memory\n"); failures++; free(q); free(y); return; }
    int rc = slm_cpu_quantize_row(SLM_TYPE_Q8_K, x, q, n);
    CHECK(rc == 0, "slm_cpu_quantize_row(Q8_K): expected 0, got %d", rc);
    rc = slm_cpu_dequantize_row(SLM_TYPE_Q8_K, q, y, n);
    CHECK(rc == 0, "slm_cpu_dequantize_row(Q8_K): expected 0, got %d", rc);
    q8_bad = 0;
    double max_err_ratio = 0;
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + b * SLM_QK_K;
        float amax = 0, max = 0;
        for (int j = 0; j < SLM_QK_K; j++)
            if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
        int want[SLM_QK_K] = {0};
        float d = 0;
        if (amax != 0) {
            float iscale = -127.0f / max;
            for (int j = 0; j < SLM_QK_K; j++) {
                int v = (int)nearbyintf(iscale * xb[j]);
                want[j] = v > 127 ? 127 : v;
            }
            d = 1.0f / iscale;
        }
        if (f32_bits(q[b].d) != f32_bits(d)) q8_mismatch("Q8_K d", b, 0, d, q[b].d);
        for (int j = 0; j < SLM_QK_K; j++) {
            if (q[b].qs[j] != want[j]) q8_mismatch("Q8_K", b, j, want[j], q[b].qs[j]);
            double err = fabs((double)y[b * SLM_QK_K + j] - (double)xb[j]);
            double bound = fabs((double)d) / 2 + (double)amax * 0x1p-20;
            if (err > bound) q8_mismatch("Q8_K dequantized error bound", b, j, bound, err);
            if (bound > 0 && err / bound > max_err_ratio) max_err_ratio = err / bound;
            if (f32_bits(y[b * SLM_QK_K + j]) != f32_bits(q[b].d * (float)q[b].qs[j]))
                q8_mismatch("Q8_K dequantized", b, j, q[b].d * (float)q[b].qs[j], y[b * SLM_QK_K + j]);
        }
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += want[g * 16 + j];
            if (q[b].bsums[g] != s) q8_mismatch("Q8_K bsums", b, g, s, q[b].bsums[g]);
        }
    }
    CHECK(q8_bad == 0, "Q8_K quantize: %d mismatches", q8_bad);
    printf("quantize Q8_K: %lld blocks, max error / bound %.3f, %d mismatches\n", (long long)nb, max_err_ratio, q8_bad);
    free(q);
    free(y);
}

/* Exact ties round half to even, with values chosen so that d (or 1/iscale) is exactly 1. */
static void check_ties(void)
{
    float x[SLM_QK_K];
    static const float tie_in[8] = {0.5f, 1.5f, 2.5f, 3.5f, -0.5f, -1.5f, -2.5f, 126.5f};
    static const int tie_q[8] = {0, 2, 2, 4, 0, -2, -2, 126};
    for (int j = 0; j < SLM_QK_K; j++) x[j] = (float)(j % 50) - 25.0f;
    x[0] = 127.0f;
    for (int j = 0; j < 8; j++) x[1 + j] = tie_in[j];

    struct slm_block_q8_0 b0;
    int rc = slm_cpu_quantize_row(SLM_TYPE_Q8_0, x, &b0, 32);
    CHECK(rc == 0 && b0.d == 0x3C00, "Q8_0 ties: expected rc 0 and d 0x3c00, got %d and 0x%04x", rc, b0.d);
    for (int j = 0; j < 8; j++)
        CHECK(b0.qs[1 + j] == tie_q[j], "Q8_0 round half to even of %.1f: expected %d, got %d", (double)tie_in[j],
              tie_q[j], b0.qs[1 + j]);

    struct slm_block_q8_1 b1;
    rc = slm_cpu_quantize_row(SLM_TYPE_Q8_1, x, &b1, 32);
    CHECK(rc == 0 && b1.d == 0x3C00, "Q8_1 ties: expected rc 0 and d 0x3c00, got %d and 0x%04x", rc, b1.d);
    int sum = 0;
    for (int j = 0; j < 32; j++) sum += (int)nearbyintf(x[j]);
    for (int j = 0; j < 8; j++)
        CHECK(b1.qs[1 + j] == tie_q[j], "Q8_1 round half to even of %.1f: expected %d, got %d", (double)tie_in[j],
              tie_q[j], b1.qs[1 + j]);
    CHECK(b1.s == ref_f32_to_half((float)sum), "Q8_1 s: expected fp16(%d) = 0x%04x, got 0x%04x", sum,
          ref_f32_to_half((float)sum), b1.s);

    /* Q8_K: the largest |x| is -127, so iscale = 1 and q = x */
    x[0] = -127.0f;
    struct slm_block_q8_K bk;
    rc = slm_cpu_quantize_row(SLM_TYPE_Q8_K, x, &bk, SLM_QK_K);
    CHECK(rc == 0 && bk.d == 1.0f, "Q8_K ties: expected rc 0 and d 1, got %d and %.9g", rc, (double)bk.d);
    for (int j = 0; j < 8; j++)
        CHECK(bk.qs[1 + j] == tie_q[j], "Q8_K round half to even of %.1f: expected %d, got %d", (double)tie_in[j],
              tie_q[j], bk.qs[1 + j]);
}

/* F16 / BF16 / F32 "quantization" is element-wise conversion. */
static void check_float_quantize(const float *x, int64_t n)
{
    uint16_t *h = malloc((size_t)n * 2);
    float *f = malloc((size_t)n * 4);
    if (!h || !f) { printf("out of memory\n"); failures++; free(h); free(f); return; }
    int bad = 0;
    CHECK(slm_cpu_quantize_row(SLM_TYPE_F16, x, h, n) == 0, "slm_cpu_quantize_row(F16): expected 0");
    for (int64_t i = 0; i < n; i++)
        if (h[i] != ref_f32_to_half(x[i]) && bad++ < 10)
            printf("quantize F16 element %lld: expected 0x%04x, got 0x%04x\n", (long long)i, ref_f32_to_half(x[i]), h[i]);
    CHECK(slm_cpu_quantize_row(SLM_TYPE_BF16, x, h, n) == 0, "slm_cpu_quantize_row(BF16): expected 0");
    for (int64_t i = 0; i < n; i++)
        if (h[i] != ref_f32_to_bf16(x[i]) && bad++ < 10)
            printf("quantize BF16 element %lld: expected 0x%04x, got 0x%04x\n", (long long)i, ref_f32_to_bf16(x[i]), h[i]);
    CHECK(slm_cpu_quantize_row(SLM_TYPE_F32, x, f, n) == 0, "slm_cpu_quantize_row(F32): expected 0");
    if (memcmp(f, x, (size_t)n * 4) != 0 && bad++ < 10) printf("quantize F32: output differs from input\n");
    CHECK(bad == 0, "F16/BF16/F32 quantize: %d mismatches", bad);
    free(h);
    free(f);
}

/* ---------------------------------------------------------------- bad input */

static int untouched(const float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f32_bits(dst[i]) != 0x7FA5A5A5u) return 0;
    return 1;
}

static void check_bad_input(void)
{
    enum { N = 2 * SLM_QK_K };
    static uint8_t src[N * 4 + 64];
    static float dst[N + 64];
    static uint8_t qdst[N * 4 + 64];
    float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)i * 0.01f;
    memset(src, 0x11, sizeof src);
    uint32_t unknown[] = {4, 5, 10, 11, 16, 20, 29, SLM_TYPE_COUNT, 1000, UINT32_MAX};
    for (size_t t = 0; t < sizeof unknown / sizeof unknown[0]; t++) {
        for (size_t i = 0; i < N + 64; i++) dst[i] = bits_f32(0x7FA5A5A5u);
        int rc = slm_cpu_dequantize_row(unknown[t], src, dst, N);
        CHECK(rc == -EINVAL, "slm_cpu_dequantize_row(type %u): expected %d, got %d", unknown[t], -EINVAL, rc);
        CHECK(untouched(dst, N + 64), "slm_cpu_dequantize_row(type %u): wrote to dst on error", unknown[t]);
        memset(qdst, 0x5A, sizeof qdst);
        rc = slm_cpu_quantize_row(unknown[t], x, qdst, N);
        CHECK(rc == -EINVAL, "slm_cpu_quantize_row(type %u): expected %d, got %d", unknown[t], -EINVAL, rc);
        int wrote = 0;
        for (size_t i = 0; i < sizeof qdst; i++) wrote |= qdst[i] != 0x5A;
        CHECK(!wrote, "slm_cpu_quantize_row(type %u): wrote to dst on error", unknown[t]);
    }
    uint32_t blocked[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q8_1,
                          SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_K};
    for (size_t t = 0; t < sizeof blocked / sizeof blocked[0]; t++) {
        int64_t qk = slm_qblock_elems(blocked[t]);
        int64_t ns[] = {qk - 1, qk + 1, qk / 2, 2 * qk - 16};
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            for (size_t i = 0; i < N + 64; i++) dst[i] = bits_f32(0x7FA5A5A5u);
            int rc = slm_cpu_dequantize_row(blocked[t], src, dst, ns[k]);
            CHECK(rc == -EINVAL, "slm_cpu_dequantize_row(%s, n = %lld): expected %d, got %d",
                  slm_qtype_name(blocked[t]), (long long)ns[k], -EINVAL, rc);
            CHECK(untouched(dst, N + 64), "slm_cpu_dequantize_row(%s, n = %lld): wrote to dst on error",
                  slm_qtype_name(blocked[t]), (long long)ns[k]);
        }
    }
    uint32_t act[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q8_1, SLM_TYPE_Q8_K};
    for (size_t t = 0; t < 3; t++) {
        int64_t qk = slm_qblock_elems(act[t]);
        memset(qdst, 0x5A, sizeof qdst);
        int rc = slm_cpu_quantize_row(act[t], x, qdst, qk + 1);
        CHECK(rc == -EINVAL, "slm_cpu_quantize_row(%s, n = %lld): expected %d, got %d", slm_qtype_name(act[t]),
              (long long)(qk + 1), -EINVAL, rc);
        int wrote = 0;
        for (size_t i = 0; i < sizeof qdst; i++) wrote |= qdst[i] != 0x5A;
        CHECK(!wrote, "slm_cpu_quantize_row(%s, n = %lld): wrote to dst on error", slm_qtype_name(act[t]),
              (long long)(qk + 1));
    }
}

int main(void)
{
    const char *data = getenv("SLM_TEST_DATA");
    if (!data || !*data) {
        printf("SLM_TEST_DATA: expected the tests/ folder of the source tree, got nothing\n");
        return 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/golden/quant", data);
    uint32_t golden[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0,
                         SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) check_golden(dir, golden[i]);
    uint32_t golden_q[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0};
    for (size_t i = 0; i < sizeof golden_q / sizeof golden_q[0]; i++) check_quantize_golden(dir, golden_q[i]);

    check_half();
    check_bf16();

    enum { NA = 64 * SLM_QK_K };
    float *x = malloc(NA * sizeof(float));
    if (!x) return 1;
    make_activations(x, NA);
    check_q8_0_or_1(SLM_TYPE_Q8_0, x, NA);
    check_q8_0_or_1(SLM_TYPE_Q8_1, x, NA);
    for (int i = 0; i < SLM_QK_K; i++) x[2 * SLM_QK_K + i] = 0.0f;        /* a zero Q8_K block */
    for (int i = 0; i < SLM_QK_K; i++) x[3 * SLM_QK_K + i] *= 1e25f;      /* huge */
    for (int i = 0; i < SLM_QK_K; i++) x[4 * SLM_QK_K + i] *= 1e-25f;     /* tiny, still normal */
    check_q8_k(x, NA);
    check_float_quantize(x, NA);
    free(x);
    check_ties();
    check_bad_input();

    if (failures) printf("test_quant: %d failures\n", failures);
    else printf("test_quant: ok\n");
    return failures ? 1 : 0;
}
