#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/status.h"
#include "engine/internal.h"

typedef struct key_reader {
    const gguf_file *f;
    const char *arch;
    char *err;
    size_t err_size;
} key_reader;

static const char *arch_key(const key_reader *r, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", r->arch, suffix);
    return buf;
}

static elm_status get_u32(const key_reader *r, const char *suffix, bool required, uint32_t *out) {
    char key[128];
    return elmi_gguf_get_u32(r->f, arch_key(r, suffix, key, sizeof key), required, out, r->err,
                        r->err_size);
}

static elm_status get_f32(const key_reader *r, const char *suffix, bool required, float *out) {
    char key[128];
    return elmi_gguf_get_f32(r->f, arch_key(r, suffix, key, sizeof key), required, out, r->err,
                        r->err_size);
}

static elm_status load_arch(const gguf_file *f, elm_hparams *hp, char *arch, size_t cap,
                            char *err, size_t err_size) {
    gguf_str s = {0};
    ELM_TRY(elmi_gguf_get_str(f, "general.architecture", true, &s, err, err_size));
    if (s.len >= cap) s.len = cap - 1;
    memcpy(arch, s.ptr, s.len);
    arch[s.len] = 0;
    for (size_t i = 0; i < s.len; i++)
        if (arch[i] < 0x20 || arch[i] > 0x7e) arch[i] = '?';
    if (strcmp(arch, "llama") == 0) {
        hp->arch = ELM_ARCH_LLAMA;
        hp->rope_mode = BE_ROPE_NORM;
        hp->has_bias_qkv = false;
    } else if (strcmp(arch, "qwen2") == 0) {
        hp->arch = ELM_ARCH_QWEN2;
        hp->rope_mode = BE_ROPE_NEOX;
        hp->has_bias_qkv = true;
    } else {
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                           "unsupported architecture '%s' (supported: llama, qwen2)", arch);
    }
    return ELM_OK;
}

static elm_status load_rope_scaling(const key_reader *r, elm_hparams *hp) {
    char key[128];
    gguf_str type = {0};
    ELM_TRY(elmi_gguf_get_str(r->f, arch_key(r, "rope.scaling.type", key, sizeof key), false, &type,
                         r->err, r->err_size));
    float factor = 0.0f;
    ELM_TRY(get_f32(r, "rope.scaling.factor", false, &factor));
    if (factor == 0.0f) ELM_TRY(get_f32(r, "rope.scale_linear", false, &factor));
    hp->rope_scaling = 0;
    if (type.ptr == NULL || elmi_gguf_str_eq(type, "none")) {
        if (factor != 0.0f && factor != 1.0f) hp->rope_scaling = 1; /* old scale_linear key */
    } else if (elmi_gguf_str_eq(type, "linear")) {
        hp->rope_scaling = 1;
    } else if (elmi_gguf_str_eq(type, "yarn")) {
        hp->rope_scaling = 2;
    } else {
        return elmi_errorf(r->err, r->err_size, ELM_ERR_UNSUPPORTED,
                           "unsupported RoPE scaling type '%.*s' (supported: none, linear, yarn)",
                           (int)(type.len > 32 ? 32 : type.len), type.ptr);
    }
    hp->rope_freq_scale = 1.0f;
    if (hp->rope_scaling != 0) {
        if (!(factor >= 1.0f) || !isfinite(factor) || factor > 1024.0f)
            return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                               "RoPE scaling factor %g is out of range [1, 1024]", factor);
        hp->rope_freq_scale = 1.0f / factor;
    }
    hp->rope_n_ctx_orig = hp->n_ctx_train;
    ELM_TRY(get_u32(r, "rope.scaling.original_context_length", false, &hp->rope_n_ctx_orig));
    hp->yarn_ext_factor = hp->rope_scaling == 2 ? 1.0f : 0.0f;
    hp->yarn_attn_factor = 1.0f;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    ELM_TRY(get_f32(r, "rope.scaling.attn_factor", false, &hp->yarn_attn_factor));
    ELM_TRY(get_f32(r, "rope.scaling.yarn_beta_fast", false, &hp->yarn_beta_fast));
    ELM_TRY(get_f32(r, "rope.scaling.yarn_beta_slow", false, &hp->yarn_beta_slow));
    if (!isfinite(hp->yarn_attn_factor) || !isfinite(hp->yarn_beta_fast) ||
        !isfinite(hp->yarn_beta_slow) || hp->rope_n_ctx_orig == 0)
        return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT, "invalid RoPE scaling parameters");
    return ELM_OK;
}

