/*
 * bench/batched_bench.c - aggregate decode throughput of the continuous-batching engine
 * with B sequences at once, measured the way llama.cpp's llama-batched-bench measures it
 * so the two stand side by side (bench/compare-batched-bench.sh):
 *   for each B: B requests, each with its own prompt of PP random tokens, are added to a
 *   fresh engine; PP time runs until every request has its first token (the prefill);
 *   TG time runs from there to the end, every step carrying one token of each sequence
 *   still going; S_TG = tokens generated in that time / TG time (B * TG when all prompts
 *   fit one step; requests whose prefill ended early decode while the others prefill, and
 *   those tokens belong to the PP time). End-of-generation tokens are ignored, so every
 *   request generates exactly TG + 1 tokens, greedily.
 * Unlike llama-batched-bench (which computes logits and stops there), each step also
 * samples and detokenizes every sequence's token: the engine's whole step is timed.
 * One warm-up run (B = 1, a few tokens) before the measured ones.
 * --backend cpu|cuda|auto picks the backend as slmd does (bench/gpu/run.sh times cuda with it).
 * --host-cost adds, under each row, where the TG phase's steps went (slm_engine_timing): the
 * forward pass against the host's parts, scheduling, sampling, detokenizing and the events.
 * --overlap runs each step's pass while the step before is reported (slmd's overlap-steps);
 * --spin-us N lets its two threads poll for each other that long before sleeping (slmd's
 * pass-spin-us), and --host-cost then also prints their hand-offs (the two wake-ups a step).
 * usage: batched_bench --model FILE [--backend B] [--threads T] [--npp PP] [--ntg TG] [--npl B,B,...]
 *                      [--batch N] [--json] [--host-cost] [--overlap [--spin-us N]]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/engine/engine.h"
#include "daemon/engine/tokenizer.h"
#include "common/log.h"
#include "common/parse.h"
#include "daemon/engine/backends/select.h"
#include "kernels/cpu/matmul.h"

#define MAX_NPL 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct counts {
    int n_first;   /* requests that have their first token */
    int n_done;
    int n_tokens;
};

static void on_event(void *p, const struct slm_engine_event *ev)
{
    struct counts *c = p;
    if (ev->token >= 0) {
        c->n_tokens++;
        if (ev->n_generated == 1) c->n_first++;
    }
    if (ev->finish) c->n_done++;
}

struct result {
    double t_pp, t_tg;
    int n_tokens;
    struct slm_engine_timing tm;   /* the TG phase's steps */
};

/* --overlap: the engine's o.overlap (each pass while the step before is reported); --spin-us:
 * its o.spin_us. */
static int g_overlap, g_spin_us;

/* One measurement with pl sequences; 0 or -errno. */
static int run_one(struct slm_model *m, const struct slm_tokenizer *tok, int pp, int tg, int pl, int batch,
                   struct result *res)
{
    char err[SLM_ERR_LEN];
    int bs = 16;
    int per_seq = (pp + tg + 1 + bs - 1) / bs;
    struct slm_engine_opts o = {.n_blocks = pl * per_seq, .block_size = bs,
                                .max_batch_tokens = batch > pl ? batch : pl, .max_seqs = pl, .n_ctx = pp + tg + 1,
                                .overlap = g_overlap, .spin_us = g_spin_us};
    struct slm_engine *e = slm_engine_create(m, tok, &o, err);
    if (!e) {
        fprintf(stderr, "batched_bench: %s\n", err);
        return -ENOMEM;
    }
    int32_t *prompt = malloc((size_t)pp * sizeof *prompt);
    if (!prompt) {
        slm_engine_destroy(&e);
        return -ENOMEM;
    }
    for (int j = 0; j < pl; j++) {
        for (int i = 0; i < pp; i++) prompt[i] = rand() % m->cfg.n_vocab;
        struct slm_request q = {.prompt = prompt, .n_prompt = pp, .max_tokens = tg + 1, .ignore_eos = 1};
        slm_sampling_defaults(&q.sampling);
        q.sampling.temperature = 0;
        if (slm_engine_add(e, &q, err) < 0) {
            fprintf(stderr, "batched_bench: %s\n", err);
            free(prompt);
            slm_engine_destroy(&e);
            return -EINVAL;
        }
    }
    free(prompt);
    struct counts c = {0};
    int rc = 0;
    double t0 = now_s();
    while (c.n_first < pl && (rc = slm_engine_step(e, on_event, &c)) > 0) {}
    double t1 = now_s();
    int before = c.n_tokens;
    slm_engine_set_timing(e, 1);
    while (rc > 0 && (rc = slm_engine_step(e, on_event, &c)) > 0) {}
    double t2 = now_s();
    slm_engine_timing(e, &res->tm);
    slm_engine_destroy(&e);
    if (rc < 0) {
        fprintf(stderr, "batched_bench: engine step failed: %s\n", strerror(-rc));
        return rc;
    }
    /* Requests that finished their prefill early decode while others still prefill: the TG
     * phase counts the tokens generated once every sequence is decoding. */
    if (c.n_done != pl || c.n_tokens != pl * (tg + 1)) {
        fprintf(stderr, "batched_bench: expected %d requests and %d tokens, got %d and %d\n", pl, pl * (tg + 1),
                c.n_done, c.n_tokens);
        return -EPROTO;
    }
    res->t_pp = t1 - t0;
    res->t_tg = t2 - t1;
    res->n_tokens = c.n_tokens - before;
    return 0;
}

