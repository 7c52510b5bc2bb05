/* daemon/requests.c - see requests.h. */
#define _GNU_SOURCE
#include "daemon/requests.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "daemon/engine/chat.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/server.h"
#include "ipc/arena.h"
#include "ipc/shm.h"

/* Copies [off, off + len) out of the client's arena into a fresh buffer (NUL-terminated). */
static char *arena_copy(const struct slm_shm *shm, uint32_t off, uint32_t len)
{
    if (len > SLM_REQ_MAX_PAYLOAD || slm_arena_check_range(shm->arena_bytes, off, len)) return NULL;
    char *p = malloc((size_t)len + 1);
    if (!p || slm_arena_copy_out(shm->arena, shm->arena_bytes, off, len, p)) {
        free(p);
        return NULL;
    }
    p[len] = 0;
    return p;
}

/* Splits buf[0..len) into n length-prefixed strings (u32 length, bytes), each copied and
 * NUL-terminated into one allocation; out[i] points at string i. NULL and err when the
 * lengths do not add up to exactly len. The caller frees the returned block. */
static char *split_strings(const char *buf, uint32_t len, uint32_t n, const char **out, char *err)
{
    char *block = malloc((size_t)len + n + 1);
    if (!block) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    uint32_t at = 0;
    char *w = block;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k;
        if (len - at < 4) goto bad;
        memcpy(&k, buf + at, 4);
        at += 4;
        if (k > len - at || memchr(buf + at, 0, k)) goto bad;
        memcpy(w, buf + at, k);
        w[k] = 0;
        out[i] = w;
        w += k + 1;
        at += k;
    }
    if (at == len) return block;
bad:
    slm_err_set(err, "%u length-prefixed strings do not fill the %u bytes given (or one holds a NUL)", n, len);
    free(block);
    return NULL;
}

/* The prompt of a CHAT request: its messages through the model's chat template. */
static char *render_chat(const struct slm_service *svc, const struct slm_sqe *q, const char *payload, char *err)
{
    if (svc->chat_fmt < 0) {
        slm_err_set(err, "the model has no chat template slmd knows; send the formatted text instead");
        return NULL;
    }
    if (q->n_items < 1 || q->n_items > SLM_REQ_MAX_STRINGS) {
        slm_err_set(err, "a chat needs 1 to %d messages, got %u", SLM_REQ_MAX_STRINGS, q->n_items);
        return NULL;
    }
    const char *parts[2 * SLM_REQ_MAX_STRINGS];
    char *block = split_strings(payload, q->payload_len, 2 * q->n_items, parts, err);
    if (!block) return NULL;
    struct slm_chat_msg msgs[SLM_REQ_MAX_STRINGS];
    for (uint32_t i = 0; i < q->n_items; i++) msgs[i] = (struct slm_chat_msg){parts[2 * i], parts[2 * i + 1]};
    int gen = (q->flags & SLM_SQE_ADD_GENERATION_PROMPT) != 0;
    char *text = slm_service_chat_render(svc, msgs, (int)q->n_items, gen, err);
    free(block);
    return text;
}

/* The text of token ids, whole (incremental detokenization, then its flush). */
static char *detokenize(const struct slm_tokenizer *tok, const int32_t *ids, int n, size_t *len)
{
    size_t cap = (size_t)n * 16 + 64, at = 0;
    char *out = malloc(cap);
    struct slm_detok d = {0};
    for (int i = 0; out && i <= n; i++) {
        char piece[512];
        int k = i < n ? slm_detok_push(tok, &d, ids[i], 0, piece, sizeof piece)
                      : slm_detok_flush(&d, piece, sizeof piece);
        if (k <= 0) continue;
        if ((size_t)k > sizeof piece) k = (int)sizeof piece;
        if (at + (size_t)k > cap) {
            char *p = realloc(out, cap = 2 * cap + (size_t)k);
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
        }
        memcpy(out + at, piece, (size_t)k);
        at += (size_t)k;
    }
    *len = at;
    return out;
}

/* The prompt of COMPLETE, CHAT and TOKENIZE: the payload (a chat rendered through the
 * template) encoded to ids in a->ids. Returns n > 0, or 0 with a->status and a->err set. */
