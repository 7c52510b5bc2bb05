/*
 * tests/test_model.c - the whole model on the CPU backend against llama.cpp.
 *
 * The reference data is that of the llama.cpp build whose lanes the CPU backend follows
 * (slm_cpu_lanes: 16 where llama.cpp's GGML_NATIVE build would use AVX-512, else 8, which
 * SLM_CPU_KERNELS=avx2 or =generic also give; SLM_CPU_LANES forces either; docs/numerics.md):
 * tests/golden/smollm2_{greedy,ppl}_avx512.txt or _avx2.txt.
 *
 * Greedy: the greedy file holds 20 prompts (as llama.cpp tokenized them), llama.cpp's 64 greedy
 * tokens for each and, per step, the margin between its two best logits. We must produce the
 * same 64 tokens for at least 19 prompts (measured: 20 of 20 against each build's file, each in
 * its own lanes; the two builds themselves agree on only 4 of the 20; the margin is one
 * prompt), and every prompt's first divergence must fall on a step where llama.cpp's margin was
 * under 0.1 (a near tie that float rounding may break either way).
 *
 * Perplexity: the ppl file holds a text's token ids and llama.cpp's teacher-forced perplexity
 * over it in one context (one batch: its batched kernels, which we do not follow, so the figures
 * differ). Measured (every tier computes the same bits for a layout):
 * - avx512 (16 lanes): ours 31.3956 against 31.4412, -0.145%;
 * - avx2 (8 lanes, 2026-12-05): ours 31.4443 against 31.3689, +0.240% (31.4443 is also llama.cpp's
 *   own figure one token per call on an AVX2 machine, docs/reference-data.md).
 * Ours must be within 0.055 points of the signed figure of its build: a change that moves our
 * perplexity by more than a third of the AVX-512 gap either way fails. (The gap is llama.cpp's,
 * not ours: its own figure for this text moves by 0.24% with the batch shape, 31.3689 in one call
 * to 31.4443 one token per call.) A planted RMSNorm bug (sum / (dim - 1)) gives -0.248% against
 * the avx512 file and +0.090% against the avx2 file (and 3 of 20 greedy prompts): caught by both.
 * The prompts are also encoded by our tokenizer and compared with llama.cpp's ids.
 * CTest also runs the first prompts on the portable kernels (SLM_CPU_KERNELS=generic) and in each
 * layout forced (SLM_CPU_LANES=8, =16), which must give their reference's tokens.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/runner.h"
#include "daemon/engine/tokenizer.h"
#include "kernels/cpu/matmul.h"

#define MAX_IDS 4096
#define GEN 64

static int failures;

/* The reference data of the llama.cpp build whose lanes the CPU backend follows (slm_cpu_lanes):
 * its file suffix and the perplexity difference measured against it, with its margin. */
struct reference {
    const char *build;                 /* tests/golden/smollm2_{greedy,ppl}_BUILD.txt */
    double ppl_measured, ppl_margin;   /* (ours - llama.cpp's) / llama.cpp's */
};

static struct reference reference_for(int lanes)
{
    if (lanes == 16) return (struct reference){"avx512", -0.00145, 0.00055};
    return (struct reference){"avx2", +0.00240, 0.00055};
}

struct ref_prompt {
    char text[16384];
    int n_prompt, n_gen;
    int32_t prompt[MAX_IDS];
    int32_t gen[GEN];
    double margin[GEN];
};

/* Parses "X n n n ..." (ints or doubles) into out; returns the count. */
static int parse_list(const char *line, int32_t *ids, double *vals, int cap)
{
    int n = 0;
    const char *p = line + 1;
    while (*p && n < cap) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) break;
        if (ids) ids[n] = (int32_t)v;
        if (vals) vals[n] = v;
        n++;
        p = end;
    }
    return n;
}

