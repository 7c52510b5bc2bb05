/*
 * common/err.h - the caller-owned error buffer every layer fills (docs/architecture.md).
 *
 * A constructor or parser that can fail for a reason a person should read takes
 * `char err[SLM_ERR_LEN]` and returns NULL or -errno with the reason written there.
 * Includes nothing of the project: ipc/, kernels/, the engine, the daemon, libslm and the
 * tools all use it.
 */
#ifndef SLM_COMMON_ERR_H
#define SLM_COMMON_ERR_H

#define SLM_ERR_LEN 256   /* size of a caller-owned error buffer */

/* snprintf into a caller-owned err[SLM_ERR_LEN]; a NULL err is allowed. */
void slm_err_set(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
