/* common/parse.c - see parse.h. */
#include "common/parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int slm_parse_int(const char *text, long long lo, long long hi, long long *out, char *err)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno) {
        slm_err_set(err, "'%s' is not a whole number", text);
        return -EINVAL;
    }
    if (v < lo || v > hi) {
        slm_err_set(err, "%lld is out of range (%lld to %lld)", v, lo, hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int slm_parse_float(const char *text, double lo, double hi, double *out, char *err)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v)) {
        slm_err_set(err, "'%s' is not a number", text);
        return -EINVAL;
    }
    if (v < lo || v > hi) {
        slm_err_set(err, "%g is out of range (%g to %g)", v, lo, hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int slm_parse_size(const char *text, unsigned long long lo, unsigned long long hi, unsigned long long *out,
                   char *err)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    int shift = 0;
    if (end != text && *end) {
        const char *units = "KMGT", *u = strchr(units, *end & ~0x20);
        if (u) {
            shift = 10 * (int)(u - units + 1);
            end++;
            if (*end == 'i') end++;
            if (*end == 'B' || *end == 'b') end++;
        } else if (*end == 'B' || *end == 'b') {
            end++;
        }
    }
    if (end == text || *end || errno || text[0] == '-' || (shift && v > (~0ull >> shift))) {
        slm_err_set(err, "'%s' is not a size (a whole number of bytes, or with K, M, G or T)", text);
        return -EINVAL;
    }
    v <<= shift;
    if (v < lo || v > hi) {
        slm_err_set(err, "%s is out of range (%llu to %llu bytes)", text, lo, hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

char *slm_read_all(FILE *f, char *err)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (ferror(f)) {
            slm_err_set(err, "cannot read standard input");
            free(buf);
            return NULL;
        }
        if (feof(f)) break;
        if (cap - len < 2) {
            char *nb = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf) {
        slm_err_set(err, "standard input is too large");
        return NULL;
    }
    const char *nul = memchr(buf, 0, len);
    if (nul) {
        slm_err_set(err, "the input holds a NUL byte at offset %zu; text may not hold NUL", (size_t)(nul - buf));
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}