static int encode_prompt(const struct slm_service *svc, const struct slm_shm *shm, const struct slm_sqe *q,
                         struct slm_req_action *a)
{
    char *payload = arena_copy(shm, q->payload_off, q->payload_len);
    if (!payload) {
        a->status = -EINVAL;
        slm_err_set(a->err, "payload [%u, +%u) is outside the arena", q->payload_off, q->payload_len);
        return 0;
    }
    int chat = q->op == SLM_OP_CHAT;
    if (chat) {
        char *text = render_chat(svc, q, payload, a->err);
        free(payload);
        if (!text) {
            a->status = svc->chat_fmt < 0 ? -ENOTSUP : -EINVAL;
            return 0;
        }
        payload = text;
    }
    /* Text may not hold a NUL byte (docs/protocol.md): refused rather than cut there. Chat
     * messages are checked by split_strings. */
    const char *nul = chat ? NULL : memchr(payload, 0, q->payload_len);
    if (nul) {
        a->status = -EINVAL;
        slm_err_set(a->err, "text: a NUL byte at offset %zu (text may not hold NUL)", (size_t)(nul - payload));
        free(payload);
        return 0;
    }
    /* A chat's rendered text holds the template's special tokens; plain text is taken as
     * text (as `slmd run` does with and without --chat). */
    size_t plen = strlen(payload);
    int n = slm_tok_encode(svc->tok, payload, plen, 1, chat, NULL, 0);
    if (n <= 0 || !(a->ids = malloc((size_t)n * sizeof *a->ids)) ||
        slm_tok_encode(svc->tok, payload, plen, 1, chat, a->ids, n) != n) {
        a->status = n < 0 ? n : -EINVAL;
        slm_err_set(a->err, n == 0 ? "the prompt encodes to no tokens" : "cannot encode the prompt");
        n = 0;
    }
    free(payload);
    return n;
}

/* A->rq for the n_ids ids at ids: q's limits and sampling, its stop strings and stop ids
 * copied out of the arena into a's buffers. 0, or -EINVAL with a->err. */
static int build_request(const struct slm_server *s, const struct slm_shm *shm, uint32_t uid,
                         const struct slm_sqe *q, const int32_t *ids, int n_ids, struct slm_req_action *a)
{
    if (q->priority < SLM_REQ_PRIORITY_MIN || q->priority > s->cfg.max_priority) {
        slm_err_set(a->err, "priority %d is outside %d to %d (max-priority)", q->priority, SLM_REQ_PRIORITY_MIN,
                    s->cfg.max_priority);
        return -EINVAL;
    }
    a->rq = (struct slm_request){.prompt = ids, .n_prompt = n_ids,
                                 .max_tokens = q->max_tokens ? (int)q->max_tokens : s->eo.n_ctx,
                                 .priority = q->priority, .owner = uid, .logprobs = (int)q->logprobs,
                                 .ignore_eos = (q->flags & SLM_SQE_IGNORE_EOS) != 0,
                                 .prompt_logprobs = (q->flags & SLM_SQE_PROMPT_LOGPROBS) != 0,
                                 .progress = (q->flags & SLM_SQE_PROGRESS) != 0};
    a->rq.sampling = (struct slm_sampling){.temperature = q->temperature, .top_k = q->top_k, .top_p = q->top_p,
                                           .min_p = q->min_p, .repeat_penalty = q->repeat_penalty,
                                           .repeat_last_n = q->repeat_last_n,
                                           .presence_penalty = q->presence_penalty,
                                           .frequency_penalty = q->frequency_penalty, .seed = q->seed};
    if (q->n_stop) {
        if (q->n_stop > SLM_REQ_MAX_STRINGS || !(a->stop_buf = arena_copy(shm, q->stop_off, q->stop_len)) ||
            !(a->stop_block = split_strings(a->stop_buf, q->stop_len, q->n_stop, a->stops, a->err))) {
            if (!a->err[0])
                slm_err_set(a->err, "stop strings: %u strings in [%u, +%u) do not fit the arena", q->n_stop,
                            q->stop_off, q->stop_len);
            return -EINVAL;
        }
        a->rq.stop = a->stops;
        a->rq.n_stop = (int)q->n_stop;
    }
    if (q->n_stop_ids) {
        if (q->n_stop_ids > shm->arena_bytes / 4 ||
            !(a->stop_ids = (int32_t *)arena_copy(shm, q->stop_ids_off, 4 * q->n_stop_ids))) {
            slm_err_set(a->err, "stop ids: %u ids at %u do not fit the arena", q->n_stop_ids, q->stop_ids_off);
            return -EINVAL;
        }
        a->rq.stop_ids = a->stop_ids;
        a->rq.n_stop_ids = (int)q->n_stop_ids;
    }
    return 0;
}

