/*
 * tests/test_gguf.c - the validating GGUF reader (daemon/engine/gguf.{h,c}).
 *
 * A small in-memory GGUF writer builds files with chosen metadata and tensors into a
 * temporary directory; each is opened with slm_gguf_open. Good files (v2 and v3, every
 * value type, arrays, several tensor types and alignments) must read back exactly; bad
 * files (truncated at every byte, absurd counts, bad types, overlaps, ...) must fail with
 * an error naming the file and the problem; randomly corrupted files must never crash
 * and, when they open, must hand out only views inside the mapping. The real default
 * model is checked when SLM_MODEL_DIR holds it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/engine/gguf.h"
#include "common/log.h"

static int failures;

static void fail(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *what, const char *fmt, ...)
{
    va_list ap;
    failures++;
    if (failures > 50) return;
    printf("FAIL %s: ", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void expect_u64(const char *what, uint64_t want, uint64_t got)
{
    if (want != got) fail(what, "expected %llu, got %llu", (unsigned long long)want, (unsigned long long)got);
}

static void expect_i64(const char *what, int64_t want, int64_t got)
{
    if (want != got) fail(what, "expected %lld, got %lld", (long long)want, (long long)got);
}

static void expect_rc(const char *what, int want, int got)
{
    if (want != got) fail(what, "expected rc %d, got %d", want, got);
}

/* ---- the writer */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(struct buf *b, uint16_t v) { put(b, &v, 2); }
static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(struct buf *b, float v) { put(b, &v, 4); }
static void put_f64(struct buf *b, double v) { put(b, &v, 8); }

