/*
 * daemon/engine/backends/cpu.c - the CPU backend: the ops table over kernels/cpu.
 *
 * Weights stay in the GGUF mapping, except the matrices the fast kernels read better
 * repacked (kernels/cpu/matmul.h, the X8 layout): those get a copy in that layout,
 * made once at load, in chunks of transparent huge pages (cpu_chunk). Activations are host
 * memory. The KV pool is one zeroed allocation of halves, per layer K then V, each
 * (n_blocks, block_size, kv_dim); pages are only touched as blocks fill. Work is spread over a thread pool; ops too
 * small to be worth a dispatch run on the calling thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/backends/backend.h"
#include "common/log.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/threadpool.h"

/* Below this many floats an element-wise op runs on the calling thread. */
#define PARALLEL_MIN 32768

struct cpu_chunk;

struct cpu_impl {
    struct slm_pool *pool;
    struct cpu_chunk *chunk;  /* the chunk packed weights are placed in now, or NULL */
    void *scratch;            /* quantized activations for matmul */
    size_t scratch_size;
    float *scores;            /* attention scores, (n_threads, scores_per_thread) */
    size_t scores_per_thread;
};

static struct cpu_impl *impl(struct slm_backend *be)
{
    return be->impl;
}

static void *cpu_alloc(struct slm_backend *be, size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) memset(p, 0, n ? n : 64);
    return p;
}

static void cpu_free(struct slm_backend *be, void *p)
{
    free(p);
}

/*
 * Packed weights live in chunks of memory asked for as transparent huge pages (2 MiB): the
 * tiles stream them once a step, and with 4 KiB pages the hardware prefetchers stop at every
 * page and each page costs a TLB miss (on the 2-core AVX2 box, with the tiles' prefetch, decode
 * of Gemma 3 270M went from 88 to 113-126 tokens/s; docs/performance.md). A chunk holds weights one after another, so
 * that small matrices share huge pages; it counts them and is freed with the last. Where the
 * kernel has no THP, madvise fails and the chunk is ordinary pages: nothing else changes.
 */
#define CHUNK_ALIGN ((size_t)2 << 20)
#define CHUNK_BYTES ((size_t)32 << 20)

struct cpu_chunk {
    size_t size, used;  /* bytes, this header included */
    int refs;           /* the weights in it */
    int current;        /* 1 while new weights are placed in it (cpu_impl.chunk) */
};

/* A repacked weight; be_data points at it. A weight used in place has be_data == data. */
struct cpu_packed {
    struct cpu_chunk *chunk;
    uint32_t layout;                        /* enum slm_cpu_layout */
    _Alignas(64) unsigned char bytes[];     /* the weight in that layout */
};

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static struct cpu_chunk *chunk_new(size_t least)
{
    size_t size = round_up(least, CHUNK_ALIGN);
    if (size < least) return NULL;   /* wrapped */
    struct cpu_chunk *c = aligned_alloc(CHUNK_ALIGN, size);
    if (!c) return NULL;
    (void)madvise(c, size, MADV_HUGEPAGE);   /* a hint: without THP the chunk keeps small pages */
    c->size = size;
    c->used = round_up(sizeof *c, 64);
    c->refs = 0;
    c->current = 0;
    return c;
}

/* No more weights go into c: freed now if it holds none, else with its last. */
static void chunk_retire(struct cpu_chunk *c)
{
    c->current = 0;
    if (c->refs == 0) free(c);
}

/* Room for a packed weight of bytes: in the current chunk, a new one, or (large) its own. */
static struct cpu_packed *packed_alloc(struct cpu_impl *ci, size_t bytes)
{
    size_t need = round_up(sizeof(struct cpu_packed) + bytes, 64);
    if (need < bytes) return NULL;
    struct cpu_chunk *c = ci->chunk;
    if (need > CHUNK_BYTES / 2) {
        c = chunk_new(round_up(sizeof *c, 64) + need);
    } else if (!c || c->size - c->used < need) {
        c = chunk_new(CHUNK_BYTES);
        if (c) {
            if (ci->chunk) chunk_retire(ci->chunk);
            c->current = 1;
            ci->chunk = c;
        }
    }
    if (!c) return NULL;
    struct cpu_packed *p = (struct cpu_packed *)((unsigned char *)c + c->used);
    c->used += need;
    c->refs++;
    p->chunk = c;
    return p;
}

/* A weight's room given back: the chunk is freed with its last weight, unless new weights are
 * still placed in it (then it starts over empty). */
static void packed_free(struct cpu_packed *p)
{
    struct cpu_chunk *c = p->chunk;
    if (--c->refs > 0) return;
    if (c->current) c->used = round_up(sizeof *c, 64);
    else free(c);
}

