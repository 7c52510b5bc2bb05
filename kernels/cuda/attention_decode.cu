/*
 * kernels/cuda/attention_decode.cu - attention over the paged KV cache on tensor cores, one
 * kernel for every step (docs/cuda.md, "Attention on tensor cores"):
 * - slm_cuda_attention_decode_fused, a decode-only step (the CUDA-graph path): RoPE, the KV
 *   store and attention in one launch, one block per (partition, KV head, token);
 * - slm_cuda_attention_paged, any other step (prefill chunks, mixed steps) after
 *   slm_cuda_rope_store: one block per (partition, KV head, tile), a tile being up to
 *   slm_cuda_attention_tile_tokens() consecutive tokens of one sequence (built on the host by
 *   slm_cuda_attention_tiles): their query rows share every K and V row the block loads, as
 *   flash attention shares them.
 *
 * A block (128 threads, 4 warps) takes one partition of SLM_CUDA_ATTN_DECODE_PARTITION (64)
 * positions of one KV head for its rows: the n_head / n_head_kv query heads of each of its
 * tokens, padded to a multiple of 16 (the MMA's M). It
 *   1. issues the loads of the partition's K and V rows the rows need (16-byte loads into
 *      registers, all in flight at once; zeros outside them, NaN for a block id out of range),
 *   2. rounds the rows' q to f16 in shared memory (FRESH: rotated first, as
 *      slm_cuda_rope_store rotates; the block of the token's last partition also rotates its k,
 *      rounds k and v to halves, stores them into the cache and uses them from shared memory for
 *      position pos: no block reads the row being written),
 *   3. scores on tensor cores: S = q K^T, m16n8k16 f16 x f16 -> f32, each (row, position) a chain
 *      of head_dim / 16 MMAs from 0, dims in order; then scale (one product) and the row's mask,
 *   4. softmax inside the partition, a warp per row: lane l takes positions l and l + 32, the
 *      max and the sum by butterflies; the weights w (f32) go to the PV product as two halves,
 *      hi = f16(w) and lo = f16(w - hi) (so P keeps 22 bits, not f16's 11),
 *   5. P V on tensor cores: each (row, dim) a chain, over the partition's four 16-position
 *      chunks in order, of mma(P_hi, V) then mma(P_lo, V),
 *   6. a token whose context is one partition writes out = o / l; otherwise the block writes
 *      (m, l, o[D]) per row to the workspace, and the last block of the (token, KV head) to
 *      finish (an atomicInc on a counter of the workspace, after __threadfence) merges the
 *      partitions (merge_token: each head's max, then item (head, 4 dims) chains the partitions
 *      of each of n_split contiguous ranges in order, the ranges' results added in order; a
 *      function of the partition count and the shape only). atomicInc with the limit
 *      n_part - 1 wraps the counter to 0 on the last arrival: the counter is reset for the next
 *      launch (or graph replay) by the block that merges, with no memset.
 * A sliding window w (gemma3's local layers) attends to first = max(0, pos - w + 1) .. pos only:
 * the partitions wholly before first take no part (the counter counts the others), and a
 * position outside a row's [first, pos] weighs exactly 0.
 *
 * Bits. A row's scores, weights and products depend only on its own q, its position and the
 * cache: the MMA computes each output element from its own row of A and column of B, a masked
 * position enters the P V chain as an exact 0 (its weight is 0, and a V row no row of the block
 * may read is loaded as 0), every chain runs its full length whatever the block's other rows
 * are, and the merge's order is fixed by the partitions' indices. So a token has the same bits
 * decoded alone, among 64 others, or recomputed inside a prefill tile (a preempted request's
 * recomputation, a chunked prefill): batch invariance as docs/numerics.md states it, checked
 * under the emulator (tests/test_cuda_attention_decode.cpp, tests/test_cuda_attention_prefill.cpp)
 * and by the emulator's race check, which runs the blocks forward and in reverse.
 *
 * Products that must round the same way under nvcc (which contracts a * b + c) and the host
 * compiler (which does not) are written as fmaf / __fmul_rn.
 */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/compat.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"

#define DEC_P SLM_CUDA_ATTN_DECODE_PARTITION
#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_TPR 8                                /* threads per K / V row */
#define DEC_ROWS_PASS (DEC_THREADS / DEC_TPR)    /* rows the block covers per pass: 16 */
#define DEC_RPT (DEC_P / DEC_ROWS_PASS)          /* rows a thread holds: 4 */
#define DEC_MERGE_BATCH 8                        /* partitions whose partials a merging thread loads at once */
#define ATT_MAX_TILE 64                          /* tokens a tile at most (head_dim 64, one query head a KV head) */
/* The dynamic shared memory a launch may opt in to: attn_smem's largest (45.1 KiB, D 256) is under
 * it, and so are its 1.3 KiB of static shared memory beside it (kernels.h, "Shared memory"). */
#define ATT_SMEM_MAX 49152

#ifdef __CUDACC__
#define DEC_UNROLL _Pragma("unroll")
#else
#define DEC_UNROLL _Pragma("GCC unroll 16")
#endif

