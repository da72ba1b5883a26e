/*
 * test_tokenizer_pre.c: the byte-level BPE pre-tokenizers (tokenizer.ggml.pre).
 *
 * The expected splits below are worked out by hand from each family's
 * regexes (written out in tokenizer_pre.c, from the families' tokenizer.json
 * and llama.cpp's llama-vocab.cpp): the first regex cuts the text into its
 * matches and the gaps between them, each later one cuts every piece again.
 * python_regex_agrees checks a wider set of strings against an independent
 * implementation of that rule on Python's `regex` module, when installed.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "edgelm.h"
#include "engine/tokenizer.h"
#include "engine/unicode.h"
#include "support/paths.h"

/* Every supported name; "" is a file without tokenizer.ggml.pre. */
static const char *const all_names[] = {
    "",          "default",   "gpt-2",          "phi-2",          "mpt",          "olmo",
    "llama-bpe", "llama3",    "llama-v3",       "lfm2",           "smaug-bpe",    "qwen2",
    "deepseek-r1-qwen",       "stablelm2",      "starcoder",      "smollm",       "refact",
    "command-r", "falcon",    "deepseek-llm",   "deepseek-coder", "tekken",       "gpt-4o",
};
#define N_NAMES (sizeof all_names / sizeof all_names[0])

/* ---------------------------------------------------------- vocabularies */

/* GPT-2's bytes_to_unicode(), written here independently of unicode.c. */
static uint32_t gpt2_cp(int b) {
    bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (keep) return (uint32_t)b;
    uint32_t next = 256;
    for (int i = 0; i < b; i++)
        if (!((i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE)) next++;
    return next;
}

#define MAX_EXTRA 8

typedef struct pre_vocab {
    char text[256 + MAX_EXTRA][8];
    gguf_str tok[256 + MAX_EXTRA];
    gguf_str merge[MAX_EXTRA];
    uint32_t n_tok, n_merges;
} pre_vocab;

static pre_vocab pv;

/* Ids 0..255: the 256 byte characters (id = byte); then extra tokens. */
static void pv_reset(void) {
    memset(&pv, 0, sizeof pv);
    for (int b = 0; b < 256; b++) {
        size_t k = elmi_utf8_encode(gpt2_cp(b), pv.text[b]);
        pv.tok[b] = (gguf_str){pv.text[b], k};
    }
    pv.n_tok = 256;
}

static int32_t pv_add(const char *text, const char *merge) {
    cr_assert(pv.n_tok < 256 + MAX_EXTRA);
    snprintf(pv.text[pv.n_tok], sizeof pv.text[0], "%s", text);
    pv.tok[pv.n_tok] = (gguf_str){pv.text[pv.n_tok], strlen(text)};
    if (merge) pv.merge[pv.n_merges++] = (gguf_str){merge, strlen(merge)};
    return (int32_t)pv.n_tok++;
}

static elm_status pv_build(const char *pre, int32_t bos, int add_bos, elm_vocab **v, char *err,
                           size_t es) {
    vocab_arrays a = elmi_vocab_arrays_init();
    a.model = "gpt2";
    a.pre = pre;
    a.n_tokens = pv.n_tok;
    a.tokens = pv.tok;
    a.n_merges = pv.n_merges;
    a.merges = pv.merge;
    a.bos = bos;
    a.add_bos = add_bos;
    return elmi_vocab_new_from_arrays(&a, v, err, es);
}

static elm_vocab *vocab_for(const char *pre) {
    pv_reset();
    elm_vocab *v = NULL;
    char err[512];
    cr_assert_eq(pv_build(pre, -1, -1, &v, err, sizeof err), ELM_OK, "'%s': %s", pre, err);
    return v;
}

/* ------------------------------------------------------------- splitting */

/* Word ends of text, malloc'd. */
static size_t *split(const elm_vocab *v, const char *text, size_t len, size_t *n) {
    size_t need = 0;
    elm_status st = elmi_vocab_pre_split(v, text, len, NULL, 0, &need);
    cr_assert(st == ELM_OK || st == ELM_ERR_BUFFER_TOO_SMALL, "status %d", st);
    size_t *ends = malloc((need ? need : 1) * sizeof *ends);
    cr_assert_eq(elmi_vocab_pre_split(v, text, len, ends, need, n), ELM_OK);
    cr_assert_eq(*n, need);
    return ends;
}

/* The words, quoted, for messages. */
static void show_words(const char *text, const size_t *ends, size_t n, char *out, size_t cap) {
    size_t k = 0, start = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && k + 8 < cap; start = ends[i], i++) {
        int w = snprintf(out + k, cap - k, "%s\"", i ? " " : "");
        k += (size_t)w;
        for (size_t j = start; j < ends[i] && k + 6 < cap; j++) {
            unsigned char c = (unsigned char)text[j];
            k += (size_t)(c >= 0x20 && c != '\\' ? snprintf(out + k, cap - k, "%c", c)
                                                  : snprintf(out + k, cap - k, "\\x%02x", c));
        }
        k += (size_t)snprintf(out + k, cap - k, "\"");
    }
}

