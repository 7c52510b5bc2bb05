/*
 * common/parse.h - strict parsing of numbers and sizes with one-line reasons, and reading a
 * whole stream: what slmd's flags, its configuration file and the `slm` client share.
 */
#ifndef SLM_COMMON_PARSE_H
#define SLM_COMMON_PARSE_H

#include <stdio.h>

/* Parsers that describe a bad value in err ("'x' is not a whole number", "5 is out of range
 * (1 to 4)") and return -EINVAL; 0 and *out otherwise. Sizes take K, M, G, T (x1024). */
int slm_parse_int(const char *text, long long lo, long long hi, long long *out, char *err);
int slm_parse_float(const char *text, double lo, double hi, double *out, char *err);
int slm_parse_size(const char *text, unsigned long long lo, unsigned long long hi, unsigned long long *out,
                   char *err);

/* Reads all of f into a NUL-terminated string (caller frees); NULL with a reason, also when
 * the input holds a NUL byte (it would cut the text short unseen). */
char *slm_read_all(FILE *f, char *err);

#endif
