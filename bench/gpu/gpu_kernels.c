/*
 * bench/gpu/gpu_kernels.c - the kernels the CUDA backend runs, timed against their rooflines.
 *
 * First the machine's ceilings are measured: the memory bandwidth (a device-to-device copy: it
 * reads and writes every byte) and the int8 tensor-core rate (slm_cuda_mma_rate: mma.sync s8
 * m16n8k32 back to back in 8 warps x 8 blocks an SM). Then every launch the backend makes in a decode step runs at the
 * shapes of three models (SmolLM2-135M, Qwen2.5-1.5B, a 7B: Qwen2.5-7B's shapes), each timed
 * with events over --reps launches after one warm-up. A row's roofline is the time its
 * compulsory traffic takes at the measured bandwidth; "roof %" is that time over the measured
 * one (100% = at the roofline). Every row is memory-bound: the decode GEMV's integer dots and
 * the attention's fp32 math are far below the SMs' rates at these batch sizes (the flops are
 * printed in the JSON, for the record).
 *
 * The decode GEMV (kernels/cuda/gemv.cu) as the backend calls it (daemon/engine/backends/cuda/
 * ops.c): each layer's four matmul launches over the weights in the device layout
 * (kernels/cuda/kernels.h) - Q, K and V in one launch with the RMSNorm in its prologue, wo with
 * the residual add (accumulate), gate and up in one launch with the norm and the SwiGLU
 * epilogue, down with the residual add - at n = 1, 2, 4 and 8 tokens (one slm_cuda_gemv launch
 * when the quantized x fits its shared memory, else slm_cuda_gemv_quantize + slm_cuda_gemv_q8,
 * as the backend does), and at n = 16 and 32 in chunks of 8 tokens (each quantized, then each
 * through slm_cuda_gemv_q8), as the backend would run them with the MMQ off. Traffic: the
 * weights' bytes in the device layout (padding included) once, x and gamma read, y written (and
 * read as well when accumulated) once.
 *
 * The tensor-core MMQ (kernels/cuda/mmq.cu) the same four ways at n = 9, 16, 32, 64, 256 and 512
 * (slm_cuda_mmq_quantize of all n tokens, then slm_cuda_mmq): its roofline is the larger of the
 * traffic at the measured bandwidth and 2 n rows cols integer operations at the measured tensor
 * rate ("bound" says which). The gemv and mmq rows at n = 9..32 side by side are what
 * SLM_CUDA_MMQ_MIN_TOKENS (the backend's switch) is to be chosen from. Up to 64 tokens also as
 * one slm_cuda_mmq_fused launch (x normed and quantized in the MMQ's blocks, the backend's choice
 * there: ops.c's MMQ_FUSED_MAX_TOKENS is to be chosen from the two rows). At n = 16, 64 and 512
 * the MMQ's two kernels forced in turn, "mmq (narrow)" and "mmq (wide)" (the same bits):
 * SLM_CUDA_MMQ_WIDE_MIN_BLOCKS, the launch's choice between them, is to be chosen from those.
 *
 * The matmuls without their prologue ("gemv_q8 (x quantized before)" at n = 1 and 8, "mmq (x
 * quantized before)" at n = 9 and 32): x quantized once outside the timing, only the matmul
 * timed; against the "(fused)" rows of the same shape, what a block's prologue (RMSNorm and
 * quantization of its tokens) costs, which docs/cuda.md ("The prologue's latency") models.
 *
 * A graph node's cost: the wo GEMV at n = 1 (Q4_1) launched 128 times in one CUDA graph, the
 * graph replayed, the time per launch, once with plain launches and once with programmatic
 * dependent launch (docs/cuda.md, "Programmatic dependent launch"; sm_90 on, "skipped" before):
 * "gemv chain (plain)" and "gemv chain (programmatic)". At SmolLM2's 576 x 576 the
 * weight is 0.2 MB, so the plain row is what a decode step's launch costs beyond its bytes, and
 * the two rows side by side what PDL takes off it. (Every other row is timed with the backend's
 * default, programmatic launches on sm_90.)
 *
 * F16 and BF16 weights on tensor cores (kernels/cuda/mmf.cu, slm_cuda_mmf) at n = 1, 8, 32 and
 * 512, one weight a launch (Q, gate, down): the weight's 2 bytes an element once, x read and y
 * written; the tensor roof counts 2 n rows cols operations at twice the int8 time (an H100's
 * dense f16 / bf16 rate is half its int8 rate).
 *
 * The fused decode attention (slm_cuda_attention_decode_fused: RoPE, the KV store and
 * attention in one launch) at batches 1, 8 and 64 (each token the new one of its own sequence)
 * and contexts 128, 1k and 4k. Traffic: each sequence's K and V (f16) of every position once,
 * plus q, k, v in and out back. The paged attention of a prefill chunk on tensor cores
 * (slm_cuda_attention_paged in the host's tiles) for 512 tokens: a whole prompt (ctx 512) and a
 * chunk after 3,584 cached positions (ctx 4k). Traffic: K and V once per tile (a tile's tokens
 * share them), q in, out back; its tensor roofline counts q.k once and p.v twice (P's two
 * halves) as f16 MMAs at half the measured int8 rate.
 *
 * The element-wise ops (slm_cuda_rmsnorm, slm_cuda_swiglu, slm_cuda_add) and sampling, which
 * the backend still runs outside the fused launches, close each model's table.
 *
 * A quantized row is a whole number of blocks: a matmul whose cols are not (a K-quant's 256
 * columns do not divide SmolLM2's 576: GGUF files of it keep those matrices in other types)
 * prints "skipped" and the reason (a JSON record {"skipped": ...}); it is no failure.
 *
 * Weights are filled with the byte 0x11 (every f16 scale a small normal number), activations
 * with small values; the numbers do not matter to the time, only the shapes do.
 *
 * --smoke: two tiny models (the second with SmolLM2's layer shapes), short contexts and one
 * repetition, so that the emulated build (gpu_kernels_emu, tests/test_gpu_bench.sh) runs every
 * path, skipped rows included, on a machine without a GPU; its times mean nothing.
 * usage: gpu_kernels [--smoke] [--reps N] [--model small|1.5b|7b|all] [--json]
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "common/err.h"
#include "common/parse.h"
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
    int major;             /* the device's compute capability */
    double bw;             /* measured bytes/s */
    double tops;           /* measured int8 tensor-core operations/s (slm_cuda_mma_rate) */
    cudaStream_t stream;
    cudaEvent_t t0, t1;
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

