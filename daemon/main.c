/* daemon/main.c - slmd's entry point: dispatches to a subcommand; --version and help. */
#include <stdio.h>
#include <string.h>

#include "daemon/commands.h"

#ifndef SLM_VERSION
#define SLM_VERSION "unknown"
#endif
#ifndef SLM_GIT_REV
#define SLM_GIT_REV ""
#endif
#ifndef SLM_BACKENDS
#define SLM_BACKENDS "cpu"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: slmd COMMAND [options]\n"
               "       slmd --help | --version | help COMMAND\n"
               "commands:\n"
               "  serve     the daemon (the default command; 'slmd serve --help')\n"
               "  run       load a model, complete one prompt, stream it to stdout, exit\n"
               "  config    print the effective configuration of 'slmd serve' and where each value came from\n"
               "  help      this text, or 'help COMMAND' for a command's options\n"
               "'slmd COMMAND --help' describes a command's options.\n");
}

static void version(void)
{
    printf("slmd %s%s%s%s\nbackends: %s\n", SLM_VERSION, SLM_GIT_REV[0] ? " (git " : "", SLM_GIT_REV,
           SLM_GIT_REV[0] ? ")" : "", SLM_BACKENDS);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        version();
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        if (argc == 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
            usage(stdout);
            return 0;
        }
        char *help_argv[] = {argv[2], "--help", NULL};   /* `slmd help run` is `slmd run --help` */
        if (!strcmp(argv[2], "serve")) return slm_cmd_serve(2, help_argv);
        if (!strcmp(argv[2], "run")) return slm_cmd_run(2, help_argv);
        if (!strcmp(argv[2], "config")) return slm_cmd_config(2, help_argv);
        fprintf(stderr, "slmd: unknown command '%s' (see slmd help)\n", argv[2]);
        return 2;
    }
    if (argc < 2 || argv[1][0] == '-') return slm_cmd_serve(argc, argv);
    if (strcmp(argv[1], "serve") == 0) return slm_cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return slm_cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "config") == 0) return slm_cmd_config(argc - 1, argv + 1);
    fprintf(stderr, "slmd: unknown command '%s' (see slmd help)\n", argv[1]);
    return 2;
}
