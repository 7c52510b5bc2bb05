/*
 * tests/test_sampler.c - the sampler against exact and statistical oracles.
 *
 * Statistical checks draw N tokens and compare the counts with the expected
 * probabilities by Pearson's chi-square; each bound is the chi-square quantile with
 * upper tail 1e-6 for its degrees of freedom, so a correct sampler fails one check
 * with probability below 1e-6 (the seeds are fixed, so a run is reproducible anyway).
 * Expected probabilities come from a plain reference: a full sort, then the cuts in
 * double precision, then softmax(logit / T).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/engine/sampler.h"
#include "common/log.h"
#include "kernels/fixsum.h"

#include "tests/check.h"

/* Upper 1e-6 quantiles of chi-square with df = 1..11 degrees of freedom. */
static const double chi2_1e6[] = {0, 23.928, 27.631, 30.665, 33.377, 35.888, 38.258,
                                  40.522, 42.701, 44.811, 46.863, 48.866};

static double chi2_bound(int df)
{
    if (df < (int)(sizeof chi2_1e6 / sizeof chi2_1e6[0])) return chi2_1e6[df];
    /* Wilson-Hilferty with z = 4.7534 (upper tail 1e-6). For df >= 11 it lies just above
     * the exact quantile (df 11: 49.90 vs 48.87; df 205: 316.21 vs 316.01; df 1130:
     * 1370.61 vs 1370.54), so the failure probability stays below 1e-6. */
    double a = 2.0 / (9.0 * df);
    return df * pow(1 - a + 4.7534 * sqrt(a), 3);
}

static uint64_t lcg_state = 12345;
static float lcg_uniform(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(lcg_state >> 40) / 16777216.0f;
}

static struct slm_sampling plain(float temperature)
{
    struct slm_sampling p;
    slm_sampling_defaults(&p);
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.seed = 1234;
    return p;
}

/* ---- reference ---- */

static const float *ref_logits;
static int ref_cmp(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (ref_logits[i] != ref_logits[j]) return ref_logits[i] > ref_logits[j] ? -1 : 1;
    return i - j;
}

/* prob[n]: the chain's distribution over logits[n] (finite, no penalties). */
static void reference(const float *logits, int n, const struct slm_sampling *p, double *prob)
{
    int *idx = malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++) idx[i] = i;
    ref_logits = logits;
    qsort(idx, (size_t)n, sizeof *idx, ref_cmp);
    int keep = n;
    if (p->top_k > 0 && p->top_k < keep) keep = p->top_k;
    double mx = logits[idx[0]];
    if (p->top_p < 1) {
        double z = 0, cum = 0;
        for (int i = 0; i < keep; i++) z += exp(logits[idx[i]] - mx);
        for (int i = 0; i < keep; i++) {
            cum += exp(logits[idx[i]] - mx) / z;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        float thr = (float)mx + logf(p->min_p);
        int k = 0;
        while (k < keep && logits[idx[k]] >= thr) k++;
        keep = k;
    }
    double z = 0;
    for (int i = 0; i < n; i++) prob[i] = 0;
    for (int i = 0; i < keep; i++) z += exp((logits[idx[i]] - mx) / p->temperature);
    for (int i = 0; i < keep; i++) prob[idx[i]] = exp((logits[idx[i]] - mx) / p->temperature) / z;
    free(idx);
}

/* Draws `draws` tokens; fails on any token of probability 0 and on a chi-square
 * statistic above the 1e-6 bound. Returns the number of kept tokens. */
