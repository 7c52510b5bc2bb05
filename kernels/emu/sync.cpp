/* The SIMT emulator's synchronising intrinsics: the block barrier and the warp
 * collectives by the PTX rules, and what a thread's exit does to them. */
#include "kernels/emu/fiber.h"

#include <algorithm>
#include <cstring>

namespace slm_emu {

const char *coll_name(int op)
{
    static const char *const names[] = {
        "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
        "__ballot_sync", "__any_sync", "__all_sync", "__match_any_sync", "__reduce_add_sync",
        "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync", "__reduce_max_sync",
        "__reduce_and_sync", "__reduce_or_sync", "__reduce_xor_sync"};
    return op >= 0 && op < (int)(sizeof names / sizeof names[0]) ? names[op] : "?";
}

const char *bar_name(int op)
{
    static const char *const names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or"};
    return names[op & 3];
}

/* Every live thread has arrived: the waiters run again with the barrier's result. */
static int release_barrier(worker &w)
{
    int r = w.bar_acc;
    for (unsigned i = 0; i < w.nthreads; i++)
        if (w.fibers[i].state == F_BAR) {
            w.fibers[i].state = F_RUN;
            w.fibers[i].result = (uint64_t)r;
        }
    w.bar_arrived = 0;
    return r;
}

void fiber_exit(worker &w, fiber &f)
{
    unsigned tid = tid_of(w, f), lane = tid & 31;
    warp &wp = w.warps[tid >> 5];
    wp.exited |= 1u << lane;
    w.ndone++;
    w.live--;
    for (int g = 0; g < wp.ngroups; g++)
        if (wp.group[g].mask & (1u << lane)) {
            fail(w, format("%s exited while lanes 0x%08x of its warp wait in %s (mask 0x%08x) at %s:%d",
                           where(f).c_str(), wp.group[g].arrived, coll_name(wp.group[g].op), wp.group[g].mask,
                           wp.group[g].file, wp.group[g].line));
            return;
        }
    if (w.bar_arrived == 0) return;
    if (g_opt.strict) {
        fail(w, format("%s exited while %u threads wait at %s at %s:%d (strict mode: every thread must reach "
                       "each __syncthreads)", where(f).c_str(), w.bar_arrived, bar_name(w.bar_op), w.bar_file, w.bar_line));
        return;
    }
    if (w.bar_arrived == w.live) release_barrier(w);
}

/* ---- block barrier ---- */

int block_barrier(int op, int pred, const char *file, int line)
{
    worker &w = current("__syncthreads");
    fiber &f = *w.cur;
    if (w.bar_arrived == 0) {
        w.bar_op = op;
        w.bar_file = file;
        w.bar_line = line;
        w.bar_acc = op == BAR_AND ? 1 : 0;
    } else if (w.bar_op != op || (g_opt.strict && (w.bar_line != line || (w.bar_file != file && strcmp(w.bar_file, file) != 0)))) {
        fail(w, format("%s reaches %s at %s:%d while %u threads wait at %s at %s:%d", where(f).c_str(), bar_name(op),
                       file, line, w.bar_arrived, bar_name(w.bar_op), w.bar_file, w.bar_line));
        f.state = F_BAR;
        yield(w, f, false);
    }
    if (op == BAR_COUNT) w.bar_acc += pred;
    else if (op == BAR_AND) w.bar_acc &= pred;
    else if (op == BAR_OR) w.bar_acc |= pred;
    if (++w.bar_arrived == w.live) return release_barrier(w);
    f.state = F_BAR;
    f.op = op;
    f.file = file;
    f.line = line;
    yield(w, f, false);
    return (int)f.result;
}

/* ---- warp collectives, by the PTX rules of shfl.sync, vote.sync, redux.sync ---- */

/* The lane whose value lane `lane` receives; -1 when width is not a power of two. */
static int shfl_source(int op, int lane, int b, int width)
{
    if (width < 1 || width > 32 || (width & (width - 1))) return -1;
    int segmask = 32 - width; /* the lane bits that select the segment */
    int bval = b & 31;
    int min_lane = lane & segmask, max_lane = min_lane | (31 & ~segmask);
    int j;
    bool ok;
    switch (op) {
    case COLL_SHFL_UP: j = lane - bval; ok = j >= min_lane; break;
    case COLL_SHFL_DOWN: j = lane + bval; ok = j <= max_lane; break;
    case COLL_SHFL_XOR: j = lane ^ bval; ok = j <= max_lane; break;
    default: j = min_lane | (bval & ~segmask); ok = true; break;
    }
    return ok ? j : lane;
}

static void complete_group(worker &w, unsigned wi, warp_group &g)
{
    warp &wp = w.warps[wi];
    unsigned m = g.mask;
    uint64_t all = 0;
    switch (g.op) {
    case COLL_BALLOT:
    case COLL_ANY:
    case COLL_ALL:
        for (int i = 0; i < 32; i++)
            if ((m >> i & 1) && wp.value[i]) all |= 1ull << i;
        if (g.op == COLL_ANY) all = all != 0;
        else if (g.op == COLL_ALL) all = all == m;
        break;
    case COLL_ADD: case COLL_MIN_U: case COLL_MAX_U: case COLL_MIN_I: case COLL_MAX_I:
    case COLL_AND: case COLL_OR: case COLL_XOR: {
        uint32_t acc = 0;
        bool first = true;
        for (int i = 0; i < 32; i++) {
            if (!(m >> i & 1)) continue;
            uint32_t v = (uint32_t)wp.value[i];
            if (first) { acc = v; first = false; continue; }
            switch (g.op) {
            case COLL_ADD: acc += v; break;
            case COLL_MIN_U: acc = std::min(acc, v); break;
            case COLL_MAX_U: acc = std::max(acc, v); break;
            case COLL_MIN_I: acc = (uint32_t)std::min((int32_t)acc, (int32_t)v); break;
            case COLL_MAX_I: acc = (uint32_t)std::max((int32_t)acc, (int32_t)v); break;
            case COLL_AND: acc &= v; break;
            case COLL_OR: acc |= v; break;
            default: acc ^= v; break;
            }
        }
        all = acc;
        break;
    }
    default: break;
    }
    for (int i = 0; i < 32; i++) {
        if (!(m >> i & 1)) continue;
        fiber &f = w.fibers[wi * 32 + i];
        uint64_t r = all;
        if (g.op >= COLL_SHFL_IDX && g.op <= COLL_SHFL_XOR) {
            int j = shfl_source(g.op, i, wp.b[i], wp.width[i]);
            if (j < 0) {
                fail(w, format("%s: width %d of %s at %s:%d is not a power of two in 1..32", where(f).c_str(),
                               wp.width[i], coll_name(g.op), g.file, g.line));
                return;
            }
            if (!(m >> j & 1)) {
                fail(w, format("%s: lane %d reads lane %d, which is not in the mask 0x%08x of %s at %s:%d",
                               where(f).c_str(), i, j, m, coll_name(g.op), g.file, g.line));
                return;
            }
            r = wp.value[j];
        } else if (g.op == COLL_MATCH_ANY) {
            r = 0;
            for (int k = 0; k < 32; k++)
                if ((m >> k & 1) && wp.value[k] == wp.value[i]) r |= 1ull << k;
        }
        f.result = r;
        if (f.state == F_WARP) f.state = F_RUN;
    }
}

uint64_t warp_collective(int op, unsigned mask, uint64_t value, int b, int width, const char *file, int line)
{
    worker &w = current(coll_name(op));
    fiber &f = *w.cur;
    unsigned tid = tid_of(w, f), lane = tid & 31, wi = tid >> 5;
    warp &wp = w.warps[wi];
    warp_group *g = nullptr;
    if (!(mask >> lane & 1))
        fail(w, format("%s calls %s at %s:%d with mask 0x%08x, which lacks its own lane %u", where(f).c_str(),
                       coll_name(op), file, line, mask, lane));
    else if (mask & wp.exited)
        fail(w, format("%s calls %s at %s:%d with mask 0x%08x, but lanes 0x%08x have exited or do not exist",
                       where(f).c_str(), coll_name(op), file, line, mask, mask & wp.exited));
    for (int k = 0; k < wp.ngroups && !w.failed; k++) {
        warp_group &p = wp.group[k];
        if (p.mask == mask && p.op == op) {
            g = &p;
            break;
        }
        /* A lane in the mask of a pending collective must join that one; other lanes of
         * the new mask may still be waiting elsewhere and join when that completes. */
        if (p.mask >> lane & 1)
            fail(w, format("%s calls %s (mask 0x%08x) at %s:%d while lanes 0x%08x wait in %s (mask 0x%08x) at %s:%d",
                           where(f).c_str(), coll_name(op), mask, file, line, p.arrived, coll_name(p.op), p.mask,
                           p.file, p.line));
    }
    if (w.failed) {
        f.state = F_WARP;
        yield(w, f, false);
    }
    if (!g) {
        g = &wp.group[wp.ngroups++];
        *g = warp_group{op, mask, 0, file, line};
    }
    wp.value[lane] = value;
    wp.b[lane] = b;
    wp.width[lane] = width;
    g->arrived |= 1u << lane;
    if (g->arrived == mask) {
        complete_group(w, wi, *g);
        *g = wp.group[--wp.ngroups];
        if (w.failed) {
            f.state = F_WARP;
            yield(w, f, false);
        }
        return f.result;
    }
    f.state = F_WARP;
    f.op = op;
    f.mask = mask;
    f.file = file;
    f.line = line;
    yield(w, f, false);
    return f.result;
}

void *dyn_shared(void) { return current("SLM_DYN_SHARED").dyn; }

} /* namespace slm_emu */
