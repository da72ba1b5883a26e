/*
 * gguf.c: the GGUF reader. Every field is checked against the bytes that are
 * left before it is used, with overflow-safe arithmetic, so that a hostile
 * file can only produce an error message, never an out-of-bounds access or
 * an allocation larger than a small multiple of the file size.
 */
#define _POSIX_C_SOURCE 200809L /* the XSI strerror_r: thread-safe */

#include "common/alloc.h"
#include "common/status.h"
#include "engine/gguf_internal.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The fewest bytes a pair can take: key length, a 1-byte key, the value type
 * and a 1-byte value. A tensor info: name length, a 1-byte name, n_dims, one
 * dimension, the type and the offset. Counts are bounded by these before
 * anything is allocated. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u
#define TRUNCATED " (file truncated?)"

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    void *map; /* our mapping, or NULL for a caller's buffer */
    size_t map_size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    uint64_t n_tensors;
    gguf_kv *kvs;
    gguf_tensor *tensors;
    const gguf_kv **kv_by_key;           /* sorted by key, for lookups */
    const gguf_tensor **tensor_by_name;  /* sorted by name */
};

/* The parse cursor. `where` names the item being read, for messages. */
typedef struct reader {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    elm_status status;
    char *err;
    size_t err_size;
    char where[192];
} reader;

/* ------------------------------------------------------------ messages */

static bool fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(reader *r, const char *fmt, ...) {
    r->status = ELM_ERR_FORMAT;
    if (!r->err || r->err_size == 0) return false;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->where[0])
        snprintf(r->err, r->err_size, "%s: %s", r->where, msg);
    else
        snprintf(r->err, r->err_size, "%s", msg);
    return false;
}

static bool fail_oom(reader *r, const char *what) {
    fail(r, "out of memory for %s", what);
    r->status = ELM_ERR_NO_MEMORY;
    return false;
}

