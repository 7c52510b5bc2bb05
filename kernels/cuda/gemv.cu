/*
 * kernels/cuda/gemv.cu - the decode GEMV (n = 1..8 tokens a weight read), fast on a GPU and
 * batch-invariant, with its fused prologues (x quantized, or RMSNorm + quantize, inside every
 * block) and epilogues (store, accumulate, SwiGLU pair); kernels.h has the contracts and
 * docs/cuda.md ("The decode GEMV") the launch shapes.
 *
 * Numerics. x is quantized per 32 elements (act_quant.cuh: gemv_quantize_block): d = amax / 127, q =
 * round(x * (127 / amax)), s = d * sum(q); every weight type dots its integer quants against q
 * exactly (__dp4a) and adds float terms per 32-block (gemv_units.cuh). The order of an output
 * element is the one every quantized matmul kernel shares (docs/numerics.md, "The GPU"; the
 * tensor-core MMQ of mmq.cu follows it too): the row's U units are cut into L =
 * slm_cuda_gemv_lanes(type, cols) segments, segment l = units [l U / L, (l + 1) U / L); each
 * segment sums its units' terms in order into one accumulator from 0; the segment sums are added
 * left to right within F = min(L, 4) groups of consecutive segments, then the group sums left to
 * right. Here lane l of a sub-warp of L lanes takes segment l and the sums meet in the warp's
 * fold area in shared memory. Nothing of this depends on n, on the token's slot, on
 * the prologue, or on which block or weight slot computes the row: a token's output has the
 * same bits for every n and slot (batch invariance), and the fused prologues give the bits of
 * slm_cuda_gemv_quantize + slm_cuda_gemv_q8 (the same device code quantizes). Against the CPU
 * backend it is a tolerance, not bits (docs/numerics.md).
 *
 * Shape: GEMV_THREADS = 128 threads (4 warps) a block, R x 32 / L rows a warp, R x 128 / L a
 * block ("a row group"); each lane keeps R x NT accumulators (NT = 1, 2, 4 or 8, the least >= n),
 * so a weight byte is read once for all n tokens. R = 2 rows a lane (each activation load serving
 * both) for the 32-element types when n >= 2 and the launch has GEMV_R2_MIN_ROWS rows, else 1:
 * only the grouping changes, never a row's order, so R may depend on n. Row groups of up to 3
 * weights (Q, K, V) are one flat list; block b takes groups b, b + grid, ... with grid =
 * min(groups, GEMV_MAX_BLOCKS). The prologues quantize x (n, cols) into dynamic shared memory
 * once per block.
 */
#include "kernels/cuda/act_quant.cuh"
#include "kernels/cuda/gemv_units.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/qmatmul.cuh"

#define GEMV_THREADS 128
#define GEMV_WARPS (GEMV_THREADS / 32)
/* 132 SMs (H100 / H200 SXM) x 8 resident blocks of 4 warps: 32 warps an SM. More blocks would
 * only repeat the prologue's quantization of x. */
#define GEMV_MAX_BLOCKS (132 * 8)
/* 2 rows a lane (each activation load serving both) for the 32-element types when n >= 2 and
 * the launch has this many rows (its weights with their own y): enough row groups still to
 * fill the SMs. Fewer rows (SmolLM2's layer GEMVs) keep 1 row a lane and twice the warps. */
#define GEMV_R2_MIN_ROWS 2048

using slm_gemv::gemv_act;

enum { PRO_Q8 = 0, PRO_QUANTIZE = 1, PRO_RMSNORM = 2 };


/* ======================================================================================
 * Quantizing x: act_quant.cuh's device code, for the standalone quantizer and the prologues
 * ====================================================================================== */

static_assert(GEMV_THREADS == QACT_THREADS, "the quantizer's block is the GEMV's");

