/*
 * kernels/cuda/kernels.h - the CUDA kernels' launchers, callable from C.
 *
 * One .cu file per op family (docs/cuda.md describes each kernel, its launch shape and
 * what it reads). Every launcher queues its work on `stream` and returns at once.
 *
 * Errors, the same for every launcher:
 *   0        queued;
 *   -EINVAL  a bad argument, nothing queued: a NULL pointer, a size out of range or not a
 *            whole number of the weight type's blocks, a misaligned pointer, an unknown
 *            type, scratch too small, or (under the SIMT emulator) a pointer that is not
 *            live device memory of the size the arguments imply;
 *   -EIO     the CUDA runtime or cuBLAS refused the launch (the CUDA error of the launch,
 *            or an earlier asynchronous one that cudaGetLastError() reported):
 *            slm_cuda_last_error() tells which, for the caller's log.
 * Faults inside a kernel show up, as always in CUDA, at the next synchronisation.
 *
 * Pointers named "device" are device memory; sizes are elements unless named bytes.
 * Weights are in GGUF's layout (kernels/quant.h): `rows` rows of `cols` elements, a row
 * being cols / slm_qblock_elems(type) packed blocks (slm_cuda_row_bytes), except where a
 * launcher says "device layout" (slm_cuda_gemv, slm_cuda_gemv_q8, slm_cuda_embed_device_layout):
 * then as slm_cuda_to_device_layout writes them (layout.cu, below).
 *
 * Batch invariance (docs/numerics.md): in every kernel here an output element's
 * arithmetic, and its order, depend only on that element's own inputs and on the sizes
 * of the weight (rows, cols, dim), never on how many tokens the call carries or where a
 * token sits among them. The GEMV path and the GEMM path of a matmul differ from each
 * other, though (docs/cuda.md, "Batch invariance").
 */
#ifndef SLM_KERNELS_CUDA_KERNELS_H
#define SLM_KERNELS_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA runtime's and cuBLAS's handle types, by their real names, so that C code can
 * call the launchers without CUDA's headers (cudaStream_t and cublasHandle_t are these). */
struct CUstream_st;
struct cublasContext;

/* The CUDA error (a cudaError_t, or a cublasStatus_t + 10000 for cuBLAS) behind the
 * calling thread's last -EIO from a launcher; 0 if none yet. */
int slm_cuda_last_error(void);

/* Shared memory. CUDA's default limit of a block is 48 KiB of static and dynamic shared memory
 * together; above it a kernel must opt in (cudaFuncSetAttribute, MaxDynamicSharedMemorySize) and
 * may then take up to that attribute in dynamic memory, the attribute plus its static memory
 * within the device's opt-in maximum (99 KiB on sm_86 / sm_89, 163 on sm_80, 227 on sm_90). No
 * kernel here declares more than SLM_CUDA_STATIC_SHARED_MAX of static shared memory
 * (tests/test_cuda_resources.sh reads every kernel's on every architecture), so a launch of up to
 * SLM_CUDA_DYN_SHARED_DEFAULT dynamic bytes needs no opt-in, and every launcher that may take
 * more calls slm_cuda_smem_opt_in first. The emulator refuses a launch above the default that
 * did not opt in (docs/emulator.md). */
#define SLM_CUDA_STATIC_SHARED_MAX 12288
#define SLM_CUDA_DYN_SHARED_DEFAULT (49152 - SLM_CUDA_STATIC_SHARED_MAX)

/* Before a launch of `kernel` (its host function pointer) with `bytes` of dynamic shared memory:
 * above SLM_CUDA_DYN_SHARED_DEFAULT, the kernel's opt-in to max_bytes (the most any launch of it
 * takes), once per kernel and process. 0, -EINVAL for bytes > max_bytes, or -EIO with the CUDA
 * error kept (slm_cuda_last_error). */
int slm_cuda_smem_opt_in(const void *kernel, size_t bytes, size_t max_bytes);

/* Bytes of one GGUF row of `cols` elements of `type`; 0 for an unknown type or a cols
 * that is not a whole number of blocks. */
size_t slm_cuda_row_bytes(uint32_t type, int64_t cols);

/* ---- layout.cu: the device layout of the quantized weights (host code) ---- */

