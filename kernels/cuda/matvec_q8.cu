/*
 * kernels/cuda/matvec_q8.cu - the quantized-activation GEMV: x quantized to Q8_0 / Q8_1 / Q8_K
 * once, then y (n, rows) (+)= W . xq with integer dot products (__dp4a), as the CPU backend
 * (kernels/cpu/matmul.c) and llama.cpp compute a matmul on quantized weights.
 *
 * Both kernels give the CPU backend's bits, not merely its precision:
 * - k_quantize_*: each block with slm_cpu_quantize_row's operations (kernels/cpu/quantize.c):
 *   d = amax / 127, the multiplier 127 / amax, round half to even; Q8_K: the signed maximum
 *   (first on ties), -127 / max, 1 / iscale; every float operation an _rn intrinsic, so nvcc
 *   fuses nothing. The output bytes are slm_cpu_quantize_row's.
 * - k_mvq_32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8_0 / Q8_1): the order of
 *   kernels/cpu/vec_dot_ref.c, which the AVX2 and AVX-512 tiles share. 8 lanes per (row,
 *   token); lane k owns group k (elements 4k..4k+3 of every block): one __dp4a gives the
 *   group's exact integer sum, and acc_k = fma(float(sum), d_w * d_a, acc_k) block after
 *   block. The 8 groups are summed by a __shfl_xor_sync butterfly of offsets 4, 2, 1, which
 *   is the CPU's tree (((a0+a4)+(a2+a6))+((a1+a5)+(a3+a7))) exactly (an IEEE add is
 *   commutative: every lane ends with the same bits). Q4_1 / Q5_1's offset term m_w * s_a
 *   is its own serial fma chain, kept by the lane that stores the token, added last.
 * - k_mvq_k (Q4_K, Q5_K, Q6_K against Q8_K): within a 256-element block everything is an
 *   integer (lane j takes sub-block j, or Q6_K's two groups of 16 of it), summed exactly by
 *   a butterfly; then each lane applies the block's float step in the CPU's order:
 *   acc += (d_w * d_a) * float(sumi) - (dmin_w * d_a) * float(summ) (Q4_K, Q5_K),
 *   acc += (d_w * d_a) * float(sumi) (Q6_K).
 *
 * W is in the device layout (kernels.h, layout.cu), made at upload so that these loads are
 * 16 bytes wide: k_mvq_32 reads a quad of 4 blocks per lane in one 16-byte load of scales,
 * (Q5_x) one of qh and one of quants (its group of all 4 blocks), and a row's tail of nb % 4
 * blocks with 2- and 4-byte loads; k_mvq_k reads Q4_K / Q5_K as GGUF has them and Q6_K in
 * 224-byte blocks, all in 16-byte loads. Only where the bytes come from differs from GGUF's
 * layout: every lane still runs its blocks in order b = 0, 1, 2, ... with the same operations.
 *
 * Shape: 128 threads = 16 rows (8 lanes each) per block; blockIdx.y picks a group of TOKENS
 * tokens (8 for n <= 8, else 32) that share every weight load. A (row, token) result is
 * computed in the CPU's order whatever the group size and the token's slot, so a token's y
 * is the same for every n and bit-identical to the CPU backend's for the same W and x.
 *
 * k_mvq_fused (n <= 8, up to 3 weights of one type and cols in one grid): each block quantizes
 * all of x into shared memory with the per-block functions of k_quantize_*, then runs the row
 * bodies of k_mvq_32 / k_mvq_k on it: the same bytes and operations, so the same bits, with one
 * launch where the two-kernel path takes 1 + n_w.
 */
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/qunits.cuh"

#define MVQ_ROWS 16                /* rows per block: 8 lanes each, 128 threads */
#define MVQ_THREADS (MVQ_ROWS * 8)

using slm_cuda::h2f;
using slm_cuda::ld_u32;
using slm_cuda::ld_u32_a2;
using slm_cuda::ld_u128;

/* ======================================================================================
 * Activation quantization
 * ====================================================================================== */

/* Block g of x (32 floats at 32g) quantized by one warp (lane = lane id) to Q8_0 (34 bytes:
 * d, qs) or Q8_1 (36 bytes: d, s, qs) at block g of q. x (n, cols) and q (n rows) are both
 * contiguous, so block g of the output is block g of x. q may be global or shared memory. */
template <bool Q81>
__device__ __forceinline__ void quantize_block_q8_32(const float *__restrict__ x, int64_t g, uint8_t *__restrict__ q,
                                                     int lane)
{
    const float v = x[g * 32 + lane];
    float amax = fabsf(v);
    SLM_UNROLL
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = amax != 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    const int qv = __float2int_rn(__fmul_rn(v, id));
    const int hdr = Q81 ? 4 : 2;
    uint8_t *blk = q + g * (hdr + 32);
    blk[hdr + lane] = (uint8_t)(int8_t)qv;
    int sum = qv;
    if (Q81) {
        SLM_UNROLL
        for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    }
    if (lane == 0) {
        *reinterpret_cast<__half *>(blk) = __float2half_rn(d);
        if (Q81) *reinterpret_cast<__half *>(blk + 2) = __float2half_rn(__fmul_rn(__int2float_rn(sum), d));
    }
}

