/*
 * kernels/cuda/attention_split.cu - flash-decoding attention over the paged f16 cache, the
 * long-context path of the CUDA backend (docs/cuda.md, "Attention and sampling").
 *
 * One reduction order for every query: the context is cut into partitions of
 * SLM_CUDA_ATTN_PARTITION positions; inside a partition the scores are exact (two passes:
 * max, then exp and sum) and each output element accumulates p * v in position order; the
 * partitions are merged in order by k_split_combine (the online-softmax rescaling, once per
 * partition). A block holds the query heads of one KV head for a tile of consecutive tokens of
 * one sequence (one token when the call has no tiles), so each K/V tile it loads serves every
 * (token, head) row of the block. A row's arithmetic (its scores, its softmax, its p * v chain
 * and their loop bounds) depends only on its own query, position and cache, never on the other
 * rows of its block: a token gets the same bits alone, in any batch and in any tile. Tokens
 * outside [pos_lo, pos_hi) are skipped (the CPU-exact kernel of attention.cu takes them).
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
#define SPLIT_MAX_ROWS SLM_CUDA_ATTN_TILE_ROWS   /* query rows (tokens of a tile x heads of a group) per block */

#ifdef __CUDACC__
#define SPLIT_UNROLL _Pragma("unroll")
#else
#define SPLIT_UNROLL _Pragma("GCC unroll 16")
#endif

static_assert(SPLIT_P % SPLIT_TK == 0, "tiles must not straddle partitions");
static_assert(SPLIT_MAX_ROWS >= SLM_CUDA_ATTN_MAX_GROUP, "a block must hold a whole group");

struct split_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const __half *k, *v;         /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    const int32_t *tiles;        /* (n_tiles + 1) token bounds, or NULL: one token per tile */
    int n_tiles;
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
           (size_t)SPLIT_TK * d * sizeof(__half) + 2 * (size_t)rows * sizeof(float) + (size_t)rows * sizeof(int);
}

/* The tokens [*first, *first + *n) of tile i: token i when the call has no tiles, else
 * [tiles[i], tiles[i + 1]), which must be a run a block can take: 0 <= first < first + n <=
 * n_tokens, at most SPLIT_MAX_ROWS / group tokens, one seq_row, consecutive positions. False
 * for a tile that is not (its blocks compute nothing, k_split_combine makes its rows NaN). */
__device__ static bool split_tile(const struct split_args &a, int i, int *first, int *n)
{
    if (!a.tiles) {
        *first = i, *n = 1;
        return true;
    }
    const int t0 = a.tiles[i], t1 = a.tiles[i + 1];
    if (t0 < 0 || t1 <= t0 || t1 > a.n_tokens || t1 - t0 > SPLIT_MAX_ROWS / (a.n_head / a.n_head_kv)) return false;
    for (int j = t0 + 1; j < t1; j++)
        if (a.seq_row[j] != a.seq_row[t0] || (long long)a.pos[j] != (long long)a.pos[t0] + (j - t0)) return false;
    *first = t0, *n = t1 - t0;
    return true;
}

/* End (exclusive) of the positions a token at pos takes from the partition starting at start:
 * start itself (nothing) when the token is outside [pos_lo, pos_hi), past max_ctx, or its
 * context ends before the partition. */
