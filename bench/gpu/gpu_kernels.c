/*
 * bench/gpu/gpu_kernels.c - each CUDA kernel of kernels/cuda timed against its roofline.
 *
 * First the machine's own ceilings are measured: the memory bandwidth (a device-to-device
 * copy: it reads and writes every byte) and the tensor-core rate (cublasGemmEx, f16 inputs,
 * fp32 accumulation, 8192^3). Then every launcher the backend calls runs at the shapes of
 * three models (SmolLM2-135M, Qwen2.5-1.5B, a 7B: Qwen2.5-7B's shapes) and the batch sizes of
 * decode and prefill, each timed with events over --reps launches after one warm-up. A
 * kernel's roofline is the time its compulsory traffic takes at the measured bandwidth, or its
 * flops at the measured tensor rate, whichever is longer; "roof %" is that time over the
 * measured one (100% = at the roofline). Compulsory traffic: every weight byte once, every
 * activation read and written once, the whole KV context of each query once.
 *
 * The GEMV rows of quantized weights time what the backend runs: x quantized
 * (slm_cuda_quantize_q8) and the integer GEMV (slm_cuda_matvec_q8) over the weight in the device
 * layout (kernels/cuda/kernels.h), whose bytes, padding included, are the ones counted; F32 /
 * F16 / BF16 weights take the fp32 GEMV (slm_cuda_matvec).
 *
 * A quantized row is a whole number of blocks, so a type is timed at the FFN's up projection
 * (ffn, dim) where dim is one, else at its down projection (dim, ffn), else not at all: a
 * K-quant's 256 columns do not divide SmolLM2's 576, and GGUF files of it keep those matrices
 * in other types. A row that cannot exist prints "skipped" and the reason (a JSON record
 * {"skipped": ...}); it is no failure.
 *
 * Weights are filled with the byte 0x11 (every f16 scale a small normal number), activations
 * with small values; the numbers do not matter to the time, only the shapes do.
 *
 * --smoke: two tiny models (the second with SmolLM2's layer shapes) and one repetition, so that
 * the emulated build (gpu_kernels_emu, tests/test_gpu_bench.sh) runs every path, skipped rows
 * included, on a machine without a GPU; its times mean nothing.
 * usage: gpu_kernels [--smoke] [--reps N] [--model small|1.5b|7b|all] [--json]
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/kernels.h"
#include "kernels/quant.h"

struct model_shape {
    const char *name;
    int dim, ffn, n_head, n_head_kv, head_dim, vocab;
};

static const struct model_shape models[] = {
    {"smollm2-135m", 576, 1536, 9, 3, 64, 49152},
    {"qwen2.5-1.5b", 1536, 8960, 12, 2, 128, 151936},
    {"7b", 3584, 18944, 28, 4, 128, 152064},
};
static const struct model_shape tiny = {"tiny", 256, 512, 4, 2, 64, 1024};
/* SmolLM2's layer with a small vocabulary: a row of 576 is no whole number of K-quant blocks */
static const struct model_shape tiny_576 = {"tiny-576", 576, 1536, 9, 3, 64, 1024};

struct bench {
    int reps, json, smoke;
    double bw;             /* measured bytes/s */
    double tensor;         /* measured flop/s */
    cudaStream_t stream;
    cudaEvent_t t0, t1;
    cublasHandle_t cublas;
    int failed;
};

