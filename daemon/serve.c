/*
 * daemon/serve.c - `slmd serve`: the daemon's lifecycle. Loads the model, builds the engine,
 * listens on the Unix socket (or takes it from systemd), runs the engine thread and the I/O
 * loop, talks to systemd (READY, STATUS, WATCHDOG, STOPPING, RELOADING), drains on SIGTERM
 * and reloads on SIGHUP. conn.c handles each connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

#include "common/log.h"
#include "common/clock.h"
#include "daemon/commands.h"
#include "daemon/conn.h"
#include "daemon/engine/backends/select.h"
#include "daemon/engine/chat.h"
#include "daemon/server.h"
#include "daemon/service.h"
#include "common/parse.h"
#include "ipc/wait.h"

#define TICK_MS 100
#define DRAIN_GRACE_S 2   /* after the drain cancelled everything, how long the engine has to report it */

enum { TAG_LISTEN = 1, TAG_SIGNAL, TAG_TIMER };   /* epoll data below 4096 are these; above, clients */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the engine */

/* KV blocks of the (global) pool: the configured size, or auto (docs/configuration.md): on cuda, at
 * most the backend's budget (gpu-memory-fraction of the free device memory). A model with
 * sliding-window layers takes its local pool (slm_engine_local_blocks) out of those bytes first.
 * 0 with err if too small. */
static int kv_blocks(const struct slm_server *s, int n_ctx, char *err)
{
    size_t per_block = slm_engine_block_bytes(s->svc.model, s->cfg.block_size);
    int per_ctx = (n_ctx + s->cfg.block_size - 1) / s->cfg.block_size;
    const struct slm_engine_opts probe = {.block_size = s->cfg.block_size, .max_batch_tokens = s->cfg.max_batch_tokens,
                                          .max_seqs = s->cfg.max_seqs};
    uint64_t local = (uint64_t)slm_engine_local_blocks(s->svc.model, &probe) *
                     slm_engine_local_block_bytes(s->svc.model, s->cfg.block_size);
    uint64_t bytes = s->cfg.kv_cache_mem, limit = slm_backend_kv_limit(s->svc.be);
    if (!bytes) {
        uint64_t want = (uint64_t)s->cfg.max_seqs * (uint64_t)per_ctx * per_block + local;
        uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
        bytes = want < ram / 4 ? want : ram / 4;
        if (bytes < (uint64_t)per_ctx * per_block + local) bytes = (uint64_t)per_ctx * per_block + local;
        if (bytes > limit) bytes = limit;
    }
    uint64_t n = bytes > local ? (bytes - local) / per_block : 0;
    if (n < 1) {
        slm_err_set(err, "kv-cache-mem: %llu bytes hold no KV block (one block of %d tokens takes %zu bytes, after "
                    "%llu bytes of the sliding-window layers' pool)", (unsigned long long)bytes, s->cfg.block_size,
                    per_block, (unsigned long long)local);
        return 0;
    }
    return n > (1u << 30) ? 1 << 30 : (int)n;
}

/* Loads the model and builds the engine from s->cfg. */
static int load_engine(struct slm_server *s, char *err)
{
    struct slm_service_opts so = {.model = s->cfg.model, .backend = s->cfg.backend, .threads = s->cfg.threads,
                                  .gpu_fraction = s->cfg.gpu_memory_fraction, .chat_template = s->cfg.chat_template,
                                  .progress = isatty(STDERR_FILENO) ? slm_service_tty_progress : NULL};
    int rc = slm_service_load(&s->svc, &so, err);
    if (rc) return rc;
    /* backend = auto: the defaults of the backend it resolved to (an explicit one's are set already) */
    if (slm_config_backend_defaults(&s->cfg, s->svc.be->ops->name, err)) return -EINVAL;
    int n_ctx = slm_service_ctx(s->svc.model, s->cfg.ctx_size);
    if (slm_service_check_ctx(s->svc.model, s->cfg.ctx_size, s->cfg.force_ctx, err)) return -EINVAL;
    int n_blocks = kv_blocks(s, n_ctx, err);
    if (!n_blocks) return -EINVAL;
    s->eo = (struct slm_engine_opts){.n_blocks = n_blocks, .block_size = s->cfg.block_size,
                                     .max_batch_tokens = s->cfg.max_batch_tokens, .max_seqs = s->cfg.max_seqs,
                                     .n_ctx = n_ctx, .overlap = s->cfg.overlap_steps,
                                     .spin_us = s->cfg.pass_spin_us};
    if (!(s->engine = slm_engine_create(s->svc.model, s->svc.tok, &s->eo, err))) return -ENOMEM;
    char be_desc[96], kv_desc[160], overlap[64] = "";
    if (s->cfg.overlap_steps && s->cfg.pass_spin_us)
        snprintf(overlap, sizeof overlap, ", overlapped (its threads polling %d us)", s->cfg.pass_spin_us);
    else if (s->cfg.overlap_steps)
        snprintf(overlap, sizeof overlap, ", overlapped");
    slm_service_backend_desc(&s->svc, be_desc, sizeof be_desc);
    const struct slm_model *m = s->svc.model;
    slm_engine_kv_desc(m, &s->eo, kv_desc, sizeof kv_desc);
    slm_log(SLM_LOG_INFO, "model %s: %s, %d layers, vocab %d, context %d; %s; "
            "KV cache %s; %d tokens and %d sequences per step%s; chat template %s",
            s->svc.model_path, m->cfg.arch_name, m->cfg.n_layer, m->cfg.n_vocab, n_ctx, be_desc, kv_desc,
            s->cfg.max_batch_tokens, s->cfg.max_seqs, overlap,
            s->svc.chat_fmt >= 0 ? slm_chat_format_name(s->svc.chat_fmt) : "none");
    return 0;
}