static void put_strn(struct buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void put_str(struct buf *b, const char *s) { put_strn(b, s, strlen(s)); }

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

#define AUTO_OFFSET UINT64_MAX

struct writer {
    uint32_t version;
    uint64_t n_kv, n_tensors;   /* written into the header as they are */
    struct buf kv, ti;          /* the key-value section, the tensor-info section */
    uint64_t alignment;         /* padding before the data section and auto offsets */
    uint64_t data_size;         /* bytes of the data section */
};

static void w_init(struct writer *w, uint32_t version)
{
    memset(w, 0, sizeof *w);
    w->version = version;
    w->alignment = 32;
}

static void w_free(struct writer *w)
{
    buf_free(&w->kv);
    buf_free(&w->ti);
}

/* Starts a key-value pair; the caller appends the value to w->kv. */
static struct buf *kv(struct writer *w, const char *key, uint32_t type)
{
    put_str(&w->kv, key);
    put_u32(&w->kv, type);
    w->n_kv++;
    return &w->kv;
}

static void kv_u32(struct writer *w, const char *key, uint32_t v) { put_u32(kv(w, key, SLM_GGUF_UINT32), v); }
static void kv_str(struct writer *w, const char *key, const char *s) { put_str(kv(w, key, SLM_GGUF_STRING), s); }

/* Starts an array; the caller appends n elements. */
static struct buf *kv_arr(struct writer *w, const char *key, uint32_t elem_type, uint64_t n)
{
    struct buf *b = kv(w, key, SLM_GGUF_ARRAY);
    put_u32(b, elem_type);
    put_u64(b, n);
    return b;
}

static void set_alignment(struct writer *w, uint32_t a)
{
    kv_u32(w, "general.alignment", a);
    w->alignment = a;
}

/* Bytes of a tensor of `type` with `nelem` elements, from GGUF's block layouts (kept
 * apart from kernels/quant.h on purpose, so the reader is checked against the format). */
static uint64_t type_nbytes(uint32_t type, uint64_t nelem)
{
    switch (type) {
    case 0: return nelem * 4;                   /* F32 */
    case 1: case 30: return nelem * 2;          /* F16, BF16 */
    case 2: return nelem / 32 * 18;             /* Q4_0 */
    case 3: return nelem / 32 * 20;             /* Q4_1 */
    case 6: return nelem / 32 * 22;             /* Q5_0 */
    case 7: return nelem / 32 * 24;             /* Q5_1 */
    case 8: return nelem / 32 * 34;             /* Q8_0 */
    case 12: return nelem / 256 * 144;          /* Q4_K */
    case 13: return nelem / 256 * 176;          /* Q5_K */
    case 14: return nelem / 256 * 210;          /* Q6_K */
    default: return 64;                         /* a bad type: any size will do */
    }
}

/* Adds a tensor info; returns its offset. AUTO_OFFSET places it after the data so far,
 * aligned. The data section grows to hold it unless its size or offset is absurd (those
 * are the bad files that want their data past the end). */
static uint64_t tensor(struct writer *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset)
{
    uint64_t nelem = 1;
    put_str(&w->ti, name);
    put_u32(&w->ti, n_dims);
    for (uint32_t d = 0; d < n_dims && d < 5; d++) {   /* ne holds at most 5 */
        put_u64(&w->ti, ne[d]);
        nelem *= ne[d];
    }
    put_u32(&w->ti, type);
    if (offset == AUTO_OFFSET) offset = (w->data_size + w->alignment - 1) / w->alignment * w->alignment;
    put_u64(&w->ti, offset);
    w->n_tensors++;
    uint64_t end = offset + type_nbytes(type, nelem);
    if (nelem < (1ull << 30) && offset < (1ull << 16) && end > w->data_size) w->data_size = end;
    return offset;
}

/* The byte at position j of the data section: a pattern that tells tensors apart. */
static uint8_t data_byte(uint64_t j) { return (uint8_t)(j * 131 + (j >> 8) * 7 + 1); }

/* Lays out the whole file into out: header, metadata, tensor infos, padding, data. */
static void w_file(const struct writer *w, struct buf *out)
{
    memset(out, 0, sizeof *out);
    put(out, "GGUF", 4);
    put_u32(out, w->version);
    put_u64(out, w->n_tensors);
    put_u64(out, w->n_kv);
    put(out, w->kv.p, w->kv.n);
    put(out, w->ti.p, w->ti.n);
    while (out->n % w->alignment) put_u8(out, 0);
    for (uint64_t j = 0; j < w->data_size; j++) put_u8(out, data_byte(j));
}

/* ---- files on disk */

static char tmpdir[512];

/* Overwrites in place and then cuts to length: truncating a file to zero first makes
 * ext4 flush it on close, which turns thousands of rewrites into seconds of I/O. */
static void write_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || (n && pwrite(fd, p, n, 0) != (ssize_t)n) || ftruncate(fd, (off_t)n) != 0 || close(fd) != 0) {
        printf("cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void path_for(char *path, size_t size, const char *name)
{
    snprintf(path, size, "%s/%s.gguf", tmpdir, name);
}

/* Opens a file that must fail; err must name the path and hold every one of subs
 * (NULL-terminated list). */
static void expect_fail_path(const char *what, const char *path, const char *const *subs)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (g) {
        fail(what, "expected open to fail, got a file with %llu keys and %llu tensors",
             (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
        slm_gguf_close(&g);
        return;
    }
    if (!strstr(err, path)) fail(what, "expected the error to name '%s', got '%s'", path, err);
    for (; subs && *subs; subs++)
        if (!strstr(err, *subs)) fail(what, "expected the error to contain '%s', got '%s'", *subs, err);
}

#define SUBS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_fail_buf(const char *what, const struct buf *file, const char *const *subs)
{
    char path[600];
    path_for(path, sizeof path, what);
    write_bytes(path, file->p, file->n);
    expect_fail_path(what, path, subs);
    unlink(path);
}

static void expect_fail(const char *what, const struct writer *w, const char *const *subs)
{
    struct buf file;
    w_file(w, &file);
    expect_fail_buf(what, &file, subs);
    buf_free(&file);
}

static struct slm_gguf *open_buf(const char *what, const struct buf *file, char *path, size_t path_size)
{
    char err[SLM_ERR_LEN] = "";
    path_for(path, path_size, what);
    write_bytes(path, file->p, file->n);
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (!g) fail(what, "expected the file to open, got '%s'", err);
    return g;
}

/* ---- good files */

static const int8_t arr_i8[] = {-128, -1, 0, 1, 127};
static const uint8_t arr_u8[] = {0, 1, 128, 255};
static const uint16_t arr_u16[] = {0, 1, 65535};
static const int16_t arr_i16[] = {-32768, -2, 32767};
static const uint32_t arr_u32[] = {0, 49152, 4294967295u};
static const int32_t arr_i32[] = {INT32_MIN, -7, 0, INT32_MAX};
static const float arr_f32[] = {0.5f, -2.25f, 1e30f, -0.0f, NAN, -INFINITY};
static const uint8_t arr_bool[] = {1, 0, 1};
static const uint64_t arr_u64[] = {0, 1, (uint64_t)INT64_MAX};
static const int64_t arr_i64[] = {INT64_MIN, -1, 0, INT64_MAX};
static const double arr_f64[] = {3.141592653589793, -1e300, 5e-324};
static const char *const arr_str[] = {"", "a", "<|im_start|>", "\xc4\xa0the", "longer string with spaces"};
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

struct good_tensor {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
};

static const struct good_tensor good_tensors[] = {
    {"token_embd.weight", 2, {64, 3}, 8},        /* Q8_0 */
    {"blk.0.attn_q.weight", 2, {64, 2}, 3},      /* Q4_1 */
    {"norm", 1, {7}, 0},                         /* F32, odd size: the next offset needs padding */
    {"f16", 3, {3, 2, 1}, 1},
    {"bf16", 1, {5}, 30},
    {"q4_0", 1, {32}, 2},
    {"q5_0", 2, {32, 3}, 6},
    {"q5_1", 1, {96}, 7},
    {"q4_k", 2, {256, 2}, 12},
    {"q5_k", 1, {256}, 13},
    {"q6_k", 4, {256, 1, 2, 1}, 14},
};

/* Builds the full good file: every value type, arrays of each, the tensors above.
 * alignment 0 leaves general.alignment out (the default, 32). */
static void build_good(struct writer *w, uint32_t version, uint32_t alignment)
{
    w_init(w, version);
    kv_str(w, "general.architecture", "llama");
    put_u8(kv(w, "t.u8", SLM_GGUF_UINT8), 200);
    put_u8(kv(w, "t.i8", SLM_GGUF_INT8), (uint8_t)(int8_t)-100);
    put_u8(kv(w, "t.i8pos", SLM_GGUF_INT8), 5);
    put_u16(kv(w, "t.u16", SLM_GGUF_UINT16), 60000);
    put_u16(kv(w, "t.i16", SLM_GGUF_INT16), (uint16_t)(int16_t)-30000);
    kv_u32(w, "t.u32", 4000000000u);
    kv_u32(w, "t.one", 1);
    put_u32(kv(w, "t.i32", SLM_GGUF_INT32), (uint32_t)(int32_t)-2000000000);
    put_f32(kv(w, "t.f32", SLM_GGUF_FLOAT32), 1.5f);
    put_u8(kv(w, "t.true", SLM_GGUF_BOOL), 1);
    put_u8(kv(w, "t.false", SLM_GGUF_BOOL), 0);
    put_u8(kv(w, "t.bool2", SLM_GGUF_BOOL), 2);
    put_strn(kv(w, "t.str", SLM_GGUF_STRING), "nul\0inside", 10);
    kv_str(w, "t.empty", "");
    put_u64(kv(w, "t.u64", SLM_GGUF_UINT64), (1ull << 63) + 5);
    put_u64(kv(w, "t.u64small", SLM_GGUF_UINT64), 7);
    put_u64(kv(w, "t.i64", SLM_GGUF_INT64), (uint64_t)INT64_MIN);
    put_u64(kv(w, "t.i64pos", SLM_GGUF_INT64), 42);
    put_f64(kv(w, "t.f64", SLM_GGUF_FLOAT64), 3.141592653589793);
    put_f64(kv(w, "t.f64big", SLM_GGUF_FLOAT64), 1e300);
    put_f64(kv(w, "t.f64inf", SLM_GGUF_FLOAT64), INFINITY);
    struct buf *b;
    b = kv_arr(w, "a.u8", SLM_GGUF_UINT8, LEN(arr_u8));
    put(b, arr_u8, sizeof arr_u8);
    b = kv_arr(w, "a.i8", SLM_GGUF_INT8, LEN(arr_i8));
    put(b, arr_i8, sizeof arr_i8);
    b = kv_arr(w, "a.u16", SLM_GGUF_UINT16, LEN(arr_u16));
    put(b, arr_u16, sizeof arr_u16);
    b = kv_arr(w, "a.i16", SLM_GGUF_INT16, LEN(arr_i16));
    put(b, arr_i16, sizeof arr_i16);
    b = kv_arr(w, "a.u32", SLM_GGUF_UINT32, LEN(arr_u32));
    put(b, arr_u32, sizeof arr_u32);
    b = kv_arr(w, "a.i32", SLM_GGUF_INT32, LEN(arr_i32));
    put(b, arr_i32, sizeof arr_i32);
    b = kv_arr(w, "a.f32", SLM_GGUF_FLOAT32, LEN(arr_f32));
    put(b, arr_f32, sizeof arr_f32);
    b = kv_arr(w, "a.bool", SLM_GGUF_BOOL, LEN(arr_bool));
    put(b, arr_bool, sizeof arr_bool);
    b = kv_arr(w, "a.u64", SLM_GGUF_UINT64, LEN(arr_u64));
    put(b, arr_u64, sizeof arr_u64);
    b = kv_arr(w, "a.i64", SLM_GGUF_INT64, LEN(arr_i64));
    put(b, arr_i64, sizeof arr_i64);
    b = kv_arr(w, "a.f64", SLM_GGUF_FLOAT64, LEN(arr_f64));
    put(b, arr_f64, sizeof arr_f64);
    b = kv_arr(w, "a.str", SLM_GGUF_STRING, LEN(arr_str));
    for (size_t i = 0; i < LEN(arr_str); i++) put_str(b, arr_str[i]);
    kv_arr(w, "a.empty", SLM_GGUF_UINT32, 0);
    kv_arr(w, "a.emptystr", SLM_GGUF_STRING, 0);
    if (alignment) set_alignment(w, alignment);
    for (size_t i = 0; i < LEN(good_tensors); i++) {
        const struct good_tensor *t = &good_tensors[i];
        tensor(w, t->name, t->n_dims, t->ne, t->type, AUTO_OFFSET);
    }
}

/* Every integer getter on `key`: the *_ok flags say which succeed, u and s the values they give. */
struct int_case {
    const char *key;
    int u64_ok, u32_ok, i64_ok, bool_ok;
    uint64_t u;   /* expected through get_u64 / get_u32 */
    int64_t s;    /* expected through get_i64 / get_bool */
};

static void check_int_getters(const struct slm_gguf *g, const char *tag)
{
    static const struct int_case cases[] = {
        {"t.u8", 1, 1, 1, 0, 200, 200},
        {"t.i8", 0, 0, 1, 0, 0, -100},
        {"t.i8pos", 1, 1, 1, 0, 5, 5},
        {"t.u16", 1, 1, 1, 0, 60000, 60000},
        {"t.i16", 0, 0, 1, 0, 0, -30000},
        {"t.u32", 1, 1, 1, 0, 4000000000u, 4000000000ll},
        {"t.one", 1, 1, 1, 1, 1, 1},
        {"t.i32", 0, 0, 1, 0, 0, -2000000000},
        {"t.true", 1, 1, 1, 1, 1, 1},
        {"t.false", 1, 1, 1, 1, 0, 0},
        {"t.bool2", 0, 0, 0, 0, 0, 0},
        {"t.u64", 1, 0, 0, 0, (1ull << 63) + 5, 0},
        {"t.u64small", 1, 1, 1, 0, 7, 7},
        {"t.i64", 0, 0, 1, 0, 0, INT64_MIN},
        {"t.i64pos", 1, 1, 1, 0, 42, 42},
        {"t.f32", 0, 0, 0, 0, 0, 0},
        {"t.f64", 0, 0, 0, 0, 0, 0},
        {"t.str", 0, 0, 0, 0, 0, 0},
        {"a.u32", 0, 0, 0, 0, 0, 0},
    };
    char what[160], err[SLM_ERR_LEN];
    for (size_t i = 0; i < LEN(cases); i++) {
        const struct int_case *c = &cases[i];
        uint64_t u = 0xdead;
        uint32_t u32 = 0xdead;
        int64_t s = 0xdead;
        int bl = 0xdead;
        int rc;
        err[0] = 0;
        snprintf(what, sizeof what, "%s: get_u64(%s)", tag, c->key);
        rc = slm_gguf_get_u64(g, c->key, &u, err);
        expect_rc(what, c->u64_ok ? 0 : -EINVAL, rc);
        if (c->u64_ok && !rc) expect_u64(what, c->u, u);
        if (!c->u64_ok && (!strstr(err, g->path) || !strstr(err, c->key)))
            fail(what, "expected an error naming the file and key, got '%s'", err);
        snprintf(what, sizeof what, "%s: get_u32(%s)", tag, c->key);
        rc = slm_gguf_get_u32(g, c->key, &u32, err);
        expect_rc(what, c->u32_ok ? 0 : -EINVAL, rc);
        if (c->u32_ok && !rc) expect_u64(what, c->u, u32);
        snprintf(what, sizeof what, "%s: get_i64(%s)", tag, c->key);
        rc = slm_gguf_get_i64(g, c->key, &s, NULL);
        expect_rc(what, c->i64_ok ? 0 : -EINVAL, rc);
        if (c->i64_ok && !rc) expect_i64(what, c->s, s);
        snprintf(what, sizeof what, "%s: get_bool(%s)", tag, c->key);
        rc = slm_gguf_get_bool(g, c->key, &bl, err);
        expect_rc(what, c->bool_ok ? 0 : -EINVAL, rc);
        if (c->bool_ok && !rc) expect_i64(what, c->s, bl);
        /* Integers never read as floats or strings. */
        float f;
        struct slm_gguf_str str;
        if (strcmp(c->key, "t.f32") != 0 && strcmp(c->key, "t.f64") != 0) {
            snprintf(what, sizeof what, "%s: get_f32(%s)", tag, c->key);
            expect_rc(what, -EINVAL, slm_gguf_get_f32(g, c->key, &f, err));
        }
        if (strcmp(c->key, "t.str") != 0) {
            snprintf(what, sizeof what, "%s: get_str(%s)", tag, c->key);
            expect_rc(what, -EINVAL, slm_gguf_get_str(g, c->key, &str, err));
        }
    }
}

static void check_scalars(const struct slm_gguf *g, const char *tag)
{
    char what[160], err[SLM_ERR_LEN];
    float f = 0;
    struct slm_gguf_str s = {0};

    check_int_getters(g, tag);

    snprintf(what, sizeof what, "%s: get_f32(t.f32)", tag);
    expect_rc(what, 0, slm_gguf_get_f32(g, "t.f32", &f, err));
    if (f != 1.5f) fail(what, "expected 1.5, got %g", f);
    snprintf(what, sizeof what, "%s: get_f32(t.f64)", tag);
    expect_rc(what, 0, slm_gguf_get_f32(g, "t.f64", &f, err));
    if (f != (float)3.141592653589793) fail(what, "expected %.9g, got %.9g", (float)3.141592653589793, f);
    snprintf(what, sizeof what, "%s: get_f32(t.f64inf)", tag);
    expect_rc(what, 0, slm_gguf_get_f32(g, "t.f64inf", &f, err));
    if (!isinf(f) || f < 0) fail(what, "expected inf, got %g", f);
    /* 1e300 does not fit in a float: reading it as one would lose it to infinity. */
    snprintf(what, sizeof what, "%s: get_f32(t.f64big)", tag);
    err[0] = 0;
    expect_rc(what, -EINVAL, slm_gguf_get_f32(g, "t.f64big", &f, err));
    if (!strstr(err, g->path) || !strstr(err, "t.f64big"))
        fail(what, "expected an error naming the file and key, got '%s'", err);

    snprintf(what, sizeof what, "%s: get_str(general.architecture)", tag);
    expect_rc(what, 0, slm_gguf_get_str(g, "general.architecture", &s, err));
    if (!slm_gguf_str_eq(s, "llama")) fail(what, "expected 'llama', got '%.*s'", (int)s.len, s.ptr);
    snprintf(what, sizeof what, "%s: get_str(t.str)", tag);
    expect_rc(what, 0, slm_gguf_get_str(g, "t.str", &s, err));
    if (s.len != 10 || memcmp(s.ptr, "nul\0inside", 10) != 0)
        fail(what, "expected 10 bytes 'nul\\0inside', got %llu bytes", (unsigned long long)s.len);
    if (slm_gguf_str_eq(s, "nul")) fail(what, "expected str_eq to see past the NUL, got equal to 'nul'");
    snprintf(what, sizeof what, "%s: get_str(t.empty)", tag);
    expect_rc(what, 0, slm_gguf_get_str(g, "t.empty", &s, err));
    expect_u64(what, 0, s.len);
    if (!slm_gguf_str_eq(s, "")) fail(what, "expected str_eq(\"\"), got not equal");

    /* A missing key: -ENOENT, and a message that names the file and the key. */
    static const char *const missing = "llama.context_length";
    uint64_t u;
    snprintf(what, sizeof what, "%s: missing key", tag);
    err[0] = 0;
    expect_rc(what, -ENOENT, slm_gguf_get_u64(g, missing, &u, err));
    if (!strstr(err, g->path) || !strstr(err, missing) || !strstr(err, "missing"))
        fail(what, "expected an error naming the file, the key and 'missing', got '%s'", err);
    expect_rc(what, -ENOENT, slm_gguf_get_str(g, missing, &s, NULL));
    expect_rc(what, -ENOENT, slm_gguf_get_f32(g, missing, &f, NULL));
    if (slm_gguf_find(g, missing)) fail(what, "expected find to return NULL, got a kv");
    if (slm_gguf_find(g, "t.u")) fail(what, "expected find('t.u') (a prefix) to return NULL, got a kv");

    const struct slm_gguf_kv *k = slm_gguf_find(g, "t.i16");
    snprintf(what, sizeof what, "%s: find(t.i16)", tag);
    if (!k) fail(what, "expected a kv, got NULL");
    else expect_u64(what, SLM_GGUF_INT16, k->type);
}

static void check_arrays(const struct slm_gguf *g, const char *tag)
{
    struct arr_case {
        const char *key;
        uint32_t type;
        size_t n;
        const void *vals;
    } cases[] = {
        {"a.u8", SLM_GGUF_UINT8, LEN(arr_u8), arr_u8},     {"a.i8", SLM_GGUF_INT8, LEN(arr_i8), arr_i8},
        {"a.u16", SLM_GGUF_UINT16, LEN(arr_u16), arr_u16}, {"a.i16", SLM_GGUF_INT16, LEN(arr_i16), arr_i16},
        {"a.u32", SLM_GGUF_UINT32, LEN(arr_u32), arr_u32}, {"a.i32", SLM_GGUF_INT32, LEN(arr_i32), arr_i32},
        {"a.f32", SLM_GGUF_FLOAT32, LEN(arr_f32), arr_f32}, {"a.bool", SLM_GGUF_BOOL, LEN(arr_bool), arr_bool},
        {"a.u64", SLM_GGUF_UINT64, LEN(arr_u64), arr_u64}, {"a.i64", SLM_GGUF_INT64, LEN(arr_i64), arr_i64},
        {"a.f64", SLM_GGUF_FLOAT64, LEN(arr_f64), arr_f64}, {"a.empty", SLM_GGUF_UINT32, 0, NULL},
    };
    char what[160], err[SLM_ERR_LEN];
    for (size_t c = 0; c < LEN(cases); c++) {
        const struct arr_case *a = &cases[c];
        const struct slm_gguf_kv *k = NULL;
        snprintf(what, sizeof what, "%s: get_arr(%s)", tag, a->key);
        int rc = slm_gguf_get_arr(g, a->key, a->type, &k, err);
        expect_rc(what, 0, rc);
        if (rc) continue;
        expect_u64(what, a->n, k->arr_len);
        expect_u64(what, a->type, k->arr_type);
        if (k->arr_len != a->n) continue;
        for (size_t i = 0; i < a->n; i++) {
            double want_f;
            int64_t want_i;
            int exact_i = 1;
            switch (a->type) {
            case SLM_GGUF_UINT8: want_i = ((const uint8_t *)a->vals)[i]; break;
            case SLM_GGUF_BOOL: want_i = ((const uint8_t *)a->vals)[i]; break;
            case SLM_GGUF_INT8: want_i = ((const int8_t *)a->vals)[i]; break;
            case SLM_GGUF_UINT16: want_i = ((const uint16_t *)a->vals)[i]; break;
            case SLM_GGUF_INT16: want_i = ((const int16_t *)a->vals)[i]; break;
            case SLM_GGUF_UINT32: want_i = ((const uint32_t *)a->vals)[i]; break;
            case SLM_GGUF_INT32: want_i = ((const int32_t *)a->vals)[i]; break;
            case SLM_GGUF_UINT64: want_i = (int64_t)((const uint64_t *)a->vals)[i]; break;
            case SLM_GGUF_INT64: want_i = ((const int64_t *)a->vals)[i]; break;
            default: want_i = 0; exact_i = 0; break;
            }
            if (a->type == SLM_GGUF_FLOAT32) want_f = ((const float *)a->vals)[i];
            else if (a->type == SLM_GGUF_FLOAT64) want_f = ((const double *)a->vals)[i];
            else want_f = (double)want_i;
            snprintf(what, sizeof what, "%s: %s[%zu]", tag, a->key, i);
            if (exact_i) expect_i64(what, want_i, slm_gguf_arr_i64(k, i));
            double got_f = slm_gguf_arr_f64(k, i);
            if (memcmp(&got_f, &want_f, sizeof got_f) != 0) fail(what, "expected %.17g as f64, got %.17g", want_f, got_f);
        }
        /* Any other element type, or a scalar key, is refused. */
        snprintf(what, sizeof what, "%s: get_arr(%s) as the wrong type", tag, a->key);
        err[0] = 0;
        uint32_t other = a->type == SLM_GGUF_INT32 ? SLM_GGUF_UINT32 : SLM_GGUF_INT32;
        expect_rc(what, -EINVAL, slm_gguf_get_arr(g, a->key, other, &k, err));
        if (!strstr(err, g->path) || !strstr(err, a->key))
            fail(what, "expected an error naming the file and key, got '%s'", err);
    }
    /* Float elements read as int64 truncate toward zero and saturate; NaN reads as 0. */
    const struct slm_gguf_kv *k = NULL;
    snprintf(what, sizeof what, "%s: a.f32 as i64", tag);
    if (!slm_gguf_get_arr(g, "a.f32", SLM_GGUF_FLOAT32, &k, NULL)) {
        static const int64_t want[] = {0, -2, INT64_MAX, 0, 0, INT64_MIN};
        for (size_t i = 0; i < LEN(want); i++) expect_i64(what, want[i], slm_gguf_arr_i64(k, i));
    } else {
        fail(what, "expected get_arr to find it, got an error");
    }
    snprintf(what, sizeof what, "%s: a.f64 as i64", tag);
    if (!slm_gguf_get_arr(g, "a.f64", SLM_GGUF_FLOAT64, &k, NULL)) {
        static const int64_t want[] = {3, INT64_MIN, 0};
        for (size_t i = 0; i < LEN(want); i++) expect_i64(what, want[i], slm_gguf_arr_i64(k, i));
    } else {
        fail(what, "expected get_arr to find it, got an error");
    }

    snprintf(what, sizeof what, "%s: get_arr on a scalar", tag);
    expect_rc(what, -EINVAL, slm_gguf_get_arr(g, "t.u32", SLM_GGUF_UINT32, &k, NULL));
    snprintf(what, sizeof what, "%s: get_arr on a missing key", tag);
    expect_rc(what, -ENOENT, slm_gguf_get_arr(g, "a.nope", SLM_GGUF_UINT32, &k, NULL));

    /* Strings. */
    struct slm_gguf_str strs[LEN(arr_str)];
    snprintf(what, sizeof what, "%s: get_arr(a.str)", tag);
    int rc = slm_gguf_get_arr(g, "a.str", SLM_GGUF_STRING, &k, err);
    expect_rc(what, 0, rc);
    if (!rc) {
        expect_u64(what, LEN(arr_str), k->arr_len);
        snprintf(what, sizeof what, "%s: get_str_arr(a.str)", tag);
        expect_rc(what, 0, slm_gguf_get_str_arr(g, k, strs, LEN(arr_str)));
        for (size_t i = 0; i < LEN(arr_str); i++) {
            snprintf(what, sizeof what, "%s: a.str[%zu]", tag, i);
            if (!slm_gguf_str_eq(strs[i], arr_str[i]))
                fail(what, "expected '%s', got '%.*s'", arr_str[i], (int)strs[i].len, strs[i].ptr);
        }
        snprintf(what, sizeof what, "%s: get_str_arr(a.str) with the wrong count", tag);
        expect_rc(what, -EINVAL, slm_gguf_get_str_arr(g, k, strs, LEN(arr_str) - 1));
    }
    snprintf(what, sizeof what, "%s: get_str_arr on a numeric array", tag);
    if (!slm_gguf_get_arr(g, "a.u8", SLM_GGUF_UINT8, &k, NULL))
        expect_rc(what, -EINVAL, slm_gguf_get_str_arr(g, k, strs, k->arr_len));
    snprintf(what, sizeof what, "%s: get_str_arr(a.emptystr)", tag);
    if (!slm_gguf_get_arr(g, "a.emptystr", SLM_GGUF_STRING, &k, NULL)) expect_rc(what, 0, slm_gguf_get_str_arr(g, k, strs, 0));
    else fail(what, "expected get_arr to find it, got an error");
}

/* Every tensor of the file lies inside the mapping, after the data offset, aligned. */
static void check_tensor_bounds(const struct slm_gguf *g, const char *tag)
{
    char what[200];
    const uint8_t *end = g->map + g->map_size;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct slm_gguf_tensor *t = &g->tensors[i];
        const uint8_t *d = t->data;
        snprintf(what, sizeof what, "%s: tensor %llu", tag, (unsigned long long)i);
        if (d < g->map + g->data_offset || d > end || t->nbytes > (uint64_t)(end - d))
            fail(what, "expected data inside the mapping, got offset %llu + %llu bytes in a %zu-byte file",
                 (unsigned long long)t->offset, (unsigned long long)t->nbytes, g->map_size);
        if (d != g->map + g->data_offset + t->offset)
            fail(what, "expected data at map + data_offset + offset, got %p", (const void *)d);
        if (t->offset % g->alignment || g->data_offset % g->alignment)
            fail(what, "expected offsets aligned to %u, got %llu and %llu", g->alignment,
                 (unsigned long long)t->offset, (unsigned long long)g->data_offset);
        if (t->nbytes == 0) fail(what, "expected a non-empty tensor, got 0 bytes");
    }
}

static void check_good(uint32_t version, uint32_t alignment)
{
    char tag[64], what[200], path[600];
    snprintf(tag, sizeof tag, "good v%u align %u", version, alignment);
    struct writer w;
    struct buf file;
    build_good(&w, version, alignment);
    w_file(&w, &file);
    struct slm_gguf *g = open_buf(tag, &file, path, sizeof path);
    if (!g) goto out;
    uint32_t want_align = alignment ? alignment : 32;
    snprintf(what, sizeof what, "%s: version", tag);
    expect_u64(what, version, g->version);
    snprintf(what, sizeof what, "%s: n_kv", tag);
    expect_u64(what, w.n_kv, g->n_kv);
    snprintf(what, sizeof what, "%s: n_tensors", tag);
    expect_u64(what, LEN(good_tensors), g->n_tensors);
    snprintf(what, sizeof what, "%s: alignment", tag);
    expect_u64(what, want_align, g->alignment);
    snprintf(what, sizeof what, "%s: map_size", tag);
    expect_u64(what, file.n, g->map_size);
    snprintf(what, sizeof what, "%s: data_offset", tag);
    expect_u64(what, file.n - w.data_size, g->data_offset);
    snprintf(what, sizeof what, "%s: path", tag);
    if (strcmp(g->path, path) != 0) fail(what, "expected '%s', got '%s'", path, g->path);

    check_scalars(g, tag);
    check_arrays(g, tag);
    check_tensor_bounds(g, tag);

    uint64_t want_off = 0;
    for (size_t i = 0; i < LEN(good_tensors); i++) {
        const struct good_tensor *gt = &good_tensors[i];
        const struct slm_gguf_tensor *t = slm_gguf_find_tensor(g, gt->name);
        snprintf(what, sizeof what, "%s: tensor '%s'", tag, gt->name);
        if (!t) {
            fail(what, "expected to find it, got NULL");
            continue;
        }
        if (t != &g->tensors[i]) fail(what, "expected it at position %zu, got %td", i, t - g->tensors);
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < 4; d++) {
            uint64_t want = d < gt->n_dims ? gt->ne[d] : 1;
            nelem *= want;
            if (t->ne[d] != want)
                fail(what, "expected ne[%u] = %llu, got %llu", d, (unsigned long long)want, (unsigned long long)t->ne[d]);
        }
        expect_u64(what, gt->n_dims, t->n_dims);
        expect_u64(what, gt->type, t->type);
        want_off = (want_off + want_align - 1) / want_align * want_align;
        expect_u64(what, want_off, t->offset);
        expect_u64(what, type_nbytes(gt->type, nelem), t->nbytes);
        if (((uintptr_t)t->data % want_align) && want_align <= 4096)
            fail(what, "expected the data pointer aligned to %u, got %p", want_align, t->data);
        const uint8_t *d = t->data;
        for (uint64_t j = 0; j < t->nbytes && d + t->nbytes <= g->map + g->map_size; j++)
            if (d[j] != data_byte(t->offset + j)) {
                fail(what, "expected data byte %llu = %u, got %u", (unsigned long long)j, data_byte(t->offset + j), d[j]);
                break;
            }
        want_off += t->nbytes;
    }
    snprintf(what, sizeof what, "%s: find_tensor(missing)", tag);
    if (slm_gguf_find_tensor(g, "blk.0.attn_k.weight")) fail(what, "expected NULL, got a tensor");
    slm_gguf_close(&g);
    if (g) fail(tag, "expected close to set the pointer to NULL, got %p", (void *)g);
    slm_gguf_close(&g);   /* NULL-safe */
out:
    unlink(path);
    buf_free(&file);
    w_free(&w);
}

/* Files with nothing, or with only metadata, are valid. */
static void check_minimal(void)
{
    char path[600];
    struct writer w;
    struct buf file;
    w_init(&w, 3);
    w_file(&w, &file);
    struct slm_gguf *g = open_buf("empty-gguf", &file, path, sizeof path);
    if (g) {
        expect_u64("empty gguf: n_kv", 0, g->n_kv);
        expect_u64("empty gguf: n_tensors", 0, g->n_tensors);
        if (slm_gguf_find(g, "general.architecture")) fail("empty gguf: find", "expected NULL, got a kv");
        if (slm_gguf_find_tensor(g, "x")) fail("empty gguf: find_tensor", "expected NULL, got a tensor");
        slm_gguf_close(&g);
    }
    unlink(path);
    buf_free(&file);
    /* Metadata only, ending unaligned: no padding needed. */
    kv_str(&w, "general.architecture", "llama");
    put_u8(kv(&w, "x", SLM_GGUF_UINT8), 3);
    w_file(&w, &file);
    file.n = 24 + w.kv.n;   /* drop any padding the writer added */
    g = open_buf("metadata-only", &file, path, sizeof path);
    if (g) {
        expect_u64("metadata only: n_kv", 2, g->n_kv);
        uint64_t v = 0;
        expect_rc("metadata only: get_u64(x)", 0, slm_gguf_get_u64(g, "x", &v, NULL));
        expect_u64("metadata only: x", 3, v);
        slm_gguf_close(&g);
    }
    unlink(path);
    buf_free(&file);
    w_free(&w);
}

static void check_vtypes(void)
{
    static const struct {
        uint32_t type;
        size_t size;
        const char *name;
    } t[] = {
        {SLM_GGUF_UINT8, 1, "uint8"},     {SLM_GGUF_INT8, 1, "int8"},       {SLM_GGUF_UINT16, 2, "uint16"},
        {SLM_GGUF_INT16, 2, "int16"},     {SLM_GGUF_UINT32, 4, "uint32"},   {SLM_GGUF_INT32, 4, "int32"},
        {SLM_GGUF_FLOAT32, 4, "float32"}, {SLM_GGUF_BOOL, 1, "bool"},       {SLM_GGUF_STRING, 0, "string"},
        {SLM_GGUF_ARRAY, 0, "array"},     {SLM_GGUF_UINT64, 8, "uint64"},   {SLM_GGUF_INT64, 8, "int64"},
        {SLM_GGUF_FLOAT64, 8, "float64"}, {13, 0, "?"},                     {UINT32_MAX, 0, "?"},
    };
    char what[64];
    for (size_t i = 0; i < LEN(t); i++) {
        snprintf(what, sizeof what, "vtype_size(%u)", t[i].type);
        expect_u64(what, t[i].size, slm_gguf_vtype_size(t[i].type));
        const char *name = slm_gguf_vtype_name(t[i].type);
        if (strcmp(name, t[i].name) != 0) fail("vtype_name", "expected '%s', got '%s'", t[i].name, name);
    }
}

/* ---- bad files */

/* A small valid file with a bit of everything, for truncation and fuzzing. */
static void build_small(struct writer *w)
{
    static const uint64_t ne2[] = {32, 2}, ne1[] = {3};
    w_init(w, 3);
    kv_str(w, "general.architecture", "llama");
    kv_u32(w, "llama.block_count", 1);
    put_f32(kv(w, "llama.rope.freq_base", SLM_GGUF_FLOAT32), 10000.0f);
    struct buf *b = kv_arr(w, "tokenizer.ggml.tokens", SLM_GGUF_STRING, 3);
    put_str(b, "a");
    put_str(b, "bc");
    put_str(b, "");
    b = kv_arr(w, "tokenizer.ggml.token_type", SLM_GGUF_INT32, 3);
    for (int i = 0; i < 3; i++) put_u32(b, 1);
    set_alignment(w, 16);
    tensor(w, "tok", 2, ne2, 3, AUTO_OFFSET);   /* Q4_1: 40 bytes */
    tensor(w, "norm", 1, ne1, 0, AUTO_OFFSET);  /* F32: 12 bytes */
}

static void check_truncation(void)
{
    struct writer w;
    struct buf file;
    char path[600], err[SLM_ERR_LEN], what[64];
    build_small(&w);
    w_file(&w, &file);
    path_for(path, sizeof path, "truncated");
    /* The whole file opens; every proper prefix of it must fail, naming the file. */
    write_bytes(path, file.p, file.n);
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (!g) fail("small file", "expected it to open, got '%s'", err);
    else slm_gguf_close(&g);
    for (size_t n = 0; n < file.n; n++) {
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", n, file.n);
        write_bytes(path, file.p, n);
        err[0] = 0;
        g = slm_gguf_open(path, err);
        if (g) {
            fail(what, "expected open to fail, got a file with %llu tensors", (unsigned long long)g->n_tensors);
            slm_gguf_close(&g);
            continue;
        }
        if (!strstr(err, path) ||
            !(strstr(err, "past the end") || strstr(err, "too short") || strstr(err, "empty") ||
              strstr(err, "can hold")))
            fail(what, "expected an error naming the file and the truncation, got '%s'", err);
    }
    unlink(path);
    buf_free(&file);
    w_free(&w);
}

/* slm_gguf_open_memory: the same file as from disk, pointing into the caller's bytes (left
 * alone by close); every proper prefix refused, naming the name given. Each image is its own
 * allocation of exactly its size, so that ASan sees a read past it. */
static void check_memory(void)
{
    struct writer w;
    struct buf file;
    char err[SLM_ERR_LEN], what[96];
    build_good(&w, 3, 64);
    w_file(&w, &file);
    uint8_t *image = malloc(file.n);
    memcpy(image, file.p, file.n);
    struct slm_gguf *g = slm_gguf_open_memory(image, file.n, "in-memory", err);
    if (!g) fail("memory", "expected the image to open, got '%s'", err);
    else {
        expect_u64("memory: n_kv", w.n_kv, g->n_kv);
        expect_u64("memory: n_tensors", LEN(good_tensors), g->n_tensors);
        expect_u64("memory: data_offset", file.n - w.data_size, g->data_offset);
        if (g->map != image) fail("memory: map", "expected the caller's bytes, got another mapping");
        if (strcmp(g->path, "in-memory") != 0) fail("memory: path", "expected 'in-memory', got '%s'", g->path);
        check_scalars(g, "memory");
        check_arrays(g, "memory");
        check_tensor_bounds(g, "memory");
        slm_gguf_close(&g);
        /* still the caller's after close */
        if (memcmp(image, file.p, file.n) != 0) fail("memory: close", "expected the image untouched");
    }
    free(image);
    for (size_t n = 0; n < file.n; n++) {
        snprintf(what, sizeof what, "memory: truncated to %zu of %zu bytes", n, file.n);
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, file.p, n);
        err[0] = 0;
        g = slm_gguf_open_memory(cut, n, "cut", err);
        if (g) {
            fail(what, "expected open to fail, got a file with %llu tensors", (unsigned long long)g->n_tensors);
            slm_gguf_close(&g);
        } else if (strncmp(err, "cut: ", 5) != 0) {
            fail(what, "expected an error naming 'cut', got '%s'", err);
        }
        free(cut);
    }
    err[0] = 0;
    if ((g = slm_gguf_open_memory(NULL, 0, "null", err)) || strncmp(err, "null: ", 6) != 0)
        fail("memory: NULL", "expected a refusal naming 'null', got '%s'", err);
    buf_free(&file);
    w_free(&w);
}

