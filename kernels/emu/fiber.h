/* The SIMT emulator's fibers and workers, shared by its scheduler (emu.cpp) and its
 * synchronising intrinsics (sync.cpp). Not for kernels. */
#ifndef SLM_EMU_FIBER_H
#define SLM_EMU_FIBER_H

#include "kernels/emu/emu_internal.h"

#include <string>
#include <vector>

namespace slm_emu {

enum fiber_state { F_RUN, F_BAR, F_WARP, F_DONE };

struct fiber {
    void *sp;        /* saved stack pointer while switched out */
    char *stack;     /* lowest address of the stack (the guard page is below) */
    uint3 idx;       /* threadIdx */
    int state;       /* fiber_state */
    int op;          /* what it waits in: coll_op or bar_op */
    unsigned mask;   /* the collective's mask */
    const char *file; /* where it waits */
    int line;
    uint64_t result; /* the collective's result for this thread */
    void *asan_fake;
    bool pdl_waited; /* has called slm_pdl_begin (a programmatic dependent launch's wait) */
};

struct warp_group {
    int op;
    unsigned mask, arrived;
    const char *file;
    int line;
};

struct warp {
    uint64_t value[32];
    int b[32], width[32];
    warp_group group[32]; /* pending collectives, at most one per lane */
    int ngroups;
    unsigned exited;      /* lanes that have exited, or do not exist */
};

struct worker {
    std::vector<fiber> fibers;
    char *stacks = nullptr;
    size_t stacks_len = 0, stack_bytes = 0;
    std::vector<unsigned> vg_ids;
    std::vector<warp> warps;
    unsigned nthreads = 0, live = 0, ndone = 0;
    /* the block barrier */
    unsigned bar_arrived = 0;
    int bar_op = 0, bar_acc = 0, bar_line = 0;
    const char *bar_file = nullptr;
    /* the running block */
    const launch_desc *desc = nullptr;
    fiber *cur = nullptr;
    void *sched_sp = nullptr;
    int sched = SCHED_FORWARD;
    void *dyn = nullptr;
    size_t dyn_bytes = 0;
    bool failed = false;
    std::string error;
    bool from_sched = false; /* the last switch into a fiber came from the scheduler */
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    void *sched_fake = nullptr;

    ~worker();
    void free_stacks();
};

/* The worker of this OS thread, while it runs a block. */
extern thread_local worker *tls_worker;
/* The knobs; read directly on hot paths once run_grid has called options(). */
extern slm_emu_options g_opt;

static inline unsigned tid_of(const worker &w, const fiber &f) { return (unsigned)(&f - w.fibers.data()); }

/* The running worker; aborts when called outside a kernel (`what` names the caller). */
worker &current(const char *what);
/* "thread (x,y,z) of block (x,y,z)" for reports. */
std::string where(const fiber &f);
/* Marks the launch failed; the block is abandoned at the next switch. */
void fail(worker &w, const std::string &why);
/* Leaves f, which waits (state set) or has exited, for the next runnable fiber of the block,
 * or for the scheduler when none can run or the block failed. */
void yield(worker &w, fiber &f, bool exiting);
/* Books the exit of f: barriers and warp collectives it leaves pending. */
void fiber_exit(worker &w, fiber &f);
const char *coll_name(int op);
const char *bar_name(int op);

} /* namespace slm_emu */

#endif