/* The text is the words' concatenation; checks that it splits into them. */
static void expect_split(const char *pre, const char *const *words, size_t n_words) {
    elm_vocab *v = vocab_for(pre);
    char text[512];
    size_t want[64], len = 0;
    for (size_t i = 0; i < n_words; i++) {
        size_t m = strlen(words[i]);
        cr_assert(len + m < sizeof text && i < 64);
        memcpy(text + len, words[i], m);
        len += m;
        want[i] = len;
    }
    size_t n;
    size_t *got = split(v, text, len, &n);
    bool same = n == n_words && !memcmp(got, want, n * sizeof *got);
    char g[1024], w[1024];
    show_words(text, got, n, g, sizeof g);
    show_words(text, want, n_words, w, sizeof w);
    cr_expect(same, "pre '%s':\n  got  %s\n  want %s", pre, g, w);
    free(got);
    elmi_vocab_free(v);
}

#define SPLIT(pre, ...)                                                              \
    do {                                                                             \
        static const char *const words_[] = {__VA_ARGS__};                           \
        expect_split(pre, words_, sizeof words_ / sizeof words_[0]);                 \
    } while (0)

/* The same strings for every family, so that the families can be compared. */
#define DIGITS "a1 12 123 1234 12345"
#define CJK_E "\xe4\xbd\xa0\xe5\xa5\xbd" /* 你好 (Lo) */
#define EMOJI "\xf0\x9f\x98\x80"         /* U+1F600 (So) */

Test(pre_split, gpt2_and_aliases) {
    const char *const names[] = {"", "default", "gpt-2", "phi-2", "mpt", "olmo"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = names[i];
        SPLIT(p, "a", "1", " 12", " 123", " 1234", " 12345");
        /* Contractions are lower case only: "'M" is punctuation, then a word. */
        SPLIT(p, "I", "'", "M", " she", "'", "S", " we", "'", "RE", " it", "'s");
        SPLIT(p, "ab" CJK_E, " x");
        SPLIT(p, "x", "...!?", " (", "y", ")");
        /* A run of spaces leaves its last one to the next word. */
        SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
        SPLIT(p, "hi", " " EMOJI EMOJI "!");
        SPLIT(p, "  ", " lead");
    }
}

Test(pre_split, llama3_and_aliases) {
    const char *const names[] = {"llama-bpe", "llama3", "llama-v3", "lfm2", "smaug-bpe"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = names[i];
        /* \p{N}{1,3}: digits in threes from the left, no space in front. */
        SPLIT(p, "a", "1", " ", "12", " ", "123", " ", "123", "4", " ", "123", "45");
        SPLIT(p, "I", "'M", " she", "'S", " we", "'RE", " it", "'s"); /* any case */
        SPLIT(p, "ab" CJK_E, " x");
        SPLIT(p, "x", "...!?", " (", "y", ")");
        SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
        SPLIT(p, "x", "!\n\n", "y");  /* punctuation takes the newlines after it */
        SPLIT(p, "x", " \n\n", "y");   /* \s*[\r\n]+ */
        SPLIT(p, "hi", " " EMOJI EMOJI "!");
        SPLIT(p, "  ", " lead");
        SPLIT(p, "\"hello", "\""); /* one non-letter leads a word */
    }
}

Test(pre_split, qwen2_and_aliases) {
    const char *const names[] = {"qwen2", "deepseek-r1-qwen", "stablelm2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = names[i];
        SPLIT(p, "a", "1", " ", "1", "2", " ", "1", "2", "3", " ", "1", "2", "3", "4", " ", "1",
              "2", "3", "4", "5");
        SPLIT(p, "I", "'M", " she", "'S", " we", "'RE", " it", "'s");
        SPLIT(p, "ab" CJK_E, " x");
        SPLIT(p, "x", "...!?", " (", "y", ")");
        SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
        SPLIT(p, "hi", " " EMOJI EMOJI "!");
        SPLIT(p, "  ", " lead");
    }
}

