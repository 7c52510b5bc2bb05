/* test_arch: the architectures slmd reads (issue 19). gemma3 on the real Gemma 3 270M Q4_K_M file
 * (packaging/fetch-models.sh fetches it; skipped when absent), along llama.cpp's greedy path from
 * one prompt (and its greedy continuations of 10 prompts and its perplexity against
 * llama-perplexity's, below); the others without their weights (qwen2 with QKV biases; qwen3; llama3 with Llama 3.2's
 * rope_freqs, tied and untied; phi3 with fused QKV and gate_up and LongRoPE, its short and its
 * long factors; gemma3 with a sliding window of 16, and with logit soft-capping and the file's
 * sliding-window pattern, a period or one bool per layer): for each one,
 * tests/golden/make_arch_models.py writes a small random-weight GGUF with the architecture's real
 * metadata and tensor names (deterministic: its sha256 must be the one the reference was made
 * from), slmd's CPU engine evaluates the reference's 64 token ids (after its unrecorded prefix,
 * if any, in the reference's context), and every position's logits are compared with llama.cpp's
 * on the same file (tests/golden/arch/ARCH.txt, made by tests/golden/make_arch_reference.py from
 * the llama.cpp build of bench/peer):
 * - the argmax equal at every position where llama.cpp's two best logits are more than twice the
 *   bound apart (a near tie is a coin toss; at least half the positions must be decisive);
 * - each of the 16 recorded logits a position (the reference's 8 best and 8 fixed ids) within
 *   tol of llama.cpp's (measured and bound below, and in docs/architectures.md).
 * And what slmd does not compute yet is refused in one line, not computed wrongly: a llama file
 * with YaRN RoPE scaling (rope.scaling.type "yarn"); and so are a gemma3 file's bad keys: a negative
 * soft-cap, a pattern array of the wrong length, a pattern that makes every layer local.
 * Needs python3 with the PyPI packages gguf and numpy (packaging/setup.sh installs them); without
 * them the test is skipped (77) and says why. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/backends/backend.h"
#include "daemon/engine/model.h"
#include "daemon/engine/runner.h"
#include "kernels/cpu/matmul.h"
#include "tests/check.h"

#define MAX_TOK 64
#define MAX_PREFIX 1024
#define IDS 16
/* The synthetic files: their logits are O(10) (O(100) for the tied llama3's input token);
 * llama.cpp rounds the activations of an F16 matmul to f16, slmd keeps them in float. Measured
 * (2026-12-05, AVX2) at most: qwen2 0.0043, qwen3 0.0060, llama3 0.0115, llama3-untied 0.0040, phi3 0.0080,
 * phi3-long 0.0065, gemma3 0.0100 apart. Each bound is its measure times about 3, and below what
 * a missing step gives (measured: qwen2 without its k bias over 0.05 at position 1; llama3 without
 * its rope_freqs 0.14, llama3-untied 0.073;
 * phi3 without its factors, its attention factor, or with the other set: 1.1 or more; gemma3
 * with a window one too wide or narrow: 2.0 or more, with none 8.9). gemma3-cap (final
 * soft-capping 50, the sliding-window pattern 3 from the file) and gemma3-swa-array (the pattern as
 * one bool per layer), measured 2026-12-06 against the AVX-512 build: 0.0094 and 0.015; without
 * the soft-capping 89, with the file's pattern left for the default 6: 3.1 and 3.8. */
