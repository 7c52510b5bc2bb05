/*
 * bench/lib/http.c - a minimal HTTP/1.1 client for slm-bench's HTTP targets (http.h): one
 * request per TCP connection ("Connection: close"), bodies with Content-Length, chunked or up
 * to the close, and the server-sent events of llama-server's POST /completion or OpenAI's
 * POST /v1/completions with "stream": true.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "bench/lib/http.h"
#include "common/log.h"

#define HEAD_MAX 16384

/* What the response's body feeds: 0 to go on, < 0 to stop with that error. */
typedef int (*body_fn)(void *ctx, const char *bytes, size_t n, char *err);

struct reader {
    int fd;
    double deadline;
    char buf[16384];
    size_t pos, len;
};

static int connect_to(const struct slm_bench_http_server *t, char *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
    int rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc) {
        slm_err_set(err, "%s:%s: %s", t->host, t->port, gai_strerror(rc));
        return -EHOSTUNREACH;
    }
    int fd = -1, e = 0;
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        slm_err_set(err, "%s:%s: cannot connect: %s", t->host, t->port, strerror(e ? e : ECONNREFUSED));
        return -(e ? e : ECONNREFUSED);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const char *p, size_t n, char *err)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : EPIPE;
            slm_err_set(err, "send: %s", strerror(e));
            return -e;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Refills rd->buf; 1, 0 at the end of the stream, or -errno. */
static int fill(struct reader *rd, char *err)
{
    for (;;) {
        int ms = (int)((rd->deadline - slm_bench_now()) * 1e3);
        if (ms <= 0) {
            slm_err_set(err, "timed out");
            return -ETIMEDOUT;
        }
        struct pollfd pfd = {.fd = rd->fd, .events = POLLIN};
        int rc = poll(&pfd, 1, ms);
        if (rc < 0 && errno == EINTR) continue;
        if (rc == 0) continue;
        ssize_t k = recv(rd->fd, rd->buf, sizeof rd->buf, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            slm_err_set(err, "recv: %s", strerror(e));
            return -e;
        }
        rd->pos = 0;
        rd->len = (size_t)k;
        return k > 0;
    }
}

/* One line ending in \n into line (without \r\n). 0, or -errno. */
static int read_line(struct reader *rd, char *line, size_t cap, char *err)
{
    size_t n = 0;
    for (;;) {
        if (rd->pos == rd->len) {
            int rc = fill(rd, err);
            if (rc <= 0) {
                if (rc == 0) slm_err_set(err, "connection closed in the response's head");
                return rc ? rc : -EPROTO;
            }
        }
        char ch = rd->buf[rd->pos++];
        if (ch == '\n') break;
        if (n + 1 >= cap) {
            slm_err_set(err, "response head line too long");
            return -EPROTO;
        }
        line[n++] = ch;
    }
    if (n && line[n - 1] == '\r') n--;
    line[n] = 0;
    return 0;
}

/* Feeds up to n bytes of the body (n < 0: up to the close) to fn. 0, or -errno. */
static int read_body(struct reader *rd, long long n, body_fn fn, void *ctx, char *err)
{
    while (n != 0) {
        if (rd->pos == rd->len) {
            int rc = fill(rd, err);
            if (rc < 0) return rc;
            if (rc == 0) {
                if (n < 0) return 0;
                slm_err_set(err, "connection closed in the body");
                return -EPROTO;
            }
        }
        size_t k = rd->len - rd->pos;
        if (n > 0 && (long long)k > n) k = (size_t)n;
        int rc = fn(ctx, rd->buf + rd->pos, k, err);
        if (rc < 0) return rc;
        rd->pos += k;
        if (n > 0) n -= (long long)k;
    }
    return 0;
}

/* Sends request (head and body), reads the response and feeds its body to fn. The HTTP status
 * goes to *status. 0, or -errno. */
