/* test_cuda_attention_prefill: slm_cuda_attention_paged with tiles (kernels/cuda/attention_decode.cu:
 * flash attention on tensor cores, a tile's tokens sharing each K and V row) under the SIMT
 * emulator, on steps that are not decode-only: whole prompts, chunks that attend to earlier
 * cached positions (chunked prefill, a prefix-cache hit), and a decode token of another sequence
 * in the same step. Checked against
 * - the CPU backend's attention op on the same step (within 1e-3 absolute) and a float64
 *   reference on the same f16 cache and q (within 5e-6), as test_cuda_attention_decode bounds
 *   the decode;
 * - itself, for batch invariance: every token's out bits are the same with the host's tiles
 *   (slm_cuda_attention_tiles), with one token a tile (no tiles), with tiles of other sizes, when
 *   the prompt is cut into other chunks, and decoded alone by slm_cuda_attention_decode_fused
 *   (a preempted request's recomputation gives the bits its decode gave);
 * - the emulator's race check (blocks forward and in reverse);
 * and the refusals of the tile arguments. Groups 1, 2, 3, 4, 16; head_dim 32, 64, 80, 96, 128, 256;
 * Gemma 3's sliding windows of 16 and 100. */
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

static const double CPU_TOL = 1e-3, REF_TOL = 5e-6;

/* Stores positions [0, hist[s]) of every sequence s (random k and v) through
 * slm_cuda_rope_store, and mirrors the device pool into the CPU backend's. */
static void store_history(fixture &f, const std::vector<int> &hist)
{
    step h;
    for (int s = 0; s < f.n_seq; s++) append(h, tokens(s, 0, hist[s]));
    const int n = (int)h.pos.size();
    if (n) {
        std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
        for (auto &x : k) x = frand();
        for (auto &x : v) x = frand();
        call c = make_call(f, h, q, k, v, 1);
        slm_cuda_kv_layer kv = kv_of(f);
        int rc = slm_cuda_rope_store(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, 0);
        CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s history store: %d", f.c.name, rc);
        free_call(c);
    }
    cudaMemcpy(f.pool.mem, f.gpu_pool, f.layer_halves() * 2 * sizeof(uint16_t), cudaMemcpyDeviceToHost);
}

/* slm_cuda_attention_paged over c (q already rotated, the step stored) with the given tiles
 * (host pairs; empty: none, one token a block); the workspace's counters zeroed first and
 * checked zero after. Returns out. */
static std::vector<float> paged(fixture &f, call &c, int max_ctx, const std::vector<int32_t> &tiles,
                                bool racecheck = false)
{
    slm_cuda_kv_layer kv = kv_of(f);
    cudaMemset(c.ws, 0, SLM_CUDA_ATTN_DECODE_COUNTER_BYTES);
    cudaMemset(c.out, 0xff, (size_t)c.n * f.qd() * sizeof(float));
    slm_cuda_attn_tokens t = c.t;
    int32_t *d_tiles = tiles.empty() ? nullptr : dev(tiles);
    t.tiles = d_tiles, t.n_tiles = (int)tiles.size() / 2;
    slm_emu_options o;
    slm_emu_get_options(&o);
    if (racecheck) {
        slm_emu_options r = o;
        r.racecheck = 1;
        slm_emu_set_options(&r);
    }
    int rc = slm_cuda_attention_paged(&f.shape, &t, &kv, c.q, max_ctx, c.ws, c.ws_bytes, c.out, 0);
    cudaError_t e = cudaDeviceSynchronize();
    if (racecheck) slm_emu_set_options(&o);
    CHECK(rc == 0 && e == cudaSuccess, "%s paged (%d tokens, %d tiles%s): %d (%s)", f.c.name, c.n, t.n_tiles,
          racecheck ? ", race check" : "", rc, slm_emu_last_report());
    std::vector<uint32_t> cnt = host((const uint32_t *)c.ws, (size_t)c.n * f.c.n_head_kv);
    for (size_t i = 0; i < cnt.size(); i++)
        if (cnt[i]) {
            printf("FAIL %s paged: counter %zu after the launch: %u\n", f.c.name, i, cnt[i]);
            failures++;
            break;
        }
    if (d_tiles) cudaFree(d_tiles);
    return host(c.out, (size_t)c.n * f.qd());
}

