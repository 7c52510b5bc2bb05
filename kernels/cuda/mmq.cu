/*
 * kernels/cuda/mmq.cu - the quantized matmul on tensor cores (in the manner of llama.cpp's MMQ)
 * for steps of many tokens, bit-identical to the decode GEMV (gemv.cu) for every token: kernels.h
 * has the contract, docs/cuda.md ("The tensor-core MMQ") the launch shapes.
 *
 * Numerics. The activations are quantized per 32 by slm_cuda_gemv_quantize (the same bytes as the
 * GEMV's prologues). The integer dot of a weight's 32-element block (K-quants: sub-block) with a
 * token's block comes out of mma.sync s8 x s8 -> s32 exactly (kernels/cuda/mma.cuh; Q6_K's two
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
 * Shape: MMQ_THREADS = 128 (4 warps) a block: F warps along K x 4 / F row tiles of 16 rows (F = 4
 * for every weight of 128 columns or more: a block computes 16 rows), each warp against
 * 8 x mmq_tiles() tokens (32; 16 for SwiGLU, 8 for Q4_K / Q5_K SwiGLU), one m16n8 tile at a time;
 * grid (row groups over the weights' flat list, ceil(n / the block's tokens)). Fragments come
 * straight from global memory (the device layout keeps a block's words where a lane's A
 * fragment wants them: lane (g, t) reads word t of rows g and g + 8, and the 4 lanes of a row
 * read its block's 16 contiguous bytes); the activations are read through L1. A first version,
 * not yet measured on a GPU: no shared-memory staging, no ldmatrix / cp.async pipeline, no
 * wgmma (docs/cuda.md; bench/gpu/sass-mix.sh counts its machine code).
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
template <uint32_t WT, bool SWIGLU> __host__ __device__ constexpr int mmq_tiles()
{
    return !SWIGLU ? 4 : (WT == SLM_TYPE_Q4_K || WT == SLM_TYPE_Q5_K) ? 1 : 2;
}

using slm_gemv::gemv_act;
using slm_gemv::unit32;

namespace {

/* What a thread (g, t) needs of a tile's tokens for one activation block b: B fragments of each
 * 8-token tile (token 8j + g: words t and t + 4 of the block's quants, 0 past n) and the (d, s)
 * of the two tokens 8j + 2t, 8j + 2t + 1 of its outputs.
 * CLAMP: a token past a's n rows reads row n - 1 instead of zeros: its columns of the tile (an
 * mma's columns are independent) are computed and never stored, and the loads need no predicate
 * and no zero fill (as weight rows past the last are clamped): 163 instead of 196 instructions
 * per activation block in Q4_1's loop, 467 instead of 550 in Q6_K's (sm_90: bench/gpu/sass-mix.sh).
 * Where the clamped rows' offsets, kept across the loop, made ptxas spill (Q4_K / Q5_K, the
 * SwiGLU kernels' 1-2 tiles), the predicated loads stay. */
template <int TILES> struct act_frag {
    int b[TILES][2];
    float2 ds[TILES][2];
};

template <int TILES, bool CLAMP>
__device__ __forceinline__ act_frag<TILES> act_load(const gemv_act &a, int tok0, int n, int blk)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    act_frag<TILES> f;
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        const int tb = CLAMP ? min(tok0 + 8 * j + g, n - 1) : tok0 + 8 * j + g;
        if (CLAMP || tb < n) {
            const int8_t *q = a.q + (size_t)tb * (size_t)a.cols + 32 * blk;
            f.b[j][0] = *reinterpret_cast<const int *>(q + 4 * t);
            f.b[j][1] = *reinterpret_cast<const int *>(q + 16 + 4 * t);
        } else {
            f.b[j][0] = f.b[j][1] = 0;
        }
        SLM_UNROLL
        for (int e = 0; e < 2; e++) {
            const int tc = tok0 + 8 * j + 2 * t + e;
            f.ds[j][e] = CLAMP ? slm_gemv::act_ds(a, min(tc, n - 1), blk)
                       : tc < n ? slm_gemv::act_ds(a, tc, blk) : make_float2(0.0f, 0.0f);
        }
    }
    return f;
}

