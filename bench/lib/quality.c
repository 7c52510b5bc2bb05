/* bench/lib/quality.c - see quality.h. */
#define _GNU_SOURCE
#include "bench/lib/quality.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/slm.h"

#define EVENT_TIMEOUT_MS 600000

/* One scoring request: the logprobs of positions [from, n_ids) of ids summed. */
struct scored {
    int32_t *ids;
    int n_ids, from;
    int64_t handle;
    double sum;
    int count, done;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Takes one event and files it into its request. 0, or -errno with err. */
static int take_event(struct slm_client *c, struct scored *r, int n, int *n_done, char *err)
{
    struct slm_event ev;
    int rc = slm_next_event(c, &ev, EVENT_TIMEOUT_MS);
    if (rc <= 0) {
        slm_err_set(err, "waiting for slmd: %s", rc ? slm_strerror(rc) : "no answer within 600 s");
        return rc ? rc : -ETIMEDOUT;
    }
    int k = 0;
    while (k < n && r[k].handle != ev.handle) k++;
    if (k == n) return 0;
    if (ev.type == SLM_EVENT_ERROR) {
        slm_err_set(err, "slmd refused a scoring request: %s", ev.message ? ev.message : slm_strerror(ev.error));
        return ev.error < 0 ? ev.error : -EIO;
    }
    if (ev.type == SLM_EVENT_PROMPT_LOGPROBS) {
        for (int i = 0; i < ev.n_top; i++) {
            int pos = ev.prompt_pos + i;
            if (pos < r[k].from || pos >= r[k].n_ids) continue;
            if (ev.top[i].token != r[k].ids[pos] || !isfinite(ev.top[i].logprob)) {
                slm_err_set(err, "position %d: slmd scored token %d with %g, expected token %d", pos, ev.top[i].token,
                            (double)ev.top[i].logprob, r[k].ids[pos]);
                return -EPROTO;
            }
            r[k].sum += ev.top[i].logprob;
            r[k].count++;
        }
    } else if (ev.type == SLM_EVENT_DONE) {
        r[k].done = 1;
        ++*n_done;
    }
    return 0;
}

/* Submits every request (taking events whenever the rings are full) and waits for them all. */
static int score_all(struct slm_client *c, struct scored *r, int n, char *err)
{
    struct slm_params p;
    slm_params_default(&p);
    p.temperature = 0;
    p.max_tokens = 1;
    p.ignore_eos = 1;
    p.prompt_logprobs = 1;
    int n_done = 0, rc;
    for (int i = 0; i < n; i++) {
        while ((r[i].handle = slm_submit_ids(c, r[i].ids, r[i].n_ids, &p)) == -EAGAIN)
            if ((rc = take_event(c, r, i, &n_done, err))) return rc;
        if (r[i].handle < 0) {
            slm_err_set(err, "submitting %d tokens: %s", r[i].n_ids, slm_strerror((int)r[i].handle));
            return (int)r[i].handle;
        }
    }
    while (n_done < n)
        if ((rc = take_event(c, r, n, &n_done, err))) return rc;
    for (int i = 0; i < n; i++)
        if (r[i].count != r[i].n_ids - r[i].from) {
            slm_err_set(err, "request %d: %d of %d positions scored", i, r[i].count, r[i].n_ids - r[i].from);
            return -EPROTO;
        }
    return 0;
}

/* The BOS id slmd's tokenizer puts first, or -1 when it adds none. */
static int32_t find_bos(struct slm_client *c)
{
    int32_t *a = NULL, *b = NULL, bos = -1;
    int na = 0, nb = 0;
    if (slm_tokenize(c, "a", &a, &na) == 0 && slm_tokenize(c, "b", &b, &nb) == 0 && na == 2 && nb == 2 &&
        a[0] == b[0])
        bos = a[0];
    free(a);
    free(b);
    return bos;
}

int slm_bench_perplexity(struct slm_client *c, const char *text, int n_ctx, int max_chunks,
                         struct slm_bench_ppl *out, char *err)
{
    memset(out, 0, sizeof *out);
    if (n_ctx < 4) {
        slm_err_set(err, "perplexity: a context of %d tokens is too short", n_ctx);
        return -EINVAL;
    }
    int32_t *ids = NULL;
    int n = 0;
    int rc = slm_tokenize(c, text, &ids, &n);
    if (rc) {
        slm_err_set(err, "perplexity: tokenizing the text: %s", slm_strerror(rc));
        return rc;
    }
    if (n < 2 * n_ctx) {
        slm_err_set(err, "perplexity: the text is %d tokens; a context of %d needs at least %d", n, n_ctx, 2 * n_ctx);
        free(ids);
        return -EINVAL;
    }
    int32_t bos = find_bos(c);
    int n_chunks = n / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunks) n_chunks = max_chunks;
    struct scored *r = calloc((size_t)n_chunks, sizeof *r);
    if (!r) {
        free(ids);
        slm_err_set(err, "out of memory");
        return -ENOMEM;
    }
    for (int k = 0; k < n_chunks; k++) {
        r[k].ids = ids + (size_t)k * (size_t)n_ctx;
        r[k].n_ids = n_ctx;
        r[k].from = n_ctx / 2 + 1;
        if (bos >= 0) r[k].ids[0] = bos;   /* the chunks do not overlap: each owns its first id */
    }
    double t0 = now_s();
    rc = score_all(c, r, n_chunks, err);
    if (!rc) {
        double sum = 0;
        long count = 0;
        for (int k = 0; k < n_chunks; k++) sum += r[k].sum, count += r[k].count;
        *out = (struct slm_bench_ppl){.nll = -sum / (double)count, .n_scored = count, .n_chunks = n_chunks,
                                      .n_ctx = n_ctx, .seconds = now_s() - t0};
        out->ppl = exp(out->nll);
    }
    free(r);
    free(ids);
    return rc;
}