/* DETOKENIZE: the ids' text as DATA, each id checked against the vocabulary first. */
static void decode_detokenize(const struct slm_service *svc, const int32_t *ids, uint32_t n,
                              struct slm_req_action *a)
{
    for (uint32_t i = 0; i < n; i++) {
        int32_t id;
        memcpy(&id, (const char *)ids + 4 * i, 4);
        if (id < 0 || id >= svc->model->cfg.n_vocab) {
            a->status = -EINVAL;
            slm_err_set(a->err, "token id %d at %u is outside the vocabulary (%d)", id, i, svc->model->cfg.n_vocab);
            return;
        }
    }
    if (!(a->data = detokenize(svc->tok, ids, (int)n, &a->len))) {
        a->status = -ENOMEM;
        slm_err_set(a->err, "out of memory");
        return;
    }
    a->kind = SLM_REQ_DATA;
}

/* INFO: the model, the backend that runs it and the engine's limits. */
static void decode_info(const struct slm_server *s, struct slm_req_action *a)
{
    struct slm_wire_info *w = calloc(1, sizeof *w);
    if (!w) {
        a->status = -ENOMEM;
        slm_err_set(a->err, "out of memory");
        return;
    }
    const struct slm_service *svc = &s->svc;
    const char *base = strrchr(svc->model_path, '/');
    snprintf(w->model, sizeof w->model, "%.127s", base ? base + 1 : svc->model_path);
    if (svc->model) {
        snprintf(w->arch, sizeof w->arch, "%s", svc->model->cfg.arch_name);
        w->n_vocab = (uint32_t)svc->model->cfg.n_vocab;
    }
    snprintf(w->backend, sizeof w->backend, "%s", svc->be ? svc->be->ops->name : "none");
    w->n_ctx = (uint32_t)s->eo.n_ctx;
    w->max_seqs = (uint32_t)s->eo.max_seqs, w->max_batch_tokens = (uint32_t)s->eo.max_batch_tokens;
    w->kv_blocks = (uint32_t)s->eo.n_blocks, w->block_size = (uint32_t)s->eo.block_size;
    a->data = w, a->len = sizeof *w, a->kind = SLM_REQ_DATA;
}

/* STATS: the server's counters and the engine's, at one instant each. */
static void decode_stats(struct slm_server *s, struct slm_req_action *a)
{
    struct slm_wire_stats *w = calloc(1, sizeof *w);
    if (!w) {
        a->status = -ENOMEM;
        slm_err_set(a->err, "out of memory");
        return;
    }
    struct slm_engine_counts ec;
    s->ops->counts(s, &ec);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->clients = (uint64_t)s->n_ready;   /* handshake done: not connections still silent */
    w->requests_active = (uint64_t)ec.unfinished;
    w->requests_queued = (uint64_t)ec.waiting;
    w->requests_total = __atomic_load_n(&s->n_requests_total, __ATOMIC_RELAXED);
    w->tokens_prompt = __atomic_load_n(&s->n_tokens_prompt, __ATOMIC_RELAXED);
    w->tokens_cached = __atomic_load_n(&s->n_tokens_cached, __ATOMIC_RELAXED);
    w->tokens_generated = __atomic_load_n(&s->n_tokens_generated, __ATOMIC_RELAXED);
    w->kv_blocks_total = (uint64_t)s->eo.n_blocks;
    w->kv_blocks_used = w->kv_blocks_total - (uint64_t)ec.free_blocks;
    w->tokens_per_s = s->tokens_per_s;
    w->uptime_s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - s->started_s;
    a->data = w, a->len = sizeof *w, a->kind = SLM_REQ_DATA;
}