static void unload_engine(struct slm_server *s)
{
    slm_engine_destroy(&s->engine);
    slm_service_unload(&s->svc);
}

/* The real engine behind struct slm_server_ops. */
static int64_t engine_add(struct slm_server *s, const struct slm_request *r, char *err)
{
    return slm_engine_add(s->engine, r, err);
}

static int engine_cancel(struct slm_server *s, int64_t id)
{
    return slm_engine_cancel(s->engine, id);
}

static int engine_step(struct slm_server *s, slm_engine_event_fn fn, void *ctx)
{
    return slm_engine_step(s->engine, fn, ctx);
}

static int engine_n_unfinished(struct slm_server *s)
{
    return slm_engine_n_unfinished(s->engine);
}

static void engine_counts(struct slm_server *s, struct slm_engine_counts *out)
{
    slm_engine_counts(s->engine, out);
}

const struct slm_server_ops slm_server_engine_ops = {
    .add = engine_add, .cancel = engine_cancel, .step = engine_step,
    .n_unfinished = engine_n_unfinished, .counts = engine_counts,
};

static int poll_clients(struct slm_server *s);
static int set_all_flags(struct slm_server *s, uint32_t flags);

/* Between steps and while idle-spinning: takes the waiting submissions, unless the I/O thread
 * holds poll_lock just then (the next look is a step or a spin away). */
static int engine_poll(struct slm_server *s)
{
    if (pthread_mutex_trylock(&s->poll_lock)) return 0;
    int took = poll_clients(s);
    pthread_mutex_unlock(&s->poll_lock);
    return took;
}

/* Reads (and so resets) an eventfd or timerfd that epoll said is readable. EAGAIN (another
 * reader was first) and EINTR are expected; anything else is logged. */
static void drain_counter_fd(int fd, const char *what)
{
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN && errno != EINTR)
        slm_log(SLM_LOG_WARNING, "reading the %s: %s", what, strerror(errno));
}

/* Once the engine is idle, hands the heap's free pages back to the kernel (glibc keeps what
 * a burst freed: a flood of requests that were cancelled left RSS at its peak), at most once a
 * second and only after work, so that a busy daemon never pays for it. */
static void trim_when_idle(double *last_trim, int *worked)
{
    double t = now_s();
    if (!*worked || t - *last_trim < 1.0) return;
    malloc_trim(0);
    *last_trim = t;
    *worked = 0;
}

/* 1 when c is still one of s's connections (poll_lock held): an epoll event names a connection
 * by its pointer, and the I/O thread may have closed it between epoll_wait and the lock. */
static int is_client(const struct slm_server *s, const struct slm_conn *c)
{
    for (int k = 0; k < s->n_clients; k++)
        if (s->clients[k] == c) return 1;
    return 0;
}

#define BELL_EVENTS 64

/* Reads what is pending on bell_epoll_fd without waiting (poll_lock held): the doorbells (at
 * most SLM_DOORBELL_DRAIN_MAX packets a socket, BELL_EVENTS sockets a call; what is left keeps
 * its socket readable for the next call) and the kick's count. A hung-up socket stays readable:
 * it is taken out of the set, and the I/O thread, woken by the same hang-up, closes it. */
static void read_bells(struct slm_server *s)
{
    struct epoll_event evs[BELL_EVENTS];
    int n = epoll_wait(s->bell_epoll_fd, evs, BELL_EVENTS, 0);
    for (int i = 0; i < n; i++) {
        struct slm_conn *c = evs[i].data.ptr;
        if (!c) drain_counter_fd(s->engine_wake_fd, "engine thread's wake-up eventfd");
        else if (is_client(s, c) && slm_doorbell_drain(slm_conn_fd(c)) < 0)
            epoll_ctl(s->bell_epoll_fd, EPOLL_CTL_DEL, slm_conn_fd(c), NULL);
    }
}

/* The engine thread's idle sleep, until a doorbell, a kick or (only while something needs
 * looking at later) a tick. The doorbell wakes this thread directly: one wake-up between a
 * client's submission and the step that answers it (docs/protocol.md, "Waking").
 *   1. Under poll_lock: the doorbells of earlier wake-ups are read (read_bells); NEED_WAKEUP
 *      is set in every ready client's header, each followed by a fence and a look at its ring
 *      (slm_daemon_prepare_sleep): a submission found means no sleep. bell_armed tells the I/O
 *      thread to set the flag on a client that completes its handshake meanwhile.
 *   2. engine_sleeping = 1, fence, then a last look at what a kick announces (engine_quit, an
 *      unfinished request): slm_server_kick's Dekker pair.
 *   3. epoll_wait on bell_epoll_fd. No timeout unless a client has completions waiting for room
 *      in its ring (they are flushed by polling; the client rings no doorbell for them), a
 *      reload waits, or systemd's watchdog wants pings: nothing else makes work for this thread
 *      without a doorbell or a kick, so a lost wakeup would show as a hang, not as a delay.
 *   4. Under poll_lock: the rings polled at once, then NEED_WAKEUP cleared. The doorbell that
 *      woke it is read at the next sleep (step 1), off the path to the first event.
 * Returns 1 when it slept, 0 when it found work first. */
