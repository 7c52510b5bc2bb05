/* tests/attention_fixture.h - what the attention kernel tests (test_cuda_attention,
 * test_cuda_attention_decode, test_cuda_attention_prefill) share: model shapes, a fixture holding
 * the CPU backend and a KV pool mirrored on the device (kv_of: its layer for the launchers), steps
 * of tokens and rows picked out of them, the device side of one call (make_call takes the
 * launcher's workspace size function), and the float64 reference. Include once per test
 * program, after the CUDA, engine and test headers. */
#ifndef SLM_TESTS_ATTENTION_FIXTURE_H
#define SLM_TESTS_ATTENTION_FIXTURE_H

static float half_bits_to_f32(uint16_t h)
{
    return slm_half_to_f32(h);
}

/* Device copy of a host vector. */
template <class T> static T *dev(const std::vector<T> &h)
{
    T *d = nullptr;
    if (cudaMalloc((void **)&d, h.size() * sizeof(T) + 1) != cudaSuccess) return nullptr;
    cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}

template <class T> static std::vector<T> host(const T *d, size_t n)
{
    std::vector<T> h(n);
    cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}

/* Compares n floats; prints the first ten mismatches and the max errors. Returns mismatches. */
static int compare(const char *what, const float *want, const float *got, size_t n, double tol)
{
    int bad = 0;
    double max_abs = 0, max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        double e = std::fabs((double)want[i] - (double)got[i]);
        if (!(e <= tol)) {
            if (bad < 10) printf("%s[%zu]: expected %.9g, got %.9g\n", what, i, want[i], got[i]);
            bad++;
        }
        if (!(e <= max_abs)) max_abs = e;
        double r = e / (std::fabs(want[i]) + 1e-30);
        if (r > max_rel) max_rel = r;
    }
    printf("%s: %zu values, max abs error %.3g, max rel error %.3g (bound %.3g abs)%s\n", what, n, max_abs, max_rel,
           tol, bad ? " FAIL" : "");
    if (bad) failures++;
    return bad;
}

static int same_bits(const char *what, const void *a, const void *b, size_t bytes)
{
    if (!memcmp(a, b, bytes)) return 1;
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t i = 0;
    while (x[i] == y[i]) i++;
    printf("FAIL %s: expected identical bits, first difference at byte %zu of %zu\n", what, i, bytes);
    failures++;
    return 0;
}

struct config {
    const char *name;
    int n_head, n_head_kv, head_dim, rope_dim, layout;
    int window;   /* sliding window (0: none) */
};

/* One step: the tokens (seq, pos) of a call, their q/k/v, run on both backends. */
struct step {
    std::vector<int32_t> pos, seq;
};

struct fixture {
    config c;
    slm_attn_params p;
    slm_cuda_attn_shape shape;
    int block_size = 16, n_seq = 4, max_blocks = 0, n_blocks = 0;
    std::vector<int32_t> tables;
    slm_backend *cpu = nullptr;
    slm_kv_pool pool{};
    void *gpu_pool = nullptr;
    int32_t *d_tables = nullptr;
    slm_cuda_rope_table rope{};   /* the host's cos and sin (slm_cpu_rope_angles) of every position */
    size_t qd() const { return (size_t)c.n_head * c.head_dim; }
    size_t kvd() const { return (size_t)c.n_head_kv * c.head_dim; }
    size_t layer_halves() const { return (size_t)n_blocks * block_size * kvd(); }
};

