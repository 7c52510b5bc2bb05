/*
 * daemon/engine/tokenizer.h - text <-> token ids, as llama.cpp does it for the same GGUF.
 *
 * Two tokenizer models, chosen by tokenizer.ggml.model:
 *   "gpt2"  byte-level BPE (merges by rank) after a regex pre-tokenizer named by
 *           tokenizer.ggml.pre ("default", "gpt2", "smollm", "llama-bpe", "qwen2" and aliases);
 *   "llama" SentencePiece-style BPE (merges by score) with byte-token fallback (<0x00> .. <0xFF>) (Gemma 3).
 * Special, control and user-defined tokens are split out of the text first. The rules (and
 * where they follow llama.cpp's quirks) are written down in docs/tokenizer.md.
 *
 * A tokenizer is immutable after slm_tok_create(): every function taking a const pointer may be
 * called from several threads at once.
 */
#ifndef SLM_ENGINE_TOKENIZER_H
#define SLM_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/engine/gguf.h"

struct slm_tokenizer;

/* Builds the tokenizer from the GGUF's tokenizer.* metadata (tokenizer.ggml.model, tokens,
 * token_type, merges, scores, bos/eos/eot/eom ids, add_bos_token/add_eos_token,
 * add_space_prefix, tokenizer.ggml.pre). The tokenizer copies what it needs: g may be closed
 * afterwards. Returns NULL with err (caller-owned, SLM_ERR_LEN) naming the file, the key and the
 * problem: a missing or mistyped key, an unknown model or pre-tokenizer, out of memory. */
struct slm_tokenizer *slm_tok_create(const struct slm_gguf *g, char *err);

/* Frees the tokenizer and sets *t to NULL. NULL-safe. */
void slm_tok_destroy(struct slm_tokenizer **t);

/* Encodes len bytes of text (any bytes: invalid UTF-8 is handled as llama.cpp does).
 * add_special: adds BOS/EOS as the GGUF says (add_bos_token/add_eos_token, llama.cpp's defaults).
 * parse_special: control tokens written in the text ("<|im_start|>") become their ids; user-defined
 * tokens are always split out, as in llama_tokenize(). Writes min(total, cap) ids to out (out may
 * be NULL when cap is 0) and returns the total number of ids, so a caller may ask for the count
 * first; -EINVAL on bad arguments, -ENOMEM. */
int slm_tok_encode(const struct slm_tokenizer *t, const char *text, size_t len, int add_special,
                   int parse_special, int32_t *out, int cap);

/* The raw vocabulary text of id (not NUL-terminated; GPT-2 byte-encoded for "gpt2" vocabularies,
 * U+2581 for spaces in "llama" ones), *len its length. NULL if id is out of range. */
const char *slm_tok_piece(const struct slm_tokenizer *t, int32_t id, size_t *len);

/* Incremental decoding state; start from { 0 } (zero-initialised) for each stream.
 * It never emits a split UTF-8 character: an incomplete sequence at the end of a token is held
 * back in pending until the next token completes it. */
struct slm_detok {
    unsigned char pending[8];
    int n_pending;
};

/* Appends the bytes of token id to the stream d. Writes to out only complete, valid UTF-8
 * characters: an incomplete trailing sequence stays in d->pending; bytes that can never form a
 * valid character become U+FFFD (one per maximal ill-formed subpart, as Python's
 * errors="replace"). render_special: 0 = control/unknown tokens produce no text (llama.cpp's
 * token_to_piece with special=false), 1 = their text. Returns the number of bytes produced (if it
 * is more than cap, out holds the first cap bytes), or -EINVAL for an id out of range. */
int slm_detok_push(const struct slm_tokenizer *t, struct slm_detok *d, int32_t id, int render_special,
                   char *out, size_t cap);

/* Ends the stream: a held-back incomplete sequence becomes one U+FFFD (3 bytes); d is reset.
 * Returns the number of bytes produced (0 or 3; out holds the first cap of them). */
int slm_detok_flush(struct slm_detok *d, char *out, size_t cap);

/* Number of tokens in the vocabulary. */
int slm_tok_n_vocab(const struct slm_tokenizer *t);

/* Beginning / end of sequence ids; -1 if none. */
int32_t slm_tok_bos(const struct slm_tokenizer *t);
int32_t slm_tok_eos(const struct slm_tokenizer *t);

/* 1 if id ends generation as llama.cpp decides it: EOS, EOT, EOM, the FIM pad/repo/sep tokens and
 * tokens whose text is one of llama.cpp's end markers (<|im_end|>, <end_of_turn>, <|eot_id|>,
 * <|endoftext|>, ...); else 0. */
int slm_tok_is_eog(const struct slm_tokenizer *t, int32_t id);

/* Exact vocabulary lookup of len bytes of text (raw vocabulary form); -1 if absent. */
int32_t slm_tok_find(const struct slm_tokenizer *t, const char *text, size_t len);

#endif
