/* test_cuda_attention_split: the flash-decoding kernel (kernels/cuda/attention_split.cu)
 * under the SIMT emulator against the CPU backend's attention (daemon/engine/backends/cpu.c)
 * on the same batches within a stated bound, plus a float64 reference of the same f16 inputs
 * with a tight bound; batch invariance (alone vs in a batch vs in a prefill chunk: identical
 * bits); contexts across partition boundaries; the [pos_lo, pos_hi) class bound (tokens
 * outside it untouched); bad arguments refused. */
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

static int launch_split(fixture &f, call &c, const slm_cuda_kv_layer *kv, mode m, int p0, int max_ctx)
{
    return split_all(f, c, kv, m == PREFILL ? p0 + (int)c.n : max_ctx);
}

/*
 * One step on both backends (run_step_checked) with this kernel's bounds:
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
    return run_step_checked(f, s, m, p0, q_rot, {slm_cuda_attention_split_workspace, launch_split, 1e-3, 5e-6});
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

/* ---- tiles: a chunk's tokens sharing each K/V tile (slm_cuda_attn_tokens.tiles) */

/* Tokens a tile may hold at f's group. */
static int tile_cap(const fixture &f)
{
    return SLM_CUDA_ATTN_TILE_ROWS / (f.c.n_head / f.c.n_head_kv);
}

/* Tile bounds over s: runs (consecutive positions of one sequence) cut into tiles whose sizes
 * cycle through `sizes` (each cut short by the end of its run). sizes = {cap} is the backend's
 * tiling. */
static std::vector<int32_t> tiles_of(const step &s, const std::vector<int> &sizes)
{
    std::vector<int32_t> t = {0};
    int n = (int)s.pos.size(), k = 0;
    for (int i = 0; i < n;) {
        int end = i + 1;
        while (end < n && s.seq[end] == s.seq[i] && s.pos[end] == s.pos[end - 1] + 1) end++;
        while (i < end) {
            i = std::min(end, i + sizes[k++ % sizes.size()]);
            t.push_back(i);
        }
    }
    return t;
}

/* The finite pattern an output row holds when the kernel did not write it. */
static const uint32_t UNTOUCHED = 0x3f3f3f3fu;

/* The split launcher over tokens s (rotated q_rot) with tiles (empty: NULL) and the class
 * [lo, hi); out starts as the UNTOUCHED pattern, the workspace as ws_fill bytes. */
