/*
 * client/cli/slm.c - `slm`, the command-line client of slmd: the command line (one table of
 * options, each valid for some commands), the connection, and the commands that answer at
 * once (info, stats, tokenize, detokenize). generate.c streams (generate, chat).
 * docs/client.md describes the commands, the JSON shapes and the exit statuses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/cli/app.h"
#include "client/cli/json.h"
#include "common/args.h"
#include "common/err.h"
#include "common/parse.h"

#ifndef SLM_VERSION
#define SLM_VERSION "unknown"
#endif
#ifndef SLM_GIT_REV
#define SLM_GIT_REV ""
#endif

static int cmd_info(struct slm_app *a);
static int cmd_stats(struct slm_app *a);
static int cmd_tokenize(struct slm_app *a);
static int cmd_detokenize(struct slm_app *a);

enum { C_GENERATE = 1, C_CHAT = 2, C_INFO = 4, C_STATS = 8, C_TOKENIZE = 16, C_DETOKENIZE = 32, C_MODELS = 64,
       C_PULL = 128, C_RM = 256 };
#define C_ALL 511u
#define C_DAEMON 63u   /* the commands that talk to slmd */
#define C_SAMPLING (C_GENERATE | C_CHAT)

struct command {
    const char *name;
    unsigned bit;
    const char *args;          /* the positional arguments, for the usage line */
    const char *summary;
    int (*run)(struct slm_app *a);
    int min_args, max_args;
};

static const struct command commands[] = {
    {"generate", C_GENERATE, "PROMPT", "complete PROMPT ('-': standard input), streaming the text to stdout",
     slm_cmd_generate, 1, 1},
    {"chat", C_CHAT, "", "a conversation, one user turn a line (/help, /reset, /system TEXT, /exit)",
     slm_cmd_chat, 0, 0},
    {"info", C_INFO, "", "the model and the engine's limits", cmd_info, 0, 0},
    {"stats", C_STATS, "", "the daemon's counters: clients, requests, tokens, KV blocks", cmd_stats, 0, 0},
    {"tokenize", C_TOKENIZE, "TEXT", "the token ids of TEXT ('-': standard input), on one line", cmd_tokenize,
     1, 1},
    {"detokenize", C_DETOKENIZE, "ID...", "the text of token ids ('-': ids from standard input)",
     cmd_detokenize, 1, 1 << 20},
    {"models", C_MODELS, "", "the models in the store (name, size, quantization, architecture, context) and the "
     "catalogue's", slm_cmd_models, 0, 0},
    {"pull", C_PULL, "NAME", "fetch a model of the catalogue into your store (sha256 checked; progress on a terminal)",
     slm_cmd_pull, 1, 1},
    {"rm", C_RM, "NAME", "remove a model from your store", slm_cmd_rm, 1, 1},
};

enum opt_kind { K_FLAG, K_STR, K_INT, K_FLOAT, K_SEED };
enum opt_id {
    O_SOCKET, O_JSON, O_STREAM_JSON, O_SYSTEM, O_PROMPT, O_MAX_TOKENS, O_TEMPERATURE, O_TOP_K, O_TOP_P, O_MIN_P,
    O_REPEAT_PENALTY, O_REPEAT_LAST_N, O_PRESENCE, O_FREQUENCY, O_SEED, O_STOP, O_IGNORE_EOS, O_PRIORITY,
    O_LOGPROBS, O_HELP, O_COUNT
};

/* Every option: the commands it belongs to, and for a number the field of struct slm_params
 * it sets and its range (those of `slmd run` where it has the flag). */
struct opt_spec {
    const char *name;
    char short_name;           /* llama.cpp's short flag, or 0 */
    enum opt_kind kind;
    unsigned cmds;
    size_t field;
    double lo, hi;
    const char *arg, *help;
};

