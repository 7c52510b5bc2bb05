/*
 * kernels/cuda/qmatmul.cuh - what the two quantized matmul kernels (the decode GEMV of gemv.cu and
 * the tensor-core MMQ of mmq.cu) share on the host and the device: their argument block, its
 * checks, and how a flat list of row groups over up to 3 weights (Q, K, V) names its weight.
 */
#ifndef SLM_KERNELS_CUDA_QMATMUL_CUH
#define SLM_KERNELS_CUDA_QMATMUL_CUH

#include "kernels/cuda/gemv_units.cuh"
#include "kernels/cuda/launch.cuh"

struct qmm_args {
    const uint8_t *w[SLM_CUDA_GEMV_MAX_WEIGHTS];
    float *y[SLM_CUDA_GEMV_MAX_WEIGHTS];
    int rows[SLM_CUDA_GEMV_MAX_WEIGHTS];
    int end[SLM_CUDA_GEMV_MAX_WEIGHTS];   /* weight i owns row groups [end[i - 1], end[i]) */
    int n_w;                              /* weights with their own y (1 for SwiGLU: w[1] is up) */
    int groups;                           /* end[n_w - 1] */
    size_t w_row_bytes;
    int nb;                               /* weight blocks a row */
    int units;                            /* units a row (gemv_units.cuh) */
    int lshift;                           /* log2 L */
    int r;                                /* the GEMV's rows a lane: 1, or 2 (GEMV_R2_MIN_ROWS) */
    int cols, n;
    int epilogue;                         /* SLM_CUDA_GEMV_STORE, _ACCUMULATE, _SWIGLU */
    int prologue;                         /* PRO_* */
    int act_smem;                         /* dynamic shared bytes of the prologue's quantized x (0 for PRO_Q8) */
    const int8_t *xq;                     /* PRO_Q8: (n, cols) quants, then (n, cols / 32) float2 */
    const float *x;                       /* PRO_QUANTIZE, PRO_RMSNORM: (n, cols) */
    const float *gamma;                   /* PRO_RMSNORM: (cols) */
    float eps;
};

/* Units a row of nb blocks (gemv_units.cuh) */
static inline int qmm_units(uint32_t type, int nb)
{
    switch (type) {
    case SLM_TYPE_Q4_0: return slm_gemv::gemv_unit<SLM_TYPE_Q4_0>::units(nb);
    case SLM_TYPE_Q4_1: return slm_gemv::gemv_unit<SLM_TYPE_Q4_1>::units(nb);
    case SLM_TYPE_Q5_0: return slm_gemv::gemv_unit<SLM_TYPE_Q5_0>::units(nb);
    case SLM_TYPE_Q5_1: return slm_gemv::gemv_unit<SLM_TYPE_Q5_1>::units(nb);
    case SLM_TYPE_Q8_0: return slm_gemv::gemv_unit<SLM_TYPE_Q8_0>::units(nb);
    default: return 4 * nb;   /* the K-quants */
    }
}

/*
 * The checks both kernels share, and p filled but for the prologue's fields: 1 <= n <= max_n,
 * 1..3 weights of a type with a device layout, a SwiGLU pair of equal rows, device pointers of
 * the sizes the arguments say, aligned; row groups of per_group rows, numbered across the
 * weights with their own y.
 */
static inline int qmm_setup(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, int n,
                            int max_n, float *const *y, int epilogue, int per_group, struct qmm_args *p)
{
    const int L = slm_cuda_gemv_lanes(type, cols);
    SLM_CUDA_ARG(L != 0 && n >= 1 && n <= max_n && w && rows && y);
    SLM_CUDA_ARG(epilogue == SLM_CUDA_GEMV_STORE || epilogue == SLM_CUDA_GEMV_ACCUMULATE ||
                 epilogue == SLM_CUDA_GEMV_SWIGLU);
    SLM_CUDA_ARG(n_w >= 1 && n_w <= SLM_CUDA_GEMV_MAX_WEIGHTS);
    const bool swiglu = epilogue == SLM_CUDA_GEMV_SWIGLU;
    SLM_CUDA_ARG(!swiglu || (n_w == 2 && rows[0] == rows[1]));
    const size_t rb = slm_cuda_device_row_bytes(type, cols);
    *p = qmm_args{};
    int64_t groups = 0;
    for (int i = 0; i < n_w; i++) {
        SLM_CUDA_ARG(rows[i] >= 1 && rows[i] <= INT32_MAX - 2 * per_group);   /* a group's last row fits an int */
        SLM_CUDA_DEVICE(w[i], (size_t)rows[i] * rb);
        SLM_CUDA_ARG(slm_cuda_aligned(w[i], 16));
        p->w[i] = (const uint8_t *)w[i];
        p->rows[i] = (int)rows[i];
        if (swiglu && i == 1) continue;   /* up: no y of its own, no groups */
        SLM_CUDA_DEVICE(y[i], (size_t)n * (size_t)rows[i] * sizeof(float));
        SLM_CUDA_ARG(slm_cuda_aligned(y[i], 4));
        p->y[i] = y[i];
        groups += (rows[i] + per_group - 1) / per_group;
        SLM_CUDA_ARG(groups <= INT32_MAX);
        p->end[i] = (int)groups;
    }
    p->n_w = swiglu ? 1 : n_w;
    p->groups = (int)groups;
    p->w_row_bytes = rb;
    p->nb = (int)(cols / slm_qblock_elems(type));
    p->units = qmm_units(type, p->nb);
    p->lshift = __builtin_ctz((unsigned)L);
    p->cols = (int)cols;
    p->n = n;
    p->epilogue = epilogue;
    return 0;
}

