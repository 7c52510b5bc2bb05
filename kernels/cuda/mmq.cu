/*
 * kernels/cuda/mmq.cu - the quantized matmul on tensor cores (in the manner of llama.cpp's MMQ)
 * for steps of many tokens, bit-identical to the decode GEMV (gemv.cu) for every token: kernels.h
 * has the contract, docs/cuda.md ("The tensor-core MMQ") the launch shapes.
 *
 * Numerics. The activations are quantized per 32 by slm_cuda_mmq_quantize (the bytes of
 * slm_cuda_gemv_quantize and the GEMV's prologues, placed in the fragments' order). The integer
 * dot of a weight's 32-element block (K-quants: sub-block) with a token's block comes out of mma.sync s8 x s8 -> s32 exactly (kernels/cuda/mma.cuh; Q6_K's two
 * 16-element halves with their own int8 scales through two m16n8k16 and an exact int combine),
 * so it equals the GEMV's __dp4a sum. The float terms then follow the order every quantized
 * matmul shares (docs/numerics.md, "The GPU"): the row's U units cut into L =
 * slm_cuda_gemv_lanes(type, cols) segments [l U / L, (l + 1) U / L), each summed in unit order
 * from 0 with the GEMV's very operations (gemv_units.cuh), the segment sums added left to right
 * within F = min(L, SLM_CUDA_FOLD_GROUPS) groups of consecutive segments, then the group sums left
 * to right. Here the F groups are F warps of a block (a split-K fixed by the weight's shape, never
 * by the batch); a thread owns 4 outputs of each of its 8-token tiles and walks its group's
 * segments in order, keeping the running total and the open segment's sum (two accumulators an
 * output); the group sums meet in shared memory at the warp of group 0, which stores. Nothing
 * depends on n or the token's tile: a token's outputs have the GEMV's bits whatever the batch
 * (tests/test_cuda_mmq.cpp checks it for every type and shape).
 *
 * Shape: MMQ_THREADS = 128 (4 warps) a block, each warp 16 rows against 8 x mmq_tiles_of() tokens
 * (32; 16 for SwiGLU, 8 for Q4_K / Q5_K SwiGLU), one m16n8 tile at a time; grid (row groups over
 * the weights' flat list, ceil(n / the block's tokens)). Two kernels of the same bits, the launch
 * taking the wide one when its grid has SLM_CUDA_MMQ_WIDE_MIN_BLOCKS blocks or more (kernels.h):
 * - k_mmq, narrow: F warps along K x 4 / F row tiles of 16 rows (F = 4 for every weight of 128
 *   columns or more: a block computes 16 rows), the group sums meeting in shared memory; the
 *   activations straight from global memory (through L1), where slm_cuda_mmq_quantize put them
 *   in fragment order (a tile one 8-byte and one 16-byte load), or with the fused prologue from
 *   shared memory, where it quantized them in the same order. Many blocks for small grids
 *   (SmolLM2's layers at a few dozen tokens).
 * - k_mmq_wide: 64 rows a block, every warp its own 16 along the whole K (the segments and
 *   their fold groups kept in order by one thread: mmq_close), the block's tokens staged
 *   MMQ_CHUNK activation blocks at a time into shared memory (mmq_stage: p.xq's 16-byte words as
 *   they are, already in fragment order), so a token's activations come from L2 once for 64 rows
 *   instead of 16, and a fragment is one 8-byte and one 16-byte shared load; the next chunk is
 *   loaded into registers while the block computes the current one (with the fused prologue the
 *   whole row is already in that order: no staging). Its units go a quad of 4 at a time,
 *   unrolled, so that a unit's weight and shared-memory addresses are constants from the quad's
 *   (sm_90, per 4 mma: Q4_1 101, was 120 unit by unit, 137 in the narrow kernel; Q4_K 234 for 8,
 *   Q6_K 286 for 16; bench/gpu/sass-mix.sh).
 * The weights come straight from global memory in both (the device layout keeps a block's words
 * where a lane's A fragment wants them: lane (g, t) reads word t of rows g and g + 8, and the 4
 * lanes of a row read its block's 16 contiguous bytes); the narrow kernel's warps load them a unit
 * ahead (mmq_ahead), the first before the wait. Not yet measured on a GPU: no ldmatrix,
 * no cp.async, no wgmma (docs/cuda.md).
 */
#include "kernels/cuda/act_quant.cuh"
#include "kernels/cuda/gemv_units.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/qmatmul.cuh"

#define MMQ_THREADS 128
#define MMQ_WARPS (MMQ_THREADS / 32)
static_assert(MMQ_THREADS == QACT_THREADS, "the fused prologue's quantizer runs on the MMQ's block");
/* 8-token tiles a warp: 4 (32 tokens a block); for SwiGLU, whose gate and up accumulators would
 * otherwise spill (the compiler's report, test_cuda_resources), 2, and 1 for Q4_K / Q5_K, whose
 * units unpack two sub-blocks of two rows at once. */
static __host__ __device__ constexpr int mmq_tiles_of(uint32_t wt, bool swiglu)
{
    return !swiglu ? 4 : (wt == SLM_TYPE_Q4_K || wt == SLM_TYPE_Q5_K) ? 1 : 2;
}
/* The blocks an SM must hold for the wide kernel (__launch_bounds__; its grids are large): 3 (12
 * warps, up to 168 registers a thread), 2 for the Q6_K SwiGLU pair, which spilled on sm_86 /
 * sm_89 at 3. The narrow kernel (small grids) asks for 1: with a minimum of 3 its 32-element
 * loops grew (Q4_1 161 -> 187 sm_90 instructions), and without the argument at all ptxas chose
 * 96-128 registers for some kernels and spilled in them (sm_80 - sm_89). */
static __host__ __device__ constexpr int mmq_min_blocks(uint32_t wt, bool swiglu)
{
    return wt == SLM_TYPE_Q6_K && swiglu ? 2 : 3;
}
/* A block's tokens */
static __host__ __device__ constexpr int mmq_block_tokens(uint32_t wt, bool swiglu)
{
    return 8 * mmq_tiles_of(wt, swiglu);
}

using slm_gemv::unit32;