static int check_distribution(const char *what, const float *logits, const double *prob, int n,
                              const struct slm_sampling *p, int draws)
{
    struct slm_sampler *s = slm_sampler_create(p, n);
    CHECK(s, "%s: create: expected a sampler, got NULL", what);
    if (!s) return 0;
    long *count = calloc((size_t)n, sizeof *count);
    int bad = 0;
    for (int d = 0; d < draws; d++) {
        int32_t t = slm_sampler_sample(s, logits);
        if (t < 0 || t >= n) {
            CHECK(0, "%s: token: expected in [0, %d), got %d", what, n, t);
            break;
        }
        count[t]++;
    }
    int kept = 0;
    double chi2 = 0;
    for (int i = 0; i < n; i++) {
        if (prob[i] == 0) {
            if (count[i] && bad++ < 10) CHECK(0, "%s: draws of excluded token %d: expected 0, got %ld", what, i, count[i]);
            continue;
        }
        kept++;
        double e = prob[i] * draws;
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    if (kept > 1) {
        double bound = chi2_bound(kept - 1);
        CHECK(chi2 <= bound, "%s: chi-square (df %d): expected <= %.2f, got %.2f", what, kept - 1, bound, chi2);
        printf("%s: %d kept, chi-square %.2f (df %d, bound %.2f)\n", what, kept, chi2, kept - 1, bound);
    }
    free(count);
    slm_sampler_destroy(&s);
    return kept;
}

/* ---- tests ---- */

static void test_defaults_and_validate(void)
{
    struct slm_sampling p;
    slm_sampling_defaults(&p);
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f &&
          p.repeat_penalty == 1.0f && p.repeat_last_n == 64 && p.presence_penalty == 0 &&
          p.frequency_penalty == 0 && p.seed == 0, "defaults: expected llama.cpp's, got others");
    char err[SLM_ERR_LEN];
    CHECK(slm_sampling_validate(&p, err) == 0, "validate(defaults): expected 0, got error '%s'", err);

    struct { const char *field; struct slm_sampling q; } cases[32];
    int n = 0;
#define CASE(f, stmt) do { cases[n].field = f; cases[n].q = p; { struct slm_sampling *q = &cases[n].q; stmt; } n++; } while (0)
    CASE("temperature", q->temperature = -0.1f);
    CASE("temperature", q->temperature = NAN);
    CASE("temperature", q->temperature = INFINITY);
    CASE("top_k", q->top_k = -1);
    CASE("top_p", q->top_p = 1.01f);
    CASE("top_p", q->top_p = -0.01f);
    CASE("top_p", q->top_p = NAN);
    CASE("min_p", q->min_p = -0.01f);
    CASE("min_p", q->min_p = 1.5f);
    CASE("min_p", q->min_p = NAN);
    CASE("repeat_penalty", q->repeat_penalty = 0);
    CASE("repeat_penalty", q->repeat_penalty = -1);
    CASE("repeat_penalty", q->repeat_penalty = NAN);
    CASE("repeat_penalty", q->repeat_penalty = INFINITY);
    CASE("repeat_last_n", q->repeat_last_n = -2);
    CASE("presence_penalty", q->presence_penalty = NAN);
    CASE("presence_penalty", q->presence_penalty = -INFINITY);
    CASE("frequency_penalty", q->frequency_penalty = NAN);
#undef CASE
    for (int i = 0; i < n; i++) {
        err[0] = 0;
        int rc = slm_sampling_validate(&cases[i].q, err);
        CHECK(rc == -EINVAL, "validate(bad %s #%d): expected -EINVAL, got %d", cases[i].field, i, rc);
        CHECK(strncmp(err, cases[i].field, strlen(cases[i].field)) == 0 && err[strlen(cases[i].field)] == ':',
              "validate(bad %s #%d) error: expected to name the field, got '%s'", cases[i].field, i, err);
        CHECK(slm_sampler_create(&cases[i].q, 10) == NULL, "create(bad %s): expected NULL", cases[i].field);
    }

    /* The edges of each range are allowed. */
    struct slm_sampling q = p;
    q.temperature = 0; q.top_p = 0; q.min_p = 1; q.repeat_last_n = -1; q.top_k = 0;
    CHECK(slm_sampling_validate(&q, err) == 0, "validate(edges 1): expected 0, got '%s'", err);
    q.top_p = 1; q.min_p = 0; q.repeat_penalty = 0.01f; q.presence_penalty = -2; q.frequency_penalty = 2;
    CHECK(slm_sampling_validate(&q, err) == 0, "validate(edges 2): expected 0, got '%s'", err);
    CHECK(slm_sampler_create(&p, 0) == NULL, "create(n_vocab 0): expected NULL");
    CHECK(slm_sampling_validate(NULL, err) == -EINVAL, "validate(NULL): expected -EINVAL");

    struct slm_sampler *none = NULL;
    slm_sampler_destroy(&none);
    slm_sampler_destroy(NULL);
}

static int ref_argmax(const float *l, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i]))) best = i;
    return best;
}

