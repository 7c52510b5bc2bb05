/* test_cuda_attention_decode: the fused decode launcher (kernels/cuda/attention_decode.cu,
 * slm_cuda_attention_decode_fused: RoPE, the KV store and attention in one launch) under the
 * SIMT emulator, against
 * - the CPU backend's attention op (RoPE, store, attention: daemon/engine/backends/cpu.c) on
 *   the same tokens, within 1e-3 absolute, and a float64 reference on the same f16 cache and
 *   rotated q within 5e-6 (fp32 weights where the CPU rounds them to f16);
 * - slm_cuda_rope_store: the K/V bytes the launch stores are its bytes (identical, not within
 *   an ulp), and so the CPU backend's;
 * and checks batch invariance (each token's out bits alone, among 8 and among 64 tokens of
 * other sequences with other contexts, with a larger max_ctx, and in a second launch on the
 * same workspace: the completion counters are back at zero), the merge's independence from
 * which block finishes last (the emulator's race check: blocks forward and in reverse), NaN
 * rows for tokens past max_ctx or the RoPE table, the refusals (-EINVAL), and, under the
 * emulator's page watch, that the launch reads its K/V before its wait and nothing that the grids
 * before it in a programmatic chain wrote (q, k, v). Contexts 1, 64, 65, 127, 128,
 * 129, 1000 and 4100 (partitions of 64 positions), groups 1, 2, 3, 4, 8 and 16, head_dim 32,
 * 64, 80, 96, 128 and 256, both RoPE layouts; sliding windows (gemma3's local layers) of 16 and 100,
 * which skip whole partitions before the window and mask positions inside its first one. */
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cerrno>
#include <climits>
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
#include "kernels/cuda/kernels.h"
#include "kernels/emu/emu_api.h"
#include "tests/check.h"
#include "tests/rng.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "tests/attention_fixture.h"
#pragma GCC diagnostic pop

static const double CPU_TOL = 1e-3, REF_TOL = 5e-6;

/* The contexts (pos + 1) of the sequences every configuration decodes. */
static const int MAIN_LENS[] = {1, 64, 65, 127, 128, 129, 1000, 4100};
static const int N_MAIN = (int)(sizeof MAIN_LENS / sizeof MAIN_LENS[0]);

/* One token of each of the sequences rows: the decode step of sequence s at pos lens[s] - 1. */
static step decode_step(const std::vector<int> &lens, const std::vector<int> &rows)
{
    step s;
    for (int r : rows) {
        s.pos.push_back(lens[r] - 1);
        s.seq.push_back(r);
    }
    return s;
}

/* Device state of one fused call (the fixture's make_call): tokens s, raw (unrotated) q, k, v,
 * a workspace whose partials are NaN, out NaN; its completion counters zeroed here. */
static call make_dcall(fixture &f, const step &s, const std::vector<float> &q, const std::vector<float> &k,
                       const std::vector<float> &v, int max_ctx)
{
    call c = make_call(f, s, q, k, v, max_ctx);
    cudaMemset(c.ws, 0, SLM_CUDA_ATTN_DECODE_COUNTER_BYTES);
    return c;
}

static int fused(fixture &f, call &c, int max_ctx)
{
    slm_cuda_kv_layer kv = kv_of(f);
    return slm_cuda_attention_decode_fused(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, max_ctx, c.ws, c.ws_bytes,
                                           c.out, 0);
}

/* The counters of c's workspace: all zero after a launch. */
static void counters_zero(const char *what, const call &c, int n_head_kv)
{
    std::vector<uint32_t> cnt = host((const uint32_t *)c.ws, (size_t)c.n * n_head_kv);
    for (size_t i = 0; i < cnt.size(); i++)
        if (cnt[i]) {
            printf("FAIL %s: counter %zu after the launch: expected 0, got %u\n", what, i, cnt[i]);
            failures++;
            return;
        }
}