static elm_status check_range(char *err, size_t err_size, const char *what, uint64_t v,
                              uint64_t lo, uint64_t hi) {
    if (v < lo || v > hi)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "%s = %llu is out of range [%llu, %llu]",
                           what, (unsigned long long)v, (unsigned long long)lo,
                           (unsigned long long)hi);
    return ELM_OK;
}

static elm_status check_heads(elm_hparams *hp, uint32_t key_len, uint32_t val_len, char *err,
                              size_t err_size) {
    ELM_TRY(check_range(err, err_size, "attention.head_count", hp->n_head, 1, hp->n_embd));
    ELM_TRY(check_range(err, err_size, "attention.head_count_kv", hp->n_head_kv, 1, hp->n_head));
    if (hp->n_head % hp->n_head_kv != 0)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "attention.head_count %u is not a multiple of head_count_kv %u",
                           hp->n_head, hp->n_head_kv);
    if (key_len == 0) {
        if (hp->n_embd % hp->n_head != 0)
            return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                               "embedding_length %u is not a multiple of head_count %u",
                               hp->n_embd, hp->n_head);
        key_len = hp->n_embd / hp->n_head;
    }
    if (val_len == 0) val_len = key_len;
    if (val_len != key_len)
        return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                           "key_length %u differs from value_length %u", key_len, val_len);
    ELM_TRY(check_range(err, err_size, "attention.key_length", key_len, 2, 1024));
    if (key_len % 2)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "head size %u is odd", key_len);
    hp->head_dim = key_len;
    if (hp->n_rot == 0) hp->n_rot = key_len;
    if (hp->n_rot > key_len || hp->n_rot % 2)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "rope.dimension_count %u must be even and at most the head size %u",
                           hp->n_rot, key_len);
    return ELM_OK;
}

elm_status elmi_hparams_load(const gguf_file *f, elm_hparams *hp, char *err, size_t err_size) {
    memset(hp, 0, sizeof *hp);
    char arch[64];
    ELM_TRY(load_arch(f, hp, arch, sizeof arch, err, err_size));
    key_reader r = {f, arch, err, err_size};
    ELM_TRY(get_u32(&r, "context_length", true, &hp->n_ctx_train));
    ELM_TRY(get_u32(&r, "embedding_length", true, &hp->n_embd));
    ELM_TRY(get_u32(&r, "block_count", true, &hp->n_layer));
    ELM_TRY(get_u32(&r, "feed_forward_length", true, &hp->n_ff));
    ELM_TRY(get_u32(&r, "attention.head_count", true, &hp->n_head));
    hp->n_head_kv = hp->n_head;
    ELM_TRY(get_u32(&r, "attention.head_count_kv", false, &hp->n_head_kv));
    uint32_t key_len = 0, val_len = 0;
    ELM_TRY(get_u32(&r, "attention.key_length", false, &key_len));
    ELM_TRY(get_u32(&r, "attention.value_length", false, &val_len));
    ELM_TRY(get_u32(&r, "rope.dimension_count", false, &hp->n_rot));
    ELM_TRY(get_f32(&r, "attention.layer_norm_rms_epsilon", true, &hp->rms_eps));
    hp->rope_theta = hp->arch == ELM_ARCH_QWEN2 ? 1000000.0f : 10000.0f;
    ELM_TRY(get_f32(&r, "rope.freq_base", false, &hp->rope_theta));

    ELM_TRY(check_range(err, err_size, "context_length", hp->n_ctx_train, 1, 1u << 24));
    ELM_TRY(check_range(err, err_size, "embedding_length", hp->n_embd, 1, 1u << 16));
    ELM_TRY(check_range(err, err_size, "block_count", hp->n_layer, 1, ELM_MAX_LAYERS));
    ELM_TRY(check_range(err, err_size, "feed_forward_length", hp->n_ff, 1, 1u << 20));
    uint64_t min_tensors = 2 + 9ull * hp->n_layer; /* embeddings, output norm, 9 per layer */
    if (elmi_gguf_n_tensors(f) < min_tensors)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "block_count %u needs at least %llu tensors, the file has %llu",
                           hp->n_layer, (unsigned long long)min_tensors,
                           (unsigned long long)elmi_gguf_n_tensors(f));
    ELM_TRY(check_heads(hp, key_len, val_len, err, err_size));
    if (!(hp->rms_eps > 0.0f) || !(hp->rms_eps < 1.0f))
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "attention.layer_norm_rms_epsilon %g is out of range (0, 1)", hp->rms_eps);
    if (!(hp->rope_theta > 0.0f) || !isfinite(hp->rope_theta))
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "rope.freq_base %g is invalid",
                           hp->rope_theta);
    return load_rope_scaling(&r, hp);
}
