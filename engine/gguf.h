/*
 * gguf.h: reading and writing GGUF files (versions 2 and 3).
 *
 * The reader memory-maps the file (or takes a caller's buffer) and validates
 * every count, length, type, dimension, offset and the alignment against the
 * file size, with overflow-safe arithmetic, before anything is used. After a
 * successful open every accessor below is safe: strings point into the
 * mapping and are length-delimited (not NUL-terminated), array data lies
 * inside the file, and every tensor's bytes lie inside the data section.
 *
 * What the reader refuses (ELM_ERR_FORMAT, with a message such as "tensor 3
 * 'blk.0.attn_q.weight': offset 123 is not a multiple of the alignment 32"):
 *  - a bad magic; version 1; a byte-swapped (big-endian) version; others than 2, 3;
 *  - counts, string lengths and array sizes larger than the bytes left;
 *  - empty keys, duplicate keys, unknown value types, nested arrays, a BOOL
 *    value other than 0 or 1 (BOOL array elements are not checked);
 *  - general.alignment that is not a UINT32 non-zero power of two;
 *  - empty or duplicate tensor names, n_dims outside 1..4, a dimension of 0
 *    (empty tensors are refused, so every tensor has at least one element)
 *    or above INT64_MAX, element counts or byte sizes overflowing 64 bits;
 *  - type ids quant's elmi_qtype_get() does not know (unknown or removed: 4, 5,
 *    31-33, 36-38); known types edgelm cannot compute with are accepted here,
 *    but ne[0] must still be a multiple of their block size;
 *  - offsets not a multiple of the alignment, data outside the data section,
 *    and tensors whose bytes overlap.
 * Vocabulary-only files (no tensors) may end before their aligned data
 * section. Bytes after the last tensor are allowed.
 */
#ifndef ELM_GGUF_H
#define ELM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edgelm.h"

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef struct gguf_str {
    const char *ptr; /* not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    union {
        uint64_t u64;   /* UINT8..UINT64 widened */
        int64_t i64;    /* INT8..INT64 widened */
        double f64;     /* FLOAT32, FLOAT64 widened */
        bool b;
        gguf_str str;
    } v;
    /* ARRAY only: */
    gguf_type arr_type;
    uint64_t arr_n;
    const void *arr_data;  /* raw little-endian elements (not for string arrays) */
    gguf_str *arr_strs;    /* string arrays: arr_n entries, owned by the file */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* each >= 1 (zero-sized tensors are refused); unused are 1 */
    int type;                  /* qtype id; validated as known and not removed */
    uint64_t offset;           /* relative to the data section, aligned */
    uint64_t nbytes;
    const void *data;          /* inside the mapping; as aligned as the buffer allows */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates `path`. On failure returns ELM_ERR_IO / ELM_ERR_FORMAT /
 * ELM_ERR_NO_MEMORY with a message naming the problem (not the path) in err. */
elm_status elmi_gguf_open(const char *path, gguf_file **out, char *err, size_t err_size);
/* Same, but check(data, size, ctx, err, err_size) runs over the mapped bytes
 * before any of them is parsed; its failure is returned as it is. The model
 * loader checks signatures with it, over exactly the bytes it then uses. */
typedef elm_status (*elmi_gguf_check_fn)(const void *data, size_t size, void *ctx, char *err,
                                         size_t err_size);
elm_status elmi_gguf_open_checked(const char *path, elmi_gguf_check_fn check, void *ctx,
                                  gguf_file **out, char *err, size_t err_size);
/* Same over `size` bytes at `data` (borrowed; must outlive the file). */
elm_status elmi_gguf_open_memory(const void *data, size_t size, gguf_file **out, char *err,
                            size_t err_size);
void elmi_gguf_close(gguf_file *f);

uint32_t elmi_gguf_version(const gguf_file *f);
uint64_t elmi_gguf_file_size(const gguf_file *f);
uint32_t elmi_gguf_alignment(const gguf_file *f);
uint64_t elmi_gguf_data_offset(const gguf_file *f); /* may exceed the file size when there are no tensors */
const void *elmi_gguf_base(const gguf_file *f);     /* byte 0 of the file */

uint64_t elmi_gguf_n_kv(const gguf_file *f);
const gguf_kv *elmi_gguf_kv_at(const gguf_file *f, uint64_t i);
/* The pair with this key (NUL-terminated), or NULL. */
const gguf_kv *elmi_gguf_find(const gguf_file *f, const char *key);