namespace {

/* What a thread (g, t) needs of a tile's tokens for one activation block: the B fragments of each
 * 8-token tile (token 8j + g: words t and t + 4 of the block's quants) and the (d, s) of the two
 * tokens 8j + 2t, 8j + 2t + 1 of its outputs. */
template <int TILES> struct act_frag {
    int b[TILES][2];
    float2 ds[TILES][2];
};

/* A block's tokens' activations in fragment order (act_quant.cuh, mmq_frag_store: tiles of 8
 * tokens, nt of them a column of blocks), from block blk0 on: a tile's fragment one 8-byte load a
 * lane and its (d, s) one 16-byte load, at constant offsets from the block's. Three sources:
 * p.xq from slm_cuda_mmq_quantize (global memory, nt the batch's tiles: the narrow kernel's), the
 * wide kernel's staged chunk, the fused prologue's whole row (shared memory, nt = TILES). Tokens
 * past n are zeros there: their columns are computed and never stored. */
template <int TILES> struct act_staged {
    const int2 *b;      /* [(block - blk0) nt + j][lane] */
    const float4 *ds;   /* [(block - blk0) nt + j][t] */
    int blk0, nt;
    __device__ __forceinline__ act_frag<TILES> get(int blk) const
    {
        const int lane = threadIdx.x & 31, c = blk - blk0;
        act_frag<TILES> f;
        SLM_UNROLL
        for (int j = 0; j < TILES; j++) {
            const int2 v = b[(c * nt + j) * 32 + lane];
            const float4 d = ds[(c * nt + j) * 4 + (lane & 3)];
            f.b[j][0] = v.x;
            f.b[j][1] = v.y;
            f.ds[j][0] = make_float2(d.x, d.y);
            f.ds[j][1] = make_float2(d.z, d.w);
        }
        return f;
    }
};

/* Activation blocks a staged chunk of the wide kernel: one Q4_K / Q5_K / Q6_K super-block, 8
 * units of the 32-element types. */
#define MMQ_CHUNK 8

/* A chunk of the block's 8 TILES tokens in shared memory, in fragment order (act_staged with nt =
 * TILES): b[c][j][lane (g, t)] = words t and t + 4 of token 8j + g's block c (one conflict-free
 * 8-byte load a lane), ds[c][j][t] = (d, s) of tokens 8j + 2t and 8j + 2t + 1 (one 16-byte load). */
template <int TILES> struct mmq_stage {
    int2 b[MMQ_CHUNK][TILES][32];
    float4 ds[MMQ_CHUNK][TILES][4];
};

/* A thread's share of a chunk on its way to shared memory: p.xq holds it in the same order, a
 * block's TILES tiles 256 TILES contiguous bytes of quants and 64 TILES of (d, s) a column, so
 * the copy is 16-byte words, TILES of quants a thread and one of (d, s) for the first 32 TILES
 * threads (mmq_stage_quants, mmq_stage_scales). Held in registers from the load (issued right
 * after the previous chunk is stored) to the store (at the next chunk), so the loads' latency
 * passes while the block computes the current chunk. */
template <int TILES> struct mmq_stage_regs {
    static_assert(MMQ_CHUNK * 16 == MMQ_THREADS && MMQ_CHUNK * 4 * TILES <= MMQ_THREADS,
                  "a chunk is TILES words of quants a thread and at most one of (d, s)");
    uint4 x[TILES];
    float4 d;
};

/* Which words of a chunk this thread moves (mmq_stage_load and mmq_stage_store agree by calling
 * these): its k-th word of quants, word *w of column *c (word threadIdx.x + 128 k of the chunk's
 * MMQ_CHUNK x 16 TILES), and its word of (d, s) (threadIdx.x of the chunk's MMQ_CHUNK x 4 TILES);
 * false past those or past the row's nba blocks. (One function for both with k = TILES for the
 * scales: 20 more sm_90 instructions a chunk.) */
template <int TILES> __device__ __forceinline__ bool mmq_stage_quants(int k, int blk0, int nba, int *c, int *w)
{
    const int i = threadIdx.x + MMQ_THREADS * k;
    *c = i / (16 * TILES);
    *w = i % (16 * TILES);
    return blk0 + *c < nba;
}
template <int TILES> __device__ __forceinline__ bool mmq_stage_scales(int blk0, int nba, int *c, int *w)
{
    *c = threadIdx.x / (4 * TILES);
    *w = threadIdx.x % (4 * TILES);
    return threadIdx.x < MMQ_CHUNK * 4 * TILES && blk0 + *c < nba;
}

/* Chunk [blk0, blk0 + MMQ_CHUNK) (the blocks below nba) of src (p.xq at the block's first tile)
 * into r, this thread's share. */
template <int TILES>
__device__ __forceinline__ void mmq_stage_load(const act_staged<TILES> &src, int blk0, int nba, mmq_stage_regs<TILES> &r)
{
    int c, w;
    SLM_UNROLL
    for (int k = 0; k < TILES; k++)
        if (mmq_stage_quants<TILES>(k, blk0, nba, &c, &w))
            r.x[k] = reinterpret_cast<const uint4 *>(src.b + (blk0 + c) * src.nt * 32)[w];
    if (mmq_stage_scales<TILES>(blk0, nba, &c, &w)) r.d = src.ds[(blk0 + c) * src.nt * 4 + w];
}

/* r into st, the same words in the same order (those mmq_stage_load skipped are not written: st
 * there is never read). Between two __syncthreads: st is the block's. */
template <int TILES>
__device__ __forceinline__ void mmq_stage_store(const mmq_stage_regs<TILES> &r, int blk0, int nba, mmq_stage<TILES> &st)
{
    int c, w;
    SLM_UNROLL
    for (int k = 0; k < TILES; k++)
        if (mmq_stage_quants<TILES>(k, blk0, nba, &c, &w)) reinterpret_cast<uint4 *>(&st.b[c][0][0])[w] = r.x[k];
    if (mmq_stage_scales<TILES>(blk0, nba, &c, &w)) (&st.ds[c][0][0])[w] = r.d;
}

/* The per-32 dots start at DOT_BIAS and are read as floats by an FADD (slm_mma::dot_float), the
 * K-quants' scales too (small_float): no int-to-float conversion in the loops, the same bits.
 * SLM_CUDA_MMQ_CONVERT (CMake's option of that name) converts them as before, for a GPU's A/B
 * (docs/cuda.md, "Dots read as floats"). */
#ifdef SLM_CUDA_MMQ_CONVERT
constexpr bool MMQ_BIASED = false;
#else
constexpr bool MMQ_BIASED = true;
#endif
__device__ __forceinline__ float mmq_scale_float(int v)
{
    return MMQ_BIASED ? slm_mma::small_float((uint32_t)v) : __int2float_rn(v);
}

/* y[j][i] (row g + 8 (i >= 2), token 8j + 2t + (i & 1)) += the block's terms, as the GEMV adds
 * them: y = fma(ws * d_a, float(dot), y), then y = fma(wm, s_a, y) when M. BIASED: the dots
 * c[j][i] started at DOT_BIAS (dots_k32), read as floats by an FADD (slm_mma::dot_float);
 * otherwise converted (Q6_K's scaled sums, beyond its range). */
template <bool M, int TILES, bool BIASED = MMQ_BIASED>
__device__ __forceinline__ void add_terms(float (*y)[4], const int (*c)[4], const float *ws, const float *wm,
                                          const act_frag<TILES> &f)
{
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            const float2 ds = f.ds[j][i & 1];
            const float dot = BIASED ? slm_mma::dot_float(c[j][i]) : __int2float_rn(c[j][i]);
            y[j][i] = __fmaf_rn(__fmul_rn(ws[i >> 1], ds.x), dot, y[j][i]);
            if (M) y[j][i] = __fmaf_rn(wm[i >> 1], ds.y, y[j][i]);
        }
    }
}

