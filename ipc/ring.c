/* ipc/ring.c - see ring.h. */
#include "ipc/ring.h"

#include <errno.h>
#include <string.h>

void slm_ring_format(void *slots, uint32_t entries, uint32_t start)
{
    uint8_t *s = slots;
    for (uint32_t k = 0; k < entries; k++) {
        uint32_t p = start + k;
        uint8_t *slot = s + (size_t)(p & (entries - 1)) * SLM_RING_SLOT_BYTES;
        memset(slot, 0, SLM_RING_SLOT_BYTES);
        /* Relaxed is enough: the peer first sees this memory after the fd crosses the socket
         * (a syscall, which orders everything before it). */
        __atomic_store_n((uint32_t *)(void *)slot, p, __ATOMIC_RELAXED);
    }
}

int slm_ring_init(struct slm_ring *r, void *slots, uint32_t entries, uint32_t start)
{
    if (!slots || entries == 0 || (entries & (entries - 1)) != 0 || entries > (1u << 31)) return -EINVAL;
    r->slots = slots;
    r->entries = entries;
    r->mask = entries - 1;
    r->pos = start;
    return 0;
}

int slm_ring_push(struct slm_ring *r, const void *entry)
{
    uint8_t *slot = slm_ring_get(r);
    if (!slot) return -EAGAIN;
    memcpy(slot + 4, (const uint8_t *)entry + 4, SLM_RING_SLOT_BYTES - 4);
    slm_ring_publish(r, slot);
    return 0;
}

int slm_ring_get_checked(const struct slm_ring *r, void **slot)
{
    uint32_t *seq = slm_ring_seq_(r, r->pos);
    uint32_t v = __atomic_load_n(seq, __ATOMIC_ACQUIRE);   /* read once: the client writes it */
    *slot = NULL;
    if (v == r->pos) {
        *slot = seq;
        return 0;
    }
    if (v == r->pos - r->entries + 1) return -EAGAIN;
    return -EBADMSG;
}

int slm_ring_take(struct slm_ring *r, void *out)
{
    uint32_t *seq = slm_ring_seq_(r, r->pos);
    /* Acquire pairs with the client's release in slm_ring_publish: the entry's bytes written
     * before the seq are visible to the copy below. */
    if (__atomic_load_n(seq, __ATOMIC_ACQUIRE) != r->pos + 1) return -EAGAIN;
    /* One copy of the shared bytes; from here on only the private copy is read. */
    memcpy(out, seq, SLM_RING_SLOT_BYTES);
    *(uint32_t *)out = r->pos;
    /* Release: the copy above completes before the client may refill the slot. */
    __atomic_store_n(seq, r->pos + r->entries, __ATOMIC_RELEASE);
    r->pos++;
    return 0;
}
