#!/usr/bin/env python3
"""Produce slmd's golden reference data from llama.cpp (the reference implementation).

Run it with the Python bindings of the peer build made by bench/peer/build-llama-cpp.sh:

    bench/peer/build-llama-cpp.sh
    PYTHONPATH=$(sed -n 's/^python=//p' ~/.cache/slmd/peer/READY) \
        python3 tests/golden/make_reference.py \
        [--model ~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf] [--out-dir tests/golden]

It reads tests/golden/ppl_text.txt and writes, into --out-dir (BUILD: avx512 where this CPU has
AVX-512F and DQ, which the peer's GGML_NATIVE build then uses: 16-lane float sums; else avx2, 8
lanes; tests/test_model.c reads the file of the lanes slmd follows, docs/numerics.md):
  smollm2_greedy_BUILD.txt  20 prompts x 64 greedy tokens with the top-1/top-2 logit margin of each step
  smollm2_ppl_BUILD.txt     token ids of ppl_text.txt, teacher-forced perplexity, per-position log-probs
With --self-check it writes nothing and measures llama.cpp against itself instead (the committed
greedy tokens re-evaluated as one teacher-forced batch per prompt, judged by test_model's criterion).
The definitions are written in each file's header. The run is deterministic: same build, same
machine, same output (checked by running it twice and comparing).

Only the low-level C API of llama.cpp is used (through llama_cpp's ctypes bindings): no sampler
chain, no repetition penalty, no chat template. Settings: n_ctx 2048, one sequence, flash
attention off, 2 threads, default K/V cache type (F16), default model params (mmap, CPU weight
repacking allowed, as llama.cpp runs by default).
"""

import argparse
import ctypes
import math
import os
import sys

import numpy as np

import llama_cpp as L

N_CTX = 2048
N_THREADS = 2
N_GEN = 64

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
CHAT_SYS = "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"

LONG_PLAIN = (
    "Chapter One\n\n"
    "The lighthouse on Corran Point had been dark for eleven years when Mira Ellison arrived with a "
    "suitcase, a box of tools, and a letter from the harbour trust that named her its new keeper. "
    "The village below the cliff was small: a bakery, a chandlery, two pubs that did not speak to each "
    "other, and a school with nineteen pupils. Nobody came to meet the bus. She carried the suitcase up "
    "the cliff path herself, stopping twice to watch the grey water fold itself against the rocks.\n\n"
    "The door of the keeper's cottage was swollen with damp and had to be shouldered open. Inside, "
    "the kitchen smelled of salt and old paraffin. A calendar from 2013 still hung beside the stove, "
    "turned to March, with a single word written on the fourteenth in blue ink: \"Storm.\" Mira took it "
    "down, looked at it for a long moment, and put it in a drawer.\n\n"
    "That evening she climbed the one hundred and twelve steps of the tower with a torch in her teeth. "
    "The great lens was intact, though filmed with dust and the droppings of some bird that had found a "
    "way in through a cracked pane. The clockwork that once turned it had seized. She sat on the gallery "
    "floor, legs dangling over the drop, and made a list in her notebook: glass, oil, gears, the cracked "
    "pane, the door. At the bottom she wrote, after some thought, \"Find out what happened on the "
    "fourteenth.\"\n\n"
    "In the morning"
)

