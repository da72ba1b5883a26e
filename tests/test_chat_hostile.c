/* test_chat_hostile.c: hostile and malformed chat templates each fail with a
 * clear ELM_ERR_TEMPLATE message, quickly, without crashing or leaking; and
 * every allocation of elm_chat_apply_template may fail (ELM_ERR_NO_MEMORY,
 * nothing leaked). Regressions found by fuzz_template are at the end. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgelm.h"

static const elm_chat_message conv[] = {{"system", "S"}, {"user", "Hi"}, {"assistant", "Hello"}};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Renders `t` (len bytes, may hold NULs: only what strlen sees counts). */
static elm_status render(const char *t, char *err, size_t err_size, size_t *len) {
    static char buf[1 << 16];
    return elm_chat_apply_template(NULL, t, conv, 3, NULL, buf, sizeof buf, len, err, err_size);
}

static void expect_error(const char *t, const char *needle) {
    char err[512] = "";
    size_t len;
    double t0 = now_s();
    elm_status st = render(t, err, sizeof err, &len);
    double dt = now_s() - t0;
    cr_expect_eq(st, ELM_ERR_TEMPLATE, "%.60s: status %s (%s)", t, elm_strerror(st), err);
    cr_expect(strstr(err, needle), "%.60s: message '%s' lacks '%s'", t, err, needle);
    cr_expect(dt < 10, "%.60s took %.1f s", t, dt);
    cr_expect_eq(elm_allocations_live(), 0);
}

static char *repeat(const char *a, int n, const char *mid, const char *b, int m) {
    size_t la = strlen(a), lb = strlen(b), lm = strlen(mid);
    char *s = malloc(la * (size_t)n + lb * (size_t)m + lm + 1), *p = s;
    for (int i = 0; i < n; i++, p += la) memcpy(p, a, la);
    memcpy(p, mid, lm);
    p += lm;
    for (int i = 0; i < m; i++, p += lb) memcpy(p, b, lb);
    *p = 0;
    return s;
}

Test(chat_hostile, deep_nesting) {
    char *t = repeat("{% if true %}", 5000, "x", "{% endif %}", 5000);
    expect_error(t, "nests deeper");
    free(t);
    t = repeat("(", 100000, "1", ")", 100000);
    char *w = malloc(strlen(t) + 8);
    sprintf(w, "{{ %s }}", t);
    expect_error(w, "nests deeper");
    free(w);
    free(t);
    t = repeat("[", 50000, "", "]", 50000);
    w = malloc(strlen(t) + 8);
    sprintf(w, "{{ %s }}", t);
    free(t);
    t = w;
    expect_error(t, "nests deeper");
    free(t);
    t = repeat("{{ ", 1, "", "not ", 50000);
    w = malloc(strlen(t) + 8);
    sprintf(w, "%s1 }}", t);
    free(t);
    t = w;
    expect_error(t, "nests deeper");
    free(t);
    t = repeat("{{ x", 1, "", "|trim", 100000);
    expect_error(t, "");
    free(t);
}

Test(chat_hostile, long_loops) {
    expect_error("{% for i in range(10**9) %}x{% endfor %}", "range()");
    expect_error("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}",
                 "limit");
    expect_error("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", "limit");
    expect_error("{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% if b is odd %}{% continue %}{% endif %}"
                 "{% endfor %}{% endfor %}", "work limit");
    expect_error("{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% for j in range(100000) %}{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}",
                 "limit");
}

Test(chat_hostile, huge_output) {
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "limit");
    expect_error("{{ 'x' * 1000000000 }}", "limit");
    expect_error("{{ [1] * 1000000000 }}", "limit");
    expect_error("{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", "limit");
    expect_error("{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "limit");
}

Test(chat_hostile, recursion) {
    expect_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recurses deeper");
    expect_error("{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(1) }}", "recurses deeper");
    expect_error("{% macro f(n) %}{% for i in range(10) %}{{ f(n + 1) }}{% endfor %}{% endmacro %}{{ f(0) }}", "");
}

/* The % operator, center, call blocks and macros with varargs: widths,
 * repetitions and recursion stay within the limits. */
