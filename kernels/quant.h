/*
 * kernels/quant.h - GGUF tensor types and block-quantized layouts.
 *
 * The one definition of every block layout, shared by the CPU backend, the CUDA
 * kernels and the GGUF reader. Layouts are bit-exact with GGUF files (ggml's
 * block_* structs): a weight row of `n` elements of type T occupies
 * n / slm_qblock_elems(T) blocks of slm_qblock_bytes(T) bytes, packed, no padding.
 * Halves are stored as raw IEEE binary16 bits (uint16_t) so that C and CUDA agree.
 */
#ifndef SLM_KERNELS_QUANT_H
#define SLM_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GGUF tensor type ids (ggml_type); only the ones slmd reads are named. */
enum slm_qtype {
    SLM_TYPE_F32  = 0,
    SLM_TYPE_F16  = 1,
    SLM_TYPE_Q4_0 = 2,
    SLM_TYPE_Q4_1 = 3,
    SLM_TYPE_Q5_0 = 6,
    SLM_TYPE_Q5_1 = 7,
    SLM_TYPE_Q8_0 = 8,
    SLM_TYPE_Q8_1 = 9,   /* activations only: the partner of Q4_1 / Q5_1 dot products */
    SLM_TYPE_Q4_K = 12,
    SLM_TYPE_Q5_K = 13,
    SLM_TYPE_Q6_K = 14,
    SLM_TYPE_Q8_K = 15,  /* activations only: the partner of the K-quant dot products */
    SLM_TYPE_BF16 = 30,
    SLM_TYPE_COUNT = 31,
};

#define SLM_QK4_0 32
#define SLM_QK4_1 32
#define SLM_QK5_0 32
#define SLM_QK5_1 32
#define SLM_QK8_0 32
#define SLM_QK8_1 32
#define SLM_QK_K 256
#define SLM_K_SCALE_SIZE 12

typedef uint16_t slm_half;   /* IEEE binary16 bits */
typedef uint16_t slm_bf16;   /* bfloat16 bits */

/* x = (q - 8) * d; element j < 16 is the low nibble of qs[j], j >= 16 the high nibble of qs[j-16]. */
struct slm_block_q4_0 {
    slm_half d;
    uint8_t qs[SLM_QK4_0 / 2];
};

/* x = q * d + m; nibble order as Q4_0. */
struct slm_block_q4_1 {
    slm_half d;
    slm_half m;
    uint8_t qs[SLM_QK4_1 / 2];
};

/* x = (q - 16) * d; q = nibble | (bit j of qh) << 4. */
struct slm_block_q5_0 {
    slm_half d;
    uint8_t qh[4];
    uint8_t qs[SLM_QK5_0 / 2];
};

/* x = q * d + m; q as Q5_0. */
struct slm_block_q5_1 {
    slm_half d;
    slm_half m;
    uint8_t qh[4];
    uint8_t qs[SLM_QK5_1 / 2];
};

/* x = q * d. */
struct slm_block_q8_0 {
    slm_half d;
    int8_t qs[SLM_QK8_0];
};

/* x = q * d; s = d * sum(q), kept so Q4_1/Q5_1 dot products fold in their offset m. */
struct slm_block_q8_1 {
    slm_half d;
    slm_half s;
    int8_t qs[SLM_QK8_1];
};

/* 8 sub-blocks of 32: x = d * sc * q - dmin * m, (sc, m) 6-bit each, packed in scales[12]. */
struct slm_block_q4_K {
    slm_half d;
    slm_half dmin;
    uint8_t scales[SLM_K_SCALE_SIZE];
    uint8_t qs[SLM_QK_K / 2];
};

/* As Q4_K with a fifth bit per weight in qh. */
struct slm_block_q5_K {
    slm_half d;
    slm_half dmin;
    uint8_t scales[SLM_K_SCALE_SIZE];
    uint8_t qh[SLM_QK_K / 8];
    uint8_t qs[SLM_QK_K / 2];
};

/* 16 sub-blocks of 16: x = d * scales[i] * (q - 32), q = 4 low bits (ql) | 2 high bits (qh). */
struct slm_block_q6_K {
    uint8_t ql[SLM_QK_K / 2];
    uint8_t qh[SLM_QK_K / 4];
    int8_t scales[SLM_QK_K / 16];
    slm_half d;
};

