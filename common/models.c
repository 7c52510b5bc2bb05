/* common/models.c - see models.h. */
#define _GNU_SOURCE
#include "common/models.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef SLM_CATALOGUE_INSTALLED
#define SLM_CATALOGUE_INSTALLED "/usr/share/slmd/models.tsv"
#endif
#ifndef SLM_CATALOGUE_SOURCE
#define SLM_CATALOGUE_SOURCE ""
#endif

const char *slm_models_catalogue_path(void)
{
    const char *env = getenv("SLM_MODEL_CATALOGUE");
    if (env && *env) return env;
    if (access(SLM_CATALOGUE_INSTALLED, R_OK) == 0 || !SLM_CATALOGUE_SOURCE[0]) return SLM_CATALOGUE_INSTALLED;
    return SLM_CATALOGUE_SOURCE;
}

/* Copies field [s, e) into dst[cap]; 0, or -1 when it does not fit or is empty. */
static int field(char *dst, size_t cap, const char *s, const char *e)
{
    if (e <= s || (size_t)(e - s) >= cap) return -1;
    memcpy(dst, s, (size_t)(e - s));
    dst[e - s] = 0;
    return 0;
}

int slm_models_catalogue(struct slm_model_entry *out, char *err)
{
    const char *path = slm_models_catalogue_path();
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        slm_err_set(err, "the model catalogue %s: %s", path, strerror(e));
        return -e;
    }
    char line[1024];
    int n = 0, lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (n == SLM_MODELS_MAX) break;
        struct slm_model_entry *m = &out[n];
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL, *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        if (!t3 || field(m->name, sizeof m->name, line, t1) || field(m->file, sizeof m->file, t1 + 1, t2) ||
            field(m->sha256, sizeof m->sha256, t2 + 1, t3) || strlen(m->sha256) != 64 ||
            field(m->packages, sizeof m->packages, t3 + 1, t3 + 1 + strlen(t3 + 1)) || strchr(m->file, '/')) {
            slm_err_set(err, "%s:%d: expected NAME, FILE, SHA256 and packages, tab-separated", path, lineno);
            rc = -EINVAL;
            break;
        }
        n++;
    }
    fclose(f);
    return rc ? rc : n;
}

int slm_models_stores(char dirs[2][1024])
{
    const char *dir = getenv("SLM_MODEL_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    const char *sys = getenv("SLM_SYSTEM_MODEL_DIR");
    int n = 0;
    if (dir && *dir) snprintf(dirs[n++], 1024, "%s", dir);
    else if (xdg && *xdg) snprintf(dirs[n++], 1024, "%s/slmd/models", xdg);
    else if (home && *home) snprintf(dirs[n++], 1024, "%s/.cache/slmd/models", home);
    snprintf(dirs[n], 1024, "%s", sys && *sys ? sys : "/var/lib/slmd/models");
    if (!n || strcmp(dirs[n], dirs[0]) != 0) n++;
    return n;
}

const struct slm_model_entry *slm_models_find(const struct slm_model_entry *cat, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcasecmp(cat[i].name, name) || !strcmp(cat[i].file, name)) return &cat[i];
    return NULL;
}

int slm_models_resolve(const char *name, char *path, size_t cap, char *err)
{
    if (strchr(name, '/') || access(name, F_OK) == 0) {
        if ((size_t)snprintf(path, cap, "%s", name) >= cap) {
            slm_err_set(err, "--model: path too long");
            return -ENAMETOOLONG;
        }
        return 0;
    }
    static struct slm_model_entry cat[SLM_MODELS_MAX];
    char why[SLM_ERR_LEN], dirs[2][1024];
    int n_cat = slm_models_catalogue(cat, why);
    const struct slm_model_entry *e = n_cat > 0 ? slm_models_find(cat, n_cat, name) : NULL;
    int n_dirs = slm_models_stores(dirs);
    for (int d = 0; d < n_dirs; d++) {
        const char *cands[3] = {name, NULL, e ? e->file : NULL};
        char with_ext[512];
        snprintf(with_ext, sizeof with_ext, "%s.gguf", name);
        cands[1] = with_ext;
        for (int k = 0; k < 3; k++) {
            if (!cands[k]) continue;
            if ((size_t)snprintf(path, cap, "%s/%s", dirs[d], cands[k]) >= cap) continue;
            if (access(path, F_OK) == 0) return 0;
        }
    }
    if (e)
        slm_err_set(err, "model '%s' is not in the model store (%s%s%s); fetch it with: slm pull %s", name, dirs[0],
                    n_dirs > 1 ? ", " : "", n_dirs > 1 ? dirs[1] : "", e->name);
    else
        slm_err_set(err, "%s: no such file, nor a model of that name in the store (%s%s%s); 'slm models' lists "
                    "them", name, dirs[0], n_dirs > 1 ? ", " : "", n_dirs > 1 ? dirs[1] : "");
    return -ENOENT;
}