#define QWEN2_TOL 0.015
#define QWEN3_TOL 0.02
#define LLAMA3_TOL 0.035
#define LLAMA3_UNTIED_TOL 0.012
#define PHI3_TOL 0.025
#define PHI3_LONG_TOL 0.02
#define GEMMA3_TOL 0.03
#define GEMMA3_CAP_TOL 0.03
#define GEMMA3_SWA_ARRAY_TOL 0.045
/* Gemma 3 270M Q4_K_M, along llama.cpp's greedy path from "The capital of France is", against
 * the reference of the llama.cpp build whose lanes slmd follows on this machine (slm_cpu_lanes,
 * docs/numerics.md): tests/golden/arch/gemma3-270m*.txt from an AVX2 build (a 2-core AMD EPYC,
 * 2026-12-04/05), gemma3-270m*-avx512.txt from an AVX-512 build without AMX (an Intel Xeon,
 * 2026-12-05; bench/peer/build-llama-cpp.sh). slmd's quantized dot products are llama.cpp's bit
 * for bit in both builds (bench/peer/vec-dot-peer.sh), so the bounds are per layout:
 * - 8 lanes, against the AVX2 build (measured 2026-12-05, on both machines): every recorded logit
 *   (16 at each of the 64 positions, order 20) equal to llama.cpp's to the reference's 6 printed
 *   decimals (difference under 5e-7, so the same floats); the bound is 6e-7, 20% above what the 6
 *   decimals can show: one ulp off in any logit above 4 fails. Greedy, 10 prompts x 32 tokens
 *   (gemma3-270m-greedy.txt): 10 of 10 identical; the bound is 9, what is achieved less one
 *   prompt (issue 19 asks 8).
 * - 16 lanes, against the AVX-512 build (measured 2026-12-05 on the Xeon): logits at most 0.28
 *   apart (bound 0.35, 25% above; equal at positions 0-59, apart from 60 on: some float order of
 *   that build's 16-lane attention is not yet followed, docs/numerics.md), the argmax equal at 53
 *   of 53 positions without a near tie, 10 of 10 greedy prompts identical (bound 9). Against the AVX2 build's files these lanes gave
 *   logits 0.63 apart and 4 of 10 prompts: the two builds themselves agree on 4 of 10.
 * Perplexity of bench/data/perplexity.txt (4 chunks of 512) against that build's llama-perplexity
 * (its batched paths: other kernels, so a statistical comparison): 16.8670 vs 16.8408, 0.156%
 * apart with 8 lanes; 16.8632 vs 16.9242, 0.360% with 16 (the figure moves by a tenth of a percent
 * with any rounding); the bound is the 0.5%. */
struct gemma_bounds {
    const char *suffix;   /* of the reference files: "" (the AVX2 build's) or "-avx512" */
    double tol;           /* the logits' bound */
    int greedy_min;       /* greedy prompts that must be identical, of 10 */
};

static struct gemma_bounds gemma_bounds_for(int lanes)
{
    if (lanes == 16) return (struct gemma_bounds){"-avx512", 0.35, 9};
    return (struct gemma_bounds){"", 6e-7, 9};
}
#define GEMMA_PPL_TOL 0.005

struct golden {
    char sha[65];
    int n_ctx;   /* the context the reference was made with (256 unless the file says) */
    int n_prefix;            /* tokens fed before the recorded positions (0 unless the file says) */
    int32_t prefix[MAX_PREFIX];
    int n;
    int32_t tok[MAX_TOK];
    int argmax[MAX_TOK];
    double gap[MAX_TOK];
    int id[MAX_TOK][IDS];
    double val[MAX_TOK][IDS];
};

static int read_golden(const char *path, struct golden *g)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("FAIL %s: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = fscanf(f, " sha256 %64s", g->sha) == 1;
    g->n_ctx = 256;
    if (ok && fscanf(f, " n_ctx %d", &g->n_ctx) == 1) ok = g->n_ctx >= MAX_TOK;
    if (ok && fscanf(f, " prefix %d", &g->n_prefix) == 1) ok = g->n_prefix > 0 && g->n_prefix <= MAX_PREFIX;
    for (int i = 0; ok && i < g->n_prefix; i++) ok = fscanf(f, "%d", &g->prefix[i]) == 1;
    ok = ok && fscanf(f, " tokens %d", &g->n) == 1 && g->n > 0 && g->n <= MAX_TOK && g->n_prefix + g->n <= g->n_ctx;
    for (int i = 0; ok && i < g->n; i++) ok = fscanf(f, "%d", &g->tok[i]) == 1;
    for (int p = 0; ok && p < g->n; p++) {
        int pp;
        ok = fscanf(f, " pos %d argmax %d gap %lf", &pp, &g->argmax[p], &g->gap[p]) == 3 && pp == g->n_prefix + p;
        for (int k = 0; ok && k < IDS; k++) ok = fscanf(f, " %d:%lf", &g->id[p][k], &g->val[p][k]) == 2;
    }
    fclose(f);
    if (!ok) printf("FAIL %s: not in the format make_arch_reference.py writes\n", path);
    return ok ? 0 : -1;
}

