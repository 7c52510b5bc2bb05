/*
 * daemon/engine/gguf.c - see gguf.h.
 *
 * Parsing walks a bounds-checked cursor over the mapping; every length is compared
 * with the bytes that remain before it is used, and every product is computed with
 * overflow checks. Rules beyond the GGUF spec, written here so tests can agree:
 * - versions 2 and 3 only; little-endian only;
 * - keys and tensor names must be unique; keys are 1..65535 bytes, tensor names 1..255;
 * - arrays of arrays are rejected ("not supported"), nothing in a model needs them;
 * - general.alignment, when present, is a UINT32 power of two;
 * - a tensor has 1..4 dimensions, each >= 1 (zero-size tensors are rejected), a weight
 *   type of kernels/quant.h, a row length that is a multiple of its block, an aligned
 *   offset, and data inside the file that overlaps no other tensor's.
 */
#define _GNU_SOURCE
#include "daemon/engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/quant.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define MAX_KEY_LEN 65535
#define MAX_TENSOR_NAME_LEN 255

struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
};

static size_t remaining(const struct cursor *c)
{
    return c->size - c->pos;
}

static int rd_u32(struct cursor *c, uint32_t *v)
{
    if (remaining(c) < 4) return -1;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v)
{
    if (remaining(c) < 8) return -1;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* Reads a gguf string (u64 length + bytes). Returns 0, -1 if the length field is cut
 * off, -2 if the bytes run past the end. */
static int rd_str(struct cursor *c, struct slm_gguf_str *s)
{
    uint64_t len;
    if (rd_u64(c, &len)) return -1;
    if (len > remaining(c)) return -2;
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return 0;
}

size_t slm_gguf_vtype_size(uint32_t type)
{
    switch (type) {
    case SLM_GGUF_UINT8: case SLM_GGUF_INT8: case SLM_GGUF_BOOL: return 1;
    case SLM_GGUF_UINT16: case SLM_GGUF_INT16: return 2;
    case SLM_GGUF_UINT32: case SLM_GGUF_INT32: case SLM_GGUF_FLOAT32: return 4;
    case SLM_GGUF_UINT64: case SLM_GGUF_INT64: case SLM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *slm_gguf_vtype_name(uint32_t type)
{
    static const char *const names[SLM_GGUF_VTYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    return type < SLM_GGUF_VTYPE_COUNT ? names[type] : "?";
}

int slm_gguf_str_eq(struct slm_gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ---- a small open-addressing index from names to positions, to find keys and tensors
 * in O(1) and to reject duplicates in files with very many entries. */

struct name_index {
    uint32_t *slots;   /* position + 1; 0 = empty */
    size_t mask;
};

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static int index_init(struct name_index *ix, uint64_t n)
{
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    return ix->slots ? 0 : -ENOMEM;
}

/* Inserts position `pos` named `s`, or returns the position already there (>= 0) with
 * that name; returns -1 when it was inserted. */
static int64_t index_insert(struct name_index *ix, struct slm_gguf_str s, const struct slm_gguf_str *names,
                            size_t stride, uint32_t pos)
{
    size_t i = (size_t)hash_bytes(s.ptr, s.len) & ix->mask;
    while (ix->slots[i]) {
        uint32_t other = ix->slots[i] - 1;
        const struct slm_gguf_str *o = (const struct slm_gguf_str *)((const char *)names + other * stride);
        if (o->len == s.len && memcmp(o->ptr, s.ptr, s.len) == 0) return other;
        i = (i + 1) & ix->mask;
    }
    ix->slots[i] = pos + 1;
    return -1;
}

static int64_t index_find(const struct name_index *ix, const char *name, const struct slm_gguf_str *names,
                          size_t stride)
{
    if (!ix->slots) return -1;
    size_t n = strlen(name);
    size_t i = (size_t)hash_bytes(name, n) & ix->mask;
    while (ix->slots[i]) {
        uint32_t pos = ix->slots[i] - 1;
        const struct slm_gguf_str *o = (const struct slm_gguf_str *)((const char *)names + pos * stride);
        if (o->len == n && memcmp(o->ptr, name, n) == 0) return pos;
        i = (i + 1) & ix->mask;
    }
    return -1;
}

struct slm_gguf_private {
    struct slm_gguf pub;
    struct name_index kv_index;
    struct name_index tensor_index;
    int borrowed;            /* map is the caller's memory (slm_gguf_open_memory): not unmapped */
};

static struct slm_gguf_private *priv(const struct slm_gguf *g)
{
    return (struct slm_gguf_private *)g;
}

/* Prints at most 64 bytes of a name from the file, escaping non-printables. */
static const char *show(struct slm_gguf_str s, char buf[160])
{
    size_t o = 0;
    for (uint64_t i = 0; i < s.len && i < 64 && o < 150; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\'') buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, 160 - o, "\\x%02x", ch);
    }
    if (s.len > 64) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = 0;
    return buf;
}

/* ---- metadata */

static int parse_value(struct slm_gguf *g, struct cursor *c, struct slm_gguf_kv *kv, char *err)
{
    char nb[160];
    const char *key = show(kv->key, nb);
    if (kv->type >= SLM_GGUF_VTYPE_COUNT) {
        slm_err_set(err, "%s: key '%s': unknown value type %u", g->path, key, kv->type);
        return -EINVAL;
    }
    kv->value = c->base + c->pos;
    if (kv->type == SLM_GGUF_STRING) {
        struct slm_gguf_str s;
        if (rd_str(c, &s)) goto trunc;
        return 0;
    }
    if (kv->type != SLM_GGUF_ARRAY) {
        size_t sz = slm_gguf_vtype_size(kv->type);
        if (remaining(c) < sz) goto trunc;
        c->pos += sz;
        return 0;
    }
    if (rd_u32(c, &kv->arr_type) || rd_u64(c, &kv->arr_len)) goto trunc;
    kv->value = c->base + c->pos;
    if (kv->arr_type == SLM_GGUF_ARRAY) {
        slm_err_set(err, "%s: key '%s': arrays of arrays are not supported", g->path, key);
        return -EINVAL;
    }
    if (kv->arr_type >= SLM_GGUF_VTYPE_COUNT) {
        slm_err_set(err, "%s: key '%s': unknown array element type %u", g->path, key, kv->arr_type);
        return -EINVAL;
    }
    if (kv->arr_type == SLM_GGUF_STRING) {
        if (kv->arr_len > remaining(c) / 8) {
            slm_err_set(err, "%s: key '%s': array of %llu strings runs past the end of the file", g->path, key,
                        (unsigned long long)kv->arr_len);
            return -EINVAL;
        }
        for (uint64_t i = 0; i < kv->arr_len; i++) {
            struct slm_gguf_str s;
            if (rd_str(c, &s)) {
                slm_err_set(err, "%s: key '%s': string %llu of the array runs past the end of the file", g->path,
                            key, (unsigned long long)i);
                return -EINVAL;
            }
        }
        return 0;
    }
    size_t sz = slm_gguf_vtype_size(kv->arr_type);
    if (kv->arr_len > remaining(c) / sz) {
        slm_err_set(err, "%s: key '%s': array of %llu %s values runs past the end of the file", g->path, key,
                    (unsigned long long)kv->arr_len, slm_gguf_vtype_name(kv->arr_type));
        return -EINVAL;
    }
    c->pos += (size_t)(kv->arr_len * sz);
    return 0;
trunc:
    slm_err_set(err, "%s: key '%s': %s value runs past the end of the file", g->path, key,
                slm_gguf_vtype_name(kv->type));
    return -EINVAL;
}

static int parse_metadata(struct slm_gguf *g, struct cursor *c, char *err)
{
    struct slm_gguf_private *p = priv(g);
    char nb[160];
    /* Each pair takes at least 12 bytes (key length + value type): bounds n_kv before allocating. */
    if (g->n_kv > remaining(c) / 12) {
        slm_err_set(err, "%s: header: key-value count %llu is larger than the file can hold", g->path,
                    (unsigned long long)g->n_kv);
        return -EINVAL;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    if (!g->kv || index_init(&p->kv_index, g->n_kv)) {
        slm_err_set(err, "%s: out of memory", g->path);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct slm_gguf_kv *kv = &g->kv[i];
        int rc = rd_str(c, &kv->key);
        if (rc) {
            slm_err_set(err, "%s: key-value pair %llu: key %s past the end of the file", g->path,
                        (unsigned long long)i, rc == -1 ? "length runs" : "runs");
            return -EINVAL;
        }
        if (kv->key.len == 0 || kv->key.len > MAX_KEY_LEN) {
            slm_err_set(err, "%s: key-value pair %llu: key length %llu is out of range (1..%d)", g->path,
                        (unsigned long long)i, (unsigned long long)kv->key.len, MAX_KEY_LEN);
            return -EINVAL;
        }
        if (rd_u32(c, &kv->type)) {
            slm_err_set(err, "%s: key '%s': value type runs past the end of the file", g->path, show(kv->key, nb));
            return -EINVAL;
        }
        if ((rc = parse_value(g, c, kv, err))) return rc;
        if (index_insert(&p->kv_index, kv->key, &g->kv[0].key, sizeof *kv, (uint32_t)i) >= 0) {
            slm_err_set(err, "%s: key '%s' appears twice", g->path, show(kv->key, nb));
            return -EINVAL;
        }
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct slm_gguf_kv *al = slm_gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a = 0;
        if (al->type == SLM_GGUF_UINT32) memcpy(&a, al->value, 4);
        if (al->type != SLM_GGUF_UINT32 || a == 0 || (a & (a - 1))) {
            slm_err_set(err, "%s: key 'general.alignment': must be a uint32 power of two", g->path);
            return -EINVAL;
        }
        g->alignment = a;
    }
    return 0;
}

/* ---- tensors */

static int parse_tensor_info(struct slm_gguf *g, struct cursor *c, uint64_t i, char *err)
{
    struct slm_gguf_tensor *t = &g->tensors[i];
    char nb[160];
    int rc = rd_str(c, &t->name);
    if (rc) {
        slm_err_set(err, "%s: tensor %llu: name runs past the end of the file", g->path, (unsigned long long)i);
        return -EINVAL;
    }
    if (t->name.len == 0 || t->name.len > MAX_TENSOR_NAME_LEN) {
        slm_err_set(err, "%s: tensor %llu: name length %llu is out of range (1..%d)", g->path,
                    (unsigned long long)i, (unsigned long long)t->name.len, MAX_TENSOR_NAME_LEN);
        return -EINVAL;
    }
    const char *name = show(t->name, nb);
    if (rd_u32(c, &t->n_dims)) goto trunc;
    if (t->n_dims < 1 || t->n_dims > SLM_GGUF_MAX_DIMS) {
        slm_err_set(err, "%s: tensor '%s': %u dimensions (1..%d supported)", g->path, name, t->n_dims,
                    SLM_GGUF_MAX_DIMS);
        return -EINVAL;
    }
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < SLM_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        if (rd_u64(c, &t->ne[d])) goto trunc;
        if (t->ne[d] == 0) {
            slm_err_set(err, "%s: tensor '%s': dimension %u is zero", g->path, name, d);
            return -EINVAL;
        }
        if (t->ne[d] > INT64_MAX || __builtin_mul_overflow(nelem, t->ne[d], &nelem) || nelem > INT64_MAX) {
            slm_err_set(err, "%s: tensor '%s': element count overflows", g->path, name);
            return -EINVAL;
        }
    }
    if (rd_u32(c, &t->type) || rd_u64(c, &t->offset)) goto trunc;
    if (!slm_qtype_is_weight(t->type)) {
        slm_err_set(err, "%s: tensor '%s': unsupported tensor type %u", g->path, name, t->type);
        return -EINVAL;
    }
    uint32_t blk = slm_qblock_elems(t->type);
    if (t->ne[0] % blk) {
        slm_err_set(err, "%s: tensor '%s': row length %llu is not a multiple of the %s block (%u)", g->path, name,
                    (unsigned long long)t->ne[0], slm_qtype_name(t->type), blk);
        return -EINVAL;
    }
    if (__builtin_mul_overflow(nelem / blk, (uint64_t)slm_qblock_bytes(t->type), &t->nbytes)) {
        slm_err_set(err, "%s: tensor '%s': byte size overflows", g->path, name);
        return -EINVAL;
    }
    if (t->offset % g->alignment) {
        slm_err_set(err, "%s: tensor '%s': data offset %llu is not aligned to %u", g->path, name,
                    (unsigned long long)t->offset, g->alignment);
        return -EINVAL;
    }
    if (index_insert(&priv(g)->tensor_index, t->name, &g->tensors[0].name, sizeof *t, (uint32_t)i) >= 0) {
        slm_err_set(err, "%s: tensor '%s' appears twice", g->path, name);
        return -EINVAL;
    }
    return 0;
trunc:
    slm_err_set(err, "%s: tensor '%s': info runs past the end of the file", g->path, name);
    return -EINVAL;
}

static int cmp_by_offset(const void *a, const void *b, void *arg)
{
    const struct slm_gguf_tensor *ts = arg;
    uint64_t x = ts[*(const uint32_t *)a].offset, y = ts[*(const uint32_t *)b].offset;
    return x < y ? -1 : x > y;
}

/* Every tensor's data lies inside the data section and overlaps no other's. */
static int check_tensor_data(struct slm_gguf *g, char *err)
{
    char nb[160], nb2[160];
    uint64_t avail = g->map_size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct slm_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            slm_err_set(err, "%s: tensor '%s': data (offset %llu, %llu bytes) runs past the end of the file", g->path,
                        show(t->name, nb), (unsigned long long)t->offset, (unsigned long long)t->nbytes);
            return -EINVAL;
        }
        t->data = g->map + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return 0;
    uint32_t *order = malloc(g->n_tensors * sizeof *order);
    if (!order) {
        slm_err_set(err, "%s: out of memory", g->path);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) order[i] = (uint32_t)i;
    qsort_r(order, g->n_tensors, sizeof *order, cmp_by_offset, g->tensors);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const struct slm_gguf_tensor *a = &g->tensors[order[i - 1]], *b = &g->tensors[order[i]];
        if (a->offset + a->nbytes > b->offset) {
            slm_err_set(err, "%s: tensor '%s': data overlaps tensor '%s'", g->path, show(b->name, nb),
                        show(a->name, nb2));
            rc = -EINVAL;
            break;
        }
    }
    free(order);
    return rc;
}

static int parse(struct slm_gguf *g, char *err)
{
    struct cursor c = {.base = g->map, .size = g->map_size, .pos = 0};
    if (g->map_size < 24 || memcmp(g->map, "GGUF", 4) != 0) {
        slm_err_set(err, "%s: not a GGUF file (%s)", g->path,
                    g->map_size < 24 ? "too short for a header" : "bad magic");
        return -EINVAL;
    }
    c.pos = 4;
    rd_u32(&c, &g->version);
    if (g->version != 2 && g->version != 3) {
        slm_err_set(err, "%s: header: GGUF version %u is not supported (2 and 3 are)", g->path, g->version);
        return -EINVAL;
    }
    rd_u64(&c, &g->n_tensors);
    rd_u64(&c, &g->n_kv);
    int rc = parse_metadata(g, &c, err);
    if (rc) return rc;
    /* Each tensor info takes at least 32 bytes: bounds n_tensors before allocating. */
    if (g->n_tensors > remaining(&c) / 32) {
        slm_err_set(err, "%s: header: tensor count %llu is larger than the file can hold", g->path,
                    (unsigned long long)g->n_tensors);
        return -EINVAL;
    }
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors || index_init(&priv(g)->tensor_index, g->n_tensors)) {
        slm_err_set(err, "%s: out of memory", g->path);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(g, &c, i, err))) return rc;
    uint64_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data > g->map_size) {
        if (g->n_tensors == 0) data = g->map_size;   /* a metadata-only file needs no padding */
        else {
            slm_err_set(err, "%s: data section: starts at %llu, past the end of the file (%zu bytes)", g->path,
                        (unsigned long long)data, g->map_size);
            return -EINVAL;
        }
    }
    g->data_offset = data;
    return check_tensor_data(g, err);
}

