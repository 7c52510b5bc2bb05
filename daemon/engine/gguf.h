/*
 * daemon/engine/gguf.h - a validating, memory-mapped GGUF (v2, v3) reader.
 *
 * slm_gguf_open() maps the file read-only and checks every count, length, type
 * and offset against the file before returning: after a successful open every
 * key, string, array and tensor it hands out lies inside the mapping. Strings
 * are views into the mapping (not NUL-terminated). Tensor data is pointed into,
 * never copied. Little-endian files only.
 */
#ifndef SLM_ENGINE_GGUF_H
#define SLM_ENGINE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

/* GGUF metadata value types. */
enum slm_gguf_vtype {
    SLM_GGUF_UINT8 = 0,
    SLM_GGUF_INT8 = 1,
    SLM_GGUF_UINT16 = 2,
    SLM_GGUF_INT16 = 3,
    SLM_GGUF_UINT32 = 4,
    SLM_GGUF_INT32 = 5,
    SLM_GGUF_FLOAT32 = 6,
    SLM_GGUF_BOOL = 7,
    SLM_GGUF_STRING = 8,
    SLM_GGUF_ARRAY = 9,
    SLM_GGUF_UINT64 = 10,
    SLM_GGUF_INT64 = 11,
    SLM_GGUF_FLOAT64 = 12,
    SLM_GGUF_VTYPE_COUNT = 13,
};

#define SLM_GGUF_MAX_DIMS 4

struct slm_gguf_str {
    const char *ptr;   /* into the mapping; not NUL-terminated */
    uint64_t len;
};

struct slm_gguf_kv {
    struct slm_gguf_str key;
    uint32_t type;          /* enum slm_gguf_vtype */
    uint32_t arr_type;      /* element type when type == ARRAY */
    uint64_t arr_len;       /* element count when type == ARRAY */
    const uint8_t *value;   /* the value's bytes in the mapping (for ARRAY: the first element) */
};

struct slm_gguf_tensor {
    struct slm_gguf_str name;
    uint32_t n_dims;
    uint64_t ne[SLM_GGUF_MAX_DIMS];   /* ne[0] is the row length (contiguous); unused dims are 1 */
    uint32_t type;                    /* enum slm_qtype */
    uint64_t offset;                  /* from the start of the data section */
    uint64_t nbytes;
    const void *data;                 /* into the mapping */
};

struct slm_gguf {
    char path[512];
    uint32_t version;
    uint64_t n_kv;
    struct slm_gguf_kv *kv;           /* (n_kv) */
    uint64_t n_tensors;
    struct slm_gguf_tensor *tensors;  /* (n_tensors) */
    uint32_t alignment;
    const uint8_t *map;
    size_t map_size;
    uint64_t data_offset;             /* start of the tensor data section in the file */
};

/* Opens and validates `path`. Returns NULL with a reason naming the file, the field
 * and the problem in err (caller-owned, SLM_ERR_LEN) on any error. */
struct slm_gguf *slm_gguf_open(const char *path, char *err);

/* Validates the GGUF image buf[0..size) in place, as slm_gguf_open validates a file (name
 * stands for the path in messages). The memory stays the caller's: it must outlive the result,
 * which points into it, and slm_gguf_close leaves it alone. NULL with err on any error. */
struct slm_gguf *slm_gguf_open_memory(const void *buf, size_t size, const char *name, char *err);

/* Unmaps (a file's mapping) and frees; sets *g to NULL. NULL-safe. */
void slm_gguf_close(struct slm_gguf **g);

/* The key-value pair named `key`, or NULL. */
const struct slm_gguf_kv *slm_gguf_find(const struct slm_gguf *g, const char *key);

/* The tensor named `name`, or NULL. */
const struct slm_gguf_tensor *slm_gguf_find_tensor(const struct slm_gguf *g, const char *name);

/*
 * Typed getters. Each returns 0, -ENOENT when the key is absent, or -EINVAL when
 * its type cannot be converted losslessly (integers of any width and sign convert
 * when the value fits; FLOAT32 and FLOAT64 convert to each other, a FLOAT64 only
 * when it lies within float range; BOOL reads as an integer 0/1). On error, err (may be NULL) names the file, key and problem.
 */
int slm_gguf_get_u64(const struct slm_gguf *g, const char *key, uint64_t *out, char *err);
int slm_gguf_get_u32(const struct slm_gguf *g, const char *key, uint32_t *out, char *err);
int slm_gguf_get_i64(const struct slm_gguf *g, const char *key, int64_t *out, char *err);
int slm_gguf_get_f32(const struct slm_gguf *g, const char *key, float *out, char *err);
int slm_gguf_get_bool(const struct slm_gguf *g, const char *key, int *out, char *err);
int slm_gguf_get_str(const struct slm_gguf *g, const char *key, struct slm_gguf_str *out, char *err);

/*
 * Array access. slm_gguf_get_arr returns the kv of an ARRAY key whose element type
 * is `elem_type` (-EINVAL otherwise). For arrays of strings, slm_gguf_get_str_arr
 * fills out[0..n) with views of each element (n must equal arr_len).
 */
int slm_gguf_get_arr(const struct slm_gguf *g, const char *key, uint32_t elem_type,
                     const struct slm_gguf_kv **out, char *err);
int slm_gguf_get_str_arr(const struct slm_gguf *g, const struct slm_gguf_kv *kv,
                         struct slm_gguf_str *out, uint64_t n);

/* Reads element i of a numeric array kv as double / int64 (no bounds check beyond
 * arr_len, which the caller must respect). As int64, float elements truncate toward
 * zero and saturate; NaN reads as 0. */
double slm_gguf_arr_f64(const struct slm_gguf_kv *kv, uint64_t i);
int64_t slm_gguf_arr_i64(const struct slm_gguf_kv *kv, uint64_t i);

/* Compares a string view with a C string. */
int slm_gguf_str_eq(struct slm_gguf_str s, const char *c);

/* Size in bytes of one value of a scalar metadata type; 0 for STRING/ARRAY/unknown. */
size_t slm_gguf_vtype_size(uint32_t type);

/* Name of a metadata type ("uint32"), "?" if unknown. */
const char *slm_gguf_vtype_name(uint32_t type);

#endif
