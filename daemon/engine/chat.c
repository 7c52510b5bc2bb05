/*
 * daemon/engine/chat.c - recognise a chat template and render messages with it.
 *
 * Detection follows llama.cpp's rule order (llm_chat_detect_template): the first rule
 * that matches decides, so a template that llama.cpp would give to a format slmd does
 * not render (Phi-4, SmolVLM, Llama 2, Mistral v1/v7, Zephyr, ...) is -ENOENT here even
 * when it also holds one of our markers further down the list.
 */
#include "daemon/engine/chat.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

struct text {
    const char *p;
    size_t len;
};

static int contains(struct text t, const char *needle)
{
    size_t n = strlen(needle);
    if (n > t.len) return 0;
    for (const char *s = t.p, *end = t.p + t.len - n + 1; s < end;) {
        const char *hit = memchr(s, needle[0], (size_t)(end - s));
        if (!hit) return 0;
        if (memcmp(hit, needle, n) == 0) return 1;
        s = hit + 1;
    }
    return 0;
}

static int equals(struct text t, const char *s)
{
    return t.len == strlen(s) && memcmp(t.p, s, t.len) == 0;
}

int slm_chat_detect(const char *tmpl, size_t len)
{
    if (!tmpl) return -ENOENT;
    struct text t = {tmpl, len};

    /* a built-in template's name */
    if (equals(t, "chatml")) return SLM_CHAT_CHATML;
    if (equals(t, "llama3")) return SLM_CHAT_LLAMA3;
    if (equals(t, "gemma")) return SLM_CHAT_GEMMA;
    if (equals(t, "phi3")) return SLM_CHAT_PHI3;
    if (equals(t, "mistral-v3")) return SLM_CHAT_MISTRAL;

    if (contains(t, "<|im_start|>")) {
        if (contains(t, "<|im_sep|>") || contains(t, "<end_of_utterance>")) return -ENOENT;   /* Phi-4, SmolVLM */
        return SLM_CHAT_CHATML;
    }
    if ((len >= 7 && memcmp(tmpl, "mistral", 7) == 0) || contains(t, "[INST]")) {
        if (contains(t, "[SYSTEM_PROMPT]")) return -ENOENT;                                     /* Mistral v7 */
        if (contains(t, "' [INST] ' + system_message") || contains(t, "[AVAILABLE_TOOLS]")) {
            if (contains(t, " [INST]") || contains(t, "\"[INST]\"")) return -ENOENT;            /* v1, v3-tekken */
            return SLM_CHAT_MISTRAL;
        }
        return -ENOENT;                                                                          /* Llama 2 */
    }
    if (contains(t, "<|assistant|>") && contains(t, "<|end|>")) return SLM_CHAT_PHI3;
    /* ChatGLM 4, Falcon 3 / GLM-Edge, Zephyr, Monarch: decided before Gemma */
    if (contains(t, "[gMASK]<sop>") || (contains(t, "<|assistant|>") && contains(t, "<|user|>")) ||
        (contains(t, "<|{{ item['role'] }}|>") && contains(t, "<|begin_of_image|>")) ||
        (contains(t, "<|user|>") && contains(t, "<|endoftext|>")) || contains(t, "bos_token + message['role']"))
        return -ENOENT;
    if (contains(t, "<start_of_turn>")) return SLM_CHAT_GEMMA;
    /* Orion, OpenChat, Vicuna, DeepSeek, Command-R: decided before Llama 3 */
    if (contains(t, "'\\n\\nAssistant: ' + eos_token") || contains(t, "GPT4 Correct ") ||
        (contains(t, "USER: ") && contains(t, "ASSISTANT: ")) ||
        (contains(t, "### Instruction:") && contains(t, "<|EOT|>")) ||
        (contains(t, "<|START_OF_TURN_TOKEN|>") && contains(t, "<|USER_TOKEN|>")))
        return -ENOENT;
    if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) return SLM_CHAT_LLAMA3;
    return -ENOENT;
}

const char *slm_chat_format_name(int fmt)
{
    switch (fmt) {
    case SLM_CHAT_CHATML: return "chatml";
    case SLM_CHAT_LLAMA3: return "llama3";
    case SLM_CHAT_GEMMA: return "gemma";
    case SLM_CHAT_PHI3: return "phi3";
    case SLM_CHAT_MISTRAL: return "mistral";
    default: return "unknown";
    }
}

/* ---- rendering ---- */

/* Output that counts every byte but stores only what fits (cap - 1 bytes and a NUL). */
struct out {
    char *buf;
    size_t cap, len;
};

