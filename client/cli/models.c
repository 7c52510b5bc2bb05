/*
 * client/cli/models.c - the commands of `slm` that manage the model store, without a daemon:
 * models (what the stores hold, with each file's architecture, quantization and context, and
 * what the catalogue offers), pull (fetches a catalogued model through packaging/fetch-models.sh)
 * and rm. common/models.h has the stores and the catalogue.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/cli/app.h"
#include "client/cli/json.h"
#include "common/models.h"

#ifndef SLM_FETCH_INSTALLED
#define SLM_FETCH_INSTALLED "/usr/share/slmd/fetch-models.sh"
#endif
#ifndef SLM_FETCH_SOURCE
#define SLM_FETCH_SOURCE ""
#endif

/* ---- what a GGUF file says about itself --------------------------------------------------- */

struct gguf_meta {
    char arch[32];
    int file_type;             /* general.file_type, -1: not said */
    long long n_ctx;           /* ARCH.context_length, 0: not said */
};

static int read_u64(FILE *f, uint64_t *v) { return fread(v, 8, 1, f) == 1 ? 0 : -1; }
static int read_u32(FILE *f, uint32_t *v) { return fread(v, 4, 1, f) == 1 ? 0 : -1; }

/* Skips one value of GGUF type t (arrays and strings included). 0, or -1 on a short file. */
static int skip_value(FILE *f, uint32_t t, int depth)
{
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) {
        uint64_t len;
        return read_u64(f, &len) || len > (1ull << 40) || fseeko(f, (off_t)len, SEEK_CUR) ? -1 : 0;
    }
    if (t == 9) {
        uint32_t et;
        uint64_t n;
        if (depth > 2 || read_u32(f, &et) || read_u64(f, &n) || et > 12) return -1;
        if (et != 8 && et != 9) return fseeko(f, (off_t)(n * (uint64_t)size[et]), SEEK_CUR) ? -1 : 0;
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(f, et, depth + 1)) return -1;
        return 0;
    }
    if (t > 12) return -1;
    return fseeko(f, size[t], SEEK_CUR) ? -1 : 0;
}

/* Reads the few metadata keys `slm models` shows. 0, or -1 for a file that is not GGUF v2/v3. */
static int gguf_meta_read(const char *path, struct gguf_meta *m)
{
    *m = (struct gguf_meta){.file_type = -1};
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[4];
    uint32_t version;
    uint64_t n_tensors, n_kv;
    int rc = -1;
    if (fread(magic, 4, 1, f) != 1 || memcmp(magic, "GGUF", 4) || read_u32(f, &version) || version < 2 ||
        read_u64(f, &n_tensors) || read_u64(f, &n_kv))
        goto out;
    for (uint64_t i = 0; i < n_kv && i < 100000; i++) {
        uint64_t klen;
        char key[256];
        uint32_t t;
        if (read_u64(f, &klen) || klen >= sizeof key || fread(key, 1, klen, f) != klen || read_u32(f, &t)) goto out;
        key[klen] = 0;
        size_t kl = strlen(key);
        if (!strcmp(key, "general.architecture") && t == 8) {
            uint64_t len;
            if (read_u64(f, &len) || len >= sizeof m->arch || fread(m->arch, 1, len, f) != len) goto out;
            m->arch[len] = 0;
        } else if (!strcmp(key, "general.file_type") && (t == 4 || t == 5)) {
            uint32_t v;
            if (read_u32(f, &v)) goto out;
            m->file_type = (int)v;
        } else if (kl > 15 && !strcmp(key + kl - 15, ".context_length") && (t == 4 || t == 5 || t == 10 || t == 11)) {
            uint64_t v = 0;
            if (t == 4 || t == 5) {
                uint32_t v32;
                if (read_u32(f, &v32)) goto out;
                v = v32;
            } else if (read_u64(f, &v)) {
                goto out;
            }
            m->n_ctx = (long long)v;
        } else if (skip_value(f, t, 0)) {
            goto out;
        }
        if (m->arch[0] && m->file_type >= 0 && m->n_ctx) break;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

/* llama.cpp's names of general.file_type (llama_ftype). */
static const char *file_type_name(int t)
{
    static const char *names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [32] = "BF16",
    };
    if (t >= 0 && t < (int)(sizeof names / sizeof names[0]) && names[t]) return names[t];
    return "?";
}

static void human_size(char *out, size_t cap, long long bytes)
{
    if (bytes >= 1ll << 30) snprintf(out, cap, "%.1f GiB", (double)bytes / (1 << 30));
    else if (bytes >= 1ll << 20) snprintf(out, cap, "%.0f MiB", (double)bytes / (1 << 20));
    else snprintf(out, cap, "%.0f KiB", (double)bytes / (1 << 10));
}

/* ---- models ------------------------------------------------------------------------------ */

static int by_name(const struct dirent **x, const struct dirent **y) { return strcmp((*x)->d_name, (*y)->d_name); }

int slm_cmd_models(struct slm_app *a)
{
    static struct slm_model_entry cat[SLM_MODELS_MAX];
    char err[SLM_ERR_LEN], dirs[2][1024];
    int n_cat = slm_models_catalogue(cat, err);
    if (n_cat < 0) {
        fprintf(stderr, "%s: %s\n", a->prog, err);
        n_cat = 0;
    }
    int n_dirs = slm_models_stores(dirs), n_shown = 0;
    int have[SLM_MODELS_MAX] = {0};
    if (a->json) fputs("[", stdout);
    else printf("%-30s %-9s %-7s %-8s %-7s %s\n", "NAME", "SIZE", "QUANT", "ARCH", "CONTEXT", "FILE");
    for (int d = 0; d < n_dirs; d++) {
        struct dirent **ents;
        int n = scandir(dirs[d], &ents, NULL, by_name);
        for (int i = 0; i < n; i++) {
            const char *fn = ents[i]->d_name;
            size_t len = strlen(fn);
            char path[2048];
            struct stat st;
            struct gguf_meta m;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dirs[d], fn) < sizeof path && len > 5 && !strcmp(fn + len - 5, ".gguf") && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
                gguf_meta_read(path, &m) == 0) {
                const struct slm_model_entry *e = slm_models_find(cat, n_cat, fn);
                if (e) have[e - cat] = 1;
                char name[128], size[32];
                snprintf(name, sizeof name, "%.*s", e ? (int)strlen(e->name) : (int)len - 5, e ? e->name : fn);
                human_size(size, sizeof size, (long long)st.st_size);
                if (a->json) {
                    fputs(n_shown ? ",{\"name\":" : "{\"name\":", stdout);
                    slm_json_string(stdout, name, strlen(name));
                    fputs(",\"file\":", stdout);
                    slm_json_string(stdout, path, strlen(path));
                    printf(",\"bytes\":%lld,\"quant\":\"%s\",\"arch\":", (long long)st.st_size, file_type_name(m.file_type));
                    slm_json_string(stdout, m.arch, strlen(m.arch));
                    printf(",\"context\":%lld,\"store\":\"%s\"}", m.n_ctx, d == 0 ? "user" : "system");
                } else {
                    printf("%-30s %-9s %-7s %-8s %-7lld %s\n", name, size, file_type_name(m.file_type),
                           m.arch[0] ? m.arch : "?", m.n_ctx, path);
                }
                n_shown++;
            }
            free(ents[i]);
        }
        if (n >= 0) free(ents);
    }
    if (a->json) fputs("]\n", stdout);
    int first = 1;
    for (int i = 0; i < n_cat && !a->json; i++) {
        if (have[i]) continue;
        if (first) printf("%snot pulled yet (slm pull NAME):\n", n_shown ? "" : "(no model in the store)\n");
        first = 0;
        printf("  %s\n", cat[i].name);
    }
    if (!a->json && !n_shown && first) printf("(no model in %s)\n", dirs[0]);
    return SLM_EXIT_OK;
}

