/*
 * kernels/numerics.h - the orders of arithmetic that the CPU kernels (kernels/cpu) and the CUDA
 * kernels (kernels/cuda) share, so that neither includes the other (docs/numerics.md).
 */
#ifndef SLM_KERNELS_NUMERICS_H
#define SLM_KERNELS_NUMERICS_H

/* Lanes of RMSNorm's double sum of squares: lane l adds elements l, l + LANES, ... in order,
 * then lanes l and l + w are added for w = LANES / 2, ..., 1 (the CUDA kernel's warp). */
#define SLM_RMSNORM_LANES 32

#endif