static void unescape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && *in != '\n' && o + 1 < cap; in++) {
        if (*in == '\\' && in[1]) {
            in++;
            out[o++] = *in == 'n' ? '\n' : *in == 't' ? '\t' : *in;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = 0;
}

static char *read_line(FILE *f)
{
    static char *buf;
    static size_t cap;
    return getline(&buf, &cap, f) > 0 ? buf : NULL;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* limit > 0: only the first `limit` prompts, and every one of them must be identical. */
static void check_greedy(struct slm_model *m, struct slm_tokenizer *tok, const char *dir, struct reference ref,
                         int limit)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/smollm2_greedy_%s.txt", dir, ref.build);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("greedy: cannot open %s\n", path);
        failures++;
        return;
    }
    char err[SLM_ERR_LEN];
    struct slm_runner *r = slm_runner_create(m, 2048, 512, err);
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof *logits);
    struct ref_prompt *rp = calloc(1, sizeof *rp);
    int32_t *ours = malloc(MAX_IDS * sizeof *ours);
    int n_prompts = 0, identical = 0, tok_mismatch = 0;
    char *line;
    while ((line = read_line(f)) && !(limit > 0 && n_prompts == limit)) {
        if (line[0] == 'T' && line[1] == ' ') unescape(line + 2, rp->text, sizeof rp->text);
        else if (line[0] == 'P') rp->n_prompt = parse_list(line, rp->prompt, NULL, MAX_IDS);
        else if (line[0] == 'G') rp->n_gen = parse_list(line, rp->gen, NULL, GEN);
        else if (line[0] == 'M') {
            parse_list(line, NULL, rp->margin, GEN);
            /* a record is complete: run it */
            int n = slm_tok_encode(tok, rp->text, strlen(rp->text), 1, 1, ours, MAX_IDS);
            if (n != rp->n_prompt || memcmp(ours, rp->prompt, (size_t)n * sizeof *ours) != 0) {
                printf("prompt %d: our tokenization differs from llama.cpp's (%d vs %d ids)\n", n_prompts, n,
                       rp->n_prompt);
                tok_mismatch++;
            }
            slm_runner_reset(r);
            int rc = slm_runner_eval(r, rp->prompt, rp->n_prompt, 0, logits);
            int diverged = -1;
            int32_t got[GEN];
            for (int s = 0; s < rp->n_gen && rc == 0; s++) {
                got[s] = argmax(logits, m->cfg.n_vocab);
                if (got[s] != rp->gen[s] && diverged < 0) diverged = s;
                /* teacher-force llama.cpp's token so later steps stay comparable */
                rc = slm_runner_eval(r, &rp->gen[s], 1, 0, logits);
            }
            if (rc) {
                printf("prompt %d: forward failed: %s\n", n_prompts, strerror(-rc));
                failures++;
            } else if (diverged < 0) {
                identical++;
            } else {
                int tie = rp->margin[diverged] < 0.1;
                printf("prompt %d: first divergence at step %d: expected %d, got %d; llama.cpp's margin %.4f %s\n",
                       n_prompts, diverged, rp->gen[diverged], got[diverged], rp->margin[diverged],
                       tie ? "(a near tie: allowed)" : "(NOT a near tie)");
                if (!tie) failures++;
            }
            n_prompts++;
        }
    }
    fclose(f);
    printf("greedy: %d of %d prompts identical to llama.cpp for %d tokens (need %s); %d tokenizations differ\n",
           identical, n_prompts, GEN, limit > 0 ? "all" : ">= 19 of 20", tok_mismatch);
    if (limit > 0 ? n_prompts != limit || identical != limit : n_prompts != 20 || identical < 19) failures++;
    if (tok_mismatch) failures++;
    free(ours);
    free(rp);
    free(logits);
    slm_runner_destroy(&r);
}

