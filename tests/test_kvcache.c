/*
 * tests/test_kvcache.c - the KV block manager against a brute-force model.
 *
 * The model knows nothing of block ids or hashes: a cached block is the whole token prefix
 * it ends, its LRU position a release stamp, eviction a linear scan for the smallest stamp.
 * A seeded random run of thousands of operations (sequences with shared prefixes, chunked
 * prefill, decode, release, running out of blocks) must agree with it exactly on prefix
 * hits and block counts, with slm_kv_check clean after every operation. Scripted cases pin
 * the LRU eviction order and the collision guard.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/kvcache.h"
#include "common/log.h"
#include "tests/check.h"

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* ---- the model ------------------------------------------------------------------------ */

#define MAX_SEQS 16
#define MAX_TOK 512
#define MAX_ENTRIES 16384

struct entry { int32_t prefix[MAX_TOK]; int len, refcount, alive, block; uint64_t stamp; };
struct mseq { int live, handle, n_tokens, n_blocks; int32_t tokens[MAX_TOK]; int blocks[MAX_TOK]; };
struct model {
    int bs, n_blocks, free_count, n_entries;
    uint64_t clock, evicted;
    struct entry *e;
    struct mseq s[MAX_SEQS];
};

static int model_find(const struct model *m, const int32_t *prefix, int len)
{
    for (int i = 0; i < m->n_entries; i++)
        if (m->e[i].alive && m->e[i].len == len && !memcmp(m->e[i].prefix, prefix, (size_t)len * 4)) return i;
    return -1;
}

static int model_cached(const struct model *m)
{
    int n = 0;
    for (int i = 0; i < m->n_entries; i++) n += m->e[i].alive && m->e[i].refcount == 0;
    return n;
}

static int model_used(const struct model *m)
{
    int n = 0;
    for (int i = 0; i < m->n_entries; i++) n += m->e[i].alive && m->e[i].refcount > 0;
    for (int q = 0; q < MAX_SEQS; q++)
        if (m->s[q].live)
            for (int k = 0; k < m->s[q].n_blocks; k++) n += m->s[q].blocks[k] < 0;
    return n;
}

static int model_match(struct model *m, struct mseq *q, const int32_t *prompt, int n)
{
    int max = n > 0 ? (n - 1) / m->bs : 0, k = 0;
    for (; k < max; k++) {
        int e = model_find(m, prompt, (k + 1) * m->bs);
        if (e < 0) break;
        m->e[e].refcount++;
        q->blocks[k] = e;
    }
    memcpy(q->tokens, prompt, (size_t)(k * m->bs) * 4);
    q->n_blocks = k;
    q->n_tokens = k * m->bs;
    return k * m->bs;
}

static int model_reserve(struct model *m, struct mseq *q, int n)
{
    int need = (q->n_tokens + n + m->bs - 1) / m->bs - q->n_blocks;
    if (need <= 0) return 0;
    if (need > m->free_count + model_cached(m)) return -ENOSPC;
    for (int i = 0; i < need; i++) {
        if (m->free_count > 0) {
            m->free_count--;
        } else {
            int victim = -1;
            for (int e = 0; e < m->n_entries; e++)
                if (m->e[e].alive && m->e[e].refcount == 0 && (victim < 0 || m->e[e].stamp < m->e[victim].stamp))
                    victim = e;
            m->e[victim].alive = 0;
            m->evicted++;
        }
        q->blocks[q->n_blocks++] = -1;
    }
    return 0;
}

/* real_table: the manager's table of this sequence, to learn which block a new entry is. */
static void model_commit(struct model *m, struct mseq *q, const int32_t *toks, int n, const int32_t *real_table)
{
    for (int i = 0; i < n; i++) {
        q->tokens[q->n_tokens++] = toks[i];
        if (q->n_tokens % m->bs) continue;
        if (model_find(m, q->tokens, q->n_tokens) >= 0) continue;
        struct entry *e = &m->e[m->n_entries];
        memcpy(e->prefix, q->tokens, (size_t)q->n_tokens * 4);
        e->len = q->n_tokens;
        e->refcount = 1;
        e->alive = 1;
        e->block = real_table[q->n_tokens / m->bs - 1];
        q->blocks[q->n_tokens / m->bs - 1] = m->n_entries++;
    }
}

static void model_release(struct model *m, struct mseq *q)
{
    for (int k = q->n_blocks - 1; k >= 0; k--) {
        int e = q->blocks[k];
        if (e < 0) m->free_count++;
        else if (--m->e[e].refcount == 0) m->e[e].stamp = ++m->clock;
    }
    q->live = 0;
}

/* ---- comparing ------------------------------------------------------------------------- */

