/* Kernels for test_cuda_mma: each lane gathers its fragment elements one by one from the PTX
 * ISA's per-element tables (row and column of a_i, b_i, c_i), independently of how the twins
 * in kernels/cuda/mma.cuh index their registers. Compiled by nvcc (test_cuda_mma_gpu runs the
 * real instructions) and as C++ against the SIMT emulator (test_cuda_mma runs the twins). */
#include "kernels/cuda/mma.cuh"
#include "tests/cuda_mma_kernels.h"

#define TILES_A_BLOCK 2

/* c / d element i of this lane: row g + 8 (i >= 2), column 2t + (i & 1) */
__device__ static int cd_index(int lane, int i) { return (lane / 4 + 8 * (i / 2)) * 8 + 2 * (lane % 4) + (i % 2); }

__global__ void k_mma_s8_k32(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles)
{
    const int tile = blockIdx.x * TILES_A_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (tile >= tiles) return;   /* the whole warp leaves together */
    const int8_t *ta = a + (size_t)tile * 16 * 32, *tb = b + (size_t)tile * 8 * 32;
    int fa[4] = {0, 0, 0, 0}, fb[2] = {0, 0}, fc[4], fd[4];
    for (int i = 0; i < 16; i++) {   /* a_i: row g (i < 4 or 8 <= i < 12) else g + 8; col 4t + i % 4 (+16 for i >= 8) */
        const int row = (i < 4 || (i >= 8 && i < 12)) ? g : g + 8, col = 4 * t + (i & 3) + (i >= 8 ? 16 : 0);
        fa[i / 4] |= (int)((uint32_t)(uint8_t)ta[row * 32 + col] << (8 * (i % 4)));
    }
    for (int i = 0; i < 8; i++) {    /* b_i: k 4t + i % 4 (+16 for i >= 4), column g */
        const int k = 4 * t + (i & 3) + (i >= 4 ? 16 : 0);
        fb[i / 4] |= (int)((uint32_t)(uint8_t)tb[g * 32 + k] << (8 * (i % 4)));
    }
    for (int i = 0; i < 4; i++) fc[i] = c[(size_t)tile * 128 + cd_index(lane, i)];
    slm_mma::mma_s8_k32(fd, fa, fb, fc);
    for (int i = 0; i < 4; i++) d[(size_t)tile * 128 + cd_index(lane, i)] = fd[i];
}

__global__ void k_mma_s8_k16(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles)
{
    const int tile = blockIdx.x * TILES_A_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (tile >= tiles) return;
    const int8_t *ta = a + (size_t)tile * 16 * 16, *tb = b + (size_t)tile * 8 * 16;
    int fa[2] = {0, 0}, fb = 0, fc[4], fd[4];
    for (int i = 0; i < 8; i++) {    /* a_i: row g (i < 4) else g + 8; col 4t + i % 4 */
        const int row = i < 4 ? g : g + 8, col = 4 * t + (i & 3);
        fa[i / 4] |= (int)((uint32_t)(uint8_t)ta[row * 16 + col] << (8 * (i % 4)));
    }
    for (int i = 0; i < 4; i++) fb |= (int)((uint32_t)(uint8_t)tb[g * 16 + 4 * t + i] << (8 * i));
    for (int i = 0; i < 4; i++) fc[i] = c[(size_t)tile * 128 + cd_index(lane, i)];
    slm_mma::mma_s8_k16(fd, fa, fb, fc);
    for (int i = 0; i < 4; i++) d[(size_t)tile * 128 + cd_index(lane, i)] = fd[i];
}

template <bool BF>
__global__ void k_mma_16bit_k16(const uint16_t *a, const uint16_t *b, const float *c, float *d, int tiles)
{
    const int tile = blockIdx.x * TILES_A_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    if (tile >= tiles) return;
    const uint16_t *ta = a + (size_t)tile * 16 * 16, *tb = b + (size_t)tile * 8 * 16;
    uint32_t fa[4] = {0, 0, 0, 0}, fb[2] = {0, 0};
    float fc[4], fd[4];
    for (int i = 0; i < 8; i++) {    /* a_i: row g for i in {0,1,4,5} else g + 8; col 2t + i % 2 (+8 for i >= 4) */
        const int row = (i % 4) < 2 ? g : g + 8, col = 2 * t + (i & 1) + (i >= 4 ? 8 : 0);
        fa[i / 2] |= (uint32_t)ta[row * 16 + col] << (16 * (i % 2));
    }
    for (int i = 0; i < 4; i++) {    /* b_i: k 2t + i % 2 (+8 for i >= 2), column g */
        const int k = 2 * t + (i & 1) + (i >= 2 ? 8 : 0);
        fb[i / 2] |= (uint32_t)tb[g * 16 + k] << (16 * (i % 2));
    }
    for (int i = 0; i < 4; i++) fc[i] = c[(size_t)tile * 128 + cd_index(lane, i)];
    if (BF) slm_mma::mma_bf16_k16(fd, fa, fb, fc);
    else slm_mma::mma_f16_k16(fd, fa, fb, fc);
    for (int i = 0; i < 4; i++) d[(size_t)tile * 128 + cd_index(lane, i)] = fd[i];
}

/* f[i]: slm_mma::dot_float(DOT_BIAS + v[i]), or small_float(v[i]) when small */
__global__ void k_s32_float(const int *v, float *f, int n, int small)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) f[i] = small ? slm_mma::small_float((uint32_t)v[i]) : slm_mma::dot_float(slm_mma::DOT_BIAS + v[i]);
}

static int done(void) { return cudaGetLastError() == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess ? 0 : -1; }

static unsigned grid_of(int tiles) { return (unsigned)((tiles + TILES_A_BLOCK - 1) / TILES_A_BLOCK); }

extern "C" int mma_test_s8_k32(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles)
{
    SLM_LAUNCH(k_mma_s8_k32, grid_of(tiles), 32 * TILES_A_BLOCK, 0, 0, a, b, c, d, tiles);
    return done();
}

extern "C" int mma_test_s8_k16(const int8_t *a, const int8_t *b, const int *c, int *d, int tiles)
{
    SLM_LAUNCH(k_mma_s8_k16, grid_of(tiles), 32 * TILES_A_BLOCK, 0, 0, a, b, c, d, tiles);
    return done();
}

extern "C" int mma_test_f16_k16(const uint16_t *a, const uint16_t *b, const float *c, float *d, int tiles)
{
    SLM_LAUNCH((k_mma_16bit_k16<false>), grid_of(tiles), 32 * TILES_A_BLOCK, 0, 0, a, b, c, d, tiles);
    return done();
}

extern "C" int mma_test_bf16_k16(const uint16_t *a, const uint16_t *b, const float *c, float *d, int tiles)
{
    SLM_LAUNCH((k_mma_16bit_k16<true>), grid_of(tiles), 32 * TILES_A_BLOCK, 0, 0, a, b, c, d, tiles);
    return done();
}

extern "C" int mma_test_s32_float(const int *v, float *f, int n, int small)
{
    SLM_LAUNCH(k_s32_float, (unsigned)((n + 255) / 256), 256, 0, 0, v, f, n, small);
    return done();
}
