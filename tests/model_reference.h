/* tests/model_reference.h - the float64 evaluation of a model's ops, and the perplexity of a model
 * (tests/shadow_backend.h, tests/cuda_shadow.cpp, test_cuda_model).
 *
 * ref_matmul, ref_rmsnorm, ref_attention, gelu_tanh: float64 from unquantized activations; the
 * weights are the file's, dequantized exactly; K and V are rounded to f16 as the KV pools hold
 * them, q is not; ref_attention needs the whole sequence in its batch (nothing cached).
 * perplexity: llama-perplexity's definition, with each scored token's negative log-likelihood.
 * Include once per program, after the engine headers,
 * kernels/cpu/dequant.h, <cerrno>, <cmath>, <cstring>, <string> and <vector>. */
#ifndef SLM_TESTS_MODEL_REFERENCE_H
#define SLM_TESTS_MODEL_REFERENCE_H

/* y (n, w->rows) = x (n, cols) . w^T in float64, from the weight's dequantized rows. */
static std::vector<double> ref_matmul(const struct slm_weight *w, const float *x, int n)
{
    std::vector<double> y((size_t)n * (size_t)w->rows);
    std::vector<float> row((size_t)w->cols);
    for (int64_t r = 0; r < w->rows; r++) {
        slm_cpu_dequantize_row(w->type, (const char *)w->data + (size_t)r * w->row_bytes, row.data(), w->cols);
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * (size_t)w->cols;
            double s = 0;
            for (int64_t c = 0; c < w->cols; c++) s += (double)row[c] * (double)xt[c];
            y[(size_t)t * (size_t)w->rows + (size_t)r] = s;
        }
    }
    return y;
}

static std::vector<double> ref_rmsnorm(const float *x, const struct slm_weight *gamma, int n, int dim, float eps)
{
    std::vector<float> g((size_t)dim);
    slm_cpu_dequantize_row(gamma->type, gamma->data, g.data(), dim);
    std::vector<double> y((size_t)n * (size_t)dim);
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * (size_t)dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xt[i] * xt[i];
        double s = 1.0 / sqrt(ss / dim + (double)eps);
        for (int i = 0; i < dim; i++) y[(size_t)t * dim + i] = xt[i] * s * g[i];
    }
    return y;
}

/* float64 attention of the batch from its own q, k, v (the whole sequence in this one step):
 * NEOX or NORM RoPE, GQA, causal, the window; k and v rounded to f16 as the KV pools hold them. */
static std::vector<double> ref_attention(const struct slm_batch *b, const struct slm_attn_params *p, const float *q,
                                  const float *k, const float *v)
{
    const int n = b->n_tokens, hd = p->head_dim, nh = p->n_head, nkv = p->n_head_kv, rd = p->rope_dim;
    auto rope = [&](std::vector<double> &x, int pos) {
        for (int j = 0; j < rd / 2; j++) {
            double f = p->rope_factors ? (double)p->rope_factors[j] : 1.0;
            double th = (double)pos * pow((double)p->rope_base, -2.0 * j / rd) / f;
            double cs = cos(th) * p->rope_mscale, sn = sin(th) * p->rope_mscale;
            int a = p->rope_layout == SLM_ROPE_NEOX ? j : 2 * j, c = p->rope_layout == SLM_ROPE_NEOX ? j + rd / 2 : 2 * j + 1;
            double x0 = x[a], x1 = x[c];
            x[a] = x0 * cs - x1 * sn;
            x[c] = x0 * sn + x1 * cs;
        }
    };
    std::vector<double> kr((size_t)n * nkv * hd), vr((size_t)n * nkv * hd), out((size_t)n * nh * hd);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nkv; h++) {
            std::vector<double> x(k + ((size_t)t * nkv + h) * hd, k + ((size_t)t * nkv + h + 1) * hd);
            rope(x, b->pos[t]);
            for (int i = 0; i < hd; i++) {
                size_t at = ((size_t)t * nkv + h) * hd + i;
                kr[at] = slm_half_to_f32(slm_f32_to_half((float)x[i]));
                vr[at] = slm_half_to_f32(slm_f32_to_half(v[at]));
            }
        }
    for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
            std::vector<double> x(q + ((size_t)t * nh + h) * hd, q + ((size_t)t * nh + h + 1) * hd);
            rope(x, b->pos[t]);
            int g = h / (nh / nkv);
            std::vector<double> s((size_t)n, -INFINITY);
            double mx = -INFINITY;
            for (int u = 0; u < n; u++) {
                if (b->seq_row[u] != b->seq_row[t] || b->pos[u] > b->pos[t]) continue;
                if (p->window > 0 && b->pos[u] <= b->pos[t] - p->window) continue;
                double d = 0;
                for (int i = 0; i < hd; i++) d += x[i] * kr[((size_t)u * nkv + g) * hd + i];
                s[u] = d * p->scale;
                if (s[u] > mx) mx = s[u];
            }
            double z = 0;
            for (int u = 0; u < n; u++) z += s[u] == -INFINITY ? 0 : exp(s[u] - mx);
            for (int u = 0; u < n; u++) {
                if (s[u] == -INFINITY) continue;
                double a = exp(s[u] - mx) / z;
                for (int i = 0; i < hd; i++) out[((size_t)t * nh + h) * hd + i] += a * vr[((size_t)u * nkv + g) * hd + i];
            }
        }
    return out;
}