/* "\p{N}" first, then GPT-2's regex inside each piece. */
Test(pre_split, starcoder_and_aliases) {
    const char *const names[] = {"starcoder", "smollm", "refact", "command-r"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = names[i];
        SPLIT(p, "a", "1", " ", "1", "2", " ", "1", "2", "3", " ", "1", "2", "3", "4", " ", "1",
              "2", "3", "4", "5");
        SPLIT(p, "a", "  ", "1"); /* a digit ends the run of spaces like the text's end */
        SPLIT(p, "I", "'", "M", " she", "'", "S", " we", "'", "RE", " it", "'s");
        SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
        SPLIT(p, "x", "...!?", " (", "y", ")");
    }
}

/* Punctuation runs ([\p{P}$+<=>^~|`]+), then GPT-2's regex, then "[0-9]{3}". */
Test(pre_split, falcon) {
    SPLIT("falcon", "a", "1", " 12", " ", "123", " ", "123", "4", " ", "123", "45");
    /* The apostrophe is punctuation: contractions never reach the GPT-2 regex. */
    SPLIT("falcon", "I", "'", "M", " she", "'", "S", " we", "'", "RE", " it", "'", "s");
    SPLIT("falcon", "x", "...!?", " ", "(", "y", ")");
    SPLIT("falcon", "a", "+", "b", "=", "c", " ", "$", "5");
    SPLIT("falcon", "a", " ", " b", "\n\n", " c", " \t\n");
    SPLIT("falcon", "hi", " " EMOJI EMOJI, "!");
    SPLIT("falcon", "ab" CJK_E, " x");
}

/* [\r\n], cased letters with one optional space, ASCII/CJK punctuation with
 * one optional space, trailing spaces, a wide CJK range, \p{N}+. */
Test(pre_split, deepseek_llm) {
    const char *p = "deepseek-llm";
    SPLIT(p, "a", "1", " ", "12", " ", "123", " ", "1234", " ", "12345");
    SPLIT(p, "I", "'", "M", " she", "'", "S", " we", "'", "RE", " it", "'", "s");
    /* CJK letters are not cased: the CJK pass takes them. */
    SPLIT(p, "ab", CJK_E, " x");
    SPLIT(p, "x", "...!?", " (", "y", ")");
    SPLIT(p, "a", " ", " b", "\n", "\n", " c", " \t", "\n");
    SPLIT(p, "hi", " " EMOJI EMOJI, "!");
    SPLIT(p, "  ", " lead");
    /* U+20AC lies in U+0800..U+4E00, the "CJK" range. */
    SPLIT(p, "x", "\xe2\x82\xac\xe2\x82\xac", "5");
    /* Fullwidth: Ａ (U+FF21) is a cased letter, ！ (U+FF01) punctuation. */
    SPLIT(p, "\xef\xbc\xa1", "\xef\xbc\x81");
    /* Greek and Cyrillic are cased; Arabic (U+0645 U+0631) is not. */
    SPLIT(p, "\xce\xb1\xce\xb2", " \xd0\xb4\xd0\xb0", " \xd9\x85\xd8\xb1");
}

/* [\r\n], \s?\p{L}+, \s?\p{P}+, the CJK range, each digit alone. */
Test(pre_split, deepseek_coder) {
    const char *p = "deepseek-coder";
    SPLIT(p, "a", "1", " ", "1", "2", " ", "1", "2", "3", " ", "1", "2", "3", "4", " ", "1", "2",
          "3", "4", "5");
    SPLIT(p, "I", "'", "M", " she", "'", "S", " we", "'", "RE", " it", "'", "s");
    /* \p{L} includes CJK, but the CJK pass cuts the letters' piece again. */
    SPLIT(p, "ab", CJK_E, " x");
    SPLIT(p, "x", "...!?", " (", "y", ")");
    SPLIT(p, "a", "+", "b", "=", "c", " $", "5"); /* + = $ are symbols (S), not P */
    SPLIT(p, "a", " ", " b", "\n", "\n", " c", " \t", "\n");
    SPLIT(p, "hi", " " EMOJI EMOJI, "!");
}

