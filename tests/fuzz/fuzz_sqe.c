/*
 * tests/fuzz/fuzz_sqe.c - a client's submissions as slmd decodes them (daemon/requests.c,
 * slm_req_decode), on a server that holds the default model's vocabulary, chat template and a
 * real engine (a small KV cache; no step ever runs the model).
 *
 * Input: the SQE (128 bytes; a shorter input is padded with zeros), then the client's payload
 * arena (the rest, exactly: ASan sees a read one byte past it). Decoding must refuse what is
 * wrong with a status and a reason, and what it accepts must be what it says: DATA bytes all
 * readable (TOKENIZE: ids of the vocabulary; DETOKENIZE: valid UTF-8), a request whose stop
 * strings are C strings and whose prompt (from text) is in the vocabulary. An accepted request
 * then goes where conn.c sends it: the engine's add (its own checks), then cancel and a step
 * that reaps it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"
#include "daemon/config.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/model.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/requests.h"
#include "daemon/server.h"
#include "ipc/shm.h"
#include "tests/fuzz/fuzz.h"

static struct slm_server server;
static int n_vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct slm_server *s = &server;
    char err[SLM_ERR_LEN];
    struct slm_service_opts so = {.model = fuzz_model_path(), .backend = "cpu", .threads = 1};
    if (slm_service_load(&s->svc, &so, err)) {
        fprintf(stderr, "fuzz_sqe: %s\n", err);
        exit(1);
    }
    slm_config_defaults(&s->cfg);
    s->eo = (struct slm_engine_opts){.n_blocks = 32, .block_size = 16, .max_batch_tokens = 512, .max_seqs = 8,
                                     .n_ctx = 512};
    if (!(s->engine = slm_engine_create(s->svc.model, s->svc.tok, &s->eo, err))) {
        fprintf(stderr, "fuzz_sqe: %s\n", err);
        exit(1);
    }
    s->ops = &slm_server_engine_ops;
    n_vocab = slm_tok_n_vocab(s->svc.tok);
    return 0;
}

static void reap(void *ctx, const struct slm_engine_event *ev)
{
    FUZZ_CHECK(ev->token == -1 && ev->finish == SLM_ENGINE_FINISH_CANCELLED, "a cancelled request produced token %d",
               ev->token);
}

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct slm_server *s = &server;
    struct slm_sqe q;
    memset(&q, 0, sizeof q);
    memcpy(&q, data, size < sizeof q ? size : sizeof q);
    size_t arena_bytes = size > sizeof q ? size - sizeof q : 0;
    uint8_t *arena = malloc(arena_bytes ? arena_bytes : 1);
    memcpy(arena, data + sizeof q, arena_bytes);
    struct slm_shm shm = {.fd = -1, .arena = arena, .arena_bytes = (uint32_t)arena_bytes};

    struct slm_req_action a;
    slm_req_decode(s, &shm, 1000, &q, &a);
    if (a.status) {
        FUZZ_CHECK(a.kind == SLM_REQ_NONE, "op %u: status %d with kind %d", q.op, a.status, a.kind);
        FUZZ_CHECK(a.status < 0 && a.err[0], "op %u: status %d without a reason", q.op, a.status);
    }
    switch (a.kind) {
    case SLM_REQ_NONE:
        FUZZ_CHECK(a.status != 0, "op %u: nothing to do and no error", q.op);
        break;
    case SLM_REQ_DATA: {
        FUZZ_CHECK(a.data != NULL, "op %u: DATA without data", q.op);
        const uint8_t *p = a.data;
        for (size_t i = 0; i < a.len; i++) sink += p[i];
        if (q.op == SLM_OP_TOKENIZE) {
            FUZZ_CHECK(a.len % 4 == 0 && a.len > 0, "tokenize: %zu bytes", a.len);
            for (size_t i = 0; i < a.len / 4; i++) {
                int32_t id;
                memcpy(&id, p + 4 * i, 4);
                FUZZ_CHECK(id >= 0 && id < n_vocab, "tokenize: id %d", id);
            }
        }
        if (q.op == SLM_OP_DETOKENIZE) FUZZ_CHECK(slm_utf8_valid(p, a.len), "detokenize: not UTF-8");
        if (q.op == SLM_OP_INFO) FUZZ_CHECK(a.len == sizeof(struct slm_wire_info), "info: %zu bytes", a.len);
        if (q.op == SLM_OP_STATS) FUZZ_CHECK(a.len == sizeof(struct slm_wire_stats), "stats: %zu bytes", a.len);
        break;
    }
    case SLM_REQ_ADD: {
        const struct slm_request *r = &a.rq;
        FUZZ_CHECK(r->prompt && r->n_prompt >= 1, "a request of %d prompt ids", r->n_prompt);
        for (int i = 0; i < r->n_prompt; i++) sink += (uint64_t)r->prompt[i];
        if (q.op != SLM_OP_COMPLETE_IDS)
            for (int i = 0; i < r->n_prompt; i++)
                FUZZ_CHECK(r->prompt[i] >= 0 && r->prompt[i] < n_vocab, "prompt id %d of the text", r->prompt[i]);
        FUZZ_CHECK(r->n_stop == (int)q.n_stop && r->n_stop_ids == (int)q.n_stop_ids, "stop counts");
        for (int i = 0; i < r->n_stop; i++) sink += strlen(r->stop[i]);
        for (int i = 0; i < r->n_stop_ids; i++) sink += (uint64_t)r->stop_ids[i];
        char err[SLM_ERR_LEN] = "";
        int64_t id = s->ops->add(s, r, err);
        if (id >= 0) {
            FUZZ_CHECK(s->ops->cancel(s, id) == 0, "cancel of request %lld", (long long)id);
            FUZZ_CHECK(s->ops->step(s, reap, NULL) == 0, "the step that reaps a cancelled request");
        } else {
            FUZZ_CHECK(err[0] != 0, "the engine refused a request without a reason (%lld)", (long long)id);
        }
        FUZZ_CHECK(s->ops->n_unfinished(s) == 0, "%d requests left in the engine", s->ops->n_unfinished(s));
        break;
    }
    case SLM_REQ_CANCEL:
        FUZZ_CHECK(a.cancel == q.target, "cancel of %llu for %llu", (unsigned long long)a.cancel,
                   (unsigned long long)q.target);
        break;
    }
    slm_req_action_free(&a);
    free(arena);
    return 0;
}