PROMPTS = [
    # plain continuations
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are red, blue and",
    "Photosynthesis is the process by which green plants use sunlight to",
    "1, 2, 3, 5, 8, 13, 21,",
    "Dear Mr. Patel,\n\nThank you for your letter of 12 May regarding the delayed shipment. "
    "We have looked into the matter and",
    "Ingredients:\n- 200 g flour\n- 2 eggs\n- 300 ml milk\n- a pinch of salt\n\nMethod:\n1.",
    "In 1969, the Apollo 11 mission",
    LONG_PLAIN,
    # chat formatted (ChatML, special tokens parsed)
    CHAT.format("Hi!"),
    CHAT.format("What is the boiling point of water at sea level?"),
    CHAT.format("Write a haiku about autumn leaves."),
    CHAT.format("Translate to French: The cat is sleeping on the warm windowsill."),
    CHAT.format("Explain in two sentences why the sky is blue."),
    CHAT.format("What is 17 times 23? Show your working."),
    CHAT_SYS.format(
        "You are a helpful assistant named SmolLM, trained by Hugging Face",
        "Give me three tips for sleeping better."),
    CHAT.format(
        "Here is a Python function:\n\n"
        "def mean(xs):\n\ttotal = 0\n\tfor x in xs:\n\t\ttotal += x\n\treturn total / len(xs)\n\n"
        "What happens if xs is empty, and how would you fix it? Paths like C:\\temp\\data "
        "should not matter here."),
    CHAT.format(
        "I am planning a week-long trip to Japan in April. I like history, food and walking, "
        "but I do not like crowded places. I will land in Tokyo and fly home from Osaka. "
        "My budget is moderate. Could you suggest a rough day-by-day plan, with one or two "
        "places to visit each day and a note on how to travel between cities?"),
    CHAT.format(
        "Summarize the following passage in one sentence.\n\n"
        "The honeybee colony is a superorganism. A single queen lays up to two thousand eggs a day "
        "during the spring build-up, while tens of thousands of sterile female workers divide the labour "
        "of the hive according to their age: the youngest clean cells and feed larvae, middle-aged bees "
        "build comb, process nectar and guard the entrance, and the oldest forage for nectar, pollen, "
        "water and resin over an area of several square kilometres. Drones, the males, exist only to "
        "mate with queens from other colonies and are expelled before winter. Communication happens "
        "through pheromones and through the famous waggle dance, in which a returning forager encodes "
        "the direction and distance of a food source relative to the sun. When the colony grows too "
        "large, the old queen leaves with about half of the workers in a swarm, and a new queen takes "
        "over the original nest."),
]


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


class Peer:
    def __init__(self, model_path, n_ctx, n_batch):
        L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            sys.exit(f"cannot load {model_path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        if L.llama_vocab_get_add_bos(self.vocab):
            sys.exit("model asks for a BOS token; this script assumes add_bos_token false")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = N_THREADS
        cp.n_threads_batch = N_THREADS
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.embeddings = False
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            sys.exit("cannot create context")
        self.n_batch = n_batch
        self.batch = L.llama_batch_init(n_batch, 0, 1)

    def close(self):
        L.llama_batch_free(self.batch)
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)

    def tokenize(self, text):
        raw = text.encode("utf-8")
        cap = len(raw) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, False, True)
        if n < 0:
            sys.exit("tokenize: buffer too small")
        return list(buf[:n])

    def reset(self):
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def decode(self, ids, pos0, all_logits):
        """Decode ids at positions pos0.. in one llama_decode call.
        Returns float32 logits [len(ids), n_vocab] if all_logits, else [n_vocab] for the last."""
        n = len(ids)
        assert 0 < n <= self.n_batch
        b = self.batch
        b.n_tokens = n
        for i, t in enumerate(ids):
            b.token[i] = t
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if (all_logits or i == n - 1) else 0
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            sys.exit(f"llama_decode failed: {rc}")
        if all_logits:
            p = L.llama_get_logits(self.ctx)
            return np.ctypeslib.as_array(p, shape=(n * self.n_vocab,)).reshape(n, self.n_vocab).copy()
        p = L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()


def top2(logits):
    """Greedy pick (argmax, lowest id on ties) and margin best - second best, in float64."""
    best = int(np.argmax(logits))
    rest = logits.astype(np.float64)
    top = rest[best]
    rest[best] = -np.inf
    return best, float(top - rest.max())


def batch_margins(peer, prompt, gen):
    """Teacher-forced twin of the greedy run: prompt + gen[:-1] as ONE batch; for each step s,
    logit[gen[s]] - max over the other ids (negative where the batch would pick another token)."""
    peer.reset()
    rows = peer.decode(prompt + gen[:-1], 0, True)[len(prompt) - 1:]
    out = []
    for s, row in enumerate(rows):
        other = row.astype(np.float64)
        own = other[gen[s]]
        other[gen[s]] = -np.inf
        out.append(float(own - other.max()))
    return out


def cpu_build():
    """'avx512' where the peer's GGML_NATIVE build uses AVX-512 (the CPU has AVX-512F and DQ), else 'avx2'."""
    with open("/proc/cpuinfo") as f:
        flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    return "avx512" if "avx512f" in flags and "avx512dq" in flags else "avx2"


