/*
 * kernels/cuda/attention_decode.cu - a decode-only step's RoPE, KV store and attention in one
 * launch (docs/cuda.md, "Fused decode attention"): the CUDA-graph path of the backend, where
 * every token is the single new token of its own sequence.
 *
 * One block per (partition of SLM_CUDA_ATTN_DECODE_PARTITION positions, KV head, token), 128
 * threads, serving the n_head / n_head_kv query heads of its KV head: each K and V row is read
 * once per KV head. A block
 *   1. issues the loads of its partition's K and V rows (16-byte loads into registers, all in
 *      flight at once),
 *   2. rotates the group's q rows (the table's cos and sin, slm_cuda_rope_store's arithmetic)
 *      and rounds them to f16 in shared memory; the block of the last partition (the one that
 *      holds the token's own position) also rotates the token's k, rounds k and v to halves,
 *      stores them into the cache, and uses them from shared memory for position pos: no block
 *      ever reads the row being written (the other partitions end before pos),
 *   3. scores: 8 threads a K row, each a dot of 8 (D = 64) to 32 (D = 256) dimensions per query
 *      head, summed over the 8 lanes by a butterfly of shuffles; softmax inside the partition
 *      (max, exp(s - max), their sum: a warp per head); p x V from shared memory, each
 *      (head, pair of dims) item a chain over the partition's positions in order,
 *   4. a token whose context is one partition writes out = o / l; otherwise the block writes
 *      (m, l, o[D]) per head to the workspace, and the last block of the (token, KV head) to
 *      finish (an atomicInc on a counter of the workspace, after __threadfence) merges the
 *      partitions: each head's max, then item (head, 4 dims) chains the partitions of each of
 *      n_split contiguous ranges in order (the online-softmax rescaling; a function of n_part
 *      and the shape only) and the ranges' results are added in order. atomicInc with the
 *      limit n_part - 1 wraps the counter to 0 on the last arrival: the counter is reset for
 *      the next launch (or graph replay) by the block that merges, with no memset.
 * A sliding window w (gemma3's local layers) attends to first = max(0, pos - w + 1) .. pos only:
 * the partitions wholly before first return at once (the counter counts the others), and in
 * first's partition the positions before it load zeros and score -inf (weight 0).
 * Every loop bound, lane map and summation order depends only on the token's position, so
 * its bits depend only on its own q, k, v, position and cache; which block finishes last
 * changes nothing since the merge's order is fixed by the partitions' indices (tested under the
 * emulator's race check, which runs the blocks forward and in reverse).
 *
 * Products that must round the same way under nvcc (which contracts a * b + c) and the host
 * compiler (which does not) are written as fmaf / __fmul_rn.
 */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/compat.h"

#define DEC_P SLM_CUDA_ATTN_DECODE_PARTITION
#define DEC_THREADS 128
#define DEC_TPR 8                                /* threads per K / V row */
#define DEC_ROWS_PASS (DEC_THREADS / DEC_TPR)    /* rows the block covers per pass: 16 */
#define DEC_RPT (DEC_P / DEC_ROWS_PASS)          /* rows a thread holds: 4 */
#define DEC_MERGE_BATCH 8                        /* partitions whose partials a merging thread loads at once */

#ifdef __CUDACC__
#define DEC_UNROLL _Pragma("unroll")
#else
#define DEC_UNROLL _Pragma("GCC unroll 16")
#endif

static_assert(DEC_P % DEC_ROWS_PASS == 0, "a partition is whole passes");
static_assert(DEC_P == 64, "the softmax gives each lane positions lane and lane + 32");

struct fused_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const float *k, *v;          /* (n_tokens, n_head_kv * D) */
    __half *k_cache, *v_cache;   /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    int max_blocks, n_blocks, block_size;
    int n_head, n_head_kv;
    int rope_dim, rope_layout;
    const float2 *cs;            /* (cs_positions, rope_dim / 2) (cos, sin) */
    int cs_positions;
    int max_ctx;                 /* every pos + 1 is at most this */
    int max_parts;               /* partitions per (token, KV head) in the workspace */
    int window;                  /* > 0: positions pos - window + 1 .. pos only */
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