/* A file's string made printable and short enough for a message. */
static void printable(gguf_str s, char *buf, size_t cap) {
    size_t n = 0;
    size_t keep = cap - 4; /* room for "..." and the NUL */
    for (uint64_t i = 0; i < s.len && n < keep; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        buf[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s.len > n) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

static void set_where(reader *r, const char *kind, uint64_t i, const gguf_str *name) {
    if (!name) {
        snprintf(r->where, sizeof r->where, "%s %" PRIu64, kind, i);
        return;
    }
    char shown[128];
    printable(*name, shown, sizeof shown);
    snprintf(r->where, sizeof r->where, "%s %" PRIu64 " '%s'", kind, i, shown);
}

/* ------------------------------------------------------------ primitives */

static uint64_t left(const reader *r) { return r->size - r->pos; }

static bool need(reader *r, uint64_t n, const char *what) {
    if (n <= left(r)) return true;
    return fail(r, "%s needs %" PRIu64 " bytes at offset %" PRIu64 " but only %" PRIu64
                   " remain" TRUNCATED,
                what, n, r->pos, left(r));
}

static bool rd_u32(reader *r, uint32_t *v, const char *what) {
    if (!need(r, 4, what)) return false;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return true;
}

static bool rd_u64(reader *r, uint64_t *v, const char *what) {
    if (!need(r, 8, what)) return false;
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return true;
}

static bool rd_str(reader *r, gguf_str *s, const char *what) {
    uint64_t len;
    if (!rd_u64(r, &len, what)) return false;
    if (len > left(r))
        return fail(r, "%s length %" PRIu64 " exceeds the %" PRIu64
                       " bytes left at offset %" PRIu64,
                    what, len, left(r), r->pos);
    s->ptr = (const char *)r->p + r->pos;
    s->len = len;
    r->pos += len;
    return true;
}

static int str_cmp(gguf_str a, gguf_str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return (a.len > b.len) - (a.len < b.len);
}

/* ------------------------------------------------------------ header */

static uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

static bool parse_version(reader *r, uint32_t *version) {
    if (!rd_u32(r, version, "the version")) return false;
    uint32_t v = *version;
    if (v == 2 || v == 3) return true;
    if (v == 1) return fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (bswap32(v) >= 1 && bswap32(v) <= 3)
        return fail(r, "big-endian GGUF file (version %" PRIu32 " byte-swapped) "
                       "is not supported: only little-endian files are",
                    bswap32(v));
    return fail(r, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", v);
}

static bool parse_header(reader *r, gguf_file *f) {
    snprintf(r->where, sizeof r->where, "header");
    if (r->size < 4 || memcmp(r->p, GGUF_MAGIC, 4) != 0) {
        if (r->size < 4)
            return fail(r, "the file is %" PRIu64 " bytes, too short for a GGUF header",
                        r->size);
        return fail(r, "not a GGUF file (magic bytes %02x %02x %02x %02x, expected 'GGUF')",
                    r->p[0], r->p[1], r->p[2], r->p[3]);
    }
    r->pos = 4;
    if (!parse_version(r, &f->version)) return false;
    if (!rd_u64(r, &f->n_tensors, "the tensor count")) return false;
    if (!rd_u64(r, &f->n_kv, "the key-value count")) return false;
    /* A plausible count that does not fit is most likely a cut-off file. */
    if (f->n_kv > left(r) / MIN_KV_BYTES)
        return fail(r, "key-value count %" PRIu64 " is impossible: each pair needs at least %u "
                       "bytes and only %" PRIu64 " remain%s",
                    f->n_kv, MIN_KV_BYTES, left(r), f->n_kv <= UINT32_MAX ? TRUNCATED : "");
    if (f->n_tensors > (left(r) - f->n_kv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES)
        return fail(r, "tensor count %" PRIu64 " is impossible: each tensor info needs at "
                       "least %u bytes and only %" PRIu64 " remain after %" PRIu64 " pairs%s",
                    f->n_tensors, MIN_TENSOR_INFO_BYTES, left(r), f->n_kv,
                    f->n_tensors <= UINT32_MAX ? TRUNCATED : "");
    return true;
}

/* ------------------------------------------------------------ key-value pairs */

size_t elmi_gguf_type_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *elmi_gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
        "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
    };
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

static bool widen_scalar(reader *r, gguf_kv *kv, const uint8_t *q) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            uint64_t u64; int64_t i64; float f32; double f64; } x;
    memcpy(&x, q, elmi_gguf_type_size(kv->type));
    switch (kv->type) {
    case GGUF_TYPE_UINT8: kv->v.u64 = x.u8; break;
    case GGUF_TYPE_INT8: kv->v.i64 = x.i8; break;
    case GGUF_TYPE_UINT16: kv->v.u64 = x.u16; break;
    case GGUF_TYPE_INT16: kv->v.i64 = x.i16; break;
    case GGUF_TYPE_UINT32: kv->v.u64 = x.u32; break;
    case GGUF_TYPE_INT32: kv->v.i64 = x.i32; break;
    case GGUF_TYPE_UINT64: kv->v.u64 = x.u64; break;
    case GGUF_TYPE_INT64: kv->v.i64 = x.i64; break;
    case GGUF_TYPE_FLOAT32: kv->v.f64 = x.f32; break;
    case GGUF_TYPE_FLOAT64: kv->v.f64 = x.f64; break;
    case GGUF_TYPE_BOOL:
        if (x.u8 > 1) return fail(r, "bool value %u is neither 0 nor 1", x.u8);
        kv->v.b = x.u8 != 0;
        break;
    default: return fail(r, "internal: %s is not a scalar type", elmi_gguf_type_name(kv->type));
    }
    return true;
}

static bool parse_scalar(reader *r, gguf_kv *kv) {
    if (kv->type == GGUF_TYPE_STRING) return rd_str(r, &kv->v.str, "the string value");
    size_t n = elmi_gguf_type_size(kv->type);
    if (!need(r, n, "the value")) return false;
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return widen_scalar(r, kv, q);
}

static bool parse_str_array(reader *r, gguf_kv *kv) {
    if (kv->arr_n > left(r) / 8)
        return fail(r, "array count %" PRIu64 " is impossible: each string needs at least 8 "
                       "bytes and only %" PRIu64 " remain",
                    kv->arr_n, left(r));
    if (kv->arr_n == 0) return true;
    kv->arr_strs = elmi_calloc((size_t)kv->arr_n, sizeof *kv->arr_strs);
    if (!kv->arr_strs) return fail_oom(r, "a string array index");
    for (uint64_t j = 0; j < kv->arr_n; j++) {
        if (!rd_str(r, &kv->arr_strs[j], "string element")) {
            size_t n = strlen(r->err ? r->err : "");
            if (r->err && n + 1 < r->err_size)
                snprintf(r->err + n, r->err_size - n, " (element %" PRIu64 " of %" PRIu64 ")",
                         j, kv->arr_n);
            return false;
        }
    }
    return true;
}

static bool parse_array(reader *r, gguf_kv *kv) {
    uint32_t et;
    if (!rd_u32(r, &et, "the array element type")) return false;
    if (et >= GGUF_TYPE_COUNT) return fail(r, "unknown array element type %" PRIu32, et);
    if (et == GGUF_TYPE_ARRAY) return fail(r, "nested arrays are not supported");
    kv->arr_type = (gguf_type)et;
    if (!rd_u64(r, &kv->arr_n, "the array count")) return false;
    if (et == GGUF_TYPE_STRING) return parse_str_array(r, kv);
    size_t esz = elmi_gguf_type_size(kv->arr_type);
    if (kv->arr_n > left(r) / esz)
        return fail(r, "array of %" PRIu64 " %s values does not fit in the %" PRIu64
                       " bytes left at offset %" PRIu64 TRUNCATED,
                    kv->arr_n, elmi_gguf_type_name(kv->arr_type), left(r), r->pos);
    kv->arr_data = r->p + r->pos;
    r->pos += kv->arr_n * esz;
    return true;
}

static bool parse_kv(reader *r, gguf_kv *kv, uint64_t i) {
    set_where(r, "kv", i, NULL);
    if (!rd_str(r, &kv->key, "the key")) return false;
    if (kv->key.len == 0) return fail(r, "the key is empty");
    set_where(r, "kv", i, &kv->key);
    uint32_t t;
    if (!rd_u32(r, &t, "the value type")) return false;
    if (t >= GGUF_TYPE_COUNT) return fail(r, "unknown value type %" PRIu32, t);
    kv->type = (gguf_type)t;
    if (kv->type == GGUF_TYPE_ARRAY) return parse_array(r, kv);
    return parse_scalar(r, kv);
}

static int cmp_kv_ptr(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    int c = str_cmp(x->key, y->key);
    return c ? c : (x > y) - (x < y);
}

static bool index_kvs(reader *r, gguf_file *f) {
    if (f->n_kv == 0) return true;
    f->kv_by_key = elmi_malloc((size_t)f->n_kv * sizeof *f->kv_by_key);
    if (!f->kv_by_key) return fail_oom(r, "the key index");
    for (uint64_t i = 0; i < f->n_kv; i++) f->kv_by_key[i] = &f->kvs[i];
    qsort(f->kv_by_key, (size_t)f->n_kv, sizeof *f->kv_by_key, cmp_kv_ptr);
    for (uint64_t i = 1; i < f->n_kv; i++) {
        const gguf_kv *a = f->kv_by_key[i - 1], *b = f->kv_by_key[i];
        if (str_cmp(a->key, b->key) == 0) {
            set_where(r, "kv", (uint64_t)(b - f->kvs), &b->key);
            return fail(r, "duplicate key (also kv %td)", a - f->kvs);
        }
    }
    return true;
}

static bool parse_kvs(reader *r, gguf_file *f) {
    if (f->n_kv > 0) {
        f->kvs = elmi_calloc((size_t)f->n_kv, sizeof *f->kvs);
        if (!f->kvs) return fail_oom(r, "the key-value pairs");
    }
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (!parse_kv(r, &f->kvs[i], i)) return false;
    r->where[0] = '\0';
    return index_kvs(r, f);
}

static bool read_alignment(reader *r, gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = elmi_gguf_find(f, GGUF_KEY_ALIGNMENT);
    if (!kv) return true;
    set_where(r, "kv", (uint64_t)(kv - f->kvs), &kv->key);
    if (kv->type != GGUF_TYPE_UINT32)
        return fail(r, "the alignment has type %s; it must be UINT32", elmi_gguf_type_name(kv->type));
    if (!gguf_is_pow2(kv->v.u64))
        return fail(r, "the alignment %" PRIu64 " is not a power of two (it must be non-zero)",
                    kv->v.u64);
    f->alignment = (uint32_t)kv->v.u64;
    r->where[0] = '\0';
    return true;
}

/* ------------------------------------------------------------ tensor infos */

static bool parse_dims(reader *r, gguf_tensor *t) {
    if (!rd_u32(r, &t->n_dims, "n_dims")) return false;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "n_dims %" PRIu32 " is outside 1..%d", t->n_dims, GGUF_MAX_DIMS);
    int64_t n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if (!rd_u64(r, &v, "a dimension")) return false;
        if (v == 0) return fail(r, "ne[%" PRIu32 "] is 0: empty tensors are not supported", d);
        if (v > INT64_MAX) return fail(r, "ne[%" PRIu32 "] = %" PRIu64 " is too large", d, v);
        t->ne[d] = (int64_t)v;
        if (__builtin_mul_overflow(n_elems, t->ne[d], &n_elems))
            return fail(r, "the element count overflows 64 bits at ne[%" PRIu32 "]", d);
    }
    return true;
}

