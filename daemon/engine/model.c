/* daemon/engine/model.c - see model.h. The forward pass leaves the logits in backend
 * memory; the caller copies the rows it wants to the host or samples them there. */
#include "daemon/engine/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading */

static int get_dim(const struct slm_gguf *g, const char *arch, const char *suffix, int *out, int required,
                   int dflt, char *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int rc = slm_gguf_get_u32(g, key, &v, err);
    if (rc == -ENOENT && !required) {
        *out = dflt;
        return 0;
    }
    if (rc) return rc;
    if (v == 0 || v > (1u << 24)) {
        slm_err_set(err, "%s: key '%s': value %u is out of range", g->path, key, v);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int get_float(const struct slm_gguf *g, const char *arch, const char *suffix, float *out, float dflt,
                     char *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = slm_gguf_get_f32(g, key, out, err);
    if (rc == -ENOENT) {
        *out = dflt;
        return 0;
    }
    if (rc == 0 && !(*out > 0.0f && *out < 1e30f)) {
        slm_err_set(err, "%s: key '%s': value %g is out of range", g->path, key, (double)*out);
        return -EINVAL;
    }
    return rc;
}

/* gemma3's local layers, as llama.cpp's load_swa_pattern reads them: attention.sliding_window_pattern
 * is a period n (layer l local unless l % n == n - 1; 0: every layer local; absent: 6) or one bool
 * per layer. A model whose every layer is local is refused (its global KV pool would be empty). */
static int read_swa_layers(const struct slm_gguf *g, const char *ar, struct slm_model_config *c, char *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", ar);
    memset(c->layer_local, 0, sizeof c->layer_local);
    if (c->n_layer > SLM_MODEL_MAX_SWA_LAYERS) {
        slm_err_set(err, "%s: %d layers with sliding windows: at most %d are supported", g->path, c->n_layer,
                    SLM_MODEL_MAX_SWA_LAYERS);
        return -ENOTSUP;
    }
    const struct slm_gguf_kv *kv = slm_gguf_find(g, key);
    if (kv && kv->type == SLM_GGUF_ARRAY) {
        if (kv->arr_type != SLM_GGUF_BOOL || kv->arr_len != (uint64_t)c->n_layer) {
            slm_err_set(err, "%s: key '%s': an array of %llu %s, not one bool for each of the %d layers", g->path,
                        key, (unsigned long long)kv->arr_len, slm_gguf_vtype_name(kv->arr_type), c->n_layer);
            return -EINVAL;
        }
        for (int l = 0; l < c->n_layer; l++) c->layer_local[l] = slm_gguf_arr_i64(kv, (uint64_t)l) != 0;
    } else {
        uint32_t n = 6;
        int rc = slm_gguf_get_u32(g, key, &n, err);
        if (rc && rc != -ENOENT) return rc;
        for (int l = 0; l < c->n_layer; l++) c->layer_local[l] = n == 0 || (uint32_t)l % n < n - 1;
    }
    int n_local = 0;
    for (int l = 0; l < c->n_layer; l++) {
        c->layer_kv[l] = (unsigned char)(c->layer_local[l] ? n_local : l - n_local);
        n_local += c->layer_local[l];
    }
    if (n_local == c->n_layer) {
        slm_err_set(err, "%s: key '%s' makes every layer a sliding-window layer, which is not supported (no "
                    "layer would keep the whole context)", g->path, key);
        return -ENOTSUP;
    }
    return 0;
}

/* gemma3's final_logit_softcapping: absent or 0, none (as llama.cpp); else a positive finite cap. */
static int read_softcap(const struct slm_gguf *g, const char *ar, struct slm_model_config *c, char *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.final_logit_softcapping", ar);
    float cap = 0.0f;
    int rc = slm_gguf_get_f32(g, key, &cap, err);
    if (rc && rc != -ENOENT) return rc;
    if (!(cap >= 0.0f && cap < 1e30f)) {
        slm_err_set(err, "%s: key '%s': value %g is out of range (a positive cap, or 0 for none)", g->path, key,
                    (double)cap);
        return -EINVAL;
    }
    c->final_softcap = cap;
    return 0;
}

static int read_config(const struct slm_gguf *g, struct slm_model_config *c, char *err)
{
    struct slm_gguf_str a;
    int rc = slm_gguf_get_str(g, "general.architecture", &a, err);
    if (rc) return rc;
    snprintf(c->arch_name, sizeof c->arch_name, "%.*s", (int)(a.len < 31 ? a.len : 31), a.ptr);
    if (slm_gguf_str_eq(a, "llama") || slm_gguf_str_eq(a, "mistral")) {
        c->arch = SLM_ARCH_LLAMA;
        c->rope_layout = SLM_ROPE_NORM;
    } else if (slm_gguf_str_eq(a, "qwen2")) {
        c->arch = SLM_ARCH_QWEN2;
        c->rope_layout = SLM_ROPE_NEOX;
    } else if (slm_gguf_str_eq(a, "qwen3")) {
        c->arch = SLM_ARCH_QWEN3;
        c->rope_layout = SLM_ROPE_NEOX;
    } else if (slm_gguf_str_eq(a, "gemma3")) {
        c->arch = SLM_ARCH_GEMMA3;
        c->rope_layout = SLM_ROPE_NEOX;
    } else if (slm_gguf_str_eq(a, "phi3")) {
        c->arch = SLM_ARCH_PHI3;
        c->rope_layout = SLM_ROPE_NEOX;
    } else {
        slm_err_set(err,
                    "%s: architecture '%s' is not supported (llama, mistral, qwen2, qwen3, gemma3 and phi3 are)",
                    g->path, c->arch_name);
        return -ENOTSUP;
    }
    const char *ar = c->arch_name;
    if ((rc = get_dim(g, ar, "block_count", &c->n_layer, 1, 0, err)) ||
        (rc = get_dim(g, ar, "embedding_length", &c->dim, 1, 0, err)) ||
        (rc = get_dim(g, ar, "feed_forward_length", &c->ffn_dim, 1, 0, err)) ||
        (rc = get_dim(g, ar, "attention.head_count", &c->n_head, 1, 0, err)) ||
        (rc = get_dim(g, ar, "attention.head_count_kv", &c->n_head_kv, 0, c->n_head, err)) ||
        (rc = get_dim(g, ar, "context_length", &c->n_ctx_train, 0, 2048, err)))
        return rc;
    if (c->dim % c->n_head) {
        slm_err_set(err, "%s: embedding_length %d is not a multiple of head_count %d", g->path, c->dim, c->n_head);
        return -EINVAL;
    }
    if ((rc = get_dim(g, ar, "attention.key_length", &c->head_dim, 0, c->dim / c->n_head, err)) ||
        (rc = get_dim(g, ar, "rope.dimension_count", &c->rope_dim, 0, c->head_dim, err)) ||
        (rc = get_float(g, ar, "rope.freq_base", &c->rope_base, 10000.0f, err)) ||
        (rc = get_float(g, ar, "rope.scaling.attn_factor", &c->rope_mscale, 1.0f, err)) ||
        (rc = get_dim(g, ar, "rope.scaling.original_context_length", &c->n_ctx_orig, 0, c->n_ctx_train, err)) ||
        (rc = get_float(g, ar, "attention.layer_norm_rms_epsilon", &c->rms_eps, 1e-5f, err)))
        return rc;
    if (c->arch == SLM_ARCH_GEMMA3) {
        /* As llama.cpp's gemma3: the embedding times sqrt(dim), GeGLU, local layers with RoPE base
         * 10000 over a window from the file (by default every 6th layer global, the others local),
         * and the logits soft-capped where the file says so. */
        c->emb_scale = sqrtf((float)c->dim);
        c->geglu = 1;
        if ((rc = get_dim(g, ar, "attention.sliding_window", &c->n_swa, 1, 0, err)) ||
            (rc = get_float(g, ar, "rope.freq_base_swa", &c->rope_base_swa, 10000.0f, err)) ||
            (rc = read_swa_layers(g, ar, c, err)) || (rc = read_softcap(g, ar, c, err)))
            return rc;
    }
    /* RoPE scaling: frequency factors from a tensor (Llama 3.1+'s rope_freqs, phi3's LongRoPE
     * long and short factors; slm_model_load binds them) and an attention factor are computed;
     * what this forward pass does not compute is refused, not silently left out: YaRN, and linear
     * scaling by a factor other than 1 would otherwise give wrong logits with no word said. As
     * llama.cpp, an absent type is "linear". */
    char key[128];
    struct slm_gguf_str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", ar);
    int have_type = slm_gguf_get_str(g, key, &st, err) == 0;
    if (have_type && !slm_gguf_str_eq(st, "none") && !slm_gguf_str_eq(st, "linear") &&
        !(slm_gguf_str_eq(st, "longrope") && c->arch == SLM_ARCH_PHI3)) {
        slm_err_set(err, "%s: RoPE scaling '%.*s' (%s) is not supported yet (none, linear with factor 1, and "
                    "phi3's longrope are)", g->path, (int)st.len, st.ptr, key);
        return -ENOTSUP;
    }
    float factor = 1.0f;   /* absent or 0: 1, as llama.cpp */
    snprintf(key, sizeof key, "%s.rope.scaling.factor", ar);
    int frc = slm_gguf_get_f32(g, key, &factor, err);
    if (frc && frc != -ENOENT) return frc;
    if (frc || factor == 0.0f) factor = 1.0f;
    if (factor != 1.0f && !(have_type && slm_gguf_str_eq(st, "none"))) {
        slm_err_set(err, "%s: RoPE scaling by a factor of %g (%s) is not supported yet", g->path, (double)factor, key);
        return -ENOTSUP;
    }
    if (c->n_head % c->n_head_kv || c->rope_dim > c->head_dim || c->rope_dim % 2 || c->head_dim % 8) {
        slm_err_set(err, "%s: inconsistent attention shape (heads %d, kv heads %d, head dim %d, rope dim %d)",
                    g->path, c->n_head, c->n_head_kv, c->head_dim, c->rope_dim);
        return -EINVAL;
    }
    return 0;
}

/* Finds tensor `name` and checks its shape: cols x rows (rows 0 = a vector). */
static int bind_tensor(const struct slm_gguf *g, const char *name, int64_t cols, int64_t rows, int optional,
                       struct slm_weight *w, char *err)
{
    const struct slm_gguf_tensor *t = slm_gguf_find_tensor(g, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (optional) return 0;
        slm_err_set(err, "%s: required tensor '%s' is missing", g->path, name);
        return -ENOENT;
    }
    int64_t want_rows = rows ? rows : 1;
    int dims_ok = rows ? t->n_dims == 2 : t->n_dims == 1;
    if (!dims_ok || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != want_rows) {
        slm_err_set(err, "%s: tensor '%s': shape [%llu, %llu] (%u dims), expected [%lld, %lld]", g->path, name,
                    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], t->n_dims, (long long)cols,
                    (long long)want_rows);
        return -EINVAL;
    }
    if (!rows && t->type != SLM_TYPE_F32) {
        slm_err_set(err, "%s: tensor '%s': norm and bias vectors must be F32, found %s", g->path, name,
                    slm_qtype_name(t->type));
        return -EINVAL;
    }
    w->type = t->type;
    w->cols = cols;
    w->rows = want_rows;
    w->row_bytes = (size_t)(cols / slm_qblock_elems(t->type)) * slm_qblock_bytes(t->type);
    w->data = t->data;
    return 0;
}

/* view = rows first .. first + rows - 1 of w (a fused tensor's part: a weight of its own). */
static void weight_rows(const struct slm_weight *w, int64_t first, int64_t rows, struct slm_weight *view)
{
    *view = *w;
    view->rows = rows;
    view->data = (const char *)w->data + (size_t)first * w->row_bytes;
}

static int bind_layer(const struct slm_gguf *g, const struct slm_model_config *c, int l, struct slm_layer *L,
                      char *err)
{
    char n[96];
    int q = c->n_head * c->head_dim, kv = c->n_head_kv * c->head_dim, bias = c->arch == SLM_ARCH_QWEN2;
    int qk_norm = c->arch == SLM_ARCH_QWEN3 || c->arch == SLM_ARCH_GEMMA3, post = c->arch == SLM_ARCH_GEMMA3;
    /* phi3: q, k and v in one attn_qkv when the file has it (else apart); the FFN's gate and up
     * always in one ffn_up, as llama.cpp reads them */
    snprintf(n, sizeof n, "blk.%d.attn_qkv.weight", l);
    const int fused_qkv = c->arch == SLM_ARCH_PHI3 && slm_gguf_find_tensor(g, n);
    const int fused_up = c->arch == SLM_ARCH_PHI3;
    struct slm_weight qkv, gate_up;
    struct { const char *suffix; int64_t cols, rows; int optional, used; struct slm_weight *w; } spec[] = {
        {"attn_norm.weight", c->dim, 0, 0, 1, &L->attn_norm},
        {"attn_qkv.weight", c->dim, q + 2 * kv, 0, fused_qkv, &qkv},
        {"attn_q.weight", c->dim, q, 0, !fused_qkv, &L->wq},
        {"attn_k.weight", c->dim, kv, 0, !fused_qkv, &L->wk},
        {"attn_v.weight", c->dim, kv, 0, !fused_qkv, &L->wv},
        {"attn_q.bias", q, 0, !bias, 1, &L->bq},
        {"attn_k.bias", kv, 0, !bias, 1, &L->bk},
        {"attn_v.bias", kv, 0, !bias, 1, &L->bv},
        {"attn_q_norm.weight", c->head_dim, 0, !qk_norm, 1, &L->q_norm},
        {"attn_k_norm.weight", c->head_dim, 0, !qk_norm, 1, &L->k_norm},
        {"attn_output.weight", q, c->dim, 0, 1, &L->wo},
        {"ffn_norm.weight", c->dim, 0, 0, 1, &L->ffn_norm},
        {"ffn_gate.weight", c->dim, c->ffn_dim, 0, !fused_up, &L->w_gate},
        {"ffn_up.weight", c->dim, c->ffn_dim, 0, !fused_up, &L->w_up},
        {"ffn_up.weight", c->dim, 2 * (int64_t)c->ffn_dim, 0, fused_up, &gate_up},
        {"ffn_down.weight", c->ffn_dim, c->dim, 0, 1, &L->w_down},
        {"post_attention_norm.weight", c->dim, 0, !post, 1, &L->post_attn_norm},
        {"post_ffw_norm.weight", c->dim, 0, !post, 1, &L->post_ffn_norm},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        if (!spec[i].used) continue;
        snprintf(n, sizeof n, "blk.%d.%s", l, spec[i].suffix);
        int rc = bind_tensor(g, n, spec[i].cols, spec[i].rows, spec[i].optional, spec[i].w, err);
        if (rc) return rc;
    }
    if (fused_qkv) {
        weight_rows(&qkv, 0, q, &L->wq);
        weight_rows(&qkv, q, kv, &L->wk);
        weight_rows(&qkv, q + kv, kv, &L->wv);
    }
    if (fused_up) {   /* the gate's rows first (llama.cpp's swiglu of one tensor: silu of its first half) */
        weight_rows(&gate_up, 0, c->ffn_dim, &L->w_gate);
        weight_rows(&gate_up, c->ffn_dim, c->ffn_dim, &L->w_up);
    }
    return 0;
}

struct slm_model *slm_model_load(const char *path, char *err)
{
    struct slm_model *m = calloc(1, sizeof *m);
    if (!m) {
        slm_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    m->gguf = slm_gguf_open(path, err);
    if (!m->gguf) goto err;
    struct slm_model_config *c = &m->cfg;
    if (read_config(m->gguf, c, err)) goto err;
    const struct slm_gguf_tensor *emb = slm_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) {
        slm_err_set(err, "%s: required tensor 'token_embd.weight' is missing", path);
        goto err;
    }
    if (emb->n_dims != 2 || emb->ne[1] > (1u << 24)) {
        slm_err_set(err, "%s: tensor 'token_embd.weight': expected [%d, n_vocab]", path, c->dim);
        goto err;
    }
    c->n_vocab = (int)emb->ne[1];
    if (bind_tensor(m->gguf, "token_embd.weight", c->dim, c->n_vocab, 0, &m->tok_embd, err) ||
        bind_tensor(m->gguf, "output_norm.weight", c->dim, 0, 0, &m->output_norm, err) ||
        bind_tensor(m->gguf, "output.weight", c->dim, c->n_vocab, 1, &m->output, err))
        goto err;
    if (!m->output.data) m->output = m->tok_embd;   /* tied embeddings */
    /* RoPE frequency factors, as llama.cpp reads them: rope_freqs for llama (Llama 3.1+), the
     * LongRoPE pair for phi3; elsewhere llama.cpp refuses the file (a tensor it does not use). */
    const int half = c->rope_dim / 2;
    const char *factor_names[] = {"rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"};
    struct slm_weight *factor_weights[] = {&m->rope_freqs, &m->rope_long, &m->rope_short};
    const int factor_arch[] = {SLM_ARCH_LLAMA, SLM_ARCH_PHI3, SLM_ARCH_PHI3};
    for (int i = 0; i < 3; i++) {
        if (factor_arch[i] != c->arch && slm_gguf_find_tensor(m->gguf, factor_names[i])) {
            slm_err_set(err, "%s: tensor '%s' is not used by %s (llama.cpp refuses the file too)", path,
                        factor_names[i], c->arch_name);
            goto err;
        }
        if (factor_arch[i] == c->arch && bind_tensor(m->gguf, factor_names[i], half, 0, 1, factor_weights[i], err))
            goto err;
    }
    m->rope_factors = m->rope_freqs.data ? m->rope_freqs.data : m->rope_short.data;   /* until slm_model_set_ctx */
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) {
        slm_err_set(err, "%s: out of memory", path);
        goto err;
    }
    for (int l = 0; l < c->n_layer; l++)
        if (bind_layer(m->gguf, c, l, &m->layers[l], err)) goto err;
    return m;
err:
    slm_model_free(&m);
    return NULL;
}

