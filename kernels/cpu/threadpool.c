/* kernels/cpu/threadpool.c - see threadpool.h. */
#define _GNU_SOURCE
#include "kernels/cpu/threadpool.h"
#include "common/clock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* An idle worker first spins (the gap between two ops of a forward pass is a few
 * microseconds), then yields its core between checks until WAIT_YIELD_NS have passed
 * (so on a busy machine it gives way to the thread it waits for, or to others), then
 * sleeps on the futex. About the gap between two decode steps, sampler included. */
#define SPIN_ITERS 2048
#define WAIT_YIELD_NS 2000000
/* How long the caller spins on joined workers before it yields its core between checks
 * (a worker preempted mid-chunk may be waiting for this very core). */
#define WAIT_SPINS (1 << 12)

/* run: (run id << 32) | CLOSED | number of threads that joined (the caller included). */
#define RUN_CLOSED (1ull << 31)
#define RUN_COUNT_MASK 0xffffull

struct slm_pool {
    int n_threads;
    pthread_t *threads;              /* (n_threads - 1) workers */
    unsigned run_id;                 /* the caller's: id of the last run */
    slm_pool_chunk_fn fn;            /* the run: written before run is released */
    void *arg;
    int64_t n_chunks;
    _Alignas(64) _Atomic uint64_t run;
    _Atomic unsigned gen;            /* the run id, bumped after run; the futex word */
    _Atomic int sleepers;            /* workers in (or about to enter) futex wait */
    _Atomic int stop;
    _Alignas(64) _Atomic int done;       /* joined workers finished with the run */
    struct segment *segs;                /* (n_threads) */
};

/* The chunks are cut into one contiguous segment per slot: a thread walks its own
 * segment in order (one memory stream, which the hardware prefetchers follow), then
 * helps with the others'. */
struct segment {
    _Alignas(64) _Atomic int64_t next;   /* next chunk to take */
    int64_t end;
};

struct worker_arg {
    struct slm_pool *pool;
};

static void futex_wait(_Atomic unsigned *addr, unsigned val)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned *addr)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void take_chunks(struct slm_pool *pool, int slot)
{
    int nth = pool->n_threads;
    for (int k = 0; k < nth; k++) {
        struct segment *sg = &pool->segs[(slot + k) % nth];
        for (;;) {
            int64_t c = atomic_fetch_add_explicit(&sg->next, 1, memory_order_relaxed);
            if (c >= sg->end) break;
            pool->fn(pool->arg, c, slot);
        }
    }
}

/* Joins run `id` if it is still open; returns the slot, or -1. */
static int join_run(struct slm_pool *pool, unsigned id)
{
    uint64_t r = atomic_load_explicit(&pool->run, memory_order_acquire);
    for (;;) {
        if ((unsigned)(r >> 32) != id || (r & RUN_CLOSED)) return -1;
        /* Acquire: the caller's release store of run (or a later join, which continues
         * its release sequence) makes fn, arg and n_chunks visible. */
        if (atomic_compare_exchange_weak_explicit(&pool->run, &r, r + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (int)(r & RUN_COUNT_MASK);
    }
}

static void *worker_main(void *p)
{
    struct worker_arg wa = *(struct worker_arg *)p;
    free(p);
    struct slm_pool *pool = wa.pool;
    /* gen is 0 until the first run, which can come before this thread is scheduled:
     * reading gen here instead could take that run's value and miss it. */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        int64_t yield_until = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                slm_cpu_relax();
                continue;
            }
            if (!yield_until) yield_until = slm_mono_ns() + WAIT_YIELD_NS;
            if (slm_mono_ns() < yield_until) {
                sched_yield();
                continue;
            }
            /* Announce the sleep before re-checking gen, so a runner that bumps gen
             * after our check sees sleepers > 0 and wakes us (seq_cst on both sides). */
            atomic_fetch_add(&pool->sleepers, 1);
            if (atomic_load(&pool->gen) == seen) futex_wait(&pool->gen, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
            spins = 0;
            yield_until = 0;
        }
        seen = g;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) return NULL;
        int slot = join_run(pool, g);
        if (slot < 0) continue;   /* over already, or a newer run is being set up */
        take_chunks(pool, slot);
        /* Release: the caller's acquire of done sees everything this run wrote. */
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
}