/* Device logits like a model's: a sum of three uniforms a token (a bell over about [-6, 12]),
 * from a fixed LCG, so that top-k and top-p cut where they would in a real row. */
static float *dev_logits(size_t n)
{
    float *h = malloc(n * sizeof *h), *d = dev_fill(n * sizeof *d, 0);
    if (!h) exit(1);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        float sum = 0;
        for (int j = 0; j < 3; j++) {
            s = s * 1664525u + 1013904223u;
            sum += (float)(s >> 8) / 16777216.0f;
        }
        h[i] = 6.0f * sum - 6.0f;
    }
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

/* Prints one row: the kernel's time against its roofline, the larger of bytes / bw and (for the
 * tensor-core rows) tensor_ops / the measured int8 tensor rate; other flops are only recorded. */
static void row(struct bench *b, const char *model, const char *kernel, const char *what, int n, double bytes,
                double flops, double tensor_ops, double secs)
{
    if (secs < 0) {
        printf("%-13s %-31s %-14s %5d  launch FAILED\n", model, kernel, what, n);
        b->failed = 1;
        return;
    }
    double roof = bytes / b->bw, troof = tensor_ops / b->tops;
    const char *bound = troof > roof ? "tensor" : "memory";
    if (troof > roof) roof = troof;
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

/* ---- the machine's ceiling */

struct copy_ctx { void *dst, *src; size_t bytes; };

static int run_copy(struct bench *b, void *ctx)
{
    struct copy_ctx *c = ctx;
    return cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, b->stream) != cudaSuccess;
}

struct rate_ctx { int blocks, iters; int *out; };

static int run_rate(struct bench *b, void *ctx)
{
    struct rate_ctx *r = ctx;
    return slm_cuda_mma_rate(r->blocks, r->iters, r->out, b->stream);
}

static void measure_ceilings(struct bench *b)
{
    struct copy_ctx c = {.bytes = b->smoke ? (1u << 20) : (512u << 20)};
    c.src = dev_fill(c.bytes, 1);
    c.dst = dev_fill(c.bytes, 0);
    b->bw = 1e12;   /* a placeholder while the ceiling itself is timed */
    double t = time_launch(b, run_copy, &c);
    b->bw = t > 0 ? 2.0 * (double)c.bytes / t : 1e9;
    cudaFree(c.src);
    cudaFree(c.dst);
    /* the int8 tensor rate: 8 blocks an SM of 8 warps, each issuing mma.sync back to back */
    int sms = 1;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    struct rate_ctx r = {.blocks = 8 * sms, .iters = b->smoke ? 2 : 8192};
    r.out = dev_fill((size_t)r.blocks * sizeof(int), 0);
    b->tops = 1e18;   /* a placeholder while the probe runs */
    t = time_launch(b, run_rate, &r);
    b->tops = t > 0 ? slm_cuda_mma_rate_ops(r.blocks, r.iters) / t : 1e12;
    cudaFree(r.out);
    if (b->json)
        printf("{\"ceilings\": true, \"bandwidth_gbs\": %.1f, \"int8_tensor_tops\": %.4g}\n", b->bw / 1e9,
               b->tops / 1e12);
    else
        printf("measured: memory bandwidth %.1f GB/s (device-to-device copy); int8 tensor rate %.1f TOPS (mma.sync "
               "m16n8k32)\n\n%-13s %-31s %-14s %5s %10s %10s %10s %8s  %s\n",
               b->bw / 1e9, b->tops / 1e12, "model", "kernel", "shape/type", "n", "KB moved", "us", "roof us",
               "roof %", "bound");
}

/* ---- the decode GEMV, as the backend's gemv() (daemon/engine/backends/cuda/ops.c) calls it */

/* One of a layer's four GEMV launches: n_w weights of one type and cols, the norm prologue when
 * gamma, and an epilogue. */
