/* Shared between the CUDA runtime stand-in and the cuBLAS / NCCL stand-ins. */
#ifndef SLM_EMU_RUNTIME_INTERNAL_H
#define SLM_EMU_RUNTIME_INTERNAL_H

#include "kernels/emu/emu_internal.h"

#include <functional>
#include <string>
#include <vector>

namespace slm_emu {

/* Queues fn on stream (or records it when the stream is being captured into a graph);
 * it runs at the next synchronisation that covers it, or at once with SLM_EMU_SYNC=1.
 * Returns the error of an immediate run, else cudaSuccess. */
cudaError_t submit(cudaStream_t stream, std::function<cudaError_t()> fn);

/* Runs every queued operation of the stream's device issued before now. */
cudaError_t drain_stream(cudaStream_t stream);

/* Checks that [p, p + bytes) lies in one live device or managed allocation; reports
 * `who`: `what` and returns cudaErrorInvalidValue otherwise. */
cudaError_t check_device_range(const void *p, size_t bytes, const char *who, const char *what);

/* The calling thread's device (cudaSetDevice), and how many are emulated (SLM_EMU_DEVICES). */
int current_device();
int device_count();
/* cudaErrorNoDevice (also as the last error) when no device is emulated, else cudaSuccess. */
cudaError_t need_device();
/* Runs everything queued on the device; returns the first error of a queued operation. */
cudaError_t drain_device(int dev);
/* drain_device, refused (and the capture broken) while a stream captures in global mode. */
cudaError_t sync_device(int dev);
/* Whether the stream records into a graph; invalidate_capture breaks that capture. */
bool stream_capturing(cudaStream_t stream);
void invalidate_capture(cudaStream_t stream);
/* Before a "potentially unsafe" call (`what`: cudaMalloc, cudaFree, a synchronous copy...): while
 * this thread captures a graph in global or thread-local mode a GPU refuses it and invalidates the
 * capture; so does this, with a report, returning `err` (cudaErrorStreamCaptureUnsupported, or
 * cudaErrorStreamCaptureImplicit for the legacy stream's synchronous copies). cudaSuccess
 * otherwise. */
cudaError_t capture_unsafe_call(const char *what, cudaError_t err);

/* Sets the calling thread's last error (cudaGetLastError) and returns err. */
cudaError_t set_error(cudaError_t err);

/* ---- memory (memory_emu.cpp) ---- */
enum mem_kind { MEM_DEVICE, MEM_PINNED, MEM_MANAGED, MEM_REGISTERED };

/* Allocates size bytes of `kind` for `device`; *out is NULL for size 0. */
cudaError_t mem_alloc(void **out, size_t size, int kind, int device);
/* Frees the allocation that starts at p if its kind is in `kinds` (bits 1 << mem_kind);
 * otherwise reports `who` and what p is, and returns cudaErrorInvalidValue. */
cudaError_t mem_free(void *p, unsigned kinds, const char *who);
/* Registers [p, p + size) as pinned host memory (cudaHostRegister). */
cudaError_t mem_register(void *p, size_t size);
/* The mem_kind of the live allocation holding [p, p + bytes); -1 for pageable host
 * memory, -2 for freed memory, -3 for a range that overruns its allocation; *why says so. */
int mem_classify(const void *p, size_t bytes, std::string *why);
size_t device_memory_limit();
size_t device_memory_used();

/* A copy of every live allocation's bytes, for the race check. */
struct snapshot_entry {
    char *base;
    size_t size;
    std::vector<char> bytes;
};
std::vector<snapshot_entry> mem_snapshot();
void mem_restore(const std::vector<snapshot_entry> &s);
/* Runs the launch under two schedules from the same memory; a difference is reported
 * as a race and returns cudaErrorLaunchFailure. */
cudaError_t run_grid_racecheck(const launch_desc &d);

/* The pages of every live device or managed allocation ([map, map + pages * 4096), the guard
 * page excluded), for the launch log's byte measurement (launch_log.cpp). */
struct mem_pages {
    char *map;
    size_t pages;
};
std::vector<mem_pages> mem_device_pages();

/* The launch log (launch_log.cpp), called around every grid a stream runs (graph replays
 * included): grid_begin protects the device pages when bytes are measured, grid_end restores
 * them and records the launch; it returns cudaErrorLaunchFailure, with a report, when a thread
 * of a programmatic dependent launch wrote a page before its slm_pdl_begin, or read one that an
 * earlier grid of its programmatic chain wrote (launch_log.cpp). */
void launch_log_grid_begin(const launch_desc &d);
cudaError_t launch_log_grid_end(const launch_desc &d);
/* A copy or memset ran on a stream: it started once every grid before it had finished, so the
 * pages the programmatic chain wrote may be read before the wait from now on. */
void launch_log_chain_break();

} /* namespace slm_emu */

#endif
