/* daemon/config.c - see config.h. */
#define _GNU_SOURCE
#include "daemon/config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/parse.h"
#include "daemon/commands.h"
#include "daemon/service.h"

enum kind { K_STR, K_INT, K_SIZE, K_MODE, K_UIDS, K_GIDS, K_ENUM, K_LEVEL, K_FRAC, K_BOOL };

struct key {
    const char *name;
    enum kind kind;
    size_t off, cap;             /* field offset; string capacity */
    long long lo, hi;
    const char *def;             /* default, as text */
    const char *choices;         /* K_ENUM: "a|b|c" */
    const char *help;
};

#define F(field) offsetof(struct slm_config, field), sizeof(((struct slm_config *)0)->field)

static const struct key keys[] = {
    {"model", K_STR, F(model), 0, 0, "", NULL, "GGUF model file (default: the default model in the model cache)"},
    {"socket", K_STR, F(socket), 0, 0, "", NULL, "Unix socket path (default: $RUNTIME_DIRECTORY/slmd.sock, else /run/slmd/slmd.sock)"},
    {"socket-mode", K_MODE, F(socket_mode), 0, 0777, "0660", NULL, "permission bits of the socket (octal)"},
    {"socket-group", K_STR, F(socket_group), 0, 0, "", NULL, "group of the socket (name or number; default: unchanged)"},
    {"allow-uids", K_UIDS, F(allow_uids), 0, 0, "", NULL, "only these users may connect (names or numbers, comma-separated; default: anyone the socket lets in)"},
    {"allow-gids", K_GIDS, F(allow_gids), 0, 0, "", NULL, "...or members (primary group) of these groups"},
    {"threads", K_INT, F(threads), 0, 256, "0", NULL, "CPU threads (0: all online CPUs)"},
    {"ctx-size", K_INT, F(ctx_size), 0, 1 << 20, "0", NULL, "context length per sequence (0: the model's, at most 8192)"},
    {"force-ctx", K_BOOL, F(force_ctx), 0, 1, "false", NULL, "allow a ctx-size above the model's training context (a bare --force-ctx is true)"},
    {"max-batch-tokens", K_INT, F(max_batch_tokens), 1, 65536, "512", NULL, "tokens per engine step"},
    {"max-seqs", K_INT, F(max_seqs), 1, 4096, "64", NULL, "sequences per engine step"},
    {"kv-cache-mem", K_SIZE, F(kv_cache_mem), 0, 1ll << 46, "0", NULL, "KV cache size, e.g. 2G (0: auto, docs/configuration.md)"},
    {"block-size", K_INT, F(block_size), 1, 1024, "16", NULL, "tokens per KV block"},
    {"overlap-steps", K_BOOL, F(overlap_steps), 0, 1, "false", NULL, "run each step's forward pass while the step before is reported (detokenized, its events sent); true by default on the cuda backend (docs/engine.md)"},
    {"pass-spin-us", K_INT, F(pass_spin_us), 0, 1000000, "0", NULL, "with overlap-steps: microseconds the engine's two threads poll for each other before sleeping, so that a pass that short is handed over without a thread wake-up; 1000 by default on the cuda backend (docs/engine.md)"},
    {"backend", K_ENUM, F(backend), 0, 0, "auto", "auto|cpu|cuda", "compute backend"},
    {"gpu-memory-fraction", K_FRAC, F(gpu_memory_fraction), 0, 1, "0.9", NULL, "cuda: share of the free device memory the KV cache may take (0 < f <= 1)"},
    {"shutdown-timeout", K_INT, F(shutdown_timeout), 0, 86400, "30", NULL, "seconds a graceful stop lets running requests finish"},
    {"max-clients", K_INT, F(max_clients), 1, 65536, "256", NULL, "connected clients at most"},
    {"max-clients-per-uid", K_INT, F(max_clients_per_uid), 0, 65536, "0", NULL, "connections of one user at most, handshaken or not (0: max-clients)"},
    {"handshake-timeout", K_INT, F(handshake_timeout), 1, 3600, "5", NULL, "seconds a new connection has to send its HELLO"},
    {"client-max-requests", K_INT, F(client_max_requests), 1, 1 << 20, "256", NULL, "unfinished requests of one client at most"},
    {"client-max-prompt-tokens", K_INT, F(client_max_prompt_tokens), 1, 1 << 30, "131072", NULL, "prompt tokens of one client's unfinished requests at most"},
    {"client-max-arena-bytes", K_SIZE, F(client_max_arena_bytes), 4096, 1ll << 40, "64M", NULL, "arena bytes (payload, stop strings, stop ids) of one client's unfinished requests at most"},
    {"max-priority", K_INT, F(max_priority), 0, 1000000, "1000000", NULL, "the highest priority a request may ask for (the lowest is -1000000)"},
    {"spin-us", K_INT, F(spin_us), 0, 100000, "50", NULL, "microseconds the daemon polls idle rings before sleeping"},
    {"chat-template", K_ENUM, F(chat_template), 0, 0, "auto", "auto|chatml|llama3|gemma|phi3|mistral-v3",
     "chat format (auto: the model's tokenizer.chat_template; a model without one: its architecture's, gemma3's)"},
    {"log-level", K_LEVEL, F(log_level), 0, 0, "info", NULL, "err, warning, notice, info or debug"},
};
#define N_KEYS (int)(sizeof keys / sizeof keys[0])
_Static_assert(N_KEYS <= 32, "struct slm_config.source has 32 entries");