/* Writes the model with the generator; 0, 77 (no gguf / numpy: skip) or -1. Fills sha. */
static int generate(const char *tdir, const char *arch, const char *out, char sha[65])
{
    if (system("python3 -c 'import gguf, numpy' 2>/dev/null") != 0) {
        printf("skip: python3 cannot import gguf and numpy (pip install gguf numpy; packaging/setup.sh does)\n");
        return 77;
    }
    char cmd[2048], line[512];
    snprintf(cmd, sizeof cmd, "python3 '%s/golden/make_arch_models.py' %s '%s'", tdir, arch, out);
    FILE *p = popen(cmd, "r");
    int found = 0;
    while (p && fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "sha256 ");
        if (s && sscanf(s + 7, "%64s", sha) == 1) found = 1;
    }
    int rc = p ? pclose(p) : -1;
    if (rc != 0 || !found) {
        printf("FAIL %s: %s gave no model (exit %d)\n", arch, cmd, rc);
        return -1;
    }
    return 0;
}

/* One architecture: arch names the golden file; real is NULL for a synthetic model (written by
 * the generator), else the file name of a real model in $SLM_MODEL_DIR; tol the logits' bound. */
static void check_arch(const char *tdir, const char *tmp, const char *arch, const char *real, double tol,
                       int *skipped)
{
    char gpath[1024], mpath[1024], sha[65] = "", err[SLM_ERR_LEN];
    struct golden *g = calloc(1, sizeof *g);
    snprintf(gpath, sizeof gpath, "%s/golden/arch/%s.txt", tdir, arch);
    snprintf(mpath, sizeof mpath, "%s/%s.gguf", tmp, arch);
    if (!g || read_golden(gpath, g)) {
        failures++;
        free(g);
        return;
    }
    if (real) {   /* pinned by packaging/fetch-models.sh: its sha256 is checked there */
        const char *mdir = getenv("SLM_MODEL_DIR");
        snprintf(mpath, sizeof mpath, "%s/%s", mdir ? mdir : ".", real);
        if (access(mpath, R_OK) != 0) {
            printf("skip %s: %s is absent (packaging/fetch-models.sh)\n", arch, mpath);
            *skipped = 1;
            free(g);
            return;
        }
    } else {
        int rc = generate(tdir, arch, mpath, sha);
        if (rc == 77) *skipped = 1;
        if (rc) {
            if (rc < 0) failures++;
            free(g);
            return;
        }
        CHECK(strcmp(sha, g->sha) == 0, "%s: the generated model's sha256 %s is not the reference's %s", arch, sha,
              g->sha);
    }
    struct slm_model *m = slm_model_load(mpath, err);
    struct slm_backend *be = m ? slm_backend_cpu_create(2, err) : NULL;
    if (!m || !be || slm_model_bind(m, be, err)) {
        printf("FAIL %s: load: %s\n", arch, err);
        failures++;
        slm_model_free(&m);
        slm_backend_destroy(&be);
        free(g);
        return;
    }
    const int nv = m->cfg.n_vocab;
    struct slm_runner *r = slm_runner_create(m, g->n_ctx, 64, err);
    float *logits = malloc((size_t)g->n * (size_t)nv * sizeof *logits);
    int rc = r && logits ? 0 : -ENOMEM;
    if (rc == 0 && g->n_prefix) rc = slm_runner_eval(r, g->prefix, g->n_prefix, 0, logits);   /* its logits unused */
    if (rc == 0) rc = slm_runner_eval(r, g->tok, g->n, 1, logits);
    CHECK(rc == 0, "%s: eval: %d (%s)", arch, rc, r ? "" : err);
    double worst = 0;
    int argmax_bad = 0, val_bad = 0, argmax_checked = 0;
    for (int p = 0; rc == 0 && p < g->n; p++) {
        const float *row = logits + (size_t)p * (size_t)nv;
        int best = 0;
        for (int i = 1; i < nv; i++)
            if (row[i] > row[best]) best = i;
        const int decisive = g->gap[p] > 2 * tol;   /* else a near tie: the argmax is a coin toss */
        argmax_checked += decisive;
        if (decisive && best != g->argmax[p] && argmax_bad++ < 3)
            printf("  %s pos %d: argmax %d (%.4f), llama.cpp %d (%.4f here)\n", arch, g->n_prefix + p, best, row[best],
                   g->argmax[p], row[g->argmax[p]]);
        for (int k = 0; k < IDS; k++) {
            const int id = g->id[p][k];
            const double d = id >= 0 && id < nv ? fabs((double)row[id] - g->val[p][k]) : INFINITY;
            if (!(d <= worst)) worst = d;
            if (!(d <= tol) && val_bad++ < 3)
                printf("  %s pos %d id %d: %.7f, llama.cpp %.7f\n", arch, g->n_prefix + p, id,
                       id >= 0 && id < nv ? row[id] : 0.0f, g->val[p][k]);
        }
    }
    CHECK(argmax_bad == 0, "%s: the argmax differs from llama.cpp's at %d of %d decisive positions", arch, argmax_bad,
          argmax_checked);
    CHECK(argmax_checked >= g->n / 2, "%s: only %d of %d positions without a near tie", arch, argmax_checked, g->n);
    CHECK(val_bad == 0, "%s: %d logits more than %g from llama.cpp's", arch, val_bad, tol);
    printf("%s: %d positions from %d, argmax equal at %d of the %d without a near tie, logits within %.2g of "
           "llama.cpp's (bound %g)\n", arch, g->n, g->n_prefix, argmax_checked - argmax_bad, argmax_checked, worst,
           tol);
    free(logits);
    slm_runner_destroy(&r);
    slm_model_free(&m);
    slm_backend_destroy(&be);
    free(g);
}

