/*
 * kernels/cuda/sampling.cu - the sampling chain of daemon/engine/sampler.c on the GPU, one
 * block per row, token for token the CPU sampler's result.
 *
 * Exactness: every step that decides a token gives the CPU's result. The penalties, the
 * candidate list (id order), the cuts by threshold (stable compactions) and the sorts (the
 * total order logit descending, id ascending, so any sort gives the same permutation) run
 * block-wide; the masses that move a cut or the draw (top-p's total and its histogram, the
 * final total and walk) are exact fixed-point sums (kernels/fixsum.h), as on the CPU, so they
 * too run over the whole block: a thread's chunk, the chunks' sums in order, the crossing chunk
 * walked by its thread. Floats are combined with __fmul_rn / __fadd_rn where nvcc would
 * otherwise contract them.
 * Greedy (temperature <= 0) is a block argmax, the lowest id on ties, token 0 when every
 * penalised logit is -inf or NaN.
 *
 * On a GPU, expf is CUDA's (within 2 ulp), not glibc's: a weight can differ in its last bit
 * from the CPU's, which moves a cut or a draw only when the uniform or the top-p target lands
 * within that rounding of a boundary. Under the emulator both are glibc's and agree exactly.
 */
#include <errno.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/compat.h"
#include "kernels/fixsum.h"
#include "kernels/rng.h"

#define SAMPLE_THREADS 256

/* A loop kept rolled (nvcc; the emulator's host compiler is left to itself): the serial scans
 * over 256 chunk sums and 1024 bins, which nvcc otherwise unrolls into 255 registers and
 * spills on sm_80-89. */
#ifdef __CUDACC__
#define SAMPLE_NO_UNROLL _Pragma("unroll 1")
#else
#define SAMPLE_NO_UNROLL
#endif
#define TOP_P_BINS 1024

/* ---- the CPU sampler's generator (kernels/rng.h) */

/* A uniform float in [0, 1) from the top 24 bits of the next output; advances s. */
__device__ static float next_uniform(uint64_t s[4])
{
    return __fmul_rn((float)(slm_rng_next(s) >> 40), 1.0f / 16777216.0f);
}

/* ---- candidate keys: (logit, id) as one integer whose order is the CPU's: higher logit,
 * then lower id, is a larger key. -0 is keyed as +0 (they compare equal as floats). */

__device__ static inline uint64_t make_key(float l, int32_t id)
{
    uint32_t u = __float_as_uint(l == 0.0f ? 0.0f : l);
    uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)ord << 32) | (uint32_t)~(uint32_t)id;
}

__device__ static inline float key_logit(uint64_t k)
{
    uint32_t ord = (uint32_t)(k >> 32);
    return __uint_as_float((ord & 0x80000000u) ? (ord & 0x7fffffffu) : ~ord);
}

__device__ static inline int32_t key_id(uint64_t k)
{
    return (int32_t)~(uint32_t)k;
}

/* ---- block-wide helpers (SAMPLE_THREADS threads, every thread calls them). */

struct sample_shared {
    double red[SAMPLE_THREADS];
    int warp_count[SAMPLE_THREADS / 32];
    union {
        int hist[256];                          /* top-k's digits (top_k_keys) */
        struct slm_fix part[SAMPLE_THREADS];    /* block_first_reach's chunk sums */
    };
    int n;
    int cross;
    struct slm_fix f0, f1;
};

template <class T, class Op> __device__ static T block_reduce(T v, struct sample_shared *sh, Op op)
{
    T *buf = reinterpret_cast<T *>(sh->red);
    __syncthreads();
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = SAMPLE_THREADS / 2; s > 0; s /= 2) {
        if ((int)threadIdx.x < s) buf[threadIdx.x] = op(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    T r = buf[0];
    __syncthreads();
    return r;
}

struct op_max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct op_min { __device__ float operator()(float a, float b) const { return fminf(a, b); } };
struct op_max_u64 { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a > b ? a : b; } };
struct op_add_d { __device__ double operator()(double a, double b) const { return a + b; } };
struct op_add_u64 { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a + b; } };

