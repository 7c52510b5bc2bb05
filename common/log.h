/*
 * common/log.h - leveled logging to stderr, for the daemon, the engine and the tools.
 *
 * Under the journal (JOURNAL_STREAM matches stderr) each line gets an sd-daemon
 * priority prefix (<3>..<7>); otherwise a timestamp and the level's name.
 * slm_log() checks the level before formatting anything.
 */
#ifndef SLM_COMMON_LOG_H
#define SLM_COMMON_LOG_H

#include <stdarg.h>

#include "common/err.h"

enum slm_log_level {
    SLM_LOG_ERR = 3,
    SLM_LOG_WARNING = 4,
    SLM_LOG_NOTICE = 5,
    SLM_LOG_INFO = 6,
    SLM_LOG_DEBUG = 7,
};

extern int slm_log_level;   /* messages above this level are dropped; default INFO */
extern const char *slm_log_program;   /* the program named on each line (default "slmd") */

/* Parses "err", "warning", "notice", "info", "debug" (or 3..7). Returns 0 or -EINVAL. */
int slm_log_set_level(const char *name);

void slm_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define slm_log(level, ...)                                                   \
    do {                                                                      \
        if ((level) <= slm_log_level) slm_log_write((level), __VA_ARGS__);    \
    } while (0)

#endif
