/*
 * daemon/run.c - `slmd run`: the one-shot mode. Loads a model, encodes one prompt
 * (raw text, or one chat turn through the model's template), runs it through the
 * continuous-batching engine (the daemon's, with one request), streams the completion
 * to stdout and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/args.h"
#include "common/log.h"
#include "common/parse.h"
#include "daemon/commands.h"
#include "daemon/engine/backends/select.h"
#include "daemon/engine/chat.h"
#include "daemon/engine/engine.h"
#include "daemon/engine/runner.h"
#include "daemon/engine/sampler.h"
#include "daemon/engine/stop.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/flags.h"
#include "daemon/service.h"

struct run_opts {
    const char *model;
    const char *prompt;
    const char *system;
    int chat;
    int max_tokens;
    int threads;
    int ctx_size;
    int batch;             /* --max-batch-tokens */
    int max_seqs;
    int block_size;
    unsigned long long kv_mem;   /* 0: enough for the context */
    const char *backend;         /* auto, cpu, cuda */
    double gpu_fraction;         /* cuda: share of the free device memory the KV cache may take */
    int print_ids;
    const char *perplexity;      /* a text file: score it instead of generating */
    int n_chunks;                /* with perplexity: at most this many chunks (0: all) */
    struct slm_sampling sampling;
    int seed_given;
    int force_ctx;               /* --ctx-size may exceed the model's training context */
    const char *chat_template;   /* --chat-template: NULL = auto */
};

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: slmd run [--model FILE] --prompt TEXT [options]\n"
            "       slmd run [--model FILE] --perplexity FILE [--ctx-size N] [--chunks N]\n"
            "  -m, --model FILE      GGUF model (default: %s in the model cache)\n"
            "  -p, --prompt TEXT     the prompt ('-' reads standard input)\n"
            "  --chat                wrap the prompt as one user turn in the model's chat template\n"
            "  --system TEXT         a system message (with --chat)\n"
            "  --chat-template NAME  auto (the model's; a gemma3 file without one: gemma), chatml,\n"
            "                        llama3, gemma, phi3 or mistral-v3\n"
            "  -n, --max-tokens N    tokens to generate at most (default 256; 0 = up to the context)\n"
            "  --temperature T       0 = greedy (default 0.8)\n"
            "  --top-k N             (default 40; 0 = off)\n"
            "  --top-p P             (default 0.95; 1 = off)\n"
            "  --min-p P             (default 0.05; 0 = off)\n"
            "  --repeat-penalty F    (default 1.0 = off)\n"
            "  --presence-penalty F  (default 0)\n"
            "  --frequency-penalty F (default 0)\n"
            "  -s, --seed S          sampling seed (default: random)\n"
            "  --backend NAME        auto, cpu or cuda (default auto: cuda when a device is present)\n"
            "  --gpu-memory-fraction F  cuda: share of the free device memory the KV cache may take\n"
            "                        (0 < F <= 1, default 0.9)\n"
            "  -t, --threads N       CPU threads (default: all online CPUs)\n"
            "  -c, --ctx-size N      context length (default: the model's, at most 8192); above the\n"
            "                        model's training context only with --force-ctx\n"
            "  --force-ctx           allow --ctx-size above the training context (quality degrades)\n"
            "  --max-batch-tokens N  tokens per engine step (default 512; -b, --batch-size are the same)\n"
            "  --max-seqs N          sequences per engine step (default 64)\n"
            "  --kv-cache-mem SIZE   KV cache size, e.g. 256M (default: enough for the context)\n"
            "  --block-size N        tokens per KV block (default 16)\n"
            "  --print-token-ids     print only the generated token ids, space-separated\n"
            "  --perplexity FILE     the perplexity of a text, as llama-perplexity computes it: chunks of\n"
            "                        --ctx-size tokens (default 512), each scored on its second half\n"
            "  --chunks N            with --perplexity: at most N chunks (default: all)\n"
            "  --log-level LEVEL     err, warning, notice, info, debug (default warning)\n"
            "  -h, --help            this text\n",
            SLM_DEFAULT_MODEL);
}