struct slm_gguf *slm_gguf_open(const char *path, char *err)
{
    struct slm_gguf_private *p = calloc(1, sizeof *p);
    if (!p) {
        slm_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    struct slm_gguf *g = &p->pub;
    snprintf(g->path, sizeof g->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        slm_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        goto err;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        slm_err_set(err, "%s: not a regular file", path);
        close(fd);
        goto err;
    }
    if (st.st_size == 0) {
        slm_err_set(err, "%s: not a GGUF file (empty)", path);
        close(fd);
        goto err;
    }
    g->map_size = (size_t)st.st_size;
    void *m = mmap(NULL, g->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        slm_err_set(err, "%s: cannot map: %s", path, strerror(errno));
        g->map_size = 0;
        goto err;
    }
    g->map = m;
    if (parse(g, err)) goto err;
    return g;
err:
    slm_gguf_close(&g);
    return NULL;
}

struct slm_gguf *slm_gguf_open_memory(const void *buf, size_t size, const char *name, char *err)
{
    struct slm_gguf_private *p = calloc(1, sizeof *p);
    if (!p) {
        slm_err_set(err, "%s: out of memory", name);
        return NULL;
    }
    struct slm_gguf *g = &p->pub;
    snprintf(g->path, sizeof g->path, "%s", name);
    p->borrowed = 1;
    g->map = buf;
    g->map_size = size;
    if (!buf || parse(g, err)) {
        if (!buf) slm_err_set(err, "%s: not a GGUF file (no bytes)", name);
        slm_gguf_close(&g);
    }
    return g;
}

void slm_gguf_close(struct slm_gguf **gp)
{
    struct slm_gguf *g = *gp;
    if (!g) return;
    if (g->map && !priv(g)->borrowed) munmap((void *)g->map, g->map_size);
    free(priv(g)->kv_index.slots);
    free(priv(g)->tensor_index.slots);
    free(g->kv);
    free(g->tensors);
    free(priv(g));
    *gp = NULL;
}

const struct slm_gguf_kv *slm_gguf_find(const struct slm_gguf *g, const char *key)
{
    int64_t i = g->kv ? index_find(&priv(g)->kv_index, key, &g->kv[0].key, sizeof *g->kv) : -1;
    return i < 0 ? NULL : &g->kv[i];
}

const struct slm_gguf_tensor *slm_gguf_find_tensor(const struct slm_gguf *g, const char *name)
{
    int64_t i = g->tensors ? index_find(&priv(g)->tensor_index, name, &g->tensors[0].name, sizeof *g->tensors)
                           : -1;
    return i < 0 ? NULL : &g->tensors[i];
}

/* ---- typed getters */

/* Reads a scalar integer value of any integer/bool type at p as a signed 128-bit-safe
 * pair: *neg says whether it is negative, *mag its magnitude. Returns 0 or -EINVAL. */
static int read_int(uint32_t type, const uint8_t *p, int *neg, uint64_t *mag)
{
    int64_t s = 0;
    uint64_t u = 0;
    int is_signed = 0;
    switch (type) {
    case SLM_GGUF_UINT8: case SLM_GGUF_BOOL: { uint8_t v; memcpy(&v, p, 1); u = v; break; }
    case SLM_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); u = v; break; }
    case SLM_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); u = v; break; }
    case SLM_GGUF_UINT64: { memcpy(&u, p, 8); break; }
    case SLM_GGUF_INT8: { int8_t v; memcpy(&v, p, 1); s = v; is_signed = 1; break; }
    case SLM_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); s = v; is_signed = 1; break; }
    case SLM_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); s = v; is_signed = 1; break; }
    case SLM_GGUF_INT64: { memcpy(&s, p, 8); is_signed = 1; break; }
    default: return -EINVAL;
    }
    if (type == SLM_GGUF_BOOL && u > 1) return -EINVAL;
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    } else {
        *neg = 0;
        *mag = u;
    }
    return 0;
}

