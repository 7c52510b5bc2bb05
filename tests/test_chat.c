/*
 * tests/test_chat.c - chat templates against llama.cpp's output.
 *
 * tests/golden/chat_reference.txt (made by tests/golden/make_chat_reference.py from
 * llama.cpp's llama_chat_apply_template) holds conversations with the exact text
 * llama.cpp renders for each format, and template texts with the format llama.cpp
 * detects. Every rendering must be byte-identical, also when the buffer is too small.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/chat.h"

#include "tests/check.h"

/* Decodes the golden file's escapes in place; returns the decoded length. */
static size_t unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case '\\': *w++ = '\\'; break;
        case 'x': {
            char hex[3] = {r[1], r[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 2;
            break;
        }
        default: *w++ = *r;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

static int format_by_name(const char *name)
{
    for (int f = SLM_CHAT_CHATML; f <= SLM_CHAT_MISTRAL; f++)
        if (strcmp(slm_chat_format_name(f), name) == 0) return f;
    return -1;
}

/* Shows where two renderings part. */
static void show_diff(const char *what, const char *want, size_t want_len, const char *got, size_t got_len)
{
    size_t i = 0;
    while (i < want_len && i < got_len && want[i] == got[i]) i++;
    printf("FAIL %s: expected %zu bytes, got %zu; first difference at byte %zu:\n  expected: %.40s\n  got:      %.40s\n",
           what, want_len, got_len, i, want + (i < want_len ? i : want_len), got + (i < got_len ? i : got_len));
    failures++;
}

enum { MAX_MSGS = 16 };

struct chat_case {
    char name[128];
    int fmt, gen, n;
    struct slm_chat_msg msgs[MAX_MSGS];
    char *role_store[MAX_MSGS], *content_store[MAX_MSGS];
    char *expect;
    size_t expect_len;
};

static void run_case(const struct chat_case *c)
{
    int len = slm_chat_apply(c->fmt, c->msgs, c->n, c->gen, NULL, 0);
    if (len != (int)c->expect_len) {
        CHECK(0, "%s: length: expected %zu, got %d", c->name, c->expect_len, len);
        return;
    }
    char *buf = malloc(c->expect_len + 1);
    int got = slm_chat_apply(c->fmt, c->msgs, c->n, c->gen, buf, c->expect_len + 1);
    if (got != len || memcmp(buf, c->expect, c->expect_len) != 0 || buf[len] != 0)
        show_diff(c->name, c->expect, c->expect_len, buf, got < 0 ? 0 : (size_t)got);
    free(buf);

    /* too small: the full length comes back, the prefix that fits is NUL-terminated */
    size_t caps[] = {1, 2, c->expect_len / 2 + 1, c->expect_len};
    for (unsigned k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k];
        if (cap == 0 || cap > c->expect_len) continue;
        char *small = malloc(cap + 8);
        memset(small, 'Z', cap + 8);
        got = slm_chat_apply(c->fmt, c->msgs, c->n, c->gen, small, cap);
        CHECK(got == len, "%s cap %zu: return: expected %d, got %d", c->name, cap, len, got);
        CHECK(memcmp(small, c->expect, cap - 1) == 0 && small[cap - 1] == 0,
              "%s cap %zu: expected the first %zu bytes and a NUL, got others", c->name, cap, cap - 1);
        CHECK(small[cap] == 'Z', "%s cap %zu: wrote past cap: expected 'Z', got 0x%02x", c->name, cap,
              (unsigned char)small[cap]);
        free(small);
    }
}

static void free_case(struct chat_case *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->role_store[i]);
        free(c->content_store[i]);
    }
    free(c->expect);
    memset(c, 0, sizeof *c);
}

