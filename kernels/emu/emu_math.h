/* The SIMT emulator: atomics, integer and float intrinsics, and the half / bfloat16
 * functions that CUDA's headers only define for the device. Included by emu.h.
 *
 * Exactness: conversions and +, -, *, / of half and bf16 come from cuda_fp16.h's and
 * cuda_bf16.h's own host code; __hfma / __hfma2 / hsqrt and their bf16 twins are
 * correctly rounded (as on the GPU). The fast-math intrinsics (__expf, __logf, rsqrtf,
 * hexp, hrsqrt, ...) use the correctly rounded libm function, so they can differ from
 * the GPU's approximations by the few ulps the CUDA guide allows. */
#ifndef SLM_EMU_MATH_H
#define SLM_EMU_MATH_H

#include <cmath>
#include <cstdint>
#include <cstring>

/* ---- atomics: relaxed, as CUDA's are; floats by compare-and-swap ---- */
namespace slm_emu {
template <class T, class F> static inline T atomic_update(T *p, F f)
{
    static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "atomic size");
    using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
    U *q = reinterpret_cast<U *>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED), want;
    do {
        T o, n;
        std::memcpy((void *)&o, &old, sizeof(T));
        n = f(o);
        std::memcpy(&want, &n, sizeof(T));
    } while (!__atomic_compare_exchange_n(q, &old, want, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    T r;
    std::memcpy((void *)&r, &old, sizeof(T));
    return r;
}
} /* namespace slm_emu */

#define SLM_EMU_ATOMIC_INT(T)                                                                          \
    static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }      \
    static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }          \
    static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicMin(T *p, T v) { return slm_emu::atomic_update(p, [v](T o) { return v < o ? v : o; }); } \
    static inline T atomicMax(T *p, T v) { return slm_emu::atomic_update(p, [v](T o) { return v > o ? v : o; }); } \
    static inline T atomicCAS(T *p, T cmp, T v)                                                        \
    {                                                                                                  \
        __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);            \
        return cmp;                                                                                    \
    }
SLM_EMU_ATOMIC_INT(int)
SLM_EMU_ATOMIC_INT(unsigned int)
SLM_EMU_ATOMIC_INT(unsigned long long)
#undef SLM_EMU_ATOMIC_INT
static inline long long atomicMin(long long *p, long long v) { return slm_emu::atomic_update(p, [v](long long o) { return v < o ? v : o; }); }
static inline long long atomicMax(long long *p, long long v) { return slm_emu::atomic_update(p, [v](long long o) { return v > o ? v : o; }); }
static inline unsigned short atomicCAS(unsigned short *p, unsigned short cmp, unsigned short v)
{
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
static inline int atomicSub(int *p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicSub(unsigned *p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicInc(unsigned *p, unsigned lim) { return slm_emu::atomic_update(p, [lim](unsigned o) { return o >= lim ? 0u : o + 1; }); }
static inline unsigned atomicDec(unsigned *p, unsigned lim) { return slm_emu::atomic_update(p, [lim](unsigned o) { return (o == 0 || o > lim) ? lim : o - 1; }); }
static inline float atomicExch(float *p, float v) { return slm_emu::atomic_update(p, [v](float) { return v; }); }
static inline float atomicAdd(float *p, float v) { return slm_emu::atomic_update(p, [v](float o) { return o + v; }); }
static inline double atomicAdd(double *p, double v) { return slm_emu::atomic_update(p, [v](double o) { return o + v; }); }
static inline __half atomicAdd(__half *p, __half v) { return slm_emu::atomic_update(p, [v](__half o) { return __hadd(o, v); }); }
static inline __half2 atomicAdd(__half2 *p, __half2 v) { return slm_emu::atomic_update(p, [v](__half2 o) { return __hadd2(o, v); }); }
static inline __nv_bfloat16 atomicAdd(__nv_bfloat16 *p, __nv_bfloat16 v) { return slm_emu::atomic_update(p, [v](__nv_bfloat16 o) { return __hadd(o, v); }); }
static inline __nv_bfloat162 atomicAdd(__nv_bfloat162 *p, __nv_bfloat162 v) { return slm_emu::atomic_update(p, [v](__nv_bfloat162 o) { return __hadd2(o, v); }); }

/* ---- loads, bits, integer intrinsics ---- */
template <class T> static inline T __ldg(const T *p) { return *p; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
static inline double __longlong_as_double(long long i) { double f; std::memcpy(&f, &i, 8); return f; }
static inline long long __double_as_longlong(double f) { long long i; std::memcpy(&i, &f, 8); return i; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x)
{
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
/* Selector nibble i of s picks byte (s >> 4i) & 7 of the 8-byte value {y, x}. */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
static inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned sh)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (sh & 31)) >> 32);
}
static inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned sh)
{
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (sh & 31));
}
static inline int __mul24(int a, int b) { return (int)((unsigned)((a << 8) >> 8) * (unsigned)((b << 8) >> 8)); }
static inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
static inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b)
{
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
/* Four-way byte dot product plus accumulator. */
static inline int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c)
{
    for (int i = 0; i < 4; i++)
        c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline void __nanosleep(unsigned) {}

/* ---- float intrinsics ---- */
/* __expf, __logf, __log2f, __exp10f, __sinf, __cosf, __tanf, __sincosf and __powf are
 * glibc's own exported aliases of expf etc. (declared by <math.h>), so nothing here. */
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline float __double2float_rn(double x) { return (float)x; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }
static inline float __int2float_rn(int x) { return (float)x; }

/* ---- half and bfloat16: what cuda_fp16.h / cuda_bf16.h define only for the device ---- */
namespace slm_emu {
/* a * b + c with one rounding, to float by round-to-odd: a later rounding to half or
 * bf16 (11 or 8 bits, at most 22 bits short of float's 24) is then correctly rounded. */
static inline float fma_to_odd_float(float a, float b, float c)
{
    double p = (double)a * (double)b; /* exact: 24 + 24 bits < 53 */
    double s = p + (double)c;
    double bp = s - (double)c, err = (p - bp) + ((double)c - (s - bp)); /* two-sum */
    if (err != 0.0 && std::isfinite(s)) {
        uint64_t u;
        std::memcpy(&u, &s, 8);
        if (!(u & 1)) s = nextafter(s, err > 0 ? INFINITY : -INFINITY);
    }
    float f = (float)s;
    if ((double)f != s && std::isfinite(s)) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if (!(u & 1)) f = nextafterf(f, (double)f < s ? INFINITY : -INFINITY);
    }
    return f;
}
} /* namespace slm_emu */