/* One warp per block of 32 floats (8 warps a block). */
template <bool Q81>
__global__ void __launch_bounds__(256) k_quantize_q8_32(const float *__restrict__ x, int64_t n_blocks,
                                                         uint8_t *__restrict__ q)
{
    const int64_t g = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (g >= n_blocks) return; /* the whole warp */
    quantize_block_q8_32<Q81>(x, g, q, threadIdx.x & 31);
}

/* Q8_K block g of x (256 floats at 256g) quantized by one warp to block g of q (292 bytes:
 * float d, qs[256], bsums[16]; global or shared memory); lane l takes elements 8l..8l+7. */
__device__ __forceinline__ void quantize_block_q8_K(const float *__restrict__ x, int64_t g, uint8_t *__restrict__ q,
                                                    int lane)
{
    const float *xb = x + g * SLM_QK_K + 8 * lane;
    float v[8];
    /* the signed maximum: the largest |x|, the first such element on ties */
    float a = 0.0f, m = 0.0f;
    int at = SLM_QK_K;
    SLM_UNROLL
    for (int i = 0; i < 8; i++) {
        v[i] = xb[i];
        if (fabsf(v[i]) > a) a = fabsf(v[i]), m = v[i], at = 8 * lane + i;
    }
    SLM_UNROLL
    for (int off = 16; off > 0; off >>= 1) {
        float oa = __shfl_xor_sync(0xffffffffu, a, off), om = __shfl_xor_sync(0xffffffffu, m, off);
        int oat = __shfl_xor_sync(0xffffffffu, at, off);
        if (oa > a || (oa == a && oat < at)) a = oa, m = om, at = oat;
    }
    uint8_t *blk = q + g * (int64_t)sizeof(struct slm_block_q8_K);
    uint32_t w0 = 0, w1 = 0;
    int s = 0;
    float iscale = 0.0f;
    if (m != 0.0f) {
        iscale = __fdiv_rn(-127.0f, m);
        SLM_UNROLL
        for (int i = 0; i < 8; i++) {
            int qv = min(__float2int_rn(__fmul_rn(iscale, v[i])), 127);
            s += qv;
            if (i < 4) w0 |= (uint32_t)(qv & 0xff) << (8 * i);
            else w1 |= (uint32_t)(qv & 0xff) << (8 * (i - 4));
        }
    }
    *reinterpret_cast<uint32_t *>(blk + 4 + 8 * lane) = w0;
    *reinterpret_cast<uint32_t *>(blk + 8 + 8 * lane) = w1;
    s += __shfl_xor_sync(0xffffffffu, s, 1); /* the group of 16: lanes 2i and 2i + 1 */
    if (!(lane & 1)) *reinterpret_cast<int16_t *>(blk + 4 + SLM_QK_K + lane) = (int16_t)s;
    if (lane == 0) *reinterpret_cast<float *>(blk) = m != 0.0f ? __fdiv_rn(1.0f, iscale) : 0.0f;
}

/* One warp per Q8_K block (8 warps a block). */
__global__ void __launch_bounds__(256) k_quantize_q8_K(const float *__restrict__ x, int64_t n_blocks,
                                                        uint8_t *__restrict__ q)
{
    const int64_t g = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (g >= n_blocks) return;
    quantize_block_q8_K(x, g, q, threadIdx.x & 31);
}

/* ======================================================================================
 * The 32-element weight types
 * ====================================================================================== */

/* Per type: SB (scale bytes of a block: 2 for d, 4 for d and m), Q5 (a qh word), WORDS (qs
 * words of a block), M (an offset m), QUAD (a quad's bytes in the device layout), and unpack:
 * group k (elements 4k..4k+3) of a block as 4 signed bytes and its scales, from the block's
 * scale bits (d in the low half, m in the high one), qh and qs word. */
template <uint32_t T> struct wq32;

/* Bytes b in 0..15 (0..31) minus 8 (16), as two's complement bytes: no carry crosses a byte. */
__device__ __forceinline__ int minus8(uint32_t b) { return (int)((b + 0x78787878u) ^ 0x80808080u); }
__device__ __forceinline__ int minus16(uint32_t b) { return (int)((b + 0x70707070u) ^ 0x80808080u); }

