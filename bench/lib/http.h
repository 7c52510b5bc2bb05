/*
 * bench/lib/http.h - slm-bench's llama-server target (http.c): a minimal HTTP/1.1 client,
 * one request per TCP connection, and the server-sent events of a streaming completion.
 * target.c calls it for targets of kind SLM_BENCH_LLAMA_SERVER; it knows nothing of target.h.
 */
#ifndef SLM_BENCH_HTTP_H
#define SLM_BENCH_HTTP_H

#include "bench/lib/stats.h"
#include "bench/lib/workload.h"

/* A llama-server: where it listens. */
struct slm_bench_http_server {
    char host[256];            /* a name, an IPv4 address or an IPv6 one (without brackets) */
    char port[8];
};

/* GET path on host:port; the body (malloc'd, NUL-terminated) in *body. 0, or -errno. */
int slm_bench_http_get(const struct slm_bench_http_server *t, const char *path, char **body, char *err);

/* One streaming completion of at most timeout_s seconds (see slm_bench_conn_run). */
int slm_bench_http_complete(const struct slm_bench_http_server *t, double timeout_s, const struct slm_bench_prompt *p,
                            struct slm_bench_request *r, long *live_tokens, char *err);

#endif
