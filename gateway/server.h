/*
 * gateway/server.h - slm-gateway's HTTP side (server.c) over libmicrohttpd: one thread per
 * HTTP connection, kept for the next one (lanes.c; a request blocks its thread on libslm's
 * events), routing, the API key, the body limit, streaming, and cancellation when the HTTP
 * client goes away.
 */
#ifndef SLM_GATEWAY_SERVER_H
#define SLM_GATEWAY_SERVER_H

#include <stddef.h>

#include "gateway/gateway.h"

struct slm_gw_options {
    const char *socket;        /* slmd's socket (NULL: $SLM_SOCKET or the default) */
    const char *api_key;       /* NULL: no key needed */
    size_t max_body;           /* bytes of a request body */
    size_t max_header;         /* bytes of a request's line and headers (libmicrohttpd's buffer) */
    unsigned timeout_s;        /* an idle or slow HTTP connection is closed after this */
    unsigned max_connections;
};

struct slm_gw_server;

/* Starts serving on addr (an IPv4 or IPv6 socket address). NULL with the reason in err. */
struct slm_gw_server *slm_gw_server_start(const struct slm_gw_options *o, const void *addr, unsigned addr_len,
                                          char *err);

/* The TCP port it listens on (for --listen ...:0). */
unsigned slm_gw_server_port(struct slm_gw_server *s);

/* Stops accepting, waits for the connections' threads, frees everything, sets *s to NULL. */
void slm_gw_server_stop(struct slm_gw_server **s);

#endif
