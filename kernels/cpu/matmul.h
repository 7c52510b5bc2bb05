/*
 * kernels/cpu/matmul.h - y = x . W^T on quantized weights, across a thread pool.
 *
 * Activations are first quantized to the weight type's dot-product partner
 * (slm_cpu_vec_dot_type: Q8_0, Q8_1, Q8_K or F32); then every output element is one
 * dot product of a weight row and an activation row, computed by one microkernel
 * per weight type whatever the number of tokens, so a token's output does not
 * depend on what else is in the batch. Tiles of several rows and tokens only share
 * loads: each element's accumulation order is the same as alone.
 */
#ifndef SLM_KERNELS_CPU_MATMUL_H
#define SLM_KERNELS_CPU_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/threadpool.h"

/*
 * How a weight matrix is laid out in memory.
 * ROWS: GGUF's, row after row of blocks.
 * X8:   rows in groups of 8; a group holds, block after block, the 8 rows' blocks
 *       interleaved so that one 32-byte load gives 4 bytes of each row (the fast tiles'
 *       lanes are rows):
 *   Q4_1 (160 bytes per group block): d[8] halves, m[8] halves, then 4 chunks of 32 bytes;
 *        chunk t holds qs[4t .. 4t+3] of row 0, of row 1, ... (low nibbles: elements
 *        4t..4t+3, high nibbles: elements 16+4t..16+4t+3);
 *   Q8_0 (272 bytes per group block): d[8] halves, then 8 chunks of 32 bytes; chunk t
 *        holds qs[4t .. 4t+3] of each row.
 *   Q5_0 (176 bytes per group block): d[8] halves, the fifth bits as 8 32-bit words (row r's
 *        word: bit t of byte i is the fifth bit of element 4t + i), then the 4 chunks of qs
 *        as Q4_1's.
 *   Q4_K (1248 bytes per 256-element group block): d[8] halves, dmin[8] halves; the 6-bit
 *        scales sc_j as int8, each twice, [j][row][2] (128 bytes); the mins as int8 pairs
 *        [j / 2][row][j % 2] (64 bytes); then 32 chunks of 32 bytes, chunk 8q + t holding
 *        qs[32q + 4t .. + 3] of each row (low nibbles: sub-block 2q, high: 2q + 1).
 *   Q6_K (1808 bytes per 256-element group block): d[8] halves; the 16 scales as int8, each
 *        twice, [g][row][2] (256 bytes); 32 chunks of ql, chunk 16h + 8p + t holding
 *        ql[64h + 32p + 4t .. + 3] of each row; 16 chunks of qh, chunk 8h + t holding
 *        qh[32h + 4t .. + 3] of each row.
 */
enum slm_cpu_layout { SLM_CPU_LAYOUT_ROWS = 0, SLM_CPU_LAYOUT_X8 = 1 };

/* One weight matrix and where its products go. */
struct slm_cpu_matmul_job {
    uint32_t type;          /* weight type */
    uint32_t layout;        /* enum slm_cpu_layout of w */
    int64_t rows, cols;
    size_t row_bytes;       /* of a GGUF row (the X8 layout holds the same bytes per row) */
    const void *w;          /* (rows, cols) */
    float *y;               /* (n, rows) */
};

/*
 * The layout the kernels chosen at run time read fastest for a (type, rows, cols)
 * weight: SLM_CPU_LAYOUT_X8, or SLM_CPU_LAYOUT_ROWS (use the GGUF data as it is).
 */
uint32_t slm_cpu_weight_layout(uint32_t type, int64_t rows, int64_t cols);

/* Bytes of a (type, rows, cols) weight in `layout`; 0 if that layout cannot hold it. */
size_t slm_cpu_layout_bytes(uint32_t layout, uint32_t type, int64_t rows, int64_t cols);

/*
 * Copies a GGUF-layout weight src (rows of row_bytes) into dst (slm_cpu_layout_bytes)
 * in `layout`. Returns 0, or -EINVAL if the layout cannot hold this weight.
 */
int slm_cpu_repack(uint32_t layout, uint32_t type, int64_t rows, int64_t cols, const void *src, size_t row_bytes,
                   void *dst);

/* Bytes of one activation row of k elements quantized for weight type wtype. */
size_t slm_cpu_act_row_bytes(uint32_t wtype, int64_t k);

/* Quantizes x (n, k) for weight type wtype into dst (n rows of slm_cpu_act_row_bytes). */
void slm_cpu_quantize_acts(uint32_t wtype, const float *x, int n, int64_t k, void *dst);

