/*
 * tests/test_daemon_hostile.c - greedy and hostile clients against the real `slmd serve`,
 * black box (libslm, and raw clients that write their rings by hand):
 *   - a client floods 1,500 requests, then hangs up: within a few engine steps every request is
 *     gone and every KV block is free (stats); the old cancel loop stopped after 256;
 *   - the per-client limits: client-max-requests and client-max-prompt-tokens answer an error
 *     naming the limit, and another client is unaffected;
 *   - SIGTERM during a flood: slmd exits within shutdown-timeout plus a margin; a second
 *     SIGTERM ends it at once, every request cancelled;
 *   - the handshake: 256 connections that never send HELLO, and a real client still served at
 *     once, the silent ones closed after handshake-timeout; refusals with their reason over
 *     max-clients and max-clients-per-uid, and outside the allow-list before any HELLO; at the
 *     fd limit no busy loop and one log line a second at most;
 *   - bad payloads: a NUL byte in text, TOKENIZE and DETOKENIZE above their bounds, a priority
 *     above max-priority (each an error naming the problem), a corrupt completion-ring sequence
 *     number (a disconnect);
 *   - 256 TOKENIZEs of 256 KiB queued at once do not hold a normal client's TOKENIZE behind them;
 * each with its own daemon, started with the limits the case needs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"
#include "tests/raw_client.h"
#include "client/slm.h"
#include "ipc/handshake.h"
#include "ipc/ring.h"
#include "ipc/shm.h"
#include "ipc/wait.h"

static const char *slmd;
static char model[512];
static char sock_path[128];
static char log_path[128];   /* when set, the next daemon's stderr goes there */
static int nofile;           /* when set, the next daemon's RLIMIT_NOFILE */

/* Seconds a bound allows beyond what the daemon promises: an engine step in progress finishes
 * first, and a step of 512 prompt tokens takes seconds on one thread under the sanitizers. The
 * old daemon missed these bounds by minutes. */
#define MARGIN_S 10

/* Starts slmd serve on sock_path with the common flags and the extra ones (NULL-terminated);
 * returns its pid once a client can connect, or -1. */
static pid_t start_daemon(const char *first, ...)
{
    const char *argv[64];
    int n = 0;
    const char *common[] = {slmd, "serve", "--socket", sock_path, "--model", model, "--kv-cache-mem", "64M",
                            "--threads", "1", "--log-level", "notice"};
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) argv[n++] = common[i];
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 62; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = raw_start_daemon(argv, sock_path, log_path, nofile);
    log_path[0] = 0;
    nofile = 0;
    return pid;
}

/* Submits n requests (4 prompt ids, max_tokens tokens each, greedy, end of generation
 * ignored) as fast as the ring allows, reading completions only when the ring is full when
 * `read` says so. Returns how many were pushed. */
static int raw_flood(struct raw *r, int n, int max_tokens, int read)
{
    static const int32_t ids[4] = {504, 3458, 282, 4649};
    memcpy(r->shm.arena, ids, sizeof ids);
    struct slm_sqe q = {.op = SLM_OP_COMPLETE_IDS, .flags = SLM_SQE_IGNORE_EOS, .payload_off = 0,
                        .payload_len = sizeof ids, .n_items = 4, .max_tokens = (uint32_t)max_tokens,
                        .top_p = 1.0f, .repeat_penalty = 1.0f};
    int pushed = 0;
    double t0 = now_s();
    while (pushed < n && now_s() - t0 < 30) {
        q.user_data = (uint64_t)pushed + 1;
        if (slm_ring_push(&r->sq, &q) == 0) {
            pushed++;
            continue;
        }
        slm_doorbell_ring(&r->shm, r->fd);
        if (read) raw_drain(r);
        usleep(200);
    }
    slm_doorbell_ring(&r->shm, r->fd);
    return pushed;
}

static int stats(struct slm_client *c, struct slm_stats *st)
{
    int rc = slm_stats(c, st);
    if (rc) printf("stats: %s\n", slm_strerror(rc));
    return rc;
}