/* Standalone: grid (ceil(nbr / 128), n); block (c, t) quantizes activation blocks 128c .. 128c + 127
 * of token t, a thread each, with RMSNorm first when gamma (every block of the token computes its
 * scale, the same bits, on its first warp). */
__global__ void __launch_bounds__(GEMV_THREADS)
    k_gemv_quantize(const float *__restrict__ x, const float *__restrict__ gamma, float eps, int cols,
                    int8_t *__restrict__ q, float2 *__restrict__ ds)
{
    slm_pdl_begin();
    /* token t alone: q and ds offset to its row, so the block sees a one-token batch */
    const int t = blockIdx.y;
    qact_block b;
    int g;
    if (qact_row_block(x + (size_t)t * (size_t)cols, gamma, eps, cols, &b, &g))
        gemv_store_block(b, g, q + (size_t)t * (size_t)cols, ds + (size_t)t * (size_t)(cols >> 5));
}

/* ======================================================================================
 * The GEMV
 * ====================================================================================== */

/* The pairs (row, token) a sub-warp computes: R x NT, pair p = r * NT + t. */
template <int NT, int R> struct gemv_pairs {
    static const int P = R * NT;
};

/* Lane l of a sub-warp of L = 1 << lshift lanes, R rows (wr[r]: row r's bytes), in the order every
 * quantized matmul shares (docs/numerics.md): lane l takes the units of its segment [l U / L,
 * (l + 1) U / L) in order into one accumulator a (row, token), from 0; then, through the warp's
 * fold area (fold[p][lane]), the segment sums are added left to right within each of F =
 * min(L, SLM_CUDA_FOLD_GROUPS) groups of L / F consecutive segments, and the F group sums left
 * to right.
 * Lane l ends with pairs p = l, l + L, l + 2L, ... < R x NT in own[i] (p = l + i L); the other
 * entries of own are not written. R only shares the activation loads: each row's order is the
 * same. Contains __syncwarp: call it from the whole warp. */
template <uint32_t WT, int R> using gemv_raw = typename slm_gemv::gemv_unit<WT>::template raw<R>;

/* Lane l's first unit: the first of its segment, clamped to a unit of the row when the segment
 * has none (then nothing reads it). */
__device__ __forceinline__ int gemv_first_unit(const qmm_args &p, int l)
{
    return min(qmm_seg(p, l), p.units - 1);
}

/* EARLY (gemv_early): with pre, w0 holds the words of the lane's first unit, loaded by the caller
 * before its wait; for the 32-element types each next unit's words are asked for before this
 * unit's dots (gemv_units.cuh: load, dot), so that a lane has two units in flight. */
template <uint32_t WT, int NT, int R, bool EARLY>
__device__ __forceinline__ void gemv_rows(const uint8_t *const *wr, const qmm_args &p, const gemv_act &a, int l,
                                          bool pre, const gemv_raw<WT, R> &w0, float (*fold)[32], float *own)
{
    typedef slm_gemv::gemv_unit<WT> UT;
    const int P = gemv_pairs<NT, R>::P;
    float acc[R][NT];
    SLM_UNROLL
    for (int r = 0; r < R; r++) {
        SLM_UNROLL
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
    }
    const int u0 = qmm_seg(p, l), u1 = qmm_seg(p, l + 1);
    if constexpr (EARLY) {
        gemv_raw<WT, R> cur = pre ? w0 : UT::template load<R>(wr, p.nb, gemv_first_unit(p, l));
        for (int u = u0; u < u1; u++) {
            if constexpr (UT::MAX_R == 2) {   /* the 32-element types: the next unit one ahead */
                gemv_raw<WT, R> next = cur;
                if (u + 1 < u1) next = UT::template load<R>(wr, p.nb, u + 1);
                UT::template dot<NT, R>(cur, u, a, p.n, acc);
                cur = next;
            } else {
                UT::template dot<NT, R>(cur, u, a, p.n, acc);
                if (u + 1 < u1) cur = UT::template load<R>(wr, p.nb, u + 1);
            }
        }
    } else {
        for (int u = u0; u < u1; u++) UT::template dot<NT, R>(UT::template load<R>(wr, p.nb, u), u, a, p.n, acc);
    }
    const int lane = threadIdx.x & 31, first = lane - l, L = 1 << p.lshift;
    SLM_UNROLL
    for (int r = 0; r < R; r++) {
        SLM_UNROLL
        for (int t = 0; t < NT; t++) fold[r * NT + t][lane] = acc[r][t];
    }
    __syncwarp();
    SLM_UNROLL
    for (int i = 0; i < P; i++) {
        const int pp = l + i * L;
        if (pp < P) {
            const int F = L < SLM_CUDA_FOLD_GROUPS ? L : SLM_CUDA_FOLD_GROUPS, S = L / F;
            float s = 0.0f;
            for (int f = 0; f < F; f++) {
                float gs = fold[pp][first + f * S];
                for (int j = 1; j < S; j++) gs = __fadd_rn(gs, fold[pp][first + f * S + j]);
                s = f == 0 ? gs : __fadd_rn(s, gs);
            }
            own[i] = s;
        }
    }
    __syncwarp();   /* fold is reused by the next call */
}