uint64_t elmi_gguf_n_tensors(const gguf_file *f);
const gguf_tensor *elmi_gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *elmi_gguf_find_tensor(const gguf_file *f, const char *name);

/*
 * Typed getters. Each returns:
 *  - ELM_OK with *out set when the key exists with a fitting type;
 *  - ELM_OK with *out unchanged when the key is absent and !required (so the
 *    caller presets the default);
 *  - ELM_ERR_FORMAT with a message in err when a required key is absent, or
 *    the key has another type, or an integer value does not fit the target.
 * Integer getters accept any integer type whose value fits the target.
 */
elm_status elmi_gguf_get_u32(const gguf_file *f, const char *key, bool required, uint32_t *out,
                        char *err, size_t err_size);
elm_status elmi_gguf_get_i32(const gguf_file *f, const char *key, bool required, int32_t *out,
                        char *err, size_t err_size);
elm_status elmi_gguf_get_f32(const gguf_file *f, const char *key, bool required, float *out,
                        char *err, size_t err_size);
elm_status elmi_gguf_get_bool(const gguf_file *f, const char *key, bool required, bool *out,
                         char *err, size_t err_size);
/* *out points into the mapping. */
elm_status elmi_gguf_get_str(const gguf_file *f, const char *key, bool required, gguf_str *out,
                        char *err, size_t err_size);
/* An array whose element type must be `elem` (GGUF_TYPE_STRING for string
 * arrays); *out is the pair itself. */
elm_status elmi_gguf_get_arr(const gguf_file *f, const char *key, bool required, gguf_type elem,
                        const gguf_kv **out, char *err, size_t err_size);

/* True when s equals the NUL-terminated c. */
bool elmi_gguf_str_eq(gguf_str s, const char *c);
const char *elmi_gguf_type_name(gguf_type t);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and unknown ids. */
size_t elmi_gguf_type_size(gguf_type t);

/* ------------------------------------------------------------------ writer */

typedef struct gguf_writer gguf_writer;

gguf_writer *elmi_gguf_writer_new(void); /* NULL when out of memory */
void elmi_gguf_writer_free(gguf_writer *w);

/* Every setter copies its arguments. A later set of the same key replaces
 * the earlier one. They return ELM_ERR_NO_MEMORY or ELM_OK. */
elm_status elmi_gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
elm_status elmi_gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
elm_status elmi_gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
elm_status elmi_gguf_set_f32(gguf_writer *w, const char *key, float v);
elm_status elmi_gguf_set_bool(gguf_writer *w, const char *key, bool v);
elm_status elmi_gguf_set_str(gguf_writer *w, const char *key, const char *v);
elm_status elmi_gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* n elements of a fixed-size type (not STRING or ARRAY). */
elm_status elmi_gguf_set_arr_data(gguf_writer *w, const char *key, gguf_type elem, const void *v,
                             uint64_t n);
/* One value of any fixed-size type (not STRING or ARRAY), read from *v. */
elm_status elmi_gguf_set_val(gguf_writer *w, const char *key, gguf_type type, const void *v);
/* Removes a pair; false when there was none. */
bool elmi_gguf_remove_key(gguf_writer *w, const char *key);

/* Adds a tensor; `data` (nbytes of the type's row layout) is copied. Adding
 * a name again replaces that tensor in place. ELM_ERR_INVALID_ARG when the
 * type is unknown, n_dims is outside 1..4, a dimension is < 1, or nbytes is
 * not the size of the shape. */
elm_status elmi_gguf_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, const void *data, size_t nbytes);
/* As elmi_gguf_add_tensor without any check (n_dims at most 4): for writing
 * malformed files in tests. nbytes bytes of data are written. */
elm_status elmi_gguf_add_tensor_raw(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                               const int64_t *ne, const void *data, size_t nbytes);
/* Removes a tensor; false when there was none. */
bool elmi_gguf_remove_tensor(gguf_writer *w, const char *name);

/* Serializes (v3, little-endian) to a buffer from elmi_malloc (the caller
 * frees it with elmi_free) or to a file. Tensor data is padded to
 * `general.alignment` when it was set with elmi_gguf_set_u32 to a power of two,
 * else to GGUF_DEFAULT_ALIGNMENT. */
elm_status elmi_gguf_write_memory(const gguf_writer *w, void **out, size_t *out_size);
elm_status elmi_gguf_write_file(const gguf_writer *w, const char *path, char *err, size_t err_size);

#endif /* ELM_GGUF_H */