__device__ static inline int split_row_end(const struct split_args &a, int pos, int start)
{
    const int n_ctx = pos + 1;
    if (pos < a.pos_lo || pos >= a.pos_hi || n_ctx > a.max_ctx || start >= n_ctx) return start;
    return min(start + SPLIT_P, n_ctx);
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

/* grid (n_tiles, n_head_kv, max_parts) (n_tiles = n_tokens without tiles), SPLIT_THREADS
 * threads, at most ROWS rows (SPLIT_MAX_ROWS with tiles; one group, SLM_CUDA_ATTN_MAX_GROUP,
 * without: fewer registers for decode). Row r = query head g * group + r % group of token
 * first + r / group of the tile. Each K/V tile is loaded once for all rows; row r uses the
 * positions [start, row_e[r]) only, the loop bounds its token alone would have. ROWS only
 * sets how many (row, pair) items a thread may hold, not what any item computes. */
template <int D, int ROWS>
__global__ void __launch_bounds__(SPLIT_THREADS) k_split_partial(struct split_args a)
{
    constexpr int ITEMS = ROWS * (D / 2) / SPLIT_THREADS;
    static_assert(ROWS * (D / 2) % SPLIT_THREADS == 0, "items must cover the rows exactly");
    SLM_DYN_SHARED(float, smem);
    const int group = a.n_head / a.n_head_kv, g = blockIdx.y, part = blockIdx.z;
    const int start = part * SPLIT_P;
    int first, n;
    if (!split_tile(a, (int)blockIdx.x, &first, &n)) return;
    int end = start;   /* the furthest any row goes */
    for (int j = 0; j < n; j++) end = max(end, split_row_end(a, a.pos[first + j], start));
    if (end == start) return;
    const int rows = n * group;
    const int32_t *blocks = a.block_tables + (size_t)a.seq_row[first] * a.max_blocks;

    float *qs = smem;                                   /* (rows, D) q rounded to f16 */
    float *sc = qs + (size_t)rows * D;                  /* (rows, SPLIT_P) scores, then weights */
    __half2 *tile = reinterpret_cast<__half2 *>(sc + (size_t)rows * SPLIT_P);   /* (SPLIT_TK, D) */
    float *row_m = reinterpret_cast<float *>(tile + SPLIT_TK * (D / 2));       /* (rows) */
    float *row_l = row_m + rows;                                                /* (rows) */
    int *row_e = reinterpret_cast<int *>(row_l + rows);                         /* (rows) */

    for (int r = threadIdx.x; r < rows; r += blockDim.x) row_e[r] = split_row_end(a, a.pos[first + r / group], start);
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) {
        int r = i / D;
        const float *qr = a.q + ((size_t)(first + r / group) * a.n_head + (size_t)g * group + r % group) * D;
        qs[i] = __half2float(__float2half_rn(qr[i % D]));
    }

    /* Scores of every row against each K tile, up to the row's own end. */
    for (int t0 = start; t0 < end; t0 += SPLIT_TK) {
        int nt = min(SPLIT_TK, end - t0);
        __syncthreads();
        load_tile<D>(tile, a.k, blocks, t0, nt, g, a);
        __syncthreads();
        const __half *kt = reinterpret_cast<const __half *>(tile);
        for (int i = threadIdx.x; i < rows * nt; i += blockDim.x) {
            int r = i / nt, tt = i % nt;
            if (t0 + tt >= row_e[r]) continue;
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
        const int len = row_e[r] - start;
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

    /* Each (row, pair of dims) item accumulates weight * v in position order, up to the row's
     * own end (no product past it: not even a zero weight's). */
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
            const int nr = min(nt, row_e[r] - t0);
            for (int tt = 0; tt < nr; tt++) {
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
        if (row_e[r] == start) continue;   /* the row takes no part in this partition */
        int tok = first + r / group, h = g * group + r % group;
        float *o = a.ws + (((size_t)tok * a.n_head + h) * a.max_parts + part) * (D + 2);
        if (c == 0) {
            o[0] = row_m[r];
            o[1] = row_l[r];
        }
        o[2 + 2 * c] = acc[j].x;
        o[3 + 2 * c] = acc[j].y;
    }
}

/* Whether token tok's partials were computed: always without tiles; with them, whether the
 * tile found for tok (the last i with tiles[i] <= tok, by bisection) holds tok and is a run
 * (split_tile). Bisection of a malformed array stays inside it and can only miss. */
__device__ static bool split_token_tiled(const struct split_args &a, int tok)
{
    if (!a.tiles) return true;
    int lo = 0, hi = a.n_tiles - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (a.tiles[mid] <= tok) lo = mid;
        else hi = mid - 1;
    }
    int first, n;
    return split_tile(a, lo, &first, &n) && first <= tok && tok < first + n;
}

/* grid (n_tokens, n_head), head_dim threads: merges a row's partitions in order. */
__global__ void k_split_combine(struct split_args a, int head_dim, float *out)
{
    const int tok = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    const int n_ctx = a.pos[tok] + 1;
    if (n_ctx - 1 < a.pos_lo || n_ctx - 1 >= a.pos_hi) return;
    float *o_out = out + ((size_t)tok * a.n_head + h) * head_dim + d;
    if (n_ctx > a.max_ctx || !split_token_tiled(a, tok)) {   /* the caller's max_ctx or tiles are wrong */
        *o_out = __int_as_float(0x7fc00000);
        return;
    }
    const int n_part = (n_ctx + SPLIT_P - 1) / SPLIT_P;
    const float *base = a.ws + ((size_t)tok * a.n_head + h) * a.max_parts * (head_dim + 2);
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

/* k_split_partial<head_dim, ROWS> over grid. */
template <int ROWS>
static void split_launch(dim3 grid, size_t smem, cudaStream_t stream, const struct split_args &a, int head_dim)
{
    switch (head_dim) {
    case 64: SLM_LAUNCH((k_split_partial<64, ROWS>), grid, SPLIT_THREADS, smem, stream, a); break;
    case 80: SLM_LAUNCH((k_split_partial<80, ROWS>), grid, SPLIT_THREADS, smem, stream, a); break;
    case 96: SLM_LAUNCH((k_split_partial<96, ROWS>), grid, SPLIT_THREADS, smem, stream, a); break;
    default: SLM_LAUNCH((k_split_partial<128, ROWS>), grid, SPLIT_THREADS, smem, stream, a); break;
    }
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
    if (t->tiles ? t->n_tiles < 1 || t->n_tiles > t->n_tokens ||
                       slm_emu_check_device_ptr(t->tiles, ((size_t)t->n_tiles + 1) * sizeof(int32_t), "tiles")
                 : t->n_tiles != 0)
        return -EINVAL;
    const int group = shape->n_head / shape->n_head_kv;
    struct split_args a = {q, static_cast<const __half *>(kv->k), static_cast<const __half *>(kv->v), t->pos,
                           t->seq_row, t->block_tables, t->tiles, t->n_tiles, t->max_blocks, kv->n_blocks,
                           kv->block_size, t->n_tokens, shape->n_head, shape->n_head_kv, pos_lo, pos_hi, max_ctx,
                           split_parts(max_ctx), shape->scale, static_cast<float *>(workspace)};
    const int n_blocks = t->tiles ? t->n_tiles : t->n_tokens;
    const int cap = SPLIT_MAX_ROWS / group, max_tile = !t->tiles ? 1 : cap < t->n_tokens ? cap : t->n_tokens;
    dim3 grid((unsigned)n_blocks, (unsigned)shape->n_head_kv, (unsigned)a.max_parts);
    size_t smem = split_smem(max_tile * group, shape->head_dim);
    if (t->tiles) split_launch<SPLIT_MAX_ROWS>(grid, smem, stream, a, shape->head_dim);
    else split_launch<SLM_CUDA_ATTN_MAX_GROUP>(grid, smem, stream, a, shape->head_dim);
    if (attn_launched()) return -EIO;
    SLM_LAUNCH(k_split_combine, dim3((unsigned)t->n_tokens, (unsigned)shape->n_head), shape->head_dim, 0, stream, a,
               shape->head_dim, out);
    return attn_launched();
}
