#!/usr/bin/env python3
"""tests/fuzz/make_corpus.py - writes the seed corpus of every fuzz target (tests/fuzz/corpus/).

The seeds are small valid inputs, one or a few of each kind the target takes, written from the
layouts of ipc/protocol.h, daemon/engine/gguf.h and the targets' own input formats (their head
comments). Run it again after changing one of those; the files are committed (less than 100 KB
in all). Crash reproducers found by fuzzing are committed next to them by hand (crash-*), and
this script leaves them alone.

    python3 tests/fuzz/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- GGUF (daemon/engine/gguf.h) -------------------------------------------------------------
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
          U64: "<Q", I64: "<q", F64: "<d"}
TYPE_F32, TYPE_F16, TYPE_Q4_0 = 0, 1, 2


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gvalue(t, v):
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gvalue(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, type, data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gstr(key) + struct.pack("<I", t) + gvalue(t, v)
    offset, blobs = 0, []
    for name, dims, t, data in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", t, offset)
        blobs.append((offset, data))
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    data = bytearray(offset)
    for off, blob in blobs:
        data[off:off + len(blob)] = blob
    return out + bytes(data)


def gpt2_byte_chars():
    """GPT-2's byte-level map: byte -> the character that stands for it."""
    self = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars, n = {}, 0
    for b in range(256):
        if b in self:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def tiny_vocab(model="gpt2"):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if model == "gpt2":
        tokens = gpt2_byte_chars()
        merges = ["h e", "l l", "l o", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or", "\u0120wor l", "\u0120worl d"]
        for m in merges:
            tokens.append(m.replace(" ", ""))
        scores = None
    else:   # SentencePiece-style, with byte fallback
        tokens = ["<unk>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581", "\u2581h", "e", "l", "o", "\u2581he", "ll"]
        merges = None
        scores = [0.0] + [0.0] * 256 + [-float(i) for i in range(1, 8)]
    types = [1] * len(tokens) + [3] * len(specials)
    if scores is not None:
        scores += [0.0] * len(specials)
    tokens += specials
    kvs = [("tokenizer.ggml.model", STR, model), ("tokenizer.ggml.tokens", ARR, (STR, tokens)),
           ("tokenizer.ggml.token_type", ARR, (I32, types)),
           ("tokenizer.ggml.bos_token_id", U32, len(tokens) - 3), ("tokenizer.ggml.eos_token_id", U32, len(tokens) - 1),
           ("tokenizer.chat_template", STR, CHATML_TEMPLATE)]
    if merges is not None:
        kvs += [("tokenizer.ggml.merges", ARR, (STR, merges)), ("tokenizer.ggml.pre", STR, "smollm")]
    if scores is not None:
        kvs += [("tokenizer.ggml.scores", ARR, (F32, scores)), ("tokenizer.ggml.add_space_prefix", BOOL, True)]
    return kvs


CHATML_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                   "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                   "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                   "{% endif %}")


def gguf_seeds():
    write("gguf", "empty-v3", gguf([]))
    write("gguf", "empty-v2", gguf([], version=2))
    every = [("general.architecture", STR, "llama"), ("general.alignment", U32, 64),
             ("u8", U8, 200), ("i8", I8, -5), ("u16", U16, 60000), ("i16", I16, -300), ("u32", U32, 1 << 31),
             ("i32", I32, -70000), ("f32", F32, 0.5), ("bool", BOOL, True), ("u64", U64, 1 << 40),
             ("i64", I64, -(1 << 40)), ("f64", F64, 1e300), ("arr.i32", ARR, (I32, [1, -2, 3])),
             ("arr.f32", ARR, (F32, [0.25, -1.5])), ("arr.str", ARR, (STR, ["a", "bc", ""])),
             ("arr.u8", ARR, (U8, [0, 255])), ("arr.bool", ARR, (BOOL, [True, False]))]
    q4_0 = struct.pack("<e", 0.5) + bytes(range(16))   # one block of 32
    tensors = [("token_embd.weight", (4, 2), TYPE_F32, struct.pack("<8f", *range(8))),
               ("blk.0.attn_q.weight", (32, 1), TYPE_Q4_0, q4_0),
               ("output_norm.weight", (4,), TYPE_F16, struct.pack("<4e", 1, 2, 3, 4))]
    write("gguf", "every-type", gguf(every, tensors, alignment=64))
    write("gguf", "vocab-gpt2", gguf(tiny_vocab("gpt2") + [("general.architecture", STR, "llama")]))
    write("gguf", "vocab-llama", gguf(tiny_vocab("llama")))


