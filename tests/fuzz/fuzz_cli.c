/*
 * fuzz_cli.c: libFuzzer target for the CLI's parsing (tools/cli_parse.c).
 * fuzz-srcs: tools/cli_parse.c
 * fuzz-options: -max_len=512 -close_fd_mask=3
 *
 * The first byte picks what the rest feeds: the strict number parsers, the
 * token-id list parser of `edgelm eval --tokens`, or cli_parse with an option
 * table of every kind (the rest split at NUL bytes into argv). Besides
 * crashes it checks each parser against an independent statement of what it
 * accepts: integers are exactly [+-]?[0-9]+ in range, id lists exactly
 * [0-9]+(,[0-9]+)*, and an accepted option table holds only values in range.
 * The usage messages go to stdout/stderr, closed by -close_fd_mask=3.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli_parse.h"

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c)) {                                                                               \
            fprintf(stderr, "fuzz_cli: %s:%d: check failed: %s\n", __FILE__, __LINE__, #c);     \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* The value of [sign]digits, computed independently; false when it does not
 * fit (magnitude above max_pos for '+', above max_neg for '-'). */
static bool decimal(const char *s, bool allow_minus, unsigned long long max_pos,
                    unsigned long long max_neg, bool *neg, unsigned long long *mag) {
    *neg = false;
    if (*s == '+' || (allow_minus && *s == '-')) *neg = *s++ == '-';
    if (!*s) return false;
    unsigned long long m = 0, lim = *neg ? max_neg : max_pos;
    for (; *s; s++) {
        if (!is_digit(*s)) return false;
        unsigned d = (unsigned)(*s - '0');
        if (m > (lim - d) / 10) return false;
        m = m * 10 + d;
    }
    *mag = m;
    return true;
}

static void check_numbers(const char *s) {
    long long i;
    bool neg;
    unsigned long long mag;
    bool want = decimal(s, true, LLONG_MAX, (unsigned long long)LLONG_MAX + 1, &neg, &mag);
    CHECK(elmi_parse_i64(s, &i) == want);
    if (want) CHECK(neg ? (unsigned long long)-(i + 1) + 1 == mag : (unsigned long long)i == mag);

    uint64_t u;
    want = decimal(s, false, ULLONG_MAX, 0, &neg, &mag);
    CHECK(elmi_parse_u64(s, &u) == want);
    if (want) CHECK(u == mag);

    double d;
    if (elmi_parse_double(s, &d)) {
        CHECK(isfinite(d));
        /* It starts like a number and is one number: no blank, no "inf"/"nan". */
        CHECK(is_digit(s[0]) || s[0] == '.' || s[0] == '+' || s[0] == '-');
        for (const char *p = s; *p; p++) CHECK(*p != ' ' && *p != '\t' && *p != '\n');
        char *end;
        errno = 0;
        double again = strtod(s, &end);
        CHECK(*end == 0 && again == d);
    }
}

static void check_ids(const char *s) {
    uint64_t *ids = NULL;
    size_t n = 0;
    char bad = 0;
    elmi_ids_status st = elmi_parse_ids(s, &ids, &n, &bad);
    /* Walk the grammar [0-9]+(,[0-9]+)* independently. */
    size_t k = 0;
    const char *p = s;
    elmi_ids_status want = ELMI_IDS_OK;
    char want_bad = 0;
    for (;;) {
        if (!is_digit(*p)) {
            want = ELMI_IDS_NOT_AN_ID;
            break;
        }
        const char *q = p;
        while (is_digit(*q)) q++;
        const char *first = p; /* the first significant digit (or the last zero) */
        while (first + 1 < q && *first == '0') first++;
        if (st == ELMI_IDS_OK) {
            CHECK(k < n);
            /* Exact up to UINT32_MAX; larger ids must stay larger. */
            bool neg;
            unsigned long long mag;
            char digits[32];
            size_t len = (size_t)(q - first);
            if (len < sizeof digits) {
                memcpy(digits, first, len);
                digits[len] = 0;
            }
            if (len < sizeof digits && decimal(digits, false, UINT32_MAX, 0, &neg, &mag))
                CHECK(ids[k] == mag);
            else
                CHECK(ids[k] > UINT32_MAX);
        }
        k++;
        p = q;
        if (*p == 0) break;
        if (*p != ',') {
            want = ELMI_IDS_UNEXPECTED;
            want_bad = *p;
            break;
        }
        p++;
    }
    CHECK(st == want || st == ELMI_IDS_NO_MEMORY);
    if (st == ELMI_IDS_OK) CHECK(n == k && n >= 1);
    if (st == ELMI_IDS_UNEXPECTED) CHECK(bad == want_bad);
    if (st != ELMI_IDS_OK) CHECK(ids == NULL && n == 0);
    free(ids);
}

