/*
 * daemon/engine/kvcache.c - the paged KV cache's block manager (see kvcache.h).
 *
 * Blocks are kept in parallel arrays indexed by block id. The free list is a stack; the
 * LRU list is doubly linked (head = least recently released); the hash table chains
 * registered blocks through hash_next, buckets a power of two.
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
    int n_table, cap_table; /* blocks in table, allocated length of table */
    int32_t *table;         /* (cap_table) block ids */
    uint64_t last_hash;     /* chained hash of the last full block; 0 before the first */
};

struct slm_kvcache {
    int n_blocks, block_size;
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
    uint64_t n_evicted, hash_mask;
    struct kv_seq *seqs;
    int n_seqs;             /* allocated length of seqs */
};

struct slm_kvcache *slm_kvcache_create(int n_blocks, int block_size, char *err)
{
    if (n_blocks < 1 || block_size < 1 || n_blocks > (1 << 28) || block_size > (1 << 16)) {
        if (err) snprintf(err, SLM_ERR_LEN, "kv cache: bad geometry %d blocks of %d tokens", n_blocks, block_size);
        return NULL;
    }
    struct slm_kvcache *m = calloc(1, sizeof(*m));
    if (!m) goto oom;
    m->n_blocks = n_blocks;
    m->block_size = block_size;
    m->n_buckets = 1;
    while (m->n_buckets < 2 * n_blocks) m->n_buckets *= 2;
    size_t nb = (size_t)n_blocks;
    m->refcount = calloc(nb, sizeof(int32_t));
    m->registered = calloc(nb, 1);
    m->hash = calloc(nb, sizeof(uint64_t));
    m->parent_hash = calloc(nb, sizeof(uint64_t));
    m->tokens = calloc(nb * (size_t)block_size, sizeof(int32_t));
    m->hash_next = malloc(nb * sizeof(int32_t));
    m->lru_prev = malloc(nb * sizeof(int32_t));
    m->lru_next = malloc(nb * sizeof(int32_t));
    m->free_stack = malloc(nb * sizeof(int32_t));
    m->buckets = malloc((size_t)m->n_buckets * sizeof(int32_t));
    if (!m->refcount || !m->registered || !m->hash || !m->parent_hash || !m->tokens || !m->hash_next ||
        !m->lru_prev || !m->lru_next || !m->free_stack || !m->buckets)
        goto oom;
    for (int i = 0; i < n_blocks; i++) {
        m->hash_next[i] = m->lru_prev[i] = m->lru_next[i] = -1;
        m->free_stack[i] = n_blocks - 1 - i;   /* block 0 is popped first */
    }
    for (int i = 0; i < m->n_buckets; i++) m->buckets[i] = -1;
    m->n_free = n_blocks;
    m->lru_head = m->lru_tail = -1;
    m->hash_mask = ~(uint64_t)0;
    return m;
oom:
    if (err) snprintf(err, SLM_ERR_LEN, "kv cache: out of memory for %d blocks", n_blocks);
    slm_kvcache_destroy(&m);
    return NULL;
}

void slm_kvcache_destroy(struct slm_kvcache **mgr)
{
    struct slm_kvcache *m = mgr ? *mgr : NULL;
    if (!m) return;
    for (int s = 0; s < m->n_seqs; s++) free(m->seqs[s].table);
    free(m->seqs);
    free(m->refcount);
    free(m->registered);
    free(m->hash);
    free(m->parent_hash);
    free(m->tokens);
    free(m->hash_next);
    free(m->lru_prev);
    free(m->lru_next);
    free(m->free_stack);
    free(m->buckets);
    free(m);
    *mgr = NULL;
}

