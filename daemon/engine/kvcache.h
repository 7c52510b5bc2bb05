/*
 * daemon/engine/kvcache.h - the paged KV cache's block manager.
 *
 * Pure bookkeeping: which block of the KV pool (struct slm_kv_pool, backend.h, indexed by
 * block id) belongs to which sequence. No tensor memory is touched here.
 *
 * The pool has n_blocks blocks of block_size tokens. Each sequence (an int handle) has a
 * block table: token t of the sequence lives in block table[t / block_size], slot
 * t % block_size. The scheduler reserves room before a step (slm_kv_seq_reserve), runs the
 * forward pass through the table, then commits the token ids whose K/V it wrote
 * (slm_kv_seq_commit).
 *
 * Prefix caching: when a committed block becomes full, it is registered under the chained
 * hash h_i = XXH3_64bits_withSeed(tokens of block i, block_size * 4, h_{i-1}), h_{-1} = 0.
 * A table entry's key is (h_i, h_{i-1}, the block's token ids): the token ids are kept here
 * and compared on every lookup, so a 64-bit collision of h_i alone never shares a block
 * with different tokens. A new sequence takes the cached blocks of its prompt's full-block
 * prefix by reference (slm_kv_seq_match_prefix). Shared blocks are always full, hence
 * immutable: no copy-on-write is ever needed.
 *
 * Every block is exactly one of: free (on the free list), referenced (refcount > 0, held by
 * that many block tables), or cached-unreferenced (registered, refcount 0, on the LRU list).
 * A cached-unreferenced block keeps its K/V; it is evicted, least recently released first,
 * only when the free list is empty and a block is needed. A match takes it off the LRU list.
 *
 * Sliding-window models (docs/engine.md, "Two pools"): a windowed manager has a second pool,
 * the local one, for the layers that attend to the last `window` positions only. Every
 * sequence has a table in each pool, indexed alike (entry i holds positions i * block_size ..),
 * and a reservation takes the same number of blocks from both. Once committed tokens move a
 * block wholly before n_tokens - window + 1 (the earliest position any later token attends
 * to), the local table releases it (cached-unreferenced when registered, else free) and holds
 * -1 in its place: a local table is -1 below max(0, n_tokens - window + 1) / block_size. Both
 * pools register full blocks under the same chained hashes; a prefix match must find, in the
 * local pool too, the blocks that cover the window before the match point, else it is cut
 * back to the longest prefix for which they are cached. Every count and rule above holds per
 * pool; the functions without a pool argument speak of the global pool.
 *
 * Not thread-safe: the engine thread owns the manager.
 */
#ifndef SLM_ENGINE_KVCACHE_H
#define SLM_ENGINE_KVCACHE_H

#include <stdint.h>

struct slm_kvcache;

/* A manager for n_blocks (>= 1) blocks of block_size (>= 1) tokens, all free, no sequences.
 * Returns NULL with err (char[SLM_ERR_LEN], may be NULL) filled on a bad size or no memory. */
struct slm_kvcache *slm_kvcache_create(int n_blocks, int block_size, char *err);

/* A windowed manager: n_blocks global blocks, n_local_blocks (>= 1) local ones, window (>= 1)
 * tokens. window 0 with n_local_blocks 0 is slm_kvcache_create. NULL with err on bad sizes. */
struct slm_kvcache *slm_kvcache_create_windowed(int n_blocks, int n_local_blocks, int window, int block_size,
                                                char *err);

/* Frees the manager and every sequence still in it; sets *mgr to NULL. NULL-safe. */
void slm_kvcache_destroy(struct slm_kvcache **mgr);

int slm_kvcache_block_size(const struct slm_kvcache *mgr);
int slm_kvcache_n_blocks(const struct slm_kvcache *mgr);
/* The window of the local pool's layers, 0 without a local pool. */
int slm_kvcache_window(const struct slm_kvcache *mgr);

/* The pools of a manager: SLM_KV_GLOBAL always, SLM_KV_LOCAL with a window. */
enum { SLM_KV_GLOBAL = 0, SLM_KV_LOCAL = 1 };

/* One pool's blocks: free + used + cached == n_blocks. */
struct slm_kv_counts {
    int n_blocks, n_free, n_used, n_cached;
    uint64_t n_evicted;
};

/* Fills *out for pool (SLM_KV_GLOBAL or SLM_KV_LOCAL). 0, or -EINVAL for a pool the manager
 * has not or a NULL out. */
int slm_kvcache_counts(const struct slm_kvcache *mgr, int pool, struct slm_kv_counts *out);