/* Calls fn(ctx, w) on every distinct weight w of the model; stops at the first non-zero. */
static int for_each_weight(struct slm_model *m, int (*fn)(void *ctx, struct slm_weight *w), void *ctx)
{
    int rc = 0;
    struct slm_weight *top[] = {&m->tok_embd, &m->output_norm, &m->output};
    for (int i = 0; i < 3 && !rc; i++)
        if (i != 2 || m->output.data != m->tok_embd.data) rc = fn(ctx, top[i]);
    for (int l = 0; l < m->cfg.n_layer && !rc; l++) {
        struct slm_layer *L = &m->layers[l];
        struct slm_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->bq, &L->bk, &L->bv, &L->q_norm,
                                   &L->k_norm, &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down,
                                   &L->post_attn_norm, &L->post_ffn_norm};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0] && !rc; i++)
            if (ws[i]->data) rc = fn(ctx, ws[i]);
    }
    return rc;
}

static int unload_one(void *be_, struct slm_weight *w)
{
    struct slm_backend *be = be_;
    if (be->ops->unload_weight) be->ops->unload_weight(be, w);
    return 0;
}

/* The walk of slm_model_bind: each weight made resident, then, with m->progress, counted. */
struct bind_walk {
    struct slm_model *m;
    struct slm_backend *be;
    uint64_t done, total;
};