static bool tensor_size(reader *r, gguf_tensor *t) {
    const qtype_traits *tr = elmi_qtype_get(t->type);
    if (!tr || tr->block_size <= 0 || tr->type_size == 0)
        return fail(r, "unknown or removed tensor type id %d", t->type);
    if (t->ne[0] % tr->block_size != 0)
        return fail(r, "ne[0] = %" PRId64 " is not a multiple of the block size %" PRId64
                       " of type %s",
                    t->ne[0], tr->block_size, tr->name);
    size_t row;
    if (!elmi_qtype_row_bytes(t->type, t->ne[0], &row))
        return fail(r, "the row size of %" PRId64 " %s values overflows", t->ne[0], tr->name);
    uint64_t nbytes = row;
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(nbytes, (uint64_t)t->ne[d], &nbytes))
            return fail(r, "the byte size overflows 64 bits");
    t->nbytes = nbytes;
    return true;
}

static bool parse_tensor_info(reader *r, gguf_tensor *t, uint64_t i, uint32_t alignment) {
    set_where(r, "tensor", i, NULL);
    if (!rd_str(r, &t->name, "the name")) return false;
    if (t->name.len == 0) return fail(r, "the name is empty");
    set_where(r, "tensor", i, &t->name);
    if (!parse_dims(r, t)) return false;
    uint32_t type;
    if (!rd_u32(r, &type, "the type")) return false;
    t->type = type > INT32_MAX ? -1 : (int)type;
    if (!tensor_size(r, t)) return false;
    if (!rd_u64(r, &t->offset, "the offset")) return false;
    if (t->offset % alignment != 0)
        return fail(r, "offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                    t->offset, alignment);
    return true;
}

static int cmp_tensor_name(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    int c = str_cmp(x->name, y->name);
    return c ? c : (x > y) - (x < y);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x > y) - (x < y);
}