static int engine_sleep(struct slm_server *s)
{
    int tick = s->watchdog_usec != 0;
    pthread_mutex_lock(&s->poll_lock);
    read_bells(s);
    if (s->reload_pending) {
        tick = 1;   /* the rings wait for the new engine: no doorbells asked */
    } else if (set_all_flags(s, SLM_SHM_NEED_WAKEUP)) {
        set_all_flags(s, 0);
        pthread_mutex_unlock(&s->poll_lock);
        return 0;   /* a submission came in meanwhile: the loop takes it */
    } else {
        s->bell_armed = 1;
    }
    for (int k = 0; k < s->n_clients && !tick; k++) tick = slm_conn_has_pending(s->clients[k]);
    pthread_mutex_unlock(&s->poll_lock);

    struct epoll_event ev;
    int slept = 0;
    __atomic_store_n(&s->engine_sleeping, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&s->engine_quit, __ATOMIC_RELAXED) && s->ops->n_unfinished(s) == 0) {
        slept = 1;
        if (epoll_wait(s->bell_epoll_fd, &ev, 1, tick ? TICK_MS : -1) < 0 && errno != EINTR)
            slm_log(SLM_LOG_ERR, "epoll_wait (engine thread): %s", strerror(errno));
    }
    __atomic_store_n(&s->engine_sleeping, 0, __ATOMIC_RELAXED);

    pthread_mutex_lock(&s->poll_lock);
    poll_clients(s);
    if (s->bell_armed) set_all_flags(s, 0);
    s->bell_armed = 0;
    pthread_mutex_unlock(&s->poll_lock);
    return slept;
}

static void *engine_main(void *arg)
{
    struct slm_server *s = arg;
    double last_ping = 0, last_trim = 0;
    int worked = 0, woken = 0;
    for (;;) {
        int rc = s->ops->step(s, slm_conn_on_event, s);
        woken |= slm_conn_wake_deferred(s) > 0;
        if (rc < 0) slm_log(SLM_LOG_ERR, "engine step failed: %s", strerror(-rc));
        double t = now_s();
        if (s->watchdog_usec && t - last_ping >= (double)s->watchdog_usec * 1e-6 / 2) {
            sd_notify(0, "WATCHDOG=1");   /* from this loop, so a stuck engine misses it */
            last_ping = t;
        }
        /* Every step, not only when idle: a flood of requests must not keep the thread from
         * stopping (stop_engine_thread). What is left unfinished is cancelled by then; the
         * caller reaps it (reap_after_stop). */
        if (__atomic_load_n(&s->engine_quit, __ATOMIC_ACQUIRE)) break;
        engine_poll(s);
        if (rc > 0 || s->ops->n_unfinished(s) > 0) {
            worked = 1;
            continue;
        }
        /* Idle: keep taking submissions for spin-us, then sleep. First, when this thread was
         * woken by a doorbell or itself woke a sleeping client (FUTEX_WAKE) since it last
         * spun, yield the CPU once: the scheduler likes to put a woken thread on its waker's
         * CPU (wake-affine), so that client may well be waiting for this CPU, and spinning
         * here would keep it from reading its events until the spin ends; on a loaded machine
         * that was most of the round trip (docs/performance.md, "The doorbell wakes the engine
         * thread"). Not otherwise: a client that submits back to back spins on another CPU,
         * and yielding to some other process would only delay the next catch. */
        if (woken) sched_yield();
        woken = 0;
        double end = now_s() + s->cfg.spin_us * 1e-6;
        while (s->ops->n_unfinished(s) == 0 && !__atomic_load_n(&s->engine_quit, __ATOMIC_RELAXED) && now_s() < end)
            if (!engine_poll(s)) slm_cpu_relax();
        if (s->ops->n_unfinished(s) > 0 || __atomic_load_n(&s->engine_quit, __ATOMIC_ACQUIRE)) continue;
        trim_when_idle(&last_trim, &worked);
        woken = engine_sleep(s);
    }
    return NULL;
}

