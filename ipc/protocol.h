/*
 * ipc/protocol.h - the wire format between slmd and its clients (docs/protocol.md).
 *
 * Two channels:
 *   1. a Unix SOCK_SEQPACKET socket: the handshake (HELLO -> WELCOME with the memfd attached
 *      by SCM_RIGHTS), liveness (hang-up = the client is gone), and the doorbell (one byte,
 *      client -> daemon, only when the daemon has set SLM_SHM_NEED_WAKEUP);
 *   2. one sealed memfd per client: a header page, the submission ring (client -> daemon),
 *      the completion ring (daemon -> client) and the payload arena (client-written inputs).
 *
 * Everything here is little-endian, fixed-size, without pointers: offsets from the start of
 * the memfd. The same header is compiled into the daemon and libslm.
 *
 * Rings (single producer, single consumer, N entries, N a power of two): every slot begins
 * with a 32-bit sequence number. Position p (counting from 0 forever, mod 2^32) lives in
 * slot p % N.
 *   - the producer may fill slot p % N when its seq == p (free for lap p / N); it writes
 *     the entry, then stores seq = p + 1 with release ordering (full);
 *   - the consumer may take position c when slot c % N has seq == c + 1 (acquire); it copies
 *     the entry out, then stores seq = c + N with release ordering (free for the next lap).
 * Initially slot i has seq = i. Consumers poll slots, not the peer's index (docs/architecture.md).
 * The daemon reads a client-written seq or entry once, copies the entry into private memory
 * and validates every field of the copy; garbage gives an error completion, never a crash.
 */
#ifndef SLM_IPC_PROTOCOL_H
#define SLM_IPC_PROTOCOL_H

#include <stdint.h>

#define SLM_PROTO_MAGIC 0x314d4c53u   /* "SLM1" */
#define SLM_PROTO_VERSION 1u          /* bumped on any incompatible change; WELCOME says which */

/* ---- handshake (socket) */

enum slm_msg_type {
    SLM_MSG_HELLO = 1,     /* client -> daemon */
    SLM_MSG_WELCOME = 2,   /* daemon -> client, with the memfd when status == 0 */
};

#define SLM_NAME_LEN 32
#define SLM_REASON_LEN 160

struct slm_hello {
    uint32_t magic;        /* SLM_PROTO_MAGIC */
    uint16_t type;         /* SLM_MSG_HELLO */
    uint16_t version;      /* SLM_PROTO_VERSION the client speaks */
    uint32_t sq_entries;   /* wanted; 0 = the daemon's default; rounded up to a power of two */
    uint32_t cq_entries;
    uint32_t arena_bytes;  /* wanted payload arena; 0 = default */
    uint32_t reserved;     /* 0 */
    char name[SLM_NAME_LEN]; /* the client's name for logs and stats; NUL-padded */
};

struct slm_welcome {
    uint32_t magic;
    uint16_t type;         /* SLM_MSG_WELCOME */
    uint16_t version;      /* the daemon's SLM_PROTO_VERSION */
    int32_t status;        /* 0, or -errno (-EPROTO: version, -EACCES: not allowed, ...) */
    uint32_t shm_bytes;    /* size of the memfd */
    uint64_t client_id;
    char reason[SLM_REASON_LEN]; /* when status != 0: one human line; NUL-terminated */
};

/* ---- the shared memory */

#define SLM_SHM_HEADER_BYTES 4096u

/* Daemon flags (slm_shm_header.daemon_flags). */
#define SLM_SHM_NEED_WAKEUP 1u   /* the daemon sleeps: ring the doorbell after submitting */
#define SLM_SHM_CLOSING 2u       /* the daemon drains: no new requests are taken */

struct slm_shm_header {
    /* Written once by the daemon before the fd is sent; read-only for both afterwards. */
    uint32_t magic;
    uint32_t version;
    uint32_t total_bytes;
    uint32_t sq_off, sq_entries;    /* struct slm_sqe[sq_entries] */
    uint32_t cq_off, cq_entries;    /* struct slm_cqe[cq_entries] */
    uint32_t arena_off, arena_bytes;
    uint32_t pad0[7];
    /* Cache line 1: written by the client only. */
    uint32_t client_waiting;        /* 1 while the client sleeps (or is about to) on cq_futex */
    uint32_t pad1[15];
    /* Cache line 2: written by the daemon only. */
    uint32_t daemon_flags;          /* SLM_SHM_* */
    uint32_t cq_futex;              /* incremented by the daemon, then FUTEX_WAKE, when client_waiting */
    uint32_t sq_consumed;           /* positions the daemon has taken (arena space before them is free) */
    uint32_t pad2[13];
};

/* Operations (slm_sqe.op). */
enum slm_op {
    SLM_OP_COMPLETE = 1,   /* payload: UTF-8 prompt text */
    SLM_OP_CHAT = 2,       /* payload: n_items messages, each u32 role_len, role, u32 len, content */
    SLM_OP_COMPLETE_IDS = 3, /* payload: n_items int32 token ids */
    SLM_OP_TOKENIZE = 4,   /* payload: UTF-8 text; answer: DATA of int32 ids */
    SLM_OP_DETOKENIZE = 5, /* payload: n_items int32 ids; answer: DATA of UTF-8 text */
    SLM_OP_CANCEL = 6,     /* target: the user_data of the request to cancel */
    SLM_OP_INFO = 7,       /* answer: DATA holding struct slm_wire_info */
    SLM_OP_STATS = 8,      /* answer: DATA holding struct slm_wire_stats */
};

