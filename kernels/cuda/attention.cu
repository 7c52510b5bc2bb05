/*
 * kernels/cuda/attention.cu - RoPE and the paged KV store, flash-decoding and causal
 * prefill attention over the paged f16 cache.
 *
 * One reduction order for every query, whichever launcher computes it: the context is cut
 * into partitions of SLM_CUDA_ATTN_PARTITION positions; inside a partition the scores are
 * exact (two passes: max, then exp and sum) and each output element accumulates p * v in
 * position order; the partitions are merged in order by k_attn_combine (the online-softmax
 * rescaling, once per partition). A block holds the query heads of one KV head for one
 * token (decode) or for several consecutive tokens of one sequence (prefill), so each K/V
 * tile it loads serves all of them; what a row computes never depends on the other rows of
 * its block, so a token gets the same bits decoded, prefilled, alone or in any batch.
 *
 * Products that must round the same way under nvcc (which contracts a * b + c) and the host
 * compiler (which does not) are written as fmaf / __fmul_rn.
 */
#include <errno.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/compat.h"

#define ATTN_P SLM_CUDA_ATTN_PARTITION
#define ATTN_TK 32          /* positions per K/V tile in shared memory */
#define ATTN_THREADS 128
#define ATTN_MAX_ROWS 32    /* query rows (token, head) per block */

#ifdef __CUDACC__
#define ATTN_UNROLL _Pragma("unroll")
#else
#define ATTN_UNROLL _Pragma("GCC unroll 16")
#endif

static_assert(ATTN_P % ATTN_TK == 0, "tiles must not straddle partitions");

/* Pool row of position t of a sequence, or -1 when its block id is out of range. */
__device__ static inline long long kv_row(const int32_t *blocks, int t, int block_size, int n_blocks)
{
    int b = blocks[t / block_size];
    if (b < 0 || b >= n_blocks) return -1;
    return (long long)b * block_size + t % block_size;
}

/* ---- RoPE and store: one block per token. */

__global__ void k_rope_store(float *q, float *k, const float *v, const int32_t *pos, const int32_t *seq_row,
                             const int32_t *block_tables, int max_blocks, __half *k_cache, __half *v_cache,
                             int n_blocks, int block_size, int n_head, int n_head_kv, int head_dim, int rope_dim,
                             int rope_layout, float theta_scale)
{
    const int i = blockIdx.x;
    const int p = pos[i];
    const int pairs = rope_dim / 2;
    const size_t qd = (size_t)n_head * head_dim, kvd = (size_t)n_head_kv * head_dim;
    for (int it = threadIdx.x; it < (n_head + n_head_kv) * pairs; it += blockDim.x) {
        int hh = it / pairs, j = it % pairs;
        float *x = hh < n_head ? q + i * qd + (size_t)hh * head_dim : k + i * kvd + (size_t)(hh - n_head) * head_dim;
        /* The CPU's running product, so the angles have its bits. */
        float theta = (float)p;
        for (int s = 0; s < j; s++) theta = __fmul_rn(theta, theta_scale);
        float c = cosf(theta), sn = sinf(theta);
        int i0 = rope_layout ? j : 2 * j, i1 = rope_layout ? j + pairs : 2 * j + 1;
        float a = x[i0], b = x[i1];
        x[i0] = fmaf(a, c, -__fmul_rn(b, sn));
        x[i1] = fmaf(a, sn, __fmul_rn(b, c));
    }
    __syncthreads();
    long long row = kv_row(block_tables + (size_t)seq_row[i] * max_blocks, p, block_size, n_blocks);
    if (row < 0) return;
    for (size_t e = threadIdx.x; e < kvd; e += blockDim.x) {
        k_cache[(size_t)row * kvd + e] = __float2half_rn(k[i * kvd + e]);
        v_cache[(size_t)row * kvd + e] = __float2half_rn(v[i * kvd + e]);
    }
}

/* ---- attention: partials per partition, then the merge. */

struct attn_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const __half *k, *v;         /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    int max_blocks, n_blocks, block_size;
    int n_tokens, n_head, n_head_kv;
    int tile_tokens;             /* tokens per block (1 for decode) */
    int max_parts;               /* workspace partitions per (token, head) */
    float scale;
    float *ws;                   /* (n_tokens, n_head, max_parts, D + 2): m, l, o[D] */
};

