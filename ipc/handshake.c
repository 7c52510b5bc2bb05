/* ipc/handshake.c - see handshake.h. */
#define _GNU_SOURCE
#include "ipc/handshake.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 8   /* room for what a hostile peer might attach, so that we can close it */

struct packet {
    union {
        struct slm_hello hello;
        struct slm_welcome welcome;
        uint8_t bytes[512];   /* larger than any message: a long packet shows as a long size */
    } u;
    size_t len;
    int truncated;            /* MSG_TRUNC: even longer than bytes */
    int fds[MAX_FDS];
    int n_fds;
    int ctrunc;               /* MSG_CTRUNC: more fds were sent than we had room for */
};

static void close_fds(struct packet *p)
{
    for (int i = 0; i < p->n_fds; i++) close(p->fds[i]);
    p->n_fds = 0;
}

/* One packet with whatever fds came along (received close-on-exec). 0 or -errno. */
static int recv_packet(int sock, struct packet *p, char *err)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } control;
    memset(p, 0, sizeof *p);
    struct iovec iov = {.iov_base = p->u.bytes, .iov_len = sizeof p->u.bytes};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) return -EAGAIN;
        slm_err_set(err, "recvmsg: %s", strerror(e));
        return e == ECONNRESET ? -EPIPE : -e;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && p->n_fds < MAX_FDS; i++)
            memcpy(&p->fds[p->n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    p->len = (size_t)n;
    p->truncated = (msg.msg_flags & MSG_TRUNC) != 0;
    p->ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
    if (n == 0) {
        close_fds(p);
        slm_err_set(err, "the peer hung up");
        return -EPIPE;
    }
    return 0;
}

static int send_packet(int sock, const void *buf, size_t len, int fd, char *err)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        slm_err_set(err, "sendmsg: %s", strerror(e));
        return e == ECONNRESET ? -EPIPE : -e;
    }
    if ((size_t)n != len) {
        slm_err_set(err, "sendmsg: sent %zd of %zu bytes", n, len);
        return -EIO;
    }
    return 0;
}

/* The checks every message shares: at least the common prefix, magic, type. */
static int check_prefix(const struct packet *p, uint16_t type, const char *what, char *err)
{
    uint32_t magic;
    uint16_t t;
    if (p->len < 8) {
        slm_err_set(err, "%s: short packet of %zu bytes", what, p->len);
        return -EBADMSG;
    }
    memcpy(&magic, p->u.bytes, 4);
    memcpy(&t, p->u.bytes + 4, 2);
    if (magic != SLM_PROTO_MAGIC) {
        slm_err_set(err, "%s: bad magic 0x%08x (expected 0x%08x): not an slmd peer", what, magic,
                        SLM_PROTO_MAGIC);
        return -EBADMSG;
    }
    if (t != type) {
        slm_err_set(err, "%s: message type %u, expected %u", what, t, type);
        return -EBADMSG;
    }
    return 0;
}

static int check_size(const struct packet *p, size_t want, const char *what, char *err)
{
    if (p->truncated || p->len != want) {
        slm_err_set(err, "%s: packet of %s%zu bytes, expected %zu", what, p->truncated ? "more than " : "",
                        p->len, want);
        return -EBADMSG;
    }
    return 0;
}

int slm_hello_send_raw(int sock, const struct slm_hello *hello, char err[SLM_ERR_LEN])
{
    return send_packet(sock, hello, sizeof *hello, -1, err);
}

int slm_hello_send(int sock, const char *name, uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                   char err[SLM_ERR_LEN])
{
    struct slm_hello h;
    memset(&h, 0, sizeof h);
    h.magic = SLM_PROTO_MAGIC;
    h.type = SLM_MSG_HELLO;
    h.version = SLM_PROTO_VERSION;
    h.sq_entries = sq_entries;
    h.cq_entries = cq_entries;
    h.arena_bytes = arena_bytes;
    if (name) {
        size_t n = strnlen(name, SLM_NAME_LEN - 1);
        memcpy(h.name, name, n);
    }
    return send_packet(sock, &h, sizeof h, -1, err);
}

