/* Kernels for test_emu: compiled by nvcc for sm_90 (proof that they are real CUDA) and
 * as C++ against the SIMT emulator, where test_emu runs them. */
#include "tests/emu_kernels.h"

#define FULL 0xffffffffu

__global__ void k_shfl(const int *in, int *out, int src, int delta, int width)
{
    int t = threadIdx.x, v = in[t];
    out[t * 4 + 0] = __shfl_sync(FULL, v, src, width);
    out[t * 4 + 1] = __shfl_up_sync(FULL, v, (unsigned)delta, width);
    out[t * 4 + 2] = __shfl_down_sync(FULL, v, (unsigned)delta, width);
    out[t * 4 + 3] = __shfl_xor_sync(FULL, v, delta, width);
}

__global__ void k_shfl_halves(const int *in, int *out)
{
    int t = threadIdx.x, lane = t % 32, v = in[t];
    if (lane < 16) out[t] = __shfl_xor_sync(0x0000ffffu, v, 8, 16);
    else out[t] = __shfl_down_sync(0xffff0000u, v, 1, 16);
}

__global__ void k_votes(const int *in, unsigned *out)
{
    int t = threadIdx.x, lane = t % 32, v = in[t];
    unsigned mask = (lane & 1) ? 0xaaaaaaaau : 0x55555555u;
    unsigned *o = out + t * 8;
    o[0] = __ballot_sync(mask, v > 0);
    o[1] = (unsigned)__any_sync(mask, v > 5);
    o[2] = (unsigned)__all_sync(mask, v > -3);
    o[3] = __match_any_sync(FULL, v % 3);
    o[4] = (unsigned)__syncthreads_count(v > 0);
    o[5] = (unsigned)__syncthreads_and(v > -3);
    o[6] = (unsigned)__syncthreads_or(v > 5);
    o[7] = __ballot_sync(FULL, lane < 3);
}

__global__ void k_reduce(const int *in, unsigned *out)
{
    int t = threadIdx.x, v = in[t];
    unsigned u = (unsigned)v, *o = out + t * 9;
    o[0] = (unsigned)__reduce_add_sync(FULL, v);
    o[1] = (unsigned)__reduce_min_sync(FULL, v);
    o[2] = (unsigned)__reduce_max_sync(FULL, v);
    o[3] = __reduce_add_sync(FULL, u);
    o[4] = __reduce_min_sync(FULL, u);
    o[5] = __reduce_max_sync(FULL, u);
    o[6] = __reduce_and_sync(FULL, u);
    o[7] = __reduce_or_sync(FULL, u);
    o[8] = __reduce_xor_sync(FULL, u);
}

