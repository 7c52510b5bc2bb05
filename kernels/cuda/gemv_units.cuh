/*
 * kernels/cuda/gemv_units.cuh - the per-type row bodies of the decode GEMV (gemv.cu): how one
 * lane takes one "unit" of a weight row in the device layout (kernels.h, layout.cu) against the
 * quantized activations of up to NT tokens.
 *
 * A unit is the piece of a row one lane takes whole, in the device layout:
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0  block u (32 elements): its quants in one 16-byte load (two
 *                                 for Q8_0), its scales and qh in 4-byte loads (the 4 lanes
 *                                 of a quad's blocks read 16 contiguous bytes of each);
 *   Q4_K, Q5_K, Q6_K              (block u / 4, piece u % 4): 64 elements, two activation blocks
 *                                 (Q4_K / Q5_K: chunk c of qs, sub-blocks 2c and 2c + 1; Q6_K:
 *                                 half c / 2, quarters c % 2 and c % 2 + 2), in 16-byte loads of
 *                                 qs (ql), qh and the scales.
 * units(nb) of them a row. Every unit dots its whole activation blocks exactly in integers and
 * adds their float terms to the lane's accumulator of each token in the unit's fixed order
 * (docs/numerics.md, "The GPU": the order every quantized matmul kernel shares).
 *
 * The activations (gemv_act) are per-32 quantized, as the GEMV's own quantizer writes them
 * (gemv.cu): int8 quants q (n, cols) and per 32-element block a float2 (d, s) with x ~= d * q
 * and s = d * (sum of the block's 32 quants). Every weight type dots against the same format:
 * the integer dot of a unit's piece of a 32-block is exact (__dp4a), and each such piece adds
 * its float term(s) to the lane's accumulator of the token in a fixed order, unit by unit,
 * block by block, term by term, with _rn intrinsics (nvcc contracts nothing), so a token's
 * float operations depend only on the unit's data, never on NT, n or the token's slot.
 */
#ifndef SLM_KERNELS_CUDA_GEMV_UNITS_CUH
#define SLM_KERNELS_CUDA_GEMV_UNITS_CUH

#include "kernels/cuda/qunits.cuh"

