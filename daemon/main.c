/* daemon/main.c - slmd's entry point (subcommands land here as they are built). */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "usage: slmd run --model FILE --prompt TEXT\n");
    return 2;
}
