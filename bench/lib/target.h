/*
 * bench/lib/target.h - the servers slm-bench measures, behind one interface, so that both are
 * timed by the same code:
 *   slmd          through libslm (one struct slm_client per connection, ids or text);
 *   llama-server  through its streaming completion endpoint: HTTP/1.1 POST /completion with
 *                 "stream": true, answered with server-sent events, read on a plain socket
 *                 (one TCP connection per request, "Connection: close");
 *   openai        any OpenAI-compatible server (slm-gateway, vLLM, llama-server, Ollama) through
 *                 POST /v1/completions with "stream": true, the same way.
 * Both are asked for exactly the request's output length with end-of-generation ignored
 * (slmd: max_tokens and ignore_eos; llama-server: n_predict and ignore_eos; openai: max_tokens
 * and ignore_eos, an extra that vLLM and slm-gateway honour) and sample
 * greedily (temperature 0).
 *
 * A struct slm_bench_conn belongs to one thread.
 */
#ifndef SLM_BENCH_TARGET_H
#define SLM_BENCH_TARGET_H

#include <jansson.h>

#include "bench/lib/http.h"
#include "bench/lib/stats.h"
#include "bench/lib/workload.h"

enum slm_bench_kind { SLM_BENCH_SLMD = 1, SLM_BENCH_LLAMA_SERVER = 2, SLM_BENCH_OPENAI = 3 };

struct slm_bench_target {
    enum slm_bench_kind kind;
    const char *socket;        /* slmd: its socket (NULL: $SLM_SOCKET or the default) */
    struct slm_bench_http_server http;   /* llama-server, openai: host and port from the URL */
    double timeout_s;          /* per request */
    int n_vocab;               /* filled by slm_bench_target_describe (0: unknown) */
};

/* Parses http://HOST:PORT (a trailing / allowed; HOST a name, an IPv4 address or [IPv6]) into
 * t->http.host and t->http.port. 0, or -EINVAL with one line in err[SLM_ERR_LEN]. */
int slm_bench_url_parse(const char *url, struct slm_bench_target *t, char *err);

/* What the server says about itself (slmd: slm_info; llama-server: GET /props and
 * /v1/models; openai: GET /v1/models, whose first model becomes t->http.model unless set), as
 * a new JSON object; sets t->n_vocab where the server tells it. NULL with
 * the reason in err when the server cannot be reached. */
json_t *slm_bench_target_describe(struct slm_bench_target *t, char *err);

struct slm_bench_conn;

/* A connection for one thread (slmd: connects now; llama-server: one per request later).
 * NULL with the reason in err. */
struct slm_bench_conn *slm_bench_conn_open(const struct slm_bench_target *t, char *err);

/* Runs one request to its end, filling r (t_start is the caller's: the request's start; this
 * sets the rest, r->token_times malloc'd) and adding each token to *live_tokens (atomically,
 * for the progress line). 0, or -errno with r->failed = 1 and the reason in err. */
int slm_bench_conn_run(struct slm_bench_conn *c, const struct slm_bench_prompt *p, struct slm_bench_request *r,
                       long *live_tokens, char *err);

void slm_bench_conn_close(struct slm_bench_conn **c);

#endif