/* Row group G's weight, output and rows, the sub-warp's first row row0 and its R rows of the
 * weight (wr) and, for SwiGLU, of the up weight p.w[1] (ur): a row past the end reads row rows - 1
 * and stores nothing (the fold needs all lanes). */
template <int R>
__device__ __forceinline__ void gemv_group(const qmm_args &p, int G, int sub, const uint8_t **w, float **y, int *rows,
                                           int *row0, const uint8_t **wr, const uint8_t **ur)
{
    int rg;
    qmm_weight_of(p, G, w, y, rows, &rg);
    *row0 = rg * R * (GEMV_THREADS >> p.lshift) + sub * R;
    SLM_UNROLL
    for (int r = 0; r < R; r++) {
        const size_t off = (size_t)min(*row0 + r, *rows - 1) * p.w_row_bytes;
        wr[r] = *w + off;
        ur[r] = p.epilogue == SLM_CUDA_GEMV_SWIGLU ? p.w[1] + off : nullptr;
    }
}

/* EARLY: the kernels that load their lanes' first unit of weights before the wait (one row a
 * lane; the K-quants at one token only), so that it arrives while the prologue runs (weights
 * only, which nothing writes during a step), and, for the 32-element types, each next unit one
 * ahead (docs/cuda.md, "The decode GEMV's first weights before its wait"). Held through the
 * prologue (and the up weight's through the gate's rows), the words of wider kernels made ptxas
 * spill under the 128 registers of 4 blocks an SM. */
template <uint32_t WT, int NT, int R> __host__ __device__ constexpr bool gemv_early()
{
    return R == 1 && (slm_gemv::gemv_unit<WT>::MAX_R == 2 || NT == 1);
}

