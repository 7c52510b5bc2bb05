/* The SIMT emulator, device side: what a CUDA kernel source needs to compile with the
 * host C++ compiler and run on the CPU. Kernels include kernels/cuda/compat.h, never this.
 *
 * Each CUDA thread of a block is a fiber; the fibers of a block share one OS thread, so
 * `__shared__` (static thread_local) is per block, and threadIdx is rewritten at every
 * switch. A fiber yields only inside the synchronising intrinsics below. */
#ifndef SLM_EMU_EMU_H
#define SLM_EMU_EMU_H

#if defined(__CUDACC__)
#error "kernels/emu/emu.h is for the host compiler; nvcc uses the real CUDA headers"
#endif

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/emu/emu_api.h"

/* The qualifiers: CUDA's host_defines.h already makes __global__, __device__, __host__
 * and __constant__ empty for a host compiler; shared storage is per OS thread. */
#undef __shared__
#define __shared__ static thread_local
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

/* __thread, not thread_local: an extern thread_local is reached through C++'s TLS wrapper
 * (a weak _ZTH init check before each access), and GCC 12's -fsanitize=null then tests the
 * address with the flags of that check: a false "member access within null pointer of type
 * 'struct uint3'" (seen in test_cuda_mma under UBSan; GCC's, cf. nim-lang/Nim#22641). The
 * variables have no dynamic initialisation, so __thread means the same, without the check. */
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread uint3 blockDim;
extern __thread uint3 gridDim;
static constexpr int warpSize = 32;

namespace slm_emu {

/* Warp collectives; every lane of `mask` must call the same one with the same mask. */
enum coll_op {
    COLL_SYNCWARP, COLL_SHFL_IDX, COLL_SHFL_UP, COLL_SHFL_DOWN, COLL_SHFL_XOR,
    COLL_BALLOT, COLL_ANY, COLL_ALL, COLL_MATCH_ANY,
    COLL_ADD, COLL_MIN_U, COLL_MAX_U, COLL_MIN_I, COLL_MAX_I, COLL_AND, COLL_OR, COLL_XOR,
};
/* Block barriers: plain, and the counting / and / or variants. */
enum bar_op { BAR_SYNC, BAR_COUNT, BAR_AND, BAR_OR };

/* Deposits this lane's `value` (and operand b, width) and returns its result once every
 * lane of mask has arrived, by the PTX rules of `op`. */
uint64_t warp_collective(int op, unsigned mask, uint64_t value, int b, int width,
                         const char *file, int line);
/* Waits until every live thread of the block has arrived; returns the count / and / or. */
int block_barrier(int op, int pred, const char *file, int line);
/* The block's dynamic shared memory (SLM_DYN_SHARED). */
void *dyn_shared(void);
/* slm_pdl_begin (compat.h): griddepcontrol.wait, then launch_dependents. Grids run one after
 * another here, so it waits for nothing; it books that this thread has passed it, which a
 * programmatic dependent launch requires of every thread (docs/emulator.md). */
void pdl_wait(void);
/* slm_prefetch_l2, slm_prefetch_l1 (compat.h; `what` names it): a hint that moves nothing here;
 * the address must lie in live device memory (the kernel fails otherwise, as a kernel that
 * computes a wrong one would have read the wrong bytes once it loaded them). */
void prefetch(const void *p, const char *what);

/* One launch as the runtime stand-in queues it. */
struct launch_desc {
    const char *name;
    dim3 grid, block;
    size_t smem;
    std::function<void()> body; /* one thread's run of the kernel, arguments bound */
    bool pdl = false;           /* a programmatic dependent launch (SLM_LAUNCH_PDL) */
    const void *fn = nullptr;   /* the kernel, as cudaFuncSetAttribute names it */
};
/* Checks the configuration and queues (or captures) the launch on `stream`; a bad
 * configuration becomes the thread's last CUDA error. */
void launch_queue(launch_desc desc, cudaStream_t stream);

/* `pdl`: launched as a programmatic dependent launch (it may start while the grid before it
 * drains; every thread must then call slm_pdl_begin before it touches device memory). */
template <class... P, class... A>
void launch_ex(bool pdl, const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
               cudaStream_t stream, A &&...args)
{
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    /* Arguments are converted and copied at launch, as CUDA does. */
    std::tuple<std::decay_t<P>...> bound(std::forward<A>(args)...);
    launch_desc d{name, grid, block, smem, [kernel, bound]() { std::apply(kernel, bound); }, pdl,
                  reinterpret_cast<const void *>(kernel)};
    launch_queue(std::move(d), stream);
}
template <class... P, class... A>
void launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, A &&...args)
{
    launch_ex(false, name, kernel, grid, block, smem, stream, std::forward<A>(args)...);
}

