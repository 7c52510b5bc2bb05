/*
 * gateway/openai.c - OpenAI's completion API as slm-gateway speaks it (gateway.h): the request
 * fields into struct slm_params, and the answers (whole, or as server-sent event chunks) in the
 * shapes OpenAI's own API sends. Defaults are OpenAI's (temperature 1, top_p 1, no top-k,
 * min-p or repeat penalty unless asked); docs/gateway.md lists every field.
 */
#define _GNU_SOURCE
#include "gateway/gateway.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void slm_gw_error_set(struct slm_gw_error *e, unsigned status, const char *type, const char *param, const char *code,
                      const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *slm_gw_error_json(const struct slm_gw_error *e)
{
    json_t *o = json_pack("{s:{s:o, s:s, s:s?, s:s?}}", "error", "message",
                          slm_gw_json_string(e->message, strlen(e->message)), "type", e->type, "param", e->param,
                          "code", e->code);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (len == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return len;
}

json_t *slm_gw_json_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j) return j;   /* already well-formed (the common case) */
    char *fixed = malloc(n * 3 + 1);
    if (!fixed) return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            fixed[o++] = (char)u[i++];
            continue;
        }
        size_t len = utf8_len(u + i, n - i);
        if (len) {
            memcpy(fixed + o, u + i, len);
            o += len;
            i += len;
        } else {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);   /* U+FFFD */
            o += 3;
            i++;
        }
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

/* ---- request fields. Each getter leaves *out alone when the field is absent or null. */

static int bad_type(struct slm_gw_error *e, const char *name, const char *what)
{
    slm_gw_error_set(e, 400, "invalid_request_error", name, "invalid_type", "'%s' must be %s", name, what);
    return -1;
}

static int get_number(json_t *body, const char *name, double lo, double hi, double *out, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad_type(e, name, "a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        slm_gw_error_set(e, 400, "invalid_request_error", name, "invalid_value", "'%s' is %g, not in [%g, %g]", name,
                         x, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_float(json_t *body, const char *name, double lo, double hi, float *out, struct slm_gw_error *e)
{
    double x = *out;
    if (get_number(body, name, lo, hi, &x, e)) return -1;
    *out = (float)x;
    return 0;
}

static int get_int(json_t *body, const char *name, long long lo, long long hi, long long *out, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad_type(e, name, "an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        slm_gw_error_set(e, 400, "invalid_request_error", name, "invalid_value", "'%s' is %lld, not in [%lld, %lld]",
                         name, x, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

static int get_bool(json_t *body, const char *name, int *out, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad_type(e, name, "a boolean");
    *out = json_is_true(v);
    return 0;
}

static int parse_stop(json_t *body, struct slm_gw_request *r, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) > 0) r->stop[r->n_stop++] = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v)) return bad_type(e, "stop", "a string or an array of strings");
    if (json_array_size(v) > sizeof r->stop / sizeof r->stop[0]) {
        slm_gw_error_set(e, 400, "invalid_request_error", "stop", "invalid_value", "'stop' has %zu strings; at most %zu",
                         json_array_size(v), sizeof r->stop / sizeof r->stop[0]);
        return -1;
    }
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) return bad_type(e, "stop", "a string or an array of strings");
        if (json_string_length(s) > 0) r->stop[r->n_stop++] = json_string_value(s);
    }
    return 0;
}

