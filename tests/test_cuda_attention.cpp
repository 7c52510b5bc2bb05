/* test_cuda_attention: kernels/cuda/attention.cu under the SIMT emulator against the CPU
 * backend's attention (daemon/engine/backends/cpu.c) on the same batches: the rotated q and k,
 * the K/V pool and the outputs bit for bit (the kernel follows the CPU's arithmetic), plus a
 * float64 reference of the same f16 inputs within the bound of that arithmetic; batch invariance (alone vs among others, decode
 * vs prefill: identical bits); bad arguments refused. */
#include <cuda_runtime_api.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "daemon/engine/backends/backend.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/ops.h"
}
#include "kernels/cuda/attention.h"
#include "kernels/emu/emu_api.h"
#include "tests/check.h"
#include "tests/rng.h"

#include "tests/attention_fixture.h"

static int launch_exact(fixture &f, call &c, const slm_cuda_kv_layer *kv, mode m, int p0, int max_ctx)
{
    if (m == PREFILL) return slm_cuda_attention_prefill(&f.shape, &c.t, kv, c.q, p0, c.ws, c.ws_bytes, c.out, 0);
    return slm_cuda_attention_decode(&f.shape, &c.t, kv, c.q, max_ctx, c.ws, c.ws_bytes, c.out, 0);
}

/*
 * One step on both backends (run_step_checked) with this kernel's bounds:
 * - rotated q, k and the pool: identical bits (the same float operations, the same f16 rounding);
 * - against the CPU backend: identical bits (the kernel runs the CPU's operations in its order);
 * - against float64 on the same f16 inputs, 1e-3 absolute (|v| < 1): both backends round q and
 *   each probability to f16 (llama.cpp's arithmetic), up to 2^-11 of each weight, so up to
 *   4.9e-4 of max|v| per element, plus fp32 sums.
 * Returns the GPU output (rotated q left in q_rot).
 */
static std::vector<float> run_step(fixture &f, const step &s, mode m, int p0, std::vector<float> *q_rot)
{
    return run_step_checked(f, s, m, p0, q_rot, {slm_cuda_attention_workspace, launch_exact, -1.0, 1e-3});
}

/* Attention only (no rope, no store) of already rotated q for tokens (seq, pos). */
static std::vector<float> attend(fixture &f, const step &s, const std::vector<float> &q_rot, mode m, int p0)
{
    int n = (int)s.pos.size(), max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    std::vector<float> kv_dummy((size_t)n * f.kvd());
    call c = make_call(f, s, q_rot, kv_dummy, kv_dummy, max_ctx);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = m == DECODE ? slm_cuda_attention_decode(&f.shape, &c.t, &kv, c.q, max_ctx, c.ws, c.ws_bytes, c.out, 0)
                         : slm_cuda_attention_prefill(&f.shape, &c.t, &kv, c.q, p0, c.ws, c.ws_bytes, c.out, 0);
    CHECK(rc == 0, "%s attend: expected 0, got %d", f.c.name, rc);
    std::vector<float> out = host(c.out, q_rot.size());
    free_call(c);
    return out;
}

static void run_config(const config &c, const int *lens, int chunk_p0, int chunk_n)
{
    fixture f;
    if (setup(f, c, lens)) {
        printf("FAIL %s: setup\n", c.name);
        failures++;
        return;
    }
    invariance_run r;
    run_invariance(f, c, lens, chunk_p0, chunk_n, r);
    teardown(f);
}

static void bad_arguments(void)
{
    int lens[4] = {1, 17, 20, 33};
    config c = {"args", 9, 3, 64, 64, 0};
    fixture f;
    if (setup(f, c, lens)) {
        failures++;
        return;
    }
    step s = tokens(3, 30, 33);
    std::vector<float> q(3 * f.qd()), k(3 * f.kvd()), v(3 * f.kvd());
    call cl = make_call(f, s, q, k, v, 33);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    auto decode = [&](const slm_cuda_attn_shape *shp, const slm_cuda_attn_tokens *t, const slm_cuda_kv_layer *kvl,
                      const float *q_, size_t ws_bytes, float *out) {
        return slm_cuda_attention_decode(shp, t, kvl, q_, 33, cl.ws, ws_bytes, out, 0);
    };
    shared_refusals(f, cl, kv, decode);
    CHECK(slm_cuda_attention_prefill(&f.shape, &cl.t, &kv, cl.q, -1, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "p0 -1: expected -EINVAL");
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "sync after bad arguments");
    free_call(cl);
    teardown(f);
}

int main(void)
{
    /* SmolLM2's geometry: 9 query heads over 3 KV heads of 64, adjacent-pair RoPE. */
    int lens[4] = {1, 17, 100, 300};
    run_config({"smollm2 9/3x64 norm", 9, 3, 64, 64, 0}, lens, 37, 50);
    /* No GQA, head_dim 128 with a partial NEOX rotation. */
    int lens2[4] = {1, 17, 100, 150};
    run_config({"mha 4/4x128 neox rope 64", 4, 4, 128, 64, 1}, lens2, 37, 40);
    /* head_dim 80 and 96: group 4, a full rotation. */
    int lens3[4] = {2, 5, 40, 140};
    run_config({"8/2x80 neox", 8, 2, 80, 80, 1}, lens3, 37, 20);
    run_config({"4/1x96 norm", 4, 1, 96, 96, 0}, lens3, 37, 20);
    bad_arguments();
    if (failures) {
        printf("test_cuda_attention: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention: ok\n");
    return 0;
}
