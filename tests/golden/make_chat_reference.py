#!/usr/bin/env python3
"""Writes tests/golden/chat_reference.txt: chat renderings and template detections from
llama.cpp's built-in templates (llama_chat_apply_template), the oracle of tests/test_chat.c.

Run:  PYTHONPATH=/root/.cache/slmd/peer/python python3 tests/golden/make_chat_reference.py \
          [--model-dir ~/.cache/slmd/models] > tests/golden/chat_reference.txt

File format, one record per line, fields separated by one space; text fields are escaped
(\\\\ \\n \\r \\t and \\xHH for other bytes below 0x20 or 0x7f; UTF-8 passes through):
  case NAME                      starts a rendering case
  fmt FORMAT                     chatml | llama3 | gemma | phi3 | mistral
  gen 0|1                        add_generation_prompt
  msg ROLE TEXT                  one message (TEXT may be empty)
  expect TEXT                    llama.cpp's output
  end
  detect FORMAT|unknown TEXT     the format llama.cpp picks for template TEXT
"""
import argparse
import ctypes
import os
import sys

import llama_cpp

# our name -> llama.cpp's built-in template name
FORMATS = {"chatml": "chatml", "llama3": "llama3", "gemma": "gemma", "phi3": "phi3", "mistral": "mistral-v3"}


def esc(b: bytes) -> str:
    out = bytearray()
    for c in b:
        if c == 0x5C:
            out += b"\\\\"
        elif c == 0x0A:
            out += b"\\n"
        elif c == 0x0D:
            out += b"\\r"
        elif c == 0x09:
            out += b"\\t"
        elif c < 0x20 or c == 0x7F:
            out += b"\\x%02x" % c
        else:
            out.append(c)
    return out.decode("utf-8")


def apply(tmpl: bytes, msgs, gen: bool) -> bytes | None:
    arr = (llama_cpp.llama_chat_message * max(len(msgs), 1))()
    keep = []
    for i, (role, content) in enumerate(msgs):
        r, c = role.encode(), content.encode()
        keep += [r, c]
        arr[i].role = r
        arr[i].content = c
    cap = 1 << 16
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_chat_apply_template(tmpl, arr, len(msgs), gen, buf, cap)
    if n < 0:
        return None
    assert n < cap
    return buf.raw[:n]


CONVERSATIONS = [
    ("user_only", [("user", "Hello!")]),
    ("system_user", [("system", "You are a helpful assistant."), ("user", "What is 2+2?")]),
    ("multi_turn", [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello! How can I help?"),
                    ("user", "Tell me a joke."), ("assistant", "Why did the chicken cross the road?"),
                    ("user", "Why?")]),
    ("empty_user", [("user", "")]),
    ("empty_system", [("system", ""), ("user", "x")]),
    ("whitespace", [("system", "  padded system \n"), ("user", "\t  spaced user  \n\n"),
                    ("assistant", "  spaced answer  "), ("user", " last ")]),
    ("unicode", [("system", "Réponds en français. 日本語も OK."), ("user", "héllo 世界 🙂 — ça va?")]),
    ("two_systems", [("system", "First rule."), ("system", " Second rule. "), ("user", "Go")]),
    ("assistant_first", [("system", "sys"), ("assistant", "I start."), ("user", "then me")]),
    ("ends_with_assistant", [("user", "Q"), ("assistant", "A")]),
    ("newlines_inside", [("user", "line one\nline two\n\nline four"), ("assistant", "ok\n")]),
    ("no_messages", []),
]

