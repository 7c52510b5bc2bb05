/* The one header CUDA kernel sources include. Under nvcc it is plain CUDA; under the host
 * C++ compiler the same sources build against the SIMT emulator (kernels/emu/), which
 * runs the grid on the CPU, so kernels can be tested without a GPU.
 *
 * SLM_LAUNCH(kernel, grid, block, smem, stream, args...) launches; parenthesise a
 * template kernel: SLM_LAUNCH((k<float, 4>), ...). SLM_DYN_SHARED(T, name) declares the
 * block's dynamic shared memory as `T *name` (use it instead of extern __shared__).
 * slm_emu_check_device_ptr(p, bytes, what) lets a launcher check that a pointer is live
 * device memory under emulation (cudaSuccess under nvcc, where it costs nothing). */
#ifndef SLM_CUDA_COMPAT_H
#define SLM_CUDA_COMPAT_H

#if defined(__CUDACC__)

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define SLM_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define SLM_DYN_SHARED(T, name) extern __shared__ T name[]
#define SLM_EMULATED 0

static inline int slm_emu_check_device_ptr(const void *p, size_t bytes, const char *what)
{
    (void)p, (void)bytes, (void)what;
    return 0;
}

#else

#include "kernels/emu/emu.h"

#define SLM_LAUNCH(kernel, grid, block, smem, stream, ...) \
    slm_emu::launch(#kernel, kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), ##__VA_ARGS__)
#define SLM_DYN_SHARED(T, name) T *name = static_cast<T *>(slm_emu::dyn_shared())
#define SLM_EMULATED 1

#endif

#endif
