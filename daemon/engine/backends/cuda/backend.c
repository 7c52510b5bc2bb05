/*
 * daemon/engine/backends/cuda/backend.c - the CUDA backend: the ops table over kernels/cuda,
 * its creation and destruction (the other files of cuda/ hold the ops; internal.h lists them).
 *
 * Weights are copied to device memory once, quantized, and stay resident: the types of the
 * integer GEMV in the device layout (kernels/cuda/kernels.h: GGUF's blocks permuted and padded
 * for 16-byte loads; the matmul and the embedding lookup read it), F32 / F16 / BF16 as GGUF
 * has them. Activations and the KV pool (per layer K then V, each (n_blocks, block_size,
 * kv_dim) halves: the CPU backend's layout) are device memory. Everything runs on one
 * stream, in issue order; the host waits only in to_host (the logits) and when a pinned
 * staging buffer is about to be rewritten while its last copy may still be queued.
 *
 * Paths (docs/cuda.md, "Backend"; docs/numerics.md, "The GPU": a tolerance against the CPU
 * backend, batch invariance on the GPU): a matmul on a quantized weight runs the decode GEMV
 * (ops.c) for every number of tokens, 8 a launch, RMSNorm fused into its prologue
 * (norm_matmul, norm_glu), SwiGLU or the residual add into its epilogue; F32 / F16 / BF16
 * weights take the fp32 dequant-GEMV. Attention (attention.c): a decode-only step's RoPE, KV
 * store and split attention in one launch; any other step's RoPE and store, then the same
 * attention kernel over the cache, so a token gets the same bits either way. A decode layer
 * is 5 launches (docs/cuda.md, "Launches of a decode step").
 * Gemma 3's ops: GeGLU reads the CPU's f16 GELU table (made on the host, copied once), the
 * embedding scale is one multiply, and the attention kernel honours the sliding window of the
 * local layers (sliding_window = 1), so gemma3 binds here as on the CPU.
 *
 * Steps as CUDA graphs (docs/cuda.md, "CUDA graphs"; the step_begin / step_end hooks of
 * backend.h): a step of up to 512 tokens is padded to a bucket of tokens (1, 2, 4, 8, 16, 24, 32,
 * 48, 64, 96, 128, 192, 256, 384, 512) and its attention context to a power-of-two number of 128
 * positions (a mixed step, prompt chunks among decodes, also its logits rows and attention tiles
 * to buckets); per such shape the first step runs op by op in the graph's shape (a warm-up that
 * sizes every buffer), the second is captured from the embedding through the logits matmul, and
 * later ones copy the step's metadata (ids, positions, out rows, block table rows, tiles) from
 * pinned memory into one fixed device buffer and launch the graph. Padding tokens use a scratch
 * KV block that kv_alloc adds after the engine's blocks. A failed capture leaves its shape op by
 * op (one warning); SLM_CUDA_GRAPHS=0 turns graphs off. Freeing or moving any buffer a graph
 * reads drops every graph (cuda_graphs_reset).
 *
 * Sampling (the `sample` op, sampling.c): slm_cuda_sample over the logits where
 * the forward pass left them; the rows' parameters, RNG states and penalty windows go up in
 * one copy, token ids, RNG states and requested logprobs come back in one. SLM_CUDA_SAMPLING=0
 * in the environment at creation leaves the op out (the engine then samples on the host).
 *
 * Built three ways (CMakeLists.txt): against the CUDA runtime and kernels/cuda compiled
 * by nvcc (SLM_BACKEND_CUDA), against the SIMT emulator (SLM_BACKEND_CUDA and
 * SLM_BACKEND_CUDA_EMU), or, with neither, as the no-CUDA variant (backends/cuda_none.c).
 */

#include "common/parse.h"
#include "daemon/engine/backends/cuda/internal.h"

static void cuda_destroy(struct slm_backend *be)
{
    struct cuda_impl *ci = impl(be);
    if (ci) {
        if (ci->stream) cuda_ok(cudaStreamSynchronize(ci->stream), "cudaStreamSynchronize");
        cuda_graphs_reset(ci);
        cuda_staging_free(&ci->ids);
        for (int i = 0; i < 2; i++) {
            cuda_staging_free(&ci->attn[i].st);
            free(ci->attn[i].shadow);
            free(ci->attn[i].chunk_tiles);
        }
        cuda_staging_free(&ci->graphs.meta);
        cuda_sample_state_free(ci->sampling);
        if (ci->workspace) cudaFree(ci->workspace);
        if (ci->q8) cudaFree(ci->q8);
        if (ci->xn) cudaFree(ci->xn);
        if (ci->gelu_table) cudaFree(ci->gelu_table);
        for (int i = 0; i < ROPE_TABLES; i++)
            if (ci->rope[i].dev) cudaFree(ci->rope[i].dev);
        if (ci->stream) cudaStreamDestroy(ci->stream);
        free(ci);
    }
    free(be);
}