static int setup(fixture &f, const config &c, const int *lens)
{
    f.c = c;
    f.p = {c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.layout, 10000.0f, 1.0f / std::sqrt((float)c.head_dim),
           nullptr, 1.0f, c.window};
    f.shape = {c.n_head, c.n_head_kv, c.head_dim, c.rope_dim, c.layout, f.p.scale, c.window};
    int total = 0, max_len = 1;
    for (int s = 0; s < f.n_seq; s++) {
        max_len = std::max(max_len, lens[s]);
        int nb = (lens[s] + f.block_size - 1) / f.block_size;
        if (nb > f.max_blocks) f.max_blocks = nb;
        total += nb;
    }
    f.n_blocks = total + 3;
    /* Block ids handed out in a shuffled order, so the tables jump around the pool. */
    std::vector<int32_t> ids(f.n_blocks);
    for (int i = 0; i < f.n_blocks; i++) ids[i] = i;
    for (int i = f.n_blocks - 1; i > 0; i--) std::swap(ids[i], ids[rnd() % (uint64_t)(i + 1)]);
    f.tables.assign((size_t)f.n_seq * f.max_blocks, -1);
    int next = 0;
    for (int s = 0; s < f.n_seq; s++)
        for (int b = 0; b < (lens[s] + f.block_size - 1) / f.block_size; b++)
            f.tables[(size_t)s * f.max_blocks + b] = ids[next++];
    char err[256];
    f.cpu = slm_backend_cpu_create(2, err);
    if (!f.cpu) return -1;
    f.pool = {1, f.n_blocks, f.block_size, (int)f.kvd(), nullptr, 0, nullptr};
    if (f.cpu->ops->kv_alloc(f.cpu, &f.pool)) return -1;
    if (cudaMalloc(&f.gpu_pool, f.layer_halves() * 2 * sizeof(uint16_t)) != cudaSuccess) return -1;
    cudaMemset(f.gpu_pool, 0, f.layer_halves() * 2 * sizeof(uint16_t));
    f.d_tables = dev(f.tables);
    int half = c.rope_dim / 2;
    std::vector<float> cs((size_t)max_len * c.rope_dim), cos_t(half + 1), sin_t(half + 1);
    for (int p = 0; p < max_len; p++) {
        slm_cpu_rope_angles(p, c.rope_dim, f.p.rope_base, nullptr, 1.0f, cos_t.data(), sin_t.data());
        for (int j = 0; j < half; j++) {
            cs[((size_t)p * half + j) * 2] = cos_t[j];
            cs[((size_t)p * half + j) * 2 + 1] = sin_t[j];
        }
    }
    f.rope = {dev(cs), max_len};
    return 0;
}

static void teardown(fixture &f)
{
    f.cpu->ops->kv_free(f.cpu, &f.pool);
    slm_backend_destroy(&f.cpu);
    cudaFree(f.gpu_pool);
    cudaFree(f.d_tables);
    cudaFree((void *)f.rope.cos_sin);
}

/* Device state of one call. */
struct call {
    int n;
    int32_t *pos, *seq;
    float *q, *k, *v, *out;
    void *ws;
    size_t ws_bytes;
    slm_cuda_attn_tokens t;
};

static call make_call(fixture &f, const step &s, const std::vector<float> &q, const std::vector<float> &k,
                      const std::vector<float> &v, int max_ctx,
                      size_t (*ws_bytes)(const slm_cuda_attn_shape *, int, int) = slm_cuda_attention_decode_fused_workspace)
{
    call c{};
    c.n = (int)s.pos.size();
    c.pos = dev(s.pos);
    c.seq = dev(s.seq);
    c.q = dev(q);
    c.k = dev(k);
    c.v = dev(v);
    cudaMalloc((void **)&c.out, q.size() * sizeof(float));
    cudaMemset(c.out, 0xff, q.size() * sizeof(float));   /* NaN */
    c.ws_bytes = ws_bytes(&f.shape, c.n, max_ctx);
    cudaMalloc(&c.ws, c.ws_bytes);
    cudaMemset(c.ws, 0xff, c.ws_bytes);
    c.t = {c.n, c.pos, c.seq, f.d_tables, f.n_seq, f.max_blocks, nullptr, 0};
    return c;
}

static void free_call(call &c)
{
    cudaFree(c.pos);
    cudaFree(c.seq);
    cudaFree(c.q);
    cudaFree(c.k);
    cudaFree(c.v);
    cudaFree(c.out);
    cudaFree(c.ws);
}

/* The device pool as the launchers' layer. */
static slm_cuda_kv_layer kv_of(fixture &f)
{
    return {f.gpu_pool, (uint16_t *)f.gpu_pool + f.layer_halves(), f.n_blocks, f.block_size};
}

