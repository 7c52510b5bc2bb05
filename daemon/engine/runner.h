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

#endif
