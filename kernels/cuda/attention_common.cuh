/*
 * kernels/cuda/attention_common.cuh - what attention.cu (RoPE and the store) and
 * attention_decode.cu (the fused decode and the paged attention) share: the paged row lookup
 * and the argument checks of their launchers.
 */
#ifndef SLM_KERNELS_CUDA_ATTENTION_COMMON_CUH
#define SLM_KERNELS_CUDA_ATTENTION_COMMON_CUH

#include <errno.h>
#include <stdio.h>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/compat.h"

/* Pool row of position t of a sequence, or -1 when its block id is out of range. */
__device__ static inline long long kv_row(const int32_t *blocks, int t, int block_size, int n_blocks)
{
    int b = blocks[t / block_size];
    if (b < 0 || b >= n_blocks) return -1;
    return (long long)b * block_size + t % block_size;
}

/* attn_shape_why's reason, with the numbers behind it in buf when there is one: the heads
 * (what = 0), the window (1) or the rotated dimensions (2). */
static inline const char *attn_why(const struct slm_cuda_attn_shape *s, const char *no, int what, char *buf,
                                   size_t len)
{
    if (!buf || !len) return no;
    if (what == 1) snprintf(buf, len, "%s (%d)", no, s->window);
    else if (what == 2) snprintf(buf, len, "%s (%d rotated of head dimension %d)", no, s->rope_dim, s->head_dim);
    else snprintf(buf, len, "%s (%d query heads over %d key/value heads of dimension %d)", no, s->n_head,
                  s->n_head_kv, s->head_dim);
    return no;
}

/* What makes s a geometry the attention kernels do not run, in words (NULL: they run it);
 * where buf is given (len > 0) the words and the numbers behind them are written there. */
static inline const char *attn_shape_why(const struct slm_cuda_attn_shape *s, char *buf, size_t len)
{
    if (!s) {
        if (buf && len) snprintf(buf, len, "no shape");
        return "no shape";
    }
    if (s->n_head_kv < 1 || s->n_head < s->n_head_kv || s->n_head % s->n_head_kv)
        return attn_why(s, "query heads not a whole multiple of the key/value heads", 0, buf, len);
    if (s->n_head / s->n_head_kv > SLM_CUDA_ATTN_MAX_GROUP)
        return attn_why(s, "more than 16 query heads a key/value head", 0, buf, len);
    if (s->head_dim != 32 && s->head_dim != 64 && s->head_dim != 80 && s->head_dim != 96 && s->head_dim != 128 &&
        s->head_dim != 256)
        return attn_why(s, "head dimension not one of 32, 64, 80, 96, 128, 256", 0, buf, len);
    if (s->head_dim == 256 && s->n_head / s->n_head_kv > 8)   /* 48 KiB of shared memory */
        return attn_why(s, "more than 8 query heads a key/value head at head dimension 256", 0, buf, len);
    if (s->window < 0) return attn_why(s, "a negative sliding window", 1, buf, len);
    if (s->rope_dim < 0 || s->rope_dim > s->head_dim || s->rope_dim % 2)
        return attn_why(s, "rotated dimensions not even or past the head", 2, buf, len);
    if (s->rope_layout != 0 && s->rope_layout != 1) return attn_why(s, "an unknown RoPE layout", 0, buf, len);
    return NULL;
}

static inline int attn_shape_ok(const struct slm_cuda_attn_shape *s)
{
    return !attn_shape_why(s, NULL, 0);
}

/* The tables and the layer's cache, for n tokens (n >= 1). */
static inline int attn_tokens_ok(const struct slm_cuda_attn_shape *s, const struct slm_cuda_attn_tokens *t,
                                 const struct slm_cuda_kv_layer *kv)
{
    if (!t || !kv || t->n_tokens < 1 || t->max_blocks < 1 || t->n_seq_rows < 1) return 0;
    if (!t->pos || !t->seq_row || !t->block_tables || !kv->k || !kv->v) return 0;
    if (kv->n_blocks < 1 || kv->block_size < 1) return 0;
    size_t cache = (size_t)kv->n_blocks * kv->block_size * s->n_head_kv * s->head_dim * sizeof(__half);
    if (slm_emu_check_device_ptr(t->pos, (size_t)t->n_tokens * 4, "pos") ||
        slm_emu_check_device_ptr(t->seq_row, (size_t)t->n_tokens * 4, "seq_row") ||
        slm_emu_check_device_ptr(t->block_tables, (size_t)t->n_seq_rows * t->max_blocks * 4, "block_tables") ||
        slm_emu_check_device_ptr(kv->k, cache, "k cache") || slm_emu_check_device_ptr(kv->v, cache, "v cache"))
        return 0;
    return 1;
}

/* The checks the attention launchers make: the shape, the tokens and cache, q and out
 * (n_tokens, n_head * head_dim), and a workspace of at least `need` bytes (0 when the shape is
 * bad: refused anyway). 0 or -EINVAL. */
static inline int attn_call_ok(const struct slm_cuda_attn_shape *shape, const struct slm_cuda_attn_tokens *t,
                               const struct slm_cuda_kv_layer *kv, const float *q, int max_ctx,
                               const void *workspace, size_t workspace_bytes, size_t need, const float *out)
{
    if (!attn_shape_ok(shape) || !attn_tokens_ok(shape, t, kv) || !q || !out || !workspace || max_ctx < 1)
        return -EINVAL;
    size_t qbytes = (size_t)t->n_tokens * shape->n_head * shape->head_dim * sizeof(float);
    if (workspace_bytes < need || slm_emu_check_device_ptr(workspace, need, "workspace") ||
        slm_emu_check_device_ptr(q, qbytes, "q") || slm_emu_check_device_ptr(out, qbytes, "out"))
        return -EINVAL;
    return 0;
}

static inline int attn_launched(void)
{
    return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

#endif