/* Rows idx of a (rows of `width` values). */
static std::vector<float> pick(const std::vector<float> &a, size_t width, const std::vector<int> &idx)
{
    std::vector<float> r;
    for (int i : idx) r.insert(r.end(), a.begin() + (long)(i * width), a.begin() + (long)((i + 1) * width));
    return r;
}

/* softmax(scale q.K) V in float64 from the pool's f16 K/V and q rounded to f16, over positions
 * 0..pos (with the fixture's window w, pos - w + 1..pos). */
static void reference64(const fixture &f, const uint16_t *pool, const float *q, int seq, int pos, float *out)
{
    const uint16_t *kp = pool, *vp = pool + f.layer_halves();
    int D = f.c.head_dim, group = f.c.n_head / f.c.n_head_kv;
    std::vector<double> s(pos + 1);
    const int first = f.c.window > 0 && pos >= f.c.window ? pos - f.c.window + 1 : 0;
    for (int h = 0; h < f.c.n_head; h++) {
        size_t off = (size_t)(h / group) * D;
        double mx = -INFINITY;
        for (int t = first; t <= pos; t++) {
            size_t row = (size_t)f.tables[(size_t)seq * f.max_blocks + t / f.block_size] * f.block_size + t % f.block_size;
            double d = 0;
            for (int i = 0; i < D; i++)
                d += (double)slm_half_to_f32(slm_f32_to_half(q[(size_t)h * D + i])) *
                     half_bits_to_f32(kp[row * f.kvd() + off + i]);
            s[t] = d * f.p.scale;
            if (s[t] > mx) mx = s[t];
        }
        double sum = 0;
        for (int t = first; t <= pos; t++) sum += (s[t] = std::exp(s[t] - mx));
        for (int i = 0; i < D; i++) {
            double o = 0;
            for (int t = first; t <= pos; t++) {
                size_t row = (size_t)f.tables[(size_t)seq * f.max_blocks + t / f.block_size] * f.block_size +
                             t % f.block_size;
                o += s[t] * half_bits_to_f32(vp[row * f.kvd() + off + i]);
            }
            out[(size_t)h * D + i] = (float)(o / sum);
        }
    }
}

/* Tokens at positions from..to-1 of sequence seq. */
static step tokens(int seq, int from, int to)
{
    step s;
    for (int p = from; p < to; p++) {
        s.pos.push_back(p);
        s.seq.push_back(seq);
    }
    return s;
}

/* a then b. */
static void append(step &a, const step &b)
{
    a.pos.insert(a.pos.end(), b.pos.begin(), b.pos.end());
    a.seq.insert(a.seq.end(), b.seq.begin(), b.seq.end());
}

/* The refusals of the attention launchers, through `decode(shape, tokens, kv, q,
 * workspace_bytes, out)` (the launcher under test over cl's call): a good call, then bad
 * shapes, RoPE dims, NULLs, a small workspace, and what only the emulator can see. */
