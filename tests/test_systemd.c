/*
 * tests/test_systemd.c - slmd under systemd's protocols, for real, without systemd itself:
 *   - socket activation: systemd-socket-activate holds the socket and starts slmd on the first
 *     connection (sd_listen_fds); that connection is served;
 *   - sd_notify on a test NOTIFY_SOCKET: READY=1, STATUS= (model, clients, tokens/s),
 *     WATCHDOG=1 (WATCHDOG_USEC set), RELOADING=1 and READY=1 again on SIGHUP, STOPPING=1;
 *   - SIGHUP that changes the engine (max-seqs in the configuration file): a request running
 *     across it finishes untouched, one submitted meanwhile waits and is then served, the
 *     client stays connected and INFO shows the new limit; a broken file keeps the old one;
 *   - SIGTERM: a running request finishes whole, a submission after it gets -ESHUTDOWN, a new
 *     connection is refused, exit 0, and the socket file (systemd's) is left in place;
 *   - a reload that sets allow-uids: a new connection of another uid is refused (-EACCES),
 *     the connected client goes on; lifted again, connections are accepted;
 *   - SIGTERM with --shutdown-timeout 1 and an endless request: it is cancelled, exit 0;
 *     socket-mode applies to the socket slmd binds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"
#include "client/slm.h"

static char notify_path[108], sock_path[108], conf_path[128];
static int notify_fd = -1;
/* Every message received, each line ending in '\n', filled by a thread that reads the notify
 * socket at once, as systemd does (slmd blocks in sd_notify if nobody reads). */
static char notices[1 << 18];
static size_t n_notices;
static pthread_mutex_t notices_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int notify_quit;