static void compare(struct slm_kvcache *kv, const struct model *m, const char *after, int step)
{
    char err[SLM_ERR_LEN] = "";
    int rc = slm_kv_check(kv, err);
    CHECK(rc == 0, "step %d after %s: slm_kv_check: expected 0, got %d (%s)", step, after, rc, err);
    CHECK(slm_kvcache_n_free(kv) == m->free_count, "step %d after %s: n_free: expected %d, got %d", step, after,
          m->free_count, slm_kvcache_n_free(kv));
    CHECK(slm_kvcache_n_cached(kv) == model_cached(m), "step %d after %s: n_cached: expected %d, got %d", step,
          after, model_cached(m), slm_kvcache_n_cached(kv));
    CHECK(slm_kvcache_n_used(kv) == model_used(m), "step %d after %s: n_used: expected %d, got %d", step, after,
          model_used(m), slm_kvcache_n_used(kv));
    CHECK(slm_kvcache_n_evicted(kv) == m->evicted, "step %d after %s: n_evicted: expected %llu, got %llu", step,
          after, (unsigned long long)m->evicted, (unsigned long long)slm_kvcache_n_evicted(kv));
    for (int i = 0; i < MAX_SEQS; i++) {
        const struct mseq *q = &m->s[i];
        if (!q->live) continue;
        const int32_t *table;
        int n = slm_kv_seq_table(kv, q->handle, &table);
        CHECK(n == q->n_blocks, "step %d seq %d: table length: expected %d, got %d", step, i, q->n_blocks, n);
        CHECK(slm_kv_seq_n_tokens(kv, q->handle) == q->n_tokens, "step %d seq %d: n_tokens: expected %d, got %d",
              step, i, q->n_tokens, slm_kv_seq_n_tokens(kv, q->handle));
        for (int k = 0; k < n && k < q->n_blocks; k++)
            if (q->blocks[k] >= 0)
                CHECK(table[k] == m->e[q->blocks[k]].block, "step %d seq %d block %d: expected id %d, got %d", step,
                      i, k, m->e[q->blocks[k]].block, table[k]);
    }
}

/* ---- the random run -------------------------------------------------------------------- */

