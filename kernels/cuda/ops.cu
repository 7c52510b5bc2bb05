/*
 * kernels/cuda/ops.cu - RMSNorm and the element-wise ops: SwiGLU, add, add_bias, gather_rows.
 *
 * RMSNorm: one block of 256 threads per row. Thread t sums the squares of elements
 * t, t + 256, ... (fused multiply-add, fp32, in that order), each warp reduces its 32
 * sums by a __shfl_xor_sync butterfly, and every thread adds the 8 warp sums in warp
 * order: the same order for a row whatever else is in the call.
 * The element-wise ops: 256 threads per block, grid-stride loops, one element per step.
 */
#include "kernels/cuda/launch.cuh"

#define OPS_THREADS 256
#define OPS_WARPS (OPS_THREADS / 32)
#define OPS_MAX_BLOCKS 4096

__global__ void __launch_bounds__(OPS_THREADS)
    k_rmsnorm(const float *x, const float *__restrict__ gamma, int dim, float eps, float *out)
{
    __shared__ float warp_sums[OPS_WARPS];
    const float *xr = x + (size_t)blockIdx.x * (size_t)dim;
    float *orow = out + (size_t)blockIdx.x * (size_t)dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += OPS_THREADS) s = __fmaf_rn(xr[i], xr[i], s);
    for (int off = 16; off > 0; off >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
    if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
    __syncthreads();
    float sum = warp_sums[0];
    for (int k = 1; k < OPS_WARPS; k++) sum = __fadd_rn(sum, warp_sums[k]);
    /* as the CPU: 1 / sqrt(mean + eps), each step rounded to float */
    const float scale = 1.0f / __fsqrt_rn(__fadd_rn(sum / (float)dim, eps));
    for (int i = threadIdx.x; i < dim; i += OPS_THREADS) orow[i] = __fmul_rn(__fmul_rn(xr[i], scale), gamma[i]);
}

__global__ void __launch_bounds__(OPS_THREADS) k_swiglu(const float *gate, const float *up, size_t len, float *out)
{
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS) {
        float g = gate[i];
        out[i] = __fmul_rn(g / __fadd_rn(1.0f, expf(-g)), up[i]);
    }
}

__global__ void __launch_bounds__(OPS_THREADS) k_add(float *x, const float *y, size_t len)
{
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fadd_rn(x[i], y[i]);
}

__global__ void __launch_bounds__(OPS_THREADS) k_add_bias(float *x, const float *__restrict__ bias, size_t len, int dim)
{
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fadd_rn(x[i], bias[i % (size_t)dim]);
}

__global__ void __launch_bounds__(OPS_THREADS)
    k_gather_rows(const float *__restrict__ x, int64_t x_rows, int dim, const int32_t *__restrict__ ids, size_t len,
                  float *__restrict__ dst)
{
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS) {
        int64_t src = ids[i / (size_t)dim];
        dst[i] = src >= 0 && src < x_rows ? x[(size_t)src * (size_t)dim + i % (size_t)dim] : __uint_as_float(0x7fc00000u);
    }
}

/* -------------------------------------------------------------------------------------- */

static unsigned elementwise_blocks(size_t len)
{
    size_t b = (len + OPS_THREADS - 1) / OPS_THREADS;
    return (unsigned)(b < OPS_MAX_BLOCKS ? b : OPS_MAX_BLOCKS);
}

extern "C" int slm_cuda_rmsnorm(const float *x, const float *gamma, int n, int dim, float eps, float *out,
                                struct CUstream_st *stream)
{
    SLM_CUDA_ARG(n >= 1 && dim >= 1 && eps >= 0.0f);
    size_t bytes = (size_t)n * (size_t)dim * sizeof(float);
    SLM_CUDA_DEVICE(x, bytes);
    SLM_CUDA_DEVICE(gamma, (size_t)dim * sizeof(float));
    SLM_CUDA_DEVICE(out, bytes);
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(gamma, 4) && slm_cuda_aligned(out, 4));
    SLM_LAUNCH(k_rmsnorm, (unsigned)n, OPS_THREADS, 0, stream, x, gamma, dim, eps, out);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_swiglu(const float *gate, const float *up, size_t len, float *out, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(gate, len * sizeof(float));
    SLM_CUDA_DEVICE(up, len * sizeof(float));
    SLM_CUDA_DEVICE(out, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(gate, 4) && slm_cuda_aligned(up, 4) && slm_cuda_aligned(out, 4));
    SLM_LAUNCH(k_swiglu, elementwise_blocks(len), OPS_THREADS, 0, stream, gate, up, len, out);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_add(float *x, const float *y, size_t len, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_DEVICE(y, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(y, 4));
    SLM_LAUNCH(k_add, elementwise_blocks(len), OPS_THREADS, 0, stream, x, y, len);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_add_bias(float *x, const float *bias, int n, int dim, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(n >= 1 && dim >= 1);
    size_t len = (size_t)n * (size_t)dim;
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_DEVICE(bias, (size_t)dim * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(bias, 4));
    SLM_LAUNCH(k_add_bias, elementwise_blocks(len), OPS_THREADS, 0, stream, x, bias, len, dim);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_gather_rows(const float *x, int64_t x_rows, int dim, const int32_t *ids, int n_rows,
                                    float *dst, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(x_rows >= 1 && dim >= 1 && n_rows >= 1);
    size_t x_bytes = (size_t)x_rows * (size_t)dim * sizeof(float), len = (size_t)n_rows * (size_t)dim;
    SLM_CUDA_DEVICE(x, x_bytes);
    SLM_CUDA_DEVICE(ids, (size_t)n_rows * sizeof(int32_t));
    SLM_CUDA_DEVICE(dst, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(dst, 4));
    const char *xb = (const char *)x, *db = (const char *)dst;
    SLM_CUDA_ARG(db + len * sizeof(float) <= xb || xb + x_bytes <= db);
    SLM_LAUNCH(k_gather_rows, elementwise_blocks(len), OPS_THREADS, 0, stream, x, x_rows, dim, ids, len, dst);
    return slm_cuda_launched();
}