static int parse_run_args(int argc, char **argv, struct run_opts *o)
{
    enum { O_MODEL = 256, O_PROMPT, O_SYSTEM, O_CHAT, O_MAXTOK, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_REP, O_PRES,
           O_FREQ, O_SEED, O_THREADS, O_CTX, O_BATCH, O_SEQS, O_KVMEM, O_BLOCK, O_IDS, O_LOG, O_HELP, O_PPL,
           O_CHUNKS, O_BACKEND, O_GPUFRAC, O_FORCE_CTX, O_TEMPLATE };
    static const struct slm_arg_opt opts[] = {
        {"model", 'm', 1, O_MODEL},           {"prompt", 'p', 1, O_PROMPT},
        {"system", 0, 1, O_SYSTEM},           {"chat", 0, 0, O_CHAT},
        {"max-tokens", 'n', 1, O_MAXTOK},     {"temperature", 0, 1, O_TEMP},
        {"top-k", 0, 1, O_TOPK},              {"top-p", 0, 1, O_TOPP},
        {"min-p", 0, 1, O_MINP},              {"repeat-penalty", 0, 1, O_REP},
        {"presence-penalty", 0, 1, O_PRES},   {"frequency-penalty", 0, 1, O_FREQ},
        {"seed", 's', 1, O_SEED},             {"threads", 't', 1, O_THREADS},
        {"ctx-size", 'c', 1, O_CTX},          {"force-ctx", 0, 0, O_FORCE_CTX},
        {"batch-size", 'b', 1, O_BATCH},      {"max-batch-tokens", 0, 1, O_BATCH},
        {"max-seqs", 0, 1, O_SEQS},           {"kv-cache-mem", 0, 1, O_KVMEM},
        {"block-size", 0, 1, O_BLOCK},        {"print-token-ids", 0, 0, O_IDS},
        {"log-level", 0, 1, O_LOG},           {"perplexity", 0, 1, O_PPL},
        {"chunks", 0, 1, O_CHUNKS},           {"backend", 0, 1, O_BACKEND},
        {"gpu-memory-fraction", 0, 1, O_GPUFRAC}, {"chat-template", 0, 1, O_TEMPLATE},
        {"help", 'h', 0, O_HELP},
    };
    memset(o, 0, sizeof *o);
    o->max_tokens = 256;
    o->batch = 512;
    o->max_seqs = 64;
    o->block_size = 16;
    o->backend = "auto";
    o->gpu_fraction = 0.9;
    slm_sampling_defaults(&o->sampling);
    char **pos = calloc((size_t)argc + 1, sizeof *pos), err[SLM_ERR_LEN];
    if (!pos) return -ENOMEM;
    struct slm_args it;
    slm_args_init(&it, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos);
    int c;
    long long v;
    double d;
    while ((c = slm_args_next(&it, err)) != SLM_ARGS_END) {
        if (c < 0) {
            fprintf(stderr, "slmd run: %s (see slmd run --help)\n", err);
            free(pos);
            return -EINVAL;
        }
        const char *name = it.arg, *optarg = it.value;
        int rc = 0;
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_PROMPT: o->prompt = optarg; break;
        case O_SYSTEM: o->system = optarg; break;
        case O_CHAT: o->chat = 1; break;
        case O_TEMPLATE: o->chat_template = optarg; break;
        case O_IDS: o->print_ids = 1; break;
        case O_PPL: o->perplexity = optarg; break;
        case O_BACKEND:
            if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "cuda")) {
                fprintf(stderr, "slmd run: --backend: '%s' is not one of auto, cpu, cuda\n", optarg);
                rc = -EINVAL;
            }
            o->backend = optarg;
            break;
        case O_GPUFRAC:
            rc = slm_flag_float("--gpu-memory-fraction", optarg, 0, 1, &d);
            if (!rc && !(d > 0)) {
                fprintf(stderr, "slmd run: --gpu-memory-fraction: %g is out of range (above 0, at most 1)\n", d);
                rc = -EINVAL;
            }
            o->gpu_fraction = d;
            break;
        case O_CHUNKS: rc = slm_flag_int("--chunks", optarg, 1, 1 << 24, &v); o->n_chunks = (int)v; break;
        case O_MAXTOK: rc = slm_flag_int("--max-tokens", optarg, 0, 1 << 24, &v); o->max_tokens = (int)v; break;
        case O_TOPK: rc = slm_flag_int("--top-k", optarg, 0, 1 << 24, &v); o->sampling.top_k = (int)v; break;
        case O_THREADS: rc = slm_flag_int("--threads", optarg, 1, 256, &v); o->threads = (int)v; break;
        case O_CTX: rc = slm_flag_int("--ctx-size", optarg, 1, 1 << 20, &v); o->ctx_size = (int)v; break;
        case O_BATCH: rc = slm_flag_int(name, optarg, 1, 65536, &v); o->batch = (int)v; break;
        case O_SEQS: rc = slm_flag_int("--max-seqs", optarg, 1, 4096, &v); o->max_seqs = (int)v; break;
        case O_BLOCK: rc = slm_flag_int("--block-size", optarg, 1, 1024, &v); o->block_size = (int)v; break;
        case O_KVMEM: rc = slm_flag_size("--kv-cache-mem", optarg, 1, 1ull << 46, &o->kv_mem); break;
        case O_SEED:
            rc = slm_flag_int("--seed", optarg, 0, INT64_MAX, &v);
            o->sampling.seed = (uint64_t)v;
            o->seed_given = 1;
            break;
        case O_TEMP: rc = slm_flag_float("--temperature", optarg, 0, 100, &d); o->sampling.temperature = (float)d; break;
        case O_TOPP: rc = slm_flag_float("--top-p", optarg, 0, 1, &d); o->sampling.top_p = (float)d; break;
        case O_MINP: rc = slm_flag_float("--min-p", optarg, 0, 1, &d); o->sampling.min_p = (float)d; break;
        case O_REP: rc = slm_flag_float("--repeat-penalty", optarg, 0, 100, &d); o->sampling.repeat_penalty = (float)d; break;
        case O_PRES: rc = slm_flag_float("--presence-penalty", optarg, -2, 2, &d); o->sampling.presence_penalty = (float)d; break;
        case O_FREQ: rc = slm_flag_float("--frequency-penalty", optarg, -2, 2, &d); o->sampling.frequency_penalty = (float)d; break;
        case O_LOG:
            if (slm_log_set_level(optarg)) {
                fprintf(stderr, "slmd run: --log-level: '%s' is not one of err, warning, notice, info, debug\n",
                        optarg);
                rc = -EINVAL;
            }
            break;
        case O_FORCE_CTX: o->force_ctx = 1; break;
        case O_HELP: run_usage(stdout); free(pos); return 1;
        }
        if (rc) {
            free(pos);
            return rc;
        }
    }
    if (it.n_pos) {
        fprintf(stderr, "slmd run: unexpected argument '%s'%s (see slmd run --help)\n", pos[0],
                o->prompt ? "" : "; the prompt goes after --prompt (-p)");
        free(pos);
        return -EINVAL;
    }
    free(pos);
    if (!o->prompt == !o->perplexity) {
        fprintf(stderr, "slmd run: %s (see slmd run --help)\n",
                o->prompt ? "--prompt and --perplexity exclude each other" : "--prompt is required");
        return -EINVAL;
    }
    if (o->perplexity && (o->chat || o->print_ids)) {
        fprintf(stderr, "slmd run: --perplexity takes neither --chat nor --print-token-ids\n");
        return -EINVAL;
    }
    if (o->n_chunks && !o->perplexity) {
        fprintf(stderr, "slmd run: --chunks needs --perplexity\n");
        return -EINVAL;
    }
    if (o->max_seqs > o->batch) {
        fprintf(stderr, "slmd run: --max-seqs (%d) cannot exceed --max-batch-tokens (%d)\n", o->max_seqs, o->batch);
        return -EINVAL;
    }
    if (o->system && !o->chat) {
        fprintf(stderr, "slmd run: --system needs --chat\n");
        return -EINVAL;
    }
    if (!o->seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        o->sampling.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    if (slm_sampling_validate(&o->sampling, err)) {
        fprintf(stderr, "slmd run: %s\n", err);
        return -EINVAL;
    }
    return 0;
}

