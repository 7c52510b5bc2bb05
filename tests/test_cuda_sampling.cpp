/* test_cuda_sampling: kernels/cuda/sampling.cu under the SIMT emulator against the CPU
 * sampler (daemon/engine/sampler.c) and slm_logprobs_top (stop.c): random logits rows and
 * parameter sets (greedy with ties, top-k 1, top-p 0.5, min-p 0.1, the defaults, penalties
 * with histories, -inf / NaN / +inf logits, top-k alone from 1 to n_vocab - 1), several steps
 * each so the RNG states must advance alike; the token must equal the CPU sampler's in every
 * case, logprobs within 1e-5. */
#include <cuda_runtime_api.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "daemon/engine/sampler.h"
#include "daemon/engine/stop.h"
}
#include "kernels/cuda/attention.h"
#include "kernels/emu/emu_api.h"
#include "tests/check.h"
#include "tests/rng.h"

struct row_case {
    slm_sampling sp;
    int n_vocab;
    int kind;                  /* logits: 0 smooth, 1 coarse ties, 2 with -inf/NaN, 3 with +inf, 4 all -inf, 5 flat */
    int n_logprobs;
    std::vector<int32_t> history;
    slm_sampler *cpu;
};

static void fill_logits(float *x, int n, int kind)
{
    float spread = 2.0f + 6.0f * (float)(rnd() % 1000) / 1000.0f;
    for (int i = 0; i < n; i++) {
        float g = (frand() + frand() + frand()) * spread;
        x[i] = kind == 1 ? std::round(g * 2.0f) / 2.0f : kind == 5 ? 1.0f : g;
        if (kind == 2 && rnd() % 7 == 0) x[i] = rnd() % 2 ? -INFINITY : NAN;
        if (kind == 3 && rnd() % 200 == 0) x[i] = INFINITY;
        if (kind == 4) x[i] = rnd() % 3 ? -INFINITY : NAN;
    }
}

/* The penalty window the CPU sampler holds after accepting history. */
static void window(const row_case &c, std::vector<int32_t> &out)
{
    out.clear();
    if (c.sp.repeat_last_n == 0) return;
    size_t from = 0;
    if (c.sp.repeat_last_n > 0 && c.history.size() > (size_t)c.sp.repeat_last_n)
        from = c.history.size() - (size_t)c.sp.repeat_last_n;
    out.assign(c.history.begin() + (long)from, c.history.end());
}

static slm_sampling params(float t, int k, float p, float mp, float rep, int last_n, float pres, float freq)
{
    slm_sampling s;
    slm_sampling_defaults(&s);
    s.temperature = t, s.top_k = k, s.top_p = p, s.min_p = mp, s.repeat_penalty = rep, s.repeat_last_n = last_n;
    s.presence_penalty = pres, s.frequency_penalty = freq;
    s.seed = rnd();
    return s;
}

