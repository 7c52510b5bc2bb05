/*
 * bench/gpu/step_launches.c - what one decode (or prefill) step launches on the CUDA backend, counted under
 * the SIMT emulator (no GPU needed): every kernel launch of the step with its grid, block, warps,
 * dynamic shared memory and the device memory it touched and wrote (measured by the emulator's
 * launch log: whole 4 KiB pages, emu_api.h), the layer's launches found as the pattern that
 * repeats n_layer times, and the totals. docs/cuda.md ("Launches of a decode step") keeps its
 * output; tests/test_step_launches.sh checks the limits in CI.
 *
 * For each batch size B: B requests with prompts of --ctx random tokens go through a fresh
 * engine on the emulated CUDA backend; once every request decodes, three decode steps run (the
 * graph's warm-up, capture and first replay), then one more is logged. With --prefill the first
 * step is logged instead: the prefill of the B prompts, B x ctx tokens in one step (at most 512).
 *
 * usage: step_launches_emu --model FILE [--batch B,B,...] [--ctx N] [--prefill] [--json]
 *                          [--max-per-layer N] [--min-matmul-warps W] [--programmatic]
 * --max-per-layer: exit 1 when a layer launches more kernels; --min-matmul-warps: exit 1 when a
 * matmul kernel of a layer (a name with "mv" or "gemv" in it) runs fewer warps, at batch 1;
 * --programmatic: exit 1 when a launch of the step is not a programmatic dependent launch
 * (docs/cuda.md, "Programmatic dependent launch"). A kernel of such a launch that writes device
 * memory before its slm_pdl_begin, or reads there what an earlier launch of the step's
 * programmatic chain wrote, fails the step (the emulator's launch log catches it); what a launch
 * read before its wait that the chain did not write is counted ("early KB": whole pages, the
 * first touch of each).
 * Exit 0 ok, 1 a limit broken or a failure, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/engine/backends/backend.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/tokenizer.h"
#include "kernels/emu/emu_api.h"

#define MAX_BATCHES 8
#define MAX_PERIOD 40

struct counts {
    int n_first;
};

static void on_event(void *p, const struct slm_engine_event *ev)
{
    struct counts *c = p;
    if (ev->token >= 0 && ev->n_generated == 1) c->n_first++;
}

static long long warps(const struct slm_emu_launch_record *r)
{
    long long threads = (long long)r->block[0] * r->block[1] * r->block[2];
    return (long long)r->grid[0] * r->grid[1] * r->grid[2] * ((threads + 31) / 32);
}

/* The layer pattern: the smallest (start, period) such that records start .. start + period *
 * n_layer - 1 are n_layer repetitions of the same kernel names. 0 when there is none. */
static int find_layers(const struct slm_emu_launch_record *r, size_t n, int n_layer, int *start, int *period)
{
    for (int p = 1; p <= MAX_PERIOD; p++)
        for (int s = 0; s <= 8 && (size_t)(s + p * n_layer) <= n; s++) {
            int ok = 1;
            for (int k = p; k < p * n_layer && ok; k++) ok = !strcmp(r[s + k].name, r[s + k % p].name);
            if (ok) {
                *start = s, *period = p;
                return 1;
            }
        }
    return 0;
}

static int is_matmul(const char *name)
{
    return strstr(name, "mv") || strstr(name, "gemv");
}

static void print_record(const struct slm_emu_launch_record *r, int json, int first)
{
    if (json) {
        printf("%s{\"kernel\": \"%s\", \"grid\": [%u, %u, %u], \"block\": [%u, %u, %u], \"warps\": %lld, "
               "\"smem\": %zu, \"bytes_touched\": %lld, \"bytes_written\": %lld, \"programmatic\": %s, "
               "\"bytes_read_before_wait\": %lld}",
               first ? "" : ", ", r->name, r->grid[0], r->grid[1], r->grid[2], r->block[0], r->block[1], r->block[2],
               warps(r), r->smem, r->bytes_touched, r->bytes_written, r->pdl ? "true" : "false",
               r->reads_before_wait < 0 ? -1 : r->reads_before_wait * 4096);
        return;
    }
    char grid[32], block[32];
    snprintf(grid, sizeof grid, "%u,%u,%u", r->grid[0], r->grid[1], r->grid[2]);
    snprintf(block, sizeof block, "%u,%u,%u", r->block[0], r->block[1], r->block[2]);
    printf("  %-44.44s %12s %10s %7lld %7zu %10.1f %10.1f %10.1f\n", r->name, grid, block, warps(r), r->smem,
           r->bytes_touched / 1024.0, r->bytes_written / 1024.0, r->reads_before_wait * 4.0);
}

