/* daemon/engine/backends/cuda/graphs.c - steps captured as CUDA graphs per batch bucket
 * (docs/cuda.md, "CUDA graphs"): the step_begin / step_end hooks. */

#include "daemon/engine/backends/cuda/internal.h"

/* ---- step graphs (docs/cuda.md, "CUDA graphs") */

/* Tokens per captured step: the powers of two and the midpoints between them (a step is padded
 * by at most half of its tokens). Above the last one a step runs op by op. A mixed step's logits
 * rows are padded to a bucket too (0 stays 0). */
static const int graph_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, GRAPH_MAX_TOKENS};

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

/* Cuts the paged attention's tiles of b padded to B tokens as the eager step cuts them
 * (slm_cuda_attention_tiles, launch chunk by launch chunk, token indices relative to the chunk),
 * the padding tokens being a sequence row of their own: chunk c's into g->cut_tiles from
 * 2 x c x chunk, their count into g->cut_count[c]. Returns the most tiles a chunk has, or < 0. */
static int cut_tiles(struct graphs *g, const struct slm_batch *b, int B)
{
    int32_t rows[GRAPH_MAX_TOKENS];
    for (int i = 0; i < B; i++) rows[i] = i < b->n_tokens ? b->seq_row[i] : -1;   /* b's rows are >= 0 */
    int most = 0;
    for (int c = 0, i0 = 0; i0 < B; c++, i0 += g->attn_chunk) {
        const int cnt = B - i0 < g->attn_chunk ? B - i0 : g->attn_chunk;
        const int k = slm_cuda_attention_tiles(&g->attn_shape, rows + i0, cnt, g->cut_tiles + 2 * (size_t)i0);
        if (k < 0) return k;
        g->cut_count[c] = k;
        if (k > most) most = k;
    }
    return most;
}

static struct graph_entry *graph_entry_get(struct graphs *g, const struct graph_entry *key)
{
    for (int i = 0; i < g->n_entries; i++) {
        struct graph_entry *e = &g->entries[i];
        if (e->tokens == key->tokens && e->parts == key->parts && e->stride == key->stride &&
            e->outs == key->outs && e->mixed == key->mixed && e->tiles == key->tiles)
            return e;
    }
    if (g->n_entries == GRAPH_MAX_ENTRIES) return NULL;
    struct graph_entry *e = &g->entries[g->n_entries++];
    *e = *key;
    e->state = GRAPH_NEW;
    e->exec = NULL;
    return e;
}

/* Table row `row` of b (the global pool's, or the local one's) into t: its first `used` entries,
 * scratch after them up to stride. */
static void table_row(int32_t *t, const int32_t *tables, int max_blocks, int row, int used, int stride, int scratch)
{
    if (used) memcpy(t, tables + (size_t)row * (size_t)max_blocks, (size_t)used * sizeof *t);
    for (int j = used; j < stride; j++) t[j] = scratch;
}

/* Writes b padded to e->tokens (B) tokens into the metadata buffer (host), queues its one copy
 * to the device, and points *run at the host copy.
 * Decode-only: token i gets block table row i (stride entries: the blocks of `parts`
 * partitions), in the local pool's tables too when there is one (its -1 entries before the
 * window copied as they are: the kernels read no position before it); every token's logits.
 * Mixed: each run of tokens of one sequence row of b gets one row, in order, the padding tokens
 * one row after them; e->outs logits rows, b's first; the paged attention's tiles (cut_tiles'),
 * each chunk of tokens owning e->tiles tile slots (at most its tokens), the unused ones (0, 0)
 * (a block of such a tile returns at once).
 * Padding tokens: token 0 at position 0 of a row of scratch blocks (each pool's own); their
 * logits rows follow b's (a mixed step's padding rows repeat row 0). */
