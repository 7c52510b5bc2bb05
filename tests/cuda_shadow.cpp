/* cuda_shadow: where the cuda backend's numbers part from the cpu backend's, op by op, and the
 * perplexity of each backend with every scored token's negative log-likelihood.
 *
 * Usage: cuda_shadow MODEL.gguf [TEXT_FILE] [N_TOKENS]
 *          N_TOKENS (default 128) of TEXT_FILE (default bench/data/perplexity.txt) in one step
 *          through the shadow backend (tests/shadow_backend.h); prints, per kind of op (matmuls
 *          by weight type and shape), the mean and worst relative rms difference of cuda against
 *          cpu and the mean relative rms error of each against float64 (SLM_SHADOW_VERBOSE=1:
 *          every call, labelled by the KV index of the layer's pool: L3 a global layer's, W3 a
 *          sliding-window layer's).
 *        cuda_shadow --ppl CHUNKS MODEL.gguf [TEXT_FILE] [cpu,f64,cuda]
 *          the perplexity (llama-perplexity's definition, chunks of 128; model_reference.h) on
 *          each backend named, and a line "nll NAME v1 v2 ..." of its scored tokens.
 * A diagnostic (docs/numerics.md, "Perplexity on the GPU"); test_cuda_model checks the op table. */
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

extern "C" {
#include "daemon/engine/backends/backend.h"
#include "daemon/engine/model.h"
#include "daemon/engine/runner.h"
#include "daemon/engine/tokenizer.h"
#include "kernels/cpu/dequant.h"
#include "common/log.h"
}
#include "tests/model_reference.h"
#include "tests/shadow_backend.h"

namespace {

int f64_matmul(struct slm_backend *, int n_w, const struct slm_weight *const *w, const float *x, int n,
               float *const *y, int accumulate)
{
    for (int j = 0; j < n_w; j++) {
        std::vector<double> r = ref_matmul(w[j], x, n);
        for (size_t i = 0; i < r.size(); i++) y[j][i] = (float)(accumulate ? (double)y[j][i] + r[i] : r[i]);
    }
    return 0;
}

int f64_rmsnorm(struct slm_backend *, const float *x, const struct slm_weight *gamma, int n, int dim, float eps,
                float *out)
{
    std::vector<double> r = ref_rmsnorm(x, gamma, n, dim, eps);
    for (size_t i = 0; i < r.size(); i++) out[i] = (float)r[i];
    return 0;
}

int f64_attention(struct slm_backend *, struct slm_kv_pool *, int, const struct slm_batch *b,
                  const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    for (int t = 0; t < b->n_tokens; t++)
        if (b->pos[t] >= b->n_tokens) return -ENOTSUP;   /* positions cached by an earlier batch */
    std::vector<double> r = ref_attention(b, p, q, k, v);
    for (size_t i = 0; i < r.size(); i++) out[i] = (float)r[i];
    return 0;
}

int f64_glu(int gelu, const float *gate, const float *up, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        double x = gate[i];
        out[i] = (float)((gelu ? gelu_tanh(x) : x / (1.0 + exp(-x))) * (double)up[i]);
    }
    return 0;
}

int f64_swiglu(struct slm_backend *, const float *gate, const float *up, size_t n, float *out)
{
    return f64_glu(0, gate, up, n, out);
}

int f64_geglu(struct slm_backend *, const float *gate, const float *up, size_t n, float *out)
{
    return f64_glu(1, gate, up, n, out);
}

struct slm_backend_ops f64_ops;

/* The cpu backend with its matmuls, RMSNorms, attention and GLUs evaluated in float64
 * (model_reference.h), each output rounded to float; the embedding, scale, add and bias ops stay
 * the cpu's (exact, or one float rounding). It holds no KV: every batch must be whole sequences
 * from position 0 (one perplexity chunk; -ENOTSUP otherwise). NULL with err on failure;
 * slm_backend_destroy frees it. */