/* Out of the fused launcher over tokens s (raw q, k, v) with max_ctx; race-checked when asked
 * (the emulator runs the grid with its blocks forward and in reverse and compares all memory:
 * a merge whose result depends on the last block to finish fails the launch). */
static std::vector<float> fused_out(fixture &f, const step &s, const std::vector<float> &q,
                                    const std::vector<float> &k, const std::vector<float> &v, int max_ctx,
                                    bool racecheck = false)
{
    call c = make_dcall(f, s, q, k, v, max_ctx);
    slm_emu_options o;
    slm_emu_get_options(&o);
    if (racecheck) {
        slm_emu_options rc_opt = o;
        rc_opt.racecheck = 1;
        slm_emu_set_options(&rc_opt);
    }
    int rc = fused(f, c, max_ctx);
    cudaError_t e = cudaDeviceSynchronize();
    if (racecheck) slm_emu_set_options(&o);
    CHECK(rc == 0, "%s fused (%d tokens, max_ctx %d): expected 0, got %d", f.c.name, c.n, max_ctx, rc);
    CHECK(e == cudaSuccess, "%s fused (%d tokens%s): %s", f.c.name, c.n, racecheck ? ", race check" : "",
          slm_emu_last_report());
    std::vector<float> out = host(c.out, q.size());
    char what[128];
    snprintf(what, sizeof what, "%s: %d tokens", f.c.name, c.n);
    counters_zero(what, c, f.c.n_head_kv);
    free_call(c);
    return out;
}

/* Fills every sequence's positions 0 .. lens[s] - 2 with random k and v through
 * slm_cuda_rope_store (the CPU backend's store bits, test_cuda_attention) and mirrors the
 * device pool into the CPU backend's. */
static void fill_history(fixture &f, const std::vector<int> &lens)
{
    step hist;
    for (int s = 0; s < f.n_seq; s++) append(hist, tokens(s, 0, lens[s] - 1));
    int n = (int)hist.pos.size();
    if (n) {
        std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
        for (auto &x : k) x = frand();
        for (auto &x : v) x = frand();
        int32_t *pos = dev(hist.pos), *seq = dev(hist.seq);
        float *dq = dev(q), *dk = dev(k), *dv = dev(v);
        slm_cuda_attn_tokens t = {n, pos, seq, f.d_tables, f.n_seq, f.max_blocks, nullptr, 0};
        slm_cuda_kv_layer kv = kv_of(f);
        int rc = slm_cuda_rope_store(&f.shape, &t, &kv, &f.rope, dq, dk, dv, 0);
        CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s history store: %d", f.c.name, rc);
        cudaFree(pos), cudaFree(seq), cudaFree(dq), cudaFree(dk), cudaFree(dv);
    }
    cudaMemcpy(f.pool.mem, f.gpu_pool, f.layer_halves() * 2 * sizeof(uint16_t), cudaMemcpyDeviceToHost);
}

/* The decode step s (raw q, k, v): the reference store by slm_cuda_rope_store on a copy of the
 * pool, then the fused launch on the original pool: stored bytes identical, out within the
 * bounds of the CPU backend (which stores and attends on its pool: the same bytes again) and
 * of float64; then a second launch on the same workspace: the same bits. Returns out. */
