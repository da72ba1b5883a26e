/* bench_compare.c: `edgelm bench --compare OLD.json NEW.json`: the ratio
 * new/old of every figure of the rows the two files share. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_internal.h"
#include "bench/bench_json.h"

/* What identifies a row: the keys it is matched on. */
typedef struct row_kind {
    const char *array;       /* "results" or "ops" */
    const char *const *keys; /* match keys, NULL-terminated */
} row_kind;

static const char *const RESULT_KEYS[] = {"device", "model",     "n_prompt",
                                          "n_gen",  "n_threads", NULL};
static const char *const OP_KEYS[] = {"device", "op", "type", "rows", "cols", NULL};

static bool is_key(const row_kind *k, const char *name) {
    for (const char *const *p = k->keys; *p; p++)
        if (!strcmp(*p, name)) return true;
    return false;
}

static bool same_value(const bj_value *a, const bj_value *b) {
    if (!a || !b || a->type != b->type) return false;
    if (a->type == BJ_STRING) return !strcmp(a->string, b->string);
    if (a->type == BJ_NUMBER) return a->number == b->number;
    return a->type == BJ_BOOL ? a->boolean == b->boolean : a->type == BJ_NULL;
}

static const bj_value *find_match(const row_kind *k, const bj_value *rows, const bj_value *row) {
    for (size_t i = 0; rows && i < rows->n; i++) {
        bool all = true;
        for (const char *const *p = k->keys; *p && all; p++)
            all = same_value(bj_get(&rows->items[i], *p), bj_get(row, *p));
        if (all) return &rows->items[i];
    }
    return NULL;
}

static void put_key_value(FILE *out, const bj_value *v) {
    if (!v)
        fputs("?", out);
    else if (v->type == BJ_STRING)
        fputs(v->string, out);
    else if (v->type == BJ_NUMBER)
        fprintf(out, "%.10g", v->number);
    else
        fputs("-", out);
}

static void put_row_keys(FILE *out, const row_kind *k, const bj_value *row) {
    for (const char *const *p = k->keys; *p; p++) {
        fputs("| ", out);
        put_key_value(out, bj_get(row, *p));
        fputc(' ', out);
    }
}

/* Byte counts in full, other figures to 6 digits. */
static void put_number(FILE *out, double v) {
    if (v == floor(v) && fabs(v) < 1e15)
        fprintf(out, "%.0f", v);
    else
        fprintf(out, "%.6g", v);
}

static void put_ratio(FILE *out, double o, double n) {
    if (o == n)
        fputs("1.00", out);
    else if (o == 0 || !isfinite(o) || !isfinite(n))
        fputs("n/a", out);
    else
        fprintf(out, "%.2f", n / o);
}

/* One line per figure the two rows share. */
static void compare_rows(FILE *out, const row_kind *k, const bj_value *o, const bj_value *n) {
    for (size_t i = 0; i < n->n; i++) {
        const char *name = n->keys[i];
        const bj_value *nv = &n->items[i], *ov = bj_get(o, name);
        if (is_key(k, name) || !ov || nv->type != ov->type) continue;
        if (nv->type != BJ_NUMBER && nv->type != BJ_BOOL) continue;
        put_row_keys(out, k, n);
        fprintf(out, "| %s | ", name);
        if (nv->type == BJ_BOOL) {
            fprintf(out, "%s | %s | %s |\n", ov->boolean ? "true" : "false",
                    nv->boolean ? "true" : "false",
                    ov->boolean == nv->boolean ? "same" : "changed");
            continue;
        }
        put_number(out, ov->number);
        fputs(" | ", out);
        put_number(out, nv->number);
        fputs(" | ", out);
        put_ratio(out, ov->number, nv->number);
        fputs(" |\n", out);
    }
}

static void header(FILE *out, const row_kind *k) {
    for (const char *const *p = k->keys; *p; p++) fprintf(out, "| %s ", *p);
    fputs("| figure | old | new | new/old |\n", out);
    for (const char *const *p = k->keys; *p; p++) fputs("|---", out);
    fputs("|---|---:|---:|---:|\n", out);
}

/* Compares one kind of row; returns the number of matched rows. */
static size_t compare_kind(FILE *out, const row_kind *k, const bj_value *old_root,
                           const bj_value *new_root) {
    const bj_value *olds = bj_get(old_root, k->array), *news = bj_get(new_root, k->array);
    if (!news || news->type != BJ_ARRAY || !olds || olds->type != BJ_ARRAY) return 0;
    size_t matched = 0;
    for (size_t i = 0; i < news->n; i++) {
        const bj_value *row = &news->items[i], *o = find_match(k, olds, row);
        if (!o || row->type != BJ_OBJECT) continue;
        if (matched++ == 0) header(out, k);
        compare_rows(out, k, o, row);
    }
    for (int side = 0; side < 2; side++) {
        const bj_value *a = side ? olds : news, *b = side ? news : olds;
        for (size_t i = 0; i < a->n; i++) {
            if (find_match(k, b, &a->items[i])) continue;
            fprintf(out, "\nonly in %s:", side ? "OLD" : "NEW");
            for (const char *const *p = k->keys; *p; p++) {
                fputc(' ', out);
                put_key_value(out, bj_get(&a->items[i], *p));
            }
        }
    }
    fputc('\n', out);
    return matched;
}

int bench_compare(const char *old_path, const char *new_path, FILE *out) {
    char err[256];
    bj_value *o = bj_parse_file(old_path, err, sizeof err);
    if (!o) {
        fprintf(stderr, "edgelm bench --compare: %s: %s\n", old_path, err);
        return 1;
    }
    bj_value *n = bj_parse_file(new_path, err, sizeof err);
    if (!n) {
        fprintf(stderr, "edgelm bench --compare: %s: %s\n", new_path, err);
        bj_free(o);
        return 1;
    }
    fprintf(out, "Ratios new/old: OLD = %s, NEW = %s\n\n", old_path, new_path);
    static const row_kind kinds[] = {{"results", RESULT_KEYS}, {"ops", OP_KEYS}};
    size_t matched = 0;
    for (size_t i = 0; i < 2; i++) matched += compare_kind(out, &kinds[i], o, n);
    bj_free(o);
    bj_free(n);
    if (matched == 0) {
        fprintf(stderr, "edgelm bench --compare: the files share no row (matched on device, "
                        "model, n_prompt, n_gen, n_threads; or device, op, type, rows, cols)\n");
        return 1;
    }
    return 0;
}
