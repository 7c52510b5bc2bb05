/*
 * kernels/cuda/attention_split.cu - flash-decoding attention over the paged f16 cache, the
 * long-context path of the CUDA backend (docs/cuda.md, "Attention and sampling").
 *
 * One reduction order for every query: the context is cut into partitions of
 * SLM_CUDA_ATTN_PARTITION positions; inside a partition the scores are exact (two passes:
 * max, then exp and sum) and each output element accumulates p * v in position order; the
 * partitions are merged in order by k_split_combine (the online-softmax rescaling, once per
 * partition). A block holds the query heads of one KV head for one token, so each K/V tile it
 * loads serves the whole group; nothing a block computes depends on another token, so a token
 * gets the same bits alone or in any batch. Tokens outside [pos_lo, pos_hi) are skipped (the
 * CPU-exact kernel of attention.cu takes them).
 *
 * Products that must round the same way under nvcc (which contracts a * b + c) and the host
 * compiler (which does not) are written as fmaf / __fmul_rn.
 */
#include <errno.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/compat.h"

#define SPLIT_P SLM_CUDA_ATTN_PARTITION
#define SPLIT_TK 32          /* positions per K/V tile in shared memory */
#define SPLIT_THREADS 128
#define SPLIT_MAX_ROWS SLM_CUDA_ATTN_MAX_GROUP   /* query rows (heads of one group) per block */

#ifdef __CUDACC__
#define SPLIT_UNROLL _Pragma("unroll")
#else
#define SPLIT_UNROLL _Pragma("GCC unroll 16")
#endif

static_assert(SPLIT_P % SPLIT_TK == 0, "tiles must not straddle partitions");

struct split_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const __half *k, *v;         /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    int max_blocks, n_blocks, block_size;
    int n_tokens, n_head, n_head_kv;
    int pos_lo, pos_hi;          /* the tokens with pos in [pos_lo, pos_hi); the others are skipped */
    int max_ctx;                 /* every such pos + 1 is at most this */
    int max_parts;               /* workspace partitions per (token, head) */
    float scale;
    float *ws;                   /* (n_tokens, n_head, max_parts, D + 2): m, l, o[D] */
};

/* Shared memory of k_split_partial for `rows` query rows of head_dim d. */
static size_t split_smem(int rows, int d)
{
    return (size_t)rows * d * sizeof(float) + (size_t)rows * SPLIT_P * sizeof(float) +
           (size_t)SPLIT_TK * d * sizeof(__half) + 2 * (size_t)rows * sizeof(float);
}

/* Loads the K or V rows of positions [t0, t0 + nt) of KV head g into tile (nt, D). */
template <int D>
__device__ static void load_tile(__half2 *tile, const __half *cache, const int32_t *blocks, int t0, int nt, int g,
                                 const struct split_args &a)
{
    const size_t kvd = (size_t)a.n_head_kv * D;
    for (int i = threadIdx.x; i < nt * (D / 2); i += blockDim.x) {
        int tt = i / (D / 2), c = i % (D / 2);
        long long row = kv_row(blocks, t0 + tt, a.block_size, a.n_blocks);
        tile[i] = row < 0 ? __floats2half2_rn(0.0f, 0.0f)
                          : reinterpret_cast<const __half2 *>(cache + (size_t)row * kvd + (size_t)g * D)[c];
    }
}

/* grid (n_tokens, n_head_kv, max_parts), SPLIT_THREADS threads. Row r = query head
 * g * group + r of the token. */