static const struct slm_gguf_kv *lookup(const struct slm_gguf *g, const char *key, char *err, int *rc)
{
    const struct slm_gguf_kv *kv = slm_gguf_find(g, key);
    *rc = 0;
    if (!kv) {
        slm_err_set(err, "%s: required key '%s' is missing", g->path, key);
        *rc = -ENOENT;
    }
    return kv;
}

static int bad_type(const struct slm_gguf *g, const struct slm_gguf_kv *kv, const char *key, const char *want,
                    char *err)
{
    slm_err_set(err, "%s: key '%s': expected %s, found %s", g->path, key, want, slm_gguf_vtype_name(kv->type));
    return -EINVAL;
}

int slm_gguf_get_u64(const struct slm_gguf *g, const char *key, uint64_t *out, char *err)
{
    int rc, neg;
    uint64_t mag;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (read_int(kv->type, kv->value, &neg, &mag) || neg) return bad_type(g, kv, key, "an unsigned integer", err);
    *out = mag;
    return 0;
}

int slm_gguf_get_u32(const struct slm_gguf *g, const char *key, uint32_t *out, char *err)
{
    uint64_t v;
    int rc = slm_gguf_get_u64(g, key, &v, err);
    if (rc) return rc;
    if (v > UINT32_MAX) return bad_type(g, slm_gguf_find(g, key), key, "a value that fits in 32 bits", err);
    *out = (uint32_t)v;
    return 0;
}

