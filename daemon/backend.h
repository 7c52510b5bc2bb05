/*
 * daemon/backend.h - picks slmd's compute backend (`backend = auto|cpu|cuda`), shared by
 * `slmd serve` and `slmd run`.
 */
#ifndef SLM_DAEMON_BACKEND_H
#define SLM_DAEMON_BACKEND_H

#include <stdint.h>

#include "engine/backend.h"

/*
 * The backend named `name`: "cpu" (threads CPU threads, 0 = all online CPUs), "cuda" (device
 * 0; its KV pool bounded by gpu_fraction of the free device memory), or "auto": cuda when a
 * CUDA device is present and this build's CUDA backend is a real one (not the SIMT
 * emulator), else cpu, with a log line saying which and why. NULL with err on failure,
 * e.g. "backend cuda: no CUDA device (...)".
 */
struct slm_backend *slm_daemon_backend_create(const char *name, int threads, double gpu_fraction, char *err);

/* The most KV cache bytes the backend can hold: for cuda its budget
 * (slm_backend_cuda_kv_budget), for cpu UINT64_MAX (the callers apply their RAM rule). */
uint64_t slm_daemon_kv_limit(struct slm_backend *be);

#endif