/* The two halves of a word (low first) as floats, and two halves as a word. */
__device__ static inline float2 word_to_float2(uint32_t w)
{
    return make_float2(__half2float(__ushort_as_half((unsigned short)(w & 0xffffu))),
                       __half2float(__ushort_as_half((unsigned short)(w >> 16))));
}

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

/* grid (max_parts, n_head_kv, n_tokens), DEC_THREADS threads, dynamic shared memory
 * fused_smem(group, D). */
/* FRESH: a decode-only step's launch (q and k rotated here, the token's k and v stored and used
 * from shared memory). !FRESH: slm_cuda_attention_paged's (q rotated and every position of the
 * step stored by slm_cuda_rope_store before; the token's own position read from the cache like
 * the others). The rotation and the halves are the same arithmetic both ways, so a token gets
 * the same bits from either. */
/* D = 256 holds twice the K and V words a thread: 2 blocks an SM, so that they stay in registers. */
template <int D, bool FRESH>
__global__ void __launch_bounds__(DEC_THREADS, D > 128 ? 2 : 4) k_decode_fused(struct fused_args a)
{
    constexpr int CH = D / 2 / DEC_TPR;   /* half2 words of a row a thread holds */
    static_assert(D % (2 * DEC_TPR) == 0, "rows split evenly over the lanes");
    SLM_DYN_SHARED(float, smem);
    __shared__ int s_last;
    const int part = blockIdx.x, g = blockIdx.y, tok = blockIdx.z, tid = threadIdx.x;
    const int group = a.n_head / a.n_head_kv;
    const int pos = a.pos[tok], n_ctx = pos + 1;
    float *out = a.out + ((size_t)tok * a.n_head + (size_t)g * group) * D;   /* (group, D) */
    if (pos < 0 || n_ctx > a.max_ctx) {   /* the caller's positions or max_ctx are wrong */
        if (part == 0)
            for (int i = tid; i < group * D; i += DEC_THREADS) out[i] = __int_as_float(0x7fc00000);
        return;
    }
    const int n_part = (n_ctx + DEC_P - 1) / DEC_P;
    const int first = a.window > 0 && pos >= a.window ? pos - a.window + 1 : 0;   /* first position attended */
    const int p0 = first / DEC_P, n_active = n_part - p0;   /* partitions [p0, n_part) take part */
    if (part < p0 || part >= n_part) return;
    const int start = part * DEC_P, end = min(start + DEC_P, n_ctx), len = end - start;
    const bool own = part == n_part - 1;   /* holds position pos: rotates, stores, uses k / v */
    const int32_t *blocks = a.block_tables + (size_t)a.seq_row[tok] * a.max_blocks;
    const size_t kvd = (size_t)a.n_head_kv * D;

    float *qs = smem;                                                   /* (group, D) f16-rounded q */
    float *sc = qs + (size_t)group * D;                                 /* (group, DEC_P) scores, weights */
    uint32_t *vt = reinterpret_cast<uint32_t *>(sc + (size_t)group * DEC_P);   /* (DEC_P, D / 2) V as half2 */
    uint32_t *cur_k = vt + DEC_P * (D / 2);                             /* (D / 2) the token's k as half2 */
    uint32_t *cur_v = cur_k + D / 2;                                    /* (D / 2) its v */
    float *row_m = reinterpret_cast<float *>(cur_v + D / 2);            /* (group) */
    float *row_l = row_m + group;                                       /* (group) */

    /* 1. This thread's K and V words: rows start + slot + 16 i, dims [2 CH j, 2 CH (j + 1)).
     * Position pos comes from shared memory below; a block id out of range gives NaN. */
    const int j = tid % DEC_TPR, slot = tid / DEC_TPR;
    uint32_t kr[DEC_RPT][CH], vr[DEC_RPT][CH];
    DEC_UNROLL
    for (int i = 0; i < DEC_RPT; i++) {
        const int t = start + slot + DEC_ROWS_PASS * i;
        long long row = t >= first && (FRESH ? t < pos : t <= pos) ? kv_row(blocks, t, a.block_size, a.n_blocks) : -2;
        if (row >= 0) {
            const size_t off = (size_t)row * kvd + (size_t)g * D + (size_t)j * 2 * CH;
            load_words<CH>(kr[i], a.k_cache + off);
            load_words<CH>(vr[i], a.v_cache + off);
        } else {
            DEC_UNROLL
            for (int c = 0; c < CH; c++) kr[i][c] = vr[i][c] = row == -1 ? 0x7e007e00u : 0u;
        }
    }

    /* 2. The group's q rotated and rounded to f16; the token's k and v by the owner. */
    const bool in_table = pos < a.cs_positions;
    const float2 *cs_row = a.cs + (size_t)pos * (a.rope_dim / 2);
    for (int i = tid; i < group * D; i += DEC_THREADS) {
        const int h = i / D, d = i % D;
        const float *x = a.q + ((size_t)tok * a.n_head + (size_t)g * group + h) * D;
        qs[i] = __half2float(__float2half_rn(FRESH ? rope_elem(x, d, a.rope_dim, a.rope_layout, cs_row, in_table) : x[d]));
    }
    if (FRESH && own) {
        const float *kx = a.k + (size_t)tok * kvd + (size_t)g * D, *vx = a.v + (size_t)tok * kvd + (size_t)g * D;
        const long long row = kv_row(blocks, pos, a.block_size, a.n_blocks);
        for (int c = tid; c < D / 2; c += DEC_THREADS) {
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

    /* 3. Scores, scaled, into sc; V rows into vt. A warp's rows of pass i start at
     * start + 4 warp + 16 i: past the context, the warp is done. */
    const int warp = tid / 32, lane = tid % 32;
    DEC_UNROLL
    for (int i = 0; i < DEC_RPT; i++) {
        const int t = start + slot + DEC_ROWS_PASS * i;
        if (start + (32 / DEC_TPR) * warp + DEC_ROWS_PASS * i >= end) break;
        if (FRESH && t == pos) {
            DEC_UNROLL
            for (int c = 0; c < CH; c++) kr[i][c] = cur_k[j * CH + c], vr[i][c] = cur_v[j * CH + c];
        }
        if (t < end) {
            DEC_UNROLL
            for (int c = 0; c < CH; c++) vt[(t - start) * (D / 2) + j * CH + c] = vr[i][c];
        }
        for (int h = 0; h < group; h++) {
            const float *qh = qs + (size_t)h * D + (size_t)j * 2 * CH;
            float s = 0.0f;
            DEC_UNROLL
            for (int c = 0; c < CH; c++) {
                float2 kf = word_to_float2(kr[i][c]);
                s = fmaf(qh[2 * c], kf.x, s);
                s = fmaf(qh[2 * c + 1], kf.y, s);
            }
            DEC_UNROLL
            for (int o = DEC_TPR / 2; o > 0; o /= 2) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, o));
            if (j == 0 && t < end) sc[(size_t)h * DEC_P + (t - start)] = t >= first ? __fmul_rn(s, a.scale) : -INFINITY;
        }
    }
    __syncthreads();

    /* Softmax inside the partition, a warp per head: lane l takes positions l and l + 32 (the
     * partition holds a position >= first, so m is finite and a masked one weighs exp(-inf) = 0). */
    for (int h = warp; h < group; h += DEC_THREADS / 32) {
        float *s = sc + (size_t)h * DEC_P;
        float m = -INFINITY;
        if (lane < len) m = s[lane];
        if (lane + 32 < len) m = fmaxf(m, s[lane + 32]);
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        if (lane < len) l = s[lane] = expf(s[lane] - m);
        if (lane + 32 < len) {
            float w = expf(s[lane + 32] - m);
            s[lane + 32] = w;
            l = __fadd_rn(l, w);
        }
        for (int o = 16; o > 0; o /= 2) l = __fadd_rn(l, __shfl_xor_sync(0xffffffffu, l, o));
        if (lane == 0) row_m[h] = m, row_l[h] = l;
    }
    __syncthreads();

    /* p x V: item (head h, pair c) chains weight x v over the partition's positions in order. */
    const bool single = n_active == 1;
    float *pbase = a.part + ((size_t)tok * a.n_head_kv + g) * a.max_parts * group * (D + 4);
    for (int it = tid; it < group * (D / 2); it += DEC_THREADS) {
        const int h = it / (D / 2), c = it % (D / 2);
        const float *w = sc + (size_t)h * DEC_P;
        float2 acc = make_float2(0.0f, 0.0f);
        for (int t = 0; t < len; t++) {
            float2 vf = word_to_float2(vt[t * (D / 2) + c]);
            acc.x = fmaf(w[t], vf.x, acc.x);
            acc.y = fmaf(w[t], vf.y, acc.y);
        }
        if (single) {
            out[(size_t)h * D + 2 * c] = acc.x / row_l[h];
            out[(size_t)h * D + 2 * c + 1] = acc.y / row_l[h];
        } else {
            float *p = pbase + ((size_t)part * group + h) * (D + 4);
            if (c == 0) p[0] = row_m[h], p[1] = row_l[h];
            p[4 + 2 * c] = acc.x;
            p[5 + 2 * c] = acc.y;
        }
    }
    if (single) return;

    /* 4. The last block of (token, KV head) to finish merges. Each thread fences its partial
     * writes before the block's arrival is counted (release); the merging block fences again
     * after seeing the count (acquire) and reads the partials from L2. atomicInc's wrap at
     * n_part - 1 leaves the counter 0 for the next launch. */
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        unsigned seen = atomicInc(&a.counters[(size_t)tok * a.n_head_kv + g], (unsigned)(n_active - 1));
        s_last = seen == (unsigned)(n_active - 1);
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    const size_t pstride = (size_t)group * (D + 4);   /* floats from a partition's partial to the next's */
    /* Each head's largest m (exact in any order), a warp per head. */
    for (int h = warp; h < group; h += DEC_THREADS / 32) {
        float m = -INFINITY;
        for (int pp = p0 + lane; pp < n_part; pp += 32) m = fmaxf(m, load_partial(pbase + pp * pstride + (size_t)h * (D + 4)));
        for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) row_m[h] = m;
    }
    __syncthreads();
    /* Item (head, 4 dims) merges the partitions of each of S contiguous ranges in order
     * (merge_range), S = the most that fit the block (a power of two: a function of the shape
     * only); the S results are then added in range order. */
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
        return;
    }
    float4 *so = reinterpret_cast<float4 *>(vt);                   /* (n_split, items) */
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