/* y[j][i] (row g + 8 (i >= 2), token 8j + 2t + (i & 1)) += the block's terms, as the GEMV adds
 * them: y = fma(ws * d_a, float(dot), y), then y = fma(wm, s_a, y) when M. */
template <bool M, int TILES>
__device__ __forceinline__ void add_terms(float (*y)[4], const int (*c)[4], const float *ws, const float *wm,
                                          const act_frag<TILES> &f)
{
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        SLM_UNROLL
        for (int i = 0; i < 4; i++) {
            const float2 ds = f.ds[j][i & 1];
            y[j][i] = __fmaf_rn(__fmul_rn(ws[i >> 1], ds.x), __int2float_rn(c[j][i]), y[j][i]);
            if (M) y[j][i] = __fmaf_rn(wm[i >> 1], ds.y, y[j][i]);
        }
    }
}

/* The int dots of one activation block: A fragment a (rows g, g + 8) against each tile's B. */
template <int TILES>
__device__ __forceinline__ void dots_k32(int (*c)[4], const int (&a)[4], const act_frag<TILES> &f)
{
    SLM_UNROLL
    for (int j = 0; j < TILES; j++) {
        const int z[4] = {0, 0, 0, 0};
        const int b[2] = {f.b[j][0], f.b[j][1]};
        slm_mma::mma_s8_k32(c[j], a, b, z);
    }
}

/* ---- the units, as gemv_units.cuh defines them, on tensor cores ---- */

template <uint32_t T> struct mmq_unit {
    /* block u of rows r[0] (g) and r[1] (g + 8) */
    template <int TILES>
    static __device__ __forceinline__ void run(const uint8_t *const *r, int nb, int u, const gemv_act &a, int tok0,
                                               int n, float (*y)[4])
    {
        typedef unit32<T> U;
        const int t = threadIdx.x & 3;
        int fa[4];
        float ws[2], wm[2];
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const slm_gemv::blk32_addr ad = slm_gemv::blk32_at<T>(r[h], nb, u);
            const uint32_t sc = slm_gemv::blk32_scales<T>(ad), qh = U::Q5 ? slm_cuda::ld_u32(ad.qh) : 0u;
            const slm_gemv::w32<T> w = slm_gemv::unpack32<T>(sc, qh, slm_cuda::ld_u32(ad.qs + 4 * t), t);
            fa[h] = w.lo;   /* elements 4t .. 4t + 3 */
            fa[2 + h] = U::WORDS == 8 ? (int)slm_cuda::ld_u32(ad.qs + 4 * (t + 4)) : w.hi;   /* 16 + 4t .. */
            ws[h] = w.d;
            wm[h] = w.m;
        }
        const act_frag<TILES> f = act_load<TILES, TILES == 4>(a, tok0, n, u);
        int c[TILES][4];
        dots_k32<TILES>(c, fa, f);
        add_terms<U::M, TILES>(y, c, ws, wm, f);
    }
};