/* l0 + l1 2^32 + l2 2^64 (l0, l1 < 2^62: sums of 32-bit limbs) as one fixed-point number. */
__device__ static struct slm_fix fix_from_limbs(uint64_t l0, uint64_t l1, uint64_t l2)
{
    const uint64_t a = l1 << 32, lo = l0 + a;
    return slm_fix_make(l2 + (l1 >> 32) + (lo < a), lo);
}

/* The exact mass of w[0..n): each thread's share, the shares' 32-bit limbs added over the
 * block (the same bits for any split). */
__device__ static struct slm_fix block_mass(const float *w, int n, struct sample_shared *sh)
{
    struct slm_fix s = slm_fix_make(0, 0);
    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) s = slm_fix_add(s, slm_fix_from_float(w[i]));
    const uint64_t l0 = block_reduce<uint64_t>(s.lo & 0xffffffffu, sh, op_add_u64());
    const uint64_t l1 = block_reduce<uint64_t>(s.lo >> 32, sh, op_add_u64());
    const uint64_t l2 = block_reduce<uint64_t>(s.hi, sh, op_add_u64());
    return fix_from_limbs(l0, l1, l2);
}

/* The first i whose exact prefix mass w[0] + ... + w[i] reaches target (>= it, or > it when
 * strict), or n when none does: the CPU's walk, cut into one chunk of consecutive weights a
 * thread, the chunks' sums turned into their prefixes on one thread (256 additions), and the
 * one chunk that crosses walked by its own thread (the prefix only grows: only that chunk's
 * start is short of the target and its end not; the first chunk is walked whatever its start,
 * an empty prefix, so that a target of 0 is reached at index 0 as the CPU's walk reaches it). */
__device__ static int block_first_reach(const float *w, int n, struct slm_fix target, int strict,
                                        struct sample_shared *sh)
{
    const int per = (n + SAMPLE_THREADS - 1) / SAMPLE_THREADS, i0 = (int)threadIdx.x * per;
    const int i1 = n < i0 + per ? n : i0 + per;
    struct slm_fix s = slm_fix_make(0, 0);
    for (int i = i0; i < i1; i++) s = slm_fix_add(s, slm_fix_from_float(w[i]));
    __syncthreads();   /* part shares its room with hist */
    sh->part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        struct slm_fix run = slm_fix_make(0, 0);
        SAMPLE_NO_UNROLL
        for (int t = 0; t < SAMPLE_THREADS; t++) {
            const struct slm_fix x = sh->part[t];
            sh->part[t] = run;
            run = slm_fix_add(run, x);
        }
        sh->n = n;
    }
    __syncthreads();
    struct slm_fix cum = sh->part[threadIdx.x];
    /* thread 0 always: the empty prefix before w[0] is no index, even when it reaches a 0 target */
    if (i0 < i1 && (threadIdx.x == 0 || (strict ? !slm_fix_lt(target, cum) : slm_fix_lt(cum, target))))
        for (int i = i0; i < i1; i++) {
            cum = slm_fix_add(cum, slm_fix_from_float(w[i]));
            if (strict ? slm_fix_lt(target, cum) : !slm_fix_lt(cum, target)) {
                sh->n = i;
                break;
            }
        }
    __syncthreads();
    const int r = sh->n;
    __syncthreads();
    return r;
}

/* Exclusive prefix of flag over the block; *total gets the sum. */
__device__ static int block_scan(int flag, struct sample_shared *sh, int *total)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    unsigned m = __ballot_sync(0xffffffffu, flag);
    int before = __popc(m & ((1u << lane) - 1u));
    __syncthreads();
    if (lane == 0) sh->warp_count[warp] = __popc(m);
    __syncthreads();
    int sum = 0;
    for (int w = 0; w < SAMPLE_THREADS / 32; w++) {
        if (w < warp) before += sh->warp_count[w];
        sum += sh->warp_count[w];
    }
    *total = sum;
    return before;
}

/* Keeps, in order, the keys of src[0..n) that pass keep, writing them to dst (may be src:
 * every read of a chunk happens before its writes, which land at or below it). */
