/* common/args.c - see args.h. */
#include "common/args.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

void slm_args_init(struct slm_args *a, int argc, char **argv, const struct slm_arg_opt *opts, int n_opts,
                   char **pos)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->opts = opts;
    a->n_opts = n_opts;
    a->next = 1;
    a->pos = pos;
}

/* Whether an unknown "-..." argument looks like text rather than a mistyped option: a
 * negative number, or words. Such an argument is named with the remedy ("--"). */
static int looks_like_text(const char *s)
{
    return isdigit((unsigned char)s[1]) || s[1] == '.' || strchr(s, ' ') != NULL;
}

static int unknown(const char *s, char *err)
{
    if (looks_like_text(s))
        slm_err_set(err, "unknown option '%s'; an argument that starts with '-' goes after '--' (e.g. -- '%s')", s,
                    s);
    else slm_err_set(err, "unknown option '%s'", s);
    return -EINVAL;
}

int slm_args_next(struct slm_args *a, char *err)
{
    while (a->next < a->argc) {
        char *s = a->argv[a->next++];
        if (a->options_done || s[0] != '-' || !s[1]) {
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (!strcmp(s, "--")) {
            a->options_done = 1;
            continue;
        }
        const struct slm_arg_opt *o = NULL;
        const char *inline_value = NULL;
        if (s[1] == '-') {
            const char *name = s + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            for (int i = 0; i < a->n_opts && !o; i++)
                if (strlen(a->opts[i].name) == len && !strncmp(a->opts[i].name, name, len)) o = &a->opts[i];
            if (!o) return unknown(s, err);
            if (eq) {
                if (!o->has_value) {
                    slm_err_set(err, "--%s takes no value", o->name);
                    return -EINVAL;
                }
                inline_value = eq + 1;
            }
        } else {
            for (int i = 0; i < a->n_opts && !o; i++)
                if (a->opts[i].short_name && a->opts[i].short_name == s[1]) o = &a->opts[i];
            if (!o || s[2]) return unknown(s, err);   /* no clusters (-abc) nor glued values (-n16) */
        }
        a->arg = s;
        a->value = NULL;
        if (o->has_value) {
            if (inline_value) a->value = inline_value;
            else if (a->next < a->argc) a->value = a->argv[a->next++];
            else {
                slm_err_set(err, "%s needs a value", s);
                return -EINVAL;
            }
        }
        return o->id;
    }
    return SLM_ARGS_END;
}