static void check_header(void)
{
    struct writer w;
    struct buf file;
    char what[64], vs[32];
    build_small(&w);
    w_file(&w, &file);
    file.p[3] = 'G';
    expect_fail_buf("bad-magic", &file, SUBS("not a GGUF file", "bad magic"));
    file.p[3] = 'F';
    static const uint32_t versions[] = {0, 1, 4, 0xffffffffu, 0x03000000u};
    for (size_t i = 0; i < LEN(versions); i++) {
        memcpy(file.p + 4, &versions[i], 4);
        snprintf(what, sizeof what, "version-%u", versions[i]);
        snprintf(vs, sizeof vs, "version %u", versions[i]);
        expect_fail_buf(what, &file, SUBS(vs, "not supported"));
    }
    buf_free(&file);
    /* Absurd counts. */
    uint64_t n_kv = w.n_kv, n_tensors = w.n_tensors;
    uint64_t counts[] = {UINT64_MAX, 1ull << 63, (1ull << 60) + 1, 1000000};
    for (size_t i = 0; i < LEN(counts); i++) {
        w.n_kv = counts[i];
        snprintf(what, sizeof what, "n_kv-%zu", i);
        expect_fail(what, &w, SUBS("key-value count"));
        w.n_kv = n_kv;
    }
    for (size_t i = 0; i < LEN(counts); i++) {
        w.n_tensors = counts[i];
        snprintf(what, sizeof what, "n_tensors-%zu", i);
        expect_fail(what, &w, SUBS("tensor count"));
        w.n_tensors = n_tensors;
    }
    /* One tensor more than the infos written: the third is read from the padding and data. */
    w.n_tensors = n_tensors + 1;
    expect_fail("n_tensors-plus-1", &w, SUBS("tensor 2"));
    w_free(&w);
}

