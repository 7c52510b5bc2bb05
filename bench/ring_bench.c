/*
 * bench/ring_bench.c - what slmd's IPC adds per token, side by side with a Unix socket doing
 * the same exchange, in one run (issue 4; docs/performance.md, "IPC: rings against a socket").
 *
 * The ring column is slmd's own code: slm_server_run (the I/O loop, the engine thread's spin and
 * NEED_WAKEUP sleep, conn.c's handshake, ring polling and completion pushing) serves a
 * libslm client over the real socket and memfd. Only the engine is replaced, by the echo
 * producer of bench/echo/ (a struct slm_server_ops; echo_server.h says what it does): N tokens
 * for a request of N, as fast as the completion ring takes them or one every --pace-ns.
 * slmd cannot select it (no key, no flag).
 * The socket column: two threads of this program over one SOCK_SEQPACKET socketpair; the
 * request is one 128-byte SQE packet, each token one 128-byte CQE packet (one write, one read),
 * then a DONE packet; both sides block in recv as a socket program does.
 *
 * Figures:
 *   tokens/s       one request of --tokens tokens (ring) / --socket-tokens (socket), from
 *                  submit to DONE, the median of three; the consumer checks every token id
 *                  arrives in order;
 *   latency        a stream paced at one token per --pace-ns: the producer stamps each token
 *                  (CLOCK_MONOTONIC) as it hands it to the IPC, the consumer subtracts on receipt;
 *                  a late producer skips ahead rather than bursting (no queue is measured);
 *   round trip     submit of a one-token request until its TOKEN event; "busy": back to back,
 *                  so the daemon's engine thread is within its spin window; "asleep": --gap-us
 *                  between requests, so it sleeps (NEED_WAKEUP, doorbell, futex).
 * Context switches of the consumer thread (getrusage RUSAGE_THREAD) show its sleeps; system calls
 * are counted from outside by tests/test_syscalls.sh (strace).
 *
 * usage: ring_bench [--tokens N] [--socket-tokens N] [--latency-tokens N] [--pace-ns NS]
 *                   [--rtt N] [--gap-us US] [--spin-us US] [--stream-only] [--quiet]
 *        ring_bench --connect SOCKET [--requests R] [--max-tokens N]
 * --stream-only runs just the ring's throughput stream (for strace) and prints the tokens, the
 * stream's window in CLOCK_REALTIME seconds (strace -ttt's clock) and each thread's id.
 * --connect SOCKET streams R concurrent requests of N tokens from a running slmd (real model)
 * and prints the same (tests/test_syscalls.sh).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/echo/echo_server.h"
#include "client/slm.h"
#include "common/log.h"
#include "ipc/protocol.h"

/* ---- statistics */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct dist {
    double p50_us, p99_us;
};

static struct dist dist_of(int64_t *v, int n)
{
    struct dist d = {0, 0};
    if (n <= 0) return d;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    d.p50_us = (double)v[n / 2] * 1e-3;
    d.p99_us = (double)v[(int)((int64_t)n * 99 / 100)] * 1e-3;
    return d;
}

