#!/usr/bin/env python3
"""The expected score of bench/data/eval-sample.jsonl from llama.cpp (tests/test_slm_bench.sh).

    PYTHONPATH=$(sed -n 's/^python=//p' ~/.cache/slmd/peer/READY) \\
        python3 tests/golden/make_eval_reference.py > tests/golden/eval_sample.txt

slm-bench --eval's definition (bench/lib/quality.c), computed by llama.cpp: for each item and
choice, context + choice tokenized (no BOS, special tokens parsed); the choice's tokens are
those after the longest common prefix with the context's tokens (at least from position 1);
its score is the sum of their log-probabilities, teacher-forced, in float64 from the float32
logits. The pick is the best sum (acc) and the best sum per byte of the choice (acc_norm),
the first choice on a tie. Every token is decoded alone (one token per llama_decode: the
arithmetic slmd's CPU kernels follow). Writes one line per item (picks and the margin of each
pick over the runner-up, in nats) and the totals.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference as R  # noqa: E402
import llama_cpp as L  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
model = os.path.expanduser("~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf")
items = [__import__("json").loads(l) for l in open(os.path.join(here, "../../bench/data/eval-sample.jsonl")) if l.strip()]
peer = R.Peer(model, R.N_CTX, 1)


def log_softmax(row):
    row = row.astype(np.float64)
    mx = row.max()
    return row - mx - np.log(np.exp(row - mx).sum())


def context_rows(ctx_ids):
    """The context decoded one token at a time: row i predicts ctx_ids[i + 1]."""
    peer.reset()
    return [log_softmax(peer.decode([t], i, False)) for i, t in enumerate(ctx_ids)]


def choice_rows(ctx_rows, ids, p):
    """Rows for positions 0..len(ids)-2: the context's up to p - 1 (the same tokens), then
    ids[p..] decoded one at a time after dropping the cache from position p."""
    mem = L.llama_get_memory(peer.ctx)
    L.llama_memory_seq_rm(mem, 0, p, -1)
    rows = ctx_rows[:p]
    for i in range(p, len(ids) - 1):
        rows.append(log_softmax(peer.decode([ids[i]], i, False)))
    return rows


n_correct = n_norm = 0
min_margin = min_margin_norm = float("inf")
print("# slm-bench --eval of bench/data/eval-sample.jsonl as llama.cpp scores it (llama-cpp-python 0.3.36")
print("# vendored build, CPU), made by tests/golden/make_eval_reference.py; read by tests/test_slm_bench.sh.")
print("# item answer pick margin pick_norm margin_norm (margins: the pick over the runner-up, nats; per byte)")
for k, it in enumerate(items):
    ctx_ids = peer.tokenize(it["context"])
    ctx_rows = context_rows(ctx_ids)
    sums, per_byte = [], []
    for ch in it["choices"]:
        ids = peer.tokenize(it["context"] + ch)
        p = 0
        while p < len(ctx_ids) and p < len(ids) and ids[p] == ctx_ids[p]:
            p += 1
        p = max(p, 1)
        lp = choice_rows(ctx_rows, ids, p)
        s = sum(lp[i - 1][ids[i]] for i in range(p, len(ids)))
        sums.append(s)
        per_byte.append(s / len(ch.encode("utf-8")))

    def pick(v):
        b = 0
        for j in range(1, len(v)):
            if v[j] > v[b]:
                b = j
        return b, v[b] - max(x for j, x in enumerate(v) if j != b)

    b, m = pick(sums)
    bn, mn = pick(per_byte)
    n_correct += b == it["answer"]
    n_norm += bn == it["answer"]
    min_margin, min_margin_norm = min(min_margin, m), min(min_margin_norm, mn)
    print(f"{k} {it['answer']} {b} {m:.4f} {bn} {mn:.4f}")
print(f"n_items {len(items)}")
print(f"n_correct {n_correct}")
print(f"n_correct_norm {n_norm}")
print(f"min_margin {min_margin:.4f} {min_margin_norm:.4f}")
