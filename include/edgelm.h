/*
 * edgelm.h: the public C API of edgelm, a local inference engine for small
 * language models stored as GGUF files.
 *
 * Conventions (they hold for every function below):
 *  - Functions that can fail return an elm_status; ELM_OK is 0.
 *    elm_strerror() names a status; elm_context_last_error() holds the
 *    detailed message of the last failure on that context. Functions that
 *    create a handle take an optional `err` buffer for the message, since no
 *    handle exists yet when they fail.
 *  - Handles are opaque. elm_model is immutable once loaded and may be used
 *    from any number of threads at once. elm_context is one stream (its KV
 *    cache, its sampler state) and must be used by one thread at a time.
 *  - Every pointer parameter is *borrowed* (the callee keeps no reference
 *    past the call) unless its comment says *owned* or *kept*.
 *  - elm_*_free(NULL) is a no-op. No function calls exit() or abort(), and
 *    the library keeps no global mutable state besides the allocator
 *    (elm_set_allocator), set once before use.
 *
 * ABI rule (the library's binary interface can grow without breaking
 * programs built against an older edgelm.h):
 *  - Every struct that crosses the library boundary starts with
 *    `size_t struct_size`, the struct's size as the *caller* was compiled.
 *    Parameter structs get it from their init function-like macro
 *    (elm_model_default_params(&p) and the like), which also fills the
 *    defaults; output structs are declared with ELM_INIT(type) or have it
 *    set by hand. The library reads and writes only the first struct_size
 *    bytes, and refuses (ELM_ERR_INVALID_ARG) a size smaller than that of
 *    the first release of the struct.
 *  - Fields are only ever appended. They are never removed, reordered,
 *    retyped or given another meaning; an appended field's zero value means
 *    "as before".
 *  - Arrays of such structs are strided by their first element's
 *    struct_size (elm_devices).
 *  - Enumerators are only appended (elm_status grows at its end).
 *  - Functions are only added. An incompatible change bumps the SONAME
 *    (libedgelm.so.N) and the ABI baseline (abi/libedgelm.abi) together;
 *    `make abi-check` compares the built library with that baseline.
 *  - Only functions named elm_* are exported; edgelm_tools.h (benchmark
 *    fixtures) is outside this promise.
 */
#ifndef EDGELM_H
#define EDGELM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(EDGELM_STATIC)
#define ELM_API
#elif defined(EDGELM_BUILDING)
#define ELM_API __attribute__((visibility("default")))
#else
#define ELM_API
#endif

#define ELM_VERSION_MAJOR 0
#define ELM_VERSION_MINOR 1
#define ELM_VERSION_PATCH 0

/* Initializer of an output struct: `elm_stats st = ELM_INIT(elm_stats);`. */
#define ELM_INIT(type) {.struct_size = sizeof(type)}

/* ------------------------------------------------------------------ status */

typedef enum elm_status {
    ELM_OK = 0,
    ELM_ERR_INVALID_ARG,     /* a parameter is NULL, out of range or inconsistent */
    ELM_ERR_IO,              /* a file cannot be opened, read, mapped or written */
    ELM_ERR_FORMAT,          /* a file is malformed (bad GGUF, inconsistent model) */
    ELM_ERR_UNSUPPORTED,     /* well-formed but not supported (architecture, type) */
    ELM_ERR_NO_MEMORY,       /* an allocation failed (host or device) */
    ELM_ERR_CONTEXT_FULL,    /* the tokens do not fit in the context */
    ELM_ERR_BUFFER_TOO_SMALL,/* an output buffer is too small; the needed size is reported */
    ELM_ERR_DEVICE,          /* a device failed or was lost; the context is unusable */
    ELM_ERR_NUMERIC,         /* a computation produced a non-finite value */
    ELM_ERR_INTERNAL,        /* a bug in edgelm: please report it */
    ELM_ERR_TEMPLATE,        /* a chat template failed: syntax, raise_exception() or a limit */
    ELM_ERR_SIGNATURE,       /* a model's signature is missing, invalid, or by another key */
    ELM_ERR_STATE_MISMATCH,  /* a saved state belongs to another model, mode or context size */
} elm_status;

/* A static English description of `status`; never NULL. */
ELM_API const char *elm_strerror(elm_status status);

/* "MAJOR.MINOR.PATCH"; static. */
ELM_API const char *elm_version(void);

