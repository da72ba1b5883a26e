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
    if (gguf_open(path, &g_file, err, sizeof err) != ELM_OK ||
        vocab_load(g_file, &g_vocab, err, sizeof err) != ELM_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err);
        abort();
    }
}

static char *concat_pieces(const int32_t *ids, size_t n, size_t *len) {
    size_t total = 0, k = 0, m;
    for (size_t i = 0; i < n; i++) {
        if (vocab_token_to_piece(g_vocab, ids[i], NULL, 0, &m) == ELM_ERR_INVALID_ARG) abort();
        total += m;
    }
    char *buf = malloc(total + 1);
    if (!buf) abort();
    for (size_t i = 0; i < n; i++) {
        if (vocab_token_to_piece(g_vocab, ids[i], buf + k, total - k, &m) != ELM_OK) abort();
        k += m;
    }
    *len = k;
    return buf;
}

static void check_detokenize(const int32_t *ids, size_t n) {
    size_t need = 0, len = 0;
    elm_status st = vocab_detokenize(g_vocab, ids, n, NULL, 0, &need);
    if (st != ELM_OK && st != ELM_ERR_BUFFER_TOO_SMALL) abort();
    char *text = malloc(need + 1);
    if (!text || vocab_detokenize(g_vocab, ids, n, text, need + 1, &len) != ELM_OK || len != need ||
        text[len] != 0)
        abort();
    free(text);
}

static void check_round_trip(const uint8_t *data, size_t size, const int32_t *ids, size_t n) {
    if (memmem(data, size, "\xe2\x96\x81", 3)) return;
    size_t len;
    char *back = concat_pieces(ids, n, &len);
    size_t skip = vocab_add_space_prefix(g_vocab) && size > 0;
    if (len != size + skip || memcmp(back + skip, data, size) != 0) abort();
    free(back);
}

static void run(const uint8_t *data, size_t size, bool special) {
    int32_t small[16];
    size_t n = 0;
    elm_status st = vocab_tokenize(g_vocab, (const char *)data, size, true, special, small, 16, &n);
    if (st != ELM_OK && st != ELM_ERR_BUFFER_TOO_SMALL) abort();
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t n2 = 0;
    if (!ids) abort();
    st = vocab_tokenize(g_vocab, (const char *)data, size, false, special, ids, n, &n2);
    if (st != ELM_OK) abort();
    for (size_t i = 0; i < n2; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab_n_tokens(g_vocab)) abort();
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