static int count_bytes(void *walk, struct slm_weight *w)
{
    ((struct bind_walk *)walk)->total += (uint64_t)w->rows * w->row_bytes;
    return 0;
}

static int load_one(void *walk, struct slm_weight *w)
{
    struct bind_walk *b = walk;
    int rc = b->be->ops->load_weight(b->be, w);
    if (rc) return rc;
    const size_t bytes = (size_t)w->rows * w->row_bytes;
    b->done += bytes;
    if (!b->m->progress) return 0;
    if (w->be_data == w->data) {   /* used in place: read its pages in now */
        volatile const unsigned char *p = (const unsigned char *)w->data;
        unsigned sum = 0;
        for (size_t i = 0; i < bytes; i += 4096) sum += p[i];
        if (bytes) sum += p[bytes - 1];
        (void)sum;
    }
    b->m->progress(b->m->progress_ctx, b->done, b->total);
    return 0;
}

int slm_model_bind(struct slm_model *m, struct slm_backend *be, char *err)
{
    if ((m->cfg.geglu && !be->ops->geglu) || (m->cfg.emb_scale != 0.0f && !be->ops->scale) ||
        (m->cfg.n_swa > 0 && !be->ops->sliding_window) || (m->cfg.final_softcap > 0.0f && !be->ops->softcap)) {
        slm_err_set(err, "%s: the %s backend cannot run %s yet (GeGLU, the embedding scale and the sliding-window "
                    "attention)", m->gguf->path, be->ops->name, m->cfg.arch_name);
        return -ENOTSUP;
    }
    /* The attention of its global layers, and of its local ones where it has them. */
    const struct slm_model_config *c = &m->cfg;
    for (int local = 0; be->ops->attention_check && local <= (c->n_swa > 0); local++) {
        struct slm_attn_params ap = {.n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim,
                                     .rope_dim = c->rope_dim, .rope_layout = c->rope_layout,
                                     .window = local ? c->n_swa : 0};
        char why[256];
        int rc = be->ops->attention_check(be, &ap, why, sizeof why);
        if (rc) {
            slm_err_set(err, "%s: the %s backend cannot run this %s model's attention: %s", m->gguf->path,
                        be->ops->name, c->arch_name, why);
            return rc;
        }
    }
    struct bind_walk walk = {m, be, 0, 0};
    for_each_weight(m, count_bytes, &walk);
    int rc = for_each_weight(m, load_one, &walk);
    if (rc) {
        if (rc == -ENOMEM)
            slm_err_set(err, "%s: cannot make the weights resident on the %s backend: out of memory with %.1f of "
                        "the model's %.1f MB of weights loaded", m->gguf->path, be->ops->name,
                        (double)walk.done / 1e6, (double)walk.total / 1e6);
        else
            slm_err_set(err, "%s: cannot make the weights resident on the %s backend: %s", m->gguf->path,
                        be->ops->name, strerror(-rc));
        for_each_weight(m, unload_one, be);
        return rc;
    }
    if (m->output.data == m->tok_embd.data) m->output.be_data = m->tok_embd.be_data;
    m->be = be;
    return 0;
}

