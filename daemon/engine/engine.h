/*
 * daemon/engine/engine.h - continuous batching over the paged KV cache; the public header of the
 * engine library (docs/architecture.md, "Layers").
 *
 * Requests (prompt token ids, sampling, limits) are added; each slm_engine_step() builds one
 * batch: the next token of every running sequence, then prefill chunks of waiting prompts up
 * to the step's token budget; it runs the forward pass, samples each finished row and reports
 * events (on the device when the backend can sample: only token ids and requested logprobs
 * come back). Full KV blocks are shared across requests by prefix (kvcache.h). When blocks run
 * out, the lowest-priority, latest-arrived running sequence is preempted by recompute: its
 * blocks are freed and it is requeued with its prompt plus what it generated.
 *
 * Every token's arithmetic is independent of the batch around it (docs/numerics.md), so a
 * request's tokens are the same alone, among many others, or after a preemption.
 *
 * Order: priority first; among equal priorities, fair share across owners (each owner's
 * k-th unfinished request before anyone's (k+1)-th); then arrival. Only the max_seqs best
 * ranked requests take part in a step, so a new owner's request runs in the next step
 * (docs/engine.md states the bound on its first token).
 *
 * Threads: one thread calls slm_engine_step (the engine thread). slm_engine_add,
 * slm_engine_cancel and the counters are safe from any thread, at any time, including from
 * the event callback (which runs on the engine thread with the engine's lock held). With
 * o.overlap the forward passes run on a thread the engine starts and joins itself.
 */
#ifndef SLM_ENGINE_ENGINE_H
#define SLM_ENGINE_ENGINE_H

#include <stdint.h>

#include "daemon/engine/model.h"
#include "daemon/engine/sampler.h"
#include "daemon/engine/stop.h"

struct slm_engine;
struct slm_tokenizer;

struct slm_engine_opts {
    int n_blocks;          /* KV blocks in the (global) pool */
    int block_size;        /* tokens per block (16) */
    int max_batch_tokens;  /* tokens per step */
    int max_seqs;          /* sequences per step */
    int n_ctx;             /* longest sequence (prompt + generated) */
    int host_sampling;     /* 1: sample on the host even when the backend can sample (the CUDA
                              backend's `sample` op); for comparisons. 0: the device samples */
    int swa_full;          /* 1: a model with sliding-window layers keeps every layer's K/V of the
                              whole context in the one pool (as before the local pool; llama.cpp's
                              --swa-full); for comparisons. 0: the local layers get a pool of their
                              own bounded to the window (docs/engine.md, "Two pools") */
    int overlap;           /* 1: each step's forward pass runs on a thread of the engine's own while the
                              engine thread reports the step before (its detokenizing, stop strings,
                              logprobs and events): the tokens are the same, a request that a stop
                              string ends computes one token more, which is dropped (docs/engine.md,
                              "Overlapped steps"). 0: one step at a time */
    int spin_us;           /* with overlap: microseconds each of the two threads polls for the other
                              before it sleeps (0..1000000): the engine thread for a pass launched
                              less than spin_us ago, the pass thread for the next launch; a short
                              pass (a GPU's decode step) is then handed over without a thread
                              wake-up either way, at the cost of a polling core. 0: sleep at once */
    int n_local_blocks;    /* blocks of that local pool; 0: slm_engine_local_blocks's choice. At least
                              what one request alone needs: min(n_blocks, ceil((window - 1 +
                              max_batch_tokens) / block_size) + 1) */
};

struct slm_request {
    const int32_t *prompt; /* copied */
    int n_prompt;
    struct slm_sampling sampling;
    int max_tokens;        /* > 0 */
    int priority;          /* higher runs first and is preempted last */
    uint32_t owner;        /* fair share is across owners (the client's uid in the daemon) */
    const int32_t *stop_ids; /* extra stop token ids (copied), besides end-of-generation */
    int n_stop_ids;
    const char *const *stop; /* stop strings (copied; NUL-terminated), never part of the output */
    int n_stop;
    int logprobs;            /* 0: none; 1..20: the sampled token's logprob and this many top ones */
    int ignore_eos;          /* 1: the model's end-of-generation tokens do not stop it (benchmarks) */
    int prompt_logprobs;     /* 1: report the logprob of every prompt token after the first
                                (perplexity); the prefix cache is not used for this request */
    int progress;            /* 1: a progress event after each step that prefilled part of the
                                prompt but not its end (n_prefilled) */
    void *user;              /* the caller's; handed back in every event of this request */
};

enum slm_engine_finish { SLM_ENGINE_FINISH_NONE = 0, SLM_ENGINE_FINISH_STOP, SLM_ENGINE_FINISH_LENGTH, SLM_ENGINE_FINISH_CANCELLED };

struct slm_engine_event {
    int64_t id;
    void *user;            /* slm_request.user */
    int32_t token;         /* -1 when the event only finishes the request */
    enum slm_engine_finish finish;
    int n_prompt;          /* usage, with the finish */
    int n_cached;          /* prompt tokens served from the prefix cache (last admission) */
    int n_generated;
    const char *text;      /* the text this event adds (complete UTF-8; stop strings cut); valid in the callback */
    int text_len;
    float logprob;         /* of token, from the raw logits, when the request asked for logprobs */
    int n_top;
    const struct slm_logprob *top; /* (n_top) best tokens by logprob */
    /* Prompt logprobs (token -1, finish NONE): prompt tokens prompt_lp_first ..
     * prompt_lp_first + n_prompt_lp - 1 with their logprobs given the tokens before them. Every
     * prompt token from the second is reported exactly once, in order, before the first
     * generated token's event. */
    int n_prompt_lp, prompt_lp_first;
    const struct slm_logprob *prompt_lp;
    /* Prefill progress (token -1, finish NONE; slm_request.progress): > 0: of the prompt's
     * n_prompt tokens, this many are in the KV cache (the prefix-cache hit included), fewer than
     * n_prompt. Increasing; none once the request has generated a token (a preempted request's
     * recomputation reports none). 0 in every other event. */
    int n_prefilled;
};

