/* test_cuda_graphs: the CUDA backend's step graphs (daemon/engine/backends/cuda/,
 * docs/cuda.md "CUDA graphs") under the SIMT emulator, on a tiny synthetic llama written here
 * as a GGUF file (2 layers, dim 128, 2 query heads and 1 KV head of 64, FFN 192, 300 tokens).
 *
 * Three cuda backends run the same script of steps (prefill chunks, then decode steps of
 * 1 to 6 sequences whose positions grow across block and 128-position partition boundaries,
 * with the sequences' block-table rows permuted between two replays of one graph, then mixed
 * steps: a prompt chunk among decodes with the logits of each sequence's last token, prompt
 * chunks without logits):
 *   graphs  SLM_CUDA_GRAPHS unset (on): steps padded to their bucket, warmed up, captured,
 *           replayed;
 *   eager   SLM_CUDA_GRAPHS=0: every step op by op, unpadded (the reference);
 *   broken  SLM_CUDA_GRAPHS=test-break-capture: every capture is broken by a synchronising
 *           call, as a GPU breaks it, so every bucket falls back to op by op;
 *   decode  SLM_CUDA_GRAPHS=decode: graphs for decode-only steps, the others op by op (the
 *           backend before 2026-12-08, and the other side of bench/gpu/run.sh's A/B).
 * Checks: every step's logits are bit-identical across the four; the KV blocks the engine
 * owns are bit-identical afterwards (padding tokens wrote only the scratch block); the graph
 * counters show captures and replays (graphs), none (eager), failures and no replay (broken).
 *
 * A fourth, "alone", runs every token of a step in a step of its own, graphs off: a prefill
 * chunk fed one token a step takes the fused decode attention (RoPE, store and attention in one
 * launch) where the batched chunk takes rope_store and the paged attention, and every matmul
 * runs at n = 1 where the batched step's runs at its own n. Checks: the same logits bit for bit
 * as eager and the same KV pool (a token's bits depend on neither its batch nor its chunk:
 * docs/numerics.md, "The GPU"), and every logit finite (NaN would compare equal to NaN).
 * SLM_EMU_WORKERS defaults to 2 here (the machine is shared). */
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <unistd.h>

extern "C" {
#include "daemon/engine/backends/backend.h"
#include "daemon/engine/model.h"
#include "common/log.h"
}
#include "tests/check.h"
#include "tests/rng.h"

enum { DIM = 128, N_HEAD = 2, N_HEAD_KV = 1, HEAD_DIM = 64, FFN = 192, N_LAYER = 2, VOCAB = 300 };
enum { BLOCK = 16, MAX_BLOCKS = 16, N_BLOCKS = 64, MAX_TOKENS = 16, N_SEQ = 6 };

/* ---- a tiny llama GGUF (v3): metadata, then F32 tensors at 32-byte alignment */

struct gguf_out {
    std::vector<uint8_t> head, data;
    uint64_t n_kv = 0, n_tensors = 0;
    std::vector<uint8_t> kvs, infos;
};

