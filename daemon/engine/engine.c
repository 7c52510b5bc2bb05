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
#include <sched.h>
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
    int ended;              /* finished (its finish event due in this step's report, or reported):
                               not planned again */
    int reported;           /* its finish event reported: freed by the next sweep (no pass running) */
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
    struct req *r;          /* NULL once the entry has nothing left to report */
    int n;                  /* tokens fed this step */
    int plp_first, n_plp;   /* rows of prompt logprobs: positions plp_first .. plp_first + n_plp - 1 */
    int dev;                /* its row among the device-sampled ones, or -1 */
    int host;               /* its first row among the host rows (prompt logprobs, then its sample) */
    /* what collect() found for the report: */
    int n_prefilled;        /* > 0: a progress event of this many prompt tokens */
    int sampled;            /* a token was sampled: */
    int32_t id;
    int is_stop;            /* an end-of-generation or stop token */
    enum slm_engine_finish why;
};

/* A step's outputs: its plan and the rows its pass returned. Two when steps overlap: one is
 * reported while the pass of the other runs. */
struct step_buf {
    struct plan *plan;
    int np;
    float *logits;                 /* (max_out, n_vocab) host rows */
    int32_t *sids;                 /* (max_out) device-sampled ids */
    float *slp;                    /* (max_out) their logprobs */
    struct slm_logprob *stop_lp;   /* (max_out, SLM_LOGPROBS_MAX) */
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
    struct step_buf buf[2];  /* buf[1] only with o.overlap */
    int cur;                 /* the buf of the step being planned */
    int32_t *tokens, *pos, *seq_row, *tables, *out_rows;
    int32_t *tables_local;  /* (max_batch_tokens, max_blocks) with a local pool, else NULL */
    /* device sampling: on when the backend samples and o.host_sampling is 0 */
    int dev_sample;
    struct slm_sample_row *srows;  /* (max_out) */
    /* o.overlap: the pass runs on its own thread (pass_main) while the engine thread reports the
     * step before. Guarded by pmu; inflight (a pass launched, not yet joined) by lock. */
    pthread_t pass_thread;
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    int pass_state;                /* PASS_IDLE, PASS_GO, PASS_DONE, PASS_QUIT; written under pmu (atomic
                                      stores), read also without it (pass_await's polling) */
    int64_t pass_go_ns, pass_start_ns, pass_end_ns;   /* the launch, the pass's start and end */
    int pass_rc;
    struct slm_batch pass_batch;
    int pass_ndev, pass_nhost;
    int thread_init;
    int inflight;
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

enum { PASS_IDLE, PASS_GO, PASS_DONE, PASS_QUIT };
static void *pass_main(void *p);
static void pass_set(struct slm_engine *e, int state);

static void buf_free(struct step_buf *b)
{
    free(b->plan);
    free(b->logits);
    free(b->sids);
    free(b->slp);
    free(b->stop_lp);
}

void slm_engine_destroy(struct slm_engine **ep)
{
    struct slm_engine *e = *ep;
    if (!e) return;
    if (e->thread_init) {   /* waits for a pass still running, then stops the thread */
        pthread_mutex_lock(&e->pmu);
        while (e->pass_state == PASS_GO) pthread_cond_wait(&e->pcv, &e->pmu);
        pass_set(e, PASS_QUIT);
        pthread_mutex_unlock(&e->pmu);
        pthread_join(e->pass_thread, NULL);
        pthread_cond_destroy(&e->pcv);
        pthread_mutex_destroy(&e->pmu);
    }
    for (int i = 0; i < e->n_reqs; i++) req_free(e->reqs[i]);
    free(e->reqs);
    slm_forward_destroy(&e->fwd);
    slm_kvcache_destroy(&e->kv);
    if (e->pool.mem) e->m->be->ops->kv_free(e->m->be, &e->pool);
    if (e->pool_local.mem) e->m->be->ops->kv_free(e->m->be, &e->pool_local);
    free(e->tables_local);
    buf_free(&e->buf[0]);
    buf_free(&e->buf[1]);
    free(e->tokens);
    free(e->pos);
    free(e->seq_row);
    free(e->tables);
    free(e->out_rows);
    free(e->srows);
    free(e->sample_scratch);
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
    if (o->spin_us < 0 || o->spin_us > 1000000) {
        slm_err_set(err, "engine: spin_us %d is outside 0..1000000 microseconds", o->spin_us);
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
    e->dev_sample = m->be->ops->sample && !o->host_sampling;
    for (int i = 0; i < (o->overlap ? 2 : 1); i++) {
        struct step_buf *sb = &e->buf[i];
        size_t no = (size_t)e->max_out;
        sb->plan = malloc(nt * sizeof *sb->plan);
        sb->logits = malloc(no * (size_t)m->cfg.n_vocab * sizeof(float));
        if (!sb->plan || !sb->logits) goto oom;
        if (e->dev_sample) {
            sb->sids = malloc(no * sizeof *sb->sids);
            sb->slp = malloc(no * sizeof *sb->slp);
            sb->stop_lp = malloc(no * SLM_LOGPROBS_MAX * sizeof *sb->stop_lp);
            if (!sb->sids || !sb->slp || !sb->stop_lp) goto oom;
        }
    }
    e->tokens = malloc(nt * sizeof(int32_t));
    e->pos = malloc(nt * sizeof(int32_t));
    e->seq_row = malloc(nt * sizeof(int32_t));
    e->tables = malloc(nt * (size_t)e->max_blocks * sizeof(int32_t));
    if (e->pool.local && !(e->tables_local = malloc(nt * (size_t)e->max_blocks * sizeof(int32_t)))) goto oom;
    e->out_rows = malloc((size_t)e->max_out * sizeof(int32_t));
    e->sample_scratch = malloc(slm_sampler_scratch_bytes(m->cfg.n_vocab));
    if (!e->tokens || !e->pos || !e->seq_row || !e->tables || !e->out_rows || !e->sample_scratch) goto oom;
    if (e->dev_sample && !(e->srows = calloc((size_t)e->max_out, sizeof *e->srows))) goto oom;
    if (o->overlap) {
        if (pthread_mutex_init(&e->pmu, NULL)) goto oom;
        if (pthread_cond_init(&e->pcv, NULL)) {
            pthread_mutex_destroy(&e->pmu);
            goto oom;
        }
        if (pthread_create(&e->pass_thread, NULL, pass_main, e)) {
            pthread_cond_destroy(&e->pcv);
            pthread_mutex_destroy(&e->pmu);
            slm_err_set(err, "engine: cannot start the pass thread");
            goto fail;
        }
        e->thread_init = 1;
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
        if (r->id != id || r->cancelled || r->ended) continue;
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

/* Requests added whose finish event is not reported (or due in this step's report). */
static int unfinished(const struct slm_engine *e)
{
    int n = 0;
    for (int k = 0; k < e->n_reqs; k++) n += !e->reqs[k]->ended;
    return n;
}

void slm_engine_counts(struct slm_engine *e, struct slm_engine_counts *out)
{
    pthread_mutex_lock(&e->lock);
    out->unfinished = unfinished(e);
    out->waiting = 0;
    for (int k = 0; k < e->n_reqs; k++)
        out->waiting += e->reqs[k]->seq < 0 && !e->reqs[k]->cancelled && !e->reqs[k]->ended;
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
            if (e->reqs[i]->seq >= 0 && !e->reqs[i]->planned && !e->reqs[i]->ended) {
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
static int plan_step(struct slm_engine *e, struct plan *plan, int *n_plan, int *n_tok)
{
    int np = 0, nt = 0, budget = e->o.max_batch_tokens, plp_left = PLP_ROWS;
    /* Only the max_seqs best-ranked requests take part: a newly ranked request displaces
     * the worst running one at once (which keeps its blocks while they are not needed). */
    int n_cand = e->n_reqs < e->o.max_seqs ? e->n_reqs : e->o.max_seqs;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n_cand && np < e->o.max_seqs && nt < budget; k++) {
            struct req *r = e->reqs[k];
            int is_decode = r->seq >= 0 && r->n_tokens - r->n_computed == 1;
            if (r->cancelled || r->ended || (pass == 0) != is_decode) continue;
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
            plan[np++] = (struct plan){.r = r, .n = n, .plp_first = plp_first, .n_plp = n_plp, .dev = -1};
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

/* Reports ev for r. With ev->finish the request ends: it is freed (its blocks released) by the
 * next sweep, when no pass that may read it runs. */
static void report(struct slm_engine *e, struct req *r, struct slm_engine_event *ev, slm_engine_event_fn fn,
                   void *ctx)
{
    ev->id = r->id;
    ev->user = r->user;
    ev->n_prompt = r->n_prompt;
    ev->n_cached = r->n_cached;
    ev->n_generated = r->n_gen;
    if (fn) fn(ctx, ev);
    if (!ev->finish) return;
    r->ended = r->reported = 1;
}

/* Frees the requests whose finish was reported; only while no pass runs. */
static void sweep(struct slm_engine *e)
{
    int w = 0;
    for (int k = 0; k < e->n_reqs; k++) {
        struct req *r = e->reqs[k];
        if (r->reported) {
            if (r->seq >= 0) slm_kv_seq_release(e->kv, r->seq);
            req_free(r);
            continue;
        }
        e->reqs[w++] = r;
    }
    e->n_reqs = w;
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
    struct slm_engine_event ev = {.token = -1, .n_prompt_lp = pl->n_plp, .prompt_lp = lp, .prompt_lp_first = pl->plp_first + 1};
    report(e, r, &ev, fn, ctx);
}

/* Reports the cancelled requests' finish events. */
static void reap_cancelled(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    for (int k = 0; k < e->n_reqs; k++)
        if (e->reqs[k]->cancelled && !e->reqs[k]->reported) {
            struct slm_engine_event ev = {.token = -1, .finish = SLM_ENGINE_FINISH_CANCELLED};
            report(e, e->reqs[k], &ev, fn, ctx);
        }
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

/* The logits the step needs: host rows to sb->logits, device rows sampled into sb->sids. Runs
 * without the lock (the samplers are only touched by the engine thread, and not while a pass
 * runs). */
static int run_pass(struct slm_engine *e, const struct slm_batch *b, int n_dev, int n_host, struct step_buf *sb)
{
    int rc = slm_forward_run(e->fwd, &e->pool, b, NULL);
    if (!rc) rc = slm_forward_logits_to_host(e->fwd, n_dev, n_host, sb->logits);
    if (!rc && n_dev) {
        struct slm_backend *be = e->m->be;
        rc = be->ops->sample(be, slm_forward_logits(e->fwd), n_dev, e->m->cfg.n_vocab, e->srows, sb->sids, sb->slp,
                             sb->stop_lp);
    }
    return rc;
}

/* Sets the pass state and wakes a sleeping waiter; pmu held. The release store pairs with
 * pass_await's acquire load: what was written before (the batch, the pass's outputs) is seen by
 * a thread that polls the state without the lock. */
static void pass_set(struct slm_engine *e, int state)
{
    __atomic_store_n(&e->pass_state, state, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&e->pcv);
}

/* Waits, pmu held, until the pass state is a or b: first polling without the lock until
 * until_ns (o.spin_us: a short pass, or the next launch, comes without a wake-up), then asleep
 * on pcv. Returns the state. */
static int pass_await(struct slm_engine *e, int a, int b, int64_t until_ns)
{
    int st = e->pass_state;
    if (st != a && st != b && slm_mono_ns() < until_ns) {
        pthread_mutex_unlock(&e->pmu);
        do {
            for (int i = 0; i < 64; i++) {
                st = __atomic_load_n(&e->pass_state, __ATOMIC_ACQUIRE);
                if (st == a || st == b) break;
                slm_cpu_relax();
            }
            /* A core to itself, the yield returns at once; on a busy machine it lets the thread
             * this one waits for (or the pass's workers) have the core instead of a time slice. */
            if (st != a && st != b) sched_yield();
        } while (st != a && st != b && slm_mono_ns() < until_ns);
        pthread_mutex_lock(&e->pmu);
    }
    while ((st = e->pass_state) != a && st != b) pthread_cond_wait(&e->pcv, &e->pmu);
    return st;
}

/* o.overlap: runs each pass step_locked launches (PASS_GO), on this thread. */
static void *pass_main(void *p)
{
    struct slm_engine *e = p;
    const int64_t spin_ns = (int64_t)e->o.spin_us * 1000;
    pthread_mutex_lock(&e->pmu);
    for (;;) {
        if (pass_await(e, PASS_GO, PASS_QUIT, slm_mono_ns() + spin_ns) == PASS_QUIT) break;
        e->pass_start_ns = slm_mono_ns();
        pthread_mutex_unlock(&e->pmu);
        int rc = run_pass(e, &e->pass_batch, e->pass_ndev, e->pass_nhost, &e->buf[e->cur]);
        pthread_mutex_lock(&e->pmu);
        e->pass_rc = rc;
        e->pass_end_ns = slm_mono_ns();
        pass_set(e, PASS_DONE);
    }
    pthread_mutex_unlock(&e->pmu);
    return NULL;
}

/* Waits for the launched pass, with e->lock released meanwhile (add() and cancel() may run):
 * polling while it was launched less than o.spin_us ago, then asleep. */
static int join_pass(struct slm_engine *e)
{
    pthread_mutex_unlock(&e->lock);
    pthread_mutex_lock(&e->pmu);
    pass_await(e, PASS_DONE, PASS_DONE, e->pass_go_ns + (int64_t)e->o.spin_us * 1000);
    __atomic_store_n(&e->pass_state, PASS_IDLE, __ATOMIC_RELAXED);   /* the pass thread may be polling it */
    int rc = e->pass_rc;
    int64_t handoff = (e->pass_start_ns - e->pass_go_ns) + (slm_mono_ns() - e->pass_end_ns);
    pthread_mutex_unlock(&e->pmu);
    pthread_mutex_lock(&e->lock);
    e->inflight = 0;
    if (e->timing) e->tm.handoff_ns += (uint64_t)handoff;
    return rc;
}

/* Plans a step into e->buf[e->cur] and builds its batch in b; 0 with sb->np 0 when there is
 * nothing to run. */
static int plan_batch(struct slm_engine *e, struct slm_batch *b, int *n_dev_out, int *n_host_out)
{
    struct step_buf *sb = &e->buf[e->cur];
    sb->np = 0;
    if (!unfinished(e)) return 0;   /* (the cancelled ones were reported just before) */
    rank_requests(e);
    for (int k = 0; k < e->n_reqs; k++) e->reqs[k]->planned = 0;
    int np, nt;
    int rc = plan_step(e, sb->plan, &np, &nt);
    if (rc) return rc;
    if (np == 0) return -ENOSPC;   /* cannot happen when add() refuses what cannot fit */
    sb->np = np;
    /* Rows sampled on the device come first in the logits, then the host rows. */
    int n_dev = 0, n_host = 0, t = 0;
    for (int p = 0; p < np; p++) {
        struct plan *pl = &sb->plan[p];
        pl->dev = -1;
        if (e->dev_sample && pl->r->n_computed + pl->n == pl->r->n_tokens && !sample_row(pl->r, &e->srows[n_dev]))
            pl->dev = n_dev++;
    }
    for (int p = 0; p < np; p++) {
        struct plan *pl = &sb->plan[p];
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
    *b = (struct slm_batch){.n_tokens = nt, .tokens = e->tokens, .pos = e->pos, .seq_row = e->seq_row,
                            .block_tables = e->tables, .block_tables_local = e->tables_local, .max_blocks = e->max_blocks,
                            .n_out = n_dev + n_host, .out_rows = e->out_rows};
    *n_dev_out = n_dev;
    *n_host_out = n_host;
    return 0;
}

/* After sb's pass: commits its K/V, samples each finished row and decides what ends (end of
 * generation, stop tokens, length), everything the next plan depends on; the events wait for
 * report_step. Entries with nothing to report get r NULL. */
static int collect(struct slm_engine *e, struct step_buf *sb)
{
    const size_t nv = (size_t)e->m->cfg.n_vocab;
    for (int p = 0; p < sb->np; p++) {
        struct plan *pl = &sb->plan[p];
        struct req *r = pl->r;
        pl->n_prefilled = pl->sampled = 0;
        if (r->cancelled || r->ended) {   /* during the pass, or by an event of the step before */
            pl->r = NULL;
            continue;
        }
        int rc = slm_kv_seq_commit(e->kv, r->seq, r->tokens + r->n_computed, pl->n);
        if (rc) return rc;
        if (pl->n_plp) r->plp_next = pl->plp_first + pl->n_plp + 1;
        r->n_computed += pl->n;
        if (r->n_computed < r->n_tokens) {
            if (r->progress && !r->n_gen) pl->n_prefilled = r->n_computed;   /* a prompt's, not a recomputation */
            continue;
        }
        const float *row = pl->dev < 0 ? sb->logits + (size_t)(pl->host + pl->n_plp) * nv : NULL;
        int32_t id;
        if (row) {
            id = slm_sampler_sample(r->sampler, row);
            e->n_sampled_host++;
        } else {
            id = sb->sids[pl->dev];
            slm_sampler_set_rng(r->sampler, e->srows[pl->dev].rng);
            e->n_sampled_device++;
        }
        slm_sampler_accept(r->sampler, id);
        r->tokens[r->n_tokens++] = id;
        r->n_gen++;
        pl->sampled = 1;
        pl->id = id;
        pl->is_stop = stops(e, r, id);
        pl->why = pl->is_stop ? SLM_ENGINE_FINISH_STOP
                  : r->n_gen >= r->max_tokens || r->n_tokens >= e->o.n_ctx ? SLM_ENGINE_FINISH_LENGTH
                                                                           : SLM_ENGINE_FINISH_NONE;
        if (pl->why != SLM_ENGINE_FINISH_NONE) {   /* its blocks back before the next plan (no pass runs) */
            r->ended = 1;
            slm_kv_seq_release(e->kv, r->seq);
            r->seq = -1;
        }
        e->tm.rows += (uint64_t)e->timing;
    }
    return 0;
}

/* The events of sb's step, in plan order: prompt logprobs, progress, each token with its text
 * (a stop string may end the request here, after the next step was planned: then that step's
 * token for it is dropped). */
static void report_step(struct slm_engine *e, struct step_buf *sb, slm_engine_event_fn fn, void *ctx,
                        uint64_t *t_lap)
{
    struct slm_engine_timing *tm = &e->tm;
    const size_t nv = (size_t)e->m->cfg.n_vocab;
    for (int p = 0; p < sb->np; p++) {
        const struct plan *pl = &sb->plan[p];
        struct req *r = pl->r;
        if (!r || r->cancelled) continue;   /* by an earlier event's callback */
        if (pl->n_plp) {
            report_plp(e, pl, sb->logits + (size_t)pl->host * nv, fn, ctx);
            lap(e, &tm->report_ns, t_lap);
            if (r->cancelled) continue;   /* by that event's callback */
        }
        if (pl->n_prefilled) {
            struct slm_engine_event ev = {.token = -1, .n_prefilled = pl->n_prefilled};
            report(e, r, &ev, fn, ctx);
        }
        if (!pl->sampled) continue;
        const float *row = pl->dev < 0 ? sb->logits + (size_t)(pl->host + pl->n_plp) * nv : NULL;
        enum slm_engine_finish why = pl->why;
        struct slm_logprob top[SLM_LOGPROBS_MAX];
        struct slm_engine_event ev = {.token = pl->id};
        if (r->logprobs > 0 && row) {
            int nt2 = slm_logprobs_top(row, (int)nv, pl->id, r->logprobs, &ev.logprob, top);
            ev.n_top = nt2 > 0 ? nt2 : 0;
            ev.top = top;
        } else if (r->logprobs > 0 && !isnan(sb->slp[pl->dev])) {   /* NaN: the host's refusal, as above */
            ev.logprob = sb->slp[pl->dev];
            ev.n_top = r->logprobs < (int)nv ? r->logprobs : (int)nv;
            ev.top = sb->stop_lp + (size_t)pl->dev * SLM_LOGPROBS_MAX;
        }
        lap(e, &tm->sample_ns, t_lap);
        char text[512 + 4 * SLM_STOP_MAX_LEN];
        ev.text_len = (int)emit_text(e, r, pl->id, pl->is_stop, &why, text, sizeof text);
        ev.text = text;
        ev.finish = why;
        lap(e, &tm->detok_ns, t_lap);
        report(e, r, &ev, fn, ctx);
        lap(e, &tm->report_ns, t_lap);
    }
}

/* One step with e->lock held (released while waiting for a pass). Without o.overlap: plan, run
 * the pass, collect, report. With it, a call first joins the pass the call before launched and
 * collects it, then plans and launches the next pass, and reports the joined step while that
 * pass runs (docs/engine.md, "Overlapped steps"). */
static int step_locked(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    uint64_t t_lap = e->timing ? (uint64_t)slm_mono_ns() : 0;
    struct slm_engine_timing *tm = &e->tm;
    struct step_buf *done = NULL;   /* the step to report */
    int rc;
    if (e->inflight) {
        rc = join_pass(e);
        if (rc) return rc;
        lap(e, &tm->pass_ns, &t_lap);
        done = &e->buf[e->cur];
        rc = collect(e, done);
        if (rc) return rc;
        e->cur ^= 1;
        lap(e, &tm->sample_ns, &t_lap);
    }
    sweep(e);
    reap_cancelled(e, fn, ctx);
    struct slm_batch b;
    int n_dev = 0, n_host = 0;
    rc = plan_batch(e, &b, &n_dev, &n_host);
    if (rc) return rc;
    struct step_buf *sb = &e->buf[e->cur];
    lap(e, &tm->schedule_ns, &t_lap);
    if (sb->np && e->o.overlap) {
        pthread_mutex_lock(&e->pmu);
        e->pass_batch = b;
        e->pass_ndev = n_dev;
        e->pass_nhost = n_host;
        e->pass_go_ns = slm_mono_ns();
        pass_set(e, PASS_GO);
        pthread_mutex_unlock(&e->pmu);
        e->inflight = 1;
        tm->steps += (uint64_t)e->timing;
    } else if (sb->np) {
        pthread_mutex_unlock(&e->lock);   /* add() and cancel() may run meanwhile (see cancel) */
        rc = run_pass(e, &b, n_dev, n_host, sb);
        pthread_mutex_lock(&e->lock);
        if (rc) return rc;
        lap(e, &tm->pass_ns, &t_lap);
        tm->steps += (uint64_t)e->timing;
        rc = collect(e, sb);
        if (rc) return rc;
        lap(e, &tm->sample_ns, &t_lap);
        done = sb;
    }
    if (done) report_step(e, done, fn, ctx, &t_lap);
    if (!e->inflight) sweep(e);
    lap(e, &tm->schedule_ns, &t_lap);
    int left = unfinished(e);
    return left > 0 ? left : e->inflight;
}

int slm_engine_step(struct slm_engine *e, slm_engine_event_fn fn, void *ctx)
{
    pthread_mutex_lock(&e->lock);
    int rc = step_locked(e, fn, ctx);
    pthread_mutex_unlock(&e->lock);
    return rc;
}
