#!/usr/bin/env python3
"""
tests/golden/make_arch_models.py - small random-weight GGUF models of the architectures slmd
reads, with each architecture's real metadata keys and tensor names (issue 19: how to test an
architecture without its weights).

    python3 tests/golden/make_arch_models.py ARCH OUT.gguf [--tokenizer SMOLLM2.gguf]

ARCH (the name of the model and of its reference; some share a file):
  qwen2          Qwen2 / Qwen2.5's: biases on q, k and v (N(0, 0.5)), NEOX RoPE; untied output head
                 (as Qwen2.5-7B and its DeepSeek-R1 distillation)
  qwen3          QK-norm, no QKV bias, NEOX RoPE; untied output head
  llama3         Llama 3.2's metadata: RoPE base 500000 and a rope_freqs tensor of the factors
                 Llama 3.2's converter computes (factor 32, low_freq_factor 1, high_freq_factor 4,
                 original context 8192); tied output head, as Llama 3.2 1B / 3B
  llama3-untied  the same with an output head of its own (Llama 3.1 8B); both references are of
                 positions 960 to 1023 (prefix, below)
  phi3           Phi-3's: fused attn_qkv and ffn_up (the gate's rows, then up's), head dim 96, NEOX
                 RoPE, LongRoPE (rope_factors_long / _short, original context 4096 of 131072, the
                 attention factor sqrt(1 + ln 32 / ln 4096)); untied output head
  phi3-long      the phi3 file, its reference made with a context above the original one (8192):
                 the long factors
  gemma3         Gemma 3's: QK-norm, post-norms, GeGLU, embedding times sqrt(dim); 6 layers, the
                 first 5 local with a sliding window of 16 (shorter than the 64 positions checked),
                 the 6th global; tied output head
  gemma3-cap     gemma3 with final_logit_softcapping 50 (the logits, 40-140 here before it,
                 through 50 tanh(x / 50)) and attention.sliding_window_pattern 3 from the file
                 (layers 2 and 5 global)
  gemma3-swa-array  gemma3 with the pattern as one bool per layer (layers 1 and 5 global)
  llama-yarn     llama with rope.scaling.type "yarn", which slmd refuses (no reference)
  qwen2-hd48     qwen2 with heads of 48 dimensions, which the CPU backend runs and the CUDA
                 backend's attention kernels refuse when the model is bound (no reference)
  gemma3-badcap, gemma3-badpattern, gemma3-alllocal  refused by slmd (no reference): a negative
                 soft-cap, a pattern array of 5 bools for 6 layers, a pattern (0) that makes every
                 layer local
The tokenizer (vocabulary, merges, special ids) is copied from the default model
(SmolLM2-135M-Instruct), so llama.cpp loads the file; the tests feed token ids, not text.
Weights: F32 norms (1 + 0.1 N(0, 1)), F16 matrices (N(0, 0.05)), token_embd N(0, 1), an untied
output head N(0, 0.5). Deterministic: numpy's PCG64 with a fixed seed per architecture, so the
same file comes out on every machine (its sha256 is printed) and the committed reference logits
(tests/golden/arch/ARCH.txt, make_arch_reference.py) stay valid. An entry's n_ctx is the context
its reference is made (and checked) with (default 256), its prefix the number of positions fed
before the recorded ones. Needs the PyPI packages gguf and numpy.
"""
import hashlib
import math
import os
import sys

import numpy as np
import gguf