static void random_run(int n_blocks, int bs, int n_ops, uint64_t seed)
{
    char err[SLM_ERR_LEN];
    struct slm_kvcache *kv = slm_kvcache_create(n_blocks, bs, err);
    CHECK(kv != NULL, "create(%d, %d): expected a manager, got NULL (%s)", n_blocks, bs, err);
    if (!kv) return;
    struct model *m = calloc(1, sizeof(*m));
    m->e = calloc(MAX_ENTRIES, sizeof(*m->e));
    m->bs = bs;
    m->n_blocks = n_blocks;
    m->free_count = n_blocks;
    rng_state = seed;

    enum { N_BASE = 6, BASE_LEN = 160 };
    static int32_t base[N_BASE][BASE_LEN];
    for (int b = 0; b < N_BASE; b++)
        for (int i = 0; i < BASE_LEN; i++) base[b][i] = (int32_t)rnd(b == 0 ? 3 : 50000);   /* base 0: tiny vocab */

    long hits = 0, expected_hits = 0, enospc = 0;
    int failures_before = failures;
    int step = 0;
    for (; step < n_ops && m->n_entries < MAX_ENTRIES - MAX_TOK && failures == failures_before; step++) {
        int op = (int)rnd(10), slot = (int)rnd(MAX_SEQS);
        struct mseq *q = &m->s[slot];
        if (!q->live && op < 8) {
            /* a new request: a shared prefix, a random tail, chunked prefill */
            int32_t prompt[MAX_TOK];
            int b = (int)rnd(N_BASE), lp = (int)rnd(BASE_LEN + 1), lt = (int)rnd(48), n = lp + lt;
            memcpy(prompt, base[b], (size_t)lp * 4);
            for (int i = lp; i < n; i++) prompt[i] = (int32_t)rnd(b == 0 ? 3 : 50000);
            q->handle = slm_kv_seq_create(kv);
            CHECK(q->handle >= 0, "seq_create: expected a handle, got %d", q->handle);
            q->live = 1;
            int got = slm_kv_seq_match_prefix(kv, q->handle, prompt, n);
            int want = model_match(m, q, prompt, n);
            CHECK(got == want, "step %d: prefix hit tokens: expected %d, got %d", step, want, got);
            hits += got;
            expected_hits += want;
            compare(kv, m, "match", step);
            int rest = n - want;
            int need = slm_kv_seq_blocks_needed(kv, q->handle, rest);
            int n_free = slm_kvcache_n_free(kv), n_cached = slm_kvcache_n_cached(kv);
            int rc = slm_kv_seq_reserve(kv, q->handle, rest), mrc = model_reserve(m, q, rest);
            CHECK(rc == mrc, "step %d: reserve %d tokens: expected %d, got %d", step, rest, mrc, rc);
            if (rc == -ENOSPC) {
                enospc++;
                CHECK(need > n_free + n_cached, "step %d: ENOSPC with %d needed and %d available", step, need,
                      n_free + n_cached);
                CHECK(slm_kvcache_n_free(kv) == n_free && slm_kvcache_n_cached(kv) == n_cached,
                      "step %d: failed reserve changed the counts: expected %d/%d, got %d/%d", step, n_free, n_cached,
                      slm_kvcache_n_free(kv), slm_kvcache_n_cached(kv));
                compare(kv, m, "failed reserve", step);
                slm_kv_seq_release(kv, q->handle);
                model_release(m, q);
                compare(kv, m, "release", step);
                continue;
            }
            compare(kv, m, "reserve", step);
            for (int done = want; done < n;) {
                int c = 1 + (int)rnd((uint32_t)(n - done));
                rc = slm_kv_seq_commit(kv, q->handle, prompt + done, c);
                CHECK(rc == 0, "step %d: commit %d: expected 0, got %d", step, c, rc);
                const int32_t *table;
                slm_kv_seq_table(kv, q->handle, &table);
                model_commit(m, q, prompt + done, c, table);
                done += c;
                compare(kv, m, "commit", step);
            }
        } else if (q->live && op < 7) {
            /* decode: reserve 1..4 tokens, commit 0..that many */
            int r = 1 + (int)rnd(4), c = (int)rnd((uint32_t)r + 1);
            if (q->n_tokens + r > MAX_TOK) continue;
            int32_t toks[4];
            for (int i = 0; i < c; i++) toks[i] = (int32_t)rnd(3);
            int rc = slm_kv_seq_reserve(kv, q->handle, r), mrc = model_reserve(m, q, r);
            CHECK(rc == mrc, "step %d: decode reserve %d: expected %d, got %d", step, r, mrc, rc);
            compare(kv, m, "decode reserve", step);
            if (rc) {
                enospc++;
                continue;
            }
            rc = slm_kv_seq_commit(kv, q->handle, toks, c);
            CHECK(rc == 0, "step %d: decode commit %d: expected 0, got %d", step, c, rc);
            const int32_t *table;
            slm_kv_seq_table(kv, q->handle, &table);
            model_commit(m, q, toks, c, table);
            compare(kv, m, "decode commit", step);
        } else if (q->live) {
            CHECK(slm_kv_seq_release(kv, q->handle) == 0, "step %d: release: expected 0", step);
            model_release(m, q);
            compare(kv, m, "release", step);
        }
    }
    for (int i = 0; i < MAX_SEQS; i++)
        if (m->s[i].live) {
            slm_kv_seq_release(kv, m->s[i].handle);
            model_release(m, &m->s[i]);
            compare(kv, m, "final release", n_ops);
        }
    CHECK(slm_kvcache_n_used(kv) == 0, "after releasing all: n_used: expected 0, got %d", slm_kvcache_n_used(kv));
    CHECK(slm_kvcache_n_free(kv) + slm_kvcache_n_cached(kv) == n_blocks,
          "after releasing all: free + cached: expected %d, got %d", n_blocks,
          slm_kvcache_n_free(kv) + slm_kvcache_n_cached(kv));
    /* the run must have exercised what it claims to test */
    CHECK(expected_hits > 0 && hits == expected_hits, "prefix hit tokens: expected %ld (> 0), got %ld", expected_hits,
          hits);
    CHECK(enospc > 0, "out-of-blocks cases: expected some, got %ld", enospc);
    CHECK(m->evicted > 0, "evictions: expected some, got %llu", (unsigned long long)m->evicted);
    CHECK(step == n_ops, "operations run: expected %d, got %d", n_ops, step);
    printf("random run %d blocks x %d: %d ops, %ld prefix hit tokens, %ld ENOSPC, %llu evictions, %d cache entries\n",
           n_blocks, bs, n_ops, hits, enospc, (unsigned long long)m->evicted, m->n_entries);
    slm_kvcache_destroy(&kv);
    CHECK(kv == NULL, "destroy: expected NULL pointer");
    free(m->e);
    free(m);
}

/* ---- scripted cases -------------------------------------------------------------------- */

#define CHECK_KV(kv)                                                                          \
    do {                                                                                      \
        char e_[SLM_ERR_LEN] = "";                                                            \
        int r_ = slm_kv_check(kv, e_);                                                        \
        CHECK(r_ == 0, "slm_kv_check: expected 0, got %d (%s)", r_, e_);                      \
    } while (0)

