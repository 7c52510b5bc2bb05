/* daemon/flags.c - see flags.h. */
#include "daemon/flags.h"

#include <stdio.h>

#include "common/log.h"
#include "common/parse.h"

/* Prints "slmd: NAME: reason" when rc says the parse failed. */
static int flag_report(const char *name, int rc, const char *err)
{
    if (rc) fprintf(stderr, "slmd: %s: %s\n", name, err);
    return rc;
}

int slm_flag_int(const char *name, const char *text, long long lo, long long hi, long long *out)
{
    char err[SLM_ERR_LEN];
    return flag_report(name, slm_parse_int(text, lo, hi, out, err), err);
}

int slm_flag_size(const char *name, const char *text, unsigned long long lo, unsigned long long hi,
                  unsigned long long *out)
{
    char err[SLM_ERR_LEN];
    return flag_report(name, slm_parse_size(text, lo, hi, out, err), err);
}

int slm_flag_float(const char *name, const char *text, double lo, double hi, double *out)
{
    char err[SLM_ERR_LEN];
    return flag_report(name, slm_parse_float(text, lo, hi, out, err), err);
}
