/*
 * fuzz_tokenizer.c: libFuzzer target for the tokenizers.
 *
 * Loads the vocabularies (ELM_FUZZ_VOCAB, default the SentencePiece
 * $ELM_SHARED_DIR/tokenizer/ggml-vocab-llama-spm.gguf and the byte-level BPE
 * ggml-vocab-gpt-2.gguf, where ELM_SHARED_DIR defaults to ../shared, relative
 * to the repository root, plus the GPT-2 vocab again under each of the other
 * pre-tokenizer families; the first byte of an input picks one: even bytes
 * SentencePiece, odd ones a byte-level vocab) and tokenizes
 * and detokenizes each input with and without special tokens. Besides crashes it
 * checks that ids are in range, that BOS/EOS add exactly their ids, that the
 * too-small-buffer path reports the count needed, and that the raw pieces
 * give the input back
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

#define MAX_FILES 2

/* The byte-level pre-tokenizer families besides GPT-2's (tokenizer_pre.c). */
static const char *const g_pre_names[] = {"llama-bpe", "qwen2",          "starcoder",
                                          "falcon",    "deepseek-llm",   "deepseek-coder",
                                          "tekken",    "gpt-4o"};
#define N_PRE (sizeof g_pre_names / sizeof g_pre_names[0])
#define MAX_VOCABS (MAX_FILES + N_PRE)

static gguf_file *g_files[MAX_FILES];
static elm_vocab *g_vocabs[MAX_VOCABS];
static size_t g_n_vocabs;
static const elm_vocab *g_vocab; /* the one this input uses */

static void load_one(const char *path) {
    char err[256] = "";
    size_t i = g_n_vocabs;
    if (elmi_gguf_open(path, &g_files[i], err, sizeof err) != ELM_OK ||
        elmi_vocab_load(g_files[i], &g_vocabs[i], err, sizeof err) != ELM_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path, err);
        abort();
    }
    g_n_vocabs++;
}

/* The byte-level vocab of file f (tokens, types, merges) once more for each
 * of g_pre_names. */
static void load_pre_variants(const gguf_file *f) {
    const gguf_kv *tok = NULL, *merges = NULL, *types = NULL;
    char err[256] = "";
    size_t es = sizeof err;
    if (elmi_gguf_get_arr(f, "tokenizer.ggml.tokens", true, GGUF_TYPE_STRING, &tok, err, es) ||
        elmi_gguf_get_arr(f, "tokenizer.ggml.merges", true, GGUF_TYPE_STRING, &merges, err, es) ||
        elmi_gguf_get_arr(f, "tokenizer.ggml.token_type", true, GGUF_TYPE_INT32, &types, err, es))
        abort();
    int32_t *type_copy = malloc(tok->arr_n * sizeof *type_copy); /* GGUF data is unaligned */
    if (!type_copy || types->arr_n != tok->arr_n) abort();
    memcpy(type_copy, types->arr_data, tok->arr_n * sizeof *type_copy);
    vocab_arrays a = elmi_vocab_arrays_init();
    a.model = "gpt2";
    a.n_tokens = (uint32_t)tok->arr_n;
    a.tokens = tok->arr_strs;
    a.types = type_copy;
    a.n_merges = (uint32_t)merges->arr_n;
    a.merges = merges->arr_strs;
    for (size_t i = 0; i < N_PRE; i++) {
        a.pre = g_pre_names[i];
        if (elmi_vocab_new_from_arrays(&a, &g_vocabs[g_n_vocabs++], err, sizeof err) != ELM_OK) {
            fprintf(stderr, "fuzz_tokenizer: pre-tokenizer %s: %s\n", g_pre_names[i], err);
            abort();
        }
    }
    free(type_copy);
}

/* ELM_FUZZ_VOCAB, or both shared vocabularies: SentencePiece and byte-level
 * BPE, and the latter under the other pre-tokenizers. */
static void load_vocabs(void) {
    const char *path = getenv("ELM_FUZZ_VOCAB"), *shared = getenv("ELM_SHARED_DIR");
    if (path && *path) {
        load_one(path);
        return;
    }
    static const char *const names[MAX_FILES] = {"ggml-vocab-llama-spm.gguf",
                                                 "ggml-vocab-gpt-2.gguf"};
    for (size_t i = 0; i < MAX_FILES; i++) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s/tokenizer/%s", shared && *shared ? shared : "../shared",
                 names[i]);
        load_one(buf);
    }
    load_pre_variants(g_files[1]);
}

/* Even first bytes: the first vocab (SentencePiece by default), as before
 * the pre-tokenizer variants came; odd ones: one of the byte-level vocabs. */
static const elm_vocab *pick_vocab(const uint8_t *data, size_t size) {
    if (!size || g_n_vocabs == 1 || data[0] % 2 == 0) return g_vocabs[0];
    return g_vocabs[1 + (data[0] / 2) % (g_n_vocabs - 1)];
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

/* One input in four (chosen by its bytes, so runs repeat) also goes through
 * the BOS/EOS call into a 16-id buffer: the too-small-buffer path and the
 * count it reports. Tokenizing every input both ways halved the campaigns'
 * speed for a path that does not depend on the text. */
static bool also_bos(const uint8_t *data, size_t size) {
    uint32_t h = 2166136261u ^ (uint32_t)size;
    for (size_t i = 0; i < size && i < 8; i++) h = (h ^ data[i]) * 16777619u;
    return (h >> 7 & 3) == 0;
}

static void run(const uint8_t *data, size_t size, bool special, bool bos) {
    /* Room for every id in one call: a byte gives at most one id, a space
     * its U+2581 (at most three byte tokens), plus BOS and EOS. */
    size_t cap = 3 * size + 4, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) abort();
    elm_status st = elmi_vocab_tokenize(g_vocab, (const char *)data, size, false, special, ids, cap, &n);
    if (st != ELM_OK || n > cap) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= elmi_vocab_n_tokens(g_vocab)) abort();
    if (bos) {
        int32_t small[16];
        size_t nb = 0;
        st = elmi_vocab_tokenize(g_vocab, (const char *)data, size, true, special, small, 16, &nb);
        if (nb != n + elmi_vocab_add_bos(g_vocab) + elmi_vocab_add_eos(g_vocab)) abort();
        if (st != (nb > 16 ? ELM_ERR_BUFFER_TOO_SMALL : ELM_OK)) abort();
    }
    check_detokenize(ids, n);
    if (!special) check_round_trip(data, size, ids, n);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_n_vocabs) load_vocabs();
    g_vocab = pick_vocab(data, size);
    bool bos = also_bos(data, size);
    run(data, size, false, bos);
    run(data, size, true, bos);
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
