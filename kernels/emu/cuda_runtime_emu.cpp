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

static thread_local cudaError_t tls_last_error = cudaSuccess;
static thread_local int tls_device = 0;

static int device_count()
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

static cudaError_t sync_device(int dev)
{
    device &d = devices()[dev];
    cudaError_t err = check_no_global_capture(d);
    if (err != cudaSuccess) return set_error(err);
    return run_queued(d, UINT64_MAX);
}

static cudaError_t need_device()
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
    if (desc.smem > 232448) {
        report(format("launch of %s: %zu bytes of dynamic shared memory, more than a block can have", desc.name, desc.smem));
        set_error(cudaErrorInvalidValue);
        return;
    }
    auto shared = std::make_shared<launch_desc>(std::move(desc));
    submit(stream, [shared]() {
        return options().racecheck ? run_grid_racecheck(*shared) : run_grid(*shared, SCHED_FORWARD, false);
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
    return func ? cudaSuccess : set_error(cudaErrorInvalidValue);
}

/* ---- memory ---- */

cudaError_t cudaMalloc(void **p, size_t size)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    return set_error(mem_alloc(p, size, MEM_DEVICE, tls_device));
}

cudaError_t cudaMallocManaged(void **p, size_t size, unsigned int flags)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    return set_error(mem_alloc(p, size, MEM_MANAGED, tls_device));
}

cudaError_t cudaMallocHost(void **p, size_t size) { return set_error(mem_alloc(p, size, MEM_PINNED, tls_device)); }

cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags)
{
    return set_error(mem_alloc(p, size, MEM_PINNED, tls_device));
}

/* Freeing waits for the device, as cudaFree does. */
cudaError_t cudaFree(void *p)
{
    if (device_count() > 0) run_queued(devices()[tls_device], UINT64_MAX);
    return set_error(mem_free(p, 1u << MEM_DEVICE | 1u << MEM_MANAGED, "cudaFree"));
}

cudaError_t cudaFreeHost(void *p)
{
    if (device_count() > 0) run_queued(devices()[tls_device], UINT64_MAX);
    return set_error(mem_free(p, 1u << MEM_PINNED, "cudaFreeHost"));
}

cudaError_t cudaHostRegister(void *p, size_t size, unsigned int flags) { return set_error(mem_register(p, size)); }

cudaError_t cudaHostUnregister(void *p) { return set_error(mem_free(p, 1u << MEM_REGISTERED, "cudaHostUnregister")); }

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p)
{
    memset(a, 0, sizeof *a);
    int k = mem_classify(p, 1, nullptr);
    a->type = k == MEM_DEVICE ? cudaMemoryTypeDevice : k == MEM_MANAGED ? cudaMemoryTypeManaged
            : k == MEM_PINNED || k == MEM_REGISTERED ? cudaMemoryTypeHost : cudaMemoryTypeUnregistered;
    a->device = tls_device;
    a->devicePointer = k >= 0 ? (void *)p : nullptr;
    a->hostPointer = k == MEM_DEVICE || k < 0 ? nullptr : (void *)p;
    return cudaSuccess;
}

} /* extern "C" */

