/* The CUDA runtime stand-in: the subset of cuda_runtime_api.h the backend calls, with
 * CUDA's own declarations (the real header), so host code compiles unchanged.
 *
 * Streams are queues: a launch, async copy or memset runs at the next synchronisation
 * that covers it (stream, event, device, a synchronous copy), in issue order, which is a
 * valid CUDA schedule. So host code that reads a result without synchronising sees stale
 * memory here too. A stream under capture records into a graph instead. */
#include "kernels/emu/runtime_internal.h"

#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

struct CUstream_st {
    int device;
    unsigned flags;
    uint64_t last_seq;          /* the last operation issued to it */
    struct CUgraph_st *capture; /* the graph being captured, or NULL */
    cudaStreamCaptureMode mode;
    bool invalidated;
};

struct CUevent_st {
    int device;
    unsigned flags;
    uint64_t seq; /* 0: never recorded */
    bool done;
    double ms;
};

struct CUgraph_st {
    std::vector<std::function<cudaError_t()>> nodes;
};

struct CUgraphExec_st {
    std::vector<std::function<cudaError_t()>> nodes;
};

namespace slm_emu {

struct queued_op {
    uint64_t seq;
    std::function<cudaError_t()> fn;
};

struct device {
    std::mutex m; /* the queue */
    std::deque<queued_op> queue;
    uint64_t next_seq = 1;
    std::recursive_mutex drain_mutex; /* one drainer at a time keeps issue order */
    cudaError_t pending = cudaSuccess; /* the first error of a queued operation */
    CUstream_st legacy{};
    std::vector<CUstream_st *> capturing;
};

/* Shared memory a block may have. The default limit counts a kernel's static and dynamic shared
 * memory together; the emulator does not know the static part (`__shared__` is thread_local
 * storage here), so it takes every kernel to have up to SHARED_STATIC_RESERVE of it, the most
 * kernels/cuda allows itself (SLM_CUDA_STATIC_SHARED_MAX, checked against the compiler's report by
 * tests/test_cuda_resources.sh): a launch of more dynamic memory than the default less that must
 * follow the kernel's opt-in (cudaFuncSetAttribute, cudaFuncAttributeMaxDynamicSharedMemorySize)
 * to at least as much, and an opt-in is at most the H100's per-block maximum less it. */
static const size_t SHARED_DEFAULT = 49152, SHARED_OPTIN_MAX = 232448, SHARED_STATIC_RESERVE = 12288;
static std::mutex g_optin_mutex;
static std::unordered_map<const void *, size_t> g_optin;   /* kernel -> its MaxDynamicSharedMemorySize */

static thread_local cudaError_t tls_last_error = cudaSuccess;
/* The captures this thread began in global or thread-local mode: while one is open the thread is
 * "prohibited from potentially unsafe API calls" (cudaStreamBeginCapture's documentation). */
static thread_local std::vector<CUstream_st *> tls_strict_captures;
static thread_local int tls_device = 0;

int current_device() { return tls_device; }

int device_count()
{
    static int n = [] {
        const char *s = getenv("SLM_EMU_DEVICES");
        long v = s && *s ? strtol(s, nullptr, 10) : 1;
        return (int)(v < 0 ? 0 : v > 16 ? 16 : v);
    }();
    return n;
}

static device *devices()
{
    static std::unique_ptr<device[]> d = [] {
        std::unique_ptr<device[]> p(new device[16]);
        for (int i = 0; i < 16; i++) p[i].legacy.device = i;
        return p;
    }();
    return d.get();
}

cudaError_t set_error(cudaError_t err)
{
    if (err != cudaSuccess) tls_last_error = err;
    return err;
}

static CUstream_st *resolve(cudaStream_t s)
{
    if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return &devices()[tls_device].legacy;
    return s;
}

static bool is_legacy(const CUstream_st *s) { return s == &devices()[s->device].legacy; }

static cudaError_t run_queued(device &d, uint64_t upto)
{
    std::lock_guard<std::recursive_mutex> drain(d.drain_mutex);
    size_t skipped = 0;
    for (;;) {
        queued_op op;
        {
            std::lock_guard<std::mutex> lock(d.m);
            if (d.queue.empty() || d.queue.front().seq > upto) break;
            op = std::move(d.queue.front());
            d.queue.pop_front();
        }
        /* After a failed operation the rest of the queue is dropped: on a GPU a faulting
         * kernel leaves the context unusable, and later work would touch bad memory. */
        if (d.pending != cudaSuccess) {
            skipped++;
            continue;
        }
        d.pending = op.fn();
    }
    if (skipped && !options().quiet) fprintf(stderr, "slm_emu: %zu queued operations skipped after that failure\n", skipped);
    cudaError_t err = d.pending;
    d.pending = cudaSuccess;
    return set_error(err);
}

cudaError_t drain_stream(cudaStream_t stream)
{
    CUstream_st *s = resolve(stream);
    return run_queued(devices()[s->device], s->last_seq);
}

/* A legacy-stream operation while another stream captures in global mode breaks that
 * capture, as on a GPU. */
static cudaError_t check_no_global_capture(device &d)
{
    std::lock_guard<std::mutex> lock(d.m);
    for (CUstream_st *c : d.capturing)
        if (c->mode == cudaStreamCaptureModeGlobal) {
            c->invalidated = true;
            report("a synchronous operation or the legacy stream was used while a stream captures a graph");
            return cudaErrorStreamCaptureImplicit;
        }
    return cudaSuccess;
}

cudaError_t submit(cudaStream_t stream, std::function<cudaError_t()> fn)
{
    CUstream_st *s = resolve(stream);
    device &d = devices()[s->device];
    if (s->capture) {
        s->capture->nodes.push_back(std::move(fn));
        return cudaSuccess;
    }
    if (is_legacy(s)) {
        cudaError_t err = check_no_global_capture(d);
        if (err != cudaSuccess) return set_error(err);
    }
    uint64_t seq;
    {
        std::lock_guard<std::mutex> lock(d.m);
        seq = d.next_seq++;
        d.queue.push_back(queued_op{seq, std::move(fn)});
        s->last_seq = seq;
    }
    if (options().sync) return run_queued(d, seq);
    return cudaSuccess;
}

cudaError_t drain_device(int dev) { return run_queued(devices()[dev], UINT64_MAX); }

bool stream_capturing(cudaStream_t stream) { return resolve(stream)->capture != nullptr; }

cudaError_t capture_unsafe_call(const char *what, cudaError_t err)
{
    if (tls_strict_captures.empty()) return cudaSuccess;
    for (CUstream_st *s : tls_strict_captures) s->invalidated = true;
    report(format("%s while this thread captures a graph (stream capture in %s mode): a GPU refuses the call "
                  "and invalidates the capture (allocate, free and synchronise before cudaStreamBeginCapture)",
                  what, tls_strict_captures.back()->mode == cudaStreamCaptureModeGlobal ? "global" : "thread-local"));
    return err;
}

void invalidate_capture(cudaStream_t stream) { resolve(stream)->invalidated = true; }

cudaError_t sync_device(int dev)
{
    device &d = devices()[dev];
    cudaError_t err = check_no_global_capture(d);
    if (err != cudaSuccess) return set_error(err);
    return run_queued(d, UINT64_MAX);
}

cudaError_t need_device()
{
    return set_error(device_count() > 0 ? cudaSuccess : cudaErrorNoDevice);
}

/* ---- launches ---- */

void launch_queue(launch_desc desc, cudaStream_t stream)
{
    if (need_device() != cudaSuccess) return;
    uint64_t threads = (uint64_t)desc.block.x * desc.block.y * desc.block.z;
    if (threads == 0 || threads > 1024 || desc.block.z > 64 || desc.grid.x == 0 || desc.grid.y == 0 ||
        desc.grid.z == 0 || desc.grid.x > 2147483647u || desc.grid.y > 65535 || desc.grid.z > 65535) {
        report(format("launch of %s: bad configuration grid (%u,%u,%u) block (%u,%u,%u)", desc.name, desc.grid.x,
                      desc.grid.y, desc.grid.z, desc.block.x, desc.block.y, desc.block.z));
        set_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (desc.smem > SHARED_OPTIN_MAX - SHARED_STATIC_RESERVE) {
        report(format("launch of %s: %zu bytes of dynamic shared memory, more than a block can have", desc.name, desc.smem));
        set_error(cudaErrorInvalidValue);
        return;
    }
    if (desc.smem > SHARED_DEFAULT - SHARED_STATIC_RESERVE) {
        size_t optin = 0;
        {
            std::lock_guard<std::mutex> lock(g_optin_mutex);
            auto it = g_optin.find(desc.fn);
            if (it != g_optin.end()) optin = it->second;
        }
        if (optin < desc.smem) {
            report(format("launch of %s: %zu bytes of dynamic shared memory, with its opt-in at %zu: above %zu "
                          "bytes (48 KiB, less up to %zu of the kernel's static shared memory) a kernel must first "
                          "take as much with cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize), "
                          "or a GPU refuses the launch",
                          desc.name, desc.smem, optin, SHARED_DEFAULT - SHARED_STATIC_RESERVE, SHARED_STATIC_RESERVE));
            set_error(cudaErrorInvalidValue);
            return;
        }
    }
    if (desc.pdl && options().refuse_pdl) {
        report(format("launch of %s: programmatic dependent launches are refused (SLM_EMU_REFUSE_PDL=1)", desc.name));
        set_error(cudaErrorNotSupported);
        return;
    }
    auto shared = std::make_shared<launch_desc>(std::move(desc));
    submit(stream, [shared]() {
        launch_log_grid_begin(*shared);   /* measuring bytes: one run, without the race check's copies */
        cudaError_t err = options().racecheck && !launch_log_serial() ? run_grid_racecheck(*shared)
                                                                      : run_grid(*shared, SCHED_FORWARD, false);
        cudaError_t logged = launch_log_grid_end(*shared);
        return err != cudaSuccess ? err : logged;
    });
}

} /* namespace slm_emu */

using namespace slm_emu;

extern "C" {

/* ---- errors and versions ---- */

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = tls_last_error;
    tls_last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return tls_last_error; }

const char *cudaGetErrorName(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure (see the emulator's report)";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorIllegalState: return "the operation is not permitted in this state";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    default: return "unknown error";
    }
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    *v = CUDART_VERSION;
    return cudaSuccess;
}

/* ---- devices ---- */

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = device_count();
    return need_device();
}

