/* daemon/engine/engine.c - see engine.h.
 *
 * Sampling: when the backend has a `sample` op (CUDA) and the options allow it, the rows to
 * sample stay in backend memory and one call per step returns their token ids and requested
 * logprobs; only prompt-logprob rows, and rows whose sampler cannot be exported
 * (slm_sampler_window's -ENOMEM), come to the host, where sampler.c samples them as before.
 * The logits rows of a step are ordered device rows first, then each plan entry's host rows. */
#include "daemon/engine/engine.h"
#include "common/clock.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/engine/kvcache.h"
#include "daemon/engine/tokenizer.h"

struct req {
    int64_t id;
    uint64_t arrival;
    int priority;
    uint32_t owner;
    int share;              /* its place among its owner's unfinished requests of its priority */
    int32_t *tokens;        /* (n_ctx + 1) prompt, then what was generated */
    int n_prompt, n_tokens, n_gen, max_tokens;
    int n_computed;         /* tokens whose K/V is in the cache for seq */
    int n_cached;           /* of those, taken from the prefix cache at the last admission */
    int seq;                /* kvcache sequence, -1 while waiting */
    int cancelled;
    int planned;            /* in this step's batch */
    int logprobs;
    int prompt_logprobs;
    int plp_next;           /* the next prompt token whose logprob is to be reported (from 1) */
    int ignore_eos;
    int progress;           /* report prefill progress (slm_request.progress) */
    void *user;
    struct slm_sampler *sampler;
    struct slm_detok detok;
    struct slm_stop stop;   /* stop strings and stop ids */
};

struct plan {
    struct req *r;
    int k;                  /* its index in reqs for this step */
    int n;                  /* tokens fed this step */
    int plp_first, n_plp;   /* rows of prompt logprobs: positions plp_first .. plp_first + n_plp - 1 */
    int dev;                /* its row among the device-sampled ones, or -1 */
    int host;               /* its first row among the host rows (prompt logprobs, then its sample) */
};

/* Logits rows per step for prompt logprobs (on top of one row per sequence): each is a full
 * vocabulary row, twice (the forward pass's and the engine's). */
#define PLP_ROWS 32

struct slm_engine {
    /* Recursive: event callbacks run with it held and may call add() or cancel(). Held for
     * everything but the forward pass. */
    pthread_mutex_t lock;
    struct slm_model *m;
    const struct slm_tokenizer *tok;
    struct slm_engine_opts o;
    struct slm_kv_pool pool;       /* every layer, or the global layers when pool.local is set */
    struct slm_kv_pool pool_local; /* the sliding-window layers' pool (mem NULL when there is none) */
    struct slm_kvcache *kv;
    struct slm_forward *fwd;
    struct req **reqs;      /* unfinished, in no particular order */
    int n_reqs, cap_reqs;
    int64_t next_id;
    uint64_t next_arrival;
    uint64_t n_preempted;
    int lock_init;
    int max_blocks;         /* block-table row length */
    int max_out;            /* logits rows per step */
    /* step scratch */
    struct plan *plan;
    int32_t *tokens, *pos, *seq_row, *tables, *out_rows;
    int32_t *tables_local;  /* (max_batch_tokens, max_blocks) with a local pool, else NULL */
    float *logits;          /* (max_out, n_vocab) host rows */
    /* device sampling: on when the backend samples and o.host_sampling is 0 */
    int dev_sample;
    struct slm_sample_row *srows;  /* (max_out) */
    int32_t *sids;                 /* (max_out) */
    float *slp;                    /* (max_out) */
    struct slm_logprob *stop_lp;   /* (max_out, SLM_LOGPROBS_MAX) */
    uint64_t n_sampled_device, n_sampled_host;
    void *sample_scratch;          /* lent to every request's sampler (they sample one at a time) */
    int timing;                    /* slm_engine_set_timing */
    struct slm_engine_timing tm;
};

/* Adds the time since *t to *acc and restarts *t, when timing is on. */
static inline void lap(const struct slm_engine *e, uint64_t *acc, uint64_t *t)
{
    if (!e->timing) return;
    uint64_t now = (uint64_t)slm_mono_ns();
    *acc += now - *t;
    *t = now;
}

void slm_engine_set_timing(struct slm_engine *e, int on)
{
    pthread_mutex_lock(&e->lock);
    e->timing = on;
    memset(&e->tm, 0, sizeof e->tm);
    pthread_mutex_unlock(&e->lock);
}

void slm_engine_timing(struct slm_engine *e, struct slm_engine_timing *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->tm;
    pthread_mutex_unlock(&e->lock);
}

