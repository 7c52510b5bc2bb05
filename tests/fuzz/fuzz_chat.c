/*
 * tests/fuzz/fuzz_chat.c - chat templates (daemon/engine/chat.c): detection of a template's
 * text, its default system message, and the rendering of hostile messages, directly and through
 * slm_service_chat_render as the daemon renders a CHAT request.
 *
 * Input: one byte of flags, then NUL-separated pieces: the template text, then role, content,
 * role, content, ... A role of one byte is "system", "user", "assistant" or "tool" (refused)
 * by its value; a longer one is taken as it is.
 *   flags bit 0..2  the format: 0 = the one detected from the template, 1..5 = that format,
 *                   6..7 = an unknown format (refused);
 *   flags bit 3     add_generation_prompt;
 *   flags bit 4..7  the size of a short output buffer (1..15; 0 = none tried).
 * Checked: the count-only call agrees with the real one; the text holds no NUL before its end;
 * a short buffer gets the start of the same text, NUL-terminated; errors are the documented ones.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "daemon/engine/chat.h"
#include "daemon/service.h"
#include "tests/fuzz/fuzz.h"

#define MAX_MSGS 64

/* Renders msgs[n] in fmt and checks what the contract says of every outcome. */
static void render(int fmt, const struct slm_chat_msg *msgs, int n, int gen, size_t short_cap)
{
    int len = slm_chat_apply(fmt, msgs, n, gen, NULL, 0);
    if (len < 0) {
        FUZZ_CHECK(len == -EINVAL || len == -EOVERFLOW, "apply: %d", len);
        return;
    }
    FUZZ_CHECK(fmt >= SLM_CHAT_CHATML && fmt <= SLM_CHAT_MISTRAL, "format %d rendered", fmt);
    char *text = malloc((size_t)len + 1);   /* exactly: ASan sees a write past it */
    FUZZ_CHECK(slm_chat_apply(fmt, msgs, n, gen, text, (size_t)len + 1) == len, "the count and the text disagree");
    FUZZ_CHECK(strlen(text) == (size_t)len, "%d bytes said, %zu before the NUL", len, strlen(text));
    if (short_cap && short_cap <= (size_t)len) {
        char *cut = malloc(short_cap);
        FUZZ_CHECK(slm_chat_apply(fmt, msgs, n, gen, cut, short_cap) == len, "a short buffer changed the count");
        FUZZ_CHECK(cut[short_cap - 1] == 0 && memcmp(cut, text, short_cap - 1) == 0, "a short buffer: not the start");
        free(cut);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    int flags = data[0], gen = (flags >> 3) & 1;
    size_t short_cap = (size_t)(flags >> 4);
    /* a NUL-terminated copy, so that every piece is a C string */
    char *copy = malloc(size);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = 0;
    const char *pieces[1 + 2 * MAX_MSGS];
    size_t lens[1 + 2 * MAX_MSGS];
    int n_pieces = 0;
    for (size_t at = 0; at < size && n_pieces < 1 + 2 * MAX_MSGS;) {
        pieces[n_pieces] = copy + at;
        lens[n_pieces] = strlen(copy + at);
        at += lens[n_pieces++] + 1;
    }
    const char *tmpl = pieces[0];
    size_t tmpl_len = lens[0];
    struct slm_chat_msg msgs[MAX_MSGS];
    int n = 0;
    for (int i = 1; i + 1 < n_pieces; i += 2, n++) {
        msgs[n].role = lens[i] == 1 ? roles[(unsigned char)pieces[i][0] % 4] : pieces[i];
        msgs[n].content = pieces[i + 1];
    }

    int detected = slm_chat_detect(tmpl, tmpl_len);
    FUZZ_CHECK(detected == -ENOENT || (detected >= SLM_CHAT_CHATML && detected <= SLM_CHAT_MISTRAL),
               "detect: %d", detected);
    char sys[1024];
    int sys_len = slm_chat_default_system(tmpl, tmpl_len, sys, sizeof sys);
    FUZZ_CHECK(sys_len >= 0 || sys_len == -EOVERFLOW, "default system: %d", sys_len);
    if (sys_len >= 0 && (size_t)sys_len < sizeof sys)
        FUZZ_CHECK(strlen(sys) == (size_t)sys_len, "default system: %d said, %zu there", sys_len, strlen(sys));
    if (sys_len > 0 && short_cap) {
        char *cut = malloc(short_cap);
        FUZZ_CHECK(slm_chat_default_system(tmpl, tmpl_len, cut, short_cap) == sys_len, "default system, cut");
        FUZZ_CHECK(memchr(cut, 0, short_cap) != NULL, "default system, cut: no NUL");
        free(cut);
    }

    int sel = flags & 7;
    int fmt = sel == 0 ? detected : sel <= 5 ? sel : 100 + sel;
    render(fmt, msgs, n, gen, short_cap);

    /* The daemon's path: the template's default system message first, as serve renders a CHAT. */
    struct slm_service svc = {.chat_fmt = detected};
    if (detected == SLM_CHAT_CHATML && sys_len > 0 && (size_t)sys_len < sizeof svc.chat_system)
        memcpy(svc.chat_system, sys, (size_t)sys_len + 1);
    char err[SLM_ERR_LEN] = "";
    char *text = slm_service_chat_render(&svc, msgs, n, gen, err);
    if (text) free(text);
    else FUZZ_CHECK(err[0] != 0, "service render: NULL without a reason");
    free(copy);
    return 0;
}