/* Greedy continuations of a real model against llama.cpp's (tests/golden/arch/NAME.txt, made by
 * make_arch_reference.py --greedy): per prompt, slmd's argmax at every step, llama.cpp's token fed
 * back (teacher forced, so each step compares like with like, as test_model does); a prompt is
 * identical when every step's argmax is llama.cpp's. At least `need` prompts must be. */
#define GREEDY_MAX 16
#define GREEDY_STEPS 32
static void check_greedy(const char *tdir, const char *name, const char *real, int need, int *skipped)
{
    char gpath[1024], mpath[1024], err[SLM_ERR_LEN], sha[65];
    const char *mdir = getenv("SLM_MODEL_DIR");
    snprintf(gpath, sizeof gpath, "%s/golden/arch/%s.txt", tdir, name);
    snprintf(mpath, sizeof mpath, "%s/%s", mdir ? mdir : ".", real);
    if (access(mpath, R_OK) != 0) {
        printf("skip %s: %s is absent (packaging/fetch-models.sh)\n", name, mpath);
        *skipped = 1;
        return;
    }
    FILE *f = fopen(gpath, "r");
    static int32_t prompt[GREEDY_MAX][MAX_TOK], gen[GREEDY_MAX][GREEDY_STEPS];
    static double margin[GREEDY_MAX][GREEDY_STEPS];
    int np[GREEDY_MAX], n = 0, ok = f && fscanf(f, " sha256 %64s", sha) == 1;
    char tag[2];
    while (ok && n < GREEDY_MAX && fscanf(f, " %1s", tag) == 1 && tag[0] == 'P') {
        np[n] = 0;
        int c;
        while ((c = fgetc(f)) != '\n' && c != EOF) {
            if (c == ' ') continue;
            ungetc(c, f);
            ok = np[n] < MAX_TOK && fscanf(f, "%d", &prompt[n][np[n]++]) == 1;
            if (!ok) break;
        }
        ok = ok && fscanf(f, " G") == 0;
        for (int s = 0; ok && s < GREEDY_STEPS; s++) ok = fscanf(f, "%d", &gen[n][s]) == 1;
        ok = ok && fscanf(f, " M") == 0;
        for (int s = 0; ok && s < GREEDY_STEPS; s++) ok = fscanf(f, "%lf", &margin[n][s]) == 1;
        n += ok;
    }
    if (f) fclose(f);
    if (!ok || n == 0) {
        printf("FAIL %s: not in the format make_arch_reference.py --greedy writes\n", gpath);
        failures++;
        return;
    }
    struct slm_model *m = slm_model_load(mpath, err);
    struct slm_backend *be = m ? slm_backend_cpu_create(2, err) : NULL;
    if (!m || !be || slm_model_bind(m, be, err)) {
        printf("FAIL %s: load: %s\n", name, err);
        failures++;
        slm_model_free(&m);
        slm_backend_destroy(&be);
        return;
    }
    const int nv = m->cfg.n_vocab;
    struct slm_runner *r = slm_runner_create(m, 256, 64, err);
    float *logits = malloc((size_t)nv * sizeof *logits);
    int identical = 0, rc = r && logits ? 0 : -ENOMEM;
    for (int p = 0; p < n && rc == 0; p++) {
        slm_runner_reset(r);
        rc = slm_runner_eval(r, prompt[p], np[p], 0, logits);
        int diverged = -1, got = -1;
        double ours_margin = 0;
        for (int s = 0; s < GREEDY_STEPS && rc == 0; s++) {
            int best = 0, second = -1;
            for (int i = 1; i < nv; i++) {
                if (logits[i] > logits[best]) {
                    second = best;
                    best = i;
                } else if (second < 0 || logits[i] > logits[second]) {
                    second = i;
                }
            }
            if (best != gen[p][s] && diverged < 0) {
                diverged = s;
                got = best;
                ours_margin = (double)logits[best] - logits[gen[p][s]];
            }
            if (s + 1 < GREEDY_STEPS) rc = slm_runner_eval(r, &gen[p][s], 1, 0, logits);
        }
        if (rc == 0 && diverged < 0) identical++;
        else if (rc == 0)
            printf("  %s prompt %d: first divergence at step %d: %d, llama.cpp %d (llama.cpp's margin %.4f, "
                   "slmd's %.4f)\n", name, p, diverged, got, gen[p][diverged], margin[p][diverged], ours_margin);
    }
    CHECK(rc == 0, "%s: eval: %d", name, rc);
    CHECK(identical >= need, "%s: %d of %d prompts identical to llama.cpp for %d tokens, need %d", name, identical,
          n, GREEDY_STEPS, need);
    printf("%s: %d of %d prompts identical to llama.cpp for %d greedy tokens (need %d)\n", name, identical, n,
           GREEDY_STEPS, need);
    free(logits);
    slm_runner_destroy(&r);
    slm_model_free(&m);
    slm_backend_destroy(&be);
}

