/* tests/cuda_mma_kernels.h - launchers of tests/cuda_mma_kernels.cu (test_cuda_mma): each warp w of a
 * 2-warp block multiplies tile w of a, b and c through one instruction of kernels/cuda/mma.cuh
 * and stores d. a: (tiles, 16, K) row-major; b: (tiles, 8, K), column n's K values contiguous;
 * c, d: (tiles, 16, 8) row-major. */
#ifndef SLM_TESTS_CUDA_MMA_KERNELS_H
#define SLM_TESTS_CUDA_MMA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
int mma_test_s8_k32(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles);
int mma_test_s8_k16(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles);
int mma_test_f16_k16(const uint16_t *a, const uint16_t *b, const float *c, float *d, int tiles);
int mma_test_bf16_k16(const uint16_t *a, const uint16_t *b, const float *c, float *d, int tiles);
/* f[i] = slm_mma::dot_float(DOT_BIAS + v[i]), or small_float(v[i]) when small */
int mma_test_s32_float(const int *v, float *f, int n, int small);
#ifdef __cplusplus
}
#endif

#endif
