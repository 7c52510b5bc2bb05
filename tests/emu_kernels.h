/* Launchers of the kernels in tests/emu_kernels.cu (built as CUDA by nvcc and as C++
 * against the SIMT emulator); each returns the launch's cudaGetLastError(). */
#ifndef SLM_TESTS_EMU_KERNELS_H
#define SLM_TESTS_EMU_KERNELS_H

#include "kernels/cuda/compat.h"

/* out[t * 4 + 0..3] = idx(src), up(delta), down(delta), xor(delta) shuffles of in[t] in
 * segments of `width`, full mask; one block of n threads. */
cudaError_t emu_test_shfl(const int *in, int *out, int n, int src, int delta, int width, cudaStream_t s);
/* Two halves of each warp run different collectives on their own half-warp masks:
 * lanes 0-15 xor-shuffle by 8 within 16, lanes 16-31 shuffle down by 1 (width 16). */
cudaError_t emu_test_shfl_halves(const int *in, int *out, int n, cudaStream_t s);
/* out[t * 8 + ...]: ballot, any, all on the odd / even lane masks, match_any on in[t] % 3,
 * __syncthreads_count / _and / _or of in[t] > 0, one block of n threads. */
cudaError_t emu_test_votes(const int *in, unsigned *out, int n, cudaStream_t s);
/* out[t * 9 + ...]: __reduce_add/min/max_sync of in[t] as int and as unsigned, and/or/xor. */
cudaError_t emu_test_reduce(const int *in, unsigned *out, int n, cudaStream_t s);
/* out[b] = sum of x[b * n .. b * n + n), a block per row, shared memory tree. */
cudaError_t emu_test_block_sum(const float *x, float *out, int rows, int n, int threads, cudaStream_t s);
/* y = W x, W (rows, cols) row-major, one warp per row, 4 warps per block. */
cudaError_t emu_test_gemv(const float *w, const float *x, float *y, int rows, int cols, cudaStream_t s);
/* Each block fills static shared memory with its index and checks it over several
 * barriers; bad[b] counts mismatches. */
cudaError_t emu_test_shared_isolation(int *bad, int blocks, cudaStream_t s);
/* Dynamic shared memory of n floats: poisoned[b] counts NaNs read before writing; out
 * gets x reversed within each block. */
cudaError_t emu_test_dyn_shared(const float *x, float *out, int *poisoned, int blocks, int n, cudaStream_t s);
/* The same kernel, one block of n threads, with `bytes` of dynamic shared memory; and its opt-in
 * to `bytes` (cudaFuncSetAttribute, cudaFuncAttributeMaxDynamicSharedMemorySize). */
cudaError_t emu_test_dyn_shared_bytes(const float *x, float *out, int *poisoned, int n, size_t bytes);
cudaError_t emu_test_dyn_shared_opt_in(int bytes);
/* Every thread of every block hits the same counters with each atomic. */
cudaError_t emu_test_atomics(int *i, unsigned *u, unsigned long long *ull, float *f, double *d, int blocks, cudaStream_t s);
/* out[0] = sum of x[0..32) by a warp-synchronous tree; `syncwarp` says whether the tree
 * has its __syncwarp calls (without them it is the classic race). */
cudaError_t emu_test_warp_tree(const float *x, float *out, int syncwarp, cudaStream_t s);
/* out[t] = x[t] + the neighbour's value in shared memory, with or without the barrier. */
cudaError_t emu_test_neighbour(const float *x, float *out, int n, int barrier, cudaStream_t s);
/* out[b] = x[b] + out[b - 1]: each block reads what another block writes. */
cudaError_t emu_test_block_chain(const float *x, float *out, int blocks, cudaStream_t s);
/* Half of each warp waits at __syncthreads, the other half in a full-mask shuffle. */
cudaError_t emu_test_deadlock(int *out, cudaStream_t s);
/* Threads past the first warp return before a __syncthreads the others wait at. */
cudaError_t emu_test_early_exit(int *out, cudaStream_t s);
/* y[i] = a * x[i] + y[i]; checks both pointers with slm_emu_check_device_ptr first. */
cudaError_t emu_test_axpy(float a, const float *x, float *y, int n, cudaStream_t s);
/* y = x + 1 through a programmatic dependent launch (SLM_LAUNCH_PDL): mode 0 prefetches x and
 * waits (slm_pdl_begin) before it reads, 1 writes y[0] before the wait, 2 never waits, 3
 * prefetches an address outside device memory, 4 reads x before the wait. */
cudaError_t emu_test_pdl(const float *x, float *y, int n, int mode, cudaStream_t s);

#endif
