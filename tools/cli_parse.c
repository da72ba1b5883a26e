/*
 * cli_parse.c: the pure parsing half of the CLI: strict numbers, the
 * table-driven option parser with its help and usage messages, and token-id
 * lists. It uses no library function, so tests/fuzz/fuzz_cli.c links it alone.
 */
#include "tools/cli_parse.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- messages */

static void vreport(const char *what, const char *fmt, va_list ap) {
    fprintf(stderr, "edgelm: %s: ", what);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void print_usage_line(FILE *f, const cli_spec *spec) {
    fprintf(f, "usage: edgelm %s %s\n", spec->name, spec->synopsis);
}

int cli_usage_error(const cli_spec *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(spec->name, fmt, ap);
    va_end(ap);
    print_usage_line(stderr, spec);
    fprintf(stderr, "Try 'edgelm help %s' for the options.\n", spec->name);
    return CLI_USAGE;
}

int cli_error(const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(what, fmt, ap);
    va_end(ap);
    return CLI_ERROR;
}

/* ---------------------------------------------------------------- help */

/* The value an option holds before parsing is its default. */
static void format_default(const cli_opt *o, char *out, size_t cap) {
    out[0] = 0;
    switch (o->kind) {
    case CLI_INT: snprintf(out, cap, " (default %d)", (int)*(const int32_t *)o->dst); break;
    case CLI_U32: snprintf(out, cap, " (default %u)", (unsigned)*(const uint32_t *)o->dst); break;
    case CLI_U64:
        snprintf(out, cap, " (default %llu)", (unsigned long long)*(const uint64_t *)o->dst);
        break;
    case CLI_FLOAT: snprintf(out, cap, " (default %g)", *(const float *)o->dst); break;
    default: break;
    }
}

static void print_help(const cli_spec *spec) {
    print_usage_line(stdout, spec);
    printf("\n%s\n\noptions:\n", spec->about);
    for (const cli_opt *o = spec->opts; o->lng; o++) {
        char left[64], dflt[48];
        snprintf(left, sizeof left, "%s%s%s%s%s", o->shrt ? o->shrt : "", o->shrt ? ", " : "    ",
                 o->lng, o->arg ? " " : "", o->arg ? o->arg : "");
        format_default(o, dflt, sizeof dflt);
        printf("  %-24s %s%s\n", left, o->help, o->required ? " (required)" : dflt);
    }
    printf("  %-24s %s\n", "-h, --help", "show this help");
}

/* -------------------------------------------------------------- numbers */

/* strtol and friends skip leading blanks and accept signs where we do
 * not want them; insist that the text starts like a number. */
static bool starts_numeric(const char *s, bool allow_minus) {
    if (*s == '-' && !allow_minus) return false;
    if (*s == '-' || *s == '+') s++;
    return isdigit((unsigned char)*s) || (*s == '.' && isdigit((unsigned char)s[1]));
}

bool elmi_parse_i64(const char *s, long long *out) {
    if (!starts_numeric(s, true)) return false;
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno == 0 && *end == 0;
}

bool elmi_parse_u64(const char *s, uint64_t *out) {
    if (!starts_numeric(s, false)) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    *out = v;
    return errno == 0 && *end == 0;
}

bool elmi_parse_double(const char *s, double *out) {
    if (!starts_numeric(s, true)) return false;
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && *end == 0 && isfinite(*out);
}

static void natural_range(cli_kind k, double *lo, double *hi) {
    switch (k) {
    case CLI_INT: *lo = INT32_MIN, *hi = INT32_MAX; break;
    case CLI_U32: *lo = 0, *hi = UINT32_MAX; break;
    case CLI_FLOAT: *lo = -FLT_MAX, *hi = FLT_MAX; break;
    default: *lo = 0, *hi = 0; break;
    }
}

/* Stores `val` into o->dst; false when it is not a valid value. */
static bool store_number(const cli_opt *o, const char *val) {
    double lo, hi, d;
    natural_range(o->kind, &lo, &hi);
    bool ranged = o->min != 0 || o->max != 0;
    if (ranged) lo = o->min, hi = o->max;
    if (o->kind == CLI_U64) {
        uint64_t u;
        if (!elmi_parse_u64(val, &u) || (ranged && ((double)u < lo || (double)u > hi))) return false;
        *(uint64_t *)o->dst = u;
        return true;
    }
    if (o->kind == CLI_FLOAT) {
        if (!elmi_parse_double(val, &d)) return false;
    } else {
        long long v;
        if (!elmi_parse_i64(val, &v)) return false;
        d = (double)v;
    }
    if (d < lo || d > hi) return false;
    if (o->kind == CLI_INT)
        *(int32_t *)o->dst = (int32_t)d;
    else if (o->kind == CLI_U32)
        *(uint32_t *)o->dst = (uint32_t)d;
    else
        *(float *)o->dst = (float)d;
    return true;
}

static int bad_value(const cli_spec *spec, const cli_opt *o, const char *val) {
    double lo, hi;
    natural_range(o->kind, &lo, &hi);
    if (o->min != 0 || o->max != 0) lo = o->min, hi = o->max;
    if (o->kind == CLI_U64)
        return cli_usage_error(spec, "invalid value '%s' for %s (expected an integer >= 0)", val,
                               o->lng);
    if (o->kind == CLI_FLOAT)
        return cli_usage_error(spec, "invalid value '%s' for %s (expected a number in [%g, %g])",
                               val, o->lng, lo, hi);
    return cli_usage_error(spec, "invalid value '%s' for %s (expected an integer in [%.0f, %.0f])",
                           val, o->lng, lo, hi);
}

/* --------------------------------------------------------------- parser */

static const cli_opt *find_opt(const cli_spec *spec, const char *name, size_t len) {
    for (const cli_opt *o = spec->opts; o->lng; o++) {
        if (strlen(o->lng) == len && strncmp(o->lng, name, len) == 0) return o;
        if (o->shrt && strlen(o->shrt) == len && strncmp(o->shrt, name, len) == 0) return o;
    }
    return NULL;
}

/* Handles argv[*i]; returns -1 to go on, else the exit status. */
static int parse_one(const cli_spec *spec, int argc, char **argv, int *i, bool *seen) {
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        print_help(spec);
        return CLI_OK;
    }
    if (a[0] != '-' || a[1] == 0) return cli_usage_error(spec, "unexpected argument '%s'", a);
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    const cli_opt *o = find_opt(spec, a, len);
    if (!o) return cli_usage_error(spec, "unknown option '%.*s'", (int)len, a);
    seen[o - spec->opts] = true;
    if (o->kind == CLI_FLAG) {
        if (eq) return cli_usage_error(spec, "%s takes no value", o->lng);
        *(bool *)o->dst = true;
        return -1;
    }
    const char *val = eq ? eq + 1 : NULL;
    if (!val) {
        if (*i + 1 >= argc) return cli_usage_error(spec, "%s needs a value (%s)", o->lng, o->arg);
        val = argv[++*i];
    }
    if (o->kind == CLI_STR) {
        *(const char **)o->dst = val;
        return -1;
    }
    return store_number(o, val) ? -1 : bad_value(spec, o, val);
}