/* An option table with every kind, ranged and not, and a required option. */
typedef struct opts {
    const char *model, *prompt, *device;
    int32_t n_predict, top_k, threads;
    uint32_t n_ctx;
    uint64_t seed;
    float temp, top_p;
    bool exact, pin;
} opts;

/* NULL, or a pointer into one of the arguments (values are borrowed). */
static bool in_argv(const char *s, char **argv, int argc) {
    if (!s) return true;
    for (int i = 1; i < argc; i++)
        if (s >= argv[i] && s <= argv[i] + strlen(argv[i])) return true;
    return false;
}

static void check_parse(char **argv, int argc) {
    opts o = {.n_predict = 128, .top_k = 40, .seed = 7, .temp = 0.8f, .top_p = 0.95f};
    const cli_opt table[] = {
        CLI_REQ("-m", "--model", CLI_STR, &o.model, "FILE", "model"),
        CLI_OPT("-p", "--prompt", CLI_STR, &o.prompt, "TEXT", "prompt"),
        CLI_NUM("-n", "--n-predict", CLI_INT, &o.n_predict, "N", "tokens", -1, INT32_MAX),
        CLI_NUM(NULL, "--temp", CLI_FLOAT, &o.temp, "T", "temperature", 0, 1e6),
        CLI_NUM(NULL, "--top-k", CLI_INT, &o.top_k, "K", "top-k", 0, INT32_MAX),
        CLI_NUM(NULL, "--top-p", CLI_FLOAT, &o.top_p, "P", "top-p", 0, 1),
        CLI_OPT(NULL, "--seed", CLI_U64, &o.seed, "S", "seed"),
        CLI_OPT("-t", "--threads", CLI_INT, &o.threads, "N", "threads"),
        CLI_OPT("-c", "--ctx-size", CLI_U32, &o.n_ctx, "N", "context"),
        CLI_OPT(NULL, "--exact", CLI_FLAG, &o.exact, NULL, "exact"),
        CLI_OPT(NULL, "--pin", CLI_FLAG, &o.pin, NULL, "pin"),
        CLI_OPT(NULL, "--device", CLI_STR, &o.device, "DEV", "device"),
        {0},
    };
    const cli_spec spec = {"fuzz", "-m FILE [options]", "A table of every kind.", table};
    int status = -12345;
    if (cli_parse(&spec, argc, argv, &status)) {
        CHECK(status == -12345);
        CHECK(o.model != NULL);
        CHECK(o.n_predict >= -1 && o.top_k >= 0);
        CHECK(o.temp >= 0 && o.temp <= 1e6f && o.top_p >= 0 && o.top_p <= 1);
        CHECK(in_argv(o.model, argv, argc) && in_argv(o.prompt, argv, argc) &&
              in_argv(o.device, argv, argc));
    } else {
        CHECK(status == CLI_OK || status == CLI_USAGE);
    }
}

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    char *text = malloc(size); /* the rest, NUL-terminated */
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    switch (data[0] % 3) {
    case 0: check_numbers(text); break;
    case 1: check_ids(text); break;
    default: {
        char *argv[MAX_ARGS + 1] = {"fuzz"};
        int argc = 1;
        for (char *p = text; p < text + size - 1 && argc < MAX_ARGS; p += strlen(p) + 1)
            argv[argc++] = p;
        argv[argc] = NULL;
        check_parse(argv, argc);
    }
    }
    free(text);
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes seeds into argv[1]. */
static int seed(const char *dir, int i, const char *bytes, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed%02d", dir, i);
    FILE *f = fopen(path, "wb");
    return f && fwrite(bytes, 1, n, f) == n && fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
#define S(x) x, sizeof x - 1
    static const struct {
        const char *s;
        size_t n;
    } seeds[] = {
        {S("\0" "123")}, {S("\0" "-9223372036854775808")}, {S("\0" "18446744073709551615")},
        {S("\0" "+0.5e-3")}, {S("\0" ".5")}, {S("\0" "1e309")}, {S("\0" "0x1p3")},
        {S("\1" "1,450,2030,4477")}, {S("\1" "0")}, {S("\1" "4294967296,99999999999999999999")},
        {S("\1" "1,,2")}, {S("\1" "1;2")},
        {S("\2" "-m\0model.gguf\0-p\0Hello\0-n\0" "64\0--temp=0.7\0--top-k\0" "40")},
        {S("\2" "--model=x\0--top-p\0" "1\0--seed\0" "18446744073709551615\0-c\0" "4096\0--exact")},
        {S("\2" "-m\0x\0--pin=1\0--unknown\0-")}, {S("\2" "--help")}, {S("\2" "-m")},
    };
#undef S
    int rc = 0;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        rc |= seed(argv[1], (int)i, seeds[i].s, seeds[i].n);
    return rc;
}
#endif