typedef int32_t elm_token;

/* --------------------------------------------------------------- allocator */

/*
 * Every heap allocation the library makes goes through one allocator: libc's
 * malloc/realloc/free unless replaced here (as libuv's uv_replace_allocator
 * and sqlite's SQLITE_CONFIG_MALLOC). Memory of third-party libraries
 * (OpenBLAS, PCRE2's JIT stack, the Vulkan driver) is not covered.
 * The functions must behave as their libc namesakes, be thread-safe, and may
 * fail (return NULL): every failure surfaces as ELM_ERR_NO_MEMORY.
 */
typedef struct elm_allocator {
    size_t struct_size;  /* sizeof(elm_allocator), as the caller was built */
    void *(*malloc)(void *user, size_t size);
    void *(*realloc)(void *user, void *ptr, size_t size);
    void (*free)(void *user, void *ptr);
    void *user;          /* passed to the three functions; borrowed, kept */
} elm_allocator;

/*
 * Replaces the allocator (the struct is copied; `user` is kept), or restores
 * libc's with NULL. This is the library's only process-wide setting: call it
 * while no edgelm object exists. ELM_ERR_INVALID_ARG when a function is
 * missing, or when memory from the current allocator is still allocated.
 */
ELM_API elm_status elm_set_allocator(const elm_allocator *allocator);

/* Blocks allocated through the allocator and not yet freed (0 once every
 * edgelm object is freed). */
ELM_API size_t elm_allocations_live(void);


/* ----------------------------------------------------------------- devices */

#define ELM_MAX_HEAPS 8

/* One compute device, as `edgelm devices` lists it. */
typedef struct elm_device_info {
    size_t struct_size;        /* set by the caller (see the ABI rule) */
    char name[256];
    char backend[16];          /* "cpu" or "vulkan" */
    char type[16];             /* "discrete", "integrated", "virtual", "cpu", "other" */
    char driver[256];          /* driver name and version */
    char id[32];               /* the --device value that selects it: "cpu", "vulkan:0", ... */
    uint32_t api_version;      /* VK_MAKE_API_VERSION encoding; 0 for the CPU backend */
    uint32_t n_heaps;
    uint64_t heap_size[ELM_MAX_HEAPS];
    uint64_t heap_budget[ELM_MAX_HEAPS]; /* 0 where VK_EXT_memory_budget is absent */
    bool heap_device_local[ELM_MAX_HEAPS];
    uint32_t subgroup_size;
    uint32_t shared_memory_bytes;
    uint64_t max_storage_buffer_range;
    uint64_t max_memory_allocation_size;
    bool fp16;                 /* shaderFloat16 */
    bool storage16;            /* 16-bit storage buffer access */
    bool storage8;             /* 8-bit storage buffer access */
    bool int_dot;              /* shaderIntegerDotProduct */
    bool subgroup_arithmetic;
    bool uma;                  /* integrated / unified memory */
    uint32_t n_threads;        /* CPU backend: physical cores */
} elm_device_info;

/*
 * Lists every device edgelm can run on: the CPU backend first, then every
 * Vulkan physical device (CPU-type ones such as lavapipe included) in
 * enumeration order. Writes at most `cap` entries and the total to *n.
 * When cap > 0, out[0].struct_size must be set: it is the size of every
 * entry (the array's stride), and each entry's struct_size is set to it.
 * Without a Vulkan loader or driver only the CPU is listed; that is not an
 * error. EDGELM_VK_LIMITS shapes what Vulkan devices report (see README).
 */
ELM_API elm_status elm_devices(elm_device_info *out, size_t cap, size_t *n);

/* ------------------------------------------------------------------- model */

typedef struct elm_model elm_model;

typedef struct elm_model_params {
    size_t struct_size;  /* set by elm_model_default_params */
    /* Device to run on: "cpu" (default), "auto", "vulkan", "vulkan:N".
     * Borrowed; may be NULL for "cpu". */
    const char *device;
    /* Load only metadata and the tokenizer (no weights, no architecture
     * check). Such a model can tokenize but not create contexts. */
    bool vocab_only;
    /* Appended: when not NULL, the path of an Ed25519 public key file
     * (`edgelm keygen`); the model must carry a valid signature by it in
     * PATH.sig (`edgelm sign`), checked over the whole file before any
     * weight is used, else ELM_ERR_SIGNATURE. Borrowed. */
    const char *trusted_key;
} elm_model_params;

