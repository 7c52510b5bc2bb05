/* The SIMT emulator's core: fibers, the block scheduler, barriers, warp collectives,
 * the worker pool. One worker per OS thread runs one block at a time: the block's
 * threads are fibers on that thread, switched by a hand-written x86-64 context switch
 * (ucontext's sigprocmask per switch is ~100x slower). A fiber never migrates between
 * OS threads: GCC may keep a thread_local's address across a call. */
#include "kernels/emu/fiber.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLM_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if __has_include(<valgrind/valgrind.h>)
#define SLM_EMU_VALGRIND 1
#include <valgrind/valgrind.h>
#endif

#if !defined(__x86_64__)
#error "the SIMT emulator's context switch is written for x86-64"
#endif

__thread uint3 threadIdx;   /* __thread: emu.h says why */
__thread uint3 blockIdx;
__thread uint3 blockDim;
__thread uint3 gridDim;

extern "C" void slm_emu_switch(void **save_sp, void *next_sp);
extern "C" void slm_emu_fiber_start(void);
extern "C" void slm_emu_fiber_main(void *arg);

/* slm_emu_switch saves the callee-saved registers on the current stack, stores the stack
 * pointer in *save_sp and resumes the stack next_sp the same way. A new fiber's stack is
 * laid out so that the pops load the fiber in rbx and `ret` enters slm_emu_fiber_start. */
asm(R"(
    .text
    .globl slm_emu_switch
    .hidden slm_emu_switch
    .type slm_emu_switch, @function
slm_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size slm_emu_switch, .-slm_emu_switch

    .globl slm_emu_fiber_start
    .hidden slm_emu_fiber_start
    .type slm_emu_fiber_start, @function
slm_emu_fiber_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %rbx, %rdi
    call slm_emu_fiber_main
    ud2
    .cfi_endproc
    .size slm_emu_fiber_start, .-slm_emu_fiber_start
)");

namespace slm_emu {

static thread_local std::unique_ptr<worker> tls_owner;
thread_local worker *tls_worker;

worker::~worker()
{
    free_stacks();
    free(dyn);
}

void worker::free_stacks()
{
#ifdef SLM_EMU_VALGRIND
    for (unsigned id : vg_ids) VALGRIND_STACK_DEREGISTER(id);
#endif
    vg_ids.clear();
#ifdef SLM_EMU_ASAN
    if (stacks) ASAN_UNPOISON_MEMORY_REGION(stacks, stacks_len); /* the shadow outlives the mapping */
#endif
    if (stacks) munmap(stacks, stacks_len);
    stacks = nullptr;
    stacks_len = 0;
}

/* ---- knobs and reports ---- */

slm_emu_options g_opt;
static std::once_flag g_opt_once;
static std::mutex g_report_mutex;
static std::string g_report;

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
}

static void init_options()
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef SLM_EMU_ASAN
    long stack_kb = 64;
#else
    long stack_kb = 16;
#endif
    g_opt.workers = (int)std::max(1L, env_long("SLM_EMU_WORKERS", cpus > 0 ? cpus : 1));
    g_opt.strict = env_long("SLM_EMU_STRICT", 1) != 0;
    g_opt.racecheck = env_long("SLM_EMU_RACECHECK", 0) != 0;
    g_opt.poison = env_long("SLM_EMU_POISON", 1) != 0;
    g_opt.sync = env_long("SLM_EMU_SYNC", 0) != 0;
    g_opt.quiet = env_long("SLM_EMU_QUIET", 0) != 0;
    g_opt.refuse_pdl = env_long("SLM_EMU_REFUSE_PDL", 0) != 0;
    g_opt.stack_bytes = (size_t)std::max(8L, env_long("SLM_EMU_STACK_KB", stack_kb)) * 1024;
}

const slm_emu_options &options()
{
    std::call_once(g_opt_once, init_options);
    return g_opt;
}

std::string format(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

void report(const std::string &text)
{
    std::lock_guard<std::mutex> lock(g_report_mutex);
    g_report = text;
    if (!options().quiet) fprintf(stderr, "slm_emu: %s\n", text.c_str());
}

/* ---- fibers ---- */

static const size_t page = 4096;

static void ensure_fibers(worker &w, unsigned n)
{
    size_t sb = (options().stack_bytes + page - 1) / page * page;
    if (w.fibers.size() >= n && w.stack_bytes == sb) return;
    w.free_stacks();
    unsigned cap = (n + 31) / 32 * 32;
    size_t len = (size_t)cap * (sb + page);
    void *base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        fprintf(stderr, "slm_emu: cannot map %zu bytes of fiber stacks\n", len);
        abort();
    }
    w.stacks = (char *)base;
    w.stacks_len = len;
    w.stack_bytes = sb;
    w.fibers.assign(cap, fiber{});
    for (unsigned i = 0; i < cap; i++) {
        char *guard = w.stacks + (size_t)i * (sb + page);
        mprotect(guard, page, PROT_NONE);
        w.fibers[i].stack = guard + page;
#ifdef SLM_EMU_VALGRIND
        w.vg_ids.push_back(VALGRIND_STACK_REGISTER(guard + page, guard + page + sb));
#endif
    }
}