static std::vector<float> check_decode(fixture &f, const step &s, const std::vector<float> &q,
                                       const std::vector<float> &k, const std::vector<float> &v, int max_ctx)
{
    const int n = (int)s.pos.size();
    const size_t pool_halves = f.layer_halves() * 2;
    std::vector<uint16_t> pool0 = host((uint16_t *)f.gpu_pool, pool_halves);
    /* The reference store (and rotated q) of slm_cuda_rope_store. */
    call r = make_dcall(f, s, q, k, v, max_ctx);
    slm_cuda_kv_layer kv = kv_of(f);
    int rc = slm_cuda_rope_store(&f.shape, &r.t, &kv, &f.rope, r.q, r.k, r.v, 0);
    CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s rope_store: %d", f.c.name, rc);
    std::vector<float> q_rot = host(r.q, q.size());
    std::vector<uint16_t> pool_rs = host((uint16_t *)f.gpu_pool, pool_halves);
    /* slm_cuda_attention_paged over what rope_store left (q rotated, k and v stored): the path
     * of every step that is not decode-only. It must give the fused launch's bits. */
    rc = slm_cuda_attention_paged(&f.shape, &r.t, &kv, r.q, max_ctx, r.ws, r.ws_bytes, r.out, 0);
    CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s paged: %d (%s)", f.c.name, rc, slm_emu_last_report());
    std::vector<float> out_paged = host(r.out, q.size());
    free_call(r);
    cudaMemcpy(f.gpu_pool, pool0.data(), pool_halves * sizeof(uint16_t), cudaMemcpyHostToDevice);

    call c = make_dcall(f, s, q, k, v, max_ctx);
    rc = fused(f, c, max_ctx);
    CHECK(rc == 0, "%s fused: expected 0, got %d", f.c.name, rc);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "%s fused: sync: %s", f.c.name, slm_emu_last_report());
    std::vector<float> out = host(c.out, q.size());
    std::vector<uint16_t> pool_f = host((uint16_t *)f.gpu_pool, pool_halves);
    char what[160];
    snprintf(what, sizeof what, "%s %d tokens: K/V pool after the fused store vs slm_cuda_rope_store's", f.c.name, n);
    same_bits(what, pool_rs.data(), pool_f.data(), pool_halves * sizeof(uint16_t));
    snprintf(what, sizeof what, "%s %d tokens: first launch", f.c.name, n);
    counters_zero(what, c, f.c.n_head_kv);

    /* The CPU backend: RoPE, store, attention of the same tokens on its pool. */
    std::vector<float> cq(q), ck(k), cv(v), cout(q.size());
    std::vector<int32_t> rows(s.seq.begin(), s.seq.end());
    slm_batch b = {n, nullptr, s.pos.data(), rows.data(), f.tables.data(), f.max_blocks, 0, nullptr, nullptr};
    rc = f.cpu->ops->attention(f.cpu, &f.pool, 0, &b, &f.p, cq.data(), ck.data(), cv.data(), cout.data());
    CHECK(rc == 0, "%s cpu attention: expected 0, got %d", f.c.name, rc);
    snprintf(what, sizeof what, "%s %d tokens: K/V pool, fused vs CPU backend", f.c.name, n);
    same_bits(what, f.pool.mem, pool_f.data(), pool_halves * sizeof(uint16_t));
    snprintf(what, sizeof what, "%s %d tokens: rotated q, rope_store vs CPU backend", f.c.name, n);
    same_bits(what, cq.data(), q_rot.data(), q.size() * sizeof(float));
    snprintf(what, sizeof what, "%s decode of %d tokens vs CPU backend", f.c.name, n);
    compare(what, cout.data(), out.data(), out.size(), CPU_TOL);
    std::vector<float> ref(out.size());
    for (int i = 0; i < n; i++)
        reference64(f, pool_f.data(), q_rot.data() + (size_t)i * f.qd(), s.seq[i], s.pos[i], ref.data() + (size_t)i * f.qd());
    snprintf(what, sizeof what, "%s decode of %d tokens vs float64", f.c.name, n);
    compare(what, ref.data(), out.data(), out.size(), REF_TOL);

    snprintf(what, sizeof what, "%s %d tokens: slm_cuda_attention_paged after rope_store vs the fused launch", f.c.name,
             n);
    same_bits(what, out.data(), out_paged.data(), out.size() * sizeof(float));

    /* A second launch on the same workspace (as a replayed graph): the counters the first left
     * must let it merge again; the store writes the same bytes. */
    cudaMemset(c.out, 0xff, q.size() * sizeof(float));
    rc = fused(f, c, max_ctx);
    CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s second launch: %d", f.c.name, rc);
    std::vector<float> out2 = host(c.out, q.size());
    snprintf(what, sizeof what, "%s %d tokens: second launch on the same workspace vs first", f.c.name, n);
    same_bits(what, out.data(), out2.data(), out.size() * sizeof(float));
    snprintf(what, sizeof what, "%s %d tokens: second launch", f.c.name, n);
    counters_zero(what, c, f.c.n_head_kv);
    free_call(c);
    return out;
}

