/*
 * daemon/engine/backend_cuda.c - the CUDA backend: the ops table over kernels/cuda.
 *
 * Weights are copied to device memory once, quantized, and stay resident: the types of the
 * integer GEMV in the device layout (kernels/cuda/kernels.h: GGUF's blocks permuted and padded
 * for 16-byte loads; the matmul and the embedding lookup read it), F32 / F16 / BF16 as GGUF
 * has them. Activations and the KV pool (per layer K then V, each (n_blocks, block_size,
 * kv_dim) halves: the CPU backend's layout) are device memory. Everything runs on one
 * stream, in issue order; the host waits only in to_host (the logits) and when a pinned
 * staging buffer is about to be rewritten while its last copy may still be queued.
 *
 * Paths (docs/cuda.md, "Backend"): a matmul on a quantized weight quantizes x once per
 * activation type (Q8_0 / Q8_1 / Q8_K, into a scratch whose address changes only when a call
 * needs more than it holds) and runs the integer GEMV, whatever the number of tokens: its
 * results are the CPU backend's bits, and a token's do not depend on the batch (the cuBLAS
 * GEMM path would give other bits, batch-dependent ones). F32 / F16 / BF16 weights take the
 * fp32 dequant-GEMV. Attention: RoPE and the KV store for the
 * whole batch, then two launches over the whole token list: the CPU-exact kernel takes the
 * tokens at positions < T (exact_ctx: EXACT_ATTN_CTX, or SLM_CUDA_EXACT_ATTN_CTX in the
 * environment at creation), the flash-decoding split kernel those at positions >= T. Which
 * kernel a token gets depends only on its own position, so the batch never changes its bits.
 *
 * Decode steps as CUDA graphs (docs/cuda.md, "CUDA graphs"; the step_begin / step_end hooks of
 * backend.h): a decode-only step is padded to a bucket of tokens (1, 2, 4, 8, 16, 24, 32, 48, 64,
 * 96, 128, 192, 256) and its attention context to a power-of-two number of 128 positions;
 * per such shape the first step runs op by op in the graph's shape (a warm-up that sizes every
 * buffer), the second is captured from the embedding through the logits matmul, and later ones
 * copy the step's metadata (ids, positions, out rows, one block table row per token) from pinned
 * memory into one fixed device buffer and launch the graph. Padding tokens use a scratch KV
 * block that kv_alloc adds after the engine's blocks. A failed capture leaves its shape op by
 * op (one warning); SLM_CUDA_GRAPHS=0 turns graphs off. Freeing or moving any buffer a graph
 * reads drops every graph (graphs_reset).
 *
 * Sampling (the `sample` op, its own section below): slm_cuda_sample over the logits where
 * the forward pass left them; the rows' parameters, RNG states and penalty windows go up in
 * one copy, token ids, RNG states and requested logprobs come back in one. SLM_CUDA_SAMPLING=0
 * in the environment at creation leaves the op out (the engine then samples on the host).
 *
 * Built three ways (CMakeLists.txt): against the CUDA runtime and kernels/cuda compiled
 * by nvcc (SLM_BACKEND_CUDA), against the SIMT emulator (SLM_BACKEND_CUDA and
 * SLM_BACKEND_CUDA_EMU), or, with neither, as the no-CUDA variant at the end of this file.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "daemon/log.h"
#include "stop.h"

#ifdef SLM_BACKEND_CUDA

#include <cuda_runtime_api.h>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/kernels.h"

/* Host metadata staged in pinned memory and copied to a device twin in one copy. */
struct staging {
    int32_t *host;            /* (cap) pinned */
    int32_t *dev;             /* (cap) device */
    size_t cap;               /* int32 elements */
    cudaEvent_t done;         /* recorded after the last copy out of host */
    int pending;              /* done was recorded and not yet waited for */
};

/* The attention metadata of the batch last uploaded, and its plan. */
struct attn_meta {
    struct staging st;        /* device: pos (n), seq_row (n), block_tables (n_rows, max_blocks),
                               * the split kernel's tiles (n_tiles + 1) */
    int32_t *shadow;          /* (shadow_cap) host copy of what st.dev holds, to skip re-uploads */
    size_t shadow_cap, shadow_len;
    int n_tokens, n_rows, max_blocks;
    int max_ctx;              /* largest pos + 1 */
    int tile_cap, n_tiles;    /* the tiles: runs of the batch cut to tile_cap tokens */
};

/* Contexts in a step graph's shape are whole multiples of this many positions ("partitions"):
 * the attention launch's max_ctx, which lays out its workspace, is parts x GRAPH_CTX_STEP. */
#define GRAPH_CTX_STEP 128

/* T: tokens at positions below it take the CPU-exact attention kernel (the CPU backend's bits),
 * the others the flash-decoding split one (docs/cuda.md, "Attention and sampling"). The exact
 * kernel has one block per (token, head) with serial parts (the sum of the exps, the 64-chain
 * p.V) that grow with the context; up to 1024 positions they stay cheap next to the rest of a
 * layer, and every context of the test suite and of typical chat turns is below it.
 * SLM_CUDA_EXACT_ATTN_CTX in the environment at creation overrides it (0: always split). */
#define EXACT_ATTN_CTX 1024

/* One captured decode step shape: `tokens` (a bucket) tokens whose attention spans `parts`
 * partitions, with block tables of `stride` entries a token. */
enum graph_state { GRAPH_NEW, GRAPH_WARM, GRAPH_READY, GRAPH_EAGER };
struct graph_entry {
    int tokens, parts, stride;
    enum graph_state state;   /* NEW: next step warms up; WARM: next step captures; EAGER: capture failed */
    cudaGraphExec_t exec;     /* READY */
};
#define GRAPH_MAX_ENTRIES 128

/* The step graphs (docs/cuda.md, "CUDA graphs"). A decode step padded to `tokens` reads all of
 * its per-step metadata from meta.dev, laid out as tokens (B), pos (B), seq_row (B), out_rows (B),
 * block tables (B, stride): one copy from meta.host before the graph launch. */
struct graphs {
    int mode;                 /* 0 off, 1 on, 2 on with every capture broken (a test of the fallback) */
    const void *owner;        /* the forward pass whose activations the graphs use */
    const void *pool_mem;     /* the KV pool they use */
    struct graph_entry entries[GRAPH_MAX_ENTRIES];
    int n_entries;
    struct staging meta;
    /* The step now running graph-shaped (a warm-up or a capture), else NULL, and its layout. */
    struct graph_entry *cur;
    int capturing;
    int tokens, stride, max_ctx;
    const int32_t *d_tokens, *d_pos, *d_row, *d_out, *d_tables;
    struct slm_cuda_graph_stats stats;
};

/* RoPE's cos and sin, made on the host (slm_cpu_rope_angles: the CPU backend's bits), one
 * table per (base, rope_dim) the model uses (Gemma 3 has two), for positions [0, positions). */
struct rope_cache {
    float base;
    int rope_dim;
    int positions;
    float *dev;               /* (positions, rope_dim / 2, 2) */
};
#define ROPE_TABLES 4
#define ROPE_MIN_POSITIONS 4096

