/*
 * ipc/arena.h - the payload arena: the client's ring allocator, and the daemon's range check.
 *
 * Client side. Payloads (prompt text, token ids, chat messages, stop strings) are written into
 * the arena and referenced from an SQE by (offset, length). Space is handed out in order, like a
 * ring: a byte position that only grows (64-bit, never wraps), whose offset is position modulo
 * arena_bytes; an allocation that would straddle the end skips to offset 0 (the skipped bytes
 * are freed with it). Every allocation belongs to the SQE it is committed with; its space comes
 * back once the daemon's sq_consumed passes that SQE's position, which the daemon stores only
 * after it has copied the payloads out (shm.h, slm_shm_store_sq_consumed).
 *
 *   off = alloc(len) ... (several per SQE) ... write payloads;
 *   slot = slm_ring_get(sq); if (!slot) rollback(); else fill slot, commit(sq->pos), publish.
 *
 * Daemon side. Offsets and lengths in an SQE are hostile: slm_arena_check_range validates a
 * range without overflow, slm_arena_copy_out validates and copies into private memory.
 */
#ifndef SLM_IPC_ARENA_H
#define SLM_IPC_ARENA_H

#include <errno.h>
#include <stdint.h>

#define SLM_ARENA_ALIGN 8u   /* every allocation starts at a multiple of 8 bytes */

struct slm_arena_mark {
    uint32_t sq_pos;     /* the SQE the allocations belong to */
    uint64_t end;        /* head after them: tail moves here once the daemon consumed sq_pos */
};

struct slm_arena {
    uint8_t *base;                  /* shared: (bytes) */
    uint32_t bytes;
    const uint32_t *sq_consumed;    /* shared: the daemon's word in the header */
    uint64_t head;                  /* private: bytes ever handed out, skips included */
    uint64_t tail;                  /* private: bytes ever given back */
    uint64_t committed;             /* private: head at the last commit */
    struct slm_arena_mark *marks;   /* private FIFO, (cap) */
    uint32_t cap, first, count;
};

/* Sets up the allocator over base[0, bytes) (the shm's arena), freeing by the shared word
 * sq_consumed (&shm->hdr->sq_consumed), with room for max_pending SQEs that carry payloads
 * and are not consumed yet (2 x sq_entries is plenty). Returns 0, -EINVAL or -ENOMEM. */
int slm_arena_init(struct slm_arena *a, void *base, uint32_t bytes, const uint32_t *sq_consumed,
                   uint32_t max_pending);

/* Frees the private bookkeeping. Safe twice. */
void slm_arena_free(struct slm_arena *a);

/* Reserves len bytes (rounded up to SLM_ARENA_ALIGN), contiguous, and stores their offset in
 * the arena in *off (what goes into the SQE). Frees what the daemon has consumed first when
 * needed. len 0 gives *off = 0 and reserves nothing. Returns 0, -EAGAIN when the space (or the
 * FIFO of pending SQEs) is full now: wait for completions or a moment, then retry; -E2BIG when
 * len can never fit. */
int slm_arena_alloc(struct slm_arena *a, uint32_t len, uint32_t *off);

/* The address of offset off in the arena (for writing the payload). */
static inline void *slm_arena_ptr(const struct slm_arena *a, uint32_t off)
{
    return a->base + off;
}

/* Ties every allocation since the last commit (or rollback) to the SQE at position sq_pos,
 * which the caller is about to publish. Does nothing when there was none. */
void slm_arena_commit(struct slm_arena *a, uint32_t sq_pos);

/* Gives back every allocation since the last commit (the SQE could not be submitted). */
void slm_arena_rollback(struct slm_arena *a);

/* Frees the space of every committed SQE before the daemon's sq_consumed (acquire load, pairs
 * with the daemon's release store: its copies are done before we reuse the bytes). */
void slm_arena_reclaim(struct slm_arena *a);

/* Bytes currently reserved (skips included), for tests and stats. */
static inline uint64_t slm_arena_used(const struct slm_arena *a)
{
    return a->head - a->tail;
}

/* Daemon: 0 when [off, off + len) lies inside an arena of arena_bytes bytes, else -EINVAL.
 * Overflow-safe for any off and len (off + len is never computed in 32 bits). */
static inline int slm_arena_check_range(uint32_t arena_bytes, uint32_t off, uint32_t len)
{
    return (off <= arena_bytes && len <= arena_bytes - off) ? 0 : -EINVAL;
}

/* Daemon: checks the range as above, then copies it from the arena into dst (private memory,
 * len bytes). Returns 0 or -EINVAL (nothing copied). */
int slm_arena_copy_out(const void *arena, uint32_t arena_bytes, uint32_t off, uint32_t len, void *dst);

#endif