static bool check_duplicate_names(reader *r, gguf_file *f) {
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const gguf_tensor *a = f->tensor_by_name[i - 1], *b = f->tensor_by_name[i];
        if (str_cmp(a->name, b->name) == 0) {
            set_where(r, "tensor", (uint64_t)(b - f->tensors), &b->name);
            return fail(r, "duplicate tensor name (also tensor %td)", a - f->tensors);
        }
    }
    return true;
}

static bool check_overlaps(reader *r, gguf_file *f) {
    const gguf_tensor **by_off = elmi_malloc((size_t)f->n_tensors * sizeof *by_off);
    if (!by_off) return fail_oom(r, "the tensor offset index");
    memcpy(by_off, f->tensor_by_name, (size_t)f->n_tensors * sizeof *by_off);
    qsort(by_off, (size_t)f->n_tensors, sizeof *by_off, cmp_tensor_offset);
    bool ok = true;
    for (uint64_t i = 1; i < f->n_tensors && ok; i++) {
        const gguf_tensor *a = by_off[i - 1], *b = by_off[i];
        if (b->offset - a->offset < a->nbytes) {
            set_where(r, "tensor", (uint64_t)(b - f->tensors), &b->name);
            char shown[128];
            printable(a->name, shown, sizeof shown);
            ok = fail(r, "data at offset %" PRIu64 " overlaps tensor %td '%s' (offset %" PRIu64
                         ", %" PRIu64 " bytes)",
                      b->offset, a - f->tensors, shown, a->offset, a->nbytes);
        }
    }
    elmi_free(by_off);
    return ok;
}

