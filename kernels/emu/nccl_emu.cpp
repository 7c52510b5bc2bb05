/* The NCCL stand-in: communicators whose ranks are emulated devices of this process,
 * one host thread per rank (ncclCommInitRank) or one thread for all (ncclCommInitAll with
 * ncclGroupStart/End), declared by CUDA's own nccl.h. ncclAllReduce (sum, max, min; fp32,
 * fp16, bf16) deposits its buffers once the stream's earlier work has run; the last rank
 * to arrive reduces for all in rank order with an fp32 accumulator (NCCL's ring order and
 * rounding differ), and each rank's stream waits for that. */
#include "kernels/emu/runtime_internal.h"

#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <vector>

namespace slm_emu {

struct collective {
    int arrived = 0;
    bool done = false;
    bool failed = false;
    std::vector<const void *> send;
    std::vector<void *> recv;
    size_t count = 0;
    ncclDataType_t type = ncclFloat32;
    ncclRedOp_t op = ncclSum;
};

struct clique {
    int nranks;
    int joined = 0;
    std::mutex m;
    std::condition_variable cv;
    std::map<uint64_t, collective> colls; /* by the ranks' call number */
};

} /* namespace slm_emu */

struct ncclComm {
    std::shared_ptr<slm_emu::clique> clique;
    int rank;
    int device;
    uint64_t calls;
};