/* Waits up to `seconds` for at least `want` requests active. */
static int wait_active(struct slm_client *c, uint64_t want, double seconds)
{
    struct slm_stats st = {0};
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        if (stats(c, &st) == 0 && st.requests_active >= want) return 1;
        usleep(20000);
    }
    printf("only %llu requests active, waited for %llu\n", (unsigned long long)st.requests_active,
           (unsigned long long)want);
    return 0;
}

/* 1. A flood, then the hang-up: everything of the client is gone within a few steps. */
static void flood_and_hang_up(void)
{
    pid_t d = start_daemon("--client-max-requests", "4000", "--client-max-prompt-tokens", "100000", (char *)NULL);
    CHECK(d > 0, "flood_and_hang_up: slmd did not start");
    if (d <= 0) return;
    struct slm_client *probe = NULL;
    CHECK(slm_connect(sock_path, "probe", &probe) == 0, "probe: connect: %s", slm_last_error());
    struct raw r;
    if (probe && raw_connect(&r, sock_path, "flooder") == 0) {
        int n = raw_flood(&r, 1500, 500, 1);
        CHECK(n == 1500, "flood: pushed %d of 1500", n);
        CHECK(wait_active(probe, 1000, 20), "flood: the daemon did not take the requests");
        raw_close(&r);
        double t0 = now_s();
        struct slm_stats st = {0};
        int clean = 0;
        while (!clean && now_s() - t0 < MARGIN_S + 5) {
            clean = stats(probe, &st) == 0 && st.requests_active == 0 && st.kv_blocks_used == 0 && st.clients == 1;
            if (!clean) usleep(20000);
        }
        CHECK(clean && now_s() - t0 < MARGIN_S,
              "after the hang-up: expected 0 requests, 0 KV blocks, 1 client within %d s; got %llu, %llu, %llu "
              "after %.1f s",
              MARGIN_S, (unsigned long long)st.requests_active, (unsigned long long)st.kv_blocks_used,
              (unsigned long long)st.clients, now_s() - t0);
        printf("after the hang-up: all requests gone in %.2f s\n", now_s() - t0);
        /* The daemon still serves (not tried when the flood is still running: the probe's
         * request would wait behind it, as it does for the same user). */
        struct slm_params p;
        slm_params_default(&p);
        p.max_tokens = 4;
        char *text = NULL;
        CHECK(!clean || (slm_generate(probe, "The capital of France is", &p, &text, NULL) == 0 && text && text[0]),
              "after the flood: generate failed");
        free(text);
    }
    slm_close(&probe);
    kill(d, SIGTERM);
    double took;
    int status = wait_exit(d, 10, &took);
    CHECK(status == 0, "flood_and_hang_up: slmd exit status %d after SIGTERM", status);
}

/* Reads events until the one of handle h; 1 with *ev when it is an ERROR. */
static int error_of(struct slm_client *c, int64_t h, struct slm_event *ev)
{
    while (slm_next_event(c, ev, 10000) == 1)
        if (ev->handle == h) return ev->type == SLM_EVENT_ERROR;
    return 0;
}