template <class Launch>
static void shared_refusals(fixture &f, call &cl, const slm_cuda_kv_layer &kv, Launch decode)
{
    slm_cuda_attn_shape sh = f.shape;
    CHECK(decode(&sh, &cl.t, &kv, cl.q, cl.ws_bytes, cl.out) == 0, "good decode: expected 0");
    sh.head_dim = 72;
    CHECK(decode(&sh, &cl.t, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "head_dim 72: expected -EINVAL");
    sh = f.shape;
    sh.n_head = 10;
    CHECK(decode(&sh, &cl.t, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "n_head 10 / n_head_kv 3: expected -EINVAL");
    sh = f.shape;
    sh.n_head = 51, sh.n_head_kv = 3;
    CHECK(decode(&sh, &cl.t, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "group 17: expected -EINVAL");
    sh = f.shape;
    sh.window = -1;
    CHECK(decode(&sh, &cl.t, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "window -1: expected -EINVAL");
    sh = f.shape;
    sh.rope_dim = 63;
    CHECK(slm_cuda_rope_store(&sh, &cl.t, &kv, &f.rope, cl.q, cl.k, cl.v, 0) == -EINVAL, "rope_dim 63: expected -EINVAL");
    sh.rope_dim = 66;
    CHECK(slm_cuda_rope_store(&sh, &cl.t, &kv, &f.rope, cl.q, cl.k, cl.v, 0) == -EINVAL, "rope_dim 66: expected -EINVAL");
    slm_cuda_rope_table no_table = {nullptr, 0};
    CHECK(slm_cuda_rope_store(&f.shape, &cl.t, &kv, &no_table, cl.q, cl.k, cl.v, 0) == -EINVAL,
          "no rope table: expected -EINVAL");
    CHECK(slm_cuda_rope_store(&f.shape, &cl.t, &kv, nullptr, cl.q, cl.k, cl.v, 0) == -EINVAL,
          "rope table NULL: expected -EINVAL");
    CHECK(decode(&f.shape, &cl.t, &kv, nullptr, cl.ws_bytes, cl.out) == -EINVAL, "q NULL: expected -EINVAL");
    CHECK(decode(&f.shape, &cl.t, &kv, cl.q, cl.ws_bytes, nullptr) == -EINVAL, "out NULL: expected -EINVAL");
    CHECK(decode(&f.shape, &cl.t, &kv, cl.q, cl.ws_bytes - 4, cl.out) == -EINVAL, "small workspace: expected -EINVAL");
    CHECK(decode(&f.shape, nullptr, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "tokens NULL: expected -EINVAL");
    std::vector<float> host_out(3 * f.qd());
    slm_emu_options o;
    slm_emu_get_options(&o);
    slm_emu_options quiet = o;
    quiet.quiet = 1;
    slm_emu_set_options(&quiet);
    if (slm_emu_active()) {   /* what only the emulator's pointer check can see */
        CHECK(decode(&f.shape, &cl.t, &kv, cl.q, cl.ws_bytes, host_out.data()) == -EINVAL,
              "host out: expected -EINVAL");
        slm_cuda_kv_layer small = kv;
        small.n_blocks = f.n_blocks * 3;
        CHECK(decode(&f.shape, &cl.t, &small, cl.q, cl.ws_bytes, cl.out) == -EINVAL,
              "cache smaller than n_blocks says: expected -EINVAL");
        slm_cuda_rope_table big = {f.rope.cos_sin, f.rope.positions + 1};
        CHECK(slm_cuda_rope_store(&f.shape, &cl.t, &kv, &big, cl.q, cl.k, cl.v, 0) == -EINVAL,
              "rope table longer than its memory: expected -EINVAL");
    }
    slm_emu_set_options(&o);
    cudaGetLastError();   /* the refused pointers left their error, as a failed CUDA call does */
    slm_cuda_attn_tokens t0 = cl.t;
    t0.n_tokens = 0;
    CHECK(decode(&f.shape, &t0, &kv, cl.q, cl.ws_bytes, cl.out) == -EINVAL, "0 tokens: expected -EINVAL");
    /* A position past the table: that token's q and k become NaN, the others rotate. */
    slm_cuda_rope_table one = {f.rope.cos_sin, 1};
    CHECK(slm_cuda_rope_store(&f.shape, &cl.t, &kv, &one, cl.q, cl.k, cl.v, 0) == 0, "short rope table: expected 0");
    std::vector<int32_t> pos = host(cl.t.pos, (size_t)cl.n);
    std::vector<float> q = host(cl.q, (size_t)cl.n * f.qd());
    int past = 0;
    for (int i = 0; i < cl.n; i++) {
        past += pos[i] >= 1;
        CHECK((pos[i] >= 1) == (bool)std::isnan(q[(size_t)i * f.qd()]),
              "token at position %d with a table of 1 position: expected q %s, got %g", pos[i],
              pos[i] >= 1 ? "NaN" : "finite", q[(size_t)i * f.qd()]);
    }
    CHECK(past > 0, "the short-table check needs a token past position 0");
}

#endif