template <int D>
__global__ void __launch_bounds__(SPLIT_THREADS) k_split_partial(struct split_args a)
{
    constexpr int ITEMS = SPLIT_MAX_ROWS * (D / 2) / SPLIT_THREADS;
    static_assert(SPLIT_MAX_ROWS * (D / 2) % SPLIT_THREADS == 0, "items must cover the rows exactly");
    SLM_DYN_SHARED(float, smem);
    const int group = a.n_head / a.n_head_kv, g = blockIdx.y, part = blockIdx.z;
    const int tok = blockIdx.x;
    const int n_ctx = a.pos[tok] + 1;
    const int start = part * SPLIT_P;
    if (n_ctx - 1 < a.pos_lo || n_ctx - 1 >= a.pos_hi || n_ctx > a.max_ctx || start >= n_ctx) return;
    const int end = min(start + SPLIT_P, n_ctx), len = end - start;
    const int rows = group;
    const int32_t *blocks = a.block_tables + (size_t)a.seq_row[tok] * a.max_blocks;

    float *qs = smem;                                   /* (rows, D) q rounded to f16 */
    float *sc = qs + (size_t)rows * D;                  /* (rows, SPLIT_P) scores, then weights */
    __half2 *tile = reinterpret_cast<__half2 *>(sc + (size_t)rows * SPLIT_P);   /* (SPLIT_TK, D) */
    float *row_m = reinterpret_cast<float *>(tile + SPLIT_TK * (D / 2));
    float *row_l = row_m + rows;

    const float *qt = a.q + (size_t)tok * a.n_head * D + (size_t)g * group * D;
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) qs[i] = __half2float(__float2half_rn(qt[i]));

    /* Scores of every row against each K tile. */
    for (int t0 = start; t0 < end; t0 += SPLIT_TK) {
        int nt = min(SPLIT_TK, end - t0);
        __syncthreads();
        load_tile<D>(tile, a.k, blocks, t0, nt, g, a);
        __syncthreads();
        const __half *kt = reinterpret_cast<const __half *>(tile);
        for (int i = threadIdx.x; i < rows * nt; i += blockDim.x) {
            int r = i / nt, tt = i % nt;
            const float *qr = qs + (size_t)r * D;
            const __half *kr = kt + (size_t)tt * D;
            float acc = 0.0f;
            for (int d = 0; d < D; d++) acc = fmaf(qr[d], __half2float(kr[d]), acc);
            sc[(size_t)r * SPLIT_P + (t0 - start) + tt] = __fmul_rn(acc, a.scale);
        }
    }
    __syncthreads();

    /* Softmax inside the partition, a warp per row: max, weights exp(s - max), their sum. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    for (int r = warp; r < rows; r += n_warps) {
        float *s = sc + (size_t)r * SPLIT_P;
        float m = -INFINITY;
        for (int t = lane; t < len; t += 32) m = fmaxf(m, s[t]);
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int t = lane; t < len; t += 32) {
            float w = expf(s[t] - m);
            s[t] = w;
            l += w;
        }
        for (int o = 16; o > 0; o /= 2) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            row_m[r] = m;
            row_l[r] = l;
        }
    }

    /* Each (row, pair of dims) item accumulates weight * v in position order. */
    float2 acc[ITEMS];
    SPLIT_UNROLL
    for (int j = 0; j < ITEMS; j++) acc[j] = make_float2(0.0f, 0.0f);
    for (int t0 = start; t0 < end; t0 += SPLIT_TK) {
        int nt = min(SPLIT_TK, end - t0);
        __syncthreads();
        load_tile<D>(tile, a.v, blocks, t0, nt, g, a);
        __syncthreads();
        SPLIT_UNROLL
        for (int j = 0; j < ITEMS; j++) {
            int it = threadIdx.x + j * SPLIT_THREADS;
            if (it >= rows * (D / 2)) continue;
            int r = it / (D / 2), c = it % (D / 2);
            const float *w = sc + (size_t)r * SPLIT_P + (t0 - start);
            for (int tt = 0; tt < nt; tt++) {
                float2 vv = __half22float2(tile[tt * (D / 2) + c]);
                acc[j].x = fmaf(w[tt], vv.x, acc[j].x);
                acc[j].y = fmaf(w[tt], vv.y, acc[j].y);
            }
        }
    }

    SPLIT_UNROLL
    for (int j = 0; j < ITEMS; j++) {
        int it = threadIdx.x + j * SPLIT_THREADS;
        if (it >= rows * (D / 2)) continue;
        int r = it / (D / 2), c = it % (D / 2);
        int h = g * group + r;
        float *o = a.ws + (((size_t)tok * a.n_head + h) * a.max_parts + part) * (D + 2);
        if (c == 0) {
            o[0] = row_m[r];
            o[1] = row_l[r];
        }
        o[2 + 2 * c] = acc[j].x;
        o[3 + 2 * c] = acc[j].y;
    }
}