static inline __half __hfma(__half a, __half b, __half c)
{
    return __float2half_rn(slm_emu::fma_to_odd_float(__half2float(a), __half2float(b), __half2float(c)));
}
static inline __half2 __hfma2(__half2 a, __half2 b, __half2 c)
{
    return __halves2half2(__hfma(__low2half(a), __low2half(b), __low2half(c)),
                          __hfma(__high2half(a), __high2half(b), __high2half(c)));
}
static inline __half __hfma_relu(__half a, __half b, __half c)
{
    __half r = __hfma(a, b, c);
    return __hisnan(r) ? __ushort_as_half(0x7fff) : __hlt(r, __float2half(0.0f)) ? __float2half(0.0f) : r;
}
static inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c)
{
    return __float2bfloat16_rn(slm_emu::fma_to_odd_float(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c)));
}
static inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c)
{
    return __halves2bfloat162(__hfma(__low2bfloat16(a), __low2bfloat16(b), __low2bfloat16(c)),
                              __hfma(__high2bfloat16(a), __high2bfloat16(b), __high2bfloat16(c)));
}

/* Unary functions of half, bf16 and their pairs, through float. sqrt is correctly rounded
 * (float's 24 bits are more than 2 * 11 + 2); the others are within one ulp of the result. */
#define SLM_EMU_HALF_UNARY(name, h2name, expr)                                                           \
    static inline __half name(__half h) { float x = __half2float(h); return __float2half_rn(expr); }    \
    static inline __nv_bfloat16 name(__nv_bfloat16 h) { float x = __bfloat162float(h); return __float2bfloat16_rn(expr); } \
    static inline __half2 h2name(__half2 h) { return __halves2half2(name(__low2half(h)), name(__high2half(h))); } \
    static inline __nv_bfloat162 h2name(__nv_bfloat162 h)                                                \
    {                                                                                                    \
        return __halves2bfloat162(name(__low2bfloat16(h)), name(__high2bfloat16(h)));                   \
    }
SLM_EMU_HALF_UNARY(hexp, h2exp, expf(x))
SLM_EMU_HALF_UNARY(hexp2, h2exp2, exp2f(x))
SLM_EMU_HALF_UNARY(hlog, h2log, logf(x))
SLM_EMU_HALF_UNARY(hlog2, h2log2, log2f(x))
SLM_EMU_HALF_UNARY(hsqrt, h2sqrt, sqrtf(x))
SLM_EMU_HALF_UNARY(hrsqrt, h2rsqrt, 1.0f / sqrtf(x))
SLM_EMU_HALF_UNARY(hrcp, h2rcp, 1.0f / x)
SLM_EMU_HALF_UNARY(hsin, h2sin, sinf(x))
SLM_EMU_HALF_UNARY(hcos, h2cos, cosf(x))
#undef SLM_EMU_HALF_UNARY

#endif