static int run_golden(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("golden file %s: %s\n", path, strerror(errno));
        return -1;
    }
    static char line[1 << 17];
    struct chat_case c;
    memset(&c, 0, sizeof c);
    int n_cases = 0, n_detect = 0, seen[SLM_CHAT_MISTRAL + 1] = {0};
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        CHECK(l > 0 && line[l - 1] == '\n', "golden line too long: expected < %zu bytes", sizeof line);
        if (l && line[l - 1] == '\n') line[--l] = 0;
        if (line[0] == '#' || line[0] == 0) continue;
        char *sp = strchr(line, ' ');
        char *arg = sp ? sp + 1 : line + l;
        if (sp) *sp = 0;
        if (strcmp(line, "case") == 0) {
            snprintf(c.name, sizeof c.name, "%s", arg);
        } else if (strcmp(line, "fmt") == 0) {
            c.fmt = format_by_name(arg);
            CHECK(c.fmt > 0, "%s: format name '%s': expected a known one", c.name, arg);
        } else if (strcmp(line, "gen") == 0) {
            c.gen = atoi(arg);
        } else if (strcmp(line, "msg") == 0) {
            char *sp2 = strchr(arg, ' ');
            if (!sp2 || c.n == MAX_MSGS) {
                CHECK(0, "%s: malformed msg line", c.name);
                continue;
            }
            *sp2 = 0;
            c.role_store[c.n] = strdup(arg);
            c.content_store[c.n] = strdup(sp2 + 1);
            unescape(c.content_store[c.n]);
            c.msgs[c.n] = (struct slm_chat_msg){c.role_store[c.n], c.content_store[c.n]};
            c.n++;
        } else if (strcmp(line, "expect") == 0) {
            c.expect = strdup(arg);
            c.expect_len = unescape(c.expect);
        } else if (strcmp(line, "end") == 0) {
            if (c.fmt > 0 && c.expect) {
                run_case(&c);
                seen[c.fmt]++;
            }
            n_cases++;
            free_case(&c);
        } else if (strcmp(line, "detect") == 0) {
            char *sp2 = strchr(arg, ' ');
            char *text = sp2 ? sp2 + 1 : arg + strlen(arg);
            if (sp2) *sp2 = 0;
            size_t tl = unescape(text);
            char *exact = malloc(tl ? tl : 1);   /* no NUL after the text: detect must use len */
            memcpy(exact, text, tl);
            int got = slm_chat_detect(exact, tl);
            const char *got_name = got == -ENOENT ? "unknown" : slm_chat_format_name(got);
            CHECK(strcmp(got_name, arg) == 0, "detect '%.60s': expected %s, got %s (%d)", text, arg, got_name, got);
            free(exact);
            n_detect++;
        } else {
            CHECK(0, "golden: unknown record '%s'", line);
        }
    }
    fclose(f);
    free_case(&c);
    printf("golden: %d renderings, %d detections\n", n_cases, n_detect);
    CHECK(n_cases >= 100 && n_detect >= 20, "golden: expected >= 100 cases and >= 20 detections, got %d and %d",
          n_cases, n_detect);
    for (int fmt = SLM_CHAT_CHATML; fmt <= SLM_CHAT_MISTRAL; fmt++)
        CHECK(seen[fmt] > 0, "golden: expected cases for %s, got none", slm_chat_format_name(fmt));
    return 0;
}