static int start_engine_thread(struct slm_server *s, char *err)
{
    s->engine_quit = 0;
    int rc = pthread_create(&s->engine_thread, NULL, engine_main, s);
    if (rc) {
        slm_err_set(err, "cannot start the engine thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(s->engine_thread, "slmd-engine");   /* for top -H, strace and the tests */
    return 0;
}

/* Called without poll_lock: the engine thread takes it to sleep and to poll. */
static void stop_engine_thread(struct slm_server *s)
{
    __atomic_store_n(&s->engine_quit, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    if (write(s->engine_wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        slm_log(SLM_LOG_WARNING, "waking the engine thread: %s", strerror(errno));
    pthread_join(s->engine_thread, NULL);
}

/* After the engine thread stopped with every client closed: the requests left are all
 * cancelled, and one step reports their finish (no forward pass runs for a cancelled request),
 * which frees what each holds of its connection. A second step only if the first ran a pass
 * for something not cancelled (it cannot happen: every client was closed first). */
static void reap_after_stop(struct slm_server *s)
{
    for (int i = 0; i < 2 && s->ops->n_unfinished(s) > 0; i++) {
        int rc = s->ops->step(s, slm_conn_on_event, s);
        slm_conn_wake_deferred(s);
        if (rc < 0) break;
    }
}

/* ---- the socket */

/* The socket file's group, then its mode: a socket bound with no permission bits (open_socket)
 * is reachable by no one but root until both are set. */
static int apply_socket_access(const struct slm_server *s, char *err)
{
    if (s->cfg.socket_group[0]) {
        long long gid;
        char e2[SLM_ERR_LEN];
        if (slm_parse_int(s->cfg.socket_group, 0, 0xfffffffell, &gid, e2)) {
            struct group *g = getgrnam(s->cfg.socket_group);
            if (!g) {
                slm_err_set(err, "socket-group: '%s' is not a known group", s->cfg.socket_group);
                return -EINVAL;
            }
            gid = g->gr_gid;
        }
        if (chown(s->socket_path, (uid_t)-1, (gid_t)gid)) {
            slm_err_set(err, "%s: chown to group %lld: %s", s->socket_path, gid, strerror(errno));
            return -errno;
        }
    }
    if (chmod(s->socket_path, s->cfg.socket_mode)) {
        slm_err_set(err, "%s: chmod %04o: %s", s->socket_path, s->cfg.socket_mode, strerror(errno));
        return -errno;
    }
    return 0;
}

/* Takes the socket from systemd, or binds our own. */
static int open_socket(struct slm_server *s, char *err)
{
    slm_config_socket_path(&s->cfg, s->socket_path, sizeof s->socket_path);
    int n = sd_listen_fds(1);
    if (n > 1) {
        slm_err_set(err, "systemd passed %d sockets; slmd takes one", n);
        return -EINVAL;
    }
    if (n == 1) {
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
            slm_err_set(err, "the socket systemd passed is not a listening Unix SOCK_SEQPACKET socket");
            return -EINVAL;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        s->listen_fd = fd;
        s->socket_activated = 1;
        slm_log(SLM_LOG_INFO, "listening on the socket systemd passed");
        return 0;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(s->socket_path) >= sizeof a.sun_path) {
        slm_err_set(err, "socket path %s is longer than %zu bytes", s->socket_path, sizeof a.sun_path - 1);
        return -ENAMETOOLONG;
    }
    strcpy(a.sun_path, s->socket_path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        slm_err_set(err, "socket: %s", strerror(errno));
        return -errno;
    }
    /* A socket file left by a daemon that died: remove it only if nobody answers on it. */
    struct stat st;
    if (lstat(s->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            slm_err_set(err, "%s exists and is not a socket", s->socket_path);
            close(fd);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
        if (probe >= 0) close(probe);
        if (live) {
            slm_err_set(err, "%s: another slmd is already listening there", s->socket_path);
            close(fd);
            return -EADDRINUSE;
        }
        unlink(s->socket_path);
    }
    /* The file bind creates takes its mode from the umask: none, so that nobody can connect
     * with the umask's mode before apply_socket_access sets the group and the mode. No other
     * thread creates files meanwhile (the engine thread starts later). */
    mode_t umask_was = umask(0777);
    int bound = bind(fd, (struct sockaddr *)&a, sizeof a);
    int bind_errno = errno;
    umask(umask_was);
    if (bound || listen(fd, 128)) {
        int e = bound ? bind_errno : errno;
        slm_err_set(err, "%s: %s%s", s->socket_path, strerror(e),
                    s->cfg.socket[0] ? "" : " (the default socket: start the service, systemctl start slmd, or "
                                            "give one: slmd serve --socket /tmp/slmd.sock)");
        close(fd);
        return -e;
    }
    s->listen_fd = fd;
    int rc = apply_socket_access(s, err);
    if (rc) return rc;
    slm_log(SLM_LOG_INFO, "listening on %s (mode %04o)", s->socket_path, s->cfg.socket_mode);
    return 0;
}

/* ---- the I/O loop */

static int add_fd(struct slm_server *s, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/* c finished its handshake (poll_lock held): from now on its socket carries doorbells, which
 * wake the engine thread (bell_epoll_fd), and its hang-up, which wakes this thread (EPOLLRDHUP;
 * EPOLLHUP and EPOLLERR always come): the doorbells no longer wake this thread. On failure
 * the connection is shut down, and its hang-up closes it. */
static void hand_to_engine(struct slm_server *s, struct slm_conn *c)
{
    int fd = slm_conn_fd(c);
    struct epoll_event bell = {.events = EPOLLIN, .data.ptr = c};
    struct epoll_event hangup = {.events = EPOLLRDHUP, .data.u64 = (uint64_t)(uintptr_t)c};
    if (epoll_ctl(s->bell_epoll_fd, EPOLL_CTL_ADD, fd, &bell) || epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, fd, &hangup)) {
        slm_log(SLM_LOG_WARNING, "a connection's doorbell: epoll_ctl: %s; disconnecting it", strerror(errno));
        shutdown(fd, SHUT_RDWR);
    }
}

static void remove_client(struct slm_server *s, int k)
{
    struct slm_conn *c = s->clients[k];
    epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, slm_conn_fd(c), NULL);
    epoll_ctl(s->bell_epoll_fd, EPOLL_CTL_DEL, slm_conn_fd(c), NULL);   /* ENOENT before the handshake */
    slm_conn_close(s, c);
    s->clients[k] = s->clients[--s->n_clients];
}

/* The oldest connection still in its handshake (not refused unless `refused`), of uid unless
 * uid is -1, other than `except`; its index, or -1. */
static int oldest_handshake(const struct slm_server *s, long long uid, const struct slm_conn *except, int refused)
{
    int best = -1;
    for (int k = 0; k < s->n_clients; k++) {
        const struct slm_conn *c = s->clients[k];
        int st = slm_conn_state(c);
        if (c == except || st == SLM_CONN_READY || (st == SLM_CONN_REFUSED && !refused)) continue;
        if (uid >= 0 && (long long)slm_conn_uid(c) != uid) continue;
        if (best < 0 || slm_conn_since(c) < slm_conn_since(s->clients[best])) best = k;
    }
    return best;
}

/* One line a second at most, however fast connections are refused: the first of each second,
 * and how many were not logged before it. */
static void log_refusal(struct slm_server *s, uid_t uid, const char *why)
{
    double t = now_s();
    if (t - s->refuse_log_s < 1.0) {
        s->refusals_unlogged++;
        return;
    }
    if (s->refusals_unlogged)
        slm_log(SLM_LOG_NOTICE, "refused a connection of uid %u: %s (and %d other refusals unlogged)", (unsigned)uid,
                why, s->refusals_unlogged);
    else
        slm_log(SLM_LOG_NOTICE, "refused a connection of uid %u: %s", (unsigned)uid, why);
    s->refuse_log_s = t;
    s->refusals_unlogged = 0;
}

/* The policy for a connection just accepted (c, the last of s->clients), from its peer's
 * credentials alone, before it sends anything: refused with a reason (the allow-list, a drain,
 * max-clients, max-clients-per-uid), or let in to its handshake. Connections in their
 * handshake do not count against max-clients: at most max-clients of them wait, and the oldest
 * makes room for a new one, as the oldest of the same user does at max-clients-per-uid, so
 * connections that never send HELLO cannot lock anyone out. */
static void admit(struct slm_server *s, struct slm_conn *c)
{
    char why[SLM_REASON_LEN];
    uid_t uid = slm_conn_uid(c);
    if (!slm_conn_allowed(s, c)) {
        log_refusal(s, uid, "not in the allow-list");
        slm_conn_refuse(c, -EACCES, "this user is not in slmd's allow-list (allow-uids, allow-gids)");
        return;
    }
    if (s->draining) {
        slm_conn_refuse(c, -ESHUTDOWN, "slmd is stopping");
        return;
    }
    if (s->n_ready >= s->cfg.max_clients) {
        snprintf(why, sizeof why, "slmd has %d clients connected, its max-clients", s->n_ready);
        log_refusal(s, uid, why);
        slm_conn_refuse(c, -EUSERS, why);
        return;
    }
    int of_uid = 0, per_uid = s->cfg.max_clients_per_uid ? s->cfg.max_clients_per_uid : s->cfg.max_clients;
    for (int k = 0; k < s->n_clients; k++)
        of_uid += s->clients[k] != c && slm_conn_uid(s->clients[k]) == uid &&
                  slm_conn_state(s->clients[k]) != SLM_CONN_REFUSED;
    if (of_uid >= per_uid) {
        int k = oldest_handshake(s, uid, c, 0);
        if (k < 0) {
            snprintf(why, sizeof why, "uid %u has %d connections to slmd, its max-clients-per-uid", (unsigned)uid,
                     of_uid);
            log_refusal(s, uid, why);
            slm_conn_refuse(c, -EUSERS, why);
            return;
        }
        slm_log(SLM_LOG_DEBUG, "max-clients-per-uid: closing uid %u's oldest connection without HELLO", (unsigned)uid);
        remove_client(s, k);
    }
}

/* At most max-clients connections wait in their handshake (refused ones included): the
 * oldest gives way. */
static void cap_handshakes(struct slm_server *s, const struct slm_conn *c)
{
    int waiting = 0;
    for (int k = 0; k < s->n_clients; k++) waiting += slm_conn_state(s->clients[k]) != SLM_CONN_READY;
    for (; waiting > s->cfg.max_clients; waiting--) {
        int k = oldest_handshake(s, -1, c, 1);
        if (k < 0) break;
        remove_client(s, k);
    }
}

/* accept failed with something other than "nothing to accept" (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM...): the listening socket stays readable, so stop watching it for a while (10 ms,
 * doubling to 1 s while it goes on failing), and log at most one line a second. */
static void pause_accept(struct slm_server *s, int err)
{
    double t = now_s();
    s->accept_backoff_ms = s->accept_backoff_ms ? 2 * s->accept_backoff_ms : 10;
    if (s->accept_backoff_ms > 1000) s->accept_backoff_ms = 1000;
    s->accept_resume_s = t + s->accept_backoff_ms * 1e-3;
    struct epoll_event ev = {.events = 0, .data.u64 = TAG_LISTEN};
    if (!s->accept_paused) epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, s->listen_fd, &ev);
    s->accept_paused = 1;
    s->accept_errors++;
    if (t - s->accept_log_s >= 1.0) {
        slm_log(SLM_LOG_WARNING, "accept: %s (%d time%s since the last line); accepting again in %d ms",
                strerror(err), s->accept_errors, s->accept_errors == 1 ? "" : "s", s->accept_backoff_ms);
        s->accept_log_s = t;
        s->accept_errors = 0;
    }
}

static void resume_accept(struct slm_server *s)
{
    if (!s->accept_paused || now_s() < s->accept_resume_s) return;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    if (epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, s->listen_fd, &ev) == 0) s->accept_paused = 0;
}

static void accept_clients(struct slm_server *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
            pause_accept(s, errno);
            return;
        }
        s->accept_backoff_ms = 0;
        if (s->n_clients == s->cap_clients) {
            int cap = s->cap_clients ? 2 * s->cap_clients : 16;
            struct slm_conn **p = realloc(s->clients, (size_t)cap * sizeof *p);
            if (!p) {
                close(fd);
                continue;
            }
            s->clients = p;
            s->cap_clients = cap;
        }
        struct slm_conn *c = slm_conn_new(s, fd);
        if (!c) continue;
        if (add_fd(s, fd, (uint64_t)(uintptr_t)c)) {
            slm_conn_close(s, c);
            continue;
        }
        s->clients[s->n_clients++] = c;
        admit(s, c);
        cap_handshakes(s, c);
    }
}

/* Closes the connections that sent no HELLO within handshake-timeout, and those refused at
 * accept whose HELLO did not come within a second. */
static void expire_handshakes(struct slm_server *s)
{
    double t = now_s();
    int n = 0;
    for (int k = s->n_clients - 1; k >= 0; k--) {
        int st = slm_conn_state(s->clients[k]);
        double limit = st == SLM_CONN_REFUSED ? 1.0 : (double)s->cfg.handshake_timeout;
        if (st != SLM_CONN_READY && t - slm_conn_since(s->clients[k]) > limit) {
            n += st == SLM_CONN_HANDSHAKE;
            remove_client(s, k);
        }
    }
    if (n) slm_log(SLM_LOG_INFO, "closed %d connection%s that sent no HELLO within %d s (handshake-timeout)", n,
                   n == 1 ? "" : "s", s->cfg.handshake_timeout);
}

/* Updates the generation rate (once a second) and sends STATUS= when its text changed: at most
 * once a second, unless `now` (a change of state: ready, reloading, draining). */
static void notify_status(struct slm_server *s, int now)
{
    uint64_t gen = __atomic_load_n(&s->n_tokens_generated, __ATOMIC_RELAXED);
    double t = now_s();
    if (t - s->rate_t >= 1.0) {
        double rate = (double)(gen - (uint64_t)s->rate_tokens) / (t - s->rate_t);
        s->tokens_per_s = s->rate_t ? 0.5 * s->tokens_per_s + 0.5 * rate : rate;
        s->rate_t = t;
        s->rate_tokens = (double)gen;
    }
    if (!now && t - s->status_t < 1.0) return;
    char status[sizeof s->status];
    snprintf(status, sizeof status, "STATUS=%s%s%.80s: %d clients, %d requests, %.1f tokens/s",
             s->draining ? "draining; " : "", s->reload_pending ? "reloading; " : "",
             strrchr(s->svc.model_path, '/') ? strrchr(s->svc.model_path, '/') + 1 : s->svc.model_path, s->n_ready,
             s->ops->n_unfinished(s), s->tokens_per_s);
    if (!strcmp(status, s->status)) return;
    memcpy(s->status, status, sizeof status);
    s->status_t = t;
    sd_notify(0, status);
}

/* Polls every client's submission ring; returns the submissions taken. */
static int poll_clients(struct slm_server *s)
{
    int n = 0;
    for (int k = 0; k < s->n_clients; k++) n += slm_conn_poll(s, s->clients[k]);
    return n;
}

/* Tells every client to ring the doorbell; 1 if a submission slipped in meanwhile. */
static int set_all_flags(struct slm_server *s, uint32_t flags)
{
    int pending = 0;
    for (int k = 0; k < s->n_clients; k++) pending |= slm_conn_set_flags(s->clients[k], flags);
    return pending;
}

static int handle_signal(struct slm_server *s, double *drain_deadline);
static void rebuild_engine(struct slm_server *s);

static int io_loop(struct slm_server *s)
{
    double drain_deadline = 0;
    int cancelled = 0;   /* the drain's deadline passed and every request was cancelled */
    pthread_mutex_lock(&s->poll_lock);   /* held but while sleeping in epoll_wait */
    for (;;) {
        /* The engine thread takes the submissions and sleeps on the doorbells itself
         * (engine_sleep): this thread wakes for connections, handshakes, hang-ups, signals and
         * the timer tick. */
        struct epoll_event evs[64];
        pthread_mutex_unlock(&s->poll_lock);
        int n = epoll_wait(s->epoll_fd, evs, 64, TICK_MS);
        pthread_mutex_lock(&s->poll_lock);
        if (n < 0 && errno != EINTR) {
            slm_log(SLM_LOG_ERR, "epoll_wait: %s", strerror(errno));
            return -errno;
        }
        /* The clients' sockets first: accepting and the timer's expiry may close connections
         * (the oldest waiting for their handshake), which must not be in evs any more. */
        int accept_now = 0, tick = 0;
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == TAG_LISTEN) {
                accept_now = 1;
            } else if (tag == TAG_SIGNAL) {
                if (handle_signal(s, &drain_deadline)) return 0;
            } else if (tag == TAG_TIMER) {
                tick = 1;
            } else {
                struct slm_conn *c = (struct slm_conn *)(uintptr_t)tag;
                int rc = slm_conn_on_socket(s, c, evs[i].events);
                if (rc < 0) {
                    for (int k = 0; k < s->n_clients; k++)
                        if (s->clients[k] == c) {
                            s->clients[k] = s->clients[--s->n_clients];
                            break;
                        }
                } else if (rc == 1) {
                    hand_to_engine(s, c);
                }
            }
        }
        if (accept_now) accept_clients(s);
        if (tick) {
            drain_counter_fd(s->timer_fd, "status timerfd");
            expire_handshakes(s);
            notify_status(s, 0);
        }
        resume_accept(s);
        if (s->reload_pending && !s->draining && s->ops->n_unfinished(s) == 0) rebuild_engine(s);
        if (s->draining) {
            if (s->ops->n_unfinished(s) == 0) return 0;
            if (now_s() >= drain_deadline && !cancelled) {
                slm_log(SLM_LOG_NOTICE, "shutdown-timeout passed: cancelling %d running requests",
                        s->ops->n_unfinished(s));
                for (int k = 0; k < s->n_clients; k++) slm_conn_cancel_all(s, s->clients[k]);
                cancelled = 1;
                /* The cancelled requests finish in the engine's next step; should that step
                 * not come, stop anyway (slm_server_run cancels and reaps what is left). */
                drain_deadline = now_s() + DRAIN_GRACE_S;
            } else if (now_s() >= drain_deadline) {
                slm_log(SLM_LOG_WARNING, "%d requests still unfinished %d s after cancelling them; stopping",
                        s->ops->n_unfinished(s), DRAIN_GRACE_S);
                return 0;
            }
        }
    }
}