def build_line():
    b = cpu_build()
    return (f"# Build: GGML_NATIVE on a CPU with {'AVX-512F+DQ' if b == 'avx512' else 'AVX2, no AVX-512'}: "
            f"{16 if b == 'avx512' else 8}-lane float sums (file suffix _{b}).")


def make_greedy(peer, path):
    out = [
        "# slmd golden data: greedy generation from llama.cpp (llama-cpp-python 0.3.36 vendored build, CPU).",
        build_line(),
        "# Model: SmolLM2-135M-Instruct.Q4_1.gguf. Made by tests/golden/make_reference.py; see docs/reference-data.md.",
        "# Tokenization: llama_tokenize(add_special=false, parse_special=true); no BOS (GGUF add_bos_token=false).",
        f"# Run: n_ctx {N_CTX}, one sequence, flash attention off, {N_THREADS} threads, K/V cache F16. The prompt is",
        "# decoded one token per decode call (positions 0..n-1), then each generated token alone likewise.",
        f"# Greedy: next id = argmax of the raw float32 logits (lowest id on ties), no sampler, no penalties;",
        f"# EOS does not stop generation: always {N_GEN} steps.",
        "# Records, one per prompt:",
        "#   # prompt N        N from 0",
        "#   T <text>          prompt text, escaped: backslash -> \\\\, newline -> \\n, tab -> \\t",
        "#   P <ids>           prompt token ids, space separated",
        f"#   G <ids>           the {N_GEN} generated ids",
        f"#   M <margins>       for each step, logit[best] - logit[second best] (%.4f), computed in float64",
        "#                     from the float32 logits; a small margin marks a step where a tiny numeric",
        "#                     difference may legitimately flip the choice.",
        "#   B <margins>       llama.cpp against itself: prompt + the first 63 generated ids evaluated as ONE",
        "#                     batch (teacher forced); per step logit[G id] - max over the other ids (%.4f),",
        "#                     negative where that batch would pick another token. |B - M| is how far",
        "#                     llama.cpp's own logits move when only the batch shape changes.",
    ]
    for k, text in enumerate(PROMPTS):
        ids = peer.tokenize(text)
        peer.reset()
        # One token per llama_decode call, the prompt too: llama.cpp's batched path computes
        # attention with other kernels (tinyBLAS) than its one-token path, and on this model the
        # two disagree by up to ~0.4 in the logits; slmd's arithmetic does not depend on the batch,
        # and it follows the one-token path.
        for i, t in enumerate(ids):
            logits = peer.decode([t], i, False)
        gen, margins = [], []
        pos = len(ids)
        for step in range(N_GEN):
            t, m = top2(logits)
            gen.append(t)
            margins.append(m)
            if step + 1 < N_GEN:
                logits = peer.decode([t], pos, False)
                pos += 1
        out.append(f"# prompt {k}")
        out.append("T " + escape(text))
        out.append("P " + " ".join(map(str, ids)))
        out.append("G " + " ".join(map(str, gen)))
        out.append("M " + " ".join(f"{m:.4f}" for m in margins))
        out.append("B " + " ".join(f"{m:.4f}" for m in batch_margins(peer, ids, gen)))
        print(f"prompt {k}: {len(ids)} prompt tokens, min margin {min(margins):.4f}", file=sys.stderr)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def make_ppl(peer, text_path, path):
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    ids = peer.tokenize(text)
    n = len(ids)
    if n > peer.n_batch:
        sys.exit(f"ppl text has {n} tokens, more than the batch {peer.n_batch}")
    peer.reset()
    logits = peer.decode(ids, 0, True).astype(np.float64)  # [n, n_vocab]
    mx = logits.max(axis=1, keepdims=True)
    lse = (mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1)))
    lp = logits[np.arange(n - 1), ids[1:]] - lse[: n - 1]  # log p(t_i | t_<i), i = 1..n-1
    nll = -lp.mean()
    ppl = math.exp(nll)
    out = [
        "# slmd golden data: teacher-forced perplexity from llama.cpp (llama-cpp-python 0.3.36 vendored build, CPU).",
        build_line(),
        "# Model: SmolLM2-135M-Instruct.Q4_1.gguf. Text: tests/golden/ppl_text.txt (UTF-8, read as is).",
        "# Made by tests/golden/make_reference.py; see docs/reference-data.md.",
        "# Tokenization: llama_tokenize(add_special=false, parse_special=true); no BOS.",
        f"# Evaluation: all N tokens in ONE llama_decode call (n_batch = n_ubatch = {peer.n_batch} >= N,",
        f"#   n_ctx {N_CTX}, positions 0..N-1), logits requested for every position; flash attention off,",
        f"#   {N_THREADS} threads, K/V cache F16.",
        "# Definition: lp_i = log softmax(logits[i-1])[t_i] for i = 1..N-1, computed in float64 from the",
        "#   float32 logits; NLL = -mean(lp_i); PPL = exp(NLL). Position 0 has no prediction.",
        "#   (This is NOT llama-perplexity's chunked definition; see docs/reference-data.md.)",
        "# Lines:",
        "#   N <number of tokens>",
        "#   T <N token ids>",
        "#   NLL <%.8f>",
        "#   PPL <%.8f>",
        "#   L <N-1 values lp_1 .. lp_{N-1}, %.5f>",
        f"N {n}",
        "T " + " ".join(map(str, ids)),
        f"NLL {nll:.8f}",
        f"PPL {ppl:.8f}",
        "L " + " ".join(f"{v:.5f}" for v in lp),
    ]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"ppl: {n} tokens, NLL {nll:.6f}, PPL {ppl:.6f}", file=sys.stderr)