static void put(std::vector<uint8_t> &b, const void *p, size_t n)
{
    b.insert(b.end(), (const uint8_t *)p, (const uint8_t *)p + n);
}
static void put_u32(std::vector<uint8_t> &b, uint32_t v) { put(b, &v, 4); }
static void put_u64(std::vector<uint8_t> &b, uint64_t v) { put(b, &v, 8); }
static void put_str(std::vector<uint8_t> &b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void kv_u32(gguf_out &g, const char *key, uint32_t v)
{
    put_str(g.kvs, key);
    put_u32(g.kvs, 4);   /* GGUF_TYPE_UINT32 */
    put_u32(g.kvs, v);
    g.n_kv++;
}

static void kv_str(gguf_out &g, const char *key, const char *v)
{
    put_str(g.kvs, key);
    put_u32(g.kvs, 8);   /* GGUF_TYPE_STRING */
    put_str(g.kvs, v);
    g.n_kv++;
}

/* An F32 tensor of cols x rows (rows 0: a vector): values around `base` +- scale. */
static void tensor(gguf_out &g, const char *name, uint64_t cols, uint64_t rows, float base, float scale)
{
    while (g.data.size() % 32) g.data.push_back(0);
    put_str(g.infos, name);
    put_u32(g.infos, rows ? 2 : 1);
    put_u64(g.infos, cols);
    if (rows) put_u64(g.infos, rows);
    put_u32(g.infos, 0);   /* F32 */
    put_u64(g.infos, g.data.size());
    for (uint64_t i = 0; i < cols * (rows ? rows : 1); i++) {
        float v = base + scale * frand();
        put(g.data, &v, 4);
    }
    g.n_tensors++;
}

static int write_model(const char *path)
{
    gguf_out g;
    kv_str(g, "general.architecture", "llama");
    kv_u32(g, "llama.block_count", N_LAYER);
    kv_u32(g, "llama.embedding_length", DIM);
    kv_u32(g, "llama.feed_forward_length", FFN);
    kv_u32(g, "llama.attention.head_count", N_HEAD);
    kv_u32(g, "llama.attention.head_count_kv", N_HEAD_KV);
    kv_u32(g, "llama.context_length", MAX_BLOCKS * BLOCK);
    tensor(g, "token_embd.weight", DIM, VOCAB, 0.0f, 1.0f);
    tensor(g, "output_norm.weight", DIM, 0, 1.0f, 0.2f);
    char n[64];
    for (int l = 0; l < N_LAYER; l++) {
        struct { const char *suffix; int cols, rows; } spec[] = {
            {"attn_norm.weight", DIM, 0}, {"attn_q.weight", DIM, N_HEAD * HEAD_DIM},
            {"attn_k.weight", DIM, N_HEAD_KV * HEAD_DIM}, {"attn_v.weight", DIM, N_HEAD_KV * HEAD_DIM},
            {"attn_output.weight", N_HEAD * HEAD_DIM, DIM}, {"ffn_norm.weight", DIM, 0},
            {"ffn_gate.weight", DIM, FFN}, {"ffn_up.weight", DIM, FFN}, {"ffn_down.weight", FFN, DIM},
        };
        for (auto &s : spec) {
            snprintf(n, sizeof n, "blk.%d.%s", l, s.suffix);
            if (s.rows) tensor(g, n, s.cols, s.rows, 0.0f, 0.15f);
            else tensor(g, n, s.cols, 0, 1.0f, 0.2f);
        }
    }
    std::vector<uint8_t> file;
    put(file, "GGUF", 4);
    put_u32(file, 3);
    put_u64(file, g.n_tensors);
    put_u64(file, g.n_kv);
    put(file, g.kvs.data(), g.kvs.size());
    put(file, g.infos.data(), g.infos.size());
    while (file.size() % 32) file.push_back(0);
    put(file, g.data.data(), g.data.size());
    FILE *f = fopen(path, "wb");
    if (!f) return -errno;
    size_t w = fwrite(file.data(), 1, file.size(), f);
    return fclose(f) == 0 && w == file.size() ? 0 : -EIO;
}

/* ---- one backend with the model, a forward pass and a KV pool */

struct rig {
    const char *name;
    struct slm_backend *be = nullptr;
    struct slm_model *m = nullptr;
    struct slm_forward *f = nullptr;
    struct slm_kv_pool pool = {};
};

static int rig_open(rig &r, const char *name, const char *graphs_env, const char *path)
{
    char err[SLM_ERR_LEN];
    r.name = name;
    if (graphs_env) setenv("SLM_CUDA_GRAPHS", graphs_env, 1);
    else unsetenv("SLM_CUDA_GRAPHS");
    r.be = slm_backend_cuda_create(0, 0.9, err);
    unsetenv("SLM_CUDA_GRAPHS");
    if (!r.be) {
        printf("FAIL %s: slm_backend_cuda_create: %s\n", name, err);
        return -1;
    }
    if (!(r.m = slm_model_load(path, err)) || slm_model_bind(r.m, r.be, err) ||
        !(r.f = slm_forward_create(r.m, MAX_TOKENS, MAX_TOKENS, err))) {
        printf("FAIL %s: model: %s\n", name, err);
        return -1;
    }
    slm_model_kv_geometry(r.m, N_BLOCKS, BLOCK, &r.pool);
    if (r.be->ops->kv_alloc(r.be, &r.pool)) {
        printf("FAIL %s: kv_alloc\n", name);
        return -1;
    }
    return 0;
}

static void rig_close(rig &r)
{
    if (r.pool.mem) r.be->ops->kv_free(r.be, &r.pool);
    slm_forward_destroy(&r.f);
    slm_model_free(&r.m);
    slm_backend_destroy(&r.be);
}

static struct slm_cuda_graph_stats stats_of(rig &r)
{
    struct slm_cuda_graph_stats st = {};
    CHECK(slm_backend_cuda_graph_stats(r.be, &st) == 0, "%s: slm_backend_cuda_graph_stats: expected 0", r.name);
    return st;
}

/* ---- the script: sequences with block lists, steps of (sequence, token count) */

struct seq_state {
    int len = 0;                  /* positions filled */
    std::vector<int32_t> blocks;  /* block ids in order */
};

struct world {
    seq_state seqs[N_SEQ];
    int row_of[N_SEQ];            /* the block-table row each sequence uses */
    std::vector<int32_t> free_blocks;
};

static int32_t token_at(int s, int p)
{
    return (int32_t)((s * 7919 + p * 104729 + 13) % VOCAB);
}

/* Builds the batch of (sequence, tokens) pairs, allocating blocks as positions need them. */
struct step_batch {
    std::vector<int32_t> tokens, pos, seq_row, tables, out_rows;
    struct slm_batch b = {};
};

/* Whose logits a step wants: every token's, the last token of each (sequence, tokens) pair's
 * (a mixed step: decodes and prompt chunks that end there), or none (prompt chunks only). */
enum outs { OUT_ALL, OUT_LAST, OUT_NONE };

static void build(world &w, const std::vector<std::pair<int, int>> &parts, step_batch &sb, outs want = OUT_ALL)
{
    sb = step_batch{};
    for (auto &pt : parts) {
        seq_state &s = w.seqs[pt.first];
        for (int k = 0; k < pt.second; k++) {
            int p = s.len + k;
            if (p / BLOCK >= (int)s.blocks.size()) {
                s.blocks.push_back(w.free_blocks.back());
                w.free_blocks.pop_back();
            }
            sb.tokens.push_back(token_at(pt.first, p));
            sb.pos.push_back(p);
            sb.seq_row.push_back(w.row_of[pt.first]);
        }
        s.len += pt.second;
    }
    sb.tables.assign((size_t)N_SEQ * MAX_BLOCKS, -1);
    for (int i = 0; i < N_SEQ; i++)
        for (size_t j = 0; j < w.seqs[i].blocks.size(); j++)
            sb.tables[(size_t)w.row_of[i] * MAX_BLOCKS + j] = w.seqs[i].blocks[j];
    /* the logits wanted, listed last to first: out_rows is a real permutation */
    std::vector<int> last;
    for (int i = 0, t = 0; i < (int)parts.size(); t += parts[i].second, i++) last.push_back(t + parts[i].second - 1);
    for (int i = (int)sb.tokens.size() - 1; i >= 0; i--)
        if (want == OUT_ALL || (want == OUT_LAST && std::find(last.begin(), last.end(), i) != last.end()))
            sb.out_rows.push_back(i);
    sb.b = {(int)sb.tokens.size(), sb.tokens.data(), sb.pos.data(), sb.seq_row.data(), sb.tables.data(),
            MAX_BLOCKS, (int)sb.out_rows.size(), sb.out_rows.data(), nullptr};
}

static int compare(const char *what, const std::vector<float> &want, const std::vector<float> &got)
{
    int bad = 0;
    double max_abs = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (memcmp(&want[i], &got[i], sizeof(float)) == 0) continue;
        double d = fabs((double)want[i] - (double)got[i]);
        if (d > max_abs || std::isnan(d)) max_abs = d;
        if (bad++ < 10)
            printf("FAIL %s: logit %zu (row %zu, token %zu): expected %.9g, got %.9g\n", what, i, i / VOCAB, i % VOCAB,
                   (double)want[i], (double)got[i]);
    }
    if (bad) {
        printf("FAIL %s: %d of %zu logits differ, max abs %.3g\n", what, bad, want.size(), max_abs);
        failures++;
    }
    return bad;
}

