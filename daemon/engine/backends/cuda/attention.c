/* daemon/engine/backends/cuda/attention.c - the CUDA backend's attention op: RoPE's cos/sin
 * tables, the batch's metadata and tiles in one upload, and the exact and split kernels' launches. */

#include "daemon/engine/backends/cuda/internal.h"

int cuda_run_end(const struct slm_batch *b, int i)
{
    int j = i + 1;
    while (j < b->n_tokens && b->seq_row[j] == b->seq_row[i] && b->pos[j] == b->pos[j - 1] + 1) j++;
    return j;
}

/* The split kernel's tiles of b (slm_cuda_attn_tokens.tiles): each run cut into tiles of at
 * most cap tokens. Writes the n_tiles + 1 bounds (at most n_tokens + 1) and returns n_tiles. */
static int attn_tiles(const struct slm_batch *b, int cap, int32_t *tiles)
{
    int n_tiles = 0;
    tiles[0] = 0;
    for (int i = 0; i < b->n_tokens;) {
        int end = cuda_run_end(b, i);
        while (i < end) {
            i = end - i > cap ? i + cap : end;
            tiles[++n_tiles] = i;
        }
    }
    return n_tiles;
}

/* Uploads the batch's positions, rows, block tables and split tiles of at most tile_cap tokens
 * unless the device already holds the same ones (every layer of a pass sees the same batch:
 * one upload per pass). */
static int attn_upload(struct cuda_impl *ci, const struct slm_batch *b, int tile_cap)
{
    struct attn_meta *a = &ci->attn;
    int n = b->n_tokens, n_rows = 0, max_ctx = 0;
    for (int i = 0; i < n; i++) {
        if (b->seq_row[i] + 1 > n_rows) n_rows = b->seq_row[i] + 1;
        if (b->pos[i] + 1 > max_ctx) max_ctx = b->pos[i] + 1;
    }
    size_t tables = (size_t)n_rows * (size_t)b->max_blocks, meta = 2 * (size_t)n + tables;
    if (a->shadow_len && a->n_tokens == n && a->max_blocks == b->max_blocks && a->n_rows == n_rows &&
        a->tile_cap == tile_cap && !memcmp(a->shadow, b->pos, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t)))
        return 0;
    size_t room = meta + (size_t)n + 1;   /* the most tiles: one per token */
    if (room > a->shadow_cap) {
        int32_t *s = realloc(a->shadow, room * sizeof *s);
        if (!s) return -ENOMEM;
        a->shadow = s;
        a->shadow_cap = room;
    }
    a->shadow_len = 0;   /* invalid until the upload is queued */
    int rc = cuda_staging_reserve(&a->st, room);
    if (rc) return rc;
    memcpy(a->shadow, b->pos, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t));
    int n_tiles = attn_tiles(b, tile_cap, a->shadow + meta);
    size_t len = meta + (size_t)n_tiles + 1;
    memcpy(a->st.host, a->shadow, len * sizeof(int32_t));
    if ((rc = cuda_staging_upload(ci, &a->st, len))) return rc;
    a->shadow_len = len;
    a->n_tokens = n;
    a->n_rows = n_rows;
    a->max_blocks = b->max_blocks;
    a->max_ctx = max_ctx;
    a->tile_cap = tile_cap;
    a->n_tiles = n_tiles;
    return 0;
}

/* Workspace of at least `need` bytes. A new one drops the graphs (they hold the old one), so it
 * grows to a power of two of at least 1 MiB: few growths, and none in the step shapes of the
 * short contexts. */
static int workspace_reserve(struct cuda_impl *ci, size_t need)
{
    if (need <= ci->workspace_bytes) return 0;
    size_t grow = (size_t)1 << 20;
    while (grow < need) grow *= 2;
    need = grow;
    cuda_graphs_reset(ci);
    if (ci->workspace) cudaFree(ci->workspace);   /* synchronises */
    ci->workspace = NULL, ci->workspace_bytes = 0;
    CUDA_TRY(cudaMalloc(&ci->workspace, need));
    ci->workspace_bytes = need;
    return 0;
}

