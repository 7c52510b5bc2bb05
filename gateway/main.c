/*
 * gateway/main.c - slm-gateway: an OpenAI-compatible HTTP server in front of `slmd serve`
 * (docs/gateway.md). Parses the options, reads the API key, starts the HTTP server and waits
 * for SIGINT or SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/parse.h"
#include "gateway/server.h"

static const char USAGE[] =
    "usage: slm-gateway [options]\n"
    "An OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /tokenize,\n"
    "/detokenize, /health, /metrics) in front of a running `slmd serve`.\n"
    "  --listen ADDR:PORT     where to listen (default 127.0.0.1:8000; [::1]:8000 for IPv6; port 0: any)\n"
    "  --socket PATH          slmd's socket (default $SLM_SOCKET, else " SLM_DEFAULT_SOCKET ")\n"
    "  --api-key-file FILE    require 'Authorization: Bearer KEY', KEY the file's first line\n"
    "  --max-body SIZE        largest request body (default 4M)\n"
    "  --max-header SIZE      buffer for a request's line and headers (default 64K)\n"
    "  --timeout SECONDS      close a connection idle or stalled this long (default 30)\n"
    "  --max-connections N    at most N HTTP connections at once (default 256)\n"
    "  --log-level LEVEL      err, warning, notice, info, debug (default notice)\n"
    "  --help, --version\n";

/* ADDR:PORT (ADDR an IPv4 address, [IPv6] or a name) into *out. 0, or -EINVAL with err. */
static int parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *len, char *err)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof host) goto bad;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    char *h = host;
    if (h[0] == '[') {
        size_t n = strlen(h);
        if (n < 3 || h[n - 1] != ']') goto bad;
        h[n - 1] = 0;
        h++;
    }
    long long port;
    if (slm_parse_int(colon + 1, 0, 65535, &port, NULL)) goto bad;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(h, colon + 1, &hints, &res);
    if (rc != 0) {
        slm_err_set(err, "--listen %s: %s", text, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
bad:
    slm_err_set(err, "--listen: '%s' is not ADDR:PORT", text);
    return -EINVAL;
}

/* The first line of path, without surrounding white space: malloc'd, or NULL with err. */
static char *read_key(const char *path, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        slm_err_set(err, "--api-key-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = slm_read_all(f, err);
    fclose(f);
    if (!text) return NULL;
    char *k = text + strspn(text, " \t\r\n");
    k[strcspn(k, "\r\n")] = 0;
    size_t n = strlen(k);
    while (n && (k[n - 1] == ' ' || k[n - 1] == '\t')) k[--n] = 0;
    if (n == 0) {
        slm_err_set(err, "--api-key-file %s: the first line is empty", path);
        free(text);
        return NULL;
    }
    memmove(text, k, n + 1);
    return text;
}

int main(int argc, char **argv)
{
    enum { OPT_LISTEN = 1, OPT_SOCKET, OPT_KEY, OPT_BODY, OPT_HEADER, OPT_TIMEOUT, OPT_CONNS, OPT_LOG, OPT_HELP, OPT_VERSION };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},   {"socket", required_argument, NULL, OPT_SOCKET},
        {"api-key-file", required_argument, NULL, OPT_KEY}, {"max-body", required_argument, NULL, OPT_BODY},
        {"max-header", required_argument, NULL, OPT_HEADER}, {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"max-connections", required_argument, NULL, OPT_CONNS}, {"log-level", required_argument, NULL, OPT_LOG},
        {"help", no_argument, NULL, OPT_HELP},              {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct slm_gw_options o = {.max_body = 4u << 20, .max_header = 64u << 10, .timeout_s = 30, .max_connections = 256};
    const char *listen = "127.0.0.1:8000", *key_file = NULL;
    char err[SLM_ERR_LEN] = "";
    unsigned long long size;
    long long n;
    slm_log_program = "slm-gateway";
    slm_log_set_level("notice");
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN: listen = optarg; break;
        case OPT_SOCKET: o.socket = optarg; break;
        case OPT_KEY: key_file = optarg; break;
        case OPT_BODY:
            if (slm_parse_size(optarg, 1, 1ull << 30, &size, err)) goto usage;
            o.max_body = (size_t)size;
            break;
        case OPT_HEADER:
            if (slm_parse_size(optarg, 4096, 16u << 20, &size, err)) goto usage;
            o.max_header = (size_t)size;
            break;
        case OPT_TIMEOUT:
            if (slm_parse_int(optarg, 1, 86400, &n, err)) goto usage;
            o.timeout_s = (unsigned)n;
            break;
        case OPT_CONNS:
            if (slm_parse_int(optarg, 1, 65536, &n, err)) goto usage;
            o.max_connections = (unsigned)n;
            break;
        case OPT_LOG:
            if (slm_log_set_level(optarg)) {
                slm_err_set(err, "--log-level: '%s' is not err, warning, notice, info or debug", optarg);
                goto usage;
            }
            break;
        case OPT_HELP: fputs(USAGE, stdout); return 0;
        case OPT_VERSION: printf("slm-gateway %s\n", SLM_VERSION); return 0;
        default:
            slm_err_set(err, "unknown or incomplete option '%s'", argv[optind - 1]);
            goto usage;
        }
    }
    if (optind < argc) {
        slm_err_set(err, "unexpected argument '%s'", argv[optind]);
        goto usage;
    }
    struct sockaddr_storage addr;
    socklen_t addr_len;
    if (parse_listen(listen, &addr, &addr_len, err)) goto usage;
    char *key = NULL;
    if (key_file && !(key = read_key(key_file, err))) {
        fprintf(stderr, "slm-gateway: %s\n", err);
        return 1;
    }
    o.api_key = key;

    /* Signals are taken by sigwait below; the HTTP threads inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct slm_gw_server *s = slm_gw_server_start(&o, &addr, addr_len, err);
    if (!s) {
        fprintf(stderr, "slm-gateway: --listen %s: %s\n", listen, err);
        free(key);
        return 1;
    }
    char host[INET6_ADDRSTRLEN] = "?";
    const void *ip = addr.ss_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&addr)->sin6_addr
                                                : (const void *)&((struct sockaddr_in *)&addr)->sin_addr;
    inet_ntop(addr.ss_family, ip, host, sizeof host);
    slm_log(SLM_LOG_NOTICE, "listening on http://%s%s%s:%u (slmd at %s)%s", addr.ss_family == AF_INET6 ? "[" : "",
            host, addr.ss_family == AF_INET6 ? "]" : "", slm_gw_server_port(s),
            o.socket ? o.socket : getenv("SLM_SOCKET") ? getenv("SLM_SOCKET") : SLM_DEFAULT_SOCKET,
            key ? ", API key required" : "");
    int sig;
    sigwait(&stop, &sig);
    slm_log(SLM_LOG_NOTICE, "stopping (signal %d)", sig);
    slm_gw_server_stop(&s);
    free(key);
    return 0;
usage:
    fprintf(stderr, "slm-gateway: %s\n%s", err, USAGE);
    return 2;
}