__global__ void k_block_sum(const float *x, float *out, int n)
{
    SLM_DYN_SHARED(float, s);
    int t = threadIdx.x;
    float v = 0.0f;
    for (int i = t; i < n; i += blockDim.x) v += x[(size_t)blockIdx.x * n + i];
    s[t] = v;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if (t < h) s[t] += s[t + h];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

__global__ void k_gemv(const float *w, const float *x, float *y, int rows, int cols)
{
    int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    float acc = 0.0f;
    for (int c = lane; c < cols; c += 32) acc += w[(size_t)row * cols + c] * x[c];
    for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(FULL, acc, o);
    if (lane == 0) y[row] = acc;
}

__global__ void k_shared_isolation(int *bad)
{
    __shared__ int s[128];
    int t = threadIdx.x, wrong = 0;
    for (int round = 0; round < 8; round++) {
        s[t] = (int)blockIdx.x * 1000 + round;
        __syncthreads();
        for (int i = 0; i < 128; i++) wrong += s[i] != (int)blockIdx.x * 1000 + round;
        __syncthreads();
    }
    atomicAdd(&bad[blockIdx.x], wrong);
}

__global__ void k_dyn_shared(const float *x, float *out, int *poisoned, int n)
{
    SLM_DYN_SHARED(float, s);
    int t = threadIdx.x;
    if (s[t] != s[t]) atomicAdd(&poisoned[blockIdx.x], 1);
    __syncthreads();
    s[t] = x[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

__global__ void k_atomics(int *i, unsigned *u, unsigned long long *ull, float *f, double *d)
{
    int t = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    atomicAdd(&i[0], 1);
    atomicSub(&i[1], 2);
    atomicMax(&i[2], t);
    atomicMin(&i[3], -t);
    atomicAdd(&u[0], 3u);
    atomicOr(&u[1], 1u << (t % 32));
    atomicXor(&u[2], (unsigned)t);
    atomicAnd(&u[3], ~(1u << (t % 32)));
    atomicMax(&u[4], (unsigned)t);
    atomicExch(&u[5], 7u);
    atomicAdd(&ull[0], 1ull << 33);
    unsigned long long old = ull[1], seen;
    do {
        seen = old;
        old = atomicCAS(&ull[1], seen, seen + 1);
    } while (old != seen);
    atomicAdd(&f[0], 1.0f);
    atomicAdd(&d[0], 0.5);
}

/* The two racy kernels: one on dynamic shared memory (poisoned for each block), one on
 * static shared memory (zeroed for each race-check run). */
__global__ void k_warp_tree(const float *x, float *out, int syncwarp)
{
    SLM_DYN_SHARED(float, s);
    int t = threadIdx.x;
    s[t] = x[t];
    if (syncwarp) __syncwarp();
    for (int h = 16; h > 0; h /= 2) {
        float v = t < h ? s[t + h] : 0.0f;
        if (syncwarp) __syncwarp();
        if (t < h) s[t] += v;
        if (syncwarp) __syncwarp();
    }
    if (t == 0) out[0] = s[0];
}

__global__ void k_neighbour(const float *x, float *out, int n, int barrier)
{
    __shared__ float s[256];
    int t = threadIdx.x;
    s[t] = x[t];
    if (barrier) __syncthreads();
    out[t] = x[t] + s[(t + 1) % n];
}

/* A prefix sum across blocks that reads the previous block's output: blocks race. */
__global__ void k_block_chain(const float *x, float *out)
{
    if (threadIdx.x == 0) out[blockIdx.x] = x[blockIdx.x] + (blockIdx.x > 0 ? out[blockIdx.x - 1] : 0.0f);
}

__global__ void k_deadlock(int *out)
{
    int lane = threadIdx.x % 32, v = lane;
    if (lane < 16) __syncthreads();
    else v = __shfl_sync(FULL, v, 0);
    out[threadIdx.x] = v;
}

__global__ void k_early_exit(int *out)
{
    if (threadIdx.x >= 32) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void k_axpy(float a, const float *x, float *y, int n)
{
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = a * x[i] + y[i];
}

/* A programmatic dependent launch's kernel (compat.h): y = x + 1 after slm_pdl_begin (mode 0,
 * with an L2 prefetch of x's line before it); mode 1 first writes y[0] before it (a write that
 * could race with the grid before); mode 2 never calls it; mode 3 prefetches an address that is
 * no device memory, mode 5 the same through the L1 prefetch; mode 4 reads x before it (right only
 * when no grid of its programmatic chain wrote x). */
__global__ void k_pdl(const float *x, float *y, int n, int mode)
{
    int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (mode == 0 && i < n) slm_prefetch_l2(x + i);
    if (mode == 3) slm_prefetch_l2(reinterpret_cast<const char *>(64));
    if (mode == 5) slm_prefetch_l1(reinterpret_cast<const char *>(64));
    if (mode == 1 && i == 0) y[0] = -1.0f;
    const float early = mode == 4 && i < n ? x[i] : 0.0f;
    if (mode != 2) slm_pdl_begin();
    if (i < n) y[i] = (mode == 4 ? early : x[i]) + 1.0f;
}

/* ---------------------------------------------------------------- launchers ---- */

cudaError_t emu_test_shfl(const int *in, int *out, int n, int src, int delta, int width, cudaStream_t s)
{
    SLM_LAUNCH(k_shfl, 1, n, 0, s, in, out, src, delta, width);
    return cudaGetLastError();
}

cudaError_t emu_test_shfl_halves(const int *in, int *out, int n, cudaStream_t s)
{
    SLM_LAUNCH(k_shfl_halves, 1, n, 0, s, in, out);
    return cudaGetLastError();
}

cudaError_t emu_test_votes(const int *in, unsigned *out, int n, cudaStream_t s)
{
    SLM_LAUNCH(k_votes, 1, n, 0, s, in, out);
    return cudaGetLastError();
}

cudaError_t emu_test_reduce(const int *in, unsigned *out, int n, cudaStream_t s)
{
    SLM_LAUNCH(k_reduce, 1, n, 0, s, in, out);
    return cudaGetLastError();
}

cudaError_t emu_test_block_sum(const float *x, float *out, int rows, int n, int threads, cudaStream_t s)
{
    SLM_LAUNCH(k_block_sum, rows, threads, threads * sizeof(float), s, x, out, n);
    return cudaGetLastError();
}

cudaError_t emu_test_gemv(const float *w, const float *x, float *y, int rows, int cols, cudaStream_t s)
{
    SLM_LAUNCH(k_gemv, (rows + 3) / 4, 128, 0, s, w, x, y, rows, cols);
    return cudaGetLastError();
}

cudaError_t emu_test_shared_isolation(int *bad, int blocks, cudaStream_t s)
{
    SLM_LAUNCH(k_shared_isolation, blocks, 128, 0, s, bad);
    return cudaGetLastError();
}

cudaError_t emu_test_dyn_shared(const float *x, float *out, int *poisoned, int blocks, int n, cudaStream_t s)
{
    SLM_LAUNCH(k_dyn_shared, blocks, n, n * sizeof(float), s, x, out, poisoned, n);
    return cudaGetLastError();
}

cudaError_t emu_test_dyn_shared_bytes(const float *x, float *out, int *poisoned, int n, size_t bytes)
{
    SLM_LAUNCH(k_dyn_shared, 1, n, bytes, nullptr, x, out, poisoned, n);
    return cudaGetLastError();
}

cudaError_t emu_test_dyn_shared_opt_in(int bytes)
{
    return cudaFuncSetAttribute((const void *)k_dyn_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

cudaError_t emu_test_atomics(int *i, unsigned *u, unsigned long long *ull, float *f, double *d, int blocks, cudaStream_t s)
{
    SLM_LAUNCH(k_atomics, blocks, 64, 0, s, i, u, ull, f, d);
    return cudaGetLastError();
}

cudaError_t emu_test_warp_tree(const float *x, float *out, int syncwarp, cudaStream_t s)
{
    SLM_LAUNCH(k_warp_tree, 1, 32, 32 * sizeof(float), s, x, out, syncwarp);
    return cudaGetLastError();
}

cudaError_t emu_test_neighbour(const float *x, float *out, int n, int barrier, cudaStream_t s)
{
    SLM_LAUNCH(k_neighbour, 1, n, 0, s, x, out, n, barrier);
    return cudaGetLastError();
}

cudaError_t emu_test_block_chain(const float *x, float *out, int blocks, cudaStream_t s)
{
    SLM_LAUNCH(k_block_chain, blocks, 32, 0, s, x, out);
    return cudaGetLastError();
}

cudaError_t emu_test_deadlock(int *out, cudaStream_t s)
{
    SLM_LAUNCH(k_deadlock, 2, 64, 0, s, out);
    return cudaGetLastError();
}

cudaError_t emu_test_early_exit(int *out, cudaStream_t s)
{
    SLM_LAUNCH(k_early_exit, 1, 64, 0, s, out);
    return cudaGetLastError();
}

cudaError_t emu_test_axpy(float a, const float *x, float *y, int n, cudaStream_t s)
{
    if (slm_emu_check_device_ptr(x, n * sizeof(float), "x") || slm_emu_check_device_ptr(y, n * sizeof(float), "y"))
        return cudaErrorInvalidValue;
    SLM_LAUNCH(k_axpy, (n + 127) / 128, 128, 0, s, a, x, y, n);
    return cudaGetLastError();
}

cudaError_t emu_test_pdl(const float *x, float *y, int n, int mode, cudaStream_t s)
{
    SLM_LAUNCH_PDL(k_pdl, (n + 127) / 128, 128, 0, s, x, y, n, mode);
    return cudaGetLastError();
}
