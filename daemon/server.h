/*
 * daemon/server.h - slmd serve's shared state, read by serve.c (lifecycle: model, engine
 * thread, socket, signals, systemd), conn.c (one connection: handshake, its rings, its
 * requests) and requests.c (what a submission asks for).
 *
 * Threads: the I/O thread (serve.c's loop: epoll over the listening socket, the clients'
 * sockets (their HELLO, then only their hang-up), a signalfd and a timerfd) and the engine
 * thread (steps the engine; its event callback pushes completions). The engine thread is the
 * only consumer of the submission rings: it polls them between steps and while idle-spinning,
 * and when idle it sleeps in epoll over bell_epoll_fd, which holds every ready client's socket
 * (the doorbell wakes it directly) and engine_wake_fd (slm_server_kick).
 * poll_lock guards the clients array (and the rings' consumer side, the NEED_WAKEUP flags,
 * bell_armed): the I/O thread holds it but while it sleeps in epoll_wait; the engine thread
 * takes it to poll (a trylock between steps) and around its idle sleep.
 * Lock order: poll_lock, then the engine's lock, then a client's lock (the event callback takes
 * a client's lock with the engine's held); no engine call is made with a client's lock held.
 */
#ifndef SLM_DAEMON_SERVER_H
#define SLM_DAEMON_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/service.h"
#include "daemon/engine/engine.h"
#include "ipc/protocol.h"

struct slm_conn;
struct slm_server;

/* What the server asks of the engine that produces its tokens. slmd serve always uses
 * slm_server_engine_ops (the real engine, s->engine). The only other table is the echo producer
 * of bench/ring_bench.c, which measures the IPC without a model; no configuration key or flag
 * can select it. Same contracts as slm_engine_add, _cancel, _step, _n_unfinished, _counts. */
struct slm_server_ops {
    int64_t (*add)(struct slm_server *s, const struct slm_request *r, char *err);
    int (*cancel)(struct slm_server *s, int64_t id);
    int (*step)(struct slm_server *s, slm_engine_event_fn fn, void *ctx);
    int (*n_unfinished)(struct slm_server *s);
    void (*counts)(struct slm_server *s, struct slm_engine_counts *out);
};

extern const struct slm_server_ops slm_server_engine_ops;

struct slm_server {
    struct slm_config cfg;
    int argc;                      /* the command line, read again on SIGHUP */
    char **argv;
    struct slm_service svc;        /* the model, backend, tokenizer and chat template */
    struct slm_engine *engine;
    struct slm_engine_opts eo;
    const struct slm_server_ops *ops;   /* &slm_server_engine_ops in slmd */
    void *ops_ctx;                 /* the state of another ops table; NULL in slmd */
    int listen_fd, epoll_fd, signal_fd, timer_fd;
    int socket_activated;          /* the socket came from systemd (do not unlink it) */
    char socket_path[128];
    /* engine thread */
    pthread_t engine_thread;
    int engine_quit;
    /* The engine thread's idle sleep (serve.c, engine_sleep): it sets NEED_WAKEUP in every
     * ready client's header (bell_armed = 1, under poll_lock, so that a client completing its
     * handshake meanwhile starts with the flag set), then sleeps in epoll_wait on bell_epoll_fd:
     * the ready clients' sockets (EPOLLIN: the doorbell) and engine_wake_fd (an eventfd that
     * slm_server_kick writes while engine_sleeping). */
    pthread_mutex_t poll_lock;
    int bell_epoll_fd, engine_wake_fd;
    int bell_armed;                /* poll_lock */
    int engine_sleeping;           /* atomic; the Dekker flag of slm_server_kick */
    struct slm_conn **wake_list;   /* engine thread: clients to wake after the step (conn.c) */
    int n_wake, cap_wake;
    uint64_t watchdog_usec;        /* 0: no watchdog */
    /* clients (I/O thread only, except the counters) */
    struct slm_conn **clients;     /* every connection, handshake done or not */
    int n_clients, cap_clients;
    int n_ready;                   /* of those, with the handshake done (against max-clients) */
    /* accept errors (EMFILE...): accepting pauses, with backoff; one log line a second */
    int accept_paused;
    int accept_backoff_ms;
    double accept_resume_s, accept_log_s;
    int accept_errors;             /* since the last line logged */
    double refuse_log_s;           /* refusals at accept: one log line a second */
    int refusals_unlogged;
    uint64_t next_client_id;
    int draining;                  /* SIGTERM: no new requests */
    int reload_pending;            /* SIGHUP changed the engine: rebuild it once it is empty */
    struct slm_config next_cfg;    /* the configuration that reload read */
    /* counters for stats (atomics) */
    uint64_t n_requests_total, n_tokens_prompt, n_tokens_cached, n_tokens_generated;
    double started_s;
    double rate_t, rate_tokens, tokens_per_s;   /* a smoothed generation rate, engine thread */
    char status[160];              /* the last STATUS= sent, and when */
    double status_t;
};

/* Wakes the engine thread when it sleeps, after the caller changed what it would look at
 * (a request added or cancelled, engine_quit). Dekker with engine_sleep: the engine thread
 * stores engine_sleeping = 1, fences, then looks for work; the caller made its work visible,
 * fences, then loads engine_sleeping; at least one of them sees the other. The eventfd's count
 * stays until read, so a write just before the engine thread's epoll_wait still wakes it. From
 * the engine thread itself (it adds the requests it takes) engine_sleeping is 0: no system
 * call. Inline here, so that conn.c needs nothing of serve.c. */
static inline void slm_server_kick(struct slm_server *s)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&s->engine_sleeping, __ATOMIC_RELAXED)) return;
    uint64_t one = 1;
    ssize_t rc = write(s->engine_wake_fd, &one, sizeof one);   /* EAGAIN: the count is full, it wakes anyway */
    (void)rc;
}

/* Runs a server whose cfg and ops (with what they drive) are set: listens on the configured
 * socket, runs the engine thread (named "slmd-engine") and the I/O loop on the calling thread
 * until SIGTERM or SIGINT and the drain that follows, then closes every client and stops the
 * engine thread. SIGHUP rebuilds the engine from the command line (slmd serve's). The caller
 * blocks SIGTERM, SIGINT and SIGHUP before starting any thread: the loop reads them from a
 * signalfd. Returns 0 after a drain, or -errno with err. */
int slm_server_run(struct slm_server *s, char *err);

#endif