bool cli_parse(const cli_spec *spec, int argc, char **argv, int *status) {
    size_t n = 0;
    while (spec->opts[n].lng) n++;
    bool seen[64] = {0};
    if (n > sizeof seen) {
        *status = cli_error(spec->name, "internal error: too many options");
        return false;
    }
    for (int i = 1; i < argc; i++) {
        int st = parse_one(spec, argc, argv, &i, seen);
        if (st >= 0) {
            *status = st;
            return false;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const cli_opt *o = &spec->opts[k];
        if (o->required && !seen[k]) {
            *status = cli_usage_error(spec, "missing %s %s", o->shrt ? o->shrt : o->lng, o->arg);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ token ids */

elmi_ids_status elmi_parse_ids(const char *text, uint64_t **out, size_t *n, char *bad) {
    size_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    uint64_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return ELMI_IDS_NO_MEMORY;
    size_t k = 0;
    for (const char *p = text;; p++) {
        if (*p < '0' || *p > '9') {
            free(ids);
            return ELMI_IDS_NOT_AN_ID;
        }
        uint64_t v = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            v = v > UINT32_MAX ? UINT64_MAX : v * 10 + (uint64_t)(*p - '0');
        ids[k++] = v;
        if (*p == 0) break;
        if (*p != ',') {
            free(ids);
            *bad = *p;
            return ELMI_IDS_UNEXPECTED;
        }
    }
    *out = ids;
    *n = k;
    return ELMI_IDS_OK;
}