def self_check(peer, greedy_path):
    """llama.cpp against itself: evaluate each prompt plus its 63 first reference tokens as ONE
    batch (teacher forced) and apply tests/test_model.c's criterion to the batch's argmaxes.
    Shows how far llama.cpp's logits move when only the batch shape changes."""
    recs, cur = [], {}
    with open(greedy_path) as f:
        for line in f:
            if line[:2] in ("P ", "G ", "M "):
                cur[line[0]] = line.split()[1:]
                if line[0] == "M":
                    recs.append(cur)
                    cur = {}
    identical, not_tie, worst = 0, 0, 0.0
    for k, r in enumerate(recs):
        prompt, gen, margins = list(map(int, r["P"])), list(map(int, r["G"])), list(map(float, r["M"]))
        peer.reset()
        rows = peer.decode(prompt + gen[:-1], 0, True)[len(prompt) - 1:]
        first, drift = None, 0.0
        for s, row in enumerate(rows):
            best, _ = top2(row)
            other = row.astype(np.float64)
            own = other[gen[s]]
            other[gen[s]] = -np.inf
            drift = max(drift, abs((own - other.max()) - margins[s]))
            if best != gen[s] and first is None:
                first = s
        worst = max(worst, drift)
        if first is None:
            identical += 1
            verdict = "identical"
        else:
            verdict = f"first divergence at step {first}, reference margin {margins[first]:.4f}"
            if margins[first] >= 0.1:
                not_tie += 1
                verdict += " (NOT a near tie)"
        print(f"prompt {k}: {verdict}; largest margin change {drift:.4f}")
    print(f"self-check: {identical} of {len(recs)} prompts identical; {not_tie} first divergences with "
          f"margin >= 0.1; largest margin change {worst:.4f}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out-dir", default=here)
    ap.add_argument("--ppl-text", default=os.path.join(here, "ppl_text.txt"))
    ap.add_argument("--self-check", action="store_true",
                    help="write nothing; compare the committed greedy file with one batched teacher-forced pass")
    args = ap.parse_args()

    peer = Peer(args.model, N_CTX, N_CTX)
    try:
        if args.self_check:
            self_check(peer, os.path.join(args.out_dir, f"smollm2_greedy_{cpu_build()}.txt"))
            return
        make_greedy(peer, os.path.join(args.out_dir, f"smollm2_greedy_{cpu_build()}.txt"))
        make_ppl(peer, args.ppl_text, os.path.join(args.out_dir, f"smollm2_ppl_{cpu_build()}.txt"))
    finally:
        peer.close()


if __name__ == "__main__":
    main()
