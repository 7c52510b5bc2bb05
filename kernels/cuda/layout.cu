/*
 * kernels/cuda/layout.cu - the device layout of the quantized weights (kernels.h says what
 * it is): host code that permutes and pads GGUF rows once, at upload, so that the decode
 * GEMV (gemv.cu) reads a block's quants in one 16-byte load (two for Q8_0); the offsets are
 * qunits.cuh's (quad_scales_end, quad_quants), which the kernels read by. Host code only; it
 * is a .cu so that both the nvcc build and the emulated build (every .cu of kernels/cuda)
 * carry it.
 */
#include <errno.h>
#include <string.h>

#include "kernels/cuda/kernels.h"
#include "kernels/cuda/qunits.cuh"
#include "kernels/quant.h"

/* The 32-element types: where a quad keeps what. */
struct quad_shape {
    int block_bytes;   /* GGUF block */
    int scale_bytes;   /* 2 (d) or 4 (d, m) per block */
    int qh;            /* 1: 4 bytes of qh per block (Q5_x) */
    int words;         /* 4-byte words of qs per block: 4, or 8 for Q8_0 */
    int quad_bytes;
};

static int quad_shape_of(uint32_t type, struct quad_shape *s)
{
    switch (type) {
    case SLM_TYPE_Q4_0: *s = (struct quad_shape){18, 2, 0, 4, 80}; return 1;
    case SLM_TYPE_Q4_1: *s = (struct quad_shape){20, 4, 0, 4, 80}; return 1;
    case SLM_TYPE_Q5_0: *s = (struct quad_shape){22, 2, 1, 4, 96}; return 1;
    case SLM_TYPE_Q5_1: *s = (struct quad_shape){24, 4, 1, 4, 96}; return 1;
    case SLM_TYPE_Q8_0: *s = (struct quad_shape){34, 2, 0, 8, 144}; return 1;
    default: return 0;
    }
}

#define Q6_K_DEVICE_BYTES 224

static size_t tail_bytes(const struct quad_shape *s, int t)
{
    return t ? (size_t)(slm_cuda::quad_quants(t, s->scale_bytes, s->qh) + 4 * t * s->words) : 0;
}

extern "C" int slm_cuda_has_device_layout(uint32_t type)
{
    switch (type) {
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q5_0: case SLM_TYPE_Q8_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_1:
    case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: case SLM_TYPE_Q6_K: return 1;
    default: return 0;
    }
}

extern "C" size_t slm_cuda_device_row_bytes(uint32_t type, int64_t cols)
{
    size_t gguf = slm_cuda_row_bytes(type, cols);
    if (gguf == 0) return 0;
    struct quad_shape s;
    if (quad_shape_of(type, &s)) {
        const int64_t nb = cols / 32;
        size_t bytes = (size_t)(nb / 4) * (size_t)s.quad_bytes + tail_bytes(&s, (int)(nb % 4));
        return (bytes + 15) & ~(size_t)15;
    }
    switch (type) {
    case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: return gguf;
    case SLM_TYPE_Q6_K: return (size_t)(cols / SLM_QK_K) * Q6_K_DEVICE_BYTES;
    default: return 0;
    }
}

/* One row of nb 32-element blocks into quads and a tail; dst is zeroed already. A quad is a
 * group of 4 blocks, the tail one of t: block i's scales at scale_bytes * i, its qh at
 * quad_scales_end + 4 i, its quants whole at quad_quants + 4 words i. */
static void row_to_quads(const struct quad_shape *s, const uint8_t *src, int64_t nb, uint8_t *dst)
{
    const int hdr = s->scale_bytes + (s->qh ? 4 : 0);
    const int64_t full = nb / 4 * 4;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = src + b * s->block_bytes;
        uint8_t *quad = dst + (b / 4) * s->quad_bytes;
        const int i = (int)(b % 4), t = b < full ? 4 : (int)(nb - full);
        memcpy(quad + s->scale_bytes * i, blk, (size_t)s->scale_bytes);
        if (s->qh) memcpy(quad + slm_cuda::quad_scales_end(t, s->scale_bytes) + 4 * i, blk + s->scale_bytes, 4);
        memcpy(quad + slm_cuda::quad_quants(t, s->scale_bytes, s->qh) + 4 * s->words * i, blk + hdr, 4 * (size_t)s->words);
    }
}

extern "C" int slm_cuda_to_device_layout(uint32_t type, const void *gguf_rows, int64_t rows, int64_t cols, void *out)
{
    const size_t dev_rb = slm_cuda_device_row_bytes(type, cols), gguf_rb = slm_cuda_row_bytes(type, cols);
    if (dev_rb == 0 || rows < 1 || !gguf_rows || !out) return -EINVAL;
    const uint8_t *src = (const uint8_t *)gguf_rows;
    uint8_t *dst = (uint8_t *)out;
    struct quad_shape s = {0, 0, 0, 0, 0};
    const int quads = quad_shape_of(type, &s);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *sr = src + (size_t)r * gguf_rb;
        uint8_t *dr = dst + (size_t)r * dev_rb;
        if (quads) {
            memset(dr, 0, dev_rb);
            row_to_quads(&s, sr, cols / 32, dr);
        } else if (type == SLM_TYPE_Q6_K) {
            for (int64_t b = 0; b < cols / SLM_QK_K; b++) {
                memcpy(dr + b * Q6_K_DEVICE_BYTES, sr + b * (int64_t)sizeof(struct slm_block_q6_K),
                       sizeof(struct slm_block_q6_K));
                memset(dr + b * Q6_K_DEVICE_BYTES + sizeof(struct slm_block_q6_K), 0,
                       Q6_K_DEVICE_BYTES - sizeof(struct slm_block_q6_K));
            }
        } else {
            memcpy(dr, sr, gguf_rb);   /* Q4_K, Q5_K */
        }
    }
    return 0;
}