/* The perplexity of bench/data/perplexity.txt by `slmd run --perplexity` (llama-perplexity's
 * definition: chunks of 512, each scored on its second half) against llama-perplexity's on the same
 * file (tests/golden/arch/NAME.txt, made by tests/golden/make_ppl_reference.sh): within rel_tol. */
static void check_perplexity(const char *tdir, const char *name, const char *real, double rel_tol, int *skipped)
{
    char gpath[1024], mpath[1024], cmd[4096], line[512];
    const char *mdir = getenv("SLM_MODEL_DIR"), *slmd = getenv("SLMD");
    snprintf(gpath, sizeof gpath, "%s/golden/arch/%s.txt", tdir, name);
    snprintf(mpath, sizeof mpath, "%s/%s", mdir ? mdir : ".", real);
    if (access(mpath, R_OK) != 0 || !slmd) {
        printf("skip %s: %s\n", name, slmd ? "the model is absent (packaging/fetch-models.sh)" : "SLMD is not set");
        *skipped = 1;
        return;
    }
    FILE *f = fopen(gpath, "r");
    int ctx = 0, chunks = 0;
    double ref = 0;
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "ctx %d", &ctx);
        sscanf(line, "chunks %d", &chunks);
        sscanf(line, "ppl %lf", &ref);
    }
    if (f) fclose(f);
    if (ctx <= 0 || chunks <= 0 || ref <= 0) {
        printf("FAIL %s: no ctx, chunks and ppl lines (tests/golden/make_ppl_reference.sh writes them)\n", gpath);
        failures++;
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --threads 2 --ctx-size %d --perplexity '%s/../bench/data/perplexity.txt' 2>&1",
             slmd, mpath, ctx, tdir);
    FILE *p = popen(cmd, "r");
    double ppl = 0;
    int n_chunks = 0;
    while (p && fgets(line, sizeof line, p)) {
        const char *s = strstr(line, "perplexity: ");
        long count;
        if (s) sscanf(s, "perplexity: %lf over %ld tokens (%d chunks", &ppl, &count, &n_chunks);
    }
    int rc = p ? pclose(p) : -1;
    double rel = ref > 0 ? fabs(ppl / ref - 1) : INFINITY;
    CHECK(rc == 0 && ppl > 0, "%s: %s gave no perplexity (exit %d)", name, cmd, rc);
    CHECK(n_chunks == chunks, "%s: %d chunks, llama-perplexity %d", name, n_chunks, chunks);
    CHECK(rel <= rel_tol, "%s: perplexity %.4f, llama-perplexity %.4f: %.3f%% apart, bound %.2f%%", name, ppl, ref,
          rel * 100, rel_tol * 100);
    printf("%s: perplexity %.4f over %d chunks of %d, llama-perplexity %.4f: %.3f%% apart (bound %.2f%%)\n", name, ppl,
           n_chunks, ctx, ref, rel * 100, rel_tol * 100);
}