namespace slm_gemv {

using slm_cuda::byte_of;
using slm_cuda::h2f;
using slm_cuda::ld_u128;
using slm_cuda::ld_u32;
using slm_cuda::word_of;

/* The quantized activations of n tokens (global or shared memory). */
struct gemv_act {
    const int8_t *q;     /* (n, cols), 16-byte aligned */
    const float2 *ds;    /* (n, cols / 32): d, s */
    int cols;
};

__device__ __forceinline__ float2 act_ds(const gemv_act &a, int t, int blk)
{
    return a.ds[(size_t)t * (size_t)(a.cols >> 5) + blk];
}

/* Token 0's activations from block blk on, walked a token at a time (next()): one pointer step a
 * token instead of the 64-bit products t x cols and t x cols / 32 before every load (sm_90, 8
 * tokens: Q4_1 262 -> 221 instructions a block, Q6_K 628 -> 486; docs/cuda.md). Offsets e and b
 * are relative to block blk. On sm_80 the two moving pointers made ptxas spill 4-16 bytes in the
 * 8-token x 2-row kernels (test_cuda_resources): there offsets from the block's pointers move
 * instead, without a spill. */
struct act_cursor {
    const int8_t *q;
    const float2 *ds;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 800
    size_t oq = 0, od = 0;   /* token t's offsets from q and ds: t x cols and t x cols / 32 */
    __device__ __forceinline__ void next(const gemv_act &a)
    {
        oq += (size_t)a.cols;
        od += (size_t)(a.cols >> 5);
    }
    __device__ __forceinline__ uint4 u128(int e) const { return *reinterpret_cast<const uint4 *>(q + oq + e); }
    __device__ __forceinline__ float2 d(int b) const { return ds[od + b]; }
#else
    __device__ __forceinline__ void next(const gemv_act &a)
    {
        q += a.cols;
        ds += a.cols >> 5;
    }
    __device__ __forceinline__ uint4 u128(int e) const { return *reinterpret_cast<const uint4 *>(q + e); }
    __device__ __forceinline__ float2 d(int b) const { return ds[b]; }
#endif
    __device__ __forceinline__ act_cursor(const gemv_act &a, int blk) : q(a.q + 32 * (size_t)blk), ds(a.ds + blk) {}
};

/* An empty asm that takes v in a register and may change it: nvcc can no longer move v's
 * computation past this point. A unit's unpacked weights are pinned so: otherwise nvcc sank the
 * unpacking into each token slot's `t < n` branch and repeated it per token (Q4_1, 8 tokens x 1
 * row: 344 sm_90 instructions a block, 262 pinned; 8 x 2 rows 554 -> 389; docs/cuda.md). */
__device__ __forceinline__ void pin(int &v) { asm volatile("" : "+r"(v)); }
/* The same for a pointer: kept in a register pair from here on, not recomputed (the MMQ's row
 * addresses, which nvcc otherwise rematerialized from the row number in every unit). nvcc then
 * loads through it with generic loads (LD, not LDG): it no longer knows the space. */
template <typename T> __device__ __forceinline__ void pin_ptr(T *&p)
{
#ifdef __CUDA_ARCH__
    asm volatile("" : "+l"(p));
#else
    asm volatile("" : "+r"(p));
#endif
}

/* Bytes b in 0..15 (0..31) minus 8 (16), as two's complement bytes: no carry crosses a byte. */
__device__ __forceinline__ int minus8(uint32_t b) { return (int)((b + 0x78787878u) ^ 0x80808080u); }
__device__ __forceinline__ int minus16(uint32_t b) { return (int)((b + 0x70707070u) ^ 0x80808080u); }

/* Bits 4k..4k+3 of qh moved to bit 4 of each byte (the 5th bits of 4 elements): h x (2^4 + 2^11
 * + 2^18 + 2^25) puts copies of the 4 bits at 4..7, 11..14, 18..21 and 25..28 (no overlap, no
 * carry), where bit i of h lands on bit 4 of byte i; the mask keeps those. One multiply instead
 * of four shifted masks: the same bits; Q5_0's GEMV loop at 1 token 148 -> 119 sm_90 instructions. */
__device__ __forceinline__ uint32_t q5_bits(uint32_t qh, int k)
{
    return (((qh >> (4 * k)) & 0xfu) * 0x02040810u) & 0x10101010u;
}

/* ---- the 32-element types ---- */

template <uint32_t T> struct unit32;
/* SB scale bytes a block (d, or d and m), WORDS qs words a block, QUAD bytes, Q5 a qh word, M an offset m */
#define SLM_GEMV_UNIT32(T, sb, words, quad, q5, m)                                  \
    template <> struct unit32<T> {                                                 \
        static const int SB = sb, WORDS = words, QUAD = quad;                      \
        static const bool Q5 = q5, M = m;                                          \
    };
SLM_GEMV_UNIT32(SLM_TYPE_Q4_0, 2, 4, 80, false, false)
SLM_GEMV_UNIT32(SLM_TYPE_Q4_1, 4, 4, 80, false, true)
SLM_GEMV_UNIT32(SLM_TYPE_Q5_0, 2, 4, 96, true, false)
SLM_GEMV_UNIT32(SLM_TYPE_Q5_1, 4, 4, 96, true, true)
SLM_GEMV_UNIT32(SLM_TYPE_Q8_0, 2, 8, 144, false, false)
#undef SLM_GEMV_UNIT32

/* A block's word k as signed (or, with an offset m, unsigned) bytes: lo = elements 4k..4k+3,
 * hi = 16+4k..16+4k+3 (Q8_0: lo = elements 4k..4k+3 of its 8 words), and its scales. */
template <uint32_t T> struct w32 {
    int lo, hi;
    float d, m;
};

template <uint32_t T>
__device__ __forceinline__ w32<T> unpack32(uint32_t sc, uint32_t qh, uint32_t qw, int k)
{
    typedef unit32<T> U;
    w32<T> w;
    w.d = h2f(sc);
    w.m = U::M ? h2f(sc >> 16) : 0.0f;
    w.hi = 0;
    if (U::WORDS == 8) {
        w.lo = (int)qw;
    } else {
        uint32_t l4 = qw & 0x0f0f0f0fu, h4 = (qw >> 4) & 0x0f0f0f0fu;
        if (U::Q5) l4 |= q5_bits(qh, k), h4 |= q5_bits(qh, k + 4);
        w.lo = U::M ? (int)l4 : U::Q5 ? minus16(l4) : minus8(l4);
        w.hi = U::M ? (int)h4 : U::Q5 ? minus16(h4) : minus8(h4);
    }
    return w;
}

/* Where block b of a 32-element type's row (device layout, kernels.h) keeps its scales, qh and
 * quants: word w of its qs at qs + 4 w, qs 16-byte aligned. */
struct blk32_addr {
    const uint8_t *sc, *qh, *qs;
};

/* Block i of the quad (or tail) at base holding nin blocks: with nin and i known at compile time
 * (a full quad, unrolled: the wide MMQ) every address is base plus a constant. */
template <uint32_t T> __device__ __forceinline__ blk32_addr blk32_in(const uint8_t *base, int nin, int i)
{
    typedef unit32<T> U;
    blk32_addr ad;
    ad.sc = base + U::SB * i;
    ad.qh = base + slm_cuda::quad_scales_end(nin, U::SB) + 4 * i;
    ad.qs = base + slm_cuda::quad_quants(nin, U::SB, U::Q5) + 4 * U::WORDS * i;
    return ad;
}

template <uint32_t T> __device__ __forceinline__ blk32_addr blk32_at(const uint8_t *row, int nb, int b)
{
    const int g = b >> 2, nq = nb >> 2;
    const int nin = g < nq ? 4 : nb & 3;   /* a quad, or the tail of nb % 4 packed blocks */
    return blk32_in<T>(row + (size_t)g * unit32<T>::QUAD, nin, b & 3);
}

/* The scale word of a block: d (and m in the high half for the offset types). */
template <uint32_t T> __device__ __forceinline__ uint32_t blk32_scales(const blk32_addr &ad)
{
    return unit32<T>::SB == 4 ? ld_u32(ad.sc) : (uint32_t)*reinterpret_cast<const uint16_t *>(ad.sc);
}

/* Every unit type has two halves, so that a lane can ask for its first unit's weights before
 * the kernel's wait and for the next unit's during this one (gemv.cu): load<R>, the unit's raw weight words of R rows (every global load
 * of its weights, nothing computed from them), and dot<NT, R>, the unpacking, the integer dots
 * against the tokens' blocks and the float terms.
 *
 * Unit u = block u of R rows (wr[r]: row r's bytes), the 32-element types: one lane reads the
 * whole block (its scales, qh and WORDS quant words: one 16-byte load, two for Q8_0) and dots
 * all 32 elements against each token's block u exactly (__dp4a, an int sum in any order), then acc[r][t] = fma(d_w * d_a,
 * float(dot), acc[r][t]) and, for an offset type, acc[r][t] = fma(m_w, s_a, acc[r][t]). */
template <uint32_t T> struct gemv_unit {
    typedef unit32<T> U;
    static const int MAX_R = 2;
    static __host__ __device__ int units(int nb) { return nb; }

    /* [r] row r's scale word, qh (Q5_0 / Q5_1) and quant words (the second 16 bytes for Q8_0) */
    template <int R> struct raw {
        uint32_t sc[R], qh[R];
        uint4 q0[R], q1[R];
    };
    template <int R> static __device__ __forceinline__ raw<R> load(const uint8_t *const *wr, int nb, int u)
    {
        raw<R> w;
        SLM_UNROLL
        for (int r = 0; r < R; r++) {
            const blk32_addr ad = blk32_at<T>(wr[r], nb, u);
            w.sc[r] = blk32_scales<T>(ad);
            w.qh[r] = U::Q5 ? ld_u32(ad.qh) : 0u;
            w.q0[r] = ld_u128(ad.qs);
            w.q1[r] = U::WORDS == 8 ? ld_u128(ad.qs + 16) : make_uint4(0u, 0u, 0u, 0u);
        }
        return w;
    }

    template <int NT, int R>
    static __device__ __forceinline__ void dot(const raw<R> &wv, int u, const gemv_act &a, int n, float (*acc)[NT])
    {
        int lo[R][U::WORDS == 8 ? 8 : 4], hi[R][4];
        float d[R], m[R];
        SLM_UNROLL
        for (int r = 0; r < R; r++) {
            const uint32_t sc = wv.sc[r], qh = wv.qh[r];
            const uint4 q0 = wv.q0[r];
            SLM_UNROLL
            for (int k = 0; k < 4; k++) {
                const w32<T> w = unpack32<T>(sc, qh, word_of(q0, k), k);
                lo[r][k] = w.lo;
                hi[r][k] = w.hi;
                pin(lo[r][k]);
                pin(hi[r][k]);
                d[r] = w.d;
                m[r] = w.m;
            }
            if (U::WORDS == 8) {
                const uint4 q1 = wv.q1[r];
                SLM_UNROLL
                for (int k = 4; k < (U::WORDS == 8 ? 8 : 4); k++) lo[r][k] = (int)word_of(q1, k - 4);
            }
        }
        act_cursor x(a, u);
        SLM_UNROLL
        for (int t = 0; t < NT; t++, x.next(a)) {
            if (t < n) {
                const float2 ds = x.d(0);
                const uint4 x0 = x.u128(0), x1 = x.u128(16);
                SLM_UNROLL
                for (int r = 0; r < R; r++) {
                    int s = 0;
                    SLM_UNROLL
                    for (int k = 0; k < 4; k++) {
                        if (U::WORDS == 8) {
                            s = __dp4a(lo[r][k], (int)word_of(x0, k), s);
                            s = __dp4a(lo[r][(k + 4) & (U::WORDS == 8 ? 7 : 3)], (int)word_of(x1, k), s);
                        } else {
                            s = __dp4a(lo[r][k], (int)word_of(x0, k), s);
                            s = __dp4a(hi[r][k], (int)word_of(x1, k), s);
                        }
                    }
                    acc[r][t] = __fmaf_rn(__fmul_rn(d[r], ds.x), __int2float_rn(s), acc[r][t]);
                    if (U::M) acc[r][t] = __fmaf_rn(m[r], ds.y, acc[r][t]);
                }
            }
        }
    }
};

/* ---- the K-quants: unit (block b, piece c) ---- */

/* The 6-bit scales and mins of sub-blocks 2c and 2c + 1 of a Q4_K / Q5_K block, from its first
 * 16 bytes (d, dmin, scales[12] at bytes 4..15) in a uint4, as two bytes (2c, 2c + 1) of *sc
 * and *m: the values of qunits.cuh's k_scale_min for j = 2c, 2c + 1, as llama.cpp pairs them
 * (adjacent bytes of scales[]), in 32-bit word operations on h.y, h.z, h.w (scales[0..3],
 * [4..7], [8..11]) with no run-time byte index (a byte picked from a uint4 at run time is a chain
 * of selects: Q4_K's GEMV loop at 1 token is 110 sm_90 instructions with this, 224 with the
 * byte-wise picks; the MMQ's Q4_K loop 422 -> 269 for 8 IMMA in the wide kernel, 571 -> 400 in
 * the narrow one). */
__device__ __forceinline__ void k_scale_min_pair(const uint4 &h, int c, uint32_t *sc, uint32_t *m)
{
    const int sh = 16 * (c & 1);
    const uint32_t a = h.y >> sh, b = h.z >> sh, e = h.w >> sh;   /* scales16[c & 1], [2 + (c & 1)], [4 + (c & 1)] */
    *sc = c < 2 ? a & 0x3f3fu : (e & 0x0f0fu) | ((a & 0xc0c0u) >> 2);
    *m = c < 2 ? b & 0x3f3fu : ((e >> 4) & 0x0f0fu) | ((b & 0xc0c0u) >> 2);
}

/* Byte s (0, 1) of a k_scale_min_pair word: sub-block 2c + s's value. */
__device__ __forceinline__ int k_pair_byte(uint32_t v, int s) { return (int)((v >> (8 * s)) & 0xffu); }

/* Sum of 8 __dp4a of q[0..7] against the 32 quants at the cursor's element e. */
__device__ __forceinline__ int dot32(const int *q, const act_cursor &x, int e)
{
    const uint4 a0 = x.u128(e), a1 = x.u128(e + 16);
    int s = 0;
    SLM_UNROLL
    for (int i = 0; i < 4; i++) s = __dp4a(q[i], (int)word_of(a0, i), s);
    SLM_UNROLL
    for (int i = 0; i < 4; i++) s = __dp4a(q[4 + i], (int)word_of(a1, i), s);
    return s;
}

/* Q4_K, Q5_K: piece c = sub-blocks 2c (low nibbles of qs[32c..32c+31]) and 2c + 1 (high);
 * per sub-block j: acc = fma(d * sc_j * d_a, float(dot), acc), then acc = fma(-(dmin * m_j), s_a, acc). */
template <bool FIVE> struct gemv_unit_k45 {
    static const int BYTES = FIVE ? 176 : 144;
    static const int MAX_R = 1;
    static __host__ __device__ int units(int nb) { return 4 * nb; }

    /* the block's head (d, dmin, scales), the piece's two 16-byte halves of qs, for Q5_K the qh
     * halves */
    template <int R> struct raw {
        uint4 h, v[2], hv[2];
    };
    template <int R> static __device__ __forceinline__ raw<R> load(const uint8_t *const *wr, int, int u)
    {
        static_assert(R == 1, "one row a lane");
        const int b = u >> 2, c = u & 3;
        const uint8_t *blk = wr[0] + (size_t)b * BYTES;
        const uint8_t *qs = blk + (FIVE ? 48 : 16) + 32 * c;
        raw<R> w;
        w.h = ld_u128(blk);
        SLM_UNROLL
        for (int half = 0; half < 2; half++) {
            w.v[half] = ld_u128(qs + 16 * half);
            w.hv[half] = FIVE ? ld_u128(blk + 16 + 16 * half) : make_uint4(0u, 0u, 0u, 0u);
        }
        return w;
    }

    template <int NT, int R>
    static __device__ __forceinline__ void dot(const raw<R> &w, int u, const gemv_act &a, int n, float (*accr)[NT])
    {
        static_assert(R == 1, "one row a lane");
        float *acc = accr[0];
        const int b = u >> 2, c = u & 3;
        const uint4 h = w.h;
        int ql[8], qh[8];
        SLM_UNROLL
        for (int half = 0; half < 2; half++) {
            const uint4 v = w.v[half];
            const uint4 hv = w.hv[half];
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                uint32_t lo = word_of(v, i) & 0x0f0f0f0fu, hi = (word_of(v, i) >> 4) & 0x0f0f0f0fu;
                if (FIVE) {
                    lo |= ((word_of(hv, i) >> (2 * c)) & 0x01010101u) << 4;
                    hi |= ((word_of(hv, i) >> (2 * c + 1)) & 0x01010101u) << 4;
                }
                ql[4 * half + i] = (int)lo;
                qh[4 * half + i] = (int)hi;
                pin(ql[4 * half + i]);
                pin(qh[4 * half + i]);
            }
        }
        const float d = h2f(h.x), dmin = h2f(h.x >> 16);
        uint32_t scp, mp;
        k_scale_min_pair(h, c, &scp, &mp);
        const int sc0 = k_pair_byte(scp, 0), m0 = k_pair_byte(mp, 0), sc1 = k_pair_byte(scp, 1), m1 = k_pair_byte(mp, 1);
        const float dsc0 = __fmul_rn(d, __int2float_rn(sc0)), dm0 = -__fmul_rn(dmin, __int2float_rn(m0));
        const float dsc1 = __fmul_rn(d, __int2float_rn(sc1)), dm1 = -__fmul_rn(dmin, __int2float_rn(m1));
        const int a0 = 8 * b + 2 * c;   /* the activation block of sub-block 2c */
        act_cursor x(a, a0);
        SLM_UNROLL
        for (int t = 0; t < NT; t++, x.next(a)) {
            if (t < n) {
                const float2 ds0 = x.d(0), ds1 = x.d(1);
                const int s0 = dot32(ql, x, 0), s1 = dot32(qh, x, 32);
                float v = __fmaf_rn(__fmul_rn(dsc0, ds0.x), __int2float_rn(s0), acc[t]);
                v = __fmaf_rn(dm0, ds0.y, v);
                v = __fmaf_rn(__fmul_rn(dsc1, ds1.x), __int2float_rn(s1), v);
                acc[t] = __fmaf_rn(dm1, ds1.y, v);
            }
        }
    }
};
template <> struct gemv_unit<SLM_TYPE_Q4_K> : gemv_unit_k45<false> {};
template <> struct gemv_unit<SLM_TYPE_Q5_K> : gemv_unit_k45<true> {};

