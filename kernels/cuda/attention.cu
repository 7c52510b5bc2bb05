/*
 * kernels/cuda/attention.cu - RoPE and the paged KV store (slm_cuda_rope_store), the first
 * half of every step that is not decode-only; slm_cuda_attention_paged (attention_decode.cu)
 * then attends over the cache.
 *
 * The rotation and the f16 store are the CPU backend's operations (kernels/cpu/ops.c): the
 * host's cos and sin, products written as fmaf / __fmul_rn so that nvcc (which contracts
 * a * b + c) and the host compiler (which does not) round them the same way. So the rotated
 * q and k and the stored K/V bytes are the CPU backend's bits.
 *
 * (The CPU-exact attention kernel that lived here, slm_cuda_attention_decode / _prefill /
 * _exact, is gone: the backend attends with attention_decode.cu's kernel.)
 */
#include <errno.h>
#include <stdio.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/compat.h"

/* ---- RoPE and store: one block per token. */

__global__ void k_rope_store(float *q, float *k, const float *v, const int32_t *pos, const int32_t *seq_row,
                             const int32_t *block_tables, int max_blocks, __half *k_cache, __half *v_cache,
                             int n_blocks, int block_size, int n_head, int n_head_kv, int head_dim, int rope_dim,
                             int rope_layout, const float2 *cs, int cs_positions)
{
    slm_pdl_begin();
    const int i = blockIdx.x;
    const int p = pos[i];
    const int pairs = rope_dim / 2;
    const size_t qd = (size_t)n_head * head_dim, kvd = (size_t)n_head_kv * head_dim;
    const bool in_table = p >= 0 && p < cs_positions;
    for (int it = threadIdx.x; it < (n_head + n_head_kv) * pairs; it += blockDim.x) {
        int hh = it / pairs, j = it % pairs;
        float *x = hh < n_head ? q + i * qd + (size_t)hh * head_dim : k + i * kvd + (size_t)(hh - n_head) * head_dim;
        /* The host's cos and sin of the CPU's angles; a position past the table poisons the token. */
        float2 a_cs = in_table ? cs[(size_t)p * pairs + j] : make_float2(__int_as_float(0x7fc00000), 0.0f);
        int i0 = rope_layout ? j : 2 * j, i1 = rope_layout ? j + pairs : 2 * j + 1;
        float a = x[i0], b = x[i1];
        x[i0] = fmaf(a, a_cs.x, -__fmul_rn(b, a_cs.y));
        x[i1] = fmaf(a, a_cs.y, __fmul_rn(b, a_cs.x));
    }
    __syncthreads();
    long long row = kv_row(block_tables + (size_t)seq_row[i] * max_blocks, p, block_size, n_blocks);
    if (row < 0) return;
    for (size_t e = threadIdx.x; e < kvd; e += blockDim.x) {
        k_cache[(size_t)row * kvd + e] = __float2half_rn(k[i * kvd + e]);
        v_cache[(size_t)row * kvd + e] = __float2half_rn(v[i * kvd + e]);
    }
}

/* ---- launchers */

extern "C" int slm_cuda_attention_shape_check(const struct slm_cuda_attn_shape *shape, char *why, size_t len)
{
    return attn_shape_why(shape, why, len) ? -EINVAL : 0;
}

extern "C" int slm_cuda_rope_store(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                                   const struct slm_cuda_kv_layer *kv, const struct slm_cuda_rope_table *rope, float *q,
                                   float *k, const float *v, cudaStream_t stream)
{
    if (!attn_shape_ok(shape) || !attn_tokens_ok(shape, t, kv) || !rope || !q || !k || !v) return -EINVAL;
    if (shape->rope_dim > 0 && (!rope->cos_sin || rope->positions < 1)) return -EINVAL;
    size_t n = (size_t)t->n_tokens, kvd = (size_t)shape->n_head_kv * shape->head_dim;
    if (slm_emu_check_device_ptr(q, n * shape->n_head * shape->head_dim * 4, "q") ||
        slm_emu_check_device_ptr(k, n * kvd * 4, "k") || slm_emu_check_device_ptr(v, n * kvd * 4, "v") ||
        (shape->rope_dim > 0 &&
         slm_emu_check_device_ptr(rope->cos_sin, (size_t)rope->positions * (size_t)shape->rope_dim * 4, "rope table")))
        return -EINVAL;
    SLM_LAUNCH_PDL(k_rope_store, t->n_tokens, 128, 0, stream, q, k, v, t->pos, t->seq_row, t->block_tables,
               t->max_blocks, static_cast<__half *>(kv->k), static_cast<__half *>(kv->v), kv->n_blocks,
               kv->block_size, shape->n_head, shape->n_head_kv, shape->head_dim, shape->rope_dim,
               shape->rope_layout, reinterpret_cast<const float2 *>(rope->cos_sin), rope->positions);
    return attn_launched();
}