int slm_model_set_ctx(struct slm_model *m, int n_ctx, char *err)
{
    if (n_ctx < 1) {
        slm_err_set(err, "%s: a context of %d tokens", m->gguf->path, n_ctx);
        return -EINVAL;
    }
    if (m->rope_freqs.data) m->rope_factors = m->rope_freqs.data;
    else if (n_ctx > m->cfg.n_ctx_orig) m->rope_factors = m->rope_long.data;
    else m->rope_factors = m->rope_short.data;
    return 0;
}

void slm_model_free(struct slm_model **mp)
{
    struct slm_model *m = *mp;
    if (!m) return;
    if (m->be && m->layers) for_each_weight(m, unload_one, m->be);
    free(m->layers);
    slm_gguf_close(&m->gguf);
    free(m);
    *mp = NULL;
}

void slm_model_kv_geometry(const struct slm_model *m, int n_blocks, int block_size, struct slm_kv_pool *pool)
{
    memset(pool, 0, sizeof *pool);
    pool->n_layer = m->cfg.n_layer;
    pool->n_blocks = n_blocks;
    pool->block_size = block_size;
    pool->kv_dim = m->cfg.n_head_kv * m->cfg.head_dim;
}

/* gemma3's local layers (read_swa_layers). */
static int layer_is_local(const struct slm_model_config *c, int l)
{
    return c->n_swa > 0 && c->layer_local[l];
}

