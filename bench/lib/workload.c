/*
 * bench/lib/workload.c - prompts and output lengths of slm-bench's requests (workload.h).
 */
#include "bench/lib/workload.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double slm_bench_uniform(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

static int uniform_int(uint64_t *s, int lo, int hi)
{
    return lo + (int)(splitmix64(s) % (uint64_t)(hi - lo + 1));
}

static int parse_int(const char *s, const char **end, long *v)
{
    char *e;
    errno = 0;
    *v = strtol(s, &e, 10);
    *end = e;
    return e == s || errno || *s == '-' || *s == '+' || *s == ' ' ? -1 : 0;
}

int slm_bench_range_parse(const char *text, const char *what, int max, struct slm_bench_range *r, char *err)
{
    long lo, hi;
    const char *end;
    if (parse_int(text, &end, &lo)) goto bad;
    hi = lo;
    if (*end == ':') {
        if (parse_int(end + 1, &end, &hi)) goto bad;
    }
    if (*end) goto bad;
    if (lo < 1 || hi < lo || hi > max) {
        slm_err_set(err, "%s: '%s' is out of range (1 <= LO <= HI <= %d)", what, text, max);
        return -EINVAL;
    }
    r->lo = (int)lo;
    r->hi = (int)hi;
    return 0;
bad:
    slm_err_set(err, "%s: '%s' is not N or LO:HI (positive integers)", what, text);
    return -EINVAL;
}

/* One JSONL line into *line; 0, or -EINVAL with the reason in err. */
static int parse_line(const char *path, int lineno, const char *text, struct slm_bench_prompt_line *line, char *err)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        if (je.column > 0)
            slm_err_set(err, "%s:%d: bad JSON: %s (column %d)", path, lineno, je.text, je.column);
        else
            slm_err_set(err, "%s:%d: bad JSON: %s", path, lineno, je.text);
        return -EINVAL;
    }
    int rc = -EINVAL;
    json_t *prompt = json_object_get(o, "prompt"), *system = json_object_get(o, "system");
    json_t *out = json_object_get(o, "output_len");
    if (!json_is_object(o)) {
        slm_err_set(err, "%s:%d: a line must be a JSON object", path, lineno);
    } else if (!json_is_string(prompt) || json_string_length(prompt) == 0) {
        slm_err_set(err, "%s:%d: \"prompt\" must be a non-empty string", path, lineno);
    } else if (system && !json_is_string(system)) {
        slm_err_set(err, "%s:%d: \"system\" must be a string", path, lineno);
    } else if (out && (!json_is_integer(out) || json_integer_value(out) < 1 || json_integer_value(out) > 1 << 20)) {
        slm_err_set(err, "%s:%d: \"output_len\" must be an integer from 1 to %d", path, lineno, 1 << 20);
    } else {
        size_t np = json_string_length(prompt), ns = system ? json_string_length(system) : 0;
        line->text = malloc(ns + 2 + np + 1);
        if (!line->text) {
            rc = -ENOMEM;
            slm_err_set(err, "%s:%d: out of memory", path, lineno);
        } else {
            size_t k = 0;
            if (system) {
                memcpy(line->text, json_string_value(system), ns);
                memcpy(line->text + ns, "\n\n", 2);
                k = ns + 2;
            }
            memcpy(line->text + k, json_string_value(prompt), np + 1);
            line->output_len = out ? (int)json_integer_value(out) : 0;
            rc = 0;
        }
    }
    json_decref(o);
    return rc;
}

int slm_bench_workload_load(struct slm_bench_workload *w, const char *path, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        slm_err_set(err, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0, n_cap = 0;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len != strlen(buf)) {
            slm_err_set(err, "%s:%d: a NUL byte in the line", path, lineno);
            rc = -EINVAL;
            break;
        }
        if (strspn(buf, " \t\r\n") == (size_t)len) continue;
        if (w->n_lines == n_cap) {
            n_cap = n_cap ? 2 * n_cap : 64;
            void *p = realloc(w->lines, (size_t)n_cap * sizeof *w->lines);
            if (!p) {
                rc = -ENOMEM;
                slm_err_set(err, "%s: out of memory", path);
                break;
            }
            w->lines = p;
        }
        if ((rc = parse_line(path, lineno, buf, &w->lines[w->n_lines], err))) break;
        w->n_lines++;
    }
    if (!rc && ferror(f)) {
        rc = -EIO;
        slm_err_set(err, "%s: read error", path);
    }
    if (!rc && w->n_lines == 0) {
        rc = -EINVAL;
        slm_err_set(err, "%s: no prompts (one JSON object per line, e.g. {\"prompt\": \"...\"})", path);
    }
    free(buf);
    fclose(f);
    if (rc) slm_bench_workload_free(w);
    return rc;
}

void slm_bench_workload_free(struct slm_bench_workload *w)
{
    for (int i = 0; i < w->n_lines; i++) free(w->lines[i].text);
    free(w->lines);
    w->lines = NULL;
    w->n_lines = 0;
}

static void random_ids(uint64_t *s, int n_vocab, int32_t *ids, int n)
{
    int hi = n_vocab > 0 && n_vocab < SLM_BENCH_LAST_ID ? n_vocab : SLM_BENCH_LAST_ID;
    for (int k = 0; k < n; k++) ids[k] = (int32_t)uniform_int(s, SLM_BENCH_FIRST_ID, hi - 1);
}

int slm_bench_workload_make(const struct slm_bench_workload *w, uint64_t salt, long i, struct slm_bench_prompt *p)
{
    memset(p, 0, sizeof *p);
    uint64_t s = w->seed ^ (salt * 0xd6e8feb86659fd93ull) ^ ((uint64_t)i * 0xa0761d6478bd642full);
    splitmix64(&s);
    p->output_len = uniform_int(&s, w->output_len.lo, w->output_len.hi);
    if (w->lines) {
        const struct slm_bench_prompt_line *l = &w->lines[i % w->n_lines];
        p->text = l->text;
        if (l->output_len) p->output_len = l->output_len;
        return 0;
    }
    int own = uniform_int(&s, w->input_len.lo, w->input_len.hi);
    int pre = w->prefix_count > 0 ? w->prefix_len : 0;
    p->ids = malloc((size_t)(pre + own) * sizeof *p->ids);
    if (!p->ids) return -ENOMEM;
    if (pre) {
        /* Prefix k's ids depend on the seed and k only: every request with prefix k shares them. */
        uint64_t ps = w->seed ^ 0x5851f42d4c957f2dull ^ (uint64_t)(i % w->prefix_count) * 0x2545f4914f6cdd1dull;
        random_ids(&ps, w->n_vocab, p->ids, pre);
    }
    random_ids(&s, w->n_vocab, p->ids + pre, own);
    p->n_ids = pre + own;
    return 0;
}

void slm_bench_prompt_free(struct slm_bench_prompt *p)
{
    free(p->ids);
    p->ids = NULL;
    p->n_ids = 0;
}
