/*
 * kernels/cuda/attention.h - the CUDA attention and sampling launchers (the section
 * "attention and sampling" of kernels/cuda/kernels.h once that header exists).
 *
 * Every pointer argument is device memory unless it says host. Each launcher checks its
 * arguments, enqueues on `stream` and returns 0, -EINVAL (bad argument) or -EIO (the
 * launch failed). docs/cuda.md, "Attention and sampling", has the launch shapes.
 */
#ifndef SLM_KERNELS_CUDA_ATTENTION_H
#define SLM_KERNELS_CUDA_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest n_head / n_head_kv (query heads sharing one KV head). */
#define SLM_CUDA_ATTN_MAX_GROUP 16
/* The geometry of one layer's attention. head_dim is 32, 64, 80, 96, 128 or 256 (256 with at most
 * 8 query heads a KV head: the kernel's shared memory stays under 48 KiB). */
struct slm_cuda_attn_shape {
    int n_head;            /* query heads */
    int n_head_kv;         /* key/value heads; n_head is a multiple, n_head / n_head_kv <= 16 */
    int head_dim;
    int rope_dim;          /* rotated leading dims of each head, even, <= head_dim */
    int rope_layout;       /* 0 = adjacent pairs (llama), 1 = halves (neox) */
    float scale;           /* applied to q.k */
    int window;            /* > 0: a token at position p attends to p - window + 1 .. p only (gemma3's local
                            * layers' sliding window); 0: to 0 .. p */
};

/* 0 when the attention kernels run this geometry; else -EINVAL, with the reason (naming the
 * numbers) in why (len bytes, may be NULL). What a backend asks before it takes a model. */
int slm_cuda_attention_shape_check(const struct slm_cuda_attn_shape *shape, char *why, size_t len);

/* The paged KV of one layer: K and V each (n_blocks, block_size, n_head_kv * head_dim) halves. */
struct slm_cuda_kv_layer {
    void *k;
    void *v;
    int n_blocks;
    int block_size;
};

/* The per-token tables of a call, all device memory: token i is at position pos[i] of the
 * sequence whose block ids are block_tables[seq_row[i] * max_blocks ...]. */
struct slm_cuda_attn_tokens {
    int n_tokens;
    const int32_t *pos;          /* (n_tokens) */
    const int32_t *seq_row;      /* (n_tokens) */
    const int32_t *block_tables; /* (n_seq_rows, max_blocks) */
    int n_seq_rows;
    int max_blocks;
    /* slm_cuda_attention_paged only, optional: (n_tiles, 2) device int32 pairs (first token,
     * count), tiles of consecutive tokens of one sequence, at most
     * slm_cuda_attention_tile_tokens() each, covering every token once (slm_cuda_attention_tiles
     * builds them on the host). A tile's tokens share every K and V row the kernel loads. NULL:
     * one token a tile (the same bits, more loads). */
    const int32_t *tiles;
    int n_tiles;
};

/* The rotation of every position the calls may meet: cos_sin (positions, rope_dim / 2, 2)
 * device floats, (cos, sin) of pair j of position p at 2 (p * rope_dim / 2 + j). The host
 * fills it with slm_cpu_rope_angles, so the angles and their cos and sin are the CPU
 * backend's bits on any device (CUDA's own cosf / sinf may differ by an ulp). */
struct slm_cuda_rope_table {
    const float *cos_sin;
    int positions;
};

/*
 * Rotates q (n_tokens, n_head * head_dim) and k (n_tokens, n_head_kv * head_dim) in place by
 * each token's position (RoPE with the table's cos and sin: a token whose position is past
 * the table gets NaN q and k rows, stored as such) and stores k and v (n_tokens,
 * n_head_kv * head_dim) as halves into kv through the block tables. Every block id a token
 * needs must be in [0, n_blocks) (not checked on the device). The table may be empty when
 * rope_dim is 0.
 */
int slm_cuda_rope_store(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                        const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope, float *q,
                        float *k, const float *v, cudaStream_t stream);

/* (The CPU-exact attention, slm_cuda_attention_decode / _prefill / _exact, and the split
 * flash-decoding kernel, slm_cuda_attention_split, are gone: every step attends with the
 * kernel below, fused with RoPE and the store for decode-only steps, after
 * slm_cuda_rope_store otherwise.) */

