/*
 * bench/lib/report.h - slm-bench's outputs: the summary as JSON, and the SVG plot of output
 * throughput against latency percentiles (hand-written SVG 1.1, no script, no external
 * resource: a browser shows the file as is).
 */
#ifndef SLM_BENCH_REPORT_H
#define SLM_BENCH_REPORT_H

#include <jansson.h>

#include "bench/lib/stats.h"

/* One load point of a series. */
struct slm_bench_point {
    double load;               /* the concurrency, or the request rate */
    double tokens_per_s;       /* output tokens/s */
    double ttft_p50, ttft_p99, tpot_p50, tpot_p99;   /* ms */
};

/* One curve: an engine's points, in sweep order. */
struct slm_bench_series {
    char name[64];
    int is_rate;               /* load is a rate (req/s), not a concurrency */
    int n;
    struct slm_bench_point pts[64];
};

/* The summary's figures as a new JSON object: completed, failed, requests, span_s,
 * requests_per_s, output_tokens_per_s, total_tokens_per_s, input/cached/output tokens, good,
 * goodput_per_s, and ttft_ms, tpot_ms, itl_ms, e2e_ms each {n, mean, p50, p90, p99, min, max}. */
json_t *slm_bench_summary_json(const struct slm_bench_summary *s);

/* Reads the series of a JSON document written by slm-bench --json (its "label" and "runs").
 * 0, or -EINVAL with the reason in err[SLM_ERR_LEN]. */
int slm_bench_series_from_json(const json_t *doc, struct slm_bench_series *out, char *err);

/* Writes the plot of n series to path: TTFT and TPOT (p50 solid, p99 dashed; log scale)
 * against output tokens/s, one colour per series, each point labelled with its load.
 * 0, or -errno with the reason in err. */
int slm_bench_svg_write(const char *path, const char *title, const struct slm_bench_series *series, int n,
                        char *err);

#endif