namespace slm_emu {

/* Checks one side of a copy against the kind the copy says it is; `host_side` accepts
 * pageable, pinned, registered and managed memory, the device side device or managed. */
static cudaError_t check_side(const void *p, size_t n, bool device_side, const char *who, const char *what, int *kind)
{
    std::string why;
    int k = mem_classify(p, n, &why);
    *kind = k;
    bool ok = device_side ? (k == MEM_DEVICE || k == MEM_MANAGED) : (k == -1 || (k >= 0 && k != MEM_DEVICE));
    if (ok && p) return cudaSuccess;
    if (!p) why = "a null pointer";
    else if (k >= 0) why = format("%s, but the copy's kind says %s memory", [k] {
        switch (k) {
        case MEM_DEVICE: return "device memory";
        case MEM_PINNED: return "pinned host memory";
        case MEM_MANAGED: return "managed memory";
        default: return "registered host memory";
        }
    }(), device_side ? "device" : "host");
    report(format("%s: %s %p (%zu bytes) is %s", who, what, p, n, why.c_str()));
    return cudaErrorInvalidValue;
}

static cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind, const char *who,
                              int *dkind, int *skind)
{
    if (kind == cudaMemcpyDefault) {
        int dk = mem_classify(dst, n, nullptr), sk = mem_classify(src, n, nullptr);
        kind = (cudaMemcpyKind)(((dk == MEM_DEVICE || dk == MEM_MANAGED) ? 1 : 0) + ((sk == MEM_DEVICE || sk == MEM_MANAGED) ? 2 : 0));
        static const cudaMemcpyKind k[4] = {cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                            cudaMemcpyDeviceToDevice};
        kind = k[(int)kind];
    }
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice) return cudaErrorInvalidMemcpyDirection;
    if (n == 0) return cudaSuccess;
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    cudaError_t err = check_side(dst, n, dst_dev, who, "destination", dkind);
    if (err == cudaSuccess) err = check_side(src, n, src_dev, who, "source", skind);
    return err;
}

} /* namespace slm_emu */

extern "C" {

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    int dk, sk;
    cudaError_t err = check_copy(dst, src, n, kind, "cudaMemcpy", &dk, &sk);
    if (err != cudaSuccess) return set_error(err);
    if (device_count() > 0) {
        err = sync_device(tls_device);
        if (err != cudaSuccess) return err;
    }
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    int dk, sk;
    cudaError_t err = check_copy(dst, src, n, kind, "cudaMemcpyAsync", &dk, &sk);
    if (err != cudaSuccess || n == 0) return set_error(err);
    CUstream_st *s = resolve(stream);
    if ((dk == -1 || sk == -1) && s->capture) {
        report("cudaMemcpyAsync: pageable host memory cannot be captured into a graph; use cudaMallocHost");
        s->invalidated = true;
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    if (sk == -1) {
        /* From pageable memory CUDA stages the source before returning. */
        auto staged = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        return submit(stream, [dst, staged, n, kind]() {
            int d2, s2;
            cudaError_t e = check_copy(dst, staged->data(), n, kind, "cudaMemcpyAsync (queued)", &d2, &s2);
            if (e == cudaSuccess) memcpy(dst, staged->data(), n);
            return e;
        });
    }
    err = submit(stream, [dst, src, n, kind]() {
        int d2, s2;
        cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpyAsync (queued)", &d2, &s2);
        if (e == cudaSuccess) memmove(dst, src, n);
        return e;
    });
    /* To pageable memory CUDA returns only once the copy is done. */
    if (err == cudaSuccess && dk == -1) err = drain_stream(stream);
    return err;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t stream)
{
    cudaError_t err = n ? check_device_range(p, n, "cudaMemsetAsync", "destination") : cudaSuccess;
    if (err != cudaSuccess || n == 0) return set_error(err);
    return submit(stream, [p, value, n]() {
        cudaError_t e = check_device_range(p, n, "cudaMemsetAsync (queued)", "destination");
        if (e == cudaSuccess) memset(p, value, n);
        return e;
    });
}

cudaError_t cudaMemset(void *p, int value, size_t n) { return cudaMemsetAsync(p, value, n, nullptr); }

cudaError_t cudaMemcpyToSymbol(const void *symbol, const void *src, size_t n, size_t offset, enum cudaMemcpyKind kind)
{
    if (device_count() > 0) sync_device(tls_device);
    memcpy((char *)symbol + offset, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyFromSymbol(void *dst, const void *symbol, size_t n, size_t offset, enum cudaMemcpyKind kind)
{
    if (device_count() > 0) sync_device(tls_device);
    memcpy(dst, (const char *)symbol + offset, n);
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

cudaError_t cudaEventQuery(cudaEvent_t e)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    return e->seq && !e->done ? cudaErrorNotReady : cudaSuccess;
}

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