static double gelu_tanh(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

#define PPL_CTX 128
/* Perplexity as llama-perplexity computes it (and `slmd run --perplexity`, through the same
 * slm_runner_score_chunk): `chunks` chunks of PPL_CTX tokens, each its own sequence from position 0
 * with bos (>= 0: the model adds one) put over its first token, the logprobs of each chunk's second
 * half (positions PPL_CTX/2 + 1 .. PPL_CTX - 1) scored; with nll, each scored token's negative
 * log-likelihood too, in order. -1 when the model fails. */
static double perplexity(struct slm_model *m, const std::vector<int32_t> &toks, int chunks, int32_t bos,
                         std::vector<double> *nll = nullptr)
{
    char err[SLM_ERR_LEN];
    double sum_nll = 0;
    long count = 0;
    std::vector<float> all((size_t)PPL_CTX * (size_t)m->cfg.n_vocab);
    std::vector<double> part((size_t)PPL_CTX);
    if (nll) nll->clear();
    struct slm_runner *r = slm_runner_create(m, PPL_CTX, PPL_CTX, err);
    for (int c = 0; c < chunks; c++) {
        int n = r ? slm_runner_score_chunk(r, toks.data() + (size_t)c * PPL_CTX, PPL_CTX, bos, all.data(),
                                           part.data(), nullptr)
                  : -1;
        if (n < 0) {
            slm_runner_destroy(&r);
            return -1;
        }
        for (int j = 0; j < n; j++) sum_nll += part[(size_t)j];
        if (nll) nll->insert(nll->end(), part.begin(), part.begin() + n);
        count += n;
    }
    slm_runner_destroy(&r);
    return exp(sum_nll / (double)count);
}

/* The tokens of the text file at path (BOS first when the model adds one) into *ids; 0, or -errno
 * with err (also when there are fewer than `need`). */
static int text_tokens(const struct slm_tokenizer *tok, const char *path, int need, std::vector<int32_t> *ids,
                       char *err)
{
    std::string text;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, SLM_ERR_LEN, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    char buf[65536];
    for (size_t k; (k = fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, k);
    fclose(f);
    int n = slm_tok_encode(tok, text.data(), text.size(), 1, 0, NULL, 0);
    ids->assign(n > 0 ? (size_t)n : 0, 0);
    if (n < need || slm_tok_encode(tok, text.data(), text.size(), 1, 0, ids->data(), n) != n) {
        snprintf(err, SLM_ERR_LEN, "%s: %d tokens, expected at least %d", path, n < 0 ? 0 : n, need);
        return -EINVAL;
    }
    return 0;
}

/* The BOS id perplexity() puts over each chunk's first token: the tokenizer's when encoding
 * text adds one, else -1. */
static int32_t perplexity_bos(const struct slm_tokenizer *tok)
{
    const char text[] = "a";
    return slm_tok_encode(tok, text, 1, 1, 0, NULL, 0) > slm_tok_encode(tok, text, 1, 0, 0, NULL, 0)
               ? slm_tok_bos(tok)
               : -1;
}

#endif
