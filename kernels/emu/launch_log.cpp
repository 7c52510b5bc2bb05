/* kernels/emu/launch_log.cpp - the launch log of emu_api.h: every grid a stream runs, with its
 * shape and, in mode 2, the device memory it touched, measured by page faults: before the grid
 * every page of every live device allocation is made inaccessible (PROT_NONE); a fault on a
 * page counts it as touched and makes it readable; a second fault (a write) counts it as
 * written and makes it writable. After the grid every page is read-write again. The grid runs
 * on the launching thread alone meanwhile, so the handler races with no other fiber.
 *
 * Before its slm_pdl_begin a thread of a programmatic dependent launch may read only what the
 * grids before it in its programmatic chain did not write: the chain is the run of programmatic
 * launches since the stream's last copy, memset or plain launch (each of which starts only once
 * everything before it is done, so what was written before it is complete and visible to every
 * grid after it; a grid of the chain may still be running when the next one starts). The pages
 * the chain's grids wrote are kept; a thread's fault before its wait on one of them (a read of
 * what may still be being written), or a write fault before its wait (the grid before may still
 * read the page), fails the grid. A first read of any other page before the wait is counted
 * (reads_before_wait) and allowed. */
#include "kernels/emu/runtime_internal.h"
#include "kernels/emu/emu_api.h"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

#include <sys/mman.h>

namespace slm_emu {

namespace {

struct tracked {
    uintptr_t lo, hi;         /* [map, map + pages * 4096) */
    std::vector<unsigned char> state;   /* per page: 0 untouched, 1 touched, 2 written */
};

std::mutex g_log_mutex;
int g_mode;                   /* 0, 1, 2 (see slm_emu_launch_log) */
std::vector<slm_emu_launch_record> g_records;
std::vector<slm_emu_launch_record> g_view;   /* what slm_emu_launch_log_get hands out */

/* The grid being measured (the handler reads them; set before the pages are protected). */
std::vector<tracked> g_tracked;
volatile sig_atomic_t g_measuring;
long long g_early;            /* forbidden faults before slm_pdl_begin in this grid, and the first one's address */
uintptr_t g_early_addr;
bool g_early_write;           /* the first forbidden fault was a write (else a read of a chain-written page) */
long long g_early_reads;      /* allowed first reads before slm_pdl_begin */
/* The pages the current programmatic chain's grids wrote (read in the handler, changed only
 * between grids). */
std::unordered_set<uintptr_t> g_chain;
struct sigaction g_old_segv;
bool g_handler_installed;
thread_local std::vector<char> tls_altstack;   /* the fault may come on a fiber's small stack */

void on_fault(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    if (g_measuring) {
        auto it = std::upper_bound(g_tracked.begin(), g_tracked.end(), a,
                                   [](uintptr_t v, const tracked &t) { return v < t.lo; });
        if (it != g_tracked.begin() && a < (--it)->hi) {
            size_t page = (a - it->lo) / 4096;
            void *p = (void *)(it->lo + page * 4096);
            if (pdl_before_wait()) {
                /* state 0: a first access, taken as a read (a write faults again); state 1: a write */
                const bool write = it->state[page] != 0;
                if (write || g_chain.count((uintptr_t)p)) {
                    if (g_early++ == 0) g_early_addr = a, g_early_write = write;
                } else {
                    g_early_reads++;
                }
            }
            if (it->state[page] == 0) {
                it->state[page] = 1;
                mprotect(p, 4096, PROT_READ);
            } else {
                it->state[page] = 2;
                mprotect(p, 4096, PROT_READ | PROT_WRITE);
            }
            return;
        }
    }
    /* Not ours: whoever handled faults before takes it; with no one, the default action
     * kills the process when the access faults again on return. */
    if ((g_old_segv.sa_flags & SA_SIGINFO) && g_old_segv.sa_sigaction) {
        g_old_segv.sa_sigaction(sig, si, ctx);
    } else if (g_old_segv.sa_handler != SIG_DFL && g_old_segv.sa_handler != SIG_IGN) {
        g_old_segv.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL);
        g_handler_installed = false;
    }
}

bool measuring_bytes()
{
#if defined(__SANITIZE_ADDRESS__)
    return false;
#else
    return g_mode == 2;
#endif
}

void install_handler()
{
    if (tls_altstack.empty()) {
        tls_altstack.resize(64 * 1024);
        stack_t ss{};
        ss.ss_sp = tls_altstack.data();
        ss.ss_size = tls_altstack.size();
        sigaltstack(&ss, nullptr);
    }
    if (g_handler_installed) return;
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    g_handler_installed = true;
}

} /* namespace */

