/*
 * kernels/cuda/mma.cuh - the tensor-core instructions the kernels use, one small device function
 * per instruction shape. Under nvcc each is its inline PTX (sm_80 and later); under the SIMT
 * emulator each has a twin that computes the same result with the fragment layout the PTX ISA
 * documents ("Matrix Fragments for mma.m16n8k32 / m16n8k16"), the lanes exchanging their
 * registers through a per-warp staging area in shared memory at one __syncwarp. So every
 * kernel built on them runs for real under emulation, and tests/test_cuda_mma.cpp checks each
 * twin (and, as test_cuda_mma_gpu, each real instruction) against a plain matrix product.
 *
 * Fragments (lane = 4 g + t: g = lane / 4 "groupID", t = lane % 4 "threadID_in_group"):
 *   s8 m16n8k32   A 16x32 row-major, 4 regs of 4 bytes: a[0] row g, k 4t..4t+3; a[1] row g + 8,
 *                 same k; a[2] row g, k 16+4t..16+4t+3; a[3] row g + 8, k 16+4t..
 *                 B 32x8 column-major, 2 regs: b[0] column g, k 4t..4t+3; b[1] column g, k 16+4t..
 *   s8 m16n8k16   A 2 regs: a[0] row g, k 4t..4t+3; a[1] row g + 8; B 1 reg: column g, k 4t..4t+3
 *   f16 m16n8k16  A 4 regs of 2 halves: a[0] row g, k 2t, 2t+1; a[1] row g + 8, k 2t, 2t+1;
 *   (and bf16)    a[2] row g, k 2t+8, 2t+9; a[3] row g + 8, k 2t+8, 2t+9 (low half first);
 *                 B 2 regs: b[0] column g, k 2t, 2t+1; b[1] column g, k 2t+8, 2t+9
 *   C / D 16x8    4 values: [0] (row g, column 2t), [1] (g, 2t + 1), [2] (g + 8, 2t), [3] (g + 8, 2t + 1)
 * The s8 products are exact (int32 sums of int8 products cannot overflow for k <= 32 and
 * |c| < 2^30), so the twin and the instruction agree bit for bit. The f16 / bf16 products accumulate
 * in f32 with the hardware's own internal order and rounding, which PTX leaves unspecified: the
 * twin sums in double and rounds once, and tests compare it with a tolerance. (Each output element
 * is a function of its own row of A, column of B and C alone, on the hardware and in the twin:
 * what batch invariance needs of the instruction.)
 */
#ifndef SLM_KERNELS_CUDA_MMA_CUH
#define SLM_KERNELS_CUDA_MMA_CUH

#include "kernels/cuda/compat.h"

#include <stdint.h>
#include <string.h>

namespace slm_mma {

#if SLM_EMULATED
/* The per-warp staging area of the twins: one slot of 8 words a lane, 32 warps a block, in two
 * sets that a warp's calls take in turn (each lane keeps which is next). A twin writes its
 * lane's slot, meets the warp at one __syncwarp and reads the others' slots; it needs no second
 * __syncwarp before it returns, because a lane writes the same set again only two calls later,
 * past the next call's __syncwarp, which every lane reaches only after it has read this one's. */
struct stage {
    uint32_t v[2][32][32][8];
    uint8_t next[32][32];
};
static inline stage &staging()
{
    __shared__ stage s;
    return s;
}
static inline unsigned flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
static inline uint32_t (*warp_slots())[8]
{
    const unsigned tid = flat_tid();
    stage &s = staging();
    uint8_t &next = s.next[tid >> 5][tid & 31];
    const int set = next;
    next ^= 1;
    return s.v[set][tid >> 5];
}
static inline int lane_id() { return (int)(flat_tid() & 31); }
static inline int s8_of(uint32_t w, int i) { return (int)(int8_t)(uint8_t)(w >> (8 * i)); }
/* The 4 byte products of two words of s8, summed (a word holds 4 consecutive k). */
static inline int dot4(uint32_t a, uint32_t b)
{
    return s8_of(a, 0) * s8_of(b, 0) + s8_of(a, 1) * s8_of(b, 1) + s8_of(a, 2) * s8_of(b, 2) + s8_of(a, 3) * s8_of(b, 3);
}
static inline float h_of(uint32_t w, int i) { return __half2float(__ushort_as_half((unsigned short)(w >> (16 * i)))); }
static inline float bf_of(uint32_t w, int i)
{
    uint32_t u = (w >> (16 * i)) << 16;   /* a bf16 is the high half of a float */
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#endif

/* D = A (16x32 s8) x B (32x8 s8) + C, int32. */
__device__ __forceinline__ void mma_s8_k32(int (&d)[4], const int (&a)[4], const int (&b)[2], const int (&c)[4])
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]), "r"(c[2]),
                   "r"(c[3]));
