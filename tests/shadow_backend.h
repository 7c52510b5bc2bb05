/* tests/shadow_backend.h - the cuda backend's ops checked op by op against the cpu backend's
 * and float64 (tests/cuda_shadow.cpp, test_cuda_model).
 *
 * shadow_backend_create(cpu, gpu): a backend that runs every op on the cuda backend gpu and again
 * on the cpu backend on a host copy of the very inputs the cuda op got (the cpu's own copy of
 * each weight, its own KV pool fed the same k and v), compares the two outputs and, for the
 * matmuls, RMSNorms, GLUs and the attention, both against a float64 evaluation of the same inputs
 * (model_reference.h). So each op's error is its own, free of the drift that a whole-model
 * comparison accumulates. Statistics per kind of op (matmuls by weight type and shape) in
 * S.rows, in first-seen order S.order; shadow_print prints them. One shadow a program (S).
 * Include once, after model_reference.h, <map> and <string>. */
#ifndef SLM_TESTS_SHADOW_BACKEND_H
#define SLM_TESTS_SHADOW_BACKEND_H

namespace {

struct stat_row {
    int calls = 0;
    double sum_rel = 0, max_rel = 0, max_abs = 0;
    double sum_gpu_ref = 0, sum_cpu_ref = 0;
    int n_ref = 0;
};

struct shadow {
    struct slm_backend *gpu, *cpu;
    std::map<const void *, struct slm_weight *> w;   /* a weight's data in the mapping -> the cpu's copy */
    std::map<const struct slm_kv_pool *, struct slm_kv_pool *> pool;
    std::map<std::string, stat_row> rows;
    std::vector<std::string> order;
    int verbose = 0, layer = -1;   /* layer: the last attention's KV index within its pool */
    bool windowed = false;         /* ...a sliding-window layer's pool (printed W, else L) */
};

shadow S;

std::vector<float> host(const float *p, size_t n)
{
    std::vector<float> h(n);
    if (n && S.gpu->ops->to_host(S.gpu, p, n, h.data())) {
        fprintf(stderr, "shadow backend: to_host failed\n");
        exit(1);
    }
    return h;
}

double rel_rms(const float *a, const double *ref, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        d2 += d * d;
        r2 += ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

/* Records cuda's output g against cpu's c (and both against ref when given). */
void record(const std::string &key, const float *g, const float *c, size_t n, const double *ref)
{
    std::vector<double> cd(c, c + n);
    double rel = rel_rms(g, cd.data(), n), ma = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)g[i] - (double)c[i]);
        if (!(d <= ma)) ma = d;
    }
    if (!S.rows.count(key)) S.order.push_back(key);
    stat_row &r = S.rows[key];
    r.calls++;
    r.sum_rel += rel;
    if (!(rel <= r.max_rel)) r.max_rel = rel;
    if (ma > r.max_abs) r.max_abs = ma;
    double eg = 0, ec = 0;
    if (ref) {
        eg = rel_rms(g, ref, n);
        ec = rel_rms(c, ref, n);
        r.sum_gpu_ref += eg;
        r.sum_cpu_ref += ec;
        r.n_ref++;
    }
    if (S.verbose) {
        printf("%c%-3d %-40s cuda-cpu rel %.3e max %.3e", S.windowed ? 'W' : 'L', S.layer, key.c_str(), rel, ma);
        if (ref) printf("  cuda-f64 %.3e cpu-f64 %.3e", eg, ec);
        printf("\n");
    }
}

std::string wkey(const char *op, const struct slm_weight *w)
{
    char b[96];
    const char *t = slm_qtype_name(w->type);
    snprintf(b, sizeof b, "%s %s %lldx%lld", op, t ? t : "?", (long long)w->rows, (long long)w->cols);
    return b;
}

struct slm_weight *cw(const struct slm_weight *w)
{
    auto it = S.w.find(w->data);
    if (it == S.w.end()) {
        fprintf(stderr, "shadow backend: a weight that was not loaded\n");
        exit(1);
    }
    return it->second;
}

/* ---- the wrapped ops ---- */

void sh_destroy(struct slm_backend *be)
{
    free(be);
}

void *sh_alloc(struct slm_backend *, size_t bytes)
{
    return S.gpu->ops->alloc(S.gpu, bytes);
}

void sh_free(struct slm_backend *, void *p)
{
    S.gpu->ops->free(S.gpu, p);
}

int sh_load_weight(struct slm_backend *, struct slm_weight *w)
{
    struct slm_weight *c = new slm_weight(*w);
    c->be_data = NULL;
    int rc = S.cpu->ops->load_weight(S.cpu, c);
    if (!rc) rc = S.gpu->ops->load_weight(S.gpu, w);
    if (rc) return rc;
    if (S.w.count(w->data)) {   /* the same tensor bound twice (a tied head): one cpu copy */
        if (S.cpu->ops->unload_weight) S.cpu->ops->unload_weight(S.cpu, c);
        delete c;
        return 0;
    }
    S.w[w->data] = c;
    return 0;
}