/* Fills *p (struct_size bytes) with the defaults and sets p->struct_size.
 * Use the macro: `elm_model_params mp; elm_model_default_params(&mp);`. */
ELM_API void elm_model_params_init(elm_model_params *p, size_t struct_size);
#define elm_model_default_params(p) elm_model_params_init((p), sizeof *(p))

/*
 * Loads the GGUF file at `path` (borrowed). The weights are memory-mapped and
 * used in place. On success *out receives a model the caller owns (free it
 * with elm_model_free). On failure *out is NULL and, when err is not NULL,
 * err (err_size bytes, NUL-terminated) receives a message that names the file
 * and the problem. Errors: ELM_ERR_IO, ELM_ERR_FORMAT, ELM_ERR_UNSUPPORTED,
 * ELM_ERR_NO_MEMORY, ELM_ERR_INVALID_ARG, ELM_ERR_SIGNATURE (trusted_key set
 * and the signature missing or not valid; the key file's own problems are
 * ELM_ERR_IO or ELM_ERR_FORMAT).
 */
ELM_API elm_status elm_model_load(const char *path, const elm_model_params *params,
                                  elm_model **out, char *err, size_t err_size);

/* Frees a model. Every context created on it must be freed first. */
ELM_API void elm_model_free(elm_model *model);

/* Hyperparameters and provenance of a loaded model. Strings point into the
 * model and live as long as it does. */
typedef struct elm_model_info {
    size_t struct_size;          /* set by the caller: ELM_INIT(elm_model_info) */
    const char *path;
    const char *name;            /* general.name, or "" */
    const char *arch;            /* general.architecture, e.g. "llama", "qwen2" */
    const char *tokenizer_model; /* tokenizer.ggml.model: "llama" or "gpt2" */
    const char *tokenizer_pre;   /* tokenizer.ggml.pre, or "" */
    uint64_t file_size;          /* bytes */
    uint64_t weights_bytes;      /* sum of tensor sizes */
    uint32_t gguf_version;
    uint32_t n_tensors;
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim;
    uint32_t n_rot;
    float rope_theta;
    float rope_freq_scale;       /* 1 / linear scaling factor */
    const char *rope_scaling;    /* "none", "linear", "yarn" */
    bool rope_neox;              /* half-split (NeoX) pairs instead of adjacent pairs */
    bool has_rope_freqs;         /* rope_freqs.weight present (Llama 3 style) */
    float rms_eps;
    bool tied_embeddings;        /* output.weight absent: token_embd is reused */
    bool add_bos;
    elm_token bos;               /* -1 when none */
    elm_token eos;               /* -1 when none */
    bool vocab_only;
    /* What the architecture adds to the plain transformer block, in words
     * ("sliding window 16 on 5 of 6 layers; Q/K norms; ..."), or "". Owned
     * by the model. */
    const char *features;
} elm_model_info;

ELM_API elm_status elm_model_get_info(const elm_model *model, elm_model_info *out);

/* One tensor of the file, for listings. `name` and `type` live as long as
 * the model. */
typedef struct elm_tensor_info {
    size_t struct_size;          /* set by the caller: ELM_INIT(elm_tensor_info) */
    const char *name;
    const char *type;            /* "F32", "Q4_0", ... */
    uint32_t n_dims;
    int64_t ne[4];               /* ne[0] is the contiguous (row) dimension */
    uint64_t nbytes;
    uint64_t offset;             /* in the data section */
} elm_tensor_info;

ELM_API uint32_t elm_model_n_tensors(const elm_model *model);
ELM_API elm_status elm_model_tensor(const elm_model *model, uint32_t index,
                                    elm_tensor_info *out);

/* --------------------------------------------------------------- tokenizer */

/*
 * Tokenizes `len` bytes of `text` (borrowed, need not be NUL-terminated).
 * add_bos: prepend BOS when the vocabulary asks for it (tokenizer.ggml.add_bos_token,
 * default true for SentencePiece and false for byte-level BPE vocabularies).
 * parse_special: recognize the text of control/user-defined tokens.
 * Writes at most `cap` ids to `tokens` and the count to *n_tokens. When cap is
 * too small, returns ELM_ERR_BUFFER_TOO_SMALL with *n_tokens = the count needed.
 */
