/*
 * daemon/service.h - what `slmd serve` and `slmd run` both load before they build an engine:
 * the model file (the default one when none is named), the backend, the tokenizer and the
 * chat template, checked against each other, and the default context. One place, so that
 * the two commands cannot disagree.
 */
#ifndef SLM_DAEMON_SERVICE_H
#define SLM_DAEMON_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#define SLM_DEFAULT_MODEL "SmolLM2-135M-Instruct.Q4_1.gguf"

struct slm_model;
struct slm_backend;
struct slm_tokenizer;

struct slm_service_opts {
    const char *model;        /* a GGUF path; NULL or "": the default model in the cache */
    const char *backend;      /* auto, cpu, cuda (backends/select.h) */
    int threads;              /* cpu: 0 = every online CPU */
    double gpu_fraction;      /* cuda: share of the free device memory the KV cache may take */
    const char *chat_template;/* NULL or "auto": the model's template, else its architecture's (gemma3:
                                 gemma); or a built-in name (chatml, llama3, gemma, phi3, mistral-v3) */
    /* Optional: the weights' loading as it goes (struct slm_model's progress). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
};

struct slm_service {
    char model_path[1024];
    struct slm_model *model;
    struct slm_backend *be;
    struct slm_tokenizer *tok;
    int chat_fmt;             /* enum slm_chat_format: the model's template, or chat_template's; < 0: none */
    char chat_system[1024];   /* the template's default system message; "": none */
};

/* The model to load: `given` if not NULL (a path, or a name resolved through the model
 * stores and the catalogue: common/models.h), else the default model in $SLM_MODEL_DIR,
 * else ~/.cache/slmd/models. Returns 0, or -ENOENT / -ENAMETOOLONG with a reason (how to
 * fetch it). */
int slm_service_model_path(const char *given, char *path, size_t cap, char *err);

/* Loads the model, creates the backend, binds the weights to it and builds the tokenizer,
 * checking that the vocabulary matches the embedding. The backend is chosen and the weights
 * bound by slm_backend_select_bind (with "auto", the CPU where the GPU cannot take the model). 0, or -errno with err
 * (svc then holds nothing: the partial work is undone). */
int slm_service_load(struct slm_service *svc, const struct slm_service_opts *o, char *err);

/* A progress hook for slm_service_opts that draws "loading the model: P% (X of Y MB)" on
 * stderr, redrawn at most every 100 ms, and clears the line once every weight is loaded: set
 * it when stderr is a terminal (as llama.cpp's CLI, silent otherwise). ctx is unused. */
void slm_service_tty_progress(void *ctx, uint64_t done, uint64_t total);

/* A conversation msgs[n] through the model's chat template, with the template's default
 * system message first when msgs[0] is not a system message (as llama.cpp's Jinja rendering
 * of the GGUF's template does; docs/chat-templates.md). Returns the text (caller frees), or
 * NULL with err (no template slmd knows, a bad role, no memory). */
struct slm_chat_msg;
char *slm_service_chat_render(const struct slm_service *svc, const struct slm_chat_msg *msgs, int n,
                              int add_generation_prompt, char *err);

/* Frees what slm_service_load made; svc may be partly or never loaded. */
void slm_service_unload(struct slm_service *svc);

/* The context: `requested` when > 0, else the model's training context capped at 8192
 * (8192 when the file does not say). */
int slm_service_ctx(const struct slm_model *m, int requested);

/* Whether a requested context may be used: 0 when it is at most the model's training
 * context (or the file does not say, or force is set), else -EINVAL with a reason that
 * names both numbers and --force-ctx. */
int slm_service_check_ctx(const struct slm_model *m, int requested, int force, char *err);

/* One phrase for logs: "cpu backend, 2 threads, avx2 kernels, 8-lane attention" (the lane layout
 * of llama.cpp's build for this CPU that the attention follows: docs/numerics.md) or "cuda backend". */
void slm_service_backend_desc(const struct slm_service *svc, char *buf, size_t cap);

#endif
