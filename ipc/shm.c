/* ipc/shm.c - see shm.h. */
#define _GNU_SOURCE
#include "ipc/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008u
#endif

#define SEALS_REQUIRED (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static uint32_t round_pow2(uint32_t v)
{
    uint32_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

static uint32_t round_page(uint32_t v)
{
    return (v + SLM_SHM_ALIGN - 1) & ~(SLM_SHM_ALIGN - 1);
}

static uint32_t clamp_entries(uint32_t v, uint32_t dflt)
{
    if (v == 0) return dflt;
    if (v >= SLM_SHM_MAX_ENTRIES) return SLM_SHM_MAX_ENTRIES;
    v = round_pow2(v);
    return v < SLM_SHM_MIN_ENTRIES ? SLM_SHM_MIN_ENTRIES : v;
}

void slm_shm_clamp(uint32_t *sq_entries, uint32_t *cq_entries, uint32_t *arena_bytes)
{
    *sq_entries = clamp_entries(*sq_entries, SLM_SHM_DEFAULT_SQ_ENTRIES);
    *cq_entries = clamp_entries(*cq_entries, SLM_SHM_DEFAULT_CQ_ENTRIES);
    uint32_t a = *arena_bytes;
    if (a == 0) a = SLM_SHM_DEFAULT_ARENA;
    if (a > SLM_SHM_MAX_ARENA) a = SLM_SHM_MAX_ARENA;
    a = round_page(a);
    *arena_bytes = a < SLM_SHM_MIN_ARENA ? SLM_SHM_MIN_ARENA : a;
}

uint32_t slm_shm_layout(uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                        uint32_t *sq_off, uint32_t *cq_off, uint32_t *arena_off)
{
    uint32_t sq = SLM_SHM_HEADER_BYTES;
    uint32_t cq = sq + round_page(sq_entries * SLM_RING_SLOT_BYTES);
    uint32_t ar = cq + round_page(cq_entries * SLM_RING_SLOT_BYTES);
    if (sq_off) *sq_off = sq;
    if (cq_off) *cq_off = cq;
    if (arena_off) *arena_off = ar;
    return ar + arena_bytes;
}

/* Maps bytes of the memfd read-write and shared. 0, or -errno with err. */
static int map_shared(int fd, uint32_t bytes, void **base, char err[SLM_ERR_LEN])
{
    *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (*base != MAP_FAILED) return 0;
    int rc = -errno;
    slm_err_set(err, "mmap of %u bytes of shared memory: %s", bytes, strerror(-rc));
    return rc;
}

int slm_shm_create(struct slm_shm *shm, uint32_t sq_entries, uint32_t cq_entries, uint32_t arena_bytes,
                   char err[SLM_ERR_LEN])
{
    memset(shm, 0, sizeof *shm);
    shm->fd = -1;
    slm_shm_clamp(&sq_entries, &cq_entries, &arena_bytes);
    uint32_t sq_off, cq_off, arena_off;
    uint32_t bytes = slm_shm_layout(sq_entries, cq_entries, arena_bytes, &sq_off, &cq_off, &arena_off);
    int rc;

    /* MFD_NOEXEC_SEAL (Linux 6.3+) clears the file's execute bits and seals them (F_SEAL_EXEC):
     * the memfd can never be run with execveat. It does not stop mmap(PROT_EXEC) of it, which no
     * seal prevents (a process may map what it can read executable; the client's own mapping is
     * its own business, and the daemon maps it read-write only). Older kernels reject the flag,
     * so retry without it. */
    int fd = memfd_create("slmd-client", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = memfd_create("slmd-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        rc = -errno;
        slm_err_set(err, "memfd_create: %s", strerror(errno));
        return rc;
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        rc = -errno;
        slm_err_set(err, "ftruncate of the shared memory to %u bytes: %s", bytes, strerror(errno));
        goto err;
    }
    if (fcntl(fd, F_ADD_SEALS, SEALS_REQUIRED) != 0) {
        rc = -errno;
        slm_err_set(err, "sealing the shared memory: %s", strerror(errno));
        goto err;
    }
    void *base;
    if ((rc = map_shared(fd, bytes, &base, err))) goto err;
    /* A fresh memfd reads as zeros: only the layout and the slot seqs need writing. Plain
     * stores: the client first sees this memory after the fd crosses the socket. */
    struct slm_shm_header *h = base;
    h->magic = SLM_PROTO_MAGIC;
    h->version = SLM_PROTO_VERSION;
    h->total_bytes = bytes;
    h->sq_off = sq_off;
    h->sq_entries = sq_entries;
    h->cq_off = cq_off;
    h->cq_entries = cq_entries;
    h->arena_off = arena_off;
    h->arena_bytes = arena_bytes;
    slm_ring_format((uint8_t *)base + sq_off, sq_entries, 0);
    slm_ring_format((uint8_t *)base + cq_off, cq_entries, 0);

    shm->fd = fd;
    shm->base = base;
    shm->bytes = bytes;
    shm->hdr = h;
    shm->sq_entries = sq_entries;
    shm->cq_entries = cq_entries;
    shm->arena_bytes = arena_bytes;
    shm->sq = (uint8_t *)base + sq_off;
    shm->cq = (uint8_t *)base + cq_off;
    shm->arena = (uint8_t *)base + arena_off;
    return 0;
err:
    close(fd);
    return rc;
}

static int is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

struct region {
    const char *name;
    uint64_t off, size;
};

int slm_shm_check_header(const struct slm_shm_header *hp, uint32_t bytes, char err[SLM_ERR_LEN])
{
    struct slm_shm_header h;
    memcpy(&h, hp, sizeof h);   /* each field read once, whatever a peer does meanwhile */
    if (bytes < SLM_SHM_HEADER_BYTES) {
        slm_err_set(err, "shared memory of %u bytes is smaller than its %u-byte header", bytes,
                        SLM_SHM_HEADER_BYTES);
        return -EBADMSG;
    }
    if (h.magic != SLM_PROTO_MAGIC) {
        slm_err_set(err, "shared memory header: bad magic 0x%08x (expected 0x%08x)", h.magic, SLM_PROTO_MAGIC);
        return -EBADMSG;
    }
    if (h.version != SLM_PROTO_VERSION) {
        slm_err_set(err, "shared memory header: protocol version %u, this library speaks %u", h.version,
                        SLM_PROTO_VERSION);
        return -EPROTO;
    }
    if (h.total_bytes != bytes) {
        slm_err_set(err, "shared memory header: total_bytes %u but the memory is %u bytes", h.total_bytes,
                        bytes);
        return -EBADMSG;
    }
    const struct { const char *name; uint32_t v; } rings[2] = {{"sq_entries", h.sq_entries},
                                                               {"cq_entries", h.cq_entries}};
    for (int i = 0; i < 2; i++) {
        if (!is_pow2(rings[i].v) || rings[i].v < SLM_SHM_MIN_ENTRIES || rings[i].v > SLM_SHM_MAX_ENTRIES) {
            slm_err_set(err, "shared memory header: %s %u is not a power of two in [%u, %u]", rings[i].name,
                            rings[i].v, SLM_SHM_MIN_ENTRIES, SLM_SHM_MAX_ENTRIES);
            return -EBADMSG;
        }
    }
    if (h.arena_bytes < SLM_SHM_MIN_ARENA || h.arena_bytes > SLM_SHM_MAX_ARENA) {
        slm_err_set(err, "shared memory header: arena_bytes %u is outside [%u, %u]", h.arena_bytes,
                        SLM_SHM_MIN_ARENA, SLM_SHM_MAX_ARENA);
        return -EBADMSG;
    }
    struct region r[3] = {
        {"sq", h.sq_off, (uint64_t)h.sq_entries * SLM_RING_SLOT_BYTES},
        {"cq", h.cq_off, (uint64_t)h.cq_entries * SLM_RING_SLOT_BYTES},
        {"arena", h.arena_off, h.arena_bytes},
    };
    for (int i = 0; i < 3; i++) {
        if (r[i].off % SLM_SHM_MIN_REGION_ALIGN != 0) {
            slm_err_set(err, "shared memory header: %s_off %llu is not aligned to %u bytes", r[i].name,
                            (unsigned long long)r[i].off, SLM_SHM_MIN_REGION_ALIGN);
            return -EBADMSG;
        }
        if (r[i].off < SLM_SHM_HEADER_BYTES || r[i].off + r[i].size > bytes) {
            slm_err_set(err, "shared memory header: %s [%llu, +%llu) is outside [%u, %u)", r[i].name,
                            (unsigned long long)r[i].off, (unsigned long long)r[i].size, SLM_SHM_HEADER_BYTES,
                            bytes);
            return -EBADMSG;
        }
    }
    for (int i = 0; i < 3; i++) {
        for (int j = i + 1; j < 3; j++) {
            if (r[i].off < r[j].off + r[j].size && r[j].off < r[i].off + r[i].size) {
                slm_err_set(err, "shared memory header: %s and %s overlap", r[i].name, r[j].name);
                return -EBADMSG;
            }
        }
    }
    return 0;
}

int slm_shm_map(struct slm_shm *shm, int fd, uint32_t expected_bytes, char err[SLM_ERR_LEN])
{
    memset(shm, 0, sizeof *shm);
    shm->fd = -1;
    int rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        slm_err_set(err, "fstat of the shared memory fd: %s", strerror(errno));
        goto err;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EBADF;
        slm_err_set(err, "the shared memory fd is not a memfd (not a regular file)");
        goto err;
    }
    if (st.st_size != (off_t)expected_bytes || expected_bytes < SLM_SHM_HEADER_BYTES) {
        rc = -EBADMSG;
        slm_err_set(err, "the shared memory is %lld bytes, WELCOME said %u", (long long)st.st_size,
                        expected_bytes);
        goto err;
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        rc = -errno;
        slm_err_set(err, "the shared memory fd has no seals (not a sealable memfd): %s", strerror(errno));
        goto err;
    }
    if ((seals & SEALS_REQUIRED) != SEALS_REQUIRED) {
        rc = -EPERM;
        slm_err_set(err, "the shared memory is not sealed against resizing (seals 0x%x, need 0x%x)", seals,
                        SEALS_REQUIRED);
        goto err;
    }
    void *base;
    if ((rc = map_shared(fd, expected_bytes, &base, err))) goto err;
    struct slm_shm_header h;
    memcpy(&h, base, sizeof h);
    rc = slm_shm_check_header(&h, expected_bytes, err);
    if (rc != 0) {
        munmap(base, expected_bytes);
        goto err;
    }
    shm->fd = fd;
    shm->base = base;
    shm->bytes = expected_bytes;
    shm->hdr = base;
    shm->sq_entries = h.sq_entries;
    shm->cq_entries = h.cq_entries;
    shm->arena_bytes = h.arena_bytes;
    shm->sq = (uint8_t *)base + h.sq_off;
    shm->cq = (uint8_t *)base + h.cq_off;
    shm->arena = (uint8_t *)base + h.arena_off;
    return 0;
err:
    close(fd);
    return rc;
}

void slm_shm_rings(const struct slm_shm *shm, struct slm_ring *sq, struct slm_ring *cq)
{
    /* Both sizes were validated as powers of two by create or map, so init cannot fail. */
    if (sq) slm_ring_init(sq, shm->sq, shm->sq_entries, 0);
    if (cq) slm_ring_init(cq, shm->cq, shm->cq_entries, 0);
}

void slm_shm_unmap(struct slm_shm *shm)
{
    if (shm->base) munmap(shm->base, shm->bytes);
    if (shm->fd >= 0) close(shm->fd);
    shm->base = NULL;
    shm->hdr = NULL;
    shm->sq = shm->cq = NULL;
    shm->arena = NULL;
    shm->fd = -1;
}

void slm_shm_set_closing(struct slm_shm *shm, int closing)
{
    if (closing) shm->daemon_flags |= SLM_SHM_CLOSING;
    else shm->daemon_flags &= ~SLM_SHM_CLOSING;
    __atomic_store_n(&shm->hdr->daemon_flags, shm->daemon_flags, __ATOMIC_RELAXED);
}
