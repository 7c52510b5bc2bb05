/* daemon/engine/backends/cuda/graphs.c - decode steps captured as CUDA graphs per batch bucket
 * (docs/cuda.md, "CUDA graphs"): the step_begin / step_end hooks. */

#include "daemon/engine/backends/cuda/internal.h"

/* ---- step graphs (docs/cuda.md, "CUDA graphs") */

/* Tokens per captured decode step: the powers of two and the midpoints between them (a step
 * is padded by at most half of its tokens). Above the last one a step runs op by op. */
static const int graph_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256};

/* Whether b is a decode-only step: every token a run of one (no two consecutive positions
 * of one sequence) and every token's logits wanted. */
static int decode_only(const struct slm_batch *b)
{
    if (b->n_out != b->n_tokens) return 0;
    for (int i = 0; i + 1 < b->n_tokens; i++)
        if (cuda_run_end(b, i) != i + 1) return 0;
    return 1;
}

/* The bucket of n tokens when at most cap fit, or -1. */
static int graph_bucket(int n, int cap)
{
    if (n > cap) return -1;
    for (size_t i = 0; i < sizeof graph_buckets / sizeof graph_buckets[0]; i++)
        if (graph_buckets[i] >= n) return graph_buckets[i] <= cap ? graph_buckets[i] : cap;
    return -1;
}

static struct graph_entry *graph_entry_get(struct graphs *g, int tokens, int parts, int stride)
{
    for (int i = 0; i < g->n_entries; i++) {
        struct graph_entry *e = &g->entries[i];
        if (e->tokens == tokens && e->parts == parts && e->stride == stride) return e;
    }
    if (g->n_entries == GRAPH_MAX_ENTRIES) return NULL;
    struct graph_entry *e = &g->entries[g->n_entries++];
    *e = (struct graph_entry){.tokens = tokens, .parts = parts, .stride = stride, .state = GRAPH_NEW};
    return e;
}

/* Writes b padded to B tokens into the metadata buffer (host), queues its one copy to the
 * device, and points *run at the host copy. Token i gets block table row i (stride entries: the
 * blocks of `parts` partitions), in the local pool's tables too when there is one (its -1
 * entries before the window copied as they are: the kernels read no position before it).
 * Padding tokens: token 0 at position 0 of a row of scratch blocks (each pool's own); their
 * logits rows follow b's. */
static int graph_meta_upload(struct cuda_impl *ci, const struct slm_kv_pool *pool, const struct slm_batch *b, int B,
                             int stride, struct slm_batch *run)
{
    struct graphs *g = &ci->graphs;
    const struct slm_kv_pool *lp = pool->local;
    size_t len = (size_t)B * (4 + (size_t)stride * (lp ? 2 : 1));
    int32_t *old = g->meta.dev;
    int rc = cuda_staging_reserve(&g->meta, len);
    if (rc) return rc;
    if (g->meta.dev != old) cuda_graphs_reset(ci);
    int32_t *h = g->meta.host, *tok = h, *pos = h + B, *row = h + 2 * B, *out = h + 3 * B, *tab = h + 4 * B;
    int32_t *ltab = lp ? tab + (size_t)B * (size_t)stride : NULL;
    int n = b->n_tokens, scratch = pool->n_blocks, lscratch = lp ? lp->n_blocks : 0;
    for (int i = 0; i < B; i++) {
        int used = 0;
        int32_t *t = tab + (size_t)i * (size_t)stride, *lt = lp ? ltab + (size_t)i * (size_t)stride : NULL;
        if (i < n) {
            tok[i] = b->tokens[i], pos[i] = b->pos[i], out[i] = b->out_rows[i];
            used = b->pos[i] / pool->block_size + 1;
            memcpy(t, b->block_tables + (size_t)b->seq_row[i] * (size_t)b->max_blocks, (size_t)used * sizeof *t);
            if (lt)
                memcpy(lt, b->block_tables_local + (size_t)b->seq_row[i] * (size_t)b->max_blocks,
                       (size_t)used * sizeof *lt);
        } else {
            tok[i] = 0, pos[i] = 0, out[i] = i;
        }
        row[i] = i;
        for (int j = used; j < stride; j++) t[j] = scratch;
        for (int j = used; lt && j < stride; j++) lt[j] = lscratch;
    }
    if ((rc = cuda_staging_upload(ci, &g->meta, len))) return rc;
    const int32_t *d = g->meta.dev;
    g->tokens = B, g->stride = stride;
    g->d_tokens = d, g->d_pos = d + B, g->d_row = d + 2 * B, g->d_out = d + 3 * B, g->d_tables = d + 4 * B;
    g->d_tables_local = lp ? g->d_tables + (size_t)B * (size_t)stride : NULL;
    *run = (struct slm_batch){.n_tokens = B, .tokens = tok, .pos = pos, .seq_row = row, .block_tables = tab,
                              .max_blocks = stride, .n_out = B, .out_rows = out, .block_tables_local = ltab};
    return 0;
}

