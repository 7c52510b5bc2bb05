/*
 * client/cli/generate.c - the commands of `slm` that stream a completion: generate (one
 * prompt) and chat (a conversation whose whole history goes with every turn). SIGINT or
 * SIGTERM cancels the running request through slm_cancel and waits for its DONE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/cli/app.h"
#include "client/cli/json.h"

#define POLL_MS 100           /* how often the stream loop looks at the signal flag */
#define CANCEL_WAIT_MS 5000   /* how long it waits for a cancelled request's DONE */

volatile sig_atomic_t slm_app_signal, slm_app_n_signals;

static void on_signal(int sig)
{
    slm_app_signal = sig;
    slm_app_n_signals++;
}

/* No SA_RESTART: a read of the next chat line returns EINTR. */
static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One completion as it streams: its text, its tokens' logprobs as JSON (for --json), its DONE. */
struct turn {
    FILE *text;                /* open_memstream on text_buf */
    char *text_buf;
    size_t text_len;
    FILE *lp;                  /* --json with --logprobs: the array's elements */
    char *lp_buf;
    size_t lp_len;
    int n_lp;
    struct slm_event done;     /* type DONE once finished */
};

static int turn_open(struct turn *t)
{
    memset(t, 0, sizeof *t);
    t->text = open_memstream(&t->text_buf, &t->text_len);
    t->lp = open_memstream(&t->lp_buf, &t->lp_len);
    return t->text && t->lp ? 0 : -ENOMEM;
}

/* Ends the streams (text_buf and lp_buf are then NUL-terminated strings). */
static void turn_close(struct turn *t)
{
    if (t->text) fclose(t->text);
    if (t->lp) fclose(t->lp);
    t->text = t->lp = NULL;
}

static void turn_free(struct turn *t)
{
    turn_close(t);
    free(t->text_buf);
    free(t->lp_buf);
    t->text_buf = t->lp_buf = NULL;
}

/* The fields of a token with its logprobs: "token":..,"text":..[,"logprob":..,"top":[..]]. */
static void token_json(FILE *f, const struct slm_event *ev, int logprobs)
{
    fprintf(f, "\"token\":%d,\"text\":", ev->token);
    slm_json_string(f, ev->text, ev->text_len);
    if (!logprobs) return;
    fputs(",\"logprob\":", f);
    slm_json_number(f, ev->logprob);
    fputs(",\"top\":[", f);
    for (int i = 0; i < ev->n_top; i++) {
        fprintf(f, "%s{\"token\":%d,\"logprob\":", i ? "," : "", ev->top[i].token);
        slm_json_number(f, ev->top[i].logprob);
        fputc('}', f);
    }
    fputc(']', f);
}

static const char *finish_name(enum slm_finish_reason r)
{
    return r == SLM_FINISH_STOP ? "stop" : r == SLM_FINISH_LENGTH ? "length" : r == SLM_FINISH_CANCELLED
                                                                                  ? "cancelled" : "unknown";
}

static void done_json(FILE *f, const struct slm_event *done)
{
    fprintf(f, "\"finish\":\"%s\",\"usage\":{\"n_prompt\":%d,\"n_cached\":%d,\"n_generated\":%d}",
            finish_name(done->finish), done->n_prompt, done->n_cached, done->n_generated);
}

static void on_token(const struct slm_app *a, struct turn *t, const struct slm_event *ev)
{
    fwrite(ev->text, 1, ev->text_len, t->text);
    if (a->stream_json) {
        fputs("{\"event\":\"token\",", stdout);
        token_json(stdout, ev, a->params.logprobs);
        fputs("}\n", stdout);
    } else if (a->json && a->params.logprobs) {
        fputs(t->n_lp++ ? ",{" : "{", t->lp);
        token_json(t->lp, ev, 1);
        fputc('}', t->lp);
    } else if (!a->json) {
        fwrite(ev->text, 1, ev->text_len, stdout);
    }
    fflush(stdout);
}

/* Streams request h into t and to stdout. Returns SLM_EXIT_OK (DONE), SLM_EXIT_FAILED (an
 * ERROR event, or the daemon went away), SLM_EXIT_CANCELLED (the daemon cancelled it), or
 * 128 + the signal that interrupted the command (the request cancelled, its DONE awaited). */
