/*
 * daemon/engine/backends/cuda_none.c - the CUDA backend of a build without CUDA: asked for a
 * device, it says this slmd has none (CMakeLists.txt links it when neither nvcc's kernels nor
 * the SIMT emulator are there; test_backend_none checks it).
 */
#include <errno.h>

#include "common/log.h"
#include "daemon/engine/backends/backend.h"

int slm_backend_cuda_devices(char *err)
{
    slm_err_set(err, "this slmd was built without the CUDA backend (no CUDA toolkit at build time)");
    return 0;
}

int slm_backend_cuda_emulated(void)
{
    return 0;
}

size_t slm_backend_cuda_kv_budget(struct slm_backend *be)
{
    return 0;
}

int slm_backend_cuda_graph_stats(struct slm_backend *be, struct slm_cuda_graph_stats *st)
{
    return -ENOTSUP;
}

struct slm_backend *slm_backend_cuda_create(int device, double gpu_memory_fraction, char *err)
{
    slm_backend_cuda_devices(err);
    return NULL;
}
