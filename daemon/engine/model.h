/*
 * daemon/engine/model.h - a transformer's configuration and weights from a GGUF file,
 * and its forward pass over a batch, written once against the backend ops table.
 *
 * Architectures: llama (SmolLM2, Llama 3.x, Mistral), qwen2, qwen3, gemma3 and phi3
 * (docs/architectures.md).
 * Weights are pointed into the GGUF mapping, never copied (the backend may make a
 * resident copy in its own memory).
 */
#ifndef SLM_ENGINE_MODEL_H
#define SLM_ENGINE_MODEL_H

#include "daemon/engine/backends/backend.h"
#include "daemon/engine/gguf.h"

/* The most layers a model with sliding-window layers may have (Gemma 3 27B has 62). */
#define SLM_MODEL_MAX_SWA_LAYERS 256

enum slm_arch { SLM_ARCH_LLAMA = 1, SLM_ARCH_QWEN2 = 2, SLM_ARCH_QWEN3 = 3, SLM_ARCH_GEMMA3 = 4, SLM_ARCH_PHI3 = 5 };

struct slm_model_config {
    int arch;                 /* enum slm_arch */
    char arch_name[32];
    int n_layer;
    int dim;                  /* embedding width */
    int n_head, n_head_kv, head_dim;
    int ffn_dim;
    int n_vocab;
    int n_ctx_train;
    int rope_dim, rope_layout;
    float rope_base;
    float rope_mscale;        /* rope.scaling.attn_factor (phi3's LongRoPE): cos and sin times this; 1 */
    int n_ctx_orig;           /* rope.scaling.original_context_length: phi3's long factors above it */
    float rms_eps;
    /* gemma3 */
    float emb_scale;          /* the embedding is multiplied by this (sqrt(dim)); 0: not scaled */
    int geglu;                /* the FFN's gate through GELU (tanh form), not SiLU */
    int n_swa;                /* sliding window of the local layers; 0: every layer global */
    unsigned char layer_local[SLM_MODEL_MAX_SWA_LAYERS];   /* with n_swa: 1 where layer l is local */
    unsigned char layer_kv[SLM_MODEL_MAX_SWA_LAYERS];      /* with n_swa: layer l's index among the
                                                            * layers of its kind (its KV pool's) */
    float rope_base_swa;      /* the local layers' RoPE base */
    float final_softcap;      /* final_logit_softcapping: logits = cap tanh(logits / cap); 0: none */
};

struct slm_layer {
    struct slm_weight attn_norm;        /* (dim) */
    struct slm_weight wq;               /* (n_head * head_dim, dim) */
    struct slm_weight wk, wv;           /* (n_head_kv * head_dim, dim); phi3: wq, wk and wv are views of
                                         * the rows of one attn_qkv (q, then k, then v) */
    struct slm_weight bq, bk, bv;       /* qwen2 only: (rows of wq/wk/wv) */
    struct slm_weight q_norm, k_norm;   /* qwen3, gemma3: (head_dim), RMSNorm of each head of q and k */
    struct slm_weight post_attn_norm;   /* gemma3: (dim), RMSNorm of the attention's output */
    struct slm_weight post_ffn_norm;    /* gemma3: (dim), RMSNorm of the FFN's output */
    struct slm_weight wo;               /* (dim, n_head * head_dim) */
    struct slm_weight ffn_norm;         /* (dim) */
    struct slm_weight w_gate, w_up;     /* (ffn_dim, dim); phi3: views of the rows of one ffn_up of
                                         * 2 ffn_dim rows (the gate, then up) */
    struct slm_weight w_down;           /* (dim, ffn_dim) */
};

struct slm_model {
    struct slm_gguf *gguf;
    struct slm_model_config cfg;
    struct slm_weight tok_embd;         /* (n_vocab, dim) */
    struct slm_weight output_norm;      /* (dim) */
    struct slm_weight output;           /* (n_vocab, dim); the same tensor as tok_embd when tied */
    struct slm_weight rope_freqs;       /* (rope_dim / 2) Llama 3.1+'s frequency factors, or absent */
    struct slm_weight rope_long, rope_short;   /* (rope_dim / 2) phi3's LongRoPE factors, or absent */
    const float *rope_factors;          /* the factors the pass uses (one of the above, or NULL; the
                                         * long ones when the context is above n_ctx_orig) */
    struct slm_layer *layers;           /* (n_layer) */
    struct slm_backend *be;             /* set by slm_model_bind */
    /* Optional: called by slm_model_bind after each weight with the bytes made resident so far
     * and in all (a progress line for a large model; slm_service_load sets it). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
};

/* Opens the GGUF at path, reads the configuration and checks every tensor the
 * architecture needs (present, type, shape). NULL with a reason in err on failure. */
struct slm_model *slm_model_load(const char *path, char *err);

/* Makes every weight resident in the backend. Returns 0 or -errno (reason in err). */
int slm_model_bind(struct slm_model *m, struct slm_backend *be, char *err);
/* (The weights a backend uses in place from the file's mapping are read in by bind, a byte a
 * page, when m->progress is set: the load's time is then spent, and shown, before the first
 * request, not during it.) */

/* Sets up the pass for contexts of n_ctx tokens: phi3's LongRoPE factors are its long ones above
 * the original context (rope.scaling.original_context_length), else its short ones, as llama.cpp
 * chooses. Returns 0, or -EINVAL (n_ctx < 1, reason in err). */
int slm_model_set_ctx(struct slm_model *m, int n_ctx, char *err);

/* Unbinds (if bound), closes the file, frees; sets *m to NULL. NULL-safe. */
void slm_model_free(struct slm_model **m);

/* Activation buffers for batches of up to max_tokens tokens and max_out logits rows. */
struct slm_forward;

struct slm_forward *slm_forward_create(struct slm_model *m, int max_tokens, int max_out, char *err);
void slm_forward_destroy(struct slm_forward **f);

/* Runs the batch through the model, writing K/V into pool, and copies the logits of
 * the batch's out_rows to logits (n_out, n_vocab) on the host; with logits NULL they stay
 * in backend memory (slm_forward_logits, slm_forward_logits_to_host). Returns 0 or -errno. */
int slm_forward_run(struct slm_forward *f, struct slm_kv_pool *pool, const struct slm_batch *b, float *logits);

/* The last pass's logits in backend memory: (max_out, n_vocab), row i for out_rows[i]. */
const float *slm_forward_logits(const struct slm_forward *f);

/* Copies logits rows first .. first + n - 1 of the last pass to host (n, n_vocab).
 * Returns 0 or -errno (-EINVAL when the rows are outside max_out). */
int slm_forward_logits_to_host(struct slm_forward *f, int first, int n, float *host);

/* A KV pool geometry for this model: n_blocks blocks of block_size tokens, every layer in it. */
void slm_model_kv_geometry(const struct slm_model *m, int n_blocks, int block_size, struct slm_kv_pool *pool);

/* Two pools for a model with sliding-window layers (cfg.n_swa > 0) and n_local_blocks > 0: the
 * global layers in *pool (n_blocks blocks), the local ones in *local (n_local_blocks blocks,
 * window cfg.n_swa), pool->local = local. Otherwise slm_model_kv_geometry's one pool, *local
 * zeroed. Returns the number of pools (1 or 2). */
int slm_model_kv_geometry_split(const struct slm_model *m, int n_blocks, int n_local_blocks, int block_size,
                                struct slm_kv_pool *pool, struct slm_kv_pool *local);

/* The layers of cfg that attend over a sliding window (gemma3's local layers). */
int slm_model_n_local_layers(const struct slm_model_config *c);

#endif
