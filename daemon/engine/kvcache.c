/*
 * daemon/engine/kvcache.c - the paged KV cache's block manager (see kvcache.h).
 *
 * Each pool's blocks are kept in parallel arrays indexed by block id. The free list is a
 * stack; the LRU list is doubly linked (head = least recently released); the hash table
 * chains registered blocks through hash_next, buckets a power of two. A windowed manager has
 * two such pools, the global one and the local one, with the same bookkeeping each; a
 * sequence has one table per pool, indexed alike (table index i holds positions
 * i * block_size ..), the local one -1 below local_first.
 */
#include "daemon/engine/kvcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"

struct kv_seq {
    int live;
    int n_tokens;           /* committed tokens */
    int n_table, cap_table; /* entries in each table, allocated length of each */
    int32_t *table;         /* (cap_table) global pool block ids */
    int32_t *local;         /* (cap_table) local pool block ids, -1 below local_first; NULL without one */
    int local_first;        /* first local entry still held: max(0, n_tokens - window + 1) / block_size */
    uint64_t last_hash;     /* chained hash of the last full block; 0 before the first */
};

struct kv_pool {
    int n_blocks;
    int32_t *refcount;      /* (n_blocks) */
    uint8_t *registered;    /* (n_blocks) in the hash table */
    uint64_t *hash;         /* (n_blocks) h_i of a registered block */
    uint64_t *parent_hash;  /* (n_blocks) h_{i-1} of a registered block */
    int32_t *tokens;        /* (n_blocks, block_size) token ids written to each block */
    int32_t *hash_next;     /* (n_blocks) next block in the same bucket, -1 ends */
    int32_t *lru_prev, *lru_next;   /* (n_blocks) -1 ends */
    int32_t *free_stack;    /* (n_blocks) */
    int32_t *buckets;       /* (n_buckets) first block of each chain, -1 if none */
    int n_buckets, n_free, n_used, n_cached;
    int lru_head, lru_tail;
    uint64_t n_evicted;
};

struct slm_kvcache {
    int block_size;
    int window;             /* > 0: pools[SLM_KV_LOCAL] holds the sliding-window layers' blocks */
    int n_pools;            /* 1, or 2 with a window */
    struct kv_pool pools[2];
    uint64_t hash_mask;
    struct kv_seq *seqs;
    int n_seqs;             /* allocated length of seqs */
};

static void pool_free(struct kv_pool *p)
{
    free(p->refcount);
    free(p->registered);
    free(p->hash);
    free(p->parent_hash);
    free(p->tokens);
    free(p->hash_next);
    free(p->lru_prev);
    free(p->lru_next);
    free(p->free_stack);
    free(p->buckets);
    memset(p, 0, sizeof *p);
}

static int pool_init(struct kv_pool *p, int n_blocks, int block_size)
{
    p->n_blocks = n_blocks;
    p->n_buckets = 1;
    while (p->n_buckets < 2 * n_blocks) p->n_buckets *= 2;
    size_t nb = (size_t)n_blocks;
    p->refcount = calloc(nb, sizeof(int32_t));
    p->registered = calloc(nb, 1);
    p->hash = calloc(nb, sizeof(uint64_t));
    p->parent_hash = calloc(nb, sizeof(uint64_t));
    p->tokens = calloc(nb * (size_t)block_size, sizeof(int32_t));
    p->hash_next = malloc(nb * sizeof(int32_t));
    p->lru_prev = malloc(nb * sizeof(int32_t));
    p->lru_next = malloc(nb * sizeof(int32_t));
    p->free_stack = malloc(nb * sizeof(int32_t));
    p->buckets = malloc((size_t)p->n_buckets * sizeof(int32_t));
    if (!p->refcount || !p->registered || !p->hash || !p->parent_hash || !p->tokens || !p->hash_next ||
        !p->lru_prev || !p->lru_next || !p->free_stack || !p->buckets)
        return -ENOMEM;
    for (int i = 0; i < n_blocks; i++) {
        p->hash_next[i] = p->lru_prev[i] = p->lru_next[i] = -1;
        p->free_stack[i] = n_blocks - 1 - i;   /* block 0 is popped first */
    }
    for (int i = 0; i < p->n_buckets; i++) p->buckets[i] = -1;
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = -1;
    return 0;
}

