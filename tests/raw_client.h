/* tests/raw_client.h - for the black-box daemon tests: starting and stopping `slmd serve`, and a
 * raw client that does the handshake by hand and writes its rings itself, so that a test can
 * send what libslm never would. Include once per test program, after tests/check.h. */
#ifndef SLM_TESTS_RAW_CLIENT_H
#define SLM_TESTS_RAW_CLIENT_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/slm.h"
#include "ipc/handshake.h"
#include "ipc/protocol.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs argv (slmd serve ... --socket sock) with its stderr to log_path when not empty and
 * RLIMIT_NOFILE at nofile when not 0; returns its pid once a client can connect on sock, or
 * -1 (it is killed). */
static inline pid_t raw_start_daemon(const char *const *argv, const char *sock, const char *log_path, int nofile)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (log_path && log_path[0] && !freopen(log_path, "w", stderr)) _exit(126);
        struct rlimit rl = {(rlim_t)nofile, (rlim_t)nofile};
        if (nofile && setrlimit(RLIMIT_NOFILE, &rl)) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    struct slm_client *c = NULL;
    for (int i = 0; i < 300 && slm_connect(sock, "probe", &c) < 0; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return -1;
        usleep(100000);
    }
    if (!c) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    slm_close(&c);
    usleep(200000);   /* the probe's hang-up reaches the daemon: the next case counts from 0 */
    return pid;
}

/* Waits up to `seconds` for pid to exit; its status, or -1 (then it is killed). */
static inline int wait_exit(pid_t pid, double seconds, double *took)
{
    double t0 = now_s();
    int status;
    while (now_s() - t0 < seconds) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *took = now_s() - t0;
            return status;
        }
        usleep(20000);
    }
    *took = now_s() - t0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* 1 when a libslm client of the daemon on sock gets 3 tokens of a default request. */
static inline int raw_generate_ok(const char *sock, const char *name)
{
    struct slm_client *c = NULL;
    if (slm_connect(sock, name, &c) < 0) {
        printf("%s: connect: %s\n", name, slm_last_error());
        return 0;
    }
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 3;
    char *text = NULL;
    int rc = slm_generate(c, "The capital of France is", &p, &text, NULL);
    if (rc) printf("%s: generate: %s\n", name, slm_strerror(rc));
    free(text);
    slm_close(&c);
    return rc == 0;
}

struct raw {
    int fd;
    struct slm_shm shm;
    struct slm_ring sq, cq;
    int n_err;            /* ERROR completions read so far */
    char last_err[128];
};

/* A raw client of the daemon on sock: the handshake by hand (rings of 4096, the default
 * arena), the shared memory mapped. 0 or -1. */
static inline int raw_connect(struct raw *r, const char *sock, const char *name)
{
    char err[256] = "";
    memset(r, 0, sizeof *r);
    r->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof a.sun_path) return -1;
    memcpy(a.sun_path, sock, strlen(sock) + 1);
    struct slm_welcome w;
    int shm_fd = -1;
    if (r->fd < 0 || connect(r->fd, (struct sockaddr *)&a, sizeof a) ||
        slm_hello_send(r->fd, name, 4096, 4096, 0, err) || slm_welcome_recv(r->fd, &w, &shm_fd, err) || w.status ||
        slm_shm_map(&r->shm, shm_fd, w.shm_bytes, err)) {
        printf("%s: handshake failed: %s\n", name, err);
        if (r->fd >= 0) close(r->fd);
        return -1;
    }
    slm_shm_rings(&r->shm, &r->sq, &r->cq);
    return 0;
}

static inline void raw_close(struct raw *r)
{
    slm_shm_unmap(&r->shm);
    close(r->fd);   /* the hang-up */
    r->fd = -1;
}

/* Reads every completion waiting; counts the errors. */
static inline void raw_drain(struct raw *r)
{
    const struct slm_cqe *q;
    while ((q = slm_ring_peek(&r->cq))) {
        if (q->kind == SLM_CQE_ERROR) {
            r->n_err++;
            snprintf(r->last_err, sizeof r->last_err, "%.*s", (int)q->len, (const char *)q->data);
        }
        slm_ring_seen(&r->cq);
    }
}

/* Submits one SQE on a raw client and waits for its answer: 1 for an ERROR (its status into
 * *status, its text into why), 0 for a DATA or DONE, -1 for nothing within 60 s (a request of
 * hundreds of tokens under the sanitizers takes seconds). */
static inline int raw_ask(struct raw *r, struct slm_sqe *q, int *status, char *why, size_t cap)
{
    static uint64_t next = 1000;
    q->user_data = ++next;
    if (slm_ring_push(&r->sq, q)) return -1;
    slm_doorbell_ring(&r->shm, r->fd);
    double t0 = now_s();
    while (now_s() - t0 < 60) {
        const struct slm_cqe *e;
        while ((e = slm_ring_peek(&r->cq))) {
            int kind = e->kind, more = e->flags & SLM_CQE_MORE, match = e->user_data == q->user_data;
            if (match && kind == SLM_CQE_ERROR) {
                *status = e->status;
                snprintf(why, cap, "%.*s", (int)e->len, (const char *)e->data);
            }
            slm_ring_seen(&r->cq);
            if (match && !more && kind != SLM_CQE_TOKEN && kind != SLM_CQE_TEXT && kind != SLM_CQE_TOP &&
                kind != SLM_CQE_PROMPT_LP)
                return kind == SLM_CQE_ERROR;
        }
        slm_wait_cq(&r->shm, &r->cq, 50);
    }
    return -1;
}

#endif
