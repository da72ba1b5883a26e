/*
 * tiny_model.h: small, valid llama/qwen2 GGUF models for tests, built with
 * the GGUF writer, and helpers to locate and patch fields of a serialized
 * file (for writing malformed ones).
 */
#ifndef ELM_TEST_TINY_MODEL_H
#define ELM_TEST_TINY_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct tiny_model_opts {
    const char *arch; /* "llama" or "qwen2" */
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int wtype;   /* qtype of the 2-D weights; F32 by default */
    bool tied;   /* no output.weight: the output reuses token_embd */
    bool biases; /* attn_q/k/v biases; qwen2 always has them */
    uint32_t seed;
} tiny_model_opts;

/* llama, n_embd 64, 2 layers, 4 heads, 2 KV heads, n_ff 128, vocab 300, ctx 256,
 * F32, untied, seed 1. */
tiny_model_opts tiny_model_default(void);
/* The same shape as qwen2: biases, tied embeddings. */
tiny_model_opts tiny_model_qwen2(void);

/*
 * A writer holding the whole model: metadata with the llama.cpp key names, a
 * SentencePiece-style vocabulary (<unk>, <s>, </s>, the 256 byte tokens
 * <0x00>..<0xFF>, then scored pieces using U+2581 for spaces) and seeded
 * pseudo-random weights (normal, scaled by 1/sqrt(fan-in) so activations stay
 * near 1; norms 1.0). 2-D weights use wtype (quantized with the quant
 * module's from_float); 1-D tensors are F32. The caller may replace or remove
 * pairs and tensors before writing. NULL when an option is impossible (for
 * example n_embd not a multiple of wtype's block size); the reason goes to
 * stderr.
 */
gguf_writer *tiny_model_build(const tiny_model_opts *o);
/* Builds and writes to `path`; 0 on success. */
int tiny_model_write(const tiny_model_opts *o, const char *path);

/* Adds the vocabulary described above (n_vocab tokens, bos 1, eos 2, unk 0). */
elm_status tiny_model_add_vocab(gguf_writer *w, int n_vocab);
/* Token i of that vocabulary, NUL-terminated, into buf (at least 32 bytes). */
void tiny_model_token(int i, char *buf, size_t cap);

/* Byte positions, in a serialized file, of one pair's fields: its start (the
 * key length), its value type, its value (for arrays: the element type) and
 * its end. Found with the reader, so the file must be valid. */
typedef struct tiny_kv_pos {
    size_t start, type, value, end;
} tiny_kv_pos;
bool tiny_find_kv(const void *buf, size_t size, const char *key, tiny_kv_pos *out);

/* Byte positions of one tensor info's fields, and of its data in the file. */
typedef struct tiny_tensor_pos {
    size_t start, n_dims, ne, type, offset, end, data;
} tiny_tensor_pos;
bool tiny_find_tensor(const void *buf, size_t size, const char *name, tiny_tensor_pos *out);

/* Where the tensor infos end and the data section starts. */
bool tiny_layout(const void *buf, size_t size, size_t *infos_end, size_t *data_start);

void tiny_put_u32(void *buf, size_t pos, uint32_t v);
void tiny_put_u64(void *buf, size_t pos, uint64_t v);
/* Writes n bytes to path; 0 on success. */
int tiny_write_bytes(const char *path, const void *buf, size_t n);
/* Serializes w into a malloc'd buffer (NULL on failure). */
uint8_t *tiny_serialize(const gguf_writer *w, size_t *size);

#endif