namespace slm_emu {

static std::mutex g_ids_mutex;
static std::map<std::string, std::weak_ptr<clique>> g_ids;
static thread_local int tls_group_depth;

struct pending_call {
    ncclComm *comm;
    const void *send;
    void *recv;
    size_t count;
    ncclDataType_t type;
    ncclRedOp_t op;
    cudaStream_t stream;
};
static thread_local std::vector<pending_call> tls_group;

static double timeout_s()
{
    const char *s = getenv("SLM_EMU_NCCL_TIMEOUT_S");
    return s && *s ? strtod(s, nullptr) : 60.0;
}

static size_t nccl_type_size(ncclDataType_t t)
{
    return t == ncclFloat32 ? 4 : (t == ncclFloat16 || t == ncclBfloat16) ? 2 : 0;
}

static float nccl_load(const void *p, ncclDataType_t t, size_t i)
{
    if (t == ncclFloat32) return ((const float *)p)[i];
    if (t == ncclFloat16) return __half2float(((const __half *)p)[i]);
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

static void reduce_all(collective &c)
{
    size_t n = c.count, es = nccl_type_size(c.type);
    std::vector<char> out(n * es);
    for (size_t i = 0; i < n; i++) {
        float acc = nccl_load(c.send[0], c.type, i);
        for (size_t r = 1; r < c.send.size(); r++) {
            float v = nccl_load(c.send[r], c.type, i);
            acc = c.op == ncclSum ? acc + v : c.op == ncclMax ? std::max(acc, v) : std::min(acc, v);
        }
        if (c.type == ncclFloat32) ((float *)out.data())[i] = acc;
        else if (c.type == ncclFloat16) ((__half *)out.data())[i] = __float2half_rn(acc);
        else ((__nv_bfloat16 *)out.data())[i] = __float2bfloat16_rn(acc);
    }
    for (void *r : c.recv) memcpy(r, out.data(), out.size());
}

/* Called once the rank's stream has run everything before the call. */
static ncclResult_t deposit(const pending_call &p)
{
    clique &q = *p.comm->clique;
    uint64_t id = p.comm->calls++;
    std::lock_guard<std::mutex> lock(q.m);
    collective &c = q.colls[id];
    if (c.arrived == 0) {
        c.send.assign(q.nranks, nullptr);
        c.recv.assign(q.nranks, nullptr);
        c.count = p.count;
        c.type = p.type;
        c.op = p.op;
    } else if (c.count != p.count || c.type != p.type || c.op != p.op) {
        report(format("ncclAllReduce call %llu: rank %d passes count %zu type %d op %d, another rank count %zu type %d op %d",
                      (unsigned long long)id, p.comm->rank, p.count, (int)p.type, (int)p.op, c.count, (int)c.type, (int)c.op));
        c.failed = true;
    }
    c.send[p.comm->rank] = p.send;
    c.recv[p.comm->rank] = p.recv;
    if (++c.arrived == q.nranks) {
        if (!c.failed) reduce_all(c);
        c.done = true;
        q.cv.notify_all();
    }
    return ncclSuccess;
}

/* The stream operation that waits for every rank's deposit. */
static cudaError_t wait_done(std::shared_ptr<clique> qp, uint64_t id, int rank)
{
    clique &q = *qp;
    std::unique_lock<std::mutex> lock(q.m);
    bool ok = q.cv.wait_for(lock, std::chrono::duration<double>(timeout_s()), [&] { return q.colls[id].done; });
    if (!ok) {
        report(format("ncclAllReduce call %llu: rank %d waited %.0f s for the other ranks (did every rank call it, "
                      "inside one group when one thread drives several?)", (unsigned long long)id, rank, timeout_s()));
        return cudaErrorLaunchFailure;
    }
    bool failed = q.colls[id].failed;
    if (--q.colls[id].arrived == 0) q.colls.erase(id);
    return failed ? cudaErrorLaunchFailure : cudaSuccess;
}

static ncclResult_t post(const pending_call &p)
{
    int prev;
    cudaGetDevice(&prev);
    cudaSetDevice(p.comm->device);
    drain_stream(p.stream);
    uint64_t id = p.comm->calls;
    ncclResult_t r = deposit(p);
    auto q = p.comm->clique;
    int rank = p.comm->rank;
    cudaError_t err = submit(p.stream, [q, id, rank]() { return wait_done(q, id, rank); });
    cudaSetDevice(prev);
    return r != ncclSuccess ? r : err == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

} /* namespace slm_emu */

using namespace slm_emu;

extern "C" {

ncclResult_t ncclGetVersion(int *version)
{
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result)
{
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (see the emulator's report)";
    case ncclInvalidArgument: return "invalid argument (see the emulator's report)";
    case ncclInvalidUsage: return "invalid usage";
    default: return "emulated NCCL error";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    static std::mutex m;
    static std::mt19937_64 rng(std::random_device{}());
    std::lock_guard<std::mutex> lock(m);
    memset(id->internal, 0, sizeof id->internal);
    uint64_t a = rng(), b = rng();
    memcpy(id->internal, &a, 8);
    memcpy(id->internal + 8, &b, 8);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    std::shared_ptr<clique> q;
    {
        std::lock_guard<std::mutex> lock(g_ids_mutex);
        std::string key(id.internal, 16);
        q = g_ids[key].lock();
        if (!q) {
            q = std::make_shared<clique>();
            q->nranks = nranks;
            g_ids[key] = q;
        }
    }
    if (q->nranks != nranks) {
        report(format("ncclCommInitRank: rank %d says %d ranks, another rank %d", rank, nranks, q->nranks));
        return ncclInvalidArgument;
    }
    int dev;
    cudaGetDevice(&dev);
    std::unique_lock<std::mutex> lock(q->m);
    q->joined++;
    q->cv.notify_all();
    if (!q->cv.wait_for(lock, std::chrono::duration<double>(timeout_s()), [&] { return q->joined >= nranks; })) {
        report(format("ncclCommInitRank: rank %d waited %.0f s for the other ranks", rank, timeout_s()));
        return ncclSystemError;
    }
    *comm = new ncclComm{q, rank, dev, 0};
    return ncclSuccess;
}

ncclResult_t ncclCommInitAll(ncclComm_t *comms, int ndev, const int *devlist)
{
    if (ndev < 1) return ncclInvalidArgument;
    auto q = std::make_shared<clique>();
    q->nranks = q->joined = ndev;
    for (int i = 0; i < ndev; i++) comms[i] = new ncclComm{q, i, devlist ? devlist[i] : i, 0};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
    *count = comm->clique->nranks;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
    *rank = comm->rank;
    return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device)
{
    *device = comm->device;
    return ncclSuccess;
}

ncclResult_t ncclGroupStart()
{
    tls_group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd()
{
    if (tls_group_depth == 0) return ncclInvalidUsage;
    if (--tls_group_depth > 0) return ncclSuccess;
    std::vector<pending_call> calls;
    calls.swap(tls_group);
    ncclResult_t r = ncclSuccess;
    for (const pending_call &p : calls) {
        ncclResult_t e = post(p);
        if (r == ncclSuccess) r = e;
    }
    return r;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)
{
    if (!comm) return ncclInvalidArgument;
    if (!nccl_type_size(datatype) || (op != ncclSum && op != ncclMax && op != ncclMin)) {
        report(format("ncclAllReduce: type %d / op %d not emulated (fp32, fp16, bf16; sum, max, min)", (int)datatype, (int)op));
        return ncclInvalidArgument;
    }
    size_t bytes = count * nccl_type_size(datatype);
    if (bytes && (check_device_range(sendbuff, bytes, "ncclAllReduce", "sendbuff") != cudaSuccess ||
                  check_device_range(recvbuff, bytes, "ncclAllReduce", "recvbuff") != cudaSuccess))
        return ncclInvalidArgument;
    pending_call p{comm, sendbuff, recvbuff, count, datatype, op, stream};
    if (tls_group_depth > 0) {
        tls_group.push_back(p);
        return ncclSuccess;
    }
    return post(p);
}

} /* extern "C" */
