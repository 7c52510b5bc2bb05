/*
 * client/cli/app.h - what the parts of the `slm` command share: the parsed command line, the
 * exit statuses, the connection, and the commands that stream (generate.c).
 */
#ifndef SLM_CLI_APP_H
#define SLM_CLI_APP_H

#include <signal.h>

#include "client/slm.h"

/* Exit statuses (slm --help and docs/client.md list them). An interrupted command exits with
 * 128 + the signal's number (130 for SIGINT) after cancelling its request. */
enum {
    SLM_EXIT_OK = 0,
    SLM_EXIT_ERROR = 1,        /* anything else: standard input unreadable, out of memory */
    SLM_EXIT_USAGE = 2,        /* a bad flag, value or argument */
    SLM_EXIT_CONNECT = 3,      /* no daemon at the socket, or it refused us */
    SLM_EXIT_FAILED = 4,       /* the daemon refused or failed the request, or went away */
    SLM_EXIT_CANCELLED = 5,    /* the daemon cancelled the request (it is shutting down) */
};

struct slm_app {
    const char *prog;          /* "slm generate": the prefix of every message */
    const char *socket;        /* --socket, else $SLM_SOCKET, else SLM_DEFAULT_SOCKET */
    int json, stream_json;
    const char *system;        /* chat: --system */
    const char *first;         /* chat: --prompt, the first turn */
    struct slm_params params;  /* stop points into stops */
    const char **stops;
    char **args;               /* the positional arguments */
    int n_args;
    struct slm_client *client;
    int lost;                  /* the daemon went away (a chat ends) */
    int n_ctx;                 /* chat: the daemon's context (slm_info), for messages */
    int retry_e2big;           /* chat: a refusal for size is the caller's to handle (it trims) */
    const char *note;          /* a line for stderr before the next answer's first token */
};

/* The signal that interrupted the command (0: none yet) and how many came. */
extern volatile sig_atomic_t slm_app_signal, slm_app_n_signals;

/* Connects a->client. SLM_EXIT_OK, or SLM_EXIT_CONNECT after one line naming the socket and why. */
int slm_app_connect(struct slm_app *a);

/* Prints "PROG: what: reason" for a failed libslm call and returns SLM_EXIT_FAILED. */
int slm_app_fail(const struct slm_app *a, const char *what, int err);

/* The prompt argument: the text itself, or (for "-") all of standard input in *owned (the
 * caller frees it). NULL after a one-line error. */
const char *slm_app_text_arg(const struct slm_app *a, const char *arg, char **owned);

/* Commands that stream a completion; each checks its input, connects, and returns the exit status. */
int slm_cmd_generate(struct slm_app *a);
int slm_cmd_chat(struct slm_app *a);

/* The model store (models.c), without a daemon: list, fetch from the catalogue, remove. */
int slm_cmd_models(struct slm_app *a);
int slm_cmd_pull(struct slm_app *a);
int slm_cmd_rm(struct slm_app *a);

#endif
