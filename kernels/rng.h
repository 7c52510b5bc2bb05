/*
 * kernels/rng.h - the sampler's random numbers, one definition for the CPU sampler
 * (daemon/engine/sampler.c) and the CUDA sampling kernel (kernels/cuda/sampling.cu), so that a
 * seed gives the same draws on both: xoshiro256** seeded through splitmix64, and a uniform
 * float in [0, 1) from the top 24 bits of an output (every such value is exact in a float).
 */
#ifndef SLM_KERNELS_RNG_H
#define SLM_KERNELS_RNG_H

#include <stdint.h>

#if defined(__CUDACC__) || defined(__CUDA_ARCH__) || defined(SLM_EMULATED)
#define SLM_RNG_FN __host__ __device__ static inline
#else
#define SLM_RNG_FN static inline
#endif

SLM_RNG_FN uint64_t slm_rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

SLM_RNG_FN uint64_t slm_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next xoshiro256** output; advances s. */
SLM_RNG_FN uint64_t slm_rng_next(uint64_t s[4])
{
    uint64_t result = slm_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = slm_rng_rotl(s[3], 45);
    return result;
}

SLM_RNG_FN void slm_rng_seed(uint64_t s[4], uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = slm_rng_splitmix64(&x);
}

#endif
