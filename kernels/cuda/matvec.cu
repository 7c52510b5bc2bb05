/*
 * kernels/cuda/matvec.cu - fused dequant-GEMV for decode: y (n, rows) = x (n, cols) . W^T.
 *
 * One warp per weight row, 4 warps (rows) per block; blockIdx.y picks a group of up to
 * SLM_CUDA_MATVEC_TOKENS tokens, which share every weight load: each weight byte is read
 * once per group. Lane l dequantizes units l, l + 32, l + 64, ... of its row (qunits.cuh)
 * into registers and, for each token of the group, multiply-adds them into that token's
 * fp32 accumulator (one fused multiply-add per element, in element order within the
 * unit); the 32 partial sums are then reduced by a butterfly of __shfl_xor_sync (offsets
 * 16, 8, 4, 2, 1). Activations are read as fp32 (float4 where the unit's runs allow).
 *
 * Batch invariance: a token's accumulator sees the same sequence of operations whatever
 * n is and whichever group or slot the token has; only rows and cols shape it.
 */
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/qunits.cuh"

#define MV_WARPS 4
#define MV_TOKENS SLM_CUDA_MATVEC_TOKENS

/* acc += dot(w, x) of one unit, element by element; x points at the unit's first element. */
template <class U> __device__ __forceinline__ float unit_dot(const float *w, const float *__restrict__ x, float acc)
{
    SLM_UNROLL
    for (int r = 0; r < U::RUNS; r++) {
        const float *xr = x + r * U::RUN_STRIDE;
        int l = 0;
        SLM_UNROLL
        for (; l + 4 <= U::RUN_LEN; l += 4) {
            float4 v = *reinterpret_cast<const float4 *>(xr + l);
            acc = __fmaf_rn(w[r * U::RUN_LEN + l], v.x, acc);
            acc = __fmaf_rn(w[r * U::RUN_LEN + l + 1], v.y, acc);
            acc = __fmaf_rn(w[r * U::RUN_LEN + l + 2], v.z, acc);
            acc = __fmaf_rn(w[r * U::RUN_LEN + l + 3], v.w, acc);
        }
        SLM_UNROLL
        for (; l < U::RUN_LEN; l++) acc = __fmaf_rn(w[r * U::RUN_LEN + l], xr[l], acc);
    }
    return acc;
}

template <class U>
__global__ void __launch_bounds__(MV_WARPS * 32, 4)
    k_matvec(const uint8_t *__restrict__ w, int rows, int blocks_per_row, const float *__restrict__ x, int cols,
             int n, float *__restrict__ y, int accumulate)
{
    slm_pdl_begin();
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return; /* the whole warp: no collective is left waiting */
    const int t0 = blockIdx.y * MV_TOKENS;
    const int nt = min(MV_TOKENS, n - t0);
    const uint8_t *wrow = w + (size_t)row * (size_t)blocks_per_row * U::BLOCK_BYTES;
    const float *xg = x + (size_t)t0 * (size_t)cols;

    float acc[MV_TOKENS];
    SLM_UNROLL
    for (int t = 0; t < MV_TOKENS; t++) acc[t] = 0.0f;

    const int units = blocks_per_row * U::UNITS;
    for (int g = lane; g < units; g += 32) {
        const int blk = g / U::UNITS, u = g % U::UNITS;
        float wv[U::RUNS * U::RUN_LEN];
        U::load(wrow + (size_t)blk * U::BLOCK_BYTES, u, wv);
        const float *xu = xg + (size_t)blk * U::BLOCK_ELEMS + U::first(u);
        SLM_UNROLL
        for (int t = 0; t < MV_TOKENS; t++)
            if (t < nt) acc[t] = unit_dot<U>(wv, xu + (size_t)t * (size_t)cols, acc[t]);
    }

    SLM_UNROLL
    for (int t = 0; t < MV_TOKENS; t++) {
        if (t < nt) {
            float s = acc[t];
            SLM_UNROLL
            for (int off = 16; off > 0; off >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, off));
            acc[t] = s;
        }
    }
    if (lane == 0) {
        SLM_UNROLL
        for (int t = 0; t < MV_TOKENS; t++) {
            if (t < nt) {
                float *yp = y + (size_t)(t0 + t) * (size_t)rows + row;
                *yp = accumulate ? __fadd_rn(*yp, acc[t]) : acc[t];
            }
        }
    }
}

/* -------------------------------------------------------------------------------------- */

template <class U>
static int launch_matvec(const void *w, int64_t rows, int64_t cols, const float *x, int n, float *y, int accumulate,
                         cudaStream_t stream)
{
    SLM_CUDA_ARG(slm_cuda_aligned(w, U::ALIGN));
    dim3 grid((unsigned)((rows + MV_WARPS - 1) / MV_WARPS), (unsigned)((n + MV_TOKENS - 1) / MV_TOKENS));
    SLM_LAUNCH_PDL((k_matvec<U>), grid, MV_WARPS * 32, 0, stream, (const uint8_t *)w, (int)rows,
               (int)(cols / U::BLOCK_ELEMS), x, (int)cols, n, y, accumulate);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_matvec(uint32_t type, const void *w, int64_t rows, int64_t cols, const float *x, int n,
                               float *y, int accumulate, struct CUstream_st *stream)
{
    size_t row_bytes = slm_cuda_row_bytes(type, cols);
    SLM_CUDA_ARG(row_bytes != 0 && rows >= 1 && rows <= INT32_MAX - MV_WARPS && cols <= INT32_MAX);
    SLM_CUDA_ARG(n >= 1 && (n + MV_TOKENS - 1) / MV_TOKENS <= 65535);
    SLM_CUDA_DEVICE(w, (size_t)rows * row_bytes);
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_DEVICE(y, (size_t)n * (size_t)rows * sizeof(float));
    /* The 16-byte units of the plain types need 16-byte rows and a 16-byte aligned x. */
    bool vec = (row_bytes % 16 == 0) && slm_cuda_aligned(w, 16) && cols % 4 == 0;
    SLM_CUDA_ARG(slm_cuda_aligned(x, (cols % 4 == 0) ? 16 : 4) && slm_cuda_aligned(y, 4));
    SLM_CUDA_DISPATCH_UNIT(type, vec, launch_matvec, w, rows, cols, x, n, y, accumulate, stream)
}
