/*
 * ipc/err.h - the error buffer ipc/ shares with the daemon (daemon/log.h) without depending on it.
 *
 * ipc/ is compiled into both slmd and libslm, so it includes nothing of daemon/. SLM_ERR_LEN
 * is the same number as daemon/log.h's (both headers may be included together; test_ipc checks
 * they agree).
 */
#ifndef SLM_IPC_ERR_H
#define SLM_IPC_ERR_H

#ifndef SLM_ERR_LEN
#define SLM_ERR_LEN 256   /* size of a caller-owned error buffer */
#endif

/* snprintf into a caller-owned err[SLM_ERR_LEN]; a NULL err is allowed. */
void slm_ipc_err_set(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
