#!/usr/bin/env python3
"""
tests/golden/make_arch_reference.py - llama.cpp's logits on the synthetic models of
make_arch_models.py, for tests/test_arch.c. Run with the peer build's Python bindings:
    bench/peer/build-llama-cpp.sh
    PYTHONPATH=$(sed -n 's/^python=//p' ~/.cache/slmd/peer/READY) \\
        python3 tests/golden/make_arch_reference.py ARCH [--out tests/golden/arch/ARCH.txt]
It writes the model (make_arch_models.py, deterministic), feeds 64 token ids (PCG64 seed 7,
below the vocabulary's special tokens) one llama_decode call each (as make_reference.py does;
CPU, flash attention off, 2 threads) and records, per position, llama.cpp's argmax and the
logits of 16 ids: its 8 best and 8 fixed ones, and the gap between its two best logits (the test
checks the argmax only where the gap is wider than twice its bound: a near tie is a coin toss).
File format (text): "sha256 HEX", "tokens N id...", then N lines "pos P argmax A gap G id:logit x16".
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from make_reference import Peer  # noqa: E402  (imports llama_cpp)

N_POS = 64
FIXED = [0, 1, 2, 17, 100, 1000, 12345, 40000]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch")
    ap.add_argument("--out")
    a = ap.parse_args()
    out = a.out or os.path.join(here, "arch", a.arch + ".txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, a.arch + ".gguf")
        res = subprocess.run([sys.executable, os.path.join(here, "make_arch_models.py"), a.arch, path],
                             check=True, capture_output=True, text=True)
        sha = res.stdout.split("sha256 ")[1].split()[0]
        peer = Peer(path, 256, 64)
        rng = np.random.Generator(np.random.PCG64(7))
        toks = [int(t) for t in rng.integers(100, 40000, N_POS)]
        lines = []
        for p, t in enumerate(toks):
            row = peer.decode([t], p, False)
            order = np.argsort(-row, kind="stable")
            ids = [int(i) for i in order[:8]] + FIXED
            lines.append("pos %d argmax %d gap %.6f %s" % (p, int(order[0]), row[order[0]] - row[order[1]],
                                                         " ".join("%d:%.6f" % (i, row[i]) for i in ids)))
        peer.close()
    with open(out, "w") as f:
        f.write("sha256 %s\n" % sha)
        f.write("tokens %d %s\n" % (N_POS, " ".join(map(str, toks))))
        f.write("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
