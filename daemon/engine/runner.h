/*
 * daemon/engine/runner.h - one sequence through the model: a KV pool sized for the
 * context, a block table, and evaluation of tokens appended to the sequence.
 *
 * Used by the one-shot mode (`slmd run`) and by the reference tests; the scheduler of
 * the serving engine drives slm_forward_run directly with many sequences.
 */
#ifndef SLM_ENGINE_RUNNER_H
#define SLM_ENGINE_RUNNER_H

#include "daemon/engine/model.h"

struct slm_runner;

/* A sequence of up to n_ctx tokens, evaluated in batches of at most max_batch tokens. */
struct slm_runner *slm_runner_create(struct slm_model *m, int n_ctx, int max_batch, char *err);
void slm_runner_destroy(struct slm_runner **r);

/*
 * Appends n tokens to the sequence and evaluates them. logits receives the last
 * token's logits (n_vocab floats), or every token's (n, n_vocab) if all_logits.
 * Returns 0, -ENOSPC if the sequence would pass n_ctx (nothing is evaluated), or -errno.
 */
int slm_runner_eval(struct slm_runner *r, const int32_t *tokens, int n, int all_logits, float *logits);

/* Tokens in the sequence so far. */
int slm_runner_pos(const struct slm_runner *r);
int slm_runner_n_ctx(const struct slm_runner *r);

/* Forgets the sequence (the KV is overwritten from position 0). */
void slm_runner_reset(struct slm_runner *r);

/*
 * One chunk of llama-perplexity's score (docs/sampling.md, "Perplexity"): the sequence reset, the
 * n tokens of chunk evaluated from position 0 with bos (>= 0) in place of the first (chunk itself
 * is not changed), and the negative log-likelihood of each of the tokens n/2 + 1 .. n - 1 given
 * those before it written to nll (n - n/2 - 1 values, in order). logits: room for n * n_vocab
 * floats. Returns how many NLLs it wrote (n - n/2 - 1); -EINVAL when n < 2; -ENOSPC when n is
 * past the context; -EDOM when a scored row's logits are not finite (*bad_pos, when not NULL, is
 * that row's position); or -errno.
 */
int slm_runner_score_chunk(struct slm_runner *r, const int32_t *chunk, int n, int32_t bos, float *logits,
                           double *nll, int *bad_pos);

#endif