struct slm_pool *slm_pool_create(int n_threads)
{
    if (n_threads < 1 || n_threads > (int)RUN_COUNT_MASK) {
        errno = EINVAL;
        return NULL;
    }
    struct slm_pool *pool = aligned_alloc(64, (sizeof *pool + 63) / 64 * 64);
    if (!pool) return NULL;
    *pool = (struct slm_pool){.n_threads = 1};
    pool->segs = aligned_alloc(64, (size_t)n_threads * sizeof *pool->segs);
    if (!pool->segs) goto err;
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) goto err;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto err;
        wa->pool = pool;
        int rc = pthread_create(&pool->threads[i - 1], NULL, worker_main, wa);
        if (rc != 0) {
            free(wa);
            errno = rc;
            goto err;
        }
        pool->n_threads = i + 1;
    }
    return pool;
err:
    slm_pool_destroy(&pool);
    return NULL;
}

void slm_pool_destroy(struct slm_pool **pp)
{
    struct slm_pool *pool = *pp;
    if (!pool) return;
    atomic_store_explicit(&pool->stop, 1, memory_order_release);
    atomic_fetch_add(&pool->gen, 1);
    futex_wake_all(&pool->gen);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i - 1], NULL);
    free(pool->threads);
    free(pool->segs);
    free(pool);
    *pp = NULL;
}

void slm_pool_for(struct slm_pool *pool, int64_t n_chunks, slm_pool_chunk_fn fn, void *arg)
{
    if (n_chunks <= 0) return;
    if (pool->n_threads == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; c++) fn(arg, c, 0);
        return;
    }
    unsigned id = ++pool->run_id;
    if (id == 0) id = ++pool->run_id;   /* 0 is the workers' "nothing seen yet" */
    pool->fn = fn;
    pool->arg = arg;
    pool->n_chunks = n_chunks;
    for (int i = 0; i < pool->n_threads; i++) {
        atomic_store_explicit(&pool->segs[i].next, n_chunks * i / pool->n_threads, memory_order_relaxed);
        pool->segs[i].end = n_chunks * (i + 1) / pool->n_threads;
    }
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    /* Release: a worker whose join succeeds sees the fields above. */
    atomic_store_explicit(&pool->run, (uint64_t)id << 32 | 1, memory_order_release);
    /* seq_cst: ordered against the sleepers load below (see worker_main). */
    atomic_store(&pool->gen, id);
    if (atomic_load(&pool->sleepers) > 0) futex_wake_all(&pool->gen);
    take_chunks(pool, 0);
    uint64_t r = atomic_fetch_or_explicit(&pool->run, RUN_CLOSED, memory_order_acq_rel);
    int joined = (int)(r & RUN_COUNT_MASK) - 1;
    for (int spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) != joined;) {
        if (++spins < WAIT_SPINS) {
            slm_cpu_relax();
        } else {
            sched_yield();
            spins = 0;
        }
    }
}

struct run_shim {
    slm_pool_fn fn;
    void *arg;
    int nth;
};

static void run_part(void *arg, int64_t chunk, int slot)
{
    struct run_shim *s = arg;
    s->fn(s->arg, (int)chunk, s->nth);
}

void slm_pool_run(struct slm_pool *pool, slm_pool_fn fn, void *arg)
{
    struct run_shim s = {.fn = fn, .arg = arg, .nth = pool->n_threads};
    slm_pool_for(pool, pool->n_threads, run_part, &s);
}

int slm_pool_threads(const struct slm_pool *pool)
{
    return pool->n_threads;
}
