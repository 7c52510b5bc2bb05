/*
 * common/args.h - a command line read one argument at a time, for slm and slmd: long options
 * (--name VALUE, --name=VALUE), the short flags llama.cpp users type (-m FILE, -n 16), "--"
 * ending the options, and positional arguments kept in order wherever they stand. Unlike
 * getopt it always knows the argument at fault, so an error names what the user typed.
 */
#ifndef SLM_COMMON_ARGS_H
#define SLM_COMMON_ARGS_H

#include "common/err.h"

struct slm_arg_opt {
    const char *name;          /* the long name, without "--" */
    char short_name;           /* 0: none */
    int has_value;             /* 1: takes a value */
    int id;                    /* returned by slm_args_next; >= 0 */
};

struct slm_args {
    int argc;
    char **argv;               /* argv[0] is the command's name, not read */
    const struct slm_arg_opt *opts;
    int n_opts;
    int next;                  /* the next argv index to read */
    int options_done;          /* "--" was seen */
    char **pos;                /* the positional arguments so far (caller-owned, argc entries) */
    int n_pos;
    const char *arg;           /* the option as typed ("-n", "--max-tokens"), for messages */
    const char *value;         /* its value, or NULL */
};

#define SLM_ARGS_END (-1)

/* Starts reading argv[1..argc-1] against opts (n_opts entries); pos must hold argc pointers. */
void slm_args_init(struct slm_args *a, int argc, char **argv, const struct slm_arg_opt *opts, int n_opts,
                   char **pos);

/*
 * The next option: its id (a->arg and a->value set), SLM_ARGS_END once every argument is read
 * (a->pos then holds the positional ones), or -EINVAL with err naming the argument at fault:
 * "unknown option 'X'" (and, when X is not option-like, how to pass it: after "--"), or
 * "X needs a value". A lone "-" is a positional argument (standard input).
 */
int slm_args_next(struct slm_args *a, char *err);

#endif
