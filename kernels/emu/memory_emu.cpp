/* The runtime stand-in's memory: every allocation of each kind (device, pinned host,
 * managed) is registered, so every copy, memset and checked kernel argument can be
 * matched against a live allocation of the right kind. Freed memory stays mapped but
 * inaccessible in a quarantine, so a use after free is named as such (and faults in a
 * kernel) instead of landing in memory that malloc has handed out again. */
#include "kernels/emu/runtime_internal.h"
#include "kernels/emu/fiber.h"

#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLM_EMU_POISON_RANGE(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#else
#define SLM_EMU_POISON_RANGE(p, n) ((void)(p), (void)(n))
#endif

namespace slm_emu {

struct allocation {
    uintptr_t base;
    size_t size;
    int kind;
    int device;
    char *map; /* the mapping (NULL for registered host memory) */
    size_t map_len;
};

static std::mutex g_mem_mutex;
static std::map<uintptr_t, allocation> g_live;
static std::deque<allocation> g_quarantine;
static size_t g_quarantine_bytes;
static size_t g_device_used;

static const char *kind_name(int kind)
{
    switch (kind) {
    case MEM_DEVICE: return "device memory (cudaMalloc)";
    case MEM_PINNED: return "pinned host memory (cudaMallocHost)";
    case MEM_MANAGED: return "managed memory (cudaMallocManaged)";
    default: return "registered host memory (cudaHostRegister)";
    }
}

static const allocation *find_live(uintptr_t p)
{
    auto it = g_live.upper_bound(p);
    if (it == g_live.begin()) return nullptr;
    --it;
    return p < it->second.base + std::max<size_t>(it->second.size, 1) ? &it->second : nullptr;
}

static const allocation *find_freed(uintptr_t p)
{
    for (const allocation &a : g_quarantine)
        if (p >= (uintptr_t)a.map && p < (uintptr_t)a.map + a.map_len) return &a;
    return nullptr;
}

size_t device_memory_limit()
{
    static size_t limit = [] {
        const char *s = getenv("SLM_EMU_MEM_MB");
        long mb = s && *s ? strtol(s, nullptr, 10) : 2048;
        return (size_t)(mb > 0 ? mb : 2048) << 20;
    }();
    return limit;
}

size_t device_memory_used()
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    return g_device_used;
}

/* Maps size bytes ending 256-aligned just before a guard page; the slack up to the page
 * is poisoned under ASan. With SLM_EMU_POISON (the default) the bytes are 0xff (a NaN, -1), not
 * the zeros of a fresh mapping: cudaMalloc and cudaMallocHost leave memory as it was on a GPU
 * (zeros from the driver for a new process, a freed buffer's bytes later), so a kernel or host
 * code that reads what nobody wrote sees garbage here too. */
cudaError_t mem_alloc(void **out, size_t size, int kind, int device)
{
    *out = nullptr;
    if (size == 0) return cudaSuccess;
    size_t rounded = (size + 4095) / 4096 * 4096;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    if (kind != MEM_PINNED && g_device_used + size > device_memory_limit()) {
        report(format("cudaMalloc: %zu bytes do not fit: %zu of %zu used (SLM_EMU_MEM_MB)", size, g_device_used,
                      device_memory_limit()));
        return cudaErrorMemoryAllocation;
    }
    size_t len = rounded + 4096;
    void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    char *map = (char *)m;
    mprotect(map + rounded, 4096, PROT_NONE);
    char *user = map + rounded - (size + 255) / 256 * 256;
    SLM_EMU_POISON_RANGE(user + size, (size_t)(map + rounded - (user + size)));
    if (options().poison) memset(user, 0xff, size);
    g_live[(uintptr_t)user] = allocation{(uintptr_t)user, size, kind, device, map, len};
    if (kind != MEM_PINNED) g_device_used += size;
    *out = user;
    return cudaSuccess;
}

/* Frees an allocation of one of the kinds in `kinds` (a bit mask of 1 << mem_kind). */
cudaError_t mem_free(void *p, unsigned kinds, const char *who)
{
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    auto it = g_live.find((uintptr_t)p);
    if (it == g_live.end() || !(kinds >> it->second.kind & 1)) {
        const allocation *a = find_live((uintptr_t)p);
        const allocation *f = a ? nullptr : find_freed((uintptr_t)p);
        report(format("%s(%p): %s", who, p,
                      a ? format("not the start of an allocation of the right kind: inside %s of %zu bytes at %p",
                                 kind_name(a->kind), a->size, (void *)a->base).c_str()
                      : f ? format("already freed (%s of %zu bytes)", kind_name(f->kind), f->size).c_str()
                          : "not an allocation of the emulated runtime"));
        return cudaErrorInvalidValue;
    }
    allocation a = it->second;
    g_live.erase(it);
    if (a.kind != MEM_PINNED && a.kind != MEM_REGISTERED) g_device_used -= a.size;
    if (!a.map) return cudaSuccess;
    mprotect(a.map, a.map_len, PROT_NONE);
    g_quarantine.push_back(a);
    g_quarantine_bytes += a.map_len;
    while (g_quarantine.size() > 4096 || g_quarantine_bytes > ((size_t)1 << 32)) {
        const allocation &old = g_quarantine.front();
#if defined(__SANITIZE_ADDRESS__)
        ASAN_UNPOISON_MEMORY_REGION(old.map, old.map_len); /* the shadow outlives the mapping */
#endif
        munmap(old.map, old.map_len);
        g_quarantine_bytes -= old.map_len;
        g_quarantine.pop_front();
    }
    return cudaSuccess;
}

