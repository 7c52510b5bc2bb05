/* daemon/engine/tok_encode.c - encoding: special-token partition, GPT-2 byte-level BPE with
 * the PCRE2 pre-tokenizers, SentencePiece-style BPE; see tokenizer.c and docs/tokenizer.md. */
#define _GNU_SOURCE
#include "daemon/engine/tok_internal.h"
#include "daemon/engine/tokenizer.h"

/* ---------------------------------------------------------------- output and scratch */

struct out {
    int32_t *ids;
    int cap;
    int n;
};

static void emit(struct out *o, int32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    if (o->n < INT32_MAX) o->n++;
}

struct frag {
    size_t off, len;
    int32_t id;      /* -1 for raw text */
};

/* Growable arrays used by one encode call. */
struct scratch {
    struct frag *frag, *frag2;
    size_t n_frag, cap_frag, cap_frag2;
    char *buf, *buf2;               /* sanitized text / regex proxy, or escaped SPM text */
    size_t cap_buf, cap_buf2;
    size_t *piece, *piece2;         /* (start, end) pairs */
    size_t cap_piece, cap_piece2;
    char *word;                     /* one byte-encoded word */
    size_t cap_word;
    int *sym_start, *sym_n, *sym_prev, *sym_next;
    size_t cap_sym;
    struct bigram { double key; int left, right; int a, b; } *heap;
    size_t n_heap, cap_heap;
    int32_t *cand;
    size_t n_cand, cap_cand;
    pcre2_match_data *md;
};


static void scratch_free(struct scratch *s)
{
    free(s->frag); free(s->frag2); free(s->buf); free(s->buf2); free(s->piece); free(s->piece2);
    free(s->word); free(s->sym_start); free(s->sym_n); free(s->sym_prev); free(s->sym_next);
    free(s->heap); free(s->cand);
    if (s->md) pcre2_match_data_free(s->md);
}

static int syms_reserve(struct scratch *s, size_t n)
{
    if (n <= s->cap_sym) return 0;
    size_t c = s->cap_sym, c0 = c;
    int r = grow((void **)&s->sym_start, &c, n, sizeof(int));
    c = c0; r |= grow((void **)&s->sym_n, &c, n, sizeof(int));
    c = c0; r |= grow((void **)&s->sym_prev, &c, n, sizeof(int));
    c = c0; r |= grow((void **)&s->sym_next, &c, n, sizeof(int));
    if (r) return -ENOMEM;
    s->cap_sym = c;
    return 0;
}

/* Binary heap of bigrams: the smallest (key, left) on top. BPE keys are ranks; SPM keys are
 * negated scores, so the highest score comes first; ties go to the leftmost pair, as in
 * llama.cpp's comparators. */
static int heap_less(const struct bigram *x, const struct bigram *y)
{
    return x->key < y->key || (x->key == y->key && x->left < y->left);
}

static int heap_push(struct scratch *s, struct bigram b)
{
    if (grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof b)) return -ENOMEM;
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&b, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
    return 0;
}