# ---- tokenizer (fuzz_tokenizer.c: flags, then text or ids) -----------------------------------
def tokenizer_seeds():
    texts = {
        "plain": (0, "Hello world! The capital of France is Paris."),
        "special": (3, "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"),
        "unicode": (1, "h\u00e9llo w\u00f6rld \u65e5\u672c\u8a9e \U0001f389 \u0645\u0631\u062d\u0628\u0627"),
        "numbers": (0, "12345 3.14159 1,000,000 0x1F"),
        "code": (0, "def f(x):\n    return x ** 2  # squared\n\n\tprint(f(3))\r\n"),
        "spaces": (0, "   leading and trailing   \n\n\n"),
    }
    for name, (flags, text) in texts.items():
        write("tokenizer", name, bytes([flags]) + text.encode())
    # \x06 has no token in SmolLM2's vocabulary: the encoder drops it, as llama.cpp does
    write("tokenizer", "byte-without-token", bytes([0]) + b"\x06$\0")
    # U+2581 in the text: a SentencePiece vocabulary (Gemma 3) decodes it as a space
    write("tokenizer", "literal-u2581", bytes([0]) + "\u2581The\u2581cap".encode())
    write("tokenizer", "invalid-utf8", bytes([0]) + b"ab\xff\xfe\xc3(\xe2\x82 \xf0\x9f\x98")
    ids = [1, 2, 9906, 1917, 0, 49151, 28, 100]
    write("tokenizer", "decode-ids", bytes([4 | 8]) + struct.pack("<%di" % len(ids), *ids))
    write("tokenizer", "decode-short", bytes([4 | (3 << 4)]) + struct.pack("<4i", 9906, 1917, 30, 31))


# ---- chat (fuzz_chat.c: flags, template NUL role NUL content ...) ----------------------------
def chat_seeds():
    def chat(flags, template, msgs):
        parts = [template] + [x for m in msgs for x in m]
        return bytes([flags]) + b"\0".join(p.encode() for p in parts)
    convo = [("system", "You are terse."), ("user", "Hi"), ("assistant", "Hello."), ("user", "  What is 2+2?  ")]
    write("chat", "smollm2-template", chat(8, CHATML_TEMPLATE, convo[1:]))
    write("chat", "chatml", chat(1 | 8, "chatml", convo))
    write("chat", "llama3", chat(2 | 8, "{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}", convo))
    write("chat", "gemma", chat(3 | 8, "<start_of_turn>user", convo))
    write("chat", "phi3", chat(4, "<|assistant|> <|end|>", convo))
    write("chat", "mistral", chat(5, "mistral-v3", convo))
    write("chat", "short-buffer", chat(1 | (7 << 4), "chatml", convo[:2]))
    write("chat", "bad-role", chat(1, "chatml", [("tool", "x")]))


# ---- config (fuzz_config.c: a whole file) ----------------------------------------------------
def config_seeds():
    with open(os.path.join(HERE, "..", "..", "packaging", "slmd.conf"), "rb") as f:
        write("config", "packaging-slmd.conf", f.read())
    write("config", "every-key", b"""# every key once
model = /var/lib/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf
socket = /run/slmd/slmd.sock
socket-mode = 0660
socket-group = root
allow-uids = root, 0,1000
allow-gids = root
threads = 4
ctx-size = 4096
force-ctx = false
max-batch-tokens = 1024
max-seqs = 32
kv-cache-mem = 2G
block-size = 16
overlap-steps = false
pass-spin-us = 0
backend = cpu
gpu-memory-fraction = 0.85
shutdown-timeout = 30
max-clients = 128
max-clients-per-uid = 8
handshake-timeout = 5
client-max-requests = 64
client-max-prompt-tokens = 65536
max-priority = 100
spin-us = 50
log-level = debug
""")
    write("config", "quoted", b'model = "/models/a \\"b\\" #1.gguf"   # a comment\n'
                              b'socket = " /tmp/with spaces.sock "\n\tthreads\t=\t2\t# tabs\r\n')
    write("config", "bad-line", b"threads = 2\nthis is not a key value line\n")


# ---- SQE (fuzz_sqe.c: struct slm_sqe, then the arena) ----------------------------------------
OP_COMPLETE, OP_CHAT, OP_COMPLETE_IDS, OP_TOKENIZE, OP_DETOKENIZE, OP_CANCEL, OP_INFO, OP_STATS = range(1, 9)
IGNORE_EOS, PROMPT_LOGPROBS, ADD_GENERATION_PROMPT = 1, 2, 4


