"""slm.client - Client: a connection to slmd through libslm (docs/python.md).

A Client may be shared by threads: calls into libslm are serialized by one lock, and the events
of every request are sorted into per-request queues by whichever thread is waiting (one at a
time pumps slm_next_event; the others wait on a condition). A stream that is closed, or
garbage-collected, before its end cancels its request; closing the Client cancels all of them
(slmd does, when the connection goes).
"""
import collections
import ctypes
import os
import threading
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Union

from . import _lib
from ._lib import lib

__all__ = ["Client", "Completion", "Token", "Info", "Stats", "Stream", "SlmError", "ConnectError", "RequestError",
           "InvalidRequestError", "ContextLengthError", "DaemonGoneError", "ClosedError"]


# ---- errors: each carries errno (positive) and libslm's or slmd's message

class SlmError(Exception):
    """Any error of libslm or slmd. .errno: the error number (positive); str(): the message."""

    def __init__(self, err, message=None):
        self.errno = abs(err)
        super().__init__(message or _lib.strerror(-abs(err)))


class ConnectError(SlmError):
    """slm_connect failed: no daemon at the socket, refused (allow-list), version mismatch."""


class RequestError(SlmError):
    """slmd refused or failed a request; the message is slmd's reason."""


class InvalidRequestError(RequestError):
    """A parameter or the prompt is invalid (EINVAL)."""


class ContextLengthError(RequestError):
    """The prompt, or prompt plus max_tokens, does not fit the context (E2BIG)."""


class DaemonGoneError(SlmError):
    """slmd went away (ECONNRESET); this Client is unusable."""


class ClosedError(SlmError):
    """The Client was closed."""


def _error(err, message=None, request=False):
    err = -abs(err)
    if err == -104:   # ECONNRESET
        return DaemonGoneError(err, message)
    if err == -7:     # E2BIG
        return ContextLengthError(err, message)
    if err == -22:    # EINVAL
        return InvalidRequestError(err, message)
    return (RequestError if request else SlmError)(err, message)


# ---- results

@dataclass
class Token:
    """One generated token: its id, the text it adds (may be "" inside a UTF-8 character), and
    with logprobs > 0 its logprob and the top alternatives as (id, logprob) pairs."""
    id: int
    text: str
    logprob: Optional[float] = None
    top: List[tuple] = field(default_factory=list)


@dataclass
class Completion:
    """A finished request: the text, why it ended ("stop", "length", "cancelled"), usage, and the
    tokens (with their logprobs when asked)."""
    text: str
    finish: str
    n_prompt: int
    n_cached: int
    n_generated: int
    tokens: List[Token] = field(default_factory=list)


@dataclass
class Info:
    model: str
    arch: str
    backend: str
    n_ctx: int
    n_vocab: int
    max_seqs: int
    max_batch_tokens: int
    kv_blocks: int
    block_size: int


@dataclass
class Stats:
    clients: int
    requests_active: int
    requests_queued: int
    requests_total: int
    tokens_prompt: int
    tokens_cached: int
    tokens_generated: int
    kv_blocks_used: int
    kv_blocks_total: int
    tokens_per_s: float
    uptime_s: float


# An event copied out of libslm's buffers (they live only until the next call).
_Ev = collections.namedtuple("_Ev", "handle type token text logprob top finish n_prompt n_cached n_generated error message")


def _copy(ev):
    text = ctypes.string_at(ev.text, ev.text_len) if ev.text and ev.text_len else b""
    top = [(ev.top[i].token, ev.top[i].logprob) for i in range(ev.n_top)] if ev.type == _lib.EVENT_TOKEN and ev.top else []
    message = ev.message.decode("utf-8", "replace") if ev.type == _lib.EVENT_ERROR and ev.message else None
    return _Ev(ev.handle, ev.type, ev.token, text, ev.logprob, top, ev.finish, ev.n_prompt, ev.n_cached,
               ev.n_generated, ev.error, message)


_SAMPLING = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
             "presence_penalty", "frequency_penalty", "seed", "priority", "logprobs", "ignore_eos")