static int exchange(const struct slm_bench_http_server *t, const char *request, size_t len, double timeout_s, int *status,
                    body_fn fn, void *ctx, char *err)
{
    int fd = connect_to(t, err);
    if (fd < 0) return fd;
    struct reader *rd = malloc(sizeof *rd);
    char *line = malloc(HEAD_MAX);
    int rc = -ENOMEM;
    if (!rd || !line) goto out;
    rd->fd = fd;
    rd->deadline = slm_bench_now() + timeout_s;
    rd->pos = rd->len = 0;
    if ((rc = send_all(fd, request, len, err))) goto out;
    if ((rc = read_line(rd, line, HEAD_MAX, err))) goto out;
    if (sscanf(line, "HTTP/%*d.%*d %d", status) != 1) {
        slm_err_set(err, "not an HTTP response: '%.60s'", line);
        rc = -EPROTO;
        goto out;
    }
    long long content_length = -1;
    int chunked = 0;
    for (;;) {
        if ((rc = read_line(rd, line, HEAD_MAX, err))) goto out;
        if (!line[0]) break;
        if (!strncasecmp(line, "content-length:", 15)) content_length = strtoll(line + 15, NULL, 10);
        if (!strncasecmp(line, "transfer-encoding:", 18) && strcasestr(line + 18, "chunked")) chunked = 1;
    }
    if (!chunked) {
        rc = read_body(rd, content_length, fn, ctx, err);
        goto out;
    }
    for (;;) {
        if ((rc = read_line(rd, line, HEAD_MAX, err))) goto out;
        char *end;
        long long size = strtoll(line, &end, 16);
        if (end == line || size < 0) {
            slm_err_set(err, "bad chunk size '%.20s'", line);
            rc = -EPROTO;
            goto out;
        }
        if (size == 0) break;   /* trailers and the final CRLF: the connection closes anyway */
        if ((rc = read_body(rd, size, fn, ctx, err))) goto out;
        if ((rc = read_line(rd, line, HEAD_MAX, err))) goto out;
    }
    rc = 0;
out:
    if (rc == -ENOMEM) slm_err_set(err, "out of memory");
    free(line);
    free(rd);
    close(fd);
    return rc;
}

/* ---- GET */

struct buffer {
    char *p;
    size_t len, cap;
};

static int buffer_add(void *ctx, const char *bytes, size_t n, char *err)
{
    struct buffer *b = ctx;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            slm_err_set(err, "out of memory");
            return -ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, bytes, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int slm_bench_http_get(const struct slm_bench_http_server *t, const char *path, char **body, char *err)
{
    char req[1024];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n%s%.300s%sConnection: close\r\n\r\n", path,
                       t->host, t->port, t->api_key ? "Authorization: Bearer " : "", t->api_key ? t->api_key : "",
                       t->api_key ? "\r\n" : "");
    if (len < 0 || (size_t)len >= sizeof req) {
        slm_err_set(err, "GET %s: the request is too long", path);
        return -EINVAL;
    }
    struct buffer b = {0};
    int status = 0;
    int rc = exchange(t, req, (size_t)len, 30, &status, buffer_add, &b, err);
    if (!rc && status != 200) {
        slm_err_set(err, "GET %s: HTTP %d", path, status);
        rc = -EPROTO;
    }
    if (!rc && !b.p) rc = buffer_add(&b, "", 0, err);
    if (rc) {
        free(b.p);
        return rc;
    }
    *body = b.p;
    return 0;
}

/* ---- POST /completion, streamed */

struct sse {
    struct slm_bench_request *r;
    long *live_tokens;
    int cap;                   /* of r->token_times */
    int status;
    int done;                  /* the final event came */
    int openai;                /* OpenAI's chunks, not llama-server's events */
    struct buffer event;       /* the event being received */
    struct buffer body;        /* the body of an error response (status != 200) */
};

