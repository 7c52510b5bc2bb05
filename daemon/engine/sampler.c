/*
 * daemon/engine/sampler.c - the sampling chain: penalties, top-k, top-p, min-p,
 * temperature, draw; greedy when the temperature is 0.
 *
 * The candidates are ordered by (logit descending, id ascending), a total order, so
 * every cut (top-k at a tie, top-p's prefix) is deterministic. top-k selects its k
 * best with a bounded heap (O(n log k)) and sorts only those; top-p without top-k
 * finds its cut with a histogram of the mass and sorts only the bin the cut falls in.
 * The survivors are walked for the draw in whatever order the cuts left them: a
 * fixed function of the logits, so a seed still fixes the tokens.
 *
 * The masses that top-p and the draw add up are exact fixed-point sums (kernels/fixsum.h), not
 * double ones: the same bits in any order, so the CUDA sampler can add a row's weights over all
 * its threads and still cut and draw where this chain does.
 *
 * The window of the penalties is kept as counts for the host chain and as a token list for
 * export to a device sampler (sampler.h): the ring when repeat_last_n > 0, else the whole
 * history in a growing array.
 */
#include "daemon/engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/fixsum.h"
#include "kernels/rng.h"

struct candidate {
    float logit;
    int32_t id;
    float w;          /* exp(logit - max) or its tempered twin, once computed */
};

struct slm_sampler {
    struct slm_sampling p;
    int n_vocab;
    int penalties_on;         /* a penalty is set and repeat_last_n != 0 */
    uint64_t rng[4];          /* xoshiro256** state */
    int32_t *count;           /* (n_vocab) occurrences of each token in the window */
    int32_t *ring;            /* (repeat_last_n) the window, when repeat_last_n > 0 */
    int ring_len, ring_pos;
    int32_t *hist;            /* (hist_cap) the whole history, when repeat_last_n == -1 */
    int hist_len, hist_cap;
    int hist_lost;            /* hist could not grow: the export is off until a reset */
    struct candidate *cand;   /* (n_vocab) scratch for one sample: its own, or lent */
    int cand_lent;            /* cand belongs to the creator (slm_sampler_create_shared) */
};

void slm_sampling_defaults(struct slm_sampling *p)
{
    *p = (struct slm_sampling){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = 0,
    };
}

int slm_sampling_validate(const struct slm_sampling *p, char *err)
{
    if (!p) {
        slm_err_set(err, "sampling: no parameters");
        return -EINVAL;
    }
    if (!isfinite(p->temperature) || p->temperature < 0) {
        slm_err_set(err, "temperature: must be a finite number >= 0 (0 = greedy), got %g", p->temperature);
        return -EINVAL;
    }
    if (p->top_k < 0) {
        slm_err_set(err, "top_k: must be >= 0 (0 = off), got %d", p->top_k);
        return -EINVAL;
    }
    if (!(p->top_p >= 0 && p->top_p <= 1)) {
        slm_err_set(err, "top_p: must be in [0, 1] (1 = off), got %g", p->top_p);
        return -EINVAL;
    }
    if (!(p->min_p >= 0 && p->min_p <= 1)) {
        slm_err_set(err, "min_p: must be in [0, 1] (0 = off), got %g", p->min_p);
        return -EINVAL;
    }
    if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0) {
        slm_err_set(err, "repeat_penalty: must be a finite number > 0 (1 = off), got %g", p->repeat_penalty);
        return -EINVAL;
    }
    if (p->repeat_last_n < -1) {
        slm_err_set(err, "repeat_last_n: must be >= -1 (-1 = whole history, 0 = off), got %d", p->repeat_last_n);
        return -EINVAL;
    }
    if (!isfinite(p->presence_penalty)) {
        slm_err_set(err, "presence_penalty: must be a finite number (0 = off), got %g", p->presence_penalty);
        return -EINVAL;
    }
    if (!isfinite(p->frequency_penalty)) {
        slm_err_set(err, "frequency_penalty: must be a finite number (0 = off), got %g", p->frequency_penalty);
        return -EINVAL;
    }
    return 0;
}

/* ---- RNG: kernels/rng.h ---- */