static const struct key *find_key(const char *name, size_t len)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == len && !strncmp(keys[i].name, name, len)) return &keys[i];
    return NULL;
}

/* The cuda backend's defaults where they differ from keys[]' (the CPU's): a step of up to 256
 * sequences and 4096 tokens, the shape issue 15's serving runs used on an H200 and vLLM's default
 * max_num_seqs. Provisional: not yet chosen from a sweep on a GPU (docs/configuration.md). */
static const struct {
    const char *key, *value;
} cuda_defaults[] = {{"max-batch-tokens", "4096"}, {"max-seqs", "256"}, {"overlap-steps", "true"},
                   {"pass-spin-us", "1000"}};
#define CUDA_DEFAULT_SOURCE "default for the cuda backend"

static int check_seqs(const struct slm_config *c, char *err)
{
    if (c->max_seqs > c->max_batch_tokens) {
        const struct key *k = find_key("max-seqs", 8);
        slm_err_set(err, "max-seqs (%d) cannot exceed max-batch-tokens (%d)%s", c->max_seqs, c->max_batch_tokens,
                    !strcmp(c->source[k - keys], CUDA_DEFAULT_SOURCE)
                        ? " (max-seqs is the cuda backend's default: set it as well)"
                        : "");
        return -EINVAL;
    }
    return 0;
}

/* Parses a comma-separated list of user (or group) names or numbers. */
static int parse_ids(const char *text, int groups, uint32_t *out, int *n, char *err)
{
    *n = 0;
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        slm_err_set(err, "the list is too long");
        return -EINVAL;
    }
    strcpy(buf, text);
    for (char *save = NULL, *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        if (*n == SLM_CONFIG_MAX_IDS) {
            slm_err_set(err, "more than %d entries", SLM_CONFIG_MAX_IDS);
            return -EINVAL;
        }
        long long v;
        char e2[SLM_ERR_LEN];
        if (!slm_parse_int(tok, 0, 0xfffffffell, &v, e2)) {
            out[(*n)++] = (uint32_t)v;
            continue;
        }
        if (groups) {
            struct group *g = getgrnam(tok);
            if (g) {
                out[(*n)++] = g->gr_gid;
                continue;
            }
        } else {
            struct passwd *p = getpwnam(tok);
            if (p) {
                out[(*n)++] = p->pw_uid;
                continue;
            }
        }
        slm_err_set(err, "'%s' is not a known %s name or a number", tok, groups ? "group" : "user");
        return -EINVAL;
    }
    return 0;
}

