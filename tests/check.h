/* tests/check.h - the failure counter and CHECK macro the C tests share. Include once per test program. */
#ifndef SLM_TESTS_CHECK_H
#define SLM_TESTS_CHECK_H

#include <stdio.h>

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

#endif