/* The programmatic discipline (docs/cuda.md, "Programmatic dependent launch"), under the
 * emulator's page watch: after grids of the chain that write q, k and v (k_scale by 1, as the
 * Q/K/V matmul writes them in a step), the fused launch reads its K/V rows before its wait and
 * nothing those grids wrote; out is check_decode's. Not under ASan (no page watch there). */
static void check_programmatic(fixture &f, const step &s, const std::vector<float> &q, const std::vector<float> &k,
                               const std::vector<float> &v, int max_ctx, const std::vector<float> &want)
{
#if !defined(__SANITIZE_ADDRESS__)
    if (!slm_emu_active() || !slm_cuda_pdl_launches()) return;
    call c = make_dcall(f, s, q, k, v, max_ctx);
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "%s programmatic: setup", f.c.name);
    slm_emu_launch_log(2);
    int rc = slm_cuda_scale(c.q, q.size(), 1.0f, 0);
    if (!rc) rc = slm_cuda_scale(c.k, k.size(), 1.0f, 0);
    if (!rc) rc = slm_cuda_scale(c.v, v.size(), 1.0f, 0);
    if (!rc) rc = fused(f, c, max_ctx);
    cudaError_t e = cudaDeviceSynchronize();
    slm_emu_launch_log(0);
    CHECK(rc == 0 && e == cudaSuccess, "%s programmatic: %d (%s)", f.c.name, rc, slm_emu_last_report());
    const struct slm_emu_launch_record *r;
    size_t n = slm_emu_launch_log_get(&r);
    CHECK(n == 4 && strstr(r[3].name, "k_attention") && r[3].pdl && r[3].faults_before_wait == 0 &&
              r[3].reads_before_wait > 0,
          "%s programmatic: expected the fused launch 4th, programmatic, reading K/V and nothing the chain wrote "
          "before its wait; got %zu records, %s, %lld forbidden, %lld allowed", f.c.name, n, n ? r[n - 1].name : "-",
          n ? r[n - 1].faults_before_wait : -1, n ? r[n - 1].reads_before_wait : -1);
    std::vector<float> out = host(c.out, q.size());
    char what[160];
    snprintf(what, sizeof what, "%s: the fused launch after the chain's grids vs check_decode's", f.c.name);
    same_bits(what, want.data(), out.data(), out.size() * sizeof(float));
    free_call(c);
#else
    (void)f, (void)s, (void)q, (void)k, (void)v, (void)max_ctx, (void)want;
#endif
}

/* Rows idx of the step's out must be the bits of want's rows want_idx. */
static void same_rows(const fixture &f, const char *what, const std::vector<float> &got, const std::vector<float> &want,
                      const std::vector<int> &want_idx)
{
    std::vector<float> w = pick(want, f.qd(), want_idx);
    same_bits(what, w.data(), got.data(), w.size() * sizeof(float));
}

/* One configuration: the main contexts plus n_extra sequences of random contexts (1..300), all
 * decoded in one step, then the invariance runs. */
