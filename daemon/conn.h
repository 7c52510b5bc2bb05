/*
 * daemon/conn.h - one client connection of slmd serve (conn.c): its handshake, the SQEs it
 * submits (decoded by requests.c), and the completions pushed back to it. serve.c's I/O loop
 * and engine thread call these; conn.c calls nothing of serve.c (it wakes the engine thread
 * through server.h's slm_server_kick). Threads and locks: server.h.
 */
#ifndef SLM_DAEMON_CONN_H
#define SLM_DAEMON_CONN_H

#include <stdint.h>
#include <sys/types.h>

#include "daemon/engine/engine.h"
#include "daemon/server.h"

struct slm_conn;


/* Takes a freshly accepted connection. NULL (fd closed) when out of memory. */
struct slm_conn *slm_conn_new(struct slm_server *s, int fd);

/* Handles the client's socket being readable or hung up: the HELLO, doorbell bytes, or the
 * end. Returns 1 when the handshake has just completed (the caller hands the socket's
 * doorbells to the engine thread), 0, or -1 when the client is gone (slm_conn_close has then
 * been called). Takes no submission: the engine thread does. */
int slm_conn_on_socket(struct slm_server *s, struct slm_conn *c, uint32_t events);

/* Takes every waiting submission of client c (none while s->reload_pending; each answered
 * with an error while s->draining) and flushes its queued completions; returns how many. */
int slm_conn_poll(struct slm_server *s, struct slm_conn *c);

/* flags NEED_WAKEUP: sets it in c's shared header, and returns 1 when a submission is already
 * waiting (the flag is cleared again; the caller must not sleep), else 0. flags 0: clears
 * NEED_WAKEUP. flags CLOSING: sets CLOSING, leaving NEED_WAKEUP as it is. poll_lock held. */
int slm_conn_set_flags(struct slm_conn *c, uint32_t flags);

/* 1 when c has completions queued privately, waiting for room in its completion ring: they
 * are flushed when its ring is next polled (slm_conn_poll), so the engine thread's idle sleep
 * keeps a tick while there are any. */
int slm_conn_has_pending(struct slm_conn *c);

/* Cancels every request of c (the drain's deadline passed). */
void slm_conn_cancel_all(struct slm_server *s, struct slm_conn *c);

/* Cancels c's requests, closes its socket; c is freed once its last request has finished. */
void slm_conn_close(struct slm_server *s, struct slm_conn *c);

/* The engine's event callback (ctx: the server). It publishes the event's completions; the
 * client is woken by slm_conn_wake_deferred once the step is over. */
void slm_conn_on_event(void *ctx, const struct slm_engine_event *ev);

/* Engine thread, after each step: wakes (FUTEX_WAKE, only if it sleeps) every client that got
 * completions in the step, once. Returns how many it woke. */
int slm_conn_wake_deferred(struct slm_server *s);

int slm_conn_fd(const struct slm_conn *c);

/* 1 when c's peer (SO_PEERCRED, taken at accept) may connect: allow-uids, allow-gids. */
int slm_conn_allowed(const struct slm_server *s, const struct slm_conn *c);

/* Refuses c before its HELLO (at accept: the allow-list, max-clients, max-clients-per-uid, a
 * drain): sends the WELCOME refusal now; c is closed once its HELLO (or hang-up) is read, so
 * that the close does not reset the peer before it reads the reason. */
void slm_conn_refuse(struct slm_conn *c, int status, const char *reason);

enum { SLM_CONN_HANDSHAKE, SLM_CONN_REFUSED, SLM_CONN_READY };

/* SLM_CONN_HANDSHAKE (no HELLO yet), SLM_CONN_REFUSED (slm_conn_refuse) or SLM_CONN_READY. */
int slm_conn_state(const struct slm_conn *c);

uid_t slm_conn_uid(const struct slm_conn *c);

/* When c was accepted (CLOCK_MONOTONIC seconds): handshake-timeout counts from it. */
double slm_conn_since(const struct slm_conn *c);

#endif