/* Tiles of at most `per` tokens, cut at every change of sequence (slm_cuda_attention_tiles' rule
 * with another size). */
static std::vector<int32_t> tiles_of(const step &s, int per)
{
    std::vector<int32_t> t;
    for (int i = 0; i < (int)s.seq.size();) {
        int e = i + 1;
        while (e < (int)s.seq.size() && e - i < per && s.seq[e] == s.seq[i]) e++;
        t.push_back(i);
        t.push_back(e - i);
        i = e;
    }
    return t;
}

/* The step (each sequence's chunk [hist[s], hist[s] + len[s])) after history hist, q, k, v
 * random: rope_store, then the paged attention with the host's tiles, checked against the CPU
 * backend and float64, and the other tilings and the race check for the same bits. Returns out
 * (and the rotated q in q_rot). */
static std::vector<float> run_step(fixture &f, const step &s, const std::vector<float> &q,
                                   const std::vector<float> &k, const std::vector<float> &v, int max_ctx, bool racecheck)
{
    const int n = (int)s.pos.size();
    char what[200];
    call c = make_call(f, s, q, k, v, max_ctx);
    slm_cuda_kv_layer kv = kv_of(f);
    int rc = slm_cuda_rope_store(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, 0);
    CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s rope_store: %d", f.c.name, rc);
    std::vector<float> q_rot = host(c.q, q.size());
    std::vector<uint16_t> pool = host((uint16_t *)f.gpu_pool, f.layer_halves() * 2);

    std::vector<int32_t> tiles(2 * (size_t)n);
    int n_tiles = slm_cuda_attention_tiles(&f.shape, s.seq.data(), n, tiles.data());
    const int per = slm_cuda_attention_tile_tokens(&f.shape);
    CHECK(n_tiles >= 1 && n_tiles <= n, "%s: slm_cuda_attention_tiles gave %d for %d tokens", f.c.name, n_tiles, n);
    if (n_tiles < 1) {
        free_call(c);
        return {};
    }
    tiles.resize(2 * (size_t)n_tiles);
    std::vector<int32_t> want = tiles_of(s, per);
    CHECK(tiles == want, "%s: slm_cuda_attention_tiles' tiles are not runs of one sequence of at most %d", f.c.name,
          per);
    std::vector<float> out = paged(f, c, max_ctx, tiles);

    /* The CPU backend: RoPE, store and attention of the same step on its pool. */
    std::vector<float> cq(q), ck(k), cv(v), cout(q.size());
    std::vector<int32_t> rows(s.seq.begin(), s.seq.end()), pos(s.pos.begin(), s.pos.end());
    slm_batch b = {n, nullptr, pos.data(), rows.data(), f.tables.data(), f.max_blocks, 0, nullptr, nullptr};
    rc = f.cpu->ops->attention(f.cpu, &f.pool, 0, &b, &f.p, cq.data(), ck.data(), cv.data(), cout.data());
    CHECK(rc == 0, "%s cpu attention: %d", f.c.name, rc);
    snprintf(what, sizeof what, "%s K/V pool after the step, rope_store vs CPU backend", f.c.name);
    same_bits(what, f.pool.mem, pool.data(), pool.size() * sizeof(uint16_t));
    snprintf(what, sizeof what, "%s step of %d tokens (%d tiles of <= %d) vs CPU backend", f.c.name, n, n_tiles, per);
    compare(what, cout.data(), out.data(), out.size(), CPU_TOL);
    std::vector<float> ref(out.size());
    for (int i = 0; i < n; i++)
        reference64(f, pool.data(), q_rot.data() + (size_t)i * f.qd(), s.seq[i], s.pos[i], ref.data() + (size_t)i * f.qd());
    snprintf(what, sizeof what, "%s step of %d tokens vs float64", f.c.name, n);
    compare(what, ref.data(), out.data(), out.size(), REF_TOL);

    /* The same bits with one token a block, with tiles of 1, 2, 5 and 7 tokens (capped by the
     * launcher at its own size), and race-checked. */
    std::vector<float> o1 = paged(f, c, max_ctx, {});
    snprintf(what, sizeof what, "%s: one token a block vs the host's tiles", f.c.name);
    same_bits(what, out.data(), o1.data(), out.size() * sizeof(float));
    for (int sz : {2, 5, 7}) {
        std::vector<float> o = paged(f, c, max_ctx, tiles_of(s, std::min(sz, per)));
        snprintf(what, sizeof what, "%s: tiles of %d vs of %d", f.c.name, std::min(sz, per), per);
        same_bits(what, out.data(), o.data(), out.size() * sizeof(float));
    }
    /* A larger max_ctx (more partitions in the workspace) changes nothing. */
    {
        call c2 = make_call(f, s, q, k, v, max_ctx + 200);
        cudaMemcpy(c2.q, c.q, q.size() * sizeof(float), cudaMemcpyDeviceToDevice);
        std::vector<float> o = paged(f, c2, max_ctx + 200, tiles);
        snprintf(what, sizeof what, "%s: max_ctx %d vs %d", f.c.name, max_ctx + 200, max_ctx);
        same_bits(what, out.data(), o.data(), out.size() * sizeof(float));
        free_call(c2);
    }
    if (racecheck && slm_emu_active()) {
        std::vector<float> o = paged(f, c, max_ctx, tiles, true);
        snprintf(what, sizeof what, "%s: race-checked vs the step", f.c.name);
        same_bits(what, out.data(), o.data(), out.size() * sizeof(float));
    }
    free_call(c);
    return out;
}

