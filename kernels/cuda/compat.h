/* The one header CUDA kernel sources include. Under nvcc it is plain CUDA; under the host
 * C++ compiler the same sources build against the SIMT emulator (kernels/emu/), which
 * runs the grid on the CPU, so kernels can be tested without a GPU.
 *
 * SLM_LAUNCH(kernel, grid, block, smem, stream, args...) launches; parenthesise a
 * template kernel: SLM_LAUNCH((k<float, 4>), ...). SLM_DYN_SHARED(T, name) declares the
 * block's dynamic shared memory as `T *name` (use it instead of extern __shared__).
 * slm_emu_check_device_ptr(p, bytes, what) lets a launcher check that a pointer is live
 * device memory under emulation (cudaSuccess under nvcc, where it costs nothing).
 *
 * Programmatic dependent launch (sm_90; docs/cuda.md, "Programmatic dependent launch"):
 * SLM_LAUNCH_PDL(...) launches like SLM_LAUNCH, but lets the grid start while the grid before it
 * in the stream drains, when slm_cuda_pdl_launches() says so (a Hopper or later device, unless
 * slm_cuda_set_pdl turned it off). Such a kernel's every thread calls slm_pdl_begin() first,
 * before it reads or writes any device memory: it waits until the grid before it has finished
 * and its writes are visible (griddepcontrol.wait), then lets the next grid launch
 * (griddepcontrol.launch_dependents). What a grid overlaps is then only the next grid's launch
 * and the instructions before its wait, which touch no memory: the same results as one grid
 * after another. The emulator fails a programmatic launch whose thread ends without the call,
 * and, when its launch log measures bytes, one that touches a page before it; the sm_90 machine
 * code is checked for memory operations before the wait by bench/gpu/sass-mix.sh --check. */
#ifndef SLM_CUDA_COMPAT_H
#define SLM_CUDA_COMPAT_H

/* 1 when SLM_LAUNCH_PDL launches programmatically (kernels.h, kernels/cuda/common.cu). */
extern "C" int slm_cuda_pdl_launches(void);

#if defined(__CUDACC__)

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <utility>

#define SLM_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define SLM_DYN_SHARED(T, name) extern __shared__ T name[]
#define SLM_EMULATED 0

static __device__ __forceinline__ void slm_pdl_begin(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Asks L2 to fetch the 128-byte line holding p (prefetch.global.L2): a hint, which moves no
 * data into the thread and cannot change a result (L2 is where the GPU's global memory is
 * coherent), so a kernel may issue it before slm_pdl_begin for memory it will read later. */
static __device__ __forceinline__ void slm_prefetch_l2(const void *p)
{
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

/* Asks the SM's L1 to fetch the 128-byte line holding p (prefetch.global.L1, through L2). L1 is
 * not coherent, so before slm_pdl_begin only for memory nothing writes during the step: the
 * weights. */
static __device__ __forceinline__ void slm_prefetch_l1(const void *p)
{
    asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}

template <class... P, class... A>
static inline void slm_launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                  A &&...args)
{
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = slm_cuda_pdl_launches() ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);   /* an error stays cudaGetLastError's */
}
#define SLM_LAUNCH_PDL(kernel, grid, block, smem, stream, ...) \
    slm_launch_pdl(kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), __VA_ARGS__)
/* SLM_LAUNCH_PDL of a kernel held in a variable, named for the emulator's launch log. */
#define SLM_LAUNCH_PDL_AS(name, kernel, grid, block, smem, stream, ...) \
    ((void)(name), slm_launch_pdl(kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), __VA_ARGS__))

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

static inline void slm_pdl_begin(void)
{
    slm_emu::pdl_wait();
}

static inline void slm_prefetch_l2(const void *p)
{
    slm_emu::prefetch(p, "slm_prefetch_l2");
}

static inline void slm_prefetch_l1(const void *p)
{
    slm_emu::prefetch(p, "slm_prefetch_l1");
}

#define SLM_LAUNCH_PDL(kernel, grid, block, smem, stream, ...)                                            \
    slm_emu::launch_ex(slm_cuda_pdl_launches() != 0, #kernel, kernel, dim3(grid), dim3(block), (size_t)(smem), \
                       (stream), ##__VA_ARGS__)
#define SLM_LAUNCH_PDL_AS(name, kernel, grid, block, smem, stream, ...)                                   \
    slm_emu::launch_ex(slm_cuda_pdl_launches() != 0, name, kernel, dim3(grid), dim3(block), (size_t)(smem), \
                       (stream), ##__VA_ARGS__)

#endif

#endif
