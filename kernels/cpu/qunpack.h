/* kernels/cpu/qunpack.h - unpacking helpers shared by the reference dequantizers and dot products. */
#ifndef SLM_KERNELS_CPU_QUNPACK_H
#define SLM_KERNELS_CPU_QUNPACK_H

#include <stdint.h>
#include <string.h>

/* The 32 five-bit values of a Q5_0 / Q5_1 block: nibble j | bit j of qh << 4. */
static inline void slm_q5_values(const uint8_t qh_bytes[4], const uint8_t *qs, int v[32])
{
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < 16; j++) {
        v[j] = (int)((qs[j] & 0xf) | (((qh >> j) << 4) & 0x10));
        v[j + 16] = (int)((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's scales[12]. */
static inline void slm_k_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

#endif
