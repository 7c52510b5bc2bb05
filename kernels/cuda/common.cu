/* kernels/cuda/common.cu - the launchers' shared state: the last CUDA error, row sizes, whether
 * launches are programmatic. */
#include "kernels/cuda/launch.cuh"

#include <atomic>

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
