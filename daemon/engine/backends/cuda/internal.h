/*
 * daemon/engine/backends/cuda/internal.h - what the CUDA backend's files share: the backend's
 * state (struct cuda_impl), its error helpers, and the functions one file calls in another.
 *
 * The files, one concern each (cuda/backend.c's comment describes the whole backend), each
 * calling only those below it: resources.c < ops.c, attention.c, sampling.c < graphs.c <
 * backend.c:
 *   backend.c    the ops table, creation and destruction, device queries;
 *   resources.c  staging of host metadata, device memory, the resident weights, the KV pool;
 *   ops.c        embedding, RMSNorm, the matmuls, element-wise ops, gather, copies to the host;
 *   attention.c  RoPE tables, the attention metadata upload, the attention launches;
 *   graphs.c     the decode step graphs (step_begin / step_end);
 *   sampling.c   the `sample` op.
 * Compiled only into the CUDA variants of the backend (against nvcc's kernels or the SIMT
 * emulator); backends/cuda_none.c is the variant of a build without CUDA.
 */
#ifndef SLM_BACKENDS_CUDA_INTERNAL_H
#define SLM_BACKENDS_CUDA_INTERNAL_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "common/log.h"
#include "daemon/engine/backends/backend.h"
#include "daemon/engine/stop.h"
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
    struct staging st;        /* device: pos (n), seq_row (n), block_tables (n_rows, max_blocks), then the
                               * paged attention's tiles (2 per tile) */
    int32_t *shadow;          /* (shadow_cap) host copy of what st.dev holds, to skip re-uploads */
    size_t shadow_cap, shadow_len;
    int n_tokens, n_rows, max_blocks;
    int max_ctx;              /* largest pos + 1 */
    int single;               /* every token the single new token of its sequence (a decode-only step) */
    int tile_tokens, chunk;   /* what the tiles were cut for: tokens a tile, tokens a launch */
    size_t tiles_at;          /* int32 offset of the tiles in st.dev */
    int *chunk_tiles;         /* (n_chunks + 1) first tile of each launch's chunk of tokens, then the total */
    int chunk_tiles_cap;
};

/* Contexts in a step graph's shape are whole multiples of this many positions ("partitions"):
 * the attention launch's max_ctx, which lays out its workspace, is parts x GRAPH_CTX_STEP. */
#define GRAPH_CTX_STEP 128

/* One captured step shape: `tokens` (a bucket) tokens whose attention spans `parts`
 * partitions, with block tables of `stride` entries a row, `outs` logits rows (a bucket, or 0),
 * `mixed`: any other step than decode-only (prefill chunks and decodes: RoPE and store, then the
 * paged attention over tiles, `tiles` (a bucket) slots a launch). */
enum graph_state { GRAPH_NEW, GRAPH_WARM, GRAPH_READY, GRAPH_EAGER };
struct graph_entry {
    int tokens, parts, stride, outs, mixed, tiles;
    enum graph_state state;   /* NEW: next step warms up; WARM: next step captures; EAGER: capture failed */
    cudaGraphExec_t exec;     /* READY */
};
#define GRAPH_MAX_ENTRIES 512
#define GRAPH_MAX_CHUNKS 64   /* attention launches (chunks of tokens) a mixed step graph may hold */
#define GRAPH_MAX_TOKENS 512  /* graphs.c's last bucket */

/* The step graphs (docs/cuda.md, "CUDA graphs"). A decode step padded to `tokens` reads all of
 * its per-step metadata from meta.dev, laid out as tokens (B), pos (B), seq_row (B), out_rows (B),
 * block tables (B, stride), and with a local pool its block tables (B, stride): one copy from
 * meta.host before the graph launch. A mixed step: tokens (B), pos (B), seq_row (B), out_rows (O),
 * the paged attention's tiles (B slots of 2), block tables (B + 1 rows, stride), and with a local
 * pool its (B + 1, stride): a sequence's rows once, the padding tokens' row of scratch blocks
 * last; the copy stops after the rows in use. */
