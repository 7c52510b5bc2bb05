/*
 * tests/fuzz/fuzz_config.c - the configuration file parser (daemon/config.c).
 *
 * The input is a whole configuration file, loaded by slm_config_load from a memfd (through
 * /proc/self/fd, so the real fopen/fgets path runs). A file that loads is printed as `slmd config`
 * prints it, and the printed text must load again to the same values: what `slmd config` writes
 * is a configuration file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "daemon/config.h"
#include "tests/fuzz/fuzz.h"

static int file_fd = -1;
static char file_path[64];

/* Replaces the memfd's contents with data[0..size). */
static void put_file(const void *data, size_t size)
{
    FUZZ_CHECK(ftruncate(file_fd, 0) == 0, "ftruncate");
    FUZZ_CHECK(pwrite(file_fd, data, size, 0) == (ssize_t)size, "pwrite");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    file_fd = memfd_create("fuzz-slmd.conf", MFD_CLOEXEC);
    if (file_fd < 0) {
        perror("memfd_create");
        exit(1);
    }
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    unsetenv("RUNTIME_DIRECTORY");   /* the socket's printed default does not depend on it */
    return 0;
}

static int same_values(const struct slm_config *a, const struct slm_config *b)
{
    /* socket and model print resolved when empty (the default socket, the default model's path) */
    return (!a->model[0] || !strcmp(a->model, b->model)) && (!a->socket[0] || !strcmp(a->socket, b->socket)) &&
           a->socket_mode == b->socket_mode && !strcmp(a->socket_group, b->socket_group) &&
           a->n_allow_uids == b->n_allow_uids &&
           !memcmp(a->allow_uids, b->allow_uids, sizeof a->allow_uids[0] * (size_t)a->n_allow_uids) &&
           a->n_allow_gids == b->n_allow_gids &&
           !memcmp(a->allow_gids, b->allow_gids, sizeof a->allow_gids[0] * (size_t)a->n_allow_gids) &&
           a->threads == b->threads && a->ctx_size == b->ctx_size && a->force_ctx == b->force_ctx &&
           a->max_batch_tokens == b->max_batch_tokens && a->max_seqs == b->max_seqs &&
           a->kv_cache_mem == b->kv_cache_mem && a->block_size == b->block_size && !strcmp(a->backend, b->backend) &&
           a->gpu_memory_fraction == b->gpu_memory_fraction &&
           a->shutdown_timeout == b->shutdown_timeout && a->max_clients == b->max_clients &&
           a->max_clients_per_uid == b->max_clients_per_uid && a->handshake_timeout == b->handshake_timeout &&
           a->client_max_requests == b->client_max_requests &&
           a->client_max_prompt_tokens == b->client_max_prompt_tokens && a->max_priority == b->max_priority &&
           a->spin_us == b->spin_us && !strcmp(a->log_level, b->log_level);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct slm_config c, again;
    char err[SLM_ERR_LEN] = "";
    put_file(data, size);
    slm_config_defaults(&c);
    int rc = slm_config_load(&c, file_path, 1, err);
    if (rc) {
        FUZZ_CHECK(rc == -EINVAL || rc == -EIO, "load: %d", rc);
        FUZZ_CHECK(!strncmp(err, file_path, strlen(file_path)), "an error that does not name the file: '%s'", err);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FUZZ_CHECK(f != NULL, "open_memstream");
    slm_config_print(&c, f);
    fclose(f);
    put_file(text, len);
    slm_config_defaults(&again);
    rc = slm_config_load(&again, file_path, 1, err);
    FUZZ_CHECK(rc == 0, "the printed configuration does not load: %s\n--- printed:\n%s", err, text);
    FUZZ_CHECK(same_values(&c, &again), "the printed configuration loads to other values\n--- printed:\n%s", text);
    free(text);
    return 0;
}
