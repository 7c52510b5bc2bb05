/*
 * kernels/cuda/launch.cuh - what every launcher of kernels/cuda shares: argument checks
 * and the one error convention of kernels.h (0, -EINVAL, -EIO with the CUDA error kept).
 */
#ifndef SLM_KERNELS_CUDA_LAUNCH_CUH
#define SLM_KERNELS_CUDA_LAUNCH_CUH

#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/compat.h"
#include "kernels/cuda/kernels.h"
#include "kernels/quant.h"

/* Keeps `code` as the calling thread's slm_cuda_last_error() (common.cu). */
void slm_cuda_record_error(int code);

/* 0 if the launch just queued was accepted, else -EIO with its error kept. */
static inline int slm_cuda_launched(void)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    slm_cuda_record_error((int)e);
    return -EIO;
}

static inline bool slm_cuda_aligned(const void *p, uintptr_t a)
{
    return ((uintptr_t)p & (a - 1)) == 0;
}

/* SLM_LAUNCH_PDL of a kernel that may take more dynamic shared memory than the default (at most
 * max_smem bytes), after its opt-in (slm_cuda_smem_opt_in); 0, or -EIO when the opt-in failed or
 * smem passes max_smem (then nothing is launched). The launch's own error is
 * slm_cuda_launched()'s, as ever. */
#define SLM_LAUNCH_PDL_SMEM(kernel, max_smem, grid, block, smem, stream, ...)                                \
    (slm_cuda_smem_opt_in((const void *)(kernel), (size_t)(smem), (size_t)(max_smem))                      \
         ? -EIO                                                                                             \
         : (SLM_LAUNCH_PDL(kernel, grid, block, smem, stream, __VA_ARGS__), 0))

/* The same for a kernel held in a variable, named for the emulator's launch log (SLM_LAUNCH_PDL_AS). */
#define SLM_LAUNCH_PDL_SMEM_AS(name, kernel, max_smem, grid, block, smem, stream, ...)                    \
    (slm_cuda_smem_opt_in((const void *)(kernel), (size_t)(smem), (size_t)(max_smem))                      \
         ? -EIO                                                                                             \
         : (SLM_LAUNCH_PDL_AS(name, kernel, grid, block, smem, stream, __VA_ARGS__), 0))

/* In a launcher: a false condition is a bad argument. */
#define SLM_CUDA_ARG(cond)                  \
    do {                                    \
        if (!(cond)) return -EINVAL;        \
    } while (0)

/* In a launcher: p must be device memory of at least `bytes` (checked under emulation
 * only). The emulator also makes a failed check the thread's last CUDA error; it is taken
 * back here, so that a refused call leaves nothing for the next launch to trip on. */
#define SLM_CUDA_DEVICE(p, bytes)                                                 \
    do {                                                                          \
        if ((p) == NULL) return -EINVAL;                                          \
        if (slm_emu_check_device_ptr((p), (bytes), #p)) {                         \
            (void)cudaGetLastError();                                             \
            return -EINVAL;                                                       \
        }                                                                         \
    } while (0)

#endif
