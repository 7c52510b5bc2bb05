/* ipc/wait.c - see wait.h for the two handshakes and why each fence is there. */
#define _GNU_SOURCE
#include "ipc/wait.h"
#include "common/clock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (NULL: none), so spurious
 * returns and retries do not stretch the timeout. Shared futex: no FUTEX_PRIVATE_FLAG. */
static int futex_wait_until(uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts, *tp = NULL;
    if (deadline_ns >= 0) {
        ts.tv_sec = deadline_ns / 1000000000;
        ts.tv_nsec = deadline_ns % 1000000000;
        tp = &ts;
    }
    if (syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, tp, NULL, FUTEX_BITSET_MATCH_ANY) == 0) return 0;
    return -errno;
}

int slm_wait_cq(struct slm_shm *shm, const struct slm_ring *cq, int timeout_ms)
{
    if (slm_ring_ready(cq)) return 0;
    if (timeout_ms == 0) return -ETIMEDOUT;
    int64_t now = slm_mono_ns();
    int64_t deadline = timeout_ms < 0 ? -1 : now + (int64_t)timeout_ms * 1000000;
    int64_t spin_end = now + SLM_WAIT_SPIN_NS;
    if (deadline >= 0 && deadline < spin_end) spin_end = deadline;
    do {
        for (int i = 0; i < 32; i++) {
            if (slm_ring_ready(cq)) return 0;
            slm_cpu_relax();
        }
    } while (slm_mono_ns() < spin_end);

    uint32_t *waiting = &shm->hdr->client_waiting;
    uint32_t *futex = &shm->hdr->cq_futex;
    int rc;
    for (;;) {
        __atomic_store_n(waiting, 1, __ATOMIC_RELAXED);
        /* Dekker: our store of client_waiting before our loads of the futex word and the slot
         * seq; the daemon fences between its CQE publish and its load of client_waiting. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* The futex word first, then the ring. Had we checked the ring first, the daemon could
         * publish and bump the word between the two; we would then wait on the new value and
         * miss that wake. Read in this order, a bump after this load makes FUTEX_WAIT return
         * at once (the word differs) or lands after we are queued (its FUTEX_WAKE finds us).
         * Acquire: if we read the bumped value, the CQE published before the bump is visible. */
        uint32_t v = __atomic_load_n(futex, __ATOMIC_ACQUIRE);
        if (slm_ring_ready(cq)) {
            rc = 0;
            break;
        }
        if (deadline >= 0 && slm_mono_ns() >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        rc = futex_wait_until(futex, v, deadline);
        if (rc == -EINTR) break;
        /* 0 (woken or spurious), -EAGAIN (the word changed), -ETIMEDOUT: loop and recheck;
         * the deadline test above ends it. */
    }
    __atomic_store_n(waiting, 0, __ATOMIC_RELAXED);
    return rc;
}

int slm_wake_client(struct slm_shm *shm)
{
    /* Dekker: our CQE publishes (release stores of slot seqs) before our load of
     * client_waiting; pairs with the client's fence in slm_wait_cq. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&shm->hdr->client_waiting, __ATOMIC_RELAXED) == 0) return 0;
    /* Release: a client that reads the new word sees every CQE published before it. */
    __atomic_fetch_add(&shm->hdr->cq_futex, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &shm->hdr->cq_futex, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    return 1;
}

int slm_daemon_prepare_sleep(struct slm_shm *shm, const struct slm_ring *sq)
{
    shm->daemon_flags |= SLM_SHM_NEED_WAKEUP;
    __atomic_store_n(&shm->hdr->daemon_flags, shm->daemon_flags, __ATOMIC_RELAXED);
    /* Dekker: our store of NEED_WAKEUP before our load of the next SQ slot's seq; pairs with
     * the client's fence between its SQE publish and its load of daemon_flags. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (slm_ring_ready(sq)) {
        slm_daemon_awake(shm);
        return 0;
    }
    return 1;
}

void slm_daemon_awake(struct slm_shm *shm)
{
    shm->daemon_flags &= ~SLM_SHM_NEED_WAKEUP;
    /* Relaxed: a client that still sees the flag only rings a needless doorbell. */
    __atomic_store_n(&shm->hdr->daemon_flags, shm->daemon_flags, __ATOMIC_RELAXED);
}

int slm_doorbell_drain(int sock)
{
    char buf[64];
    int n = 0;
    /* Bounded: a client that keeps ringing cannot hold the caller here; epoll reports the
     * socket readable again for the rest. */
    while (n < SLM_DOORBELL_DRAIN_MAX) {
        ssize_t r = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
            n++;
            continue;
        }
        if (r == 0) return -EPIPE;   /* hang-up (a zero-length packet reads the same) */
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return n;
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
    return n;
}

int slm_doorbell_ring(struct slm_shm *shm, int sock)
{
    /* Dekker: our SQE publish before our load of daemon_flags; pairs with the fence in
     * slm_daemon_prepare_sleep. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!(__atomic_load_n(&shm->hdr->daemon_flags, __ATOMIC_RELAXED) & SLM_SHM_NEED_WAKEUP)) return 0;
    static const char bell = 1;
    for (;;) {
        if (send(sock, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) {
            /* The daemon thread just woken is often put on this CPU (wake-affine); the spin on
             * the CQ that usually follows would keep it off until the spin ends. Yield once:
             * without a runnable task here it returns at once. */
            sched_yield();
            return 1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;   /* doorbells already pending */
        return (errno == ECONNRESET || errno == EPIPE) ? -EPIPE : -errno;
    }
}