/* The 5th bits of elements 4k..4k+3 (bits 4k.. of qh) moved to bit 4 of each byte. */
__device__ __forceinline__ uint32_t q5_high(uint32_t qh, int k)
{
    uint32_t h = (qh >> (4 * k)) & 0xfu;
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

/* Low nibbles of qs[4k..4k+3] for k < 4, the high nibbles of qs[4(k-4)..] for k >= 4. */
__device__ __forceinline__ uint32_t nibbles(uint32_t word, int k)
{
    return (k < 4 ? word : word >> 4) & 0x0f0f0f0fu;
}

template <> struct wq32<SLM_TYPE_Q4_0> {
    static const int SB = 2, WORDS = 4, QUAD = 80;
    static const bool Q5 = false, M = false;
    __device__ static void unpack(uint32_t sc, uint32_t, uint32_t qw, int k, int *q, float *d, float *)
    {
        *d = h2f(sc);
        *q = minus8(nibbles(qw, k));
    }
};
template <> struct wq32<SLM_TYPE_Q4_1> {
    static const int SB = 4, WORDS = 4, QUAD = 80;
    static const bool Q5 = false, M = true;
    __device__ static void unpack(uint32_t sc, uint32_t, uint32_t qw, int k, int *q, float *d, float *m)
    {
        *d = h2f(sc);
        *m = h2f(sc >> 16);
        *q = (int)nibbles(qw, k);
    }
};
template <> struct wq32<SLM_TYPE_Q5_0> {
    static const int SB = 2, WORDS = 4, QUAD = 96;
    static const bool Q5 = true, M = false;
    __device__ static void unpack(uint32_t sc, uint32_t qh, uint32_t qw, int k, int *q, float *d, float *)
    {
        *d = h2f(sc);
        *q = minus16(nibbles(qw, k) | q5_high(qh, k));
    }
};
template <> struct wq32<SLM_TYPE_Q5_1> {
    static const int SB = 4, WORDS = 4, QUAD = 96;
    static const bool Q5 = true, M = true;
    __device__ static void unpack(uint32_t sc, uint32_t qh, uint32_t qw, int k, int *q, float *d, float *m)
    {
        *d = h2f(sc);
        *m = h2f(sc >> 16);
        *q = (int)(nibbles(qw, k) | q5_high(qh, k));
    }
};
template <> struct wq32<SLM_TYPE_Q8_0> {
    static const int SB = 2, WORDS = 8, QUAD = 144;
    static const bool Q5 = false, M = false;
    __device__ static void unpack(uint32_t sc, uint32_t, uint32_t qw, int, int *q, float *d, float *)
    {
        *d = h2f(sc);
        *q = (int)qw;
    }
};

/* Lane k's word of the quants of a block: word k & 3 of the nibble types, k of Q8_0. */
template <class W> __device__ __forceinline__ int quant_word(int k)
{
    return W::WORDS == 8 ? k : (k & 3);
}

/* A quad as lane k loads it (the device layout, kernels.h): the scales (every lane of the row
 * loads the same 16 bytes), qh for Q5_x, and the 16 bytes of quants that hold the lane's word
 * of each of the 4 blocks (word i = block i). */
struct quad_lane {
    uint4 s, h, q;
};

template <class W> __device__ __forceinline__ void quad_load(const uint8_t *quad, int k, quad_lane *l)
{
    const int hq = W::Q5 ? 32 : 16;
    l->s = ld_u128(quad);
    if (W::Q5) l->h = ld_u128(quad + 16);
    l->q = ld_u128(quad + hq + 16 * quant_word<W>(k));
}

/* Block i of a loaded quad. */
template <class W>
__device__ __forceinline__ void quad_block(const quad_lane &l, int i, int k, int *q, float *d, float *m)
{
    const uint32_t sc = W::SB == 4 ? slm_cuda::word_of(l.s, i) : slm_cuda::word_of(l.s, i >> 1) >> (16 * (i & 1));
    W::unpack(sc, W::Q5 ? slm_cuda::word_of(l.h, i) : 0u, slm_cuda::word_of(l.q, i), k, q, d, m);
}

/* Block i of a row's tail of t blocks (t = nb % 4, at the end of the full quads): 2- and
 * 4-byte loads, the tail being packed (kernels.h). */
template <class W>
__device__ __forceinline__ void tail_block(const uint8_t *tail, int t, int i, int k, int *q, float *d, float *m)
{
    const int s_end = (t * W::SB + 3) & ~3, hq = s_end + (W::Q5 ? 4 * t : 0);
    const uint32_t sc = W::SB == 4 ? ld_u32(tail + 4 * i) : *reinterpret_cast<const uint16_t *>(tail + 2 * i);
    W::unpack(sc, W::Q5 ? ld_u32(tail + s_end + 4 * i) : 0u, ld_u32(tail + hq + 4 * t * quant_word<W>(k) + 4 * i), k,
              q, d, m);
}

/* Block b of the row (weights wq, wd, wm of lane k) against the TOKENS activations: the CPU's
 * step, acc_k = fma(float(dot), d_w * d_a, acc_k), and for an offset m the serial chain
 * summ = fma(m_w, s_a, summ) in the lane that stores the token. */
template <class W, int TOKENS>
__device__ __forceinline__ void mvq_block(int wq, float wd, float wm, int b, int k, const uint8_t *arow, int a_bytes,
                                          int nt, float *acc, float *summ)
{
    const int AB = W::M ? 36 : 34, AQ = W::M ? 4 : 2; /* activation block bytes, offset of qs */
    SLM_UNROLL
    for (int t = 0; t < TOKENS; t++) {
        if (t < nt) {
            const uint8_t *ab = arow + (size_t)t * (size_t)a_bytes + (size_t)b * AB;
            int aq;
            float ad, as = 0.0f;
            if (W::M) {
                uint32_t ds = ld_u32(ab);
                ad = h2f(ds);
                as = h2f(ds >> 16);
                aq = (int)ld_u32(ab + AQ + 4 * k);
            } else {
                ad = h2f(*reinterpret_cast<const uint16_t *>(ab));
                aq = (int)ld_u32_a2(ab + AQ + 4 * k);
            }
            acc[t] = __fmaf_rn(__int2float_rn(__dp4a(wq, aq, 0)), __fmul_rn(wd, ad), acc[t]);
            if (W::M && k == (t & 7)) summ[t >> 3] = __fmaf_rn(wm, as, summ[t >> 3]);
        }
    }
}

/*
 * Rows of W (nb blocks each, in the device layout: quads, then a tail) against n activation
 * rows a (Q8_1 when the weight type has an offset m, else Q8_0), a_bytes apart, a in global or
 * shared memory. The block's rows are rb * MVQ_ROWS.., its tokens t0..; threadIdx.x / 8 picks the
 * row, threadIdx.x % 8 = k the group; the 8 lanes of a row are 8 consecutive lanes of one warp.
 * A lane loads a quad (two or three 16-byte loads) and then runs its 4 blocks in order, then
 * the tail's blocks: the blocks still go b = 0, 1, 2, ... as the CPU's do.
 */
template <uint32_t WT, int TOKENS>
__device__ __forceinline__ void mvq_32_rows(const uint8_t *__restrict__ w, size_t w_row_bytes, int rows, int nb,
                                            const uint8_t *__restrict__ a, int a_bytes, int n, float *__restrict__ y,
                                            int accumulate, int rb, int t0)
{
    typedef wq32<WT> W;
    const int k = threadIdx.x & 7;
    const int row = rb * MVQ_ROWS + (threadIdx.x >> 3);
    /* A row past the end computes row rows - 1 and stores nothing: the warp's shuffles
     * need all 32 lanes. */
    const int r = min(row, rows - 1);
    const int nt = min(TOKENS, n - t0);
    const int nq = nb / 4, nt_blocks = nb % 4;
    const uint8_t *wrow = w + (size_t)r * w_row_bytes;
    const uint8_t *arow = a + (size_t)t0 * (size_t)a_bytes;

    float acc[TOKENS];
    float summ[TOKENS / 8]; /* token t's offset chain, in lane t % 8 (the lane that stores t) */
    SLM_UNROLL
    for (int t = 0; t < TOKENS; t++) acc[t] = 0.0f;
    SLM_UNROLL
    for (int t = 0; t < TOKENS / 8; t++) summ[t] = 0.0f;

    const uint8_t *tail = wrow + (size_t)nq * W::QUAD;
    quad_lane lq = {};   /* loaded at b = 0 (when nq > 0); the initializer quiets the host compiler */
    for (int b = 0; b < nb; b++) {
        const int g = b >> 2, i = b & 3;
        int wq;
        float wd, wm = 0.0f;
        if (g < nq) {
            if (i == 0) quad_load<W>(wrow + (size_t)g * W::QUAD, k, &lq);
            quad_block<W>(lq, i, k, &wq, &wd, &wm);
        } else {
            tail_block<W>(tail, nt_blocks, i, k, &wq, &wd, &wm);
        }
        mvq_block<W, TOKENS>(wq, wd, wm, b, k, arow, a_bytes, nt, acc, summ);
    }

    SLM_UNROLL
    for (int t = 0; t < TOKENS; t++) {
        if (t < nt) {
            float s = acc[t];
            s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, 4));
            s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, 2));
            s = __fadd_rn(s, __shfl_xor_sync(0xffffffffu, s, 1));
            if (W::M) s = __fadd_rn(s, summ[t >> 3]);
            if (row < rows && k == (t & 7)) {
                float *yp = y + (size_t)(t0 + t) * (size_t)rows + row;
                *yp = accumulate ? __fadd_rn(*yp, s) : s;
            }
        }
    }
}

