"""slm._lib - libslm (client/slm.h) through ctypes: the structures and the function signatures.

The library is found at $SLM_LIBRARY when set, else as libslm.so.0 (the installed soname), else
as whatever ctypes.util.find_library("slm") names. The structures mirror slm.h field for field;
a change there must be made here too (tests/test_python.sh fails otherwise).
"""
import ctypes
import ctypes.util
import os

c_int, c_float, c_int32, c_int64, c_uint64, c_size_t, c_double, c_char_p, c_void_p = (
    ctypes.c_int, ctypes.c_float, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_size_t,
    ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p)

EVENT_TOKEN, EVENT_DONE, EVENT_ERROR, EVENT_PROMPT_LOGPROBS, EVENT_PROGRESS = 1, 2, 3, 4, 5
FINISH_NAMES = {1: "stop", 2: "length", 3: "cancelled"}


class Params(ctypes.Structure):
    _fields_ = [
        ("max_tokens", c_int), ("temperature", c_float), ("top_k", c_int), ("top_p", c_float),
        ("min_p", c_float), ("repeat_penalty", c_float), ("repeat_last_n", c_int),
        ("presence_penalty", c_float), ("frequency_penalty", c_float), ("seed", c_uint64),
        ("priority", c_int), ("logprobs", c_int), ("ignore_eos", c_int), ("prompt_logprobs", c_int),
        ("progress", c_int), ("stop", ctypes.POINTER(c_char_p)), ("n_stop", c_int),
        ("stop_ids", ctypes.POINTER(c_int32)), ("n_stop_ids", c_int),
    ]


class Message(ctypes.Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class TopLogprob(ctypes.Structure):
    _fields_ = [("token", c_int32), ("logprob", c_float)]


class Event(ctypes.Structure):
    _fields_ = [
        ("handle", c_int64), ("type", c_int), ("token", c_int32), ("text", c_void_p), ("text_len", c_size_t),
        ("logprob", c_float), ("n_top", c_int), ("top", ctypes.POINTER(TopLogprob)), ("prompt_pos", c_int),
        ("finish", c_int), ("n_prompt", c_int), ("n_cached", c_int), ("n_generated", c_int),
        ("error", c_int), ("message", c_char_p),
    ]


class Info(ctypes.Structure):
    _fields_ = [("model", ctypes.c_char * 128), ("arch", ctypes.c_char * 32), ("backend", ctypes.c_char * 32),
                ("n_ctx", c_int), ("n_vocab", c_int), ("max_seqs", c_int), ("max_batch_tokens", c_int),
                ("kv_blocks", c_int), ("block_size", c_int)]


class Stats(ctypes.Structure):
    _fields_ = [(name, c_uint64) for name in (
        "clients", "requests_active", "requests_queued", "requests_total", "tokens_prompt", "tokens_cached",
        "tokens_generated", "kv_blocks_used", "kv_blocks_total")] + [("tokens_per_s", c_double), ("uptime_s", c_double)]


def _load():
    names = [os.environ["SLM_LIBRARY"]] if os.environ.get("SLM_LIBRARY") else ["libslm.so.0", ctypes.util.find_library("slm")]
    errors = []
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("slm: cannot load libslm (install slmd, or set SLM_LIBRARY to libslm.so): " + "; ".join(errors))


lib = _load()
P = ctypes.POINTER
_signatures = {
    "slm_params_default": (None, [P(Params)]),
    "slm_connect": (c_int, [c_char_p, c_char_p, P(c_void_p)]),
    "slm_last_error": (c_char_p, []),
    "slm_close": (None, [P(c_void_p)]),
    "slm_submit_text": (c_int64, [c_void_p, c_char_p, P(Params)]),
    "slm_submit_chat": (c_int64, [c_void_p, P(Message), c_int, P(Params)]),
    "slm_submit_ids": (c_int64, [c_void_p, P(c_int32), c_int, P(Params)]),
    "slm_next_event": (c_int, [c_void_p, P(Event), c_int]),
    "slm_cancel": (c_int, [c_void_p, c_int64]),
    "slm_tokenize": (c_int, [c_void_p, c_char_p, P(P(c_int32)), P(c_int)]),
    "slm_detokenize": (c_int, [c_void_p, P(c_int32), c_int, P(c_void_p)]),
    "slm_info": (c_int, [c_void_p, P(Info)]),
    "slm_stats": (c_int, [c_void_p, P(Stats)]),
    "slm_strerror": (c_char_p, [c_int]),
}
for _name, (_res, _args) in _signatures.items():
    _f = getattr(lib, _name)
    _f.restype, _f.argtypes = _res, _args

# The C library's free, for the buffers libslm mallocs (tokenize, detokenize).
libc = ctypes.CDLL(None)
libc.free.argtypes, libc.free.restype = [c_void_p], None


def strerror(err):
    return lib.slm_strerror(err).decode("utf-8", "replace")