static_assert(DEC_P % DEC_ROWS_PASS == 0, "a partition is whole passes");
static_assert(DEC_P == 64, "the softmax gives each lane positions lane and lane + 32; P V takes 4 chunks of 16");

struct fused_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const float *k, *v;          /* (n_tokens, n_head_kv * D) */
    __half *k_cache, *v_cache;   /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    const int32_t *tiles;        /* (n_tiles, 2) first token, count; NULL: a token a tile */
    int n_tokens, tile_tokens;   /* tile_tokens: most tokens a tile may have */
    int max_blocks, n_blocks, block_size;
    int n_head, n_head_kv;
    int rope_dim, rope_layout;
    const float2 *cs;            /* (cs_positions, rope_dim / 2) (cos, sin) */
    int cs_positions;
    int max_ctx;                 /* every pos + 1 is at most this */
    int max_parts;               /* partitions per (token, KV head) in the workspace */
    int window;                  /* > 0: positions pos - window + 1 .. pos only */
    int rows_cap;                /* query rows of the block's shared memory: a multiple of 16 */
    float scale;
    unsigned *counters;          /* (n_tokens, n_head_kv): blocks of the slot done, mod n_part */
    float *part;                 /* (n_tokens, n_head_kv, max_parts, group, D + 4): m, l, 2 unused, o[D] */
    float *out;                  /* (n_tokens, n_head * D) */
};

/* Element d of a head x rotated by pair j's (cos, sin) c, as k_rope_store computes it
 * (attention.cu): fmaf(a, cos, -(b sin)) for the first of the pair, fmaf(a, sin, b cos) for
 * the second. Elements past rope_dim pass through. */
__device__ static inline float rope_elem(const float *x, int d, int rope_dim, int layout, const float2 *cs_row,
                                         bool in_table)
{
    const int pairs = rope_dim / 2;
    if (d >= rope_dim) return x[d];
    int j, i0, i1;
    if (layout) j = d < pairs ? d : d - pairs, i0 = j, i1 = j + pairs;
    else j = d / 2, i0 = 2 * j, i1 = 2 * j + 1;
    const float2 c = in_table ? cs_row[j] : make_float2(__int_as_float(0x7fc00000), 0.0f);
    const float a = x[i0], b = x[i1];
    return d == i0 ? fmaf(a, c.x, -__fmul_rn(b, c.y)) : fmaf(a, c.y, __fmul_rn(b, c.x));
}

/* Loads CH 32-bit words (half2) from p with the widest aligned loads: 16 bytes when CH is a
 * multiple of 4, 8 when of 2. */
template <int CH> __device__ static inline void load_words(uint32_t (&w)[CH], const __half *p)
{
    if (CH % 4 == 0) {
        DEC_UNROLL
        for (int c = 0; c < CH / 4; c++) {
            uint4 u = reinterpret_cast<const uint4 *>(p)[c];
            w[4 * c] = u.x, w[4 * c + 1] = u.y, w[4 * c + 2] = u.z, w[4 * c + 3] = u.w;
        }
    } else if (CH % 2 == 0) {
        DEC_UNROLL
        for (int c = 0; c < CH / 2; c++) {
            uint2 u = reinterpret_cast<const uint2 *>(p)[c];
            w[2 * c] = u.x, w[2 * c + 1] = u.y;
        }
    } else {
        DEC_UNROLL
        for (int c = 0; c < CH; c++) w[c] = reinterpret_cast<const uint32_t *>(p)[c];
    }
}

/* Two halves as a word (lo first). */
__device__ static inline uint32_t halves_to_word(__half lo, __half hi)
{
    return (uint32_t)__half_as_ushort(lo) | (uint32_t)__half_as_ushort(hi) << 16;
}

/* A partial result as the merging block reads it: from L2 (another SM wrote it), not L1. */
__device__ static inline float load_partial(const float *p)
{
#ifdef __CUDA_ARCH__
    return __ldcg(p);
#else
    return *p;
#endif
}

__device__ static inline float4 load_partial4(const float *p)
{
#ifdef __CUDA_ARCH__
    return __ldcg(reinterpret_cast<const float4 *>(p));
#else
    return *reinterpret_cast<const float4 *>(p);
#endif
}

/* Partitions [lo, hi) of one head's partials p (stride floats apart), dims 4c .. 4c + 3, in
 * order: l = sum l_p e_p, o = sum o_p e_p, e_p = exp(m_p - m_max), each a chain of fmaf. The
 * loads of DEC_MERGE_BATCH partitions are issued before their chain steps (independent
 * addresses, in flight together): a few L2 round trips instead of one per partition. */
template <int D>
__device__ static inline void merge_range(const float *p, size_t stride, float m_max, int c, int lo, int hi,
                                          float4 &o, float &l)
{
    o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    l = 0.0f;
    for (int p0 = lo; p0 < hi; p0 += DEC_MERGE_BATCH) {
        float mv[DEC_MERGE_BATCH], lv[DEC_MERGE_BATCH];
        float4 ov[DEC_MERGE_BATCH];
        DEC_UNROLL
        for (int b = 0; b < DEC_MERGE_BATCH; b++) {   /* past hi: partition hi - 1 again, unused */
            const float *r = p + (size_t)min(p0 + b, hi - 1) * stride;
            mv[b] = load_partial(r);
            lv[b] = load_partial(r + 1);
            ov[b] = load_partial4(r + 4 + 4 * c);
        }
        DEC_UNROLL
        for (int b = 0; b < DEC_MERGE_BATCH; b++) {
            if (p0 + b >= hi) break;
            const float e = expf(mv[b] - m_max);
            l = fmaf(lv[b], e, l);
            o.x = fmaf(ov[b].x, e, o.x);
            o.y = fmaf(ov[b].y, e, o.y);
            o.z = fmaf(ov[b].z, e, o.z);
            o.w = fmaf(ov[b].w, e, o.w);
        }
    }
}

