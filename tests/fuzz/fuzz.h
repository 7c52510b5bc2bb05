/*
 * tests/fuzz/fuzz.h - what the libFuzzer targets of tests/fuzz share: a check that aborts (so
 * that libFuzzer keeps the input as a crash) and the model whose vocabulary and chat template
 * the tokenizer and SQE targets use.
 */
#ifndef SLM_FUZZ_H
#define SLM_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon/service.h"

/* An invariant of the code under test: a violation is reported like a crash. */
#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* The model file of the targets that need a real vocabulary: $SLM_FUZZ_MODEL, else the default
 * model in $SLM_MODEL_DIR, else in ~/.cache/slmd/models. Exits 77 (skipped) when it is absent,
 * saying how to fetch it. */
static inline const char *fuzz_model_path(void)
{
    static char path[1024];
    const char *given = getenv("SLM_FUZZ_MODEL");
    const char *dir = getenv("SLM_MODEL_DIR");
    const char *home = getenv("HOME");
    if (given && *given) snprintf(path, sizeof path, "%s", given);
    else if (dir && *dir) snprintf(path, sizeof path, "%s/%s", dir, SLM_DEFAULT_MODEL);
    else snprintf(path, sizeof path, "%s/.cache/slmd/models/%s", home ? home : ".", SLM_DEFAULT_MODEL);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "skip: the model %s is not there (packaging/fetch-models.sh fetches it)\n", path);
        exit(77);
    }
    return path;
}

#endif