/* The content of a chat message: a string, or an array of {"type": "text", "text": ...} parts. */
static int message_content(json_t *m, size_t i, struct slm_gw_request *r, struct slm_gw_error *e)
{
    json_t *content = json_object_get(m, "content");
    if (!content || json_is_null(content)) {
        r->msgs[i].content = "";
        return 0;
    }
    if (json_is_string(content)) {
        r->msgs[i].content = json_string_value(content);
        return 0;
    }
    if (!json_is_array(content)) return bad_type(e, "messages", "a list of messages whose content is a string or text parts");
    size_t n = 0, j;
    json_t *part;
    json_array_foreach(content, j, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            slm_gw_error_set(e, 400, "invalid_request_error", "messages", "unsupported_content",
                             "messages[%zu]: only text content parts are supported", i);
            return -1;
        }
        n += json_string_length(text);
    }
    char *s = malloc(n + 1);
    if (!s) {
        slm_gw_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    size_t o = 0;
    json_array_foreach(content, j, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    s[o] = 0;
    r->texts[i] = s;
    r->msgs[i].content = s;
    return 0;
}

static int parse_messages(json_t *body, struct slm_gw_request *r, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, "messages");
    if (!v) {
        slm_gw_error_set(e, 400, "invalid_request_error", "messages", "missing_required_parameter",
                         "'messages' is required");
        return -1;
    }
    if (!json_is_array(v) || json_array_size(v) == 0) return bad_type(e, "messages", "a non-empty array of messages");
    size_t n = json_array_size(v);
    if (n > 100000) return bad_type(e, "messages", "an array of at most 100000 messages");
    r->msgs = calloc(n, sizeof *r->msgs);
    r->texts = calloc(n, sizeof *r->texts);
    if (!r->msgs || !r->texts) {
        slm_gw_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    r->n_msgs = (int)n;
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        json_t *role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) return bad_type(e, "messages", "an array of {role, content} objects");
        const char *name = json_string_value(role);
        if (strcmp(name, "developer") == 0) name = "system";   /* OpenAI's newer name for it */
        if (strcmp(name, "system") != 0 && strcmp(name, "user") != 0 && strcmp(name, "assistant") != 0) {
            slm_gw_error_set(e, 400, "invalid_request_error", "messages", "invalid_value",
                             "messages[%zu]: role '%s' is not one of system, developer, user, assistant", i,
                             json_string_value(role));
            return -1;
        }
        r->msgs[i].role = name;
        if (message_content(m, i, r, e)) return -1;
    }
    return 0;
}

