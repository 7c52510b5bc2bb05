/*
 * gateway/gateway.h - slm-gateway's state, shared by its modules (docs/gateway.md):
 *   main.c     options, the libmicrohttpd daemon, signals;
 *   server.c   the HTTP side: routing, authentication, limits, streaming, cancellation;
 *   openai.c   OpenAI's request fields into struct slm_params, and the JSON it answers with;
 *   pool.c     idle libslm connections, the model's description, token texts;
 *   metrics.c  the counters and histograms of GET /metrics.
 * The gateway is a client of `slmd serve` through libslm only (layer gateway: common, client).
 */
#ifndef SLM_GATEWAY_H
#define SLM_GATEWAY_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "client/slm.h"
#include "common/err.h"

/* ---- pool.c: idle connections to slmd, reused across HTTP requests. */

#define SLM_GW_POOL_MAX 64     /* idle connections kept; more are closed when given back */

struct slm_gw_retired {        /* the token texts of a model slmd no longer serves */
    char **texts;
    int n;
    struct slm_gw_retired *next;
};

struct slm_gw_pool {
    pthread_mutex_t lock;      /* guards everything below */
    const char *socket;        /* slmd's socket (NULL: $SLM_SOCKET or the default) */
    struct slm_client *idle[SLM_GW_POOL_MAX];
    int n_idle;
    struct slm_info info;      /* the model, as last asked */
    int have_info;
    char **token_text;         /* (n_vocab) the text of each id alone, filled as asked; NUL-terminated */
    int n_token_text;
    struct slm_gw_retired *retired;
};

void slm_gw_pool_init(struct slm_gw_pool *p, const char *socket);
void slm_gw_pool_free(struct slm_gw_pool *p);

/* An idle connection or a new one in *c (*fresh: 1 when new). 0, or a negative errno with the
 * reason in err. */
int slm_gw_pool_get(struct slm_gw_pool *p, struct slm_client **c, int *fresh, char *err);

/* Gives c back (idle again) when healthy with no request of its own left running, else closes
 * it; sets *c to NULL. */
void slm_gw_pool_put(struct slm_gw_pool *p, struct slm_client **c, int healthy);

/* Closes every idle connection (slmd went away: they are all dead). */
void slm_gw_pool_flush(struct slm_gw_pool *p);

/* The model's description into *info, asked of slmd through c when refresh is set or it was
 * never asked. 0 or a negative errno. */
int slm_gw_pool_info(struct slm_gw_pool *p, struct slm_client *c, int refresh, struct slm_info *info);

/* The text of token id alone (for top logprobs), detokenized once through c and kept; "" when
 * it cannot be had. Valid until slm_gw_pool_free. */
const char *slm_gw_pool_token_text(struct slm_gw_pool *p, struct slm_client *c, int32_t id);

/* ---- metrics.c */

#define SLM_GW_N_BUCKETS 20

struct slm_gw_histogram {
    const double *bounds;      /* (n) upper bounds, increasing; +Inf is implicit */
    int n;
    uint64_t count[SLM_GW_N_BUCKETS + 1];  /* per bucket, not cumulative; the last is +Inf */
    double sum;
    uint64_t total;
};

struct slm_gw_metrics {
    pthread_mutex_t lock;      /* guards everything below */
    uint64_t finished_stop, finished_length, finished_abort, finished_error;
    uint64_t http[6];          /* HTTP answers by class: 1xx .. 5xx (index 1..5) */
    uint64_t prompt_tokens, generation_tokens;  /* through this gateway */
    struct slm_gw_histogram ttft, tpot, e2e, prompt_len, gen_len;
};

void slm_gw_metrics_init(struct slm_gw_metrics *m);
void slm_gw_metrics_http(struct slm_gw_metrics *m, unsigned status);

/* One finished request: finish is "stop", "length", "abort" or "error"; times in seconds
 * (ttft < 0: no token came). */
void slm_gw_metrics_request(struct slm_gw_metrics *m, const char *finish, int n_prompt, int n_generated,
                            double ttft, double e2e);

/* Prometheus' text format: the gateway's own series and slmd's stats (stats NULL: slmd was
 * not reachable). malloc'd, or NULL when out of memory. */
char *slm_gw_metrics_render(struct slm_gw_metrics *m, const char *model, const struct slm_stats *stats);

/* ---- openai.c */

struct slm_gw_error {
    unsigned status;           /* HTTP status */
    const char *type;          /* OpenAI's error type, e.g. "invalid_request_error" */
    const char *param;         /* the offending field, or NULL */
    const char *code;          /* OpenAI's code, or NULL */
    char message[SLM_ERR_LEN];
};

void slm_gw_error_set(struct slm_gw_error *e, unsigned status, const char *type, const char *param,
                      const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* {"error": {"message", "type", "param", "code"}} as a malloc'd string. */
char *slm_gw_error_json(const struct slm_gw_error *e);

/* One completion request, parsed from its JSON body. */
struct slm_gw_request {
    int chat;                  /* 1: /v1/chat/completions, 0: /v1/completions */
    int stream, include_usage;
    int logprobs;              /* 1: return the logprobs of the tokens */
    int top_logprobs;          /* alternatives per token (0..20) */
    struct slm_params params;
    const char *stop[16];      /* point into body */
    int n_stop;
    struct slm_message *msgs;  /* (n_msgs) chat; strings point into body or into texts */
    int n_msgs;
    char **texts;              /* (n_msgs) message contents assembled from content parts, or NULL */
    const char *prompt;        /* completions: the text, or NULL with ids */
    int32_t *ids;              /* (n_ids) completions: token ids */
    int n_ids;
    const char *model;         /* as asked (points into body), or NULL */
    json_t *body;              /* owned */
};

/* Parses body (taking its reference) into r. 0, or -1 with e filled (400 and OpenAI's shape). */
int slm_gw_request_parse(json_t *body, int chat, struct slm_gw_request *r, struct slm_gw_error *e);
void slm_gw_request_free(struct slm_gw_request *r);

/* What one request produced, gathered as its events come. */
struct slm_gw_result {
    char *text;                /* malloc'd, NUL-terminated */
    size_t len, cap;
    json_t *logprobs;          /* chat: the "content" array; completions: the logprobs object; or NULL */
    int n_prompt, n_cached, n_generated;
    const char *finish;        /* "stop", "length", or NULL while running */
};

/* The JSON value of one token's logprobs (chat: an entry of "content"; completions: appended to
 * the arrays of into), from a TOKEN event. 0 or -ENOMEM. */
int slm_gw_logprobs_add(const struct slm_gw_request *r, struct slm_gw_pool *pool, struct slm_client *c,
                        const struct slm_event *ev, json_t *into, size_t text_offset);
json_t *slm_gw_logprobs_new(const struct slm_gw_request *r);

/* A whole (non-streaming) answer, as a malloc'd string. */
char *slm_gw_response_json(const struct slm_gw_request *r, const char *id, long created, const char *model,
                           const struct slm_gw_result *res);

/* One server-sent event "data: {...}\n\n" of a streamed answer: a chunk with text (and lp, the
 * token's logprobs, may be NULL), or with finish set the last choice chunk, or with usage set
 * (and first/finish unused) the usage chunk. malloc'd string. */
char *slm_gw_chunk_sse(const struct slm_gw_request *r, const char *id, long created, const char *model, int first,
                       const char *text, size_t len, json_t *lp, const char *finish, const struct slm_gw_result *usage);

/* s[0..n) as a JSON string, bytes that are not well-formed UTF-8 written as U+FFFD. */
json_t *slm_gw_json_string(const char *s, size_t n);

#endif
