/*
 * gateway/metrics.c - GET /metrics (gateway.h): Prometheus' text exposition format. Names are
 * vLLM's where the meaning is the same (docs/gateway.md has the table): the engine-wide gauges
 * and counters come from slmd's stats (every client of slmd, not only this gateway), the
 * latency histograms from what this gateway timed.
 */
#define _GNU_SOURCE
#include "gateway/gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's bucket bounds (seconds, tokens). */
static const double TTFT_BOUNDS[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                     0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0};
static const double TPOT_BOUNDS[] = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,  0.4,  0.5,
                                     0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double E2E_BOUNDS[] = {0.3,  0.5,  0.8,  1.0,  1.5,  2.0,  2.5,   5.0,   10.0,  15.0,
                                    20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0};
static const double LEN_BOUNDS[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

#define N(a) (int)(sizeof(a) / sizeof(a)[0])

void slm_gw_metrics_init(struct slm_gw_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->ttft = (struct slm_gw_histogram){.bounds = TTFT_BOUNDS, .n = N(TTFT_BOUNDS)};
    m->tpot = (struct slm_gw_histogram){.bounds = TPOT_BOUNDS, .n = N(TPOT_BOUNDS)};
    m->e2e = (struct slm_gw_histogram){.bounds = E2E_BOUNDS, .n = N(E2E_BOUNDS)};
    m->prompt_len = (struct slm_gw_histogram){.bounds = LEN_BOUNDS, .n = N(LEN_BOUNDS)};
    m->gen_len = (struct slm_gw_histogram){.bounds = LEN_BOUNDS, .n = N(LEN_BOUNDS)};
}

static void observe(struct slm_gw_histogram *h, double x)
{
    int i = 0;
    while (i < h->n && x > h->bounds[i]) i++;
    h->count[i]++;
    h->sum += x;
    h->total++;
}

void slm_gw_metrics_http(struct slm_gw_metrics *m, unsigned status)
{
    unsigned c = status / 100;
    pthread_mutex_lock(&m->lock);
    m->http[c >= 1 && c <= 5 ? c : 5]++;
    pthread_mutex_unlock(&m->lock);
}

void slm_gw_metrics_request(struct slm_gw_metrics *m, const char *finish, int n_prompt, int n_generated,
                            double ttft, double e2e)
{
    pthread_mutex_lock(&m->lock);
    if (strcmp(finish, "stop") == 0) m->finished_stop++;
    else if (strcmp(finish, "length") == 0) m->finished_length++;
    else if (strcmp(finish, "abort") == 0) m->finished_abort++;
    else m->finished_error++;
    if (strcmp(finish, "error") != 0) {
        m->prompt_tokens += (uint64_t)n_prompt;
        m->generation_tokens += (uint64_t)n_generated;
        observe(&m->e2e, e2e);
        observe(&m->prompt_len, n_prompt);
        observe(&m->gen_len, n_generated);
        if (ttft >= 0) observe(&m->ttft, ttft);
        if (ttft >= 0 && n_generated > 1) observe(&m->tpot, (e2e - ttft) / (n_generated - 1));
    }
    pthread_mutex_unlock(&m->lock);
}

static void histogram(FILE *f, const char *name, const char *help, const struct slm_gw_histogram *h,
                      const char *labels)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->count[i];
        fprintf(f, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->count[h->n];
    fprintf(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    fprintf(f, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, (unsigned long long)h->total);
}

static void metric(FILE *f, const char *name, const char *type, const char *help, const char *labels, double v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s{%s} %.17g\n", name, help, name, type, name, labels, v);
}

char *slm_gw_metrics_render(struct slm_gw_metrics *m, const char *model, const struct slm_stats *st)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    if (!f) return NULL;
    char labels[256];
    /* A label value escapes backslash, quote and newline; a model's file name has none in practice. */
    char esc[160];
    size_t o = 0;
    for (const char *s = model; *s && o + 2 < sizeof esc; s++) {
        if (*s == '\\' || *s == '"') esc[o++] = '\\';
        esc[o++] = *s == '\n' ? ' ' : *s;
    }
    esc[o] = 0;
    snprintf(labels, sizeof labels, "model_name=\"%s\"", esc);
    if (st) {
        metric(f, "vllm:num_requests_running", "gauge", "Requests running in slmd's engine.", labels,
               (double)st->requests_active);
        metric(f, "vllm:num_requests_waiting", "gauge", "Requests waiting in slmd's queue.", labels,
               (double)st->requests_queued);
        metric(f, "vllm:kv_cache_usage_perc", "gauge", "Fraction of slmd's KV blocks in use (1 = all).", labels,
               st->kv_blocks_total ? (double)st->kv_blocks_used / (double)st->kv_blocks_total : 0.0);
        metric(f, "slmd_kv_blocks_used", "gauge", "KV cache blocks in use.", labels, (double)st->kv_blocks_used);
        metric(f, "slmd_kv_blocks_total", "gauge", "KV cache blocks in all.", labels, (double)st->kv_blocks_total);
        metric(f, "slmd_clients", "gauge", "Clients connected to slmd.", labels, (double)st->clients);
        metric(f, "slmd_requests_total", "counter", "Requests slmd has taken, from every client.", labels,
               (double)st->requests_total);
        metric(f, "vllm:prompt_tokens_total", "counter", "Prompt tokens slmd has processed, from every client.",
               labels, (double)st->tokens_prompt);
        metric(f, "vllm:generation_tokens_total", "counter", "Tokens slmd has generated, for every client.", labels,
               (double)st->tokens_generated);
        metric(f, "vllm:prefix_cache_hits_total", "counter", "Prompt tokens found in slmd's prefix cache.", labels,
               (double)st->tokens_cached);
        metric(f, "slmd_uptime_seconds", "gauge", "Seconds since slmd started.", labels, st->uptime_s);
    }
    metric(f, "slm_gateway_up", "gauge", "1 when slmd answered this scrape, else 0.", labels, st ? 1 : 0);
    pthread_mutex_lock(&m->lock);
    fprintf(f, "# HELP vllm:request_success_total Requests this gateway finished, by finish reason.\n"
               "# TYPE vllm:request_success_total counter\n");
    const char *reasons[] = {"stop", "length", "abort"};
    uint64_t counts[] = {m->finished_stop, m->finished_length, m->finished_abort};
    for (int i = 0; i < 3; i++)
        fprintf(f, "vllm:request_success_total{%s,finished_reason=\"%s\"} %llu\n", labels, reasons[i],
                (unsigned long long)counts[i]);
    metric(f, "slm_gateway_request_errors_total", "counter", "Requests slmd refused or failed.", labels,
           (double)m->finished_error);
    metric(f, "slm_gateway_prompt_tokens_total", "counter", "Prompt tokens of this gateway's requests.", labels,
           (double)m->prompt_tokens);
    metric(f, "slm_gateway_generation_tokens_total", "counter", "Tokens generated for this gateway's requests.",
           labels, (double)m->generation_tokens);
    fprintf(f, "# HELP slm_gateway_http_responses_total HTTP responses by status class.\n"
               "# TYPE slm_gateway_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        fprintf(f, "slm_gateway_http_responses_total{%s,code=\"%dxx\"} %llu\n", labels, c,
                (unsigned long long)m->http[c]);
    histogram(f, "vllm:time_to_first_token_seconds", "Time to the first token, as this gateway saw it.", &m->ttft,
              labels);
    histogram(f, "vllm:request_time_per_output_token_seconds", "Mean time per output token after the first, per request.",
              &m->tpot, labels);
    histogram(f, "vllm:e2e_request_latency_seconds", "Request latency from arrival to the last token.", &m->e2e,
              labels);
    histogram(f, "vllm:request_prompt_tokens", "Prompt tokens per request.", &m->prompt_len, labels);
    histogram(f, "vllm:request_generation_tokens", "Generated tokens per request.", &m->gen_len, labels);
    pthread_mutex_unlock(&m->lock);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}
