/* kernels/cpu/matmul.c - see matmul.h. */
#include "kernels/cpu/matmul.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/qunpack.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Rows per unit of work handed to a thread; a multiple of the tile height. */
#define CHUNK_ROWS 32
/* Tile shape of the generic path (the AVX2 tiles choose their own). */
#define TILE_ROWS 4

size_t slm_cpu_act_row_bytes(uint32_t wtype, int64_t k)
{
    uint32_t at = slm_cpu_vec_dot_type(wtype);
    return (size_t)(k / slm_qblock_elems(at)) * slm_qblock_bytes(at);
}

enum { LEVEL_GENERIC = 0, LEVEL_AVX2 = 1, LEVEL_AVX512 = 2 };

#if defined(__x86_64__)
/* F16C from CPUID leaf 1 (ECX bit 29): clang before 16 has no "f16c" for __builtin_cpu_supports. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

static const char *const level_names[] = {"generic", "avx2", "avx512vnni"};

/* SLM_CPU_KERNELS as a cap on the tier: LEVEL_AVX512 (none) when unset or empty, the tier it
 * names, -1 for any other value (slm_cpu_check_env refuses it; the readers ignore it). */
static int kernels_cap(void)
{
    const char *k = getenv("SLM_CPU_KERNELS");
    if (!k || !*k) return LEVEL_AVX512;
    for (int l = LEVEL_GENERIC; l <= LEVEL_AVX512; l++)
        if (!strcmp(k, level_names[l])) return l;
    return -1;
}

/* SLM_CPU_LANES: 0 when unset or empty, 8 or 16, -1 for any other value (as kernels_cap). */
static int lanes_forced(void)
{
    const char *l = getenv("SLM_CPU_LANES");
    if (!l || !*l) return 0;
    return !strcmp(l, "8") ? 8 : !strcmp(l, "16") ? 16 : -1;
}

/* The kernel tier: what the CPU has, capped by SLM_CPU_KERNELS. */
static int cpu_level(void)
{
    static int cached = -1;
    if (cached < 0) {
        const int cap = kernels_cap();
        int level = LEVEL_GENERIC;
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c()) {
            level = LEVEL_AVX2;
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
                level = LEVEL_AVX512;
        }
#endif
        if (cap >= 0 && level > cap) level = cap;
        cached = level;
    }
    return cached;
}

static int use_avx2(void)
{
    return cpu_level() >= LEVEL_AVX2;
}

int slm_cpu_have_avx2(void)
{
    return use_avx2();
}

int slm_cpu_lanes(void)
{
    static int cached = -1;
    if (cached < 0) {
        int lanes = 8;
#if defined(__x86_64__)
        __builtin_cpu_init();
        /* llama.cpp's GGML_NATIVE build on this CPU: its 512-bit f16 dot products need AVX-512F, its
         * softmax and SiLU AVX-512F and DQ; a CPU with F but not DQ (Knights Landing) is not followed. */
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && use_avx2()) lanes = 16;
#endif
        const int cap = kernels_cap(), forced = lanes_forced();
        if (cap >= 0 && cap < LEVEL_AVX512) lanes = 8;
        if (forced > 0) lanes = forced;
        cached = lanes;
    }
    return cached;
}

int slm_cpu_check_env(char *why, size_t len)
{
    if (kernels_cap() < 0) {
        snprintf(why, len, "SLM_CPU_KERNELS '%.40s': expected generic, avx2 or avx512vnni (the most the CPU kernels may use)",
                 getenv("SLM_CPU_KERNELS"));
        return -1;
    }
    if (lanes_forced() < 0) {
        snprintf(why, len, "SLM_CPU_LANES '%.40s': expected 8 or 16 (the lane layout of the llama.cpp build to follow)",
                 getenv("SLM_CPU_LANES"));
        return -1;
    }
    return 0;
}

const char *slm_cpu_kernels_name(void)
{
    return level_names[cpu_level()];
}

static slm_cpu_x8_fn x8_tile(uint32_t wtype)
{
    switch (cpu_level()) {
    case LEVEL_AVX512: return slm_cpu_x8_avx512(wtype);
    case LEVEL_AVX2: return slm_cpu_x8_avx2(wtype);
    default: return NULL;
    }
}

/* ---- the X8 layout (matmul.h) */