static std::vector<float> attend_tiled(fixture &f, const step &s, const std::vector<float> &q_rot,
                                       const std::vector<int32_t> &tiles, int lo = 0, int hi = INT_MAX,
                                       int ws_fill = 0xff)
{
    int n = (int)s.pos.size(), max_ctx = 0;
    for (int i = 0; i < n; i++) max_ctx = std::max(max_ctx, s.pos[i] + 1);
    std::vector<float> kv_dummy((size_t)n * f.kvd());
    call c = make_call(f, s, q_rot, kv_dummy, kv_dummy, max_ctx, slm_cuda_attention_split_workspace);
    cudaMemset(c.out, 0x3f, q_rot.size() * sizeof(float));
    cudaMemset(c.ws, ws_fill, c.ws_bytes);
    int32_t *d_tiles = tiles.empty() ? nullptr : dev(tiles);
    c.t.tiles = d_tiles;
    c.t.n_tiles = tiles.empty() ? 0 : (int)tiles.size() - 1;
    slm_cuda_kv_layer kv = {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
    int rc = slm_cuda_attention_split(&f.shape, &c.t, &kv, c.q, max_ctx, lo, hi, c.ws, c.ws_bytes, c.out, 0);
    CHECK(rc == 0, "%s tiled split of %d tokens in %d tiles: expected 0, got %d", f.c.name, n, c.t.n_tiles, rc);
    std::vector<float> out = host(c.out, q_rot.size());
    cudaFree(d_tiles);
    free_call(c);
    return out;
}

/* Row i of out against row i of want: in [lo, hi) the same bits, else UNTOUCHED; a token of
 * `nan_rows` (a bad tile's) all NaN instead. Prints the first bad row only. */
static void check_rows(const fixture &f, const char *what, const step &s, const std::vector<float> &want,
                       const std::vector<float> &out, int lo = 0, int hi = INT_MAX,
                       const std::vector<int> &nan_rows = {})
{
    for (size_t i = 0; i < s.pos.size(); i++) {
        const float *w = want.data() + i * f.qd(), *o = out.data() + i * f.qd();
        int in_class = s.pos[i] >= lo && s.pos[i] < hi;
        int want_nan = in_class && std::find(nan_rows.begin(), nan_rows.end(), (int)i) != nan_rows.end();
        for (size_t e = 0; e < f.qd(); e++) {
            uint32_t ob, wb;
            memcpy(&ob, &o[e], 4);
            memcpy(&wb, &w[e], 4);
            int ok = want_nan ? std::isnan(o[e]) : in_class ? ob == wb : ob == UNTOUCHED;
            if (!ok) {
                if (want_nan)
                    printf("FAIL %s: token %zu (pos %d) out[%zu]: expected NaN, got %.9g\n", what, i, s.pos[i], e, o[e]);
                else
                    printf("FAIL %s: token %zu (pos %d) out[%zu]: expected %.9g%s, got %.9g\n", what, i, s.pos[i], e,
                           in_class ? w[e] : 0.747059f, in_class ? "" : " (untouched)", o[e]);
                failures++;
                return;
            }
        }
    }
}

/* The tiled launches of r's chunk (and of a mixed step) against the bits r has from untiled
 * calls: several tilings, each token alone, a class bound inside the chunk, and planted tiles
 * that are not runs (their tokens NaN, the others untouched by them). */
static void tiled_checks(fixture &f, const config &c, const int *lens, const invariance_run &r)
{
    const int cap = tile_cap(f), n = (int)r.chunk.pos.size(), p0 = r.chunk.pos[0], last = r.last;
    char what[160];
    /* The chunk in the backend's tiles and in irregular ones (sizes 1..cap, partition and tile
     * crossings at varying offsets). */
    const std::vector<std::vector<int>> tilings = {
        {cap}, {1, cap, std::min(2, cap), std::max(1, cap - 1), std::min(3, cap)}, {cap / 2 + 1}};
    for (const auto &sizes : tilings) {
        std::vector<int32_t> tiles = tiles_of(r.chunk, sizes);
        std::vector<float> out = attend_tiled(f, r.chunk, r.chunk_q, tiles);
        snprintf(what, sizeof what, "%s: chunk of %d at p0=%d in %zu tiles (first %d) vs untiled", c.name, n, p0,
                 tiles.size() - 1, tiles[1]);
        check_rows(f, what, r.chunk, r.chunk_out, out);
    }
    std::vector<float> untiled = attend_tiled(f, r.chunk, r.chunk_q, {});
    snprintf(what, sizeof what, "%s: chunk untiled vs the run's chunk", c.name);
    check_rows(f, what, r.chunk, r.chunk_out, untiled);
    /* Each token alone. */
    std::vector<float> tiled = attend_tiled(f, r.chunk, r.chunk_q, tiles_of(r.chunk, {cap}));
    for (int i = 0; i < n; i++) {
        step one = tokens(last, p0 + i, p0 + i + 1);
        std::vector<float> q1(r.chunk_q.begin() + i * (long)f.qd(), r.chunk_q.begin() + (i + 1) * (long)f.qd());
        std::vector<float> o1 = attend(f, one, q1, DECODE, 0);
        snprintf(what, sizeof what, "%s: token at pos %d alone vs in a tile of the chunk", c.name, p0 + i);
        if (!same_bits(what, o1.data(), tiled.data() + (size_t)i * f.qd(), f.qd() * sizeof(float))) break;
    }
    /* A class bound inside the chunk (the backend's T): the rows below it untouched. */
    std::vector<float> half = attend_tiled(f, r.chunk, r.chunk_q, tiles_of(r.chunk, {cap}), p0 + n / 2 + 1);
    snprintf(what, sizeof what, "%s: tiled chunk with the class [%d, inf)", c.name, p0 + n / 2 + 1);
    check_rows(f, what, r.chunk, r.chunk_out, half, p0 + n / 2 + 1);

    /* Mixed: the other sequences' decodes, the chunk, the last sequence's decode. */
    step mixed;
    std::vector<float> mixed_q, mixed_want;
    for (int s = 0; s < last; s++) append(mixed, tokens(s, lens[s] - 1, lens[s]));
    append(mixed, r.chunk);
    append(mixed, tokens(last, lens[last] - 1, lens[last]));
    mixed_q.assign(r.dec_q.begin(), r.dec_q.begin() + last * (long)f.qd());
    mixed_q.insert(mixed_q.end(), r.chunk_q.begin(), r.chunk_q.end());
    mixed_q.insert(mixed_q.end(), r.dec_q.end() - (long)f.qd(), r.dec_q.end());
    mixed_want.assign(r.dec_out.begin(), r.dec_out.begin() + last * (long)f.qd());
    mixed_want.insert(mixed_want.end(), r.chunk_out.begin(), r.chunk_out.end());
    mixed_want.insert(mixed_want.end(), r.dec_out.end() - (long)f.qd(), r.dec_out.end());
    std::vector<float> mout = attend_tiled(f, mixed, mixed_q, tiles_of(mixed, {cap}));
    snprintf(what, sizeof what, "%s: %d decodes + chunk of %d, tiled, vs untiled", c.name, f.n_seq, n);
    check_rows(f, what, mixed, mixed_want, mout);

    /* Planted tiles that are not runs, over a workspace of finite garbage (a combine that merged
     * partials nobody wrote would give finite wrong rows): their tokens NaN, the rest intact. */
    const int W = 0x3f;
    /* One token more than the cap. */
    std::vector<int32_t> big = {0, cap + 1};
    for (int i = cap + 1; i < n; i += cap) big.push_back(std::min(n, i + cap));
    std::vector<int> big_rows;
    for (int i = 0; i <= cap; i++) big_rows.push_back(i);
    snprintf(what, sizeof what, "%s: planted tile of %d tokens (cap %d)", c.name, cap + 1, cap);
    check_rows(f, what, r.chunk, r.chunk_out, attend_tiled(f, r.chunk, r.chunk_q, big, 0, INT_MAX, W), 0, INT_MAX,
               big_rows);
    /* The first and the last token in no tile. */
    std::vector<int32_t> cover = tiles_of(r.chunk, {1});
    cover[0] = 1;
    snprintf(what, sizeof what, "%s: planted tiles without token 0", c.name);
    check_rows(f, what, r.chunk, r.chunk_out, attend_tiled(f, r.chunk, r.chunk_q, cover, 0, INT_MAX, W), 0, INT_MAX,
               {0});
    cover = tiles_of(r.chunk, {1});
    cover.back() = n - 1;
    snprintf(what, sizeof what, "%s: planted tiles without the last token", c.name);
    check_rows(f, what, r.chunk, r.chunk_out, attend_tiled(f, r.chunk, r.chunk_q, cover, 0, INT_MAX, W), 0, INT_MAX,
               {n - 1});
    /* Two sequences in one tile: the decode before the chunk and the chunk's first token. */
    std::vector<int32_t> two = tiles_of(mixed, {1});
    two.erase(two.begin() + last);   /* tile [last - 1, last + 1) */
    snprintf(what, sizeof what, "%s: planted tile over two sequences", c.name);
    check_rows(f, what, mixed, mixed_want, attend_tiled(f, mixed, mixed_q, two, 0, INT_MAX, W), 0, INT_MAX,
               {last - 1, last});
    /* A gap in the positions: the chunk without its token 4, tokens 3 and 5 in one tile. */
    step gap = r.chunk;
    gap.pos.erase(gap.pos.begin() + 4);
    gap.seq.erase(gap.seq.begin() + 4);
    std::vector<float> gap_q(r.chunk_q), gap_want(r.chunk_out);
    gap_q.erase(gap_q.begin() + 4 * (long)f.qd(), gap_q.begin() + 5 * (long)f.qd());
    gap_want.erase(gap_want.begin() + 4 * (long)f.qd(), gap_want.begin() + 5 * (long)f.qd());
    std::vector<int32_t> gt = tiles_of(gap, {1});
    gt.erase(gt.begin() + 4);   /* tile [3, 5) */
    snprintf(what, sizeof what, "%s: planted tile over a gap in the positions", c.name);
    check_rows(f, what, gap, gap_want, attend_tiled(f, gap, gap_q, gt, 0, INT_MAX, W), 0, INT_MAX, {3, 4});
    /* Overlapping and out-of-order bounds: each row is its bits or NaN, never anything else. */
    std::vector<int32_t> wild = {0, 3, 1, n + 5, 2, n};
    std::vector<float> wout = attend_tiled(f, r.chunk, r.chunk_q, wild, 0, INT_MAX, W);
    for (int i = 0; i < n; i++) {
        const float *o = wout.data() + (size_t)i * f.qd();
        int nan = 1;
        for (size_t e = 0; e < f.qd(); e++) nan &= std::isnan(o[e]);
        if (!nan && memcmp(o, r.chunk_out.data() + (size_t)i * f.qd(), f.qd() * sizeof(float))) {
            printf("FAIL %s: malformed tiles: token %d: expected its bits or NaN, got %.9g...\n", c.name, i, o[0]);
            failures++;
            break;
        }
    }
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
    tiled_checks(f, c, lens, r);
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
    /* Tiles: n_tiles in 1..n_tokens with them, 0 without; under the emulator, live device memory
     * of n_tiles + 1 entries. */
    std::vector<int32_t> tiles = {0, 2, 3};
    int32_t *d_tiles = dev(tiles);
    auto split_tiles = [&](const int32_t *tl, int n_tiles) {
        slm_cuda_attn_tokens t = cl.t;
        t.tiles = tl;
        t.n_tiles = n_tiles;
        return slm_cuda_attention_split(&f.shape, &t, &kv, cl.q, 33, 0, INT_MAX, cl.ws, cl.ws_bytes, cl.out, 0);
    };
    CHECK(split_tiles(d_tiles, 2) == 0, "2 good tiles: expected 0");
    CHECK(split_tiles(d_tiles, 0) == -EINVAL, "tiles with n_tiles 0: expected -EINVAL");
    CHECK(split_tiles(d_tiles, -1) == -EINVAL, "n_tiles -1: expected -EINVAL");
    CHECK(split_tiles(d_tiles, 4) == -EINVAL, "n_tiles 4 > 3 tokens: expected -EINVAL");
    CHECK(split_tiles(nullptr, 1) == -EINVAL, "no tiles with n_tiles 1: expected -EINVAL");
    if (slm_emu_active()) {
        slm_emu_options o, quiet;
        slm_emu_get_options(&o);
        quiet = o;
        quiet.quiet = 1;
        slm_emu_set_options(&quiet);
        CHECK(split_tiles(tiles.data(), 2) == -EINVAL, "host tiles: expected -EINVAL");
        CHECK(split_tiles(d_tiles, 3) == -EINVAL, "3 tiles in a buffer of 3 entries: expected -EINVAL");
        slm_emu_set_options(&o);
        cudaGetLastError();
    }
    cudaFree(d_tiles);
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
    /* Groups 6 and 16 (tiles of 5 and 2 tokens), group 4 at head_dim 128, group 1 at 64; odd
     * chunks crossing a partition inside a tile. */
    int lens4[4] = {3, 140, 9, 290};
    run_config({"12/2x128 norm", 12, 2, 128, 128, 0}, lens4, 251, 23);
    run_config({"6/1x64 neox", 6, 1, 64, 64, 1}, lens4, 122, 31);
    run_config({"16/1x128 neox rope 32", 16, 1, 128, 32, 1}, lens4, 250, 13);
    run_config({"8/2x128 norm", 8, 2, 128, 128, 0}, lens4, 131, 17);
    run_config({"2/2x64 norm", 2, 2, 64, 64, 0}, lens4, 200, 61);
    bad_arguments();
    if (failures) {
        printf("test_cuda_attention_split: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_attention_split: ok\n");
    return 0;
}
