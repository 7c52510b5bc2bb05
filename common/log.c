/* common/log.c - see log.h. */
#define _GNU_SOURCE
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int slm_log_level = SLM_LOG_INFO;
const char *slm_log_program = "slmd";

static const char *const level_names[] = {
    [SLM_LOG_ERR] = "err", [SLM_LOG_WARNING] = "warning", [SLM_LOG_NOTICE] = "notice",
    [SLM_LOG_INFO] = "info", [SLM_LOG_DEBUG] = "debug",
};

int slm_log_set_level(const char *name)
{
    for (int l = SLM_LOG_ERR; l <= SLM_LOG_DEBUG; l++) {
        if (strcmp(name, level_names[l]) == 0 || (name[0] == '0' + l && name[1] == 0)) {
            slm_log_level = l;
            return 0;
        }
    }
    return -EINVAL;
}

/* JOURNAL_STREAM is "dev:inode" of the journal's stream when stderr goes there. */
static int stderr_is_journal(void)
{
    static int cached = -1;
    if (cached >= 0) return cached;
    cached = 0;
    const char *js = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
        cached = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    return cached;
}

void slm_log_write(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level < SLM_LOG_ERR) level = SLM_LOG_ERR;
    if (level > SLM_LOG_DEBUG) level = SLM_LOG_DEBUG;
    if (stderr_is_journal()) {
        fprintf(stderr, "<%d>%s\n", level, msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, slm_log_program, level_names[level], msg);
}
