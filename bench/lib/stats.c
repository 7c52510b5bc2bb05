/*
 * bench/lib/stats.c - percentiles, goodput and throughput accounting of slm-bench, the clock and
 * the token arrival record every target shares (stats.h).
 */
#include "bench/lib/stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

double slm_bench_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0) return 0;
    if (p <= 0) return sorted[0];
    if (p >= 100) return sorted[n - 1];
    double rank = p / 100.0 * (double)(n - 1);
    size_t k = (size_t)rank;
    double f = rank - (double)k;
    if (k + 1 >= n) return sorted[n - 1];
    return sorted[k] + f * (sorted[k + 1] - sorted[k]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void slm_bench_dist_of(double *values, size_t n, struct slm_bench_dist *d)
{
    memset(d, 0, sizeof *d);
    if (n == 0) return;
    qsort(values, n, sizeof *values, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += values[i];
    d->n = (int)n;
    d->mean = sum / (double)n;
    d->p50 = slm_bench_percentile(values, n, 50);
    d->p90 = slm_bench_percentile(values, n, 90);
    d->p99 = slm_bench_percentile(values, n, 99);
    d->min = values[0];
    d->max = values[n - 1];
}

static double ttft_ms(const struct slm_bench_request *r)
{
    return (r->t_first - r->t_start) * 1e3;
}

static double tpot_ms(const struct slm_bench_request *r)
{
    return (r->t_end - r->t_first) * 1e3 / (double)(r->n_output - 1);
}

int slm_bench_meets_slo(const struct slm_bench_request *r, const struct slm_bench_slo *slo)
{
    if (r->failed || r->n_output < 1) return 0;
    if (slo->ttft_ms > 0 && ttft_ms(r) > slo->ttft_ms) return 0;
    if (slo->tpot_ms > 0 && r->n_output >= 2 && tpot_ms(r) > slo->tpot_ms) return 0;
    if (slo->e2e_ms > 0 && (r->t_end - r->t_start) * 1e3 > slo->e2e_ms) return 0;
    return 1;
}

int slm_bench_slo_parse(const char *text, struct slm_bench_slo *slo, char *err)
{
    static const struct {
        const char *name;
        size_t off;
    } keys[] = {
        {"ttft_ms", offsetof(struct slm_bench_slo, ttft_ms)},
        {"tpot_ms", offsetof(struct slm_bench_slo, tpot_ms)},
        {"e2e_ms", offsetof(struct slm_bench_slo, e2e_ms)},
    };
    memset(slo, 0, sizeof *slo);
    const char *p = text;
    if (!*p) {
        slm_err_set(err, "--slo: empty (e.g. ttft_ms=500,tpot_ms=50)");
        return -EINVAL;
    }
    while (*p) {
        const char *eq = strchr(p, '=');
        size_t len = strcspn(p, "=,");
        if (!eq || p + len != eq) {
            slm_err_set(err, "--slo: '%.*s' is not NAME=MS (names: ttft_ms, tpot_ms, e2e_ms)", (int)strcspn(p, ","), p);
            return -EINVAL;
        }
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && !(strlen(keys[k].name) == len && !strncmp(p, keys[k].name, len)))
            k++;
        if (k == sizeof keys / sizeof keys[0]) {
            slm_err_set(err, "--slo: unknown metric '%.*s' (names: ttft_ms, tpot_ms, e2e_ms)", (int)len, p);
            return -EINVAL;
        }
        char *end;
        errno = 0;
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || (*end && *end != ',') || errno || !(v > 0) || !isfinite(v)) {
            slm_err_set(err, "--slo: %s needs a positive number of ms, got '%.*s'", keys[k].name,
                        (int)strcspn(eq + 1, ","), eq + 1);
            return -EINVAL;
        }
        *(double *)((char *)slo + keys[k].off) = v;
        p = *end ? end + 1 : end;
        if (*end && !*p) {
            slm_err_set(err, "--slo: trailing comma");
            return -EINVAL;
        }
    }
    return 0;
}

int slm_bench_summarize(const struct slm_bench_request *reqs, size_t n, const struct slm_bench_slo *slo,
                        struct slm_bench_summary *s)
{
    memset(s, 0, sizeof *s);
    s->requests = (int)n;
    size_t n_itl = 0;
    double t0 = 0, t1 = 0;
    for (size_t i = 0; i < n; i++) {
        const struct slm_bench_request *r = &reqs[i];
        if (i == 0 || r->t_start < t0) t0 = r->t_start;
        if (i == 0 || r->t_end > t1) t1 = r->t_end;
        if (r->failed) continue;
        if (r->n_output > 1) n_itl += (size_t)(r->n_output - 1);
    }
    double *ttft = malloc((n ? n : 1) * sizeof *ttft);
    double *tpot = malloc((n ? n : 1) * sizeof *tpot);
    double *e2e = malloc((n ? n : 1) * sizeof *e2e);
    double *itl = malloc((n_itl ? n_itl : 1) * sizeof *itl);
    if (!ttft || !tpot || !e2e || !itl) {
        free(ttft), free(tpot), free(e2e), free(itl);
        return -ENOMEM;
    }
    size_t n_ttft = 0, n_tpot = 0, n_e2e = 0;
    n_itl = 0;
    for (size_t i = 0; i < n; i++) {
        const struct slm_bench_request *r = &reqs[i];
        if (r->failed) {
            s->failed++;
            continue;
        }
        s->completed++;
        s->input_tokens += r->n_input;
        s->cached_tokens += r->n_cached;
        s->output_tokens += r->n_output;
        e2e[n_e2e++] = (r->t_end - r->t_start) * 1e3;
        if (r->n_output >= 1) ttft[n_ttft++] = ttft_ms(r);
        if (r->n_output >= 2) tpot[n_tpot++] = tpot_ms(r);
        for (int k = 1; k < r->n_output && r->token_times; k++)
            itl[n_itl++] = (r->token_times[k] - r->token_times[k - 1]) * 1e3;
        if (slo) s->good += slm_bench_meets_slo(r, slo);
    }
    slm_bench_dist_of(ttft, n_ttft, &s->ttft);
    slm_bench_dist_of(tpot, n_tpot, &s->tpot);
    slm_bench_dist_of(itl, n_itl, &s->itl);
    slm_bench_dist_of(e2e, n_e2e, &s->e2e);
    free(ttft), free(tpot), free(e2e), free(itl);
    s->span_s = n ? t1 - t0 : 0;
    if (s->span_s > 0) {
        s->requests_per_s = s->completed / s->span_s;
        s->output_tokens_per_s = (double)s->output_tokens / s->span_s;
        s->total_tokens_per_s = (double)(s->input_tokens + s->output_tokens) / s->span_s;
        s->goodput_per_s = s->good / s->span_s;
    }
    return 0;
}

double slm_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int slm_bench_request_token(struct slm_bench_request *r, double t, int *cap)
{
    if (r->n_output == *cap) {
        int n = *cap ? 2 * *cap : 64;
        double *p = realloc(r->token_times, (size_t)n * sizeof *p);
        if (!p) return -ENOMEM;
        r->token_times = p;
        *cap = n;
    }
    r->token_times[r->n_output++] = t;
    return 0;
}