struct slm_kvcache *slm_kvcache_create_windowed(int n_blocks, int n_local_blocks, int window, int block_size,
                                                char *err)
{
    if (n_blocks < 1 || block_size < 1 || n_blocks > (1 << 28) || block_size > (1 << 16) || n_local_blocks < 0 ||
        n_local_blocks > (1 << 28) || window < 0 || (window > 0) != (n_local_blocks > 0)) {
        if (err)
            snprintf(err, SLM_ERR_LEN, "kv cache: bad geometry %d blocks (%d local, window %d) of %d tokens",
                     n_blocks, n_local_blocks, window, block_size);
        return NULL;
    }
    struct slm_kvcache *m = calloc(1, sizeof(*m));
    if (!m) goto oom;
    m->block_size = block_size;
    m->window = window;
    m->n_pools = window > 0 ? 2 : 1;
    m->hash_mask = ~(uint64_t)0;
    if (pool_init(&m->pools[SLM_KV_GLOBAL], n_blocks, block_size)) goto oom;
    if (window > 0 && pool_init(&m->pools[SLM_KV_LOCAL], n_local_blocks, block_size)) goto oom;
    return m;
oom:
    if (err) snprintf(err, SLM_ERR_LEN, "kv cache: out of memory for %d blocks", n_blocks + n_local_blocks);
    slm_kvcache_destroy(&m);
    return NULL;
}

struct slm_kvcache *slm_kvcache_create(int n_blocks, int block_size, char *err)
{
    return slm_kvcache_create_windowed(n_blocks, 0, 0, block_size, err);
}

void slm_kvcache_destroy(struct slm_kvcache **mgr)
{
    struct slm_kvcache *m = mgr ? *mgr : NULL;
    if (!m) return;
    for (int s = 0; s < m->n_seqs; s++) {
        free(m->seqs[s].table);
        free(m->seqs[s].local);
    }
    free(m->seqs);
    pool_free(&m->pools[0]);
    pool_free(&m->pools[1]);
    free(m);
    *mgr = NULL;
}

int slm_kvcache_block_size(const struct slm_kvcache *mgr) { return mgr->block_size; }
int slm_kvcache_window(const struct slm_kvcache *mgr) { return mgr->window; }
int slm_kvcache_n_blocks(const struct slm_kvcache *mgr) { return mgr->pools[0].n_blocks; }
int slm_kvcache_n_available(const struct slm_kvcache *mgr) { return mgr->pools[0].n_free + mgr->pools[0].n_cached; }
int slm_kvcache_n_free(const struct slm_kvcache *mgr) { return mgr->pools[0].n_free; }
int slm_kvcache_n_used(const struct slm_kvcache *mgr) { return mgr->pools[0].n_used; }
int slm_kvcache_n_cached(const struct slm_kvcache *mgr) { return mgr->pools[0].n_cached; }
uint64_t slm_kvcache_n_evicted(const struct slm_kvcache *mgr) { return mgr->pools[0].n_evicted; }

int slm_kvcache_counts(const struct slm_kvcache *mgr, int pool, struct slm_kv_counts *out)
{
    if (pool < 0 || pool >= mgr->n_pools || !out) return -EINVAL;
    const struct kv_pool *p = &mgr->pools[pool];
    *out = (struct slm_kv_counts){.n_blocks = p->n_blocks, .n_free = p->n_free, .n_used = p->n_used,
                                  .n_cached = p->n_cached, .n_evicted = p->n_evicted};
    return 0;
}

void slm_kvcache_set_hash_mask(struct slm_kvcache *mgr, uint64_t mask) { mgr->hash_mask = mask; }

/* ---- lists and the hash table ---------------------------------------------------------- */

static void lru_unlink(struct kv_pool *p, int b)
{
    int pv = p->lru_prev[b], n = p->lru_next[b];
    if (pv >= 0) p->lru_next[pv] = n; else p->lru_head = n;
    if (n >= 0) p->lru_prev[n] = pv; else p->lru_tail = pv;
    p->lru_prev[b] = p->lru_next[b] = -1;
    p->n_cached--;
}

static void lru_push_tail(struct kv_pool *p, int b)
{
    p->lru_prev[b] = p->lru_tail;
    p->lru_next[b] = -1;
    if (p->lru_tail >= 0) p->lru_next[p->lru_tail] = b; else p->lru_head = b;
    p->lru_tail = b;
    p->n_cached++;
}

