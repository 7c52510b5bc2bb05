/*
 * kernels/cuda/mmf.cu - the matmul of F16 and BF16 weights on tensor cores (mma.sync m16n8k16,
 * f16 x f16 or bf16 x bf16 -> f32), for every number of tokens: kernels.h has the contract,
 * docs/cuda.md ("F16 / BF16 weights on tensor cores") the launch shapes, docs/numerics.md the
 * numerics.
 *
 * Numerics. Each activation is rounded once to the weight's type (round to nearest even) as its B
 * fragment is loaded; the products are exact in f32 and the tensor core adds them into an f32
 * accumulator, 16 columns an instruction, in its own fixed internal order. The order of an output
 * element (row r, token j) depends on cols alone: the K16 = cols / 16 steps are cut into F =
 * min(4, the largest power of two <= K16) segments [f K16 / F, (f + 1) K16 / F); segment f is one
 * warp's chain of mma.sync from 0 (C = the previous step's D), and the F segment sums are added left
 * to right in shared memory by the warp of segment 0. A fixed split-K from the weight's shape, never
 * from the batch: nothing depends on n, on the token's tile or slot, or on the block's token count
 * (TILES), so a token's outputs have the same bits alone, in a batch of any size, prefilled or
 * decoded (tests/test_cuda_mmf.cpp).
 *
 * Shape: MMF_THREADS = 128 (4 warps) a block: F warps along K x 4 / F row tiles of 16 rows, each
 * warp against TILES x 8 tokens (TILES = 1 for n <= 8, else 4: 32 tokens a block), one m16n8 tile
 * at a time; grid (ceil(rows / (16 x 4 / F)), ceil(n / (8 TILES))). A fragment comes straight from
 * global memory: lane (g, t) reads halves 2t, 2t + 1 and 2t + 8, 2t + 9 of rows g and g + 8 (4-byte
 * loads) and the same columns of token g's x (8-byte loads, converted); before its wait a block
 * asks L2 for the first 64 KiB of its rows (mmf_prefetch). A first version: no shared-memory
 * staging, no ldmatrix / cp.async, no wgmma (docs/cuda.md).
 */
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/qunits.cuh"   /* SLM_UNROLL */

#define MMF_THREADS 128
#define MMF_WARPS (MMF_THREADS / 32)

namespace {

/* The 16-bit bits of v rounded to nearest even: bf16 when BF, else f16. */
template <bool BF> __device__ __forceinline__ uint32_t to_bits(float v)
{
    if (BF) return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(v));
    return (uint32_t)__half_as_ushort(__float2half_rn(v));
}

template <bool BF> __device__ __forceinline__ uint32_t pack(float2 v)
{
    return to_bits<BF>(v.x) | to_bits<BF>(v.y) << 16;   /* the lower column in the low half */
}

/* Segments along K: the least of 4 and the largest power of two <= k16. */
__host__ __device__ __forceinline__ int mmf_groups(int k16)
{
    return k16 >= 4 ? 4 : k16 >= 2 ? 2 : 1;
}

__device__ __forceinline__ uint32_t ld_w(const uint16_t *p)
{
    return *reinterpret_cast<const uint32_t *>(p);
}

/* Before the block's wait: asks L2 for the first 64 KiB of its rows' weights (up to 4 lines of 128
 * bytes a thread), by the blocks of the first token tile (the others read the same rows). The
 * weights are read-only for the step, and a prefetch moves nothing into a thread (docs/cuda.md,
 * "Programmatic dependent launch"). */
__device__ __forceinline__ void mmf_prefetch(const uint16_t *w, int rows, int cols)
{
    const int per_block = 16 * (MMF_WARPS / mmf_groups(cols >> 4)), r0 = (int)blockIdx.x * per_block;
    if (blockIdx.y != 0 || r0 >= rows) return;
    const size_t span = (size_t)min(per_block, rows - r0) * (size_t)cols * 2, cap = 64 * 1024;
    const char *base = reinterpret_cast<const char *>(w + (size_t)r0 * (size_t)cols);
    for (size_t off = (size_t)threadIdx.x * 128; off < span && off < cap; off += (size_t)MMF_THREADS * 128)
        slm_prefetch_l2(base + off);
}

}   // namespace