/* Shared memory of k_attn_partial for `rows` query rows of head_dim d. */
static size_t attn_smem(int rows, int d)
{
    return (size_t)rows * d * sizeof(float) + (size_t)rows * ATTN_P * sizeof(float) +
           (size_t)ATTN_TK * d * sizeof(__half) + 2 * (size_t)rows * sizeof(float);
}

/* Loads the K or V rows of positions [t0, t0 + nt) of KV head g into tile (nt, D). */
template <int D>
__device__ static void load_tile(__half2 *tile, const __half *cache, const int32_t *blocks, int t0, int nt, int g,
                                 const struct attn_args &a)
{
    const size_t kvd = (size_t)a.n_head_kv * D;
    for (int i = threadIdx.x; i < nt * (D / 2); i += blockDim.x) {
        int tt = i / (D / 2), c = i % (D / 2);
        long long row = kv_row(blocks, t0 + tt, a.block_size, a.n_blocks);
        tile[i] = row < 0 ? __floats2half2_rn(0.0f, 0.0f)
                          : reinterpret_cast<const __half2 *>(cache + (size_t)row * kvd + (size_t)g * D)[c];
    }
}

/* grid (token tiles, n_head_kv, partitions), ATTN_THREADS threads. Rows r = (token of the
 * tile) * group + (query head within the group). */