static int stream(struct slm_app *a, int64_t h, struct turn *t)
{
    int64_t give_up = -1;
    for (;;) {
        if (slm_app_signal && give_up < 0) {
            if (slm_cancel(a->client, h) < 0) return 128 + slm_app_signal;
            give_up = mono_ms() + CANCEL_WAIT_MS;
        }
        if (give_up >= 0 && (slm_app_n_signals > 1 || mono_ms() > give_up)) return 128 + slm_app_signal;
        struct slm_event ev;
        int rc = slm_next_event(a->client, &ev, POLL_MS);
        if (rc < 0) {
            a->lost = 1;
            return slm_app_fail(a, "the request failed", rc);
        }
        if (rc == 0 || ev.handle != h) continue;
        if (ev.type == SLM_EVENT_TOKEN) {
            on_token(a, t, &ev);
            continue;
        }
        if (ev.type == SLM_EVENT_ERROR) {
            const char *why = ev.message && ev.message[0] ? ev.message : slm_strerror(ev.error);
            fprintf(stderr, "%s: slmd refused the request: %s\n", a->prog, why);
            if (a->stream_json) {
                fputs("{\"event\":\"error\",\"error\":", stdout);
                slm_json_string(stdout, why, strlen(why));
                fputs("}\n", stdout);
            }
            return SLM_EXIT_FAILED;
        }
        t->done = ev;
        if (ev.finish != SLM_FINISH_CANCELLED) return SLM_EXIT_OK;
        return slm_app_signal ? 128 + slm_app_signal : SLM_EXIT_CANCELLED;
    }
}

/* Writes what follows a finished (or cancelled) completion: the newline after the text, or
 * the JSON object of the whole turn (--json), or the "done" event (--stream-json). */
static void print_end(const struct slm_app *a, struct turn *t)
{
    turn_close(t);
    if (t->done.type != SLM_EVENT_DONE) {   /* failed or given up: no usage to report */
        if (!a->json && !a->stream_json && t->text_len) fputc('\n', stdout);
        return;
    }
    if (a->stream_json) {
        fputs("{\"event\":\"done\",", stdout);
        done_json(stdout, &t->done);
        fputs("}\n", stdout);
    } else if (a->json) {
        fputs("{\"text\":", stdout);
        slm_json_string(stdout, t->text_buf, t->text_len);
        fputc(',', stdout);
        done_json(stdout, &t->done);
        if (a->params.logprobs) printf(",\"logprobs\":[%s]", t->lp_buf);
        fputs("}\n", stdout);
    } else {
        fputc('\n', stdout);
    }
    fflush(stdout);
}

/* Says why a completion ended early (status from stream), if it did. */
static void report_end(const struct slm_app *a, int status)
{
    if (status == SLM_EXIT_CANCELLED) fprintf(stderr, "%s: slmd cancelled the request\n", a->prog);
    else if (status > 128) fprintf(stderr, "%s: interrupted; the request was cancelled\n", a->prog);
}

/* Submits, retrying while the rings are full (they are not, for one request at a time,
 * unless the daemon is slow to take it). Returns the handle or a negative errno. */
static int64_t submit_retry(const struct slm_app *a, const char *prompt, const struct slm_message *msgs, int n)
{
    for (int tries = 0;; tries++) {
        int64_t h = prompt ? slm_submit_text(a->client, prompt, &a->params)
                           : slm_submit_chat(a->client, msgs, n, &a->params);
        if (h != -EAGAIN || tries == 1000 || slm_app_signal) return h;
        struct slm_event ev;
        int rc = slm_next_event(a->client, &ev, 5);   /* lets the daemon's progress free room */
        if (rc < 0) return rc;
    }
}

int slm_cmd_generate(struct slm_app *a)
{
    char *owned;
    const char *prompt = slm_app_text_arg(a, a->args[0], &owned);
    if (!prompt) return SLM_EXIT_ERROR;
    catch_signals();
    struct turn t;
    int status = turn_open(&t) < 0 ? SLM_EXIT_ERROR : slm_app_connect(a);
    if (status != SLM_EXIT_OK) goto out;
    int64_t h = submit_retry(a, prompt, NULL, 0);
    if (h < 0) {
        status = slm_app_fail(a, "cannot submit the prompt", (int)h);
        goto out;
    }
    status = stream(a, h, &t);
    print_end(a, &t);
    report_end(a, status);
out:
    turn_free(&t);
    free(owned);
    return status;
}