int slm_kvcache_block_size(const struct slm_kvcache *mgr) { return mgr->block_size; }
int slm_kvcache_n_blocks(const struct slm_kvcache *mgr) { return mgr->n_blocks; }
int slm_kvcache_n_available(const struct slm_kvcache *mgr) { return mgr->n_free + mgr->n_cached; }
int slm_kvcache_n_free(const struct slm_kvcache *mgr) { return mgr->n_free; }
int slm_kvcache_n_used(const struct slm_kvcache *mgr) { return mgr->n_used; }
int slm_kvcache_n_cached(const struct slm_kvcache *mgr) { return mgr->n_cached; }
uint64_t slm_kvcache_n_evicted(const struct slm_kvcache *mgr) { return mgr->n_evicted; }

void slm_kvcache_set_hash_mask(struct slm_kvcache *mgr, uint64_t mask) { mgr->hash_mask = mask; }

/* ---- lists and the hash table ---------------------------------------------------------- */

static void lru_unlink(struct slm_kvcache *m, int b)
{
    int p = m->lru_prev[b], n = m->lru_next[b];
    if (p >= 0) m->lru_next[p] = n; else m->lru_head = n;
    if (n >= 0) m->lru_prev[n] = p; else m->lru_tail = p;
    m->lru_prev[b] = m->lru_next[b] = -1;
    m->n_cached--;
}

static void lru_push_tail(struct slm_kvcache *m, int b)
{
    m->lru_prev[b] = m->lru_tail;
    m->lru_next[b] = -1;
    if (m->lru_tail >= 0) m->lru_next[m->lru_tail] = b; else m->lru_head = b;
    m->lru_tail = b;
    m->n_cached++;
}

static int bucket_of(const struct slm_kvcache *m, uint64_t h)
{
    return (int)((h ^ (h >> 32)) & (uint64_t)(m->n_buckets - 1));
}

static const int32_t *block_tokens(const struct slm_kvcache *m, int b)
{
    return m->tokens + (size_t)b * (size_t)m->block_size;
}

/* The registered block with key (h, parent, toks), or -1. */
static int table_find(const struct slm_kvcache *m, uint64_t h, uint64_t parent, const int32_t *toks)
{
    for (int b = m->buckets[bucket_of(m, h)]; b >= 0; b = m->hash_next[b])
        if (m->hash[b] == h && m->parent_hash[b] == parent &&
            !memcmp(block_tokens(m, b), toks, (size_t)m->block_size * sizeof(int32_t)))
            return b;
    return -1;
}

static void table_remove(struct slm_kvcache *m, int b)
{
    int32_t *link = &m->buckets[bucket_of(m, m->hash[b])];
    while (*link != b) link = &m->hash_next[*link];
    *link = m->hash_next[b];
    m->hash_next[b] = -1;
    m->registered[b] = 0;
}

static uint64_t chain_hash(const struct slm_kvcache *m, const int32_t *toks, uint64_t parent)
{
    return XXH3_64bits_withSeed(toks, (size_t)m->block_size * sizeof(int32_t), parent) & m->hash_mask;
}

/* Takes one block for a table: from the free list, else by evicting the LRU head.
 * The caller has checked that one is available. */
static int take_block(struct slm_kvcache *m)
{
    int b;
    if (m->n_free > 0) {
        b = m->free_stack[--m->n_free];
    } else {
        b = m->lru_head;
        lru_unlink(m, b);
        table_remove(m, b);
        m->n_evicted++;
    }
    m->refcount[b] = 1;
    m->n_used++;
    return b;
}

static void drop_ref(struct slm_kvcache *m, int b)
{
    if (--m->refcount[b] > 0) return;
    m->n_used--;
    if (m->registered[b]) lru_push_tail(m, b);
    else m->free_stack[m->n_free++] = b;
}

/* ---- sequences -------------------------------------------------------------------------- */

static struct kv_seq *seq_get(const struct slm_kvcache *m, int seq)
{
    if (seq < 0 || seq >= m->n_seqs || !m->seqs[seq].live) return NULL;
    return &m->seqs[seq];
}

static int table_grow(struct kv_seq *s, int n_table)
{
    if (n_table <= s->cap_table) return 0;
    int cap = s->cap_table ? s->cap_table : 4;
    while (cap < n_table) cap *= 2;
    int32_t *t = realloc(s->table, (size_t)cap * sizeof(int32_t));
    if (!t) return -ENOMEM;
    s->table = t;
    s->cap_table = cap;
    return 0;
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
    q->last_hash = 0;
    return s;
}