/* One "data: {...}" event. 0, or -errno. */
static int sse_event(struct sse *s, const char *data, char *err)
{
    double now = slm_bench_now();
    json_error_t je;
    json_t *o = json_loads(data, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        slm_err_set(err, "bad event from llama-server: %.80s", data);
        return -EPROTO;
    }
    int rc = 0;
    json_t *e = json_object_get(o, "error");
    if (e) {
        json_t *m = json_object_get(e, "message");
        slm_err_set(err, "llama-server: %s", json_is_string(m) ? json_string_value(m) : "error");
        rc = -EPROTO;
        goto out;
    }
    json_t *tokens = json_object_get(o, "tokens");
    size_t k = json_is_array(tokens) ? json_array_size(tokens) : 0;
    for (size_t j = 0; j < k && !rc; j++) rc = slm_bench_request_token(s->r, now, &s->cap);
    if (rc) goto out;
    if (k) {
        if (s->r->n_output == (int)k) s->r->t_first = now;
        __atomic_fetch_add(s->live_tokens, (long)k, __ATOMIC_RELAXED);
    }
    if (json_is_true(json_object_get(o, "stop"))) {
        s->done = 1;
        s->r->t_end = now;
        json_t *timings = json_object_get(o, "timings");
        s->r->n_input = (int)json_integer_value(json_object_get(o, "tokens_evaluated"));
        s->r->n_cached = (int)json_integer_value(json_object_get(timings, "cache_n"));
        /* Tokens whose text llama-server held back (an incomplete UTF-8 character) come in no
         * partial event; they count as arriving now. */
        int predicted = (int)json_integer_value(json_object_get(o, "tokens_predicted"));
        while (s->r->n_output < predicted && !rc) rc = slm_bench_request_token(s->r, now, &s->cap);
        if (!s->r->t_first && s->r->n_output) s->r->t_first = now;
    }
out:
    json_decref(o);
    return rc;
}

/* One "data: {...}" event of OpenAI's streamed /v1/completions: a chunk per token (or per few:
 * the text of a chunk counts as one token; usage.completion_tokens, in the last chunk when
 * stream_options.include_usage is honoured, tops the count up at the end). 0, or -errno. */
static int openai_event(struct sse *s, const char *data, char *err)
{
    double now = slm_bench_now();
    json_t *o = json_loads(data, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        slm_err_set(err, "bad event from the server: %.80s", data);
        return -EPROTO;
    }
    int rc = 0;
    json_t *e = json_object_get(o, "error");
    if (e) {
        json_t *m = json_object_get(e, "message");
        slm_err_set(err, "server: %s", json_is_string(m) ? json_string_value(m) : "error");
        rc = -EPROTO;
        goto out;
    }
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    json_t *text = json_object_get(choice, "text");
    if (json_is_string(text) && json_string_length(text) > 0) {
        if ((rc = slm_bench_request_token(s->r, now, &s->cap))) goto out;
        if (s->r->n_output == 1) s->r->t_first = now;
        __atomic_fetch_add(s->live_tokens, 1, __ATOMIC_RELAXED);
    }
    json_t *finish = json_object_get(choice, "finish_reason");
    if (json_is_string(finish)) s->r->t_end = now;
    json_t *usage = json_object_get(o, "usage");
    if (json_is_object(usage)) {
        s->r->n_input = (int)json_integer_value(json_object_get(usage, "prompt_tokens"));
        s->r->n_cached = (int)json_integer_value(json_object_get(json_object_get(usage, "prompt_tokens_details"),
                                                                 "cached_tokens"));
        int completion = (int)json_integer_value(json_object_get(usage, "completion_tokens"));
        double at = s->r->t_end ? s->r->t_end : now;
        while (s->r->n_output < completion && !rc) rc = slm_bench_request_token(s->r, at, &s->cap);
        if (!s->r->t_first && s->r->n_output) s->r->t_first = at;
    }
out:
    json_decref(o);
    return rc;
}