/* Q4_K, Q5_K: piece c = sub-blocks 2c (low nibbles of chunk c of qs) and 2c + 1 (high). */
template <bool FIVE> struct mmq_unit_k45 {
    template <int TILES>
    static __device__ __forceinline__ void run(const uint8_t *const *r, int, int u, const gemv_act &a, int tok0,
                                               int n, float (*y)[4])
    {
        const int t = threadIdx.x & 3, b = u >> 2, c = u & 3;
        int lo[4], hi[4];   /* [h] rows g, g + 8 at [h] and [2 + h]: elements 4t.. and 16 + 4t.. */
        float dsc[2][2], dm[2][2];   /* [sub-block 2c + s][h] */
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *blk = r[h] + (size_t)b * slm_gemv::gemv_unit_k45<FIVE>::BYTES;
            const uint4 hd = slm_cuda::ld_u128(blk);
            const uint8_t *qs = blk + (FIVE ? 48 : 16) + 32 * c;
            SLM_UNROLL
            for (int half = 0; half < 2; half++) {
                const uint32_t v = slm_cuda::ld_u32(qs + 16 * half + 4 * t);
                uint32_t l = v & 0x0f0f0f0fu, hh = (v >> 4) & 0x0f0f0f0fu;
                if (FIVE) {
                    const uint32_t qh = slm_cuda::ld_u32(blk + 16 + 16 * half + 4 * t);
                    l |= ((qh >> (2 * c)) & 0x01010101u) << 4;
                    hh |= ((qh >> (2 * c + 1)) & 0x01010101u) << 4;
                }
                lo[2 * half + h] = (int)l;
                hi[2 * half + h] = (int)hh;
            }
            const float d = slm_cuda::h2f(hd.x), dmin = slm_cuda::h2f(hd.x >> 16);
            SLM_UNROLL
            for (int s = 0; s < 2; s++) {
                int sc, m;
                slm_gemv::k_scale_min(hd, 2 * c + s, &sc, &m);
                dsc[s][h] = __fmul_rn(d, __int2float_rn(sc));
                dm[s][h] = -__fmul_rn(dmin, __int2float_rn(m));
            }
        }
        SLM_UNROLL
        for (int s = 0; s < 2; s++) {
            const int blk = 8 * b + 2 * c + s;
            const act_frag<TILES> f = act_load<TILES, false>(a, tok0, n, blk);
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
    template <int TILES>
    static __device__ __forceinline__ void run(const uint8_t *const *r, int, int u, const gemv_act &a, int tok0,
                                               int n, float (*y)[4])
    {
        const int t = threadIdx.x & 3, b = u >> 2, c = u & 3, hf = c >> 1, p = c & 1;
        int q[2][2][2];   /* [quarter p / p + 2][group of 16][h] */
        int sc[2][2][2];  /* the same, the group's int8 scale */
        float d[2];
        SLM_UNROLL
        for (int h = 0; h < 2; h++) {
            const uint8_t *blk = r[h] + (size_t)b * 224;
            SLM_UNROLL
            for (int grp = 0; grp < 2; grp++) {
                const uint32_t l = slm_cuda::ld_u32(blk + 64 * hf + 32 * p + 16 * grp + 4 * t);
                const uint32_t hb = slm_cuda::ld_u32(blk + 128 + 32 * hf + 16 * grp + 4 * t);
                const uint32_t v0 = (l & 0x0f0f0f0fu) | (((hb >> (2 * p)) & 0x03030303u) << 4);
                const uint32_t v2 = ((l >> 4) & 0x0f0f0f0fu) | (((hb >> (2 * p + 4)) & 0x03030303u) << 4);
                q[0][grp][h] = (int)((v0 + 0x60606060u) ^ 0x80808080u);   /* minus 32, bytewise */
                q[1][grp][h] = (int)((v2 + 0x60606060u) ^ 0x80808080u);
                sc[0][grp][h] = (int8_t)blk[192 + 8 * hf + 2 * p + grp];
                sc[1][grp][h] = (int8_t)blk[192 + 8 * hf + 2 * p + 4 + grp];
            }
            d[h] = slm_cuda::h2f(*reinterpret_cast<const uint16_t *>(blk + 208));
        }
        SLM_UNROLL
        for (int qq = 0; qq < 2; qq++) {
            const int blk = 8 * b + 4 * hf + p + 2 * qq;
            const act_frag<TILES> f = act_load<TILES, TILES == 4>(a, tok0, n, blk);
            int cc[TILES][4];
            SLM_UNROLL
            for (int j = 0; j < TILES; j++) {
                const int z[4] = {0, 0, 0, 0};
                int c0[4], c1[4];
                const int a0[2] = {q[qq][0][0], q[qq][0][1]}, a1[2] = {q[qq][1][0], q[qq][1][1]};
                slm_mma::mma_s8_k16(c0, a0, f.b[j][0], z);   /* elements 0..15: words t of each half */
                slm_mma::mma_s8_k16(c1, a1, f.b[j][1], z);   /* 16..31 */
                SLM_UNROLL
                for (int i = 0; i < 4; i++) cc[j][i] = sc[qq][0][i >> 1] * c0[i] + sc[qq][1][i >> 1] * c1[i];
            }
            add_terms<false, TILES>(y, cc, d, d, f);
        }
    }
};

}   // namespace

/* Fold groups F = min(L, SLM_CUDA_FOLD_GROUPS) of a row of L segments, and a block's rows: its 4
 * warps are F groups of segments (along K) x 4 / F row tiles of 16. */
