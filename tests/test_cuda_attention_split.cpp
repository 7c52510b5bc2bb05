/* test_cuda_attention_split: the flash-decoding kernel (kernels/cuda/attention_split.cu)
 * under the SIMT emulator against the CPU backend's attention (daemon/engine/backend_cpu.c)
 * on the same batches within a stated bound, plus a float64 reference of the same f16 inputs
 * with a tight bound; batch invariance (alone vs in a batch vs in a prefill chunk: identical
 * bits); contexts across partition boundaries; the [pos_lo, pos_hi) class bound (tokens
 * outside it untouched); bad arguments refused. */
#include <cuda_runtime_api.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "daemon/engine/backend.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/ops.h"
}
#include "kernels/cuda/attention.h"
#include "kernels/emu/emu_api.h"
#include "tests/check.h"
#include "tests/rng.h"

#include "tests/attention_fixture.h"

/* DECODE and PREFILL are the same launcher (slm_cuda_attention_split over every token of the
 * call); they differ in what the call holds: independent tokens, or a chunk of consecutive
 * positions of one sequence. */

static int split_all(fixture &f, call &c, const slm_cuda_kv_layer *kv, int max_ctx)
{
    return slm_cuda_attention_split(&f.shape, &c.t, kv, c.q, max_ctx, 0, INT_MAX, c.ws, c.ws_bytes, c.out, 0);
}

/*
 * Runs one step on both backends and compares. Bounds:
 * - rotated q, k and the pool: identical bits (the same float operations, the same f16 rounding);
 * - against the CPU backend, 1e-3 absolute (|v| < 1): the CPU rounds each probability to f16
 *   (llama.cpp's arithmetic), up to 2^-11 of each weight, so up to 4.9e-4 of max|v| per
 *   element, and sums in another order; the split kernel keeps the weights in fp32;
 * - against float64 on the same f16 inputs, 5e-6 (about 10x what is seen): fp32 dot products of
 *   head_dim terms with |q.k| up to ~20, fp32 exp and accumulation, in a different order.
 * Returns the GPU output (rotated q left in q_rot).
 */
static std::vector<float> run_step(fixture &f, const step &s, mode m, int p0, std::vector<float> *q_rot)
{
    int n = (int)s.pos.size();
    std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
    for (auto &x : q) x = 3.0f * frand();
    for (auto &x : k) x = frand();
    for (auto &x : v) x = frand();
    int max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    call c = make_call(f, s, q, k, v, max_ctx, slm_cuda_attention_split_workspace);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = slm_cuda_rope_store(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, 0);
    CHECK(rc == 0, "%s rope_store: expected 0, got %d", f.c.name, rc);
    if (m != STORE_ONLY) rc = split_all(f, c, &kv, m == PREFILL ? p0 + n : max_ctx);
    CHECK(rc == 0, "%s attention: expected 0, got %d", f.c.name, rc);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "%s: sync: %s", f.c.name, slm_emu_last_report());
    std::vector<float> gq = host(c.q, q.size()), gk = host(c.k, k.size()), gout = host(c.out, q.size());
    std::vector<uint16_t> gpool = host((uint16_t *)f.gpu_pool, f.layer_halves() * 2);

    std::vector<int32_t> rows(n);
    for (int i = 0; i < n; i++) rows[i] = s.seq[i];
    slm_batch b = {n, nullptr, s.pos.data(), rows.data(), f.tables.data(), f.max_blocks, 0, nullptr};
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
    if (m != STORE_ONLY) {
        snprintf(what, sizeof what, "%s %s of %d tokens vs CPU backend", f.c.name, m == DECODE ? "decode" : "prefill", n);
        compare(what, cout.data(), gout.data(), cout.size(), 1e-3);
        std::vector<float> ref(cout.size());
        for (int i = 0; i < n; i++)
            reference64(f, gpool.data(), q.data() + (size_t)i * f.qd(), s.seq[i], s.pos[i], ref.data() + (size_t)i * f.qd());
        snprintf(what, sizeof what, "%s %s of %d tokens vs float64", f.c.name, m == DECODE ? "decode" : "prefill", n);
        compare(what, ref.data(), gout.data(), ref.size(), 5e-6);
    }
    if (q_rot) *q_rot = gq;
    free_call(c);
    return gout;
}

