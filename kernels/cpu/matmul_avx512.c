/*
 * kernels/cpu/matmul_avx512.c - the X8-layout tiles with AVX-512 VNNI (on 256-bit
 * vectors: AVX512VL gives vpdpbusd and 32 vector registers, so 3 tokens per tile).
 *
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
 * (CMake gives *_avx512.c files those flags) and only called after matmul.c checked
 * the CPU. vpdpbusd adds the exact integer dot of each 4-byte group, so the results are
 * bit-identical with the AVX2 tiles of matmul_avx2.c.
 */
#include "kernels/cpu/matmul.h"

#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/dequant.h"

#define X8_CMAX 3
#define X8_CMAX_Q5_0 3
#define X8_CMAX_K 3
#define q4_sum4(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))

#define q8_sum4(abs_w, w, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (abs_w), _mm256_sign_epi8((s), (w)))

#include "kernels/cpu/matmul_x8.h"

#define X8_REST_CASES X8_CASES_3
#define X8_REST_CASES_Q5_0 X8_CASES_3
#define X8_REST_CASES_K X8_CASES_3
X8_DEFINE_TIER(slm_cpu_x8_avx512)