static void fresh_frame(worker &w, fiber &f)
{
    uint64_t *sp = (uint64_t *)(((uintptr_t)f.stack + w.stack_bytes) & ~(uintptr_t)15);
#ifdef SLM_EMU_ASAN
    /* The frames of slm_emu_fiber_main and its last yield never return, so their redzones
     * stay poisoned at the top of the stack; the kernel's own frames below unpoison as they
     * return (abandoned blocks are unpoisoned whole in run_block). */
    ASAN_UNPOISON_MEMORY_REGION((char *)sp - 2048, 2048);
#endif
    *--sp = 0;
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)slm_emu_fiber_start; /* ret lands here with rsp 16-aligned */
    *--sp = 0;                                       /* rbp */
    *--sp = (uint64_t)(uintptr_t)&f;                 /* rbx: the fiber */
    for (int i = 0; i < 4; i++) *--sp = 0;           /* r12..r15 */
    f.sp = sp;
}

/* Picks the next runnable fiber after `last` in the schedule's direction, or -1. */
static int pick(const worker &w, int last)
{
    int n = (int)w.nthreads, i = last;
    if (w.sched == SCHED_FORWARD) {
        for (int k = 0; k < n; k++) {
            if (++i == n) i = 0;
            if (w.fibers[i].state == F_RUN) return i;
        }
    } else {
        for (int k = 0; k < n; k++) {
            if (--i < 0) i = n - 1;
            if (w.fibers[i].state == F_RUN) return i;
        }
    }
    return -1;
}

static void switch_to_fiber(worker &w, fiber &f)
{
    threadIdx = f.idx;
    w.cur = &f;
    w.from_sched = true;
#ifdef SLM_EMU_ASAN
    __sanitizer_start_switch_fiber(&w.sched_fake, f.stack, w.stack_bytes);
#endif
    slm_emu_switch(&w.sched_sp, f.sp);
#ifdef SLM_EMU_ASAN
    __sanitizer_finish_switch_fiber(w.sched_fake, nullptr, nullptr);
#endif
    w.cur = nullptr;
}

/* In a fiber that has just been switched to: completes ASan's switch, learning the OS
 * thread's own stack when the switch came from the scheduler. */
static void arrived_on_fiber(worker &w, void *fake)
{
#ifdef SLM_EMU_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    if (w.from_sched) {
        w.sched_bottom = bottom;
        w.sched_size = size;
    }
#else
    (void)w, (void)fake;
#endif
}

/* Leaves fiber f, which waits or has exited, for the next runnable fiber of the block, or
 * for the scheduler when there is none (the block is done or deadlocked) or it failed.
 * Switching fiber to fiber halves the switches of a barrier. */
void yield(worker &w, fiber &f, bool exiting)
{
    int next = w.failed ? -1 : pick(w, (int)(&f - w.fibers.data()));
#ifdef SLM_EMU_ASAN
    void **fake = exiting ? nullptr : &f.asan_fake;
#else
    (void)exiting;
#endif
    if (next >= 0) {
        fiber &n = w.fibers[next];
        threadIdx = n.idx;
        w.cur = &n;
        w.from_sched = false;
#ifdef SLM_EMU_ASAN
        __sanitizer_start_switch_fiber(fake, n.stack, w.stack_bytes);
#endif
        slm_emu_switch(&f.sp, n.sp);
    } else {
#ifdef SLM_EMU_ASAN
        __sanitizer_start_switch_fiber(fake, w.sched_bottom, w.sched_size);
#endif
        slm_emu_switch(&f.sp, w.sched_sp);
    }
    arrived_on_fiber(w, f.asan_fake);
}

worker &current(const char *what)
{
    worker *w = tls_worker;
    if (!w || !w->cur) {
        fprintf(stderr, "slm_emu: %s called outside a kernel\n", what);
        abort();
    }
    return *w;
}

std::string where(const fiber &f)
{
    return format("thread (%u,%u,%u) of block (%u,%u,%u)", f.idx.x, f.idx.y, f.idx.z,
                  blockIdx.x, blockIdx.y, blockIdx.z);
}

void pdl_wait(void)
{
    current("slm_pdl_begin").cur->pdl_waited = true;
}

