/*
 * kernels/cuda/attention.cu - RoPE and the paged KV store, decode and causal prefill
 * attention over the paged f16 cache.
 *
 * Attention follows the CPU backend's arithmetic (kernels/cpu/ops.c, attention_head_generic,
 * itself llama.cpp's CPU order) operation for operation, so that it gives the CPU backend's
 * bits: q rounded to f16, scores in a 64-lane order, the CPU's exp polynomial, the sum in
 * double 16 exps at a time, probabilities rounded to f16, each output element in 64
 * position lanes. One block per (token, query head), the same kernel for decode and
 * prefill: a token gets the same bits decoded, prefilled, alone or in any batch.
 *
 * Products that must round the same way under nvcc (which contracts a * b + c) and the host
 * compiler (which does not) are written as fmaf / __fmul_rn.
 */
#include <errno.h>
#include <limits.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/compat.h"
#include "kernels/cuda/cpu_math.cuh"

#define ATTN_THREADS 128

#ifdef __CUDACC__
#define ATTN_UNROLL _Pragma("unroll")
#else
#define ATTN_UNROLL _Pragma("GCC unroll 16")
#endif

/* ---- RoPE and store: one block per token. */

__global__ void k_rope_store(float *q, float *k, const float *v, const int32_t *pos, const int32_t *seq_row,
                             const int32_t *block_tables, int max_blocks, __half *k_cache, __half *v_cache,
                             int n_blocks, int block_size, int n_head, int n_head_kv, int head_dim, int rope_dim,
                             int rope_layout, const float2 *cs, int cs_positions)
{
    const int i = blockIdx.x;
    const int p = pos[i];
    const int pairs = rope_dim / 2;
    const size_t qd = (size_t)n_head * head_dim, kvd = (size_t)n_head_kv * head_dim;
    const bool in_table = p >= 0 && p < cs_positions;
    for (int it = threadIdx.x; it < (n_head + n_head_kv) * pairs; it += blockDim.x) {
        int hh = it / pairs, j = it % pairs;
        float *x = hh < n_head ? q + i * qd + (size_t)hh * head_dim : k + i * kvd + (size_t)(hh - n_head) * head_dim;
        /* The host's cos and sin of the CPU's angles; a position past the table poisons the token. */
        float2 a_cs = in_table ? cs[(size_t)p * pairs + j] : make_float2(__int_as_float(0x7fc00000), 0.0f);
        int i0 = rope_layout ? j : 2 * j, i1 = rope_layout ? j + pairs : 2 * j + 1;
        float a = x[i0], b = x[i1];
        x[i0] = fmaf(a, a_cs.x, -__fmul_rn(b, a_cs.y));
        x[i1] = fmaf(a, a_cs.y, __fmul_rn(b, a_cs.x));
    }
    __syncthreads();
    long long row = kv_row(block_tables + (size_t)seq_row[i] * max_blocks, p, block_size, n_blocks);
    if (row < 0) return;
    for (size_t e = threadIdx.x; e < kvd; e += blockDim.x) {
        k_cache[(size_t)row * kvd + e] = __float2half_rn(k[i * kvd + e]);
        v_cache[(size_t)row * kvd + e] = __float2half_rn(v[i * kvd + e]);
    }
}

/* ---- attention in the CPU backend's order: one block per (token, query head). */

struct attn_args {
    const float *q;              /* (n_tokens, n_head * D) */
    const __half *k, *v;         /* (n_blocks, block_size, n_head_kv * D) */
    const int32_t *pos, *seq_row, *block_tables;
    int max_blocks, n_blocks, block_size;
    int n_tokens, n_head, n_head_kv;
    int pos_lo, pos_hi;          /* the tokens with pos in [pos_lo, pos_hi); the others are skipped */
    int max_ctx;                 /* every such pos + 1 is at most this */
    int ctx_pad;                 /* max_ctx rounded up to 64: floats of scores per row */
    float scale;
    float *ws;                   /* (n_tokens, n_head, ctx_pad + ctx_pad / 16): scores, sums of 16 */
    float *out;                  /* (n_tokens, n_head * D) */
};

