/* tests/cuda_check.h - CHECK (tests/check.h), CUDA_OK and RC_OK for the C++ tests that run CUDA
 * code under the SIMT emulator. Include once per test program. */
#ifndef SLM_TESTS_CUDA_CHECK_H
#define SLM_TESTS_CUDA_CHECK_H

#include "kernels/cuda/compat.h"
#include "tests/check.h"

/* A CUDA call that must succeed; a failure names the call, the error and the emulator's report. */
#define CUDA_OK(call)                                                                                           \
    do {                                                                                                        \
        cudaError_t e_ = (call);                                                                                \
        CHECK(e_ == cudaSuccess, "%s: expected cudaSuccess, got %s (%s)", #call, cudaGetErrorName(e_),        \
              slm_emu_last_report());                                                                           \
    } while (0)

/* A launcher (or other int-returning call) that must return 0. */
#define RC_OK(call)                                                                                     \
    do {                                                                                                \
        int rc_ = (call);                                                                               \
        CHECK(rc_ == 0, "%s: expected 0, got %d (%s)", #call, rc_, slm_emu_last_report());              \
    } while (0)

/* 1 when a CUDA device (or the emulator's) is there; else prints why the test is skipped and
 * returns 0 (the test then exits 77). */
static inline int cuda_device_or_skip(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0) return 1;
    printf("no CUDA device: skipped\n");
    return 0;
}

#endif
