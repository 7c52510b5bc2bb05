/*
 * daemon/engine/chat.h - chat templates without a Jinja engine.
 *
 * The template text a GGUF carries (tokenizer.chat_template) is recognised by the
 * substring rules of llama.cpp's llm_chat_detect_template, and messages are rendered
 * byte for byte as llama.cpp's built-in llm_chat_apply_template renders them.
 * Supported: ChatML, Llama 3, Gemma, Phi-3 and Mistral v3 (Mistral 7B Instruct v0.3).
 * docs/chat-templates.md has the rules.
 */
#ifndef SLM_ENGINE_CHAT_H
#define SLM_ENGINE_CHAT_H

#include <stddef.h>

enum slm_chat_format { SLM_CHAT_CHATML = 1, SLM_CHAT_LLAMA3, SLM_CHAT_GEMMA, SLM_CHAT_PHI3, SLM_CHAT_MISTRAL };

struct slm_chat_msg {
    const char *role;       /* "system", "user" or "assistant" */
    const char *content;    /* NUL-terminated UTF-8 */
};

/* The format of template text tmpl[len] (need not be NUL-terminated), or -ENOENT when
 * llama.cpp would pick a template slmd does not render (or none). A bare built-in name
 * ("chatml", "llama3", "gemma", "phi3", "mistral-v3") is accepted as llama.cpp does. */
int slm_chat_detect(const char *tmpl, size_t len);

/* "chatml", "llama3", "gemma", "phi3", "mistral"; "unknown" for anything else. */
const char *slm_chat_format_name(int fmt);

/* Renders msgs[n] in fmt, appending the assistant prefix when add_generation_prompt (the
 * Mistral format has none). Writes at most cap bytes including a NUL (buf may be NULL
 * when cap is 0). Returns the full length without the NUL (compare with cap to see if
 * it was cut), or -EINVAL for an unknown fmt, n < 0, a NULL field or a role other than
 * system/user/assistant; -EOVERFLOW when the text would exceed INT_MAX. */
int slm_chat_apply(int fmt, const struct slm_chat_msg *msgs, int n, int add_generation_prompt, char *buf,
                   size_t cap);

/* The system message the template text tmpl[len] adds when a conversation has none (a
 * ChatML template's literal "<|im_start|>system\n...<|im_end|>", e.g. SmolLM2's "You are a
 * helpful AI assistant named SmolLM, trained by Hugging Face"), as a Jinja evaluation of
 * the template renders it. Writes at most cap bytes including a NUL; returns its length
 * (0: the template has none), or -EOVERFLOW. docs/chat-templates.md. */
int slm_chat_default_system(const char *tmpl, size_t len, char *buf, size_t cap);

#endif