struct cuda_impl {
    int device;
    double mem_fraction;      /* share of the free device memory the KV pool may take */
    cudaStream_t stream;
    struct staging ids;       /* token ids of embed, row ids of gather_rows */
    struct attn_meta attn;
    void *workspace;          /* attention: the exact kernel's part, then the split kernel's */
    size_t workspace_bytes;
    int exact_ctx;            /* T: positions < T take the exact attention, the others the split one */
    struct graphs graphs;
    /* matmul: x quantized for the integer GEMV, one region per activation type of a call
     * (Q8_0, Q8_1, Q8_K). Sized at the first quantized matmul for Q8_SCRATCH_TOKENS tokens of
     * the longest rows loaded (or the call's n if larger); reallocated only when a call needs
     * more, so its address is stable for steps of up to that many tokens. */
    void *q8;
    size_t q8_bytes;
    size_t q8_row_max[3];     /* largest quantized row of each activation type among the weights */
    size_t weight_bytes;      /* device bytes of the resident weights (device layout where a type has one) */
    struct sample_state *sampling;   /* the sample op's buffers, NULL until its first call */
    struct rope_cache rope[ROPE_TABLES];
    struct slm_backend_ops host_sampling_ops;   /* cuda_ops without `sample` (SLM_CUDA_SAMPLING=0) */
};

static void graphs_reset(struct cuda_impl *ci);

static struct cuda_impl *impl(struct slm_backend *be)
{
    return be->impl;
}

/* 0, or -EIO with a log line naming the call. The error is taken off cudaGetLastError, so
 * that the next launcher does not report it again as its own. */
static int cuda_ok(cudaError_t e, const char *call)
{
    if (e == cudaSuccess) return 0;
    cudaGetLastError();
    slm_log(SLM_LOG_ERR, "cuda backend: %s: %s (%s)", call, cudaGetErrorName(e), cudaGetErrorString(e));
    return -EIO;
}
#define CUDA_TRY(call)                                     \
    do {                                                   \
        int rc_ = cuda_ok((call), #call);                  \
        if (rc_) return rc_;                               \
    } while (0)

/* A launcher's result; -EIO and -EINVAL are logged with the launcher's name. */
static int launched(int rc, const char *launcher)
{
    if (rc == -EIO) {
        int e = slm_cuda_last_error();
        if (e >= 10000) slm_log(SLM_LOG_ERR, "cuda backend: %s: cuBLAS status %d", launcher, e - 10000);
        else cuda_ok((cudaError_t)e, launcher);
    } else if (rc) {
        cudaGetLastError();   /* the emulator's pointer check leaves its refusal sticky */
        slm_log(SLM_LOG_ERR, "cuda backend: %s refused its arguments (%s)", launcher, strerror(-rc));
    }
    return rc;
}

/* ---- staging of host metadata */

static void staging_free(struct staging *s)
{
    if (s->done) cudaEventSynchronize(s->done);
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);
    if (s->done) cudaEventDestroy(s->done);
    memset(s, 0, sizeof *s);
}

/* Makes host writable: waits for the copy that last read it. */
static int staging_wait(struct staging *s)
{
    if (!s->pending) return 0;
    s->pending = 0;
    CUDA_TRY(cudaEventSynchronize(s->done));
    return 0;
}

/* Room for n elements (contents not kept). */
static int staging_reserve(struct staging *s, size_t n)
{
    int rc = staging_wait(s);
    if (rc || (s->cap && n <= s->cap)) return rc;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n) cap *= 2;
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);   /* synchronises: no queued kernel still reads it */
    s->host = NULL, s->dev = NULL, s->cap = 0;
    CUDA_TRY(cudaMallocHost((void **)&s->host, cap * sizeof(int32_t)));
    CUDA_TRY(cudaMalloc((void **)&s->dev, cap * sizeof(int32_t)));
    s->cap = cap;
    return 0;
}

/* Queues the copy of host[0..n) to dev. */
static int staging_upload(struct cuda_impl *ci, struct staging *s, size_t n)
{
    CUDA_TRY(cudaMemcpyAsync(s->dev, s->host, n * sizeof(int32_t), cudaMemcpyHostToDevice, ci->stream));
    CUDA_TRY(cudaEventRecord(s->done, ci->stream));
    s->pending = 1;
    return 0;
}

/* dev[0..n) = ids (host). */
static int upload_ids(struct cuda_impl *ci, const int32_t *ids, int n)
{
    int rc = staging_reserve(&ci->ids, (size_t)n);
    if (rc) return rc;
    memcpy(ci->ids.host, ids, (size_t)n * sizeof(int32_t));
    return staging_upload(ci, &ci->ids, (size_t)n);
}

/* ---- memory */