#define P(f) offsetof(struct slm_params, f)
static const struct opt_spec specs[O_COUNT] = {
    [O_SOCKET] = {"socket", 0, K_STR, C_DAEMON, 0, 0, 0, "PATH",
                  "the daemon's socket (default: $SLM_SOCKET, else " SLM_DEFAULT_SOCKET ")"},
    [O_JSON] = {"json", 0, K_FLAG, C_DAEMON | C_MODELS, 0, 0, 0, "", "print JSON (docs/client.md has the shapes)"},
    [O_STREAM_JSON] = {"stream-json", 0, K_FLAG, C_SAMPLING, 0, 0, 0, "", "print one JSON object per event"},
    [O_SYSTEM] = {"system", 0, K_STR, C_CHAT, 0, 0, 0, "TEXT", "a system message before the conversation"},
    [O_PROMPT] = {"prompt", 'p', K_STR, C_CHAT | C_GENERATE, 0, 0, 0, "TEXT",
                  "generate: the prompt, instead of PROMPT; chat: a first user turn, answered before reading input"},
    [O_MAX_TOKENS] = {"max-tokens", 'n', K_INT, C_SAMPLING, P(max_tokens), 0, 1 << 24, "N",
                      "tokens to generate at most (default 256; 0 = up to the context)"},
    [O_TEMPERATURE] = {"temperature", 0, K_FLOAT, C_SAMPLING, P(temperature), 0, 100, "T", "0 = greedy (default 0.8)"},
    [O_TOP_K] = {"top-k", 0, K_INT, C_SAMPLING, P(top_k), 0, 1 << 24, "N", "(default 40; 0 = off)"},
    [O_TOP_P] = {"top-p", 0, K_FLOAT, C_SAMPLING, P(top_p), 0, 1, "P", "(default 0.95; 1 = off)"},
    [O_MIN_P] = {"min-p", 0, K_FLOAT, C_SAMPLING, P(min_p), 0, 1, "P", "(default 0.05; 0 = off)"},
    [O_REPEAT_PENALTY] = {"repeat-penalty", 0, K_FLOAT, C_SAMPLING, P(repeat_penalty), 0, 100, "F",
                          "above 0 (default 1.0 = off)"},
    [O_REPEAT_LAST_N] = {"repeat-last-n", 0, K_INT, C_SAMPLING, P(repeat_last_n), -1, 1 << 24, "N",
                         "tokens the penalties look back on (default 64; -1 = all)"},
    [O_PRESENCE] = {"presence-penalty", 0, K_FLOAT, C_SAMPLING, P(presence_penalty), -2, 2, "F", "(default 0)"},
    [O_FREQUENCY] = {"frequency-penalty", 0, K_FLOAT, C_SAMPLING, P(frequency_penalty), -2, 2, "F", "(default 0)"},
    [O_SEED] = {"seed", 's', K_SEED, C_SAMPLING, P(seed), 0, 0, "S", "sampling seed (default: random)"},
    [O_STOP] = {"stop", 0, K_STR, C_SAMPLING, 0, 0, 0, "TEXT", "stop before TEXT (repeatable)"},
    [O_IGNORE_EOS] = {"ignore-eos", 0, K_FLAG, C_SAMPLING, 0, 0, 0, "", "end-of-generation tokens do not stop"},
    [O_PRIORITY] = {"priority", 0, K_INT, C_SAMPLING, P(priority), -1000000, 1000000, "N",
                    "higher runs first (default 0)"},
    [O_LOGPROBS] = {"logprobs", 0, K_INT, C_SAMPLING, P(logprobs), 0, 20, "N",
                    "with --json or --stream-json: each token's logprob and N alternatives"},
    [O_HELP] = {"help", 'h', K_FLAG, C_ALL, 0, 0, 0, "", "this text"},
};
#undef P

static const char exit_help[] =
    "exit status: 0 ok; 1 other error (standard input unreadable, out of memory); 2 usage (a bad\n"
    "flag, value or argument); 3 cannot connect to slmd; 4 the request failed (slmd's reason is\n"
    "printed); 5 slmd cancelled the request; 130 interrupted by SIGINT (the request is cancelled first).\n";