/* The last block of (token tok, KV head g) to finish merges the token's partitions [p0, n_part)
 * from the workspace into out. A function of the partials, the partition count and the shape
 * only: each head's largest m (exact in any order), a warp per head; then item (head, 4 dims)
 * merges the partitions of each of S contiguous ranges in order (merge_range), S = the most
 * that fit the block (a power of two: a function of the shape only), and the S results are
 * added in range order. row_m: (group) floats; scratch: (DEC_THREADS) float4 and as many floats
 * of shared memory. Every thread of the block calls it. */
template <int D>
__device__ static void merge_token(const struct fused_args &a, int tok, int g, int p0, int n_part, float *row_m,
                                   float4 *scratch)
{
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int group = a.n_head / a.n_head_kv, n_active = n_part - p0;
    const float *pbase = a.part + ((size_t)tok * a.n_head_kv + g) * a.max_parts * group * (D + 4);
    float *out = a.out + ((size_t)tok * a.n_head + (size_t)g * group) * D;   /* (group, D) */
    const size_t pstride = (size_t)group * (D + 4);   /* floats from a partition's partial to the next's */
    __syncthreads();   /* row_m and scratch are free */
    for (int h = warp; h < group; h += DEC_WARPS) {
        float m = -INFINITY;
        for (int pp = p0 + lane; pp < n_part; pp += 32) m = fmaxf(m, load_partial(pbase + pp * pstride + (size_t)h * (D + 4)));
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) row_m[h] = m;
    }
    __syncthreads();
    constexpr int Q = D / 4;
    const int items = group * Q;
    int n_split = 1;
    while (items * n_split * 2 <= DEC_THREADS) n_split *= 2;
    if (n_split == 1) {
        for (int it = tid; it < items; it += DEC_THREADS) {
            const int h = it / Q, c = it % Q;
            float4 o;
            float l;
            merge_range<D>(pbase + (size_t)h * (D + 4), pstride, row_m[h], c, p0, n_part, o, l);
            out[(size_t)h * D + 4 * c] = o.x / l, out[(size_t)h * D + 4 * c + 1] = o.y / l;
            out[(size_t)h * D + 4 * c + 2] = o.z / l, out[(size_t)h * D + 4 * c + 3] = o.w / l;
        }
    } else {
        float4 *so = scratch;                                          /* (n_split, items) */
        float *sl = reinterpret_cast<float *>(so + n_split * items);   /* (n_split, items) */
        const int sp = tid / items, it = tid % items;
        if (sp < n_split) {
            const int h = it / Q, c = it % Q;
            merge_range<D>(pbase + (size_t)h * (D + 4), pstride, row_m[h], c, p0 + sp * n_active / n_split,
                           p0 + (sp + 1) * n_active / n_split, so[tid], sl[tid]);
        }
        __syncthreads();
        if (tid < items) {
            float4 o = so[tid];
            float l = sl[tid];
            for (int k = 1; k < n_split; k++) {
                const float4 x = so[k * items + tid];
                o.x = __fadd_rn(o.x, x.x), o.y = __fadd_rn(o.y, x.y), o.z = __fadd_rn(o.z, x.z), o.w = __fadd_rn(o.w, x.w);
                l = __fadd_rn(l, sl[k * items + tid]);
            }
            const int h = tid / Q, c = tid % Q;
            out[(size_t)h * D + 4 * c] = o.x / l, out[(size_t)h * D + 4 * c + 1] = o.y / l;
            out[(size_t)h * D + 4 * c + 2] = o.z / l, out[(size_t)h * D + 4 * c + 3] = o.w / l;
        }
    }
    __syncthreads();
}

/* Scores S (rows_cap x DEC_P, row-major) = q K^T on tensor cores, for the 8-position tiles that
 * meet the positions [lo, hi) of the partition (no row reads the others): warp task (16-row
 * tile, 8-position tile), each element a chain of D / 16 m16n8k16 MMAs from 0, dims in order.
 * qw (rows_cap, D / 2) and kw (DEC_P, D / 2): rows of half2 words. Unscaled, unmasked. */