class _Closing:
    """close() on leaving a with block and on garbage collection (whatever it raises then)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Stream(_Closing):
    """The tokens of one request as they come: iterate for Token objects; .completion is the
    whole result once the iteration has ended. close() (or garbage collection) before the end
    cancels the request."""

    def __init__(self, client, handle, keep):
        self._client, self.handle, self._keep = client, handle, keep
        self._text, self._tokens, self._pending = bytearray(), [], b""
        self.completion: Optional[Completion] = None

    def __iter__(self) -> Iterator[Token]:
        return self

    def __next__(self) -> Token:
        if self.completion is not None:
            raise StopIteration
        while True:
            ev = self._client._next(self.handle)
            if ev.type == _lib.EVENT_TOKEN:
                self._text += ev.text
                # Text is whole UTF-8 characters (slm.h); bytes that are not valid UTF-8 become U+FFFD.
                tok = Token(ev.token, ev.text.decode("utf-8", "replace"),
                            ev.logprob if self._keep else None, ev.top)
                self._tokens.append(tok)
                return tok
            if ev.type == _lib.EVENT_DONE:
                if self.completion is not None:   # closed meanwhile (from another thread)
                    raise StopIteration
                self.completion = Completion(self._text.decode("utf-8", "replace"), _lib.FINISH_NAMES.get(ev.finish, "stop"),
                                             ev.n_prompt, ev.n_cached, ev.n_generated, self._tokens)
                self._client._forget(self.handle)
                raise StopIteration
            if ev.type == _lib.EVENT_ERROR:
                self.completion = Completion("", "error", 0, 0, 0)
                self._client._forget(self.handle)
                raise _error(ev.error, ev.message, request=True)

    def close(self):
        """Cancels the request if it is still running; its remaining events are dropped."""
        if self.completion is None and self._client is not None:
            self._client._abandon(self.handle)
            self.completion = Completion(self._text.decode("utf-8", "replace"), "cancelled", 0, 0, len(self._tokens),
                                         self._tokens)


class Client(_Closing):
    """A connection to slmd. socket: its path (None: $SLM_SOCKET, else /run/slmd/slmd.sock).

        with slm.Client() as c:
            print(c.generate("The capital of France is", max_tokens=16, temperature=0).text)
            for tok in c.chat([{"role": "user", "content": "Hi"}], stream=True):
                print(tok.text, end="", flush=True)

    Sampling keywords (generate, chat) are slm.h's, with its defaults: max_tokens (256; 0 = up
    to the context), temperature (0.8; 0 = greedy), top_k, top_p, min_p, repeat_penalty,
    repeat_last_n, presence_penalty, frequency_penalty, seed (None: a random one), priority,
    logprobs (0..20), ignore_eos, stop (a string or a list of strings), stop_ids.
    """

    def __init__(self, socket: Optional[str] = None, name: str = "python"):
        self._c = ctypes.c_void_p()
        rc = lib.slm_connect(socket.encode() if socket else None, name.encode(), ctypes.byref(self._c))
        if rc < 0:
            reason = lib.slm_last_error().decode("utf-8", "replace")
            raise ConnectError(rc, f"cannot connect to slmd at {socket or os.environ.get('SLM_SOCKET') or '/run/slmd/slmd.sock'}: "
                                   f"{reason or _lib.strerror(rc)}")
        self._call = threading.RLock()         # one libslm call at a time (re-entrant: a stream collected
                                               # by the GC inside a call cancels through it)
        self._cond = threading.Condition()     # guards the queues below
        self._queues = {}                      # handle -> deque of _Ev
        self._abandoned = set()                # handles cancelled by a closed stream: their events are dropped
        self._pumping = False                  # a thread is in slm_next_event
        self._event = _lib.Event()

    # ---- life

    def close(self):
        """Closes the connection; slmd cancels whatever is still running. Idempotent."""
        c = getattr(self, "_c", None)
        if c is not None and c.value:
            with self._call:
                lib.slm_close(ctypes.byref(c))
        with self._cond:
            self._cond.notify_all()


    def _handle(self):
        if not self._c.value:
            raise ClosedError(-9, "the Client is closed")
        return self._c

    # ---- events

    def _next(self, handle):
        """The next event of request handle (blocking), pumping libslm if no thread does."""
        while True:
            with self._cond:
                while True:
                    q = self._queues.get(handle)
                    if q:
                        return q.popleft()
                    if q is None:   # abandoned (its stream closed from another thread) or finished
                        return _Ev(handle, _lib.EVENT_DONE, 0, b"", 0.0, [], 3, 0, 0, 0, 0, None)
                    if not self._pumping:
                        self._pumping = True
                        break
                    self._cond.wait(0.1)
            try:
                with self._call:
                    rc = lib.slm_next_event(self._handle(), ctypes.byref(self._event), 50)
                    ev = _copy(self._event) if rc == 1 else None
            finally:
                with self._cond:
                    self._pumping = False
                    self._cond.notify_all()
            if rc < 0:
                raise _error(rc)
            if ev is None:
                continue
            with self._cond:
                if ev.handle in self._abandoned:
                    if ev.type in (_lib.EVENT_DONE, _lib.EVENT_ERROR):
                        self._abandoned.discard(ev.handle)
                        self._queues.pop(ev.handle, None)
                    continue
                self._queues.setdefault(ev.handle, collections.deque()).append(ev)
                self._cond.notify_all()

    def _forget(self, handle):
        with self._cond:
            self._queues.pop(handle, None)

    def _abandon(self, handle):
        with self._cond:
            self._queues.pop(handle, None)
            self._abandoned.add(handle)
        if self._c.value:
            with self._call:
                lib.slm_cancel(self._c, handle)

    def cancel(self, handle: int):
        """Asks slmd to cancel a request (its stream then ends with finish "cancelled")."""
        with self._call:
            rc = lib.slm_cancel(self._handle(), handle)
        if rc < 0:
            raise _error(rc)

    # ---- requests

    def _params(self, kw):
        p = _lib.Params()
        lib.slm_params_default(ctypes.byref(p))
        keep = []   # the C strings and arrays, alive until the submission copied them
        unknown = set(kw) - set(_SAMPLING) - {"stop", "stop_ids"}
        if unknown:
            raise TypeError(f"unknown keyword(s): {', '.join(sorted(unknown))}")
        for k in _SAMPLING:
            v = kw.get(k)
            if v is not None:
                setattr(p, k, int(v) if isinstance(v, bool) else v)
        if kw.get("seed") is None:
            p.seed = int.from_bytes(os.urandom(8), "little") & (2**63 - 1)
        stop = kw.get("stop")
        if stop:
            stop = [stop] if isinstance(stop, str) else list(stop)
            arr = (ctypes.c_char_p * len(stop))(*[s.encode() for s in stop])
            keep.append(arr)
            p.stop, p.n_stop = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p)), len(stop)
        ids = kw.get("stop_ids")
        if ids:
            arr = (ctypes.c_int32 * len(ids))(*ids)
            keep.append(arr)
            p.stop_ids, p.n_stop_ids = arr, len(ids)
        return p, keep

    def _submit(self, fn, args, kw):
        p, keep = self._params(kw)
        while True:
            with self._call:
                h = fn(self._handle(), *args, ctypes.byref(p))
            if h != -11:   # EAGAIN: the ring or the arena is full; let events drain, then retry
                break
            with self._cond:
                self._cond.wait(0.01)
        del keep
        if h < 0:
            raise _error(h, request=True)
        with self._cond:
            self._queues.setdefault(h, collections.deque())
        return h

    def _run(self, h, stream, keep_logprobs):
        s = Stream(self, h, keep_logprobs)
        if stream:
            return s
        for _ in s:
            pass
        return s.completion

    def generate(self, prompt: Union[str, Sequence[int]], *, stream: bool = False, **sampling) -> Union[Completion, Stream]:
        """Completes prompt (text, or token ids). Returns a Completion, or with stream=True a
        Stream of Token objects. Raises RequestError (and its kinds) when slmd refuses."""
        if isinstance(prompt, str):
            h = self._submit(lib.slm_submit_text, (prompt.encode(),), sampling)
        else:
            ids = (ctypes.c_int32 * len(prompt))(*prompt)
            h = self._submit(lib.slm_submit_ids, (ids, len(prompt)), sampling)
        return self._run(h, stream, bool(sampling.get("logprobs")))

    def chat(self, messages: Sequence[dict], *, stream: bool = False, **sampling) -> Union[Completion, Stream]:
        """Answers a conversation, [{"role": "system"|"user"|"assistant", "content": str}, ...],
        rendered by the model's chat template in slmd. Returns as generate does."""
        arr = (_lib.Message * len(messages))()
        for i, m in enumerate(messages):
            arr[i].role, arr[i].content = m["role"].encode(), m["content"].encode()
        h = self._submit(lib.slm_submit_chat, (arr, len(messages)), sampling)
        return self._run(h, stream, bool(sampling.get("logprobs")))

    def tokenize(self, text: str) -> List[int]:
        ids, n = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_int()
        with self._call:
            rc = lib.slm_tokenize(self._handle(), text.encode(), ctypes.byref(ids), ctypes.byref(n))
        if rc < 0:
            raise _error(rc)
        try:
            return ids[:n.value]
        finally:
            _lib.libc.free(ctypes.cast(ids, ctypes.c_void_p))

    def detokenize(self, ids: Sequence[int]) -> str:
        arr = (ctypes.c_int32 * max(len(ids), 1))(*ids)
        text = ctypes.c_void_p()
        with self._call:
            rc = lib.slm_detokenize(self._handle(), arr, len(ids), ctypes.byref(text))
        if rc < 0:
            raise _error(rc)
        try:
            return ctypes.string_at(text).decode("utf-8", "replace") if text.value else ""
        finally:
            _lib.libc.free(text)

    def info(self) -> Info:
        i = _lib.Info()
        with self._call:
            rc = lib.slm_info(self._handle(), ctypes.byref(i))
        if rc < 0:
            raise _error(rc)
        return Info(i.model.decode(), i.arch.decode(), i.backend.decode(), i.n_ctx, i.n_vocab, i.max_seqs,
                    i.max_batch_tokens, i.kv_blocks, i.block_size)

    def stats(self) -> Stats:
        s = _lib.Stats()
        with self._call:
            rc = lib.slm_stats(self._handle(), ctypes.byref(s))
        if rc < 0:
            raise _error(rc)
        return Stats(*[getattr(s, f[0]) for f in _lib.Stats._fields_])