static int cpu_load_weight(struct slm_backend *be, struct slm_weight *w)
{
    w->be_data = (void *)w->data;   /* used in place from the mapping */
    if (w->rows < 2) return 0;
    uint32_t layout = slm_cpu_weight_layout(w->type, w->rows, w->cols);
    if (layout == SLM_CPU_LAYOUT_ROWS) return 0;
    size_t bytes = slm_cpu_layout_bytes(layout, w->type, w->rows, w->cols);
    struct cpu_packed *p = packed_alloc(impl(be), bytes);
    if (!p) return -ENOMEM;
    p->layout = layout;
    int rc = slm_cpu_repack(layout, w->type, w->rows, w->cols, w->data, w->row_bytes, p->bytes);
    if (rc) {
        packed_free(p);
        return rc;
    }
    w->be_data = p;
    return 0;
}

static void cpu_unload_weight(struct slm_backend *be, struct slm_weight *w)
{
    if (w->be_data && w->be_data != w->data) packed_free(w->be_data);
    w->be_data = NULL;
}

static size_t kv_layer_halves(const struct slm_kv_pool *p)
{
    return (size_t)p->n_blocks * (size_t)p->block_size * (size_t)p->kv_dim;
}

static int cpu_kv_alloc(struct slm_backend *be, struct slm_kv_pool *pool)
{
    size_t n = kv_layer_halves(pool) * 2 * (size_t)pool->n_layer;
    pool->mem = calloc(n ? n : 1, sizeof(slm_half));
    return pool->mem ? 0 : -ENOMEM;
}

static void cpu_kv_free(struct slm_backend *be, struct slm_kv_pool *pool)
{
    free(pool->mem);
    pool->mem = NULL;
}

static int cpu_embed(struct slm_backend *be, const struct slm_weight *table, const int32_t *tokens, int n,
                     float *out)
{
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= table->rows) return -EINVAL;
        const char *row = (const char *)table->data + (size_t)tokens[i] * table->row_bytes;
        int rc = slm_cpu_dequantize_row(table->type, row, out + (size_t)i * (size_t)table->cols, table->cols);
        if (rc) return rc;
    }
    return 0;
}

/* ---- row-parallel helpers */

struct rows_ctx {
    const float *x;
    const float *y;
    float *out;
    int n, dim;
    float eps;
    size_t len;
    int op;   /* 0 rmsnorm, 1 swiglu, 2 add, 3 geglu, 4 scale (by eps), 5 softcap (by eps) */
};

static void split(size_t total, int ith, int nth, size_t *lo, size_t *hi)
{
    *lo = total * (size_t)ith / (size_t)nth;
    *hi = total * (size_t)(ith + 1) / (size_t)nth;
}

static void rows_worker(void *arg, int ith, int nth)
{
    struct rows_ctx *c = arg;
    size_t lo, hi;
    if (c->op == 0) {
        split((size_t)c->n, ith, nth, &lo, &hi);
        for (size_t i = lo; i < hi; i++)
            slm_cpu_rmsnorm(c->x + i * (size_t)c->dim, c->y, c->dim, c->eps, c->out + i * (size_t)c->dim);
        return;
    }
    /* element ranges cut at multiples of 16 so every split computes the same bits */
    split(c->len / 16, ith, nth, &lo, &hi);
    lo *= 16;
    hi = ith == nth - 1 ? c->len : hi * 16;
    if (c->op == 1) slm_cpu_swiglu(c->x + lo, c->y + lo, hi - lo, c->out + lo);
    else if (c->op == 3) slm_cpu_geglu(c->x + lo, c->y + lo, hi - lo, c->out + lo);
    else if (c->op == 4) slm_cpu_scale(c->out + lo, hi - lo, c->eps);
    else if (c->op == 5) slm_cpu_softcap(c->out + lo, hi - lo, c->eps);
    else slm_cpu_add(c->out + lo, c->y + lo, hi - lo);
}

static void run_rows(struct slm_backend *be, struct rows_ctx *c, size_t work)
{
    if (work < PARALLEL_MIN) rows_worker(c, 0, 1);
    else slm_pool_run(impl(be)->pool, rows_worker, c);
}

static int cpu_rmsnorm(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int n, int dim,
                       float eps, float *out)
{
    struct rows_ctx c = {.x = x, .y = gamma->data, .out = out, .n = n, .dim = dim, .eps = eps, .op = 0};
    run_rows(be, &c, (size_t)n * (size_t)dim);
    return 0;
}

static int cpu_swiglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    struct rows_ctx c = {.x = gate, .y = up, .out = out, .len = n, .op = 1};
    run_rows(be, &c, n * 8);   /* expf: weigh it as 8 plain ops */
    return 0;
}

