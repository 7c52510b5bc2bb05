/*
 * kernels/cuda/qunits.cuh - the weight types, seen by CUDA kernels as "units".
 *
 * A unit is the piece of a block one thread dequantizes at a time: RUNS runs of RUN_LEN
 * consecutive elements, RUN_STRIDE apart, the first at element first(u) of the block
 * (u < UNITS). Adjacent units lie in adjacent bytes, so a warp walking units lane by lane
 * reads its row coalesced. Each unit type has:
 *   BLOCK_ELEMS, BLOCK_BYTES   the (GGUF) block, or a group of plain floats / halves;
 *   ALIGN                      the alignment its loads need of a block's address;
 *   load(block, u, w)          w[RUNS * RUN_LEN] = the unit's values, run after run.
 * Every value is computed with the operations, in the order, of slm_cpu_dequantize_row
 * (kernels/cpu/dequant.c), with explicit _rn intrinsics so that nvcc contracts nothing
 * into an FMA: the f32 values are bit-exact with the CPU's, on the GPU and emulated.
 *
 * Loads, GGUF's layout: F32 / F16 / BF16 rows (when 16-byte aligned), Q4_K and Q5_K take
 * 16-byte loads; Q4_1 and Q5_1 4-byte loads; Q4_0, Q5_0, Q8_0 and Q6_K, whose blocks are only
 * 2-byte aligned in GGUF's layout, 2-byte loads. The device layout (kernels.h; the embedding
 * lookup of slm_cuda_embed_device_layout): the quad units take 4-byte loads, 2-byte ones for
 * the halves d; Q6_K's 224-byte blocks the loads of GGUF's Q6_K; Q4_K / Q5_K as above. (The
 * decode GEMV, gemv.cu, reads the device layout with its own 16-byte loads: gemv_units.cuh.)
 */
#ifndef SLM_KERNELS_CUDA_QUNITS_CUH
#define SLM_KERNELS_CUDA_QUNITS_CUH

#include <stdint.h>

#include "kernels/cuda/compat.h"
#include "kernels/quant.h"

#if defined(__CUDACC__)
#define SLM_UNROLL _Pragma("unroll")
#else
#define SLM_UNROLL
#endif

namespace slm_cuda {

__device__ __forceinline__ float h2f(uint32_t bits)
{
    return __half2float(__ushort_as_half((unsigned short)(bits & 0xffffu)));
}

__device__ __forceinline__ float bf2f(uint32_t bits)
{
    return __uint_as_float((bits & 0xffffu) << 16);
}

/* 4 bytes from an address aligned to 2 (little-endian, as the blocks are stored). */
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t *p)
{
    const uint16_t *q = reinterpret_cast<const uint16_t *>(p);
    return (uint32_t)q[0] | (uint32_t)q[1] << 16;
}

__device__ __forceinline__ uint32_t ld_u32(const uint8_t *p)
{
    return *reinterpret_cast<const uint32_t *>(p);
}

__device__ __forceinline__ uint4 ld_u128(const uint8_t *p)
{
    return *reinterpret_cast<const uint4 *>(p);
}

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* Byte i (0..15) of a 16-byte load. */
__device__ __forceinline__ uint32_t byte_of(const uint4 &v, int i)
{
    return (word_of(v, i >> 2) >> (8 * (i & 3))) & 0xffu;
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's scales[12]. */
__device__ __forceinline__ void k_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- plain floats: groups of 16 bytes, or single elements when rows are not aligned ---- */

struct unit_f32x4 {
    static constexpr int BLOCK_ELEMS = 4, BLOCK_BYTES = 16, ALIGN = 16;
    static constexpr int UNITS = 1, RUNS = 1, RUN_LEN = 4, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int) { return 0; }
    static __device__ __forceinline__ void load(const uint8_t *b, int, float *w)
    {
        float4 v = *reinterpret_cast<const float4 *>(b);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    }
};

struct unit_f32 {
    static constexpr int BLOCK_ELEMS = 1, BLOCK_BYTES = 4, ALIGN = 4;
    static constexpr int UNITS = 1, RUNS = 1, RUN_LEN = 1, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int) { return 0; }
    static __device__ __forceinline__ void load(const uint8_t *b, int, float *w)
    {
        w[0] = *reinterpret_cast<const float *>(b);
    }
};

