/* daemon/engine/backends/cuda/ops.c - the CUDA backend's embedding, RMSNorm, matmuls (the
 * quantized-activation GEMV and MMQ, the F16 / BF16 MMF, the fp32 GEMV), element-wise ops, row
 * gathers and copies to the host. */

#include "daemon/engine/backends/cuda/internal.h"
#include "kernels/cpu/dequant.h"

/* ---- the ops */

/* The lookup that reads the table as cuda_load_weight left it (device layout or GGUF's). */
static int embed_rows(struct cuda_impl *ci, const struct slm_weight *table, const int32_t *d_ids, int n, float *out)
{
    if (cuda_device_layout(table))
        return launched(slm_cuda_embed_device_layout(table->type, table->be_data, table->rows, table->cols, d_ids, n,
                                                     out, ci->stream),
                        "slm_cuda_embed_device_layout");
    return launched(slm_cuda_embed(table->type, table->be_data, table->rows, table->cols, d_ids, n, out, ci->stream),
                    "slm_cuda_embed");
}

int cuda_embed(struct slm_backend *be, const struct slm_weight *table, const int32_t *tokens, int n,
               float *out)
{
    struct cuda_impl *ci = impl(be);
    if (ci->graphs.cur)   /* ids from the step's metadata buffer */
        return embed_rows(ci, table, ci->graphs.d_tokens, n, out);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= table->rows) return -EINVAL;
    /* The first op of every pass: the device is made current on the calling thread. */
    CUDA_TRY(cudaSetDevice(ci->device));
    int rc = cuda_upload_ids(ci, tokens, n);
    if (rc) return rc;
    return embed_rows(ci, table, ci->ids.dev, n, out);
}

int cuda_rmsnorm(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int n, int dim,
                 float eps, float *out)
{
    return launched(slm_cuda_rmsnorm(x, gamma->be_data, n, dim, eps, out, impl(be)->stream), "slm_cuda_rmsnorm");
}

/* ---- matmuls (docs/cuda.md, "The decode GEMV" and "The tensor-core MMQ"; docs/numerics.md,
 * "The GPU"): a weight of a type with a device layout takes, for a call of n tokens,
 * - n >= ci->mmq_min (SLM_CUDA_MMQ_MIN_TOKENS, default 9; never below sm_80): the tensor-core MMQ
 *   over all n tokens, one launch per group of weights of one type and cols; up to
 *   MMQ_FUSED_MAX_TOKENS tokens (and where a block's tokens fit its shared memory) x is quantized
 *   (RMS-normed first for norm_matmul / norm_glu) inside the MMQ's blocks, else once into the
 *   scratch by a launch of its own;
 * - else the decode GEMV: for n <= 8 x is quantized inside the GEMV's blocks; when x does not fit
 *   their shared memory (or n > 8 with the MMQ off), x is quantized once into the scratch, 8
 *   tokens a chunk, and each chunk runs the GEMV over it.
 * All of them give the same bits for a token (the MMQ's are the GEMV's), and a token's bits
 * depend on neither n nor its place. F16 / BF16 weights (cols a multiple of 16, sm_80+) take the
 * tensor-core slm_cuda_mmf for every n, x rounded to the weight's type (one kernel whatever the
 * step: batch-invariant); F32 weights (and F16 / BF16 ones the MMF refuses) the fp32 GEMV. */

/* The MMQ quantizes x in its own blocks (slm_cuda_mmq_fused: one launch a matmul, not two) up to
 * this many tokens. Every row group's block quantizes its tokens again, G times the work of the
 * one quantize launch for a weight of G row groups (SmolLM2: 36-96): cheap against a launch at
 * the sizes of batched decode (the graph buckets up to 64), not at a 512-token prefill chunk
 * (docs/cuda.md, "The tensor-core MMQ"). A guess until a GPU measures it; the bits are the same
 * either way. */
#define MMQ_FUSED_MAX_TOKENS 64

/* Tokens the quantized-activation scratch holds at least once it is allocated. */
#define Q8_SCRATCH_TOKENS 512

