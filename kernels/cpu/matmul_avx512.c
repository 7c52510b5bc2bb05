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

#define X8_REST_CASES(BODY)                                                                                    \
    X8_REST(BODY, 1) X8_REST(BODY, 2) X8_REST(BODY, 3) X8_REST(BODY, 4) X8_REST(BODY, 5) X8_REST(BODY, 6)      \
    X8_REST(BODY, 7)
X8_DEFINE(x8_gemm_q4_1, x8_q4_1)
X8_DEFINE(x8_gemm_q8_0, x8_q8_0)

slm_cpu_x8_fn slm_cpu_x8_avx512(uint32_t wtype)
{
    switch (wtype) {
    case SLM_TYPE_Q4_1: return x8_gemm_q4_1;
    case SLM_TYPE_Q8_0: return x8_gemm_q8_0;
    default: return NULL;
    }
}
