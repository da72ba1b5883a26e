/*
 * gguf_write.c: the GGUF writer (version 3, little-endian). It keeps copies
 * of everything it is given and lays the file out only when serializing, so
 * that a pair or tensor can be replaced or removed until then.
 */
#define _POSIX_C_SOURCE 200809L /* the XSI strerror_r */

#include "common/alloc.h"
#include "common/status.h"
#include "engine/gguf_internal.h"
#include "quant/quant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct wkv {
    char *key;
    gguf_type type;
    uint8_t scalar[8]; /* fixed-size scalar, little-endian */
    char *str;         /* STRING */
    gguf_type arr_type;
    uint64_t arr_n;
    void *arr_data; /* fixed-size elements */
    char **arr_strs;
} wkv;

typedef struct wtensor {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data; /* NULL: nbytes zeros */
    size_t nbytes;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

gguf_writer *elmi_gguf_writer_new(void) { return elmi_calloc(1, sizeof(gguf_writer)); }

static void wkv_free(wkv *kv) {
    elmi_free(kv->key);
    elmi_free(kv->str);
    elmi_free(kv->arr_data);
    for (uint64_t i = 0; kv->arr_strs && i < kv->arr_n; i++) elmi_free(kv->arr_strs[i]);
    elmi_free(kv->arr_strs);
}

static void wtensor_free(wtensor *t) {
    elmi_free(t->name);
    elmi_free(t->data);
}

void elmi_gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) wkv_free(&w->kvs[i]);
    for (size_t i = 0; i < w->n_tensors; i++) wtensor_free(&w->tensors[i]);
    elmi_free(w->kvs);
    elmi_free(w->tensors);
    elmi_free(w);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = elmi_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void *dup_mem(const void *p, size_t n) {
    void *d = elmi_malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

static bool grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return true;
    size_t new_cap = *cap ? *cap * 2 : 16;
    void *p = elmi_realloc(*arr, new_cap * elem);
    if (!p) return false;
    *arr = p;
    *cap = new_cap;
    return true;
}

/* ------------------------------------------------------------ pairs */

static ptrdiff_t find_kv(const gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) return (ptrdiff_t)i;
    return -1;
}

/* Takes ownership of *kv (freeing it on failure) and stores it in place of a
 * pair with the same key, or at the end. */
static elm_status put_kv(gguf_writer *w, wkv *kv) {
    ptrdiff_t i = find_kv(w, kv->key);
    if (i >= 0) {
        wkv_free(&w->kvs[i]);
        w->kvs[i] = *kv;
        return ELM_OK;
    }
    if (!grow((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs)) {
        wkv_free(kv);
        return ELM_ERR_NO_MEMORY;
    }
    w->kvs[w->n_kv++] = *kv;
    return ELM_OK;
}

static bool is_fixed(gguf_type t) { return elmi_gguf_type_size(t) != 0; }

elm_status elmi_gguf_set_val(gguf_writer *w, const char *key, gguf_type type, const void *v) {
    if (!w || !key || !v || !is_fixed(type)) return ELM_ERR_INVALID_ARG;
    wkv kv = {.type = type, .key = dup_str(key)};
    if (!kv.key) return ELM_ERR_NO_MEMORY;
    memcpy(kv.scalar, v, elmi_gguf_type_size(type));
    return put_kv(w, &kv);
}

elm_status elmi_gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return elmi_gguf_set_val(w, key, GGUF_TYPE_UINT32, &v);
}

elm_status elmi_gguf_set_i32(gguf_writer *w, const char *key, int32_t v) {
    return elmi_gguf_set_val(w, key, GGUF_TYPE_INT32, &v);
}

elm_status elmi_gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) {
    return elmi_gguf_set_val(w, key, GGUF_TYPE_UINT64, &v);
}

elm_status elmi_gguf_set_f32(gguf_writer *w, const char *key, float v) {
    return elmi_gguf_set_val(w, key, GGUF_TYPE_FLOAT32, &v);
}

elm_status elmi_gguf_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return elmi_gguf_set_val(w, key, GGUF_TYPE_BOOL, &b);
}

elm_status elmi_gguf_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!w || !key || !v) return ELM_ERR_INVALID_ARG;
    wkv kv = {.type = GGUF_TYPE_STRING, .key = dup_str(key), .str = dup_str(v)};
    if (!kv.key || !kv.str) {
        wkv_free(&kv);
        return ELM_ERR_NO_MEMORY;
    }
    return put_kv(w, &kv);
}