/* One key-value pair of the given raw value bytes, in an otherwise valid file. */
static void expect_bad_kv(const char *what, const char *key, uint32_t type, const void *val, size_t n,
                          const char *const *subs)
{
    struct writer w;
    w_init(&w, 3);
    kv_str(&w, "general.architecture", "llama");
    put(kv(&w, key, type), val, n);
    kv_u32(&w, "after", 1);
    expect_fail(what, &w, subs);
    w_free(&w);
}

static void check_bad_metadata(void)
{
    struct buf v = {0};
    /* String lengths past the end, up to 2^64 - 1. */
    uint64_t lens[] = {UINT64_MAX, 1ull << 63, 1ull << 32, 1000};
    for (size_t i = 0; i < LEN(lens); i++) {
        v.n = 0;
        put_u64(&v, lens[i]);
        put(&v, "abcd", 4);
        expect_bad_kv("string-length", "t.s", SLM_GGUF_STRING, v.p, v.n, SUBS("'t.s'", "string", "past the end"));
    }
    /* Array lengths past the end, including ones whose byte size wraps 64 bits. */
    uint32_t elem_types[] = {SLM_GGUF_UINT8, SLM_GGUF_UINT32, SLM_GGUF_UINT64, SLM_GGUF_FLOAT64, SLM_GGUF_STRING};
    uint64_t alens[] = {UINT64_MAX, 1ull << 61, 1ull << 62, (1ull << 63) + 1, 1000};
    for (size_t t = 0; t < LEN(elem_types); t++)
        for (size_t i = 0; i < LEN(alens); i++) {
            v.n = 0;
            put_u32(&v, elem_types[t]);
            put_u64(&v, alens[i]);
            put_u64(&v, 0);   /* a few bytes of elements (an empty string, for STRING) */
            put_u64(&v, 0);
            expect_bad_kv("array-length", "t.arr", SLM_GGUF_ARRAY, v.p, v.n, SUBS("'t.arr'", "array", "past the end"));
        }
    /* A string inside an array whose length runs past the end. */
    v.n = 0;
    put_u32(&v, SLM_GGUF_STRING);
    put_u64(&v, 2);
    put_str(&v, "ok");
    put_u64(&v, UINT64_MAX - 3);
    put_u64(&v, 0);
    expect_bad_kv("array-string-length", "t.sarr", SLM_GGUF_ARRAY, v.p, v.n, SUBS("'t.sarr'", "string 1", "past the end"));

    /* Unknown value types, scalar and element. */
    uint32_t bad_types[] = {13, 14, 255, 0x80000000u, UINT32_MAX};
    char sub[64];
    for (size_t i = 0; i < LEN(bad_types); i++) {
        v.n = 0;
        put_u64(&v, 0);
        snprintf(sub, sizeof sub, "unknown value type %u", bad_types[i]);
        expect_bad_kv("value-type", "t.x", bad_types[i], v.p, v.n, SUBS("'t.x'", sub));
        v.n = 0;
        put_u32(&v, bad_types[i]);
        put_u64(&v, 1);
        put_u64(&v, 0);
        snprintf(sub, sizeof sub, "unknown array element type %u", bad_types[i]);
        expect_bad_kv("elem-type", "t.y", SLM_GGUF_ARRAY, v.p, v.n, SUBS("'t.y'", sub));
    }
    /* Arrays of arrays are refused. */
    v.n = 0;
    put_u32(&v, SLM_GGUF_ARRAY);
    put_u64(&v, 1);
    put_u32(&v, SLM_GGUF_UINT8);
    put_u64(&v, 1);
    put_u8(&v, 7);
    expect_bad_kv("nested-array", "t.nest", SLM_GGUF_ARRAY, v.p, v.n, SUBS("'t.nest'", "arrays of arrays"));
    v.n = 0;
    put_u32(&v, SLM_GGUF_ARRAY);
    put_u64(&v, 0);
    expect_bad_kv("nested-empty-array", "t.nest0", SLM_GGUF_ARRAY, v.p, v.n, SUBS("'t.nest0'", "arrays of arrays"));
    buf_free(&v);

    /* Keys: empty, too long, duplicated; names with odd bytes are shown escaped. */
    struct writer w;
    w_init(&w, 3);
    kv_u32(&w, "", 1);
    expect_fail("empty-key", &w, SUBS("key-value pair 0", "key length 0"));
    w_free(&w);
    char *longkey = malloc(70000);
    memset(longkey, 'k', 69999);
    longkey[69999] = 0;
    w_init(&w, 3);
    kv_u32(&w, "fine", 1);
    kv_u32(&w, longkey, 1);
    expect_fail("long-key", &w, SUBS("key-value pair 1", "key length 69999"));
    w_free(&w);
    free(longkey);
    w_init(&w, 2);
    kv_str(&w, "general.architecture", "llama");
    kv_u32(&w, "llama.block_count", 1);
    kv_str(&w, "general.architecture", "gemma3");
    expect_fail("duplicate-key", &w, SUBS("'general.architecture'", "appears twice"));
    w_free(&w);
    w_init(&w, 3);
    kv_u32(&w, "bad\x01key", 1);
    kv_u32(&w, "bad\x01key", 2);
    expect_fail("duplicate-odd-key", &w, SUBS("'bad\\x01key'", "appears twice"));
    w_free(&w);
    /* A key-value pair cut inside its type field. */
    w_init(&w, 3);
    put_str(&w.kv, "t.cut");
    put_u8(&w.kv, 4);
    w.n_kv = 1;
    struct buf f;
    w_file(&w, &f);
    f.n = 24 + w.kv.n;
    expect_fail_buf("cut-type", &f, SUBS("'t.cut'", "value type", "past the end"));
    buf_free(&f);
    w_free(&w);

    /* general.alignment: a uint32 power of two, nothing else. */
    uint32_t bad_align[] = {0, 3, 48, 0xffffffffu, 0x80000001u};
    for (size_t i = 0; i < LEN(bad_align); i++) {
        w_init(&w, 3);
        kv_u32(&w, "general.alignment", bad_align[i]);
        expect_fail("alignment-value", &w, SUBS("general.alignment", "power of two"));
        w_free(&w);
    }
    w_init(&w, 3);
    put_u64(kv(&w, "general.alignment", SLM_GGUF_UINT64), 64);
    expect_fail("alignment-u64", &w, SUBS("general.alignment", "uint32"));
    w_free(&w);
    w_init(&w, 3);
    put_u32(kv(&w, "general.alignment", SLM_GGUF_INT32), 64);
    expect_fail("alignment-i32", &w, SUBS("general.alignment", "uint32"));
    w_free(&w);
    w_init(&w, 3);
    kv_str(&w, "general.alignment", "64");
    expect_fail("alignment-string", &w, SUBS("general.alignment", "uint32"));
    w_free(&w);
    w_init(&w, 3);
    put_u32(kv_arr(&w, "general.alignment", SLM_GGUF_UINT32, 1), 64);
    expect_fail("alignment-array", &w, SUBS("general.alignment", "uint32"));
    w_free(&w);
}