static int bucket_of(const struct kv_pool *p, uint64_t h)
{
    return (int)((h ^ (h >> 32)) & (uint64_t)(p->n_buckets - 1));
}

static const int32_t *block_tokens(const struct slm_kvcache *m, const struct kv_pool *p, int b)
{
    return p->tokens + (size_t)b * (size_t)m->block_size;
}

/* The registered block of p with key (h, parent, toks), or -1. */
static int table_find(const struct slm_kvcache *m, const struct kv_pool *p, uint64_t h, uint64_t parent,
                      const int32_t *toks)
{
    for (int b = p->buckets[bucket_of(p, h)]; b >= 0; b = p->hash_next[b])
        if (p->hash[b] == h && p->parent_hash[b] == parent &&
            !memcmp(block_tokens(m, p, b), toks, (size_t)m->block_size * sizeof(int32_t)))
            return b;
    return -1;
}

static void table_remove(struct kv_pool *p, int b)
{
    int32_t *link = &p->buckets[bucket_of(p, p->hash[b])];
    while (*link != b) link = &p->hash_next[*link];
    *link = p->hash_next[b];
    p->hash_next[b] = -1;
    p->registered[b] = 0;
}

/* Registers the full block b of p under (h, parent) unless that key is registered already
 * (then b stays private and is freed on release). */
static void table_register(const struct slm_kvcache *m, struct kv_pool *p, int b, uint64_t h, uint64_t parent)
{
    if (table_find(m, p, h, parent, block_tokens(m, p, b)) >= 0) return;
    int k = bucket_of(p, h);
    p->hash[b] = h;
    p->parent_hash[b] = parent;
    p->hash_next[b] = p->buckets[k];
    p->buckets[k] = b;
    p->registered[b] = 1;
}

static uint64_t chain_hash(const struct slm_kvcache *m, const int32_t *toks, uint64_t parent)
{
    return XXH3_64bits_withSeed(toks, (size_t)m->block_size * sizeof(int32_t), parent) & m->hash_mask;
}

/* Takes one block of p for a table: from the free list, else by evicting the LRU head.
 * The caller has checked that one is available. */
static int take_block(struct kv_pool *p)
{
    int b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else {
        b = p->lru_head;
        lru_unlink(p, b);
        table_remove(p, b);
        p->n_evicted++;
    }
    p->refcount[b] = 1;
    p->n_used++;
    return b;
}

/* One more reference to the registered block b (a prefix match): off the LRU list if it was on it. */
static void add_ref(struct kv_pool *p, int b)
{
    if (p->refcount[b] == 0) {
        lru_unlink(p, b);
        p->n_used++;
    }
    p->refcount[b]++;
}

static void drop_ref(struct kv_pool *p, int b)
{
    if (--p->refcount[b] > 0) return;
    p->n_used--;
    if (p->registered[b]) lru_push_tail(p, b);
    else p->free_stack[p->n_free++] = b;
}

/* ---- sequences -------------------------------------------------------------------------- */

static struct kv_seq *seq_get(const struct slm_kvcache *m, int seq)
{
    if (seq < 0 || seq >= m->n_seqs || !m->seqs[seq].live) return NULL;
    return &m->seqs[seq];
}

static int table_grow(const struct slm_kvcache *m, struct kv_seq *s, int n_table)
{
    if (n_table <= s->cap_table) return 0;
    int cap = s->cap_table ? s->cap_table : 4;
    while (cap < n_table) cap *= 2;
    int32_t *t = realloc(s->table, (size_t)cap * sizeof(int32_t));
    if (!t) return -ENOMEM;
    s->table = t;
    if (m->window > 0) {
        int32_t *l = realloc(s->local, (size_t)cap * sizeof(int32_t));
        if (!l) return -ENOMEM;   /* table grew: harmless, cap_table is the smaller length */
        s->local = l;
    }
    s->cap_table = cap;
    return 0;
}

/* The first table entry a sequence of n_tokens committed tokens still needs in the local pool:
 * positions below n_tokens - window + 1 are before every future token's window. */
static int local_first_of(const struct slm_kvcache *m, int n_tokens)
{
    int keep = n_tokens - m->window + 1;
    return keep > 0 ? keep / m->block_size : 0;
}