static struct bigram heap_pop(struct scratch *s)
{
    struct bigram top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!heap_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------- special tokens */

static int frag_add(struct frag **a, size_t *n, size_t *cap, struct frag f)
{
    if (grow((void **)a, cap, *n + 1, sizeof f)) return -ENOMEM;
    (*a)[(*n)++] = f;
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/*
 * Splits text into raw fragments and special tokens the way llama.cpp's tokenizer_st_partition
 * does: special tokens are taken one at a time, longest text first, and each one splits every
 * remaining raw fragment at all its non-overlapping occurrences (leftmost first). That is not
 * leftmost-longest matching; it is reproduced as is. Only the specials that occur somewhere in
 * the text are visited (found by hashing the substrings at each position that starts a special).
 * Without parse_special, control and unknown tokens are skipped; user-defined ones never are.
 */
static int partition(const struct slm_tokenizer *t, struct scratch *s, const char *text, size_t len,
                     int parse_special)
{
    s->n_frag = 0;
    if (!len) return 0;
    if (frag_add(&s->frag, &s->n_frag, &s->cap_frag, (struct frag){ 0, len, -1 })) return -ENOMEM;

    s->n_cand = 0;
    for (size_t p = 0; p < len; p++) {
        if (!t->special_first[(unsigned char)text[p]]) continue;
        for (int li = 0; li < t->n_special_lens; li++) {
            size_t l = (size_t)t->special_lens[li];
            if (l > len - p) continue;
            int32_t k = special_find(t, text + p, l);
            if (k < 0) continue;
            if (!parse_special && (t->attr[t->special[k]] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
            if (grow((void **)&s->cand, &s->cap_cand, s->n_cand + 1, sizeof *s->cand)) return -ENOMEM;
            s->cand[s->n_cand++] = k;
        }
    }
    if (!s->n_cand) return 0;
    qsort(s->cand, s->n_cand, sizeof *s->cand, cmp_i32);

    for (size_t c = 0; c < s->n_cand; c++) {
        if (c > 0 && s->cand[c] == s->cand[c - 1]) continue;
        int32_t id = t->special[s->cand[c]];
        size_t sl;
        const char *st = tok_text(t, id, &sl);
        size_t n2 = 0;
        for (size_t f = 0; f < s->n_frag; f++) {
            struct frag fr = s->frag[f];
            if (fr.id >= 0) {
                if (frag_add(&s->frag2, &n2, &s->cap_frag2, fr)) return -ENOMEM;
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            const char *m;
            while (pos < end && (m = memmem(text + pos, end - pos, st, sl)) != NULL) {
                size_t at = (size_t)(m - text);
                if (at > pos && frag_add(&s->frag2, &n2, &s->cap_frag2, (struct frag){ pos, at - pos, -1 }))
                    return -ENOMEM;
                if (frag_add(&s->frag2, &n2, &s->cap_frag2, (struct frag){ at, sl, id })) return -ENOMEM;
                pos = at + sl;
            }
            if (pos < end && frag_add(&s->frag2, &n2, &s->cap_frag2, (struct frag){ pos, end - pos, -1 }))
                return -ENOMEM;
        }
        struct frag *tmp = s->frag;
        size_t tcap = s->cap_frag;
        s->frag = s->frag2;
        s->cap_frag = s->cap_frag2;
        s->frag2 = tmp;
        s->cap_frag2 = tcap;
        s->n_frag = n2;
    }
    return 0;
}

/* ---------------------------------------------------------------- GPT-2 byte-level BPE */

static int piece_add(size_t **a, size_t *n, size_t *cap, size_t start, size_t end)
{
    if (grow((void **)a, cap, 2 * (*n + 1), sizeof **a)) return -ENOMEM;
    (*a)[2 * *n] = start;
    (*a)[2 * *n + 1] = end;
    (*n)++;
    return 0;
}

/* Splits proxy[0..n) with the pre-tokenizer's regexes in turn, each one inside the pieces the
 * previous one left (matches and the gaps between them both become pieces, as in llama.cpp's
 * unicode_regex_split). Returns the number of pieces in s->piece, or -errno. */
static long pre_split(const struct slm_tokenizer *t, struct scratch *s, const char *proxy, size_t n)
{
    size_t np = 0;
    if (piece_add(&s->piece, &np, &s->cap_piece, 0, n)) return -ENOMEM;
    for (int r = 0; r < t->n_re; r++) {
        size_t np2 = 0;
        for (size_t i = 0; i < np; i++) {
            size_t a = s->piece[2 * i], l = s->piece[2 * i + 1] - a, prev = 0, off = 0;
            const PCRE2_SPTR subj = (PCRE2_SPTR)(proxy + a);
            while (off < l) {
                int rc = pcre2_match(t->re[r], subj, l, off, PCRE2_NO_UTF_CHECK, s->md, NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) return -EIO;
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
                size_t ms = ov[0], me = ov[1];
                if (ms > prev && piece_add(&s->piece2, &np2, &s->cap_piece2, a + prev, a + ms)) return -ENOMEM;
                if (me > ms) {
                    if (piece_add(&s->piece2, &np2, &s->cap_piece2, a + ms, a + me)) return -ENOMEM;
                    prev = off = me;
                } else {   /* an empty match (none of our patterns has one): step one character */
                    if (me >= l) break;
                    off = me + utf8_lead_len((unsigned char)proxy[a + me]);
                }
            }
            if (prev < l && piece_add(&s->piece2, &np2, &s->cap_piece2, a + prev, a + l)) return -ENOMEM;
        }
        size_t *tmp = s->piece, tcap = s->cap_piece;
        s->piece = s->piece2;
        s->cap_piece = s->cap_piece2;
        s->piece2 = tmp;
        s->cap_piece2 = tcap;
        np = np2;
    }
    return (long)np;
}

static int bpe_add_bigram(const struct slm_tokenizer *t, struct scratch *s, int l, int r)
{
    if (l < 0 || r < 0) return 0;
    int nl = s->sym_n[l], nr = s->sym_n[r];
    int rank = merge_rank(t, s->word + s->sym_start[l], (size_t)(nl + nr), (size_t)nl);
    if (rank < 0) return 0;
    return heap_push(s, (struct bigram){ (double)rank, l, r, nl, nr });
}

/* BPE over one byte-encoded word in s->word[0..n): merges the lowest-ranked adjacent pair
 * (leftmost on ties) until none is left, then looks each symbol up; a symbol that is not a
 * token falls back to its single bytes (skipped where those are no tokens), as llama.cpp does. */

/* One symbol per UTF-8 character of text (n bytes; a truncated tail is one symbol), linked
 * as a list. Returns the count, or -ENOMEM. */
static int split_symbols(struct scratch *s, const char *text, size_t n)
{
    if (syms_reserve(s, n)) return -ENOMEM;
    int ns = 0;
    for (size_t off = 0; off < n; ns++) {
        size_t cl = utf8_lead_len((unsigned char)text[off]);
        if (cl > n - off) cl = n - off;
        s->sym_start[ns] = (int)off;
        s->sym_n[ns] = (int)cl;
        s->sym_prev[ns] = ns - 1;
        off += cl;
        s->sym_next[ns] = off == n ? -1 : ns + 1;
    }
    return ns;
}

static int bpe_word(const struct slm_tokenizer *t, struct scratch *s, struct out *o, size_t n)
{
    if (t->ignore_merges) {
        int32_t id = vocab_find(t, s->word, n);
        if (id >= 0) {
            emit(o, id);
            return 0;
        }
    }
    int ns = split_symbols(s, s->word, n);
    if (ns < 0) return ns;
    s->n_heap = 0;
    for (int i = 1; i < ns; i++)
        if (bpe_add_bigram(t, s, i - 1, i)) return -ENOMEM;
    while (s->n_heap) {
        struct bigram b = heap_pop(s);
        if (s->sym_n[b.left] != b.a || s->sym_n[b.right] != b.b || !b.a || !b.b) continue;
        s->sym_n[b.left] += s->sym_n[b.right];
        s->sym_n[b.right] = 0;
        s->sym_next[b.left] = s->sym_next[b.right];
        if (s->sym_next[b.right] >= 0) s->sym_prev[s->sym_next[b.right]] = b.left;
        if (bpe_add_bigram(t, s, s->sym_prev[b.left], b.left) ||
            bpe_add_bigram(t, s, b.left, s->sym_next[b.left]))
            return -ENOMEM;
    }
    for (int i = 0; i != -1 && ns > 0; i = s->sym_next[i]) {
        const char *p = s->word + s->sym_start[i];
        int32_t id = vocab_find(t, p, (size_t)s->sym_n[i]);
        if (id >= 0) {
            emit(o, id);
            continue;
        }
        for (int k = 0; k < s->sym_n[i]; k++) {
            id = vocab_find(t, p + k, 1);
            if (id >= 0) emit(o, id);
        }
    }
    return 0;
}

/*
 * One raw fragment through the BPE path. The bytes are first decoded as llama.cpp decodes them
 * (invalid bytes become U+FFFD, overlong forms and surrogates decode) and re-encoded: that is the
 * text the words are cut from. PCRE2 runs on a copy in which surrogates (which it rejects) are
 * U+FFFD, a code point of the same length and the same regex classes (not a letter, number or
 * space).
 */
static int bpe_fragment(const struct slm_tokenizer *t, struct scratch *s, struct out *o, const char *text,
                        size_t len)
{
    if (grow((void **)&s->buf, &s->cap_buf, 3 * len, 1) || grow((void **)&s->buf2, &s->cap_buf2, 3 * len, 1))
        return -ENOMEM;
    char *clean = s->buf, *proxy = s->buf2;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        uint32_t cp = utf8_decode_lenient((const unsigned char *)text + i, len - i, &k);
        int w;
        if (cp == UINT32_MAX || (cp >= 0xD800 && cp <= 0xDFFF)) {
            w = utf8_put(0xFFFD, proxy + n);
            if (cp == UINT32_MAX) memcpy(clean + n, proxy + n, 3);
            else utf8_put(cp, clean + n);
        } else {
            w = utf8_put(cp, clean + n);
            memcpy(proxy + n, clean + n, (size_t)w);
        }
        n += (size_t)w;
        i += k;
    }
    long np = pre_split(t, s, proxy, n);
    if (np < 0) return (int)np;
    for (long p = 0; p < np; p++) {
        size_t a = s->piece[2 * p], b = s->piece[2 * p + 1], wn = 0;
        if (grow((void **)&s->word, &s->cap_word, 2 * (b - a), 1)) return -ENOMEM;
        for (size_t i = a; i < b; i++) {
            unsigned char c = (unsigned char)clean[i];
            wn += (size_t)utf8_put(gpt2_byte_cp(c), s->word + wn);
        }
        int rc = bpe_word(t, s, o, wn);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- SentencePiece-style BPE */

static int spm_add_bigram(const struct slm_tokenizer *t, struct scratch *s, int l, int r)
{
    if (l < 0 || r < 0) return 0;
    int size = s->sym_n[l] + s->sym_n[r];
    int32_t id = vocab_find(t, s->buf + s->sym_start[l], (size_t)size);
    if (id < 0) return 0;
    return heap_push(s, (struct bigram){ -(double)t->score[id], l, r, size, 0 });
}

/*
 * One raw fragment through the SentencePiece path (llama.cpp's llm_tokenizer_spm_session): spaces
 * become U+2581 (with one prepended when add_space_prefix is set and the fragment starts the text
 * or follows a special token), the text is cut into UTF-8 characters by their lead byte (no
 * validation, no U+FFFD), the adjacent pair whose concatenation is the highest-scored token is
 * merged first (leftmost on ties), and a symbol that is no token falls back to its bytes' tokens <0x00> .. <0xFF>.
 */
static int spm_fragment(const struct slm_tokenizer *t, struct scratch *s, struct out *o, const char *text,
                        size_t len, int prefix)
{
    if (grow((void **)&s->buf, &s->cap_buf, 3 * (len + 1), 1)) return -ENOMEM;
    size_t n = 0;
    if (prefix) {
        memcpy(s->buf, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s->buf + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            s->buf[n++] = text[i];
        }
    }
    int ns = split_symbols(s, s->buf, n);
    if (ns < 0) return ns;
    s->n_heap = 0;
    for (int i = 1; i < ns; i++)
        if (spm_add_bigram(t, s, i - 1, i)) return -ENOMEM;
    while (s->n_heap) {
        struct bigram b = heap_pop(s);
        if (!s->sym_n[b.left] || !s->sym_n[b.right] || s->sym_n[b.left] + s->sym_n[b.right] != b.a) continue;
        s->sym_n[b.left] += s->sym_n[b.right];
        s->sym_n[b.right] = 0;
        s->sym_next[b.left] = s->sym_next[b.right];
        if (s->sym_next[b.right] >= 0) s->sym_prev[s->sym_next[b.right]] = b.left;
        if (spm_add_bigram(t, s, s->sym_prev[b.left], b.left) ||
            spm_add_bigram(t, s, b.left, s->sym_next[b.left]))
            return -ENOMEM;
    }
    for (int i = 0; i != -1 && ns > 0; i = s->sym_next[i]) {
        const char *p = s->buf + s->sym_start[i];
        int32_t id = vocab_find(t, p, (size_t)s->sym_n[i]);
        if (id >= 0) {
            emit(o, id);
            continue;
        }
        for (int k = 0; k < s->sym_n[i]; k++) {
            id = t->byte_tok[(unsigned char)p[k]];
            if (id >= 0) emit(o, id);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- encode */

int slm_tok_encode(const struct slm_tokenizer *t, const char *text, size_t len, int add_special,
                   int parse_special, int32_t *out, int cap)
{
    if (!t || (!text && len) || cap < 0 || (cap > 0 && !out) || len > (SIZE_MAX >> 3)) return -EINVAL;
    struct scratch s = { 0 };
    struct out o = { out, cap, 0 };
    int rc = 0;
    if (t->kind == KIND_BPE && !(s.md = pcre2_match_data_create(4, NULL))) {
        rc = -ENOMEM;
        goto done;
    }
    if ((rc = partition(t, &s, text, len, parse_special))) goto done;
    if (add_special && t->add_bos && t->bos >= 0) emit(&o, t->bos);
    int prev_special = 1;
    for (size_t f = 0; f < s.n_frag; f++) {
        const struct frag fr = s.frag[f];
        if (fr.id >= 0) {
            emit(&o, fr.id);
            prev_special = 1;
            continue;
        }
        if (t->kind == KIND_BPE) rc = bpe_fragment(t, &s, &o, text + fr.off, fr.len);
        else rc = spm_fragment(t, &s, &o, text + fr.off, fr.len, t->add_space_prefix && prev_special);
        if (rc) goto done;
        prev_special = 0;
    }
    if (add_special && t->add_eos && t->eos >= 0) emit(&o, t->eos);
done:
    scratch_free(&s);
    return rc ? rc : o.n;
}