ELM_API elm_status elm_tokenize(const elm_model *model, const char *text, size_t len,
                                bool add_bos, bool parse_special,
                                elm_token *tokens, size_t cap, size_t *n_tokens);

/*
 * The bytes of one token as they appear in text (byte tokens give one raw
 * byte, which may be part of a UTF-8 sequence; control tokens give "").
 * Writes at most `cap` bytes (no NUL) and the length to *len; too small a
 * buffer gives ELM_ERR_BUFFER_TOO_SMALL with *len = the size needed.
 */
ELM_API elm_status elm_token_to_piece(const elm_model *model, elm_token token,
                                      char *buf, size_t cap, size_t *len);

/* Decodes `n` tokens to text, replacing invalid UTF-8 with U+FFFD. Same
 * buffer rules as elm_token_to_piece; the output is NUL-terminated when it fits. */
ELM_API elm_status elm_detokenize(const elm_model *model, const elm_token *tokens, size_t n,
                                  char *buf, size_t cap, size_t *len);

/* True for end-of-generation ids (EOS, EOT, EOM and the like). */
ELM_API bool elm_token_is_eog(const elm_model *model, elm_token token);

/* ----------------------------------------------------------------- context */

typedef struct elm_context elm_context;

typedef enum elm_mode {
    /* The quickest kernels: 8-bit activations, F16 KV cache, and so on. */
    ELM_MODE_FAST = 0,
    /* The reference path: F32 activations, F32 KV cache, exactly dequantized
     * weights. Every fast path is tested against it. */
    ELM_MODE_EXACT = 1,
} elm_mode;

typedef struct elm_context_params {
    size_t struct_size;  /* set by elm_context_default_params */
    uint32_t n_ctx;      /* tokens of context; 0 = min(model's context, 4096) */
    uint32_t n_batch;    /* most tokens per forward pass; 0 = 512 */
    int n_threads;       /* 0 = the number of physical cores */
    elm_mode mode;
    bool logits_all;     /* keep logits for every token of a batch (for evaluation) */
    /* CPU backend: keep worker thread i on physical core i (the calling
     * thread, which belongs to the application, is never pinned). Off by
     * default: several contexts may share the cores. Best effort: a failed
     * pin is ignored. */
    bool pin_threads;
} elm_context_params;

/* Fills *p with the defaults: `elm_context_params cp; elm_context_default_params(&cp);`. */
ELM_API void elm_context_params_init(elm_context_params *p, size_t struct_size);
#define elm_context_default_params(p) elm_context_params_init((p), sizeof *(p))

/*
 * Creates a context on `model`. The model is borrowed and must outlive the
 * context; many contexts may share one model, each in its own thread. The
 * KV cache is allocated here, for n_ctx tokens, and nothing is allocated per
 * token afterwards. *out receives an owned context. Errors go to `err` as in
 * elm_model_load.
 */
ELM_API elm_status elm_context_new(const elm_model *model, const elm_context_params *params,
                                   elm_context **out, char *err, size_t err_size);

ELM_API void elm_context_free(elm_context *ctx);

/* The message of the last failure on this context ("" when none). Valid until
 * the next call on the context. */
ELM_API const char *elm_context_last_error(const elm_context *ctx);

/* Forgets every token: the next decode starts at position 0. */
ELM_API elm_status elm_context_reset(elm_context *ctx);

ELM_API uint32_t elm_context_n_ctx(const elm_context *ctx);
/* Memory a context uses on its device, in bytes. */
typedef struct elm_memory_usage {
    size_t struct_size;      /* set by the caller: ELM_INIT(elm_memory_usage) */
    uint64_t weights_bytes;  /* weights the device reads (memory-mapped on the CPU) */
    uint64_t kv_bytes;       /* the KV cache */
    uint64_t scratch_bytes;  /* activations, logits and work buffers */
    uint64_t device_bytes;   /* allocated on the device for this context: kv + scratch (the
                                shared weight copies: elm_model_memory) */
} elm_memory_usage;

ELM_API elm_status elm_context_memory(const elm_context *ctx, elm_memory_usage *out);

