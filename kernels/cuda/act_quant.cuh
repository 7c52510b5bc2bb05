/*
 * kernels/cuda/act_quant.cuh - the activation quantizer every quantized matmul shares: RMSNorm
 * (optional) and the per-32 quantization of x into the format the decode GEMV (gemv.cu) and the
 * tensor-core MMQ (mmq.cu) read (slm_gemv::gemv_act). One device code for the standalone launch
 * (slm_cuda_gemv_quantize) and for the prologues of both kernels, so every path gives a token the
 * same bytes (docs/numerics.md, "The GPU": batch invariance across kernels).
 *
 * Blocks of QACT_THREADS threads (the GEMV's and the MMQ's 128) call these.
 */
#ifndef SLM_KERNELS_CUDA_ACT_QUANT_CUH
#define SLM_KERNELS_CUDA_ACT_QUANT_CUH

#include "kernels/cuda/qunits.cuh"   /* SLM_UNROLL */

#include <stdint.h>

#define QACT_THREADS 128
#define QACT_WARPS (QACT_THREADS / 32)

/*
 * The RMSNorm scale of a token's row xr (cols floats), by ONE warp, returned to its 32 lanes, in
 * the order of a block of QACT_THREADS threads: thread i sums xr[i]^2, xr[i + 128]^2, ... (fmaf,
 * in order), a butterfly 16..1 in each warp of 32 such threads, then the 4 warp sums in order,
 * then 1 / sqrt(sum / cols + eps). Lane l keeps the sums of threads l, 32 + l, 64 + l and 96 + l
 * and runs the 4 butterflies side by side (the xor butterfly leaves every lane the same float),
 * so a warp computes a token's scale alone, with no block barrier: the prologue's warps take a
 * token each, and their loads and shuffle chains overlap instead of queueing token by token
 * behind two __syncthreads (docs/cuda.md, "The prologue's latency").
 */
__device__ __forceinline__ float gemv_norm_scale(const float *__restrict__ xr, int cols, float eps)
{
    const int lane = threadIdx.x & 31;
    float s[QACT_WARPS];
    SLM_UNROLL
    for (int w = 0; w < QACT_WARPS; w++) s[w] = 0.0f;
    for (int i = lane; i < cols; i += QACT_THREADS) {
        SLM_UNROLL
        for (int w = 0; w < QACT_WARPS; w++)
            if (i + 32 * w < cols) s[w] = __fmaf_rn(xr[i + 32 * w], xr[i + 32 * w], s[w]);
    }
    SLM_UNROLL
    for (int off = 16; off > 0; off >>= 1) {
        SLM_UNROLL
        for (int w = 0; w < QACT_WARPS; w++) s[w] = __fadd_rn(s[w], __shfl_xor_sync(0xffffffffu, s[w], off));
    }
    float total = s[0];
    SLM_UNROLL
    for (int w = 1; w < QACT_WARPS; w++) total = __fadd_rn(total, s[w]);
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total, (float)cols), eps)));
}

/*
 * Activation block g (32 floats of token g / (cols / 32)) quantized by ONE thread: its 32 floats in
 * eight 16-byte loads (with gamma, each (x * scale[t]) * gamma), d = amax / 127, q = round(x * (127
 * / amax)) (0 when amax is 0), s = d * sum(q): its words and (d, s), which gemv_quantize_block
 * stores in the GEMV's order (q as two 16-byte stores, ds[g] = (d, s)) and the MMQ's fused
 * prologue in its fragments' (mmq.cu).
 * The maximum and the integer sum do not depend on the order they are taken in, so these are the
 * bytes of any split of the block; a thread a block needs no shuffle (the version of 2026-12-05
 * took a block over 8 lanes with 6 of them a step: a chain of dependent shuffles a step, which
 * queued up behind one another in the prologues; docs/cuda.md, "The prologue's latency").
 */
struct qact_block {
    uint32_t w[8];   /* the 32 int8 quants, 4 a word */
    float2 ds;       /* (d, s) */
};

__device__ __forceinline__ qact_block gemv_quantize_words(const float *__restrict__ x, const float *__restrict__ gamma,
                                                          const float *scale, int cols, int g)
{
    const int nbr = cols >> 5, t = g / nbr, e0 = 32 * (g - t * nbr);
    const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)t * (size_t)cols + e0);
    float v[32];
    SLM_UNROLL
    for (int k = 0; k < 8; k++) {
        const float4 a = xp[k];
        v[4 * k] = a.x, v[4 * k + 1] = a.y, v[4 * k + 2] = a.z, v[4 * k + 3] = a.w;
    }
    if (gamma) {
        const float sc = scale[t];
        const float4 *gp = reinterpret_cast<const float4 *>(gamma + e0);
        SLM_UNROLL
        for (int k = 0; k < 8; k++) {
            const float4 gm = gp[k];
            v[4 * k] = __fmul_rn(__fmul_rn(v[4 * k], sc), gm.x);
            v[4 * k + 1] = __fmul_rn(__fmul_rn(v[4 * k + 1], sc), gm.y);
            v[4 * k + 2] = __fmul_rn(__fmul_rn(v[4 * k + 2], sc), gm.z);
            v[4 * k + 3] = __fmul_rn(__fmul_rn(v[4 * k + 3], sc), gm.w);
        }
    }
    float m[4] = {0.0f, 0.0f, 0.0f, 0.0f};   /* four running maxima: a short dependent chain */
    SLM_UNROLL
    for (int e = 0; e < 32; e++) m[e & 3] = fmaxf(m[e & 3], fabsf(v[e]));
    const float amax = fmaxf(fmaxf(m[0], m[1]), fmaxf(m[2], m[3]));
    const float d = __fdiv_rn(amax, 127.0f), id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    qact_block b;
    int sum = 0;
    SLM_UNROLL
    for (int k = 0; k < 8; k++) {
        uint32_t word = 0;
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            const int qi = __float2int_rn(__fmul_rn(v[4 * k + i], id));
            sum += qi;
            word |= (uint32_t)(qi & 0xff) << (8 * i);
        }
        b.w[k] = word;
    }
    b.ds = make_float2(d, __fmul_rn(d, __int2float_rn(sum)));
    return b;
}