template <uint32_t WT, int TOKENS>
__global__ void __launch_bounds__(MVQ_THREADS)
    k_mvq_32(const uint8_t *__restrict__ w, size_t w_row_bytes, int rows, int nb, const uint8_t *__restrict__ a,
             int a_bytes, int n, float *__restrict__ y, int accumulate)
{
    mvq_32_rows<WT, TOKENS>(w, w_row_bytes, rows, nb, a, a_bytes, n, y, accumulate, blockIdx.x, blockIdx.y * TOKENS);
}

/* ======================================================================================
 * The K-quants
 * ====================================================================================== */

/* Lane j's integer sums over sub-block j of one block against one Q8_K block ab:
 * sumi = scale * dot, summ = min * (bsums of the sub-block) (0 for Q6_K). */
template <uint32_t T> struct wqk;

/* Q4_K / Q5_K: sub-block j = 32 elements, nibble j & 1 of qs[32 (j / 2) ..], (sc, m) 6-bit. */
template <bool FIVE> struct wqk45 {
    static const int BYTES = FIVE ? 176 : 144;
    struct lane_w {
        int q[8];      /* elements 4i..4i+3 of the sub-block, as bytes */
        int sc, m;
        float d, dmin;
    };
    __device__ static void load(const uint8_t *b, int j, lane_w *l)
    {
        uint32_t dm = ld_u32(b);
        l->d = h2f(dm);
        l->dmin = h2f(dm >> 16);
        slm_cuda::k_scale_min(j, b + 4, &l->sc, &l->m);
        const uint8_t *qs = b + 16 + (FIVE ? 32 : 0) + 32 * (j / 2);
        const int shift = 4 * (j & 1);
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            uint4 v = slm_cuda::ld_u128(qs + 16 * h);
            uint4 hv = FIVE ? slm_cuda::ld_u128(b + 16 + 16 * h) : make_uint4(0, 0, 0, 0);
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                uint32_t x = (slm_cuda::word_of(v, i) >> shift) & 0x0f0f0f0fu;
                if (FIVE) x |= ((slm_cuda::word_of(hv, i) >> j) & 0x01010101u) << 4;
                l->q[4 * h + i] = (int)x;
            }
        }
    }
    __device__ static void sums(const lane_w *l, const uint8_t *ab, int j, int *sumi, int *summ)
    {
        int s = 0;
        SLM_UNROLL
        for (int i = 0; i < 8; i++) s = __dp4a(l->q[i], (int)ld_u32(ab + 4 + 32 * j + 4 * i), s);
        uint32_t bs = ld_u32(ab + 4 + SLM_QK_K + 4 * j);
        *sumi = l->sc * s;
        *summ = l->m * ((int)(int16_t)(bs & 0xffffu) + (int)(int16_t)(bs >> 16));
    }
    __device__ static float step(const lane_w *l, float ad, int sumi, int summ, float acc)
    {
        float d = __fmul_rn(l->d, ad), dmin = __fmul_rn(l->dmin, ad);
        return __fadd_rn(acc, __fsub_rn(__fmul_rn(d, __int2float_rn(sumi)), __fmul_rn(dmin, __int2float_rn(summ))));
    }
};
template <> struct wqk<SLM_TYPE_Q4_K> : wqk45<false> {};
template <> struct wqk<SLM_TYPE_Q5_K> : wqk45<true> {};