/* A sequence holding toks (reserved and committed). */
static int seq_with(struct slm_kvcache *kv, const int32_t *toks, int n)
{
    int s = slm_kv_seq_create(kv);
    int rc = slm_kv_seq_reserve(kv, s, n);
    CHECK(rc == 0, "reserve %d: expected 0, got %d", n, rc);
    rc = slm_kv_seq_commit(kv, s, toks, n);
    CHECK(rc == 0, "commit %d: expected 0, got %d", n, rc);
    CHECK_KV(kv);
    return s;
}

/* Blocks come back least recently released first; of one sequence the tail first; a
 * matched block leaves the LRU list. Block ids are deterministic: the free list hands out
 * 0, 1, 2, ... */
static void lru_order(void)
{
    struct slm_kvcache *kv = slm_kvcache_create(4, 2, NULL);
    const int32_t a[] = {1, 2, 3, 4}, b[] = {5, 6}, d[] = {5, 6, 7};
    int sa = seq_with(kv, a, 4);               /* blocks 0, 1 */
    int sb = seq_with(kv, b, 2);               /* block 2 */
    slm_kv_seq_release(kv, sa);                /* LRU: 1, 0 */
    slm_kv_seq_release(kv, sb);                /* LRU: 1, 0, 2 */
    CHECK_KV(kv);
    CHECK(slm_kvcache_n_cached(kv) == 3 && slm_kvcache_n_free(kv) == 1,
          "cached/free: expected 3/1, got %d/%d", slm_kvcache_n_cached(kv), slm_kvcache_n_free(kv));
    int sc = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_blocks_needed(kv, sc, 4) == 2, "blocks needed for 4 tokens: expected 2, got %d",
          slm_kv_seq_blocks_needed(kv, sc, 4));
    CHECK(slm_kv_seq_reserve(kv, sc, 4) == 0, "reserve 4: expected 0");
    CHECK_KV(kv);
    const int32_t *t;
    CHECK(slm_kv_seq_table(kv, sc, &t) == 2 && t[0] == 3 && t[1] == 1,
          "table after eviction: expected {3, 1} (free block, then the LRU head), got {%d, %d}", t[0], t[1]);
    int sd = slm_kv_seq_create(kv);
    int hit = slm_kv_seq_match_prefix(kv, sd, d, 3);   /* takes block 2 off the LRU list */
    CHECK(hit == 2, "match {5,6,7}: expected 2 tokens, got %d", hit);
    CHECK_KV(kv);
    CHECK(slm_kv_seq_reserve(kv, sc, 6) == 0, "reserve 6: expected 0");
    CHECK(slm_kv_seq_table(kv, sc, &t) == 3 && t[2] == 0, "third block: expected 0 (next LRU), got %d", t[2]);
    CHECK(slm_kvcache_n_evicted(kv) == 2, "evictions: expected 2, got %llu",
          (unsigned long long)slm_kvcache_n_evicted(kv));
    CHECK(slm_kvcache_n_available(kv) == 0, "available: expected 0, got %d", slm_kvcache_n_available(kv));
    CHECK(slm_kv_seq_reserve(kv, sc, 7) == -ENOSPC, "reserve with block 2 shared: expected -ENOSPC");
    CHECK(slm_kv_seq_table(kv, sc, &t) == 3, "failed reserve: expected 3 blocks, got %d", slm_kv_seq_table(kv, sc, &t));
    CHECK_KV(kv);
    /* a's prefix {1,2} was evicted with block 0: no hit */
    int se = slm_kv_seq_create(kv);
    hit = slm_kv_seq_match_prefix(kv, se, a, 4);
    CHECK(hit == 0, "match after eviction: expected 0, got %d", hit);
    slm_kv_seq_release(kv, se);
    slm_kv_seq_release(kv, sc);
    slm_kv_seq_release(kv, sd);
    CHECK_KV(kv);
    CHECK(slm_kvcache_n_used(kv) == 0, "used after release: expected 0, got %d", slm_kvcache_n_used(kv));
    slm_kvcache_destroy(&kv);
}

/* With every hash forced to 0, blocks with different tokens share one hash value and must
 * neither match nor disturb each other. Without the mask, a block with the same tokens
 * behind a different prefix must not match either. */
