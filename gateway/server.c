/*
 * gateway/server.c - slm-gateway's HTTP side (server.h).
 *
 * Each HTTP connection has a thread of its own, kept from one connection to the next (lanes.c,
 * each with its own libmicrohttpd daemon): a completion blocks that thread in
 * slm_next_event (an idle libslm client taken from the pool for the request), and a streamed
 * answer is produced by a content-reader callback that blocks the same way. While it waits the
 * thread looks at the HTTP socket every 100 ms: a peer that hung up cancels its slmd request,
 * whose DONE is awaited before the client goes back to the pool (docs/gateway.md).
 */
#define _GNU_SOURCE
#include "gateway/server.h"

#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/log.h"
#include "gateway/lanes.h"

struct slm_gw_server {
    struct slm_gw_options o;
    struct slm_gw_pool pool;
    struct slm_gw_metrics metrics;
    struct slm_gw_lanes *lanes;  /* the listening socket and the connections' threads */
    long started;              /* wall-clock seconds, for /v1/models' "created" */
};

enum route { ROUTE_NONE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_MODEL, ROUTE_METRICS, ROUTE_CHAT, ROUTE_COMPLETIONS,
             ROUTE_TOKENIZE, ROUTE_DETOKENIZE };

/* One HTTP request while its body arrives (libmicrohttpd's *con_cls). */
struct upload {
    enum route route;
    char *body;
    size_t len, cap;
    int too_big;
    double t_arrive;
};