/* The attention workspace of n tokens whose contexts reach max_ctx: the exact kernel's part
 * (contexts capped at T) first, then, at *split_off (256-byte aligned), the split kernel's
 * when `split` (the contexts past T). Returns the total. */
static size_t attn_ws_layout(const struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh, int n, int max_ctx,
                             int split, size_t *split_off)
{
    int exact_ctx = max_ctx < ci->exact_ctx ? max_ctx : ci->exact_ctx;
    size_t e = exact_ctx > 0 ? slm_cuda_attention_workspace(sh, n, exact_ctx) : 0;
    e = (e + 255) / 256 * 256;
    *split_off = e;
    return e + (split ? slm_cuda_attention_split_workspace(sh, n, max_ctx) : 0);
}

/* The two attention launches over the tokens t (positions bounded by max_ctx): the exact
 * kernel for positions < T, and the split kernel for positions >= T when `split`. */
static int attention_launch(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh,
                            const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv, const float *q,
                            int max_ctx, int split, float *out)
{
    size_t split_off;
    int rc = workspace_reserve(ci, attn_ws_layout(ci, sh, t->n_tokens, max_ctx, split, &split_off));
    if (rc) return rc;
    int exact_ctx = max_ctx < ci->exact_ctx ? max_ctx : ci->exact_ctx;
    if (exact_ctx > 0 &&
        (rc = launched(slm_cuda_attention_exact(sh, t, kv, q, exact_ctx, 0, ci->exact_ctx, ci->workspace, split_off,
                                                out, ci->stream),
                       "slm_cuda_attention_exact")))
        return rc;
    if (!split) return 0;
    return launched(slm_cuda_attention_split(sh, t, kv, q, max_ctx, ci->exact_ctx, INT_MAX,
                                             (char *)ci->workspace + split_off, ci->workspace_bytes - split_off, out,
                                             ci->stream),
                    "slm_cuda_attention_split");
}

/* The rotation table of (base, rope_dim) covering positions [0, need): grown to a power of two
 * of at least ROPE_MIN_POSITIONS when short (a new table drops the graphs, which hold the old
 * one; a graph step's warm-up grows it before its capture). */
static int rope_table(struct cuda_impl *ci, float base, int rope_dim, int need, struct slm_cuda_rope_table *out)
{
    *out = (struct slm_cuda_rope_table){NULL, 0};
    if (rope_dim <= 0) return 0;   /* nothing rotates */
    struct rope_cache *rc = NULL;
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (ci->rope[i].dev && ci->rope[i].base == base && ci->rope[i].rope_dim == rope_dim) rc = &ci->rope[i];
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (!ci->rope[i].dev) rc = &ci->rope[i];
    if (!rc) {
        slm_log(SLM_LOG_ERR, "cuda backend: more than %d RoPE (base, dims) pairs in one model", ROPE_TABLES);
        return -ENOSPC;
    }
    if (!rc->dev || rc->positions < need) {
        int positions = ROPE_MIN_POSITIONS, half = rope_dim / 2;
        while (positions < need) positions *= 2;
        size_t n = (size_t)positions * (size_t)rope_dim;
        float *host = malloc(n * sizeof *host), *c = malloc((size_t)half * 2 * sizeof *c);
        if (!host || !c) {
            free(host);
            free(c);
            return -ENOMEM;
        }
        for (int p = 0; p < positions; p++) {
            slm_cpu_rope_angles(p, rope_dim, base, c, c + half);
            for (int j = 0; j < half; j++) {
                host[((size_t)p * half + j) * 2] = c[j];
                host[((size_t)p * half + j) * 2 + 1] = c[half + j];
            }
        }
        free(c);
        cuda_graphs_reset(ci);
        if (rc->dev) cudaFree(rc->dev);   /* synchronises */
        rc->dev = NULL;
        int err = cuda_ok(cudaMalloc((void **)&rc->dev, n ? n * sizeof *host : 256), "cudaMalloc (rope table)");
        if (!err) err = cuda_ok(cudaMemcpy(rc->dev, host, n * sizeof *host, cudaMemcpyHostToDevice),
                                "cudaMemcpy (rope table)");
        free(host);
        if (err) {
            if (rc->dev) cudaFree(rc->dev);
            rc->dev = NULL;
            return err;
        }
        rc->base = base, rc->rope_dim = rope_dim, rc->positions = positions;
    }
    *out = (struct slm_cuda_rope_table){.cos_sin = rc->dev, .positions = rc->positions};
    return 0;
}