static void test_greedy(void)
{
    enum { N = 49152 };
    float *l = malloc(N * sizeof *l);
    struct slm_sampling p = plain(0);
    slm_sampling_defaults(&p);     /* greedy ignores top-k/p and min-p */
    p.temperature = 0;
    struct slm_sampler *s = slm_sampler_create(&p, N);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) l[i] = (float)(int)(lcg_uniform() * 200) * 0.25f - 25;   /* many ties */
        int want = ref_argmax(l, N);
        int got = slm_sampler_sample(s, l);
        CHECK(got == want, "greedy round %d: expected %d (lowest id of the max), got %d", round, want, got);
    }
    /* NaN counts as -inf, everything -inf gives token 0. */
    for (int i = 0; i < N; i++) l[i] = -INFINITY;
    CHECK(slm_sampler_sample(s, l) == 0, "greedy all -inf: expected 0, got %d", slm_sampler_sample(s, l));
    for (int i = 0; i < N; i++) l[i] = NAN;
    CHECK(slm_sampler_sample(s, l) == 0, "greedy all NaN: expected 0, got %d", slm_sampler_sample(s, l));
    l[0] = NAN; l[7] = -5; l[9] = -4; l[11] = -4;
    CHECK(slm_sampler_sample(s, l) == 9, "greedy NaN and ties: expected 9, got %d", slm_sampler_sample(s, l));
    l[3] = INFINITY; l[5] = INFINITY;
    CHECK(slm_sampler_sample(s, l) == 3, "greedy +inf: expected 3, got %d", slm_sampler_sample(s, l));
    slm_sampler_destroy(&s);
    CHECK(s == NULL, "destroy: expected NULL, got %p", (void *)s);

    /* The sampling path agrees on these edges. */
    p = plain(1);
    s = slm_sampler_create(&p, N);
    for (int i = 0; i < N; i++) l[i] = NAN;
    CHECK(slm_sampler_sample(s, l) == 0, "sampled all NaN: expected 0, got %d", slm_sampler_sample(s, l));
    for (int i = 0; i < N; i++) l[i] = -INFINITY;
    l[100] = 3;
    for (int d = 0; d < 100; d++) {
        int32_t t = slm_sampler_sample(s, l);
        if (t != 100) {
            CHECK(0, "sampled one finite: expected 100, got %d", t);
            break;
        }
    }
    slm_sampler_destroy(&s);
    free(l);
}

static void test_top_k1_is_greedy(void)
{
    enum { N = 5000 };
    float *l = malloc(N * sizeof *l);
    float temps[] = {0.1f, 0.8f, 1.0f, 5.0f, 100.0f};
    for (unsigned t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        struct slm_sampling p = plain(temps[t]);
        p.top_k = 1;
        p.top_p = 0.9f;
        p.min_p = 0.01f;
        struct slm_sampler *s = slm_sampler_create(&p, N);
        for (int round = 0; round < 50; round++) {
            for (int i = 0; i < N; i++) l[i] = (float)(int)(lcg_uniform() * 100) * 0.1f;
            int want = ref_argmax(l, N);
            int got = slm_sampler_sample(s, l);
            if (got != want) {
                CHECK(0, "top_k=1 at T=%g round %d: expected %d, got %d", temps[t], round, want, got);
                break;
            }
        }
        slm_sampler_destroy(&s);
    }
    free(l);
}

