/* daemon/engine/backends/cuda/attention.c - the CUDA backend's attention op: RoPE's cos/sin
 * tables, the batch's metadata in one upload, and the attention launches: a decode-only step's
 * RoPE, KV store and attention in one (slm_cuda_attention_decode_fused), any other step's
 * RoPE and store (slm_cuda_rope_store), then the same attention kernel over the cache in tiles
 * of a sequence's consecutive tokens (slm_cuda_attention_paged, flash attention's K/V reuse). */

#include "daemon/engine/backends/cuda/internal.h"

int cuda_run_end(const struct slm_batch *b, int i)
{
    int j = i + 1;
    while (j < b->n_tokens && b->seq_row[j] == b->seq_row[i] && b->pos[j] == b->pos[j - 1] + 1) j++;
    return j;
}

/* Whether every token of b is the single new token of its sequence (the engine puts a
 * sequence's tokens of a step next to each other, so runs of one token mean that). */
static int single_tokens(const struct slm_batch *b)
{
    for (int i = 0; i < b->n_tokens; i++)
        if (cuda_run_end(b, i) != i + 1 || (i > 0 && b->seq_row[i] == b->seq_row[i - 1])) return 0;
    return 1;
}

/* Tokens a launch of the attention may hold: the completion counters' slots over the KV heads. */
static int attn_chunk(const struct slm_cuda_attn_shape *sh)
{
    return SLM_CUDA_ATTN_DECODE_SLOTS / (sh->n_head_kv > 0 ? sh->n_head_kv : 1);
}

/* The paged attention's tiles of b for sh (slm_cuda_attention_tiles), launch chunk by launch
 * chunk (token indices relative to the chunk), into tiles; a->chunk_tiles[c] gets chunk c's first
 * tile. 0 or -ENOMEM / -EINVAL. */
static int attn_tiles(struct attn_meta *a, const struct slm_batch *b, const struct slm_cuda_attn_shape *sh,
                      int32_t *tiles)
{
    const int n = b->n_tokens, chunk = attn_chunk(sh), n_chunks = (n + chunk - 1) / chunk;
    if (n_chunks + 1 > a->chunk_tiles_cap) {
        int *c = realloc(a->chunk_tiles, (size_t)(n_chunks + 1) * sizeof *c);
        if (!c) return -ENOMEM;
        a->chunk_tiles = c;
        a->chunk_tiles_cap = n_chunks + 1;
    }
    const int per = slm_cuda_attention_tile_tokens(sh);   /* 0 for a bad shape: no tiles; the launcher refuses */
    int total = 0;
    for (int c = 0; c < n_chunks; c++) {
        const int i0 = c * chunk, cnt = n - i0 < chunk ? n - i0 : chunk;
        a->chunk_tiles[c] = total;
        const int k = per ? slm_cuda_attention_tiles(sh, b->seq_row + i0, cnt, tiles + 2 * (size_t)total) : 0;
        if (k < 0) return k;
        total += k;
    }
    a->chunk_tiles[n_chunks] = total;
    a->tile_tokens = per;
    a->chunk = chunk;
    return 0;
}

/* Uploads the batch's positions, rows and block tables, and the paged attention's tiles for
 * sh, unless the device already holds the same ones (every layer of a pass sees the same batch
 * and shape: one upload, and one look at its tokens, per pass). */
static int attn_upload(struct cuda_impl *ci, struct attn_meta *a, const struct slm_batch *b,
                       const struct slm_cuda_attn_shape *sh)
{
    int n = b->n_tokens, n_rows = 0, max_ctx = 0;
    for (int i = 0; i < n; i++) {
        if (b->seq_row[i] + 1 > n_rows) n_rows = b->seq_row[i] + 1;
        if (b->pos[i] + 1 > max_ctx) max_ctx = b->pos[i] + 1;
    }
    size_t tables = (size_t)n_rows * (size_t)b->max_blocks, head = 2 * (size_t)n + tables, meta = head + 2 * (size_t)n;
    if (a->shadow_len && a->n_tokens == n && a->max_blocks == b->max_blocks && a->n_rows == n_rows &&
        a->tile_tokens == slm_cuda_attention_tile_tokens(sh) && a->chunk == attn_chunk(sh) &&
        !memcmp(a->shadow, b->pos, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t)) &&
        !memcmp(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t)))
        return 0;
    if (meta > a->shadow_cap) {
        int32_t *s = realloc(a->shadow, meta * sizeof *s);
        if (!s) return -ENOMEM;
        a->shadow = s;
        a->shadow_cap = meta;
    }
    a->shadow_len = 0;   /* invalid until the upload is queued */
    int rc = cuda_staging_reserve(&a->st, meta);
    if (rc) return rc;
    memcpy(a->shadow, b->pos, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + n, b->seq_row, (size_t)n * sizeof(int32_t));
    memcpy(a->shadow + 2 * n, b->block_tables, tables * sizeof(int32_t));
    if ((rc = attn_tiles(a, b, sh, a->shadow + head))) return rc;
    memcpy(a->st.host, a->shadow, meta * sizeof(int32_t));
    if ((rc = cuda_staging_upload(ci, &a->st, meta))) return rc;
    a->shadow_len = meta;
    a->n_tokens = n;
    a->n_rows = n_rows;
    a->max_blocks = b->max_blocks;
    a->max_ctx = max_ctx;
    a->tiles_at = head;
    a->single = single_tokens(b);
    return 0;
}

