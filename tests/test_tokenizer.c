/*
 * tests/test_tokenizer.c - the tokenizer against llama.cpp's ids, id for id.
 *
 * Reference files (tests/golden/tok_*.txt, made by tests/golden/make_tok_reference.py):
 * every corpus string must encode to llama.cpp's ids exactly; valid UTF-8 strings must come back
 * from streaming those ids through slm_detok_push/flush one at a time; every chunk the decoder
 * emits must be valid UTF-8. The "llama-bpe" and "qwen2" files use SmolLM2's vocabulary with the
 * pre-tokenizer changed: the test writes that GGUF itself (a small GGUF writer below), and uses the
 * same writer for bad-input GGUFs. Skips (77) when the models are absent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/engine/gguf.h"
#include "common/utf8.h"
#include "daemon/engine/tokenizer.h"

static int failures;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            failures++;                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                 \
            fputc('\n', stderr);                          \
        }                                                 \
    } while (0)

/* ---------------------------------------------------------------- a minimal GGUF writer */

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -EIO; }

static int put_str(FILE *f, const char *s, uint64_t n)
{
    return put(f, &n, 8) || put(f, s, n) ? -EIO : 0;
}

/* Bytes of the value of kv in the source mapping (after its type, and for arrays after the
 * element type and count). */
static size_t value_size(const struct slm_gguf_kv *kv)
{
    if (kv->type == SLM_GGUF_STRING) {
        uint64_t l;
        memcpy(&l, kv->value, 8);
        return 8 + (size_t)l;
    }
    if (kv->type != SLM_GGUF_ARRAY) return slm_gguf_vtype_size(kv->type);
    if (kv->arr_type != SLM_GGUF_STRING) return (size_t)kv->arr_len * slm_gguf_vtype_size(kv->arr_type);
    size_t off = 0;
    for (uint64_t i = 0; i < kv->arr_len; i++) {
        uint64_t l;
        memcpy(&l, kv->value + off, 8);
        off += 8 + (size_t)l;
    }
    return off;
}

/* write_gguf: every token "" of type 0 (undefined) and no special token ids, so that no token
 * has a piece: the pool of pieces is empty. */
static int no_pieces;

static int dropped(const struct slm_gguf_kv *kv, const char *drop)
{
    if (drop && slm_gguf_str_eq(kv->key, drop)) return 1;
    return no_pieces && kv->key.len > 9 && memcmp(kv->key.ptr + kv->key.len - 9, "_token_id", 9) == 0;
}

/* Writes a tensor-less GGUF v3 to path with general.architecture and every tokenizer.* key of
 * src, except `drop` (may be NULL); the string keys named in set_key[i] get set_val[i]. */
static int write_gguf(const char *path, const struct slm_gguf *src, const char *drop, const char *const *set_key,
                      const char *const *set_val, int n_set)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -errno;
    uint64_t n_kv = 0;
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const struct slm_gguf_kv *kv = &src->kv[i];
        if ((slm_gguf_str_eq(kv->key, "general.architecture") ||
             (kv->key.len > 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0)) &&
            !dropped(kv, drop))
            n_kv++;
    }
    uint32_t version = 3, vt;
    uint64_t n_tensors = 0;
    int rc = put(f, "GGUF", 4) || put(f, &version, 4) || put(f, &n_tensors, 8) || put(f, &n_kv, 8);
    for (uint64_t i = 0; i < src->n_kv && !rc; i++) {
        const struct slm_gguf_kv *kv = &src->kv[i];
        if (!(slm_gguf_str_eq(kv->key, "general.architecture") ||
              (kv->key.len > 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0)) ||
            dropped(kv, drop))
            continue;
        rc = put_str(f, kv->key.ptr, kv->key.len);
        const char *val = NULL;
        for (int k = 0; k < n_set; k++)
            if (slm_gguf_str_eq(kv->key, set_key[k])) val = set_val[k];
        if (val) {
            vt = SLM_GGUF_STRING;
            rc = rc || put(f, &vt, 4) || put_str(f, val, strlen(val));
            continue;
        }
        rc = rc || put(f, &kv->type, 4);
        if (kv->type == SLM_GGUF_ARRAY) rc = rc || put(f, &kv->arr_type, 4) || put(f, &kv->arr_len, 8);
        if (no_pieces && slm_gguf_str_eq(kv->key, "tokenizer.ggml.token_type")) {
            int32_t zero = 0;
            for (uint64_t k = 0; k < kv->arr_len && !rc; k++) rc = put(f, &zero, 4);
            continue;
        }
        if (no_pieces && slm_gguf_str_eq(kv->key, "tokenizer.ggml.tokens")) {   /* all "" */
            uint64_t zero = 0;
            for (uint64_t k = 0; k < kv->arr_len && !rc; k++) rc = put(f, &zero, 8);
            continue;
        }
        rc = rc || put(f, kv->value, value_size(kv));
    }
    if (fclose(f) && !rc) rc = -EIO;
    return rc ? -EIO : 0;
}