static void draw_sequence(uint64_t seed, int32_t *out, int n)
{
    enum { V = 1000 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(i % 7) * 0.1f;
    struct slm_sampling p = plain(1);
    p.seed = seed;
    struct slm_sampler *s = slm_sampler_create(&p, V);
    for (int i = 0; i < n; i++) out[i] = slm_sampler_sample(s, l);
    slm_sampler_destroy(&s);
}

static void test_seeds(void)
{
    enum { N = 1000 };
    static int32_t a[N], b[N], c[N], r[N];
    draw_sequence(42, a, N);
    draw_sequence(42, b, N);
    draw_sequence(43, c, N);
    CHECK(memcmp(a, b, sizeof a) == 0, "seed 42 twice: expected identical sequences, got different");
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == c[i];
    CHECK(same < N / 10, "seeds 42 and 43: expected mostly different tokens, got %d of %d equal", same, N);

    /* reset replays the sequence from the seed */
    enum { V = 1000 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(i % 7) * 0.1f;
    struct slm_sampling p = plain(1);
    p.seed = 42;
    struct slm_sampler *s = slm_sampler_create(&p, V);
    for (int i = 0; i < 17; i++) slm_sampler_sample(s, l);
    slm_sampler_reset(s);
    for (int i = 0; i < N; i++) r[i] = slm_sampler_sample(s, l);
    CHECK(memcmp(a, r, sizeof a) == 0, "reset: expected the seed's sequence again, got another");
    slm_sampler_destroy(&s);
}

static void test_distributions(void)
{
    enum { DRAWS = 200000 };
    double prob[2000];

    /* plain softmax(l / T) */
    float l8[8] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.2f};
    struct slm_sampling p = plain(0.7f);
    reference(l8, 8, &p, prob);
    CHECK(check_distribution("softmax T=0.7", l8, prob, 8, &p, DRAWS) == 8, "softmax: expected 8 kept");
    p = plain(2.5f);
    reference(l8, 8, &p, prob);
    check_distribution("softmax T=2.5", l8, prob, 8, &p, DRAWS);

    /* top-k = 3: tokens 4, 5, 0 */
    p = plain(1.3f);
    p.top_k = 3;
    reference(l8, 8, &p, prob);
    CHECK(prob[4] > 0 && prob[5] > 0 && prob[0] > 0 && prob[7] == 0, "reference top-k: wrong set");
    CHECK(check_distribution("top_k=3", l8, prob, 8, &p, DRAWS) == 3, "top_k=3: expected 3 kept");

    /* top-p = 0.85 over probabilities 0.4 0.3 0.2 0.06 0.04 keeps three; with T=2 applied
     * first it would keep four, so this also checks the order of the chain. */
    float lp[5];
    double pp[5] = {0.4, 0.3, 0.2, 0.06, 0.04};
    for (int i = 0; i < 5; i++) lp[i] = (float)log(pp[(i + 2) % 5]);
    p = plain(2.0f);
    p.top_p = 0.85f;
    reference(lp, 5, &p, prob);
    CHECK(check_distribution("top_p=0.85 T=2", lp, prob, 5, &p, DRAWS) == 3, "top_p=0.85: expected 3 kept");

    /* min-p = 0.2 over logits 0 -1 -2 -3 -4 keeps 0 and -1 (e^-1 = 0.37 >= 0.2 > e^-2) */
    float lm[5] = {-3, 0, -2, -1, -4};
    p = plain(1.0f);
    p.min_p = 0.2f;
    reference(lm, 5, &p, prob);
    CHECK(prob[1] > 0 && prob[3] > 0 && prob[2] == 0, "reference min-p: wrong set");
    CHECK(check_distribution("min_p=0.2", lm, prob, 5, &p, DRAWS) == 2, "min_p=0.2: expected 2 kept");

    /* Large vocabularies: the heap selection, top-p's widening past its first 256, the
     * min-p prefilter before top-p, and all three together. */
    enum { V = 2000, DRAWS_V = 60000 };   /* ~30-100 expected draws per kept token */
    static float lv[V];
    for (int i = 0; i < V; i++) lv[i] = lcg_uniform() * 2.0f;
    p = plain(1.0f);
    p.top_p = 0.5f;
    reference(lv, V, &p, prob);
    int kept = check_distribution("V=2000 top_p=0.5", lv, prob, V, &p, DRAWS_V);
    CHECK(kept > 256, "V=2000 top_p=0.5: expected a wide cut (more than 256 kept), got %d", kept);
    p = plain(0.9f);
    p.top_p = 0.6f;
    p.min_p = 0.3f;
    reference(lv, V, &p, prob);
    check_distribution("V=2000 top_p=0.6 min_p=0.3", lv, prob, V, &p, DRAWS_V);
    p = plain(0.9f);
    p.top_p = 0.2f;
    p.min_p = 0.6f;
    reference(lv, V, &p, prob);
    check_distribution("V=2000 top_p=0.2 min_p=0.6", lv, prob, V, &p, DRAWS_V);
    p = plain(1.5f);
    p.top_k = 300;
    p.top_p = 0.7f;
    p.min_p = 0.8f;
    reference(lv, V, &p, prob);
    check_distribution("V=2000 top_k=300 top_p=0.7 min_p=0.8", lv, prob, V, &p, DRAWS_V);
    p = plain(0.6f);
    p.top_k = 40;
    reference(lv, V, &p, prob);
    CHECK(check_distribution("V=2000 top_k=40", lv, prob, V, &p, DRAWS_V) == 40, "top_k=40: expected 40 kept");

    /* top_p = 0 keeps only the most probable token */
    p = plain(1.0f);
    p.top_p = 0;
    reference(l8, 8, &p, prob);
    CHECK(check_distribution("top_p=0", l8, prob, 8, &p, 1000) == 1, "top_p=0: expected 1 kept");

    /* +inf logits share the mass equally; NaN is never drawn */
    float li[6] = {1, INFINITY, NAN, INFINITY, 5, -INFINITY};
    double pi[6] = {0, 0.5, 0, 0.5, 0, 0};
    p = plain(1.0f);
    check_distribution("+inf", li, pi, 6, &p, DRAWS);
}

static int greedy_with(const float *l, int n, const struct slm_sampling *p, const int32_t *hist, int n_hist)
{
    struct slm_sampler *s = slm_sampler_create(p, n);
    for (int i = 0; i < n_hist; i++) slm_sampler_accept(s, hist[i]);
    int t = slm_sampler_sample(s, l);
    /* The same through the sampling path with top-k = 1. */
    struct slm_sampling q = *p;
    q.temperature = 1;
    q.top_k = 1;
    struct slm_sampler *s2 = slm_sampler_create(&q, n);
    for (int i = 0; i < n_hist; i++) slm_sampler_accept(s2, hist[i]);
    int t2 = slm_sampler_sample(s2, l);
    CHECK(t == t2, "penalties: greedy and top_k=1 disagree: expected %d, got %d", t, t2);
    slm_sampler_destroy(&s);
    slm_sampler_destroy(&s2);
    return t;
}

static void test_penalties(void)
{
    struct slm_sampling p = plain(0);
    int32_t h0[] = {0}, h000[] = {0, 0, 0}, h00[] = {0, 0}, h00000[] = {0, 0, 0, 0, 0};

    /* repeat: positive logits are divided: 2 / 1.5 = 1.333 < 1.4 */
    float a[2] = {2.0f, 1.4f};
    p.repeat_penalty = 1.5f;
    CHECK(greedy_with(a, 2, &p, NULL, 0) == 0, "repeat, no history: expected 0");
    CHECK(greedy_with(a, 2, &p, h0, 1) == 1, "repeat 2/1.5 < 1.4: expected 1");
    a[1] = 1.3f;
    CHECK(greedy_with(a, 2, &p, h0, 1) == 0, "repeat 2/1.5 > 1.3: expected 0");
    /* negative logits are multiplied: -1 * 1.5 = -1.5 */
    float b[2] = {-1.0f, -1.49f};
    CHECK(greedy_with(b, 2, &p, h0, 1) == 1, "repeat -1*1.5 < -1.49: expected 1");
    b[1] = -1.51f;
    CHECK(greedy_with(b, 2, &p, h0, 1) == 0, "repeat -1*1.5 > -1.51: expected 0");
    /* the repeat penalty does not grow with the count */
    a[1] = 1.3f;
    CHECK(greedy_with(a, 2, &p, h00000, 5) == 0, "repeat x5: expected 0 (count-independent)");

    /* frequency: -= count * 0.1 */
    p = plain(0);
    p.frequency_penalty = 0.1f;
    float f[2] = {1.0f, 0.75f};
    CHECK(greedy_with(f, 2, &p, h00, 2) == 0, "frequency 1-0.2 > 0.75: expected 0");
    CHECK(greedy_with(f, 2, &p, h000, 3) == 1, "frequency 1-0.3 < 0.75: expected 1");

    /* presence: -= 0.3 once, whatever the count */
    p = plain(0);
    p.presence_penalty = 0.3f;
    float q[2] = {1.0f, 0.6f};
    CHECK(greedy_with(q, 2, &p, h00000, 5) == 0, "presence 1-0.3 > 0.6: expected 0");
    p.presence_penalty = 0.5f;
    CHECK(greedy_with(q, 2, &p, h0, 1) == 1, "presence 1-0.5 < 0.6: expected 1");
    /* a negative presence penalty favours seen tokens */
    p.presence_penalty = -0.5f;
    float qn[2] = {0.6f, 1.0f};
    CHECK(greedy_with(qn, 2, &p, h0, 1) == 0, "presence -0.5: expected 0");

    /* all three at once: 2 / 2 - (2 * 0.1 + 0.3) = 0.5 */
    p = plain(0);
    p.repeat_penalty = 2;
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.3f;
    float c3[2] = {2.0f, 0.49f};
    CHECK(greedy_with(c3, 2, &p, h00, 2) == 0, "combined 0.5 > 0.49: expected 0");
    c3[1] = 0.51f;
    CHECK(greedy_with(c3, 2, &p, h00, 2) == 1, "combined 0.5 < 0.51: expected 1");

    /* the window: last_n = 2 forgets older tokens; -1 keeps them; 0 turns penalties off */
    float w[3] = {1.9f, 2.0f, 0.0f};
    int32_t h100[] = {1, 2, 2};
    p = plain(0);
    p.repeat_penalty = 2;
    p.repeat_last_n = 2;
    CHECK(greedy_with(w, 3, &p, h100, 1) == 0, "window 2, history [1]: expected 0");
    CHECK(greedy_with(w, 3, &p, h100, 3) == 1, "window 2, history [1 2 2]: expected 1");
    p.repeat_last_n = -1;
    CHECK(greedy_with(w, 3, &p, h100, 3) == 0, "window -1, history [1 2 2]: expected 0");
    p.repeat_last_n = 0;
    CHECK(greedy_with(w, 3, &p, h100, 3) == 1, "window 0 (off): expected 1");
    /* counts follow the window: last_n = 3 after four 0s counts 3 (1 - 0.3 > 0.65) */
    p = plain(0);
    p.frequency_penalty = 0.1f;
    p.repeat_last_n = 3;
    int32_t h0000[] = {0, 0, 0, 0};
    float fw[2] = {1.0f, 0.65f};
    CHECK(greedy_with(fw, 2, &p, h0000, 4) == 0, "frequency window 3 of four: expected 0");
    p.repeat_last_n = 5;
    CHECK(greedy_with(fw, 2, &p, h0000, 4) == 1, "frequency window 5 of four: expected 1");

    /* reset clears the history; out-of-range tokens are ignored */
    p = plain(0);
    p.repeat_penalty = 2;
    struct slm_sampler *s = slm_sampler_create(&p, 3);
    slm_sampler_accept(s, 1);
    slm_sampler_accept(s, -1);
    slm_sampler_accept(s, 3);
    CHECK(slm_sampler_sample(s, w) == 0, "before reset: expected 0");
    slm_sampler_reset(s);
    CHECK(slm_sampler_sample(s, w) == 1, "after reset: expected 1");
    slm_sampler_destroy(&s);

    /* penalties also shape the sampled distribution: token 0 at 2.0 -> 1.0 with T = 1 */
    p = plain(1.0f);
    p.repeat_penalty = 2;
    p.seed = 99;
    float d[3] = {2.0f, 1.0f, 0.0f};
    float dp[3] = {1.0f, 1.0f, 0.0f};
    double prob[3];
    reference(dp, 3, &p, prob);
    s = slm_sampler_create(&p, 3);
    slm_sampler_accept(s, 0);
    long cnt[3] = {0};
    enum { DRAWS = 200000 };
    for (int i = 0; i < DRAWS; i++) cnt[slm_sampler_sample(s, d)]++;
    double chi2 = 0;
    for (int i = 0; i < 3; i++) chi2 += (cnt[i] - prob[i] * DRAWS) * (cnt[i] - prob[i] * DRAWS) / (prob[i] * DRAWS);
    CHECK(chi2 <= chi2_bound(2), "penalised distribution chi-square: expected <= %.2f, got %.2f", chi2_bound(2), chi2);
    slm_sampler_destroy(&s);
}

/* The rank of token t in l[n] (0 = best; ties to the lower id, as the sampler orders them). */
static int rank_of(const float *l, int n, int t)
{
    int r = 0;
    for (int i = 0; i < n; i++) r += l[i] > l[t] || (l[i] == l[t] && i < t);
    return r;
}

/* Times the chain on a full vocabulary, and checks every timed draw afterwards against the
 * definitions of the filters, computed here (not by the sampler): with the defaults, the
 * token is among the 40 best penalised logits (llama.cpp's repeat penalty on each distinct
 * token of the last 64: l / 1.1 when positive, l * 1.1 otherwise) and within min_p 0.05 of the
 * best; with top_p 0.95 alone, the tokens ranked above it hold under 95% of the mass (T = 1,
 * before the temperature, as llama.cpp's chain cuts). */
static void test_speed(void)
{
    enum { N = 49152, ROUNDS = 200, HIST = 64 };
    float *l = malloc(N * sizeof *l), *pl = malloc(N * sizeof *pl);
    for (int i = 0; i < N; i++) l[i] = lcg_uniform() * 20 - 10;
    struct slm_sampling p;
    slm_sampling_defaults(&p);
    p.repeat_penalty = 1.1f;
    struct slm_sampler *s = slm_sampler_create(&p, N);
    int32_t hist[HIST + ROUNDS], drawn[ROUNDS];
    for (int i = 0; i < HIST; i++) slm_sampler_accept(s, hist[i] = i * 31);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < ROUNDS; r++) slm_sampler_accept(s, drawn[r] = slm_sampler_sample(s, l));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-3) / ROUNDS;
    printf("speed: %.1f us per sample (n_vocab %d, defaults)\n", us, N);
    int bad = 0;
    for (int r = 0; r < ROUNDS && bad < 10; r++) {
        hist[HIST + r] = drawn[r];
        memcpy(pl, l, N * sizeof *pl);
        for (int i = r; i < HIST + r; i++) {   /* the window before draw r: hist[r .. HIST + r) */
            int t = hist[i], seen = 0;
            for (int j = r; j < i; j++) seen |= hist[j] == t;
            if (!seen) pl[t] = pl[t] > 0 ? pl[t] / p.repeat_penalty : pl[t] * p.repeat_penalty;
        }
        int t = drawn[r];
        if (t < 0 || t >= N) {
            CHECK(0, "speed, defaults: draw %d: expected a token in [0, %d), got %d", r, N, t);
            bad++;
            continue;
        }
        float best = pl[0];
        for (int i = 1; i < N; i++) best = pl[i] > best ? pl[i] : best;
        int rank = rank_of(pl, N, t);
        if (rank >= p.top_k || pl[t] < best + logf(p.min_p) - 1e-5f) {
            CHECK(0, "speed, defaults: draw %d: expected a token in the top %d within min_p %.2f, got %d "
                     "(rank %d, penalised logit %.4f, best %.4f)", r, p.top_k, p.min_p, t, rank, pl[t], best);
            bad++;
        }
    }
    p.top_k = 0;
    p.min_p = 0;
    slm_sampler_destroy(&s);
    s = slm_sampler_create(&p, N);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < ROUNDS; r++) drawn[r] = slm_sampler_sample(s, l);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-3) / ROUNDS;
    printf("speed: %.1f us per sample (n_vocab %d, top_p 0.95 only)\n", us, N);
    /* The mass above each draw, in double from the logits (no penalties: no history). */
    double mx = l[0], z = 0;
    for (int i = 1; i < N; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < N; i++) z += exp(l[i] - mx);
    int distinct = 0;
    for (int r = 0; r < ROUNDS && bad < 10; r++) {
        int t = drawn[r];
        if (t < 0 || t >= N) {
            CHECK(0, "speed, top_p: draw %d: expected a token in [0, %d), got %d", r, N, t);
            bad++;
            continue;
        }
        double above = 0;
        for (int i = 0; i < N; i++)
            if (l[i] > l[t] || (l[i] == l[t] && i < t)) above += exp(l[i] - mx) / z;
        if (!(above < p.top_p + 1e-6)) {
            CHECK(0, "speed, top_p: draw %d: expected the tokens above it to hold < %.2f of the mass, got %d "
                     "with %.6f above", r, p.top_p, t, above);
            bad++;
        }
        int again = 0;
        for (int j = 0; j < r; j++) again |= drawn[j] == t;
        distinct += !again;
    }
    /* Not a constant: top_p 0.95 of 49152 near-uniform logits keeps thousands of tokens. */
    CHECK(distinct > ROUNDS / 2, "speed, top_p: expected over %d distinct tokens in %d draws, got %d", ROUNDS / 2,
          ROUNDS, distinct);
    slm_sampler_destroy(&s);
    free(pl);
    free(l);
}