#define CK(call)                                                                                       \
    do {                                                                                               \
        cudaError_t e_ = (call);                                                                       \
        if (e_ != cudaSuccess) {                                                                       \
            fprintf(stderr, "gpu_kernels: %s: %s\n", #call, cudaGetErrorString(e_));                   \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

static void *dev_fill(size_t bytes, int byte)
{
    void *p = NULL;
    CK(cudaMalloc(&p, bytes ? bytes : 16));
    CK(cudaMemset(p, byte, bytes ? bytes : 16));
    return p;
}

/* Device floats, all `v`. */
static float *dev_floats(size_t n, float v)
{
    float *h = malloc(n * sizeof *h), *d = dev_fill(n * sizeof *d, 0);
    if (!h) exit(1);
    for (size_t i = 0; i < n; i++) h[i] = v * (float)((i % 7) + 1) / 7.0f;
    CK(cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

/* One launch of the kernel under test; 0 or the launcher's error. */
typedef int (*launch_fn)(struct bench *b, void *ctx);

/* Seconds per launch (events around reps launches, after one warm-up); < 0 on error. */
static double time_launch(struct bench *b, launch_fn fn, void *ctx)
{
    if (fn(b, ctx)) return -1;
    CK(cudaStreamSynchronize(b->stream));
    CK(cudaEventRecord(b->t0, b->stream));
    for (int i = 0; i < b->reps; i++)
        if (fn(b, ctx)) return -1;
    CK(cudaEventRecord(b->t1, b->stream));
    CK(cudaEventSynchronize(b->t1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, b->t0, b->t1));
    return (double)ms * 1e-3 / b->reps;
}

/* Prints one row: the kernel's time against max(bytes / bw, flops / tensor). */
static void row(struct bench *b, const char *model, const char *kernel, const char *what, int n, double bytes,
                double flops, double secs)
{
    if (secs < 0) {
        printf("%-13s %-31s %-14s %5d  launch FAILED\n", model, kernel, what, n);
        b->failed = 1;
        return;
    }
    double roof = bytes / b->bw, t_flops = flops / b->tensor;
    const char *bound = "memory";
    if (t_flops > roof) roof = t_flops, bound = "tensor";
    if (b->json)
        printf("{\"model\": \"%s\", \"kernel\": \"%s\", \"what\": \"%s\", \"n\": %d, \"bytes\": %.0f, \"flops\": %.0f, "
               "\"us\": %.3f, \"roofline_us\": %.3f, \"bound\": \"%s\", \"roof_pct\": %.1f}\n",
               model, kernel, what, n, bytes, flops, secs * 1e6, roof * 1e6, bound, 100.0 * roof / secs);
    else
        printf("%-13s %-31s %-14s %5d %10.1f %10.2f %10.2f %8.1f  %s\n", model, kernel, what, n, bytes / 1e3,
               secs * 1e6, roof * 1e6, 100.0 * roof / secs, bound);
}

/* Prints why a row was not timed (a shape the type cannot have). */
static void skipped_row(struct bench *b, const char *model, const char *kernel, const char *what, int n,
                        const char *reason)
{
    if (b->json)
        printf("{\"skipped\": true, \"model\": \"%s\", \"kernel\": \"%s\", \"what\": \"%s\", \"n\": %d, "
               "\"reason\": \"%s\"}\n",
               model, kernel, what, n, reason);
    else
        printf("%-13s %-31s %-14s %5d  skipped: %s\n", model, kernel, what, n, reason);
}

/* ---- the machine's ceilings */

struct copy_ctx { void *dst, *src; size_t bytes; };

static int run_copy(struct bench *b, void *ctx)
{
    struct copy_ctx *c = ctx;
    return cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, b->stream) != cudaSuccess;
}

struct gemm_ctx { int m; void *a, *bm; float *c; };

static int run_tensor_gemm(struct bench *b, void *ctx)
{
    struct gemm_ctx *g = ctx;
    const float one = 1.0f, zero = 0.0f;
    return cublasGemmEx(b->cublas, CUBLAS_OP_T, CUBLAS_OP_N, g->m, g->m, g->m, &one, g->a, CUDA_R_16F, g->m, g->bm,
                        CUDA_R_16F, g->m, &zero, g->c, CUDA_R_32F, g->m, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS;
}

static void measure_ceilings(struct bench *b)
{
    struct copy_ctx c = {.bytes = b->smoke ? (1u << 20) : (512u << 20)};
    c.src = dev_fill(c.bytes, 1);
    c.dst = dev_fill(c.bytes, 0);
    b->bw = 1e12, b->tensor = 1e15;   /* placeholders while the ceilings themselves are timed */
    double t = time_launch(b, run_copy, &c);
    b->bw = t > 0 ? 2.0 * (double)c.bytes / t : 1e9;
    cudaFree(c.src);
    cudaFree(c.dst);

    struct gemm_ctx g = {.m = b->smoke ? 64 : 8192};
    size_t mm = (size_t)g.m * (size_t)g.m;
    g.a = dev_fill(mm * 2, 0x11);
    g.bm = dev_fill(mm * 2, 0x11);
    g.c = dev_fill(mm * 4, 0);
    t = time_launch(b, run_tensor_gemm, &g);
    b->tensor = t > 0 ? 2.0 * (double)mm * (double)g.m / t : 1e12;
    cudaFree(g.a);
    cudaFree(g.bm);
    cudaFree(g.c);
    if (b->json)
        printf("{\"ceilings\": true, \"bandwidth_gbs\": %.1f, \"tensor_tflops\": %.1f}\n", b->bw / 1e9,
               b->tensor / 1e12);
    else
        printf("measured: memory bandwidth %.1f GB/s (device-to-device copy), tensor rate %.1f TFLOP/s "
               "(cublasGemmEx f16 -> fp32, %d^3)\n\n%-13s %-31s %-14s %5s %10s %10s %10s %8s  %s\n",
               b->bw / 1e9, b->tensor / 1e12, g.m, "model", "kernel", "shape/type", "n", "KB moved", "us",
               "roof us", "roof %", "bound");
}

/* ---- matmuls */

struct mm_ctx {
    uint32_t type;
    int64_t rows, cols;
    int n;
    void *w;
    float *x, *y;
    void *scratch;
    size_t scratch_bytes;
};

static int run_matvec(struct bench *b, void *ctx)
{
    struct mm_ctx *m = ctx;
    return slm_cuda_matvec(m->type, m->w, m->rows, m->cols, m->x, m->n, m->y, 0, b->stream);
}

/* The backend's matmul on a quantized weight: up to 8 tokens the fused GEMV (x quantized inside
 * each block), else x quantized, then the integer GEMV over the weight in the device layout
 * (scratch holds the quantized x). */
static int run_matvec_q8(struct bench *b, void *ctx)
{
    struct mm_ctx *m = ctx;
    if (!m->scratch) {
        const void *w = m->w;
        float *y = m->y;
        return slm_cuda_matvec_q8_fused(m->type, 1, &w, &m->rows, m->cols, m->x, m->n, &y, 0, b->stream);
    }
    uint32_t at = slm_cuda_q8_act_type(m->type);
    int rc = slm_cuda_quantize_q8(at, m->x, m->n, m->cols, m->scratch, b->stream);
    return rc ? rc : slm_cuda_matvec_q8(m->type, m->w, m->rows, m->cols, m->scratch, m->n, m->y, 0, b->stream);
}

/* Device memory holding a (rows, cols) weight of every byte 0x11, in the device layout; NULL
 * (nothing allocated) when the type has no device layout for rows of cols. */
static void *dev_weight_device_layout(uint32_t type, int64_t rows, int64_t cols, size_t *bytes)
{
    size_t gguf = (size_t)rows * slm_cuda_row_bytes(type, cols);
    *bytes = (size_t)rows * slm_cuda_device_row_bytes(type, cols);
    if (!gguf || !*bytes) return NULL;
    unsigned char *h = malloc(gguf), *d = malloc(*bytes);
    void *p = NULL;
    if (!h || !d) exit(1);
    memset(h, 0x11, gguf);
    if (slm_cuda_to_device_layout(type, h, rows, cols, d) == 0) {
        CK(cudaMalloc(&p, *bytes));
        CK(cudaMemcpy(p, d, *bytes, cudaMemcpyHostToDevice));
    }
    free(h);
    free(d);
    return p;
}

static int run_gemm(struct bench *b, void *ctx)
{
    struct mm_ctx *m = ctx;
    return slm_cuda_matmul_gemm(b->cublas, m->type, m->w, m->rows, m->cols, m->x, m->n, m->y, 0, m->scratch,
                                m->scratch_bytes, b->stream);
}

static void bench_matmul(struct bench *b, const struct model_shape *ms, uint32_t type, int64_t rows, int64_t cols,
                         const char *which, int n, int gemm)
{
    struct mm_ctx m = {.type = type, .rows = rows, .cols = cols, .n = n};
    /* a quantized weight's GEMV is the backend's: the integer one on the device layout */
    const int q8 = !gemm && slm_cuda_q8_act_type(type) != UINT32_MAX;
    const char *kernel = gemm ? "gemm (cuBLAS)"
                         : q8 ? (slm_cuda_matvec_q8_fused_fits(type, cols, n) ? "matvec (int8 fused)" : "matvec (int8)")
                              : "matvec";
    char what[64], why[96];
    snprintf(what, sizeof what, "%s %s", which, slm_qtype_name(type));
    size_t wbytes = (size_t)rows * slm_cuda_row_bytes(type, cols), abytes = 0;
    if (wbytes && q8) m.w = dev_weight_device_layout(type, rows, cols, &wbytes);
    else if (wbytes) m.w = dev_fill(wbytes, 0x11);
    if (!m.w) {
        snprintf(why, sizeof why, "%s rows of %lld columns cannot exist (%u-element blocks)", slm_qtype_name(type),
                 (long long)cols, slm_qblock_elems(type));
        skipped_row(b, ms->name, kernel, what, n, why);
        return;
    }
    m.x = dev_floats((size_t)n * (size_t)cols, 0.5f);
    m.y = dev_fill((size_t)n * (size_t)rows * 4, 0);
    if (gemm) {
        m.scratch_bytes = slm_cuda_matmul_gemm_scratch(rows, cols, n);
        m.scratch = dev_fill(m.scratch_bytes, 0);
    } else if (q8 && !slm_cuda_matvec_q8_fused_fits(type, cols, n)) {
        abytes = (size_t)n * slm_cuda_q8_row_bytes(slm_cuda_q8_act_type(type), cols);
        m.scratch_bytes = abytes;
        m.scratch = dev_fill(abytes, 0);
    }
    double secs = time_launch(b, gemm ? run_gemm : q8 ? run_matvec_q8 : run_matvec, &m);
    /* the weight's bytes as the kernel reads them (device layout: padding included), x read,
     * y written; the integer path also writes and reads the quantized x once */
    double bytes = (double)wbytes + 4.0 * n * (double)(rows + cols) + 2.0 * (double)abytes;
    row(b, ms->name, kernel, what, n, bytes, 2.0 * n * (double)rows * (double)cols, secs);
    cudaFree(m.w);
    cudaFree(m.x);
    cudaFree(m.y);
    if (m.scratch) cudaFree(m.scratch);
}

/* The FFN's up projection (ffn, dim) where a row of dim is a whole number of the type's blocks,
 * else its down projection (dim, ffn) (SmolLM2's K-quants), else a skipped row. */
static void bench_ffn(struct bench *b, const struct model_shape *ms, uint32_t type, int n, int gemm)
{
    if (slm_cuda_row_bytes(type, ms->dim) != 0)
        bench_matmul(b, ms, type, ms->ffn, ms->dim, "ffn up", n, gemm);
    else
        bench_matmul(b, ms, type, ms->dim, ms->ffn, "ffn down", n, gemm);
}

/* ---- element-wise ops and normalisation */

struct ew_ctx { int kind, n, dim; float *x, *y, *out, *gamma; };

static int run_ew(struct bench *b, void *ctx)
{
    struct ew_ctx *e = ctx;
    size_t len = (size_t)e->n * (size_t)e->dim;
    switch (e->kind) {
    case 0: return slm_cuda_rmsnorm(e->x, e->gamma, e->n, e->dim, 1e-5f, e->out, b->stream);
    case 1: return slm_cuda_swiglu(e->x, e->y, len, e->out, b->stream);
    default: return slm_cuda_add(e->x, e->y, len, b->stream);
    }
}

static void bench_ew(struct bench *b, const struct model_shape *ms, int kind, int n, int dim)
{
    static const char *names[] = {"rmsnorm", "swiglu", "add"};
    size_t len = (size_t)n * (size_t)dim;
    struct ew_ctx e = {.kind = kind, .n = n, .dim = dim};
    e.x = dev_floats(len, 0.5f);
    e.y = dev_floats(len, 0.25f);
    e.out = dev_fill(len * 4, 0);
    e.gamma = dev_floats((size_t)dim, 1.0f);
    char what[32];
    snprintf(what, sizeof what, "%d", dim);
    /* rmsnorm: x read, out written, gamma; swiglu: two read, one written; add: two read, one written */
    double bytes = kind == 0 ? 8.0 * (double)len + 4.0 * dim : 12.0 * (double)len;
    row(b, ms->name, names[kind], what, n, bytes, 0, time_launch(b, run_ew, &e));
    cudaFree(e.x);
    cudaFree(e.y);
    cudaFree(e.out);
    cudaFree(e.gamma);
}

/* ---- attention: each of n queries its own sequence of ctx positions (decode, by the exact
 * kernel or the split one), or one sequence's chunk of n positions after p0 cached ones
 * (prefill) */

enum att_kind { ATT_DECODE, ATT_PREFILL, ATT_SPLIT, ATT_SPLIT_PREFILL };

struct att_ctx {
    struct slm_cuda_attn_shape shape;
    struct slm_cuda_attn_tokens t;
    struct slm_cuda_kv_layer kv;
    float *q, *out;
    void *ws;
    size_t ws_bytes;
    int max_ctx, p0, prefill, split;
};

static int run_attention(struct bench *b, void *ctx)
{
    struct att_ctx *a = ctx;
    if (a->split)
        return slm_cuda_attention_split(&a->shape, &a->t, &a->kv, a->q, a->max_ctx, 0, INT_MAX, a->ws, a->ws_bytes,
                                        a->out, b->stream);
    if (a->prefill)
        return slm_cuda_attention_prefill(&a->shape, &a->t, &a->kv, a->q, a->p0, a->ws, a->ws_bytes, a->out,
                                          b->stream);
    return slm_cuda_attention_decode(&a->shape, &a->t, &a->kv, a->q, a->max_ctx, a->ws, a->ws_bytes, a->out,
                                     b->stream);
}

static void bench_attention(struct bench *b, const struct model_shape *ms, int n, int ctx, enum att_kind kind)
{
    const int bs = 16, prefill = kind == ATT_PREFILL || kind == ATT_SPLIT_PREFILL;
    struct att_ctx a = {.prefill = prefill, .split = kind == ATT_SPLIT || kind == ATT_SPLIT_PREFILL};
    a.shape = (struct slm_cuda_attn_shape){.n_head = ms->n_head, .n_head_kv = ms->n_head_kv,
                                           .head_dim = ms->head_dim, .rope_dim = ms->head_dim,
                                           .scale = 0.125f};
    int seqs = prefill ? 1 : n, blocks_per = (ctx + bs - 1) / bs;
    size_t kvd = (size_t)ms->n_head_kv * (size_t)ms->head_dim, qd = (size_t)ms->n_head * (size_t)ms->head_dim;
    size_t n_blocks = (size_t)seqs * (size_t)blocks_per;
    int32_t *pos = malloc((size_t)n * 4), *row_of = malloc((size_t)n * 4), *tab = malloc(n_blocks * 4);
    if (!pos || !row_of || !tab) exit(1);
    for (size_t i = 0; i < n_blocks; i++) tab[i] = (int32_t)i;
    for (int i = 0; i < n; i++) {
        pos[i] = prefill ? ctx - n + i : ctx - 1;
        row_of[i] = prefill ? 0 : i;
    }
    int32_t *d_pos = dev_fill((size_t)n * 4, 0), *d_row = dev_fill((size_t)n * 4, 0), *d_tab = dev_fill(n_blocks * 4, 0);
    CK(cudaMemcpy(d_pos, pos, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_row, row_of, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_tab, tab, n_blocks * 4, cudaMemcpyHostToDevice));
    a.t = (struct slm_cuda_attn_tokens){.n_tokens = n, .pos = d_pos, .seq_row = d_row, .block_tables = d_tab,
                                        .n_seq_rows = seqs, .max_blocks = blocks_per};
    int32_t *d_tiles = NULL;
    if (kind == ATT_SPLIT_PREFILL) {   /* the chunk's tiles as the backend cuts them */
        int cap = SLM_CUDA_ATTN_TILE_ROWS / (ms->n_head / ms->n_head_kv), n_tiles = (n + cap - 1) / cap;
        int32_t *tiles = malloc((size_t)(n_tiles + 1) * 4);
        if (!tiles) exit(1);
        for (int i = 0; i < n_tiles; i++) tiles[i] = i * cap;
        tiles[n_tiles] = n;
        d_tiles = dev_fill((size_t)(n_tiles + 1) * 4, 0);
        CK(cudaMemcpy(d_tiles, tiles, (size_t)(n_tiles + 1) * 4, cudaMemcpyHostToDevice));
        free(tiles);
        a.t.tiles = d_tiles, a.t.n_tiles = n_tiles;
    }
    size_t kv_bytes = n_blocks * (size_t)bs * kvd * 2;
    a.kv = (struct slm_cuda_kv_layer){.k = dev_fill(kv_bytes, 0x11), .v = dev_fill(kv_bytes, 0x11),
                                      .n_blocks = (int)n_blocks, .block_size = bs};
    a.q = dev_floats((size_t)n * qd, 0.5f);
    a.out = dev_fill((size_t)n * qd * 4, 0);
    a.max_ctx = ctx;
    a.p0 = ctx - n;
    a.ws_bytes = a.split ? slm_cuda_attention_split_workspace(&a.shape, n, ctx)
                         : slm_cuda_attention_workspace(&a.shape, n, ctx);
    a.ws = dev_fill(a.ws_bytes, 0);
    double secs = time_launch(b, run_attention, &a);
    /* K and V of every position each query sees, once; q in, out back */
    double positions = prefill ? (double)ctx : (double)n * ctx;
    double bytes = positions * (double)kvd * 4.0 + 8.0 * (double)n * (double)qd;
    /* q.k and p.v: 4 flops per (query head, position, dim); causal: a chunk's queries see on average p0 + n/2 */
    double seen = prefill ? (double)n * (a.p0 + (n + 1) / 2.0) : (double)n * ctx;
    double flops = 4.0 * seen * (double)ms->n_head * (double)ms->head_dim;
    char what[32];
    snprintf(what, sizeof what, "ctx %d", ctx);
    row(b, ms->name,
        kind == ATT_SPLIT_PREFILL ? "attention split prefill (tiled)" : prefill ? "attention prefill"
        : a.split                 ? "attention split"
                                  : "attention decode",
        what, n, bytes, flops, secs);
    free(pos), free(row_of), free(tab);
    cudaFree(d_pos), cudaFree(d_row), cudaFree(d_tab), cudaFree(d_tiles);
    cudaFree(a.kv.k), cudaFree(a.kv.v), cudaFree(a.q), cudaFree(a.out), cudaFree(a.ws);
}

/* ---- sampling */

struct samp_ctx {
    int rows, vocab;
    float *logits;
    struct slm_cuda_sampling *params;
    uint64_t *rng;
    int32_t *tokens, *hist;
    void *ws;
    size_t ws_bytes;
};

static int run_sample(struct bench *b, void *ctx)
{
    struct samp_ctx *s = ctx;
    return slm_cuda_sample(s->logits, s->rows, s->vocab, s->params, s->rng, s->hist, 1, s->ws, s->ws_bytes, s->tokens,
                           NULL, NULL, b->stream);
}

static void bench_sample(struct bench *b, const struct model_shape *ms, int rows, int top_p)
{
    struct samp_ctx s = {.rows = rows, .vocab = ms->vocab};
    struct slm_cuda_sampling *p = calloc((size_t)rows, sizeof *p);
    if (!p) exit(1);
    for (int i = 0; i < rows; i++)
        p[i] = (struct slm_cuda_sampling){.temperature = top_p ? 0.8f : 0.0f, .top_p = top_p ? 0.9f : 1.0f,
                                          .repeat_penalty = 1.0f};
    s.logits = dev_floats((size_t)rows * (size_t)ms->vocab, 4.0f);
    s.params = dev_fill((size_t)rows * sizeof *p, 0);
    CK(cudaMemcpy(s.params, p, (size_t)rows * sizeof *p, cudaMemcpyHostToDevice));
    s.rng = dev_fill((size_t)rows * 32, 0x5a);
    s.tokens = dev_fill((size_t)rows * 4, 0);
    s.hist = dev_fill(4, 0);
    s.ws_bytes = slm_cuda_sample_workspace(rows, ms->vocab);
    s.ws = dev_fill(s.ws_bytes, 0);
    row(b, ms->name, "sample", top_p ? "top-p 0.9" : "greedy", rows, 4.0 * rows * (double)ms->vocab, 0,
        time_launch(b, run_sample, &s));
    free(p);
    cudaFree(s.logits), cudaFree(s.params), cudaFree(s.rng), cudaFree(s.tokens), cudaFree(s.hist), cudaFree(s.ws);
}

static void bench_model(struct bench *b, const struct model_shape *ms)
{
    static const uint32_t types[] = {SLM_TYPE_Q4_1, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_0, SLM_TYPE_F16};
    static const int decode_n[] = {1, 8, 32};
    int prefill_n = b->smoke ? 16 : 512, ctx = b->smoke ? 64 : 1024;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t i = 0; i < sizeof decode_n / sizeof decode_n[0]; i++)
            bench_ffn(b, ms, types[t], decode_n[i], 0);
    bench_matmul(b, ms, SLM_TYPE_Q8_0, ms->vocab, ms->dim, "logits", 1, 0);
    bench_ffn(b, ms, SLM_TYPE_Q4_K, prefill_n, 0);
    bench_ffn(b, ms, SLM_TYPE_Q4_K, prefill_n, 1);
    for (int kind = 0; kind < 3; kind++) {
        bench_ew(b, ms, kind, 1, kind == 1 ? ms->ffn : ms->dim);
        bench_ew(b, ms, kind, prefill_n, kind == 1 ? ms->ffn : ms->dim);
    }
    bench_attention(b, ms, 1, ctx, ATT_DECODE);
    bench_attention(b, ms, 32, ctx, ATT_DECODE);
    bench_attention(b, ms, 1, ctx, ATT_SPLIT);
    bench_attention(b, ms, 32, ctx, ATT_SPLIT);
    bench_attention(b, ms, prefill_n, prefill_n, ATT_PREFILL);
    bench_attention(b, ms, prefill_n, ctx + prefill_n, ATT_SPLIT_PREFILL);   /* a chunk past T */
    bench_sample(b, ms, 1, 0);
    bench_sample(b, ms, 32, 1);
}

int main(int argc, char **argv)
{
    struct bench b = {.reps = 50};
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) b.smoke = 1, b.reps = 1;
        else if (!strcmp(argv[i], "--json")) b.json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) b.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) which = argv[++i];
        else {
            fprintf(stderr, "usage: gpu_kernels [--smoke] [--reps N] [--model small|1.5b|7b|all] [--json]\n");
            return 2;
        }
    }
    if (b.reps < 1 || b.reps > 100000) {
        fprintf(stderr, "gpu_kernels: --reps takes 1..100000\n");
        return 2;
    }
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev < 1) {
        fprintf(stderr, "gpu_kernels: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 1;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaStreamCreate(&b.stream));
    CK(cudaEventCreate(&b.t0));
    CK(cudaEventCreate(&b.t1));
    if (cublasCreate(&b.cublas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(b.cublas, b.stream)) {
        fprintf(stderr, "gpu_kernels: cublasCreate failed\n");
        return 1;
    }
    if (!b.json) printf("device: %s, %d SMs, %.1f GiB; %d repetitions a kernel\n", prop.name,
                        prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), b.reps);
    measure_ceilings(&b);
    if (b.smoke) {
        bench_model(&b, &tiny);
        bench_model(&b, &tiny_576);
        bench_matmul(&b, &tiny_576, SLM_TYPE_Q6_K, 64, 100, "odd", 1, 0);   /* the skipped row's path */
    } else {
        int any = 0;
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
            int pick = !strcmp(which, "all") || (!strcmp(which, "small") && i == 0) ||
                       (!strcmp(which, "1.5b") && i == 1) || (!strcmp(which, "7b") && i == 2);
            if (pick) bench_model(&b, &models[i]), any = 1;
        }
        if (!any) {
            fprintf(stderr, "gpu_kernels: --model takes small, 1.5b, 7b or all\n");
            return 2;
        }
    }
    cublasDestroy(b.cublas);
    cudaEventDestroy(b.t0);
    cudaEventDestroy(b.t1);
    cudaStreamDestroy(b.stream);
    return b.failed;
}