static size_t align256(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

/* Makes the scratch hold `need` bytes; a call of n tokens. A new one drops the graphs. */
static int q8_reserve(struct cuda_impl *ci, size_t need, int n)
{
    if (need <= ci->q8_bytes) return 0;
    int tokens = n > Q8_SCRATCH_TOKENS ? n : Q8_SCRATCH_TOKENS, T = SLM_CUDA_GEMV_MAX_TOKENS;
    size_t want = align256(slm_cuda_gemv_act_bytes(T, ci->q8_cols_max)) * (size_t)((tokens + T - 1) / T);
    if (want < need) want = need;
    if (ci->q8) {
        slm_log(SLM_LOG_INFO, "cuda backend: quantized-activation scratch grows from %zu to %zu bytes (%d tokens)",
                ci->q8_bytes, want, n);
        cuda_graphs_reset(ci);   /* they hold the old one */
        CUDA_TRY(cudaFree(ci->q8));   /* synchronises: no queued GEMV reads it any more */
        ci->q8 = NULL;
        ci->q8_bytes = 0;
    }
    CUDA_TRY(cudaMalloc(&ci->q8, want));
    ci->q8_bytes = want;
    return 0;
}

/* One GEMV call over n_w (<= SLM_CUDA_GEMV_MAX_WEIGHTS) weights of one type and cols: y[i] =
 * W_i . x (RMS-normed by gamma when not NULL), with `epilogue`, for any n. */
static int gemv(struct cuda_impl *ci, uint32_t type, int64_t cols, int n_w, const void *const *w,
                const int64_t *rows, const float *x, const float *gamma, float eps, int n, float *const *y,
                int epilogue)
{
    const int T = SLM_CUDA_GEMV_MAX_TOKENS;
    if (n >= ci->mmq_min) {
        const size_t smem = slm_cuda_mmq_fused_smem(type, cols, epilogue);
        if (n <= MMQ_FUSED_MAX_TOKENS && smem != 0 && smem <= SLM_CUDA_MMQ_SMEM)
            return launched(slm_cuda_mmq_fused(type, n_w, w, rows, cols, x, gamma, eps, n, y, epilogue, ci->stream),
                            "slm_cuda_mmq_fused");
        int M = SLM_CUDA_ACT_MAX_TOKENS;   /* tokens a launch: fewer where their bytes pass 2 GiB */
        while (M > 32 && slm_cuda_mmq_act_bytes(M, cols) == 0) M /= 2;
        int rc = q8_reserve(ci, slm_cuda_mmq_act_bytes(n < M ? n : M, cols), n);
        for (int c = 0; c < n && !rc; c += M) {
            int k = n - c < M ? n - c : M;
            float *yc[SLM_CUDA_GEMV_MAX_WEIGHTS];
            for (int i = 0; i < n_w; i++) yc[i] = y[i] ? y[i] + (size_t)c * (size_t)rows[i] : NULL;
            rc = launched(slm_cuda_mmq_quantize(x + (size_t)c * (size_t)cols, gamma, eps, k, cols, ci->q8, ci->stream),
                          "slm_cuda_mmq_quantize");
            if (!rc)
                rc = launched(slm_cuda_mmq(type, n_w, w, rows, cols, ci->q8, k, yc, epilogue, ci->stream), "slm_cuda_mmq");
        }
        return rc;
    }
    if (n <= T && slm_cuda_gemv_fits(type, cols, n))
        return launched(slm_cuda_gemv(type, n_w, w, rows, cols, x, gamma, eps, n, y, epilogue, ci->stream),
                        "slm_cuda_gemv");
    size_t chunk = align256(slm_cuda_gemv_act_bytes(T, cols));
    int n_chunks = (n + T - 1) / T;
    int rc = q8_reserve(ci, chunk * (size_t)n_chunks, n);
    if (rc) return rc;
    for (int c = 0; c < n_chunks && !rc; c++) {
        int k = n - c * T < T ? n - c * T : T;
        rc = launched(slm_cuda_gemv_quantize(x + (size_t)c * T * (size_t)cols, gamma, eps, k, cols,
                                             (char *)ci->q8 + (size_t)c * chunk, ci->stream),
                      "slm_cuda_gemv_quantize");
    }
    for (int c = 0; c < n_chunks && !rc; c++) {
        int k = n - c * T < T ? n - c * T : T;
        float *yc[SLM_CUDA_GEMV_MAX_WEIGHTS];
        for (int i = 0; i < n_w; i++) yc[i] = y[i] + (size_t)c * T * (size_t)rows[i];
        rc = launched(slm_cuda_gemv_q8(type, n_w, w, rows, cols, (char *)ci->q8 + (size_t)c * chunk, k, yc, epilogue,
                                       ci->stream),
                      "slm_cuda_gemv_q8");
    }
    return rc;
}

/* The matmul of a weight without a device layout over xf: the tensor-core MMF for F16 / BF16
 * (when it takes the shape), else the fp32 GEMV. The choice depends on the weight alone. */
static int float_matmul(struct cuda_impl *ci, const struct slm_weight *w, const float *xf, int n, float *y,
                        int accumulate)
{
    if (ci->mmf && (w->type == SLM_TYPE_F16 || w->type == SLM_TYPE_BF16) && w->cols % 16 == 0)
        return launched(slm_cuda_mmf(w->type, w->be_data, w->rows, w->cols, xf, n, y, accumulate, ci->stream),
                        "slm_cuda_mmf");
    return launched(slm_cuda_matvec(w->type, w->be_data, w->rows, w->cols, xf, n, y, accumulate, ci->stream),
                    "slm_cuda_matvec");
}

/* Runs the GEMV over w[0..n_w) grouped by (type, cols), up to SLM_CUDA_GEMV_MAX_WEIGHTS a call;
 * weights without a device layout take float_matmul over xf (x, or x normed when gamma). */
static int matmul_groups(struct cuda_impl *ci, int n_w, const struct slm_weight *const *w, const float *x,
                         const float *gamma, float eps, const float *xf, int n, float *const *y, int accumulate)
{
    const int epi = accumulate ? SLM_CUDA_GEMV_ACCUMULATE : SLM_CUDA_GEMV_STORE;
    uint64_t done = 0;
    for (int j = 0; j < n_w && j < 64; j++) {
        if (done >> j & 1) continue;
        if (!cuda_device_layout(w[j])) {
            done |= (uint64_t)1 << j;
            int rc = float_matmul(ci, w[j], xf, n, y[j], accumulate);
            if (rc) return rc;
            continue;
        }
        const void *gw[SLM_CUDA_GEMV_MAX_WEIGHTS];
        int64_t rows[SLM_CUDA_GEMV_MAX_WEIGHTS];
        float *gy[SLM_CUDA_GEMV_MAX_WEIGHTS];
        int g = 0;
        for (int k = j; k < n_w && k < 64 && g < SLM_CUDA_GEMV_MAX_WEIGHTS; k++) {
            if ((done >> k & 1) || !cuda_device_layout(w[k]) || w[k]->type != w[j]->type || w[k]->cols != w[j]->cols)
                continue;
            gw[g] = w[k]->be_data, rows[g] = w[k]->rows, gy[g] = y[k];
            g++;
            done |= (uint64_t)1 << k;
        }
        int rc = gemv(ci, w[j]->type, w[j]->cols, g, gw, rows, x, gamma, eps, n, gy, epi);
        if (rc) return rc;
    }
    return n_w > 64 ? -EINVAL : 0;
}

int cuda_matmul(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                float *const *y, int accumulate)
{
    return matmul_groups(impl(be), n_w, w, x, NULL, 0.0f, x, n, y, accumulate);
}

/* x RMS-normed into the backend's float scratch, for the weights the GEMV's prologue cannot
 * norm (no device layout): grown like the q8 scratch, dropping the graphs when it moves. */
static int normed(struct cuda_impl *ci, const float *x, const struct slm_weight *gamma, int n, int dim, float eps,
                  const float **out)
{
    size_t need = (size_t)n * (size_t)dim * sizeof(float);
    if (need > ci->xn_bytes) {
        if (ci->xn) {
            cuda_graphs_reset(ci);
            CUDA_TRY(cudaFree(ci->xn));
            ci->xn = NULL, ci->xn_bytes = 0;
        }
        CUDA_TRY(cudaMalloc((void **)&ci->xn, need));
        ci->xn_bytes = need;
    }
    *out = ci->xn;
    return launched(slm_cuda_rmsnorm(x, gamma->be_data, n, dim, eps, ci->xn, ci->stream), "slm_cuda_rmsnorm");
}

int cuda_norm_matmul(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                     int n_w, const struct slm_weight *const *w, int n, float *const *y)
{
    struct cuda_impl *ci = impl(be);
    const float *xf = NULL;
    for (int j = 0; j < n_w; j++)
        if (!cuda_device_layout(w[j]) && !xf) {
            int rc = normed(ci, x, gamma, n, dim, eps, &xf);
            if (rc) return rc;
        }
    return matmul_groups(ci, n_w, w, x, gamma->be_data, eps, xf, n, y, 0);
}

int cuda_norm_glu(struct slm_backend *be, const float *x, const struct slm_weight *gamma, int dim, float eps,
                  const struct slm_weight *gate, const struct slm_weight *up, int n, float *y, float *tmp)
{
    struct cuda_impl *ci = impl(be);
    if (cuda_device_layout(gate) && cuda_device_layout(up) && gate->type == up->type && gate->cols == up->cols &&
        gate->rows == up->rows) {
        const void *gw[2] = {gate->be_data, up->be_data};
        int64_t rows[2] = {gate->rows, up->rows};
        float *gy[2] = {y, tmp};
        return gemv(ci, gate->type, gate->cols, 2, gw, rows, x, gamma->be_data, eps, n, gy, SLM_CUDA_GEMV_SWIGLU);
    }
    const struct slm_weight *w[2] = {gate, up};
    float *out[2] = {y, tmp};
    int rc = cuda_norm_matmul(be, x, gamma, dim, eps, 2, w, n, out);
    if (rc) return rc;
    return launched(slm_cuda_swiglu(y, tmp, (size_t)n * (size_t)gate->rows, y, ci->stream), "slm_cuda_swiglu");
}

int cuda_add_bias(struct slm_backend *be, float *x, const struct slm_weight *bias, int n)
{
    return launched(slm_cuda_add_bias(x, bias->be_data, n, (int)bias->cols, impl(be)->stream), "slm_cuda_add_bias");
}

int cuda_swiglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    return launched(slm_cuda_swiglu(gate, up, n, out, impl(be)->stream), "slm_cuda_swiglu");
}