/* 2. The per-client limits. */
static void limits(void)
{
    pid_t d = start_daemon("--client-max-requests", "8", "--client-max-prompt-tokens", "64", (char *)NULL);
    CHECK(d > 0, "limits: slmd did not start");
    if (d <= 0) return;
    struct slm_client *c = NULL, *other = NULL;
    CHECK(slm_connect(sock_path, "greedy", &c) == 0 && slm_connect(sock_path, "other", &other) == 0,
          "limits: connect: %s", slm_last_error());
    if (c && other) {
        struct slm_params p;
        slm_params_default(&p);
        p.max_tokens = 400;
        p.ignore_eos = 1;
        int32_t ids[100];
        for (int i = 0; i < 100; i++) ids[i] = 504 + i;
        int64_t h[8];
        for (int i = 0; i < 8; i++) h[i] = slm_submit_ids(c, ids, 5, &p);   /* 40 prompt tokens */
        struct slm_event ev;
        int64_t x = slm_submit_ids(c, ids, 5, &p);
        CHECK(error_of(c, x, &ev) && ev.error == -EAGAIN && strstr(ev.message, "client-max-requests"),
              "a 9th request: expected an error naming client-max-requests, got type %d '%s'", ev.type,
              ev.type == SLM_EVENT_ERROR ? ev.message : "");
        slm_cancel(c, h[7]);
        slm_cancel(c, h[6]);
        int done = 0;
        while (done < 2 && slm_next_event(c, &ev, 10000) == 1) done += ev.type == SLM_EVENT_DONE;
        x = slm_submit_ids(c, ids, 35, &p);   /* 6 x 5 queued + 35 > 64 */
        CHECK(error_of(c, x, &ev) && ev.error == -EAGAIN && strstr(ev.message, "client-max-prompt-tokens"),
              "35 more prompt tokens: expected an error naming client-max-prompt-tokens, got type %d '%s'", ev.type,
              ev.type == SLM_EVENT_ERROR ? ev.message : "");
        x = slm_submit_ids(c, ids, 65, &p);
        CHECK(error_of(c, x, &ev) && ev.error == -E2BIG && strstr(ev.message, "client-max-prompt-tokens"),
              "a prompt of 65 tokens: expected -E2BIG naming client-max-prompt-tokens, got type %d '%s'", ev.type,
              ev.type == SLM_EVENT_ERROR ? ev.message : "");
        /* Another client of the same user is not affected. */
        p.max_tokens = 3;
        p.ignore_eos = 0;
        char *text = NULL;
        CHECK(slm_generate(other, "Hello, my name is", &p, &text, NULL) == 0, "other client: generate failed");
        free(text);
        /* Room again once requests finish. */
        slm_cancel(c, h[0]);
        while (slm_next_event(c, &ev, 10000) == 1 && !(ev.type == SLM_EVENT_DONE && ev.handle == h[0])) {}
        x = slm_submit_ids(c, ids, 5, &p);
        int ok = 0;
        while (slm_next_event(c, &ev, 30000) == 1)
            if (ev.handle == x) {
                ok = ev.type == SLM_EVENT_DONE;
                if (ev.type != SLM_EVENT_TOKEN) break;
            }
        CHECK(ok, "after a request finished: a new one was not served");
    }
    slm_close(&c);
    slm_close(&other);
    kill(d, SIGTERM);
    double took;
    int status = wait_exit(d, 10, &took);
    CHECK(status == 0, "limits: slmd exit status %d after SIGTERM", status);
}

/* 3. SIGTERM during a flood: the drain's timeout is honoured; a second SIGTERM stops at once. */
static void sigterm_flood(int second)
{
    const char *timeout = second ? "60" : "2";
    pid_t d = start_daemon("--client-max-requests", "4000", "--client-max-prompt-tokens", "100000",
                           "--shutdown-timeout", timeout, (char *)NULL);
    CHECK(d > 0, "sigterm_flood: slmd did not start");
    if (d <= 0) return;
    struct slm_client *probe = NULL;
    struct raw r;
    CHECK(slm_connect(sock_path, "probe", &probe) == 0, "probe: connect: %s", slm_last_error());
    if (probe && raw_connect(&r, sock_path, "flooder") == 0) {
        int n = raw_flood(&r, 1500, 500, 0);
        CHECK(n == 1500, "flood: pushed %d of 1500", n);
        CHECK(wait_active(probe, 1000, 20), "flood: the daemon did not take the requests");
        kill(d, SIGTERM);
        if (second) {
            usleep(300000);
            kill(d, SIGTERM);
        }
        double took;
        int bound = (second ? 0 : 2) + MARGIN_S;
        int status = wait_exit(d, bound + 5, &took);
        CHECK(status == 0 && took < bound,
              "SIGTERM%s during a flood (shutdown-timeout %s): expected exit 0 within %d s, got status %d after "
              "%.1f s",
              second ? " twice" : "", timeout, bound, status, took);
        printf("SIGTERM%s during a flood: exit %d after %.2f s\n", second ? " twice" : "", status, took);
        raw_close(&r);
    } else {
        kill(d, SIGKILL);
        waitpid(d, NULL, 0);
    }
    slm_close(&probe);
}

