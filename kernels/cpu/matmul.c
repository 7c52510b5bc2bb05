/* kernels/cpu/matmul.c - see matmul.h. */
#include "matmul.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dequant.h"

/* Rows per unit of work handed to a thread; a multiple of the tile height. */
#define CHUNK_ROWS 32
/* Tile shape of the generic path (the AVX2 tiles choose their own). */
#define TILE_ROWS 4

size_t slm_cpu_act_row_bytes(uint32_t wtype, int64_t k)
{
    uint32_t at = slm_cpu_vec_dot_type(wtype);
    return (size_t)(k / slm_qblock_elems(at)) * slm_qblock_bytes(at);
}

static int use_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        const char *force = getenv("SLM_CPU_KERNELS");
        __builtin_cpu_init();
        cached = !(force && strcmp(force, "generic") == 0) && __builtin_cpu_supports("avx2") &&
                 __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached;
}

const char *slm_cpu_kernels_name(void)
{
    return use_avx2() ? "avx2" : "generic";
}

static void quant_generic(uint32_t act_type, const float *x, void *dst, int64_t k)
{
    slm_cpu_quantize_row(act_type, x, dst, k);
}

void slm_cpu_quantize_acts(uint32_t wtype, const float *x, int n, int64_t k, void *dst)
{
    uint32_t at = slm_cpu_vec_dot_type(wtype);
    size_t rb = slm_cpu_act_row_bytes(wtype, k);
    slm_cpu_quant_fn fast = use_avx2() ? slm_cpu_quant_avx2(at) : NULL;
    for (int i = 0; i < n; i++) {
        if (fast) fast(x + (size_t)i * (size_t)k, (char *)dst + (size_t)i * rb, k);
        else quant_generic(at, x + (size_t)i * (size_t)k, (char *)dst + (size_t)i * rb, k);
    }
}

/* The portable tile: one reference dot product per element. */
static void tile_generic(uint32_t wtype, int64_t k, const void *w, size_t w_stride, int nr, const void *a,
                         size_t a_stride, int nc, float *y, int64_t ldy, int accumulate)
{
    for (int c = 0; c < nc; c++) {
        const void *ac = (const char *)a + (size_t)c * a_stride;
        for (int r = 0; r < nr; r++) {
            float v = slm_cpu_vec_dot_ref(wtype, k, (const char *)w + (size_t)r * w_stride, ac);
            float *out = &y[c * ldy + r];
            *out = accumulate ? *out + v : v;
        }
    }
}

struct matmul_ctx {
    int n_jobs;
    const struct slm_cpu_matmul_job *jobs;
    const void *acts[8];          /* quantized x for each job */
    size_t act_stride[8];
    int64_t chunk_start[9];       /* first chunk index of each job; [n_jobs] = total */
    int n;
    int accumulate;
    _Atomic int64_t next;         /* next chunk to take */
};

static void run_chunk(struct matmul_ctx *ctx, int64_t chunk)
{
    int j = 0;
    while (chunk >= ctx->chunk_start[j + 1]) j++;
    const struct slm_cpu_matmul_job *job = &ctx->jobs[j];
    int64_t r0 = (chunk - ctx->chunk_start[j]) * CHUNK_ROWS;
    int64_t r1 = r0 + CHUNK_ROWS < job->rows ? r0 + CHUNK_ROWS : job->rows;
    slm_cpu_tile_fn fast = use_avx2() ? slm_cpu_tile_avx2(job->type) : NULL;
    for (int64_t r = r0; r < r1; r += TILE_ROWS) {
        int nr = (int)(r1 - r < TILE_ROWS ? r1 - r : TILE_ROWS);
        const void *w = (const char *)job->w + (size_t)r * job->row_bytes;
        float *y = job->y + r;
        if (fast)
            fast(job->cols, w, job->row_bytes, nr, ctx->acts[j], ctx->act_stride[j], ctx->n, y, job->rows,
                 ctx->accumulate);
        else
            tile_generic(job->type, job->cols, w, job->row_bytes, nr, ctx->acts[j], ctx->act_stride[j], ctx->n, y,
                         job->rows, ctx->accumulate);
    }
}

static void matmul_worker(void *arg, int ith, int nth)
{
    struct matmul_ctx *ctx = arg;
    int64_t total = ctx->chunk_start[ctx->n_jobs];
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&ctx->next, 1, memory_order_relaxed);
        if (c >= total) break;
        run_chunk(ctx, c);
    }
}

size_t slm_cpu_matmul_scratch_bytes(int n_jobs, const struct slm_cpu_matmul_job *jobs, int n)
{
    size_t total = 0;
    for (int j = 0; j < n_jobs; j++) {
        int shared = 0;
        for (int i = 0; i < j; i++)
            shared |= slm_cpu_vec_dot_type(jobs[i].type) == slm_cpu_vec_dot_type(jobs[j].type);
        if (!shared) total += (size_t)n * slm_cpu_act_row_bytes(jobs[j].type, jobs[j].cols) + 64;
    }
    return total;
}

int slm_cpu_matmul(struct slm_pool *pool, int n_jobs, const struct slm_cpu_matmul_job *jobs, const float *x,
                   int n, int accumulate, void *scratch)
{
    if (n_jobs < 1 || n_jobs > 8 || n < 1) return -EINVAL;
    struct matmul_ctx ctx = {.n_jobs = n_jobs, .jobs = jobs, .n = n, .accumulate = accumulate};
    char *s = scratch;
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].cols != jobs[0].cols || jobs[j].cols % slm_qblock_elems(jobs[j].type)) return -EINVAL;
        uint32_t at = slm_cpu_vec_dot_type(jobs[j].type);
        ctx.act_stride[j] = slm_cpu_act_row_bytes(jobs[j].type, jobs[j].cols);
        ctx.acts[j] = NULL;
        for (int i = 0; i < j; i++)
            if (slm_cpu_vec_dot_type(jobs[i].type) == at) ctx.acts[j] = ctx.acts[i];
        if (!ctx.acts[j]) {
            slm_cpu_quantize_acts(jobs[j].type, x, n, jobs[j].cols, s);
            ctx.acts[j] = s;
            s += (size_t)n * ctx.act_stride[j] + 64;
        }
        ctx.chunk_start[j + 1] = ctx.chunk_start[j] + (jobs[j].rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    }
    atomic_init(&ctx.next, 0);
    slm_pool_run(pool, matmul_worker, &ctx);
    return 0;
}