/* Bounds of the answered ops (docs/protocol.md, "Bad input"): above them the answer is an
 * ERROR (-E2BIG). They keep one request's work on the daemon's I/O path short (~40 ms of
 * tokenizing) and its answer within what a client's completion ring can hold queued. */
#define SLM_TOKENIZE_MAX_BYTES (256u << 10)   /* TOKENIZE: bytes of text */
#define SLM_DETOKENIZE_MAX_IDS 65536u         /* DETOKENIZE: token ids */

/* slm_sqe.flags */
#define SLM_SQE_IGNORE_EOS 1u
#define SLM_SQE_PROMPT_LOGPROBS 2u   /* also report each prompt token's logprob (perplexity) */
#define SLM_SQE_ADD_GENERATION_PROMPT 4u /* CHAT: end with the assistant's turn opener (default on in libslm) */
#define SLM_SQE_PROGRESS 8u          /* also PROGRESS completions while the prompt is prefilled */

/* A submission, 128 bytes. Payload ranges are in the arena: [payload_off, +payload_len),
 * then the stop strings (n_stop of u32 len, bytes) at [stop_off, +stop_len), then stop ids. */
struct slm_sqe {
    uint32_t seq;
    uint16_t op;
    uint16_t flags;
    uint64_t user_data;    /* the client's handle, echoed in every completion */
    uint64_t target;       /* CANCEL: the user_data to cancel */
    uint32_t payload_off, payload_len;
    uint32_t n_items;      /* CHAT: messages; COMPLETE_IDS / DETOKENIZE: ids */
    uint32_t stop_off, stop_len, n_stop;
    uint32_t stop_ids_off, n_stop_ids;
    uint32_t max_tokens;   /* 0 = up to the context */
    int32_t priority;
    float temperature, top_p, min_p;
    int32_t top_k;
    float repeat_penalty;
    int32_t repeat_last_n;
    float presence_penalty, frequency_penalty;
    uint64_t seed;
    uint32_t logprobs;     /* 0..20 */
    uint32_t reserved[5];
};

/* Completion kinds (slm_cqe.kind). */
enum slm_cqe_kind {
    SLM_CQE_TOKEN = 1,     /* one generated token: token, logprob, text in data[0..len) */
    SLM_CQE_TEXT = 2,      /* more text of the previous token (a piece longer than data) */
    SLM_CQE_TOP = 3,       /* top logprobs of the previous token: len / 8 of (int32 id, float lp) */
    SLM_CQE_DONE = 4,      /* the request finished: finish, usage */
    SLM_CQE_ERROR = 5,     /* the request failed or was refused: status, reason text in data */
    SLM_CQE_DATA = 6,      /* a chunk of an answer's bytes; flags MORE until the last one */
    SLM_CQE_PROMPT_LP = 7, /* prompt token logprobs: len / 8 of (int32 id, float lp), in order;
                              n_prompt: the position of the first (from 1); not chained */
    SLM_CQE_PROGRESS = 8,  /* (SLM_SQE_PROGRESS) after each engine step that prefilled part of the
                              prompt but not its end: n_cached of the prompt's n_prompt tokens are
                              in the KV cache (prefix-cache hit and prefilled); not chained */
};

#define SLM_CQE_MORE 1u

enum slm_wire_finish { SLM_WIRE_STOP = 1, SLM_WIRE_LENGTH = 2, SLM_WIRE_CANCELLED = 3 };

#define SLM_CQE_DATA_BYTES 84

/* A completion, 128 bytes. */
struct slm_cqe {
    uint32_t seq;
    uint16_t kind;
    uint16_t flags;
    uint64_t user_data;
    int32_t token;         /* TOKEN: the id; else -1 */
    int32_t status;        /* ERROR: -errno */
    uint8_t finish;        /* DONE: enum slm_wire_finish */
    uint8_t len;           /* bytes of data used */
    uint16_t reserved;
    float logprob;         /* TOKEN, when asked */
    uint32_t n_prompt, n_cached, n_generated; /* DONE: usage */
    uint8_t data[SLM_CQE_DATA_BYTES];
};

/* Answer of SLM_OP_INFO. */
struct slm_wire_info {
    char model[128];       /* file name */
    char arch[32];
    char backend[32];
    uint32_t n_ctx, n_vocab, max_seqs, max_batch_tokens, kv_blocks, block_size;
    uint32_t reserved[10];
};

/* Answer of SLM_OP_STATS. */
struct slm_wire_stats {
    uint64_t clients, requests_active, requests_queued, requests_total;
    uint64_t tokens_prompt, tokens_cached, tokens_generated;
    uint64_t kv_blocks_used, kv_blocks_total;
    double tokens_per_s;   /* generated, over the last few seconds */
    double uptime_s;
    uint64_t reserved[8];
};

_Static_assert(sizeof(struct slm_shm_header) == 192, "slm_shm_header layout");
_Static_assert(sizeof(struct slm_sqe) == 128, "slm_sqe is 128 bytes");
_Static_assert(sizeof(struct slm_cqe) == 128, "slm_cqe is 128 bytes");
_Static_assert(sizeof(struct slm_hello) == 56, "slm_hello layout");
_Static_assert(sizeof(struct slm_welcome) == 184, "slm_welcome layout");

#endif
