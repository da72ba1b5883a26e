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

/* The architectures and what each implies before its keys are read. */
typedef struct arch_traits {
    const char *name;
    elm_arch arch;
    int rope_mode;
    float rope_theta; /* when the file has no rope.freq_base */
    bool bias_qkv, qk_norm, post_norms, fused, gelu, embd_scale;
} arch_traits;

static const arch_traits ARCHS[] = {
    {"llama", ELM_ARCH_LLAMA, BE_ROPE_NORM, 10000.0f, false, false, false, false, false, false},
    {"qwen2", ELM_ARCH_QWEN2, BE_ROPE_NEOX, 1000000.0f, true, false, false, false, false, false},
    {"qwen3", ELM_ARCH_QWEN3, BE_ROPE_NEOX, 1000000.0f, false, true, false, false, false, false},
    {"gemma3", ELM_ARCH_GEMMA3, BE_ROPE_NEOX, 1000000.0f, false, true, true, false, true, true},
    {"phi3", ELM_ARCH_PHI3, BE_ROPE_NEOX, 10000.0f, false, false, false, true, false, false},
    {"smollm3", ELM_ARCH_SMOLLM3, BE_ROPE_NORM, 10000.0f, false, false, false, false, false, false},
    {"lfm2", ELM_ARCH_LFM2, BE_ROPE_NEOX, 1000000.0f, false, true, false, false, false, false},
};
#define N_ARCHS (sizeof ARCHS / sizeof *ARCHS)

static elm_status load_arch(const gguf_file *f, elm_hparams *hp, char *arch, size_t cap,
                            char *err, size_t err_size) {
    gguf_str s = {0};
    ELM_TRY(elmi_gguf_get_str(f, "general.architecture", true, &s, err, err_size));
    if (s.len >= cap) s.len = cap - 1;
    memcpy(arch, s.ptr, s.len);
    arch[s.len] = 0;
    for (size_t i = 0; i < s.len; i++)
        if (arch[i] < 0x20 || arch[i] > 0x7e) arch[i] = '?';
    for (size_t i = 0; i < N_ARCHS; i++) {
        const arch_traits *t = &ARCHS[i];
        if (strcmp(arch, t->name) != 0) continue;
        hp->arch = t->arch;
        hp->rope_mode = t->rope_mode;
        hp->rope_theta = t->rope_theta;
        hp->has_bias_qkv = t->bias_qkv;
        hp->qk_norm = t->qk_norm;
        hp->post_norms = t->post_norms;
        hp->fused_qkv = hp->fused_gate_up = t->fused;
        hp->ffn_act = t->gelu ? BE_GLU_GELU_TANH : BE_GLU_SILU;
        hp->embd_scale = t->embd_scale ? -1.0f : 1.0f; /* -1: sqrt(n_embd), set later */
        return ELM_OK;
    }
    return elmi_errorf(err, err_size, ELM_ERR_UNSUPPORTED,
                       "unsupported architecture '%s' (supported: %s)", arch,
                       elmi_supported_archs());
}

const char *elmi_supported_archs(void) {
    return "llama, qwen2, qwen3, gemma3, phi3, smollm3, lfm2";
}

/* A key that is either one integer for every layer or an array of n_layer
 * integers; *form says which: KEY_ABSENT (out untouched), KEY_SCALAR (every
 * entry set to it) or KEY_PER_LAYER. */