static int reload(struct slm_server *s);

static int handle_signal(struct slm_server *s, double *drain_deadline)
{
    struct signalfd_siginfo si;
    while (read(s->signal_fd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            reload(s);
            continue;
        }
        if (s->draining) {   /* a second SIGTERM/SIGINT: stop now; slm_server_run cancels what runs */
            slm_log(SLM_LOG_NOTICE, "second signal: stopping now, cancelling %d requests", s->ops->n_unfinished(s));
            return 1;
        }
        if (s->reload_pending) slm_log(SLM_LOG_NOTICE, "stopping: the pending reload is dropped");
        s->reload_pending = 0;
        sd_notify(0, "STOPPING=1");
        slm_log(SLM_LOG_NOTICE, "stopping: %d requests to finish within %d s", s->ops->n_unfinished(s),
                s->cfg.shutdown_timeout);
        s->draining = 1;
        *drain_deadline = now_s() + s->cfg.shutdown_timeout;
        set_all_flags(s, SLM_SHM_CLOSING);   /* new connections are still taken, to be refused */
        notify_status(s, 1);
    }
    return 0;
}

/* SIGHUP: re-read the configuration. What the engine does not depend on applies at once; when
 * the engine's settings (or the model) changed, the I/O loop stops taking submissions (they
 * wait in the rings), lets the running requests finish, and then rebuild_engine swaps the
 * engine. Connected clients stay connected throughout. */