template <int D>
__device__ static inline void attn_scores(const uint32_t *qw, const uint32_t *kw, int rows_cap, float *sc, int lo,
                                          int hi)
{
    constexpr int W = D / 2;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nt0 = lo / 8, n_nt = (hi + 7) / 8 - nt0;
    for (int task = threadIdx.x / 32; task < (rows_cap / 16) * n_nt; task += DEC_WARPS) {
        const int mt = task / n_nt, nt = nt0 + task % n_nt;
        const uint32_t *q0 = qw + (size_t)(16 * mt + g) * W, *q1 = q0 + 8 * W;
        const uint32_t *kr = kw + (size_t)(8 * nt + g) * W;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        DEC_UNROLL
        for (int c = 0; c < D / 16; c++) {
            const uint32_t af[4] = {q0[8 * c + t], q1[8 * c + t], q0[8 * c + t + 4], q1[8 * c + t + 4]};
            const uint32_t bf[2] = {kr[8 * c + t], kr[8 * c + t + 4]};
            slm_mma::mma_f16_k16(acc, af, bf, acc);
        }
        float *s0 = sc + (size_t)(16 * mt + g) * DEC_P + 8 * nt + 2 * t;
        s0[0] = acc[0], s0[1] = acc[1];
        s0[8 * DEC_P] = acc[2], s0[8 * DEC_P + 1] = acc[3];
    }
}

/* One row's softmax inside the partition, by one warp: s (DEC_P floats) holds its scores, of
 * which positions [lo, hi) are attended. Scaled, the max, w = exp(s - max) (0 outside the
 * range), their sum: lane l takes positions l and l + 32, then butterflies. The weights then
 * replace the scores in place as halves: hi = f16(w) at half p, lo = f16(w - hi) at half
 * DEC_P + p (the row's 256 bytes hold both). */
__device__ static inline void softmax_row(float *s, int lo, int hi, float scale, float *m_out, float *l_out)
{
    const int lane = threadIdx.x & 31;
    const bool in0 = lane >= lo && lane < hi, in1 = lane + 32 >= lo && lane + 32 < hi;
    const float s0 = in0 ? __fmul_rn(s[lane], scale) : -INFINITY, s1 = in1 ? __fmul_rn(s[lane + 32], scale) : -INFINITY;
    float m = fmaxf(s0, s1);
    for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    const float w0 = in0 ? expf(s0 - m) : 0.0f, w1 = in1 ? expf(s1 - m) : 0.0f;
    float l = __fadd_rn(w0, w1);
    for (int o = 16; o > 0; o /= 2) l = __fadd_rn(l, __shfl_xor_sync(0xffffffffu, l, o));
    const __half h0 = __float2half_rn(w0), h1 = __float2half_rn(w1);
    const __half e0 = __float2half_rn(__fsub_rn(w0, __half2float(h0))), e1 = __float2half_rn(__fsub_rn(w1, __half2float(h1)));
    __syncwarp();   /* every lane has read its scores */
    unsigned short *ph = reinterpret_cast<unsigned short *>(s);
    ph[lane] = __half_as_ushort(h0), ph[lane + 32] = __half_as_ushort(h1);
    ph[DEC_P + lane] = __half_as_ushort(e0), ph[DEC_P + lane + 32] = __half_as_ushort(e1);
    if (lane == 0) *m_out = m, *l_out = l;
    __syncwarp();
}

/* (16-row tile mt) x (8-dim tile nt) of P V on tensor cores: a chain over the partition's four
 * 16-position chunks in order, mma(P_hi, V) then mma(P_lo, V), from 0. pw: (rows_cap, DEC_P)
 * words, a row's hi halves in words 0..31 and lo halves in 32..63; vw (DEC_P, D / 2) half2 words. */
template <int D>
__device__ static inline void attn_pv(const uint32_t *pw, const uint32_t *vw, int mt, int nt, float (&acc)[4])
{
    const unsigned short *vh = reinterpret_cast<const unsigned short *>(vw);   /* (DEC_P, D) halves */
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, d = 8 * nt + g;
    const uint32_t *p0 = pw + (size_t)(16 * mt + g) * DEC_P, *p1 = p0 + 8 * DEC_P;
    acc[0] = acc[1] = acc[2] = acc[3] = 0.0f;
    DEC_UNROLL
    for (int jc = 0; jc < DEC_P / 16; jc++) {
        const int k0 = 16 * jc + 2 * t;
        const uint32_t bf[2] = {(uint32_t)vh[k0 * D + d] | (uint32_t)vh[(k0 + 1) * D + d] << 16,
                                (uint32_t)vh[(k0 + 8) * D + d] | (uint32_t)vh[(k0 + 9) * D + d] << 16};
        const uint32_t hi[4] = {p0[8 * jc + t], p1[8 * jc + t], p0[8 * jc + t + 4], p1[8 * jc + t + 4]};
        const uint32_t lo[4] = {p0[32 + 8 * jc + t], p1[32 + 8 * jc + t], p0[36 + 8 * jc + t], p1[36 + 8 * jc + t]};
        slm_mma::mma_f16_k16(acc, hi, bf, acc);
        slm_mma::mma_f16_k16(acc, lo, bf, acc);
    }
}

/* The out rows (KV head g's group of query heads) of the tile's tokens whose position is out of
 * range (s_np 0) are NaN; by partition 0's block. */
template <int D>
__device__ static inline void nan_rows(const struct fused_args &a, int tok0, int ntok, int g, int group,
                                       const int *np)
{
    for (int i = 0; i < ntok; i++)
        if (!np[i]) {
            float *o = a.out + ((size_t)(tok0 + i) * a.n_head + (size_t)g * group) * D;
            for (int e = threadIdx.x; e < group * D; e += DEC_THREADS) o[e] = __int_as_float(0x7fc00000);
        }
}

