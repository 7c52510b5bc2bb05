/*
 * slm.h - libslm, the client library of slmd.
 *
 * A program connects to a running slmd over its Unix socket; the daemon hands back a shared
 * memory segment holding two rings, and from then on submitting work and streaming tokens
 * make no system call while both sides are busy (docs/protocol.md).
 *
 *     struct slm_client *c;
 *     if (slm_connect(NULL, "my-tool", &c) < 0) ...;          // $SLM_SOCKET or the default
 *     struct slm_params p;
 *     slm_params_default(&p);
 *     p.max_tokens = 64;
 *     int64_t h = slm_submit_text(c, "The capital of France is", &p);
 *     struct slm_event ev;
 *     while (slm_next_event(c, &ev, -1) == 1) {
 *         if (ev.type == SLM_EVENT_TOKEN) fwrite(ev.text, 1, ev.text_len, stdout);
 *         if (ev.type != SLM_EVENT_TOKEN && ev.handle == h) break;   // DONE or ERROR
 *     }
 *     slm_close(&c);
 *
 * Errors: every function that can fail returns a negative errno (slm_strerror describes it,
 * including the protocol's own: -EPROTO for a version mismatch, -EACCES when the daemon's
 * allow-list refuses this user, -ECONNRESET when the daemon went away).
 *
 * Threads: a struct slm_client is not thread-safe; use one per thread, or serialize calls
 * on it. Different clients are independent. Events of all of a client's requests come
 * through slm_next_event in the order the daemon produced them.
 */
#ifndef SLM_H
#define SLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_DEFAULT_SOCKET "/run/slmd/slmd.sock"

struct slm_client;

/* Sampling and limits of one request. slm_params_default fills llama.cpp's defaults. */
struct slm_params {
    int max_tokens;            /* 0 = up to the context (default 256) */
    float temperature;         /* 0 = greedy (default 0.8) */
    int top_k;                 /* 0 = off (40) */
    float top_p;               /* 1 = off (0.95) */
    float min_p;               /* 0 = off (0.05) */
    float repeat_penalty;      /* 1 = off (1.0) */
    int repeat_last_n;         /* (64); -1 = the whole history */
    float presence_penalty, frequency_penalty; /* (0) */
    uint64_t seed;             /* (random: each slm_params_default call draws a new one, as
                                  llama.cpp's CLI does; set it to repeat a sample) */
    int priority;              /* higher first (0) */
    int logprobs;              /* 0..20: the token's logprob and this many top alternatives */
    int ignore_eos;            /* 1: end-of-generation tokens do not stop the request */
    int prompt_logprobs;       /* 1: also PROMPT_LOGPROBS events: the logprob of every prompt
                                  token after the first (perplexity); no prefix cache for it */
    int progress;              /* 1: also PROGRESS events while a long prompt is prefilled (0) */
    const char *const *stop;   /* stop strings, never part of the output */
    int n_stop;
    const int32_t *stop_ids;   /* extra stop token ids */
    int n_stop_ids;
};

void slm_params_default(struct slm_params *p);

struct slm_message {
    const char *role;          /* "system", "user", "assistant" */
    const char *content;
};

enum slm_event_type {
    SLM_EVENT_TOKEN = 1, SLM_EVENT_DONE = 2, SLM_EVENT_ERROR = 3, SLM_EVENT_PROMPT_LOGPROBS = 4,
    SLM_EVENT_PROGRESS = 5   /* slm_params.progress: after each engine step that prefilled part of
                                the prompt but not its end (a prompt longer than max-batch-tokens) */
};
enum slm_finish_reason { SLM_FINISH_STOP = 1, SLM_FINISH_LENGTH = 2, SLM_FINISH_CANCELLED = 3 };

struct slm_top_logprob {
    int32_t token;
    float logprob;
};