/*
 * What the model holds once for all its contexts. On a device, the first
 * context opens the device and every later context on the model shares it:
 * one set of pipelines and one copy of the weights. weights_bytes: the
 * weights the device reads (copied or imported in place; 0 before the first
 * context); device_bytes: device memory holding copies of them (0 when
 * imported or on the CPU). On the CPU, weights_bytes is the memory-mapped
 * weights. kv_bytes and scratch_bytes are 0: they are per context
 * (elm_context_memory, whose device_bytes never includes the weights).
 */
ELM_API elm_status elm_model_memory(const elm_model *model, elm_memory_usage *out);

/*
 * Device-specific counters of a context, by index from 0: names such as
 * "vulkan.pipeline_ms", "vulkan.pipeline_cache_loaded", "vulkan.submits",
 * "vulkan.dispatches", "vulkan.validation_errors". The set depends on the
 * device and may grow; *name is static. ELM_ERR_INVALID_ARG past the last.
 */
ELM_API elm_status elm_context_device_stat(const elm_context *ctx, size_t index,
                                           const char **name, double *value);
/* The counter called `name` (borrowed); ELM_ERR_INVALID_ARG when the
 * context's device has none by that name. */
ELM_API elm_status elm_context_device_stat_find(const elm_context *ctx, const char *name,
                                                double *value);

/* The device the context runs on ("cpu", "vulkan:0", ...); owned by the context. */
ELM_API const char *elm_context_device(const elm_context *ctx);

/* A note from context creation that is not an error, "" when none: for
 * example that device "auto" fell back to the CPU, and why. */
ELM_API const char *elm_context_notice(const elm_context *ctx);

/* Tokens already in the KV cache. */
ELM_API uint32_t elm_context_n_past(const elm_context *ctx);

/*
 * Rolls the context back to its first n tokens (n <= elm_context_n_past):
 * the next decode continues at position n and computes exactly as if the
 * context had only ever seen those n tokens. This covers the KV cache and
 * every other per-context state (the convolution state of lfm2, the ring
 * caches of sliding-window layers). The call itself is O(1). Where such a
 * ring no longer holds what position n needs (a rollback deeper than one
 * forward pass, n_batch tokens or fewer, on those architectures), the next
 * decode first
 * re-evaluates the n tokens the context remembers, at the cost of a prompt
 * evaluation. The logits of the last decode are no longer available.
 * Errors: ELM_ERR_INVALID_ARG (n > n_past), ELM_ERR_DEVICE (a broken context).
 */
ELM_API elm_status elm_context_truncate(elm_context *ctx, uint32_t n);

/* The token ids in the context, in order (n_past of them); borrowed, valid
 * until the next call that changes the context. NULL when n_past is 0. */
ELM_API const elm_token *elm_context_tokens(const elm_context *ctx);

/* Tokens the context has run through the model since it was created,
 * counting re-evaluations: a caller can check that a prefix was reused. */
ELM_API uint64_t elm_context_n_evaluated(const elm_context *ctx);

/*
 * Prefix reuse: rolls the context back to the longest common prefix of what
 * it holds and tokens[0, n) (borrowed), keeping at most n - 1 tokens so that
 * at least one token is left to evaluate, and writes that count to *n_kept
 * (may be NULL). The caller then decodes tokens[*n_kept, n). Errors: as
 * elm_context_truncate.
 */
ELM_API elm_status elm_context_reuse_prefix(elm_context *ctx, const elm_token *tokens, size_t n,
                                            uint32_t *n_kept);

/*
 * Saved sessions. A state holds the context's tokens, its KV cache and every
 * other per-context state, and a fingerprint of the model (a hash of its
 * hyperparameters and tensor table), the mode and n_ctx. Loading it into a
 * context of another model, mode or size fails with ELM_ERR_STATE_MISMATCH
 * and leaves the context unchanged; a damaged state gives ELM_ERR_FORMAT.
 * After a load the context continues with the same logits, bit for bit, as
 * the one that was saved. The _buffer forms follow elm_detokenize's buffer
 * rules (ELM_ERR_BUFFER_TOO_SMALL with *len = the size needed).
 */
ELM_API elm_status elm_state_save(elm_context *ctx, const char *path);
ELM_API elm_status elm_state_load(elm_context *ctx, const char *path);
ELM_API elm_status elm_state_save_buffer(elm_context *ctx, void *buf, size_t cap, size_t *len);
ELM_API elm_status elm_state_load_buffer(elm_context *ctx, const void *buf, size_t len);