void sh_unload_weight(struct slm_backend *, struct slm_weight *w)
{
    auto it = S.w.find(w->data);
    if (it != S.w.end()) {
        if (S.cpu->ops->unload_weight) S.cpu->ops->unload_weight(S.cpu, it->second);
        delete it->second;
        S.w.erase(it);
    }
    if (S.gpu->ops->unload_weight) S.gpu->ops->unload_weight(S.gpu, w);
}

int sh_kv_alloc(struct slm_backend *, struct slm_kv_pool *pool)
{
    struct slm_kv_pool *c = new slm_kv_pool(*pool);
    c->mem = NULL;
    c->local = NULL;
    int rc = S.cpu->ops->kv_alloc(S.cpu, c);
    if (!rc) rc = S.gpu->ops->kv_alloc(S.gpu, pool);
    if (rc) return rc;
    S.pool[pool] = c;
    return 0;
}

void sh_kv_free(struct slm_backend *, struct slm_kv_pool *pool)
{
    auto it = S.pool.find(pool);
    if (it != S.pool.end()) {
        S.cpu->ops->kv_free(S.cpu, it->second);
        delete it->second;
        S.pool.erase(it);
    }
    S.gpu->ops->kv_free(S.gpu, pool);
}

int sh_embed(struct slm_backend *, const struct slm_weight *table, const int32_t *tokens, int n, float *out)
{
    int rc = S.gpu->ops->embed(S.gpu, table, tokens, n, out);
    if (rc) return rc;
    size_t m = (size_t)n * (size_t)table->cols;
    std::vector<float> c(m), g = host(out, m);
    if ((rc = S.cpu->ops->embed(S.cpu, cw(table), tokens, n, c.data()))) return rc;
    record("embed", g.data(), c.data(), m, NULL);
    return 0;
}

int sh_rmsnorm(struct slm_backend *, const float *x, const struct slm_weight *gamma, int n, int dim, float eps,
               float *out)
{
    size_t m = (size_t)n * (size_t)dim;
    std::vector<float> xh = host(x, m), c(m);
    int rc = S.gpu->ops->rmsnorm(S.gpu, x, gamma, n, dim, eps, out);
    if (rc) return rc;
    std::vector<float> g = host(out, m);
    if ((rc = S.cpu->ops->rmsnorm(S.cpu, xh.data(), cw(gamma), n, dim, eps, c.data()))) return rc;
    std::vector<double> ref = ref_rmsnorm(xh.data(), gamma, n, dim, eps);
    char key[64];
    snprintf(key, sizeof key, "rmsnorm dim %d", dim);
    record(key, g.data(), c.data(), m, ref.data());
    return 0;
}

/* The matmuls of one call on the cpu, from xh (host), compared with the cuda's y. */
int shadow_matmul(const char *op, int n_w, const struct slm_weight *const *w, const float *xh, int n,
                  float *const *y, const std::vector<std::vector<float>> &y0)
{
    for (int j = 0; j < n_w; j++) {
        size_t m = (size_t)n * (size_t)w[j]->rows;
        std::vector<float> c = y0.empty() ? std::vector<float>(m) : y0[j];
        const struct slm_weight *cwj = cw(w[j]);
        float *cy = c.data();
        int rc = S.cpu->ops->matmul(S.cpu, 1, &cwj, xh, n, &cy, !y0.empty());
        if (rc) return rc;
        std::vector<float> g = host(y[j], m);
        std::vector<double> ref;
        if ((double)w[j]->rows * (double)w[j]->cols * n <= 2e9) {   /* the float64 dot products: a few seconds at most */
            ref = ref_matmul(w[j], xh, n);
            if (!y0.empty())
                for (size_t i = 0; i < m; i++) ref[i] += y0[j][i];
        }
        record(wkey(op, w[j]), g.data(), c.data(), m, ref.empty() ? NULL : ref.data());
    }
    return 0;
}

int sh_matmul(struct slm_backend *, int n_w, const struct slm_weight *const *w, const float *x, int n,
              float *const *y, int accumulate)
{
    std::vector<float> xh = host(x, (size_t)n * (size_t)w[0]->cols);
    std::vector<std::vector<float>> y0;
    if (accumulate)
        for (int j = 0; j < n_w; j++) y0.push_back(host(y[j], (size_t)n * (size_t)w[j]->rows));
    int rc = S.gpu->ops->matmul(S.gpu, n_w, w, x, n, y, accumulate);
    if (rc) return rc;
    return shadow_matmul(accumulate ? "matmul+=" : "matmul", n_w, w, xh.data(), n, y, y0);
}

