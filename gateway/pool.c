/*
 * gateway/pool.c - slm-gateway's connections to slmd (gateway.h): a stack of idle libslm
 * clients, so that an HTTP request costs no handshake; the model's description; the texts of
 * single tokens for top logprobs.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void slm_gw_pool_init(struct slm_gw_pool *p, const char *socket)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->socket = socket;
}

void slm_gw_pool_free(struct slm_gw_pool *p)
{
    for (int i = 0; i < p->n_idle; i++) slm_close(&p->idle[i]);
    p->n_idle = 0;
    for (int i = 0; i < p->n_token_text; i++) free(p->token_text[i]);
    free(p->token_text);
    p->token_text = NULL;
    while (p->retired) {
        struct slm_gw_retired *r = p->retired;
        p->retired = r->next;
        for (int i = 0; i < r->n; i++) free(r->texts[i]);
        free(r->texts);
        free(r);
    }
    pthread_mutex_destroy(&p->lock);
}

int slm_gw_pool_get(struct slm_gw_pool *p, struct slm_client **c, int *fresh, char *err)
{
    pthread_mutex_lock(&p->lock);
    *c = p->n_idle > 0 ? p->idle[--p->n_idle] : NULL;
    pthread_mutex_unlock(&p->lock);
    if (fresh) *fresh = *c == NULL;
    if (*c) return 0;
    int rc = slm_connect(p->socket, "slm-gateway", c);
    if (rc < 0)
        slm_err_set(err, "cannot connect to slmd at %s: %s", p->socket ? p->socket : "the default socket",
                    slm_last_error()[0] ? slm_last_error() : slm_strerror(rc));
    return rc;
}

void slm_gw_pool_put(struct slm_gw_pool *p, struct slm_client **c, int healthy)
{
    if (!*c) return;
    if (healthy) {
        pthread_mutex_lock(&p->lock);
        if (p->n_idle < SLM_GW_POOL_MAX) {
            p->idle[p->n_idle++] = *c;
            *c = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    slm_close(c);   /* NULL when it went back to the pool */
}

void slm_gw_pool_flush(struct slm_gw_pool *p)
{
    struct slm_client *idle[SLM_GW_POOL_MAX];
    pthread_mutex_lock(&p->lock);
    int n = p->n_idle;
    memcpy(idle, p->idle, (size_t)n * sizeof idle[0]);
    p->n_idle = 0;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++) slm_close(&idle[i]);
}

int slm_gw_pool_info(struct slm_gw_pool *p, struct slm_client *c, int refresh, struct slm_info *info)
{
    pthread_mutex_lock(&p->lock);
    int have = p->have_info && !refresh;
    if (have) *info = p->info;
    pthread_mutex_unlock(&p->lock);
    if (have) return 0;
    int rc = slm_info(c, info);
    if (rc < 0) return rc;
    pthread_mutex_lock(&p->lock);
    if (p->have_info && (p->info.n_vocab != info->n_vocab || strcmp(p->info.model, info->model) != 0)) {
        /* slmd reloaded another model: the old texts are retired (another thread may hold one of
           them), not freed, until slm_gw_pool_free. */
        struct slm_gw_retired *r = malloc(sizeof *r);
        if (r) {
            *r = (struct slm_gw_retired){p->token_text, p->n_token_text, p->retired};
            p->retired = r;
            p->token_text = NULL;
            p->n_token_text = 0;
        }
        p->n_token_text = 0;
    }
    p->info = *info;
    p->have_info = 1;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

const char *slm_gw_pool_token_text(struct slm_gw_pool *p, struct slm_client *c, int32_t id)
{
    const char *out = "";
    pthread_mutex_lock(&p->lock);
    if (!p->token_text && p->have_info && p->info.n_vocab > 0) {
        p->token_text = calloc((size_t)p->info.n_vocab, sizeof *p->token_text);
        if (p->token_text) p->n_token_text = p->info.n_vocab;
    }
    int known = id >= 0 && id < p->n_token_text;
    if (known && p->token_text[id]) out = p->token_text[id];
    pthread_mutex_unlock(&p->lock);
    if (!known || out[0]) return out;
    /* Outside the lock: a round trip to slmd. Two threads may both ask; the first one kept wins. */
    char *text = NULL;
    if (slm_detokenize(c, &id, 1, &text) < 0) return "";
    pthread_mutex_lock(&p->lock);
    if (id < p->n_token_text && p->token_text) {
        if (!p->token_text[id]) {
            p->token_text[id] = text;
            text = NULL;
        }
        out = p->token_text[id];
    }
    pthread_mutex_unlock(&p->lock);
    free(text);
    return out;
}