/* Runs one batch size; prints its step; returns 0, 1 when a limit is broken, -1 on failure. */
static int run_batch(struct slm_model *m, const struct slm_tokenizer *tok, int B, int ctx, int prefill, int json,
                     int max_layer, int min_warps, int programmatic)
{
    const char *kind = prefill ? "prefill" : "decode";
    char err[SLM_ERR_LEN];
    int block = 16, per_seq = (ctx + 64 + block - 1) / block;
    struct slm_engine_opts o = {.n_blocks = B * per_seq + 8, .block_size = block, .max_batch_tokens = 512,
                                .max_seqs = B, .n_ctx = ctx + 64};
    struct slm_engine *e = slm_engine_create(m, tok, &o, err);
    if (!e) {
        fprintf(stderr, "step_launches: %s\n", err);
        return -1;
    }
    int32_t *prompt = malloc((size_t)ctx * sizeof *prompt);
    if (!prompt) return -1;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < ctx; i++) prompt[i] = rand() % m->cfg.n_vocab;
        struct slm_request r = {.prompt = prompt, .n_prompt = ctx, .max_tokens = 64, .ignore_eos = 1};
        slm_sampling_defaults(&r.sampling);
        r.sampling.temperature = 0;
        if (slm_engine_add(e, &r, err) < 0) {
            fprintf(stderr, "step_launches: %s\n", err);
            return -1;
        }
    }
    free(prompt);
    struct counts c = {0};
    int rc = 0;
    if (prefill) {
        slm_emu_launch_log(2);
        rc = slm_engine_step(e, on_event, &c);
        slm_emu_launch_log(0);
    } else {
        while (c.n_first < B && (rc = slm_engine_step(e, on_event, &c)) > 0) {}
        for (int i = 0; i < 3 && rc > 0; i++) rc = slm_engine_step(e, on_event, &c);
        slm_emu_launch_log(2);
        if (rc > 0) rc = slm_engine_step(e, on_event, &c);
        slm_emu_launch_log(0);
    }
    slm_engine_destroy(&e);
    if (rc <= 0) {
        fprintf(stderr, "step_launches: the engine stopped (%d)\n", rc);
        return -1;
    }
    const struct slm_emu_launch_record *r;
    size_t n = slm_emu_launch_log_get(&r);
    int start = 0, period = 0, L = m->cfg.n_layer;
    if (!find_layers(r, n, L, &start, &period)) {
        fprintf(stderr, "step_launches: no kernel sequence repeats %d times in the %zu launches of the step\n", L, n);
        return -1;
    }
    int bad = 0;
    long long touched = 0, written = 0;
    size_t n_pdl = 0, n_early = 0;
    for (size_t i = 0; i < n; i++) {
        touched += r[i].bytes_touched, written += r[i].bytes_written, n_pdl += r[i].pdl != 0;
        n_early += r[i].reads_before_wait > 0;
    }
    if (json) {
        printf("{\"step\": \"%s\", \"batch\": %d, \"ctx\": %d, \"launches\": %zu, \"layers\": %d, \"per_layer\": %d, "
               "\"before_layers\": %d, \"after_layers\": %zu, \"bytes_touched\": %lld, \"bytes_written\": %lld, "
               "\"programmatic\": %zu, \"reading_before_wait\": %zu, \"layer\": [",
               kind, B, ctx, n, L, period, start, n - (size_t)start - (size_t)period * L, touched, written, n_pdl,
               n_early);
        for (int k = 0; k < period; k++) print_record(&r[start + k], 1, k == 0);
        printf("], \"other\": [");
        int first = 1;
        for (size_t i = 0; i < n; i++)
            if ((int)i < start || (int)i >= start + period * L) print_record(&r[i], 1, first), first = 0;
        printf("]}\n");
    } else {
        printf("%s step, batch %d, context %d: %zu launches = %d before the layers + %d layers x %d + %zu after; "
               "%.2f MB touched, %.2f MB written; %zu programmatic, %zu reading before their wait\n",
               kind, B, ctx, n, start, L, period, n - (size_t)start - (size_t)period * L, touched / 1e6,
               written / 1e6, n_pdl, n_early);
        printf("  %-44s %12s %10s %7s %7s %10s %10s %10s\n", "kernel (one layer, then the rest)", "grid", "block",
               "warps", "smem", "touched KB", "written KB", "early KB");
        for (int k = 0; k < period; k++) print_record(&r[start + k], 0, 0);
        printf("  --\n");
        for (size_t i = 0; i < n; i++)
            if ((int)i < start || (int)i >= start + period * L) print_record(&r[i], 0, 0);
    }
    if (max_layer > 0 && period > max_layer) {
        fprintf(stderr, "step_launches: %s batch %d: %d launches a layer, more than %d\n", kind, B, period,
                max_layer);
        bad = 1;
    }
    for (int k = 0; min_warps > 0 && B == 1 && !prefill && k < period; k++)
        if (is_matmul(r[start + k].name) && warps(&r[start + k]) < min_warps) {
            fprintf(stderr, "step_launches: batch 1: %s runs %lld warps, fewer than %d\n", r[start + k].name,
                    warps(&r[start + k]), min_warps);
            bad = 1;
        }
    for (size_t i = 0; programmatic && i < n; i++)
        if (!r[i].pdl) {
            fprintf(stderr, "step_launches: %s batch %d: %s is not a programmatic dependent launch\n", kind, B,
                    r[i].name);
            bad = 1;
        }
    return bad;
}