template <class Keep>
__device__ static int compact(const uint64_t *src, uint64_t *dst, int n, struct sample_shared *sh, Keep keep)
{
    int out = 0;
    for (int base = 0; base < n; base += SAMPLE_THREADS) {
        int i = base + threadIdx.x;
        uint64_t k = i < n ? src[i] : 0;
        int f = i < n && keep(k), total;
        int at = block_scan(f, sh, &total);
        if (f) dst[out + at] = k;
        out += total;
    }
    __syncthreads();
    return out;
}

/* Sorts a[0..m) best first; a has room for the next power of two. */
__device__ static void sort_keys(uint64_t *a, int m)
{
    int p2 = 1;
    while (p2 < m) p2 *= 2;
    for (int i = m + threadIdx.x; i < p2; i += SAMPLE_THREADS) a[i] = 0;
    __syncthreads();
    for (int k = 2; k <= p2; k *= 2) {
        for (int j = k / 2; j > 0; j /= 2) {
            for (int i = threadIdx.x; i < p2; i += SAMPLE_THREADS) {
                int ixj = i ^ j;
                if (ixj <= i) continue;
                uint64_t x = a[i], y = a[ixj];
                if ((i & k) == 0 ? x < y : x > y) {
                    a[i] = y;
                    a[ixj] = x;
                }
            }
            __syncthreads();
        }
    }
}

/* The k best of the distinct keys[0..n) (1 <= k < n), best first, into keys[0..k): the same keys
 * in the same order as sort_keys over all n keeping k (the order is total), without sorting n.
 * The k-th best is found by a radix select, a byte a pass from the top: each pass counts the
 * next byte of the keys that share the bytes chosen so far (lanes of a warp with the same byte
 * add once), takes the byte whose keys hold the k-th best, and compacts those keys into tmp
 * when the byte leaves fewer (later passes then read only them). Then the keys at or above it
 * (k of them) are sorted. With SmolLM2's 49,152 candidates and k = 40 that reads the keys about
 * four times (two counts while the top bytes thin them out, two compactions), where sort_keys'
 * bitonic network makes 136 passes over 65,536. */
__device__ static void top_k_keys(uint64_t *keys, int n, int k, uint64_t *tmp, struct sample_shared *sh)
{
    const uint64_t *src = keys;
    int m = n, need = k;   /* the k-th best is the need-th best of src's keys that share prefix */
    uint64_t prefix = 0, mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += SAMPLE_THREADS) sh->hist[b] = 0;
        __syncthreads();
        for (int base = 0; base < m; base += SAMPLE_THREADS) {   /* whole warps, for the match */
            const int i = base + threadIdx.x;
            const uint64_t key = i < m ? src[i] : 0;
            const int digit = i < m && (key & mask) == prefix ? (int)(key >> shift) & 255 : -1;
            const unsigned peers = __match_any_sync(0xffffffffu, digit);
            if (digit >= 0 && (int)(threadIdx.x % 32) == __ffs(peers) - 1) atomicAdd(&sh->hist[digit], __popc(peers));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int above = 0, b = 255;
            while (above + sh->hist[b] < need) above += sh->hist[b--];
            sh->n = b;
            sh->cross = above;
        }
        __syncthreads();
        const int b = sh->n, in_bin = sh->hist[b];
        need -= sh->cross;
        __syncthreads();   /* every thread has read them before the next pass clears or reuses them */
        prefix |= (uint64_t)b << shift;
        mask |= (uint64_t)255 << shift;
        if (in_bin < m) {
            const uint64_t pf = prefix, mk = mask;
            m = compact(src, tmp, m, sh, [=](uint64_t key) { return (key & mk) == pf; });
            src = tmp;
        }
    }
    const uint64_t kth = prefix;   /* every byte chosen: the k-th best key itself */
    const int got = compact(keys, tmp, n, sh, [=](uint64_t key) { return key >= kth; });
    sort_keys(tmp, got);
    for (int i = threadIdx.x; i < got; i += SAMPLE_THREADS) keys[i] = tmp[i];
    __syncthreads();
}