/*
 * Runs the model on `n` tokens (borrowed) appended after the tokens already
 * in the context, in batches of at most n_batch. Afterwards elm_get_logits()
 * returns the logits of the last token, or of every token of this call when
 * the context was created with logits_all (then n may not exceed n_batch).
 * Errors: ELM_ERR_CONTEXT_FULL (nothing is computed), ELM_ERR_INVALID_ARG
 * (a token id out of range), ELM_ERR_NUMERIC, ELM_ERR_DEVICE.
 */
ELM_API elm_status elm_decode(elm_context *ctx, const elm_token *tokens, size_t n);

/* The n_vocab logits of token `i` of the last elm_decode call (i = -1: the
 * last one). Borrowed; valid until the next decode. NULL when unavailable. */
ELM_API const float *elm_get_logits(const elm_context *ctx, int32_t i);

/* ----------------------------------------------------------------- sampler */

typedef struct elm_sampler_params {
    size_t struct_size;    /* set by elm_sampler_default_params */
    float temperature;     /* <= 0: greedy (ties go to the lower id) */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* tokens the penalty looks back over */
    uint64_t seed;         /* same seed, same model, same prompt: same text */
} elm_sampler_params;

/* Fills *p with the defaults: `elm_sampler_params sp; elm_sampler_default_params(&sp);`. */
ELM_API void elm_sampler_params_init(elm_sampler_params *p, size_t struct_size);
#define elm_sampler_default_params(p) elm_sampler_params_init((p), sizeof *(p))

/* -------------------------------------------------------------- generation */

/* What the callback learns of each generated token. Borrowed for the call. */
typedef struct elm_token_info {
    size_t struct_size;    /* the library's size: fields past it do not exist */
    elm_token token;
    const char *text;      /* complete UTF-8 produced so far by this token (may be "") */
    size_t text_len;
    float logprob;         /* log-probability of the token under the raw logits */
    float top1_logit;      /* highest raw logit */
    float margin;          /* highest minus second-highest raw logit */
    uint32_t index;        /* 0 for the first generated token */
} elm_token_info;

/* Return false to stop generation after this token. */
typedef bool (*elm_token_callback)(const elm_token_info *info, void *user_data);

/*
 * A confidence summary of generated tokens, for deciding whether to trust a
 * local answer (edge-first hybrid serving). Start with ELM_INIT(elm_confidence)
 * and call elm_confidence_add for each elm_token_info.
 */
typedef struct elm_confidence {
    size_t struct_size;      /* set by the caller: ELM_INIT(elm_confidence) */
    uint32_t n_tokens;
    double mean_logprob;     /* mean log-probability of the chosen tokens (0 when none) */
    float min_margin;        /* smallest top-1 minus top-2 logit (0 until the first token) */
    float margin_threshold;  /* set by the caller; default 0 means 1.0 */
    float frac_below;        /* fraction of tokens whose margin is below the threshold */
    double sum_logprob;      /* running sum, for elm_confidence_add */
    uint32_t n_below;        /* running count, for elm_confidence_add */
} elm_confidence;

/* Folds one token into c. Errors: ELM_ERR_INVALID_ARG (NULL, or a struct_size
 * below the first release's). */
ELM_API elm_status elm_confidence_add(elm_confidence *c, const elm_token_info *info);

typedef enum elm_stop_reason {
    ELM_STOP_N_PREDICT = 0, /* generated n_predict tokens */
    ELM_STOP_EOG,           /* an end-of-generation token */
    ELM_STOP_CALLBACK,      /* the callback returned false */
    ELM_STOP_CONTEXT_FULL,  /* the context has no room for another token */
} elm_stop_reason;

typedef struct elm_generate_params {
    size_t struct_size;           /* set by elm_generate_default_params */
    int32_t n_predict;            /* new tokens at most; < 0: until EOG or context end */
    bool add_bos;                 /* as in elm_tokenize; default true */
    bool parse_special;           /* default true */
    bool ignore_eos;              /* keep going past end-of-generation tokens */
    const elm_sampler_params *sampler; /* borrowed; NULL: elm_sampler_default_params */
    elm_token_callback callback;  /* may be NULL */
    void *user_data;              /* passed to callback; borrowed */
    /* The prompt as token ids instead of text (borrowed): when not NULL,
     * elm_generate evaluates these n_prompt_tokens ids after the context's
     * tokens and ignores its prompt and len arguments, add_bos and
     * parse_special. A chat keeps its conversation in the context this way
     * and evaluates only the tokens of a new turn (elm_context_truncate). */
    const elm_token *prompt_tokens;
    size_t n_prompt_tokens;
} elm_generate_params;