/* ---------------------------------------------------------------- reference files */

struct line {
    unsigned char *text;
    size_t len;
    int add_special, parse_special;
    int32_t *ids;
    int n_ids;
};

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static void print_ids(const char *what, const int32_t *ids, int n)
{
    fprintf(stderr, "    %s (%d):", what, n);
    for (int i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

static void print_text(const unsigned char *s, size_t n)
{
    fprintf(stderr, "    text (%zu bytes): \"", n);
    for (size_t i = 0; i < n && i < 160; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '"' && s[i] != '\\') fputc(s[i], stderr);
        else fprintf(stderr, "\\x%02x", s[i]);
    }
    fprintf(stderr, n > 160 ? "\"...\n" : "\"\n");
}

/* Checks every line of one reference file against t. Returns the number of mismatches. */
static int check_file(const struct slm_tokenizer *t, const char *file, int min_lines)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        CHECK(0, "open %s: %s", file, strerror(errno));
        return 1;
    }
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t got;
    int n_lines = 0, mismatches = 0, roundtrip_checked = 0, roundtrip_bad = 0, chunk_bad = 0;
    double enc_s = 0;
    int32_t probe[4];
    /* whether add_special adds a BOS: the empty text then encodes to it alone */
    const int adds_bos = slm_tok_encode(t, "", 0, 1, 0, probe, 4) == 1 && probe[0] == slm_tok_bos(t);
    int32_t *ours = NULL;
    int ours_cap = 0;
    char *dec = NULL, chunk[4096];
    size_t dec_cap = 0;
    while ((got = getline(&buf, &bcap, f)) > 0) {
        if (buf[got - 1] == '\n') buf[--got] = 0;
        if (buf[0] == '#') {
            if (strncmp(buf, "#n_vocab\t", 9) == 0) {
                int nv = atoi(buf + 9);
                CHECK(slm_tok_n_vocab(t) == nv, "%s: n_vocab: expected %d, got %d", file, nv, slm_tok_n_vocab(t));
            } else if (strncmp(buf, "#eog\t", 5) == 0) {
                int n_eog = 0, want = 0;
                for (char *p = buf + 5; *p;) {
                    char *e;
                    long id = strtol(p, &e, 10);
                    if (e == p) break;
                    want++;
                    CHECK(slm_tok_is_eog(t, (int32_t)id), "%s: eog: expected id %ld to end generation", file, id);
                    p = e;
                }
                for (int id = 0; id < slm_tok_n_vocab(t); id++) n_eog += slm_tok_is_eog(t, id);
                CHECK(n_eog == want, "%s: eog count: expected %d, got %d", file, want, n_eog);
            }
            continue;
        }
        struct line ln = { 0 };
        char *tab1 = strchr(buf, '\t');
        if (!tab1) continue;
        ln.len = (size_t)(tab1 - buf) / 2;
        ln.text = malloc(ln.len + 1);
        for (size_t i = 0; i < ln.len; i++) ln.text[i] = (unsigned char)(hexval(buf[2 * i]) * 16 + hexval(buf[2 * i + 1]));
        ln.add_special = tab1[1] == '1';
        ln.parse_special = tab1[3] == '1';
        char *p = tab1 + 5;
        ln.ids = malloc((strlen(p) / 2 + 2) * sizeof *ln.ids);
        for (;;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            ln.ids[ln.n_ids++] = (int32_t)v;
            p = e;
        }
        n_lines++;

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int n = slm_tok_encode(t, (const char *)ln.text, ln.len, ln.add_special, ln.parse_special, NULL, 0);
        if (n > ours_cap) {
            ours_cap = n * 2;
            ours = realloc(ours, (size_t)ours_cap * sizeof *ours);
        }
        int n2 = n >= 0 ? slm_tok_encode(t, (const char *)ln.text, ln.len, ln.add_special, ln.parse_special, ours, n) : n;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        enc_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        CHECK(n2 == n, "%s line %d: second encode: expected %d ids, got %d", file, n_lines, n, n2);
        if (n != ln.n_ids || (n > 0 && memcmp(ours, ln.ids, (size_t)n * sizeof *ours) != 0)) {
            if (++mismatches <= 10) {
                fprintf(stderr, "%s: string %d (add_special %d, parse_special %d): ids differ from llama.cpp\n", file,
                        n_lines, ln.add_special, ln.parse_special);
                print_text(ln.text, ln.len);
                print_ids("llama.cpp", ln.ids, ln.n_ids);
                print_ids("slmd", ours, n);
            }
        }

        /* decode llama.cpp's ids as a stream, one id at a time; skip what add_special added */
        int first = 0, last = ln.n_ids;
        if (ln.add_special && adds_bos && last > 0) first = 1;
        /* (neither model adds EOS: add_eos_token is false in both) */
        struct slm_detok d = { 0 };
        size_t dn = 0;
        int bad_chunk = 0;
        for (int i = first; i <= last; i++) {
            int r = i < last ? slm_detok_push(t, &d, ln.ids[i], 1, chunk, sizeof chunk)
                             : slm_detok_flush(&d, chunk, sizeof chunk);
            if (r < 0 || (size_t)r > sizeof chunk) {
                CHECK(0, "%s line %d: detok of id %d: got %d", file, n_lines, i < last ? ln.ids[i] : -1, r);
                break;
            }
            if (!slm_utf8_valid((unsigned char *)chunk, (size_t)r)) bad_chunk = 1;
            if (dn + (size_t)r > dec_cap) {
                dec_cap = (dn + (size_t)r) * 2 + 64;
                dec = realloc(dec, dec_cap);
            }
            memcpy(dec + dn, chunk, (size_t)r);
            dn += (size_t)r;
        }
        if (bad_chunk && ++chunk_bad <= 5) {
            fprintf(stderr, "%s line %d: the decoder emitted a chunk that is not valid UTF-8\n", file, n_lines);
            print_text(ln.text, ln.len);
        }
        if (slm_utf8_valid(ln.text, ln.len)) {
            roundtrip_checked++;
            if (dn != ln.len || memcmp(dec, ln.text, dn) != 0) {
                if (++roundtrip_bad <= 5) {
                    fprintf(stderr, "%s line %d: round trip: expected the input back\n", file, n_lines);
                    print_text(ln.text, ln.len);
                    fprintf(stderr, "  got:\n");
                    print_text((unsigned char *)dec, dn);
                }
            }
        }
        free(ln.text);
        free(ln.ids);
    }
    fclose(f);
    free(buf);
    free(ours);
    free(dec);
    printf("%s: %d strings, %d mismatches with llama.cpp; round trip %d/%d; %d bad chunks; encode %.1f ms\n", file,
           n_lines, mismatches, roundtrip_checked - roundtrip_bad, roundtrip_checked, chunk_bad, enc_s * 1e3);
    CHECK(n_lines >= min_lines, "%s: expected >= %d strings, got %d", file, min_lines, n_lines);
    CHECK(mismatches == 0, "%s: mismatches: expected 0, got %d", file, mismatches);
    CHECK(roundtrip_bad == 0, "%s: round trip failures: expected 0, got %d", file, roundtrip_bad);
    CHECK(chunk_bad == 0, "%s: invalid UTF-8 chunks: expected 0, got %d", file, chunk_bad);
    return mismatches;
}