/* The int dots of one activation block: A fragment a (rows g, g + 8) against each tile's B, each
 * from DOT_BIAS (the mma's accumulator input; add_terms reads them). */
template <int TILES>
__device__ __forceinline__ void dots_k32(int (*c)[4], const int (&a)[4], const act_frag<TILES> &f)
{
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        constexpr int z0 = MMQ_BIASED ? slm_mma::DOT_BIAS : 0;
        const int z[4] = {z0, z0, z0, z0};
        const int b[2] = {f.b[j][0], f.b[j][1]};
        slm_mma::mma_s8_k32(c[j], a, b, z);
    }
}

/* ---- the units, as gemv_units.cuh defines them, on tensor cores ---- */

/* Each unit type has two halves, so that a warp can ask for unit u + 1's weights before it
 * computes unit u (mmq_ahead): load, the unit's raw weight words of rows g and g + 8 (every
 * global load of the unit's weights, nothing computed from them), and dot, the unpacking, the
 * mmas against the tokens' fragments (src.get) and the float terms: together what the GEMV's unit
 * computes, in its order. */
template <uint32_t T> struct mmq_unit {
    typedef unit32<T> U;
    /* [h] rows g, g + 8: the scale word, qh (Q5_0 / Q5_1), quant word t and, for Q8_0, t + 4 */
    struct raw {
        uint32_t sc[2], qh[2], lo[2], hi[2];
    };
    /* (blk32_at's quad and tail, taken once for both rows: with blk32_at a row, the narrow
     * loop came out 4-9 sm_90 instructions longer) */
    static __device__ __forceinline__ raw load(const uint8_t *const *r, int nb, int u)
    {
        const int g = u >> 2, nin = g < (nb >> 2) ? 4 : nb & 3;   /* a quad, or the row's tail */
        const uint8_t *q[2] = {r[0] + (size_t)g * U::QUAD, r[1] + (size_t)g * U::QUAD};
        return load_in(q, nin, u & 3);
    }
    /* unit i (0 .. 3) of the full quad qd (blocks 4 qd .. 4 qd + 3 of the row): with i known at
     * compile time (the wide kernel's unrolled quads) every load is the quad's base plus a
     * constant */
    static __device__ __forceinline__ raw load_q(const uint8_t *const *r, int, int qd, int i)
    {
        const uint8_t *q[2] = {r[0] + (size_t)qd * U::QUAD, r[1] + (size_t)qd * U::QUAD};
        return load_in(q, 4, i);
    }
    /* block i of the quads (or tails) q[h] of nin blocks */
    static __device__ __forceinline__ raw load_in(const uint8_t *const *q, int nin, int i)
    {
        const int t = threadIdx.x & 3;
        raw w;
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const slm_gemv::blk32_addr ad = slm_gemv::blk32_in<T>(q[h], nin, i);
            w.sc[h] = slm_gemv::blk32_scales<T>(ad);
            w.qh[h] = U::Q5 ? slm_cuda::ld_u32(ad.qh) : 0u;
            w.lo[h] = slm_cuda::ld_u32(ad.qs + 4 * t);
            w.hi[h] = U::WORDS == 8 ? slm_cuda::ld_u32(ad.qs + 4 * (t + 4)) : 0u;
        }
        return w;
    }
    /* block u of rows g and g + 8 */
    template <int TILES, class SRC>
    static __device__ __forceinline__ void dot(const raw &w, int u, const SRC &src, float (*y)[4])
    {
        const int t = threadIdx.x & 3;
        int fa[4];
        float ws[2], wm[2];
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const slm_gemv::w32<T> x = slm_gemv::unpack32<T>(w.sc[h], w.qh[h], w.lo[h], t);
            fa[h] = x.lo;   /* elements 4t .. 4t + 3 */
            fa[2 + h] = U::WORDS == 8 ? (int)w.hi[h] : x.hi;   /* 16 + 4t .. */
            ws[h] = x.d;
            wm[h] = x.m;
        }
        const act_frag<TILES> f = src.get(u);
        int c[TILES][4];
        dots_k32<TILES>(c, fa, f);
        add_terms<U::M, TILES>(y, c, ws, wm, f);
    }
};

/* Q4_K, Q5_K: piece c = sub-blocks 2c (low nibbles of chunk c of qs) and 2c + 1 (high). */
template <bool FIVE> struct mmq_unit_k45 {
    /* [h] rows g, g + 8: the super-block's 16-byte head (d, dmin, scales), quant words t of the
     * piece's two 16-byte halves, and for Q5_K the qh words beside them */
    struct raw {
        uint4 hd[2];
        uint32_t v[2][2], qh[2][2];
    };
    static __device__ __forceinline__ raw load(const uint8_t *const *r, int, int u)
    {
        const int t = threadIdx.x & 3, b = u >> 2, c = u & 3;
        raw w;
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *blk = r[h] + (size_t)b * slm_gemv::gemv_unit_k45<FIVE>::BYTES;
            w.hd[h] = slm_cuda::ld_u128(blk);
            const uint8_t *qs = blk + (FIVE ? 48 : 16) + 32 * c;
            SLM_UNROLL
            for (int half = 0; half < 2; half++) {
                w.v[h][half] = slm_cuda::ld_u32(qs + 16 * half + 4 * t);
                w.qh[h][half] = FIVE ? slm_cuda::ld_u32(blk + 16 + 16 * half + 4 * t) : 0u;
            }
        }
        return w;
    }
    static __device__ __forceinline__ raw load_q(const uint8_t *const *r, int nb, int qd, int i)
    {
        return load(r, nb, 4 * qd + i);   /* a quad of units is a super-block */
    }
    template <int TILES, class SRC>
    static __device__ __forceinline__ void dot(const raw &w, int u, const SRC &src, float (*y)[4])
    {
        const int b = u >> 2, c = u & 3;
        int lo[4], hi[4];   /* [h] rows g, g + 8 at [h] and [2 + h]: elements 4t.. and 16 + 4t.. */
        float dsc[2][2], dm[2][2];   /* [sub-block 2c + s][h] */
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            SLM_UNROLL
            for (int half = 0; half < 2; half++) {
                const uint32_t v = w.v[h][half];
                uint32_t l = v & 0x0f0f0f0fu, hh = (v >> 4) & 0x0f0f0f0fu;
                if (FIVE) {
                    const uint32_t qh = w.qh[h][half];
                    l |= ((qh >> (2 * c)) & 0x01010101u) << 4;
                    hh |= ((qh >> (2 * c + 1)) & 0x01010101u) << 4;
                }
                lo[2 * half + h] = (int)l;
                hi[2 * half + h] = (int)hh;
            }
            const uint4 hd = w.hd[h];
            const float d = slm_cuda::h2f(hd.x), dmin = slm_cuda::h2f(hd.x >> 16);
            uint32_t scp, mp;
            slm_gemv::k_scale_min_pair(hd, c, &scp, &mp);
            SLM_UNROLL
            for (int s = 0; s < 2; s++) {
                dsc[s][h] = __fmul_rn(d, mmq_scale_float(slm_gemv::k_pair_byte(scp, s)));
                dm[s][h] = -__fmul_rn(dmin, mmq_scale_float(slm_gemv::k_pair_byte(mp, s)));
            }
        }
        SLM_UNROLL
        for (int s = 0; s < 2; s++) {
            const int blk = 8 * b + 2 * c + s;
            const act_frag<TILES> f = src.get(blk);
            int cc[TILES][4];
            const int fa[4] = {s ? hi[0] : lo[0], s ? hi[1] : lo[1], s ? hi[2] : lo[2], s ? hi[3] : lo[3]};
            dots_k32<TILES>(cc, fa, f);
            add_terms<true, TILES>(y, cc, dsc[s], dm[s], f);
        }
    }
};
template <> struct mmq_unit<SLM_TYPE_Q4_K> : mmq_unit_k45<false> {};
template <> struct mmq_unit<SLM_TYPE_Q5_K> : mmq_unit_k45<true> {};

