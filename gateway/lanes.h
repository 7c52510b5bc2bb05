/*
 * gateway/lanes.h - slm-gateway's HTTP connections and their threads (lanes.c): the listening
 * socket, and threads that are kept from one connection to the next ("lanes"), each serving one
 * connection at a time through its own libmicrohttpd daemon. server.c makes the daemons.
 */
#ifndef SLM_GATEWAY_LANES_H
#define SLM_GATEWAY_LANES_H

#include <microhttpd.h>

struct slm_gw_lanes;

/* Makes one lane's daemon: libmicrohttpd without a listening socket or threads of its own
 * (MHD_USE_NO_LISTEN_SOCKET, external polling); NULL when it cannot. */
typedef struct MHD_Daemon *(*slm_gw_lane_daemon_fn)(void *ctx);

/* Listens on addr (an IPv4 or IPv6 socket address) and starts the first lanes; at most max
 * connections are served at once (more wait in the listen backlog). NULL with the reason in
 * err. */
struct slm_gw_lanes *slm_gw_lanes_start(const void *addr, unsigned addr_len, unsigned max, slm_gw_lane_daemon_fn make,
                                        void *ctx, char *err);

/* The TCP port it listens on (for --listen ...:0). */
unsigned slm_gw_lanes_port(const struct slm_gw_lanes *l);

/* Stops accepting, shuts the connections down (a request in flight then ends as when its client
 * hangs up), waits for the lanes, frees everything, sets *l to NULL. */
void slm_gw_lanes_stop(struct slm_gw_lanes **l);

#endif
