/* bench_json.h: a small JSON reader for bench files (--compare, the
 * stored results). Strict RFC 8259, nesting limited to 64 levels. */
#ifndef ELM_BENCH_JSON_H
#define ELM_BENCH_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum bj_type { BJ_NULL, BJ_BOOL, BJ_NUMBER, BJ_STRING, BJ_ARRAY, BJ_OBJECT } bj_type;

typedef struct bj_value bj_value;
struct bj_value {
    bj_type type;
    bool boolean;
    double number;
    char *string; /* NUL-terminated UTF-8 */
    size_t n;     /* children of an array or object */
    bj_value *items;
    char **keys; /* objects: keys[i] names items[i] */
};

/* An owned tree (free with bj_free), or NULL with the reason in err. */
bj_value *bj_parse(const char *text, size_t len, char *err, size_t err_size);
bj_value *bj_parse_file(const char *path, char *err, size_t err_size);
void bj_free(bj_value *v);

/* NULL when v is not an object or lacks the key (the first one wins). */
const bj_value *bj_get(const bj_value *v, const char *key);
/* The string, or NULL. */
const char *bj_str(const bj_value *v);
/* The number, or fallback. */
double bj_num(const bj_value *v, double fallback);

#endif
