/*
 * bench/lib/http.h - slm-bench's HTTP targets (http.c): a minimal HTTP/1.1 client, one request
 * per TCP connection, and the server-sent events of a streaming completion, in two dialects:
 * llama-server's own POST /completion, and OpenAI's POST /v1/completions (slm-gateway, vLLM,
 * llama-server, Ollama). target.c calls it for targets of kind SLM_BENCH_LLAMA_SERVER and
 * SLM_BENCH_OPENAI; it knows nothing of target.h.
 */
#ifndef SLM_BENCH_HTTP_H
#define SLM_BENCH_HTTP_H

#include "bench/lib/stats.h"
#include "bench/lib/workload.h"

/* An HTTP server: where it listens, and which dialect it speaks. */
struct slm_bench_http_server {
    char host[256];            /* a name, an IPv4 address or an IPv6 one (without brackets) */
    char port[8];
    int openai;                /* 1: OpenAI's /v1/completions; 0: llama-server's /completion */
    char model[256];           /* openai: the "model" of each request (the first of /v1/models) */
    const char *api_key;       /* openai: sent as "Authorization: Bearer KEY" when not NULL */
};

/* GET path on host:port; the body (malloc'd, NUL-terminated) in *body. 0, or -errno. */
int slm_bench_http_get(const struct slm_bench_http_server *t, const char *path, char **body, char *err);

/* One streaming completion of at most timeout_s seconds (see slm_bench_conn_run). */
int slm_bench_http_complete(const struct slm_bench_http_server *t, double timeout_s, const struct slm_bench_prompt *p,
                            struct slm_bench_request *r, long *live_tokens, char *err);

#endif