/* Creates a tokenizer from a copy of g written to tmp with the given changes. */
static struct slm_tokenizer *variant(const char *tmp, const struct slm_gguf *g, const char *drop, const char *key,
                                     const char *val, char *err)
{
    const char *keys[1] = { key }, *vals[1] = { val };
    int rc = write_gguf(tmp, g, drop, keys, vals, key ? 1 : 0);
    if (rc) {
        snprintf(err, SLM_ERR_LEN, "write %s: %s", tmp, strerror(-rc));
        return NULL;
    }
    struct slm_gguf *v = slm_gguf_open(tmp, err);
    if (!v) return NULL;
    struct slm_tokenizer *t = slm_tok_create(v, err);
    slm_gguf_close(&v);
    return t;
}

static void check_bad_gguf(const char *tmp, const struct slm_gguf *g)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_tokenizer *t = variant(tmp, g, "tokenizer.ggml.tokens", NULL, NULL, err);
    CHECK(!t && strstr(err, "tokenizer.ggml.tokens"), "missing tokens: expected NULL and an error naming the key, got %p \"%s\"",
          (void *)t, err);
    slm_tok_destroy(&t);
    err[0] = 0;
    t = variant(tmp, g, NULL, "tokenizer.ggml.model", "sentencepiece-xyz", err);
    CHECK(!t && strstr(err, "tokenizer.ggml.model") && strstr(err, "sentencepiece-xyz"),
          "unknown model: expected NULL and an error naming the key, got %p \"%s\"", (void *)t, err);
    slm_tok_destroy(&t);
    err[0] = 0;
    t = variant(tmp, g, NULL, "tokenizer.ggml.pre", "no-such-pre", err);
    CHECK(!t && strstr(err, "tokenizer.ggml.pre") && strstr(err, "no-such-pre"),
          "unknown pre: expected NULL and an error naming the key, got %p \"%s\"", (void *)t, err);
    slm_tok_destroy(&t);
    err[0] = 0;
    t = variant(tmp, g, "tokenizer.ggml.model", NULL, NULL, err);
    CHECK(!t && strstr(err, "tokenizer.ggml.model"), "missing model: expected NULL and an error naming the key, got \"%s\"", err);
    slm_tok_destroy(&t);
    err[0] = 0;
    t = variant(tmp, g, "tokenizer.ggml.merges", NULL, NULL, err);
    CHECK(!t && strstr(err, "tokenizer.ggml.merges"), "missing merges: expected NULL and an error naming the key, got \"%s\"", err);
    slm_tok_destroy(&t);
    /* No token has a piece (every type undefined, no special ids): decoding any id gives
     * nothing, with no offset into the empty pool (UBSan's NULL + offset before the fix). */
    err[0] = 0;
    no_pieces = 1;
    t = variant(tmp, g, NULL, NULL, NULL, err);
    no_pieces = 0;
    CHECK(t != NULL, "every piece empty: expected a tokenizer, got \"%s\"", err);
    if (t) {
        struct slm_detok d = { 0 };
        char out[16];
        int k0 = slm_detok_push(t, &d, 0, 1, out, sizeof out), k1 = slm_detok_push(t, &d, 1, 0, out, sizeof out);
        CHECK(k0 == 0 && k1 == 0, "every piece empty: detok of ids 0 and 1: expected 0 bytes each, got %d, %d", k0, k1);
    }
    slm_tok_destroy(&t);
}