/* Q6_K: lane j takes elements 32j..32j+31 (half j / 4, quarter j % 4): groups 2j and 2j + 1.
 * The device layout pads each block to 224 bytes, so ql, qh and the scales (192..207) are
 * 16-byte aligned pieces: two 16-byte loads each of ql and qh, one of the scales. */
template <> struct wqk<SLM_TYPE_Q6_K> {
    static const int BYTES = 224;
    struct lane_w {
        int q[8];      /* (value - 32) of elements 4i..4i+3, as bytes */
        int sc0, sc1;
        float d;
    };
    __device__ static void load(const uint8_t *b, int j, lane_w *l)
    {
        const int hf = j >> 2, quarter = j & 3;
        const uint8_t *ql = b + 64 * hf + 32 * (quarter & 1), *qh = b + 128 + 32 * hf;
        const int lshift = quarter >= 2 ? 4 : 0, hshift = 2 * quarter;
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            uint4 lv = slm_cuda::ld_u128(ql + 16 * h), hv = slm_cuda::ld_u128(qh + 16 * h);
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                uint32_t lo = (slm_cuda::word_of(lv, i) >> lshift) & 0x0f0f0f0fu;
                uint32_t hi = ((slm_cuda::word_of(hv, i) >> hshift) & 0x03030303u) << 4;
                l->q[4 * h + i] = (int)(((lo | hi) + 0x60606060u) ^ 0x80808080u);   /* minus 32, bytewise */
            }
        }
        uint4 sv = slm_cuda::ld_u128(b + 192);
        l->sc0 = (int8_t)slm_cuda::byte_of(sv, 2 * j);
        l->sc1 = (int8_t)slm_cuda::byte_of(sv, 2 * j + 1);
        l->d = h2f(*reinterpret_cast<const uint16_t *>(b + 208));
    }
    __device__ static void sums(const lane_w *l, const uint8_t *ab, int j, int *sumi, int *summ)
    {
        int s0 = 0, s1 = 0;
        SLM_UNROLL
        for (int i = 0; i < 4; i++) s0 = __dp4a(l->q[i], (int)ld_u32(ab + 4 + 32 * j + 4 * i), s0);
        SLM_UNROLL
        for (int i = 4; i < 8; i++) s1 = __dp4a(l->q[i], (int)ld_u32(ab + 4 + 32 * j + 4 * i), s1);
        *sumi = l->sc0 * s0 + l->sc1 * s1;
        *summ = 0;
    }
    __device__ static float step(const lane_w *l, float ad, int sumi, int, float acc)
    {
        return __fadd_rn(acc, __fmul_rn(__fmul_rn(l->d, ad), __int2float_rn(sumi)));
    }
};

/* Rows rb * MVQ_ROWS.. of a K-quant W against tokens t0.. of a (Q8_K rows, a_bytes apart, in
 * global or shared memory); lane j = threadIdx.x % 8 takes sub-block j of every block. */