Test(chat_hostile, new_features_bounded) {
    expect_error("{{ '%999999999999d' % 1 }}", "too big");
    expect_error("{{ '%.*f' % (999999999, 1.0) }}", "too big");
    expect_error("{% for i in range(100000) %}{{ '%99999s' % 'x' }}{% endfor %}", "limit");
    expect_error("{% for i in range(100000) %}{{ '%.99999f' % 1e300 }}{% endfor %}", "limit");
    expect_error("{{ 'x'|center(1000000000) }}", "out of range");
    expect_error("{% for i in range(100000) %}{{ 'x'|center(8000000) }}{% endfor %}", "limit");
    expect_error("{% macro f() %}{% call f() %}x{% endcall %}{{ caller() }}{% endmacro %}{% call f() %}y{% endcall %}", "recurses deeper");
    expect_error("{% macro f() %}{{ caller() }}{% endmacro %}{% macro g() %}{% call f() %}{{ g() }}{% endcall %}{% endmacro %}{{ g() }}", "recurses deeper");
    expect_error("{% macro f() %}{{ f(*varargs) }}{% endmacro %}{{ f() }}", "unsupported");
    expect_error("{% macro f() %}{{ f(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) ~ varargs|length }}{% endmacro %}{{ f() }}", "recurses deeper");
    expect_error("{{ ('%s' * 100000) % (range(100000)|list) }}", "not enough arguments"); /* a list is one argument */
    char *t = repeat("{{ '", 1, "", "%(", 200000), *w = malloc(strlen(t) + 16);
    sprintf(w, "%s' %% {} }}", t);
    expect_error(w, "incomplete format key");
    free(w);
    free(t);
    t = repeat("{{ '", 1, "", "%(a)s", 200000);
    w = malloc(strlen(t) + 32);
    sprintf(w, "%s' %% {'a': 'xyz'} }}", t);
    char err[512] = "";
    size_t len;
    double t0 = now_s();
    cr_expect_eq(render(w, err, sizeof err, &len), ELM_ERR_BUFFER_TOO_SMALL, "%s", err);
    cr_expect_eq(len, 600000);
    cr_expect(now_s() - t0 < 2, "200000 keyed conversions took %.1f s", now_s() - t0);
    free(w);
    free(t);
}

Test(chat_hostile, malformed) {
    static const char *const bad[] = {
        "{{", "{{ 'abc", "{%", "{% for %}", "{% for x in %}{% endfor %}", "{% endfor %}", "{% if %}",
        "{#", "{{ 1 +* 2 }}", "{{ a. }}", "{{ a[ }}", "{{ f( }}", "{% set %}", "{% set x = %}",
        "{% macro %}", "{% macro f( %}{% endmacro %}", "{% else %}", "{% if 1 %}{% endfor %}",
        "{% for x in y %}{% endif %}", "{{ x | }}", "{{ x is }}", "{% break %}", "{% raw %}x{% endraw %}",
        "{{ 99999999999999999999999 }}", "{{ 'a' @ 1 }}", "{% filter %}{% endfilter %}",
        "{{ {1: } }}", "{{ x[1:2:3:4] }}", "{% set a.b.c = 1 %}", "{{ 9223372036854775807 + 1 }}",
        "{{ -9223372036854775807 - 2 }}", "{{ 2 ** 64 }}", "{{ 1 // 0 }}", "{{ 1 % 0 }}",
        "{{ '%' % 1 }}", "{{ '%(a' % {} }}", "{{ '%*d' % ('x', 1) }}", "{{ '%c' % -1 }}", "{{ '%d' % (1/0) }}",
        "{% call %}{% endcall %}", "{% call x %}{% endcall %}", "{% call m() %}", "{% call(a m() %}{% endcall %}",
        "{% call undefined_macro() %}x{% endcall %}", "{% for i in [1] %}{{ loop.cycle }}{% endfor %}",
        "{{ [1][::0] }}", "{{ [1, 2, 3][1::9223372036854775807] }}", "{{ [1, 2, 3][::-9223372036854775807 - 1] }}", "{{ 'a' < 1 }}", "{{ none.x.y }}", "{{ messages[0].content.x.y }}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[512] = "";
        size_t len;
        elm_status st = render(bad[i], err, sizeof err, &len);
        if (st == ELM_OK) continue; /* a few are valid Jinja (undefined values print empty) */
        cr_expect_eq(st, ELM_ERR_TEMPLATE, "%s: %s", bad[i], elm_strerror(st));
        cr_expect(err[0], "%s: no message", bad[i]);
    }
    cr_expect_eq(elm_allocations_live(), 0);
}

Test(chat_hostile, too_small_error_buffer) {
    char err[8];
    size_t len;
    cr_assert_eq(render("{{ raise_exception('a long message that does not fit') }}", err, sizeof err, &len), ELM_ERR_TEMPLATE);
    cr_assert_str_eq(err, "a long ");
    cr_assert_eq(render("{{ raise_exception('x') }}", NULL, 0, &len), ELM_ERR_TEMPLATE);
}

/* ------------------------------------------------------ allocation failure */