/* A connection that never sends HELLO; its fd, or -1. */
static int silent_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, sock_path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* 1 when the daemon closed fd (EOF or a reset). */
static int closed_by_daemon(int fd)
{
    char b[256];
    ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static int generate_ok(const char *name)
{
    return raw_generate_ok(sock_path, name);
}

/* 4. 256 connections that never send HELLO: a real client is still served at once, and the
 * silent ones are closed after handshake-timeout. */
static void silent_connections(void)
{
    pid_t d = start_daemon("--handshake-timeout", "2", "--max-clients-per-uid", "1000", (char *)NULL);
    CHECK(d > 0, "silent_connections: slmd did not start");
    if (d <= 0) return;
    int fds[256], n = 0;
    double t0 = now_s();
    for (int i = 0; i < 256; i++)
        if ((fds[n] = silent_connect()) >= 0) n++;
    CHECK(n == 256, "silent connections: %d of 256 connected", n);
    usleep(100000);
    double t1 = now_s();
    CHECK(generate_ok("real"), "with 256 silent connections a real client was not served");
    CHECK(now_s() - t0 < 2, "with 256 silent connections a real client took %.1f s, before any handshake-timeout",
          now_s() - t1);
    /* Connections without a HELLO are not clients (stats, STATUS=). */
    struct slm_client *c = NULL;
    struct slm_stats st = {0};
    CHECK(slm_connect(sock_path, "counter", &c) == 0 && stats(c, &st) == 0 && st.clients == 1,
          "stats with 1 client and silent connections: expected 1 client, got %llu", (unsigned long long)st.clients);
    slm_close(&c);
    int closed = 0;
    while (now_s() - t0 < 2 + 3 && closed < n) {
        closed = 0;
        for (int i = 0; i < n; i++) closed += closed_by_daemon(fds[i]);
        usleep(100000);
    }
    CHECK(closed == n, "handshake-timeout 2 s: %d of %d silent connections closed after %.1f s", closed, n,
          now_s() - t0);
    for (int i = 0; i < n; i++) close(fds[i]);
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 10, &took) == 0, "silent_connections: slmd did not exit cleanly");
}

/* Connects, expecting a refusal whose reason names `key`. */
static void expect_refusal(const char *key)
{
    struct slm_client *c = NULL;
    int rc = slm_connect(sock_path, "one-too-many", &c);
    CHECK(rc == -EUSERS && strstr(slm_last_error(), key),
          "one connection too many: expected -EUSERS naming %s, got %d '%s'", key, rc, slm_last_error());
    slm_close(&c);
}

/* 5. Over max-clients, and over max-clients-per-uid: a WELCOME refusal with the reason. */
static void over_max_clients(void)
{
    for (int per_uid = 0; per_uid < 2; per_uid++) {
        pid_t d = per_uid ? start_daemon("--max-clients", "8", "--max-clients-per-uid", "2", (char *)NULL)
                          : start_daemon("--max-clients", "2", (char *)NULL);
        CHECK(d > 0, "over_max_clients: slmd did not start");
        if (d <= 0) return;
        struct slm_client *a = NULL, *b = NULL;
        CHECK(slm_connect(sock_path, "a", &a) == 0 && slm_connect(sock_path, "b", &b) == 0, "two clients: %s",
              slm_last_error());
        expect_refusal(per_uid ? "max-clients-per-uid" : "max-clients");
        slm_close(&b);
        usleep(200000);
        CHECK(generate_ok("after"), "after a client left, a new one was not served");
        slm_close(&a);
        kill(d, SIGTERM);
        double took;
        CHECK(wait_exit(d, 10, &took) == 0, "over_max_clients: slmd did not exit cleanly");
    }
}

/* 5b. The allow-list is checked at accept, from SO_PEERCRED: a connection of a user outside it
 * gets its WELCOME refusal before it has sent anything, and takes no place. */
