/*
 * daemon/engine/stop.h - stop conditions on the generated text and top-n logprobs.
 *
 * A struct slm_stop belongs to one sequence. It is fed the text pieces of successive
 * tokens (complete UTF-8, as slm_detok_push makes them) and says which bytes may be
 * emitted now: it holds back the longest tail that could still be the start of a stop
 * string, and when a stop string completes it emits everything before the match and
 * nothing from the match onward. docs/stop-and-logprobs.md has the rules:
 *   - the first stop string to complete in the text wins (the match that ends first);
 *     among matches ending at the same byte the longest (earliest start) wins, then
 *     the lower index;
 *   - the output is the text cut at the start of that match, whatever the token
 *     boundaries were, and it never contains any stop string;
 *   - at the end of generation (EOS, max tokens, context) slm_stop_flush gives back the
 *     held tail.
 * Stop token ids are a separate small set; the tokenizer's end-of-generation tokens
 * (slm_tok_is_eog) are the scheduler's business.
 *
 * Not thread-safe; no allocation (the struct is about 4.5 KiB and may live anywhere).
 */
#ifndef SLM_ENGINE_STOP_H
#define SLM_ENGINE_STOP_H

#include <stddef.h>
#include <stdint.h>

#define SLM_STOP_MAX_STRINGS 16    /* stop strings per request */
#define SLM_STOP_MAX_LEN 256       /* bytes per stop string */
#define SLM_STOP_MAX_IDS 64        /* stop token ids per request */
#define SLM_LOGPROBS_MAX 20        /* most top logprobs per token (OpenAI's limit) */

struct slm_stop {
    int n_strings;
    uint16_t len[SLM_STOP_MAX_STRINGS];
    char str[SLM_STOP_MAX_STRINGS][SLM_STOP_MAX_LEN];
    int max_len;                   /* longest stop string; the tail held is shorter */
    int n_ids;
    int32_t ids[SLM_STOP_MAX_IDS];
    int n_held;
    char held[SLM_STOP_MAX_LEN];   /* text not yet emitted: a proper prefix of a stop string */
    int matched;                   /* index of the stop string that matched, -1 while none */
};

/* Sets up s with n_strings stop strings (each strings[i] is lens[i] bytes; lens may be
 * NULL for NUL-terminated strings) and n_ids stop token ids. Returns 0, or -EINVAL with
 * err (char[SLM_ERR_LEN], may be NULL) saying why: more than SLM_STOP_MAX_STRINGS
 * strings, a string empty, longer than SLM_STOP_MAX_LEN bytes or not valid UTF-8, more
 * than SLM_STOP_MAX_IDS ids, a negative id. Duplicates are allowed (the lower index
 * reports). */
int slm_stop_init(struct slm_stop *s, const char *const *strings, const size_t *lens, int n_strings,
                  const int32_t *ids, int n_ids, char *err);

/* 1 when id is one of s's stop token ids, else 0. */
int slm_stop_is_stop_token(const struct slm_stop *s, int32_t id);

/* Feeds the next len bytes of text. Writes the bytes that may be emitted now to out
 * (the held tail first, then the piece, minus whatever is held back or stopped) and
 * their number to *n_out. out needs room for s->n_held + len bytes, which
 * len + SLM_STOP_MAX_LEN always covers; out must not overlap piece.
 * Returns 0 while no stop string has matched, 1 when one has (slm_stop_matched says
 * which; *n_out is the text before the match; after that every push emits nothing and
 * returns 1), -ENOSPC when cap is too small (nothing consumed). */
int slm_stop_push(struct slm_stop *s, const char *piece, size_t len, char *out, size_t cap,
                  size_t *n_out);

/* At the end of generation: copies the held tail to out (cap >= SLM_STOP_MAX_LEN always
 * suffices) and empties it. Returns its length (0 after a match), or -ENOSPC. */
int slm_stop_flush(struct slm_stop *s, char *out, size_t cap);

/* Index of the stop string that matched, or -1. */
int slm_stop_matched(const struct slm_stop *s);

struct slm_logprob {
    int32_t id;
    float logprob;
};

/* Log-softmax of logits (n_vocab floats, -inf allowed, at least one finite; NaN and
 * +inf rejected), computed as x - (max + log(sum exp(x - max))) with the sum in double.
 * Writes the logprob of token sampled to *sampled_logprob (skipped when sampled_logprob
 * is NULL) and the n best tokens to top[0..min(n, n_vocab)), ordered by logit
 * descending, equal logits by lower id. O(n_vocab log n), two passes over the logits.
 * Returns the number of entries written, or -EINVAL (n outside 0..SLM_LOGPROBS_MAX,
 * n_vocab < 1, sampled out of range, a NaN or +inf logit, or every logit -inf). */
int slm_logprobs_top(const float *logits, int n_vocab, int32_t sampled, int n,
                     float *sampled_logprob, struct slm_logprob *top);

#endif