template <bool BF, int TILES>
__global__ void __launch_bounds__(MMF_THREADS)
    k_mmf(const uint16_t *__restrict__ w, int rows, int cols, const float *__restrict__ x, int n, float *y,
          int accumulate)
{
    mmf_prefetch(w, rows, cols);
    slm_pdl_begin();
    __shared__ float part[MMF_WARPS][TILES * 4][32];   /* the segment sums of warps 1 .. F - 1 */
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warp = threadIdx.x >> 5;
    const int k16 = cols >> 4, F = mmf_groups(k16), wk = warp % F, wr = warp / F;
    const int row0 = (int)blockIdx.x * (16 * (MMF_WARPS / F)) + 16 * wr + g;   /* rows row0, row0 + 8 */
    const int tok0 = (int)blockIdx.y * 8 * TILES;
    const uint16_t *w0 = w + (size_t)min(row0, rows - 1) * (size_t)cols + 2 * t;
    const uint16_t *w8 = w + (size_t)min(row0 + 8, rows - 1) * (size_t)cols + 2 * t;
    const float *xt[TILES];   /* token tok0 + 8j + g's row at column 2t, or NULL past n */
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        const int tb = tok0 + 8 * j + g;
        xt[j] = tb < n ? x + (size_t)tb * (size_t)cols + 2 * t : nullptr;
    }
    float acc[TILES][4];
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) acc[j][i] = 0.0f;
    }
    const int s0 = wk * k16 / F, s1 = (wk + 1) * k16 / F;
    for (int s = s0; s < s1; s++) {
        const int k = 16 * s;
        const uint32_t a[4] = {ld_w(w0 + k), ld_w(w8 + k), ld_w(w0 + k + 8), ld_w(w8 + k + 8)};
        SLM_UNROLL
        for (int j = 0; j < TILES; j++) {
            uint32_t b[2] = {0u, 0u};
            if (xt[j]) {
                b[0] = pack<BF>(*reinterpret_cast<const float2 *>(xt[j] + k));
                b[1] = pack<BF>(*reinterpret_cast<const float2 *>(xt[j] + k + 8));
            }
            const float c[4] = {acc[j][0], acc[j][1], acc[j][2], acc[j][3]};
            if (BF) slm_mma::mma_bf16_k16(acc[j], a, b, c);
            else slm_mma::mma_f16_k16(acc[j], a, b, c);
        }
    }
    if (F > 1) {   /* the segment sums meet at the warp of segment 0, left to right */
        if (wk > 0) {
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                SLM_UNROLL
                for (int i = 0; i < 4; i++) part[warp][4 * j + i][lane] = acc[j][i];
            }
        }
        __syncthreads();
        if (wk > 0) return;
        for (int f = 1; f < F; f++) {
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                SLM_UNROLL
                for (int i = 0; i < 4; i++) acc[j][i] = __fadd_rn(acc[j][i], part[warp + f][4 * j + i][lane]);
            }
        }
    }
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            const int row = row0 + 8 * (i >> 1), tok = tok0 + 8 * j + 2 * t + (i & 1);
            if (row >= rows || tok >= n) continue;
            float *yp = y + (size_t)tok * (size_t)rows + row;
            *yp = accumulate ? __fadd_rn(*yp, acc[j][i]) : acc[j][i];
        }
    }
}

/* ======================================================================================
 * Launcher
 * ====================================================================================== */

template <bool BF>
static int mmf_launch(const uint16_t *w, int rows, int cols, const float *x, int n, float *y, int accumulate,
                      cudaStream_t stream)
{
    const int per_block = 16 * (MMF_WARPS / mmf_groups(cols >> 4));
    const unsigned gx = (unsigned)((rows + per_block - 1) / per_block);
    if (n <= 8) SLM_LAUNCH_PDL((k_mmf<BF, 1>), dim3(gx, 1), MMF_THREADS, 0, stream, w, rows, cols, x, n, y, accumulate);
    else
        SLM_LAUNCH_PDL((k_mmf<BF, 4>), dim3(gx, (unsigned)((n + 31) / 32)), MMF_THREADS, 0, stream, w, rows, cols, x, n, y,
                   accumulate);
    return slm_cuda_launched();
}

extern "C" int slm_cuda_mmf(uint32_t type, const void *w, int64_t rows, int64_t cols, const float *x, int n, float *y,
                            int accumulate, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(type == SLM_TYPE_F16 || type == SLM_TYPE_BF16);
    SLM_CUDA_ARG(rows >= 1 && rows <= INT32_MAX - 64 && cols >= 16 && cols % 16 == 0 && cols <= INT32_MAX);
    SLM_CUDA_ARG(n >= 1 && n <= SLM_CUDA_ACT_MAX_TOKENS);
    SLM_CUDA_DEVICE(w, (size_t)rows * (size_t)cols * 2);
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_DEVICE(y, (size_t)n * (size_t)rows * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(w, 4) && slm_cuda_aligned(x, 8) && slm_cuda_aligned(y, 4));
    if (type == SLM_TYPE_BF16)
        return mmf_launch<true>((const uint16_t *)w, (int)rows, (int)cols, x, n, y, accumulate, stream);
    return mmf_launch<false>((const uint16_t *)w, (int)rows, (int)cols, x, n, y, accumulate, stream);
}
