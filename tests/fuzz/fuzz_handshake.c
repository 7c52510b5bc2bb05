/*
 * tests/fuzz/fuzz_handshake.c - the handshake's receivers (ipc/handshake.c): HELLO as the daemon
 * takes it, WELCOME as libslm takes it, each a real packet on a SOCK_SEQPACKET socket pair with
 * file descriptors attached as the input says; and the shared memory header a client checks
 * after WELCOME (ipc/shm.c, slm_shm_check_header).
 *
 * Input: one byte of flags, then the packet (or the header).
 *   flags bit 0..1  0 = HELLO, 1 = WELCOME, 2 = shm header (then a u32 of the memory's size and
 *                   the header's bytes), 3 = HELLO;
 *   flags bit 2..4  file descriptors attached to the packet (0..7; copies of /dev/null).
 * Checked: the documented results only; a HELLO accepted is of our magic, type and version, with
 * a NUL-terminated name and sizes that slm_shm_clamp keeps in its limits; a WELCOME accepted
 * hands over exactly one fd, and a refused one none; no fd received is left open (the lowest free
 * descriptor is the same after the call as before).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "ipc/handshake.h"
#include "ipc/shm.h"
#include "tests/fuzz/fuzz.h"

static int sv[2] = {-1, -1};   /* [0] sends, [1] receives (non-blocking) */
static int devnull = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
        fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0 || (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        perror("fuzz_handshake: setup");
        exit(1);
    }
    return 0;
}

static int lowest_free_fd(void)
{
    int fd = dup(0);
    FUZZ_CHECK(fd >= 0, "dup");
    close(fd);
    return fd;
}

/* Sends p[0..len) with n_fds copies of /dev/null attached. 0, or -1 when the kernel refused. */
static int send_packet(const uint8_t *p, size_t len, int n_fds)
{
    int fds[8];
    for (int i = 0; i < n_fds; i++) fds[i] = dup(devnull);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof fds)];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (n_fds) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
    }
    ssize_t n = sendmsg(sv[0], &msg, MSG_NOSIGNAL);
    for (int i = 0; i < n_fds; i++) close(fds[i]);
    return n == (ssize_t)len ? 0 : -1;
}

static void hello(const uint8_t *p, size_t len, int n_fds)
{
    if (send_packet(p, len, n_fds)) return;
    char err[SLM_ERR_LEN] = "";
    struct slm_hello h;
    int rc = slm_hello_recv(sv[1], &h, err);
    if (len == 0) {
        /* an empty packet reads as the hang-up */
        FUZZ_CHECK(rc == -EPIPE, "HELLO: empty packet: %d", rc);
        return;
    }
    FUZZ_CHECK(rc == 0 || rc == -EPROTO || rc == -EBADMSG, "HELLO: %d (%s)", rc, err);
    if (rc) {
        FUZZ_CHECK(err[0] != 0, "HELLO: %d without a reason", rc);
        return;
    }
    FUZZ_CHECK(len == sizeof h && n_fds == 0, "HELLO of %zu bytes and %d fds accepted", len, n_fds);
    FUZZ_CHECK(h.magic == SLM_PROTO_MAGIC && h.type == SLM_MSG_HELLO && h.version == SLM_PROTO_VERSION &&
                   h.reserved == 0 && memchr(h.name, 0, sizeof h.name),
               "HELLO accepted with a bad field");
    uint32_t sq = h.sq_entries, cq = h.cq_entries, arena = h.arena_bytes;
    slm_shm_clamp(&sq, &cq, &arena);
    FUZZ_CHECK(sq >= SLM_SHM_MIN_ENTRIES && sq <= SLM_SHM_MAX_ENTRIES && !(sq & (sq - 1)), "sq %u", sq);
    FUZZ_CHECK(cq >= SLM_SHM_MIN_ENTRIES && cq <= SLM_SHM_MAX_ENTRIES && !(cq & (cq - 1)), "cq %u", cq);
    FUZZ_CHECK(arena >= SLM_SHM_MIN_ARENA && arena <= SLM_SHM_MAX_ARENA, "arena %u", arena);
}

static void welcome(const uint8_t *p, size_t len, int n_fds)
{
    if (send_packet(p, len, n_fds)) return;
    char err[SLM_ERR_LEN] = "";
    struct slm_welcome w;
    int fd = 12345;
    int rc = slm_welcome_recv(sv[1], &w, &fd, err);
    if (rc == 0) {
        FUZZ_CHECK(fd >= 0 && n_fds == 1 && len == sizeof w, "WELCOME accepted with fd %d, %d sent", fd, n_fds);
        FUZZ_CHECK(w.magic == SLM_PROTO_MAGIC && w.type == SLM_MSG_WELCOME && w.version == SLM_PROTO_VERSION &&
                       w.status == 0 && memchr(w.reason, 0, sizeof w.reason),
                   "WELCOME accepted with a bad field");
        close(fd);
        return;
    }
    FUZZ_CHECK(fd == -1, "WELCOME refused (%d) but fd %d handed over", rc, fd);
    FUZZ_CHECK(err[0] != 0, "WELCOME: %d without a reason", rc);
    if (len == 0) FUZZ_CHECK(rc == -EPIPE, "WELCOME: empty packet: %d", rc);
}

static void header(const uint8_t *p, size_t len)
{
    uint32_t bytes = 0;
    memcpy(&bytes, p, len < 4 ? len : 4);
    struct slm_shm_header *h = calloc(1, SLM_SHM_HEADER_BYTES);
    if (len > 4) memcpy(h, p + 4, len - 4 < SLM_SHM_HEADER_BYTES ? len - 4 : SLM_SHM_HEADER_BYTES);
    char err[SLM_ERR_LEN] = "";
    int rc = slm_shm_check_header(h, bytes, err);
    FUZZ_CHECK(rc == 0 || ((rc == -EBADMSG || rc == -EPROTO) && err[0]), "header: %d (%s)", rc, err);
    if (rc == 0) {
        /* every region inside the memory, in order, none overlapping */
        uint64_t sq_end = (uint64_t)h->sq_off + (uint64_t)h->sq_entries * 128;
        uint64_t cq_end = (uint64_t)h->cq_off + (uint64_t)h->cq_entries * 128;
        uint64_t arena_end = (uint64_t)h->arena_off + h->arena_bytes;
        FUZZ_CHECK(sq_end <= bytes && cq_end <= bytes && arena_end <= bytes, "a region past the end");
        FUZZ_CHECK(h->sq_off >= SLM_SHM_HEADER_BYTES && h->cq_off >= SLM_SHM_HEADER_BYTES &&
                       h->arena_off >= SLM_SHM_HEADER_BYTES,
                   "a region in the header page");
        FUZZ_CHECK((sq_end <= h->cq_off || cq_end <= h->sq_off) && (sq_end <= h->arena_off || arena_end <= h->sq_off) &&
                       (cq_end <= h->arena_off || arena_end <= h->cq_off),
                   "regions overlap");
    }
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] & 3, n_fds = (data[0] >> 2) & 7;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    if (mode == 2) {
        header(p, len);
        return 0;
    }
    if (len > 4096) return 0;   /* longer than any packet: the socket's buffer is the limit */
    int before = lowest_free_fd();
    if (mode == 1) welcome(p, len, n_fds);
    else hello(p, len, n_fds);
    FUZZ_CHECK(lowest_free_fd() == before, "a received fd was left open");
    return 0;
}