/* Token i of step s decoded alone by the fused launcher (its raw q, k, v; the cache already
 * holds the step's other positions, which a decode at pos[i] does not read past pos[i]): its
 * bits must be those of the step. */
static void decode_alone(fixture &f, const step &s, const std::vector<float> &q, const std::vector<float> &k,
                         const std::vector<float> &v, const std::vector<float> &out, const std::vector<int> &idx)
{
    step one;
    for (int i : idx) {
        one.pos.push_back(s.pos[i]);
        one.seq.push_back(s.seq[i]);
    }
    int max_ctx = 1;
    for (int p : one.pos) max_ctx = std::max(max_ctx, p + 1);
    call c = make_call(f, one, pick(q, f.qd(), idx), pick(k, f.kvd(), idx), pick(v, f.kvd(), idx), max_ctx);
    cudaMemset(c.ws, 0, SLM_CUDA_ATTN_DECODE_COUNTER_BYTES);
    slm_cuda_kv_layer kv = kv_of(f);
    int rc = slm_cuda_attention_decode_fused(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, max_ctx, c.ws, c.ws_bytes,
                                             c.out, 0);
    CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s fused decode: %d (%s)", f.c.name, rc,
          slm_emu_last_report());
    std::vector<float> o = host(c.out, idx.size() * f.qd());
    std::vector<float> w = pick(out, f.qd(), idx);
    char what[200];
    snprintf(what, sizeof what, "%s: %zu tokens decoded alone (fused) vs inside the prefill step", f.c.name, idx.size());
    same_bits(what, w.data(), o.data(), w.size() * sizeof(float));
    free_call(c);
}

