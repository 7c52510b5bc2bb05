/* daemon/engine/runner.c - see runner.h. */
#include "daemon/engine/runner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/stop.h"

#define BLOCK_SIZE 16

struct slm_runner {
    struct slm_model *m;
    struct slm_forward *fwd;
    struct slm_kv_pool pool;
    struct slm_kv_pool pool_local;  /* a sliding-window model's local layers: as large, the same table */
    int n_ctx, max_batch, pos;
    int32_t *block_table;   /* (n_blocks) the identity: this sequence owns the whole pool */
    int32_t *positions;     /* (max_batch) */
    int32_t *seq_rows;      /* (max_batch) all 0 */
    int32_t *out_rows;      /* (max_batch) */
};

struct slm_runner *slm_runner_create(struct slm_model *m, int n_ctx, int max_batch, char *err)
{
    if (n_ctx < 1 || max_batch < 1) {
        slm_err_set(err, "runner: bad context %d or batch %d", n_ctx, max_batch);
        return NULL;
    }
    if (slm_model_set_ctx(m, n_ctx, err)) return NULL;
    struct slm_runner *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    r->m = m;
    r->n_ctx = n_ctx;
    r->max_batch = max_batch < n_ctx ? max_batch : n_ctx;
    int n_blocks = (n_ctx + BLOCK_SIZE - 1) / BLOCK_SIZE;
    /* Two pools for a model with sliding-window layers, as the engine has (the same code paths),
     * each of the whole context: one sequence, nothing to release. */
    slm_model_kv_geometry_split(m, n_blocks, n_blocks, BLOCK_SIZE, &r->pool, &r->pool_local);
    if (m->be->ops->kv_alloc(m->be, &r->pool)) goto oom;
    if (r->pool.local && m->be->ops->kv_alloc(m->be, &r->pool_local)) goto oom;
    r->block_table = malloc((size_t)n_blocks * sizeof(int32_t));
    r->positions = malloc((size_t)r->max_batch * sizeof(int32_t));
    r->seq_rows = calloc((size_t)r->max_batch, sizeof(int32_t));
    r->out_rows = malloc((size_t)r->max_batch * sizeof(int32_t));
    if (!r->block_table || !r->positions || !r->seq_rows || !r->out_rows) goto oom;
    for (int i = 0; i < n_blocks; i++) r->block_table[i] = i;
    r->fwd = slm_forward_create(m, r->max_batch, r->max_batch, err);
    if (!r->fwd) goto err;
    return r;
oom:
    slm_err_set(err, "runner: out of memory for a context of %d tokens", n_ctx);
err:
    slm_runner_destroy(&r);
    return NULL;
}

void slm_runner_destroy(struct slm_runner **rp)
{
    struct slm_runner *r = *rp;
    if (!r) return;
    slm_forward_destroy(&r->fwd);
    if (r->pool.mem) r->m->be->ops->kv_free(r->m->be, &r->pool);
    if (r->pool_local.mem) r->m->be->ops->kv_free(r->m->be, &r->pool_local);
    free(r->block_table);
    free(r->positions);
    free(r->seq_rows);
    free(r->out_rows);
    free(r);
    *rp = NULL;
}

int slm_runner_eval(struct slm_runner *r, const int32_t *tokens, int n, int all_logits, float *logits)
{
    if (n < 1) return -EINVAL;
    if (n > r->n_ctx - r->pos) return -ENOSPC;
    size_t n_vocab = (size_t)r->m->cfg.n_vocab;
    for (int done = 0; done < n;) {
        int chunk = n - done < r->max_batch ? n - done : r->max_batch;
        int last = done + chunk == n;
        for (int i = 0; i < chunk; i++) {
            r->positions[i] = r->pos + i;
            r->out_rows[i] = i;
        }
        struct slm_batch b = {
            .n_tokens = chunk, .tokens = tokens + done, .pos = r->positions, .seq_row = r->seq_rows,
            .block_tables = r->block_table, .max_blocks = (r->n_ctx + BLOCK_SIZE - 1) / BLOCK_SIZE,
            .block_tables_local = r->pool.local ? r->block_table : NULL,
        };
        float *dst = logits;
        if (all_logits) {
            b.n_out = chunk;
            b.out_rows = r->out_rows;
            dst = logits + (size_t)done * n_vocab;
        } else if (last) {
            b.n_out = 1;
            r->out_rows[0] = chunk - 1;
            b.out_rows = r->out_rows;
        }
        int rc = slm_forward_run(r->fwd, &r->pool, &b, dst);
        if (rc) return rc;
        r->pos += chunk;
        done += chunk;
    }
    return 0;
}

int slm_runner_pos(const struct slm_runner *r)
{
    return r->pos;
}

int slm_runner_n_ctx(const struct slm_runner *r)
{
    return r->n_ctx;
}

void slm_runner_reset(struct slm_runner *r)
{
    r->pos = 0;
}

int slm_runner_score_chunk(struct slm_runner *r, const int32_t *chunk, int n, int32_t bos, float *logits,
                           double *nll, int *bad_pos)
{
    if (n < 2) return -EINVAL;
    if (n > r->n_ctx) return -ENOSPC;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return -ENOMEM;
    memcpy(ids, chunk, (size_t)n * sizeof *ids);
    if (bos >= 0) ids[0] = bos;
    slm_runner_reset(r);
    int rc = slm_runner_eval(r, ids, n, 1, logits);
    free(ids);
    if (rc) return rc;
    int n_vocab = r->m->cfg.n_vocab;
    for (int j = n / 2; j < n - 1; j++) {
        float lp;
        if (slm_logprobs_top(logits + (size_t)j * (size_t)n_vocab, n_vocab, chunk[j + 1], 0, &lp, NULL) < 0) {
            if (bad_pos) *bad_pos = j;
            return -EDOM;
        }
        nll[j - n / 2] = -(double)lp;
    }
    return n - n / 2 - 1;
}