/* Q6_K: piece c = half c / 2, quarters p = c % 2 (low nibbles of ql, qh bits 2p) and p + 2 (high
 * nibbles, qh bits 2p + 4); each quarter's groups of 16 through m16n8k16 and their int8 scales. */
template <> struct mmq_unit<SLM_TYPE_Q6_K> {
    /* [h] rows g, g + 8 [grp] the piece's groups of 16: word t of ql and of qh, the int8 scales of
     * quarters p ([0]) and p + 2 ([1]), and the super-block's d */
    struct raw {
        uint32_t l[2][2], hb[2][2];
        int sc[2][2][2];   /* [h][quarter][grp] */
        uint32_t d[2];
    };
    static __device__ __forceinline__ raw load(const uint8_t *const *r, int, int u)
    {
        const int t = threadIdx.x & 3, b = u >> 2, c = u & 3, hf = c >> 1, p = c & 1;
        raw w;
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *blk = r[h] + (size_t)b * 224;
            SLM_UNROLL
            for (int grp = 0; grp < 2; grp++) {
                w.l[h][grp] = slm_cuda::ld_u32(blk + 64 * hf + 32 * p + 16 * grp + 4 * t);
                w.hb[h][grp] = slm_cuda::ld_u32(blk + 128 + 32 * hf + 16 * grp + 4 * t);
                w.sc[h][0][grp] = (int8_t)blk[192 + 8 * hf + 2 * p + grp];
                w.sc[h][1][grp] = (int8_t)blk[192 + 8 * hf + 2 * p + 4 + grp];
            }
            w.d[h] = *reinterpret_cast<const uint16_t *>(blk + 208);
        }
        return w;
    }
    static __device__ __forceinline__ raw load_q(const uint8_t *const *r, int nb, int qd, int i)
    {
        return load(r, nb, 4 * qd + i);   /* a quad of units is a super-block */
    }
    template <int TILES, class SRC>
    static __device__ __forceinline__ void dot(const raw &w, int u, const SRC &src, float (*y)[4])
    {
        const int b = u >> 2, c = u & 3, hf = c >> 1, p = c & 1;
        int q[2][2][2];   /* [quarter p / p + 2][group of 16][h] */
        float d[2];
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            SLM_UNROLL
            for (int grp = 0; grp < 2; grp++) {
                const uint32_t l = w.l[h][grp], hb = w.hb[h][grp];
                const uint32_t v0 = (l & 0x0f0f0f0fu) | (((hb >> (2 * p)) & 0x03030303u) << 4);
                const uint32_t v2 = ((l >> 4) & 0x0f0f0f0fu) | (((hb >> (2 * p + 4)) & 0x03030303u) << 4);
                q[0][grp][h] = (int)((v0 + 0x60606060u) ^ 0x80808080u);   /* minus 32, bytewise */
                q[1][grp][h] = (int)((v2 + 0x60606060u) ^ 0x80808080u);
            }
            d[h] = slm_cuda::h2f(w.d[h]);
        }
        SLM_UNROLL
        for (int qq = 0; qq < 2; qq++) {
            const int blk = 8 * b + 4 * hf + p + 2 * qq;
            const act_frag<TILES> f = src.get(blk);
            int cc[TILES][4];
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                const int z[4] = {0, 0, 0, 0};
                int c0[4], c1[4];
                const int a0[2] = {q[qq][0][0], q[qq][0][1]}, a1[2] = {q[qq][1][0], q[qq][1][1]};
                slm_mma::mma_s8_k16(c0, a0, f.b[j][0], z);   /* elements 0..15: words t of each half */
                slm_mma::mma_s8_k16(c1, a1, f.b[j][1], z);   /* 16..31 */
                SLM_UNROLL
                for (int i = 0; i < 4; i++) cc[j][i] = w.sc[i >> 1][qq][0] * c0[i] + w.sc[i >> 1][qq][1] * c1[i];
            }
            add_terms<false, TILES, false>(y, cc, d, d, f);
        }
    }
};

/* A warp's weights one unit ahead: the kernels load unit u + 1's words (of the gate and the up
 * weight for SwiGLU) before they compute unit u, so the next unit's loads are in flight during
 * this unit's mmas, instead of a dependent load at the head of every unit (docs/cuda.md, "The
 * MMQ's weights one unit ahead"). Only registers move: the bits are the unit's. */
template <uint32_t WT, bool SWIGLU> struct mmq_ahead {
    typename mmq_unit<WT>::raw w{}, up{};   /* up stays zero without SwiGLU: copied, never read */
    __device__ __forceinline__ void load(const uint8_t *const *wr, const uint8_t *const *ur, int nb, int u)
    {
        w = mmq_unit<WT>::load(wr, nb, u);
        if (SWIGLU) up = mmq_unit<WT>::load(ur, nb, u);
    }
    /* unit i of quad qd (mmq_unit::load_q) */
    __device__ __forceinline__ void load_q(const uint8_t *const *wr, const uint8_t *const *ur, int nb, int qd, int i)
    {
        w = mmq_unit<WT>::load_q(wr, nb, qd, i);
        if (SWIGLU) up = mmq_unit<WT>::load_q(ur, nb, qd, i);
    }
    template <int TILES, class SRC>
    __device__ __forceinline__ void dot(int u, const SRC &src, float (*seg)[4], float (*useg)[4]) const
    {
        mmq_unit<WT>::template dot<TILES>(w, u, src, seg);
        if (SWIGLU) mmq_unit<WT>::template dot<TILES>(up, u, src, useg);
    }
};

}   // namespace

