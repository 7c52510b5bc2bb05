/* daemon/engine/backends/cuda/sampling.c - the CUDA backend's `sample` op over the logits
 * the forward pass left on the device (slm_cuda_sample). */

#include "daemon/engine/backends/cuda/internal.h"

/* ---- sampling on the device: the `sample` op (slm_cuda_sample) */

/* One call's staging, the same layout in pinned host memory and on the device:
 *   params (n, struct slm_cuda_sampling) | hist (n_hist int32, padded to 8 bytes) |
 *   rng (n, 4 uint64) | ids (n int32, padded) | logprobs (n float, padded) | top (n, 20 pairs)
 * params .. rng go up in one copy; rng .. ids (.. top when a row wants logprobs) come back in
 * one. Both buffers and the kernel's workspace only grow (their addresses change only then). */
struct sample_state {
    struct staging st;        /* the layout above in int32 units (no event: the call synchronises) */
    char *host, *dev;         /* st.host, st.dev as bytes */
    void *workspace;          /* slm_cuda_sample_workspace of ws_rows rows */
    size_t workspace_bytes;
    int ws_rows, ws_vocab;
};

_Static_assert(SLM_CUDA_SAMPLE_MAX_LOGPROBS == SLM_LOGPROBS_MAX, "top rows: one width");
_Static_assert(sizeof(struct slm_logprob) == 8, "top pairs: int32 id then float, as the kernel writes them");

static size_t round8(size_t n)
{
    return (n + 7) / 8 * 8;
}

void cuda_sample_state_free(struct sample_state *st)
{
    if (!st) return;
    cuda_staging_free(&st->st);
    if (st->workspace) cudaFree(st->workspace);
    free(st);
}

/* Room for `bytes` of staging and the workspace of n_rows rows of n_vocab. The stream is idle
 * here (every call ends with a synchronisation), so the old buffers can go at once. */
static int sample_reserve(struct sample_state *st, size_t bytes, int n_rows, int n_vocab)
{
    int rc = cuda_staging_reserve(&st->st, (bytes + 3) / 4);
    if (rc) return rc;
    st->host = (char *)st->st.host, st->dev = (char *)st->st.dev;
    if (n_rows > st->ws_rows || n_vocab != st->ws_vocab) {
        int rows = (n_rows + 7) / 8 * 8;
        size_t need = slm_cuda_sample_workspace(rows, n_vocab);
        if (!need) return -EINVAL;
        if (st->workspace) cudaFree(st->workspace);
        st->workspace = NULL, st->workspace_bytes = 0, st->ws_rows = 0;
        if (cudaMalloc(&st->workspace, need) != cudaSuccess) {
            cudaGetLastError();
            slm_log(SLM_LOG_ERR, "cuda backend: cudaMalloc of %zu bytes of sampling workspace (%d rows) failed", need,
                    rows);
            return -ENOMEM;
        }
        st->workspace_bytes = need;
        st->ws_rows = rows;
        st->ws_vocab = n_vocab;
    }
    return 0;
}

int cuda_sample(struct slm_backend *be, const float *logits, int n_rows, int n_vocab,
                struct slm_sample_row *rows, int32_t *ids, float *logprob, struct slm_logprob *top)
{
    struct cuda_impl *ci = impl(be);
    if (n_rows < 1 || n_vocab < 1 || !rows || !ids) return -EINVAL;
    size_t n = (size_t)n_rows, n_hist = 0;
    int want_lp = 0;
    for (int i = 0; i < n_rows; i++) {
        const struct slm_sample_row *r = &rows[i];
        if (r->n_window < 0 || (r->n_window && !r->window) || r->n_logprobs < 0 ||
            r->n_logprobs > SLM_LOGPROBS_MAX || (r->n_logprobs && (!logprob || !top)))
            return -EINVAL;
        n_hist += (size_t)r->n_window;
        want_lp |= r->n_logprobs > 0;
    }
    if (n_hist > INT32_MAX) return -EINVAL;
    const size_t hist_off = n * sizeof(struct slm_cuda_sampling), rng_off = hist_off + round8(n_hist * 4),
                 ids_off = rng_off + n * 32, lp_off = ids_off + round8(n * 4), top_off = lp_off + round8(n * 4),
                 end = top_off + n * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8;
    if (!ci->sampling && !(ci->sampling = calloc(1, sizeof *ci->sampling))) return -ENOMEM;
    struct sample_state *st = ci->sampling;
    CUDA_TRY(cudaSetDevice(ci->device));
    int rc = sample_reserve(st, end, n_rows, n_vocab);
    if (rc) return rc;

    struct slm_cuda_sampling *params = (struct slm_cuda_sampling *)st->host;
    int32_t *hist = (int32_t *)(st->host + hist_off);
    uint64_t *rng = (uint64_t *)(st->host + rng_off);
    int32_t off = 0;
    for (int i = 0; i < n_rows; i++) {
        const struct slm_sample_row *r = &rows[i];
        params[i] = (struct slm_cuda_sampling){
            .temperature = r->temperature, .top_k = r->top_k, .top_p = r->top_p, .min_p = r->min_p,
            .log_min_p = r->min_p > 0 ? logf(r->min_p) : 0.0f,   /* the host's logf, as sampler.c */
            .repeat_penalty = r->repeat_penalty, .presence_penalty = r->presence_penalty,
            .frequency_penalty = r->frequency_penalty, .hist_off = off, .hist_len = r->n_window,
            .n_logprobs = r->n_logprobs,
        };
        if (r->n_window) memcpy(hist + off, r->window, (size_t)r->n_window * sizeof *hist);
        off += r->n_window;
        memcpy(rng + 4 * (size_t)i, r->rng, sizeof r->rng);
    }
    CUDA_TRY(cudaMemcpyAsync(st->dev, st->host, ids_off, cudaMemcpyHostToDevice, ci->stream));
    rc = launched(slm_cuda_sample(logits, n_rows, n_vocab, (const struct slm_cuda_sampling *)st->dev,
                                  (uint64_t *)(st->dev + rng_off), (const int32_t *)(st->dev + hist_off), (int)n_hist,
                                  st->workspace, st->workspace_bytes, (int32_t *)(st->dev + ids_off),
                                  want_lp ? (float *)(st->dev + lp_off) : NULL, want_lp ? st->dev + top_off : NULL,
                                  ci->stream),
                  "slm_cuda_sample");
    if (rc) {
        cudaStreamSynchronize(ci->stream);   /* the upload may still read host: let it finish */
        return rc;
    }
    size_t back = (want_lp ? end : ids_off + n * 4) - rng_off;
    CUDA_TRY(cudaMemcpyAsync(st->host + rng_off, st->dev + rng_off, back, cudaMemcpyDeviceToHost, ci->stream));
    CUDA_TRY(cudaStreamSynchronize(ci->stream));
    memcpy(ids, st->host + ids_off, n * sizeof *ids);
    for (int i = 0; i < n_rows; i++) memcpy(rows[i].rng, rng + 4 * (size_t)i, sizeof rows[i].rng);
    if (want_lp) {
        const float *lp = (const float *)(st->host + lp_off);
        for (int i = 0; i < n_rows; i++) {
            if (!rows[i].n_logprobs) continue;
            logprob[i] = lp[i];
            memcpy(top + (size_t)i * SLM_LOGPROBS_MAX, st->host + top_off + (size_t)i * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8,
                   (size_t)rows[i].n_logprobs * sizeof *top);
        }
    }
    return 0;
}
