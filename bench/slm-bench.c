/*
 * bench/slm-bench.c - serving benchmark: drives a running slmd (through libslm) or
 * llama-server (through its streaming HTTP endpoint) with a workload and measures per
 * request TTFT, TPOT, inter-token latency and end-to-end latency, throughput and goodput.
 *
 *   slm-bench [--target slmd|llama-server] [--socket PATH | --url http://HOST:PORT]
 *             [--concurrency N | --rate R [--arrival poisson|constant]] [--requests M | --duration S]
 *             [--warmup K] [--input-len N|LO:HI] [--output-len N|LO:HI] [--prompts FILE.jsonl]
 *             [--prefix-len P --prefix-count K] [--seed S] [--slo ttft_ms=500,tpot_ms=50]
 *             [--sweep LIST] [--json FILE] [--svg FILE] [--label NAME] [--timeout S]
 *   slm-bench plot --svg FILE [--title TEXT] A.json [B.json ...]
 *
 * Load: closed loop (N clients, each sending its next request when the last one is done) or
 * open loop (requests arriving at R per second, Poisson or evenly spaced, served by up to N
 * connections; a request's latency counts from its scheduled arrival, so time spent waiting
 * for a free connection is in its TTFT). Each load point starts with a warm-up of K requests
 * (default: N) that are not measured. With --sweep the load point is repeated for each value
 * of the list: concurrencies, or rates when --rate is given.
 *
 * Exit status: 0 when every request completed, 1 when some failed or the target could not be
 * reached, 2 on bad usage; each error is one line on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench/lib/load.h"
#include "bench/lib/quality.h"
#include "bench/lib/report.h"
#include "bench/lib/stats.h"
#include "bench/lib/target.h"
#include "bench/lib/workload.h"
#include "client/slm.h"

#ifndef SLM_BENCH_GIT_REV
#define SLM_BENCH_GIT_REV "unknown"
#endif
#ifndef SLM_BENCH_VERSION
#define SLM_BENCH_VERSION "unknown"
#endif

#define MAX_SWEEP 64

struct opts {
    struct slm_bench_target target;
    const char *url;
    int concurrency;           /* closed loop: clients; open loop: connections at most */
    double rate;               /* > 0: open loop */
    int poisson;
    long requests;             /* -1: --duration */
    double duration;
    int warmup;                /* -1: the concurrency */
    struct slm_bench_workload w;
    const char *prompts;
    struct slm_bench_slo slo;
    const char *slo_text;
    double sweep[MAX_SWEEP];
    int n_sweep;
    const char *json, *svg, *label;
    const char *perplexity, *eval;   /* quality mode (slmd only) instead of a load */
    int ppl_ctx, ppl_chunks;
};

/* ---- the report */

static void print_header(const struct opts *o)
{
    printf("%12s %6s %6s %8s %9s | %8s %8s %8s | %8s %8s | %8s %8s | %8s %8s | %9s\n",
           o->rate > 0 ? "rate req/s" : "concurrency", "done", "failed", "req/s", "out tok/s", "TTFT p50", "p90",
           "p99", "TPOT p50", "p99", "ITL p50", "p99", "E2E p50", "p99", "goodput");
}

static void print_row(const struct opts *o, double load, const struct slm_bench_summary *s)
{
    printf("%12g %6d %6d %8.2f %9.1f | %8.1f %8.1f %8.1f | %8.2f %8.2f | %8.2f %8.2f | %8.1f %8.1f | %7.2f/s\n",
           load, s->completed, s->failed, s->requests_per_s, s->output_tokens_per_s, s->ttft.p50, s->ttft.p90,
           s->ttft.p99, s->tpot.p50, s->tpot.p99, s->itl.p50, s->itl.p99, s->e2e.p50, s->e2e.p99, s->goodput_per_s);
    (void)o;
}

