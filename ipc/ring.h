/*
 * ipc/ring.h - the single-producer single-consumer rings of the shared memory (protocol.h).
 *
 * Both rings hold 128-byte slots whose first 4 bytes are the slot's sequence number; the SQ
 * carries struct slm_sqe, the CQ struct slm_cqe, and this code serves both. Position p
 * (free-running uint32, wrapping at 2^32) lives in slot p & (N - 1); since N divides 2^32,
 * the wrap needs no special case:
 *   slot free for position p:   seq == p        (initially slot i holds i)
 *   slot full with position p:  seq == p + 1    (stored by the producer, release)
 *   after the consumer:         seq == p + N    (free for position p + N, release)
 * Each side keeps its own position privately (struct slm_ring.pos); nobody reads the peer's
 * index. Fields of struct slm_ring are private to one process except `slots`, which points
 * into shared memory.
 *
 * Who may use what:
 *   producer (client on the SQ, daemon on the CQ): slm_ring_get, fill, slm_ring_publish;
 *   consumer that trusts its producer (client on the CQ): slm_ring_peek, read, slm_ring_seen;
 *   consumer that does not (daemon on the SQ): slm_ring_take, which copies the entry into
 *   private memory before the slot is given back. The daemon never reads a field of an SQE
 *   in shared memory.
 * A ring is driven by one thread per side (or callers serialize); nothing here locks.
 */
#ifndef SLM_IPC_RING_H
#define SLM_IPC_RING_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/protocol.h"

#define SLM_RING_SLOT_BYTES 128u
_Static_assert(sizeof(struct slm_sqe) == SLM_RING_SLOT_BYTES, "SQE is one slot");
_Static_assert(sizeof(struct slm_cqe) == SLM_RING_SLOT_BYTES, "CQE is one slot");

struct slm_ring {
    uint8_t *slots;     /* shared: (entries, SLM_RING_SLOT_BYTES), each beginning with its seq */
    uint32_t entries;   /* private: a power of two */
    uint32_t mask;      /* private: entries - 1 */
    uint32_t pos;       /* private: the next position this side produces or consumes */
};

/* Writes the initial sequence numbers of a fresh ring: slot (start + k) & mask gets start + k
 * for k in [0, entries). The protocol starts at 0; tests start near 2^32 to cross the wrap.
 * Call before the peer can see the memory (the daemon, before sending the fd). */
void slm_ring_format(void *slots, uint32_t entries, uint32_t start);

/* Attaches one side to a ring at position `start` (0 in the protocol). entries must be a
 * power of two in [1, 2^31]. Returns 0 or -EINVAL. Reads nothing from shared memory. */
int slm_ring_init(struct slm_ring *r, void *slots, uint32_t entries, uint32_t start);

static inline uint32_t *slm_ring_seq_(const struct slm_ring *r, uint32_t pos)
{
    return (uint32_t *)(void *)(r->slots + (size_t)(pos & r->mask) * SLM_RING_SLOT_BYTES);
}

/* ---- producer ------------------------------------------------------------------------ */

/* Returns the slot for the next position, or NULL when the ring is full (the consumer has not
 * freed it yet). The caller fills bytes [4, 128) of the slot (never the seq) and then calls
 * slm_ring_publish; calling get again before publishing returns the same slot.
 * Acquire: it pairs with the consumer's release in slm_ring_seen/take, so the consumer's
 * reads of the previous lap's entry are finished before we overwrite it. */
static inline void *slm_ring_get(const struct slm_ring *r)
{
    uint32_t *seq = slm_ring_seq_(r, r->pos);
    if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != r->pos) return NULL;
    return seq;
}

/* Publishes the slot slm_ring_get returned: stores seq = pos + 1 with release ordering, so the
 * consumer that acquires the seq sees every byte written into the slot before; then advances
 * the private position. */
static inline void slm_ring_publish(struct slm_ring *r, void *slot)
{
    __atomic_store_n((uint32_t *)slot, r->pos + 1, __ATOMIC_RELEASE);
    r->pos++;
}

/* get + copy bytes [4, 128) of `entry` + publish, for callers that build the entry privately
 * (a struct assignment into the slot would also overwrite its seq). Returns 0, or -EAGAIN
 * when the ring is full. */
int slm_ring_push(struct slm_ring *r, const void *entry);

/* The daemon's get on the CQ, whose seqs the client writes: 0 with *slot set, -EAGAIN when
 * full (the slot still holds the unconsumed entry of the previous lap, seq == pos - N + 1),
 * -EBADMSG when the seq is anything else (the client scribbled on it: disconnect it). */
int slm_ring_get_checked(const struct slm_ring *r, void **slot);

/* ---- consumer ------------------------------------------------------------------------ */

/* Returns the next full slot, read in place, or NULL when the ring is empty. Only for a
 * consumer that trusts its producer (the client on the CQ). Acquire: pairs with the
 * producer's release in slm_ring_publish, so the entry's bytes are visible. */
static inline const void *slm_ring_peek(const struct slm_ring *r)
{
    uint32_t *seq = slm_ring_seq_(r, r->pos);
    if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != r->pos + 1) return NULL;
    return seq;
}

/* Gives back the slot slm_ring_peek returned: seq = pos + N with release ordering, so our
 * reads of the entry are complete before the producer can reuse the slot; advances pos. */
static inline void slm_ring_seen(struct slm_ring *r)
{
    __atomic_store_n(slm_ring_seq_(r, r->pos), r->pos + r->entries, __ATOMIC_RELEASE);
    r->pos++;
}

/* The daemon's consumer: if the next slot is full, copies its 128 bytes into `out` (private
 * memory), gives the slot back and advances; returns 0, or -EAGAIN when empty. The seq of the
 * copy is set to the position taken (pos before the call) rather than what shared memory holds.
 * The copy may be torn if the client writes the slot concurrently; every field of it must be
 * validated as hostile input. Reads each shared byte once. */
int slm_ring_take(struct slm_ring *r, void *out);

/* 1 when the consumer's next slot is full (an entry is waiting), else 0. Acquire, as peek. */
static inline int slm_ring_ready(const struct slm_ring *r)
{
    return slm_ring_peek(r) != NULL;
}

#endif