int slm_model_n_local_layers(const struct slm_model_config *c)
{
    int n = 0;
    for (int l = 0; l < c->n_layer; l++) n += layer_is_local(c, l);
    return n;
}

int slm_model_kv_geometry_split(const struct slm_model *m, int n_blocks, int n_local_blocks, int block_size,
                                struct slm_kv_pool *pool, struct slm_kv_pool *local)
{
    slm_model_kv_geometry(m, n_blocks, block_size, pool);
    memset(local, 0, sizeof *local);
    int n_local = slm_model_n_local_layers(&m->cfg);
    if (n_local == 0 || n_local_blocks < 1) return 1;
    slm_model_kv_geometry(m, n_local_blocks, block_size, local);
    local->n_layer = n_local;
    local->window = m->cfg.n_swa;
    pool->n_layer = m->cfg.n_layer - n_local;
    pool->local = local;
    return 2;
}

/* ---- the forward pass */

struct slm_forward {
    struct slm_model *m;
    int max_tokens, max_out;
    float *x;        /* (max_tokens, dim) the residual stream */
    float *xn;       /* (max_tokens, dim) normalised */
    float *q;        /* (max_tokens, n_head * head_dim) */
    float *k, *v;    /* (max_tokens, n_head_kv * head_dim) */
    float *att;      /* (max_tokens, n_head * head_dim) */
    float *gate, *up;/* (max_tokens, ffn_dim) */
    float *xo;       /* (max_out, dim) rows whose logits are wanted */
    float *logits;   /* (max_out, n_vocab) in backend memory */
};

