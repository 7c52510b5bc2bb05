/*
 * tests/test_gateway_json.c - slm-gateway's translation layer (gateway/openai.c), without a
 * daemon or HTTP:
 *  1. text to JSON: well-formed UTF-8 kept byte for byte, each malformed byte (a stray
 *     continuation, a truncated sequence, an overlong form, a surrogate, past U+10FFFF) as U+FFFD;
 *  2. request fields: OpenAI's defaults, every prompt form, seed, top_k -1, the extra samplers,
 *     content parts, developer as system; each bad field a 400 naming the field;
 *  3. answers: a chunk is "data: {json}\n\n", usage null on every chunk with include_usage and
 *     the usage chunk without choices; the error shape.
 * Exit 0 pass, 1 fail; a failure prints what was expected and what came.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway.h"
#include "tests/check.h"


static void utf8_case(const char *in, size_t n, const char *want)
{
    json_t *j = slm_gw_json_string(in, n);
    const char *got = j ? json_string_value(j) : "(null)";
    CHECK(j && json_string_length(j) == strlen(want) && memcmp(got, want, strlen(want)) == 0,
          "utf8 of %zu bytes: expected '%s', got '%s'", n, want, got);
    json_decref(j);
}

static void test_utf8(void)
{
    utf8_case("plain", 5, "plain");
    utf8_case("caf\xC3\xA9 \xF0\x9F\x98\x80", 10, "caf\xC3\xA9 \xF0\x9F\x98\x80");
    utf8_case("a\x80" "b", 3, "a\xEF\xBF\xBD" "b");                    /* stray continuation */
    utf8_case("x\xF0\x9F\x98", 4, "x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* truncated: each byte */
    utf8_case("\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD");               /* overlong '/' */
    utf8_case("\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* a surrogate */
    utf8_case("\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* > U+10FFFF */
}

/* Parses text as a request; 0 or the error's status (e filled). */
static unsigned parse(const char *text, int chat, struct slm_gw_request *r, struct slm_gw_error *e)
{
    memset(e, 0, sizeof *e);
    json_t *body = json_loads(text, 0, NULL);
    if (!body) {
        printf("FAIL the test's JSON does not parse: %s\n", text);
        failures++;
        memset(r, 0, sizeof *r);
        return 999;
    }
    return slm_gw_request_parse(body, chat, r, e) ? e->status : 0;
}

static void bad_field(const char *text, int chat, unsigned status, const char *param)
{
    struct slm_gw_request r;
    struct slm_gw_error e;
    unsigned got = parse(text, chat, &r, &e);
    CHECK(got == status && (!param || (e.param && strcmp(e.param, param) == 0)) && e.message[0],
          "%s: expected %u naming '%s', got %u naming '%s' (%s)", text, status, param ? param : "", got,
          e.param ? e.param : "", e.message);
    slm_gw_request_free(&r);
}

static void test_request(void)
{
    struct slm_gw_request r;
    struct slm_gw_error e;
    CHECK(parse("{\"prompt\": \"Hi\"}", 0, &r, &e) == 0, "a plain prompt: %s", e.message);
    CHECK(r.params.max_tokens == 16 && r.params.temperature == 1.0f && r.params.top_p == 1.0f && r.params.top_k == 0 &&
              r.params.min_p == 0.0f && r.params.repeat_penalty == 1.0f && !r.stream && r.prompt &&
              strcmp(r.prompt, "Hi") == 0 && r.params.seed <= INT64_MAX,
          "completion defaults: max_tokens %d temperature %g top_p %g top_k %d min_p %g", r.params.max_tokens,
          r.params.temperature, r.params.top_p, r.params.top_k, r.params.min_p);
    slm_gw_request_free(&r);

    CHECK(parse("{\"prompt\": [[1, 2, 3]], \"seed\": -5, \"top_k\": -1, \"min_p\": 0.1, \"repetition_penalty\": 1.2,"
                " \"stop\": [\"a\", \"\", \"b\"], \"max_tokens\": 7, \"logprobs\": 3, \"stream\": true,"
                " \"stream_options\": {\"include_usage\": true}, \"ignore_eos\": true}",
                0, &r, &e) == 0,
          "every field: %s", e.message);
    CHECK(r.n_ids == 3 && r.ids[2] == 3 && r.params.seed == ((uint64_t)-5 & INT64_MAX) && r.params.top_k == 0 &&
              fabsf(r.params.min_p - 0.1f) < 1e-6f && fabsf(r.params.repeat_penalty - 1.2f) < 1e-6f &&
              r.params.n_stop == 2 && strcmp(r.params.stop[1], "b") == 0 && r.params.max_tokens == 7 && r.logprobs &&
              r.params.logprobs == 3 && r.stream && r.include_usage && r.params.ignore_eos,
          "every field: ids %d seed %llu top_k %d n_stop %d logprobs %d", r.n_ids, (unsigned long long)r.params.seed,
          r.params.top_k, r.params.n_stop, r.params.logprobs);
    slm_gw_request_free(&r);

    CHECK(parse("{\"prompt\": [\"one\"], \"seed\": 42}", 0, &r, &e) == 0 && r.prompt && strcmp(r.prompt, "one") == 0 &&
              r.params.seed == 42,
          "a list of one prompt: %s", e.message);
    slm_gw_request_free(&r);

    CHECK(parse("{\"messages\": [{\"role\": \"developer\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\":"
                " [{\"type\": \"text\", \"text\": \"Hello, \"}, {\"type\": \"text\", \"text\": \"world\"}]},"
                " {\"role\": \"assistant\", \"content\": null}], \"max_completion_tokens\": 5, \"logprobs\": true,"
                " \"top_logprobs\": 2}",
                1, &r, &e) == 0,
          "a chat: %s", e.message);
    CHECK(r.n_msgs == 3 && strcmp(r.msgs[0].role, "system") == 0 && strcmp(r.msgs[1].content, "Hello, world") == 0 &&
              strcmp(r.msgs[2].content, "") == 0 && r.params.max_tokens == 5 && r.params.logprobs == 2,
          "a chat: %d messages, '%s' '%s', max_tokens %d", r.n_msgs, r.n_msgs ? r.msgs[0].role : "",
          r.n_msgs > 1 ? r.msgs[1].content : "", r.params.max_tokens);
    slm_gw_request_free(&r);
    CHECK(parse("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", 1, &r, &e) == 0 && r.params.max_tokens == 0,
          "chat: max_tokens defaults to the context (0), got %d", r.params.max_tokens);
    slm_gw_request_free(&r);

    bad_field("[1]", 0, 400, NULL);
    bad_field("{}", 0, 400, "prompt");
    bad_field("{\"prompt\": 1}", 0, 400, "prompt");
    bad_field("{\"prompt\": []}", 0, 400, "prompt");
    bad_field("{\"prompt\": [1, -2]}", 0, 400, "prompt");
    bad_field("{\"prompt\": [\"a\", \"b\"]}", 0, 400, "prompt");
    bad_field("{\"prompt\": \"x\", \"model\": 3}", 0, 400, "model");
    bad_field("{\"prompt\": \"x\", \"max_tokens\": 1.5}", 0, 400, "max_tokens");
    bad_field("{\"prompt\": \"x\", \"max_tokens\": -1}", 0, 400, "max_tokens");
    bad_field("{\"prompt\": \"x\", \"temperature\": 2.5}", 0, 400, "temperature");
    bad_field("{\"prompt\": \"x\", \"top_p\": \"1\"}", 0, 400, "top_p");
    bad_field("{\"prompt\": \"x\", \"presence_penalty\": 3}", 0, 400, "presence_penalty");
    bad_field("{\"prompt\": \"x\", \"repeat_penalty\": 0}", 0, 400, "repeat_penalty");
    bad_field("{\"prompt\": \"x\", \"n\": 3}", 0, 400, "n");
    bad_field("{\"prompt\": \"x\", \"best_of\": 2}", 0, 400, "best_of");
    bad_field("{\"prompt\": \"x\", \"stream\": 1}", 0, 400, "stream");
    bad_field("{\"prompt\": \"x\", \"stream_options\": []}", 0, 400, "stream_options");
    bad_field("{\"prompt\": \"x\", \"stop\": [1]}", 0, 400, "stop");
    bad_field("{\"prompt\": \"x\", \"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\","
              "\"13\",\"14\",\"15\",\"16\",\"17\"]}",
              0, 400, "stop");
    bad_field("{\"prompt\": \"x\", \"logprobs\": 21}", 0, 400, "logprobs");
    bad_field("{\"prompt\": \"x\", \"echo\": true}", 0, 400, "echo");
    bad_field("{\"prompt\": \"x\", \"suffix\": \"y\"}", 0, 400, "suffix");
    bad_field("{\"messages\": []}", 1, 400, "messages");
    bad_field("{\"messages\": [\"hi\"]}", 1, 400, "messages");
    bad_field("{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 1, 400, "messages");
    bad_field("{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 1, 400, "messages");
    bad_field("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 1, 400, "top_logprobs");
    bad_field("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", 1, 400, "tools");
}

static void test_answers(void)
{
    struct slm_gw_request r;
    struct slm_gw_error e;
    parse("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"stream\": true,"
          " \"stream_options\": {\"include_usage\": true}}",
          1, &r, &e);
    char *first = slm_gw_chunk_sse(&r, "chatcmpl-1", 7, "m", 1, "Hi", 2, NULL, NULL, NULL);
    CHECK(first && strncmp(first, "data: {", 7) == 0 && strcmp(first + strlen(first) - 3, "}\n\n") == 0,
          "a chunk: expected 'data: {...}\\n\\n', got '%s'", first ? first : "(null)");
    json_t *o = first ? json_loads(first + 6, 0, NULL) : NULL;
    json_t *choice = json_array_get(json_object_get(o, "choices"), 0);
    CHECK(o && json_is_null(json_object_get(o, "usage")) &&
              strcmp(json_string_value(json_object_get(o, "object")), "chat.completion.chunk") == 0 &&
              strcmp(json_string_value(json_object_get(json_object_get(choice, "delta"), "role")), "assistant") == 0 &&
              strcmp(json_string_value(json_object_get(json_object_get(choice, "delta"), "content")), "Hi") == 0 &&
              json_is_null(json_object_get(choice, "finish_reason")),
          "the first chat chunk: %s", first ? first : "(null)");
    json_decref(o);
    free(first);
    struct slm_gw_result res = {.n_prompt = 3, .n_cached = 1, .n_generated = 2};
    char *usage = slm_gw_chunk_sse(&r, "chatcmpl-1", 7, "m", 0, NULL, 0, NULL, NULL, &res);
    o = usage ? json_loads(usage + 6, 0, NULL) : NULL;
    json_t *u = json_object_get(o, "usage");
    CHECK(o && json_array_size(json_object_get(o, "choices")) == 0 &&
              json_integer_value(json_object_get(u, "total_tokens")) == 5 &&
              json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")) == 1,
          "the usage chunk: %s", usage ? usage : "(null)");
    json_decref(o);
    free(usage);
    slm_gw_request_free(&r);

    struct slm_gw_error err;
    slm_gw_error_set(&err, 404, "invalid_request_error", "model", "model_not_found", "no model '%s'", "x\xFF");
    char *text = slm_gw_error_json(&err);
    o = text ? json_loads(text, 0, NULL) : NULL;
    json_t *eo = json_object_get(o, "error");
    CHECK(eo && strcmp(json_string_value(json_object_get(eo, "message")), "no model 'x\xEF\xBF\xBD'") == 0 &&
              strcmp(json_string_value(json_object_get(eo, "param")), "model") == 0 &&
              strcmp(json_string_value(json_object_get(eo, "code")), "model_not_found") == 0 &&
              strcmp(json_string_value(json_object_get(eo, "type")), "invalid_request_error") == 0,
          "the error shape: %s", text ? text : "(null)");
    json_decref(o);
    free(text);
}

int main(void)
{
    test_utf8();
    test_request();
    test_answers();
    if (!failures) printf("ok   gateway JSON: UTF-8, request fields, answers\n");
    return failures ? 1 : 0;
}