static int cpu_geglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    struct rows_ctx c = {.x = gate, .y = up, .out = out, .len = n, .op = 3};
    run_rows(be, &c, n * 8);
    return 0;
}

static int cpu_scale(struct slm_backend *be, float *x, size_t n, float s)
{
    struct rows_ctx c = {.out = x, .len = n, .eps = s, .op = 4};
    run_rows(be, &c, n);
    return 0;
}

static int cpu_softcap(struct slm_backend *be, float *x, size_t n, float cap)
{
    struct rows_ctx c = {.out = x, .len = n, .eps = cap, .op = 5};
    run_rows(be, &c, n * 8);   /* tanhf: weigh it as 8 plain ops */
    return 0;
}

static int cpu_add(struct slm_backend *be, float *x, const float *y, size_t n)
{
    struct rows_ctx c = {.y = y, .out = x, .len = n, .op = 2};
    run_rows(be, &c, n);
    return 0;
}

static int cpu_add_bias(struct slm_backend *be, float *x, const struct slm_weight *bias, int n)
{
    for (int i = 0; i < n; i++) slm_cpu_add(x + (size_t)i * (size_t)bias->cols, bias->data, (size_t)bias->cols);
    return 0;
}

static int cpu_matmul(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                      float *const *y, int accumulate)
{
    struct slm_cpu_matmul_job jobs[8];
    if (n_w < 1 || n_w > 8) return -EINVAL;
    for (int j = 0; j < n_w; j++) {
        jobs[j] = (struct slm_cpu_matmul_job){.type = w[j]->type, .rows = w[j]->rows, .cols = w[j]->cols,
                                              .row_bytes = w[j]->row_bytes, .w = w[j]->data, .y = y[j]};
        if (w[j]->be_data && w[j]->be_data != w[j]->data) {
            const struct cpu_packed *p = w[j]->be_data;
            jobs[j].layout = p->layout;
            jobs[j].w = p->bytes;
        }
    }
    struct cpu_impl *ci = impl(be);
    size_t need = slm_cpu_matmul_scratch_bytes(n_w, jobs, n);
    if (need > ci->scratch_size) {
        void *s = aligned_alloc(64, (need + 63) / 64 * 64);
        if (!s) return -ENOMEM;
        free(ci->scratch);
        ci->scratch = s;
        ci->scratch_size = need;
    }
    return slm_cpu_matmul(ci->pool, n_w, jobs, x, n, accumulate, ci->scratch);
}

/* ---- attention */

struct attn_ctx {
    const struct slm_kv_pool *pool;
    const slm_half *k_pool, *v_pool;
    const struct slm_batch *b;
    const struct slm_attn_params *p;
    const float *q;
    float *out;
    float *scores;
    size_t scores_per_thread;
};

static void attn_worker(void *arg, int ith, int nth)
{
    struct attn_ctx *c = arg;
    const struct slm_attn_params *p = c->p;
    int group = p->n_head / p->n_head_kv;
    size_t qd = (size_t)p->n_head * (size_t)p->head_dim, gd = (size_t)group * (size_t)p->head_dim;
    size_t total = (size_t)c->b->n_tokens * (size_t)p->n_head_kv;
    /* One job: a token's query heads of one KV head, which share its K and V rows.
     * Strided, not in ranges: a token's cost grows with its position, so ranges would leave
     * the first thread idle while the last works through the longest contexts. */
    for (size_t job = (size_t)ith; job < total; job += (size_t)nth) {
        int i = (int)(job / (size_t)p->n_head_kv), g = (int)(job % (size_t)p->n_head_kv);
        const int32_t *blocks = c->b->block_tables + (size_t)c->b->seq_row[i] * (size_t)c->b->max_blocks;
        const int pos = c->b->pos[i], first = p->window > 0 && pos >= p->window ? pos - p->window + 1 : 0;
        slm_cpu_attention_group(c->q + (size_t)i * qd + (size_t)g * gd, group, p->head_dim, p->scale, c->k_pool,
                                c->v_pool, blocks, c->pool->block_size, (size_t)c->pool->kv_dim,
                                (size_t)g * (size_t)p->head_dim, first, pos + 1,
                                c->scores + (size_t)ith * c->scores_per_thread, c->out + (size_t)i * qd + (size_t)g * gd);
    }
}

