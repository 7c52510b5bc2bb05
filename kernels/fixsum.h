/*
 * kernels/fixsum.h - exact sums of the sampler's weights, one definition for the CPU sampler
 * (daemon/engine/sampler.c) and the CUDA sampling kernel (kernels/cuda/sampling.cu).
 *
 * The sampler's cuts and its draw compare running sums of weights in [0, 1] (expf of a logit
 * less the largest) with a target. In double, a sum depends on its order, so the GPU had to
 * add a row's 49,152 weights on one thread in the CPU's order to pick the CPU's token. As
 * fixed-point integers, value (hi 2^64 + lo) 2^-96, the sums are exact: any order, any split
 * over threads gives the same bits, and a weight of 2^-73 or more is held exactly (smaller ones
 * are rounded down to a multiple of 2^-96, on both sides alike). 2^31 weights of 1 fit.
 * The double values the sampler computes from them (the top-p target top_p * z, the draw's
 * u * total) go through slm_fix_to_double (rounded to nearest, ties to even) and back through
 * slm_fix_from_double (rounded down): integer and bit operations only, so every compiler and
 * device gives the same bits.
 */
#ifndef SLM_KERNELS_FIXSUM_H
#define SLM_KERNELS_FIXSUM_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(__CUDA_ARCH__) || defined(SLM_EMULATED)
#define SLM_FIX_FN __host__ __device__ static inline
#else
#define SLM_FIX_FN static inline
#endif

/* A non-negative number (hi 2^64 + lo) 2^-96. */
struct slm_fix {
    uint64_t hi, lo;
};

SLM_FIX_FN struct slm_fix slm_fix_make(uint64_t hi, uint64_t lo)
{
    struct slm_fix r;
    r.hi = hi, r.lo = lo;
    return r;
}

SLM_FIX_FN struct slm_fix slm_fix_add(struct slm_fix a, struct slm_fix b)
{
    uint64_t lo = a.lo + b.lo;
    return slm_fix_make(a.hi + b.hi + (lo < a.lo), lo);
}

/* a - b for a >= b. */
SLM_FIX_FN struct slm_fix slm_fix_sub(struct slm_fix a, struct slm_fix b)
{
    return slm_fix_make(a.hi - b.hi - (a.lo < b.lo), a.lo - b.lo);
}

/* a < b. */
SLM_FIX_FN int slm_fix_lt(struct slm_fix a, struct slm_fix b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

/* m 2^s (m < 2^53, s < 75) rounded down as fixed point, i.e. the integer m 2^s: in two 64-bit
 * words (the device's way; tests/test_sampler.c checks it against the host's 128-bit one). */
SLM_FIX_FN struct slm_fix slm_fix_shifted_words(uint64_t m, int s)
{
    if (s >= 64) return slm_fix_make(m << (s - 64), 0);
    if (s > 0) return slm_fix_make(m >> (64 - s), m << s);
    if (s > -64) return slm_fix_make(0, m >> -s);
    return slm_fix_make(0, 0);
}

SLM_FIX_FN struct slm_fix slm_fix_shifted(uint64_t m, int s)
{
#if defined(__SIZEOF_INT128__) && !defined(__CUDA_ARCH__)
    /* The host's 128-bit shifts: no branch on s's range, which a row's weights straddle (the
     * CPU sampler's top-p-only rows took ~75% longer with the branches). */
    if (s <= -64) return slm_fix_make(0, 0);
    const unsigned __int128 v = s >= 0 ? (unsigned __int128)m << s : (unsigned __int128)(m >> -s);
    return slm_fix_make((uint64_t)(v >> 64), (uint64_t)v);
#else
    return slm_fix_shifted_words(m, s);
#endif
}

/* w as fixed point (value w 2^96 rounded down): exact for w >= 2^-73; 0 for w <= 0 or NaN, 1
 * for w >= 1. */
SLM_FIX_FN struct slm_fix slm_fix_from_float(float w)
{
    if (!(w > 0.0f)) return slm_fix_make(0, 0);
    if (w >= 1.0f) return slm_fix_make((uint64_t)1 << 32, 0);
    union { float f; uint32_t u; } b;
    b.f = w;
    int e = (int)(b.u >> 23);   /* w > 0: no sign bit */
    uint64_t m = b.u & 0x7fffffu;
    if (e) m |= 0x800000u;
    else e = 1;
    return slm_fix_shifted(m, e - 150 + 96);   /* w = m 2^(e - 150) */
}

/* x as fixed point, rounded down; 0 for x <= 0 or NaN, all ones for x >= 2^32 (more than any
 * sum of weights here). */
SLM_FIX_FN struct slm_fix slm_fix_from_double(double x)
{
    if (!(x > 0.0)) return slm_fix_make(0, 0);
    if (x >= 4294967296.0) return slm_fix_make(~(uint64_t)0, ~(uint64_t)0);
    union { double d; uint64_t u; } b;
    b.d = x;
    int e = (int)(b.u >> 52);
    uint64_t m = b.u & (((uint64_t)1 << 52) - 1);
    if (e) m |= (uint64_t)1 << 52;
    else e = 1;
    return slm_fix_shifted(m, e - 1075 + 96);   /* x = m 2^(e - 1075) */
}

SLM_FIX_FN int slm_fix_clz64(uint64_t v)   /* v != 0 */
{
#if defined(__CUDA_ARCH__)
    return __clzll((long long)v);
#else
    return __builtin_clzll(v);
#endif
}

/* a as a double, rounded to nearest, ties to even. */
SLM_FIX_FN double slm_fix_to_double(struct slm_fix a)
{
    if (!a.hi && a.lo < ((uint64_t)1 << 53)) return ldexp((double)a.lo, -96);   /* exact */
    const int top = a.hi ? 127 - slm_fix_clz64(a.hi) : 63 - slm_fix_clz64(a.lo);   /* the leading bit */
    const int drop = top - 52;   /* 1..75 bits below the 53 kept */
    uint64_t mant, halfbit, sticky;
    if (drop >= 64) {
        mant = a.hi >> (drop - 64);
        halfbit = drop > 64 ? (a.hi >> (drop - 65)) & 1 : a.lo >> 63;
        sticky = (drop > 65 ? a.hi & ((((uint64_t)1) << (drop - 65)) - 1) : 0) |
                 (drop > 64 ? a.lo : a.lo & ~((uint64_t)1 << 63));
    } else {
        mant = (a.lo >> drop) | (drop ? a.hi << (64 - drop) : 0);
        halfbit = (a.lo >> (drop - 1)) & 1;
        sticky = drop > 1 ? a.lo & ((((uint64_t)1) << (drop - 1)) - 1) : 0;
    }
    if (halfbit && (sticky || (mant & 1))) mant++;   /* 2^53 at most: still exact */
    return ldexp((double)mant, drop - 96);
}

#endif