int slm_gguf_get_i64(const struct slm_gguf *g, const char *key, int64_t *out, char *err)
{
    int rc, neg;
    uint64_t mag;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (read_int(kv->type, kv->value, &neg, &mag) || mag > (uint64_t)INT64_MAX + (uint64_t)neg)
        return bad_type(g, kv, key, "a signed 64-bit integer", err);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int slm_gguf_get_f32(const struct slm_gguf *g, const char *key, float *out, char *err)
{
    int rc;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type == SLM_GGUF_FLOAT32) {
        memcpy(out, kv->value, 4);
    } else if (kv->type == SLM_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->value, 8);
        if (isfinite(d) && fabs(d) > FLT_MAX) return bad_type(g, kv, key, "a value within float range", err);
        *out = (float)d;
    } else {
        return bad_type(g, kv, key, "a float", err);
    }
    return 0;
}

int slm_gguf_get_bool(const struct slm_gguf *g, const char *key, int *out, char *err)
{
    int rc, neg;
    uint64_t mag;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (read_int(kv->type, kv->value, &neg, &mag) || neg || mag > 1) return bad_type(g, kv, key, "a bool", err);
    *out = (int)mag;
    return 0;
}

int slm_gguf_get_str(const struct slm_gguf *g, const char *key, struct slm_gguf_str *out, char *err)
{
    int rc;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type != SLM_GGUF_STRING) return bad_type(g, kv, key, "a string", err);
    memcpy(&out->len, kv->value, 8);
    out->ptr = (const char *)kv->value + 8;
    return 0;
}