/* Activations for K-quant dot products: float scale, sums of each group of 16. */
struct slm_block_q8_K {
    float d;
    int8_t qs[SLM_QK_K];
    int16_t bsums[SLM_QK_K / 16];
};

#if defined(__cplusplus)
#define SLM_STATIC_ASSERT static_assert
#else
#define SLM_STATIC_ASSERT _Static_assert
#endif
SLM_STATIC_ASSERT(sizeof(struct slm_block_q4_0) == 18, "q4_0 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q4_1) == 20, "q4_1 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q5_0) == 22, "q5_0 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q5_1) == 24, "q5_1 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q8_0) == 34, "q8_0 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q8_1) == 36, "q8_1 block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q4_K) == 144, "q4_K block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q5_K) == 176, "q5_K block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q6_K) == 210, "q6_K block size");
SLM_STATIC_ASSERT(sizeof(struct slm_block_q8_K) == 292, "q8_K block size");

/* Elements per block of `type`; 0 for a type slmd does not know. */
static inline uint32_t slm_qblock_elems(uint32_t type)
{
    switch (type) {
    case SLM_TYPE_F32: case SLM_TYPE_F16: case SLM_TYPE_BF16: return 1;
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0:
    case SLM_TYPE_Q5_1: case SLM_TYPE_Q8_0: case SLM_TYPE_Q8_1: return 32;
    case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: case SLM_TYPE_Q6_K: case SLM_TYPE_Q8_K: return SLM_QK_K;
    default: return 0;
    }
}

/* Bytes per block of `type`; 0 for a type slmd does not know. */
static inline uint32_t slm_qblock_bytes(uint32_t type)
{
    switch (type) {
    case SLM_TYPE_F32: return 4;
    case SLM_TYPE_F16: case SLM_TYPE_BF16: return 2;
    case SLM_TYPE_Q4_0: return sizeof(struct slm_block_q4_0);
    case SLM_TYPE_Q4_1: return sizeof(struct slm_block_q4_1);
    case SLM_TYPE_Q5_0: return sizeof(struct slm_block_q5_0);
    case SLM_TYPE_Q5_1: return sizeof(struct slm_block_q5_1);
    case SLM_TYPE_Q8_0: return sizeof(struct slm_block_q8_0);
    case SLM_TYPE_Q8_1: return sizeof(struct slm_block_q8_1);
    case SLM_TYPE_Q4_K: return sizeof(struct slm_block_q4_K);
    case SLM_TYPE_Q5_K: return sizeof(struct slm_block_q5_K);
    case SLM_TYPE_Q6_K: return sizeof(struct slm_block_q6_K);
    case SLM_TYPE_Q8_K: return sizeof(struct slm_block_q8_K);
    default: return 0;
    }
}

/* GGUF's name of a type ("Q4_1"), or NULL. */
static inline const char *slm_qtype_name(uint32_t type)
{
    switch (type) {
    case SLM_TYPE_F32: return "F32";   case SLM_TYPE_F16: return "F16";
    case SLM_TYPE_BF16: return "BF16"; case SLM_TYPE_Q4_0: return "Q4_0";
    case SLM_TYPE_Q4_1: return "Q4_1"; case SLM_TYPE_Q5_0: return "Q5_0";
    case SLM_TYPE_Q5_1: return "Q5_1"; case SLM_TYPE_Q8_0: return "Q8_0";
    case SLM_TYPE_Q8_1: return "Q8_1"; case SLM_TYPE_Q4_K: return "Q4_K";
    case SLM_TYPE_Q5_K: return "Q5_K"; case SLM_TYPE_Q6_K: return "Q6_K";
    case SLM_TYPE_Q8_K: return "Q8_K";
    default: return NULL;
    }
}

/* True for the types a weight tensor may have (Q8_1 and Q8_K are activation-only). */
static inline int slm_qtype_is_weight(uint32_t type)
{
    return slm_qblock_elems(type) != 0 && type != SLM_TYPE_Q8_1 && type != SLM_TYPE_Q8_K;
}

#ifdef __cplusplus
}
#endif
#endif