template <bool BF16> struct unit_h16x8 {
    static constexpr int BLOCK_ELEMS = 8, BLOCK_BYTES = 16, ALIGN = 16;
    static constexpr int UNITS = 1, RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int) { return 0; }
    static __device__ __forceinline__ void load(const uint8_t *b, int, float *w)
    {
        uint4 v = ld_u128(b);
        for (int i = 0; i < 4; i++) {
            uint32_t x = word_of(v, i);
            w[2 * i] = BF16 ? bf2f(x) : h2f(x);
            w[2 * i + 1] = BF16 ? bf2f(x >> 16) : h2f(x >> 16);
        }
    }
};

template <bool BF16> struct unit_h16 {
    static constexpr int BLOCK_ELEMS = 1, BLOCK_BYTES = 2, ALIGN = 2;
    static constexpr int UNITS = 1, RUNS = 1, RUN_LEN = 1, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int) { return 0; }
    static __device__ __forceinline__ void load(const uint8_t *b, int, float *w)
    {
        uint32_t x = *reinterpret_cast<const uint16_t *>(b);
        w[0] = BF16 ? bf2f(x) : h2f(x);
    }
};

/* ---- 32-element blocks ---- */

/* Elements 4g..4g+3 (w[0..3]) and 16+4g..16+4g+3 (w[4..7]) of a Q4_0 / Q4_1 / Q5_0 / Q5_1
 * block from its scales d (and m), its qh and word g of its qs. */
template <bool Q5, bool MIN>
__device__ __forceinline__ void nib32_values(float d, float m, uint32_t qh, uint32_t q, int g, float *w)
{
    for (int i = 0; i < 4; i++) {
        int j = 4 * g + i;
        int lo = (int)(((q >> (8 * i)) & 0xf) | (((qh >> j) & 1u) << 4));
        int hi = (int)(((q >> (8 * i + 4)) & 0xf) | (((qh >> (j + 16)) & 1u) << 4));
        if (MIN) {
            w[i] = __fadd_rn(__fmul_rn(d, (float)lo), m);
            w[4 + i] = __fadd_rn(__fmul_rn(d, (float)hi), m);
        } else {
            w[i] = __fmul_rn((float)(lo - (Q5 ? 16 : 8)), d);
            w[4 + i] = __fmul_rn((float)(hi - (Q5 ? 16 : 8)), d);
        }
    }
}

/* Q4_0 (Q5 = MIN = false), Q4_1 (MIN), Q5_0 (Q5), Q5_1 (both): a unit is 4 bytes of qs,
 * elements 4u..4u+3 (low nibbles) and 16+4u..16+4u+3 (high nibbles); Q5 takes bit j of qh
 * as element j's fifth bit. x = (q - 8 or 16) * d, or with MIN x = d * q + m. */
template <bool Q5, bool MIN> struct unit_nib32 {
    static constexpr int HEADER = MIN ? 4 : 2; /* d, or d and m */
    static constexpr int BLOCK_ELEMS = 32, BLOCK_BYTES = HEADER + (Q5 ? 4 : 0) + 16, ALIGN = MIN ? 4 : 2;
    static constexpr int UNITS = 4, RUNS = 2, RUN_LEN = 4, RUN_STRIDE = 16;
    static __device__ __forceinline__ int first(int u) { return 4 * u; }
    static __device__ __forceinline__ void load(const uint8_t *b, int u, float *w)
    {
        uint32_t dm = MIN ? ld_u32(b) : *reinterpret_cast<const uint16_t *>(b);
        uint32_t qh = Q5 ? ld_u32_a2(b + HEADER) : 0;
        const uint8_t *qs = b + HEADER + (Q5 ? 4 : 0) + 4 * u;
        uint32_t q = MIN ? ld_u32(qs) : ld_u32_a2(qs);
        nib32_values<Q5, MIN>(h2f(dm), MIN ? h2f(dm >> 16) : 0.0f, qh, q, u, w);
    }
};
typedef unit_nib32<false, false> unit_q4_0;
typedef unit_nib32<false, true> unit_q4_1;
typedef unit_nib32<true, false> unit_q5_0;
typedef unit_nib32<true, true> unit_q5_1;
static_assert(unit_q4_0::BLOCK_BYTES == sizeof(struct slm_block_q4_0), "q4_0 unit");
static_assert(unit_q4_1::BLOCK_BYTES == sizeof(struct slm_block_q4_1), "q4_1 unit");
static_assert(unit_q5_0::BLOCK_BYTES == sizeof(struct slm_block_q5_0), "q5_0 unit");
static_assert(unit_q5_1::BLOCK_BYTES == sizeof(struct slm_block_q5_1), "q5_1 unit");

