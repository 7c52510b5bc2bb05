/*
 * daemon/flags.h - slmd's command-line flags: a number, size or float for a named flag,
 * parsed by common/parse.h, with the one-line error "slmd: NAME: reason" on stderr.
 */
#ifndef SLM_DAEMON_FLAGS_H
#define SLM_DAEMON_FLAGS_H

/* Parses a whole decimal integer in [lo, hi] for flag `name`. Prints
 * "slmd: NAME: 'TEXT' ..." and returns -EINVAL when it is not one. */
int slm_flag_int(const char *name, const char *text, long long lo, long long hi, long long *out);

/* A size in bytes: a whole number with an optional suffix K, M, G or T (powers of 1024,
 * an optional trailing B or iB), in [lo, hi]. Prints a one-line error and returns -EINVAL
 * otherwise. */
int slm_flag_size(const char *name, const char *text, unsigned long long lo, unsigned long long hi,
                  unsigned long long *out);

/* The same for a finite floating-point number. */
int slm_flag_float(const char *name, const char *text, double lo, double hi, double *out);

#endif