/* A file with one good tensor and one described by the arguments. */
static void expect_bad_tensor(const char *what, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t offset,
                              const char *const *subs)
{
    static const uint64_t ne_ok[] = {32, 4};
    struct writer w;
    w_init(&w, 3);
    kv_str(&w, "general.architecture", "llama");
    tensor(&w, "ok", 2, ne_ok, 0, AUTO_OFFSET);
    tensor(&w, "blk.7.bad", n_dims, ne, type, offset);
    expect_fail(what, &w, subs);
    w_free(&w);
}

static void check_bad_tensors(void)
{
    static const uint64_t ne[] = {32, 2, 1, 1, 1};
    char sub[64];
    /* Unknown, removed, and activation-only tensor types. */
    uint32_t bad_types[] = {4, 5, 9, 10, 11, 15, 16, 29, 31, 1000, UINT32_MAX};
    for (size_t i = 0; i < LEN(bad_types); i++) {
        snprintf(sub, sizeof sub, "unsupported tensor type %u", bad_types[i]);
        expect_bad_tensor("tensor-type", 2, ne, bad_types[i], AUTO_OFFSET, SUBS("'blk.7.bad'", sub));
    }
    /* Dimensions: none, too many, zero, overflowing products. */
    expect_bad_tensor("zero-dims", 0, ne, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "0 dimensions"));
    expect_bad_tensor("five-dims", 5, ne, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "5 dimensions"));
    expect_bad_tensor("huge-dims", UINT32_MAX, ne, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "dimensions"));
    static const uint64_t ne_zero[] = {32, 0, 2};
    expect_bad_tensor("zero-dim", 3, ne_zero, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "dimension 1 is zero"));
    static const uint64_t ne_ovf[] = {1ull << 32, 1ull << 32};
    expect_bad_tensor("dims-overflow", 2, ne_ovf, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "overflows"));
    static const uint64_t ne_ovf2[] = {32, 1ull << 30, 1ull << 30, 1ull << 30};
    expect_bad_tensor("dims-overflow4", 4, ne_ovf2, 8, AUTO_OFFSET, SUBS("'blk.7.bad'", "overflows"));
    static const uint64_t ne_big[] = {UINT64_MAX};
    expect_bad_tensor("dim-max", 1, ne_big, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "overflows"));
    static const uint64_t ne_bytes[] = {1ull << 62};   /* fits in int64, but * 4 bytes wraps */
    expect_bad_tensor("bytes-overflow", 1, ne_bytes, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "overflows"));
    /* A row that is not a whole number of blocks. */
    static const uint64_t ne_row[] = {48, 2};
    expect_bad_tensor("partial-block", 2, ne_row, 3, AUTO_OFFSET, SUBS("'blk.7.bad'", "not a multiple", "Q4_1"));
    static const uint64_t ne_rowk[] = {128};
    expect_bad_tensor("partial-kblock", 1, ne_rowk, 14, AUTO_OFFSET, SUBS("'blk.7.bad'", "not a multiple"));
    /* Data outside the file. */
    expect_bad_tensor("offset-past-end", 2, ne, 0, 1ull << 20, SUBS("'blk.7.bad'", "past the end"));
    expect_bad_tensor("offset-max", 2, ne, 0, UINT64_MAX - 31, SUBS("'blk.7.bad'", "past the end"));
    static const uint64_t ne_long[] = {32, 1ull << 40};
    expect_bad_tensor("size-past-end", 2, ne_long, 0, AUTO_OFFSET, SUBS("'blk.7.bad'", "past the end"));
    /* Misaligned offsets, under the default alignment and a custom one. */
    expect_bad_tensor("misaligned", 2, ne, 0, 512 + 16, SUBS("'blk.7.bad'", "not aligned to 32"));
    expect_bad_tensor("misaligned1", 2, ne, 0, 1, SUBS("'blk.7.bad'", "not aligned to 32"));
    /* Overlaps: the same offset, and a partial overlap. */
    expect_bad_tensor("same-offset", 2, ne, 0, 0, SUBS("overlaps", "'ok'", "'blk.7.bad'"));
    expect_bad_tensor("partial-overlap", 2, ne, 0, 480, SUBS("overlaps", "'ok'", "'blk.7.bad'"));

    static const uint64_t ne1[] = {64};
    struct writer w;
    w_init(&w, 3);
    set_alignment(&w, 64);
    tensor(&w, "a", 1, ne1, 0, AUTO_OFFSET);
    tensor(&w, "b", 1, ne1, 0, 32 + 256);
    expect_fail("misaligned64", &w, SUBS("'b'", "not aligned to 64"));
    w_free(&w);
    /* Just one byte short of the last tensor's end. */
    w_init(&w, 3);
    tensor(&w, "a", 1, ne1, 0, AUTO_OFFSET);
    tensor(&w, "last", 1, ne1, 0, AUTO_OFFSET);
    w.data_size -= 1;
    expect_fail("one-byte-short", &w, SUBS("'last'", "past the end"));
    w_free(&w);
    /* Overlap among many tensors, listed out of order. */
    w_init(&w, 3);
    tensor(&w, "t2", 1, ne1, 0, 512);
    tensor(&w, "t0", 1, ne1, 0, 0);
    tensor(&w, "t1", 1, ne1, 0, 256);
    tensor(&w, "t3", 1, ne1, 0, 736);
    expect_fail("overlap-unordered", &w, SUBS("overlaps", "'t3'", "'t2'"));
    w_free(&w);
    /* Names: empty, too long, duplicated. */
    w_init(&w, 3);
    tensor(&w, "", 1, ne1, 0, AUTO_OFFSET);
    expect_fail("empty-tensor-name", &w, SUBS("tensor 0", "name length 0"));
    w_free(&w);
    char name[300];
    memset(name, 'n', 256);
    name[256] = 0;
    w_init(&w, 3);
    tensor(&w, "a", 1, ne1, 0, AUTO_OFFSET);
    tensor(&w, name, 1, ne1, 0, AUTO_OFFSET);
    expect_fail("long-tensor-name", &w, SUBS("tensor 1", "name length 256"));
    w_free(&w);
    w_init(&w, 3);
    tensor(&w, "blk.0.ffn_up.weight", 1, ne1, 0, AUTO_OFFSET);
    tensor(&w, "other", 1, ne1, 0, AUTO_OFFSET);
    tensor(&w, "blk.0.ffn_up.weight", 1, ne1, 0, AUTO_OFFSET);
    expect_fail("duplicate-tensor", &w, SUBS("'blk.0.ffn_up.weight'", "appears twice"));
    w_free(&w);
    /* A tensor name length that runs past the end. */
    w_init(&w, 3);
    put_u64(&w.ti, UINT64_MAX);
    put(&w.ti, "name", 4);
    put(&w.ti, (const uint8_t[40]){0}, 40);
    w.n_tensors = 1;
    expect_fail("tensor-name-length", &w, SUBS("tensor 0", "name runs past the end"));
    w_free(&w);
}