static void run_config(const config &cfg, bool racecheck)
{
    /* Sequence 0: a whole prompt of 150; 1: a chunk of 130 after 70 cached positions; 2: one
     * decode token at 99; 3: a chunk of 16 after 5. */
    const std::vector<int> hist = {0, 70, 99, 5}, len = {150, 130, 1, 16};
    std::vector<int> lens(4);
    for (int s = 0; s < 4; s++) lens[s] = hist[s] + len[s];
    fixture f;
    f.n_seq = 4;
    if (setup(f, cfg, lens.data())) {
        printf("FAIL %s: setup\n", cfg.name);
        failures++;
        return;
    }
    store_history(f, hist);
    step s;
    for (int q = 0; q < 4; q++) append(s, tokens(q, hist[q], lens[q]));
    const int n = (int)s.pos.size();
    std::vector<float> q((size_t)n * f.qd()), k((size_t)n * f.kvd()), v((size_t)n * f.kvd());
    for (auto &x : q) x = 3.0f * frand();
    for (auto &x : k) x = frand();
    for (auto &x : v) x = frand();
    const int max_ctx = *std::max_element(lens.begin(), lens.end());
    std::vector<float> out = run_step(f, s, q, k, v, max_ctx, racecheck);
    if (out.empty()) {
        teardown(f);
        return;
    }
    /* Decoded alone: the last token of each sequence, then a first, a middle and a token at a
     * partition's edge (one token of each sequence a call: the fused launcher's rule). */
    decode_alone(f, s, q, k, v, out, {149, 279, 280, 296});
    decode_alone(f, s, q, k, v, out, {0, 208, 281});
    decode_alone(f, s, q, k, v, out, {64, 207});

    /* The prompt of sequence 0 in two chunks, [0, 64) then [64, 150): the same bits as in one
     * (the second chunk attends to the first's cached positions). */
    {
        step a = tokens(0, 0, 64), b = tokens(0, 64, 150);
        std::vector<int> ia(64), ib(86);
        for (int i = 0; i < 64; i++) ia[i] = i;
        for (int i = 0; i < 86; i++) ib[i] = 64 + i;
        std::vector<float> oa, ob;
        for (int part = 0; part < 2; part++) {
            const step &st = part ? b : a;
            const std::vector<int> &ix = part ? ib : ia;
            call c = make_call(f, st, pick(q, f.qd(), ix), pick(k, f.kvd(), ix), pick(v, f.kvd(), ix), 150);
            slm_cuda_kv_layer kv = kv_of(f);
            int rc = slm_cuda_rope_store(&f.shape, &c.t, &kv, &f.rope, c.q, c.k, c.v, 0);
            CHECK(rc == 0 && cudaDeviceSynchronize() == cudaSuccess, "%s chunk rope_store: %d", f.c.name, rc);
            std::vector<int32_t> t(2 * ix.size());
            int nt = slm_cuda_attention_tiles(&f.shape, st.seq.data(), (int)ix.size(), t.data());
            t.resize(2 * (size_t)std::max(nt, 0));
            (part ? ob : oa) = paged(f, c, 150, t);
            free_call(c);
        }
        oa.insert(oa.end(), ob.begin(), ob.end());
        std::vector<float> w(out.begin(), out.begin() + (long)(150 * f.qd()));
        char what[160];
        snprintf(what, sizeof what, "%s: prompt in chunks of 64 and 86 vs in one", f.c.name);
        same_bits(what, w.data(), oa.data(), w.size() * sizeof(float));
    }
    teardown(f);
}