enum { KEY_ABSENT, KEY_SCALAR, KEY_PER_LAYER };
static elm_status get_per_layer_u32(const key_reader *r, const char *suffix, uint32_t n_layer,
                                    uint32_t *out, int *form) {
    char key[128];
    const gguf_kv *kv = elmi_gguf_find(r->f, arch_key(r, suffix, key, sizeof key));
    *form = !kv ? KEY_ABSENT : kv->type == GGUF_TYPE_ARRAY ? KEY_PER_LAYER : KEY_SCALAR;
    if (!kv) return ELM_OK;
    if (kv->type != GGUF_TYPE_ARRAY) {
        uint32_t v = 0;
        ELM_TRY(elmi_gguf_get_u32(r->f, key, true, &v, r->err, r->err_size));
        for (uint32_t i = 0; i < n_layer; i++) out[i] = v;
        return ELM_OK;
    }
    if (kv->arr_n != n_layer)
        return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                           "key '%s' has %llu entries, expected block_count = %u", key,
                           (unsigned long long)kv->arr_n, n_layer);
    const unsigned char *p = kv->arr_data;
    for (uint32_t i = 0; i < n_layer; i++) {
        int64_t v;
        switch (kv->arr_type) {
        case GGUF_TYPE_BOOL:
        case GGUF_TYPE_UINT8: v = p[i]; break;
        case GGUF_TYPE_INT8: v = (int8_t)p[i]; break;
        case GGUF_TYPE_UINT32: { uint32_t u; memcpy(&u, p + 4 * i, 4); v = u; break; }
        case GGUF_TYPE_INT32: { int32_t u; memcpy(&u, p + 4 * i, 4); v = u; break; }
        case GGUF_TYPE_UINT64: { uint64_t u; memcpy(&u, p + 8 * i, 8); v = u > INT64_MAX ? -1 : (int64_t)u; break; }
        case GGUF_TYPE_INT64: memcpy(&v, p + 8 * i, 8); break;
        case GGUF_TYPE_UINT16: { uint16_t u; memcpy(&u, p + 2 * i, 2); v = u; break; }
        case GGUF_TYPE_INT16: { int16_t u; memcpy(&u, p + 2 * i, 2); v = u; break; }
        default:
            return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                               "key '%s' is an array of %s, expected integers", key,
                               elmi_gguf_type_name(kv->arr_type));
        }
        if (v < 0 || v > UINT32_MAX)
            return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                               "key '%s' entry %u = %lld is out of range", key, i, (long long)v);
        out[i] = (uint32_t)v;
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

/* Which layers attend, and with how many KV heads: lfm2 marks its
 * convolution layers with 0 in a per-layer head_count_kv array. */
static elm_status load_layer_kinds(const key_reader *r, elm_hparams *hp) {
    uint32_t heads_kv[ELM_MAX_LAYERS];
    int form = KEY_ABSENT;
    ELM_TRY(get_per_layer_u32(r, "attention.head_count_kv", hp->n_layer, heads_kv, &form));
    hp->n_head_kv = 0;
    hp->n_attn_layers = 0;
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        uint32_t h = form != KEY_ABSENT ? heads_kv[il] : hp->n_head;
        elm_layer_kind *k = &hp->layer[il];
        k->attn = h != 0;
        k->rope = 1;
        k->swa = 0;
        if (!k->attn) continue;
        if (hp->n_head_kv != 0 && h != hp->n_head_kv)
            return elmi_errorf(r->err, r->err_size, ELM_ERR_UNSUPPORTED,
                               "attention.head_count_kv differs between layers (%u and %u)",
                               hp->n_head_kv, h);
        hp->n_head_kv = h;
        hp->n_attn_layers++;
    }
    if (hp->n_attn_layers < hp->n_layer && hp->arch != ELM_ARCH_LFM2)
        return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                           "attention.head_count_kv is 0 on a layer; only lfm2 has layers "
                           "without attention");
    if (hp->n_attn_layers == 0) hp->n_head_kv = hp->n_head; /* a convolution-only model */
    return ELM_OK;
}

/* Sliding windows, per-layer RoPE and the short convolution. */
static elm_status load_layer_rules(const key_reader *r, elm_hparams *hp) {
    if (hp->arch == ELM_ARCH_SMOLLM3)
        for (uint32_t il = 0; il < hp->n_layer; il++) hp->layer[il].rope = (il + 1) % 4 != 0;
    if (hp->arch == ELM_ARCH_GEMMA3) {
        ELM_TRY(get_u32(r, "attention.sliding_window", true, &hp->n_swa));
        uint32_t pattern[ELM_MAX_LAYERS];
        int form = KEY_ABSENT;
        ELM_TRY(get_per_layer_u32(r, "attention.sliding_window_pattern", hp->n_layer, pattern,
                                  &form));
        bool per_layer = form == KEY_PER_LAYER;
        /* The architecture's rule: five sliding-window layers, then a global one. */
        uint32_t period = form == KEY_SCALAR ? pattern[0] : 6;
        if (period == 0)
            return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                               "%s.attention.sliding_window_pattern is 0", r->arch);
        for (uint32_t il = 0; il < hp->n_layer; il++)
            hp->layer[il].swa = per_layer ? pattern[il] != 0 : il % period < period - 1;
        hp->rope_theta_swa = 10000.0f;
        ELM_TRY(get_f32(r, "rope.freq_base_swa", false, &hp->rope_theta_swa));
        if (!(hp->rope_theta_swa > 0.0f) || !isfinite(hp->rope_theta_swa))
            return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                               "rope.freq_base_swa %g is invalid", hp->rope_theta_swa);
        ELM_TRY(check_range(r->err, r->err_size, "attention.sliding_window", hp->n_swa, 0,
                            1u << 24));
        if (hp->n_swa == 0)
            for (uint32_t il = 0; il < hp->n_layer; il++) hp->layer[il].swa = 0;
    }
    /* phi3 files carry attention.sliding_window too; the widely used engine
     * runs them without it, and so does edgelm, to agree with it. */
    if (hp->arch == ELM_ARCH_LFM2) {
        ELM_TRY(get_u32(r, "shortconv.l_cache", true, &hp->conv_L));
        ELM_TRY(check_range(r->err, r->err_size, "shortconv.l_cache", hp->conv_L, 1, 64));
    }
    return ELM_OK;
}