/* The attention workspace of at least `need` bytes, its completion counters zero
 * (SLM_CUDA_ATTN_DECODE_COUNTER_BYTES at its start: every launch leaves them zero again). A new
 * one drops the graphs (they hold the old one), so it grows to a power of two of at least
 * 1 MiB: few growths, and none in the step shapes of the short contexts. */
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
    CUDA_TRY(cudaMemsetAsync(ci->workspace, 0, SLM_CUDA_ATTN_DECODE_COUNTER_BYTES, ci->stream));
    ci->workspace_bytes = need;
    return 0;
}

/* Attention of the tokens t over max_ctx positions, attn_chunk() tokens a launch (the counters'
 * slots): `fresh` (a decode-only step) rotates q and k and stores k and v in the same launch
 * (slm_cuda_attention_decode_fused); otherwise slm_cuda_attention_paged reads the cache that
 * slm_cuda_rope_store filled, chunk c in the tiles tiles + 2 chunk_tiles[c] ..
 * (attn_upload's). A token gets the same bits both ways (docs/numerics.md, "The GPU"). */
static int attention_launch(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh,
                            const struct slm_cuda_attn_tokens *t, const struct slm_cuda_kv_layer *kv,
                            const struct slm_cuda_rope_table *rope, const float *q, const float *k, const float *v,
                            int max_ctx, const int32_t *tiles, const int *chunk_tiles, float *out)
{
    int chunk = attn_chunk(sh);
    int per = t->n_tokens < chunk ? t->n_tokens : chunk;
    size_t need = slm_cuda_attention_decode_fused_workspace(sh, per, max_ctx);
    if (!need) return launched(-EINVAL, "slm_cuda_attention_decode_fused_workspace");
    int rc = workspace_reserve(ci, need);
    size_t qd = (size_t)sh->n_head * (size_t)sh->head_dim, kvd = (size_t)sh->n_head_kv * (size_t)sh->head_dim;
    for (int i0 = 0, c = 0; i0 < t->n_tokens && !rc; i0 += chunk, c++) {
        struct slm_cuda_attn_tokens ct = *t;
        ct.n_tokens = t->n_tokens - i0 < chunk ? t->n_tokens - i0 : chunk;
        ct.pos = t->pos + i0, ct.seq_row = t->seq_row + i0;
        const float *cq = q + (size_t)i0 * qd;
        float *co = out + (size_t)i0 * qd;
        if (!tiles)
            rc = launched(slm_cuda_attention_decode_fused(sh, &ct, kv, rope, cq, k + (size_t)i0 * kvd,
                                                          v + (size_t)i0 * kvd, max_ctx, ci->workspace,
                                                          ci->workspace_bytes, co, ci->stream),
                          "slm_cuda_attention_decode_fused");
        else {
            ct.tiles = tiles + 2 * (size_t)chunk_tiles[c];
            ct.n_tiles = chunk_tiles[c + 1] - chunk_tiles[c];
            rc = launched(slm_cuda_attention_paged(sh, &ct, kv, cq, max_ctx, ci->workspace, ci->workspace_bytes, co,
                                                   ci->stream),
                          "slm_cuda_attention_paged");
        }
    }
    return rc;
}

/* The rotation table of p's (base, rope_dim, factors, mscale) covering positions [0, need): grown
 * to a power of two of at least ROPE_MIN_POSITIONS when short (a new table drops the graphs, which hold the old
 * one; a graph step's warm-up grows it before its capture). */