static size_t x8_block_bytes(uint32_t type)
{
    switch (type) {
    case SLM_TYPE_Q4_1: return 160;
    case SLM_TYPE_Q8_0: return 272;
    case SLM_TYPE_Q5_0: return 176;
    case SLM_TYPE_Q4_K: return 1248;
    case SLM_TYPE_Q6_K: return 1808;
    default: return 0;
    }
}

uint32_t slm_cpu_weight_layout(uint32_t type, int64_t rows, int64_t cols)
{
    if (slm_cpu_layout_bytes(SLM_CPU_LAYOUT_X8, type, rows, cols) && x8_tile(type)) return SLM_CPU_LAYOUT_X8;
    return SLM_CPU_LAYOUT_ROWS;
}

size_t slm_cpu_layout_bytes(uint32_t layout, uint32_t type, int64_t rows, int64_t cols)
{
    uint32_t qk = slm_qblock_elems(type);
    if (rows < 1 || cols < 1 || !qk || cols % qk) return 0;
    if (layout == SLM_CPU_LAYOUT_ROWS) return (size_t)rows * (size_t)(cols / qk) * slm_qblock_bytes(type);
    if (layout != SLM_CPU_LAYOUT_X8 || rows % 8 || !x8_block_bytes(type)) return 0;
    return (size_t)(rows / 8) * (size_t)(cols / qk) * x8_block_bytes(type);
}

/* Row r's Q4_K block into its X8 group block o (matmul.h). */
static void repack_q4_k(const struct slm_block_q4_K *blk, int r, uint8_t *o)
{
    memcpy(o + 2 * r, &blk->d, 2);
    memcpy(o + 16 + 2 * r, &blk->dmin, 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        slm_k_scale_min(j, blk->scales, &sc, &m);
        o[32 + 16 * j + 2 * r] = o[32 + 16 * j + 2 * r + 1] = (uint8_t)sc;
        o[160 + 16 * (j / 2) + 2 * r + j % 2] = (uint8_t)m;
    }
    for (int q = 0; q < 4; q++)
        for (int t = 0; t < 8; t++) memcpy(o + 224 + 32 * (8 * q + t) + 4 * r, blk->qs + 32 * q + 4 * t, 4);
}

/* Row r's Q6_K block into its X8 group block o (matmul.h). */
static void repack_q6_k(const struct slm_block_q6_K *blk, int r, uint8_t *o)
{
    memcpy(o + 2 * r, &blk->d, 2);
    for (int g = 0; g < 16; g++) o[16 + 16 * g + 2 * r] = o[16 + 16 * g + 2 * r + 1] = (uint8_t)blk->scales[g];
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 8; t++) {
            for (int p = 0; p < 2; p++)
                memcpy(o + 272 + 32 * (16 * h + 8 * p + t) + 4 * r, blk->ql + 64 * h + 32 * p + 4 * t, 4);
            memcpy(o + 1296 + 32 * (8 * h + t) + 4 * r, blk->qh + 32 * h + 4 * t, 4);
        }
}

int slm_cpu_repack(uint32_t layout, uint32_t type, int64_t rows, int64_t cols, const void *src, size_t row_bytes,
                   void *dst)
{
    if (!slm_cpu_layout_bytes(layout, type, rows, cols)) return -EINVAL;
    if (layout == SLM_CPU_LAYOUT_ROWS) {
        memcpy(dst, src, (size_t)rows * row_bytes);
        return 0;
    }
    int64_t nb = cols / slm_qblock_elems(type);
    size_t gb = x8_block_bytes(type);
    for (int64_t g = 0; g < rows / 8; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + ((size_t)g * (size_t)nb + (size_t)b) * gb;
            for (int r = 0; r < 8; r++) {
                const uint8_t *row = (const uint8_t *)src + (size_t)(8 * g + r) * row_bytes;
                if (type == SLM_TYPE_Q4_1) {
                    const struct slm_block_q4_1 *blk = (const struct slm_block_q4_1 *)row + b;
                    memcpy(o + 2 * r, &blk->d, 2);
                    memcpy(o + 16 + 2 * r, &blk->m, 2);
                    for (int t = 0; t < 4; t++) memcpy(o + 32 + 32 * t + 4 * r, blk->qs + 4 * t, 4);
                } else if (type == SLM_TYPE_Q4_K) {
                    repack_q4_k((const struct slm_block_q4_K *)row + b, r, o);
                } else if (type == SLM_TYPE_Q6_K) {
                    repack_q6_k((const struct slm_block_q6_K *)row + b, r, o);
                } else if (type == SLM_TYPE_Q5_0) {
                    const struct slm_block_q5_0 *blk = (const struct slm_block_q5_0 *)row + b;
                    uint32_t qh, spread = 0;
                    memcpy(&qh, blk->qh, 4);
                    for (int e = 0; e < 32; e++)   /* element e = 4t + i: bit t of byte i */
                        spread |= ((qh >> e) & 1u) << (8 * (e % 4) + e / 4);
                    memcpy(o + 2 * r, &blk->d, 2);
                    memcpy(o + 16 + 4 * r, &spread, 4);
                    for (int t = 0; t < 4; t++) memcpy(o + 48 + 32 * t + 4 * r, blk->qs + 4 * t, 4);
                } else {
                    const struct slm_block_q8_0 *blk = (const struct slm_block_q8_0 *)row + b;
                    memcpy(o + 2 * r, &blk->d, 2);
                    for (int t = 0; t < 8; t++)
                        memcpy(o + 16 + 32 * t + 4 * r, blk->qs + 4 * t, 4);
                }
            }
        }
    }
    return 0;
}