int slm_gguf_get_arr(const struct slm_gguf *g, const char *key, uint32_t elem_type, const struct slm_gguf_kv **out,
                     char *err)
{
    int rc;
    const struct slm_gguf_kv *kv = lookup(g, key, err, &rc);
    if (!kv) return rc;
    if (kv->type != SLM_GGUF_ARRAY || kv->arr_type != elem_type) {
        slm_err_set(err, "%s: key '%s': expected an array of %s, found %s%s%s", g->path, key,
                    slm_gguf_vtype_name(elem_type), kv->type == SLM_GGUF_ARRAY ? "an array of " : "",
                    slm_gguf_vtype_name(kv->type == SLM_GGUF_ARRAY ? kv->arr_type : kv->type), "");
        return -EINVAL;
    }
    *out = kv;
    return 0;
}

int slm_gguf_get_str_arr(const struct slm_gguf *g, const struct slm_gguf_kv *kv, struct slm_gguf_str *out,
                         uint64_t n)
{
    if (kv->type != SLM_GGUF_ARRAY || kv->arr_type != SLM_GGUF_STRING || n != kv->arr_len) return -EINVAL;
    /* Lengths were checked at open; this walk cannot leave the mapping. */
    struct cursor c = {.base = g->map, .size = g->map_size, .pos = (size_t)(kv->value - g->map)};
    for (uint64_t i = 0; i < n; i++)
        if (rd_str(&c, &out[i])) return -EINVAL;
    return 0;
}

