#!/usr/bin/env python3
"""tests/gateway_openai.py - the official `openai` package drives slm-gateway (run by
tests/test_gateway_openai.sh, which starts slmd and the gateway; env GATEWAY_URL, SLM, SLM_SOCKET).

Checks: models; completions and chat, whole and streamed; greedy text equal to `slm generate` /
`slm chat` for the same request, and a seeded sampled one too; usage counts equal slmd's; stop;
seed; logprobs equal `slm generate --logprobs`; errors as the package's typed exceptions; an
aborted stream frees its KV blocks (`slm stats`). Prints one line per check; exit 0 or 1.
"""
import json
import os
import subprocess
import sys
import time

import openai

URL = os.environ["GATEWAY_URL"]
SLM = os.environ["SLM"]
client = openai.OpenAI(base_url=URL + "/v1", api_key="unused")
failed = False


def check(name, cond, detail=""):
    global failed
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + str(detail)))
    failed |= not cond


def slm_json(*args, stdin=None):
    out = subprocess.run([SLM, *args, "--json"], input=stdin, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def stats():
    return slm_json("stats")


model = client.models.list().data[0].id
check("models.list names slmd's model", model == slm_json("info")["model"], model)
prompt = "The capital of France is"

# ---- completions, greedy: equal to slm generate
ref = slm_json("generate", prompt, "--temperature", "0", "--max-tokens", "24")
c = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0)
check("completion: text equals slm generate's", c.choices[0].text == ref["text"], (c.choices[0].text, ref["text"]))
check("completion: usage equals slmd's", (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) ==
      (ref["usage"]["n_prompt"], ref["usage"]["n_generated"], ref["usage"]["n_prompt"] + ref["usage"]["n_generated"]),
      (c.usage, ref["usage"]))
check("completion: finish_reason length", c.choices[0].finish_reason == "length", c.choices[0].finish_reason)

chunks = list(client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0, stream=True,
                                        stream_options={"include_usage": True}))
text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
check("completion, streamed: the same text", text == ref["text"], (text, ref["text"]))
usage = chunks[-1].usage
check("completion, streamed: the usage chunk last, with no choices",
      not chunks[-1].choices and usage and usage.completion_tokens == ref["usage"]["n_generated"] and
      usage.prompt_tokens == ref["usage"]["n_prompt"], chunks[-1])

ids = [int(x) for x in subprocess.run([SLM, "tokenize", prompt], capture_output=True, text=True).stdout.split()]
c = client.completions.create(model=model, prompt=ids, max_tokens=24, temperature=0)
check("completion from token ids: the same text", c.choices[0].text == ref["text"], c.choices[0].text)

# ---- chat, greedy: equal to slm chat
question = "What is the capital of France?"
ref_chat = slm_json("chat", "--temperature", "0", "--max-tokens", "32", stdin=question + "\n")
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], max_tokens=32,
                                   temperature=0)
check("chat: content equals slm chat's", r.choices[0].message.content == ref_chat["text"],
      (r.choices[0].message.content, ref_chat["text"]))
check("chat: role assistant, usage equals slmd's",
      r.choices[0].message.role == "assistant" and r.usage.prompt_tokens == ref_chat["usage"]["n_prompt"] and
      r.usage.completion_tokens == ref_chat["usage"]["n_generated"], (r.usage, ref_chat["usage"]))
stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], max_tokens=32,
                                        temperature=0, stream=True)
deltas = [ch.choices[0].delta for ch in stream]
check("chat, streamed: role first, the same content",
      deltas[0].role == "assistant" and "".join(d.content or "" for d in deltas) == ref_chat["text"], deltas[:3])

# ---- a system message, content parts, max_completion_tokens
r = client.chat.completions.create(model=model, max_completion_tokens=8, temperature=0, messages=[
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}])
ref_sys = slm_json("chat", "--system", "Answer briefly.", "--temperature", "0", "--max-tokens", "8",
                   stdin="What is 2+2?\n")
check("chat with a system message and text parts equals slm chat --system",
      r.choices[0].message.content == ref_sys["text"] and r.usage.completion_tokens <= 8,
      (r.choices[0].message.content, ref_sys["text"]))