/* w[i] = expf((logit_i - mx) * inv_t) for i < n (inv_t = 1: expf(logit_i - mx)). */
__device__ static void weights(const uint64_t *keys, int n, float mx, float inv_t, int tempered, float *w)
{
    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) {
        float d = key_logit(keys[i]) - mx;
        w[i] = expf(tempered ? __fmul_rn(d, inv_t) : d);
    }
    __syncthreads();
}

__device__ static inline int bin_of(float l, float mx, double scale)
{
    double b = ((double)mx - l) * scale;
    return b >= TOP_P_BINS - 1 ? TOP_P_BINS - 1 : (int)b;
}

/* The largest logit of keys[0..n): the first when they are sorted (the CPU's choice too). */
__device__ static float survivors_max(const uint64_t *keys, int n, int sorted, struct sample_shared *sh)
{
    if (sorted) return key_logit(keys[0]);
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) mx = fmaxf(mx, key_logit(keys[i]));
    return block_reduce(mx, sh, op_max());
}

static inline int pow2_at_least(int n)
{
    int p = 1;
    while (p < n) p *= 2;
    return p;
}

struct sample_args {
    const float *logits;
    int n_vocab, cap;
    const struct slm_cuda_sampling *params;
    uint64_t *rng;
    const int32_t *hist;
    int hist_total;
    char *ws;
    size_t ws_row;
    size_t limbs_at;   /* the bins' mass limbs within a row's workspace */
    int32_t *tokens;
    float *logprobs;
    struct { int32_t id; float logprob; } *top;
};

/* The sampled token's logprob and the top n of the raw logits (stop.c's slm_logprobs_top). */
__device__ static void row_logprobs(const struct sample_args &a, const float *x, int n_top, int32_t token,
                                    uint64_t *keys, uint64_t *tmp, struct sample_shared *sh)
{
    const int row = blockIdx.x;
    float mx = -INFINITY;
    int bad = 0;
    for (int i = threadIdx.x; i < a.n_vocab; i += SAMPLE_THREADS) {
        float l = x[i];
        if ((l != l) || l == INFINITY) bad = 1;
        mx = fmaxf(mx, l);
    }
    bad = __syncthreads_or(bad);
    mx = block_reduce(mx, sh, op_max());
    double lse = NAN;
    if (!bad && mx != -INFINITY) {
        double sum = 0;
        for (int i = threadIdx.x; i < a.n_vocab; i += SAMPLE_THREADS) sum += exp((double)x[i] - (double)mx);
        sum = block_reduce(sum, sh, op_add_d());
        lse = (double)mx + log(sum);
    }
    if (threadIdx.x == 0) a.logprobs[row] = (float)((double)x[token] - lse);
    /* The n best by (logit, id), NaN left out: every other logit's key in the workspace (the
     * token is drawn: the sampling's buffers are free), the n best selected and sorted as top-k's
     * are (n block-wide passes over the vocabulary until 2026-12-07); past what there is, id -1. */
    int m = 0;
    for (int base = 0; base < a.n_vocab; base += SAMPLE_THREADS) {
        const int i = base + threadIdx.x;
        const float l = i < a.n_vocab ? x[i] : NAN;
        int total;
        const int at = block_scan(l == l, sh, &total);
        if (l == l) keys[m + at] = make_key(l, i);
        m += total;
    }
    __syncthreads();
    const int want = n_top < a.n_vocab ? n_top : a.n_vocab, n = want < m ? want : m;
    if (n > 0 && n < m) top_k_keys(keys, m, n, tmp, sh);
    else if (n > 0) sort_keys(keys, m);
    if (threadIdx.x == 0)
        for (int j = 0; j < want; j++) {
            a.top[(size_t)row * SLM_CUDA_SAMPLE_MAX_LOGPROBS + j].id = j < n ? key_id(keys[j]) : -1;
            a.top[(size_t)row * SLM_CUDA_SAMPLE_MAX_LOGPROBS + j].logprob =
                j < n ? (float)((double)x[key_id(keys[j])] - lse) : NAN;
        }
}