/* Mistral's Tekken: words of upper- then lower-case-like letters (marks
 * included), one digit at a time, "/" and newlines after punctuation. */
Test(pre_split, tekken) {
    const char *p = "tekken";
    SPLIT(p, "Hello", " world");
    SPLIT(p, "a", "1", " ", "1", "2", " ", "1", "2", "3", " ", "1", "2", "3", "4", " ", "1", "2",
          "3", "4", "5");
    /* No contraction rule: the apostrophe leads the letters after it. */
    SPLIT(p, "I", "'M", " she", "'S", " we", "'RE", " it", "'s");
    SPLIT(p, "HTTPServer", " camel", "Case");
    SPLIT(p, "ab" CJK_E, " x"); /* Lo counts as both cases */
    SPLIT(p, "x", "...!?", " (", "y", ")");
    SPLIT(p, "a", "/b", "//\n");
    SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
    SPLIT(p, "hi", " " EMOJI EMOJI "!");
    SPLIT(p, "  ", " lead");
    /* Non-ASCII case (É U+00C9, é U+00E9) and a combining mark (U+0301). */
    SPLIT(p, "\xc3\x89t\xc3\xa9", "\xc3\x89t\xc3\xa9");
    SPLIT(p, "cafe\xcc\x81s");
}

/* o200k (Phi-4): Tekken's words with a contraction at their end, digits in
 * threes. */
Test(pre_split, gpt4o) {
    const char *p = "gpt-4o";
    SPLIT(p, "Hello", " world");
    SPLIT(p, "a", "1", " ", "12", " ", "123", " ", "123", "4", " ", "123", "45");
    SPLIT(p, "I'M", " she'S", " we'RE", " it's");
    SPLIT(p, "HTTPServer", " camel", "Case");
    SPLIT(p, "ab" CJK_E, " x");
    SPLIT(p, "x", "...!?", " (", "y", ")");
    SPLIT(p, "a", "/b", "//\n");
    SPLIT(p, "a", " ", " b", "\n\n", " c", " \t\n");
    SPLIT(p, "hi", " " EMOJI EMOJI "!");
    SPLIT(p, "  ", " lead");
    SPLIT(p, "\xc3\x89t\xc3\xa9", "\xc3\x89t\xc3\xa9");
    SPLIT(p, "cafe\xcc\x81s");
    /* GPT-2 for comparison: the mark is not a letter there. */
    SPLIT("gpt-2", "cafe", "\xcc\x81", "s");
}

/* ------------------------------------------------ an independent splitter */

/* Strings for the cross-check: valid UTF-8, away from the places where
 * PCRE2 and Python's `regex` define \s or $ differently (U+001C..U+001F,
 * U+0085, a newline before the end of a piece). */
static const char *const corpus[] = {
    "Hello world",
    DIGITS,
    "I'M she'S we'RE it's they'll I'd you've",
    "ab" CJK_E " x " CJK_E "ab",
    "x...!? (y) [z] {w}",
    "a  b\n\n c \t\n",
    "hi " EMOJI EMOJI "! " EMOJI "x",
    "   lead",
    "x!\n\ny \n\nz",
    "HTTPServer camelCase ALLCAPS lower",
    "a/b//\nc",
    "\xc3\x89t\xc3\xa9\xc3\x89t\xc3\xa9 cafe\xcc\x81s na\xc3\xafve",
    "a+b=c $5 100% ^~|`<>",
    "x\xe2\x82\xac\xe2\x82\xac" "5 \xef\xbc\xa1\xef\xbc\x81 \xe3\x80\x82",
    "\xce\xb1\xce\xb2 \xd0\xb4\xd0\xb0 \xd9\x85\xd8\xb1 \xd9\xa3\xd9\xa3",
    "\xea\xb0\x80\xeb\x82\x98 \xe3\x81\x82\xe3\x82\xa2 \xe0\xa4\xb9\xe0\xa4\xbf",
    "int main(void) {\n    return 0;\n}\n",
    "  \t  x\t\ty  ",
    "3.14159 1,000,000 0x1F 1e-5",
    "\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99",
    "\xc2\xb2\xc2\xbd \xe2\x85\xa0\xe2\x85\xa1 \xe2\x91\xa0",
    "\r\nwindows\r\nlines\r\n x",
};
#define N_CORPUS (sizeof corpus / sizeof corpus[0])

/* Appends "<tag> <hex>..." (words hex-encoded, separated by spaces) and a
 * newline to buf. */
