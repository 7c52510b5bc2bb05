/* daemon/engine/backends/cuda/resources.c - the CUDA backend's memory: pinned staging of host
 * metadata, device allocations, the resident weights (the device layout where a type has one)
 * and the KV pool. */

#include "daemon/engine/backends/cuda/internal.h"

/* ---- staging of host metadata */

void cuda_staging_free(struct staging *s)
{
    if (s->done) cudaEventSynchronize(s->done);
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);
    if (s->done) cudaEventDestroy(s->done);
    memset(s, 0, sizeof *s);
}

/* Makes host writable: waits for the copy that last read it. */
static int staging_wait(struct staging *s)
{
    if (!s->pending) return 0;
    s->pending = 0;
    CUDA_TRY(cudaEventSynchronize(s->done));
    return 0;
}

/* Room for n elements (contents not kept). */
int cuda_staging_reserve(struct staging *s, size_t n)
{
    int rc = staging_wait(s);
    if (rc || (s->cap && n <= s->cap)) return rc;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n) cap *= 2;
    if (s->host) cudaFreeHost(s->host);
    if (s->dev) cudaFree(s->dev);   /* synchronises: no queued kernel still reads it */
    s->host = NULL, s->dev = NULL, s->cap = 0;
    CUDA_TRY(cudaMallocHost((void **)&s->host, cap * sizeof(int32_t)));
    CUDA_TRY(cudaMalloc((void **)&s->dev, cap * sizeof(int32_t)));
    s->cap = cap;
    return 0;
}

/* Queues the copy of host[0..n) to dev. */
int cuda_staging_upload(struct cuda_impl *ci, struct staging *s, size_t n)
{
    CUDA_TRY(cudaMemcpyAsync(s->dev, s->host, n * sizeof(int32_t), cudaMemcpyHostToDevice, ci->stream));
    CUDA_TRY(cudaEventRecord(s->done, ci->stream));
    s->pending = 1;
    return 0;
}

/* dev[0..n) = ids (host). */
int cuda_upload_ids(struct cuda_impl *ci, const int32_t *ids, int n)
{
    int rc = cuda_staging_reserve(&ci->ids, (size_t)n);
    if (rc) return rc;
    memcpy(ci->ids.host, ids, (size_t)n * sizeof(int32_t));
    return cuda_staging_upload(ci, &ci->ids, (size_t)n);
}

/* ---- memory */

