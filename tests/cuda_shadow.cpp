/* cuda_shadow: where the cuda backend's numbers part from the cpu backend's, op by op, and the
 * perplexity of each backend with every scored token's negative log-likelihood.
 *
 * Usage: cuda_shadow MODEL.gguf [TEXT_FILE] [N_TOKENS]
 *          N_TOKENS (default 128) of TEXT_FILE (default bench/data/perplexity.txt) in one step
 *          through the shadow backend (tests/shadow_backend.h); prints, per kind of op (matmuls
 *          by weight type and shape), the mean and worst relative rms difference of cuda against
 *          cpu and the mean relative rms error of each against float64 (SLM_SHADOW_VERBOSE=1:
 *          every call).
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
        else if (name == "f64") be = slm_f64_backend_create(err);
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