static bool place_tensors(reader *r, gguf_file *f) {
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            set_where(r, "tensor", i, &t->name);
            return fail(r, "data at offset %" PRIu64 " (%" PRIu64 " bytes) ends past the data "
                           "section of %" PRIu64 " bytes" TRUNCATED,
                        t->offset, t->nbytes, data_size);
        }
        t->data = f->base + f->data_offset + t->offset;
    }
    return true;
}

static bool parse_tensors(reader *r, gguf_file *f) {
    if (f->n_tensors > 0) {
        f->tensors = elmi_calloc((size_t)f->n_tensors, sizeof *f->tensors);
        f->tensor_by_name = elmi_malloc((size_t)f->n_tensors * sizeof *f->tensor_by_name);
        if (!f->tensors || !f->tensor_by_name) return fail_oom(r, "the tensor infos");
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!parse_tensor_info(r, &f->tensors[i], i, f->alignment)) return false;
    r->where[0] = '\0';
    /* The data section starts at the next multiple of the alignment; with no
     * tensors it may lie past the end of the file (vocabulary-only files). */
    uint64_t pad = (f->alignment - r->pos % f->alignment) % f->alignment;
    if (__builtin_add_overflow(r->pos, pad, &f->data_offset))
        return fail(r, "the data section offset overflows");
    if (f->n_tensors == 0) return true;
    if (f->data_offset > f->size)
        return fail(r, "the data section would start at offset %" PRIu64 " (the tensor infos "
                       "end at %" PRIu64 ", padded to %" PRIu32 "), past the end of the "
                       "file at %" PRIu64 TRUNCATED,
                    f->data_offset, r->pos, f->alignment, f->size);
    for (uint64_t i = 0; i < f->n_tensors; i++) f->tensor_by_name[i] = &f->tensors[i];
    qsort(f->tensor_by_name, (size_t)f->n_tensors, sizeof *f->tensor_by_name, cmp_tensor_name);
    return check_duplicate_names(r, f) && place_tensors(r, f) && check_overlaps(r, f);
}

/* ------------------------------------------------------------ open / close */

static elm_status parse(const uint8_t *data, uint64_t size, gguf_file **out, char *err,
                        size_t err_size) {
    gguf_file *f = elmi_calloc(1, sizeof *f);
    if (!f)
        return elmi_errorf(err, err_size, ELM_ERR_NO_MEMORY, "out of memory");
    f->base = data;
    f->size = size;
    reader r = {.p = data, .size = size, .status = ELM_OK, .err = err, .err_size = err_size};
    if (!parse_header(&r, f) || !parse_kvs(&r, f) || !read_alignment(&r, f) ||
        !parse_tensors(&r, f)) {
        elmi_gguf_close(f);
        return r.status;
    }
    *out = f;
    return ELM_OK;
}

elm_status elmi_gguf_open_memory(const void *data, size_t size, gguf_file **out, char *err,
                            size_t err_size) {
    if (!out)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no output pointer");
    *out = NULL;
    if (!data && size > 0)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no data");
    static const uint8_t empty[1];
    return parse(data ? data : empty, size, out, err, err_size);
}

static void errno_message(int e, char *buf, size_t cap) {
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "error %d", e);
}

elm_status elmi_gguf_open(const char *path, gguf_file **out, char *err, size_t err_size) {
    return elmi_gguf_open_checked(path, NULL, NULL, out, err, err_size);
}