/* One item of an eval file. */
struct item {
    int answer, n_choices;
    int first;                 /* its first request in the array of all */
};

/* Parses one JSONL line into *it, adding a request per choice to rq (capacity grown). */
static int parse_item(struct slm_client *c, const char *line, struct item *it, struct scored **rq, int *n_rq,
                      int *cap, double **bytes, char *why)
{
    json_error_t je;
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    int rc = -EINVAL;
    if (!o || !json_is_object(o)) {
        snprintf(why, SLM_ERR_LEN, "%s", o ? "not a JSON object" : je.text);
        goto out;
    }
    json_t *ctx = json_object_get(o, "context"), *choices = json_object_get(o, "choices"),
           *answer = json_object_get(o, "answer");
    if (!json_is_string(ctx) || !json_is_array(choices) || json_array_size(choices) < 2 || !json_is_integer(answer)) {
        snprintf(why, SLM_ERR_LEN, "needs \"context\" (a string), \"choices\" (2 or more strings), \"answer\" (an index)");
        goto out;
    }
    it->n_choices = (int)json_array_size(choices);
    it->answer = (int)json_integer_value(answer);
    if (json_integer_value(answer) < 0 || json_integer_value(answer) >= it->n_choices) {
        snprintf(why, SLM_ERR_LEN, "answer %lld is not an index into the %d choices",
                 (long long)json_integer_value(answer), it->n_choices);
        goto out;
    }
    it->first = *n_rq;
    int32_t *cids = NULL;
    int n_cids = 0;
    if ((rc = slm_tokenize(c, json_string_value(ctx), &cids, &n_cids))) {
        snprintf(why, SLM_ERR_LEN, "tokenizing the context: %s", slm_strerror(rc));
        goto out;
    }
    for (int i = 0; i < it->n_choices; i++) {
        json_t *ch = json_array_get(choices, (size_t)i);
        if (!json_is_string(ch) || !json_string_length(ch)) {
            snprintf(why, SLM_ERR_LEN, "choice %d is not a non-empty string", i);
            rc = -EINVAL;
            break;
        }
        char *full = NULL;
        if (asprintf(&full, "%s%s", json_string_value(ctx), json_string_value(ch)) < 0) {
            rc = -ENOMEM;
            break;
        }
        if (*n_rq == *cap) {
            *cap = *cap ? 2 * *cap : 64;
            struct scored *p = realloc(*rq, (size_t)*cap * sizeof *p);
            double *b = realloc(*bytes, (size_t)*cap * sizeof *b);
            if (p) *rq = p;
            if (b) *bytes = b;
            if (!p || !b) {
                free(full);
                rc = -ENOMEM;
                break;
            }
        }
        struct scored *r = &(*rq)[*n_rq];
        memset(r, 0, sizeof *r);
        rc = slm_tokenize(c, full, &r->ids, &r->n_ids);
        free(full);
        if (rc) {
            snprintf(why, SLM_ERR_LEN, "tokenizing choice %d: %s", i, slm_strerror(rc));
            break;
        }
        /* The choice's tokens: what follows the longest common prefix with the context's. */
        int p = 0;
        while (p < n_cids && p < r->n_ids && r->ids[p] == cids[p]) p++;
        r->from = p > 0 ? p : 1;
        (*bytes)[*n_rq] = (double)json_string_length(ch);
        ++*n_rq;
        if (r->from >= r->n_ids) {
            snprintf(why, SLM_ERR_LEN, "choice %d adds no token to the context", i);
            rc = -EINVAL;
            break;
        }
    }
    free(cids);
out:
    json_decref(o);
    return rc;
}

