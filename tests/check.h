/* tests/check.h - the failure counter and CHECK macro the C tests share. Include once per test program. */
#ifndef SLM_TESTS_CHECK_H
#define SLM_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int failures;

/* On a false cond: "FAIL file:line: <message>" and one more failure. */
#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                       \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
            failures++;                                                       \
        }                                                                     \
    } while (0)

/* The default model in $SLM_MODEL_DIR into path (cap bytes). 1 when it is readable; else prints
 * why the test is skipped and returns 0 (the test then exits 77). */
static inline int test_model_path(char *path, size_t cap)
{
    const char *dir = getenv("SLM_MODEL_DIR");
    snprintf(path, cap, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : ".");
    if (access(path, R_OK) == 0) return 1;
    printf("skip: %s is absent (run packaging/fetch-models.sh)\n", path);
    return 0;
}

/* For the black-box tests: the slmd binary ($SLMD) and the default model in $SLM_MODEL_DIR.
 * Fills model (cap bytes) and returns slmd, or prints why the test is skipped and returns NULL. */
static inline const char *test_slmd_and_model(char *model, size_t cap)
{
    const char *slmd = getenv("SLMD");
    if (!test_model_path(model, cap)) return NULL;
    if (!slmd) printf("skip: SLMD does not name the slmd binary\n");
    return slmd;
}

#endif