template <uint32_t WT, int NT, int R>
__global__ void __launch_bounds__(GEMV_THREADS, 4) k_gemv(const struct qmm_args p)
{
    typedef slm_gemv::gemv_unit<WT> UT;
    constexpr bool EARLY = gemv_early<WT, NT, R>();
    qmm_prefetch(p, R * (GEMV_THREADS >> p.lshift));   /* blockIdx.x < p.groups: grid = min(groups, GEMV_MAX_BLOCKS) */
    const int L = 1 << p.lshift, l = threadIdx.x & (L - 1), sub = threadIdx.x >> p.lshift;
    const bool swiglu = p.epilogue == SLM_CUDA_GEMV_SWIGLU;
    const uint8_t *w, *wr[R], *ur[R];
    float *y;
    int rows, row0;
    gemv_raw<WT, R> first = {}, ufirst = {};
    if (EARLY) {   /* the block's first row group, before the wait */
        gemv_group<R>(p, (int)blockIdx.x, sub, &w, &y, &rows, &row0, wr, ur);
        first = UT::template load<R>(wr, p.nb, gemv_first_unit(p, l));
        if (swiglu) ufirst = UT::template load<R>(ur, p.nb, gemv_first_unit(p, l));
    }
    slm_pdl_begin();
    /* prologues: (n, cols) int8 quants, then (n, cols / 32) float2 (p.act_smem bytes); then every
     * kernel: the fold area, GEMV_WARPS x P x 32 floats */
    SLM_DYN_SHARED(uint4, smem);
    gemv_act a;
    a.cols = p.cols;
    if (p.prologue == PRO_Q8) {
        a.q = p.xq;
        a.ds = reinterpret_cast<const float2 *>(p.xq + (size_t)p.n * (size_t)p.cols);
    } else {
        __shared__ float scale[SLM_CUDA_GEMV_MAX_TOKENS];
        int8_t *q = reinterpret_cast<int8_t *>(smem);
        float2 *ds = reinterpret_cast<float2 *>(q + (size_t)p.n * (size_t)p.cols);
        gemv_quantize_tokens(p.x, p.prologue == PRO_RMSNORM ? p.gamma : nullptr, p.eps, p.n, p.cols, scale, q, ds);
        a.q = q;
        a.ds = ds;
    }

    const int P = gemv_pairs<NT, R>::P;
    float (*fold)[32] = reinterpret_cast<float (*)[32]>(reinterpret_cast<char *>(smem) + p.act_smem) + P * (threadIdx.x >> 5);
    for (int G = blockIdx.x; G < p.groups; G += gridDim.x) {
        const bool pre = EARLY && G == (int)blockIdx.x;
        if (!pre) gemv_group<R>(p, G, sub, &w, &y, &rows, &row0, wr, ur);
        float own[P] = {};   /* set where pp < P (gemv_rows), read only there */
        gemv_rows<WT, NT, R, EARLY>(wr, p, a, l, pre, first, fold, own);
        if (swiglu) {
            float up[P] = {};
            gemv_rows<WT, NT, R, EARLY>(ur, p, a, l, pre, ufirst, fold, up);
            SLM_UNROLL
            for (int i = 0; i < P; i++) {
                if (l + i * L < P) {
                    const float g = own[i];
                    own[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
                }
            }
        }
        SLM_UNROLL
        for (int i = 0; i < P; i++) {
            const int pp = l + i * L, r = pp / NT, t = pp % NT;
            if (pp < P && t < p.n && row0 + r < rows) {
                float *yp = y + (size_t)t * (size_t)rows + (row0 + r);
                *yp = p.epilogue == SLM_CUDA_GEMV_ACCUMULATE ? __fadd_rn(*yp, own[i]) : own[i];
            }
        }
    }
}

/* ======================================================================================
 * Launchers
 * ====================================================================================== */

extern "C" int slm_cuda_gemv_lanes(uint32_t type, int64_t cols)
{
    if (slm_cuda_device_row_bytes(type, cols) == 0 || cols > INT32_MAX) return 0;
    const int nb = (int)(cols / slm_qblock_elems(type));
    const int units = qmm_units(type, nb);
    int L = 1;
    while (L < 32 && L < units) L *= 2;
    return L;
}

extern "C" size_t slm_cuda_act_bytes(int n, int64_t cols)
{
    if (n < 1 || n > SLM_CUDA_ACT_MAX_TOKENS || cols < 32 || cols % 32 != 0 || cols > INT32_MAX / 2) return 0;
    return (size_t)n * (size_t)cols + (size_t)n * (size_t)(cols / 32) * 8;
}

extern "C" size_t slm_cuda_gemv_act_bytes(int n, int64_t cols)
{
    return n <= SLM_CUDA_GEMV_MAX_TOKENS ? slm_cuda_act_bytes(n, cols) : 0;
}

/* The GEMV's tokens a launch (NT), and the dynamic shared bytes of its fold area for R rows a lane. */
static int gemv_nt(int n) { return n <= 2 ? n : n <= 4 ? 4 : 8; }
static size_t fold_bytes(int r, int n) { return (size_t)GEMV_WARPS * (size_t)(r * gemv_nt(n)) * 32 * sizeof(float); }
/* The prologue's quantized x, rounded up to 16 bytes (the fold area follows it). */
static size_t act_smem(int n, int64_t cols) { return (slm_cuda_gemv_act_bytes(n, cols) + 15) & ~(size_t)15; }

extern "C" int slm_cuda_gemv_fits(uint32_t type, int64_t cols, int n)
{
    const size_t bytes = slm_cuda_gemv_act_bytes(n, cols);
    return bytes != 0 && slm_cuda_gemv_lanes(type, cols) != 0 && act_smem(n, cols) + fold_bytes(1, n) <= SLM_CUDA_GEMV_SMEM;
}

extern "C" int slm_cuda_gemv_quantize(const float *x, const float *gamma, float eps, int n, int64_t cols, void *xq,
                                      struct CUstream_st *stream)
{
    const int rc = qact_args(x, gamma, n, cols, xq, slm_cuda_act_bytes(n, cols));
    if (rc) return rc;
    const int c = (int)cols, nbr = c / 32;
    int8_t *q = (int8_t *)xq;
    float2 *ds = (float2 *)(q + (size_t)n * (size_t)c);
    dim3 grid((unsigned)((nbr + GEMV_THREADS - 1) / GEMV_THREADS), (unsigned)n);
    SLM_LAUNCH_PDL(k_gemv_quantize, grid, GEMV_THREADS, 0, stream, x, gamma, eps, c, q, ds);
    return slm_cuda_launched();
}

/* qmm_setup for the GEMV: 2 rows a lane for the 32-element types when n >= 2, the launch has
 * GEMV_R2_MIN_ROWS rows with their own y, and the fold area of 2 rows fits beside act (the
 * prologue's dynamic shared bytes: act_smem, or 0 for x already quantized). */
static int gemv_setup(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, int n,
                      float *const *y, int epilogue, size_t act, struct qmm_args *p)
{
    const int L = slm_cuda_gemv_lanes(type, cols);
    SLM_CUDA_ARG(L != 0 && rows && n >= 1 && n <= SLM_CUDA_GEMV_MAX_TOKENS && n_w >= 1 &&
                 n_w <= SLM_CUDA_GEMV_MAX_WEIGHTS);
    int64_t own_rows = 0;   /* rows of the weights with their own y */
    for (int i = 0; i < (epilogue == SLM_CUDA_GEMV_SWIGLU ? 1 : n_w); i++) own_rows += rows[i] > 0 ? rows[i] : 0;
    const int r2 = slm_qblock_elems(type) == 32 && n >= 2 && own_rows >= GEMV_R2_MIN_ROWS &&
                           act + fold_bytes(2, n) <= SLM_CUDA_GEMV_SMEM
                       ? 2
                       : 1;
    int rc = qmm_setup(type, n_w, w, rows, cols, n, SLM_CUDA_GEMV_MAX_TOKENS, y, epilogue, r2 * (GEMV_THREADS / L), p);
    if (rc) return rc;
    p->r = r2;
    p->act_smem = (int)act;
    return 0;
}

template <uint32_t WT, int R>
static int gemv_launch_rows(const struct qmm_args &p, cudaStream_t stream)
{
    const size_t smem = (size_t)p.act_smem + fold_bytes(R, p.n);
    const unsigned grid = (unsigned)(p.groups < GEMV_MAX_BLOCKS ? p.groups : GEMV_MAX_BLOCKS);
    const size_t max = SLM_CUDA_GEMV_SMEM;   /* the prologue's x with the fold area: an opt-in above the default */
    int rc;
    if constexpr (R == 1) {
        if (p.n == 1) rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 1, 1>), max, grid, GEMV_THREADS, smem, stream, p);
        else if (p.n == 2) rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 2, 1>), max, grid, GEMV_THREADS, smem, stream, p);
        else if (p.n <= 4) rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 4, 1>), max, grid, GEMV_THREADS, smem, stream, p);
        else rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 8, 1>), max, grid, GEMV_THREADS, smem, stream, p);
    } else {   /* n >= 2 */
        if (p.n == 2) rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 2, R>), max, grid, GEMV_THREADS, smem, stream, p);
        else if (p.n <= 4) rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 4, R>), max, grid, GEMV_THREADS, smem, stream, p);
        else rc = SLM_LAUNCH_PDL_SMEM((k_gemv<WT, 8, R>), max, grid, GEMV_THREADS, smem, stream, p);
    }
    return rc ? rc : slm_cuda_launched();
}