static int set_value(struct slm_config *c, const struct key *k, const char *v, char *err)
{
    char *field = (char *)c + k->off;
    long long iv;
    unsigned long long sz;
    switch (k->kind) {
    case K_STR:
        if (strlen(v) >= k->cap) {
            slm_err_set(err, "longer than %zu bytes", k->cap - 1);
            return -EINVAL;
        }
        strcpy(field, v);
        return 0;
    case K_INT:
        if (slm_parse_int(v, k->lo, k->hi, &iv, err)) return -EINVAL;
        *(int *)field = (int)iv;
        return 0;
    case K_SIZE:
        if (slm_parse_size(v, (unsigned long long)k->lo, (unsigned long long)k->hi, &sz, err)) return -EINVAL;
        *(uint64_t *)field = sz;
        return 0;
    case K_MODE: {
        char *end;
        errno = 0;
        unsigned long m = strtoul(v, &end, 8);
        if (!*v || *end || errno || m > (unsigned long)k->hi) {
            slm_err_set(err, "'%s' is not an octal permission mode (0 to 0777)", v);
            return -EINVAL;
        }
        *(unsigned *)field = (unsigned)m;
        return 0;
    }
    case K_UIDS: return parse_ids(v, 0, (uint32_t *)c->allow_uids, &c->n_allow_uids, err);
    case K_GIDS: return parse_ids(v, 1, (uint32_t *)c->allow_gids, &c->n_allow_gids, err);
    case K_ENUM: {
        const char *p = k->choices;
        size_t n = strlen(v);
        while (p && *p) {
            const char *bar = strchr(p, '|');
            size_t len = bar ? (size_t)(bar - p) : strlen(p);
            if (len == n && !strncmp(p, v, n) && n < k->cap) {
                strcpy(field, v);
                return 0;
            }
            p = bar ? bar + 1 : NULL;
        }
        slm_err_set(err, "'%s' is not one of %s", v, k->choices);
        return -EINVAL;
    }
    case K_FRAC: {
        double d;
        if (slm_parse_float(v, (double)k->lo, (double)k->hi, &d, err)) return -EINVAL;
        if (!(d > 0)) {
            slm_err_set(err, "%g is out of range (above 0, at most 1)", d);
            return -EINVAL;
        }
        *(double *)field = d;
        return 0;
    }
    case K_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes")) *(int *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no")) *(int *)field = 0;
        else {
            slm_err_set(err, "'%s' is not true or false", v);
            return -EINVAL;
        }
        return 0;
    case K_LEVEL:
        if (strlen(v) >= k->cap || slm_log_set_level(v)) {
            slm_err_set(err, "'%s' is not one of err, warning, notice, info, debug", v);
            return -EINVAL;
        }
        strcpy(field, v);
        return 0;
    }
    return -EINVAL;
}

int slm_config_set(struct slm_config *c, const char *key, const char *value, const char *source, char *err)
{
    const struct key *k = find_key(key, strlen(key));
    if (!k) {
        slm_err_set(err, "unknown key '%s' (slmd serve --help lists them)", key);
        return -ENOENT;
    }
    char why[SLM_ERR_LEN];
    if (set_value(c, k, value, why)) {
        slm_err_set(err, "%s: %s", key, why);
        return -EINVAL;
    }
    snprintf(c->source[k - keys], SLM_CONFIG_SOURCE_LEN, "%s", source);
    return 0;
}

void slm_config_defaults(struct slm_config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++) {
        char err[SLM_ERR_LEN];
        int rc = set_value(c, &keys[i], keys[i].def, err);
        (void)rc;   /* the defaults are valid by construction; test_config checks them */
        strcpy(c->source[i], "default");
    }
}

