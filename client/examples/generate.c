/*
 * client/examples/generate.c - the smallest useful libslm program: connect to slmd, submit one
 * prompt, stream the answer to stdout, print the usage, handle every error.
 *
 * Build it against an installed libslm:
 *     cc generate.c $(pkg-config --cflags --libs slm) -o generate
 * Run it:
 *     ./generate "The capital of France is"            # $SLM_SOCKET, else /run/slmd/slmd.sock
 *     ./generate "Once upon a time" /tmp/slmd.sock      # a socket of your own
 * Exit status: 0 done, 1 usage, 3 no connection, 4 the request failed.
 */
#include <slm.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PROMPT [SOCKET]\n", argv[0]);
        return 1;
    }

    /* 1. Connect. NULL picks $SLM_SOCKET or the default socket; the name shows in slmd's log.
     * On failure slm_last_error() says why in one line (the daemon's own reason for a refusal). */
    struct slm_client *c;
    int rc = slm_connect(argc > 2 ? argv[2] : NULL, "example", &c);
    if (rc < 0) {
        fprintf(stderr, "cannot connect to slmd: %s\n", slm_last_error());
        return 3;
    }

    /* 2. Submit. Start from llama.cpp's defaults and change what matters; the call returns at
     * once with a handle (> 0) that tags this request's events. */
    struct slm_params p;
    slm_params_default(&p);
    p.max_tokens = 64;
    p.temperature = 0;   /* greedy: the same prompt gives the same text */
    int64_t h = slm_submit_text(c, argv[1], &p);
    if (h < 0) {
        fprintf(stderr, "cannot submit: %s\n", slm_strerror((int)h));
        slm_close(&c);
        return 4;
    }

    /* 3. Stream. Events come as the daemon makes them: TOKEN events carry the text each token
     * adds, then one DONE (with the usage) or one ERROR ends the request. A client with several
     * requests in flight tells their events apart by ev.handle. */
    struct slm_event ev;
    int status = 4;
    while ((rc = slm_next_event(c, &ev, -1)) == 1) {
        if (ev.handle != h) continue;
        if (ev.type == SLM_EVENT_TOKEN) {
            fwrite(ev.text, 1, ev.text_len, stdout);
            fflush(stdout);
        } else if (ev.type == SLM_EVENT_DONE) {
            const char *why = ev.finish == SLM_FINISH_STOP ? "stop" : ev.finish == SLM_FINISH_LENGTH ? "length"
                                                                                                : "cancelled";
            printf("\n[%d prompt tokens (%d from the cache), %d generated, finish: %s]\n", ev.n_prompt,
                   ev.n_cached, ev.n_generated, why);
            status = 0;
            break;
        } else {   /* SLM_EVENT_ERROR: the daemon refused or failed the request */
            fprintf(stderr, "request failed: %s (%s)\n", ev.message, slm_strerror(ev.error));
            break;
        }
    }
    if (rc < 0) fprintf(stderr, "lost slmd: %s\n", slm_strerror(rc));   /* e.g. the daemon went away */

    /* 4. Close: frees everything; requests still running are cancelled by the daemon. */
    slm_close(&c);
    return status;
}
