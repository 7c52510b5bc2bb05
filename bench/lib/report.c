/*
 * bench/lib/report.c - slm-bench's JSON summary and SVG plot (report.h).
 */
#include "bench/lib/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

static json_t *dist_json(const struct slm_bench_dist *d)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "n", d->n, "mean", d->mean, "p50", d->p50, "p90", d->p90,
                     "p99", d->p99, "min", d->min, "max", d->max);
}

json_t *slm_bench_summary_json(const struct slm_bench_summary *s)
{
    json_t *o = json_pack("{s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:i, s:f}", "requests", s->requests,
                          "completed", s->completed, "failed", s->failed, "span_s", s->span_s, "requests_per_s",
                          s->requests_per_s, "output_tokens_per_s", s->output_tokens_per_s, "total_tokens_per_s",
                          s->total_tokens_per_s, "input_tokens", (json_int_t)s->input_tokens, "cached_tokens",
                          (json_int_t)s->cached_tokens, "output_tokens", (json_int_t)s->output_tokens, "good",
                          s->good, "goodput_per_s", s->goodput_per_s);
    if (!o) return NULL;
    json_object_set_new(o, "ttft_ms", dist_json(&s->ttft));
    json_object_set_new(o, "tpot_ms", dist_json(&s->tpot));
    json_object_set_new(o, "itl_ms", dist_json(&s->itl));
    json_object_set_new(o, "e2e_ms", dist_json(&s->e2e));
    return o;
}

static double num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

int slm_bench_series_from_json(const json_t *doc, struct slm_bench_series *out, char *err)
{
    memset(out, 0, sizeof *out);
    const json_t *label = json_object_get(doc, "label"), *runs = json_object_get(doc, "runs");
    const json_t *config = json_object_get(doc, "config");
    if (!json_is_string(label) || !json_is_array(runs) || json_array_size(runs) == 0) {
        slm_err_set(err, "not an slm-bench --json document (no \"label\" or \"runs\")");
        return -EINVAL;
    }
    snprintf(out->name, sizeof out->name, "%s", json_string_value(label));
    out->is_rate = json_is_string(json_object_get(config, "mode")) &&
                   !strcmp(json_string_value(json_object_get(config, "mode")), "open");
    size_t i;
    const json_t *run;
    json_array_foreach(runs, i, run) {
        if (out->n == (int)(sizeof out->pts / sizeof out->pts[0])) break;
        struct slm_bench_point *p = &out->pts[out->n++];
        p->load = num(run, out->is_rate ? "rate" : "concurrency");
        p->tokens_per_s = num(run, "output_tokens_per_s");
        p->ttft_p50 = num(json_object_get(run, "ttft_ms"), "p50");
        p->ttft_p99 = num(json_object_get(run, "ttft_ms"), "p99");
        p->tpot_p50 = num(json_object_get(run, "tpot_ms"), "p50");
        p->tpot_p99 = num(json_object_get(run, "tpot_ms"), "p99");
    }
    return 0;
}

/* ---- SVG */

#define W 980
#define H 440
#define PANEL_W 400
#define PANEL_H 300
#define TOP 70
static const int panel_x[2] = {80, 560};
static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

struct axes {
    double x_max;              /* linear, from 0 */
    double y_lo, y_hi;         /* log10 of the range */
};

static double px(const struct axes *a, int panel, double x)
{
    return panel_x[panel] + x / a->x_max * PANEL_W;
}

static double py(const struct axes *a, double y)
{
    double l = log10(y > 0 ? y : pow(10, a->y_lo));
    return TOP + PANEL_H - (l - a->y_lo) / (a->y_hi - a->y_lo) * PANEL_H;
}

static double nice_step(double range)
{
    double e = pow(10, floor(log10(range / 5)));
    double f = range / 5 / e;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * e;
}

static void axis(FILE *f, const struct axes *a, int panel, const char *ylabel)
{
    int x0 = panel_x[panel];
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", x0, TOP,
            PANEL_W, PANEL_H);
    double step = nice_step(a->x_max);
    for (double x = 0; x <= a->x_max * 1.0001; x += step) {
        double X = px(a, panel, x);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n", X, TOP, X, TOP + PANEL_H);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", X, TOP + PANEL_H + 16, x);
    }
    for (int e = (int)floor(a->y_lo); e <= (int)ceil(a->y_hi); e++) {
        static const int mant[] = {1, 2, 5};
        for (int m = 0; m < 3; m++) {
            double y = mant[m] * pow(10, e), l = log10(y);
            if (l < a->y_lo - 1e-9 || l > a->y_hi + 1e-9) continue;
            double Y = py(a, y);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, Y, x0 + PANEL_W, Y);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", x0 - 4, Y + 4, y);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">output tokens/s</text>\n", x0 + PANEL_W / 2,
            TOP + PANEL_H + 36);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 %d %d)\">%s</text>\n", x0 - 52,
            TOP + PANEL_H / 2, x0 - 52, TOP + PANEL_H / 2, ylabel);
}

