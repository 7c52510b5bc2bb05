/*
 * tests/fuzz/fuzz_tokenizer.c - the tokenizer (daemon/engine/tokenizer.c, tok_encode.c) with the
 * default model's real vocabulary, loaded once.
 *
 * Input: one byte of flags, then the rest.
 *   flags bit 0..1  add_special, parse_special (encode);
 *   flags bit 2     the rest is token ids (int32, little-endian) to decode, not text to encode;
 *   flags bit 3     render_special (decode);
 *   flags bit 4..7  the output buffer of each decoded piece: 0 = large, else that many bytes
 *                   (a short buffer: the piece is cut, and the count still says its whole size).
 * Checked: the count-only encode agrees with the real one; every id is in the vocabulary; every
 * decoded piece is valid UTF-8 and fits the count returned; valid UTF-8 text whose every byte
 * has a token decodes back to itself (render_special on; llama.cpp's round trip, as
 * tests/test_tokenizer.c checks it; but for U+2581 in a SentencePiece vocabulary's text).
 * SLM_FUZZ_MODEL=FILE fuzzes another model's vocabulary (Gemma 3's: SentencePiece).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"
#include "daemon/engine/gguf.h"
#include "daemon/engine/tokenizer.h"
#include "tests/fuzz/fuzz.h"

static struct slm_tokenizer *tok;
static int n_vocab;
static int adds_bos;   /* add_special puts BOS first (and no EOS: SmolLM2, Gemma 3) */
/* byte b has a token of its own (GPT-2's byte character, or SentencePiece's byte token, e.g.
 * <0x41>). A byte without one is dropped by the encoder, as llama.cpp drops it (SmolLM2 has none for some
 * control bytes): text made of bytes that all have one must come back whole. */
static int byte_has_token[256];

/* GPT-2's byte-level map: printable Latin-1 bytes stand for themselves, the others for U+0100.. */
static void byte_tokens(void)
{
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        unsigned cp = self ? (unsigned)b : (unsigned)next++;
        char u[8];
        size_t n = 0;
        if (cp < 0x80) u[n++] = (char)cp;
        else {
            u[n++] = (char)(0xC0 | (cp >> 6));
            u[n++] = (char)(0x80 | (cp & 0x3F));
        }
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        byte_has_token[b] = slm_tok_find(tok, u, n) >= 0 || slm_tok_find(tok, hex, 6) >= 0;
    }
}

static int all_bytes_have_tokens(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!byte_has_token[p[i]]) return 0;
    return 1;
}

/* A SentencePiece vocabulary writes a space as U+2581 and decodes U+2581 as a space, so a
 * U+2581 already in the text comes back as a space (llama.cpp's escape and unescape, the same). */
static int spm_space;

static int holds_spm_space(const char *p, size_t n)
{
    return spm_space && memmem(p, n, "\xe2\x96\x81", 3) != NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *path = fuzz_model_path();
    char err[SLM_ERR_LEN];
    struct slm_gguf *g = slm_gguf_open(path, err);
    if (!g || !(tok = slm_tok_create(g, err))) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        exit(1);
    }
    slm_gguf_close(&g);
    n_vocab = slm_tok_n_vocab(tok);
    int32_t id;
    adds_bos = slm_tok_encode(tok, "", 0, 1, 0, &id, 1) == 1 && id == slm_tok_bos(tok);
    byte_tokens();
    spm_space = slm_tok_find(tok, "\xe2\x96\x81", 3) >= 0;
    return 0;
}

/* Decodes ids[0..n) into a fresh buffer (*len bytes), checking every piece; cap is the size of
 * the piece buffer (0: large). Out-of-range ids must be refused and change nothing. */
static char *decode(const int32_t *ids, int n, int render_special, size_t cap, size_t *len)
{
    size_t piece_cap = cap ? cap : 1024, total_cap = 64, at = 0;
    char *piece = malloc(piece_cap);   /* exactly piece_cap: ASan sees a write past it */
    char *all = malloc(total_cap);
    struct slm_detok d = {0};
    for (int i = 0; i <= n; i++) {
        int in_range = i == n || (ids[i] >= 0 && ids[i] < n_vocab);
        struct slm_detok before = d;
        int k = i < n ? slm_detok_push(tok, &d, ids[i], render_special, piece, piece_cap)
                      : slm_detok_flush(&d, piece, piece_cap);
        if (!in_range) {
            FUZZ_CHECK(k == -EINVAL, "detok of id %d (vocabulary %d): expected -EINVAL, got %d", ids[i], n_vocab, k);
            FUZZ_CHECK(memcmp(&before, &d, sizeof d) == 0, "a refused id changed the stream");
            continue;
        }
        FUZZ_CHECK(k >= 0, "detok of id %d: %d", i < n ? ids[i] : -1, k);
        size_t got = (size_t)k < piece_cap ? (size_t)k : piece_cap;
        if ((size_t)k <= piece_cap) FUZZ_CHECK(slm_utf8_valid((unsigned char *)piece, got), "a piece not UTF-8");
        if (at + got > total_cap) all = realloc(all, total_cap = 2 * (at + got));
        memcpy(all + at, piece, got);
        at += got;
    }
    FUZZ_CHECK(d.n_pending == 0, "flush left %d bytes pending", d.n_pending);
    free(piece);
    *len = at;
    return all;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int flags = data[0];
    int add_special = flags & 1, parse_special = (flags >> 1) & 1, render_special = (flags >> 3) & 1;
    size_t cap = (size_t)(flags >> 4);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    size_t out_len;
    if (flags & 4) {
        int n = (int)(len / 4);
        int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
        memcpy(ids, text, (size_t)n * 4);
        free(decode(ids, n, render_special, cap, &out_len));
        free(ids);
        return 0;
    }
    int n = slm_tok_encode(tok, text, len, add_special, parse_special, NULL, 0);
    FUZZ_CHECK(n >= 0, "encode of %zu bytes: %d", len, n);
    int32_t *ids = malloc((size_t)(n ? n : 1) * sizeof *ids);
    int m = slm_tok_encode(tok, text, len, add_special, parse_special, ids, n);
    FUZZ_CHECK(m == n, "encode: the count said %d ids, the encode gave %d", n, m);
    for (int i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < n_vocab, "id %d at %d", ids[i], i);
    /* A short buffer: the first ids, and the whole count. */
    if (n > 1) {
        int32_t few[1];
        FUZZ_CHECK(slm_tok_encode(tok, text, len, add_special, parse_special, few, 1) == n && few[0] == ids[0],
                   "encode into 1 slot");
    }
    int first = add_special && adds_bos && n > 0 ? 1 : 0;
    char *back = decode(ids + first, n - first, 1, cap, &out_len);
    if (cap == 0 && slm_utf8_valid((const unsigned char *)text, len) && all_bytes_have_tokens((const uint8_t *)text, len) &&
        !holds_spm_space(text, len))
        FUZZ_CHECK(out_len == len && memcmp(back, text, len) == 0, "round trip: %zu bytes in, %zu out", len, out_len);
    free(back);
    free(ids);
    return 0;
}