/* grid (max_parts, n_head_kv, tiles: n_tiles, or n_tokens when a.tiles is NULL), DEC_THREADS
 * threads, dynamic shared memory attn_smem(rows_cap, D). FRESH: a decode-only step's launch (q
 * and k rotated here, the token's k and v stored and used from shared memory; one token a
 * block). !FRESH: slm_cuda_attention_paged's (q rotated and every position of the step stored
 * by slm_cuda_rope_store before; a token's own position read from the cache like the others).
 * The rotation and the halves are the same arithmetic both ways, so a token gets the same bits
 * from either. D = 256 holds twice the K and V words a thread: 2 blocks an SM, so that they
 * stay in registers. */
template <int D, bool FRESH>
__global__ void __launch_bounds__(DEC_THREADS, D > 128 ? 2 : 4) k_attention(struct fused_args a)
{
    /* FRESH waits for the grid before (slm_pdl_begin) only after step 1: its steps 0 and 1 read
     * what was there before the step's first kernel (docs/cuda.md, "Programmatic dependent
     * launch"). The positions, sequence rows and block tables are the host's uploads, and every
     * K/V row it loads there is a position before its token's: a row an earlier step stored (no
     * launch of a decode-only step writes the cache but this kernel, each block its own token's
     * row, after its wait). So the partition's K/V loads overlap the Q/K/V matmul before it. The
     * other steps' launch reads rows slm_cuda_rope_store, the grid before it, wrote: it waits
     * first. */
    if (!FRESH) slm_pdl_begin();
    constexpr int CH = D / 2 / DEC_TPR;   /* half2 words of a row a thread holds */
    constexpr int W = D / 2;              /* half2 words of a row */
    static_assert(D % (2 * DEC_TPR) == 0 && D % 16 == 0, "rows split evenly over the lanes and the MMA's K");
    SLM_DYN_SHARED(float, smem);
    __shared__ int s_pos[ATT_MAX_TILE], s_first[ATT_MAX_TILE], s_p0[ATT_MAX_TILE], s_np[ATT_MAX_TILE];
    __shared__ int s_last[ATT_MAX_TILE];
    __shared__ int s_ntok, s_lo, s_hi;
    const int part = blockIdx.x, g = blockIdx.y, tid = threadIdx.x, warp = tid / 32;
    const int group = a.n_head / a.n_head_kv, start = part * DEC_P;
    int tok0 = (int)blockIdx.z, count = 1;
    if (a.tiles) tok0 = a.tiles[2 * blockIdx.z], count = a.tiles[2 * blockIdx.z + 1];
    if (tok0 < 0 || tok0 >= a.n_tokens || count < 1) {   /* not a tile of this call */
        if (FRESH) slm_pdl_begin();
        return;
    }
    count = min(min(count, a.tile_tokens), a.n_tokens - tok0);
    const int seq = a.seq_row[tok0];

    /* 0. The tokens' positions, windows and partitions (a token of another sequence ends the
     * tile: the host's tiles have none), and the positions [lo, hi) of this partition that any
     * of them attends to. A position outside [0, max_ctx) (the caller's positions or max_ctx
     * are wrong) gets a NaN out row and no partition. */
    if (tid == 0) {
        int n = 0, lo = 0x7fffffff, hi = -1;
        for (; n < count && a.seq_row[tok0 + n] == seq; n++) {
            const int pos = a.pos[tok0 + n];
            const bool bad = pos < 0 || pos + 1 > a.max_ctx;
            const int first = !bad && a.window > 0 && pos >= a.window ? pos - a.window + 1 : 0;
            s_pos[n] = pos, s_first[n] = first, s_p0[n] = first / DEC_P, s_np[n] = bad ? 0 : pos / DEC_P + 1;
            if (part >= s_p0[n] && part < s_np[n]) lo = min(lo, max(first, start)), hi = max(hi, pos + 1);
        }
        s_ntok = n, s_lo = lo, s_hi = min(hi, start + DEC_P);
    }
    __syncthreads();
    const int ntok = s_ntok, lo = s_lo, hi = s_hi, rows = ntok * group, R = a.rows_cap;
    if (FRESH && lo >= hi) {   /* no row attends to this partition (FRESH: the NaN row after the wait) */
        slm_pdl_begin();
        if (part == 0) nan_rows<D>(a, tok0, ntok, g, group, s_np);
        return;
    }
    if (!FRESH) {
        if (part == 0) nan_rows<D>(a, tok0, ntok, g, group, s_np);
        if (lo >= hi) return;
    }
    const int32_t *blocks = a.block_tables + (size_t)seq * a.max_blocks;
    const size_t kvd = (size_t)a.n_head_kv * D;
    const int own_pos = FRESH ? s_pos[0] : -1;   /* FRESH: the position stored here, from shared memory */
    const bool own = FRESH && part == s_np[0] - 1;

    uint32_t *qw = reinterpret_cast<uint32_t *>(smem);                  /* (R, W) q rows, f16 */
    uint32_t *kvw = qw + (size_t)R * W;                                 /* (DEC_P, W) K, then V */
    float *sc = reinterpret_cast<float *>(kvw + DEC_P * W);             /* (R, DEC_P) scores, then P */
    uint32_t *cur_k = reinterpret_cast<uint32_t *>(sc + (size_t)R * DEC_P);   /* (W) the token's k */
    uint32_t *cur_v = cur_k + W;                                        /* (W) its v */
    float *row_m = reinterpret_cast<float *>(cur_v + W);                /* (R) */
    float *row_l = row_m + R;                                           /* (R) */

    /* 1. This thread's K and V words: rows start + slot + 16 i, dims [2 CH j, 2 CH (j + 1)), for
     * the positions [lo, hi) (FRESH: but pos, from shared memory below); zeros elsewhere, NaN
     * for a block id out of range. */
    const int j = tid % DEC_TPR, slot = tid / DEC_TPR;
    uint32_t kr[DEC_RPT][CH], vr[DEC_RPT][CH];
    DEC_UNROLL
    for (int i = 0; i < DEC_RPT; i++) {
        const int t = start + slot + DEC_ROWS_PASS * i;
        long long row = t >= lo && t < hi && t != own_pos ? kv_row(blocks, t, a.block_size, a.n_blocks) : -2;
        if (row >= 0) {
            const size_t off = (size_t)row * kvd + (size_t)g * D + (size_t)j * 2 * CH;
            load_words<CH>(kr[i], a.k_cache + off);
            load_words<CH>(vr[i], a.v_cache + off);
        } else {
            DEC_UNROLL
            for (int c = 0; c < CH; c++) kr[i][c] = vr[i][c] = row == -1 ? 0x7e007e00u : 0u;
        }
    }
    if (FRESH) slm_pdl_begin();

    /* 2. The rows' q (FRESH: rotated) rounded to f16, zero rows past the tile's; the token's k
     * and v by the owner. */
    for (int i = tid; i < R * W; i += DEC_THREADS) {
        const int r = i / W, c = i % W;
        uint32_t w = 0;
        if (r < rows) {
            const int tk = r / group, h = r % group;
            const float *x = a.q + ((size_t)(tok0 + tk) * a.n_head + (size_t)g * group + h) * D;
            if (FRESH) {
                const int pos = s_pos[tk];
                const float2 *cs_row = a.cs + (size_t)pos * (a.rope_dim / 2);
                const bool in_table = pos < a.cs_positions;
                w = halves_to_word(__float2half_rn(rope_elem(x, 2 * c, a.rope_dim, a.rope_layout, cs_row, in_table)),
                                   __float2half_rn(rope_elem(x, 2 * c + 1, a.rope_dim, a.rope_layout, cs_row, in_table)));
            } else {
                w = halves_to_word(__float2half_rn(x[2 * c]), __float2half_rn(x[2 * c + 1]));
            }
        }
        qw[i] = w;
    }
    if (own) {
        const int pos = own_pos;
        const float2 *cs_row = a.cs + (size_t)pos * (a.rope_dim / 2);
        const bool in_table = pos < a.cs_positions;
        const float *kx = a.k + (size_t)tok0 * kvd + (size_t)g * D, *vx = a.v + (size_t)tok0 * kvd + (size_t)g * D;
        const long long row = kv_row(blocks, pos, a.block_size, a.n_blocks);
        for (int c = tid; c < W; c += DEC_THREADS) {
            const uint32_t kw = halves_to_word(
                __float2half_rn(rope_elem(kx, 2 * c, a.rope_dim, a.rope_layout, cs_row, in_table)),
                __float2half_rn(rope_elem(kx, 2 * c + 1, a.rope_dim, a.rope_layout, cs_row, in_table)));
            const uint32_t vw = halves_to_word(__float2half_rn(vx[2 * c]), __float2half_rn(vx[2 * c + 1]));
            cur_k[c] = kw;
            cur_v[c] = vw;
            if (row >= 0) {
                reinterpret_cast<uint32_t *>(a.k_cache + (size_t)row * kvd + (size_t)g * D)[c] = kw;
                reinterpret_cast<uint32_t *>(a.v_cache + (size_t)row * kvd + (size_t)g * D)[c] = vw;
            }
        }
    }
    __syncthreads();

    /* 3. K into shared memory (the owner's own row from cur_k), then the scores. */
    DEC_UNROLL
    for (int i = 0; i < DEC_RPT; i++) {
        const int t = start + slot + DEC_ROWS_PASS * i;
        DEC_UNROLL
        for (int c = 0; c < CH; c++) kvw[(t - start) * W + j * CH + c] = own && t == own_pos ? cur_k[j * CH + c] : kr[i][c];
    }
    __syncthreads();
    attn_scores<D>(qw, kvw, R, sc, lo - start, hi - start);
    __syncthreads();

    /* 4. V into the same shared memory; each attending row's softmax, a warp a row. */
    DEC_UNROLL
    for (int i = 0; i < DEC_RPT; i++) {
        const int t = start + slot + DEC_ROWS_PASS * i;
        DEC_UNROLL
        for (int c = 0; c < CH; c++) kvw[(t - start) * W + j * CH + c] = own && t == own_pos ? cur_v[j * CH + c] : vr[i][c];
    }
    for (int r = warp; r < rows; r += DEC_WARPS) {
        const int tk = r / group;
        if (part < s_p0[tk] || part >= s_np[tk]) continue;
        softmax_row(sc + (size_t)r * DEC_P, max(s_first[tk], start) - start, min(s_pos[tk] + 1, start + DEC_P) - start,
                    a.scale, row_m + r, row_l + r);
    }
    __syncthreads();

    /* 5. P V, and out = o / l for a token whose context is one partition, else its partials. */
    const uint32_t *pw = reinterpret_cast<const uint32_t *>(sc);
    for (int task = warp; task < (R / 16) * (D / 8); task += DEC_WARPS) {
        const int mt = task / (D / 8), nt = task % (D / 8), lane = tid & 31;
        float acc[4];
        attn_pv<D>(pw, kvw, mt, nt, acc);
        DEC_UNROLL
        for (int hf = 0; hf < 2; hf++) {
            const int r = 16 * mt + (lane >> 2) + 8 * hf, d = 8 * nt + 2 * (lane & 3);
            if (r >= rows) continue;
            const int tk = r / group, h = r % group, tok = tok0 + tk;
            if (part < s_p0[tk] || part >= s_np[tk]) continue;
            const float x0 = acc[2 * hf], x1 = acc[2 * hf + 1];
            if (s_np[tk] - s_p0[tk] == 1) {
                float *o = a.out + ((size_t)tok * a.n_head + (size_t)g * group + h) * D;
                o[d] = x0 / row_l[r];
                o[d + 1] = x1 / row_l[r];
            } else {
                float *p = a.part + ((((size_t)tok * a.n_head_kv + g) * a.max_parts + part) * group + h) * (D + 4);
                if (d == 0) p[0] = row_m[r], p[1] = row_l[r];
                p[4 + d] = x0;
                p[5 + d] = x1;
            }
        }
    }

    /* 6. The last block of each (token, KV head) of several partitions to finish merges. Each
     * thread fences its partial writes before the block's arrival is counted (release); the
     * merging block fences again after seeing the count (acquire) and reads the partials from
     * L2. atomicInc's wrap at n_active - 1 leaves the counter 0 for the next launch. */
    __threadfence();
    __syncthreads();
    if (tid < ntok) {
        const int n_active = s_np[tid] - s_p0[tid];
        int last = 0;
        if (n_active > 1 && part >= s_p0[tid] && part < s_np[tid]) {
            unsigned seen = atomicInc(&a.counters[(size_t)(tok0 + tid) * a.n_head_kv + g], (unsigned)(n_active - 1));
            last = seen == (unsigned)(n_active - 1);
        }
        s_last[tid] = last;
    }
    __syncthreads();
    for (int i = 0; i < ntok; i++) {
        if (!s_last[i]) continue;
        __threadfence();
        merge_token<D>(a, tok0 + i, g, s_p0[i], s_np[i], row_m, reinterpret_cast<float4 *>(kvw));
    }
}