/* A uniform float in [0, 1) from the top 24 bits: every value is exact in a float. */
static float rng_uniform(uint64_t s[4])
{
    return (float)(slm_rng_next(s) >> 40) * (1.0f / 16777216.0f);
}

/* ---- lifecycle and history ---- */

size_t slm_sampler_scratch_bytes(int n_vocab)
{
    return n_vocab > 0 ? (size_t)n_vocab * sizeof(struct candidate) : 0;
}

struct slm_sampler *slm_sampler_create_shared(const struct slm_sampling *p, int n_vocab, void *scratch)
{
    if (n_vocab < 1 || slm_sampling_validate(p, NULL)) return NULL;
    struct slm_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->penalties_on = p->repeat_last_n != 0 &&
                      (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f);
    s->cand = scratch;
    s->cand_lent = scratch != NULL;
    if (!s->cand && !(s->cand = malloc(slm_sampler_scratch_bytes(n_vocab)))) goto err;
    if (s->penalties_on) {
        s->count = calloc((size_t)n_vocab, sizeof *s->count);
        if (!s->count) goto err;
        if (p->repeat_last_n > 0) {
            s->ring = malloc((size_t)p->repeat_last_n * sizeof *s->ring);
            if (!s->ring) goto err;
        }
    }
    slm_rng_seed(s->rng, p->seed);
    return s;
err:
    slm_sampler_destroy(&s);
    return NULL;
}

struct slm_sampler *slm_sampler_create(const struct slm_sampling *p, int n_vocab)
{
    return slm_sampler_create_shared(p, n_vocab, NULL);
}

void slm_sampler_destroy(struct slm_sampler **s)
{
    if (!s || !*s) return;
    if (!(*s)->cand_lent) free((*s)->cand);
    free((*s)->count);
    free((*s)->ring);
    free((*s)->hist);
    free(*s);
    *s = NULL;
}

void slm_sampler_reset(struct slm_sampler *s)
{
    if (s->count) memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
    s->ring_len = 0;
    s->ring_pos = 0;
    s->hist_len = 0;
    s->hist_lost = 0;
    slm_rng_seed(s->rng, s->p.seed);
}

void slm_sampler_accept(struct slm_sampler *s, int32_t token)
{
    if (!s->penalties_on || token < 0 || token >= s->n_vocab) return;
    if (s->ring) {
        int n = s->p.repeat_last_n;
        if (s->ring_len == n) {
            s->count[s->ring[s->ring_pos]]--;
        } else {
            s->ring_len++;
        }
        s->ring[s->ring_pos] = token;
        s->ring_pos = s->ring_pos + 1 == n ? 0 : s->ring_pos + 1;
    } else if (!s->hist_lost) {
        if (s->hist_len == s->hist_cap) {
            int cap = !s->hist_cap ? 256 : s->hist_cap < (1 << 28) ? 2 * s->hist_cap : 0;
            int32_t *h = cap ? realloc(s->hist, (size_t)cap * sizeof *h) : NULL;
            if (h) {
                s->hist = h;
                s->hist_cap = cap;
            } else {
                s->hist_lost = 1;
            }
        }
        if (!s->hist_lost) s->hist[s->hist_len++] = token;
    }
    s->count[token]++;
}

const struct slm_sampling *slm_sampler_params(const struct slm_sampler *s)
{
    return &s->p;
}

int slm_sampler_window(const struct slm_sampler *s, const int32_t **tokens)
{
    *tokens = NULL;
    if (!s->penalties_on) return 0;
    if (s->ring) {
        *tokens = s->ring;
        return s->ring_len;
    }
    if (s->hist_lost) return -ENOMEM;
    *tokens = s->hist;
    return s->hist_len;
}

void slm_sampler_rng(const struct slm_sampler *s, uint64_t state[4])
{
    memcpy(state, s->rng, sizeof s->rng);
}

void slm_sampler_set_rng(struct slm_sampler *s, const uint64_t state[4])
{
    memcpy(s->rng, state, sizeof s->rng);
}

/* ---- the chain ---- */