cudaError_t cudaSetDevice(int dev)
{
    if (dev < 0 || dev >= device_count()) return set_error(device_count() ? cudaErrorInvalidDevice : cudaErrorNoDevice);
    tls_device = dev;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *dev)
{
    *dev = tls_device;
    return need_device();
}

cudaError_t cudaDeviceSynchronize(void)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    if (cudaError_t e = capture_unsafe_call("cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported))
        return set_error(e);
    return sync_device(tls_device);
}

cudaError_t cudaDeviceReset(void) { return cudaDeviceSynchronize(); }

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int dev)
{
    if (dev < 0 || dev >= device_count()) return set_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "SIMT emulator (H100-like)");
    p->totalGlobalMem = device_memory_limit();
    p->sharedMemPerBlock = 49152;
    p->sharedMemPerBlockOptin = 232448;
    p->sharedMemPerMultiprocessor = 233472;
    p->regsPerBlock = 65536;
    p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024;
    p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = 65535;
    p->maxGridSize[2] = 65535;
    p->totalConstMem = 65536;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->maxBlocksPerMultiProcessor = 32;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 5120;
    p->concurrentKernels = 1;
    p->asyncEngineCount = 3;
    p->unifiedAddressing = 1;
    p->managedMemory = 1;
    p->canMapHostMemory = 1;
    p->pciBusID = dev;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int dev)
{
    cudaDeviceProp p;
    cudaError_t err = cudaGetDeviceProperties(&p, dev);
    if (err != cudaSuccess) return err;
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = p.regsPerBlock; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrConcurrentKernels: *value = 1; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    case cudaDevAttrManagedMemory: *value = 1; break;
    default:
        report(format("cudaDeviceGetAttribute: attribute %d is not emulated", (int)attr));
        return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    *total = device_memory_limit();
    *free_bytes = *total - device_memory_used();
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    if (!func) return set_error(cudaErrorInvalidValue);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (value < 0 || (size_t)value > SHARED_OPTIN_MAX - SHARED_STATIC_RESERVE) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(g_optin_mutex);
    g_optin[func] = (size_t)value;
    return cudaSuccess;
}