bool pdl_before_wait(void)
{
    const worker *w = tls_worker;
    return w && w->cur && w->desc && w->desc->pdl && !w->cur->pdl_waited;
}

/* Marks the launch failed; the scheduler abandons the block at the next switch. */
void fail(worker &w, const std::string &why)
{
    if (!w.failed) {
        w.failed = true;
        w.error = format("kernel %s: ", w.desc->name) + why;
    }
}

} /* namespace slm_emu */

using namespace slm_emu;

extern "C" void slm_emu_fiber_main(void *arg)
{
    fiber &f = *(fiber *)arg;
    worker &w = *tls_worker;
    arrived_on_fiber(w, nullptr);
    w.desc->body();
    if (w.desc->pdl && !f.pdl_waited)
        fail(w, where(f) + " ended without calling slm_pdl_begin (griddepcontrol.wait), though launched as a "
                           "programmatic dependent launch: on a GPU it may overlap the grid before it");
    fiber_exit(w, f);
    f.state = F_DONE;
    yield(w, f, true);
    abort(); /* a finished fiber is never resumed */
}

namespace slm_emu {

/* ---- blocks ---- */

static std::string describe_wait(const worker &w, const fiber &f)
{
    if (f.state == F_BAR) return format("%s at %s:%d", bar_name(f.op), f.file, f.line);
    unsigned wi = tid_of(w, f) >> 5;
    const warp &wp = w.warps[wi];
    unsigned arrived = 0;
    for (int k = 0; k < wp.ngroups; k++)
        if (wp.group[k].mask == f.mask && wp.group[k].op == f.op) arrived = wp.group[k].arrived;
    return format("%s mask 0x%08x at %s:%d (lanes arrived 0x%08x)", coll_name(f.op), f.mask, f.file, f.line, arrived);
}

static std::string deadlock_report(const worker &w)
{
    const launch_desc &d = *w.desc;
    std::string s = format("deadlock in kernel %s, block (%u,%u,%u) of grid (%u,%u,%u), block (%u,%u,%u): no thread can "
                           "run, %u have exited; the others wait:",
                           d.name, blockIdx.x, blockIdx.y, blockIdx.z, d.grid.x, d.grid.y, d.grid.z, d.block.x,
                           d.block.y, d.block.z, w.ndone);
    unsigned i = 0;
    while (i < w.nthreads) {
        if (w.fibers[i].state == F_DONE) { i++; continue; }
        std::string what = describe_wait(w, w.fibers[i]);
        unsigned j = i + 1;
        while (j < w.nthreads && w.fibers[j].state != F_DONE && describe_wait(w, w.fibers[j]) == what) j++;
        s += format("\n  threads %u-%u (warp %u lanes %u-%u%s): ", i, j - 1, i / 32, i % 32, (j - 1) % 32,
                    (j - 1) / 32 != i / 32 ? " of a later warp" : "");
        s += what;
        i = j;
    }
    return s;
}

static bool run_block(worker &w, uint3 bidx)
{
    const launch_desc &d = *w.desc;
    blockIdx = bidx;
    unsigned n = w.nthreads;
    for (unsigned t = 0; t < n; t++) {
        fiber &f = w.fibers[t];
        f.state = F_RUN;
        f.pdl_waited = false;
        f.idx = uint3{t % d.block.x, t / d.block.x % d.block.y, t / (d.block.x * d.block.y)};
        fresh_frame(w, f);
    }
    for (size_t k = 0; k < w.warps.size(); k++) {
        w.warps[k].ngroups = 0;
        unsigned lanes = std::min(32u, n - (unsigned)k * 32);
        w.warps[k].exited = lanes == 32 ? 0 : ~((1u << lanes) - 1);
    }
    w.bar_arrived = 0;
    w.live = n;
    w.ndone = 0;
    if (w.dyn && g_opt.poison) memset(w.dyn, 0xff, d.smem);
    int last = w.sched == SCHED_FORWARD ? (int)n - 1 : 0;
    for (;;) {
        int next = pick(w, last);
        if (next < 0) {
            if (w.ndone == n) return true;
            fail(w, "");
            w.error = deadlock_report(w);
            break;
        }
        switch_to_fiber(w, w.fibers[next]);
        last = next;
        if (w.failed) break;
    }
#ifdef SLM_EMU_ASAN
    /* Abandoned stacks keep the poison of their live frames. */
    for (unsigned t = 0; t < n; t++)
        if (w.fibers[t].state != F_DONE) ASAN_UNPOISON_MEMORY_REGION(w.fibers[t].stack, w.stack_bytes);
#endif
    return false;
}

/* ---- grids and the worker pool ---- */

struct job {
    const launch_desc *d;
    int sched;
    uint64_t total;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex m;
    std::string error;
};

static worker &this_worker()
{
    if (!tls_owner) {
        tls_owner.reset(new worker);
        tls_worker = tls_owner.get();
    }
    return *tls_worker;
}

static void participate(job &j)
{
    worker &w = this_worker();
    const launch_desc &d = *j.d;
    w.desc = j.d;
    w.sched = j.sched;
    w.failed = false;
    w.nthreads = d.block.x * d.block.y * d.block.z;
    ensure_fibers(w, w.nthreads);
    w.warps.resize((w.nthreads + 31) / 32);
    if (d.smem != w.dyn_bytes) {
        free(w.dyn);
        w.dyn = d.smem ? malloc(d.smem) : nullptr;
        w.dyn_bytes = d.smem;
    }
    blockDim = uint3{d.block.x, d.block.y, d.block.z};
    gridDim = uint3{d.grid.x, d.grid.y, d.grid.z};
    for (;;) {
        uint64_t b = j.next.fetch_add(1, std::memory_order_relaxed);
        if (b >= j.total || j.failed.load(std::memory_order_relaxed)) break;
        if (j.sched == SCHED_REVERSE) b = j.total - 1 - b;
        uint3 bi{(unsigned)(b % d.grid.x), (unsigned)(b / d.grid.x % d.grid.y), (unsigned)(b / ((uint64_t)d.grid.x * d.grid.y))};
        if (!run_block(w, bi)) {
            std::lock_guard<std::mutex> lock(j.m);
            if (!j.failed.exchange(true)) j.error = w.error;
            break;
        }
    }
    w.desc = nullptr;
}

struct pool {
    std::mutex launch_mutex; /* one pooled launch at a time; others run on their own thread */
    std::mutex m;
    std::condition_variable cv_work, cv_done;
    std::vector<std::thread> threads;
    job *cur = nullptr;
    uint64_t seq = 0;
    int running = 0;
    bool quit = false;

