/* client/cli/json.c - see json.h. */
#include "client/cli/json.h"

#include <math.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (at most n bytes; s[0] >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;   /* the second byte's range (overlongs, surrogates) */
    if (s[0] >= 0xc2 && s[0] <= 0xdf) len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        if (s[0] == 0xe0) lo = 0xa0;
        if (s[0] == 0xed) hi = 0x9f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        if (s[0] == 0xf0) lo = 0x90;
        if (s[0] == 0xf4) hi = 0x8f;
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

void slm_json_string(FILE *f, const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        if (ch >= 0x80) {
            size_t len = utf8_len(s + i, n - i);
            if (len) fwrite(s + i, 1, len, f);
            else fputs("\\ufffd", f);
            i += len ? len : 1;
            continue;
        }
        i++;
        switch (ch) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (ch < 0x20) fprintf(f, "\\u%04x", ch);
            else fputc(ch, f);
        }
    }
    fputc('"', f);
}

void slm_json_number(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

void slm_fields_print(FILE *f, const struct slm_field *fields, int n, int json)
{
    if (json) fputc('{', f);
    for (int i = 0; i < n; i++) {
        const struct slm_field *x = &fields[i];
        if (json) {
            fprintf(f, "%s\"%s\":", i ? "," : "", x->name);
            if (x->kind == SLM_FIELD_STR) slm_json_string(f, x->str, strlen(x->str));
            else if (x->kind == SLM_FIELD_INT) fprintf(f, "%llu", (unsigned long long)x->u);
            else slm_json_number(f, x->real);
            continue;
        }
        fprintf(f, "%s: ", x->name);
        if (x->kind == SLM_FIELD_STR) fputs(x->str, f);
        else if (x->kind == SLM_FIELD_INT) fprintf(f, "%llu", (unsigned long long)x->u);
        else fprintf(f, "%.1f", x->real);
        fputc('\n', f);
    }
    if (json) fputs("}\n", f);
}