/* ---- launchers */

static int fused_parts(int max_ctx)
{
    return (max_ctx + DEC_P - 1) / DEC_P;
}

/* Query rows a block of head_dim d can hold in 48 KiB of shared memory (attn_smem). */
static int attn_rows_max(int d)
{
    return d <= 96 ? 64 : d <= 128 ? 48 : 16;
}

/* Dynamic shared memory of k_attention for rows_cap query rows of head_dim d. */
static size_t attn_smem(int rows_cap, int d)
{
    const size_t w = (size_t)d / 2;
    return (size_t)rows_cap * w * 4 + (size_t)DEC_P * w * 4 + (size_t)rows_cap * DEC_P * 4 + 2 * w * 4 +
           2 * (size_t)rows_cap * 4;
}

extern "C" int slm_cuda_attention_tile_tokens(const struct slm_cuda_attn_shape *shape)
{
    if (!attn_shape_ok(shape)) return 0;
    const int group = shape->n_head / shape->n_head_kv, n = attn_rows_max(shape->head_dim) / group;
    return n < 1 ? 1 : n > ATT_MAX_TILE ? ATT_MAX_TILE : n;
}

extern "C" int slm_cuda_attention_tiles(const struct slm_cuda_attn_shape *shape, const int32_t *seq_row, int n_tokens,
                                        int32_t *tiles)
{
    const int per = slm_cuda_attention_tile_tokens(shape);
    if (!per || !seq_row || !tiles || n_tokens < 1) return -EINVAL;
    int n = 0;
    for (int i = 0; i < n_tokens;) {
        int e = i + 1;
        while (e < n_tokens && e - i < per && seq_row[e] == seq_row[i]) e++;
        tiles[2 * n] = i, tiles[2 * n + 1] = e - i;
        n++;
        i = e;
    }
    return n;
}