/* ---- decode-only steps: RoPE, the KV store and attention in one launch
 * (kernels/cuda/attention_decode.cu; docs/cuda.md, "Fused decode attention"). */

/* Positions per partition of slm_cuda_attention_decode_fused: a constant (never derived from
 * the batch or the longest context), so a token's reduction order depends only on its own
 * position. 64 so that one token at 4k positions gives 64 x n_head_kv blocks (192 for
 * SmolLM2: more than the 132 SMs of an H100 / H200). */
#define SLM_CUDA_ATTN_DECODE_PARTITION 64
/* (token, KV head) slots of the fused launcher's completion counters: n_tokens x n_head_kv
 * must not exceed it. */
#define SLM_CUDA_ATTN_DECODE_SLOTS 16384
/* Bytes at the start of the fused launcher's workspace that hold its counters (one uint32 per
 * slot): zero them once when the workspace is allocated (cudaMemset); every launch leaves
 * them zero again. */
#define SLM_CUDA_ATTN_DECODE_COUNTER_BYTES ((size_t)SLM_CUDA_ATTN_DECODE_SLOTS * 4)

/* Bytes of workspace slm_cuda_attention_decode_fused needs for n_tokens tokens whose context is
 * at most max_ctx positions: SLM_CUDA_ATTN_DECODE_COUNTER_BYTES of counters, then (n_tokens,
 * n_head, partitions, head_dim + 4) floats of partial results, partitions = max_ctx /
 * SLM_CUDA_ATTN_DECODE_PARTITION rounded up. 0 for a bad shape, n_tokens < 1 or max_ctx < 1. */
size_t slm_cuda_attention_decode_fused_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens, int max_ctx);

/*
 * A decode-only step's attention in one launch: every token is the single new token of its
 * own sequence (distinct seq_row rows; no token's new row is in another token's context),
 * at position pos[i]. For each token: q (n_tokens, n_head * head_dim) and k (n_tokens,
 * n_head_kv * head_dim) rotated by the table's cos and sin as slm_cuda_rope_store rotates them
 * (a position past the table gives NaN, rope_dim 0 none), the rotated k and v (n_tokens,
 * n_head_kv * head_dim) stored as halves at pos[i] of the sequence's blocks (the bytes
 * slm_cuda_rope_store stores; a block id outside [0, n_blocks) is not checked on the device),
 * and out (n_tokens, n_head * head_dim) = softmax(scale q.K) V over positions 0..pos[i] (with a
 * window w > 0, max(0, pos[i] - w + 1)..pos[i]: partitions wholly before it are skipped, the
 * positions before it in its own partition masked). q, k
 * and v are read only (not rotated in place, unlike slm_cuda_rope_store). The context is cut
 * into partitions of SLM_CUDA_ATTN_DECODE_PARTITION positions, one block per (partition, KV
 * head, token) serving the group's n_head / n_head_kv query heads; the last block of a
 * (token, KV head) to finish merges its partitions in an order fixed by their indices. A
 * token's bits depend only on its own q, k, v, position and cache: not on the other tokens, max_ctx,
 * nor which block finishes last. Not the CPU's order (docs/cuda.md has the bound).
 * max_ctx (host) bounds pos[i] + 1 over the call and sizes the workspace
 * (slm_cuda_attention_decode_fused_workspace); a token with pos[i] < 0 or pos[i] + 1 > max_ctx
 * gets a NaN out row and stores nothing. The workspace's counters
 * (SLM_CUDA_ATTN_DECODE_COUNTER_BYTES at its start) must be zero before the launch, and are
 * zero after it: a workspace zeroed once serves any number of launches and CUDA graph
 * replays, as long as nothing else writes the counters between them (the partials may be
 * scratch for other kernels). The K/V cache must be 16-byte aligned. -EINVAL also for n_tokens x n_head_kv above
 * SLM_CUDA_ATTN_DECODE_SLOTS or a missing table when rope_dim > 0.
 */
int slm_cuda_attention_decode_fused(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                    const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope,
                                    const float *q, const float *k, const float *v, int max_ctx, void *workspace,
                                    size_t workspace_bytes, float *out, cudaStream_t stream);