/* One completion in flight: its slmd client and request, and (streaming) the bytes not yet sent. */
struct job {
    struct slm_gw_server *s;
    struct MHD_Connection *conn;
    int fd;                    /* the HTTP socket, watched for a hang-up */
    struct slm_client *c;
    int64_t h;
    struct slm_gw_request r;
    struct slm_gw_result res;
    char id[48], model[128];
    long created;
    double t_arrive, t_first, last_check;
    int first_chunk;           /* the next chunk is the first (chat: carries the role) */
    int done;                  /* slmd's DONE or ERROR of h came (or the client is unusable) */
    int ended;                 /* streaming: "data: [DONE]" is in buf */
    int healthy;               /* the client may go back to the pool */
    char *buf;                 /* streaming: SSE bytes [off, len) still to send */
    size_t len, off, cap;
    struct slm_gw_error err;   /* when the request failed */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- answers */

static enum MHD_Result answer(struct slm_gw_server *s, struct MHD_Connection *conn, unsigned status,
                              const char *type, char *body)
{
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    slm_gw_metrics_http(&s->metrics, status);
    return rc;
}

static enum MHD_Result answer_json(struct slm_gw_server *s, struct MHD_Connection *conn, unsigned status, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return answer(s, conn, status, "application/json", text);
}

static enum MHD_Result answer_error(struct slm_gw_server *s, struct MHD_Connection *conn, const struct slm_gw_error *e)
{
    slm_log(SLM_LOG_INFO, "%u: %s", e->status, e->message);
    return answer(s, conn, e->status, "application/json", slm_gw_error_json(e));
}

/* slmd's error (a negative errno, its message) as an HTTP error. */
static void error_from_slmd(struct slm_gw_error *e, int err, const char *message)
{
    const char *why = message && message[0] ? message : slm_strerror(err);
    if (err == -E2BIG || err == -EMSGSIZE)
        slm_gw_error_set(e, 413, "invalid_request_error", NULL, "context_length_exceeded", "%s", why);
    else if (err == -EINVAL || err == -ENOTSUP || err == -ERANGE)
        slm_gw_error_set(e, 400, "invalid_request_error", NULL, NULL, "%s", why);
    else if (err == -ENOMEM)
        slm_gw_error_set(e, 500, "server_error", NULL, NULL, "%s", why);
    else
        slm_gw_error_set(e, 503, "server_error", NULL, "unavailable", "slmd: %s", why);
}

/* ---- waiting on slmd, watching the HTTP peer */

static int peer_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* The next event of j's request: 1, or -ECONNABORTED when the HTTP peer hung up, or libslm's
 * error (the client is then unusable). */
static int next_event(struct job *j, struct slm_event *ev)
{
    for (;;) {
        double t = now_s();
        if (t - j->last_check > 0.1) {
            j->last_check = t;
            if (peer_gone(j->fd)) return -ECONNABORTED;
        }
        int rc = slm_next_event(j->c, ev, 100);
        if (rc < 0) return rc;
        if (rc == 1 && ev->handle == j->h) return 1;
    }
}

/* Cancels j's request and waits (up to 5 s) for its end, so that the client can be reused. */
static void cancel_job(struct job *j)
{
    if (j->done || !j->c || j->h <= 0) return;
    slm_log(SLM_LOG_INFO, "%s: cancelled (the HTTP client went away, or the request failed)", j->id);
    j->healthy = 0;
    if (slm_cancel(j->c, j->h) < 0) return;
    double deadline = now_s() + 5;
    struct slm_event ev;
    while (now_s() < deadline) {
        int rc = slm_next_event(j->c, &ev, 100);
        if (rc < 0) return;
        if (rc == 1 && ev.handle == j->h && ev.type != SLM_EVENT_TOKEN && ev.type != SLM_EVENT_PROMPT_LOGPROBS) {
            j->res.n_prompt = ev.n_prompt;
            j->res.n_generated = ev.n_generated;
            j->healthy = 1;
            j->done = 1;
            return;
        }
    }
}

/* rc < 0, a failed wait for j's next event: 1 when the HTTP peer hung up (j's request is then
 * cancelled, and the caller drops the connection); else 0, the error in j->err, the request over
 * and its slmd client unusable. */
static int wait_failed(struct job *j, int rc)
{
    if (rc == -ECONNABORTED) {
        cancel_job(j);
        return 1;
    }
    j->healthy = 0;
    j->done = 1;
    error_from_slmd(&j->err, rc, NULL);
    return 0;
}

static int buf_append(struct job *j, char *text)
{
    if (!text) return -ENOMEM;
    size_t n = strlen(text);
    if (j->len + n > j->cap) {
        size_t cap = (j->len + n) * 2 + 256;
        char *b = realloc(j->buf, cap);
        if (!b) {
            free(text);
            return -ENOMEM;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, text, n);
    j->len += n;
    free(text);
    return 0;
}

static int text_append(struct slm_gw_result *res, const char *t, size_t n)
{
    if (res->len + n + 1 > res->cap) {
        size_t cap = (res->len + n + 1) * 2;
        char *b = realloc(res->text, cap);
        if (!b) return -ENOMEM;
        res->text = b;
        res->cap = cap;
    }
    memcpy(res->text + res->len, t, n);
    res->len += n;
    res->text[res->len] = 0;
    return 0;
}

/* One streamed token: its chunk (none for an empty text without logprobs: part of a UTF-8
 * character, which comes with the next token). 0 or -ENOMEM. */
static int stream_token(struct job *j, const char *text, size_t len, json_t *lp)
{
    if (len == 0 && !lp) return 0;
    j->res.len += len;   /* only the offsets of completions' logprobs use it while streaming */
    int rc = buf_append(j, slm_gw_chunk_sse(&j->r, j->id, j->created, j->model, j->first_chunk, text, len, lp, NULL, NULL));
    j->first_chunk = 0;
    return rc;
}

static const char *finish_name(enum slm_finish_reason f)
{
    return f == SLM_FINISH_STOP ? "stop" : f == SLM_FINISH_LENGTH ? "length" : "abort";
}

/* Takes one event of j's request into j: the result, and (streaming) the SSE bytes. 0, or -1
 * with j->err filled (the request failed). */
static int take_event(struct job *j, const struct slm_event *ev)
{
    if (ev->type == SLM_EVENT_PROMPT_LOGPROBS) return 0;
    if (ev->type == SLM_EVENT_ERROR) {
        j->done = 1;
        error_from_slmd(&j->err, ev->error, ev->message);
        return -1;
    }
    if (ev->type == SLM_EVENT_DONE) {
        j->done = 1;
        j->res.n_prompt = ev->n_prompt;
        j->res.n_cached = ev->n_cached;
        j->res.n_generated = ev->n_generated;
        j->res.finish = finish_name(ev->finish);
        if (ev->finish == SLM_FINISH_CANCELLED && !j->r.stream) {
            slm_gw_error_set(&j->err, 503, "server_error", NULL, "unavailable", "slmd cancelled the request (it is stopping)");
            return -1;
        }
        if (!j->r.stream) return 0;
        if (j->first_chunk && j->r.chat &&
            buf_append(j, slm_gw_chunk_sse(&j->r, j->id, j->created, j->model, 1, "", 0, NULL, NULL, NULL)))
            goto oom;
        j->first_chunk = 0;
        if (buf_append(j, slm_gw_chunk_sse(&j->r, j->id, j->created, j->model, 0, NULL, 0, NULL, j->res.finish, NULL)))
            goto oom;
        if (j->r.include_usage &&
            buf_append(j, slm_gw_chunk_sse(&j->r, j->id, j->created, j->model, 0, NULL, 0, NULL, NULL, &j->res)))
            goto oom;
        return 0;
    }
    /* TOKEN */
    if (j->t_first == 0) j->t_first = now_s();
    j->res.n_generated++;
    json_t *lp = NULL;
    if (j->r.logprobs) {
        /* The texts of the alternatives are asked of slmd through this client, which ends the
           life of ev's text and top: copies go to slm_gw_logprobs_add, and ev is not used after. */
        struct slm_event copy = *ev;
        struct slm_top_logprob top[32];
        copy.n_top = ev->n_top < 32 ? ev->n_top : 32;
        memcpy(top, ev->top, (size_t)copy.n_top * sizeof *top);
        copy.top = top;
        char *text = malloc(ev->text_len + 1);
        if (!text) goto oom;
        memcpy(text, ev->text, ev->text_len);
        copy.text = text;
        json_t *into = j->r.stream ? slm_gw_logprobs_new(&j->r) : j->res.logprobs;
        int rc = !into || slm_gw_logprobs_add(&j->r, &j->s->pool, j->c, &copy, into, j->res.len);
        if (rc) {
            free(text);
            if (j->r.stream) json_decref(into);
            goto oom;
        }
        if (j->r.stream) lp = into;
        rc = j->r.stream ? stream_token(j, text, copy.text_len, lp) : text_append(&j->res, text, copy.text_len);
        free(text);
        json_decref(lp);
        if (rc) goto oom;
        return 0;
    }
    if (j->r.stream ? stream_token(j, ev->text, ev->text_len, NULL) : text_append(&j->res, ev->text, ev->text_len))
        goto oom;
    return 0;
oom:
    slm_gw_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

/* Ends j: metrics, the client back to the pool (or closed), everything freed. */
static void job_free(struct job *j)
{
    if (!j) return;
    const char *finish = j->err.status ? "error" : j->res.finish ? j->res.finish : "abort";
    if (j->h > 0)
        slm_gw_metrics_request(&j->s->metrics, finish, j->res.n_prompt, j->res.n_generated,
                               j->t_first ? j->t_first - j->t_arrive : -1, now_s() - j->t_arrive);
    slm_gw_pool_put(&j->s->pool, &j->c, j->healthy && (j->done || j->h <= 0));
    slm_gw_request_free(&j->r);
    free(j->res.text);
    json_decref(j->res.logprobs);
    free(j->buf);
    free(j);
}

/* ---- streaming: libmicrohttpd's content reader */

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct job *j = cls;
    while (j->off == j->len) {
        if (j->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        j->off = j->len = 0;
        if (j->done) {
            if (j->err.status) {   /* after the headers: an error object in the stream, as OpenAI does */
                char *e = slm_gw_error_json(&j->err), *line = NULL;
                if (e && asprintf(&line, "data: %s\n\n", e) < 0) line = NULL;
                free(e);
                if (buf_append(j, line)) return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (buf_append(j, strdup("data: [DONE]\n\n"))) return MHD_CONTENT_READER_END_WITH_ERROR;
            j->ended = 1;
            continue;
        }
        struct slm_event ev;
        int rc = next_event(j, &ev);
        if (rc < 0) {
            if (wait_failed(j, rc)) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        take_event(j, &ev);   /* a failure is in j->err and j->done */
    }
    size_t n = j->len - j->off < max ? j->len - j->off : max;
    memcpy(out, j->buf + j->off, n);
    j->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct job *j = cls;
    cancel_job(j);   /* the peer went away before the end: a no-op when slmd said DONE */
    job_free(j);
}

/* ---- the endpoints */

static const char *bearer_ok(struct slm_gw_server *s, struct MHD_Connection *conn)
{
    if (!s->o.api_key) return NULL;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth) return "no API key: send the header 'Authorization: Bearer KEY'";
    if (strncasecmp(auth, "Bearer ", 7) != 0) return "the Authorization header is not 'Bearer KEY'";
    const char *key = auth + 7;
    size_t n = strlen(key), m = strlen(s->o.api_key);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(key[i] ^ s->o.api_key[i % (m ? m : 1)]);
    return diff ? "incorrect API key" : NULL;
}

static json_t *parse_body(struct upload *u, struct slm_gw_error *e)
{
    json_error_t je;
    json_t *body = json_loadb(u->body ? u->body : "", u->len, 0, &je);
    if (!body)
        slm_gw_error_set(e, 400, "invalid_request_error", NULL, "invalid_json",
                         "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    return body;
}

/* A connection to slmd and (info not NULL) the model's description, asked again when refresh
 * is set. An idle connection that turns out dead (slmd restarted) empties the pool, and a new
 * one is tried. 0, or -1 with e filled (503). */
static int get_client(struct slm_gw_server *s, struct slm_client **c, int *fresh, struct slm_info *info, int refresh,
                      struct slm_gw_error *e)
{
    char why[SLM_ERR_LEN];
    for (int attempt = 0;; attempt++) {
        int is_fresh = 0;
        if (slm_gw_pool_get(&s->pool, c, &is_fresh, why) < 0) {
            slm_gw_error_set(e, 503, "server_error", NULL, "unavailable", "%s", why);
            return -1;
        }
        if (fresh) *fresh = is_fresh;
        int rc = info ? slm_gw_pool_info(&s->pool, *c, refresh, info) : 0;
        if (rc == 0) return 0;
        slm_gw_pool_put(&s->pool, c, 0);
        if (rc == -ECONNRESET && !is_fresh && attempt == 0) {
            slm_gw_pool_flush(&s->pool);
            continue;
        }
        slm_gw_error_set(e, 503, "server_error", NULL, "unavailable", "slmd: %s", slm_strerror(rc));
        return -1;
    }
}

static void new_id(char *out, size_t size, const char *prefix)
{
    uint64_t r[2] = {0, 0};
    if (getrandom(r, sizeof r, 0) != sizeof r) r[0] = (uint64_t)now_s() * 1000003u;
    snprintf(out, size, "%s-%016llx%08llx", prefix, (unsigned long long)r[0], (unsigned long long)(r[1] & 0xffffffffu));
}

static enum MHD_Result completion(struct slm_gw_server *s, struct MHD_Connection *conn, struct upload *u)
{
    struct slm_gw_error e = {0};
    json_t *body = parse_body(u, &e);
    if (!body) return answer_error(s, conn, &e);
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(body);
        return MHD_NO;
    }
    j->s = s;
    j->conn = conn;
    j->t_arrive = u->t_arrive;
    j->first_chunk = 1;
    j->created = (long)time(NULL);
    j->healthy = 1;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    /* Tokens go out as small chunks, one write each: without TCP_NODELAY, Nagle's algorithm holds
     * a chunk until the previous one is acknowledged, and the peer's delayed ACK makes that tens of
     * milliseconds (measured: +58 ms of TTFT p50 at 1 client before this). */
    if (j->fd >= 0) {
        int one = 1;
        if (setsockopt(j->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 && errno != EOPNOTSUPP)
            slm_log(SLM_LOG_DEBUG, "TCP_NODELAY: %s", strerror(errno));
    }
    new_id(j->id, sizeof j->id, u->route == ROUTE_CHAT ? "chatcmpl" : "cmpl");
    struct slm_info info;
    int fresh = 0, retried = 0;
    if (slm_gw_request_parse(body, u->route == ROUTE_CHAT, &j->r, &e) || get_client(s, &j->c, &fresh, &info, 0, &e))
        goto fail;
    snprintf(j->model, sizeof j->model, "%s", info.model);
    if (j->r.model && strcmp(j->r.model, info.model) != 0) {
        slm_gw_error_set(&e, 404, "invalid_request_error", "model", "model_not_found",
                         "The model '%s' does not exist; this server has '%s' (GET /v1/models)", j->r.model, info.model);
        goto fail;
    }
    if (j->r.logprobs && !(j->res.logprobs = slm_gw_logprobs_new(&j->r))) {
        slm_gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        goto fail;
    }
submit:;
    double deadline = now_s() + 30;
    for (;;) {
        if (j->r.chat) j->h = slm_submit_chat(j->c, j->r.msgs, j->r.n_msgs, &j->r.params);
        else if (j->r.ids) j->h = slm_submit_ids(j->c, j->r.ids, j->r.n_ids, &j->r.params);
        else j->h = slm_submit_text(j->c, j->r.prompt, &j->r.params);
        if (j->h != -EAGAIN || now_s() > deadline) break;
        struct slm_event ev;   /* this client's ring is full (it has no other request): wait */
        if (slm_next_event(j->c, &ev, 10) < 0) break;
    }
    /* The first event decides the status: an error before any token is an HTTP error. */
    struct slm_event ev;
    int rc = j->h < 0 ? (int)j->h : next_event(j, &ev);
    if (rc == -ECONNRESET && !fresh && !retried) {
        /* An idle connection whose slmd has gone (restarted): all idle ones are dead; once more
           on a new connection. */
        slm_gw_pool_put(&s->pool, &j->c, 0);
        slm_gw_pool_flush(&s->pool);
        retried = 1;
        if (get_client(s, &j->c, &fresh, &info, 1, &e)) {
            j->h = 0;
            goto fail;
        }
        goto submit;
    }
    if (j->h < 0) {
        error_from_slmd(&e, (int)j->h, NULL);
        j->healthy = j->h != -ECONNRESET;
        j->h = 0;
        goto fail;
    }
    if (rc < 0 && wait_failed(j, rc)) {
        job_free(j);
        return MHD_NO;
    }
    if (rc < 0 || take_event(j, &ev)) {
        e = j->err;
        goto fail;
    }
    if (j->r.stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, j, stream_free);
        if (!resp) goto oom;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);   /* stream_free runs when libmicrohttpd is done with it */
        slm_gw_metrics_http(&s->metrics, 200);
        return ok;
    }
    while (!j->done) {
        rc = next_event(j, &ev);
        if (rc < 0 && wait_failed(j, rc)) {
            job_free(j);
            return MHD_NO;
        }
        if (rc < 0 || take_event(j, &ev)) {
            e = j->err;
            goto fail;
        }
    }
    char *text = slm_gw_response_json(&j->r, j->id, j->created, j->model, &j->res);
    job_free(j);
    return answer(s, conn, 200, "application/json", text);
oom:
    slm_gw_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
fail:
    j->err = e;
    if (!j->done) cancel_job(j);
    job_free(j);
    return answer_error(s, conn, &e);
}

static enum MHD_Result models(struct slm_gw_server *s, struct MHD_Connection *conn, const char *one)
{
    struct slm_gw_error e = {0};
    struct slm_client *c;
    struct slm_info info;
    if (get_client(s, &c, NULL, &info, 1, &e)) return answer_error(s, conn, &e);
    slm_gw_pool_put(&s->pool, &c, 1);
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:i, s:{s:s, s:s, s:i}}", "id", info.model, "object", "model",
                              "created", (json_int_t)s->started, "owned_by", "slmd", "max_model_len", info.n_ctx, "meta", "arch",
                              info.arch, "backend", info.backend, "n_vocab", info.n_vocab);
    if (!one) return answer_json(s, conn, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model));
    if (strcmp(one, info.model) == 0) return answer_json(s, conn, 200, model);
    json_decref(model);
    slm_gw_error_set(&e, 404, "invalid_request_error", "model", "model_not_found", "The model '%s' does not exist", one);
    return answer_error(s, conn, &e);
}