struct slm_backend *f64_backend_create(char *err)
{
    struct slm_backend *be = slm_backend_cpu_create(2, err);
    if (!be) return NULL;
    f64_ops = *be->ops;
    f64_ops.name = "f64";
    f64_ops.matmul = f64_matmul;
    f64_ops.rmsnorm = f64_rmsnorm;
    f64_ops.attention = f64_attention;
    f64_ops.swiglu = f64_swiglu;
    f64_ops.geglu = f64_geglu;
    be->ops = &f64_ops;
    return be;
}

/* --ppl CHUNKS MODEL TEXT BACKENDS: the perplexity on each of the comma-separated backends
 * (cpu, f64, cuda). */
int ppl_main(int chunks, const char *model, const char *text, const char *list)
{
    char err[SLM_ERR_LEN] = "";
    std::string l = list;
    for (size_t at = 0; at <= l.size();) {
        size_t end = l.find(',', at);
        if (end == std::string::npos) end = l.size();
        std::string name = l.substr(at, end - at);
        at = end + 1;
        struct slm_backend *be = NULL;
        if (name == "cpu") be = slm_backend_cpu_create(2, err);
        else if (name == "f64") be = f64_backend_create(err);
        else if (name == "cuda") be = slm_backend_cuda_create(0, 0.9, err);
        else {
            fprintf(stderr, "cuda_shadow: unknown backend '%s' (cpu, f64, cuda)\n", name.c_str());
            return 2;
        }
        if (!be) {
            fprintf(stderr, "cuda_shadow: %s\n", err);
            return 1;
        }
        struct slm_model *m = slm_model_load(model, err);
        struct slm_tokenizer *tok = m ? slm_tok_create(m->gguf, err) : NULL;
        if (!m || !tok || slm_model_bind(m, be, err)) {
            fprintf(stderr, "cuda_shadow: %s\n", err);
            return 1;
        }
        std::vector<int32_t> ids;
        if (text_tokens(tok, text, chunks * PPL_CTX, &ids, err)) {
            fprintf(stderr, "cuda_shadow: %s\n", err);
            return 1;
        }
        printf("%s:\n", name.c_str());
        fflush(stdout);
        std::vector<double> nll;
        double p = perplexity(m, ids, chunks, perplexity_bos(tok), &nll);
        printf("perplexity %s (%d chunks of %d): %.4f\n", name.c_str(), chunks, PPL_CTX, p);
        printf("nll %s", name.c_str());
        for (double t : nll) printf(" %.6f", t);
        printf("\n");
        fflush(stdout);
        slm_tok_destroy(&tok);
        slm_model_free(&m);
        slm_backend_destroy(&be);
    }
    return 0;
}

}   // namespace

int main(int argc, char **argv)
{
    setenv("SLM_EMU_WORKERS", "2", 0);
    setenv("SLM_CUDA_GRAPHS", "0", 1);
    if (argc >= 4 && !strcmp(argv[1], "--ppl"))
        return ppl_main(atoi(argv[2]), argv[3], argc > 4 ? argv[4] : "bench/data/perplexity.txt",
                        argc > 5 ? argv[5] : "cpu,f64");
    if (argc < 2) {
        fprintf(stderr, "usage: cuda_shadow MODEL.gguf [TEXT_FILE] [N_TOKENS]\n"
                        "       cuda_shadow --ppl CHUNKS MODEL.gguf [TEXT_FILE] [cpu,f64,cuda]\n");
        return 2;
    }
    const char *text_path = argc > 2 ? argv[2] : "bench/data/perplexity.txt";
    int n_tok = argc > 3 ? atoi(argv[3]) : 128;
    char err[SLM_ERR_LEN] = "";
    int rc = shadow_run(argv[1], text_path, n_tok, err);
    if (rc) {
        fprintf(stderr, "cuda_shadow: %s\n", err);
        return 1;
    }
    printf("%s, %d tokens in one step: cuda against cpu on identical inputs, op by op\n", argv[1], n_tok);
    shadow_print();
    return 0;
}