/* ---- pull, rm ------------------------------------------------------------------------------ */

static const char *fetch_script(void)
{
    const char *env = getenv("SLM_FETCH_MODELS");
    if (env && *env) return env;
    if (access(SLM_FETCH_INSTALLED, X_OK) == 0 || !SLM_FETCH_SOURCE[0]) return SLM_FETCH_INSTALLED;
    return SLM_FETCH_SOURCE;
}

int slm_cmd_pull(struct slm_app *a)
{
    static struct slm_model_entry cat[SLM_MODELS_MAX];
    char err[SLM_ERR_LEN], dirs[2][1024];
    int n_cat = slm_models_catalogue(cat, err);
    if (n_cat < 0) {
        fprintf(stderr, "%s: %s\n", a->prog, err);
        return SLM_EXIT_ERROR;
    }
    const struct slm_model_entry *e = slm_models_find(cat, n_cat, a->args[0]);
    if (!e) {
        fprintf(stderr, "%s: '%s' is not in the model catalogue (%s); 'slm models' lists the names\n", a->prog,
                a->args[0], slm_models_catalogue_path());
        return SLM_EXIT_USAGE;
    }
    slm_models_stores(dirs);
    const char *script = fetch_script();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", a->prog, strerror(errno));
        return SLM_EXIT_ERROR;
    }
    if (pid == 0) {
        setenv("SLM_MODEL_DIR", dirs[0], 1);
        setenv("SLM_MODEL_CATALOGUE", slm_models_catalogue_path(), 1);
        execl("/bin/bash", "bash", script, e->name, (char *)NULL);
        fprintf(stderr, "%s: cannot run %s: %s\n", a->prog, script, strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return SLM_EXIT_ERROR;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s: fetching %s failed (%s exited with %d)\n", a->prog, e->name, script,
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        return SLM_EXIT_FAILED;
    }
    char path[2048];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dirs[0], e->file);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: %s is not there after the fetch\n", a->prog, path);
        return SLM_EXIT_FAILED;
    }
    char size[32];
    human_size(size, sizeof size, (long long)sb.st_size);
    printf("%s: %s (%s, sha256 checked); use it with --model %s\n", e->name, path, size, e->name);
    return SLM_EXIT_OK;
}

int slm_cmd_rm(struct slm_app *a)
{
    char path[2048], err[SLM_ERR_LEN], dirs[2][1024];
    const char *name = a->args[0];
    if (strchr(name, '/')) {
        fprintf(stderr, "%s: '%s': give a model's name or file name (slm models lists them), not a path\n", a->prog,
                name);
        return SLM_EXIT_USAGE;
    }
    int n_dirs = slm_models_stores(dirs);
    if (slm_models_resolve(name, path, sizeof path, err)) {
        fprintf(stderr, "%s: '%s' is not in the model store (%s); 'slm models' lists what is\n", a->prog, name,
                dirs[0]);
        return SLM_EXIT_FAILED;
    }
    if (!strchr(path, '/') || strncmp(path, dirs[0], strlen(dirs[0])) != 0) {
        fprintf(stderr, "%s: %s is not in your model store (%s)%s\n", a->prog, path, dirs[0],
                n_dirs > 1 && !strncmp(path, dirs[1], strlen(dirs[1])) ? "; the system's store is the service's to manage"
                                                                         : "");
        return SLM_EXIT_FAILED;
    }
    if (unlink(path) != 0) {
        fprintf(stderr, "%s: cannot remove %s: %s\n", a->prog, path, strerror(errno));
        return SLM_EXIT_FAILED;
    }
    printf("removed %s\n", path);
    return SLM_EXIT_OK;
}