static __host__ __device__ __forceinline__ int mmq_groups(int lshift)
{
    return (1 << lshift) < SLM_CUDA_FOLD_GROUPS ? 1 << lshift : SLM_CUDA_FOLD_GROUPS;
}

/* PRO: x (p.x, RMS-normed by p.gamma when not NULL) quantized by the block into dynamic shared
 * memory first (act_quant.cuh: slm_cuda_gemv_quantize's bytes), only the block's own tokens;
 * else p.xq, quantized before the launch. */
template <uint32_t WT, bool SWIGLU, bool PRO>
__global__ void __launch_bounds__(MMQ_THREADS) k_mmq(const struct qmm_args p)
{
    /* the group sums of the warps of fold groups 1 .. F - 1, for the warp of group 0 */
    constexpr int TILES = mmq_tiles<WT, SWIGLU>();
    __shared__ float part[MMQ_WARPS][(SWIGLU ? 2 : 1) * TILES * 4][32];
    gemv_act a;
    a.cols = p.cols;
    a.q = p.xq;
    a.ds = reinterpret_cast<const float2 *>(p.xq + (size_t)p.n * (size_t)p.cols);
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warp = threadIdx.x >> 5;
    const int L = 1 << p.lshift, F = mmq_groups(p.lshift), S = L / F, wk = warp % F, wr = warp / F;
    const int tok0 = (int)blockIdx.y * 8 * TILES;
    int at0 = tok0, an = p.n;   /* a's row of token tok0, and a's rows */
    if constexpr (PRO) {
        SLM_DYN_SHARED(uint4, smem);
        __shared__ float scale[8 * TILES];
        an = min(p.n - tok0, 8 * TILES);
        at0 = 0;
        int8_t *q = reinterpret_cast<int8_t *>(smem);
        float2 *ds = reinterpret_cast<float2 *>(q + (size_t)an * (size_t)p.cols);
        gemv_quantize_tokens(p.x + (size_t)tok0 * (size_t)p.cols, p.gamma, p.eps, an, p.cols, scale, q, ds);
        a.q = q;
        a.ds = ds;
    }
    const uint8_t *w;
    float *y;
    int rows, rg;
    qmm_weight_of(p, (int)blockIdx.x, &w, &y, &rows, &rg);
    const int row0 = rg * (16 * (MMQ_WARPS / F)) + 16 * wr + g;   /* rows row0 and row0 + 8 */
    const uint8_t *wr_[2] = {w + (size_t)min(row0, rows - 1) * p.w_row_bytes,
                             w + (size_t)min(row0 + 8, rows - 1) * p.w_row_bytes};
    const uint8_t *ur[2] = {nullptr, nullptr};
    if (SWIGLU) {
        ur[0] = p.w[1] + (size_t)min(row0, rows - 1) * p.w_row_bytes;
        ur[1] = p.w[1] + (size_t)min(row0 + 8, rows - 1) * p.w_row_bytes;
    }
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
        const int u0 = (int)(((int64_t)l * p.units) >> p.lshift), u1 = (int)(((int64_t)(l + 1) * p.units) >> p.lshift);
        for (int u = u0; u < u1; u++) {
            mmq_unit<WT>::template run<TILES>(wr_, p.nb, u, a, at0, an, seg);
            if (SWIGLU) mmq_unit<WT>::template run<TILES>(ur, p.nb, u, a, at0, an, useg);
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

/* The dynamic shared bytes of the fused prologue: a block's tokens (8 x mmq_tiles) quantized. */
template <uint32_t WT> static size_t mmq_fused_smem(int64_t cols, int epilogue)
{
    const int tokens = 8 * (epilogue == SLM_CUDA_GEMV_SWIGLU ? mmq_tiles<WT, true>() : mmq_tiles<WT, false>());
    return slm_cuda_act_bytes(tokens, cols);
}

/* Lets kernel k take SLM_CUDA_MMQ_SMEM bytes of dynamic shared memory (above CUDA's default 48
 * KiB, an opt-in per kernel), once per kernel and process: the first call of a shape comes before
 * any graph capture of it (the backend's warm-up step). */
template <typename K> static int mmq_smem_opt_in(K k, bool *done)
{
    if (__atomic_load_n(done, __ATOMIC_ACQUIRE)) return 0;
    if (cudaFuncSetAttribute((const void *)k, cudaFuncAttributeMaxDynamicSharedMemorySize, SLM_CUDA_MMQ_SMEM) !=
        cudaSuccess)
        return slm_cuda_launched();
    __atomic_store_n(done, true, __ATOMIC_RELEASE);
    return 0;
}

template <uint32_t WT, bool PRO>
static int mmq_launch_type(const struct qmm_args &p, cudaStream_t stream)
{
    const bool swiglu = p.epilogue == SLM_CUDA_GEMV_SWIGLU;
    const int tokens = 8 * (swiglu ? mmq_tiles<WT, true>() : mmq_tiles<WT, false>());   /* a block's */
    const dim3 grid((unsigned)p.groups, (unsigned)((p.n + tokens - 1) / tokens));
    const size_t smem = PRO ? mmq_fused_smem<WT>(p.cols, p.epilogue) : 0;
    if (swiglu) {
        static bool big;
        if (smem > 49152 && mmq_smem_opt_in(k_mmq<WT, true, PRO>, &big)) return -EIO;
        SLM_LAUNCH((k_mmq<WT, true, PRO>), grid, MMQ_THREADS, smem, stream, p);
    } else {
        static bool big;
        if (smem > 49152 && mmq_smem_opt_in(k_mmq<WT, false, PRO>, &big)) return -EIO;
        SLM_LAUNCH((k_mmq<WT, false, PRO>), grid, MMQ_THREADS, smem, stream, p);
    }
    return slm_cuda_launched();
}

template <bool PRO> static int mmq_launch(uint32_t type, const struct qmm_args &p, cudaStream_t stream)
{
    switch (type) {
    case SLM_TYPE_Q4_0: return mmq_launch_type<SLM_TYPE_Q4_0, PRO>(p, stream);
    case SLM_TYPE_Q4_1: return mmq_launch_type<SLM_TYPE_Q4_1, PRO>(p, stream);
    case SLM_TYPE_Q5_0: return mmq_launch_type<SLM_TYPE_Q5_0, PRO>(p, stream);
    case SLM_TYPE_Q5_1: return mmq_launch_type<SLM_TYPE_Q5_1, PRO>(p, stream);
    case SLM_TYPE_Q8_0: return mmq_launch_type<SLM_TYPE_Q8_0, PRO>(p, stream);
    case SLM_TYPE_Q4_K: return mmq_launch_type<SLM_TYPE_Q4_K, PRO>(p, stream);
    case SLM_TYPE_Q5_K: return mmq_launch_type<SLM_TYPE_Q5_K, PRO>(p, stream);
    case SLM_TYPE_Q6_K: return mmq_launch_type<SLM_TYPE_Q6_K, PRO>(p, stream);
    default: return -EINVAL;
    }
}

static int mmq_setup(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, int n,
                     float *const *y, int epilogue, struct qmm_args *p)
{
    const int L = slm_cuda_gemv_lanes(type, cols);
    SLM_CUDA_ARG(L != 0);
    const int per_group = 16 * (MMQ_WARPS / mmq_groups(__builtin_ctz((unsigned)L)));
    return qmm_setup(type, n_w, w, rows, cols, n, SLM_CUDA_ACT_MAX_TOKENS, y, epilogue, per_group, p);
}

extern "C" int slm_cuda_mmq(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols,
                            const void *xq, int n, float *const *y, int epilogue, struct CUstream_st *stream)
{
    struct qmm_args p;
    int rc = mmq_setup(type, n_w, w, rows, cols, n, y, epilogue, &p);
    if (rc) return rc;
    SLM_CUDA_DEVICE(xq, slm_cuda_act_bytes(n, cols));
    SLM_CUDA_ARG(slm_cuda_aligned(xq, 16));
    p.xq = (const int8_t *)xq;
    return mmq_launch<false>(type, p, stream);
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
    int rc = mmq_setup(type, n_w, w, rows, cols, n, y, epilogue, &p);
    if (rc) return rc;
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    if (gamma) SLM_CUDA_DEVICE(gamma, (size_t)cols * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 16) && (!gamma || slm_cuda_aligned(gamma, 16)));
    p.x = x;
    p.gamma = gamma;
    p.eps = eps;
    return mmq_launch<true>(type, p, stream);
}