static int reload(struct slm_server *s)
{
    char err[SLM_ERR_LEN];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    struct slm_config *next = &s->next_cfg;
    if (slm_config_from_args(next, s->argc, s->argv, err)) {
        slm_log(SLM_LOG_ERR, "reload: %s; keeping the running configuration", err);
        slm_log_set_level(s->cfg.log_level);
        if (!s->reload_pending) sd_notify(0, "READY=1");
        return -EINVAL;
    }
    const struct slm_config *cur = &s->cfg;
    /* backend = auto stays on what it resolved to; compare with that backend's defaults */
    if (!strcmp(next->backend, cur->backend) && s->svc.be &&
        slm_config_backend_defaults(next, s->svc.be->ops->name, err)) {
        slm_log(SLM_LOG_ERR, "reload: %s; keeping the running configuration", err);
        slm_log_set_level(s->cfg.log_level);
        if (!s->reload_pending) sd_notify(0, "READY=1");
        return -EINVAL;
    }
    int engine_changed = strcmp(next->model, cur->model) || next->threads != cur->threads ||
                         next->ctx_size != cur->ctx_size || next->max_batch_tokens != cur->max_batch_tokens ||
                         next->max_seqs != cur->max_seqs || next->kv_cache_mem != cur->kv_cache_mem ||
                         next->block_size != cur->block_size || strcmp(next->backend, cur->backend) ||
                         next->gpu_memory_fraction != cur->gpu_memory_fraction ||
                         next->overlap_steps != cur->overlap_steps || next->pass_spin_us != cur->pass_spin_us;
    if (!s->socket_activated && (cur->socket_mode != next->socket_mode || strcmp(cur->socket_group, next->socket_group))) {
        struct slm_config old = s->cfg;
        s->cfg.socket_mode = next->socket_mode;
        memcpy(s->cfg.socket_group, next->socket_group, sizeof s->cfg.socket_group);
        if (apply_socket_access(s, err)) {
            slm_log(SLM_LOG_ERR, "reload: %s", err);
            s->cfg = old;
        }
    }
    if (engine_changed) {
        s->reload_pending = 1;   /* the loop calls rebuild_engine once the engine is empty */
        slm_log(SLM_LOG_NOTICE, "reload: the engine is rebuilt once %d running requests finish",
                s->ops->n_unfinished(s));
        notify_status(s, 1);
        return 0;
    }
    s->reload_pending = 0;   /* a later SIGHUP reverted what an earlier one changed */
    s->cfg = *next;
    slm_log_set_level(s->cfg.log_level);
    slm_log(SLM_LOG_NOTICE, "configuration reloaded");
    sd_notify(0, "READY=1");
    notify_status(s, 1);
    return 0;
}

