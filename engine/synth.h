/* synth.h: the synthetic-model writer behind elm_synth_* (include/edgelm_tools.h).
 * synth.c holds the shapes, the metadata and the entry points;
 * synth_tensors.c the pseudo-random tensors and the vocabulary. */
#ifndef ELM_ENGINE_SYNTH_H
#define ELM_ENGINE_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "edgelm_tools.h"
#include "engine/gguf.h"

/* The shape of a real (or a tiny test) model. Zero in an optional field
 * means "as the plain llama block does". */
typedef struct synth_shape {
    const char *name;
    const char *arch;      /* general.architecture */
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_theta, rms_eps;
    bool tied;             /* no output.weight unless its type differs */
    uint32_t head_dim;     /* key/value length per head; 0: n_embd / n_head, and the
                              file carries no key_length / value_length keys */
    uint32_t n_rot;        /* rope.dimension_count; 0: head_dim (partial rotary when less) */
    uint32_t n_swa;        /* gemma3: attention.sliding_window */
    uint32_t conv_L;       /* lfm2: shortconv.l_cache, the taps of the convolution */
    uint64_t attn_layers;  /* lfm2: bit il set when layer il attends, clear when it
                              convolves (head_count_kv 0); 0: every layer attends */
    uint32_t longrope_ctx; /* phi3: rope.scaling.original_context_length, with
                              rope_factors_long/short tensors; 0: no LongRoPE */
} synth_shape;

/* What the architecture adds to the llama block, as the engine reads it. */
typedef struct synth_arch {
    const char *name;
    bool bias_qkv;   /* attn_q/k/v.bias (qwen2) */
    bool qk_norm;    /* attn_q_norm / attn_k_norm of head_dim (qwen3, gemma3, lfm2) */
    bool post_norms; /* post_attention_norm / post_ffw_norm (gemma3) */
    bool fused;      /* attn_qkv and a gate/up ffn_up of 2 n_ff rows (phi3) */
    bool conv;       /* short-convolution layers, final norm token_embd_norm (lfm2) */
} synth_arch;

/* One model being written. */
typedef struct synth_ctx {
    gguf_writer *w;
    const synth_shape *sh;   /* the shape after the parameters' overrides */
    const synth_arch *arch;
    uint64_t seed;
    uint64_t n_tensor;       /* random tensors so far: each gets its own stream */
    char *err;
    size_t err_size;
} synth_ctx;

/* Per-head key/value length and rotated dimensions of a shape. */
uint32_t elmi_synth_head_dim(const synth_shape *s);
uint32_t elmi_synth_n_rot(const synth_shape *s);
/* Whether layer il attends (else it is a short-convolution layer). */
bool elmi_synth_layer_attends(const synth_shape *s, uint32_t il);

/* Adds a (ne0, ne1) tensor (ne1 = 1: a vector, always F32) of `type`, or of a
 * fallback type when its rows are not whole blocks of it. sd > 0: uniform
 * pseudo-random values of that standard deviation; sd == 0: every value is
 * `constant`. */
elm_status elmi_synth_add_tensor(synth_ctx *c, const char *name, int type, int64_t ne0,
                                 int64_t ne1, float sd, float constant);
/* Adds an F32 vector of n values (LongRoPE factors). */
elm_status elmi_synth_add_f32(synth_ctx *c, const char *name, const float *v, int64_t n);
/* The tensors of layer il; q4km: the Q4_K_M mix of types. */
elm_status elmi_synth_add_layer(synth_ctx *c, uint32_t il, int type, bool q4km);
/* The synthetic SentencePiece-style vocabulary of n_vocab tokens. */
elm_status elmi_synth_add_vocab(synth_ctx *c, uint32_t n_vocab);

/* Writes the whole model of `p` (metadata, vocabulary, tensors) into w: for
 * tests and fuzz seeds that alter a model before serializing it. */
elm_status elmi_synth_build(const elm_synth_params *p, gguf_writer *w, char *err,
                            size_t err_size);

#endif