# ---- stop
full = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0).choices[0].text
c = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0, stop=["."])
check("stop: the text ends before the stop string, finish_reason stop",
      c.choices[0].finish_reason == "stop" and "." not in c.choices[0].text and full.startswith(c.choices[0].text),
      (c.choices[0].text, c.choices[0].finish_reason))

# ---- seed: the same sampled text twice, and equal to slm generate with the same samplers
kw = dict(model=model, prompt="Once upon a time", max_tokens=24, temperature=0.9, seed=42)
a = client.completions.create(**kw).choices[0].text
b = client.completions.create(**kw).choices[0].text
ref_s = slm_json("generate", "Once upon a time", "--temperature", "0.9", "--top-k", "0", "--top-p", "1", "--min-p", "0",
                 "--seed", "42", "--max-tokens", "24")
check("seed: the same sampled text twice, equal to slm generate's", a == b == ref_s["text"], (a, b, ref_s["text"]))
other = client.completions.create(**{**kw, "seed": 43}).choices[0].text
check("seed: another seed, another text", other != a, other)
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0.9,
                              extra_body={"top_k": 20, "min_p": 0.02, "repeat_penalty": 1.1, "seed": 7})
ref_x = slm_json("generate", "Once upon a time", "--temperature", "0.9", "--top-k", "20", "--top-p", "1",
                 "--min-p", "0.02", "--repeat-penalty", "1.1", "--seed", "7", "--max-tokens", "24")
check("extra samplers (top_k, min_p, repeat_penalty) as slm generate's", r.choices[0].text == ref_x["text"],
      (r.choices[0].text, ref_x["text"]))

# ---- logprobs
ref_lp = slm_json("generate", prompt, "--temperature", "0", "--max-tokens", "6", "--logprobs", "3")
c = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
lp = c.choices[0].logprobs
close = all(abs(x - y["logprob"]) < 1e-4 for x, y in zip(lp.token_logprobs, ref_lp["logprobs"]))
check("completion logprobs equal slm generate --logprobs",
      len(lp.token_logprobs) == len(ref_lp["logprobs"]) == 6 and close and "".join(lp.tokens) == c.choices[0].text and
      all(len(t) == 3 for t in lp.top_logprobs), (lp, ref_lp["logprobs"]))
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], max_tokens=6,
                                   temperature=0, logprobs=True, top_logprobs=2)
content = r.choices[0].logprobs.content
check("chat logprobs: one per token, greedy = the best alternative",
      len(content) == r.usage.completion_tokens and all(len(t.top_logprobs) == 2 for t in content) and
      all(abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6 and t.token == t.top_logprobs[0].token for t in content) and
      "".join(t.token for t in content) == r.choices[0].message.content, content[:2])

# ---- errors as the package's exceptions
try:
    client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    check("an unknown model raises NotFoundError", False, "no exception")
except openai.NotFoundError as e:
    check("an unknown model raises NotFoundError", e.status_code == 404 and "no-such-model" in str(e), e)
try:
    client.completions.create(model=model, prompt="x", max_tokens=1, temperature=7)
    check("temperature 7 raises BadRequestError", False, "no exception")
except openai.BadRequestError as e:
    check("temperature 7 raises BadRequestError", e.status_code == 400 and "temperature" in str(e), e)
try:
    client.completions.create(model=model, prompt="hello " * 9000, max_tokens=1)
    check("a prompt over the context raises APIStatusError 413", False, "no exception")
except openai.APIStatusError as e:
    check("a prompt over the context raises APIStatusError 413", e.status_code == 413, e)

# ---- an aborted stream frees its blocks
stream = client.completions.create(model=model, prompt="Once upon a time", max_tokens=4000, stream=True,
                                   extra_body={"ignore_eos": True})
got = 0
for ch in stream:
    got += 1
    if got == 5:
        break
busy = stats()
stream.close()
for _ in range(50):
    s = stats()
    if s["requests_active"] == 0 and s["kv_blocks_used"] == 0:
        break
    time.sleep(0.1)
check("an aborted stream frees its KV blocks (slm stats)",
      busy["kv_blocks_used"] > 0 and s["requests_active"] == 0 and s["kv_blocks_used"] == 0, (busy, s))

sys.exit(1 if failed else 0)
