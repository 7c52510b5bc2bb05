/*
 * daemon/engine/sampler.h - per-request token sampling on the CPU.
 *
 * The chain is llama.cpp's common sampler: penalties -> top-k -> top-p -> min-p ->
 * temperature -> softmax -> draw. Temperature <= 0 is greedy (argmax after the
 * penalties, lowest id on ties). docs/sampling.md has the formulas and edge cases.
 *
 * A sampler belongs to one sequence and is not thread-safe; it never modifies the
 * logits it is given.
 *
 * A device sampler (the backend's `sample` op, kernels/cuda/sampling.cu) runs the same chain:
 * slm_sampler_params, slm_sampler_window and slm_sampler_rng export what it needs, and
 * slm_sampler_set_rng takes back the state it left, so that a request can be sampled on the
 * device one step and on the host the next with the same tokens and the same later draws.
 */
#ifndef SLM_ENGINE_SAMPLER_H
#define SLM_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct slm_sampling {
    float temperature;        /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off; 0 keeps only the most probable token */
    float min_p;              /* 0 = off */
    float repeat_penalty;     /* 1 = off */
    int repeat_last_n;        /* window for all three penalties; -1 = whole history; 0 = off */
    float presence_penalty, frequency_penalty;   /* 0 = off */
    uint64_t seed;
};

struct slm_sampler;

/* Fills p with llama.cpp's command-line defaults: temperature 0.8, top_k 40, top_p 0.95,
 * min_p 0.05, repeat_penalty 1.0, repeat_last_n 64, presence 0, frequency 0, seed 0. */
void slm_sampling_defaults(struct slm_sampling *p);

/* Returns 0 when every field is in range, else -EINVAL with err (char[SLM_ERR_LEN],
 * may be NULL) naming the first bad field and its allowed range. NaN is never allowed. */
int slm_sampling_validate(const struct slm_sampling *p, char *err);

/* A sampler for a vocabulary of n_vocab tokens, its RNG seeded from p->seed and an empty
 * history. Returns NULL when p is invalid (see slm_sampling_validate), n_vocab < 1 or
 * memory runs out. */
struct slm_sampler *slm_sampler_create(const struct slm_sampling *p, int n_vocab);

/* As slm_sampler_create, but the sampler's scratch for one sample is `scratch`
 * (slm_sampler_scratch_bytes(n_vocab) bytes, suitably aligned, e.g. from malloc), lent by the
 * caller for the sampler's life and shared by samplers that never sample at the same time:
 * the engine lends one to all its requests, so that a request holds no vocabulary-sized
 * buffer (384 KiB for 49,152 tokens) while it waits or decodes. NULL: its own. */
struct slm_sampler *slm_sampler_create_shared(const struct slm_sampling *p, int n_vocab, void *scratch);
size_t slm_sampler_scratch_bytes(int n_vocab);

/* Frees *s and sets *s to NULL; NULL and *s == NULL are allowed. */
void slm_sampler_destroy(struct slm_sampler **s);

/* Picks the next token from logits[n_vocab] (not modified). NaN logits count as -inf;
 * when every logit is -inf (after the penalties) the result is token 0. Does not add the
 * token to the history: call slm_sampler_accept for that. */
int32_t slm_sampler_sample(struct slm_sampler *s, const float *logits);

/* Appends token to the penalty history (accept the prompt's tokens too). Tokens outside
 * [0, n_vocab) are ignored. */
void slm_sampler_accept(struct slm_sampler *s, int32_t token);

/* Clears the history and re-seeds the RNG from the creation seed: the sampler then
 * behaves exactly as a fresh one. */
void slm_sampler_reset(struct slm_sampler *s);

/* The parameters the sampler was created with. */
const struct slm_sampling *slm_sampler_params(const struct slm_sampler *s);

/* The penalty window: *tokens points at the tokens the penalties count (in no particular
 * order; valid until the next accept, reset or destroy). Returns how many (0 when the
 * penalties are off or nothing was accepted), or -ENOMEM when a whole-history window
 * (repeat_last_n -1) could not grow: slm_sampler_sample is still right, only the export
 * is lost, and the caller samples on the host. */
int slm_sampler_window(const struct slm_sampler *s, const int32_t **tokens);

/* The RNG state (xoshiro256**) the next non-greedy draw starts from. */
void slm_sampler_rng(const struct slm_sampler *s, uint64_t state[4]);

/* Replaces the RNG state (with what a device sampler advanced it to). */
void slm_sampler_set_rng(struct slm_sampler *s, const uint64_t state[4]);

#endif
