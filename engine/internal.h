/* internal.h: the engine's private types: model, hyperparameters, context. */
#ifndef ELM_ENGINE_INTERNAL_H
#define ELM_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "engine/profile.h"
#include "edgelm.h"
#include "edgelm_tools.h"
#include "engine/gguf.h"
#include "engine/sampler.h"
#include "engine/sched.h"
#include "engine/tokenizer.h"

#define ELM_MAX_LAYERS 1024
#define ELM_ERR_LEN 512

double elmi_now_ms(void); /* monotonic clock */

/* The defaults behind elm_*_default_params (api.c, model.c). */
extern const elm_sampler_params elmi_sampler_defaults;
extern const elm_generate_params elmi_generate_defaults;
extern const elm_context_params elmi_context_defaults;
extern const elm_model_params elmi_model_defaults;

/* Where a model's contexts run: a registered device backend and its device
 * index, or the CPU (reg NULL). */
typedef struct elm_device_choice {
    const be_reg *reg; /* NULL: the CPU backend */
    int index;         /* the device in reg's list; -1 with the CPU */
    bool automatic;    /* "auto"/"best": fall back to the CPU when the device fails */
    char id[32];       /* "cpu", "vulkan:N" */
} elm_device_choice;

typedef enum elm_arch {
    ELM_ARCH_LLAMA,
    ELM_ARCH_QWEN2,
    ELM_ARCH_QWEN3,
    ELM_ARCH_GEMMA3,
    ELM_ARCH_PHI3,
    ELM_ARCH_SMOLLM3,
    ELM_ARCH_LFM2,
} elm_arch;

/* What one layer is, as the architecture and the file decide it. */
typedef struct elm_layer_kind {
    uint8_t attn; /* 1: attention; 0: a gated short-convolution layer (lfm2) */
    uint8_t rope; /* 1: rotary positions; 0: none (smollm3, every fourth layer) */
    uint8_t swa;  /* 1: sliding-window attention over n_swa keys (gemma3) */
} elm_layer_kind;

typedef struct elm_hparams {
    elm_arch arch;
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;     /* key/value length per head */
    uint32_t n_rot;        /* rotated dimensions per head */
    float rms_eps;
    float rope_theta;
    float rope_freq_scale; /* 1 / linear factor */
    int rope_mode;         /* BE_ROPE_NORM or BE_ROPE_NEOX */
    int rope_scaling;      /* 0 none, 1 linear, 2 yarn */
    uint32_t rope_n_ctx_orig;
    float yarn_ext_factor;
    float yarn_attn_factor;
    float yarn_beta_fast;
    float yarn_beta_slow;
    bool has_bias_qkv;
    bool qk_norm;          /* per-head RMS norm of Q and K before RoPE */
    bool post_norms;       /* RMS norms of the attention and FFN outputs (gemma3) */
    bool fused_qkv;        /* one attn_qkv tensor, Q rows then K then V (phi3) */
    bool fused_gate_up;    /* ffn_up holds 2 n_ff rows, gate first (phi3) */
    int ffn_act;           /* BE_GLU_SILU or BE_GLU_GELU_TANH */
    float embd_scale;      /* the embeddings are multiplied by it (1: none) */
    float attn_scale;      /* of q.k (1/sqrt(head_dim) unless the architecture says) */
    float attn_softcap;    /* 0: none */
    float final_softcap;   /* 0: none */
    uint32_t n_swa;        /* keys a sliding-window layer sees, 0: none */
    float rope_theta_swa;  /* RoPE base of the sliding-window layers */
    uint32_t conv_L;       /* short-convolution taps (lfm2), 0: none */
    uint32_t n_attn_layers;
    elm_layer_kind layer[ELM_MAX_LAYERS];
} elm_hparams;

/* "llama, qwen2, ...": the architectures edgelm runs, for messages. */
const char *elmi_supported_archs(void);

/* Reads and checks the hyperparameters of `arch_name` from the metadata. */
elm_status elmi_hparams_load(const gguf_file *f, elm_hparams *hp, char *err, size_t err_size);