/* Releases the sequence's local blocks that lie wholly before every future token's window. */
static void slide_window(struct slm_kvcache *m, struct kv_seq *s)
{
    if (m->window <= 0) return;
    int first = local_first_of(m, s->n_tokens);
    for (; s->local_first < first; s->local_first++) {
        drop_ref(&m->pools[SLM_KV_LOCAL], s->local[s->local_first]);
        s->local[s->local_first] = -1;
    }
}

int slm_kv_seq_create(struct slm_kvcache *mgr)
{
    int s = 0;
    while (s < mgr->n_seqs && mgr->seqs[s].live) s++;
    if (s == mgr->n_seqs) {
        int n = mgr->n_seqs ? 2 * mgr->n_seqs : 16;
        struct kv_seq *seqs = realloc(mgr->seqs, (size_t)n * sizeof(*seqs));
        if (!seqs) return -ENOMEM;
        memset(seqs + mgr->n_seqs, 0, (size_t)(n - mgr->n_seqs) * sizeof(*seqs));
        mgr->seqs = seqs;
        mgr->n_seqs = n;
    }
    struct kv_seq *q = &mgr->seqs[s];
    q->live = 1;
    q->n_tokens = 0;
    q->n_table = 0;
    q->local_first = 0;
    q->last_hash = 0;
    return s;
}

int slm_kv_seq_release(struct slm_kvcache *mgr, int seq)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s) return -EINVAL;
    for (int i = s->n_table - 1; i >= 0; i--) drop_ref(&mgr->pools[SLM_KV_GLOBAL], s->table[i]);
    if (mgr->window > 0)
        for (int i = s->n_table - 1; i >= s->local_first; i--) drop_ref(&mgr->pools[SLM_KV_LOCAL], s->local[i]);
    s->live = 0;
    s->n_table = 0;
    s->n_tokens = 0;
    s->local_first = 0;
    return 0;
}

int slm_kv_seq_match_prefix(struct slm_kvcache *mgr, int seq, const int32_t *prompt, int n_prompt)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s || s->n_table || s->n_tokens || n_prompt < 0) return -EINVAL;
    if (n_prompt == 0) return 0;
    int bs = mgr->block_size, max_blocks = (n_prompt - 1) / bs;
    if (table_grow(mgr, s, max_blocks)) return 0;   /* no memory to share: compute it all */
    struct kv_pool *g = &mgr->pools[SLM_KV_GLOBAL], *l = &mgr->pools[SLM_KV_LOCAL];
    /* The global chain, block by block; with a window also the local block of each index, and
     * the longest n whose window (local entries local_first_of(n * bs) .. n - 1) is all cached:
     * the match is cut back to that n (vLLM's sliding-window prefix caching). */
    uint64_t h_prev = 0, h_best = 0;
    int n = 0, best = 0, last_miss = -1;
    for (; n < max_blocks; n++) {
        const int32_t *toks = prompt + (size_t)n * (size_t)bs;
        uint64_t h = chain_hash(mgr, toks, h_prev);
        int b = table_find(mgr, g, h, h_prev, toks);
        if (b < 0) break;
        s->table[n] = b;
        if (mgr->window > 0) {
            s->local[n] = table_find(mgr, l, h, h_prev, toks);
            if (s->local[n] < 0) last_miss = n;
        }
        h_prev = h;
        if (last_miss < local_first_of(mgr, (n + 1) * bs)) {
            best = n + 1;
            h_best = h;
        }
    }
    for (int i = 0; i < best; i++) add_ref(g, s->table[i]);
    s->local_first = 0;
    if (mgr->window > 0) {
        s->local_first = local_first_of(mgr, best * bs);
        for (int i = 0; i < best; i++) {
            if (i < s->local_first) s->local[i] = -1;
            else add_ref(l, s->local[i]);
        }
    }
    s->n_table = best;
    s->n_tokens = best * bs;
    s->last_hash = h_best;
    return best * bs;
}

int slm_kv_seq_blocks_needed(const struct slm_kvcache *mgr, int seq, int n)
{
    const struct kv_seq *s = seq_get(mgr, seq);
    if (!s || n < 0) return -EINVAL;
    long long want = ((long long)s->n_tokens + n + mgr->block_size - 1) / mgr->block_size - s->n_table;
    if (want <= 0) return 0;
    int most = mgr->pools[0].n_blocks > mgr->pools[1].n_blocks ? mgr->pools[0].n_blocks : mgr->pools[1].n_blocks;
    return want > (long long)most + 1 ? most + 1 : (int)want;
}