int slm_bench_eval_file(struct slm_client *c, const char *path, struct slm_bench_eval *out, char *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        slm_err_set(err, "%s: %s", path, strerror(errno));
        return -errno;
    }
    struct item *items = NULL;
    struct scored *rq = NULL;
    double *bytes = NULL;
    int n_items = 0, cap_items = 0, n_rq = 0, cap_rq = 0, rc = 0, line_no = 0;
    char *line = NULL;
    size_t line_cap = 0;
    while (getline(&line, &line_cap, f) > 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        if (n_items == cap_items) {
            cap_items = cap_items ? 2 * cap_items : 32;
            struct item *p = realloc(items, (size_t)cap_items * sizeof *p);
            if (!p) {
                rc = -ENOMEM;
                slm_err_set(err, "out of memory");
                break;
            }
            items = p;
        }
        char why[SLM_ERR_LEN];
        if ((rc = parse_item(c, line, &items[n_items], &rq, &n_rq, &cap_rq, &bytes, why))) {
            slm_err_set(err, "%s:%d: %s", path, line_no, why);
            break;
        }
        n_items++;
    }
    fclose(f);
    free(line);
    if (!rc && n_items == 0) {
        slm_err_set(err, "%s: no items", path);
        rc = -EINVAL;
    }
    double t0 = now_s();
    if (!rc) rc = score_all(c, rq, n_rq, err);
    if (!rc) {
        for (int i = 0; i < n_items; i++) {
            int best = 0, best_norm = 0;
            for (int j = 1; j < items[i].n_choices; j++) {
                int k = items[i].first + j, b = items[i].first + best, bn = items[i].first + best_norm;
                if (rq[k].sum > rq[b].sum) best = j;
                if (rq[k].sum / bytes[k] > rq[bn].sum / bytes[bn]) best_norm = j;
            }
            out->n_correct += best == items[i].answer;
            out->n_correct_norm += best_norm == items[i].answer;
        }
        out->n_items = n_items;
        out->acc = (double)out->n_correct / n_items;
        out->acc_norm = (double)out->n_correct_norm / n_items;
        out->seconds = now_s() - t0;
    }
    for (int i = 0; i < n_rq; i++) free(rq[i].ids);
    free(rq);
    free(bytes);
    free(items);
    return rc;
}