static enum MHD_Result health(struct slm_gw_server *s, struct MHD_Connection *conn)
{
    struct slm_gw_error e = {0};
    struct slm_client *c;
    struct slm_info info;
    if (get_client(s, &c, NULL, &info, 1, &e)) return answer_error(s, conn, &e);   /* a round trip to slmd */
    slm_gw_pool_put(&s->pool, &c, 1);
    return answer_json(s, conn, 200, json_pack("{s:s, s:s}", "status", "ok", "model", info.model));
}

static enum MHD_Result metrics(struct slm_gw_server *s, struct MHD_Connection *conn)
{
    struct slm_client *c = NULL;
    struct slm_stats st;
    struct slm_info info = {0};
    char why[SLM_ERR_LEN];
    int ok = slm_gw_pool_get(&s->pool, &c, NULL, why) == 0 && slm_gw_pool_info(&s->pool, c, 0, &info) == 0 &&
             slm_stats(c, &st) == 0;
    if (!ok && c) slm_gw_pool_flush(&s->pool);   /* slmd went away: the idle connections too */
    slm_gw_pool_put(&s->pool, &c, ok);
    return answer(s, conn, 200, "text/plain; version=0.0.4; charset=utf-8",
                  slm_gw_metrics_render(&s->metrics, info.model, ok ? &st : NULL));
}