template <uint32_t WT, int TOKENS>
__device__ __forceinline__ void mvq_k_rows(const uint8_t *__restrict__ w, int rows, int nb,
                                           const uint8_t *__restrict__ a, int a_bytes, int n, float *__restrict__ y,
                                           int accumulate, int rb, int t0)
{
    typedef wqk<WT> W;
    const int AB = (int)sizeof(struct slm_block_q8_K);
    const int j = threadIdx.x & 7;
    const int row = rb * MVQ_ROWS + (threadIdx.x >> 3);
    const int r = min(row, rows - 1);
    const int nt = min(TOKENS, n - t0);
    const uint8_t *wrow = w + (size_t)r * (size_t)nb * W::BYTES;
    const uint8_t *arow = a + (size_t)t0 * (size_t)a_bytes;

    float acc[TOKENS];
    SLM_UNROLL
    for (int t = 0; t < TOKENS; t++) acc[t] = 0.0f;

    for (int b = 0; b < nb; b++) {
        typename W::lane_w lw;
        W::load(wrow + (size_t)b * W::BYTES, j, &lw);
        SLM_UNROLL
        for (int t = 0; t < TOKENS; t++) {
            if (t < nt) {
                const uint8_t *ab = arow + (size_t)t * (size_t)a_bytes + (size_t)b * AB;
                int sumi, summ;
                W::sums(&lw, ab, j, &sumi, &summ);
                SLM_UNROLL
                for (int off = 4; off > 0; off >>= 1) { /* integers: exact in any order */
                    sumi += __shfl_xor_sync(0xffffffffu, sumi, off);
                    summ += __shfl_xor_sync(0xffffffffu, summ, off);
                }
                acc[t] = W::step(&lw, *reinterpret_cast<const float *>(ab), sumi, summ, acc[t]);
            }
        }
    }

    SLM_UNROLL
    for (int t = 0; t < TOKENS; t++) {
        if (t < nt && row < rows && j == (t & 7)) {
            float *yp = y + (size_t)(t0 + t) * (size_t)rows + row;
            *yp = accumulate ? __fadd_rn(*yp, acc[t]) : acc[t];
        }
    }
}

template <uint32_t WT, int TOKENS>
__global__ void __launch_bounds__(MVQ_THREADS)
    k_mvq_k(const uint8_t *__restrict__ w, size_t /* row bytes: nb * W::BYTES */, int rows, int nb,
            const uint8_t *__restrict__ a, int a_bytes, int n, float *__restrict__ y, int accumulate)
{
    mvq_k_rows<WT, TOKENS>(w, rows, nb, a, a_bytes, n, y, accumulate, blockIdx.x, blockIdx.y * TOKENS);
}

/* ======================================================================================
 * The fused GEMV (n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL): x quantized in each block
 * ====================================================================================== */

/* slm_cuda_q8_act_type at compile time, for the types with an integer GEMV. */
__host__ __device__ constexpr uint32_t act_type_of(uint32_t wt)
{
    return wt == SLM_TYPE_Q4_1 || wt == SLM_TYPE_Q5_1                             ? SLM_TYPE_Q8_1
           : wt == SLM_TYPE_Q4_K || wt == SLM_TYPE_Q5_K || wt == SLM_TYPE_Q6_K ? SLM_TYPE_Q8_K
                                                                                : SLM_TYPE_Q8_0;
}

/* Up to SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS weights of one type and cols in one grid: weight i
 * owns blockIdx.x in [end[i - 1], end[i]) (end[-1] = 0), MVQ_ROWS of its rows a block. */
