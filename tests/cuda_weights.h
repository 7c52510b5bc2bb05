/* tests/cuda_weights.h - device buffers and random weights for the CUDA kernel tests
 * (test_cuda_ops, test_cuda_gemv): dev_buf, a poisoned device array; tname; rand_range,
 * rand_floats; rand_weights, a (rows, cols) weight of any type with finite, moderate scales;
 * check_quantize_refusals, the bad arguments both activation quantizers refuse.
 * Include after tests/cuda_check.h and tests/rng.h. */
#ifndef SLM_TESTS_CUDA_WEIGHTS_H
#define SLM_TESTS_CUDA_WEIGHTS_H

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

/* A device buffer, poisoned (all bytes 0xff: NaN as f32, f16 and bf16) at allocation. */
template <class T> struct dev_buf {
    T *p = nullptr;
    size_t n = 0;
    explicit dev_buf(size_t count) : n(count)
    {
        CUDA_OK(cudaMalloc((void **)&p, std::max<size_t>(1, n) * sizeof(T)));
        poison();
    }
    dev_buf(const std::vector<T> &h) : dev_buf(h.size()) { upload(h); }
    ~dev_buf() { cudaFree(p); }
    dev_buf(const dev_buf &) = delete;
    dev_buf &operator=(const dev_buf &) = delete;
    void poison() { CUDA_OK(cudaMemset(p, 0xff, n * sizeof(T))); }
    void upload(const std::vector<T> &h) { CUDA_OK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
    std::vector<T> download() const
    {
        std::vector<T> h(n);
        CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

static inline const char *tname(uint32_t type)
{
    const char *s = slm_qtype_name(type);
    return s ? s : "?";
}

static inline float rand_range(float lo, float hi)
{
    return lo + (hi - lo) * (frand() * 0.5f + 0.5f);
}

static inline std::vector<float> rand_floats(size_t n)
{
    std::vector<float> v(n);
    for (auto &f : v) f = frand();
    return v;
}

static inline void put_half(uint8_t *p, float f)
{
    slm_half h = slm_f32_to_half(f);
    memcpy(p, &h, 2);
}

/* (rows, cols) of `type`: random quants (every byte random) with valid, moderate scales
 * (finite halves), so that every value is finite and f16 holds it. */
static inline std::vector<uint8_t> rand_weights(uint32_t type, int64_t rows, int64_t cols)
{
    size_t rb = slm_cuda_row_bytes(type, cols), bb = slm_qblock_bytes(type);
    std::vector<uint8_t> w(rows * rb);
    for (auto &b : w) b = (uint8_t)rnd();
    if (type == SLM_TYPE_F32) {
        for (size_t i = 0; i < w.size() / 4; i++) {
            float f = frand();
            memcpy(&w[4 * i], &f, 4);
        }
        return w;
    }
    if (type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
        for (size_t i = 0; i < w.size() / 2; i++) {
            uint16_t h = type == SLM_TYPE_F16 ? slm_f32_to_half(frand()) : slm_f32_to_bf16(frand());
            memcpy(&w[2 * i], &h, 2);
        }
        return w;
    }
    for (size_t off = 0; off < w.size(); off += bb) {
        uint8_t *b = &w[off];
        float sign = rnd() & 1 ? 1.0f : -1.0f;
        switch (type) {
        case SLM_TYPE_Q4_0: case SLM_TYPE_Q5_0: case SLM_TYPE_Q8_0: put_half(b, sign * rand_range(0.002f, 0.05f)); break;
        case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_1:
            put_half(b, rand_range(0.002f, 0.05f));
            put_half(b + 2, rand_range(-0.5f, 0.5f));
            break;
        case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K:
            put_half(b, rand_range(0.0005f, 0.01f));
            put_half(b + 2, rand_range(0.0005f, 0.01f));
            break;
        case SLM_TYPE_Q6_K: put_half(b + 208, sign * rand_range(0.0002f, 0.004f)); break;
        }
    }
    return w;
}

/* The refusals (-EINVAL) the standalone quantizers share (slm_cuda_gemv_quantize and
 * slm_cuda_mmq_quantize, named by name): n = 0 or past SLM_CUDA_ACT_MAX_TOKENS, cols not whole
 * blocks, a NULL x or xq, a misaligned x, xq or gamma. x (2 tokens of cols and 4 floats more), g
 * (cols + 4) and q (their xq of 2 tokens and 16 bytes more): device memory, 16-byte aligned. */
typedef int (*quantize_fn)(const float *, const float *, float, int, int64_t, void *, struct CUstream_st *);
static inline void check_quantize_refusals(quantize_fn quantize, const char *name, const float *x, const float *g,
                                           uint8_t *q, int64_t cols, float eps)
{
    const struct {
        const char *what;
        int rc;
    } cases[] = {
        {"n = 0", quantize(x, nullptr, eps, 0, cols, q, nullptr)},
        {"n past SLM_CUDA_ACT_MAX_TOKENS", quantize(x, nullptr, eps, SLM_CUDA_ACT_MAX_TOKENS + 1, 32, q, nullptr)},
        {"48 columns (not whole blocks)", quantize(x, nullptr, eps, 2, 48, q, nullptr)},
        {"x NULL", quantize(nullptr, nullptr, eps, 2, cols, q, nullptr)},
        {"xq NULL", quantize(x, nullptr, eps, 2, cols, nullptr, nullptr)},
        {"x misaligned", quantize(x + 1, nullptr, eps, 2, cols, q, nullptr)},
        {"xq misaligned", quantize(x, nullptr, eps, 2, cols, q + 8, nullptr)},
        {"gamma misaligned", quantize(x, g + 1, eps, 2, cols, q, nullptr)},
    };
    for (const auto &c : cases) CHECK(c.rc == -EINVAL, "%s, %s: expected -EINVAL, got %d", name, c.what, c.rc);
}

#endif