cudaError_t mem_register(void *p, size_t size)
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    if (!p || !size || find_live((uintptr_t)p)) return cudaErrorInvalidValue;
    g_live[(uintptr_t)p] = allocation{(uintptr_t)p, size, MEM_REGISTERED, 0, nullptr, 0};
    return cudaSuccess;
}

/* What p is: a live allocation's kind, -1 for pageable host memory, -2 for freed memory. */
int mem_classify(const void *p, size_t bytes, std::string *why)
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    const allocation *a = find_live((uintptr_t)p);
    if (a) {
        if ((uintptr_t)p + bytes > a->base + a->size) {
            if (why)
                *why = format("out of bounds: bytes [%zu, %zu) of %s of %zu bytes at %p", (size_t)((uintptr_t)p - a->base),
                              (size_t)((uintptr_t)p - a->base) + bytes, kind_name(a->kind), a->size, (void *)a->base);
            return -3;
        }
        return a->kind;
    }
    const allocation *f = find_freed((uintptr_t)p);
    if (f) {
        if (why) *why = format("freed %s (an allocation of %zu bytes at %p)", kind_name(f->kind), f->size, (void *)f->base);
        return -2;
    }
    if (why) *why = "a host pointer, not memory of the emulated device";
    return -1;
}

/* Whether [p, p + bytes) is live device (or managed) memory; if not, *why says what it is. */
static bool device_range(const void *p, size_t bytes, std::string *why)
{
    if (!p) {
        *why = "a null pointer";
        return false;
    }
    int k = mem_classify(p, bytes, why);
    if (k == MEM_DEVICE || k == MEM_MANAGED) return true;
    if (k >= 0) *why = format("%s, not device memory", kind_name(k));
    return false;
}

cudaError_t check_device_range(const void *p, size_t bytes, const char *who, const char *what)
{
    std::string why;
    if (device_range(p, bytes, &why)) return cudaSuccess;
    report(format("%s: %s %p (%zu bytes) is %s", who, what, p, bytes, why.c_str()));
    return cudaErrorInvalidValue;
}

std::vector<snapshot_entry> mem_snapshot()
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    std::vector<snapshot_entry> s;
    for (auto &kv : g_live) {
        const allocation &a = kv.second;
        s.push_back(snapshot_entry{(char *)a.base, a.size, std::vector<char>((char *)a.base, (char *)a.base + a.size)});
    }
    return s;
}

void mem_restore(const std::vector<snapshot_entry> &s)
{
    for (const snapshot_entry &e : s) memcpy(e.base, e.bytes.data(), e.size);
}

/* Runs the launch under two schedules from the same memory and reports the first byte
 * that differs: a result that depends on the order of threads is a race. */
/* Each run is on a new OS thread: static __shared__ memory (thread-local storage) then
 * starts zeroed in both, so neither run inherits values from earlier launches, and a
 * block that reads static shared memory before writing it sees a different previous block
 * in each order. */
static cudaError_t run_on_fresh_thread(const launch_desc &d, int sched)
{
    cudaError_t err = cudaSuccess;
    std::thread t([&] { err = run_grid(d, sched, true); });
    t.join();
    return err;
}

cudaError_t run_grid_racecheck(const launch_desc &d)
{
    std::vector<snapshot_entry> before = mem_snapshot();
    cudaError_t err = run_on_fresh_thread(d, SCHED_FORWARD);
    if (err != cudaSuccess) return err;
    std::vector<snapshot_entry> first = mem_snapshot();
    mem_restore(before);
    err = run_on_fresh_thread(d, SCHED_REVERSE);
    if (err != cudaSuccess) return err;
    for (const snapshot_entry &e : first) {
        if (memcmp(e.base, e.bytes.data(), e.size) == 0) continue;
        size_t i = 0;
        while (e.base[i] == e.bytes[i]) i++;
        size_t ndiff = 0;
        for (size_t k = i; k < e.size; k++) ndiff += e.base[k] != e.bytes[k];
        report(format("race in kernel %s: its results depend on the order in which its threads and blocks run; byte %zu of the allocation "
                      "of %zu bytes at %p is 0x%02x in forward order, 0x%02x in reverse order (%zu bytes differ). "
                      "Look for shared or global memory read without a __syncthreads/__syncwarp after another "
                      "thread wrote it, or float atomics",
                      d.name, i, e.size, (void *)e.base, (unsigned char)e.bytes[i], (unsigned char)e.base[i], ndiff));
        return cudaErrorLaunchFailure;
    }
    return cudaSuccess;
}

std::vector<mem_pages> mem_device_pages()
{
    std::lock_guard<std::mutex> lock(g_mem_mutex);
    std::vector<mem_pages> out;
    for (const auto &kv : g_live) {
        const allocation &a = kv.second;
        if ((a.kind == MEM_DEVICE || a.kind == MEM_MANAGED) && a.map)
            out.push_back(mem_pages{a.map, (a.map_len - 4096) / 4096});
    }
    return out;
}

void prefetch(const void *p, const char *what)
{
    std::string why;
    if (device_range(p, 1, &why)) return;
    worker &w = current(what);
    fail(w, where(*w.cur) + format(": %s of %p, which is %s", what, p, why.c_str()));
}

} /* namespace slm_emu */

extern "C" int slm_emu_check_device_ptr(const void *p, size_t bytes, const char *what)
{
    return (int)slm_emu::set_error(slm_emu::check_device_range(p, bytes, "kernel argument", what));
}
