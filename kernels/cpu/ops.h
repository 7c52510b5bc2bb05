/*
 * kernels/cpu/ops.h - the CPU backend's element-wise and attention ops.
 *
 * Plain single-thread functions over one row (or one head); the backend spreads rows
 * and heads over its thread pool. Each also serves as the numerical reference for the
 * CUDA kernels. Reductions use a fixed order (float64 where llama.cpp uses it).
 */
#ifndef SLM_KERNELS_CPU_OPS_H
#define SLM_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/numerics.h"
#include "kernels/quant.h"

/* out (dim) = x / sqrt(mean(x^2) + eps) * gamma; out may equal x. The mean's sum is taken in
 * SLM_RMSNORM_LANES double lanes (above). */
void slm_cpu_rmsnorm(const float *x, const float *gamma, int dim, float eps, float *out);

/* out (n) = silu(gate) * up, silu(g) = g / (1 + exp(-g)) with the exp of slm_cpu_lanes()'s layout. */
void slm_cpu_swiglu(const float *gate, const float *up, size_t n, float *out);

/* slm_cpu_swiglu with the exp of the given layout (8 or 16 lanes). */
void slm_cpu_swiglu_lanes(const float *gate, const float *up, size_t n, int lanes, float *out);

/* exp(x) as llama.cpp's build of the given layout (8 or 16 lanes) computes it in its softmax and
 * SiLU (kernels/cpu/expf.h); the scalar form, the bits every vector path must equal. */
float slm_cpu_expf(float x, int lanes);

/* out (n) = gelu(gate) * up, GELU's tanh form as llama.cpp's CPU build computes it (its f16 table):
 * gelu of gate rounded to f16, the result rounded to f16, then times up; gate <= -10 gives 0 and
 * gate >= 10 gives gate * up. */
void slm_cpu_geglu(const float *gate, const float *up, size_t n, float *out);

/* x (n) += y. */
void slm_cpu_add(float *x, const float *y, size_t n);

/* x (n) *= s. */
void slm_cpu_scale(float *x, size_t n, float s);

/* x (n) = tanhf(x * (1.0f / cap)) * cap: llama.cpp's logit soft-capping (a scale, tanhf, a scale). */
void slm_cpu_softcap(float *x, size_t n, float cap);

/* cos and sin (rope_dim / 2 each) of a position's rotation angles,
 * theta_j = pos * base^(-2j / rope_dim) / factors[j], computed as llama.cpp does (running product,
 * then the division), each cos and sin then times mscale. factors NULL: all 1 (Llama 3.1+'s
 * rope_freqs and phi3's LongRoPE factors are not); mscale 1: unscaled (phi3's attention factor). */
void slm_cpu_rope_angles(int32_t pos, int rope_dim, float base, const float *factors, float mscale, float *cos_out,
                         float *sin_out);

/* Rotates the first rope_dim dims of each of n_heads heads (head_dim apart) of x.
 * layout: 0 = adjacent pairs (llama), 1 = halves (neox). */
void slm_cpu_rope_apply(float *x, int n_heads, int head_dim, int rope_dim, int layout, const float *cos_t,
                        const float *sin_t);

/*
 * The attention (kernels/cpu/attention.c). Its float sums follow the lanes of llama.cpp's build
 * (slm_cpu_lanes, docs/numerics.md): with L lanes, each f16 dot product runs in steps of 4L into
 * four L-lane accumulators, the softmax sums L scores at a time, and the output's dot product
 * over positions puts position t in lane t mod 4L.
 *
 * Causal attention of one query head over one sequence's paged KV:
 * out (head_dim) = softmax(scale * q . K[t]) . V[t] for t in [first, n_ctx) (first > 0: a sliding
 * window; the positions before it weigh 0, as under llama.cpp's -inf mask).
 * Position t lives in block blocks[t / block_size], row t % block_size; each row holds
 * kv_stride halves of which this head reads [kv_off, kv_off + head_dim).
 * scratch holds slm_cpu_attention_scratch(n_ctx, head_dim) floats, 8-byte aligned. The arithmetic order is
 * fixed (see attention.c), so a query's result does not depend on the batch around it.
 */
void slm_cpu_attention_head(const float *q, int head_dim, float scale, const slm_half *k_pool,
                            const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                            size_t kv_off, int first, int n_ctx, float *scratch, float *out);

/* Floats of scratch slm_cpu_attention_head needs for n_ctx positions (a multiple of 16). */
size_t slm_cpu_attention_scratch(int n_ctx, int head_dim);

/*
 * slm_cpu_attention_head for the n_q query heads that share one KV head (a GQA group):
 * q and out are (n_q, head_dim); each head's result has the same bits as
 * slm_cpu_attention_head gives it alone. Each K and V row is read once for the group.
 * scratch holds slm_cpu_attention_group_scratch(n_ctx, head_dim, n_q) floats, 8-byte aligned.
 */
void slm_cpu_attention_group(const float *q, int n_q, int head_dim, float scale, const slm_half *k_pool,
                             const slm_half *v_pool, const int32_t *blocks, int block_size, size_t kv_stride,
                             size_t kv_off, int first, int n_ctx, float *scratch, float *out);

/* slm_cpu_attention_group in the given lane layout (8 or 16) instead of slm_cpu_lanes()'s. */
void slm_cpu_attention_group_lanes(int lanes, const float *q, int n_q, int head_dim, float scale,
                                   const slm_half *k_pool, const slm_half *v_pool, const int32_t *blocks,
                                   int block_size, size_t kv_stride, size_t kv_off, int first, int n_ctx,
                                   float *scratch, float *out);

/* The same on the portable path whatever the CPU: the reference the vector path must equal. */
void slm_cpu_attention_group_generic(int lanes, const float *q, int n_q, int head_dim, float scale,
                                     const slm_half *k_pool, const slm_half *v_pool, const int32_t *blocks,
                                     int block_size, size_t kv_stride, size_t kv_off, int first, int n_ctx,
                                     float *scratch, float *out);

/* Floats of scratch slm_cpu_attention_group needs (a multiple of 16). */
size_t slm_cpu_attention_group_scratch(int n_ctx, int head_dim, int n_q);

/* Converts n floats to halves (round to nearest even) and back. */
void slm_cpu_f32_to_f16(const float *x, slm_half *y, size_t n);
void slm_cpu_f16_to_f32(const slm_half *x, float *y, size_t n);

#endif