static atomic_long n_allocs, fail_at;
static atomic_bool fail_hit;

static bool should_fail(void) {
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (atomic_load(&fail_at) == 0 || k != atomic_load(&fail_at)) return false;
    atomic_store(&fail_hit, true);
    return true;
}
static void *fa_malloc(void *user, size_t size) {
    (void)user;
    return should_fail() ? NULL : malloc(size);
}
static void *fa_realloc(void *user, void *ptr, size_t size) {
    (void)user;
    return should_fail() ? NULL : realloc(ptr, size);
}
static void fa_free(void *user, void *ptr) {
    (void)user;
    free(ptr);
}

Test(chat_hostile, allocation_failures) {
    elm_allocator a = {sizeof a, fa_malloc, fa_realloc, fa_free, NULL};
    cr_assert_eq(elm_set_allocator(&a), ELM_OK);
    /* Big enough to need several arena chunks. */
    const char *t = "{% set ns = namespace(s='') %}{% for m in messages %}{% for i in range(300) %}"
                    "{% set ns.s = ns.s ~ m.content ~ i %}{% endfor %}{{ m.role|upper }}{% endfor %}{{ ns.s|length }}"
                    "{{ {'a': [1, 2]}|tojson }}";
    long k = 1;
    for (;; k++) {
        atomic_store(&fail_hit, false);
        atomic_store(&n_allocs, 0);
        atomic_store(&fail_at, k);
        char buf[4096], err[256] = "";
        size_t len;
        elm_status st = elm_chat_apply_template(NULL, t, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err);
        bool hit = atomic_load(&fail_hit);
        atomic_store(&fail_at, 0);
        cr_assert_eq(elm_allocations_live(), 0, "k=%ld: leaked", k);
        if (!hit) {
            cr_assert_eq(st, ELM_OK, "k=%ld: %s", k, err);
            break;
        }
        cr_assert_eq(st, ELM_ERR_NO_MEMORY, "k=%ld: %s (%s)", k, elm_strerror(st), err);
        cr_assert(err[0], "k=%ld: no message", k);
    }
    fprintf(stderr, "elm_chat_apply_template: %ld allocation points\n", k - 1);
    cr_assert(k > 3);
    cr_assert_eq(elm_set_allocator(NULL), ELM_OK);
}

/* ------------------------------------------------- fuzz_template findings */

/* A backslash at the very end of an unterminated string literal looped,
 * appending backslashes until the output limit (fuzz_template slow unit). */
Test(chat_hostile, fuzz_backslash_at_end_of_source) {
    double t0 = now_s();
    expect_error("{{ '<|im_sd|>\\", "unterminated string");
    expect_error("{{ \"\\", "unterminated string");
    cr_expect(now_s() - t0 < 1.0, "took %.2f s", now_s() - t0);
}

/* Huge slice steps overflowed the index (undefined behaviour); now the loop
 * stops before passing the end. */
Test(chat_hostile, huge_slice_steps) {
    static char buf[256];
    char err[256];
    size_t len;
    const char *t = "{{ [1, 2, 3][1::9223372036854775807] }}{{ [1, 2, 3][::-9223372036854775807 - 1] }}{{ 'abc'[::-2] }}";
    cr_assert_eq(elm_chat_apply_template(NULL, t, conv, 3, NULL, buf, sizeof buf, &len, err, sizeof err), ELM_OK, "%s", err);
    cr_assert_str_eq(buf, "[2][3]ca");
}

/* raise_exception('') (or a message starting with a NUL) left the error
 * message empty (fuzz_template crash-8dc062c8...). */
Test(chat_hostile, fuzz_empty_raise_message) {
    expect_error("{{ raise_exception('') }}", "raise_exception() with an empty message");
    expect_error("{{ raise_exception('\\x00abc') }}", "raise_exception() with an empty message");
}

/* A number with more than 60 characters before an exponent stopped the lexer
 * from advancing (fuzz_template timeout-202e71c6...). */
Test(chat_hostile, fuzz_long_number_with_exponent) {
    char t[512];
    char digits[301];
    memset(digits, '8', 300);
    digits[300] = 0;
    snprintf(t, sizeof t, "{{ 7%se+30 }}{{ 1e+++5 }}", digits);
    char err[256] = "";
    size_t len;
    double t0 = now_s();
    elm_status st = render(t, err, sizeof err, &len);
    cr_expect(st == ELM_OK || st == ELM_ERR_TEMPLATE, "%s", elm_strerror(st));
    cr_expect(now_s() - t0 < 1.0);
    expect_error("{{ 1e+++ }}", "expected");
}