/* Fills *p with the defaults: `elm_generate_params gp; elm_generate_default_params(&gp);`. */
ELM_API void elm_generate_params_init(elm_generate_params *p, size_t struct_size);
#define elm_generate_default_params(p) elm_generate_params_init((p), sizeof *(p))

typedef struct elm_stats {
    size_t struct_size;     /* set by the caller: ELM_INIT(elm_stats) */
    double load_ms;         /* model load (from the model) */
    double prompt_ms;       /* prompt evaluation */
    double ttft_ms;         /* from the call to the first generated token */
    double gen_ms;          /* generation after the first token */
    uint32_t n_prompt;
    uint32_t n_gen;
    double prompt_tps;
    double gen_tps;
    uint64_t peak_rss_bytes; /* of the process, 0 where unknown */
    elm_stop_reason stop;
    char device[32];         /* where the context runs: "cpu", "vulkan:N" */
    uint64_t n_fallback_nodes; /* graph nodes the device could not run, run on the CPU instead */
    /* Device-specific figures: elm_context_device_stat. */
} elm_stats;

/*
 * Tokenizes `prompt` (borrowed, `len` bytes), evaluates it after the tokens
 * already in the context, then samples up to n_predict tokens, calling the
 * callback for each. The prompt must fit in the context, or the call fails
 * with ELM_ERR_CONTEXT_FULL before anything is evaluated. Reaching the end of
 * the context later is not an error: generation stops with
 * stop = ELM_STOP_CONTEXT_FULL. When the callback returns false, an
 * incomplete UTF-8 sequence at the end of the text is dropped.
 * `stats` may be NULL. With params->prompt_tokens the prompt is those ids
 * (prompt may then be NULL). Errors: as elm_decode, and ELM_ERR_INVALID_ARG
 * for a prompt without tokens.
 */
ELM_API elm_status elm_generate(elm_context *ctx, const char *prompt, size_t len,
                                const elm_generate_params *params, elm_stats *stats);

/* -------------------------------------------------------------------- chat */

/*
 * One message of a conversation, for chat templates. Arrays of it are passed
 * with a count, so, unlike the other structs, it has no struct_size: it is
 * fixed and will never grow (a later need gets a new type and function).
 * Both strings are borrowed, NUL-terminated UTF-8.
 */
typedef struct elm_chat_message {
    const char *role;     /* "system", "user", "assistant", ... */
    const char *content;
} elm_chat_message;

typedef struct elm_chat_params {
    size_t struct_size;          /* set by elm_chat_default_params */
    bool add_generation_prompt;  /* end with the opening of an assistant turn; default true */
    /* The template's bos_token and eos_token (borrowed). NULL: the model's
     * BOS/EOS token text, or "" without a model. */
    const char *bos_token;
    const char *eos_token;
    /* The time strftime_now() formats, in seconds since the epoch, taken as
     * UTC; 0 (the default): the current local time. */
    int64_t now;
} elm_chat_params;

/* Fills *p with the defaults: `elm_chat_params cp; elm_chat_default_params(&cp);`. */
ELM_API void elm_chat_params_init(elm_chat_params *p, size_t struct_size);
#define elm_chat_default_params(p) elm_chat_params_init((p), sizeof *(p))

/*
 * Renders a conversation into the prompt text a chat model expects, with the
 * Jinja chat template `tmpl` (borrowed, NUL-terminated), or with the model's
 * own (GGUF key tokenizer.chat_template) when tmpl is NULL. `model` may be
 * NULL when tmpl is given. The template sees `messages`,
 * `add_generation_prompt`, `bos_token` and `eos_token`, as Hugging Face
 * transformers renders it (README: "Chat templates" lists what is supported).
 * params may be NULL for the defaults. Writes at most `cap` bytes to buf and
 * the length to *len, NUL-terminated when it fits; too small a buffer gives
 * ELM_ERR_BUFFER_TOO_SMALL with *len = the length needed (add 1 for the NUL).
 * Errors, with a message in err (err_size bytes, may be NULL):
 * ELM_ERR_UNSUPPORTED ("the model has no chat template"), ELM_ERR_TEMPLATE
 * (a syntax error, an unsupported feature, a limit reached, or the template's
 * raise_exception(msg), whose message is exactly msg), ELM_ERR_INVALID_ARG,
 * ELM_ERR_NO_MEMORY. The template cannot reach files or the environment, and
 * its depth, work, memory and output are bounded.
 */