/* Truncates toward zero, saturating; NaN reads as 0 (a plain cast of those is undefined). */
static int64_t f64_to_i64(double d)
{
    if (d != d) return 0;
    if (d >= 9223372036854775808.0) return INT64_MAX;
    if (d < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)d;
}

double slm_gguf_arr_f64(const struct slm_gguf_kv *kv, uint64_t i)
{
    const uint8_t *p = kv->value + i * slm_gguf_vtype_size(kv->arr_type);
    if (kv->arr_type == SLM_GGUF_FLOAT32) { float f; memcpy(&f, p, 4); return f; }
    if (kv->arr_type == SLM_GGUF_FLOAT64) { double d; memcpy(&d, p, 8); return d; }
    return (double)slm_gguf_arr_i64(kv, i);
}

int64_t slm_gguf_arr_i64(const struct slm_gguf_kv *kv, uint64_t i)
{
    const uint8_t *p = kv->value + i * slm_gguf_vtype_size(kv->arr_type);
    int neg;
    uint64_t mag;
    if (read_int(kv->arr_type, p, &neg, &mag)) {
        if (kv->arr_type == SLM_GGUF_FLOAT32) { float f; memcpy(&f, p, 4); return f64_to_i64(f); }
        if (kv->arr_type == SLM_GGUF_FLOAT64) { double d; memcpy(&d, p, 8); return f64_to_i64(d); }
        return 0;
    }
    return neg ? (int64_t)(0 - mag) : (int64_t)mag;
}