/*
 * The device layout: how the decode GEMV (slm_cuda_gemv, slm_cuda_gemv_q8) and
 * slm_cuda_embed_device_layout want a weight of a quantized type with an integer dot product
 * (slm_cuda_has_device_layout(type)) in device memory. It is
 * the GGUF data, still quantized, with its bytes permuted and padded so that every row starts
 * 16-byte aligned and a GEMV lane reads its weights with 16-byte loads. Rows are independent:
 * row r starts at r * slm_cuda_device_row_bytes(type, cols). Within a row:
 *   Q4_K, Q5_K  GGUF's row unchanged (their blocks, 144 and 176 bytes, are 16-byte multiples);
 *   Q6_K        each 210-byte GGUF block followed by 14 zero bytes: 224-byte blocks;
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32-element blocks): the row's nb blocks as nb / 4 "quads"
 *               (quad g holds blocks 4g .. 4g + 3), then a "tail" of the last t = nb % 4
 *               blocks (none when t = 0), then zero bytes up to a multiple of 16. With i the
 *               block's place in its quad or tail, sb the scale bytes of a block (2: the half d
 *               of Q4_0 / Q5_0 / Q8_0; 4: the halves d, m of Q4_1 / Q5_1, d first) and W the qs
 *               words of a block (4, or 8 for Q8_0; word w = qs bytes 4w .. 4w + 3), a quad is:
 *     0..15     the scales, block i's at sb * i (bytes 8..15 zero for sb = 2);
 *     16..31    Q5_0 / Q5_1 only: qh (4 bytes) of block i at 16 + 4i;
 *     H..       the quants, H = 32 for Q5_0 / Q5_1, else 16: block i's qs whole at H + 4Wi
 *               (word w at H + 4Wi + 4w), so that a GEMV lane reads a block's quants in one
 *               16-byte load (two for Q8_0) and a tensor-core fragment's word w at + 4w;
 *               quads are 80 bytes (Q4_0, Q4_1), 96 (Q5_0, Q5_1) or 144 (Q8_0);
 *     and the tail the same with t for 4: the scales, block i's at sb * i, zero-padded to S =
 *               the next multiple of 4; Q5_x's qh of block i at S + 4i; the quants from H' =
 *               S (+ 4t for Q5_x) rounded up to a multiple of 16, zero bytes between: block
 *               i's qs whole at H' + 4Wi. (The row's size is what packing the tail's quants
 *               right after its header would give once the row is padded to 16.)
 * Sizes against GGUF's: per quad Q4_0 +11 %, Q5_0 +9 %, Q8_0 +6 %, Q4_1 / Q5_1 0; Q6_K +6.7 %;
 * plus, per row, under 16 bytes of padding (the tail's header and the row's end).
 */

/* 1 for the types with a device layout (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K: the
 * decode GEMV's), 0 for F32 / F16 / BF16, the activation types and unknown types. */
int slm_cuda_has_device_layout(uint32_t type);

/* Bytes of one row of `cols` elements of `type` in the device layout; 0 for a type without
 * one (F32, F16, BF16, the activation types, unknown) or a cols that is not a whole number of
 * blocks. A multiple of 16. */
size_t slm_cuda_device_row_bytes(uint32_t type, int64_t cols);

/*
 * out (rows * slm_cuda_device_row_bytes(type, cols) bytes, host memory) = the rows (rows,
 * cols) of gguf_rows (host memory, GGUF's layout: rows * slm_cuda_row_bytes(type, cols)
 * bytes) in the device layout above, every byte written (padding zero). out must not overlap
 * gguf_rows. 0, or -EINVAL (nothing written) for a type without a device layout, rows < 1, a
 * cols that is not a whole number of blocks, or a NULL pointer.
 */
int slm_cuda_to_device_layout(uint32_t type, const void *gguf_rows, int64_t rows, int64_t cols, void *out);

/* ---- matvec.cu: fused dequant-GEMV with fp32 activations (the backend's path for F32 / F16 / BF16 weights) ---- */

/* Tokens one GEMV block handles per weight read; a call with more tokens reads the
 * weight once per group of this many tokens. */
#define SLM_CUDA_MATVEC_TOKENS 8