int slm_kv_seq_reserve(struct slm_kvcache *mgr, int seq, int n)
{
    int need = slm_kv_seq_blocks_needed(mgr, seq, n);
    if (need <= 0) return need;
    for (int p = 0; p < mgr->n_pools; p++)
        if (need > mgr->pools[p].n_free + mgr->pools[p].n_cached) return -ENOSPC;
    struct kv_seq *s = &mgr->seqs[seq];
    if (table_grow(mgr, s, s->n_table + need)) return -ENOMEM;
    for (int i = 0; i < need; i++, s->n_table++) {
        s->table[s->n_table] = take_block(&mgr->pools[SLM_KV_GLOBAL]);
        if (mgr->window > 0) s->local[s->n_table] = take_block(&mgr->pools[SLM_KV_LOCAL]);
    }
    return 0;
}

int slm_kv_seq_commit(struct slm_kvcache *mgr, int seq, const int32_t *tokens, int n)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s || n < 0) return -EINVAL;
    int bs = mgr->block_size;
    if ((long long)s->n_tokens + n > (long long)s->n_table * bs) return -ENOSPC;
    struct kv_pool *g = &mgr->pools[SLM_KV_GLOBAL], *l = &mgr->pools[SLM_KV_LOCAL];
    for (int i = 0; i < n; i++) {
        int k = s->n_tokens / bs, slot = s->n_tokens % bs, b = s->table[k];
        g->tokens[(size_t)b * (size_t)bs + (size_t)slot] = tokens[i];
        /* the block being filled is in the window of the token filling it: held */
        if (mgr->window > 0) l->tokens[(size_t)s->local[k] * (size_t)bs + (size_t)slot] = tokens[i];
        s->n_tokens++;
        if (slot != bs - 1) continue;
        uint64_t h = chain_hash(mgr, block_tokens(mgr, g, b), s->last_hash);
        table_register(mgr, g, b, h, s->last_hash);
        if (mgr->window > 0) table_register(mgr, l, s->local[k], h, s->last_hash);
        s->last_hash = h;
    }
    slide_window(mgr, s);
    return 0;
}

int slm_kv_seq_n_tokens(const struct slm_kvcache *mgr, int seq)
{
    const struct kv_seq *s = seq_get(mgr, seq);
    return s ? s->n_tokens : -EINVAL;
}

int slm_kv_seq_table(const struct slm_kvcache *mgr, int seq, const int32_t **blocks)
{
    const struct kv_seq *s = seq_get(mgr, seq);
    if (!s) return -EINVAL;
    *blocks = s->table;
    return s->n_table;
}

int slm_kv_seq_table_local(const struct slm_kvcache *mgr, int seq, const int32_t **blocks)
{
    const struct kv_seq *s = seq_get(mgr, seq);
    if (!s || mgr->window <= 0) return -EINVAL;
    *blocks = s->local;
    return s->n_table;
}

/* ---- invariants --------------------------------------------------------------------------- */

#define FAIL(...)                                                             \
    do {                                                                      \
        if (err) snprintf(err, SLM_ERR_LEN, __VA_ARGS__);                     \
        rc = -EUCLEAN;                                                        \
        goto out;                                                             \
    } while (0)