static int cpu_attention(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                         const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    struct cpu_impl *ci = impl(be);
    size_t per_layer = kv_layer_halves(pool);
    slm_half *k_pool = (slm_half *)pool->mem + (size_t)layer * 2 * per_layer;
    slm_half *v_pool = k_pool + per_layer;
    size_t qd = (size_t)p->n_head * (size_t)p->head_dim, kvd = (size_t)pool->kv_dim;
    float cos_t[512], sin_t[512];
    if (p->rope_dim > 1024) return -EINVAL;
    int max_ctx = 0;
    /* Rotate q and k, and store k and v: cheap, on this thread. */
    for (int i = 0; i < b->n_tokens; i++) {
        slm_cpu_rope_angles(b->pos[i], p->rope_dim, p->rope_base, p->rope_factors, p->rope_mscale, cos_t, sin_t);
        slm_cpu_rope_apply(q + (size_t)i * qd, p->n_head, p->head_dim, p->rope_dim, p->rope_layout, cos_t, sin_t);
        slm_cpu_rope_apply(k + (size_t)i * kvd, p->n_head_kv, p->head_dim, p->rope_dim, p->rope_layout, cos_t,
                           sin_t);
        const int32_t *blocks = b->block_tables + (size_t)b->seq_row[i] * (size_t)b->max_blocks;
        size_t row = (size_t)blocks[b->pos[i] / pool->block_size] * (size_t)pool->block_size +
                     (size_t)(b->pos[i] % pool->block_size);
        slm_cpu_f32_to_f16(k + (size_t)i * kvd, k_pool + row * kvd, kvd);
        slm_cpu_f32_to_f16(v + (size_t)i * kvd, v_pool + row * kvd, kvd);
        if (b->pos[i] + 1 > max_ctx) max_ctx = b->pos[i] + 1;
    }
    size_t need = slm_cpu_attention_group_scratch(max_ctx, p->head_dim, p->n_head / p->n_head_kv);
    if (need > ci->scores_per_thread) {
        float *s = malloc(need * (size_t)be->n_threads * sizeof *s);
        if (!s) return -ENOMEM;
        free(ci->scores);
        ci->scores = s;
        ci->scores_per_thread = need;
    }
    struct attn_ctx c = {.pool = pool, .k_pool = k_pool, .v_pool = v_pool, .b = b, .p = p, .q = q, .out = out,
                         .scores = ci->scores, .scores_per_thread = ci->scores_per_thread};
    if ((size_t)b->n_tokens * (size_t)p->n_head * (size_t)max_ctx < 4096) attn_worker(&c, 0, 1);
    else slm_pool_run(ci->pool, attn_worker, &c);
    return 0;
}

static int cpu_gather_rows(struct slm_backend *be, const float *x, int dim, const int32_t *rows, int n_rows,
                           float *dst)
{
    for (int i = 0; i < n_rows; i++)
        memmove(dst + (size_t)i * (size_t)dim, x + (size_t)rows[i] * (size_t)dim, (size_t)dim * sizeof *dst);
    return 0;
}

static int cpu_to_host(struct slm_backend *be, const float *src, size_t n, float *host)
{
    memcpy(host, src, n * sizeof *host);
    return 0;
}

static void cpu_destroy(struct slm_backend *be)
{
    struct cpu_impl *ci = impl(be);
    if (ci) {
        slm_pool_destroy(&ci->pool);
        if (ci->chunk) chunk_retire(ci->chunk);
        free(ci->scratch);
        free(ci->scores);
        free(ci);
    }
    free(be);
}

static const struct slm_backend_ops cpu_ops = {
    .name = "cpu",
    .sliding_window = 1,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .load_weight = cpu_load_weight,
    .unload_weight = cpu_unload_weight,
    .kv_alloc = cpu_kv_alloc,
    .kv_free = cpu_kv_free,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .add_bias = cpu_add_bias,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .geglu = cpu_geglu,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .to_host = cpu_to_host,
};

struct slm_backend *slm_backend_cpu_create(int n_threads, char *err)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) {
        slm_err_set(err, "cpu backend: %d threads is too many (at most 256)", n_threads);
        return NULL;
    }
    char why[SLM_ERR_LEN];
    if (slm_cpu_check_env(why, sizeof why)) {
        slm_err_set(err, "cpu backend: %s", why);
        return NULL;
    }
    struct slm_backend *be = calloc(1, sizeof *be);
    struct cpu_impl *ci = calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        slm_err_set(err, "cpu backend: out of memory");
        return NULL;
    }
    be->ops = &cpu_ops;
    be->impl = ci;
    be->n_threads = n_threads;
    ci->pool = slm_pool_create(n_threads);
    if (!ci->pool) {
        slm_err_set(err, "cpu backend: cannot start %d threads: %s", n_threads, strerror(errno));
        cpu_destroy(be);
        return NULL;
    }
    return be;
}

void slm_backend_destroy(struct slm_backend **bep)
{
    struct slm_backend *be = *bep;
    if (!be) return;
    be->ops->destroy(be);
    *bep = NULL;
}