/* grid (n_tokens, n_head), head_dim threads: merges a row's partitions in order. */
__global__ void k_split_combine(const float *ws, const int32_t *pos, int pos_lo, int pos_hi, int max_ctx, int n_head,
                                int head_dim, int max_parts, float *out)
{
    const int tok = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    const int n_ctx = pos[tok] + 1;
    if (n_ctx - 1 < pos_lo || n_ctx - 1 >= pos_hi) return;
    float *o_out = out + ((size_t)tok * n_head + h) * head_dim + d;
    if (n_ctx > max_ctx) {   /* the caller's max_ctx is wrong */
        *o_out = __int_as_float(0x7fc00000);
        return;
    }
    const int n_part = (n_ctx + SPLIT_P - 1) / SPLIT_P;
    const float *base = ws + ((size_t)tok * n_head + h) * max_parts * (head_dim + 2);
    float m = -INFINITY;
    for (int p = 0; p < n_part; p++) m = fmaxf(m, base[(size_t)p * (head_dim + 2)]);
    float l = 0.0f, o = 0.0f;
    for (int p = 0; p < n_part; p++) {
        const float *b = base + (size_t)p * (head_dim + 2);
        float e = expf(b[0] - m);
        l = fmaf(b[1], e, l);
        o = fmaf(b[2 + d], e, o);
    }
    *o_out = o / l;
}

/* ---- launchers */

static int split_parts(int max_ctx)
{
    return (max_ctx + SPLIT_P - 1) / SPLIT_P;
}

extern "C" size_t slm_cuda_attention_split_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens,
                                                     int max_ctx)
{
    if (!attn_shape_ok(shape) || n_tokens < 1 || max_ctx < 1) return 0;
    return (size_t)n_tokens * shape->n_head * split_parts(max_ctx) * (shape->head_dim + 2) * sizeof(float);
}

extern "C" int slm_cuda_attention_split(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                        const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx, int pos_lo,
                                        int pos_hi, void *workspace, size_t workspace_bytes, float *out,
                                        cudaStream_t stream)
{
    size_t need = t ? slm_cuda_attention_split_workspace(shape, t->n_tokens, max_ctx) : 0;
    if (attn_call_ok(shape, t, kv, q, max_ctx, pos_lo, pos_hi, workspace, workspace_bytes, need, out)) return -EINVAL;
    struct split_args a = {q, static_cast<const __half *>(kv->k), static_cast<const __half *>(kv->v), t->pos,
                           t->seq_row, t->block_tables, t->max_blocks, kv->n_blocks, kv->block_size,
                           t->n_tokens, shape->n_head, shape->n_head_kv, pos_lo, pos_hi, max_ctx,
                           split_parts(max_ctx), shape->scale, static_cast<float *>(workspace)};
    dim3 grid((unsigned)t->n_tokens, (unsigned)shape->n_head_kv, (unsigned)a.max_parts);
    size_t smem = split_smem(shape->n_head / shape->n_head_kv, shape->head_dim);
    switch (shape->head_dim) {
    case 64: SLM_LAUNCH(k_split_partial<64>, grid, SPLIT_THREADS, smem, stream, a); break;
    case 80: SLM_LAUNCH(k_split_partial<80>, grid, SPLIT_THREADS, smem, stream, a); break;
    case 96: SLM_LAUNCH(k_split_partial<96>, grid, SPLIT_THREADS, smem, stream, a); break;
    default: SLM_LAUNCH(k_split_partial<128>, grid, SPLIT_THREADS, smem, stream, a); break;
    }
    if (attn_launched()) return -EIO;
    SLM_LAUNCH(k_split_combine, dim3((unsigned)t->n_tokens, (unsigned)shape->n_head), shape->head_dim, 0, stream,
               a.ws, t->pos, pos_lo, pos_hi, max_ctx, shape->n_head, shape->head_dim, a.max_parts, out);
    return attn_launched();
}