static void check_paths(void)
{
    char path[600];
    expect_fail_path("empty path", "", SUBS("cannot open"));
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", tmpdir);
    expect_fail_path("nonexistent", path, SUBS("cannot open", "No such file"));
    expect_fail_path("directory", tmpdir, SUBS("not a regular file"));
    snprintf(path, sizeof path, "%s/empty.gguf", tmpdir);
    write_bytes(path, "", 0);
    expect_fail_path("empty file", path, SUBS("not a GGUF file", "empty"));
    unlink(path);
    snprintf(path, sizeof path, "%s/short.txt", tmpdir);
    write_bytes(path, "hello GGUF\n", 11);
    expect_fail_path("short text", path, SUBS("not a GGUF file", "too short"));
    unlink(path);
    static const char text[] = "# this is a config file, not a model\nmodel = SmolLM2-135M-Instruct.Q4_1.gguf\n";
    snprintf(path, sizeof path, "%s/text.conf", tmpdir);
    write_bytes(path, text, sizeof text - 1);
    expect_fail_path("text file", path, SUBS("not a GGUF file", "bad magic"));
    unlink(path);
}

/* ---- fuzz */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;   /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 2685821657736338717ull;
}

/* Every view an opened file hands out lies inside its mapping. */
static void check_views(const struct slm_gguf *g, const char *what)
{
    const uint8_t *lo = g->map, *hi = g->map + g->map_size;
    check_tensor_bounds(g, what);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct slm_gguf_kv *k = &g->kv[i];
        if ((const uint8_t *)k->key.ptr < lo || k->key.len > (uint64_t)(hi - (const uint8_t *)k->key.ptr))
            fail(what, "expected key %llu inside the mapping, got outside", (unsigned long long)i);
        if (k->type == SLM_GGUF_STRING) {
            struct slm_gguf_str s;
            char key[300];
            snprintf(key, sizeof key, "%.*s", (int)k->key.len, k->key.ptr);
            if (slm_gguf_find(g, key) != k) continue;   /* a key with a NUL inside */
            if (slm_gguf_get_str(g, key, &s, NULL) || (const uint8_t *)s.ptr < lo ||
                s.len > (uint64_t)(hi - (const uint8_t *)s.ptr))
                fail(what, "expected string '%s' inside the mapping, got outside", key);
        } else if (k->type == SLM_GGUF_ARRAY && k->arr_type == SLM_GGUF_STRING) {
            if (k->arr_len > g->map_size / 8) {
                fail(what, "expected a string array the file can hold, got %llu elements", (unsigned long long)k->arr_len);
                continue;
            }
            struct slm_gguf_str *s = malloc((k->arr_len ? k->arr_len : 1) * sizeof *s);
            if (slm_gguf_get_str_arr(g, k, s, k->arr_len))
                fail(what, "expected get_str_arr to succeed on an opened file, got an error");
            else
                for (uint64_t j = 0; j < k->arr_len; j++)
                    if ((const uint8_t *)s[j].ptr < lo || s[j].len > (uint64_t)(hi - (const uint8_t *)s[j].ptr))
                        fail(what, "expected array string %llu inside the mapping, got outside", (unsigned long long)j);
            free(s);
        } else if (k->type == SLM_GGUF_ARRAY) {
            size_t sz = slm_gguf_vtype_size(k->arr_type);
            if (!sz || k->value < lo || k->arr_len > (uint64_t)(hi - k->value) / sz)
                fail(what, "expected a numeric array inside the mapping, got type %u, %llu elements", k->arr_type,
                     (unsigned long long)k->arr_len);
            else if (k->arr_len)
                (void)slm_gguf_arr_f64(k, k->arr_len - 1), (void)slm_gguf_arr_i64(k, k->arr_len - 1);
        } else {
            size_t sz = slm_gguf_vtype_size(k->type);
            if (!sz || k->value < lo || sz > (size_t)(hi - k->value))
                fail(what, "expected a scalar inside the mapping, got type %u", k->type);
        }
    }
}

