#!/usr/bin/env python3
"""Fixture for tests/test_kquant.c: random Q6_K and Q4_K blocks (finite f16 scales, every
other byte random) and gguf-py's dequantization of them (gguf.quants.dequantize, the
reference the llama.cpp project ships in Python).

Writes tests/fixtures/kquant/{q6_k,q4_k}.blocks (raw ggml blocks) and .f32 (their values,
little-endian float32). Run: python3 tools/kquant_fixture.py  (needs the gguf package)."""
import os
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "kquant")
NBLK = 8


def f16_bytes(rng, n):
    v = (rng.standard_normal(n) * 0.01).astype(np.float16)
    v[0] = np.float16(6.0e-8)  # a subnormal scale
    return v.view(np.uint8).reshape(n, 2)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(14)
    # Q6_K: ql[128] qh[64] scales[16] d
    q6 = rng.integers(0, 256, size=(NBLK, 210), dtype=np.uint8)
    q6[:, 208:210] = f16_bytes(rng, NBLK)
    # Q4_K: d dmin scales[12] qs[128]
    q4 = rng.integers(0, 256, size=(NBLK, 144), dtype=np.uint8)
    q4[:, 0:2] = f16_bytes(rng, NBLK)
    q4[:, 2:4] = np.abs(rng.standard_normal(NBLK) * 0.01).astype(np.float16).view(np.uint8).reshape(NBLK, 2)
    for name, blocks, qt in (("q6_k", q6, T.Q6_K), ("q4_k", q4, T.Q4_K)):
        vals = dequantize(blocks.reshape(-1), qt).astype("<f4")
        assert vals.size == NBLK * 256
        blocks.tofile(os.path.join(OUT, name + ".blocks"))
        vals.tofile(os.path.join(OUT, name + ".f32"))


if __name__ == "__main__":
    main()