/* Sum of 16 lanes in the tree of a 512-bit horizontal add: halves, quarters, then pairs. */
__device__ static inline float reduce16(const float *v)
{
    float t6[4];
    ATTN_UNROLL
    for (int i = 0; i < 4; i++) t6[i] = __fadd_rn(__fadd_rn(v[i], v[i + 8]), __fadd_rn(v[i + 4], v[i + 12]));
    return __fadd_rn(__fadd_rn(t6[0], t6[2]), __fadd_rn(t6[1], t6[3]));
}

/* q . k of one key row, as dot_lanes_generic (kernels/cpu/ops.c): lane m of 64 chains the
 * fused products of elements m, m + 64, ...; lanes m, 16 + m, 32 + m, 48 + m are folded
 * (a0 + a2) + (a1 + a3), the 16 folds summed by reduce16; the elements past the last whole 64
 * are added in double. */
template <int D> __device__ static float score_dot(const __half *k, const float *qh)
{
    constexpr int NP = D / 64 * 64;
    float v16[16];
    for (int l = 0; l < 16; l++) {
        float a[4];
        ATTN_UNROLL
        for (int j = 0; j < 4; j++) {
            float s = 0.0f;
            ATTN_UNROLL
            for (int i = 0; i < NP; i += 64) s = __fmaf_rn(__half2float(k[i + l + 16 * j]), qh[i + l + 16 * j], s);
            a[j] = s;
        }
        v16[l] = __fadd_rn(__fadd_rn(a[0], a[2]), __fadd_rn(a[1], a[3]));
    }
    float r = reduce16(v16);
    if (NP == D) return r;
    double sum = (double)r;
    for (int i = NP; i < D; i++) sum = __dadd_rn(sum, (double)__fmul_rn(__half2float(k[i]), qh[i]));
    return __double2float_rn(sum);
}

/* grid (n_tokens, n_head), ATTN_THREADS threads. attention_head_generic's steps: q rounded to
 * f16; scores (scaled) in the workspace; their max; exp by the CPU's polynomial; the sum of
 * the exps, 16 at a time (reduce16) into a double in order; probabilities p * (1 / sum)
 * rounded to f16; each output element d = the 64 position lanes (lane = t mod 64) of fused
 * v * p chains, folded and reduced as the scores are. */
