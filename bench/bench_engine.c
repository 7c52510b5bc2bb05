/*
 * bench/bench_engine.c - single-stream prompt processing and decode speed of the CPU
 * engine, measured the way llama.cpp's llama-bench measures them so the two can stand
 * side by side (bench/compare-llama-bench.sh):
 *   ppN: N random tokens evaluated as one batch into an empty context;
 *   tgN: N tokens evaluated one at a time from an empty context.
 * One warm-up run of each, then --reps runs; prints mean and standard deviation.
 * --backend cpu|cuda|auto picks the backend as slmd does (bench/gpu/run.sh times cuda with it).
 * usage: bench_engine --model FILE [--backend B] [--threads T] [-p N] [-n N] [--reps R] [--json]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/engine/runner.h"
#include "daemon/engine/backends/select.h"
#include "kernels/cpu/matmul.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run_once(struct slm_runner *r, const int32_t *toks, int n, int batch, float *logits, double *secs)
{
    slm_runner_reset(r);
    double t0 = now_s();
    for (int i = 0; i < n; i += batch) {
        int c = n - i < batch ? n - i : batch;
        int rc = slm_runner_eval(r, toks + i, c, 0, logits);
        if (rc) return rc;
    }
    *secs = now_s() - t0;
    return 0;
}

/* Bytes of weights one decode step reads at batch 1: every layer weight and the output
 * matrix whole, one row of the embedding table (the rest of it too when the output is tied
 * to it, as it is then the output matrix). The decode roofline is bandwidth / this. */
static double decode_weight_bytes(const struct slm_model *m)
{
    const struct slm_weight *w;
    double total = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const struct slm_layer *L = &m->layers[l];
        const struct slm_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv,
                                         &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if ((w = ws[i])->data) total += (double)w->rows * (double)w->row_bytes;
    }
    w = &m->output;
    total += (double)w->rows * (double)w->row_bytes + (double)m->output_norm.row_bytes;
    if (m->output.data != m->tok_embd.data) total += (double)m->tok_embd.row_bytes;
    return total;
}

static void report(const char *name, int n, const double *secs, int reps, int json, int threads,
                   const char *backend)
{
    double mean = 0, var = 0;
    for (int i = 0; i < reps; i++) mean += n / secs[i];
    mean /= reps;
    for (int i = 0; i < reps; i++) var += (n / secs[i] - mean) * (n / secs[i] - mean);
    double sd = reps > 1 ? sqrt(var / (reps - 1)) : 0;
    if (json)
        printf("{\"engine\": \"slmd\", \"backend\": \"%s\", \"test\": \"%s\", \"threads\": %d, "
               "\"tokens_per_s\": %.2f, \"sd\": %.2f}\n",
               backend, name, threads, mean, sd);
    else if (!strcmp(backend, "cpu"))
        printf("slmd %-8s threads %d: %8.2f ± %.2f tokens/s (%s kernels)\n", name, threads, mean, sd,
               slm_cpu_kernels_name());
    else
        printf("slmd %-8s %s: %8.2f ± %.2f tokens/s\n", name, backend, mean, sd);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *backend = "cpu";
    int threads = 2, pp = 512, tg = 128, reps = 3, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) pp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) tg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else {
            fprintf(stderr, "usage: bench_engine --model FILE [--backend cpu|cuda|auto] [--threads T] [-p N] [-n N] [--reps R] "
                            "[--json]\n");
            return 2;
        }
    }
    if (!model || threads < 1 || pp < 0 || tg < 0 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_engine: --model is required; counts must be positive\n");
        return 2;
    }
    char err[SLM_ERR_LEN];
    struct slm_model *m = slm_model_load(model, err);
    struct slm_backend *be = NULL;
    if (!m || slm_backend_select_bind(m, backend, threads, 0.9, &be, err)) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    if (json)
        printf("{\"engine\": \"slmd\", \"backend\": \"%s\", \"decode_weight_bytes\": %.0f}\n", be->ops->name,
               decode_weight_bytes(m));
    else
        printf("slmd weights read per decode step at batch 1: %.2f MB\n", decode_weight_bytes(m) / 1e6);
    int longest = pp > tg ? pp : tg, n_ctx = longest + 16;   /* 16 positions of slack */
    struct slm_runner *r = slm_runner_create(m, n_ctx, pp > 0 ? pp : 1, err);
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    int32_t *toks = malloc((size_t)n_ctx * sizeof *toks);
    if (!r || !logits || !toks) {
        fprintf(stderr, "bench_engine: %s\n", r ? "out of memory" : err);
        return 1;
    }
    srand(1);
    for (int i = 0; i < n_ctx; i++) toks[i] = rand() % m->cfg.n_vocab;
    double secs[100];
    if (pp > 0) {
        run_once(r, toks, pp, pp, logits, &secs[0]);   /* warm-up */
        for (int i = 0; i < reps; i++)
            if (run_once(r, toks, pp, pp, logits, &secs[i])) return 1;
        char name[32];
        snprintf(name, sizeof name, "pp%d", pp);
        report(name, pp, secs, reps, json, threads, be->ops->name);
    }
    if (tg > 0) {
        run_once(r, toks, tg, 1, logits, &secs[0]);
        for (int i = 0; i < reps; i++)
            if (run_once(r, toks, tg, 1, logits, &secs[i])) return 1;
        char name[32];
        snprintf(name, sizeof name, "tg%d", tg);
        report(name, tg, secs, reps, json, threads, be->ops->name);
    }
    free(toks);
    free(logits);
    slm_runner_destroy(&r);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    return 0;
}