/* Attention only (no rope, no store) of already rotated q for tokens (seq, pos). */
static std::vector<float> attend(fixture &f, const step &s, const std::vector<float> &q_rot, mode m, int p0)
{
    int n = (int)s.pos.size(), max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    std::vector<float> kv_dummy((size_t)n * f.kvd());
    call c = make_call(f, s, q_rot, kv_dummy, kv_dummy, max_ctx, slm_cuda_attention_split_workspace);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = split_all(f, c, &kv, m == PREFILL ? p0 + n : max_ctx);
    CHECK(rc == 0, "%s attend: expected 0, got %d", f.c.name, rc);
    std::vector<float> out = host(c.out, q_rot.size());
    free_call(c);
    return out;
}

/* Tokens s (rotated q_rot, full outputs want) through the split launcher bounded to
 * [lo, hi): rows in range must be want's bits, the others untouched (out is filled with the
 * finite pattern 0x3f3f3f3f first; the workspace is NaN, so a row merged from partitions that
 * did not run would show). */
static void class_bound(fixture &f, const step &s, const std::vector<float> &q_rot, const std::vector<float> &want,
                        int lo, int hi)
{
    int n = (int)s.pos.size(), max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    std::vector<float> kv_dummy((size_t)n * f.kvd());
    call c = make_call(f, s, q_rot, kv_dummy, kv_dummy, max_ctx, slm_cuda_attention_split_workspace);
    cudaMemset(c.out, 0x3f, q_rot.size() * sizeof(float));
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = slm_cuda_attention_split(&f.shape, &c.t, &kv, c.q, max_ctx, lo, hi, c.ws, c.ws_bytes, c.out, 0);
    CHECK(rc == 0, "%s split [%d, %d): expected 0, got %d", f.c.name, lo, hi, rc);
    std::vector<float> out = host(c.out, q_rot.size());
    int in_range = 0;
    for (int i = 0; i < n; i++) {
        char what[128];
        const float *o = out.data() + (size_t)i * f.qd();
        if (s.pos[i] >= lo && s.pos[i] < hi) {
            snprintf(what, sizeof what, "%s: pos %d in [%d, %d)", f.c.name, s.pos[i], lo, hi);
            same_bits(what, want.data() + (size_t)i * f.qd(), o, f.qd() * sizeof(float));
            in_range++;
        } else {
            for (size_t e = 0; e < f.qd(); e++)
                if (uint32_t bits; memcpy(&bits, &o[e], 4), bits != 0x3f3f3f3fu) {
                    printf("FAIL %s: pos %d outside [%d, %d): out[%zu] written (%.9g)\n", f.c.name, s.pos[i], lo, hi,
                           e, o[e]);
                    failures++;
                    break;
                }
        }
    }
    CHECK(in_range > 0 && in_range < n, "%s: [%d, %d) should split the %d tokens, got %d in range", f.c.name, lo, hi,
          n, in_range);
    free_call(c);
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
    const int last = r.last;
    const step &dec = r.dec;
    const std::vector<float> &chunk_q = r.chunk_q, &chunk_out = r.chunk_out, &dec_q = r.dec_q, &dec_out = r.dec_out;
    char what[128];
    /* ... and one token of the chunk alone, and among the other sequences' decodes. */
    step one = tokens(last, chunk_p0 + 9, chunk_p0 + 10);
    std::vector<float> one_q(chunk_q.begin() + 9 * (long)f.qd(), chunk_q.begin() + 10 * (long)f.qd());
    std::vector<float> one_out = attend(f, one, one_q, DECODE, 0);
    snprintf(what, sizeof what, "%s: token %d alone vs in the chunk", c.name, chunk_p0 + 9);
    same_bits(what, one_out.data(), chunk_out.data() + 9 * f.qd(), one_out.size() * sizeof(float));
    step mixed = tokens(last, chunk_p0 + 9, chunk_p0 + 10);
    append(mixed, dec);
    std::vector<float> mixed_q(one_q);
    mixed_q.insert(mixed_q.end(), dec_q.begin(), dec_q.end());
    std::vector<float> mixed_out = attend(f, mixed, mixed_q, DECODE, 0);
    snprintf(what, sizeof what, "%s: token %d among %d decodes vs in the chunk", c.name, chunk_p0 + 9, f.n_seq);
    same_bits(what, mixed_out.data(), chunk_out.data() + 9 * f.qd(), f.qd() * sizeof(float));
    /* The class bound: with pos_lo / pos_hi around some of the decodes, those rows get their bits
     * and the others are left as they were (NaN). */
    class_bound(f, dec, dec_q, dec_out, lens[1] - 1, lens[last] - 1);
    /* ... and a prefill of part of the chunk gives the same bits for those tokens. */
    step part = tokens(last, chunk_p0 + 5, chunk_p0 + 12);
    std::vector<float> part_q(chunk_q.begin() + 5 * (long)f.qd(), chunk_q.begin() + 12 * (long)f.qd());
    std::vector<float> part_out = attend(f, part, part_q, PREFILL, chunk_p0 + 5);
    snprintf(what, sizeof what, "%s: 7 tokens of the chunk prefilled alone vs in the chunk", c.name);
    same_bits(what, part_out.data(), chunk_out.data() + 5 * f.qd(), part_out.size() * sizeof(float));
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
    call cl = make_call(f, s, q, k, v, 33, slm_cuda_attention_split_workspace);
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    slm_cuda_attn_shape sh = f.shape;
    auto decode = [&](const slm_cuda_attn_shape *shp, const slm_cuda_attn_tokens *t, const slm_cuda_kv_layer *kvl,
                      const float *q_, size_t ws_bytes, float *out) {
        return slm_cuda_attention_split(shp, t, kvl, q_, 33, 0, INT_MAX, cl.ws, ws_bytes, out, 0);
    };
    shared_refusals(f, cl, kv, decode);
    CHECK(slm_cuda_attention_split(&f.shape, &cl.t, &kv, cl.q, 0, 0, INT_MAX, cl.ws, cl.ws_bytes, cl.out, 0) ==
              -EINVAL,
          "max_ctx 0: expected -EINVAL");
    CHECK(slm_cuda_attention_split(&f.shape, &cl.t, &kv, cl.q, 33, -1, INT_MAX, cl.ws, cl.ws_bytes, cl.out, 0) ==
              -EINVAL,
          "pos_lo -1: expected -EINVAL");
    CHECK(slm_cuda_attention_split(&f.shape, &cl.t, &kv, cl.q, 33, 10, 9, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "pos_hi < pos_lo: expected -EINVAL");
    CHECK(slm_cuda_attention_split(&f.shape, &cl.t, &kv, cl.q, 33, 0, INT_MAX, nullptr, cl.ws_bytes, cl.out, 0) ==
              -EINVAL,
          "workspace NULL: expected -EINVAL");
    CHECK(slm_cuda_attention_split_workspace(&sh, 0, 33) == 0, "workspace of 0 tokens: expected 0");
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "sync after bad arguments");
    free_call(cl);
    teardown(f);
}

int main(void)
{
    /* Partitions are 128 positions: the chunks below cross the 128 and 256 boundaries, and the
     * longest contexts span 2 to 3 partitions. */
    /* SmolLM2's geometry: 9 query heads over 3 KV heads of 64, adjacent-pair RoPE. */
    int lens[4] = {1, 17, 130, 300};
    run_config({"smollm2 9/3x64 norm", 9, 3, 64, 64, 0}, lens, 100, 50);
    /* No GQA, head_dim 128 with a partial NEOX rotation. */
    int lens2[4] = {1, 17, 100, 270};
    run_config({"mha 4/4x128 neox rope 64", 4, 4, 128, 64, 1}, lens2, 240, 20);
    /* head_dim 80 and 96: group 4, a full rotation. */
    int lens3[4] = {2, 5, 40, 160};
    run_config({"8/2x80 neox", 8, 2, 80, 80, 1}, lens3, 120, 20);
    run_config({"4/1x96 norm", 4, 1, 96, 96, 0}, lens3, 120, 20);
    bad_arguments();
    if (failures) {
        printf("test_cuda_attention_split: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention_split: ok\n");
    return 0;
}