static void check_fuzz(int iterations)
{
    struct writer w;
    struct buf good, file = {0};
    char path[600], err[SLM_ERR_LEN], what[64];
    int opened = 0;
    build_small(&w);
    w_file(&w, &good);
    size_t meta = good.n - w.data_size;   /* bytes before the data section */
    path_for(path, sizeof path, "fuzz");
    for (int it = 0; it < iterations; it++) {
        file.n = 0;
        put(&file, good.p, good.n);
        int flips = 1 + (int)(rng() % 4);
        for (int f = 0; f < flips; f++) {
            size_t pos = rng() % 10 ? rng() % meta : rng() % file.n;
            uint64_t r = rng();
            switch (r % 4) {
            case 0: file.p[pos] ^= (uint8_t)(1u << (r >> 8) % 8); break;   /* one bit */
            case 1: file.p[pos] = (uint8_t)(r >> 16); break;                /* any byte */
            case 2: file.p[pos] = 0xff; break;                              /* big counts */
            default: file.p[pos] = (uint8_t)(file.p[pos] + 1); break;
            }
        }
        if (rng() % 16 == 0) file.n = rng() % file.n;
        write_bytes(path, file.p, file.n);
        snprintf(what, sizeof what, "fuzz iteration %d", it);
        err[0] = 0;
        struct slm_gguf *g = slm_gguf_open(path, err);
        if (!g) {
            if (!strstr(err, path)) fail(what, "expected an error naming the file, got '%s'", err);
            continue;
        }
        opened++;
        check_views(g, what);
        slm_gguf_close(&g);
    }
    printf("fuzz: %d iterations, %d corrupted files opened, every view inside the file\n", iterations, opened);
    unlink(path);
    buf_free(&file);
    buf_free(&good);
    w_free(&w);
}