/*
 * y (n, rows) = x (n, cols) . W^T, or y += when accumulate. W (rows, cols) of any weight
 * type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K), device, aligned
 * as its blocks' loads need (16 bytes for Q4_K and Q5_K, 4 for Q4_1 and Q5_1, the element
 * size for F32 / F16 / BF16, else 2; a cudaMalloc or a 32-byte aligned GGUF offset always
 * is); x, y device floats, x 16-byte aligned when cols % 4 == 0. n >= 1, any size (groups of
 * SLM_CUDA_MATVEC_TOKENS). One warp per row, fp32 activations, fp32 accumulation in a
 * fixed order: a token's y has the same bits whatever n is and wherever the token sits.
 */
int slm_cuda_matvec(uint32_t type, const void *w, int64_t rows, int64_t cols, const float *x, int n, float *y,
                    int accumulate, struct CUstream_st *stream);

/* (matvec_q8.cu, the integer GEMV that gave the CPU backend's bits, is gone: the backend's
 * quantized matmuls are the decode GEMV below.) */

/* ---- gemv.cu: the decode GEMV (1..8 tokens), fast and batch-invariant, with fused prologues
 * and epilogues. Not the CPU's bits: within a tolerance of the CPU backend (docs/cuda.md,
 * "The decode GEMV"), and batch-invariant on the GPU. ---- */

#define SLM_CUDA_GEMV_MAX_TOKENS 8
#define SLM_CUDA_GEMV_MAX_WEIGHTS 3
/* The GEMV's dynamic shared memory is at most this much (CUDA's default per-block limit; above
 * SLM_CUDA_DYN_SHARED_DEFAULT the launch opts in, since the default counts the kernel's static
 * shared memory too): the quantizing prologues' x (slm_cuda_gemv_act_bytes, rounded up to 16) and the fold
 * area where the segment sums meet (4 warps x R rows x NT tokens x 32 floats: 4 KiB for 8 tokens,
 * 8 KiB with 2 rows a lane). So the prologues take 8 tokens up to 4480 columns, 3 tokens up to
 * 12544, 1 token up to 38912; 2 rows a lane are taken only where they fit too. */
#define SLM_CUDA_GEMV_SMEM 49152

/* The epilogues: y = result; y += result (the residual add); y = silu(gate) * up, with
 * weight 0 the gate and weight 1 the up projection, both of the same rows, into y[0]. */
#define SLM_CUDA_GEMV_STORE 0
#define SLM_CUDA_GEMV_ACCUMULATE 1
#define SLM_CUDA_GEMV_SWIGLU 2

/* Lanes that share one output row, and the number of segments the row's units are cut into
 * (docs/numerics.md, "The GPU"): the least power of two >= the row's units (a 32-element block
 * of Q4_x / Q5_x / Q8_0; a quarter of a K-quant block), at most 32; it depends only on (type,
 * cols). 0 for a type without a device layout or a cols that is not a whole number of its blocks. */
int slm_cuda_gemv_lanes(uint32_t type, int64_t cols);

/* The segment sums of a row are added in min(L, this many) groups of consecutive segments, left
 * to right within a group, then the group sums left to right (docs/numerics.md): so that the MMQ
 * can split a row's segments over this many warps and still give the GEMV's bits. */
#define SLM_CUDA_FOLD_GROUPS 4

/* Tokens slm_cuda_gemv_quantize takes in one call (a grid dimension). */
#define SLM_CUDA_ACT_MAX_TOKENS 65535

/* Bytes of n tokens of cols activations quantized for the GEMV and the MMQ: n * cols int8
 * quants (token after token), then n * cols / 32 pairs of floats (d, s = d * sum of the block's
 * quants); 0 unless 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS and cols is a positive multiple of 32. */
size_t slm_cuda_act_bytes(int n, int64_t cols);

/* slm_cuda_act_bytes, but 0 also for n > SLM_CUDA_GEMV_MAX_TOKENS: what the GEMV takes. */
size_t slm_cuda_gemv_act_bytes(int n, int64_t cols);

