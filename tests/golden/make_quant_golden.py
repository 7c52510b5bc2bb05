#!/usr/bin/env python3
"""
tests/golden/make_quant_golden.py - golden data for dequantization (tests/test_quant.c).

For each GGUF type F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K this writes
tests/golden/quant/<TYPE>.hex: raw blocks and what the numpy reference of the PyPI package
`gguf` (gguf.quants.dequantize) expands them to. slm_cpu_dequantize_row must reproduce the
expected floats bit for bit.

Regenerate (deterministic: fixed seed; the files only change if gguf's reference does):
    pip install gguf numpy
    python3 tests/golden/make_quant_golden.py
Made with gguf 0.19.0 and numpy 2.4.6 on python 3.11.

It also writes tests/golden/quant/quantize_<TYPE>.hex for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0:
float inputs and the blocks gguf.quants.quantize makes of them (ggml's reference quantizers,
which slm_cpu_quantize_row follows). The inputs hold no exact rounding tie for Q8_0 (gguf
rounds ties away from zero, slmd to even; test_quant.c checks ties on its own).

Q8_1 and Q8_K are not here: gguf.quants has no dequantizer for them (test_quant.c checks
them by a quantize / dequantize round trip instead).

The files are text: the bytes below, hex encoded, 64 bytes (128 digits) per line, so that
nothing binary (nothing that looks like model weights) is committed. File content, before
hex encoding (all little endian):
    offset 0   char[4]  magic "SLMQ"
    offset 4   u32      GGML type id (kernels/quant.h enum slm_qtype)
    offset 8   u32      n_blocks
    offset 12  u32      elements per block (1 for F32/F16/BF16)
    offset 16  u8[n_blocks * block_bytes]          raw blocks, GGUF layout
    then       f32[n_blocks * elements_per_block]  expected values
quantize_<TYPE>.hex has the same header with magic "SLMX", then the f32 inputs, then the
expected raw blocks.

What the blocks cover:
  * "random" blocks: every payload byte (nibbles, high bits qh, packed 6-bit K-scales,
    Q6_K int8 scales) is uniformly random, so every bit pattern occurs; the half scales
    d / dmin / m are random finite halves (random bits with the exponent not 31) mixed
    with the edge values +0, -0, +-65504, the smallest and largest subnormals, the
    smallest normal, +-1. Halves used as scales are never NaN or Inf (an Inf scale times
    a zero quant is NaN, whose bits the reference does not pin down).
  * a few blocks with all payload bytes 0x00 or 0xFF;
  * "realistic" blocks: random normal data quantized with gguf.quants.quantize where
    gguf has a quantizer (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16, F16); for the K-quants
    (no quantizer in gguf) random payloads under small scales typical of real weights.
  * F32 / F16 / BF16 elements: random finite bit patterns (subnormals included), +-0,
    the largest finite values, +-Inf, and converted normal data. No NaN: a NaN's payload
    is checked separately by the exhaustive conversion tests in test_quant.c.
"""
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quant")
SEED = 20240611

EDGE_HALVES = [0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x83FF,
               0x0400, 0x8400, 0x3C00, 0xBC00]


