/*
 * tests/test_config.c - slmd serve's configuration: defaults, the file, flags over the file,
 * where each value came from, and every kind of bad input named with its file and line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "daemon/config.h"
#include "common/log.h"

static char dir[] = "/tmp/slm_test_config_XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* Runs slm_config_from_args on the given flags; returns its result, err filled. */
static int from_args(struct slm_config *c, char *err, int n, ...)
{
    char *argv[16] = {"serve"};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && i < 15; i++) argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    return slm_config_from_args(c, n + 1, argv, err);
}

static void expect_error(const char *what, int rc, const char *err, const char *want)
{
    CHECK(rc < 0 && strstr(err, want), "%s: expected an error containing '%s', got rc %d, '%s'", what, want, rc, err);
}

int main(void)
{
    static struct slm_config c;
    char err[SLM_ERR_LEN];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");

    slm_config_defaults(&c);
    CHECK(c.max_batch_tokens == 512 && c.max_seqs == 64 && c.block_size == 16 && c.socket_mode == 0660 &&
              !strcmp(c.backend, "auto") && c.shutdown_timeout == 30,
          "defaults: batch %d seqs %d block %d mode %o backend %s", c.max_batch_tokens, c.max_seqs, c.block_size,
          c.socket_mode, c.backend);
    CHECK(!strcmp(c.source[0], "default"), "default source: %s", c.source[0]);

    /* A file, then flags over it. */
    const char *good = write_file("good.conf", "# slmd\n\n  max-seqs = 32\nsocket = \"/tmp/x.sock\"\n"
                                               "kv-cache-mem=2G\nallow-uids = root, 1000\nsocket-mode = 0600\n"
                                               "backend = cpu\n");
    char cfg[300];
    snprintf(cfg, sizeof cfg, "--config=%s", good);
    int rc = from_args(&c, err, 3, cfg, "--max-seqs", "8");
    CHECK(rc == 0, "good file: %s", err);
    CHECK(c.max_seqs == 8, "flag over file: max-seqs %d, expected 8", c.max_seqs);
    CHECK(!strcmp(c.socket, "/tmp/x.sock"), "quoted value: '%s'", c.socket);
    CHECK(c.kv_cache_mem == 2ull << 30, "size 2G: %llu", (unsigned long long)c.kv_cache_mem);
    CHECK(c.n_allow_uids == 2 && c.allow_uids[0] == 0 && c.allow_uids[1] == 1000, "uids: %d entries, first %u",
          c.n_allow_uids, c.n_allow_uids ? (unsigned)c.allow_uids[0] : 0u);
    CHECK(c.socket_mode == 0600 && !strcmp(c.backend, "cpu"), "mode %o backend %s", c.socket_mode, c.backend);
    char *out = NULL;
    size_t outlen = 0;
    FILE *mf = open_memstream(&out, &outlen);
    slm_config_print(&c, mf);
    fclose(mf);
    CHECK(strstr(out, "max-seqs = 8    # --max-seqs"), "print: max-seqs from the flag:\n%s", out);
    CHECK(strstr(out, "kv-cache-mem = 2147483648    # ") && strstr(out, "good.conf:5"), "print: size from FILE:5:\n%s",
          out);
    CHECK(strstr(out, "block-size = 16    # default"), "print: default:\n%s", out);
    /* What print wrote reads back to the same configuration. */
    const char *again = write_file("again.conf", out);
    static struct slm_config c2;
    snprintf(cfg, sizeof cfg, "--config=%s", again);
    CHECK(from_args(&c2, err, 1, cfg) == 0, "printed configuration does not load: %s", err);
    CHECK(c2.max_seqs == 8 && c2.kv_cache_mem == c.kv_cache_mem && c2.n_allow_uids == 2 && c2.socket_mode == 0600,
          "printed configuration reads back differently");
    free(out);
    /* Fractions read back exactly (fuzz_config: %g printed the least normal double as a
     * subnormal, which the loader refuses, and cut digits). */
    static const char *const fractions[] = {"2.2250738585072014e-308", "0.123456789", "0.9", "1"};
    for (size_t i = 0; i < sizeof fractions / sizeof fractions[0]; i++) {
        static struct slm_config c3, c4;
        CHECK(from_args(&c3, err, 2, "--gpu-memory-fraction", fractions[i]) == 0, "fraction %s: %s", fractions[i],
              err);
        out = NULL;
        mf = open_memstream(&out, &outlen);
        slm_config_print(&c3, mf);
        fclose(mf);
        snprintf(cfg, sizeof cfg, "--config=%s", write_file("fraction.conf", out));
        CHECK(from_args(&c4, err, 1, cfg) == 0, "fraction %s printed does not load: %s", fractions[i], err);
        CHECK(c4.gpu_memory_fraction == c3.gpu_memory_fraction, "fraction %s: printed, read back as %.17g",
              fractions[i], c4.gpu_memory_fraction);
        free(out);
    }
    /* A quoted value ending in a carriage return reads back whole (fuzz_config: it was printed
     * bare, and the loader's trim took the CR off). */
    {
        static struct slm_config c3, c4;
        snprintf(cfg, sizeof cfg, "--config=%s", write_file("cr.conf", "socket-group = \"wheel\r\"\n"));
        CHECK(from_args(&c3, err, 1, cfg) == 0 && !strcmp(c3.socket_group, "wheel\r"), "quoted CR: %s", err);
        out = NULL;
        mf = open_memstream(&out, &outlen);
        slm_config_print(&c3, mf);
        fclose(mf);
        snprintf(cfg, sizeof cfg, "--config=%s", write_file("cr-again.conf", out));
        CHECK(from_args(&c4, err, 1, cfg) == 0 && !strcmp(c4.socket_group, c3.socket_group),
              "quoted CR printed, read back as '%s' (%s)", c4.socket_group, err);
        free(out);
    }
    CHECK(from_args(&c, err, 0) == 0, "defaults: %s", err);
    out = NULL;
    mf = open_memstream(&out, &outlen);
    slm_config_print(&c, mf);
    fclose(mf);
    CHECK(strstr(out, "gpu-memory-fraction = 0.9    # default"), "print: the default fraction as 0.9:\n%s", out);
    free(out);

    /* Bad input: each names the problem, the file and the line. */
    struct {
        const char *text, *want;
    } bad[] = {
        {"max-seqs = 8\nfrobnicate = 1\n", "bad1.conf:2: unknown key 'frobnicate'"},
        {"max-seqs = lots\n", "bad2.conf:1: max-seqs: 'lots' is not a whole number"},
        {"max-seqs = 0\n", "bad3.conf:1: max-seqs: 0 is out of range (1 to 4096)"},
        {"just some words\n", "bad4.conf:1: expected 'key = value'"},
        {"socket-mode = 0999\n", "bad5.conf:1: socket-mode: '0999' is not an octal"},
        {"backend = tpu\n", "bad6.conf:1: backend: 'tpu' is not one of auto|cpu|cuda"},
        {"allow-uids = no_such_user_slm\n", "bad7.conf:1: allow-uids: 'no_such_user_slm' is not a known user"},
        {"kv-cache-mem = 12Q\n", "bad8.conf:1: kv-cache-mem: '12Q' is not a size"},
        {"log-level = loud\n", "bad9.conf:1: log-level: 'loud' is not one of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.conf", i + 1);
        const char *p = write_file(name, bad[i].text);
        snprintf(cfg, sizeof cfg, "--config=%s", p);
        expect_error(name, from_args(&c, err, 1, cfg), err, bad[i].want);
    }
    char longline[6000];
    memset(longline, 'x', sizeof longline - 2);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = 0;
    snprintf(cfg, sizeof cfg, "--config=%s", write_file("long.conf", longline));
    expect_error("long line", from_args(&c, err, 1, cfg), err, "long.conf:1: line longer than");
    snprintf(cfg, sizeof cfg, "--config=%s/absent.conf", dir);
    expect_error("missing --config file", from_args(&c, err, 1, cfg), err, "absent.conf: cannot open");
    expect_error("unknown flag", from_args(&c, err, 1, "--frobnicate"), err, "unknown option '--frobnicate'");
    expect_error("flag without value", from_args(&c, err, 1, "--max-seqs"), err, "--max-seqs needs a value");
    expect_error("bad flag value", from_args(&c, err, 2, "--threads", "-1"), err, "--threads: -1 is out of range");
    expect_error("stray argument", from_args(&c, err, 1, "model.gguf"), err, "unexpected argument 'model.gguf'");
    expect_error("seqs over batch", from_args(&c, err, 2, "--max-seqs", "600"), err,
                 "max-seqs (600) cannot exceed max-batch-tokens (512)");

    /* The cuda backend's defaults: where max-batch-tokens and max-seqs are still at their default,
     * an explicit `backend = cuda` (or the backend auto resolved to) gives 4096 and 256. */
    CHECK(from_args(&c, err, 2, "--backend", "cuda") == 0, "--backend cuda: %s", err);
    CHECK(c.max_batch_tokens == 4096 && c.max_seqs == 256, "--backend cuda: %d tokens, %d seqs",
          c.max_batch_tokens, c.max_seqs);
    CHECK(from_args(&c, err, 4, "--backend", "cuda", "--max-seqs", "100") == 0 && c.max_seqs == 100 &&
              c.max_batch_tokens == 4096,
          "--backend cuda --max-seqs 100: %d tokens, %d seqs (%s)", c.max_batch_tokens, c.max_seqs, err);
    snprintf(cfg, sizeof cfg, "--config=%s", write_file("gpu.conf", "backend = cuda\nmax-batch-tokens = 2048\n"));
    CHECK(from_args(&c, err, 1, cfg) == 0 && c.max_batch_tokens == 2048 && c.max_seqs == 256,
          "cuda file with max-batch-tokens 2048: %d tokens, %d seqs (%s)", c.max_batch_tokens, c.max_seqs, err);
    expect_error("cuda default seqs over an explicit batch", from_args(&c, err, 4, "--backend", "cuda",
                                                                       "--max-batch-tokens", "100"),
                 err, "max-seqs (256) cannot exceed max-batch-tokens (100) (max-seqs is the cuda backend's default");
    /* overlap-steps: true by default on cuda, false on the cpu; an explicit value is kept either way */
    CHECK(from_args(&c, err, 2, "--backend", "cuda") == 0 && c.overlap_steps == 1, "--backend cuda: overlap-steps %d",
          c.overlap_steps);
    CHECK(from_args(&c, err, 3, "--backend", "cuda", "--overlap-steps=false") == 0 && c.overlap_steps == 0,
          "--backend cuda --overlap-steps=false: overlap-steps %d (%s)", c.overlap_steps, err);
    CHECK(from_args(&c, err, 3, "--backend", "cpu", "--overlap-steps") == 0 && c.overlap_steps == 1,
          "--backend cpu --overlap-steps: overlap-steps %d (%s)", c.overlap_steps, err);
    expect_error("overlap-steps not a boolean", from_args(&c, err, 1, "--overlap-steps=sometimes"), err,
                 "overlap-steps");
    /* pass-spin-us: 1000 by default on cuda, 0 on the cpu; an explicit value is kept; 0..1000000 */
    CHECK(from_args(&c, err, 2, "--backend", "cuda") == 0 && c.pass_spin_us == 1000,
          "--backend cuda: pass-spin-us %d", c.pass_spin_us);
    CHECK(from_args(&c, err, 3, "--backend", "cuda", "--pass-spin-us=0") == 0 && c.pass_spin_us == 0,
          "--backend cuda --pass-spin-us=0: pass-spin-us %d (%s)", c.pass_spin_us, err);
    CHECK(from_args(&c, err, 4, "--backend", "cpu", "--pass-spin-us", "250") == 0 && c.pass_spin_us == 250,
          "--backend cpu --pass-spin-us 250: pass-spin-us %d (%s)", c.pass_spin_us, err);
    CHECK(from_args(&c, err, 2, "--backend", "cpu") == 0 && c.pass_spin_us == 0, "--backend cpu: pass-spin-us %d",
          c.pass_spin_us);
    expect_error("pass-spin-us negative", from_args(&c, err, 2, "--pass-spin-us", "-1"), err, "pass-spin-us");
    expect_error("pass-spin-us above a second", from_args(&c, err, 2, "--pass-spin-us", "1000001"), err,
                 "pass-spin-us");
    expect_error("pass-spin-us not a number", from_args(&c, err, 2, "--pass-spin-us", "soon"), err, "pass-spin-us");
    CHECK(from_args(&c, err, 2, "--backend", "cpu") == 0 && c.max_batch_tokens == 512 && c.max_seqs == 64 &&
              c.overlap_steps == 0,
          "--backend cpu: %d tokens, %d seqs, overlap-steps %d", c.max_batch_tokens, c.max_seqs, c.overlap_steps);
    CHECK(from_args(&c, err, 0) == 0 && c.max_batch_tokens == 512 && c.max_seqs == 64, "auto: %d tokens, %d seqs",
          c.max_batch_tokens, c.max_seqs);
    {
        char *text = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&text, &len);
        slm_config_print(&c, mem);
        fclose(mem);
        CHECK(strstr(text, "max-batch-tokens = 512    # default (the cpu backend's; 4096 on the cuda backend)") &&
                  strstr(text, "max-seqs = 64    # default (the cpu backend's; 256 on the cuda backend)"),
              "auto: slmd config does not say the cuda defaults:\n%s", text);
        free(text);
    }
    /* What serve does once auto resolved: cuda's defaults, once; cpu leaves them. */
    CHECK(slm_config_backend_defaults(&c, "cpu", err) == 0 && c.max_batch_tokens == 512 && c.max_seqs == 64,
          "auto resolved to cpu: %d tokens, %d seqs", c.max_batch_tokens, c.max_seqs);
    CHECK(slm_config_backend_defaults(&c, "cuda", err) == 0 && slm_config_backend_defaults(&c, "cuda", err) == 0 &&
              c.max_batch_tokens == 4096 && c.max_seqs == 256 && c.overlap_steps == 1,
          "auto resolved to cuda: %d tokens, %d seqs, overlap-steps %d", c.max_batch_tokens, c.max_seqs,
          c.overlap_steps);
    CHECK(from_args(&c, err, 2, "--max-seqs", "8") == 0 && slm_config_backend_defaults(&c, "cuda", err) == 0 &&
              c.max_batch_tokens == 4096 && c.max_seqs == 8,
          "auto resolved to cuda, --max-seqs 8: %d tokens, %d seqs", c.max_batch_tokens, c.max_seqs);

    /* The socket's default place. */
    slm_config_defaults(&c);
    char path[256];
    setenv("RUNTIME_DIRECTORY", "/run/slmd:/run/other", 1);
    slm_config_socket_path(&c, path, sizeof path);
    CHECK(!strcmp(path, "/run/slmd/slmd.sock"), "RUNTIME_DIRECTORY socket: %s", path);
    setenv("RUNTIME_DIRECTORY", "/tmp/rt", 1);
    slm_config_socket_path(&c, path, sizeof path);
    CHECK(!strcmp(path, "/tmp/rt/slmd.sock"), "RUNTIME_DIRECTORY socket: %s", path);
    unsetenv("RUNTIME_DIRECTORY");
    slm_config_socket_path(&c, path, sizeof path);
    CHECK(!strcmp(path, "/run/slmd/slmd.sock"), "default socket: %s", path);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    if (failures) printf("test_config: %d failures\n", failures);
    else printf("test_config: ok\n");
    return failures ? 1 : 0;
}