__global__ void __launch_bounds__(SAMPLE_THREADS, 1) k_sample(struct sample_args a)
{
    slm_pdl_begin();
    __shared__ struct sample_shared sh_storage;
    struct sample_shared *sh = &sh_storage;
    const int row = blockIdx.x, n_vocab = a.n_vocab;
    const struct slm_cuda_sampling p = a.params[row];
    const float *x = a.logits + (size_t)row * n_vocab;
    char *ws = a.ws + (size_t)row * a.ws_row;
    int32_t *count = reinterpret_cast<int32_t *>(ws);
    uint64_t *keys = reinterpret_cast<uint64_t *>(ws + ((size_t)n_vocab * 4 + 7) / 8 * 8);
    uint64_t *tmp = keys + a.cap;
    float *w = reinterpret_cast<float *>(tmp + a.cap);
    uint64_t *limbs = reinterpret_cast<uint64_t *>(ws + a.limbs_at);   /* (TOP_P_BINS, 3) */

    /* Penalties: occurrences of each token in the row's window. */
    const int pen = p.hist_len > 0 && p.hist_off >= 0 && a.hist && (long long)p.hist_off + p.hist_len <= a.hist_total;
    if (pen) {
        for (int i = threadIdx.x; i < n_vocab; i += SAMPLE_THREADS) count[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < p.hist_len; i += SAMPLE_THREADS) {
            int32_t t = a.hist[p.hist_off + i];
            if (t >= 0 && t < n_vocab) atomicAdd(&count[t], 1);
        }
        __syncthreads();
    }
    auto penalized = [&](int i) {
        float l = x[i];
        if ((l != l)) return -INFINITY;
        if (!pen || count[i] == 0) return l;
        l = l > 0 ? l / p.repeat_penalty : __fmul_rn(l, p.repeat_penalty);
        return l - __fadd_rn(__fmul_rn((float)count[i], p.frequency_penalty), p.presence_penalty);
    };

    int32_t token = 0;
    if (p.temperature <= 0) {
        /* The first index of the largest value: keys order ties by lower id. */
        uint64_t best = 0;
        for (int i = threadIdx.x; i < n_vocab; i += SAMPLE_THREADS) {
            float l = penalized(i);
            if (l != -INFINITY) {
                uint64_t k = make_key(l, i);
                best = k > best ? k : best;
            }
        }
        best = block_reduce(best, sh, op_max_u64());
        token = best ? key_id(best) : 0;
    } else {
        /* Candidates: finite or +inf penalised logits, in id order. */
        int n = 0;
        float mx = -INFINITY;
        for (int base = 0; base < n_vocab; base += SAMPLE_THREADS) {
            int i = base + threadIdx.x;
            float l = i < n_vocab ? penalized(i) : -INFINITY;
            int f = l != -INFINITY, total;
            int at = block_scan(f, sh, &total);
            if (f) {
                keys[n + at] = make_key(l, i);
                mx = fmaxf(mx, l);
            }
            n += total;
        }
        mx = block_reduce(mx, sh, op_max());
        if (n > 0) {
            if (mx == INFINITY) {
                /* The +inf tokens share the mass equally: their logits become 0. */
                n = compact(keys, keys, n, sh, [](uint64_t k) { return key_logit(k) == INFINITY; });
                for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) keys[i] = make_key(0.0f, key_id(keys[i]));
                __syncthreads();
                mx = 0.0f;
            }
            int sorted = 0;
            if (p.top_k > 0 && p.top_k < n) {
                top_k_keys(keys, n, p.top_k, tmp, sh);
                n = p.top_k;
                sorted = 1;
            }
            if (p.top_p < 1.0f) {
                float mxk = sorted ? key_logit(keys[0]) : mx;
                weights(keys, n, mxk, 1.0f, 0, w);
                const struct slm_fix z = block_mass(w, n, sh);
                const struct slm_fix target = slm_fix_from_double(__dmul_rn((double)p.top_p, slm_fix_to_double(z)));
                if (sorted) {
                    const int i = block_first_reach(w, n, target, 0, sh);   /* the CPU's cut_sorted */
                    n = i < n ? i + 1 : n;
                } else {
                    if (p.min_p > 0) {
                        float thr = mxk + p.log_min_p;
                        n = compact(keys, keys, n, sh, [thr](uint64_t k) { return key_logit(k) >= thr; });
                    }
                    /* cut_unsorted: a histogram of the mass over 1024 equal logit bins. */
                    float mn = INFINITY;
                    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) mn = fminf(mn, key_logit(keys[i]));
                    mn = block_reduce(mn, sh, op_min());
                    double scale = mxk > mn ? TOP_P_BINS / ((double)mxk - mn) : 0;
                    weights(keys, n, mxk, 1.0f, 0, w);
                    /* Each bin's exact mass: its weights' 32-bit limbs added with integer atomics
                     * (any order, the same sums), then the bins walked from the top on one thread. */
                    for (int j = threadIdx.x; j < 3 * TOP_P_BINS; j += SAMPLE_THREADS) limbs[j] = 0;
                    __syncthreads();
                    for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) {
                        const struct slm_fix v = slm_fix_from_float(w[i]);
                        uint64_t *l = limbs + 3 * bin_of(key_logit(keys[i]), mxk, scale);
                        if (v.lo & 0xffffffffu) atomicAdd((unsigned long long *)&l[0], (unsigned long long)(v.lo & 0xffffffffu));
                        if (v.lo >> 32) atomicAdd((unsigned long long *)&l[1], (unsigned long long)(v.lo >> 32));
                        if (v.hi) atomicAdd((unsigned long long *)&l[2], (unsigned long long)v.hi);
                    }
                    __syncthreads();
                    if (threadIdx.x == 0) {
                        int cross = -1;
                        struct slm_fix below = slm_fix_make(0, 0);
                        SAMPLE_NO_UNROLL
                        for (int b = 0; b < TOP_P_BINS; b++) {
                            const struct slm_fix mass = fix_from_limbs(limbs[3 * b], limbs[3 * b + 1], limbs[3 * b + 2]);
                            if (!slm_fix_lt(slm_fix_add(below, mass), target)) {
                                cross = b;
                                break;
                            }
                            below = slm_fix_add(below, mass);
                        }
                        sh->cross = cross;
                        sh->f1 = below;
                    }
                    __syncthreads();
                    int cross = sh->cross;
                    if (cross >= 0) {
                        /* The bins above the crossing one in order, then the crossing bin sorted. */
                        int m = compact(keys, tmp, n, sh, [=](uint64_t k) { return bin_of(key_logit(k), mxk, scale) == cross; });
                        int k = compact(keys, keys, n, sh, [=](uint64_t kk) { return bin_of(key_logit(kk), mxk, scale) < cross; });
                        sort_keys(tmp, m);
                        for (int i = threadIdx.x; i < m; i += SAMPLE_THREADS) keys[k + i] = tmp[i];
                        __syncthreads();
                        weights(keys + k, m, mxk, 1.0f, 0, w);
                        const int i = block_first_reach(w, m, slm_fix_sub(target, sh->f1), 0, sh);
                        n = k + (i < m ? i + 1 : m);
                    }
                }
            }
            if (p.min_p > 0) {
                float thr = survivors_max(keys, n, sorted, sh) + p.log_min_p;
                n = compact(keys, keys, n, sh, [thr](uint64_t k) { return key_logit(k) >= thr; });
            }
            /* softmax(logit / T) over the survivors, one draw walking them in order. */
            float mxk = survivors_max(keys, n, sorted, sh);
            weights(keys, n, mxk, 1.0f / p.temperature, 1, w);
            const struct slm_fix total = block_mass(w, n, sh);
            if (threadIdx.x == 0) {
                uint64_t s[4];
                for (int j = 0; j < 4; j++) s[j] = a.rng[(size_t)row * 4 + j];
                sh->f0 = slm_fix_from_double(__dmul_rn((double)next_uniform(s), slm_fix_to_double(total)));
                for (int j = 0; j < 4; j++) a.rng[(size_t)row * 4 + j] = s[j];
            }
            __syncthreads();
            int pick = block_first_reach(w, n, sh->f0, 1, sh);   /* the first whose prefix passes the draw */
            if (threadIdx.x == 0) {
                if (pick >= n) {   /* rounding left the draw at the very top: the last with any weight */
                    pick = -1;
                    for (int i = n - 1; pick < 0 && i > 0; i--)
                        if (w[i] > 0) pick = i;
                }
                sh->n = key_id(keys[pick < 0 ? 0 : pick]);
            }
            __syncthreads();
            token = sh->n;
        }
    }
    if (threadIdx.x == 0) a.tokens[row] = token;
    if (a.logprobs) {
        int n_top = p.n_logprobs < 0 ? 0 : p.n_logprobs > SLM_CUDA_SAMPLE_MAX_LOGPROBS ? SLM_CUDA_SAMPLE_MAX_LOGPROBS : p.n_logprobs;
        row_logprobs(a, x, n_top, token, keys, tmp, sh);
    }
}