static void run_config(const config &c, int n_extra, bool racecheck)
{
    std::vector<int> lens(MAIN_LENS, MAIN_LENS + N_MAIN);
    for (int i = 0; i < n_extra; i++) lens.push_back(1 + (int)(rnd() % 300));
    fixture f;
    f.n_seq = (int)lens.size();
    if (setup(f, c, lens.data())) {
        printf("FAIL %s: setup\n", c.name);
        failures++;
        return;
    }
    fill_history(f, lens);
    const int n = f.n_seq;
    std::vector<int> all(n);
    for (int i = 0; i < n; i++) all[i] = i;
    step s = decode_step(lens, all);
    std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
    for (auto &x : q) x = 3.0f * frand();
    for (auto &x : k) x = frand();
    for (auto &x : v) x = frand();
    int max_ctx = *std::max_element(lens.begin(), lens.end());
    std::vector<float> out = check_decode(f, s, q, k, v, max_ctx);
    check_programmatic(f, s, q, k, v, max_ctx, out);
    char what[160];

    /* Each main token alone, with max_ctx its own context. */
    for (int i = 0; i < N_MAIN; i++) {
        std::vector<int> one = {i};
        step s1 = decode_step(lens, one);
        std::vector<float> o1 = fused_out(f, s1, pick(q, f.qd(), one), pick(k, f.kvd(), one), pick(v, f.kvd(), one),
                                          lens[i]);
        snprintf(what, sizeof what, "%s: context %d alone vs among %d", c.name, lens[i], n);
        same_rows(f, what, o1, out, one);
    }
    /* Subsets of other sizes and orders, with a larger max_ctx than any of them needs. */
    std::vector<std::vector<int>> subsets;
    std::vector<int> rev(all.rbegin(), all.rend());
    subsets.push_back(rev);
    if (n > 8) {
        std::vector<int> eight = {n - 1, 6, 0, n / 2, 3, 7, 1, n - 2};   /* 8 tokens, other contexts */
        subsets.push_back(eight);
    }
    for (const auto &sub : subsets) {
        step ss = decode_step(lens, sub);
        std::vector<float> o = fused_out(f, ss, pick(q, f.qd(), sub), pick(k, f.kvd(), sub), pick(v, f.kvd(), sub),
                                         max_ctx + 300);
        snprintf(what, sizeof what, "%s: %zu tokens (max_ctx %d) vs the step of %d", c.name, sub.size(),
                 max_ctx + 300, n);
        same_rows(f, what, o, out, sub);
    }
    /* The merge does not depend on which block finishes last: forward and reverse schedules. */
    if (racecheck && slm_emu_active()) {
        std::vector<int> sub = {1, 3, 5, 7};   /* contexts 64, 127, 129, 4100 */
        step ss = decode_step(lens, sub);
        std::vector<float> o = fused_out(f, ss, pick(q, f.qd(), sub), pick(k, f.kvd(), sub), pick(v, f.kvd(), sub),
                                         max_ctx, true);
        snprintf(what, sizeof what, "%s: 4 tokens race-checked vs the step", c.name);
        same_rows(f, what, o, out, sub);
    }
    teardown(f);
}