template <class T> static inline uint64_t to_bits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp collectives move values of at most 8 bytes");
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T> static inline T from_bits(uint64_t u)
{
    T v;
    std::memcpy((void *)&v, &u, sizeof(T));
    return v;
}

} /* namespace slm_emu */

/* ---- block barriers ---- */
static inline void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    slm_emu::block_barrier(slm_emu::BAR_SYNC, 0, file, line);
}
static inline int __syncthreads_count(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::block_barrier(slm_emu::BAR_COUNT, pred != 0, file, line);
}
static inline int __syncthreads_and(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::block_barrier(slm_emu::BAR_AND, pred != 0, file, line);
}
static inline int __syncthreads_or(int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::block_barrier(slm_emu::BAR_OR, pred != 0, file, line);
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* ---- warp collectives ---- */
static inline void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    slm_emu::warp_collective(slm_emu::COLL_SYNCWARP, mask, 0, 0, 32, file, line);
}
template <class T>
static inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,
                            const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::from_bits<T>(slm_emu::warp_collective(slm_emu::COLL_SHFL_IDX, mask, slm_emu::to_bits(var), srcLane, width, file, line));
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                               const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::from_bits<T>(slm_emu::warp_collective(slm_emu::COLL_SHFL_UP, mask, slm_emu::to_bits(var), (int)delta, width, file, line));
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                                 const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::from_bits<T>(slm_emu::warp_collective(slm_emu::COLL_SHFL_DOWN, mask, slm_emu::to_bits(var), (int)delta, width, file, line));
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                                const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return slm_emu::from_bits<T>(slm_emu::warp_collective(slm_emu::COLL_SHFL_XOR, mask, slm_emu::to_bits(var), laneMask, width, file, line));
}
static inline unsigned __ballot_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (unsigned)slm_emu::warp_collective(slm_emu::COLL_BALLOT, mask, pred != 0, 0, 32, file, line);
}
static inline int __any_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (int)slm_emu::warp_collective(slm_emu::COLL_ANY, mask, pred != 0, 0, 32, file, line);
}
static inline int __all_sync(unsigned mask, int pred, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (int)slm_emu::warp_collective(slm_emu::COLL_ALL, mask, pred != 0, 0, 32, file, line);
}
template <class T>
static inline unsigned __match_any_sync(unsigned mask, T value, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (unsigned)slm_emu::warp_collective(slm_emu::COLL_MATCH_ANY, mask, slm_emu::to_bits(value), 0, 32, file, line);
}

#define SLM_EMU_REDUCE(name, op_u, op_i)                                                            \
    static inline unsigned name(unsigned mask, unsigned v, const char *file = __builtin_FILE(),     \
                                int line = __builtin_LINE())                                        \
    {                                                                                               \
        return (unsigned)slm_emu::warp_collective(slm_emu::op_u, mask, v, 0, 32, file, line);       \
    }                                                                                               \
    static inline int name(unsigned mask, int v, const char *file = __builtin_FILE(),               \
                           int line = __builtin_LINE())                                             \
    {                                                                                               \
        return (int)(unsigned)slm_emu::warp_collective(slm_emu::op_i, mask, (unsigned)v, 0, 32,     \
                                                       file, line);                                 \
    }
SLM_EMU_REDUCE(__reduce_add_sync, COLL_ADD, COLL_ADD)
SLM_EMU_REDUCE(__reduce_min_sync, COLL_MIN_U, COLL_MIN_I)
SLM_EMU_REDUCE(__reduce_max_sync, COLL_MAX_U, COLL_MAX_I)
#undef SLM_EMU_REDUCE
static inline unsigned __reduce_and_sync(unsigned mask, unsigned v, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (unsigned)slm_emu::warp_collective(slm_emu::COLL_AND, mask, v, 0, 32, file, line);
}
static inline unsigned __reduce_or_sync(unsigned mask, unsigned v, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (unsigned)slm_emu::warp_collective(slm_emu::COLL_OR, mask, v, 0, 32, file, line);
}
static inline unsigned __reduce_xor_sync(unsigned mask, unsigned v, const char *file = __builtin_FILE(), int line = __builtin_LINE())
{
    return (unsigned)slm_emu::warp_collective(slm_emu::COLL_XOR, mask, v, 0, 32, file, line);
}

#include "kernels/emu/emu_math.h"

#endif
