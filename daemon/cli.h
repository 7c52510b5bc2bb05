/*
 * daemon/cli.h - command-line helpers shared by slmd's subcommands: strict number
 * parsing with one-line errors, the default model's path, reading standard input.
 */
#ifndef SLM_DAEMON_CLI_H
#define SLM_DAEMON_CLI_H

#include <stddef.h>
#include <stdio.h>

#define SLM_DEFAULT_MODEL "SmolLM2-135M-Instruct.Q4_1.gguf"

/* Parsers that describe a bad value in err ("'x' is not a whole number", "5 is out of range
 * (1 to 4)") and return -EINVAL; 0 and *out otherwise. Sizes take K, M, G, T (x1024). */
int slm_parse_int(const char *text, long long lo, long long hi, long long *out, char *err);
int slm_parse_float(const char *text, double lo, double hi, double *out, char *err);
int slm_parse_size(const char *text, unsigned long long lo, unsigned long long hi, unsigned long long *out,
                   char *err);

/* Parses a whole decimal integer in [lo, hi] for flag `name`. Prints
 * "slmd: NAME: 'TEXT' ..." and returns -EINVAL when it is not one. */
int slm_cli_int(const char *name, const char *text, long long lo, long long hi, long long *out);

/* A size in bytes: a whole number with an optional suffix K, M, G or T (powers of 1024,
 * an optional trailing B or iB), in [lo, hi]. Prints a one-line error and returns -EINVAL
 * otherwise. */
int slm_cli_size(const char *name, const char *text, unsigned long long lo, unsigned long long hi,
                 unsigned long long *out);

/* The same for a finite floating-point number. */
int slm_cli_float(const char *name, const char *text, double lo, double hi, double *out);

/* The model to load: `given` if not NULL, else the default model in $SLM_MODEL_DIR,
 * else ~/.cache/slmd/models. Returns 0, or -ENOENT with a reason (how to fetch it). */
int slm_cli_model_path(const char *given, char *path, size_t cap, char *err);

/* Reads all of f into a NUL-terminated string (caller frees); NULL with a reason. */
char *slm_cli_read_all(FILE *f, char *err);

/* Subcommands. Each returns the process exit status. */
int slm_cmd_run(int argc, char **argv);
int slm_cmd_config(int argc, char **argv);
int slm_cmd_serve(int argc, char **argv);

#endif
