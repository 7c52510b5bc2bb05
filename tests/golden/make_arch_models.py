#!/usr/bin/env python3
"""
tests/golden/make_arch_models.py - small random-weight GGUF models of the architectures slmd
reads, with each architecture's real metadata keys and tensor names (issue 19: how to test an
architecture without its weights).

    python3 tests/golden/make_arch_models.py ARCH OUT.gguf [--tokenizer SMOLLM2.gguf]

ARCH: qwen3 (QK-norm, no QKV bias, NEOX RoPE); llama3-rope-freqs (llama with Llama 3.1+'s
rope_freqs factors and rope.scaling.type "llama3", which slmd refuses until it computes them). The tokenizer (vocabulary, merges, special ids)
is copied from the default model (SmolLM2-135M-Instruct), so llama.cpp loads the file; the
tests feed token ids, not text. Weights: F32 norms (1 + 0.1 N(0, 1)), F16 matrices (N(0, 0.05)),
token_embd N(0, 1), an untied output head N(0, 0.5) for qwen3 (tied otherwise). Deterministic: numpy's PCG64 with a fixed seed per
architecture, so the same file comes out on every machine (its sha256 is printed) and the
committed reference logits (tests/golden/arch/ARCH.txt, make_arch_reference.py) stay valid.
Needs the PyPI packages gguf and numpy.
"""
import hashlib
import os
import sys

import numpy as np
import gguf

SHAPES = {
    # dim, ffn, layers, heads, kv heads, head_dim, context, rope base, eps, seed
    "qwen3": dict(dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=64, ctx=4096,
                  rope_base=1000000.0, eps=1e-6, seed=3, untied=True),
    "llama3-rope-freqs": dict(gguf_arch="llama", dim=128, ffn=256, n_layer=2, n_head=4, n_head_kv=2, head_dim=32,
                              ctx=8192, rope_base=500000.0, eps=1e-5, seed=5, rope_freqs=True),
}


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
    s = SHAPES[arch]
    rng = np.random.Generator(np.random.PCG64(s["seed"]))
    garch = s.get("gguf_arch", arch)
    w = gguf.GGUFWriter(out, garch)
    w.add_name("slmd synthetic " + arch)
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
    if s.get("rope_freqs"):
        w.add_string(garch + ".rope.scaling.type", "llama3")
        w.add_float32(garch + ".rope.scaling.factor", 8.0)
        w.add_tensor("rope_freqs.weight", np.linspace(1.0, 8.0, hd // 2).astype(np.float32))
    for l in range(s["n_layer"]):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", norm(d))
        w.add_tensor(p + "attn_q.weight", mat(q, d))
        w.add_tensor(p + "attn_k.weight", mat(kv, d))
        w.add_tensor(p + "attn_v.weight", mat(kv, d))
        if garch == "qwen3":
            w.add_tensor(p + "attn_q_norm.weight", norm(hd))
            w.add_tensor(p + "attn_k_norm.weight", norm(hd))
        w.add_tensor(p + "attn_output.weight", mat(d, q))
        w.add_tensor(p + "ffn_norm.weight", norm(d))
        w.add_tensor(p + "ffn_gate.weight", mat(s["ffn"], d))
        w.add_tensor(p + "ffn_up.weight", mat(s["ffn"], d))
        w.add_tensor(p + "ffn_down.weight", mat(d, s["ffn"]))
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