static elm_status load_scales(const key_reader *r, elm_hparams *hp) {
    ELM_TRY(get_f32(r, "attn_logit_softcapping", false, &hp->attn_softcap));
    ELM_TRY(get_f32(r, "final_logit_softcapping", false, &hp->final_softcap));
    if (!(hp->attn_softcap >= 0.0f) || !isfinite(hp->attn_softcap) ||
        !(hp->final_softcap >= 0.0f) || !isfinite(hp->final_softcap))
        return elmi_errorf(r->err, r->err_size, ELM_ERR_FORMAT,
                           "logit softcapping %g / %g is invalid", hp->attn_softcap,
                           hp->final_softcap);
    if (hp->embd_scale < 0.0f) hp->embd_scale = sqrtf((float)hp->n_embd);
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    /* Gemma 3 27B scales queries by the embedding per head, not the key length. */
    if (hp->arch == ELM_ARCH_GEMMA3 && hp->n_layer == 62)
        hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
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
    uint32_t key_len = 0, val_len = 0;
    ELM_TRY(get_u32(&r, "attention.key_length", false, &key_len));
    ELM_TRY(get_u32(&r, "attention.value_length", false, &val_len));
    ELM_TRY(get_u32(&r, "rope.dimension_count", false, &hp->n_rot));
    ELM_TRY(get_f32(&r, "attention.layer_norm_rms_epsilon", true, &hp->rms_eps));
    ELM_TRY(get_f32(&r, "rope.freq_base", false, &hp->rope_theta));

    ELM_TRY(check_range(err, err_size, "context_length", hp->n_ctx_train, 1, 1u << 24));
    ELM_TRY(check_range(err, err_size, "embedding_length", hp->n_embd, 1, 1u << 16));
    ELM_TRY(check_range(err, err_size, "block_count", hp->n_layer, 1, ELM_MAX_LAYERS));
    ELM_TRY(check_range(err, err_size, "feed_forward_length", hp->n_ff, 1, 1u << 20));
    /* Embeddings and output norm, and at least 5 tensors a layer (phi3's fused ones). */
    uint64_t min_tensors = 2 + 5ull * hp->n_layer;
    if (elmi_gguf_n_tensors(f) < min_tensors)
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "block_count %u needs at least %llu tensors, the file has %llu",
                           hp->n_layer, (unsigned long long)min_tensors,
                           (unsigned long long)elmi_gguf_n_tensors(f));
    ELM_TRY(load_layer_kinds(&r, hp));
    ELM_TRY(check_heads(hp, key_len, val_len, err, err_size));
    if (!(hp->rms_eps > 0.0f) || !(hp->rms_eps < 1.0f))
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT,
                           "attention.layer_norm_rms_epsilon %g is out of range (0, 1)", hp->rms_eps);
    if (!(hp->rope_theta > 0.0f) || !isfinite(hp->rope_theta))
        return elmi_errorf(err, err_size, ELM_ERR_FORMAT, "rope.freq_base %g is invalid",
                           hp->rope_theta);
    ELM_TRY(load_layer_rules(&r, hp));
    ELM_TRY(load_scales(&r, hp));
    return load_rope_scaling(&r, hp);
}