struct slm_event {
    int64_t handle;            /* what slm_submit_* returned */
    enum slm_event_type type;
    int32_t token;             /* TOKEN */
    const char *text;          /* TOKEN: the text it adds (whole UTF-8 characters; may be empty) */
    size_t text_len;
    float logprob;             /* TOKEN, when asked */
    int n_top;                 /* TOKEN: the top alternatives; PROMPT_LOGPROBS: the prompt tokens
                                  prompt_pos .. prompt_pos + n_top - 1 with their logprobs (every
                                  position from 1 exactly once, in order, before the first TOKEN) */
    const struct slm_top_logprob *top;
    int prompt_pos;            /* PROMPT_LOGPROBS */
    enum slm_finish_reason finish;   /* DONE */
    int n_prompt, n_cached, n_generated; /* DONE: usage. PROGRESS: n_cached of the prompt's
                                  n_prompt tokens are in the KV cache (prefix-cache hit and
                                  prefilled so far), fewer than n_prompt; increasing */
    int error;                 /* ERROR: negative errno */
    const char *message;       /* ERROR: the daemon's reason */
    /* text, top and message stay valid until the next call on this client. */
};

/* Connects to slmd at socket_path (NULL: $SLM_SOCKET, else SLM_DEFAULT_SOCKET); name shows in
 * the daemon's logs. 0 and *out, or a negative errno. */
int slm_connect(const char *socket_path, const char *name, struct slm_client **out);

/* Why the last slm_connect, slm_tokenize, slm_detokenize, slm_info or slm_stats on this
 * thread failed, in one line (for a refusal, the daemon's reason, e.g. "token id 999999 at 0
 * is outside the vocabulary (49152)"); "" after a success or when there is none. Valid until
 * the next of those calls on this thread. */
const char *slm_last_error(void);

/* Closes the connection (the daemon cancels what is still running) and sets *c to NULL. */
void slm_close(struct slm_client **c);

/* Submit a request; returns its handle (> 0) or a negative errno (-EAGAIN: the submission
 * ring or the payload arena is full: take events, then retry; -E2BIG: the payload can never
 * fit the arena; -EINVAL: bad parameters). */
int64_t slm_submit_text(struct slm_client *c, const char *prompt, const struct slm_params *p);
int64_t slm_submit_chat(struct slm_client *c, const struct slm_message *msgs, int n, const struct slm_params *p);
int64_t slm_submit_ids(struct slm_client *c, const int32_t *ids, int n, const struct slm_params *p);

/* The next event of any request of this client. timeout_ms: -1 waits forever, 0 polls.
 * Returns 1 (an event in *ev), 0 (none within the timeout) or a negative errno. A wait
 * interrupted by a signal is resumed (never -EINTR). */
int slm_next_event(struct slm_client *c, struct slm_event *ev, int timeout_ms);

/* Asks the daemon to cancel a request; its DONE event (finish CANCELLED, unless it had
 * already finished) still comes through slm_next_event. */
int slm_cancel(struct slm_client *c, int64_t handle);

/* Calls fn for every event of request `handle` until it is DONE or ERROR (events of other
 * requests are kept for slm_next_event). Returns 0, the request's error, or what fn returned
 * if it returned non-zero (which stops the wait; the request goes on unless cancelled). */
typedef int (*slm_event_fn)(void *ctx, const struct slm_event *ev);
int slm_wait(struct slm_client *c, int64_t handle, slm_event_fn fn, void *ctx);

/* One call: completes prompt and returns the whole text (malloc'd, NUL-terminated; the
 * caller frees it); usage in *done if not NULL. 0 or a negative errno. */
int slm_generate(struct slm_client *c, const char *prompt, const struct slm_params *p, char **text,
                 struct slm_event *done);

/* Token ids of text in the model's vocabulary (malloc'd *ids, *n of them). */
int slm_tokenize(struct slm_client *c, const char *text, int32_t **ids, int *n);

/* Text of ids (malloc'd, NUL-terminated). */
int slm_detokenize(struct slm_client *c, const int32_t *ids, int n, char **text);

struct slm_info {
    char model[128], arch[32], backend[32];
    int n_ctx, n_vocab, max_seqs, max_batch_tokens, kv_blocks, block_size;
};
int slm_info(struct slm_client *c, struct slm_info *info);

struct slm_stats {
    uint64_t clients, requests_active, requests_queued, requests_total;
    uint64_t tokens_prompt, tokens_cached, tokens_generated;
    uint64_t kv_blocks_used, kv_blocks_total;
    double tokens_per_s, uptime_s;
};
int slm_stats(struct slm_client *c, struct slm_stats *stats);

/* A description of a negative errno from this library. */
const char *slm_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