/* 1 if slm_cuda_gemv (the quantizing prologues) takes n tokens of a (type, cols) weight: a
 * type with a device layout, whole blocks, 1 <= n <= 8, slm_cuda_gemv_act_bytes(n, cols) <=
 * SLM_CUDA_GEMV_SMEM; else 0 (then quantize once and call slm_cuda_gemv_q8). */
int slm_cuda_gemv_fits(uint32_t type, int64_t cols, int n);

/*
 * xq (slm_cuda_act_bytes(n, cols) bytes, device, 16-byte aligned) = x (n, cols) device
 * floats (16-byte aligned) quantized per 32 elements: d = amax / 127, q = round(x * 127 / amax),
 * s = d * sum(q). With gamma (cols floats, device, 16-byte aligned; NULL for none), each token's
 * row is first RMS-normed: x * (1 / sqrt(mean(x^2) + eps)) * gamma. The same device code as
 * slm_cuda_gemv's prologues, so the same bytes. 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS, cols a
 * multiple of 32; token t's bytes do not depend on n (slm_cuda_gemv_q8 takes n <= 8 of them;
 * slm_cuda_mmq_quantize gives the same bytes in the MMQ's order).
 */
int slm_cuda_gemv_quantize(const float *x, const float *gamma, float eps, int n, int64_t cols, void *xq,
                           struct CUstream_st *stream);

/*
 * The decode GEMV over xq from slm_cuda_gemv_quantize: for each weight i < n_w (1..3, all of
 * `type` and `cols`), y[i] (n, rows[i]) = W_i (rows[i], cols) . x^T, or += with
 * SLM_CUDA_GEMV_ACCUMULATE; with SLM_CUDA_GEMV_SWIGLU, n_w = 2, rows[0] = rows[1] and
 * y[0] (n, rows[0]) = silu(W_0 . x^T) * (W_1 . x^T) (y[1] is not read). type one of Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; each W_i in the device layout (slm_cuda_to_device_layout),
 * 16-byte aligned; y[i] device, 4-aligned, not overlapping each other or xq; the arrays w, rows,
 * y host memory, read before the call returns. 1 <= n <= 8. Batch-invariant: a token's outputs
 * have the same bits whatever n is and wherever the token sits, and the same as from slm_cuda_gemv.
 */
int slm_cuda_gemv_q8(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, const void *xq,
                     int n, float *const *y, int epilogue, struct CUstream_st *stream);

/*
 * slm_cuda_gemv_quantize + slm_cuda_gemv_q8 in one launch: x (n, cols) device floats, 16-byte
 * aligned, quantized inside every block into shared memory, RMS-normed first when gamma is not
 * NULL (gamma and eps as for slm_cuda_gemv_quantize). Needs slm_cuda_gemv_fits(type, cols, n).
 * Bit-identical to the two-launch path. y must not overlap x.
 */
int slm_cuda_gemv(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, const float *x,
                  const float *gamma, float eps, int n, float *const *y, int epilogue, struct CUstream_st *stream);

/* ---- mmq.cu: the quantized matmul on tensor cores, for steps of many tokens ---- */

/*
 * The bytes of slm_cuda_mmq_quantize's xq for n tokens of cols: slm_cuda_act_bytes' per token,
 * for the tokens rounded up to a multiple of 32; 0 unless 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS, cols
 * is a positive multiple of 32 and the total is at most INT32_MAX (the MMQ takes its offsets in
 * 32 bits: a caller with more cuts its tokens in chunks).
 */
size_t slm_cuda_mmq_act_bytes(int n, int64_t cols);

/*
 * slm_cuda_gemv_quantize's bytes for every token (the same device code), placed in the order the
 * MMQ's tensor-core fragments read them: N = 32 ceil(n / 32) tokens, in NT = N / 8 tiles of 8,
 * the tokens from n to N zeros; for activation block c (0 .. cols / 32 - 1) of token tau, at =
 * c NT + tau / 8 and g = tau % 8: the 8-byte pair (words t, t + 4) of its 32 quants at byte
 * 256 at + 32 g + 8 t (t = 0..3), and its (d, s) (two floats) at byte N cols + 64 at + 8 g.
 * xq slm_cuda_mmq_act_bytes(n, cols) bytes, device, 16-byte aligned; x, gamma and eps as for
 * slm_cuda_gemv_quantize. What slm_cuda_mmq reads.
 */