static void *cuda_alloc(struct slm_backend *be, size_t bytes)
{
    struct cuda_impl *ci = impl(be);
    void *p = NULL;
    if (cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice") ||
        cuda_ok(cudaMalloc(&p, bytes ? bytes : 256), "cudaMalloc"))
        return NULL;
    if (cuda_ok(cudaMemsetAsync(p, 0, bytes ? bytes : 256, ci->stream), "cudaMemsetAsync")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(struct slm_backend *be, void *p)
{
    graphs_reset(impl(be));   /* an activation buffer a graph may use */
    cuda_ok(cudaFree(p), "cudaFree");
}

static void q8_note_weight(struct cuda_impl *ci, const struct slm_weight *w);

/* Whether a weight is resident in the device layout (kernels.h): the types of the integer
 * GEMV. Its be_data is then read only by slm_cuda_matvec_q8 and slm_cuda_embed_device_layout. */
static int device_layout(const struct slm_weight *w)
{
    return slm_cuda_q8_act_type(w->type) != UINT32_MAX;
}

/* A weight of a type with a device layout is converted on the host (a temporary buffer of its
 * device size) and copied up in one cudaMemcpy; the others go up as GGUF has them. */
static int cuda_load_weight(struct slm_backend *be, struct slm_weight *w)
{
    struct cuda_impl *ci = impl(be);
    const int layout = device_layout(w);
    size_t bytes = (size_t)w->rows * (layout ? slm_cuda_device_row_bytes(w->type, w->cols) : w->row_bytes);
    void *p = NULL, *host = NULL;
    w->be_data = NULL;
    if (layout) {
        if (!(host = malloc(bytes ? bytes : 1))) return -ENOMEM;
        int rc = slm_cuda_to_device_layout(w->type, w->data, w->rows, w->cols, host);
        if (rc) {
            slm_log(SLM_LOG_ERR, "cuda backend: a %s weight (%lld x %lld) has no device layout (%s)",
                    slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols, strerror(-rc));
            free(host);
            return rc;
        }
    }
    int rc = cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice");
    if (!rc && cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        slm_log(SLM_LOG_ERR, "cuda backend: cudaMalloc of %zu bytes for a %s weight (%lld x %lld) failed", bytes,
                slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols);
        p = NULL;
        rc = -ENOMEM;
    }
    if (!rc && cuda_ok(cudaMemcpy(p, layout ? host : w->data, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (weight)")) {
        cudaFree(p);
        rc = -EIO;
    }
    free(host);
    if (rc) return rc;
    w->be_data = p;
    ci->weight_bytes += bytes;
    slm_log(SLM_LOG_DEBUG, "cuda backend: %s weight %lld x %lld resident: %zu bytes (%s; GGUF %zu), %.1f MiB of "
            "weights in all", slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols, bytes,
            layout ? "device layout" : "GGUF layout", (size_t)w->rows * w->row_bytes,
            (double)ci->weight_bytes / 1048576);
    q8_note_weight(ci, w);
    return 0;
}

static void cuda_unload_weight(struct slm_backend *be, struct slm_weight *w)
{
    graphs_reset(impl(be));
    if (w->be_data) {
        cuda_ok(cudaFree(w->be_data), "cudaFree (weight)");
        size_t rb = device_layout(w) ? slm_cuda_device_row_bytes(w->type, w->cols) : w->row_bytes;
        impl(be)->weight_bytes -= (size_t)w->rows * rb;
    }
    w->be_data = NULL;
}

/* The pool holds one block more than the engine sees: block n_blocks is the scratch block
 * that the padding tokens of a graph step write and read (docs/cuda.md, "CUDA graphs"). */
static int kv_blocks(const struct slm_kv_pool *p)
{
    return p->n_blocks + 1;
}

static size_t kv_layer_halves(const struct slm_kv_pool *p)
{
    return (size_t)kv_blocks(p) * (size_t)p->block_size * (size_t)p->kv_dim;
}

static int cuda_kv_alloc(struct slm_backend *be, struct slm_kv_pool *pool)
{
    struct cuda_impl *ci = impl(be);
    size_t bytes = kv_layer_halves(pool) * 2 * (size_t)pool->n_layer * sizeof(slm_half);
    /* The budget bounds the engine's blocks (as the daemon sizes them); the scratch block comes
     * out of the headroom. */
    size_t engine_bytes = bytes / (size_t)kv_blocks(pool) * (size_t)pool->n_blocks;
    size_t budget = slm_backend_cuda_kv_budget(be);
    if (engine_bytes > budget) {
        slm_log(SLM_LOG_ERR, "cuda backend: a KV pool of %.1f MiB exceeds the budget of %.1f MiB "
                "(gpu-memory-fraction %.2f of the free device memory)", (double)engine_bytes / 1048576,
                (double)budget / 1048576, ci->mem_fraction);
        return -ENOMEM;
    }
    pool->mem = cuda_alloc(be, bytes);
    return pool->mem ? 0 : -ENOMEM;
}

static void cuda_kv_free(struct slm_backend *be, struct slm_kv_pool *pool)
{
    graphs_reset(impl(be));
    if (pool->mem) cuda_free(be, pool->mem);
    pool->mem = NULL;
}

/* ---- the ops */

/* The lookup that reads the table as cuda_load_weight left it (device layout or GGUF's). */
static int embed_rows(struct cuda_impl *ci, const struct slm_weight *table, const int32_t *d_ids, int n, float *out)
{
    if (device_layout(table))
        return launched(slm_cuda_embed_device_layout(table->type, table->be_data, table->rows, table->cols, d_ids, n,
                                                     out, ci->stream),
                        "slm_cuda_embed_device_layout");
    return launched(slm_cuda_embed(table->type, table->be_data, table->rows, table->cols, d_ids, n, out, ci->stream),
                    "slm_cuda_embed");
}

static int cuda_embed(struct slm_backend *be, const struct slm_weight *table, const int32_t *tokens, int n,
                      float *out)
{
    struct cuda_impl *ci = impl(be);
    if (ci->graphs.cur)   /* ids from the step's metadata buffer */
        return embed_rows(ci, table, ci->graphs.d_tokens, n, out);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= table->rows) return -EINVAL;
    /* The first op of every pass: the device is made current on the calling thread. */
    CUDA_TRY(cudaSetDevice(ci->device));
    int rc = upload_ids(ci, tokens, n);
    if (rc) return rc;
    return embed_rows(ci, table, ci->ids.dev, n, out);
}

static int cuda_rmsnorm(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int n, int dim,
                        float eps, float *out)
{
    return launched(slm_cuda_rmsnorm(x, gamma->be_data, n, dim, eps, out, impl(be)->stream), "slm_cuda_rmsnorm");
}

/* ---- matmul: quantized weights take x quantized once per activation type (the CPU
 * backend's Q8_0 / Q8_1 / Q8_K rows, byte for byte) and the integer GEMV, which gives the CPU
 * backend's bits; F32 / F16 / BF16 weights take the fp32 GEMV. */

/* Tokens the quantized-activation scratch holds at least once it is allocated. */
#define Q8_SCRATCH_TOKENS 512

/* Region of the scratch an activation type uses: 0, 1, 2, or -1 (no integer path). */
static int q8_slot(uint32_t act_type)
{
    switch (act_type) {
    case SLM_TYPE_Q8_0: return 0;
    case SLM_TYPE_Q8_1: return 1;
    case SLM_TYPE_Q8_K: return 2;
    default: return -1;
    }
}

static size_t align256(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

static void q8_note_weight(struct cuda_impl *ci, const struct slm_weight *w)
{
    uint32_t at = slm_cuda_q8_act_type(w->type);
    int s = q8_slot(at);
    size_t rb = slm_cuda_q8_row_bytes(at, w->cols);
    if (s >= 0 && rb > ci->q8_row_max[s]) ci->q8_row_max[s] = rb;
}

/* Makes the scratch hold `need` bytes; a call of n tokens. A new one drops the graphs. */
static int q8_reserve(struct cuda_impl *ci, size_t need, int n)
{
    if (need <= ci->q8_bytes) return 0;
    size_t per_token = ci->q8_row_max[0] + ci->q8_row_max[1] + ci->q8_row_max[2];
    size_t want = per_token * (size_t)(n > Q8_SCRATCH_TOKENS ? n : Q8_SCRATCH_TOKENS) + 3 * 256;
    if (want < need) want = need;
    if (ci->q8) {
        slm_log(SLM_LOG_INFO, "cuda backend: quantized-activation scratch grows from %zu to %zu bytes (%d tokens)",
                ci->q8_bytes, want, n);
        graphs_reset(ci);   /* they hold the old one */
        CUDA_TRY(cudaFree(ci->q8));   /* synchronises: no queued GEMV reads it any more */
        ci->q8 = NULL;
        ci->q8_bytes = 0;
    }
    CUDA_TRY(cudaMalloc(&ci->q8, want));
    ci->q8_bytes = want;
    return 0;
}

/* Whether w takes the fused GEMV (x quantized inside each block) for n tokens. */
static int q8_fused(const struct slm_weight *w, int n)
{
    return n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL && slm_cuda_matvec_q8_fused_fits(w->type, w->cols, n);
}

/* One fused launch for w[j] and the later weights of fused that share its type and cols (up
 * to SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS); marks them in *done. */
static int q8_fused_group(struct cuda_impl *ci, int n_w, const struct slm_weight *const *w, uint64_t fused, int j,
                          const float *x, int n, float *const *y, int accumulate, uint64_t *done)
{
    const void *gw[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int64_t rows[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    float *gy[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int g = 0;
    for (int k = j; k < n_w && k < 64 && g < SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS; k++) {
        uint64_t bit = (uint64_t)1 << k;
        if (!(fused & bit) || (*done & bit) || w[k]->type != w[j]->type || w[k]->cols != w[j]->cols) continue;
        gw[g] = w[k]->be_data;
        rows[g] = w[k]->rows;
        gy[g] = y[k];
        g++;
        *done |= bit;
    }
    return launched(slm_cuda_matvec_q8_fused(w[j]->type, g, gw, rows, w[j]->cols, x, n, gy, accumulate, ci->stream),
                    "slm_cuda_matvec_q8_fused");
}

/* Quantized weights: for n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL (and x's quantized rows within
 * the fused kernel's shared memory) one fused launch per group of weights of one type and
 * cols; otherwise x quantized once per activation type, then one integer GEMV per weight. */
static int cuda_matmul(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                       float *const *y, int accumulate)
{
    struct cuda_impl *ci = impl(be);
    size_t off[3] = {0, 0, 0}, need = 0;
    int first[3] = {-1, -1, -1};   /* the first unfused weight of each activation type */
    uint64_t fused = 0, done = 0;   /* bit j: w[j] takes the fused GEMV; has been launched */
    for (int j = 0; j < n_w; j++) {
        uint32_t at = slm_cuda_q8_act_type(w[j]->type);
        int s = q8_slot(at);
        if (s < 0) continue;
        if (j < 64 && q8_fused(w[j], n)) {
            fused |= (uint64_t)1 << j;
            continue;
        }
        if (first[s] >= 0) continue;
        first[s] = j;
        off[s] = need;
        need += align256((size_t)n * slm_cuda_q8_row_bytes(at, w[j]->cols));
    }
    if (need) {
        int rc = q8_reserve(ci, need, n);
        if (rc) return rc;
    }
    for (int s = 0; s < 3; s++) {
        if (first[s] < 0) continue;
        const struct slm_weight *wf = w[first[s]];
        int rc = launched(slm_cuda_quantize_q8(slm_cuda_q8_act_type(wf->type), x, n, wf->cols, (char *)ci->q8 + off[s],
                                               ci->stream),
                          "slm_cuda_quantize_q8");
        if (rc) return rc;
    }
    for (int j = 0; j < n_w; j++) {
        int s = q8_slot(slm_cuda_q8_act_type(w[j]->type)), rc;
        uint64_t bit = j < 64 ? (uint64_t)1 << j : 0;
        if (fused & bit) {
            if (done & bit) continue;
            rc = q8_fused_group(ci, n_w, w, fused, j, x, n, y, accumulate, &done);
        } else if (s >= 0) {
            rc = launched(slm_cuda_matvec_q8(w[j]->type, w[j]->be_data, w[j]->rows, w[j]->cols, (char *)ci->q8 + off[s],
                                             n, y[j], accumulate, ci->stream),
                          "slm_cuda_matvec_q8");
        } else {
            rc = launched(slm_cuda_matvec(w[j]->type, w[j]->be_data, w[j]->rows, w[j]->cols, x, n, y[j], accumulate,
                                          ci->stream),
                          "slm_cuda_matvec");
        }
        if (rc) return rc;
    }
    return 0;
}

static int cuda_add_bias(struct slm_backend *be, float *x, const struct slm_weight *bias, int n)
{
    return launched(slm_cuda_add_bias(x, bias->be_data, n, (int)bias->cols, impl(be)->stream), "slm_cuda_add_bias");
}

static int cuda_swiglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    return launched(slm_cuda_swiglu(gate, up, n, out, impl(be)->stream), "slm_cuda_swiglu");
}

static int cuda_add(struct slm_backend *be, float *x, const float *y, size_t n)
{
    return launched(slm_cuda_add(x, y, n, impl(be)->stream), "slm_cuda_add");
}

/* End of the run of tokens from i: consecutive positions of one sequence. */
static int run_end(const struct slm_batch *b, int i)
{
    int j = i + 1;
    while (j < b->n_tokens && b->seq_row[j] == b->seq_row[i] && b->pos[j] == b->pos[j - 1] + 1) j++;
    return j;
}

/* The split kernel's tiles of b (slm_cuda_attn_tokens.tiles): each run cut into tiles of at
 * most cap tokens. Writes the n_tiles + 1 bounds (at most n_tokens + 1) and returns n_tiles. */
static int attn_tiles(const struct slm_batch *b, int cap, int32_t *tiles)
{
    int n_tiles = 0;
    tiles[0] = 0;
    for (int i = 0; i < b->n_tokens;) {
        int end = run_end(b, i);
        while (i < end) {
            i = end - i > cap ? i + cap : end;
            tiles[++n_tiles] = i;
        }
    }
    return n_tiles;
}

/* Uploads the batch's positions, rows, block tables and split tiles of at most tile_cap tokens
 * unless the device already holds the same ones (every layer of a pass sees the same batch:
 * one upload per pass). */
static int attn_upload(struct cuda_impl *ci, const struct slm_batch *b, int tile_cap)
{
    struct attn_meta *a = &ci->attn;
    int n = b->n_tokens, n_rows = 0, max_ctx = 0;
    for (int i = 0; i < n; i++) {
        if (b->seq_row[i] + 1 > n_rows) n_rows = b->seq_row[i] + 1;
        if (b->pos[i] + 1 > max_ctx) max_ctx = b->pos[i] + 1;
    }
    size_t tables = (size_t)n_rows * (size_t)b->max_blocks, meta = 2 * (size_t)n + tables;
    if (a->shadow_len && a->n_tokens == n && a->max_blocks == b->max_blocks && a->n_rows == n_rows &&
        a->tile_cap == tile_cap && !memcmp(a->shadow, b->pos, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t)))
        return 0;
    size_t room = meta + (size_t)n + 1;   /* the most tiles: one per token */
    if (room > a->shadow_cap) {
        int32_t *s = realloc(a->shadow, room * sizeof *s);
        if (!s) return -ENOMEM;
        a->shadow = s;
        a->shadow_cap = room;
    }
    a->shadow_len = 0;   /* invalid until the upload is queued */
    int rc = staging_reserve(&a->st, room);
    if (rc) return rc;
    memcpy(a->shadow, b->pos, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t));
    int n_tiles = attn_tiles(b, tile_cap, a->shadow + meta);
    size_t len = meta + (size_t)n_tiles + 1;
    memcpy(a->st.host, a->shadow, len * sizeof(int32_t));
    if ((rc = staging_upload(ci, &a->st, len))) return rc;
    a->shadow_len = len;
    a->n_tokens = n;
    a->n_rows = n_rows;
    a->max_blocks = b->max_blocks;
    a->max_ctx = max_ctx;
    a->tile_cap = tile_cap;
    a->n_tiles = n_tiles;
    return 0;
}

/* Workspace of at least `need` bytes. A new one drops the graphs (they hold the old one), so it
 * grows to a power of two of at least 1 MiB: few growths, and none in the step shapes of the
 * short contexts. */
static int workspace_reserve(struct cuda_impl *ci, size_t need)
{
    if (need <= ci->workspace_bytes) return 0;
    size_t grow = (size_t)1 << 20;
    while (grow < need) grow *= 2;
    need = grow;
    graphs_reset(ci);
    if (ci->workspace) cudaFree(ci->workspace);   /* synchronises */
    ci->workspace = NULL, ci->workspace_bytes = 0;
    CUDA_TRY(cudaMalloc(&ci->workspace, need));
    ci->workspace_bytes = need;
    return 0;
}

/* The attention workspace of n tokens whose contexts reach max_ctx: the exact kernel's part
 * (contexts capped at T) first, then, at *split_off (256-byte aligned), the split kernel's
 * when `split` (the contexts past T). Returns the total. */
static size_t attn_ws_layout(const struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh, int n, int max_ctx,
                             int split, size_t *split_off)
{
    int exact_ctx = max_ctx < ci->exact_ctx ? max_ctx : ci->exact_ctx;
    size_t e = exact_ctx > 0 ? slm_cuda_attention_workspace(sh, n, exact_ctx) : 0;
    e = (e + 255) / 256 * 256;
    *split_off = e;
    return e + (split ? slm_cuda_attention_split_workspace(sh, n, max_ctx) : 0);
}

/* The two attention launches over the tokens t (positions bounded by max_ctx): the exact
 * kernel for positions < T, and the split kernel for positions >= T when `split`. */
static int attention_launch(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh,
                            const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv, const float *q,
                            int max_ctx, int split, float *out)
{
    size_t split_off;
    int rc = workspace_reserve(ci, attn_ws_layout(ci, sh, t->n_tokens, max_ctx, split, &split_off));
    if (rc) return rc;
    int exact_ctx = max_ctx < ci->exact_ctx ? max_ctx : ci->exact_ctx;
    if (exact_ctx > 0 &&
        (rc = launched(slm_cuda_attention_exact(sh, t, kv, q, exact_ctx, 0, ci->exact_ctx, ci->workspace, split_off,
                                                out, ci->stream),
                       "slm_cuda_attention_exact")))
        return rc;
    if (!split) return 0;
    return launched(slm_cuda_attention_split(sh, t, kv, q, max_ctx, ci->exact_ctx, INT_MAX,
                                             (char *)ci->workspace + split_off, ci->workspace_bytes - split_off, out,
                                             ci->stream),
                    "slm_cuda_attention_split");
}

/* The rotation table of (base, rope_dim) covering positions [0, need): grown to a power of two
 * of at least ROPE_MIN_POSITIONS when short (a new table drops the graphs, which hold the old
 * one; a graph step's warm-up grows it before its capture). */
static int rope_table(struct cuda_impl *ci, float base, int rope_dim, int need, struct slm_cuda_rope_table *out)
{
    *out = (struct slm_cuda_rope_table){NULL, 0};
    if (rope_dim <= 0) return 0;   /* nothing rotates */
    struct rope_cache *rc = NULL;
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (ci->rope[i].dev && ci->rope[i].base == base && ci->rope[i].rope_dim == rope_dim) rc = &ci->rope[i];
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (!ci->rope[i].dev) rc = &ci->rope[i];
    if (!rc) {
        slm_log(SLM_LOG_ERR, "cuda backend: more than %d RoPE (base, dims) pairs in one model", ROPE_TABLES);
        return -ENOSPC;
    }
    if (!rc->dev || rc->positions < need) {
        int positions = ROPE_MIN_POSITIONS, half = rope_dim / 2;
        while (positions < need) positions *= 2;
        size_t n = (size_t)positions * (size_t)rope_dim;
        float *host = malloc(n * sizeof *host), *c = malloc((size_t)half * 2 * sizeof *c);
        if (!host || !c) {
            free(host);
            free(c);
            return -ENOMEM;
        }
        for (int p = 0; p < positions; p++) {
            slm_cpu_rope_angles(p, rope_dim, base, c, c + half);
            for (int j = 0; j < half; j++) {
                host[((size_t)p * half + j) * 2] = c[j];
                host[((size_t)p * half + j) * 2 + 1] = c[half + j];
            }
        }
        free(c);
        graphs_reset(ci);
        if (rc->dev) cudaFree(rc->dev);   /* synchronises */
        rc->dev = NULL;
        int err = cuda_ok(cudaMalloc((void **)&rc->dev, n ? n * sizeof *host : 256), "cudaMalloc (rope table)");
        if (!err) err = cuda_ok(cudaMemcpy(rc->dev, host, n * sizeof *host, cudaMemcpyHostToDevice),
                                "cudaMemcpy (rope table)");
        free(host);
        if (err) {
            if (rc->dev) cudaFree(rc->dev);
            rc->dev = NULL;
            return err;
        }
        rc->base = base, rc->rope_dim = rope_dim, rc->positions = positions;
    }
    *out = (struct slm_cuda_rope_table){.cos_sin = rc->dev, .positions = rc->positions};
    return 0;
}

/* Attention of a graph-shaped step: every token alone in its (own) block table row, over
 * max_ctx = the step's partitions x 128, from the metadata buffer. Both kernels are launched
 * whatever the positions (a graph must not depend on them). */
static int attention_graph_step(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh, float rope_base,
                                const struct slm_cuda_kv_layer *kv, float *q, float *k, const float *v, float *out)
{
    const struct graphs *g = &ci->graphs;
    struct slm_cuda_attn_tokens t = {.n_tokens = g->tokens, .pos = g->d_pos, .seq_row = g->d_row,
                                     .block_tables = g->d_tables, .n_seq_rows = g->tokens, .max_blocks = g->stride};
    struct slm_cuda_rope_table rope;
    int rc = rope_table(ci, rope_base, sh->rope_dim, g->max_ctx, &rope);
    if (rc) return rc;
    rc = launched(slm_cuda_rope_store(sh, &t, kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store");
    if (rc) return rc;
    return attention_launch(ci, sh, &t, kv, q, g->max_ctx, 1, out);
}

static int cuda_attention(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                          const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    struct cuda_impl *ci = impl(be);
    struct slm_cuda_attn_shape sh = {
        .n_head = p->n_head, .n_head_kv = p->n_head_kv, .head_dim = p->head_dim, .rope_dim = p->rope_dim,
        .rope_layout = p->rope_layout, .scale = p->scale,
    };
    size_t per_layer = kv_layer_halves(pool);
    slm_half *k_pool = (slm_half *)pool->mem + (size_t)layer * 2 * per_layer;
    struct slm_cuda_kv_layer kv = {.k = k_pool, .v = k_pool + per_layer, .n_blocks = kv_blocks(pool),
                                   .block_size = pool->block_size};
    if (ci->graphs.cur) return attention_graph_step(ci, &sh, p->rope_base, &kv, q, k, v, out);
    /* A chunk's tokens share the split kernel's K/V tiles, up to its row cap at this group
     * (a bad group is refused by the launchers); a step of single tokens passes no tiles
     * (the same bits, the kernel's variant with fewer registers). */
    int group = sh.n_head_kv > 0 ? sh.n_head / sh.n_head_kv : 0;
    int tile_cap = group > 0 && group <= SLM_CUDA_ATTN_TILE_ROWS ? SLM_CUDA_ATTN_TILE_ROWS / group : 1;
    int rc = attn_upload(ci, b, tile_cap);
    if (rc) return rc;
    const struct attn_meta *a = &ci->attn;
    const int32_t *d_pos = a->st.dev, *d_row = a->st.dev + a->n_tokens, *d_tables = a->st.dev + 2 * a->n_tokens;
    struct slm_cuda_attn_tokens all = {.n_tokens = b->n_tokens, .pos = d_pos, .seq_row = d_row,
                                       .block_tables = d_tables, .n_seq_rows = a->n_rows, .max_blocks = b->max_blocks,
                                       .tiles = d_tables + (size_t)a->n_rows * (size_t)a->max_blocks,
                                       .n_tiles = a->n_tiles};
    if (a->n_tiles == a->n_tokens) all.tiles = NULL, all.n_tiles = 0;
    struct slm_cuda_rope_table rope;
    if ((rc = rope_table(ci, p->rope_base, p->rope_dim, a->max_ctx, &rope))) return rc;
    if ((rc = launched(slm_cuda_rope_store(&sh, &all, &kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store")))
        return rc;
    return attention_launch(ci, &sh, &all, &kv, q, a->max_ctx, a->max_ctx > ci->exact_ctx, out);
}

static int cuda_gather_rows(struct slm_backend *be, const float *x, int dim, const int32_t *rows, int n_rows,
                            float *dst)
{
    struct cuda_impl *ci = impl(be);
    if (ci->graphs.cur)
        return launched(slm_cuda_gather_rows(x, ci->graphs.tokens, dim, ci->graphs.d_out, n_rows, dst, ci->stream),
                        "slm_cuda_gather_rows");
    int x_rows = 0;
    for (int i = 0; i < n_rows; i++) {
        if (rows[i] < 0) return -EINVAL;
        if (rows[i] + 1 > x_rows) x_rows = rows[i] + 1;
    }
    int rc = upload_ids(ci, rows, n_rows);
    if (rc) return rc;
    return launched(slm_cuda_gather_rows(x, x_rows, dim, ci->ids.dev, n_rows, dst, ci->stream), "slm_cuda_gather_rows");
}

static int cuda_to_host(struct slm_backend *be, const float *src, size_t n, float *host)
{
    struct cuda_impl *ci = impl(be);
    CUDA_TRY(cudaMemcpyAsync(host, src, n * sizeof *host, cudaMemcpyDeviceToHost, ci->stream));
    CUDA_TRY(cudaStreamSynchronize(ci->stream));
    return 0;
}

/* ---- step graphs (docs/cuda.md, "CUDA graphs") */

/* Tokens per captured decode step: the powers of two and the midpoints between them (a step
 * is padded by at most half of its tokens). Above the last one a step runs op by op. */
static const int graph_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256};

/* Drops every captured graph (a buffer they use is being freed or moved); the shapes seen
 * warm up and are captured again. */
static void graphs_reset(struct cuda_impl *ci)
{
    struct graphs *g = &ci->graphs;
    int any = 0;
    for (int i = 0; i < g->n_entries; i++) {
        struct graph_entry *e = &g->entries[i];
        if (e->exec) {
            if (!any) cuda_ok(cudaStreamSynchronize(ci->stream), "cudaStreamSynchronize");
            any = 1;
            cudaGraphExecDestroy(e->exec);
            e->exec = NULL;
        }
        if (e->state != GRAPH_EAGER) e->state = GRAPH_NEW;
    }
    if (any) g->stats.resets++;
}

/* Whether b is a decode-only step: every token a run of one (no two consecutive positions
 * of one sequence) and every token's logits wanted. */
static int decode_only(const struct slm_batch *b)
{
    if (b->n_out != b->n_tokens) return 0;
    for (int i = 0; i + 1 < b->n_tokens; i++)
        if (run_end(b, i) != i + 1) return 0;
    return 1;
}

/* The bucket of n tokens when at most cap fit, or -1. */
static int graph_bucket(int n, int cap)
{
    if (n > cap) return -1;
    for (size_t i = 0; i < sizeof graph_buckets / sizeof graph_buckets[0]; i++)
        if (graph_buckets[i] >= n) return graph_buckets[i] <= cap ? graph_buckets[i] : cap;
    return -1;
}

static struct graph_entry *graph_entry_get(struct graphs *g, int tokens, int parts, int stride)
{
    for (int i = 0; i < g->n_entries; i++) {
        struct graph_entry *e = &g->entries[i];
        if (e->tokens == tokens && e->parts == parts && e->stride == stride) return e;
    }
    if (g->n_entries == GRAPH_MAX_ENTRIES) return NULL;
    struct graph_entry *e = &g->entries[g->n_entries++];
    *e = (struct graph_entry){.tokens = tokens, .parts = parts, .stride = stride, .state = GRAPH_NEW};
    return e;
}

/* Writes b padded to B tokens into the metadata buffer (host), queues its one copy to the
 * device, and points *run at the host copy. Token i gets block table row i (stride entries: the
 * blocks of `parts` partitions). Padding tokens: token 0 at position 0 of a row of scratch
 * blocks; their logits rows follow b's. */
static int graph_meta_upload(struct cuda_impl *ci, const struct slm_kv_pool *pool, const struct slm_batch *b, int B,
                             int stride, struct slm_batch *run)
{
    struct graphs *g = &ci->graphs;
    size_t len = (size_t)B * (4 + (size_t)stride);
    int32_t *old = g->meta.dev;
    int rc = staging_reserve(&g->meta, len);
    if (rc) return rc;
    if (g->meta.dev != old) graphs_reset(ci);
    int32_t *h = g->meta.host, *tok = h, *pos = h + B, *row = h + 2 * B, *out = h + 3 * B, *tab = h + 4 * B;
    int n = b->n_tokens, scratch = pool->n_blocks;
    for (int i = 0; i < B; i++) {
        int used = 0;
        int32_t *t = tab + (size_t)i * (size_t)stride;
        if (i < n) {
            tok[i] = b->tokens[i], pos[i] = b->pos[i], out[i] = b->out_rows[i];
            used = b->pos[i] / pool->block_size + 1;
            memcpy(t, b->block_tables + (size_t)b->seq_row[i] * (size_t)b->max_blocks, (size_t)used * sizeof *t);
        } else {
            tok[i] = 0, pos[i] = 0, out[i] = i;
        }
        row[i] = i;
        for (int j = used; j < stride; j++) t[j] = scratch;
    }
    if ((rc = staging_upload(ci, &g->meta, len))) return rc;
    const int32_t *d = g->meta.dev;
    g->tokens = B, g->stride = stride;
    g->d_tokens = d, g->d_pos = d + B, g->d_row = d + 2 * B, g->d_out = d + 3 * B, g->d_tables = d + 4 * B;
    *run = (struct slm_batch){.n_tokens = B, .tokens = tok, .pos = pos, .seq_row = row, .block_tables = tab,
                              .max_blocks = stride, .n_out = B, .out_rows = out};
    return 0;
}

static int cuda_step_begin(struct slm_backend *be, const void *owner, int max_tokens, const struct slm_kv_pool *pool,
                           const struct slm_batch *b, struct slm_batch *run)
{
    struct cuda_impl *ci = impl(be);
    struct graphs *g = &ci->graphs;
    *run = *b;
    int B = g->mode ? graph_bucket(b->n_tokens, max_tokens) : -1;
    if (B < 0 || !decode_only(b)) {
        g->stats.eager++;
        return 0;
    }
    CUDA_TRY(cudaSetDevice(ci->device));
    if (owner != g->owner || pool->mem != g->pool_mem) {
        graphs_reset(ci);
        g->owner = owner, g->pool_mem = pool->mem;
    }
    /* Partitions: the smallest power of two that covers every token's context (a token's
     * attention stops at its own position), at most the block tables' reach. */
    int max_pos = 0;
    for (int i = 0; i < b->n_tokens; i++)
        if (b->pos[i] > max_pos) max_pos = b->pos[i];
    int reach = b->max_blocks * pool->block_size, need = max_pos / GRAPH_CTX_STEP + 1, parts = 1;
    int max_parts = (reach + GRAPH_CTX_STEP - 1) / GRAPH_CTX_STEP;
    while (parts < need) parts *= 2;
    if (parts > max_parts) parts = max_parts;
    int ctx = parts * GRAPH_CTX_STEP;
    int stride = (ctx + pool->block_size - 1) / pool->block_size;
    if (stride > b->max_blocks) stride = b->max_blocks;

    struct graph_entry *e = graph_entry_get(g, B, parts, stride);
    if (!e || e->state == GRAPH_EAGER) {
        g->stats.eager++;
        return 0;
    }
    int rc = graph_meta_upload(ci, pool, b, B, stride, run);   /* may drop the graphs (e->state NEW) */
    if (rc) return rc;
    g->max_ctx = ctx;
    if (e->state == GRAPH_READY) {
        CUDA_TRY(cudaGraphLaunch(e->exec, ci->stream));
        g->stats.replays++;
        return 1;
    }
    g->cur = e;
    if (e->state == GRAPH_NEW) {   /* the warm-up: graph-shaped, op by op; sizes the buffers */
        e->state = GRAPH_WARM;
        g->stats.warmups++;
        return 0;
    }
    cudaError_t err = cudaStreamBeginCapture(ci->stream, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) {
        cudaGetLastError();
        slm_log(SLM_LOG_WARNING, "cuda backend: cannot capture the step graph of %d tokens, %d partitions (%s); "
                "it runs op by op", B, parts, cudaGetErrorName(err));
        e->state = GRAPH_EAGER;
        g->stats.failures++;
        g->cur = NULL;
        *run = *b;
        g->stats.eager++;
        return 0;
    }
    g->capturing = 1;
    return 0;
}

static int cuda_step_end(struct slm_backend *be, int rc)
{
    struct cuda_impl *ci = impl(be);
    struct graphs *g = &ci->graphs;
    struct graph_entry *e = g->cur;
    g->cur = NULL;
    if (!e || !g->capturing) return rc;
    g->capturing = 0;
    if (g->mode == 2) cudaStreamSynchronize(ci->stream);   /* refused during a capture, which it breaks */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t err = cudaStreamEndCapture(ci->stream, &graph);
    const char *why = rc ? "an op failed while capturing" : NULL;
    if (!why && err != cudaSuccess) why = cudaGetErrorName(err);
    if (!why && (err = cudaGraphInstantiate(&exec, graph, 0)) != cudaSuccess) why = cudaGetErrorName(err);
    if (graph) cudaGraphDestroy(graph);
    if (!why && (err = cudaGraphLaunch(exec, ci->stream)) != cudaSuccess) why = cudaGetErrorName(err);
    if (why) {
        cudaGetLastError();
        if (exec) cudaGraphExecDestroy(exec);
        slm_log(SLM_LOG_WARNING, "cuda backend: capturing the step graph of %d tokens, %d partitions failed (%s); "
                "it runs op by op from now on", e->tokens, e->parts, why);
        e->state = GRAPH_EAGER;
        g->stats.failures++;
        g->stats.eager++;
        return 1;
    }
    e->exec = exec;
    e->state = GRAPH_READY;
    g->stats.captures++;
    slm_log(SLM_LOG_DEBUG, "cuda backend: captured the step graph of %d tokens, %d partitions (%ld graphs)",
            e->tokens, e->parts, g->stats.captures);
    return 0;
}

int slm_backend_cuda_graph_stats(struct slm_backend *be, struct slm_cuda_graph_stats *st)
{
    if (!be || be->ops->step_begin != cuda_step_begin) return -ENOTSUP;
    *st = impl(be)->graphs.stats;
    return 0;
}

/* ---- sampling on the device: the `sample` op (slm_cuda_sample) */

/* One call's staging, the same layout in pinned host memory and on the device:
 *   params (n, struct slm_cuda_sampling) | hist (n_hist int32, padded to 8 bytes) |
 *   rng (n, 4 uint64) | ids (n int32, padded) | logprobs (n float, padded) | top (n, 20 pairs)
 * params .. rng go up in one copy; rng .. ids (.. top when a row wants logprobs) come back in
 * one. Both buffers and the kernel's workspace only grow (their addresses change only then). */
struct sample_state {
    struct staging st;        /* the layout above in int32 units (no event: the call synchronises) */
    char *host, *dev;         /* st.host, st.dev as bytes */
    void *workspace;          /* slm_cuda_sample_workspace of ws_rows rows */
    size_t workspace_bytes;
    int ws_rows, ws_vocab;
};

_Static_assert(SLM_CUDA_SAMPLE_MAX_LOGPROBS == SLM_LOGPROBS_MAX, "top rows: one width");
_Static_assert(sizeof(struct slm_logprob) == 8, "top pairs: int32 id then float, as the kernel writes them");

static size_t round8(size_t n)
{
    return (n + 7) / 8 * 8;
}

static void sample_state_free(struct sample_state *st)
{
    if (!st) return;
    staging_free(&st->st);
    if (st->workspace) cudaFree(st->workspace);
    free(st);
}

/* Room for `bytes` of staging and the workspace of n_rows rows of n_vocab. The stream is idle
 * here (every call ends with a synchronisation), so the old buffers can go at once. */
static int sample_reserve(struct sample_state *st, size_t bytes, int n_rows, int n_vocab)
{
    int rc = staging_reserve(&st->st, (bytes + 3) / 4);
    if (rc) return rc;
    st->host = (char *)st->st.host, st->dev = (char *)st->st.dev;
    if (n_rows > st->ws_rows || n_vocab != st->ws_vocab) {
        int rows = (n_rows + 7) / 8 * 8;
        size_t need = slm_cuda_sample_workspace(rows, n_vocab);
        if (!need) return -EINVAL;
        if (st->workspace) cudaFree(st->workspace);
        st->workspace = NULL, st->workspace_bytes = 0, st->ws_rows = 0;
        if (cudaMalloc(&st->workspace, need) != cudaSuccess) {
            cudaGetLastError();
            slm_log(SLM_LOG_ERR, "cuda backend: cudaMalloc of %zu bytes of sampling workspace (%d rows) failed", need,
                    rows);
            return -ENOMEM;
        }
        st->workspace_bytes = need;
        st->ws_rows = rows;
        st->ws_vocab = n_vocab;
    }
    return 0;
}

static int cuda_sample(struct slm_backend *be, const float *logits, int n_rows, int n_vocab,
                       struct slm_sample_row *rows, int32_t *ids, float *logprob, struct slm_logprob *top)
{
    struct cuda_impl *ci = impl(be);
    if (n_rows < 1 || n_vocab < 1 || !rows || !ids) return -EINVAL;
    size_t n = (size_t)n_rows, n_hist = 0;
    int want_lp = 0;
    for (int i = 0; i < n_rows; i++) {
        const struct slm_sample_row *r = &rows[i];
        if (r->n_window < 0 || (r->n_window && !r->window) || r->n_logprobs < 0 ||
            r->n_logprobs > SLM_LOGPROBS_MAX || (r->n_logprobs && (!logprob || !top)))
            return -EINVAL;
        n_hist += (size_t)r->n_window;
        want_lp |= r->n_logprobs > 0;
    }
    if (n_hist > INT32_MAX) return -EINVAL;
    const size_t hist_off = n * sizeof(struct slm_cuda_sampling), rng_off = hist_off + round8(n_hist * 4),
                 ids_off = rng_off + n * 32, lp_off = ids_off + round8(n * 4), top_off = lp_off + round8(n * 4),
                 end = top_off + n * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8;
    if (!ci->sampling && !(ci->sampling = calloc(1, sizeof *ci->sampling))) return -ENOMEM;
    struct sample_state *st = ci->sampling;
    CUDA_TRY(cudaSetDevice(ci->device));
    int rc = sample_reserve(st, end, n_rows, n_vocab);
    if (rc) return rc;

    struct slm_cuda_sampling *params = (struct slm_cuda_sampling *)st->host;
    int32_t *hist = (int32_t *)(st->host + hist_off);
    uint64_t *rng = (uint64_t *)(st->host + rng_off);
    int32_t off = 0;
    for (int i = 0; i < n_rows; i++) {
        const struct slm_sample_row *r = &rows[i];
        params[i] = (struct slm_cuda_sampling){
            .temperature = r->temperature, .top_k = r->top_k, .top_p = r->top_p, .min_p = r->min_p,
            .log_min_p = r->min_p > 0 ? logf(r->min_p) : 0.0f,   /* the host's logf, as sampler.c */
            .repeat_penalty = r->repeat_penalty, .presence_penalty = r->presence_penalty,
            .frequency_penalty = r->frequency_penalty, .hist_off = off, .hist_len = r->n_window,
            .n_logprobs = r->n_logprobs,
        };
        if (r->n_window) memcpy(hist + off, r->window, (size_t)r->n_window * sizeof *hist);
        off += r->n_window;
        memcpy(rng + 4 * (size_t)i, r->rng, sizeof r->rng);
    }
    CUDA_TRY(cudaMemcpyAsync(st->dev, st->host, ids_off, cudaMemcpyHostToDevice, ci->stream));
    rc = launched(slm_cuda_sample(logits, n_rows, n_vocab, (const struct slm_cuda_sampling *)st->dev,
                                  (uint64_t *)(st->dev + rng_off), (const int32_t *)(st->dev + hist_off), (int)n_hist,
                                  st->workspace, st->workspace_bytes, (int32_t *)(st->dev + ids_off),
                                  want_lp ? (float *)(st->dev + lp_off) : NULL, want_lp ? st->dev + top_off : NULL,
                                  ci->stream),
                  "slm_cuda_sample");
    if (rc) {
        cudaStreamSynchronize(ci->stream);   /* the upload may still read host: let it finish */
        return rc;
    }
    size_t back = (want_lp ? end : ids_off + n * 4) - rng_off;
    CUDA_TRY(cudaMemcpyAsync(st->host + rng_off, st->dev + rng_off, back, cudaMemcpyDeviceToHost, ci->stream));
    CUDA_TRY(cudaStreamSynchronize(ci->stream));
    memcpy(ids, st->host + ids_off, n * sizeof *ids);
    for (int i = 0; i < n_rows; i++) memcpy(rows[i].rng, rng + 4 * (size_t)i, sizeof rows[i].rng);
    if (want_lp) {
        const float *lp = (const float *)(st->host + lp_off);
        for (int i = 0; i < n_rows; i++) {
            if (!rows[i].n_logprobs) continue;
            logprob[i] = lp[i];
            memcpy(top + (size_t)i * SLM_LOGPROBS_MAX, st->host + top_off + (size_t)i * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8,
                   (size_t)rows[i].n_logprobs * sizeof *top);
        }
    }
    return 0;
}

static void cuda_destroy(struct slm_backend *be)
{
    struct cuda_impl *ci = impl(be);
    if (ci) {
        if (ci->stream) cuda_ok(cudaStreamSynchronize(ci->stream), "cudaStreamSynchronize");
        graphs_reset(ci);
        staging_free(&ci->ids);
        staging_free(&ci->attn.st);
        staging_free(&ci->graphs.meta);
        free(ci->attn.shadow);
        sample_state_free(ci->sampling);
        if (ci->workspace) cudaFree(ci->workspace);
        if (ci->q8) cudaFree(ci->q8);
        for (int i = 0; i < ROPE_TABLES; i++)
            if (ci->rope[i].dev) cudaFree(ci->rope[i].dev);
        if (ci->stream) cudaStreamDestroy(ci->stream);
        free(ci);
    }
    free(be);
}

static const struct slm_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .load_weight = cuda_load_weight,
    .unload_weight = cuda_unload_weight,
    .kv_alloc = cuda_kv_alloc,
    .kv_free = cuda_kv_free,
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .add_bias = cuda_add_bias,
    .attention = cuda_attention,
    .swiglu = cuda_swiglu,
    .add = cuda_add,
    .gather_rows = cuda_gather_rows,
    .to_host = cuda_to_host,
    .step_begin = cuda_step_begin,
    .step_end = cuda_step_end,
    .sample = cuda_sample,
};

int slm_backend_cuda_devices(char *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        cudaGetLastError();   /* the refusal is expected: do not leave it sticky */
        slm_err_set(err, "no CUDA device (cudaGetDeviceCount: %s)",
                    e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 0;
    }
    return n;
}

int slm_backend_cuda_emulated(void)
{
#ifdef SLM_BACKEND_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

size_t slm_backend_cuda_kv_budget(struct slm_backend *be)
{
    struct cuda_impl *ci = impl(be);
    size_t free_b = 0, total_b = 0;
    if (cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice") ||
        cuda_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"))
        return 0;
    return (size_t)((double)free_b * ci->mem_fraction);
}

struct slm_backend *slm_backend_cuda_create(int device, double gpu_memory_fraction, char *err)
{
    if (!(gpu_memory_fraction > 0.0 && gpu_memory_fraction <= 1.0)) {
        slm_err_set(err, "cuda backend: gpu-memory-fraction %g is not in (0, 1]", gpu_memory_fraction);
        return NULL;
    }
    int n = slm_backend_cuda_devices(err);
    if (n < 1) return NULL;
    if (device < 0 || device >= n) {
        slm_err_set(err, "cuda backend: device %d does not exist (%d device%s)", device, n, n == 1 ? "" : "s");
        return NULL;
    }
    struct slm_backend *be = calloc(1, sizeof *be);
    struct cuda_impl *ci = calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        slm_err_set(err, "cuda backend: out of memory");
        return NULL;
    }
    be->ops = &cuda_ops;
    be->impl = ci;
    be->n_threads = 1;
    ci->device = device;
    ci->mem_fraction = gpu_memory_fraction;
    struct cudaDeviceProp prop;
    const char *call = "cudaSetDevice";
    cudaError_t e = cudaSetDevice(device);
    if (!e) call = "cudaGetDeviceProperties", e = cudaGetDeviceProperties(&prop, device);
    if (!e) call = "cudaStreamCreateWithFlags", e = cudaStreamCreateWithFlags(&ci->stream, cudaStreamNonBlocking);
    if (!e) call = "cudaEventCreate", e = cudaEventCreateWithFlags(&ci->ids.done, cudaEventDisableTiming);
    if (!e) e = cudaEventCreateWithFlags(&ci->attn.st.done, cudaEventDisableTiming);
    if (!e) e = cudaEventCreateWithFlags(&ci->graphs.meta.done, cudaEventDisableTiming);
    if (e) {
        slm_err_set(err, "cuda backend: device %d: %s: %s", device, call, cudaGetErrorString(e));
        cudaGetLastError();
        cuda_destroy(be);
        return NULL;
    }
    const char *graphs = getenv("SLM_CUDA_GRAPHS");
    ci->graphs.mode = !graphs || !*graphs || strcmp(graphs, "0") ? 1 : 0;
    if (graphs && !strcmp(graphs, "test-break-capture")) ci->graphs.mode = 2;
    slm_log(SLM_LOG_INFO, "cuda backend: device %d of %d: %s, sm_%d%d, %zu MiB%s; decode step graphs %s", device, n,
            prop.name, prop.major, prop.minor, (size_t)prop.totalGlobalMem >> 20,
            slm_backend_cuda_emulated() ? " (SIMT emulator)" : "",
            ci->graphs.mode == 0 ? "off (SLM_CUDA_GRAPHS=0)" : ci->graphs.mode == 2 ? "on, every capture broken (test)" : "on");
    ci->exact_ctx = EXACT_ATTN_CTX;
    const char *exact = getenv("SLM_CUDA_EXACT_ATTN_CTX");
    if (exact && *exact) {
        char *end;
        long v = strtol(exact, &end, 10);
        if (*end || v < 0 || v > INT_MAX)
            slm_log(SLM_LOG_WARNING, "cuda backend: SLM_CUDA_EXACT_ATTN_CTX=%s is not a position count; using %d",
                    exact, EXACT_ATTN_CTX);
        else
            ci->exact_ctx = (int)v;
    }
    slm_log(SLM_LOG_INFO, "cuda backend: attention: positions < %d exact (CPU order), from %d split", ci->exact_ctx,
            ci->exact_ctx);
    const char *sampling = getenv("SLM_CUDA_SAMPLING");
    if (sampling && !strcmp(sampling, "0")) {
        ci->host_sampling_ops = cuda_ops;
        ci->host_sampling_ops.sample = NULL;
        be->ops = &ci->host_sampling_ops;
        slm_log(SLM_LOG_INFO, "cuda backend: SLM_CUDA_SAMPLING=0: tokens are sampled on the host");
    }
    return be;
}

#else /* no CUDA backend in this build */

int slm_backend_cuda_devices(char *err)
{
    slm_err_set(err, "this slmd was built without the CUDA backend (no CUDA toolkit at build time)");
    return 0;
}

int slm_backend_cuda_emulated(void)
{
    return 0;
}

size_t slm_backend_cuda_kv_budget(struct slm_backend *be)
{
    return 0;
}

int slm_backend_cuda_graph_stats(struct slm_backend *be, struct slm_cuda_graph_stats *st)
{
    return -ENOTSUP;
}

struct slm_backend *slm_backend_cuda_create(int device, double gpu_memory_fraction, char *err)
{
    slm_backend_cuda_devices(err);
    return NULL;
}

#endif