static void test_errors(void)
{
    struct slm_chat_msg ok[] = {{"system", "s"}, {"user", "u"}};
    char buf[64];
    for (int fmt = SLM_CHAT_CHATML; fmt <= SLM_CHAT_MISTRAL; fmt++) {
        const char *bad_roles[] = {"tool", "model", "User", "", NULL};
        for (unsigned i = 0; i < sizeof bad_roles / sizeof bad_roles[0]; i++) {
            struct slm_chat_msg m[] = {{"user", "hi"}, {bad_roles[i], "x"}};
            int rc = slm_chat_apply(fmt, m, 2, 1, buf, sizeof buf);
            CHECK(rc == -EINVAL, "%s role '%s': expected -EINVAL, got %d", slm_chat_format_name(fmt),
                  bad_roles[i] ? bad_roles[i] : "(null)", rc);
        }
        struct slm_chat_msg null_content[] = {{"user", NULL}};
        CHECK(slm_chat_apply(fmt, null_content, 1, 1, buf, sizeof buf) == -EINVAL,
              "%s NULL content: expected -EINVAL", slm_chat_format_name(fmt));
        CHECK(slm_chat_apply(fmt, ok, -1, 1, buf, sizeof buf) == -EINVAL, "n = -1: expected -EINVAL");
        CHECK(slm_chat_apply(fmt, ok, 2, 1, NULL, 10) == -EINVAL, "NULL buf with cap 10: expected -EINVAL");
        CHECK(slm_chat_apply(fmt, ok, 2, 1, NULL, 0) > 0, "%s NULL buf, cap 0: expected the length",
              slm_chat_format_name(fmt));
    }
    int bad_fmts[] = {0, -1, SLM_CHAT_MISTRAL + 1, 100};
    for (unsigned i = 0; i < sizeof bad_fmts / sizeof bad_fmts[0]; i++) {
        int rc = slm_chat_apply(bad_fmts[i], ok, 2, 1, buf, sizeof buf);
        CHECK(rc == -EINVAL, "format %d: expected -EINVAL, got %d", bad_fmts[i], rc);
        CHECK(strcmp(slm_chat_format_name(bad_fmts[i]), "unknown") == 0, "name of format %d: expected unknown, got %s",
              bad_fmts[i], slm_chat_format_name(bad_fmts[i]));
    }
    const char *names[] = {NULL, "chatml", "llama3", "gemma", "phi3", "mistral"};
    for (int fmt = SLM_CHAT_CHATML; fmt <= SLM_CHAT_MISTRAL; fmt++)
        CHECK(strcmp(slm_chat_format_name(fmt), names[fmt]) == 0, "name of %d: expected %s, got %s", fmt, names[fmt],
              slm_chat_format_name(fmt));
    CHECK(slm_chat_detect(NULL, 0) == -ENOENT, "detect(NULL): expected -ENOENT");
    /* only len bytes count: a marker past len is not seen */
    const char *t = "xx<|im_start|>";
    CHECK(slm_chat_detect(t, 13) == -ENOENT, "detect of a cut marker: expected -ENOENT, got %d", slm_chat_detect(t, 13));
    CHECK(slm_chat_detect(t, 14) == SLM_CHAT_CHATML, "detect chatml: expected %d, got %d", SLM_CHAT_CHATML,
          slm_chat_detect(t, 14));
}

/* The default system message of a template: SmolLM2's (a real newline), Qwen2.5's (a Jinja
 * "\n", after an expression that is not a default), none in a template without one. */
static void test_default_system(void)
{
    static const struct {
        const char *tmpl, *want;
    } cases[] = {
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
         "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
         "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
        {"{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
         "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are "
         "a helpful assistant.<|im_end|>\\n' }}{%- endif %}",
         "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."},
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
         "'<|im_end|>' + '\n'}}{% endfor %}", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        int n = slm_chat_default_system(cases[i].tmpl, strlen(cases[i].tmpl), buf, sizeof buf);
        CHECK(n == (int)strlen(cases[i].want) && !strcmp(buf, cases[i].want),
              "default system of template %zu: expected '%s', got %d '%s'", i, cases[i].want, n, buf);
    }
    char small[8];
    int n = slm_chat_default_system(cases[0].tmpl, strlen(cases[0].tmpl), small, sizeof small);
    CHECK(n == (int)strlen(cases[0].want) && !strcmp(small, "You are"), "cap 8: expected the length and 'You are', "
          "got %d '%s'", n, small);
}

int main(void)
{
    test_default_system();
    const char *dir = getenv("SLM_TEST_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/chat_reference.txt", dir ? dir : "tests");
    test_errors();
    if (run_golden(path) < 0) {
        if (!dir) {
            printf("test_chat: SLM_TEST_DATA not set and no ./tests/golden: skipped the golden part\n");
            return 77;
        }
        failures++;
    }
    if (failures) {
        printf("test_chat: %d failures\n", failures);
        return 1;
    }
    printf("test_chat: ok\n");
    return 0;
}
