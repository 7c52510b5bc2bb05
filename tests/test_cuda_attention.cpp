/* test_cuda_attention: slm_cuda_rope_store (kernels/cuda/attention.cu) under the SIMT emulator
 * against the CPU backend's attention op (daemon/engine/backends/cpu.c) on the same steps: the
 * rotated q and k and the K/V pool bit for bit (the same float operations, the same f16
 * rounding), for decode batches of several sequences, prefill chunks and whole histories. Its
 * refusals are checked with the attention launcher's (test_cuda_attention_decode). head_dim 64,
 * 80, 96, 128 and 256 (Gemma 3's, with its sliding window, which the store ignores). The
 * attention itself is test_cuda_attention_decode's (the CPU-exact kernel this test also held
 * is gone). */
#include <cuda_runtime_api.h>

#include <algorithm>
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

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tests/attention_fixture.h"
#pragma GCC diagnostic pop

/* One step of fresh random q, k, v: slm_cuda_rope_store on the device, the CPU backend's
 * attention op (RoPE, store, attention) on its pool; rotated q, k and the whole pool must be
 * the CPU's bits. */
static void store_step(fixture &f, const step &s)
{
    int n = (int)s.pos.size();
    std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
    for (auto &x : q) x = 3.0f * frand();
    for (auto &x : k) x = frand();
    for (auto &x : v) x = frand();
    int max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    call c = make_call(f, s, q, k, v, max_ctx);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = slm_cuda_rope_store(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, 0);
    CHECK(rc == 0, "%s rope_store: expected 0, got %d", f.c.name, rc);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "%s: sync: %s", f.c.name, slm_emu_last_report());
    std::vector<float> gq = host(c.q, q.size()), gk = host(c.k, k.size());
    std::vector<uint16_t> gpool = host((uint16_t *)f.gpu_pool, f.layer_halves() * 2);

    std::vector<int32_t> rows(s.seq.begin(), s.seq.end());
    slm_batch b = {n, nullptr, s.pos.data(), rows.data(), f.tables.data(), f.max_blocks, 0, nullptr, nullptr};
    std::vector<float> cout((size_t)n * f.qd());
    rc = f.cpu->ops->attention(f.cpu, &f.pool, 0, &b, &f.p, q.data(), k.data(), v.data(), cout.data());
    CHECK(rc == 0, "%s cpu attention: expected 0, got %d", f.c.name, rc);

    char what[128];
    snprintf(what, sizeof what, "%s %d tokens: rotated q", f.c.name, n);
    same_bits(what, q.data(), gq.data(), q.size() * sizeof(float));
    snprintf(what, sizeof what, "%s %d tokens: rotated k", f.c.name, n);
    same_bits(what, k.data(), gk.data(), k.size() * sizeof(float));
    snprintf(what, sizeof what, "%s %d tokens: K/V pool after the store", f.c.name, n);
    same_bits(what, f.pool.mem, gpool.data(), gpool.size() * sizeof(uint16_t));
    free_call(c);
}

/* Every sequence's history but its last token as one batch, then a prefill chunk of the last
 * sequence, the rest of its history, and one decode token of every sequence. */
static void run_config(const config &c, const int *lens, int chunk_p0, int chunk_n)
{
    fixture f;
    if (setup(f, c, lens)) {
        printf("FAIL %s: setup\n", c.name);
        failures++;
        return;
    }
    const int last = f.n_seq - 1;
    step hist;
    for (int s = 0; s < f.n_seq; s++) append(hist, tokens(s, 0, s == last ? chunk_p0 : lens[s] - 1));
    store_step(f, hist);
    store_step(f, tokens(last, chunk_p0, chunk_p0 + chunk_n));
    if (chunk_p0 + chunk_n < lens[last] - 1) store_step(f, tokens(last, chunk_p0 + chunk_n, lens[last] - 1));
    step dec;
    for (int s = 0; s < f.n_seq; s++) append(dec, tokens(s, lens[s] - 1, lens[s]));
    store_step(f, dec);
    teardown(f);
}

int main(void)
{
    /* SmolLM2's geometry: 9 query heads over 3 KV heads of 64, adjacent-pair RoPE. */
    int lens[4] = {1, 17, 100, 300};
    run_config({"smollm2 9/3x64 norm", 9, 3, 64, 64, 0, 0}, lens, 37, 50);
    /* No GQA, head_dim 128 with a partial NEOX rotation. */
    int lens2[4] = {1, 17, 100, 150};
    run_config({"mha 4/4x128 neox rope 64", 4, 4, 128, 64, 1, 0}, lens2, 37, 40);
    /* head_dim 80 and 96: group 4, a full rotation. */
    int lens3[4] = {2, 5, 40, 140};
    run_config({"8/2x80 neox", 8, 2, 80, 80, 1, 0}, lens3, 37, 20);
    run_config({"4/1x96 norm", 4, 1, 96, 96, 0, 0}, lens3, 37, 20);
    /* Gemma 3's head_dim 256 (270M: 4 query heads over 1 KV head, NEOX), a window of 16. */
    run_config({"gemma3 4/1x256 neox window 16", 4, 1, 256, 256, 1, 16}, lens3, 37, 20);
    if (failures) {
        printf("test_cuda_attention: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention: ok\n");
    return 0;
}