/* Q8_0: a unit is 8 consecutive quants. */
struct unit_q8_0 {
    static constexpr int BLOCK_ELEMS = 32, BLOCK_BYTES = 34, ALIGN = 2;
    static constexpr int UNITS = 4, RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int u) { return 8 * u; }
    static __device__ __forceinline__ void load(const uint8_t *b, int u, float *w)
    {
        float d = h2f(*reinterpret_cast<const uint16_t *>(b));
        uint32_t q[2] = {ld_u32_a2(b + 2 + 8 * u), ld_u32_a2(b + 6 + 8 * u)};
        for (int i = 0; i < 8; i++) w[i] = __fmul_rn((float)(int8_t)(q[i >> 2] >> (8 * (i & 3))), d);
    }
};
static_assert(unit_q8_0::BLOCK_BYTES == sizeof(struct slm_block_q8_0), "q8_0 unit");

/* ---- the device layout of the 32-element types (kernels.h): a "block" here is a quad of
 * 4 GGUF blocks, 128 elements, or a row's tail of nin = nb % 4 blocks (the last "block" of a
 * row); unit u is unit u % 4 of GGUF block i = u / 4 of the quad or tail. load_n takes nin
 * (4 for a quad); the caller skips the units at or past cols. ---- */

/* Offsets in a quad (nin = 4) or a tail of nin blocks: the end of the scales (sb bytes a
 * block), and the start of the quants (after Q5_x's qh words, at a 16-byte boundary); block
 * i's qs are whole at quants + 4 W i (W = 4 words, 8 for Q8_0). The one definition of the
 * device layout's offsets: layout.cu writes by them, the GEMV, the MMQ and the embedding read. */
__host__ __device__ __forceinline__ int quad_scales_end(int nin, int sb) { return nin == 4 ? 16 : (nin * sb + 3) & ~3; }
__host__ __device__ __forceinline__ int quad_quants(int nin, int sb, bool q5)
{
    return (quad_scales_end(nin, sb) + (q5 ? 4 * nin : 0) + 15) & ~15;
}

template <bool Q5, bool MIN> struct unit_quad_nib32 {
    static constexpr int SB = MIN ? 4 : 2;
    static constexpr int BLOCK_ELEMS = 128, BLOCK_BYTES = (Q5 ? 32 : 16) + 64, ALIGN = 16;
    static constexpr int UNITS = 16, RUNS = 2, RUN_LEN = 4, RUN_STRIDE = 16;
    static __device__ __forceinline__ int first(int u) { return 32 * (u >> 2) + 4 * (u & 3); }
    static __device__ __forceinline__ void load_n(const uint8_t *quad, int u, float *w, int nin)
    {
        const int i = u >> 2, g = u & 3;
        uint32_t dm = MIN ? ld_u32(quad + 4 * i) : *reinterpret_cast<const uint16_t *>(quad + 2 * i);
        uint32_t qh = Q5 ? ld_u32(quad + quad_scales_end(nin, SB) + 4 * i) : 0;
        uint32_t q = ld_u32(quad + quad_quants(nin, SB, Q5) + 16 * i + 4 * g);
        nib32_values<Q5, MIN>(h2f(dm), MIN ? h2f(dm >> 16) : 0.0f, qh, q, g, w);
    }
    static __device__ __forceinline__ void load(const uint8_t *quad, int u, float *w) { load_n(quad, u, w, 4); }
};

/* Q8_0 in quads: unit u is quants 8v..8v+7 (v = u % 4: words 2v, 2v + 1) of block u / 4. */
struct unit_quad_q8_0 {
    static constexpr int BLOCK_ELEMS = 128, BLOCK_BYTES = 144, ALIGN = 16;
    static constexpr int UNITS = 16, RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
    static __device__ __forceinline__ int first(int u) { return 32 * (u >> 2) + 8 * (u & 3); }
    static __device__ __forceinline__ void load_n(const uint8_t *quad, int u, float *w, int nin)
    {
        const int i = u >> 2, v = u & 3, qs = quad_quants(nin, 2, false) + 32 * i + 8 * v;
        float d = h2f(*reinterpret_cast<const uint16_t *>(quad + 2 * i));
        uint32_t q[2] = {ld_u32(quad + qs), ld_u32(quad + qs + 4)};
        for (int e = 0; e < 8; e++) w[e] = __fmul_rn((float)(int8_t)(q[e >> 2] >> (8 * (e & 3))), d);
    }
    static __device__ __forceinline__ void load(const uint8_t *quad, int u, float *w) { load_n(quad, u, w, 4); }
};