void slm_cpu_act_scales(uint32_t at, const void *acts, size_t stride, int n, int64_t nb,
                       struct slm_cpu_act_scale *sc)
{
    for (int i = 0; i < n; i++) {
        const char *row = (const char *)acts + (size_t)i * stride;
        for (int64_t b = 0; b < nb; b++, sc++) {
            if (at == SLM_TYPE_Q8_1) {
                const struct slm_block_q8_1 *blk = (const struct slm_block_q8_1 *)row + b;
                sc->d = slm_half_to_f32(blk->d);
                sc->s = slm_half_to_f32(blk->s);
                memset(sc->m16, 0, sizeof sc->m16);
            } else {
                const struct slm_block_q8_0 *blk = (const struct slm_block_q8_0 *)row + b;
                sc->d = slm_half_to_f32(blk->d);
                sc->s = 0.0f;
                for (int k = 0; k < 8; k++)
                    sc->m16[k] = -16 * (blk->qs[4 * k] + blk->qs[4 * k + 1] + blk->qs[4 * k + 2] + blk->qs[4 * k + 3]);
            }
        }
    }
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
    const float *x;               /* (n, cols) the activations */
    int quantize[8];              /* job j quantizes x into acts[j] (the first job of its type) */
    int own_scales[8];            /* job j fills scales[j] (the first X8 job of its type) */
    int n_jobs;
    const struct slm_cpu_matmul_job *jobs;
    const void *acts[8];          /* quantized x for each job */
    size_t act_stride[8];
    const struct slm_cpu_act_scale *scales[8];   /* (n, blocks) for X8 jobs */
    int64_t chunk_start[9];       /* first chunk index of each job; [n_jobs] = total */
    int n;
    int accumulate;
};