int slm_hello_recv(int sock, struct slm_hello *out, char err[SLM_ERR_LEN])
{
    struct packet p;
    int rc = recv_packet(sock, &p, err);
    if (rc != 0) return rc;
    memset(out, 0, sizeof *out);
    if (p.n_fds > 0 || p.ctrunc) {
        close_fds(&p);
        slm_err_set(err, "HELLO: file descriptors attached (a HELLO carries none)");
        return -EBADMSG;
    }
    if ((rc = check_prefix(&p, SLM_MSG_HELLO, "HELLO", err)) != 0) return rc;
    uint16_t version;
    memcpy(&version, p.u.bytes + 6, 2);
    /* The version before the size: a client of another version may send another layout, and
     * deserves the answer that names both versions. */
    if (version != SLM_PROTO_VERSION) {
        memcpy(out, p.u.bytes, p.len < sizeof *out ? p.len : sizeof *out);
        slm_err_set(err, "client speaks protocol version %u, daemon speaks version %u", version,
                        SLM_PROTO_VERSION);
        return -EPROTO;
    }
    if ((rc = check_size(&p, sizeof *out, "HELLO", err)) != 0) return rc;
    memcpy(out, p.u.bytes, sizeof *out);
    if (out->reserved != 0) {
        slm_err_set(err, "HELLO: reserved field is %u, must be 0", out->reserved);
        return -EBADMSG;
    }
    if (memchr(out->name, 0, sizeof out->name) == NULL) {
        slm_err_set(err, "HELLO: client name is not NUL-terminated within %d bytes", SLM_NAME_LEN);
        return -EBADMSG;
    }
    return 0;
}

int slm_welcome_send_raw(int sock, const struct slm_welcome *w, int fd, char err[SLM_ERR_LEN])
{
    return send_packet(sock, w, sizeof *w, fd, err);
}

int slm_welcome_send(int sock, uint64_t client_id, uint32_t shm_bytes, int shm_fd, char err[SLM_ERR_LEN])
{
    if (shm_fd < 0) {
        slm_err_set(err, "WELCOME: no shared memory fd to send");
        return -EBADF;
    }
    struct slm_welcome w;
    memset(&w, 0, sizeof w);
    w.magic = SLM_PROTO_MAGIC;
    w.type = SLM_MSG_WELCOME;
    w.version = SLM_PROTO_VERSION;
    w.shm_bytes = shm_bytes;
    w.client_id = client_id;
    return send_packet(sock, &w, sizeof w, shm_fd, err);
}

int slm_welcome_refuse(int sock, int status, const char *reason)
{
    struct slm_welcome w;
    memset(&w, 0, sizeof w);
    w.magic = SLM_PROTO_MAGIC;
    w.type = SLM_MSG_WELCOME;
    w.version = SLM_PROTO_VERSION;
    w.status = status < 0 ? status : -EPROTO;
    if (reason) {
        size_t n = strnlen(reason, SLM_REASON_LEN - 1);
        memcpy(w.reason, reason, n);
    }
    return send_packet(sock, &w, sizeof w, -1, NULL);
}

int slm_welcome_recv(int sock, struct slm_welcome *out, int *shm_fd, char err[SLM_ERR_LEN])
{
    *shm_fd = -1;
    struct packet p;
    int rc = recv_packet(sock, &p, err);
    if (rc != 0) return rc;
    memset(out, 0, sizeof *out);
    if ((rc = check_prefix(&p, SLM_MSG_WELCOME, "WELCOME", err)) != 0) goto err;
    if ((rc = check_size(&p, sizeof *out, "WELCOME", err)) != 0) goto err;
    memcpy(out, p.u.bytes, sizeof *out);
    if (memchr(out->reason, 0, sizeof out->reason) == NULL) {
        slm_err_set(err, "WELCOME: reason is not NUL-terminated within %d bytes", SLM_REASON_LEN);
        rc = -EBADMSG;
        goto err;
    }
    if (out->status > 0) {
        slm_err_set(err, "WELCOME: status %d (must be 0 or -errno)", out->status);
        rc = -EBADMSG;
        goto err;
    }
    if (out->status < 0) {
        if (p.n_fds > 0 || p.ctrunc) {
            slm_err_set(err, "WELCOME: a refusal (status %d) with file descriptors attached", out->status);
            rc = -EBADMSG;
            goto err;
        }
        slm_err_set(err, "the daemon refused the connection (%s): %s",
                        out->status > -4096 ? strerror(-out->status) : "unknown error",
                        out->reason[0] ? out->reason : "no reason given");
        return out->status;
    }
    if (out->version != SLM_PROTO_VERSION) {
        slm_err_set(err, "WELCOME: daemon speaks protocol version %u, this library speaks version %u",
                        out->version, SLM_PROTO_VERSION);
        rc = -EPROTO;
        goto err;
    }
    if (p.n_fds != 1 || p.ctrunc) {
        slm_err_set(err, "WELCOME: %s%d file descriptors attached, expected exactly 1", p.ctrunc ? "more than " : "",
                        p.n_fds);
        rc = -EBADMSG;
        goto err;
    }
    *shm_fd = p.fds[0];
    return 0;
err:
    close_fds(&p);
    return rc;
}

int slm_peer_cred(int sock, pid_t *pid, uid_t *uid, gid_t *gid)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    if (len != sizeof cred) return -EIO;
    if (pid) *pid = cred.pid;
    if (uid) *uid = cred.uid;
    if (gid) *gid = cred.gid;
    return 0;
}
