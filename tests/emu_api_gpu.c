/*
 * tests/emu_api_gpu.c - kernels/emu/emu_api.h for the kernel tests built against a real GPU
 * (<test>_gpu, built wherever nvcc is; bench/gpu/run.sh runs them). There is no emulator:
 * its options do nothing, there is never a report, and slm_emu_active() says 0 so that the
 * tests skip the checks only the emulator can make. A machine without a usable device skips
 * the whole test (exit 77) before main runs.
 */
#include "kernels/emu/emu_api.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((constructor)) static void need_device(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        printf("skip: no CUDA device (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        exit(77);
    }
}

void slm_emu_get_options(struct slm_emu_options *opt)
{
    memset(opt, 0, sizeof *opt);
}

void slm_emu_set_options(const struct slm_emu_options *opt)
{
    (void)opt;
}

const char *slm_emu_last_report(void)
{
    return "";
}

void slm_emu_clear_report(void)
{
}

int slm_emu_check_device_ptr(const void *p, size_t bytes, const char *what)
{
    (void)p, (void)bytes, (void)what;
    return 0;
}

int slm_emu_active(void)
{
    return 0;
}

/* No launch log on a GPU: nothing is recorded. */
void slm_emu_launch_log(int mode)
{
    (void)mode;
}

size_t slm_emu_launch_log_get(const struct slm_emu_launch_record **records)
{
    *records = NULL;
    return 0;
}