void slm_forward_destroy(struct slm_forward **fp)
{
    struct slm_forward *f = *fp;
    if (!f) return;
    struct slm_backend *be = f->m->be;
    float *bufs[] = {f->x, f->xn, f->q, f->k, f->v, f->att, f->gate, f->up, f->xo, f->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->ops->free(be, bufs[i]);
    free(f);
    *fp = NULL;
}

struct slm_forward *slm_forward_create(struct slm_model *m, int max_tokens, int max_out, char *err)
{
    if (!m->be || max_tokens < 1 || max_out < 1 || max_out > max_tokens) {
        slm_err_set(err, "forward: bad arguments (backend bound: %s, max_tokens %d, max_out %d)",
                    m->be ? "yes" : "no", max_tokens, max_out);
        return NULL;
    }
    struct slm_forward *f = calloc(1, sizeof *f);
    if (!f) goto oom;
    f->m = m;
    f->max_tokens = max_tokens;
    f->max_out = max_out;
    const struct slm_model_config *c = &m->cfg;
    size_t T = (size_t)max_tokens, qd = (size_t)c->n_head * (size_t)c->head_dim;
    size_t kvd = (size_t)c->n_head_kv * (size_t)c->head_dim;
    struct { float **p; size_t n; } bufs[] = {
        {&f->x, T * (size_t)c->dim}, {&f->xn, T * (size_t)c->dim}, {&f->q, T * qd}, {&f->k, T * kvd},
        {&f->v, T * kvd}, {&f->att, T * qd}, {&f->gate, T * (size_t)c->ffn_dim}, {&f->up, T * (size_t)c->ffn_dim},
        {&f->xo, (size_t)max_out * (size_t)c->dim}, {&f->logits, (size_t)max_out * (size_t)c->n_vocab},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = m->be->ops->alloc(m->be, bufs[i].n * sizeof(float)))) goto oom;
    return f;
oom:
    slm_err_set(err, "forward: out of memory for %d tokens", max_tokens);
    slm_forward_destroy(&f);
    return NULL;
}

#define TRY(call)                      \
    do {                               \
        int rc_ = (call);              \
        if (rc_) return rc_;           \
    } while (0)

/* y[j] = rmsnorm(x; gamma) . w[j]^T for j < n_w: the backend's fused op, or rmsnorm into f->xn
 * and one matmul. */