static void put_line(char **buf, size_t *len, size_t *cap, char tag, const char *const *words) {
    size_t need = 4;
    for (size_t i = 0; words[i]; i++) need += 2 * strlen(words[i]) + 1;
    if (*len + need > *cap) {
        *cap = 2 * (*cap + need);
        *buf = realloc(*buf, *cap);
    }
    char *p = *buf + *len;
    *p++ = tag;
    for (size_t i = 0; words[i]; i++) {
        *p++ = ' ';
        for (const char *c = words[i]; *c; c++) p += sprintf(p, "%02x", (unsigned char)*c);
    }
    *p++ = '\n';
    *len = (size_t)(p - *buf);
}

/* One family per distinct regex list (aliases share theirs). */
static bool first_of_family(size_t i) {
    for (size_t j = 0; j < i; j++)
        if (elmi_pre_regexes(all_names[j]) == elmi_pre_regexes(all_names[i])) return false;
    return true;
}

/* Runs pretok_split.py on every family and the corpus; NULL when Python or
 * its regex module is missing. */
static char *run_python(void) {
    char script[4096], *in = NULL, *out = NULL, *err = NULL;
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < N_NAMES; i++) {
        if (!first_of_family(i)) continue;
        put_line(&in, &len, &cap, 'R', elmi_pre_regexes(all_names[i]));
        for (size_t c = 0; c < N_CORPUS; c++) {
            const char *one[] = {corpus[c], NULL};
            put_line(&in, &len, &cap, 'T', one);
        }
    }
    snprintf(script, sizeof script, "%s/tests/support/pretok_split.py", test_source_dir());
    const char *const argv[] = {"/usr/bin/env", "python3", script, NULL};
    int rc = test_run(argv, in, len, &out, &err);
    free(in);
    cr_expect(rc == 0 || rc == 3 || rc == 127, "pretok_split.py failed (%d): %s", rc,
              err ? err : "");
    free(err);
    if (rc == 0) return out;
    free(out);
    return NULL;
}

/* Parses one line of word ends; returns the next line. */
static char *parse_ends(char *line, size_t *ends, size_t cap, size_t *n) {
    cr_assert(line && *line, "python gave too few lines");
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    *n = 0;
    for (char *p = line, *q; *n < cap; p = q) {
        unsigned long e = strtoul(p, &q, 10);
        if (q == p) break;
        ends[(*n)++] = e;
    }
    return nl ? nl + 1 : NULL;
}

Test(pre_split, python_regex_agrees) {
    char *out = run_python(), *line = out;
    if (!out) {
        fprintf(stderr, "python_regex_agrees: skipped (no python3 with the regex module)\n");
        cr_skip_test("python3 with the regex module is not installed");
    }
    for (size_t i = 0; i < N_NAMES; i++) {
        if (!first_of_family(i)) continue;
        elm_vocab *v = vocab_for(all_names[i]);
        for (size_t c = 0; c < N_CORPUS; c++) {
            size_t want[256], n_want, n;
            line = parse_ends(line, want, 256, &n_want);
            size_t *got = split(v, corpus[c], strlen(corpus[c]), &n);
            char g[2048], w[2048];
            show_words(corpus[c], got, n, g, sizeof g);
            show_words(corpus[c], want, n_want, w, sizeof w);
            cr_expect(n == n_want && !memcmp(got, want, n * sizeof *got),
                      "pre '%s', string %zu:\n  edgelm %s\n  python %s", all_names[i], c, g, w);
            free(got);
        }
        elmi_vocab_free(v);
    }
    free(out);
}

/* ---------------------------------------------------------------- names */

Test(pre_names, unknown_refused_by_name) {
    static const char *const bad[] = {"no-such-pre", "GPT-2", "llama", "gpt-2 ", "deepseek"};
    pv_reset();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        elm_vocab *v = NULL;
        char err[512] = "", quoted[64];
        cr_expect_eq(pv_build(bad[i], -1, -1, &v, err, sizeof err), ELM_ERR_UNSUPPORTED);
        cr_expect_null(v);
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        cr_expect(strstr(err, quoted) && strstr(err, "tekken"),
                  "message '%s' should name %s and the known names", err, quoted);
        cr_expect_null(elmi_pre_regexes(bad[i]));
    }
    for (size_t i = 0; i < N_NAMES; i++) {
        cr_expect_not_null(elmi_pre_regexes(all_names[i]), "'%s'", all_names[i]);
        elm_vocab *v = vocab_for(all_names[i]);
        cr_expect_str_eq(elmi_vocab_pre_name(v), all_names[i]);
        elmi_vocab_free(v);
    }
    cr_expect_not_null(elmi_pre_regexes(NULL), "NULL means no key: GPT-2's regex");
}