static int parse_list(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 256) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *s ? -1 : n;
}

static void usage(void)
{
    fprintf(stderr, "usage: step_launches_emu --model FILE [--batch B,B,...] [--ctx N] [--prefill] [--json] "
                    "[--max-per-layer N] [--min-matmul-warps W] [--programmatic]\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int batches[MAX_BATCHES] = {1, 8}, n_batches = 2, ctx = 32, prefill = 0, json = 0, max_layer = 0, min_warps = 0,
        programmatic = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            if ((n_batches = parse_list(argv[++i], batches, MAX_BATCHES)) < 1) {
                fprintf(stderr, "step_launches: --batch takes a comma-separated list of 1..256\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) {
            ctx = (int)strtol(argv[++i], &end, 10);
            if (*end || ctx < 1 || ctx > 8192) {
                fprintf(stderr, "step_launches: --ctx takes 1..8192\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--max-per-layer") && i + 1 < argc) {
            max_layer = (int)strtol(argv[++i], &end, 10);
            if (*end || max_layer < 1) {
                fprintf(stderr, "step_launches: --max-per-layer takes a positive number\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--min-matmul-warps") && i + 1 < argc) {
            min_warps = (int)strtol(argv[++i], &end, 10);
            if (*end || min_warps < 1) {
                fprintf(stderr, "step_launches: --min-matmul-warps takes a positive number\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--prefill")) prefill = 1;
        else if (!strcmp(argv[i], "--programmatic")) programmatic = 1;
        else {
            usage();
            return 2;
        }
    }
    if (!model) {
        usage();
        return 2;
    }
    for (int i = 0; prefill && i < n_batches; i++)
        if ((long)batches[i] * ctx > 512) {
            fprintf(stderr, "step_launches: --prefill takes batch x ctx <= 512 tokens (one step)\n");
            return 2;
        }
    slm_log_level = SLM_LOG_WARNING;
    char err[SLM_ERR_LEN];
    struct slm_model *m = slm_model_load(model, err);
    struct slm_backend *be = m ? slm_backend_cuda_create(0, 0.5, err) : NULL;
    struct slm_tokenizer *tok = be && !slm_model_bind(m, be, err) ? slm_tok_create(m->gguf, err) : NULL;
    if (!tok) {
        fprintf(stderr, "step_launches: %s\n", err);
        return 1;
    }
    srand(1);
    int status = 0;
    for (int i = 0; i < n_batches; i++) {
        int rc = run_batch(m, tok, batches[i], ctx, prefill, json, max_layer, min_warps, programmatic);
        if (rc) status = 1;
        if (rc < 0) break;
    }
    slm_tok_destroy(&tok);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    return status ? 1 : 0;
}