int slm_cuda_mmq_quantize(const float *x, const float *gamma, float eps, int n, int64_t cols, void *xq,
                          struct CUstream_st *stream);

/*
 * slm_cuda_gemv_q8's contract for any number of tokens, 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS, but
 * xq (slm_cuda_mmq_act_bytes(n, cols) bytes) from slm_cuda_mmq_quantize: the weights in the
 * device layout, the three epilogues, up to three weights. mma.sync s8 -> s32 tiles of 16 rows x
 * 8 tokens (kernels/cuda/mma.cuh; sm_80 and later). Every token's outputs have exactly the bits
 * slm_cuda_gemv_q8 gives that token (the shared order of docs/numerics.md, "The GPU"), so the
 * backend may take either kernel for a step by its size alone.
 */
int slm_cuda_mmq(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, const void *xq, int n,
                 float *const *y, int epilogue, struct CUstream_st *stream);

/* The most dynamic shared memory slm_cuda_mmq_fused takes a block (an opt-in above
 * SLM_CUDA_DYN_SHARED_DEFAULT): with the MMQ's static shared memory (8 KiB for the narrow kernel, 10.2 KiB for the
 * wide one), under the 99 KiB a block may have on sm_86 / sm_89 (163 KiB on sm_80, 227 KiB on
 * sm_90). */
#define SLM_CUDA_MMQ_SMEM 90112

/* The MMQ has two kernels of the same bits: a narrow one (16 rows a block, the K split over its
 * warps: many blocks for small grids) and a wide one (64 rows a block, every warp along the whole
 * K, the block's tokens staged in shared memory once for the 4 warps: a quarter of the
 * activation reads from L2). A launch takes the wide one when its grid would have at least this
 * many blocks (2 x an H100 / H200's 132 SMs: a guess until a GPU measures it, docs/cuda.md). */
#define SLM_CUDA_MMQ_WIDE_MIN_BLOCKS 264

/* Programmatic dependent launch (docs/cuda.md, "Programmatic dependent launch"): every kernel of
 * this library but the tensor-rate probe starts with griddepcontrol.wait and is launched so
 * that it may start while the grid before it drains (its launch and the instructions before the
 * wait overlap that grid's tail; nothing it computes does). 1 turns that on, 0 off (plain
 * launches), < 0 back to the default: on where the device is of compute capability 9.0 or more
 * (decided at the first launch). For measurements (the backend's SLM_CUDA_PDL). */
void slm_cuda_set_pdl(int mode);
/* 1 when the launches are programmatic now (the default decided on the current device at the
 * first call), else 0. */
int slm_cuda_pdl_launches(void);
/* When the launches are programmatic: whether the driver takes them on `stream` (a stream of its
 * own, not capturing), both launched and captured into a graph: four launches of a counting
 * kernel, two of them through an instantiated graph, must all run. 0 when they do (or the
 * launches are plain); otherwise -EIO with *why (len bytes) naming the step that failed and the
 * CUDA error, every error cleared: the caller then turns them off (slm_cuda_set_pdl(0)). */
int slm_cuda_pdl_probe(struct CUstream_st *stream, char *why, size_t len);

/* Sets that threshold for the process's later launches (0: always wide, INT_MAX: never; < 0:
 * back to SLM_CUDA_MMQ_WIDE_MIN_BLOCKS): for tests and measurements. */
void slm_cuda_mmq_set_wide_min_blocks(int blocks);

/* The dynamic shared bytes slm_cuda_mmq_fused needs for (type, cols, epilogue): a block's tokens
 * (32; 16 for SwiGLU; 8 for a Q4_K / Q5_K SwiGLU pair) of quantized x; 0 for a type without a
 * device layout or a cols that is not a whole number of its blocks. The launch takes it when it
 * is at most SLM_CUDA_MMQ_SMEM: 32 tokens up to 2240 columns, 16 up to 4480. */
size_t slm_cuda_mmq_fused_smem(uint32_t type, int64_t cols, int epilogue);

