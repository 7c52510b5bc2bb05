/*
 * kernels/cuda/mma_rate.cu - a probe of the int8 tensor-core rate, for bench/gpu/gpu_kernels
 * (the ceiling the MMQ's rows are measured against): every warp issues mma.sync s8 m16n8k32
 * (kernels/cuda/mma.cuh) on registers, MMA_RATE_CHAINS independent accumulators deep so that the
 * pipeline never waits on one result, and writes one sum so nothing is optimised away.
 */
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"

#define MMA_RATE_THREADS 256
#define MMA_RATE_CHAINS 4

__global__ void __launch_bounds__(MMA_RATE_THREADS) k_mma_rate(int iters, int *out)
{
    const int lane = threadIdx.x & 31;
    int a[4] = {lane, lane + 1, lane + 2, lane + 3}, b[2] = {lane * 3, lane * 5};
    int c[MMA_RATE_CHAINS][4] = {};
    for (int i = 0; i < iters; i++) {
#if defined(__CUDACC__)
#pragma unroll
#endif
        for (int k = 0; k < MMA_RATE_CHAINS; k++) slm_mma::mma_s8_k32(c[k], a, b, c[k]);
    }
    int s = 0;
    for (int k = 0; k < MMA_RATE_CHAINS; k++) s += c[k][0] + c[k][1] + c[k][2] + c[k][3];
    if (s == 0x7fffffff) out[blockIdx.x] = s;   /* practically never: the compiler cannot know */
}

extern "C" double slm_cuda_mma_rate_ops(int blocks, int iters)
{
    return (double)blocks * (MMA_RATE_THREADS / 32) * (double)iters * MMA_RATE_CHAINS * (16.0 * 8 * 32 * 2);
}

extern "C" int slm_cuda_mma_rate(int blocks, int iters, int *out, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(blocks >= 1 && iters >= 1);
    SLM_CUDA_DEVICE(out, (size_t)blocks * sizeof(int));
    SLM_LAUNCH(k_mma_rate, blocks, MMA_RATE_THREADS, 0, stream, iters, out);
    return slm_cuda_launched();
}