static void collisions(void)
{
    struct slm_kvcache *kv = slm_kvcache_create(8, 2, NULL);
    slm_kvcache_set_hash_mask(kv, 0);
    const int32_t a[] = {1, 2}, b[] = {7, 8, 9}, pa[] = {1, 2, 5}, pb[] = {7, 8, 1};
    int sa = seq_with(kv, a, 2), sb = seq_with(kv, b, 3);
    const int32_t *ta, *tb, *t;
    slm_kv_seq_table(kv, sa, &ta);
    slm_kv_seq_table(kv, sb, &tb);
    int ba = ta[0], bb = tb[0];
    slm_kv_seq_release(kv, sa);
    slm_kv_seq_release(kv, sb);
    CHECK_KV(kv);
    CHECK(slm_kvcache_n_cached(kv) == 2, "both colliding blocks cached: expected 2, got %d", slm_kvcache_n_cached(kv));
    int s = slm_kv_seq_create(kv);
    const int32_t other[] = {1, 3, 0};
    CHECK(slm_kv_seq_match_prefix(kv, s, other, 3) == 0, "colliding block with other tokens: expected no hit");
    slm_kv_seq_release(kv, s);
    s = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_match_prefix(kv, s, pa, 3) == 2 && slm_kv_seq_table(kv, s, &t) == 1 && t[0] == ba,
          "match {1,2,5}: expected block %d", ba);
    int s2 = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_match_prefix(kv, s2, pb, 3) == 2 && slm_kv_seq_table(kv, s2, &t) == 1 && t[0] == bb,
          "match {7,8,1}: expected block %d", bb);
    CHECK_KV(kv);
    slm_kvcache_destroy(&kv);

    kv = slm_kvcache_create(8, 2, NULL);
    const int32_t x[] = {1, 2, 3, 4}, y[] = {9, 9, 3, 4, 0};
    slm_kv_seq_release(kv, seq_with(kv, x, 4));
    s = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_match_prefix(kv, s, y, 5) == 0, "same block behind another prefix: expected no hit");
    slm_kv_seq_release(kv, s);
    s = slm_kv_seq_create(kv);
    int hit = slm_kv_seq_match_prefix(kv, s, x, 4);
    CHECK(hit == 2, "prompt of exactly 2 full blocks: expected 2 tokens (last block recomputed), got %d", hit);
    CHECK_KV(kv);
    slm_kvcache_destroy(&kv);
}

static void bad_arguments(void)
{
    char err[SLM_ERR_LEN] = "";
    CHECK(slm_kvcache_create(0, 16, err) == NULL && err[0], "create(0, 16): expected NULL with a reason");
    CHECK(slm_kvcache_create(4, 0, NULL) == NULL, "create(4, 0): expected NULL");
    struct slm_kvcache *kv = slm_kvcache_create(4, 4, NULL);
    const int32_t t[] = {1, 2, 3, 4, 5};
    int s = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_commit(kv, s, t, 1) == -ENOSPC, "commit without room: expected -ENOSPC");
    CHECK(slm_kv_seq_reserve(kv, s, 17) == -ENOSPC, "reserve past the pool: expected -ENOSPC");
    CHECK(slm_kvcache_n_free(kv) == 4, "free after failed reserve: expected 4, got %d", slm_kvcache_n_free(kv));
    CHECK(slm_kv_seq_reserve(kv, s, 3) == 0 && slm_kv_seq_commit(kv, s, t, 5) == -ENOSPC,
          "commit past the reservation: expected -ENOSPC");
    CHECK(slm_kv_seq_commit(kv, s, t, 2) == 0, "commit 2: expected 0");
    CHECK(slm_kv_seq_match_prefix(kv, s, t, 5) == -EINVAL, "match on a non-empty sequence: expected -EINVAL");
    CHECK(slm_kv_seq_reserve(kv, s, -1) == -EINVAL, "reserve -1: expected -EINVAL");
    CHECK(slm_kv_seq_release(kv, s) == 0 && slm_kv_seq_release(kv, s) == -EINVAL,
          "double release: expected 0 then -EINVAL");
    CHECK(slm_kv_seq_release(kv, 99) == -EINVAL && slm_kv_seq_n_tokens(kv, -1) == -EINVAL,
          "bad handles: expected -EINVAL");
    CHECK_KV(kv);
    slm_kvcache_destroy(&kv);
    slm_kvcache_destroy(&kv);
}

/* ---- the local pool (sliding-window layers) ---------------------------------------------- */

static struct slm_kv_counts counts(const struct slm_kvcache *kv, int pool)
{
    struct slm_kv_counts c = {0};
    int rc = slm_kvcache_counts(kv, pool, &c);
    CHECK(rc == 0, "slm_kvcache_counts(pool %d): expected 0, got %d", pool, rc);
    CHECK(c.n_free + c.n_used + c.n_cached == c.n_blocks, "pool %d: free %d + used %d + cached %d != %d blocks",
          pool, c.n_free, c.n_used, c.n_cached, c.n_blocks);
    return c;
}

/* A sequence decoded token by token far past its window: its local table holds -1 below
 * max(0, n - window + 1) / block_size and real blocks above, the local pool never holds more
 * than the window's blocks for it, and the global table keeps every block. A local pool of
 * ceil(window / block) + 1 blocks is enough for any length (released blocks are cached, then
 * evicted). */