static void put_n(struct out *o, const char *s, size_t n)
{
    if (o->cap > 0 && o->len < o->cap - 1) {
        size_t room = o->cap - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put(struct out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

/* isspace() in the C locale, as llama.cpp's trim() sees it */
static int ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static struct text trimmed(const char *s)
{
    size_t a = 0, b = strlen(s);
    while (a < b && ascii_space(s[a])) a++;
    while (b > a && ascii_space(s[b - 1])) b--;
    return (struct text){s + a, b - a};
}

static void put_trimmed(struct out *o, const char *s)
{
    struct text t = trimmed(s);
    put_n(o, t.p, t.len);
}

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static int role_of(const char *r)
{
    if (!r) return -EINVAL;
    if (strcmp(r, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(r, "user") == 0) return ROLE_USER;
    if (strcmp(r, "assistant") == 0) return ROLE_ASSISTANT;
    return -EINVAL;
}

/* Gemma has no system turn: the system messages since the last user turn, trimmed and
 * concatenated, open the next user turn followed by a blank line. */
static void render_gemma(struct out *o, const struct slm_chat_msg *m, int n, int gen)
{
    int pending = 0;   /* first system message not yet placed */
    for (int i = 0; i < n; i++) {
        int r = role_of(m[i].role);
        if (r == ROLE_SYSTEM) continue;
        put(o, r == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (r == ROLE_USER) {
            size_t sys_len = 0;
            for (int j = pending; j < i; j++)
                if (role_of(m[j].role) == ROLE_SYSTEM) sys_len += trimmed(m[j].content).len;
            if (sys_len > 0) {
                for (int j = pending; j < i; j++)
                    if (role_of(m[j].role) == ROLE_SYSTEM) put_trimmed(o, m[j].content);
                put(o, "\n\n");
            }
            pending = i + 1;
        }
        put_trimmed(o, m[i].content);
        put(o, "<end_of_turn>\n");
    }
    if (gen) put(o, "<start_of_turn>model\n");
}

/* Mistral v3: "[INST] " opens a turn; system text and the user text share it; the
 * assistant's answer (trimmed, after a space) closes it with </s>. No generation prompt. */
static void render_mistral(struct out *o, const struct slm_chat_msg *m, int n)
{
    int in_turn = 0;
    for (int i = 0; i < n; i++) {
        if (!in_turn) {
            put(o, "[INST] ");
            in_turn = 1;
        }
        switch (role_of(m[i].role)) {
        case ROLE_SYSTEM:
            put(o, m[i].content);
            put(o, "\n\n");
            break;
        case ROLE_USER:
            put(o, m[i].content);
            put(o, "[/INST]");
            break;
        default:
            put(o, " ");
            put_trimmed(o, m[i].content);
            put(o, "</s>");
            in_turn = 0;
        }
    }
}

int slm_chat_apply(int fmt, const struct slm_chat_msg *msgs, int n, int add_generation_prompt, char *buf,
                   size_t cap)
{
    if (fmt < SLM_CHAT_CHATML || fmt > SLM_CHAT_MISTRAL || n < 0 || (n > 0 && !msgs) || (cap > 0 && !buf))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (role_of(msgs[i].role) < 0 || !msgs[i].content) return -EINVAL;

    struct out o = {buf, cap, 0};
    switch (fmt) {
    case SLM_CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            put(&o, "<|im_start|>");
            put(&o, msgs[i].role);
            put(&o, "\n");
            put(&o, msgs[i].content);
            put(&o, "<|im_end|>\n");
        }
        if (add_generation_prompt) put(&o, "<|im_start|>assistant\n");
        break;
    case SLM_CHAT_LLAMA3:
        for (int i = 0; i < n; i++) {
            put(&o, "<|start_header_id|>");
            put(&o, msgs[i].role);
            put(&o, "<|end_header_id|>\n\n");
            put_trimmed(&o, msgs[i].content);
            put(&o, "<|eot_id|>");
        }
        if (add_generation_prompt) put(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case SLM_CHAT_GEMMA:
        render_gemma(&o, msgs, n, add_generation_prompt);
        break;
    case SLM_CHAT_PHI3:
        for (int i = 0; i < n; i++) {
            put(&o, "<|");
            put(&o, msgs[i].role);
            put(&o, "|>\n");
            put(&o, msgs[i].content);
            put(&o, "<|end|>\n");
        }
        if (add_generation_prompt) put(&o, "<|assistant|>\n");
        break;
    case SLM_CHAT_MISTRAL:
        render_mistral(&o, msgs, n);
        break;
    }
    if (cap > 0) buf[o.len < cap - 1 ? o.len : cap - 1] = '\0';
    if (o.len > INT_MAX) return -EOVERFLOW;
    return (int)o.len;
}

/* ---- the template's default system message --------------------------------------------------- */

static const char *find_n(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (!memcmp(hay + i, needle, n)) return hay + i;
    return NULL;
}

int slm_chat_default_system(const char *tmpl, size_t len, char *buf, size_t cap)
{
    static const char open[] = "<|im_start|>system", close[] = "<|im_end|>";
    const char *end = tmpl + len;
    for (const char *p = find_n(tmpl, len, open); p; p = find_n(p + 1, (size_t)(end - p - 1), open)) {
        const char *s = p + strlen(open);
        if (s < end && *s == '\n') s++;                                     /* a real newline */
        else if (end - s >= 2 && s[0] == '\\' && s[1] == 'n') s += 2;       /* a Jinja "\n" */
        else continue;
        const char *e = find_n(s, (size_t)(end - s), close);
        if (!e || e == s) continue;
        /* Only a literal: the default is text written in the template, not an expression
         * (' + messages[0]['content'] + ') nor an escape this reader does not undo. */
        if (memchr(s, '\'', (size_t)(e - s)) || memchr(s, '"', (size_t)(e - s)) || memchr(s, '\\', (size_t)(e - s)) ||
            memchr(s, '{', (size_t)(e - s)))
            continue;
        size_t n = (size_t)(e - s);
        if (n > INT_MAX) return -EOVERFLOW;
        if (cap) {
            size_t c = n < cap - 1 ? n : cap - 1;
            memcpy(buf, s, c);
            buf[c] = 0;
        }
        return (int)n;
    }
    if (cap) buf[0] = 0;
    return 0;
}
