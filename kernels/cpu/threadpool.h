/*
 * kernels/cpu/threadpool.h - a fork-join pool for the CPU backend's ops.
 *
 * slm_pool_run() hands one function to every thread of the pool (the caller is
 * thread 0) and returns when all have returned. Idle workers spin briefly on a
 * generation counter (so back-to-back ops of one forward pass cost ~100 ns to
 * dispatch), then sleep on a futex; a run wakes sleepers with one FUTEX_WAKE.
 */
#ifndef SLM_KERNELS_CPU_THREADPOOL_H
#define SLM_KERNELS_CPU_THREADPOOL_H

struct slm_pool;

typedef void (*slm_pool_fn)(void *arg, int ith, int nth);

/* A pool of n_threads (>= 1) including the caller. Returns NULL on failure (errno set). */
struct slm_pool *slm_pool_create(int n_threads);

/* Stops and joins the workers; sets *pool to NULL. NULL-safe. */
void slm_pool_destroy(struct slm_pool **pool);

/* Runs fn(arg, ith, nth) for ith = 0..nth-1 across the pool and waits for all.
 * Not reentrant: one run at a time per pool. */
void slm_pool_run(struct slm_pool *pool, slm_pool_fn fn, void *arg);

/* Number of threads, the caller included. */
int slm_pool_threads(const struct slm_pool *pool);

#endif