/* ---- K-quants: 256-element blocks ---- */

/* Q4_K / Q5_K: qs is 4 chunks of 32 bytes; byte l of chunk c holds element 64c + l (low
 * nibble, sub-block 2c) and 64c + 32 + l (high nibble, sub-block 2c + 1). A unit is half a
 * chunk (one 16-byte load): u = 2c + h covers l = 16h .. 16h + 15. */
template <bool Q5> struct unit_qk45 {
    static constexpr int BLOCK_ELEMS = 256, BLOCK_BYTES = Q5 ? 176 : 144, ALIGN = 16;
    static constexpr int UNITS = 8, RUNS = 2, RUN_LEN = 16, RUN_STRIDE = 32;
    static __device__ __forceinline__ int first(int u) { return 64 * (u >> 1) + 16 * (u & 1); }
    static __device__ __forceinline__ void load(const uint8_t *b, int u, float *w)
    {
        const int c = u >> 1, h = u & 1;
        uint32_t dm = ld_u32(b);
        float d = h2f(dm), dmin = h2f(dm >> 16);
        int sc, mn;
        k_scale_min(2 * c, b + 4, &sc, &mn);
        float d1 = __fmul_rn(d, (float)sc), m1 = __fmul_rn(dmin, (float)mn);
        k_scale_min(2 * c + 1, b + 4, &sc, &mn);
        float d2 = __fmul_rn(d, (float)sc), m2 = __fmul_rn(dmin, (float)mn);
        uint4 qs = ld_u128(b + (Q5 ? 48 : 16) + 32 * c + 16 * h);
        uint4 qh = Q5 ? ld_u128(b + 16 + 16 * h) : make_uint4(0, 0, 0, 0);
        for (int l = 0; l < 16; l++) {
            uint32_t q = byte_of(qs, l), hb = byte_of(qh, l);
            uint32_t lo = (q & 0xf) + (((hb >> (2 * c)) & 1u) << 4);
            uint32_t hi = (q >> 4) + (((hb >> (2 * c + 1)) & 1u) << 4);
            w[l] = __fadd_rn(__fmul_rn(d1, (float)lo), -m1);
            w[16 + l] = __fadd_rn(__fmul_rn(d2, (float)hi), -m2);
        }
    }
};

/* Q6_K: each half (128 elements) has ql[64], qh[32]; element 32r + l of a half (quarter
 * r, l < 32) is the low (r < 2) or high nibble of ql[l + 32 (r & 1)] with bits 2r..2r+1
 * of qh[l] above it. A unit is l = 8j .. 8j + 7 of all four quarters of half u / 4. */
template <int BYTES> struct unit_q6_K_padded {
    static constexpr int BLOCK_ELEMS = 256, BLOCK_BYTES = BYTES, ALIGN = BYTES % 16 == 0 ? 16 : 2;
    static constexpr int UNITS = 8, RUNS = 4, RUN_LEN = 8, RUN_STRIDE = 32;
    static __device__ __forceinline__ int first(int u) { return 128 * (u >> 2) + 8 * (u & 3); }
    static __device__ __forceinline__ void load(const uint8_t *b, int u, float *w)
    {
        const int hf = u >> 2, j = u & 3, l0 = 8 * j;
        const uint8_t *ql = b + 64 * hf + l0, *qh = b + 128 + 32 * hf + l0;
        const int8_t *scales = reinterpret_cast<const int8_t *>(b + 192) + 8 * hf + (j >> 1);
        float d = h2f(*reinterpret_cast<const uint16_t *>(b + 208));
        uint32_t lo_a[2] = {ld_u32_a2(ql), ld_u32_a2(ql + 4)};
        uint32_t lo_b[2] = {ld_u32_a2(ql + 32), ld_u32_a2(ql + 36)};
        uint32_t hi[2] = {ld_u32_a2(qh), ld_u32_a2(qh + 4)};
        for (int r = 0; r < 4; r++) {
            float ds = __fmul_rn(d, (float)scales[2 * r]);
            for (int i = 0; i < 8; i++) {
                int sh = 8 * (i & 3);
                uint32_t lb = ((r & 1) ? lo_b[i >> 2] : lo_a[i >> 2]) >> sh;
                uint32_t lo = (r >= 2 ? lb >> 4 : lb) & 0xf;
                uint32_t hb = ((hi[i >> 2] >> sh) >> (2 * r)) & 3u;
                w[8 * r + i] = __fmul_rn(ds, (float)((int)(lo | hb << 4) - 32));
            }
        }
    }
};

