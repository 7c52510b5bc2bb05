/* daemon/engine/backends/cuda/ops.c - the CUDA backend's embedding, RMSNorm, matmuls (the
 * quantized-activation GEMV and the fp32 GEMV), element-wise ops, row gathers and copies to the
 * host. */

#include "daemon/engine/backends/cuda/internal.h"

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

/* ---- matmul: quantized weights take x quantized once per activation type (the CPU
 * backend's Q8_0 / Q8_1 / Q8_K rows, byte for byte) and the integer GEMV, which gives the CPU
 * backend's bits; F32 / F16 / BF16 weights take the fp32 GEMV. */

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
    size_t per_token = ci->q8_row_max[0] + ci->q8_row_max[1] + ci->q8_row_max[2];
    size_t want = per_token * (size_t)(n > Q8_SCRATCH_TOKENS ? n : Q8_SCRATCH_TOKENS) + 3 * 256;
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

/* Whether w takes the fused GEMV (x quantized inside each block) for n tokens. */
static int q8_fused(const struct slm_weight *w, int n)
{
    return n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL && slm_cuda_matvec_q8_fused_fits(w->type, w->cols, n);
}

/* One fused launch for w[j] and the later weights of fused that share its type and cols (up
 * to SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS); marks them in *done. */
static int q8_fused_group(struct cuda_impl *ci, int n_w, const struct slm_weight *const *w, uint64_t fused, int j,
                          const float *x, int n, float *const *y, int accumulate, uint64_t *done)
{
    const void *gw[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int64_t rows[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    float *gy[SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS];
    int g = 0;
    for (int k = j; k < n_w && k < 64 && g < SLM_CUDA_MATVEC_Q8_FUSED_MAX_WEIGHTS; k++) {
        uint64_t bit = (uint64_t)1 << k;
        if (!(fused & bit) || (*done & bit) || w[k]->type != w[j]->type || w[k]->cols != w[j]->cols) continue;
        gw[g] = w[k]->be_data;
        rows[g] = w[k]->rows;
        gy[g] = y[k];
        g++;
        *done |= bit;
    }
    return launched(slm_cuda_matvec_q8_fused(w[j]->type, g, gw, rows, w[j]->cols, x, n, gy, accumulate, ci->stream),
                    "slm_cuda_matvec_q8_fused");
}

/* Quantized weights: for n <= SLM_CUDA_MATVEC_Q8_TOKENS_SMALL (and x's quantized rows within
 * the fused kernel's shared memory) one fused launch per group of weights of one type and
 * cols; otherwise x quantized once per activation type, then one integer GEMV per weight. */
int cuda_matmul(struct slm_backend *be, int n_w, const struct slm_weight *const *w, const float *x, int n,
                float *const *y, int accumulate)
{
    struct cuda_impl *ci = impl(be);
    size_t off[3] = {0, 0, 0}, need = 0;
    int first[3] = {-1, -1, -1};   /* the first unfused weight of each activation type */
    uint64_t fused = 0, done = 0;   /* bit j: w[j] takes the fused GEMV; has been launched */
    for (int j = 0; j < n_w; j++) {
        uint32_t at = slm_cuda_q8_act_type(w[j]->type);
        int s = cuda_q8_slot(at);
        if (s < 0) continue;
        if (j < 64 && q8_fused(w[j], n)) {
            fused |= (uint64_t)1 << j;
            continue;
        }
        if (first[s] >= 0) continue;
        first[s] = j;
        off[s] = need;
        need += align256((size_t)n * slm_cuda_q8_row_bytes(at, w[j]->cols));
    }
    if (need) {
        int rc = q8_reserve(ci, need, n);
        if (rc) return rc;
    }
    for (int s = 0; s < 3; s++) {
        if (first[s] < 0) continue;
        const struct slm_weight *wf = w[first[s]];
        int rc = launched(slm_cuda_quantize_q8(slm_cuda_q8_act_type(wf->type), x, n, wf->cols, (char *)ci->q8 + off[s],
                                               ci->stream),
                          "slm_cuda_quantize_q8");
        if (rc) return rc;
    }
    for (int j = 0; j < n_w; j++) {
        int s = cuda_q8_slot(slm_cuda_q8_act_type(w[j]->type)), rc;
        uint64_t bit = j < 64 ? (uint64_t)1 << j : 0;
        if (fused & bit) {
            if (done & bit) continue;
            rc = q8_fused_group(ci, n_w, w, fused, j, x, n, y, accumulate, &done);
        } else if (s >= 0) {
            rc = launched(slm_cuda_matvec_q8(w[j]->type, w[j]->be_data, w[j]->rows, w[j]->cols, (char *)ci->q8 + off[s],
                                             n, y[j], accumulate, ci->stream),
                          "slm_cuda_matvec_q8");
        } else {
            rc = launched(slm_cuda_matvec(w[j]->type, w[j]->be_data, w[j]->rows, w[j]->cols, x, n, y[j], accumulate,
                                          ci->stream),
                          "slm_cuda_matvec");
        }
        if (rc) return rc;
    }
    return 0;
}

int cuda_add_bias(struct slm_backend *be, float *x, const struct slm_weight *bias, int n)
{
    return launched(slm_cuda_add_bias(x, bias->be_data, n, (int)bias->cols, impl(be)->stream), "slm_cuda_add_bias");
}

int cuda_swiglu(struct slm_backend *be, const float *gate, const float *up, size_t n, float *out)
{
    return launched(slm_cuda_swiglu(gate, up, n, out, impl(be)->stream), "slm_cuda_swiglu");
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