/* A file slmd must refuse: loading fails with a message containing `want`. */
static void check_refused(const char *tdir, const char *tmp, const char *arch, const char *want, int *skipped)
{
    char mpath[1024], sha[65], err[SLM_ERR_LEN] = "";
    snprintf(mpath, sizeof mpath, "%s/%s.gguf", tmp, arch);
    int rc = generate(tdir, arch, mpath, sha);
    if (rc == 77) *skipped = 1;
    if (rc) {
        if (rc < 0) failures++;
        return;
    }
    struct slm_model *m = slm_model_load(mpath, err);
    CHECK(!m && strstr(err, want), "%s: expected the load refused naming '%s', got %s '%s'", arch, want,
          m ? "a model" : "the error", err);
    if (!m) printf("%s: refused: %s\n", arch, err);
    slm_model_free(&m);
}

int main(void)
{
    const char *tdir = getenv("SLM_TEST_DATA");
    if (!tdir) tdir = "tests";
    char tmp[] = "/tmp/slm-arch-XXXXXX";
    if (!mkdtemp(tmp)) {
        printf("FAIL mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    int skipped = 0;
    /* SLM_TEST_ARCH_GEMMA_ONLY: only Gemma 3 270M's checks (the lane-forced runs of CMakeLists.txt,
     * whose synthetic models test_arch itself already checks) */
    const int synthetic = !getenv("SLM_TEST_ARCH_GEMMA_ONLY");
    if (synthetic) {
        check_arch(tdir, tmp, "qwen2", NULL, QWEN2_TOL, &skipped);
        check_arch(tdir, tmp, "qwen3", NULL, QWEN3_TOL, &skipped);
        check_arch(tdir, tmp, "llama3", NULL, LLAMA3_TOL, &skipped);
        check_arch(tdir, tmp, "llama3-untied", NULL, LLAMA3_UNTIED_TOL, &skipped);
        check_arch(tdir, tmp, "phi3", NULL, PHI3_TOL, &skipped);
        check_arch(tdir, tmp, "phi3-long", NULL, PHI3_LONG_TOL, &skipped);
        check_arch(tdir, tmp, "gemma3", NULL, GEMMA3_TOL, &skipped);
        check_arch(tdir, tmp, "gemma3-cap", NULL, GEMMA3_CAP_TOL, &skipped);
        check_arch(tdir, tmp, "gemma3-swa-array", NULL, GEMMA3_SWA_ARRAY_TOL, &skipped);
    }
    struct gemma_bounds gb = gemma_bounds_for(slm_cpu_lanes());
    printf("lanes: %d (kernels %s)\n", slm_cpu_lanes(), slm_cpu_kernels_name());
    char name[64];
    snprintf(name, sizeof name, "gemma3-270m%s", gb.suffix);
    check_arch(tdir, tmp, name, "gemma-3-270m-q4_k_m.gguf", gb.tol, &skipped);
    snprintf(name, sizeof name, "gemma3-270m-greedy%s", gb.suffix);
    check_greedy(tdir, name, "gemma-3-270m-q4_k_m.gguf", gb.greedy_min, &skipped);
    snprintf(name, sizeof name, "gemma3-270m-ppl%s", gb.suffix);
    check_perplexity(tdir, name, "gemma-3-270m-q4_k_m.gguf", GEMMA_PPL_TOL, &skipped);
    if (synthetic) {
        check_refused(tdir, tmp, "llama-yarn", "RoPE scaling 'yarn'", &skipped);
        check_refused(tdir, tmp, "gemma3-badcap", "key 'gemma3.final_logit_softcapping': value -1 is out of range",
                      &skipped);
        check_refused(tdir, tmp, "gemma3-badpattern",
                      "key 'gemma3.attention.sliding_window_pattern': an array of 5 bool, not one bool for each of "
                      "the 6 layers",
                      &skipped);
        check_refused(tdir, tmp, "gemma3-alllocal", "makes every layer a sliding-window layer", &skipped);
    }
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    if (failures) {
        printf("test_arch: %d failures\n", failures);
        return 1;
    }
    if (skipped) return 77;
    printf("test_arch: ok\n");
    return 0;
}
