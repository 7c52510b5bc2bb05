/* common/err.c - see err.h. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

void slm_err_set(char *err, const char *fmt, ...)
{
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, SLM_ERR_LEN, fmt, ap);
    va_end(ap);
}
