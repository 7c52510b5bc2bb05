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
#include "common/clock.h"
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
    int error;                 /* the ERROR event's negative errno, or 0 */
    int waiting;               /* a "processing the prompt" line is on stderr */
};

/* Clears the waiting line, if one is shown. */
static void clear_waiting(struct turn *t)
{
    if (!t->waiting) return;
    fputs("\r\033[K", stderr);
    t->waiting = 0;
}

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

/* The end of a completion, with the seed it was sampled with (to repeat it: --seed). */
static void done_json(FILE *f, const struct slm_event *done, uint64_t seed)
{
    fprintf(f, "\"finish\":\"%s\",\"usage\":{\"n_prompt\":%d,\"n_cached\":%d,\"n_generated\":%d},\"seed\":%llu",
            finish_name(done->finish), done->n_prompt, done->n_cached, done->n_generated, (unsigned long long)seed);
}

static void on_token(struct slm_app *a, struct turn *t, const struct slm_event *ev)
{
    clear_waiting(t);
    if (a->note) {   /* a line about this turn (the chat's trimmed history), before its answer */
        fflush(stdout);
        fprintf(stderr, "%s\n", a->note);
        a->note = NULL;
    }
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
static int stream_events(struct slm_app *a, int64_t h, struct turn *t)
{
    int64_t give_up = -1, start = slm_mono_ms();
    /* A prompt that takes the daemon over a second before the first token: a line on stderr
     * at a terminal says so, each second, until the answer starts; with the daemon's PROGRESS
     * events (asked for at a terminal, slm.c) it counts the prompt's tokens and estimates the
     * time left from the rate so far. */
    int show_wait = isatty(STDERR_FILENO), n_tokens = 0, done = -1, of = 0, done0 = -1;
    int64_t t0 = 0;
    for (;;) {
        if (slm_app_signal && give_up < 0) {
            if (slm_cancel(a->client, h) < 0) return 128 + slm_app_signal;
            give_up = slm_mono_ms() + CANCEL_WAIT_MS;
        }
        if (give_up >= 0 && (slm_app_n_signals > 1 || slm_mono_ms() > give_up)) return 128 + slm_app_signal;
        struct slm_event ev;
        int rc = slm_next_event(a->client, &ev, POLL_MS);
        if (rc < 0) {
            a->lost = 1;
            return slm_app_fail(a, "the request failed", rc);
        }
        if (rc == 1 && ev.handle == h && ev.type == SLM_EVENT_PROGRESS) {
            done = ev.n_cached;
            of = ev.n_prompt;
            if (done0 < 0) {   /* the rate counts from the first report on */
                done0 = done;
                t0 = slm_mono_ms();
            }
        }
        if (show_wait && !n_tokens && slm_mono_ms() - start >= 1000 && (rc == 0 || ev.type == SLM_EVENT_PROGRESS)) {
            int64_t now = slm_mono_ms();
            fprintf(stderr, "\r%s: processing the prompt", a->prog);
            if (done >= 0) {
                fprintf(stderr, ": %d of %d tokens (%d%%)", done, of, (int)(100LL * done / (of ? of : 1)));
                if (done > done0 && now > t0)
                    fprintf(stderr, ", about %d s left", (int)((int64_t)(of - done) * (now - t0) / (done - done0) / 1000));
            }
            fprintf(stderr, ", %d s \033[K", (int)((now - start) / 1000));
            t->waiting = 1;
        }
        if (rc == 0 || ev.handle != h || ev.type == SLM_EVENT_PROGRESS) continue;
        if (ev.type == SLM_EVENT_TOKEN) {
            n_tokens++;
            on_token(a, t, &ev);
            continue;
        }
        clear_waiting(t);
        if (ev.type == SLM_EVENT_ERROR) {
            t->error = ev.error;
            if (ev.error == -E2BIG && a->retry_e2big) return SLM_EXIT_FAILED;   /* the caller trims and retries */
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

/* stream_events, with the waiting line (if any) gone when it returns. */
static int stream(struct slm_app *a, int64_t h, struct turn *t)
{
    int status = stream_events(a, h, t);
    clear_waiting(t);
    return status;
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
        done_json(stdout, &t->done, a->params.seed);
        fputs("}\n", stdout);
    } else if (a->json) {
        fputs("{\"text\":", stdout);
        slm_json_string(stdout, t->text_buf, t->text_len);
        fputc(',', stdout);
        done_json(stdout, &t->done, a->params.seed);
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
static int64_t submit_retry(struct slm_app *a, const char *prompt, const struct slm_message *msgs, int n)
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
    if (h == -E2BIG) {   /* in the user's terms: the size, and what to do */
        fprintf(stderr, "%s: the prompt is %.1f MB, more than one request to slmd can carry (its shared memory "
                "with this client); shorten it\n", a->prog, (double)strlen(prompt) / (1 << 20));
        status = SLM_EXIT_FAILED;
        goto out;
    }
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
    int *cost;                 /* tokens each message added to the prompt, as measured (0: unknown) */
    int n, cap;
    int tokens;                /* the last turn's prompt + answer, in tokens (0: unknown) */
};

static int history_add(struct history *hist, const char *role, const char *content)
{
    if (hist->n == hist->cap) {
        int cap = hist->cap ? 2 * hist->cap : 16;
        struct slm_message *m = realloc(hist->msgs, (size_t)cap * sizeof *m);
        if (!m) return -ENOMEM;
        hist->msgs = m;
        int *c = realloc(hist->cost, (size_t)cap * sizeof *c);
        if (!c) return -ENOMEM;
        hist->cost = c;
        hist->cap = cap;
    }
    char *copy = strdup(content);
    if (!copy) return -ENOMEM;
    hist->cost[hist->n] = 0;
    hist->msgs[hist->n++] = (struct slm_message){role, copy};
    return 0;
}

/* Drops the messages after the first keep. */
static void history_truncate(struct history *hist, int keep)
{
    while (hist->n > keep) free((char *)hist->msgs[--hist->n].content);
    hist->tokens = 0;
}

/* Drops the oldest exchange after the first `keep` messages (one user message and the
 * assistant's answer after it), never the last message. Returns 1, or 0 when there is none. */
static int history_drop_oldest(struct history *hist, int keep)
{
    int n = hist->n - 1 > keep && !strcmp(hist->msgs[keep].role, "user") ? 1 : 0;
    if (!n) return 0;
    if (keep + 1 < hist->n - 1 && !strcmp(hist->msgs[keep + 1].role, "assistant")) n = 2;
    for (int i = keep; i < keep + n; i++) {
        free((char *)hist->msgs[i].content);
        hist->tokens -= hist->cost[i];
    }
    memmove(&hist->msgs[keep], &hist->msgs[keep + n], (size_t)(hist->n - keep - n) * sizeof *hist->msgs);
    memmove(&hist->cost[keep], &hist->cost[keep + n], (size_t)(hist->n - keep - n) * sizeof *hist->cost);
    hist->n -= n;
    if (hist->tokens < 0) hist->tokens = 0;
    return 1;
}

/* One turn: the user's line goes into the history, the answer streams, and joins the history
 * when it finished. A conversation that no longer fits the context (or the shared memory)
 * loses its oldest turns, one at a time, until it fits; one line says so. The first `keep`
 * messages (the system message) stay. Returns the status of stream(), or SLM_EXIT_FAILED /
 * SLM_EXIT_ERROR. */
static int chat_turn(struct slm_app *a, struct history *hist, int keep, const char *line)
{
    int dropped = 0;
    char note[200];
    struct turn t;
    int status = SLM_EXIT_ERROR;
    if (history_add(hist, "user", line) < 0) return SLM_EXIT_ERROR;
    /* Room for the answer: while the last turn's measured tokens, this line (estimated at a
     * token per 2 bytes, plus the template's few) and the answer's share (max-tokens, at most
     * a quarter of the context) would pass the context, the oldest exchange goes first. A
     * refusal for size (below) catches what the estimate misses. */
    int answer = a->params.max_tokens > 0 && a->params.max_tokens < a->n_ctx / 4 ? a->params.max_tokens : a->n_ctx / 4;
    while (a->n_ctx && hist->tokens && hist->tokens + (int)(strlen(line) / 2) + 8 + answer > a->n_ctx &&
           history_drop_oldest(hist, keep))
        dropped++;
    if (dropped) {
        snprintf(note, sizeof note, "%s: the conversation outgrew the context of %d tokens: dropped its oldest %d "
                 "turn%s (/reset starts over)", a->prog, a->n_ctx, dropped, dropped > 1 ? "s" : "");
        a->note = note;
    }
    for (;;) {
        if (turn_open(&t) < 0) goto out;
        a->retry_e2big = hist->n - 1 > keep;
        int64_t h = submit_retry(a, NULL, hist->msgs, hist->n);
        if (h == -E2BIG && a->retry_e2big) t.error = -E2BIG, status = SLM_EXIT_FAILED;
        else if (h < 0) {
            a->lost = h == -ECONNRESET;
            status = slm_app_fail(a, "cannot submit the conversation", (int)h);
            goto out;
        } else {
            status = stream(a, h, &t);
        }
        if (status != SLM_EXIT_FAILED || t.error != -E2BIG || !a->retry_e2big) break;
        if (!history_drop_oldest(hist, keep)) break;
        dropped++;
        snprintf(note, sizeof note, "%s: the conversation outgrew the context of %d tokens: dropped its oldest %d "
                 "turn%s (/reset starts over)", a->prog, a->n_ctx, dropped, dropped > 1 ? "s" : "");
        a->note = note;
        turn_free(&t);
    }
    print_end(a, &t);
    if (status == SLM_EXIT_OK && history_add(hist, "assistant", t.text_buf ? t.text_buf : "") < 0) status = SLM_EXIT_ERROR;
    if (status == SLM_EXIT_OK) {   /* what this exchange costs, measured by the daemon */
        int total = t.done.n_prompt + t.done.n_generated + 1;
        hist->cost[hist->n - 1] = total - hist->tokens > 0 ? total - hist->tokens : 0;
        hist->tokens = total;
    }
out:
    if (a->note) {   /* no token came: say it now */
        fprintf(stderr, "%s\n", a->note);
        a->note = NULL;
    }
    a->retry_e2big = 0;
    if (status != SLM_EXIT_OK) {
        /* the user's line leaves the history (what was dropped stays dropped) */
        free((char *)hist->msgs[--hist->n].content);
    }
    turn_free(&t);
    return status;
}

static const char chat_help[] =
    "  /help         this list\n"
    "  /reset        forget the conversation (the system message stays)\n"
    "  /system TEXT  the system message from now on (/system alone: none; the model's default\n"
    "                then applies); the conversation so far stays\n"
    "  /exit         end (also Ctrl-D)\n";

/* A line that starts with '/': /reset, /system, /help (/exit is the caller's). Messages go
 * to stderr, so that stdout holds only the answers. 0, or -ENOMEM. */
static int chat_command(const struct slm_app *a, struct history *hist, int *keep, const char *line)
{
    if (!strcmp(line, "/reset")) {
        history_truncate(hist, *keep);
        fprintf(stderr, "%s: the conversation starts over\n", a->prog);
        return 0;
    }
    if (!strcmp(line, "/help")) {
        fprintf(stderr, "%s: commands:\n%s", a->prog, chat_help);
        return 0;
    }
    if (!strncmp(line, "/system", 7) && (line[7] == 0 || line[7] == ' ')) {
        const char *text = line + 7 + strspn(line + 7, " ");
        if (*keep) {   /* the old system message goes */
            free((char *)hist->msgs[0].content);
            memmove(&hist->msgs[0], &hist->msgs[1], (size_t)(hist->n - 1) * sizeof *hist->msgs);
            memmove(&hist->cost[0], &hist->cost[1], (size_t)(hist->n - 1) * sizeof *hist->cost);
            hist->n--;
            *keep = 0;
        }
        if (*text) {   /* the new one goes first */
            if (history_add(hist, "system", text) < 0) return -ENOMEM;
            struct slm_message m = hist->msgs[hist->n - 1];
            memmove(&hist->msgs[1], &hist->msgs[0], (size_t)(hist->n - 1) * sizeof *hist->msgs);
            memmove(&hist->cost[1], &hist->cost[0], (size_t)(hist->n - 1) * sizeof *hist->cost);
            hist->msgs[0] = m;
            hist->cost[0] = 0;
            *keep = 1;
        }
        hist->tokens = 0;   /* unmeasured until the next answer */
        fprintf(stderr, "%s: %s\n", a->prog, *text ? "system message set" : "no system message (the model's default)");
        return 0;
    }
    fprintf(stderr, "%s: unknown command '%s'; commands:\n%s", a->prog, line, chat_help);
    return 0;
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
    int keep = hist.n;   /* what /reset keeps: the system message */
    struct slm_info in;
    int have_info = slm_info(a->client, &in) == 0;
    a->n_ctx = have_info ? in.n_ctx : 0;
    if (tty)
        fprintf(stderr, "slm chat: %s at %s. /help lists the commands; /exit or Ctrl-D ends.\n",
                have_info ? in.model : "slmd", a->socket);
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
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
            if (line[0] == '/') {
                if (chat_command(a, &hist, &keep, line) < 0) {
                    status = SLM_EXIT_ERROR;
                    break;
                }
                continue;
            }
            text = line;
        }
        status = chat_turn(a, &hist, keep, text);
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
    free(hist.cost);
    free(line);
    return status;
}