ELM_API elm_status elm_chat_apply_template(const elm_model *model, const char *tmpl,
                                           const elm_chat_message *msgs, size_t n,
                                           const elm_chat_params *params, char *buf, size_t cap,
                                           size_t *len, char *err, size_t err_size);

/*
 * The tokens that end an assistant turn under a chat template (tmpl, or the
 * model's own when NULL): the control token the template writes after an
 * assistant message (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, </s>,
 * ...), then the model's other end-of-generation tokens, without repeats.
 * Generation should stop at any of them. Writes at most `cap` ids and the
 * count to *n; ELM_ERR_BUFFER_TOO_SMALL with *n = the count needed when cap is
 * too small. Errors as elm_chat_apply_template.
 */
ELM_API elm_status elm_chat_end_of_turn(const elm_model *model, const char *tmpl, elm_token *out,
                                        size_t cap, size_t *n, char *err, size_t err_size);

/* --------------------------------------------------------------- profiling */

/*
 * Per-op timing of a context's forward passes. Off by default; while on,
 * every pass is measured on its device (GPU timestamp queries on Vulkan,
 * wall time on the CPU), which may slow it down but never changes results.
 * Passes of one token (generation) and of several (prompt processing) are
 * summed apart.
 */
typedef enum elm_profile_phase {
    ELM_PROFILE_PROMPT = 0, /* passes of more than one token */
    ELM_PROFILE_DECODE = 1, /* passes of one token */
} elm_profile_phase;

/* One op kind's figures over the phase's passes. */
typedef struct elm_profile_op {
    size_t struct_size;     /* the array's stride: set out[0].struct_size (as elm_devices) */
    char op[24];            /* "mul_mat", "attention", "rms_norm", ... */
    double ms;              /* device time */
    uint64_t bytes;         /* bytes read + written, estimated from the tensors' sizes */
    uint64_t n_nodes;       /* graph nodes of this op run */
    uint64_t n_dispatches;  /* device dispatches (on the CPU: nodes) */
    uint64_t n_barriers;    /* dependency barriers before its dispatches (on the CPU: the
                               thread barriers before its phase) */
} elm_profile_op;

typedef struct elm_profile {
    size_t struct_size;     /* set by the caller: ELM_INIT(elm_profile) */
    uint64_t n_passes;      /* forward passes measured */
    uint64_t n_tokens;      /* tokens they evaluated */
    double ms;              /* device time of every op together */
    uint64_t n_dispatches;  /* sum over the ops */
    uint64_t n_barriers;    /* sum over the ops */
    uint64_t n_submits;     /* queue submissions (0 on the CPU) */
    uint32_t n_layer;       /* the model's layers, for per-layer figures */
    bool timestamps;        /* ms came from device timestamps (else host wall time) */
} elm_profile;

/*
 * on: starts profiling from the next pass, dropping earlier figures; off:
 * stops it (the figures stay readable). ELM_ERR_UNSUPPORTED when the
 * context's device cannot profile.
 */
ELM_API elm_status elm_context_profile_enable(elm_context *ctx, bool on);

/*
 * The figures of one phase since profiling was enabled: the totals into
 * *summary (may be NULL), and one entry per op kind that ran into ops
 * (stride ops[0].struct_size), the slowest first. Writes at most cap
 * entries and how many there are to *n_ops (may be NULL when cap is 0).
 * Errors: ELM_ERR_INVALID_ARG (NULL ctx, bad phase, a struct_size below the
 * first release's).
 */
ELM_API elm_status elm_context_profile(const elm_context *ctx, elm_profile_phase phase,
                                       elm_profile *summary, elm_profile_op *ops, size_t cap,
                                       size_t *n_ops);

#ifdef __cplusplus
}
#endif
#endif /* EDGELM_H */