static json_t *machine_json(void)
{
    json_t *m = json_object();
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 1 + (v[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        json_object_set_new(m, "cpu", json_string(v));
        break;
    }
    if (f) fclose(f);
    json_object_set_new(m, "cpus_online", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    f = fopen("/proc/meminfo", "r");
    long kb;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %ld kB", &kb) == 1) json_object_set_new(m, "mem_total_kb", json_integer(kb));
    if (f) fclose(f);
    struct utsname u;
    if (!uname(&u)) {
        char s[sizeof u.sysname + sizeof u.release + sizeof u.version + sizeof u.machine + 4];
        snprintf(s, sizeof s, "%s %s %s %s", u.sysname, u.release, u.version, u.machine);
        json_object_set_new(m, "uname", json_string(s));
        json_object_set_new(m, "hostname", json_string(u.nodename));
    }
    double load[3];
    if (getloadavg(load, 3) == 3) json_object_set_new(m, "loadavg_at_start", json_pack("[f,f,f]", load[0], load[1], load[2]));
    return m;
}

static json_t *range_json(const struct slm_bench_range *r)
{
    return json_pack("{s:i, s:i}", "lo", r->lo, "hi", r->hi);
}

static const char *target_name(enum slm_bench_kind kind)
{
    return kind == SLM_BENCH_SLMD ? "slmd" : kind == SLM_BENCH_LLAMA_SERVER ? "llama-server" : "openai";
}

static json_t *config_json(const struct opts *o)
{
    json_t *c = json_object();
    json_object_set_new(c, "target", json_string(target_name(o->target.kind)));
    if (o->target.kind == SLM_BENCH_SLMD)
        json_object_set_new(c, "socket", o->target.socket ? json_string(o->target.socket) : json_null());
    else
        json_object_set_new(c, "url", json_string(o->url));
    json_object_set_new(c, "mode", json_string(o->rate > 0 ? "open" : "closed"));
    json_object_set_new(c, "concurrency", json_integer(o->concurrency));
    if (o->rate > 0) {
        json_object_set_new(c, "rate", json_real(o->rate));
        json_object_set_new(c, "arrival", json_string(o->poisson ? "poisson" : "constant"));
    }
    json_object_set_new(c, "requests", o->requests >= 0 ? json_integer(o->requests) : json_null());
    json_object_set_new(c, "duration_s", o->requests < 0 ? json_real(o->duration) : json_null());
    json_object_set_new(c, "warmup", json_integer(o->warmup));
    json_object_set_new(c, "prompts", o->prompts ? json_string(o->prompts) : json_string("random"));
    if (!o->prompts) json_object_set_new(c, "input_len", range_json(&o->w.input_len));
    json_object_set_new(c, "output_len", range_json(&o->w.output_len));
    json_object_set_new(c, "prefix_len", json_integer(o->w.prefix_count ? o->w.prefix_len : 0));
    json_object_set_new(c, "prefix_count", json_integer(o->w.prefix_count));
    json_object_set_new(c, "seed", json_integer((json_int_t)o->w.seed));
    json_object_set_new(c, "ignore_eos", json_true());
    json_object_set_new(c, "temperature", json_real(0));
    json_object_set_new(c, "timeout_s", json_real(o->target.timeout_s));
    json_object_set_new(c, "slo", json_pack("{s:f, s:f, s:f}", "ttft_ms", o->slo.ttft_ms, "tpot_ms", o->slo.tpot_ms,
                                            "e2e_ms", o->slo.e2e_ms));
    json_t *sw = json_array();
    for (int i = 0; i < o->n_sweep; i++) json_array_append_new(sw, json_real(o->sweep[i]));
    json_object_set_new(c, "sweep", sw);
    return c;
}

/* CPU seconds (user + system) this process used so far: the harness's own share of the machine. */
static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec +
           (double)u.ru_stime.tv_usec * 1e-6;
}

/* ---- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: slm-bench [options]              measure a running slmd, llama-server or OpenAI-compatible server\n"
            "       slm-bench plot --svg FILE [--title TEXT] A.json [B.json ...]\n"
            "       slm-bench --help | --version\n"
            "target:\n"
            "  --target slmd|llama-server|openai  (default slmd; openai: POST /v1/completions of slm-gateway,\n"
            "                              vLLM, llama-server, Ollama; $OPENAI_API_KEY is sent as a Bearer key)\n"
            "  --socket PATH               slmd's socket (default $SLM_SOCKET, else %s)\n"
            "  --url http://HOST:PORT      llama-server's or the OpenAI server's address\n"
            "  --model NAME                openai: the model to ask for (default: the first of GET /v1/models)\n"
            "load:\n"
            "  --concurrency N             closed loop: N clients (default 1); open loop: N connections at most (default 64)\n"
            "  --rate R                    open loop: R requests/s\n"
            "  --arrival poisson|constant  open-loop arrivals (default poisson)\n"
            "  --requests M                measured requests per load point (default 64)\n"
            "  --duration S                ...or send requests for S seconds\n"
            "  --warmup K                  unmeasured requests first (default: the concurrency)\n"
            "  --sweep LIST                load points, e.g. 1,4,16,64 (concurrencies; rates with --rate)\n"
            "workload:\n"
            "  --input-len N|LO:HI         random prompt tokens (default 128)\n"
            "  --output-len N|LO:HI        output tokens, end-of-generation ignored (default 128)\n"
            "  --prompts FILE              JSONL prompts instead (bench/data/README.md)\n"
            "  --prefix-len P              shared prefix tokens of random prompts...\n"
            "  --prefix-count K            ...drawn from K different prefixes\n"
            "  --seed S                    (default 1)\n"
            "report:\n"
            "  --slo ttft_ms=X,tpot_ms=Y,e2e_ms=Z   goodput counts requests within these bounds\n"
            "  --json FILE                 every figure and the configuration\n"
            "  --svg FILE                  throughput against latency percentiles\n"
            "  --label NAME                the series' name in JSON and SVG (default: the target)\n"
            "  --timeout S                 per request (default 600)\n"
            "quality (slmd only, instead of a load):\n"
            "  --perplexity FILE           perplexity of a text, as llama-perplexity computes it\n"
            "  --ctx N                     ...in chunks of N tokens (default 512)\n"
            "  --chunks N                  ...at most N of them (default: all)\n"
            "  --eval FILE.jsonl           multiple-choice accuracy (bench/data/README.md)\n",
            SLM_DEFAULT_SOCKET);
}

/* One line on stderr; 2, the exit status of bad usage. */
__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "slm-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static int parse_num(const char *s, double lo, double hi, double *v)
{
    char *e;
    errno = 0;
    *v = strtod(s, &e);
    return e == s || *e || errno || !isfinite(*v) || *v < lo || *v > hi ? -1 : 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->target.kind = SLM_BENCH_SLMD;
    o->target.timeout_s = 600;
    o->concurrency = -1;
    o->poisson = 1;
    o->requests = -2;
    o->warmup = -1;
    o->w.seed = 1;
    o->w.input_len = o->w.output_len = (struct slm_bench_range){128, 128};
    o->label = NULL;
    const char *input = NULL, *output = NULL, *sweep = NULL, *url = NULL;
    double duration = -1;
    int have_prefix_len = 0;
    char err[SLM_ERR_LEN];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--version")) {   /* the targets, not slm-bench, hold the backends */
            printf("slm-bench %s (git %s; drives slmd or llama-server, whose backends are their own)\n",
                   SLM_BENCH_VERSION, SLM_BENCH_GIT_REV);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) return bad("unexpected argument '%s' (see --help)", a);
        if (i + 1 >= argc) return bad("%s needs a value", a);
        const char *v = argv[++i];
        double d;
        if (!strcmp(a, "--target")) {
            if (!strcmp(v, "slmd")) o->target.kind = SLM_BENCH_SLMD;
            else if (!strcmp(v, "llama-server")) o->target.kind = SLM_BENCH_LLAMA_SERVER;
            else if (!strcmp(v, "openai")) o->target.kind = SLM_BENCH_OPENAI;
            else return bad("--target: '%s' is not slmd, llama-server or openai", v);
        } else if (!strcmp(a, "--model")) {
            if (strlen(v) >= sizeof o->target.http.model) return bad("--model: the name is too long");
            strcpy(o->target.http.model, v);
        } else if (!strcmp(a, "--socket")) {
            o->target.socket = v;
        } else if (!strcmp(a, "--url")) {
            url = v;
        } else if (!strcmp(a, "--concurrency")) {
            if (parse_num(v, 1, 4096, &d) || d != floor(d)) return bad("--concurrency: '%s' is not an integer from 1 to 4096", v);
            o->concurrency = (int)d;
        } else if (!strcmp(a, "--rate")) {
            if (parse_num(v, 1e-6, 1e6, &d)) return bad("--rate: '%s' is not a positive number of requests/s", v);
            o->rate = d;
        } else if (!strcmp(a, "--arrival")) {
            if (!strcmp(v, "poisson")) o->poisson = 1;
            else if (!strcmp(v, "constant")) o->poisson = 0;
            else return bad("--arrival: '%s' is not poisson or constant", v);
        } else if (!strcmp(a, "--requests")) {
            if (parse_num(v, 1, 1e8, &d) || d != floor(d)) return bad("--requests: '%s' is not a positive integer", v);
            o->requests = (long)d;
        } else if (!strcmp(a, "--duration")) {
            if (parse_num(v, 1e-3, 1e6, &d)) return bad("--duration: '%s' is not a positive number of seconds", v);
            duration = d;
        } else if (!strcmp(a, "--warmup")) {
            if (parse_num(v, 0, 1e6, &d) || d != floor(d)) return bad("--warmup: '%s' is not an integer >= 0", v);
            o->warmup = (int)d;
        } else if (!strcmp(a, "--input-len")) {
            input = v;
        } else if (!strcmp(a, "--output-len")) {
            output = v;
        } else if (!strcmp(a, "--prompts")) {
            o->prompts = v;
        } else if (!strcmp(a, "--prefix-len")) {
            if (parse_num(v, 1, 1 << 20, &d) || d != floor(d)) return bad("--prefix-len: '%s' is not a positive integer", v);
            o->w.prefix_len = (int)d;
            have_prefix_len = 1;
        } else if (!strcmp(a, "--prefix-count")) {
            if (parse_num(v, 1, 1 << 20, &d) || d != floor(d)) return bad("--prefix-count: '%s' is not a positive integer", v);
            o->w.prefix_count = (int)d;
        } else if (!strcmp(a, "--seed")) {
            if (parse_num(v, 0, 9007199254740992.0, &d) || d != floor(d)) return bad("--seed: '%s' is not an integer >= 0", v);
            o->w.seed = (uint64_t)d;
        } else if (!strcmp(a, "--slo")) {
            if (slm_bench_slo_parse(v, &o->slo, err)) return bad("%s", err);
            o->slo_text = v;
        } else if (!strcmp(a, "--sweep")) {
            sweep = v;
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else if (!strcmp(a, "--svg")) {
            o->svg = v;
        } else if (!strcmp(a, "--label")) {
            o->label = v;
        } else if (!strcmp(a, "--perplexity")) {
            o->perplexity = v;
        } else if (!strcmp(a, "--eval")) {
            o->eval = v;
        } else if (!strcmp(a, "--ctx")) {
            if (parse_num(v, 4, 1 << 20, &d) || d != floor(d)) return bad("--ctx: '%s' is not an integer from 4", v);
            o->ppl_ctx = (int)d;
        } else if (!strcmp(a, "--chunks")) {
            if (parse_num(v, 1, 1 << 20, &d) || d != floor(d)) return bad("--chunks: '%s' is not a positive integer", v);
            o->ppl_chunks = (int)d;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_num(v, 1e-3, 1e6, &d)) return bad("--timeout: '%s' is not a positive number of seconds", v);
            o->target.timeout_s = d;
        } else {
            return bad("unknown option '%s' (see --help)", a);
        }
    }
    if (o->target.kind != SLM_BENCH_SLMD) {
        if (!url) return bad("--target %s needs --url http://HOST:PORT", target_name(o->target.kind));
        if (slm_bench_url_parse(url, &o->target, err)) return bad("%s", err);
        o->url = url;
        o->target.http.openai = o->target.kind == SLM_BENCH_OPENAI;
        if (o->target.http.openai && getenv("OPENAI_API_KEY") && getenv("OPENAI_API_KEY")[0])
            o->target.http.api_key = getenv("OPENAI_API_KEY");
    } else if (url) {
        return bad("--url is for --target llama-server or openai (slmd takes --socket)");
    }
    if (o->target.http.model[0] && o->target.kind != SLM_BENCH_OPENAI) return bad("--model is for --target openai");
    if ((o->ppl_ctx || o->ppl_chunks) && !o->perplexity) return bad("--ctx and --chunks go with --perplexity");
    if (o->perplexity || o->eval) {
        if (o->target.kind != SLM_BENCH_SLMD) return bad("--perplexity and --eval need --target slmd (prompt logprobs)");
        if (o->rate > 0 || o->concurrency > 0 || sweep || o->prompts || input || output || o->svg)
            return bad("--perplexity and --eval measure quality: no load, workload or --svg options with them");
        if (!o->ppl_ctx) o->ppl_ctx = 512;
        return 0;
    }
    if (o->requests != -2 && duration > 0) return bad("--requests and --duration exclude each other");
    if (duration > 0) o->requests = -1, o->duration = duration;
    if (o->requests == -2) o->requests = 64;
    if (o->concurrency < 0) o->concurrency = o->rate > 0 ? 64 : 1;
    if (o->warmup < 0) o->warmup = o->concurrency;
    if (input && slm_bench_range_parse(input, "--input-len", 1 << 20, &o->w.input_len, err)) return bad("%s", err);
    if (output && slm_bench_range_parse(output, "--output-len", 1 << 20, &o->w.output_len, err)) return bad("%s", err);
    if (o->prompts && input) return bad("--input-len is for random prompts; %s sets its own", o->prompts);
    if (have_prefix_len != (o->w.prefix_count > 0))
        return bad("--prefix-len and --prefix-count go together");
    if (o->prompts && o->w.prefix_count)
        return bad("--prefix-len is for random prompts; a prompt file shares prefixes through \"system\"");
    if (sweep) {
        double d;
        for (const char *p = sweep; *p;) {
            char item[64];
            size_t n = strcspn(p, ",");
            if (o->n_sweep == MAX_SWEEP) return bad("--sweep: more than %d values", MAX_SWEEP);
            snprintf(item, sizeof item, "%.*s", (int)(n < 63 ? n : 63), p);
            double lo = o->rate > 0 ? 1e-6 : 1, hi = o->rate > 0 ? 1e6 : 4096;
            if (parse_num(item, lo, hi, &d) || (o->rate <= 0 && d != floor(d)))
                return bad("--sweep: '%s' is not a %s", item,
                           o->rate > 0 ? "positive rate" : "concurrency from 1 to 4096 (a list like 1,4,16,64)");
            o->sweep[o->n_sweep++] = d;
            p += n;
            if (*p == ',' && !*++p) return bad("--sweep: '%s' ends with a comma", sweep);
        }
        if (!o->n_sweep) return bad("--sweep: empty list");
    } else {
        o->sweep[o->n_sweep++] = o->rate > 0 ? o->rate : o->concurrency;
    }
    if (o->prompts && slm_bench_workload_load(&o->w, o->prompts, err)) {
        fprintf(stderr, "slm-bench: %s\n", err);
        return 1;
    }
    if (!o->label) o->label = target_name(o->target.kind);
    return 0;
}