static void run_chunk(const struct matmul_ctx *ctx, int64_t chunk)
{
    int j = 0;
    while (chunk >= ctx->chunk_start[j + 1]) j++;
    const struct slm_cpu_matmul_job *job = &ctx->jobs[j];
    int64_t r0 = (chunk - ctx->chunk_start[j]) * CHUNK_ROWS;
    int64_t r1 = r0 + CHUNK_ROWS < job->rows ? r0 + CHUNK_ROWS : job->rows;
    if (job->layout == SLM_CPU_LAYOUT_X8) {
        slm_cpu_x8_fn x8 = x8_tile(job->type);
        int64_t nb = job->cols / slm_qblock_elems(job->type);
        size_t group_bytes = (size_t)nb * x8_block_bytes(job->type);
        x8(nb, (const char *)job->w + (size_t)(r0 / 8) * group_bytes, (int)((r1 - r0) / 8), ctx->acts[j],
           ctx->act_stride[j], ctx->scales[j], ctx->n, job->y + r0, job->rows, ctx->accumulate);
        return;
    }
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

static void matmul_chunk(void *arg, int64_t chunk, int slot)
{
    run_chunk(arg, chunk);
}

/* Quantizes token row `chunk` for every activation type the jobs need, and its X8 scales. */
static void quant_chunk(void *arg, int64_t chunk, int slot)
{
    const struct matmul_ctx *ctx = arg;
    int i = (int)chunk;
    for (int j = 0; j < ctx->n_jobs; j++) {
        const struct slm_cpu_matmul_job *job = &ctx->jobs[j];
        const char *row = (const char *)ctx->acts[j] + (size_t)i * ctx->act_stride[j];
        if (ctx->quantize[j])
            slm_cpu_quantize_acts(job->type, ctx->x + (size_t)i * (size_t)job->cols, 1, job->cols, (void *)row);
    }
    for (int j = 0; j < ctx->n_jobs; j++) {   /* after every quantization of this row */
        const struct slm_cpu_matmul_job *job = &ctx->jobs[j];
        const char *row = (const char *)ctx->acts[j] + (size_t)i * ctx->act_stride[j];
        if (ctx->own_scales[j]) {
            int64_t nb = job->cols / 32;
            slm_cpu_act_scales(slm_cpu_vec_dot_type(job->type), row, ctx->act_stride[j], 1, nb,
                       (struct slm_cpu_act_scale *)ctx->scales[j] + (size_t)i * (size_t)nb);
        }
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
        if (jobs[j].layout == SLM_CPU_LAYOUT_X8 && slm_qblock_elems(jobs[j].type) == 32)
            total += (size_t)n * (size_t)(jobs[j].cols / 32) * sizeof(struct slm_cpu_act_scale) + 64;
    }
    return total;
}

int slm_cpu_matmul(struct slm_pool *pool, int n_jobs, const struct slm_cpu_matmul_job *jobs, const float *x,
                   int n, int accumulate, void *scratch)
{
    if (n_jobs < 1 || n_jobs > 8 || n < 1) return -EINVAL;
    struct matmul_ctx ctx = {.x = x, .n_jobs = n_jobs, .jobs = jobs, .n = n, .accumulate = accumulate};
    char *s = scratch;
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].cols != jobs[0].cols || jobs[j].cols % slm_qblock_elems(jobs[j].type)) return -EINVAL;
        if (jobs[j].layout == SLM_CPU_LAYOUT_X8 &&
            (!slm_cpu_layout_bytes(SLM_CPU_LAYOUT_X8, jobs[j].type, jobs[j].rows, jobs[j].cols) ||
             !x8_tile(jobs[j].type)))
            return -EINVAL;
        uint32_t at = slm_cpu_vec_dot_type(jobs[j].type);
        ctx.act_stride[j] = slm_cpu_act_row_bytes(jobs[j].type, jobs[j].cols);
        ctx.acts[j] = NULL;
        for (int i = 0; i < j; i++)
            if (slm_cpu_vec_dot_type(jobs[i].type) == at) ctx.acts[j] = ctx.acts[i];
        ctx.quantize[j] = ctx.own_scales[j] = 0;
        if (!ctx.acts[j]) {
            ctx.quantize[j] = 1;   /* by quant_chunk, below */
            ctx.acts[j] = s;
            s += (size_t)n * ctx.act_stride[j] + 64;
        }
        ctx.scales[j] = NULL;   /* the K-quants' tiles read the Q8_K blocks' float scales */
        if (jobs[j].layout == SLM_CPU_LAYOUT_X8 && slm_qblock_elems(jobs[j].type) == 32) {
            for (int i = 0; i < j; i++)
                if (ctx.scales[i] && slm_cpu_vec_dot_type(jobs[i].type) == at) ctx.scales[j] = ctx.scales[i];
            if (!ctx.scales[j]) {
                s += (64 - (uintptr_t)s % 64) % 64;   /* the + 64 of the scratch size */
                struct slm_cpu_act_scale *sc = (struct slm_cpu_act_scale *)s;
                ctx.scales[j] = sc;   /* filled after the quantization, by quant_chunk */
                ctx.own_scales[j] = 1;
                s += (size_t)n * (size_t)(jobs[j].cols / 32) * sizeof *sc;
            }
        }
        ctx.chunk_start[j + 1] = ctx.chunk_start[j] + (jobs[j].rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
    }
    /* Each token row is quantized on its own, so the rows can be spread over the threads;
     * a single row is not worth waking them. */
    if (n > 1) slm_pool_for(pool, n, quant_chunk, &ctx);
    else quant_chunk(&ctx, 0, 0);
    slm_pool_for(pool, ctx.chunk_start[n_jobs], matmul_chunk, &ctx);
    return 0;
}
