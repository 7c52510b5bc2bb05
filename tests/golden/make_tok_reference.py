#!/usr/bin/env python3
"""Tokenizer reference data for slmd's tests/test_tokenizer.c, from llama.cpp (the reference).

Run with the Python bindings of the peer build (bench/peer/build-llama-cpp.sh):

    PYTHONPATH=$(sed -n 's/^python=//p' ~/.cache/slmd/peer/READY) \
        python3 tests/golden/make_tok_reference.py [--model-dir ~/.cache/slmd/models] [--out-dir tests/golden]

It tokenizes the corpus of make_tok_corpus.py with llama_tokenize() (vocab-only model load) and writes:
  tok_smollm2.txt            SmolLM2-135M-Instruct (gpt2 BPE, pre-tokenizer "smollm")
  tok_gemma3.txt             Gemma 3 270M (SentencePiece-style BPE with byte fallback)
  tok_smollm2_llama3pre.txt  SmolLM2's vocabulary with tokenizer.ggml.pre = "llama-bpe"
  tok_smollm2_qwen2pre.txt   SmolLM2's vocabulary with tokenizer.ggml.pre = "qwen2"
  tok_smollm2_gpt2pre.txt    SmolLM2's vocabulary with tokenizer.ggml.pre = "gpt-2" (every other string)
  tok_smollm2_defaultpre.txt SmolLM2's vocabulary with tokenizer.ggml.pre = "default" (every other string)
The last four come from temporary vocab-only copies of SmolLM2's GGUF (all metadata, no tensors,
pre changed) that are deleted afterwards; the test builds the same copies itself.

File format: lines starting with '#' are headers: "#eog\t<ids>" lists every id llama.cpp's
llama_vocab_is_eog() accepts, "#n_vocab\t<n>". Every other line is one corpus string:
    <hex of the input bytes>\t<add_special 0/1>\t<parse_special 0/1>\t<space-separated ids>
"""

import argparse
import ctypes
import os
import sys
import tempfile

import gguf

import llama_cpp as L

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tok_corpus import corpus  # noqa: E402


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


def load_vocab(path):
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(path.encode(), params)
    if not model:
        sys.exit(f"make_tok_reference: cannot load {path}")
    return model, L.llama_model_get_vocab(model)


def tokenize(vocab, data, add_special, parse_special):
    cap = len(data) * 2 + 8
    buf = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        raise RuntimeError(f"llama_tokenize failed ({n}) on {data!r}")
    return list(buf[:n])


def write_reference(model_path, out_path, items):
    model, vocab = load_vocab(model_path)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if L.llama_vocab_is_eog(vocab, i)]
    with open(out_path, "w", encoding="ascii", newline="\n") as f:
        f.write("#n_vocab\t%d\n" % n_vocab)
        f.write("#eog\t%s\n" % " ".join(map(str, eog)))
        for data, add_special, parse_special in items:
            ids = tokenize(vocab, data, add_special, parse_special)
            f.write("%s\t%d\t%d\t%s\n" % (data.hex(), add_special, parse_special, " ".join(map(str, ids))))
    L.llama_model_free(model)
    print(f"make_tok_reference: {out_path}: {len(items)} strings, {os.path.getsize(out_path)} bytes")


def copy_with_pre(src, dst, pre):
    """A vocab-only copy of src: every metadata key, tokenizer.ggml.pre replaced, no tensors."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = pre if key == "tokenizer.ggml.pre" else field.contents()
        writer.add_key_value(key, value, vtype, sub)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.environ.get("SLM_MODEL_DIR", os.path.expanduser("~/.cache/slmd/models")))
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()

    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    items = corpus()
    smollm = os.path.join(a.model_dir, "SmolLM2-135M-Instruct.Q4_1.gguf")
    gemma = os.path.join(a.model_dir, "gemma-3-270m-q4_k_m.gguf")
    write_reference(smollm, os.path.join(a.out_dir, "tok_smollm2.txt"), items)
    write_reference(gemma, os.path.join(a.out_dir, "tok_gemma3.txt"), items)
    with tempfile.TemporaryDirectory() as tmp:
        for pre, name, step in (("llama-bpe", "tok_smollm2_llama3pre.txt", 1), ("qwen2", "tok_smollm2_qwen2pre.txt", 1),
                                ("gpt-2", "tok_smollm2_gpt2pre.txt", 2), ("default", "tok_smollm2_defaultpre.txt", 2)):
            path = os.path.join(tmp, f"smollm2-{pre}.gguf")
            copy_with_pre(smollm, path, pre)
            write_reference(path, os.path.join(a.out_dir, name), items[::step])
    L.llama_backend_free()


if __name__ == "__main__":
    main()
