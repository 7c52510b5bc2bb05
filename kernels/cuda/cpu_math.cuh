/*
 * kernels/cuda/cpu_math.cuh - device twins of the CPU backend's own float functions, with
 * the same operations in the same order (_rn intrinsics: nvcc fuses nothing), so that a
 * kernel using them gives the CPU backend's bits on a GPU and under the emulator.
 */
#ifndef SLM_KERNELS_CUDA_CPU_MATH_CUH
#define SLM_KERNELS_CUDA_CPU_MATH_CUH

#include "kernels/cuda/compat.h"

namespace slm_cuda {

/* 2^e for e in [-149, 127], exactly (normal or subnormal). */
__device__ __forceinline__ float pow2_exact(int e)
{
    return __uint_as_float(e >= -126 ? (unsigned)(e + 127) << 23 : 1u << (e + 149));
}

/* kernels/cpu/expf.h's slm_expf16 (the exp of llama.cpp's AVX-512 build, which the CPU backend
 * uses in its 16-lane layout): 2^n * p(b), n = round(x / ln 2), b = x - n ln 2 (two-part ln 2), p
 * of degree 5; within about 2 ulp of exp, and that form's bits. */
__device__ __forceinline__ float expf_poly(float x)
{
    const float shift = 0x1.8p23f;
    float z = __fmaf_rn(x, 0x1.715476p+0f, shift);
    float n = __fsub_rn(z, shift);
    float b = __fmaf_rn(-n, 0x1.7f7d1cp-20f, __fmaf_rn(-n, 0x1.62e4p-1f, x));
    if (n != n) return n;
    if (fabsf(n) > 192.0f) return n > 0.0f ? __int_as_float(0x7f800000) : 0.0f;
    float u = __fmul_rn(b, b);
    float j = __fmaf_rn(__fmaf_rn(__fmaf_rn(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, __fmaf_rn(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                        u, __fmaf_rn(0x1.ffffecp-1f, b, 1.0f));
    int e = (int)n;
    if (e < -149 || e > 127) return ldexpf(j, e);
    return __fmul_rn(j, pow2_exact(e));
}

} /* namespace slm_cuda */

#endif