/* POST /tokenize {"prompt": TEXT} (vLLM; llama-server's "content" also) -> {"tokens", "count",
 * "max_model_len"}; POST /detokenize {"tokens": [ids]} -> {"prompt": TEXT}. */
static enum MHD_Result tokens(struct slm_gw_server *s, struct MHD_Connection *conn, struct upload *u)
{
    struct slm_gw_error e = {0};
    json_t *body = parse_body(u, &e), *out = NULL;
    struct slm_client *c = NULL;
    struct slm_info info;
    if (!body) return answer_error(s, conn, &e);
    int detok = u->route == ROUTE_DETOKENIZE;
    json_t *v = json_object_get(body, detok ? "tokens" : "prompt");
    if (!v && !detok) v = json_object_get(body, "content");
    if (detok ? !json_is_array(v) : !json_is_string(v)) {
        slm_gw_error_set(&e, 400, "invalid_request_error", detok ? "tokens" : "prompt", "invalid_type",
                         detok ? "'tokens' must be an array of token ids" : "'prompt' must be a string");
        goto out;
    }
    if (get_client(s, &c, NULL, &info, 0, &e)) goto out;
    json_t *model = json_object_get(body, "model");
    if (json_is_string(model) && strcmp(json_string_value(model), info.model) != 0) {
        slm_gw_error_set(&e, 404, "invalid_request_error", "model", "model_not_found", "The model '%s' does not exist",
                         json_string_value(model));
        goto out;
    }
    int rc;
    if (detok) {
        size_t n = json_array_size(v), i;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        json_t *id;
        rc = ids ? 0 : -ENOMEM;
        json_array_foreach(v, i, id) {
            if (!ids) break;
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= info.n_vocab) {
                slm_gw_error_set(&e, 400, "invalid_request_error", "tokens", "invalid_value",
                                 "tokens[%zu] is not a token id in [0, %d)", i, info.n_vocab);
                free(ids);
                goto out;
            }
            ids[i] = (int32_t)json_integer_value(id);
        }
        char *text = NULL;
        if (rc == 0) rc = n ? slm_detokenize(c, ids, (int)n, &text) : 0;
        if (rc == 0) out = json_pack("{s:o}", "prompt", slm_gw_json_string(text ? text : "", text ? strlen(text) : 0));
        free(text);
        free(ids);
    } else {
        int32_t *ids = NULL;
        int n = 0;
        rc = json_string_length(v) ? slm_tokenize(c, json_string_value(v), &ids, &n) : 0;
        if (rc == 0) {
            json_t *a = json_array();
            for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(ids[i]));
            out = json_pack("{s:o, s:i, s:i}", "tokens", a, "count", n, "max_model_len", info.n_ctx);
        }
        free(ids);
    }
    if (rc < 0) error_from_slmd(&e, rc, NULL);