/* Most tokens a tile of slm_cuda_attention_paged may hold for this shape: the query rows
 * (tokens x n_head / n_head_kv) that fit its shared memory (64 rows for head_dim <= 96, 48 for
 * 128, 16 for 256), at least 1. 0 for a bad shape. */
int slm_cuda_attention_tile_tokens(const struct slm_cuda_attn_shape *shape);

/* Host: cuts the tokens (seq_row (n_tokens), host memory) into tiles for
 * slm_cuda_attention_paged: runs of consecutive tokens of one sequence, at most
 * slm_cuda_attention_tile_tokens() each, written to tiles (2 n_tokens int32 at most) as (first,
 * count). Returns the number of tiles, or -EINVAL (bad shape, NULL, n_tokens < 1). */
int slm_cuda_attention_tiles(const struct slm_cuda_attn_shape *shape, const int32_t *seq_row, int n_tokens,
                             int32_t *tiles);

/*
 * The same kernel for any step (prefill chunks, mixed steps, several tokens of a sequence): q
 * (n_tokens, n_head * head_dim) already rotated and every token's k and v already stored by
 * slm_cuda_rope_store, so each token reads positions 0..pos[i] from the cache, its own
 * included. out as slm_cuda_attention_decode_fused defines it, and the same bits for a token
 * as that launcher gives it (the rotation and the halves are one arithmetic): a decode step and
 * a recomputation of the same position by prefill agree, whatever the tiles (t->tiles). One
 * block per (partition, KV head, tile): a tile's query rows share the K and V rows of the
 * partition (flash attention's reuse, on tensor cores). Workspace, counters and refusals as
 * there (without the table and k, v), and -EINVAL for t->tiles with n_tiles < 1 or above
 * n_tokens. A tile whose first token is out of range is skipped; its count is cut to
 * slm_cuda_attention_tile_tokens() and at the first token of another sequence (those tokens get
 * no out row: the caller's tiles must cover every token).
 */
int slm_cuda_attention_paged(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                             const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx, void *workspace,
                             size_t workspace_bytes, float *out, cudaStream_t stream);

/* ---- sampling */

/* One row's sampling parameters (device memory, one per row); the chain of
 * daemon/engine/sampler.c: penalties -> top-k -> top-p -> min-p -> temperature -> draw. */
struct slm_cuda_sampling {
    float temperature;          /* <= 0: greedy (argmax, lowest id on ties) */
    int top_k;                  /* 0 = off */
    float top_p;                /* 1 = off */
    float min_p;                /* 0 = off */
    float log_min_p;            /* logf(min_p), computed on the host as the CPU does */
    float repeat_penalty;       /* 1 = off */
    float presence_penalty;
    float frequency_penalty;
    int32_t hist_off;           /* the penalty window: hist[hist_off .. hist_off + hist_len) */
    int32_t hist_len;           /* 0 when the penalties are off */
    int32_t n_logprobs;         /* top logprobs wanted, 0..20 */
    int32_t pad;
};

#define SLM_CUDA_SAMPLE_MAX_LOGPROBS 20

/* The xoshiro256** state the CPU sampler starts from for seed (splitmix64 seeding); host. */
void slm_cuda_sampling_seed(uint64_t seed, uint64_t state[4]);

/* Bytes of workspace slm_cuda_sample needs for n_rows rows of n_vocab logits. */
size_t slm_cuda_sample_workspace(int n_rows, int n_vocab);

/*
 * Samples one token per row of logits (n_rows, n_vocab), exactly as slm_sampler_sample does
 * for the same logits, parameters, window and RNG state. rng (n_rows, 4) is each row's
 * xoshiro256** state, advanced in place by a non-greedy draw. hist (hist_total) holds the
 * rows' penalty windows (a row whose window falls outside it is sampled without penalties). tokens (n_rows) receives the ids. When logprobs is not NULL, logprobs (n_rows)
 * receives the sampled token's log-softmax of the raw logits and top (n_rows, 20) the
 * n_logprobs best (id, logprob) pairs as int32 id then float, best first (rows with a NaN or
 * +inf logit, or all -inf, get NaN logprobs).
 */
int slm_cuda_sample(const float *logits, int n_rows, int n_vocab, const struct slm_cuda_sampling *params,
                    uint64_t *rng, const int32_t *hist, int hist_total, void *workspace, size_t workspace_bytes, int32_t *tokens,
                    float *logprobs, void *top, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