/* The second half of a reload that changed the engine: called with no request unfinished. */
static void rebuild_engine(struct slm_server *s)
{
    char err[SLM_ERR_LEN];
    /* The engine thread takes poll_lock to sleep; reload_pending keeps it from taking
     * submissions until the new engine runs. */
    pthread_mutex_unlock(&s->poll_lock);
    stop_engine_thread(s);
    pthread_mutex_lock(&s->poll_lock);
    s->reload_pending = 0;
    struct slm_server keep = *s;
    struct slm_config old = s->cfg;
    s->cfg = s->next_cfg;
    slm_log_set_level(s->cfg.log_level);
    s->svc = (struct slm_service){.chat_fmt = -1};
    s->engine = NULL;
    if (load_engine(s, err)) {
        slm_log(SLM_LOG_ERR, "reload: %s; keeping the running model and engine", err);
        unload_engine(s);
        s->svc = keep.svc, s->engine = keep.engine, s->eo = keep.eo;
        s->cfg = old;
        slm_log_set_level(s->cfg.log_level);
    } else {
        slm_engine_destroy(&keep.engine);
        slm_service_unload(&keep.svc);
        slm_log(SLM_LOG_NOTICE, "configuration reloaded (engine rebuilt)");
    }
    if (start_engine_thread(s, err)) slm_log(SLM_LOG_ERR, "reload: %s", err);
    sd_notify(0, "READY=1");
    notify_status(s, 1);
}