static int norm_matmul(struct slm_forward *f, const float *x, const struct slm_weight *gamma, int n, int n_w,
                       const struct slm_weight *const *w, float *const *y)
{
    const struct slm_model_config *c = &f->m->cfg;
    struct slm_backend *be = f->m->be;
    if (be->ops->norm_matmul) return be->ops->norm_matmul(be, x, gamma, c->dim, c->rms_eps, n_w, w, n, y);
    TRY(be->ops->rmsnorm(be, x, gamma, n, c->dim, c->rms_eps, f->xn));
    return be->ops->matmul(be, n_w, w, f->xn, n, y, 0);
}

static int layer_forward(struct slm_forward *f, struct slm_kv_pool *pool, const struct slm_batch *b, int l)
{
    const struct slm_model_config *c = &f->m->cfg;
    struct slm_backend *be = f->m->be;
    const struct slm_backend_ops *ops = be->ops;
    const struct slm_layer *L = &f->m->layers[l];
    int n = b->n_tokens;
    const int local = layer_is_local(c, l);
    /* The layer's pool, its index there, and the batch with that pool's tables (backend.h). */
    struct slm_kv_pool *lpool = pool;
    int kv_layer = l;
    struct slm_batch local_batch;
    const struct slm_batch *ab = b;
    if (pool->local) {
        kv_layer = c->layer_kv[l];   /* its index among the layers of its pool */
        if (local) {
            lpool = pool->local;
            local_batch = *b;
            local_batch.block_tables = b->block_tables_local;
            ab = &local_batch;
        }
    }
    struct slm_attn_params ap = {
        .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = c->head_dim, .rope_dim = c->rope_dim,
        .rope_layout = c->rope_layout, .rope_base = local ? c->rope_base_swa : c->rope_base,
        .scale = 1.0f / sqrtf((float)c->head_dim), .rope_factors = f->m->rope_factors,
        .rope_mscale = c->rope_mscale, .window = local ? c->n_swa : 0,
    };

    const struct slm_weight *qkv[] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[] = {f->q, f->k, f->v};
    TRY(norm_matmul(f, f->x, &L->attn_norm, n, 3, qkv, qkv_out));
    if (L->bq.data) {
        TRY(ops->add_bias(be, f->q, &L->bq, n));
        TRY(ops->add_bias(be, f->k, &L->bk, n));
        TRY(ops->add_bias(be, f->v, &L->bv, n));
    }
    if (L->q_norm.data) {   /* qwen3: each head of q and k RMS-normed before RoPE (in place) */
        TRY(ops->rmsnorm(be, f->q, &L->q_norm, n * c->n_head, c->head_dim, c->rms_eps, f->q));
        TRY(ops->rmsnorm(be, f->k, &L->k_norm, n * c->n_head_kv, c->head_dim, c->rms_eps, f->k));
    }
    TRY(ops->attention(be, lpool, kv_layer, ab, &ap, f->q, f->k, f->v, f->att));
    const struct slm_weight *wo[] = {&L->wo};
    if (L->post_attn_norm.data) {   /* gemma3: the output RMS-normed before the residual add */
        TRY(ops->matmul(be, 1, wo, f->att, n, &f->xn, 0));
        TRY(ops->rmsnorm(be, f->xn, &L->post_attn_norm, n, c->dim, c->rms_eps, f->xn));
        TRY(ops->add(be, f->x, f->xn, (size_t)n * (size_t)c->dim));
        TRY(ops->rmsnorm(be, f->x, &L->ffn_norm, n, c->dim, c->rms_eps, f->xn));
        const struct slm_weight *gu[] = {&L->w_gate, &L->w_up};
        float *gu_out[] = {f->gate, f->up};
        TRY(ops->matmul(be, 2, gu, f->xn, n, gu_out, 0));
        TRY(ops->geglu(be, f->gate, f->up, (size_t)n * (size_t)c->ffn_dim, f->gate));
        const struct slm_weight *down[] = {&L->w_down};
        TRY(ops->matmul(be, 1, down, f->gate, n, &f->xn, 0));
        TRY(ops->rmsnorm(be, f->xn, &L->post_ffn_norm, n, c->dim, c->rms_eps, f->xn));
        return ops->add(be, f->x, f->xn, (size_t)n * (size_t)c->dim);
    }
    TRY(ops->matmul(be, 1, wo, f->att, n, &f->x, 1));

    if (ops->norm_glu) {
        TRY(ops->norm_glu(be, f->x, &L->ffn_norm, c->dim, c->rms_eps, &L->w_gate, &L->w_up, n, f->gate, f->up));
    } else {
        TRY(ops->rmsnorm(be, f->x, &L->ffn_norm, n, c->dim, c->rms_eps, f->xn));
        const struct slm_weight *gu[] = {&L->w_gate, &L->w_up};
        float *gu_out[] = {f->gate, f->up};
        TRY(ops->matmul(be, 2, gu, f->xn, n, gu_out, 0));
        TRY(ops->swiglu(be, f->gate, f->up, (size_t)n * (size_t)c->ffn_dim, f->gate));
    }
    const struct slm_weight *down[] = {&L->w_down};
    TRY(ops->matmul(be, 1, down, f->gate, n, &f->x, 1));
    return 0;
}

