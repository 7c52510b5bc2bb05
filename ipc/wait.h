/*
 * ipc/wait.h - sleeping and waking across the shared memory, without losing a wakeup.
 *
 * Two handshakes, both the Dekker pattern: each side stores its own flag, issues a full
 * (seq_cst) fence, then loads the other side's state. With a fence on both sides, at least one
 * of the two loads sees the other's store, so either the sleeper sees the new entry and does not
 * sleep, or the waker sees the flag and wakes it. Release/acquire alone would not do: it orders
 * a store before a later store, never a store before a later load.
 *
 * Completions (the client sleeps, the daemon wakes):
 *   client: client_waiting = 1; fence; v = cq_futex; if CQ not empty -> done;
 *           FUTEX_WAIT(cq_futex, v); client_waiting = 0
 *   daemon: publish CQEs; fence; if client_waiting -> cq_futex++, FUTEX_WAKE
 *   The futex word is read before the ring is rechecked: if the daemon publishes and bumps the
 *   futex in between, FUTEX_WAIT sees a changed word and returns at once (a recheck after the
 *   load cannot miss an entry the kernel would not also report).
 *
 * Submissions (the daemon sleeps, the client rings the doorbell):
 *   daemon: daemon_flags |= NEED_WAKEUP; fence; if SQ not empty -> clear, go on;
 *           else sleep in poll/epoll on the client's socket
 *   client: publish SQE; fence; if daemon_flags & NEED_WAKEUP -> send one byte on the socket
 *   The socket stays readable until the daemon reads the byte, so a doorbell rung before the
 *   daemon reaches its epoll_wait still wakes it. In slmd the sleeper is the engine thread
 *   itself (daemon/serve.c, engine_sleep): it does the daemon's side for every client, then
 *   waits in one epoll set holding all their sockets, and the doorbell wakes the thread that
 *   takes the SQE and runs the step (one wake-up, not two); it reads the doorbell bytes
 *   (slm_doorbell_drain) before its next sleep, not on the way to the first event.
 *
 * Shared futexes (not FUTEX_PRIVATE_FLAG): the word lives in a memfd mapped by two processes.
 * The daemon never waits on anything the client writes: client_waiting only decides whether it
 * makes one FUTEX_WAKE syscall, which does not block; a lying client only costs itself.
 */
#ifndef SLM_IPC_WAIT_H
#define SLM_IPC_WAIT_H

#include <stdint.h>

#include "ipc/ring.h"
#include "ipc/shm.h"

/* How long the client polls the CQ before it sleeps. A token arrives every few ms under load,
 * so a short spin catches only back-to-back completions; longer spinning starves the daemon
 * on small machines (docs/architecture.md, "Why the rings look as they do"). */
#define SLM_WAIT_SPIN_NS 20000

/* Client: waits until the CQ has an entry. Spins for up to SLM_WAIT_SPIN_NS, then sleeps on the
 * shared cq_futex following the handshake above, for at most timeout_ms in all (< 0: no limit,
 * 0: just check). Returns 0 when an entry is ready, -ETIMEDOUT, or -EINTR when a signal
 * interrupted the sleep. client_waiting is 0 again when it returns. One thread per client
 * waits on a CQ at a time (the consumer). */
int slm_wait_cq(struct slm_shm *shm, const struct slm_ring *cq, int timeout_ms);

/* Daemon: after publishing one or more CQEs to this client. Fence, then if the client said it
 * sleeps, bumps cq_futex and FUTEX_WAKEs it. Returns 1 when it made the wake syscall, 0 when
 * the client was not waiting. Never blocks. Call once per batch of CQEs, not per entry. */
int slm_wake_client(struct slm_shm *shm);

/* Daemon: before sleeping on this client's socket. Sets SLM_SHM_NEED_WAKEUP, fences, and
 * rechecks the SQ: returns 1 when the SQ is still empty (sleep; the client will ring), or 0
 * when an entry arrived meanwhile (the flag is cleared again; go and take it). */
int slm_daemon_prepare_sleep(struct slm_shm *shm, const struct slm_ring *sq);

/* Daemon: after waking (doorbell, timeout or any other reason): clears SLM_SHM_NEED_WAKEUP so
 * that clients stop making the doorbell syscall while the daemon polls. */
void slm_daemon_awake(struct slm_shm *shm);

#define SLM_DOORBELL_DRAIN_MAX 64   /* packets one slm_doorbell_drain reads at most */

/* Daemon: reads and discards the pending doorbell packets on the (non-blocking) client socket,
 * at most SLM_DOORBELL_DRAIN_MAX of them (a level-triggered epoll reports the rest), so a
 * client ringing without pause cannot hold the caller. Any bytes count as a doorbell; fds sent
 * along are dropped by the kernel (no control buffer). Returns the number of packets read
 * (>= 0), -EPIPE when the client hung up, or -errno. */
int slm_doorbell_drain(int sock);

/* Client: after publishing SQEs. Fence, then if the daemon sleeps (NEED_WAKEUP), sends one
 * byte on the socket without blocking (a full socket buffer means a doorbell is already
 * pending: not an error), and yields the CPU once (sched_yield): the daemon thread it woke is
 * often put on this CPU, where the caller's spin on the CQ would keep it waiting. Returns 1
 * when it rang, 0 when not needed, or -errno (-EPIPE: the daemon is gone). */
int slm_doorbell_ring(struct slm_shm *shm, int sock);

#endif
