/*
 * daemon/engine/backends/backend.h - the ops table that the forward pass is written against.
 *
 * A backend owns the memory of activations and of the KV pool (host memory for the
 * CPU backend, device memory for CUDA) and runs the ops of one forward pass. The
 * forward pass (model.c) only passes these buffers from op to op; it never reads
 * them, so the same pass drives every backend. Host-side metadata (token ids,
 * positions, block tables) is passed as plain host arrays in struct slm_batch.
 *
 * Sampling (optional `sample` op): a backend that can sample leaves the logits where the
 * forward pass wrote them and returns only token ids (and requested logprobs); without it
 * the engine copies the logits to the host and runs daemon/engine/sampler.c.
 *
 * Batch invariance: every op computes each output element with a reduction order
 * that depends neither on how many tokens the call carries nor on which other
 * sequences share it (docs/numerics.md).
 */
#ifndef SLM_ENGINE_BACKEND_H
#define SLM_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant.h"

/* A weight tensor as the GGUF holds it: `rows` rows of `cols` elements of `type`. */
struct slm_weight {
    uint32_t type;        /* enum slm_qtype */
    int64_t rows;         /* ne[1] (1 for a vector) */
    int64_t cols;         /* ne[0], contiguous */
    size_t row_bytes;     /* bytes of one row */
    const void *data;     /* (rows, cols) in the mapping */
    void *be_data;        /* the backend's copy or view (CPU: may be NULL = use data) */
};

/* RoPE layouts: NORM rotates adjacent pairs (x[2i], x[2i+1]) (llama), NEOX rotates
 * halves (x[i], x[i + d/2]) (qwen2, gemma, phi3). */
enum slm_rope_layout { SLM_ROPE_NORM = 0, SLM_ROPE_NEOX = 1 };

struct slm_attn_params {
    int n_head;            /* query heads */
    int n_head_kv;         /* key/value heads (GQA: n_head is a multiple) */
    int head_dim;
    int rope_dim;          /* leading dims of each head that are rotated (<= head_dim) */
    int rope_layout;       /* enum slm_rope_layout */
    float rope_base;
    float scale;           /* applied to q.k, usually 1/sqrt(head_dim) */
    const float *rope_factors; /* (rope_dim / 2) host, or NULL: angle j divided by factor j (Llama 3.1+'s
                                * rope_freqs, phi3's LongRoPE factors) */
    float rope_mscale;     /* the rotated dims' cos and sin times this (phi3's LongRoPE attention factor):
                            * 1 for none */
    int window;            /* > 0: a token at position p attends to positions p - window + 1 .. p only
                            * (gemma3's local layers; needs ops->sliding_window); 0: to all of 0 .. p */
};

/*
 * One forward step's tokens. Token i belongs to sequence seq[i] at position pos[i];
 * its K and V are written to block block_table[seq_row[i]][pos[i] / block_size] of the
 * KV pool and it attends to positions 0..pos[i] of that sequence (causal).
 */
struct slm_batch {
    int n_tokens;
    const int32_t *tokens;      /* (n_tokens) */
    const int32_t *pos;         /* (n_tokens) */
    const int32_t *seq_row;     /* (n_tokens) row of block_tables this token's sequence uses */
    const int32_t *block_tables;/* (n_seq_rows, max_blocks) block ids of each sequence */
    int max_blocks;             /* row stride of block_tables (and block_tables_local) */
    int n_out;                  /* tokens whose logits are wanted */
    const int32_t *out_rows;    /* (n_out) indices into the batch */
    const int32_t *block_tables_local; /* (n_seq_rows, max_blocks) the local pool's block ids (struct
                                * slm_kv_pool.local): -1 for blocks wholly before the window of every
                                * token of the step, never read; NULL without a local pool */
};

/* The KV pool: for each of its layers, K and V as (n_blocks, block_size, n_head_kv * head_dim)
 * halves, addressed through the batch's block tables.
 *
 * A model with sliding-window layers (gemma3's local layers) may have two pools, each a struct
 * of its own allocated by kv_alloc: the global one (the pool slm_forward_run is given: its
 * global layers) and, in its `local` member, the local layers' one, with its own block count
 * and the batch's block_tables_local (docs/engine.md, "Two pools"). The forward pass gives the
 * attention op the layer's pool, the layer's index in that pool, and a batch whose
 * block_tables are that pool's: a backend's attention needs no notion of two pools. */
struct slm_kv_pool {
    int n_layer;                /* layers in this pool */
    int n_blocks;
    int block_size;
    int kv_dim;                 /* n_head_kv * head_dim */
    void *mem;                  /* backend memory holding all of it */
    int window;                 /* > 0: the local pool of layers with this window; 0: global */
    struct slm_kv_pool *local;  /* the global pool's local pool, or NULL: every layer is here */
};

struct slm_backend;
struct slm_logprob;   /* stop.h */