int cuda_step_begin(struct slm_backend *be, const void *owner, int max_tokens, const struct slm_kv_pool *pool,
                    const struct slm_batch *b, struct slm_batch *run)
{
    struct cuda_impl *ci = impl(be);
    struct graphs *g = &ci->graphs;
    *run = *b;
    int B = g->mode ? graph_bucket(b->n_tokens, max_tokens) : -1;
    if (B < 0 || !decode_only(b)) {
        g->stats.eager++;
        return 0;
    }
    CUDA_TRY(cudaSetDevice(ci->device));
    const void *local_mem = pool->local ? pool->local->mem : NULL;
    if (owner != g->owner || pool->mem != g->pool_mem || local_mem != g->local_mem) {
        cuda_graphs_reset(ci);
        g->owner = owner, g->pool_mem = pool->mem, g->local_mem = local_mem;
    }
    /* Partitions: the smallest power of two that covers every token's context (a token's
     * attention stops at its own position), at most the block tables' reach. */
    int max_pos = 0;
    for (int i = 0; i < b->n_tokens; i++)
        if (b->pos[i] > max_pos) max_pos = b->pos[i];
    int reach = b->max_blocks * pool->block_size, need = max_pos / GRAPH_CTX_STEP + 1, parts = 1;
    int max_parts = (reach + GRAPH_CTX_STEP - 1) / GRAPH_CTX_STEP;
    while (parts < need) parts *= 2;
    if (parts > max_parts) parts = max_parts;
    int ctx = parts * GRAPH_CTX_STEP;
    int stride = (ctx + pool->block_size - 1) / pool->block_size;
    if (stride > b->max_blocks) stride = b->max_blocks;

    struct graph_entry *e = graph_entry_get(g, B, parts, stride);
    if (!e || e->state == GRAPH_EAGER) {
        g->stats.eager++;
        return 0;
    }
    int rc = graph_meta_upload(ci, pool, b, B, stride, run);   /* may drop the graphs (e->state NEW) */
    if (rc) return rc;
    g->max_ctx = ctx;
    if (e->state == GRAPH_READY) {
        CUDA_TRY(cudaGraphLaunch(e->exec, ci->stream));
        g->stats.replays++;
        return 1;
    }
    g->cur = e;
    if (e->state == GRAPH_NEW) {   /* the warm-up: graph-shaped, op by op; sizes the buffers */
        e->state = GRAPH_WARM;
        g->stats.warmups++;
        return 0;
    }
    cudaError_t err = cudaStreamBeginCapture(ci->stream, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess) {
        cudaGetLastError();
        slm_log(SLM_LOG_WARNING, "cuda backend: cannot capture the step graph of %d tokens, %d partitions (%s); "
                "it runs op by op", B, parts, cudaGetErrorName(err));
        e->state = GRAPH_EAGER;
        g->stats.failures++;
        g->cur = NULL;
        *run = *b;
        g->stats.eager++;
        return 0;
    }
    g->capturing = 1;
    return 0;
}

int cuda_step_end(struct slm_backend *be, int rc)
{
    struct cuda_impl *ci = impl(be);
    struct graphs *g = &ci->graphs;
    struct graph_entry *e = g->cur;
    g->cur = NULL;
    if (!e || !g->capturing) return rc;
    g->capturing = 0;
    if (g->mode == 2) cudaStreamSynchronize(ci->stream);   /* refused during a capture, which it breaks */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t err = cudaStreamEndCapture(ci->stream, &graph);
    const char *why = rc ? "an op failed while capturing" : NULL;
    if (!why && err != cudaSuccess) why = cudaGetErrorName(err);
    if (!why && (err = cudaGraphInstantiate(&exec, graph, 0)) != cudaSuccess) why = cudaGetErrorName(err);
    if (graph) cudaGraphDestroy(graph);
    if (!why && (err = cudaGraphLaunch(exec, ci->stream)) != cudaSuccess) why = cudaGetErrorName(err);
    if (why) {
        cudaGetLastError();
        if (exec) cudaGraphExecDestroy(exec);
        slm_log(SLM_LOG_WARNING, "cuda backend: capturing the step graph of %d tokens, %d partitions failed (%s); "
                "it runs op by op from now on", e->tokens, e->parts, why);
        e->state = GRAPH_EAGER;
        g->stats.failures++;
        g->stats.eager++;
        return 1;
    }
    e->exec = exec;
    e->state = GRAPH_READY;
    g->stats.captures++;
    slm_log(SLM_LOG_DEBUG, "cuda backend: captured the step graph of %d tokens, %d partitions (%ld graphs)",
            e->tokens, e->parts, g->stats.captures);
    return 0;
}

int slm_backend_cuda_graph_stats(struct slm_backend *be, struct slm_cuda_graph_stats *st)
{
    if (!be || be->ops->step_begin != cuda_step_begin) return -ENOTSUP;
    *st = impl(be)->graphs.stats;
    return 0;
}
