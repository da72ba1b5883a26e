/* json.h: a small strict JSON (RFC 8259) reader for test data. */
#ifndef ELM_TEST_JSON_H
#define ELM_TEST_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

typedef struct json_value json_value;

struct json_value {
    json_type type;
    bool boolean;
    double number;
    /* Strings: UTF-8, NUL-terminated; `len` counts bytes, since "\u0000" may
     * put a NUL inside. Arrays and objects: `len` children in `items`; for
     * objects `keys[i]` (NUL-terminated) names items[i]. */
    char *string;
    size_t len;
    json_value *items;
    char **keys;
};

/* Parses `len` bytes of `text`. Returns an owned tree (free with json_free),
 * or NULL with a message naming the byte offset in `err` (may be NULL). */
json_value *json_parse(const char *text, size_t len, char *err, size_t err_size);
/* Reads and parses a whole file; NULL on failure, with the reason in err. */
json_value *json_parse_file(const char *path, char *err, size_t err_size);
void json_free(json_value *v);

/* Lookups return NULL when `v` is NULL, of the wrong type, or lacks the
 * member, so they chain: json_get(json_get(root, "a"), "b"). When an object
 * repeats a key, the first occurrence wins. */
const json_value *json_get(const json_value *v, const char *key);
const json_value *json_at(const json_value *v, size_t i);
/* Children of an array or object; 0 for anything else. */
size_t json_len(const json_value *v);
/* Follows a path of object keys and array indices, e.g. "positions.3.top.0.1". */
const json_value *json_path(const json_value *v, const char *path);

bool json_is(const json_value *v, json_type type);
/* The number, or `fallback` when v is not a number. */
double json_num(const json_value *v, double fallback);
/* The string, or NULL when v is not a string. */
const char *json_str(const json_value *v);

#endif
