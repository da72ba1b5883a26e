/*
 * fuzz_tokenizer.c: libFuzzer target for the tokenizers.
 *
 * Loads one vocabulary (ELM_FUZZ_VOCAB, default
 * $ELM_SHARED_DIR/tokenizer/ggml-vocab-llama-spm.gguf, where ELM_SHARED_DIR
 * defaults to ../shared, relative to the repository root) and tokenizes and
 * detokenizes each input with and without special tokens. Besides crashes it
 * checks that the raw pieces give the input back
 * (after SentencePiece's one prefix space), which holds for any bytes when
 * special tokens are not parsed, except for inputs containing U+2581, which
 * SentencePiece itself renders as a space.
 */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"

static gguf_file *g_file;
static elm_vocab *g_vocab;

static void load_vocab(void) {
    const char *path = getenv("ELM_FUZZ_VOCAB"), *shared = getenv("ELM_SHARED_DIR");
    char buf[4096];
    if (!path || !*path) {
        snprintf(buf, sizeof buf, "%s/tokenizer/ggml-vocab-llama-spm.gguf",
                 shared && *shared ? shared : "../shared");
        path = buf;
    }
    char err[256] = "";
    if (elmi_gguf_open(path, &g_file, err, sizeof err) != ELM_OK ||
        elmi_vocab_load(g_file, &g_vocab, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err);
        abort();
    }
}

static char *concat_pieces(const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0, k = 0, m;
    for (size_t i = 0; i < n; i++) {
        if (elmi_vocab_token_to_piece(g_vocab, ids[i], NULL, 0, &m) == ELM_ERR_INVALID_ARG) abort();
        total += m;
    }
    char *buf = malloc(total + 1);
    if (!buf) abort();
    for (size_t i = 0; i < n; i++) {
        if (elmi_vocab_token_to_piece(g_vocab, ids[i], buf + k, total - k, &m) != ELM_OK) abort();
        k += m;
    }
    *len = k;
    return buf;
}

static void check_detokenize(const int32_t *ids, size_t n) {
    size_t need = 0, len = 0;
    elm_status st = elmi_vocab_detokenize(g_vocab, ids, n, NULL, 0, &need);
    if (st != ELM_OK && st != ELM_ERR_BUFFER_TOO_SMALL) abort();
    char *text = malloc(need + 1);
    if (!text || elmi_vocab_detokenize(g_vocab, ids, n, text, need + 1, &len) != ELM_OK || len != need ||
        text[len] != 0)
        abort();
    free(text);
}

static void check_round_trip(const uint8_t *data, size_t size, const int32_t *ids, size_t n) {
    if (memmem(data, size, "\xe2\x96\x81", 3)) return;
    size_t len;
    char *back = concat_pieces(ids, n, &len);
    size_t skip = elmi_vocab_add_space_prefix(g_vocab) && size > 0;
    if (len != size + skip || memcmp(back + skip, data, size) != 0) abort();
    free(back);
}

static void run(const uint8_t *data, size_t size, bool special) {
    int32_t small[16];
    size_t n = 0;
    elm_status st = elmi_vocab_tokenize(g_vocab, (const char *)data, size, true, special, small, 16, &n);
    if (st != ELM_OK && st != ELM_ERR_BUFFER_TOO_SMALL) abort();
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t n2 = 0;
    if (!ids) abort();
    st = elmi_vocab_tokenize(g_vocab, (const char *)data, size, false, special, ids, n, &n2);
    if (st != ELM_OK) abort();
    for (size_t i = 0; i < n2; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= elmi_vocab_n_tokens(g_vocab)) abort();
    check_detokenize(ids, n2);
    if (!special) check_round_trip(data, size, ids, n2);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_vocab) load_vocab();
    run(data, size, false);
    run(data, size, true);
    return 0;
}

#ifdef FUZZ_WRITE_SEEDS
/* Built without libFuzzer by scripts/fuzz.sh: writes text seeds into
 * argv[1] (the shared test strings are added by the script when present). */
static const struct {
    const char *s;
    size_t n;
} SEEDS[] = {
#define S(x) {x, sizeof x - 1}
    S(""), S(" "), S("  "), S("\n"), S("\r\n\t \n"), S("Hello world"), S(" Hello World."),
    S("<s>"), S("</s>"), S("<unk>"), S("<s>Hello</s>"), S("<|im_start|>user\nhi<|im_end|>"),
    S("<|endoftext|>"), S("<0x0A><0xFF>"), S("\xe2\x96\x81x \xe2\x96\x81"),
    S("I'm, you've, he'll, we'd, it's, they're"), S("3333333 1.5e-3 0x1F 12,345"),
    S("\xc3\xa9\xc3\xa0 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99 \xd9\x85\xd8\xb1"),
    S("\x80\xbf\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xff\xfe"), S("\xe2\x96"), S("a\0b\0"),
    S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    S("\t\t\t    \n\n\n   x"), S("```c\nint main(void) { return 0; }\n```"),
#undef S
};

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    for (size_t i = 0; i < sizeof SEEDS / sizeof SEEDS[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed%02zu", argv[1], i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(SEEDS[i].s, 1, SEEDS[i].n, f) != SEEDS[i].n || fclose(f) != 0) return 1;
    }
    return 0;
}
#endif
