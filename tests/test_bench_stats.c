/*
 * tests/test_bench_stats.c - slm-bench's statistics (bench/lib/stats.c) on a synthetic trace
 * of four requests whose figures were computed by hand (below), and its workload options
 * (bench/lib/workload.c): length ranges, shared prefixes, determinism, the JSONL reader.
 *
 * The trace (seconds):
 *   r0  start 0.00  tokens 0.10 0.15 0.25 0.30  end 0.30  10 prompt tokens
 *   r1  start 0.05  tokens 0.25 0.27            end 0.27  20 prompt tokens
 *   r2  start 0.10  failed                      end 0.50
 *   r3  start 0.20  tokens 0.60                 end 0.60  40 prompt tokens, 5 cached
 * span 0.60 s (0.00 to r3's end); completed 3, failed 1; 7 output tokens, 70 prompt tokens.
 *   TTFT 100 200 400           mean 233.333  p50 200     p90 360  p99 396
 *   TPOT 66.667 20 (r3: none)  mean 43.333   p50 43.333  p90 62   p99 66.2
 *   ITL  50 100 50 20          mean 55       p50 50      p90 85   p99 98.5
 *   E2E  300 220 400           mean 306.667  p50 300     p90 380  p99 398
 *   output 7 / 0.6 = 11.667 tok/s, requests 3 / 0.6 = 5 /s, all tokens 77 / 0.6 = 128.333 /s
 *   SLO ttft_ms=250,tpot_ms=50: only r1 (r0's TPOT 66.7, r3's TTFT 400) -> goodput 1.667 /s
 *   SLO tpot_ms=50: r1 and r3 (one token: no TPOT) -> 2;  SLO e2e_ms=300: r0 (= 300) and r1 -> 2
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/lib/stats.h"
#include "bench/lib/workload.h"
#include "tests/check.h"

#define NEAR(got, want, what) near((double)(got), (double)(want), what, __LINE__)

static void near(double got, double want, const char *what, int line)
{
    if (fabs(got - want) > 1e-6 * fmax(1, fabs(want))) {
        printf("FAIL line %d: %s: expected %.6f, got %.6f\n", line, what, want, got);
        failures++;
    }
}

static void dist(const struct slm_bench_dist *d, int n, double mean, double p50, double p90, double p99,
                 const char *name)
{
    char what[64];
    CHECK(d->n == n, "%s n: expected %d, got %d", name, n, d->n);
    snprintf(what, sizeof what, "%s mean", name);
    NEAR(d->mean, mean, what);
    snprintf(what, sizeof what, "%s p50", name);
    NEAR(d->p50, p50, what);
    snprintf(what, sizeof what, "%s p90", name);
    NEAR(d->p90, p90, what);
    snprintf(what, sizeof what, "%s p99", name);
    NEAR(d->p99, p99, what);
}

static void test_percentile(void)
{
    double v[] = {1, 2, 3, 4};
    NEAR(slm_bench_percentile(v, 4, 50), 2.5, "p50 of 1..4");
    NEAR(slm_bench_percentile(v, 4, 25), 1.75, "p25 of 1..4");
    NEAR(slm_bench_percentile(v, 4, 0), 1, "p0 of 1..4");
    NEAR(slm_bench_percentile(v, 4, 100), 4, "p100 of 1..4");
    NEAR(slm_bench_percentile(v, 1, 99), 1, "p99 of one value");
    NEAR(slm_bench_percentile(v, 0, 50), 0, "p50 of nothing");
    double u[] = {5, 1, 4, 2, 3};
    struct slm_bench_dist d;
    slm_bench_dist_of(u, 5, &d);
    dist(&d, 5, 3, 3, 4.6, 4.96, "unsorted 1..5");
    NEAR(d.min, 1, "min of 1..5");
    NEAR(d.max, 5, "max of 1..5");
}

static void test_trace(void)
{
    static double t0[] = {0.10, 0.15, 0.25, 0.30}, t1[] = {0.25, 0.27}, t3[] = {0.60};
    struct slm_bench_request r[4] = {
        {.t_start = 0.00, .t_first = 0.10, .t_end = 0.30, .token_times = t0, .n_output = 4, .n_input = 10},
        {.t_start = 0.05, .t_first = 0.25, .t_end = 0.27, .token_times = t1, .n_output = 2, .n_input = 20},
        {.t_start = 0.10, .t_end = 0.50, .n_input = 30, .failed = 1},
        {.t_start = 0.20, .t_first = 0.60, .t_end = 0.60, .token_times = t3, .n_output = 1, .n_input = 40,
         .n_cached = 5},
    };
    struct slm_bench_slo slo = {.ttft_ms = 250, .tpot_ms = 50};
    struct slm_bench_summary s;
    CHECK(slm_bench_summarize(r, 4, &slo, &s) == 0, "summarize");
    CHECK(s.requests == 4 && s.completed == 3 && s.failed == 1, "requests/completed/failed: expected 4/3/1, got %d/%d/%d",
          s.requests, s.completed, s.failed);
    CHECK(s.output_tokens == 7 && s.input_tokens == 70 && s.cached_tokens == 5,
          "tokens out/in/cached: expected 7/70/5, got %lld/%lld/%lld", s.output_tokens, s.input_tokens, s.cached_tokens);
    NEAR(s.span_s, 0.6, "span");
    NEAR(s.output_tokens_per_s, 7 / 0.6, "output tokens/s");
    NEAR(s.requests_per_s, 5, "requests/s");
    NEAR(s.total_tokens_per_s, 77 / 0.6, "total tokens/s");
    dist(&s.ttft, 3, 700.0 / 3, 200, 360, 396, "TTFT");
    dist(&s.tpot, 2, (200.0 / 3 + 20) / 2, (200.0 / 3 + 20) / 2, 20 + 0.9 * (200.0 / 3 - 20),
         20 + 0.99 * (200.0 / 3 - 20), "TPOT");
    dist(&s.itl, 4, 55, 50, 85, 98.5, "ITL");
    dist(&s.e2e, 3, 920.0 / 3, 300, 380, 398, "E2E");
    CHECK(s.good == 1, "good within ttft_ms=250,tpot_ms=50: expected 1, got %d", s.good);
    NEAR(s.goodput_per_s, 1 / 0.6, "goodput");

    struct slm_bench_slo tpot_only = {.tpot_ms = 50}, e2e_only = {.e2e_ms = 300}, none = {0};
    CHECK(slm_bench_summarize(r, 4, &tpot_only, &s) == 0 && s.good == 2, "good within tpot_ms=50: expected 2, got %d",
          s.good);
    CHECK(slm_bench_summarize(r, 4, &e2e_only, &s) == 0 && s.good == 2, "good within e2e_ms=300: expected 2, got %d",
          s.good);
    CHECK(slm_bench_summarize(r, 4, &none, &s) == 0 && s.good == 3, "good without an SLO: expected 3, got %d", s.good);
    CHECK(slm_bench_meets_slo(&r[2], &none) == 0, "a failed request meets no SLO");

    CHECK(slm_bench_summarize(r, 0, &none, &s) == 0 && s.completed == 0 && s.output_tokens_per_s == 0 && s.ttft.n == 0,
          "an empty run: expected zeros");
}

static void test_slo_parse(void)
{
    struct slm_bench_slo slo;
    char err[SLM_ERR_LEN];
    CHECK(slm_bench_slo_parse("ttft_ms=500,tpot_ms=50", &slo, err) == 0 && slo.ttft_ms == 500 && slo.tpot_ms == 50 &&
              slo.e2e_ms == 0,
          "ttft_ms=500,tpot_ms=50: expected 500/50/0, got %g/%g/%g", slo.ttft_ms, slo.tpot_ms, slo.e2e_ms);
    CHECK(slm_bench_slo_parse("e2e_ms=2.5", &slo, err) == 0 && slo.e2e_ms == 2.5, "e2e_ms=2.5: got %g", slo.e2e_ms);
    const char *bad[] = {"", "ttft_ms", "foo=1", "ttft_ms=-1", "ttft_ms=abc", "ttft_ms=5,", "ttft_ms=5x", "=5",
                         "ttft_ms=0", "tpot_ms=nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = slm_bench_slo_parse(bad[i], &slo, err);
        CHECK(rc == -EINVAL && err[0], "--slo '%s': expected -EINVAL and a reason, got %d '%s'", bad[i], rc, err);
    }
}

static void test_ranges(void)
{
    struct slm_bench_range r;
    char err[SLM_ERR_LEN];
    CHECK(slm_bench_range_parse("128", "x", 1000, &r, err) == 0 && r.lo == 128 && r.hi == 128, "128: got %d:%d", r.lo,
          r.hi);
    CHECK(slm_bench_range_parse("32:64", "x", 1000, &r, err) == 0 && r.lo == 32 && r.hi == 64, "32:64: got %d:%d", r.lo,
          r.hi);
    const char *bad[] = {"0", "64:32", "abc", "5:", ":5", "-3", "", "7 ", "2000", "1:2000", "+4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = slm_bench_range_parse(bad[i], "--input-len", 1000, &r, err);
        CHECK(rc == -EINVAL && strstr(err, "--input-len"), "range '%s': expected -EINVAL naming the flag, got %d '%s'",
              bad[i], rc, err);
    }
}

static void test_workload(void)
{
    struct slm_bench_workload w = {.seed = 7, .input_len = {20, 40}, .output_len = {5, 9}, .prefix_len = 16,
                                   .prefix_count = 3, .n_vocab = 1000};
    struct slm_bench_prompt a, b, c;
    CHECK(slm_bench_workload_make(&w, 0, 4, &a) == 0 && slm_bench_workload_make(&w, 0, 4, &b) == 0, "make");
    CHECK(a.n_ids == b.n_ids && !memcmp(a.ids, b.ids, (size_t)a.n_ids * 4) && a.output_len == b.output_len,
          "request 4 twice: expected the same prompt");
    CHECK(a.n_ids >= 16 + 20 && a.n_ids <= 16 + 40, "prompt length: expected 36..56, got %d", a.n_ids);
    CHECK(a.output_len >= 5 && a.output_len <= 9, "output length: expected 5..9, got %d", a.output_len);
    int out_of_range = 0;
    for (int k = 0; k < a.n_ids; k++) out_of_range += a.ids[k] < SLM_BENCH_FIRST_ID || a.ids[k] >= 1000;
    CHECK(out_of_range == 0, "ids outside [%d, 1000): %d", SLM_BENCH_FIRST_ID, out_of_range);
    slm_bench_prompt_free(&b);
    CHECK(slm_bench_workload_make(&w, 0, 7, &b) == 0 && slm_bench_workload_make(&w, 0, 5, &c) == 0, "make");
    CHECK(!memcmp(a.ids, b.ids, 16 * 4), "requests 4 and 7 (prefix 1 of 3): expected the same 16 prefix ids");
    CHECK(memcmp(a.ids, c.ids, 16 * 4) != 0, "requests 4 and 5: expected different prefixes");
    CHECK(memcmp(a.ids + 16, b.ids + 16, 4 * 4) != 0, "requests 4 and 7: expected different own ids");
    slm_bench_prompt_free(&b);
    CHECK(slm_bench_workload_make(&w, 1, 4, &b) == 0 && memcmp(a.ids + 16, b.ids + 16, 4 * 4) != 0,
          "warm-up request 4: expected other ids than measured request 4");
    slm_bench_prompt_free(&a), slm_bench_prompt_free(&b), slm_bench_prompt_free(&c);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_jsonl(void)
{
    char dir[] = "/tmp/test_bench_stats.XXXXXX", path[64], err[SLM_ERR_LEN];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(path, sizeof path, "%s/p.jsonl", dir);
    write_file(path, "{\"prompt\": \"Hi \\u00e9\", \"output_len\": 12}\n\n{\"system\": \"S\", \"prompt\": \"Q\", \"x\": [1]}\n");
    struct slm_bench_workload w = {.seed = 1, .output_len = {64, 64}};
    CHECK(slm_bench_workload_load(&w, path, err) == 0 && w.n_lines == 2, "good file: %s", err);
    if (w.n_lines == 2) {
        CHECK(!strcmp(w.lines[0].text, "Hi \xc3\xa9") && w.lines[0].output_len == 12, "line 1: got '%s' %d",
              w.lines[0].text, w.lines[0].output_len);
        CHECK(!strcmp(w.lines[1].text, "S\n\nQ") && w.lines[1].output_len == 0, "line 3: got '%s'", w.lines[1].text);
        struct slm_bench_prompt p;
        CHECK(slm_bench_workload_make(&w, 0, 3, &p) == 0 && p.text == w.lines[1].text && p.output_len == 64 && !p.ids,
              "request 3 of 2 lines: expected line 2 with --output-len");
    }
    slm_bench_workload_free(&w);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{\"prompt\": \"a\"}\n{\"prompt\": \"b\",}\n", "p.jsonl:2: bad JSON"},
        {"{\"system\": \"a\"}\n", "p.jsonl:1: \"prompt\" must be"},
        {"[1, 2]\n", "p.jsonl:1: a line must be a JSON object"},
        {"{\"prompt\": \"a\", \"output_len\": 0}\n", "\"output_len\" must be"},
        {"{\"prompt\": \"a\", \"system\": 3}\n", "\"system\" must be a string"},
        {"\n\n", "no prompts"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i].text);
        err[0] = 0;
        int rc = slm_bench_workload_load(&w, path, err);
        CHECK(rc < 0 && strstr(err, bad[i].want) && w.n_lines == 0 && !w.lines,
              "bad file %zu: expected an error with '%s', got %d '%s'", i, bad[i].want, rc, err);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/none.jsonl", dir);
    int rc = slm_bench_workload_load(&w, path, err);
    CHECK(rc == -ENOENT && strstr(err, "cannot open"), "missing file: expected -ENOENT 'cannot open', got %d '%s'", rc,
          err);
    rmdir(dir);
}

int main(void)
{
    test_percentile();
    test_trace();
    test_slo_parse();
    test_ranges();
    test_workload();
    test_jsonl();
    if (failures) {
        printf("%d checks failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