template <int D>
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_partial(struct attn_args a)
{
    constexpr int ITEMS = ATTN_MAX_ROWS * (D / 2) / ATTN_THREADS;
    SLM_DYN_SHARED(float, smem);
    const int group = a.n_head / a.n_head_kv, g = blockIdx.y, part = blockIdx.z;
    const int tok0 = blockIdx.x * a.tile_tokens;
    const int ntok = min(a.tile_tokens, a.n_tokens - tok0);
    const int rows = ntok * group;
    const int start = part * ATTN_P;
    int hi = 0;
    for (int j = 0; j < ntok; j++) hi = max(hi, a.pos[tok0 + j] + 1);
    if (start >= hi) return;   /* the whole block: no row reaches this partition */
    const int end = min(start + ATTN_P, hi);
    const int32_t *blocks = a.block_tables + (size_t)a.seq_row[tok0] * a.max_blocks;

    const int rows_alloc = a.tile_tokens * group;
    float *qs = smem;                                   /* (rows, D) q rounded to f16 */
    float *sc = qs + (size_t)rows_alloc * D;            /* (rows, ATTN_P) scores, then weights */
    __half2 *tile = reinterpret_cast<__half2 *>(sc + (size_t)rows_alloc * ATTN_P);   /* (ATTN_TK, D) */
    float *row_m = reinterpret_cast<float *>(tile + ATTN_TK * (D / 2));
    float *row_l = row_m + rows_alloc;

    const size_t qd = (size_t)a.n_head * D;
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) {
        int r = i / D, d = i % D;
        int tok = tok0 + r / group, h = g * group + r % group;
        qs[i] = __half2float(__float2half_rn(a.q[tok * qd + (size_t)h * D + d]));
    }

    /* Scores of every row against each K tile. */
    for (int t0 = start; t0 < end; t0 += ATTN_TK) {
        int nt = min(ATTN_TK, end - t0);
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
            sc[(size_t)r * ATTN_P + (t0 - start) + tt] = __fmul_rn(acc, a.scale);
        }
    }
    __syncthreads();

    /* Softmax inside the partition, a warp per row: max, weights exp(s - max), their sum. */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    for (int r = warp; r < rows; r += n_warps) {
        int len = min(end, a.pos[tok0 + r / group] + 1) - start;
        float *s = sc + (size_t)r * ATTN_P;
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
ATTN_UNROLL
    for (int j = 0; j < ITEMS; j++) acc[j] = make_float2(0.0f, 0.0f);
    for (int t0 = start; t0 < end; t0 += ATTN_TK) {
        int nt = min(ATTN_TK, end - t0);
        __syncthreads();
        load_tile<D>(tile, a.v, blocks, t0, nt, g, a);
        __syncthreads();
ATTN_UNROLL
        for (int j = 0; j < ITEMS; j++) {
            int it = threadIdx.x + j * ATTN_THREADS;
            if (it >= rows * (D / 2)) continue;
            int r = it / (D / 2), c = it % (D / 2);
            int stop = min(nt, a.pos[tok0 + r / group] + 1 - t0);
            const float *w = sc + (size_t)r * ATTN_P + (t0 - start);
            for (int tt = 0; tt < stop; tt++) {
                float2 vv = __half22float2(tile[tt * (D / 2) + c]);
                acc[j].x = fmaf(w[tt], vv.x, acc[j].x);
                acc[j].y = fmaf(w[tt], vv.y, acc[j].y);
            }
        }
    }

    /* Partials of the rows that reach this partition. */
ATTN_UNROLL
    for (int j = 0; j < ITEMS; j++) {
        int it = threadIdx.x + j * ATTN_THREADS;
        if (it >= rows * (D / 2)) continue;
        int r = it / (D / 2), c = it % (D / 2);
        int tok = tok0 + r / group, h = g * group + r % group;
        if (a.pos[tok] + 1 <= start) continue;
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
__global__ void k_attn_combine(const float *ws, const int32_t *pos, int n_head, int head_dim, int max_parts,
                               float *out)
{
    const int tok = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    const int n_part = (pos[tok] + 1 + ATTN_P - 1) / ATTN_P;
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
    out[((size_t)tok * n_head + h) * head_dim + d] = o / l;
}

/* ---- launchers */

static int shape_ok(const struct slm_cuda_attn_shape *s)
{
    if (!s || s->n_head_kv < 1 || s->n_head < s->n_head_kv || s->n_head % s->n_head_kv) return 0;
    if (s->n_head / s->n_head_kv > SLM_CUDA_ATTN_MAX_GROUP) return 0;
    if (s->head_dim != 64 && s->head_dim != 80 && s->head_dim != 96 && s->head_dim != 128) return 0;
    if (s->rope_dim < 0 || s->rope_dim > s->head_dim || s->rope_dim % 2) return 0;
    if (s->rope_layout != 0 && s->rope_layout != 1) return 0;
    return 1;
}

/* The tables and the layer's cache, for n tokens (n >= 1). */
static int tokens_ok(const struct slm_cuda_attn_shape *s, const struct slm_cuda_attn_tokens *t,
                     const struct slm_cuda_kv_layer *kv)
{
    if (!t || !kv || t->n_tokens < 1 || t->max_blocks < 1 || t->n_seq_rows < 1) return 0;
    if (!t->pos || !t->seq_row || !t->block_tables || !kv->k || !kv->v) return 0;
    if (kv->n_blocks < 1 || kv->block_size < 1) return 0;
    size_t cache = (size_t)kv->n_blocks * kv->block_size * s->n_head_kv * s->head_dim * sizeof(__half);
    if (slm_emu_check_device_ptr(t->pos, (size_t)t->n_tokens * 4, "pos") ||
        slm_emu_check_device_ptr(t->seq_row, (size_t)t->n_tokens * 4, "seq_row") ||
        slm_emu_check_device_ptr(t->block_tables, (size_t)t->n_seq_rows * t->max_blocks * 4, "block_tables") ||
        slm_emu_check_device_ptr(kv->k, cache, "k cache") || slm_emu_check_device_ptr(kv->v, cache, "v cache"))
        return 0;
    return 1;
}

static int launched(void)
{
    return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

extern "C" int slm_cuda_rope_store(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                   const struct slm_cuda_kv_layer *kv, float *q, float *k, const float *v,
                                   cudaStream_t stream)
{
    if (!shape_ok(shape) || !tokens_ok(shape, t, kv) || !q || !k || !v) return -EINVAL;
    size_t n = (size_t)t->n_tokens, kvd = (size_t)shape->n_head_kv * shape->head_dim;
    if (slm_emu_check_device_ptr(q, n * shape->n_head * shape->head_dim * 4, "q") ||
        slm_emu_check_device_ptr(k, n * kvd * 4, "k") || slm_emu_check_device_ptr(v, n * kvd * 4, "v"))
        return -EINVAL;
    SLM_LAUNCH(k_rope_store, t->n_tokens, 128, 0, stream, q, k, v, t->pos, t->seq_row, t->block_tables,
               t->max_blocks, static_cast<__half *>(kv->k), static_cast<__half *>(kv->v), kv->n_blocks,
               kv->block_size, shape->n_head, shape->n_head_kv, shape->head_dim, shape->rope_dim,
               shape->rope_layout, shape->rope_theta_scale);
    return launched();
}

extern "C" size_t slm_cuda_attention_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens, int max_ctx)
{
    if (!shape_ok(shape) || n_tokens < 1 || max_ctx < 1) return 0;
    size_t parts = ((size_t)max_ctx + ATTN_P - 1) / ATTN_P;
    return (size_t)n_tokens * shape->n_head * parts * (shape->head_dim + 2) * sizeof(float);
}

/* Partials for tiles of tile_tokens tokens, then the merge. */
static int attention_run(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                         const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx, int tile_tokens,
                         void *workspace, size_t workspace_bytes, float *out, cudaStream_t stream)
{
    if (!shape_ok(shape) || !tokens_ok(shape, t, kv) || !q || !out || !workspace || max_ctx < 1) return -EINVAL;
    size_t need = slm_cuda_attention_workspace(shape, t->n_tokens, max_ctx);
    size_t qbytes = (size_t)t->n_tokens * shape->n_head * shape->head_dim * sizeof(float);
    if (workspace_bytes < need || slm_emu_check_device_ptr(workspace, need, "workspace") ||
        slm_emu_check_device_ptr(q, qbytes, "q") || slm_emu_check_device_ptr(out, qbytes, "out"))
        return -EINVAL;
    int group = shape->n_head / shape->n_head_kv;
    struct attn_args a = {q, static_cast<const __half *>(kv->k), static_cast<const __half *>(kv->v), t->pos,
                          t->seq_row, t->block_tables, t->max_blocks, kv->n_blocks, kv->block_size,
                          t->n_tokens, shape->n_head, shape->n_head_kv, tile_tokens,
                          (max_ctx + ATTN_P - 1) / ATTN_P, shape->scale, static_cast<float *>(workspace)};
    dim3 grid((unsigned)((t->n_tokens + tile_tokens - 1) / tile_tokens), (unsigned)shape->n_head_kv,
              (unsigned)a.max_parts);
    size_t smem = attn_smem(tile_tokens * group, shape->head_dim);
    switch (shape->head_dim) {
    case 64: SLM_LAUNCH(k_attn_partial<64>, grid, ATTN_THREADS, smem, stream, a); break;
    case 80: SLM_LAUNCH(k_attn_partial<80>, grid, ATTN_THREADS, smem, stream, a); break;
    case 96: SLM_LAUNCH(k_attn_partial<96>, grid, ATTN_THREADS, smem, stream, a); break;
    default: SLM_LAUNCH(k_attn_partial<128>, grid, ATTN_THREADS, smem, stream, a); break;
    }
    if (launched()) return -EIO;
    SLM_LAUNCH(k_attn_combine, dim3((unsigned)t->n_tokens, (unsigned)shape->n_head), shape->head_dim, 0, stream,
               a.ws, t->pos, shape->n_head, shape->head_dim, a.max_parts, out);
    return launched();
}

extern "C" int slm_cuda_attention_decode(const struct slm_cuda_attn_shape *shape,
                                         const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv,
                                         const float *q, int max_ctx, void *workspace, size_t workspace_bytes,
                                         float *out, cudaStream_t stream)
{
    return attention_run(shape, t, kv, q, max_ctx, 1, workspace, workspace_bytes, out, stream);
}

extern "C" int slm_cuda_attention_prefill(const struct slm_cuda_attn_shape *shape,
                                          const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv,
                                          const float *q, int p0, void *workspace, size_t workspace_bytes,
                                          float *out, cudaStream_t stream)
{
    if (!shape_ok(shape) || !t || p0 < 0) return -EINVAL;
    int tile = ATTN_MAX_ROWS / (shape->n_head / shape->n_head_kv);
    return attention_run(shape, t, kv, q, p0 + t->n_tokens, tile, workspace, workspace_bytes, out, stream);
}