struct gemv_ctx {
    uint32_t type;
    int64_t cols, rows[SLM_CUDA_GEMV_MAX_WEIGHTS];
    int n_w, n, epilogue;
    const void *w[SLM_CUDA_GEMV_MAX_WEIGHTS];
    float *x, *gamma, *y[SLM_CUDA_GEMV_MAX_WEIGHTS];
    void *xq;              /* the quantized x of every chunk, chunk bytes apart; NULL for one fused launch */
    size_t chunk;
    int mmq;               /* 1: x quantized at once, then the tensor-core MMQ (n >= SLM_CUDA_MMQ_MIN_TOKENS);
                              2: slm_cuda_mmq_fused, x quantized in the MMQ's blocks */
    int pre;               /* x quantized into xq before the timing: only the matmul is timed */
};

static size_t align256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

static int run_gemv(struct bench *b, void *ctx)
{
    struct gemv_ctx *g = ctx;
    const int T = SLM_CUDA_GEMV_MAX_TOKENS;
    if (g->mmq == 2)
        return slm_cuda_mmq_fused(g->type, g->n_w, g->w, g->rows, g->cols, g->x, g->gamma, 1e-5f, g->n, g->y,
                                  g->epilogue, b->stream);
    if (g->mmq) {
        int rc = g->pre ? 0 : slm_cuda_mmq_quantize(g->x, g->gamma, 1e-5f, g->n, g->cols, g->xq, b->stream);
        return rc ? rc : slm_cuda_mmq(g->type, g->n_w, g->w, g->rows, g->cols, g->xq, g->n, g->y, g->epilogue, b->stream);
    }
    if (!g->xq)
        return slm_cuda_gemv(g->type, g->n_w, g->w, g->rows, g->cols, g->x, g->gamma, 1e-5f, g->n, g->y, g->epilogue,
                             b->stream);
    int n_chunks = (g->n + T - 1) / T, rc = 0;
    for (int c = 0; c < n_chunks && !rc && !g->pre; c++) {
        int k = g->n - c * T < T ? g->n - c * T : T;
        rc = slm_cuda_gemv_quantize(g->x + (size_t)c * T * (size_t)g->cols, g->gamma, 1e-5f, k, g->cols,
                                    (char *)g->xq + (size_t)c * g->chunk, b->stream);
    }
    for (int c = 0; c < n_chunks && !rc; c++) {
        int k = g->n - c * T < T ? g->n - c * T : T;
        float *yc[SLM_CUDA_GEMV_MAX_WEIGHTS];
        for (int i = 0; i < g->n_w; i++) yc[i] = g->y[i] + (size_t)c * T * (size_t)g->rows[i];
        rc = slm_cuda_gemv_q8(g->type, g->n_w, g->w, g->rows, g->cols, (char *)g->xq + (size_t)c * g->chunk, k, yc,
                              g->epilogue, b->stream);
    }
    return rc;
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

/* The layer's four GEMV launches. */
enum gemv_kind { GEMV_QKV, GEMV_WO, GEMV_GATE_UP, GEMV_DOWN };

/* How bench_gemv runs a matmul. */
enum matmul_path {
    PATH_GEMV,         /* the decode GEMV: fused, or x quantized and gemv_q8 in chunks of 8 tokens */
    PATH_MMQ,          /* x quantized at once, then the MMQ (its own choice of kernel) */
    PATH_MMQ_FUSED,    /* slm_cuda_mmq_fused: x quantized in the MMQ's blocks */
    PATH_MMQ_NARROW,   /* as PATH_MMQ with the narrow kernel forced (slm_cuda_mmq_set_wide_min_blocks) */
    PATH_MMQ_WIDE,     /* as PATH_MMQ with the wide kernel forced */
    PATH_PREQUANT,     /* x quantized before the timing, then gemv_q8 (n <= 8) or the MMQ alone: against the
                          fused rows, what the prologue costs (docs/cuda.md, "The prologue's latency") */
    PATH_CHAIN_PLAIN,  /* the GEMV, CHAIN launches captured in one CUDA graph, the graph replayed: the
                          time of a graph node, plain launches (slm_cuda_set_pdl(0)) */
    PATH_CHAIN_PDL,    /* the same, programmatic dependent launches (sm_90 on) */
};

/* Launches a chain row's graph holds (fewer under --smoke: the emulator runs them). */
#define CHAIN 128

static int run_graph(struct bench *b, void *ctx)
{
    return cudaGraphLaunch(*(cudaGraphExec_t *)ctx, b->stream) != cudaSuccess;
}

/* The chain rows: `len` launches of run_gemv(g) captured in one CUDA graph, the graph timed as
 * time_launch times a launch: seconds per launch of g (< 0 on error). Programmatic or plain as
 * slm_cuda_set_pdl says while it is captured. */
static double time_chain(struct bench *b, struct gemv_ctx *g, int len)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CK(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    int rc = 0;
    for (int i = 0; i < len && !rc; i++) rc = run_gemv(b, g);
    CK(cudaStreamEndCapture(b->stream, &graph));
    double secs = -1;
    if (!rc) {
        CK(cudaGraphInstantiate(&exec, graph, 0));
        secs = time_launch(b, run_graph, &exec) / len;
        cudaGraphExecDestroy(exec);
    }
    cudaGraphDestroy(graph);
    return secs;
}

static void bench_gemv(struct bench *b, const struct model_shape *ms, uint32_t type, enum gemv_kind kind, int n,
                       enum matmul_path path)
{
    static const char *names[] = {"qkv", "wo", "gate/up", "down"};
    const int64_t qd = (int64_t)ms->n_head * ms->head_dim, kvd = (int64_t)ms->n_head_kv * ms->head_dim;
    const int forced = path == PATH_MMQ_NARROW || path == PATH_MMQ_WIDE, chain = path >= PATH_CHAIN_PLAIN;
    const int pre = path == PATH_PREQUANT, T = SLM_CUDA_GEMV_MAX_TOKENS;
    const int mmq = path == PATH_GEMV || chain || (pre && n <= T) ? 0 : path == PATH_MMQ_FUSED ? 2 : 1;
    struct gemv_ctx g = {.type = type, .n = n, .mmq = mmq, .pre = pre};
    switch (kind) {
    case GEMV_QKV:
        g.n_w = 3, g.cols = ms->dim, g.epilogue = SLM_CUDA_GEMV_STORE;
        g.rows[0] = qd, g.rows[1] = kvd, g.rows[2] = kvd;
        break;
    case GEMV_WO: g.n_w = 1, g.cols = qd, g.rows[0] = ms->dim, g.epilogue = SLM_CUDA_GEMV_ACCUMULATE; break;
    case GEMV_GATE_UP:
        g.n_w = 2, g.cols = ms->dim, g.epilogue = SLM_CUDA_GEMV_SWIGLU;
        g.rows[0] = g.rows[1] = ms->ffn;
        break;
    default: g.n_w = 1, g.cols = ms->ffn, g.rows[0] = ms->dim, g.epilogue = SLM_CUDA_GEMV_ACCUMULATE; break;
    }
    const int norm = kind == GEMV_QKV || kind == GEMV_GATE_UP;
    const int fused = !mmq && !pre && n <= T && slm_cuda_gemv_fits(type, g.cols, n);
    const char *kernel = path == PATH_MMQ_NARROW ? "mmq (narrow)" : path == PATH_MMQ_WIDE ? "mmq (wide)"
                         : path == PATH_CHAIN_PLAIN ? "gemv chain (plain)"
                         : path == PATH_CHAIN_PDL ? "gemv chain (programmatic)"
                         : pre ? (mmq ? "mmq (x quantized before)" : "gemv_q8 (x quantized before)")
                         : mmq == 2 ? "mmq (fused)" : mmq ? "mmq (quantize + mmq)"
                         : fused ? "gemv (fused)" : "gemv (quantize + gemv_q8)";
    char what[64], why[96];
    snprintf(what, sizeof what, "%s %s", names[kind], slm_qtype_name(type));
    if (slm_cuda_device_row_bytes(type, g.cols) == 0) {   /* no launch: no kernel name either */
        snprintf(why, sizeof why, "%s rows of %lld columns cannot exist (%u-element blocks)", slm_qtype_name(type),
                 (long long)g.cols, slm_qblock_elems(type));
        skipped_row(b, ms->name, mmq ? "mmq" : "gemv", what, n, why);
        return;
    }
    if (path == PATH_CHAIN_PDL && b->major < 9) {
        skipped_row(b, ms->name, kernel, what, n, "programmatic dependent launch needs sm_90 or later");
        return;
    }
    if (mmq == 2 && slm_cuda_mmq_fused_smem(type, g.cols, g.epilogue) > SLM_CUDA_MMQ_SMEM) {
        snprintf(why, sizeof why, "a block's %lld-column x is past SLM_CUDA_MMQ_SMEM", (long long)g.cols);
        skipped_row(b, ms->name, "mmq (fused)", what, n, why);
        return;
    }
    double bytes = 0, out_rows = 0, flops = 0;
    for (int i = 0; i < g.n_w; i++) {
        size_t wb = 0;
        g.w[i] = dev_weight_device_layout(type, g.rows[i], g.cols, &wb);
        if (!g.w[i]) exit(1);
        bytes += (double)wb;
        flops += 2.0 * n * (double)g.rows[i] * (double)g.cols;
        /* SwiGLU writes one (n, rows) result into y[0] */
        if (g.epilogue != SLM_CUDA_GEMV_SWIGLU || i == 0) {
            g.y[i] = dev_fill((size_t)n * (size_t)g.rows[i] * 4, 0);
            out_rows += (double)g.rows[i];
        }
    }
    if (g.epilogue == SLM_CUDA_GEMV_SWIGLU) g.y[1] = g.y[0];   /* not read, as kernels.h says */
    g.x = dev_floats((size_t)n * (size_t)g.cols, 0.5f);
    if (norm) g.gamma = dev_floats((size_t)g.cols, 1.0f);
    if (mmq == 1) {
        g.xq = dev_fill(slm_cuda_mmq_act_bytes(n, g.cols), 0);
    } else if (!fused) {
        g.chunk = align256(slm_cuda_gemv_act_bytes(T, g.cols));
        g.xq = dev_fill(g.chunk * (size_t)((n + T - 1) / T), 0);
    }
    if (pre) {   /* x quantized once, outside the timing: chunks of 8 (gemv_q8) or all n at once (mmq) */
        if (mmq && slm_cuda_mmq_quantize(g.x, g.gamma, 1e-5f, n, g.cols, g.xq, b->stream)) exit(1);
        for (int c = 0; c < n && !mmq; c += T)
            if (slm_cuda_gemv_quantize(g.x + (size_t)c * (size_t)g.cols, g.gamma, 1e-5f, n - c < T ? n - c : T, g.cols,
                                       (char *)g.xq + (size_t)(c / T) * g.chunk, b->stream))
                exit(1);
    }
    if (forced) slm_cuda_mmq_set_wide_min_blocks(path == PATH_MMQ_WIDE ? 0 : INT_MAX);
    if (chain) slm_cuda_set_pdl(path == PATH_CHAIN_PDL);
    double secs = chain ? time_chain(b, &g, b->smoke ? 4 : CHAIN) : time_launch(b, run_gemv, &g);
    slm_cuda_mmq_set_wide_min_blocks(-1);
    if (chain) slm_cuda_set_pdl(-1);
    bytes += (pre ? (double)(mmq ? slm_cuda_mmq_act_bytes(n, g.cols) : slm_cuda_act_bytes(n, g.cols)) : 4.0 * n * (double)g.cols + (norm ? 4.0 * (double)g.cols : 0)) +
             (g.epilogue == SLM_CUDA_GEMV_ACCUMULATE ? 8.0 : 4.0) * n * out_rows;
    row(b, ms->name, kernel, what, n, bytes, flops, mmq ? flops : 0, secs);
    for (int i = 0; i < g.n_w; i++) cudaFree((void *)g.w[i]);
    cudaFree(g.y[0]);
    if (g.epilogue != SLM_CUDA_GEMV_SWIGLU)
        for (int i = 1; i < g.n_w; i++) cudaFree(g.y[i]);
    cudaFree(g.x);
    if (g.gamma) cudaFree(g.gamma);
    if (g.xq) cudaFree(g.xq);
}

/* ---- F16 / BF16 weights on tensor cores */

struct mmf_ctx { uint32_t type; int64_t rows, cols; int n; void *w; float *x, *y; };

static int run_mmf(struct bench *b, void *ctx)
{
    struct mmf_ctx *m = ctx;
    return slm_cuda_mmf(m->type, m->w, m->rows, m->cols, m->x, m->n, m->y, 0, b->stream);
}

/* kind 0: Q (n_head x head_dim, dim), 1: gate (ffn, dim), 2: down (dim, ffn) */
static void bench_mmf(struct bench *b, const struct model_shape *ms, uint32_t type, int kind, int n)
{
    static const char *names[] = {"q", "gate", "down"};
    const int64_t qd = (int64_t)ms->n_head * ms->head_dim;
    struct mmf_ctx m = {.type = type, .n = n};
    m.rows = kind == 0 ? qd : kind == 1 ? ms->ffn : ms->dim;
    m.cols = kind == 2 ? ms->ffn : ms->dim;
    char what[64];
    snprintf(what, sizeof what, "%s %s", names[kind], slm_qtype_name(type));
    m.w = dev_fill((size_t)m.rows * (size_t)m.cols * 2, 0x11);
    m.x = dev_floats((size_t)n * (size_t)m.cols, 0.5f);
    m.y = dev_fill((size_t)n * (size_t)m.rows * 4, 0);
    double secs = time_launch(b, run_mmf, &m);
    const double flops = 2.0 * n * (double)m.rows * (double)m.cols;
    const double bytes = 2.0 * (double)m.rows * (double)m.cols + 4.0 * n * (double)m.cols + 4.0 * n * (double)m.rows;
    row(b, ms->name, "mmf (tensor cores)", what, n, bytes, flops, 2.0 * flops, secs);
    cudaFree(m.w);
    cudaFree(m.x);
    cudaFree(m.y);
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
    row(b, ms->name, names[kind], what, n, bytes, 0, 0, time_launch(b, run_ew, &e));
    cudaFree(e.x);
    cudaFree(e.y);
    cudaFree(e.out);
    cudaFree(e.gamma);
}

/* ---- the fused decode attention: each of n tokens the new one of its own sequence, at
 * position ctx - 1 (its K and V stored by the launch, ctx positions attended) */

struct att_ctx {
    struct slm_cuda_attn_shape shape;
    struct slm_cuda_attn_tokens t;
    struct slm_cuda_kv_layer kv;
    struct slm_cuda_rope_table rope;
    float *q, *k, *v, *out;
    void *ws;
    size_t ws_bytes;
    int max_ctx;
};

static int run_attention(struct bench *b, void *ctx)
{
    struct att_ctx *a = ctx;
    return slm_cuda_attention_decode_fused(&a->shape, &a->t, &a->kv, &a->rope, a->q, a->k, a->v, a->max_ctx, a->ws,
                                           a->ws_bytes, a->out, b->stream);
}

static void bench_attention(struct bench *b, const struct model_shape *ms, int n, int ctx)
{
    const int bs = 16, blocks_per = (ctx + bs - 1) / bs;
    struct att_ctx a = {.max_ctx = ctx};
    a.shape = (struct slm_cuda_attn_shape){.n_head = ms->n_head, .n_head_kv = ms->n_head_kv,
                                           .head_dim = ms->head_dim, .rope_dim = ms->head_dim,
                                           .scale = 0.125f};
    size_t kvd = (size_t)ms->n_head_kv * (size_t)ms->head_dim, qd = (size_t)ms->n_head * (size_t)ms->head_dim;
    size_t n_blocks = (size_t)n * (size_t)blocks_per;
    int32_t *pos = malloc((size_t)n * 4), *row_of = malloc((size_t)n * 4), *tab = malloc(n_blocks * 4);
    if (!pos || !row_of || !tab) exit(1);
    for (size_t i = 0; i < n_blocks; i++) tab[i] = (int32_t)i;
    for (int i = 0; i < n; i++) pos[i] = ctx - 1, row_of[i] = i;
    int32_t *d_pos = dev_fill((size_t)n * 4, 0), *d_row = dev_fill((size_t)n * 4, 0), *d_tab = dev_fill(n_blocks * 4, 0);
    CK(cudaMemcpy(d_pos, pos, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_row, row_of, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_tab, tab, n_blocks * 4, cudaMemcpyHostToDevice));
    a.t = (struct slm_cuda_attn_tokens){.n_tokens = n, .pos = d_pos, .seq_row = d_row, .block_tables = d_tab,
                                        .n_seq_rows = n, .max_blocks = blocks_per};
    size_t kv_bytes = n_blocks * (size_t)bs * kvd * 2;
    a.kv = (struct slm_cuda_kv_layer){.k = dev_fill(kv_bytes, 0x11), .v = dev_fill(kv_bytes, 0x11),
                                      .n_blocks = (int)n_blocks, .block_size = bs};
    /* (cos, sin) of every position: the values do not matter to the time */
    float *cos_sin = dev_floats((size_t)ctx * (size_t)ms->head_dim, 0.7f);
    a.rope = (struct slm_cuda_rope_table){.cos_sin = cos_sin, .positions = ctx};
    a.q = dev_floats((size_t)n * qd, 0.5f);
    a.k = dev_floats((size_t)n * kvd, 0.5f);
    a.v = dev_floats((size_t)n * kvd, 0.25f);
    a.out = dev_fill((size_t)n * qd * 4, 0);
    a.ws_bytes = slm_cuda_attention_decode_fused_workspace(&a.shape, n, ctx);
    a.ws = dev_fill(a.ws_bytes, 0);   /* the completion counters start (and stay) zero */
    double secs = time_launch(b, run_attention, &a);
    /* K and V (f16) of every position of each sequence once; q, k, v in, out back */
    double bytes = (double)n * ctx * (double)kvd * 4.0 + 8.0 * (double)n * (double)(qd + kvd);
    /* q.k and p.v: 4 flops per (query head, position, dim) */
    double flops = 4.0 * (double)n * ctx * (double)ms->n_head * (double)ms->head_dim;
    char what[32];
    snprintf(what, sizeof what, "ctx %d", ctx);
    row(b, ms->name, "attention decode (fused)", what, n, bytes, flops, 0, secs);
    free(pos), free(row_of), free(tab);
    cudaFree(d_pos), cudaFree(d_row), cudaFree(d_tab), cudaFree(cos_sin);
    cudaFree(a.kv.k), cudaFree(a.kv.v), cudaFree(a.q), cudaFree(a.k), cudaFree(a.v), cudaFree(a.out), cudaFree(a.ws);
}

/* ---- the paged attention of a prefill chunk: n tokens of one sequence at positions
 * ctx - n .. ctx - 1 (their K and V already in the cache), in the host's tiles */

static int run_attention_paged(struct bench *b, void *ctx)
{
    struct att_ctx *a = ctx;
    return slm_cuda_attention_paged(&a->shape, &a->t, &a->kv, a->q, a->max_ctx, a->ws, a->ws_bytes, a->out, b->stream);
}

static void bench_attention_prefill(struct bench *b, const struct model_shape *ms, int n, int ctx)
{
    const int bs = 16, blocks = (ctx + bs - 1) / bs;
    struct att_ctx a = {.max_ctx = ctx};
    a.shape = (struct slm_cuda_attn_shape){.n_head = ms->n_head, .n_head_kv = ms->n_head_kv,
                                           .head_dim = ms->head_dim, .rope_dim = ms->head_dim,
                                           .scale = 0.125f};
    size_t kvd = (size_t)ms->n_head_kv * (size_t)ms->head_dim, qd = (size_t)ms->n_head * (size_t)ms->head_dim;
    int32_t *pos = malloc((size_t)n * 4), *row_of = malloc((size_t)n * 4), *tab = malloc((size_t)blocks * 4),
            *tiles = malloc((size_t)n * 8);
    if (!pos || !row_of || !tab || !tiles) exit(1);
    for (int i = 0; i < blocks; i++) tab[i] = i;
    for (int i = 0; i < n; i++) pos[i] = ctx - n + i, row_of[i] = 0;
    int n_tiles = slm_cuda_attention_tiles(&a.shape, row_of, n, tiles);
    if (n_tiles < 1) exit(1);
    int32_t *d_pos = dev_fill((size_t)n * 4, 0), *d_row = dev_fill((size_t)n * 4, 0),
            *d_tab = dev_fill((size_t)blocks * 4, 0), *d_tiles = dev_fill((size_t)n_tiles * 8, 0);
    CK(cudaMemcpy(d_pos, pos, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_row, row_of, (size_t)n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_tab, tab, (size_t)blocks * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_tiles, tiles, (size_t)n_tiles * 8, cudaMemcpyHostToDevice));
    a.t = (struct slm_cuda_attn_tokens){.n_tokens = n, .pos = d_pos, .seq_row = d_row, .block_tables = d_tab,
                                        .n_seq_rows = 1, .max_blocks = blocks, .tiles = d_tiles, .n_tiles = n_tiles};
    size_t kv_bytes = (size_t)blocks * bs * kvd * 2;
    a.kv = (struct slm_cuda_kv_layer){.k = dev_fill(kv_bytes, 0x11), .v = dev_fill(kv_bytes, 0x11),
                                      .n_blocks = blocks, .block_size = bs};
    a.q = dev_floats((size_t)n * qd, 0.5f);
    a.out = dev_fill((size_t)n * qd * 4, 0);
    a.ws_bytes = slm_cuda_attention_decode_fused_workspace(&a.shape, n, ctx);
    a.ws = dev_fill(a.ws_bytes, 0);
    double secs = time_launch(b, run_attention_paged, &a);
    /* (query, position) pairs attended: each token its own prefix */
    double pairs = (double)n * (ctx - n) + (double)n * (n + 1) / 2.0;
    /* K and V read once per tile, q in, out back */
    double bytes = (double)n_tiles * ((double)ctx - n / 2.0) * (double)kvd * 4.0 + 8.0 * (double)n * (double)qd;
    double flops = 4.0 * pairs * (double)ms->n_head * (double)ms->head_dim;
    /* f16 MMA ops at half the int8 rate: q.k once, p.v twice (P's hi and lo halves) */
    double tensor = 2.0 * 1.5 * flops;
    char what[32];
    snprintf(what, sizeof what, "ctx %d", ctx);
    row(b, ms->name, "attention prefill (tiles)", what, n, bytes, flops, tensor, secs);
    free(pos), free(row_of), free(tab), free(tiles);
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

/* One launch of the sampler over rows rows: greedy, top-p 0.9 alone (T 0.8), or the sampling
 * defaults (T 0.8, top-k 40, top-p 0.95, min-p 0.05: slm_sampling_defaults, llama.cpp's). */
enum sample_kind { SAMPLE_GREEDY, SAMPLE_TOP_P, SAMPLE_DEFAULTS };

static void bench_sample(struct bench *b, const struct model_shape *ms, int rows, enum sample_kind kind)
{
    static const char *const what[] = {"greedy", "top-p 0.9", "defaults (top-k 40)"};
    struct samp_ctx s = {.rows = rows, .vocab = ms->vocab};
    struct slm_cuda_sampling *p = calloc((size_t)rows, sizeof *p);
    if (!p) exit(1);
    for (int i = 0; i < rows; i++) {
        p[i] = (struct slm_cuda_sampling){.temperature = kind == SAMPLE_GREEDY ? 0.0f : 0.8f,
                                          .top_p = kind == SAMPLE_TOP_P ? 0.9f : kind == SAMPLE_DEFAULTS ? 0.95f : 1.0f,
                                          .repeat_penalty = 1.0f};
        if (kind == SAMPLE_DEFAULTS) p[i].top_k = 40, p[i].min_p = 0.05f, p[i].log_min_p = logf(0.05f);
    }
    s.logits = dev_logits((size_t)rows * (size_t)ms->vocab);
    s.params = dev_fill((size_t)rows * sizeof *p, 0);
    CK(cudaMemcpy(s.params, p, (size_t)rows * sizeof *p, cudaMemcpyHostToDevice));
    s.rng = dev_fill((size_t)rows * 32, 0x5a);
    s.tokens = dev_fill((size_t)rows * 4, 0);
    s.hist = dev_fill(4, 0);
    s.ws_bytes = slm_cuda_sample_workspace(rows, ms->vocab);
    s.ws = dev_fill(s.ws_bytes, 0);
    row(b, ms->name, "sample", what[kind], rows, 4.0 * rows * (double)ms->vocab, 0, 0,
        time_launch(b, run_sample, &s));
    free(p);
    cudaFree(s.logits), cudaFree(s.params), cudaFree(s.rng), cudaFree(s.tokens), cudaFree(s.hist), cudaFree(s.ws);
}

static void bench_model(struct bench *b, const struct model_shape *ms)
{
    static const uint32_t types[] = {SLM_TYPE_Q4_1, SLM_TYPE_Q4_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_0};
    static const int gemv_n[] = {1, 2, 4, 8, 16, 32}, mmq_n[] = {9, 16, 32, 64, 256, 512}, att_n[] = {1, 8, 64};
    static const int shape_n[] = {16, 64, 512}, pre_n[] = {1, 8, 9, 32};
    static const int ctxs[] = {128, 1024, 4096}, smoke_ctxs[] = {17, 64, 130};
    const int prefill_n = b->smoke ? 16 : 512;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (int kind = GEMV_QKV; kind <= GEMV_DOWN; kind++) {
            for (size_t i = 0; i < sizeof gemv_n / sizeof gemv_n[0]; i++)
                bench_gemv(b, ms, types[t], (enum gemv_kind)kind, gemv_n[i], PATH_GEMV);
            for (size_t i = 0; i < sizeof mmq_n / sizeof mmq_n[0]; i++)
                if (!b->smoke || mmq_n[i] <= 64) bench_gemv(b, ms, types[t], (enum gemv_kind)kind, mmq_n[i], PATH_MMQ);
            for (size_t i = 0; i < sizeof mmq_n / sizeof mmq_n[0] && mmq_n[i] <= 64; i++)
                if (!b->smoke || mmq_n[i] <= 16)
                    bench_gemv(b, ms, types[t], (enum gemv_kind)kind, mmq_n[i], PATH_MMQ_FUSED);
            for (size_t i = 0; i < sizeof pre_n / sizeof pre_n[0]; i++)   /* the matmuls without their prologue */
                if (!b->smoke || pre_n[i] <= 9) bench_gemv(b, ms, types[t], (enum gemv_kind)kind, pre_n[i], PATH_PREQUANT);
            for (size_t i = 0; i < sizeof shape_n / sizeof shape_n[0]; i++)   /* the two MMQ kernels */
                if (!b->smoke || shape_n[i] <= 16)
                    for (int k = PATH_MMQ_NARROW; k <= PATH_MMQ_WIDE; k++)
                        bench_gemv(b, ms, types[t], (enum gemv_kind)kind, shape_n[i], (enum matmul_path)k);
        }
    for (int k = PATH_CHAIN_PLAIN; k <= PATH_CHAIN_PDL; k++)   /* a graph node's cost, without and with PDL */
        bench_gemv(b, ms, SLM_TYPE_Q4_1, GEMV_WO, 1, (enum matmul_path)k);
    static const uint32_t ftypes[] = {SLM_TYPE_F16, SLM_TYPE_BF16};
    static const int mmf_n[] = {1, 8, 32, 512};
    for (size_t t = 0; t < 2; t++)
        for (int kind = 0; kind < 3; kind++)
            for (size_t i = 0; i < sizeof mmf_n / sizeof mmf_n[0]; i++)
                if (!b->smoke || mmf_n[i] <= 8) bench_mmf(b, ms, ftypes[t], kind, mmf_n[i]);
    for (size_t i = 0; i < sizeof att_n / sizeof att_n[0]; i++)
        for (size_t c = 0; c < sizeof ctxs / sizeof ctxs[0]; c++)
            bench_attention(b, ms, att_n[i], b->smoke ? smoke_ctxs[c] : ctxs[c]);
    bench_attention_prefill(b, ms, prefill_n, prefill_n);                        /* a whole prompt */
    bench_attention_prefill(b, ms, prefill_n, b->smoke ? 130 : 4096);            /* a chunk after cached positions */
    for (int kind = 0; kind < 3; kind++) {
        bench_ew(b, ms, kind, 1, kind == 1 ? ms->ffn : ms->dim);
        bench_ew(b, ms, kind, prefill_n, kind == 1 ? ms->ffn : ms->dim);
    }
    bench_sample(b, ms, 1, SAMPLE_GREEDY);
    bench_sample(b, ms, 32, SAMPLE_TOP_P);
    bench_sample(b, ms, 1, SAMPLE_DEFAULTS);
    bench_sample(b, ms, 32, SAMPLE_DEFAULTS);
}

int main(int argc, char **argv)
{
    struct bench b = {.reps = 50};
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) b.smoke = 1, b.reps = 1;
        else if (!strcmp(argv[i], "--json")) b.json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            long long v;
            char why[SLM_ERR_LEN];
            if (slm_parse_int(argv[++i], 1, 100000, &v, why)) {
                fprintf(stderr, "gpu_kernels: --reps takes 1..100000, not '%s'\n", argv[i]);
                return 2;
            }
            b.reps = (int)v;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) which = argv[++i];
        else {
            fprintf(stderr, "usage: gpu_kernels [--smoke] [--reps N] [--model small|1.5b|7b|all] [--json]\n");
            return 2;
        }
    }
    /* models[] in order of these names; -1: all of them */
    static const char *const names[] = {"small", "1.5b", "7b"};
    int only = -2;
    if (!strcmp(which, "all")) only = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(which, names[i])) only = i;
    if (only == -2) {
        fprintf(stderr, "gpu_kernels: --model takes small, 1.5b, 7b or all, not '%s'\n", which);
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
    b.major = prop.major;
    CK(cudaStreamCreate(&b.stream));
    CK(cudaEventCreate(&b.t0));
    CK(cudaEventCreate(&b.t1));
    if (!b.json) printf("device: %s, %d SMs, %.1f GiB; %d repetitions a kernel\n", prop.name,
                        prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), b.reps);
    measure_ceilings(&b);
    if (b.smoke) {
        bench_model(&b, &tiny);
        bench_model(&b, &tiny_576);
        /* a matmul whose cols fit no K-quant block: the skipped row's path */
        bench_gemv(&b, &(struct model_shape){"tiny-576", 576, 100, 9, 3, 64, 1024}, SLM_TYPE_Q6_K, GEMV_DOWN, 1,
                   PATH_GEMV);
    } else {
        for (int i = 0; i < (int)(sizeof models / sizeof models[0]); i++)
            if (only < 0 || only == i) bench_model(&b, &models[i]);
    }
    cudaEventDestroy(b.t0);
    cudaEventDestroy(b.t1);
    cudaStreamDestroy(b.stream);
    return b.failed;
}