elm_status elmi_gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (!w || !key || (n > 0 && !v) || n > SIZE_MAX / sizeof(char *))
        return ELM_ERR_INVALID_ARG;
    for (uint64_t i = 0; i < n; i++)
        if (!v[i]) return ELM_ERR_INVALID_ARG;
    wkv kv = {.type = GGUF_TYPE_ARRAY, .arr_type = GGUF_TYPE_STRING, .key = dup_str(key)};
    kv.arr_strs = elmi_calloc(n ? (size_t)n : 1, sizeof *kv.arr_strs);
    kv.arr_n = n;
    bool ok = kv.key && kv.arr_strs;
    for (uint64_t i = 0; ok && i < n; i++) ok = (kv.arr_strs[i] = dup_str(v[i])) != NULL;
    if (!ok) {
        wkv_free(&kv);
        return ELM_ERR_NO_MEMORY;
    }
    return put_kv(w, &kv);
}

elm_status elmi_gguf_set_arr_data(gguf_writer *w, const char *key, gguf_type elem, const void *v,
                             uint64_t n) {
    size_t esz = elmi_gguf_type_size(elem);
    if (!w || !key || !esz || (n > 0 && !v) || n > SIZE_MAX / esz) return ELM_ERR_INVALID_ARG;
    wkv kv = {.type = GGUF_TYPE_ARRAY, .arr_type = elem, .arr_n = n, .key = dup_str(key)};
    kv.arr_data = dup_mem(v, (size_t)n * esz);
    if (!kv.key || !kv.arr_data) {
        wkv_free(&kv);
        return ELM_ERR_NO_MEMORY;
    }
    return put_kv(w, &kv);
}

bool elmi_gguf_remove_key(gguf_writer *w, const char *key) {
    ptrdiff_t i = (w && key) ? find_kv(w, key) : -1;
    if (i < 0) return false;
    wkv_free(&w->kvs[i]);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - (size_t)i - 1) * sizeof *w->kvs);
    w->n_kv--;
    return true;
}

/* ------------------------------------------------------------ tensors */

static ptrdiff_t find_tensor(const gguf_writer *w, const char *name) {
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return (ptrdiff_t)i;
    return -1;
}

elm_status elmi_gguf_add_tensor_raw(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                               const int64_t *ne, const void *data, size_t nbytes) {
    if (!w || !name || n_dims > GGUF_MAX_DIMS || (n_dims > 0 && !ne))
        return ELM_ERR_INVALID_ARG;
    wtensor t = {.type = type, .n_dims = n_dims, .nbytes = nbytes, .name = dup_str(name)};
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    if (data) t.data = dup_mem(data, nbytes);
    if (!t.name || (data && !t.data)) {
        wtensor_free(&t);
        return ELM_ERR_NO_MEMORY;
    }
    ptrdiff_t i = find_tensor(w, name);
    if (i >= 0) {
        wtensor_free(&w->tensors[i]);
        w->tensors[i] = t;
        return ELM_OK;
    }
    if (!grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors)) {
        wtensor_free(&t);
        return ELM_ERR_NO_MEMORY;
    }
    w->tensors[w->n_tensors++] = t;
    return ELM_OK;
}

/* The byte size of a shape of type `type`, or false when it has none. */
static bool shape_bytes(int type, uint32_t n_dims, const int64_t *ne, uint64_t *out) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !elmi_qtype_get(type)) return false;
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] < 1) return false;
    size_t row;
    if (!elmi_qtype_row_bytes(type, ne[0], &row)) return false;
    uint64_t n = row;
    for (uint32_t d = 1; d < n_dims; d++)
        if (__builtin_mul_overflow(n, (uint64_t)ne[d], &n)) return false;
    *out = n;
    return true;
}

elm_status elmi_gguf_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne, const void *data, size_t nbytes) {
    uint64_t expect;
    if (!w || !name || !name[0] || !ne || !data || !shape_bytes(type, n_dims, ne, &expect) ||
        expect != nbytes)
        return ELM_ERR_INVALID_ARG;
    return elmi_gguf_add_tensor_raw(w, name, type, n_dims, ne, data, nbytes);
}

bool elmi_gguf_remove_tensor(gguf_writer *w, const char *name) {
    ptrdiff_t i = (w && name) ? find_tensor(w, name) : -1;
    if (i < 0) return false;
    wtensor_free(&w->tensors[i]);
    memmove(&w->tensors[i], &w->tensors[i + 1],
            (w->n_tensors - (size_t)i - 1) * sizeof *w->tensors);
    w->n_tensors--;
    return true;
}

