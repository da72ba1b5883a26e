/*
 * edgelm_tools.h: fixtures for edgelm's own benchmarks and tools.
 *
 * Stability: NONE. Unlike edgelm.h, nothing here is covered by the ABI rule
 * or the ABI check (abi/libedgelm.abi ignores these functions): signatures,
 * structs and shapes may change in any release. Applications should not
 * depend on it; it is installed for benchmark harnesses built out of tree.
 * Same conventions as edgelm.h otherwise (status codes, borrowed pointers).
 */
#ifndef EDGELM_TOOLS_H
#define EDGELM_TOOLS_H

#include "edgelm.h"

#ifdef __cplusplus
extern "C" {
#endif


/* A model with the shape of a popular small model and deterministic
 * pseudo-random weights, for benchmarks. The vocabulary is synthetic
 * (SentencePiece-style). Shapes (elm_synth_shape_name lists them):
 *   "smollm-135m", "llama-1b" (Llama 3.2 1B), "tinyllama-1.1b": llama;
 *   "qwen2-0.5b": qwen2 (q/k/v biases);
 *   "qwen3-0.6b": qwen3 (head size 128 apart from n_embd / n_head, Q/K norms);
 *   "gemma3-270m", "gemma3-1b": gemma3 (head size 256, Q/K and post norms,
 *     sliding window 512 on five layers of six, GELU, scaled embeddings);
 *   "phi4-mini": phi3 (fused attn_qkv and gate/up, 96 of 128 dimensions
 *     rotated, LongRoPE factors from an original context of 4096);
 *   "smollm3-3b": smollm3 (no RoPE on every fourth layer);
 *   "lfm2-350m": lfm2 (short-convolution layers, attention at layers 2, 5,
 *     8, 10, 12, 14, final norm token_embd_norm).
 * And tiny ones of each new architecture, for tests (n_embd 64, vocabulary
 * 300, a few layers): "tiny-qwen3", "tiny-gemma3" (6 layers, window 8),
 * "tiny-phi3", "tiny-smollm3", "tiny-lfm2". */
typedef struct elm_synth_params {
    const char *shape;       /* borrowed */
    /* Weight type of the 2-D tensors: "Q4_0", "Q8_0", "Q4_K", "F16", any
     * supported type, or "Q4_K_M" (Q4_K with Q6_K for half of attn_v and
     * ffn_down, Q5_K for a fused attn_qkv). A tensor whose rows are not whole blocks falls back to
     * Q5_0/Q5_1/Q8_0. Borrowed. */
    const char *type;
    /* Type of output.weight; NULL: Q6_K for Q4_0/Q4_K types (Q8_0 where the
     * row length is not a multiple of 256), Q8_0 otherwise. Borrowed. */
    const char *output_type;
    uint32_t vocab_size;     /* 0: the shape's own */
    uint32_t n_layer;        /* 0: the shape's own; else its first n_layer layers */
    uint64_t seed;
} elm_synth_params;

ELM_API elm_synth_params elm_synth_default_params(void);
/* Name of shape i, or NULL past the last. */
ELM_API const char *elm_synth_shape_name(size_t i);
/* Writes the model as a GGUF file at `path` (borrowed). */
ELM_API elm_status elm_synth_write(const elm_synth_params *p, const char *path, char *err,
                                   size_t err_size);
/* Builds the model in memory and loads it as elm_model_load would; the
 * model's path reads "shape:NAME:TYPE". */
ELM_API elm_status elm_synth_load(const elm_synth_params *p, const elm_model_params *mp,
                                  elm_model **out, char *err, size_t err_size);

/* Peak resident memory of this process in bytes (0 where unknown). */
ELM_API uint64_t elm_peak_rss(void);

/* Signed model files, for `edgelm keygen/sign/verify` (the formats are
 * described in README "Signed models"; loading checks them through
 * elm_model_params.trusted_key). Ed25519 over the file's BLAKE2b-256. */

/* Writes a new key pair: PREFIX.pub and PREFIX.key (mode 0600); refuses to
 * overwrite either (ELM_ERR_IO). */
ELM_API elm_status elm_sign_keygen(const char *prefix, char *err, size_t err_size);
/* Signs the file `model` with the secret key file; writes MODEL.sig. */
ELM_API elm_status elm_sign_file(const char *model, const char *secret_key, char *err,
                                 size_t err_size);
/* Checks MODEL.sig against the public key file, hashing the whole file.
 * On ELM_OK, key_id (17 bytes, when not NULL) receives the signer's key id
 * in hex and *signed_at (when not NULL) the signing time in UTC seconds.
 * ELM_ERR_SIGNATURE (with the reason in err) when it does not verify;
 * ELM_ERR_IO / ELM_ERR_FORMAT for the key file. */
ELM_API elm_status elm_sign_verify(const char *model, const char *public_key, char *key_id,
                                   int64_t *signed_at, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* EDGELM_TOOLS_H */
