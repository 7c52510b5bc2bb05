/*
 * ipc/shm.h - one client's shared memory: a sealed memfd holding the header page, the
 * submission ring, the completion ring and the payload arena (protocol.h, docs/protocol.md).
 *
 * The daemon creates it (slm_shm_create) and sends the fd in WELCOME; the client maps the fd it
 * received (slm_shm_map), which checks size, seals and every field of the header. Each side
 * keeps a private, validated copy of the layout in struct slm_shm and never re-reads the
 * layout fields of the shared header afterwards: the header page is writable by the peer.
 */
#ifndef SLM_IPC_SHM_H
#define SLM_IPC_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "ipc/protocol.h"
#include "ipc/ring.h"

/* Limits. Ring sizes are rounded up to a power of two, then clamped; the arena is rounded up to
 * a whole page, then clamped. A request of 0 means the default. */
#define SLM_SHM_MIN_ENTRIES 16u
#define SLM_SHM_MAX_ENTRIES 4096u
#define SLM_SHM_DEFAULT_SQ_ENTRIES 256u
#define SLM_SHM_DEFAULT_CQ_ENTRIES 1024u
#define SLM_SHM_MIN_ARENA (64u << 10)
#define SLM_SHM_MAX_ARENA (64u << 20)
#define SLM_SHM_DEFAULT_ARENA (1u << 20)
#define SLM_SHM_ALIGN 4096u       /* every region starts on a page; the daemon's layout */
#define SLM_SHM_MIN_REGION_ALIGN 64u /* what a client accepts: a cache line */

struct slm_shm {
    int fd;                        /* the memfd; -1 once closed */
    void *base;                    /* the whole mapping, `bytes` long; NULL when unmapped */
    uint32_t bytes;                /* private: total size */
    struct slm_shm_header *hdr;    /* shared: == base; only the mutable words are used */
    /* Private copies of the validated layout. */
    uint32_t sq_entries, cq_entries, arena_bytes;
    void *sq;                      /* shared: (sq_entries, 128) */
    void *cq;                      /* shared: (cq_entries, 128) */
    uint8_t *arena;                /* shared: (arena_bytes) */
    /* Daemon side: the flags the daemon last stored in hdr->daemon_flags. The daemon decides
     * from this copy, never from the shared word, which a client can overwrite. */
    uint32_t daemon_flags;
};

/* Rounds each request (0 = default) as described above and clamps it to the limits. */
void slm_shm_clamp(uint32_t *sq_entries, uint32_t *cq_entries, uint32_t *arena_bytes);

/* Size of the memfd for already-clamped sizes, and the offsets of the three regions in the
 * daemon's layout (header, SQ, CQ, arena, each page-aligned). Any out pointer may be NULL. */
uint32_t slm_shm_layout(uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                        uint32_t *sq_off, uint32_t *cq_off, uint32_t *arena_off);

/* Daemon: creates the memfd for the clamped sizes (the values used are in shm afterwards),
 * fills the header (magic, version, layout; every other word 0) and the initial slot seqs,
 * seals it (shrink, grow, seal) and maps it read-write. Returns 0, or -errno with err set;
 * on failure nothing is left open. Send shm->fd and shm->bytes in WELCOME. */
int slm_shm_create(struct slm_shm *shm, uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                   char err[SLM_ERR_LEN]);

/* Checks a header against the size of the memory that holds it: magic, version, total_bytes ==
 * bytes, ring sizes powers of two within the limits, arena within the limits, every region
 * aligned to 64 bytes, inside [SLM_SHM_HEADER_BYTES, bytes) and not overlapping another.
 * Reads each field once (copy the header first if a peer may be writing it). 0 or -EBADMSG
 * (-EPROTO for a version mismatch) with the first problem in err. */
int slm_shm_check_header(const struct slm_shm_header *h, uint32_t bytes, char err[SLM_ERR_LEN]);

/* Client: takes ownership of `fd` (closed on failure), checks that it is a regular file whose
 * size is expected_bytes (WELCOME's shm_bytes) and that it carries F_SEAL_SHRINK, F_SEAL_GROW
 * and F_SEAL_SEAL (so nobody can change its size under the mappings),
 * maps it, and validates a copy of the header. Returns 0, or -errno with err set. */
int slm_shm_map(struct slm_shm *shm, int fd, uint32_t expected_bytes, char err[SLM_ERR_LEN]);

/* Attaches the private ring states: SQ and CQ at position 0 (protocol start). Either side. */
void slm_shm_rings(const struct slm_shm *shm, struct slm_ring *sq, struct slm_ring *cq);

/* Unmaps and closes. Safe on a struct that slm_shm_create/map failed on (they leave base NULL
 * and fd -1) and on one already unmapped. Leaves shm->base NULL and shm->fd -1. */
void slm_shm_unmap(struct slm_shm *shm);

/* Daemon: stores that the SQ has been consumed up to position `pos` (exclusive), after the
 * payloads of every SQE before pos have been copied out of the arena. Release: those arena
 * reads complete before the client, acquiring sq_consumed, may reuse the space. */
static inline void slm_shm_store_sq_consumed(struct slm_shm *shm, uint32_t pos)
{
    __atomic_store_n(&shm->hdr->sq_consumed, pos, __ATOMIC_RELEASE);
}

/* Client: the position up to which the daemon has consumed the SQ. Acquire, pairing with the
 * store above: the daemon's arena reads are done before we overwrite the space. */
static inline uint32_t slm_shm_load_sq_consumed(const struct slm_shm *shm)
{
    return __atomic_load_n(&shm->hdr->sq_consumed, __ATOMIC_ACQUIRE);
}

/* Daemon: sets or clears SLM_SHM_CLOSING (no new requests taken; the daemon drains). Relaxed:
 * advisory for the client, which learns the outcome of its requests from completions. */
void slm_shm_set_closing(struct slm_shm *shm, int closing);

#endif
