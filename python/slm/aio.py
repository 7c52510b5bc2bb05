"""slm.aio - AsyncClient: slm.Client for asyncio.

Each blocking libslm call runs in a worker thread (asyncio.to_thread), so the event loop never
waits on slmd. A stream is an async iterator; leaving it early (break, an exception, a cancelled
task) cancels the request in slmd, as closing a Stream does.

    async with slm.AsyncClient() as c:
        print((await c.generate("The capital of France is", max_tokens=16, temperature=0)).text)
        async for tok in await c.chat([{"role": "user", "content": "Hi"}], stream=True):
            print(tok.text, end="", flush=True)
"""
import asyncio
from typing import Optional

from .client import Client, Completion, Stream, Token

__all__ = ["AsyncClient", "AsyncStream"]


class AsyncStream:
    """A Stream as an async iterator of Token objects; .completion once it has ended."""

    def __init__(self, stream: Stream):
        self._stream = stream

    @property
    def completion(self) -> Optional[Completion]:
        return self._stream.completion

    def __aiter__(self):
        return self

    async def __anext__(self) -> Token:
        def step():
            try:
                return next(self._stream)
            except StopIteration:
                return None
        try:
            tok = await asyncio.to_thread(step)
        except BaseException:
            self._stream.close()   # cancelled or failed mid-way: cancel in slmd too
            raise
        if tok is None:
            raise StopAsyncIteration
        return tok

    async def aclose(self):
        self._stream.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class AsyncClient:
    """slm.Client's calls as coroutines. socket and name as for Client."""

    def __init__(self, socket: Optional[str] = None, name: str = "python-asyncio"):
        self._client = Client(socket, name)

    async def generate(self, prompt, *, stream=False, **sampling):
        result = await asyncio.to_thread(self._client.generate, prompt, stream=stream, **sampling)
        return AsyncStream(result) if stream else result

    async def chat(self, messages, *, stream=False, **sampling):
        result = await asyncio.to_thread(self._client.chat, messages, stream=stream, **sampling)
        return AsyncStream(result) if stream else result

    async def tokenize(self, text):
        return await asyncio.to_thread(self._client.tokenize, text)

    async def detokenize(self, ids):
        return await asyncio.to_thread(self._client.detokenize, ids)

    async def info(self):
        return await asyncio.to_thread(self._client.info)

    async def stats(self):
        return await asyncio.to_thread(self._client.stats)

    async def cancel(self, handle):
        await asyncio.to_thread(self._client.cancel, handle)

    async def close(self):
        self._client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