static void allow_list_at_accept(void)
{
    const char *argv[] = {slmd, "serve", "--socket", sock_path, "--model", model, "--kv-cache-mem", "64M",
                          "--threads", "1", "--log-level", "warning", "--allow-uids", "54321",
                          "--max-clients", "1", NULL};
    pid_t d = fork();
    if (d == 0) {
        execv(slmd, (char *const *)argv);
        _exit(127);
    }
    struct slm_client *c = NULL;
    int rc = -1;
    for (int i = 0; i < 300 && rc != -EACCES; i++) {   /* until it listens */
        rc = slm_connect(sock_path, "outsider", &c);
        slm_close(&c);
        if (rc != -EACCES) usleep(100000);
    }
    CHECK(rc == -EACCES && strstr(slm_last_error(), "allow"), "a uid outside allow-uids: expected -EACCES, got %d '%s'",
          rc, slm_last_error());
    /* Many silent connections of the outsider, each refused at once, without a HELLO. */
    int fds[64], n = 0, refused = 0;
    for (int i = 0; i < 64; i++)
        if ((fds[n] = silent_connect()) >= 0) n++;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        struct slm_welcome w;
        int shm_fd = -1, left_ms = (int)((t0 + 2 - now_s()) * 1000);
        char err[256] = "";
        if (poll(&pfd, 1, left_ms > 0 ? left_ms : 0) == 1 && slm_welcome_recv(fds[i], &w, &shm_fd, err) == -EACCES)
            refused++;
        close(fds[i]);
    }
    CHECK(n == 64 && refused == n, "silent connections outside the allow-list: %d of %d got the refusal before a HELLO",
          refused, n);
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 10, &took) == 0, "allow_list_at_accept: slmd did not exit cleanly");
}

/* CPU seconds pid used so far (utime + stime of /proc/PID/stat). */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* 6. At the fd limit: accept errors pause accepting (no busy loop), one log line a second at
 * most; once fds are free again, clients are served. */
static void fd_limit(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/slmd-hostile-%d.log", (int)getpid());
    char log[128];
    snprintf(log, sizeof log, "%s", log_path);
    nofile = 48;
    pid_t d = start_daemon("--handshake-timeout", "30", "--max-clients-per-uid", "1000", (char *)NULL);
    CHECK(d > 0, "fd_limit: slmd did not start");
    if (d <= 0) return;
    int fds[96], n = 0;
    for (int i = 0; i < 96; i++)
        if ((fds[n] = silent_connect()) >= 0) n++;
    usleep(200000);
    double cpu0 = cpu_seconds(d), t0 = now_s();
    sleep(3);
    double cpu = cpu_seconds(d) - cpu0, wall = now_s() - t0;
    CHECK(cpu >= 0 && cpu < 0.3 * wall, "at the fd limit: slmd used %.2f s of CPU in %.2f s", cpu, wall);
    for (int i = 0; i < n; i++) close(fds[i]);
    usleep(300000);
    CHECK(generate_ok("after-emfile"), "once fds were free again, a client was not served");
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 10, &took) == 0, "fd_limit: slmd did not exit cleanly");
    FILE *f = fopen(log, "r");
    int lines = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) lines += strstr(line, "accept") != NULL;
    if (f) fclose(f);
    unlink(log);
    CHECK(lines >= 1 && lines <= (int)wall + 2, "at the fd limit: %d accept lines logged in %.1f s (1 a second at most)",
          lines, wall);
}

/* 7. Bad payloads: NUL bytes in text, TOKENIZE and DETOKENIZE above their bounds, a corrupt
 * completion-ring sequence number. */