static double median3(const double *v)
{
    double a = v[0], b = v[1], c = v[2];
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

static long thread_csw(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

struct figures {
    double tokens_per_s, csw_per_token;
    struct dist latency, rtt_busy, rtt_asleep;
};

static void fail(const char *what)
{
    fprintf(stderr, "ring_bench: %s\n", what);
    exit(1);
}

/* ---- the ring side: libslm */

static struct slm_params one_token_params(int n)
{
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = n;
    p.temperature = 0;
    return p;
}

/* Streams one request of n tokens; every TOKEN event's id must be its index. Latencies of the
 * first n_lat tokens into lat when not NULL. Returns the seconds from submit to DONE. */
static double ring_stream(struct slm_client *c, int n, int64_t *lat, long *csw)
{
    int32_t prompt = 1;
    struct slm_params p = one_token_params(n);
    echo_server_reset();
    long csw0 = thread_csw();
    int64_t t0 = slm_mono_ns();
    int64_t h = slm_submit_ids(c, &prompt, 1, &p);
    if (h < 0) fail(slm_strerror((int)h));
    struct slm_event ev;
    int got = 0;
    for (;;) {
        int rc = slm_next_event(c, &ev, 10000);
        if (rc != 1) fail(rc ? slm_strerror(rc) : "no event within 10 s");
        if (ev.type == SLM_EVENT_TOKEN) {
            if (lat && ev.token < echo_bench.n_stamp) lat[ev.token] = slm_mono_ns() - echo_bench.stamp[ev.token];
            if (ev.token != got) {
                fprintf(stderr, "ring_bench: token %d arrived as number %d\n", ev.token, got);
                exit(1);
            }
            if (++got % ECHO_CREDIT_EVERY == 0) __atomic_store_n(&echo_bench.consumed, (uint64_t)got, __ATOMIC_RELEASE);
            continue;
        }
        if (ev.type != SLM_EVENT_DONE) fail(ev.message ? ev.message : "an error event");
        break;
    }
    double sec = (double)(slm_mono_ns() - t0) * 1e-9;
    if (got != n) fail("the stream ended early");
    if (csw) *csw = thread_csw() - csw0;
    return sec;
}

/* n one-token requests; the time from submit to its TOKEN event of each into v. */
static void ring_rtt(struct slm_client *c, int n, int gap_us, int64_t *v)
{
    int32_t prompt = 1;
    struct slm_params p = one_token_params(1);
    for (int i = 0; i < n; i++) {
        if (gap_us) usleep((useconds_t)gap_us);
        echo_server_reset();
        int64_t t0 = slm_mono_ns();
        int64_t h = slm_submit_ids(c, &prompt, 1, &p);
        if (h < 0) fail(slm_strerror((int)h));
        struct slm_event ev;
        int rc;
        while ((rc = slm_next_event(c, &ev, 10000)) == 1 && ev.type != SLM_EVENT_TOKEN) {}
        if (rc != 1) fail("no token within 10 s");
        v[i] = slm_mono_ns() - t0;
        while ((rc = slm_next_event(c, &ev, 10000)) == 1 && ev.type != SLM_EVENT_DONE) {}
        if (rc != 1) fail("no DONE within 10 s");
    }
}

/* ---- the socket side: the same exchange, one packet per token */

static int sock_pair[2];

static void *socket_producer(void *arg)
{
    (void)arg;
    struct slm_sqe q;
    while (recv(sock_pair[1], &q, sizeof q, 0) == (ssize_t)sizeof q) {
        struct slm_cqe e = {.kind = SLM_CQE_TOKEN, .user_data = q.user_data, .len = sizeof ECHO_TEXT - 1};
        memcpy(e.data, ECHO_TEXT, sizeof ECHO_TEXT - 1);
        int64_t due = slm_mono_ns();
        for (uint32_t i = 0; i < q.max_tokens; i++) {
            if (echo_bench.pace_ns) {
                while (slm_mono_ns() < due) slm_cpu_relax();
                int64_t t = slm_mono_ns();
                due = due + echo_bench.pace_ns > t ? due + echo_bench.pace_ns : t + echo_bench.pace_ns;   /* no catch-up */
            }
            e.token = (int32_t)i;
            int64_t t = slm_mono_ns();
            memcpy(&e.n_prompt, &t, sizeof t);   /* the stamp travels in the packet */
            if (send(sock_pair[1], &e, sizeof e, 0) != (ssize_t)sizeof e) return NULL;
        }
        struct slm_cqe d = {.kind = SLM_CQE_DONE, .user_data = q.user_data, .token = -1, .finish = SLM_WIRE_LENGTH};
        if (send(sock_pair[1], &d, sizeof d, 0) != (ssize_t)sizeof d) return NULL;
    }
    return NULL;
}

static void socket_request(uint32_t n, uint64_t id)
{
    struct slm_sqe q = {.op = SLM_OP_COMPLETE_IDS, .user_data = id, .max_tokens = n};
    if (send(sock_pair[0], &q, sizeof q, 0) != (ssize_t)sizeof q) fail("socket send");
}

static double socket_stream(uint32_t n, int64_t *lat, long *csw)
{
    long csw0 = thread_csw();
    int64_t t0 = slm_mono_ns();
    socket_request(n, 1);
    struct slm_cqe e;
    for (uint32_t got = 0;; got++) {
        if (recv(sock_pair[0], &e, sizeof e, 0) != (ssize_t)sizeof e) fail("socket recv");
        if (e.kind == SLM_CQE_DONE) {
            if (got != n) fail("the socket stream ended early");
            break;
        }
        if (e.token != (int32_t)got) fail("a socket token out of order");
        if (lat && got < (uint32_t)echo_bench.n_stamp) {
            int64_t t;
            memcpy(&t, &e.n_prompt, sizeof t);
            lat[got] = slm_mono_ns() - t;
        }
    }
    double sec = (double)(slm_mono_ns() - t0) * 1e-9;
    if (csw) *csw = thread_csw() - csw0;
    return sec;
}

static void socket_rtt(int n, int gap_us, int64_t *v)
{
    struct slm_cqe e;
    for (int i = 0; i < n; i++) {
        if (gap_us) usleep((useconds_t)gap_us);
        int64_t t0 = slm_mono_ns();
        socket_request(1, (uint64_t)i + 2);
        if (recv(sock_pair[0], &e, sizeof e, 0) != (ssize_t)sizeof e || e.kind != SLM_CQE_TOKEN) fail("socket rtt");
        v[i] = slm_mono_ns() - t0;
        if (recv(sock_pair[0], &e, sizeof e, 0) != (ssize_t)sizeof e || e.kind != SLM_CQE_DONE) fail("socket rtt");
    }
}

/* ---- a real slmd (--connect), for tests/test_syscalls.sh */

static double real_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);   /* strace -ttt's clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Streams n_req concurrent requests of max_tokens tokens each (greedy, end-of-generation
 * ignored) from the slmd at path; prints the tokens, the window and this thread's id. */
static int real_daemon(const char *path, int n_req, int max_tokens)
{
    struct slm_client *c;
    int rc = slm_connect(path, "ring_bench", &c);
    if (rc < 0) {
        fprintf(stderr, "ring_bench: %s: %s (%s)\n", path, slm_strerror(rc), slm_last_error());
        return 1;
    }
    struct slm_params p = one_token_params(max_tokens);
    p.ignore_eos = 1;
    double w0 = real_s();
    for (int i = 0; i < n_req; i++)
        if (slm_submit_text(c, "Once upon a time, in a small village by the sea,", &p) < 0) fail("submit");
    long tokens = 0;
    struct slm_event ev;
    for (int done = 0; done < n_req;) {
        if ((rc = slm_next_event(c, &ev, 60000)) != 1) fail(rc ? slm_strerror(rc) : "no event within 60 s");
        if (ev.type == SLM_EVENT_TOKEN) tokens++;
        else if (ev.type == SLM_EVENT_DONE) done++;
        else fail(ev.message);
    }
    double w1 = real_s();
    printf("tokens %ld\nwindow %.6f %.6f\ntid client=%d\n", tokens, w0, w1, (int)gettid());
    slm_close(&c);
    return tokens == (long)n_req * max_tokens ? 0 : 1;
}

/* ---- main */

static void print_row(const char *what, const char *unit, double ring, double sock, int lower_better)
{
    double ratio = lower_better ? sock / ring : ring / sock;
    if (ring < 1e-3 || sock < 1e-3) printf("%-44s %12.3f %12.3f %9s   %s\n", what, ring, sock, "-", unit);
    else printf("%-44s %12.3f %12.3f %8.1fx   %s\n", what, ring, sock, ratio, unit);
}

int main(int argc, char **argv)
{
    int n_tokens = 4000000, n_sock = 400000, n_lat = 200000, n_rtt = 20000, gap_us = 2000, spin_us = 50;
    int stream_only = 0, quiet = 0, n_req = 8, max_tokens = 64;
    const char *connect_path = NULL;
    int64_t pace_ns = 5000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--stream-only")) stream_only = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (v && !strcmp(a, "--tokens")) n_tokens = atoi(v), i++;
        else if (v && !strcmp(a, "--connect")) connect_path = v, i++;
        else if (v && !strcmp(a, "--requests")) n_req = atoi(v), i++;
        else if (v && !strcmp(a, "--max-tokens")) max_tokens = atoi(v), i++;
        else if (v && !strcmp(a, "--socket-tokens")) n_sock = atoi(v), i++;
        else if (v && !strcmp(a, "--latency-tokens")) n_lat = atoi(v), i++;
        else if (v && !strcmp(a, "--pace-ns")) pace_ns = atoll(v), i++;
        else if (v && !strcmp(a, "--rtt")) n_rtt = atoi(v), i++;
        else if (v && !strcmp(a, "--gap-us")) gap_us = atoi(v), i++;
        else if (v && !strcmp(a, "--spin-us")) spin_us = atoi(v), i++;
        else {
            fprintf(stderr, "usage: ring_bench [--tokens N] [--socket-tokens N] [--latency-tokens N] [--pace-ns NS]\n"
                            "                  [--rtt N] [--gap-us US] [--spin-us US] [--stream-only] [--quiet]\n"
                            "       ring_bench --connect SOCKET [--requests R] [--max-tokens N]\n");
            return 2;
        }
    }
    if (n_tokens < 1 || n_sock < 1 || n_lat < 1 || n_rtt < 1 || pace_ns < 1 || gap_us < 0 || spin_us < 0)
        fail("every count must be positive");
    if (connect_path) return real_daemon(connect_path, n_req, max_tokens);

    /* As slmd does: the loop reads these from a signalfd, so every thread blocks them. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    char path[64];
    snprintf(path, sizeof path, "/tmp/ring_bench-%d.sock", (int)getpid());
    if (echo_server_start(path, spin_us, quiet ? "err" : "warning")) fail("cannot start the echo server");
    struct slm_client *c = NULL;
    for (int i = 0; i < 500 && slm_connect(path, "ring_bench", &c) < 0; i++) usleep(10000);
    if (!c) fail("cannot connect to the echo daemon");

    struct figures ring = {0}, sock = {0};
    long csw;
    ring_stream(c, 10000, NULL, NULL);   /* warm-up */
    double w0 = real_s();
    ring.tokens_per_s = n_tokens / ring_stream(c, n_tokens, NULL, &csw);
    double w1 = real_s();
    ring.csw_per_token = (double)csw / n_tokens;
    if (!stream_only) {
        /* The median of three streams: one descheduled thread would otherwise decide it. */
        double r[3] = {ring.tokens_per_s, n_tokens / ring_stream(c, n_tokens, NULL, NULL),
                       n_tokens / ring_stream(c, n_tokens, NULL, NULL)};
        ring.tokens_per_s = median3(r);
    }
    if (stream_only) {
        printf("tokens %d\nwindow %.6f %.6f\nring tokens/s %.0f\n", n_tokens, w0, w1, ring.tokens_per_s);
        printf("tid io=%d engine=%d client=%d\n", echo_bench.io_tid, echo_bench.engine_tid, (int)gettid());
    } else {
        int n_buf = n_lat > n_rtt ? n_lat : n_rtt;
        int64_t *v = malloc((size_t)n_buf * sizeof *v);
        echo_bench.stamp = calloc((size_t)n_lat, sizeof *echo_bench.stamp);
        if (!v || !echo_bench.stamp) fail("out of memory");
        echo_bench.n_stamp = n_lat;
        echo_bench.pace_ns = pace_ns;
        ring_stream(c, n_lat, v, NULL);
        ring.latency = dist_of(v, n_lat);
        echo_bench.pace_ns = 0;
        ring_rtt(c, n_rtt / 10, 0, v);   /* warm-up */
        ring_rtt(c, n_rtt, 0, v);
        ring.rtt_busy = dist_of(v, n_rtt);
        int n_asleep = n_rtt / 20 > 50 ? n_rtt / 20 : 50;
        ring_rtt(c, n_asleep, gap_us, v);
        ring.rtt_asleep = dist_of(v, n_asleep);

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock_pair)) fail("socketpair");
        pthread_t producer;
        if (pthread_create(&producer, NULL, socket_producer, NULL)) fail("cannot start the socket thread");
        socket_stream(10000, NULL, NULL);
        double r[3] = {n_sock / socket_stream((uint32_t)n_sock, NULL, &csw),
                       n_sock / socket_stream((uint32_t)n_sock, NULL, NULL),
                       n_sock / socket_stream((uint32_t)n_sock, NULL, NULL)};
        sock.tokens_per_s = median3(r);
        sock.csw_per_token = (double)csw / n_sock;
        echo_bench.pace_ns = pace_ns;
        socket_stream((uint32_t)n_lat, v, NULL);
        sock.latency = dist_of(v, n_lat);
        echo_bench.pace_ns = 0;
        socket_rtt(n_rtt / 10, 0, v);
        socket_rtt(n_rtt, 0, v);
        sock.rtt_busy = dist_of(v, n_rtt);
        socket_rtt(n_asleep, gap_us, v);
        sock.rtt_asleep = dist_of(v, n_asleep);
        shutdown(sock_pair[0], SHUT_RDWR);
        pthread_join(producer, NULL);
        close(sock_pair[0]);
        close(sock_pair[1]);

        printf("one client, echo producer (no model); %ld CPUs online; daemon spin-us %d\n",
               sysconf(_SC_NPROCESSORS_ONLN), spin_us);
        printf("%-44s %12s %12s %9s\n", "", "ring", "socket", "ring gain");
        print_row("tokens/s (millions)", "", ring.tokens_per_s * 1e-6, sock.tokens_per_s * 1e-6, 0);
        print_row("consumer context switches per 1000 tokens", "", ring.csw_per_token * 1e3, sock.csw_per_token * 1e3, 1);
        char what[64];
        snprintf(what, sizeof what, "latency per token p50 (paced %lld ns)", (long long)pace_ns);
        print_row(what, "us", ring.latency.p50_us, sock.latency.p50_us, 1);
        print_row("latency per token p99", "us", ring.latency.p99_us, sock.latency.p99_us, 1);
        print_row("submit->first event, busy p50", "us", ring.rtt_busy.p50_us, sock.rtt_busy.p50_us, 1);
        print_row("submit->first event, busy p99", "us", ring.rtt_busy.p99_us, sock.rtt_busy.p99_us, 1);
        snprintf(what, sizeof what, "submit->first event, asleep p50 (%d us gap)", gap_us);
        print_row(what, "us", ring.rtt_asleep.p50_us, sock.rtt_asleep.p50_us, 1);
        print_row("submit->first event, asleep p99", "us", ring.rtt_asleep.p99_us, sock.rtt_asleep.p99_us, 1);
        printf("tokens: ring %d (throughput), socket %d; latency %d paced; round trips %d busy, %d asleep\n",
               n_tokens, n_sock, n_lat, n_rtt, n_asleep);
        printf("targets: >= 10 M tokens/s: %s; busy round trip p50 <= 5 us: %s\n",
               ring.tokens_per_s >= 10e6 ? "met" : "NOT met", ring.rtt_busy.p50_us <= 5.0 ? "met" : "NOT met");
        free(v);
        free(echo_bench.stamp);
    }
    slm_close(&c);
    echo_server_stop();
    return 0;
}