static int sse_bytes(void *ctx, const char *bytes, size_t n, char *err)
{
    struct sse *s = ctx;
    if (s->status != 200) return buffer_add(&s->body, bytes, n, err);
    for (size_t i = 0; i < n; i++) {
        char ch = bytes[i];
        if (ch == '\r') continue;
        if (ch != '\n' || !s->event.len || s->event.p[s->event.len - 1] != '\n') {
            int rc = buffer_add(&s->event, &ch, 1, err);
            if (rc) return rc;
            continue;
        }
        /* A blank line ends the event: its data lines, joined. */
        char *p = s->event.p, *data = NULL;
        int rc = 0;
        for (char *next; p && *p; p = next) {
            next = strchr(p, '\n');
            if (next) *next++ = 0;
            if (!strncmp(p, "data:", 5)) data = p + 5 + (p[5] == ' ');
            if (!strncmp(p, "error:", 6)) {
                slm_err_set(err, "llama-server: %.200s", p + 6);
                rc = -EPROTO;
            }
        }
        if (!rc && data && s->openai && strcmp(data, "[DONE]") == 0) {
            s->done = 1;
            if (!s->r->t_end) s->r->t_end = slm_bench_now();
        } else if (!rc && data && strcmp(data, "[DONE]") != 0) {
            rc = s->openai ? openai_event(s, data, err) : sse_event(s, data, err);
        }
        s->event.len = 0;
        if (rc) return rc;
    }
    return 0;
}

int slm_bench_http_complete(const struct slm_bench_http_server *t, double timeout_s, const struct slm_bench_prompt *p,
                            struct slm_bench_request *r, long *live_tokens, char *err)
{
    json_t *o = json_object(), *prompt;
    if (p->ids) {
        prompt = json_array();
        for (int i = 0; i < p->n_ids; i++) json_array_append_new(prompt, json_integer(p->ids[i]));
    } else {
        prompt = json_string(p->text);
    }
    json_object_set_new(o, "prompt", prompt);
    if (t->openai) {   /* ignore_eos is vLLM's and slm-gateway's extra; other servers ignore it */
        if (t->model[0]) json_object_set_new(o, "model", json_string(t->model));
        json_object_set_new(o, "max_tokens", json_integer(p->output_len));
        json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    } else {
        json_object_set_new(o, "n_predict", json_integer(p->output_len));
        json_object_set_new(o, "return_tokens", json_true());
        json_object_set_new(o, "cache_prompt", json_true());
    }
    json_object_set_new(o, "ignore_eos", json_true());
    json_object_set_new(o, "temperature", json_real(0));
    json_object_set_new(o, "stream", json_true());
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *req = NULL;
    int len = body ? asprintf(&req,
                              "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                              "Accept: text/event-stream\r\n%s%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                              t->openai ? "/v1/completions" : "/completion", t->host, t->port,
                              t->api_key ? "Authorization: Bearer " : "", t->api_key ? t->api_key : "",
                              t->api_key ? "\r\n" : "", strlen(body), body)
                   : -1;
    free(body);
    if (len < 0) {
        slm_err_set(err, "out of memory");
        r->failed = 1;
        r->t_end = slm_bench_now();
        return -ENOMEM;
    }
    struct sse s = {.r = r, .live_tokens = live_tokens, .status = 200, .openai = t->openai};
    const char *who = t->openai ? "server" : "llama-server";
    /* The status is known before the body: exchange fills s.status first, then feeds. */
    int rc = exchange(t, req, (size_t)len, timeout_s, &s.status, sse_bytes, &s, err);
    free(req);
    if (!rc && s.status != 200) {
        slm_err_set(err, "%s: HTTP %d: %.200s", who, s.status, s.body.p ? s.body.p : "");
        rc = -EPROTO;
    }
    if (!rc && !s.done) {
        slm_err_set(err, "%s: the stream ended without its final event", who);
        rc = -EPROTO;
    }
    free(s.event.p);
    free(s.body.p);
    if (rc) {
        r->failed = 1;
        r->t_end = slm_bench_now();
    }
    return rc;
}