static void bad_payloads(void)
{
    pid_t d = start_daemon((char *)NULL);
    CHECK(d > 0, "bad_payloads: slmd did not start");
    if (d <= 0) return;
    struct raw r;
    if (raw_connect(&r, sock_path, "bad-payloads") == 0) {
        int status = 0;
        char why[128] = "";
        memcpy(r.shm.arena, "ab\0cd", 5);
        for (int op = 0; op < 2; op++) {
            struct slm_sqe q = {.op = op ? SLM_OP_TOKENIZE : SLM_OP_COMPLETE, .payload_len = 5, .max_tokens = 2,
                                .top_p = 1, .repeat_penalty = 1};
            status = 0, why[0] = 0;
            int rc = raw_ask(&r, &q, &status, why, sizeof why);
            CHECK(rc == 1 && status == -EINVAL && strstr(why, "NUL"),
                  "%s of 'ab\\0cd': expected -EINVAL naming the NUL, got %d, status %d '%s'",
                  op ? "TOKENIZE" : "COMPLETE", rc, status, why);
        }
        memset(r.shm.arena, 'a', SLM_TOKENIZE_MAX_BYTES + 1);
        struct slm_sqe q = {.op = SLM_OP_TOKENIZE, .payload_len = SLM_TOKENIZE_MAX_BYTES + 1};
        status = 0, why[0] = 0;
        int rc = raw_ask(&r, &q, &status, why, sizeof why);
        CHECK(rc == 1 && status == -E2BIG && strstr(why, "at most"),
              "TOKENIZE of %u bytes: expected -E2BIG naming the bound, got %d, status %d '%s'",
              SLM_TOKENIZE_MAX_BYTES + 1, rc, status, why);
        memset(r.shm.arena, 0, 4 * (SLM_DETOKENIZE_MAX_IDS + 1));
        q = (struct slm_sqe){.op = SLM_OP_DETOKENIZE, .payload_len = 4 * (SLM_DETOKENIZE_MAX_IDS + 1),
                             .n_items = SLM_DETOKENIZE_MAX_IDS + 1};
        status = 0, why[0] = 0;
        rc = raw_ask(&r, &q, &status, why, sizeof why);
        CHECK(rc == 1 && status == -E2BIG && strstr(why, "at most"),
              "DETOKENIZE of %u ids: expected -E2BIG naming the bound, got %d, status %d '%s'",
              SLM_DETOKENIZE_MAX_IDS + 1, rc, status, why);
        /* A prompt's text far longer than the context holds: refused before tokenizing. */
        memset(r.shm.arena, 'a', 300000);
        q = (struct slm_sqe){.op = SLM_OP_COMPLETE, .payload_len = 300000, .max_tokens = 2, .top_p = 1,
                             .repeat_penalty = 1};
        status = 0, why[0] = 0;
        rc = raw_ask(&r, &q, &status, why, sizeof why);
        CHECK(rc == 1 && status == -E2BIG && strstr(why, "bytes of text"),
              "COMPLETE of 300000 bytes: expected -E2BIG naming its bytes, got %d, status %d '%s'", rc, status, why);
        /* A priority above max-priority (default 1000000). */
        static const int32_t ids[2] = {504, 3458};
        memcpy(r.shm.arena, ids, sizeof ids);
        q = (struct slm_sqe){.op = SLM_OP_COMPLETE_IDS, .payload_len = 8, .n_items = 2, .max_tokens = 2,
                             .priority = 2147483647, .top_p = 1, .repeat_penalty = 1};
        status = 0, why[0] = 0;
        rc = raw_ask(&r, &q, &status, why, sizeof why);
        CHECK(rc == 1 && status == -EINVAL && strstr(why, "max-priority"),
              "priority 2147483647: expected -EINVAL naming max-priority, got %d, status %d '%s'", rc, status, why);
        /* At the bound: answered. */
        memset(r.shm.arena, 'a', 1000);
        q = (struct slm_sqe){.op = SLM_OP_TOKENIZE, .payload_len = 1000};
        CHECK(raw_ask(&r, &q, &status, why, sizeof why) == 0, "TOKENIZE of 1000 bytes: no DATA answer");
        /* A sequence number in the completion ring that no state of the ring has: the daemon
         * hangs up rather than taking the ring for full. */
        *(uint32_t *)(void *)(r.cq.slots + (size_t)(r.cq.pos & (r.cq.entries - 1)) * 128) = 0xdead0000u;
        memcpy(r.shm.arena, "hello", 5);
        q = (struct slm_sqe){.op = SLM_OP_TOKENIZE, .payload_len = 5, .user_data = 1};
        slm_ring_push(&r.sq, &q);
        slm_doorbell_ring(&r.shm, r.fd);
        struct pollfd pfd = {.fd = r.fd, .events = POLLIN};
        int hung_up = 0;
        double t0 = now_s();
        while (!hung_up && now_s() - t0 < 3) {
            char b;
            if (poll(&pfd, 1, 100) > 0) hung_up = recv(r.fd, &b, 1, MSG_DONTWAIT) <= 0;
        }
        CHECK(hung_up, "a corrupt completion-ring seq: the daemon did not hang up");
        raw_close(&r);
    }
    CHECK(generate_ok("after-bad-payloads"), "after the bad payloads a client was not served");
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 10, &took) == 0, "bad_payloads: slmd did not exit cleanly");
}