/* Fold groups F = min(L, SLM_CUDA_FOLD_GROUPS) of a row of L segments, and a block's rows: its 4
 * warps are F groups of segments (along K) x 4 / F row tiles of 16. */
static __host__ __device__ __forceinline__ int mmq_groups(int lshift)
{
    return (1 << lshift) < SLM_CUDA_FOLD_GROUPS ? 1 << lshift : SLM_CUDA_FOLD_GROUPS;
}

/* The wide kernel's rows a block: 16 a warp, every warp along the whole K. */
#define MMQ_WIDE_ROWS (16 * MMQ_WARPS)

/* Tiles of 8 tokens a column of blocks in slm_cuda_mmq_quantize's order for n tokens: the tokens
 * rounded up to 32, so that every block's TILES tiles are there (8, 16 or 32 tokens a block). */
static __host__ __device__ __forceinline__ int mmq_act_tiles(int n)
{
    return 4 * ((n + 31) / 32);
}

/* The activations quantized before the launch (p.xq from slm_cuda_mmq_quantize, all n tokens) at
 * the block's first tile, tile0: what both kernels read without the fused prologue. */
template <int TILES> __device__ __forceinline__ act_staged<TILES> mmq_act_global(const struct qmm_args &p, int tile0)
{
    const int nt = mmq_act_tiles(p.n);
    const int2 *b = reinterpret_cast<const int2 *>(p.xq);
    const float4 *ds = reinterpret_cast<const float4 *>(p.xq + (size_t)(8 * nt) * (size_t)p.cols);
    return act_staged<TILES>{b + 32 * tile0, ds + 4 * tile0, 0, nt};
}

/* The fused prologue: the block's tokens tok0 .. tok0 + 8 TILES - 1 of p.x (RMS-normed by p.gamma
 * when not NULL) quantized into dynamic shared memory in fragment order (mmq_frag_store, nt =
 * TILES) for the whole row, so that a unit's fragments are one 8-byte and one 16-byte shared load
 * a tile at constant offsets, with no staging; the bytes are slm_cuda_gemv_quantize's
 * (gemv_quantize_words), in another place. Tokens past n are zeros: their columns are computed and
 * never stored. Thread i takes (token, block) i, i + 128, ... token-minor, so that a warp's stores
 * are contiguous. */
template <int TILES>
__device__ __forceinline__ act_staged<TILES> mmq_quantize_frag(const struct qmm_args &p, int tok0)
{
    SLM_DYN_SHARED(uint4, smem);
    __shared__ float scale[8 * TILES];
    constexpr int T = 8 * TILES;
    const int an = min(p.n - tok0, T), nba = p.cols >> 5;
    const float *x = p.x + (size_t)tok0 * (size_t)p.cols;
    int2 *b = reinterpret_cast<int2 *>(smem);
    float2 *ds = reinterpret_cast<float2 *>(reinterpret_cast<int8_t *>(smem) + (size_t)T * (size_t)p.cols);
    gemv_norm_tokens(x, p.gamma, p.eps, an, p.cols, scale);
    for (int g = threadIdx.x; g < T * nba; g += MMQ_THREADS) {
        const int tau = g % T, c = g / T;
        qact_block q = {};
        if (tau < an) q = gemv_quantize_words(x, p.gamma, scale, p.cols, tau * nba + c);
        mmq_frag_store(b, ds, TILES, tau, c, q);
    }
    __syncthreads();
    return act_staged<TILES>{b, reinterpret_cast<const float4 *>(ds), 0, TILES};
}

/* slm_cuda_mmq_quantize: grid (ceil(cols / 32 / 128), 8 nt); block (c, t) quantizes activation
 * blocks 128c .. 128c + 127 of token t a thread each (act_quant.cuh: slm_cuda_gemv_quantize's
 * blocks, the same code and bytes) into fragment order (mmq_frag_store, nt tiles a column of
 * blocks); the tokens from n to 8 nt, the padding of the last 32, zeros. */
__global__ void __launch_bounds__(MMQ_THREADS) k_mmq_quantize(const float *__restrict__ x, const float *__restrict__ gamma,
                                                              float eps, int cols, int n, int nt, int2 *__restrict__ b,
                                                              float2 *__restrict__ ds)
{
    slm_pdl_begin();
    const int t = blockIdx.y;
    qact_block q = {};   /* a padding token's */
    int c = (int)blockIdx.x * MMQ_THREADS + (int)threadIdx.x;
    if (t < n) {
        if (!qact_row_block(x + (size_t)t * (size_t)cols, gamma, eps, cols, &q, &c)) return;
    } else if (c >= cols >> 5) {
        return;
    }
    mmq_frag_store(b, ds, nt, t, c, q);
}

/* Rows row0 and row0 + 8 of w (the last row for those past it), and of p.w[1] (the up weight)
 * for SwiGLU. */
template <bool SWIGLU>
__device__ __forceinline__ void mmq_row_ptrs(const struct qmm_args &p, const uint8_t *w, int rows, int row0,
                                             const uint8_t **wr, const uint8_t **ur)
{
    SLM_UNROLL
    for (int h = 0; h < 2; h++) {
        const size_t off = (size_t)min(row0 + 8 * h, rows - 1) * p.w_row_bytes;
        wr[h] = w + off;
        ur[h] = SWIGLU ? p.w[1] + off : nullptr;
    }
}

/* Outputs (row0 + 8 (i >= 2), tok0 + 8j + 2t + (i & 1)) of tot (silu(tot) * utot for SwiGLU),
 * stored or added by p's epilogue; those past rows or n skipped. */
template <int TILES, bool SWIGLU>
__device__ __forceinline__ void mmq_store(const struct qmm_args &p, float *y, int rows, int row0, int tok0,
                                          const float (*tot)[4], const float (*utot)[4])
{
    const int t = threadIdx.x & 3;
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            const int row = row0 + 8 * (i >> 1), tok = tok0 + 8 * j + 2 * t + (i & 1);
            if (row >= rows || tok >= p.n) continue;
            float v = tot[j][i];
            if (SWIGLU) v = __fmul_rn(__fdiv_rn(v, __fadd_rn(1.0f, expf(-v))), utot[j][i]);
            float *yp = y + (size_t)tok * (size_t)rows + row;
            *yp = p.epilogue == SLM_CUDA_GEMV_ACCUMULATE ? __fadd_rn(*yp, v) : v;
        }
    }
}

/* The narrow kernel (blocks of 16 rows, split-K over the warps: many blocks for small grids).
 * PRO: x (p.x, RMS-normed by p.gamma when not NULL) quantized by the block into dynamic shared
 * memory first, in fragment order (mmq_quantize_frag: slm_cuda_gemv_quantize's bytes), only the
 * block's own tokens; else p.xq from slm_cuda_mmq_quantize, in the same order (mmq_act_global). */