int slm_server_run(struct slm_server *s, char *err)
{
    int rc = -EINVAL;
    s->listen_fd = s->epoll_fd = s->signal_fd = s->timer_fd = s->bell_epoll_fd = s->engine_wake_fd = -1;
    pthread_mutex_init(&s->poll_lock, NULL);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if ((rc = open_socket(s, err))) goto out;
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    s->bell_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->engine_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct itimerspec its = {.it_interval = {0, TICK_MS * 1000000L}, .it_value = {0, TICK_MS * 1000000L}};
    struct epoll_event kick = {.events = EPOLLIN, .data.ptr = NULL};   /* engine_sleep: NULL is the kick */
    if (s->epoll_fd < 0 || s->signal_fd < 0 || s->timer_fd < 0 || s->bell_epoll_fd < 0 || s->engine_wake_fd < 0 ||
        timerfd_settime(s->timer_fd, 0, &its, NULL) || add_fd(s, s->listen_fd, TAG_LISTEN) ||
        add_fd(s, s->signal_fd, TAG_SIGNAL) || add_fd(s, s->timer_fd, TAG_TIMER) ||
        epoll_ctl(s->bell_epoll_fd, EPOLL_CTL_ADD, s->engine_wake_fd, &kick)) {
        rc = -errno;
        slm_err_set(err, "cannot set up the event loop: %s", strerror(errno));
        goto out;
    }
    if (sd_watchdog_enabled(0, &s->watchdog_usec) <= 0) s->watchdog_usec = 0;
    if ((rc = start_engine_thread(s, err))) goto out;
    sd_notify(0, "READY=1");
    notify_status(s, 1);
    slm_log(SLM_LOG_NOTICE, "ready");
    rc = io_loop(s);   /* returns with poll_lock held */
    if (rc) slm_err_set(err, "the I/O loop failed: %s", strerror(-rc));
    for (int k = s->n_clients - 1; k >= 0; k--) remove_client(s, k);   /* each cancels its requests */
    pthread_mutex_unlock(&s->poll_lock);
    stop_engine_thread(s);
    reap_after_stop(s);
out:
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        if (!s->socket_activated && s->socket_path[0]) unlink(s->socket_path);
    }
    if (s->epoll_fd >= 0) close(s->epoll_fd);
    if (s->signal_fd >= 0) close(s->signal_fd);
    if (s->timer_fd >= 0) close(s->timer_fd);
    if (s->bell_epoll_fd >= 0) close(s->bell_epoll_fd);
    if (s->engine_wake_fd >= 0) close(s->engine_wake_fd);
    s->listen_fd = s->epoll_fd = s->signal_fd = s->timer_fd = s->bell_epoll_fd = s->engine_wake_fd = -1;
    free(s->clients);
    s->clients = NULL;
    free(s->wake_list);
    s->wake_list = NULL;
    s->cap_wake = 0;
    s->n_clients = s->cap_clients = 0;
    return rc;
}

int slm_cmd_serve(int argc, char **argv)
{
    static struct slm_server srv;
    struct slm_server *s = &srv;
    char err[SLM_ERR_LEN] = "";
    int status = 1;
    s->argc = argc;
    s->argv = argv;
    s->ops = &slm_server_engine_ops;
    int rc = slm_config_from_args(&s->cfg, argc, argv, err);
    if (rc > 0) return 0;
    if (rc < 0) {
        fprintf(stderr, "slmd: %s\n", err);
        return 2;
    }
    slm_log_set_level(s->cfg.log_level);
    s->started_s = now_s();
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);   /* before any thread starts: they inherit it */
    signal(SIGPIPE, SIG_IGN);
    if (load_engine(s, err) == 0 && slm_server_run(s, err) == 0) status = 0;
    if (status && err[0]) fprintf(stderr, "slmd: %s\n", err);
    unload_engine(s);
    slm_log(SLM_LOG_NOTICE, "stopped");
    return status;
}