int slm_kv_seq_release(struct slm_kvcache *mgr, int seq)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s) return -EINVAL;
    for (int i = s->n_table - 1; i >= 0; i--) drop_ref(mgr, s->table[i]);
    s->live = 0;
    s->n_table = 0;
    s->n_tokens = 0;
    return 0;
}

int slm_kv_seq_match_prefix(struct slm_kvcache *mgr, int seq, const int32_t *prompt, int n_prompt)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s || s->n_table || s->n_tokens || n_prompt < 0) return -EINVAL;
    if (n_prompt == 0) return 0;
    int bs = mgr->block_size, max_blocks = (n_prompt - 1) / bs;
    if (table_grow(s, max_blocks)) return 0;   /* no memory to share: compute it all */
    uint64_t h_prev = 0;
    int n = 0;
    for (; n < max_blocks; n++) {
        const int32_t *toks = prompt + (size_t)n * (size_t)bs;
        uint64_t h = chain_hash(mgr, toks, h_prev);
        int b = table_find(mgr, h, h_prev, toks);
        if (b < 0) break;
        if (mgr->refcount[b] == 0) {
            lru_unlink(mgr, b);
            mgr->n_used++;
        }
        mgr->refcount[b]++;
        s->table[n] = b;
        h_prev = h;
    }
    s->n_table = n;
    s->n_tokens = n * bs;
    s->last_hash = h_prev;
    return n * bs;
}

int slm_kv_seq_blocks_needed(const struct slm_kvcache *mgr, int seq, int n)
{
    const struct kv_seq *s = seq_get(mgr, seq);
    if (!s || n < 0) return -EINVAL;
    long long want = ((long long)s->n_tokens + n + mgr->block_size - 1) / mgr->block_size - s->n_table;
    if (want <= 0) return 0;
    return want > (long long)mgr->n_blocks + 1 ? mgr->n_blocks + 1 : (int)want;
}

int slm_kv_seq_reserve(struct slm_kvcache *mgr, int seq, int n)
{
    int need = slm_kv_seq_blocks_needed(mgr, seq, n);
    if (need <= 0) return need;
    if (need > mgr->n_free + mgr->n_cached) return -ENOSPC;
    struct kv_seq *s = &mgr->seqs[seq];
    if (table_grow(s, s->n_table + need)) return -ENOMEM;
    for (int i = 0; i < need; i++) s->table[s->n_table++] = take_block(mgr);
    return 0;
}