static const struct slm_backend_ops cuda_ops = {
    .name = "cuda",
    .sliding_window = 1,
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .load_weight = cuda_load_weight,
    .unload_weight = cuda_unload_weight,
    .kv_alloc = cuda_kv_alloc,
    .kv_free = cuda_kv_free,
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .norm_matmul = cuda_norm_matmul,
    .norm_glu = cuda_norm_glu,
    .add_bias = cuda_add_bias,
    .attention = cuda_attention,
    .attention_check = cuda_attention_check,
    .swiglu = cuda_swiglu,
    .geglu = cuda_geglu,
    .scale = cuda_scale,
    .softcap = cuda_softcap,
    .add = cuda_add,
    .gather_rows = cuda_gather_rows,
    .to_host = cuda_to_host,
    .step_begin = cuda_step_begin,
    .step_end = cuda_step_end,
    .sample = cuda_sample,
};

int slm_backend_cuda_devices(char *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        cudaGetLastError();   /* the refusal is expected: do not leave it sticky */
        slm_err_set(err, "no CUDA device (cudaGetDeviceCount: %s)",
                    e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 0;
    }
    return n;
}

int slm_backend_cuda_emulated(void)
{
#ifdef SLM_BACKEND_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

size_t slm_backend_cuda_kv_budget(struct slm_backend *be)
{
    struct cuda_impl *ci = impl(be);
    size_t free_b = 0, total_b = 0;
    if (cuda_ok(cudaSetDevice(ci->device), "cudaSetDevice") ||
        cuda_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"))
        return 0;
    return (size_t)((double)free_b * ci->mem_fraction);
}

/* *out = the environment variable name's value when set and not empty: a whole number in [min,
 * max] (`what` says what it counts in the error); else left alone. Nonzero with err set on bad
 * input. */
static int env_int(const char *name, long long min, long long max, const char *what, int *out, char *err)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    long long v;
    char why[SLM_ERR_LEN];
    if (slm_parse_int(s, min, max, &v, why)) {
        slm_err_set(err, "cuda backend: %s: %s (%s)", name, why, what);
        return -1;
    }
    *out = (int)v;
    return 0;
}

struct slm_backend *slm_backend_cuda_create(int device, double gpu_memory_fraction, char *err)
{
    if (!(gpu_memory_fraction > 0.0 && gpu_memory_fraction <= 1.0)) {
        slm_err_set(err, "cuda backend: gpu-memory-fraction %g is not in (0, 1]", gpu_memory_fraction);
        return NULL;
    }
    int n = slm_backend_cuda_devices(err);
    if (n < 1) return NULL;
    if (device < 0 || device >= n) {
        slm_err_set(err, "cuda backend: device %d does not exist (%d device%s)", device, n, n == 1 ? "" : "s");
        return NULL;
    }
    struct slm_backend *be = calloc(1, sizeof *be);
    struct cuda_impl *ci = calloc(1, sizeof *ci);
    if (!be || !ci) {
        free(be);
        free(ci);
        slm_err_set(err, "cuda backend: out of memory");
        return NULL;
    }
    be->ops = &cuda_ops;
    be->impl = ci;
    be->n_threads = 1;
    ci->device = device;
    ci->mem_fraction = gpu_memory_fraction;
    struct cudaDeviceProp prop;
    const char *call = "cudaSetDevice";
    cudaError_t e = cudaSetDevice(device);
    if (!e) call = "cudaGetDeviceProperties", e = cudaGetDeviceProperties(&prop, device);
    if (!e) call = "cudaStreamCreateWithFlags", e = cudaStreamCreateWithFlags(&ci->stream, cudaStreamNonBlocking);
    if (!e) call = "cudaEventCreate", e = cudaEventCreateWithFlags(&ci->ids.done, cudaEventDisableTiming);
    if (!e) e = cudaEventCreateWithFlags(&ci->attn[0].st.done, cudaEventDisableTiming);
    if (!e) e = cudaEventCreateWithFlags(&ci->attn[1].st.done, cudaEventDisableTiming);
    if (!e) e = cudaEventCreateWithFlags(&ci->graphs.meta.done, cudaEventDisableTiming);
    if (e) {
        slm_err_set(err, "cuda backend: device %d: %s: %s", device, call, cudaGetErrorString(e));
        cudaGetLastError();
        cuda_destroy(be);
        return NULL;
    }
    /* The MMQ's threshold (ops.c): not measured on a GPU yet, so every call the GEMV cannot take in
     * one launch; SLM_CUDA_MMQ_MIN_TOKENS overrides it for measurements. mma.sync s8 needs sm_80. */
    ci->mmq_min = SLM_CUDA_GEMV_MAX_TOKENS + 1;
    /* The MMQ's wide kernel from this many blocks a launch (kernels.h); also a guess until then. */
    int wide_min = SLM_CUDA_MMQ_WIDE_MIN_BLOCKS;
    /* Programmatic dependent launch (kernels.h; docs/cuda.md): on where the device has it (sm_90
     * on), unless SLM_CUDA_PDL=0 (to measure what it is worth). */
    int pdl_env = 1;
    if (env_int("SLM_CUDA_MMQ_MIN_TOKENS", 1, INT32_MAX, "a number of tokens, >= 1", &ci->mmq_min, err) ||
        env_int("SLM_CUDA_MMQ_WIDE_MIN_BLOCKS", 0, INT32_MAX, "a number of blocks, >= 0", &wide_min, err) ||
        env_int("SLM_CUDA_PDL", 0, 1, "0 turns programmatic dependent launch off, 1 leaves it on where the device has it",
                &pdl_env, err)) {
        cuda_destroy(be);
        return NULL;
    }
    slm_cuda_mmq_set_wide_min_blocks(wide_min);
    slm_cuda_set_pdl(pdl_env ? -1 : 0);   /* -1: the kernels' default for this device (sm_90 on) */
    /* A driver that refuses programmatic launches (eager or captured) gets plain ones. */
    char why[160], pdl_state[200];
    const int refused = slm_cuda_pdl_probe(ci->stream, why, sizeof why) != 0;
    if (refused) {
        slm_cuda_set_pdl(0);
        slm_log(SLM_LOG_WARNING, "cuda backend: the driver refused programmatic dependent launches (%s): every kernel "
                "is launched plainly (SLM_CUDA_PDL=0 skips this probe)", why);
    }
    if (slm_cuda_pdl_launches()) snprintf(pdl_state, sizeof pdl_state, "on");
    else if (refused) snprintf(pdl_state, sizeof pdl_state, "off (refused: %s)", why);
    else snprintf(pdl_state, sizeof pdl_state, "off (%s)", pdl_env ? "before sm_90" : "SLM_CUDA_PDL=0");
    if (prop.major < 8) ci->mmq_min = INT32_MAX;
    ci->mmf = prop.major >= 8;   /* mma.sync m16n8k16 f16 / bf16: sm_80 */
    const char *graphs = getenv("SLM_CUDA_GRAPHS");
    ci->graphs.mode = 1;
    if (graphs && *graphs) {
        if (!strcmp(graphs, "0")) ci->graphs.mode = 0;
        else if (!strcmp(graphs, "test-break-capture")) ci->graphs.mode = 2;
        else if (!strcmp(graphs, "decode")) ci->graphs.mode = 3;
        else if (strcmp(graphs, "1")) {
            slm_err_set(err, "cuda backend: SLM_CUDA_GRAPHS '%.40s': expected 0 (every step runs eagerly), 1 (steps "
                        "as CUDA graphs, the default), decode (decode-only steps only) or test-break-capture", graphs);
            cuda_destroy(be);
            return NULL;
        }
    }
    slm_log(SLM_LOG_INFO, "cuda backend: device %d of %d: %s, sm_%d%d, %zu MiB%s; tensor-core MMQ from %d tokens; "
            "F16 / BF16 weights on %s; step graphs %s; programmatic dependent launch %s", device, n, prop.name,
            prop.major, prop.minor, (size_t)prop.totalGlobalMem >> 20,
            slm_backend_cuda_emulated() ? " (SIMT emulator)" : "", ci->mmq_min, ci->mmf ? "tensor cores" : "the fp32 GEMV",
            ci->graphs.mode == 0   ? "off (SLM_CUDA_GRAPHS=0)"
            : ci->graphs.mode == 2 ? "on, every capture broken (test)"
            : ci->graphs.mode == 3 ? "on for decode-only steps (SLM_CUDA_GRAPHS=decode)"
                                   : "on",
            pdl_state);
    int device_sampling = 1;
    if (env_int("SLM_CUDA_SAMPLING", 0, 1, "0 samples on the host, 1 on the device where the kernel can",
                &device_sampling, err)) {
        cuda_destroy(be);
        return NULL;
    }
    if (!device_sampling) {
        ci->host_sampling_ops = cuda_ops;
        ci->host_sampling_ops.sample = NULL;
        be->ops = &ci->host_sampling_ops;
        slm_log(SLM_LOG_INFO, "cuda backend: SLM_CUDA_SAMPLING=0: tokens are sampled on the host");
    }
    return be;
}
