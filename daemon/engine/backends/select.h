/*
 * daemon/engine/backends/select.h - picks the compute backend by name (`backend =
 * auto|cpu|cuda`), for `slmd serve`, `slmd run` and the benchmarks.
 */
#ifndef SLM_BACKENDS_SELECT_H
#define SLM_BACKENDS_SELECT_H

#include <stdint.h>

#include "daemon/engine/backends/backend.h"

/*
 * The backend named `name`: "cpu" (threads CPU threads, 0 = all online CPUs), "cuda" (device
 * 0; its KV pool bounded by gpu_fraction of the free device memory), or "auto": cuda when a
 * CUDA device is present and this build's CUDA backend is a real one (not the SIMT
 * emulator; SLM_AUTO_EMULATOR=1 lets the tests have it pick the emulator), else cpu, with a
 * log line saying which and why. NULL with err on failure, e.g. "backend cuda: no CUDA device
 * (...)". Where the backend auto picked cannot hold the model, slm_backend_select_bind falls
 * back to the CPU (docs/cuda.md, "Choosing the backend").
 */
struct slm_backend *slm_backend_select(const char *name, int threads, double gpu_fraction, char *err);

/* slm_backend_select, then m's weights made resident on that backend (slm_model_bind): the
 * backend in *out, and 0. With "auto", a model the CUDA backend cannot bind (its memory, a
 * weight type or an attention geometry it has no kernel for) is bound to the CPU backend
 * instead, with a warning naming why; "cuda" keeps the error. Else -errno with err, *out NULL
 * and nothing bound. slmd (daemon/service.c) and the benchmarks choose their backend here. */
struct slm_model;
int slm_backend_select_bind(struct slm_model *m, const char *name, int threads, double gpu_fraction,
                            struct slm_backend **out, char *err);

/* The most KV cache bytes the backend can hold: for cuda its budget
 * (slm_backend_cuda_kv_budget), for cpu UINT64_MAX (the callers apply their RAM rule). */
uint64_t slm_backend_kv_limit(struct slm_backend *be);

#endif