template <int D> __global__ void __launch_bounds__(ATTN_THREADS) k_attn(struct attn_args a)
{
    __shared__ float qh[D];
    __shared__ float warp_max[ATTN_THREADS / 32];
    __shared__ float inv_s;
    __shared__ float chains[64 * D];   /* (64 chains, D): the p.V partial sums */
    const int tok = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int kvh = h / (a.n_head / a.n_head_kv);
    const int n_ctx = a.pos[tok] + 1;
    if (n_ctx - 1 < a.pos_lo || n_ctx - 1 >= a.pos_hi) return;   /* the other kernel's token */
    float *o = a.out + ((size_t)tok * a.n_head + h) * D;
    if (n_ctx < 1 || n_ctx > a.max_ctx) { /* the whole block: the caller's max_ctx is wrong */
        for (int d = tid; d < D; d += ATTN_THREADS) o[d] = __int_as_float(0x7fc00000);
        return;
    }
    const int32_t *blocks = a.block_tables + (size_t)a.seq_row[tok] * a.max_blocks;
    const size_t kvd = (size_t)a.n_head_kv * D;
    float *sc = a.ws + ((size_t)tok * a.n_head + h) * (size_t)(a.ctx_pad + a.ctx_pad / 16);
    float *sums16 = sc + a.ctx_pad;
    const float *q = a.q + ((size_t)tok * a.n_head + h) * D;
    for (int i = tid; i < D; i += ATTN_THREADS) qh[i] = __half2float(__float2half_rn(q[i]));
    __syncthreads();

    float mx = -INFINITY;
    for (int t = tid; t < n_ctx; t += ATTN_THREADS) {
        long long row = kv_row(blocks, t, a.block_size, a.n_blocks);
        float s = row < 0 ? __int_as_float(0x7fc00000)
                          : __fmul_rn(score_dot<D>(a.k + (size_t)row * kvd + (size_t)kvh * D, qh), a.scale);
        sc[t] = s;
        mx = fmaxf(mx, s);
    }
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if ((tid & 31) == 0) warp_max[tid >> 5] = mx;
    __syncthreads();
    for (int w = 0; w < ATTN_THREADS / 32; w++) mx = fmaxf(mx, warp_max[w]);

    const int padded = (n_ctx + 15) / 16 * 16;
    for (int t = tid; t < padded; t += ATTN_THREADS)
        sc[t] = t < n_ctx ? slm_cuda::expf_poly(__fsub_rn(sc[t], mx)) : 0.0f;
    __syncthreads();
    for (int c = tid; c < padded / 16; c += ATTN_THREADS) sums16[c] = reduce16(sc + 16 * c);
    __syncthreads();
    if (tid == 0) {
        double sum = 0.0;
        for (int c = 0; c < padded / 16; c++) sum = __dadd_rn(sum, (double)sums16[c]);
        inv_s = __double2float_rn(__ddiv_rn(1.0, sum));
    }
    __syncthreads();
    const float inv = inv_s;
    for (int t = tid; t < n_ctx; t += ATTN_THREADS) sc[t] = __half2float(__float2half_rn(__fmul_rn(sc[t], inv)));
    __syncthreads();

    /* p.V: 64 chains per output element, chain c the positions c, c + 64, ... in order (one
     * FMA each, as the CPU's lanes), spread over the threads as (chain, element) pairs with
     * adjacent threads on adjacent elements (coalesced V rows); then per element the CPU's
     * tree over the chains. */
    for (int w = tid; w < 64 * D; w += ATTN_THREADS) {
        const int c = w / D, d = w % D;
        float s = 0.0f;
        for (int t = c; t < n_ctx; t += 64) {
            long long row = kv_row(blocks, t, a.block_size, a.n_blocks);
            float v = row < 0 ? __int_as_float(0x7fc00000) : __half2float(a.v[(size_t)row * kvd + (size_t)kvh * D + d]);
            s = __fmaf_rn(v, sc[t], s);
        }
        chains[w] = s;
    }
    __syncthreads();
    for (int d = tid; d < D; d += ATTN_THREADS) {
        float v16[16];
        for (int l = 0; l < 16; l++) {
            const float *acc = chains + (size_t)l * D + d;   /* chains l, l + 16, l + 32, l + 48 */
            v16[l] = __fadd_rn(__fadd_rn(acc[0], acc[2 * 16 * D]), __fadd_rn(acc[16 * D], acc[3 * 16 * D]));
        }
        o[d] = reduce16(v16);
    }
}

/* ---- launchers */

