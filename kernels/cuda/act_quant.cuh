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
 * The RMSNorm scale of token t (its row xr of cols floats), computed by the whole block of
 * QACT_THREADS threads and returned to every thread: thread i sums xr[i]^2, xr[i + 128]^2, ...
 * (fmaf, in order), a butterfly 16..1 in each warp, then the 4 warp sums in order, then
 * 1 / sqrt(sum / cols + eps). Contains __syncthreads: call it from the whole block.
 */
__device__ __forceinline__ float gemv_norm_scale(const float *__restrict__ xr, int cols, float eps)
{
    __shared__ float part[QACT_WARPS];
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += QACT_THREADS) s = __fmaf_rn(xr[i], xr[i], s);
    SLM_UNROLL
    for (int off = 16; off > 0; off >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    float total = part[0];
    SLM_UNROLL
    for (int w = 1; w < QACT_WARPS; w++) total = __fadd_rn(total, part[w]);
    __syncthreads();   /* part is reused by the next call */
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total, (float)cols), eps)));
}

/*
 * One step of the quantizer, by one warp: the 4 activation blocks g0 .. g0 + 3 (block g = 32
 * floats of token g / (cols / 32)), 8 lanes a block, 4 floats a lane (one 16-byte load), those
 * at or past g_end skipped (the warp still shuffles as a whole). With gamma, the value is
 * (x * scale[t]) * gamma first. Writes q (4 bytes a lane) and ds (d, s) of each block.
 */
__device__ __forceinline__ void gemv_quantize_step(const float *__restrict__ x, const float *__restrict__ gamma,
                                                   const float *scale, int cols, int g0, int g_end, int8_t *q,
                                                   float2 *ds)
{
    const int lane = threadIdx.x & 31, sub = lane & 7;
    const int g = min(g0 + (lane >> 3), g_end - 1);
    const int nbr = cols >> 5, t = g / nbr, e = 32 * (g - t * nbr) + 4 * sub;
    float4 v = *reinterpret_cast<const float4 *>(x + (size_t)t * (size_t)cols + e);
    if (gamma) {
        const float sc = scale[t];
        const float4 gm = *reinterpret_cast<const float4 *>(gamma + e);
        v.x = __fmul_rn(__fmul_rn(v.x, sc), gm.x);
        v.y = __fmul_rn(__fmul_rn(v.y, sc), gm.y);
        v.z = __fmul_rn(__fmul_rn(v.z, sc), gm.z);
        v.w = __fmul_rn(__fmul_rn(v.w, sc), gm.w);
    }
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    SLM_UNROLL
    for (int off = 4; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = __fdiv_rn(amax, 127.0f), id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    const int q0 = __float2int_rn(__fmul_rn(v.x, id)), q1 = __float2int_rn(__fmul_rn(v.y, id));
    const int q2 = __float2int_rn(__fmul_rn(v.z, id)), q3 = __float2int_rn(__fmul_rn(v.w, id));
    int sum = q0 + q1 + q2 + q3;
    SLM_UNROLL
    for (int off = 4; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (g0 + (lane >> 3) < g_end) {
        *reinterpret_cast<uint32_t *>(q + (size_t)g * 32 + 4 * sub) =
            (uint32_t)(q0 & 0xff) | (uint32_t)(q1 & 0xff) << 8 | (uint32_t)(q2 & 0xff) << 16 | (uint32_t)q3 << 24;
        if (sub == 0) ds[g] = make_float2(d, __fmul_rn(d, __int2float_rn(sum)));
    }
}

/*
 * A prologue: tokens 0 .. n - 1 of x (n, cols; 16-byte aligned rows) quantized by the whole block
 * into q (n, cols) and ds (n, cols / 32), usually shared memory; with gamma, each token's row
 * RMS-normed first (scale: n floats of shared memory for the norms). Ends with __syncthreads:
 * q and ds are then ready for every thread. The same bytes as slm_cuda_gemv_quantize.
 */
__device__ __forceinline__ void gemv_quantize_tokens(const float *__restrict__ x, const float *__restrict__ gamma,
                                                     float eps, int n, int cols, float *scale, int8_t *q, float2 *ds)
{
    if (gamma) {
        for (int t = 0; t < n; t++) {
            const float s = gemv_norm_scale(x + (size_t)t * (size_t)cols, cols, eps);
            if (threadIdx.x == 0) scale[t] = s;
        }
        __syncthreads();
    }
    const int g_end = n * (cols >> 5);
    for (int g0 = 4 * (threadIdx.x >> 5); g0 < g_end; g0 += 4 * QACT_WARPS)
        gemv_quantize_step(x, gamma, scale, cols, g0, g_end, q, ds);
    __syncthreads();
}

#endif