int slm_kv_seq_commit(struct slm_kvcache *mgr, int seq, const int32_t *tokens, int n)
{
    struct kv_seq *s = seq_get(mgr, seq);
    if (!s || n < 0) return -EINVAL;
    int bs = mgr->block_size;
    if ((long long)s->n_tokens + n > (long long)s->n_table * bs) return -ENOSPC;
    for (int i = 0; i < n; i++) {
        int b = s->table[s->n_tokens / bs], slot = s->n_tokens % bs;
        mgr->tokens[(size_t)b * (size_t)bs + (size_t)slot] = tokens[i];
        s->n_tokens++;
        if (slot != bs - 1) continue;
        uint64_t h = chain_hash(mgr, block_tokens(mgr, b), s->last_hash);
        if (table_find(mgr, h, s->last_hash, block_tokens(mgr, b)) < 0) {
            int k = bucket_of(mgr, h);
            mgr->hash[b] = h;
            mgr->parent_hash[b] = s->last_hash;
            mgr->hash_next[b] = mgr->buckets[k];
            mgr->buckets[k] = b;
            mgr->registered[b] = 1;
        }
        s->last_hash = h;
    }
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

/* ---- invariants --------------------------------------------------------------------------- */

#define FAIL(...)                                                             \
    do {                                                                      \
        if (err) snprintf(err, SLM_ERR_LEN, __VA_ARGS__);                     \
        rc = -EUCLEAN;                                                        \
        goto out;                                                             \
    } while (0)

int slm_kv_check(const struct slm_kvcache *m, char *err)
{
    int rc = 0, nb = m->n_blocks;
    /* state: 1 free, 2 on the LRU list; refs: references counted from the tables */
    uint8_t *state = calloc((size_t)nb, 1);
    int32_t *refs = calloc((size_t)nb, sizeof(int32_t));
    if (!state || !refs) FAIL("kv check: out of memory");
    if (m->n_free < 0 || m->n_free > nb) FAIL("n_free %d out of range", m->n_free);
    for (int i = 0; i < m->n_free; i++) {
        int b = m->free_stack[i];
        if (b < 0 || b >= nb || state[b]) FAIL("free list entry %d: bad or repeated block %d", i, b);
        state[b] = 1;
        if (m->registered[b]) FAIL("free block %d is registered", b);
    }
    int n_lru = 0, prev = -1;
    for (int b = m->lru_head; b >= 0; prev = b, b = m->lru_next[b]) {
        if (b >= nb || state[b] || n_lru >= nb) FAIL("LRU list: bad, repeated or free block %d", b);
        if (m->lru_prev[b] != prev) FAIL("LRU list: block %d prev %d, expected %d", b, m->lru_prev[b], prev);
        if (!m->registered[b]) FAIL("LRU block %d is not registered", b);
        state[b] = 2;
        n_lru++;
    }
    if (m->lru_tail != prev) FAIL("LRU tail %d, expected %d", m->lru_tail, prev);
    if (n_lru != m->n_cached) FAIL("n_cached %d, LRU list holds %d", m->n_cached, n_lru);
    for (int s = 0; s < m->n_seqs; s++) {
        const struct kv_seq *q = &m->seqs[s];
        if (!q->live) continue;
        if (q->n_tokens < 0 || q->n_tokens > q->n_table * m->block_size)
            FAIL("seq %d: %d tokens in %d blocks", s, q->n_tokens, q->n_table);
        for (int i = 0; i < q->n_table; i++) {
            int b = q->table[i];
            if (b < 0 || b >= nb) FAIL("seq %d: table[%d] = %d out of range", s, i, b);
            refs[b]++;
        }
    }
    int n_used = 0, n_registered = 0;
    for (int b = 0; b < nb; b++) {
        if (m->refcount[b] != refs[b]) FAIL("block %d: refcount %d, held by %d tables", b, m->refcount[b], refs[b]);
        if ((refs[b] > 0) + (state[b] != 0) != 1) FAIL("block %d: refs %d, state %d: not exactly one state", b, refs[b], state[b]);
        n_used += refs[b] > 0;
        n_registered += m->registered[b];
    }
    if (n_used != m->n_used) FAIL("n_used %d, counted %d", m->n_used, n_used);
    if (m->n_free + m->n_used + m->n_cached != nb) FAIL("free %d + used %d + cached %d != %d blocks", m->n_free, m->n_used, m->n_cached, nb);
    int n_chained = 0;
    for (int k = 0; k < m->n_buckets; k++) {
        for (int b = m->buckets[k]; b >= 0; b = m->hash_next[b]) {
            if (b >= nb || !m->registered[b] || n_chained >= nb) FAIL("bucket %d: bad or unregistered block %d", k, b);
            if (bucket_of(m, m->hash[b]) != k) FAIL("block %d in bucket %d, hash says %d", b, k, bucket_of(m, m->hash[b]));
            if (table_find(m, m->hash[b], m->parent_hash[b], block_tokens(m, b)) != b) FAIL("block %d: its key is registered twice", b);
            if (chain_hash(m, block_tokens(m, b), m->parent_hash[b]) != m->hash[b]) FAIL("block %d: hash does not match its tokens", b);
            n_chained++;
        }
    }
    if (n_chained != n_registered) FAIL("%d blocks registered, %d in the hash table", n_registered, n_chained);
out:
    free(state);
    free(refs);
    return rc;
}
