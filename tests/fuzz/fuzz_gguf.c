/*
 * tests/fuzz/fuzz_gguf.c - the GGUF reader (daemon/engine/gguf.c) on hostile bytes.
 *
 * The input is a whole file, opened in place (slm_gguf_open_memory: libFuzzer's buffer is exactly
 * the input's size, so ASan sees a read one byte past the end). A file that opens is walked as
 * the engine walks one: every key through the typed getter of its type, every array element,
 * every tensor found by name with its first and last data byte read, then the tokenizer built
 * from its tokenizer.* keys (slm_tok_create) and its chat template detected.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "daemon/engine/chat.h"
#include "daemon/engine/gguf.h"
#include "daemon/engine/tokenizer.h"
#include "tests/fuzz/fuzz.h"

/* The key as a C string (NULL when it holds a NUL byte: no C caller can name it). */
static const char *key_cstr(struct slm_gguf_str s, char *buf, size_t cap)
{
    if (s.len >= cap || memchr(s.ptr, 0, s.len)) return NULL;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return buf;
}

static volatile uint64_t sink;   /* keeps the reads of tensor data */

static void walk_kv(const struct slm_gguf *g, const struct slm_gguf_kv *kv)
{
    char key[65536];
    const char *k = key_cstr(kv->key, key, sizeof key);
    if (!k) return;
    char err[SLM_ERR_LEN];
    FUZZ_CHECK(slm_gguf_find(g, k) == kv, "key '%s' is not found as itself", k);
    uint64_t u;
    int64_t i;
    float f;
    int b;
    struct slm_gguf_str s;
    /* Every getter on every key: each either converts or says why not. */
    if (slm_gguf_get_u64(g, k, &u, err) == 0) sink += u;
    if (slm_gguf_get_i64(g, k, &i, err) == 0) sink += (uint64_t)i;
    if (slm_gguf_get_f32(g, k, &f, err) == 0) sink += (uint64_t)(f == f);
    if (slm_gguf_get_bool(g, k, &b, err) == 0) sink += (uint64_t)b;
    uint32_t u32;
    if (slm_gguf_get_u32(g, k, &u32, err) == 0) sink += u32;
    if (slm_gguf_get_str(g, k, &s, err) == 0) {
        FUZZ_CHECK(kv->type == SLM_GGUF_STRING, "key '%s' of type %u read as a string", k, kv->type);
        if (s.len) sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    }
    if (kv->type != SLM_GGUF_ARRAY) return;
    const struct slm_gguf_kv *arr;
    FUZZ_CHECK(slm_gguf_get_arr(g, k, kv->arr_type, &arr, err) == 0 && arr == kv, "array '%s' not found", k);
    if (kv->arr_type == SLM_GGUF_STRING) {
        struct slm_gguf_str *strs = malloc((kv->arr_len ? kv->arr_len : 1) * sizeof *strs);
        if (!strs) return;
        FUZZ_CHECK(slm_gguf_get_str_arr(g, kv, strs, kv->arr_len) == 0, "string array '%s'", k);
        for (uint64_t j = 0; j < kv->arr_len; j++)
            if (strs[j].len) sink += (uint8_t)strs[j].ptr[0] + (uint8_t)strs[j].ptr[strs[j].len - 1];
        free(strs);
        return;
    }
    for (uint64_t j = 0; j < kv->arr_len && j < 4096; j++) {
        double d = slm_gguf_arr_f64(kv, j);
        sink += (uint64_t)(d == d) + (uint64_t)slm_gguf_arr_i64(kv, j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[SLM_ERR_LEN] = "";
    struct slm_gguf *g = slm_gguf_open_memory(data, size, "fuzz.gguf", err);
    if (!g) {
        FUZZ_CHECK(err[0] != 0, "a refused file without a reason");
        return 0;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) walk_kv(g, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct slm_gguf_tensor *t = &g->tensors[i];
        char name[256];
        const char *n = key_cstr(t->name, name, sizeof name);
        if (n) FUZZ_CHECK(slm_gguf_find_tensor(g, n) == t, "tensor '%s' is not found as itself", n);
        const uint8_t *p = t->data;
        FUZZ_CHECK(p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes,
                   "tensor %llu's data is outside the file", (unsigned long long)i);
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
    }
    struct slm_tokenizer *tok = slm_tok_create(g, err);
    if (tok) {
        /* A vocabulary that builds must encode and decode. */
        static const char text[] = "Hello world! <|im_start|>user\n12345 \xc3\xa9\xe2\x82\xac \xff";
        int32_t ids[256];
        int n = slm_tok_encode(tok, text, sizeof text - 1, 1, 1, ids, 256);
        FUZZ_CHECK(n >= 0 || n == -ENOMEM, "encode: %d", n);
        struct slm_detok d = {0};
        char out[64];
        for (int j = 0; j < n && j < 256; j++) {
            FUZZ_CHECK(ids[j] >= 0 && ids[j] < slm_tok_n_vocab(tok), "id %d of %d", ids[j], slm_tok_n_vocab(tok));
            FUZZ_CHECK(slm_detok_push(tok, &d, ids[j], 1, out, sizeof out) >= 0, "detok of id %d", ids[j]);
        }
        slm_detok_flush(&d, out, sizeof out);
        for (int32_t id = 0; id < slm_tok_n_vocab(tok) && id < 512; id++) sink += (uint64_t)slm_tok_is_eog(tok, id);
        slm_tok_destroy(&tok);
    }
    struct slm_gguf_str tmpl;
    if (slm_gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL) == 0) {
        char sys[256];
        sink += (uint64_t)slm_chat_detect(tmpl.ptr, (size_t)tmpl.len);
        sink += (uint64_t)slm_chat_default_system(tmpl.ptr, (size_t)tmpl.len, sys, sizeof sys);
    }
    slm_gguf_close(&g);
    return 0;
}
