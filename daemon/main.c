/* daemon/main.c - slmd's entry point: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "daemon/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: slmd COMMAND [options]\n"
               "commands:\n"
               "  serve     the daemon (the default command; 'slmd serve --help')\n"
               "  run       load a model, complete one prompt, stream it to stdout, exit\n"
               "  config    print the effective configuration of 'slmd serve' and where each value came from\n"
               "  help      this text\n"
               "'slmd COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || (argv[1][0] == '-' && strcmp(argv[1], "--help") != 0)) return slm_cmd_serve(argc, argv);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "serve") == 0) return slm_cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return slm_cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "config") == 0) return slm_cmd_config(argc - 1, argv + 1);
    fprintf(stderr, "slmd: unknown command '%s' (see slmd help)\n", argv[1]);
    return 2;
}