/* ignore_merges (llama.cpp: Llama 3 family and Tekken): a word that is a
 * token is taken whole even when the merges cannot build it. BOS by default
 * for the same families, unless the file says add_bos_token = false. */
Test(pre_names, ignore_merges_and_bos_defaults) {
    static const struct {
        const char *pre;
        bool whole;
    } cases[] = {
        {"gpt-2", false},    {"llama-bpe", true}, {"llama3", true},      {"llama-v3", true},
        {"lfm2", true},      {"smaug-bpe", false}, {"qwen2", false},     {"tekken", true},
        {"gpt-4o", false},   {"falcon", false},   {"deepseek-llm", false}, {"starcoder", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pv_reset();
        int32_t xyz = pv_add("xyz", NULL), bos = pv_add("<s>", NULL);
        elm_vocab *v = NULL;
        char err[512];
        cr_assert_eq(pv_build(cases[i].pre, bos, -1, &v, err, sizeof err), ELM_OK, "%s", err);
        int32_t ids[8];
        size_t n;
        cr_assert_eq(elmi_vocab_tokenize(v, "xyz", 3, true, false, ids, 8, &n), ELM_OK);
        size_t k = cases[i].whole; /* BOS first where the family adds it */
        cr_expect_eq(elmi_vocab_add_bos(v), cases[i].whole, "'%s': add_bos", cases[i].pre);
        if (cases[i].whole)
            cr_expect(n == 2 && ids[0] == bos && ids[1] == xyz, "'%s': BOS, xyz", cases[i].pre);
        else
            cr_expect(n == 3 && ids[k] == 'x' && ids[k + 2] == 'z', "'%s': x y z", cases[i].pre);
        elmi_vocab_free(v);
        /* An explicit add_bos_token = false wins. */
        cr_assert_eq(pv_build(cases[i].pre, bos, 0, &v, err, sizeof err), ELM_OK, "%s", err);
        cr_expect(!elmi_vocab_add_bos(v), "'%s'", cases[i].pre);
        elmi_vocab_free(v);
    }
}

/* ---------------------------------------------------------------- hostile */

static void expect_cover(const elm_vocab *v, const char *pre, const char *text, size_t len) {
    size_t n;
    size_t *ends = split(v, text, len, &n);
    cr_expect(len == 0 ? n == 0 : n > 0 && ends[n - 1] == len, "'%s': words end at %zu of %zu",
              pre, n ? ends[n - 1] : 0, len);
    for (size_t i = 1; i < n; i++) cr_assert_lt(ends[i - 1], ends[i], "'%s': empty word", pre);
    free(ends);
    /* Every byte is a token here: ids are the text's bytes, in order. */
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    size_t m;
    cr_assert_eq(elmi_vocab_tokenize(v, text, len, false, false, ids, len + 1, &m), ELM_OK);
    bool same = m == len;
    for (size_t i = 0; same && i < len; i++) same = ids[i] == (int32_t)(uint8_t)text[i];
    cr_expect(same, "'%s': the tokens are not the text's bytes", pre);
    free(ids);
}

Test(pre_hostile, invalid_utf8) {
    static const char *const bad[] = {
        "\xff", "a\x80" "b", "\xc3", "ab\xe4\xbd", "\xed\xa0\x80x", "\xc0\xaf 12",
        "\xf4\x90\x80\x80\n\n", " \xfe\xff \xe4\xbd\xa0", "'\xff" "s", "1\x80" "2\x80" "3",
    };
    srand(1234);
    char rnd[4096];
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (char)(rand() & 0xff);
    for (size_t i = 0; i < N_NAMES; i++) {
        elm_vocab *v = vocab_for(all_names[i]);
        for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++)
            expect_cover(v, all_names[i], bad[j], strlen(bad[j]));
        expect_cover(v, all_names[i], rnd, sizeof rnd);
        expect_cover(v, all_names[i], "a\0b\0", 4);
        elmi_vocab_free(v);
    }
}

/* 64 KiB of a repeated unit: runs that a backtracking regex could make
 * quadratic (long words, spaces before a non-space, upper-case runs). */