extern "C" int slm_cuda_rope_store(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                   const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope, float *q,
                                   float *k, const float *v, cudaStream_t stream)
{
    if (!attn_shape_ok(shape) || !attn_tokens_ok(shape, t, kv) || !rope || !q || !k || !v) return -EINVAL;
    if (shape->rope_dim > 0 && (!rope->cos_sin || rope->positions < 1)) return -EINVAL;
    size_t n = (size_t)t->n_tokens, kvd = (size_t)shape->n_head_kv * shape->head_dim;
    if (slm_emu_check_device_ptr(q, n * shape->n_head * shape->head_dim * 4, "q") ||
        slm_emu_check_device_ptr(k, n * kvd * 4, "k") || slm_emu_check_device_ptr(v, n * kvd * 4, "v") ||
        (shape->rope_dim > 0 &&
         slm_emu_check_device_ptr(rope->cos_sin, (size_t)rope->positions * (size_t)shape->rope_dim * 4, "rope table")))
        return -EINVAL;
    SLM_LAUNCH(k_rope_store, t->n_tokens, 128, 0, stream, q, k, v, t->pos, t->seq_row, t->block_tables,
               t->max_blocks, static_cast<__half *>(kv->k), static_cast<__half *>(kv->v), kv->n_blocks,
               kv->block_size, shape->n_head, shape->n_head_kv, shape->head_dim, shape->rope_dim,
               shape->rope_layout, reinterpret_cast<const float2 *>(rope->cos_sin), rope->positions);
    return attn_launched();
}

static size_t ctx_pad(int max_ctx)
{
    return ((size_t)max_ctx + 63) / 64 * 64;
}

extern "C" size_t slm_cuda_attention_workspace(const struct slm_cuda_attn_shape *shape, int n_tokens, int max_ctx)
{
    if (!attn_shape_ok(shape) || n_tokens < 1 || max_ctx < 1) return 0;
    size_t cp = ctx_pad(max_ctx);
    return (size_t)n_tokens * shape->n_head * (cp + cp / 16) * sizeof(float);
}

/* One block per (token, query head), whichever launcher: the same kernel, the same order. */
extern "C" int slm_cuda_attention_exact(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                        const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx, int pos_lo,
                                        int pos_hi, void *workspace, size_t workspace_bytes, float *out,
                                        cudaStream_t stream)
{
    size_t need = t ? slm_cuda_attention_workspace(shape, t->n_tokens, max_ctx) : 0;
    if (attn_call_ok(shape, t, kv, q, max_ctx, pos_lo, pos_hi, workspace, workspace_bytes, need, out)) return -EINVAL;
    struct attn_args a = {q, static_cast<const __half *>(kv->k), static_cast<const __half *>(kv->v), t->pos,
                          t->seq_row, t->block_tables, t->max_blocks, kv->n_blocks, kv->block_size,
                          t->n_tokens, shape->n_head, shape->n_head_kv, pos_lo, pos_hi, max_ctx,
                          (int)ctx_pad(max_ctx), shape->scale, static_cast<float *>(workspace), out};
    dim3 grid((unsigned)t->n_tokens, (unsigned)shape->n_head);
    switch (shape->head_dim) {
    case 64: SLM_LAUNCH(k_attn<64>, grid, ATTN_THREADS, 0, stream, a); break;
    case 80: SLM_LAUNCH(k_attn<80>, grid, ATTN_THREADS, 0, stream, a); break;
    case 96: SLM_LAUNCH(k_attn<96>, grid, ATTN_THREADS, 0, stream, a); break;
    default: SLM_LAUNCH(k_attn<128>, grid, ATTN_THREADS, 0, stream, a); break;
    }
    return attn_launched();
}

extern "C" int slm_cuda_attention_decode(const struct slm_cuda_attn_shape *shape,
                                         const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv,
                                         const float *q, int max_ctx, void *workspace, size_t workspace_bytes,
                                         float *out, cudaStream_t stream)
{
    return slm_cuda_attention_exact(shape, t, kv, q, max_ctx, 0, INT_MAX, workspace, workspace_bytes, out, stream);
}

extern "C" int slm_cuda_attention_prefill(const struct slm_cuda_attn_shape *shape,
                                          const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv,
                                          const float *q, int p0, void *workspace, size_t workspace_bytes,
                                          float *out, cudaStream_t stream)
{
    if (!attn_shape_ok(shape) || !t || p0 < 0) return -EINVAL;
    return slm_cuda_attention_exact(shape, t, kv, q, p0 + t->n_tokens, 0, INT_MAX, workspace, workspace_bytes, out,
                                    stream);
}
