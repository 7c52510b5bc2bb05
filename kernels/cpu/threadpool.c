/* kernels/cpu/threadpool.c - see threadpool.h. */
#define _GNU_SOURCE
#include "threadpool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* How long an idle worker spins before it sleeps: about the gap between two ops of
 * a forward pass plus the sampler, so that a decode loop never sleeps mid-token. */
#define SPIN_ITERS (1 << 16)

struct slm_pool {
    int n_threads;
    pthread_t *threads;              /* (n_threads - 1) workers */
    slm_pool_fn fn;                  /* written before gen is released */
    void *arg;
    _Atomic unsigned gen;            /* bumped (release) to start a run */
    _Atomic int done;                /* workers finished with the current run */
    _Atomic int sleepers;            /* workers in (or about to enter) futex wait */
    _Atomic int stop;
};

struct worker_arg {
    struct slm_pool *pool;
    int ith;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic unsigned *addr, unsigned val)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned *addr)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
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
        /* Acquire pairs with the release in slm_pool_run: fn and arg are visible. */
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            /* Announce the sleep before re-checking gen, so a runner that bumps gen
             * after our check sees sleepers > 0 and wakes us (seq_cst on both sides). */
            atomic_fetch_add(&pool->sleepers, 1);
            if (atomic_load(&pool->gen) == seen) futex_wait(&pool->gen, seen);
            atomic_fetch_sub(&pool->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) return NULL;
        pool->fn(pool->arg, wa.ith, pool->n_threads);
        /* Release: the caller's acquire of done sees everything this run wrote. */
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
}

struct slm_pool *slm_pool_create(int n_threads)
{
    if (n_threads < 1) {
        errno = EINVAL;
        return NULL;
    }
    struct slm_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = 1;
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) goto err;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto err;
        wa->pool = pool;
        wa->ith = i;
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
    free(pool);
    *pp = NULL;
}

void slm_pool_run(struct slm_pool *pool, slm_pool_fn fn, void *arg)
{
    int workers = pool->n_threads - 1;
    if (workers == 0) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    /* seq_cst: ordered against the sleepers load below (see worker_main). */
    atomic_fetch_add(&pool->gen, 1);
    if (atomic_load(&pool->sleepers) > 0) futex_wake_all(&pool->gen);
    fn(arg, 0, pool->n_threads);
    while (atomic_load_explicit(&pool->done, memory_order_acquire) != workers) cpu_relax();
}

int slm_pool_threads(const struct slm_pool *pool)
{
    return pool->n_threads;
}
