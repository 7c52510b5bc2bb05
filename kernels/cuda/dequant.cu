/*
 * kernels/cuda/dequant.cu - weight rows to f32 / f16 / bf16: the GEMM path's tile
 * dequantization and the embedding lookup.
 *
 * One thread per unit (qunits.cuh), 256 threads per block, grid-stride: thread g takes
 * unit g % units_per_row of output row g / units_per_row, so a warp reads consecutive
 * units of a row. A weight in GGUF's layout (slm_cuda_dequantize, slm_cuda_embed) or in the
 * device layout (slm_cuda_embed_device_layout: the units of quads and padded Q6_K blocks;
 * units at or past cols, in a row's last, partly filled quad, are skipped). The f32 values are slm_cpu_dequantize_row's bit for bit; f16 and bf16
 * are those rounded to nearest even (__float2half_rn, __float2bfloat16_rn).
 */
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/qunits.cuh"

#define DQ_THREADS 256
#define DQ_MAX_BLOCKS 65535

__device__ __forceinline__ void store_as(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_as(__half *p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_as(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* A unit's values: load_n with the blocks of its quad or tail for the device layout's 32-element
 * units, load for the others. */
template <class U>
__device__ __forceinline__ auto load_unit(const uint8_t *b, int u, float *w, int nin, int)
    -> decltype(U::load_n(b, u, w, nin))
{
    U::load_n(b, u, w, nin);
}
template <class U> __device__ __forceinline__ void load_unit(const uint8_t *b, int u, float *w, int, long)
{
    U::load(b, u, w);
}

/* out row i = source row ids[i] (or i without ids); an id outside [0, src_rows) gives NaN.
 * A row is row_bytes long; its block blk (ceil(cols / U::BLOCK_ELEMS) of them) starts at
 * blk * U::BLOCK_BYTES. */
template <class U, class O>
__global__ void __launch_bounds__(DQ_THREADS)
    k_dequant(const uint8_t *__restrict__ w, size_t row_bytes, int64_t src_rows, int cols,
              const int32_t *__restrict__ ids, int64_t out_rows, O *__restrict__ out, int64_t ld_out)
{
    slm_pdl_begin();
    const int blocks_per_row = (cols + U::BLOCK_ELEMS - 1) / U::BLOCK_ELEMS;
    const int64_t units_per_row = (int64_t)blocks_per_row * U::UNITS;
    const int64_t total = out_rows * units_per_row;
    for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total; g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = g / units_per_row;
        const int q = (int)(g % units_per_row), blk = q / U::UNITS, u = q % U::UNITS;
        if (blk * U::BLOCK_ELEMS + U::first(u) >= cols) continue;   /* past a row's tail */
        const int64_t src = ids ? (int64_t)ids[i] : i;
        float wv[U::RUNS * U::RUN_LEN];
        if (src >= 0 && src < src_rows) {
            load_unit<U>(w + (size_t)src * row_bytes + (size_t)blk * U::BLOCK_BYTES, u, wv,
                         min(4, cols / 32 - 4 * blk), 0);
        } else {
            for (int e = 0; e < U::RUNS * U::RUN_LEN; e++) wv[e] = __uint_as_float(0x7fc00000u);
        }
        O *o = out + i * ld_out + (int64_t)blk * U::BLOCK_ELEMS + U::first(u);
        SLM_UNROLL
        for (int r = 0; r < U::RUNS; r++) {
            SLM_UNROLL
            for (int l = 0; l < U::RUN_LEN; l++) store_as(o + r * U::RUN_STRIDE + l, wv[r * U::RUN_LEN + l]);
        }
    }
}

/* -------------------------------------------------------------------------------------- */

template <class U, class O>
static int launch_dequant_to(const void *w, size_t row_bytes, int64_t src_rows, int64_t cols, const int32_t *ids,
                             int64_t out_rows, O *out, int64_t ld_out, cudaStream_t stream)
{
    SLM_CUDA_ARG(slm_cuda_aligned(w, U::ALIGN));
    int64_t total = out_rows * ((cols + U::BLOCK_ELEMS - 1) / U::BLOCK_ELEMS) * U::UNITS;
    int64_t blocks = (total + DQ_THREADS - 1) / DQ_THREADS;
    if (blocks > DQ_MAX_BLOCKS) blocks = DQ_MAX_BLOCKS;
    SLM_LAUNCH_PDL((k_dequant<U, O>), (unsigned)blocks, DQ_THREADS, 0, stream, (const uint8_t *)w, row_bytes, src_rows, (int)cols,
               ids, out_rows, out, ld_out);
    return slm_cuda_launched();
}

template <class U>
static int launch_dequant(const void *w, size_t row_bytes, int64_t src_rows, int64_t cols, const int32_t *ids,
                          int64_t out_rows, uint32_t out_type, void *out, int64_t ld_out, cudaStream_t stream)
{
    switch (out_type) {
    case SLM_TYPE_F32:
        return launch_dequant_to<U>(w, row_bytes, src_rows, cols, ids, out_rows, (float *)out, ld_out, stream);
    case SLM_TYPE_F16:
        return launch_dequant_to<U>(w, row_bytes, src_rows, cols, ids, out_rows, (__half *)out, ld_out, stream);
    case SLM_TYPE_BF16:
        return launch_dequant_to<U>(w, row_bytes, src_rows, cols, ids, out_rows, (__nv_bfloat16 *)out, ld_out, stream);
    default: return -EINVAL;
    }
}

/* The checks and dispatch the launchers share; ids may be NULL (out row i = row i); w in GGUF's
 * layout, or in the device layout when device. */
static int dequant_rows(uint32_t type, bool device, const void *w, int64_t src_rows, int64_t cols,
                        const int32_t *ids, int64_t out_rows, uint32_t out_type, void *out, int64_t ld_out,
                        cudaStream_t stream)
{
    size_t row_bytes = device ? slm_cuda_device_row_bytes(type, cols) : slm_cuda_row_bytes(type, cols);
    size_t out_size = out_type == SLM_TYPE_F32 ? 4 : 2;
    SLM_CUDA_ARG(row_bytes != 0 && src_rows >= 1 && out_rows >= 1 && ld_out >= cols && cols <= INT32_MAX);
    SLM_CUDA_ARG(out_type == SLM_TYPE_F32 || out_type == SLM_TYPE_F16 || out_type == SLM_TYPE_BF16);
    SLM_CUDA_ARG(slm_cuda_aligned(out, out_size));
    SLM_CUDA_DEVICE(w, (size_t)src_rows * row_bytes);
    if (ids) SLM_CUDA_DEVICE(ids, (size_t)out_rows * sizeof(int32_t));
    SLM_CUDA_DEVICE(out, ((size_t)(out_rows - 1) * (size_t)ld_out + (size_t)cols) * out_size);
    if (device)
        SLM_CUDA_DISPATCH_DEVICE_UNIT(type, launch_dequant, w, row_bytes, src_rows, cols, ids, out_rows, out_type, out,
                                      ld_out, stream)
    bool vec = row_bytes % 16 == 0 && slm_cuda_aligned(w, 16);
    SLM_CUDA_DISPATCH_UNIT(type, vec, launch_dequant, w, row_bytes, src_rows, cols, ids, out_rows, out_type, out, ld_out,
                           stream)
}

extern "C" int slm_cuda_dequantize(uint32_t type, const void *w, int64_t rows, int64_t cols, uint32_t out_type,
                                   void *out, int64_t ld_out, struct CUstream_st *stream)
{
    return dequant_rows(type, false, w, rows, cols, NULL, rows, out_type, out, ld_out, stream);
}

extern "C" int slm_cuda_embed(uint32_t type, const void *table, int64_t rows, int64_t cols, const int32_t *ids,
                              int n, float *out, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(ids != NULL && n >= 1);
    return dequant_rows(type, false, table, rows, cols, ids, n, SLM_TYPE_F32, out, cols, stream);
}

extern "C" int slm_cuda_embed_device_layout(uint32_t type, const void *table, int64_t rows, int64_t cols,
                                            const int32_t *ids, int n, float *out, struct CUstream_st *stream)
{
    SLM_CUDA_ARG(ids != NULL && n >= 1);
    return dequant_rows(type, true, table, rows, cols, ids, n, SLM_TYPE_F32, out, cols, stream);
}