elm_status elmi_gguf_open_checked(const char *path, elmi_gguf_check_fn check, void *ctx,
                                  gguf_file **out, char *err, size_t err_size) {
    if (!out || !path) {
        if (out) *out = NULL;
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no path or output pointer");
    }
    *out = NULL;
    char why[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno_message(errno, why, sizeof why);
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot open: %s", why);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return elmi_errorf(err, err_size, ELM_ERR_IO, "not a regular file");
    }
    if (st.st_size == 0) {
        close(fd);
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "the file is empty (0 bytes), too short for a GGUF header");
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return elmi_errorf(err, err_size, ELM_ERR_IO, "the file is too large to map");
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        errno_message(map_errno, why, sizeof why);
        return elmi_errorf(err, err_size, ELM_ERR_IO, "cannot map %zu bytes: %s", size, why);
    }
    elm_status s = check ? check(map, size, ctx, err, err_size) : ELM_OK;
    if (s == ELM_OK) s = parse(map, size, out, err, err_size);
    if (s != ELM_OK) {
        munmap(map, size);
        return s;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return ELM_OK;
}

void elmi_gguf_close(gguf_file *f) {
    if (!f) return;
    for (uint64_t i = 0; f->kvs && i < f->n_kv; i++) elmi_free(f->kvs[i].arr_strs);
    elmi_free(f->kvs);
    elmi_free(f->kv_by_key);
    elmi_free(f->tensors);
    elmi_free(f->tensor_by_name);
    if (f->map) munmap(f->map, f->map_size);
    elmi_free(f);
}

/* ------------------------------------------------------------ accessors */

uint32_t elmi_gguf_version(const gguf_file *f) { return f->version; }
uint64_t elmi_gguf_file_size(const gguf_file *f) { return f->size; }
uint32_t elmi_gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t elmi_gguf_data_offset(const gguf_file *f) { return f->data_offset; }
const void *elmi_gguf_base(const gguf_file *f) { return f->base; }
uint64_t elmi_gguf_n_kv(const gguf_file *f) { return f->n_kv; }
uint64_t elmi_gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *elmi_gguf_kv_at(const gguf_file *f, uint64_t i) {
    return i < f->n_kv ? &f->kvs[i] : NULL;
}

const gguf_tensor *elmi_gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