/* GGUF's Q6_K, and the device layout's (each block padded to 224 bytes). */
typedef unit_q6_K_padded<210> unit_q6_K;
typedef unit_q6_K_padded<224> unit_dev_q6_K;

static_assert(unit_qk45<false>::BLOCK_BYTES == sizeof(struct slm_block_q4_K), "q4_K unit");
static_assert(unit_qk45<true>::BLOCK_BYTES == sizeof(struct slm_block_q5_K), "q5_K unit");
static_assert(unit_q6_K::BLOCK_BYTES == sizeof(struct slm_block_q6_K), "q6_K unit");

} /* namespace slm_cuda */

/* Calls FN<unit>(args...) for a weight type, in a function returning int; -EINVAL for a
 * type with no unit. VEC picks the 16-byte units of F32 / F16 / BF16. */
#define SLM_CUDA_DISPATCH_UNIT(type, vec, FN, ...)                                                              \
    switch (type) {                                                                                             \
    case SLM_TYPE_F32: return (vec) ? FN<slm_cuda::unit_f32x4>(__VA_ARGS__) : FN<slm_cuda::unit_f32>(__VA_ARGS__); \
    case SLM_TYPE_F16:                                                                                          \
        return (vec) ? FN<slm_cuda::unit_h16x8<false>>(__VA_ARGS__) : FN<slm_cuda::unit_h16<false>>(__VA_ARGS__); \
    case SLM_TYPE_BF16:                                                                                         \
        return (vec) ? FN<slm_cuda::unit_h16x8<true>>(__VA_ARGS__) : FN<slm_cuda::unit_h16<true>>(__VA_ARGS__);  \
    case SLM_TYPE_Q4_0: return FN<slm_cuda::unit_q4_0>(__VA_ARGS__);                                            \
    case SLM_TYPE_Q4_1: return FN<slm_cuda::unit_q4_1>(__VA_ARGS__);                                            \
    case SLM_TYPE_Q5_0: return FN<slm_cuda::unit_q5_0>(__VA_ARGS__);                                            \
    case SLM_TYPE_Q5_1: return FN<slm_cuda::unit_q5_1>(__VA_ARGS__);                                            \
    case SLM_TYPE_Q8_0: return FN<slm_cuda::unit_q8_0>(__VA_ARGS__);                                            \
    case SLM_TYPE_Q4_K: return FN<slm_cuda::unit_qk45<false>>(__VA_ARGS__);                                     \
    case SLM_TYPE_Q5_K: return FN<slm_cuda::unit_qk45<true>>(__VA_ARGS__);                                      \
    case SLM_TYPE_Q6_K: return FN<slm_cuda::unit_q6_K>(__VA_ARGS__);                                            \
    default: return -EINVAL;                                                                                    \
    }

/* As SLM_CUDA_DISPATCH_UNIT for a weight in the device layout (kernels.h): the types with one. */
#define SLM_CUDA_DISPATCH_DEVICE_UNIT(type, FN, ...)                                                            \
    switch (type) {                                                                                             \
    case SLM_TYPE_Q4_0: return FN<slm_cuda::unit_quad_nib32<false, false>>(__VA_ARGS__);                        \
    case SLM_TYPE_Q4_1: return FN<slm_cuda::unit_quad_nib32<false, true>>(__VA_ARGS__);                        \
    case SLM_TYPE_Q5_0: return FN<slm_cuda::unit_quad_nib32<true, false>>(__VA_ARGS__);                         \
    case SLM_TYPE_Q5_1: return FN<slm_cuda::unit_quad_nib32<true, true>>(__VA_ARGS__);                          \
    case SLM_TYPE_Q8_0: return FN<slm_cuda::unit_quad_q8_0>(__VA_ARGS__);                                       \
    case SLM_TYPE_Q4_K: return FN<slm_cuda::unit_qk45<false>>(__VA_ARGS__);                                     \
    case SLM_TYPE_Q5_K: return FN<slm_cuda::unit_qk45<true>>(__VA_ARGS__);                                      \
    case SLM_TYPE_Q6_K: return FN<slm_cuda::unit_dev_q6_K>(__VA_ARGS__);                                        \
    default: return -EINVAL;                                                                                    \
    }

#endif
