/*
 * daemon/commands.h - slmd's subcommands, called by main.c. Each returns the process exit
 * status (0 ok, 1 a runtime error, 2 a usage error).
 */
#ifndef SLM_DAEMON_COMMANDS_H
#define SLM_DAEMON_COMMANDS_H

int slm_cmd_run(int argc, char **argv);      /* run.c: `slmd run` */
int slm_cmd_config(int argc, char **argv);   /* config.c: `slmd config` */
int slm_cmd_serve(int argc, char **argv);    /* serve.c: `slmd serve` */

#endif