bool elmi_gguf_str_eq(gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

const gguf_kv *elmi_gguf_find(const gguf_file *f, const char *key) {
    if (!f || !key || f->n_kv == 0) return NULL;
    gguf_str k = {key, strlen(key)};
    size_t lo = 0, hi = (size_t)f->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(f->kv_by_key[mid]->key, k);
        if (c == 0) return f->kv_by_key[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *elmi_gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name || f->n_tensors == 0) return NULL;
    gguf_str k = {name, strlen(name)};
    size_t lo = 0, hi = (size_t)f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(f->tensor_by_name[mid]->name, k);
        if (c == 0) return f->tensor_by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------------ typed getters */

/* The pair for `key`: *kv is NULL (and ELM_OK) when it is absent and optional. */
static elm_status get_kv(const gguf_file *f, const char *key, bool required,
                         const gguf_kv **kv, char *err, size_t err_size) {
    *kv = NULL;
    if (!f || !key)
        return elmi_errorf(err, err_size, ELM_ERR_INVALID_ARG, "no file or key");
    *kv = elmi_gguf_find(f, key);
    if (!*kv && required)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "required key '%s' is missing", key);
    return ELM_OK;
}

static bool is_unsigned(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static bool is_signed(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

static elm_status wrong_type(const char *key, const gguf_kv *kv, const char *expected,
                             char *err, size_t err_size) {
    return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "key '%s' has type %s, expected %s", key,
                       elmi_gguf_type_name(kv->type), expected);
}

/* The integer value of kv within [lo, hi]. */
static elm_status get_int(const gguf_file *f, const char *key, bool required, int64_t lo,
                          int64_t hi, const char *target, int64_t *out, bool *found,
                          char *err, size_t err_size) {
    const gguf_kv *kv;
    elm_status s = get_kv(f, key, required, &kv, err, err_size);
    *found = kv != NULL;
    if (s != ELM_OK || !kv) return s;
    bool fits;
    if (is_unsigned(kv->type)) {
        fits = kv->v.u64 <= (uint64_t)hi;
        if (!fits)
            elmi_errorf(err, err_size, ELM_ERR_FORMAT, "key '%s' = %" PRIu64 " does not fit in %s",
                        key, kv->v.u64, target);
        *out = fits ? (int64_t)kv->v.u64 : 0;
    } else if (is_signed(kv->type)) {
        fits = kv->v.i64 >= lo && kv->v.i64 <= hi;
        if (!fits)
            elmi_errorf(err, err_size, ELM_ERR_FORMAT, "key '%s' = %" PRId64 " does not fit in %s",
                        key, kv->v.i64, target);
        *out = kv->v.i64;
    } else {
        return wrong_type(key, kv, "an integer", err, err_size);
    }
    return fits ? ELM_OK : ELM_ERR_FORMAT;
}

elm_status elmi_gguf_get_u32(const gguf_file *f, const char *key, bool required, uint32_t *out,
                        char *err, size_t err_size) {
    int64_t v;
    bool found;
    elm_status s = get_int(f, key, required, 0, UINT32_MAX, "uint32", &v, &found, err,
                           err_size);
    if (s == ELM_OK && found) *out = (uint32_t)v;
    return s;
}

elm_status elmi_gguf_get_i32(const gguf_file *f, const char *key, bool required, int32_t *out,
                        char *err, size_t err_size) {
    int64_t v;
    bool found;
    elm_status s = get_int(f, key, required, INT32_MIN, INT32_MAX, "int32", &v, &found, err,
                           err_size);
    if (s == ELM_OK && found) *out = (int32_t)v;
    return s;
}

elm_status elmi_gguf_get_f32(const gguf_file *f, const char *key, bool required, float *out,
                        char *err, size_t err_size) {
    const gguf_kv *kv;
    elm_status s = get_kv(f, key, required, &kv, err, err_size);
    if (s != ELM_OK || !kv) return s;
    if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
        return wrong_type(key, kv, "FLOAT32", err, err_size);
    if (isfinite(kv->v.f64) && fabs(kv->v.f64) > FLT_MAX)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "key '%s' = %g does not fit in float32",
                           key, kv->v.f64);
    *out = (float)kv->v.f64;
    return ELM_OK;
}

elm_status elmi_gguf_get_bool(const gguf_file *f, const char *key, bool required, bool *out,
                         char *err, size_t err_size) {
    const gguf_kv *kv;
    elm_status s = get_kv(f, key, required, &kv, err, err_size);
    if (s != ELM_OK || !kv) return s;
    if (kv->type != GGUF_TYPE_BOOL) return wrong_type(key, kv, "BOOL", err, err_size);
    *out = kv->v.b;
    return ELM_OK;
}

elm_status elmi_gguf_get_str(const gguf_file *f, const char *key, bool required, gguf_str *out,
                        char *err, size_t err_size) {
    const gguf_kv *kv;
    elm_status s = get_kv(f, key, required, &kv, err, err_size);
    if (s != ELM_OK || !kv) return s;
    if (kv->type != GGUF_TYPE_STRING) return wrong_type(key, kv, "STRING", err, err_size);
    *out = kv->v.str;
    return ELM_OK;
}

elm_status elmi_gguf_get_arr(const gguf_file *f, const char *key, bool required, gguf_type elem,
                        const gguf_kv **out, char *err, size_t err_size) {
    const gguf_kv *kv;
    elm_status s = get_kv(f, key, required, &kv, err, err_size);
    if (s != ELM_OK || !kv) return s;
    if (kv->type != GGUF_TYPE_ARRAY)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "key '%s' has type %s, expected an array of %s", key,
                           elmi_gguf_type_name(kv->type), elmi_gguf_type_name(elem));
    if (kv->arr_type != elem)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "key '%s' is an array of %s, expected an array of %s", key,
                           elmi_gguf_type_name(kv->arr_type), elmi_gguf_type_name(elem));
    *out = kv;
    return ELM_OK;
}