/* The export for a device sampler: the window's tokens as a multiset equal the history's
 * last repeat_last_n (all for -1, none when off), and an RNG state taken out and put back
 * into another sampler continues the same draws. */
static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void test_export(void)
{
    const int last_n[] = {3, -1, 0, 64};
    const int32_t hist[] = {5, 1, 5, 9, 2, 5, 7, 1};
    const int n_hist = (int)(sizeof hist / sizeof hist[0]);
    for (size_t c = 0; c < sizeof last_n / sizeof last_n[0]; c++) {
        struct slm_sampling p = plain(0.7f);
        p.repeat_penalty = 1.3f;
        p.repeat_last_n = last_n[c];
        struct slm_sampler *s = slm_sampler_create(&p, 10);
        CHECK(slm_sampler_params(s)->repeat_last_n == last_n[c], "params: expected repeat_last_n %d", last_n[c]);
        for (int i = 0; i < n_hist; i++) slm_sampler_accept(s, hist[i]);
        const int32_t *w;
        int n = slm_sampler_window(s, &w);
        int want = last_n[c] == 0 ? 0 : last_n[c] < 0 || last_n[c] > n_hist ? n_hist : last_n[c];
        CHECK(n == want, "window (last_n %d): expected %d tokens, got %d", last_n[c], want, n);
        if (n == want && n > 0) {
            int32_t a[16], b[16];
            memcpy(a, w, (size_t)n * sizeof *a);
            memcpy(b, hist + n_hist - n, (size_t)n * sizeof *b);
            qsort(a, (size_t)n, sizeof *a, cmp_i32);
            qsort(b, (size_t)n, sizeof *b, cmp_i32);
            CHECK(!memcmp(a, b, (size_t)n * sizeof *a), "window (last_n %d): expected the last %d tokens", last_n[c], n);
        }
        slm_sampler_destroy(&s);
    }
    /* the RNG: two draws, export, two more from a fresh sampler given the state */
    struct slm_sampling p = plain(1.0f);
    p.seed = 77;
    float l[6] = {0.1f, 0.2f, 0.3f, 0.1f, 0.25f, 0.05f};
    struct slm_sampler *a = slm_sampler_create(&p, 6), *b;
    p.seed = 78;
    b = slm_sampler_create(&p, 6);
    for (int i = 0; i < 2; i++) slm_sampler_sample(a, l);
    uint64_t st[4];
    slm_sampler_rng(a, st);
    slm_sampler_set_rng(b, st);
    for (int i = 0; i < 32; i++) {
        int32_t x = slm_sampler_sample(a, l), y = slm_sampler_sample(b, l);
        if (x != y) {
            CHECK(0, "rng export: draw %d: expected %d, got %d", i, x, y);
            break;
        }
    }
    slm_sampler_destroy(&a);
    slm_sampler_destroy(&b);
}

