/*
 * kernels/cpu/threadpool.h - a fork-join pool for the CPU backend's ops.
 *
 * A run hands out numbered chunks of work: the caller publishes the run, workers that
 * see it in time join it, and everyone takes chunks from one counter until none are
 * left. When the caller runs out of chunks it closes the run to late joiners and waits
 * only for the workers that joined. So a worker that the OS has descheduled (the
 * machine is shared, or busy) costs nothing: the caller does its share. Idle workers
 * spin briefly on a generation counter (back-to-back ops of one forward pass cost
 * ~100 ns to dispatch), then sleep on a futex; a run wakes sleepers with one FUTEX_WAKE.
 */
#ifndef SLM_KERNELS_CPU_THREADPOOL_H
#define SLM_KERNELS_CPU_THREADPOOL_H

#include <stdint.h>

struct slm_pool;

/* One chunk of a run. slot < slm_pool_threads() is unique among the threads working on
 * the run at the same time (the caller is slot 0): an index for per-thread scratch. */
typedef void (*slm_pool_chunk_fn)(void *arg, int64_t chunk, int slot);

typedef void (*slm_pool_fn)(void *arg, int ith, int nth);

/* A pool of n_threads (>= 1) including the caller. Returns NULL on failure (errno set). */
struct slm_pool *slm_pool_create(int n_threads);

/* Stops and joins the workers; sets *pool to NULL. NULL-safe. */
void slm_pool_destroy(struct slm_pool **pool);

/* Runs fn(arg, chunk, slot) once for every chunk in 0..n_chunks-1, on the caller and the
 * workers that join, and returns when all are done. Not reentrant: one run at a time. */
void slm_pool_for(struct slm_pool *pool, int64_t n_chunks, slm_pool_chunk_fn fn, void *arg);

/* Runs fn(arg, ith, nth) once for every ith in 0..nth-1, nth = slm_pool_threads(), and
 * waits for all: a static split into nth parts. Parts may run on the same thread, one
 * after the other (never two at once with the same ith). */
void slm_pool_run(struct slm_pool *pool, slm_pool_fn fn, void *arg);

/* Number of threads, the caller included. */
int slm_pool_threads(const struct slm_pool *pool);

#endif