/* The invariants of pool `which` (the tables' entries counted from the sequences). */
static int check_pool(const struct slm_kvcache *m, int which, char *err)
{
    const struct kv_pool *p = &m->pools[which];
    const char *name = which == SLM_KV_LOCAL ? "local pool: " : "";
    int rc = 0, nb = p->n_blocks;
    /* state: 1 free, 2 on the LRU list; refs: references counted from the tables */
    uint8_t *state = calloc((size_t)nb, 1);
    int32_t *refs = calloc((size_t)nb, sizeof(int32_t));
    if (!state || !refs) FAIL("kv check: out of memory");
    if (p->n_free < 0 || p->n_free > nb) FAIL("%sn_free %d out of range", name, p->n_free);
    for (int i = 0; i < p->n_free; i++) {
        int b = p->free_stack[i];
        if (b < 0 || b >= nb || state[b]) FAIL("%sfree list entry %d: bad or repeated block %d", name, i, b);
        state[b] = 1;
        if (p->registered[b]) FAIL("%sfree block %d is registered", name, b);
    }
    int n_lru = 0, prev = -1;
    for (int b = p->lru_head; b >= 0; prev = b, b = p->lru_next[b]) {
        if (b >= nb || state[b] || n_lru >= nb) FAIL("%sLRU list: bad, repeated or free block %d", name, b);
        if (p->lru_prev[b] != prev) FAIL("%sLRU list: block %d prev %d, expected %d", name, b, p->lru_prev[b], prev);
        if (!p->registered[b]) FAIL("%sLRU block %d is not registered", name, b);
        state[b] = 2;
        n_lru++;
    }
    if (p->lru_tail != prev) FAIL("%sLRU tail %d, expected %d", name, p->lru_tail, prev);
    if (n_lru != p->n_cached) FAIL("%sn_cached %d, LRU list holds %d", name, p->n_cached, n_lru);
    for (int s = 0; s < m->n_seqs; s++) {
        const struct kv_seq *q = &m->seqs[s];
        if (!q->live) continue;
        if (q->n_tokens < 0 || q->n_tokens > q->n_table * m->block_size)
            FAIL("seq %d: %d tokens in %d blocks", s, q->n_tokens, q->n_table);
        const int32_t *t = which == SLM_KV_LOCAL ? q->local : q->table;
        int first = which == SLM_KV_LOCAL ? q->local_first : 0;
        if (which == SLM_KV_LOCAL && first != local_first_of(m, q->n_tokens))
            FAIL("seq %d: local table held from %d, the window of %d tokens says %d", s, first, q->n_tokens,
                 local_first_of(m, q->n_tokens));
        for (int i = 0; i < q->n_table; i++) {
            int b = t[i];
            if (i < first) {
                if (b != -1) FAIL("seq %d: released local table[%d] = %d, expected -1", s, i, b);
                continue;
            }
            if (b < 0 || b >= nb) FAIL("%sseq %d: table[%d] = %d out of range", name, s, i, b);
            refs[b]++;
        }
    }
    int n_used = 0, n_registered = 0;
    for (int b = 0; b < nb; b++) {
        if (p->refcount[b] != refs[b])
            FAIL("%sblock %d: refcount %d, held by %d tables", name, b, p->refcount[b], refs[b]);
        if ((refs[b] > 0) + (state[b] != 0) != 1)
            FAIL("%sblock %d: refs %d, state %d: not exactly one state", name, b, refs[b], state[b]);
        n_used += refs[b] > 0;
        n_registered += p->registered[b];
    }
    if (n_used != p->n_used) FAIL("%sn_used %d, counted %d", name, p->n_used, n_used);
    if (p->n_free + p->n_used + p->n_cached != nb)
        FAIL("%sfree %d + used %d + cached %d != %d blocks", name, p->n_free, p->n_used, p->n_cached, nb);
    int n_chained = 0;
    for (int k = 0; k < p->n_buckets; k++) {
        for (int b = p->buckets[k]; b >= 0; b = p->hash_next[b]) {
            if (b >= nb || !p->registered[b] || n_chained >= nb)
                FAIL("%sbucket %d: bad or unregistered block %d", name, k, b);
            if (bucket_of(p, p->hash[b]) != k)
                FAIL("%sblock %d in bucket %d, hash says %d", name, b, k, bucket_of(p, p->hash[b]));
            if (table_find(m, p, p->hash[b], p->parent_hash[b], block_tokens(m, p, b)) != b)
                FAIL("%sblock %d: its key is registered twice", name, b);
            if (chain_hash(m, block_tokens(m, p, b), p->parent_hash[b]) != p->hash[b])
                FAIL("%sblock %d: hash does not match its tokens", name, b);
            n_chained++;
        }
    }
    if (n_chained != n_registered) FAIL("%s%d blocks registered, %d in the hash table", name, n_registered, n_chained);
out:
    free(state);
    free(refs);
    return rc;
}

int slm_kv_check(const struct slm_kvcache *m, char *err)
{
    for (int p = 0; p < m->n_pools; p++) {
        int rc = check_pool(m, p, err);
        if (rc) return rc;
    }
    return 0;
}
