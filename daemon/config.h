/*
 * daemon/config.h - slmd serve's configuration: built-in defaults, then the configuration
 * file (`key = value` lines; /etc/slmd/slmd.conf unless --config FILE), then command-line
 * flags (every key is also a flag: `--key value`). Each value remembers where it came from,
 * for `slmd config`. docs/configuration.md lists the keys.
 */
#ifndef SLM_DAEMON_CONFIG_H
#define SLM_DAEMON_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define SLM_CONFIG_DEFAULT_PATH "/etc/slmd/slmd.conf"
#define SLM_CONFIG_MAX_IDS 64
#define SLM_CONFIG_SOURCE_LEN 300

struct slm_config {
    char model[1024];            /* "" = the default model in the model cache */
    char socket[108];            /* "" = $RUNTIME_DIRECTORY/slmd.sock, else /run/slmd/slmd.sock */
    unsigned socket_mode;        /* permission bits of the socket file */
    char socket_group[64];       /* "" = leave the group alone */
    uid_t allow_uids[SLM_CONFIG_MAX_IDS];
    int n_allow_uids;            /* 0 and no gids: anyone who can open the socket */
    gid_t allow_gids[SLM_CONFIG_MAX_IDS];
    int n_allow_gids;
    int threads;                 /* 0 = all online CPUs */
    int ctx_size;                /* 0 = the model's, at most 8192 */
    int force_ctx;               /* 1: ctx_size may exceed the model's training context */
    int overlap_steps;           /* 1: the engine's o.overlap (each pass while the step before is reported) */
    int pass_spin_us;            /* the engine's o.spin_us (its two threads' polling for each other) */
    int max_batch_tokens;
    int max_seqs;
    uint64_t kv_cache_mem;       /* bytes; 0 = auto */
    int block_size;
    char backend[8];             /* auto, cpu, cuda */
    double gpu_memory_fraction;  /* cuda: share of the free device memory the KV cache may take, (0, 1] */
    int shutdown_timeout;        /* seconds a drain may take before running requests are cancelled */
    int max_clients;
    int max_clients_per_uid;     /* connections of one uid, handshaken or not; 0 = max_clients */
    int handshake_timeout;       /* seconds a connection may take to send its HELLO */
    int client_max_requests;     /* unfinished requests of one connection */
    int client_max_prompt_tokens;/* prompt tokens of one connection's unfinished requests */
    uint64_t client_max_arena_bytes; /* arena bytes (payload, stop strings, stop ids) of them */
    int max_priority;            /* the highest priority a request may ask for */
    int spin_us;                 /* how long the I/O thread polls the rings before sleeping */
    char log_level[16];
    char chat_template[16];      /* auto (the model's, else by architecture), chatml, llama3, gemma, phi3, mistral-v3 */
    /* where each key's value came from: "default", "FILE:LINE" or "--flag" (index: the key's) */
    char source[32][SLM_CONFIG_SOURCE_LEN];
};

/* Fills c with the built-in defaults. */
void slm_config_defaults(struct slm_config *c);

/* Sets one key from text; source says where it came from. -EINVAL with err ("KEY: reason")
 * on an unknown key or a bad value; -ENOENT for an unknown key. */
int slm_config_set(struct slm_config *c, const char *key, const char *value, const char *source, char *err);

/* Reads a configuration file. A missing file is an error only when must_exist. Errors name
 * FILE:LINE and the problem. */
int slm_config_load(struct slm_config *c, const char *path, int must_exist, char *err);

/* Defaults, then the file (--config FILE, or the default path if present), then the flags in
 * argv[1..argc). Returns 0, 1 when --help was given (usage printed to stdout), or -EINVAL
 * with err. */
int slm_config_from_args(struct slm_config *c, int argc, char **argv, char *err);

/* The defaults that depend on the backend (docs/configuration.md, "Defaults on the GPU"):
 * max-batch-tokens and max-seqs, where still at their default, take backend's ("cpu" or "cuda")
 * values, their source saying so. slm_config_from_args applies an explicit `backend = cuda`; serve
 * applies the backend `auto` resolved to. -EINVAL with err when max-seqs then exceeds
 * max-batch-tokens (c is changed all the same). */
int slm_config_backend_defaults(struct slm_config *c, const char *backend, char *err);

/* Prints every key = value with its source as a comment (the format the file takes). */
void slm_config_print(const struct slm_config *c, FILE *f);

/* Prints the keys as flags, with their meaning and default. */
void slm_config_usage(FILE *f);

/* The socket path after defaults ($RUNTIME_DIRECTORY, /run/slmd). */
void slm_config_socket_path(const struct slm_config *c, char *out, size_t cap);

#endif
