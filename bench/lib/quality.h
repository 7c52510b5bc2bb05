/*
 * bench/lib/quality.h - how good the served model is, measured through a running slmd with the
 * prompt logprobs the daemon returns (docs/stop-and-logprobs.md, "Prompt logprobs"):
 *
 *   perplexity  the way llama.cpp's llama-perplexity computes it: the text is tokenized (BOS
 *               first when the model adds one), cut into chunks of n_ctx tokens (BOS put over
 *               each chunk's first token), and the logprobs of each chunk's second half
 *               (positions n_ctx/2 + 1 .. n_ctx - 1) are averaged; `slmd run --perplexity`
 *               computes the same in-process;
 *   eval        multiple-choice accuracy: each choice is scored by the log-likelihood of its
 *               tokens after the context; acc takes the highest sum, acc_norm the highest sum
 *               per byte of the choice (as lm-evaluation-harness does). The file is JSONL, one
 *               item per line: {"context": "...", "choices": [" a", " b", ...], "answer": 0}.
 *
 * Every chunk or choice is one request (token ids in, prompt logprobs out, one token
 * generated), all submitted at once so that the daemon batches them.
 */
#ifndef SLM_BENCH_QUALITY_H
#define SLM_BENCH_QUALITY_H

#include "common/log.h"

struct slm_client;

struct slm_bench_ppl {
    double ppl, nll;           /* exp(nll); nll = -mean(logprob) */
    long n_scored;             /* positions averaged */
    int n_chunks, n_ctx;
    double seconds;
};

/* Perplexity of text (NUL-terminated) with chunks of n_ctx tokens, at most max_chunks of them
 * (0: all). 0, or -errno with one line in err (e.g. a text shorter than 2 * n_ctx tokens). */
int slm_bench_perplexity(struct slm_client *c, const char *text, int n_ctx, int max_chunks,
                         struct slm_bench_ppl *out, char *err);

struct slm_bench_eval {
    int n_items, n_correct, n_correct_norm;
    double acc, acc_norm;
    double seconds;
};

/* Scores the multiple-choice file at path. 0, or -errno with "FILE:LINE: why" in err. */
int slm_bench_eval_file(struct slm_client *c, const char *path, struct slm_bench_eval *out, char *err);

#endif
