/*
 * bench/lib/workload.h - what slm-bench asks for: the prompt and the output length of request
 * number i, the same for every target and every run with the same seed.
 *
 * Two kinds of prompt:
 *   random  token ids drawn uniformly from [SLM_BENCH_FIRST_ID, min(n_vocab, SLM_BENCH_LAST_ID)),
 *           their count fixed or uniform in a range (--input-len 128 or 64:256); with
 *           --prefix-len P --prefix-count K each prompt starts with one of K shared random
 *           prefixes of P ids (request i takes prefix i mod K), then its own ids;
 *   file    texts from a JSONL file (--prompts FILE), request i takes line i mod n.
 * The JSONL format: one JSON object per line, blank lines ignored:
 *     {"prompt": "text", "system": "shared text", "output_len": 64}
 * "prompt" is required; "system", when present, is sent before the prompt followed by a blank
 * line ("system\n\nprompt"), so requests sharing a system text share a prefix; "output_len"
 * overrides --output-len for that prompt. Other keys are ignored.
 */
#ifndef SLM_BENCH_WORKLOAD_H
#define SLM_BENCH_WORKLOAD_H

#include <stdint.h>

#include "common/log.h"

#define SLM_BENCH_FIRST_ID 256      /* past byte and special tokens of common vocabularies */
#define SLM_BENCH_LAST_ID 32000

/* A length, fixed (lo == hi) or uniform in [lo, hi]. */
struct slm_bench_range {
    int lo, hi;
};

struct slm_bench_prompt_line {
    char *text;                /* system + "\n\n" + prompt, or the prompt */
    int output_len;            /* 0: --output-len */
};

struct slm_bench_workload {
    uint64_t seed;
    struct slm_bench_range input_len, output_len;
    int prefix_len, prefix_count;
    int n_vocab;
    struct slm_bench_prompt_line *lines;   /* (n_lines) from --prompts; NULL for random prompts */
    int n_lines;
};

/* One request's payload. */
struct slm_bench_prompt {
    const char *text;          /* file prompts: points into the workload */
    int32_t *ids;              /* random prompts: (n_ids), owned */
    int n_ids;
    int output_len;
};

/* Parses "N" or "LO:HI" (1 <= LO <= HI <= max) into *r; what names the flag in the message.
 * 0, or -EINVAL with one line in err[SLM_ERR_LEN]. */
int slm_bench_range_parse(const char *text, const char *what, int max, struct slm_bench_range *r, char *err);

/* Reads a JSONL prompt file into w->lines. 0, or -errno with "FILE:LINE: why" in err. */
int slm_bench_workload_load(struct slm_bench_workload *w, const char *path, char *err);

/* Request i's prompt and output length (salt separates warm-up requests from measured ones).
 * 0, or -ENOMEM. Free with slm_bench_prompt_free. */
int slm_bench_workload_make(const struct slm_bench_workload *w, uint64_t salt, long i, struct slm_bench_prompt *p);

void slm_bench_prompt_free(struct slm_bench_prompt *p);

/* Frees what slm_bench_workload_load allocated. */
void slm_bench_workload_free(struct slm_bench_workload *w);

/* A uniform double in [0, 1) from the 64-bit state *s (splitmix64). */
double slm_bench_uniform(uint64_t *s);

#endif