/* Q6_K (224-byte device blocks): piece c = half c / 2, quarters r = c % 2 (low nibbles of
 * ql[64 half + 32 (c % 2) ..], qh bits 2r) and r + 2 (high nibbles, qh bits 2r + 4); a quarter's
 * two groups of 16 have their own int8 scales: dot = sc_a * dot(0..15) + sc_b * dot(16..31),
 * exact; acc = fma(d * d_a, float(dot), acc). */
template <> struct gemv_unit<SLM_TYPE_Q6_K> {
    static const int BYTES = 224;
    static const int MAX_R = 1;
    static __host__ __device__ int units(int nb) { return 4 * nb; }

    /* the piece's two 16-byte halves of ql and of qh, the 16 scale bytes and d */
    template <int R> struct raw {
        uint4 lv[2], hv[2], sv;
        uint32_t d;
    };
    template <int R> static __device__ __forceinline__ raw<R> load(const uint8_t *const *wr, int, int u)
    {
        static_assert(R == 1, "one row a lane");
        const int b = u >> 2, c = u & 3, hf = c >> 1, p = c & 1;
        const uint8_t *blk = wr[0] + (size_t)b * BYTES;
        raw<R> w;
        SLM_UNROLL
        for (int half = 0; half < 2; half++) {
            w.lv[half] = ld_u128(blk + 64 * hf + 32 * p + 16 * half);
            w.hv[half] = ld_u128(blk + 128 + 32 * hf + 16 * half);
        }
        w.sv = ld_u128(blk + 192);
        w.d = *reinterpret_cast<const uint16_t *>(blk + 208);
        return w;
    }

    template <int NT, int R>
    static __device__ __forceinline__ void dot(const raw<R> &w, int u, const gemv_act &a, int n, float (*accr)[NT])
    {
        static_assert(R == 1, "one row a lane");
        float *acc = accr[0];
        const int b = u >> 2, c = u & 3, hf = c >> 1, p = c & 1;
        int q0[8], q2[8];   /* quarters p and p + 2, value - 32 as bytes */
        SLM_UNROLL
        for (int half = 0; half < 2; half++) {
            const uint4 lv = w.lv[half], hv = w.hv[half];
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                const uint32_t l = word_of(lv, i), hb = word_of(hv, i);
                const uint32_t v0 = (l & 0x0f0f0f0fu) | (((hb >> (2 * p)) & 0x03030303u) << 4);
                const uint32_t v2 = ((l >> 4) & 0x0f0f0f0fu) | (((hb >> (2 * p + 4)) & 0x03030303u) << 4);
                q0[4 * half + i] = (int)((v0 + 0x60606060u) ^ 0x80808080u);   /* minus 32, bytewise */
                q2[4 * half + i] = (int)((v2 + 0x60606060u) ^ 0x80808080u);
            }
        }
        const uint4 sv = w.sv;
        const int s0a = (int8_t)byte_of(sv, 8 * hf + 2 * p), s0b = (int8_t)byte_of(sv, 8 * hf + 2 * p + 1);
        const int s2a = (int8_t)byte_of(sv, 8 * hf + 2 * p + 4), s2b = (int8_t)byte_of(sv, 8 * hf + 2 * p + 5);
        const float d = h2f(w.d);
        const int a0 = 8 * b + 4 * hf + p;   /* the activation block of quarter p; quarter p + 2 is a0 + 2 */
        act_cursor x(a, a0);
        SLM_UNROLL
        for (int t = 0; t < NT; t++, x.next(a)) {
            if (t < n) {
                const float2 ds0 = x.d(0), ds2 = x.d(2);
                const uint4 x0 = x.u128(0), x1 = x.u128(16);
                const uint4 x2 = x.u128(64), x3 = x.u128(80);
                int d0a = 0, d0b = 0, d2a = 0, d2b = 0;
                SLM_UNROLL
                for (int i = 0; i < 4; i++) {
                    d0a = __dp4a(q0[i], (int)word_of(x0, i), d0a);
                    d0b = __dp4a(q0[4 + i], (int)word_of(x1, i), d0b);
                    d2a = __dp4a(q2[i], (int)word_of(x2, i), d2a);
                    d2b = __dp4a(q2[4 + i], (int)word_of(x3, i), d2b);
                }
                const float v = __fmaf_rn(__fmul_rn(d, ds0.x), __int2float_rn(s0a * d0a + s0b * d0b), acc[t]);
                acc[t] = __fmaf_rn(__fmul_rn(d, ds2.x), __int2float_rn(s2a * d2a + s2b * d2b), v);
            }
        }
    }
};

} /* namespace slm_gemv */

#endif