/* ---- plot mode */

static int plot_main(int argc, char **argv)
{
    const char *svg = NULL, *title = "output throughput against latency";
    static struct slm_bench_series series[8];
    int n = 0;
    char err[SLM_ERR_LEN];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--svg") && i + 1 < argc) {
            svg = argv[++i];
        } else if (!strcmp(argv[i], "--title") && i + 1 < argc) {
            title = argv[++i];
        } else if (argv[i][0] == '-') {
            return bad("plot: unknown option '%s'", argv[i]);
        } else {
            if (n == 8) return bad("plot: at most 8 files");
            json_error_t je;
            json_t *doc = json_load_file(argv[i], 0, &je);
            if (!doc) {
                fprintf(stderr, "slm-bench: plot: %s: %s\n", argv[i], je.text);
                return 1;
            }
            int rc = slm_bench_series_from_json(doc, &series[n++], err);
            json_decref(doc);
            if (rc) {
                fprintf(stderr, "slm-bench: plot: %s: %s\n", argv[i], err);
                return 1;
            }
        }
    }
    if (!svg || !n) return bad("plot: usage: slm-bench plot --svg FILE [--title TEXT] A.json [B.json ...]");
    if (slm_bench_svg_write(svg, title, series, n, err)) {
        fprintf(stderr, "slm-bench: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---- quality mode */

static int quality_main(const struct opts *o)
{
    char err[SLM_ERR_LEN];
    struct slm_client *c;
    int rc = slm_connect(o->target.socket, "slm-bench", &c);
    if (rc) {
        fprintf(stderr, "slm-bench: cannot connect to slmd at %s: %s\n",
                o->target.socket ? o->target.socket : getenv("SLM_SOCKET") ? getenv("SLM_SOCKET") : SLM_DEFAULT_SOCKET,
                slm_last_error()[0] ? slm_last_error() : slm_strerror(rc));
        return 1;
    }
    json_t *doc = json_pack("{s:s, s:s}", "tool", "slm-bench", "slm_bench_git", SLM_BENCH_GIT_REV);
    int exit_code = 0;
    if (o->perplexity) {
        FILE *f = fopen(o->perplexity, "rb");
        char *text = NULL;
        size_t len = 0;
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            text = n >= 0 ? malloc((size_t)n + 1) : NULL;
            len = text ? fread(text, 1, (size_t)n, f) : 0;
            if (text) text[len] = 0;
            fclose(f);
        }
        struct slm_bench_ppl p;
        if (!text) {
            fprintf(stderr, "slm-bench: %s: %s\n", o->perplexity, f ? "cannot read" : strerror(errno));
            exit_code = 1;
        } else if (strlen(text) != len) {
            fprintf(stderr, "slm-bench: %s: holds a NUL byte; perplexity takes text\n", o->perplexity);
            exit_code = 1;
        } else if (slm_bench_perplexity(c, text, o->ppl_ctx, o->ppl_chunks, &p, err)) {
            fprintf(stderr, "slm-bench: %s\n", err);
            exit_code = 1;
        } else {
            printf("perplexity: %.4f over %ld tokens (%d chunks of %d, scored on their second halves; %.1f s)\n", p.ppl,
                   p.n_scored, p.n_chunks, p.n_ctx, p.seconds);
            json_object_set_new(doc, "perplexity",
                                json_pack("{s:s, s:f, s:f, s:I, s:i, s:i, s:f}", "file", o->perplexity, "ppl", p.ppl,
                                          "nll", p.nll, "n_scored", (json_int_t)p.n_scored, "n_chunks", p.n_chunks,
                                          "n_ctx", p.n_ctx, "seconds", p.seconds));
        }
        free(text);
    }
    if (o->eval && !exit_code) {
        struct slm_bench_eval e;
        if (slm_bench_eval_file(c, o->eval, &e, err)) {
            fprintf(stderr, "slm-bench: %s\n", err);
            exit_code = 1;
        } else {
            printf("eval: %d items, accuracy %.4f (%d), per-byte normalised %.4f (%d); %.1f s\n", e.n_items, e.acc,
                   e.n_correct, e.acc_norm, e.n_correct_norm, e.seconds);
            json_object_set_new(doc, "eval",
                                json_pack("{s:s, s:i, s:f, s:f, s:i, s:i, s:f}", "file", o->eval, "n_items", e.n_items,
                                          "acc", e.acc, "acc_norm", e.acc_norm, "n_correct", e.n_correct,
                                          "n_correct_norm", e.n_correct_norm, "seconds", e.seconds));
        }
    }
    slm_close(&c);
    if (o->json && !exit_code && json_dump_file(doc, o->json, JSON_INDENT(1) | JSON_REAL_PRECISION(10))) {
        fprintf(stderr, "slm-bench: %s: cannot write\n", o->json);
        exit_code = 1;
    }
    json_decref(doc);
    return exit_code;
}

/* ---- main */

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "plot")) return plot_main(argc, argv);
    static struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.perplexity || o.eval) return quality_main(&o);
    char err[SLM_ERR_LEN];
    json_t *server = slm_bench_target_describe(&o.target, err);
    if (!server) {
        fprintf(stderr, "slm-bench: %s\n", err);
        slm_bench_workload_free(&o.w);
        return 1;
    }
    o.w.n_vocab = o.target.n_vocab;
    json_t *machine = machine_json();
    json_t *runs = json_array();
    static struct slm_bench_series series;
    snprintf(series.name, sizeof series.name, "%s", o.label);
    series.is_rate = o.rate > 0;
    static struct slm_bench_summary sums[MAX_SWEEP];
    int failed_total = 0, requests_total = 0, exit_code = 0;
    char first_error[SLM_ERR_LEN] = "";
    long next_index = 0;       /* warm-ups and load points take the workload's requests in turn */
    for (int k = 0; k < o.n_sweep && !exit_code; k++) {
        int conc = o.rate > 0 ? o.concurrency : (int)o.sweep[k];
        double rate = o.rate > 0 ? o.sweep[k] : 0;
        struct slm_bench_load base = {.target = &o.target, .workload = &o.w, .poisson = o.poisson,
                                      .show_progress = isatty(STDERR_FILENO)};
        if (o.warmup > 0) {
            struct slm_bench_load wu = base;
            wu.salt = 1;
            wu.concurrency = conc < o.warmup ? conc : o.warmup;
            wu.n_requests = o.warmup;
            wu.index_base = next_index;
            int wu_rc = slm_bench_load_run(&wu);
            next_index += (long)wu.n_recs;
            if (wu_rc) {
                fprintf(stderr, "slm-bench: %s\n", wu.first_error);
                exit_code = 1;
            }
            slm_bench_load_free(&wu);
            if (exit_code) break;
        }
        struct slm_bench_load r = base;
        r.concurrency = conc;
        r.rate = rate;
        r.n_requests = o.requests;
        r.duration = o.duration;
        r.index_base = next_index;
        double cpu0 = cpu_seconds();
        int run_rc = slm_bench_load_run(&r);
        next_index += (long)r.n_recs;
        double harness_cpu = cpu_seconds() - cpu0;
        if (run_rc) {
            fprintf(stderr, "slm-bench: %s\n", r.first_error);
            exit_code = 1;
        } else if (slm_bench_summarize(r.recs, r.n_recs, &o.slo, &sums[k])) {
            fprintf(stderr, "slm-bench: out of memory\n");
            exit_code = 1;
        } else {
            failed_total += sums[k].failed;
            requests_total += sums[k].requests;
            if (!first_error[0] && r.first_error[0]) snprintf(first_error, sizeof first_error, "%s", r.first_error);
            json_t *j = slm_bench_summary_json(&sums[k]);
            json_object_set_new(j, "concurrency", json_integer(conc));
            json_object_set_new(j, "harness_cpu_s", json_real(harness_cpu));
            if (rate > 0) json_object_set_new(j, "rate", json_real(rate));
            json_array_append_new(runs, j);
            struct slm_bench_point *p = &series.pts[series.n++];
            *p = (struct slm_bench_point){o.sweep[k], sums[k].output_tokens_per_s, sums[k].ttft.p50, sums[k].ttft.p99,
                                          sums[k].tpot.p50, sums[k].tpot.p99};
            if (k == 0) print_header(&o);
            print_row(&o, o.sweep[k], &sums[k]);
            fflush(stdout);
        }
        slm_bench_load_free(&r);
    }
    if (!exit_code) {
        const char *model = json_string_value(json_object_get(server, "model"));
        printf("%s on %s: %s prompts, output %d", o.label, model ? model : "?",
               o.prompts ? o.prompts : "random", o.w.output_len.lo);
        if (o.w.output_len.hi != o.w.output_len.lo) printf(":%d", o.w.output_len.hi);
        printf(" tokens, latencies in ms");
        if (o.slo_text) printf(", goodput within %s", o.slo_text);
        printf("\n");
        if (failed_total) {
            fprintf(stderr, "slm-bench: %d of %d requests failed; the first: %s\n", failed_total, requests_total,
                    first_error);
            exit_code = 1;
        }
    }
    if (o.json && series.n) {
        json_t *doc = json_object();
        json_object_set_new(doc, "tool", json_string("slm-bench"));
        json_object_set_new(doc, "label", json_string(o.label));
        json_object_set_new(doc, "build", json_pack("{s:s, s:s, s:s}", "slm_bench_git", SLM_BENCH_GIT_REV, "compiler",
                                                     __VERSION__, "libslm", "static"));
        json_object_set_new(doc, "config", config_json(&o));
        json_object_set(doc, "server", server);
        json_object_set(doc, "machine", machine);
        json_object_set(doc, "runs", runs);
        /* One load point: its figures at the top level as well. */
        if (json_array_size(runs) == 1) json_object_update(doc, json_array_get(runs, 0));
        if (json_dump_file(doc, o.json, JSON_INDENT(1) | JSON_REAL_PRECISION(10))) {
            fprintf(stderr, "slm-bench: %s: cannot write\n", o.json);
            exit_code = 1;
        }
        json_decref(doc);
    }
    if (o.svg && series.n) {
        char title[256];
        snprintf(title, sizeof title, "%s: output throughput against latency", o.label);
        if (slm_bench_svg_write(o.svg, title, &series, 1, err)) {
            fprintf(stderr, "slm-bench: %s\n", err);
            exit_code = 1;
        }
    }
    json_decref(server);
    json_decref(machine);
    json_decref(runs);
    slm_bench_workload_free(&o.w);
    return exit_code;
}