struct graphs {
    int mode;                 /* 0 off, 1 on, 2 on with every capture broken (a test of the fallback),
                               * 3 decode-only steps only (SLM_CUDA_GRAPHS=decode: the other side of an A/B) */
    const void *owner;        /* the forward pass whose activations the graphs use */
    const void *pool_mem;     /* the KV pool they use */
    const void *local_mem;    /* and its local pool (NULL without one) */
    struct graph_entry entries[GRAPH_MAX_ENTRIES];
    int n_entries;
    struct staging meta;
    /* The step now running graph-shaped (a warm-up or a capture), else NULL, and its layout. */
    struct graph_entry *cur;
    int capturing;
    int tokens, stride, max_ctx;
    const int32_t *d_tokens, *d_pos, *d_row, *d_out, *d_tables;
    const int32_t *d_tables_local;   /* the local pool's tables, NULL without one */
    /* A mixed step's: its tiles (d_tiles) are cut for the attention shape every attention call
     * notes (attn_shape, its tokens a tile and a launch; 0 until the first call;
     * attn_shapes_differ once two calls' cut differently: no mixed step graphs then);
     * chunk_tiles[c]: the first tile slot of launch c, then the slots in all; rows: the table
     * rows the kernels may name (B + 1). */
    int mixed, rows;
    const int32_t *d_tiles;
    int chunk_tiles[GRAPH_MAX_CHUNKS + 1];
    int32_t cut_tiles[2 * GRAPH_MAX_TOKENS];   /* the step's tiles as step_begin cut them (graphs.c) */
    int cut_count[GRAPH_MAX_CHUNKS];
    int attn_tile_tokens, attn_chunk, attn_shapes_differ;
    struct slm_cuda_attn_shape attn_shape;
    struct slm_cuda_graph_stats stats;
};

/* RoPE's cos and sin, made on the host (slm_cpu_rope_angles: the CPU backend's bits), one
 * table per (base, rope_dim) the model uses (Gemma 3 has two), for positions [0, positions). */
struct rope_cache {
    float base;
    int rope_dim;
    const float *factors;     /* (rope_dim / 2) frequency factors in the mapping, or NULL */
    float mscale;             /* cos and sin times this */
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
    struct attn_meta attn[2]; /* [0] the global pool's tables, [1] a local pool's (slm_kv_pool.window > 0):
                               * a pass alternating between the two uploads each once */
    void *workspace;          /* attention: completion counters (kept zero), then partial results */
    size_t workspace_bytes;
    struct graphs graphs;
    /* matmul: x quantized for the decode GEMV when its blocks do not quantize it themselves (n > 8,
     * or x too wide for their shared memory), 8 tokens a chunk. Sized at the first such call for
     * Q8_SCRATCH_TOKENS tokens of the widest weight (or the call's n if larger); reallocated only
     * when a call needs more, so its address is stable for steps of up to that many tokens. */
    void *q8;
    size_t q8_bytes;
    int64_t q8_cols_max;      /* the widest weight with a device layout loaded */
    int mmq_min;              /* calls of this many tokens or more take the tensor-core MMQ (ops.c) */
    int mmf;                  /* 1: F16 / BF16 weights take the tensor-core slm_cuda_mmf for every n (sm_80+) */
    float *xn;                /* x RMS-normed, for weights without a device layout (norm_matmul) */
    uint16_t *gelu_table;     /* (SLM_CUDA_GELU_TABLE) f16 GELU of every f16 (geglu), NULL until its first call */
    size_t xn_bytes;
    size_t weight_bytes;      /* device bytes of the resident weights (device layout where a type has one) */
    struct sample_state *sampling;   /* the sample op's buffers, NULL until its first call */
    struct rope_cache rope[ROPE_TABLES];
    struct slm_backend_ops host_sampling_ops;   /* cuda_ops without `sample` (SLM_CUDA_SAMPLING=0) */
};