/* The logit of token i after the penalties; NaN becomes -inf. */
static float penalized(const struct slm_sampler *s, const float *logits, int i)
{
    float l = logits[i];
    if (isnan(l)) return -INFINITY;
    if (!s->penalties_on) return l;
    int c = s->count[i];
    if (c == 0) return l;
    l = l > 0 ? l / s->p.repeat_penalty : l * s->p.repeat_penalty;
    return l - ((float)c * s->p.frequency_penalty + s->p.presence_penalty);
}

/* a comes before b: higher logit, then lower id. */
static int better(const struct candidate *a, const struct candidate *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_candidates(const void *pa, const void *pb)
{
    const struct candidate *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Heap of the m best with the worst of them at the root. */
static void sift_down(struct candidate *h, int m, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < m && better(&h[w], &h[l])) w = l;
        if (r < m && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        struct candidate t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Permutes c[0..n) so that c[0..m) holds the m best, sorted best first. */
static void select_top(struct candidate *c, int n, int m)
{
    if (m < n) {
        for (int i = m / 2 - 1; i >= 0; i--) sift_down(c, m, i);
        for (int i = m; i < n; i++) {
            if (better(&c[i], &c[0])) {
                struct candidate t = c[0];
                c[0] = c[i];
                c[i] = t;
                sift_down(c, m, 0);
            }
        }
    }
    qsort(c, (size_t)m, sizeof *c, cmp_candidates);
}

static float max_logit(const struct candidate *c, int n)
{
    float mx = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    return mx;
}

/* Keeps the candidates with logit >= threshold, in their order. Returns how many. */
static int keep_at_least(struct candidate *c, int n, float threshold)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (c[i].logit >= threshold) c[k++] = c[i];
    return k;
}

/* top-p on sorted candidates: the shortest prefix whose mass (w, exactly) reaches target.
 * Keeps all when even the whole mass falls short (target rounded up from it). */
static int cut_sorted(const struct candidate *c, int n, struct slm_fix target)
{
    struct slm_fix cum = {0, 0};
    for (int i = 0; i < n; i++) {
        cum = slm_fix_add(cum, slm_fix_from_float(c[i].w));
        if (!slm_fix_lt(cum, target)) return i + 1;
    }
    return n;
}

enum { TOP_P_BINS = 1024 };

static int bin_of(float logit, float mx, double scale)
{
    double b = ((double)mx - logit) * scale;
    return b >= TOP_P_BINS - 1 ? TOP_P_BINS - 1 : (int)b;
}

/* top-p on unsorted candidates in O(n): bins of equal logit width find the bin where the
 * cumulative mass crosses target; the bins above it are kept unsorted and only the
 * crossing bin is sorted to place the cut exactly. Permutes c; returns the new count. */
static int cut_unsorted(struct candidate *c, int n, float mx, struct slm_fix target)
{
    float mn = c[0].logit;
    for (int i = 1; i < n; i++)
        if (c[i].logit < mn) mn = c[i].logit;
    double scale = mx > mn ? TOP_P_BINS / ((double)mx - mn) : 0;
    struct slm_fix mass[TOP_P_BINS] = {{0, 0}}, below = {0, 0};
    for (int i = 0; i < n; i++) {
        struct slm_fix *m = &mass[bin_of(c[i].logit, mx, scale)];
        *m = slm_fix_add(*m, slm_fix_from_float(c[i].w));
    }
    int cross = -1;
    for (int b = 0; b < TOP_P_BINS; b++) {
        if (!slm_fix_lt(slm_fix_add(below, mass[b]), target)) {
            cross = b;
            break;
        }
        below = slm_fix_add(below, mass[b]);
    }
    if (cross < 0) return n;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (bin_of(c[i].logit, mx, scale) < cross) {
            struct candidate t = c[k];
            c[k++] = c[i];
            c[i] = t;
        }
    }
    int j = k;
    for (int i = k; i < n; i++) {
        if (bin_of(c[i].logit, mx, scale) == cross) {
            struct candidate t = c[j];
            c[j++] = c[i];
            c[i] = t;
        }
    }
    qsort(c + k, (size_t)(j - k), sizeof *c, cmp_candidates);
    return k + cut_sorted(c + k, j - k, slm_fix_sub(target, below));
}

/* The greedy pick without penalties: the first id of the largest logit, NaN never picked, 0
 * when none is above -inf (the same answer as the general loop below). Two passes: the maximum
 * (`l > m ? l : m` is exactly MAXSS/MAXPS: a NaN loses), then the first id holding it; faster
 * than the general loop's per-element NaN test and branch, and greedy rows were nearly all of
 * a large batch's host time on the CPU (docs/performance.md, "Host-side cost per step"). */
static int32_t argmax(const float *logits, int n)
{
    /* Eight running maxima: independent chains (one maxss each is 4 cycles of latency), which
     * the compiler may also pack into one MAXPS. */
    float m8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m8[j] = logits[i + j] > m8[j] ? logits[i + j] : m8[j];
    float m = -INFINITY;
    for (int j = 0; j < 8; j++) m = m8[j] > m ? m8[j] : m;
    for (; i < n; i++) m = logits[i] > m ? logits[i] : m;
    if (m == -INFINITY) return 0;
    for (i = 0; i < n; i++)
        if (logits[i] == m) return i;
    return 0;
}

int32_t slm_sampler_sample(struct slm_sampler *s, const float *logits)
{
    const struct slm_sampling *p = &s->p;
    int n_vocab = s->n_vocab;

    if (p->temperature <= 0 && !s->penalties_on) return argmax(logits, n_vocab);
    if (p->temperature <= 0) {
        int32_t best = 0;
        float best_l = -INFINITY;
        for (int i = 0; i < n_vocab; i++) {
            float l = penalized(s, logits, i);
            if (l > best_l) {
                best_l = l;
                best = i;
            }
        }
        return best;
    }

    /* Candidates with a finite or +inf logit; -inf ones have probability 0. */
    struct candidate *c = s->cand;
    int n = 0;
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++) {
        float l = penalized(s, logits, i);
        if (l == -INFINITY) continue;
        c[n++] = (struct candidate){l, i, 0};
        if (l > mx) mx = l;
    }
    if (n == 0) return 0;
    if (mx == INFINITY) {
        /* The limit of softmax: the +inf tokens share all the mass equally. */
        n = keep_at_least(c, n, INFINITY);
        for (int i = 0; i < n; i++) c[i].logit = 0;
    }

    int sorted = 0;
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
        sorted = 1;
    }
    if (p->top_p < 1.0f) {
        float mxk = sorted ? c[0].logit : max_logit(c, n);
        struct slm_fix z = {0, 0};
        for (int i = 0; i < n; i++) {
            c[i].w = expf(c[i].logit - mxk);
            z = slm_fix_add(z, slm_fix_from_float(c[i].w));
        }
        struct slm_fix target = slm_fix_from_double((double)p->top_p * slm_fix_to_double(z));
        if (sorted) {
            n = cut_sorted(c, n, target);
        } else {
            /* min-p keeps a prefix of the same order and its ratio test does not depend
             * on the normalisation, so applying it first gives the same set and leaves
             * less to cut; top-p still normalises over the set before min-p (z). */
            if (p->min_p > 0) n = keep_at_least(c, n, mxk + logf(p->min_p));
            n = cut_unsorted(c, n, mxk, target);
        }
    }
    if (p->min_p > 0) {
        float mxk = sorted ? c[0].logit : max_logit(c, n);
        n = keep_at_least(c, n, mxk + logf(p->min_p));
    }

    /* softmax(logit / T) over the survivors, then one draw walking them in order. */
    float mxk = sorted ? c[0].logit : max_logit(c, n);
    float inv_t = 1.0f / p->temperature;
    struct slm_fix total = {0, 0}, cum = {0, 0};
    for (int i = 0; i < n; i++) {
        c[i].w = expf((c[i].logit - mxk) * inv_t);
        total = slm_fix_add(total, slm_fix_from_float(c[i].w));
    }
    struct slm_fix target = slm_fix_from_double((double)rng_uniform(s->rng) * slm_fix_to_double(total));
    for (int i = 0; i < n; i++) {
        cum = slm_fix_add(cum, slm_fix_from_float(c[i].w));
        if (slm_fix_lt(target, cum)) return c[i].id;
    }
    /* Rounding left target at the very top: the last candidate with any weight. */
    for (int i = n - 1; i > 0; i--)
        if (c[i].w > 0) return c[i].id;
    return c[0].id;
}