/* Text of the caller's (a title, a label) with XML's special characters escaped. */
static void put_text(FILE *f, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '<') fputs("&lt;", f);
        else if (*c == '&') fputs("&amp;", f);
        else if (*c == '>') fputs("&gt;", f);
        else fputc(*c, f);
    }
}

static void curve(FILE *f, const struct axes *a, int panel, const struct slm_bench_series *s, int p99,
                  const char *color)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", color,
            p99 ? " stroke-dasharray=\"6 4\"" : "");
    for (int i = 0; i < s->n; i++) {
        const struct slm_bench_point *q = &s->pts[i];
        double y = panel == 0 ? (p99 ? q->ttft_p99 : q->ttft_p50) : (p99 ? q->tpot_p99 : q->tpot_p50);
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(a, panel, q->tokens_per_s), py(a, y));
    }
    fprintf(f, "\"/>\n");
    for (int i = 0; i < s->n; i++) {
        const struct slm_bench_point *q = &s->pts[i];
        double y = panel == 0 ? (p99 ? q->ttft_p99 : q->ttft_p50) : (p99 ? q->tpot_p99 : q->tpot_p50);
        double X = px(a, panel, q->tokens_per_s), Y = py(a, y);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>", X, Y, color);
        put_text(f, s->name);
        fprintf(f, " %s=%g: %.1f tok/s, %s %s %.1f ms</title></circle>\n", s->is_rate ? "rate" : "c", q->load,
                q->tokens_per_s, panel ? "TPOT" : "TTFT", p99 ? "p99" : "p50", y);
        if (!p99) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" font-size=\"10\">%g</text>\n", X + 4, Y - 5, color, q->load);
    }
}

int slm_bench_svg_write(const char *path, const char *title, const struct slm_bench_series *series, int n, char *err)
{
    struct axes a[2] = {{0, 0, 0}, {0, 0, 0}};
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {0, 0}, x_max = 0;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < series[s].n; i++) {
            const struct slm_bench_point *q = &series[s].pts[i];
            double v[2][2] = {{q->ttft_p50, q->ttft_p99}, {q->tpot_p50, q->tpot_p99}};
            for (int p = 0; p < 2; p++)
                for (int k = 0; k < 2; k++)
                    if (v[p][k] > 0) {
                        lo[p] = fmin(lo[p], v[p][k]);
                        hi[p] = fmax(hi[p], v[p][k]);
                    }
            x_max = fmax(x_max, q->tokens_per_s);
        }
    for (int p = 0; p < 2; p++) {
        if (!(hi[p] > 0)) lo[p] = 1, hi[p] = 10;
        a[p].x_max = x_max > 0 ? x_max * 1.1 : 1;
        a[p].y_lo = floor(log10(lo[p]) * 2) / 2;     /* half decades of margin */
        a[p].y_hi = ceil(log10(hi[p]) * 2) / 2;
        if (a[p].y_hi - a[p].y_lo < 1) a[p].y_hi = a[p].y_lo + 1;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        slm_err_set(err, "%s: cannot write: %s", path, strerror(e));
        return -e;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    put_text(f, title);
    fprintf(f, "</text>\n");
    axis(f, &a[0], 0, "TTFT (ms, log scale)");
    axis(f, &a[1], 1, "TPOT (ms, log scale)");
    for (int s = 0; s < n; s++) {
        const char *color = colors[s % (int)(sizeof colors / sizeof colors[0])];
        for (int p = 0; p < 2; p++) {
            curve(f, &a[p], p, &series[s], 0, color);
            curve(f, &a[p], p, &series[s], 1, color);
        }
        int lx = 80 + s * 220;
        fprintf(f, "<line x1=\"%d\" y1=\"44\" x2=\"%d\" y2=\"44\" stroke=\"%s\" stroke-width=\"2\"/><text x=\"%d\" y=\"48\">",
                lx, lx + 24, color, lx + 30);
        put_text(f, series[s].name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "<text x=\"%d\" y=\"48\" fill=\"#444\">solid p50, dashed p99; points labelled with the %s</text>\n",
            80 + n * 220, n && series[0].is_rate ? "request rate" : "concurrency");
    fprintf(f, "</svg>\n");
    if (fclose(f)) {
        int e = errno;
        slm_err_set(err, "%s: cannot write: %s", path, strerror(e));
        return -e;
    }
    return 0;
}