static void check_api(const struct slm_tokenizer *t)
{
    struct slm_detok d = { 0 };
    char out[16];
    int32_t ids[4];
    CHECK(slm_detok_push(t, &d, -1, 1, out, sizeof out) == -EINVAL, "detok of id -1: expected -EINVAL");
    CHECK(slm_detok_push(t, &d, slm_tok_n_vocab(t), 1, out, sizeof out) == -EINVAL, "detok of id n_vocab: expected -EINVAL");
    CHECK(slm_tok_piece(t, slm_tok_n_vocab(t), NULL) == NULL, "piece of id n_vocab: expected NULL");
    CHECK(slm_tok_encode(t, NULL, 3, 0, 0, NULL, 0) == -EINVAL, "encode of NULL text: expected -EINVAL");
    CHECK(slm_tok_encode(t, "abc", 3, 0, 0, NULL, 4) == -EINVAL, "encode into NULL with cap 4: expected -EINVAL");
    CHECK(slm_tok_encode(t, "", 0, 0, 0, ids, 4) == 0, "encode of empty text: expected 0 ids");
    /* a short output buffer gets the first cap ids, the return value stays the total */
    int n = slm_tok_encode(t, "hello world, hello world", 24, 0, 0, ids, 1);
    int32_t all[16];
    int n2 = slm_tok_encode(t, "hello world, hello world", 24, 0, 0, all, 16);
    CHECK(n == n2 && n > 1 && ids[0] == all[0], "encode with cap 1: expected total %d and the first id, got %d", n2, n);
    for (int id = 0; id < slm_tok_n_vocab(t) && id < 2000; id++) {
        size_t l;
        const char *p = slm_tok_piece(t, id, &l);
        CHECK(p && slm_tok_find(t, p, l) >= 0, "find(piece(%d)): expected an id", id);
    }
}

