/*
 * daemon/engine/tokenizer.c - GPT-2 byte-level BPE and SentencePiece-style BPE, matching
 * llama.cpp (src/llama-vocab.cpp, src/unicode.cpp) id for id. docs/tokenizer.md has the rules.
 *
 * Vocabulary, merges and special tokens live in open-addressing hash tables (xxh3 keys, linear
 * probing, ids as values, the text compared on hit). The pre-tokenizer regexes run on PCRE2 in
 * UTF + UCP mode.
 */
#define _GNU_SOURCE
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <xxhash.h>

/* Token attributes, as llama.cpp's llama_token_attr. */
enum {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
};

enum tok_kind { KIND_BPE, KIND_SPM };

#define MAX_REGEX 4

/* An open-addressing table of int32 values (ids or indices); the lookup functions compare the
 * text the value stands for. */
struct htab {
    int32_t *slot;   /* (mask + 1), -1 = empty */
    uint32_t mask;
};

struct merge {
    uint32_t off;    /* into merge_pool: the two halves, concatenated */
    uint32_t len;
    uint32_t split;  /* length of the left half */
};

struct slm_tokenizer {
    enum tok_kind kind;
    int n_vocab;
    char *text_pool;       /* every token's text */
    uint32_t *text_off;    /* (n_vocab + 1) */
    uint8_t *attr;         /* (n_vocab) ATTR_* */
    float *score;          /* (n_vocab) */
    char *piece_pool;      /* every token's decoded bytes (llama.cpp's token_to_piece, special=1) */
    uint32_t *piece_off;   /* (n_vocab + 1) */
    uint8_t *eog;          /* (n_vocab) */
    struct htab vocab;     /* text -> id; the later of two equal texts wins, as in llama.cpp */

    struct merge *merges;  /* (n_merges), index = rank */
    char *merge_pool;
    int n_merges;
    struct htab merge_tab; /* (left, right) -> rank; the first of two equal pairs wins */

    int32_t *special;      /* control/user-defined/unknown ids, longest text first, then by id */
    int n_special;
    struct htab special_tab; /* text -> index into special */
    uint8_t special_first[256]; /* 1 if some special text starts with this byte */
    int *special_lens;     /* distinct special text lengths, descending */
    int n_special_lens;

    pcre2_code *re[MAX_REGEX];
    int n_re;
    int ignore_merges, add_bos, add_eos, add_space_prefix;
    int32_t bos, eos, eot, eom;
    int32_t byte_tok[256]; /* BPE: the token of the byte's GPT-2 character; SPM: <0xXX>; -1 */
};

/* ---------------------------------------------------------------- small helpers */

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, n, seed);
}

static int htab_init(struct htab *h, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    h->slot = malloc(cap * sizeof *h->slot);
    if (!h->slot) return -ENOMEM;
    memset(h->slot, 0xff, cap * sizeof *h->slot);
    h->mask = (uint32_t)(cap - 1);
    return 0;
}

static const char *tok_text(const struct slm_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text_pool + t->text_off[id];
}

static int32_t vocab_find(const struct slm_tokenizer *t, const char *s, size_t n)
{
    for (uint32_t i = (uint32_t)hash_bytes(s, n, 0) & t->vocab.mask;; i = (i + 1) & t->vocab.mask) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        size_t l;
        const char *p = tok_text(t, id, &l);
        if (l == n && memcmp(p, s, n) == 0) return id;
    }
}

/* Inserts id under its text; an existing entry with the same text is replaced (the later id
 * wins, as llama.cpp's token_to_id[text] = id does). */
static void vocab_insert(struct slm_tokenizer *t, int32_t id)
{
    size_t n;
    const char *s = tok_text(t, id, &n);
    for (uint32_t i = (uint32_t)hash_bytes(s, n, 0) & t->vocab.mask;; i = (i + 1) & t->vocab.mask) {
        int32_t cur = t->vocab.slot[i];
        if (cur >= 0) {
            size_t l;
            const char *p = tok_text(t, cur, &l);
            if (l != n || memcmp(p, s, n) != 0) continue;
        }
        t->vocab.slot[i] = id;
        return;
    }
}

/* The rank of merging s[0..split) with s[split..n), or -1. */
static int merge_rank(const struct slm_tokenizer *t, const char *s, size_t n, size_t split)
{
    if (!t->n_merges) return -1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n, split) & t->merge_tab.mask;; i = (i + 1) & t->merge_tab.mask) {
        int32_t r = t->merge_tab.slot[i];
        if (r < 0) return -1;
        const struct merge *m = &t->merges[r];
        if (m->len == n && m->split == split && memcmp(t->merge_pool + m->off, s, n) == 0) return r;
    }
}

static int32_t special_find(const struct slm_tokenizer *t, const char *s, size_t n)
{
    for (uint32_t i = (uint32_t)hash_bytes(s, n, 0) & t->special_tab.mask;; i = (i + 1) & t->special_tab.mask) {
        int32_t k = t->special_tab.slot[i];
        if (k < 0) return -1;
        size_t l;
        const char *p = tok_text(t, t->special[k], &l);
        if (l == n && memcmp(p, s, n) == 0) return k;
    }
}

/* UTF-8 encoding of cp (cp <= 0x1FFFFF); returns its length. */
static int utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* llama.cpp's unicode_len_utf8: the sequence length a lead byte announces. */
static size_t utf8_lead_len(unsigned char c)
{
    static const uint8_t lookup[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lookup[c >> 4];
}

/* GPT-2's byte -> code point map: printable bytes map to themselves, the rest to 256 + n. */
static uint32_t gpt2_byte_cp(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) n++;
    return 256 + n;
}

/* The inverse: the byte for code point cp, or -1. */
static int gpt2_cp_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    unsigned n = 0;
    for (unsigned c = 0; c < 256; c++) {
        if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE)) continue;
        if (256 + n == cp) return (int)c;
        n++;
    }
    return -1;
}

/* llama.cpp's lenient UTF-8 decoder (unicode_cpt_from_utf8): checks the continuation bits only,
 * so overlong forms and surrogates decode. Returns the code point and its length in *n, or
 * UINT32_MAX with *n = 1 for an invalid byte. Sequences that decode above U+10FFFF (llama.cpp
 * aborts on them) are invalid bytes here. */
static uint32_t utf8_decode_lenient(const unsigned char *s, size_t len, size_t *n)
{
    unsigned c = s[0];
    *n = 1;
    if (c < 0x80) return c;
    if (!(c & 0x40)) return UINT32_MAX;
    size_t need = !(c & 0x20) ? 1 : !(c & 0x10) ? 2 : !(c & 0x08) ? 3 : 0;
    if (!need || need >= len) return UINT32_MAX;
    for (size_t k = 1; k <= need; k++)
        if ((s[k] & 0xC0) != 0x80) return UINT32_MAX;
    uint32_t cp = c & (0x3Fu >> need);
    for (size_t k = 1; k <= need; k++) cp = (cp << 6) | (s[k] & 0x3Fu);
    if (cp > 0x10FFFF) return UINT32_MAX;
    *n = need + 1;
    return cp;
}

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

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

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
 * merged first (leftmost on ties), and a symbol that is no token falls back to <0xXX> tokens.
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
    const unsigned char *piece = (const unsigned char *)t->piece_pool + t->piece_off[id];
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
