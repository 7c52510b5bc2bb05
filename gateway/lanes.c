/*
 * gateway/lanes.c - slm-gateway's HTTP connections and their threads (lanes.h).
 *
 * Why not libmicrohttpd's own MHD_USE_THREAD_PER_CONNECTION: it starts a new thread for every
 * connection, and a new thread's first run waits for a core much longer than a thread that is
 * woken: on the 2-core test machine under load, `perf sched timehist` gave 2.2 ms p50 (3.4 ms
 * p90) of scheduling delay before a new connection thread first ran, against 0.025 ms for a
 * woken one. With one connection per request (curl, slm-bench, many SDKs' defaults) that wait
 * was almost all of the gateway's added time to first token (docs/performance.md, "The HTTP
 * gateway's overhead").
 *
 * A lane is a thread that is kept. Idle, it blocks in accept(2) on the shared listening socket
 * (the kernel wakes one waiter per connection), hands the connection to its own libmicrohttpd
 * daemon (no listening socket, no threads: MHD_add_connection, then MHD_run_wait until the
 * connection is closed) and serves it to its end, keep-alive requests included; a request may
 * block the lane (server.c waits on libslm there), as it blocked libmicrohttpd's thread before.
 * Then it accepts again. The lane that takes the last idle place starts one more lane, up to
 * max, so that a new connection always finds a lane already waiting; lanes are never ended
 * before the server stops.
 */
#define _GNU_SOURCE
#include "gateway/lanes.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

/* How long a lane with an idle connection sleeps in libmicrohttpd before it looks whether the
 * server stops. */
#define STOP_CHECK_MS 500

struct lane {
    struct slm_gw_lanes *l;
    struct MHD_Daemon *d;      /* this lane's daemon, one connection at a time */
    int conn;                  /* a dup of its connection's socket (-1: none), which the stop shuts
                                  down; guarded by l->lock; a dup, so that the number is not reused
                                  while libmicrohttpd closes its own */
    pthread_t thread;
    struct lane *next;
};

struct slm_gw_lanes {
    int fd;                    /* the listening socket (blocking: accept sleeps in the kernel) */
    unsigned port;
    unsigned max;
    slm_gw_lane_daemon_fn make;
    void *ctx;
    pthread_mutex_t lock;      /* guards everything below */
    struct lane *all;          /* every lane started, for the stop */
    unsigned n;                /* lanes started */
    unsigned n_idle;           /* lanes in accept, or about to be */
    int stopping;
};

static void *lane_run(void *arg);

/* Starts one more lane, counted idle, with d for its daemon (NULL: the lane makes its own, off
 * the path of the connection that called for it). Called with l->lock held. 0 or a negative
 * errno. */
static int lane_add(struct slm_gw_lanes *l, struct MHD_Daemon *d)
{
    struct lane *ln = calloc(1, sizeof *ln);
    if (!ln) return -ENOMEM;
    ln->l = l;
    ln->d = d;
    ln->conn = -1;
    int rc = pthread_create(&ln->thread, NULL, lane_run, ln);
    if (rc) {
        free(ln);
        return -rc;
    }
    ln->next = l->all;
    l->all = ln;
    l->n++;
    l->n_idle++;
    return 0;
}

static int stopping(struct slm_gw_lanes *l)
{
    pthread_mutex_lock(&l->lock);
    int s = l->stopping;
    pthread_mutex_unlock(&l->lock);
    return s;
}