typedef void (*slm_engine_event_fn)(void *ctx, const struct slm_engine_event *ev);

/* Bytes of KV cache one block of block_size tokens takes for model m in the (global) pool: K and V
 * in f16 of every layer, or, for a model with sliding-window layers (without swa_full), of its
 * global layers only. */
size_t slm_engine_block_bytes(const struct slm_model *m, int block_size);

/* Blocks of the local pool the engine makes for model m with options o: 0 for a model without
 * sliding-window layers or with o->swa_full; else o->n_local_blocks when set, or
 *   max_seqs * (ceil(window / block_size) + 1) + ceil(max_batch_tokens / block_size),
 * what every running sequence's window and one step's new tokens take; either at most n_blocks
 * when that is set (> 0): a sequence never holds more local blocks than global ones
 * (docs/engine.md, "Two pools"). */
int slm_engine_local_blocks(const struct slm_model *m, const struct slm_engine_opts *o);

/* Bytes of one block of the local pool (K and V in f16 of the local layers); 0 without them. */
size_t slm_engine_local_block_bytes(const struct slm_model *m, int block_size);

/* NULL and err on bad options or when the pool cannot be allocated. */
struct slm_engine *slm_engine_create(struct slm_model *m, const struct slm_tokenizer *tok,
                                     const struct slm_engine_opts *o, char *err);
void slm_engine_destroy(struct slm_engine **e);

/* Queues a request; returns its id (>= 0), or -EINVAL / -E2BIG / -ENOMEM with err saying why
 * (a request that cannot fit in the whole cache or the context is refused). */
int64_t slm_engine_add(struct slm_engine *e, const struct slm_request *r, char *err);

/* Cancels a queued or running request: its blocks are freed at once (even while a step's
 * forward pass runs) and a finish event with SLM_ENGINE_FINISH_CANCELLED is reported by the next
 * step. -ENOENT if unknown, finished or already cancelled. */
int slm_engine_cancel(struct slm_engine *e, int64_t id);

/* One step. Reports events through fn. Returns the number of unfinished requests (with
 * o.overlap at least 1 while a pass is still running: call again), or -errno. */
int slm_engine_step(struct slm_engine *e, slm_engine_event_fn fn, void *ctx);

/* One line on the KV pools the engine makes for m with o, into buf (cap bytes): "N blocks of B tokens
 * (M MiB)", and for a model with a local pool "; local pool of the L sliding-window layers (window
 * W): N blocks (M MiB)". */
void slm_engine_kv_desc(const struct slm_model *m, const struct slm_engine_opts *o, char *buf, size_t cap);

/* Fills *out with the blocks of pool (SLM_KV_GLOBAL, or SLM_KV_LOCAL when the engine has a local
 * pool: kvcache.h). 0 or -EINVAL. */
struct slm_kv_counts;
int slm_engine_kv_counts(struct slm_engine *e, int pool, struct slm_kv_counts *out);

struct slm_engine_counts {
    int unfinished;        /* added, finish event not yet reported */
    int waiting;           /* of those, not admitted (queued, or preempted and waiting again) */
    int free_blocks;       /* free KV blocks, including evictable cached ones */
    uint64_t preempted;    /* preemptions so far */
    uint64_t sampled_device, sampled_host;   /* tokens sampled by the backend's sample op / on the host */
};

/* All the counters at one instant (one lock). The three calls below are shorthands. */
void slm_engine_counts(struct slm_engine *e, struct slm_engine_counts *out);

/* Free KV blocks (including evictable cached ones). */
int slm_engine_free_blocks(struct slm_engine *e);

/* How many times a running request was preempted (its blocks freed, to be recomputed). */
uint64_t slm_engine_n_preempted(struct slm_engine *e);

/* Requests added and not yet finished (their finish event not yet reported). */
int slm_engine_n_unfinished(struct slm_engine *e);

/* Where the steps' time went, summed over the steps since timing was switched on (CLOCK_MONOTONIC
 * ns). The host's parts of a step are everything but pass_ns: docs/performance.md, "Host-side
 * cost per step". */
struct slm_engine_timing {
    uint64_t steps;          /* steps that ran a forward pass */
    uint64_t rows;           /* tokens sampled (a sequence's new token each) */
    uint64_t schedule_ns;    /* reap cancelled, rank, plan (KV blocks), build the batch, commit KV */
    uint64_t pass_ns;        /* the forward pass, logits to the host, the backend's sampling */
    uint64_t sample_ns;      /* the host's sampling and logprobs, the sampler's window */
    uint64_t detok_ns;       /* detokenizing and the stop strings */
    uint64_t report_ns;      /* the event callback (in slmd: the CQE writes) and freeing finished requests */
    uint64_t handoff_ns;     /* with overlap: from a launch to the pass thread's start, plus from the pass's
                                end to the engine thread's return from its wait (the two threads' wake-ups;
                                part of pass_ns, which is the engine thread's wait for the pass) */
};

/* Switches the step timers on (and zeroes them) or off. Off by default: on, each step makes
 * ~4 clock reads per sampled sequence (~0.1 us). */
void slm_engine_set_timing(struct slm_engine *e, int on);

/* The timers so far (one lock). */
void slm_engine_timing(struct slm_engine *e, struct slm_engine_timing *out);

#endif