static void check_perplexity(struct slm_model *m, const char *dir, struct reference ref)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/smollm2_ppl_%s.txt", dir, ref.build);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("perplexity: cannot open %s\n", path);
        failures++;
        return;
    }
    /* lines (see the file's header): "N <count>", "T <ids>", "NLL <x>", "PPL <x>", "L <log-probs>" */
    int32_t *ids = malloc(MAX_IDS * sizeof *ids);
    int n = 0, n_declared = -1;
    double ref_ppl = 0;
    char *line;
    while ((line = read_line(f))) {
        if (!strncmp(line, "N ", 2)) n_declared = atoi(line + 2);
        else if (!strncmp(line, "T ", 2)) n = parse_list(line, ids, NULL, MAX_IDS);
        else if (!strncmp(line, "PPL ", 4)) ref_ppl = strtod(line + 4, NULL);
    }
    fclose(f);
    if (n < 512 || n != n_declared || ref_ppl <= 0) {
        printf("perplexity: reference file has %d ids (N says %d) and ppl %g\n", n, n_declared, ref_ppl);
        failures++;
        free(ids);
        return;
    }
    char err[SLM_ERR_LEN];
    struct slm_runner *r = slm_runner_create(m, n, 512, err);
    float *logits = malloc((size_t)n * (size_t)m->cfg.n_vocab * sizeof *logits);
    int rc = r && logits ? slm_runner_eval(r, ids, n, 1, logits) : -ENOMEM;
    if (rc) {
        printf("perplexity: forward failed: %s\n", strerror(-rc));
        failures++;
    } else {
        double nll = 0;
        for (int i = 1; i < n; i++) {
            const float *row = logits + (size_t)(i - 1) * (size_t)m->cfg.n_vocab;
            double mx = row[argmax(row, m->cfg.n_vocab)], sum = 0;
            for (int v = 0; v < m->cfg.n_vocab; v++) sum += exp((double)row[v] - mx);
            nll -= (double)row[ids[i]] - mx - log(sum);
        }
        /* The measured signed difference and its margin (the file's header comment). */
        const double measured = ref.ppl_measured, margin = ref.ppl_margin;
        double ppl = exp(nll / (n - 1));
        double rel = (ppl - ref_ppl) / ref_ppl;
        printf("perplexity over %d tokens: ours %.4f, llama.cpp %.4f, difference %+.3f%% (expected %+.3f%% +- %.3f)\n",
               n, ppl, ref_ppl, rel * 100, measured * 100, margin * 100);
        if (!(fabs(rel - measured) <= margin)) {
            printf("perplexity: expected a difference within %+.3f%% .. %+.3f%%, got %+.3f%%\n",
                   (measured - margin) * 100, (measured + margin) * 100, rel * 100);
            failures++;
        }
    }
    free(logits);
    free(ids);
    slm_runner_destroy(&r);
}

int main(void)
{
    const char *mdir = getenv("SLM_MODEL_DIR"), *tdir = getenv("SLM_TEST_DATA");
    char path[1024], err[SLM_ERR_LEN];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", mdir ? mdir : ".");
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        printf("skip: %s is absent (run packaging/fetch-models.sh)\n", path);
        return 77;
    }
    fclose(probe);
    struct slm_model *m = slm_model_load(path, err);
    struct slm_backend *be = m ? slm_backend_cpu_create(2, err) : NULL;
    if (!m || !be || slm_model_bind(m, be, err)) {
        printf("load: %s\n", err);
        return 1;
    }
    struct slm_tokenizer *tok = slm_tok_create(m->gguf, err);
    if (!tok) {
        printf("tokenizer: %s\n", err);
        return 1;
    }
    /* SLM_TEST_MODEL_PROMPTS=N: a short run (the first N prompts, all identical, no perplexity),
     * for the slow portable kernels. */
    const char *lim = getenv("SLM_TEST_MODEL_PROMPTS");
    int limit = lim ? atoi(lim) : 0;
    struct reference ref = reference_for(slm_cpu_lanes());
    printf("reference: llama.cpp's %s build (%d-lane sums, kernels %s)\n", ref.build, slm_cpu_lanes(),
           slm_cpu_kernels_name());
    check_greedy(m, tok, tdir ? tdir : "tests", ref, limit);
    if (limit <= 0) check_perplexity(m, tdir ? tdir : "tests", ref);
    slm_tok_destroy(&tok);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    printf("test_model: %s\n", failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
