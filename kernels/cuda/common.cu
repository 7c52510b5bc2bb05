/* kernels/cuda/common.cu - the launchers' shared state: the last CUDA error, row sizes. */
#include "kernels/cuda/launch.cuh"

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
