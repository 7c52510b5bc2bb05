/*
 * kernels/cpu/matmul_avx512.c - the X8-layout tiles with AVX-512 VNNI (on 256-bit
 * vectors: AVX512VL gives vpdpbusd and 32 vector registers, so 8 tokens per tile).
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
 * (CMake gives *_avx512.c files those flags) and only called after matmul.c checked
 * the CPU. vpdpbusd adds the exact integer dot of each 4-byte group, so the results are
 * bit-identical with the AVX2 tiles of matmul_avx2.c.
 */
#include "matmul.h"

#include <immintrin.h>
#include <string.h>

#include "dequant.h"

#define X8_CMAX 8
#define X8_PAIRS 4
#define IACC __m256i
#define iacc_zero() _mm256_setzero_si256()
#define q4_dp(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define q4_finish(acc) (acc)

/* The stored unsigned q + 128 goes straight into vpdpbusd; q8_finish removes 128 * sum(a). */
static inline __attribute__((always_inline)) void q8_prep(__m256i ch, __m256i *u, __m256i *unused)
{
    *u = ch;
    *unused = ch;
}

#define q8_dp(acc, u, unused, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define q8_finish(acc, bias) _mm256_add_epi32((acc), (bias))

#include "matmul_x8.h"

#define X8_REST_CASES X8_CASES_7
/* Q4_1 with 4 tokens or more: pairs of groups first, 4 tokens per tile (24 accumulators in
 * 32 registers). Decode keeps one group at a time: two weight streams at once made it
 * slower (tg128, 2 threads: 300 -> 200-226 t/s). */
#define Q4_1_PAIRS                                                                                           \
    for (; nc >= X8_PAIRS && g + 2 <= n_groups; g += 2) {                                                \
        const uint8_t *wg = (const uint8_t *)wp + (size_t)g * gs;                                            \
        float *yg = y + 8 * g;                                                                               \
        X8_TOKEN_LOOP(X8_CALL_Q4_1_G2, X8_PAIRS, X8_CASES_3);                                                \
    }
X8_DEFINE(x8_gemm_q4_1, X8_Q4_1_BYTES, X8_CALL_Q4_1, Q4_1_PAIRS)
X8_DEFINE(x8_gemm_q8_0, X8_Q8_0_BYTES, X8_CALL_Q8_0, )

slm_cpu_x8_fn slm_cpu_x8_avx512(uint32_t wtype)
{
    switch (wtype) {
    case SLM_TYPE_Q4_1: return x8_gemm_q4_1;
    case SLM_TYPE_Q8_0: return x8_gemm_q8_0;
    default: return NULL;
    }
}