/* ---- launchers */

extern "C" void slm_cuda_sampling_seed(uint64_t seed, uint64_t state[4])
{
    slm_rng_seed(state, seed);
}

/* Per-row workspace: counts (n_vocab int32), keys and a second key buffer (cap u64 each, cap
 * the power of two the bitonic sort pads to), weights (cap floats), then top-p's bins' mass
 * limbs (TOP_P_BINS x 3 u64) at sample_limbs_at. */
static size_t sample_limbs_at(int n_vocab)
{
    size_t cap = (size_t)pow2_at_least(n_vocab);
    return ((size_t)n_vocab * 4 + 7) / 8 * 8 + 2 * cap * 8 + (cap * 4 + 7) / 8 * 8;
}

static size_t sample_row_bytes(int n_vocab)
{
    return sample_limbs_at(n_vocab) + 3 * TOP_P_BINS * sizeof(uint64_t);
}

extern "C" size_t slm_cuda_sample_workspace(int n_rows, int n_vocab)
{
    if (n_rows < 1 || n_vocab < 1 || n_vocab > (1 << 30)) return 0;
    return (size_t)n_rows * sample_row_bytes(n_vocab);
}

extern "C" int slm_cuda_sample(const float *logits, int n_rows, int n_vocab, const struct slm_cuda_sampling *params,
                               uint64_t *rng, const int32_t *hist, int hist_total, void *workspace,
                               size_t workspace_bytes, int32_t *tokens, float *logprobs, void *top,
                               cudaStream_t stream)
{
    if (!logits || !params || !rng || !workspace || !tokens || n_rows < 1 || n_vocab < 1 || n_vocab > (1 << 30) ||
        hist_total < 0 || (hist_total > 0 && !hist) || (logprobs && !top))
        return -EINVAL;
    size_t need = slm_cuda_sample_workspace(n_rows, n_vocab), rows = (size_t)n_rows;
    if (workspace_bytes < need || slm_emu_check_device_ptr(logits, rows * n_vocab * 4, "logits") ||
        slm_emu_check_device_ptr(params, rows * sizeof *params, "params") ||
        slm_emu_check_device_ptr(rng, rows * 32, "rng") || slm_emu_check_device_ptr(workspace, need, "workspace") ||
        slm_emu_check_device_ptr(tokens, rows * 4, "tokens") ||
        (hist_total > 0 && slm_emu_check_device_ptr(hist, (size_t)hist_total * 4, "hist")) ||
        (logprobs && (slm_emu_check_device_ptr(logprobs, rows * 4, "logprobs") ||
                      slm_emu_check_device_ptr(top, rows * SLM_CUDA_SAMPLE_MAX_LOGPROBS * 8, "top"))))
        return -EINVAL;
    struct sample_args a = {};
    a.logits = logits;
    a.n_vocab = n_vocab;
    a.cap = pow2_at_least(n_vocab);
    a.params = params;
    a.rng = rng;
    a.hist = hist;
    a.hist_total = hist_total;
    a.ws = static_cast<char *>(workspace);
    a.ws_row = sample_row_bytes(n_vocab);
    a.limbs_at = sample_limbs_at(n_vocab);
    a.tokens = tokens;
    a.logprobs = logprobs;
    a.top = reinterpret_cast<decltype(a.top)>(top);
    SLM_LAUNCH_PDL(k_sample, n_rows, SAMPLE_THREADS, 0, stream, a);
    return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}