/* The GELU table of slm_cuda_geglu: slm_cpu_geglu of every f16 (times 1, so its f16 result
 * exactly), made on the host and copied once (synchronously: before any capture, since a graph
 * step is always warmed up op by op first). The f16 values -10 and 10 are fed as the float
 * next to them towards 0, which rounds to them: slm_cpu_geglu's formula at them, what a gate
 * just inside (-10, 10) gets (the CPU's branches at +-10 test the gate before its rounding). */
static int gelu_table(struct cuda_impl *ci)
{
    if (ci->gelu_table) return 0;
    float *x = malloc(SLM_CUDA_GELU_TABLE * 2 * sizeof *x);
    uint16_t *t = malloc(SLM_CUDA_GELU_TABLE * sizeof *t);
    int rc = x && t ? 0 : -ENOMEM;
    if (!rc) {
        float *one = x + SLM_CUDA_GELU_TABLE;
        for (int h = 0; h < SLM_CUDA_GELU_TABLE; h++) {
            x[h] = slm_half_to_f32((uint16_t)h), one[h] = 1.0f;
            if (fabsf(x[h]) >= 10.0f) x[h] = nextafterf(x[h], 0.0f);   /* past +-10: never read */
        }
        slm_cpu_geglu(x, one, SLM_CUDA_GELU_TABLE, x);
        for (int h = 0; h < SLM_CUDA_GELU_TABLE; h++) t[h] = slm_f32_to_half(x[h]);
        rc = cuda_ok(cudaMalloc((void **)&ci->gelu_table, SLM_CUDA_GELU_TABLE * sizeof *t), "cudaMalloc (gelu table)");
        if (!rc) rc = cuda_ok(cudaMemcpy(ci->gelu_table, t, SLM_CUDA_GELU_TABLE * sizeof *t, cudaMemcpyHostToDevice),
                              "cudaMemcpy (gelu table)");
        if (rc && ci->gelu_table) cudaFree(ci->gelu_table), ci->gelu_table = NULL;
    }
    free(x);
    free(t);
    return rc;
}