def sqe(op, flags=0, payload=(0, 0), n_items=0, stop=(0, 0, 0), stop_ids=(0, 0), max_tokens=16, priority=0,
        temperature=0.8, top_p=0.95, min_p=0.05, top_k=40, repeat_penalty=1.0, repeat_last_n=64,
        presence=0.0, frequency=0.0, seed=42, logprobs=0, target=0, user_data=7):
    b = struct.pack("<IHHQQ", 1, op, flags, user_data, target)
    b += struct.pack("<IIIIIIII", payload[0], payload[1], n_items, stop[0], stop[1], stop[2], stop_ids[0], stop_ids[1])
    b += struct.pack("<Iifffififf", max_tokens, priority, temperature, top_p, min_p, top_k, repeat_penalty,
                     repeat_last_n, presence, frequency)
    b += struct.pack("<QI", seed, logprobs) + b"\0" * 20
    assert len(b) == 128, len(b)
    return b


def strings(items):
    return b"".join(struct.pack("<I", len(s)) + s for s in (x.encode() for x in items))


def arena(*parts):
    """Parts at 8-aligned offsets; returns (bytes, [(offset, length)])."""
    out, where = b"", []
    for p in parts:
        out += b"\0" * (-len(out) % 8)
        where.append((len(out), len(p)))
        out += p
    return out, where


def sqe_seeds():
    text = b"The capital of France is"
    stops = strings(["\n", "."])
    ids = struct.pack("<i", 2)
    a, w = arena(text, stops, ids)
    write("sqe", "complete-stops", sqe(OP_COMPLETE, payload=w[0], stop=(w[1][0], w[1][1], 2), stop_ids=(w[2][0], 1),
                                       logprobs=2) + a)
    msgs = strings(["system", "You are terse.", "user", "Hi"])
    a, w = arena(msgs)
    write("sqe", "chat", sqe(OP_CHAT, ADD_GENERATION_PROMPT, payload=w[0], n_items=2, temperature=0.0) + a)
    a, w = arena(strings(["user", "What is 2+2?"]))
    write("sqe", "chat-default-system", sqe(OP_CHAT, ADD_GENERATION_PROMPT | IGNORE_EOS, payload=w[0], n_items=1,
                                            repeat_penalty=1.1, presence=0.5, frequency=0.5) + a)
    prompt = struct.pack("<5i", 504, 3575, 282, 4649, 314)
    a, w = arena(prompt)
    write("sqe", "complete-ids", sqe(OP_COMPLETE_IDS, PROMPT_LOGPROBS, payload=w[0], n_items=5, priority=5) + a)
    a, w = arena(b"Hello world")
    write("sqe", "tokenize", sqe(OP_TOKENIZE, payload=w[0]) + a)
    a, w = arena(struct.pack("<4i", 19556, 905, 17, 2))
    write("sqe", "detokenize", sqe(OP_DETOKENIZE, payload=w[0], n_items=4) + a)
    write("sqe", "cancel", sqe(OP_CANCEL, target=7))
    write("sqe", "info", sqe(OP_INFO))
    write("sqe", "stats", sqe(OP_STATS))


# ---- handshake (fuzz_handshake.c: flags, then a packet or a header) --------------------------
MAGIC, VERSION, HELLO, WELCOME = 0x314D4C53, 1, 1, 2


def handshake_seeds():
    hello = struct.pack("<IHHIIII", MAGIC, HELLO, VERSION, 256, 1024, 1 << 20, 0) + b"fuzz-client".ljust(32, b"\0")
    write("handshake", "hello", bytes([0]) + hello)
    write("handshake", "hello-defaults", bytes([0]) + struct.pack("<IHHIIII", MAGIC, HELLO, VERSION, 0, 0, 0, 0)
          + b"\0" * 32)
    write("handshake", "hello-version-2", bytes([0]) + struct.pack("<IHHIIII", MAGIC, HELLO, 2, 0, 0, 0, 0) + b"\0" * 32)
    welcome = struct.pack("<IHHiIQ", MAGIC, WELCOME, VERSION, 0, 77824, 1) + b"\0" * 160
    write("handshake", "welcome-fd", bytes([1 | (1 << 2)]) + welcome)
    refuse = struct.pack("<IHHiIQ", MAGIC, WELCOME, VERSION, -13, 0, 0) + b"not allowed: uid 1000".ljust(160, b"\0")
    write("handshake", "welcome-refused", bytes([1]) + refuse)
    # the header of a daemon's layout: 16 SQ and 16 CQ entries, a 64 KiB arena
    header = struct.pack("<9I", MAGIC, VERSION, 77824, 4096, 16, 8192, 16, 12288, 65536)
    write("handshake", "shm-header", bytes([2]) + struct.pack("<I", 77824) + header)


if __name__ == "__main__":
    gguf_seeds()
    tokenizer_seeds()
    chat_seeds()
    config_seeds()
    sqe_seeds()
    handshake_seeds()
