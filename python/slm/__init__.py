"""slm - Python client of slmd, over libslm (client/slm.h) through ctypes.

    import slm
    with slm.Client("/tmp/slmd.sock") as c:
        print(c.generate("The capital of France is", max_tokens=16, temperature=0).text)

Client (blocking calls and streaming iterators, thread-safe), AsyncClient (asyncio), and the
errors SlmError > ConnectError, RequestError > InvalidRequestError, ContextLengthError;
DaemonGoneError; ClosedError. docs/python.md has the whole interface.
"""
from .aio import AsyncClient, AsyncStream
from .client import (ClosedError, Client, Completion, ConnectError, ContextLengthError, DaemonGoneError, Info,
                     InvalidRequestError, RequestError, SlmError, Stats, Stream, Token)

__version__ = "0.1.0"
__all__ = ["Client", "AsyncClient", "Stream", "AsyncStream", "Completion", "Token", "Info", "Stats", "SlmError",
           "ConnectError", "RequestError", "InvalidRequestError", "ContextLengthError", "DaemonGoneError",
           "ClosedError"]