/* kernels/fixsum.h against the host's 128-bit integers and long double: the two-word shifts the
 * device uses and the host's 128-bit ones, float and double in (rounded down, exact where
 * representable), out to double (rounded to nearest, ties to even: constructed ties at every
 * distance), add, sub and lt. */
typedef unsigned __int128 u128;
static u128 fix_u128(struct slm_fix a)
{
    return ((u128)a.hi << 64) | a.lo;
}

static uint64_t fix_rnd_state = 0x243f6a8885a308d3ull;
static uint64_t fix_rnd(void)
{
    uint64_t z = (fix_rnd_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_fixsum(void)
{
    int bad_shift = 0, bad_float = 0, bad_double = 0, bad_out = 0, bad_ops = 0;
    for (int k = 0; k < 200000; k++) {
        uint64_t m = fix_rnd() >> (11 + fix_rnd() % 53);   /* below 2^53, of every length */
        int s = (int)(fix_rnd() % 161) - 86;                /* -86 .. 74 */
        u128 want = s >= 0 ? (u128)m << s : s > -64 ? (u128)(m >> -s) : 0;
        bad_shift += fix_u128(slm_fix_shifted_words(m, s)) != want || fix_u128(slm_fix_shifted(m, s)) != want;

        uint32_t fb = (uint32_t)fix_rnd() & 0x3fffffffu;   /* positive floats below 2, subnormals among them */
        float w;
        memcpy(&w, &fb, sizeof w);
        u128 fw = w >= 1.0f ? (u128)1 << 96 : (u128)ldexpl((long double)w, 96);
        bad_float += fix_u128(slm_fix_from_float(w)) != fw;

        double x = ldexp((double)(fix_rnd() >> 11), -(int)(fix_rnd() % 160));   /* below 2^53 2^0 .. 2^-159 */
        if (x >= 4294967296.0) x = ldexp(x, -40);
        bad_double += fix_u128(slm_fix_from_double(x)) != (u128)ldexpl((long double)x, 96);

        u128 v = ((u128)fix_rnd() << 64 | fix_rnd()) >> (fix_rnd() % 128);
        struct slm_fix f = {(uint64_t)(v >> 64), (uint64_t)v};
        bad_out += slm_fix_to_double(f) != ldexp((double)v, -96);   /* the compiler's conversion: nearest, even */

        u128 a = ((u128)fix_rnd() << 64 | fix_rnd()) >> 2, b = ((u128)fix_rnd() << 64 | fix_rnd()) >> 2;
        struct slm_fix fa = {(uint64_t)(a >> 64), (uint64_t)a}, fb2 = {(uint64_t)(b >> 64), (uint64_t)b};
        bad_ops += fix_u128(slm_fix_add(fa, fb2)) != a + b || slm_fix_lt(fa, fb2) != (a < b) ||
                   (a >= b && fix_u128(slm_fix_sub(fa, fb2)) != a - b);
    }
    /* Ties and near-ties at every number of dropped bits, odd and even kept parts. */
    for (int drop = 1; drop <= 75; drop++)
        for (int odd = 0; odd < 2; odd++)
            for (int tail = -1; tail <= 1; tail++) {
                u128 mant = ((u128)1 << 52) | (fix_rnd() & ((1ull << 52) - 2)) | (u128)odd;
                u128 v = (mant << drop) + ((u128)1 << (drop - 1)) + (u128)tail;
                if (drop == 1 && tail) continue;   /* no bit below the half to move */
                struct slm_fix f = {(uint64_t)(v >> 64), (uint64_t)v};
                bad_out += slm_fix_to_double(f) != ldexp((double)v, -96);
            }
    const float specials[] = {0.0f, -0.0f, -1.0f, 1.0f, 2.0f, INFINITY, -INFINITY, NAN, 1e-45f, 0x1p-73f, 0x1p-74f};
    const u128 want_sp[] = {0, 0, 0, (u128)1 << 96, (u128)1 << 96, (u128)1 << 96, 0, 0, 0, (u128)1 << 23, (u128)1 << 22};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        bad_float += fix_u128(slm_fix_from_float(specials[i])) != want_sp[i];
    bad_double += fix_u128(slm_fix_from_double(-1.0)) != 0 || fix_u128(slm_fix_from_double(NAN)) != 0 ||
                  fix_u128(slm_fix_from_double(1e300)) != ~(u128)0;
    CHECK(!bad_shift, "fixsum: %d shifts differ from the 128-bit ones", bad_shift);
    CHECK(!bad_float, "fixsum: %d floats in differ from long double's", bad_float);
    CHECK(!bad_double, "fixsum: %d doubles in differ from long double's", bad_double);
    CHECK(!bad_out, "fixsum: %d values out differ from the compiler's rounding", bad_out);
    CHECK(!bad_ops, "fixsum: %d add / sub / lt differ from 128-bit integers", bad_ops);
}

int main(void)
{
    test_fixsum();
    test_export();
    test_defaults_and_validate();
    test_greedy();
    test_top_k1_is_greedy();
    test_seeds();
    test_distributions();
    test_penalties();
    test_speed();
    if (failures) {
        printf("test_sampler: %d failures\n", failures);
        return 1;
    }
    printf("test_sampler: ok\n");
    return 0;
}
