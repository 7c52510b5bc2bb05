/*
 * bench/gateway_ttft.c - what an OpenAI-compatible HTTP front (slm-gateway) adds to the time to
 * first token, measured in pairs: each round sends one request straight through libslm and one
 * through each --url, in an order that rotates, one after the other on the same slmd; each
 * request's TTFT is from just before its submit (libslm) or its connect (HTTP) to its first
 * token with text (a TOKEN event with text; a streamed /v1/completions chunk with text). The
 * figure is the p50 of the per-round differences (HTTP minus libslm), which leaves out the
 * machine's drift that separate runs (bench/compare-gateway.sh) cannot: on a busy 2-core machine
 * a 90 ms TTFT moves by more than the millisecond this is about.
 *
 * Usage: gateway_ttft --socket PATH --url http://127.0.0.1:PORT [--url ...] [--rounds N]
 *                     [--input-len N] [--output-len N]
 * Each request has a prompt of its own (random token ids, the first one unique) so that none
 * finds another's blocks in the prefix cache; greedy, end of generation ignored. One HTTP
 * connection per request, as slm-bench's --target openai; TCP_NODELAY on the client side.
 * Exit status: 0, 1 when a request failed, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/slm.h"

#define MAX_URLS 4
#define MAX_INPUT 2048

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Request k's prompt: the same random ids for all but the first, which is unique to k. */
static void make_prompt(int k, int32_t *ids, int n)
{
    uint32_t s = 12345;
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        ids[i] = 1000 + (int32_t)((s >> 8) % 20000);
    }
    ids[0] = 100 + k;
}

/* TTFT through libslm in ms, or < 0 when the request failed. */
static double ttft_libslm(struct slm_client *c, const int32_t *ids, int n, int output_len)
{
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = output_len;
    p.ignore_eos = 1;
    p.temperature = 0;
    double t0 = now_ms(), first = -1;
    int64_t h = slm_submit_ids(c, ids, n, &p);
    if (h < 0) return -1;
    for (;;) {
        struct slm_event ev;
        if (slm_next_event(c, &ev, 60000) != 1 || ev.type == SLM_EVENT_ERROR) return -1;
        if (ev.type == SLM_EVENT_TOKEN && ev.text_len > 0 && first < 0) first = now_ms() - t0;
        if (ev.type == SLM_EVENT_DONE) return first;
    }
}

/* TTFT of a streamed POST /v1/completions on 127.0.0.1:port in ms, or < 0 when it failed. */
static double ttft_http(int port, const int32_t *ids, int n, int output_len)
{
    static char body[16 * MAX_INPUT], req[16 * MAX_INPUT + 512], in[1 << 20];
    int len = snprintf(body, sizeof body, "{\"prompt\":[");
    for (int i = 0; i < n; i++) len += snprintf(body + len, sizeof body - (size_t)len, "%s%d", i ? "," : "", ids[i]);
    len += snprintf(body + len, sizeof body - (size_t)len,
                    "],\"max_tokens\":%d,\"ignore_eos\":true,\"temperature\":0,\"stream\":true}", output_len);
    int req_len = snprintf(req, sizeof req,
                           "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                           "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                           port, len, body);
    double t0 = now_ms(), first = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (send(fd, req, (size_t)req_len, MSG_NOSIGNAL) != req_len) goto fail;
    size_t got = 0, scanned = 0;
    for (;;) {
        ssize_t k = recv(fd, in + got, sizeof in - got - 1, 0);
        if (k <= 0) break;
        got += (size_t)k;
        in[got] = 0;
        if (first >= 0) continue;
        /* A chunk with text: "text":" followed by something else than the closing quote. */
        for (char *q = in + (scanned > 8 ? scanned - 8 : 0); (q = strstr(q, "\"text\":\"")); q += 8)
            if (q[8] && q[8] != '"') {
                first = now_ms() - t0;
                break;
            }
        scanned = got;
        if (got + 1 >= sizeof in) got = scanned = 0;   /* the rest is not looked at */
    }
    if (strncmp(in, "HTTP/1.1 200", 12) != 0 && first < 0) goto fail;
    close(fd);
    return first;
fail:
    if (fd >= 0) close(fd);
    return -1;
}

static double load_1min(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf", &l) != 1) l = -1;
    if (f) fclose(f);
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL;
    int ports[MAX_URLS], n_urls = 0, rounds = 100, input_len = 64, output_len = 2;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        if (!strcmp(argv[i], "--socket")) socket_path = v;
        else if (!strcmp(argv[i], "--url") && n_urls < MAX_URLS && sscanf(v, "http://127.0.0.1:%d", &ports[n_urls]) == 1) n_urls++;
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(v);
        else if (!strcmp(argv[i], "--input-len")) input_len = atoi(v);
        else if (!strcmp(argv[i], "--output-len")) output_len = atoi(v);
        else goto usage;
        i++;
    }
    if (!n_urls || rounds < 1 || input_len < 1 || input_len > MAX_INPUT || output_len < 1) goto usage;
    struct slm_client *c;
    if (slm_connect(socket_path, "gateway_ttft", &c) < 0) {
        fprintf(stderr, "gateway_ttft: cannot connect to slmd: %s\n", slm_last_error());
        return 1;
    }
    int n_targets = n_urls + 1, warmup = n_targets;
    double *ttft = calloc((size_t)(n_targets * rounds), sizeof *ttft), *diff = calloc((size_t)rounds, sizeof *diff);
    int32_t ids[MAX_INPUT];
    int k = 0;
    double load_before = load_1min();
    for (int r = -warmup; r < rounds; r++) {
        double t[MAX_URLS + 1];
        for (int j = 0; j < n_targets; j++) {
            int target = (r + warmup + j) % n_targets;   /* 0: libslm, 1..: the URLs */
            make_prompt(k++, ids, input_len);
            t[target] = target ? ttft_http(ports[target - 1], ids, input_len, output_len)
                               : ttft_libslm(c, ids, input_len, output_len);
            if (t[target] < 0) {
                fprintf(stderr, "gateway_ttft: a request %s failed\n", target ? "through HTTP" : "through libslm");
                return 1;
            }
        }
        if (r >= 0)
            for (int j = 0; j < n_targets; j++) ttft[j * rounds + r] = t[j];
    }
    printf("%d rounds, prompts of %d tokens, load %.2f before, %.2f after\n", rounds, input_len, load_before, load_1min());
    double base = median(memcpy(diff, ttft, (size_t)rounds * sizeof *diff), rounds);
    printf("%-28s TTFT p50 %8.3f ms\n", "libslm", base);
    for (int u = 1; u < n_targets; u++) {
        for (int r = 0; r < rounds; r++) diff[r] = ttft[u * rounds + r] - ttft[r];
        double d = median(diff, rounds);
        printf("http://127.0.0.1:%-11d TTFT p50 %8.3f ms, paired difference p50 %+.3f ms\n", ports[u - 1],
               median(ttft + u * rounds, rounds), d);
    }
    slm_close(&c);
    free(ttft);
    free(diff);
    return 0;
usage:
    fprintf(stderr, "usage: gateway_ttft --socket PATH --url http://127.0.0.1:PORT [--url ...] [--rounds N] "
                    "[--input-len N] [--output-len N]\n");
    return 2;
}
