/*
 * daemon/engine/stop.c - stop strings over a token stream, stop token ids, top-n logprobs.
 *
 * The matcher keeps one invariant between pushes: the held tail contains no complete
 * stop string and is the longest suffix of the text so far that is a proper prefix of
 * some stop string. A push lays out held + piece in the caller's out buffer, looks for
 * the first end position (past the held tail: earlier ones were already checked) where
 * a stop string ends, and otherwise emits all but the new longest such suffix. Every
 * match that begins before that suffix would have made a longer suffix a prefix of a
 * stop string, so nothing that can still match is ever emitted. Stop strings are valid
 * UTF-8 and the text is complete UTF-8, so both cuts fall on character boundaries.
 */
#include "daemon/engine/stop.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "common/log.h"
#include "common/utf8.h"

int slm_stop_init(struct slm_stop *s, const char *const *strings, const size_t *lens, int n_strings,
                  const int32_t *ids, int n_ids, char *err)
{
    memset(s, 0, sizeof *s);
    s->matched = -1;
    if (n_strings < 0 || n_strings > SLM_STOP_MAX_STRINGS) {
        slm_err_set(err, "stop: %d stop strings, at most %d allowed", n_strings, SLM_STOP_MAX_STRINGS);
        return -EINVAL;
    }
    if (n_ids < 0 || n_ids > SLM_STOP_MAX_IDS) {
        slm_err_set(err, "stop: %d stop token ids, at most %d allowed", n_ids, SLM_STOP_MAX_IDS);
        return -EINVAL;
    }
    for (int i = 0; i < n_strings; i++) {
        if (!strings[i]) {
            slm_err_set(err, "stop: stop string %d is missing", i);
            return -EINVAL;
        }
        size_t len = lens ? lens[i] : strlen(strings[i]);
        if (len == 0) {
            slm_err_set(err, "stop: stop string %d is empty", i);
            return -EINVAL;
        }
        if (len > SLM_STOP_MAX_LEN) {
            slm_err_set(err, "stop: stop string %d is %zu bytes, at most %d allowed", i, len,
                        SLM_STOP_MAX_LEN);
            return -EINVAL;
        }
        if (!slm_utf8_valid((const unsigned char *)strings[i], len)) {
            slm_err_set(err, "stop: stop string %d is not valid UTF-8", i);
            return -EINVAL;
        }
        memcpy(s->str[i], strings[i], len);
        s->len[i] = (uint16_t)len;
        if ((int)len > s->max_len) s->max_len = (int)len;
    }
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0) {
            slm_err_set(err, "stop: stop token id %d is negative (%d)", i, (int)ids[i]);
            return -EINVAL;
        }
        s->ids[i] = ids[i];
    }
    s->n_strings = n_strings;
    s->n_ids = n_ids;
    return 0;
}

int slm_stop_is_stop_token(const struct slm_stop *s, int32_t id)
{
    for (int i = 0; i < s->n_ids; i++)
        if (s->ids[i] == id) return 1;
    return 0;
}

int slm_stop_matched(const struct slm_stop *s)
{
    return s->matched;
}

/* The stop string that ends at byte e of buf (exclusive), the longest if several, or -1. */
static int match_ending_at(const struct slm_stop *s, const char *buf, size_t e)
{
    int best = -1;
    for (int i = 0; i < s->n_strings; i++) {
        size_t l = s->len[i];
        if (l > e || (best >= 0 && l <= s->len[best])) continue;
        if (memcmp(buf + e - l, s->str[i], l) == 0) best = i;
    }
    return best;
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of a stop string. */
static size_t held_suffix(const struct slm_stop *s, const char *buf, size_t n)
{
    size_t h = n < (size_t)s->max_len ? n : (size_t)s->max_len - 1;
    for (; h > 0; h--) {
        for (int i = 0; i < s->n_strings; i++)
            if (s->len[i] > h && memcmp(buf + n - h, s->str[i], h) == 0) return h;
    }
    return 0;
}

int slm_stop_push(struct slm_stop *s, const char *piece, size_t len, char *out, size_t cap,
                  size_t *n_out)
{
    *n_out = 0;
    if (s->matched >= 0) return 1;
    if (s->n_strings == 0) {
        if (cap < len) return -ENOSPC;
        memcpy(out, piece, len);
        *n_out = len;
        return 0;
    }
    size_t held = (size_t)s->n_held;
    if (cap < held + len) return -ENOSPC;
    memcpy(out, s->held, held);
    memcpy(out + held, piece, len);
    size_t n = held + len;
    for (size_t e = held + 1; e <= n; e++) {
        int m = match_ending_at(s, out, e);
        if (m >= 0) {
            s->matched = m;
            s->n_held = 0;
            *n_out = e - s->len[m];
            return 1;
        }
    }
    size_t h = held_suffix(s, out, n);
    memcpy(s->held, out + n - h, h);
    s->n_held = (int)h;
    *n_out = n - h;
    return 0;
}

int slm_stop_flush(struct slm_stop *s, char *out, size_t cap)
{
    if (cap < (size_t)s->n_held) return -ENOSPC;
    int n = s->n_held;
    memcpy(out, s->held, (size_t)n);
    s->n_held = 0;
    return n;
}

/* ---- top-n logprobs ---------------------------------------------------------------- */

/* 1 when token a ranks above token b: higher logit, equal logits by lower id. */
static int ranks_above(const float *logits, int32_t a, int32_t b)
{
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
}

/* Restores the heap (root = the lowest-ranked kept token) below slot i. */
static void sift_down(const float *logits, int32_t *heap, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && ranks_above(logits, heap[w], heap[l])) w = l;
        if (r < n && ranks_above(logits, heap[w], heap[r])) w = r;
        if (w == i) return;
        int32_t t = heap[i];
        heap[i] = heap[w];
        heap[w] = t;
        i = w;
    }
}

static void sift_up(const float *logits, int32_t *heap, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!ranks_above(logits, heap[p], heap[i])) return;
        int32_t t = heap[i];
        heap[i] = heap[p];
        heap[p] = t;
        i = p;
    }
}

int slm_logprobs_top(const float *logits, int n_vocab, int32_t sampled, int n,
                     float *sampled_logprob, struct slm_logprob *top)
{
    if (n < 0 || n > SLM_LOGPROBS_MAX || n_vocab < 1) return -EINVAL;
    if (sampled_logprob && (sampled < 0 || sampled >= n_vocab)) return -EINVAL;
    float max = -INFINITY;
    int32_t heap[SLM_LOGPROBS_MAX];
    int k = n < n_vocab ? n : n_vocab, kept = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        float x = logits[i];
        if (isnan(x) || x == INFINITY) return -EINVAL;
        if (x > max) max = x;
        if (kept < k) {
            heap[kept] = i;
            sift_up(logits, heap, kept++);
        } else if (k > 0 && ranks_above(logits, i, heap[0])) {
            heap[0] = i;
            sift_down(logits, heap, k, 0);
        }
    }
    if (max == -INFINITY) return -EINVAL;
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - (double)max);
    double lse = (double)max + log(sum);
    if (sampled_logprob) *sampled_logprob = (float)((double)logits[sampled] - lse);
    /* Pop the worst first: the heap empties into top from the back. */
    for (int j = k - 1; j >= 0; j--) {
        int32_t id = heap[0];
        top[j].id = id;
        top[j].logprob = (float)((double)logits[id] - lse);
        heap[0] = heap[j];
        sift_down(logits, heap, j, 0);
    }
    return k;
}
