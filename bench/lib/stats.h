/*
 * bench/lib/stats.h - slm-bench's statistics: what one request measured, and the summary of a
 * run (latency distributions, throughput, goodput under an SLO). No I/O, no clock: the
 * harness records times, these functions only count, so tests/test_bench_stats.c can check
 * them on a synthetic trace.
 *
 * Definitions (times in seconds on one monotonic clock, latencies reported in ms):
 *   TTFT  first token's arrival - the request's start (its scheduled arrival in open loop)
 *   TPOT  (end - first token) / (output tokens - 1), per request with >= 2 output tokens
 *   ITL   every gap between two successive tokens of one request, pooled over all requests
 *         (tokens that arrive together, in one chunk, give gaps of 0)
 *   E2E   end - start
 * Percentiles interpolate linearly between the two nearest ranks (numpy's default): the p-th
 * of n sorted values is v[k] + f * (v[k+1] - v[k]) with k + f = p / 100 * (n - 1).
 * Throughput counts completed requests only, over the run's span: from the earliest start to
 * the latest end of any request, completed or failed.
 */
#ifndef SLM_BENCH_STATS_H
#define SLM_BENCH_STATS_H

#include <stddef.h>

/* One request as the harness saw it. */
struct slm_bench_request {
    double t_start;            /* scheduled start (closed loop: when it was sent) */
    double t_first;            /* first token's arrival (0 when none came) */
    double t_end;              /* DONE, or the failure */
    double *token_times;       /* (n_output) arrival time of each output token; owned */
    int n_output;              /* output tokens received */
    int n_input;               /* prompt tokens, as the server counted them (0: unknown) */
    int n_cached;              /* prompt tokens the server took from its cache */
    int failed;                /* 1: error, timeout or broken connection */
};

/* A distribution's summary (ms). n == 0: no values, every other field 0. */
struct slm_bench_dist {
    int n;
    double mean, p50, p90, p99, min, max;
};

/* Service-level objective: bounds in ms, 0 = no bound on that metric. */
struct slm_bench_slo {
    double ttft_ms, tpot_ms, e2e_ms;
};

struct slm_bench_summary {
    int requests, completed, failed;
    long long input_tokens, cached_tokens, output_tokens;   /* completed requests only */
    double span_s;                                         /* earliest start to latest end */
    double requests_per_s, output_tokens_per_s, total_tokens_per_s;
    int good;                                              /* completed and within the SLO */
    double goodput_per_s;                                  /* good / span_s */
    struct slm_bench_dist ttft, tpot, itl, e2e;
};

/* The p-th percentile (0..100) of sorted[0..n-1] (ascending), interpolated as above; 0 when n == 0. */
double slm_bench_percentile(const double *sorted, size_t n, double p);

/* Summarizes values[0..n-1] (sorts them in place) into *d. */
void slm_bench_dist_of(double *values, size_t n, struct slm_bench_dist *d);

/* 1 when a completed request meets every bound of slo (a request with one output token has no
 * TPOT and meets any TPOT bound); 0 otherwise, and always 0 for a failed request. */
int slm_bench_meets_slo(const struct slm_bench_request *r, const struct slm_bench_slo *slo);

/* Parses "ttft_ms=500,tpot_ms=50,e2e_ms=2000" (any subset, any order, positive numbers) into
 * *slo (unnamed metrics left 0). 0, or -EINVAL with the reason in err[SLM_ERR_LEN]. */
int slm_bench_slo_parse(const char *text, struct slm_bench_slo *slo, char *err);

/* Summarizes the n requests of a run into *s. 0, or -ENOMEM. */
int slm_bench_summarize(const struct slm_bench_request *reqs, size_t n, const struct slm_bench_slo *slo,
                        struct slm_bench_summary *s);

/* Seconds on the monotonic clock. */
double slm_bench_now(void);

/* Appends one token arrival at time t to r (grows r->token_times). 0, or -ENOMEM. */
int slm_bench_request_token(struct slm_bench_request *r, double t, int *cap);

#endif