/* ------------------------------------------------------------ serialization */

/* Where bytes go: a buffer, a file, or nowhere (counting the size). */
typedef struct sink {
    uint8_t *buf;
    FILE *fp;
    uint64_t pos;
    bool failed;
} sink;

static void put(sink *s, const void *p, size_t n) {
    if (n == 0) return;
    if (s->buf) memcpy(s->buf + s->pos, p, n);
    else if (s->fp && !s->failed && fwrite(p, 1, n, s->fp) != n) s->failed = true;
    s->pos += n;
}

static void put_zeros(sink *s, uint64_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        put(s, zeros, k);
        n -= k;
    }
}

static void put_u32(sink *s, uint32_t v) { put(s, &v, 4); }
static void put_u64(sink *s, uint64_t v) { put(s, &v, 8); }

static void put_str(sink *s, const char *str) {
    size_t n = strlen(str);
    put_u64(s, n);
    put(s, str, n);
}

static void put_kv_value(sink *s, const wkv *kv) {
    put_u32(s, (uint32_t)kv->type);
    if (kv->type == GGUF_TYPE_STRING) {
        put_str(s, kv->str);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        put_u32(s, (uint32_t)kv->arr_type);
        put_u64(s, kv->arr_n);
        if (kv->arr_type == GGUF_TYPE_STRING)
            for (uint64_t i = 0; i < kv->arr_n; i++) put_str(s, kv->arr_strs[i]);
        else
            put(s, kv->arr_data, (size_t)kv->arr_n * elmi_gguf_type_size(kv->arr_type));
    } else {
        put(s, kv->scalar, elmi_gguf_type_size(kv->type));
    }
}

static uint32_t writer_alignment(const gguf_writer *w) {
    ptrdiff_t i = find_kv(w, GGUF_KEY_ALIGNMENT);
    if (i < 0 || w->kvs[i].type != GGUF_TYPE_UINT32) return GGUF_DEFAULT_ALIGNMENT;
    uint32_t a;
    memcpy(&a, w->kvs[i].scalar, 4);
    return gguf_is_pow2(a) ? a : GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t pad_to(uint64_t pos, uint32_t align) { return (align - pos % align) % align; }

static void emit(const gguf_writer *w, sink *s) {
    uint32_t align = writer_alignment(w);
    put(s, GGUF_MAGIC, 4);
    put_u32(s, GGUF_WRITE_VERSION);
    put_u64(s, w->n_tensors);
    put_u64(s, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(s, w->kvs[i].key);
        put_kv_value(s, &w->kvs[i]);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        put_str(s, t->name);
        put_u32(s, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(s, (uint64_t)t->ne[d]);
        put_u32(s, (uint32_t)t->type);
        put_u64(s, offset);
        offset += t->nbytes + pad_to(t->nbytes, align);
    }
    if (w->n_tensors == 0) return;
    put_zeros(s, pad_to(s->pos, align));
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->data) put(s, t->data, t->nbytes);
        else put_zeros(s, t->nbytes);
        put_zeros(s, pad_to(t->nbytes, align));
    }
}

elm_status elmi_gguf_write_memory(const gguf_writer *w, void **out, size_t *out_size) {
    if (!w || !out || !out_size) return ELM_ERR_INVALID_ARG;
    *out = NULL;
    *out_size = 0;
    sink count = {0};
    emit(w, &count);
    if (count.pos > SIZE_MAX) return ELM_ERR_NO_MEMORY;
    uint8_t *buf = elmi_malloc(count.pos ? (size_t)count.pos : 1);
    if (!buf) return ELM_ERR_NO_MEMORY;
    sink s = {.buf = buf};
    emit(w, &s);
    *out = buf;
    *out_size = (size_t)s.pos;
    return ELM_OK;
}

elm_status elmi_gguf_write_file(const gguf_writer *w, const char *path, char *err, size_t err_size) {
    if (!w || !path) return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no writer or path");
    FILE *fp = fopen(path, "wb");
    int e = errno;
    sink s = {.fp = fp};
    if (fp) {
        emit(w, &s);
        e = errno;
        if (fclose(fp) != 0 && !s.failed) {
            s.failed = true;
            e = errno;
        }
    }
    if (fp && !s.failed) return ELM_OK;
    if (fp) unlink(path);
    char why[128];
    if (strerror_r(e, why, sizeof why) != 0) snprintf(why, sizeof why, "error %d", e);
    return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot %s: %s", fp ? "write" : "create", why);
}