static int rope_table(struct cuda_impl *ci, const struct slm_attn_params *p, int need, struct slm_cuda_rope_table *out)
{
    const float base = p->rope_base, mscale = p->rope_mscale;
    const int rope_dim = p->rope_dim;
    *out = (struct slm_cuda_rope_table){NULL, 0};
    if (rope_dim <= 0) return 0;   /* nothing rotates */
    struct rope_cache *rc = NULL;
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (ci->rope[i].dev && ci->rope[i].base == base && ci->rope[i].rope_dim == rope_dim &&
            ci->rope[i].factors == p->rope_factors && ci->rope[i].mscale == mscale)
            rc = &ci->rope[i];
    for (int i = 0; i < ROPE_TABLES && !rc; i++)
        if (!ci->rope[i].dev) rc = &ci->rope[i];
    if (!rc) {
        slm_log(SLM_LOG_ERR, "cuda backend: more than %d RoPE (base, dims, factors) sets in one model", ROPE_TABLES);
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
        for (int pos = 0; pos < positions; pos++) {
            slm_cpu_rope_angles(pos, rope_dim, base, p->rope_factors, mscale, c, c + half);
            for (int j = 0; j < half; j++) {
                host[((size_t)pos * half + j) * 2] = c[j];
                host[((size_t)pos * half + j) * 2 + 1] = c[half + j];
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
        rc->factors = p->rope_factors, rc->mscale = mscale;
    }
    *out = (struct slm_cuda_rope_table){.cos_sin = rc->dev, .positions = rc->positions};
    return 0;
}

/* Attention of a graph-shaped step over max_ctx = the step's partitions x GRAPH_CTX_STEP, from
 * the metadata buffer (the local pool's tables for a local layer). Decode-only: every token
 * alone in its (own) block table row, one launch. Mixed: RoPE and the store, then the paged
 * attention over the tiles graph_meta_upload cut for the layers' one shape. */
static int attention_graph_step(struct cuda_impl *ci, const struct slm_cuda_attn_shape *sh,
                                const struct slm_attn_params *p, const struct slm_cuda_kv_layer *kv, int local,
                                float *q, float *k, const float *v, float *out)
{
    const struct graphs *g = &ci->graphs;
    if (local && !g->d_tables_local) return launched(-EINVAL, "attention_graph_step (no local tables)");
    struct slm_cuda_attn_tokens t = {.n_tokens = g->tokens, .pos = g->d_pos, .seq_row = g->d_row,
                                     .block_tables = local ? g->d_tables_local : g->d_tables,
                                     .n_seq_rows = g->rows, .max_blocks = g->stride};
    struct slm_cuda_rope_table rope;
    int rc = rope_table(ci, p, g->max_ctx, &rope);
    if (rc) return rc;
    if (!g->mixed) return attention_launch(ci, sh, &t, kv, &rope, q, k, v, g->max_ctx, NULL, NULL, out);
    if (g->attn_shapes_differ) {   /* noted by the backend's first step, which runs op by op: cannot happen */
        slm_log(SLM_LOG_ERR, "cuda backend: a step graph's attention tiles were cut for another layer's shape");
        return -EINVAL;
    }
    if ((rc = launched(slm_cuda_rope_store(sh, &t, kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store")))
        return rc;
    return attention_launch(ci, sh, &t, kv, &rope, q, k, v, g->max_ctx, g->d_tiles, g->chunk_tiles, out);
}

/* The kernels' shape of p. */
static struct slm_cuda_attn_shape attn_shape(const struct slm_attn_params *p)
{
    return (struct slm_cuda_attn_shape){
        .n_head = p->n_head, .n_head_kv = p->n_head_kv, .head_dim = p->head_dim, .rope_dim = p->rope_dim,
        .rope_layout = p->rope_layout, .scale = p->scale, .window = p->window,
    };
}

int cuda_attention_check(struct slm_backend *be, const struct slm_attn_params *p, char *why, size_t len)
{
    (void)be;
    const struct slm_cuda_attn_shape sh = attn_shape(p);
    return slm_cuda_attention_shape_check(&sh, why, len) ? -ENOTSUP : 0;
}

int cuda_attention(struct slm_backend *be, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                   const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    struct cuda_impl *ci = impl(be);
    const struct slm_cuda_attn_shape sh = attn_shape(p);
    size_t per_layer = cuda_kv_layer_halves(pool);
    slm_half *k_pool = (slm_half *)pool->mem + (size_t)layer * 2 * per_layer;
    struct slm_cuda_kv_layer kv = {.k = k_pool, .v = k_pool + per_layer, .n_blocks = cuda_kv_blocks(pool),
                                   .block_size = pool->block_size};
    const int local = pool->window > 0;
    struct graphs *g = &ci->graphs;   /* the shape a mixed step graph's tiles are cut for (graphs.c) */
    const int tile_tokens = slm_cuda_attention_tile_tokens(&sh), chunk = attn_chunk(&sh);
    if (g->attn_tile_tokens && (tile_tokens != g->attn_tile_tokens || chunk != g->attn_chunk)) g->attn_shapes_differ = 1;
    g->attn_shape = sh, g->attn_tile_tokens = tile_tokens, g->attn_chunk = chunk;
    if (g->cur) return attention_graph_step(ci, &sh, p, &kv, local, q, k, v, out);
    const struct attn_meta *a = &ci->attn[local];
    int rc = attn_upload(ci, &ci->attn[local], b, &sh);
    if (rc) return rc;
    const int32_t *d_pos = a->st.dev, *d_row = a->st.dev + a->n_tokens, *d_tables = a->st.dev + 2 * a->n_tokens;
    struct slm_cuda_attn_tokens all = {.n_tokens = b->n_tokens, .pos = d_pos, .seq_row = d_row,
                                       .block_tables = d_tables, .n_seq_rows = a->n_rows, .max_blocks = b->max_blocks};
    struct slm_cuda_rope_table rope;
    if ((rc = rope_table(ci, p, a->max_ctx, &rope))) return rc;
    if (a->single) return attention_launch(ci, &sh, &all, &kv, &rope, q, k, v, a->max_ctx, NULL, NULL, out);
    if ((rc = launched(slm_cuda_rope_store(&sh, &all, &kv, &rope, q, k, v, ci->stream), "slm_cuda_rope_store")))
        return rc;
    return attention_launch(ci, &sh, &all, &kv, &rope, q, k, v, a->max_ctx, a->st.dev + a->tiles_at, a->chunk_tiles,
                            out);
}