int sh_norm_matmul(struct slm_backend *, const float *x, const struct slm_weight *gamma, int dim, float eps,
                   int n_w, const struct slm_weight *const *w, int n, float *const *y)
{
    size_t m = (size_t)n * (size_t)dim;
    std::vector<float> xh = host(x, m), xn(m);
    int rc = S.gpu->ops->norm_matmul(S.gpu, x, gamma, dim, eps, n_w, w, n, y);
    if (rc) return rc;
    if ((rc = S.cpu->ops->rmsnorm(S.cpu, xh.data(), cw(gamma), n, dim, eps, xn.data()))) return rc;
    return shadow_matmul("norm_matmul", n_w, w, xn.data(), n, y, {});
}

int sh_add_bias(struct slm_backend *, float *x, const struct slm_weight *bias, int n)
{
    size_t m = (size_t)n * (size_t)bias->cols;
    std::vector<float> c = host(x, m);
    int rc = S.gpu->ops->add_bias(S.gpu, x, bias, n);
    if (rc) return rc;
    std::vector<float> g = host(x, m);
    if ((rc = S.cpu->ops->add_bias(S.cpu, c.data(), cw(bias), n))) return rc;
    record("add_bias", g.data(), c.data(), m, NULL);
    return 0;
}

int sh_attention(struct slm_backend *, struct slm_kv_pool *pool, int layer, const struct slm_batch *b,
                 const struct slm_attn_params *p, float *q, float *k, const float *v, float *out)
{
    size_t nq = (size_t)b->n_tokens * p->n_head * p->head_dim, nk = (size_t)b->n_tokens * p->n_head_kv * p->head_dim;
    std::vector<float> qh = host(q, nq), kh = host(k, nk), vh = host(v, nk), c(nq);
    S.layer = layer;
    S.windowed = pool->window > 0;
    int rc = S.gpu->ops->attention(S.gpu, pool, layer, b, p, q, k, v, out);
    if (rc) return rc;
    std::vector<float> g = host(out, nq);
    std::vector<double> ref;
    bool fresh = true;   /* every position in this batch: the float64 evaluation needs nothing cached */
    for (int t = 0; t < b->n_tokens; t++) fresh = fresh && b->pos[t] < b->n_tokens;
    if (fresh) ref = ref_attention(b, p, qh.data(), kh.data(), vh.data());
    std::vector<float> qc = qh, kc = kh;
    if ((rc = S.cpu->ops->attention(S.cpu, S.pool.at(pool), layer, b, p, qc.data(), kc.data(), vh.data(), c.data())))
        return rc;
    char key[64];
    snprintf(key, sizeof key, "attention hd %d window %d", p->head_dim, p->window);
    record(key, g.data(), c.data(), nq, ref.empty() ? NULL : ref.data());
    return 0;
}

int sh_glu(int gelu, const float *gate, const float *up, size_t n, float *out)
{
    std::vector<float> gh = host(gate, n), uh = host(up, n), c(n);
    int rc = gelu ? S.gpu->ops->geglu(S.gpu, gate, up, n, out) : S.gpu->ops->swiglu(S.gpu, gate, up, n, out);
    if (rc) return rc;
    std::vector<float> g = host(out, n);
    rc = gelu ? S.cpu->ops->geglu(S.cpu, gh.data(), uh.data(), n, c.data())
              : S.cpu->ops->swiglu(S.cpu, gh.data(), uh.data(), n, c.data());
    if (rc) return rc;
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++) {
        double x = gh[i];
        ref[i] = (gelu ? gelu_tanh(x) : x / (1.0 + exp(-x))) * (double)uh[i];
    }
    record(gelu ? "geglu" : "swiglu", g.data(), c.data(), n, ref.data());
    return 0;
}

int sh_swiglu(struct slm_backend *, const float *gate, const float *up, size_t n, float *out)
{
    return sh_glu(0, gate, up, n, out);
}

int sh_geglu(struct slm_backend *, const float *gate, const float *up, size_t n, float *out)
{
    return sh_glu(1, gate, up, n, out);
}

int sh_scale(struct slm_backend *, float *x, size_t n, float s)
{
    std::vector<float> c = host(x, n);
    int rc = S.gpu->ops->scale(S.gpu, x, n, s);
    if (rc) return rc;
    std::vector<float> g = host(x, n);
    if ((rc = S.cpu->ops->scale(S.cpu, c.data(), n, s))) return rc;
    record("scale", g.data(), c.data(), n, NULL);
    return 0;
}

int sh_add(struct slm_backend *, float *x, const float *y, size_t n)
{
    std::vector<float> c = host(x, n), yh = host(y, n);
    int rc = S.gpu->ops->add(S.gpu, x, y, n);
    if (rc) return rc;
    std::vector<float> g = host(x, n);
    if ((rc = S.cpu->ops->add(S.cpu, c.data(), yh.data(), n))) return rc;
    record("add", g.data(), c.data(), n, NULL);
    return 0;
}