static void *notify_reader(void *arg)
{
    (void)arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(notify_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!notify_quit) {
        char buf[4096];
        ssize_t n = recv(notify_fd, buf, sizeof buf - 1, 0);
        pthread_mutex_lock(&notices_lock);
        if (n > 0 && n_notices + (size_t)n + 2 < sizeof notices) {
            memcpy(notices + n_notices, buf, (size_t)n);
            n_notices += (size_t)n;
            if (notices[n_notices - 1] != '\n') notices[n_notices++] = '\n';
            notices[n_notices] = 0;
        }
        pthread_mutex_unlock(&notices_lock);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Reads notify messages for up to timeout_s, until `line` (a whole line, or a prefix ending
 * in '=') appears at or after offset *from; then *from moves past it. 1 if seen. */
static int wait_notice(const char *line, size_t *from, double timeout_s)
{
    double end = now_s() + timeout_s;
    size_t len = strlen(line);
    for (;;) {
        pthread_mutex_lock(&notices_lock);
        for (const char *p = notices + *from; p < notices + n_notices;) {
            const char *nl = memchr(p, '\n', (size_t)(notices + n_notices - p));
            if (!strncmp(p, line, len) && (line[len - 1] == '=' || p + len == nl)) {
                *from = (size_t)(nl + 1 - notices);
                pthread_mutex_unlock(&notices_lock);
                return 1;
            }
            p = nl + 1;
        }
        pthread_mutex_unlock(&notices_lock);
        if (now_s() >= end) return 0;
        usleep(10000);
    }
}

/* Whether every word appears in one STATUS= line received so far. */
static int status_has(const char *const *words, int n)
{
    pthread_mutex_lock(&notices_lock);
    int found = 0;
    for (const char *p = notices; !found && (p = strstr(p, "STATUS=")); p++) {
        const char *nl = strchr(p, '\n');
        found = 1;
        for (int i = 0; i < n && found; i++) {
            const char *w = strstr(p, words[i]);
            found = w && w < nl;
        }
    }
    pthread_mutex_unlock(&notices_lock);
    return found;
}

static void write_conf(const char *text)
{
    FILE *f = fopen(conf_path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Submits prompt for n tokens (EOS ignored); the handle, or a negative errno. */
static int64_t submit(struct slm_client *c, const char *prompt, int n)
{
    struct slm_params p;
    slm_params_default(&p);
    p.temperature = 0;
    p.max_tokens = n;
    p.ignore_eos = 1;
    return slm_submit_text(c, prompt, &p);
}

/* Waits for request h's DONE or ERROR (other requests' events are dropped); tokens seen in *n. */
static struct slm_event finish(struct slm_client *c, int64_t h, int *n, int timeout_ms)
{
    struct slm_event ev = {0};
    *n = 0;
    while (slm_next_event(c, &ev, timeout_ms) == 1) {
        if (ev.handle != h) continue;
        if (ev.type != SLM_EVENT_TOKEN) return ev;
        ++*n;
    }
    ev.type = 0;
    return ev;
}

/* Exit status of pid within timeout_s, or -1 (then it is killed). */
static int wait_exit(pid_t pid, double timeout_s)
{
    double end = now_s() + timeout_s;
    int status;
    while (now_s() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void activated(const char *slmd, const char *model)
{
    char env_notify[160], env_model[600];
    snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", notify_path);
    snprintf(env_model, sizeof env_model, "%s", model);
    write_conf("# test_systemd\nmax-seqs = 8\nshutdown-timeout = 60\n");
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", 1);
        if (!getenv("SLM_TEST_VERBOSE")) dup2(null, 2);   /* systemd-socket-activate's own chatter */
        execlp("systemd-socket-activate", "systemd-socket-activate", "--seqpacket", "-l", sock_path, "-E",
               env_notify, "-E", "WATCHDOG_USEC=1000000", slmd, "serve", "--config", conf_path, "--model", env_model,
               "--kv-cache-mem", "64M", "--threads", "2", "--log-level", "err", (char *)NULL);
        _exit(127);
    }
    /* Nothing runs slmd until someone connects. */
    for (int i = 0; i < 100 && access(sock_path, F_OK); i++) usleep(20000);
    size_t at = 0;
    CHECK(!wait_notice("READY=1", &at, 0.3), "READY=1 before any connection: slmd started eagerly");
    struct slm_client *c = NULL;
    int rc = slm_connect(sock_path, "activation", &c);
    CHECK(rc == 0, "connect through the activation socket: %s (%s)", slm_strerror(rc), slm_last_error());
    if (rc) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return;
    }
    CHECK(wait_notice("READY=1", &at, 10), "no READY=1");
    CHECK(wait_notice("STATUS=", &at, 5), "no STATUS= after READY");
    const char *status_words[] = {"SmolLM2", "clients", "tokens/s"};
    CHECK(status_has(status_words, 3), "no STATUS= with the model, clients and tokens/s: %s", notices);
    size_t w = 0;
    CHECK(wait_notice("WATCHDOG=1", &w, 3), "no WATCHDOG=1 within 3 s (WATCHDOG_USEC 1 s)");
    struct slm_info info;
    CHECK(slm_info(c, &info) == 0 && info.max_seqs == 8, "info: max_seqs %d, expected 8", info.max_seqs);

    /* Reload that rebuilds the engine, with a request running across it. */
    int64_t long_h = submit(c, "Count slowly:", 16);
    CHECK(long_h > 0, "submit: %s", slm_strerror((int)long_h));
    struct slm_event ev;
    int got_token = 0;
    while (!got_token && slm_next_event(c, &ev, 10000) == 1) got_token = ev.type == SLM_EVENT_TOKEN;
    write_conf("# test_systemd\nmax-seqs = 4\nshutdown-timeout = 60\n");
    kill(pid, SIGHUP);
    CHECK(wait_notice("RELOADING=1", &at, 5), "no RELOADING=1 after SIGHUP");
    int64_t during = submit(c, "Hello", 5);   /* waits in the ring until the new engine runs */
    int n;
    ev = finish(c, long_h, &n, 120000);
    CHECK(ev.type == SLM_EVENT_DONE && ev.finish == SLM_FINISH_LENGTH && n + 1 == 16,
          "the request across the reload: event %d, finish %d, %d tokens (expected 16)", ev.type, ev.finish, n + 1);
    ev = finish(c, during, &n, 120000);
    CHECK(ev.type == SLM_EVENT_DONE && n == 5, "the request submitted during the reload: event %d, %d tokens",
          ev.type, n);
    CHECK(wait_notice("READY=1", &at, 10), "no READY=1 after the reload");
    CHECK(slm_info(c, &info) == 0 && info.max_seqs == 4, "after the reload: max_seqs %d, expected 4", info.max_seqs);
    /* A broken file: the running configuration stays. */
    write_conf("max-seqs = banana\n");
    kill(pid, SIGHUP);
    CHECK(wait_notice("RELOADING=1", &at, 5) && wait_notice("READY=1", &at, 5), "a failed reload: no RELOADING/READY");
    CHECK(slm_info(c, &info) == 0 && info.max_seqs == 4, "after a failed reload: max_seqs %d, expected 4",
          info.max_seqs);

    /* The allow-list, changed by a reload: new connections of others are refused, the
     * connected client goes on. */
    write_conf("max-seqs = 4\nallow-uids = 54321\n");
    kill(pid, SIGHUP);
    CHECK(wait_notice("RELOADING=1", &at, 5) && wait_notice("READY=1", &at, 5), "allow-list reload: no READY");
    struct slm_client *other = NULL;
    rc = slm_connect(sock_path, "not-allowed", &other);
    CHECK(rc == -EACCES && strstr(slm_last_error(), "allow"), "a uid outside allow-uids: %s (%s)", slm_strerror(rc),
          slm_last_error());
    slm_close(&other);
    CHECK(slm_info(c, &info) == 0, "the connected client after the allow-list reload");
    write_conf("max-seqs = 4\n");
    kill(pid, SIGHUP);
    CHECK(wait_notice("RELOADING=1", &at, 5) && wait_notice("READY=1", &at, 5), "reload: no READY");
    rc = slm_connect(sock_path, "allowed-again", &other);
    CHECK(rc == 0, "after the allow-list was lifted: %s (%s)", slm_strerror(rc), slm_last_error());
    slm_close(&other);

    /* SIGTERM: the running request finishes, nothing new is taken. */
    int64_t last = submit(c, "Once upon a time", 24);
    got_token = 0;
    while (!got_token && slm_next_event(c, &ev, 10000) == 1) got_token = ev.handle == last;
    kill(pid, SIGTERM);
    CHECK(wait_notice("STOPPING=1", &at, 5), "no STOPPING=1 after SIGTERM");
    struct slm_client *late = NULL;
    rc = slm_connect(sock_path, "late", &late);
    CHECK(rc == -ESHUTDOWN && strstr(slm_last_error(), "stopping"), "a connection while draining: %s (%s)",
          slm_strerror(rc), slm_last_error());
    slm_close(&late);
    int64_t refused = submit(c, "Too late", 4);
    CHECK(refused > 0, "submit while draining: %s", slm_strerror((int)refused));
    struct slm_event last_done = {0}, refusal = {0};
    n = 1;
    while ((!last_done.type || !refusal.type) && slm_next_event(c, &ev, 120000) == 1) {
        if (ev.handle == last && ev.type == SLM_EVENT_TOKEN) n++;
        else if (ev.handle == last) last_done = ev;
        else if (ev.handle == refused) refusal = ev;
    }
    CHECK(last_done.type == SLM_EVENT_DONE && last_done.finish == SLM_FINISH_LENGTH && n == 24,
          "the request running at SIGTERM: event %d, finish %d, %d tokens (expected 24)", last_done.type,
          last_done.finish, n);
    CHECK(refusal.type == SLM_EVENT_ERROR && refusal.error == -ESHUTDOWN,
          "a submission while draining: event %d, error %d", refusal.type, refusal.error);
    slm_close(&c);
    rc = wait_exit(pid, 120);
    CHECK(rc == 0, "slmd exit status after SIGTERM: %d", rc);
    CHECK(access(sock_path, F_OK) == 0, "slmd removed systemd's socket file");
    unlink(sock_path);
}

static void drain_timeout(const char *slmd, const char *model)
{
    snprintf(sock_path, sizeof sock_path, "/tmp/slmd-sd-%d-b.sock", (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        execl(slmd, slmd, "serve", "--socket", sock_path, "--model", model, "--kv-cache-mem", "64M", "--threads", "2",
              "--ctx-size", "2048", "--shutdown-timeout", "1", "--socket-mode", "0600", "--log-level", "err",
              (char *)NULL);
        _exit(127);
    }
    struct slm_client *c = NULL;
    for (int i = 0; i < 300 && slm_connect(sock_path, "endless", &c) < 0; i++) usleep(50000);
    CHECK(c != NULL, "cannot connect to %s", sock_path);
    if (!c) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return;
    }
    struct stat st;
    CHECK(stat(sock_path, &st) == 0 && (st.st_mode & 0777) == 0600, "socket mode %04o, expected 0600 (socket-mode)",
          (unsigned)(st.st_mode & 0777));
    int64_t h = submit(c, "Write forever:", 0);   /* up to the context, 2048: far beyond 1 s */
    CHECK(h > 0, "submit: %s", slm_strerror((int)h));
    struct slm_event ev;
    int got_token = 0;
    while (!got_token && slm_next_event(c, &ev, 10000) == 1 && ev.type == SLM_EVENT_TOKEN) got_token = ev.handle == h;
    CHECK(got_token, "the endless request gave no token: event %d, error %d %s", ev.type, ev.error,
          ev.type == SLM_EVENT_ERROR ? ev.message : "");
    double t0 = now_s();
    kill(pid, SIGTERM);
    int n;
    ev = finish(c, h, &n, 10000);
    double took = now_s() - t0;
    CHECK(ev.type == SLM_EVENT_DONE && ev.finish == SLM_FINISH_CANCELLED,
          "an endless request past --shutdown-timeout 1: event %d, finish %d", ev.type, ev.finish);
    CHECK(took > 0.5 && took < 15, "cancelled %.2f s after SIGTERM (shutdown-timeout 1 s)", took);   /* generous: sanitizer builds */
    slm_close(&c);
    int rc = wait_exit(pid, 10);
    CHECK(rc == 0, "slmd exit status after the drain timeout: %d", rc);
    CHECK(access(sock_path, F_OK) != 0, "slmd left its own socket file behind");
}

int main(void)
{
    char model[512];
    const char *slmd = test_slmd_and_model(model, sizeof model);
    if (!slmd) return 77;
    if (system("command -v systemd-socket-activate >/dev/null 2>&1") != 0) {
        printf("skip: systemd-socket-activate is not installed (packaging/setup.sh installs systemd)\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(notify_path, sizeof notify_path, "/tmp/slmd-sd-%d.notify", (int)getpid());
    snprintf(sock_path, sizeof sock_path, "/tmp/slmd-sd-%d.sock", (int)getpid());
    snprintf(conf_path, sizeof conf_path, "/tmp/slmd-sd-%d.conf", (int)getpid());
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, notify_path);
    unlink(notify_path);
    if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&a, sizeof a)) {
        printf("cannot bind the notify socket %s\n", notify_path);
        return 1;
    }
    pthread_t reader;
    pthread_create(&reader, NULL, notify_reader, NULL);
    activated(slmd, model);
    drain_timeout(slmd, model);
    notify_quit = 1;
    pthread_join(reader, NULL);
    unlink(notify_path);
    unlink(conf_path);
    if (failures) printf("test_systemd: %d failures\n", failures);
    else printf("test_systemd: ok\n");
    return failures ? 1 : 0;
}
