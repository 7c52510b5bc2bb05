/*
 * daemon/engine/tokenizer.c - GPT-2 byte-level BPE and SentencePiece-style BPE, matching
 * llama.cpp (src/llama-vocab.cpp, src/unicode.cpp) id for id. docs/tokenizer.md has the rules.
 *
 * Vocabulary, merges and special tokens live in open-addressing hash tables (xxh3 keys, linear
 * probing, ids as values, the text compared on hit). The pre-tokenizer regexes run on PCRE2 in
 * UTF + UCP mode.
 */
#define _GNU_SOURCE
#include "daemon/engine/tokenizer.h"
#include "daemon/engine/tok_internal.h"

/* ---------------------------------------------------------------- create / destroy */

/* White_Space, as llama.cpp's unicode_set_whitespace: PCRE2's \s under UCP also matches U+180E
 * (a format character since Unicode 6.3), so the patterns spell the class out. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])"
#define RE_LLAMA3_HEAD                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
#define RE_LLAMA3_TAIL                                                                               \
    "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"

/* llama.cpp's regexes per pre-tokenizer (llm_tokenizer_bpe in src/llama-vocab.cpp). */
static const struct pre_def {
    const char *names[10];
    int n_re;
    const char *re[MAX_REGEX];
    int ignore_merges, add_bos;
} pre_defs[] = {
    { { "default" }, 4,
      { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" }, 0, 0 },
    { { "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4", "roberta-bpe" }, 1, { RE_GPT2 }, 0, 0 },
    { { "smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b" }, 2,
      { "\\p{N}", RE_GPT2 }, 0, 0 },
    { { "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2" }, 1,
      { RE_LLAMA3_HEAD "\\p{N}{1,3}" RE_LLAMA3_TAIL }, 1, 1 },
    { { "qwen2", "deepseek-r1-qwen", "megrez" }, 1, { RE_LLAMA3_HEAD "\\p{N}" RE_LLAMA3_TAIL }, 0, 0 },
};

/* Texts that llama.cpp treats as end of generation (its special_eog_ids by text). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
};
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "<end_of_utterance>",
};
static const char *const fim_pad_texts[] = { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]" };
static const char *const fim_rep_texts[] = { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>" };
static const char *const fim_sep_texts[] = { "<|file_sep|>" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The lowest id whose text is one of texts[0..n), or -1. */
static int32_t find_any(const struct slm_tokenizer *t, const char *const *texts, size_t n)
{
    int32_t best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = vocab_find(t, texts[i], strlen(texts[i]));
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    return best;
}

static int text_is(const struct slm_tokenizer *t, int32_t id, const char *c)
{
    size_t l;
    const char *p = tok_text(t, id, &l);
    return l == strlen(c) && memcmp(p, c, l) == 0;
}

/* An optional special-token id key: kept at *id (the default) when absent or out of range. */
static int read_id(const struct slm_gguf *g, const char *key, int n_vocab, int32_t *id, char *err)
{
    uint32_t v;
    int rc = slm_gguf_get_u32(g, key, &v, err);
    if (rc == -ENOENT) return 0;
    if (rc) return rc;
    if (v < (uint32_t)n_vocab) *id = (int32_t)v;
    return 0;
}

static int read_flag(const struct slm_gguf *g, const char *key, int *flag, char *err)
{
    int v, rc = slm_gguf_get_bool(g, key, &v, err);
    if (rc == -ENOENT) return 0;
    if (rc) return rc;
    *flag = v != 0;
    return 0;
}

struct sbuf {
    char *p;
    size_t n, cap;
};

static int sbuf_put(struct sbuf *b, const void *src, size_t n)
{
    if (grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return -ENOMEM;
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

/* llama.cpp's token_to_piece(id, special = true), appended to b. */
static int make_piece(const struct slm_tokenizer *t, int32_t id, struct sbuf *b)
{
    size_t l;
    const char *s = tok_text(t, id, &l);
    uint8_t a = t->attr[id];
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) return sbuf_put(b, s, l);
    if (a & ATTR_NORMAL) {
        if (t->kind == KIND_SPM) {
            for (size_t i = 0; i < l;) {
                if (l - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                    if (sbuf_put(b, " ", 1)) return -ENOMEM;
                    i += 3;
                } else {
                    if (sbuf_put(b, s + i, 1)) return -ENOMEM;
                    i++;
                }
            }
            return 0;
        }
        for (size_t i = 0; i < l;) {
            size_t k;
            uint32_t cp = utf8_decode_lenient((const unsigned char *)s + i, l - i, &k);
            char u[4];
            int w = utf8_put(cp == UINT32_MAX ? 0xFFFD : cp, u);
            int byte = gpt2_cp_byte(cp);
            if (byte >= 0) {
                unsigned char c = (unsigned char)byte;
                if (sbuf_put(b, &c, 1)) return -ENOMEM;
            } else {
                /* llama.cpp's llama_decode_text writes this for a character outside the byte map */
                char hex[3];
                if (sbuf_put(b, "[UNK_BYTE_0x", 12)) return -ENOMEM;
                for (int j = 0; j < w; j++) {
                    static const char digits[] = "0123456789abcdef";
                    hex[0] = digits[(unsigned char)u[j] >> 4];
                    hex[1] = digits[(unsigned char)u[j] & 15];
                    if (sbuf_put(b, hex, 2)) return -ENOMEM;
                }
                if (sbuf_put(b, s, l) || sbuf_put(b, "]", 1)) return -ENOMEM;
            }
            i += k;
        }
        return 0;
    }
    if ((a & ATTR_BYTE) && l >= 5) {
        char hex[3] = { s[3], s[4], 0 };
        unsigned char c = (unsigned char)strtol(hex, NULL, 16);
        return sbuf_put(b, &c, 1);
    }
    return 0;
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const struct slm_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = t->text_off[x + 1] - t->text_off[x], ly = t->text_off[y + 1] - t->text_off[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

static int build_specials(struct slm_tokenizer *t)
{
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) n++;
    t->special = malloc(((size_t)n + 1) * sizeof *t->special);
    t->special_lens = malloc(((size_t)n + 1) * sizeof *t->special_lens);
    if (!t->special || !t->special_lens || htab_init(&t->special_tab, (size_t)n)) return -ENOMEM;
    n = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (t->attr[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[n++] = id;
    t->n_special = n;
    qsort_r(t->special, (size_t)n, sizeof *t->special, cmp_special, t);
    for (int k = 0; k < n; k++) {
        size_t l;
        const char *s = tok_text(t, t->special[k], &l);
        t->special_first[(unsigned char)s[0]] = 1;
        if (!t->n_special_lens || t->special_lens[t->n_special_lens - 1] != (int)l)
            t->special_lens[t->n_special_lens++] = (int)l;
        if (special_find(t, s, l) >= 0) continue;   /* equal texts: the first in order takes them all */
        for (uint32_t i = (uint32_t)hash_bytes(s, l, 0) & t->special_tab.mask;; i = (i + 1) & t->special_tab.mask) {
            if (t->special_tab.slot[i] < 0) {
                t->special_tab.slot[i] = k;
                break;
            }
        }
    }
    return 0;
}

static int build_merges(struct slm_tokenizer *t, const struct slm_gguf *g, char *err)
{
    const struct slm_gguf_kv *kv;
    int rc = slm_gguf_get_arr(g, "tokenizer.ggml.merges", SLM_GGUF_STRING, &kv, err);
    if (rc) return rc;
    if (kv->arr_len > INT32_MAX) {
        slm_err_set(err, "%s: tokenizer.ggml.merges: %llu merges, too many", g->path,
                    (unsigned long long)kv->arr_len);
        return -EINVAL;
    }
    size_t n = (size_t)kv->arr_len, total = 0;
    struct slm_gguf_str *strs = malloc((n + 1) * sizeof *strs);
    if (!strs) return -ENOMEM;
    slm_gguf_get_str_arr(g, kv, strs, n);
    for (size_t i = 0; i < n; i++) total += strs[i].len;
    t->merges = malloc((n + 1) * sizeof *t->merges);
    t->merge_pool = malloc(total + 1);
    if (!t->merges || !t->merge_pool || htab_init(&t->merge_tab, n)) {
        free(strs);
        return -ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        /* llama.cpp splits at the first space after the first byte; without one, both halves
         * are empty */
        const char *s = strs[i].ptr;
        size_t l = strs[i].len;
        const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
        struct merge m = { (uint32_t)off, 0, 0 };
        if (sp) {
            m.split = (uint32_t)(sp - s);
            m.len = (uint32_t)(l - 1);
            memcpy(t->merge_pool + off, s, m.split);
            memcpy(t->merge_pool + off + m.split, sp + 1, l - m.split - 1);
            off += m.len;
        }
        t->merges[i] = m;
    }
    /* inserted in rank order: of two equal pairs the first keeps its rank (llama.cpp's emplace) */
    t->n_merges = (int)n;
    for (size_t i = 0; i < n; i++) {
        const struct merge *m = &t->merges[i];
        if (merge_rank(t, t->merge_pool + m->off, m->len, m->split) >= 0) continue;
        for (uint32_t h = (uint32_t)hash_bytes(t->merge_pool + m->off, m->len, m->split) & t->merge_tab.mask;;
             h = (h + 1) & t->merge_tab.mask) {
            if (t->merge_tab.slot[h] < 0) {
                t->merge_tab.slot[h] = (int32_t)i;
                break;
            }
        }
    }
    free(strs);
    return 0;
}

static int build_vocab(struct slm_tokenizer *t, const struct slm_gguf *g, char *err)
{
    const struct slm_gguf_kv *kv;
    int rc = slm_gguf_get_arr(g, "tokenizer.ggml.tokens", SLM_GGUF_STRING, &kv, err);
    if (rc) return rc;
    if (kv->arr_len == 0 || kv->arr_len >= INT32_MAX / 2) {
        slm_err_set(err, "%s: tokenizer.ggml.tokens: %llu tokens", g->path, (unsigned long long)kv->arr_len);
        return -EINVAL;
    }
    size_t n = (size_t)kv->arr_len, total = 0;
    t->n_vocab = (int)n;
    struct slm_gguf_str *strs = malloc(n * sizeof *strs);
    if (!strs) return -ENOMEM;
    slm_gguf_get_str_arr(g, kv, strs, n);
    for (size_t i = 0; i < n; i++) total += strs[i].len ? strs[i].len : 32;
    if (total >= UINT32_MAX) {
        free(strs);
        slm_err_set(err, "%s: tokenizer.ggml.tokens: %zu bytes of text, too many", g->path, total);
        return -EINVAL;
    }
    t->text_pool = malloc(total + 1);
    t->text_off = malloc((n + 1) * sizeof *t->text_off);
    t->attr = malloc(n);
    t->score = calloc(n, sizeof *t->score);
    t->eog = calloc(n, 1);
    if (!t->text_pool || !t->text_off || !t->attr || !t->score || !t->eog || htab_init(&t->vocab, n)) {
        free(strs);
        return -ENOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        t->text_off[i] = (uint32_t)off;
        if (strs[i].len) {
            memcpy(t->text_pool + off, strs[i].ptr, strs[i].len);
            off += strs[i].len;
        } else {   /* llama.cpp renames empty tokens */
            off += (size_t)snprintf(t->text_pool + off, 32, "[EMPTY_%zu]", i);
        }
    }
    t->text_off[n] = (uint32_t)off;
    free(strs);

    const struct slm_gguf_kv *sc = slm_gguf_find(g, "tokenizer.ggml.scores");
    if (sc) {
        if (sc->type != SLM_GGUF_ARRAY || (sc->arr_type != SLM_GGUF_FLOAT32 && sc->arr_type != SLM_GGUF_INT32) ||
            sc->arr_len < n) {
            slm_err_set(err, "%s: tokenizer.ggml.scores: expected %zu float32 or int32 values", g->path, n);
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) t->score[i] = (float)slm_gguf_arr_f64(sc, i);
    }
    const struct slm_gguf_kv *tt = slm_gguf_find(g, "tokenizer.ggml.token_type");
    if (tt && (tt->type != SLM_GGUF_ARRAY || tt->arr_type != SLM_GGUF_INT32 || tt->arr_len < n)) {
        slm_err_set(err, "%s: tokenizer.ggml.token_type: expected %zu int32 values", g->path, n);
        return -EINVAL;
    }
    static const uint8_t type_attr[7] = { ATTR_UNDEFINED, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL,
                                          ATTR_USER_DEFINED, ATTR_UNUSED, ATTR_BYTE };
    for (size_t i = 0; i < n; i++) {
        int64_t ty = tt ? slm_gguf_arr_i64(tt, i) : 1;
        t->attr[i] = ty >= 0 && ty < 7 ? type_attr[ty] : ATTR_UNDEFINED;
        vocab_insert(t, (int32_t)i);
    }
    return 0;
}

/* Special ids, add_bos/add_eos, and the end-of-generation set, as llama_vocab::impl::load. */
static int build_special_ids(struct slm_tokenizer *t, const struct slm_gguf *g, const struct pre_def *pre,
                             char *err)
{
    int n = t->n_vocab;
    int32_t fim_pad = -1, fim_rep = -1, fim_sep = -1;
    t->bos = t->kind == KIND_SPM ? 1 : 11;
    t->eos = t->kind == KIND_SPM ? 2 : 11;
    t->eot = t->eom = -1;
    if (t->bos >= n) t->bos = -1;
    if (t->eos >= n) t->eos = -1;
    int rc;
    if ((rc = read_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eot_token_id", n, &t->eot, err)) ||
        (rc = read_id(g, "tokenizer.ggml.eom_token_id", n, &t->eom, err)) ||
        (rc = read_id(g, "tokenizer.ggml.fim_pad_token_id", n, &fim_pad, err)) ||
        (rc = read_id(g, "tokenizer.ggml.fim_rep_token_id", n, &fim_rep, err)) ||
        (rc = read_id(g, "tokenizer.ggml.fim_sep_token_id", n, &fim_sep, err)))
        return rc;
    t->add_bos = t->kind == KIND_SPM || (pre && pre->add_bos);
    t->add_eos = 0;
    t->add_space_prefix = t->kind == KIND_SPM;
    if ((rc = read_flag(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (rc = read_flag(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)) ||
        (rc = read_flag(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err)))
        return rc;

    /* ids found by their text, marked control (llama.cpp's "control-looking token" fix-up) */
    int32_t *slots[5] = { &t->eot, &t->eom, &fim_pad, &fim_rep, &fim_sep };
    static const char *const eom_texts[] = { "<|eom_id|>" };
    const char *const *lists[5] = { eot_texts, eom_texts, fim_pad_texts, fim_rep_texts, fim_sep_texts };
    const size_t counts[5] = { COUNT(eot_texts), 1, COUNT(fim_pad_texts), COUNT(fim_rep_texts), COUNT(fim_sep_texts) };
    for (int k = 0; k < 5; k++) {
        if (*slots[k] >= 0) continue;
        *slots[k] = find_any(t, lists[k], counts[k]);
        if (*slots[k] >= 0) t->attr[*slots[k]] |= ATTR_CONTROL;
    }
    if (fim_pad >= 0) t->eog[fim_pad] = 1;
    if (fim_rep >= 0) t->eog[fim_rep] = 1;
    if (fim_sep >= 0) t->eog[fim_sep] = 1;
    for (size_t i = 0; i < COUNT(eog_texts); i++) {
        int32_t id = vocab_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0) continue;
        t->eog[id] = 1;
        t->attr[id] |= ATTR_CONTROL;
    }
    static const char *const always_render[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>" };
    for (size_t i = 0; i < COUNT(always_render); i++) {
        int32_t id = vocab_find(t, always_render[i], strlen(always_render[i]));
        if (id >= 0) t->attr[id] = ATTR_USER_DEFINED;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;

    /* llama.cpp's two exceptions: <|end|> is no EOG beside <|return|> + <|call|> (or <|calls|> +
     * <|flush|>); </s> is a normal token beside <|tool_response>/<|plamo:eos|> */
    int has_return = 0, has_call = 0, has_flush = 0, has_marker = 0;
    int32_t end_id = -1, s_id = -1;
    for (int32_t id = 0; id < n; id++) {
        if (!t->eog[id]) continue;
        if (text_is(t, id, "<|return|>")) has_return = 1;
        else if (text_is(t, id, "<|call|>") || text_is(t, id, "<|calls|>")) has_call = 1;
        else if (text_is(t, id, "<|flush|>")) has_flush = 1;
        else if (text_is(t, id, "<|end|>")) end_id = id;
        else if (text_is(t, id, "<|tool_response>") || text_is(t, id, "<|plamo:eos|>")) has_marker = 1;
        else if (text_is(t, id, "</s>")) s_id = id;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        t->eog[end_id] = 0;
        t->attr[end_id] = ATTR_USER_DEFINED;
    }
    if (has_marker && s_id >= 0) {
        t->eog[s_id] = 0;
        t->attr[s_id] = ATTR_NORMAL;
    }
    return 0;
}

struct slm_tokenizer *slm_tok_create(const struct slm_gguf *g, char *err)
{
    struct slm_tokenizer *t = calloc(1, sizeof *t);
    struct sbuf pieces = { 0 };
    const struct pre_def *pre = NULL;
    if (!t) goto oom;
    struct slm_gguf_str model, pre_name = { "default", 7 };
    if (slm_gguf_get_str(g, "tokenizer.ggml.model", &model, err)) goto err;
    if (slm_gguf_str_eq(model, "gpt2")) {
        t->kind = KIND_BPE;
    } else if (slm_gguf_str_eq(model, "llama")) {
        t->kind = KIND_SPM;
    } else {
        slm_err_set(err, "%s: tokenizer.ggml.model: unknown tokenizer model '%.*s' (supported: gpt2, llama)",
                    g->path, (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto err;
    }
    if (t->kind == KIND_BPE) {
        int rc = slm_gguf_get_str(g, "tokenizer.ggml.pre", &pre_name, err);
        if (rc && rc != -ENOENT) goto err;
        if (rc == -ENOENT) pre_name = (struct slm_gguf_str){ "default", 7 };
        for (size_t i = 0; i < COUNT(pre_defs) && !pre; i++)
            for (int k = 0; k < 10 && pre_defs[i].names[k] && !pre; k++)
                if (slm_gguf_str_eq(pre_name, pre_defs[i].names[k])) pre = &pre_defs[i];
        if (!pre) {
            slm_err_set(err, "%s: tokenizer.ggml.pre: unknown pre-tokenizer '%.*s' (supported: default, gpt2, "
                        "smollm, llama-bpe, qwen2 and their aliases)",
                        g->path, (int)(pre_name.len > 64 ? 64 : pre_name.len), pre_name.ptr);
            goto err;
        }
        t->ignore_merges = pre->ignore_merges;
    }
    int rc = build_vocab(t, g, err);
    if (rc == -ENOMEM) goto oom;
    if (rc) goto err;
    if (t->kind == KIND_BPE) {
        rc = build_merges(t, g, err);
        if (rc == -ENOMEM) goto oom;
        if (rc) goto err;
    }
    if (build_special_ids(t, g, pre, err)) goto err;
    for (int b = 0; b < 256; b++) {
        char s[8];
        int l;
        if (t->kind == KIND_BPE) {
            l = utf8_put(gpt2_byte_cp((unsigned)b), s);
            t->byte_tok[b] = vocab_find(t, s, (size_t)l);
        } else {
            l = snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_tok[b] = vocab_find(t, s, (size_t)l);
            if (t->byte_tok[b] < 0) {
                s[0] = (char)b;
                t->byte_tok[b] = vocab_find(t, s, 1);
            }
        }
    }
    if (build_specials(t)) goto oom;

    t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
    if (!t->piece_off) goto oom;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->piece_off[id] = (uint32_t)pieces.n;
        if (make_piece(t, id, &pieces)) goto oom;
    }
    t->piece_off[t->n_vocab] = (uint32_t)pieces.n;
    t->piece_pool = pieces.p;
    pieces.p = NULL;

    if (pre) {
        for (int r = 0; r < pre->n_re; r++) {
            int ec;
            PCRE2_SIZE eo;
            t->re[r] = pcre2_compile((PCRE2_SPTR)pre->re[r], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
            if (!t->re[r]) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(ec, msg, sizeof msg);
                slm_err_set(err, "%s: tokenizer.ggml.pre: regex %d: %s at %zu", g->path, r, (const char *)msg, (size_t)eo);
                goto err;
            }
            t->n_re = r + 1;
            (void)pcre2_jit_compile(t->re[r], PCRE2_JIT_COMPLETE);   /* the interpreter is the fallback */
        }
    }
    return t;
oom:
    slm_err_set(err, "%s: tokenizer: out of memory", g->path);
err:
    free(pieces.p);
    slm_tok_destroy(&t);
    return NULL;
}

void slm_tok_destroy(struct slm_tokenizer **tp)
{
    if (!tp || !*tp) return;
    struct slm_tokenizer *t = *tp;
    for (int r = 0; r < t->n_re; r++) pcre2_code_free(t->re[r]);
    free(t->text_pool); free(t->text_off); free(t->attr); free(t->score); free(t->piece_pool);
    free(t->piece_off); free(t->eog); free(t->vocab.slot); free(t->merges); free(t->merge_pool);
    free(t->merge_tab.slot); free(t->special); free(t->special_tab.slot); free(t->special_lens);
    free(t);
    *tp = NULL;
}

/* ---------------------------------------------------------------- incremental decoding */

/* Appends n bytes to out (up to cap), counting all of them in *total. */
static void put_bytes(char *out, size_t cap, size_t *total, const void *p, size_t n)
{
    if (*total < cap) memcpy(out + *total, p, n < cap - *total ? n : cap - *total);
    *total += n;
}

int slm_detok_push(const struct slm_tokenizer *t, struct slm_detok *d, int32_t id, int render_special,
                   char *out, size_t cap)
{
    if (!t || !d || id < 0 || id >= t->n_vocab || (cap && !out) || d->n_pending < 0 || d->n_pending > 3)
        return -EINVAL;
    /* A vocabulary whose pieces are all empty has no pool (NULL): no offset into it. */
    const unsigned char *piece = t->piece_pool ? (const unsigned char *)t->piece_pool + t->piece_off[id]
                                               : (const unsigned char *)"";
    size_t plen = t->piece_off[id + 1] - t->piece_off[id];
    if (!render_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) plen = 0;
    size_t np = (size_t)d->n_pending, n = np + plen, total = 0;
    unsigned char pend[4];
    memcpy(pend, d->pending, np);
#define AT(k) ((k) < np ? pend[(k)] : piece[(k) - np])
    d->n_pending = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = AT(i);
        if (c < 0x80) {   /* pending never holds ASCII, so this run lies in the piece */
            size_t j = i + 1;
            while (j < n && AT(j) < 0x80) j++;
            put_bytes(out, cap, &total, piece + (i - np), j - i);
            i = j;
            continue;
        }
        /* Unicode's well-formed sequences (Table 3-7): the second byte's range depends on the lead */
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else need = 0;
        size_t k = 1;
        while (need && k <= need && i + k < n) {
            unsigned b = AT(i + k);
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
            k++;
        }
        if (need && k <= need && i + k == n) {   /* a valid prefix cut by the end: hold it back */
            for (size_t j = 0; j < k; j++) d->pending[j] = (unsigned char)AT(i + j);
            d->n_pending = (int)k;
            break;
        }
        if (need && k > need) {
            unsigned char seq[4];
            for (size_t j = 0; j <= need; j++) seq[j] = (unsigned char)AT(i + j);
            put_bytes(out, cap, &total, seq, need + 1);
            i += need + 1;
        } else {
            put_bytes(out, cap, &total, "\xEF\xBF\xBD", 3);   /* one U+FFFD per maximal ill-formed subpart */
            i += k;
        }
    }
#undef AT
    return total > INT32_MAX ? INT32_MAX : (int)total;
}

int slm_detok_flush(struct slm_detok *d, char *out, size_t cap)
{
    if (!d || (cap && !out)) return -EINVAL;
    size_t total = 0;
    if (d->n_pending > 0) put_bytes(out, cap, &total, "\xEF\xBF\xBD", 3);
    d->n_pending = 0;
    return (int)total;
}

/* ---------------------------------------------------------------- queries */

const char *slm_tok_piece(const struct slm_tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    size_t l;
    const char *p = tok_text(t, id, &l);
    if (len) *len = l;
    return p;
}

int slm_tok_n_vocab(const struct slm_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t slm_tok_bos(const struct slm_tokenizer *t) { return t ? t->bos : -1; }
int32_t slm_tok_eos(const struct slm_tokenizer *t) { return t ? t->eos : -1; }

int slm_tok_is_eog(const struct slm_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}

int32_t slm_tok_find(const struct slm_tokenizer *t, const char *text, size_t len)
{
    if (!t || (!text && len)) return -1;
    return vocab_find(t, text, len);
}