template <uint32_t WT>
static int gemv_launch_type(const struct qmm_args &p, cudaStream_t stream)
{
    if constexpr (slm_gemv::gemv_unit<WT>::MAX_R >= 2)
        if (p.r == 2) return gemv_launch_rows<WT, 2>(p, stream);
    return gemv_launch_rows<WT, 1>(p, stream);
}

static int gemv_launch(uint32_t type, const struct qmm_args &p, cudaStream_t stream)
{
    switch (type) {
    case SLM_TYPE_Q4_0: return gemv_launch_type<SLM_TYPE_Q4_0>(p, stream);
    case SLM_TYPE_Q4_1: return gemv_launch_type<SLM_TYPE_Q4_1>(p, stream);
    case SLM_TYPE_Q5_0: return gemv_launch_type<SLM_TYPE_Q5_0>(p, stream);
    case SLM_TYPE_Q5_1: return gemv_launch_type<SLM_TYPE_Q5_1>(p, stream);
    case SLM_TYPE_Q8_0: return gemv_launch_type<SLM_TYPE_Q8_0>(p, stream);
    case SLM_TYPE_Q4_K: return gemv_launch_type<SLM_TYPE_Q4_K>(p, stream);
    case SLM_TYPE_Q5_K: return gemv_launch_type<SLM_TYPE_Q5_K>(p, stream);
    case SLM_TYPE_Q6_K: return gemv_launch_type<SLM_TYPE_Q6_K>(p, stream);
    default: return -EINVAL;
    }
}