int sh_gather_rows(struct slm_backend *, const float *x, int dim, const int32_t *rows, int n_rows, float *dst)
{
    return S.gpu->ops->gather_rows(S.gpu, x, dim, rows, n_rows, dst);
}

int sh_to_host(struct slm_backend *, const float *src, size_t n, float *h)
{
    return S.gpu->ops->to_host(S.gpu, src, n, h);
}


struct slm_backend_ops shadow_ops;


/* The shadow of gpu, with cpu as its twin (both stay the caller's; free the shadow with free()). */
static struct slm_backend *shadow_backend_create(struct slm_backend *cpu, struct slm_backend *gpu)
{
    S.cpu = cpu;
    S.gpu = gpu;
    S.verbose = getenv("SLM_SHADOW_VERBOSE") && atoi(getenv("SLM_SHADOW_VERBOSE"));
    shadow_ops = {};
    shadow_ops.name = "shadow";
    shadow_ops.sliding_window = gpu->ops->sliding_window;
    shadow_ops.destroy = sh_destroy;
    shadow_ops.alloc = sh_alloc;
    shadow_ops.free = sh_free;
    shadow_ops.load_weight = sh_load_weight;
    shadow_ops.unload_weight = sh_unload_weight;
    shadow_ops.kv_alloc = sh_kv_alloc;
    shadow_ops.kv_free = sh_kv_free;
    shadow_ops.embed = sh_embed;
    shadow_ops.rmsnorm = sh_rmsnorm;
    shadow_ops.matmul = sh_matmul;
    shadow_ops.norm_matmul = gpu->ops->norm_matmul ? sh_norm_matmul : NULL;
    shadow_ops.add_bias = sh_add_bias;
    shadow_ops.attention = sh_attention;
    shadow_ops.swiglu = sh_swiglu;
    shadow_ops.geglu = gpu->ops->geglu ? sh_geglu : NULL;
    shadow_ops.scale = gpu->ops->scale ? sh_scale : NULL;
    shadow_ops.add = sh_add;
    shadow_ops.gather_rows = sh_gather_rows;
    shadow_ops.to_host = sh_to_host;
    struct slm_backend *be = (struct slm_backend *)calloc(1, sizeof *be);
    if (be) {
        be->ops = &shadow_ops;
        be->n_threads = 1;
    }
    return be;
}

/* Runs the first n_tok tokens of the text file at text_path through the model at model_path in
 * one step on the shadow of a fresh cuda backend (device 0); the statistics stay in S. 0, or
 * -errno with err. */
static int shadow_run(const char *model_path, const char *text_path, int n_tok, char *err)
{
    struct slm_backend *cpu = slm_backend_cpu_create(2, err);
    struct slm_backend *gpu = cpu ? slm_backend_cuda_create(0, 0.9, err) : NULL;
    struct slm_backend *be = gpu ? shadow_backend_create(cpu, gpu) : NULL;
    struct slm_model *m = be ? slm_model_load(model_path, err) : NULL;
    struct slm_tokenizer *tok = m ? slm_tok_create(m->gguf, err) : NULL;
    struct slm_runner *r = NULL;
    std::vector<int32_t> ids;
    int rc = -EINVAL;
    if (tok && !slm_model_bind(m, be, err) && !(rc = text_tokens(tok, text_path, n_tok, &ids, err)) &&
        (r = slm_runner_create(m, n_tok, n_tok, err))) {
        std::vector<float> logits((size_t)m->cfg.n_vocab);
        if ((rc = slm_runner_eval(r, ids.data(), n_tok, 0, logits.data())))
            snprintf(err, SLM_ERR_LEN, "evaluating the step: %s", strerror(-rc));
    } else if (!rc) {
        rc = -EINVAL;   /* the runner: err says why */
    }
    slm_runner_destroy(&r);
    slm_tok_destroy(&tok);
    slm_model_free(&m);
    free(be);
    slm_backend_destroy(&gpu);
    slm_backend_destroy(&cpu);
    return rc;
}

/* The statistics, one line per kind of op. */
static void shadow_print(void)
{
    printf("%-40s %5s %11s %11s %11s %11s %11s\n", "op", "calls", "rel mean", "rel max", "abs max", "cuda-f64",
           "cpu-f64");
    for (const std::string &k : S.order) {
        const stat_row &s = S.rows[k];
        printf("%-40s %5d %11.3e %11.3e %11.3e", k.c_str(), s.calls, s.sum_rel / s.calls, s.max_rel, s.max_abs);
        if (s.n_ref) printf(" %11.3e %11.3e", s.sum_gpu_ref / s.n_ref, s.sum_cpu_ref / s.n_ref);
        printf("\n");
    }
}

}   // namespace

#endif