# Template texts -> expected detection. The real ones are read from the model files.
SNIPPETS = [
    ("llama3-8b-instruct",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
     "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
     "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
     "<|end_header_id|>\n\n' }}{% endif %}"),
    ("phi3-mini",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
     "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
     "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + "
     "message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
     "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    ("mistral-7b-v0.3",
     "{%- if messages[0][\"role\"] == \"system\" %}{%- set system_message = messages[0][\"content\"] %}"
     "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}"
     "{{- bos_token }}{%- for message in loop_messages %}{%- if message[\"role\"] == \"user\" %}"
     "{%- if tools is not none and (message == user_messages[-1]) %}{{- \"[AVAILABLE_TOOLS] [\" }}"
     "{%- endif %}{%- if loop.last and system_message is defined %}"
     "{{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}{%- else %}"
     "{{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}{%- endif %}"
     "{%- elif message[\"role\"] == \"assistant\" %}{{- \" \" + message[\"content\"]|trim + eos_token}}"
     "{%- endif %}{%- endfor %}"),
    ("gemma3-it",
     "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = "
     "messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}"
     "{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}"
     "{%- for message in loop_messages -%}{%- if (message['role'] == 'assistant') -%}"
     "{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
     "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
     "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
     "{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}"),
    ("chatml-plain",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
     "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    ("mistral-v7", "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
     "[SYSTEM_PROMPT]{{ m['content'] }}[/SYSTEM_PROMPT]{% else %}[INST]{{ m['content'] }}[/INST]{% endif %}{% endfor %}"),
    ("mistral-v1", "{{ bos_token }}{% for m in messages %}{{ ' [INST] ' + system_message + m['content'] }}{% endfor %}"),
    ("mistral-v3-tekken", "{% for m in messages %}{{ \"[INST]\" + m['content'] + \"[/INST]\" }}[AVAILABLE_TOOLS]{% endfor %}"),
    ("llama2", "{% for m in messages %}{{ bos_token + '[INST] <<SYS>>\n' + m['content'] + ' [/INST]' }}{% endfor %}"),
    ("phi4", "{% for m in messages %}{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + '<|im_end|>'}}{% endfor %}"),
    ("smolvlm", "<|im_start|>{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<end_of_utterance>{% endfor %}"),
    ("zephyr", "{% for m in messages %}{{ '<|user|>\n' + m['content'] + '<|endoftext|>' }}{% endfor %}"),
    ("falcon3", "{% for m in messages %}<|user|>{{ m['content'] }}</s><|assistant|>{% endfor %}"),
    ("llama4", "{% for m in messages %}<|header_start|>{{ m['role'] }}<|header_end|>{% endfor %}"),
    ("vicuna-with-llama3-markers", "USER: {{ x }} ASSISTANT: <|start_header_id|><|end_header_id|>"),
    ("gemma-before-llama3", "<start_of_turn><|start_header_id|><|end_header_id|>"),
    ("phi3-before-gemma", "<|assistant|><|end|><start_of_turn>"),
    ("chatml-before-all", "<|im_start|><|assistant|><|end|>[INST]<start_of_turn>"),
    ("llama3-one-marker", "<|start_header_id|> only"),
    ("plain-text", "hello world"),
    ("empty", ""),
    ("name:chatml", "chatml"),
    ("name:llama3", "llama3"),
    ("name:gemma", "gemma"),
    ("name:phi3", "phi3"),
    ("name:mistral-v3", "mistral-v3"),
    ("name:mistral-v7", "mistral-v7"),
    ("name:phi4", "phi4"),
    ("name:mistral-prefix", "mistral something"),
]

PROBE = [("system", " sys "), ("user", " u1 "), ("assistant", " a1 "), ("user", " u2 ")]


def detect(text: bytes) -> str:
    got = apply(text, PROBE, True)
    if got is None:
        return "unknown"
    for ours, theirs in FORMATS.items():
        if apply(theirs.encode(), PROBE, True) == got:
            return ours
    return "unknown"


def model_template(path: str) -> bytes | None:
    from gguf import GGUFReader
    if not os.path.exists(path):
        return None
    r = GGUFReader(path)
    f = r.fields.get("tokenizer.chat_template")
    return bytes(f.parts[f.data[0]]) if f else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/slmd/models"))
    args = ap.parse_args()
    w = sys.stdout.write
    w("# chat template reference from llama.cpp %s (llama_chat_apply_template); "
      "regenerate with tests/golden/make_chat_reference.py\n" % getattr(llama_cpp, "__version__", "?"))
    for fmt, theirs in FORMATS.items():
        for name, msgs in CONVERSATIONS:
            for gen in (1, 0):
                out = apply(theirs.encode(), msgs, bool(gen))
                assert out is not None, (fmt, name)
                w("case %s/%s/gen%d\nfmt %s\ngen %d\n" % (fmt, name, gen, fmt, gen))
                for role, content in msgs:
                    w("msg %s %s\n" % (role, esc(content.encode())))
                w("expect %s\nend\n" % esc(out))
    for fname in ("SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"):
        t = model_template(os.path.join(args.model_dir, fname))
        if t is None:
            w("# %s: no tokenizer.chat_template in the file (or no file)\n" % fname)
            continue
        w("# real template of %s\n" % fname)
        w("detect %s %s\n" % (detect(t), esc(t)))
    for name, text in SNIPPETS:
        w("# %s\n" % name)
        w("detect %s %s\n" % (detect(text.encode()), esc(text.encode())))


if __name__ == "__main__":
    main()