int slm_config_backend_defaults(struct slm_config *c, const char *backend, char *err)
{
    if (!strcmp(backend, "cuda"))
        for (size_t i = 0; i < sizeof cuda_defaults / sizeof cuda_defaults[0]; i++) {
            const struct key *k = find_key(cuda_defaults[i].key, strlen(cuda_defaults[i].key));
            if (strcmp(c->source[k - keys], "default")) continue;   /* set by the file or a flag */
            char why[SLM_ERR_LEN];
            if (slm_config_set(c, k->name, cuda_defaults[i].value, CUDA_DEFAULT_SOURCE, why)) {
                slm_err_set(err, "%s", why);   /* not reached: the values are valid (test_config) */
                return -EINVAL;
            }
        }
    return check_seqs(c, err);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

int slm_config_load(struct slm_config *c, const char *path, int must_exist, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT && !must_exist) return 0;
        slm_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return -EINVAL;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            slm_err_set(err, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
            rc = -EINVAL;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            slm_err_set(err, "%s:%d: expected 'key = value', got '%.60s'", path, lineno, s);
            rc = -EINVAL;
            break;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        if (*value == '"') {   /* a quoted value: \" and \\ inside; then a comment or nothing */
            char *r = value + 1, *w = value;
            while (*r && *r != '"') {
                if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) r++;
                *w++ = *r++;
            }
            char *rest = *r == '"' ? r + 1 : NULL;
            if (rest) rest += strspn(rest, " \t");
            if (!rest || (*rest && *rest != '#')) {
                slm_err_set(err, "%s:%d: %s: %s", path, lineno, key,
                            rest ? "text after the closing quote (a comment starts with #)" : "no closing quote");
                rc = -EINVAL;
                break;
            }
            *w = 0;
        } else {   /* a comment after the value: whitespace, then # */
            for (char *h = strchr(value, '#'); h; h = strchr(h + 1, '#'))
                if (h == value || h[-1] == ' ' || h[-1] == '\t') {
                    *h = 0;
                    value = trim(value);
                    break;
                }
        }
        char src[SLM_CONFIG_SOURCE_LEN], why[SLM_ERR_LEN];
        snprintf(src, sizeof src, "%s:%d", path, lineno);
        if (slm_config_set(c, key, value, src, why)) {
            slm_err_set(err, "%s:%d: %s", path, lineno, why);
            rc = -EINVAL;
            break;
        }
    }
    if (!rc && ferror(f)) {
        slm_err_set(err, "%s: read error", path);
        rc = -EIO;
    }
    fclose(f);
    return rc;
}

void slm_config_usage(FILE *f)
{
    fprintf(f, "usage: slmd [serve] [--config FILE] [--KEY VALUE ...]\n"
               "       slmd config [same options]   print the effective configuration and where each value came from\n"
               "  --config FILE           configuration file (default %s, if present)\n",
            SLM_CONFIG_DEFAULT_PATH);
    for (int i = 0; i < N_KEYS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", keys[i].name,
                 keys[i].kind == K_BOOL ? "" : keys[i].kind == K_INT ? " N" : " VALUE");
        fprintf(f, "  %-23s %s%s%s%s\n", flag, keys[i].help, *keys[i].def ? " [" : "", keys[i].def,
                *keys[i].def ? "]" : "");
    }
}

int slm_config_from_args(struct slm_config *c, int argc, char **argv, char *err)
{
    slm_config_defaults(c);
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            slm_config_usage(stdout);
            return 1;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                slm_err_set(err, "--config needs a value");
                return -EINVAL;
            }
            path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        }
    }
    if (slm_config_load(c, path ? path : SLM_CONFIG_DEFAULT_PATH, path != NULL, err)) return -EINVAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) continue;
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            slm_err_set(err, "unexpected argument '%s' (see slmd --help)", a);
            return -EINVAL;
        }
        const char *name = a + 2, *eq = strchr(name, '='), *value;
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct key *k = find_key(name, len);
        if (!k) {
            slm_err_set(err, "unknown option '%.*s' (see slmd --help)", (int)(len + 2), a);
            return -EINVAL;
        }
        if (eq) value = eq + 1;
        else if (k->kind == K_BOOL) value = "true";   /* a bare --force-ctx */
        else if (i + 1 < argc) value = argv[++i];
        else {
            slm_err_set(err, "--%s needs a value", k->name);
            return -EINVAL;
        }
        char src[SLM_CONFIG_SOURCE_LEN], why[SLM_ERR_LEN];
        snprintf(src, sizeof src, "--%s", k->name);
        if (slm_config_set(c, k->name, value, src, why)) {
            slm_err_set(err, "--%s", why);
            return -EINVAL;
        }
    }
    return slm_config_backend_defaults(c, c->backend, err);
}