/* prompt: a string, token ids, or a list holding one of those (one prompt per request). */
static int parse_prompt(json_t *body, struct slm_gw_request *r, struct slm_gw_error *e)
{
    json_t *v = json_object_get(body, "prompt");
    if (!v) {
        slm_gw_error_set(e, 400, "invalid_request_error", "prompt", "missing_required_parameter", "'prompt' is required");
        return -1;
    }
    if (json_is_array(v) && json_array_size(v) == 1 &&
        (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0))))
        v = json_array_get(v, 0);
    if (json_is_string(v)) {
        r->prompt = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return bad_type(e, "prompt", "a string, an array of token ids, or an array of one of those");
    size_t n = json_array_size(v), i;
    json_t *id;
    json_array_foreach(v, i, id) {
        if (json_is_string(id) || json_is_array(id)) {
            slm_gw_error_set(e, 400, "invalid_request_error", "prompt", "invalid_value",
                             "'prompt': one prompt per request (n = 1); %zu were given", n);
            return -1;
        }
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
            return bad_type(e, "prompt", "a string, an array of token ids, or an array of one of those");
    }
    if (n > (1u << 24)) return bad_type(e, "prompt", "at most 2^24 token ids");
    r->ids = malloc(n * sizeof *r->ids);
    if (!r->ids) {
        slm_gw_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    json_array_foreach(v, i, id) r->ids[i] = (int32_t)json_integer_value(id);
    r->n_ids = (int)n;
    return 0;
}

int slm_gw_request_parse(json_t *body, int chat, struct slm_gw_request *r, struct slm_gw_error *e)
{
    memset(r, 0, sizeof *r);
    r->body = body;
    r->chat = chat;
    if (!json_is_object(body)) {
        slm_gw_error_set(e, 400, "invalid_request_error", NULL, "invalid_json", "the body must be a JSON object");
        return -1;
    }
    struct slm_params *p = &r->params;
    slm_params_default(p);
    /* OpenAI's defaults, not llama.cpp's: only the samplers asked for are on. */
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->top_k = 0;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->max_tokens = chat ? 0 : 16;   /* chat: up to the context; completions: OpenAI's 16 */
    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return bad_type(e, "model", "a string");
        r->model = json_string_value(model);
    }
    for (const char *const *f = (const char *const[]){"n", "best_of", NULL}; *f; f++) {
        json_t *v = json_object_get(body, *f);
        if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1)) {
            slm_gw_error_set(e, 400, "invalid_request_error", *f, "unsupported_value",
                             "'%s' must be 1: one choice per request is supported", *f);
            return -1;
        }
    }
    long long max_tokens = p->max_tokens, seed = 0, top_k = p->top_k, top_logprobs = 0, repeat_last_n = 64;
    if (get_int(body, "max_tokens", 0, 1 << 24, &max_tokens, e) ||
        get_int(body, "max_completion_tokens", 0, 1 << 24, &max_tokens, e) ||
        get_float(body, "temperature", 0, 2, &p->temperature, e) || get_float(body, "top_p", 0, 1, &p->top_p, e) ||
        get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, e) ||
        get_float(body, "presence_penalty", -2, 2, &p->presence_penalty, e) ||
        get_float(body, "frequency_penalty", -2, 2, &p->frequency_penalty, e) ||
        get_int(body, "top_k", -1, 1 << 24, &top_k, e) || get_float(body, "min_p", 0, 1, &p->min_p, e) ||
        get_float(body, "repeat_penalty", 1e-6, 100, &p->repeat_penalty, e) ||
        get_float(body, "repetition_penalty", 1e-6, 100, &p->repeat_penalty, e) ||
        get_int(body, "repeat_last_n", -1, 1 << 24, &repeat_last_n, e) ||
        get_bool(body, "stream", &r->stream, e) ||
        get_bool(body, "ignore_eos", &p->ignore_eos, e) || parse_stop(body, r, e))
        return -1;
    p->max_tokens = (int)max_tokens;
    p->top_k = top_k < 0 ? 0 : (int)top_k;   /* vLLM's -1 and llama-server's 0 both mean off */
    p->repeat_last_n = (int)repeat_last_n;
    json_t *seed_field = json_object_get(body, "seed");
    if (seed_field && !json_is_null(seed_field)) {
        p->seed = (uint64_t)seed & INT64_MAX;   /* slmd takes 0 .. 2^63-1 */
    } else if (getrandom(&p->seed, sizeof p->seed, 0) == sizeof p->seed) {
        p->seed &= INT64_MAX;
    } else {
        p->seed = (uint64_t)time(NULL);
    }
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_type(e, "stream_options", "an object");
        if (get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    }
    json_t *lp = json_object_get(body, "logprobs");
    if (chat) {
        if (get_bool(body, "logprobs", &r->logprobs, e) || get_int(body, "top_logprobs", 0, 20, &top_logprobs, e))
            return -1;
        if (top_logprobs > 0 && !r->logprobs) {
            slm_gw_error_set(e, 400, "invalid_request_error", "top_logprobs", "invalid_value",
                             "'top_logprobs' needs 'logprobs': true");
            return -1;
        }
    } else if (lp && !json_is_null(lp)) {
        if (get_int(body, "logprobs", 0, 20, &top_logprobs, e)) return -1;
        r->logprobs = 1;
    }
    r->top_logprobs = (int)top_logprobs;
    if (r->logprobs) p->logprobs = r->top_logprobs > 0 ? r->top_logprobs : 1;
    json_t *echo = json_object_get(body, "echo"), *suffix = json_object_get(body, "suffix");
    if (!chat && ((echo && json_is_true(echo)) || (suffix && !json_is_null(suffix)))) {
        slm_gw_error_set(e, 400, "invalid_request_error", echo && json_is_true(echo) ? "echo" : "suffix",
                         "unsupported_parameter", "'%s' is not supported", echo && json_is_true(echo) ? "echo" : "suffix");
        return -1;
    }
    if (chat) {
        json_t *tools = json_object_get(body, "tools");
        if (tools && json_is_array(tools) && json_array_size(tools) > 0) {
            slm_gw_error_set(e, 400, "invalid_request_error", "tools", "unsupported_parameter",
                             "tools (function calling) are not supported");
            return -1;
        }
    }
    p->stop = r->stop;
    p->n_stop = r->n_stop;
    return chat ? parse_messages(body, r, e) : parse_prompt(body, r, e);
}

void slm_gw_request_free(struct slm_gw_request *r)
{
    if (r->texts)
        for (int i = 0; i < r->n_msgs; i++) free(r->texts[i]);
    free(r->texts);
    free(r->msgs);
    free(r->ids);
    json_decref(r->body);
    memset(r, 0, sizeof *r);
}

/* ---- logprobs */