/*
 * slm_cuda_gemv_quantize + slm_cuda_mmq in one launch: x (n, cols) device floats, 16-byte
 * aligned, RMS-normed first when gamma is not NULL (gamma and eps as for slm_cuda_gemv_quantize),
 * quantized inside every block into shared memory (the block's own tokens only; the same device
 * code as slm_cuda_gemv_quantize). 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS; needs
 * slm_cuda_mmq_fused_smem(type, cols, epilogue) <= SLM_CUDA_MMQ_SMEM, else -EINVAL. Bit-identical
 * to the two-launch path (and so to the GEMV) for every token. y must not overlap x.
 */
int slm_cuda_mmq_fused(uint32_t type, int n_w, const void *const *w, const int64_t *rows, int64_t cols, const float *x,
                       const float *gamma, float eps, int n, float *const *y, int epilogue,
                       struct CUstream_st *stream);

/* ---- mmf.cu: F16 / BF16 weights on tensor cores, for every number of tokens ---- */

/*
 * y (n, rows) = x (n, cols) . W^T, or y += when accumulate, for W (rows, cols) of SLM_TYPE_F16 or
 * SLM_TYPE_BF16 in GGUF's layout (row-major 2-byte elements; device, 4-byte aligned): mma.sync
 * m16n8k16 with f32 accumulation (sm_80 and later), each x rounded once to the weight's type (to
 * nearest even; an f16 overflows to infinity past +-65504). x device floats, 8-byte aligned; y
 * device, 4-byte aligned, not overlapping x. rows >= 1; cols a positive multiple of 16 (else
 * -EINVAL: a row is a whole number of k16 steps); 1 <= n <= SLM_CUDA_ACT_MAX_TOKENS. Each output's
 * order depends on cols alone (a split-K fixed by the shape): a token's y has the same bits
 * whatever n is and wherever the token sits. Not the bits of slm_cuda_matvec (fp32 x).
 */
int slm_cuda_mmf(uint32_t type, const void *w, int64_t rows, int64_t cols, const float *x, int n, float *y,
                 int accumulate, struct CUstream_st *stream);

/* ---- mma_rate.cu: the int8 tensor-core rate, for bench/gpu/gpu_kernels ---- */

/* blocks x 8 warps issue iters x 4 independent mma.sync s8 m16n8k32 each; out (blocks ints,
 * device) is written only in a case that does not happen. slm_cuda_mma_rate_ops: the integer
 * operations (2 a multiply-add) of such a launch. */
int slm_cuda_mma_rate(int blocks, int iters, int *out, struct CUstream_st *stream);
double slm_cuda_mma_rate_ops(int blocks, int iters);

/* ---- dequant.cu: weight rows to f32 / f16 / bf16, and the embedding lookup ---- */

/*
 * out (rows, cols) = W dequantized, as out_type (SLM_TYPE_F32, SLM_TYPE_F16 or
 * SLM_TYPE_BF16), rows ld_out elements apart (ld_out >= cols). Each value is the f32 that
 * slm_cpu_dequantize_row gives, rounded to nearest even for f16 / bf16. W as for
 * slm_cuda_matvec (F32 included: a float -> f16 conversion); out aligned to its element.
 */
int slm_cuda_dequantize(uint32_t type, const void *w, int64_t rows, int64_t cols, uint32_t out_type, void *out,
                        int64_t ld_out, struct CUstream_st *stream);

/*
 * out (n, cols) f32 = rows ids[0..n) of the table (rows, cols) of any weight type: the
 * embedding lookup. ids are device int32; an id outside [0, rows) gives a row of NaN
 * (the caller validates ids on the host: the kernel cannot return an error).
 */
int slm_cuda_embed(uint32_t type, const void *table, int64_t rows, int64_t cols, const int32_t *ids, int n,
                   float *out, struct CUstream_st *stream);

/*
 * slm_cuda_embed for a table in the device layout (slm_cuda_to_device_layout; the same copy
 * the decode GEMV reads, as for a tied output matrix): type one with a device layout
 * (slm_cuda_has_device_layout(type)), table 16-byte aligned, rows *
 * slm_cuda_device_row_bytes(type, cols) bytes. Values bit-identical to slm_cpu_dequantize_row
 * of the GGUF rows; ids as for slm_cuda_embed.
 */
int slm_cuda_embed_device_layout(uint32_t type, const void *table, int64_t rows, int64_t cols, const int32_t *ids,
                                 int n, float *out, struct CUstream_st *stream);

