/*
 * kernels/cpu/dequant.h - scalar conversions, row (de)quantization and the reference dot products.
 *
 * These are the portable definitions every faster kernel is checked against:
 * dequantization bit-exact with GGUF's blocks (gguf's numpy reference), activation
 * quantization with ggml's math except that rounding is half-to-even
 * (nearbyintf, what the SIMD paths do), and dot products accumulated in a fixed order.
 */
#ifndef SLM_KERNELS_CPU_DEQUANT_H
#define SLM_KERNELS_CPU_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant.h"

float slm_half_to_f32(slm_half h);
/* Round to nearest even; overflow gives infinity, NaN stays NaN. */
slm_half slm_f32_to_half(float f);
float slm_bf16_to_f32(slm_bf16 h);
/* Round to nearest even; NaN stays a (quiet) NaN. */
slm_bf16 slm_f32_to_bf16(float f);

/*
 * Expands n elements (a whole number of type's blocks) of src into dst.
 * Any weight type of kernels/quant.h and Q8_0/Q8_1/Q8_K. Returns 0, or -EINVAL for an
 * unknown type or an n that is not a multiple of the block size.
 */
int slm_cpu_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/*
 * The activation type a weight type's dot product takes: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1
 * for Q4_1/Q5_1, Q8_K for the K-quants, F32 for F32/F16/BF16. UINT32_MAX if none.
 */
uint32_t slm_cpu_vec_dot_type(uint32_t wtype);

/*
 * Quantizes n floats (a whole number of blocks) into type's blocks: Q8_0, Q8_1, Q8_K, F32,
 * F16, BF16, and the weight types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml's reference
 * quantizers, used to make test weights). Q8_0 and Q8_1 take d = amax / 127 and the
 * multiplier 127 / amax (not 1 / d), as ggml's x86 activation quantizers do, so that
 * products agree with llama.cpp bit for bit. Returns 0 or -EINVAL.
 */
int slm_cpu_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/*
 * Dot product of one weight row (wtype, n elements) with one activation row already
 * quantized to slm_cpu_vec_dot_type(wtype). Integer products within a block, float
 * accumulation across blocks in llama.cpp's order (its x86 one-token kernels: vec_dot_ref.c,
 * docs/numerics.md). The portable kernel; 0 for an unknown type.
 */
float slm_cpu_vec_dot_ref(uint32_t wtype, int64_t n, const void *w, const void *a);

#endif
