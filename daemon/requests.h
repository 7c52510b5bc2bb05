/*
 * daemon/requests.h - one client submission (a copied SQE) turned into what it asks for: the
 * payload copied out of the client's arena and checked, a chat rendered through the model's
 * template, a prompt tokenized, stop strings and ids parsed, ids detokenized, the INFO and
 * STATS replies. It knows nothing of connections: conn.c hands it the SQE and the client's
 * shared memory, and carries out the action it returns (answer, add to the engine, cancel).
 *
 * Hostile input: every offset and length is checked against the arena before a byte is
 * copied, every count against its limit, every token id against the vocabulary.
 */
#ifndef SLM_DAEMON_REQUESTS_H
#define SLM_DAEMON_REQUESTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "daemon/engine/engine.h"
#include "ipc/protocol.h"

struct slm_server;
struct slm_shm;

#define SLM_REQ_MAX_PAYLOAD (16u << 20)   /* bytes of one prompt, id list or stop list */
#define SLM_REQ_MAX_STRINGS 1024          /* chat messages or stop strings in one request */
#define SLM_REQ_PRIORITY_MIN (-1000000)   /* the lowest priority; the highest is max-priority */
#define SLM_REQ_PROMPT_BYTES_PER_TOKEN 32 /* a prompt's text: at most this per context token ... */
#define SLM_REQ_PROMPT_MIN_BYTES (256u << 10) /* ... and never less than this */

enum slm_req_kind {
    SLM_REQ_NONE = 0,   /* nothing to do (an error, if status says so, is to be answered) */
    SLM_REQ_DATA,       /* answer with data[0..len) as DATA completions */
    SLM_REQ_ADD,        /* add rq to the engine (conn.c sets rq.user) */
    SLM_REQ_CANCEL,     /* cancel the client's request whose user_data is `cancel` */
};

struct slm_req_action {
    enum slm_req_kind kind;
    int status;                 /* 0, or -errno: answer with an ERROR completion saying err */
    char err[SLM_ERR_LEN];
    void *data;                 /* DATA (owned) */
    size_t len;
    struct slm_request rq;      /* ADD: points into the owned buffers below */
    uint64_t cancel;            /* CANCEL */
    /* owned: freed by slm_req_action_free */
    int32_t *ids;
    char *stop_buf, *stop_block;
    int32_t *stop_ids;
    const char *stops[SLM_REQ_MAX_STRINGS];
};

/*
 * Decodes q, a private copy of one SQE of a client whose shared memory is shm and whose uid
 * owns its requests (fair share). Fills *a: its kind and what that kind needs, or a status
 * and err for the client (a draining daemon answers -ESHUTDOWN). Reads s (model, tokenizer,
 * chat template, engine options, counters) and never changes it but for the engine's
 * counts through s->ops. The caller frees *a with slm_req_action_free.
 */
void slm_req_decode(struct slm_server *s, const struct slm_shm *shm, uint32_t uid, const struct slm_sqe *q,
                    struct slm_req_action *a);

void slm_req_action_free(struct slm_req_action *a);

#endif
