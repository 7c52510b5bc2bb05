/*
 * tests/test_threadpool.c - the CPU backend's fork-join pool.
 *
 * 1. slm_pool_for runs every chunk exactly once (0, 1, a few and many chunks, 1-4 threads,
 *    thousands of runs back to back, so late joiners meet closed and newer runs).
 * 2. No two threads work under the same slot at the same time.
 * 3. slm_pool_run calls every ith once with nth = the pool's size.
 * 4. A run after the workers have gone to sleep (futex) still completes.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/threadpool.h"

static int failures;

struct for_ctx {
    int64_t n;
    _Atomic int *hits;          /* (n) */
    _Atomic int busy[8];        /* threads inside a chunk, per slot */
    _Atomic int slot_clash;
    _Atomic int bad_slot;
    int n_threads;
};

static void for_chunk(void *arg, int64_t chunk, int slot)
{
    struct for_ctx *c = arg;
    if (slot < 0 || slot >= c->n_threads) {
        atomic_fetch_add(&c->bad_slot, 1);
        return;
    }
    if (atomic_fetch_add(&c->busy[slot], 1) != 0) atomic_fetch_add(&c->slot_clash, 1);
    if (chunk >= 0 && chunk < c->n) atomic_fetch_add(&c->hits[chunk], 1);
    for (volatile int spin = 0; spin < (int)(chunk % 7) * 50; spin++) {
    }
    atomic_fetch_sub(&c->busy[slot], 1);
}

static void check_for(struct slm_pool *pool, int threads, int64_t n, int runs)
{
    struct for_ctx c = {.n = n, .n_threads = threads};
    c.hits = calloc((size_t)(n > 0 ? n : 1), sizeof *c.hits);
    for (int r = 0; r < runs; r++) {
        for (int64_t i = 0; i < n; i++) atomic_store(&c.hits[i], 0);
        slm_pool_for(pool, n, for_chunk, &c);
        for (int64_t i = 0; i < n; i++) {
            int h = atomic_load(&c.hits[i]);
            if (h != 1) {
                printf("pool_for (%d threads, %lld chunks, run %d): chunk %lld ran: expected 1 time, got %d\n",
                       threads, (long long)n, r, (long long)i, h);
                failures++;
                r = runs;
                break;
            }
        }
    }
    if (atomic_load(&c.slot_clash) || atomic_load(&c.bad_slot)) {
        printf("pool_for (%d threads, %lld chunks): slots: expected unique and < %d, got %d clashes, %d bad\n",
               threads, (long long)n, threads, atomic_load(&c.slot_clash), atomic_load(&c.bad_slot));
        failures++;
    }
    free(c.hits);
}

struct run_ctx {
    _Atomic int hits[8];
    _Atomic int bad_nth;
    int nth;
};

static void run_part(void *arg, int ith, int nth)
{
    struct run_ctx *c = arg;
    if (nth != c->nth || ith < 0 || ith >= nth) atomic_fetch_add(&c->bad_nth, 1);
    else atomic_fetch_add(&c->hits[ith], 1);
}

static void check_run(struct slm_pool *pool, int threads)
{
    for (int r = 0; r < 200; r++) {
        struct run_ctx c = {.nth = threads};
        slm_pool_run(pool, run_part, &c);
        for (int i = 0; i < threads; i++)
            if (atomic_load(&c.hits[i]) != 1 || atomic_load(&c.bad_nth)) {
                printf("pool_run (%d threads, run %d): part %d: expected 1 call with nth %d, got %d (%d bad)\n",
                       threads, r, i, threads, atomic_load(&c.hits[i]), atomic_load(&c.bad_nth));
                failures++;
                return;
            }
    }
}

int main(void)
{
    for (int threads = 1; threads <= 4; threads++) {
        struct slm_pool *pool = slm_pool_create(threads);
        if (!pool) {
            printf("slm_pool_create(%d): expected a pool, got NULL\n", threads);
            return 1;
        }
        if (slm_pool_threads(pool) != threads) {
            printf("slm_pool_threads: expected %d, got %d\n", threads, slm_pool_threads(pool));
            failures++;
        }
        const int64_t sizes[] = {0, 1, 2, 3, 5, 17, 1000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            check_for(pool, threads, sizes[i], sizes[i] > 100 ? 200 : 3000);
        check_run(pool, threads);
        /* Let the workers fall asleep on the futex, then run again. */
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        check_for(pool, threads, 64, 3);
        slm_pool_destroy(&pool);
        if (pool) {
            printf("slm_pool_destroy: expected the pointer set to NULL\n");
            failures++;
        }
    }
    struct slm_pool *none = NULL;
    slm_pool_destroy(&none);   /* NULL-safe */
    if (failures) printf("test_threadpool: %d failures\n", failures);
    else printf("test_threadpool: ok\n");
    return failures ? 1 : 0;
}
