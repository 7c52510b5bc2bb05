/* tests/cuda_check.h - CHECK (tests/check.h) and CUDA_OK for the C++ tests that run CUDA
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

#endif
