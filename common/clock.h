/* common/clock.h - the monotonic clock and the spin-wait hint that the engine, the thread pool,
 * the IPC waits and the clients share. */
#ifndef SLM_COMMON_CLOCK_H
#define SLM_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline int64_t slm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline int64_t slm_mono_ms(void)
{
    return slm_mono_ns() / 1000000;
}

/* One turn of a spin-wait: the CPU's pause hint where it has one. */
static inline void slm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