SHAPES = {
    # dim, ffn, layers, heads, kv heads, head_dim, context, rope base, eps, seed
    "qwen2": dict(dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=32, ctx=32768,
                  rope_base=1000000.0, eps=1e-6, seed=2, untied=True, qkv_bias=True),
    "qwen3": dict(dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=64, ctx=4096,
                  rope_base=1000000.0, eps=1e-6, seed=3, untied=True),
    "llama3": dict(gguf_arch="llama", dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=64, ctx=131072,
                   rope_base=500000.0, eps=1e-5, seed=5, rope_freqs=True, n_ctx=1024, prefix=960),
    "llama3-untied": dict(gguf_arch="llama", dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=64,
                          ctx=131072, rope_base=500000.0, eps=1e-5, seed=6, rope_freqs=True, untied=True, n_ctx=1024,
                          prefix=960),
    "phi3": dict(dim=192, ffn=256, n_layer=2, n_head=2, n_head_kv=2, head_dim=96, ctx=131072, rope_base=10000.0,
                 eps=1e-5, seed=8, untied=True, longrope=4096),
    "phi3-long": dict(same="phi3", n_ctx=8192),
    "gemma3": dict(dim=128, ffn=256, n_layer=6, n_head=4, n_head_kv=2, head_dim=64, ctx=32768, rope_base=1000000.0,
                   eps=1e-6, seed=9, window=16),
    "gemma3-cap": dict(same="gemma3", seed=12, softcap=50.0, swa_pattern=3),
    "gemma3-swa-array": dict(same="gemma3", seed=13, swa_pattern=[True, False, True, True, True, False]),
    "gemma3-badcap": dict(same="gemma3", seed=14, softcap=-1.0),
    "gemma3-badpattern": dict(same="gemma3", seed=15, swa_pattern=[True] * 5),
    "gemma3-alllocal": dict(same="gemma3", seed=16, swa_pattern=0),
    "qwen2-hd48": dict(same="qwen2", seed=17, head_dim=48),
    "llama-yarn": dict(gguf_arch="llama", dim=128, ffn=256, n_layer=1, n_head=4, n_head_kv=2, head_dim=32, ctx=8192,
                       rope_base=500000.0, eps=1e-5, seed=10, yarn=True),
}


def llama3_rope_factors(base, dim, factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, old_context_len=8192):
    """rope_freqs as llama.cpp's converter computes them from Llama 3.x's rope_scaling (conversion/llama.py)."""
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            out.append(1.0)
        elif wavelen > low_freq_wavelen:
            out.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def shape(arch):
    """SHAPES[arch], an entry that names another (`same`) resolved to it, plus its own keys."""
    s = dict(SHAPES[arch])
    if "same" in s:
        base = dict(SHAPES[s.pop("same")])
        base.update(s)
        s = base
    return s


def copy_tokenizer(w, path):
    r = gguf.GGUFReader(path)
    f = r.fields

    def arr_str(k):
        x = f[k]
        return [bytes(x.parts[i]).decode("utf-8") for i in x.data]

    def scalar(k):
        x = f[k]
        return x.parts[x.data[0]][0]

    w.add_tokenizer_model(bytes(f["tokenizer.ggml.model"].parts[f["tokenizer.ggml.model"].data[0]]).decode())
    w.add_tokenizer_pre(bytes(f["tokenizer.ggml.pre"].parts[f["tokenizer.ggml.pre"].data[0]]).decode())
    w.add_token_list(arr_str("tokenizer.ggml.tokens"))
    tt = f["tokenizer.ggml.token_type"]
    w.add_token_types([int(tt.parts[i][0]) for i in tt.data])
    w.add_token_merges(arr_str("tokenizer.ggml.merges"))
    w.add_bos_token_id(int(scalar("tokenizer.ggml.bos_token_id")))
    w.add_eos_token_id(int(scalar("tokenizer.ggml.eos_token_id")))
    w.add_add_bos_token(False)
    return len(f["tokenizer.ggml.tokens"].data)