static int parse_list(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || n == cap || (*end && *end != ',')) return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static void usage(void)
{
    fprintf(stderr, "usage: batched_bench --model FILE [--backend B] [--threads T] [--npp PP] [--ntg TG] [--npl B,B,...] "
                    "[--batch N] [--json] [--host-cost] [--overlap [--spin-us N]]\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL, *backend = "cpu";
    int threads = 2, pp = 128, tg = 128, batch = 512, json = 0, host_cost = 0;
    int npl[MAX_NPL] = {1, 4, 16, 64}, n_npl = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--npp") && i + 1 < argc) pp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ntg") && i + 1 < argc) tg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--npl") && i + 1 < argc) {
            if ((n_npl = parse_list(argv[++i], npl, MAX_NPL)) < 1) {
                fprintf(stderr, "batched_bench: --npl takes a comma-separated list of 1..4096\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--host-cost")) host_cost = 1;
        else if (!strcmp(argv[i], "--overlap")) g_overlap = 1;
        else if (!strcmp(argv[i], "--spin-us") && i + 1 < argc) {
            long long v;
            char why[SLM_ERR_LEN];
            if (slm_parse_int(argv[++i], 0, 1000000, &v, why)) {
                fprintf(stderr, "batched_bench: --spin-us takes 0..1000000 microseconds, not '%s'\n", argv[i]);
                return 2;
            }
            g_spin_us = (int)v;
        }
        else {
            usage();
            return 2;
        }
    }
    if (g_spin_us && !g_overlap) {
        fprintf(stderr, "batched_bench: --spin-us is the overlapped steps' polling: it needs --overlap\n");
        return 2;
    }
    if (!model || threads < 1 || pp < 1 || tg < 1 || batch < 1) {
        fprintf(stderr, "batched_bench: --model is required; counts must be positive\n");
        usage();
        return 2;
    }
    char err[SLM_ERR_LEN];
    struct slm_model *m = slm_model_load(model, err);
    struct slm_backend *be = NULL;
    struct slm_tokenizer *tok =
        m && !slm_backend_select_bind(m, backend, threads, 0.9, &be, err) ? slm_tok_create(m->gguf, err) : NULL;
    if (!tok) {
        fprintf(stderr, "batched_bench: %s\n", err);
        return 1;
    }
    srand(1);
    struct result res;
    if (run_one(m, tok, 8, 4, 1, batch, &res)) return 1;   /* warm-up */
    if (!json) {
        if (!strcmp(be->ops->name, "cpu"))
            printf("slmd batched decode, %d threads, %s kernels\n", threads, slm_cpu_kernels_name());
        else
            printf("slmd batched decode, %s backend\n", be->ops->name);
        printf("|%6s | %6s | %4s | %8s | %8s | %8s | %8s |\n", "PP", "TG", "B", "T_PP s", "S_PP t/s", "T_TG s",
               "S_TG t/s");
    }
    for (int i = 0; i < n_npl; i++) {
        int pl = npl[i];
        if (run_one(m, tok, pp, tg, pl, batch, &res)) return 1;
        double s_pp = (double)pl * pp / res.t_pp, s_tg = res.n_tokens / res.t_tg;
        if (json)
            printf("{\"engine\": \"slmd\", \"threads\": %d, \"pp\": %d, \"tg\": %d, \"pl\": %d, \"t_pp\": %f, "
                   "\"speed_pp\": %f, \"t_tg\": %f, \"speed_tg\": %f, \"overlap\": %d, \"spin_us\": %d, "
                   "\"handoff_us\": %f}\n",
                   threads, pp, tg, pl, res.t_pp, s_pp, res.t_tg, s_tg, g_overlap, g_spin_us,
                   res.tm.steps ? (double)res.tm.handoff_ns * 1e-3 / (double)res.tm.steps : 0.0);
        else
            printf("|%6d | %6d | %4d | %8.3f | %8.2f | %8.3f | %8.2f |\n", pp, tg, pl, res.t_pp, s_pp, res.t_tg,
                   s_tg);
        if (host_cost && res.tm.steps) {
            const struct slm_engine_timing *t = &res.tm;
            double k = 1e-6 / (double)t->steps;   /* ns summed -> ms per step */
            double host = (double)(t->schedule_ns + t->sample_ns + t->detok_ns + t->report_ns) * k;
            double step = host + (double)t->pass_ns * k;
            printf("  B=%d, %llu decode steps, %.0f rows each: per step %.3f ms = pass %.3f + host %.3f (%.1f%%): "
                   "schedule %.3f, sample %.3f, detokenize %.3f, events %.3f ms\n",
                   pl, (unsigned long long)t->steps, (double)t->rows / (double)t->steps, step, (double)t->pass_ns * k,
                   host, 100.0 * host / step, (double)t->schedule_ns * k, (double)t->sample_ns * k,
                   (double)t->detok_ns * k, (double)t->report_ns * k);
            if (g_overlap)
                printf("  B=%d, overlapped (spin %d us): the two threads' hand-offs %.1f us a step (in the pass)\n", pl,
                       g_spin_us, (double)t->handoff_ns * 1e-3 / (double)t->steps);
        }
        fflush(stdout);
    }
    slm_tok_destroy(&tok);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    return 0;
}
