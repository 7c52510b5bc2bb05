/*
 * kernels/cuda/gemm.cu - the prefill / large-batch matmul: y (n, rows) (+)= x (n, cols) . W^T
 * as dequantized f16 tiles multiplied by cuBLAS.
 *
 * scratch = [x as f16 (n, cols)] [W tile as f16 (tile_rows, cols)], each 256-byte aligned.
 * x is converted once (dequant.cu, F32 -> F16); then for each tile of rows the tile is
 * dequantized (dequant.cu) and cublasGemmEx computes, column-major,
 *   Y[r0 .. r0 + tile_rows, 0 .. n) = Wtile (as cols x tile_rows, transposed) . X16 (cols x n)
 * with CUBLAS_COMPUTE_32F and an fp32 C (y seen column-major is (rows, n), ldc = rows).
 * Every call goes on `stream`, so the tile buffer is reused in order.
 */
#include <cublas_v2.h>

#include "kernels/cuda/launch.cuh"

#define GEMM_TILE_ALIGN_ROWS 64
#define GEMM_CUBLAS_ERROR_BASE 10000

static size_t align256(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

static size_t x16_bytes(int64_t cols, int n)
{
    return align256((size_t)n * (size_t)cols * 2);
}

extern "C" size_t slm_cuda_matmul_gemm_scratch(int64_t rows, int64_t cols, int n)
{
    return x16_bytes(cols, n) + align256((size_t)rows * (size_t)cols * 2);
}

extern "C" size_t slm_cuda_matmul_gemm_min_scratch(int64_t cols, int n)
{
    return x16_bytes(cols, n) + align256((size_t)GEMM_TILE_ALIGN_ROWS * (size_t)cols * 2);
}

static int cublas_result(cublasStatus_t st)
{
    if (st == CUBLAS_STATUS_SUCCESS) return 0;
    slm_cuda_record_error(GEMM_CUBLAS_ERROR_BASE + (int)st);
    return -EIO;
}

extern "C" int slm_cuda_matmul_gemm(struct cublasContext *cublas, uint32_t type, const void *w, int64_t rows,
                                    int64_t cols, const float *x, int n, float *y, int accumulate, void *scratch,
                                    size_t scratch_bytes, struct CUstream_st *stream)
{
    size_t row_bytes = slm_cuda_row_bytes(type, cols);
    SLM_CUDA_ARG(cublas != NULL && row_bytes != 0 && rows >= 1 && rows <= INT32_MAX && cols <= INT32_MAX && n >= 1);
    SLM_CUDA_ARG(slm_cuda_aligned(scratch, 256) && slm_cuda_aligned(y, 4));
    size_t xb = x16_bytes(cols, n);
    SLM_CUDA_ARG(scratch_bytes > xb);
    int64_t fit = (int64_t)((scratch_bytes - xb) / ((size_t)cols * 2));
    int64_t tile = fit >= rows ? rows : fit / GEMM_TILE_ALIGN_ROWS * GEMM_TILE_ALIGN_ROWS;
    SLM_CUDA_ARG(tile >= 1);
    SLM_CUDA_DEVICE(w, (size_t)rows * row_bytes);
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_DEVICE(y, (size_t)n * (size_t)rows * sizeof(float));
    SLM_CUDA_DEVICE(scratch, scratch_bytes);

    __half *x16 = (__half *)scratch;
    __half *w16 = (__half *)((char *)scratch + xb);
    int rc = slm_cuda_dequantize(SLM_TYPE_F32, x, n, cols, SLM_TYPE_F16, x16, cols, stream);
    if (rc) return rc;
    if ((rc = cublas_result(cublasSetStream(cublas, stream)))) return rc;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
        int64_t tr = rows - r0 < tile ? rows - r0 : tile;
        rc = slm_cuda_dequantize(type, (const char *)w + (size_t)r0 * row_bytes, tr, cols, SLM_TYPE_F16, w16, cols,
                                 stream);
        if (rc) return rc;
        rc = cublas_result(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)tr, n, (int)cols, &alpha, w16,
                                        CUDA_R_16F, (int)cols, x16, CUDA_R_16F, (int)cols, &beta, y + r0, CUDA_R_32F,
                                        (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        if (rc) return rc;
    }
    return 0;
}