extern "C" int slm_cuda_gemv_q8(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols,
                                const void *xq, int n, float *const *y, int epilogue, struct CUstream_st *stream)
{
    struct qmm_args p;
    int rc = gemv_setup(type, n_w, w, rows, cols, n, y, epilogue, 0, &p);
    if (rc) return rc;
    SLM_CUDA_DEVICE(xq, slm_cuda_gemv_act_bytes(n, cols));
    SLM_CUDA_ARG(slm_cuda_aligned(xq, 16));
    p.prologue = PRO_Q8;
    p.xq = (const int8_t *)xq;
    return gemv_launch(type, p, stream);
}

extern "C" int slm_cuda_gemv(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols,
                             const float *x, const float *gamma, float eps, int n, float *const *y, int epilogue,
                             struct CUstream_st *stream)
{
    struct qmm_args p;
    SLM_CUDA_ARG(slm_cuda_gemv_fits(type, cols, n));
    int rc = gemv_setup(type, n_w, w, rows, cols, n, y, epilogue, act_smem(n, cols), &p);
    if (rc) return rc;
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    if (gamma) SLM_CUDA_DEVICE(gamma, (size_t)cols * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 16) && (!gamma || slm_cuda_aligned(gamma, 16)));
    p.prologue = gamma ? PRO_RMSNORM : PRO_QUANTIZE;
    p.x = x;
    p.gamma = gamma;
    p.eps = eps;
    return gemv_launch(type, p, stream);
}