static void window_slides(void)
{
    const int bs = 4, window = 10, n_local = (window + bs - 1) / bs + 1, n = 61;
    struct slm_kvcache *kv = slm_kvcache_create_windowed(20, n_local, window, bs, NULL);
    CHECK(kv && slm_kvcache_window(kv) == window, "create_windowed: expected a manager with window %d", window);
    if (!kv) return;
    int s = slm_kv_seq_create(kv);
    for (int i = 0; i < n; i++) {
        int32_t tok = 100 + i;
        int rc = slm_kv_seq_reserve(kv, s, 1);
        CHECK(rc == 0, "token %d: reserve 1: expected 0, got %d", i, rc);
        if (rc) break;
        CHECK(slm_kv_seq_commit(kv, s, &tok, 1) == 0, "token %d: commit: expected 0", i);
        CHECK_KV(kv);
        const int32_t *g, *l;
        int ng = slm_kv_seq_table(kv, s, &g), nl = slm_kv_seq_table_local(kv, s, &l);
        int first = i + 1 - window + 1 > 0 ? (i + 1 - window + 1) / bs : 0;
        CHECK(ng == i / bs + 1 && nl == ng, "after %d tokens: tables of %d and %d blocks, expected %d", i + 1, ng, nl,
              i / bs + 1);
        for (int k = 0; k < nl; k++) {
            CHECK(g[k] >= 0, "after %d tokens: global table[%d] = %d, expected a block", i + 1, k, g[k]);
            CHECK(k < first ? l[k] == -1 : l[k] >= 0, "after %d tokens: local table[%d] = %d, expected %s", i + 1, k,
                  l[k], k < first ? "-1 (released)" : "a block");
        }
        struct slm_kv_counts c = counts(kv, SLM_KV_LOCAL);
        CHECK(c.n_used == nl - first, "after %d tokens: %d local blocks used, expected %d", i + 1, c.n_used, nl - first);
        CHECK(c.n_used <= n_local, "after %d tokens: %d local blocks used, the window needs at most %d", i + 1,
              c.n_used, n_local);
    }
    CHECK(counts(kv, SLM_KV_GLOBAL).n_used == (n + bs - 1) / bs, "global blocks used: expected %d, got %d",
          (n + bs - 1) / bs, counts(kv, SLM_KV_GLOBAL).n_used);
    CHECK(counts(kv, SLM_KV_LOCAL).n_evicted > 0, "a local pool of %d blocks for %d tokens: expected evictions",
          n_local, n);
    CHECK(slm_kv_seq_release(kv, s) == 0, "release: expected 0");
    CHECK_KV(kv);
    struct slm_kv_counts g = counts(kv, SLM_KV_GLOBAL), l = counts(kv, SLM_KV_LOCAL);
    CHECK(g.n_used == 0 && l.n_used == 0, "after release: used %d global, %d local, expected 0 and 0", g.n_used,
          l.n_used);
    CHECK(g.n_cached == n / bs && l.n_cached == n_local - (n % bs != 0),
          "after release: cached %d global, %d local, expected %d and %d (full blocks only)", g.n_cached,
          l.n_cached, n / bs, n_local - (n % bs != 0));
    slm_kvcache_destroy(&kv);
}

/* A prefix hit needs the local blocks of the window before the match point: with them gone,
 * the match is cut back to the longest prefix whose window is still cached. Window 4, blocks of
 * 4: a match of n blocks needs local block n - 1. */
