#!/usr/bin/env python3
"""
tests/golden/make_arch_reference.py - llama.cpp's logits on the synthetic models of
make_arch_models.py, or on a real model along a prompt and llama.cpp's greedy continuation
(--model FILE --prompt TEXT --name NAME), for tests/test_arch.c. Run with the peer build's
Python bindings:
    bench/peer/build-llama-cpp.sh
    PYTHONPATH=$(sed -n 's/^python=//p' ~/.cache/slmd/peer/READY) \\
        python3 tests/golden/make_arch_reference.py ARCH [--out tests/golden/arch/ARCH.txt]
It writes the model (make_arch_models.py, deterministic), feeds 64 token ids (PCG64 seed 7,
below the vocabulary's special tokens; with --model: the prompt's ids, BOS included when the
model asks for it, then llama.cpp's greedy tokens up to 64) one llama_decode call each (as make_reference.py does;
CPU, flash attention off, 2 threads) and records, per position, llama.cpp's argmax and the
logits of 16 ids: its 8 best and 8 fixed ones, and the gap between its two best logits (the test
checks the argmax only where the gap is wider than twice its bound: a near tie is a coin toss).
The context is 256 positions, or the model entry's n_ctx (phi3-long: above phi3's original
context, so that llama.cpp takes the LongRoPE long factors); the file then says so. An entry's
prefix (llama3: 960) is a number of token ids (PCG64 seed 11) fed first, unrecorded, so that the
recorded positions are far enough along for the rotations Llama 3's rope_freqs slow down (those
with wavelengths above 2048 positions) to have turned visibly.
File format (text): "sha256 HEX", ["n_ctx N",] ["prefix P id...",] "tokens N id...", then N
lines "pos P argmax A gap G id:logit x16" (P from the prefix's length on).

With --model FILE --greedy OUT it writes instead llama.cpp's greedy continuations of the 10
prompts of GREEDY_PROMPTS below (GREEDY_STEPS tokens each; the prompt with BOS when the model asks
for it, fed one token per llama_decode call, then each greedy token alone, as make_reference.py
does), for test_arch's count of identical prompts (tests/golden/arch/gemma3-270m-greedy.txt):
"sha256 HEX", then per prompt "P ids", "G ids", "M margins" (llama.cpp's best logit minus its
second best at each step, from the float32 logits in float64).
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
GREEDY_STEPS = 32
GREEDY_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "Water boils at 100 degrees Celsius because",
    "1, 1, 2, 3, 5, 8, 13,",
    "Dear Sir or Madam,\n\nI am writing to",
    "To make a simple bread, you need flour, water,",
    "The largest planet in the solar system is",
    "In 1969, the first humans landed on",
]
FIXED = [0, 1, 2, 17, 100, 1000, 12345, 40000]


class RealPeer(Peer):
    """Peer without make_reference's no-BOS assumption (gemma3 asks for BOS)."""

    def __init__(self, model_path, n_ctx, n_batch):
        import ctypes
        import llama_cpp as L
        import make_reference as MR
        L.llama_log_set(MR._quiet_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            sys.exit("cannot load " + model_path)
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, 1
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = L.llama_init_from_model(self.model, cp)
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def tokenize_special(self, text):
        import llama_cpp as L
        raw = text.encode("utf-8")
        buf = (L.llama_token * (len(raw) + 16))()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, len(raw) + 16, True, True)
        return list(buf[:n])


def record(peer, toks, greedy_from, pos0=0):
    """Feeds toks one at a time at positions pos0..; past greedy_from, appends llama.cpp's argmax
    until N_POS tokens."""
    lines, p = [], 0
    while p < len(toks) or p < N_POS:
        if p >= len(toks):
            toks.append(int(np.argmax(row)))
        row = peer.decode([toks[p]], pos0 + p, False)
        order = np.argsort(-row, kind="stable")
        ids = [int(i) for i in order[:8]] + FIXED
        lines.append("pos %d argmax %d gap %.6f %s" % (pos0 + p, int(order[0]), row[order[0]] - row[order[1]],
                                                     " ".join("%d:%.6f" % (i, row[i]) for i in ids)))
        p += 1
    return toks[:N_POS], lines[:N_POS]


def record_greedy(peer, path, sha):
    out = ["sha256 %s" % sha]
    for k, text in enumerate(GREEDY_PROMPTS):
        ids = peer.tokenize_special(text)
        peer.reset()
        for i, t in enumerate(ids):
            row = peer.decode([t], i, False)
        gen, margins, pos = [], [], len(ids)
        for step in range(GREEDY_STEPS):
            order = np.argsort(-row, kind="stable")
            gen.append(int(order[0]))
            margins.append(float(row[order[0]]) - float(row[order[1]]))
            if step + 1 < GREEDY_STEPS:
                row = peer.decode([gen[-1]], pos, False)
                pos += 1
        out += ["P " + " ".join(map(str, ids)), "G " + " ".join(map(str, gen)),
                "M " + " ".join("%.4f" % m for m in margins)]
        print("prompt %d: %d tokens, smallest margin %.4f" % (k, len(ids), min(margins)), file=sys.stderr)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch")
    ap.add_argument("--out")
    ap.add_argument("--model")
    ap.add_argument("--prompt")
    ap.add_argument("--greedy")
    a = ap.parse_args()
    out = a.out or os.path.join(here, "arch", a.arch + ".txt")
    n_ctx, prefix = 256, []
    if a.model:
        import hashlib
        sha = hashlib.sha256(open(a.model, "rb").read()).hexdigest()
        peer = RealPeer(a.model, 256, 64)
        if a.greedy:
            record_greedy(peer, a.greedy, sha)
            peer.close()
            return
        toks, lines = record(peer, peer.tokenize_special(a.prompt), 0)
        peer.close()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, a.arch + ".gguf")
            res = subprocess.run([sys.executable, os.path.join(here, "make_arch_models.py"), a.arch, path],
                                 check=True, capture_output=True, text=True)
            sha = res.stdout.split("sha256 ")[1].split()[0]
            import make_arch_models
            shape = make_arch_models.shape(a.arch)
            n_ctx = shape.get("n_ctx", 256)
            peer = Peer(path, n_ctx, 64)
            rng = np.random.Generator(np.random.PCG64(7))
            toks = [int(t) for t in rng.integers(100, 40000, N_POS)]
            if shape.get("prefix"):   # positions before the recorded ones (PCG64 seed 11), unrecorded
                prefix = [int(t) for t in np.random.Generator(np.random.PCG64(11)).integers(100, 40000,
                                                                                           shape["prefix"])]
                for p, t in enumerate(prefix):
                    peer.decode([t], p, False)
            toks, lines = record(peer, toks, N_POS, len(prefix))
            peer.close()
    with open(out, "w") as f:
        f.write("sha256 %s\n" % sha)
        if n_ctx != 256:
            f.write("n_ctx %d\n" % n_ctx)
        if prefix:
            f.write("prefix %d %s\n" % (len(prefix), " ".join(map(str, prefix))))
        f.write("tokens %d %s\n" % (len(toks), " ".join(map(str, toks))))
        f.write("\n".join(lines) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