def write(arch, out, tok_path):
    s = shape(arch)
    name = SHAPES[arch].get("same", arch)   # phi3-long is the phi3 file
    rng = np.random.Generator(np.random.PCG64(s["seed"]))
    garch = s.get("gguf_arch", name)
    w = gguf.GGUFWriter(out, garch)
    # (not "phi3" in the name: llama.cpp then looks for Phi-3's own tokens, which this vocabulary lacks)
    w.add_name("slmd synthetic " + ("phi 3" if name == "phi3" else name))
    n_vocab = copy_tokenizer(w, tok_path)
    w.add_block_count(s["n_layer"])
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["dim"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_key_length(s["head_dim"])
    w.add_value_length(s["head_dim"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    def mat(rows, cols):   # numpy shape (rows, cols): GGUF ne = [cols, rows]
        return (0.05 * rng.standard_normal((rows, cols))).astype(np.float16)

    d, hd = s["dim"], s["head_dim"]
    q, kv = s["n_head"] * hd, s["n_head_kv"] * hd
    w.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, d)).astype(np.float16))
    w.add_tensor("output_norm.weight", norm(d))
    if s.get("untied"):   # an output head of its own: logits that are not dominated by the input token's own
        w.add_tensor("output.weight", (0.5 * rng.standard_normal((n_vocab, d))).astype(np.float16))
    if s.get("rope_freqs"):   # Llama 3.1+: no scaling type in the file, only the tensor
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(s["rope_base"], hd))
    if s.get("yarn"):
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
    if s.get("longrope"):   # as the converter of Phi-3 128k (conversion/phi.py) writes it
        orig = s["longrope"]
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(s["ctx"] / orig) / math.log(orig)))
        w.add_sliding_window(2047)   # in Phi-3's files; llama.cpp ignores it for phi3, as slmd does
        half = hd // 2
        w.add_tensor("rope_factors_long.weight", np.geomspace(1.0, 40.0, half).astype(np.float32))
        w.add_tensor("rope_factors_short.weight", (1.0 + 0.5 * rng.random(half)).astype(np.float32))
    if s.get("window"):   # gemma3: the local layers' window (the pattern is llama.cpp's default, 6)
        w.add_sliding_window(s["window"])
    if "swa_pattern" in s:   # a period (uint32) or one bool per layer
        w.add_sliding_window_pattern(s["swa_pattern"])
    if "softcap" in s:
        w.add_final_logit_softcapping(s["softcap"])
    for l in range(s["n_layer"]):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", norm(d))
        if garch == "phi3":
            w.add_tensor(p + "attn_qkv.weight", mat(q + 2 * kv, d))
        else:
            w.add_tensor(p + "attn_q.weight", mat(q, d))
            w.add_tensor(p + "attn_k.weight", mat(kv, d))
            w.add_tensor(p + "attn_v.weight", mat(kv, d))
        if s.get("qkv_bias"):   # large enough to move the logits visibly (a missing bias fails)
            for t, n in (("q", q), ("k", kv), ("v", kv)):
                w.add_tensor(p + "attn_%s.bias" % t, (0.5 * rng.standard_normal(n)).astype(np.float32))
        if garch in ("qwen3", "gemma3"):
            w.add_tensor(p + "attn_q_norm.weight", norm(hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        w.add_tensor(p + "attn_output.weight", mat(d, q))
        if garch == "gemma3":
            w.add_tensor(p + "post_attention_norm.weight", norm(d))
        w.add_tensor(p + "ffn_norm.weight", norm(d))
        if garch == "phi3":
            w.add_tensor(p + "ffn_up.weight", mat(2 * s["ffn"], d))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(s["ffn"], d))
            w.add_tensor(p + "ffn_up.weight", mat(s["ffn"], d))
        w.add_tensor(p + "ffn_down.weight", mat(d, s["ffn"]))
        if garch == "gemma3":
            w.add_tensor(p + "post_ffw_norm.weight", norm(d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    h = hashlib.sha256(open(out, "rb").read()).hexdigest()
    print("%s: %s, %d bytes, sha256 %s" % (arch, out, os.path.getsize(out), h))


def main():
    args = sys.argv[1:]
    tok = os.path.join(os.environ.get("SLM_MODEL_DIR", os.path.expanduser("~/.cache/slmd/models")),
                       "SmolLM2-135M-Instruct.Q4_1.gguf")
    if "--tokenizer" in args:
        i = args.index("--tokenizer")
        tok = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2 or args[0] not in SHAPES:
        sys.stderr.write("usage: make_arch_models.py {%s} OUT.gguf [--tokenizer FILE]\n" % ",".join(SHAPES))
        return 2
    write(args[0], args[1], tok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