template <uint32_t WT, bool SWIGLU, bool PRO>
__global__ void __launch_bounds__(MMQ_THREADS, 1) k_mmq(const struct qmm_args p)
{
    qmm_prefetch<true>(p, 16 * (MMQ_WARPS / mmq_groups(p.lshift)));   /* into L1: qmatmul.cuh */
    constexpr int TILES = mmq_tiles_of(WT, SWIGLU);
    const int lane = threadIdx.x & 31, g = lane >> 2, warp = threadIdx.x >> 5;
    const int L = 1 << p.lshift, F = mmq_groups(p.lshift), S = L / F, wk = warp % F, wr = warp / F;
    const uint8_t *w;
    float *y;
    int rows, rg;
    qmm_weight_of(p, (int)blockIdx.x, &w, &y, &rows, &rg);
    const int row0 = rg * (16 * (MMQ_WARPS / F)) + 16 * wr + g;   /* rows row0 and row0 + 8 */
    const uint8_t *wr_[2], *ur[2];
    mmq_row_ptrs<SWIGLU>(p, w, rows, row0, wr_, ur);
    /* the warp's units [ub, ue), a unit ahead: the first (clamped to a unit of the row when the
     * warp has none) before the wait, with the prologue to run while it comes (weights only:
     * nothing writes them during a step) */
    const int ub = qmm_seg(p, wk * S), ue = qmm_seg(p, (wk + 1) * S);
    mmq_ahead<WT, SWIGLU> cur;
    cur.load(wr_, ur, p.nb, min(ub, p.units - 1));
    slm_pdl_begin();
    /* the group sums of the warps of fold groups 1 .. F - 1, for the warp of group 0 */
    __shared__ float part[MMQ_WARPS][(SWIGLU ? 2 : 1) * TILES * 4][32];
    const int tok0 = (int)blockIdx.y * 8 * TILES;
    act_staged<TILES> src;
    if constexpr (PRO) src = mmq_quantize_frag<TILES>(p, tok0);
    else src = mmq_act_global<TILES>(p, (int)blockIdx.y * TILES);
    float tot[TILES][4] = {}, seg[TILES][4], utot[SWIGLU ? TILES : 1][4] = {}, useg[SWIGLU ? TILES : 1][4];
    for (int l = wk * S; l < (wk + 1) * S; l++) {
        SLM_UNROLL
        for (int j = 0; j < TILES; j++) {
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                seg[j][i] = 0.0f;
                if (SWIGLU) useg[j][i] = 0.0f;
            }
        }
        const int u0 = qmm_seg(p, l), u1 = qmm_seg(p, l + 1);
        for (int u = u0; u < u1; u++) {
            mmq_ahead<WT, SWIGLU> next;
            next.load(wr_, ur, p.nb, min(u + 1, ue - 1));
            cur.template dot<TILES>(u, src, seg, useg);
            cur = next;
        }
        SLM_UNROLL
        for (int j = 0; j < TILES; j++) {
            SLM_UNROLL
            for (int i = 0; i < 4; i++) {
                tot[j][i] = l == wk * S ? seg[j][i] : __fadd_rn(tot[j][i], seg[j][i]);
                if (SWIGLU) utot[j][i] = l == wk * S ? useg[j][i] : __fadd_rn(utot[j][i], useg[j][i]);
            }
        }
    }
    if (F > 1) {   /* the group sums meet at the warp of group 0, left to right */
        if (wk > 0) {
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                SLM_UNROLL
                for (int i = 0; i < 4; i++) {
                    part[warp][4 * j + i][lane] = tot[j][i];
                    if (SWIGLU) part[warp][4 * (TILES + j) + i][lane] = utot[j][i];
                }
            }
        }
        __syncthreads();
        if (wk > 0) return;
        for (int f = 1; f < F; f++) {
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                SLM_UNROLL
                for (int i = 0; i < 4; i++) {
                    tot[j][i] = __fadd_rn(tot[j][i], part[warp + f][4 * j + i][lane]);
                    if (SWIGLU) utot[j][i] = __fadd_rn(utot[j][i], part[warp + f][4 * (TILES + j) + i][lane]);
                }
            }
        }
    }
    mmq_store<TILES, SWIGLU>(p, y, rows, row0, tok0, tot, utot);
}

/* Segment l's sums of the wide kernel closed, in the shared order: grp (the open fold group's
 * sum) = seg when l starts its group, else grp + seg; at the group's last segment tot = grp for
 * the first group, else tot + grp; seg starts again from 0. */
template <int TILES>
__device__ __forceinline__ void mmq_close(int l, int S, float (*tot)[4], float (*grp)[4], float (*seg)[4])
{
    const bool first = (l & (S - 1)) == 0, last = (l & (S - 1)) == S - 1;
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            grp[j][i] = first ? seg[j][i] : __fadd_rn(grp[j][i], seg[j][i]);
            if (last) tot[j][i] = l < S ? grp[j][i] : __fadd_rn(tot[j][i], grp[j][i]);
            seg[j][i] = 0.0f;
        }
    }
}

/* Every segment of the wide kernel that ends at unit `done` (the units below it are summed) closed
 * by mmq_close, in order: *l the open segment, *u1 its end (qmm_seg(p, *l + 1); INT32_MAX once
 * all L are closed, so that a unit's test is one compare). */
template <int TILES, int UT, bool SWIGLU>
__device__ __forceinline__ void mmq_close_done(const struct qmm_args &p, int done, int L, int S, int *l, int *u1,
                                               float (*tot)[4], float (*grp)[4], float (*seg)[4], float (*utot)[4],
                                               float (*ugrp)[4], float (*useg)[4])
{
    while (*u1 == done) {
        mmq_close<TILES>(*l, S, tot, grp, seg);
        if (SWIGLU) mmq_close<UT>(*l, S, utot, ugrp, useg);
        ++*l;
        *u1 = *l < L ? qmm_seg(p, *l + 1) : INT32_MAX;
    }
}

/* The wide kernel's next chunk: the block stores the chunk held in next (the units from
 * *staged on: CU of them, MMQ_CHUNK activation blocks) to st once every warp is done with the
 * previous one, then loads the chunk after it into next. Called with the same *staged by every
 * thread. */
template <int TILES, int CU>
__device__ __forceinline__ void mmq_stage_next(const act_staged<TILES> &a, int nba, int U, int *staged,
                                               act_staged<TILES> *src, mmq_stage_regs<TILES> &next,
                                               mmq_stage<TILES> &st)
{
    src->blk0 = MMQ_CHUNK * (*staged / CU);
    __syncthreads();   /* the previous chunk is read */
    mmq_stage_store<TILES>(next, src->blk0, nba, st);
    __syncthreads();
    *staged += CU;
    if (*staged < U) mmq_stage_load<TILES>(a, src->blk0 + MMQ_CHUNK, nba, next);
}