/* The prompt text after the chat template (with the template's default system message
 * when --system is not given), or the raw prompt. Caller frees. */
static char *render_prompt(const struct run_opts *o, const struct slm_service *svc, char *err)
{
    if (!o->chat) return strdup(o->prompt);
    if (svc->chat_fmt < 0) {
        struct slm_gguf_str t;
        if (slm_gguf_get_str(svc->model->gguf, "tokenizer.chat_template", &t, NULL))
            slm_err_set(err, "%s: --chat: the model has no chat template (tokenizer.chat_template); name one with "
                        "--chat-template", svc->model_path);
        else
            slm_err_set(err, "%s: --chat: the model's chat template is not one slmd knows (ChatML, Llama 3, Gemma, "
                        "Phi-3, Mistral); pass the formatted text without --chat, or name one with --chat-template",
                        svc->model_path);
        return NULL;
    }
    struct slm_chat_msg msgs[2];
    int n = 0;
    if (o->system) msgs[n++] = (struct slm_chat_msg){"system", o->system};
    msgs[n++] = (struct slm_chat_msg){"user", o->prompt};
    char why[SLM_ERR_LEN];
    char *text = slm_service_chat_render(svc, msgs, n, 1, why);
    if (!text) slm_err_set(err, "--chat: %s", why);
    return text;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct stream {
    const struct run_opts *o;
    double t_first;        /* when the first token came */
    int n_gen;
    enum slm_engine_finish finish;
    int progress_shown;    /* a progress line is on stderr, to clear before the first token */
};

static void on_event(void *p, const struct slm_engine_event *ev)
{
    struct stream *st = p;
    if (ev->token >= 0) {
        if (!st->n_gen) st->t_first = now_s();
        if (st->progress_shown) {
            fputs("\r\033[K", stderr);
            st->progress_shown = 0;
        }
        if (st->o->print_ids) printf("%s%d", st->n_gen ? " " : "", ev->token);
        st->n_gen++;
    }
    if (!st->o->print_ids && ev->text_len > 0) fwrite(ev->text, 1, (size_t)ev->text_len, stdout);
    fflush(stdout);
    if (ev->finish) st->finish = ev->finish;
}

/* KV blocks of the (global) pool: --kv-cache-mem's worth, else enough for the context (on cuda,
 * at most the backend's budget); the local pool of a sliding-window model comes out of those
 * bytes first. 0 with err if too small. */
static int kv_blocks(const struct run_opts *o, const struct slm_model *m, int n_ctx, char *err)
{
    size_t per_block = slm_engine_block_bytes(m, o->block_size);
    const struct slm_engine_opts probe = {.block_size = o->block_size, .max_batch_tokens = o->batch, .max_seqs = 1};
    uint64_t local = (uint64_t)slm_engine_local_blocks(m, &probe) * slm_engine_local_block_bytes(m, o->block_size);
    if (!o->kv_mem) {
        uint64_t n = (uint64_t)(n_ctx + o->block_size - 1) / (uint64_t)o->block_size;
        uint64_t limit = slm_backend_kv_limit(m->be);
        uint64_t fit = limit > local ? (limit - local) / per_block : 0;
        if (fit < 1) {
            slm_err_set(err, "the device has no room for one KV block of %zu bytes", per_block);
            return 0;
        }
        return (int)(n < fit ? n : fit);
    }
    unsigned long long n = o->kv_mem > local ? (o->kv_mem - local) / per_block : 0;
    if (n < 1) {
        slm_err_set(err, "--kv-cache-mem: %llu bytes hold no KV block (one block of %d tokens takes %zu bytes, after "
                    "%llu bytes of the sliding-window layers' pool)", o->kv_mem, o->block_size, per_block,
                    (unsigned long long)local);
        return 0;
    }
    return n > (1u << 30) ? 1 << 30 : (int)n;
}

/* Generates from the encoded prompt through the engine; prints pieces (or ids) as they come. */
static int generate(const struct run_opts *o, struct slm_model *m, const struct slm_tokenizer *tok, int n_ctx,
                    const int32_t *prompt, int n_prompt, char *err)
{
    int n_blocks = kv_blocks(o, m, n_ctx, err);
    if (!n_blocks) return -EINVAL;
    /* One request: the local pool of a sliding-window model holds one sequence's window. */
    struct slm_engine_opts eo = {.n_blocks = n_blocks, .block_size = o->block_size, .max_batch_tokens = o->batch,
                                 .max_seqs = o->max_seqs, .n_ctx = n_ctx};
    const struct slm_engine_opts one = {.n_blocks = n_blocks, .block_size = o->block_size, .max_batch_tokens = o->batch,
                                        .max_seqs = 1};
    eo.n_local_blocks = slm_engine_local_blocks(m, &one);
    struct slm_engine *e = slm_engine_create(m, tok, &eo, err);
    if (!e) return -ENOMEM;
    char kv_desc[160];
    slm_engine_kv_desc(m, &eo, kv_desc, sizeof kv_desc);
    slm_log(SLM_LOG_INFO, "engine: KV cache %s, %d tokens and %d sequences per step", kv_desc, o->batch, o->max_seqs);
    struct slm_request q = {.prompt = prompt, .n_prompt = n_prompt, .sampling = o->sampling,
                            .max_tokens = o->max_tokens > 0 ? o->max_tokens : n_ctx};
    int64_t id = slm_engine_add(e, &q, err);
    if (id < 0) {
        slm_engine_destroy(&e);
        return (int)id;
    }
    struct stream st = {.o = o};
    double t0 = now_s();
    int rc, steps = 0;
    /* Prompt processing that takes over a second shows its progress on a terminal (stderr):
     * the engine prefills at most --max-batch-tokens a step, so the steps count the tokens. */
    int progress = isatty(STDERR_FILENO);
    while ((rc = slm_engine_step(e, on_event, &st)) > 0) {
        steps++;
        double dt = now_s() - t0;
        if (!progress || st.n_gen || dt < 1.0) continue;
        long done = (long)steps * o->batch < n_prompt ? (long)steps * o->batch : n_prompt;
        fprintf(stderr, "\rslmd run: prompt %ld/%d tokens, %.0f s left ", done, n_prompt,
                dt * (double)(n_prompt - done) / (double)done);
        st.progress_shown = 1;
    }
    if (st.progress_shown) fputs("\r\033[K", stderr);
    double t2 = now_s();
    printf("\n");
    fflush(stdout);
    slm_engine_destroy(&e);
    if (rc < 0) {
        slm_err_set(err, "engine step failed: %s", strerror(-rc));
        return rc;
    }
    double t1 = st.n_gen ? st.t_first : t2;
    slm_log(SLM_LOG_INFO, "prompt: %d tokens, first token after %.1f ms (%.1f tokens/s); generated %d tokens in "
            "%.1f ms (%.1f tokens/s after the first); finish: %s", n_prompt, (t1 - t0) * 1e3, n_prompt / (t1 - t0),
            st.n_gen, (t2 - t0) * 1e3, st.n_gen > 1 ? (st.n_gen - 1) / (t2 - t1) : 0.0,
            st.finish == SLM_ENGINE_FINISH_STOP ? "stop" : st.finish == SLM_ENGINE_FINISH_LENGTH ? "length" : "other");
    return 0;
}

/* The perplexity of text the way llama.cpp's llama-perplexity computes it: the text is encoded
 * (with BOS when the model adds one), cut into chunks of n_ctx tokens (BOS put over each
 * chunk's first token), each chunk evaluated from scratch, and the logprobs of its second half
 * (positions n_ctx/2 + 1 .. n_ctx - 1) summed. Prints each chunk's running estimate, then the
 * result. docs/sampling.md ("Perplexity"). */
static int perplexity(const struct run_opts *o, struct slm_model *m, const struct slm_tokenizer *tok, int n_ctx,
                      const char *text, char *err)
{
    int rc = -ENOMEM;
    int32_t *ids = NULL;
    float *logits = NULL;
    double *nlls = NULL;
    struct slm_runner *r = NULL;
    size_t len = strlen(text);
    int n = slm_tok_encode(tok, text, len, 1, 0, NULL, 0);
    int add_bos = n > 0 && slm_tok_encode(tok, text, len, 0, 0, NULL, 0) < n;
    if (n < 2 * n_ctx) {
        slm_err_set(err, "%s: %d tokens; perplexity with a context of %d needs at least %d", o->perplexity,
                    n < 0 ? 0 : n, n_ctx, 2 * n_ctx);
        return -EINVAL;
    }
    int n_chunks = n / n_ctx;
    if (o->n_chunks && o->n_chunks < n_chunks) n_chunks = o->n_chunks;
    ids = malloc((size_t)n * sizeof *ids);
    logits = malloc((size_t)n_ctx * (size_t)m->cfg.n_vocab * sizeof *logits);
    nlls = malloc((size_t)n_ctx * sizeof *nlls);
    if (!ids || !logits || !nlls || slm_tok_encode(tok, text, len, 1, 0, ids, n) != n) {
        slm_err_set(err, "cannot encode %s", o->perplexity);
        goto out;
    }
    if (!(r = slm_runner_create(m, n_ctx, o->batch < n_ctx ? o->batch : n_ctx, err))) goto out;
    double nll = 0;
    long count = 0;
    double t0 = now_s();
    for (int c = 0; c < n_chunks; c++) {
        int bad = 0;
        rc = slm_runner_score_chunk(r, ids + (size_t)c * (size_t)n_ctx, n_ctx, add_bos ? slm_tok_bos(tok) : -1,
                                    logits, nlls, &bad);
        if (rc == -EDOM) {
            slm_err_set(err, "chunk %d, position %d: the logits are not finite", c + 1, bad);
            goto out;
        } else if (rc < 0) {
            slm_err_set(err, "evaluating chunk %d: %s", c + 1, strerror(-rc));
            goto out;
        }
        for (int j = 0; j < rc; j++) nll += nlls[j];
        count += rc;
        printf("[%d]%.4f%s", c + 1, exp(nll / (double)count), c + 1 < n_chunks ? "," : "\n");
        fflush(stdout);
    }
    printf("perplexity: %.4f over %ld tokens (%d chunks of %d, scored on their second halves; %.1f s)\n",
           exp(nll / (double)count), count, n_chunks, n_ctx, now_s() - t0);
    rc = 0;
out:
    slm_runner_destroy(&r);
    free(nlls);
    free(logits);
    free(ids);
    return rc;
}

int slm_cmd_run(int argc, char **argv)
{
    struct run_opts o;
    slm_log_level = SLM_LOG_WARNING;
    int rc = parse_run_args(argc, argv, &o);
    if (rc) return rc > 0 ? 0 : 2;

    char err[SLM_ERR_LEN] = "";
    char *stdin_prompt = NULL, *text = NULL;
    int32_t *ids = NULL;
    struct slm_service svc = {.chat_fmt = -1};
    int status = 1;

    if (o.perplexity) {
        FILE *f = strcmp(o.perplexity, "-") ? fopen(o.perplexity, "rb") : stdin;
        if (!f) {
            slm_err_set(err, "%s: %s", o.perplexity, strerror(errno));
            goto out;
        }
        stdin_prompt = slm_read_all(f, err);
        if (f != stdin) fclose(f);
        if (!stdin_prompt) goto out;
    } else if (strcmp(o.prompt, "-") == 0) {
        stdin_prompt = slm_read_all(stdin, err);
        if (!stdin_prompt) goto out;
        o.prompt = stdin_prompt;
    }
    struct slm_service_opts so = {.model = o.model, .backend = o.backend, .threads = o.threads,
                                  .gpu_fraction = o.gpu_fraction, .chat_template = o.chat_template,
                                  .progress = isatty(STDERR_FILENO) ? slm_service_tty_progress : NULL};
    if (slm_service_load(&svc, &so, err)) goto out;
    struct slm_model *m = svc.model;
    const struct slm_tokenizer *tok = svc.tok;
    char be_desc[96];
    slm_service_backend_desc(&svc, be_desc, sizeof be_desc);
    slm_log(SLM_LOG_INFO, "model %s: %s, %d layers, dim %d, vocab %d; %s", svc.model_path, m->cfg.arch_name,
            m->cfg.n_layer, m->cfg.dim, m->cfg.n_vocab, be_desc);
    int n_ctx = slm_service_ctx(m, o.ctx_size);
    if (slm_service_check_ctx(m, o.ctx_size, o.force_ctx, err)) goto out;
    if (o.perplexity) {
        if (perplexity(&o, m, tok, o.ctx_size ? o.ctx_size : 512, stdin_prompt, err)) goto out;
        status = 0;
        goto out;
    }
    if (!(text = render_prompt(&o, &svc, err))) goto out;
    int n = slm_tok_encode(tok, text, strlen(text), 1, o.chat, NULL, 0);
    if (n < 0) {
        slm_err_set(err, "cannot encode the prompt: %s", strerror(-n));
        goto out;
    }
    if (n == 0) {
        slm_err_set(err, "the prompt encodes to no tokens");
        goto out;
    }
    if (n > n_ctx) {
        slm_err_set(err, "the prompt is %d tokens, longer than the context (%d tokens; see --ctx-size)", n, n_ctx);
        goto out;
    }
    ids = malloc((size_t)n * sizeof *ids);
    if (!ids || slm_tok_encode(tok, text, strlen(text), 1, o.chat, ids, n) != n) {
        slm_err_set(err, "cannot encode the prompt");
        goto out;
    }
    if (generate(&o, m, tok, n_ctx, ids, n, err)) goto out;
    status = 0;
out:
    if (status) fprintf(stderr, "slmd run: %s\n", err[0] ? err : "failed");
    slm_service_unload(&svc);
    free(ids);
    free(text);
    free(stdin_prompt);
    return status;
}