/* The checks of a standalone quantizer's arguments (slm_cuda_gemv_quantize, slm_cuda_mmq_quantize):
 * bytes, its size of xq for (n, cols), not 0; x (n, cols), xq and gamma (cols, when not NULL)
 * device memory of their sizes, 16-byte aligned. */
static inline int qact_args(const float *x, const float *gamma, int n, int64_t cols, const void *xq, size_t bytes)
{
    SLM_CUDA_ARG(bytes != 0);
    SLM_CUDA_DEVICE(x, (size_t)n * (size_t)cols * sizeof(float));
    SLM_CUDA_DEVICE(xq, bytes);
    if (gamma) SLM_CUDA_DEVICE(gamma, (size_t)cols * sizeof(float));
    SLM_CUDA_ARG(slm_cuda_aligned(x, 16) && slm_cuda_aligned(xq, 16) && (!gamma || slm_cuda_aligned(gamma, 16)));
    return 0;
}

/* The first unit of segment l of a row, the shared order's cut (docs/numerics.md, "The GPU"):
 * segment l = units [qmm_seg(p, l), qmm_seg(p, l + 1)), l = 0 .. L; a run of segments [a, b)
 * likewise [qmm_seg(p, a), qmm_seg(p, b)). */
__device__ __forceinline__ int qmm_seg(const struct qmm_args &p, int l)
{
    return (int)(((int64_t)l * p.units) >> p.lshift);
}

/* Row group G's weight, its output, its rows and the group's place among the weight's groups:
 * constant indices only, so that p stays in the parameter space. */
__device__ __forceinline__ void qmm_weight_of(const struct qmm_args &p, int G, const uint8_t **w, float **y, int *rows,
                                              int *rg)
{
    *w = p.w[0];
    *y = p.y[0];
    *rows = p.rows[0];
    *rg = G;
    SLM_UNROLL
    for (int i = 1; i < SLM_CUDA_GEMV_MAX_WEIGHTS; i++) {
        if (i < p.n_w && G >= p.end[i - 1]) {
            *w = p.w[i];
            *y = p.y[i];
            *rows = p.rows[i];
            *rg = G - p.end[i - 1];
        }
    }
}

/* Before the wait (slm_pdl_begin), while the grid before this one may still run: the block's
 * first row group of per_group rows (and its SwiGLU partner in p.w[1]) asked of L2, a 128-byte
 * line a thread, the first blockDim.x lines of each weight's rows (16 KiB at 128 threads); only
 * the blocks of the first token tile (blockIdx.y == 0): the others read the same rows. The weights
 * are read-only for the step, and a prefetch moves nothing into a thread (docs/cuda.md,
 * "Programmatic dependent launch"). With L1, the same lines into the SM's L1, by every block (an
 * SM's L1 is its own): the narrow MMQ, whose warps walk their share of each row a unit at a time,
 * a dependent weight load a unit (docs/cuda.md, "The narrow MMQ's weights in L1").
 * blockIdx.x < p.groups. */
template <bool L1 = false>
__device__ __forceinline__ void qmm_prefetch(const struct qmm_args &p, int per_group)
{
    const uint8_t *w;
    float *y;
    int rows, rg;
    qmm_weight_of(p, (int)blockIdx.x, &w, &y, &rows, &rg);
    const int r0 = rg * per_group;
    const size_t span = (size_t)min(per_group, rows - r0) * p.w_row_bytes, off = (size_t)threadIdx.x * 128;
    if ((L1 || blockIdx.y == 0) && off < span) {
        const size_t at = (size_t)r0 * p.w_row_bytes + off;
        const bool pair = p.epilogue == SLM_CUDA_GEMV_SWIGLU;
        if (L1) {
            slm_prefetch_l1(w + at);
            if (pair) slm_prefetch_l1(p.w[1] + at);
        } else {
            slm_prefetch_l2(w + at);
            if (pair) slm_prefetch_l2(p.w[1] + at);
        }
    }
}

#endif