int cuda_geglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    struct cuda_impl *ci = impl(be);
    int rc = gelu_table(ci);
    if (rc) return rc;
    return launched(slm_cuda_geglu(gate, up, ci->gelu_table, n, out, ci->stream), "slm_cuda_geglu");
}

int cuda_scale(struct slm_backend *be, float *x, size_t n, float s)
{
    return launched(slm_cuda_scale(x, n, s, impl(be)->stream), "slm_cuda_scale");
}

int cuda_softcap(struct slm_backend *be, float *x, size_t n, float cap)
{
    return launched(slm_cuda_softcap(x, n, cap, impl(be)->stream), "slm_cuda_softcap");
}

int cuda_add(struct slm_backend *be, float *x, const float *y, size_t n)
{
    return launched(slm_cuda_add(x, y, n, impl(be)->stream), "slm_cuda_add");
}

/* End of the run of tokens from i: consecutive positions of one sequence. */

int cuda_gather_rows(struct slm_backend *be, const float *x, int dim, const int32_t *rows, int n_rows,
                     float *dst)
{
    struct cuda_impl *ci = impl(be);
    if (ci->graphs.cur)
        return launched(slm_cuda_gather_rows(x, ci->graphs.tokens, dim, ci->graphs.d_out, n_rows, dst, ci->stream),
                        "slm_cuda_gather_rows");
    int x_rows = 0;
    for (int i = 0; i < n_rows; i++) {
        if (rows[i] < 0) return -EINVAL;
        if (rows[i] + 1 > x_rows) x_rows = rows[i] + 1;
    }
    int rc = cuda_upload_ids(ci, rows, n_rows);
    if (rc) return rc;
    return launched(slm_cuda_gather_rows(x, x_rows, dim, ci->ids.dev, n_rows, dst, ci->stream), "slm_cuda_gather_rows");
}

int cuda_to_host(struct slm_backend *be, const float *src, size_t n, float *host)
{
    struct cuda_impl *ci = impl(be);
    CUDA_TRY(cudaMemcpyAsync(host, src, n * sizeof *host, cudaMemcpyDeviceToHost, ci->stream));
    CUDA_TRY(cudaStreamSynchronize(ci->stream));
    return 0;
}