/* Gemma's byte tokens make it easy to split one character over several tokens. */
static void check_detok_bytes(const struct slm_tokenizer *t)
{
    int32_t b[256];
    for (int i = 0; i < 256; i++) {
        char s[8];
        int l = snprintf(s, sizeof s, "<0x%02X>", i);
        b[i] = slm_tok_find(t, s, (size_t)l);
        if (b[i] < 0) return;
    }
    struct slm_detok d = { 0 };
    char out[64];
    /* U+1F600 F0 9F 98 80 in four tokens: nothing until the last */
    CHECK(slm_detok_push(t, &d, b[0xF0], 1, out, sizeof out) == 0, "F0: expected 0 bytes");
    CHECK(slm_detok_push(t, &d, b[0x9F], 1, out, sizeof out) == 0, "9F: expected 0 bytes");
    CHECK(slm_detok_push(t, &d, b[0x98], 1, out, sizeof out) == 0, "98: expected 0 bytes");
    int r = slm_detok_push(t, &d, b[0x80], 1, out, sizeof out);
    CHECK(r == 4 && memcmp(out, "\xF0\x9F\x98\x80", 4) == 0, "80: expected the 4-byte emoji, got %d bytes", r);
    /* a broken sequence: E2 82 then 'A': one U+FFFD for E2 82, then A */
    slm_detok_push(t, &d, b[0xE2], 1, out, sizeof out);
    slm_detok_push(t, &d, b[0x82], 1, out, sizeof out);
    r = slm_detok_push(t, &d, b['A'], 1, out, sizeof out);
    CHECK(r == 4 && memcmp(out, "\xEF\xBF\xBD" "A", 4) == 0, "E2 82 A: expected U+FFFD A, got %d bytes", r);
    /* FF can never start a character; C0 80 is overlong: U+FFFD each byte */
    r = slm_detok_push(t, &d, b[0xFF], 1, out, sizeof out);
    CHECK(r == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0, "FF: expected U+FFFD, got %d bytes", r);
    slm_detok_push(t, &d, b[0xC0], 1, out, sizeof out);
    r = slm_detok_push(t, &d, b[0x80], 1, out, sizeof out);
    CHECK(r == 3, "C0 80: expected 2x U+FFFD over two pushes, got %d bytes in the second", r);
    /* an incomplete tail at the end of the stream: one U+FFFD */
    CHECK(slm_detok_push(t, &d, b[0xE2], 1, out, sizeof out) == 0, "E2: expected 0 bytes");
    r = slm_detok_flush(&d, out, sizeof out);
    CHECK(r == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0 && d.n_pending == 0, "flush: expected U+FFFD, got %d", r);
    CHECK(slm_detok_flush(&d, out, sizeof out) == 0, "second flush: expected 0 bytes");
    /* cap smaller than the output: the count is the total, out holds the first cap bytes */
    int32_t id = slm_tok_find(t, "<start_of_turn>", 15);
    if (id >= 0) {
        r = slm_detok_push(t, &d, id, 1, out, 4);
        CHECK(r == 15 && memcmp(out, "<sta", 4) == 0, "cap 4: expected 15 with the first 4 bytes, got %d", r);
        r = slm_detok_push(t, &d, id, 0, out, sizeof out);
        CHECK(r == 0, "control token without render_special: expected 0 bytes, got %d", r);
    }
}