/* Attention of a graph-shaped step: every token alone in its (own) block table row, over
 * max_ctx = the step's partitions x 128, from the metadata buffer. Both kernels are launched
 * whatever the positions (a graph must not depend on them). */
static int attention_graph_step(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh, float rope_base,
                                const struct slm_cuda_kv_layer *kv, float *q, float *k, const float *v, float *out)
{
    const struct graphs *g = &ci->graphs;
    struct slm_cuda_attn_tokens t = {.n_tokens = g->tokens, .pos = g->d_pos, .seq_row = g->d_row,
                                     .block_tables = g->d_tables, .n_seq_rows = g->tokens, .max_blocks = g->stride};
    struct slm_cuda_rope_table rope;
    int rc = rope_table(ci, rope_base, sh->rope_dim, g->max_ctx, &rope);
    if (rc) return rc;
    rc = launched(slm_cuda_rope_store(sh, &t, kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store");
    if (rc) return rc;
    return attention_launch(ci, sh, &t, kv, q, g->max_ctx, 1, out);
}

int cuda_attention(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                   const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    struct cuda_impl *ci = impl(be);
    struct slm_cuda_attn_shape sh = {
        .n_head = p->n_head, .n_head_kv = p->n_head_kv, .head_dim = p->head_dim, .rope_dim = p->rope_dim,
        .rope_layout = p->rope_layout, .scale = p->scale,
    };
    size_t per_layer = cuda_kv_layer_halves(pool);
    slm_half *k_pool = (slm_half *)pool->mem + (size_t)layer * 2 * per_layer;
    struct slm_cuda_kv_layer kv = {.k = k_pool, .v = k_pool + per_layer, .n_blocks = cuda_kv_blocks(pool),
                                   .block_size = pool->block_size};
    if (ci->graphs.cur) return attention_graph_step(ci, &sh, p->rope_base, &kv, q, k, v, out);
    /* A chunk's tokens share the split kernel's K/V tiles, up to its row cap at this group
     * (a bad group is refused by the launchers); a step of single tokens passes no tiles
     * (the same bits, the kernel's variant with fewer registers). */
    int group = sh.n_head_kv > 0 ? sh.n_head / sh.n_head_kv : 0;
    int tile_cap = group > 0 && group <= SLM_CUDA_ATTN_TILE_ROWS ? SLM_CUDA_ATTN_TILE_ROWS / group : 1;
    int rc = attn_upload(ci, b, tile_cap);
    if (rc) return rc;
    const struct attn_meta *a = &ci->attn;
    const int32_t *d_pos = a->st.dev, *d_row = a->st.dev + a->n_tokens, *d_tables = a->st.dev + 2 * a->n_tokens;
    struct slm_cuda_attn_tokens all = {.n_tokens = b->n_tokens, .pos = d_pos, .seq_row = d_row,
                                       .block_tables = d_tables, .n_seq_rows = a->n_rows, .max_blocks = b->max_blocks,
                                       .tiles = d_tables + (size_t)a->n_rows * (size_t)a->max_blocks,
                                       .n_tiles = a->n_tiles};
    if (a->n_tiles == a->n_tokens) all.tiles = NULL, all.n_tiles = 0;
    struct slm_cuda_rope_table rope;
    if ((rc = rope_table(ci, p->rope_base, p->rope_dim, a->max_ctx, &rope))) return rc;
    if ((rc = launched(slm_cuda_rope_store(&sh, &all, &kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store")))
        return rc;
    return attention_launch(ci, &sh, &all, &kv, q, a->max_ctx, a->max_ctx > ci->exact_ctx, out);
}