/* ---- gemm.cu: the prefill / large-batch matmul (dequantized tiles into cuBLAS) ---- */

/* Bytes of scratch slm_cuda_matmul_gemm needs to do (rows, cols) x n in one tile; any
 * amount from slm_cuda_matmul_gemm_min_scratch up works, in smaller tiles. */
size_t slm_cuda_matmul_gemm_scratch(int64_t rows, int64_t cols, int n);
size_t slm_cuda_matmul_gemm_min_scratch(int64_t cols, int n);

/*
 * y (n, rows) (+)= x (n, cols) . W^T through cuBLAS: x is converted to f16, W is
 * dequantized to f16 a tile of rows at a time into `scratch` (device, 256-byte aligned,
 * scratch_bytes long), and cublasGemmEx multiplies them with fp32 accumulation and fp32
 * output. Arguments as slm_cuda_matvec; `cublas` is a handle the caller owns, set here to
 * `stream`. Results differ from the GEMV's in the last bits (f16 operands, another order).
 */
int slm_cuda_matmul_gemm(struct cublasContext *cublas, uint32_t type, const void *w, int64_t rows, int64_t cols,
                         const float *x, int n, float *y, int accumulate, void *scratch, size_t scratch_bytes,
                         struct CUstream_st *stream);

/* ---- ops.cu: normalisation and element-wise ops ---- */

/* out (n, dim) = x / sqrt(mean(x^2) + eps) * gamma, per row; gamma (dim) f32; out may
 * equal x. One block per row; the sum of squares is reduced in a fixed order that
 * depends only on dim. */
int slm_cuda_rmsnorm(const float *x, const float *gamma, int n, int dim, float eps, float *out,
                     struct CUstream_st *stream);

/* out (len) = silu(gate) * up = gate / (1 + exp(-gate)) * up; out may equal gate or up. */
int slm_cuda_swiglu(const float *gate, const float *up, size_t len, float *out, struct CUstream_st *stream);

/* Entries of the GeGLU table: one f16 per f16 bit pattern. */
#define SLM_CUDA_GELU_TABLE 65536

/* out (len) = gelu(gate) * up, GELU's tanh form as slm_cpu_geglu computes it, bit for bit:
 * table (SLM_CUDA_GELU_TABLE f16 bits, device) holds, at the bits of each f16 h with -10 <= h <=
 * 10, the f16 bits of slm_cpu_geglu's formula at h (the host fills it once; the backend's
 * gelu_table in daemon/engine/backends/cuda/ops.c); gate rounded to f16 picks the entry, times
 * up; gate <= -10 gives 0 and gate >= 10 gives gate * up. out may equal gate or up. */
int slm_cuda_geglu(const float *gate, const float *up, const uint16_t *table, size_t len, float *out,
                   struct CUstream_st *stream);

/* x (len) *= s. */
int slm_cuda_scale(float *x, size_t len, float s, struct CUstream_st *stream);

/* x (len) = tanhf(x * (1.0f / cap)) * cap (slm_cpu_softcap's order; the device's tanhf, within 2
 * ulp of the host's). cap > 0. */
int slm_cuda_softcap(float *x, size_t len, float cap, struct CUstream_st *stream);

/* x (len) += y. */
int slm_cuda_add(float *x, const float *y, size_t len, struct CUstream_st *stream);

/* x (n, dim) += bias (dim), broadcast over the n rows. */
int slm_cuda_add_bias(float *x, const float *bias, int n, int dim, struct CUstream_st *stream);

/* dst (n_rows, dim) = rows ids[0..n_rows) of x (x_rows, dim); ids device int32, an id
 * outside [0, x_rows) gives a row of NaN. dst must not overlap x. */
int slm_cuda_gather_rows(const float *x, int64_t x_rows, int dim, const int32_t *ids, int n_rows, float *dst,
                         struct CUstream_st *stream);

/* ==== attention and sampling ====
 * kernels/cuda/attention.h declares them (RoPE and the paged KV store, the fused decode
 * attention and the paged attention, sampling); it needs CUDA's cuda_runtime_api.h, which this header avoids. */

#ifdef __cplusplus
}
#endif
#endif