/*
 * One row of a sample call: a request's sampler as daemon/engine/sampler.c holds it
 * (slm_sampler_params, _window, _rng), so that the backend's token is the one
 * slm_sampler_sample would give for the same logits, and the RNG continues the same way.
 */
struct slm_sample_row {
    float temperature;          /* <= 0: greedy (argmax after the penalties, lowest id on ties) */
    int top_k;                  /* 0 = off */
    float top_p;                /* 1 = off */
    float min_p;                /* 0 = off */
    float repeat_penalty;       /* 1 = off */
    float presence_penalty, frequency_penalty;
    const int32_t *window;      /* (n_window) host: the tokens the penalties count, any order */
    int n_window;               /* 0 when the penalties are off */
    uint64_t rng[4];            /* xoshiro256** state: in, then the state the draw left (host) */
    int n_logprobs;             /* 0: none; 1..20 (SLM_LOGPROBS_MAX) top logprobs wanted */
};

struct slm_backend_ops {
    const char *name;
    /* 1 when `attention` honours slm_attn_params.window (else a model with a window is refused). */
    int sliding_window;
    void (*destroy)(struct slm_backend *be);
    /* Activation memory, `bytes` long, suitably aligned; NULL on failure. */
    void *(*alloc)(struct slm_backend *be, size_t bytes);
    void (*free)(struct slm_backend *be, void *p);
    /* Makes a weight resident in the backend's form (CPU: nothing or a repack). */
    int (*load_weight)(struct slm_backend *be, struct slm_weight *w);
    void (*unload_weight)(struct slm_backend *be, struct slm_weight *w);
    /* Allocates pool->mem for the pool's geometry. */
    int (*kv_alloc)(struct slm_backend *be, struct slm_kv_pool *pool);
    void (*kv_free)(struct slm_backend *be, struct slm_kv_pool *pool);

    /* out (n, table->cols) = rows `tokens` of table. */
    int (*embed)(struct slm_backend *be, const struct slm_weight *table, const int32_t *tokens, int n,
                 float *out);
    /* out (n, dim) = x / rms(x) * gamma (per row); out may equal x. */
    int (*rmsnorm)(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int n, int dim,
                   float eps, float *out);
    /* For each j < n_w: y[j] (n, w[j]->rows) (+)= x (n, cols) . w[j]^T, all weights sharing
     * one input (so the CPU quantizes x once and the pool runs once). accumulate adds to y.
     * x must not overlap any y (the CUDA backend reads x while it writes y). */
    int (*matmul)(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                  float *const *y, int accumulate);
    /* Optional fusions (NULL: the forward pass composes rmsnorm, matmul and swiglu; the CPU
     * backend has none, so its arithmetic stays llama.cpp's). The CUDA backend runs each in
     * one launch for a decode step (docs/cuda.md, "Launches of a decode step").
     * norm_matmul: for each j < n_w, y[j] (n, w[j]->rows) = rmsnorm(x; gamma, eps) . w[j]^T,
     * x (n, dim) left unchanged. */
    int (*norm_matmul)(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                       int n_w, const struct slm_weight *const *w, int n, float *const *y);
    /* norm_glu: y (n, gate->rows) = silu(rmsnorm(x) . gate^T) * (rmsnorm(x) . up^T), gate and
     * up of the same rows; tmp (n, up->rows) is scratch the op may write; neither overlaps x. */
    int (*norm_glu)(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                    const struct slm_weight *gate, const struct slm_weight *up, int n, float *y, float *tmp);
    /* x (n, w->rows... ) += bias, broadcast over n rows; bias is an F32 vector weight. */
    int (*add_bias)(struct slm_backend *be, float *x, const struct slm_weight *bias, int n);
    /* Attention of one layer for the batch: rotates q (n, n_head*head_dim) and k
     * (n, n_head_kv*head_dim) by each token's position, stores k and v into the pool
     * through the block tables, and writes out (n, n_head*head_dim). */
    int (*attention)(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                     const struct slm_attn_params *p, float *q, float *k, const float *v, float *out);
    /* Optional (NULL: every geometry): 0 when `attention` runs layers of p's geometry, else
     * -ENOTSUP with the reason in why (len bytes). slm_model_bind asks it for each kind of layer,
     * so that a model the backend cannot run is refused when it loads, not at its first step. */
    int (*attention_check)(struct slm_backend *be, const struct slm_attn_params *p, char *why, size_t len);
    /* out (n) = silu(gate) * up. */
    int (*swiglu)(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out);
    /* out (n) = gelu(gate) * up (GELU's tanh form; gemma3). Optional: a backend without it
     * cannot run the architectures that need it (slm_model_bind says so). */
    int (*geglu)(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out);
    /* x (n) *= s. Optional, as geglu (gemma3's embedding scale). */
    int (*scale)(struct slm_backend *be, float *x, size_t n, float s);
    /* x (n) = tanh(x * (1 / cap)) * cap, llama.cpp's order (gemma3's final_logit_softcapping).
     * Optional, as geglu. */
    int (*softcap)(struct slm_backend *be, float *x, size_t n, float cap);
    /* x (n) += y. */
    int (*add)(struct slm_backend *be, float *x, const float *y, size_t n);
    /* Copies the rows `rows` (n_rows) of x (., dim) into dst (n_rows, dim) of the backend. */
    int (*gather_rows)(struct slm_backend *be, const float *x, int dim, const int32_t *rows, int n_rows,
                       float *dst);
    /* Copies n floats from backend memory to host memory. */
    int (*to_host)(struct slm_backend *be, const float *src, size_t n, float *host);