struct mvq_fused_args {
    const uint8_t *w[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    float *y[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int rows[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int end[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int n_w;
    size_t w_row_bytes;
    int nb;                 /* weight blocks of a row */
    const float *x;         /* (n, cols) */
    int64_t a_blocks;       /* activation blocks of x: n * cols / (32 or 256) */
    int a_bytes;            /* one token's quantized row */
    int n;
    int accumulate;
};

/*
 * The block's 4 warps quantize all of x (n rows) into dynamic shared memory, warp v taking
 * blocks v, v + 4, ... with the per-block code of k_quantize_q8_32 / k_quantize_q8_K (the same
 * bytes); then, after a barrier, the block's rows of its weight run mvq_32_rows / mvq_k_rows
 * against the shared copy: the same arithmetic as slm_cuda_matvec_q8, so the same bits.
 */
template <uint32_t WT, bool KQ>
__global__ void __launch_bounds__(MVQ_THREADS) k_mvq_fused(const struct mvq_fused_args p)
{
    SLM_DYN_SHARED(uint4, xq_words);   /* uint4: 16-byte aligned; p.n * p.a_bytes bytes */
    uint8_t *xq = reinterpret_cast<uint8_t *>(xq_words);
    constexpr uint32_t at = act_type_of(WT);
    const int lane = threadIdx.x & 31;
    for (int64_t g = threadIdx.x >> 5; g < p.a_blocks; g += MVQ_THREADS / 32) {
        if constexpr (at == SLM_TYPE_Q8_K) quantize_block_q8_K(p.x, g, xq, lane);
        else if constexpr (at == SLM_TYPE_Q8_1) quantize_block_q8_32<true>(p.x, g, xq, lane);
        else quantize_block_q8_32<false>(p.x, g, xq, lane);
    }
    __syncthreads();

    /* this block's weight: constant indices only, so that p stays in the parameter space */
    const uint8_t *w = p.w[0];
    float *y = p.y[0];
    int rows = p.rows[0], rb = blockIdx.x;
    SLM_UNROLL
    for (int i = 1; i < SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS; i++) {
        if (i < p.n_w && (int)blockIdx.x >= p.end[i - 1]) {
            w = p.w[i];
            y = p.y[i];
            rows = p.rows[i];
            rb = (int)blockIdx.x - p.end[i - 1];
        }
    }
    const int T = SLM_CUDA_MATVEC_Q8_TOKENS_SMALL;
    if constexpr (KQ)
        mvq_k_rows<WT, T>(w, rows, p.nb, xq, p.a_bytes, p.n, y, p.accumulate, rb, 0);
    else
        mvq_32_rows<WT, T>(w, p.w_row_bytes, rows, p.nb, xq, p.a_bytes, p.n, y, p.accumulate, rb, 0);
}

/* -------------------------------------------------------------------------------------- */

extern "C" uint32_t slm_cuda_q8_act_type(uint32_t wtype)
{
    switch (wtype) {
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q5_0: case SLM_TYPE_Q8_0: return SLM_TYPE_Q8_0;
    case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_1: return SLM_TYPE_Q8_1;
    case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: case SLM_TYPE_Q6_K: return SLM_TYPE_Q8_K;
    default: return UINT32_MAX;
    }
}

extern "C" size_t slm_cuda_q8_row_bytes(uint32_t act_type, int64_t cols)
{
    if (act_type != SLM_TYPE_Q8_0 && act_type != SLM_TYPE_Q8_1 && act_type != SLM_TYPE_Q8_K) return 0;
    uint32_t be = slm_qblock_elems(act_type);
    if (cols <= 0 || cols % be != 0) return 0;
    return (size_t)(cols / be) * slm_qblock_bytes(act_type);
}

extern "C" int slm_cuda_quantize_q8(uint32_t act_type, const float *x, int n, int64_t cols, void *q,
                                    struct CUstream_st *stream)
{
    size_t row_bytes = slm_cuda_q8_row_bytes(act_type, cols);
    SLM_CUDA_ARG(row_bytes != 0 && n >= 1 && cols <= INT32_MAX);
    int64_t n_blocks = (int64_t)n * (cols / slm_qblock_elems(act_type));
    SLM_CUDA_ARG((n_blocks + 7) / 8 <= INT32_MAX);
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_DEVICE(q, (size_t)n * row_bytes);
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4) && slm_cuda_aligned(q, act_type == SLM_TYPE_Q8_0 ? 2 : 4));
    unsigned grid = (unsigned)((n_blocks + 7) / 8);
    uint8_t *out = (uint8_t *)q;
    switch (act_type) {
    case SLM_TYPE_Q8_0: SLM_LAUNCH((k_quantize_q8_32<false>), grid, 256, 0, stream, x, n_blocks, out); break;
    case SLM_TYPE_Q8_1: SLM_LAUNCH((k_quantize_q8_32<true>), grid, 256, 0, stream, x, n_blocks, out); break;
    default: SLM_LAUNCH(k_quantize_q8_K, grid, 256, 0, stream, x, n_blocks, out); break;
    }
    return slm_cuda_launched();
}

template <uint32_t WT, int TOKENS, bool KQ>
static int launch_mvq(const void *w, size_t wrb, int rows, int nb, const void *q, int a_bytes, int n, float *y,
                      int accumulate, cudaStream_t stream)
{
    dim3 grid((unsigned)((rows + MVQ_ROWS - 1) / MVQ_ROWS), (unsigned)((n + TOKENS - 1) / TOKENS));
    if constexpr (KQ)
        SLM_LAUNCH((k_mvq_k<WT, TOKENS>), grid, MVQ_THREADS, 0, stream, (const uint8_t *)w, wrb, rows, nb,
                   (const uint8_t *)q, a_bytes, n, y, accumulate);
    else
        SLM_LAUNCH((k_mvq_32<WT, TOKENS>), grid, MVQ_THREADS, 0, stream, (const uint8_t *)w, wrb, rows, nb,
                   (const uint8_t *)q, a_bytes, n, y, accumulate);
    return slm_cuda_launched();
}

template <uint32_t WT, bool KQ>
static int dispatch_tokens(const void *w, size_t wrb, int rows, int nb, const void *q, int a_bytes, int n, float *y,
                           int accumulate, cudaStream_t stream)
{
    if (n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL)
        return launch_mvq<WT, SLM_CUDA_MATVEC_Q8_TOKENS_SMALL, KQ>(w, wrb, rows, nb, q, a_bytes, n, y, accumulate,
                                                                   stream);
    return launch_mvq<WT, SLM_CUDA_MATVEC_Q8_TOKENS_LARGE, KQ>(w, wrb, rows, nb, q, a_bytes, n, y, accumulate, stream);
}

extern "C" int slm_cuda_matvec_q8(uint32_t type, const void *w, int64_t rows, int64_t cols, const void *q, int n,
                                  float *y, int accumulate, struct CUstream_st *stream)
{
    uint32_t at = slm_cuda_q8_act_type(type);
    SLM_CUDA_ARG(at != UINT32_MAX);
    size_t row_bytes = slm_cuda_device_row_bytes(type, cols), a_bytes = slm_cuda_q8_row_bytes(at, cols);
    SLM_CUDA_ARG(row_bytes != 0 && a_bytes != 0 && a_bytes <= INT32_MAX && rows >= 1 &&
                 rows <= INT32_MAX - MVQ_ROWS && cols <= INT32_MAX);
    SLM_CUDA_ARG(n >= 1 && (n + SLM_CUDA_MATVEC_Q8_TOKENS_LARGE - 1) / SLM_CUDA_MATVEC_Q8_TOKENS_LARGE <= 65535);
    SLM_CUDA_DEVICE(w, (size_t)rows * row_bytes);
    SLM_CUDA_DEVICE(q, (size_t)n * a_bytes);
    SLM_CUDA_DEVICE(y, (size_t)n * (size_t)rows * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(w, 16) && slm_cuda_aligned(q, at == SLM_TYPE_Q8_0 ? 2 : 4) &&
                 slm_cuda_aligned(y, 4));
    const int r = (int)rows, nb = (int)(cols / slm_qblock_elems(type)), ab = (int)a_bytes;
    switch (type) {
#define MVQ_CASE(T, KQ) \
    case T: return dispatch_tokens<T, KQ>(w, row_bytes, r, nb, q, ab, n, y, accumulate, stream);
        MVQ_CASE(SLM_TYPE_Q4_0, false)
        MVQ_CASE(SLM_TYPE_Q4_1, false)
        MVQ_CASE(SLM_TYPE_Q5_0, false)
        MVQ_CASE(SLM_TYPE_Q5_1, false)
        MVQ_CASE(SLM_TYPE_Q8_0, false)
        MVQ_CASE(SLM_TYPE_Q4_K, true)
        MVQ_CASE(SLM_TYPE_Q5_K, true)
        MVQ_CASE(SLM_TYPE_Q6_K, true)
#undef MVQ_CASE
    default: return -EINVAL;
    }
}

extern "C" int slm_cuda_matvec_q8_fused_fits(uint32_t type, int64_t cols, int n)
{
    size_t a_bytes = slm_cuda_q8_row_bytes(slm_cuda_q8_act_type(type), cols);
    return a_bytes != 0 && slm_cuda_device_row_bytes(type, cols) != 0 && n >= 1 &&
           n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL && (size_t)n * a_bytes <= SLM_CUDA_MATVEC_Q8_FUSED_SMEM;
}

extern "C" int slm_cuda_matvec_q8_fused(uint32_t type, int n_w, const void *const *w, const int64_t *rows,
                                        int64_t cols, const float *x, int n, float *const *y, int accumulate,
                                        struct CUstream_st *stream)
{
    SLM_CUDA_ARG(slm_cuda_matvec_q8_fused_fits(type, cols, n));
    SLM_CUDA_ARG(n_w >= 1 && n_w <= SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS && w && rows && y);
    const uint32_t at = slm_cuda_q8_act_type(type);
    const size_t row_bytes = slm_cuda_device_row_bytes(type, cols), a_bytes = slm_cuda_q8_row_bytes(at, cols);
    struct mvq_fused_args p = {};
    int64_t blocks = 0;
    for (int i = 0; i < n_w; i++) {
        SLM_CUDA_ARG(rows[i] >= 1 && rows[i] <= INT32_MAX - MVQ_ROWS);
        SLM_CUDA_DEVICE(w[i], (size_t)rows[i] * row_bytes);
        SLM_CUDA_DEVICE(y[i], (size_t)n * (size_t)rows[i] * sizeof(float));
        SLM_CUDA_ARG(slm_cuda_aligned(w[i], 16) && slm_cuda_aligned(y[i], 4));
        blocks += (rows[i] + MVQ_ROWS - 1) / MVQ_ROWS;
        SLM_CUDA_ARG(blocks <= INT32_MAX);
        p.w[i] = (const uint8_t *)w[i];
        p.y[i] = y[i];
        p.rows[i] = (int)rows[i];
        p.end[i] = (int)blocks;
    }
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 4));
    p.n_w = n_w;
    p.w_row_bytes = row_bytes;
    p.nb = (int)(cols / slm_qblock_elems(type));
    p.x = x;
    p.a_blocks = (int64_t)n * (cols / slm_qblock_elems(at));
    p.a_bytes = (int)a_bytes;
    p.n = n;
    p.accumulate = accumulate;
    const size_t smem = (size_t)n * a_bytes;
    switch (type) {
#define MVQ_FUSED_CASE(T, KQ) \
    case T: SLM_LAUNCH((k_mvq_fused<T, KQ>), (unsigned)blocks, MVQ_THREADS, smem, stream, p); break;
        MVQ_FUSED_CASE(SLM_TYPE_Q4_0, false)
        MVQ_FUSED_CASE(SLM_TYPE_Q4_1, false)
        MVQ_FUSED_CASE(SLM_TYPE_Q5_0, false)
        MVQ_FUSED_CASE(SLM_TYPE_Q5_1, false)
        MVQ_FUSED_CASE(SLM_TYPE_Q8_0, false)
        MVQ_FUSED_CASE(SLM_TYPE_Q4_K, true)
        MVQ_FUSED_CASE(SLM_TYPE_Q5_K, true)
        MVQ_FUSED_CASE(SLM_TYPE_Q6_K, true)
#undef MVQ_FUSED_CASE
    default: return -EINVAL;
    }
    return slm_cuda_launched();
}