static void window_prefix(void)
{
    const int bs = 4, window = 4;
    struct slm_kvcache *kv = slm_kvcache_create_windowed(20, 7, window, bs, NULL);
    int32_t a[25], fresh[24];
    for (int i = 0; i < 25; i++) a[i] = 1 + i;
    for (int i = 0; i < 24; i++) fresh[i] = 500 + i;
    int sa = seq_with(kv, a, 24);             /* local blocks 0..4 slide out at the commit, 5 held */
    CHECK(counts(kv, SLM_KV_LOCAL).n_used == 1 && counts(kv, SLM_KV_LOCAL).n_cached == 5,
          "24 tokens, window 4: expected 1 local block used and 5 cached, got %d and %d",
          counts(kv, SLM_KV_LOCAL).n_used, counts(kv, SLM_KV_LOCAL).n_cached);
    slm_kv_seq_release(kv, sa);               /* local LRU: 0 1 2 3 4 5 */
    int s = slm_kv_seq_create(kv);
    int hit = slm_kv_seq_match_prefix(kv, s, a, 25);
    CHECK(hit == 24, "everything cached: expected a hit of 24 tokens, got %d", hit);
    const int32_t *l;
    CHECK(slm_kv_seq_table_local(kv, s, &l) == 6 && l[0] == -1 && l[4] == -1 && l[5] >= 0,
          "local table after a hit of 6 blocks: expected -1 below entry 5 and a block at 5");
    CHECK(counts(kv, SLM_KV_LOCAL).n_used == 1, "local blocks a hit takes: expected 1 (the window), got %d",
          counts(kv, SLM_KV_LOCAL).n_used);
    CHECK_KV(kv);
    slm_kv_seq_release(kv, s);                /* local block 5 back to the tail: LRU 0 1 2 3 4 5 */
    s = slm_kv_seq_create(kv);
    hit = slm_kv_seq_match_prefix(kv, s, a, 13);   /* 3 blocks: takes local block 2 */
    CHECK(hit == 12, "a 13-token prompt: expected a hit of 12, got %d", hit);
    slm_kv_seq_release(kv, s);                /* LRU 0 1 3 4 5 2 */
    int sd = seq_with(kv, fresh, 24);         /* 6 local blocks: the free one, then 0 1 3 4 5 evicted */
    CHECK(counts(kv, SLM_KV_LOCAL).n_evicted == 5, "local evictions: expected 5, got %llu",
          (unsigned long long)counts(kv, SLM_KV_LOCAL).n_evicted);
    CHECK(counts(kv, SLM_KV_GLOBAL).n_evicted == 0, "global evictions: expected 0, got %llu",
          (unsigned long long)counts(kv, SLM_KV_GLOBAL).n_evicted);
    s = slm_kv_seq_create(kv);
    hit = slm_kv_seq_match_prefix(kv, s, a, 25);   /* the global chain has 6 blocks; the windows of 4..6 are gone */
    CHECK(hit == 12, "local window blocks evicted: expected the hit cut back to 12 tokens, got %d", hit);
    const int32_t *g;
    CHECK(slm_kv_seq_table(kv, s, &g) == 3 && slm_kv_seq_table_local(kv, s, &l) == 3 && l[1] == -1 && l[2] >= 0,
          "tables after the cut-back hit: expected 3 entries, local -1 below entry 2");
    CHECK_KV(kv);
    /* The same history without a window: the whole chain hits. */
    struct slm_kvcache *plain = slm_kvcache_create(20, bs, NULL);
    slm_kv_seq_release(plain, seq_with(plain, a, 24));
    int sp = slm_kv_seq_create(plain);
    CHECK(slm_kv_seq_match_prefix(plain, sp, a, 25) == 24, "without a window: expected a hit of 24 tokens");
    slm_kvcache_destroy(&plain);
    /* Release of everything returns both pools' blocks. */
    slm_kv_seq_release(kv, s);
    slm_kv_seq_release(kv, sd);
    CHECK_KV(kv);
    CHECK(counts(kv, SLM_KV_GLOBAL).n_used == 0 && counts(kv, SLM_KV_LOCAL).n_used == 0,
          "after releasing every sequence: expected no block used in either pool");
    slm_kvcache_destroy(&kv);
}

/* Random sequences with shared prefixes, chunked prefill and decode on a windowed manager
 * whose local pool is small: slm_kv_check after every operation (the local table's -1 below
 * the window, refcounts, lists and counts of both pools), no sequence holding more local
 * blocks than its window and chunk need, and a reservation refused (-ENOSPC) only when one
 * of the pools lacks blocks, with nothing changed. */