bool launch_log_serial() { return measuring_bytes(); }

void launch_log_chain_break()
{
    if (measuring_bytes() && !g_chain.empty()) g_chain.clear();
}

void launch_log_grid_begin(const launch_desc &d)
{
    if (!measuring_bytes()) return;
    if (!d.pdl) g_chain.clear();   /* a plain launch starts once everything before it is done */
    install_handler();
    g_tracked.clear();
    for (const mem_pages &m : mem_device_pages())
        g_tracked.push_back(tracked{(uintptr_t)m.map, (uintptr_t)m.map + m.pages * 4096,
                                    std::vector<unsigned char>(m.pages, 0)});
    std::sort(g_tracked.begin(), g_tracked.end(), [](const tracked &x, const tracked &y) { return x.lo < y.lo; });
    g_early = g_early_reads = 0;
    g_early_addr = 0;
    g_early_write = false;
    g_measuring = 1;
    for (const tracked &t : g_tracked) mprotect((void *)t.lo, t.hi - t.lo, PROT_NONE);
}

cudaError_t launch_log_grid_end(const launch_desc &d)
{
    if (!g_mode) return cudaSuccess;
    slm_emu_launch_record r{};
    r.name = d.name;
    r.grid[0] = d.grid.x, r.grid[1] = d.grid.y, r.grid[2] = d.grid.z;
    r.block[0] = d.block.x, r.block[1] = d.block.y, r.block[2] = d.block.z;
    r.smem = d.smem;
    r.pdl = d.pdl;
    r.bytes_touched = r.bytes_written = r.faults_before_wait = r.reads_before_wait = -1;
    if (measuring_bytes() && g_measuring) {
        for (const tracked &t : g_tracked) mprotect((void *)t.lo, t.hi - t.lo, PROT_READ | PROT_WRITE);
        g_measuring = 0;
        long long touched = 0, written = 0;
        for (const tracked &t : g_tracked)
            for (size_t page = 0; page < t.state.size(); page++) {
                touched += t.state[page] != 0, written += t.state[page] == 2;
                if (t.state[page] == 2) g_chain.insert(t.lo + page * 4096);
            }
        r.bytes_touched = touched * 4096;
        r.bytes_written = written * 4096;
        r.faults_before_wait = g_early;
        r.reads_before_wait = g_early_reads;
    }
    {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        g_records.push_back(r);
    }
    if (r.faults_before_wait <= 0) return cudaSuccess;
    report(format("kernel %s: a thread %s device memory at %p before slm_pdl_begin (%lld such page faults), "
                  "though launched as a programmatic dependent launch: on a GPU that access may race "
                  "with the grid before it",
                  d.name, g_early_write ? "wrote" : "read what an earlier grid of its programmatic chain wrote in",
                  (void *)g_early_addr, r.faults_before_wait));
    return cudaErrorLaunchFailure;
}

} /* namespace slm_emu */

extern "C" void slm_emu_launch_log(int mode)
{
    std::lock_guard<std::mutex> lock(slm_emu::g_log_mutex);
    slm_emu::g_mode = mode < 0 || mode > 2 ? 0 : mode;
    if (mode) slm_emu::g_records.clear();
    slm_emu::g_chain.clear();   /* pages written while nothing was watched are not known */
}

extern "C" size_t slm_emu_launch_log_get(const struct slm_emu_launch_record **records)
{
    std::lock_guard<std::mutex> lock(slm_emu::g_log_mutex);
    slm_emu::g_view = slm_emu::g_records;
    *records = slm_emu::g_view.data();
    return slm_emu::g_view.size();
}