/* ---- launcher */

static int fused_parts(int max_ctx)
{
    return (max_ctx + DEC_P - 1) / DEC_P;
}

/* Dynamic shared memory of k_decode_fused for a group of query heads of head_dim d. */
static size_t fused_smem(int group, int d)
{
    return (size_t)group * d * 4 + (size_t)group * DEC_P * 4 + (size_t)DEC_P * (d / 2) * 4 + (size_t)d * 4 +
           2 * (size_t)group * 4;
}

extern "C" size_t slm_cuda_attention_decode_fused_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens,
                                                            int max_ctx)
{
    if (!attn_shape_ok(shape) || n_tokens < 1 || max_ctx < 1) return 0;
    return SLM_CUDA_ATTN_DECODE_COUNTER_BYTES +
           (size_t)n_tokens * shape->n_head * fused_parts(max_ctx) * (shape->head_dim + 4) * sizeof(float);
}

/* The two launchers' shared checks and launch; fresh selects the kernel's mode. */
static int launch_decode(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                         const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope, const float *q,
                         const float *k, const float *v, int max_ctx, void *workspace, size_t workspace_bytes,
                         float *out, cudaStream_t stream, bool fresh)
{
    size_t need = t ? slm_cuda_attention_decode_fused_workspace(shape, t->n_tokens, max_ctx) : 0;
    if (attn_call_ok(shape, t, kv, q, max_ctx, workspace, workspace_bytes, need, out)) return -EINVAL;
    if ((fresh && (!rope || !k || !v)) || (size_t)t->n_tokens * shape->n_head_kv > SLM_CUDA_ATTN_DECODE_SLOTS)
        return -EINVAL;
    if ((uintptr_t)kv->k % 16 || (uintptr_t)kv->v % 16) return -EINVAL;
    const bool rotates = fresh && shape->rope_dim > 0;
    if (rotates && (!rope->cos_sin || rope->positions < 1)) return -EINVAL;
    const size_t kvbytes = (size_t)t->n_tokens * shape->n_head_kv * shape->head_dim * sizeof(float);
    if (fresh && (slm_emu_check_device_ptr(k, kvbytes, "k") || slm_emu_check_device_ptr(v, kvbytes, "v") ||
                  (rotates && slm_emu_check_device_ptr(rope->cos_sin,
                                                       (size_t)rope->positions * (size_t)shape->rope_dim * 4,
                                                       "rope table"))))
        return -EINVAL;
    const int group = shape->n_head / shape->n_head_kv;
    struct fused_args a = {q, k, v, static_cast<__half *>(kv->k), static_cast<__half *>(kv->v), t->pos, t->seq_row,
                           t->block_tables, t->max_blocks, kv->n_blocks, kv->block_size, shape->n_head,
                           shape->n_head_kv, shape->rope_dim, shape->rope_layout,
                           rotates ? reinterpret_cast<const float2 *>(rope->cos_sin) : nullptr,
                           rotates ? rope->positions : 0x7fffffff, max_ctx, fused_parts(max_ctx), shape->window,
                           shape->scale,
                           static_cast<unsigned *>(workspace),
                           reinterpret_cast<float *>(static_cast<char *>(workspace) + SLM_CUDA_ATTN_DECODE_COUNTER_BYTES),
                           out};
    dim3 grid((unsigned)a.max_parts, (unsigned)shape->n_head_kv, (unsigned)t->n_tokens);
    const size_t smem = fused_smem(group, shape->head_dim);
    if (fresh) {
        switch (shape->head_dim) {
        case 64: SLM_LAUNCH((k_decode_fused<64, true>), grid, DEC_THREADS, smem, stream, a); break;
        case 80: SLM_LAUNCH((k_decode_fused<80, true>), grid, DEC_THREADS, smem, stream, a); break;
        case 96: SLM_LAUNCH((k_decode_fused<96, true>), grid, DEC_THREADS, smem, stream, a); break;
        case 256: SLM_LAUNCH((k_decode_fused<256, true>), grid, DEC_THREADS, smem, stream, a); break;
        default: SLM_LAUNCH((k_decode_fused<128, true>), grid, DEC_THREADS, smem, stream, a); break;
        }
    } else {
        switch (shape->head_dim) {
        case 64: SLM_LAUNCH((k_decode_fused<64, false>), grid, DEC_THREADS, smem, stream, a); break;
        case 80: SLM_LAUNCH((k_decode_fused<80, false>), grid, DEC_THREADS, smem, stream, a); break;
        case 96: SLM_LAUNCH((k_decode_fused<96, false>), grid, DEC_THREADS, smem, stream, a); break;
        case 256: SLM_LAUNCH((k_decode_fused<256, false>), grid, DEC_THREADS, smem, stream, a); break;
        default: SLM_LAUNCH((k_decode_fused<128, false>), grid, DEC_THREADS, smem, stream, a); break;
        }
    }
    return attn_launched();
}

extern "C" int slm_cuda_attention_decode_fused(const struct slm_cuda_attn_shape *shape,
                                               const struct slm_cuda_attn_tokens *t,
                                               const struct slm_cuda_kv_layer *kv,
                                               const struct slm_cuda_rope_table *rope, const float *q, const float *k,
                                               const float *v, int max_ctx, void *workspace, size_t workspace_bytes,
                                               float *out, cudaStream_t stream)
{
    return launch_decode(shape, t, kv, rope, q, k, v, max_ctx, workspace, workspace_bytes, out, stream, true);
}

extern "C" int slm_cuda_attention_paged(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                        const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx,
                                        void *workspace, size_t workspace_bytes, float *out, cudaStream_t stream)
{
    return launch_decode(shape, t, kv, NULL, q, NULL, NULL, max_ctx, workspace, workspace_bytes, out, stream, false);
}