/* 8. Large TOKENIZEs next to a normal client: a process queues 256 TOKENIZEs of 256 KiB each
 * (one lap of its ring; ~40 ms of tokenizing each, ~10 s in all) and reads the answers; a
 * normal client's small TOKENIZE meanwhile is answered within a turn or two, not after the
 * whole lap. */
static void tokenize_flood(void)
{
    pid_t d = start_daemon((char *)NULL);
    CHECK(d > 0, "tokenize_flood: slmd did not start");
    if (d <= 0) return;
    int go[2];
    if (pipe(go)) return;
    pid_t child = fork();
    if (child == 0) {
        close(go[0]);
        struct raw r;
        if (raw_connect(&r, sock_path, "tokenize-flood")) _exit(1);
        const uint32_t len = SLM_TOKENIZE_MAX_BYTES;
        for (uint32_t i = 0; i < len; i++) r.shm.arena[i] = (uint8_t)("ab cd "[i % 6]);
        struct slm_sqe q = {.op = SLM_OP_TOKENIZE, .payload_off = 0, .payload_len = len};
        for (int i = 0; i < 256; i++) {
            q.user_data = (uint64_t)i + 1;
            if (slm_ring_push(&r.sq, &q)) _exit(2);
        }
        slm_doorbell_ring(&r.shm, r.fd);
        if (write(go[1], "g", 1) != 1) _exit(3);
        int answers = 0;
        double t0 = now_s();
        while (answers < 256 && now_s() - t0 < 60) {
            const struct slm_cqe *e;
            while ((e = slm_ring_peek(&r.cq))) {
                answers += !(e->flags & SLM_CQE_MORE);
                slm_ring_seen(&r.cq);
            }
            slm_wait_cq(&r.shm, &r.cq, 50);
        }
        _exit(answers == 256 ? 0 : 4);
    }
    close(go[1]);
    char g;
    CHECK(read(go[0], &g, 1) == 1, "tokenize_flood: the flooding process did not start");
    close(go[0]);
    struct slm_client *c = NULL;
    CHECK(slm_connect(sock_path, "normal", &c) == 0, "tokenize_flood: connect: %s", slm_last_error());
    double worst = 0;
    for (int i = 0; c && i < 10; i++) {
        int32_t *ids = NULL;
        int n = 0;
        double t = now_s();
        int rc = slm_tokenize(c, "The capital of France is", &ids, &n);
        t = now_s() - t;
        free(ids);
        CHECK(rc == 0 && n > 0, "tokenize_flood: the normal client's tokenize failed: %d", rc);
        if (t > worst) worst = t;
        usleep(50000);
    }
    printf("next to 256 TOKENIZEs of 256 KiB: the normal client's worst TOKENIZE took %.0f ms\n", worst * 1e3);
    CHECK(worst < 0.5, "next to 256 TOKENIZEs of 256 KiB: the normal client's TOKENIZE took %.0f ms (bound 500)",
          worst * 1e3);
    slm_close(&c);
    int status = -1;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "tokenize_flood: the flooding process got %s answers",
          WIFEXITED(status) && WEXITSTATUS(status) == 4 ? "not all its" : "no");
    kill(d, SIGTERM);
    double took;
    CHECK(wait_exit(d, 10, &took) == 0, "tokenize_flood: slmd did not exit cleanly");
}

int main(void)
{
    if (!(slmd = test_slmd_and_model(model, sizeof model))) return 77;
    signal(SIGPIPE, SIG_IGN);
    snprintf(sock_path, sizeof sock_path, "/tmp/slmd-hostile-%d.sock", (int)getpid());
    flood_and_hang_up();
    limits();
    sigterm_flood(0);
    sigterm_flood(1);
    silent_connections();
    over_max_clients();
    allow_list_at_accept();
    fd_limit();
    bad_payloads();
    tokenize_flood();
    if (failures) printf("test_daemon_hostile: %d failures\n", failures);
    else printf("test_daemon_hostile: ok\n");
    return failures ? 1 : 0;
}