static json_t *bytes_of(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

json_t *slm_gw_logprobs_new(const struct slm_gw_request *r)
{
    if (!r->logprobs) return NULL;
    if (r->chat) return json_array();
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

int slm_gw_logprobs_add(const struct slm_gw_request *r, struct slm_gw_pool *pool, struct slm_client *c,
                        const struct slm_event *ev, json_t *into, size_t text_offset)
{
    json_t *token = slm_gw_json_string(ev->text, ev->text_len);
    if (!token) return -ENOMEM;
    int n_top = ev->n_top < r->top_logprobs ? ev->n_top : r->top_logprobs;
    if (r->chat) {
        json_t *top = json_array();
        for (int i = 0; top && i < n_top; i++) {
            const char *t = slm_gw_pool_token_text(pool, c, ev->top[i].token);
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", slm_gw_json_string(t, strlen(t)),
                                                 "logprob", (double)ev->top[i].logprob, "bytes", bytes_of(t, strlen(t))));
        }
        json_t *o = json_pack("{s:o, s:f, s:o, s:o}", "token", token, "logprob", (double)ev->logprob, "bytes",
                              bytes_of(ev->text, ev->text_len), "top_logprobs", top ? top : json_array());
        return o && !json_array_append_new(into, o) ? 0 : -ENOMEM;
    }
    json_t *top = json_object();
    for (int i = 0; top && i < n_top; i++) {
        const char *t = slm_gw_pool_token_text(pool, c, ev->top[i].token);
        json_t *key = slm_gw_json_string(t, strlen(t));
        if (key) json_object_set_new(top, json_string_value(key), json_real(ev->top[i].logprob));
        json_decref(key);
    }
    int bad = json_array_append_new(json_object_get(into, "tokens"), token) |
              json_array_append_new(json_object_get(into, "token_logprobs"), json_real(ev->logprob)) |
              json_array_append_new(json_object_get(into, "top_logprobs"), top ? top : json_null()) |
              json_array_append_new(json_object_get(into, "text_offset"), json_integer((json_int_t)text_offset));
    return bad ? -ENOMEM : 0;
}

/* ---- answers */

static json_t *usage_json(const struct slm_gw_result *res)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", res->n_prompt, "completion_tokens", res->n_generated,
                     "total_tokens", res->n_prompt + res->n_generated, "prompt_tokens_details", "cached_tokens",
                     res->n_cached);
}

static char *dump(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

char *slm_gw_response_json(const struct slm_gw_request *r, const char *id, long created, const char *model,
                           const struct slm_gw_result *res)
{
    json_t *lp = res->logprobs ? json_incref(res->logprobs) : json_null();
    json_t *choice;
    if (r->chat)
        choice = json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", 0, "message", "role", "assistant", "content",
                           slm_gw_json_string(res->text ? res->text : "", res->len), "logprobs",
                           res->logprobs ? json_pack("{s:o}", "content", lp) : (json_decref(lp), json_null()),
                           "finish_reason", res->finish ? res->finish : "stop");
    else
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "text",
                           slm_gw_json_string(res->text ? res->text : "", res->len), "logprobs", lp, "finish_reason",
                           res->finish ? res->finish : "stop");
    return dump(json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                          r->chat ? "chat.completion" : "text_completion", "created", (json_int_t)created, "model", model,
                          "choices", choice, "usage", usage_json(res)));
}

char *slm_gw_chunk_sse(const struct slm_gw_request *r, const char *id, long created, const char *model, int first,
                       const char *text, size_t len, json_t *lp, const char *finish, const struct slm_gw_result *usage)
{
    json_t *choices = json_array();
    if (!usage) {
        json_t *choice;
        json_t *lpv = lp ? json_incref(lp) : json_null();
        if (r->chat) {
            json_t *delta = json_object();
            if (first) json_object_set_new(delta, "role", json_string("assistant"));
            if (!finish) json_object_set_new(delta, "content", slm_gw_json_string(text ? text : "", len));
            choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs",
                               lp ? json_pack("{s:o}", "content", lpv) : lpv, "finish_reason",
                               finish ? json_string(finish) : json_null());
        } else {
            choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", slm_gw_json_string(text ? text : "", len),
                               "logprobs", lpv, "finish_reason", finish ? json_string(finish) : json_null());
        }
        json_array_append_new(choices, choice);
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object",
                          r->chat ? "chat.completion.chunk" : "text_completion", "created", (json_int_t)created, "model", model,
                          "choices", choices);
    if (o && r->include_usage) json_object_set_new(o, "usage", usage ? usage_json(usage) : json_null());
    char *s = dump(o);
    if (!s) return NULL;
    char *out = NULL;
    if (asprintf(&out, "data: %s\n\n", s) < 0) out = NULL;
    free(s);
    return out;
}
