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

#include "threadpool.h"

/* One weight matrix and where its products go. */
struct slm_cpu_matmul_job {
    uint32_t type;          /* weight type */
    int64_t rows, cols;
    size_t row_bytes;
    const void *w;          /* (rows, cols) */
    float *y;               /* (n, rows) */
};

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

/* Which kernels run: "avx2" or "generic". SLM_CPU_KERNELS=generic forces the portable ones. */
const char *slm_cpu_kernels_name(void);

/* ---- the microkernel interface (matmul_avx2.c provides fast versions) */

/* y[c*ldy + r] (+)= dot(w row r, a row c) for r < nr, c < nc. */
typedef void (*slm_cpu_tile_fn)(int64_t k, const void *w, size_t w_stride, int nr, const void *a,
                                size_t a_stride, int nc, float *y, int64_t ldy, int accumulate);
/* Quantizes one activation row of k floats. */
typedef void (*slm_cpu_quant_fn)(const float *x, void *dst, int64_t k);

/* The AVX2 tile for a weight type, or NULL (then the generic one runs). */
slm_cpu_tile_fn slm_cpu_tile_avx2(uint32_t wtype);
slm_cpu_quant_fn slm_cpu_quant_avx2(uint32_t act_type);

#endif