void slm_req_decode(struct slm_server *s, const struct slm_shm *shm, uint32_t uid, const struct slm_sqe *q,
                    struct slm_req_action *a)
{
    memset(a, 0, offsetof(struct slm_req_action, stops));   /* err included; stops is filled as used */
    if (s->draining) {
        a->status = -ESHUTDOWN;
        slm_err_set(a->err, "slmd is stopping");
        return;
    }
    const unsigned known = SLM_SQE_IGNORE_EOS | SLM_SQE_PROMPT_LOGPROBS | SLM_SQE_ADD_GENERATION_PROMPT | SLM_SQE_PROGRESS;
    if (q->flags & ~known) {
        a->status = -EINVAL;
        slm_err_set(a->err, "flags 0x%x: bits 0x%x are not defined", q->flags, q->flags & ~known);
        return;
    }
    switch (q->op) {
    case SLM_OP_COMPLETE:
    case SLM_OP_TOKENIZE:
    case SLM_OP_CHAT: {
        if (q->op == SLM_OP_TOKENIZE && q->payload_len > SLM_TOKENIZE_MAX_BYTES) {
            a->status = -E2BIG;
            slm_err_set(a->err, "tokenize: %u bytes of text; at most %u", q->payload_len, SLM_TOKENIZE_MAX_BYTES);
            return;
        }
        /* A prompt's text, refused before it is tokenized (16 MiB took 2.5 s of the I/O
         * thread) when it is far longer than any text of a context's tokens. */
        uint64_t most = (uint64_t)SLM_REQ_PROMPT_BYTES_PER_TOKEN * (uint64_t)s->eo.n_ctx;
        if (most < SLM_REQ_PROMPT_MIN_BYTES) most = SLM_REQ_PROMPT_MIN_BYTES;
        if (q->op != SLM_OP_TOKENIZE && q->payload_len > most) {
            a->status = -E2BIG;
            slm_err_set(a->err, "prompt: %u bytes of text; at most %llu for a context of %d", q->payload_len,
                        (unsigned long long)most, s->eo.n_ctx);
            return;
        }
        int n = encode_prompt(&s->svc, shm, q, a);
        if (!n) return;
        if (q->op == SLM_OP_TOKENIZE) {
            a->data = a->ids, a->len = (size_t)n * sizeof *a->ids, a->kind = SLM_REQ_DATA;
            a->ids = NULL;
            return;
        }
        if ((a->status = build_request(s, shm, uid, q, a->ids, n, a))) return;
        a->kind = SLM_REQ_ADD;
        return;
    }
    case SLM_OP_COMPLETE_IDS:
    case SLM_OP_DETOKENIZE:
        if (q->op == SLM_OP_DETOKENIZE && q->n_items > SLM_DETOKENIZE_MAX_IDS) {
            a->status = -E2BIG;
            slm_err_set(a->err, "detokenize: %u token ids; at most %u", q->n_items, SLM_DETOKENIZE_MAX_IDS);
            return;
        }
        if (q->n_items == 0 || q->n_items > SLM_REQ_MAX_PAYLOAD / 4 || q->payload_len != q->n_items * 4 ||
            !(a->ids = (int32_t *)arena_copy(shm, q->payload_off, q->payload_len))) {
            a->status = -EINVAL;
            slm_err_set(a->err, "token ids: %u ids do not match the payload [%u, +%u)", q->n_items, q->payload_off,
                        q->payload_len);
            return;
        }
        if (q->op == SLM_OP_DETOKENIZE) {
            decode_detokenize(&s->svc, a->ids, q->n_items, a);
            return;
        }
        if ((a->status = build_request(s, shm, uid, q, a->ids, (int)q->n_items, a))) return;
        a->kind = SLM_REQ_ADD;
        return;
    case SLM_OP_CANCEL:
        a->kind = SLM_REQ_CANCEL, a->cancel = q->target;
        return;
    case SLM_OP_INFO:
        decode_info(s, a);
        return;
    case SLM_OP_STATS:
        decode_stats(s, a);
        return;
    default:
        a->status = -EINVAL;
        slm_err_set(a->err, "unknown operation %u", q->op);
    }
}

void slm_req_action_free(struct slm_req_action *a)
{
    free(a->data);
    free(a->ids);
    free(a->stop_buf);
    free(a->stop_block);
    free(a->stop_ids);
    a->data = NULL, a->ids = NULL, a->stop_buf = NULL, a->stop_block = NULL, a->stop_ids = NULL;
}