/* ---- chat ------------------------------------------------------------------------------------ */

struct history {
    struct slm_message *msgs;  /* content malloc'd; role a literal */
    int n, cap;
};

static int history_add(struct history *hist, const char *role, const char *content)
{
    if (hist->n == hist->cap) {
        int cap = hist->cap ? 2 * hist->cap : 16;
        struct slm_message *m = realloc(hist->msgs, (size_t)cap * sizeof *m);
        if (!m) return -ENOMEM;
        hist->msgs = m;
        hist->cap = cap;
    }
    char *copy = strdup(content);
    if (!copy) return -ENOMEM;
    hist->msgs[hist->n++] = (struct slm_message){role, copy};
    return 0;
}

/* Drops the messages after the first keep. */
static void history_truncate(struct history *hist, int keep)
{
    while (hist->n > keep) free((char *)hist->msgs[--hist->n].content);
}

/* One turn: the user's line goes into the history, the answer streams, and joins the history
 * when it finished. Returns the status of stream(), or SLM_EXIT_FAILED / SLM_EXIT_ERROR. */
static int chat_turn(struct slm_app *a, struct history *hist, const char *line)
{
    int keep = hist->n;
    struct turn t;
    int status = SLM_EXIT_ERROR;
    if (turn_open(&t) < 0 || history_add(hist, "user", line) < 0) goto out;
    int64_t h = submit_retry(a, NULL, hist->msgs, hist->n);
    if (h < 0) {
        a->lost = h == -ECONNRESET;
        status = slm_app_fail(a, "cannot submit the conversation", (int)h);
        goto out;
    }
    status = stream(a, h, &t);
    print_end(a, &t);
    if (status == SLM_EXIT_OK && history_add(hist, "assistant", t.text_buf ? t.text_buf : "") < 0) status = SLM_EXIT_ERROR;
out:
    if (status != SLM_EXIT_OK) history_truncate(hist, keep);
    turn_free(&t);
    return status;
}

int slm_cmd_chat(struct slm_app *a)
{
    int tty = isatty(STDIN_FILENO);
    struct history hist = {0};
    char *line = NULL;
    size_t cap = 0;
    int status = slm_app_connect(a);
    if (status != SLM_EXIT_OK) return status;
    catch_signals();
    if (a->system && history_add(&hist, "system", a->system) < 0) return SLM_EXIT_ERROR;
    int keep = hist.n;   /* what /reset keeps */
    if (tty) {
        struct slm_info in;
        fprintf(stderr, "slm chat: %s at %s. /exit or Ctrl-D ends, /reset starts over.\n",
                slm_info(a->client, &in) == 0 ? in.model : "slmd", a->socket);
    }
    for (int turn = 0;; turn++) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        const char *text;
        if (turn == 0 && a->first) {
            text = a->first;
            if (tty) printf("%s\n", text);
        } else {
            errno = 0;
            ssize_t len = getline(&line, &cap, stdin);
            if (len < 0) {
                if (slm_app_signal) status = 128 + slm_app_signal;
                else if (errno) {
                    fprintf(stderr, "%s: cannot read standard input: %s\n", a->prog, strerror(errno));
                    status = SLM_EXIT_ERROR;
                }
                if (tty) fputc('\n', stdout);
                break;
            }
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (strspn(line, " \t") == (size_t)len) continue;
            if (!strcmp(line, "/exit")) break;
            if (!strcmp(line, "/reset")) {
                history_truncate(&hist, keep);
                continue;
            }
            text = line;
        }
        status = chat_turn(a, &hist, text);
        report_end(a, status);
        if (tty && !a->json && !a->stream_json) fputc('\n', stdout);
        if (status == SLM_EXIT_OK) continue;
        /* At a terminal a failed or interrupted turn is forgotten and the chat goes on; a
         * second Ctrl-C, a lost daemon or a script's failure end it. */
        if (!tty || slm_app_n_signals > 1 || a->lost || status == SLM_EXIT_ERROR || status == SLM_EXIT_CANCELLED)
            break;
        slm_app_signal = 0;
        slm_app_n_signals = 0;
        status = SLM_EXIT_OK;
    }
    history_truncate(&hist, 0);
    free(hist.msgs);
    free(line);
    return status;
}