/* The wide kernel (blocks of MMQ_WIDE_ROWS rows, for grids with blocks to spare): each warp its
 * own 16 rows along the whole K, in the shared order (segments, their fold groups and the groups'
 * sum kept by mmq_close: the narrow kernel's bits); the 4 warps share the block's tokens, staged
 * MMQ_CHUNK activation blocks at a time into shared memory in fragment order (mmq_stage): a
 * token's activations are read from L2 once for 64 rows instead of 16, and a fragment is one
 * shared load. PRO as the narrow kernel's. */
template <uint32_t WT, bool SWIGLU, bool PRO>
__global__ void __launch_bounds__(MMQ_THREADS, mmq_min_blocks(WT, SWIGLU)) k_mmq_wide(const struct qmm_args p)
{
    qmm_prefetch(p, MMQ_WIDE_ROWS);
    slm_pdl_begin();
    constexpr int TILES = mmq_tiles_of(WT, SWIGLU);
    constexpr int CU = (WT == SLM_TYPE_Q4_K || WT == SLM_TYPE_Q5_K || WT == SLM_TYPE_Q6_K) ? 4 : MMQ_CHUNK;   /* units a chunk */
    constexpr int UT = SWIGLU ? TILES : 1;
    const int g = (threadIdx.x & 31) >> 2, warp = threadIdx.x >> 5;
    const int L = 1 << p.lshift, S = L / mmq_groups(p.lshift), U = p.units;
    const int tok0 = (int)blockIdx.y * 8 * TILES;
    const uint8_t *w;
    float *y;
    int rows, rg;
    /* the fused prologue's fragments (the whole row: nothing to stage), else chunks of p.xq (a)
     * staged */
    act_staged<TILES> a{}, src;
    mmq_stage<TILES> *st = nullptr;
    int staged = 0;   /* without PRO: units below it are staged or done */
    mmq_stage_regs<TILES> next = {};   /* the chunk of unit `staged`, loaded ahead */
    if constexpr (PRO) {
        src = mmq_quantize_frag<TILES>(p, tok0);
    } else {
        __shared__ mmq_stage<TILES> stage;
        st = &stage;
        src = act_staged<TILES>{&stage.b[0][0][0], &stage.ds[0][0][0], 0, TILES};
        a = mmq_act_global<TILES>(p, (int)blockIdx.y * TILES);
        mmq_stage_load<TILES>(a, 0, p.cols >> 5, next);
    }
    qmm_weight_of(p, (int)blockIdx.x, &w, &y, &rows, &rg);
    const int row0 = rg * MMQ_WIDE_ROWS + 16 * warp + g;   /* rows row0 and row0 + 8 */
    const uint8_t *wr_[2], *ur[2];
    mmq_row_ptrs<SWIGLU>(p, w, rows, row0, wr_, ur);
    SLM_UNROLL
    for (int h = 0; h < 2; h++) {   /* not recomputed in every unit */
        slm_gemv::pin_ptr(wr_[h]);
        if (SWIGLU) slm_gemv::pin_ptr(ur[h]);
    }
    float tot[TILES][4] = {}, grp[TILES][4] = {}, seg[TILES][4] = {};
    float utot[UT][4] = {}, ugrp[UT][4] = {}, useg[UT][4] = {};
    /* The units in order, segment l = [qmm_seg(p, l), u1) closed as soon as its last unit is
     * done (and an empty one, L > U, at once): the order of the segment loops, unit by unit. The
     * full quads of 4 units (every K-quant super-block; the 32-element types' blocks 4 qd .. 4 qd
     * + 3) unrolled, so that a unit's weight and shared-memory addresses are the quad's plus
     * constants; then the 32-element types' tail of nb % 4 blocks. */
    int l = 0, u1 = qmm_seg(p, 1);
    mmq_close_done<TILES, UT, SWIGLU>(p, 0, L, S, &l, &u1, tot, grp, seg, utot, ugrp, useg);
    const int UQ = CU == 4 ? U : U & ~3;   /* units in full quads */
    for (int qd = 0; 4 * qd < UQ; qd++) {
        if (!PRO && 4 * qd == staged) mmq_stage_next<TILES, CU>(a, p.cols >> 5, U, &staged, &src, next, *st);
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            mmq_ahead<WT, SWIGLU> now;
            now.load_q(wr_, ur, p.nb, qd, i);
            now.template dot<TILES>(4 * qd + i, src, seg, useg);
            mmq_close_done<TILES, UT, SWIGLU>(p, 4 * qd + i + 1, L, S, &l, &u1, tot, grp, seg, utot, ugrp, useg);
        }
    }
    for (int u = UQ; u < U; u++) {
        if (!PRO && u == staged) mmq_stage_next<TILES, CU>(a, p.cols >> 5, U, &staged, &src, next, *st);
        mmq_ahead<WT, SWIGLU> now;
        now.load(wr_, ur, p.nb, u);
        now.template dot<TILES>(u, src, seg, useg);
        mmq_close_done<TILES, UT, SWIGLU>(p, u + 1, L, S, &l, &u1, tot, grp, seg, utot, ugrp, useg);
    }
    mmq_store<TILES, SWIGLU>(p, y, rows, row0, tok0, tot, utot);
}

/* The dynamic shared bytes of the fused prologue: a block's tokens (8 x mmq_tiles_of) quantized. */
template <uint32_t WT> static size_t mmq_fused_smem(int64_t cols, int epilogue)
{
    return slm_cuda_act_bytes(mmq_block_tokens(WT, epilogue == SLM_CUDA_GEMV_SWIGLU), cols);
}

/* One kernel launched, after its opt-in to SLM_CUDA_MMQ_SMEM bytes of dynamic shared memory where
 * the launch takes more than the default (its own 8-10 KiB of static shared memory count against
 * CUDA's 48 KiB too); name (static storage) names it in the emulator's launch log. */
template <typename K>
static int mmq_launch_one(K k, const char *name, dim3 grid, size_t smem, cudaStream_t stream, const struct qmm_args &p)
{
    if (slm_cuda_smem_opt_in((const void *)k, smem, SLM_CUDA_MMQ_SMEM)) return -EIO;
    SLM_LAUNCH_PDL_AS(name, k, grid, MMQ_THREADS, smem, stream, p);
    return slm_cuda_launched();
}

template <uint32_t WT, bool PRO>
static int mmq_launch_type(const struct qmm_args &p, bool wide, cudaStream_t stream)
{
    const bool swiglu = p.epilogue == SLM_CUDA_GEMV_SWIGLU;
    const dim3 grid((unsigned)p.groups, (unsigned)((p.n + mmq_block_tokens(WT, swiglu) - 1) / mmq_block_tokens(WT, swiglu)));
    const size_t smem = PRO ? mmq_fused_smem<WT>(p.cols, p.epilogue) : 0;
    if (wide)
        return swiglu ? mmq_launch_one(k_mmq_wide<WT, true, PRO>, "(k_mmq_wide<WT, true, PRO>)", grid, smem, stream, p)
                      : mmq_launch_one(k_mmq_wide<WT, false, PRO>, "(k_mmq_wide<WT, false, PRO>)", grid, smem, stream, p);
    return swiglu ? mmq_launch_one(k_mmq<WT, true, PRO>, "(k_mmq<WT, true, PRO>)", grid, smem, stream, p)
                  : mmq_launch_one(k_mmq<WT, false, PRO>, "(k_mmq<WT, false, PRO>)", grid, smem, stream, p);
}