static char *repeat(const char *unit, size_t total, size_t *len) {
    size_t u = strlen(unit), n = total / u;
    char *s = malloc(n * u + 1);
    for (size_t i = 0; i < n; i++) memcpy(s + i * u, unit, u);
    *len = n * u;
    s[*len] = 0;
    return s;
}

Test(pre_hostile, long_inputs) {
    static const char *const units[] = {
        "a", " ", "\n", "1", "!", CJK_E, " \n", "\xc3\x89", "aA", "\xcc\x81", "'", " .",
        "\t ", "x ", "\r\n", "\xe2\x82\xac", "A", "//", "'s", EMOJI, "\xff", " 1",
        "a\xcc\x81", " !", "\n ", "  x",
    };
    for (size_t i = 0; i < N_NAMES; i++) {
        if (!first_of_family(i)) continue;
        elm_vocab *v = vocab_for(all_names[i]);
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
            size_t len;
            char *s = repeat(units[u], 64 << 10, &len);
            clock_t t0 = clock();
            expect_cover(v, all_names[i], s, len);
            double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
            cr_expect_lt(secs, 5.0, "'%s' on a run of unit %zu: %.1f s", all_names[i], u, secs);
            free(s);
        }
        elmi_vocab_free(v);
    }
}

/* --------------------------------------------------- allocation failures */

static atomic_long n_allocs, fail_at; /* fail_at: the allocation that fails, 0 none */
static atomic_bool fail_hit;

static bool should_fail(void) {
    long k = atomic_fetch_add(&n_allocs, 1) + 1, f = atomic_load(&fail_at);
    if (f == 0 || k != f) return false;
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

/* Builds the vocab and tokenizes text with the k-th allocation failing:
 * either step may fail with ELM_ERR_NO_MEMORY, nothing leaks, and what
 * succeeds gives the tokens of a run without failures. */
static bool fail_kth(const char *pre, long k, const char *text, const int32_t *ref, size_t n_ref) {
    size_t live0 = elm_allocations_live(), n = 0;
    int32_t ids[128];
    elm_vocab *v = NULL;
    char err[512] = "";
    atomic_store(&fail_hit, false);
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_at, k);
    elm_status st = pv_build(pre, -1, -1, &v, err, sizeof err), st2 = ELM_OK;
    if (st == ELM_OK) st2 = elmi_vocab_tokenize(v, text, strlen(text), false, false, ids, 128, &n);
    atomic_store(&fail_at, 0);
    bool hit = atomic_load(&fail_hit);
    cr_expect(st == ELM_OK || (hit && st == ELM_ERR_NO_MEMORY && !v), "'%s' k=%ld: build %d (%s)",
              pre, k, st, err);
    cr_expect(st2 == ELM_OK || (hit && st2 == ELM_ERR_NO_MEMORY), "'%s' k=%ld: tokenize %d", pre,
              k, st2);
    if (st == ELM_OK && st2 == ELM_OK)
        cr_expect(n == n_ref && !memcmp(ids, ref, n * sizeof *ids), "'%s' k=%ld: other tokens",
                  pre, k);
    elmi_vocab_free(v);
    cr_expect_eq(elm_allocations_live(), live0, "'%s' k=%ld: a leak", pre, k);
    return hit;
}

Test(pre_hostile, allocation_failures) {
    static const elm_allocator a = {sizeof(elm_allocator), fa_malloc, fa_realloc, fa_free, NULL};
    cr_assert_eq(elm_set_allocator(&a), ELM_OK);
    static const char text[] = "Hello 12345 wor'ld\n\n  \xe4\xbd\xa0 \xe2\x82\xac" "5 ...!";
    const char *const pres[] = {"deepseek-llm", "falcon", "tekken", "gpt-2"};
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        elm_vocab *v = vocab_for(pres[i]);
        int32_t ref[128];
        size_t n_ref;
        cr_assert_eq(elmi_vocab_tokenize(v, text, strlen(text), false, false, ref, 128, &n_ref),
                     ELM_OK);
        elmi_vocab_free(v);
        long k = 1;
        while (fail_kth(pres[i], k, text, ref, n_ref)) k++;
        cr_expect_gt(k, 8, "'%s': only %ld allocations", pres[i], k - 1);
        fprintf(stderr, "allocation_failures: '%s': %ld allocation points\n", pres[i], k - 1);
    }
}
