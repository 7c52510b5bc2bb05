/* The CUDA runtime stand-in's memory calls: allocation of each kind through the registry
 * (memory_emu.cpp), and copies and memsets whose pointers are checked against the kinds the
 * call says, at the call and again when the queued operation runs. */
#include "kernels/emu/runtime_internal.h"

#include <cstring>
#include <memory>
#include <vector>

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

using namespace slm_emu;

extern "C" {

/* ---- memory ---- */

/* Allocating, freeing and registering are "potentially unsafe" while this thread captures a graph
 * (capture_unsafe_call): refused then, as a GPU refuses them. */
#define CAPTURE_SAFE_AS(what, err)                                              \
    do {                                                                        \
        if (cudaError_t e_ = capture_unsafe_call(what, err)) return set_error(e_); \
    } while (0)
#define CAPTURE_SAFE(what) CAPTURE_SAFE_AS(what, cudaErrorStreamCaptureUnsupported)

cudaError_t cudaMalloc(void **p, size_t size)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    CAPTURE_SAFE("cudaMalloc");
    return set_error(mem_alloc(p, size, MEM_DEVICE, current_device()));
}

cudaError_t cudaMallocManaged(void **p, size_t size, unsigned int flags)
{
    if (need_device() != cudaSuccess) return cudaErrorNoDevice;
    CAPTURE_SAFE("cudaMallocManaged");
    return set_error(mem_alloc(p, size, MEM_MANAGED, current_device()));
}

cudaError_t cudaMallocHost(void **p, size_t size)
{
    CAPTURE_SAFE("cudaMallocHost");
    return set_error(mem_alloc(p, size, MEM_PINNED, current_device()));
}

cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags)
{
    CAPTURE_SAFE("cudaHostAlloc");
    return set_error(mem_alloc(p, size, MEM_PINNED, current_device()));
}

/* Freeing waits for the device, as cudaFree does. */
cudaError_t cudaFree(void *p)
{
    CAPTURE_SAFE("cudaFree");
    if (device_count() > 0) drain_device(current_device());
    return set_error(mem_free(p, 1u << MEM_DEVICE | 1u << MEM_MANAGED, "cudaFree"));
}

cudaError_t cudaFreeHost(void *p)
{
    CAPTURE_SAFE("cudaFreeHost");
    if (device_count() > 0) drain_device(current_device());
    return set_error(mem_free(p, 1u << MEM_PINNED, "cudaFreeHost"));
}

cudaError_t cudaHostRegister(void *p, size_t size, unsigned int flags)
{
    CAPTURE_SAFE("cudaHostRegister");
    return set_error(mem_register(p, size));
}

cudaError_t cudaHostUnregister(void *p)
{
    CAPTURE_SAFE("cudaHostUnregister");
    return set_error(mem_free(p, 1u << MEM_REGISTERED, "cudaHostUnregister"));
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *a, const void *p)
{
    memset(a, 0, sizeof *a);
    int k = mem_classify(p, 1, nullptr);
    a->type = k == MEM_DEVICE ? cudaMemoryTypeDevice : k == MEM_MANAGED ? cudaMemoryTypeManaged
            : k == MEM_PINNED || k == MEM_REGISTERED ? cudaMemoryTypeHost : cudaMemoryTypeUnregistered;
    a->device = current_device();
    a->devicePointer = k >= 0 ? (void *)p : nullptr;
    a->hostPointer = k == MEM_DEVICE || k < 0 ? nullptr : (void *)p;
    return cudaSuccess;
}


cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
    CAPTURE_SAFE_AS("cudaMemcpy (synchronous)", cudaErrorStreamCaptureImplicit);
    int dk, sk;
    cudaError_t err = check_copy(dst, src, n, kind, "cudaMemcpy", &dk, &sk);
    if (err != cudaSuccess) return set_error(err);
    if (device_count() > 0) {
        err = sync_device(current_device());
        if (err != cudaSuccess) return err;
    }
    if (n) memmove(dst, src, n);
    launch_log_chain_break();
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    int dk, sk;
    cudaError_t err = check_copy(dst, src, n, kind, "cudaMemcpyAsync", &dk, &sk);
    if (err != cudaSuccess || n == 0) return set_error(err);
    if ((dk == -1 || sk == -1) && stream_capturing(stream)) {
        report("cudaMemcpyAsync: pageable host memory cannot be captured into a graph; use cudaMallocHost");
        invalidate_capture(stream);
        return set_error(cudaErrorStreamCaptureUnsupported);
    }
    if (sk == -1) {
        /* From pageable memory CUDA stages the source before returning. */
        auto staged = std::make_shared<std::vector<char>>((const char *)src, (const char *)src + n);
        return submit(stream, [dst, staged, n, kind]() {
            int d2, s2;
            cudaError_t e = check_copy(dst, staged->data(), n, kind, "cudaMemcpyAsync (queued)", &d2, &s2);
            if (e == cudaSuccess) memcpy(dst, staged->data(), n);
            launch_log_chain_break();
            return e;
        });
    }
    err = submit(stream, [dst, src, n, kind]() {
        int d2, s2;
        cudaError_t e = check_copy(dst, src, n, kind, "cudaMemcpyAsync (queued)", &d2, &s2);
        if (e == cudaSuccess) memmove(dst, src, n);
        launch_log_chain_break();
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
        launch_log_chain_break();
        return e;
    });
}

cudaError_t cudaMemset(void *p, int value, size_t n)
{
    CAPTURE_SAFE_AS("cudaMemset (synchronous)", cudaErrorStreamCaptureImplicit);
    return cudaMemsetAsync(p, value, n, nullptr);
}

cudaError_t cudaMemcpyToSymbol(const void *symbol, const void *src, size_t n, size_t offset, enum cudaMemcpyKind kind)
{
    if (device_count() > 0) sync_device(current_device());
    memcpy((char *)symbol + offset, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyFromSymbol(void *dst, const void *symbol, size_t n, size_t offset, enum cudaMemcpyKind kind)
{
    if (device_count() > 0) sync_device(current_device());
    memcpy(dst, (const char *)symbol + offset, n);
    return cudaSuccess;
}

} /* extern "C" */