static std::vector<uint16_t> kv_of(rig &r)
{
    /* (layer, K/V, n_blocks + 1 with the scratch block, block, kv_dim) halves; only the
     * engine's blocks are returned */
    size_t kvd = (size_t)N_HEAD_KV * HEAD_DIM, block = (size_t)BLOCK * kvd, per = (size_t)(N_BLOCKS + 1) * block;
    std::vector<uint16_t> all(per * 2 * N_LAYER), out;
    if (cudaMemcpy(all.data(), r.pool.mem, all.size() * 2, cudaMemcpyDeviceToHost) != cudaSuccess) {
        printf("FAIL %s: reading the KV pool\n", r.name);
        failures++;
        return out;
    }
    for (size_t part = 0; part < 2 * N_LAYER; part++)
        out.insert(out.end(), all.begin() + (long)(part * per), all.begin() + (long)(part * per + N_BLOCKS * block));
    return out;
}

int main(void)
{
    setenv("SLM_EMU_WORKERS", "2", 0);
    char dir[] = "/tmp/slm_graphs_XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    std::string path = std::string(dir) + "/tiny-llama.gguf";
    int rc = write_model(path.c_str());
    CHECK(rc == 0, "writing %s: expected 0, got %d", path.c_str(), rc);

    /* 3 runs each token of a step alone */
    enum { N_RIGS = 5, GRAPHED = 4, ALONE = 4 };   /* rigs 0..3 use graphs or not; 4 runs each token of a step alone */
    rig rigs[N_RIGS];
    const char *names[N_RIGS] = {"graphs", "eager", "broken", "decode", "alone"};
    const char *envs[N_RIGS] = {nullptr, "0", "test-break-capture", "decode", "0"};
    for (int i = 0; i < N_RIGS && !failures; i++)
        if (rig_open(rigs[i], names[i], envs[i], path.c_str())) failures++;
    unlink(path.c_str());
    rmdir(dir);
    if (failures) return 1;

    /* The script. Prefill: sequence 0 gets 130 positions (its decodes need 2 partitions), the
     * others 9-15 (their decodes cross the block boundary at 16). Then decode steps; "permute"
     * rotates the sequences' block-table rows before the step. */
    struct step {
        std::vector<int> seqs;
        int prefill;
        bool permute;
        bool renew = false;
        std::vector<std::pair<int, int>> mix = {};   /* (sequence, tokens) pairs instead of seqs x prefill */
        outs want = OUT_ALL;
    };
    std::vector<step> script;
    for (int c = 0; c < 130; c += MAX_TOKENS) script.push_back({{0}, c + MAX_TOKENS <= 130 ? MAX_TOKENS : 130 - c, false});
    for (int s = 1; s < N_SEQ; s++) script.push_back({{s}, 9 + s, false});
    std::vector<step> decodes = {
        {{1, 2, 3}, 0, false},        /* 3 -> bucket 4: warm-up */
        {{1, 2, 3}, 0, false},        /* capture */
        {{2, 3, 4}, 0, false},        /* replay, other sequences */
        {{3, 4, 1}, 0, true},         /* replay with permuted block-table rows */
        {{5}, 0, false},              /* bucket 1 */
        {{5}, 0, false},
        {{5}, 0, false},
        {{1, 2, 3, 4, 5}, 0, false},  /* 5 -> bucket 8 */
        {{1, 2, 3, 4, 5}, 0, false},
        {{5, 4, 3, 2, 1}, 0, false},
        {{0, 1, 2}, 0, false},        /* 2 partitions */
        {{0, 1, 2}, 0, false},
        {{2, 0, 1}, 0, true},
        {{1, 2, 3, 4}, 0, false},     /* bucket 4, 1 partition again: a replay of the first graph */
        {{1, 2, 3, 4}, 0, false, true},   /* a new forward pass: every graph dropped, warm-up again */
        {{1, 2, 3, 4}, 0, false},
        {{1, 2, 3, 4}, 0, false},
        {{1, 2, 3, 4, 5, 0}, 0, false},
        {{1, 2, 3, 4, 5, 0}, 0, false},
        {{4, 3}, 0, false},
        {{4, 3}, 0, false},
        {{4, 3}, 0, false},
    };
    script.insert(script.end(), decodes.begin(), decodes.end());
    /* Mixed steps (a prompt chunk among decodes, logits of each pair's last token; prompt chunks
     * without logits): graphs of their own, keyed by their logits rows too, the paged attention
     * over tiles in the metadata, the padding tokens on one row of scratch blocks. */
    std::vector<step> mixed = {
        {{}, 0, false, false, {{0, 1}, {1, 5}, {2, 1}, {3, 1}}, OUT_LAST},   /* 8 tokens, 4 rows, 4 tiles, 2 partitions */
        {{}, 0, false, false, {{0, 1}, {1, 5}, {2, 1}, {3, 1}}, OUT_LAST},   /* capture */
        {{}, 0, false, false, {{1, 1}, {2, 5}, {3, 1}, {0, 1}}, OUT_LAST},   /* replay, the chunk elsewhere */
        {{}, 0, true, false, {{0, 1}, {3, 4}, {2, 2}}, OUT_LAST},            /* replay: rows permuted, 7 + 1 padding */
        {{}, 0, false, false, {{4, 6}}, OUT_NONE},                           /* 6 -> 8 tokens, no logits, 2 tiles */
        {{}, 0, false, false, {{4, 6}}, OUT_NONE},
        {{}, 0, false, false, {{5, 7}}, OUT_NONE},                           /* replay: 7 -> 8 */
        {{}, 0, false, false, {{5, 2}, {1, 1}, {2, 1}}, OUT_LAST},           /* 4 tokens, 3 -> 4 rows */
    };
    script.insert(script.end(), mixed.begin(), mixed.end());

    world w[N_RIGS];
    for (auto &x : w) {
        for (int i = 0; i < N_SEQ; i++) x.row_of[i] = i;
        for (int b = 0; b < N_BLOCKS; b++) x.free_blocks.push_back((int32_t)((b * 37) % N_BLOCKS));
    }
    double ms[N_RIGS] = {0, 0, 0, 0, 0};
    int steps = 0;
    for (const step &st : script) {
        std::vector<std::pair<int, int>> parts = st.mix;
        for (int s : st.seqs) parts.push_back({s, st.prefill ? st.prefill : 1});
        std::vector<float> logits[N_RIGS];
        for (int r = 0; r < N_RIGS; r++) {
            if (st.renew) {
                char err[SLM_ERR_LEN];
                slm_forward_destroy(&rigs[r].f);
                rigs[r].f = slm_forward_create(rigs[r].m, MAX_TOKENS, MAX_TOKENS, err);
                CHECK(rigs[r].f, "%s: slm_forward_create: %s", rigs[r].name, err);
                if (!rigs[r].f) return 1;
            }
            if (st.permute)
                for (int i = 0; i < N_SEQ; i++) w[r].row_of[i] = (w[r].row_of[i] + 1) % N_SEQ;
            /* ALONE: each token in its own step, in the batch's order (the same blocks), the
             * logits laid out as the batch's (out rows last to first) */
            std::vector<std::vector<std::pair<int, int>>> runs;
            std::vector<outs> run_outs;
            if (r == ALONE)
                for (auto &pt : parts)
                    for (int k = 0; k < pt.second; k++) {
                        runs.push_back({{pt.first, 1}});
                        run_outs.push_back(st.want == OUT_ALL || (st.want == OUT_LAST && k == pt.second - 1) ? OUT_ALL
                                                                                                          : OUT_NONE);
                    }
            else
                runs.push_back(parts), run_outs.push_back(st.want);
            for (size_t ri = 0; ri < runs.size(); ri++) {
                const auto &run = runs[ri];
                step_batch sb;
                build(w[r], run, sb, run_outs[ri]);
                std::vector<float> l((size_t)sb.b.n_out * VOCAB, NAN);
                auto t0 = std::chrono::steady_clock::now();
                rc = slm_forward_run(rigs[r].f, &rigs[r].pool, &sb.b, l.data());
                ms[r] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                CHECK(rc == 0, "%s: step %d: slm_forward_run: expected 0, got %d", rigs[r].name, steps, rc);
                logits[r].insert(logits[r].begin(), l.begin(), l.end());
            }
        }
        char what[96];
        size_t n_tok = 0;
        for (auto &pt : parts) n_tok += (size_t)pt.second;
        snprintf(what, sizeof what, "step %d (%zu tokens), graphs vs eager", steps, n_tok);
        compare(what, logits[1], logits[0]);
        snprintf(what, sizeof what, "step %d (%zu tokens), broken capture vs eager", steps, n_tok);
        compare(what, logits[1], logits[2]);
        snprintf(what, sizeof what, "step %d (%zu tokens), decode-only graphs vs eager", steps, n_tok);
        compare(what, logits[1], logits[3]);
        snprintf(what, sizeof what, "step %d (%zu tokens), each token alone vs batched", steps, n_tok);
        compare(what, logits[1], logits[ALONE]);
        for (int r : {1, (int)ALONE}) {   /* NaN would compare equal to NaN above */
            size_t bad = 0;
            for (float x : logits[r]) bad += !std::isfinite(x);
            CHECK(bad == 0, "step %d, %s: expected finite logits, got %zu not finite", steps, rigs[r].name, bad);
        }
        steps++;
        if (failures > 20) break;
    }

    std::vector<uint16_t> kv[GRAPHED];
    for (int r = 0; r < GRAPHED; r++) kv[r] = kv_of(rigs[r]);
    std::vector<uint16_t> kv_alone = kv_of(rigs[ALONE]);
    CHECK(kv_alone == kv[1], "the KV pool of the alone and the eager rigs: expected identical");
    for (int r = 0; r < GRAPHED; r++)
        if (r != 1 && !kv[r].empty() && kv[r] != kv[1]) {
            size_t i = 0;
            while (i < kv[r].size() && kv[r][i] == kv[1][i]) i++;
            printf("FAIL %s: KV pool half %zu: expected 0x%04x (eager), got 0x%04x\n", rigs[r].name, i, kv[1][i],
                   kv[r][i]);
            failures++;
        }

    struct slm_cuda_graph_stats g = stats_of(rigs[0]), e = stats_of(rigs[1]), b = stats_of(rigs[2]);
    struct slm_cuda_graph_stats d = stats_of(rigs[3]);
    for (int r = 0; r < GRAPHED; r++) {
        struct slm_cuda_graph_stats s = r == 0 ? g : r == 1 ? e : r == 2 ? b : d;
        printf("%-7s %d steps in %.0f ms (emulated): warm-ups %ld, captures %ld, replays %ld, eager %ld, "
               "failures %ld, resets %ld\n",
               rigs[r].name, steps, ms[r], s.warmups, s.captures, s.replays, s.eager, s.failures, s.resets);
    }
    /* graphs: the first prompt chunk runs op by op (no attention shape seen yet to cut a mixed
     * step's tiles for); the chunks of 16 then warm up, capture and replay (16 tokens, 1
     * partition, 16 logits rows, 1 tile; mixed), the last chunk (2, 2 partitions, 2, 1) warms up,
     * the short prompts of 10-14 tokens (16, 1, 16, 2 tiles: theirs and the padding's) warm up,
     * capture and replay; decode shapes (tokens, partitions) (4,1) (1,1) (8,1) (4,2), then the new
     * forward pass drops them, then (4,1) again, (8,2) and (2,1); mixed (8, 2, 4 rows, 4 tiles):
     * warm-up, capture, 2 replays; (8, 1, no logits, 2): warm-up, capture, replay; (4, 1, 4, 4):
     * warm-up. */
    CHECK(g.captures == 11, "graphs: captures: expected 11, got %ld", g.captures);
    CHECK(g.replays == 19, "graphs: replays: expected 19, got %ld", g.replays);
    CHECK(g.warmups == 13 && g.failures == 0 && g.resets == 1 && g.eager == 1,
          "graphs: warm-ups %ld, failures %ld, resets %ld, eager %ld: expected 13, 0, 1 and 1", g.warmups, g.failures,
          g.resets, g.eager);
    CHECK(e.captures == 0 && e.replays == 0 && e.warmups == 0 && e.eager == steps,
          "eager: expected only eager steps (%d), got captures %ld, replays %ld, warm-ups %ld, eager %ld", steps,
          e.captures, e.replays, e.warmups, e.eager);
    CHECK(b.captures == 0 && b.replays == 0 && b.failures == 10,
          "broken: expected 10 failures and no capture or replay, got failures %ld, captures %ld, replays %ld",
          b.failures, b.captures, b.replays);
    /* decode: the decode shapes as above (7 warm-ups, 7 captures, 8 replays), every other step op
     * by op (the 14 prompt steps and the 8 mixed ones) */
    CHECK(d.warmups == 7 && d.captures == 7 && d.replays == 8 && d.eager == 22 && d.failures == 0,
          "decode: expected 7 warm-ups, 7 captures, 8 replays and 22 eager steps, got %ld, %ld, %ld and %ld",
          d.warmups, d.captures, d.replays, d.eager);

    printf("alone: %d steps' tokens one at a time in %.0f ms (emulated)\n", steps, ms[ALONE]);

    for (auto &r : rigs) rig_close(r);
    printf(failures ? "test_cuda_graphs: %d failures\n" : "test_cuda_graphs: ok\n", failures);
    return failures ? 1 : 0;
}
