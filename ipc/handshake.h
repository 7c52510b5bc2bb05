/*
 * ipc/handshake.h - HELLO and WELCOME over the AF_UNIX SOCK_SEQPACKET socket (protocol.h).
 *
 * One packet each way: the client sends HELLO, the daemon answers WELCOME, with the memfd
 * attached by SCM_RIGHTS when (and only when) status is 0. Each receiver checks the packet's
 * exact size, magic, type, version and string termination, and closes any fd it did not ask
 * for. After the handshake the socket carries only doorbell bytes (client -> daemon) and the
 * hang-up.
 *
 * Blocking follows the socket: the daemon's sockets are non-blocking (a receive then returns
 * -EAGAIN when no packet is there yet); sends never raise SIGPIPE.
 */
#ifndef SLM_IPC_HANDSHAKE_H
#define SLM_IPC_HANDSHAKE_H

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "ipc/protocol.h"

/* Client: sends HELLO for this library's SLM_PROTO_VERSION; name (NULL = "") is truncated to
 * SLM_NAME_LEN - 1 bytes; sizes of 0 ask for the daemon's defaults. Returns 0 or -errno. */
int slm_hello_send(int sock, const char *name, uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                   char err[SLM_ERR_LEN]);

/* Sends a HELLO exactly as given (tests: a wrong version or magic). Returns 0 or -errno. */
int slm_hello_send_raw(int sock, const struct slm_hello *hello, char err[SLM_ERR_LEN]);

/* Daemon: receives one HELLO into *out. Returns
 *   0        valid, and of our version;
 *   -EPROTO  valid but of another version: *out is filled and err names both versions; answer
 *            with slm_welcome_refuse(sock, -EPROTO, err) and close;
 *   -EBADMSG wrong size, magic, type, reserved != 0, an unterminated name, or fds attached
 *            (any fd received is closed);
 *   -EAGAIN  nothing to read yet (non-blocking socket); -EPIPE the client hung up; or -errno.
 * err says what was wrong for every error. */
int slm_hello_recv(int sock, struct slm_hello *out, char err[SLM_ERR_LEN]);

/* Daemon: sends WELCOME with status 0, the shared memory's size and fd, and client_id.
 * Returns 0 or -errno. */
int slm_welcome_send(int sock, uint64_t client_id, uint32_t shm_bytes, int shm_fd, char err[SLM_ERR_LEN]);

/* Daemon: sends WELCOME with status < 0 and a one-line reason (truncated to SLM_REASON_LEN - 1),
 * no fd. Returns 0 or -errno. */
int slm_welcome_refuse(int sock, int status, const char *reason);

/* Sends a WELCOME exactly as given, with fd attached when fd >= 0 (tests). 0 or -errno. */
int slm_welcome_send_raw(int sock, const struct slm_welcome *w, int fd, char err[SLM_ERR_LEN]);

/* Client: receives WELCOME into *out and the fd into *shm_fd (-1 unless 0 is returned). Returns
 *   0         status 0, exactly one fd received (the caller owns it; pass it to slm_shm_map);
 *   < 0 status the daemon refused: its status (e.g. -EPROTO, -EACCES), err holds its reason;
 *   -EBADMSG  wrong size, magic or type, an unterminated reason, status 0 without exactly one
 *             fd, a refusal with an fd or a status >= 0 other than 0;
 *   -EAGAIN / -EPIPE / -errno as for slm_hello_recv.
 * Every fd received and not handed to the caller is closed. */
int slm_welcome_recv(int sock, struct slm_welcome *out, int *shm_fd, char err[SLM_ERR_LEN]);

/* The connected peer's pid, uid and gid (SO_PEERCRED, fixed when the peer connected). Any out
 * pointer may be NULL. Returns 0 or -errno. */
int slm_peer_cred(int sock, pid_t *pid, uid_t *uid, gid_t *gid);

#endif
