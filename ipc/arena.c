/* ipc/arena.c - see arena.h. */
#include "ipc/arena.h"

#include <stdlib.h>
#include <string.h>

int slm_arena_init(struct slm_arena *a, void *base, uint32_t bytes, const uint32_t *sq_consumed,
                   uint32_t max_pending)
{
    memset(a, 0, sizeof *a);
    if (!base || bytes < SLM_ARENA_ALIGN || bytes % SLM_ARENA_ALIGN != 0 || !sq_consumed || max_pending == 0)
        return -EINVAL;
    a->marks = calloc(max_pending, sizeof *a->marks);
    if (!a->marks) return -ENOMEM;
    a->base = base;
    a->bytes = bytes;
    a->sq_consumed = sq_consumed;
    a->cap = max_pending;
    return 0;
}

void slm_arena_free(struct slm_arena *a)
{
    free(a->marks);
    a->marks = NULL;
    a->cap = a->count = 0;
}

void slm_arena_reclaim(struct slm_arena *a)
{
    uint32_t consumed = __atomic_load_n(a->sq_consumed, __ATOMIC_ACQUIRE);
    while (a->count > 0) {
        const struct slm_arena_mark *m = &a->marks[a->first];
        /* Positions are free-running mod 2^32: "consumed is past sq_pos" is a signed distance. */
        if ((int32_t)(consumed - m->sq_pos) <= 0) break;
        a->tail = m->end;
        a->first = (a->first + 1) % a->cap;
        a->count--;
    }
}

/* Bytes to skip at the end (0 or up to the end of the arena) and in all, for len at head. */
static uint64_t need_for(const struct slm_arena *a, uint32_t len, uint64_t *skip)
{
    uint64_t off = a->head % a->bytes;
    *skip = off + len > a->bytes ? a->bytes - off : 0;
    return *skip + len;
}

int slm_arena_alloc(struct slm_arena *a, uint32_t len, uint32_t *off)
{
    *off = 0;
    if (len == 0) return 0;
    if (len > a->bytes) return -E2BIG;
    uint32_t len8 = (len + SLM_ARENA_ALIGN - 1) & ~(SLM_ARENA_ALIGN - 1);   /* <= bytes: bytes is aligned */
    int new_mark = a->head == a->committed;
    if (new_mark && a->count == a->cap) {
        slm_arena_reclaim(a);
        if (a->count == a->cap) return -EAGAIN;
    }
    uint64_t skip, need = need_for(a, len8, &skip);
    if (a->head - a->tail + need > a->bytes) {
        slm_arena_reclaim(a);
        need = need_for(a, len8, &skip);
        if (a->head == a->tail && need > a->bytes) {
            /* Empty, but the tail end is too short: nothing is live, so jump to offset 0. */
            a->head += skip;
            a->tail = a->committed = a->head;
            need = need_for(a, len8, &skip);
        }
        if (a->head - a->tail + need > a->bytes) return -EAGAIN;
    }
    a->head += skip;
    *off = (uint32_t)(a->head % a->bytes);
    a->head += len8;
    return 0;
}

void slm_arena_commit(struct slm_arena *a, uint32_t sq_pos)
{
    if (a->head == a->committed) return;
    /* alloc made sure a slot is free when it opened this group. */
    struct slm_arena_mark *m = &a->marks[(a->first + a->count) % a->cap];
    m->sq_pos = sq_pos;
    m->end = a->head;
    a->count++;
    a->committed = a->head;
}

void slm_arena_rollback(struct slm_arena *a)
{
    a->head = a->committed;
}

int slm_arena_copy_out(const void *arena, uint32_t arena_bytes, uint32_t off, uint32_t len, void *dst)
{
    if (slm_arena_check_range(arena_bytes, off, len) != 0) return -EINVAL;
    if (len) memcpy(dst, (const uint8_t *)arena + off, len);
    return 0;
}