out:
    slm_gw_pool_put(&s->pool, &c, e.status == 0 || e.status == 400 || e.status == 404);
    json_decref(body);
    return e.status ? answer_error(s, conn, &e) : answer_json(s, conn, 200, out);
}

/* ---- libmicrohttpd's callbacks */

static enum route find_route(const char *url, const char *method, const char **model, int *wrong_method)
{
    static const struct {
        const char *path, *method;
        enum route route;
    } routes[] = {
        {"/health", "GET", ROUTE_HEALTH},           {"/v1/models", "GET", ROUTE_MODELS},
        {"/metrics", "GET", ROUTE_METRICS},         {"/v1/chat/completions", "POST", ROUTE_CHAT},
        {"/v1/completions", "POST", ROUTE_COMPLETIONS}, {"/tokenize", "POST", ROUTE_TOKENIZE},
        {"/detokenize", "POST", ROUTE_DETOKENIZE},
    };
    *wrong_method = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        if (strcmp(method, routes[i].method) == 0) return routes[i].route;
        *wrong_method = 1;
        return ROUTE_NONE;
    }
    if (strncmp(url, "/v1/models/", 11) == 0 && url[11]) {
        *model = url + 11;
        if (strcmp(method, "GET") == 0) return ROUTE_MODEL;
        *wrong_method = 1;
    }
    return ROUTE_NONE;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct slm_gw_server *s = cls;
    struct upload *u = *con_cls;
    struct slm_gw_error e = {0};
    if (!u) {   /* the headers are in: route, key and declared size, before any body is read */
        if (!(u = calloc(1, sizeof *u))) return MHD_NO;
        *con_cls = u;
        u->t_arrive = now_s();
        const char *model = NULL;
        int wrong_method;
        u->route = find_route(url, method, &model, &wrong_method);
        const char *key_problem = u->route == ROUTE_HEALTH || u->route == ROUTE_METRICS ? NULL : bearer_ok(s, conn);
        const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (key_problem && (u->route != ROUTE_NONE || wrong_method))
            slm_gw_error_set(&e, 401, "invalid_request_error", NULL, "invalid_api_key", "%s", key_problem);
        else if (wrong_method)
            slm_gw_error_set(&e, 405, "invalid_request_error", NULL, NULL, "%s is not allowed on %s", method, url);
        else if (u->route == ROUTE_NONE)
            slm_gw_error_set(&e, 404, "invalid_request_error", NULL, "not_found", "no endpoint %s %s", method, url);
        else if (length && strtoull(length, NULL, 10) > s->o.max_body)
            slm_gw_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                             "the body has %s bytes; at most %zu are taken (--max-body)", length, s->o.max_body);
        if (e.status) {
            u->too_big = -1;   /* answered: the rest of the body is thrown away */
            return answer_error(s, conn, &e);
        }
        if (u->route == ROUTE_MODEL) {
            u->too_big = -1;
            return models(s, conn, model);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (u->too_big == 0 && u->len + *upload_size > s->o.max_body) u->too_big = 1;
        if (u->too_big == 0) {
            if (u->len + *upload_size + 1 > u->cap) {
                size_t cap = (u->len + *upload_size + 1) * 2;
                if (cap > s->o.max_body + 1) cap = s->o.max_body + 1;
                char *b = realloc(u->body, cap);
                if (!b) return MHD_NO;
                u->body = b;
                u->cap = cap;
            }
            memcpy(u->body + u->len, upload_data, *upload_size);
            u->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (u->too_big < 0) return MHD_YES;   /* already answered */
    if (u->too_big) {
        slm_gw_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                         "the body is over %zu bytes (--max-body)", s->o.max_body);
        return answer_error(s, conn, &e);
    }
    /* The request is whole: no idle timeout while slmd works on it (on_completed restores it). */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    switch (u->route) {
    case ROUTE_HEALTH: return health(s, conn);
    case ROUTE_MODELS: return models(s, conn, NULL);
    case ROUTE_METRICS: return metrics(s, conn);
    case ROUTE_CHAT:
    case ROUTE_COMPLETIONS: return completion(s, conn, u);
    case ROUTE_TOKENIZE:
    case ROUTE_DETOKENIZE: return tokens(s, conn, u);
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode why)
{
    (void)why;
    struct slm_gw_server *s = cls;
    struct upload *u = *con_cls;
    if (u) {
        free(u->body);
        free(u);
        *con_cls = NULL;
    }
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, s->o.timeout_s);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    slm_log(SLM_LOG_INFO, "libmicrohttpd: %s", line);   /* mostly clients that went away */
}