/* Block g's words and (d, s) stored in the GEMV's order: q + 32 g, ds[g]. */
__device__ __forceinline__ void gemv_store_block(const qact_block &b, int g, int8_t *q, float2 *ds)
{
    uint4 *qp = reinterpret_cast<uint4 *>(q + (size_t)g * 32);
    qp[0] = make_uint4(b.w[0], b.w[1], b.w[2], b.w[3]);
    qp[1] = make_uint4(b.w[4], b.w[5], b.w[6], b.w[7]);
    ds[g] = b.ds;
}

/* Block g quantized (gemv_quantize_words) and stored in the GEMV's order. */
__device__ __forceinline__ void gemv_quantize_block(const float *__restrict__ x, const float *__restrict__ gamma,
                                                    const float *scale, int cols, int g, int8_t *q, float2 *ds)
{
    gemv_store_block(gemv_quantize_words(x, gamma, scale, cols, g), g, q, ds);
}

/*
 * Block c of token tau stored in the MMQ's order, the fragments' (kernels.h, slm_cuda_mmq_quantize;
 * mmq.cu reads it): tokens in tiles of 8, nt tiles a column of blocks; at = c nt + tau / 8, g = tau
 * % 8. b[32 at + 4 g + t] (t = 0..3) = words t and t + 4, the int2 that lane (g, t) of an
 * mma.sync m16n8k32 takes as its B fragment of token 8j + g; ds[8 at + g] = (d, s), so that lane
 * (g, t) reads the (d, s) of its output tokens 2t and 2t + 1 as one float4 (ds[8 at + 2t ..]).
 * The fused MMQ prologue writes its block's tiles so into shared memory (nt = its tiles), the
 * standalone quantizer all n tokens' into global memory.
 */
__device__ __forceinline__ void mmq_frag_store(int2 *b, float2 *ds, int nt, int tau, int c, const qact_block &q)
{
    const int at = c * nt + (tau >> 3), g = tau & 7;
    uint4 *d = reinterpret_cast<uint4 *>(b + 32 * at + 4 * g);
    d[0] = make_uint4(q.w[0], q.w[4], q.w[1], q.w[5]);
    d[1] = make_uint4(q.w[2], q.w[6], q.w[3], q.w[7]);
    ds[8 * at + g] = q.ds;
}

/* A standalone quantizer's block (grid (ceil(cols / 32 / QACT_THREADS), tokens)): with gamma,
 * the RMSNorm scale of the token xr by its first warp; then this thread's activation block
 * blockIdx.x QACT_THREADS + threadIdx.x of xr into *q, its index into *g. false past the row's
 * blocks (after the barrier: every thread of the block reaches it). */
__device__ __forceinline__ bool qact_row_block(const float *__restrict__ xr, const float *__restrict__ gamma, float eps,
                                               int cols, qact_block *q, int *g)
{
    __shared__ float scale[1];
    if (gamma) {
        if (threadIdx.x < 32) {   /* one warp computes the scale */
            const float s = gemv_norm_scale(xr, cols, eps);
            if (threadIdx.x == 0) scale[0] = s;
        }
        __syncthreads();
    }
    *g = (int)blockIdx.x * QACT_THREADS + (int)threadIdx.x;
    if (*g >= cols >> 5) return false;
    *q = gemv_quantize_words(xr, gamma, scale, cols, *g);
    return true;
}

/* With gamma, the RMSNorm scales of tokens 0 .. n - 1 of x (n, cols) into scale (n floats of
 * shared memory; warp w takes tokens w, w + 4, ...), then __syncthreads; without, nothing. */
__device__ __forceinline__ void gemv_norm_tokens(const float *__restrict__ x, const float *__restrict__ gamma, float eps,
                                                 int n, int cols, float *scale)
{
    if (!gamma) return;
    for (int t = threadIdx.x >> 5; t < n; t += QACT_WARPS) {
        const float s = gemv_norm_scale(x + (size_t)t * (size_t)cols, cols, eps);
        if ((threadIdx.x & 31) == 0) scale[t] = s;
    }
    __syncthreads();
}

/*
 * A prologue: tokens 0 .. n - 1 of x (n, cols; 16-byte aligned rows) quantized by the whole block
 * into q (n, cols) and ds (n, cols / 32), usually shared memory; with gamma, each token's row
 * RMS-normed first (scale: n floats of shared memory for the norms; warp w takes tokens w, w + 4,
 * ...); thread i then quantizes activation blocks i, i + 128, ... Ends with __syncthreads: q and ds
 * are then ready for every thread. The same bytes as slm_cuda_gemv_quantize.
 */
__device__ __forceinline__ void gemv_quantize_tokens(const float *__restrict__ x, const float *__restrict__ gamma,
                                                     float eps, int n, int cols, float *scale, int8_t *q, float2 *ds)
{
    gemv_norm_tokens(x, gamma, eps, n, cols, scale);
    const int g_end = n * (cols >> 5);
    for (int g = threadIdx.x; g < g_end; g += QACT_THREADS) gemv_quantize_block(x, gamma, scale, cols, g, q, ds);
    __syncthreads();
}

#endif
