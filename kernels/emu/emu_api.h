/* The SIMT emulator's own host API: knobs, the last report, pointer checks.
 * C-callable; everything else the emulator offers goes by CUDA's names (emu.h, the
 * runtime / cuBLAS / NCCL stand-ins). Only built and included when not under nvcc. */
#ifndef SLM_EMU_API_H
#define SLM_EMU_API_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Knobs; each starts from its environment variable (in brackets) at the first use. */
struct slm_emu_options {
    int workers;        /* OS threads that run blocks, the launching one included [SLM_EMU_WORKERS, online CPUs] */
    int strict;         /* a thread exiting while others wait at __syncthreads is an error [SLM_EMU_STRICT, 1] */
    int racecheck;      /* run each grid under two schedules and compare device memory [SLM_EMU_RACECHECK, 0] */
    int poison;         /* fill dynamic shared memory with 0xff (NaN) before each block, and every new
                         * cudaMalloc / cudaMallocHost allocation [SLM_EMU_POISON, 1] */
    int sync;           /* execute stream work at issue instead of at the next synchronisation [SLM_EMU_SYNC, 0] */
    int quiet;          /* do not print reports on stderr (they are still kept) [SLM_EMU_QUIET, 0] */
    int refuse_pdl;     /* refuse programmatic dependent launches (cudaErrorNotSupported), as a
                           driver without them would [SLM_EMU_REFUSE_PDL, 0] */
    size_t stack_bytes; /* stack of each emulated thread [SLM_EMU_STACK_KB, 16 (64 under ASan)] */
};

/* Copies the current knobs into *opt. */
void slm_emu_get_options(struct slm_emu_options *opt);

/* Replaces the knobs (values <= 0 for workers / stack_bytes keep the current ones).
 * Not while a launch runs. */
void slm_emu_set_options(const struct slm_emu_options *opt);

/* The text of the last error the emulator reported (a deadlock, a race, a bad pointer),
 * "" if none since slm_emu_clear_report(). Valid until the next report. */
const char *slm_emu_last_report(void);

/* Forgets the last report. */
void slm_emu_clear_report(void);

/* 1 in the emulator. The kernel tests also build against a real GPU (<test>_gpu, built
 * wherever nvcc is; bench/gpu/run.sh runs them), where tests/emu_api_gpu.c stands in for
 * this API and returns 0: the tests skip what only the emulator can see (planted host
 * pointers, sizes beyond an allocation) and the options have no effect. */
int slm_emu_active(void);

/* Checks that [p, p + bytes) lies inside one live device (or managed) allocation.
 * Returns 0, or cudaErrorInvalidValue after reporting which pointer was wrong and why
 * (a host pointer, freed memory, out of bounds). `what` names the argument in the report. */
int slm_emu_check_device_ptr(const void *p, size_t bytes, const char *what);

/* ---- the launch log: what a step launches, without a GPU (docs/emulator.md, "Launch log") */

/* One grid as a stream ran it (a replayed graph's kernels included). */
struct slm_emu_launch_record {
    const char *name;           /* the kernel as the launch named it (static storage) */
    unsigned grid[3], block[3];
    size_t smem;                /* dynamic shared memory, bytes */
    long long bytes_touched;    /* device memory the grid read or wrote, in whole 4 KiB pages;
                                   -1 when bytes are not measured */
    long long bytes_written;    /* of those, the pages it wrote */
    int pdl;                    /* a programmatic dependent launch (SLM_LAUNCH_PDL) */
    long long faults_before_wait; /* forbidden page faults taken by a thread of a programmatic
                                   dependent launch before its slm_pdl_begin: a write, or a read
                                   of a page an earlier grid of its programmatic chain (the
                                   programmatic launches since the stream's last copy, memset or
                                   plain launch) wrote; the grid then fails. -1 when bytes are
                                   not measured */
    long long reads_before_wait; /* the allowed ones: first reads, before the wait, of pages the
                                   chain did not write (-1 when bytes are not measured) */
};

/* 0 stops recording; 1 records every grid from now on (forgetting earlier records); 2 also
 * measures the bytes: before each grid every device page is made inaccessible, and the first
 * access of each page (a read, then a write) is counted as it faults; grids then run once, on
 * one thread, without the race check. Not under AddressSanitizer (mode 2 acts as 1 there). Not
 * while a launch runs. */
void slm_emu_launch_log(int mode);

/* The records since the last slm_emu_launch_log(1 or 2): their count, and *records pointing at
 * them (valid until the next launch or slm_emu_launch_log call). */
size_t slm_emu_launch_log_get(const struct slm_emu_launch_record **records);

#ifdef __cplusplus
}
#endif

#endif