int main(void)
{
    const char *mdir = getenv("SLM_MODEL_DIR");
    const char *data = getenv("SLM_TEST_DATA");
    char smollm[1100], gemma[1100], path[1100], tmp[256];
    static char default_dir[1024];
    if (!mdir) {
        snprintf(default_dir, sizeof default_dir, "%s/.cache/slmd/models", getenv("HOME") ? getenv("HOME") : ".");
        mdir = default_dir;
    }
    if (!data) data = "tests";
    snprintf(smollm, sizeof smollm, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", mdir);
    snprintf(gemma, sizeof gemma, "%s/gemma-3-270m-q4_k_m.gguf", mdir);
    if (access(smollm, R_OK) != 0) {
        printf("skip: %s is absent (packaging/fetch-models.sh fetches it)\n", smollm);
        return 77;
    }
    snprintf(tmp, sizeof tmp, "/tmp/slm_test_tokenizer_%d.gguf", (int)getpid());

    char err[SLM_ERR_LEN];
    struct slm_gguf *g = slm_gguf_open(smollm, err);
    CHECK(g, "open %s: %s", smollm, err);
    if (!g) return 1;
    struct slm_tokenizer *t = slm_tok_create(g, err);
    CHECK(t, "create SmolLM2 tokenizer: %s", err);
    if (t) {
        CHECK(slm_tok_bos(t) == 1 && slm_tok_eos(t) == 2, "SmolLM2 bos/eos: expected 1/2, got %d/%d", slm_tok_bos(t),
              slm_tok_eos(t));
        CHECK(slm_tok_find(t, "<|im_start|>", 12) == 1, "find <|im_start|>: expected 1");
        check_api(t);
        snprintf(path, sizeof path, "%s/golden/tok_smollm2.txt", data);
        check_file(t, path, 2000);
        slm_tok_destroy(&t);
        CHECK(t == NULL, "destroy: expected the pointer to be cleared");
    }
    /* the gpt-2 and default files hold every other corpus string */
    static const struct { const char *pre, *file; int min_lines; } pres[] = {
        { "llama-bpe", "tok_smollm2_llama3pre.txt", 2000 },
        { "qwen2", "tok_smollm2_qwen2pre.txt", 2000 },
        { "gpt-2", "tok_smollm2_gpt2pre.txt", 1000 },
        { "default", "tok_smollm2_defaultpre.txt", 1000 },
    };
    for (size_t k = 0; k < sizeof pres / sizeof pres[0]; k++) {
        t = variant(tmp, g, NULL, "tokenizer.ggml.pre", pres[k].pre, err);
        CHECK(t, "SmolLM2 with pre %s: %s", pres[k].pre, err);
        if (!t) continue;
        snprintf(path, sizeof path, "%s/golden/%s", data, pres[k].file);
        check_file(t, path, pres[k].min_lines);
        slm_tok_destroy(&t);
    }
    check_bad_gguf(tmp, g);
    slm_gguf_close(&g);

    if (access(gemma, R_OK) == 0) {
        g = slm_gguf_open(gemma, err);
        CHECK(g, "open %s: %s", gemma, err);
        t = g ? slm_tok_create(g, err) : NULL;
        CHECK(t, "create Gemma 3 tokenizer: %s", err);
        if (t) {
            check_api(t);
            check_detok_bytes(t);
            snprintf(path, sizeof path, "%s/golden/tok_gemma3.txt", data);
            check_file(t, path, 2000);
            slm_tok_destroy(&t);
        }
        slm_gguf_close(&g);
    } else {
        /* packaging/fetch-models.sh fetches both models: SmolLM2 without Gemma 3 is a partial
         * fetch, a setup error, so this fails rather than pass without the Gemma checks (no
         * model at all is a machine without models: exit 77 above, as test_model). */
        CHECK(0, "Gemma 3 model: expected %s (packaging/fetch-models.sh fetches it), got none", gemma);
    }
    unlink(tmp);
    if (failures) {
        printf("test_tokenizer: %d failures\n", failures);
        return 1;
    }
    printf("test_tokenizer: ok\n");
    return 0;
}