typedef struct elm_layer {
    be_tensor attn_norm; /* (n_embd) F32; lfm2: the operator norm of either kind of layer */
    be_tensor wq;        /* (n_embd, n_head * head_dim) */
    be_tensor wk;        /* (n_embd, n_head_kv * head_dim) */
    be_tensor wv;        /* (n_embd, n_head_kv * head_dim) */
    be_tensor bq;        /* (n_head * head_dim) F32, qwen2 only */
    be_tensor bk;        /* (n_head_kv * head_dim) F32, qwen2 only */
    be_tensor bv;        /* (n_head_kv * head_dim) F32, qwen2 only */
    be_tensor wo;        /* (n_head * head_dim, n_embd) */
    be_tensor ffn_norm;  /* (n_embd) F32 */
    be_tensor w_gate;    /* (n_embd, n_ff) */
    be_tensor w_up;      /* (n_embd, n_ff) */
    be_tensor w_down;    /* (n_ff, n_embd) */
    be_tensor q_norm;    /* (head_dim) F32, qk_norm only */
    be_tensor k_norm;    /* (head_dim) F32, qk_norm only */
    be_tensor post_attn_norm; /* (n_embd) F32, post_norms only */
    be_tensor post_ffn_norm;  /* (n_embd) F32, post_norms only */
    be_tensor conv_in;   /* (n_embd, 3 n_embd): b, c, x; convolution layers only */
    be_tensor conv_w;    /* (conv_L, n_embd) F32 */
    be_tensor conv_out;  /* (n_embd, n_embd) */
} elm_layer;

typedef struct elm_weights {
    be_tensor tok_embd;    /* (n_embd, n_vocab) */
    be_tensor output_norm; /* (n_embd) F32 */
    be_tensor output;      /* (n_embd, n_vocab); a copy of tok_embd's descriptor when tied */
    be_tensor rope_freqs;  /* (n_rot / 2) F32, optional */
    bool has_rope_freqs;
    be_tensor rope_long;   /* (n_rot / 2) F32, LongRoPE factors beyond n_ctx_orig (phi3), optional */
    be_tensor rope_short;  /* (n_rot / 2) F32, LongRoPE factors within n_ctx_orig */
    bool has_longrope;
    bool tied;
    elm_layer *layers;     /* n_layer entries, owned */
} elm_weights;

typedef struct elm_tensor_entry {
    char *name; /* owned, NUL-terminated */
    elm_tensor_info info;
} elm_tensor_entry;

struct elm_model {
    char *path;             /* owned */
    gguf_file *gguf;        /* owned; the weights point into its mapping */
    elm_vocab *vocab;       /* owned */
    bool vocab_only;
    elm_hparams hp;
    elm_weights w;
    elm_model_info info;    /* strings below or in the vocab */
    char *name;             /* owned */
    char *arch_name;        /* owned */
    char features[256];     /* elm_model_info.features */
    elm_tensor_entry *tensors; /* owned, info.n_tensors entries */
    double load_ms;
    elm_device_choice device;
    void *owned_data;       /* owned memory image of the file (synthetic models), or NULL */
    size_t owned_size;
    /* The opened device of `device`, shared by every context on the model
     * (one set of pipelines and weight copies); opened by the first context
     * that needs it, released by elm_model_free. NULL on the CPU. */
    pthread_mutex_t dev_lock; /* guards dev: contexts may be created in several threads */
    be_device *dev;           /* owned reference */
};

/* Resolves elm_model_params.device. */
elm_status elmi_device_resolve(const char *spec, elm_device_choice *out, char *err, size_t err_size);
/* Creates a backend for the choice c (the model's device or the CPU): on
 * a device, on the model's shared device, which the first call opens (m
 * NULL: a device of its own). */
elm_status elmi_device_backend_new(const elm_model *m, const elm_device_choice *c, int n_threads,
                                   bool pin, be_backend **out, char *err, size_t err_size);
/* Closes the model's shared device (the contexts must be gone). */
void elmi_device_model_release(elm_model *m);
/* Fills the device's part of elm_stats (the CPU fallback nodes). */
void elmi_device_backend_stats(const elm_context *ctx, elm_stats *st);

/* Loads a model from a GGUF image allocated with elmi_malloc, which the
 * model takes over (freed on failure too). `label` stands for the path in
 * messages. */
elm_status elmi_model_load_memory(const char *label, void *data, size_t size,
                             const elm_model_params *params, elm_model **out, char *err,
                             size_t err_size);

/* Binds and shape-checks every weight tensor of the model. */
elm_status elmi_weights_bind(elm_model *m, char *err, size_t err_size);