/* ---- the real models
 *
 * Both come from packaging/fetch-models.sh (the test command runs it). No SmolLM2 means a
 * machine without models: the synthetic checks above still run and the whole test exits 77
 * (CTest: skipped, as test_model) unless they failed. SmolLM2 without Gemma 3 is a partial
 * fetch, a setup error: that fails. */

static int real_models_skipped;

static const char *model_dir(void)
{
    static char dir[1024];
    const char *env = getenv("SLM_MODEL_DIR"), *home = getenv("HOME");
    if (env) return env;
    snprintf(dir, sizeof dir, "%s/.cache/slmd/models", home ? home : ".");
    return dir;
}

static void check_real_model(void)
{
    char path[1100], err[SLM_ERR_LEN];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", model_dir());
    if (access(path, R_OK) != 0) {
        printf("skip: real models: %s is absent (packaging/fetch-models.sh fetches it)\n", path);
        real_models_skipped = 1;
        return;
    }
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (!g) {
        fail("real model: open", "expected success, got '%s'", err);
        return;
    }
    expect_u64("real model: version", 3, g->version);
    expect_u64("real model: n_tensors", 272, g->n_tensors);
    struct slm_gguf_str s = {0};
    expect_rc("real model: general.architecture", 0, slm_gguf_get_str(g, "general.architecture", &s, err));
    if (!slm_gguf_str_eq(s, "llama")) fail("real model: general.architecture", "expected 'llama', got '%.*s'", (int)s.len, s.ptr);
    const struct slm_gguf_tensor *t = slm_gguf_find_tensor(g, "token_embd.weight");
    if (!t) fail("real model: token_embd.weight", "expected a tensor, got NULL");
    else {
        expect_u64("real model: token_embd.weight type", 8, t->type);
        expect_u64("real model: token_embd.weight ne[1]", 49152, t->ne[1]);
    }
    t = slm_gguf_find_tensor(g, "blk.0.attn_q.weight");
    if (!t) fail("real model: blk.0.attn_q.weight", "expected a tensor, got NULL");
    else expect_u64("real model: blk.0.attn_q.weight type", 3, t->type);
    uint32_t n_layer = 0;
    expect_rc("real model: llama.block_count", 0, slm_gguf_get_u32(g, "llama.block_count", &n_layer, err));
    expect_u64("real model: llama.block_count", 30, n_layer);
    const struct slm_gguf_kv *k = NULL;
    if (slm_gguf_get_arr(g, "tokenizer.ggml.tokens", SLM_GGUF_STRING, &k, err)) {
        fail("real model: tokenizer.ggml.tokens", "expected an array of strings, got '%s'", err);
    } else {
        expect_u64("real model: vocabulary size", 49152, k->arr_len);
        struct slm_gguf_str *toks = malloc(k->arr_len * sizeof *toks);
        expect_rc("real model: get_str_arr", 0, slm_gguf_get_str_arr(g, k, toks, k->arr_len));
        free(toks);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct slm_gguf_tensor *ti = &g->tensors[i];
        uint64_t nelem = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
        char what[128];
        snprintf(what, sizeof what, "real model: tensor '%.*s' nbytes", (int)ti->name.len, ti->name.ptr);
        expect_u64(what, type_nbytes(ti->type, nelem), ti->nbytes);
    }
    check_views(g, "real model");
    printf("real model: %s: v%u, %llu keys, %llu tensors\n", path, g->version, (unsigned long long)g->n_kv,
           (unsigned long long)g->n_tensors);
    slm_gguf_close(&g);
}

/* Gemma 3 270M (Q4_K_M: F32, Q5_0, Q8_0, Q4_K, Q6_K tensors), when the cache holds it. */
static void check_gemma(void)
{
    char path[1100], err[SLM_ERR_LEN];
    if (real_models_skipped) return;
    snprintf(path, sizeof path, "%s/gemma-3-270m-q4_k_m.gguf", model_dir());
    if (access(path, R_OK) != 0) {
        fail("gemma model", "expected %s (packaging/fetch-models.sh fetches it with SmolLM2), got none", path);
        return;
    }
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (!g) {
        fail("gemma model: open", "expected success, got '%s'", err);
        return;
    }
    expect_u64("gemma model: n_tensors", 236, g->n_tensors);
    struct slm_gguf_str s = {0};
    expect_rc("gemma model: general.architecture", 0, slm_gguf_get_str(g, "general.architecture", &s, err));
    if (!slm_gguf_str_eq(s, "gemma3")) fail("gemma model: general.architecture", "expected 'gemma3', got '%.*s'", (int)s.len, s.ptr);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct slm_gguf_tensor *t = &g->tensors[i];
        char what[128];
        snprintf(what, sizeof what, "gemma model: tensor '%.*s' nbytes", (int)t->name.len, t->name.ptr);
        expect_u64(what, type_nbytes(t->type, t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]), t->nbytes);
    }
    check_views(g, "gemma model");
    slm_gguf_close(&g);
}

static void remove_tmpdir(void)
{
    if (tmpdir[0]) rmdir(tmpdir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/slm-test-gguf-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    atexit(remove_tmpdir);

    static const uint32_t aligns[] = {0, 1, 64, 4096};
    for (uint32_t v = 2; v <= 3; v++)
        for (size_t a = 0; a < LEN(aligns); a++) check_good(v, aligns[a]);
    check_minimal();
    check_vtypes();
    check_header();
    check_bad_metadata();
    check_bad_tensors();
    check_paths();
    check_truncation();
    check_memory();
    check_fuzz(2000);
    check_real_model();
    check_gemma();

    if (failures) {
        printf("test_gguf: %d failure(s)\n", failures);
        return 1;
    }
    if (real_models_skipped) {
        printf("test_gguf: skipped (the synthetic checks passed; the real-model part needs the models)\n");
        return 77;
    }
    printf("test_gguf: all passed\n");
    return 0;
}
