/* The cuBLAS stand-in: handles, streams and the GEMMs the backend calls, declared by
 * CUDA's own cublas_v2.h. Column-major as cuBLAS documents: C = alpha op(A) op(B) + beta C
 * with op(A) m x k, op(B) k x n, C m x n, element (i, j) of a matrix at [i + j * ld].
 * fp32, fp16 and bf16 inputs, fp32 accumulation in k order, host alpha / beta; C is not
 * read when beta is 0. Work runs on the handle's stream like any queued operation. */
#include "kernels/emu/runtime_internal.h"

#include <cublas_v2.h>

struct cublasContext {
    cudaStream_t stream;
};

namespace slm_emu {

static size_t type_size(cudaDataType t)
{
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_16F: return 2;
    case CUDA_R_16BF: return 2;
    default: return 0;
    }
}

static float load(const void *p, cudaDataType t, size_t i)
{
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    default: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    }
}

static void store(void *p, cudaDataType t, size_t i, float v)
{
    switch (t) {
    case CUDA_R_32F: ((float *)p)[i] = v; break;
    case CUDA_R_16F: ((__half *)p)[i] = __float2half_rn(v); break;
    default: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    }
}

struct gemm_args {
    cublasOperation_t ta, tb;
    int m, n, k;
    float alpha, beta;
    const void *a, *b;
    void *c;
    cudaDataType at, bt, ct;
    int lda, ldb, ldc;
    long long sa, sb, sc;
    int batch;
};

/* Elements a column-major rows x cols matrix with leading dimension ld spans. */
static size_t span(int rows, int cols, int ld) { return rows && cols ? (size_t)(cols - 1) * ld + rows : 0; }

static cublasStatus_t check_gemm(const gemm_args &g, const char *who)
{
    int arows = g.ta == CUBLAS_OP_N ? g.m : g.k, acols = g.ta == CUBLAS_OP_N ? g.k : g.m;
    int brows = g.tb == CUBLAS_OP_N ? g.k : g.n, bcols = g.tb == CUBLAS_OP_N ? g.n : g.k;
    if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0 || g.lda < std::max(1, arows) || g.ldb < std::max(1, brows) ||
        g.ldc < std::max(1, g.m) || !type_size(g.at) || !type_size(g.bt) || !type_size(g.ct) ||
        (g.ta != CUBLAS_OP_N && g.ta != CUBLAS_OP_T) || (g.tb != CUBLAS_OP_N && g.tb != CUBLAS_OP_T)) {
        report(format("%s: invalid arguments m=%d n=%d k=%d lda=%d ldb=%d ldc=%d or an unsupported type or op", who, g.m,
                      g.n, g.k, g.lda, g.ldb, g.ldc));
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!g.m || !g.n || !g.batch) return CUBLAS_STATUS_SUCCESS;
    size_t last = (size_t)(g.batch - 1);
    struct { const void *p; size_t bytes; const char *name; } m[3] = {
        {g.a, (last * g.sa + span(arows, acols, g.lda)) * type_size(g.at), "A"},
        {g.b, (last * g.sb + span(brows, bcols, g.ldb)) * type_size(g.bt), "B"},
        {g.c, (last * g.sc + span(g.m, g.n, g.ldc)) * type_size(g.ct), "C"},
    };
    for (int i = 0; i < 3; i++) {
        if (!m[i].bytes || (i < 2 && !g.k)) continue;
        if (check_device_range(m[i].p, m[i].bytes, who, m[i].name) != cudaSuccess) return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

static void run_gemm(const gemm_args &g)
{
    for (int bi = 0; bi < g.batch; bi++) {
        size_t oa = (size_t)bi * g.sa, ob = (size_t)bi * g.sb, oc = (size_t)bi * g.sc;
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) {
                float acc = 0.0f;
                for (int l = 0; l < g.k; l++) {
                    size_t ia = g.ta == CUBLAS_OP_N ? i + (size_t)l * g.lda : l + (size_t)i * g.lda;
                    size_t ib = g.tb == CUBLAS_OP_N ? l + (size_t)j * g.ldb : j + (size_t)l * g.ldb;
                    acc += load(g.a, g.at, oa + ia) * load(g.b, g.bt, ob + ib);
                }
                size_t ic = oc + i + (size_t)j * g.ldc;
                float v = g.alpha * acc;
                if (g.beta != 0.0f) v += g.beta * load(g.c, g.ct, ic);
                store(g.c, g.ct, ic, v);
            }
    }
}

static cublasStatus_t queue_gemm(cublasHandle_t h, const gemm_args &g, const char *who)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasStatus_t st = check_gemm(g, who);
    if (st != CUBLAS_STATUS_SUCCESS || !g.m || !g.n || !g.batch) return st;
    std::string name = who;
    cudaError_t err = submit(h->stream, [g, name]() {
        if (check_gemm(g, (name + " (queued)").c_str()) != CUBLAS_STATUS_SUCCESS) return cudaErrorInvalidValue;
        run_gemm(g);
        return cudaSuccess;
    });
    return err == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

static bool compute_ok(cublasComputeType_t c)
{
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_16F ||
           c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

} /* namespace slm_emu */

using namespace slm_emu;

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    *handle = new cublasContext{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    drain_stream(handle->stream);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t *stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS_UNKNOWN (emulator)";
    }
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                              const float *beta, float *C, int ldc)
{
    gemm_args g{transa, transb, m, n, k, *alpha, *beta, A, B, C, CUDA_R_32F, CUDA_R_32F, CUDA_R_32F,
                lda, ldb, ldc, 0, 0, 0, 1};
    return queue_gemm(handle, g, "cublasSgemm");
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    if (!compute_ok(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    gemm_args g{transa, transb, m, n, k, *(const float *)alpha, *(const float *)beta, A, B, C, Atype, Btype, Ctype,
                lda, ldb, ldc, 0, 0, 0, 1};
    return queue_gemm(handle, g, "cublasGemmEx");
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo)
{
    if (!compute_ok(computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
    gemm_args g{transa, transb, m, n, k, *(const float *)alpha, *(const float *)beta, A, B, C, Atype, Btype, Ctype,
                lda, ldb, ldc, strideA, strideB, strideC, batchCount};
    return queue_gemm(handle, g, "cublasGemmStridedBatchedEx");
}

} /* extern "C" */