extern "C" size_t slm_cuda_attention_decode_fused_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens,
                                                            int max_ctx)
{
    if (!attn_shape_ok(shape) || n_tokens < 1 || max_ctx < 1) return 0;
    return SLM_CUDA_ATTN_DECODE_COUNTER_BYTES +
           (size_t)n_tokens * shape->n_head * fused_parts(max_ctx) * (shape->head_dim + 4) * sizeof(float);
}

/* k_attention<head_dim, fresh> (the shape is checked: head_dim is one it is built for), and its
 * name for the emulator's launch log. */
#define ATT_KERNEL(D)                                                                          \
    case D:                                                                                    \
        *name = fresh ? "(k_attention<" #D ", true>)" : "(k_attention<" #D ", false>)";       \
        return fresh ? k_attention<D, true> : k_attention<D, false>
static void (*attention_kernel(int head_dim, bool fresh, const char **name))(struct fused_args)
{
    switch (head_dim) {
        ATT_KERNEL(32);
        ATT_KERNEL(64);
        ATT_KERNEL(80);
        ATT_KERNEL(96);
        ATT_KERNEL(256);
    default: ATT_KERNEL(128);
    }
}
#undef ATT_KERNEL

/* The two launchers' shared checks and launch; fresh selects the kernel's mode. */
static int launch_attention(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                            const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope, const float *q,
                            const float *k, const float *v, int max_ctx, void *workspace, size_t workspace_bytes,
                            float *out, cudaStream_t stream, bool fresh)
{
    size_t need = t ? slm_cuda_attention_decode_fused_workspace(shape, t->n_tokens, max_ctx) : 0;
    if (attn_call_ok(shape, t, kv, q, max_ctx, workspace, workspace_bytes, need, out)) return -EINVAL;
    if ((fresh && (!rope || !k || !v)) || (size_t)t->n_tokens * shape->n_head_kv > SLM_CUDA_ATTN_DECODE_SLOTS)
        return -EINVAL;
    if ((uintptr_t)kv->k % 16 || (uintptr_t)kv->v % 16) return -EINVAL;
    const bool tiled = !fresh && t->tiles;
    if (tiled && (t->n_tiles < 1 || t->n_tiles > t->n_tokens ||
                  slm_emu_check_device_ptr(t->tiles, (size_t)t->n_tiles * 2 * sizeof(int32_t), "tiles")))
        return -EINVAL;
    const bool rotates = fresh && shape->rope_dim > 0;
    if (rotates && (!rope->cos_sin || rope->positions < 1)) return -EINVAL;
    const size_t kvbytes = (size_t)t->n_tokens * shape->n_head_kv * shape->head_dim * sizeof(float);
    if (fresh && (slm_emu_check_device_ptr(k, kvbytes, "k") || slm_emu_check_device_ptr(v, kvbytes, "v") ||
                  (rotates && slm_emu_check_device_ptr(rope->cos_sin,
                                                       (size_t)rope->positions * (size_t)shape->rope_dim * 4,
                                                       "rope table"))))
        return -EINVAL;
    const int group = shape->n_head / shape->n_head_kv;
    const int tile_tokens = tiled ? slm_cuda_attention_tile_tokens(shape) : 1;
    const int rows_cap = (tile_tokens * group + 15) / 16 * 16;
    struct fused_args a = {q, k, v, static_cast<__half *>(kv->k), static_cast<__half *>(kv->v), t->pos, t->seq_row,
                           t->block_tables, tiled ? t->tiles : nullptr, t->n_tokens, tile_tokens, t->max_blocks,
                           kv->n_blocks, kv->block_size, shape->n_head, shape->n_head_kv, shape->rope_dim,
                           shape->rope_layout, rotates ? reinterpret_cast<const float2 *>(rope->cos_sin) : nullptr,
                           rotates ? rope->positions : 0x7fffffff, max_ctx, fused_parts(max_ctx), shape->window,
                           rows_cap, shape->scale, static_cast<unsigned *>(workspace),
                           reinterpret_cast<float *>(static_cast<char *>(workspace) + SLM_CUDA_ATTN_DECODE_COUNTER_BYTES),
                           out};
    dim3 grid((unsigned)a.max_parts, (unsigned)shape->n_head_kv, (unsigned)(tiled ? t->n_tiles : t->n_tokens));
    const size_t smem = attn_smem(rows_cap, shape->head_dim);
    const char *name;
    void (*kernel)(struct fused_args) = attention_kernel(shape->head_dim, fresh, &name);
    int rc = SLM_LAUNCH_PDL_SMEM_AS(name, kernel, ATT_SMEM_MAX, grid, DEC_THREADS, smem, stream, a);
    return rc ? rc : attn_launched();
}

extern "C" int slm_cuda_attention_decode_fused(const struct slm_cuda_attn_shape *shape,
                                               const struct slm_cuda_attn_tokens *t,
                                               const struct slm_cuda_kv_layer *kv,
                                               const struct slm_cuda_rope_table *rope, const float *q, const float *k,
                                               const float *v, int max_ctx, void *workspace, size_t workspace_bytes,
                                               float *out, cudaStream_t stream)
{
    return launch_attention(shape, t, kv, rope, q, k, v, max_ctx, workspace, workspace_bytes, out, stream, true);
}

extern "C" int slm_cuda_attention_paged(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                        const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx,
                                        void *workspace, size_t workspace_bytes, float *out, cudaStream_t stream)
{
    return launch_attention(shape, t, kv, NULL, q, NULL, NULL, max_ctx, workspace, workspace_bytes, out, stream, false);
}