/* One lane's daemon (lanes.c): the connections' options, no listening socket, no threads; epoll,
 * which has no FD_SETSIZE limit on the descriptors' numbers. */
static struct MHD_Daemon *lane_daemon(void *ctx)
{
    struct slm_gw_server *s = ctx;
    return MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_error, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                            s->o.max_header, MHD_OPTION_END);
}

struct slm_gw_server *slm_gw_server_start(const struct slm_gw_options *o, const void *addr, unsigned addr_len,
                                          char *err)
{
    struct slm_gw_server *s = calloc(1, sizeof *s);
    if (!s) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    s->o = *o;
    s->started = (long)time(NULL);
    slm_gw_pool_init(&s->pool, o->socket);
    slm_gw_metrics_init(&s->metrics);
    if (!(s->lanes = slm_gw_lanes_start(addr, addr_len, o->max_connections, lane_daemon, s, err))) {
        slm_gw_pool_free(&s->pool);
        pthread_mutex_destroy(&s->metrics.lock);
        free(s);
        return NULL;
    }
    return s;
}

unsigned slm_gw_server_port(struct slm_gw_server *s)
{
    return slm_gw_lanes_port(s->lanes);
}

void slm_gw_server_stop(struct slm_gw_server **sp)
{
    struct slm_gw_server *s = *sp;
    if (!s) return;
    slm_gw_lanes_stop(&s->lanes);
    slm_gw_pool_free(&s->pool);
    pthread_mutex_destroy(&s->metrics.lock);
    free(s);
    *sp = NULL;
}