/* Refusals, and the NaN rows of tokens past max_ctx. */
static void bad_arguments(void)
{
    int lens[4] = {1, 17, 70, 130};
    config c = {"args", 9, 3, 64, 64, 0, 0};
    fixture f;
    if (setup(f, c, lens)) {
        failures++;
        return;
    }
    step s = decode_step({1, 17, 70, 130}, {1, 2, 3});
    std::vector<float> q(3 * f.qd()), k(3 * f.kvd()), v(3 * f.kvd());
    for (auto &x : q) x = frand();
    for (auto &x : k) x = frand();
    for (auto &x : v) x = frand();
    call cl = make_dcall(f, s, q, k, v, 130);
    slm_cuda_kv_layer kv = kv_of(f);
    auto launch = [&](const slm_cuda_attn_shape *shp, const slm_cuda_attn_tokens *t, const slm_cuda_kv_layer *kvl,
                      const slm_cuda_rope_table *rope, const float *q_, const float *k_, const float *v_, int max_ctx,
                      void *ws, size_t ws_bytes, float *out) {
        return slm_cuda_attention_decode_fused(shp, t, kvl, rope, q_, k_, v_, max_ctx, ws, ws_bytes, out, 0);
    };
    auto decode = [&](const slm_cuda_attn_shape *shp, const slm_cuda_attn_tokens *t, const slm_cuda_kv_layer *kvl,
                      const float *q_, size_t ws_bytes, float *out) {
        return launch(shp, t, kvl, &f.rope, q_, cl.k, cl.v, 130, cl.ws, ws_bytes, out);
    };
    /* The shape, NULLs, the workspace size, 0 tokens (and rope_store's, which shares them). */
    call shared{};
    shared.n = cl.n, shared.pos = cl.pos, shared.seq = cl.seq, shared.q = cl.q, shared.k = cl.k, shared.v = cl.v;
    shared.out = cl.out, shared.ws = cl.ws, shared.ws_bytes = cl.ws_bytes, shared.t = cl.t;
    shared_refusals(f, shared, kv, decode);
    cudaMemcpy(cl.q, q.data(), q.size() * 4, cudaMemcpyHostToDevice);   /* rope_store rotated them */
    cudaMemcpy(cl.k, k.data(), k.size() * 4, cudaMemcpyHostToDevice);
    const float *K = cl.k, *V = cl.v;
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, K, V, 0, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "max_ctx 0: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, &kv, nullptr, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "rope NULL: expected -EINVAL");
    slm_cuda_rope_table no_table = {nullptr, 0};
    CHECK(launch(&f.shape, &cl.t, &kv, &no_table, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "no rope table with rope_dim 64: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, nullptr, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "k NULL: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, K, nullptr, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "v NULL: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, K, V, 130, nullptr, cl.ws_bytes, cl.out) == -EINVAL,
          "workspace NULL: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, nullptr, &f.rope, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "kv NULL: expected -EINVAL");
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, K, V, 193, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "max_ctx 193 (4 partitions) past the workspace of 130 (3): expected -EINVAL");
    slm_cuda_kv_layer odd = kv;
    odd.k = (uint16_t *)kv.k + 1;
    CHECK(launch(&f.shape, &cl.t, &odd, &f.rope, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
          "K cache not 16-byte aligned: expected -EINVAL");
    CHECK(slm_cuda_attention_paged(&f.shape, &cl.t, &kv, cl.q, 193, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "paged: max_ctx 193 past the workspace of 130: expected -EINVAL");
    CHECK(slm_cuda_attention_paged(&f.shape, &cl.t, &odd, cl.q, 130, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "paged: K cache not 16-byte aligned: expected -EINVAL");
    CHECK(slm_cuda_attention_paged(&f.shape, &cl.t, &kv, nullptr, 130, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "paged: q NULL: expected -EINVAL");
    CHECK(slm_cuda_attention_decode_fused_workspace(&f.shape, 0, 130) == 0, "workspace of 0 tokens: expected 0");
    CHECK(slm_cuda_attention_decode_fused_workspace(&f.shape, 1, 0) == 0, "workspace of max_ctx 0: expected 0");
    /* More (token, KV head) slots than the counters: 5462 tokens x 3 KV heads > 16384. */
    {
        const int big = SLM_CUDA_ATTN_DECODE_SLOTS / 3 + 1;
        std::vector<int32_t> bp(big, 0), bs(big, 0);
        std::vector<float> bq((size_t)big * f.qd()), bk((size_t)big * f.kvd());
        int32_t *dp = dev(bp), *ds = dev(bs);
        float *dq = dev(bq), *dk = dev(bk), *dout = dev(bq);
        size_t wsb = slm_cuda_attention_decode_fused_workspace(&f.shape, big, 1);
        void *ws = nullptr;
        cudaMalloc(&ws, wsb);
        slm_cuda_attn_tokens t = {big, dp, ds, f.d_tables, f.n_seq, f.max_blocks, nullptr, 0};
        CHECK(launch(&f.shape, &t, &kv, &f.rope, dq, dk, dk, 1, ws, wsb, dout) == -EINVAL,
              "%d tokens x 3 KV heads > %d slots: expected -EINVAL", big, SLM_CUDA_ATTN_DECODE_SLOTS);
        cudaFree(dp), cudaFree(ds), cudaFree(dq), cudaFree(dk), cudaFree(dout), cudaFree(ws);
    }
    if (slm_emu_active()) {   /* what only the emulator's pointer checks see */
        slm_emu_options o, quiet;
        slm_emu_get_options(&o);
        quiet = o;
        quiet.quiet = 1;
        slm_emu_set_options(&quiet);
        CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, k.data(), V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
              "host k: expected -EINVAL");
        slm_cuda_rope_table big = {f.rope.cos_sin, f.rope.positions + 1};
        CHECK(launch(&f.shape, &cl.t, &kv, &big, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == -EINVAL,
              "rope table longer than its memory: expected -EINVAL");
        slm_emu_set_options(&o);
        cudaGetLastError();
    }
    /* What a backend asks before it takes a model: each geometry the kernels do not run, refused
     * with its reason and its numbers. */
    {
        char why[256];
        CHECK(slm_cuda_attention_shape_check(&f.shape, why, sizeof why) == 0, "shape check of 9/3x64: expected 0");
        struct {
            int n_head, n_head_kv, head_dim, rope_dim, window;
            const char *says;
        } bad[] = {
            {8, 2, 48, 48, 0, "of dimension 48"},
            {8, 2, 72, 72, 0, "not one of 32, 64, 80, 96, 128, 256"},
            {34, 2, 64, 64, 0, "more than 16 query heads a key/value head"},
            {16, 1, 256, 256, 0, "at head dimension 256"},
            {9, 2, 64, 64, 0, "not a whole multiple"},
            {8, 2, 64, 63, 0, "rotated dimensions not even or past the head (63 rotated"},
            {8, 2, 64, 64, -1, "a negative sliding window (-1)"},
        };
        for (const auto &b : bad) {
            slm_cuda_attn_shape sh = f.shape;
            sh.n_head = b.n_head, sh.n_head_kv = b.n_head_kv, sh.head_dim = b.head_dim, sh.rope_dim = b.rope_dim;
            sh.window = b.window;
            why[0] = 0;
            CHECK(slm_cuda_attention_shape_check(&sh, why, sizeof why) == -EINVAL && strstr(why, b.says),
                  "shape check of %d/%dx%d rope %d window %d: expected -EINVAL saying '%s', got '%s'", b.n_head,
                  b.n_head_kv, b.head_dim, b.rope_dim, b.window, b.says, why);
        }
        CHECK(slm_cuda_attention_shape_check(nullptr, nullptr, 0) == -EINVAL, "shape check of NULL: expected -EINVAL");
    }
    /* rope_dim 0 needs no table. */
    slm_cuda_attn_shape flat = f.shape;
    flat.rope_dim = 0;
    CHECK(launch(&flat, &cl.t, &kv, &no_table, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == 0,
          "rope_dim 0 without a table: expected 0");
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "rope_dim 0: sync: %s", slm_emu_last_report());
    /* A RoPE table of 1 position: every token (positions 16, 69, 129) past it gets NaN q and k,
     * so a NaN out row, and stores what slm_cuda_rope_store stores (NaN k). */
    {
        slm_cuda_rope_table one = {f.rope.cos_sin, 1};
        const size_t halves = f.layer_halves() * 2;
        std::vector<uint16_t> pool0 = host((uint16_t *)f.gpu_pool, halves);
        call r = make_dcall(f, s, q, k, v, 130);
        CHECK(slm_cuda_rope_store(&f.shape, &r.t, &kv, &one, r.q, r.k, r.v, 0) == 0, "short table rope_store");
        cudaDeviceSynchronize();
        std::vector<uint16_t> pool_rs = host((uint16_t *)f.gpu_pool, halves);
        free_call(r);
        cudaMemcpy(f.gpu_pool, pool0.data(), halves * 2, cudaMemcpyHostToDevice);
        CHECK(launch(&f.shape, &cl.t, &kv, &one, cl.q, K, V, 130, cl.ws, cl.ws_bytes, cl.out) == 0,
              "short rope table: expected 0");
        CHECK(cudaDeviceSynchronize() == cudaSuccess, "short rope table: sync: %s", slm_emu_last_report());
        std::vector<float> o = host(cl.out, q.size());
        int nan = 0;
        for (float x : o) nan += std::isnan(x);
        CHECK(nan == (int)o.size(), "short rope table: expected %zu NaN outputs, got %d", o.size(), nan);
        std::vector<uint16_t> pool_f = host((uint16_t *)f.gpu_pool, halves);
        same_bits("short rope table: K/V pool, fused vs slm_cuda_rope_store", pool_rs.data(), pool_f.data(),
                  halves * sizeof(uint16_t));
        counters_zero("short rope table", cl, 3);
    }
    /* max_ctx 100 < the last token's 130: its row NaN, the others finite, the counters zero. */
    cudaMemset(cl.out, 0, q.size() * 4);
    CHECK(launch(&f.shape, &cl.t, &kv, &f.rope, cl.q, K, V, 100, cl.ws, cl.ws_bytes, cl.out) == 0,
          "max_ctx 100: expected 0");
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "max_ctx 100: sync: %s", slm_emu_last_report());
    std::vector<float> o = host(cl.out, q.size());
    for (int i = 0; i < 3; i++) {
        int nan = 0, finite = 0;
        for (size_t e = 0; e < f.qd(); e++) nan += std::isnan(o[i * f.qd() + e]), finite += std::isfinite(o[i * f.qd() + e]);
        bool past = s.pos[i] + 1 > 100;
        CHECK(past ? nan == (int)f.qd() : finite == (int)f.qd(), "max_ctx 100, token at pos %d: expected a %s row",
              s.pos[i], past ? "NaN" : "finite");
    }
    counters_zero("max_ctx 100", cl, 3);
    free_call(cl);
    teardown(f);
}

int main(void)
{
    /* SmolLM2's geometry (9 query heads over 3 KV heads of 64, adjacent-pair RoPE) among 64
     * tokens; the others among 8 or 10. */
    run_config({"smollm2 9/3x64 norm", 9, 3, 64, 64, 0, 0}, 56, true);
    run_config({"mha 4/4x128 neox rope 64", 4, 4, 128, 64, 1, 0}, 0, true);
    run_config({"8/2x128 norm", 8, 2, 128, 128, 0, 0}, 2, false);
    run_config({"8/1x64 neox", 8, 1, 64, 64, 1, 0}, 0, true);
    run_config({"16/1x128 neox rope 32", 16, 1, 128, 32, 1, 0}, 0, false);
    run_config({"8/2x80 neox", 8, 2, 80, 80, 1, 0}, 0, false);
    run_config({"4/1x96 norm", 4, 1, 96, 96, 0, 0}, 0, false);
    /* Qwen2-style small heads (the synthetic qwen2 of tests/golden/make_arch_models.py: 4 query
     * heads over 2 KV heads of 32, NEOX). */
    run_config({"4/2x32 neox", 4, 2, 32, 32, 1, 0}, 2, true);
    /* Gemma 3 270M's geometry (4 query heads over 1 KV head of 256, NEOX) with its local layers'
     * window (512 there; 16 here, so that every context above 16 is cut), and without one. */
    run_config({"gemma3 4/1x256 neox window 16", 4, 1, 256, 256, 1, 16}, 0, true);
    run_config({"2/1x256 neox", 2, 1, 256, 256, 1, 0}, 0, false);
    /* A window of 100 over groups of 4: its first position inside a partition, 1 or 2 partitions. */
    run_config({"8/2x64 norm window 100", 8, 2, 64, 64, 0, 100}, 2, false);
    bad_arguments();
    if (failures) {
        printf("test_cuda_attention_decode: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention_decode: ok\n");
    return 0;
}
