"""python/tests/test_client.py - the slm package against a real slmd (tests/test_python.sh starts
it and sets SLM_SOCKET, SLM (the slm command) and SLM_LIBRARY)."""
import asyncio
import gc
import json
import os
import subprocess
import threading
import time

import pytest

import slm

SOCKET = os.environ["SLM_SOCKET"]
SLM = os.environ["SLM"]
PROMPT = "The capital of France is"


def cli(*args, stdin=None):
    out = subprocess.run([SLM, "--socket", SOCKET, *args, "--json"], input=stdin, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.fixture
def client():
    with slm.Client(SOCKET) as c:
        yield c


def wait_idle(c, timeout=5.0):
    """slmd runs no request and holds no KV block within timeout; the last stats."""
    deadline = time.time() + timeout
    while True:
        s = c.stats()
        if (s.requests_active == 0 and s.kv_blocks_used == 0) or time.time() > deadline:
            return s
        time.sleep(0.05)


def test_generate_equals_slm_generate(client):
    ref = cli("generate", PROMPT, "--temperature", "0", "--max-tokens", "24")
    r = client.generate(PROMPT, max_tokens=24, temperature=0)
    assert r.text == ref["text"]
    assert (r.finish, r.n_prompt, r.n_generated) == (ref["finish"], ref["usage"]["n_prompt"], ref["usage"]["n_generated"])
    assert len(r.tokens) == r.n_generated


def test_seeded_sampling_equals_slm_generate(client):
    flags = dict(temperature=0.9, top_k=20, top_p=0.9, min_p=0.02, repeat_penalty=1.1, seed=42, max_tokens=32)
    ref = cli("generate", "Once upon a time", "--temperature", "0.9", "--top-k", "20", "--top-p", "0.9", "--min-p",
              "0.02", "--repeat-penalty", "1.1", "--seed", "42", "--max-tokens", "32")
    assert client.generate("Once upon a time", **flags).text == ref["text"]


def test_stream_equals_whole(client):
    whole = client.generate(PROMPT, max_tokens=24, temperature=0)
    stream = client.generate(PROMPT, max_tokens=24, temperature=0, stream=True)
    tokens = list(stream)
    assert "".join(t.text for t in tokens) == whole.text
    assert [t.id for t in tokens] == [t.id for t in whole.tokens]
    assert stream.completion.text == whole.text and stream.completion.n_generated == 24


def test_token_ids_and_stop(client):
    ids = client.tokenize(PROMPT)
    assert client.detokenize(ids) == PROMPT
    whole = client.generate(PROMPT, max_tokens=24, temperature=0)
    assert client.generate(ids, max_tokens=24, temperature=0).text == whole.text
    r = client.generate(PROMPT, max_tokens=24, temperature=0, stop=".")
    assert r.finish == "stop" and "." not in r.text and whole.text.startswith(r.text)


def test_chat_equals_slm_chat(client):
    ref = cli("chat", "--system", "Answer briefly.", "--temperature", "0", "--max-tokens", "32",
              stdin="What is the capital of France?\n")
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"}]
    r = client.chat(msgs, max_tokens=32, temperature=0)
    assert r.text == ref["text"] and r.n_prompt == ref["usage"]["n_prompt"]
    assert "".join(t.text for t in client.chat(msgs, max_tokens=32, temperature=0, stream=True)) == ref["text"]


def test_logprobs(client):
    ref = cli("generate", PROMPT, "--temperature", "0", "--max-tokens", "4", "--logprobs", "3")
    r = client.generate(PROMPT, max_tokens=4, temperature=0, logprobs=3)
    for tok, want in zip(r.tokens, ref["logprobs"]):
        assert tok.id == want["token"] and abs(tok.logprob - want["logprob"]) < 1e-4
        assert [t[0] for t in tok.top] == [t["token"] for t in want["top"]]


def test_info_and_stats(client):
    info = client.info()
    assert info.model == cli("info")["model"] and info.n_vocab > 0 and info.n_ctx > 0
    s = client.stats()
    assert s.kv_blocks_total > 0 and s.clients >= 1


def test_close_of_a_stream_cancels(client):
    s = client.generate("Once upon a time", max_tokens=4000, ignore_eos=True, stream=True)
    for _, _tok in zip(range(3), s):
        pass
    assert client.stats().requests_active == 1
    s.close()
    assert s.completion.finish == "cancelled"
    st = wait_idle(client)
    assert st.requests_active == 0 and st.kv_blocks_used == 0
    assert client.generate(PROMPT, max_tokens=4, temperature=0).n_generated == 4   # the client goes on


def test_garbage_collected_stream_cancels(client):
    s = client.generate("Once upon a time", max_tokens=4000, ignore_eos=True, stream=True)
    next(s)
    del s
    gc.collect()
    st = wait_idle(client)
    assert st.requests_active == 0 and st.kv_blocks_used == 0


def test_cancel_by_handle(client):
    s = client.generate("Once upon a time", max_tokens=4000, ignore_eos=True, stream=True)
    next(s)
    client.cancel(s.handle)
    rest = list(s)
    assert s.completion.finish == "cancelled" and len(rest) < 3999


def test_closing_the_client_cancels():
    watcher = slm.Client(SOCKET)
    c = slm.Client(SOCKET)
    s = c.generate("Once upon a time", max_tokens=4000, ignore_eos=True, stream=True)
    next(s)
    c.close()
    st = wait_idle(watcher)
    assert st.requests_active == 0 and st.kv_blocks_used == 0
    with pytest.raises(slm.ClosedError):
        c.generate("x")
    watcher.close()


def test_errors(client, tmp_path):
    with pytest.raises(slm.ConnectError) as e:
        slm.Client(str(tmp_path / "nothing.sock"))
    assert "nothing.sock" in str(e.value) and e.value.errno > 0
    with pytest.raises(slm.ContextLengthError) as e:
        client.generate("hello " * 9000, max_tokens=1)
    assert "context" in str(e.value)
    with pytest.raises(slm.InvalidRequestError) as e:
        client.generate([1, 2, 99999999], max_tokens=1)
    assert "vocabulary" in str(e.value)
    with pytest.raises(slm.RequestError):
        client.generate("x", temperature=-1)
    with pytest.raises(TypeError):
        client.generate("x", temprature=0)
    assert client.generate(PROMPT, max_tokens=2, temperature=0).n_generated == 2   # still usable


PROMPTS = ["The capital of France is", "Once upon a time", "The sky is blue because", "Water boils at",
           "My favourite food is", "The best way to learn C is", "In 1969,", "A cat and a dog"]


def test_32_threads_each_with_a_client():
    with slm.Client(SOCKET) as c:
        alone = {p: c.generate(p, max_tokens=16, temperature=0).text for p in PROMPTS}
    results, errors = {}, []

    def work(i):
        try:
            with slm.Client(SOCKET, name=f"t{i}") as c:
                p = PROMPTS[i % len(PROMPTS)]
                results[i] = (p, "".join(t.text for t in c.generate(p, max_tokens=16, temperature=0, stream=True)))
        except Exception as e:   # reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 32
    for p, text in results.values():
        assert text == alone[p]


def test_32_threads_sharing_one_client(client):
    alone = {p: client.generate(p, max_tokens=12, temperature=0).text for p in PROMPTS}
    results, errors = [], []

    def work(i):
        try:
            p = PROMPTS[i % len(PROMPTS)]
            if i % 2:
                results.append((p, client.generate(p, max_tokens=12, temperature=0).text))
            else:
                results.append((p, "".join(t.text for t in client.generate(p, max_tokens=12, temperature=0, stream=True))))
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 32
    assert all(text == alone[p] for p, text in results)


def test_asyncio():
    async def main():
        async with slm.AsyncClient(SOCKET) as a:
            whole = await a.generate(PROMPT, max_tokens=16, temperature=0)
            many = await asyncio.gather(*[a.generate(PROMPT, max_tokens=16, temperature=0) for _ in range(8)])
            assert all(r.text == whole.text for r in many)
            stream = await a.chat([{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0, stream=True)
            text = "".join([t.text async for t in stream])
            assert text == stream.completion.text and stream.completion.n_generated <= 8
            assert await a.detokenize(await a.tokenize("Hello")) == "Hello"
            # A task cancelled mid-stream cancels its request.
            stream = await a.generate("Once upon a time", max_tokens=4000, ignore_eos=True, stream=True)

            async def consume():
                async for _ in stream:
                    pass
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(100):
                s = await a.stats()
                if s.requests_active == 0 and s.kv_blocks_used == 0:
                    break
                await asyncio.sleep(0.05)
            assert s.requests_active == 0 and s.kv_blocks_used == 0
    asyncio.run(main())