static int graph_meta_upload(struct cuda_impl *ci, const struct slm_kv_pool *pool, const struct slm_batch *b,
                             const struct graph_entry *e, struct slm_batch *run)
{
    struct graphs *g = &ci->graphs;
    const struct slm_kv_pool *lp = pool->local;
    const int B = e->tokens, O = e->outs, stride = e->stride, mixed = e->mixed, n = b->n_tokens;
    const int rows_cap = mixed ? B + 1 : B;
    const size_t head = 3 * (size_t)B + (size_t)O + (mixed ? 2 * (size_t)B : 0);
    const size_t len = head + (size_t)rows_cap * (size_t)stride * (lp ? 2 : 1);
    int32_t *old = g->meta.dev;
    int rc = cuda_staging_reserve(&g->meta, len);
    if (rc) return rc;
    if (g->meta.dev != old) cuda_graphs_reset(ci);
    int32_t *h = g->meta.host, *tok = h, *pos = h + B, *row = h + 2 * B, *out = h + 3 * B;
    int32_t *tiles = mixed ? out + O : NULL, *tab = h + head;
    int32_t *ltab = lp ? tab + (size_t)rows_cap * (size_t)stride : NULL;
    const int scratch = pool->n_blocks, lscratch = lp ? lp->n_blocks : 0;
    /* Decode-only: row i for token i. Mixed: a row per run of tokens of one sequence row of b
     * (the engine puts a sequence's tokens together), holding the blocks up to the run's highest
     * position, written at its last token; the padding row after them. */
    int rows = 0, top = 0;
    for (int i = 0; i < B; i++) {
        const int real = i < n;
        tok[i] = real ? b->tokens[i] : 0, pos[i] = real ? b->pos[i] : 0;
        if (!mixed) {
            out[i] = real ? b->out_rows[i] : i;
            row[i] = rows++;
            top = pos[i];
        } else {
            const int cont = real && i > 0 && b->seq_row[i] == b->seq_row[i - 1];
            row[i] = !real ? rows : cont ? row[i - 1] : rows++;
            top = cont && top > pos[i] ? top : pos[i];
            if (real && i + 1 < n && b->seq_row[i + 1] == b->seq_row[i]) continue;   /* not the run's last */
            if (!real && i > n) continue;   /* the padding row is written once */
        }
        const int used = real ? top / pool->block_size + 1 : 0, src = real ? b->seq_row[i] : 0;
        int32_t *t = tab + (size_t)row[i] * (size_t)stride;
        table_row(t, b->block_tables, b->max_blocks, src, used, stride, scratch);
        if (lp)
            table_row(ltab + (size_t)row[i] * (size_t)stride, b->block_tables_local, b->max_blocks, src, used, stride,
                      lscratch);
    }
    size_t copy = len;
    if (mixed) {
        for (int i = 0; i < O; i++) out[i] = i < b->n_out ? b->out_rows[i] : 0;
        /* the tiles cut_tiles cut (over b's rows: the same runs as these rows), e->tiles slots a
         * launch (at most its tokens) */
        const int chunk = g->attn_chunk, n_chunks = (B + chunk - 1) / chunk;
        memset(tiles, 0, 2 * (size_t)B * sizeof *tiles);
        int slots = 0;
        for (int c = 0; c < n_chunks; c++) {
            const int cnt = B - c * chunk < chunk ? B - c * chunk : chunk;
            g->chunk_tiles[c] = slots;
            memcpy(tiles + 2 * (size_t)slots, g->cut_tiles + 2 * (size_t)c * chunk,
                   2 * (size_t)g->cut_count[c] * sizeof *tiles);
            slots += e->tiles < cnt ? e->tiles : cnt;
        }
        g->chunk_tiles[n_chunks] = slots;
        /* the rows in use (the padding row after the sequences'), in the local pool's tables too */
        const size_t used = (size_t)(rows + (n < B)) * (size_t)stride;
        copy = head + (lp ? (size_t)rows_cap * (size_t)stride : 0) + used;
    }
    if ((rc = cuda_staging_upload(ci, &g->meta, copy))) return rc;
    const int32_t *d = g->meta.dev;
    g->tokens = B, g->stride = stride, g->mixed = mixed, g->rows = rows_cap;
    g->d_tokens = d, g->d_pos = d + B, g->d_row = d + 2 * B, g->d_out = d + 3 * B, g->d_tables = d + head;
    g->d_tiles = mixed ? d + 3 * B + O : NULL;
    g->d_tables_local = lp ? g->d_tables + (size_t)rows_cap * (size_t)stride : NULL;
    *run = (struct slm_batch){.n_tokens = B, .tokens = tok, .pos = pos, .seq_row = row, .block_tables = tab,
                              .max_blocks = stride, .n_out = mixed ? O : B, .out_rows = out,
                              .block_tables_local = ltab};
    return 0;
}

int cuda_step_begin(struct slm_backend *be, const void *owner, int max_tokens, int max_out,
                    const struct slm_kv_pool *pool, const struct slm_batch *b, struct slm_batch *run)
{
    struct cuda_impl *ci = impl(be);
    struct graphs *g = &ci->graphs;
    *run = *b;
    /* A decode-only step: every token's logits, so B is capped by both buffers. A mixed one: its
     * logits rows padded to a bucket of their own, its tiles cut for the attention shape of the
     * attention calls (none yet, or layers of different shapes: op by op). */
    const int mixed = !decode_only(b);
    int B = -1, O = 0, T = 0;
    if (g->mode && !mixed) {
        B = O = graph_bucket(b->n_tokens, max_tokens < max_out ? max_tokens : max_out);
    } else if (g->mode && g->mode != 3 && g->attn_tile_tokens && !g->attn_shapes_differ) {
        B = graph_bucket(b->n_tokens, max_tokens);
        O = B < 0 || !b->n_out ? 0 : graph_bucket(b->n_out, max_out < B ? max_out : B);
        if (O < 0 || (B + g->attn_chunk - 1) / g->attn_chunk > GRAPH_MAX_CHUNKS) B = -1;
        /* tile slots a launch: a bucket too, so that a prompt chunk's few tiles do not launch
         * blocks for as many tiles as tokens */
        if (B > 0) {
            const int most = cut_tiles(g, b, B);
            if (most < 0) return most;
            T = graph_bucket(most, B);
        }
    }
    if (B < 0) {
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

    const struct graph_entry key = {.tokens = B, .parts = parts, .stride = stride, .outs = O, .mixed = mixed, .tiles = T};
    struct graph_entry *e = graph_entry_get(g, &key);
    if (!e || e->state == GRAPH_EAGER) {
        g->stats.eager++;
        return 0;
    }
    int rc = graph_meta_upload(ci, pool, b, e, run);   /* may drop the graphs (e->state NEW) */
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