void *cuda_alloc(struct slm_backend *be, size_t bytes)
{
    struct cuda_impl *ci = impl(be);
    void *p = NULL;
    if (cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice") ||
        cuda_ok(cudaMalloc(&p, bytes ? bytes : 256), "cudaMalloc"))
        return NULL;
    if (cuda_ok(cudaMemsetAsync(p, 0, bytes ? bytes : 256, ci->stream), "cudaMemsetAsync")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

void cuda_free(struct slm_backend *be, void *p)
{
    cuda_graphs_reset(impl(be));   /* an activation buffer a graph may use */
    cuda_ok(cudaFree(p), "cudaFree");
}

/* Whether a weight is resident in the device layout (kernels.h): the types of the decode
 * GEMV. Its be_data is then read only by the decode GEMV (slm_cuda_gemv, slm_cuda_gemv_q8) and
 * slm_cuda_embed_device_layout. */
int cuda_device_layout(const struct slm_weight *w)
{
    return slm_cuda_has_device_layout(w->type);
}

/* A weight of a type with a device layout is converted on the host (a temporary buffer of its
 * device size) and copied up in one cudaMemcpy; the others go up as GGUF has them. */
int cuda_load_weight(struct slm_backend *be, struct slm_weight *w)
{
    struct cuda_impl *ci = impl(be);
    const int layout = cuda_device_layout(w);
    size_t bytes = (size_t)w->rows * (layout ? slm_cuda_device_row_bytes(w->type, w->cols) : w->row_bytes);
    void *p = NULL, *host = NULL;
    w->be_data = NULL;
    if (layout) {
        if (!(host = malloc(bytes ? bytes : 1))) return -ENOMEM;
        int rc = slm_cuda_to_device_layout(w->type, w->data, w->rows, w->cols, host);
        if (rc) {
            slm_log(SLM_LOG_ERR, "cuda backend: a %s weight (%lld x %lld) has no device layout (%s)",
                    slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols, strerror(-rc));
            free(host);
            return rc;
        }
    }
    int rc = cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice");
    if (!rc && cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        slm_log(SLM_LOG_ERR, "cuda backend: cudaMalloc of %zu bytes for a %s weight (%lld x %lld) failed", bytes,
                slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols);
        p = NULL;
        rc = -ENOMEM;
    }
    if (!rc && cuda_ok(cudaMemcpy(p, layout ? host : w->data, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (weight)")) {
        cudaFree(p);
        rc = -EIO;
    }
    free(host);
    if (rc) return rc;
    w->be_data = p;
    ci->weight_bytes += bytes;
    slm_log(SLM_LOG_DEBUG, "cuda backend: %s weight %lld x %lld resident: %zu bytes (%s; GGUF %zu), %.1f MiB of "
            "weights in all", slm_qtype_name(w->type), (long long)w->rows, (long long)w->cols, bytes,
            layout ? "device layout" : "GGUF layout", (size_t)w->rows * w->row_bytes,
            (double)ci->weight_bytes / 1048576);
    cuda_q8_note_weight(ci, w);
    return 0;
}

void cuda_unload_weight(struct slm_backend *be, struct slm_weight *w)
{
    cuda_graphs_reset(impl(be));
    if (w->be_data) {
        cuda_ok(cudaFree(w->be_data), "cudaFree (weight)");
        size_t rb = cuda_device_layout(w) ? slm_cuda_device_row_bytes(w->type, w->cols) : w->row_bytes;
        impl(be)->weight_bytes -= (size_t)w->rows * rb;
    }
    w->be_data = NULL;
}

/* The pool holds one block more than the engine sees: block n_blocks is the scratch block
 * that the padding tokens of a graph step write and read (docs/cuda.md, "CUDA graphs"). */
int cuda_kv_blocks(const struct slm_kv_pool *p)
{
    return p->n_blocks + 1;
}

size_t cuda_kv_layer_halves(const struct slm_kv_pool *p)
{
    return (size_t)cuda_kv_blocks(p) * (size_t)p->block_size * (size_t)p->kv_dim;
}

int cuda_kv_alloc(struct slm_backend *be, struct slm_kv_pool *pool)
{
    struct cuda_impl *ci = impl(be);
    size_t bytes = cuda_kv_layer_halves(pool) * 2 * (size_t)pool->n_layer * sizeof(slm_half);
    /* The budget bounds the engine's blocks (as the daemon sizes them); the scratch block comes
     * out of the headroom. */
    size_t engine_bytes = bytes / (size_t)cuda_kv_blocks(pool) * (size_t)pool->n_blocks;
    size_t budget = slm_backend_cuda_kv_budget(be);
    if (engine_bytes > budget) {
        slm_log(SLM_LOG_ERR, "cuda backend: a KV pool of %.1f MiB exceeds the budget of %.1f MiB "
                "(gpu-memory-fraction %.2f of the free device memory)", (double)engine_bytes / 1048576,
                (double)budget / 1048576, ci->mem_fraction);
        return -ENOMEM;
    }
    pool->mem = cuda_alloc(be, bytes);
    return pool->mem ? 0 : -ENOMEM;
}

void cuda_kv_free(struct slm_backend *be, struct slm_kv_pool *pool)
{
    cuda_graphs_reset(impl(be));
    if (pool->mem) cuda_free(be, pool->mem);
    pool->mem = NULL;
}

/* ---- what the other files share: the q8 scratch's sizing, dropping the graphs */

/* Records the widest weight the decode GEMV reads (the q8 scratch is sized from it, ops.c). */
void cuda_q8_note_weight(struct cuda_impl *ci, const struct slm_weight *w)
{
    if (cuda_device_layout(w) && w->cols > ci->q8_cols_max) ci->q8_cols_max = w->cols;
}

/* Drops every captured graph (a buffer they use is being freed or moved); the shapes seen
 * warm up and are captured again. */
void cuda_graphs_reset(struct cuda_impl *ci)
{
    struct graphs *g = &ci->graphs;
    int any = 0;
    for (int i = 0; i < g->n_entries; i++) {
        struct graph_entry *e = &g->entries[i];
        if (e->exec) {
            if (!any) cuda_ok(cudaStreamSynchronize(ci->stream), "cudaStreamSynchronize");
            any = 1;
            cudaGraphExecDestroy(e->exec);
            e->exec = NULL;
        }
        if (e->state != GRAPH_EAGER) e->state = GRAPH_NEW;
    }
    if (any) g->stats.resets++;
}