/* ---- streams ---- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    *s = new CUstream_st{tls_device, flags, 0, nullptr, cudaStreamCaptureModeGlobal, false};
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority)
{
    return cudaStreamCreateWithFlags(s, flags);
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (!s || is_legacy(resolve(s))) return set_error(cudaErrorInvalidResourceHandle);
    if (s->capture) return set_error(cudaErrorStreamCaptureUnsupported);
    drain_stream(s);
    delete s;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    CUstream_st *s = resolve(stream);
    if (s->capture) {
        s->invalidated = true;
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    if (is_legacy(s)) return sync_device(s->device);
    return drain_stream(stream);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    return event ? cudaSuccess : set_error(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    CUstream_st *s = resolve(stream);
    if (is_legacy(s) || s->capture) return set_error(cudaErrorStreamCaptureUnsupported);
    s->capture = new CUgraph_st;
    s->mode = mode;
    s->invalidated = false;
    if (mode != cudaStreamCaptureModeRelaxed) tls_strict_captures.push_back(s);
    device &d = devices()[s->device];
    std::lock_guard<std::mutex> lock(d.m);
    d.capturing.push_back(s);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    CUstream_st *s = resolve(stream);
    if (!s->capture) return set_error(cudaErrorIllegalState);
    device &d = devices()[s->device];
    {
        std::lock_guard<std::mutex> lock(d.m);
        for (size_t i = 0; i < d.capturing.size(); i++)
            if (d.capturing[i] == s) d.capturing.erase(d.capturing.begin() + (long)i);
    }
    for (size_t i = 0; i < tls_strict_captures.size(); i++)
        if (tls_strict_captures[i] == s) tls_strict_captures.erase(tls_strict_captures.begin() + (long)i);
    CUgraph_st *g = s->capture;
    s->capture = nullptr;
    if (s->invalidated) {
        delete g;
        *graph = nullptr;
        return set_error(cudaErrorStreamCaptureInvalidated);
    }
    *graph = g;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status)
{
    CUstream_st *s = resolve(stream);
    *status = !s->capture ? cudaStreamCaptureStatusNone
            : s->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

/* ---- graphs: the captured operations, replayed in order on the launch stream ---- */

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    if (!graph) return set_error(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{graph->nodes};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    if (!exec) return set_error(cudaErrorInvalidValue);
    for (auto &node : exec->nodes) {
        cudaError_t err = submit(stream, node);
        if (err != cudaSuccess) return err;
    }
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}

/* ---- events: the host time at which the queue reached the record ---- */

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags)
{
    *e = new CUevent_st{tls_device, flags, 0, false, 0.0};
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    e->done = false;
    cudaError_t err = submit(stream, [e]() {
        e->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
        e->done = true;
        return cudaSuccess;
    });
    e->seq = resolve(stream)->last_seq;
    return err;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    return e->seq ? run_queued(devices()[e->device], e->seq) : cudaSuccess;
}

/* Runs the work before the event, as cudaStreamQuery does for its stream: a host loop
 * that polls until the work is done then ends instead of spinning forever. */
cudaError_t cudaEventQuery(cudaEvent_t e) { return cudaEventSynchronize(e); }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!start || !end || (start->flags & cudaEventDisableTiming) || (end->flags & cudaEventDisableTiming))
        return set_error(cudaErrorInvalidResourceHandle);
    if (!start->seq || !end->seq) return set_error(cudaErrorInvalidResourceHandle);
    if (!start->done || !end->done) return set_error(cudaErrorNotReady);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

} /* extern "C" */
