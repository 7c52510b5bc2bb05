/*
 * kernels/cuda/ops.cu - RMSNorm and the element-wise ops: SwiGLU, GeGLU, scale, add, add_bias,
 * gather_rows.
 *
 * Both follow the CPU backend's arithmetic (kernels/cpu/ops.c) operation for operation, so
 * that they give its bits:
 * RMSNorm: one block of 256 threads per row. Warp 0 adds the float squares in double as
 * slm_cpu_rmsnorm does: lane l the elements l, l + 32, ... in order (dim / 32 dependent double
 * adds), then a butterfly of offsets 16, 8, 4, 2, 1, which is the CPU's fold by halves (an IEEE
 * add is commutative, so every lane ends with lane 0's bits); then every thread scales its
 * elements: (x * scale) * gamma.
 * SwiGLU: g / (1 + expf_poly(-g)) * up with the CPU's exp polynomial in its 16-lane form
 * (cpu_math.cuh; the CPU's bits where it runs in 16 lanes, kernels/cpu/expf.h).
 * GeGLU: the CPU's (llama.cpp's) f16 GELU table, made on the host by slm_cpu_geglu and read
 * here at g rounded to f16 (so no device tanhf, whose last bit may differ from glibc's), then
 * times up; g <= -10 gives 0 and g >= 10 gives g * up, as there. scale: x * s.
 * The element-wise ops: 256 threads per block, grid-stride loops, one element per step.
 */
#include "kernels/cuda/cpu_math.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/numerics.h"

#define OPS_THREADS 256
#define OPS_WARPS (OPS_THREADS / 32)
#define OPS_MAX_BLOCKS 4096

__global__ void __launch_bounds__(OPS_THREADS)
    k_rmsnorm(const float *x, const float *__restrict__ gamma, int dim, float eps, float *out)
{
    slm_pdl_begin();
    __shared__ float scale_s;
    const float *xr = x + (size_t)blockIdx.x * (size_t)dim;
    float *orow = out + (size_t)blockIdx.x * (size_t)dim;
    static_assert(SLM_RMSNORM_LANES == 32, "one warp holds the lanes");
    if (threadIdx.x < 32) {
        double sum = 0.0;
        for (int i = threadIdx.x; i < dim; i += 32) sum = __dadd_rn(sum, (double)__fmul_rn(xr[i], xr[i]));
        for (int off = 16; off > 0; off >>= 1) sum = __dadd_rn(sum, __shfl_xor_sync(0xffffffffu, sum, off));
        if (threadIdx.x == 0)
            scale_s = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__double2float_rn(__ddiv_rn(sum, (double)dim)), eps)));
    }
    __syncthreads();
    const float scale = scale_s;
    for (int i = threadIdx.x; i < dim; i += OPS_THREADS) orow[i] = __fmul_rn(__fmul_rn(xr[i], scale), gamma[i]);
}

__global__ void __launch_bounds__(OPS_THREADS) k_swiglu(const float *gate, const float *up, size_t len, float *out)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS) {
        float g = gate[i];
        out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, slm_cuda::expf_poly(-g))), up[i]);
    }
}

__global__ void __launch_bounds__(OPS_THREADS)
    k_geglu(const float *gate, const float *up, const unsigned short *__restrict__ table, size_t len, float *out)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS) {
        const float g = gate[i];
        float r;
        if (g <= -10.0f) r = 0.0f;
        else if (g >= 10.0f) r = __fmul_rn(g, up[i]);
        else r = __fmul_rn(__half2float(__ushort_as_half(table[__half_as_ushort(__float2half_rn(g))])), up[i]);
        out[i] = r;
    }
}

__global__ void __launch_bounds__(OPS_THREADS) k_scale(float *x, size_t len, float s)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fmul_rn(x[i], s);
}

__global__ void __launch_bounds__(OPS_THREADS) k_softcap(float *x, size_t len, float inv, float cap)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fmul_rn(tanhf(__fmul_rn(x[i], inv)), cap);
}

__global__ void __launch_bounds__(OPS_THREADS) k_add(float *x, const float *y, size_t len)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fadd_rn(x[i], y[i]);
}

__global__ void __launch_bounds__(OPS_THREADS) k_add_bias(float *x, const float *__restrict__ bias, size_t len, int dim)
{
    slm_pdl_begin();
    for (size_t i = (size_t)blockIdx.x * OPS_THREADS + threadIdx.x; i < len; i += (size_t)gridDim.x * OPS_THREADS)
        x[i] = __fadd_rn(x[i], bias[i % (size_t)dim]);
}

__global__ void __launch_bounds__(OPS_THREADS)
    k_gather_rows(const float *__restrict__ x, int64_t x_rows, int dim, const int32_t *__restrict__ ids, size_t len,
                  float *__restrict__ dst)
{
    slm_pdl_begin();
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
    SLM_LAUNCH_PDL(k_rmsnorm, (unsigned)n, OPS_THREADS, 0, stream, x, gamma, dim, eps, out);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_swiglu(const float *gate, const float *up, size_t len, float *out, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(gate, len * sizeof(float));
    SLM_CUDA_DEVICE(up, len * sizeof(float));
    SLM_CUDA_DEVICE(out, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(gate, 4) && slm_cuda_aligned(up, 4) && slm_cuda_aligned(out, 4));
    SLM_LAUNCH_PDL(k_swiglu, elementwise_blocks(len), OPS_THREADS, 0, stream, gate, up, len, out);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_geglu(const float *gate, const float *up, const uint16_t *table, size_t len, float *out,
                              struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(gate, len * sizeof(float));
    SLM_CUDA_DEVICE(up, len * sizeof(float));
    SLM_CUDA_DEVICE(table, (size_t)SLM_CUDA_GELU_TABLE * sizeof(uint16_t));
    SLM_CUDA_DEVICE(out, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(gate, 4) && slm_cuda_aligned(up, 4) && slm_cuda_aligned(out, 4) &&
                 slm_cuda_aligned(table, 2));
    SLM_LAUNCH_PDL(k_geglu, elementwise_blocks(len), OPS_THREADS, 0, stream, gate, up,
               reinterpret_cast<const unsigned short *>(table), len, out);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_scale(float *x, size_t len, float s, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4));
    SLM_LAUNCH_PDL(k_scale, elementwise_blocks(len), OPS_THREADS, 0, stream, x, len, s);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_softcap(float *x, size_t len, float cap, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1 && cap > 0.0f && cap < 1e30f);
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4));
    SLM_LAUNCH_PDL(k_softcap, elementwise_blocks(len), OPS_THREADS, 0, stream, x, len, 1.0f / cap, cap);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_add(float *x, const float *y, size_t len, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(len >= 1);
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_DEVICE(y, len * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(y, 4));
    SLM_LAUNCH_PDL(k_add, elementwise_blocks(len), OPS_THREADS, 0, stream, x, y, len);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_add_bias(float *x, const float *bias, int n, int dim, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(n >= 1 && dim >= 1);
    size_t len = (size_t)n * (size_t)dim;
    SLM_CUDA_DEVICE(x, len * sizeof(float));
    SLM_CUDA_DEVICE(bias, (size_t)dim * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(bias, 4));
    SLM_LAUNCH_PDL(k_add_bias, elementwise_blocks(len), OPS_THREADS, 0, stream, x, bias, len, dim);
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
    SLM_LAUNCH_PDL(k_gather_rows, elementwise_blocks(len), OPS_THREADS, 0, stream, x, x_rows, dim, ids, len, dst);
    return slm_cuda_launched();
}
