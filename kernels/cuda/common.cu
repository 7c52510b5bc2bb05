/* kernels/cuda/common.cu - the launchers' shared state: the last CUDA error, row sizes, whether
 * launches are programmatic. */
#include "kernels/cuda/launch.cuh"

#include <atomic>
#include <errno.h>
#include <mutex>
#include <stdio.h>
#include <unordered_map>

static thread_local int last_error;

void slm_cuda_record_error(int code)
{
    last_error = code;
}

extern "C" int slm_cuda_last_error(void)
{
    return last_error;
}

extern "C" size_t slm_cuda_row_bytes(uint32_t type, int64_t cols)
{
    uint32_t be = slm_qblock_elems(type);
    if (!slm_qtype_is_weight(type) || cols <= 0 || cols % be != 0) return 0;
    return (size_t)(cols / be) * slm_qblock_bytes(type);
}

/* The kernels that opted in, and to how many bytes (a few dozen instances at most). */
static std::mutex opt_in_mu;
static std::unordered_map<const void *, size_t> *opt_in;

extern "C" int slm_cuda_smem_opt_in(const void *kernel, size_t bytes, size_t max_bytes)
{
    if (bytes <= SLM_CUDA_DYN_SHARED_DEFAULT) return 0;
    if (!kernel || bytes > max_bytes || max_bytes > INT32_MAX) return -EINVAL;
    std::lock_guard<std::mutex> lock(opt_in_mu);
    if (!opt_in) opt_in = new std::unordered_map<const void *, size_t>();
    auto it = opt_in->find(kernel);
    if (it != opt_in->end() && it->second >= bytes) return 0;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_bytes) != cudaSuccess)
        return slm_cuda_launched();
    (*opt_in)[kernel] = max_bytes;
    return 0;
}

/* -1 until the first launch asks (then 1 on a device of compute capability 9.0 or more), or what
 * slm_cuda_set_pdl forced. */
static std::atomic<int> pdl_mode{-1};

extern "C" void slm_cuda_set_pdl(int mode)
{
    pdl_mode.store(mode < 0 ? -1 : mode != 0);
}

extern "C" int slm_cuda_pdl_launches(void)
{
    int m = pdl_mode.load(std::memory_order_relaxed);
    if (m >= 0) return m;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();   /* the launch that asked reports the device's trouble itself */
        return 0;
    }
    m = major >= 9;
    int expected = -1;
    pdl_mode.compare_exchange_strong(expected, m);
    return pdl_mode.load();
}

/* The probe's kernel: one more launch counted, after the wait. */
__global__ void k_pdl_probe(int *count)
{
    slm_pdl_begin();
    if (threadIdx.x == 0) *count += 1;
}

extern "C" int slm_cuda_pdl_probe(cudaStream_t stream, char *why, size_t len)
{
    if (!slm_cuda_pdl_launches()) return 0;
    int *d = NULL, got = 0;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    const char *step = "cudaMalloc";
    cudaError_t e = cudaMalloc((void **)&d, sizeof *d);
    if (e == cudaSuccess) step = "cudaMemsetAsync", e = cudaMemsetAsync(d, 0, sizeof *d, stream);
    if (e == cudaSuccess) {
        step = "a programmatic launch";
        SLM_LAUNCH_PDL(k_pdl_probe, 1, 32, 0, stream, d);
        SLM_LAUNCH_PDL(k_pdl_probe, 1, 32, 0, stream, d);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) step = "cudaStreamBeginCapture", e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
        step = "a programmatic launch into a graph";
        SLM_LAUNCH_PDL(k_pdl_probe, 1, 32, 0, stream, d);
        SLM_LAUNCH_PDL(k_pdl_probe, 1, 32, 0, stream, d);
        e = cudaGetLastError();
        const cudaError_t end = cudaStreamEndCapture(stream, &graph);
        if (e == cudaSuccess) step = "cudaStreamEndCapture", e = end;
    }
    if (e == cudaSuccess) step = "cudaGraphInstantiate", e = cudaGraphInstantiate(&exec, graph, 0);
    if (e == cudaSuccess) step = "cudaGraphLaunch", e = cudaGraphLaunch(exec, stream);
    if (e == cudaSuccess) step = "cudaMemcpyAsync", e = cudaMemcpyAsync(&got, d, sizeof got, cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) step = "cudaStreamSynchronize", e = cudaStreamSynchronize(stream);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (d) cudaFree(d);
    (void)cudaGetLastError();
    if (e != cudaSuccess) {
        snprintf(why, len, "%s: %s", step, cudaGetErrorName(e));
        return -EIO;
    }
    if (got != 4) {
        snprintf(why, len, "4 programmatic launches counted %d", got);
        return -EIO;
    }
    return 0;
}
