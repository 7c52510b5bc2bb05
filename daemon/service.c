/* daemon/service.c - see service.h. */
#include "daemon/service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/models.h"
#include "daemon/engine/backends/select.h"
#include "daemon/engine/chat.h"
#include "daemon/engine/model.h"
#include "daemon/engine/tokenizer.h"
#include "kernels/cpu/matmul.h"

int slm_service_model_path(const char *given, char *path, size_t cap, char *err)
{
    if (given) return slm_models_resolve(given, path, cap, err);   /* a path, or a name in a store */
    const char *dir = getenv("SLM_MODEL_DIR");
    const char *home = getenv("HOME");
    int n;
    if (dir && *dir) n = snprintf(path, cap, "%s/%s", dir, SLM_DEFAULT_MODEL);
    else n = snprintf(path, cap, "%s/.cache/slmd/models/%s", home ? home : "", SLM_DEFAULT_MODEL);
    if (n < 0 || (size_t)n >= cap) {
        slm_err_set(err, "model path too long");
        return -ENAMETOOLONG;
    }
    if (access(path, R_OK) != 0) {
        slm_err_set(err, "the default model %s is not there; fetch it with packaging/fetch-models.sh or pass "
                    "--model FILE", path);
        return -ENOENT;
    }
    return 0;
}

int slm_service_load(struct slm_service *svc, const struct slm_service_opts *o, char *err)
{
    int rc;
    *svc = (struct slm_service){.chat_fmt = -1};
    if ((rc = slm_service_model_path(o->model && o->model[0] ? o->model : NULL, svc->model_path,
                                     sizeof svc->model_path, err)))
        return rc;
    rc = -EINVAL;
    if (!(svc->model = slm_model_load(svc->model_path, err))) goto fail;
    svc->model->progress = o->progress, svc->model->progress_ctx = o->progress_ctx;
    rc = slm_backend_select_bind(svc->model, o->backend, o->threads, o->gpu_fraction, &svc->be, err);
    svc->model->progress = NULL;
    if (rc) goto fail;
    rc = -EINVAL;
    if (!(svc->tok = slm_tok_create(svc->model->gguf, err))) goto fail;
    if (slm_tok_n_vocab(svc->tok) != svc->model->cfg.n_vocab) {
        slm_err_set(err, "%s: the vocabulary has %d tokens but the embedding has %d rows", svc->model_path,
                    slm_tok_n_vocab(svc->tok), svc->model->cfg.n_vocab);
        goto fail;
    }
    struct slm_gguf_str t;
    const int has_template = !slm_gguf_get_str(svc->model->gguf, "tokenizer.chat_template", &t, NULL);
    if (o->chat_template && o->chat_template[0] && strcmp(o->chat_template, "auto")) {
        svc->chat_fmt = slm_chat_detect(o->chat_template, strlen(o->chat_template));
        if (svc->chat_fmt < 0) {
            slm_err_set(err, "chat-template '%s' is not one of auto, chatml, llama3, gemma, phi3, mistral-v3",
                        o->chat_template);
            goto fail;
        }
        return 0;   /* a chosen format: no default system message from the model's template */
    }
    if (!has_template) {
        /* llama.cpp falls back to ChatML here; a Gemma 3 file without its template (the 270M
         * GGUF from PyPI) would then be prompted in a format it was not trained on. */
        svc->chat_fmt = svc->model->cfg.arch == SLM_ARCH_GEMMA3 ? SLM_CHAT_GEMMA : -1;
        if (svc->chat_fmt >= 0)
            slm_log(SLM_LOG_INFO, "the model has no chat template; using %s's (its architecture)",
                    slm_chat_format_name(svc->chat_fmt));
        return 0;
    }
    svc->chat_fmt = slm_chat_detect(t.ptr, (size_t)t.len);
    if (svc->chat_fmt == SLM_CHAT_CHATML &&
        slm_chat_default_system(t.ptr, (size_t)t.len, svc->chat_system, sizeof svc->chat_system) >= (int)sizeof svc->chat_system)
        svc->chat_system[0] = 0;   /* too long to be a default worth keeping whole */
    return 0;
fail:
    slm_service_unload(svc);
    return rc;
}

void slm_service_tty_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    static double last;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    if (done >= total) {
        fputs("\r\033[K", stderr);
        last = 0;
        return;
    }
    if (last && now - last < 0.1) return;
    last = now;
    fprintf(stderr, "\r\033[Kloading the model: %d%% (%.0f of %.0f MB)", (int)(100.0 * (double)done / (double)total),
            (double)done / 1e6, (double)total / 1e6);
}

char *slm_service_chat_render(const struct slm_service *svc, const struct slm_chat_msg *msgs, int n,
                              int add_generation_prompt, char *err)
{
    if (svc->chat_fmt < 0) {
        slm_err_set(err, "the model has no chat template slmd knows (ChatML, Llama 3, Gemma, Phi-3, Mistral); "
                    "send the formatted text instead, or start slmd with --chat-template NAME");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || (strcmp(msgs[i].role, "system") && strcmp(msgs[i].role, "user") &&
                              strcmp(msgs[i].role, "assistant"))) {
            slm_err_set(err, "message %d: role '%.32s' is not system, user or assistant", i,
                        msgs[i].role ? msgs[i].role : "(none)");
            return NULL;
        }
    struct slm_chat_msg *all = malloc(((size_t)n + 1) * sizeof *all);
    if (!all) {
        slm_err_set(err, "out of memory");
        return NULL;
    }
    int k = 0;
    if (svc->chat_system[0] && (n == 0 || !msgs[0].role || strcmp(msgs[0].role, "system") != 0))
        all[k++] = (struct slm_chat_msg){"system", svc->chat_system};
    for (int i = 0; i < n; i++) all[k++] = msgs[i];
    int len = slm_chat_apply(svc->chat_fmt, all, k, add_generation_prompt, NULL, 0);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!text || slm_chat_apply(svc->chat_fmt, all, k, add_generation_prompt, text, (size_t)len + 1) != len) {
        slm_err_set(err, "cannot apply the %s chat template to these messages", slm_chat_format_name(svc->chat_fmt));
        free(text);
        text = NULL;
    }
    free(all);
    return text;
}

void slm_service_unload(struct slm_service *svc)
{
    slm_tok_destroy(&svc->tok);
    slm_model_free(&svc->model);
    slm_backend_destroy(&svc->be);
    svc->chat_fmt = -1;
    svc->chat_system[0] = 0;
}

int slm_service_ctx(const struct slm_model *m, int requested)
{
    if (requested > 0) return requested;
    int train = m->cfg.n_ctx_train;
    return train > 0 && train < 8192 ? train : 8192;
}

int slm_service_check_ctx(const struct slm_model *m, int requested, int force, char *err)
{
    int train = m->cfg.n_ctx_train;
    if (requested <= train || train <= 0 || force) return 0;
    slm_err_set(err, "--ctx-size %d is above the %d tokens the model was trained on; pass --force-ctx to use it "
                "anyway (the output degrades past %d)", requested, train, train);
    return -EINVAL;
}

void slm_service_backend_desc(const struct slm_service *svc, char *buf, size_t cap)
{
    if (!strcmp(svc->be->ops->name, "cpu"))
        snprintf(buf, cap, "cpu backend, %d threads, %s kernels, %d-lane attention", svc->be->n_threads,
                 slm_cpu_kernels_name(), slm_cpu_lanes());
    else
        snprintf(buf, cap, "%s backend", svc->be->ops->name);
}