    void loop()
    {
        uint64_t seen = 0;
        for (;;) {
            job *j;
            {
                std::unique_lock<std::mutex> lock(m);
                cv_work.wait(lock, [&] { return quit || seq != seen; });
                if (quit) return;
                seen = seq;
                j = cur;
            }
            participate(*j);
            std::lock_guard<std::mutex> lock(m);
            if (--running == 0) cv_done.notify_all();
        }
    }
    void resize(int n)
    {
        if ((int)threads.size() == n) return;
        stop();
        quit = false;
        for (int i = 0; i < n; i++) threads.emplace_back([this] { loop(); });
    }
    void stop()
    {
        {
            std::lock_guard<std::mutex> lock(m);
            quit = true;
        }
        cv_work.notify_all();
        for (auto &t : threads) t.join();
        threads.clear();
    }
    ~pool() { stop(); }
};

static pool g_pool;

cudaError_t run_grid(const launch_desc &d, int sched, bool serial)
{
    options(); /* the hot paths read g_opt directly from here on */
    job j;
    j.d = &d;
    j.sched = sched;
    j.total = (uint64_t)d.grid.x * d.grid.y * d.grid.z;
    int workers = options().workers;
    std::unique_lock<std::mutex> pooled(g_pool.launch_mutex, std::defer_lock);
    if (!serial && workers > 1 && j.total > 1 && !launch_log_serial() && pooled.try_lock()) {
        g_pool.resize(workers - 1);
        {
            std::lock_guard<std::mutex> lock(g_pool.m);
            g_pool.cur = &j;
            g_pool.running = (int)g_pool.threads.size();
            g_pool.seq++;
        }
        g_pool.cv_work.notify_all();
        participate(j);
        std::unique_lock<std::mutex> lock(g_pool.m);
        g_pool.cv_done.wait(lock, [] { return g_pool.running == 0; });
        g_pool.cur = nullptr;
    } else {
        participate(j);
    }
    if (!j.failed) return cudaSuccess;
    report(j.error);
    return cudaErrorLaunchFailure;
}

} /* namespace slm_emu */

extern "C" void slm_emu_get_options(struct slm_emu_options *opt) { *opt = options(); }

extern "C" void slm_emu_set_options(const struct slm_emu_options *opt)
{
    options();
    slm_emu_options o = *opt;
    if (o.workers <= 0) o.workers = g_opt.workers;
    if (o.stack_bytes == 0) o.stack_bytes = g_opt.stack_bytes;
    g_opt = o;
}

extern "C" const char *slm_emu_last_report(void)
{
    std::lock_guard<std::mutex> lock(g_report_mutex);
    return g_report.c_str();
}

extern "C" void slm_emu_clear_report(void)
{
    std::lock_guard<std::mutex> lock(g_report_mutex);
    g_report.clear();
}

extern "C" int slm_emu_active(void)
{
    return 1;
}