static void req_free(struct req *r)
{
    if (!r) return;
    slm_sampler_destroy(&r->sampler);
    free(r->tokens);
    free(r);
}

void slm_engine_destroy(struct slm_engine **ep)
{
    struct slm_engine *e = *ep;
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) req_free(e->reqs[i]);
    free(e->reqs);
    slm_forward_destroy(&e->fwd);
    slm_kvcache_destroy(&e->kv);
    if (e->pool.mem) e->m->be->ops->kv_free(e->m->be, &e->pool);
    if (e->pool_local.mem) e->m->be->ops->kv_free(e->m->be, &e->pool_local);
    free(e->tables_local);
    free(e->plan);
    free(e->tokens);
    free(e->pos);
    free(e->seq_row);
    free(e->tables);
    free(e->out_rows);
    free(e->logits);
    free(e->srows);
    free(e->sids);
    free(e->sample_scratch);
    free(e->slp);
    free(e->stop_lp);
    if (e->lock_init) pthread_mutex_destroy(&e->lock);
    free(e);
    *ep = NULL;
}

static size_t layers_block_bytes(const struct slm_model *m, int n_layer, int block_size)
{
    return (size_t)n_layer * 2 * (size_t)m->cfg.n_head_kv * (size_t)m->cfg.head_dim * (size_t)block_size *
           sizeof(slm_half);
}

size_t slm_engine_block_bytes(const struct slm_model *m, int block_size)
{
    return layers_block_bytes(m, m->cfg.n_layer - slm_model_n_local_layers(&m->cfg), block_size);
}

size_t slm_engine_local_block_bytes(const struct slm_model *m, int block_size)
{
    return layers_block_bytes(m, slm_model_n_local_layers(&m->cfg), block_size);
}

int slm_engine_local_blocks(const struct slm_model *m, const struct slm_engine_opts *o)
{
    if (o->swa_full || slm_model_n_local_layers(&m->cfg) == 0 || o->block_size < 1) return 0;
    long long bs = o->block_size, w = m->cfg.n_swa;
    long long n = o->n_local_blocks > 0 ? o->n_local_blocks
                                        : (long long)o->max_seqs * ((w + bs - 1) / bs + 1) + (o->max_batch_tokens + bs - 1) / bs;
    if (o->n_blocks > 0 && n > o->n_blocks) n = o->n_blocks;
    return n > (1 << 28) ? 1 << 28 : (int)n;
}

void slm_engine_kv_desc(const struct slm_model *m, const struct slm_engine_opts *o, char *buf, size_t cap)
{
    int n_local = slm_engine_local_blocks(m, o);
    size_t global = o->swa_full ? layers_block_bytes(m, m->cfg.n_layer, o->block_size)
                                : slm_engine_block_bytes(m, o->block_size);
    int n = snprintf(buf, cap, "%d blocks of %d tokens (%zu MiB)", o->n_blocks, o->block_size,
                     (size_t)o->n_blocks * global >> 20);
    if (n_local > 0 && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "; local pool of the %d sliding-window layers (window %d): %d blocks (%zu MiB)",
                 slm_model_n_local_layers(&m->cfg), m->cfg.n_swa, n_local,
                 (size_t)n_local * slm_engine_local_block_bytes(m, o->block_size) >> 20);
}