    /*
     * Optional (NULL: every step runs op by op): whole steps replayed from a capture (CUDA
     * graphs, docs/cuda.md "CUDA graphs"). slm_forward_run calls step_begin after checking b,
     * with `owner` the forward pass (its activation buffers are what a capture records),
     * max_tokens the most tokens its buffers hold and max_out the most logits rows. Returns
     *   1: the backend has queued the whole step through the logits matmul (the caller skips
     *      the ops and step_end and goes on to to_host; the logits are rows 0..n_out-1);
     *   0: the caller runs the ops with *run (b itself, or b padded to more tokens whose
     *      extra logits rows come after b's) and then calls step_end with their result;
     *   < 0: an error.
     * step_end returns the step's result, or 1 when a capture failed: the caller then runs the
     * ops again with b itself (nothing of the failed capture ran). */
    int (*step_begin)(struct slm_backend *be, const void *owner, int max_tokens, int max_out,
                      const struct slm_kv_pool *pool, const struct slm_batch *b, struct slm_batch *run);
    int (*step_end)(struct slm_backend *be, int rc);
    /* Optional (NULL: the engine samples on the host). Samples one token per row of logits
     * (n_rows, n_vocab) in backend memory with rows[i]'s parameters into ids[i] (host) and
     * advances rows[i].rng as slm_sampler_sample advances its RNG. When logprob and top are
     * not NULL, each row with n_logprobs > 0 gets logprob[i] (host), the sampled token's
     * log-softmax of the raw logits, and top[i * SLM_LOGPROBS_MAX ..] (host) its
     * min(n_logprobs, n_vocab) best tokens, as slm_logprobs_top gives them; logprob[i] is NaN
     * where slm_logprobs_top refuses the row (a NaN or +inf logit, or all -inf). Returns 0,
     * or -errno (then no ids, and every rng as it was). */
    int (*sample)(struct slm_backend *be, const float *logits, int n_rows, int n_vocab,
                  struct slm_sample_row *rows, int32_t *ids, float *logprob, struct slm_logprob *top);
};

struct slm_backend {
    const struct slm_backend_ops *ops;
    int n_threads;
    void *impl;
};

/* The CPU backend with n_threads (<= 0: the number of online CPUs). NULL on failure. */
struct slm_backend *slm_backend_cpu_create(int n_threads, char *err);

/*
 * The CUDA backend (daemon/engine/backends/cuda/; not in the slm_engine library: the
 * daemon links the variant its build has, docs/cuda.md "Backend") on CUDA device `device`.
 * gpu_memory_fraction (0 < f <= 1) bounds the KV pool: kv_alloc refuses a pool larger
 * than f x the device memory free at that moment. NULL with err on failure; err starts
 * with "no CUDA device" when there is none.
 */
struct slm_backend *slm_backend_cuda_create(int device, double gpu_memory_fraction, char *err);

/* The number of CUDA devices; 0 with the reason in err (no device, no driver, or a build
 * without the CUDA backend). */
int slm_backend_cuda_devices(char *err);

/* 1 when this build's CUDA backend runs on the SIMT emulator (kernels/emu), else 0. */
int slm_backend_cuda_emulated(void);

/* Bytes the KV pool of the CUDA backend `be` may take now: gpu_memory_fraction x the device
 * memory free (cudaMemGetInfo). The rest of the free memory is the headroom for the
 * activations, the attention workspace and the CUDA context. */
size_t slm_backend_cuda_kv_budget(struct slm_backend *be);

/* What the CUDA backend's step graphs did since it was created (docs/cuda.md, "CUDA graphs"). */
struct slm_cuda_graph_stats {
    long warmups;             /* padded decode steps run op by op before their bucket's capture */
    long captures;            /* graphs captured and instantiated */
    long replays;             /* steps run by launching a captured graph */
    long eager;               /* steps run op by op otherwise (prefill, graphs off, a failed bucket) */
    long failures;            /* captures or instantiations that failed (the bucket then stays eager) */
    long resets;              /* times every graph was dropped (a buffer they use was freed or moved) */
};

/* Fills *st for the CUDA backend be; -ENOTSUP for another backend or a build without CUDA. */
int slm_backend_cuda_graph_stats(struct slm_backend *be, struct slm_cuda_graph_stats *st);

/* Destroys any backend; sets *be to NULL. NULL-safe. */
void slm_backend_destroy(struct slm_backend **be);

#endif
