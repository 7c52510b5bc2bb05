/*
 * bench/lib/target.c - slm-bench's targets (target.h): slmd through libslm here, llama-server
 * and OpenAI-compatible servers through http.c.
 */
#define _GNU_SOURCE
#include "bench/lib/target.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/slm.h"

struct slm_bench_conn {
    const struct slm_bench_target *t;
    struct slm_client *c;      /* slmd */
};

int slm_bench_url_parse(const char *url, struct slm_bench_target *t, char *err)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) goto bad;
    p += 7;
    const char *host = p, *host_end;
    if (*p == '[') {
        host = ++p;
        if (!(host_end = strchr(p, ']'))) goto bad;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof t->http.host || *p != ':') goto bad;
    const char *port = ++p;
    size_t np = strspn(port, "0123456789");
    if (np == 0 || np >= sizeof t->http.port || (port[np] && strcmp(port + np, "/") != 0)) goto bad;
    long v = strtol(port, NULL, 10);
    if (v < 1 || v > 65535) goto bad;
    memcpy(t->http.host, host, (size_t)(host_end - host));
    t->http.host[host_end - host] = 0;
    memcpy(t->http.port, port, np);
    t->http.port[np] = 0;
    return 0;
bad:
    slm_err_set(err, "--url: '%s' is not http://HOST:PORT", url);
    return -EINVAL;
}

static json_t *describe_slmd(struct slm_bench_target *t, char *err)
{
    struct slm_client *c;
    int rc = slm_connect(t->socket, "slm-bench", &c);
    if (rc < 0) {
        slm_err_set(err, "cannot connect to slmd at %s: %s", t->socket ? t->socket : "the default socket",
                    slm_last_error()[0] ? slm_last_error() : slm_strerror(rc));
        return NULL;
    }
    struct slm_info info;
    rc = slm_info(c, &info);
    slm_close(&c);
    if (rc < 0) {
        slm_err_set(err, "slm_info: %s", slm_strerror(rc));
        return NULL;
    }
    t->n_vocab = info.n_vocab;
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "engine", "slmd", "model", info.model,
                     "arch", info.arch, "backend", info.backend, "n_ctx", info.n_ctx, "n_vocab", info.n_vocab,
                     "max_seqs", info.max_seqs, "max_batch_tokens", info.max_batch_tokens, "kv_blocks",
                     info.kv_blocks, "block_size", info.block_size);
}

/* llama-server: /props for the build, slots and context; /v1/models for the vocabulary. */
static json_t *describe_llama_server(struct slm_bench_target *t, char *err)
{
    char *props_text = NULL, *models_text = NULL;
    if (slm_bench_http_get(&t->http, "/props", &props_text, err)) return NULL;
    json_t *props = json_loads(props_text, 0, NULL);
    free(props_text);
    if (!json_is_object(props)) {
        json_decref(props);
        slm_err_set(err, "llama-server: /props is not a JSON object");
        return NULL;
    }
    json_t *out = json_object();
    json_object_set_new(out, "engine", json_string("llama-server"));
    json_t *v;
    if ((v = json_object_get(props, "model_path"))) json_object_set(out, "model", v);
    if ((v = json_object_get(props, "build_info"))) json_object_set(out, "build", v);
    if ((v = json_object_get(props, "total_slots"))) json_object_set(out, "slots", v);
    if ((v = json_object_get(json_object_get(props, "default_generation_settings"), "n_ctx")))
        json_object_set(out, "n_ctx_per_slot", v);
    json_decref(props);
    if (!slm_bench_http_get(&t->http, "/v1/models", &models_text, err)) {
        json_t *models = json_loads(models_text, 0, NULL);
        json_t *meta = json_object_get(json_array_get(json_object_get(models, "data"), 0), "meta");
        if ((v = json_object_get(meta, "n_vocab")) && json_is_integer(v)) {
            t->n_vocab = (int)json_integer_value(v);
            json_object_set(out, "n_vocab", v);
        }
        if ((v = json_object_get(meta, "n_params"))) json_object_set(out, "n_params", v);
        json_decref(models);
        free(models_text);
    }
    return out;
}

/* An OpenAI-compatible server: GET /v1/models; the first model, and n_vocab where the server
 * tells it (slm-gateway and llama-server do, under "meta"). */