template <bool PRO> static int mmq_launch(uint32_t type, const struct qmm_args &p, bool wide, cudaStream_t stream)
{
    switch (type) {
    case SLM_TYPE_Q4_0: return mmq_launch_type<SLM_TYPE_Q4_0, PRO>(p, wide, stream);
    case SLM_TYPE_Q4_1: return mmq_launch_type<SLM_TYPE_Q4_1, PRO>(p, wide, stream);
    case SLM_TYPE_Q5_0: return mmq_launch_type<SLM_TYPE_Q5_0, PRO>(p, wide, stream);
    case SLM_TYPE_Q5_1: return mmq_launch_type<SLM_TYPE_Q5_1, PRO>(p, wide, stream);
    case SLM_TYPE_Q8_0: return mmq_launch_type<SLM_TYPE_Q8_0, PRO>(p, wide, stream);
    case SLM_TYPE_Q4_K: return mmq_launch_type<SLM_TYPE_Q4_K, PRO>(p, wide, stream);
    case SLM_TYPE_Q5_K: return mmq_launch_type<SLM_TYPE_Q5_K, PRO>(p, wide, stream);
    case SLM_TYPE_Q6_K: return mmq_launch_type<SLM_TYPE_Q6_K, PRO>(p, wide, stream);
    default: return -EINVAL;
    }
}

static int mmq_wide_min = SLM_CUDA_MMQ_WIDE_MIN_BLOCKS;

extern "C" void slm_cuda_mmq_set_wide_min_blocks(int blocks)
{
    __atomic_store_n(&mmq_wide_min, blocks < 0 ? SLM_CUDA_MMQ_WIDE_MIN_BLOCKS : blocks, __ATOMIC_RELAXED);
}

/* p for the wide kernel when its grid has at least mmq_wide_min blocks, else for the narrow one
 * (*wide says which): the same bits either way. */
static int mmq_setup(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, int n,
                     float *const *y, int epilogue, struct qmm_args *p, bool *wide)
{
    const int L = slm_cuda_gemv_lanes(type, cols);
    SLM_CUDA_ARG(L != 0);
    int rc = qmm_setup(type, n_w, w, rows, cols, n, SLM_CUDA_ACT_MAX_TOKENS, y, epilogue, MMQ_WIDE_ROWS, p);
    if (rc) return rc;
    const int tokens = mmq_block_tokens(type, epilogue == SLM_CUDA_GEMV_SWIGLU);
    *wide = (int64_t)p->groups * ((n + tokens - 1) / tokens) >= __atomic_load_n(&mmq_wide_min, __ATOMIC_RELAXED);
    if (*wide) return 0;
    const int per_group = 16 * (MMQ_WARPS / mmq_groups(__builtin_ctz((unsigned)L)));
    return qmm_setup(type, n_w, w, rows, cols, n, SLM_CUDA_ACT_MAX_TOKENS, y, epilogue, per_group, p);
}

extern "C" int slm_cuda_mmq(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols,
                            const void *xq, int n, float *const *y, int epilogue, struct CUstream_st *stream)
{
    struct qmm_args p;
    bool wide;
    int rc = mmq_setup(type, n_w, w, rows, cols, n, y, epilogue, &p, &wide);
    if (rc) return rc;
    const size_t bytes = slm_cuda_mmq_act_bytes(n, cols);
    SLM_CUDA_ARG(bytes != 0);
    SLM_CUDA_DEVICE(xq, bytes);
    SLM_CUDA_ARG(slm_cuda_aligned(xq, 16));
    p.xq = (const int8_t *)xq;
    return mmq_launch<false>(type, p, wide, stream);
}

extern "C" size_t slm_cuda_mmq_act_bytes(int n, int64_t cols)
{
    if (slm_cuda_act_bytes(n, cols) == 0) return 0;
    const size_t bytes = (size_t)(8 * mmq_act_tiles(n)) * (size_t)(cols + cols / 32 * 8);
    return bytes <= (size_t)INT32_MAX ? bytes : 0;
}

extern "C" int slm_cuda_mmq_quantize(const float *x, const float *gamma, float eps, int n, int64_t cols, void *xq,
                                     struct CUstream_st *stream)
{
    const int rc = qact_args(x, gamma, n, cols, xq, slm_cuda_mmq_act_bytes(n, cols));
    if (rc) return rc;
    const int c = (int)cols, nt = mmq_act_tiles(n);
    int2 *b = (int2 *)xq;
    float2 *ds = (float2 *)((int8_t *)xq + (size_t)(8 * nt) * (size_t)c);
    const dim3 grid((unsigned)((c / 32 + MMQ_THREADS - 1) / MMQ_THREADS), (unsigned)(8 * nt));
    SLM_LAUNCH_PDL(k_mmq_quantize, grid, MMQ_THREADS, 0, stream, x, gamma, eps, c, n, nt, b, ds);
    return slm_cuda_launched();
}

extern "C" size_t slm_cuda_mmq_fused_smem(uint32_t type, int64_t cols, int epilogue)
{
    if (slm_cuda_gemv_lanes(type, cols) == 0) return 0;
    switch (type) {
    case SLM_TYPE_Q4_K: return mmq_fused_smem<SLM_TYPE_Q4_K>(cols, epilogue);
    case SLM_TYPE_Q5_K: return mmq_fused_smem<SLM_TYPE_Q5_K>(cols, epilogue);
    default: return mmq_fused_smem<SLM_TYPE_Q4_0>(cols, epilogue);   /* tiles differ only for those two */
    }
}

extern "C" int slm_cuda_mmq_fused(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols,
                                  const float *x, const float *gamma, float eps, int n, float *const *y, int epilogue,
                                  struct CUstream_st *stream)
{
    struct qmm_args p;
    const size_t smem = slm_cuda_mmq_fused_smem(type, cols, epilogue);
    SLM_CUDA_ARG(smem != 0 && smem <= SLM_CUDA_MMQ_SMEM);
    bool wide;
    int rc = mmq_setup(type, n_w, w, rows, cols, n, y, epilogue, &p, &wide);
    if (rc) return rc;
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    if (gamma) SLM_CUDA_DEVICE(gamma, (size_t)cols * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 16) && (!gamma || slm_cuda_aligned(gamma, 16)));
    p.x = x;
    p.gamma = gamma;
    p.eps = eps;
    return mmq_launch<true>(type, p, wide, stream);
}