int slm_engine_kv_counts(struct slm_engine *e, int pool, struct slm_kv_counts *out)
{
    pthread_mutex_lock(&e->lock);
    int rc = slm_kvcache_counts(e->kv, pool, out);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

struct slm_engine *slm_engine_create(struct slm_model *m, const struct slm_tokenizer *tok,
                                     const struct slm_engine_opts *o, char *err)
{
    if (o->n_blocks < 1 || o->block_size < 1 || o->max_batch_tokens < 1 || o->max_seqs < 1 || o->n_ctx < 2 ||
        o->max_seqs > o->max_batch_tokens) {
        slm_err_set(err, "engine: bad options (blocks %d of %d tokens, batch %d tokens, %d sequences, context %d)",
                    o->n_blocks, o->block_size, o->max_batch_tokens, o->max_seqs, o->n_ctx);
        return NULL;
    }
    const int n_local = slm_engine_local_blocks(m, o);
    if (n_local > 0) {
        /* one request alone must run to its end (see add): its window and a step's chunk */
        long long bs = o->block_size, alone = (m->cfg.n_swa - 1 + o->max_batch_tokens + bs - 1) / bs + 1;
        if (alone > o->n_blocks) alone = o->n_blocks;
        if (n_local < alone) {
            slm_err_set(err, "engine: a local KV pool of %d blocks is below the %lld one request needs (window %d, "
                        "%d tokens per step, blocks of %d)", n_local, alone, m->cfg.n_swa, o->max_batch_tokens,
                        o->block_size);
            return NULL;
        }
    }
    if (slm_model_set_ctx(m, o->n_ctx, err)) return NULL;
    struct slm_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    int lrc = pthread_mutex_init(&e->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (lrc) goto oom;
    e->lock_init = 1;
    e->m = m;
    e->tok = tok;
    e->o = *o;
    e->max_blocks = (o->n_ctx + o->block_size - 1) / o->block_size;
    slm_model_kv_geometry_split(m, o->n_blocks, n_local, o->block_size, &e->pool, &e->pool_local);
    if (m->be->ops->kv_alloc(m->be, &e->pool)) {
        slm_err_set(err, "engine: cannot allocate a KV pool of %d blocks", o->n_blocks);
        goto fail;
    }
    if (e->pool.local) {
        if (m->be->ops->kv_alloc(m->be, &e->pool_local)) {
            slm_err_set(err, "engine: cannot allocate the local KV pool of %d blocks", n_local);
            goto fail;
        }
    }
    e->kv = e->pool.local ? slm_kvcache_create_windowed(o->n_blocks, n_local, m->cfg.n_swa, o->block_size, err)
                          : slm_kvcache_create(o->n_blocks, o->block_size, err);
    if (!e->kv) goto fail;
    e->max_out = o->max_seqs + PLP_ROWS < o->max_batch_tokens ? o->max_seqs + PLP_ROWS : o->max_batch_tokens;
    if (!(e->fwd = slm_forward_create(m, o->max_batch_tokens, e->max_out, err))) goto fail;
    size_t nt = (size_t)o->max_batch_tokens;
    e->plan = malloc(nt * sizeof *e->plan);
    e->tokens = malloc(nt * sizeof(int32_t));
    e->pos = malloc(nt * sizeof(int32_t));
    e->seq_row = malloc(nt * sizeof(int32_t));
    e->tables = malloc(nt * (size_t)e->max_blocks * sizeof(int32_t));
    if (e->pool.local && !(e->tables_local = malloc(nt * (size_t)e->max_blocks * sizeof(int32_t)))) goto oom;
    e->out_rows = malloc((size_t)e->max_out * sizeof(int32_t));
    e->logits = malloc((size_t)e->max_out * (size_t)m->cfg.n_vocab * sizeof(float));
    e->sample_scratch = malloc(slm_sampler_scratch_bytes(m->cfg.n_vocab));
    if (!e->plan || !e->tokens || !e->pos || !e->seq_row || !e->tables || !e->out_rows || !e->logits ||
        !e->sample_scratch)
        goto oom;
    e->dev_sample = m->be->ops->sample && !o->host_sampling;
    if (e->dev_sample) {
        size_t no = (size_t)e->max_out;
        e->srows = calloc(no, sizeof *e->srows);
        e->sids = malloc(no * sizeof *e->sids);
        e->slp = malloc(no * sizeof *e->slp);
        e->stop_lp = malloc(no * SLM_LOGPROBS_MAX * sizeof *e->stop_lp);
        if (!e->srows || !e->sids || !e->slp || !e->stop_lp) goto oom;
    }
    return e;
oom:
    slm_err_set(err, "engine: out of memory");
fail:
    slm_engine_destroy(&e);
    return NULL;
}

int64_t slm_engine_add(struct slm_engine *e, const struct slm_request *q, char *err)
{
    if (!q->prompt || q->n_prompt < 1 || q->max_tokens < 1 || q->n_stop_ids < 0 || (q->n_stop_ids && !q->stop_ids) ||
        q->n_stop < 0 || (q->n_stop && !q->stop)) {
        slm_err_set(err, "request: needs a prompt of at least one token and max_tokens >= 1");
        return -EINVAL;
    }
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= e->m->cfg.n_vocab) {
            slm_err_set(err, "request: prompt token %d at %d is outside the vocabulary (%d)", q->prompt[i], i,
                        e->m->cfg.n_vocab);
            return -EINVAL;
        }
    if (slm_sampling_validate(&q->sampling, err)) return -EINVAL;
    /* A prompt of exactly the context gives one token (sampled from its last position, which
     * needs no KV slot) and finishes with LENGTH. */
    if (q->n_prompt > e->o.n_ctx) {
        slm_err_set(err, "request: prompt of %d tokens does not fit the context of %d (shorten it, or raise ctx-size)",
                    q->n_prompt, e->o.n_ctx);
        return -E2BIG;
    }
    /* Alone, a request must be able to run to its end: then the highest-ranked one always
     * progresses (it may preempt every other), and nothing deadlocks. */
    int longest = q->max_tokens > e->o.n_ctx - q->n_prompt ? e->o.n_ctx : q->n_prompt + q->max_tokens;
    int need = (longest + e->o.block_size - 1) / e->o.block_size;
    if (need > e->o.n_blocks) {
        slm_err_set(err, "request: %d prompt tokens + %d to generate need %d KV blocks; the whole cache has %d",
                    q->n_prompt, q->max_tokens, need, e->o.n_blocks);
        return -E2BIG;
    }
    if (q->logprobs < 0 || q->logprobs > SLM_LOGPROBS_MAX) {
        slm_err_set(err, "request: logprobs %d is out of range (0 to %d)", q->logprobs, SLM_LOGPROBS_MAX);
        return -EINVAL;
    }
    for (int i = 0; i < q->n_stop_ids; i++)
        if (q->stop_ids[i] < 0 || q->stop_ids[i] >= e->m->cfg.n_vocab) {
            slm_err_set(err, "request: stop token id %d is outside the vocabulary (%d)", q->stop_ids[i],
                        e->m->cfg.n_vocab);
            return -EINVAL;
        }
    struct req *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    if (slm_stop_init(&r->stop, q->stop, NULL, q->n_stop, q->stop_ids, q->n_stop_ids, err)) {
        req_free(r);
        return -EINVAL;
    }
    r->tokens = malloc(((size_t)e->o.n_ctx + 1) * sizeof(int32_t));
    /* A penalty window longer than the context holds what one of the context holds (a token is
     * sampled after at most n_ctx others): cut to that, its ring is not a size the client picks
     * (repeat_last_n = INT_MAX asked for 8 GiB per request). */
    struct slm_sampling sp = q->sampling;
    if (sp.repeat_last_n > e->o.n_ctx) sp.repeat_last_n = e->o.n_ctx;
    r->sampler = slm_sampler_create_shared(&sp, e->m->cfg.n_vocab, e->sample_scratch);
    if (!r->tokens || !r->sampler) {
        req_free(r);
        goto oom;
    }
    memcpy(r->tokens, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    r->logprobs = q->logprobs;
    r->prompt_logprobs = q->prompt_logprobs != 0;
    r->plp_next = 1;
    r->ignore_eos = q->ignore_eos != 0;
    r->progress = q->progress != 0;
    r->user = q->user;
    r->n_prompt = r->n_tokens = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->priority = q->priority;
    r->owner = q->owner;
    r->seq = -1;
    for (int i = 0; i < q->n_prompt; i++) slm_sampler_accept(r->sampler, q->prompt[i]);
    pthread_mutex_lock(&e->lock);
    if (e->n_reqs == e->cap_reqs) {
        int cap = e->cap_reqs ? 2 * e->cap_reqs : 16;
        struct req **p = realloc(e->reqs, (size_t)cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&e->lock);
            req_free(r);
            goto oom;
        }
        e->reqs = p;
        e->cap_reqs = cap;
    }
    r->id = e->next_id++;
    r->arrival = e->next_arrival++;
    e->reqs[e->n_reqs++] = r;
    int64_t id = r->id;
    pthread_mutex_unlock(&e->lock);
    return id;
oom:
    slm_err_set(err, "request: out of memory");
    return -ENOMEM;
}

int slm_engine_cancel(struct slm_engine *e, int64_t id)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n_reqs; i++) {
        struct req *r = e->reqs[i];
        if (!r || r->id != id || r->cancelled) continue;
        /* Even mid-forward: the pass only writes K/V of positions not yet committed, and
         * nothing allocates blocks until the engine thread plans its next step. */
        r->cancelled = 1;
        if (r->seq >= 0) slm_kv_seq_release(e->kv, r->seq);
        r->seq = -1;
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

void slm_engine_counts(struct slm_engine *e, struct slm_engine_counts *out)
{
    pthread_mutex_lock(&e->lock);
    out->unfinished = e->n_reqs;
    out->waiting = 0;
    for (int k = 0; k < e->n_reqs; k++) out->waiting += e->reqs[k] && e->reqs[k]->seq < 0 && !e->reqs[k]->cancelled;
    out->free_blocks = slm_kvcache_n_available(e->kv);
    out->preempted = e->n_preempted;
    out->sampled_device = e->n_sampled_device;
    out->sampled_host = e->n_sampled_host;
    pthread_mutex_unlock(&e->lock);
}

uint64_t slm_engine_n_preempted(struct slm_engine *e)
{
    struct slm_engine_counts n;
    slm_engine_counts(e, &n);
    return n.preempted;
}

int slm_engine_free_blocks(struct slm_engine *e)
{
    struct slm_engine_counts n;
    slm_engine_counts(e, &n);
    return n.free_blocks;
}

int slm_engine_n_unfinished(struct slm_engine *e)
{
    struct slm_engine_counts n;
    slm_engine_counts(e, &n);
    return n.unfinished;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

/* Priority (higher first), then owner, then arrival: each owner's requests in a run. */
static int owner_cmp(const void *a, const void *b)
{
    const struct req *x = *(const struct req *const *)a, *y = *(const struct req *const *)b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    if (x->owner != y->owner) return x->owner < y->owner ? -1 : 1;
    return cmp_u64(x->arrival, y->arrival);
}

/* The rank: priority (higher first), then the owner's share (the k-th request of every
 * owner before any owner's (k+1)-th), then arrival. */
static int rank_cmp(const void *a, const void *b)
{
    const struct req *x = *(const struct req *const *)a, *y = *(const struct req *const *)b;
    if (x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    if (x->share != y->share) return x->share < y->share ? -1 : 1;
    return cmp_u64(x->arrival, y->arrival);
}

static void rank_requests(struct slm_engine *e)
{
    qsort(e->reqs, (size_t)e->n_reqs, sizeof *e->reqs, owner_cmp);
    for (int k = 0; k < e->n_reqs; k++) {
        struct req *r = e->reqs[k], *p = k ? e->reqs[k - 1] : NULL;
        r->share = p && p->priority == r->priority && p->owner == r->owner ? p->share + 1 : 0;
    }
    qsort(e->reqs, (size_t)e->n_reqs, sizeof *e->reqs, rank_cmp);
}

static void preempt(struct slm_engine *e, struct req *r)
{
    e->n_preempted++;
    slm_kv_seq_release(e->kv, r->seq);
    r->seq = -1;
    r->n_computed = 0;   /* recomputed from its prompt and what it generated */
}

/* Reserves n tokens for reqs[k], preempting admitted requests ranked after it (the lowest
 * first) while that helps. 0, or -ENOSPC when nothing lower is left to preempt. */
static int reserve(struct slm_engine *e, int k, int n)
{
    struct req *r = e->reqs[k];
    for (;;) {
        int rc = slm_kv_seq_reserve(e->kv, r->seq, n);
        if (rc != -ENOSPC) return rc;
        int victim = -1;
        for (int i = e->n_reqs - 1; i > k; i--)
            if (e->reqs[i]->seq >= 0 && !e->reqs[i]->planned) {
                victim = i;
                break;
            }
        if (victim < 0) return -ENOSPC;
        preempt(e, e->reqs[victim]);
    }
}

static int wants_plp(const struct req *r)
{
    return r->prompt_logprobs && r->plp_next < r->n_prompt;
}

static int admit(struct slm_engine *e, struct req *r)
{
    int seq = slm_kv_seq_create(e->kv);
    if (seq < 0) return seq;
    r->seq = seq;
    /* Prompt logprobs need every prompt position computed: no prefix cache for those. */
    r->n_cached = wants_plp(r) ? 0 : slm_kv_seq_match_prefix(e->kv, seq, r->tokens, r->n_tokens);
    if (r->n_cached < 0) return r->n_cached;
    r->n_computed = r->n_cached;
    return 0;
}

/* Chooses this step's work: decodes first, then prefill chunks, in rank order. */
static int plan_step(struct slm_engine *e, int *n_plan, int *n_tok)
{
    int np = 0, nt = 0, budget = e->o.max_batch_tokens, plp_left = PLP_ROWS;
    /* Only the max_seqs best-ranked requests take part: a newly ranked request displaces
     * the worst running one at once (which keeps its blocks while they are not needed). */
    int n_cand = e->n_reqs < e->o.max_seqs ? e->n_reqs : e->o.max_seqs;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n_cand && np < e->o.max_seqs && nt < budget; k++) {
            struct req *r = e->reqs[k];
            int is_decode = r->seq >= 0 && r->n_tokens - r->n_computed == 1;
            if (r->cancelled || (pass == 0) != is_decode) continue;
            if (r->seq < 0) {
                int rc = admit(e, r);
                if (rc) return rc;
            }
            int n = r->n_tokens - r->n_computed;
            if (n > budget - nt) n = budget - nt;
            /* Rows of prompt logprobs: positions whose next token is a prompt token not yet
             * reported, at most plp_left of them this step. */
            int plp_first = 0, n_plp = 0;
            if (wants_plp(r)) {
                plp_first = r->n_computed > r->plp_next - 1 ? r->n_computed : r->plp_next - 1;
                if (n > plp_first - r->n_computed + plp_left) n = plp_first - r->n_computed + plp_left;
                if (n <= 0) continue;
                int end = r->n_computed + n < r->n_prompt - 1 ? r->n_computed + n : r->n_prompt - 1;
                n_plp = end > plp_first ? end - plp_first : 0;
            }
            int rc = reserve(e, k, n);
            if (rc == -ENOSPC) {
                preempt(e, r);   /* hold no blocks while waiting for room */
                break;
            }
            if (rc) return rc;
            r->planned = 1;
            e->plan[np++] = (struct plan){.r = r, .k = k, .n = n, .plp_first = plp_first, .n_plp = n_plp, .dev = -1};
            nt += n;
            plp_left -= n_plp;
        }
    }
    *n_plan = np;
    *n_tok = nt;
    return 0;
}

static int stops(const struct slm_engine *e, const struct req *r, int32_t id)
{
    return (!r->ignore_eos && slm_tok_is_eog(e->tok, id)) || slm_stop_is_stop_token(&r->stop, id);
}

/* Reports ev for reqs[k]; ends the request (blocks freed) when ev->finish is set. */
static void report(struct slm_engine *e, int k, struct slm_engine_event *ev, slm_engine_event_fn fn, void *ctx)
{
    struct req *r = e->reqs[k];
    ev->id = r->id;
    ev->user = r->user;
    ev->n_prompt = r->n_prompt;
    ev->n_cached = r->n_cached;
    ev->n_generated = r->n_gen;
    if (fn) fn(ctx, ev);
    if (!ev->finish) return;
    if (r->seq >= 0) slm_kv_seq_release(e->kv, r->seq);
    req_free(r);
    e->reqs[k] = NULL;
}

/* The text token id adds to r's output, through the stop-string matcher; at the end (why set)
 * the held-back bytes too. Returns the length in out; *why becomes STOP on a match. */
static size_t emit_text(const struct slm_engine *e, struct req *r, int32_t id, int is_stop_token,
                        enum slm_engine_finish *why, char *out, size_t cap)
{
    char piece[512];
    size_t n = 0, k;
    int len = is_stop_token ? 0 : slm_detok_push(e->tok, &r->detok, id, 0, piece, sizeof piece);
    if (len < 0) len = 0;
    if ((size_t)len > sizeof piece) len = (int)sizeof piece;
    int matched = slm_stop_push(&r->stop, piece, (size_t)len, out, cap, &n) == 1;
    if (!matched && *why != SLM_ENGINE_FINISH_NONE) {
        len = slm_detok_flush(&r->detok, piece, sizeof piece);
        matched = slm_stop_push(&r->stop, piece, (size_t)(len > 0 ? len : 0), out + n, cap - n, &k) == 1;
        n += k;
        if (!matched) {
            int f = slm_stop_flush(&r->stop, out + n, cap - n);
            n += f > 0 ? (size_t)f : 0;
        }
    }
    if (matched) *why = SLM_ENGINE_FINISH_STOP;
    return n;
}

/* Reports the prompt logprobs of plan entry pl from its logits rows (n_plp of them). */
static void report_plp(struct slm_engine *e, const struct plan *pl, const float *rows, slm_engine_event_fn fn,
                       void *ctx)
{
    struct req *r = pl->r;
    struct slm_logprob lp[PLP_ROWS];
    int n_vocab = e->m->cfg.n_vocab;
    for (int i = 0; i < pl->n_plp; i++) {
        lp[i].id = r->tokens[pl->plp_first + i + 1];
        if (slm_logprobs_top(rows + (size_t)i * (size_t)n_vocab, n_vocab, lp[i].id, 0, &lp[i].logprob, NULL) < 0)
            lp[i].logprob = NAN;   /* logits with NaN: said, not hidden */
    }
    r->plp_next = pl->plp_first + pl->n_plp + 1;
    struct slm_engine_event ev = {.token = -1, .n_prompt_lp = pl->n_plp, .prompt_lp = lp, .prompt_lp_first = pl->plp_first + 1};
    report(e, pl->k, &ev, fn, ctx);
}

/* Drops the finished (NULL) entries of reqs. */
static void compact(struct slm_engine *e)
{
    int w = 0;
    for (int k = 0; k < e->n_reqs; k++)
        if (e->reqs[k]) e->reqs[w++] = e->reqs[k];
    e->n_reqs = w;
}

/* Reports the cancelled requests' finish events and drops them. */
static void reap_cancelled(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    for (int k = 0; k < e->n_reqs; k++)
        if (e->reqs[k] && e->reqs[k]->cancelled) {
            struct slm_engine_event ev = {.token = -1, .finish = SLM_ENGINE_FINISH_CANCELLED};
            report(e, k, &ev, fn, ctx);
        }
    compact(e);
}

/* The device-sampling row of r's sampler; -1 when it cannot be exported (then the host
 * samples it). */
static int sample_row(const struct req *r, struct slm_sample_row *row)
{
    const struct slm_sampling *p = slm_sampler_params(r->sampler);
    const int32_t *w;
    int n = slm_sampler_window(r->sampler, &w);
    if (n < 0) return -1;
    *row = (struct slm_sample_row){
        .temperature = p->temperature, .top_k = p->top_k, .top_p = p->top_p, .min_p = p->min_p,
        .repeat_penalty = p->repeat_penalty, .presence_penalty = p->presence_penalty,
        .frequency_penalty = p->frequency_penalty, .window = w, .n_window = n, .n_logprobs = r->logprobs,
    };
    slm_sampler_rng(r->sampler, row->rng);
    return 0;
}

/* The logits the step needs: host rows to e->logits, device rows sampled into e->sids. Runs
 * without the lock (the samplers are only touched by the engine thread). */
static int run_pass(struct slm_engine *e, const struct slm_batch *b, int n_dev, int n_host)
{
    int rc = slm_forward_run(e->fwd, &e->pool, b, NULL);
    if (!rc) rc = slm_forward_logits_to_host(e->fwd, n_dev, n_host, e->logits);
    if (!rc && n_dev) {
        struct slm_backend *be = e->m->be;
        rc = be->ops->sample(be, slm_forward_logits(e->fwd), n_dev, e->m->cfg.n_vocab, e->srows, e->sids, e->slp,
                             e->stop_lp);
    }
    return rc;
}

/* One step with e->lock held (released around the forward pass and the sampling). */
static int step_locked(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    uint64_t t_lap = e->timing ? (uint64_t)slm_mono_ns() : 0;
    struct slm_engine_timing *tm = &e->tm;
    reap_cancelled(e, fn, ctx);
    if (!e->n_reqs) return 0;
    rank_requests(e);
    for (int k = 0; k < e->n_reqs; k++) e->reqs[k]->planned = 0;
    int np, nt;
    int rc = plan_step(e, &np, &nt);
    if (rc) return rc;
    if (np == 0) return -ENOSPC;   /* cannot happen when add() refuses what cannot fit */
    /* Rows sampled on the device come first in the logits, then the host rows. */
    int n_dev = 0, n_host = 0, t = 0;
    for (int p = 0; p < np; p++) {
        struct plan *pl = &e->plan[p];
        pl->dev = -1;
        if (e->dev_sample && pl->r->n_computed + pl->n == pl->r->n_tokens && !sample_row(pl->r, &e->srows[n_dev]))
            pl->dev = n_dev++;
    }
    for (int p = 0; p < np; p++) {
        struct plan *pl = &e->plan[p];
        struct req *r = pl->r;
        const int32_t *table;
        int nb = slm_kv_seq_table(e->kv, r->seq, &table);
        int32_t *row = e->tables + (size_t)p * (size_t)e->max_blocks;
        memcpy(row, table, (size_t)nb * sizeof(int32_t));
        if (e->tables_local) {
            slm_kv_seq_table_local(e->kv, r->seq, &table);
            memcpy(e->tables_local + (size_t)p * (size_t)e->max_blocks, table, (size_t)nb * sizeof(int32_t));
        }
        int t0 = t - r->n_computed;   /* batch row of position 0 */
        for (int i = 0; i < pl->n; i++, t++) {
            e->tokens[t] = r->tokens[r->n_computed + i];
            e->pos[t] = r->n_computed + i;
            e->seq_row[t] = p;
        }
        pl->host = n_host;
        for (int i = 0; i < pl->n_plp; i++) e->out_rows[n_dev + n_host++] = t0 + pl->plp_first + i;
        if (pl->dev >= 0) e->out_rows[pl->dev] = t - 1;
        else if (r->n_computed + pl->n == r->n_tokens) e->out_rows[n_dev + n_host++] = t - 1;
    }
    struct slm_batch b = {.n_tokens = nt, .tokens = e->tokens, .pos = e->pos, .seq_row = e->seq_row,
                          .block_tables = e->tables, .block_tables_local = e->tables_local, .max_blocks = e->max_blocks, .n_out = n_dev + n_host,
                          .out_rows = e->out_rows};
    lap(e, &tm->schedule_ns, &t_lap);
    pthread_mutex_unlock(&e->lock);   /* add() and cancel() may run meanwhile (see cancel) */
    rc = run_pass(e, &b, n_dev, n_host);
    pthread_mutex_lock(&e->lock);
    if (rc) return rc;
    lap(e, &tm->pass_ns, &t_lap);
    tm->steps += (uint64_t)e->timing;
    const size_t nv = (size_t)e->m->cfg.n_vocab;
    for (int p = 0; p < np; p++) {
        const struct plan *pl = &e->plan[p];
        struct req *r = pl->r;
        if (r->cancelled) continue;   /* during the pass, or by an earlier event's callback */
        rc = slm_kv_seq_commit(e->kv, r->seq, r->tokens + r->n_computed, pl->n);
        if (rc) return rc;
        lap(e, &tm->schedule_ns, &t_lap);
        if (pl->n_plp) {
            report_plp(e, pl, e->logits + (size_t)pl->host * nv, fn, ctx);
            lap(e, &tm->report_ns, &t_lap);
            if (r->cancelled) continue;   /* by that event's callback */
        }
        r->n_computed += pl->n;
        if (r->n_computed < r->n_tokens) {
            if (r->progress && !r->n_gen) {   /* a prompt's prefill, not a recomputation */
                struct slm_engine_event ev = {.token = -1, .n_prefilled = r->n_computed};
                report(e, pl->k, &ev, fn, ctx);
            }
            continue;
        }
        const float *row = pl->dev < 0 ? e->logits + (size_t)(pl->host + pl->n_plp) * nv : NULL;
        int32_t id;
        if (row) {
            id = slm_sampler_sample(r->sampler, row);
            e->n_sampled_host++;
        } else {
            id = e->sids[pl->dev];
            slm_sampler_set_rng(r->sampler, e->srows[pl->dev].rng);
            e->n_sampled_device++;
        }
        slm_sampler_accept(r->sampler, id);
        r->tokens[r->n_tokens++] = id;
        r->n_gen++;
        int is_stop = stops(e, r, id);
        enum slm_engine_finish why = is_stop ? SLM_ENGINE_FINISH_STOP
                              : r->n_gen >= r->max_tokens || r->n_tokens >= e->o.n_ctx ? SLM_ENGINE_FINISH_LENGTH
                                                                                         : SLM_ENGINE_FINISH_NONE;
        struct slm_logprob top[SLM_LOGPROBS_MAX];
        struct slm_engine_event ev = {.token = id};
        if (r->logprobs > 0 && row) {
            int nt2 = slm_logprobs_top(row, (int)nv, id, r->logprobs, &ev.logprob, top);
            ev.n_top = nt2 > 0 ? nt2 : 0;
            ev.top = top;
        } else if (r->logprobs > 0 && !isnan(e->slp[pl->dev])) {   /* NaN: the host's refusal, as above */
            ev.logprob = e->slp[pl->dev];
            ev.n_top = r->logprobs < (int)nv ? r->logprobs : (int)nv;
            ev.top = e->stop_lp + (size_t)pl->dev * SLM_LOGPROBS_MAX;
        }
        tm->rows += (uint64_t)e->timing;
        lap(e, &tm->sample_ns, &t_lap);
        char text[512 + 4 * SLM_STOP_MAX_LEN];
        ev.text_len = (int)emit_text(e, r, id, is_stop, &why, text, sizeof text);
        ev.text = text;
        ev.finish = why;
        lap(e, &tm->detok_ns, &t_lap);
        report(e, pl->k, &ev, fn, ctx);
        lap(e, &tm->report_ns, &t_lap);
    }
    compact(e);
    lap(e, &tm->schedule_ns, &t_lap);
    return e->n_reqs;
}

int slm_engine_step(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    pthread_mutex_lock(&e->lock);
    int rc = step_locked(e, fn, ctx);
    pthread_mutex_unlock(&e->lock);
    return rc;
}