static unsigned n_connections(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

static void *lane_run(void *arg)
{
    struct lane *ln = arg;
    struct slm_gw_lanes *l = ln->l;
    pthread_setname_np(pthread_self(), "slm-gw-http");   /* for top -H, perf sched */
    if (!ln->d && !(ln->d = l->make(l->ctx))) {
        pthread_mutex_lock(&l->lock);
        l->n_idle--;   /* stays counted in l->n: its place is not taken again */
        pthread_mutex_unlock(&l->lock);
        slm_log(SLM_LOG_WARNING, "cannot start libmicrohttpd for another HTTP thread");
        return NULL;
    }
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        int e = errno;
        pthread_mutex_lock(&l->lock);
        if (l->stopping) {
            pthread_mutex_unlock(&l->lock);
            if (fd >= 0) close(fd);
            return NULL;
        }
        if (fd < 0) {
            pthread_mutex_unlock(&l->lock);
            if (e != EINTR && e != ECONNABORTED) {   /* out of descriptors or memory: not spin */
                slm_log(SLM_LOG_WARNING, "accept: %s", strerror(e));
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        /* The last idle lane: one more waits for the next connection (its start is off this
           connection's path but for the clone itself). */
        if (--l->n_idle == 0 && l->n < l->max && lane_add(l, NULL) < 0)
            slm_log(SLM_LOG_WARNING, "cannot start another HTTP thread (%u running)", l->n);
        ln->conn = dup(fd);
        pthread_mutex_unlock(&l->lock);
        if (MHD_add_connection(ln->d, fd, (struct sockaddr *)&sa, len) == MHD_YES)   /* else closed */
            while (n_connections(ln->d) > 0 && !stopping(l)) MHD_run_wait(ln->d, STOP_CHECK_MS);
        pthread_mutex_lock(&l->lock);
        if (ln->conn >= 0) close(ln->conn);
        ln->conn = -1;
        l->n_idle++;
        pthread_mutex_unlock(&l->lock);
    }
}

struct slm_gw_lanes *slm_gw_lanes_start(const void *addr, unsigned addr_len, unsigned max, slm_gw_lane_daemon_fn make,
                                        void *ctx, char *err)
{
    const struct sockaddr *sa = addr;
    struct slm_gw_lanes *l = calloc(1, sizeof *l);
    if (!l) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    l->max = max ? max : 1;
    l->make = make;
    l->ctx = ctx;
    pthread_mutex_init(&l->lock, NULL);
    int one = 1;
    l->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        slm_err_set(err, "socket: %s", strerror(errno));
        goto err;
    }
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);   /* rebind at once after a restart */
    if (sa->sa_family == AF_INET6) setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(l->fd, sa, addr_len) != 0 || listen(l->fd, SOMAXCONN) != 0) {
        slm_err_set(err, "cannot listen: %s", strerror(errno));
        goto err;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    if (getsockname(l->fd, (struct sockaddr *)&bound, &len) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    struct MHD_Daemon *d = make(ctx);   /* the first lane's here, so that a failure is told */
    if (!d) {
        slm_err_set(err, "cannot start libmicrohttpd");
        goto err;
    }
    pthread_mutex_lock(&l->lock);
    int rc = lane_add(l, d);
    pthread_mutex_unlock(&l->lock);
    if (rc < 0) {
        MHD_stop_daemon(d);
        slm_err_set(err, "cannot start a thread: %s", strerror(-rc));
        goto err;
    }
    return l;
err:
    if (l->fd >= 0) close(l->fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
    return NULL;
}

unsigned slm_gw_lanes_port(const struct slm_gw_lanes *l)
{
    return l->port;
}

void slm_gw_lanes_stop(struct slm_gw_lanes **lp)
{
    struct slm_gw_lanes *l = *lp;
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;   /* no lane is added nor takes a connection after this (both under the lock) */
    /* A request in flight sees its peer gone (server.c looks every 100 ms) and cancels, as when
       the client hangs up; an idle keep-alive connection ends at once. */
    for (struct lane *ln = l->all; ln; ln = ln->next)
        if (ln->conn >= 0) shutdown(ln->conn, SHUT_RDWR);
    pthread_mutex_unlock(&l->lock);
    shutdown(l->fd, SHUT_RDWR);   /* wakes every lane blocked in accept (EINVAL) */
    for (struct lane *ln = l->all, *next; ln; ln = next) {
        next = ln->next;
        pthread_join(ln->thread, NULL);
        if (ln->d) MHD_stop_daemon(ln->d);   /* closes a connection it still had */
        free(ln);
    }
    close(l->fd);
    pthread_mutex_destroy(&l->lock);
    free(l);
    *lp = NULL;
}