static void usage(FILE *f)
{
    fprintf(f, "usage: slm [--socket PATH] COMMAND [options] [arguments]\n"
               "       slm --help | --version | help COMMAND\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "'slm COMMAND --help' lists a command's options.\n%s", exit_help);
}

static void command_usage(FILE *f, const struct command *cmd)
{
    fprintf(f, "usage: slm %s [options]%s%s\n  %s\noptions:\n", cmd->name, cmd->args[0] ? " " : "", cmd->args,
            cmd->summary);
    for (int i = 0; i < O_COUNT; i++) {
        if (!(specs[i].cmds & cmd->bit)) continue;
        char left[64], short_flag[8] = "";
        if (specs[i].short_name) snprintf(short_flag, sizeof short_flag, "-%c, ", specs[i].short_name);
        snprintf(left, sizeof left, "%s--%s%s%s", short_flag, specs[i].name, specs[i].arg[0] ? " " : "",
                 specs[i].arg);
        fprintf(f, "  %-24s %s\n", left, specs[i].help);
    }
    fputs(exit_help, f);
}

/* Sets a number option into a->params. 0, or -EINVAL after a one-line error. */
static int set_number(struct slm_app *a, const struct opt_spec *s, const char *text)
{
    char err[SLM_ERR_LEN];
    char *field = (char *)&a->params + s->field;
    long long v;
    double d;
    int rc;
    if (s->kind == K_FLOAT) {
        rc = slm_parse_float(text, s->lo, s->hi, &d, err);
        if (!rc) *(float *)field = (float)d;
    } else if (s->kind == K_SEED) {   /* the range of slmd run's --seed */
        rc = slm_parse_int(text, 0, INT64_MAX, &v, err);
        if (!rc) *(uint64_t *)field = (uint64_t)v;
    } else {
        rc = slm_parse_int(text, (long long)s->lo, (long long)s->hi, &v, err);
        if (!rc) *(int *)field = (int)v;
    }
    if (rc) fprintf(stderr, "%s: --%s: %s\n", a->prog, s->name, err);
    return rc;
}

/* Parses a command's options and arguments into a (a->args points into pos, which holds argc
 * entries). 0, 1 (--help was printed), or -EINVAL after a one-line error that names the
 * argument at fault. */
static int parse_args(struct slm_app *a, const struct command *cmd, int argc, char **argv, char **pos)
{
    struct slm_arg_opt opts[O_COUNT];
    int n = 0;
    for (int i = 0; i < O_COUNT; i++)
        if (specs[i].cmds & cmd->bit)
            opts[n++] = (struct slm_arg_opt){specs[i].name, specs[i].short_name, specs[i].kind != K_FLAG, i};
    struct slm_args it;
    slm_args_init(&it, argc, argv, opts, n, pos);
    char err[SLM_ERR_LEN];
    int c;
    while ((c = slm_args_next(&it, err)) != SLM_ARGS_END) {
        if (c < 0) {
            fprintf(stderr, "%s: %s (see %s --help)\n", a->prog, err, a->prog);
            return -EINVAL;
        }
        const struct opt_spec *s = &specs[c];
        const char *optarg = it.value;
        switch (c) {
        case O_SOCKET: a->socket = optarg; break;
        case O_JSON: a->json = 1; break;
        case O_STREAM_JSON: a->stream_json = 1; break;
        case O_SYSTEM: a->system = optarg; break;
        case O_PROMPT: a->first = optarg; break;
        case O_IGNORE_EOS: a->params.ignore_eos = 1; break;
        case O_STOP: a->stops[a->params.n_stop++] = optarg; break;
        case O_HELP: command_usage(stdout, cmd); return 1;
        default:
            if (set_number(a, s, optarg)) return -EINVAL;
        }
    }
    if (cmd->bit == C_GENERATE && a->first) {   /* -p PROMPT, as llama.cpp's CLI takes it */
        if (it.n_pos) {
            fprintf(stderr, "%s: both --prompt and a PROMPT argument ('%s') were given\n", a->prog, it.pos[0]);
            return -EINVAL;
        }
        pos[it.n_pos++] = (char *)a->first;
        a->first = NULL;
    }
    a->args = pos;
    a->n_args = it.n_pos;
    if (a->n_args < cmd->min_args) {
        fprintf(stderr, "%s: %s is missing (see %s --help)\n", a->prog, cmd->args, a->prog);
        return -EINVAL;
    }
    if (a->n_args > cmd->max_args) {
        fprintf(stderr, "%s: unexpected argument '%s'%s (see %s --help)\n", a->prog, a->args[cmd->max_args],
                cmd->max_args ? "; quote a prompt of several words" : "", a->prog);
        return -EINVAL;
    }
    if (a->json && a->stream_json) {
        fprintf(stderr, "%s: --json and --stream-json exclude each other\n", a->prog);
        return -EINVAL;
    }
    if (!(a->params.repeat_penalty > 0)) {
        fprintf(stderr, "%s: --repeat-penalty: must be above 0 (1 = off)\n", a->prog);
        return -EINVAL;
    }
    if (a->params.logprobs && !a->json && !a->stream_json) {
        fprintf(stderr, "%s: --logprobs needs --json or --stream-json\n", a->prog);
        return -EINVAL;
    }
    a->params.stop = a->params.n_stop ? a->stops : NULL;
    return 0;
}

/* ---- shared by the commands ------------------------------------------------------------------ */

/* Why the socket at path refuses this user, with what to do: its mode, owner and group,
 * and whether the user is in that group. Empty when the socket cannot be looked at. */
static void permission_hint(const char *path, char *out, size_t cap)
{
    struct stat st;
    out[0] = 0;
    if (stat(path, &st) != 0) return;
    struct passwd *pw = getpwuid(st.st_uid);
    char owner[64], group[64];
    snprintf(owner, sizeof owner, "%s", pw ? pw->pw_name : "?");
    struct group *gr = getgrgid(st.st_gid);
    snprintf(group, sizeof group, "%s", gr ? gr->gr_name : "?");
    if (!pw) snprintf(owner, sizeof owner, "%u", (unsigned)st.st_uid);
    if (!gr) snprintf(group, sizeof group, "%u", (unsigned)st.st_gid);
    gid_t groups[256];
    int n = getgroups(256, groups), member = getegid() == st.st_gid;
    for (int i = 0; i < n && !member; i++) member = groups[i] == st.st_gid;
    if (member)
        snprintf(out, cap, "; the socket is mode %04o, owner %s, group %s, and you (uid %u) are in group %s: log "
                 "in again if you were just added", (unsigned)(st.st_mode & 07777), owner, group, (unsigned)geteuid(),
                 group);
    else
        snprintf(out, cap, "; the socket is mode %04o, owner %s, group %s, and you (uid %u) are not in group %s: "
                 "ask an administrator to add you (usermod -aG %s USER, then log in again) or to set socket-mode / "
                 "socket-group in /etc/slmd/slmd.conf", (unsigned)(st.st_mode & 07777), owner, group,
                 (unsigned)geteuid(), group, group);
}

int slm_app_connect(struct slm_app *a)
{
    int rc = slm_connect(a->socket, "slm", &a->client);
    if (rc == 0) return SLM_EXIT_OK;
    const char *why = slm_last_error()[0] ? slm_last_error() : slm_strerror(rc);
    char hint[512] = "";
    if (rc == -ENOENT || rc == -ECONNREFUSED) snprintf(hint, sizeof hint, " (is slmd running?)");
    else if (rc == -EACCES && !strncmp(why, "connect ", 8)) permission_hint(a->socket, hint, sizeof hint);
    fprintf(stderr, "%s: cannot connect to slmd at %s: %s%s\n", a->prog, a->socket, why, hint);
    return SLM_EXIT_CONNECT;
}

int slm_app_fail(const struct slm_app *a, const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s\n", a->prog, what, slm_strerror(err));
    return SLM_EXIT_FAILED;
}

/* slm_app_fail for a request answered at once (tokenize, detokenize, info, stats): slmd's
 * own reason when it gave one. */
static int fail_request(const struct slm_app *a, const char *what, int err)
{
    const char *why = slm_last_error();
    if (!why[0]) return slm_app_fail(a, what, err);
    fprintf(stderr, "%s: %s: %s\n", a->prog, what, why);
    return SLM_EXIT_FAILED;
}

const char *slm_app_text_arg(const struct slm_app *a, const char *arg, char **owned)
{
    *owned = NULL;
    if (strcmp(arg, "-") != 0) return arg;
    char err[SLM_ERR_LEN];
    *owned = slm_read_all(stdin, err);
    if (!*owned) fprintf(stderr, "%s: %s\n", a->prog, err);
    return *owned;
}

/* ---- info, stats, tokenize, detokenize ------------------------------------------------------- */

static int cmd_info(struct slm_app *a)
{
    struct slm_info in;
    int rc = slm_app_connect(a);
    if (rc != SLM_EXIT_OK) return rc;
    rc = slm_info(a->client, &in);
    if (rc < 0) return fail_request(a, "info", rc);
    const struct slm_field f[] = {
        {"model", SLM_FIELD_STR, in.model, 0, 0},
        {"arch", SLM_FIELD_STR, in.arch, 0, 0},
        {"backend", SLM_FIELD_STR, in.backend, 0, 0},
        {"n_ctx", SLM_FIELD_INT, NULL, (uint64_t)in.n_ctx, 0},
        {"n_vocab", SLM_FIELD_INT, NULL, (uint64_t)in.n_vocab, 0},
        {"max_seqs", SLM_FIELD_INT, NULL, (uint64_t)in.max_seqs, 0},
        {"max_batch_tokens", SLM_FIELD_INT, NULL, (uint64_t)in.max_batch_tokens, 0},
        {"kv_blocks", SLM_FIELD_INT, NULL, (uint64_t)in.kv_blocks, 0},
        {"block_size", SLM_FIELD_INT, NULL, (uint64_t)in.block_size, 0},
    };
    slm_fields_print(stdout, f, (int)(sizeof f / sizeof f[0]), a->json);
    return SLM_EXIT_OK;
}

static int cmd_stats(struct slm_app *a)
{
    struct slm_stats st;
    int rc = slm_app_connect(a);
    if (rc != SLM_EXIT_OK) return rc;
    rc = slm_stats(a->client, &st);
    if (rc < 0) return fail_request(a, "stats", rc);
    const struct slm_field f[] = {
        {"clients", SLM_FIELD_INT, NULL, st.clients, 0},
        {"requests_active", SLM_FIELD_INT, NULL, st.requests_active, 0},
        {"requests_queued", SLM_FIELD_INT, NULL, st.requests_queued, 0},
        {"requests_total", SLM_FIELD_INT, NULL, st.requests_total, 0},
        {"tokens_prompt", SLM_FIELD_INT, NULL, st.tokens_prompt, 0},
        {"tokens_cached", SLM_FIELD_INT, NULL, st.tokens_cached, 0},
        {"tokens_generated", SLM_FIELD_INT, NULL, st.tokens_generated, 0},
        {"kv_blocks_used", SLM_FIELD_INT, NULL, st.kv_blocks_used, 0},
        {"kv_blocks_total", SLM_FIELD_INT, NULL, st.kv_blocks_total, 0},
        {"tokens_per_s", SLM_FIELD_REAL, NULL, 0, st.tokens_per_s},
        {"uptime_s", SLM_FIELD_REAL, NULL, 0, st.uptime_s},
    };
    slm_fields_print(stdout, f, (int)(sizeof f / sizeof f[0]), a->json);
    return SLM_EXIT_OK;
}

static int cmd_tokenize(struct slm_app *a)
{
    char *owned;
    const char *text = slm_app_text_arg(a, a->args[0], &owned);
    if (!text) return SLM_EXIT_ERROR;
    int32_t *ids = NULL;
    int n = 0;
    int rc = slm_app_connect(a);
    if (rc == SLM_EXIT_OK) rc = slm_tokenize(a->client, text, &ids, &n);
    free(owned);
    if (rc > 0) return rc;
    if (rc < 0) return fail_request(a, "tokenize", rc);
    fputs(a->json ? "{\"ids\":[" : "", stdout);
    for (int i = 0; i < n; i++) printf("%s%d", i ? (a->json ? "," : " ") : "", ids[i]);
    fputs(a->json ? "]}\n" : "\n", stdout);
    free(ids);
    return SLM_EXIT_OK;
}

/* Ids from the arguments (or standard input for '-'), separated by white space. */
static int cmd_detokenize(struct slm_app *a)
{
    char *owned = NULL, *save = NULL, err[SLM_ERR_LEN];
    int32_t *ids = NULL;
    int n = 0, cap = 0, status = SLM_EXIT_USAGE;
    for (int i = 0; i < a->n_args; i++) {
        char *list = a->args[i];
        if (!strcmp(list, "-")) {
            free(owned);
            if (!(list = owned = slm_read_all(stdin, err))) {
                fprintf(stderr, "%s: %s\n", a->prog, err);
                status = SLM_EXIT_ERROR;
                goto out;
            }
        }
        for (char *tok = strtok_r(list, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
            long long v;
            if (slm_parse_int(tok, 0, INT32_MAX, &v, err)) {
                fprintf(stderr, "%s: token id %s\n", a->prog, err);
                goto out;
            }
            if (n == cap) {
                int32_t *grown = realloc(ids, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *ids);
                if (!grown) {
                    status = SLM_EXIT_ERROR;
                    goto out;
                }
                ids = grown;
            }
            ids[n++] = (int32_t)v;
        }
    }
    char *text = NULL;
    if ((status = slm_app_connect(a)) != SLM_EXIT_OK) goto out;
    int rc = slm_detokenize(a->client, ids, n, &text);
    if (rc < 0) {
        status = fail_request(a, "detokenize", rc);
        goto out;
    }
    if (a->json) slm_json_string(stdout, text, strlen(text));
    else fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
    status = SLM_EXIT_OK;
out:
    free(ids);
    free(owned);
    return status;
}

int main(int argc, char **argv)
{
    struct slm_app a;
    memset(&a, 0, sizeof a);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {   /* options before the command */
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return SLM_EXIT_OK;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("slm %s%s%s%s (client; the backends are the daemon's: slm info)\n", SLM_VERSION,
                   SLM_GIT_REV[0] ? " (git " : "", SLM_GIT_REV, SLM_GIT_REV[0] ? ")" : "");
            return SLM_EXIT_OK;
        }
        if (!strncmp(argv[i], "--socket=", 9)) a.socket = argv[i] + 9;
        else if (!strcmp(argv[i], "--socket") && i + 1 < argc) a.socket = argv[++i];
        else {
            fprintf(stderr, "slm: %s '%s' (see slm --help)\n",
                    !strcmp(argv[i], "--socket") ? "a value is needed after" : "unknown option", argv[i]);
            return SLM_EXIT_USAGE;
        }
    }
    if (i == argc) {
        fprintf(stderr, "slm: a COMMAND is needed (see slm --help)\n");
        return SLM_EXIT_USAGE;
    }
    int help = !strcmp(argv[i], "help");
    if (help && i + 1 == argc) {
        usage(stdout);
        return SLM_EXIT_OK;
    }
    const char *name = argv[i + help];
    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(name, commands[k].name)) cmd = &commands[k];
    if (!cmd) {
        fprintf(stderr, "slm: unknown command '%s' (see slm --help)\n", name);
        return SLM_EXIT_USAGE;
    }
    if (help) {
        command_usage(stdout, cmd);
        return SLM_EXIT_OK;
    }
    char prog[64];
    snprintf(prog, sizeof prog, "slm %s", cmd->name);
    a.prog = prog;
    slm_params_default(&a.params);
    a.params.progress = isatty(STDERR_FILENO);   /* for the waiting line (generate.c) */
    a.stops = calloc((size_t)argc, sizeof *a.stops);   /* each --stop takes an argument */
    if (!a.stops) return SLM_EXIT_ERROR;
    int status = SLM_EXIT_OK;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) {
        free(a.stops);
        return SLM_EXIT_ERROR;
    }
    int rc = parse_args(&a, cmd, argc - i, argv + i, pos);
    if (rc) {
        status = rc > 0 ? SLM_EXIT_OK : SLM_EXIT_USAGE;
        goto out;
    }
    if (!a.socket || !*a.socket) a.socket = getenv("SLM_SOCKET");
    if (!a.socket || !*a.socket) a.socket = SLM_DEFAULT_SOCKET;
    status = cmd->run(&a);
    slm_close(&a.client);
out:
    free(a.stops);
    free(pos);
    if (fflush(stdout) != 0 && status == SLM_EXIT_OK) {
        fprintf(stderr, "%s: cannot write standard output\n", prog);
        status = SLM_EXIT_ERROR;
    }
    return status;
}
