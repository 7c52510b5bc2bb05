/*
 * bench/membw.c - the machine's memory read bandwidth with T threads: the roofline of a decode
 * step, which reads every weight once (bench_engine's decode_weight_bytes).
 *
 * Usage: membw [--threads T] [--mib M] [--reps R] [--pages huge|4k] [--json]
 * Each of T threads reads its own 1/T of an M MiB buffer (default 1024: far past any cache)
 * with 32-byte loads where AVX2 is (else 8 independent 64-bit sums); the threads start together at a barrier and the time is
 * that of the slowest. Prints the best of R passes (default 10) in GB/s (10^9 bytes).
 * --pages huge (the default) asks for transparent huge pages, as the CPU backend does for its
 * packed weights; --pages 4k reads small pages (what the weights had before 2026-12-05).
 * Exit status: 0, 1 when memory or threads fail, 2 on bad usage.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/err.h"
#include "common/parse.h"

struct worker {
    const uint64_t *p;   /* this thread's share of the buffer */
    size_t n;            /* its 64-bit words */
    int reps;
    pthread_barrier_t *start, *done;
    uint64_t sink;
};

static uint64_t sum_words(const uint64_t *p, size_t n)
{
    uint64_t s[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += p[i + (size_t)k];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

#if defined(__x86_64__)
#include <immintrin.h>
/* The same with 32-byte loads (4 in flight): what the AVX2 tiles read with. */
__attribute__((target("avx2"))) static uint64_t sum_words_avx2(const uint64_t *p, size_t n)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    return (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 3);
}
#endif

static uint64_t sum_fast(const uint64_t *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) return sum_words_avx2(p, n);
#endif
    return sum_words(p, n);
}

static void *read_share(void *arg)
{
    struct worker *w = arg;
    for (int r = 0; r < w->reps; r++) {
        pthread_barrier_wait(w->start);
        w->sink += sum_fast(w->p, w->n);
        pthread_barrier_wait(w->done);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int usage(void)
{
    fprintf(stderr, "usage: membw [--threads T] [--mib M] [--reps R] [--pages huge|4k] [--json]\n");
    return 2;
}

int main(int argc, char **argv)
{
    long long threads = 1, mib = 1024, reps = 10;
    char err[SLM_ERR_LEN];
    int json = 0, huge = 1;
    for (int i = 1; i < argc; i++) {
        long long *dst = !strcmp(argv[i], "--threads") ? &threads : !strcmp(argv[i], "--mib") ? &mib
                  : !strcmp(argv[i], "--reps")    ? &reps
                                                  : NULL;
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--pages") && i + 1 < argc) {
            if (strcmp(argv[i + 1], "huge") && strcmp(argv[i + 1], "4k")) {
                fprintf(stderr, "membw: --pages: expected huge or 4k, got '%s'\n", argv[i + 1]);
                return 2;
            }
            huge = !strcmp(argv[++i], "huge");
        } else if (dst && i + 1 < argc) {
            if (slm_parse_int(argv[i + 1], 1, 65536, dst, err)) {
                fprintf(stderr, "membw: %s: %s\n", argv[i], err);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "membw: unknown or incomplete argument '%s'\n", argv[i]);
            return usage();
        }
    }
    size_t bytes = (size_t)mib << 20, words = bytes / 8 / (size_t)threads / 16 * 16;   /* 128-byte shares */
    const size_t huge_page = (size_t)2 << 20, alloc = (bytes + huge_page - 1) / huge_page * huge_page;
    uint64_t *buf = aligned_alloc(huge_page, alloc);
    if (buf && huge) (void)madvise(buf, alloc, MADV_HUGEPAGE);
    struct worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!buf || !w || !tid) {
        fprintf(stderr, "membw: %lld MiB: %s\n", mib, strerror(ENOMEM));
        return 1;
    }
    memset(buf, 1, bytes);   /* every page touched before the timing */
    pthread_barrier_t start, done;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&done, NULL, (unsigned)threads + 1);
    for (long long t = 0; t < threads; t++) {
        w[t] = (struct worker){.p = buf + (size_t)t * words, .n = words, .reps = (int)reps, .start = &start, .done = &done};
        if (pthread_create(&tid[t], NULL, read_share, &w[t])) {
            fprintf(stderr, "membw: cannot start thread %lld\n", t);
            return 1;
        }
    }
    double best = 1e30;
    for (long long r = 0; r < reps; r++) {
        pthread_barrier_wait(&start);
        double t0 = now_s();
        pthread_barrier_wait(&done);
        double d = now_s() - t0;
        if (d < best) best = d;
    }
    uint64_t sink = 0;
    for (long long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        sink += w[t].sink;
    }
    double gbs = (double)(words * 8 * (size_t)threads) / best / 1e9;
    if (json)
        printf("{\"threads\": %lld, \"mib\": %lld, \"pages\": \"%s\", \"read_gb_s\": %.2f, \"sink\": %llu}\n", threads,
               mib, huge ? "huge" : "4k", gbs, (unsigned long long)(sink & 1));
    else
        printf("memory read bandwidth, %lld thread(s), %lld MiB, %s pages: %.2f GB/s (best of %lld)\n", threads, mib,
               huge ? "huge" : "4k", gbs, reps);
    free(tid);
    free(w);
    free(buf);
    return 0;
}