/* The ops of one step, from the embedding through the logits matmul (f->logits rows
 * 0..n_out-1). */
static int forward_ops(struct slm_forward *f, struct slm_kv_pool *pool, const struct slm_batch *b)
{
    const struct slm_model_config *c = &f->m->cfg;
    struct slm_backend *be = f->m->be;
    TRY(be->ops->embed(be, &f->m->tok_embd, b->tokens, b->n_tokens, f->x));
    if (c->emb_scale != 0.0f) TRY(be->ops->scale(be, f->x, (size_t)b->n_tokens * (size_t)c->dim, c->emb_scale));
    for (int l = 0; l < c->n_layer; l++) TRY(layer_forward(f, pool, b, l));
    if (b->n_out == 0) return 0;
    TRY(be->ops->gather_rows(be, f->x, c->dim, b->out_rows, b->n_out, f->xo));
    const struct slm_weight *out[] = {&f->m->output};
    TRY(norm_matmul(f, f->xo, &f->m->output_norm, b->n_out, 1, out, &f->logits));
    if (c->final_softcap > 0.0f)
        TRY(be->ops->softcap(be, f->logits, (size_t)b->n_out * (size_t)c->n_vocab, c->final_softcap));
    return 0;
}

int slm_forward_run(struct slm_forward *f, struct slm_kv_pool *pool, const struct slm_batch *b, float *logits)
{
    const struct slm_model_config *c = &f->m->cfg;
    struct slm_backend *be = f->m->be;
    if (b->n_tokens < 1 || b->n_tokens > f->max_tokens || b->n_out < 0 || b->n_out > f->max_out) return -EINVAL;
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= c->n_vocab || b->pos[i] < 0 || b->seq_row[i] < 0 ||
            b->pos[i] / pool->block_size >= b->max_blocks)
            return -EINVAL;
        /* Every block this token reads or writes must be in the pool; in the local pool, from
         * the block of the first position of its window on. */
        const int32_t *bt = b->block_tables + (size_t)b->seq_row[i] * (size_t)b->max_blocks;
        for (int j = 0; j <= b->pos[i] / pool->block_size; j++)
            if (bt[j] < 0 || bt[j] >= pool->n_blocks) return -EINVAL;
        const struct slm_kv_pool *lp = pool->local;
        if (!lp) continue;
        if (!b->block_tables_local || lp->block_size != pool->block_size) return -EINVAL;
        bt = b->block_tables_local + (size_t)b->seq_row[i] * (size_t)b->max_blocks;
        int first = b->pos[i] >= lp->window ? b->pos[i] - lp->window + 1 : 0;
        for (int j = first / lp->block_size; j <= b->pos[i] / lp->block_size; j++)
            if (bt[j] < 0 || bt[j] >= lp->n_blocks) return -EINVAL;
    }
    for (int i = 0; i < b->n_out; i++)
        if (b->out_rows[i] < 0 || b->out_rows[i] >= b->n_tokens) return -EINVAL;


    /* A backend with step hooks may replay the step from a capture, or pad it (backend.h). */
    const struct slm_backend_ops *ops = be->ops;
    struct slm_batch run = *b;
    int mode = 0;
    if (ops->step_begin && (mode = ops->step_begin(be, f, f->max_tokens, f->max_out, pool, b, &run)) < 0)
        return mode;
    if (mode == 0) {
        int rc = forward_ops(f, pool, &run);
        if (ops->step_end) rc = ops->step_end(be, rc);
        if (rc > 0) rc = forward_ops(f, pool, b);
        if (rc) return rc;
    }
    if (b->n_out == 0) return 0;
    if (!logits) return 0;   /* they stay in backend memory (slm_forward_logits) */
    return ops->to_host(be, f->logits, (size_t)b->n_out * (size_t)c->n_vocab, logits);
}

const float *slm_forward_logits(const struct slm_forward *f)
{
    return f->logits;
}

int slm_forward_logits_to_host(struct slm_forward *f, int first, int n, float *host)
{
    if (first < 0 || n < 0 || n > f->max_out - first) return -EINVAL;
    if (n == 0) return 0;
    struct slm_backend *be = f->m->be;
    size_t nv = (size_t)f->m->cfg.n_vocab;
    return be->ops->to_host(be, f->logits + (size_t)first * nv, (size_t)n * nv, host);
}
