/*
 * daemon/engine/tok_internal.h - what tokenizer.c (loading, decoding) and tok_encode.c
 * (encoding) share: the tokenizer's tables and the small helpers over them.
 */
#ifndef SLM_ENGINE_TOK_INTERNAL_H
#define SLM_ENGINE_TOK_INTERNAL_H

#include "common/err.h"
#include "daemon/engine/gguf.h"

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
    int32_t byte_tok[256]; /* BPE: the token of the byte's GPT-2 character; SPM: the byte token "<0x%02X>" of b; -1 */
};

/* ---------------------------------------------------------------- small helpers */

static inline uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(p, n, seed);
}

static inline int htab_init(struct htab *h, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    h->slot = malloc(cap * sizeof *h->slot);
    if (!h->slot) return -ENOMEM;
    memset(h->slot, 0xff, cap * sizeof *h->slot);
    h->mask = (uint32_t)(cap - 1);
    return 0;
}

static inline const char *tok_text(const struct slm_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text_pool + t->text_off[id];
}

static inline int32_t vocab_find(const struct slm_tokenizer *t, const char *s, size_t n)
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
static inline void vocab_insert(struct slm_tokenizer *t, int32_t id)
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
static inline int merge_rank(const struct slm_tokenizer *t, const char *s, size_t n, size_t split)
{
    if (!t->n_merges) return -1;
    for (uint32_t i = (uint32_t)hash_bytes(s, n, split) & t->merge_tab.mask;; i = (i + 1) & t->merge_tab.mask) {
        int32_t r = t->merge_tab.slot[i];
        if (r < 0) return -1;
        const struct merge *m = &t->merges[r];
        if (m->len == n && m->split == split && memcmp(t->merge_pool + m->off, s, n) == 0) return r;
    }
}

static inline int32_t special_find(const struct slm_tokenizer *t, const char *s, size_t n)
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
static inline int utf8_put(uint32_t cp, char *o)
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
static inline size_t utf8_lead_len(unsigned char c)
{
    static const uint8_t lookup[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
    return lookup[c >> 4];
}

/* GPT-2's byte -> code point map: printable bytes map to themselves, the rest to 256 + n. */
static inline uint32_t gpt2_byte_cp(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    unsigned n = 0;
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE))) n++;
    return 256 + n;
}

/* The inverse: the byte for code point cp, or -1. */
static inline int gpt2_cp_byte(uint32_t cp)
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
static inline uint32_t utf8_decode_lenient(const unsigned char *s, size_t len, size_t *n)
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

static inline int grow(void **p, size_t *cap, size_t need, size_t elem)
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


#endif