/* Per-context state: backend, KV cache, activations, logits. */
typedef struct elm_graph_bufs {
    be_buffer *buf;     /* one scratch buffer holding every tensor below */
    be_tensor ids;      /* (n_batch) I32 */
    be_tensor pos;      /* (n_batch) I32 */
    be_tensor x;        /* (n_embd, n_batch) residual stream */
    be_tensor xb;       /* (n_embd, n_batch) normed input */
    be_tensor q;        /* (head_dim * n_head, n_batch) */
    be_tensor k;        /* (head_dim * n_head_kv, n_batch) */
    be_tensor q3;       /* (head_dim, n_head, n_batch): a view of q */
    be_tensor k3;       /* (head_dim, n_head_kv, n_batch): a view of k */
    be_tensor v;        /* (head_dim * n_head_kv, n_batch) */
    be_tensor att;      /* (head_dim * n_head, n_batch) */
    be_tensor proj;     /* (n_embd, n_batch) attention / ffn output */
    be_tensor bcx;      /* (3 n_embd, n_batch) short-convolution input; (1, 1) without */
    be_tensor conv;     /* (n_embd, n_batch) short-convolution output */
    be_tensor gate;     /* (n_ff, n_batch) */
    be_tensor up;       /* (n_ff, n_batch) */
    be_tensor x_out;    /* (n_embd, n_out): the rows of x whose logits are wanted */
    be_tensor xb_out;   /* (n_embd, n_out) */
    be_tensor logits;   /* (n_vocab, n_out), n_out <= n_logits */
    be_tensor summary;  /* (4, 1): argmax, top-1, top-2, log-sum-exp of the last logits */
    uint32_t n_logits;  /* n_batch when logits_all, else 1 */
} elm_graph_bufs;

struct elm_context {
    const elm_model *model;    /* borrowed */
    elm_context_params params; /* resolved: n_ctx, n_batch, n_threads filled in */
    be_backend *be;            /* owned */
    elm_sched sched;           /* runs graphs on be, with CPU fallback nodes */
    be_buffer *kv_buf;         /* owned */
    be_tensor *k_cache;        /* (head_dim * n_head_kv, n_ctx) per layer, owned array */
    be_tensor *v_cache;        /* (head_dim * n_head_kv, n_ctx) per layer, owned array; a
                                  sliding-window layer's holds kv_rows_swa rows as a ring,
                                  a convolution layer has none */
    be_tensor *conv_state;     /* (n_embd, conv_rows) F32 ring per convolution layer, owned array */
    uint32_t step;             /* tokens per forward pass: n_batch, or fewer where a
                                  sliding window would make rings large */
    uint32_t kv_rows_swa;      /* rows of a sliding-window layer's cache (n_ctx: no ring) */
    uint32_t conv_rows;        /* rows of a convolution state ring */
    uint32_t ring_lo;          /* the lowest position every ring still holds */
    const be_tensor *rope_factors; /* the frequency factors this context's RoPE uses, or NULL */
    elm_graph_bufs g;
    be_node *nodes;            /* graph node storage, owned */
    int nodes_cap;
    uint32_t n_past;
    elm_token *tokens;         /* (n_ctx) the ids at positions [0, n_past), owned */
    uint64_t n_evaluated;      /* tokens run through the model since creation */
    float *logits;             /* host copy (n_vocab, n_logits), owned */
    uint32_t n_logits_valid;   /* rows of `logits` from the last decode */
    float summary[4];          /* BE_OP_ARGMAX of the last row, when summary_valid */
    bool summary_valid;
    int32_t *ids_host;         /* (n_batch) staging, owned */
    int32_t *pos_host;         /* (n_batch) staging, owned */
    bool broken;               /* a device failure made the context unusable */
    uint64_t kv_bytes;
    uint64_t scratch_bytes;
    char device_id[32];        /* where it runs: "cpu", "vulkan:N" */
    char notice[ELM_ERR_LEN];  /* a non-fatal note from creation (a fallback), or "" */
    elmi_profile prof;         /* elm_context_profile: on, and the figures per phase */
    char last_error[ELM_ERR_LEN];
};

/* The context's per-layer states in a fixed order: per layer, the K then V
 * cache of an attention layer or the state of a convolution layer, into
 * out (room for 2 n_layer); ring[i] tells whether out[i] is a ring (rows
 * reused modulo its size: a sliding-window cache, a convolution state)
 * rather than indexed by position. Returns the count. */
size_t elmi_context_states(elm_context *ctx, be_tensor **out, bool *ring);

/* The checksum that ends a saved state (state.c), over its other bytes;
 * tests use it to craft states that pass it. */
uint64_t elmi_state_checksum(const void *data, size_t n);

/* Sets ctx->last_error and returns st. */
elm_status elmi_ctx_error(elm_context *ctx, elm_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What a forward pass hands back. */
typedef enum elm_output {
    ELM_OUT_LAST,     /* the logits of the last token */
    ELM_OUT_ALL,      /* the logits of every token */
    ELM_OUT_SUMMARY,  /* only the last row's argmax summary: greedy decoding on a device
                         then reads back 16 bytes instead of the vocabulary's logits */
} elm_output;

/* Builds the forward graph of `n` tokens at position n_past into ctx->nodes. */
int elmi_graph_build(elm_context *ctx, uint32_t n, elm_output out, be_graph *graph);

/* Runs `n` tokens (split into batches) after the cached ones. On failure the
 * context is as before the call. */
elm_status elmi_context_decode(elm_context *ctx, const elm_token *tokens, size_t n, elm_output out);

#endif