static void print_ids(FILE *f, const uint32_t *ids, int n)
{
    for (int i = 0; i < n; i++) fprintf(f, "%s%u", i ? "," : "", ids[i]);
}

/* A string value as the loader reads it back: bare when it can be, else in double quotes
 * with " and \ escaped (a '#', a quote or backslash, or what trim() would take off either end:
 * spaces and tabs, and at the end a carriage return or newline). */
static void print_str(FILE *f, const char *v)
{
    size_t n = strlen(v);
    if (!strpbrk(v, "#\"\\") && (!n || (v[0] != ' ' && v[0] != '\t' && !strchr(" \t\r\n", v[n - 1])))) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\') fputc('\\', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

/* A fraction as the loader reads it back to the same double: the fewest significant digits
 * that do (%g's six turned 2.2250738585072014e-308, the least normal double, into a subnormal
 * that the loader refuses, and cut 0.123456789 to 0.123457). 0.9 stays "0.9". */
static void print_double(FILE *f, double d)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, f);
}

void slm_config_print(const struct slm_config *c, FILE *f)
{
    for (int i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        const char *field = (const char *)c + k->off;
        fprintf(f, "%s = ", k->name);
        switch (k->kind) {
        case K_STR:
            if (!strcmp(k->name, "socket")) {
                char path[sizeof c->socket + 32];
                slm_config_socket_path(c, path, sizeof path);
                print_str(f, path);
                break;
            }
            if (!strcmp(k->name, "model") && !field[0]) {   /* the default model, as serve resolves it */
                char path[1024], why[SLM_ERR_LEN];
                slm_service_model_path(NULL, path, sizeof path, why);
                print_str(f, path);
                break;
            }
            print_str(f, field);
            break;
        case K_ENUM:
        case K_LEVEL: fprintf(f, "%s", field); break;
        case K_INT: fprintf(f, "%d", *(const int *)field); break;
        case K_FRAC: print_double(f, *(const double *)field); break;
        case K_BOOL: fputs(*(const int *)field ? "true" : "false", f); break;
        case K_SIZE: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)field); break;
        case K_MODE: fprintf(f, "%04o", *(const unsigned *)field); break;
        case K_UIDS: print_ids(f, (const uint32_t *)c->allow_uids, c->n_allow_uids); break;
        case K_GIDS: print_ids(f, (const uint32_t *)c->allow_gids, c->n_allow_gids); break;
        }
        fprintf(f, "    # %s", c->source[i]);
        for (size_t j = 0; j < sizeof cuda_defaults / sizeof cuda_defaults[0]; j++)
            if (!strcmp(k->name, cuda_defaults[j].key) && !strcmp(c->backend, "auto") && !strcmp(c->source[i], "default"))
                fprintf(f, " (the cpu backend's; %s on the cuda backend)", cuda_defaults[j].value);
        fputc('\n', f);
    }
}

void slm_config_socket_path(const struct slm_config *c, char *out, size_t cap)
{
    if (c->socket[0]) {
        snprintf(out, cap, "%s", c->socket);
        return;
    }
    const char *rd = getenv("RUNTIME_DIRECTORY");   /* systemd: may list several, colon-separated */
    if (rd && *rd) {
        size_t n = strcspn(rd, ":");
        snprintf(out, cap, "%.*s/slmd.sock", (int)n, rd);
        return;
    }
    snprintf(out, cap, "/run/slmd/slmd.sock");
}

int slm_cmd_config(int argc, char **argv)
{
    static struct slm_config c;
    char err[SLM_ERR_LEN];
    int rc = slm_config_from_args(&c, argc, argv, err);
    if (rc > 0) return 0;
    if (rc < 0) {
        fprintf(stderr, "slmd: %s\n", err);
        return 2;
    }
    slm_config_print(&c, stdout);
    return 0;
}