/*
 * For every job: y (n, rows) (+)= x (n, cols) . W^T. All jobs share x and cols.
 * scratch must hold n * slm_cpu_act_row_bytes(type, cols) bytes for each distinct
 * activation type among the jobs (slm_cpu_matmul_scratch_bytes tells). Returns 0 or -EINVAL.
 */
int slm_cpu_matmul(struct slm_pool *pool, int n_jobs, const struct slm_cpu_matmul_job *jobs, const float *x,
                   int n, int accumulate, void *scratch);

size_t slm_cpu_matmul_scratch_bytes(int n_jobs, const struct slm_cpu_matmul_job *jobs, int n);

/* Which kernels run: "avx512vnni", "avx2" or "generic". SLM_CPU_KERNELS=generic (or avx2)
 * caps the choice (=avx512vnni caps nothing). */
const char *slm_cpu_kernels_name(void);

/* The lane layout of the llama.cpp build whose float sums the CPU backend follows (its attention's
 * f16 dot products and softmax sum, and the exp of the softmax and of SiLU; docs/numerics.md):
 * 16 where llama.cpp's GGML_NATIVE build would use AVX-512 (the CPU has AVX-512F and DQ), else 8
 * (its AVX2 build). SLM_CPU_KERNELS=avx2 or =generic gives 8; SLM_CPU_LANES=8 or =16 forces one
 * (both run on any CPU, the vector paths emulating the other build's lanes), so that a test can
 * check the reference data of either build. */
int slm_cpu_lanes(void);

/* 0 when SLM_CPU_KERNELS and SLM_CPU_LANES are unset, empty or one of their values (generic, avx2,
 * avx512vnni; 8, 16); else -1 with why (len bytes) naming the variable, its value and what it
 * takes. The two functions above read them once and ignore anything else, so a caller that takes
 * them from a user (the cpu backend) asks this first. */
int slm_cpu_check_env(char *why, size_t len);

/* 1 when the AVX2+FMA+F16C kernels run (the CPU has them and SLM_CPU_KERNELS allows them);
 * every CPU kernel file asks this one place. */
int slm_cpu_have_avx2(void);

/* ---- the microkernel interface (matmul_avx2.c provides fast versions) */

/* y[c*ldy + r] (+)= dot(w row r, a row c) for r < nr, c < nc. */
typedef void (*slm_cpu_tile_fn)(int64_t k, const void *w, size_t w_stride, int nr, const void *a,
                                size_t a_stride, int nc, float *y, int64_t ldy, int accumulate);
/* Quantizes one activation row of k floats. */
typedef void (*slm_cpu_quant_fn)(const float *x, void *dst, int64_t k);

/* The AVX2 tile for a weight type, or NULL (then the generic one runs). */
slm_cpu_tile_fn slm_cpu_tile_avx2(uint32_t wtype);
slm_cpu_quant_fn slm_cpu_quant_avx2(uint32_t act_type);

/* Per (token, block) scales of a quantized activation, as the X8 tiles read them. */
struct slm_cpu_act_scale {
    float d;                /* the block's scale */
    float s;                /* Q8_1: the stored sum d * sum(q); 0 for Q8_0 */
    int32_t m16[8];         /* Q8_0: -16 x the sum of quants 4k..4k+3 (k = 0..7), the offset of
                               Q5_0's stored values (0..31) in its products; 0 for Q8_1 */
};

/* The X8 tiles' view of n quantized activation rows of type act_type (Q8_0 or Q8_1; rows
 * stride bytes apart, nb blocks each): sc (n, nb). */
void slm_cpu_act_scales(uint32_t act_type, const void *acts, size_t stride, int n, int64_t nb,
                        struct slm_cpu_act_scale *sc);

/*
 * X8 tile: y[c*ldy + r] (+)= dot(row r of w, a row c) for r < 8 * n_groups, c < nc, where
 * w is n_groups consecutive 8-row groups. nb blocks per row; a rows a_stride apart;
 * sc (nc, nb) the activations' scales (NULL for the K-quants, whose Q8_K blocks hold a float).
 */
typedef void (*slm_cpu_x8_fn)(int64_t nb, const void *w, int n_groups, const void *a, size_t a_stride,
                              const struct slm_cpu_act_scale *sc, int nc, float *y, int64_t ldy, int accumulate);

/* The X8 tile for a weight type, or NULL. Both tiers compute the same bits. */
slm_cpu_x8_fn slm_cpu_x8_avx2(uint32_t wtype);
slm_cpu_x8_fn slm_cpu_x8_avx512(uint32_t wtype);

#endif