static json_t *describe_openai(struct slm_bench_target *t, char *err)
{
    char *text = NULL;
    if (slm_bench_http_get(&t->http, "/v1/models", &text, err)) return NULL;
    json_t *models = json_loads(text, 0, NULL);
    free(text);
    json_t *first = json_array_get(json_object_get(models, "data"), 0);
    json_t *id = json_object_get(first, "id");
    if (!json_is_string(id)) {
        json_decref(models);
        slm_err_set(err, "openai: GET /v1/models lists no model");
        return NULL;
    }
    if (!t->http.model[0]) snprintf(t->http.model, sizeof t->http.model, "%s", json_string_value(id));
    json_t *out = json_pack("{s:s, s:s}", "engine", "openai", "model", t->http.model);
    json_t *meta = json_object_get(first, "meta"), *v;
    if ((v = json_object_get(meta, "n_vocab")) && json_is_integer(v)) {
        t->n_vocab = (int)json_integer_value(v);
        json_object_set(out, "n_vocab", v);
    }
    if ((v = json_object_get(first, "owned_by"))) json_object_set(out, "owned_by", v);
    if ((v = json_object_get(first, "max_model_len"))) json_object_set(out, "max_model_len", v);
    json_decref(models);
    return out;
}

json_t *slm_bench_target_describe(struct slm_bench_target *t, char *err)
{
    if (t->kind == SLM_BENCH_SLMD) return describe_slmd(t, err);
    return t->kind == SLM_BENCH_OPENAI ? describe_openai(t, err) : describe_llama_server(t, err);
}

struct slm_bench_conn *slm_bench_conn_open(const struct slm_bench_target *t, char *err)
{
    struct slm_bench_conn *c = calloc(1, sizeof *c);
    if (!c) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    c->t = t;
    if (t->kind == SLM_BENCH_SLMD) {
        int rc = slm_connect(t->socket, "slm-bench", &c->c);
        if (rc < 0) {
            slm_err_set(err, "cannot connect to slmd: %s", slm_last_error()[0] ? slm_last_error() : slm_strerror(rc));
            free(c);
            return NULL;
        }
    }
    return c;
}

void slm_bench_conn_close(struct slm_bench_conn **c)
{
    if (!*c) return;
    slm_close(&(*c)->c);
    free(*c);
    *c = NULL;
}

static int fail(struct slm_bench_request *r, int rc)
{
    r->failed = 1;
    r->t_end = slm_bench_now();
    return rc;
}

static int slmd_run(struct slm_bench_conn *c, const struct slm_bench_prompt *p, struct slm_bench_request *r,
                    long *live_tokens, char *err)
{
    struct slm_params params;
    slm_params_default(&params);
    params.max_tokens = p->output_len;
    params.ignore_eos = 1;
    params.temperature = 0;
    int64_t h;
    double deadline = slm_bench_now() + c->t->timeout_s;
    for (;;) {
        h = p->ids ? slm_submit_ids(c->c, p->ids, p->n_ids, &params) : slm_submit_text(c->c, p->text, &params);
        if (h != -EAGAIN) break;
        struct slm_event ev;   /* the ring is full of our own earlier requests' leftovers: drain */
        if (slm_next_event(c->c, &ev, 1) < 0 || slm_bench_now() > deadline) break;
    }
    if (h < 0) {
        slm_err_set(err, "slmd: submit: %s", slm_strerror((int)h));
        return fail(r, (int)h);
    }
    int cap = 0;
    for (;;) {
        int ms = (int)((deadline - slm_bench_now()) * 1e3);
        struct slm_event ev;
        int rc = ms > 0 ? slm_next_event(c->c, &ev, ms) : 0;
        if (rc <= 0) {
            if (rc == 0) slm_cancel(c->c, h);
            slm_err_set(err, "slmd: %s", rc == 0 ? "timed out" : slm_strerror(rc));
            return fail(r, rc == 0 ? -ETIMEDOUT : rc);
        }
        if (ev.handle != h) continue;   /* a request this connection cancelled earlier */
        double now = slm_bench_now();
        if (ev.type == SLM_EVENT_TOKEN) {
            if (slm_bench_request_token(r, now, &cap)) {
                slm_cancel(c->c, h);
                slm_err_set(err, "out of memory");
                return fail(r, -ENOMEM);
            }
            if (r->n_output == 1) r->t_first = now;
            __atomic_fetch_add(live_tokens, 1, __ATOMIC_RELAXED);
        } else if (ev.type == SLM_EVENT_DONE) {
            r->t_end = now;
            r->n_input = ev.n_prompt;
            r->n_cached = ev.n_cached;
            if (ev.finish == SLM_FINISH_CANCELLED) {
                slm_err_set(err, "slmd: the request was cancelled");
                return fail(r, -ECANCELED);
            }
            return 0;
        } else {
            slm_err_set(err, "slmd: %s", ev.message && ev.message[0] ? ev.message : slm_strerror(ev.error));
            return fail(r, ev.error < 0 ? ev.error : -EIO);
        }
    }
}

int slm_bench_conn_run(struct slm_bench_conn *c, const struct slm_bench_prompt *p, struct slm_bench_request *r,
                       long *live_tokens, char *err)
{
    if (c->t->kind == SLM_BENCH_SLMD) return slmd_run(c, p, r, live_tokens, err);
    return slm_bench_http_complete(&c->t->http, c->t->timeout_s, p, r, live_tokens, err);
}