static int run_cases(std::vector<row_case> &rows, int steps)
{
    int n_rows = (int)rows.size(), n_vocab = rows[0].n_vocab;
    size_t ws_bytes = slm_cuda_sample_workspace(n_rows, n_vocab);
    float *d_logits, *d_lp;
    slm_cuda_sampling *d_params;
    uint64_t *d_rng;
    int32_t *d_tokens, *d_hist = nullptr;
    void *d_ws, *d_top;
    cudaMalloc((void **)&d_logits, (size_t)n_rows * n_vocab * 4);
    cudaMalloc((void **)&d_params, (size_t)n_rows * sizeof(slm_cuda_sampling));
    cudaMalloc((void **)&d_rng, (size_t)n_rows * 32);
    cudaMalloc((void **)&d_tokens, (size_t)n_rows * 4);
    cudaMalloc((void **)&d_lp, (size_t)n_rows * 4);
    cudaMalloc(&d_top, (size_t)n_rows * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8);
    cudaMalloc(&d_ws, ws_bytes);
    std::vector<uint64_t> rng((size_t)n_rows * 4);
    for (int r = 0; r < n_rows; r++) {
        rows[r].cpu = slm_sampler_create(&rows[r].sp, n_vocab);
        for (int32_t t : rows[r].history) slm_sampler_accept(rows[r].cpu, t);
        slm_cuda_sampling_seed(rows[r].sp.seed, &rng[(size_t)r * 4]);
    }
    cudaMemcpy(d_rng, rng.data(), rng.size() * 8, cudaMemcpyHostToDevice);
    int mismatches = 0, checked = 0;
    std::vector<float> logits((size_t)n_rows * n_vocab);
    for (int step = 0; step < steps; step++) {
        std::vector<slm_cuda_sampling> prm(n_rows);
        std::vector<int32_t> hist, win;
        for (int r = 0; r < n_rows; r++) {
            const slm_sampling &s = rows[r].sp;
            fill_logits(&logits[(size_t)r * n_vocab], n_vocab, rows[r].kind);
            window(rows[r], win);
            prm[r] = {s.temperature, s.top_k, s.top_p, s.min_p, logf(s.min_p), s.repeat_penalty, s.presence_penalty,
                      s.frequency_penalty, (int32_t)hist.size(), (int32_t)win.size(), rows[r].n_logprobs, 0};
            hist.insert(hist.end(), win.begin(), win.end());
        }
        cudaFree(d_hist);
        d_hist = nullptr;
        if (!hist.empty()) {
            cudaMalloc((void **)&d_hist, hist.size() * 4);
            cudaMemcpy(d_hist, hist.data(), hist.size() * 4, cudaMemcpyHostToDevice);
        }
        cudaMemcpy(d_logits, logits.data(), logits.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(d_params, prm.data(), prm.size() * sizeof prm[0], cudaMemcpyHostToDevice);
        cudaMemset(d_tokens, 0xff, (size_t)n_rows * 4);
        cudaMemset(d_lp, 0xff, (size_t)n_rows * 4);
        int rc = slm_cuda_sample(d_logits, n_rows, n_vocab, d_params, d_rng, d_hist, (int)hist.size(), d_ws, ws_bytes,
                                 d_tokens, d_lp, d_top, 0);
        CHECK(rc == 0, "slm_cuda_sample: expected 0, got %d", rc);
        CHECK(cudaDeviceSynchronize() == cudaSuccess, "sync: %s", slm_emu_last_report());
        std::vector<int32_t> tok(n_rows);
        std::vector<float> lp(n_rows);
        std::vector<slm_logprob> top((size_t)n_rows * SLM_CUDA_SAMPLE_MAX_LOGPROBS);
        cudaMemcpy(tok.data(), d_tokens, (size_t)n_rows * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(lp.data(), d_lp, (size_t)n_rows * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(top.data(), d_top, top.size() * 8, cudaMemcpyDeviceToHost);
        for (int r = 0; r < n_rows; r++) {
            const float *x = &logits[(size_t)r * n_vocab];
            int32_t want = slm_sampler_sample(rows[r].cpu, x);
            checked++;
            if (tok[r] != want) {
                if (mismatches < 10)
                    printf("FAIL row %d step %d (n_vocab %d, kind %d, T %g, top_k %d, top_p %g, min_p %g, rep %g): "
                           "token: expected %d, got %d\n",
                           r, step, n_vocab, rows[r].kind, rows[r].sp.temperature, rows[r].sp.top_k, rows[r].sp.top_p,
                           rows[r].sp.min_p, rows[r].sp.repeat_penalty, want, tok[r]);
                mismatches++;
            }
            slm_logprob ref[SLM_LOGPROBS_MAX];
            float ref_lp = 0;
            int n = slm_logprobs_top(x, n_vocab, want, rows[r].n_logprobs, &ref_lp, ref);
            if (n >= 0) {
                CHECK(std::fabs(ref_lp - lp[r]) <= 1e-5, "row %d: sampled logprob: expected %.7g, got %.7g", r, ref_lp,
                      lp[r]);
                for (int j = 0; j < n; j++) {
                    const slm_logprob &g = top[(size_t)r * SLM_CUDA_SAMPLE_MAX_LOGPROBS + j];
                    CHECK(g.id == ref[j].id && std::fabs(g.logprob - ref[j].logprob) <= 1e-5,
                          "row %d top %d: expected (%d, %.7g), got (%d, %.7g)", r, j, ref[j].id, ref[j].logprob, g.id,
                          g.logprob);
                }
            } else if (rows[r].n_logprobs >= 0) {
                CHECK(std::isnan(lp[r]), "row %d: logprob of an invalid row: expected NaN, got %g", r, lp[r]);
            }
            slm_sampler_accept(rows[r].cpu, want);
            rows[r].history.push_back(want);
        }
    }
    for (auto &c : rows) slm_sampler_destroy(&c.cpu);
    cudaFree(d_logits);
    cudaFree(d_params);
    cudaFree(d_rng);
    cudaFree(d_tokens);
    cudaFree(d_lp);
    cudaFree(d_top);
    cudaFree(d_ws);
    cudaFree(d_hist);
    printf("n_vocab %d: %d rows x %d steps, %d of %d tokens as the CPU sampler's\n", n_vocab, n_rows, steps,
           checked - mismatches, checked);
    if (mismatches) failures++;
    return mismatches;
}

static std::vector<int32_t> random_history(int n, int n_vocab)
{
    std::vector<int32_t> h(n);
    /* Draws from a small set, so tokens repeat (frequency counts above 1), and a few outside the vocabulary. */
    for (auto &t : h) t = rnd() % 9 == 0 ? (int32_t)(rnd() % 40) : (int32_t)(rnd() % (uint64_t)n_vocab);
    if (n > 3) h[2] = -5, h[3] = n_vocab + 7;
    return h;
}

static void mixed(int n_vocab, int n_rows, int steps)
{
    std::vector<row_case> rows;
    for (int r = 0; r < n_rows; r++) {
        row_case c{};
        c.n_vocab = n_vocab;
        c.kind = r % 11 == 10 ? 4 : r % 7 == 6 ? 3 : r % 5 == 4 ? 2 : r % 3 == 2 ? 1 : 0;
        c.n_logprobs = (int)(rnd() % 21);
        switch (r % 12) {
        case 0: c.sp = params(0, 0, 1, 0, 1, 64, 0, 0); break;                   /* greedy */
        case 1: c.sp = params(0, 40, 0.9f, 0.1f, 1.3f, 64, 0.4f, 0.2f); break;   /* greedy with penalties */
        case 2: c.sp = params(0.8f, 40, 0.95f, 0.05f, 1, 64, 0, 0); break;       /* llama.cpp's defaults */
        case 3: c.sp = params(1.0f, 1, 1, 0, 1, 64, 0, 0); break;                /* top-k 1 */
        case 4: c.sp = params(1.0f, 0, 0.5f, 0, 1, 64, 0, 0); break;             /* top-p 0.5 alone */
        case 5: c.sp = params(1.0f, 0, 1, 0.1f, 1, 64, 0, 0); break;             /* min-p 0.1 alone */
        case 6: c.sp = params(0.7f, 0, 0.9f, 0.05f, 1, 64, 0, 0); break;         /* top-p with min-p, unsorted */
        case 7: c.sp = params(1.5f, 0, 1, 0, 1, 64, 0, 0); break;                /* plain softmax */
        case 8: c.sp = params(0.9f, 50, 0.8f, 0, 1.2f, -1, 0.3f, 0.1f); break;   /* penalties, whole history */
        case 9: c.sp = params(1.1f, 0, 0.95f, 0, 1.5f, 16, -0.5f, 0.6f); break;  /* penalties, short window */
        case 10: c.sp = params(1.0f, 0, 0.0f, 0, 1, 64, 0, 0); break;            /* top-p 0 */
        default: c.sp = params(0.6f, 3000, 0.99f, 0.02f, 1.1f, 64, 0, 0); break; /* top-k larger than most */
        }
        c.history = random_history((int)(rnd() % 120), n_vocab);
        rows.push_back(c);
    }
    run_cases(rows, steps);
}

/* Top-k alone over a hot softmax (T = 25, so every kept candidate is drawn now and then and a
 * wrong set moves the total and the walk): k from 1 to n_vocab - 1 over smooth logits, coarse ties,
 * a flat row (every key the same but for its id: the radix select decides on the ids' bytes),
 * -inf / NaN and +inf, so that the device's selection of the k best (top_k_keys) must keep the
 * CPU's set in the CPU's order. */
static void top_k_only(int n_vocab, int n_rows, int steps)
{
    const int ks[] = {1, 2, 3, 39, 40, 41, 255, 256, 257, n_vocab / 2, n_vocab - 1};
    const int kinds[] = {0, 1, 5, 2, 3};
    std::vector<row_case> rows;
    for (int r = 0; r < n_rows; r++) {
        row_case c{};
        c.n_vocab = n_vocab;
        c.kind = kinds[r % 5];
        c.n_logprobs = 0;
        c.sp = params(25.0f, ks[r % 11], 1, 0, 1, 64, 0, 0);
        rows.push_back(c);
    }
    run_cases(rows, steps);
}

/* Greedy ties: the lowest id wins, also when a penalty creates the tie; all -inf gives 0. */
static void greedy_ties(void)
{
    int n_vocab = 300;
    std::vector<float> x((size_t)4 * n_vocab, -1.0f);
    x[17] = x[5 + 0] = 2.0f;                          /* row 0: 5 and 17 tie: 5 */
    x[n_vocab + 250] = 3.0f, x[n_vocab + 40] = 3.0f;  /* row 1: 40 */
    x[(size_t)2 * n_vocab + 9] = 4.0f;                /* row 2: 9 penalised to 2 ties with 100: 9 */
    x[(size_t)2 * n_vocab + 100] = 2.0f;
    for (int i = 0; i < n_vocab; i++) x[(size_t)3 * n_vocab + i] = i == 200 ? NAN : -INFINITY;   /* row 3: 0 */
    std::vector<slm_cuda_sampling> prm(4, slm_cuda_sampling{0, 0, 1, 0, -INFINITY, 1, 0, 0, 0, 0, 0, 0});
    prm[2].repeat_penalty = 2.0f, prm[2].hist_len = 1;
    int32_t hist[1] = {9}, want[4] = {5, 40, 9, 0};
    float *d_x;
    slm_cuda_sampling *d_p;
    uint64_t *d_rng;
    int32_t *d_h, *d_t;
    void *d_ws;
    size_t ws = slm_cuda_sample_workspace(4, n_vocab);
    cudaMalloc((void **)&d_x, x.size() * 4);
    cudaMalloc((void **)&d_p, sizeof(slm_cuda_sampling) * 4);
    cudaMalloc((void **)&d_rng, 4 * 32);
    cudaMalloc((void **)&d_h, 4);
    cudaMalloc((void **)&d_t, 16);
    cudaMalloc(&d_ws, ws);
    cudaMemcpy(d_x, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_p, prm.data(), sizeof(slm_cuda_sampling) * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d_h, hist, 4, cudaMemcpyHostToDevice);
    cudaMemset(d_rng, 0, 4 * 32);
    int rc = slm_cuda_sample(d_x, 4, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws, d_t, nullptr, nullptr, 0);
    int32_t got[4] = {-1, -1, -1, -1};
    cudaMemcpy(got, d_t, 16, cudaMemcpyDeviceToHost);
    CHECK(rc == 0, "greedy ties: expected 0, got %d", rc);
    for (int r = 0; r < 4; r++) CHECK(got[r] == want[r], "greedy ties row %d: expected %d, got %d", r, want[r], got[r]);

    /* Bad arguments. */
    CHECK(slm_cuda_sample(nullptr, 4, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws, d_t, nullptr, nullptr, 0) == -EINVAL,
          "NULL logits: expected -EINVAL");
    CHECK(slm_cuda_sample(d_x, 4, 0, d_p, d_rng, d_h, 1, d_ws, ws, d_t, nullptr, nullptr, 0) == -EINVAL,
          "n_vocab 0: expected -EINVAL");
    CHECK(slm_cuda_sample(d_x, 0, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws, d_t, nullptr, nullptr, 0) == -EINVAL,
          "0 rows: expected -EINVAL");
    CHECK(slm_cuda_sample(d_x, 4, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws - 8, d_t, nullptr, nullptr, 0) == -EINVAL,
          "small workspace: expected -EINVAL");
    CHECK(slm_cuda_sample(d_x, 4, n_vocab, d_p, d_rng, nullptr, 1, d_ws, ws, d_t, nullptr, nullptr, 0) == -EINVAL,
          "NULL history of 1: expected -EINVAL");
    slm_emu_options o, quiet;
    slm_emu_get_options(&o);
    quiet = o;
    quiet.quiet = 1;
    slm_emu_set_options(&quiet);
    int32_t host_tokens[4];
    if (slm_emu_active()) {   /* what only the emulator's pointer check can see */
        CHECK(slm_cuda_sample(d_x, 4, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws, host_tokens, nullptr, nullptr, 0) ==
                  -EINVAL,
              "host tokens: expected -EINVAL");
        CHECK(slm_cuda_sample(d_x, 5, n_vocab, d_p, d_rng, d_h, 1, d_ws, ws * 2, d_t, nullptr, nullptr, 0) == -EINVAL,
              "more rows than the buffers hold: expected -EINVAL");
    }
    slm_emu_set_options(&o);
    cudaGetLastError();   /* the refused host pointers left their error, as a failed CUDA call does */
    CHECK(cudaDeviceSynchronize() == cudaSuccess, "sync after bad arguments");
    cudaFree(d_x);
    cudaFree(d_p);
    cudaFree(d_rng);
    cudaFree(d_h);
    cudaFree(d_t);
    cudaFree(d_ws);
}

int main(void)
{
    greedy_ties();
    mixed(1000, 48, 3);
    mixed(4099, 24, 2);
    mixed(49152, 24, 2);
    top_k_only(1000, 55, 4);
    top_k_only(49152, 11, 2);
    if (failures) {
        printf("test_cuda_sampling: %d failures\n", failures);
        return 1;
    }
    printf("test_cuda_sampling: ok\n");
    return 0;
}