/* The tile arguments' refusals and slm_cuda_attention_tiles / _tile_tokens on bad input. */
static void bad_tiles(void)
{
    config c = {"tiles", 9, 3, 64, 64, 0, 0};
    int lens[4] = {20, 20, 20, 20};
    fixture f;
    f.n_seq = 4;
    if (setup(f, c, lens)) {
        failures++;
        return;
    }
    step s = tokens(0, 0, 20);
    std::vector<float> q(20 * f.qd()), k(20 * f.kvd()), v(20 * f.kvd());
    call cl = make_call(f, s, q, k, v, 20);
    slm_cuda_kv_layer kv = kv_of(f);
    std::vector<int32_t> good = {0, 20};
    int32_t *d_good = dev(good);
    slm_cuda_attn_tokens t = cl.t;
    t.tiles = d_good, t.n_tiles = 0;
    CHECK(slm_cuda_attention_paged(&f.shape, &t, &kv, cl.q, 20, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "0 tiles: expected -EINVAL");
    t.n_tiles = 21;
    CHECK(slm_cuda_attention_paged(&f.shape, &t, &kv, cl.q, 20, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
          "21 tiles for 20 tokens: expected -EINVAL");
    if (slm_emu_active()) {
        slm_emu_options o, quiet;
        slm_emu_get_options(&o);
        quiet = o;
        quiet.quiet = 1;
        slm_emu_set_options(&quiet);
        t.tiles = good.data(), t.n_tiles = 1;
        CHECK(slm_cuda_attention_paged(&f.shape, &t, &kv, cl.q, 20, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
              "host tiles: expected -EINVAL");
        t.tiles = d_good, t.n_tiles = 2;   /* past the allocation of one pair */
        CHECK(slm_cuda_attention_paged(&f.shape, &t, &kv, cl.q, 20, cl.ws, cl.ws_bytes, cl.out, 0) == -EINVAL,
              "2 tiles in the memory of 1: expected -EINVAL");
        slm_emu_set_options(&o);
        cudaGetLastError();
    }
    /* A tile whose first token is out of range is skipped; one of more than the tile size is
     * cut: the launch succeeds and writes no row it does not own. */
    std::vector<int32_t> odd = {-3, 4, 25, 1, 0, 1000};
    int32_t *d_odd = dev(odd);
    t.tiles = d_odd, t.n_tiles = 3;
    cudaMemset(cl.ws, 0, SLM_CUDA_ATTN_DECODE_COUNTER_BYTES);
    CHECK(slm_cuda_attention_paged(&f.shape, &t, &kv, cl.q, 20, cl.ws, cl.ws_bytes, cl.out, 0) == 0 &&
              cudaDeviceSynchronize() == cudaSuccess,
          "odd tiles: expected 0 (%s)", slm_emu_last_report());
    slm_cuda_attn_shape bad = f.shape;
    bad.head_dim = 72;
    std::vector<int32_t> tl(8);
    int32_t seq[4] = {0, 0, 1, 1};
    CHECK(slm_cuda_attention_tile_tokens(&bad) == 0, "tile_tokens of head_dim 72: expected 0");
    CHECK(slm_cuda_attention_tile_tokens(nullptr) == 0, "tile_tokens of NULL: expected 0");
    CHECK(slm_cuda_attention_tiles(&bad, seq, 4, tl.data()) == -EINVAL, "tiles of head_dim 72: expected -EINVAL");
    CHECK(slm_cuda_attention_tiles(&f.shape, seq, 0, tl.data()) == -EINVAL, "tiles of 0 tokens: expected -EINVAL");
    CHECK(slm_cuda_attention_tiles(&f.shape, nullptr, 4, tl.data()) == -EINVAL, "tiles of NULL seq_row: expected -EINVAL");
    CHECK(slm_cuda_attention_tiles(&f.shape, seq, 4, tl.data()) == 2 && tl[0] == 0 && tl[1] == 2 && tl[2] == 2 &&
              tl[3] == 2,
          "tiles of 2 + 2 tokens: expected (0, 2), (2, 2)");
    CHECK(slm_cuda_attention_tile_tokens(&f.shape) == 21, "tile_tokens of 9/3 x 64: expected 21 (64 rows / 3)");
    cudaFree(d_good);
    cudaFree(d_odd);
    free_call(cl);
    teardown(f);
}

int main(void)
{
    slm_emu_options o;
    slm_emu_get_options(&o);
    static const config configs[] = {
        {"smollm2 9/3x64 norm", 9, 3, 64, 64, 0, 0},
        {"mha 4/4x128 neox rope 64", 4, 4, 128, 64, 1, 0},
        {"16/1x128 neox rope 32", 16, 1, 128, 32, 1, 0},
        {"8/2x80 neox", 8, 2, 80, 80, 1, 0},
        {"4/1x96 norm", 4, 1, 96, 96, 0, 0},
        {"qwen2-like 4/2x32 neox", 4, 2, 32, 32, 1, 0},
        {"gemma3 4/1x256 neox window 16", 4, 1, 256, 256, 1, 16},
        {"8/2x64 norm window 100", 8, 2, 64, 64, 0, 100},
    };
    bool first = true;
    for (const config &c : configs) {
        run_config(c, first);
        first = false;
    }
    bad_tiles();
    if (failures) {
        printf("test_cuda_attention_prefill: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention_prefill: ok\n");
    return 0;
}