static inline struct cuda_impl *impl(struct slm_backend *be)
{
    return be->impl;
}

/* 0, or -EIO with a log line naming the call. The error is taken off cudaGetLastError, so
 * that the next launcher does not report it again as its own. */
static inline int cuda_ok(cudaError_t e, const char *call)
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
static inline int launched(int rc, const char *launcher)
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

/* ---- resources.c: staging, device memory, weights, the KV pool, the q8 scratch's
 * bookkeeping and dropping the graphs (the bottom of cuda/: it calls no other file of it) */
void cuda_staging_free(struct staging *s);
int cuda_staging_reserve(struct staging *s, size_t n);
int cuda_staging_upload(struct cuda_impl *ci, struct staging *s, size_t n);
int cuda_upload_ids(struct cuda_impl *ci, const int32_t *ids, int n);
void *cuda_alloc(struct slm_backend *be, size_t bytes);
void cuda_free(struct slm_backend *be, void *p);
int cuda_device_layout(const struct slm_weight *w);
int cuda_load_weight(struct slm_backend *be, struct slm_weight *w);
void cuda_unload_weight(struct slm_backend *be, struct slm_weight *w);
int cuda_kv_blocks(const struct slm_kv_pool *p);
size_t cuda_kv_layer_halves(const struct slm_kv_pool *p);
int cuda_kv_alloc(struct slm_backend *be, struct slm_kv_pool *pool);
void cuda_kv_free(struct slm_backend *be, struct slm_kv_pool *pool);
void cuda_q8_note_weight(struct cuda_impl *ci, const struct slm_weight *w);
void cuda_graphs_reset(struct cuda_impl *ci);

/* ---- ops.c: the embedding, norms, matmuls and element-wise ops */
int cuda_embed(struct slm_backend *be, const struct slm_weight *table, const int32_t *tokens, int n,
               float *out);
int cuda_rmsnorm(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int n, int dim,
                 float eps, float *out);
int cuda_matmul(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                float *const *y, int accumulate);
int cuda_add_bias(struct slm_backend *be, float *x, const struct slm_weight *bias, int n);
int cuda_swiglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out);
int cuda_geglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out);
int cuda_scale(struct slm_backend *be, float *x, size_t n, float s);
int cuda_softcap(struct slm_backend *be, float *x, size_t n, float cap);
int cuda_add(struct slm_backend *be, float *x, const float *y, size_t n);
int cuda_norm_matmul(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                     int n_w, const struct slm_weight *const *w, int n, float *const *y);
int cuda_norm_glu(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                  const struct slm_weight *gate, const struct slm_weight *up, int n, float *y, float *tmp);

/* ---- ops.c (continued): gathering rows and copying to the host */
int cuda_gather_rows(struct slm_backend *be, const float *x, int dim, const int32_t *rows, int n_rows,
                     float *dst);
int cuda_to_host(struct slm_backend *be, const float *src, size_t n, float *host);

/* ---- attention.c: RoPE tables, the attention metadata and launches */
int cuda_run_end(const struct slm_batch *b, int i);
int cuda_attention_check(struct slm_backend *be, const struct slm_attn_params *p, char *why, size_t len);
int cuda_attention(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                   const struct slm_attn_params *p, float *q, float *k, const float *v, float *out);

/* ---- graphs.c: the step graphs */
int cuda_step_begin(struct slm_backend *be, const void *owner, int max_tokens, int max_out,
                    const struct slm_kv_pool *pool, const struct slm_batch *b, struct slm_batch *run);
int cuda_step_end(struct slm_backend *be, int rc);

/* ---- sampling.c: sampling on the device */
void cuda_sample_state_free(struct sample_state *st);
int cuda_sample(struct slm_backend *be, const float *logits, int n_rows, int n_vocab,
                struct slm_sample_row *rows, int32_t *ids, float *logprob, struct slm_logprob *top);

#endif