def random_finite_halves(rng, n):
    """n random finite halves (uint16 bits), every 4th one drawn from the edge list."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    inf_nan = (h & 0x7C00) == 0x7C00
    h[inf_nan] &= np.uint16(0xBFFF)  # clear an exponent bit: finite, same sign
    edge = rng.integers(0, len(EDGE_HALVES), size=n)
    pick = rng.random(n) < 0.25
    h[pick] = np.array(EDGE_HALVES, dtype=np.uint16)[edge[pick]]
    assert not np.any((h & 0x7C00) == 0x7C00)
    return h


def small_halves(rng, n, scale, signed=True):
    """Halves of the size real weight scales have."""
    v = np.abs(rng.normal(0.0, scale, size=n)).astype(np.float32)
    if signed:
        v *= np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    return v.astype(np.float16).view(np.uint16)


# (offset of each half scale inside the block) per type
HALF_OFFSETS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def set_half(blocks, off, h):
    blocks[:, off] = (h & 0xFF).astype(np.uint8)
    blocks[:, off + 1] = (h >> 8).astype(np.uint8)


def random_blocks(rng, qtype, n):
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n, type_size), dtype=np.uint32).astype(np.uint8)
    for off in HALF_OFFSETS[qtype]:
        set_half(b, off, random_finite_halves(rng, n))
    # two blocks with every payload bit clear / set (scales stay random)
    payload = np.ones(type_size, dtype=bool)
    for off in HALF_OFFSETS[qtype]:
        payload[off:off + 2] = False
    b[0, payload] = 0x00
    b[1, payload] = 0xFF
    return b


def realistic_blocks(rng, qtype, n):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        x = rng.normal(0.0, 0.05, size=(n, block_size)).astype(np.float32)
        x[0] = 0.0                      # all-zero block: d = 0
        x[1, :] = 0.25                  # constant block
        return quantize(x.reshape(-1), qtype).reshape(n, type_size)
    b = rng.integers(0, 256, size=(n, type_size), dtype=np.uint32).astype(np.uint8)
    if qtype == T.Q6_K:
        set_half(b, 208, small_halves(rng, n, 0.002, signed=False))
        b[:, 192:208] = rng.integers(-40, 41, size=(n, 16)).astype(np.int8).view(np.uint8)
    else:
        set_half(b, 0, small_halves(rng, n, 0.003, signed=False))
        set_half(b, 2, small_halves(rng, n, 0.002, signed=False))
    return b


def float_elements(rng, qtype, n):
    """n elements of F32 / F16 / BF16 as raw bytes."""
    n_rand = n // 2
    n_real = n - n_rand
    real = rng.normal(0.0, 1.0, size=n_real).astype(np.float32)
    real[: n_real // 8] *= np.float32(1e-6)
    if qtype == T.F32:
        bits = rng.integers(0, 1 << 32, size=n_rand, dtype=np.uint64).astype(np.uint32)
        nan = (bits & 0x7F800000) == 0x7F800000
        bits[nan] &= np.uint32(0xBFFFFFFF)
        bits[:8] = [0x00000000, 0x80000000, 0x7F7FFFFF, 0xFF7FFFFF,
                    0x7F800000, 0xFF800000, 0x00000001, 0x807FFFFF]
        raw = np.concatenate([bits, real.view(np.uint32)])
        return raw.view(np.uint8)
    bits = rng.integers(0, 1 << 16, size=n_rand, dtype=np.uint32).astype(np.uint16)
    if qtype == T.F16:
        nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
        bits[nan] &= np.uint16(0xFC00)  # NaN -> Inf of the same sign
        bits[:8] = [0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x0001, 0x83FF]
        raw = np.concatenate([bits, quantize(real, T.F16).view(np.uint16)])
    else:
        nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
        bits[nan] &= np.uint16(0xFF80)
        bits[:8] = [0x0000, 0x8000, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x0001, 0x807F]
        raw = np.concatenate([bits, quantize(real, T.BF16).view(np.uint16)])
    return raw.view(np.uint8)


def write_hex(path, data):
    with open(path, "w") as f:
        for i in range(0, len(data), 64):
            f.write(data[i:i + 64].hex() + "\n")


def write_golden(qtype, raw, n_blocks):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    assert raw.size == n_blocks * type_size
    expected = np.asarray(dequantize(raw.copy(), qtype), dtype=np.float32).reshape(-1)
    assert expected.size == n_blocks * block_size
    assert not np.any(np.isnan(expected)), qtype.name
    path = os.path.join(OUT_DIR, qtype.name + ".hex")
    write_hex(path, b"SLMQ" + struct.pack("<III", int(qtype), n_blocks, block_size) + raw.tobytes() +
              expected.astype("<f4").tobytes())
    return path, os.path.getsize(path)


def quantize_inputs(rng, qtype, n_blocks):
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    x = rng.normal(0.0, 1.0, size=(n_blocks, block_size)).astype(np.float32)
    x *= np.float32(10.0) ** rng.integers(-4, 3, size=(n_blocks, 1)).astype(np.float32)
    x[0] = 0.0
    x[1] = 0.75
    x[2, :] = np.linspace(-1.0, 1.0, block_size, dtype=np.float32)   # exact grid points
    x[3, ::2] = -x[3, 1::2]                                          # +-max in one block
    if qtype == T.Q8_0:
        # no exact .5 ties in x * (127 / amax): nudge such an element by one ulp
        while True:
            amax = np.abs(x).max(axis=1, keepdims=True)
            d = amax / np.float32(127)
            with np.errstate(divide="ignore"):
                idv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
            v = x * idv
            tie = np.abs(v - np.trunc(v)) == np.float32(0.5)
            if not tie.any():
                break
            x[tie] = np.nextafter(x[tie], np.float32(0))
    return x


def write_quantize_golden(qtype, x):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = x.shape[0]
    raw = np.asarray(quantize(x.reshape(-1), qtype), dtype=np.uint8).reshape(-1)
    assert raw.size == n_blocks * type_size
    path = os.path.join(OUT_DIR, "quantize_" + qtype.name + ".hex")
    write_hex(path, b"SLMX" + struct.pack("<III", int(qtype), n_blocks, block_size) + x.astype("<f4").tobytes() +
              raw.tobytes())
    return path, os.path.getsize(path)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for qtype in (T.F32, T.F16, T.BF16):
        rng = np.random.default_rng([SEED, int(qtype)])
        n = 4096
        path, size = write_golden(qtype, float_elements(rng, qtype, n), n)
        total += size
        print(f"{path}: {size} bytes")
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K):
        rng = np.random.default_rng([SEED, int(qtype)])
        n_rand, n_real = (96, 32) if qtype in (T.Q4_K, T.Q5_K, T.Q6_K) else (192, 64)
        raw = np.concatenate([random_blocks(rng, qtype, n_rand), realistic_blocks(rng, qtype, n_real)])
        path, size = write_golden(qtype, raw, n_rand + n_real)
        total += size
        print(f"{path}: {size} bytes")
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        rng = np.random.default_rng([SEED, 1000 + int(qtype)])
        path, size = write_quantize_golden(qtype, quantize_inputs(rng, qtype, 64))
        total += size
        print(f"{path}: {size} bytes")
    print(f"total {total} bytes (gguf {gguf_version()}, numpy {np.__version__})")
    return 0


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