/* Blocks a reservation can still obtain: free plus cached-unreferenced (evictable). */
int slm_kvcache_n_available(const struct slm_kvcache *mgr);
/* Blocks on the free list (holding nothing). */
int slm_kvcache_n_free(const struct slm_kvcache *mgr);
/* Blocks with refcount > 0. */
int slm_kvcache_n_used(const struct slm_kvcache *mgr);
/* Cached, unreferenced blocks (on the LRU list). free + used + cached == n_blocks. */
int slm_kvcache_n_cached(const struct slm_kvcache *mgr);
/* Cached blocks evicted so far (for statistics and tests). */
uint64_t slm_kvcache_n_evicted(const struct slm_kvcache *mgr);

/* A new, empty sequence. Returns its handle (>= 0; handles of released sequences are
 * reused) or -ENOMEM. */
int slm_kv_seq_create(struct slm_kvcache *mgr);

/* Drops the sequence's references and frees its handle. Its blocks, last first, become
 * cached-unreferenced (the most recently used end of the LRU list) when registered, free
 * otherwise; so of one sequence the tail blocks are evicted before the prefix blocks.
 * Returns 0, or -EINVAL on a bad handle. */
int slm_kv_seq_release(struct slm_kvcache *mgr, int seq);

/* For an empty sequence (no tokens, no blocks): shares the cached blocks that hold the
 * longest full-block prefix of prompt (n_prompt tokens) by reference. At most
 * (n_prompt - 1) / block_size blocks are matched, so the block holding the last prompt
 * token is never matched: at least one prompt token (the one whose logits are needed) is
 * always left to compute. Returns the number of prompt tokens covered (a multiple of
 * block_size, >= 0): the caller skips their prefill, reserves room and runs the rest from
 * that position, then commits only the remaining tokens. -EINVAL on a bad handle, a
 * non-empty sequence or n_prompt < 0. Matching never allocates, so it cannot fail for lack
 * of blocks. */
int slm_kv_seq_match_prefix(struct slm_kvcache *mgr, int seq, const int32_t *prompt, int n_prompt);

/* New blocks the sequence needs to hold n more tokens beyond those committed, counting
 * blocks already reserved; 0 when it has room. With a local pool, as many of each pool. -EINVAL on a bad handle or n < 0. */
int slm_kv_seq_blocks_needed(const struct slm_kvcache *mgr, int seq, int n);

/* Makes room for n more tokens beyond those committed, allocating blocks from the free
 * list, then evicting the least recently used cached blocks. All or nothing: returns 0, or
 * -ENOSPC (nothing changed) when fewer than slm_kv_seq_blocks_needed blocks are available,
 * -ENOMEM (nothing changed) when the table cannot grow, -EINVAL on a bad handle or n < 0. */
int slm_kv_seq_reserve(struct slm_kvcache *mgr, int seq, int n);

/* Records that the K/V of tokens (n ids) now sit in the reserved slots after the
 * committed ones. Every block this fills is registered for prefix caching, unless an
 * identical block (same key) is already registered, in which case this one stays private
 * and is freed on release. Returns 0, -ENOSPC when fewer than n slots are reserved
 * (nothing changed), -EINVAL on a bad handle or n < 0. */
int slm_kv_seq_commit(struct slm_kvcache *mgr, int seq, const int32_t *tokens, int n);

/* Committed tokens of the sequence, or -EINVAL. */
int slm_kv_seq_n_tokens(const struct slm_kvcache *mgr, int seq);

/* Sets *blocks to the sequence's block table (valid until the next call that changes this
 * sequence) and returns its length in blocks, or -EINVAL. */
int slm_kv_seq_table(const struct slm_kvcache *mgr, int seq, const int32_t **blocks);

/* With a local pool: sets *blocks to the sequence's local table (as slm_kv_seq_table; -1 below
 * max(0, n_tokens - window + 1) / block_size) and returns its length, the global table's.
 * -EINVAL on a bad handle or without a local pool. */
int slm_kv_seq_table_local(const struct slm_kvcache *mgr, int seq, const int32_t **blocks);

/* Checks every invariant (block states, refcounts against the tables, free and LRU lists,
 * the hash table). Returns 0, or -EUCLEAN with the first violation in err (may be NULL). */
int slm_kv_check(const struct slm_kvcache *mgr, char *err);

/* Test hook: every block hash is ANDed with mask from now on (default all ones), to force
 * collisions. Call it on an empty cache only. */
void slm_kvcache_set_hash_mask(struct slm_kvcache *mgr, uint64_t mask);

#endif