static void window_random(uint64_t seed)
{
    const int bs = 4, window = 9, n_blocks = 64, n_local = 16;
    struct slm_kvcache *kv = slm_kvcache_create_windowed(n_blocks, n_local, window, bs, NULL);
    rng_state = seed;
    int handle[6], n_tok[6], live[6] = {0};
    int32_t toks[6][120];
    for (int op = 0; op < 3000 && !failures; op++) {
        int q = (int)rnd(6);
        if (!live[q]) {
            int len = 1 + (int)rnd(100);
            for (int i = 0; i < len; i++) toks[q][i] = i < 40 && rnd(4) ? 1 + i % 7 : (int32_t)rnd(5);
            handle[q] = slm_kv_seq_create(kv);
            int hit = slm_kv_seq_match_prefix(kv, handle[q], toks[q], len);
            CHECK(hit >= 0 && hit % bs == 0 && hit < len, "op %d: match: bad hit %d of %d", op, hit, len);
            n_tok[q] = hit;
            live[q] = len;
        } else if (n_tok[q] >= live[q] || rnd(16) == 0) {
            CHECK(slm_kv_seq_release(kv, handle[q]) == 0, "op %d: release: expected 0", op);
            live[q] = 0;
        } else {
            int n = 1 + (int)rnd(12);
            if (n > live[q] - n_tok[q]) n = live[q] - n_tok[q];
            struct slm_kv_counts g0 = counts(kv, SLM_KV_GLOBAL), l0 = counts(kv, SLM_KV_LOCAL);
            int need = slm_kv_seq_blocks_needed(kv, handle[q], n), rc = slm_kv_seq_reserve(kv, handle[q], n);
            int room = need <= g0.n_free + g0.n_cached && need <= l0.n_free + l0.n_cached;
            CHECK(rc == (room ? 0 : -ENOSPC), "op %d: reserve %d (%d blocks; %d + %d global, %d + %d local): got %d",
                  op, n, need, g0.n_free, g0.n_cached, l0.n_free, l0.n_cached, rc);
            if (rc) {
                struct slm_kv_counts l1 = counts(kv, SLM_KV_LOCAL);
                CHECK(l1.n_free == l0.n_free && l1.n_used == l0.n_used, "op %d: refused reserve changed the local pool", op);
                CHECK(slm_kv_seq_release(kv, handle[q]) == 0, "op %d: release: expected 0", op);
                live[q] = 0;
            } else {
                CHECK(slm_kv_seq_commit(kv, handle[q], toks[q] + n_tok[q], n) == 0, "op %d: commit: expected 0", op);
                n_tok[q] += n;
                const int32_t *l;
                int nl = slm_kv_seq_table_local(kv, handle[q], &l), held = 0;
                for (int k = 0; k < nl; k++) held += l[k] >= 0;
                CHECK(held <= (window - 1 + bs - 1) / bs + 1, "op %d: %d local blocks held after commit, window %d",
                      op, held, window);
            }
        }
        char e[SLM_ERR_LEN] = "";
        int r = slm_kv_check(kv, e);
        CHECK(r == 0, "op %d: slm_kv_check: expected 0, got %d (%s)", op, r, e);
    }
    for (int q = 0; q < 6; q++)
        if (live[q]) slm_kv_seq_release(kv, handle[q]);
    CHECK(counts(kv, SLM_KV_GLOBAL).n_used == 0 && counts(kv, SLM_KV_LOCAL).n_used == 0,
          "random run: blocks still used after every release");
    CHECK(counts(kv, SLM_KV_LOCAL).n_evicted > 0, "random run: expected local evictions");
    slm_kvcache_destroy(&kv);
}

static void window_bad_arguments(void)
{
    char err[SLM_ERR_LEN] = "";
    CHECK(!slm_kvcache_create_windowed(8, 0, 4, 4, err) && err[0], "window without a local pool: expected NULL");
    CHECK(!slm_kvcache_create_windowed(8, 4, 0, 4, NULL), "local pool without a window: expected NULL");
    CHECK(!slm_kvcache_create_windowed(8, -1, 4, 4, NULL) && !slm_kvcache_create_windowed(8, 4, -2, 4, NULL),
          "negative local pool or window: expected NULL");
    struct slm_kvcache *plain = slm_kvcache_create(4, 4, NULL), *kv = slm_kvcache_create_windowed(4, 3, 5, 4, NULL);
    struct slm_kv_counts c;
    const int32_t *t;
    CHECK(slm_kvcache_counts(plain, SLM_KV_LOCAL, &c) == -EINVAL && slm_kvcache_counts(kv, 2, &c) == -EINVAL &&
          slm_kvcache_counts(kv, -1, &c) == -EINVAL && slm_kvcache_counts(kv, SLM_KV_LOCAL, NULL) == -EINVAL,
          "counts of a pool that is not there: expected -EINVAL");
    int sp = slm_kv_seq_create(plain), s = slm_kv_seq_create(kv);
    CHECK(slm_kv_seq_table_local(plain, sp, &t) == -EINVAL, "local table without a local pool: expected -EINVAL");
    CHECK(slm_kv_seq_table_local(kv, s + 1, &t) == -EINVAL && slm_kv_seq_table_local(kv, -1, &t) == -EINVAL,
          "local table of a bad handle: expected -EINVAL");
    CHECK(slm_kv_seq_reserve(kv, s, 13) == -ENOSPC && counts(kv, SLM_KV_GLOBAL).n_free == 4,
          "reserve of 4 blocks with 3 local: expected -ENOSPC, the global pool untouched");
    CHECK(slm_kv_seq_reserve(kv, s, -1) == -EINVAL && slm_kv_seq_release(kv, 7) == -EINVAL,
          "bad size or handle: expected -EINVAL");
    CHECK_KV(kv);
    slm_kvcache_destroy(&plain);
    slm_kvcache_destroy(&kv);
}

int main(void)
{
    bad_arguments();
    lru_order();
    collisions();
    window_bad_arguments();
    window_slides();
    window_prefix();
    window_random(99);
    window_random(0xfeedull);
    random_run(96, 4, 6000, 0x9e3779b97f4a7c15ull);
    random_run(40, 16, 4000, 12345);
    random_run(200, 1, 3000, 777);
    if (failures) printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