#elif SLM_EMULATED
    uint32_t (*slot)[8] = warp_slots();
    const int lane = lane_id(), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) slot[lane][i] = (uint32_t)a[i];
    slot[lane][4] = (uint32_t)b[0];
    slot[lane][5] = (uint32_t)b[1];
    __syncwarp();
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        int s = c[i];
        for (int kw = 0; kw < 8; kw++) {   /* the word of k = 4 kw .. 4 kw + 3 */
            /* A (row, k): lane 4 (row % 8) + (k % 16) / 4, register (row >= 8) + 2 (k >= 16) */
            const uint32_t aw = slot[4 * (row & 7) + (kw & 3)][(row >> 3) + 2 * (kw >> 2)];
            /* B (k, col): lane 4 col + (k % 16) / 4, register k >= 16 */
            const uint32_t bw = slot[4 * col + (kw & 3)][4 + (kw >> 2)];
            s += dot4(aw, bw);
        }
        d[i] = s;
    }
#endif
}

/* D = A (16x16 s8) x B (16x8 s8) + C, int32. */
__device__ __forceinline__ void mma_s8_k16(int (&d)[4], const int (&a)[2], int b, const int (&c)[4])
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                 "{%7, %8, %9, %10};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(b), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]));
#elif SLM_EMULATED
    uint32_t (*slot)[8] = warp_slots();
    const int lane = lane_id(), g = lane >> 2, t = lane & 3;
    slot[lane][0] = (uint32_t)a[0];
    slot[lane][1] = (uint32_t)a[1];
    slot[lane][2] = (uint32_t)b;
    __syncwarp();
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        int s = c[i];
        for (int kw = 0; kw < 4; kw++) s += dot4(slot[4 * (row & 7) + kw][row >> 3], slot[4 * col + kw][2]);
        d[i] = s;
    }
#endif
}

#if SLM_EMULATED
/* The twin of both 16-bit m16n8k16 shapes (their fragments are the same): H(w, i) the value of
 * half i of a register. */
template <float (*H)(uint32_t, int)>
static inline void mma_16bit_k16_twin(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                      const float (&c)[4])
{
    uint32_t (*slot)[8] = warp_slots();
    const int lane = lane_id(), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) slot[lane][i] = a[i];
    slot[lane][4] = b[0];
    slot[lane][5] = b[1];
    __syncwarp();
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        double s = c[i];
        for (int k = 0; k < 16; k++) {
            /* A (row, k): lane 4 (row % 8) + (k % 8) / 2, register (row >= 8) + 2 (k >= 8), half k % 2 */
            const uint32_t aw = slot[4 * (row & 7) + ((k & 7) >> 1)][(row >> 3) + 2 * (k >> 3)];
            const uint32_t bw = slot[4 * col + ((k & 7) >> 1)][4 + (k >> 3)];
            s += (double)H(aw, k & 1) * (double)H(bw, k & 1);
        }
        d[i] = (float)s;
    }
}
#endif

/* D = A (16x16 f16) x B (16x8 f16) + C, f32. */
__device__ __forceinline__ void mma_f16_k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                            const float (&c)[4])
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
#elif SLM_EMULATED
    mma_16bit_k16_twin<h_of>(d, a, b, c);
#endif
}

/* D = A (16x16 bf16) x B (16x8 bf16) + C, f32: mma_f16_k16's fragments, bf16 halves. */
__device__ __forceinline__ void mma_bf16_k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                             const float (&c)[4])
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
#elif SLM_EMULATED
    mma_16bit_k16_twin<bf_of>(d, a, b, c);
#endif
}

/* An s32 dot read as a float without a conversion instruction (the MMQ's; docs/cuda.md, "Dots
 * read as floats"). Started at DOT_BIAS (the bits of the float 1.5 x 2^23) instead of 0 (as an
 * mma's C, or a dot chain's first term), a dot's bits are those of the float 1.5 x 2^23 + dot,
 * exactly, while |dot| < 2^22 (the float's integers of [2^23, 2^24)); one FADD then gives the dot
 * as a float, the bits __int2float_rn gives. The dots of 32 int8 activations against 32 weights of
 * at most 8 bits stay far below (32 x 128 x 128 = 524,288), Q6_K's scaled sums do not. */
constexpr int DOT_BIAS = 0x4B400000;
__device__ __forceinline__ float dot_float(int biased) { return __fsub_rn(__int_as_float(biased), 12582912.0f); }
/* An unsigned integer below 2^23 (the K-quants' 6-bit scales and mins) as a float the same way,
 * its bits ORed into those of 2^23 (the OR joins the mask that extracted it). */
__device__ __forceinline__ float small_float(uint32_t v)
{
    return __fsub_rn(__uint_as_float(0x4B000000u | v), 8388608.0f);
}

} /* namespace slm_mma */

#endif
